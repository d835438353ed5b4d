//! The typed events the rest of the crate works with, and their conversion
//! from the kernel's fixed-size [`RawEvent`] records. Raw records are turned
//! into [`Event`]s once, at the boundary, and nowhere else.

use std::fmt;

use schedtrace_common::{
    COMM_LEN, FLAG_CTX_DETAIL, FLAG_CTX_FUNCTION, FLAG_NEXT_COUNTERS, FLAG_NO_SCHED_INFO,
    FLAG_PREEMPT, FLAG_PREV_COUNTERS, FLAG_RUN_DELAY, FLAG_WAKEE_QUEUED, FLAG_WAKEE_RUN_DELAY,
    FLAG_WAKER_PROCESS, RawEvent, WAKER_PROCESS_BYTES, ctx, kind,
};

/// A task name as the kernel keeps it: at most 15 bytes, NUL-padded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Comm([u8; COMM_LEN]);

impl Comm {
    pub fn new(s: &str) -> Self {
        Self::from_prefix(s.as_bytes())
    }
    /// The name `s`, cut to the kernel's `COMM_LEN - 1` bytes.
    pub fn from_prefix(s: &[u8]) -> Self {
        let mut b = [0u8; COMM_LEN];
        let n = s.len().min(COMM_LEN - 1);
        b[..n].copy_from_slice(&s[..n]);
        Comm(b)
    }
    pub fn from_bytes(b: [u8; COMM_LEN]) -> Self {
        Comm(b)
    }
    /// The kernel's 16 bytes, NUL-padded.
    pub fn as_bytes(&self) -> &[u8; COMM_LEN] {
        &self.0
    }
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        let end = self.0.iter().position(|&c| c == 0).unwrap_or(COMM_LEN);
        String::from_utf8_lossy(&self.0[..end])
    }
    pub fn is_empty(&self) -> bool {
        self.0[0] == 0
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Bytes of a [`Symbol`].
pub(crate) const SYMBOL_LEN: usize = 32;

/// A name from the kernel that is not a task's: a timer callback (from
/// `/proc/kallsyms`) or a device interrupt's handler (from
/// `/proc/interrupts`). At most 32 bytes, NUL-padded (longer names are cut).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Symbol([u8; SYMBOL_LEN]);

impl Symbol {
    pub fn new(s: &str) -> Self {
        let mut b = [0u8; SYMBOL_LEN];
        let mut n = s.len().min(SYMBOL_LEN);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        b[..n].copy_from_slice(&s.as_bytes()[..n]);
        Symbol(b)
    }
    pub fn from_bytes(b: [u8; SYMBOL_LEN]) -> Self {
        Symbol(b)
    }
    pub fn as_bytes(&self) -> &[u8; SYMBOL_LEN] {
        &self.0
    }
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        let end = self.0.iter().position(|&c| c == 0).unwrap_or(SYMBOL_LEN);
        String::from_utf8_lossy(&self.0[..end])
    }
    pub fn is_empty(&self) -> bool {
        self.0[0] == 0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// A task as seen in one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Task {
    pub tid: u32,
    pub tgid: u32,
    pub comm: Comm,
    pub prio: i32,
}

/// Why a task left the CPU, decoded from `prev_state` and the preempt flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SwitchReason {
    /// Preempted or yielded while still runnable (involuntary).
    Preempted,
    /// Interruptible sleep (S), including idle waits and stops (voluntary).
    Sleeping,
    /// Uninterruptible sleep (D), usually I/O (voluntary).
    Blocked,
    /// The task's last switch: it is dead.
    Dead,
}

// Bits of `task_struct::__state` (include/linux/sched.h).
const TASK_INTERRUPTIBLE: u64 = 0x1;
const TASK_UNINTERRUPTIBLE: u64 = 0x2;
const TASK_DEAD: u64 = 0x80;
const TASK_NOLOAD: u64 = 0x400;
const EXIT_DEAD: u64 = 0x10;
const EXIT_ZOMBIE: u64 = 0x20;

impl SwitchReason {
    /// Decode the raw state of the outgoing task. A preemption, or a switch
    /// away from a task whose state is still `TASK_RUNNING` (0), is
    /// involuntary: that is how the kernel splits `nivcsw` from `nvcsw`.
    pub fn decode(raw_state: u64, preempt: bool) -> Self {
        if preempt || raw_state == 0 {
            SwitchReason::Preempted
        } else if raw_state & (TASK_DEAD | EXIT_DEAD | EXIT_ZOMBIE) != 0 {
            SwitchReason::Dead
        } else if raw_state & TASK_UNINTERRUPTIBLE != 0 && raw_state & TASK_NOLOAD == 0 {
            SwitchReason::Blocked
        } else {
            let _ = TASK_INTERRUPTIBLE;
            SwitchReason::Sleeping
        }
    }

    pub fn is_voluntary(self) -> bool {
        matches!(self, SwitchReason::Sleeping | SwitchReason::Blocked)
    }

    /// One-letter code in the style of `ps` and `perf sched`.
    pub fn letter(self) -> &'static str {
        match self {
            SwitchReason::Preempted => "R",
            SwitchReason::Sleeping => "S",
            SwitchReason::Blocked => "D",
            SwitchReason::Dead => "X",
        }
    }
}

/// The run-queue wait of a task being switched in, from the kernel's own
/// accounting (`struct sched_info`), recorded when wakeups are not traced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelWait {
    /// `run_delay` once the switch is done: all the time the task has spent
    /// waiting on a run queue since it was created, this wait included (the
    /// second field of `/proc/<pid>/task/<tid>/schedstat`).
    pub run_delay_ns: u64,
    /// The part of it since the task was last queued (saturated at
    /// `u32::MAX` ns). Less than the whole wait when the task was moved to
    /// another run queue while it waited.
    pub queued_ns: u64,
}

/// What a traced thread was doing when it left its CPU, recorded at its
/// switch-out: the system call it was in and, with `--stacks`, where in its
/// code and in the kernel it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OffCpu {
    /// The system call it was in (the architecture's number, read from the
    /// task's saved registers); `None` outside one: preempted in its own
    /// code, or blocked in a page fault.
    pub syscall: Option<u32>,
    /// The kernel counted the sleep as I/O wait (`in_iowait`).
    pub iowait: bool,
    /// Its kernel and user stacks, by id in the trace's stack table
    /// ([`crate::trace::Stack`]).
    pub kernel_stack: Option<u32>,
    pub user_stack: Option<u32>,
    /// With `--stacks`: a stack of this sleep was walked but the kernel
    /// side's stack map could not hold it (full, or every id it may take
    /// held another stack). Counted as `lost_stacks` in the summary.
    pub stack_lost: bool,
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `prev` left the CPU, `next` got it.
    Switch {
        prev: Task,
        next: Task,
        prev_state: u64,
        preempt: bool,
        /// `next`'s run-queue wait, when the trace has it (a traced
        /// `next`, on a kernel with `sched_info`).
        next_wait: Option<KernelWait>,
        /// The kernel's own counters of whichever task is traced.
        counters: SwitchCounters,
        /// What `prev` (a traced thread) was doing, when the trace has it.
        prev_off: Option<OffCpu>,
    },
    /// `waker` made `wakee` runnable. `new` for a task's first wakeup.
    Wakeup {
        /// The task running when the wakeup was raised: the waker only
        /// when `context` is [`WakeContext::Task`]; otherwise the task the
        /// interrupt came in on (an idle CPU's is TID 0).
        waker: Task,
        wakee: Task,
        /// The CPU the wakee last ran on.
        wakee_cpu: u32,
        /// The wakee's `sched_info.run_delay` as the wakeup found it: its
        /// run-queue waits before the one this wakeup starts (see
        /// `schedtrace_common::FLAG_WAKEE_RUN_DELAY`).
        wakee_run_delay_ns: Option<u64>,
        /// The kernel was already counting a run-queue wait for the wakee,
        /// asleep until now: its next switch-in's `run_delay` counts time
        /// it slept as waiting (see `schedtrace_common::FLAG_WAKEE_QUEUED`).
        wakee_queued: bool,
        new: bool,
        /// What raised it: a task, or an interrupt, timer or softirq.
        context: WakeContext,
        /// A waker task outside the traced processes: its process's name
        /// (the thread group leader's; its PID is `waker.tgid`).
        waker_process: Option<Comm>,
    },
    /// The scheduler moved `task` between run queues.
    Migrate { task: Task, from: u32, to: u32 },
    /// `parent` created `child` (a thread when the TGIDs match).
    Fork { parent: Task, child: Task },
    /// `task` exec'd; `old_tid` differs from `task.tid` when a non-leader thread exec'd.
    Exec { task: Task, old_tid: u32 },
    /// `task` called exit; it switches out one last time afterwards.
    Exit {
        task: Task,
        /// The kernel's `sched_info.run_delay` of the exiting task: all its
        /// run-queue waits (`None` in traces that lack it).
        run_delay_ns: Option<u64>,
    },
    /// `task` entered the traced cgroup (`--cgroup`): its process, not
    /// traced before, is traced from now on.
    Join { task: Task },
}

impl EventKind {
    /// The record type's name: the JSON Lines `type` and the Parquet
    /// events table's `kind`.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::Switch { .. } => "switch",
            EventKind::Wakeup { new: false, .. } => "wakeup",
            EventKind::Wakeup { new: true, .. } => "wakeup_new",
            EventKind::Migrate { .. } => "migrate",
            EventKind::Fork { .. } => "fork",
            EventKind::Exec { .. } => "exec",
            EventKind::Exit { .. } => "exit",
            EventKind::Join { .. } => "join",
        }
    }
}

/// One scheduler event of the traced processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts: u64,
    /// CPU the event was recorded on.
    pub cpu: u32,
    pub kind: EventKind,
}

impl Event {
    pub fn switch_reason(&self) -> Option<SwitchReason> {
        match self.kind {
            EventKind::Switch {
                prev_state,
                preempt,
                ..
            } => Some(SwitchReason::decode(prev_state, preempt)),
            _ => None,
        }
    }
}

/// The outgoing target's kernel counters at a switch (see
/// `schedtrace_common::RawEvent`): what the scheduler has accounted up to the
/// end of the run ending now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrevCounters {
    /// `se.sum_exec_runtime`: on-CPU ns (steal excluded) since the task was
    /// created, this run included (the first field of
    /// `/proc/<pid>/task/<tid>/schedstat`).
    pub runtime_ns: u64,
    /// The run ending now on the run-queue clock, from its switch-in
    /// (traced or not) to now, steal included; `None` without `sched_info`
    /// or when saturated (a run of 4.29 s or more).
    pub run_clock_ns: Option<u64>,
    /// `sched_info.pcount`: switch-ins so far, this run's included (the
    /// third field of schedstat); `None` without `sched_info`.
    pub pcount: Option<u32>,
    /// `nvcsw` / `nivcsw` (low 32 bits), this switch included.
    pub nvcsw: u32,
    pub nivcsw: u32,
}

/// The incoming target's kernel counters at a switch (its run-queue wait
/// is the event's `next_wait`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextCounters {
    /// `se.sum_exec_runtime` at the start of the run beginning now.
    pub runtime_ns: u64,
    /// `sched_info.pcount` once the switch is done (this switch-in
    /// included, unless the kernel counted none; see `schedtrace_common`).
    pub pcount: Option<u32>,
}

/// The kernel counters a switch record carries, for whichever of its two
/// tasks is traced (none in a trace written before schedtrace recorded them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SwitchCounters {
    pub prev: Option<PrevCounters>,
    pub next: Option<NextCounters>,
}

impl SwitchCounters {
    /// The counters of a switch record (`None` for other kinds).
    pub(crate) fn of(r: &RawEvent) -> Option<Self> {
        if r.kind != kind::SWITCH {
            return None;
        }
        let info = r.flags & FLAG_NO_SCHED_INFO == 0;
        let prev = (r.flags & FLAG_PREV_COUNTERS != 0).then(|| PrevCounters {
            runtime_ns: r.prev_runtime,
            run_clock_ns: (info && r.prev_run_clock != u32::MAX)
                .then_some(u64::from(r.prev_run_clock)),
            pcount: info.then_some(r.prev_pcount),
            nvcsw: r.prev_nvcsw,
            nivcsw: r.prev_nivcsw,
        });
        let next = (r.flags & FLAG_NEXT_COUNTERS != 0).then(|| NextCounters {
            runtime_ns: r.next_runtime,
            pcount: info.then_some(r.next_pcount),
        });
        Some(SwitchCounters { prev, next })
    }

    /// `next`'s run-queue wait in a switch record: with `--no-wakeups`
    /// (`FLAG_RUN_DELAY`), or with its counters on a kernel with `sched_info`.
    fn next_wait(r: &RawEvent) -> Option<KernelWait> {
        let counted = r.flags & FLAG_NEXT_COUNTERS != 0 && r.flags & FLAG_NO_SCHED_INFO == 0;
        (r.flags & FLAG_RUN_DELAY != 0 || counted).then(|| KernelWait {
            run_delay_ns: u64::from(r.aux0) | u64::from(r.aux1) << 32,
            queued_ns: r.state >> 32,
        })
    }
}

/// The context a wakeup was raised in (`sched_waking`). Only in task
/// context is the running task the waker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum WakeContext {
    /// A task woke it (also every wakeup of a trace that did not record
    /// contexts: schedtrace before 0.2, or a trace converted from one).
    #[default]
    Task,
    /// An hrtimer callback, in a hard interrupt or (`soft`) in the
    /// `HRTIMER` softirq. `hrtimer_wakeup` ends `nanosleep`,
    /// `clock_nanosleep`, and the timeouts of `epoll_wait`, `poll`,
    /// `select` and futex waits.
    Timer {
        function: Option<Symbol>,
        soft: bool,
    },
    /// A softirq (also when `ksoftirqd` runs it): its vector when known
    /// (`TIMER` = 1, `NET_RX` = 3, `SCHED` = 7, `RCU` = 9, ...).
    Softirq {
        vector: Option<u32>,
    },
    /// A hard interrupt: a device's (its IRQ number, and the handler's
    /// name from `/proc/interrupts`), or an IPI or irq_work (neither).
    Hardirq {
        irq: Option<u32>,
        name: Option<Symbol>,
    },
    Nmi,
    /// Not recorded (the kernel side could not tell).
    Unknown,
}

/// The names of the softirq vectors (`softirq_to_name` in the kernel).
const SOFTIRQ_NAMES: [&str; 10] = [
    "HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU",
];

impl WakeContext {
    /// The context of a `sched_waking` record, names not resolved yet
    /// (`None` for other kinds). The timer callback's address is
    /// [`hrtimer_address`]'s.
    pub(crate) fn of(r: &RawEvent) -> Option<Self> {
        if r.kind != kind::WAKING {
            return None;
        }
        let detail = (r.flags & FLAG_CTX_DETAIL != 0).then_some(r.aux1);
        Some(match (r.flags & ctx::MASK) >> ctx::SHIFT {
            ctx::TASK => WakeContext::Task,
            ctx::SOFTIRQ => WakeContext::Softirq { vector: detail },
            ctx::HARDIRQ => WakeContext::Hardirq {
                irq: detail,
                name: None,
            },
            ctx::NMI => WakeContext::Nmi,
            // A soft timer's record names the HRTIMER softirq it ran in.
            ctx::HRTIMER => WakeContext::Timer {
                function: None,
                soft: detail.is_some(),
            },
            _ => WakeContext::Unknown,
        })
    }

    /// Is the running task the waker?
    pub fn is_task(self) -> bool {
        self == WakeContext::Task
    }

    /// `task`, `timer`, `softirq`, `hardirq`, `nmi` or `unknown`.
    pub fn kind_name(self) -> &'static str {
        match self {
            WakeContext::Task => "task",
            WakeContext::Timer { .. } => "timer",
            WakeContext::Softirq { .. } => "softirq",
            WakeContext::Hardirq { .. } => "hardirq",
            WakeContext::Nmi => "nmi",
            WakeContext::Unknown => "unknown",
        }
    }

    /// The name of a softirq vector, if it is one the kernel has.
    pub fn softirq_name(vector: u32) -> Option<&'static str> {
        SOFTIRQ_NAMES.get(vector as usize).copied()
    }

    /// For people: `timer hrtimer_wakeup`, `softirq NET_RX`, `irq 24
    /// (virtio0-input.0)`, `hardirq`, `nmi`, `unknown context`; `None` for
    /// a task (name the task instead).
    pub fn label(self) -> Option<String> {
        Some(match self {
            WakeContext::Task => return None,
            WakeContext::Timer { function, .. } => match function {
                Some(f) => format!("timer {f}"),
                None => "timer".into(),
            },
            WakeContext::Softirq { vector } => match vector {
                Some(v) => match Self::softirq_name(v) {
                    Some(n) => format!("softirq {n}"),
                    None => format!("softirq {v}"),
                },
                None => "softirq".into(),
            },
            WakeContext::Hardirq { irq, name } => match (irq, name) {
                (Some(i), Some(n)) => format!("irq {i} ({n})"),
                (Some(i), None) => format!("irq {i}"),
                _ => "hardirq".into(),
            },
            WakeContext::Nmi => "nmi".into(),
            WakeContext::Unknown => "unknown context".into(),
        })
    }
}

/// The address of the hrtimer callback a waking record names, if any.
pub(crate) fn hrtimer_address(r: &RawEvent) -> Option<u64> {
    (r.kind == kind::WAKING
        && (r.flags & ctx::MASK) >> ctx::SHIFT == ctx::HRTIMER
        && r.flags & FLAG_CTX_FUNCTION != 0)
        .then_some(r.prev_runtime)
}

/// The waker's process name a waking record carries, if any.
fn waker_process(r: &RawEvent) -> Option<Comm> {
    if r.kind != kind::WAKING && r.kind != kind::WAKEUP_NEW || r.flags & FLAG_WAKER_PROCESS == 0 {
        return None;
    }
    // SAFETY: RawEvent is plain old data; the range is inside it (checked
    // against the field offsets at compile time in schedtrace_common).
    let bytes = unsafe {
        std::slice::from_raw_parts(std::ptr::from_ref(r).cast::<u8>(), size_of::<RawEvent>())
    };
    let mut b = [0u8; COMM_LEN];
    b.copy_from_slice(&bytes[WAKER_PROCESS_BYTES]);
    Some(Comm(b))
}

/// A raw record that cannot be turned into an [`Event`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes, expected {1}")]
    Size(usize, usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u16),
}

fn prev(r: &RawEvent) -> Task {
    Task {
        tid: r.prev_tid,
        tgid: r.prev_tgid,
        comm: Comm(r.prev_comm),
        prio: r.prev_prio,
    }
}

fn next(r: &RawEvent) -> Task {
    Task {
        tid: r.next_tid,
        tgid: r.next_tgid,
        comm: Comm(r.next_comm),
        prio: r.next_prio,
    }
}

/// What the outgoing target of a switch was doing, from the record's
/// `prev_off` bits (`schedtrace_common::off`).
fn prev_off(r: &RawEvent) -> Option<OffCpu> {
    use schedtrace_common::off;
    let bits = r.prev_off;
    if bits & off::VALID == 0 {
        return None;
    }
    Some(OffCpu {
        syscall: (bits & off::SYSCALL != 0).then_some(r.prev_syscall),
        iowait: bits & off::IOWAIT != 0,
        kernel_stack: (bits & off::KERNEL_STACK != 0).then_some(r.prev_kernel_stack),
        user_stack: (bits & off::USER_STACK != 0).then_some(r.prev_user_stack),
        stack_lost: bits & off::STACK_LOST != 0,
    })
}

impl TryFrom<&RawEvent> for Event {
    type Error = DecodeError;

    fn try_from(r: &RawEvent) -> Result<Self, Self::Error> {
        let kind = match r.kind {
            kind::SWITCH => EventKind::Switch {
                prev: prev(r),
                next: next(r),
                prev_state: r.state & 0xffff_ffff,
                preempt: r.flags & FLAG_PREEMPT != 0,
                next_wait: SwitchCounters::next_wait(r),
                counters: SwitchCounters::of(r).unwrap_or_default(),
                prev_off: prev_off(r),
            },
            kind::WAKING | kind::WAKEUP_NEW => EventKind::Wakeup {
                waker: prev(r),
                wakee: next(r),
                wakee_cpu: r.aux0,
                wakee_run_delay_ns: (r.flags & FLAG_WAKEE_RUN_DELAY != 0).then_some(r.state),
                wakee_queued: r.flags & FLAG_WAKEE_QUEUED != 0,
                new: r.kind == kind::WAKEUP_NEW,
                context: WakeContext::of(r).unwrap_or_default(),
                waker_process: waker_process(r),
            },
            kind::MIGRATE => EventKind::Migrate {
                task: next(r),
                from: r.aux0,
                to: r.aux1,
            },
            kind::FORK => EventKind::Fork {
                parent: prev(r),
                child: next(r),
            },
            kind::EXEC => EventKind::Exec {
                task: next(r),
                old_tid: r.aux0,
            },
            kind::EXIT => EventKind::Exit {
                task: prev(r),
                run_delay_ns: (r.flags & FLAG_WAKEE_RUN_DELAY != 0).then_some(r.state),
            },
            kind::JOIN => EventKind::Join { task: next(r) },
            other => return Err(DecodeError::UnknownKind(other)),
        };
        Ok(Event {
            ts: r.ts_ns,
            cpu: r.cpu,
            kind,
        })
    }
}

impl TryFrom<&[u8]> for Event {
    type Error = DecodeError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        let want = size_of::<RawEvent>();
        if bytes.len() < want {
            return Err(DecodeError::Size(bytes.len(), want));
        }
        // SAFETY: RawEvent is plain old data of `want` bytes; read_unaligned
        // copes with any alignment of the ring-buffer slice.
        let raw = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<RawEvent>()) };
        Event::try_from(&raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_switch_and_reason() {
        let mut r = RawEvent::ZERO;
        r.kind = kind::SWITCH;
        r.ts_ns = 42;
        r.cpu = 1;
        r.prev_tid = 10;
        r.prev_tgid = 10;
        r.prev_comm[..4].copy_from_slice(b"node");
        r.next_tid = 11;
        r.state = TASK_UNINTERRUPTIBLE;
        let e = Event::try_from(&r).unwrap();
        assert_eq!(e.ts, 42);
        assert_eq!(e.switch_reason(), Some(SwitchReason::Blocked));
        match e.kind {
            EventKind::Switch {
                prev,
                next,
                next_wait,
                ..
            } => {
                assert_eq!(prev.comm.as_str(), "node");
                assert_eq!(next.tid, 11);
                assert_eq!(next_wait, None);
            }
            _ => panic!("not a switch"),
        }
    }

    #[test]
    fn decodes_an_exit_with_and_without_its_run_delay() {
        let mut r = RawEvent::ZERO;
        r.kind = kind::EXIT;
        r.prev_tid = 42;
        r.state = 5_000_000_000;
        let run_delay = |r: &RawEvent| match Event::try_from(r).unwrap().kind {
            EventKind::Exit { task, run_delay_ns } => {
                assert_eq!(task.tid, 42);
                run_delay_ns
            }
            k => panic!("not an exit: {k:?}"),
        };
        assert_eq!(run_delay(&r), None, "no flag: a kernel without sched_info");
        r.flags = FLAG_WAKEE_RUN_DELAY;
        assert_eq!(run_delay(&r), Some(5_000_000_000));
    }

    #[test]
    fn decodes_the_kernel_wait_apart_from_the_state() {
        let mut r = RawEvent::ZERO;
        r.kind = kind::SWITCH;
        r.flags = FLAG_RUN_DELAY;
        // A preempted task (state 0) and a wait of 7 µs, 5 s of run delay in all.
        r.state = 7_000 << 32;
        let total: u64 = 5_000_000_000;
        r.aux0 = total as u32;
        r.aux1 = (total >> 32) as u32;
        let e = Event::try_from(&r).unwrap();
        assert_eq!(e.switch_reason(), Some(SwitchReason::Preempted));
        let EventKind::Switch { next_wait, .. } = e.kind else {
            panic!("not a switch")
        };
        assert_eq!(
            next_wait,
            Some(KernelWait {
                run_delay_ns: total,
                queued_ns: 7_000
            })
        );
    }

    #[test]
    fn decodes_the_kernel_counters_of_both_tasks() {
        let mut r = RawEvent::ZERO;
        r.kind = kind::SWITCH;
        r.flags = FLAG_PREV_COUNTERS | FLAG_NEXT_COUNTERS;
        r.prev_runtime = 7_000_000_123;
        r.prev_run_clock = 40_000;
        r.prev_pcount = 12;
        r.prev_nvcsw = 9;
        r.prev_nivcsw = 3;
        r.next_runtime = 5_000;
        r.next_pcount = 2;
        r.state = 300 << 32 | 1;
        let total: u64 = 6_000_000_000;
        r.aux0 = total as u32;
        r.aux1 = (total >> 32) as u32;
        let c = SwitchCounters::of(&r).unwrap();
        assert_eq!(
            c.prev,
            Some(PrevCounters {
                runtime_ns: 7_000_000_123,
                run_clock_ns: Some(40_000),
                pcount: Some(12),
                nvcsw: 9,
                nivcsw: 3
            })
        );
        assert_eq!(
            c.next,
            Some(NextCounters {
                runtime_ns: 5_000,
                pcount: Some(2),
            })
        );
        // The wait comes with the counters, in both capture modes.
        let EventKind::Switch {
            next_wait,
            counters,
            ..
        } = Event::try_from(&r).unwrap().kind
        else {
            panic!("not a switch")
        };
        assert_eq!(counters, c);
        assert_eq!(
            next_wait,
            Some(KernelWait {
                run_delay_ns: total,
                queued_ns: 300
            })
        );
        // Without sched_info only the runtimes and switch counts are there;
        // a saturated run clock is no figure.
        r.flags = FLAG_PREV_COUNTERS | FLAG_NEXT_COUNTERS | FLAG_NO_SCHED_INFO;
        let c = SwitchCounters::of(&r).unwrap();
        assert_eq!(c.next.unwrap().pcount, None);
        let EventKind::Switch { next_wait, .. } = Event::try_from(&r).unwrap().kind else {
            panic!("not a switch")
        };
        assert_eq!(next_wait, None);
        let p = c.prev.unwrap();
        assert_eq!((p.pcount, p.run_clock_ns, p.nvcsw), (None, None, 9));
        r.flags = FLAG_PREV_COUNTERS;
        r.prev_run_clock = u32::MAX;
        assert_eq!(
            SwitchCounters::of(&r).unwrap().prev.unwrap().run_clock_ns,
            None
        );
        r.kind = kind::WAKING;
        assert_eq!(SwitchCounters::of(&r), None);
    }

    #[test]
    fn decodes_the_wakeup_context() {
        let mut r = RawEvent::ZERO;
        r.kind = kind::WAKING;
        assert_eq!(WakeContext::of(&r), Some(WakeContext::Task));
        assert!(WakeContext::of(&r).unwrap().is_task());
        r.flags = ctx::HRTIMER << ctx::SHIFT | FLAG_CTX_FUNCTION;
        r.prev_runtime = 0xffff_ffff_8123_4560;
        let hard = WakeContext::Timer {
            function: None,
            soft: false,
        };
        assert_eq!(WakeContext::of(&r), Some(hard));
        assert_eq!(hrtimer_address(&r), Some(0xffff_ffff_8123_4560));
        // A soft timer's record names the softirq it ran in (HRTIMER, 8).
        r.flags |= FLAG_CTX_DETAIL;
        r.aux1 = 8;
        assert_eq!(
            WakeContext::of(&r),
            Some(WakeContext::Timer {
                function: None,
                soft: true
            })
        );
        r.flags = ctx::SOFTIRQ << ctx::SHIFT | FLAG_CTX_DETAIL;
        r.aux1 = 1;
        let timer_softirq = WakeContext::Softirq { vector: Some(1) };
        assert_eq!(WakeContext::of(&r), Some(timer_softirq));
        assert_eq!(hrtimer_address(&r), None);
        assert_eq!(timer_softirq.label().as_deref(), Some("softirq TIMER"));
        r.flags = ctx::HARDIRQ << ctx::SHIFT;
        assert_eq!(
            WakeContext::of(&r),
            Some(WakeContext::Hardirq {
                irq: None,
                name: None
            })
        );
        r.flags = ctx::UNKNOWN << ctx::SHIFT;
        assert!(!WakeContext::of(&r).unwrap().is_task());
        r.kind = kind::SWITCH;
        assert_eq!(WakeContext::of(&r), None);
        // The event carries the context (a new task's wakeup is a task's).
        r.kind = kind::WAKEUP_NEW;
        r.flags = 0;
        let EventKind::Wakeup { context, .. } = Event::try_from(&r).unwrap().kind else {
            panic!("not a wakeup")
        };
        assert_eq!(context, WakeContext::Task);
    }

    #[test]
    fn decodes_the_process_of_a_waker_outside_the_target() {
        let mut r = RawEvent::ZERO;
        r.kind = kind::WAKING;
        r.prev_tid = 31_810;
        r.prev_tgid = 31_809;
        let name = *b"client-proc\0\0\0\0\0";
        r.next_runtime = u64::from_le_bytes(name[..8].try_into().unwrap());
        r.prev_run_clock = u32::from_le_bytes(name[8..12].try_into().unwrap());
        r.prev_pcount = u32::from_le_bytes(name[12..].try_into().unwrap());
        let process = |r: &RawEvent| match Event::try_from(r).unwrap().kind {
            EventKind::Wakeup {
                waker,
                waker_process,
                ..
            } => (waker.tgid, waker_process.map(|c| c.to_string())),
            _ => panic!("not a wakeup"),
        };
        // Only with the flag: the bytes mean something else otherwise.
        assert_eq!(process(&r), (31_809, None));
        r.flags = FLAG_WAKER_PROCESS;
        assert_eq!(process(&r), (31_809, Some("client-proc".to_string())));
    }

    #[test]
    fn labels_name_the_context_for_people() {
        let sym = |s| Some(Symbol::new(s));
        let cases = [
            (WakeContext::Task, None),
            (
                WakeContext::Timer {
                    function: sym("hrtimer_wakeup"),
                    soft: false,
                },
                Some("timer hrtimer_wakeup"),
            ),
            (
                WakeContext::Timer {
                    function: None,
                    soft: true,
                },
                Some("timer"),
            ),
            (
                WakeContext::Softirq { vector: Some(42) },
                Some("softirq 42"),
            ),
            (
                WakeContext::Hardirq {
                    irq: Some(24),
                    name: sym("virtio0-input.0"),
                },
                Some("irq 24 (virtio0-input.0)"),
            ),
            (
                WakeContext::Hardirq {
                    irq: None,
                    name: None,
                },
                Some("hardirq"),
            ),
            (WakeContext::Nmi, Some("nmi")),
            (WakeContext::Unknown, Some("unknown context")),
        ];
        for (c, want) in cases {
            assert_eq!(c.label().as_deref(), want, "{c:?}");
        }
        // Names are cut at 32 bytes, on a character boundary.
        let long = "é".repeat(20);
        assert_eq!(Symbol::new(&long).as_str(), "é".repeat(16));
    }

    #[test]
    fn decodes_why_a_target_left_the_cpu() {
        use schedtrace_common::off;
        let mut r = RawEvent::ZERO;
        r.kind = kind::SWITCH;
        r.state = 1;
        let off_of = |r: &RawEvent| match Event::try_from(r).unwrap().kind {
            EventKind::Switch { prev_off, .. } => prev_off,
            _ => panic!("not a switch"),
        };
        // Not a target's switch-out: nothing recorded.
        r.prev_syscall = 232;
        assert_eq!(off_of(&r), None);
        // In epoll_wait (232), I/O wait, both stacks.
        r.prev_off = off::VALID | off::SYSCALL | off::IOWAIT | off::KERNEL_STACK | off::USER_STACK;
        r.prev_kernel_stack = 0;
        r.prev_user_stack = 9;
        assert_eq!(
            off_of(&r),
            Some(OffCpu {
                syscall: Some(232),
                iowait: true,
                kernel_stack: Some(0),
                user_stack: Some(9),
                stack_lost: false,
            })
        );
        // Outside a system call (a page fault), its stacks lost: the
        // fields the bits do not vouch for are ignored.
        r.prev_off = off::VALID | off::STACK_LOST;
        assert_eq!(
            off_of(&r),
            Some(OffCpu {
                stack_lost: true,
                ..OffCpu::default()
            })
        );
    }

    #[test]
    fn reason_rules_match_the_kernel_split() {
        assert_eq!(SwitchReason::decode(0, false), SwitchReason::Preempted);
        assert_eq!(SwitchReason::decode(1, true), SwitchReason::Preempted);
        assert_eq!(SwitchReason::decode(1, false), SwitchReason::Sleeping);
        assert_eq!(SwitchReason::decode(0x402, false), SwitchReason::Sleeping);
        assert_eq!(SwitchReason::decode(2, false), SwitchReason::Blocked);
        assert_eq!(SwitchReason::decode(0x80, false), SwitchReason::Dead);
        assert!(!SwitchReason::Preempted.is_voluntary());
        assert!(SwitchReason::Blocked.is_voluntary());
    }

    #[test]
    fn rejects_unknown_kind_and_short_records() {
        let mut r = RawEvent::ZERO;
        r.kind = 99;
        assert_eq!(Event::try_from(&r), Err(DecodeError::UnknownKind(99)));
        assert_eq!(
            Event::try_from(&[0u8; 3][..]),
            Err(DecodeError::Size(3, size_of::<RawEvent>()))
        );
    }

    #[test]
    fn comm_round_trips_and_truncates() {
        assert_eq!(Comm::new("libuv-worker").as_str(), "libuv-worker");
        assert_eq!(Comm::new("a-very-long-thread-name").as_str().len(), 15);
    }
}
