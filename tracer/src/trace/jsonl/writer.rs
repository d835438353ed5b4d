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
        return LINE.with_borrow_mut(|line| {
            line.clear();
            write_event(line, e)?;
            out.write_all(line)
        });
    }
    serde_json::to_writer(&mut *out, &to_wire(r))?;
    out.write_all(b"\n")
}

thread_local! {
    /// An event line is formatted here first and reaches `out` in one
    /// `write_all`: some 25 small writes into a `Vec` are inlined copies,
    /// into a `BufWriter` each is a call (112 -> 78 ns per event measured).
    static LINE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(512));
}

// Events are nearly every line of a trace, so they are written by hand:
// byte for byte what serializing `event_to_wire(e)` writes (a test checks
// every kind), without its three allocations per event (two comm strings
// and the state letter) or serde's per-field dispatch.

/// "00" "01" ... "99": two digits per step.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

fn put_u64(out: &mut impl Write, mut v: u64) -> io::Result<()> {
    let mut b = [0u8; 20];
    let mut i = b.len();
    while v >= 100 {
        let d = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        b[i..i + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    }
    if v >= 10 {
        let d = v as usize * 2;
        i -= 2;
        b[i..i + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    } else {
        i -= 1;
        b[i] = b'0' + v as u8;
    }
    out.write_all(&b[i..])
}

fn put_i64(out: &mut impl Write, v: i64) -> io::Result<()> {
    if v < 0 {
        out.write_all(b"-")?;
    }
    put_u64(out, v.unsigned_abs())
}

/// A JSON string; names that need no escaping (nearly all) skip serde.
fn put_str(out: &mut impl Write, s: &str) -> io::Result<()> {
    if s.bytes()
        .all(|c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\')
    {
        out.write_all(b"\"")?;
        out.write_all(s.as_bytes())?;
        out.write_all(b"\"")
    } else {
        serde_json::to_writer(&mut *out, s).map_err(io::Error::from)
    }
}

fn put_task(out: &mut impl Write, key: &[u8], t: &Task) -> io::Result<()> {
    out.write_all(key)?;
    out.write_all(b"{\"tid\":")?;
    put_u64(out, t.tid.into())?;
    out.write_all(b",\"tgid\":")?;
    put_u64(out, t.tgid.into())?;
    out.write_all(b",\"comm\":")?;
    // Printable ASCII without quotes or backslashes (nearly every name) is
    // its own JSON string; anything else goes through UTF-8 decoding.
    let raw = t.comm.as_bytes();
    let name = &raw[..raw.iter().position(|&c| c == 0).unwrap_or(raw.len())];
    if name
        .iter()
        .all(|&c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\')
    {
        out.write_all(b"\"")?;
        out.write_all(name)?;
        out.write_all(b"\"")?;
    } else {
        put_str(out, &t.comm.as_str())?;
    }
    out.write_all(b",\"prio\":")?;
    put_i64(out, t.prio.into())?;
    out.write_all(b"}")
}

/// `,"prev_off":{...}` as serde writes `WireOffCpu`.
fn put_off_cpu(out: &mut impl Write, o: &OffCpu) -> io::Result<()> {
    out.write_all(b",\"prev_off\":{")?;
    if let Some(nr) = o.syscall {
        out.write_all(b"\"syscall\":")?;
        put_u64(out, nr.into())?;
        if let Some(name) = crate::syscalls::name(nr) {
            out.write_all(b",\"syscall_name\":")?;
            put_str(out, name)?;
        }
        out.write_all(b",")?;
    }
    out.write_all(if o.iowait {
        b"\"iowait\":true"
    } else {
        b"\"iowait\":false"
    })?;
    if let Some(id) = o.kernel_stack {
        out.write_all(b",\"kernel_stack\":")?;
        put_u64(out, id.into())?;
    }
    if let Some(id) = o.user_stack {
        out.write_all(b",\"user_stack\":")?;
        put_u64(out, id.into())?;
    }
    if o.stack_lost {
        out.write_all(b",\"stack_lost\":true")?;
    }
    out.write_all(b"}")
}

/// `,"context":{...}`, fields in [`WireContext`]'s order, skipped as serde skips them.
fn put_context(out: &mut impl Write, c: &WireContext) -> io::Result<()> {
    out.write_all(b",\"context\":{\"kind\":")?;
    put_str(out, &c.kind)?;
    if let Some(f) = &c.function {
        out.write_all(b",\"function\":")?;
        put_str(out, f)?;
    }
    if c.soft {
        out.write_all(b",\"soft\":true")?;
    }
    if let Some(v) = c.vector {
        out.write_all(b",\"vector\":")?;
        put_u64(out, v.into())?;
    }
    if let Some(i) = c.irq {
        out.write_all(b",\"irq\":")?;
        put_u64(out, i.into())?;
    }
    if let Some(n) = &c.name {
        out.write_all(b",\"name\":")?;
        put_str(out, n)?;
    }
    out.write_all(b"}")
}

fn write_event(out: &mut impl Write, e: &Event) -> io::Result<()> {
    out.write_all(b"{\"type\":\"")?;
    out.write_all(e.kind.type_name().as_bytes())?;
    out.write_all(b"\",\"ts\":")?;
    put_u64(out, e.ts)?;
    out.write_all(b",\"cpu\":")?;
    put_u64(out, e.cpu.into())?;
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
            put_task(out, b",\"prev\":", prev)?;
            put_task(out, b",\"next\":", next)?;
            out.write_all(b",\"prev_state\":\"")?;
            out.write_all(
                SwitchReason::decode(*prev_state, *preempt)
                    .letter()
                    .as_bytes(),
            )?;
            out.write_all(b"\",\"prev_state_raw\":")?;
            put_u64(out, *prev_state)?;
            out.write_all(if *preempt {
                b",\"preempt\":true"
            } else {
                b",\"preempt\":false"
            })?;
            if let Some(c) = &counters.prev {
                out.write_all(b",\"prev_counters\":{\"runtime_ns\":")?;
                put_u64(out, c.runtime_ns)?;
                if let Some(v) = c.run_clock_ns {
                    out.write_all(b",\"run_clock_ns\":")?;
                    put_u64(out, v)?;
                }
                if let Some(v) = c.pcount {
                    out.write_all(b",\"pcount\":")?;
                    put_u64(out, v.into())?;
                }
                out.write_all(b",\"nvcsw\":")?;
                put_u64(out, c.nvcsw.into())?;
                out.write_all(b",\"nivcsw\":")?;
                put_u64(out, c.nivcsw.into())?;
                out.write_all(b"}")?;
            }
            if let Some(c) = &counters.next {
                out.write_all(b",\"next_counters\":{\"runtime_ns\":")?;
                put_u64(out, c.runtime_ns)?;
                if let Some(v) = c.pcount {
                    out.write_all(b",\"pcount\":")?;
                    put_u64(out, v.into())?;
                }
                out.write_all(b"}")?;
            }
            if let Some(w) = next_wait {
                out.write_all(b",\"next_wait\":{\"run_delay_ns\":")?;
                put_u64(out, w.run_delay_ns)?;
                out.write_all(b",\"queued_ns\":")?;
                put_u64(out, w.queued_ns)?;
                out.write_all(b"}")?;
            }
            if let Some(o) = prev_off {
                put_off_cpu(out, o)?;
            }
            out.write_all(b"}\n")
        }
        EventKind::Wakeup {
            waker,
            wakee,
            wakee_cpu,
            wakee_run_delay_ns,
            context,
            waker_process,
            ..
        } => {
            put_task(out, b",\"waker\":", waker)?;
            put_task(out, b",\"wakee\":", wakee)?;
            out.write_all(b",\"wakee_cpu\":")?;
            put_u64(out, (*wakee_cpu).into())?;
            if let Some(d) = wakee_run_delay_ns {
                out.write_all(b",\"wakee_run_delay_ns\":")?;
                put_u64(out, *d)?;
            }
            if let Some(c) = WireContext::from_context(*context) {
                put_context(out, &c)?;
            }
            if let Some(p) = waker_process {
                out.write_all(b",\"waker_process\":")?;
                put_str(out, &p.as_str())?;
            }
            out.write_all(b"}\n")
        }
        EventKind::Migrate { task, from, to } => {
            put_task(out, b",\"task\":", task)?;
            out.write_all(b",\"from_cpu\":")?;
            put_u64(out, (*from).into())?;
            out.write_all(b",\"to_cpu\":")?;
            put_u64(out, (*to).into())?;
            out.write_all(b"}\n")
        }
        EventKind::Fork { parent, child } => {
            put_task(out, b",\"parent\":", parent)?;
            put_task(out, b",\"child\":", child)?;
            out.write_all(b"}\n")
        }
        EventKind::Exec { task, old_tid } => {
            put_task(out, b",\"task\":", task)?;
            out.write_all(b",\"old_tid\":")?;
            put_u64(out, (*old_tid).into())?;
            out.write_all(b"}\n")
        }
        EventKind::Exit { task } | EventKind::Join { task } => {
            put_task(out, b",\"task\":", task)?;
            out.write_all(b"}\n")
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
                EventKind::Exit { task: *a },
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
    fn numbers_are_written_like_serde() {
        let mut vals = vec![0, u64::MAX, u64::MAX - 1, i64::MAX as u64];
        let mut p = 1u64;
        for _ in 0..20 {
            vals.extend([p - 1, p, p + 1, p.saturating_mul(5)]);
            p = p.saturating_mul(10);
        }
        vals.extend(0..1000);
        for v in vals {
            let mut b = Vec::new();
            put_u64(&mut b, v).unwrap();
            assert_eq!(String::from_utf8(b).unwrap(), v.to_string());
        }
        for v in [i64::MIN, -1, 0, 1, i64::MAX, i32::MIN as i64] {
            let mut b = Vec::new();
            put_i64(&mut b, v).unwrap();
            assert_eq!(String::from_utf8(b).unwrap(), v.to_string());
        }
    }
}
