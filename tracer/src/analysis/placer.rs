//! Puts back, in time order, what the kernel's counters say happened but
//! the event stream does not show: the moments threads became runnable in
//! a trace taken without wakeups (`--no-wakeups`), wakeups the stream
//! lacks, runs whose switch-in it lacks, and the `/proc` snapshots of the
//! counters (which come at the start and the end of the stream but belong
//! where they were read).
//!
//! **Waits.** A trace without wakeups has no event when a thread is woken;
//! each switch-in carries instead the kernel's own count of the time the
//! thread has spent waiting on a run queue ([`KernelWait`]). The growth of
//! that count since the thread's previous switch-in is all the waiting it
//! did while off the CPU, and that waiting is the end of the gap: a thread
//! that stops waiting runs. So the thread became runnable `wait` ns before
//! its switch-in, and a [`Item::Runnable`] mark goes there, so that the
//! analysis sees the stream a traced wakeup would have given (without the
//! waker). With wakeups traced, the same is done for a thread that went to
//! sleep and is switched in with no wakeup seen in between (the kernel's
//! stream lacks events whose current task it hides; see docs/accuracy.md).
//!
//! **Runs.** A switch-out whose thread was not on a CPU (its switch-in is
//! missing from the stream) carries the run's length on the run-queue clock
//! (`PrevCounters::run_clock_ns`): the run began that long before, on the
//! same CPU, and an [`Item::InferredRun`] mark goes there.
//!
//! A mark is known only at the record that tells it, so it goes back in
//! time: events are held for [`LAG_NS`] and the mark is put among them. A
//! mark older than that goes at the oldest event still held and carries its
//! true time in `since`.

use std::collections::{BTreeMap, VecDeque};

use crate::event::{Event, EventKind, KernelWait, SwitchReason, Task};
use crate::tid::TidMap;
use crate::trace::{Lost, ThreadCounters};

/// How long events are held so that a mark can be put among them, up to
/// [`MAX_HELD`] events.
pub(crate) const LAG_NS: u64 = 100_000_000;

/// The most events held: 100 ms at 650k events/s, 12.5 MB (192 bytes an
/// event). Past that rate the hold is shorter, and a mark older than it is
/// put at the oldest event still held, as one older than [`LAG_NS`] is.
/// Without the bound the hold grew with the peak rate (to 262k events,
/// 50 MB, at 1.3M events/s), so a longer capture at the same mean rate
/// could need twice the memory.
pub(crate) const MAX_HELD: usize = 65_000;

/// A wakeup at most this long before a thread's switch-out to sleep may
/// have raced with it (see `Analyzer::switch_out`): it still counts as the
/// wakeup that ends that sleep.
const WAKE_RACE_NS: u64 = 100_000;

/// An event, or a mark the placer inferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    Event(Event),
    /// `task` became runnable at `since` (delivered at `ts`, which is later
    /// than `since` only for a mark older than [`LAG_NS`]). `missing`: with
    /// wakeups traced, the wakeup that ended its sleep is not in the stream;
    /// `cpu` is where it was then switched in.
    Runnable {
        ts: u64,
        since: u64,
        task: Task,
        missing: bool,
        cpu: u32,
    },
    /// `task` ran on `cpu` from `since` (delivered at `ts`) until its next
    /// switch-out: its switch-in is not in the stream.
    InferredRun {
        ts: u64,
        since: u64,
        task: Task,
        cpu: u32,
    },
    /// A thread's counters from `/proc`, read at `ts`.
    Counters {
        ts: u64,
        counters: ThreadCounters,
    },
    /// Records were lost on a CPU (noticed at `lost.ts`).
    Lost(Lost),
}

impl Item {
    pub(crate) fn ts(&self) -> u64 {
        match self {
            Item::Event(e) => e.ts,
            Item::Runnable { ts, .. }
            | Item::InferredRun { ts, .. }
            | Item::Counters { ts, .. } => *ts,
            Item::Lost(l) => l.ts,
        }
    }
}

/// What the placer knows of one thread.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    /// `run_delay` after its latest switch-in (0 for a thread created in
    /// the trace: the kernel zeroes it at fork).
    run_delay: Option<u64>,
    /// On a CPU: its latest switch was a switch-in (`None`: no switch seen).
    on_cpu: Option<bool>,
    /// Its latest switch-out was to sleep (voluntary), and when.
    slept_at: Option<u64>,
    /// Its latest wakeup.
    woken_at: Option<u64>,
    /// A run was inferred since its latest switch-in.
    inferred: bool,
    /// `/proc` saw it asleep (not R) when read at this time, and no switch
    /// of it has been seen since.
    asleep_at: Option<u64>,
}

/// A mark waiting for its place, by (time, arrival).
type Marks = BTreeMap<(u64, u64), Item>;

/// See the module documentation.
pub(crate) struct Placer {
    /// Wakeups are traced (only missing ones get marks).
    wakeups: bool,
    /// The trace's start: no event before it is in the stream.
    start: u64,
    /// Events in arrival (time) order.
    held: VecDeque<Item>,
    marks: Marks,
    seq: u64,
    /// Time of the latest item handed out.
    released: u64,
    seen: TidMap<Seen>,
}

impl Placer {
    pub(crate) fn new(wakeups: bool, start: u64) -> Self {
        Placer {
            wakeups,
            start,
            held: VecDeque::new(),
            marks: Marks::new(),
            seq: 0,
            released: 0,
            seen: TidMap::default(),
        }
    }

    /// Take `e`; hand out, in time order, everything older than [`LAG_NS`]
    /// before it.
    pub(crate) fn push(&mut self, e: &Event, out: &mut impl FnMut(&Item)) {
        match e.kind {
            EventKind::Switch {
                prev,
                next,
                next_wait,
                counters,
                ..
            } => {
                if let Some(c) = counters.prev {
                    self.switched_out(e, &prev, c.run_clock_ns);
                }
                if e.switch_reason() == Some(SwitchReason::Dead) {
                    self.seen.remove(&prev.tid);
                }
                if let Some(w) = next_wait {
                    self.waited(e.ts, e.cpu, &next, w);
                }
            }
            EventKind::Wakeup {
                wakee,
                wakee_run_delay_ns,
                ..
            } => {
                let s = self.seen.entry(wakee.tid).or_default();
                s.woken_at = Some(e.ts);
                if let Some(d) = wakee_run_delay_ns {
                    // As the analysis does: where a thread first seen
                    // here counts its waits from.
                    s.run_delay.get_or_insert(d);
                }
            }
            EventKind::Fork { child, .. } => {
                self.seen.insert(
                    child.tid,
                    Seen {
                        run_delay: Some(0),
                        on_cpu: Some(false),
                        ..Seen::default()
                    },
                );
            }
            // A thread other than the leader exec'd: it carries on under
            // the leader's TID, with its own counters.
            EventKind::Exec { task, old_tid } if old_tid != task.tid => {
                match self.seen.remove(&old_tid) {
                    Some(s) => self.seen.insert(task.tid, s),
                    None => self.seen.remove(&task.tid),
                };
            }
            _ => {}
        }
        self.held.push_back(Item::Event(*e));
        let mut upto = e.ts.saturating_sub(LAG_NS);
        if self.held.len() > MAX_HELD {
            upto = upto.max(self.held[self.held.len() - MAX_HELD].ts());
        }
        self.release(upto, out);
    }

    /// Bytes the held events' queue has allocated: what it held at most,
    /// for memory checks.
    pub(crate) fn held_bytes(&self) -> usize {
        self.held.capacity() * size_of::<Item>()
    }

    /// Put a `/proc` snapshot where it was read.
    pub(crate) fn counters(&mut self, c: &ThreadCounters, out: &mut impl FnMut(&Item)) {
        // The first snapshot is the base of the thread's waits, as it is
        // for the analysis.
        self.seen
            .entry(c.tid)
            .or_default()
            .run_delay
            .get_or_insert(c.run_delay_ns);
        self.mark(
            c.ts,
            Item::Counters {
                ts: c.ts,
                counters: *c,
            },
        );
        let newest = self.held.back().map_or(0, Item::ts);
        self.release(newest.saturating_sub(LAG_NS), out);
    }

    /// Put a loss mark among the events held, where it was noticed: the
    /// events before it are handed out before it.
    pub(crate) fn lost(&mut self, l: &Lost, out: &mut impl FnMut(&Item)) {
        self.mark(l.ts, Item::Lost(*l));
        let newest = self.held.back().map_or(0, Item::ts);
        self.release(newest.saturating_sub(LAG_NS), out);
    }

    /// Hand out everything held.
    pub(crate) fn finish(&mut self, out: &mut impl FnMut(&Item)) {
        self.release(u64::MAX, out);
    }

    /// Hand out, in time order, what is older than `upto` (a mark after the
    /// events of the same time: a thread preempted at `ts` is runnable from
    /// its switch-out on).
    fn release(&mut self, upto: u64, out: &mut impl FnMut(&Item)) {
        loop {
            let event = self.held.front().map(Item::ts);
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
            // Handed out where it is held, then dropped: an item is a
            // couple of hundred bytes, and moving it out first copied it.
            if take_mark {
                let Some((_, item)) = self.marks.pop_first() else {
                    break;
                };
                self.released = self.released.max(item.ts());
                out(&item);
            } else {
                let Some(item) = self.held.front() else { break };
                self.released = self.released.max(item.ts());
                out(item);
                self.held.pop_front();
            }
        }
    }

    /// File `item` (whose true time is `since`) at `since`, or at the
    /// latest time already handed out if that is later.
    fn mark(&mut self, since: u64, item: Item) {
        let at = since.max(self.released);
        let item = match item {
            Item::Runnable {
                since,
                task,
                missing,
                cpu,
                ..
            } => Item::Runnable {
                ts: at,
                since,
                task,
                missing,
                cpu,
            },
            Item::InferredRun {
                since, task, cpu, ..
            } => Item::InferredRun {
                ts: at,
                since,
                task,
                cpu,
            },
            Item::Counters { counters, .. } => Item::Counters { ts: at, counters },
            Item::Lost(l) => Item::Lost(Lost { ts: at, ..l }),
            Item::Event(e) => Item::Event(e),
        };
        self.seq += 1;
        self.marks.insert((at, self.seq), item);
    }

    /// A traced `task` left its CPU at `e`: it is off it from then on
    /// (asleep, if it went to sleep).
    fn switched_out(&mut self, e: &Event, task: &Task, run_clock: Option<u64>) {
        let start = self.start;
        let s = self.seen.entry(task.tid).or_default();
        // The run began `len` before, on this CPU.
        let since = run_clock.map(|len| e.ts.saturating_sub(len));
        // Off its CPU by the stream (after the switch-out before it), or,
        // with no switch of it seen yet, the run began after the trace's
        // start (or after /proc saw it asleep), yet it ran: the switch-in
        // is missing. (Its first event may have said it ran at the start:
        // a wakeup it made, in the run this one is.)
        let inferred = since.filter(|&since| match s.on_cpu {
            Some(on) => !on,
            None => since > start || s.asleep_at.is_some_and(|at| at <= since),
        });
        if inferred.is_some() {
            s.inferred = true;
        }
        s.on_cpu = Some(false);
        s.slept_at = e
            .switch_reason()
            .is_some_and(SwitchReason::is_voluntary)
            .then_some(e.ts);
        if let Some(since) = inferred {
            self.mark(
                since,
                Item::InferredRun {
                    ts: since,
                    since,
                    task: *task,
                    cpu: e.cpu,
                },
            );
        }
    }

    /// `/proc` saw `tid` asleep when read at `ts` (a thread record): a
    /// switch-out of it with no switch-in seen, whose run began after
    /// that, lacks its switch-in.
    pub(crate) fn asleep(&mut self, tid: u32, ts: u64) {
        let s = self.seen.entry(tid).or_default();
        if s.on_cpu.is_none() {
            s.asleep_at = Some(ts);
        }
    }

    /// `task` is switched in at `ts` on `cpu` after the wait `w` accounts.
    fn waited(&mut self, ts: u64, cpu: u32, task: &Task, w: KernelWait) {
        let s = self.seen.entry(task.tid).or_default();
        let wait = match s.run_delay.replace(w.run_delay_ns) {
            Some(before) => w.run_delay_ns.saturating_sub(before),
            // First seen here: of its waits, only the one ending now is known.
            None => w.queued_ns,
        };
        // After an inferred run, part of the growth is the wait before it;
        // the one ending now began when the thread was last queued.
        let wait = if s.inferred {
            wait.min(w.queued_ns)
        } else {
            wait
        };
        // With wakeups traced, only a sleep whose wakeup is missing needs
        // a mark; a thread already runnable needs none either way.
        let missing = self.wakeups
            && s.slept_at
                .is_some_and(|at| s.woken_at.is_none_or(|w| w + WAKE_RACE_NS < at));
        // (A missing wakeup is counted even when the kernel saw no wait.)
        let place = if self.wakeups { missing } else { wait > 0 };
        s.on_cpu = Some(true);
        s.inferred = false;
        s.slept_at = None;
        if !place {
            return;
        }
        let since = ts.saturating_sub(wait);
        self.mark(
            since,
            Item::Runnable {
                ts: since,
                since,
                task: *task,
                missing,
                cpu,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{PrevCounters, SwitchCounters};
    use crate::testutil::{switch, task, wakeup, with_wait};

    /// The items for `events`, a trace that starts at its first event.
    fn place_with(wakeups: bool, events: &[Event]) -> Vec<Item> {
        let start = events.first().map_or(0, |e| e.ts);
        let mut p = Placer::new(wakeups, start);
        let mut out = Vec::new();
        for e in events {
            p.push(e, &mut |i| out.push(*i));
        }
        p.finish(&mut |i| out.push(*i));
        out
    }

    fn place(events: &[Event]) -> Vec<Item> {
        place_with(false, events)
    }

    fn marks(items: &[Item]) -> Vec<(u64, u64, u32)> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Runnable {
                    ts, since, task, ..
                } => Some((*ts, *since, task.tid)),
                _ => None,
            })
            .collect()
    }

    /// `e` with counters for its outgoing task: a run of `run_clock` ns
    /// (0: not known).
    fn out_after(mut e: Event, runtime: u64, run_clock: u64) -> Event {
        if let EventKind::Switch { counters, .. } = &mut e.kind {
            *counters = SwitchCounters {
                prev: Some(PrevCounters {
                    runtime_ns: runtime,
                    run_clock_ns: (run_clock > 0).then_some(run_clock),
                    pcount: None,
                    nvcsw: 0,
                    nivcsw: 0,
                }),
                next: counters.next,
            };
        }
        e
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

    #[test]
    fn with_wakeups_only_a_missing_wakeup_gets_a_mark() {
        let (a, b) = (task(101), task(102));
        // Switch-outs of traced threads carry counters (no run length here).
        let out = |e| out_after(e, 0, 0);
        let events = [
            // b sleeps, is woken, waits 200 ns: the wakeup says it all.
            out(with_wait(switch(1_000_000, 0, b, 1, a), 0, 0)),
            wakeup(1_800_000, 1, task(7), b, false),
            out(with_wait(switch(2_000_000, 0, a, 0, b), 200_000, 200_000)),
            // b sleeps again; its wakeup is not in the stream; it waited
            // 300 µs before its switch-in.
            out(with_wait(switch(3_000_000, 0, b, 1, a), 0, 0)),
            out(with_wait(switch(4_000_000, 0, a, 0, b), 500_000, 300_000)),
            // a was preempted: runnable already, no mark.
            out(with_wait(switch(5_000_000, 0, b, 1, a), 100_000, 100_000)),
        ];
        let out = place_with(true, &events);
        let missing: Vec<(u64, u32, bool)> = out
            .iter()
            .filter_map(|i| match i {
                Item::Runnable {
                    since,
                    task,
                    missing,
                    ..
                } => Some((*since, task.tid, *missing)),
                _ => None,
            })
            .collect();
        assert_eq!(missing, [(3_700_000, 102, true)]);
    }

    /// The inferred runs among `items`.
    fn inferred_runs(items: &[Item]) -> Vec<Item> {
        items
            .iter()
            .filter(|i| matches!(i, Item::InferredRun { .. }))
            .copied()
            .collect()
    }

    /// A run of `task` on `cpu` from `since`, placed there.
    fn inferred_run(since: u64, task: Task, cpu: u32) -> Item {
        Item::InferredRun {
            ts: since,
            since,
            task,
            cpu,
        }
    }

    /// A thread of which no switch has been seen, whose first switch-out
    /// shows a run that began after the trace's start: that run's
    /// switch-in is missing, though a wakeup it made in that run came
    /// first (the analysis would have it running since the start).
    #[test]
    fn a_first_run_begun_after_the_start_lacks_its_switch_in() {
        let (a, b) = (task(101), task(102));
        let events = [
            out_after(switch(1_000, 0, b, 1, task(0)), 900, 400),
            wakeup(4_800, 1, a, b, false),
            out_after(switch(5_000, 1, a, 1, task(0)), 1_200, 700),
        ];
        let out = place_with(true, &events);
        assert_eq!(inferred_runs(&out), [inferred_run(4_300, a, 1)]);
    }

    #[test]
    fn a_switch_out_without_its_switch_in_places_the_run_by_its_length() {
        let (a, b) = (task(101), task(102));
        let events = [
            out_after(with_wait(switch(1_000, 0, a, 0, b), 0, 0), 500, 500),
            // a runs again on CPU 1 with no switch-in in the stream, and
            // leaves after a run of 700 ns.
            out_after(switch(5_000, 1, a, 1, task(0)), 1_200, 700),
        ];
        let out = place_with(true, &events);
        assert_eq!(inferred_runs(&out), [inferred_run(4_300, a, 1)]);
        let ts: Vec<u64> = out.iter().map(Item::ts).collect();
        assert!(ts.is_sorted(), "{ts:?}");
    }
}
