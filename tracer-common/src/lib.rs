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
    /// With [`super::FLAG_PREV_COUNTERS`] / [`super::FLAG_NEXT_COUNTERS`],
    /// the `prev_*` / `next_*` kernel counters are filled (see [`super::RawEvent`]).
    pub const SWITCH: u16 = 1;
    /// `sched_waking`: `prev_*` (the running task) wakes `next_*`;
    /// `aux0` is the CPU the wakee last ran on. The context the wakeup was
    /// raised in is in `flags` ([`super::ctx`]); `aux1` and `prev_runtime`
    /// name the interrupt or timer where [`super::ctx`] says so. `prev_*`
    /// is the task that was running, which is the waker only in task context.
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
    /// Not an event: CPU `cpu` has written every record it took a timestamp
    /// of up to `ts_ns` (its stage included) to the ring buffer before this
    /// one. Written by the `progress_mark` program, which userspace runs on
    /// each CPU (see [`super::names::PROGRESS_MARK`]).
    pub const MARK: u16 = 8;
    /// `cgroup_attach_task`, or `sched_process_fork` of a process created
    /// straight into a cgroup: `next_*` (a thread of a process that was not
    /// traced) entered the traced cgroup, and its process is traced from
    /// now on (see [`super::CgroupFilter`]).
    pub const JOIN: u16 = 9;
    /// `--kernel-sums`: CPU `cpu`'s switch at `ts_ns` changed which traced
    /// process it runs: `aux0` is the TGID of the task that ran until then
    /// (`prev`) if it was traced, else 0; `aux1` the same of the task that
    /// runs now (`next_tid`). Written at each such change, and at the
    /// CPU's first switch that involves a traced thread (which says what
    /// ran since the trace began: `prev` had the CPU from before it).
    pub const OCCUPY: u16 = 10;
}

/// `flags` bit: the switch was a preemption (`preempt` argument of the tracepoint).
pub const FLAG_PREEMPT: u16 = 1;
/// `flags` bit: the program found the target process through the map of
/// further targets (followed children, further `--pid`s) rather than the
/// first target's TGID.
pub const FLAG_CHILD: u16 = 2;
/// `flags` bit of a switch: the record carries the incoming task's run-queue
/// wait from the kernel's own accounting (`sched_info`, the second field of
/// `/proc/<pid>/task/<tid>/schedstat`): `run_delay` in `aux0`/`aux1` (its
/// cumulative wait, this one included) and, in the high half of `state`, the
/// time since it was last queued (saturated at `u32::MAX` ns). Set when the
/// loader arms [`names::RUN_DELAY`], which it does when wakeups are not traced.
pub const FLAG_RUN_DELAY: u16 = 4;
/// `flags` bit of a switch: `prev_runtime`, `prev_run_clock`, `prev_pcount`,
/// `prev_nvcsw` and `prev_nivcsw` hold the outgoing target's counters.
pub const FLAG_PREV_COUNTERS: u16 = 8;
/// `flags` bit of a switch: `next_runtime` and `next_pcount` hold the
/// incoming target's counters (and `aux0`/`aux1` its run delay, as with
/// [`FLAG_RUN_DELAY`], whether or not that flag is set).
pub const FLAG_NEXT_COUNTERS: u16 = 16;
/// `flags` bit: the kernel lacks `sched_info` or the run-queue clock path
/// (`CONFIG_SCHED_INFO`, `CONFIG_FAIR_GROUP_SCHED`), so the counters taken
/// from them (`*_pcount`, `prev_run_clock`, the run delay) are zero; the
/// others (`*_runtime`, `prev_nv*csw`) are valid.
pub const FLAG_NO_SCHED_INFO: u16 = 32;

/// The context a wakeup (`kind::WAKING`) was raised in: bits
/// [`ctx::SHIFT`].. of `flags` (see [`names::WAKE_CONTEXT`] for how the
/// program tells).
pub mod ctx {
    pub const SHIFT: u16 = 6;
    pub const MASK: u16 = 0b111 << SHIFT;
    /// A task woke it (`prev_*` is the waker).
    pub const TASK: u16 = 0;
    /// In a softirq (also when run by `ksoftirqd`); `aux1` is the softirq
    /// vector when [`super::FLAG_CTX_DETAIL`] is set.
    pub const SOFTIRQ: u16 = 1;
    /// In a hard interrupt: `aux1` is the IRQ number when
    /// [`super::FLAG_CTX_DETAIL`] is set (a device interrupt's handler).
    pub const HARDIRQ: u16 = 2;
    /// In an NMI.
    pub const NMI: u16 = 3;
    /// An hrtimer callback, in hard or soft interrupt context:
    /// `prev_runtime` is the callback's address ([`super::FLAG_CTX_FUNCTION`];
    /// e.g. `hrtimer_wakeup`, which wakes `nanosleep`, `clock_nanosleep`,
    /// `epoll_wait`/`poll`/`select` and futex timeouts).
    pub const HRTIMER: u16 = 4;
    /// Not recorded (the loader could not arm either method).
    pub const UNKNOWN: u16 = 7;
}
/// `flags` bit of a waking: `aux1` holds the softirq vector or IRQ number.
pub const FLAG_CTX_DETAIL: u16 = 1 << 9;
/// `flags` bit of a waking: `prev_runtime` holds the address of the
/// hrtimer callback that raised it.
pub const FLAG_CTX_FUNCTION: u16 = 1 << 10;

/// `flags` bit of a waking, with [`wake_context::PREEMPT_COUNT`]: the
/// per-CPU [`IrqState`] alone would have told another context kind than
/// `preempt_count` (a check of the cheaper method).
pub const FLAG_CTX_MISMATCH: u16 = 1 << 11;

/// `flags` bit of a waking in task context whose waker is outside the
/// traced processes: the 16 bytes of `next_runtime`, `prev_run_clock` and
/// `prev_pcount` (in that order, as they lie in memory) hold the name of
/// the waker's process (its thread group leader's `comm`).
pub const FLAG_WAKER_PROCESS: u16 = 1 << 12;

/// `flags` bit: the record went straight to the ring buffer, not through
/// its CPU's stage (a program interrupted one that held the stage). A
/// ring-buffer record whose last record lacks this flag is a stage written
/// out: its CPU had written every record it took a timestamp of up to that
/// last record's `ts_ns` (programs take the timestamp only once they hold
/// the stage, see [`Stage::busy`]).
pub const FLAG_DIRECT: u16 = 1 << 13;

/// `flags` bit of a waking or a wakeup of a new task: `state` holds the
/// wakee's `sched_info.run_delay` as the wakeup found it, its run-queue
/// waits so far. Of an exit: the exiting task's, all its waits (it runs). The wait this wakeup starts adds to it; a part of that
/// wait the kernel banks at a migration is in the next switch-in's
/// `run_delay` but not in the time it last queued, so a thread first
/// seen here is known to have waited from this figure on.
pub const FLAG_WAKEE_RUN_DELAY: u16 = 1 << 14;

/// `flags` bit of a waking: the kernel was already counting a run-queue
/// wait for the wakee (`sched_info.last_queued` was set) though it was
/// asleep. The kernel's wait at its next switch-in then began before this
/// wakeup, and `run_delay` counts as waiting time it slept (a sleeping task
/// whose dequeue the fair class delayed is queued again, in `sched_info`'s
/// accounting, when the load balancer moves it to another CPU).
pub const FLAG_WAKEE_QUEUED: u16 = 1 << 15;

/// The byte range of [`RawEvent`] that holds the waker's process name
/// with [`FLAG_WAKER_PROCESS`]: from `next_runtime` to the end of
/// `prev_pcount`.
pub const WAKER_PROCESS_BYTES: core::ops::Range<usize> = 96..112;

/// How `sched_waking` tells the context (the [`names::WAKE_CONTEXT`] global).
pub mod wake_context {
    /// Not at all: every waking is [`super::ctx::UNKNOWN`].
    pub const OFF: u32 = 0;
    /// From the per-CPU [`super::IrqState`] that programs on the interrupt
    /// entry/exit tracepoints keep: no cost per wakeup, two short program
    /// runs per interrupt.
    pub const IRQ_STATE: u32 = 1;
    /// From the CPU's `preempt_count` (exact for every context, a probe
    /// read per wakeup), with the details from [`super::IrqState`].
    pub const PREEMPT_COUNT: u32 = 2;
}

/// One ring-buffer record. The meaning of `prev_*`, `next_*`, `aux*` depends
/// on `kind` (see [`kind`]). Fields that a kind does not use are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Outgoing task's raw `__state` for switches; the wakee's run delay
    /// for wakeups ([`FLAG_WAKEE_RUN_DELAY`]).
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
    /// Switch ([`FLAG_PREV_COUNTERS`]): `prev`'s `se.sum_exec_runtime`,
    /// which the scheduler brought up to date before the tracepoint: the
    /// task's on-CPU ns (steal excluded) up to the end of the run ending
    /// now. Waking in an hrtimer callback: the callback's address.
    pub prev_runtime: u64,
    /// Switch ([`FLAG_NEXT_COUNTERS`]): `next`'s `se.sum_exec_runtime` at
    /// the start of the run beginning now.
    pub next_runtime: u64,
    /// Switch: the run ending now on the run-queue clock, steal included:
    /// from `prev`'s `sched_info.last_arrival` (the clock when its last
    /// switch-in, traced or not, was accounted) to the scheduler's last
    /// accounting of the run (`rq->clock`, less the `clock_task` that
    /// passed since `se.exec_start`, if the pick read the clock again).
    /// Minus the run's growth of `prev_runtime` it is the steal (and, with
    /// `CONFIG_IRQ_TIME_ACCOUNTING`, IRQ time) in the run. Saturated at
    /// `u32::MAX` ns.
    pub prev_run_clock: u32,
    /// Switch: `prev`'s `sched_info.pcount`, its switch-ins so far (this
    /// run's included).
    pub prev_pcount: u32,
    /// Switch: `prev`'s `nvcsw` and `nivcsw` (low 32 bits), this switch included.
    pub prev_nvcsw: u32,
    pub prev_nivcsw: u32,
    /// Switch: `next`'s `sched_info.pcount` as it stands once the switch is
    /// done (the kernel adds this switch-in just after the tracepoint).
    pub next_pcount: u32,
    pub _reserved: u32,
    /// Switch: why the outgoing target left the CPU ([`off`] bits); 0 when
    /// `prev` is not a target or nothing was recorded.
    pub prev_off: u32,
    /// Switch with [`off::SYSCALL`]: the system call `prev` was in (the
    /// architecture's number, `orig_ax` of its saved user registers).
    pub prev_syscall: u32,
    /// Switch with [`off::KERNEL_STACK`] / [`off::USER_STACK`]: `prev`'s
    /// stacks by id in the `STACKS` map.
    pub prev_kernel_stack: u32,
    pub prev_user_stack: u32,
}

const _: () = assert!(size_of::<RawEvent>() == 144);
const _: () = assert!(core::mem::offset_of!(RawEvent, next_runtime) == WAKER_PROCESS_BYTES.start);
const _: () = assert!(core::mem::offset_of!(RawEvent, prev_nvcsw) == WAKER_PROCESS_BYTES.end);
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
        prev_runtime: 0,
        next_runtime: 0,
        prev_run_clock: 0,
        prev_pcount: 0,
        prev_nvcsw: 0,
        prev_nivcsw: 0,
        next_pcount: 0,
        _reserved: 0,
        prev_off: 0,
        prev_syscall: 0,
        prev_kernel_stack: 0,
        prev_user_stack: 0,
    };
}

/// Bits of [`RawEvent::prev_off`]: what the outgoing target of a switch
/// was doing (issue 16's wait reasons and off-CPU stacks).
pub mod off {
    /// The fields below were read (the switch's `prev` is a target).
    pub const VALID: u32 = 1;
    /// It was in a system call ([`super::RawEvent::prev_syscall`]).
    pub const SYSCALL: u32 = 2;
    /// The kernel counted the sleep as I/O wait (`in_iowait`).
    pub const IOWAIT: u32 = 4;
    /// [`super::RawEvent::prev_kernel_stack`] holds a stack id.
    pub const KERNEL_STACK: u32 = 8;
    /// [`super::RawEvent::prev_user_stack`] holds a stack id.
    pub const USER_STACK: u32 = 16;
    /// A stack was asked for and the map could not hold it (full, or a
    /// hash collision with another stack).
    pub const STACK_LOST: u32 = 32;
    /// Neither side is a target: a task that held a CPU on which a target
    /// thread was waiting to run (who ran instead).
    pub const FOREIGN: u32 = 64;
}

/// What the kernel side records of why threads wait (the `WHY` global),
/// from the running kernel's BTF and the command line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WhyConfig {
    /// In `struct pt_regs`: `orig_ax` (the system call number) and `ax`
    /// (`-ENOSYS` while a system call runs). Both 0: no system calls.
    pub regs_orig_ax: u32,
    pub regs_ax: u32,
    /// The byte of `task_struct` that holds the `in_iowait` bit, and the
    /// bit's mask in it (0: not recorded).
    pub in_iowait: u32,
    pub in_iowait_mask: u32,
    /// `on_cpu`: nonzero while the task runs.
    pub on_cpu: u32,
    /// Nonzero: record kernel and user stacks at a target's sleep (`--stacks`).
    pub stacks: u32,
    /// Nonzero: record the switches of other tasks on CPUs where a target
    /// thread waits to run.
    pub antagonists: u32,
    /// `on_rq`: nonzero while the task is on a run queue (running or
    /// waiting to run).
    pub on_rq: u32,
}

const _: () = assert!(size_of::<WhyConfig>() == 32);

/// The value `ax` holds in a task's saved registers while it is in a
/// system call on x86-64 (`-ENOSYS`, set at entry, replaced by the
/// result on return); another value there means an exception or an
/// interrupt brought it into the kernel.
pub const SYSCALL_AX: u64 = (-38i64) as u64;

/// Most stacks the `STACKS` map holds with `--stacks`; each entry has room
/// for [`STACK_DEPTH`] frames, about 1 KiB.
pub const STACK_ENTRIES: u32 = 8192;

/// Most frames of one stack (`PERF_MAX_STACK_DEPTH`).
pub const STACK_DEPTH: usize = 127;

/// One stack of the `STACKS` map (a hash map, not the kernel's stack-trace
/// map: that one keeps one stack per slot of a hash and refuses a second
/// stack whose hash shares the slot). Its id is a 31-bit hash of `ips`;
/// a different stack already under that id moves it to the next id, up to
/// [`STACK_PROBES`] ids, so an id always names the frames it was recorded
/// with.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StackFrames {
    /// Bytes of `ips` that hold frames (what `bpf_get_stack` returned).
    pub len: u64,
    /// Instruction pointers, innermost first.
    pub ips: [u64; STACK_DEPTH],
}

const _: () = assert!(size_of::<StackFrames>() == 8 * (STACK_DEPTH + 1));

/// Ids a stack may take: its hash and the ones after it (see [`StackFrames`]).
pub const STACK_PROBES: u32 = 4;

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
    /// that interrupts it (from an interrupt) writes its record directly
    /// ([`FLAG_DIRECT`]). Programs take a record's timestamp only once they
    /// hold the stage (or know they cannot), so that whoever holds it knows
    /// no record of this CPU with an earlier timestamp is still on its way:
    /// what makes progress marks ([`kind::MARK`]) provable.
    pub busy: u32,
    /// Timestamp of `events[0]`.
    pub first_ts: u64,
    pub events: [RawEvent; STAGE_EVENTS],
}

const _: () = assert!(size_of::<Stage>() == 16 + 144 * STAGE_EVENTS);

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
    /// In `struct rq`: `clock_task`, the clock less steal (and IRQ time
    /// with `CONFIG_IRQ_TIME_ACCOUNTING`) that `update_curr` charges.
    pub rq_clock_task: u32,
    /// `se.exec_start`: `clock_task` at the task's last `update_curr`.
    pub exec_start: u32,
    /// `se.sum_exec_runtime`: on-CPU ns as the scheduler accounts them.
    pub sum_exec: u32,
    /// `nvcsw`, `nivcsw`: voluntary and involuntary switches.
    pub nvcsw: u32,
    pub nivcsw: u32,
    /// `sched_info.pcount`: times switched in.
    pub pcount: u32,
    /// `sched_info.last_arrival`: run-queue clock at the last switch-in.
    pub last_arrival: u32,
    /// Nonzero: the `sched_info` and run-queue clock offsets above are
    /// valid (see [`FLAG_NO_SCHED_INFO`]).
    pub has_sched_info: u32,
    /// Where this CPU's `preempt_count` is, which tells the context a
    /// wakeup is raised in. x86 keeps it in the per-CPU variable
    /// `__preempt_count`: it lies this many bytes from the CPU's `struct
    /// rq` (`&__preempt_count - &runqueues` in `.data..percpu`, the same
    /// for every CPU).
    pub preempt_count_from_rq: i32,
    /// Other architectures keep it in `thread_info.preempt_count` of the
    /// task: its offset in `task_struct`. Both 0: unknown (contexts are
    /// recorded as [`ctx::UNKNOWN`]).
    pub preempt_count_in_task: u32,
    /// In `struct hrtimer`: `function` and `is_soft` (0: no hrtimer names).
    pub hrtimer_function: u32,
    pub hrtimer_is_soft: u32,
    /// `signal`: the process's `signal_struct`, shared by its threads.
    pub signal: u32,
    /// In `struct signal_struct`: `pids[PIDTYPE_TGID]`, the process's PID
    /// structure (NULL once the process has been released).
    pub signal_pids_tgid: u32,
    /// In `struct pid`: `ino`, its pidfs inode number, unique while the
    /// system runs (0 when this kernel has none: no identity check).
    pub pid_ino: u32,
    /// `group_leader`: the task's thread group leader (its process).
    pub group_leader: u32,
    /// `flags`: the task's `PF_*` flags (`PF_EXITING` once it has begun
    /// to exit). Set with the identity offsets, with `signal_live`.
    pub flags: u32,
    /// In `struct signal_struct`: `live`, how many of the process's
    /// threads have not yet begun to exit (an `atomic_t`). Set with the
    /// identity offsets; 0 when either it or `flags` is missing.
    pub signal_live: u32,
}

const _: () = assert!(size_of::<TaskOffsets>() == 112);

/// `--cgroup`: the cgroup v2 directory whose tasks are traced, and the
/// offsets of the path from a task to its cgroup's id and to its parent's:
/// `task->cgroups->dfl_cgrp`, then `->kn->id` and `->self.parent` up the
/// tree. The program checks it only where a process may enter the cgroup
/// (a migration, a fork straight into it), never per event: a process that
/// entered is added to the map of further targets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupFilter {
    /// The cgroup's id (its kernfs node id, the directory's inode number);
    /// 0: no cgroup is traced.
    pub id: u64,
    /// In `task_struct`: `cgroups`, the task's `css_set`.
    pub task_cgroups: u32,
    /// In `struct css_set`: `dfl_cgrp`, the task's cgroup v2 cgroup.
    pub dfl_cgrp: u32,
    /// In `struct cgroup`: `kn`, its kernfs node.
    pub kn: u32,
    /// In `struct kernfs_node`: `id`.
    pub kn_id: u32,
    /// In `struct cgroup`: `self`, its own `cgroup_subsys_state`.
    pub self_css: u32,
    /// In `struct cgroup_subsys_state`: `parent` (the parent cgroup's `self`).
    pub css_parent: u32,
}

const _: () = assert!(size_of::<CgroupFilter>() == 32);

/// How many levels above a task's cgroup the program looks for the traced
/// one (cgroup v2 trees are a handful deep: systemd's are 3 to 6).
pub const MAX_CGROUP_DEPTH: u32 = 32;

/// `--comm`: a process-name glob (`*` any run of bytes, `?` any one byte)
/// compiled to a bit-parallel automaton: bit `i` of a state is "matched the
/// pattern up to position `i`". Matching a name is one table lookup, two
/// shifts and a few ors per byte, with no branch on the pattern, so the
/// kernel side runs it in a fixed loop of at most [`COMM_LEN`] steps when a
/// process execs or is renamed. Userspace matches `/proc` names with the
/// same [`NamePattern::matches`], so both sides agree byte for byte.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamePattern {
    /// For each byte value, the positions it advances from: a literal equal
    /// to it, or `?`.
    pub advance: [u64; 256],
    /// Positions holding a `*` (consecutive stars are one).
    pub stars: u64,
    /// The bit of the position past the pattern's end (a state that has it
    /// matched); 0 when no pattern is set.
    pub accept: u64,
}

const _: () = assert!(size_of::<NamePattern>() == 2064);

/// The longest pattern, in positions (bytes, a run of stars counting one).
pub const MAX_NAME_PATTERN: usize = 63;

impl NamePattern {
    /// No pattern: matches nothing.
    pub const NONE: NamePattern = NamePattern {
        advance: [0; 256],
        stars: 0,
        accept: 0,
    };

    /// `pattern` compiled; `None` when it has more than
    /// [`MAX_NAME_PATTERN`] positions.
    pub fn compile(pattern: &[u8]) -> Option<NamePattern> {
        let mut p = NamePattern::NONE;
        let mut pos = 0;
        for (i, &b) in pattern.iter().enumerate() {
            if b == b'*' && i > 0 && pattern[i - 1] == b'*' {
                continue;
            }
            if pos >= MAX_NAME_PATTERN {
                return None;
            }
            match b {
                b'*' => p.stars |= 1 << pos,
                b'?' => p.advance.iter_mut().for_each(|m| *m |= 1 << pos),
                _ => p.advance[usize::from(b)] |= 1 << pos,
            }
            pos += 1;
        }
        p.accept = 1 << pos;
        Some(p)
    }

    /// Whether `name` (a task's name, NUL-padded) matches, with the table
    /// read through `advance` (the kernel side reads its global one entry
    /// at a time).
    #[inline(always)]
    pub fn matches_with(
        name: &[u8; COMM_LEN],
        advance: impl Fn(u8) -> u64,
        stars: u64,
        accept: u64,
    ) -> bool {
        // A star may match nothing: from it, the next position is reached
        // too (one step suffices, runs of stars being one).
        let close = |x: u64| x | ((x & stars) << 1);
        let mut state = close(1);
        for &c in name {
            if c == 0 {
                break;
            }
            // A literal or `?` consumes `c` and moves on; a star consumes
            // it and stays.
            state = close(((state & advance(c)) << 1) | (state & stars));
        }
        state & accept != 0
    }

    /// Whether `name` matches this pattern.
    pub fn matches(&self, name: &[u8; COMM_LEN]) -> bool {
        Self::matches_with(
            name,
            |c| self.advance[usize::from(c)],
            self.stars,
            self.accept,
        )
    }
}

/// Names of the maps and globals, shared so neither side spells them twice.
pub mod names {
    pub const EVENTS: &str = "EVENTS";
    pub const LOST: &str = "LOST";
    pub const STAGE: &str = "STAGE";
    pub const CHILDREN: &str = "CHILDREN";
    pub const TARGET_TGID: &str = "TARGET_TGID";
    pub const TARGET_INO: &str = "TARGET_INO";
    pub const FOLLOW_CHILDREN: &str = "FOLLOW_CHILDREN";
    pub const OTHER_TARGETS: &str = "OTHER_TARGETS";
    pub const ALL_BUT: &str = "ALL_BUT";
    pub const OFFSETS: &str = "OFFSETS";
    pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";
    pub const RUN_DELAY: &str = "RUN_DELAY";
    pub const IRQ_STATE: &str = "IRQ_STATE";
    pub const WAKE_CONTEXT: &str = "WAKE_CONTEXT";
    /// The `raw_tracepoint` program userspace runs on a CPU (never
    /// attached; `BPF_PROG_TEST_RUN` with `BPF_F_TEST_RUN_ON_CPU`) to have
    /// it write out its stage and a [`super::kind::MARK`] record: the
    /// heartbeat that lets events be released in order without waiting for
    /// a CPU that has nothing to say.
    pub const PROGRESS_MARK: &str = "progress_mark";
    pub const WHY: &str = "WHY";
    pub const STACKS: &str = "STACKS";
    pub const QUEUED: &str = "QUEUED";
    pub const WAITING: &str = "WAITING";
    pub const CGROUP: &str = "CGROUP";
    /// `--comm`: the compiled [`super::NamePattern`].
    pub const COMM_PATTERN: &str = "COMM_PATTERN";
    /// The program that sees a process renamed (`prctl(PR_SET_NAME)`, a
    /// write to `/proc/PID/comm`).
    pub const TASK_RENAME: &str = "task_rename";
    /// The program that sees processes enter the traced cgroup.
    pub const CGROUP_ATTACH: &str = "cgroup_attach_task";
    /// `--kernel-sums`: nonzero, target switches update
    /// [`super::ThreadSums`] instead of writing records.
    pub const SUMS: &str = "SUMS";
    /// Task storage: each target thread's [`super::ThreadSums`].
    pub const SUMS_TASK: &str = "SUMS_TASK";
    /// Ended threads' [`super::ThreadEnd`]s, by a per-CPU sequence key.
    pub const SUMS_ENDED: &str = "SUMS_ENDED";
}

/// Return values of the [`names::PROGRESS_MARK`] program.
pub mod mark_result {
    /// The stage was written out and the mark follows it.
    pub const WRITTEN: u32 = 0;
    /// A program on that CPU held the stage (the mark ran in an interrupt
    /// of it): no mark this time.
    pub const BUSY: u32 = 1;
    /// The ring buffer was full: no mark (the stage's records were counted
    /// as lost if they did not fit either).
    pub const RING_FULL: u32 = 2;
}

/// What each CPU is running in interrupt context, kept by programs on the
/// entry and exit tracepoints of hrtimer callbacks, softirqs, device IRQ
/// handlers, IPI functions and (x86) irq_work, read by `sched_waking` to
/// tell and name the context of a wakeup. A field is set at the entry and
/// cleared at the exit; hard interrupts do not nest on Linux, a hard
/// interrupt can interrupt a softirq, hence one field per kind.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqState {
    /// The hrtimer callback running in hard interrupt context (0: none).
    pub hrtimer_hard: u64,
    /// The hrtimer callback running in softirq context (0: none).
    pub hrtimer_soft: u64,
    /// Nonzero while an IPI runs a function (`csd_function_entry`).
    pub csd: u64,
    /// The softirq vector being served, plus one (0: none).
    pub softirq: u32,
    /// The device IRQ whose handler is running, plus one (0: none).
    pub irq: u32,
    /// Nonzero while the irq_work interrupt runs (x86).
    pub irq_work: u32,
}

const _: () = assert!(size_of::<IrqState>() == 40);

/// Index of the counters in the per-CPU `LOST` array.
pub mod counter {
    /// Ring-buffer reservations that failed (the event is lost).
    pub const LOST_EVENTS: u32 = 0;
    /// Children that could not be added to the follow map (it was full).
    pub const LOST_CHILDREN: u32 = 1;
    /// `--kernel-sums`: ended threads whose sums the
    /// [`super::names::SUMS_ENDED`] map had no room for.
    pub const LOST_SUMS: u32 = 2;
    /// `--kernel-sums`: program runs that could not find or make a
    /// thread's sums (a program makes them with an allocation that may not
    /// wait, which fails now and then on a busy CPU): the switch or
    /// waking is missing from the sums, and a thread's sums begin at its
    /// first switch that found them.
    pub const MISSED_SUMS: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Default ring-buffer size (bytes, a power of two multiple of the page size).
pub const DEFAULT_RING_BYTES: u32 = 16 << 20;
/// Maximum processes traced at once besides the first: followed children
/// (`--follow-children`) and further `--pid` targets (userspace removes the
/// entries of processes that have ended).
pub const MAX_CHILDREN: u32 = 4096;

/// Buckets of [`ThreadSums::hist`]: log-linear, four to an octave, from
/// 0 ns up to 2^40 ns (about 18 minutes; longer waits go in the last).
pub const SUM_BUCKETS: usize = 160;

/// The bucket of a wait of `ns` nanoseconds: values below 4 have their
/// own; above, the octave `2^m <= ns < 2^(m+1)` (m >= 2) is split in four
/// by the two bits below its top bit. Written without loops or a
/// leading-zero count, so that the eBPF side can use it as is.
#[inline(always)]
pub const fn sum_bucket(ns: u64) -> usize {
    if ns < 4 {
        return ns as usize;
    }
    let mut x = ns;
    let mut m = 0u32;
    if x >= 1 << 32 {
        x >>= 32;
        m += 32;
    }
    if x >= 1 << 16 {
        x >>= 16;
        m += 16;
    }
    if x >= 1 << 8 {
        x >>= 8;
        m += 8;
    }
    if x >= 1 << 4 {
        x >>= 4;
        m += 4;
    }
    if x >= 1 << 2 {
        x >>= 2;
        m += 2;
    }
    if x >= 1 << 1 {
        m += 1;
    }
    let sub = ((ns >> (m - 2)) & 3) as usize;
    let b = (m as usize - 1) * 4 + sub;
    if b < SUM_BUCKETS { b } else { SUM_BUCKETS - 1 }
}

/// The smallest wait that [`sum_bucket`] puts in bucket `b`.
pub const fn sum_bucket_floor(b: usize) -> u64 {
    if b < 4 {
        return b as u64;
    }
    let m = (b / 4 + 1) as u32;
    ((4 + (b % 4)) as u64) << (m - 2)
}

/// Bits of [`ThreadSums::flags`]: what the thread's last switch left.
pub mod sums_flag {
    /// A switch of the thread was seen: the `last_*` counters hold the
    /// kernel's counters as they stood after it.
    pub const SEEN: u32 = 1;
    /// It left the CPU to sleep: `out_clock` holds the run-queue clock then.
    pub const ASLEEP: u32 = 2;
    /// The sleep is uninterruptible (`TASK_UNINTERRUPTIBLE`): blocked.
    pub const BLOCKED: u32 = 4;
    /// It was preempted: the wait that follows is counted after preemption.
    pub const PREEMPTED: u32 = 8;
    /// Running since a switch-in seen.
    pub const RUNNING: u32 = 16;
}

/// `--kernel-sums`: one target thread's figures, kept by the switch
/// program in the thread's task storage (no record written, no clock
/// read: every duration is from the scheduler's own stamps, as the
/// switch records' counters are). Only what the kernel's counters at the
/// ends (on-CPU time, run delay, switch counts) cannot give is kept.
///
/// The kernel's tracepoint stream can lack a switch (a switch-in after
/// some kernel threads' runs is not reported), so the totals are not
/// counted event by event: at each switch seen, the growth of the
/// thread's own counters since the last one seen is added (`last_*`).
/// Switch-ins the stream lacked still add their waits and runs; only
/// what is known of single events (the histogram, the longest run,
/// sleeps and their reasons) is from the switches seen. The first wait
/// after a thread's first sight is the run-queue clock less
/// `last_queued`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadSums {
    /// The run-queue clock at the last switch-out to sleep (`ASLEEP`).
    pub out_clock: u64,
    /// `sched_info.run_delay`, `pcount`, `se.sum_exec_runtime` and
    /// `nvcsw + nivcsw` after the last switch seen (`SEEN`; at a
    /// switch-in, with the arrival the kernel counts just after it).
    pub last_rd: u64,
    pub last_pcount: u64,
    pub last_exec: u64,
    pub last_csw: u64,
    /// [`sums_flag`] bits.
    pub flags: u32,
    /// 1 + the CPU of the last run seen (0: none yet).
    pub last_cpu: u32,
    /// Switch-outs (`nvcsw + nivcsw` growth since first sight).
    pub slices: u64,
    /// On-CPU time since first sight, as the kernel charged it
    /// (`sum_exec_runtime` growth).
    pub runs_exec_ns: u64,
    /// The runs ended at the switch-outs seen since first sight, on the
    /// run-queue clock (from `last_arrival`), and as charged: their
    /// difference is time the kernel did not charge (steal, interrupts).
    pub runs_clock_ns: u64,
    pub runs_clock_exec_ns: u64,
    pub longest_run_ns: u64,
    pub voluntary: u64,
    pub involuntary: u64,
    /// Waits (`pcount` growth since first sight) and their total.
    pub waits: u64,
    pub wait_ns: u64,
    /// Of those, the waits that followed a preemption.
    pub waits_preempt: u64,
    pub wait_preempt_ns: u64,
    /// Sleeps seen from switch-out to the wakeup's enqueue, by kind.
    pub sleeping_ns: u64,
    pub blocked_ns: u64,
    /// Runs on another CPU than the run before.
    pub migrations: u64,
    /// Waits by [`sum_bucket`].
    pub hist: [u32; SUM_BUCKETS],
    /// The reason of the last switch-out to sleep ([`reason_key`]).
    pub out_reason: u32,
    pub _pad: u32,
    /// Sleeping and blocked time by reason, the first [`SUM_REASONS`]
    /// reasons seen; the rest in `other_reason`.
    pub reasons: [ReasonSum; SUM_REASONS],
    pub other_reason: ReasonSum,
    /// On-CPU time of the runs that ended at the switch-outs seen (as the
    /// kernel charged it: they add up to `runs_clock_exec_ns`), by CPU:
    /// the first [`SUM_CPUS`] CPUs the thread ran on, the rest in
    /// `other_cpus_ns`.
    pub cpus: [CpuSum; SUM_CPUS],
    pub other_cpus_ns: u64,
    /// Who woke the thread (`sched_waking`), the first [`SUM_WAKERS`]
    /// wakers seen, the rest counted in `other_wakers`. Only the waking
    /// program writes these, under the wakee's `pi_lock` (the switch
    /// program never touches them).
    pub wakers: [WakerSum; SUM_WAKERS],
    pub other_wakers: u64,
    /// Who took the CPU at the thread's preemptions seen (the switch's
    /// next task), the first [`SUM_PREEMPTORS`], each with the waits that
    /// followed; the rest together.
    pub preemptors: [PreemptSum; SUM_PREEMPTORS],
    pub other_preempts: u64,
    pub other_preempt_wait_ns: u64,
    /// 1 + the slot of the preemptor of the last switch-out seen, when
    /// it was a preemption (`SUM_PREEMPTORS + 1`: the rest's); the wait
    /// that follows is its.
    pub last_preemptor: u32,
    pub _pad2: u32,
}

/// Preemptors a thread's sums keep apart.
pub const SUM_PREEMPTORS: usize = 4;

/// One task that preempted a thread, in [`ThreadSums`] (`count` 0:
/// unused): how often, and the waits that followed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PreemptSum {
    pub tid: u32,
    pub tgid: u32,
    pub count: u64,
    pub wait_ns: u64,
    /// Its name when first seen.
    pub comm: [u8; COMM_LEN],
}

impl PreemptSum {
    pub const ZERO: PreemptSum = PreemptSum {
        tid: 0,
        tgid: 0,
        count: 0,
        wait_ns: 0,
        comm: [0; COMM_LEN],
    };
}

/// CPUs a thread's sums keep apart.
pub const SUM_CPUS: usize = 8;

/// On-CPU time on one CPU in [`ThreadSums`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSum {
    /// 1 + the CPU (0: unused).
    pub cpu: u32,
    pub _pad: u32,
    pub ns: u64,
}

impl CpuSum {
    pub const ZERO: CpuSum = CpuSum {
        cpu: 0,
        _pad: 0,
        ns: 0,
    };
}

/// Wakers a thread's sums keep apart.
pub const SUM_WAKERS: usize = 4;

/// One waker of a thread in [`ThreadSums`] (`count` 0: unused). The same
/// fields a `sched_waking` record has for it: `flags` are the record's
/// context bits (`ctx::MASK`, [`FLAG_CTX_DETAIL`], [`FLAG_CTX_FUNCTION`]);
/// `id` is the waker's TID in task context, else the record's `aux1`
/// (softirq vector or IRQ number) with `FLAG_CTX_DETAIL`, or its
/// `prev_runtime` (the hrtimer callback's address) with
/// `FLAG_CTX_FUNCTION`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WakerSum {
    pub id: u64,
    pub flags: u32,
    /// A waker task's TGID (0 otherwise).
    pub tgid: u32,
    pub count: u64,
    /// A waker task's name, and its process's (its thread group
    /// leader's), when first seen (zero otherwise).
    pub comm: [u8; COMM_LEN],
    pub process: [u8; COMM_LEN],
}

impl WakerSum {
    pub const ZERO: WakerSum = WakerSum {
        id: 0,
        flags: 0,
        tgid: 0,
        count: 0,
        comm: [0; COMM_LEN],
        process: [0; COMM_LEN],
    };
    /// The `flags` bits a waker slot keeps of a waking's.
    pub const FLAGS: u16 = ctx::MASK | FLAG_CTX_DETAIL | FLAG_CTX_FUNCTION;
}

/// Reasons a thread's sums keep apart.
pub const SUM_REASONS: usize = 8;

/// Off-CPU time of one reason in [`ThreadSums`] (`key` 0: unused).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReasonSum {
    pub key: u32,
    pub count: u32,
    pub ns: u64,
}

impl ReasonSum {
    pub const ZERO: ReasonSum = ReasonSum {
        key: 0,
        count: 0,
        ns: 0,
    };
}

/// [`ReasonSum::key`] bit: not in a system call (a kernel thread, a page
/// fault, or reasons not read).
pub const REASON_NO_SYSCALL: u32 = 1 << 30;
/// [`ReasonSum::key`] bit: the kernel counted the sleep as I/O wait.
pub const REASON_IOWAIT: u32 = 1 << 31;

/// The key of a sleep's reason: the system call number it slept in (or
/// [`REASON_NO_SYSCALL`]), with [`REASON_IOWAIT`]; never 0.
#[inline(always)]
pub const fn reason_key(syscall: Option<u32>, iowait: bool) -> u32 {
    let k = match syscall {
        Some(nr) => (nr & 0x3fff_ffff) + 1,
        None => REASON_NO_SYSCALL,
    };
    if iowait { k | REASON_IOWAIT } else { k }
}

impl ThreadSums {
    pub const ZERO: ThreadSums = ThreadSums {
        out_clock: 0,
        last_rd: 0,
        last_pcount: 0,
        last_exec: 0,
        last_csw: 0,
        flags: 0,
        last_cpu: 0,
        slices: 0,
        runs_exec_ns: 0,
        runs_clock_ns: 0,
        runs_clock_exec_ns: 0,
        longest_run_ns: 0,
        voluntary: 0,
        involuntary: 0,
        waits: 0,
        wait_ns: 0,
        waits_preempt: 0,
        wait_preempt_ns: 0,
        sleeping_ns: 0,
        blocked_ns: 0,
        migrations: 0,
        hist: [0; SUM_BUCKETS],
        out_reason: 0,
        _pad: 0,
        reasons: [ReasonSum::ZERO; SUM_REASONS],
        other_reason: ReasonSum::ZERO,
        cpus: [CpuSum::ZERO; SUM_CPUS],
        other_cpus_ns: 0,
        wakers: [WakerSum::ZERO; SUM_WAKERS],
        other_wakers: 0,
        preemptors: [PreemptSum::ZERO; SUM_PREEMPTORS],
        other_preempts: 0,
        other_preempt_wait_ns: 0,
        last_preemptor: 0,
        _pad2: 0,
    };
}

/// `--kernel-sums`: an ended thread's sums and its counters at its final
/// switch-out (the values `/proc` would have shown at the end), copied
/// there to [`names::SUMS_ENDED`]: the kernel frees the task's storage
/// with the task.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadEnd {
    pub sums: ThreadSums,
    /// When (`bpf_ktime_get_ns`).
    pub ts: u64,
    pub tid: u32,
    pub tgid: u32,
    pub comm: [u8; COMM_LEN],
    pub runtime: u64,
    pub run_delay: u64,
    pub pcount: u64,
    pub nvcsw: u64,
    pub nivcsw: u64,
}

/// Ended threads [`names::SUMS_ENDED`] holds (userspace empties it as the
/// capture runs).
pub const MAX_SUMS_ENDED: u32 = 4096;

const _: () = assert!(
    size_of::<ThreadSums>()
        == 8 * 20
            + 4 * SUM_BUCKETS
            + 8
            + 16 * (SUM_REASONS + 1)
            + 16 * SUM_CPUS
            + 8
            + 56 * SUM_WAKERS
            + 8
            + 40 * SUM_PREEMPTORS
            + 8 * 3
);
const _: () = assert!(size_of::<ThreadEnd>() == size_of::<ThreadSums>() + 72);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `repr(C)`, `Copy`, made of integers, with no padding (the
    // size assertions above pin that down); the same for the three below.
    unsafe impl aya::Pod for super::RawEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TaskOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Stage {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IrqState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::WhyConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::StackFrames {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ThreadSums {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ThreadEnd {}

    // SAFETY: as above.
    unsafe impl aya::Pod for super::CgroupFilter {}
    // SAFETY: as above (`repr(C)`, only integers, no padding).
    unsafe impl aya::Pod for super::NamePattern {}
}
