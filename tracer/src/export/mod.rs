//! Output formats, one small module each behind the [`Exporter`] trait. An
//! exporter gets the analysis results (and the full timeline when it asks
//! for one) and writes one document.

pub mod chain;
pub mod chrome;
pub mod comparison;
pub mod folded;
pub mod html;
pub(crate) mod json;
pub mod kernel_sums;
pub mod parquet;
pub mod perfetto;
pub mod pprof;
pub mod terminal;
pub(crate) mod text;

use std::io::Write;

use crate::analysis::summary::Summary;
use crate::analysis::timeline::Timeline;

/// What exporters draw from.
pub struct Report<'a> {
    pub summary: &'a Summary,
    pub timeline: Option<&'a Timeline>,
}

pub trait Exporter {
    /// Does this format need the full [`Timeline`] (memory grows with the trace)?
    fn needs_timeline(&self) -> bool {
        false
    }

    fn write(&self, report: &Report<'_>, out: &mut dyn Write) -> anyhow::Result<()>;
}

/// Running segments per CPU (index = CPU) with no two overlapping: after
/// lost events the analysis can see two threads on one CPU at once; a run
/// that starts before the previous one on its CPU ended is clipped to start
/// there (and dropped if nothing is left), so CPU tracks stay well formed.
pub(crate) fn exclusive_cpu_lanes(tl: &Timeline) -> Vec<Vec<crate::analysis::timeline::Segment>> {
    let mut lanes = tl.cpu_lanes();
    for lane in &mut lanes {
        let mut end = 0u64;
        lane.retain_mut(|s| {
            s.start = s.start.max(end);
            if s.start >= s.end {
                return false;
            }
            end = s.end;
            true
        });
    }
    lanes
}

/// What held each CPU besides the traced threads (index = CPU; tasks of
/// other processes, the idle task, stretches not recorded), in time order,
/// cut where a traced thread's run overlaps them (only lost events make
/// them overlap).
pub(crate) fn other_holds(tl: &Timeline) -> Vec<Vec<crate::analysis::antagonists::Hold>> {
    let lanes = exclusive_cpu_lanes(tl);
    let mut out = vec![Vec::new(); lanes.len().max(tl.ncpus as usize)];
    let mut holds = tl.holds.clone();
    holds.sort_by_key(|h| (h.cpu, h.start));
    for h in holds {
        let cpu = h.cpu as usize;
        if out.len() <= cpu {
            out.resize(cpu + 1, Vec::new());
        }
        let mut start = h.start;
        let runs = lanes.get(cpu).map(Vec::as_slice).unwrap_or_default();
        let first = runs.partition_point(|r| r.end <= start);
        for r in &runs[first..] {
            if r.start >= h.end {
                break;
            }
            if r.start > start {
                out[cpu].push(crate::analysis::antagonists::Hold {
                    start,
                    end: r.start,
                    ..h
                });
            }
            start = start.max(r.end);
        }
        if start < h.end {
            out[cpu].push(crate::analysis::antagonists::Hold { start, ..h });
        }
    }
    out
}

/// The function a thread blocked in, from its kernel stack: the innermost
/// frame that is not the scheduler or the tracing around it (as the
/// kernel's wait channel skips `__sched` functions).
pub(crate) fn blocked_function(s: &Summary, kernel_stack: Option<u32>) -> Option<&str> {
    const SCHED: &[&str] = &[
        "__schedule",
        "schedule",
        "io_schedule",
        "preempt_schedule",
        "__traceiter_",
        "__bpf_trace_",
        "bpf_trace_run",
        "__bpf_prog",
        "bpf_prog_",
    ];
    let stack = s.stack_table.get(&kernel_stack?)?;
    stack
        .frames
        .iter()
        .filter_map(|f| f.name.as_deref())
        .find(|n| !SCHED.iter().any(|p| n.starts_with(p)))
}

/// The summary formats for stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryFormat {
    /// A table for people.
    Text,
    /// The JSON summary (docs/summary-schema.md).
    Json,
}

pub fn summary_exporter(f: SummaryFormat) -> Box<dyn Exporter> {
    match f {
        SummaryFormat::Text => Box::new(text::Text),
        SummaryFormat::Json => Box::new(json::Json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::timeline::{SegState, Segment};

    #[test]
    fn other_holds_are_cut_around_traced_runs() {
        use crate::analysis::antagonists::{Hold, Holder};
        let tl = Timeline {
            ncpus: 1,
            segments: vec![Segment::new(1, 10, 20, SegState::Running { cpu: 0 })],
            holds: vec![Hold {
                cpu: 0,
                start: 5,
                end: 30,
                holder: Holder::Unrecorded,
            }],
            ..Default::default()
        };
        let got: Vec<(u64, u64)> = other_holds(&tl)[0]
            .iter()
            .map(|h| (h.start, h.end))
            .collect();
        assert_eq!(got, vec![(5, 10), (20, 30)]);
    }

    #[test]
    fn overlapping_runs_on_a_cpu_are_clipped() {
        let run = |tid, start, end| Segment::new(tid, start, end, SegState::Running { cpu: 0 });
        let tl = Timeline {
            ncpus: 1,
            segments: vec![run(1, 0, 10), run(2, 5, 15), run(3, 6, 12), run(4, 20, 30)],
            ..Default::default()
        };
        let lanes = exclusive_cpu_lanes(&tl);
        let got: Vec<(u32, u64, u64)> = lanes[0].iter().map(|s| (s.tid, s.start, s.end)).collect();
        assert_eq!(got, vec![(1, 0, 10), (2, 10, 15), (4, 20, 30)]);
    }
}
