//! Puts events from the shared ring buffer back into timestamp order.
//!
//! Records reach the ring buffer in reservation order, and each CPU takes
//! its timestamp just before reserving, so two CPUs can interleave by a few
//! hundred nanoseconds. Holding events back by a slack far larger than that
//! (and releasing them in timestamp order) gives a sorted stream.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::event::Event;

/// Held-back events are released once they are this much older than the
/// newest event seen.
pub const SLACK_NS: u64 = 2_000_000;

#[derive(Default)]
pub struct Reorder {
    heap: BinaryHeap<Reverse<(u64, u64, Slot)>>,
    seq: u64,
    newest: u64,
    released: u64,
    late: u64,
}

/// Wrapper that lets `Event` sit in the heap; ordering uses only (ts, seq).
#[derive(Clone, Copy, Debug)]
struct Slot(Event);

impl PartialEq for Slot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Slot {}
impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Slot {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Reorder {
    pub fn push(&mut self, e: Event) {
        if e.ts < self.released {
            // Older than something already released: keep it, count it.
            self.late += 1;
        }
        self.newest = self.newest.max(e.ts);
        self.seq += 1;
        self.heap.push(Reverse((e.ts, self.seq, Slot(e))));
    }

    /// Release events old enough to be in final order.
    pub fn drain_ready(&mut self, mut out: impl FnMut(Event)) {
        let limit = self.newest.saturating_sub(SLACK_NS);
        while let Some(Reverse((ts, _, _))) = self.heap.peek() {
            if *ts > limit {
                break;
            }
            let Reverse((ts, _, Slot(e))) = self.heap.pop().expect("peeked");
            self.released = ts;
            out(e);
        }
    }

    /// Release everything (at the end of a trace).
    pub fn drain_all(&mut self, mut out: impl FnMut(Event)) {
        while let Some(Reverse((ts, _, Slot(e)))) = self.heap.pop() {
            self.released = ts;
            out(e);
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Events that arrived after a newer one had been released.
    pub fn late(&self) -> u64 {
        self.late
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn sorts_within_the_slack_and_holds_back_recent_events() {
        let mut r = Reorder::default();
        for ts in [10, 5, 7, SLACK_NS + 20, SLACK_NS + 6] {
            r.push(switch(ts, 0, task(101), 0, task(0)));
        }
        let mut out = vec![];
        r.drain_ready(|e| out.push(e.ts));
        assert_eq!(out, vec![5, 7, 10]);
        r.drain_all(|e| out.push(e.ts));
        assert_eq!(out, vec![5, 7, 10, SLACK_NS + 6, SLACK_NS + 20]);
        assert_eq!(r.late(), 0);
        assert!(r.is_empty());
    }

    #[test]
    fn counts_events_that_arrive_too_late() {
        let mut r = Reorder::default();
        r.push(switch(3 * SLACK_NS, 0, task(101), 0, task(0)));
        r.push(switch(SLACK_NS, 0, task(101), 0, task(0)));
        r.drain_ready(|_| {});
        r.push(switch(1, 0, task(101), 0, task(0)));
        assert_eq!(r.late(), 1);
        assert_eq!(r.len(), 2);
    }
}
