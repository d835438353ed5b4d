//! Turns a trace (a stream of [`Record`]s, live or read back) into per-thread
//! state timelines and summaries, in one pass and in memory that does not
//! grow with the trace (unless a timeline is asked for).
//!
//! Every traced thread is, at every instant of the window, in exactly one of
//! running (on a CPU), runnable, sleeping or blocked. Tracing starts with
//! threads in unknown states, so the first events are held back briefly
//! (the *prelude*) until each thread's first event tells what it was doing
//! when the window opened; then the buffered events are replayed.

pub(crate) mod concurrency;
pub mod filter;
pub(crate) mod histogram;
pub(crate) mod placer;
pub mod summary;
pub(crate) mod thread;
pub mod timeline;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::event::{Comm, Event, EventKind, SwitchReason, Task};
use crate::trace::consumer::Consumer;
use crate::trace::{End, Header, Lost, Record, ThreadInfo};
use histogram::Histogram;
use placer::{Item, Placer};
use summary::{DelayStats, Parallelism, ProcessSummary, StateTimes, Summary, ThreadSummary, Waker};
use thread::{Cause, State, ThreadTrack};
use timeline::{Segment, Timeline, TimelineThread, WakeEdge};

/// Hashes a TID or TGID for the per-event maps: one multiply instead of
/// SipHash (keys come from the kernel or a trace file; a crafted file with
/// colliding TIDs can only slow the analysis down).
#[derive(Default, Clone, Copy)]
pub struct TidHasher(u64);

impl std::hash::Hasher for TidHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(b.into());
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type TidBuild = std::hash::BuildHasherDefault<TidHasher>;
/// A map keyed by TID or TGID.
pub type TidMap<V> = HashMap<u32, V, TidBuild>;
/// A set of TIDs or TGIDs.
pub type TidSet = HashSet<u32, TidBuild>;

/// Wakers listed per thread.
pub const TOP_WAKERS: usize = 5;
/// A wakeup from another CPU at most this long before a thread's switch-out
/// to sleep raced with it (see `switch_out`). The race window is the switch
/// path itself, a few µs; a stale wakeup is much older.
const WAKE_RACE_NS: u64 = 100_000;

/// The prelude ends at the latest this long after `/proc` was read...
const PRELUDE_MAX_NS: u64 = 1_000_000_000;
/// ...or after this many events.
const PRELUDE_MAX_EVENTS: usize = 1_000_000;

/// What to analyse.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only account time from this long after the trace's start.
    pub since_ns: Option<u64>,
    /// Only account time until this long after the trace's start.
    pub until_ns: Option<u64>,
    /// Keep the full [`Timeline`] (memory grows with the trace).
    pub keep_timeline: bool,
}

/// One thread as [`Analyzer::live_view`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveThread {
    pub tid: u32,
    pub tgid: u32,
    pub comm: String,
    /// `None` once it has exited.
    pub state: Option<timeline::SegState>,
    /// CPU → on-CPU ns so far.
    pub cpu_ns: BTreeMap<u32, u64>,
    pub runnable_ns: u64,
    pub switches: u64,
}

/// Running/runnable counts of a set of threads and the time integrals of them.
#[derive(Clone, Debug, Default)]
struct ProcAcc {
    comm: Comm,
    running: u32,
    runnable: u32,
    running_ns: Vec<u64>,
    parallel_ns: u64,
    time_sliced_ns: u64,
    busy_ns: u64,
    running_area: u128,
    runnable_area: u128,
}

impl ProcAcc {
    fn new(ncpus: u32) -> Self {
        ProcAcc {
            running_ns: vec![0; ncpus as usize + 1],
            ..Default::default()
        }
    }

    fn add(&mut self, dt: u64) {
        if dt == 0 {
            return;
        }
        let k = (self.running as usize).min(self.running_ns.len() - 1);
        self.running_ns[k] += dt;
        if self.running >= 2 {
            self.parallel_ns += dt;
        }
        if self.running + self.runnable >= 2 && self.runnable >= 1 {
            self.time_sliced_ns += dt;
        }
        if self.running >= 1 {
            self.busy_ns += dt;
        }
        self.running_area += self.running as u128 * dt as u128;
        self.runnable_area += self.runnable as u128 * dt as u128;
    }

    fn shift(&mut self, old: State, new: State) {
        match old {
            State::Running { .. } => self.running = self.running.saturating_sub(1),
            State::Runnable => self.runnable = self.runnable.saturating_sub(1),
            _ => {}
        }
        match new {
            State::Running { .. } => self.running += 1,
            State::Runnable => self.runnable += 1,
            _ => {}
        }
    }

    fn parallelism(&self, window: u64) -> Parallelism {
        let mean = |area: u128| {
            if window == 0 {
                0.0
            } else {
                area as f64 / window as f64
            }
        };
        Parallelism {
            running_ns: self.running_ns.clone(),
            parallel_ns: self.parallel_ns,
            time_sliced_ns: self.time_sliced_ns,
            busy_ns: self.busy_ns,
            mean_running: mean(self.running_area),
            mean_runnable: mean(self.runnable_area),
        }
    }
}

#[derive(Default)]
struct Prelude {
    hints: Vec<ThreadInfo>,
    events: Vec<Item>,
    /// Latest `/proc` read.
    hints_ts: u64,
    /// Threads `/proc` showed as `R` that no event has involved yet: until
    /// one does, we cannot tell whether it was running or waiting.
    unresolved: TidSet,
}

/// The streaming analysis. Feed it records in order, then call [`Analyzer::finish`].
pub struct Analyzer {
    opts: Options,
    header: Option<Header>,
    ncpus: u32,
    ws: u64,
    we: u64,
    prelude: Option<Prelude>,
    /// Set for a trace taken without wakeups (see [`placer`]).
    placer: Option<Placer>,
    threads: TidMap<ThreadTrack>,
    order: Vec<u32>,
    procs: BTreeMap<u32, ProcAcc>,
    total: ProcAcc,
    traced: TidSet,
    clock: u64,
    events: u64,
    lost: Vec<u64>,
    end: Option<End>,
    anomalies: u64,
    /// Waits the placer learnt too late to count in full (see `became_runnable`).
    late_waits: u64,
    timeline: Option<Timeline>,
}

/// The window `[ws, we]` intersected with `[a, b]`, in ns.
fn overlap(ws: u64, we: u64, a: u64, b: u64) -> u64 {
    b.min(we).saturating_sub(a.max(ws))
}

fn hint_state(info: &ThreadInfo) -> State {
    match info.state {
        'R' => State::Running { cpu: info.cpu },
        'D' => State::Blocked,
        'Z' | 'X' | 'x' => State::Dead,
        _ => State::Sleeping,
    }
}

impl Analyzer {
    pub fn new(opts: Options) -> Self {
        Analyzer {
            opts,
            header: None,
            ncpus: 1,
            ws: 0,
            we: u64::MAX,
            prelude: None,
            placer: None,
            threads: TidMap::default(),
            order: Vec::new(),
            procs: BTreeMap::new(),
            total: ProcAcc::new(1),
            traced: TidSet::default(),
            clock: 0,
            events: 0,
            lost: Vec::new(),
            end: None,
            anomalies: 0,
            late_waits: 0,
            timeline: None,
        }
    }

    pub fn feed(&mut self, rec: &Record) {
        match rec {
            Record::Header(h) => self.start(h),
            Record::Thread(info) => match &mut self.prelude {
                Some(p) => {
                    p.hints_ts = p.hints_ts.max(info.ts);
                    if info.state == 'R' {
                        p.unresolved.insert(info.tid);
                    }
                    p.hints.push(*info);
                }
                None => {
                    if !self.threads.contains_key(&info.tid) && self.traced.contains(&info.tgid) {
                        let t = Task {
                            tid: info.tid,
                            tgid: info.tgid,
                            comm: info.comm,
                            prio: 0,
                        };
                        self.add_thread(&t, hint_state(info), info.ts);
                    }
                }
            },
            Record::Event(e) => {
                self.events += 1;
                match self.placer.take() {
                    Some(mut p) => {
                        p.push(e, &mut |i| self.item(i));
                        self.placer = Some(p);
                    }
                    None => self.item(Item::Event(*e)),
                }
            }
            Record::Lost(l) => self.lost_mark(l),
            Record::End(e) => {
                self.end = Some(e.clone());
                self.we = self.we.min(e.end_ns);
            }
        }
    }

    fn item(&mut self, i: Item) {
        match &mut self.prelude {
            Some(p) => {
                p.events.push(i);
                if !p.unresolved.is_empty() {
                    for tid in involved_tids(&i) {
                        p.unresolved.remove(&tid);
                    }
                }
                if self.prelude_done(i.ts()) {
                    self.finish_prelude();
                }
            }
            None => self.process(&i),
        }
    }

    fn start(&mut self, h: &Header) {
        self.ncpus = h.ncpus.max(1);
        self.ws = h.start_ns + self.opts.since_ns.unwrap_or(0);
        self.we = match self.opts.until_ns {
            Some(u) => h.start_ns.saturating_add(u),
            None => u64::MAX,
        };
        self.clock = self.ws;
        self.total = ProcAcc::new(self.ncpus);
        self.traced.insert(h.target_pid);
        self.prelude = Some(Prelude::default());
        self.placer = (!h.wakeups).then(Placer::default);
        self.lost = vec![0; self.ncpus as usize];
        if self.opts.keep_timeline {
            self.timeline = Some(Timeline {
                start_ns: self.ws,
                ncpus: self.ncpus,
                ..Default::default()
            });
        }
        self.header = Some(h.clone());
    }

    fn prelude_done(&self, ts: u64) -> bool {
        let Some(p) = &self.prelude else { return true };
        if p.events.len() >= PRELUDE_MAX_EVENTS || ts > p.hints_ts.saturating_add(PRELUDE_MAX_NS) {
            return true;
        }
        ts > p.hints_ts && p.unresolved.is_empty()
    }

    /// Decide each thread's state at the start of the window from its first
    /// event (or `/proc` when it has none), then replay the held events.
    fn finish_prelude(&mut self) {
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
            for (task, state) in implied_prior_states(i, &hint_of) {
                if traced.contains(&task.tgid) {
                    first.entry(task.tid).or_insert((task, state, i.ts()));
                }
            }
        }
        for h in &p.hints {
            if !first.contains_key(&h.tid) && self.traced.contains(&h.tgid) {
                let t = Task {
                    tid: h.tid,
                    tgid: h.tgid,
                    comm: h.comm,
                    prio: 0,
                };
                first.insert(h.tid, (t, hint_state(h), h.ts));
            }
        }
        // Stable order: by first event, then TID.
        let mut initial: Vec<_> = first.into_values().collect();
        initial.sort_by_key(|(t, _, ts)| (*ts, t.tid));
        for (task, state, _) in initial {
            if state != State::Absent {
                self.add_thread(&task, state, self.clock);
            }
        }
        for i in &p.events {
            self.process(i);
        }
    }

    fn follows(&self) -> bool {
        self.header.as_ref().is_some_and(|h| h.follow_children)
    }

    /// Were wakeups traced? (Without them, see [`placer`].)
    fn wakeups(&self) -> bool {
        self.header.as_ref().is_none_or(|h| h.wakeups)
    }

    fn lost_mark(&mut self, l: &Lost) {
        let cpu = l.cpu as usize;
        if self.lost.len() <= cpu {
            self.lost.resize(cpu + 1, 0);
        }
        self.lost[cpu] += l.count;
        if let Some(tl) = &mut self.timeline {
            tl.lost.push((l.ts, l.cpu, l.count));
        }
    }

    fn in_window(&self, ts: u64) -> bool {
        ts >= self.ws && ts <= self.we
    }

    /// Account process-level time up to `ts`.
    fn advance(&mut self, ts: u64) {
        if ts <= self.clock {
            return;
        }
        let dt = overlap(self.ws, self.we, self.clock, ts);
        self.total.add(dt);
        for p in self.procs.values_mut() {
            p.add(dt);
        }
        self.clock = ts;
    }

    fn add_thread(&mut self, task: &Task, state: State, since: u64) {
        let track = ThreadTrack::new(task.tid, task.tgid, task.comm, State::Absent, since);
        self.threads.insert(task.tid, track);
        self.order.push(task.tid);
        let ncpus = self.ncpus;
        let proc_acc = self
            .procs
            .entry(task.tgid)
            .or_insert_with(|| ProcAcc::new(ncpus));
        if task.tid == task.tgid || proc_acc.comm.is_empty() {
            proc_acc.comm = task.comm;
        }
        self.transition(task.tid, state, since);
    }

    /// Move thread `tid` to `new` at `ts`: charge the time of the old state,
    /// record its timeline segment, and keep the process counts in step.
    fn transition(&mut self, tid: u32, new: State, ts: u64) {
        let (ws, we) = (self.ws, self.we);
        let Some(t) = self.threads.get_mut(&tid) else {
            return;
        };
        let old = t.state;
        let ns = overlap(ws, we, t.since, ts);
        t.charge(old, ns);
        if let (Some(tl), Some(seg)) = (&mut self.timeline, old.seg())
            && ns > 0
        {
            tl.segments.push(Segment {
                tid,
                start: t.since.max(ws),
                end: ts.min(we),
                state: seg,
            });
        }
        t.state = new;
        t.since = ts;
        if let Some(p) = self.procs.get_mut(&t.tgid) {
            p.shift(old, new);
        }
        self.total.shift(old, new);
    }

    /// The track of a traced task, created on first sight after the prelude
    /// with the state its first event implies.
    fn track(&mut self, task: &Task, implied: State, ts: u64) -> Option<&mut ThreadTrack> {
        if !self.traced.contains(&task.tgid) {
            return None;
        }
        if !self.threads.contains_key(&task.tid) {
            self.add_thread(task, implied, ts);
        }
        let t = self.threads.get_mut(&task.tid)?;
        if !task.comm.is_empty() {
            t.comm = task.comm;
        }
        Some(t)
    }

    fn process(&mut self, i: &Item) {
        let ts = if i.ts() < self.clock {
            log::debug!("event out of order: {i:?}");
            self.anomalies += 1;
            self.clock
        } else {
            i.ts()
        };
        self.advance(ts);
        let e = match i {
            Item::Event(e) => e,
            Item::Runnable { since, task, .. } => {
                self.became_runnable(task, (*since).min(ts), ts);
                return;
            }
        };
        match e.kind {
            EventKind::Switch {
                prev,
                next,
                prev_state,
                preempt,
                ..
            } => {
                let reason = SwitchReason::decode(prev_state, preempt);
                self.switch_out(&prev, reason, ts, e.cpu);
                self.switch_in(&next, ts, e.cpu);
            }
            EventKind::Wakeup {
                waker, wakee, new, ..
            } => self.wakeup(&waker, &wakee, new, ts, e.cpu),
            EventKind::Migrate { task, .. } => {
                let in_window = self.in_window(ts);
                if let Some(t) = self.track(&task, State::Runnable, ts)
                    && in_window
                {
                    t.migrate_events += 1;
                }
            }
            EventKind::Fork { parent, child } => {
                if child.tgid != parent.tgid && self.follows() && self.traced.contains(&parent.tgid)
                {
                    self.traced.insert(child.tgid);
                }
                if self.traced.contains(&child.tgid) && !self.threads.contains_key(&child.tid) {
                    self.add_thread(&child, State::Runnable, ts);
                    if let Some(t) = self.threads.get_mut(&child.tid) {
                        t.created_ns = Some(ts);
                    }
                }
            }
            EventKind::Exec { task, old_tid } => {
                let running = State::Running { cpu: e.cpu };
                if old_tid != task.tid && self.threads.contains_key(&old_tid) {
                    // A non-leader thread exec'd and took over the leader's TID.
                    self.transition(old_tid, State::Dead, ts);
                    if let Some(t) = self.threads.get_mut(&old_tid) {
                        t.exited_ns.get_or_insert(ts);
                    }
                    if let Some(t) = self.threads.get(&task.tid)
                        && !t.state.is_running()
                    {
                        self.transition(task.tid, running, ts);
                    }
                }
                if let Some(t) = self.track(&task, running, ts) {
                    t.comm = task.comm;
                }
                if let Some(p) = self.procs.get_mut(&task.tgid) {
                    p.comm = task.comm;
                }
            }
            EventKind::Exit { task } => {
                let running = State::Running { cpu: e.cpu };
                if let Some(t) = self.track(&task, running, ts) {
                    t.exited_ns.get_or_insert(ts);
                }
            }
        }
    }

    fn switch_out(&mut self, prev: &Task, reason: SwitchReason, ts: u64, cpu: u32) {
        let in_window = self.in_window(ts);
        let ws = self.ws;
        let running = State::Running { cpu };
        let Some(t) = self.track(prev, running, ts) else {
            return;
        };
        let mut anomaly = false;
        if t.state.is_running() {
            if t.state != running {
                anomaly = true;
            }
            let slice = ts - t.since.max(ws).min(ts);
            if in_window {
                t.slices += 1;
                t.longest_slice_ns = t.longest_slice_ns.max(slice);
            }
        } else {
            anomaly = true;
        }
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
        if in_window {
            match reason {
                SwitchReason::Preempted => t.involuntary += 1,
                SwitchReason::Sleeping | SwitchReason::Blocked => t.voluntary += 1,
                SwitchReason::Dead => {}
            }
        }
        if reason == SwitchReason::Dead {
            t.exited_ns.get_or_insert(ts);
        }
        t.cause = Cause::Preempted;
        let mut edge = None;
        if let Some((at, waker, waker_cpu)) = woken
            && next_state == State::Runnable
            && reason != SwitchReason::Preempted
        {
            t.cause = Cause::Wakeup;
            if in_window {
                t.add_waker(&waker);
            }
            edge = Some(WakeEdge {
                ts: at,
                waker_tid: waker.tid,
                wakee_tid: t.tid,
                cpu: waker_cpu,
            });
        }
        let tid = t.tid;
        if anomaly {
            log::debug!(
                "switch-out of {tid} at {ts} on CPU {cpu} while {:?}",
                t.state
            );
            t.anomalies += 1;
            self.anomalies += 1;
        }
        self.transition(tid, next_state, ts);
        let edge = edge.filter(|e| self.in_window(e.ts));
        if let (Some(tl), Some(edge)) = (&mut self.timeline, edge) {
            // Edges are kept in time order; this one is at most
            // `WAKE_RACE_NS` old, so it goes in near the end.
            let at = tl.wakeups.partition_point(|w| w.ts <= edge.ts);
            tl.wakeups.insert(at, edge);
        }
    }

    fn switch_in(&mut self, next: &Task, ts: u64, cpu: u32) {
        let (ws, we) = (self.ws, self.we);
        let in_window = self.in_window(ts);
        // Without wakeups, a thread that did not wait goes from sleep to
        // its CPU directly (the placer marks every wait it had).
        let no_wakeups = !self.wakeups();
        let implied = if no_wakeups {
            State::Sleeping
        } else {
            State::Runnable
        };
        let Some(t) = self.track(next, implied, ts) else {
            return;
        };
        t.woken_on_cpu = None;
        let mut anomaly = false;
        match t.state {
            State::Runnable => {
                let wait = overlap(ws, we, t.since, ts);
                if in_window {
                    t.record_wait(wait);
                }
            }
            State::Sleeping | State::Blocked if no_wakeups => {
                t.cause = Cause::Wakeup;
                if in_window {
                    t.record_wait(0);
                }
            }
            _ => anomaly = true,
        }
        if let Some(last) = t.last_cpu
            && last != cpu
            && in_window
        {
            t.migrations += 1;
            *t.migration_pairs.entry((last, cpu)).or_default() += 1;
        }
        t.last_cpu = Some(cpu);
        let tid = t.tid;
        if anomaly {
            log::debug!(
                "switch-in of {tid} at {ts} on CPU {cpu} while {:?}",
                t.state
            );
            t.anomalies += 1;
            self.anomalies += 1;
        }
        self.transition(tid, State::Running { cpu }, ts);
    }

    /// `task` became runnable at `since` (learnt at `ts`; see [`placer`]).
    fn became_runnable(&mut self, task: &Task, since: u64, ts: u64) {
        let (ws, we) = (self.ws, self.we);
        let Some(t) = self.track(task, State::Sleeping, since) else {
            return;
        };
        if !matches!(t.state, State::Sleeping | State::Blocked) {
            // Preempted, it has been runnable since it left its CPU.
            return;
        }
        t.cause = Cause::Wakeup;
        let since = since.max(t.since);
        let tgid = t.tgid;
        self.transition(task.tid, State::Runnable, since);
        // A wait longer than the placer's lag is learnt after the process
        // counts moved on: its runnable time before `ts` is added to the
        // mean but cannot change the profile of what ran alongside it.
        let late = overlap(ws, we, since, ts);
        if late > 0 {
            self.late_waits += 1;
            self.total.runnable_area += u128::from(late);
            if let Some(p) = self.procs.get_mut(&tgid) {
                p.runnable_area += u128::from(late);
            }
        }
    }

    fn wakeup(&mut self, waker: &Task, wakee: &Task, new: bool, ts: u64, cpu: u32) {
        let in_window = self.in_window(ts);
        let implied = if new { State::Absent } else { State::Sleeping };
        let Some(t) = self.track(wakee, implied, ts) else {
            return;
        };
        if new && t.created_ns.is_none() {
            t.created_ns = Some(ts);
        }
        if let State::Running { cpu: on } = t.state
            && on != cpu
            && !new
        {
            t.woken_on_cpu = Some((ts, *waker, cpu));
            return;
        }
        if matches!(t.state, State::Sleeping | State::Blocked | State::Absent)
            || (new && t.state == State::Runnable)
        {
            t.cause = Cause::Wakeup;
            if in_window {
                t.add_waker(waker);
            }
            let tid = t.tid;
            if t.state != State::Runnable {
                self.transition(tid, State::Runnable, ts);
            }
            if let Some(tl) = &mut self.timeline
                && in_window
            {
                tl.wakeups.push(WakeEdge {
                    ts,
                    waker_tid: waker.tid,
                    wakee_tid: tid,
                    cpu,
                });
            }
        }
    }

    /// Where every thread stands at `now` (trace clock), with the time of
    /// the state it is in counted up to `now`. Empty while the first events
    /// are still held back to learn the initial states.
    pub fn live_view(&self, now: u64) -> Vec<LiveThread> {
        let mut v: Vec<LiveThread> = self
            .order
            .iter()
            .filter_map(|tid| self.threads.get(tid))
            .filter(|t| t.state != State::Absent)
            .map(|t| {
                let open = overlap(self.ws, self.we, t.since, now.max(t.since));
                let mut cpu_ns = t.cpu_ns.clone();
                let mut runnable_ns = t.runnable_ns;
                match t.state {
                    State::Running { cpu } => *cpu_ns.entry(cpu).or_default() += open,
                    State::Runnable => runnable_ns += open,
                    _ => {}
                }
                LiveThread {
                    tid: t.tid,
                    tgid: t.tgid,
                    comm: t.comm.to_string(),
                    state: t.state.seg(),
                    cpu_ns,
                    runnable_ns,
                    switches: t.voluntary + t.involuntary,
                }
            })
            .collect();
        v.sort_by_key(|t| t.tid);
        v
    }

    /// Close the window and build the summary (and the timeline if kept).
    pub fn finish(mut self) -> (Summary, Option<Timeline>) {
        if let Some(mut p) = self.placer.take() {
            p.finish(&mut |i| self.item(i));
        }
        self.finish_prelude();
        if self.late_waits > 0 {
            log::info!(
                "{} waits longer than {} ms: counted in full for their threads, \
                 but not in the process's time-sliced figure",
                self.late_waits,
                placer::LAG_NS / 1_000_000
            );
        }
        if self.we == u64::MAX {
            // No end record (a truncated trace): end at the last event.
            self.we = self.clock;
        }
        let we = self.we;
        self.advance(we);
        let tids: Vec<u32> = self.order.clone();
        for tid in &tids {
            if let Some(t) = self.threads.get_mut(tid) {
                let state = t.state;
                if state.is_running() && t.since < we {
                    // The slice still open at the end counts as a slice.
                    t.slices += 1;
                    t.longest_slice_ns = t.longest_slice_ns.max(we - t.since.max(self.ws));
                }
                self.transition(*tid, state, we);
            }
        }
        let window = we.saturating_sub(self.ws);
        // A process is named after its main thread's latest name.
        for (tgid, acc) in self.procs.iter_mut() {
            if let Some(leader) = self.threads.get(tgid) {
                acc.comm = leader.comm;
            }
        }
        let header = self.header.clone().unwrap_or_else(|| Header {
            version: crate::trace::TRACE_SCHEMA_VERSION,
            wall_clock_offset_ns: 0,
            ncpus: self.ncpus,
            target_pid: 0,
            target_comm: String::new(),
            command: None,
            follow_children: false,
            wakeups: true,
            pinned_cpus: None,
            kernel_release: String::new(),
            hostname: String::new(),
            tool_version: String::new(),
            start_ns: self.ws,
        });

        let mut threads: Vec<ThreadSummary> = tids
            .iter()
            .filter_map(|tid| self.threads.get(tid))
            .filter(|t| t.lifetime_ns() > 0 || t.voluntary + t.involuntary > 0)
            .map(|t| thread_summary(t, window))
            .collect();
        threads.sort_by(|a, b| b.on_cpu_ns.cmp(&a.on_cpu_ns).then(a.tid.cmp(&b.tid)));

        let processes: Vec<ProcessSummary> = self
            .procs
            .iter()
            .map(|(tgid, acc)| process_summary(*tgid, acc, &threads, window, |t| t.tgid == *tgid))
            .collect();
        let root_comm = processes
            .iter()
            .find(|p| p.tgid == header.target_pid)
            .map(|p| p.comm.clone())
            .unwrap_or_else(|| header.target_comm.clone());
        let mut total = process_summary(header.target_pid, &self.total, &threads, window, |_| true);
        total.comm = root_comm;
        let total_comm = total.comm.clone();

        let end = self.end.clone();
        let lost_events: u64 = self.lost.iter().sum();
        let summary = Summary {
            target_pid: header.target_pid,
            target_comm: total_comm,
            command: header.command.clone(),
            pinned_cpus: header.pinned_cpus.clone(),
            follow_children: header.follow_children,
            wakeups: header.wakeups,
            ncpus: self.ncpus,
            kernel_release: header.kernel_release.clone(),
            hostname: header.hostname,
            window_start_ns: self.ws,
            window_end_ns: we,
            window_ns: window,
            events: self.events,
            lost_events: end
                .as_ref()
                .map_or(lost_events, |e| e.lost_events.max(lost_events)),
            lost_per_cpu: end
                .as_ref()
                .filter(|e| !e.lost_per_cpu.is_empty())
                .map_or_else(|| self.lost.clone(), |e| e.lost_per_cpu.clone()),
            complete: end.as_ref().is_some_and(|e| e.complete),
            stop_reason: end
                .as_ref()
                .map_or_else(|| "truncated".to_string(), |e| e.reason.clone()),
            anomalies: self.anomalies,
            total,
            processes,
            threads,
        };

        let timeline = self.timeline.take().map(|mut tl| {
            tl.start_ns = self.ws;
            tl.end_ns = we;
            tl.segments.sort_by_key(|s| (s.start, s.tid));
            tl.threads = tids
                .iter()
                .filter_map(|tid| self.threads.get(tid))
                .filter(|t| t.lifetime_ns() > 0)
                .map(|t| TimelineThread {
                    tid: t.tid,
                    tgid: t.tgid,
                    comm: t.comm.to_string(),
                    created_ns: t.created_ns,
                    exited_ns: t.exited_ns,
                })
                .collect();
            tl
        });
        (summary, timeline)
    }
}

impl Consumer for Analyzer {
    fn record(&mut self, r: &Record) {
        self.feed(r);
    }
}

/// The threads whose state item `i` tells.
fn involved_tids(i: &Item) -> [u32; 2] {
    let e = match i {
        Item::Event(e) => e,
        Item::Runnable { task, .. } => return [task.tid, task.tid],
    };
    match e.kind {
        EventKind::Switch { prev, next, .. } => [prev.tid, next.tid],
        EventKind::Wakeup { waker, wakee, .. } => [waker.tid, wakee.tid],
        EventKind::Fork { parent, child } => [parent.tid, child.tid],
        EventKind::Exec { task, .. } | EventKind::Exit { task } => [task.tid, task.tid],
        EventKind::Migrate { .. } => [0, 0],
    }
}

/// What each task in `i` must have been doing just before it.
fn implied_prior_states(i: &Item, hints: &HashMap<u32, &ThreadInfo>) -> Vec<(Task, State)> {
    let e = match i {
        Item::Event(e) => e,
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
            let waited = match next_wait {
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
        EventKind::Exec { task, .. } | EventKind::Exit { task } => vec![(task, running)],
        EventKind::Migrate { .. } => vec![],
    }
}

fn delay_stats(h: &Histogram) -> DelayStats {
    DelayStats {
        count: h.count(),
        total_ns: h.sum(),
        mean_ns: h.mean(),
        p50_ns: h.quantile(0.5),
        p99_ns: h.quantile(0.99),
        max_ns: h.max(),
    }
}

fn thread_summary(t: &ThreadTrack, window: u64) -> ThreadSummary {
    let mut wakers: Vec<Waker> = t
        .wakers
        .iter()
        .map(|(tid, w)| Waker {
            tid: *tid,
            tgid: w.tgid,
            comm: w.comm.to_string(),
            count: w.count,
        })
        .collect();
    wakers.sort_by(|a, b| b.count.cmp(&a.count).then(a.tid.cmp(&b.tid)));
    wakers.truncate(TOP_WAKERS);
    ThreadSummary {
        tid: t.tid,
        tgid: t.tgid,
        comm: t.comm.to_string(),
        on_cpu_ns: t.running_ns,
        share: if window == 0 {
            0.0
        } else {
            t.running_ns as f64 / window as f64
        },
        states: StateTimes {
            running_ns: t.running_ns,
            runnable_ns: t.runnable_ns,
            sleeping_ns: t.sleeping_ns,
            blocked_ns: t.blocked_ns,
        },
        lifetime_ns: t.lifetime_ns(),
        voluntary_switches: t.voluntary,
        involuntary_switches: t.involuntary,
        anomalies: t.anomalies,
        migrations: t.migrations,
        migration_pairs: t.migration_pairs.clone(),
        migrate_events: t.migrate_events,
        cpus: t.cpu_ns.clone(),
        slices: t.slices,
        longest_slice_ns: t.longest_slice_ns,
        wait: delay_stats(&t.wait),
        wait_after_wakeup: delay_stats(&t.wait_wakeup),
        wait_after_preempt: delay_stats(&t.wait_preempt),
        wakers,
        created_ns: t.created_ns,
        exited_ns: t.exited_ns,
    }
}

fn process_summary(
    tgid: u32,
    acc: &ProcAcc,
    threads: &[ThreadSummary],
    window: u64,
    member: impl Fn(&ThreadSummary) -> bool,
) -> ProcessSummary {
    let mine = || threads.iter().filter(|t| member(t));
    ProcessSummary {
        tgid,
        comm: acc.comm.to_string(),
        threads_seen: mine().count() as u64,
        on_cpu_ns: mine().map(|t| t.on_cpu_ns).sum(),
        voluntary_switches: mine().map(|t| t.voluntary_switches).sum(),
        involuntary_switches: mine().map(|t| t.involuntary_switches).sum(),
        migrations: mine().map(|t| t.migrations).sum(),
        parallelism: acc.parallelism(window),
    }
}

/// Analyse a whole trace in one call (for tests).
#[cfg(test)]
pub fn analyze<'a>(
    records: impl IntoIterator<Item = &'a Record>,
    opts: Options,
) -> (Summary, Option<Timeline>) {
    let mut a = Analyzer::new(opts);
    for r in records {
        a.feed(r);
    }
    a.finish()
}

#[cfg(test)]
mod tests;
