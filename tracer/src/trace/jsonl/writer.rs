//! Writing JSON Lines. Header, thread, loss and end records go through
//! serde ([`super::wire`]); events, nearly every line, are written by hand,
//! byte for byte what serde writes (a test checks every kind).

use std::io::{self, Write};

use super::wire::{WireContext, to_wire};
use crate::event::{Event, EventKind, OffCpu, SwitchReason, Task};
use crate::trace::Record;

/// Write one record as a JSON line.
pub(crate) fn write_record(out: &mut impl Write, r: &Record) -> io::Result<()> {
    if let Record::Event(e) = r {
        return LINE.with_borrow_mut(|LineWriter { line, tasks }| {
            line.clear();
            write_event(line, tasks, e);
            out.write_all(line)
        });
    }
    serde_json::to_writer(&mut *out, &to_wire(r))?;
    out.write_all(b"\n")
}

/// Append event `e`'s JSON line to `buf`, for a writer that formats into
/// its own buffer (the trace files' [`crate::trace::files::BackgroundWriter`]):
/// the same bytes as [`write_record`], without its line buffer and copy.
pub(crate) fn append_event(buf: &mut Vec<u8>, e: &Event) {
    LINE.with_borrow_mut(|w| write_event(buf, &mut w.tasks, e));
}

/// The per-thread state of writing event lines.
struct LineWriter {
    /// An event line is formatted here first and reaches `out` in one
    /// `write_all`: some 25 small writes into a `Vec` are inlined copies,
    /// into a `BufWriter` each is a call (112 -> 78 ns per event measured).
    /// The pieces of a line are appended to it directly, infallibly.
    line: Vec<u8>,
    tasks: TaskCache,
}

thread_local! {
    static LINE: std::cell::RefCell<LineWriter> = std::cell::RefCell::new(LineWriter {
        line: Vec::with_capacity(512),
        tasks: TaskCache::new(),
    });
}

/// Bytes of a task's JSON object a [`TaskCache`] slot holds: enough for
/// any name that needs no escaping with the widest numbers
/// (`{"tid":`, 10 digits, `,"tgid":`, 10, `,"comm":`, 17, `,"prio":`, 11, `}`).
const TASK_JSON_MAX: usize = 80;
/// Slots of a [`TaskCache`].
const TASK_SLOTS: usize = 128;

#[derive(Clone, Copy)]
struct TaskSlot {
    task: Task,
    /// Bytes of `json` in use; 0 for a slot never filled.
    len: u8,
    json: [u8; TASK_JSON_MAX],
}

/// The JSON objects of the tasks written last, one per slot (a slot is
/// chosen by tid and priority, as a waker's priority reads 0 where the same
/// thread's switches carry its own; another task for that slot replaces it). Every
/// event line has one or two task objects, and the same few tasks come
/// back line after line: copying a slot's bytes, once the whole task has
/// compared equal, costs a tenth of writing three numbers and checking a
/// name. The object is a function of the task alone, so a copy is always
/// what writing it again would write.
struct TaskCache(Box<[TaskSlot; TASK_SLOTS]>);

impl TaskCache {
    fn new() -> Self {
        let empty = TaskSlot {
            task: Task {
                tid: 0,
                tgid: 0,
                comm: crate::event::Comm::default(),
                prio: 0,
            },
            len: 0,
            json: [0; TASK_JSON_MAX],
        };
        TaskCache(Box::new([empty; TASK_SLOTS]))
    }
}

// Events are nearly every line of a trace, so they are written by hand:
// byte for byte what serializing `event_to_wire(e)` writes (a test checks
// every kind), without its three allocations per event (two comm strings
// and the state letter) or serde's per-field dispatch.

/// The eight decimal digits of `n < 10^8`, leading zeros included, one a
/// byte (0..=9), the most significant in the lowest byte. SWAR: the number
/// is split in halves of four digits, each half in two of two and each of
/// those in two digits, every split done in all lanes of a `u64` at once
/// by one multiply by a reciprocal (exact in these ranges: `x * 10486 >> 20
/// = x / 100` for `x < 10^4`, `x * 103 >> 10 = x / 10` for `x < 100`; the
/// lanes never carry into each other). About 25 instructions for all eight
/// digits, where a loop of two digits a step took about 16 a pair.
fn digit_bytes(n: u32) -> u64 {
    let halves = u64::from(n / 10_000) | (u64::from(n % 10_000) << 32);
    let hundreds = ((halves * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let pairs = ((halves - hundreds * 100) << 16) | hundreds;
    let tens = ((pairs * 103) >> 10) & 0x000f_000f_000f_000f;
    ((pairs - tens * 10) << 8) | tens
}

/// ASCII zero in every byte.
const ZEROS: u64 = 0x3030_3030_3030_3030;

/// `n < 10^8` in decimal, without leading zeros. The eight digits are
/// stored at once (a store of constant size) and the line cut back to the
/// digits that count: a copy of the digits alone would be a call to
/// `memcpy`, with a dozen numbers a line.
fn put_short(out: &mut Vec<u8>, n: u32) {
    let d = digit_bytes(n);
    // Leading zeros are the lowest zero bytes; the last digit always stays.
    let zeros = (d | 1 << 56).trailing_zeros() / 8;
    let start = out.len();
    out.extend_from_slice(&((d | ZEROS) >> (8 * zeros)).to_le_bytes());
    out.truncate(start + 8 - zeros as usize);
}

/// `n < 10^8` as exactly eight digits, leading zeros included.
fn put_eight(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&(digit_bytes(n) | ZEROS).to_le_bytes());
}

/// `v` in decimal. This choice is inlined where a number is written: a
/// function call and its register saves cost about as much as converting
/// a short number. `put_short` stays a call: inlined at every number too,
/// it made the lines cost more (1115 -> 1243 instructions an event).
#[inline(always)]
fn put_u64(out: &mut Vec<u8>, v: u64) {
    if v < 10 {
        // CPU numbers, most raw states, small counts: one byte.
        out.push(b'0' + v as u8);
    } else if v < E8 {
        put_short(out, v as u32);
    } else {
        put_long(out, v);
    }
}

const E8: u64 = 100_000_000;

/// `v >= 10^8` in decimal: two or three groups of at most eight digits.
#[inline(never)]
fn put_long(out: &mut Vec<u8>, v: u64) {
    if v < E8 * E8 {
        put_short(out, (v / E8) as u32);
        put_eight(out, (v % E8) as u32);
    } else {
        // u64::MAX / 10^16 < 1845.
        put_short(out, (v / (E8 * E8)) as u32);
        let low = v % (E8 * E8);
        put_eight(out, (low / E8) as u32);
        put_eight(out, (low % E8) as u32);
    }
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.extend_from_slice(b"-");
    }
    put_u64(out, v.unsigned_abs());
}

/// A JSON string; names that need no escaping (nearly all) skip serde.
fn put_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(super::plain_byte) {
        out.extend_from_slice(b"\"");
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\"");
    } else {
        // Into a `Vec`, a string cannot fail to serialise.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// `key` and task `t`'s JSON object, copied from `tasks` when it holds
/// `t`, else written and kept there.
#[inline(never)]
fn put_task<const K: usize>(out: &mut Vec<u8>, tasks: &mut TaskCache, key: &[u8; K], t: &Task) {
    out.extend_from_slice(key);
    let slot = &mut tasks.0[(t.tid ^ t.prio as u32) as usize % TASK_SLOTS];
    let start = out.len();
    if slot.len != 0 && slot.task == *t {
        // The whole slot (a store of constant size), cut back as in `put_short`.
        out.extend_from_slice(&slot.json);
        out.truncate(start + usize::from(slot.len));
        return;
    }
    put_task_json(out, t);
    let json = &out[start..];
    if let Some(room) = slot.json.get_mut(..json.len()) {
        room.copy_from_slice(json);
        slot.len = json.len() as u8;
        slot.task = *t;
    }
}

/// Task `t`'s JSON object.
#[inline(never)]
fn put_task_json(out: &mut Vec<u8>, t: &Task) {
    out.extend_from_slice(b"{\"tid\":");
    put_u64(out, t.tid.into());
    out.extend_from_slice(b",\"tgid\":");
    put_u64(out, t.tgid.into());
    out.extend_from_slice(b",\"comm\":");
    // Printable ASCII without quotes or backslashes (nearly every name) is
    // its own JSON string; anything else goes through UTF-8 decoding.
    let raw = t.comm.as_bytes();
    let name = &raw[..raw.iter().position(|&c| c == 0).unwrap_or(raw.len())];
    if name.iter().all(|&c| super::plain_byte(c)) {
        out.extend_from_slice(b"\"");
        // The whole 16-byte name, cut back to its length (as in `put_short`).
        let len = out.len();
        out.extend_from_slice(raw);
        out.truncate(len + name.len());
        out.extend_from_slice(b"\"");
    } else {
        put_str(out, &t.comm.as_str());
    }
    out.extend_from_slice(b",\"prio\":");
    put_i64(out, t.prio.into());
    out.extend_from_slice(b"}");
}

/// `,"prev_off":{...}` as serde writes `WireOffCpu`.
fn put_off_cpu(out: &mut Vec<u8>, o: &OffCpu) {
    out.extend_from_slice(b",\"prev_off\":{");
    if let Some(nr) = o.syscall {
        out.extend_from_slice(b"\"syscall\":");
        put_u64(out, nr.into());
        if let Some(name) = crate::syscalls::name(nr) {
            out.extend_from_slice(b",\"syscall_name\":");
            put_str(out, name);
        }
        out.extend_from_slice(b",");
    }
    if o.iowait {
        out.extend_from_slice(b"\"iowait\":true");
    } else {
        out.extend_from_slice(b"\"iowait\":false");
    }
    if let Some(id) = o.kernel_stack {
        out.extend_from_slice(b",\"kernel_stack\":");
        put_u64(out, id.into());
    }
    if let Some(id) = o.user_stack {
        out.extend_from_slice(b",\"user_stack\":");
        put_u64(out, id.into());
    }
    if o.stack_lost {
        out.extend_from_slice(b",\"stack_lost\":true");
    }
    out.extend_from_slice(b"}");
}

/// `,"context":{...}`, fields in [`WireContext`]'s order, skipped as serde skips them.
fn put_context(out: &mut Vec<u8>, c: &WireContext) {
    out.extend_from_slice(b",\"context\":{\"kind\":");
    put_str(out, &c.kind);
    if let Some(f) = &c.function {
        out.extend_from_slice(b",\"function\":");
        put_str(out, f);
    }
    if c.soft {
        out.extend_from_slice(b",\"soft\":true");
    }
    if let Some(v) = c.vector {
        out.extend_from_slice(b",\"vector\":");
        put_u64(out, v.into());
    }
    if let Some(i) = c.irq {
        out.extend_from_slice(b",\"irq\":");
        put_u64(out, i.into());
    }
    if let Some(n) = &c.name {
        out.extend_from_slice(b",\"name\":");
        put_str(out, n);
    }
    out.extend_from_slice(b"}");
}

/// The fields of a switch after its head.
#[inline(always)]
fn put_switch(out: &mut Vec<u8>, tasks: &mut TaskCache, kind: &EventKind) {
    let EventKind::Switch {
        prev,
        next,
        prev_state,
        preempt,
        next_wait,
        counters,
        prev_off,
    } = kind
    else {
        unreachable!("a switch")
    };
    put_task(out, tasks, b",\"prev\":", prev);
    put_task(out, tasks, b",\"next\":", next);
    out.extend_from_slice(b",\"prev_state\":\"");
    out.extend_from_slice(
        SwitchReason::decode(*prev_state, *preempt)
            .letter()
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"prev_state_raw\":");
    put_u64(out, *prev_state);
    // One constant a branch: a choice of two lengths is a call to `memcpy`.
    if *preempt {
        out.extend_from_slice(b",\"preempt\":true");
    } else {
        out.extend_from_slice(b",\"preempt\":false");
    }
    if let Some(c) = &counters.prev {
        out.extend_from_slice(b",\"prev_counters\":{\"runtime_ns\":");
        put_u64(out, c.runtime_ns);
        if let Some(v) = c.run_clock_ns {
            out.extend_from_slice(b",\"run_clock_ns\":");
            put_u64(out, v);
        }
        if let Some(v) = c.pcount {
            out.extend_from_slice(b",\"pcount\":");
            put_u64(out, v.into());
        }
        out.extend_from_slice(b",\"nvcsw\":");
        put_u64(out, c.nvcsw.into());
        out.extend_from_slice(b",\"nivcsw\":");
        put_u64(out, c.nivcsw.into());
        out.extend_from_slice(b"}");
    }
    if let Some(c) = &counters.next {
        out.extend_from_slice(b",\"next_counters\":{\"runtime_ns\":");
        put_u64(out, c.runtime_ns);
        if let Some(v) = c.pcount {
            out.extend_from_slice(b",\"pcount\":");
            put_u64(out, v.into());
        }
        out.extend_from_slice(b"}");
    }
    if let Some(w) = next_wait {
        out.extend_from_slice(b",\"next_wait\":{\"run_delay_ns\":");
        put_u64(out, w.run_delay_ns);
        out.extend_from_slice(b",\"queued_ns\":");
        put_u64(out, w.queued_ns);
        out.extend_from_slice(b"}");
    }
    if let Some(o) = prev_off {
        put_off_cpu(out, o);
    }
    out.extend_from_slice(b"}\n");
}

/// The fields of a wakeup after its head.
#[inline(always)]
fn put_wakeup(out: &mut Vec<u8>, tasks: &mut TaskCache, kind: &EventKind) {
    let EventKind::Wakeup {
        waker,
        wakee,
        wakee_cpu,
        wakee_run_delay_ns,
        wakee_queued,
        context,
        waker_process,
        ..
    } = kind
    else {
        unreachable!("a wakeup")
    };
    put_task(out, tasks, b",\"waker\":", waker);
    put_task(out, tasks, b",\"wakee\":", wakee);
    out.extend_from_slice(b",\"wakee_cpu\":");
    put_u64(out, (*wakee_cpu).into());
    if let Some(d) = wakee_run_delay_ns {
        out.extend_from_slice(b",\"wakee_run_delay_ns\":");
        put_u64(out, *d);
    }
    if *wakee_queued {
        out.extend_from_slice(b",\"wakee_queued\":true");
    }
    if let Some(c) = WireContext::from_context(*context) {
        put_context(out, &c);
    }
    if let Some(p) = waker_process {
        out.extend_from_slice(b",\"waker_process\":");
        put_str(out, &p.as_str());
    }
    out.extend_from_slice(b"}\n");
}

/// `{"type":NAME,"ts":..,"cpu":..` with `head` holding `{"type":NAME,"ts":`:
/// one constant a kind, where a name of the kind's length is a call to `memcpy`.
#[inline(always)]
fn put_head<const N: usize>(out: &mut Vec<u8>, head: &[u8; N], e: &Event) {
    debug_assert_eq!(
        &head[9..N - 7],
        e.kind.type_name().as_bytes(),
        "head of another kind"
    );
    out.extend_from_slice(head);
    put_u64(out, e.ts);
    out.extend_from_slice(b",\"cpu\":");
    put_u64(out, e.cpu.into());
}

fn write_event(out: &mut Vec<u8>, tasks: &mut TaskCache, e: &Event) {
    match &e.kind {
        EventKind::Switch { .. } => {
            put_head(out, b"{\"type\":\"switch\",\"ts\":", e);
            put_switch(out, tasks, &e.kind);
        }
        EventKind::Wakeup { new: false, .. } => {
            put_head(out, b"{\"type\":\"wakeup\",\"ts\":", e);
            put_wakeup(out, tasks, &e.kind);
        }
        EventKind::Wakeup { new: true, .. } => {
            put_head(out, b"{\"type\":\"wakeup_new\",\"ts\":", e);
            put_wakeup(out, tasks, &e.kind);
        }
        EventKind::Migrate { task, from, to } => {
            put_head(out, b"{\"type\":\"migrate\",\"ts\":", e);
            put_task(out, tasks, b",\"task\":", task);
            out.extend_from_slice(b",\"from_cpu\":");
            put_u64(out, (*from).into());
            out.extend_from_slice(b",\"to_cpu\":");
            put_u64(out, (*to).into());
            out.extend_from_slice(b"}\n");
        }
        EventKind::Fork { parent, child } => {
            put_head(out, b"{\"type\":\"fork\",\"ts\":", e);
            put_task(out, tasks, b",\"parent\":", parent);
            put_task(out, tasks, b",\"child\":", child);
            out.extend_from_slice(b"}\n");
        }
        EventKind::Exec { task, old_tid } => {
            put_head(out, b"{\"type\":\"exec\",\"ts\":", e);
            put_task(out, tasks, b",\"task\":", task);
            out.extend_from_slice(b",\"old_tid\":");
            put_u64(out, (*old_tid).into());
            out.extend_from_slice(b"}\n");
        }
        EventKind::Exit { task, run_delay_ns } => {
            put_head(out, b"{\"type\":\"exit\",\"ts\":", e);
            put_task(out, tasks, b",\"task\":", task);
            if let Some(d) = run_delay_ns {
                out.extend_from_slice(b",\"run_delay_ns\":");
                put_u64(out, *d);
            }
            out.extend_from_slice(b"}\n");
        }
        EventKind::Join { task } => {
            put_head(out, b"{\"type\":\"join\",\"ts\":", e);
            put_task(out, tasks, b",\"task\":", task);
            out.extend_from_slice(b"}\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::event_to_wire;
    use super::*;
    use crate::event::{
        Comm, KernelWait, NextCounters, PrevCounters, SwitchCounters, Symbol, WakeContext,
    };
    use crate::testutil::*;

    #[test]
    fn hand_written_events_match_serde() {
        let odd = |tid: u32, name: &[u8], prio: i32| {
            let mut b = [0u8; schedtrace_common::COMM_LEN];
            b[..name.len()].copy_from_slice(name);
            Task {
                tid,
                tgid: u32::MAX,
                comm: Comm::from_bytes(b),
                prio,
            }
        };
        let tasks = [
            task(0),
            task(101),
            odd(7, b"a\"b\\c\td\x01\x7f", -100),
            odd(8, b"caf\xc3\xa9 \xff\xfe", i32::MIN),
            odd(9, b"fifteen-chars-x", i32::MAX),
            odd(10, b"", 0),
        ];
        let mut events = Vec::new();
        for (i, a) in tasks.iter().enumerate() {
            let b = tasks[(i + 1) % tasks.len()];
            let (ts, cpu) = (u64::MAX - i as u64, i as u32);
            let waits = [
                None,
                Some(KernelWait {
                    run_delay_ns: u64::MAX,
                    queued_ns: u32::MAX.into(),
                }),
                Some(KernelWait {
                    run_delay_ns: 0,
                    queued_ns: 0,
                }),
                None,
            ];
            let counters = [
                SwitchCounters::default(),
                SwitchCounters {
                    prev: Some(PrevCounters {
                        runtime_ns: u64::MAX,
                        run_clock_ns: Some(0),
                        pcount: Some(u32::MAX),
                        nvcsw: 0,
                        nivcsw: u32::MAX,
                    }),
                    next: Some(NextCounters {
                        runtime_ns: 0,
                        pcount: Some(1),
                    }),
                },
                SwitchCounters {
                    prev: Some(PrevCounters {
                        runtime_ns: 12,
                        run_clock_ns: None,
                        pcount: None,
                        nvcsw: 3,
                        nivcsw: 4,
                    }),
                    next: None,
                },
                SwitchCounters {
                    prev: None,
                    next: Some(NextCounters {
                        runtime_ns: 7,
                        pcount: None,
                    }),
                },
            ];
            for (((state, preempt), next_wait), counters) in
                [(0, false), (1, false), (2, true), (0x80, false)]
                    .into_iter()
                    .zip(waits)
                    .zip(counters)
            {
                events.push(Event {
                    ts,
                    cpu,
                    kind: EventKind::Switch {
                        prev: *a,
                        next: b,
                        prev_state: state,
                        preempt,
                        next_wait,
                        counters,
                        prev_off: None,
                    },
                });
            }
            events.push(wakeup(ts, cpu, *a, b, false));
            events.push(wakeup(i as u64, u32::MAX, *a, b, true));
            let name = Some(Symbol::from_bytes([b'x'; crate::event::SYMBOL_LEN]));
            let odd_name = Some(Symbol::new("a\"b\\c\td"));
            for context in [
                WakeContext::Timer {
                    function: name,
                    soft: true,
                },
                WakeContext::Timer {
                    function: None,
                    soft: false,
                },
                WakeContext::Softirq {
                    vector: Some(u32::MAX),
                },
                WakeContext::Softirq { vector: Some(9) },
                WakeContext::Hardirq {
                    irq: Some(0),
                    name: odd_name,
                },
                WakeContext::Hardirq {
                    irq: None,
                    name: None,
                },
                WakeContext::Nmi,
                WakeContext::Unknown,
            ] {
                events.push(in_context(wakeup(ts, cpu, *a, b, false), context));
            }
            events.push(from_process(wakeup(ts, cpu, *a, b, false), "caf\u{e9}\"x"));
            for kind in [
                EventKind::Migrate {
                    task: *a,
                    from: 0,
                    to: u32::MAX,
                },
                EventKind::Fork {
                    parent: *a,
                    child: b,
                },
                EventKind::Exec {
                    task: *a,
                    old_tid: 12345,
                },
                EventKind::Exit {
                    task: *a,
                    run_delay_ns: None,
                },
                EventKind::Exit {
                    task: *a,
                    run_delay_ns: Some(u64::MAX),
                },
                EventKind::Join { task: *a },
            ] {
                events.push(Event { ts: 0, cpu, kind });
            }
        }
        for e in &events {
            let mut fast = Vec::new();
            write_record(&mut fast, &Record::Event(*e)).unwrap();
            let mut slow = serde_json::to_vec(&event_to_wire(e)).unwrap();
            slow.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow)
            );
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn a_kept_task_object_is_used_only_for_that_very_task() {
        let named = |tid: u32, tgid: u32, name: &[u8], prio: i32| {
            let mut b = [0u8; schedtrace_common::COMM_LEN];
            b[..name.len()].copy_from_slice(name);
            Task {
                tid,
                tgid,
                comm: Comm::from_bytes(b),
                prio,
            }
        };
        let slots = TASK_SLOTS as u32;
        // Each differs from the one before in one field, or shares its slot.
        let tasks = [
            named(5, 5, b"a", 120),
            named(5, 5, b"a", 120),
            named(5, 5, b"b", 120),
            named(5, 6, b"b", 120),
            named(5, 6, b"b", 99),
            named(5 + slots, 6, b"b", 99),
            named(5 ^ 99 ^ 3, 6, b"b", 3),
            named(5, 6, b"b", 99),
            named(5, 6, b"b\"\xff", 99),
            named(5, 6, b"b", 99),
            named(u32::MAX, u32::MAX, b"fifteen-chars-x", i32::MIN),
            named(u32::MAX, u32::MAX, b"fifteen-chars-x", i32::MIN),
            named(
                u32::MAX,
                u32::MAX,
                b"\x01\x01\x01\x01\x01\x01\x01\x01",
                i32::MIN,
            ),
            named(
                u32::MAX,
                u32::MAX,
                b"\x01\x01\x01\x01\x01\x01\x01\x01",
                i32::MIN,
            ),
            named(u32::MAX, u32::MAX, b"fifteen-chars-x", i32::MIN),
        ];
        for pair in tasks.windows(2) {
            let e = Event {
                ts: 1,
                cpu: 0,
                kind: EventKind::Fork {
                    parent: pair[0],
                    child: pair[1],
                },
            };
            let mut fast = Vec::new();
            write_record(&mut fast, &Record::Event(e)).unwrap();
            let mut slow = serde_json::to_vec(&event_to_wire(&e)).unwrap();
            slow.push(b'\n');
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow)
            );
        }
    }

    #[test]
    fn numbers_are_written_like_serde() {
        let mut vals = vec![0, u64::MAX, u64::MAX - 1, i64::MAX as u64];
        let mut p = 1u64;
        for _ in 0..20 {
            vals.extend([p - 1, p, p + 1, p.saturating_mul(5)]);
            p = p.saturating_mul(10);
        }
        vals.extend(0..1000);
        for v in vals {
            // After what the line already holds, and nothing beyond.
            let mut b = b"x".to_vec();
            put_u64(&mut b, v);
            assert_eq!(String::from_utf8(b).unwrap(), format!("x{v}"));
        }
        // Every value of each four-digit half, in both halves, and numbers
        // of every length around the eight-digit group boundaries.
        let mut vals: Vec<u64> = (0..10_000u64)
            .flat_map(|h| [h, h * 10_000, h * 10_000 + 9_999 - h])
            .collect();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            vals.extend([x, x >> (x % 64), (x >> 40) * 100_000_000]);
        }
        for v in vals {
            let mut b = Vec::new();
            put_u64(&mut b, v);
            assert_eq!(String::from_utf8(b).unwrap(), v.to_string());
        }
        for v in [i64::MIN, -1, 0, 1, i64::MAX, i32::MIN as i64] {
            let mut b = Vec::new();
            put_i64(&mut b, v);
            assert_eq!(String::from_utf8(b).unwrap(), v.to_string());
        }
    }
}
