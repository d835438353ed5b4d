//! The JSON Lines schema as serde types: one type per record kind, tagged
//! by `type` (`docs/trace-format.md`). They are the wire format only and
//! convert to and from [`Record`] here; the writer and the scanner produce
//! and read the same text by hand for the event lines (tests check both
//! against these types).

use serde::{Deserialize, Serialize};

use super::SCHEMA_NAME;
use crate::event::{
    Comm, Event, EventKind, KernelWait, NextCounters, OffCpu, PrevCounters, SwitchCounters,
    SwitchReason, Symbol, Task, WakeContext,
};
use crate::trace::{
    End, Frame, Gap, Header, Lost, OrderMethod, Ordering, Record, Stack, StackKind, TargetCgroup,
    TargetProcess, ThreadCounters, ThreadInfo,
};

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireTask {
    tid: u32,
    tgid: u32,
    comm: String,
    #[serde(default)]
    prio: i32,
}

impl From<&Task> for WireTask {
    fn from(t: &Task) -> Self {
        WireTask {
            tid: t.tid,
            tgid: t.tgid,
            comm: t.comm.to_string(),
            prio: t.prio,
        }
    }
}

impl From<&WireTask> for Task {
    fn from(t: &WireTask) -> Self {
        Task {
            tid: t.tid,
            tgid: t.tgid,
            comm: Comm::new(&t.comm),
            prio: t.prio,
        }
    }
}

/// A switch's `next_wait` ([`KernelWait`]).
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub(super) struct WireWait {
    run_delay_ns: u64,
    queued_ns: u64,
}

impl From<KernelWait> for WireWait {
    fn from(w: KernelWait) -> Self {
        WireWait {
            run_delay_ns: w.run_delay_ns,
            queued_ns: w.queued_ns,
        }
    }
}

impl From<WireWait> for KernelWait {
    fn from(w: WireWait) -> Self {
        KernelWait {
            run_delay_ns: w.run_delay_ns,
            queued_ns: w.queued_ns,
        }
    }
}

/// A switch's `prev_counters` ([`PrevCounters`]).
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub(super) struct WirePrevCounters {
    runtime_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_clock_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pcount: Option<u32>,
    nvcsw: u32,
    nivcsw: u32,
}

impl From<PrevCounters> for WirePrevCounters {
    fn from(c: PrevCounters) -> Self {
        WirePrevCounters {
            runtime_ns: c.runtime_ns,
            run_clock_ns: c.run_clock_ns,
            pcount: c.pcount,
            nvcsw: c.nvcsw,
            nivcsw: c.nivcsw,
        }
    }
}

impl From<WirePrevCounters> for PrevCounters {
    fn from(c: WirePrevCounters) -> Self {
        PrevCounters {
            runtime_ns: c.runtime_ns,
            run_clock_ns: c.run_clock_ns,
            pcount: c.pcount,
            nvcsw: c.nvcsw,
            nivcsw: c.nivcsw,
        }
    }
}

/// A switch's `next_counters` ([`NextCounters`]).
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub(super) struct WireNextCounters {
    runtime_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pcount: Option<u32>,
}

impl From<NextCounters> for WireNextCounters {
    fn from(c: NextCounters) -> Self {
        WireNextCounters {
            runtime_ns: c.runtime_ns,
            pcount: c.pcount,
        }
    }
}

impl From<WireNextCounters> for NextCounters {
    fn from(c: WireNextCounters) -> Self {
        NextCounters {
            runtime_ns: c.runtime_ns,
            pcount: c.pcount,
        }
    }
}

/// A switch's `prev_off` ([`OffCpu`]).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(super) struct WireOffCpu {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    syscall: Option<u32>,
    /// The name of `syscall` (written for readers; not read back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    syscall_name: Option<String>,
    iowait: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kernel_stack: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_stack: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    stack_lost: bool,
}

impl From<&OffCpu> for WireOffCpu {
    fn from(o: &OffCpu) -> Self {
        WireOffCpu {
            syscall: o.syscall,
            syscall_name: o
                .syscall
                .and_then(crate::syscalls::name)
                .map(str::to_string),
            iowait: o.iowait,
            kernel_stack: o.kernel_stack,
            user_stack: o.user_stack,
            stack_lost: o.stack_lost,
        }
    }
}

impl From<&WireOffCpu> for OffCpu {
    fn from(o: &WireOffCpu) -> Self {
        OffCpu {
            syscall: o.syscall,
            iowait: o.iowait,
            kernel_stack: o.kernel_stack,
            user_stack: o.user_stack,
            stack_lost: o.stack_lost,
        }
    }
}

/// `0x...` for an address.
pub(super) fn hex(a: u64) -> String {
    format!("{a:#x}")
}

/// An address written by [`hex`] (or a plain decimal number).
pub(super) fn parse_addr(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// One frame of a `stack` line.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireFrame {
    addr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    module: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireStack {
    id: u32,
    /// `kernel` or `user`.
    kind: String,
    tgid: u32,
    /// Innermost first.
    frames: Vec<WireFrame>,
    /// The thread whose stack memory this was read from (a thread root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    thread: Option<u32>,
}

impl From<&Stack> for WireStack {
    fn from(s: &Stack) -> Self {
        WireStack {
            id: s.id,
            kind: match s.kind {
                StackKind::Kernel => "kernel",
                StackKind::User => "user",
            }
            .into(),
            tgid: s.tgid,
            frames: s
                .frames
                .iter()
                .map(|f| WireFrame {
                    addr: hex(f.addr),
                    name: f.name.clone(),
                    module: f.module.clone(),
                })
                .collect(),
            thread: s.thread,
        }
    }
}

impl TryFrom<WireStack> for Stack {
    type Error = String;
    fn try_from(s: WireStack) -> Result<Self, String> {
        let kind = match s.kind.as_str() {
            "kernel" => StackKind::Kernel,
            "user" => StackKind::User,
            other => return Err(format!("unknown stack kind {other:?}")),
        };
        let frames = s
            .frames
            .into_iter()
            .map(|f| {
                Ok(Frame {
                    addr: parse_addr(&f.addr).ok_or_else(|| format!("bad address {:?}", f.addr))?,
                    name: f.name,
                    module: f.module,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Stack {
            id: s.id,
            kind,
            tgid: s.tgid,
            frames,
            thread: s.thread,
        })
    }
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireTarget {
    pid: u32,
    comm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ns_pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
    #[serde(default)]
    follow_children: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pinned_cpus: Option<Vec<u32>>,
    /// Further target processes (version 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    also: Vec<WireProcess>,
    /// The traced cgroup (version 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cgroup: Option<WireCgroup>,
    /// Every task was traced but this process's (`--all`, version 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all_but: Option<u32>,
    /// The `--comm` pattern (version 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    comm_pattern: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireCgroup {
    path: String,
    id: u64,
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireProcess {
    pid: u32,
    comm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ns_pid: Option<u32>,
}

fn yes() -> bool {
    true
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireHeader {
    schema: String,
    version: u32,
    clock: String,
    wall_clock_offset_ns: i64,
    ncpus: u32,
    target: WireTarget,
    kernel_release: String,
    hostname: String,
    tool_version: String,
    start_ns: u64,
    /// `false` in a trace taken with `--no-wakeups` (older traces lack it).
    #[serde(default = "yes")]
    wakeups: bool,
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireThread {
    ts: u64,
    tid: u32,
    tgid: u32,
    comm: String,
    state: String,
    cpu: u32,
    /// The system call it slept in, for a thread asleep (absent otherwise,
    /// and in older traces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    syscall: Option<u32>,
    /// The name of `syscall` (written for readers; not read back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    syscall_name: Option<String>,
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireSwitch {
    ts: u64,
    cpu: u32,
    prev: WireTask,
    next: WireTask,
    /// `R` preempted, `S` sleeping, `D` blocked, `X` dead.
    prev_state: String,
    prev_state_raw: u64,
    preempt: bool,
    /// When `prev` is traced (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev_counters: Option<WirePrevCounters>,
    /// When `next` is traced (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_counters: Option<WireNextCounters>,
    /// When `next` is traced (version 1: only without wakeups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_wait: Option<WireWait>,
    /// What `prev` was doing, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prev_off: Option<WireOffCpu>,
}

/// A `wakeup` or a `wakeup_new` line.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireWakeup {
    ts: u64,
    cpu: u32,
    waker: WireTask,
    wakee: WireTask,
    wakee_cpu: u32,
    /// The wakee's run delay as the wakeup found it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wakee_run_delay_ns: Option<u64>,
    /// The kernel was already counting a wait for it (absent: false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    wakee_queued: bool,
    /// Absent: a task woke it (`waker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context: Option<WireContext>,
    /// A waker task outside the traced processes: its process's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    waker_process: Option<String>,
}

/// A wakeup's `context` ([`WakeContext`] other than a task's).
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(super) struct WireContext {
    /// `timer`, `softirq`, `hardirq`, `nmi` or `unknown`.
    pub(super) kind: String,
    /// A timer's callback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) function: Option<String>,
    /// A timer run in the `HRTIMER` softirq rather than in the hard interrupt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) soft: bool,
    /// A softirq's vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) vector: Option<u32>,
    /// A device interrupt's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) irq: Option<u32>,
    /// A softirq vector's name, or a device interrupt's handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<String>,
}

impl WireContext {
    pub(super) fn from_context(c: WakeContext) -> Option<Self> {
        // Before `kind` is allocated: most wakeups come from a task.
        if c == WakeContext::Task {
            return None;
        }
        let mut w = WireContext {
            kind: c.kind_name().into(),
            function: None,
            soft: false,
            vector: None,
            irq: None,
            name: None,
        };
        match c {
            WakeContext::Task => {}
            WakeContext::Timer { function, soft } => {
                w.function = function.map(|f| f.to_string());
                w.soft = soft;
            }
            WakeContext::Softirq { vector } => {
                w.vector = vector;
                w.name = vector
                    .and_then(WakeContext::softirq_name)
                    .map(str::to_string);
            }
            WakeContext::Hardirq { irq, name } => {
                w.irq = irq;
                w.name = name.map(|n| n.to_string());
            }
            WakeContext::Nmi | WakeContext::Unknown => {}
        }
        Some(w)
    }

    pub(super) fn to_context(w: Option<&WireContext>) -> WakeContext {
        let Some(w) = w else {
            return WakeContext::Task;
        };
        match w.kind.as_str() {
            "task" => WakeContext::Task,
            "timer" => WakeContext::Timer {
                function: w.function.as_deref().map(Symbol::new),
                soft: w.soft,
            },
            "softirq" => WakeContext::Softirq { vector: w.vector },
            "hardirq" => WakeContext::Hardirq {
                irq: w.irq,
                name: w.name.as_deref().map(Symbol::new),
            },
            "nmi" => WakeContext::Nmi,
            _ => WakeContext::Unknown,
        }
    }
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireMigrate {
    ts: u64,
    cpu: u32,
    task: WireTask,
    from_cpu: u32,
    to_cpu: u32,
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireFork {
    ts: u64,
    cpu: u32,
    parent: WireTask,
    child: WireTask,
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireExec {
    ts: u64,
    cpu: u32,
    task: WireTask,
    old_tid: u32,
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireExit {
    ts: u64,
    cpu: u32,
    task: WireTask,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_delay_ns: Option<u64>,
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireJoin {
    ts: u64,
    cpu: u32,
    task: WireTask,
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireCounters {
    ts: u64,
    tid: u32,
    tgid: u32,
    runtime_ns: u64,
    run_delay_ns: u64,
    pcount: u64,
    nvcsw: u64,
    nivcsw: u64,
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireLost {
    ts: u64,
    cpu: u32,
    count: u64,
}

#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireEnd {
    end_ns: u64,
    events: u64,
    lost_events: u64,
    lost_per_cpu: Vec<u64>,
    complete: bool,
    reason: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    missing_switch_ins_per_cpu: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recursion_misses: Option<u64>,
    /// `marks` or `slack` (absent in older traces, with the three below).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    late_events: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    late_per_cpu: Option<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gaps: Option<Vec<WireGap>>,
    /// Absent: none (or a trace written before they were counted).
    #[serde(default, skip_serializing_if = "is_zero")]
    lost_processes: u64,
}

/// A CPU's unaccounted stretch at the end (see [`crate::trace::Gap`]).
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct WireGap {
    cpu: u32,
    from_ns: u64,
    to_ns: u64,
}

impl WireEnd {
    fn ordering(&self) -> Ordering {
        Ordering {
            method: match self.order.as_deref() {
                Some("marks") => Some(OrderMethod::Marks),
                Some("slack") => Some(OrderMethod::Slack),
                _ => None,
            },
            late_per_cpu: self.late_per_cpu.clone().unwrap_or_default(),
            gaps: self
                .gaps
                .iter()
                .flatten()
                .map(|g| Gap {
                    cpu: g.cpu,
                    from_ns: g.from_ns,
                    to_ns: g.to_ns,
                })
                .collect(),
        }
    }
}

/// One line of the file: the `type` tag, then the kind's fields.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Wire {
    Header(WireHeader),
    Thread(WireThread),
    Counters(WireCounters),
    Switch(WireSwitch),
    Wakeup(WireWakeup),
    WakeupNew(WireWakeup),
    Migrate(WireMigrate),
    Fork(WireFork),
    Exec(WireExec),
    Exit(WireExit),
    Join(WireJoin),
    Lost(WireLost),
    Stack(WireStack),
    End(WireEnd),
}

pub(super) fn to_wire(r: &Record) -> Wire {
    match r {
        Record::Header(h) => Wire::Header(h.as_ref().into()),
        Record::Thread(t) => Wire::Thread(WireThread {
            ts: t.ts,
            tid: t.tid,
            tgid: t.tgid,
            comm: t.comm.to_string(),
            state: t.state.to_string(),
            cpu: t.cpu,
            syscall: t.syscall,
            syscall_name: t
                .syscall
                .and_then(crate::syscalls::name)
                .map(str::to_string),
        }),
        Record::Counters(c) => Wire::Counters(WireCounters {
            ts: c.ts,
            tid: c.tid,
            tgid: c.tgid,
            runtime_ns: c.runtime_ns,
            run_delay_ns: c.run_delay_ns,
            pcount: c.pcount,
            nvcsw: c.nvcsw,
            nivcsw: c.nivcsw,
        }),
        Record::Event(e) => event_to_wire(e),
        Record::Stack(s) => Wire::Stack(s.into()),
        Record::Lost(l) => Wire::Lost(WireLost {
            ts: l.ts,
            cpu: l.cpu,
            count: l.count,
        }),
        Record::End(e) => {
            let o = &e.ordering;
            let known = o.method.is_some();
            Wire::End(WireEnd {
                end_ns: e.end_ns,
                events: e.events,
                lost_events: e.lost_events,
                lost_per_cpu: e.lost_per_cpu.clone(),
                complete: e.complete,
                reason: e.reason.clone(),
                missing_switch_ins_per_cpu: e.missing_switch_ins_per_cpu.clone(),
                recursion_misses: e.recursion_misses,
                lost_processes: e.lost_processes,
                order: o.method.map(|m| m.as_str().to_string()),
                late_events: known.then(|| o.late_events()),
                late_per_cpu: known.then(|| o.late_per_cpu.clone()),
                gaps: known.then(|| {
                    o.gaps
                        .iter()
                        .map(|g| WireGap {
                            cpu: g.cpu,
                            from_ns: g.from_ns,
                            to_ns: g.to_ns,
                        })
                        .collect()
                }),
            })
        }
    }
}

pub(super) fn event_to_wire(e: &Event) -> Wire {
    let (ts, cpu) = (e.ts, e.cpu);
    match &e.kind {
        EventKind::Switch {
            prev,
            next,
            prev_state,
            preempt,
            next_wait,
            counters,
            prev_off,
        } => Wire::Switch(WireSwitch {
            ts,
            cpu,
            prev: prev.into(),
            next: next.into(),
            prev_state: SwitchReason::decode(*prev_state, *preempt).letter().into(),
            prev_state_raw: *prev_state,
            preempt: *preempt,
            prev_counters: counters.prev.map(Into::into),
            next_counters: counters.next.map(Into::into),
            next_wait: next_wait.map(Into::into),
            prev_off: prev_off.as_ref().map(Into::into),
        }),
        EventKind::Wakeup {
            waker,
            wakee,
            wakee_cpu,
            wakee_run_delay_ns,
            wakee_queued,
            new,
            context,
            waker_process,
        } => {
            let w = WireWakeup {
                ts,
                cpu,
                waker: waker.into(),
                wakee: wakee.into(),
                wakee_cpu: *wakee_cpu,
                wakee_run_delay_ns: *wakee_run_delay_ns,
                wakee_queued: *wakee_queued,
                context: WireContext::from_context(*context),
                waker_process: waker_process.map(|c| c.to_string()),
            };
            if *new {
                Wire::WakeupNew(w)
            } else {
                Wire::Wakeup(w)
            }
        }
        EventKind::Migrate { task, from, to } => Wire::Migrate(WireMigrate {
            ts,
            cpu,
            task: task.into(),
            from_cpu: *from,
            to_cpu: *to,
        }),
        EventKind::Fork { parent, child } => Wire::Fork(WireFork {
            ts,
            cpu,
            parent: parent.into(),
            child: child.into(),
        }),
        EventKind::Exec { task, old_tid } => Wire::Exec(WireExec {
            ts,
            cpu,
            task: task.into(),
            old_tid: *old_tid,
        }),
        EventKind::Exit { task, run_delay_ns } => Wire::Exit(WireExit {
            ts,
            cpu,
            task: task.into(),
            run_delay_ns: *run_delay_ns,
        }),
        EventKind::Join { task } => Wire::Join(WireJoin {
            ts,
            cpu,
            task: task.into(),
        }),
    }
}

impl From<&Header> for WireHeader {
    fn from(h: &Header) -> Self {
        WireHeader {
            schema: SCHEMA_NAME.into(),
            version: h.version,
            clock: "CLOCK_MONOTONIC".into(),
            wall_clock_offset_ns: h.wall_clock_offset_ns,
            ncpus: h.ncpus,
            target: WireTarget {
                pid: h.target_pid,
                comm: h.target_comm.clone(),
                ns_pid: h.target_ns_pid,
                command: h.command.clone(),
                follow_children: h.follow_children,
                pinned_cpus: h.pinned_cpus.clone(),
                also: h
                    .also
                    .iter()
                    .map(|p| WireProcess {
                        pid: p.pid,
                        comm: p.comm.clone(),
                        ns_pid: p.ns_pid,
                    })
                    .collect(),
                cgroup: h.cgroup.as_ref().map(|c| WireCgroup {
                    path: c.path.clone(),
                    id: c.id,
                }),
                all_but: h.all_but,
                comm_pattern: h.comm_pattern.clone(),
            },
            kernel_release: h.kernel_release.clone(),
            hostname: h.hostname.clone(),
            tool_version: h.tool_version.clone(),
            start_ns: h.start_ns,
            wakeups: h.wakeups,
        }
    }
}

pub(super) fn from_wire(w: Wire) -> Result<Record, String> {
    Ok(match w {
        Wire::Header(h) => Record::Header(Box::new(h.into())),
        Wire::Thread(t) => Record::Thread(t.into()),
        Wire::Counters(c) => Record::Counters(ThreadCounters {
            ts: c.ts,
            tid: c.tid,
            tgid: c.tgid,
            runtime_ns: c.runtime_ns,
            run_delay_ns: c.run_delay_ns,
            pcount: c.pcount,
            nvcsw: c.nvcsw,
            nivcsw: c.nivcsw,
        }),
        Wire::Switch(s) => Record::Event(s.into()),
        Wire::Wakeup(w) => Record::Event(w.into_event(false)),
        Wire::WakeupNew(w) => Record::Event(w.into_event(true)),
        Wire::Migrate(m) => Record::Event(m.into()),
        Wire::Fork(f) => Record::Event(f.into()),
        Wire::Exec(e) => Record::Event(e.into()),
        Wire::Exit(e) => Record::Event(e.into()),
        Wire::Join(e) => Record::Event(Event {
            ts: e.ts,
            cpu: e.cpu,
            kind: EventKind::Join {
                task: (&e.task).into(),
            },
        }),
        Wire::Lost(l) => Record::Lost(Lost {
            ts: l.ts,
            cpu: l.cpu,
            count: l.count,
        }),
        Wire::End(e) => Record::End(End {
            ordering: e.ordering(),
            end_ns: e.end_ns,
            events: e.events,
            lost_events: e.lost_events,
            lost_per_cpu: e.lost_per_cpu,
            complete: e.complete,
            reason: e.reason,
            missing_switch_ins_per_cpu: e.missing_switch_ins_per_cpu,
            recursion_misses: e.recursion_misses,
            lost_processes: e.lost_processes,
        }),
        Wire::Stack(s) => Record::Stack(s.try_into()?),
    })
}

impl From<WireHeader> for Header {
    fn from(h: WireHeader) -> Self {
        Header {
            version: h.version,
            wall_clock_offset_ns: h.wall_clock_offset_ns,
            ncpus: h.ncpus,
            target_pid: h.target.pid,
            target_comm: h.target.comm,
            target_ns_pid: h.target.ns_pid,
            also: h
                .target
                .also
                .into_iter()
                .map(|p| TargetProcess {
                    pid: p.pid,
                    comm: p.comm,
                    ns_pid: p.ns_pid,
                })
                .collect(),
            cgroup: h.target.cgroup.map(|c| TargetCgroup {
                path: c.path,
                id: c.id,
            }),
            all_but: h.target.all_but,
            comm_pattern: h.target.comm_pattern,
            command: h.target.command,
            follow_children: h.target.follow_children,
            wakeups: h.wakeups,
            pinned_cpus: h.target.pinned_cpus,
            kernel_release: h.kernel_release,
            hostname: h.hostname,
            tool_version: h.tool_version,
            start_ns: h.start_ns,
        }
    }
}

impl From<WireThread> for ThreadInfo {
    fn from(t: WireThread) -> Self {
        ThreadInfo {
            ts: t.ts,
            tid: t.tid,
            tgid: t.tgid,
            comm: Comm::new(&t.comm),
            state: t.state.chars().next().unwrap_or('?'),
            cpu: t.cpu,
            syscall: t.syscall,
        }
    }
}

impl From<WireSwitch> for Event {
    fn from(s: WireSwitch) -> Self {
        let kind = EventKind::Switch {
            prev: (&s.prev).into(),
            next: (&s.next).into(),
            prev_state: s.prev_state_raw,
            preempt: s.preempt,
            next_wait: s.next_wait.map(Into::into),
            counters: SwitchCounters {
                prev: s.prev_counters.map(Into::into),
                next: s.next_counters.map(Into::into),
            },
            prev_off: s.prev_off.as_ref().map(Into::into),
        };
        Event {
            ts: s.ts,
            cpu: s.cpu,
            kind,
        }
    }
}

impl WireWakeup {
    fn into_event(self, new: bool) -> Event {
        let kind = EventKind::Wakeup {
            waker: (&self.waker).into(),
            wakee: (&self.wakee).into(),
            wakee_cpu: self.wakee_cpu,
            wakee_run_delay_ns: self.wakee_run_delay_ns,
            wakee_queued: self.wakee_queued,
            new,
            context: WireContext::to_context(self.context.as_ref()),
            waker_process: self.waker_process.as_deref().map(Comm::new),
        };
        Event {
            ts: self.ts,
            cpu: self.cpu,
            kind,
        }
    }
}

impl From<WireMigrate> for Event {
    fn from(m: WireMigrate) -> Self {
        let kind = EventKind::Migrate {
            task: (&m.task).into(),
            from: m.from_cpu,
            to: m.to_cpu,
        };
        Event {
            ts: m.ts,
            cpu: m.cpu,
            kind,
        }
    }
}

impl From<WireFork> for Event {
    fn from(f: WireFork) -> Self {
        let kind = EventKind::Fork {
            parent: (&f.parent).into(),
            child: (&f.child).into(),
        };
        Event {
            ts: f.ts,
            cpu: f.cpu,
            kind,
        }
    }
}

impl From<WireExec> for Event {
    fn from(e: WireExec) -> Self {
        let kind = EventKind::Exec {
            task: (&e.task).into(),
            old_tid: e.old_tid,
        };
        Event {
            ts: e.ts,
            cpu: e.cpu,
            kind,
        }
    }
}

impl From<WireExit> for Event {
    fn from(e: WireExit) -> Self {
        let kind = EventKind::Exit {
            task: (&e.task).into(),
            run_delay_ns: e.run_delay_ns,
        };
        Event {
            ts: e.ts,
            cpu: e.cpu,
            kind,
        }
    }
}

/// Decode one JSON object (a line without its newline) into a record; the
/// binary capture keeps its header and end records in this form.
pub(crate) fn record_from_json(text: &[u8]) -> Result<Record, serde_json::Error> {
    let wire = serde_json::from_slice::<Wire>(text)?;
    from_wire(wire).map_err(serde::de::Error::custom)
}

/// The schema version a header object claims, if it is a schedtrace header.
pub(crate) fn header_version(text: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(text).ok()?;
    if v.get("type").and_then(|t| t.as_str()) != Some("header")
        || v.get("schema").and_then(|t| t.as_str()) != Some(SCHEMA_NAME)
    {
        return None;
    }
    Some(v.get("version").and_then(|x| x.as_u64()).unwrap_or(0))
}
