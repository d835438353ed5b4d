//! A native Perfetto trace (`--perfetto FILE`) for ui.perfetto.dev and
//! trace_processor: CPU tracks, per-thread state tracks, wakeup arrows,
//! process and thread names, and the `sched_slice` / `thread_state` tables,
//! exactly as a kernel ftrace capture would fill them.
//!
//! # Mapping
//!
//! The timeline is turned back into the ftrace events Perfetto's own
//! recorder writes (`FtraceEventBundle`s, one per CPU and chunk, with
//! uncompacted `sched_switch` and `sched_waking` events):
//!
//! - Each run of a target thread on a CPU becomes a `sched_switch` into it
//!   and one out of it. The outgoing `prev_state` is taken from what the
//!   thread did next: `R` (0) when it became runnable, `S` (1) sleeping,
//!   `D` (2) blocked, `X` (0x10) when it exited.
//! - Tasks of other processes that held a CPU, as far as the switch
//!   records tell (the task that took the CPU from a traced thread, or gave
//!   it to one, and every task on a CPU while a traced thread waited for
//!   it), get their own runs on the CPU track, named, with their process
//!   when known; the idle task and stretches not recorded are the CPU's
//!   idle task (`swapper/N`, PID 0). Two tasks switching directly on a CPU
//!   are one `sched_switch`.
//! - A traced thread's sleep with a recorded reason gets a
//!   `sched_blocked_reason` event after its switch-out: `caller` is the
//!   kernel function it blocked in (from its kernel stack, with
//!   `--stacks`), or else the system call and wait class; `io_wait` is set
//!   for I/O waits. trace_processor puts them in `thread_state`'s
//!   `blocked_function` and `io_wait` columns; the names are interned
//!   kernel symbols on the ftrace packet sequence.
//! - A thread already running when the window opens is switched in at the
//!   window's start; one still running at the end is left open, as
//!   Perfetto shows a trace that ends mid-slice.
//! - Every wakeup becomes `sched_waking` on the waker's CPU, from the waker
//!   (the event's `pid`), so Perfetto links the wakee's runnable state to
//!   its waker and the UI draws the wakeup arrow. A wakeup raised in an
//!   interrupt, timer or softirq carries the kernel's context flags
//!   (`common_flags`), which Perfetto shows as `irq_context`: its `pid` is
//!   then the task the interrupt came in on, not a waker.
//! - A thread that became runnable after sleeping with no wakeup recorded
//!   (a trace taken with `--no-wakeups`) gets a `sched_waking` from the idle
//!   task of the CPU it runs on next: Perfetto only shows a thread as
//!   runnable after a wakeup event.
//! - A `ProcessTree` packet names the processes (command line, or comm) and
//!   threads; a `SystemInfo` packet carries the kernel release.
//! - Lost events: the bundle that follows a loss on a CPU has `lost_events`
//!   set and `previous_bundle_end_timestamp` filled (Perfetto counts these
//!   in its stats), and an instant on a global track `schedtrace: lost
//!   events` marks where and how many were lost; processes the kernel
//!   could not trace (`lost_processes`) are an instant there at the end.
//! - Inferred runs (their switch-in was not in the kernel's stream; placed
//!   from their switch-out's counters): an instant on a global track
//!   `schedtrace: inferred runs` where each began, so the `sched_switch`
//!   that starts it is known to be schedtrace's.
//!
//! Timestamps are the trace clock (CLOCK_MONOTONIC ns); no clock snapshot is
//! written, so Perfetto uses them as they are.
//!
//! # Encoding
//!
//! Written by hand with the small protobuf writer below (`Pb`): the trace
//! needs a dozen message types and only varint and length-delimited fields,
//! which is less code than a build-time code generator and keeps the build
//! free of `protoc`. Field numbers are those of Perfetto's
//! `protos/perfetto/trace/*.proto`; the tests decode the file back.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use super::{Exporter, Report};
use crate::analysis::antagonists::Holder;
use crate::analysis::summary::Summary;
use crate::analysis::timeline::{SegState, Segment, Timeline};
use crate::analysis::waits::WaitClass;
use crate::event::WakeContext;

/// A protobuf message being built.
#[derive(Default)]
pub(crate) struct Pb(pub Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }

    /// A varint field (uint32/uint64/bool/enum, and non-negative int32/int64).
    pub(crate) fn uint(&mut self, field: u32, v: u64) -> &mut Self {
        self.key(field, 0);
        self.varint(v);
        self
    }

    /// An int32/int64 field (negative values take ten bytes, as protobuf says).
    pub(crate) fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.uint(field, v as u64)
    }

    pub(crate) fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    pub(crate) fn string(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }

    /// A nested message built by `f`.
    pub(crate) fn msg(&mut self, field: u32, f: impl FnOnce(&mut Pb)) -> &mut Self {
        let mut m = Pb::default();
        f(&mut m);
        self.bytes(field, &m.0)
    }
}

/// Field numbers (Perfetto's trace protos).
mod f {
    pub(super) const TRACE_PACKET: u32 = 1;

    pub(super) mod packet {
        pub(crate) const FTRACE_EVENTS: u32 = 1;
        pub(crate) const PROCESS_TREE: u32 = 2;
        pub(crate) const TIMESTAMP: u32 = 8;
        pub(crate) const TRUSTED_PACKET_SEQUENCE_ID: u32 = 10;
        pub(crate) const TRACK_EVENT: u32 = 11;
        pub(crate) const INTERNED_DATA: u32 = 12;
        pub(crate) const SEQUENCE_FLAGS: u32 = 13;
        pub(crate) const SEQ_INCREMENTAL_STATE_CLEARED: u64 = 1;
        pub(crate) const SEQ_NEEDS_INCREMENTAL_STATE: u64 = 2;
        pub(crate) const SYSTEM_INFO: u32 = 45;
        pub(crate) const TRACK_DESCRIPTOR: u32 = 60;
    }
    pub(super) mod bundle {
        pub(crate) const CPU: u32 = 1;
        pub(crate) const EVENT: u32 = 2;
        pub(crate) const LOST_EVENTS: u32 = 3;
        pub(crate) const PREVIOUS_BUNDLE_END_TIMESTAMP: u32 = 10;
    }
    pub(super) mod event {
        pub(crate) const TIMESTAMP: u32 = 1;
        pub(crate) const PID: u32 = 2;
        pub(crate) const SCHED_SWITCH: u32 = 4;
        /// The kernel's trace-entry flags; trace_processor takes a
        /// waking's `irq_context` from their hardirq and softirq bits.
        pub(crate) const COMMON_FLAGS: u32 = 5;
        pub(crate) const SCHED_BLOCKED_REASON: u32 = 18;
        pub(crate) const SCHED_WAKING: u32 = 20;
    }
    pub(super) mod blocked {
        pub(crate) const PID: u32 = 1;
        pub(crate) const CALLER: u32 = 2;
        pub(crate) const IO_WAIT: u32 = 3;
    }
    pub(super) mod interned {
        pub(crate) const KERNEL_SYMBOLS: u32 = 26;
        pub(crate) const IID: u32 = 1;
        pub(crate) const STR: u32 = 2;
    }
    pub(super) mod switch {
        pub(crate) const PREV_COMM: u32 = 1;
        pub(crate) const PREV_PID: u32 = 2;
        pub(crate) const PREV_PRIO: u32 = 3;
        pub(crate) const PREV_STATE: u32 = 4;
        pub(crate) const NEXT_COMM: u32 = 5;
        pub(crate) const NEXT_PID: u32 = 6;
        pub(crate) const NEXT_PRIO: u32 = 7;
    }
    pub(super) mod waking {
        pub(crate) const COMM: u32 = 1;
        pub(crate) const PID: u32 = 2;
        pub(crate) const PRIO: u32 = 3;
        pub(crate) const SUCCESS: u32 = 4;
        pub(crate) const TARGET_CPU: u32 = 5;
    }
    pub(super) mod tree {
        pub(crate) const PROCESSES: u32 = 1;
        pub(crate) const THREADS: u32 = 2;
        pub(crate) const PROCESS_PID: u32 = 1;
        pub(crate) const PROCESS_PPID: u32 = 2;
        pub(crate) const PROCESS_CMDLINE: u32 = 3;
        pub(crate) const THREAD_TID: u32 = 1;
        pub(crate) const THREAD_NAME: u32 = 2;
        pub(crate) const THREAD_TGID: u32 = 3;
    }
    pub(super) mod system_info {
        pub(crate) const UTSNAME: u32 = 1;
        pub(crate) const NUM_CPUS: u32 = 8;
        pub(crate) const SYSNAME: u32 = 1;
        pub(crate) const RELEASE: u32 = 3;
    }
    pub(super) mod track {
        pub(crate) const UUID: u32 = 1;
        pub(crate) const NAME: u32 = 2;
    }
    pub(super) mod track_event {
        pub(crate) const DEBUG_ANNOTATIONS: u32 = 4;
        pub(crate) const TYPE: u32 = 9;
        pub(crate) const TRACK_UUID: u32 = 11;
        pub(crate) const NAME: u32 = 23;
        pub(crate) const TYPE_INSTANT: u64 = 3;
        pub(crate) const ANNOTATION_UINT: u32 = 3;
        pub(crate) const ANNOTATION_NAME: u32 = 10;
    }
}

/// `prev_state` values (the kernel's task state letters as bits).
pub(crate) const STATE_RUNNABLE: u64 = 0;
pub(crate) const STATE_SLEEPING: u64 = 1;
pub(crate) const STATE_BLOCKED: u64 = 2;
pub(crate) const STATE_DEAD: u64 = 0x10;

/// Priority written for every task (schedtrace does not keep priorities
/// in the timeline; 120 is nice 0).
const PRIO: i64 = 120;
/// Events per bundle, at most.
const BUNDLE_EVENTS: usize = 4096;
/// Sequence of the ftrace and process packets, and of the track events.
const FTRACE_SEQ: u64 = 1;
const TRACK_SEQ: u64 = 2;
const LOST_TRACK_UUID: u64 = 0x5c4e_d7ac_e105_7001;
const INFERRED_TRACK_UUID: u64 = 0x5c4e_d7ac_e105_7002;

/// One ftrace event before encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Switch {
        ts: u64,
        prev: u32,
        prev_state: u64,
        next: u32,
    },
    Waking {
        ts: u64,
        waker: u32,
        wakee: u32,
        target_cpu: u32,
        /// The kernel's trace flags for the context (0: a task's).
        flags: u32,
    },
    /// `pid` blocked in interned symbol `caller`.
    Blocked {
        ts: u64,
        pid: u32,
        caller: u64,
        io_wait: bool,
    },
}

/// `TRACE_FLAG_HARDIRQ`, `TRACE_FLAG_SOFTIRQ` and `TRACE_FLAG_NMI` of the
/// kernel's trace entries (include/linux/trace_events.h).
const TRACE_FLAG_HARDIRQ: u32 = 0x08;
const TRACE_FLAG_SOFTIRQ: u32 = 0x10;
const TRACE_FLAG_NMI: u32 = 0x40;

/// The trace flags of a wakeup raised in `c` (a soft timer runs in the
/// `HRTIMER` softirq; an unknown context sets none).
fn context_flags(c: WakeContext) -> u32 {
    match c {
        WakeContext::Task | WakeContext::Unknown => 0,
        WakeContext::Timer { soft: true, .. } | WakeContext::Softirq { .. } => TRACE_FLAG_SOFTIRQ,
        WakeContext::Timer { soft: false, .. } | WakeContext::Hardirq { .. } => TRACE_FLAG_HARDIRQ,
        WakeContext::Nmi => TRACE_FLAG_NMI | TRACE_FLAG_HARDIRQ,
    }
}

impl Ev {
    fn ts(&self) -> u64 {
        match self {
            Ev::Switch { ts, .. } | Ev::Waking { ts, .. } | Ev::Blocked { ts, .. } => *ts,
        }
    }
}

/// Interned names of blocked functions: iid = index + 1.
#[derive(Default)]
struct Symbols {
    names: Vec<String>,
    index: HashMap<String, u64>,
}

impl Symbols {
    fn iid(&mut self, name: &str) -> u64 {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.names.push(name.to_string());
        let i = self.names.len() as u64;
        self.index.insert(name.to_string(), i);
        i
    }
}

/// A run on a CPU track: a traced thread's, or another task's.
#[derive(Clone, Copy, Debug)]
struct Run {
    start: u64,
    end: u64,
    tid: u32,
    /// A traced thread (its switch-out state comes from what it did next).
    traced: bool,
}

/// Every run on each CPU in time order: the traced threads' and the other
/// tasks' (idle and unrecorded stretches are gaps).
fn cpu_runs(tl: &Timeline) -> Vec<Vec<Run>> {
    let lanes = super::exclusive_cpu_lanes(tl);
    let others = super::other_holds(tl);
    let n = lanes.len().max(others.len());
    (0..n)
        .map(|cpu| {
            let mut runs: Vec<Run> = lanes
                .get(cpu)
                .into_iter()
                .flatten()
                .map(|s| Run {
                    start: s.start,
                    end: s.end,
                    tid: s.tid,
                    traced: true,
                })
                .collect();
            runs.extend(
                others
                    .get(cpu)
                    .into_iter()
                    .flatten()
                    .filter_map(|h| match h.holder {
                        Holder::Task(o) if !o.is_idle() => Some(Run {
                            start: h.start,
                            end: h.end,
                            tid: o.tid,
                            traced: false,
                        }),
                        _ => None,
                    }),
            );
            runs.sort_by_key(|r| r.start);
            runs
        })
        .collect()
}

fn prev_state_of(next: Option<SegState>) -> u64 {
    match next {
        Some(SegState::Runnable) | Some(SegState::Running { .. }) => STATE_RUNNABLE,
        Some(SegState::Sleeping) => STATE_SLEEPING,
        Some(SegState::Blocked) => STATE_BLOCKED,
        None => STATE_DEAD,
    }
}

/// The per-CPU event lists, each in time order, with the interned names
/// of the blocked functions they refer to.
fn cpu_events(s: &Summary, tl: &Timeline, syms: &mut Symbols) -> BTreeMap<u32, Vec<Ev>> {
    let mut per_cpu = switch_events(s, tl, syms);
    let runs = running_cpus(tl);
    waking_events(tl, &runs, &mut per_cpu);
    unrecorded_wakings(tl, &runs, &mut per_cpu);
    for evs in per_cpu.values_mut() {
        // Stable: at equal times a wakeup stays after the switch before it.
        evs.sort_by_key(Ev::ts);
    }
    per_cpu
}

/// Each CPU's switches, in its runs' order, each switch out of a traced
/// thread followed by why it blocked.
fn switch_events(s: &Summary, tl: &Timeline, syms: &mut Symbols) -> BTreeMap<u32, Vec<Ev>> {
    // What each thread did after each segment: the segment starting there.
    let next_seg: HashMap<(u32, u64), &Segment> =
        tl.segments.iter().map(|s| ((s.tid, s.start), s)).collect();
    let next_state = |r: &Run| -> u64 {
        if r.traced {
            prev_state_of(next_seg.get(&(r.tid, r.end)).map(|s| s.state))
        } else {
            STATE_RUNNABLE
        }
    };
    let mut per_cpu: BTreeMap<u32, Vec<Ev>> = BTreeMap::new();
    for (cpu, lane) in cpu_runs(tl).iter().enumerate() {
        let evs = per_cpu.entry(cpu as u32).or_default();
        // The switch out of `p` (to `next`), then why it blocked.
        let mut leave = |evs: &mut Vec<Ev>, p: &Run, next: u32| {
            evs.push(Ev::Switch {
                ts: p.end,
                prev: p.tid,
                prev_state: next_state(p),
                next,
            });
            if p.traced
                && let Some(b) = blocked(s, next_seg.get(&(p.tid, p.end)).copied(), syms)
            {
                evs.push(b);
            }
        };
        let mut open: Option<Run> = None;
        for run in lane {
            match open {
                Some(p) if p.end == run.start => leave(evs, &p, run.tid),
                _ => {
                    if let Some(p) = open {
                        leave(evs, &p, 0);
                    }
                    evs.push(Ev::Switch {
                        ts: run.start,
                        prev: 0,
                        prev_state: STATE_RUNNABLE,
                        next: run.tid,
                    });
                }
            }
            open = Some(*run);
        }
        if let Some(p) = open
            && p.end < tl.end_ns
        {
            leave(evs, &p, 0);
        }
    }
    per_cpu
}

/// Each thread's runs in the timeline as (start, CPU), in the segments'
/// order.
fn running_cpus(tl: &Timeline) -> HashMap<u32, Vec<(u64, u32)>> {
    // The CPU each wakee runs on next (its target CPU).
    let mut runs: HashMap<u32, Vec<(u64, u32)>> = HashMap::new();
    for s in &tl.segments {
        if let SegState::Running { cpu } = s.state {
            runs.entry(s.tid).or_default().push((s.start, cpu));
        }
    }
    runs
}

/// A waking event for each recorded wakeup, on the waker's CPU, aimed at
/// the CPU the wakee runs on next.
fn waking_events(
    tl: &Timeline,
    runs: &HashMap<u32, Vec<(u64, u32)>>,
    per_cpu: &mut BTreeMap<u32, Vec<Ev>>,
) {
    for w in &tl.wakeups {
        let target_cpu = runs
            .get(&w.wakee_tid)
            .and_then(|r| r.iter().find(|(start, _)| *start >= w.ts))
            .map_or(w.cpu, |&(_, c)| c);
        per_cpu.entry(w.cpu).or_default().push(Ev::Waking {
            ts: w.ts,
            waker: w.waker_tid,
            wakee: w.wakee_tid,
            target_cpu,
            flags: context_flags(w.context),
        });
    }
}

/// A waking event from the idle task for each thread runnable after a
/// sleep with no wakeup recorded, on the CPU it runs on next.
fn unrecorded_wakings(
    tl: &Timeline,
    runs: &HashMap<u32, Vec<(u64, u32)>>,
    per_cpu: &mut BTreeMap<u32, Vec<Ev>>,
) {
    // Runnable after sleep with no wakeup recorded: from the idle task.
    let woken: std::collections::HashSet<(u32, u64)> =
        tl.wakeups.iter().map(|w| (w.wakee_tid, w.ts)).collect();
    let ended: HashMap<(u32, u64), SegState> = tl
        .segments
        .iter()
        .map(|s| ((s.tid, s.end), s.state))
        .collect();
    for s in &tl.segments {
        let slept = matches!(
            ended.get(&(s.tid, s.start)),
            Some(SegState::Sleeping | SegState::Blocked)
        );
        if s.state == SegState::Runnable && slept && !woken.contains(&(s.tid, s.start)) {
            let target_cpu = runs
                .get(&s.tid)
                .and_then(|r| r.iter().find(|(start, _)| *start >= s.start))
                .map_or(0, |&(_, c)| c);
            per_cpu.entry(target_cpu).or_default().push(Ev::Waking {
                ts: s.start,
                waker: 0,
                wakee: s.tid,
                target_cpu,
                flags: 0,
            });
        }
    }
}

/// The `sched_blocked_reason` of a sleep, if it has a reason.
fn blocked(s: &Summary, sleep: Option<&Segment>, syms: &mut Symbols) -> Option<Ev> {
    let seg = sleep.filter(|x| matches!(x.state, SegState::Sleeping | SegState::Blocked))?;
    let key = seg.wait?;
    let name = match super::blocked_function(s, seg.kernel_stack) {
        Some(f) => f.to_string(),
        None => key.describe(),
    };
    Some(Ev::Blocked {
        ts: seg.start,
        pid: seg.tid,
        caller: syms.iid(&name),
        io_wait: key.class == WaitClass::Io,
    })
}

/// Write the trace.
pub(crate) fn write_trace(s: &Summary, tl: &Timeline, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut out = Packets(out);
    let mut syms = Symbols::default();
    let events = cpu_events(s, tl, &mut syms);
    system_info(&mut out, s, &syms)?;
    process_tree(&mut out, s, tl)?;
    ftrace_bundles(&mut out, tl, events)?;
    loss_track(&mut out, s, tl)?;
    inferred_track(&mut out, s, tl)?;
    Ok(())
}

/// A mark where each run whose switch-in the kernel's stream lacked began
/// (placed from its switch-out's counters): the sched_switch that starts
/// it in the CPU track is schedtrace's, not the kernel's.
fn inferred_track(out: &mut Packets<'_>, s: &Summary, tl: &Timeline) -> std::io::Result<()> {
    let runs: Vec<&Segment> = tl.segments.iter().filter(|g| g.inferred).collect();
    if runs.is_empty() {
        return Ok(());
    }
    out.packet(&|p| {
        p.uint(f::packet::TRUSTED_PACKET_SEQUENCE_ID, TRACK_SEQ);
        p.msg(f::packet::TRACK_DESCRIPTOR, |t| {
            t.uint(f::track::UUID, INFERRED_TRACK_UUID);
            t.string(f::track::NAME, "schedtrace: inferred runs");
        });
    })?;
    for g in runs {
        let SegState::Running { cpu } = g.state else {
            continue;
        };
        let comm = s.thread(g.tid).map_or("?", |t| t.comm.as_str());
        let name = format!("inferred run: {comm} {} on CPU {cpu}", g.tid);
        let notes = [
            ("tid", u64::from(g.tid)),
            ("cpu", u64::from(cpu)),
            ("ns", g.end - g.start),
        ];
        instant(out, INFERRED_TRACK_UUID, g.start, &name, &notes)?;
    }
    Ok(())
}

/// Writes `TracePacket`s, each framed as a field of the `Trace` message.
struct Packets<'a>(&'a mut dyn Write);

impl Packets<'_> {
    fn packet(&mut self, f: &dyn Fn(&mut Pb)) -> std::io::Result<()> {
        let mut p = Pb::default();
        f(&mut p);
        let mut framed = Pb::default();
        framed.bytes(f::TRACE_PACKET, &p.0);
        self.0.write_all(&framed.0)
    }
}

/// The kernel and the CPU count; the first packet of the ftrace sequence,
/// which also starts its interned data with the blocked functions' names.
fn system_info(out: &mut Packets<'_>, s: &Summary, syms: &Symbols) -> std::io::Result<()> {
    out.packet(&|p| {
        p.uint(f::packet::TRUSTED_PACKET_SEQUENCE_ID, FTRACE_SEQ);
        p.uint(
            f::packet::SEQUENCE_FLAGS,
            f::packet::SEQ_INCREMENTAL_STATE_CLEARED,
        );
        if !syms.names.is_empty() {
            p.msg(f::packet::INTERNED_DATA, |d| {
                for (i, n) in syms.names.iter().enumerate() {
                    d.msg(f::interned::KERNEL_SYMBOLS, |k| {
                        k.uint(f::interned::IID, i as u64 + 1);
                        k.string(f::interned::STR, n);
                    });
                }
            });
        }
        p.msg(f::packet::SYSTEM_INFO, |si| {
            si.msg(f::system_info::UTSNAME, |u| {
                u.string(f::system_info::SYSNAME, "Linux");
                if !s.kernel_release.is_empty() {
                    u.string(f::system_info::RELEASE, &s.kernel_release);
                }
            });
            si.uint(f::system_info::NUM_CPUS, s.ncpus as u64);
        });
    })
}

/// Process tree: every process with threads in the timeline.
fn process_tree(out: &mut Packets<'_>, s: &Summary, tl: &Timeline) -> std::io::Result<()> {
    let mut procs: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    // Tasks of other processes on the CPU tracks, named (by their process
    // when the trace knows it).
    let mut others: BTreeMap<u32, (String, u32)> = BTreeMap::new();
    for h in &tl.holds {
        if let Holder::Task(o) = h.holder
            && !o.is_idle()
        {
            others.insert(o.tid, (o.comm.to_string(), o.tgid));
            if o.tgid != 0 && o.tgid != s.target_pid {
                procs.entry(o.tgid).or_default();
            }
        }
    }
    for (&tid, (comm, tgid)) in &others {
        let cmd = procs.entry(*tgid).or_default();
        if *tgid != 0
            && (cmd.is_empty() || tid == *tgid)
            && !tl.threads.iter().any(|t| t.tgid == *tgid)
        {
            *cmd = vec![comm.clone()];
        }
    }
    procs.remove(&0);
    for t in &tl.threads {
        let cmd = procs.entry(t.tgid).or_default();
        if t.tgid == s.target_pid
            && let Some(c) = &s.command
            && !c.is_empty()
        {
            *cmd = c.clone();
        } else if cmd.is_empty() || t.tid == t.tgid {
            *cmd = vec![if t.tgid == s.target_pid && t.tid != t.tgid {
                s.target_comm.clone()
            } else {
                t.comm.clone()
            }];
        }
    }
    out.packet(&|p| {
        p.uint(f::packet::TIMESTAMP, tl.start_ns);
        p.uint(f::packet::TRUSTED_PACKET_SEQUENCE_ID, FTRACE_SEQ);
        p.msg(f::packet::PROCESS_TREE, |pt| {
            for (&pid, cmdline) in &procs {
                pt.msg(f::tree::PROCESSES, |m| {
                    m.int(f::tree::PROCESS_PID, pid as i64);
                    m.int(f::tree::PROCESS_PPID, 0);
                    for a in cmdline {
                        m.string(f::tree::PROCESS_CMDLINE, a);
                    }
                });
            }
            for t in &tl.threads {
                pt.msg(f::tree::THREADS, |m| {
                    m.int(f::tree::THREAD_TID, t.tid as i64);
                    m.string(f::tree::THREAD_NAME, &t.comm);
                    m.int(f::tree::THREAD_TGID, t.tgid as i64);
                });
            }
            for (&tid, (comm, tgid)) in &others {
                if tl.threads.iter().any(|t| t.tid == tid) {
                    continue;
                }
                pt.msg(f::tree::THREADS, |m| {
                    m.int(f::tree::THREAD_TID, tid as i64);
                    m.string(f::tree::THREAD_NAME, comm);
                    if *tgid != 0 {
                        m.int(f::tree::THREAD_TGID, *tgid as i64);
                    }
                });
            }
        });
    })
}

/// Ftrace bundles: per CPU, cut at BUNDLE_EVENTS and at every loss.
fn ftrace_bundles(
    out: &mut Packets<'_>,
    tl: &Timeline,
    events: BTreeMap<u32, Vec<Ev>>,
) -> std::io::Result<()> {
    let mut comm: HashMap<u32, String> = HashMap::new();
    for h in &tl.holds {
        if let Holder::Task(o) = h.holder {
            comm.insert(o.tid, o.comm.to_string());
        }
    }
    for t in &tl.threads {
        comm.insert(t.tid, t.comm.clone());
    }
    let name_of = |tid: u32, cpu: u32| -> String {
        if tid == 0 {
            format!("swapper/{cpu}")
        } else {
            comm.get(&tid).map_or_else(String::new, |c| c.to_string())
        }
    };
    let mut losses: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for &(ts, cpu, _) in &tl.lost {
        losses.entry(cpu).or_default().push(ts);
    }
    for (cpu, evs) in events {
        let lost_at = losses.remove(&cpu).unwrap_or_default();
        let mut li = 0;
        let mut i = 0;
        let mut prev_end: Option<u64> = None;
        while i < evs.len() {
            // A loss before this chunk's first event flags the chunk.
            let mut lost = false;
            while li < lost_at.len() && lost_at[li] <= evs[i].ts() {
                lost = true;
                li += 1;
            }
            let mut j = i;
            while j < evs.len()
                && j - i < BUNDLE_EVENTS
                && (li >= lost_at.len() || evs[j].ts() < lost_at[li])
            {
                j += 1;
            }
            let chunk = &evs[i..j.max(i + 1)];
            out.packet(&|p| {
                p.uint(f::packet::TRUSTED_PACKET_SEQUENCE_ID, FTRACE_SEQ);
                p.uint(
                    f::packet::SEQUENCE_FLAGS,
                    f::packet::SEQ_NEEDS_INCREMENTAL_STATE,
                );
                p.msg(f::packet::FTRACE_EVENTS, |b| {
                    b.uint(f::bundle::CPU, cpu as u64);
                    for e in chunk {
                        b.msg(f::bundle::EVENT, |fe| encode_event(fe, e, cpu, &name_of));
                    }
                    if lost {
                        b.uint(f::bundle::LOST_EVENTS, 1);
                    }
                    if let Some(t) = prev_end {
                        b.uint(f::bundle::PREVIOUS_BUNDLE_END_TIMESTAMP, t);
                    }
                });
            })?;
            prev_end = chunk.last().map(Ev::ts);
            i = j.max(i + 1);
        }
        if li < lost_at.len() {
            lost_bundle(out, cpu, prev_end)?;
        }
    }
    for cpu in losses.into_keys() {
        lost_bundle(out, cpu, None)?;
    }
    Ok(())
}

/// Loss marks on their own track: where and how many events each CPU
/// lost, and at the end, how many processes the kernel could not trace.
fn loss_track(out: &mut Packets<'_>, s: &Summary, tl: &Timeline) -> std::io::Result<()> {
    if tl.lost.is_empty() && s.lost_processes == 0 {
        return Ok(());
    }
    out.packet(&|p| {
        p.uint(f::packet::TRUSTED_PACKET_SEQUENCE_ID, TRACK_SEQ);
        p.uint(f::packet::SEQUENCE_FLAGS, 1); // incremental state cleared
        p.msg(f::packet::TRACK_DESCRIPTOR, |t| {
            t.uint(f::track::UUID, LOST_TRACK_UUID);
            t.string(f::track::NAME, "schedtrace: lost events");
        });
    })?;
    for &(ts, cpu, count) in &tl.lost {
        let name = format!("{count} events lost on CPU {cpu}");
        instant(
            out,
            LOST_TRACK_UUID,
            ts,
            &name,
            &[("cpu", cpu as u64), ("count", count)],
        )?;
    }
    if s.lost_processes > 0 {
        // The end record has only their number, not when they were refused.
        let n = s.lost_processes;
        let name = format!(
            "{n} process{} not traced: the kernel's map of traced processes was full",
            if n == 1 { "" } else { "es" }
        );
        instant(out, LOST_TRACK_UUID, tl.end_ns, &name, &[("processes", n)])?;
    }
    Ok(())
}

/// An instant at `ts` on the global track `track`, with integer annotations.
fn instant(
    out: &mut Packets<'_>,
    track: u64,
    ts: u64,
    name: &str,
    annotations: &[(&str, u64)],
) -> std::io::Result<()> {
    out.packet(&|p| {
        p.uint(f::packet::TIMESTAMP, ts);
        p.uint(f::packet::TRUSTED_PACKET_SEQUENCE_ID, TRACK_SEQ);
        p.msg(f::packet::TRACK_EVENT, |te| {
            te.uint(f::track_event::TYPE, f::track_event::TYPE_INSTANT);
            te.uint(f::track_event::TRACK_UUID, track);
            te.string(f::track_event::NAME, name);
            for &(k, v) in annotations {
                te.msg(f::track_event::DEBUG_ANNOTATIONS, |a| {
                    a.string(f::track_event::ANNOTATION_NAME, k);
                    a.uint(f::track_event::ANNOTATION_UINT, v);
                });
            }
        });
    })
}

/// An empty bundle that only says events were lost on `cpu` (after its last event).
fn lost_bundle(out: &mut Packets<'_>, cpu: u32, prev_end: Option<u64>) -> std::io::Result<()> {
    out.packet(&|p| {
        p.uint(f::packet::TRUSTED_PACKET_SEQUENCE_ID, FTRACE_SEQ);
        p.msg(f::packet::FTRACE_EVENTS, |b| {
            b.uint(f::bundle::CPU, cpu as u64);
            b.uint(f::bundle::LOST_EVENTS, 1);
            if let Some(t) = prev_end {
                b.uint(f::bundle::PREVIOUS_BUNDLE_END_TIMESTAMP, t);
            }
        });
    })
}

fn encode_event(fe: &mut Pb, e: &Ev, cpu: u32, name_of: &dyn Fn(u32, u32) -> String) {
    match *e {
        Ev::Switch {
            ts,
            prev,
            prev_state,
            next,
        } => {
            fe.uint(f::event::TIMESTAMP, ts);
            fe.uint(f::event::PID, prev as u64);
            fe.msg(f::event::SCHED_SWITCH, |m| {
                m.string(f::switch::PREV_COMM, &name_of(prev, cpu));
                m.int(f::switch::PREV_PID, prev as i64);
                m.int(f::switch::PREV_PRIO, PRIO);
                m.int(f::switch::PREV_STATE, prev_state as i64);
                m.string(f::switch::NEXT_COMM, &name_of(next, cpu));
                m.int(f::switch::NEXT_PID, next as i64);
                m.int(f::switch::NEXT_PRIO, PRIO);
            });
        }
        Ev::Waking {
            ts,
            waker,
            wakee,
            target_cpu,
            flags,
        } => {
            fe.uint(f::event::TIMESTAMP, ts);
            fe.uint(f::event::PID, waker as u64);
            if flags != 0 {
                fe.uint(f::event::COMMON_FLAGS, flags.into());
            }
            fe.msg(f::event::SCHED_WAKING, |m| {
                m.string(f::waking::COMM, &name_of(wakee, cpu));
                m.int(f::waking::PID, wakee as i64);
                m.int(f::waking::PRIO, PRIO);
                m.int(f::waking::SUCCESS, 1);
                m.int(f::waking::TARGET_CPU, target_cpu as i64);
            });
        }
        Ev::Blocked {
            ts,
            pid,
            caller,
            io_wait,
        } => {
            fe.uint(f::event::TIMESTAMP, ts);
            fe.uint(f::event::PID, pid as u64);
            fe.msg(f::event::SCHED_BLOCKED_REASON, |m| {
                m.int(f::blocked::PID, pid as i64);
                m.uint(f::blocked::CALLER, caller);
                m.uint(f::blocked::IO_WAIT, io_wait as u64);
            });
        }
    }
}

pub struct Perfetto;

impl Exporter for Perfetto {
    fn needs_timeline(&self) -> bool {
        true
    }

    fn write(&self, report: &Report<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
        let Some(tl) = report.timeline else {
            anyhow::bail!("the Perfetto trace needs the analysis to keep a timeline");
        };
        write_trace(report.summary, tl, out)
    }
}

#[cfg(test)]
mod tests;
