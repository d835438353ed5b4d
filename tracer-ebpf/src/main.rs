//! schedtrace's kernel side: raw tracepoint programs on the scheduler's
//! tracepoints that keep only the events of the target process (and, with
//! `--follow-children`, the processes it forks) and write them to one BPF
//! ring buffer.
//!
//! Why raw tracepoints: they get the tracepoint's `TP_PROTO` arguments (the
//! `task_struct` pointers) without the classic tracepoint's record copy, which
//! is most of a classic tracepoint's cost. Task fields are read at offsets the
//! loader takes from the kernel's BTF (`OFFSETS`), since aya-ebpf has no CO-RE.
//!
//! Filtering: the TGID of the outgoing task of a switch is the current
//! task's (`bpf_get_current_pid_tgid`); the incoming task's is read from its
//! `task_struct`. Threads created after attach therefore match with no map
//! update. A record that cannot be reserved is counted per CPU in `LOST`.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
    },
    macros::{map, raw_tracepoint},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::RawTracePointContext,
};
use aya_log_ebpf::{info, warn};
use tracer_common::{
    COMM_LEN, DEFAULT_RING_BYTES, FLAG_CHILD, FLAG_PREEMPT, MAX_CHILDREN, RawEvent, TaskOffsets,
    counter, kind,
};

/// TGID of the traced process; set by the loader before load.
#[unsafe(no_mangle)]
static TARGET_TGID: u32 = 0;
/// Nonzero: processes forked by a target are added to `CHILDREN`.
#[unsafe(no_mangle)]
static FOLLOW_CHILDREN: u32 = 0;
/// Wake the reader once this many bytes wait in the ring buffer; below that,
/// records are submitted without a wakeup and the reader drains on a timer.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 1 << 20;
/// `task_struct` field offsets from the running kernel's BTF.
#[unsafe(no_mangle)]
static OFFSETS: TaskOffsets = TaskOffsets {
    pid: 0,
    tgid: 0,
    prio: 0,
    comm: 0,
    cpu: 0,
    _reserved: 0,
};

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// TGIDs of followed child processes (`--follow-children`).
#[map]
static CHILDREN: HashMap<u32, u32> = HashMap::with_max_entries(MAX_CHILDREN, 0);

#[inline(always)]
fn global<T: Copy>(v: &T) -> T {
    // SAFETY: reading a global that the loader patched before load; volatile
    // so that the compiler does not fold the compile-time zero.
    unsafe { core::ptr::read_volatile(v) }
}

/// Is `tgid` one of the processes we trace? The common case (a stranger)
/// costs two compares.
#[inline(always)]
fn is_target(tgid: u32) -> bool {
    if tgid == 0 {
        return false;
    }
    if tgid == global(&TARGET_TGID) {
        return true;
    }
    // SAFETY: the value is only tested for presence.
    global(&FOLLOW_CHILDREN) != 0 && unsafe { CHILDREN.get(&tgid) }.is_some()
}

#[inline(always)]
fn is_child(tgid: u32) -> bool {
    tgid != global(&TARGET_TGID)
}

#[inline(always)]
fn read_u32(task: u64, off: u32) -> u32 {
    // SAFETY: bpf_probe_read_kernel checks the address; failure reads as 0.
    unsafe { bpf_probe_read_kernel((task + off as u64) as *const u32) }.unwrap_or(0)
}

#[inline(always)]
fn read_comm(task: u64, off: u32, dst: &mut [u8; COMM_LEN]) {
    // SAFETY: as above; on failure the name stays zeroed.
    let _ = unsafe { bpf_probe_read_kernel_buf((task + off as u64) as *const u8, dst) };
}

#[inline(always)]
fn current_comm() -> [u8; COMM_LEN] {
    bpf_get_current_comm().unwrap_or([0; COMM_LEN])
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

#[inline(always)]
fn bump(ctx: &RawTracePointContext, index: u32) -> u64 {
    match LOST.get_ptr_mut(index) {
        Some(p) => {
            // SAFETY: per-CPU slot, programs do not nest on one CPU here.
            unsafe {
                *p += 1;
                *p
            }
        }
        None => {
            let _ = ctx;
            0
        }
    }
}

/// Write `ev` to the ring buffer; count it as lost if there is no room.
#[inline(always)]
fn emit(ctx: &RawTracePointContext, ev: &RawEvent) {
    match EVENTS.reserve::<RawEvent>(0) {
        Some(mut entry) => {
            entry.write(*ev);
            let flags = if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= global(&WAKEUP_BYTES) {
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            };
            entry.submit(flags as u64);
        }
        None => {
            // Log only the first loss on each CPU: aya-log's own ring buffer
            // wakes its reader, which must stay out of the hot path.
            if bump(ctx, counter::LOST_EVENTS) == 1 {
                warn!(
                    ctx,
                    "ring buffer full on cpu {}: events are being lost", ev.cpu
                );
            }
        }
    }
}

/// Fill the `next_*` side of `ev` from a `task_struct` pointer. A task
/// outside the traced processes is recorded by TID and name only.
#[inline(always)]
fn fill_next(ev: &mut RawEvent, task: u64, offs: &TaskOffsets, tgid: u32, target: bool) {
    ev.next_tid = read_u32(task, offs.pid);
    if target {
        ev.next_tgid = tgid;
        ev.next_prio = read_u32(task, offs.prio) as i32;
    }
    read_comm(task, offs.comm, &mut ev.next_comm);
}

/// Fill the `prev_*` side of `ev` from the current task (TID and name
/// only when it is not traced).
#[inline(always)]
fn fill_current(ev: &mut RawEvent, task: u64, offs: &TaskOffsets, target: bool) {
    let pid_tgid = bpf_get_current_pid_tgid();
    ev.prev_tid = pid_tgid as u32;
    if target {
        ev.prev_tgid = (pid_tgid >> 32) as u32;
        ev.prev_prio = read_u32(task, offs.prio) as i32;
    }
    ev.prev_comm = current_comm();
}

// TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next,
//          unsigned int prev_state)
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn sched_switch(ctx: RawTracePointContext) -> i32 {
    let prev_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let next: u64 = ctx.arg(2);
    let offs = global(&OFFSETS);
    let next_tgid = read_u32(next, offs.tgid);
    let prev_target = is_target(prev_tgid);
    let next_target = is_target(next_tgid);
    if !prev_target && !next_target {
        return 0;
    }
    let preempt: u64 = ctx.arg(0);
    let prev: u64 = ctx.arg(1);
    let prev_state: u64 = ctx.arg(3);
    let mut ev = RawEvent::ZERO;
    ev.ts_ns = now();
    ev.kind = kind::SWITCH;
    ev.cpu = this_cpu();
    ev.state = prev_state & 0xffff_ffff;
    if preempt & 0xff != 0 {
        ev.flags |= FLAG_PREEMPT;
    }
    if (prev_target && is_child(prev_tgid)) || (!prev_target && is_child(next_tgid)) {
        ev.flags |= FLAG_CHILD;
    }
    fill_current(&mut ev, prev, &offs, prev_target);
    fill_next(&mut ev, next, &offs, next_tgid, next_target);
    emit(&ctx, &ev);
    0
}

/// Shared body of `sched_waking` and `sched_wakeup_new`: TP_PROTO(struct task_struct *p).
#[inline(always)]
fn wakeup(ctx: &RawTracePointContext, kind: u16) -> i32 {
    let p: u64 = ctx.arg(0);
    let offs = global(&OFFSETS);
    let tgid = read_u32(p, offs.tgid);
    if !is_target(tgid) {
        return 0;
    }
    let mut ev = RawEvent::ZERO;
    ev.ts_ns = now();
    ev.kind = kind;
    ev.cpu = this_cpu();
    ev.aux0 = read_u32(p, offs.cpu);
    // The waker is the current task; no task_struct read is needed for it.
    let waker_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    fill_current(&mut ev, 0, &offs, false);
    if is_target(waker_tgid) {
        ev.prev_tgid = waker_tgid;
    }
    fill_next(&mut ev, p, &offs, tgid, true);
    emit(ctx, &ev);
    0
}

#[raw_tracepoint(tracepoint = "sched_waking")]
pub fn sched_waking(ctx: RawTracePointContext) -> i32 {
    wakeup(&ctx, kind::WAKING)
}

#[raw_tracepoint(tracepoint = "sched_wakeup_new")]
pub fn sched_wakeup_new(ctx: RawTracePointContext) -> i32 {
    wakeup(&ctx, kind::WAKEUP_NEW)
}

// TP_PROTO(struct task_struct *p, int dest_cpu)
#[raw_tracepoint(tracepoint = "sched_migrate_task")]
pub fn sched_migrate_task(ctx: RawTracePointContext) -> i32 {
    let p: u64 = ctx.arg(0);
    let offs = global(&OFFSETS);
    let tgid = read_u32(p, offs.tgid);
    if !is_target(tgid) {
        return 0;
    }
    let dest: u64 = ctx.arg(1);
    let mut ev = RawEvent::ZERO;
    ev.ts_ns = now();
    ev.kind = kind::MIGRATE;
    ev.cpu = this_cpu();
    ev.aux0 = read_u32(p, offs.cpu);
    ev.aux1 = dest as u32;
    fill_next(&mut ev, p, &offs, tgid, true);
    emit(&ctx, &ev);
    0
}

// TP_PROTO(struct task_struct *parent, struct task_struct *child)
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let parent_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !is_target(parent_tgid) {
        return 0;
    }
    let parent: u64 = ctx.arg(0);
    let child: u64 = ctx.arg(1);
    let offs = global(&OFFSETS);
    let child_tgid = read_u32(child, offs.tgid);
    let mut ev = RawEvent::ZERO;
    ev.ts_ns = now();
    ev.kind = kind::FORK;
    ev.cpu = this_cpu();
    fill_current(&mut ev, parent, &offs, true);
    fill_next(&mut ev, child, &offs, child_tgid, true);
    if child_tgid != parent_tgid && global(&FOLLOW_CHILDREN) != 0 {
        ev.flags |= FLAG_CHILD;
        if CHILDREN.insert(&child_tgid, &parent_tgid, 0).is_err() {
            bump(&ctx, counter::LOST_CHILDREN);
            warn!(&ctx, "cannot follow child process {}: map full", child_tgid);
        } else {
            info!(
                &ctx,
                "following child process {} of {}", child_tgid, parent_tgid
            );
        }
    }
    emit(&ctx, &ev);
    0
}

// TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !is_target(tgid) {
        return 0;
    }
    let p: u64 = ctx.arg(0);
    let old_pid: u64 = ctx.arg(1);
    let offs = global(&OFFSETS);
    let mut ev = RawEvent::ZERO;
    ev.ts_ns = now();
    ev.kind = kind::EXEC;
    ev.cpu = this_cpu();
    ev.aux0 = old_pid as u32;
    fill_next(&mut ev, p, &offs, tgid, true);
    emit(&ctx, &ev);
    0
}

// TP_PROTO(struct task_struct *p, ...)
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(ctx: RawTracePointContext) -> i32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !is_target(tgid) {
        return 0;
    }
    let p: u64 = ctx.arg(0);
    let offs = global(&OFFSETS);
    let mut ev = RawEvent::ZERO;
    ev.ts_ns = now();
    ev.kind = kind::EXIT;
    ev.cpu = this_cpu();
    fill_current(&mut ev, p, &offs, true);
    emit(&ctx, &ev);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
