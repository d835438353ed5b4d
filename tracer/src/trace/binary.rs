//! The binary capture (`--record FILE`): the same [`Record`] stream as the
//! JSON Lines trace, in a compact form that is cheap to write while tracing
//! and fast to read back (`docs/trace-format.md`, "Binary capture").
//!
//! A 20-byte file header (magic, format version, record size, header
//! length) and the JSONL header object, padded with spaces so the records
//! start at a multiple of 8; then fixed-size little-endian records (144
//! bytes in format 2, 88 in format 1, which is still read): events in the
//! layout of the kernel's ring-buffer record as it was when format 1 was
//! defined (kinds 1–7) followed by 56 bytes whose meaning depends on the
//! kind, threads found at attach and loss marks in the same frame (kinds
//! 0x101, 0x102), and one end record (0x103) followed by the JSONL end
//! object, padded likewise. The layout and the kinds are defined here, not
//! taken from `schedtrace_common`, so the file format does not change when
//! the ring-buffer record does.

use std::io::{self, BufRead, Write};

use schedtrace_common::COMM_LEN;

use super::jsonl::{self, write_record as write_json};
use super::validate::{Invalid, Limits};
use super::{Lost, Record, TRACE_SCHEMA_VERSION, ThreadCounters, ThreadInfo, json_message};
use crate::event::{
    Comm, Event, EventKind, KernelWait, NextCounters, OffCpu, PrevCounters, SYMBOL_LEN,
    SwitchCounters, Symbol, Task, WakeContext,
};

const _: () = assert!(COMM_LEN == 16, "the file format stores 16-byte names");

/// First bytes of every binary capture. 0x89 is not ASCII (and cannot start
/// a JSON Lines trace); the newline catches text-mode mangling.
pub(crate) const MAGIC: [u8; 8] = *b"\x89SCHDTR\n";
/// Version of the binary container (the header object has the schema version).
pub(crate) const FORMAT_VERSION: u32 = 2;
/// Bytes of every record written (format 2).
pub(crate) const RECORD_BYTES: usize = 144;
/// Bytes of a record of format 1 (read, not written): the first 88 of format 2's.
pub(crate) const V1_RECORD_BYTES: usize = 88;
/// Bytes after the format-1 part of a record, by kind.
const TAIL_BYTES: usize = RECORD_BYTES - V1_RECORD_BYTES;
/// Bytes before the header object: magic, version, record size, header length.
pub(crate) const PREAMBLE_BYTES: usize = 20;
/// Longest header or end object accepted.
pub(crate) const MAX_META_BYTES: usize = 1 << 20;

/// Record kinds (`docs/trace-format.md` has the table).
pub(crate) mod kind {
    pub(crate) const SWITCH: u16 = 1;
    pub(crate) const WAKEUP: u16 = 2;
    pub(crate) const WAKEUP_NEW: u16 = 3;
    pub(crate) const MIGRATE: u16 = 4;
    pub(crate) const FORK: u16 = 5;
    pub(crate) const EXEC: u16 = 6;
    pub(crate) const EXIT: u16 = 7;
    /// A process entered the traced cgroup (schema version 3): `next_*`
    /// is its thread that did.
    pub(crate) const JOIN: u16 = 8;
    /// A thread present when tracing started: `ts`, `cpu`, `next_tid`,
    /// `next_tgid`, `next_comm`; `aux0` is its state letter.
    pub(crate) const THREAD: u16 = 0x101;
    /// Records lost on `cpu`, noticed at `ts`; `state` is the count.
    pub(crate) const LOST: u16 = 0x102;
    /// The end: `ts` is `end_ns`, `state` the length of the end object that
    /// follows the record (padded with spaces to a multiple of 8).
    pub(crate) const END: u16 = 0x103;
    /// A thread's counters from `/proc` (format 2): `ts`, `next_tid`,
    /// `next_tgid`; bytes 88.. hold runtime, run delay, pcount, nvcsw and
    /// nivcsw, a `u64` each.
    pub(crate) const COUNTERS: u16 = 0x105;
    /// An entry of the stack table: `state` is the length of the JSON Lines
    /// `stack` object that follows (padded like the end object).
    pub(crate) const STACK: u16 = 0x104;
}

/// Bytes 128..144 of a switch (issue 16: why its `prev` left the CPU):
/// `ext_a` (u32) at 128, `ext_flags` (u16) at 132, `ext_b` (u64) at 136.
mod ext {
    /// The outgoing thread's [`crate::event::OffCpu`] follows.
    pub(super) const OFF_CPU: u16 = 1;
    /// ... with a system call number in `ext_a`.
    pub(super) const SYSCALL: u16 = 2;
    pub(super) const IOWAIT: u16 = 4;
    /// ... with a kernel stack id in the low half of `ext_b`.
    pub(super) const KSTACK: u16 = 8;
    /// ... with a user stack id in the high half of `ext_b`.
    pub(super) const USTACK: u16 = 16;
    /// ... whose stack the kernel side's map could not hold.
    pub(super) const STACK_LOST: u16 = 32;
}

/// Bytes to add after `len` bytes to reach a multiple of 8.
fn pad8(len: usize) -> usize {
    (8 - len % 8) % 8
}

/// `flags` bit of a switch: it was a preemption.
const FLAG_PREEMPT: u16 = 1;
/// `flags` bit of a switch: the incoming task's run-queue wait follows
/// (`aux0`/`aux1`: `run_delay` low/high; high half of `state`: `queued_ns`).
const FLAG_RUN_DELAY: u16 = 4;

/// A switch's kernel counters (format 2), in the tail: bytes 88..96
/// `prev` runtime, 96..104 `next` runtime, 104..112 `prev`'s run on the
/// run-queue clock, then `u32`s: 112 `prev` pcount, 116 nvcsw, 120
/// nivcsw, 124 `next` pcount. These flags say which are there.
mod counters {
    /// `prev`'s runtime, nvcsw and nivcsw.
    pub(super) const PREV: u16 = 1 << 3;
    /// `next`'s runtime.
    pub(super) const NEXT: u16 = 1 << 4;
    pub(super) const PREV_RUN_CLOCK: u16 = 1 << 5;
    pub(super) const PREV_PCOUNT: u16 = 1 << 6;
    pub(super) const NEXT_PCOUNT: u16 = 1 << 7;
}

/// A wakeup's context: bits 6–8 of `flags` (0: a task woke it).
mod wake {
    pub(super) const SHIFT: u16 = 6;
    pub(super) const MASK: u16 = 0b111 << SHIFT;
    pub(super) const TASK: u16 = 0;
    pub(super) const SOFTIRQ: u16 = 1;
    pub(super) const HARDIRQ: u16 = 2;
    pub(super) const NMI: u16 = 3;
    pub(super) const TIMER: u16 = 4;
    pub(super) const UNKNOWN: u16 = 7;
    /// `aux1` holds the softirq vector or the IRQ number.
    pub(super) const DETAIL: u16 = 1 << 9;
    /// Bytes 88..120 hold the timer's callback or the IRQ handler's name.
    pub(super) const NAME: u16 = 1 << 10;
    /// The timer ran in the `HRTIMER` softirq.
    pub(super) const SOFT: u16 = 1 << 11;
    /// Bytes 120..136 hold the name of the waker's process.
    pub(super) const PROCESS: u16 = 1 << 12;
    /// Where in the tail (bytes 88..) the process name lies.
    pub(super) const PROCESS_AT: usize = 32;
    /// `state` holds the wakee's run delay as the wakeup found it (of an
    /// exit record: the exiting task's).
    pub(super) const RUN_DELAY: u16 = 1 << 13;
    /// The kernel was already counting a wait for the wakee (`wakee_queued`).
    pub(super) const QUEUED: u16 = 1 << 14;
}

/// One record, decoded from its 88 bytes. The meaning of `prev_*`,
/// `next_*`, `aux*` and `state` depends on `kind`; unused fields are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    ts_ns: u64,
    state: u64,
    kind: u16,
    flags: u16,
    cpu: u32,
    aux0: u32,
    aux1: u32,
    prev_tid: u32,
    prev_tgid: u32,
    next_tid: u32,
    next_tgid: u32,
    prev_prio: i32,
    next_prio: i32,
    prev_comm: [u8; COMM_LEN],
    next_comm: [u8; COMM_LEN],
    /// Bytes 88.. (format 2), by kind.
    tail: [u8; TAIL_BYTES],
}

impl Slot {
    const ZERO: Slot = Slot {
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
        tail: [0; TAIL_BYTES],
    };

    fn set_prev(&mut self, t: &Task) {
        self.prev_tid = t.tid;
        self.prev_tgid = t.tgid;
        self.prev_comm = *t.comm.as_bytes();
        self.prev_prio = t.prio;
    }

    fn set_next(&mut self, t: &Task) {
        self.next_tid = t.tid;
        self.next_tgid = t.tgid;
        self.next_comm = *t.comm.as_bytes();
        self.next_prio = t.prio;
    }

    fn prev(&self) -> Task {
        Task {
            tid: self.prev_tid,
            tgid: self.prev_tgid,
            comm: Comm::from_bytes(self.prev_comm),
            prio: self.prev_prio,
        }
    }

    fn next(&self) -> Task {
        Task {
            tid: self.next_tid,
            tgid: self.next_tgid,
            comm: Comm::from_bytes(self.next_comm),
            prio: self.next_prio,
        }
    }

    fn from_event(e: &Event) -> Slot {
        let mut r = Slot::ZERO;
        r.ts_ns = e.ts;
        r.cpu = e.cpu;
        match &e.kind {
            EventKind::Switch {
                prev,
                next,
                prev_state,
                preempt,
                next_wait,
                counters,
                prev_off,
            } => {
                r.kind = kind::SWITCH;
                if let Some(off) = prev_off {
                    r.set_off(off);
                }
                r.state = *prev_state & 0xffff_ffff;
                r.flags = if *preempt { FLAG_PREEMPT } else { 0 };
                r.set_counters(counters);
                if let Some(w) = next_wait {
                    r.flags |= FLAG_RUN_DELAY;
                    r.aux0 = w.run_delay_ns as u32;
                    r.aux1 = (w.run_delay_ns >> 32) as u32;
                    r.state |= w.queued_ns.min(u32::MAX.into()) << 32;
                }
                r.set_prev(prev);
                r.set_next(next);
            }
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
                r.kind = if *new { kind::WAKEUP_NEW } else { kind::WAKEUP };
                r.aux0 = *wakee_cpu;
                if let Some(d) = wakee_run_delay_ns {
                    r.flags |= wake::RUN_DELAY;
                    r.state = *d;
                }
                if *wakee_queued {
                    r.flags |= wake::QUEUED;
                }
                r.set_prev(waker);
                r.set_next(wakee);
                r.set_context(*context);
                if let Some(p) = waker_process {
                    r.flags |= wake::PROCESS;
                    r.tail[wake::PROCESS_AT..wake::PROCESS_AT + COMM_LEN]
                        .copy_from_slice(p.as_bytes());
                }
            }
            EventKind::Migrate { task, from, to } => {
                r.kind = kind::MIGRATE;
                r.aux0 = *from;
                r.aux1 = *to;
                r.set_next(task);
            }
            EventKind::Fork { parent, child } => {
                r.kind = kind::FORK;
                r.set_prev(parent);
                r.set_next(child);
            }
            EventKind::Exec { task, old_tid } => {
                r.kind = kind::EXEC;
                r.aux0 = *old_tid;
                r.set_next(task);
            }
            EventKind::Exit { task, run_delay_ns } => {
                r.kind = kind::EXIT;
                if let Some(d) = run_delay_ns {
                    r.flags |= wake::RUN_DELAY;
                    r.state = *d;
                }
                r.set_prev(task);
            }
            EventKind::Join { task } => {
                r.kind = kind::JOIN;
                r.set_next(task);
            }
        }
        r
    }

    fn tail_u64(&self, at: usize) -> u64 {
        let i = at - V1_RECORD_BYTES;
        u64::from_le_bytes(self.tail[i..i + 8].try_into().expect("8 bytes"))
    }

    fn tail_u32(&self, at: usize) -> u32 {
        let i = at - V1_RECORD_BYTES;
        u32::from_le_bytes(self.tail[i..i + 4].try_into().expect("4 bytes"))
    }

    fn set_tail(&mut self, at: usize, bytes: &[u8]) {
        let i = at - V1_RECORD_BYTES;
        self.tail[i..i + bytes.len()].copy_from_slice(bytes);
    }

    fn ext_flags(&self) -> u16 {
        let i = 132 - V1_RECORD_BYTES;
        u16::from_le_bytes(self.tail[i..i + 2].try_into().expect("2 bytes"))
    }

    fn set_ext(&mut self, a: u32, flags: u16, b: u64) {
        self.set_tail(128, &a.to_le_bytes());
        self.set_tail(132, &flags.to_le_bytes());
        self.set_tail(136, &b.to_le_bytes());
    }

    fn set_off(&mut self, off: &OffCpu) {
        let (mut f, mut a, mut b) = (ext::OFF_CPU, 0, 0u64);
        if let Some(nr) = off.syscall {
            f |= ext::SYSCALL;
            a = nr;
        }
        if off.iowait {
            f |= ext::IOWAIT;
        }
        if let Some(id) = off.kernel_stack {
            f |= ext::KSTACK;
            b |= u64::from(id);
        }
        if let Some(id) = off.user_stack {
            f |= ext::USTACK;
            b |= u64::from(id) << 32;
        }
        if off.stack_lost {
            f |= ext::STACK_LOST;
        }
        self.set_ext(a, f, b);
    }

    fn off(&self) -> Option<OffCpu> {
        let f = self.ext_flags();
        let (a, b) = (self.tail_u32(128), self.tail_u64(136));
        (f & ext::OFF_CPU != 0).then(|| OffCpu {
            syscall: (f & ext::SYSCALL != 0).then_some(a),
            iowait: f & ext::IOWAIT != 0,
            kernel_stack: (f & ext::KSTACK != 0).then_some(b as u32),
            user_stack: (f & ext::USTACK != 0).then_some((b >> 32) as u32),
            stack_lost: f & ext::STACK_LOST != 0,
        })
    }

    fn set_counters(&mut self, c: &SwitchCounters) {
        if let Some(p) = &c.prev {
            self.flags |= counters::PREV;
            self.set_tail(88, &p.runtime_ns.to_le_bytes());
            if let Some(v) = p.run_clock_ns {
                self.flags |= counters::PREV_RUN_CLOCK;
                self.set_tail(104, &v.to_le_bytes());
            }
            if let Some(v) = p.pcount {
                self.flags |= counters::PREV_PCOUNT;
                self.set_tail(112, &v.to_le_bytes());
            }
            self.set_tail(116, &p.nvcsw.to_le_bytes());
            self.set_tail(120, &p.nivcsw.to_le_bytes());
        }
        if let Some(n) = &c.next {
            self.flags |= counters::NEXT;
            self.set_tail(96, &n.runtime_ns.to_le_bytes());
            if let Some(v) = n.pcount {
                self.flags |= counters::NEXT_PCOUNT;
                self.set_tail(124, &v.to_le_bytes());
            }
        }
    }

    fn counters(&self) -> SwitchCounters {
        let has = |f: u16| self.flags & f != 0;
        SwitchCounters {
            prev: has(counters::PREV).then(|| PrevCounters {
                runtime_ns: self.tail_u64(88),
                run_clock_ns: has(counters::PREV_RUN_CLOCK).then(|| self.tail_u64(104)),
                pcount: has(counters::PREV_PCOUNT).then(|| self.tail_u32(112)),
                nvcsw: self.tail_u32(116),
                nivcsw: self.tail_u32(120),
            }),
            next: has(counters::NEXT).then(|| NextCounters {
                runtime_ns: self.tail_u64(96),
                pcount: has(counters::NEXT_PCOUNT).then(|| self.tail_u32(124)),
            }),
        }
    }

    /// A wakeup's context into `flags`, `aux1` and the name bytes.
    fn set_context(&mut self, c: WakeContext) {
        let (code, detail, name) = match c {
            WakeContext::Task => (wake::TASK, None, None),
            WakeContext::Timer { function, soft } => {
                if soft {
                    self.flags |= wake::SOFT;
                }
                (wake::TIMER, None, function)
            }
            WakeContext::Softirq { vector } => (wake::SOFTIRQ, vector, None),
            WakeContext::Hardirq { irq, name } => (wake::HARDIRQ, irq, name),
            WakeContext::Nmi => (wake::NMI, None, None),
            WakeContext::Unknown => (wake::UNKNOWN, None, None),
        };
        self.flags |= code << wake::SHIFT;
        if let Some(d) = detail {
            self.flags |= wake::DETAIL;
            self.aux1 = d;
        }
        if let Some(n) = name {
            self.flags |= wake::NAME;
            self.tail[..SYMBOL_LEN].copy_from_slice(n.as_bytes());
        }
    }

    fn context(&self) -> WakeContext {
        let detail = (self.flags & wake::DETAIL != 0).then_some(self.aux1);
        let name = (self.flags & wake::NAME != 0).then(|| {
            let mut b = [0u8; SYMBOL_LEN];
            b.copy_from_slice(&self.tail[..SYMBOL_LEN]);
            Symbol::from_bytes(b)
        });
        match (self.flags & wake::MASK) >> wake::SHIFT {
            wake::TASK => WakeContext::Task,
            wake::SOFTIRQ => WakeContext::Softirq { vector: detail },
            wake::HARDIRQ => WakeContext::Hardirq { irq: detail, name },
            wake::NMI => WakeContext::Nmi,
            wake::TIMER => WakeContext::Timer {
                function: name,
                soft: self.flags & wake::SOFT != 0,
            },
            _ => WakeContext::Unknown,
        }
    }

    /// The thread found at attach that a [`kind::THREAD`] record holds.
    fn thread_info(&self) -> ThreadInfo {
        ThreadInfo {
            ts: self.ts_ns,
            tid: self.next_tid,
            tgid: self.next_tgid,
            comm: Comm::from_bytes(self.next_comm),
            state: char::from_u32(self.aux0).unwrap_or('?'),
            cpu: self.cpu,
            syscall: self.aux1.checked_sub(1),
        }
    }

    /// The thread's counters that a [`kind::COUNTERS`] record holds.
    fn thread_counters(&self) -> ThreadCounters {
        ThreadCounters {
            ts: self.ts_ns,
            tid: self.next_tid,
            tgid: self.next_tgid,
            runtime_ns: self.tail_u64(88),
            run_delay_ns: self.tail_u64(96),
            pcount: self.tail_u64(104),
            nvcsw: self.tail_u64(112),
            nivcsw: self.tail_u64(120),
        }
    }

    /// The event this record holds; `None` for other kinds.
    fn event(&self) -> Option<Event> {
        let kind = match self.kind {
            kind::SWITCH => EventKind::Switch {
                prev: self.prev(),
                next: self.next(),
                prev_state: self.state & 0xffff_ffff,
                preempt: self.flags & FLAG_PREEMPT != 0,
                next_wait: (self.flags & FLAG_RUN_DELAY != 0).then(|| KernelWait {
                    run_delay_ns: u64::from(self.aux0) | u64::from(self.aux1) << 32,
                    queued_ns: self.state >> 32,
                }),
                counters: self.counters(),
                prev_off: self.off(),
            },
            kind::WAKEUP | kind::WAKEUP_NEW => EventKind::Wakeup {
                waker: self.prev(),
                wakee: self.next(),
                wakee_cpu: self.aux0,
                wakee_run_delay_ns: (self.flags & wake::RUN_DELAY != 0).then_some(self.state),
                wakee_queued: self.flags & wake::QUEUED != 0,
                new: self.kind == kind::WAKEUP_NEW,
                context: self.context(),
                waker_process: (self.flags & wake::PROCESS != 0).then(|| {
                    let mut b = [0u8; COMM_LEN];
                    b.copy_from_slice(&self.tail[wake::PROCESS_AT..wake::PROCESS_AT + COMM_LEN]);
                    Comm::from_bytes(b)
                }),
            },
            kind::MIGRATE => EventKind::Migrate {
                task: self.next(),
                from: self.aux0,
                to: self.aux1,
            },
            kind::FORK => EventKind::Fork {
                parent: self.prev(),
                child: self.next(),
            },
            kind::EXEC => EventKind::Exec {
                task: self.next(),
                old_tid: self.aux0,
            },
            kind::EXIT => EventKind::Exit {
                task: self.prev(),
                run_delay_ns: (self.flags & wake::RUN_DELAY != 0).then_some(self.state),
            },
            kind::JOIN => EventKind::Join { task: self.next() },
            _ => return None,
        };
        Some(Event {
            ts: self.ts_ns,
            cpu: self.cpu,
            kind,
        })
    }
}

fn encode_raw(r: &Slot) -> [u8; RECORD_BYTES] {
    let mut b = [0u8; RECORD_BYTES];
    b[0..8].copy_from_slice(&r.ts_ns.to_le_bytes());
    b[8..16].copy_from_slice(&r.state.to_le_bytes());
    b[16..18].copy_from_slice(&r.kind.to_le_bytes());
    b[18..20].copy_from_slice(&r.flags.to_le_bytes());
    b[20..24].copy_from_slice(&r.cpu.to_le_bytes());
    b[24..28].copy_from_slice(&r.aux0.to_le_bytes());
    b[28..32].copy_from_slice(&r.aux1.to_le_bytes());
    b[32..36].copy_from_slice(&r.prev_tid.to_le_bytes());
    b[36..40].copy_from_slice(&r.prev_tgid.to_le_bytes());
    b[40..44].copy_from_slice(&r.next_tid.to_le_bytes());
    b[44..48].copy_from_slice(&r.next_tgid.to_le_bytes());
    b[48..52].copy_from_slice(&r.prev_prio.to_le_bytes());
    b[52..56].copy_from_slice(&r.next_prio.to_le_bytes());
    b[56..72].copy_from_slice(&r.prev_comm);
    b[72..88].copy_from_slice(&r.next_comm);
    b[88..].copy_from_slice(&r.tail);
    b
}

/// A record of either format (`b` is 88 or 144 bytes; a format-1 record
/// has no tail, as if it were zero).
fn decode_raw(b: &[u8]) -> Slot {
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    let u16_at = |i: usize| u16::from_le_bytes(b[i..i + 2].try_into().expect("2 bytes"));
    Slot {
        ts_ns: u64_at(0),
        state: u64_at(8),
        kind: u16_at(16),
        flags: u16_at(18),
        cpu: u32_at(20),
        aux0: u32_at(24),
        aux1: u32_at(28),
        prev_tid: u32_at(32),
        prev_tgid: u32_at(36),
        next_tid: u32_at(40),
        next_tgid: u32_at(44),
        prev_prio: u32_at(48) as i32,
        next_prio: u32_at(52) as i32,
        prev_comm: b[56..72].try_into().expect("16 bytes"),
        next_comm: b[72..88].try_into().expect("16 bytes"),
        tail: b
            .get(V1_RECORD_BYTES..RECORD_BYTES)
            .map_or([0; TAIL_BYTES], |t| t.try_into().expect("the tail")),
    }
}

/// A header or end record as its JSON object, without the newline.
fn json_object(r: &Record) -> io::Result<Vec<u8>> {
    let mut v = Vec::with_capacity(512);
    write_json(&mut v, r)?;
    if v.last() == Some(&b'\n') {
        v.pop();
    }
    Ok(v)
}

/// Write one record of a binary capture. The header must come first and the
/// end record last; events are written as they come (in timestamp order).
pub(crate) fn write_record(out: &mut impl Write, r: &Record) -> io::Result<()> {
    match r {
        Record::Event(e) => out.write_all(&encode_raw(&Slot::from_event(e))),
        Record::Header(_) => {
            let mut obj = json_object(r)?;
            obj.resize(obj.len() + pad8(PREAMBLE_BYTES + obj.len()), b' ');
            out.write_all(&MAGIC)?;
            out.write_all(&FORMAT_VERSION.to_le_bytes())?;
            out.write_all(&(RECORD_BYTES as u32).to_le_bytes())?;
            out.write_all(&(obj.len() as u32).to_le_bytes())?;
            out.write_all(&obj)
        }
        Record::Thread(t) => {
            let mut raw = Slot::ZERO;
            raw.kind = kind::THREAD;
            raw.ts_ns = t.ts;
            raw.cpu = t.cpu;
            raw.aux0 = t.state as u32;
            // 0: none; a system call's number plus one.
            raw.aux1 = t.syscall.map_or(0, |nr| nr.saturating_add(1));
            raw.next_tid = t.tid;
            raw.next_tgid = t.tgid;
            raw.next_comm = *t.comm.as_bytes();
            out.write_all(&encode_raw(&raw))
        }
        Record::Counters(c) => {
            let mut raw = Slot::ZERO;
            raw.kind = kind::COUNTERS;
            raw.ts_ns = c.ts;
            raw.next_tid = c.tid;
            raw.next_tgid = c.tgid;
            for (at, v) in [
                (88, c.runtime_ns),
                (96, c.run_delay_ns),
                (104, c.pcount),
                (112, c.nvcsw),
                (120, c.nivcsw),
            ] {
                raw.set_tail(at, &v.to_le_bytes());
            }
            out.write_all(&encode_raw(&raw))
        }
        Record::Lost(l) => {
            let mut raw = Slot::ZERO;
            raw.kind = kind::LOST;
            raw.ts_ns = l.ts;
            raw.cpu = l.cpu;
            raw.state = l.count;
            out.write_all(&encode_raw(&raw))
        }
        Record::Stack(st) => {
            let mut obj = json_object(r)?;
            obj.resize(obj.len() + pad8(obj.len()), b' ');
            let mut raw = Slot::ZERO;
            raw.kind = kind::STACK;
            raw.aux0 = st.id;
            raw.state = obj.len() as u64;
            out.write_all(&encode_raw(&raw))?;
            out.write_all(&obj)
        }
        Record::End(e) => {
            let mut obj = json_object(r)?;
            obj.resize(obj.len() + pad8(obj.len()), b' ');
            let mut raw = Slot::ZERO;
            raw.kind = kind::END;
            raw.ts_ns = e.end_ns;
            raw.state = obj.len() as u64;
            out.write_all(&encode_raw(&raw))?;
            out.write_all(&obj)
        }
    }
}

/// Why a binary capture could not be read. Records are numbered from 1
/// after the file header; offsets are bytes from the start of the file. No
/// variant has a `source`: each message says everything once.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("reading the capture: {0}")]
    Io(io::Error),
    #[error("not a schedtrace binary capture (wrong magic bytes)")]
    NotBinary,
    #[error("the file header is truncated ({got} of {want} bytes)")]
    ShortHeader { got: usize, want: usize },
    #[error(
        "binary capture format {found} is newer than this schedtrace understands \
         ({FORMAT_VERSION}); upgrade schedtrace"
    )]
    NewerFormat { found: u32 },
    #[error("the file header gives records of {found} bytes; format {version} has {want}")]
    RecordSize {
        found: u32,
        version: u32,
        want: usize,
    },
    #[error("the file header announces a {len}-byte header object (at most {MAX_META_BYTES})")]
    HeaderTooLong { len: u32 },
    #[error("the header object is not a schedtrace trace header")]
    NoHeader,
    #[error(
        "trace schema version {found} is newer than this schedtrace understands \
         ({TRACE_SCHEMA_VERSION}); upgrade schedtrace"
    )]
    NewerVersion { found: u64 },
    #[error("the header object, column {column}: {message}")]
    HeaderJson { column: usize, message: String },
    #[error("the header object: {0}")]
    HeaderInvalid(Invalid),
    #[error("record {record} (byte {offset}): {what}")]
    Invalid {
        record: u64,
        offset: u64,
        what: Invalid,
    },
    #[error("record {record} (byte {offset}): unknown record kind {kind:#x}")]
    UnknownKind { record: u64, offset: u64, kind: u16 },
    #[error(
        "record {record} (byte {offset}): the end record announces a {len}-byte \
         object (at most {MAX_META_BYTES})"
    )]
    EndTooLong { record: u64, offset: u64, len: u64 },
    #[error(
        "record {record} (byte {offset}): the stack record announces a {len}-byte object \
         (at most {MAX_META_BYTES})"
    )]
    StackTooLong { record: u64, offset: u64, len: u64 },
    #[error("record {record} (byte {offset}): the stack object, column {column}: {message}")]
    StackJson {
        record: u64,
        offset: u64,
        column: usize,
        message: String,
    },
    #[error("record {record} (byte {offset}): the end object, column {column}: {message}")]
    EndJson {
        record: u64,
        offset: u64,
        column: usize,
        message: String,
    },
    #[error("record {record} (byte {offset}): data after the end record")]
    AfterEnd { record: u64, offset: u64 },
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Reads a binary capture back as [`Record`]s, checking the file header,
/// the versions, the framing and every value's range ([`Limits`]). No
/// allocation per event. A capture that ends inside a record (schedtrace
/// was killed while writing it) ends there, like one without its end record.
pub(crate) struct BinaryReader<R: BufRead> {
    input: R,
    /// Number of the last record read (0: none yet).
    record: u64,
    /// Bytes consumed so far.
    offset: u64,
    seen_header: bool,
    seen_end: bool,
    limits: Option<Limits>,
    cut: bool,
    /// The file's record size (by its format version).
    record_bytes: usize,
}

impl<R: BufRead> BinaryReader<R> {
    pub(crate) fn new(input: R) -> Self {
        BinaryReader {
            input,
            record: 0,
            offset: 0,
            seen_header: false,
            seen_end: false,
            limits: None,
            cut: false,
            record_bytes: RECORD_BYTES,
        }
    }

    #[cfg(test)]
    /// Did the input end inside a record?
    pub(crate) fn cut(&self) -> bool {
        self.cut
    }

    /// Fill `buf` as far as the input allows; returns the bytes read.
    fn read_full(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            let avail = match self.input.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                break;
            }
            let n = avail.len().min(buf.len() - got);
            buf[got..got + n].copy_from_slice(&avail[..n]);
            self.input.consume(n);
            got += n;
        }
        self.offset += got as u64;
        Ok(got)
    }

    fn read_header(&mut self) -> Result<Record, ReadError> {
        let mut pre = [0u8; PREAMBLE_BYTES];
        let got = self.read_full(&mut pre)?;
        let magic = got.min(MAGIC.len());
        if got == 0 || pre[..magic] != MAGIC[..magic] {
            return Err(ReadError::NotBinary);
        }
        if got < PREAMBLE_BYTES {
            return Err(ReadError::ShortHeader {
                got,
                want: PREAMBLE_BYTES,
            });
        }
        let u32_at = |i: usize| u32::from_le_bytes(pre[i..i + 4].try_into().expect("4 bytes"));
        let (version, size, len) = (u32_at(8), u32_at(12), u32_at(16));
        if version > FORMAT_VERSION {
            return Err(ReadError::NewerFormat { found: version });
        }
        let want = if version <= 1 {
            V1_RECORD_BYTES
        } else {
            RECORD_BYTES
        };
        if size as usize != want {
            return Err(ReadError::RecordSize {
                found: size,
                version,
                want,
            });
        }
        self.record_bytes = want;
        if len as usize > MAX_META_BYTES {
            return Err(ReadError::HeaderTooLong { len });
        }
        let mut obj = vec![0u8; len as usize];
        let got = self.read_full(&mut obj)?;
        if got < obj.len() {
            return Err(ReadError::ShortHeader {
                got: PREAMBLE_BYTES + got,
                want: PREAMBLE_BYTES + obj.len(),
            });
        }
        match jsonl::header_version(&obj) {
            None => return Err(ReadError::NoHeader),
            Some(v) if v > TRACE_SCHEMA_VERSION as u64 => {
                return Err(ReadError::NewerVersion { found: v });
            }
            Some(_) => {}
        }
        match jsonl::record_from_json(&obj) {
            Ok(Record::Header(h)) => {
                self.limits = Some(Limits::from_header(&h).map_err(ReadError::HeaderInvalid)?);
                Ok(Record::Header(h))
            }
            Ok(_) => Err(ReadError::NoHeader),
            Err(e) => {
                let (message, column) = json_message(&e);
                Err(ReadError::HeaderJson { column, message })
            }
        }
    }

    /// The next record's fixed part decoded straight from the input's
    /// buffer when it holds all of it; `None` leaves every other case (a
    /// refill, a cut, an error, a record after the end) to `read_full`.
    fn buffered_slot(&mut self) -> Option<Slot> {
        if self.seen_end {
            return None;
        }
        let n = self.record_bytes;
        let avail = self.input.fill_buf().ok()?;
        let raw = decode_raw(avail.get(..n)?);
        self.input.consume(n);
        self.offset += n as u64;
        Some(raw)
    }

    /// The next record, `None` at the end of the input.
    pub(crate) fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        if !self.seen_header {
            let h = self.read_header()?;
            self.seen_header = true;
            return Ok(Some(h));
        }
        if self.cut {
            return Ok(None);
        }
        let offset = self.offset;
        let raw = match self.buffered_slot() {
            Some(raw) => raw,
            None => match self.read_slot(offset)? {
                Some(raw) => raw,
                None => return Ok(None),
            },
        };
        self.record += 1;
        let record = self.record;
        let rec = match raw.kind {
            kind::THREAD => Record::Thread(raw.thread_info()),
            kind::COUNTERS if self.record_bytes == RECORD_BYTES => {
                Record::Counters(raw.thread_counters())
            }
            kind::LOST => Record::Lost(Lost {
                ts: raw.ts_ns,
                cpu: raw.cpu,
                count: raw.state,
            }),
            kind::END | kind::STACK => match self.meta_record(&raw, record, offset)? {
                Some(meta) => meta,
                None => return Ok(None),
            },
            _ => match raw.event() {
                Some(e) => Record::Event(e),
                None => {
                    return Err(ReadError::UnknownKind {
                        record,
                        offset,
                        kind: raw.kind,
                    });
                }
            },
        };
        if let Some(l) = &self.limits {
            l.check(&rec).map_err(|what| ReadError::Invalid {
                record,
                offset,
                what,
            })?;
        }
        Ok(Some(rec))
    }

    /// The next record's fixed part read with `read_full` (what
    /// [`Self::buffered_slot`] leaves): `None` at the end of the input or
    /// where it ends inside the record.
    fn read_slot(&mut self, offset: u64) -> Result<Option<Slot>, ReadError> {
        let mut buf = [0u8; RECORD_BYTES];
        let b = &mut buf[..self.record_bytes];
        let got = self.read_full(b)?;
        if got == 0 {
            return Ok(None);
        }
        if self.seen_end {
            let record = self.record + 1;
            return Err(ReadError::AfterEnd { record, offset });
        }
        if got < self.record_bytes {
            self.cut = true;
            return Ok(None);
        }
        Ok(Some(decode_raw(&buf[..self.record_bytes])))
    }

    /// An end or a stack record (`raw.kind`), with the JSON object that
    /// follows it; `None` if the input ends inside the object.
    #[cold]
    fn meta_record(
        &mut self,
        raw: &Slot,
        record: u64,
        offset: u64,
    ) -> Result<Option<Record>, ReadError> {
        let is_end = raw.kind == kind::END;
        let len = raw.state;
        if len > MAX_META_BYTES as u64 {
            return Err(if is_end {
                ReadError::EndTooLong {
                    record,
                    offset,
                    len,
                }
            } else {
                ReadError::StackTooLong {
                    record,
                    offset,
                    len,
                }
            });
        }
        let mut obj = vec![0u8; len as usize];
        if self.read_full(&mut obj)? < obj.len() {
            // Cut while the record was being written.
            self.cut = true;
            return Ok(None);
        }
        let rec = jsonl::record_from_json(&obj).map_err(|e| {
            let (message, column) = json_message(&e);
            if is_end {
                ReadError::EndJson {
                    record,
                    offset,
                    column,
                    message,
                }
            } else {
                ReadError::StackJson {
                    record,
                    offset,
                    column,
                    message,
                }
            }
        })?;
        if !matches!(
            (&rec, is_end),
            (Record::End(_), true) | (Record::Stack(_), false)
        ) {
            return Err(ReadError::UnknownKind {
                record,
                offset,
                kind: raw.kind,
            });
        }
        self.seen_end |= is_end;
        Ok(Some(rec))
    }
}

impl<R: BufRead> Iterator for BinaryReader<R> {
    type Item = Result<Record, ReadError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::trace::Format;

    fn read_all(bytes: &[u8]) -> Result<Vec<Record>, ReadError> {
        BinaryReader::new(bytes).collect()
    }

    #[test]
    fn every_record_kind_round_trips() {
        let recs = every_record_kind();
        assert_eq!(read_all(&write_all(Format::Binary, &recs)).unwrap(), recs);
    }

    /// Offsets and kinds of the records after the file header.
    fn frames(bytes: &[u8]) -> Vec<(usize, u16)> {
        let header_len = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
        let mut at = PREAMBLE_BYTES + header_len;
        let mut v = Vec::new();
        while at < bytes.len() {
            let kind = u16::from_le_bytes(bytes[at + 16..at + 18].try_into().unwrap());
            let len = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap()) as usize;
            v.push((at, kind));
            at += RECORD_BYTES;
            if kind == kind::END || kind == kind::STACK {
                at += len;
            }
        }
        assert_eq!(at, bytes.len());
        v
    }

    #[test]
    fn records_have_one_size_and_stay_aligned() {
        let recs = every_record_kind();
        let bytes = write_all(Format::Binary, &recs);
        assert_eq!(&bytes[..8], &MAGIC);
        assert_eq!(&bytes[8..16], &[2, 0, 0, 0, 144, 0, 0, 0]);
        let header_len = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
        assert_eq!((PREAMBLE_BYTES + header_len) % 8, 0);
        let f = frames(&bytes);
        // Every record starts at a multiple of 8; the end record is last.
        assert!(f.iter().all(|(at, _)| at % 8 == 0));
        assert_eq!(f.last().unwrap().1, kind::END);
        assert_eq!(f.iter().filter(|r| r.1 == kind::STACK).count(), 2);
        assert_eq!(f.len(), recs.len() - 1);
        assert_eq!(bytes.len() % 8, 0);
    }

    #[test]
    fn the_record_layout_is_the_documented_one() {
        let mut prev = task(0x0a0b_0c0d);
        prev.prio = -2;
        let e = Event {
            ts: 0x0102_0304_0506_0708,
            cpu: 3,
            kind: EventKind::Switch {
                prev,
                next: task(102),
                prev_state: 0x402,
                preempt: true,
                next_wait: Some(KernelWait {
                    run_delay_ns: 0x1122_3344_5566_7788,
                    queued_ns: 0x99,
                }),
                counters: SwitchCounters {
                    prev: Some(PrevCounters {
                        runtime_ns: 0x1a1b_1c1d_1e1f_2021,
                        run_clock_ns: Some(0x3031_3233),
                        pcount: None,
                        nvcsw: 0x40,
                        nivcsw: 0x41,
                    }),
                    next: Some(NextCounters {
                        runtime_ns: 0x50,
                        pcount: Some(0x51),
                    }),
                },
                prev_off: Some(OffCpu {
                    syscall: Some(0xca),
                    iowait: true,
                    kernel_stack: Some(0x61),
                    user_stack: Some(0x62),
                    stack_lost: true,
                }),
            },
        };
        let b = encode_raw(&Slot::from_event(&e));
        assert_eq!(&b[0..8], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&b[8..16], &(0x99u64 << 32 | 0x402).to_le_bytes());
        // kind 1; flags: preempt, run delay, prev and next counters, prev
        // run clock, next pcount
        assert_eq!(&b[16..20], &[1, 0, 0b1011_1101, 0]);
        assert_eq!(&b[24..28], &0x5566_7788u32.to_le_bytes());
        assert_eq!(&b[28..32], &0x1122_3344u32.to_le_bytes());
        assert_eq!(&b[20..24], &3u32.to_le_bytes());
        assert_eq!(&b[32..36], &0x0a0b_0c0du32.to_le_bytes());
        assert_eq!(&b[40..44], &102u32.to_le_bytes());
        assert_eq!(&b[48..52], &(-2i32).to_le_bytes());
        assert_eq!(&b[56..72], prev.comm.as_bytes());
        assert_eq!(&b[88..96], &0x1a1b_1c1d_1e1f_2021u64.to_le_bytes());
        assert_eq!(&b[96..104], &0x50u64.to_le_bytes());
        assert_eq!(&b[104..112], &0x3031_3233u64.to_le_bytes());
        assert_eq!(&b[112..116], &[0; 4]);
        assert_eq!(&b[116..120], &0x40u32.to_le_bytes());
        assert_eq!(&b[120..124], &0x41u32.to_le_bytes());
        assert_eq!(&b[124..128], &0x51u32.to_le_bytes());
        // Why prev left: syscall, then the bits (off-CPU, syscall, I/O
        // wait, kernel and user stack, stack lost), 2 bytes free, the
        // stack ids.
        assert_eq!(&b[128..132], &0xcau32.to_le_bytes());
        assert_eq!(&b[132..136], &[0b11_1111, 0, 0, 0]);
        assert_eq!(&b[136..140], &0x61u32.to_le_bytes());
        assert_eq!(&b[140..144], &0x62u32.to_le_bytes());
        assert_eq!(decode_raw(&b).event(), Some(e));
    }

    #[test]
    fn a_wakeups_context_and_names_lie_where_documented() {
        let e = from_process(
            in_context(
                wakeup(9, 1, task(7), task(101), false),
                WakeContext::Hardirq {
                    irq: Some(24),
                    name: Some(Symbol::new("virtio0-input.0")),
                },
            ),
            "its-process",
        );
        let b = encode_raw(&Slot::from_event(&e));
        // flags: hardirq (2 << 6), IRQ in aux1 (1 << 9), name (1 << 10),
        // process (1 << 12).
        let flags = 2 << 6 | 1 << 9 | 1 << 10 | 1 << 12;
        assert_eq!(&b[18..20], &(flags as u16).to_le_bytes());
        assert_eq!(&b[28..32], &24u32.to_le_bytes());
        assert_eq!(&b[88..103], b"virtio0-input.0");
        assert_eq!(&b[120..131], b"its-process");
        assert_eq!(&b[136..144], &[0; 8]);
        assert_eq!(decode_raw(&b).event(), Some(e));
        // A timer: its callback in the same place; soft is bit 11.
        let t = in_context(
            wakeup(9, 1, task(7), task(101), false),
            WakeContext::Timer {
                function: Some(Symbol::new("hrtimer_wakeup")),
                soft: true,
            },
        );
        let b = encode_raw(&Slot::from_event(&t));
        assert_eq!(
            &b[18..20],
            &((4 << 6 | 1 << 10 | 1 << 11) as u16).to_le_bytes()
        );
        assert_eq!(&b[88..102], b"hrtimer_wakeup");
        assert_eq!(decode_raw(&b).event(), Some(t));
        // A task of another process: its process's name at 120..136.
        let p = from_process(wakeup(9, 1, task(7), task(101), false), "client");
        let b = encode_raw(&Slot::from_event(&p));
        assert_eq!(&b[18..20], &((1 << 12) as u16).to_le_bytes());
        assert_eq!(&b[88..120], &[0; 32]);
        assert_eq!(&b[120..126], b"client");
        assert_eq!(decode_raw(&b).event(), Some(p));
    }

    /// A format-1 capture (88-byte records, no counters, no wakeup
    /// contexts) still reads.
    #[test]
    fn format_1_captures_still_read() {
        let recs: Vec<Record> = every_record_kind()
            .into_iter()
            .filter(|r| !matches!(r, Record::Counters(_) | Record::Stack(_)))
            .filter(|r| {
                !matches!(r, Record::Event(Event { kind: EventKind::Wakeup { context, waker_process, .. }, .. })
                    if !context.is_task() || waker_process.is_some())
            })
            .map(|mut r| {
                if let Record::Event(e) = &mut r {
                    match &mut e.kind {
                        EventKind::Switch {
                            counters, prev_off, ..
                        } => {
                            *counters = SwitchCounters::default();
                            *prev_off = None;
                        }
                        EventKind::Wakeup { context, .. } => *context = WakeContext::Task,
                        _ => {}
                    }
                }
                r
            })
            .collect();
        let v2 = write_all(Format::Binary, &recs);
        let header_len = u32::from_le_bytes(v2[16..20].try_into().unwrap()) as usize;
        let first = PREAMBLE_BYTES + header_len;
        let mut v1 = v2[..first].to_vec();
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        v1[12..16].copy_from_slice(&(V1_RECORD_BYTES as u32).to_le_bytes());
        let mut at = first;
        while at < v2.len() {
            let rec = &v2[at..at + RECORD_BYTES];
            assert!(rec[V1_RECORD_BYTES..].iter().all(|&b| b == 0));
            v1.extend_from_slice(&rec[..V1_RECORD_BYTES]);
            at += RECORD_BYTES;
            if u16::from_le_bytes(rec[16..18].try_into().unwrap()) == kind::END {
                v1.extend_from_slice(&v2[at..]);
                break;
            }
        }
        assert_eq!(read_all(&v1).unwrap(), recs);
    }

    /// The format-1 part of a record is the ring-buffer record's first 88
    /// bytes, as when the format was defined (a test of the documentation's
    /// claim, not a requirement: when the kernel record changes, this test
    /// goes, the file format stays).
    #[test]
    fn the_first_88_bytes_are_the_ring_buffer_records() {
        use schedtrace_common::RawEvent;
        assert!(size_of::<RawEvent>() >= V1_RECORD_BYTES);
        if cfg!(target_endian = "big") {
            return;
        }
        let e = wakeup(77, 1, task(7), task(101), true);
        let bytes = encode_raw(&Slot::from_event(&e));
        let mut r = RawEvent::ZERO;
        // SAFETY: RawEvent is plain integers with no padding and at least
        // V1_RECORD_BYTES long (asserted above).
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                std::ptr::from_mut(&mut r).cast::<u8>(),
                V1_RECORD_BYTES,
            );
        };
        assert_eq!(Event::try_from(&r).unwrap(), e);
    }

    /// Converting a binary capture to JSON Lines gives byte for byte the
    /// file `--json` writes, even for names that are not UTF-8.
    #[test]
    fn converting_to_jsonl_matches_writing_jsonl() {
        let recs = every_record_kind();
        let text = |recs: &[Record]| {
            let mut v = Vec::new();
            for r in recs {
                jsonl::write_record(&mut v, r).unwrap();
            }
            v
        };
        let converted = read_all(&write_all(Format::Binary, &recs)).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&text(&converted)),
            String::from_utf8_lossy(&text(&recs))
        );
    }

    #[test]
    fn errors_name_the_record() {
        let recs = every_record_kind();
        let bytes = write_all(Format::Binary, &recs);
        let header_len = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
        let first = PREAMBLE_BYTES + header_len;

        // Cut inside the third record (killed while writing it): the
        // records before it, and the reader says it was cut.
        let cut = &bytes[..first + 2 * RECORD_BYTES + 40];
        let mut r = BinaryReader::new(cut);
        let got: Vec<Record> = r.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(got, recs[..3]);
        assert!(r.cut());

        // A CPU out of range in record 2.
        let mut bad = bytes.clone();
        let at = first + RECORD_BYTES + 20;
        bad[at..at + 4].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(
            read_all(&bad).unwrap_err().to_string(),
            format!(
                "record 2 (byte {}): cpu 9 is out of range: the trace has CPUs 0 to 1",
                first + RECORD_BYTES
            )
        );

        // An unknown kind in record 4.
        let mut bad = bytes.clone();
        let at = first + 3 * RECORD_BYTES + 16;
        bad[at..at + 2].copy_from_slice(&0x4242u16.to_le_bytes());
        let e = read_all(&bad).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::UnknownKind {
                    record: 4,
                    kind: 0x4242,
                    ..
                }
            ),
            "{e}"
        );

        // Anything after the end record.
        let mut more = bytes.clone();
        more.extend_from_slice(&[0u8; 3]);
        let e = read_all(&more).unwrap_err();
        let n = frames(&bytes).len() as u64;
        assert!(
            matches!(e, ReadError::AfterEnd { record, .. } if record == n + 1),
            "{e}"
        );

        // The end object cut short: as if there were no end record.
        let upto = read_all(&bytes[..bytes.len() - 5]).unwrap();
        assert_eq!(upto, recs[..recs.len() - 1]);

        // A file cut at a record boundary reads like a JSONL trace without
        // its end line: every record up to there.
        let upto = read_all(&bytes[..first + 4 * RECORD_BYTES]).unwrap();
        assert_eq!(upto, recs[..5]);
    }

    #[test]
    fn end_and_stack_objects_are_checked_alike() {
        let recs = every_record_kind();
        let bytes = write_all(Format::Binary, &recs);
        let f = frames(&bytes);
        for meta in [kind::END, kind::STACK] {
            let (i, &(at, _)) = f.iter().enumerate().find(|(_, (_, k))| *k == meta).unwrap();
            let record = i as u64 + 1;
            let what = if meta == kind::END { "end" } else { "stack" };
            let len = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap()) as usize;
            // An object longer than any the writer makes.
            let mut bad = bytes.clone();
            let huge = MAX_META_BYTES as u64 + 1;
            bad[at + 8..at + 16].copy_from_slice(&huge.to_le_bytes());
            assert_eq!(
                read_all(&bad).unwrap_err().to_string(),
                format!(
                    "record {record} (byte {at}): the {what} record announces a {huge}-byte \
                     object (at most {MAX_META_BYTES})"
                )
            );
            // An object that is not JSON.
            let mut bad = bytes.clone();
            bad[at + RECORD_BYTES] = b'x';
            let e = read_all(&bad).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "record {record} (byte {at}): the {what} object, column 1: "
                )),
                "{e}"
            );
            // The other kind's record holding this object.
            let other = if meta == kind::END {
                kind::STACK
            } else {
                kind::END
            };
            let mut bad = bytes.clone();
            bad[at + 16..at + 18].copy_from_slice(&other.to_le_bytes());
            let e = read_all(&bad).unwrap_err();
            assert!(
                matches!(e, ReadError::UnknownKind { record: r, kind: k, .. } if r == record && k == other),
                "{e}"
            );
            // Cut inside the object: the records before it, and a cut.
            let mut r = BinaryReader::new(&bytes[..at + RECORD_BYTES + len / 2]);
            let got: Vec<Record> = r.by_ref().collect::<Result<_, _>>().unwrap();
            assert_eq!(got, recs[..i + 1], "{what}: the records before it");
            assert!(r.cut(), "{what}");
        }
    }

    #[test]
    fn bad_file_headers_are_refused() {
        let bytes = write_all(Format::Binary, &every_record_kind());
        assert!(matches!(
            read_all(b"{\"type\":\"header\"}\n"),
            Err(ReadError::NotBinary)
        ));
        assert!(matches!(
            read_all(&bytes[..5]),
            Err(ReadError::ShortHeader { got: 5, .. })
        ));
        assert!(matches!(
            read_all(&bytes[..12]),
            Err(ReadError::ShortHeader { got: 12, .. })
        ));
        assert!(matches!(
            read_all(&bytes[..40]),
            Err(ReadError::ShortHeader { .. })
        ));
        let mut newer = bytes.clone();
        newer[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        assert!(matches!(
            read_all(&newer),
            Err(ReadError::NewerFormat { .. })
        ));
        let mut size = bytes.clone();
        size[12..16].copy_from_slice(&56u32.to_le_bytes());
        assert!(matches!(
            read_all(&size),
            Err(ReadError::RecordSize {
                found: 56,
                version: 2,
                want: 144
            })
        ));
        let mut long = bytes;
        long[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            read_all(&long),
            Err(ReadError::HeaderTooLong { .. })
        ));

        let mut h = header(2, 1);
        h.version = TRACE_SCHEMA_VERSION + 1;
        let newer_schema = write_all(Format::Binary, &[Record::Header(Box::new(h))]);
        assert!(matches!(
            read_all(&newer_schema),
            Err(ReadError::NewerVersion { .. })
        ));
        let not_header = {
            let mut v = write_all(Format::Binary, &[Record::Header(Box::new(header(2, 1)))]);
            let n = u32::from_le_bytes(v[16..20].try_into().unwrap()) as usize;
            v[PREAMBLE_BYTES..PREAMBLE_BYTES + n].fill(b' ');
            v
        };
        assert!(matches!(read_all(&not_header), Err(ReadError::NoHeader)));
    }
}
