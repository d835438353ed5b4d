//! Output formats, one small module each behind the [`Exporter`] trait. An
//! exporter gets the analysis results (and the full timeline when it asks
//! for one) and writes one document.

pub mod chrome;
pub mod comparison;
pub mod html;
pub(crate) mod json;
pub mod parquet;
pub mod perfetto;
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
    fn overlapping_runs_on_a_cpu_are_clipped() {
        let run = |tid, start, end| Segment {
            tid,
            start,
            end,
            state: SegState::Running { cpu: 0 },
            inferred: false,
        };
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
