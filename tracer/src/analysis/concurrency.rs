//! How many of the target's threads ran, and how many waited for a CPU, at
//! each instant of a [`Timeline`], and what that says about CPUs the target
//! could have used.

use std::collections::BTreeMap;

use super::summary::Summary;
use super::timeline::{SegState, Timeline};

/// The counts from `ts` until the next step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub ts: u64,
    /// Threads on a CPU.
    pub running: u32,
    /// Threads waiting for a CPU.
    pub runnable: u32,
}

/// The running and runnable counts at each change, from the timeline's
/// start.
pub(crate) fn concurrency_steps(tl: &Timeline) -> Vec<Step> {
    let mut delta: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
    for s in &tl.segments {
        let (r, q) = match s.state {
            SegState::Running { .. } => (1, 0),
            SegState::Runnable => (0, 1),
            _ => continue,
        };
        let d = delta.entry(s.start).or_default();
        d.0 += r;
        d.1 += q;
        let d = delta.entry(s.end).or_default();
        d.0 -= r;
        d.1 -= q;
    }
    let (mut run, mut runq) = (0i64, 0i64);
    let mut out = vec![Step {
        ts: tl.start_ns,
        running: 0,
        runnable: 0,
    }];
    for (ts, (r, q)) in delta {
        run += r;
        runq += q;
        let v = Step {
            ts,
            running: run.max(0) as u32,
            runnable: runq.max(0) as u32,
        };
        match out.last_mut() {
            Some(last) if last.ts == ts => *last = v,
            Some(last) if (last.running, last.runnable) == (v.running, v.runnable) => {}
            _ => out.push(v),
        }
    }
    out
}

/// CPUs the traced command could run on.
fn usable_cpus(s: &Summary) -> u32 {
    s.pinned_cpus
        .as_ref()
        .map_or(s.ncpus, |c| c.len() as u32)
        .max(1)
}

/// Time during which some thread waited for a CPU while fewer than the
/// usable CPUs ran the target's threads: a CPU it could have used was busy
/// with another process (or was slow to pick the thread up).
pub(crate) fn elsewhere_ns(summary: &Summary, tl: &Timeline) -> u64 {
    let usable = usable_cpus(summary);
    let steps = concurrency_steps(tl);
    let mut total = 0;
    for (i, s) in steps.iter().enumerate() {
        let end = steps.get(i + 1).map_or(tl.end_ns, |n| n.ts);
        if s.runnable > 0 && s.running < usable {
            total += end.saturating_sub(s.ts);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn concurrency_counts() {
        let (_, tl) = interleaved_analysis();
        let steps = concurrency_steps(&tl);
        assert_eq!(steps.first().unwrap().ts, tl.start_ns);
        // 2 ms .. 2.5 ms: 101 on CPU 0, 102 on CPU 1, 100 preempted.
        let at = |t: u64| steps.iter().rev().find(|s| s.ts <= t).unwrap();
        assert_eq!((at(2_200_000).running, at(2_200_000).runnable), (2, 1));
        assert_eq!(at(8_500_000).running, 0);
    }
}
