//! The JSON summary (`--format json`). The serde types here are the wire
//! format (documented in `docs/summary-schema.md`), kept apart from the
//! analysis types so either can change without silently changing the other.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use super::{Exporter, Report};
use crate::analysis::antagonists::Holder;
use crate::analysis::chain::Link;
use crate::analysis::summary::{
    DelayStats, HolderTime, Parallelism, ProcessSummary, Summary, ThreadSummary, Waker,
    softirq_name,
};
use crate::event::WakeContext;

/// Bump on any incompatible change of the summary's shape.
pub(crate) const SUMMARY_SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct WireSummary<'a> {
    schema: &'static str,
    version: u32,
    target: WireTarget<'a>,
    ncpus: u32,
    kernel_release: &'a str,
    hostname: &'a str,
    window_start_ns: u64,
    window_end_ns: u64,
    window_ns: u64,
    events: u64,
    lost_events: u64,
    lost_per_cpu: &'a [u64],
    lost_processes: u64,
    complete: bool,
    stop_reason: &'a str,
    anomalies: u64,
    /// On-CPU time, waits and switch counts are the kernel's own figures.
    kernel_counters: bool,
    /// Per CPU: runs put back from their switch-out's counters.
    inferred_per_cpu: &'a [u64],
    /// Per CPU: switch-ins the kernel made that its event stream lacked.
    missing_switch_ins_per_cpu: &'a [u64],
    /// Per CPU: wakeups of traced threads the event stream lacked.
    missing_wakeups_per_cpu: &'a [u64],
    unplaced_runs: u64,
    recursion_misses: Option<u64>,
    /// Sleeps whose stack the kernel side could not keep (`--stacks`).
    lost_stacks: u64,
    /// Per CPU: events that arrived after newer ones (out of order).
    late_per_cpu: &'a [u64],
    /// CPUs whose events could not be shown complete up to the end.
    end_gaps: Vec<WireGap>,
    /// `false` for a trace taken with `--no-wakeups`: no wakers.
    wakeups: bool,
    parallelism: WireParallelism<'a>,
    totals: WireTotals,
    processes: Vec<WireProcess<'a>>,
    threads: WireThreads<'a>,
    /// Present when a report's filters selected threads: every figure
    /// above is then theirs alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    selection: Option<WireSelection<'a>>,
}

/// The summary's threads, each turned into its wire form as it is written:
/// a trace of many short-lived threads would otherwise hold a second copy
/// of every thread's figures (names, holders, chains) while writing.
struct WireThreads<'a>(&'a Summary);

impl Serialize for WireThreads<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let s = self.0;
        ser.collect_seq(s.threads.iter().map(|t| thread(s, t)))
    }
}

/// A stretch at the end of one CPU's time that could not be shown complete.
#[derive(Serialize)]
struct WireGap {
    cpu: u32,
    from_ns: u64,
    to_ns: u64,
}

#[derive(Serialize)]
struct WireSelection<'a> {
    tids: Vec<u32>,
    filters: WireFilters<'a>,
    /// Threads in the window before selecting.
    of_threads: u64,
}

#[derive(Serialize)]
struct WireFilters<'a> {
    tid: &'a [u32],
    comm: Option<&'a str>,
    cpu: Option<u32>,
}

#[derive(Serialize)]
struct WireTarget<'a> {
    pid: u32,
    comm: &'a str,
    /// Its PID in its own PID namespace, when not schedtrace's.
    #[serde(skip_serializing_if = "Option::is_none")]
    ns_pid: Option<u32>,
    command: Option<&'a [String]>,
    follow_children: bool,
    pinned_cpus: Option<&'a [u32]>,
    /// The further processes of a repeated `--pid`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    also: Vec<WireAlso<'a>>,
    /// `--cgroup`: the traced cgroup v2 directory and its id.
    #[serde(skip_serializing_if = "Option::is_none")]
    cgroup: Option<WireCgroup<'a>>,
    /// `--all`: every task was traced but this process's (schedtrace's).
    #[serde(skip_serializing_if = "Option::is_none")]
    all_but: Option<u32>,
    /// `--comm`: the name pattern.
    #[serde(skip_serializing_if = "Option::is_none")]
    comm_pattern: Option<&'a str>,
}

#[derive(Serialize)]
struct WireCgroup<'a> {
    path: &'a str,
    id: u64,
}

#[derive(Serialize)]
struct WireAlso<'a> {
    pid: u32,
    comm: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ns_pid: Option<u32>,
}

#[derive(Serialize)]
struct WireParallelism<'a> {
    running_ns: &'a [u64],
    parallel_ns: u64,
    time_sliced_ns: u64,
    busy_ns: u64,
    mean_running: f64,
    mean_runnable: f64,
}

#[derive(Serialize)]
struct WireTotals {
    threads_seen: u64,
    on_cpu_ns: u64,
    steal_ns: u64,
    run_delay_asleep_ns: u64,
    voluntary_switches: u64,
    involuntary_switches: u64,
    migrations: u64,
}

#[derive(Serialize)]
struct WireProcess<'a> {
    tgid: u32,
    comm: &'a str,
    #[serde(flatten)]
    totals: WireTotals,
    parallelism: WireParallelism<'a>,
}

#[derive(Serialize)]
struct WireStates {
    running_ns: u64,
    runnable_ns: u64,
    sleeping_ns: u64,
    blocked_ns: u64,
    unknown_ns: u64,
}

#[derive(Serialize)]
struct WireDelay {
    count: u64,
    total_ns: u64,
    mean_ns: u64,
    p50_ns: u64,
    p99_ns: u64,
    max_ns: u64,
}

#[derive(Serialize)]
struct WireMigration {
    from: u32,
    to: u32,
    count: u64,
}

#[derive(Serialize)]
pub(crate) struct WireWaker<'a> {
    tid: u32,
    tgid: u32,
    comm: &'a str,
    /// `task`, `timer`, `softirq`, `hardirq`, `nmi` or `unknown`.
    kind: &'static str,
    /// A timer's callback.
    #[serde(skip_serializing_if = "Option::is_none")]
    function: Option<String>,
    /// A softirq's vector.
    #[serde(skip_serializing_if = "Option::is_none")]
    vector: Option<u32>,
    /// A device interrupt's number.
    #[serde(skip_serializing_if = "Option::is_none")]
    irq: Option<u32>,
    /// A softirq vector's name, or a device interrupt's handler.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// A task of a process other than the traced ones: that process.
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<WireProcessRef<'a>>,
    count: u64,
}

/// Another process, by PID and name.
#[derive(Serialize)]
struct WireProcessRef<'a> {
    pid: u32,
    comm: &'a str,
}

pub(crate) fn waker(w: &Waker) -> WireWaker<'_> {
    let (mut function, mut vector, mut irq, mut name) = (None, None, None, None);
    match w.context {
        WakeContext::Timer { function: f, .. } => function = f.map(|f| f.to_string()),
        WakeContext::Softirq { vector: v } => {
            vector = v;
            name = v.and_then(WakeContext::softirq_name).map(str::to_string);
        }
        WakeContext::Hardirq { irq: i, name: n } => {
            irq = i;
            name = n.map(|n| n.to_string());
        }
        WakeContext::Task | WakeContext::Nmi | WakeContext::Unknown => {}
    }
    WireWaker {
        tid: w.tid,
        tgid: w.tgid,
        comm: &w.comm,
        kind: w.context.kind_name(),
        function,
        vector,
        irq,
        name,
        process: w
            .process
            .as_deref()
            .map(|comm| WireProcessRef { pid: w.tgid, comm }),
        count: w.count,
    }
}

/// Sleeping and blocked time of one reason.
#[derive(Serialize)]
struct WireReason {
    class: &'static str,
    syscall: Option<u32>,
    syscall_name: Option<String>,
    ns: u64,
    count: u64,
}

#[derive(Serialize)]
struct WireOffCpu {
    /// `states.sleeping_ns + states.blocked_ns`.
    total_ns: u64,
    reasons: Vec<WireReason>,
}

/// A task that held a CPU instead of the thread.
#[derive(Serialize)]
pub(crate) struct WireHolder {
    /// `task`, `idle` or `unrecorded`.
    kind: &'static str,
    tid: Option<u32>,
    tgid: Option<u32>,
    comm: Option<String>,
    ns: u64,
    count: u64,
}

#[derive(Serialize)]
struct WireOthers {
    ns: u64,
    count: u64,
}

#[derive(Serialize)]
struct WireLink {
    /// `thread`, `outside`, `timer`, `softirq`, `hardirq`, `nmi`, `unknown`.
    kind: &'static str,
    tid: Option<u32>,
    tgid: Option<u32>,
    comm: Option<String>,
    /// A timer's callback (`0x...`) and its name when known; a softirq's
    /// vector name; an IRQ number.
    function: Option<String>,
    name: Option<String>,
    irq: Option<u32>,
}

#[derive(Serialize)]
struct WireChain {
    /// `pool 101 ← node 100 ← timer hrtimer_wakeup`.
    label: String,
    links: Vec<WireLink>,
    /// The chain goes on (cut at its depth, or at a thread it already has).
    more: bool,
    count: u64,
}

#[derive(Serialize)]
struct WireRole<'a> {
    label: &'a str,
    evidence: &'a str,
}

#[derive(Serialize)]
struct WireThread<'a> {
    tid: u32,
    tgid: u32,
    comm: &'a str,
    on_cpu_ns: u64,
    share: f64,
    /// Time on a CPU the kernel did not charge (hypervisor steal).
    steal_ns: u64,
    /// On-CPU time by the tracepoint timestamps: what the timelines show.
    timeline_on_cpu_ns: u64,
    /// Run-queue wait the kernel counted while the thread slept.
    run_delay_asleep_ns: u64,
    lifetime_ns: u64,
    states: WireStates,
    voluntary_switches: u64,
    involuntary_switches: u64,
    anomalies: u64,
    inferred_runs: u64,
    inferred_ns: u64,
    unplaced_runs: u64,
    migrations: u64,
    migration_pairs: Vec<WireMigration>,
    migrate_events: u64,
    /// CPU number (as a string key) → on-CPU ns.
    cpus: BTreeMap<String, u64>,
    slices: u64,
    longest_slice_ns: u64,
    wait: WireDelay,
    wait_after_wakeup: WireDelay,
    wait_after_preempt: WireDelay,
    wakers: Vec<WireWaker<'a>>,
    created_ns: Option<u64>,
    exited_ns: Option<u64>,
    role: Option<WireRole<'a>>,
    off_cpu: WireOffCpu,
    preempted_by: Vec<WireHolder>,
    preempted_by_others: WireOthers,
    waited_behind: Vec<WireHolder>,
    waited_behind_others: WireOthers,
    chains: Vec<WireChain>,
}

fn parallelism(p: &Parallelism) -> WireParallelism<'_> {
    WireParallelism {
        running_ns: &p.running_ns,
        parallel_ns: p.parallel_ns,
        time_sliced_ns: p.time_sliced_ns,
        busy_ns: p.busy_ns,
        mean_running: round3(p.mean_running),
        mean_runnable: round3(p.mean_runnable),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn totals(p: &ProcessSummary) -> WireTotals {
    WireTotals {
        threads_seen: p.threads_seen,
        on_cpu_ns: p.on_cpu_ns,
        steal_ns: p.steal_ns,
        run_delay_asleep_ns: p.run_delay_asleep_ns,
        voluntary_switches: p.voluntary_switches,
        involuntary_switches: p.involuntary_switches,
        migrations: p.migrations,
    }
}

fn delay(d: &DelayStats) -> WireDelay {
    WireDelay {
        count: d.count,
        total_ns: d.total_ns,
        mean_ns: d.mean_ns,
        p50_ns: d.p50_ns,
        p99_ns: d.p99_ns,
        max_ns: d.max_ns,
    }
}

pub(crate) fn holder(h: &HolderTime) -> WireHolder {
    let (kind, task) = match h.holder {
        Holder::Task(o) if o.is_idle() => ("idle", None),
        Holder::Task(o) => ("task", Some(o)),
        Holder::Unrecorded => ("unrecorded", None),
    };
    WireHolder {
        kind,
        tid: task.map(|o| o.tid),
        tgid: task.map(|o| o.tgid).filter(|&g| g != 0),
        comm: task.map(|o| o.comm.to_string()),
        ns: h.ns,
        count: h.count,
    }
}

fn link(s: &Summary, l: &Link) -> WireLink {
    let mut w = WireLink {
        kind: "unknown",
        tid: None,
        tgid: None,
        comm: None,
        function: None,
        name: None,
        irq: None,
    };
    match l {
        Link::Thread(tid) => {
            w.kind = "thread";
            w.tid = Some(*tid);
            if let Some(t) = s.thread(*tid) {
                w.tgid = Some(t.tgid);
                w.comm = Some(t.comm.clone());
            } else if let Some(o) = s.left_out(*tid) {
                w.tgid = Some(o.tgid);
                w.comm = Some(o.comm.clone());
            }
        }
        Link::Outside(o) => {
            w.kind = "outside";
            w.tid = Some(o.tid);
            w.tgid = Some(o.tgid).filter(|&g| g != 0);
            w.comm = Some(o.comm.to_string());
        }
        Link::Timer(f) => {
            w.kind = "timer";
            w.function = f.map(|f| f.to_string());
        }
        Link::Softirq(v) => {
            w.kind = "softirq";
            w.name = v.map(|v| softirq_name(v).to_string());
        }
        Link::Hardirq(i) => {
            w.kind = "hardirq";
            w.irq = *i;
        }
        Link::Nmi => w.kind = "nmi",
        Link::Unknown => {}
    }
    w
}

fn thread<'a>(s: &'a Summary, t: &'a ThreadSummary) -> WireThread<'a> {
    WireThread {
        tid: t.tid,
        tgid: t.tgid,
        comm: &t.comm,
        on_cpu_ns: t.on_cpu_ns,
        share: (t.share * 1e4).round() / 1e4,
        steal_ns: t.steal_ns,
        timeline_on_cpu_ns: t.timeline_on_cpu_ns,
        run_delay_asleep_ns: t.run_delay_asleep_ns,
        lifetime_ns: t.lifetime_ns,
        states: WireStates {
            running_ns: t.states.running_ns,
            runnable_ns: t.states.runnable_ns,
            sleeping_ns: t.states.sleeping_ns,
            blocked_ns: t.states.blocked_ns,
            unknown_ns: t.states.unknown_ns,
        },
        voluntary_switches: t.voluntary_switches,
        involuntary_switches: t.involuntary_switches,
        anomalies: t.anomalies,
        inferred_runs: t.inferred_runs,
        inferred_ns: t.inferred_ns,
        unplaced_runs: t.unplaced_runs,
        migrations: t.migrations,
        migration_pairs: t
            .migration_pairs
            .iter()
            .map(|(&(from, to), &count)| WireMigration { from, to, count })
            .collect(),
        migrate_events: t.migrate_events,
        cpus: t.cpus.iter().map(|(c, ns)| (c.to_string(), *ns)).collect(),
        slices: t.slices,
        longest_slice_ns: t.longest_slice_ns,
        wait: delay(&t.wait),
        wait_after_wakeup: delay(&t.wait_after_wakeup),
        wait_after_preempt: delay(&t.wait_after_preempt),
        wakers: t.wakers.iter().map(waker).collect(),
        created_ns: t.created_ns,
        exited_ns: t.exited_ns,
        role: t.role.as_ref().map(|r| WireRole {
            label: &r.label,
            evidence: r.evidence,
        }),
        off_cpu: WireOffCpu {
            total_ns: t.states.sleeping_ns + t.states.blocked_ns,
            reasons: t
                .off_cpu
                .iter()
                .map(|o| WireReason {
                    class: o.key.class.key(),
                    syscall: o.key.syscall,
                    syscall_name: o.key.syscall_name(),
                    ns: o.ns,
                    count: o.count,
                })
                .collect(),
        },
        preempted_by: t.antagonists().preempted_by.iter().map(holder).collect(),
        preempted_by_others: WireOthers {
            ns: t.antagonists().preempted_by_others.0,
            count: t.antagonists().preempted_by_others.1,
        },
        waited_behind: t.antagonists().waited_behind.iter().map(holder).collect(),
        waited_behind_others: WireOthers {
            ns: t.antagonists().waited_behind_others.0,
            count: t.antagonists().waited_behind_others.1,
        },
        chains: t
            .chains
            .iter()
            .map(|(c, count)| WireChain {
                label: s.chain_label(c),
                links: c.links().map(|l| link(s, l)).collect(),
                more: c.more,
                count: *count,
            })
            .collect(),
    }
}

fn wire(s: &Summary) -> WireSummary<'_> {
    WireSummary {
        schema: "schedtrace-summary",
        version: SUMMARY_SCHEMA_VERSION,
        target: WireTarget {
            pid: s.target_pid,
            comm: &s.target_comm,
            ns_pid: s.target_ns_pid,
            command: s.command.as_deref(),
            follow_children: s.follow_children,
            pinned_cpus: s.pinned_cpus.as_deref(),
            also: s
                .also
                .iter()
                .map(|p| WireAlso {
                    pid: p.pid,
                    comm: &p.comm,
                    ns_pid: p.ns_pid,
                })
                .collect(),
            cgroup: s.cgroup.as_ref().map(|c| WireCgroup {
                path: &c.path,
                id: c.id,
            }),
            all_but: s.all_but,
            comm_pattern: s.comm_pattern.as_deref(),
        },
        ncpus: s.ncpus,
        kernel_release: &s.kernel_release,
        hostname: &s.hostname,
        window_start_ns: s.window_start_ns,
        window_end_ns: s.window_end_ns,
        window_ns: s.window_ns,
        events: s.events,
        lost_events: s.lost_events,
        lost_per_cpu: &s.lost_per_cpu,
        lost_processes: s.lost_processes,
        complete: s.complete,
        stop_reason: &s.stop_reason,
        anomalies: s.anomalies,
        kernel_counters: s.kernel_counters,
        inferred_per_cpu: &s.inferred_per_cpu,
        missing_switch_ins_per_cpu: &s.missing_switch_ins_per_cpu,
        missing_wakeups_per_cpu: &s.missing_wakeups_per_cpu,
        unplaced_runs: s.unplaced_runs,
        recursion_misses: s.recursion_misses,
        lost_stacks: s.lost_stacks,
        late_per_cpu: &s.late_per_cpu,
        end_gaps: s
            .end_gaps
            .iter()
            .map(|g| WireGap {
                cpu: g.cpu,
                from_ns: g.from_ns,
                to_ns: g.to_ns,
            })
            .collect(),
        wakeups: s.wakeups,
        parallelism: parallelism(&s.total.parallelism),
        totals: totals(&s.total),
        processes: s
            .processes
            .iter()
            .map(|p| WireProcess {
                tgid: p.tgid,
                comm: &p.comm,
                totals: totals(p),
                parallelism: parallelism(&p.parallelism),
            })
            .collect(),
        threads: WireThreads(s),
        selection: s.selection.as_ref().map(|sel| WireSelection {
            tids: sel.tids.iter().copied().collect(),
            filters: WireFilters {
                tid: &sel.by_tid,
                comm: sel.comm.as_deref(),
                cpu: sel.cpu,
            },
            of_threads: sel.of_threads,
        }),
    }
}

/// The JSON summary as a `serde_json::Value` (for tests and `compare`).
pub(crate) fn to_value(s: &Summary) -> serde_json::Value {
    serde_json::to_value(wire(s)).expect("summary serializes")
}

pub(crate) struct Json;

impl Exporter for Json {
    fn write(&self, report: &Report<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
        serde_json::to_writer_pretty(&mut *out, &wire(report.summary))?;
        out.write_all(b"\n")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Options, analyze};
    use crate::testutil::*;

    #[test]
    fn json_summary_snapshot() {
        let ev = [
            switch(2_000, 1, task(0), 0, task(102)),
            wakeup(2_500, 1, task(102), task(101), false),
            switch(4_000, 0, task(100), 1, task(101)),
            switch(6_000, 1, task(102), 0, task(0)),
        ];
        let recs = trace(2, 1_000, &[(100, 'R'), (101, 'S'), (102, 'R')], &ev, 8_000);
        let (s, _) = analyze(&recs, Options::default());
        insta::assert_json_snapshot!(to_value(&s));
    }
}
