//! Puts events from the shared ring buffer back into timestamp order.
//!
//! Each CPU stages its records and writes them to the shared ring buffer in
//! batches (`schedtrace_common::Stage`): a batch is written when it is full, when
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
pub(crate) const SLACK_NS: u64 = 25_000_000;

/// Events recorded on CPUs numbered this high or higher share one queue
/// (only possible with corrupt input; ordering stays right, just slower).
const MAX_QUEUES: usize = 4096;

/// Position of an event in the output order: timestamp, then arrival.
type Key = (u64, u64);

#[derive(Default)]
pub(crate) struct Reorder {
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
    pub(crate) fn push(&mut self, e: Event) {
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
    pub(crate) fn drain_ready(&mut self, mut out: impl FnMut(Event)) {
        let limit = self.newest.saturating_sub(SLACK_NS);
        while let Some(e) = self.pop_until(limit) {
            out(e);
        }
    }

    /// Release everything (at the end of a trace).
    pub(crate) fn drain_all(&mut self, mut out: impl FnMut(Event)) {
        while let Some(e) = self.pop_until(u64::MAX) {
            out(e);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Events that arrived after a newer one had been released.
    pub(crate) fn late(&self) -> u64 {
        self.late
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn ev(ts: u64, cpu: u32) -> Event {
        switch(ts, cpu, task(101), 0, task(0))
    }

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
    fn a_late_event_goes_out_first_at_the_next_release() {
        let mut r = Reorder::default();
        r.push(ev(SLACK_NS, 0));
        r.push(ev(3 * SLACK_NS, 0));
        let mut out = vec![];
        r.drain_ready(|e| out.push(e.ts));
        assert_eq!(out, vec![SLACK_NS]);
        // Older than what was released: it is counted, and leaves first.
        // The next one is newer than everything released: not late.
        r.push(ev(5, 1));
        r.push(ev(SLACK_NS + 1, 1));
        assert_eq!(r.late(), 1);
        r.drain_all(|e| out.push(e.ts));
        assert_eq!(out, vec![SLACK_NS, 5, SLACK_NS + 1, 3 * SLACK_NS]);
    }

    #[test]
    fn equal_timestamps_keep_their_arrival_order() {
        let mut r = Reorder::default();
        // CPU tells the events apart; three share ts 50, one of them
        // arrives after a newer event and is sorted in.
        r.push(ev(50, 0));
        r.push(ev(50, 1));
        r.push(ev(60, 0));
        r.push(ev(50, 2));
        r.push(ev(40, 3));
        let mut out = vec![];
        r.drain_all(|e| out.push((e.ts, e.cpu)));
        assert_eq!(out, vec![(40, 3), (50, 0), (50, 1), (50, 2), (60, 0)]);
    }

    /// Two CPUs' streams, each in order, interleaved in the ring buffer with
    /// jitter below the slack: the output is sorted and complete, whatever
    /// the drain points.
    #[test]
    fn interleaved_cpus_come_out_sorted() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut r = Reorder::default();
        let mut out: Vec<(u64, u32)> = vec![];
        let mut sent = 0;
        let mut ts = [1_000_000u64; 2];
        for i in 0..20_000 {
            let cpu = (next() % 2) as usize;
            ts[cpu] += 1 + next() % 500;
            r.push(ev(ts[cpu], cpu as u32));
            sent += 1;
            if i % 997 == 0 {
                r.drain_ready(|e| out.push((e.ts, e.cpu)));
            }
        }
        r.drain_all(|e| out.push((e.ts, e.cpu)));
        assert_eq!(out.len(), sent);
        assert!(out.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(r.late(), 0);
    }

    /// Same input as the former heap: same output, for random arrival
    /// orders within the slack.
    #[test]
    fn matches_a_full_sort() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut input = vec![];
        let mut t = 0u64;
        for i in 0..5_000u32 {
            t += next() % 300;
            let jitter = next() % 50_000;
            input.push(ev(t.saturating_sub(jitter), i));
        }
        let mut r = Reorder::default();
        let mut out = vec![];
        for (i, e) in input.iter().enumerate() {
            r.push(*e);
            if i % 100 == 0 {
                r.drain_ready(|e| out.push(e));
            }
        }
        r.drain_all(|e| out.push(e));
        let mut want = input.clone();
        want.sort_by_key(|e| e.ts); // stable, like the reorder buffer
        assert_eq!(out, want);
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
