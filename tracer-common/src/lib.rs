//! The wire format between the kernel program (`schedtrace-ebpf`) and the
//! userspace loader (`schedtrace`): the fixed-size record written to the ring
//! buffer, the event kinds, and the configuration globals the loader sets
//! before the program is loaded.
//!
//! Rules for everything here: `#[repr(C)]`, `Copy`, no `bool`, no implicit
//! padding (every struct's size is asserted at compile time), and `aya::Pod`
//! only behind the `user` feature so that the eBPF side stays dependency-free.
#![no_std]

/// Length of a kernel task name (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// What a [`RawEvent`] records. Stored in [`RawEvent::kind`].
pub mod kind {
    /// `sched_switch`: `prev_*` left the CPU, `next_*` got it.
    /// `state` is the outgoing task's `__state`, `flags` has [`super::FLAG_PREEMPT`].
    /// With [`super::FLAG_RUN_DELAY`], `aux0`/`aux1` are the low/high halves
    /// of the incoming target's `sched_info.run_delay` as it stands once this
    /// switch is done, and the high 32 bits of `state` are the part of it
    /// that the wait ending now adds (see [`super::FLAG_RUN_DELAY`]).
    pub const SWITCH: u16 = 1;
    /// `sched_waking`: `prev_*` (the running task) wakes `next_*`;
    /// `aux0` is the CPU the wakee last ran on.
    pub const WAKING: u16 = 2;
    /// `sched_wakeup_new`: `next_*` was just created and made runnable by `prev_*`.
    pub const WAKEUP_NEW: u16 = 3;
    /// `sched_migrate_task`: `next_*` moves from CPU `aux0` to CPU `aux1`.
    pub const MIGRATE: u16 = 4;
    /// `sched_process_fork`: `prev_*` (parent) created `next_*` (a thread when
    /// the TGIDs are equal, a process otherwise).
    pub const FORK: u16 = 5;
    /// `sched_process_exec`: `next_*` exec'd; `next_comm` is the new name,
    /// `aux0` the PID it had before exec.
    pub const EXEC: u16 = 6;
    /// `sched_process_exit`: `prev_*` is exiting (it still switches out once more).
    pub const EXIT: u16 = 7;
}

/// `flags` bit: the switch was a preemption (`preempt` argument of the tracepoint).
pub const FLAG_PREEMPT: u16 = 1;
/// `flags` bit: the program found the target process through the
/// follow-children map rather than the primary target TGID.
pub const FLAG_CHILD: u16 = 2;
/// `flags` bit of a switch: the record carries the incoming task's run-queue
/// wait from the kernel's own accounting (`sched_info`, the second field of
/// `/proc/<pid>/task/<tid>/schedstat`): `run_delay` in `aux0`/`aux1` (its
/// cumulative wait, this one included) and, in the high half of `state`, the
/// time since it was last queued (saturated at `u32::MAX` ns). Set when the
/// loader arms [`names::RUN_DELAY`], which it does when wakeups are not traced.
pub const FLAG_RUN_DELAY: u16 = 4;

/// One ring-buffer record. The meaning of `prev_*`, `next_*`, `aux*` depends
/// on `kind` (see [`kind`]). Fields that a kind does not use are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Outgoing task's raw `__state` for switches.
    pub state: u64,
    pub kind: u16,
    pub flags: u16,
    /// CPU the program ran on.
    pub cpu: u32,
    pub aux0: u32,
    pub aux1: u32,
    pub prev_tid: u32,
    pub prev_tgid: u32,
    pub next_tid: u32,
    pub next_tgid: u32,
    pub prev_prio: i32,
    pub next_prio: i32,
    pub prev_comm: [u8; COMM_LEN],
    pub next_comm: [u8; COMM_LEN],
}

const _: () = assert!(size_of::<RawEvent>() == 88);
const _: () = assert!(align_of::<RawEvent>() == 8);

impl RawEvent {
    /// An all-zero record (what the kernel side starts from).
    pub const ZERO: RawEvent = RawEvent {
        ts_ns: 0,
        state: 0,
        kind: 0,
        flags: 0,
        cpu: 0,
        aux0: 0,
        aux1: 0,
        prev_tid: 0,
        prev_tgid: 0,
        next_tid: 0,
        next_tgid: 0,
        prev_prio: 0,
        next_prio: 0,
        prev_comm: [0; COMM_LEN],
        next_comm: [0; COMM_LEN],
    };
}

/// Records a CPU collects in its [`Stage`] before writing them to the ring
/// buffer as one record.
pub const STAGE_EVENTS: usize = 16;
/// A stage holding records older than this is written out at the next
/// program run on its CPU (the timer tick at the latest on a busy CPU; a CPU
/// going idle writes its stage out at once).
pub const STAGE_MAX_AGE_NS: u64 = 2_000_000;

/// Per-CPU staging area of the kernel side: records wait here and go to the
/// ring buffer [`STAGE_EVENTS`] at a time, which costs one ring-buffer
/// reservation per batch instead of one per record. The loader reads what is
/// left in every CPU's stage after detaching the programs.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Stage {
    /// Records waiting in `events[..len]`.
    pub len: u32,
    /// Nonzero while a program on this CPU is changing the stage; a program
    /// that interrupts it (from an interrupt) writes its record directly.
    pub busy: u32,
    /// Timestamp of `events[0]`.
    pub first_ts: u64,
    pub events: [RawEvent; STAGE_EVENTS],
}

const _: () = assert!(size_of::<Stage>() == 16 + 88 * STAGE_EVENTS);

/// Byte offsets of the kernel fields the program reads, from the running
/// kernel's BTF, handed to the program by the loader as a global (aya-ebpf
/// has no CO-RE relocations). All are in `struct task_struct` unless noted.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOffsets {
    pub pid: u32,
    pub tgid: u32,
    pub prio: u32,
    pub comm: u32,
    /// `task_cpu()`: `thread_info.cpu` or `cpu`, whichever this kernel has.
    pub cpu: u32,
    /// `sched_info.run_delay`: cumulative ns spent waiting on a run queue.
    pub run_delay: u32,
    /// `sched_info.last_queued`: run-queue clock when it was last queued
    /// (0 when it is not waiting).
    pub last_queued: u32,
    /// `se.cfs_rq`: the CFS run queue the task is on.
    pub cfs_rq: u32,
    /// In `struct cfs_rq`: `rq`, the CPU's run queue it belongs to.
    pub cfs_rq_rq: u32,
    /// In `struct rq`: `clock`, the run-queue clock `sched_info` uses.
    pub rq_clock: u32,
    /// `signal`: the process's `signal_struct`, shared by its threads.
    pub signal: u32,
    /// In `struct signal_struct`: `pids[PIDTYPE_TGID]`, the process's PID
    /// structure (NULL once the process has been released).
    pub signal_pids_tgid: u32,
    /// In `struct pid`: `ino`, its pidfs inode number, unique while the
    /// system runs (0 when this kernel has none: no identity check).
    pub pid_ino: u32,
}

const _: () = assert!(size_of::<TaskOffsets>() == 52);

/// Names of the maps and globals, shared so neither side spells them twice.
pub mod names {
    pub const EVENTS: &str = "EVENTS";
    pub const LOST: &str = "LOST";
    pub const STAGE: &str = "STAGE";
    pub const CHILDREN: &str = "CHILDREN";
    pub const TARGET_TGID: &str = "TARGET_TGID";
    pub const TARGET_INO: &str = "TARGET_INO";
    pub const FOLLOW_CHILDREN: &str = "FOLLOW_CHILDREN";
    pub const OFFSETS: &str = "OFFSETS";
    pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";
    pub const RUN_DELAY: &str = "RUN_DELAY";
}

/// Index of the counters in the per-CPU `LOST` array.
pub mod counter {
    /// Ring-buffer reservations that failed (the event is lost).
    pub const LOST_EVENTS: u32 = 0;
    /// Children that could not be added to the follow map (it was full).
    pub const LOST_CHILDREN: u32 = 1;
    pub const COUNT: u32 = 2;
}

/// Default ring-buffer size (bytes, a power of two multiple of the page size).
pub const DEFAULT_RING_BYTES: u32 = 16 << 20;
/// Maximum processes followed with `--follow-children` at once (userspace
/// removes the entries of processes that have ended).
pub const MAX_CHILDREN: u32 = 4096;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `repr(C)`, `Copy`, made of integers, with no padding (the
    // size assertions above pin that down); the same for the two below.
    unsafe impl aya::Pod for super::RawEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TaskOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Stage {}
}
