//! The prelude: tracing starts with every thread in an unknown state, so
//! the first events are held back until each thread's first event tells
//! what it was doing when the window opened (`/proc`, read at attach, is
//! the fallback); then the held events are replayed through the state
//! machine.

use std::collections::{HashMap, HashSet};

use super::placer::Item;
use super::thread::Pending;
use super::thread::State;
use super::waits::WaitKey;
use super::{Analyzer, hint_state};
use crate::event::{Event, EventKind, OffCpu, SwitchReason, Task};
use crate::tid::TidSet;
use crate::trace::ThreadInfo;

/// The prelude ends at the latest this long after `/proc` was read...
const PRELUDE_MAX_NS: u64 = 1_000_000_000;
/// ...or after this many events.
const PRELUDE_MAX_EVENTS: usize = 1_000_000;

#[derive(Default)]
pub(super) struct Prelude {
    pub(super) hints: Vec<ThreadInfo>,
    pub(super) events: Vec<Item>,
    /// Latest `/proc` read.
    pub(super) hints_ts: u64,
    /// Threads `/proc` showed as `R` that no event has involved yet: until
    /// one does, we cannot tell whether it was running or waiting.
    pub(super) unresolved: TidSet,
}

impl Analyzer {
    /// Whether `e` came before the trace's start, from programs attached
    /// while others were not yet: it then only says which processes are
    /// traced (a fork or a join, [`Analyzer::extend_traced`]), and nothing
    /// of any thread's state.
    ///
    /// The programs are attached one by one, `sched_switch` last, and the
    /// start is taken once all are. Before it, a thread can wake others
    /// and then leave its CPU unseen: read as a stream, it would still be
    /// running there when its next switch-in came (a full machine showed
    /// one or two such contradictions in every capture). So the state
    /// machine starts at the start, with each thread's state implied by
    /// its first event after it, as for any thread.
    pub(super) fn before_start(&mut self, e: &Event) -> bool {
        let Some(start) = self.header.as_ref().map(|h| h.start_ns) else {
            return false;
        };
        if e.ts >= start {
            return false;
        }
        self.extend_traced(&e.kind);
        true
    }

    pub(super) fn prelude_done(&self, ts: u64) -> bool {
        let Some(p) = &self.prelude else { return true };
        if p.events.len() >= PRELUDE_MAX_EVENTS || ts > p.hints_ts.saturating_add(PRELUDE_MAX_NS) {
            return true;
        }
        ts > p.hints_ts && p.unresolved.is_empty()
    }

    /// The sleep thread `h.tid` is in is the one `/proc` saw it in (`h`):
    /// charged to that system call (when `/proc` showed one).
    pub(super) fn asleep_in(&mut self, h: &ThreadInfo) {
        let Some(t) = self.threads.get_mut(&h.tid) else {
            return;
        };
        let reason = match (t.state, h.state) {
            (State::Sleeping, 'S') => SwitchReason::Sleeping,
            (State::Blocked, 'D') => SwitchReason::Blocked,
            _ => return,
        };
        if h.syscall.is_none() {
            return;
        }
        let off = OffCpu {
            syscall: h.syscall,
            iowait: false,
            ..OffCpu::default()
        };
        t.pending = Some(Pending {
            key: WaitKey::of(reason, Some(&off)),
            kernel_stack: None,
            user_stack: None,
        });
    }

    /// Decide each thread's state at the start of the window from its first
    /// event (or `/proc` when it has none), then replay the held events.
    pub(super) fn finish_prelude(&mut self) {
        let Some(p) = self.prelude.take() else { return };
        if let Some(e) = p.events.first() {
            self.clock = self.clock.min(e.ts());
        }
        let mut first: HashMap<u32, (Task, State, u64)> = HashMap::new();
        let hint_of: HashMap<u32, &ThreadInfo> = p.hints.iter().map(|h| (h.tid, h)).collect();
        let mut traced = self.traced.clone();
        for i in &p.events {
            if let Item::Event(Event {
                kind: EventKind::Fork { parent, child },
                ..
            }) = i
                && self.follows()
                && traced.contains(&parent.tgid)
            {
                traced.insert(child.tgid);
            }
            let start = self.window_start;
            for (task, state) in implied_prior_states(i, &hint_of, self.wakeups(), start) {
                if traced.contains(&task.tgid) {
                    first.entry(task.tid).or_insert((task, state, i.ts()));
                }
            }
        }
        // A CPU that switched during the prelude did not run a thread of
        // no event there all along: its switch-out would be in the stream.
        // (Looked for only when `/proc` saw such a thread R: the prelude
        // holds up to a million events.)
        let unplaced_r = p
            .hints
            .iter()
            .any(|h| h.state == 'R' && !first.contains_key(&h.tid));
        let switched: HashSet<u32> = match unplaced_r {
            false => HashSet::new(),
            true => p
                .events
                .iter()
                .filter_map(|i| match i {
                    Item::Event(e) if matches!(e.kind, EventKind::Switch { .. }) => Some(e.cpu),
                    _ => None,
                })
                .collect(),
        };
        for h in &p.hints {
            if !first.contains_key(&h.tid) && self.traced.contains(&h.tgid) {
                let t = Task {
                    tid: h.tid,
                    tgid: h.tgid,
                    comm: h.comm,
                    prio: 0,
                };
                let state = match hint_state(h) {
                    // `/proc`'s R is running or waiting: waiting, then.
                    State::Running { cpu } if switched.contains(&cpu) => State::Runnable,
                    s => s,
                };
                first.insert(h.tid, (t, state, h.ts));
            }
        }
        // Stable order: by first event, then TID.
        let mut initial: Vec<_> = first.into_values().collect();
        initial.sort_by_key(|(t, _, ts)| (*ts, t.tid));
        for (task, state, first_ts) in initial {
            if state != State::Absent {
                self.add_thread(&task, state, self.clock);
                // `/proc` was read in the sleep it was in at the start
                // unless an event of it came before the read.
                if let Some(h) = hint_of.get(&task.tid).filter(|h| h.ts <= first_ts) {
                    self.asleep_in(h);
                }
            }
        }
        for i in &p.events {
            self.process(i);
        }
    }
}

/// The threads whose state item `i` tells.
pub(super) fn involved_tids(i: &Item) -> [u32; 2] {
    let e = match i {
        Item::Event(e) => e,
        Item::Runnable { task, .. } | Item::InferredRun { task, .. } => {
            return [task.tid, task.tid];
        }
        Item::Counters { .. } | Item::Lost(_) => return [0, 0],
    };
    match e.kind {
        EventKind::Switch { prev, next, .. } => [prev.tid, next.tid],
        EventKind::Wakeup { waker, wakee, .. } => [waker.tid, wakee.tid],
        EventKind::Fork { parent, child } => [parent.tid, child.tid],
        EventKind::Exec { task, .. } | EventKind::Exit { task, .. } => [task.tid, task.tid],
        EventKind::Migrate { .. } | EventKind::Join { .. } => [0, 0],
    }
}

/// What each task in `i` must have been doing just before it (in a trace
/// with `wakeups` traced or not, whose window starts at `start`).
fn implied_prior_states(
    i: &Item,
    hints: &HashMap<u32, &ThreadInfo>,
    wakeups: bool,
    start: u64,
) -> Vec<(Task, State)> {
    let e = match i {
        Item::Event(e) => e,
        Item::InferredRun { task, .. } => {
            // Off its CPU: waiting, unless `/proc` did not see it runnable.
            return match hints.get(&task.tid).map(|h| h.state) {
                Some('R') | None => vec![(*task, State::Runnable)],
                Some('D') => vec![(*task, State::Blocked)],
                _ => vec![(*task, State::Sleeping)],
            };
        }
        Item::Counters { .. } | Item::Lost(_) => return vec![],
        Item::Runnable { task, .. } => {
            // It was not runnable before, unless `/proc` saw it running or
            // runnable: then the mark is of a later wait (or a preempted
            // switch-out a few ns after it), and the next event tells.
            return match hints.get(&task.tid).map(|h| h.state) {
                Some('R') => vec![],
                Some('D') => vec![(*task, State::Blocked)],
                _ => vec![(*task, State::Sleeping)],
            };
        }
    };
    let running = State::Running { cpu: e.cpu };
    match e.kind {
        EventKind::Switch {
            prev,
            next,
            next_wait,
            ..
        } => {
            let asleep = || match hints.get(&next.tid).map(|h| h.state) {
                Some('D') => State::Blocked,
                _ => State::Sleeping,
            };
            let waited = match next_wait {
                // With wakeups, it waited since before the window unless
                // the kernel says it was queued later (its wakeup is then
                // missing from the stream, and the analysis puts it back)
                // or `/proc` saw it runnable.
                Some(w)
                    if wakeups
                        && w.queued_ns < e.ts.saturating_sub(start)
                        && hints.get(&next.tid).map(|h| h.state) != Some('R') =>
                {
                    asleep()
                }
                _ if wakeups => State::Runnable,
                None => State::Runnable,
                // Without wakeups, a wait comes as a mark before the
                // switch-in: with none (or none that told), the thread went
                // from sleep to its CPU, unless `/proc` saw it waiting.
                Some(_) => match hints.get(&next.tid).map(|h| h.state) {
                    Some('R') => State::Runnable,
                    Some('D') => State::Blocked,
                    _ => State::Sleeping,
                },
            };
            vec![(prev, running), (next, waited)]
        }
        EventKind::Wakeup {
            waker, wakee, new, ..
        } => {
            let asleep = if new {
                State::Absent
            } else if hints.get(&wakee.tid).is_some_and(|h| h.state == 'D') {
                State::Blocked
            } else {
                State::Sleeping
            };
            vec![(waker, running), (wakee, asleep)]
        }
        EventKind::Fork { parent, child } => vec![(parent, running), (child, State::Absent)],
        EventKind::Exec { task, .. } | EventKind::Exit { task, .. } => vec![(task, running)],
        // A joining process's threads start at their first event after it.
        EventKind::Migrate { .. } | EventKind::Join { .. } => vec![],
    }
}
