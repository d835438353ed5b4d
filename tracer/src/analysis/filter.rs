//! Thread filters of `schedtrace report`: which threads (by TID, by name
//! glob, by a CPU they ran on) are accounted. A report analyses the trace
//! once to find them ([`ThreadFilter::select`]), then again with that
//! [`Selection`] (`Options::selection`), so that every total, share, count
//! and profile is the selected threads' own.

use crate::analysis::summary::{LeftOut, Selection, Summary};
use crate::analysis::timeline::{SegState, Timeline};
use crate::units::glob_match;

#[derive(Clone, Debug, Default)]
pub struct ThreadFilter {
    pub tids: Vec<u32>,
    pub comm: Option<String>,
    pub cpu: Option<u32>,
}

impl ThreadFilter {
    pub fn is_empty(&self) -> bool {
        self.tids.is_empty() && self.comm.is_none() && self.cpu.is_none()
    }

    fn keep(&self, tid: u32, comm: &str, ran_on: impl Fn(u32) -> bool) -> bool {
        (self.tids.is_empty() || self.tids.contains(&tid))
            && self.comm.as_deref().is_none_or(|g| glob_match(g, comm))
            && self.cpu.is_none_or(ran_on)
    }

    /// The threads of `s` (a summary of every thread) that match, or
    /// `None` without filters.
    pub fn select(&self, s: &Summary) -> Option<Selection> {
        if self.is_empty() {
            return None;
        }
        let (kept, left): (Vec<_>, Vec<_>) = s
            .threads
            .iter()
            .partition(|t| self.keep(t.tid, &t.comm, |c| t.cpus.contains_key(&c)));
        Some(Selection {
            tids: kept.iter().map(|t| t.tid).collect(),
            by_tid: self.tids.clone(),
            comm: self.comm.clone(),
            cpu: self.cpu,
            of_threads: s.threads.len() as u64,
            left_out: left
                .iter()
                .map(|t| {
                    let o = LeftOut {
                        tgid: t.tgid,
                        comm: t.comm.clone(),
                        label: t.label(),
                    };
                    (t.tid, o)
                })
                .collect(),
        })
    }

    /// Keep only matching threads (and, with `cpu`, that CPU's runs) in the timeline.
    pub fn apply_timeline(&self, tl: &mut Timeline) {
        if self.is_empty() {
            return;
        }
        let segs = &tl.segments;
        let ran_on = |tid: u32, cpu: u32| {
            segs.iter()
                .any(|s| s.tid == tid && s.state == SegState::Running { cpu })
        };
        let keep: Vec<u32> = tl
            .threads
            .iter()
            .filter(|t| self.keep(t.tid, &t.comm, |c| ran_on(t.tid, c)))
            .map(|t| t.tid)
            .collect();
        tl.threads.retain(|t| keep.contains(&t.tid));
        tl.segments.retain(|s| keep.contains(&s.tid));
        tl.wakeups
            .retain(|w| keep.contains(&w.wakee_tid) || keep.contains(&w.waker_tid));
    }
}
