//! The results of an analysis: per-thread and per-process figures, in plain
//! Rust types. Exporters turn these into text, JSON and pictures.

use std::collections::{BTreeMap, BTreeSet};

use crate::event::WakeContext;

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

/// Everything an analysis produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub target_pid: u32,
    pub target_comm: String,
    pub command: Option<Vec<String>>,
    pub pinned_cpus: Option<Vec<u32>>,
    pub follow_children: bool,
    /// Wakeups were traced; without them there are no wakers, and waits
    /// come from the kernel's run-queue accounting.
    pub wakeups: bool,
    pub ncpus: u32,
    pub kernel_release: String,
    pub hostname: String,
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    pub window_ns: u64,
    /// Events of the stream; with `--since`/`--until`, those inside the
    /// window; with a selection, those that involve a selected thread.
    pub events: u64,
    pub lost_events: u64,
    pub lost_per_cpu: Vec<u64>,
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
    /// All traced threads together (equal to the one process without
    /// `--follow-children`).
    pub total: ProcessSummary,
    pub processes: Vec<ProcessSummary>,
    /// Sorted by on-CPU time, largest first.
    pub threads: Vec<ThreadSummary>,
    /// The threads a report's filters selected; `None`: every traced thread.
    pub selection: Option<Selection>,
}
