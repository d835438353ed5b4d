//! The results of an analysis: per-thread and per-process figures, in plain
//! Rust types. Exporters turn these into text, JSON and pictures.

use std::collections::{BTreeMap, BTreeSet};

use crate::event::WakeContext;

use super::antagonists::Holder;
use super::chain::{Chain, Link};
use super::waits::{WaitClass, WaitKey};
use crate::trace::{Stack, TargetCgroup, TargetProcess};

/// The stop reason of a trace that has no end record: schedtrace was
/// killed (or the machine stopped) before it wrote one, or the file was cut.
pub const NO_END_RECORD: &str = "ended without an end record";

/// Where a thread was, for how long. Running and runnable are the
/// kernel's own figures where the trace has its counters (the growth of
/// `se.sum_exec_runtime` and `sched_info.run_delay`), sleeping and blocked
/// the timestamps'. With the thread's steal the five add up to its lifetime
/// inside the window, up to the few µs per switch by which the scheduler's
/// clock reads and the tracepoints differ (exactly, without counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateTimes {
    pub running_ns: u64,
    pub runnable_ns: u64,
    pub sleeping_ns: u64,
    pub blocked_ns: u64,
    /// Time whose state is unknown because events were lost (never counted
    /// as running: see `docs/summary-schema.md`).
    pub unknown_ns: u64,
}

impl StateTimes {
    pub fn total(&self) -> u64 {
        self.running_ns + self.runnable_ns + self.sleeping_ns + self.blocked_ns + self.unknown_ns
    }
}

/// Run-queue delays: time from becoming runnable to running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DelayStats {
    pub count: u64,
    pub total_ns: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

/// What woke a thread, and how often: a task, or an interrupt context
/// (a timer, softirq or device interrupt), which is never credited to the
/// task it interrupted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waker {
    /// The waker task (0 for an interrupt context).
    pub tid: u32,
    pub tgid: u32,
    /// The task's name, or for an interrupt context its label
    /// ([`WakeContext::label`]: `timer hrtimer_wakeup`, `softirq NET_RX`, ...).
    pub comm: String,
    pub context: WakeContext,
    /// A waker task outside the traced processes: its process's name (its
    /// PID is `tgid`).
    pub process: Option<String>,
    pub count: u64,
}

impl Waker {
    /// For people: `timer hrtimer_wakeup`, `node-main (123)`, or for a task
    /// of another process `node (31810) of process client (31809)`.
    pub fn describe(&self) -> String {
        if let Some(label) = self.context.label() {
            return label;
        }
        match &self.process {
            Some(p) => format!(
                "{} ({}) of process {} ({})",
                self.comm, self.tid, p, self.tgid
            ),
            None => format!("{} ({})", self.comm, self.tid),
        }
    }
}

/// Sleeping or blocked time of one wait reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffCpuTime {
    pub key: WaitKey,
    pub ns: u64,
    /// Switch-outs into it (in the window).
    pub count: u64,
}

/// A task that ran instead of a thread, with the time and count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HolderTime {
    pub holder: Holder,
    pub ns: u64,
    pub count: u64,
}

/// "Who ran instead" of one thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Antagonists {
    /// Tasks that took its CPU when it was preempted: count of
    /// preemptions, and the time it then waited to run again.
    pub preempted_by: Vec<HolderTime>,
    /// Tasks that held the CPU it was waiting for (the one it then ran
    /// on), with the time of its waiting they held it.
    pub waited_behind: Vec<HolderTime>,
    /// Time and count of the rest of each list.
    pub preempted_by_others: (u64, u64),
    pub waited_behind_others: (u64, u64),
}

/// Off-CPU time of one (kernel stack, user stack, reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackTime {
    pub kernel_stack: Option<u32>,
    pub user_stack: Option<u32>,
    pub key: WaitKey,
    pub ns: u64,
    pub count: u64,
}

/// A thread's role when its name does not tell (all Node.js threads are
/// named `node`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    /// E.g. "libuv threadpool worker".
    pub label: String,
    /// What it was told from: `stacks` (a function in its stacks) or
    /// `wake pattern` (who wakes it, whom it wakes, how it waits).
    pub evidence: &'static str,
}

/// One thread of a traced process.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadSummary {
    pub tid: u32,
    pub tgid: u32,
    pub comm: String,
    /// On-CPU time as the kernel charged it (the growth of
    /// `se.sum_exec_runtime`, the first field of schedstat).
    pub on_cpu_ns: u64,
    /// `on_cpu_ns` / window.
    pub share: f64,
    /// Time the thread held a CPU that the kernel did not charge to it:
    /// stolen by the hypervisor (and, on kernels with
    /// `CONFIG_IRQ_TIME_ACCOUNTING`, spent in interrupts).
    pub steal_ns: u64,
    /// On-CPU time by the tracepoint timestamps (what timelines show): the
    /// kernel's figure plus steal, give or take the µs by which each switch
    /// path's clock read precedes its tracepoint.
    pub timeline_on_cpu_ns: u64,
    /// Run-queue wait the kernel counted (`run_delay`) while the thread
    /// slept: waits it began before the wakeup that ended the sleep (a
    /// sleeping task whose dequeue was delayed, moved to another CPU, is
    /// queued again in the kernel's accounting). Not in `states`:
    /// `states.runnable_ns` plus this is the growth of `run_delay`.
    pub run_delay_asleep_ns: u64,
    pub states: StateTimes,
    /// Time inside the window between creation (or the window's start) and
    /// exit (or the window's end).
    pub lifetime_ns: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// Switches of this thread that contradicted its state and that the
    /// counters could not explain (after lost events, or in a trace
    /// without counters: a switch-out with no switch-in before it).
    pub anomalies: u64,
    /// Runs whose switch-in the kernel's event stream lacked, put back
    /// from the counters their switch-out carried (marked as inferred in
    /// the timeline), and the on-CPU time the kernel charged them.
    pub inferred_runs: u64,
    pub inferred_ns: u64,
    /// Runs the counters show that no record places (after lost events):
    /// counted in `on_cpu_ns`, absent from the timeline.
    pub unplaced_runs: u64,
    /// Runs on a different CPU than the run before.
    pub migrations: u64,
    /// (from, to) → count, for `migrations`.
    pub migration_pairs: BTreeMap<(u32, u32), u64>,
    /// `sched_migrate_task` events (the scheduler moving the task's queue).
    pub migrate_events: u64,
    /// CPU → on-CPU ns.
    pub cpus: BTreeMap<u32, u64>,
    pub slices: u64,
    pub longest_slice_ns: u64,
    /// All run-queue delays, then split by cause.
    pub wait: DelayStats,
    pub wait_after_wakeup: DelayStats,
    pub wait_after_preempt: DelayStats,
    /// Most frequent wakers first (at most `TOP_WAKERS`, 5).
    pub wakers: Vec<Waker>,
    pub created_ns: Option<u64>,
    pub exited_ns: Option<u64>,
    /// Sleeping and blocked time by wait reason, largest first.
    pub off_cpu: Vec<OffCpuTime>,
    /// Who ran instead of it ([`Self::antagonists`]); `None` when nobody
    /// did. Boxed, as `role`: an ended thread's summary stays in memory to
    /// the end (issue 15's bound), and most threads have little of either.
    pub antagonists: Option<Box<Antagonists>>,
    /// Its most common wakeup chains (nearest waker first) and how many of
    /// its wakeups each led to.
    pub chains: Vec<(Chain, u64)>,
    /// Off-CPU time by stack (with stacks in the trace), largest first.
    pub stacks: Vec<StackTime>,
    pub role: Option<Box<Role>>,
}

impl ThreadSummary {
    /// Its sleeping and blocked time that no stack accounts for, by wait
    /// reason: all of it in a trace without stacks; with stacks, sleeps
    /// whose stack the kernel side could not keep (`Summary::lost_stacks`)
    /// and a sleep under way when tracing started. Stack profiles add it
    /// as one frame per reason, so that their total is the thread's.
    pub fn unstacked(&self) -> Vec<OffCpuTime> {
        self.off_cpu
            .iter()
            .map(|o| {
                let (ns, count) = self
                    .stacks
                    .iter()
                    .filter(|st| st.key == o.key)
                    .fold((0u64, 0u64), |(n, c), st| {
                        (n.saturating_add(st.ns), c.saturating_add(st.count))
                    });
                OffCpuTime {
                    key: o.key,
                    ns: o.ns.saturating_sub(ns),
                    count: o.count.saturating_sub(count),
                }
            })
            .filter(|o| o.ns > 0)
            .collect()
    }

    /// What a stack profile names the frame of time [`Self::unstacked`]
    /// of `key` (in brackets): the reason, and that it had no stack when
    /// the thread's other sleeps have one.
    pub fn unstacked_reason(&self, key: &WaitKey) -> String {
        if self.stacks.is_empty() {
            key.describe()
        } else {
            format!("{}, no stack", key.describe())
        }
    }

    /// Who ran instead of it (empty lists when nobody did).
    pub fn antagonists(&self) -> &Antagonists {
        static NOBODY: Antagonists = Antagonists {
            preempted_by: Vec::new(),
            waited_behind: Vec::new(),
            preempted_by_others: (0, 0),
            waited_behind_others: (0, 0),
        };
        self.antagonists.as_deref().unwrap_or(&NOBODY)
    }

    /// Sleeping and blocked time of wait class `c`.
    pub fn off_cpu_ns(&self, c: WaitClass) -> u64 {
        self.off_cpu
            .iter()
            .filter(|o| o.key.class == c)
            .map(|o| o.ns)
            .sum()
    }

    /// `name TID`, with `(role)` when its role is known.
    pub fn label(&self) -> String {
        match &self.role {
            Some(r) => format!("{} {} ({})", self.comm, self.tid, r.label),
            None => format!("{} {}", self.comm, self.tid),
        }
    }
}

/// How many threads ran at once, and how long threads waited for a CPU
/// while others ran.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parallelism {
    /// `running_ns[k]`: time during which exactly k threads were on a CPU.
    /// At most `ncpus` threads run at once, even when events were lost (a
    /// thread whose switch-out was lost is in an unknown state once another
    /// takes its CPU).
    pub running_ns: Vec<u64>,
    /// Time with two or more threads on CPUs at once (true parallelism).
    pub parallel_ns: u64,
    /// Time with two or more threads wanting a CPU and at least one of them
    /// waiting for it (time slicing: concurrency without parallelism).
    pub time_sliced_ns: u64,
    /// Time with at least one thread on a CPU.
    pub busy_ns: u64,
    /// Average number of threads on a CPU, and waiting for one.
    pub mean_running: f64,
    pub mean_runnable: f64,
}

/// One traced process.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessSummary {
    pub tgid: u32,
    pub comm: String,
    pub threads_seen: u64,
    pub on_cpu_ns: u64,
    pub steal_ns: u64,
    pub run_delay_asleep_ns: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub migrations: u64,
    pub parallelism: Parallelism,
}

/// Which threads a report accounted (its `--tid`, `--comm` and `--cpu`
/// filters): every figure of the summary is then theirs alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// The threads selected.
    pub tids: BTreeSet<u32>,
    /// The filters as given.
    pub by_tid: Vec<u32>,
    pub comm: Option<String>,
    pub cpu: Option<u32>,
    /// Threads in the window before selecting.
    pub of_threads: u64,
    /// The threads left out, by TID, as the selected threads' wakeup
    /// chains name them.
    pub left_out: BTreeMap<u32, LeftOut>,
}

/// A thread a report's filters left out: enough to name it where a
/// selected thread's figures refer to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftOut {
    pub tgid: u32,
    pub comm: String,
    /// As [`ThreadSummary::label`] gave it.
    pub label: String,
}

impl Selection {
    /// The filters for people: `--tid 101 --comm 'libuv*'`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.by_tid.iter().map(|t| format!("--tid {t}")).collect();
        if let Some(c) = &self.comm {
            parts.push(format!("--comm '{c}'"));
        }
        if let Some(c) = self.cpu {
            parts.push(format!("--cpu {c}"));
        }
        parts.join(" ")
    }
}

/// What the summary says of `Summary::lost_processes` (`n` > 0).
pub fn lost_processes_note(n: u64) -> String {
    format!(
        "{n} process{} to be traced could not be: the kernel's map of traced processes was \
         full (it holds {} besides the first; an ended one leaves it), so their threads are in \
         no figure",
        if n == 1 { "" } else { "es" },
        schedtrace_common::MAX_CHILDREN
    )
}

/// Everything an analysis produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub target_pid: u32,
    pub target_comm: String,
    /// The target's PID in its own PID namespace, when not schedtrace's.
    pub target_ns_pid: Option<u32>,
    /// The further processes of a repeated `--pid`.
    pub also: Vec<TargetProcess>,
    /// `--cgroup`: the traced cgroup (its processes at the start are the
    /// targets above; those that entered later are in `processes`).
    pub cgroup: Option<TargetCgroup>,
    /// `--all`: every task was traced but those of this process
    /// (schedtrace's own).
    pub all_but: Option<u32>,
    /// `--comm`: the name pattern (processes that took the name later are
    /// in `processes`).
    pub comm_pattern: Option<String>,
    pub command: Option<Vec<String>>,
    pub pinned_cpus: Option<Vec<u32>>,
    pub follow_children: bool,
    /// Wakeups were traced; without them there are no wakers, and waits
    /// come from the kernel's run-queue accounting.
    pub wakeups: bool,
    pub ncpus: u32,
    pub kernel_release: String,
    pub hostname: String,
    /// Wall clock (CLOCK_REALTIME) minus trace clock, ns.
    pub wall_clock_offset_ns: i64,
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    pub window_ns: u64,
    /// Events of the stream; with `--since`/`--until`, those inside the
    /// window; with a selection, those that involve a selected thread.
    pub events: u64,
    pub lost_events: u64,
    pub lost_per_cpu: Vec<u64>,
    /// Processes that were to be traced but could not be (the kernel's map
    /// of further targets was full): `End::lost_processes`.
    pub lost_processes: u64,
    /// False when the trace ended without a clean end record.
    pub complete: bool,
    pub stop_reason: String,
    /// Events that did not fit the state machine and that the counters
    /// could not explain (see `ThreadSummary::anomalies`).
    pub anomalies: u64,
    /// The trace carries the scheduler's counters: on-CPU time, waits and
    /// switch counts are the kernel's own figures.
    pub kernel_counters: bool,
    /// Per CPU: runs put back from their switch-out's counters (their
    /// switch-in was not in the kernel's stream).
    pub inferred_per_cpu: Vec<u64>,
    /// Per CPU, as the capture counted them from the switch-in counts:
    /// switch-ins the kernel made that its stream lacked (empty when the
    /// trace does not say).
    pub missing_switch_ins_per_cpu: Vec<u64>,
    /// Per CPU: wakeups of traced threads the stream lacked (with wakeups
    /// traced): the thread slept, and was switched in with no wakeup seen.
    pub missing_wakeups_per_cpu: Vec<u64>,
    /// Runs no record places (see `ThreadSummary::unplaced_runs`).
    pub unplaced_runs: u64,
    /// Program runs the kernel skipped (`None`: not known).
    pub recursion_misses: Option<u64>,
    /// Sleeps (switch-outs to sleep, with `--stacks`) whose stack the
    /// kernel side walked but could not keep: their time is in the waits,
    /// not in the stacks.
    pub lost_stacks: u64,
    /// Per CPU: events that arrived after newer ones had been handed on
    /// (out of order, from the trace's end record); the analysis took each
    /// at the time it had reached, an anomaly. Empty when the trace does
    /// not say.
    pub late_per_cpu: Vec<u64>,
    /// CPUs whose events could not be shown complete up to the end of the
    /// trace (no progress mark after `from_ns`): events there may be
    /// missing.
    pub end_gaps: Vec<crate::trace::Gap>,
    /// All traced threads together (equal to the one process without
    /// `--follow-children`).
    pub total: ProcessSummary,
    pub processes: Vec<ProcessSummary>,
    /// Sorted by on-CPU time, largest first.
    pub threads: Vec<ThreadSummary>,
    /// The threads a report's filters selected; `None`: every traced thread.
    pub selection: Option<Selection>,
    /// The stacks the threads' `stacks` refer to, by id.
    pub stack_table: BTreeMap<u32, Stack>,
    /// Names of kernel functions the chains refer to (timer callbacks), by
    /// address, where the trace has them.
    pub kernel_names: BTreeMap<u64, String>,
}

impl Summary {
    /// Events that arrived late, on every CPU.
    pub fn late_events(&self) -> u64 {
        self.late_per_cpu
            .iter()
            .fold(0u64, |a, &n| a.saturating_add(n))
    }

    /// What was traced, for people: `PID 10 (node)`, `PIDs 10 (node), 20
    /// (nginx)` for a repeated `--pid`, `cgroup /sys/fs/cgroup/x (3
    /// processes)`, `processes named "nginx*" (2 processes)`, or the
    /// launched command.
    pub fn targets_label(&self) -> String {
        let n = self.processes.len();
        let es = if n == 1 { "" } else { "es" };
        if self.all_but.is_some() {
            return format!("every task ({n} process{es})");
        }
        if let Some(c) = &self.cgroup {
            return format!("cgroup {} ({n} process{es})", c.path);
        }
        if let Some(p) = &self.comm_pattern {
            return format!("processes named {p:?} ({n} process{es})");
        }
        if let Some(c) = &self.command {
            return format!("{} (PID {})", c.join(" "), self.target_pid);
        }
        let first = TargetProcess {
            pid: self.target_pid,
            comm: self.target_comm.clone(),
            ns_pid: self.target_ns_pid,
        }
        .label();
        if self.also.is_empty() {
            return format!("PID {first}");
        }
        let rest: Vec<String> = self.also.iter().map(TargetProcess::label).collect();
        format!("PIDs {first}, {}", rest.join(", "))
    }

    pub fn thread(&self, tid: u32) -> Option<&ThreadSummary> {
        self.threads.iter().find(|t| t.tid == tid)
    }

    /// A thread of the trace that the report's filters left out.
    pub fn left_out(&self, tid: u32) -> Option<&LeftOut> {
        self.selection.as_ref()?.left_out.get(&tid)
    }

    /// A chain link for people: a thread by its label, an outside task by
    /// name and PID, a timer by its callback.
    pub fn link_label(&self, l: &Link) -> String {
        match l {
            Link::Thread(tid) => match (self.thread(*tid), self.left_out(*tid)) {
                (Some(t), _) => t.label(),
                (None, Some(o)) => o.label.clone(),
                (None, None) => format!("thread {tid}"),
            },
            Link::Outside(o) => holder_label(&Holder::Task(*o)),
            Link::Timer(Some(n)) => format!("timer {}", n.as_str()),
            Link::Timer(None) => "timer".into(),
            Link::Softirq(Some(v)) => format!("softirq {}", softirq_name(*v)),
            Link::Softirq(None) => "softirq".into(),
            Link::Hardirq(Some(i)) => format!("irq {i}"),
            Link::Hardirq(None) => "hard interrupt".into(),
            Link::Nmi => "NMI".into(),
            Link::Unknown => "unknown context".into(),
        }
    }

    /// `pool 101 ← node 100 ← timer hrtimer_wakeup`.
    pub fn chain_label(&self, c: &Chain) -> String {
        let mut s: Vec<String> = c.links().map(|l| self.link_label(l)).collect();
        if c.more {
            s.push("…".into());
        }
        s.join(" ← ")
    }
}

/// The kernel's softirq vector names (`include/linux/interrupt.h`).
pub fn softirq_name(v: u32) -> &'static str {
    match v {
        0 => "HI",
        1 => "TIMER",
        2 => "NET_TX",
        3 => "NET_RX",
        4 => "BLOCK",
        5 => "IRQ_POLL",
        6 => "TASKLET",
        7 => "SCHED",
        8 => "HRTIMER",
        9 => "RCU",
        _ => "?",
    }
}

/// A holder for people: `name PID` (`[other process]` when its process is
/// known and not traced), `idle`, `not recorded`.
pub fn holder_label(h: &Holder) -> String {
    match h {
        Holder::Task(o) if o.is_idle() => "idle".into(),
        Holder::Task(o) if o.tgid != 0 && o.tgid != o.tid => {
            format!("{} {} (PID {})", o.comm, o.tid, o.tgid)
        }
        Holder::Task(o) => format!("{} {}", o.comm, o.tid),
        Holder::Unrecorded => "not recorded".into(),
    }
}
