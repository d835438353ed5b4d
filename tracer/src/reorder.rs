//! Puts events from the shared ring buffer back into timestamp order.
//!
//! Each CPU stages its records and writes them to the shared ring buffer in
//! batches (`tracer_common::Stage`): a batch is written when it is full, when
//! its CPU goes idle, or at the first program run (at the latest the timer
//! tick, 4 ms at HZ=250) after its oldest record is `STAGE_MAX_AGE_NS` old. So
//! one CPU's records can reach us several milliseconds after another's newer
//! ones. Holding events back by a slack well above that bound (and releasing
//! them in timestamp order) gives a sorted stream.

//!
//! The records of one CPU arrive nearly in order (only a record written
//! from an interrupt can overtake the stage it interrupted), so events are
//! kept in one sorted queue per CPU, appended at the back in the common case,
//! and released by merging the queues' fronts: each event costs a push and
//! a pop on a heap with one entry per CPU, not one per held-back event.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::event::Event;

/// Held-back events are released once they are this much older than the
/// newest event seen: well above the staging delay (2 ms, plus a 4 ms tick).
pub const SLACK_NS: u64 = 25_000_000;

/// Events recorded on CPUs numbered this high or higher share one queue
/// (only possible with corrupt input; ordering stays right, just slower).
const MAX_QUEUES: usize = 4096;

/// Position of an event in the output order: timestamp, then arrival.
type Key = (u64, u64);

#[derive(Default)]
pub struct Reorder {
    /// Per CPU, sorted by key.
    queues: Vec<VecDeque<(Key, Event)>>,
    /// The front key of every non-empty queue (and stale entries, dropped
    /// when popped: an entry is live while its queue's front has its key).
    fronts: BinaryHeap<Reverse<(Key, usize)>>,
    len: usize,
    seq: u64,
    newest: u64,
    released: u64,
    late: u64,
}

impl Reorder {
    pub fn push(&mut self, e: Event) {
        if e.ts < self.released {
            // Older than something already released: keep it, count it.
            self.late += 1;
        }
        self.newest = self.newest.max(e.ts);
        self.seq += 1;
        let key = (e.ts, self.seq);
        let q = (e.cpu as usize).min(MAX_QUEUES - 1);
        if q >= self.queues.len() {
            self.queues.resize_with(q + 1, VecDeque::new);
        }
        let queue = &mut self.queues[q];
        match queue.back() {
            Some((last, _)) if *last > key => {
                let at = queue.partition_point(|(k, _)| *k <= key);
                queue.insert(at, (key, e));
                if at == 0 {
                    self.fronts.push(Reverse((key, q)));
                }
            }
            _ => {
                queue.push_back((key, e));
                if queue.len() == 1 {
                    self.fronts.push(Reverse((key, q)));
                }
            }
        }
        self.len += 1;
    }

    /// The oldest held-back event if its timestamp is at most `limit`.
    fn pop_until(&mut self, limit: u64) -> Option<Event> {
        while let Some(&Reverse((key, q))) = self.fronts.peek() {
            if key.0 > limit {
                return None;
            }
            self.fronts.pop();
            let queue = &mut self.queues[q];
            if queue.front().map(|(k, _)| *k) != Some(key) {
                continue; // stale
            }
            let (_, e) = queue.pop_front().expect("front checked");
            if let Some((next, _)) = queue.front() {
                self.fronts.push(Reverse((*next, q)));
            }
            self.len -= 1;
            self.released = key.0;
            return Some(e);
        }
        None
    }

    /// Release events old enough to be in final order.
    pub fn drain_ready(&mut self, mut out: impl FnMut(Event)) {
        let limit = self.newest.saturating_sub(SLACK_NS);
        while let Some(e) = self.pop_until(limit) {
            out(e);
        }
    }

    /// Release everything (at the end of a trace).
    pub fn drain_all(&mut self, mut out: impl FnMut(Event)) {
        while let Some(e) = self.pop_until(u64::MAX) {
            out(e);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
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

    #[test]
    fn merges_a_late_batch_from_another_cpu() {
        let mut r = Reorder::default();
        // CPU 0 streams; CPU 1's staged batch (older) arrives afterwards.
        for ts in [100, 200, 300, 400] {
            r.push(switch(ts, 0, task(101), 0, task(0)));
        }
        for ts in [150, 250, 350] {
            r.push(switch(ts, 1, task(102), 0, task(0)));
        }
        let mut out = vec![];
        r.drain_all(|e| out.push((e.ts, e.cpu)));
        assert_eq!(
            out,
            vec![
                (100, 0),
                (150, 1),
                (200, 0),
                (250, 1),
                (300, 0),
                (350, 1),
                (400, 0)
            ]
        );
        assert_eq!(r.late(), 0);
    }

    #[test]
    fn an_interrupt_record_that_overtook_its_stage_is_put_back_in_place() {
        let mut r = Reorder::default();
        // An interrupt's record (ts 30) reaches the ring before the stage
        // it interrupted (ts 10, 20, 40).
        for ts in [30, 10, 20, 40] {
            r.push(switch(ts, 0, task(101), 0, task(0)));
        }
        let mut out = vec![];
        r.drain_all(|e| out.push(e.ts));
        assert_eq!(out, vec![10, 20, 30, 40]);
    }

    #[test]
    fn equal_timestamps_keep_their_arrival_order() {
        let mut r = Reorder::default();
        r.push(switch(5, 1, task(1), 0, task(0)));
        r.push(switch(5, 0, task(2), 0, task(0)));
        r.push(switch(5, 1, task(3), 0, task(0)));
        let mut out = vec![];
        r.drain_all(|e| match e.kind {
            crate::event::EventKind::Switch { prev, .. } => out.push(prev.tid),
            _ => unreachable!(),
        });
        assert_eq!(out, vec![1, 2, 3]);
    }

    fn tid(e: &Event) -> u32 {
        match e.kind {
            crate::event::EventKind::Switch { prev, .. } => prev.tid,
            _ => unreachable!("only switches here"),
        }
    }

    proptest::proptest! {
        /// Event `i` has timestamp `i * step + jitter`, with jitter below the
        /// slack: CPUs interleave and arrive late, but never beyond the
        /// slack. Whatever the interleaving, nothing is late, and the output
        /// is the input sorted by (timestamp, arrival), complete.
        #[test]
        fn output_is_sorted_and_complete(
            input in proptest::collection::vec((0u64..SLACK_NS, 0u32..4), 0..300),
            step in 0u64..SLACK_NS / 4,
            drain_every in 1usize..50,
        ) {
            let mut r = Reorder::default();
            let mut out: Vec<(u64, u32)> = vec![];
            let mut want: Vec<(u64, u32)> = vec![];
            for (i, &(jitter, cpu)) in input.iter().enumerate() {
                let ts = i as u64 * step + jitter;
                want.push((ts, i as u32));
                r.push(switch(ts, cpu, task(i as u32), 0, task(0)));
                if i % drain_every == 0 {
                    r.drain_ready(|e| out.push((e.ts, tid(&e))));
                }
            }
            r.drain_all(|e| out.push((e.ts, tid(&e))));
            want.sort();
            proptest::prop_assert_eq!(r.late(), 0);
            proptest::prop_assert!(r.is_empty());
            proptest::prop_assert_eq!(out, want);
        }
    }
}
