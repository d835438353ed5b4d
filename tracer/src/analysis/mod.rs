//! Turns a trace (a stream of [`Record`]s, live or read back) into per-thread
//! state timelines and summaries, in one pass and in memory that does not
//! grow with the trace (unless a timeline is asked for).
//!
//! Every traced thread is, at every instant of the window, in exactly one of
//! running (on a CPU), runnable, sleeping or blocked. Tracing starts with
//! threads in unknown states, so the first events are held back briefly
//! (the *prelude*) until each thread's first event tells what it was doing
//! when the window opened; then the buffered events are replayed.
//!
//! Here: the [`Analyzer`] that takes the records. By job: `prelude` (the
//! held-back start), `machine` (the state machine the events drive),
//! `thread` and `process` (what it accumulates per thread and per set of
//! threads), `placer` (waits put back in a trace without wakeups),
//! `finish` (closing the window, building the [`summary`] and the
//! [`timeline`]); `concurrency` and [`filter`] work on the results.

pub mod antagonists;
pub mod chain;
pub(crate) mod concurrency;
pub mod filter;
mod finish;
#[cfg(test)]
mod fuzz;
pub(crate) mod histogram;
pub mod kernel_sums;
mod machine;
pub(crate) mod placer;
mod prelude;
mod process;
mod roles;
pub mod summary;
pub(crate) mod thread;
pub mod timeline;
pub mod waits;

use std::collections::{BTreeMap, HashMap};

use crate::event::{Event, EventKind, Task};
use crate::tid::TidSet;
use crate::trace::consumer::Consumer;
use crate::trace::{End, Header, Lost, Record, ThreadInfo};
use placer::{Item, Placer};
use prelude::{Prelude, involved_tids};
use process::{ProcAcc, Procs};
#[cfg(test)]
use summary::Summary;
use summary::ThreadSummary;
use thread::{State, ThreadTrack, Threads, Window};
use timeline::{SegmentSink, Timeline};

/// The processes the analysis follows, by TGID: those the header names,
/// those followed or joined since, or (a trace of `--all`) every one but
/// the idle task.
#[derive(Clone, Debug, Default)]
pub(crate) struct Traced {
    set: TidSet,
    /// `--all`: every TGID but 0 and this one (schedtrace's).
    all_but: Option<u32>,
}

impl Traced {
    pub(crate) fn contains(&self, tgid: &u32) -> bool {
        if let Some(but) = self.all_but {
            *tgid != 0 && *tgid != but
        } else {
            self.set.contains(tgid)
        }
    }

    pub(crate) fn insert(&mut self, tgid: u32) {
        self.set.insert(tgid);
    }

    pub(crate) fn extend(&mut self, tgids: impl IntoIterator<Item = u32>) {
        self.set.extend(tgids);
    }
}

/// Wakers listed per thread.
pub(crate) const TOP_WAKERS: usize = 5;

/// What to analyse.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only account time from this long after the trace's start.
    pub since_ns: Option<u64>,
    /// Only account time until this long after the trace's start.
    pub until_ns: Option<u64>,
    /// Keep the full [`Timeline`] (memory grows with the trace).
    pub keep_timeline: bool,
    /// Account only these threads (by TID): every total, share, count and
    /// profile is then theirs alone, and the summary says so. `None`: all
    /// traced threads.
    pub selection: Option<summary::Selection>,
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

/// What the analysis so far could not see as it happened, for the live
/// view (the summary has the same figures, per CPU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveGaps {
    /// Runs whose switch-in the kernel's stream lacked.
    pub inferred_runs: u64,
    /// Runs no record places (their time is in the totals).
    pub unplaced_runs: u64,
    /// Events that contradicted the state machine.
    pub anomalies: u64,
}

/// The streaming analysis. Feed it records in order, then call [`Analyzer::finish`].
pub struct Analyzer {
    opts: Options,
    header: Option<Header>,
    ncpus: u32,
    /// Start of the accounted window (trace clock, ns): the trace's start,
    /// plus `--since`.
    window_start: u64,
    /// Its end: the end record's time, or the trace's start plus
    /// `--until`; `u64::MAX` until known.
    window_end: u64,
    prelude: Option<Prelude>,
    /// What the counters put back (see [`placer`]); `None` until the header.
    /// Boxed: it is taken out and put back at every event.
    placer: Option<Box<Placer>>,
    /// The threads alive (or not yet known to have ended), by TID.
    threads: Threads,
    /// Sequence number of the next thread seen.
    next_seq: u64,
    /// Threads that have ended, each folded into its summary when it did
    /// (with its sequence number): memory grows with live threads, and by
    /// a summary per ended thread (its `share` is filled in at the end).
    ended: Vec<(u64, ThreadSummary)>,
    procs: Procs,
    total: ProcAcc,
    traced: Traced,
    /// The traced thread the analysis has running on each CPU.
    cpu_owner: Vec<Option<u32>>,
    clock: u64,
    events: u64,
    lost: Vec<u64>,
    end: Option<End>,
    anomalies: u64,
    /// Waits the placer learnt too late to count in full (see `became_runnable`).
    late_waits: u64,
    /// Per CPU: runs put back from their switch-out's counters, wakeups the
    /// stream lacked (with wakeups traced).
    inferred_per_cpu: Vec<u64>,
    missing_wakeups: Vec<u64>,
    /// Runs the counters show but no record places (lost records).
    unplaced_runs: u64,
    /// Sleeps in the window whose stack the kernel side could not keep.
    lost_stacks: u64,
    /// On-CPU time charged from the kernel's counters so far, all CPUs
    /// (see [`Analyzer::allowance`]).
    charged_ns: u64,
    /// The bounds [`Analyzer::allowance`] found at its latest time: (time,
    /// edge, edge × CPUs). `None` whenever the window or the CPUs change.
    edge_at: Option<(u64, u64, u64)>,
    /// A switch record carried the kernel's counters.
    kernel_counters: bool,
    timeline: Option<Timeline>,
    /// Where closed segments stream to, if anywhere (see [`Analyzer::set_segment_sink`]).
    segment_sink: Option<Box<dyn SegmentSink>>,
    /// Which task holds each CPU (see [`antagonists`]).
    cpus: antagonists::CpuTracker,
    /// The trace's stack table, by id.
    stacks: HashMap<u32, crate::trace::Stack>,
}

/// The window `[window_start, window_end]` intersected with `[a, b]`, in ns.
fn overlap(window_start: u64, window_end: u64, a: u64, b: u64) -> u64 {
    b.min(window_end).saturating_sub(a.max(window_start))
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
            window_start: 0,
            window_end: u64::MAX,
            prelude: None,
            placer: None,
            threads: Threads::default(),
            next_seq: 0,
            ended: Vec::new(),
            procs: Procs::default(),
            total: ProcAcc::new(1, 0),
            traced: Traced::default(),
            cpu_owner: Vec::new(),
            clock: 0,
            events: 0,
            lost: Vec::new(),
            end: None,
            anomalies: 0,
            late_waits: 0,
            inferred_per_cpu: Vec::new(),
            missing_wakeups: Vec::new(),
            unplaced_runs: 0,
            lost_stacks: 0,
            charged_ns: 0,
            edge_at: None,
            kernel_counters: false,
            timeline: None,
            segment_sink: None,
            cpus: antagonists::CpuTracker::default(),
            stacks: HashMap::new(),
        }
    }

    /// Hand every segment to `sink` as it closes (the same segments a kept
    /// [`Timeline`] holds), so an export can write them as the trace
    /// streams, in memory that does not grow with it.
    pub(crate) fn set_segment_sink(&mut self, sink: Box<dyn SegmentSink>) {
        self.segment_sink = Some(sink);
    }

    /// A thread as `/proc` saw it: a hint for the prelude, or, after it, a
    /// thread no event has shown yet.
    fn thread_record(&mut self, info: &ThreadInfo) {
        match &mut self.prelude {
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
                    self.asleep_in(info);
                }
            }
        }
    }

    pub fn feed(&mut self, rec: &Record) {
        match rec {
            Record::Header(h) => self.start(h),
            Record::Thread(info) => {
                if let Some(p) = &mut self.placer
                    && matches!(hint_state(info), State::Sleeping | State::Blocked)
                {
                    p.asleep(info.tid, info.ts);
                }
                self.thread_record(info);
            }
            Record::Event(e) => self.feed_event(e),
            Record::Counters(c) => match self.placer.take() {
                Some(mut p) => {
                    p.counters(c, &mut |i| self.item(i));
                    self.placer = Some(p);
                }
                None => self.item(&Item::Counters {
                    ts: c.ts,
                    counters: *c,
                }),
            },
            // In time order with the events the placer holds back.
            Record::Lost(l) => match self.placer.take() {
                Some(mut p) => {
                    p.lost(l, &mut |i| self.item(i));
                    self.placer = Some(p);
                }
                None => self.item(&Item::Lost(*l)),
            },
            Record::Stack(s) => {
                self.stacks.insert(s.id, s.clone());
            }
            Record::End(e) => {
                self.end = Some(e.clone());
                // Time up to the latest event handled so far is already
                // charged (the end was not known then): a window that ended
                // before it would hold more than it can. A trace schedtrace
                // wrote has no event after its end, but a program still
                // running on another CPU when the probes were detached can
                // stamp one a few µs later, and a file can say anything.
                self.window_end = self.window_end.min(e.end_ns.max(self.clock));
                self.edge_at = None;
            }
        }
    }

    /// [`Self::feed`] of an event record.
    fn feed_event(&mut self, e: &Event) {
        if self.counts(e) {
            self.events += 1;
        }
        if self.before_start(e) {
            return;
        }
        match self.placer.take() {
            Some(mut p) => {
                p.push(e, &mut |i| self.item(i));
                self.placer = Some(p);
            }
            None => self.item(&Item::Event(*e)),
        }
    }

    fn item(&mut self, i: &Item) {
        match &mut self.prelude {
            Some(p) => {
                p.events.push(*i);
                if !p.unresolved.is_empty() {
                    for tid in involved_tids(i) {
                        p.unresolved.remove(&tid);
                    }
                }
                if self.prelude_done(i.ts()) {
                    self.finish_prelude();
                }
            }
            None => self.process(i),
        }
    }

    fn start(&mut self, h: &Header) {
        self.ncpus = h.ncpus.max(1);
        self.window_start = h.start_ns + self.opts.since_ns.unwrap_or(0);
        self.window_end = match self.opts.until_ns {
            Some(u) => h.start_ns.saturating_add(u),
            None => u64::MAX,
        };
        self.edge_at = None;
        self.clock = self.window_start;
        self.total = ProcAcc::new(self.ncpus, self.clock);
        // PID 0 is the idle task, never a target (a cgroup's trace that
        // started with none names PID 0).
        let pids = std::iter::once(h.target_pid).chain(h.also.iter().map(|p| p.pid));
        self.traced.extend(pids.filter(|&p| p != 0));
        self.traced.all_but = h.all_but;
        // (A second header, which no reader lets through, could narrow it.)
        for t in self.threads.values_mut() {
            t.traced = false;
        }
        self.prelude = Some(Prelude::default());
        self.placer = Some(Box::new(Placer::new(h.wakeups, h.start_ns)));
        self.lost = vec![0; self.ncpus as usize];
        self.cpu_owner = vec![None; self.ncpus as usize];
        if self.opts.keep_timeline {
            self.timeline = Some(Timeline {
                start_ns: self.window_start,
                ncpus: self.ncpus,
                ..Default::default()
            });
        }
        self.header = Some(h.clone());
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
        self.lost[cpu] = self.lost[cpu].saturating_add(l.count);
        if self.prelude.is_none() {
            self.lost_on(l.cpu);
        }
        if let Some(tl) = &mut self.timeline {
            tl.lost.push((l.ts, l.cpu, l.count));
        }
    }

    fn in_window(&self, ts: u64) -> bool {
        ts >= self.window_start && ts <= self.window_end
    }

    fn window(&self) -> Window {
        Window {
            start: self.window_start,
            end: self.window_end,
        }
    }

    /// Is thread `tid` among those accounted (see [`Options::selection`])?
    fn selected(&self, tid: u32) -> bool {
        self.opts
            .selection
            .as_ref()
            .is_none_or(|s| s.tids.contains(&tid))
    }

    /// Does event `e` count in the summary's `events`? Without a
    /// selection or a window (`--since`/`--until`), every event of the
    /// stream does; otherwise those inside the window that involve a
    /// selected thread.
    fn counts(&self, e: &Event) -> bool {
        let windowed = self.opts.since_ns.is_some() || self.opts.until_ns.is_some();
        if windowed && !(e.ts >= self.window_start && e.ts <= self.window_end) {
            return false;
        }
        if self.opts.selection.is_none() {
            return true;
        }
        let [a, b] = match e.kind {
            EventKind::Switch { prev, next, .. } => [prev.tid, next.tid],
            EventKind::Wakeup {
                waker,
                wakee,
                context,
                ..
            } => [if context.is_task() { waker.tid } else { 0 }, wakee.tid],
            EventKind::Fork { parent, child } => [parent.tid, child.tid],
            EventKind::Exec { task, .. } | EventKind::Exit { task, .. } => [task.tid, 0],
            EventKind::Migrate { task, .. } | EventKind::Join { task } => [task.tid, 0],
        };
        [a, b].iter().any(|&tid| tid != 0 && self.selected(tid))
    }

    /// The live threads' tracks, in order of first appearance.
    fn tracks_in_order(&self) -> Vec<&ThreadTrack> {
        let mut v: Vec<&ThreadTrack> = self.threads.values().collect();
        v.sort_by_key(|t| t.seq);
        v
    }

    /// What the analysis could not see so far (see [`LiveGaps`]).
    pub fn live_gaps(&self) -> LiveGaps {
        LiveGaps {
            inferred_runs: self.inferred_per_cpu.iter().sum(),
            unplaced_runs: self.unplaced_runs,
            anomalies: self.anomalies,
        }
    }

    /// Where every live thread stands at `now` (trace clock), with the time of
    /// the state it is in counted up to `now`. Empty while the first events
    /// are still held back to learn the initial states.
    pub fn live_view(&self, now: u64) -> Vec<LiveThread> {
        let mut v: Vec<LiveThread> = self
            .threads
            .values()
            .filter(|t| t.state != State::Absent)
            .map(|t| {
                let open = overlap(
                    self.window_start,
                    self.window_end,
                    t.since,
                    now.max(t.since),
                );
                let mut cpu_ns = t.cpu_ns.to_map();
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
}

impl Consumer for Analyzer {
    fn record(&mut self, r: &Record) {
        self.feed(r);
    }

    fn event(&mut self, e: &Event) {
        self.feed_event(e);
    }
}

/// Analyse a whole trace in one call (for tests).
#[cfg(test)]
pub(crate) fn analyze<'a>(
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
mod model_tests;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod why_tests;
