//! Puts events from the shared ring buffer back into timestamp order.
//!
//! Each CPU stages its records and writes them to the shared ring buffer in
//! batches (`schedtrace_common::Stage`): a batch is written when it is full,
//! when its CPU goes idle, or at the first program run (at the latest the
//! timer tick) after its oldest record is `STAGE_MAX_AGE_NS` old. So one
//! CPU's records can reach us several milliseconds after another's newer
//! ones.
//!
//! An event is released only once every CPU has provably moved past it,
//! as perf's finished rounds and Perfetto's sorter do. Each CPU tells how
//! far it has got with *marks*: "every record I time-stamped up to T is in
//! the ring buffer before this point". A stage written out is one (its
//! last record's time: programs take a timestamp only while they hold the
//! stage, so nothing older can still be on its way), and so is a
//! `kind::MARK` record, which the capture has a CPU write on demand (the
//! heartbeat, `Probes::mark`) when it has said nothing since the last read:
//! an idle CPU, or one running other processes, does not hold the others
//! back. Events up to the oldest CPU's mark are released.
//!
//! On a kernel where the heartbeat cannot run, events are instead held
//! back until they are [`SLACK_NS`] older than the newest event seen, a
//! bound well above the staging delay, but a guess; the capture says which
//! order it used. Either way, an event that arrives older than one already
//! released is *late*: it is still handed on (first at the next release),
//! and counted per CPU.
//!
//! The records of one CPU arrive nearly in order (only a record written
//! from an interrupt can overtake the stage it interrupted), so events are
//! kept in one sorted queue per CPU, appended at the back in the common case,
//! and released by merging the queues' fronts: each event costs a push and
//! a pop on a heap with one entry per CPU, not one per held-back event.

use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::{BinaryHeap, VecDeque};

use crate::event::Event;

/// Without marks: held-back events are released once they are this much
/// older than the newest event seen (well above the staging delay, 2 ms
/// plus a 4 ms tick).
pub(crate) const SLACK_NS: u64 = 25_000_000;

/// With marks, a CPU whose mark lags the newest event by more than this
/// no longer holds the others back (its later events are counted late).
/// Not how order is kept: a bound on what is held in memory should the
/// heartbeat fail on one CPU again and again (it runs every drain, tens of
/// milliseconds apart; a CPU can only refuse it while one of our programs
/// runs there, for microseconds).
pub(crate) const MAX_HOLD_NS: u64 = 2_000_000_000;

/// Events recorded on CPUs numbered this high or higher share one queue
/// (only possible with corrupt input; ordering stays right, just slower).
const MAX_QUEUES: usize = 4096;

/// Position of an event in the output order: timestamp, then arrival.
type Key = (u64, u64);

/// How events are known to be in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Order {
    /// Released once every one of `ncpus` CPUs has marked its progress past them.
    Marks { ncpus: u32 },
    /// Released once [`SLACK_NS`] older than the newest event.
    Slack,
}

pub(crate) struct Reorder {
    order: Order,
    /// Per CPU, sorted by key.
    queues: Vec<VecDeque<(Key, Event)>>,
    /// The front key of every non-empty queue (and stale entries, dropped
    /// when popped: an entry is live while its queue's front has its key).
    fronts: BinaryHeap<Reverse<(Key, usize)>>,
    len: usize,
    seq: u64,
    newest: u64,
    /// Timestamp of the last event released.
    released: u64,
    /// Per CPU: every record it time-stamped up to here has been pushed.
    marks: Vec<u64>,
    /// Per CPU: events that arrived older than one already released.
    late: Vec<u64>,
    /// Releases that went past a CPU's mark ([`MAX_HOLD_NS`]).
    forced: u64,
}

impl Reorder {
    pub(crate) fn new(order: Order) -> Self {
        let ncpus = match order {
            Order::Marks { ncpus } => ncpus as usize,
            Order::Slack => 0,
        };
        Reorder {
            order,
            queues: Vec::new(),
            fronts: BinaryHeap::new(),
            len: 0,
            seq: 0,
            newest: 0,
            released: 0,
            marks: vec![0; ncpus],
            late: vec![0; ncpus],
            forced: 0,
        }
    }

    pub(crate) fn order(&self) -> Order {
        self.order
    }

    /// From now on, release by [`SLACK_NS`] (the heartbeat stopped working).
    pub(crate) fn fall_back_to_slack(&mut self) {
        self.order = Order::Slack;
    }

    pub(crate) fn push(&mut self, e: Event) {
        let q = (e.cpu as usize).min(MAX_QUEUES - 1);
        if e.ts < self.released {
            // Older than something already released: keep it, count it.
            if self.late.len() <= q {
                self.late.resize(q + 1, 0);
            }
            self.late[q] += 1;
        }
        self.newest = self.newest.max(e.ts);
        self.seq += 1;
        let key = (e.ts, self.seq);
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

    /// CPU `cpu` has handed over every record it time-stamped up to `ts`.
    /// A CPU beyond the count given at the start is ignored (it cannot
    /// hold anything back, since it is not waited for).
    pub(crate) fn mark(&mut self, cpu: u32, ts: u64) {
        if let Some(m) = self.marks.get_mut(cpu as usize) {
            *m = (*m).max(ts);
        }
    }

    /// How far CPU `cpu` is known to have got (0: not at all).
    pub(crate) fn mark_of(&self, cpu: u32) -> u64 {
        self.marks.get(cpu as usize).copied().unwrap_or(0)
    }

    /// Hand `out` the oldest held-back event if its timestamp is at most
    /// `limit`, then drop it; false when there is none. Handed out where it
    /// is held: an event is 192 bytes, and moving it out copied it. The
    /// heap's top is replaced by the queue's next front in place (one sift
    /// instead of a pop and a push).
    fn pop_until(&mut self, limit: u64, out: &mut impl FnMut(&Event)) -> bool {
        while let Some(mut top) = self.fronts.peek_mut() {
            let Reverse((key, q)) = *top;
            if key.0 > limit {
                return false;
            }
            let queue = &mut self.queues[q];
            let Some((_, e)) = queue.front().filter(|(k, _)| *k == key) else {
                PeekMut::pop(top);
                continue; // stale
            };
            out(e);
            queue.pop_front();
            match queue.front() {
                Some((next, _)) => *top = Reverse((*next, q)),
                None => drop(PeekMut::pop(top)),
            }
            self.len -= 1;
            self.released = self.released.max(key.0);
            return true;
        }
        false
    }

    /// Up to where every CPU has handed over its records (the marks'), or
    /// is taken to have (see [`Self::limit`]), without counting anything.
    pub(crate) fn complete_until(&self) -> u64 {
        match self.order {
            Order::Slack => self.newest.saturating_sub(SLACK_NS),
            Order::Marks { .. } => {
                let (proven, bound) = self.proven_and_bound();
                proven.max(bound)
            }
        }
    }

    /// How far every CPU's marks have got, and how far events are
    /// released without them (`MAX_HOLD_NS` behind the newest).
    fn proven_and_bound(&self) -> (u64, u64) {
        let proven = self.marks.iter().copied().min().unwrap_or(u64::MAX);
        (proven, self.newest.saturating_sub(MAX_HOLD_NS))
    }

    /// Up to where events are known to be in final order.
    fn limit(&mut self) -> u64 {
        if let Order::Marks { .. } = self.order {
            let (proven, bound) = self.proven_and_bound();
            if bound > proven && self.fronts.peek().is_some_and(|f| f.0.0.0 <= bound) {
                self.forced += 1;
                if self.forced == 1 {
                    log::warn!(
                        "a CPU has marked no progress for {} s: releasing events without it",
                        MAX_HOLD_NS / 1_000_000_000
                    );
                }
            }
        }
        self.complete_until()
    }

    /// Release events known to be in final order.
    pub(crate) fn drain_ready(&mut self, mut out: impl FnMut(&Event)) {
        let limit = self.limit();
        while self.pop_until(limit, &mut out) {}
    }

    /// Release everything (at the end of a trace).
    pub(crate) fn drain_all(&mut self, mut out: impl FnMut(&Event)) {
        while self.pop_until(u64::MAX, &mut out) {}
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the per-CPU queues have allocated: what they held at most
    /// (a CPU whose marks come late makes them grow), for memory checks.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queues
            .iter()
            .map(|q| q.capacity() * size_of::<(Key, Event)>())
            .sum()
    }

    /// Events that arrived after a newer one had been released.
    pub(crate) fn late(&self) -> u64 {
        self.late.iter().sum()
    }

    /// [`Self::late`] per CPU.
    pub(crate) fn late_per_cpu(&self) -> &[u64] {
        &self.late
    }

    /// Releases that went past a CPU's mark.
    pub(crate) fn forced(&self) -> u64 {
        self.forced
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
        let mut r = Reorder::new(Order::Slack);
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
        let mut r = Reorder::new(Order::Slack);
        r.push(switch(3 * SLACK_NS, 0, task(101), 0, task(0)));
        r.push(switch(SLACK_NS, 0, task(101), 0, task(0)));
        r.drain_ready(|_| {});
        r.push(switch(1, 0, task(101), 0, task(0)));
        assert_eq!(r.late(), 1);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn merges_a_late_batch_from_another_cpu() {
        let mut r = Reorder::new(Order::Slack);
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
        let mut r = Reorder::new(Order::Slack);
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
        let mut r = Reorder::new(Order::Slack);
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
        let mut r = Reorder::new(Order::Slack);
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
        let mut r = Reorder::new(Order::Slack);
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
        let mut r = Reorder::new(Order::Slack);
        let mut out = vec![];
        for (i, e) in input.iter().enumerate() {
            r.push(*e);
            if i % 100 == 0 {
                r.drain_ready(|e| out.push(*e));
            }
        }
        r.drain_all(|e| out.push(*e));
        let mut want = input.clone();
        want.sort_by_key(|e| e.ts); // stable, like the reorder buffer
        assert_eq!(out, want);
    }

    fn released(r: &mut Reorder) -> Vec<(u64, u32)> {
        let mut out = vec![];
        r.drain_ready(|e| out.push((e.ts, e.cpu)));
        out
    }

    #[test]
    fn with_marks_an_event_waits_until_every_cpu_has_passed_it() {
        let mut r = Reorder::new(Order::Marks { ncpus: 2 });
        for ts in [10, 20, 30] {
            r.push(ev(ts, 0));
        }
        r.mark(0, 30);
        // CPU 1 has said nothing: it may still hold something older.
        assert_eq!(released(&mut r), vec![]);
        r.mark(1, 15);
        assert_eq!(released(&mut r), vec![(10, 0)]);
        // Its batch arrives, older than what CPU 0 sent: merged in place.
        r.push(ev(18, 1));
        r.push(ev(25, 1));
        r.mark(1, 40);
        assert_eq!(released(&mut r), vec![(18, 1), (20, 0), (25, 1), (30, 0)]);
        assert_eq!(r.late(), 0);
        assert_eq!(r.forced(), 0);
    }

    #[test]
    fn an_idle_cpu_that_answers_the_heartbeat_does_not_hold_back_release() {
        let mut r = Reorder::new(Order::Marks { ncpus: 2 });
        let mut out = vec![];
        // CPU 0 streams; CPU 1 is idle and only ever writes heartbeat marks.
        for tick in 1..=5u64 {
            let t = tick * 20_000_000;
            for k in 0..4 {
                r.push(ev(t - 15_000_000 + k * 1_000_000, 0));
            }
            r.mark(0, t - 11_000_000); // its last stage written out
            r.mark(1, t); // heartbeat answered
            out.extend(released(&mut r));
        }
        // Everything up to CPU 0's last mark is out, in order, nothing late.
        assert_eq!(out.len(), 20);
        assert!(out.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(r.late(), 0);
    }

    #[test]
    fn a_cpu_that_never_marks_holds_back_release_only_up_to_a_bound() {
        let mut r = Reorder::new(Order::Marks { ncpus: 2 });
        let s = 1_000_000_000;
        for ts in [s, 2 * s, 3 * s, 4 * s] {
            r.push(ev(ts, 0));
            r.mark(0, ts);
        }
        // CPU 1 never answers: events older than MAX_HOLD_NS behind the
        // newest go out anyway, and that is counted.
        assert_eq!(released(&mut r), vec![(s, 0), (2 * s, 0)]);
        assert_eq!(r.forced(), 1);
        // An event of CPU 1 from before what was released is late, on CPU 1.
        r.push(ev(s + 5, 1));
        assert_eq!(r.late_per_cpu(), &[0, 1]);
        let mut rest = vec![];
        r.drain_all(|e| rest.push((e.ts, e.cpu)));
        assert_eq!(rest, vec![(s + 5, 1), (3 * s, 0), (4 * s, 0)]);
    }

    #[test]
    fn a_late_event_is_counted_on_its_cpu_and_goes_out_first() {
        let mut r = Reorder::new(Order::Marks { ncpus: 3 });
        r.push(ev(100, 0));
        r.push(ev(200, 2));
        for cpu in 0..3 {
            r.mark(cpu, 300);
        }
        assert_eq!(released(&mut r), vec![(100, 0), (200, 2)]);
        // A CPU broke its promise (or a clock went back): counted, not lost.
        r.push(ev(150, 1));
        r.push(ev(400, 0));
        assert_eq!(r.late(), 1);
        assert_eq!(r.late_per_cpu(), &[0, 1, 0]);
        for cpu in 0..3 {
            r.mark(cpu, 500);
        }
        assert_eq!(released(&mut r), vec![(150, 1), (400, 0)]);
    }

    #[test]
    fn marks_never_go_back_and_unknown_cpus_are_not_waited_for() {
        let mut r = Reorder::new(Order::Marks { ncpus: 1 });
        r.mark(0, 50);
        r.mark(0, 10);
        assert_eq!(r.mark_of(0), 50);
        r.mark(7, 1_000);
        assert_eq!(r.mark_of(7), 0);
        r.push(ev(40, 7));
        assert_eq!(released(&mut r), vec![(40, 7)]);
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
            let mut r = Reorder::new(Order::Slack);
            let mut out: Vec<(u64, u32)> = vec![];
            let mut want: Vec<(u64, u32)> = vec![];
            for (i, &(jitter, cpu)) in input.iter().enumerate() {
                let ts = i as u64 * step + jitter;
                want.push((ts, i as u32));
                r.push(switch(ts, cpu, task(i as u32), 0, task(0)));
                if i % drain_every == 0 {
                    r.drain_ready(|e| out.push((e.ts, tid(e))));
                }
            }
            r.drain_all(|e| out.push((e.ts, tid(e))));
            want.sort();
            proptest::prop_assert_eq!(r.late(), 0);
            proptest::prop_assert!(r.is_empty());
            proptest::prop_assert_eq!(out, want);
        }

        /// Each CPU time-stamps its events in order and hands them over in
        /// batches of random size, each followed by its mark, while the
        /// batches of different CPUs arrive in any order. Whatever the
        /// interleaving and the drain points, nothing is late and the
        /// output is every event, sorted.
        #[test]
        fn with_marks_output_is_sorted_and_complete(
            gaps in proptest::collection::vec((1u64..5_000_000, 0u32..3, 1usize..6), 1..200),
            drain_every in 1usize..20,
        ) {
            // Per CPU: its events, cut into batches.
            let mut batches: Vec<Vec<Vec<u64>>> = vec![vec![]; 3];
            let mut clock = 0;
            for &(gap, cpu, batch) in &gaps {
                clock += gap;
                let b = &mut batches[cpu as usize];
                match b.last_mut() {
                    Some(last) if last.len() < batch => last.push(clock),
                    _ => b.push(vec![clock]),
                }
            }
            // Batches leave each CPU in order; CPUs interleave by a fixed
            // pseudo-random choice.
            let mut r = Reorder::new(Order::Marks { ncpus: 3 });
            let mut next = [0usize; 3];
            let mut out: Vec<u64> = vec![];
            let mut pick = 0x9e37_79b9u64;
            let mut sent = 0;
            while (0..3).any(|c| next[c] < batches[c].len()) {
                pick = pick.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let c = (pick >> 33) as usize % 3;
                let Some(batch) = batches[c].get(next[c]) else { continue };
                next[c] += 1;
                for &ts in batch {
                    r.push(ev(ts, c as u32));
                }
                r.mark(c as u32, *batch.last().expect("non-empty"));
                sent += 1;
                if sent % drain_every == 0 {
                    r.drain_ready(|e| out.push(e.ts));
                }
            }
            // The heartbeat at the end: every CPU is past everything.
            for c in 0..3 {
                r.mark(c, clock);
            }
            r.drain_ready(|e| out.push(e.ts));
            let mut want: Vec<u64> = batches.iter().flatten().flatten().copied().collect();
            want.sort();
            proptest::prop_assert_eq!(r.late(), 0);
            proptest::prop_assert!(r.is_empty());
            proptest::prop_assert_eq!(out, want);
        }
    }
}
