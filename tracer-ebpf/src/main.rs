//! schedtrace's kernel side: BTF-enabled raw tracepoint (`tp_btf`) programs
//! on the scheduler's tracepoints that keep only the events of the target
//! process (and, with `--follow-children`, the processes it forks) and write
//! them to one BPF ring buffer.
//!
//! Why `tp_btf`: like a raw tracepoint it gets the tracepoint's `TP_PROTO`
//! arguments (the `task_struct` pointers) without the classic tracepoint's
//! record copy, and in addition the verifier knows those pointers' type, so
//! task fields are plain loads (checked against `task_struct`'s layout at
//! load time, made fault-safe by the kernel) instead of
//! `bpf_probe_read_kernel` calls: that halves the cost of a traced event.
//! The field offsets come from the kernel's BTF through the read-only global
//! `OFFSETS` (aya-ebpf has no CO-RE); the kernel freezes that map, so the
//! verifier sees them as constants.
//!
//! Filtering: the TGID of the outgoing task of a switch is the current
//! task's (`bpf_get_current_pid_tgid`); the incoming task's is read from its
//! `task_struct`. Threads created after attach therefore match with no map
//! update. A matching TGID is only a number: the process behind it must
//! also be the one userspace holds a pidfd on (see [`same_process`]), so a
//! PID reused by a stranger after the target exits never matches. A record
//! that cannot be reserved is counted per CPU in `LOST`.
#![no_std]
#![no_main]
// The atomic add of `add_count`: the BPF target has atomic loads and stores
// only in `core::sync::atomic` (no compare-and-swap), though the
// instruction set has had an atomic add from the start.
#![feature(core_intrinsics)]
#![allow(internal_features)]
// The exception to the workspace lints: the programs keep aya's `pub fn`
// style, though nothing here is reachable from outside this binary.
#![allow(unreachable_pub)]

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_F_NO_PREALLOC, BPF_F_USER_STACK, BPF_LOCAL_STORAGE_GET_F_CREATE, BPF_RB_AVAIL_DATA,
        BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, bpf_map_type, task_struct,
    },
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_get_smp_processor_id,
        bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
        bpf_probe_read_kernel_str_bytes,
        generated::{bpf_get_stack, bpf_task_pt_regs, bpf_task_storage_get},
    },
    macros::{btf_tracepoint, map, raw_tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, RawTracePointContext},
};
use aya_log_ebpf::{info, warn};
use core::intrinsics::AtomicOrdering;
use schedtrace_common::{
    COMM_LEN, CgroupFilter, DEFAULT_RING_BYTES, FLAG_CHILD, FLAG_CTX_DETAIL, FLAG_CTX_FUNCTION,
    FLAG_CTX_MISMATCH, FLAG_DIRECT, FLAG_NEXT_COUNTERS, FLAG_NO_SCHED_INFO, FLAG_PREEMPT,
    FLAG_PREV_COUNTERS, FLAG_RUN_DELAY, FLAG_WAKEE_QUEUED, FLAG_WAKEE_RUN_DELAY,
    FLAG_WAKER_PROCESS, IrqState, MAX_CGROUP_DEPTH, MAX_CHILDREN, NamePattern, RawEvent,
    STACK_DEPTH, STACK_PROBES, STAGE_EVENTS, STAGE_MAX_AGE_NS, SUM_BUCKETS, SUM_CPUS,
    SUM_PREEMPTORS, SUM_REASONS, SUM_WAKERS, SYSCALL_AX, StackFrames, Stage, TaskOffsets,
    ThreadEnd, ThreadSums, WakerSum, WhyConfig, counter, ctx, kind, mark_result, off as offcpu,
    reason_key, sum_bucket, sums_flag, wake_context as mode,
};

/// TGID of the traced process; set by the loader before load.
#[unsafe(no_mangle)]
static TARGET_TGID: u32 = 0;
/// The traced process's identity: the pidfs inode number of its PID
/// structure, from the pidfd userspace holds (0: no identity on this
/// kernel, compare the TGID only).
#[unsafe(no_mangle)]
static TARGET_INO: u64 = 0;
/// Nonzero: processes forked by a target are added to `CHILDREN`.
#[unsafe(no_mangle)]
static FOLLOW_CHILDREN: u32 = 0;
/// Nonzero: `CHILDREN` may hold targets (followed children, or the further
/// processes of a repeated `--pid`), so a TGID other than `TARGET_TGID` is
/// looked up there. Zero keeps the one-process filter at two compares.
#[unsafe(no_mangle)]
static OTHER_TARGETS: u32 = 0;
/// `--all`: nonzero, every task is a target but those of this TGID
/// (schedtrace's own, whose reading would feed on itself). Checked only
/// with `OTHER_TARGETS` set.
#[unsafe(no_mangle)]
static ALL_BUT: u32 = 0;
/// Wake the reader once this many bytes wait in the ring buffer; below that,
/// records are submitted without a wakeup and the reader drains on a timer.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 1 << 20;
/// Nonzero: switch records carry the incoming target's run-queue wait from
/// `sched_info` (see [`FLAG_RUN_DELAY`]). The loader sets it when wakeups are
/// not traced, so that waits stay exact without the `sched_waking` program.
#[unsafe(no_mangle)]
static RUN_DELAY: u32 = 0;
/// How `sched_waking` tells the context of a wakeup (`schedtrace_common::wake_context`).
#[unsafe(no_mangle)]
static WAKE_CONTEXT: u32 = 0;
/// `--kernel-sums`: nonzero, target switches update [`SUMS_TASK`] instead
/// of writing records (see [`ThreadSums`]).
#[unsafe(no_mangle)]
static SUMS: u32 = 0;
/// Kernel field offsets from the running kernel's BTF.
#[unsafe(no_mangle)]
static OFFSETS: TaskOffsets = TaskOffsets {
    pid: 0,
    tgid: 0,
    prio: 0,
    comm: 0,
    cpu: 0,
    run_delay: 0,
    last_queued: 0,
    cfs_rq: 0,
    cfs_rq_rq: 0,
    rq_clock: 0,
    rq_clock_task: 0,
    exec_start: 0,
    sum_exec: 0,
    nvcsw: 0,
    nivcsw: 0,
    pcount: 0,
    last_arrival: 0,
    has_sched_info: 0,
    preempt_count_from_rq: 0,
    preempt_count_in_task: 0,
    hrtimer_function: 0,
    hrtimer_is_soft: 0,
    signal: 0,
    signal_pids_tgid: 0,
    pid_ino: 0,
    group_leader: 0,
    flags: 0,
    signal_live: 0,
};

/// `--cgroup`: which cgroup's processes become targets as they enter it.
#[unsafe(no_mangle)]
static CGROUP: CgroupFilter = CgroupFilter {
    id: 0,
    task_cgroups: 0,
    dfl_cgrp: 0,
    kn: 0,
    kn_id: 0,
    self_css: 0,
    css_parent: 0,
};

/// `--comm`: a process that execs or is renamed to a name this matches
/// becomes a target (`accept` 0: no pattern).
#[unsafe(no_mangle)]
static COMM_PATTERN: NamePattern = NamePattern::NONE;

/// What to record of why threads wait (see [`WhyConfig`]).
#[unsafe(no_mangle)]
static WHY: WhyConfig = WhyConfig {
    regs_orig_ax: 0,
    regs_ax: 0,
    in_iowait: 0,
    in_iowait_mask: 0,
    on_cpu: 0,
    stacks: 0,
    antagonists: 0,
    on_rq: 0,
};

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Records waiting to be written to `EVENTS` in one go (see [`Stage`]).
#[map]
static STAGE: PerCpuArray<Stage> = PerCpuArray::with_max_entries(1, 0);

/// What each CPU runs in interrupt context (see [`IrqState`]).
#[map]
static IRQ_STATE: PerCpuArray<IrqState> = PerCpuArray::with_max_entries(1, 0);

/// The traced processes besides `TARGET_TGID`: TGID → identity (the pidfs
/// inode number of its PID structure, 0 without pidfs). The loader stores
/// the further processes of a repeated `--pid` before attaching; a followed
/// child (`--follow-children`) is stored when it is forked. A process
/// leaves it for [`ENDED`] at its last thread's final switch-out
/// ([`end_process`]); userspace removes what that missed once the process
/// has ended.
#[map]
static CHILDREN: HashMap<u32, u64> = HashMap::with_max_entries(MAX_CHILDREN, 0);

/// Processes that left [`CHILDREN`] because all their threads had begun
/// to exit: TGID → identity. A thread that had begun to exit but not yet
/// switched out for the last time is still ours, and found here (see
/// [`is_target`]). Least recently used ones give way: by then their
/// threads are long gone, and the identity keeps a later process with the
/// same TGID out.
#[map]
static ENDED: LruHashMap<u32, u64> = LruHashMap::with_max_entries(MAX_ENDED, 0);

/// Processes that have just ended that [`ENDED`] holds.
const MAX_ENDED: u32 = 1024;

/// `PF_EXITING` in `task_struct.flags`: the task has begun to exit.
const PF_EXITING: u32 = 0x4;

/// Threads of the traced processes that have begun to exit (seen by
/// `sched_process_exit` while their process still had its identity), until
/// their final switch-out: TID → that identity. That switch-out can come
/// after the process is released, when it has no identity left to check;
/// only a thread in here may then pass as a target. (A stranger that took
/// the PID of a followed child and exits before its entry has left the map
/// is released with no identity too, and was traced there.) The identity
/// tells at the final switch-out whether the map's entry is still that
/// process's. Entries live for microseconds; least recently used ones give
/// way.
#[map]
static DYING: LruHashMap<u32, u64> = LruHashMap::with_max_entries(MAX_DYING, 0);

/// Threads exiting at once that [`DYING`] holds.
const MAX_DYING: u32 = 4096;

/// `prev_state` of a task switching out for the last time.
const TASK_DEAD: u64 = 0x80;

/// Off-CPU stacks (`--stacks`) by id ([`StackFrames`]); the loader sizes
/// it (one entry without).
#[map]
static STACKS: HashMap<u32, StackFrames> = HashMap::with_max_entries(1, 0);

/// Where a CPU takes a stack before it is stored in `STACKS`.
#[map]
static STACK_SCRATCH: PerCpuArray<StackFrames> = PerCpuArray::with_max_entries(1, 0);

/// A task local storage map (`BPF_MAP_TYPE_TASK_STORAGE`) with values of
/// type `T`, in the BTF map layout (section `.maps`) that the kernel
/// requires for local storage: the members' pointed-to types carry the map
/// type, key, value and flags. aya-ebpf 0.2 can read such maps but has no
/// type for this one.
#[repr(C)]
pub struct TaskStorage<T> {
    r#type: *const [i32; bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
}

// SAFETY: the members are placeholders that only describe the map in BTF;
// nothing reads or writes them.
unsafe impl<T> Sync for TaskStorage<T> {}

impl<T> TaskStorage<T> {
    const fn new() -> Self {
        TaskStorage {
            r#type: core::ptr::null(),
            key: core::ptr::null(),
            value: core::ptr::null(),
            max_entries: core::ptr::null(),
            map_flags: core::ptr::null(),
        }
    }

    /// `task`'s value, created zeroed if `create` and it has none; null
    /// when it has none (or the kernel could not make one).
    #[inline(always)]
    fn get(&self, task: Task, create: bool) -> *mut T {
        let flags = if create {
            u64::from(BPF_LOCAL_STORAGE_GET_F_CREATE)
        } else {
            0
        };
        let map: *const Self = self;
        // SAFETY: `task` is a BTF-typed `task_struct` pointer from the
        // tracepoint's arguments, which the verifier checks; the helper
        // returns null or a pointer to this map's value for it.
        unsafe {
            bpf_task_storage_get(
                map as *mut core::ffi::c_void,
                task as *mut task_struct,
                core::ptr::null_mut(),
                flags,
            )
        }
        .cast()
    }
}

/// Per target thread, from its wakeup or preemption to its switch-in: 1 +
/// the CPU whose run queue it waits on in the low 32 bits, and that CPU's
/// [`Waiting::generation`] when it was counted there in the high 32 (0:
/// not waiting). In the task's own
/// storage rather than a TID-keyed hash map: the lookup is a pointer chase
/// from the `task_struct` (no hashing, no bucket lock, no allocation after
/// the thread's first wait), and the kernel frees it with the task.
#[unsafe(link_section = ".maps")]
#[unsafe(export_name = "QUEUED")]
static QUEUED: TaskStorage<u64> = TaskStorage::new();

/// `--kernel-sums`: each target thread's sums.
#[unsafe(link_section = ".maps")]
#[unsafe(export_name = "SUMS_TASK")]
static SUMS_TASK: TaskStorage<ThreadSums> = TaskStorage::new();

/// `--kernel-sums`: ended threads' sums and final counters, by key
/// `CPU << 48 | that CPU's count of ended threads` ([`SUMS_SEQ`]); the
/// loader sizes it (one entry without).
#[map]
static SUMS_ENDED: HashMap<u64, ThreadEnd> = HashMap::with_max_entries(1, 0);

/// Each CPU's count of ended threads, for [`SUMS_ENDED`]'s keys.
#[map]
static SUMS_SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// `--kernel-sums`: nonzero once the CPU has written a [`kind::OCCUPY`]
/// record.
#[map]
static OCCUPIED: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Where a CPU builds a [`ThreadEnd`] (too large for the stack).
#[map]
static SUMS_SCRATCH: PerCpuArray<ThreadEnd> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU (indexed by CPU number; the loader sizes it): how many target
/// threads wait on its run queue (see [`Waiting`]). While it is nonzero,
/// the CPU's switches between other tasks are recorded: they took the CPU
/// a target waited for.
#[map]
static WAITING: Array<Waiting> = Array::with_max_entries(1, 0);

/// A CPU's count of waiting target threads.
///
/// Other CPUs change `count` too (a wakeup is counted on the CPU the
/// wakee will wait on, from the waker's CPU, before the wakee is queued),
/// so it changes by atomic adds. Only the CPU itself, in its switch to
/// idle, sets it back to 0 (its run queue is empty then) and starts a new
/// `generation`; a thread counted in an earlier generation is not
/// uncounted again, so the count does not go below the threads it holds.
/// A thread counted or uncounted just as the CPU goes idle leaves it too
/// high until the CPU next goes idle (some switches recorded in vain). A
/// wakee whose CPU goes idle between its waking and its enqueue is not
/// counted for that wait (docs/why.md).
///
/// Padded to 128 bytes so that no cache line holds two CPUs' fields: each
/// CPU writes its own count at nearly every traced event, and two counts
/// in one line made that line move between the CPUs each time. The
/// kernel's array values start where `struct bpf_array` ends (8-aligned,
/// not line-aligned: at 56 bytes into a line on 6.18), so a stride of one
/// line could still put one CPU's `generation` beside the next's `count`;
/// with 16 bytes used in each 128, any 64-byte line touches one CPU's.
#[repr(C)]
struct Waiting {
    count: u64,
    generation: u64,
    _apart: [u64; 14],
}

#[inline(always)]
fn global<T: Copy>(v: &T) -> T {
    // SAFETY: reading a global that the loader patched before load; volatile
    // so that the compiler does not fold the compile-time zero.
    unsafe { core::ptr::read_volatile(v) }
}

/// The offset of `field` in `OFFSETS`, read where it is used: reading the
/// whole struct at once makes LLVM load all of it on entry, and spill it to
/// the stack, even for an event that is filtered out.
macro_rules! off {
    ($field:ident) => {
        global(&OFFSETS.$field)
    };
}

/// Is `task`, whose TGID is `tgid`, one of the processes we trace? The
/// common case (a stranger) costs two compares, and a map lookup and a
/// flag test while further processes are traced; a matching TGID then
/// checks the process's identity.
#[inline(always)]
fn is_target(tgid: u32, task: Task) -> bool {
    if tgid == 0 {
        return false;
    }
    if tgid == global(&TARGET_TGID) {
        return same_process(task, global(&TARGET_INO));
    }
    if global(&OTHER_TARGETS) == 0 {
        return false;
    }
    let all_but = global(&ALL_BUT);
    if all_but != 0 {
        return tgid != all_but;
    }
    // SAFETY: the value is copied out at once.
    match unsafe { CHILDREN.get(&tgid) } {
        Some(ino) => same_process(task, *ino),
        None => exiting(task) && ended_process(tgid, task),
    }
}

/// Has `task` begun to exit? (A load and a bit test: strangers pass here
/// on every switch while other processes are traced.)
#[inline(always)]
fn exiting(task: Task) -> bool {
    off!(signal_live) != 0 && task_u32(task, off!(flags)) & PF_EXITING != 0
}

/// Is `task` (exiting) a thread of a process that left [`CHILDREN`] when
/// its last thread began to exit, but has not yet switched out for the
/// last time? Rare: a thread that lags behind the one whose final
/// switch-out ended the process.
#[inline(never)]
fn ended_process(tgid: u32, task: Task) -> bool {
    // SAFETY: the value is copied out at once.
    match unsafe { ENDED.get(&tgid) } {
        Some(ino) => same_process(task, *ino),
        None => false,
    }
}

/// The final switch-out of `tid`, a thread of target process `tgid`: if
/// no thread of a further target process is left that has not begun to
/// exit (`signal->live` is 0), the process leaves [`CHILDREN`] for
/// [`ENDED`], so the map holds only processes that live however fast they
/// come and go. Its entry is removed only if it still holds the identity
/// the thread's process had when it began to exit ([`DYING`]), so a later
/// process that took the TGID keeps its entry. (That one could still lose
/// it if it were added between the check and the removal, nanoseconds
/// apart: it would take the TGID coming round again in that instant.)
#[inline(never)]
fn end_process(tgid: u32, tid: u32, task: Task) {
    if !is_child(tgid) || off!(signal_live) == 0 || off!(pid_ino) == 0 {
        return;
    }
    let signal = field_u64(task, off!(signal)) as Task;
    if task_u32(signal, off!(signal_live)) != 0 {
        return;
    }
    // SAFETY: the values are copied out at once.
    let Some(ino) = (unsafe { DYING.get(&tid) }).copied() else {
        return;
    };
    if ino == 0 || unsafe { CHILDREN.get(&tgid) }.copied() != Some(ino) {
        return;
    }
    let _ = ENDED.insert(&tgid, &ino, 0);
    let _ = CHILDREN.remove(&tgid);
}

/// The identity of `task`'s process: the pidfs inode number of
/// `task->signal->pids[PIDTYPE_TGID]`, or 0 once the process has been
/// released (the kernel clears that pointer when the last thread goes).
#[inline(always)]
fn process_ino(task: Task) -> u64 {
    let signal = field_u64(task, off!(signal)) as Task;
    let pid = field_u64(signal, off!(signal_pids_tgid)) as Task;
    field_u64(pid, off!(pid_ino))
}

/// `task`'s process's identity where this kernel has one ([`process_ino`]),
/// else 0 (the TGID alone is compared).
#[inline(always)]
fn identity(task: Task) -> u64 {
    if off!(pid_ino) != 0 {
        process_ino(task)
    } else {
        0
    }
}

/// Is `task`'s process the one whose identity is `ino`? A released
/// process (identity 0) matches only for the final switch-out of a thread
/// that began to exit as one of ours ([`DYING`]).
#[inline(always)]
fn same_process(task: Task, ino: u64) -> bool {
    if ino == 0 {
        return true;
    }
    match process_ino(task) {
        0 => {
            let tid = task_u32(task, off!(pid));
            // SAFETY: only whether the key is there is read.
            unsafe { DYING.get(&tid) }.is_some()
        }
        now => now == ino,
    }
}

#[inline(always)]
fn is_child(tgid: u32) -> bool {
    tgid != global(&TARGET_TGID)
}

/// A `task_struct` pointer the kernel passed to the tracepoint.
type Task = *const u8;

/// The `u32` field at byte `off` of `task`.
#[inline(always)]
fn task_u32(task: Task, off: u32) -> u32 {
    // SAFETY: `task` comes from the tracepoint's BTF-typed arguments (or
    // `bpf_get_current_task_btf`), and `off` is the offset of a 4-byte field
    // in the running kernel's `task_struct`. The verifier checks the access
    // against that layout at load time and the kernel makes it fault-safe.
    unsafe { core::ptr::read(task.add(off as usize) as *const u32) }
}

/// The `u64` field at byte `off` of `p` (a task, or a pointer read from one).
#[inline(always)]
fn field_u64(p: Task, off: u32) -> u64 {
    // SAFETY: as in `task_u32`, for an 8-byte field; pointers read from a
    // BTF-typed struct are BTF-typed too, so the same checks apply to them.
    unsafe { core::ptr::read(p.add(off as usize) as *const u64) }
}

/// The `u8` field at byte `off` of `p`.
#[inline(always)]
fn field_u8(p: Task, off: u32) -> u8 {
    // SAFETY: as in `field_u64`, for a 1-byte field.
    unsafe { core::ptr::read(p.add(off as usize)) }
}

/// The CPU's `struct rq`, reached from a task on this CPU (the current
/// task, or one being switched in here) through `se.cfs_rq->rq`. Only
/// when the kernel has that path (`OFFSETS.has_sched_info`).
#[inline(always)]
fn rq_of(task: Task) -> Task {
    let cfs_rq = field_u64(task, off!(cfs_rq)) as Task;
    field_u64(cfs_rq, off!(cfs_rq_rq)) as Task
}

/// The task's name (`comm`, 16 bytes).
///
/// `comm` follows pointers in `task_struct`, so it is 8-byte aligned unless
/// the layout is randomized (`CONFIG_RANDSTRUCT`). Aligned, it is two 8-byte
/// loads; `read_unaligned` would compile to 16 byte loads and 30 shifts and
/// ors (the BPF target assumes no unaligned access). Otherwise it is a
/// `bpf_probe_read_kernel`, a different instruction from a load so that
/// LLVM cannot merge the two branches into the slow one. `off` is a constant
/// to the verifier (see `OFFSETS`), so it only checks the branch taken.
/// The aligned branch builds the name from the two words rather than
/// filling a zeroed array: LLVM turns that zeroing into a call to a
/// byte-at-a-time `memset` (64 instructions per name).
#[inline(always)]
fn task_comm(task: Task, off: u32) -> [u8; COMM_LEN] {
    // SAFETY: as in `task_u32`; `comm` is a 16-byte array at `off`.
    let p = unsafe { task.add(off as usize) };
    if off & 7 == 0 {
        // SAFETY: `p` is 8-byte aligned here; two words are 16 bytes.
        unsafe {
            let p = p as *const u64;
            core::mem::transmute::<[u64; 2], [u8; COMM_LEN]>([
                core::ptr::read(p),
                core::ptr::read(p.add(1)),
            ])
        }
    } else {
        let mut out = [0u8; COMM_LEN];
        // SAFETY: reads 16 bytes of kernel memory into `out`; a fault
        // leaves zeros.
        let _ = unsafe { bpf_probe_read_kernel_buf(p, &mut out) };
        out
    }
}

/// The running task, as a BTF-typed pointer.
#[inline(always)]
fn current_task() -> Task {
    // SAFETY: plain helper call; never null in task context.
    unsafe { bpf_get_current_task_btf() as Task }
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: plain helper call.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn this_cpu() -> u32 {
    // SAFETY: plain helper call.
    unsafe { bpf_get_smp_processor_id() }
}

/// Add `n` to counter `index` of `LOST`; returns the new value.
#[inline(always)]
fn bump(index: u32, n: u64) -> u64 {
    match LOST.get_ptr_mut(index) {
        // SAFETY: this CPU's slot of a map value. Not atomic (the BPF
        // target has no atomic read-modify-write in `core`): a loss counted
        // by a program interrupting this add on the same CPU could be
        // overwritten, which takes two losses racing on one CPU.
        Some(p) => unsafe {
            *p += n;
            *p
        },
        None => 0,
    }
}

/// Count `n` lost records; log only the first loss on each CPU: aya-log's
/// own ring buffer wakes its reader, which must stay out of the hot path.
#[inline(always)]
fn lose<C: EbpfContext>(ctx: &C, n: u64) {
    if bump(counter::LOST_EVENTS, n) == n {
        warn!(
            ctx,
            "ring buffer full on cpu {}: events are being lost",
            this_cpu()
        );
    }
}

/// Ring-buffer submit flags: no wakeup unless the reader is falling behind
/// (it drains on a timer).
#[inline(always)]
fn wakeup_flags() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= global(&WAKEUP_BYTES) {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Write one record straight to the ring buffer; false if it was full.
#[inline(always)]
fn write_direct(ev: &RawEvent) -> bool {
    match EVENTS.reserve::<RawEvent>(0) {
        Some(mut entry) => {
            entry.write(*ev);
            entry.submit(wakeup_flags());
            true
        }
        None => false,
    }
}

/// Time-stamp `ev` now and write it straight to the ring buffer, marked as
/// not having gone through the stage.
#[inline(always)]
fn emit_direct<C: EbpfContext>(ctx: &C, ev: &mut RawEvent) {
    ev.ts_ns = now();
    ev.flags |= FLAG_DIRECT;
    if !write_direct(ev) {
        lose(ctx, 1);
    }
}

// The stage is shared with programs that interrupt this one on the same
// CPU (see `Stage::busy`), so every access to it is volatile: the compiler
// keeps volatile accesses in program order, and the BPF backend has no
// fence instruction.
macro_rules! get {
    ($place:expr) => {
        // SAFETY: a field of this CPU's stage (a valid map value).
        unsafe { core::ptr::read_volatile(&$place) }
    };
}
macro_rules! set {
    ($place:expr, $value:expr) => {
        // SAFETY: as in `get!`.
        unsafe { core::ptr::write_volatile(&mut $place, $value) }
    };
}

/// Write the staged records to the ring buffer as one record.
#[inline(always)]
fn flush<C: EbpfContext>(ctx: &C, stage: &mut Stage) {
    let len = core::cmp::min(get!(stage.len) as usize, STAGE_EVENTS);
    if len == 0 {
        return;
    }
    // SAFETY: `len` is at most the array's length.
    let staged = unsafe { core::slice::from_raw_parts(stage.events.as_ptr(), len) };
    if EVENTS.output::<[RawEvent]>(staged, wakeup_flags()).is_err() {
        lose(ctx, len as u64);
    }
    set!(stage.len, 0);
}

/// This CPU's stage, unless a program it interrupted is using it.
#[inline(always)]
fn claim_stage() -> Option<&'static mut Stage> {
    let p = STAGE.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot. Programs on one CPU only nest when an
    // interrupt comes in; the `busy` flag keeps the nested one out.
    let stage = unsafe { &mut *p };
    if get!(stage.busy) != 0 {
        return None;
    }
    set!(stage.busy, 1);
    Some(stage)
}

#[inline(always)]
fn release_stage(stage: &mut Stage) {
    set!(stage.busy, 0);
}

/// Time-stamp `ev` and stage it; write the stage out when it is full, old,
/// or `now_out` (the CPU is about to go idle). Without a stage, write `ev`
/// directly. The timestamp is taken only once the stage is held (see
/// `Stage::busy`): every record of this CPU time-stamped earlier is then in
/// the stage or already in the ring buffer.
#[inline(always)]
fn emit(ctx: &BtfTracePointContext, ev: &mut RawEvent, now_out: bool) {
    let Some(stage) = claim_stage() else {
        emit_direct(ctx, ev);
        return;
    };
    ev.ts_ns = now();
    let len = get!(stage.len) as usize;
    if len == 0 {
        set!(stage.first_ts, ev.ts_ns);
    }
    match stage.events.get_mut(len) {
        Some(slot) => {
            set!(*slot, *ev);
            set!(stage.len, len as u32 + 1);
        }
        // Not reached (the stage is written out when full); the record
        // keeps its place in time, after everything staged.
        None => {
            flush(ctx, stage);
            emit_direct(ctx, ev);
        }
    }
    if now_out
        || get!(stage.len) as usize >= STAGE_EVENTS
        || ev.ts_ns.wrapping_sub(get!(stage.first_ts)) >= STAGE_MAX_AGE_NS
    {
        flush(ctx, stage);
    }
    release_stage(stage);
}

/// Write this CPU's stage out if it holds anything (`max_age`: only if its
/// oldest record is at least that old).
#[inline(always)]
fn flush_stage(ctx: &BtfTracePointContext, max_age: Option<u64>) {
    let Some(stage) = claim_stage() else {
        return;
    };
    if get!(stage.len) != 0 {
        match max_age {
            Some(age) if now().wrapping_sub(get!(stage.first_ts)) < age => {}
            _ => flush(ctx, stage),
        }
    }
    release_stage(stage);
}

/// Fill the `next_*` side of `ev` from a `task_struct` pointer whose TGID
/// the caller already has. A task outside the traced processes is
/// recorded by TID, TGID and name only.
#[inline(always)]
fn fill_next(ev: &mut RawEvent, task: Task, tgid: u32, target: bool) {
    ev.next_tid = task_u32(task, off!(pid));
    ev.next_tgid = tgid;
    if target {
        ev.next_prio = task_u32(task, off!(prio)) as i32;
    }
    ev.next_comm = task_comm(task, off!(comm));
}

/// Fill the `prev_*` side of `ev` from the current task `task`, whose
/// `bpf_get_current_pid_tgid` the caller already has (TID, TGID and name
/// only when it is not traced).
#[inline(always)]
fn fill_current(ev: &mut RawEvent, task: Task, pid_tgid: u64, target: bool) {
    ev.prev_tid = pid_tgid as u32;
    ev.prev_tgid = (pid_tgid >> 32) as u32;
    if target {
        ev.prev_prio = task_u32(task, off!(prio)) as i32;
    }
    ev.prev_comm = task_comm(task, off!(comm));
}

// TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
//          unsigned int prev_state)
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch(ctx: BtfTracePointContext) -> i32 {
    let current = bpf_get_current_pid_tgid();
    let prev_tgid = (current >> 32) as u32;
    let prev: Task = ctx.arg(1);
    let next: Task = ctx.arg(2);
    let next_tgid = task_u32(next, off!(tgid));
    let prev_target = is_target(prev_tgid, prev);
    let next_target = is_target(next_tgid, next);
    let preempt: u64 = ctx.arg(0);
    let prev_state: u64 = ctx.arg(3);
    let preempted = preempt & 0xff != 0 || prev_state & 0xffff_ffff == 0;
    let antagonists = global(&WHY.antagonists) != 0;
    let next_tid = task_u32(next, off!(pid));
    let mut foreign = false;
    if antagonists {
        let cpu = this_cpu();
        if next_target {
            unqueue(next);
        }
        if prev_target && preempted {
            enqueue(prev, cpu);
        }
        if next_tid == 0 {
            // Idle runs only on an empty run queue: nobody waits here.
            if let Some(w) = WAITING.get_ptr_mut(cpu) {
                // SAFETY: this CPU's slot of a map value; `generation` is
                // written only here, by this CPU (see `Waiting`).
                unsafe {
                    let generation = core::ptr::read_volatile(&(*w).generation);
                    core::ptr::write_volatile(&mut (*w).generation, generation.wrapping_add(1));
                    core::ptr::write_volatile(&mut (*w).count, 0);
                }
            }
        } else if !prev_target && !next_target {
            foreign = waiting_on(cpu);
        }
    }
    if !prev_target && !next_target && !foreign {
        if next_tid == 0 {
            // The CPU goes idle: nothing would write its stage out for a while.
            flush_stage(&ctx, None);
        }
        return 0;
    }
    if global(&SUMS) != 0 {
        if prev_target {
            sums_out(prev, next, preempted, prev_state);
            if prev_state & TASK_DEAD != 0 {
                sums_end(prev, current);
                end_process(prev_tgid, current as u32, prev);
                let _ = DYING.remove(&(current as u32));
            }
        }
        if next_target {
            sums_in(next);
        }
        let prev_tgid = if prev_target { prev_tgid } else { 0 };
        let next_tgid = if next_target { next_tgid } else { 0 };
        occupancy(&ctx, prev_tgid, next_tgid, next_tid);
        if next_tid == 0 {
            flush_stage(&ctx, None);
        }
        return 0;
    }
    let mut ev = RawEvent::ZERO;
    ev.kind = kind::SWITCH;
    ev.cpu = this_cpu();
    ev.state = prev_state & 0xffff_ffff;
    if preempt & 0xff != 0 {
        ev.flags |= FLAG_PREEMPT;
    }
    if (prev_target && is_child(prev_tgid)) || (!prev_target && is_child(next_tgid)) {
        ev.flags |= FLAG_CHILD;
    }
    fill_current(&mut ev, prev, current, prev_target);
    fill_next(&mut ev, next, next_tgid, next_target);
    if off!(has_sched_info) == 0 {
        ev.flags |= FLAG_NO_SCHED_INFO;
    }
    if foreign {
        ev.prev_off = offcpu::FOREIGN;
    }
    if prev_target {
        prev_counters(&mut ev, prev);
        why_off(&ctx, &mut ev, prev, preempted);
        if prev_state & TASK_DEAD != 0 {
            // Its final switch-out: the thread is gone, and its TID is
            // free for another.
            end_process(prev_tgid, current as u32, prev);
            let _ = DYING.remove(&(current as u32));
        }
    }
    if next_target {
        next_counters(&mut ev, next);
    }
    let idle_next = ev.next_tid == 0;
    emit(&ctx, &mut ev, idle_next);
    0
}

/// `--kernel-sums`: write a [`kind::OCCUPY`] record if this switch
/// changes which traced process the CPU runs (none is 0), or is the CPU's
/// first that involves one. Pinned work that keeps its CPUs writes none
/// after the first, and so do the switches between the threads of one
/// process.
#[inline(always)]
fn occupancy(ctx: &BtfTracePointContext, prev_tgid: u32, next_tgid: u32, next_tid: u32) {
    let Some(seen) = OCCUPIED.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot (the switch program does not nest on a CPU).
    unsafe {
        if prev_tgid == next_tgid && *seen != 0 {
            return;
        }
        *seen = 1;
    }
    let mut ev = RawEvent::ZERO;
    ev.kind = kind::OCCUPY;
    ev.cpu = this_cpu();
    ev.aux0 = prev_tgid;
    ev.aux1 = next_tgid;
    ev.next_tid = next_tid;
    emit(ctx, &mut ev, next_tid == 0);
}

/// `TASK_UNINTERRUPTIBLE` in `prev_state`: the sleep is blocked.
const TASK_UNINTERRUPTIBLE: u64 = 0x2;

/// `task`'s sums, made if it has none (counted as missed if the kernel
/// cannot make them; userspace makes those of the threads there before
/// attaching).
#[inline(always)]
fn sums_of(task: Task) -> Option<&'static mut ThreadSums> {
    let p = SUMS_TASK.get(task, true);
    if p.is_null() {
        bump(counter::MISSED_SUMS, 1);
        return None;
    }
    // SAFETY: this task's value in `SUMS_TASK`; only its switches change
    // it, under the run-queue lock of the CPU it is on.
    Some(unsafe { &mut *p })
}

/// `--kernel-sums`: target `prev` leaves the CPU. What its counters grew
/// by since the last switch seen (runs and waits whose switches the
/// stream lacked included); the run that ends, on the run-queue clock; a
/// wait begins (preempted) or a sleep.
#[inline(always)]
fn sums_out(prev: Task, next: Task, preempted: bool, prev_state: u64) {
    let Some(s) = sums_of(prev) else {
        return;
    };
    let exec = field_u64(prev, off!(sum_exec));
    let rd = field_u64(prev, off!(run_delay));
    let pcount = field_u64(prev, off!(pcount));
    let csw = field_u64(prev, off!(nvcsw)) + field_u64(prev, off!(nivcsw));
    let (run, clock) = run_on_clock(prev);
    let flags = s.flags;
    if flags & sums_flag::SEEN != 0 {
        let grown = exec.saturating_sub(s.last_exec);
        s.runs_exec_ns += grown;
        s.slices += csw.saturating_sub(s.last_csw);
        // Switch-ins the stream lacked since the last switch seen.
        let missed = pcount.saturating_sub(s.last_pcount);
        if missed != 0 {
            add_waits(s, missed, rd.saturating_sub(s.last_rd), flags);
        }
        // The run's length on the run-queue clock; the part the kernel
        // charged is what `sum_exec_runtime` grew by in it (with runs
        // missed, in them too: then the clock part is this run's only).
        s.runs_clock_ns += run;
        let charged = if missed == 0 { grown } else { run.min(grown) };
        s.runs_clock_exec_ns += charged;
        add_cpu(s, this_cpu(), charged);
        if run > s.longest_run_ns {
            s.longest_run_ns = run;
        }
    }
    s.last_exec = exec;
    s.last_rd = rd;
    s.last_pcount = pcount;
    s.last_csw = csw;
    if preempted {
        s.involuntary += 1;
        s.last_preemptor = add_preemptor(s, next);
        s.flags = sums_flag::SEEN | sums_flag::PREEMPTED;
    } else {
        s.last_preemptor = 0;
        s.voluntary += 1;
        s.out_clock = clock;
        let (syscall, iowait) = syscall_and_iowait(prev);
        s.out_reason = reason_key(syscall, iowait);
        s.flags = if prev_state & TASK_UNINTERRUPTIBLE != 0 {
            sums_flag::SEEN | sums_flag::ASLEEP | sums_flag::BLOCKED
        } else {
            sums_flag::SEEN | sums_flag::ASLEEP
        };
    }
}

/// Count `n` waits that together took `ns`, after the switch-out that
/// left `flags` (by cause); each in the histogram at the mean.
#[inline(always)]
fn add_waits(s: &mut ThreadSums, n: u64, ns: u64, flags: u32) {
    s.waits += n;
    s.wait_ns += ns;
    if flags & sums_flag::PREEMPTED != 0 {
        s.waits_preempt += n;
        s.wait_preempt_ns += ns;
        // The waits after the last preemption seen are its preemptor's.
        let i = s.last_preemptor as usize;
        match s.preemptors.get_mut(i.wrapping_sub(1)) {
            Some(p) if i != 0 => p.wait_ns += ns,
            _ => s.other_preempt_wait_ns += ns,
        }
    }
    let each = if n == 1 { ns } else { ns / n };
    let b = sum_bucket(each);
    if b < SUM_BUCKETS {
        s.hist[b] = s.hist[b].wrapping_add(n as u32);
    }
}

/// Add a sleep of `ns` to the slot of its reason (`out_reason`): the slot
/// that has it, else the first free one, else the rest.
#[inline(always)]
fn add_reason(s: &mut ThreadSums, ns: u64) {
    let key = s.out_reason;
    for i in 0..SUM_REASONS {
        let slot = &mut s.reasons[i];
        if slot.key == key || slot.key == 0 {
            slot.key = key;
            slot.count += 1;
            slot.ns += ns;
            return;
        }
    }
    s.other_reason.count += 1;
    s.other_reason.ns += ns;
}

/// Count a preemption by `next` in its slot: the slot that has it, else
/// the first free one, else the rest. Returns 1 + the slot
/// (`SUM_PREEMPTORS + 1`: the rest).
#[inline(always)]
fn add_preemptor(s: &mut ThreadSums, next: Task) -> u32 {
    let tid = task_u32(next, off!(pid));
    for i in 0..SUM_PREEMPTORS {
        let slot = &mut s.preemptors[i];
        if slot.count == 0 {
            slot.tid = tid;
            slot.tgid = task_u32(next, off!(tgid));
            slot.comm = task_comm(next, off!(comm));
            slot.count = 1;
            return i as u32 + 1;
        }
        if slot.tid == tid {
            slot.count += 1;
            return i as u32 + 1;
        }
    }
    s.other_preempts += 1;
    SUM_PREEMPTORS as u32 + 1
}

/// Add `ns` on `cpu` to its slot: the slot that has it, else the first
/// free one, else the rest.
#[inline(always)]
fn add_cpu(s: &mut ThreadSums, cpu: u32, ns: u64) {
    for i in 0..SUM_CPUS {
        let slot = &mut s.cpus[i];
        if slot.cpu == cpu + 1 || slot.cpu == 0 {
            slot.cpu = cpu + 1;
            slot.ns += ns;
            return;
        }
    }
    s.other_cpus_ns += ns;
}

/// `--kernel-sums`: target `p` is being woken (`sched_waking`, under its
/// `pi_lock`, which serializes its wakers; only a task waking itself
/// takes no lock, and a count may then miss a concurrent waking):
/// count the waker in its slot, named as a record would name it.
#[inline(always)]
fn sums_waker(p: Task) {
    let Some(s) = sums_of(p) else {
        return;
    };
    let current = bpf_get_current_pid_tgid();
    let task = current_task();
    let w = wake_context(task);
    let flags = u32::from(w.flags & WakerSum::FLAGS);
    let by_task = w.flags & ctx::MASK == ctx::TASK << ctx::SHIFT;
    let id = if w.flags & FLAG_CTX_FUNCTION != 0 {
        w.function
    } else if w.flags & FLAG_CTX_DETAIL != 0 {
        u64::from(w.detail)
    } else if by_task {
        current & 0xffff_ffff
    } else {
        0
    };
    for i in 0..SUM_WAKERS {
        let slot = &mut s.wakers[i];
        if slot.count == 0 {
            slot.id = id;
            slot.flags = flags;
            if by_task {
                slot.tgid = (current >> 32) as u32;
                slot.comm = task_comm(task, off!(comm));
                let leader = field_u64(task, off!(group_leader)) as Task;
                slot.process = task_comm(leader, off!(comm));
            }
            slot.count = 1;
            return;
        }
        if slot.id == id && slot.flags == flags {
            slot.count += 1;
            return;
        }
    }
    s.other_wakers += 1;
}

/// `--kernel-sums`: target `next` takes the CPU. The waits since the last
/// switch seen (the growth of `run_delay` and `pcount`, which
/// `sched_info_arrive` completes after this tracepoint with the wait
/// ending now: `clock - last_queued`), a run whose switch-out the stream
/// lacked, the sleep before the wait, a change of CPU.
#[inline(always)]
fn sums_in(next: Task) {
    let Some(s) = sums_of(next) else {
        return;
    };
    let cpu = this_cpu();
    let exec = field_u64(next, off!(sum_exec));
    let queued = field_u64(next, off!(last_queued));
    let clock = field_u64(rq_of(next), off!(rq_clock));
    let (tail, arrives) = if queued != 0 {
        (clock.saturating_sub(queued), 1)
    } else {
        (0, 0)
    };
    let rd = field_u64(next, off!(run_delay)) + tail;
    let pcount = field_u64(next, off!(pcount)) + arrives;
    let csw = field_u64(next, off!(nvcsw)) + field_u64(next, off!(nivcsw));
    let flags = s.flags;
    // The one wait since the last switch seen, when it is one.
    let mut single = None;
    if flags & sums_flag::SEEN != 0 {
        s.runs_exec_ns += exec.saturating_sub(s.last_exec);
        s.slices += csw.saturating_sub(s.last_csw);
        let n = pcount.saturating_sub(s.last_pcount);
        let ns = rd.saturating_sub(s.last_rd);
        if n != 0 {
            add_waits(s, n, ns, flags);
        }
        if n == 1 && arrives != 0 {
            single = Some(ns);
        }
    } else if arrives != 0 {
        add_waits(s, 1, tail, flags);
    }
    // A sleep is known whole only when the switch-out that began it is
    // the last seen and one wait followed (ASLEEP is set only with SEEN).
    if let Some(wait) = single
        && flags & sums_flag::ASLEEP != 0
    {
        // The sleep ends where the wait began.
        let off = clock.saturating_sub(wait).saturating_sub(s.out_clock);
        if flags & sums_flag::BLOCKED != 0 {
            s.blocked_ns += off;
        } else {
            s.sleeping_ns += off;
        }
        add_reason(s, off);
    }
    if s.last_cpu != 0 && s.last_cpu != cpu + 1 {
        s.migrations += 1;
    }
    s.last_cpu = cpu + 1;
    s.last_exec = exec;
    s.last_rd = rd;
    s.last_pcount = pcount;
    s.last_csw = csw;
    s.flags = sums_flag::SEEN | sums_flag::RUNNING;
}

/// `--kernel-sums`: target `prev` (the current task) switches out for the
/// last time: its sums and counters go to [`SUMS_ENDED`] before the kernel
/// frees its storage.
#[inline(never)]
fn sums_end(prev: Task, pid_tgid: u64) {
    let p = SUMS_TASK.get(prev, false);
    let (Some(e), Some(seq)) = (SUMS_SCRATCH.get_ptr_mut(0), SUMS_SEQ.get_ptr_mut(0)) else {
        return;
    };
    if p.is_null() {
        return;
    }
    // SAFETY: this CPU's scratch and sequence slots (the switch program
    // does not nest on a CPU), and this task's storage value.
    unsafe {
        let e = &mut *e;
        e.sums = *p;
        e.ts = now();
        e.tid = pid_tgid as u32;
        e.tgid = (pid_tgid >> 32) as u32;
        e.comm = task_comm(prev, off!(comm));
        e.runtime = field_u64(prev, off!(sum_exec));
        e.run_delay = field_u64(prev, off!(run_delay));
        e.pcount = field_u64(prev, off!(pcount));
        e.nvcsw = field_u64(prev, off!(nvcsw));
        e.nivcsw = field_u64(prev, off!(nivcsw));
        let key = (u64::from(this_cpu()) << 48) | *seq;
        *seq += 1;
        if SUMS_ENDED.insert(&key, e, 0).is_err() {
            bump(counter::LOST_SUMS, 1);
        }
    }
}

/// What the current task `prev` is doing as it leaves the CPU: the system
/// call it is in (from its saved user registers) and whether the kernel
/// counts its sleep as I/O wait. Without the offsets (`--no-wait-reasons`,
/// or a kernel whose BTF lacks them): no system call, not I/O wait.
#[inline(always)]
fn syscall_and_iowait(prev: Task) -> (Option<u32>, bool) {
    let (orig_ax, ax) = (global(&WHY.regs_orig_ax), global(&WHY.regs_ax));
    let mut syscall = None;
    if orig_ax != 0 && ax != 0 {
        // SAFETY: plain helper call on the BTF-typed outgoing (current) task; it
        // returns the task's saved user registers (a BTF-typed pointer).
        let regs = unsafe { bpf_task_pt_regs(prev as *mut task_struct) } as Task;
        if !regs.is_null() && field_u64(regs, ax) == SYSCALL_AX {
            syscall = Some(field_u64(regs, orig_ax) as u32);
        }
    }
    let mask = global(&WHY.in_iowait_mask);
    let iowait = mask != 0 && {
        // SAFETY: as in `task_u32`, for the byte that holds the bit.
        let b = unsafe { core::ptr::read(prev.add(global(&WHY.in_iowait) as usize)) };
        u32::from(b) & mask != 0
    };
    (syscall, iowait)
}

/// Why the current task, a target, leaves the CPU: the system call it is
/// in and whether the sleep counts as I/O wait, from its saved user
/// registers and `task_struct`; with `--stacks` and unless `preempted`,
/// its kernel and user stacks.
#[inline(always)]
fn why_off(ctx: &BtfTracePointContext, ev: &mut RawEvent, prev: Task, preempted: bool) {
    let mut bits = offcpu::VALID;
    let (syscall, iowait) = syscall_and_iowait(prev);
    if let Some(nr) = syscall {
        bits |= offcpu::SYSCALL;
        ev.prev_syscall = nr;
    }
    if iowait {
        bits |= offcpu::IOWAIT;
    }
    if global(&WHY.stacks) != 0 && !preempted {
        // A user stack is missing for good reasons too (a kernel thread
        // has none): only a stack taken and not stored is lost.
        match store_stack(ctx, 0) {
            Ok(Some(id)) => {
                bits |= offcpu::KERNEL_STACK;
                ev.prev_kernel_stack = id;
            }
            Ok(None) => {}
            Err(()) => bits |= offcpu::STACK_LOST,
        }
        match store_stack(ctx, BPF_F_USER_STACK as u64) {
            Ok(Some(id)) => {
                bits |= offcpu::USER_STACK;
                ev.prev_user_stack = id;
            }
            Ok(None) => {}
            Err(()) => bits |= offcpu::STACK_LOST,
        }
    }
    ev.prev_off = bits;
}

/// Take the current task's kernel stack (or its user stack, with
/// `BPF_F_USER_STACK` in `flags`) and store it in `STACKS`: its id, `None`
/// when there is no stack to take (`EFAULT`, or no frames), an error when
/// it could not be stored (the map is full, or each id it may take holds
/// another stack).
#[inline(always)]
fn store_stack(ctx: &BtfTracePointContext, flags: u64) -> Result<Option<u32>, ()> {
    let buf = STACK_SCRATCH.get_ptr_mut(0).ok_or(())?;
    // SAFETY: this CPU's scratch slot (no program that uses it nests on a
    // CPU: the scheduler's switch runs with interrupts off), and a helper
    // call that writes at most the size given into it.
    let n = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            (*buf).ips.as_mut_ptr() as *mut core::ffi::c_void,
            (STACK_DEPTH * 8) as u32,
            flags,
        )
    };
    if n <= 0 {
        return if n == 0 || n == -(EFAULT as i64) {
            Ok(None)
        } else {
            Err(())
        };
    }
    // SAFETY: as above.
    let stack = unsafe {
        (*buf).len = n as u64;
        &*buf
    };
    // FNV-1a over every slot's 32-bit halves: the helper zeroes the slots
    // past the stack's frames. The loops over the slots have no exit that
    // depends on the data, so the verifier walks each of them once.
    let mut hash: u32 = 0x811c_9dc5;
    for i in 0..STACK_DEPTH {
        let ip = stack.ips[i];
        hash = (hash ^ ip as u32).wrapping_mul(0x0100_0193);
        hash = (hash ^ (ip >> 32) as u32).wrapping_mul(0x0100_0193);
    }
    for probe in 0..STACK_PROBES {
        let id = hash.wrapping_add(probe) & STACK_ID_MASK;
        if STACKS.insert(&id, stack, BPF_NOEXIST).is_ok() {
            return Ok(Some(id));
        }
        // SAFETY: a value of this map, read only (its entries are never
        // changed once stored, nor deleted while the programs run).
        let held = match unsafe { STACKS.get(&id) } {
            Some(held) => held,
            // Not stored and not there: the map is full.
            None => return Err(()),
        };
        if same_frames(held, stack) {
            return Ok(Some(id));
        }
    }
    Err(())
}

/// Do `a` and `b` hold the same stack (compared in full, without an early
/// exit; see `store_stack`)?
#[inline(always)]
fn same_frames(a: &StackFrames, b: &StackFrames) -> bool {
    let mut differ = a.len ^ b.len;
    for i in 0..STACK_DEPTH {
        differ |= a.ips[i] ^ b.ips[i];
    }
    differ == 0
}

/// `EFAULT`: `bpf_get_stack` found no stack to walk.
const EFAULT: u32 = 14;
/// `BPF_NOEXIST`: store only if the key is not there yet.
const BPF_NOEXIST: u64 = 1;
/// Stack ids are below 2³¹ (userspace numbers the stacks it reads from
/// threads' memory from there up).
const STACK_ID_MASK: u32 = 0x7fff_ffff;

/// Is a target thread waiting on `cpu`'s run queue?
#[inline(always)]
fn waiting_on(cpu: u32) -> bool {
    match WAITING.get(cpu) {
        // SAFETY: a valid map value; a racing add leaves either value.
        Some(w) => (unsafe { core::ptr::read_volatile(&w.count) }) != 0,
        None => false,
    }
}

/// Add `delta` (two's complement) to `count` atomically (see [`Waiting`]).
#[inline(always)]
fn add_count(count: *mut u64, delta: u64) {
    // SAFETY: `count` points into a map value; an atomic add with its
    // result unused is one BPF instruction (`lock ... +=`) on every kernel.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(count, delta);
    }
}

/// Count target thread `task` as waiting on `cpu`, unless it already is
/// (a thread preempted as it went to sleep is woken while still queued).
#[inline(always)]
fn enqueue(task: Task, cpu: u32) {
    let p = QUEUED.get(task, true);
    if p.is_null() {
        return;
    }
    let Some(w) = WAITING.get_ptr_mut(cpu) else {
        return;
    };
    // SAFETY: `p` is this task's value in `QUEUED`, `w` `cpu`'s slot of
    // `WAITING`. A task's value changes at its wakeup (under its
    // `pi_lock`), and at its switches and migrations (under the run-queue
    // lock of the CPU it is on), which do not overlap: a task being woken
    // is neither running nor queued.
    unsafe {
        if *p == 0 {
            let generation = core::ptr::read_volatile(&(*w).generation);
            add_count(&mut (*w).count, 1);
            *p = (generation << 32) | u64::from(cpu + 1);
        }
    }
}

/// Target thread `task` no longer waits (it runs, or moves): uncount it
/// where it was counted, unless that CPU has gone idle since (which set
/// its count back to 0). Returns the CPU it was counted on.
#[inline(always)]
fn unqueue(task: Task) -> Option<u32> {
    let p = QUEUED.get(task, false);
    if p.is_null() {
        return None;
    }
    // SAFETY: as in `enqueue`.
    unsafe {
        let v = *p;
        if v == 0 {
            return None;
        }
        *p = 0;
        let cpu = (v as u32).wrapping_sub(1);
        if let Some(w) = WAITING.get_ptr_mut(cpu)
            && core::ptr::read_volatile(&(*w).generation) as u32 == (v >> 32) as u32
        {
            add_count(&mut (*w).count, u64::MAX);
        }
        Some(cpu)
    }
}

// What the scheduler has done to the two tasks' counters by the time
// `trace_sched_switch` runs (kernel/sched/core.c, `__schedule`):
// - `prev`: `update_curr()` ran during the pick (from `pick_task_fair`, or
//   `put_prev_task`, or the dequeue of a task going to sleep) with the
//   run-queue clock `update_rq_clock()` read at the start of `__schedule`,
//   so `se.sum_exec_runtime` is final for the run; `++*switch_count`
//   (`nvcsw`/`nivcsw`) is done; `sched_info` is untouched until
//   `sched_info_switch()` in `prepare_task_switch()`, after the tracepoint,
//   where only `last_queued` changes (set again if it was preempted).
// - `next`: `set_next_entity()` started its run (`exec_start`), so
//   `se.sum_exec_runtime` is the total before this run; `sched_info_arrive`
//   (after the tracepoint) will add `clock - last_queued` to `run_delay`,
//   set `last_arrival = clock` and bump `pcount`, all only if
//   `last_queued` is set.
// The rq lock is held from before the clock read to after
// `prepare_task_switch()`, so nothing moves in between.

/// Fill the `prev_*` counters of the outgoing target task (the current task).
#[inline(always)]
fn prev_counters(ev: &mut RawEvent, prev: Task) {
    ev.prev_runtime = field_u64(prev, off!(sum_exec));
    ev.prev_nvcsw = field_u64(prev, off!(nvcsw)) as u32;
    ev.prev_nivcsw = field_u64(prev, off!(nivcsw)) as u32;
    ev.flags |= FLAG_PREV_COUNTERS;
    if off!(has_sched_info) != 0 {
        ev.prev_pcount = field_u64(prev, off!(pcount)) as u32;
        let (run, _) = run_on_clock(prev);
        ev.prev_run_clock = run.min(u32::MAX as u64) as u32;
    }
}

/// The run of `prev` (the current task, switching out) on the run-queue
/// clock, from its switch-in (`last_arrival`) to the scheduler's last
/// accounting of it (`update_curr` left `se.exec_start` at `clock_task`
/// then), and that clock. Usually the clock has not moved since; when the
/// pick balanced load for an idle CPU first, it has
/// (`update_blocked_averages` reads it again), and the `clock_task` it
/// moved by is taken back off.
#[inline(always)]
fn run_on_clock(prev: Task) -> (u64, u64) {
    let arrival = field_u64(prev, off!(last_arrival));
    let rq = rq_of(prev);
    let clock = field_u64(rq, off!(rq_clock));
    let since =
        field_u64(rq, off!(rq_clock_task)).saturating_sub(field_u64(prev, off!(exec_start)));
    (clock.saturating_sub(arrival).saturating_sub(since), clock)
}

/// Fill the `next_*` counters of the incoming target task, and its
/// run-queue wait as the kernel accounts it. `sched_info_arrive` adds the
/// wait ending now to `run_delay` only after this tracepoint, from the same
/// run-queue clock, so `run_delay + clock - last_queued` is exactly what
/// `/proc` will show once the switch is done (and `pcount + 1`, when
/// `last_queued` is set: without it the kernel counts no arrival).
#[inline(always)]
fn next_counters(ev: &mut RawEvent, next: Task) {
    ev.next_runtime = field_u64(next, off!(sum_exec));
    ev.flags |= FLAG_NEXT_COUNTERS;
    if off!(has_sched_info) == 0 {
        return;
    }
    let total = field_u64(next, off!(run_delay));
    let queued = field_u64(next, off!(last_queued));
    let mut pcount = field_u64(next, off!(pcount)) as u32;
    let mut waited = 0;
    if queued != 0 {
        waited = field_u64(rq_of(next), off!(rq_clock)).saturating_sub(queued);
        pcount = pcount.wrapping_add(1);
    }
    let total = total.wrapping_add(waited);
    ev.next_pcount = pcount;
    ev.aux0 = total as u32;
    ev.aux1 = (total >> 32) as u32;
    ev.state |= waited.min(u32::MAX as u64) << 32;
    if global(&RUN_DELAY) != 0 {
        ev.flags |= FLAG_RUN_DELAY;
    }
}

/// Shared body of `sched_waking` and `sched_wakeup_new`: TP_PROTO(struct task_struct *p).
#[inline(always)]
fn wakeup(ctx: &BtfTracePointContext, kind: u16) -> i32 {
    let p: Task = ctx.arg(0);
    let tgid = task_u32(p, off!(tgid));
    if !is_target(tgid, p) {
        return 0;
    }
    queue_woken(p);
    if kind == kind::WAKING {
        if global(&SUMS) != 0 {
            sums_waker(p);
            return 0;
        }
        if global(&RUN_DELAY) != 0 {
            // Wakeups are not recorded: attached for who ran instead only.
            return 0;
        }
    }
    let mut ev = RawEvent::ZERO;
    ev.kind = kind;
    ev.cpu = this_cpu();
    ev.aux0 = task_u32(p, off!(cpu));
    // The running task: the waker when the wakeup comes from task context.
    let current = bpf_get_current_pid_tgid();
    let waker_tgid = (current >> 32) as u32;
    let task = current_task();
    fill_current(&mut ev, task, current, false);
    fill_next(&mut ev, p, tgid, true);
    if off!(has_sched_info) != 0 {
        // Its waits so far: not the one this wakeup starts (or finds
        // under way), which the kernel adds at a migration or switch-in.
        ev.state = field_u64(p, off!(run_delay));
        ev.flags |= FLAG_WAKEE_RUN_DELAY;
        // A task asleep has no wait under way in `sched_info`, unless the
        // kernel queued it again while it slept (see `FLAG_WAKEE_QUEUED`).
        if kind == kind::WAKING && field_u64(p, off!(last_queued)) != 0 {
            ev.flags |= FLAG_WAKEE_QUEUED;
        }
    }
    if kind == kind::WAKING {
        let w = wake_context(task);
        ev.flags |= w.flags;
        if w.flags & FLAG_CTX_DETAIL != 0 {
            ev.aux1 = w.detail;
        }
        if w.flags & FLAG_CTX_FUNCTION != 0 {
            ev.prev_runtime = w.function;
        }
    }
    if ev.flags & ctx::MASK == ctx::TASK << ctx::SHIFT && !is_target(waker_tgid, task) {
        waker_process(&mut ev, task);
    }
    emit(ctx, &mut ev, false);
    0
}

/// Name the process of a waker outside the traced processes: its thread
/// group leader's `comm`, in the bytes `FLAG_WAKER_PROCESS` describes.
#[inline(always)]
fn waker_process(ev: &mut RawEvent, current: Task) {
    let leader = field_u64(current, off!(group_leader)) as Task;
    let name = task_comm(leader, off!(comm));
    let word = |i: usize| u32::from_le_bytes([name[i], name[i + 1], name[i + 2], name[i + 3]]);
    ev.next_runtime = u64::from(word(0)) | u64::from(word(4)) << 32;
    ev.prev_run_clock = word(8);
    ev.prev_pcount = word(12);
    ev.flags |= FLAG_WAKER_PROCESS;
}

/// This CPU's `preempt_count`. On x86 it is the per-CPU variable
/// `__preempt_count`, at a fixed distance from the CPU's `struct rq` in the
/// per-CPU area; the `rq` comes from the current task (`se.cfs_rq->rq`), and
/// the address is outside any BTF-typed object, hence a probe read (about
/// 20 ns). Elsewhere it is a field of the current task's `thread_info`.
#[inline(always)]
fn preempt_count(current: Task) -> Option<u32> {
    let in_task = off!(preempt_count_in_task);
    if in_task != 0 {
        return Some(task_u32(current, in_task));
    }
    let delta = off!(preempt_count_from_rq);
    if delta == 0 || off!(has_sched_info) == 0 {
        return None;
    }
    let at = (rq_of(current) as u64).wrapping_add(delta as i64 as u64) as *const u32;
    // SAFETY: reads 4 bytes of kernel memory; a fault returns an error.
    unsafe { bpf_probe_read_kernel(at) }.ok()
}

// Bits of `preempt_count` (include/linux/preempt.h).
const SOFTIRQ_OFFSET: u32 = 1 << 8;
const HARDIRQ_MASK: u32 = 0xf << 16;
const NMI_MASK: u32 = 0xf << 20;

/// The context the wakeup is raised in, and the timer, IRQ, softirq or
/// IPI function behind it. Two ways to tell (`WAKE_CONTEXT`): the per-CPU
/// `IRQ_STATE` alone (a map lookup, no more), or this CPU's `preempt_count`
/// (exact even in an interrupt no program brackets, a probe read per
/// wakeup) with `IRQ_STATE` for the names.
#[inline(always)]
fn wake_context(current: Task) -> WakeCtx {
    let mut w = WakeCtx {
        flags: ctx::UNKNOWN << ctx::SHIFT,
        detail: 0,
        function: 0,
    };
    let how = global(&WAKE_CONTEXT);
    if how == mode::OFF {
        return w;
    }
    let Some(st) = IRQ_STATE.get_ptr(0) else {
        return w;
    };
    w.flags = 0;
    // SAFETY: this CPU's slot of a map value.
    let st = unsafe { &*st };
    let hrtimer_hard = get!(st.hrtimer_hard);
    let csd = get!(st.csd);
    let irq = get!(st.irq);
    let hard_seen = hrtimer_hard != 0 || csd != 0 || irq != 0 || get!(st.irq_work) != 0;
    let hrtimer_soft = get!(st.hrtimer_soft);
    let softirq = get!(st.softirq);
    let soft_seen = hrtimer_soft != 0 || softirq != 0;
    let mut kind = if hard_seen {
        ctx::HARDIRQ
    } else if soft_seen {
        ctx::SOFTIRQ
    } else {
        ctx::TASK
    };
    if how == mode::PREEMPT_COUNT {
        let exact = match preempt_count(current) {
            Some(pc) if pc & NMI_MASK != 0 => ctx::NMI,
            Some(pc) if pc & HARDIRQ_MASK != 0 => ctx::HARDIRQ,
            Some(pc) if pc & SOFTIRQ_OFFSET != 0 => ctx::SOFTIRQ,
            Some(_) => ctx::TASK,
            None => ctx::UNKNOWN,
        };
        if exact != kind {
            w.flags |= FLAG_CTX_MISMATCH;
        }
        kind = exact;
    }
    if kind == ctx::HARDIRQ {
        if hrtimer_hard != 0 {
            kind = ctx::HRTIMER;
            w.function = hrtimer_hard;
            w.flags |= FLAG_CTX_FUNCTION;
        } else if irq != 0 {
            w.detail = irq - 1;
            w.flags |= FLAG_CTX_DETAIL;
        }
    } else if kind == ctx::SOFTIRQ {
        if hrtimer_soft != 0 {
            kind = ctx::HRTIMER;
            w.function = hrtimer_soft;
            w.flags |= FLAG_CTX_FUNCTION;
        }
        if softirq != 0 {
            w.detail = softirq - 1;
            w.flags |= FLAG_CTX_DETAIL;
        }
    }
    w.flags |= kind << ctx::SHIFT;
    w
}

/// A wakeup's context as a `sched_waking` record carries it: the
/// `flags` bits ([`ctx`], [`FLAG_CTX_DETAIL`], [`FLAG_CTX_FUNCTION`],
/// [`FLAG_CTX_MISMATCH`]), the softirq vector or IRQ number (`aux1`) and
/// the hrtimer callback (`prev_runtime`).
#[derive(Clone, Copy)]
struct WakeCtx {
    flags: u16,
    detail: u32,
    function: u64,
}

#[btf_tracepoint(function = "sched_waking")]
pub fn sched_waking(ctx: BtfTracePointContext) -> i32 {
    wakeup(&ctx, kind::WAKING)
}

#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: BtfTracePointContext) -> i32 {
    wakeup(&ctx, kind::WAKEUP_NEW)
}

/// Target thread `p`, being woken, will wait on the run queue of its CPU
/// (`task_cpu`): count it there from now. Should the wakeup choose another
/// CPU, `sched_migrate_task` follows, and moves the count (a new task's
/// first wakeup, `sched_wakeup_new`, has queued it on its CPU by now). A
/// task the wakeup finds still running (`on_rq` and `on_cpu`: it had not yet left
/// the CPU to sleep) waits nowhere. A task the wakeup finds queued but not
/// running (preempted as it went to sleep, or a sleeper the scheduler
/// dequeues late) is counted already, or from now.
#[inline(always)]
fn queue_woken(p: Task) {
    if global(&WHY.antagonists) == 0 {
        return;
    }
    let (on_cpu, on_rq) = (global(&WHY.on_cpu), global(&WHY.on_rq));
    if on_cpu != 0 && on_rq != 0 && task_u32(p, on_cpu) != 0 && task_u32(p, on_rq) != 0 {
        return;
    }
    enqueue(p, task_u32(p, off!(cpu)));
}

// TP_PROTO(struct task_struct *p, int dest_cpu)
#[btf_tracepoint(function = "sched_migrate_task")]
pub fn sched_migrate_task(ctx: BtfTracePointContext) -> i32 {
    let p: Task = ctx.arg(0);
    let tgid = task_u32(p, off!(tgid));
    if !is_target(tgid, p) {
        return 0;
    }
    let dest: u64 = ctx.arg(1);
    if global(&WHY.antagonists) != 0 {
        // A queued thread moves to another run queue, or a thread being
        // woken (counted at `sched_waking`) to the CPU the wakeup chose.
        if unqueue(p).is_some() {
            enqueue(p, dest as u32);
        }
    }
    if global(&SUMS) != 0 {
        // Counted at the next switch-in, as a run on another CPU.
        return 0;
    }
    let mut ev = RawEvent::ZERO;
    ev.kind = kind::MIGRATE;
    ev.cpu = this_cpu();
    ev.aux0 = task_u32(p, off!(cpu));
    ev.aux1 = dest as u32;
    fill_next(&mut ev, p, tgid, true);
    emit(&ctx, &mut ev, false);
    0
}

/// The kernel pointer at byte `off` of `p`, read with a helper: the walk up
/// the cgroup tree goes through `cgroup_subsys_state` pointers that stand
/// for their `struct cgroup`, a cast the verifier's BTF checks would refuse.
#[inline(always)]
fn read_ptr(p: u64, off: u32) -> u64 {
    if p == 0 {
        return 0;
    }
    // SAFETY: a fault-safe kernel read; a bad address reads as an error.
    unsafe { bpf_probe_read_kernel((p + u64::from(off)) as *const u64) }.unwrap_or(0)
}

/// Is `cgroup` (a `struct cgroup` address) the traced cgroup or below it?
#[inline(always)]
fn under_traced_cgroup(mut cgroup: u64) -> bool {
    let id = global(&CGROUP.id);
    let (kn, kn_id) = (global(&CGROUP.kn), global(&CGROUP.kn_id));
    let (self_css, parent) = (global(&CGROUP.self_css), global(&CGROUP.css_parent));
    for _ in 0..MAX_CGROUP_DEPTH {
        if cgroup == 0 {
            return false;
        }
        if read_ptr(read_ptr(cgroup, kn), kn_id) == id {
            return true;
        }
        let css = read_ptr(cgroup, self_css + parent);
        if css == 0 {
            return false;
        }
        cgroup = css - u64::from(self_css);
    }
    false
}

/// `task`'s cgroup v2 cgroup (`task->cgroups->dfl_cgrp`).
#[inline(always)]
fn task_cgroup(task: Task) -> u64 {
    let cset = read_ptr(task as u64, global(&CGROUP.task_cgroups));
    read_ptr(cset, global(&CGROUP.dfl_cgrp))
}

/// Make `task`'s process (TGID `tgid`) one of the further targets, by its
/// identity where this kernel has one (as userspace adds them); false when
/// the map is full (counted as lost).
#[inline(always)]
fn add_target(tgid: u32, task: Task) -> bool {
    if CHILDREN.insert(&tgid, &identity(task), 0).is_err() {
        bump(counter::LOST_CHILDREN, 1);
        return false;
    }
    true
}

/// Whether `name` matches the `--comm` pattern (false without one).
#[inline(always)]
fn name_matches(name: &[u8; COMM_LEN]) -> bool {
    let accept = global(&COMM_PATTERN.accept);
    accept != 0
        && NamePattern::matches_with(
            name,
            |c| global(&COMM_PATTERN.advance[usize::from(c)]),
            global(&COMM_PATTERN.stars),
            accept,
        )
}

/// `task` is in the traced cgroup now, or its process took a name the
/// `--comm` pattern matches: unless its process is a target already, make
/// it one and say so with a [`kind::JOIN`] record.
#[inline(always)]
fn join(ctx: &BtfTracePointContext, task: Task) {
    let tgid = task_u32(task, off!(tgid));
    if tgid == 0 || is_target(tgid, task) {
        return;
    }
    if !add_target(tgid, task) {
        warn!(ctx, "cannot trace process {}: map full", tgid);
        return;
    }
    let mut ev = RawEvent::ZERO;
    ev.kind = kind::JOIN;
    ev.cpu = this_cpu();
    fill_next(&mut ev, task, tgid, true);
    emit(ctx, &mut ev, false);
}

// TP_PROTO(struct cgroup *dst_cgrp, const char *path, struct task_struct
// *task, bool threadgroup): `task` (or its whole process) has moved to
// `dst_cgrp`. Attached only with `--cgroup`.
#[btf_tracepoint(function = "cgroup_attach_task")]
pub fn cgroup_attach_task(ctx: BtfTracePointContext) -> i32 {
    let dst: u64 = ctx.arg(0);
    if global(&CGROUP.id) == 0 || !under_traced_cgroup(dst) {
        return 0;
    }
    let task: Task = ctx.arg(2);
    join(&ctx, task);
    0
}

// TP_PROTO(struct task_struct *parent, struct task_struct *child)
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    let current = bpf_get_current_pid_tgid();
    let parent_tgid = (current >> 32) as u32;
    let parent: Task = ctx.arg(0);
    if !is_target(parent_tgid, parent) {
        // A process created straight into the traced cgroup
        // (`clone3(CLONE_INTO_CGROUP)`): its cgroup is set by now.
        let child: Task = ctx.arg(1);
        if global(&CGROUP.id) != 0
            && task_u32(child, off!(tgid)) != parent_tgid
            && under_traced_cgroup(task_cgroup(child))
        {
            join(&ctx, child);
        }
        return 0;
    }
    let child: Task = ctx.arg(1);
    let child_tgid = task_u32(child, off!(tgid));
    let mut ev = RawEvent::ZERO;
    ev.kind = kind::FORK;
    ev.cpu = this_cpu();
    fill_current(&mut ev, parent, current, true);
    fill_next(&mut ev, child, child_tgid, true);
    if child_tgid != parent_tgid && global(&FOLLOW_CHILDREN) != 0 {
        ev.flags |= FLAG_CHILD;
        if !add_target(child_tgid, child) {
            warn!(&ctx, "cannot follow child process {}: map full", child_tgid);
            // Counted as lost; without its fork the analysis does not take
            // it for a traced process of which nothing more is heard.
            return 0;
        }
        info!(
            &ctx,
            "following child process {} of {}", child_tgid, parent_tgid
        );
    }
    emit(&ctx, &mut ev, false);
    0
}

// TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let p: Task = ctx.arg(0);
    if !is_target(tgid, p) {
        // Its new name is set by now (`begin_new_exec`).
        if name_matches(&task_comm(p, off!(comm))) {
            join(&ctx, p);
        }
        return 0;
    }
    let old_pid: u64 = ctx.arg(1);
    let mut ev = RawEvent::ZERO;
    ev.kind = kind::EXEC;
    ev.cpu = this_cpu();
    ev.aux0 = old_pid as u32;
    fill_next(&mut ev, p, tgid, true);
    emit(&ctx, &mut ev, false);
    0
}

// TP_PROTO(struct task_struct *task, const char *comm): `task` is about to
// take the name `comm`. A process's name is its main thread's, so only a
// leader's rename counts. Attached only with `--comm`.
#[btf_tracepoint(function = "task_rename")]
pub fn task_rename(ctx: BtfTracePointContext) -> i32 {
    let task: Task = ctx.arg(0);
    let tgid = task_u32(task, off!(tgid));
    if tgid == 0 || task_u32(task, off!(pid)) != tgid {
        return 0;
    }
    let src: *const u8 = ctx.arg(1);
    let mut name = [0u8; COMM_LEN];
    // SAFETY: reads at most COMM_LEN bytes of a kernel string into `name`
    // (NUL-terminated, zeros after); on a fault the rename is not checked.
    if unsafe { bpf_probe_read_kernel_str_bytes(src, &mut name) }.is_err() {
        return 0;
    }
    if name_matches(&name) {
        join(&ctx, task);
    }
    0
}

// TP_PROTO(struct task_struct *p, ...)
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    let current = bpf_get_current_pid_tgid();
    let tgid = (current >> 32) as u32;
    let p: Task = ctx.arg(0);
    if !is_target(tgid, p) {
        return 0;
    }
    // Its final switch-out may come after its process is released. (An
    // LRU map makes room rather than fail; should it fail all the same, that
    // switch-out is missing, and the exit record still ends the thread.)
    let _ = DYING.insert(&(current as u32), &identity(p), 0);
    let mut ev = RawEvent::ZERO;
    ev.kind = kind::EXIT;
    ev.cpu = this_cpu();
    fill_current(&mut ev, p, current, true);
    if off!(has_sched_info) != 0 {
        // All its waits: a run whose switch-in the stream lacked leaves
        // the wait before it in nothing else once the thread is gone.
        ev.state = field_u64(p, off!(run_delay));
        ev.flags |= FLAG_WAKEE_RUN_DELAY;
    }
    emit(&ctx, &mut ev, false);
    0
}

// TP_PROTO(struct hrtimer *hrtimer, ktime_t *now): the timer tick, among
// others. A busy CPU whose stage holds old records writes them out here, so
// no record waits much longer than `STAGE_MAX_AGE_NS` plus a tick.
#[btf_tracepoint(function = "hrtimer_expire_entry")]
pub fn hrtimer_expire_entry(ctx: BtfTracePointContext) -> i32 {
    flush_stage(&ctx, Some(STAGE_MAX_AGE_NS));
    let timer: Task = ctx.arg(0);
    set_hrtimer(timer, field_u64(timer, off!(hrtimer_function)));
    0
}

// TP_PROTO(struct hrtimer *hrtimer): the callback has returned.
#[btf_tracepoint(function = "hrtimer_expire_exit")]
pub fn hrtimer_expire_exit(ctx: BtfTracePointContext) -> i32 {
    let timer: Task = ctx.arg(0);
    set_hrtimer(timer, 0);
    0
}

/// Note (or clear, with 0) the hrtimer callback running on this CPU, in
/// the slot of its context: a hard timer's callback runs in the timer
/// interrupt, a soft one's in the `HRTIMER_SOFTIRQ` softirq, which a hard
/// interrupt can interrupt.
#[inline(always)]
fn set_hrtimer(timer: Task, function: u64) {
    if off!(hrtimer_function) == 0 {
        return;
    }
    let soft = field_u8(timer, off!(hrtimer_is_soft)) != 0;
    if let Some(st) = IRQ_STATE.get_ptr_mut(0) {
        // SAFETY: this CPU's slot of a map value.
        let st = unsafe { &mut *st };
        if soft {
            set!(st.hrtimer_soft, function);
        } else {
            set!(st.hrtimer_hard, function);
        }
    }
}

/// Change this CPU's `IRQ_STATE`.
#[inline(always)]
fn irq_state(f: impl FnOnce(&mut IrqState)) {
    if let Some(st) = IRQ_STATE.get_ptr_mut(0) {
        // SAFETY: this CPU's slot of a map value; only programs on this
        // CPU change it, each in its own interrupt level.
        f(unsafe { &mut *st });
    }
}

// TP_PROTO(unsigned int vec_nr)
#[btf_tracepoint(function = "softirq_entry")]
pub fn softirq_entry(ctx: BtfTracePointContext) -> i32 {
    let vec: u64 = ctx.arg(0);
    irq_state(|st| set!(st.softirq, vec as u32 + 1));
    0
}

#[btf_tracepoint(function = "softirq_exit")]
pub fn softirq_exit(_ctx: BtfTracePointContext) -> i32 {
    irq_state(|st| set!(st.softirq, 0));
    0
}

// TP_PROTO(int irq, struct irqaction *action)
#[btf_tracepoint(function = "irq_handler_entry")]
pub fn irq_handler_entry(ctx: BtfTracePointContext) -> i32 {
    let irq: u64 = ctx.arg(0);
    irq_state(|st| set!(st.irq, irq as u32 + 1));
    0
}

// TP_PROTO(int irq, struct irqaction *action, int ret)
#[btf_tracepoint(function = "irq_handler_exit")]
pub fn irq_handler_exit(_ctx: BtfTracePointContext) -> i32 {
    irq_state(|st| set!(st.irq, 0));
    0
}

// TP_PROTO(smp_call_func_t func, call_single_data_t *csd): a function run
// by an IPI (or flushed by its CPU going idle). The verifier does not let a
// `tp_btf` program read a function-pointer argument, so the function is not
// named.
#[btf_tracepoint(function = "csd_function_entry")]
pub fn csd_function_entry(_ctx: BtfTracePointContext) -> i32 {
    irq_state(|st| set!(st.csd, 1));
    0
}

#[btf_tracepoint(function = "csd_function_exit")]
pub fn csd_function_exit(_ctx: BtfTracePointContext) -> i32 {
    irq_state(|st| set!(st.csd, 0));
    0
}

// x86: TP_PROTO(int vector), around the irq_work interrupt.
#[btf_tracepoint(function = "irq_work_entry")]
pub fn irq_work_entry(_ctx: BtfTracePointContext) -> i32 {
    irq_state(|st| set!(st.irq_work, 1));
    0
}

#[btf_tracepoint(function = "irq_work_exit")]
pub fn irq_work_exit(_ctx: BtfTracePointContext) -> i32 {
    irq_state(|st| set!(st.irq_work, 0));
    0
}

/// The heartbeat: userspace runs this (never attached) on each CPU through
/// `BPF_PROG_TEST_RUN` with `BPF_F_TEST_RUN_ON_CPU`, in an IPI, or directly
/// on its own CPU. Holding the stage, it writes it out and then a
/// `kind::MARK` record: every record this CPU time-stamped before the mark
/// precedes it in the ring buffer, so userspace may release events up to
/// the oldest of the CPUs' marks, an idle CPU's included. If a program on
/// the CPU holds the stage (the IPI interrupted it), there is no mark this
/// time.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn progress_mark(ctx: RawTracePointContext) -> i32 {
    let Some(stage) = claim_stage() else {
        return mark_result::BUSY as i32;
    };
    flush(&ctx, stage);
    let mut ev = RawEvent::ZERO;
    ev.kind = kind::MARK;
    ev.cpu = this_cpu();
    ev.ts_ns = now();
    let written = write_direct(&ev);
    release_stage(stage);
    if written {
        mark_result::WRITTEN as i32
    } else {
        mark_result::RING_FULL as i32
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
