//! The thread state machine: each event moves the threads it names
//! between running, runnable, sleeping and blocked, charging the time of
//! the state left to the thread and keeping the process counts in step.

use super::antagonists::{Holder, HolderTimes, Occupant};
use super::chain::{Chain, Link};
use super::placer::Item;
use super::process::ProcAcc;
use super::thread::{Cause, Ix, Pending, State, ThreadTrack, WakeSource, Window};
use super::timeline::{SegState, SegWaker, Segment, WakeEdge};
use super::waits::WaitKey;
use super::{Analyzer, overlap};
use crate::event::{
    Event, EventKind, KernelWait, NextCounters, OffCpu, PrevCounters, SwitchReason, Task,
    WakeContext,
};
use crate::trace::ThreadCounters;

/// A wakeup from another CPU at most this long before a thread's switch-out
/// to sleep raced with it (see `switch_out`). The race window is the switch
/// path itself, a few µs; a stale wakeup is much older.
const WAKE_RACE_NS: u64 = 100_000;
/// How far the kernel's charges may run ahead of the window (see
/// [`Analyzer::allowance`]): over 20 times the 43 µs measured.
pub(super) const CHARGE_EDGE_NS: u64 = 1_000_000;

/// What the kernel's counters may still charge at some time (see
/// [`Analyzer::allowance`]): to all CPUs together, and, before what a thread
/// has been charged so far, to one thread.
#[derive(Clone, Copy)]
pub(super) struct Allowance {
    all: u64,
    edge: u64,
}

impl Allowance {
    /// What a thread charged `running` so far may still be charged.
    pub(super) fn thread(self, running: u64) -> u64 {
        self.all.min(self.edge.saturating_sub(running))
    }
}

/// What a switch record says of the thread leaving the CPU.
struct Leaving<'a> {
    reason: SwitchReason,
    /// What it was doing (the system call, stacks), when recorded.
    off: Option<&'a OffCpu>,
    /// The kernel's counters of it, when recorded.
    counters: Option<PrevCounters>,
}

/// What a wakeup record says of the thread it wakes.
struct Wakee {
    task: Task,
    /// Its first wakeup, just after its creation.
    new: bool,
    /// The kernel was already counting a wait for it (`wakee_queued`).
    queued: bool,
    /// Its run delay, when the record has it.
    run_delay: Option<u64>,
}

impl Analyzer {
    /// Move the trace clock to `ts` (process-level time is accounted at each
    /// change of a process's counts: see `ProcAcc`).
    pub(super) fn advance(&mut self, ts: u64) {
        self.clock = self.clock.max(ts);
    }

    pub(super) fn add_thread(&mut self, task: &Task, state: State, since: u64) {
        let (ncpus, clock) = (self.ncpus, self.clock);
        let proc = self
            .procs
            .index_or_insert(task.tgid, || ProcAcc::new(ncpus, clock));
        let mut track = ThreadTrack::new(task.tid, task.tgid, task.comm, State::Absent, since);
        track.seq = self.next_seq;
        track.proc = proc;
        self.next_seq += 1;
        self.threads.insert(task.tid, track);
        let proc_acc = self.procs.at(proc);
        if task.tid == task.tgid || proc_acc.comm.is_empty() {
            proc_acc.comm = task.comm;
        }
        self.transition(task.tid, state, since);
    }

    /// Move thread `tid` to `new` at `ts`: charge the time of the old state,
    /// record its timeline segment, and keep the process counts and the
    /// CPUs' occupants in step.
    pub(super) fn transition(&mut self, tid: u32, new: State, ts: u64) {
        self.transition_charging(tid, new, ts, None);
    }

    /// How much more on-CPU time the kernel's counters may charge by `ts`.
    /// The kernel's charges on a CPU tile its
    /// clock (each switch's clock update ends one run's charge and starts
    /// the next's), and a thread runs on one CPU at a time, so neither can
    /// exceed the window so far, save for an edge: a run's charge starts at
    /// the clock update before its switch-in's timestamp, which the switch
    /// path and schedtrace's own program delay (by at most 43 µs in a
    /// `--stacks` trace of Node, where the stack walk comes first).
    /// Counters beyond that are damaged or forged: they are cut to it.
    ///
    /// Asked several times per event at the same `ts`: the bounds at the
    /// latest `ts` are kept (`edge_at`, forgotten when the window or the
    /// CPUs change), and only what is charged so far is taken off again.
    pub(super) fn allowance(&mut self, ts: u64) -> Allowance {
        let (edge, cap) = match self.edge_at {
            Some((at, edge, cap)) if at == ts => (edge, cap),
            _ => {
                let (start, end) = (self.window_start, self.window_end);
                let so_far = ts.clamp(start, end.max(start)) - start;
                let edge = so_far.saturating_add(CHARGE_EDGE_NS);
                let cap = edge.saturating_mul(u64::from(self.ncpus.max(1)));
                self.edge_at = Some((ts, edge, cap));
                (edge, cap)
            }
        };
        Allowance {
            all: cap.saturating_sub(self.charged_ns),
            edge,
        }
    }

    /// What woke `tid` into the runnable state it is in, if a wakeup did:
    /// the first link of the chain its wakeup recorded.
    fn waker_of(&self, tid: u32) -> Option<SegWaker> {
        let t = self.threads.get(&tid)?;
        if t.cause != Cause::Wakeup {
            return None;
        }
        let link = *t.chain?.links().next()?;
        let task = match link {
            Link::Thread(w) => self.threads.get(&w).map(|w| (w.tid, w.comm)),
            Link::Outside(o) => Some((o.tid, o.comm)),
            _ => None,
        };
        Some(SegWaker {
            context: link.context_name(),
            task,
        })
    }

    /// [`Self::transition`], charging the time since the thread's last
    /// transition to `charge_as` instead of its state when given.
    fn transition_charging(&mut self, tid: u32, new: State, ts: u64, charge_as: Option<State>) {
        self.transition_then(tid, new, ts, charge_as, |_| {});
    }

    /// [`Self::transition_charging`], then `then` on the thread's track
    /// unless it ended (one look-up for both).
    fn transition_then(
        &mut self,
        tid: u32,
        new: State,
        ts: u64,
        charge_as: Option<State>,
        then: impl FnOnce(&mut ThreadTrack),
    ) {
        let ix = self.threads.index(tid);
        self.transition_at(tid, ix, new, ts, charge_as, then);
    }

    /// [`Self::transition_then`], `tid`'s track at `ix` (looked up by the
    /// caller, `None` if it has none). No transition of another thread
    /// before its own removes a track (none of them ends a thread), so
    /// `ix` stays valid up to it; after it, if it ended, not.
    fn transition_at(
        &mut self,
        tid: u32,
        ix: Option<Ix>,
        new: State,
        ts: u64,
        charge_as: Option<State>,
        then: impl FnOnce(&mut ThreadTrack),
    ) {
        if let State::Running { cpu } = new {
            self.evict(cpu, ts, Some(tid));
        }
        let (window_start, window_end) = (self.window_start, self.window_end);
        let window = self.window();
        let selected = self.selected(tid);
        let allow = self.allowance(ts);
        let waker = self.segment_waker(tid, charge_as);
        // Every field used below while `t` is borrowed is another of
        // `self`'s.
        let Some(ix) = ix else {
            return;
        };
        let t = self.threads.at_mut(ix);
        let allowance = allow.thread(t.running_ns);
        let old = t.state;
        let charged = charge_as.unwrap_or(old);
        let ns = overlap(window_start, window_end, t.since, ts);
        let inferred = charged.is_running() && t.kernel.inferred;
        let (on_cpu, cut) = t.charge(window, charged, t.since, ts, allowance);
        self.charged_ns += on_cpu;
        if cut {
            log::debug!("the counters of {tid} charge more than the CPUs had by {ts}");
            self.anomalies += 1;
        }
        // The segment is built only for a kept timeline or a sink.
        let segments = self.timeline.is_some() || self.segment_sink.is_some();
        if segments
            && let Some(state) = charged.seg()
            && (ns > 0 || on_cpu > 0)
        {
            let seg = t.closed_segment(tid, state, charged, ts, window, inferred);
            if let Some(tl) = &mut self.timeline
                && ns > 0
            {
                tl.segments.push(seg);
            }
            // A run the timestamps give no length but the kernel charged
            // still goes to the sink, so its charges add up.
            if let Some(sink) = &mut self.segment_sink {
                sink.segment(&seg, t.tgid, &t.comm, on_cpu, waker.as_ref());
            }
        }
        t.state = new;
        t.since = ts;
        if new != State::Dead {
            then(t);
        }
        let proc = t.proc;
        self.transitioned(tid, proc, (old, new), selected, window);
    }

    /// What woke `tid`, for a segment sink, when its time is charged as
    /// runnable. (Always inlined, as `transitioned`: out of line, the two
    /// cost 5% more instructions per event.)
    #[inline(always)]
    fn segment_waker(&self, tid: u32, charge_as: Option<State>) -> Option<SegWaker> {
        // Only a segment sink wants the waker (looked up before the thread
        // is borrowed: it reads other threads).
        match &self.segment_sink {
            Some(_)
                if self
                    .threads
                    .get(&tid)
                    .is_some_and(|t| charge_as.unwrap_or(t.state) == State::Runnable) =>
            {
                self.waker_of(tid)
            }
            _ => None,
        }
    }

    /// After `tid`'s move from `old` to `new`: process counts, CPU
    /// occupants, retirement. (Always inlined: see `segment_waker`.)
    #[inline(always)]
    fn transitioned(
        &mut self,
        tid: u32,
        proc: u32,
        (old, new): (State, State),
        selected: bool,
        window: Window,
    ) {
        // Process counts and profiles are those of the selected threads;
        // the counts change now (the trace clock), after the time they held.
        if selected {
            let clock = self.clock;
            let p = self.procs.at(proc);
            p.catch_up(window, clock);
            p.shift(old, new);
            self.total.catch_up(window, clock);
            self.total.shift(old, new);
        }
        if let State::Running { cpu } = old
            && let Some(slot) = self.cpu_owner.get_mut(cpu as usize)
            && *slot == Some(tid)
        {
            *slot = None;
        }
        if let State::Running { cpu } = new
            && let Some(slot) = self.cpu_owner.get_mut(cpu as usize)
        {
            *slot = Some(tid);
        }
        if new == State::Dead {
            self.retire(tid);
        }
    }

    /// A CPU runs one task at a time: if the analysis has another traced
    /// thread than `keep` (any, with `None`) running on `cpu` at `ts`, that
    /// thread's switch-out was lost (or the kernel's stream lacked it). Its run since its last
    /// switch-in is charged as unknown time, not as a run (it may have
    /// ended anywhere in it), and it is in
    /// [`State::Unknown`] until its next event. This keeps every figure
    /// possible under losses: at most one thread per CPU is running, so
    /// on-CPU time is at most window × CPUs.
    /// (Inlined: nearly always, there is no other.)
    #[inline]
    fn evict(&mut self, cpu: u32, ts: u64, keep: Option<u32>) {
        if let Some(Some(other)) = self.cpu_owner.get(cpu as usize).copied()
            && Some(other) != keep
        {
            self.evict_other(cpu, ts, other);
        }
    }

    /// [`Self::evict`] `other`, running on `cpu`.
    fn evict_other(&mut self, cpu: u32, ts: u64, other: u32) {
        // With the kernel's counters and nothing lost on this CPU, the
        // kernel's stream lacked the switch (as it lacks the switch-ins that
        // become inferred runs): under `--all` here, a run of PID 1's
        // threads that ended in the idle task, whose switch-in no counter
        // shows. Unknown time, not a contradiction.
        let hidden = self.kernel_counters && self.lost.get(cpu as usize).is_some_and(|&n| n == 0);
        if let Some(o) = self.threads.get_mut(&other)
            && o.since < ts
            && !hidden
        {
            log::debug!("{other} was still running on CPU {cpu} at {ts}: its switch-out was lost");
            o.anomalies += 1;
            self.anomalies += 1;
        }
        self.transition_charging(other, State::Unknown, ts, Some(State::Unknown));
    }

    /// Records were lost on `cpu`: whether the thread the analysis has
    /// running there still runs is unknown from now until its next event.
    pub(super) fn lost_on(&mut self, cpu: u32) {
        if let Some(Some(t)) = self.cpu_owner.get(cpu as usize).copied() {
            let now = self.clock;
            // With the kernel's counters, the run's charge is known at the
            // thread's next switch-out (an unplaced run, see
            // `switch_out`): its timestamps until now must not count too.
            let counted = self
                .threads
                .get(&t)
                .is_some_and(|tr| tr.kernel.runtime.is_some())
                .then_some(State::Unknown);
            self.transition_charging(t, State::Unknown, now, counted);
        }
    }

    /// Fold thread `tid`, which has ended, into its summary: nothing more
    /// can happen to it, and a new thread may get its TID.
    fn retire(&mut self, tid: u32) {
        let Some(t) = self.threads.remove(&tid) else {
            return;
        };
        if t.tid == t.tgid {
            self.procs.at(t.proc).comm = t.comm;
        }
        if t.lifetime_ns() > 0 || t.voluntary + t.involuntary > 0 {
            self.ended
                .push((t.seq, super::finish::thread_summary(&t, 0)));
        }
    }

    /// The track of a traced task, created on first sight after the prelude
    /// with the state its first event implies.
    fn track(&mut self, task: &Task, implied: State, ts: u64) -> Option<&mut ThreadTrack> {
        let ix = self.track_ix(task, implied, ts)?;
        Some(self.threads.at_mut(ix))
    }

    /// [`Self::track`], by index (see [`Threads`](super::thread::Threads)).
    fn track_ix(&mut self, task: &Task, implied: State, ts: u64) -> Option<Ix> {
        // A track of the same process already found traced needs no look
        // at the traced set: a traced process stays so.
        let found = self.threads.index(task.tid).map(|ix| {
            let t = self.threads.at(ix);
            (ix, t.tgid == task.tgid && t.traced)
        });
        self.track_known(task, implied, ts, found)
    }

    /// [`Self::track_ix`], told where a track of the task's TID is and
    /// whether it is of its process, found traced (`found`, looked up by
    /// the caller). (Inlined, its first sight of a thread out of line:
    /// nearly every call finds a traced track, and the call cost a third of
    /// it.)
    #[inline]
    fn track_known(
        &mut self,
        task: &Task,
        implied: State,
        ts: u64,
        found: Option<(Ix, bool)>,
    ) -> Option<Ix> {
        let ix = match found {
            Some((ix, true)) => ix,
            _ => self.track_unknown(task, implied, ts, found.map(|(ix, _)| ix))?,
        };
        let t = self.threads.at_mut(ix);
        t.traced |= t.tgid == task.tgid;
        if !task.comm.is_empty() {
            t.comm = task.comm;
        }
        Some(ix)
    }

    /// [`Self::track_known`] of a task whose TID has no track (`found`
    /// `None`) or one not found traced yet at `found`: tracked if its
    /// process is traced.
    #[inline(never)]
    fn track_unknown(
        &mut self,
        task: &Task,
        implied: State,
        ts: u64,
        found: Option<Ix>,
    ) -> Option<Ix> {
        if !self.traced.contains(&task.tgid) {
            return None;
        }
        match found {
            Some(ix) => Some(ix),
            None => {
                self.add_thread(task, implied, ts);
                self.threads.index(task.tid)
            }
        }
    }

    /// Apply one item of the placer's stream: an event, or a mark it inferred.
    pub(super) fn process(&mut self, i: &Item) {
        let ts = if i.ts() < self.clock {
            log::debug!("event out of order: {i:?}");
            self.anomalies += 1;
            self.clock
        } else {
            i.ts()
        };
        self.advance(ts);
        let Item::Event(e) = i else {
            self.process_mark(i, ts);
            return;
        };
        match e.kind {
            EventKind::Switch { .. } => self.switch(e, ts),
            EventKind::Wakeup {
                waker,
                wakee,
                new,
                context,
                waker_process,
                wakee_run_delay_ns,
                wakee_queued,
                ..
            } => {
                let src = WakeSource {
                    task: waker,
                    context,
                    process: waker_process,
                };
                let woken = Wakee {
                    task: wakee,
                    new,
                    queued: wakee_queued,
                    run_delay: wakee_run_delay_ns,
                };
                self.wakeup(&src, &woken, ts, e.cpu);
            }
            EventKind::Migrate { task, .. } => self.migrated(&task, ts),
            EventKind::Fork { child, .. } => self.forked(&e.kind, &child, ts),
            EventKind::Exec { task, old_tid } => self.execed(&task, old_tid, ts, e.cpu),
            EventKind::Exit { task, run_delay_ns } => self.exiting(&task, run_delay_ns, ts, e.cpu),
            // Its threads are tracked from their first event on: before
            // the join, nothing of them was recorded.
            EventKind::Join { .. } => self.extend_traced(&e.kind),
        }
    }

    /// [`Self::process`] a mark the placer inferred, at `ts`.
    #[inline]
    fn process_mark(&mut self, i: &Item, ts: u64) {
        match i {
            Item::Event(_) => {}
            Item::Runnable {
                since,
                task,
                missing,
                cpu,
                ..
            } => {
                if *missing && self.in_window(*since) {
                    bump(&mut self.missing_wakeups, *cpu);
                }
                self.became_runnable(task, (*since).min(ts), ts);
            }
            Item::InferredRun {
                since, task, cpu, ..
            } => {
                self.inferred_run(task, (*since).min(ts), ts, *cpu);
            }
            Item::Counters { counters, .. } => {
                self.snapshot(counters, ts);
            }
            Item::Lost(l) => {
                self.lost_mark(l);
            }
        }
    }

    /// A switch record at `ts` on `e.cpu`: `prev` leaves it, `next` gets it.
    #[inline]
    fn switch(&mut self, e: &Event, ts: u64) {
        let EventKind::Switch {
            prev,
            next,
            prev_state,
            preempt,
            next_wait,
            counters,
            prev_off,
        } = e.kind
        else {
            return;
        };
        let reason = SwitchReason::decode(prev_state, preempt);
        if counters.prev.is_some() || counters.next.is_some() {
            self.kernel_counters = true;
        }
        // With the kernel's counters in the trace, the kernel says which side
        // is a target: the side without them is not, whatever its TGID (a
        // stranger that took the PID of a target that ended: the kernel
        // checks identities).
        let prev_stranger = self.kernel_counters && counters.prev.is_none();
        let next_stranger = self.kernel_counters && counters.next.is_none();
        // The CPU switches from `prev`: any other thread the analysis has
        // running there left it unseen.
        self.evict(e.cpu, ts, Some(prev.tid));
        self.cpu_switch(e.cpu, ts, &prev, &next);
        let leaving = Leaving {
            reason,
            off: prev_off.as_ref(),
            counters: counters.prev,
        };
        if !prev_stranger {
            self.switch_out(&prev, leaving, &next, ts, e.cpu);
        }
        if !next_stranger {
            self.switch_in(&next, ts, e.cpu, counters.next, next_wait);
        }
    }

    /// `task` moved between run queues at `ts`.
    #[inline]
    fn migrated(&mut self, task: &Task, ts: u64) {
        let in_window = self.in_window(ts);
        if let Some(t) = self.track(task, State::Runnable, ts)
            && in_window
        {
            t.migrate_events += 1;
        }
    }

    /// A fork (`kind`) created `child` at `ts`.
    #[inline]
    fn forked(&mut self, kind: &EventKind, child: &Task, ts: u64) {
        self.extend_traced(kind);
        if self.traced.contains(&child.tgid) && !self.threads.contains_key(&child.tid) {
            self.add_thread(child, State::Runnable, ts);
            if let Some(t) = self.threads.get_mut(&child.tid) {
                t.created_ns = Some(ts);
                // The kernel starts a new task's counters at zero.
                t.kernel.runtime = Some((ts, 0));
                t.kernel.run_delay = Some(0);
                t.kernel.switches = Some((0, 0));
                t.kernel.waits = self.kernel_counters;
            }
        }
    }

    /// `task` exec'd at `ts` on `cpu` (as thread `old_tid`).
    #[inline]
    fn execed(&mut self, task: &Task, old_tid: u32, ts: u64, cpu: u32) {
        let running = State::Running { cpu };
        if old_tid != task.tid && self.threads.contains_key(&old_tid) {
            self.exec_took_leader_tid(task, old_tid, ts, running);
        }
        if let Some(t) = self.track(task, running, ts) {
            t.comm = task.comm;
        }
        if let Some(p) = self.procs.get_mut(task.tgid) {
            p.comm = task.comm;
        }
    }

    /// Thread `old_tid` exec'd at `ts` and took its leader's TID (`task`'s).
    fn exec_took_leader_tid(&mut self, task: &Task, old_tid: u32, ts: u64, running: State) {
        // A non-leader thread exec'd and took over the leader's TID: it is
        // gone under its own TID, and a thread runs on under the leader's
        // from now on, with the counters of the old TID (they belong to the
        // task, which now has the leader's TID). The run it is in is charged
        // by the timestamps on both sides of the exec.
        let carried = self.threads.get_mut(&old_tid).map(|t| {
            let k = t.kernel;
            t.kernel.run_from = None;
            k
        });
        if let (Some(mut k), Some(leader)) = (carried, self.threads.get_mut(&task.tid)) {
            (k.run_from, k.inferred) = (None, false);
            leader.kernel = k;
        }
        if let Some(t) = self.threads.get_mut(&old_tid) {
            t.exited_ns.get_or_insert(ts);
        }
        self.transition(old_tid, State::Dead, ts);
        match self.threads.get(&task.tid) {
            Some(t) if !t.state.is_running() => {
                self.transition(task.tid, running, ts);
            }
            Some(_) => {}
            None if self.traced.contains(&task.tgid) => {
                self.add_thread(task, running, ts);
                if let Some(t) = self.threads.get_mut(&task.tid) {
                    t.created_ns = Some(ts);
                }
            }
            None => {}
        }
    }

    /// `task` called exit at `ts` on `cpu`, its run delay then `run_delay_ns`.
    #[inline]
    fn exiting(&mut self, task: &Task, run_delay_ns: Option<u64>, ts: u64, cpu: u32) {
        let running = State::Running { cpu };
        let window = (self.window_start, self.window_end);
        if let Some(t) = self.track(task, running, ts) {
            t.exited_ns.get_or_insert(ts);
            // Its last waits, which no switch-in record or snapshot will
            // show once it is gone (a last run whose switch-in the stream
            // lacked).
            if let Some(d) = run_delay_ns
                && t.kernel.waits
            {
                t.waits_to(d, ts, window);
            }
        }
    }

    /// The process an event brings into the traced ones: a followed child
    /// forked by a traced process, or a process that joined (PID 0 stands
    /// for none).
    pub(super) fn extend_traced(&mut self, kind: &EventKind) {
        match *kind {
            EventKind::Fork { parent, child }
                if child.tgid != parent.tgid
                    && self.follows()
                    && self.traced.contains(&parent.tgid) =>
            {
                self.traced.insert(child.tgid);
            }
            EventKind::Join { task } if task.tgid != 0 => {
                self.traced.insert(task.tgid);
            }
            _ => {}
        }
    }

    /// Follow which task holds `cpu` (see [`super::antagonists`]); keep
    /// what the timeline shows on CPU lanes besides the traced threads.
    fn cpu_switch(&mut self, cpu: u32, ts: u64, prev: &Task, next: &Task) {
        let hold = self.cpus.switch(cpu, ts, prev, next);
        let traced = |h: &Holder| matches!(h, Holder::Task(o) if self.traced.contains(&o.tgid));
        if let (Some(tl), Some(mut h)) = (&self.timeline, hold)
            && !traced(&h.holder)
        {
            h.start = h.start.max(self.window_start);
            h.end = h.end.min(self.window_end);
            if h.start < h.end {
                // Borrow again mutably: `traced` borrowed `self` above.
                let _ = tl;
                if let Some(tl) = &mut self.timeline {
                    tl.holds.push(h);
                }
            }
        }
        if self.cpus.len() > 4096 {
            // Nothing older than the oldest wait still open is asked for.
            let oldest = self
                .threads
                .values()
                .filter(|t| t.state == State::Runnable)
                .map(|t| t.since)
                .min()
                .unwrap_or(ts);
            self.cpus.forget_before(oldest);
        }
    }

    /// `prev` leaves `cpu` at `ts` for `next`, as `leaving` says.
    fn switch_out(&mut self, prev: &Task, leaving: Leaving<'_>, next: &Task, ts: u64, cpu: u32) {
        let Leaving {
            reason,
            off,
            counters,
        } = leaving;
        let in_window = self.in_window(ts);
        let window_start = self.window_start;
        let running = State::Running { cpu };
        let allow = self.allowance(ts);
        let stack_lost = in_window && off.is_some_and(|o| o.stack_lost) && self.selected(prev.tid);
        let Some(ix) = self.track_ix(prev, running, ts) else {
            return;
        };
        let t = self.threads.at_mut(ix);
        let (unplaced, mut anomaly) =
            t.count_switch_out(reason, counters, ts, cpu, in_window, allow);
        anomaly |= t.end_slice(running, ts, window_start, in_window);
        // A thread can be woken from another CPU while it is still switching
        // out to sleep: the kernel then queues it again as soon as it is off
        // its CPU, and the switch-out still shows the sleeping state.
        let woken = t
            .woken_on_cpu
            .take()
            .filter(|&(at, _, _)| ts.saturating_sub(at) <= WAKE_RACE_NS);
        let next_state = match reason {
            SwitchReason::Sleeping | SwitchReason::Blocked if woken.is_some() => State::Runnable,
            SwitchReason::Preempted => State::Runnable,
            SwitchReason::Sleeping => State::Sleeping,
            SwitchReason::Blocked => State::Blocked,
            SwitchReason::Dead => State::Dead,
        };
        t.leave_cpu(reason, off, next_state, next, ts, in_window);
        let (edge, woke) = t.raced_wakeup(woken, next_state, reason, in_window);
        let tid = t.tid;
        if anomaly {
            log::debug!(
                "switch-out of {tid} at {ts} on CPU {cpu} while {:?}",
                t.state
            );
            t.anomalies += 1;
            self.anomalies += 1;
        }
        self.charged_ns += unplaced.unwrap_or(0);
        self.unplaced_runs += u64::from(unplaced.is_some());
        self.lost_stacks += u64::from(stack_lost);
        self.transition_at(tid, Some(ix), next_state, ts, None, |t| {
            let k = &mut t.kernel;
            (k.inferred, k.end_runtime, k.end_run_clock, k.run_from) = (false, None, None, None);
        });
        if let Some((waker, context)) = woke {
            self.follow_chain(tid, &waker, context, in_window);
        }
        let edge = edge.filter(|e| self.in_window(e.ts));
        if let (Some(tl), Some(edge)) = (&mut self.timeline, edge) {
            // Edges are kept in time order; this one is at most
            // `WAKE_RACE_NS` old, so it goes in near the end.
            let at = tl.wakeups.partition_point(|w| w.ts <= edge.ts);
            tl.wakeups.insert(at, edge);
        }
    }

    /// `next` gets `cpu` at `ts`: its wait ends and a run begins.
    fn switch_in(
        &mut self,
        next: &Task,
        ts: u64,
        cpu: u32,
        counters: Option<NextCounters>,
        kernel_wait: Option<KernelWait>,
    ) {
        let window = self.window();
        let in_window = self.in_window(ts);
        // Without wakeups, a thread that did not wait goes from sleep to
        // its CPU directly (the placer marks every wait it had).
        let no_wakeups = !self.wakeups();
        let implied = if no_wakeups {
            State::Sleeping
        } else {
            State::Runnable
        };
        // One look-up for whether it is traced (see `track`), where it is
        // and since when.
        let found = self.threads.index(next.tid);
        let known = found.map(|ix| {
            let t = self.threads.at(ix);
            (t.tgid == next.tgid && t.traced, t.state, t.since)
        });
        if !known.is_some_and(|(traced, ..)| traced) && !self.traced.contains(&next.tgid) {
            return;
        }
        // The part of its wait for this CPU inside the window, if it waited
        // (found before borrowing its track).
        let waited = self.waited_for_cpu(known, cpu, ts);
        let allow = self.allowance(ts);
        // (Evicting it elsewhere left it tracked as it was.)
        let found = found.zip(known.map(|(traced, ..)| traced));
        let Some(ix) = self.track_known(next, implied, ts, found) else {
            return;
        };
        let t = self.threads.at_mut(ix);
        t.woken_on_cpu = None;
        let (unplaced, cut) = t.count_switch_in(counters, ts, cpu, in_window, allow);
        let kernel_wait = t.end_kernel_wait(kernel_wait, ts, window, in_window);
        // The part of it inside the window.
        let counted = kernel_wait.map(|w| window.overlap(ts.saturating_sub(w), ts));
        let tid = t.tid;
        let missed = kernel_wait.filter(|&w| {
            w > 0 && !no_wakeups && matches!(t.state, State::Sleeping | State::Blocked)
        });
        if let Some(w) = missed {
            // It was woken, but the stream lacks the wakeup (and the
            // placer could not tell: it had not seen the thread sleep).
            // The thread's own figures get the wait; the process
            // counts, already past it, do not.
            let since = ts.saturating_sub(w).max(t.since);
            t.cause = Cause::Wakeup;
            self.woken_unseen(tid, since, w, cpu);
        }
        // Who held this CPU while it waited, added up straight from the
        // CPU's stretches (`cpus` and `threads` are borrowed apart).
        let cpus = &self.cpus;
        let behind = |times: &mut HolderTimes| {
            if let Some((from, to)) = waited {
                cpus.each_held(cpu, from, to, |h| times.add(h.holder, h.end - h.start, 0));
            }
        };
        let t = self.threads.at_mut(ix);
        let sleep_ends_here = no_wakeups || kernel_wait == Some(0);
        let anomaly = t.end_wait(counted, behind, ts, window, in_window, sleep_ends_here);
        t.count_migration(cpu, in_window);
        let tid = t.tid;
        if anomaly {
            log::debug!(
                "switch-in of {tid} at {ts} on CPU {cpu} while {:?}",
                t.state
            );
            t.anomalies += 1;
            self.anomalies += 1;
        }
        self.anomalies += u64::from(cut);
        self.charged_ns += unplaced.unwrap_or(0);
        self.unplaced_runs += u64::from(unplaced.is_some());
        // A sleep that ends here (the kernel's wait was 0, or was not
        // traced) is charged now, to what the thread slept in: only then is
        // that forgotten.
        self.transition_at(tid, Some(ix), State::Running { cpu }, ts, None, |t| {
            t.pending = None;
            if let Some(c) = counters {
                t.kernel.run_from = Some((ts, c.runtime_ns));
            }
        });
    }

    /// The part inside the window of the wait for `cpu` that ends at `ts`
    /// for the thread switching in, `[from, to)`, if it waited.
    #[inline]
    fn waited_for_cpu(
        &mut self,
        known: Option<(bool, State, u64)>,
        cpu: u32,
        ts: u64,
    ) -> Option<(u64, u64)> {
        let (window_start, window_end) = (self.window_start, self.window_end);
        let waited_since = match known {
            // Still running on another CPU: its switch-out there was lost,
            // or the kernel's stream lacked it. [`Self::evict`] finds that
            // from the other CPU's side at its next switch, but an idle CPU
            // may not switch again first (under `--all` here, a thread of
            // PID 1 that went idle unseen and was woken onto the other
            // CPU). Not waiting, then.
            Some((_, State::Running { cpu: on }, _)) if on != cpu => {
                self.evict(on, ts, None);
                None
            }
            Some((_, State::Runnable, since)) => Some(since),
            _ => None,
        };
        waited_since.map(|since| (since.max(window_start), ts.min(window_end)))
    }

    /// `tid`'s wakeup at `since`, missing from the stream (`w` its wait).
    #[inline]
    fn woken_unseen(&mut self, tid: u32, since: u64, w: u64, cpu: u32) {
        if self.in_window(since) {
            bump(&mut self.missing_wakeups, cpu);
        }
        self.transition_then(tid, State::Runnable, since, None, |t| {
            t.kernel.end_wait = Some(w);
        });
    }

    /// `task` ran on `cpu` from `since` (learnt at `ts`): its switch-in is
    /// not in the stream (see [`super::placer`]).
    fn inferred_run(&mut self, task: &Task, since: u64, ts: u64, cpu: u32) {
        let in_window = self.in_window(since);
        let (window_start, window_end) = (self.window_start, self.window_end);
        let Some(t) = self.track(task, State::Runnable, since) else {
            return;
        };
        if t.state.is_running() {
            return;
        }
        let since = since.max(t.since);
        // It was off its CPU since its last switch-out, so the runtime that
        // carried holds at the start of this run.
        t.kernel.run_from = t.kernel.runtime.map(|(_, s)| (since, s));
        t.kernel.inferred = true;
        t.kernel.inferred_wait_cause.get_or_insert(t.cause);
        t.last_cpu = Some(cpu);
        if in_window {
            t.inferred_runs += 1;
        }
        let proc = t.proc;
        if in_window {
            bump(&mut self.inferred_per_cpu, cpu);
        }
        self.hidden_switch_out(cpu, since, task.tid);
        self.transition(task.tid, State::Running { cpu }, since);
        if let Some(t) = self.threads.get_mut(&task.tid) {
            // `transition` cleared it with the state before.
            t.kernel.inferred = true;
        }
        // Learnt late: the process counts take it from `ts` on; its running
        // time before goes into the mean only.
        let late = overlap(window_start, window_end, since, ts);
        if late > 0 && self.selected(task.tid) {
            self.total.running_area += u128::from(late);
            self.procs.at(proc).running_area += u128::from(late);
        }
    }

    /// The switch the stream lacks before an inferred run on `cpu` at `ts`
    /// (`tid`'s) also took the CPU from whichever traced thread the
    /// analysis has running there: that run ended then, unseen, as the
    /// run-queue clock shows. (This kernel hides every event whose current
    /// task is one of PID 1's: under `--all`, PID 1's threads never switch
    /// out in the stream, and the task after them never switches in.)
    /// Where it ended is known, but not its charge (the kernel's counters
    /// at its next switch-in or the end snapshot tell it, as an unplaced
    /// run: see `switch_in`): so the run counts as unknown time, as after
    /// a loss, though not as a contradiction. Whether it then slept or
    /// waited is unknown until its next event.
    fn hidden_switch_out(&mut self, cpu: u32, ts: u64, tid: u32) {
        let Some(Some(other)) = self.cpu_owner.get(cpu as usize).copied() else {
            return;
        };
        if other == tid {
            return;
        }
        let running_here = self
            .threads
            .get(&other)
            .is_some_and(|o| o.state == State::Running { cpu } && o.since <= ts);
        if running_here {
            self.transition_charging(other, State::Unknown, ts, Some(State::Unknown));
        }
    }

    /// A `/proc` snapshot of a thread's counters, read at `ts`.
    fn snapshot(&mut self, c: &ThreadCounters, ts: u64) {
        self.kernel_counters = true;
        let (window_start, window_end) = (self.window_start, self.window_end);
        let allow = self.allowance(ts);
        let in_window = self.in_window(ts);
        // Only a thread this is known to be: one that ended may have left
        // its TID to a thread of another process by the time of the read.
        let Some(t) = self
            .threads
            .get_mut(&c.tid)
            .filter(|t| t.tgid == c.tgid && t.state != State::Dead)
        else {
            return;
        };
        let k = &mut t.kernel;
        k.waits = true;
        // The snapshot is stamped when its read ended; a record stamped
        // before that can hold a later value (the read stalled while the
        // thread ran elsewhere). The later value stands: the older one
        // would have the next record charge those runs again.
        let runtime = k.runtime.map_or(c.runtime_ns, |(_, r)| r.max(c.runtime_ns));
        let mut charged = 0;
        if t.state.is_running() {
            // A known value inside the run: before it the run is charged
            // by the timestamps, from it by the kernel.
            match k.run_from {
                None => k.run_from = Some((ts, runtime)),
                Some(_) => k.end_runtime = Some((ts, runtime)),
            }
        } else if let Some((_, before)) = k.runtime
            && c.runtime_ns > before
            && in_window
        {
            // Not running, yet charged more since its last record: runs
            // whose switches the kernel's stream lacked (its switch-out
            // missing, the thread was last seen going on a CPU). As at a
            // switch-in after lost records: unplaced, as far as it can be
            // true (see `allowance`).
            let asked = c.runtime_ns - before;
            let cpu = t.last_cpu.unwrap_or(0);
            charged = t.charge_unplaced(asked.min(allow.thread(t.running_ns)), cpu);
            if charged < asked {
                t.anomalies += 1;
                self.anomalies += 1;
            }
        }
        // Asleep since its last record, with no run since (its runtime has
        // not grown, and no inferred run waits to be charged): `run_delay`
        // grew only by sleep the kernel banked when it moved the sleeping
        // task between run queues (see `run_delay_asleep_ns`), which no
        // switch-in will report if the trace ends first.
        if matches!(t.state, State::Sleeping | State::Blocked)
            && !t.kernel.inferred
            && t.kernel.inferred_wait_cause.is_none()
            && t.kernel.runtime.is_some_and(|(_, r)| r == runtime)
            && let Some(before) = t.kernel.run_delay
            && c.run_delay_ns > before
        {
            if in_window {
                t.run_delay_asleep_ns += c.run_delay_ns - before;
            }
            t.kernel.run_delay = Some(c.run_delay_ns);
        }
        // Waits that ended since its last switch-in record, in runs whose
        // switch-in the stream lacked (inferred runs): charged at the next
        // switch-in record, or here, where there may be none after it (the
        // end).
        t.waits_to(c.run_delay_ns, ts, (window_start, window_end));
        let k = &mut t.kernel;
        k.runtime = Some((ts, runtime));
        // Switches the kernel counted since the last record: switch-outs
        // that were lost (the stream is otherwise complete up to here, and
        // a count only grows at a switch-out). As for the runtime, a later
        // value already seen stands.
        let now = (c.nvcsw as u32, c.nivcsw as u32);
        let (v0, i0) = *k.switches.get_or_insert(now);
        let (v, i) = (
            u64::from(now.0.saturating_sub(v0)),
            u64::from(now.1.saturating_sub(i0)),
        );
        k.switches = Some((v0.max(now.0), i0.max(now.1)));
        if in_window {
            t.voluntary += v;
            t.involuntary += i;
        }
        self.charged_ns += charged;
        self.unplaced_runs += u64::from(charged > 0);
    }

    /// `task` became runnable at `since` (learnt at `ts`; see [`super::placer`]).
    fn became_runnable(&mut self, task: &Task, since: u64, ts: u64) {
        let (window_start, window_end) = (self.window_start, self.window_end);
        let Some(t) = self.track(task, State::Sleeping, since) else {
            return;
        };
        if !matches!(t.state, State::Sleeping | State::Blocked | State::Unknown) {
            // Preempted, it has been runnable since it left its CPU.
            return;
        }
        t.cause = Cause::Wakeup;
        let since = since.max(t.since);
        let proc = t.proc;
        self.transition(task.tid, State::Runnable, since);
        // A wait longer than the placer's lag is learnt after the process
        // counts moved on: its runnable time before `ts` is added to the
        // mean but cannot change the profile of what ran alongside it.
        let late = overlap(window_start, window_end, since, ts);
        if late > 0 && self.selected(task.tid) {
            self.late_waits += 1;
            self.total.runnable_area += u128::from(late);
            self.procs.at(proc).runnable_area += u128::from(late);
        }
    }

    /// `src` woke `wakee` at `ts` on `cpu`.
    fn wakeup(&mut self, src: &WakeSource, wakee: &Wakee, ts: u64, cpu: u32) {
        let Wakee {
            task: ref wakee,
            new,
            queued,
            run_delay,
        } = *wakee;
        let in_window = self.in_window(ts);
        let implied = if new { State::Absent } else { State::Sleeping };
        // A thread first seen here: its waits count from the run delay the
        // wakeup found, which a part of the wait banked at a migration adds
        // to before its switch-in. (Nothing below reads it first.)
        let Some(ix) = self.track_ix(wakee, implied, ts) else {
            if let Some(d) = run_delay
                && let Some(t) = self.threads.get_mut(&wakee.tid)
            {
                t.kernel.run_delay.get_or_insert(d);
            }
            return;
        };
        let t = self.threads.at_mut(ix);
        if let Some(d) = run_delay {
            t.kernel.run_delay.get_or_insert(d);
        }
        if new && t.created_ns.is_none() {
            t.created_ns = Some(ts);
        }
        if let State::Running { cpu: on } = t.state
            && on != cpu
            && !new
        {
            t.woken_on_cpu = Some((ts, *src, cpu));
            return;
        }
        if matches!(
            t.state,
            State::Sleeping | State::Blocked | State::Absent | State::Unknown
        ) || (new && t.state == State::Runnable)
        {
            t.cause = Cause::Wakeup;
            t.kernel.asleep_queued = queued;
            if in_window {
                t.add_waker(src);
            }
            let tid = t.tid;
            let runnable = t.state == State::Runnable;
            // (Its transition changes no chain, nor whether a thread ended.)
            let chain = self.chain_of(tid, &src.task, src.context);
            let woken = |t: &mut ThreadTrack| t.woken_through(&chain, in_window);
            if runnable {
                woken(self.threads.at_mut(ix));
            } else {
                self.transition_at(tid, Some(ix), State::Runnable, ts, None, woken);
            }
            if let Some(tl) = &mut self.timeline
                && in_window
            {
                tl.wakeups.push(WakeEdge {
                    ts,
                    waker_tid: src.task.tid,
                    wakee_tid: tid,
                    cpu,
                    waker_tgid: src.task.tgid,
                    waker_comm: src.task.comm,
                    context: src.context,
                });
            }
        }
    }

    /// `tid` was woken by `waker` in `context`: its chain is that link
    /// followed by the waker's own chain.
    fn follow_chain(&mut self, tid: u32, waker: &Task, context: WakeContext, in_window: bool) {
        let chain = self.chain_of(tid, waker, context);
        if let Some(t) = self.threads.get_mut(&tid) {
            t.woken_through(&chain, in_window);
        }
    }

    /// The chain of `tid` woken by `waker` in `context` (see `follow_chain`).
    fn chain_of(&self, tid: u32, waker: &Task, context: WakeContext) -> Chain {
        // A thread that ended is not the waker: its TID may be another's now.
        let waker_track = self
            .threads
            .get(&waker.tid)
            .filter(|t| t.state != State::Dead);
        let traced = waker_track.is_some_and(|t| t.tgid == waker.tgid && t.traced)
            || (waker_track.is_some() && self.traced.contains(&waker.tgid));
        let link = Link::of(context, Occupant::of(waker), traced);
        // The waker's chain by reference: a chain is a few hundred bytes.
        let waker_chain = match link {
            Link::Thread(_) => waker_track.and_then(|t| t.chain.as_ref()),
            _ => None,
        };
        Chain::extend(link, waker_chain, tid)
    }
}

/// The parts of the transitions and switches above that touch only the
/// thread's own track: the `Analyzer` methods hold it borrowed while they
/// update `self`'s other fields (one look-up per event).
impl ThreadTrack {
    /// The timeline segment of the time charged as `charged` up to `ts`.
    #[inline]
    fn closed_segment(
        &self,
        tid: u32,
        state: SegState,
        charged: State,
        ts: u64,
        window: Window,
        inferred: bool,
    ) -> Segment {
        let end = ts.min(window.end).max(window.start);
        let mut seg = Segment::new(tid, self.since.max(window.start).min(end), end, state);
        seg.inferred = inferred;
        if let (State::Sleeping | State::Blocked, Some(p)) = (charged, self.pending)
            && p.key.class != super::waits::WaitClass::Unknown
        {
            seg.wait = Some(p.key);
            seg.kernel_stack = p.kernel_stack;
        }
        seg
    }

    /// A switch-out's counts, from the kernel's counters or else `reason`:
    /// the charge of an unplaced run, if any, and whether it was cut.
    #[inline]
    fn count_switch_out(
        &mut self,
        reason: SwitchReason,
        counters: Option<PrevCounters>,
        ts: u64,
        cpu: u32,
        in_window: bool,
        allow: Allowance,
    ) -> (Option<u64>, bool) {
        let mut anomaly = false;
        let mut unplaced = None;
        if let Some(c) = counters {
            let k = &mut self.kernel;
            if !self.state.is_running()
                && let Some((_, before)) = k.runtime
                && c.runtime_ns > before
            {
                // It ran, with neither end of the run in the stream nor
                // a length to place it by: the kernel's charge still counts
                // (as far as it can be true: see `allowance`).
                let asked = c.runtime_ns - before;
                let ns = asked.min(allow.thread(self.running_ns));
                anomaly |= ns < asked;
                if in_window {
                    self.unplaced_runs += 1;
                    self.unplaced_ns += ns;
                    self.running_ns += ns;
                    // It ended on this CPU (its switch-out is this one).
                    self.cpu_ns.add(cpu, ns);
                    unplaced = Some(ns);
                }
            }
            k.end_runtime = Some((ts, c.runtime_ns));
            k.end_run_clock = c.run_clock_ns;
            k.runtime = Some((ts, c.runtime_ns));
            let (v, i) = match k.switches.replace((c.nvcsw, c.nivcsw)) {
                // The kernel's counts: exact even if a switch-out was lost.
                Some((v0, i0)) => (
                    u64::from(c.nvcsw.wrapping_sub(v0)),
                    u64::from(c.nivcsw.wrapping_sub(i0)),
                ),
                None => (
                    u64::from(reason.is_voluntary()),
                    u64::from(reason == SwitchReason::Preempted),
                ),
            };
            if in_window {
                self.voluntary += v;
                self.involuntary += i;
            }
        } else if in_window {
            match reason {
                SwitchReason::Preempted => self.involuntary += 1,
                SwitchReason::Sleeping | SwitchReason::Blocked => self.voluntary += 1,
                SwitchReason::Dead => {}
            }
        }
        (unplaced, anomaly)
    }

    /// The slice a switch-out at `ts` ends; whether its state contradicts it.
    #[inline]
    fn end_slice(&mut self, running: State, ts: u64, window_start: u64, in_window: bool) -> bool {
        let mut anomaly = false;
        if self.state.is_running() {
            if self.state != running {
                anomaly = true;
            }
            let slice = ts - self.since.max(window_start).min(ts);
            if in_window {
                self.slices += 1;
                self.longest_slice_ns = self.longest_slice_ns.max(slice);
            }
        } else if self.state != State::Unknown {
            // (From an unknown state a switch-out is news, not a contradiction.)
            anomaly = true;
        }
        anomaly
    }

    /// Leaving the CPU for `next_state`: pending wait, wait counts, preempter.
    #[inline]
    fn leave_cpu(
        &mut self,
        reason: SwitchReason,
        off: Option<&OffCpu>,
        next_state: State,
        next: &Task,
        ts: u64,
        in_window: bool,
    ) {
        if reason == SwitchReason::Dead {
            self.exited_ns.get_or_insert(ts);
        }
        let key = WaitKey::of(reason, off);
        self.pending = matches!(next_state, State::Sleeping | State::Blocked).then_some(Pending {
            key,
            kernel_stack: off.and_then(|o| o.kernel_stack),
            user_stack: off.and_then(|o| o.user_stack),
        });
        if in_window && reason != SwitchReason::Preempted {
            self.waits.add_count(key);
            if let Some(p) = self
                .pending
                .filter(|p| p.kernel_stack.is_some() || p.user_stack.is_some())
            {
                self.stacks
                    .entry((p.kernel_stack, p.user_stack, p.key))
                    .or_default()
                    .count += 1;
            }
        }
        self.preempter = None;
        if reason == SwitchReason::Preempted {
            let holder = Holder::Task(Occupant::of(next));
            self.preempter = Some(holder);
            if in_window {
                self.preempted_by.add(holder, 0, 1);
            }
        }
        self.cause = Cause::Preempted;
    }

    /// A wakeup that raced with the switch-out: its edge, its waker's chain.
    #[inline]
    fn raced_wakeup(
        &mut self,
        woken: Option<(u64, WakeSource, u32)>,
        next_state: State,
        reason: SwitchReason,
        in_window: bool,
    ) -> (Option<WakeEdge>, Option<(Task, WakeContext)>) {
        let mut edge = None;
        let mut woke = None;
        if let Some((at, src, waker_cpu)) = woken
            && next_state == State::Runnable
            && reason != SwitchReason::Preempted
        {
            self.cause = Cause::Wakeup;
            if in_window {
                self.add_waker(&src);
            }
            edge = Some(WakeEdge {
                ts: at,
                waker_tid: src.task.tid,
                wakee_tid: self.tid,
                cpu: waker_cpu,
                waker_tgid: src.task.tgid,
                waker_comm: src.task.comm,
                context: src.context,
            });
            woke = Some((src.task, src.context));
        }
        (edge, woke)
    }

    /// A switch-in's counters: the charge of an unplaced run, if any, and
    /// whether it was cut.
    #[inline]
    fn count_switch_in(
        &mut self,
        counters: Option<NextCounters>,
        ts: u64,
        cpu: u32,
        in_window: bool,
        allow: Allowance,
    ) -> (Option<u64>, bool) {
        let mut unplaced = None;
        let mut cut = false;
        if let Some(c) = counters {
            if let Some((_, before)) = self.kernel.runtime
                && c.runtime_ns > before
                && in_window
            {
                // A whole run since the last record of it (lost records),
                // as far as it can be true (see `allowance`).
                let asked = c.runtime_ns - before;
                // Where it ran is unknown; the CPU it is switched in on
                // stands for it, so that the per-CPU times add up.
                let charged = self.charge_unplaced(asked.min(allow.thread(self.running_ns)), cpu);
                cut = charged < asked;
                unplaced = Some(charged);
            }
            self.kernel.runtime = Some((ts, c.runtime_ns));
        }
        if cut {
            self.anomalies += 1;
        }
        (unplaced, cut)
    }

    /// The run-queue part of the kernel's wait a switch-in ends, if known.
    #[inline]
    fn end_kernel_wait(
        &mut self,
        kernel_wait: Option<KernelWait>,
        ts: u64,
        window: Window,
        in_window: bool,
    ) -> Option<u64> {
        // Whether the kernel began the wait ending now while the thread
        // slept, and how long ago the wakeup that ended its sleep was.
        let asleep_queued =
            std::mem::take(&mut self.kernel.asleep_queued) && self.state == State::Runnable;
        let woken_for = ts.saturating_sub(self.since);
        // The kernel's wait, when the record has it: the growth of
        // `run_delay`, which ends now (the first time a thread is seen, the
        // part since it was last queued).
        kernel_wait.map(|w| {
            let k = &mut self.kernel;
            k.waits = true;
            // Any wait before an inferred run is in this figure.
            k.inferred_wait_cause = None;
            let mut wait = match k.run_delay.replace(w.run_delay_ns) {
                Some(before) => w.run_delay_ns.saturating_sub(before),
                None => w.queued_ns,
            };
            if asleep_queued {
                // Of a wait the kernel began while the thread slept, only
                // the part since its wakeup is run-queue wait (a waking
                // precedes the enqueue whose clock a true wait starts
                // from); the rest was sleep, reported apart so that the
                // two still add up to the kernel's `run_delay`.
                let asleep = wait.saturating_sub(woken_for);
                wait -= asleep;
                if in_window {
                    self.run_delay_asleep_ns += asleep;
                }
            }
            let k = &mut self.kernel;
            k.end_wait = Some(wait);
            self.add_kernel_wait(window.overlap(ts.saturating_sub(wait), ts));
            wait
        })
    }

    /// The wait a switch-in at `ts` ends, by state (`sleep_ends_here`: a
    /// sleep may end at the CPU directly; `behind` adds up who held the CPU
    /// meanwhile); whether the state contradicts it.
    #[inline]
    fn end_wait(
        &mut self,
        counted: Option<u64>,
        behind: impl FnOnce(&mut HolderTimes),
        ts: u64,
        window: Window,
        in_window: bool,
        sleep_ends_here: bool,
    ) -> bool {
        // A wait is recorded if any of it is in the window: one that
        // ends after `--until` is recorded up to there, as the runnable
        // time has it.
        let record = |w: u64| in_window || w > 0;
        let mut anomaly = false;
        match self.state {
            State::Runnable => {
                let wait = overlap(window.start, window.end, self.since, ts);
                let w = counted.unwrap_or(wait);
                if record(w) {
                    self.record_wait(w);
                }
                if let Some(p) = self.preempter.take() {
                    self.preempted_by.add(p, wait, 0);
                }
                behind(&mut self.waited_behind);
            }
            State::Sleeping | State::Blocked if sleep_ends_here => {
                self.cause = Cause::Wakeup;
                let w = counted.unwrap_or(0);
                if record(w) {
                    // The kernel's wait when the placer could not put it
                    // back (it counted it already in `runnable_ns`).
                    self.record_wait(w);
                }
            }
            // How long it waited, if it did, is unknown, unless the kernel
            // says.
            State::Unknown => {
                if let Some(w) = counted.filter(|&w| record(w)) {
                    self.record_wait(w);
                }
            }
            _ => {
                anomaly = true;
                if let Some(w) = counted.filter(|&w| record(w)) {
                    self.record_wait(w);
                }
            }
        }
        anomaly
    }

    /// A switch-in on `cpu`: a migration if the thread last ran elsewhere.
    #[inline]
    fn count_migration(&mut self, cpu: u32, in_window: bool) {
        if let Some(last) = self.last_cpu
            && last != cpu
            && in_window
        {
            self.migrations += 1;
            *self.migration_pairs.entry((last, cpu)).or_default() += 1;
        }
        self.last_cpu = Some(cpu);
    }
}

/// Count one on `cpu` in a per-CPU list.
fn bump(per_cpu: &mut Vec<u64>, cpu: u32) {
    let i = cpu as usize;
    if per_cpu.len() <= i {
        per_cpu.resize(i + 1, 0);
    }
    per_cpu[i] += 1;
}
