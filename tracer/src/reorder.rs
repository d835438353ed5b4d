//! Puts events from the shared ring buffer back into timestamp order.
//!
//! Records reach the ring buffer in reservation order, and each CPU takes
//! its timestamp just before reserving, so two CPUs can interleave by a few
//! hundred nanoseconds. Holding events back by a slack far larger than that
//! (and releasing them in timestamp order) gives a sorted stream.
//!
//! Because the stream is almost sorted already, the held-back events live
//! in a `VecDeque` kept in order: an event goes on the back when it is the
//! newest (nearly always), otherwise a binary search finds its place, which
//! is a few slots from the back. Releasing pops from the front. Equal
//! timestamps keep their arrival order. No allocation per event once the
//! deque has grown to the window's size.

use std::collections::VecDeque;

use crate::event::Event;

/// Held-back events are released once they are this much older than the
/// newest event seen.
pub const SLACK_NS: u64 = 2_000_000;

#[derive(Default)]
pub struct Reorder {
    /// Held-back events, sorted by `ts` (stable: ties in arrival order).
    queue: VecDeque<Event>,
    newest: u64,
    released: u64,
    late: u64,
    inserted: u64,
}

impl Reorder {
    pub fn push(&mut self, e: Event) {
        if e.ts < self.released {
            // Older than something already released: keep it (it goes out
            // first at the next release), count it.
            self.late += 1;
        }
        self.newest = self.newest.max(e.ts);
        match self.queue.back() {
            Some(b) if b.ts > e.ts => {
                // After every held event with ts <= e.ts: ties stay in
                // arrival order.
                let at = self.queue.partition_point(|x| x.ts <= e.ts);
                self.queue.insert(at, e);
                self.inserted += 1;
            }
            _ => self.queue.push_back(e),
        }
    }

    /// Release events old enough to be in final order.
    pub fn drain_ready(&mut self, mut out: impl FnMut(Event)) {
        let limit = self.newest.saturating_sub(SLACK_NS);
        while let Some(f) = self.queue.front() {
            if f.ts > limit {
                break;
            }
            let e = self.queue.pop_front().expect("peeked");
            self.released = self.released.max(e.ts);
            out(e);
        }
    }

    /// Release everything (at the end of a trace).
    pub fn drain_all(&mut self, mut out: impl FnMut(Event)) {
        while let Some(e) = self.queue.pop_front() {
            self.released = self.released.max(e.ts);
            out(e);
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Events that arrived after a newer one had been released.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Events that arrived older than the newest held one (sorted in place
    /// rather than appended).
    pub fn out_of_order(&self) -> u64 {
        self.inserted
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
            r.push(ev(ts, 0));
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
        r.push(ev(3 * SLACK_NS, 0));
        r.push(ev(SLACK_NS, 0));
        r.drain_ready(|_| {});
        r.push(ev(1, 0));
        assert_eq!(r.late(), 1);
        assert_eq!(r.len(), 2);
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
        assert_eq!(r.out_of_order(), 2);
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
}
