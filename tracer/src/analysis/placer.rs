//! Puts back the moments threads became runnable in a trace taken without
//! wakeups (`--no-wakeups`).
//!
//! Such a trace has no event when a thread is woken; each switch-in carries
//! instead the kernel's own count of the time the thread has spent waiting
//! on a run queue ([`KernelWait`]). The growth of that count since the
//! thread's previous switch-in is all the waiting it did while off the CPU,
//! and that waiting is the end of the gap: a thread that stops waiting runs.
//! So the thread became runnable `wait` ns before its switch-in, and this
//! module inserts a [`Item::Runnable`] mark there, so that the analysis sees
//! the stream a traced wakeup would have given (without the waker).
//!
//! A wait is known only at the switch-in that ends it, so the mark goes back
//! in time: events are held for [`LAG_NS`] and the mark is put among them.
//! A wait longer than that starts before the oldest event still held; its
//! mark then comes at that event and carries the true start in `since`.

use std::collections::{BTreeMap, VecDeque};

use super::TidMap;
use crate::event::{Event, EventKind, KernelWait, SwitchReason, Task};

/// How long events are held so that a wait's start can be put among them.
/// Costs memory in proportion to the event rate: 12 MB at 1M events/s.
pub(crate) const LAG_NS: u64 = 100_000_000;

/// An event, or a mark the placer inferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    Event(Event),
    /// `task` became runnable at `since` (delivered at `ts`, which is later
    /// than `since` only for a wait longer than [`LAG_NS`]).
    Runnable {
        ts: u64,
        since: u64,
        task: Task,
    },
}

impl Item {
    pub(crate) fn ts(&self) -> u64 {
        match self {
            Item::Event(e) => e.ts,
            Item::Runnable { ts, .. } => *ts,
        }
    }
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct Placer {
    /// Events in arrival (time) order.
    held: VecDeque<Event>,
    /// Marks by (time, arrival), merged with `held` as they are handed out.
    marks: BTreeMap<(u64, u64), (u64, Task)>,
    seq: u64,
    /// Time of the latest item handed out.
    released: u64,
    /// Each thread's `run_delay` after its latest switch-in (0 for a
    /// thread created in the trace: the kernel zeroes it at fork).
    run_delay: TidMap<u64>,
}

impl Placer {
    /// Take `e`; hand out, in time order, everything older than [`LAG_NS`]
    /// before it.
    pub(crate) fn push(&mut self, e: &Event, out: &mut impl FnMut(Item)) {
        match e.kind {
            EventKind::Switch {
                prev,
                next,
                next_wait,
                ..
            } => {
                if e.switch_reason() == Some(SwitchReason::Dead) {
                    self.run_delay.remove(&prev.tid);
                }
                if let Some(w) = next_wait {
                    self.waited(e.ts, &next, w);
                }
            }
            EventKind::Fork { child, .. } => {
                self.run_delay.insert(child.tid, 0);
            }
            // A thread other than the leader exec'd: it carries on under
            // the leader's TID, with its own run delay.
            EventKind::Exec { task, old_tid } if old_tid != task.tid => {
                match self.run_delay.remove(&old_tid) {
                    Some(rd) => self.run_delay.insert(task.tid, rd),
                    None => self.run_delay.remove(&task.tid),
                };
            }
            _ => {}
        }
        self.held.push_back(*e);
        self.release(e.ts.saturating_sub(LAG_NS), out);
    }

    /// Hand out everything held.
    pub(crate) fn finish(&mut self, out: &mut impl FnMut(Item)) {
        self.release(u64::MAX, out);
    }

    /// Hand out, in time order, what is older than `upto` (a mark after the
    /// events of the same time: a thread preempted at `ts` is runnable from
    /// its switch-out on).
    fn release(&mut self, upto: u64, out: &mut impl FnMut(Item)) {
        loop {
            let event = self.held.front().map(|e| e.ts);
            let mark = self.marks.first_key_value().map(|(k, _)| k.0);
            let take_mark = match (event, mark) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(e), Some(m)) => m < e,
            };
            let ts = if take_mark { mark } else { event };
            if ts.is_none_or(|ts| ts >= upto) {
                break;
            }
            let item = if take_mark {
                self.pop_mark()
            } else {
                self.held.pop_front().map(Item::Event)
            };
            let Some(item) = item else { break };
            self.released = self.released.max(item.ts());
            out(item);
        }
    }

    fn pop_mark(&mut self) -> Option<Item> {
        let ((ts, _), (since, task)) = self.marks.pop_first()?;
        Some(Item::Runnable { ts, since, task })
    }

    /// `task` is switched in at `ts` after the wait `w` accounts.
    fn waited(&mut self, ts: u64, task: &Task, w: KernelWait) {
        let wait = match self.run_delay.insert(task.tid, w.run_delay_ns) {
            Some(before) => w.run_delay_ns.saturating_sub(before),
            // First seen here: of its waits, only the one ending now is known.
            None => w.queued_ns,
        };
        if wait == 0 {
            return;
        }
        let since = ts.saturating_sub(wait);
        self.seq += 1;
        self.marks
            .insert((since.max(self.released), self.seq), (since, *task));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{switch, task, with_wait};

    fn place(events: &[Event]) -> Vec<Item> {
        let mut p = Placer::default();
        let mut out = Vec::new();
        for e in events {
            p.push(e, &mut |i| out.push(i));
        }
        p.finish(&mut |i| out.push(i));
        out
    }

    fn marks(items: &[Item]) -> Vec<(u64, u64, u32)> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Runnable { ts, since, task } => Some((*ts, *since, task.tid)),
                Item::Event(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_wait_becomes_a_mark_before_its_switch_in() {
        let (a, b) = (task(101), task(102));
        let events = [
            // b is first seen waiting 300 ns (the part since it was queued).
            with_wait(switch(1_000, 0, a, 1, b), 5_000, 300),
            // b sleeps; a comes back after the run_delay grew by 400.
            with_wait(switch(2_000, 0, b, 1, a), 900, 900),
            with_wait(switch(3_000, 0, a, 1, b), 5_400, 400),
        ];
        let out = place(&events);
        assert_eq!(
            marks(&out),
            [(700, 700, 102), (1_100, 1_100, 101), (2_600, 2_600, 102)]
        );
        let ts: Vec<u64> = out.iter().map(Item::ts).collect();
        assert!(ts.is_sorted(), "{ts:?}");
        assert_eq!(out.len(), 6);
    }

    #[test]
    fn a_thread_created_in_the_trace_counts_from_zero() {
        let (a, c) = (task(101), task(103));
        let fork = Event {
            ts: 100,
            cpu: 0,
            kind: EventKind::Fork {
                parent: a,
                child: c,
            },
        };
        // `queued_ns` is only the last part of its wait (it was moved to
        // this CPU while waiting); the run delay has all of it.
        let events = [fork, with_wait(switch(1_000, 0, a, 1, c), 600, 200)];
        assert_eq!(marks(&place(&events)), [(400, 400, 103)]);
    }

    #[test]
    fn a_thread_that_execs_keeps_its_run_delay_under_the_leaders_tid() {
        let (leader, other) = (task(100), task(101));
        let exec = Event {
            ts: 2_000,
            cpu: 0,
            kind: EventKind::Exec {
                task: leader,
                old_tid: 101,
            },
        };
        let events = [
            with_wait(switch(1_000, 0, leader, 1, other), 700, 100),
            exec,
            // The thread that exec'd (now TID 100) waited 300 ns more, the
            // last 50 since it was last queued.
            with_wait(switch(3_000, 0, task(0), 0, leader), 1_000, 50),
        ];
        assert_eq!(
            marks(&place(&events)),
            [(900, 900, 101), (2_700, 2_700, 100)]
        );
    }

    #[test]
    fn no_wait_no_mark_and_unflagged_switches_pass_through() {
        let (a, b) = (task(101), task(102));
        let events = [
            with_wait(switch(1_000, 0, a, 0, b), 50, 0),
            switch(2_000, 0, b, 0, a),
            with_wait(switch(3_000, 0, a, 0, b), 50, 0),
        ];
        let out = place(&events);
        assert!(marks(&out).is_empty());
        assert_eq!(out, events.map(Item::Event));
    }

    #[test]
    fn a_wait_longer_than_the_lag_is_marked_at_the_oldest_held_event() {
        let (a, b) = (task(101), task(102));
        let late = 10 * LAG_NS;
        let events = [
            with_wait(switch(1_000, 0, a, 1, b), 0, 0),
            with_wait(switch(2_000, 0, b, 1, a), 0, 0),
            // a waits 2 lags for its next switch-in; meanwhile events on
            // CPU 1 move on, and the one at 1.5 lags before is handed out.
            switch(late - 3 * LAG_NS / 2, 1, task(0), 0, task(0)),
            switch(late - 1_000, 1, task(0), 0, task(0)),
            with_wait(switch(late, 0, b, 1, a), 2 * LAG_NS, 2 * LAG_NS),
        ];
        let out = place(&events);
        let m = marks(&out);
        assert_eq!(m, [(late - 3 * LAG_NS / 2, late - 2 * LAG_NS, 101)]);
        let ts: Vec<u64> = out.iter().map(Item::ts).collect();
        assert!(ts.is_sorted(), "{ts:?}");
    }
}
