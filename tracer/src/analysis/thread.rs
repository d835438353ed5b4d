//! The state of one traced thread as the analysis walks the events, and the
//! figures it accumulates. The transitions themselves are driven by
//! [`super::Analyzer`], which also keeps the per-process counts in step.

use std::collections::BTreeMap;

use super::antagonists::{Holder, HolderTimes};
use super::chain::{Chain, ChainCounts};
use super::histogram::Histogram;
use super::timeline::SegState;
use super::waits::{WaitBreakdown, WaitKey, WaitTime};
use crate::event::{Comm, Task, WakeContext};

/// Where a thread is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Before it was created (or first seen).
    Absent,
    Running {
        cpu: u32,
    },
    Runnable,
    Sleeping,
    Blocked,
    /// Its events were lost (another thread took its CPU without a
    /// switch-out of it, or the kernel dropped records on its CPU): where it
    /// is is unknown until its next event says.
    Unknown,
    Dead,
}

impl State {
    /// The timeline state, for states that are part of the thread's life.
    pub(crate) fn seg(self) -> Option<SegState> {
        match self {
            State::Running { cpu } => Some(SegState::Running { cpu }),
            State::Runnable => Some(SegState::Runnable),
            State::Sleeping => Some(SegState::Sleeping),
            State::Blocked => Some(SegState::Blocked),
            State::Absent | State::Unknown | State::Dead => None,
        }
    }

    pub(crate) fn is_running(self) -> bool {
        matches!(self, State::Running { .. })
    }
}

/// The accounted window `[start, end]` (trace clock).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub start: u64,
    pub end: u64,
}

impl Window {
    /// `[a, b]` intersected with the window, in ns.
    pub(crate) fn overlap(self, a: u64, b: u64) -> u64 {
        b.min(self.end).saturating_sub(a.max(self.start))
    }

    pub(crate) fn contains(self, ts: u64) -> bool {
        ts >= self.start && ts <= self.end
    }
}

/// Why a thread became runnable (to split run-queue delays by cause).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    Wakeup,
    Preempted,
    /// Created, or runnable when tracing started.
    Other,
}

#[derive(Clone, Debug)]
pub(crate) struct WakerAcc {
    pub tgid: u32,
    pub comm: Comm,
    /// The waker's process, when it is not a traced one.
    pub process: Option<Comm>,
    pub count: u64,
}

/// What the kernel's own counters say about a thread, as far as the
/// records carried them: the latest value of each, and what is needed to
/// charge the run or the wait ending at the next record (see
/// [`ThreadTrack::end_run`]). Empty for a trace without counters (version
/// 1), whose figures then come from the timestamps.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Kernel {
    /// `se.sum_exec_runtime` at the latest record that had it, and when.
    pub runtime: Option<(u64, u64)>,
    /// `sched_info.run_delay` after the latest switch-in (or snapshot).
    pub run_delay: Option<u64>,
    /// `nvcsw`, `nivcsw` (low 32 bits) at the latest switch-out (or snapshot).
    pub switches: Option<(u32, u32)>,
    /// Where the run in progress has a known runtime: (time, runtime) at
    /// its switch-in, at the start of an inferred run, or at a `/proc`
    /// snapshot taken while it ran. `None`: the run has no known start.
    pub run_from: Option<(u64, u64)>,
    /// Set just before the run ends: the runtime (and when) the run ends
    /// with, and its length on the run-queue clock.
    pub end_runtime: Option<(u64, u64)>,
    pub end_run_clock: Option<u64>,
    /// Set just before a wait ends in a switch-in: the kernel's figure for
    /// it (the growth of `run_delay`). The timeline's wait is then not
    /// counted.
    pub end_wait: Option<u64>,
    /// The run in progress is inferred (its switch-in was not in the stream).
    pub inferred: bool,
    /// Why the thread waited before the first inferred run since its latest
    /// `run_delay` record: that wait is charged from the next one (a
    /// switch-in or a snapshot), and recorded as this kind of wait.
    pub inferred_wait_cause: Option<Cause>,
    /// The thread's waits are the kernel's: its switch-ins carry the
    /// growth of `run_delay` (or a `/proc` snapshot gave its value), so the
    /// timestamps of its runnable stretches are not counted.
    pub waits: bool,
    /// Runnable time counted from the timestamps, before `waits` was known,
    /// since `run_delay` has had a value: the next growth of `run_delay`
    /// holds those waits, so it replaces this (a thread forked before any
    /// record with counters, whose first run's switch-in was missing, had
    /// the stretch from its fork counted twice).
    pub provisional_ns: u64,
    /// The wakeup that made the thread runnable found the kernel already
    /// counting a wait for it (`wakee_queued`): the wait ending at its
    /// switch-in began while it slept.
    pub asleep_queued: bool,
}

/// What raised a wakeup: a task (`context` is [`WakeContext::Task`]) or
/// an interrupt, timer or softirq that came in while `task` ran, which is
/// then no waker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WakeSource {
    pub task: Task,
    pub context: WakeContext,
    /// The waker's process, when it is not a traced one.
    pub process: Option<Comm>,
}

impl WakeSource {
    /// The waker task, if a task woke it.
    pub(crate) fn waker(&self) -> Option<&Task> {
        self.context.is_task().then_some(&self.task)
    }
}
/// The sleep a thread is in: why, and where (its stacks), charged when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Pending {
    pub key: WaitKey,
    pub kernel_stack: Option<u32>,
    pub user_stack: Option<u32>,
}

/// `x * part / whole`, exactly; without the 128-bit division for the whole
/// (a run inside the window).
fn prorate(x: u64, part: u64, whole: u64) -> u128 {
    if part == whole {
        u128::from(x)
    } else {
        u128::from(x) * u128::from(part) / u128::from(whole)
    }
}

/// On-CPU time by CPU, in CPU order: a sorted list rather than a map, as a
/// thread runs on few CPUs and every run adds to it.
#[derive(Clone, Debug, Default)]
pub(crate) struct CpuTimes(Vec<(u32, u64)>);

impl CpuTimes {
    /// Add `ns` to `cpu` (listing it, even for 0 ns, if it was not).
    pub(crate) fn add(&mut self, cpu: u32, ns: u64) {
        match self.0.binary_search_by_key(&cpu, |&(c, _)| c) {
            Ok(i) => self.0[i].1 += ns,
            Err(i) => self.0.insert(i, (cpu, ns)),
        }
    }

    /// CPU → on-CPU ns.
    pub(crate) fn to_map(&self) -> BTreeMap<u32, u64> {
        self.0.iter().copied().collect()
    }
}

/// Off-CPU time by stack: (kernel stack, user stack, why) -> time and count.
pub(crate) type StackTimes =
    std::collections::HashMap<(Option<u32>, Option<u32>, WaitKey), WaitTime, crate::tid::TidBuild>;

#[derive(Clone, Debug)]
pub(crate) struct ThreadTrack {
    /// Order of first appearance among all threads of the trace.
    pub seq: u64,
    pub tid: u32,
    pub tgid: u32,
    pub comm: Comm,
    /// Its process was found traced (see `Analyzer::track`); which stays
    /// so from the header on.
    pub traced: bool,
    /// The index of its process's counts in `Analyzer::procs` (see
    /// [`super::process::Procs`]).
    pub proc: u32,
    pub state: State,
    /// When `state` began.
    pub since: u64,
    pub cause: Cause,
    /// A wakeup from another CPU that came while this thread was still on
    /// its CPU (time, waker, the waker's CPU): see `Analyzer::switch_out`.
    pub woken_on_cpu: Option<(u64, WakeSource, u32)>,
    /// Switches of this thread that contradicted its state (see
    /// `Summary::anomalies`).
    pub anomalies: u64,
    pub last_cpu: Option<u32>,
    pub created_ns: Option<u64>,
    pub exited_ns: Option<u64>,
    pub kernel: Kernel,
    // Accumulated inside the window. On-CPU and waits are the kernel's
    // (counter deltas) wherever the records have them, the timestamps'
    // otherwise; `tl_*` are the timestamps' always.
    pub running_ns: u64,
    pub runnable_ns: u64,
    pub tl_running_ns: u64,
    pub tl_runnable_ns: u64,
    /// Time on a CPU the kernel did not charge (steal, and IRQ time where
    /// the kernel accounts it), from the run-queue clock.
    pub steal_ns: u64,
    /// Run-queue wait the kernel counted (`run_delay`) while the thread
    /// slept: the part of a wait ending at a switch-in in the window that
    /// began before the wakeup that ended its sleep (`wakee_queued`).
    pub run_delay_asleep_ns: u64,
    /// Runs whose switch-in the stream lacked, put back from the counters
    /// of their switch-out (and their kernel charge); with no switch-out
    /// to place them by (lost records), `unplaced_*`.
    pub inferred_runs: u64,
    pub inferred_ns: u64,
    pub unplaced_runs: u64,
    pub unplaced_ns: u64,
    pub sleeping_ns: u64,
    pub blocked_ns: u64,
    /// Time in [`State::Unknown`], and running time that turned out to be
    /// unknown (see `Analyzer::transition`).
    pub unknown_ns: u64,
    pub cpu_ns: CpuTimes,
    pub voluntary: u64,
    pub involuntary: u64,
    pub migrations: u64,
    pub migration_pairs: BTreeMap<(u32, u32), u64>,
    pub migrate_events: u64,
    pub slices: u64,
    pub longest_slice_ns: u64,
    /// Waits by why the thread became runnable (see [`Self::wait`] for
    /// all of them).
    pub wait_wakeup: Histogram,
    pub wait_preempt: Histogram,
    pub wait_other: Histogram,
    pub wakers: crate::tid::TidMap<WakerAcc>,
    /// Wakeups raised in interrupt context, by context (few distinct ones).
    pub context_wakers: Vec<(WakeContext, u64)>,
    /// The sleep it is in now (`None`: not sleeping, or not recorded).
    pub pending: Option<Pending>,
    /// Sleeping and blocked time by wait reason.
    pub waits: WaitBreakdown,
    /// Sleeping and blocked time by stack (only with stacks in the trace).
    pub stacks: StackTimes,
    /// Who took its CPU when it was preempted (counted at the preemption,
    /// timed by the wait that followed).
    pub preempted_by: HolderTimes,
    /// The holder it was preempted by last, while it waits to run again.
    pub preempter: Option<Holder>,
    /// Who held the CPU while it waited for it.
    pub waited_behind: HolderTimes,
    /// The chain that led to its latest wakeup, and how often each did.
    pub chain: Option<Chain>,
    pub chains: ChainCounts,
}

impl ThreadTrack {
    /// Charge `ns` of on-CPU time that no record places (see
    /// `unplaced_runs`), to `cpu` so that the per-CPU times add up; gives
    /// `ns` back.
    pub(crate) fn charge_unplaced(&mut self, ns: u64, cpu: u32) -> u64 {
        self.unplaced_runs += 1;
        self.unplaced_ns += ns;
        self.running_ns += ns;
        self.cpu_ns.add(cpu, ns);
        ns
    }

    /// It was woken through `chain` (counted if `in_window`).
    pub(crate) fn woken_through(&mut self, chain: &Chain, in_window: bool) {
        self.chain = Some(*chain);
        if in_window {
            self.chains.add(chain);
        }
    }

    /// Count one wakeup of this thread: by its waker task, or by the
    /// interrupt context it was raised in (never by the task it interrupted).
    pub(crate) fn add_waker(&mut self, src: &WakeSource) {
        let Some(waker) = src.waker() else {
            match self
                .context_wakers
                .iter_mut()
                .find(|(c, _)| *c == src.context)
            {
                Some((_, n)) => *n += 1,
                None => self.context_wakers.push((src.context, 1)),
            }
            return;
        };
        let w = self.wakers.entry(waker.tid).or_insert(WakerAcc {
            tgid: waker.tgid,
            comm: waker.comm,
            process: None,
            count: 0,
        });
        w.count += 1;
        w.comm = waker.comm;
        w.tgid = waker.tgid;
        w.process = src.process;
    }

    pub(crate) fn new(tid: u32, tgid: u32, comm: Comm, state: State, since: u64) -> Self {
        ThreadTrack {
            seq: 0,
            tid,
            tgid,
            comm,
            traced: false,
            proc: 0,
            state,
            since,
            cause: Cause::Other,
            woken_on_cpu: None,
            anomalies: 0,
            last_cpu: match state {
                State::Running { cpu } => Some(cpu),
                _ => None,
            },
            created_ns: None,
            exited_ns: None,
            kernel: Kernel::default(),
            running_ns: 0,
            runnable_ns: 0,
            tl_running_ns: 0,
            tl_runnable_ns: 0,
            steal_ns: 0,
            run_delay_asleep_ns: 0,
            inferred_runs: 0,
            inferred_ns: 0,
            unplaced_runs: 0,
            unplaced_ns: 0,
            sleeping_ns: 0,
            blocked_ns: 0,
            unknown_ns: 0,
            cpu_ns: CpuTimes::default(),
            voluntary: 0,
            involuntary: 0,
            migrations: 0,
            migration_pairs: BTreeMap::new(),
            migrate_events: 0,
            slices: 0,
            longest_slice_ns: 0,
            wait_wakeup: Histogram::default(),
            wait_preempt: Histogram::default(),
            wait_other: Histogram::default(),
            wakers: crate::tid::TidMap::default(),
            context_wakers: Vec::new(),
            pending: None,
            waits: WaitBreakdown::default(),
            stacks: StackTimes::default(),
            preempted_by: HolderTimes::default(),
            preempter: None,
            waited_behind: HolderTimes::default(),
            chain: None,
            chains: ChainCounts::default(),
        }
    }

    /// Charge the time `state` lasted, `[since, ts]`, to the thread:
    /// sleeping and blocked time by the timestamps; a run or a wait by the
    /// kernel's figure for it when the records give one (see
    /// [`Self::end_run`]), else by the timestamps too.
    /// Returns the on-CPU time charged (for a run; 0 otherwise), at most
    /// `allowance`, and whether the counters asked for more (then the
    /// thread counts an anomaly).
    /// (Always inlined: it runs at every transition, and out of line, with
    /// `Histogram::record`, it cost 3% more instructions per event; LLVM
    /// declines a plain `#[inline]`.)
    #[inline(always)]
    pub(crate) fn charge(
        &mut self,
        w: Window,
        state: State,
        since: u64,
        ts: u64,
        allowance: u64,
    ) -> (u64, bool) {
        let ns = w.overlap(since, ts);
        let mut on_cpu = 0;
        let mut cut = false;
        match state {
            State::Running { cpu } => {
                self.tl_running_ns += ns;
                (on_cpu, cut) = self.end_run(w, cpu, since, ts, allowance);
            }
            State::Runnable => {
                self.tl_runnable_ns += ns;
                // Once the kernel's `run_delay` is known, every wait is
                // charged from its growth at the switch-in that ends it;
                // a wait that ends in a run whose switch-in is missing is
                // in the growth at the next recorded switch-in, so it must
                // not be charged here as well.
                if self.kernel.end_wait.is_none() && !self.kernel.waits {
                    self.runnable_ns += ns;
                    if self.kernel.run_delay.is_some() {
                        self.kernel.provisional_ns += ns;
                    }
                }
            }
            State::Sleeping => self.sleeping_ns += ns,
            State::Blocked => self.blocked_ns += ns,
            State::Unknown => self.unknown_ns += ns,
            State::Absent | State::Dead => {}
        }
        if matches!(state, State::Sleeping | State::Blocked) {
            let p = self.pending.unwrap_or(Pending {
                key: WaitKey::UNKNOWN,
                kernel_stack: None,
                user_stack: None,
            });
            self.waits.add_time(p.key, ns);
            if p.kernel_stack.is_some() || p.user_stack.is_some() {
                let e = self
                    .stacks
                    .entry((p.kernel_stack, p.user_stack, p.key))
                    .or_default();
                e.ns += ns;
            }
        }
        self.kernel.end_wait = None;
        (on_cpu, cut)
    }

    /// Charge the run `[start, end]` on `cpu` (the part of a run since the
    /// thread's state was last charged). Between the run's known start
    /// (`run_from`) and the runtime it ends with (`end_runtime`), the
    /// kernel's growth of `se.sum_exec_runtime` is charged, spread over
    /// that stretch in proportion to wall time where the window cuts it;
    /// the rest of the run (before a known start, after the last known
    /// value) by the timestamps.
    ///
    /// A known start read from `/proc` while the thread ran can be older
    /// than its stamp: `/proc/PID/task/TID/schedstat` shows
    /// `se.sum_exec_runtime` as the scheduler last brought it up to date,
    /// at the tick or a scheduler event, up to a tick (4 ms at HZ=250)
    /// before the read. The growth since then is more than the wall time
    /// since the stamp; that excess is time before the stamp, so the
    /// counters' stretch starts that much earlier, and the timestamps
    /// charge only the run before it (a CPU-bound thread under `--all` was
    /// charged 3.45 ms twice, and cut as an anomaly).
    fn end_run(
        &mut self,
        w: Window,
        cpu: u32,
        start: u64,
        end: u64,
        allowance: u64,
    ) -> (u64, bool) {
        let k = &mut self.kernel;
        let charged = match (k.run_from, k.end_runtime.take()) {
            (Some((a, sa)), Some((b, sb))) if a <= b && sa <= sb && b <= end => {
                let a = a.max(start);
                let exact = sb - sa;
                // Where the counters' stretch starts (see above).
                let from = a.saturating_sub(exact.saturating_sub(b.saturating_sub(a)));
                // (Empty if the charge began after `b`: damaged records.)
                let span = b.saturating_sub(from);
                let part = match span {
                    0 => {
                        if w.contains(b) {
                            exact
                        } else {
                            0
                        }
                    }
                    len => prorate(exact, w.overlap(from, b), len) as u64,
                };
                if let Some(clock) = k.end_run_clock.take()
                    && a == start
                {
                    // The run's whole length on the run-queue clock, less
                    // what the kernel charged: steal (and IRQ time).
                    let steal = clock.saturating_sub(exact);
                    let len = b.saturating_sub(a).max(1);
                    let in_w = if b == a {
                        u64::from(w.contains(b))
                    } else {
                        w.overlap(a, b)
                    };
                    // No more than the run's time in the window (counters
                    // that say otherwise are damaged: see `allowance`).
                    let prorated = prorate(steal, in_w, len);
                    let steal = u64::try_from(prorated).unwrap_or(u64::MAX).min(in_w);
                    self.steal_ns = self.steal_ns.saturating_add(steal);
                }
                part.saturating_add(w.overlap(start, from))
                    .saturating_add(w.overlap(b, end))
            }
            _ => w.overlap(start, end),
        };
        k.run_from = None;
        k.end_run_clock = None;
        let cut = charged > allowance;
        let charged = charged.min(allowance);
        if cut {
            self.anomalies += 1;
        }
        if k.inferred {
            self.inferred_ns += charged;
        }
        self.running_ns += charged;
        if charged > 0 {
            self.cpu_ns.add(cpu, charged);
        }
        (charged, cut)
    }

    /// The kernel's `run_delay` read at `ts` outside a switch-in (a
    /// snapshot, an exit): its growth since the latest record is waits that
    /// ended in runs whose switch-in the stream lacked, charged and recorded
    /// here as one wait (as at a switch-in, no more of it than `window`
    /// holds before `ts`).
    pub(crate) fn waits_to(&mut self, run_delay: u64, ts: u64, (start, end): (u64, u64)) {
        let cause = self.kernel.inferred_wait_cause.take();
        match self.kernel.run_delay {
            Some(before) if run_delay > before => {
                let wait = run_delay - before;
                let counted = super::overlap(start, end, ts.saturating_sub(wait), ts);
                self.add_kernel_wait(counted);
                self.kernel.run_delay = Some(run_delay);
                // Waits that ended in a run, as at a switch-in: in the
                // wait figures too, which add up to the runnable time.
                if counted > 0 {
                    self.record_wait_as(counted, cause.unwrap_or(self.cause));
                }
            }
            Some(_) => {}
            None => self.kernel.run_delay = Some(run_delay),
        }
    }

    /// Runnable time from a growth of the kernel's `run_delay` (`counted`:
    /// the part inside the window), which replaces what the timestamps
    /// counted provisionally since the previous value.
    pub(crate) fn add_kernel_wait(&mut self, counted: u64) {
        let provisional = std::mem::take(&mut self.kernel.provisional_ns);
        self.runnable_ns = self
            .runnable_ns
            .saturating_sub(provisional)
            .saturating_add(counted);
    }

    pub(crate) fn record_wait(&mut self, ns: u64) {
        self.record_wait_as(ns, self.cause);
    }

    /// Record a wait that became runnable for `cause` (in one histogram:
    /// [`Self::wait`] merges them).
    pub(crate) fn record_wait_as(&mut self, ns: u64, cause: Cause) {
        match cause {
            Cause::Wakeup => self.wait_wakeup.record(ns),
            Cause::Preempted => self.wait_preempt.record(ns),
            Cause::Other => self.wait_other.record(ns),
        }
    }

    /// Every wait recorded, whatever its cause.
    pub(crate) fn wait(&self) -> Histogram {
        Histogram::merged(&[&self.wait_wakeup, &self.wait_preempt, &self.wait_other])
    }

    /// Time inside the window between creation (or the window's start)
    /// and exit (or its end), by the timestamps.
    pub(crate) fn lifetime_ns(&self) -> u64 {
        self.tl_running_ns
            + self.tl_runnable_ns
            + self.sleeping_ns
            + self.blocked_ns
            + self.unknown_ns
    }
}

/// The index of a track in [`Threads`]: valid until a track is removed.
pub(crate) type Ix = usize;

/// The live threads' tracks by TID, in a slab: an event looks each of its
/// threads up once and reaches its track by index from then on, while it
/// updates the analysis' other fields (a `&mut` from a map would hold the
/// whole analyzer borrowed: a switch looked each of its two threads up
/// three times). Iteration is in no particular order, as a map's.
#[derive(Clone, Debug, Default)]
pub(crate) struct Threads {
    tracks: Vec<ThreadTrack>,
    /// The TID each track is kept under, by index.
    tids: Vec<u32>,
    by_tid: crate::tid::TidMap<Ix>,
}

impl Threads {
    /// Where `tid`'s track is, if it has one.
    #[inline]
    pub(crate) fn index(&self, tid: u32) -> Option<Ix> {
        self.by_tid.get(&tid).copied()
    }

    #[inline]
    pub(crate) fn at(&self, ix: Ix) -> &ThreadTrack {
        &self.tracks[ix]
    }

    #[inline]
    pub(crate) fn at_mut(&mut self, ix: Ix) -> &mut ThreadTrack {
        &mut self.tracks[ix]
    }

    pub(crate) fn get(&self, tid: &u32) -> Option<&ThreadTrack> {
        self.index(*tid).map(|ix| self.at(ix))
    }

    pub(crate) fn get_mut(&mut self, tid: &u32) -> Option<&mut ThreadTrack> {
        self.index(*tid).map(|ix| self.at_mut(ix))
    }

    pub(crate) fn contains_key(&self, tid: &u32) -> bool {
        self.by_tid.contains_key(tid)
    }

    /// Keep `track` under `tid`, in place of any track it had.
    pub(crate) fn insert(&mut self, tid: u32, track: ThreadTrack) {
        match self.index(tid) {
            Some(ix) => self.tracks[ix] = track,
            None => {
                self.by_tid.insert(tid, self.tracks.len());
                self.tracks.push(track);
                self.tids.push(tid);
            }
        }
    }

    /// Take `tid`'s track out; the last track moves to its index.
    pub(crate) fn remove(&mut self, tid: &u32) -> Option<ThreadTrack> {
        let ix = self.by_tid.remove(tid)?;
        let track = self.tracks.swap_remove(ix);
        self.tids.swap_remove(ix);
        if let Some(&moved) = self.tids.get(ix) {
            self.by_tid.insert(moved, ix);
        }
        Some(track)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &ThreadTrack> {
        self.tracks.iter()
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut ThreadTrack> {
        self.tracks.iter_mut()
    }
}
