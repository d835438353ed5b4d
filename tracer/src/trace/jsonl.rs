//! The JSON Lines trace file: one JSON object per line with a `type` field;
//! a `header` first, an `end` record last (`docs/trace-format.md`). The serde
//! types here are the wire format only; they convert to and from
//! [`Record`] at this boundary.

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

use super::{End, Header, Lost, Record, TRACE_SCHEMA_VERSION, ThreadInfo};
use crate::event::{Comm, Event, EventKind, KernelWait, SwitchReason, Task};

/// The `schema` value of a header line.
pub const SCHEMA_NAME: &str = "schedtrace-trace";
/// Lines longer than this are rejected rather than buffered.
pub const MAX_LINE_BYTES: usize = 1 << 20;

#[derive(Serialize, Deserialize, Debug)]
struct WireTask {
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
struct WireWait {
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

#[derive(Serialize, Deserialize, Debug)]
struct WireTarget {
    pid: u32,
    comm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
    #[serde(default)]
    follow_children: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pinned_cpus: Option<Vec<u32>>,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire {
    Header {
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
    },
    Thread {
        ts: u64,
        tid: u32,
        tgid: u32,
        comm: String,
        state: String,
        cpu: u32,
    },
    Switch {
        ts: u64,
        cpu: u32,
        prev: WireTask,
        next: WireTask,
        /// `R` preempted, `S` sleeping, `D` blocked, `X` dead.
        prev_state: String,
        prev_state_raw: u64,
        preempt: bool,
        /// Only in traces taken without wakeups.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_wait: Option<WireWait>,
    },
    Wakeup {
        ts: u64,
        cpu: u32,
        waker: WireTask,
        wakee: WireTask,
        wakee_cpu: u32,
    },
    WakeupNew {
        ts: u64,
        cpu: u32,
        waker: WireTask,
        wakee: WireTask,
        wakee_cpu: u32,
    },
    Migrate {
        ts: u64,
        cpu: u32,
        task: WireTask,
        from_cpu: u32,
        to_cpu: u32,
    },
    Fork {
        ts: u64,
        cpu: u32,
        parent: WireTask,
        child: WireTask,
    },
    Exec {
        ts: u64,
        cpu: u32,
        task: WireTask,
        old_tid: u32,
    },
    Exit {
        ts: u64,
        cpu: u32,
        task: WireTask,
    },
    Lost {
        ts: u64,
        cpu: u32,
        count: u64,
    },
    End {
        end_ns: u64,
        events: u64,
        lost_events: u64,
        lost_per_cpu: Vec<u64>,
        complete: bool,
        reason: String,
    },
}

fn to_wire(r: &Record) -> Wire {
    match r {
        Record::Header(h) => Wire::Header {
            schema: SCHEMA_NAME.into(),
            version: h.version,
            clock: "CLOCK_MONOTONIC".into(),
            wall_clock_offset_ns: h.wall_clock_offset_ns,
            ncpus: h.ncpus,
            target: WireTarget {
                pid: h.target_pid,
                comm: h.target_comm.clone(),
                command: h.command.clone(),
                follow_children: h.follow_children,
                pinned_cpus: h.pinned_cpus.clone(),
            },
            kernel_release: h.kernel_release.clone(),
            hostname: h.hostname.clone(),
            tool_version: h.tool_version.clone(),
            start_ns: h.start_ns,
            wakeups: h.wakeups,
        },
        Record::Thread(t) => Wire::Thread {
            ts: t.ts,
            tid: t.tid,
            tgid: t.tgid,
            comm: t.comm.to_string(),
            state: t.state.to_string(),
            cpu: t.cpu,
        },
        Record::Event(e) => event_to_wire(e),
        Record::Lost(l) => Wire::Lost {
            ts: l.ts,
            cpu: l.cpu,
            count: l.count,
        },
        Record::End(e) => Wire::End {
            end_ns: e.end_ns,
            events: e.events,
            lost_events: e.lost_events,
            lost_per_cpu: e.lost_per_cpu.clone(),
            complete: e.complete,
            reason: e.reason.clone(),
        },
    }
}

fn event_to_wire(e: &Event) -> Wire {
    let (ts, cpu) = (e.ts, e.cpu);
    match &e.kind {
        EventKind::Switch {
            prev,
            next,
            prev_state,
            preempt,
            next_wait,
        } => Wire::Switch {
            ts,
            cpu,
            prev: prev.into(),
            next: next.into(),
            prev_state: SwitchReason::decode(*prev_state, *preempt).letter().into(),
            prev_state_raw: *prev_state,
            preempt: *preempt,
            next_wait: next_wait.map(Into::into),
        },
        EventKind::Wakeup {
            waker,
            wakee,
            wakee_cpu,
            new,
        } => {
            let (waker, wakee, wakee_cpu) = (waker.into(), wakee.into(), *wakee_cpu);
            if *new {
                Wire::WakeupNew {
                    ts,
                    cpu,
                    waker,
                    wakee,
                    wakee_cpu,
                }
            } else {
                Wire::Wakeup {
                    ts,
                    cpu,
                    waker,
                    wakee,
                    wakee_cpu,
                }
            }
        }
        EventKind::Migrate { task, from, to } => Wire::Migrate {
            ts,
            cpu,
            task: task.into(),
            from_cpu: *from,
            to_cpu: *to,
        },
        EventKind::Fork { parent, child } => Wire::Fork {
            ts,
            cpu,
            parent: parent.into(),
            child: child.into(),
        },
        EventKind::Exec { task, old_tid } => Wire::Exec {
            ts,
            cpu,
            task: task.into(),
            old_tid: *old_tid,
        },
        EventKind::Exit { task } => Wire::Exit {
            ts,
            cpu,
            task: task.into(),
        },
    }
}

/// Why a trace file could not be read. Line numbers start at 1.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the trace: {0}")]
    Io(#[from] io::Error),
    #[error("the trace file is empty")]
    Empty,
    #[error("line {line}: not a schedtrace trace (the first line must be a header record)")]
    NoHeader { line: u64 },
    #[error(
        "line {line}: trace schema version {found} is newer than this schedtrace understands \
         ({TRACE_SCHEMA_VERSION}); upgrade schedtrace"
    )]
    NewerVersion { line: u64, found: u32 },
    #[error("line {line}: longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong { line: u64 },
    #[error("line {line}: {source}")]
    Json {
        line: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line}: a second header record")]
    SecondHeader { line: u64 },
    #[error("line {line}: record after the end record")]
    AfterEnd { line: u64 },
}

fn from_wire(w: Wire) -> Record {
    let ev = |ts, cpu, kind| Record::Event(Event { ts, cpu, kind });
    match w {
        Wire::Header {
            version,
            wall_clock_offset_ns,
            ncpus,
            target,
            kernel_release,
            hostname,
            tool_version,
            start_ns,
            wakeups,
            ..
        } => Record::Header(Header {
            version,
            wall_clock_offset_ns,
            ncpus,
            target_pid: target.pid,
            target_comm: target.comm,
            command: target.command,
            follow_children: target.follow_children,
            wakeups,
            pinned_cpus: target.pinned_cpus,
            kernel_release,
            hostname,
            tool_version,
            start_ns,
        }),
        Wire::Thread {
            ts,
            tid,
            tgid,
            comm,
            state,
            cpu,
        } => Record::Thread(ThreadInfo {
            ts,
            tid,
            tgid,
            comm: Comm::new(&comm),
            state: state.chars().next().unwrap_or('?'),
            cpu,
        }),
        Wire::Switch {
            ts,
            cpu,
            prev,
            next,
            prev_state_raw,
            preempt,
            next_wait,
            ..
        } => ev(
            ts,
            cpu,
            EventKind::Switch {
                prev: (&prev).into(),
                next: (&next).into(),
                prev_state: prev_state_raw,
                preempt,
                next_wait: next_wait.map(Into::into),
            },
        ),
        Wire::Wakeup {
            ts,
            cpu,
            waker,
            wakee,
            wakee_cpu,
        } => ev(
            ts,
            cpu,
            EventKind::Wakeup {
                waker: (&waker).into(),
                wakee: (&wakee).into(),
                wakee_cpu,
                new: false,
            },
        ),
        Wire::WakeupNew {
            ts,
            cpu,
            waker,
            wakee,
            wakee_cpu,
        } => ev(
            ts,
            cpu,
            EventKind::Wakeup {
                waker: (&waker).into(),
                wakee: (&wakee).into(),
                wakee_cpu,
                new: true,
            },
        ),
        Wire::Migrate {
            ts,
            cpu,
            task,
            from_cpu,
            to_cpu,
        } => ev(
            ts,
            cpu,
            EventKind::Migrate {
                task: (&task).into(),
                from: from_cpu,
                to: to_cpu,
            },
        ),
        Wire::Fork {
            ts,
            cpu,
            parent,
            child,
        } => ev(
            ts,
            cpu,
            EventKind::Fork {
                parent: (&parent).into(),
                child: (&child).into(),
            },
        ),
        Wire::Exec {
            ts,
            cpu,
            task,
            old_tid,
        } => ev(
            ts,
            cpu,
            EventKind::Exec {
                task: (&task).into(),
                old_tid,
            },
        ),
        Wire::Exit { ts, cpu, task } => ev(
            ts,
            cpu,
            EventKind::Exit {
                task: (&task).into(),
            },
        ),
        Wire::Lost { ts, cpu, count } => Record::Lost(Lost { ts, cpu, count }),
        Wire::End {
            end_ns,
            events,
            lost_events,
            lost_per_cpu,
            complete,
            reason,
        } => Record::End(End {
            end_ns,
            events,
            lost_events,
            lost_per_cpu,
            complete,
            reason,
        }),
    }
}

/// Decode one JSON object (a line without its newline) into a record; the
/// binary capture keeps its header and end records in this form.
pub(crate) fn record_from_json(text: &[u8]) -> Result<Record, serde_json::Error> {
    serde_json::from_slice::<Wire>(text).map(from_wire)
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

// Reading events fast. `Wire` is internally tagged, so serde first buffers
// every line into a generic tree to find `type`, then decodes from that:
// most of the reader's time. Switches and wakeups (nearly every line) are
// read instead by a scanner that accepts exactly the lines schedtrace
// writes: fields in its order, no spaces, names of printable ASCII without
// escapes, numbers without leading zeros. Anything else takes the general
// path, which accepts a superset and gives the same records where both
// accept a line (tests check both).

/// A cursor over one line.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn lit(&mut self, l: &[u8]) -> Option<()> {
        let rest = self.b.get(self.i..)?;
        rest.starts_with(l).then(|| self.i += l.len())
    }

    /// A JSON non-negative integer that fits `u64`.
    fn uint(&mut self) -> Option<u64> {
        let digits = self.b[self.i..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let d = &self.b[self.i..self.i + digits];
        if d.is_empty() || (d.len() > 1 && d[0] == b'0') {
            return None;
        }
        let mut v: u64 = 0;
        for &c in d {
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        }
        self.i += digits;
        Some(v)
    }

    fn u32(&mut self) -> Option<u32> {
        self.uint()?.try_into().ok()
    }

    fn i32(&mut self) -> Option<i32> {
        if self.lit(b"-").is_some() {
            let v = self.uint()?;
            // No "-0": serde reads it as a float.
            (v != 0).then_some(())?;
            i32::try_from(-(i64::try_from(v).ok()?)).ok()
        } else {
            self.u32()?.try_into().ok()
        }
    }

    fn bool(&mut self) -> Option<bool> {
        if self.lit(b"true").is_some() {
            Some(true)
        } else {
            self.lit(b"false").map(|()| false)
        }
    }

    /// A string of printable ASCII without quotes or escapes, and its quotes.
    fn plain_str(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let n = self.b[self.i..]
            .iter()
            .take_while(|&&c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\')
            .count();
        let s = std::str::from_utf8(&self.b[self.i..self.i + n]).ok()?;
        self.i += n;
        self.lit(b"\"")?;
        Some(s)
    }

    /// `{"tid":N,"tgid":N,"comm":"...","prio":N}`
    fn task(&mut self) -> Option<Task> {
        self.lit(b"{\"tid\":")?;
        let tid = self.u32()?;
        self.lit(b",\"tgid\":")?;
        let tgid = self.u32()?;
        self.lit(b",\"comm\":")?;
        let comm = Comm::new(self.plain_str()?);
        self.lit(b",\"prio\":")?;
        let prio = self.i32()?;
        self.lit(b"}")?;
        Some(Task {
            tid,
            tgid,
            comm,
            prio,
        })
    }

    fn end(&mut self) -> Option<()> {
        self.lit(b"}")?;
        (self.i == self.b.len()).then_some(())
    }
}

/// A switch or wakeup line as schedtrace writes it, decoded by [`Scan`];
/// `None` sends the line down the general path (which also produces the
/// error message for a bad line).
fn fast_event(text: &[u8]) -> Option<Record> {
    let mut s = Scan { b: text, i: 0 };
    let kind = if s.lit(b"{\"type\":\"switch\",\"ts\":").is_some() {
        None
    } else if s.lit(b"{\"type\":\"wakeup\",\"ts\":").is_some() {
        Some(false)
    } else {
        s.lit(b"{\"type\":\"wakeup_new\",\"ts\":")?;
        Some(true)
    };
    let ts = s.uint()?;
    s.lit(b",\"cpu\":")?;
    let cpu = s.u32()?;
    let kind = match kind {
        None => {
            s.lit(b",\"prev\":")?;
            let prev = s.task()?;
            s.lit(b",\"next\":")?;
            let next = s.task()?;
            s.lit(b",\"prev_state\":")?;
            s.plain_str()?;
            s.lit(b",\"prev_state_raw\":")?;
            let prev_state = s.uint()?;
            s.lit(b",\"preempt\":")?;
            let preempt = s.bool()?;
            let next_wait = match s.lit(b",\"next_wait\":{\"run_delay_ns\":") {
                Some(()) => {
                    let run_delay_ns = s.uint()?;
                    s.lit(b",\"queued_ns\":")?;
                    let queued_ns = s.uint()?;
                    s.lit(b"}")?;
                    Some(KernelWait {
                        run_delay_ns,
                        queued_ns,
                    })
                }
                None => None,
            };
            EventKind::Switch {
                prev,
                next,
                prev_state,
                preempt,
                next_wait,
            }
        }
        Some(new) => {
            s.lit(b",\"waker\":")?;
            let waker = s.task()?;
            s.lit(b",\"wakee\":")?;
            let wakee = s.task()?;
            s.lit(b",\"wakee_cpu\":")?;
            let wakee_cpu = s.u32()?;
            EventKind::Wakeup {
                waker,
                wakee,
                wakee_cpu,
                new,
            }
        }
    };
    s.end()?;
    Some(Record::Event(Event { ts, cpu, kind }))
}

/// Write one record as a JSON line.
pub fn write_record(out: &mut impl Write, r: &Record) -> io::Result<()> {
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

fn write_event(out: &mut impl Write, e: &Event) -> io::Result<()> {
    let ty: &[u8] = match &e.kind {
        EventKind::Switch { .. } => b"{\"type\":\"switch\",\"ts\":",
        EventKind::Wakeup { new: false, .. } => b"{\"type\":\"wakeup\",\"ts\":",
        EventKind::Wakeup { new: true, .. } => b"{\"type\":\"wakeup_new\",\"ts\":",
        EventKind::Migrate { .. } => b"{\"type\":\"migrate\",\"ts\":",
        EventKind::Fork { .. } => b"{\"type\":\"fork\",\"ts\":",
        EventKind::Exec { .. } => b"{\"type\":\"exec\",\"ts\":",
        EventKind::Exit { .. } => b"{\"type\":\"exit\",\"ts\":",
    };
    out.write_all(ty)?;
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
            if let Some(w) = next_wait {
                out.write_all(b",\"next_wait\":{\"run_delay_ns\":")?;
                put_u64(out, w.run_delay_ns)?;
                out.write_all(b",\"queued_ns\":")?;
                put_u64(out, w.queued_ns)?;
                out.write_all(b"}")?;
            }
            out.write_all(b"}\n")
        }
        EventKind::Wakeup {
            waker,
            wakee,
            wakee_cpu,
            ..
        } => {
            put_task(out, b",\"waker\":", waker)?;
            put_task(out, b",\"wakee\":", wakee)?;
            out.write_all(b",\"wakee_cpu\":")?;
            put_u64(out, (*wakee_cpu).into())?;
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
        EventKind::Exit { task } => {
            put_task(out, b",\"task\":", task)?;
            out.write_all(b"}\n")
        }
    }
}

/// Writes records as JSON Lines.
#[cfg(test)]
pub struct JsonlWriter<W: Write> {
    out: W,
}

#[cfg(test)]
impl<W: Write> JsonlWriter<W> {
    pub fn new(out: W) -> Self {
        JsonlWriter { out }
    }

    pub fn write(&mut self, r: &Record) -> io::Result<()> {
        write_record(&mut self.out, r)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Reads records back, checking the header, version and order.
pub struct JsonlReader<R: BufRead> {
    input: R,
    line: u64,
    buf: Vec<u8>,
    seen_header: bool,
    seen_end: bool,
}

impl<R: BufRead> JsonlReader<R> {
    pub fn new(input: R) -> Self {
        JsonlReader {
            input,
            line: 0,
            buf: Vec::with_capacity(512),
            seen_header: false,
            seen_end: false,
        }
    }

    fn read_line(&mut self) -> Result<bool, ReadError> {
        self.buf.clear();
        let n = io::Read::take(self.input.by_ref(), MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        if self.buf.len() > MAX_LINE_BYTES && self.buf.last() != Some(&b'\n') {
            return Err(ReadError::LineTooLong { line: self.line });
        }
        Ok(true)
    }

    /// The next record, `None` at the end of the input.
    pub fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        loop {
            if !self.read_line()? {
                if !self.seen_header {
                    return Err(ReadError::Empty);
                }
                return Ok(None);
            }
            let text = trim_ascii(&self.buf);
            if text.is_empty() {
                continue;
            }
            let line = self.line;
            if !self.seen_header {
                // Peek at the version before decoding the whole header, so a
                // newer file gets the right message even if fields changed.
                let v: serde_json::Value =
                    serde_json::from_slice(text).map_err(|_| ReadError::NoHeader { line })?;
                if v.get("type").and_then(|t| t.as_str()) != Some("header")
                    || v.get("schema").and_then(|t| t.as_str()) != Some(SCHEMA_NAME)
                {
                    return Err(ReadError::NoHeader { line });
                }
                if let Some(found) = v.get("version").and_then(|x| x.as_u64())
                    && found > TRACE_SCHEMA_VERSION as u64
                {
                    return Err(ReadError::NewerVersion {
                        line,
                        found: found as u32,
                    });
                }
            }
            let rec = match fast_event(text) {
                Some(r) => r,
                None => serde_json::from_slice::<Wire>(text)
                    .map(from_wire)
                    .map_err(|source| ReadError::Json { line, source })?,
            };
            if self.seen_end {
                return Err(ReadError::AfterEnd { line });
            }
            match &rec {
                Record::Header(_) if self.seen_header => {
                    return Err(ReadError::SecondHeader { line });
                }
                Record::Header(_) => self.seen_header = true,
                Record::End(_) => self.seen_end = true,
                _ => {}
            }
            return Ok(Some(rec));
        }
    }
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = Result<Record, ReadError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn round_trip(records: &[Record]) -> Vec<Record> {
        let mut w = JsonlWriter::new(Vec::new());
        for r in records {
            w.write(r).unwrap();
        }
        let bytes = w.into_inner();
        JsonlReader::new(&bytes[..])
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    #[test]
    fn every_record_kind_round_trips() {
        let recs = vec![
            Record::Header(header(2, 100)),
            Record::Thread(thread_info(101, 'S')),
            Record::Event(switch(1_000, 0, task(100), 1, task(0))),
            Record::Event(wakeup(1_100, 1, task(7), task(101), false)),
            Record::Event(wakeup(1_150, 1, task(100), task(102), true)),
        ]
        .into_iter()
        .chain(
            migrate_fork_exec_exit(1_200, 1_500, 0)
                .into_iter()
                .map(Record::Event),
        )
        .chain([
            Record::Lost(Lost {
                ts: 1_600,
                cpu: 1,
                count: 3,
            }),
            Record::End(End {
                end_ns: 2_000,
                events: 7,
                lost_events: 3,
                lost_per_cpu: vec![0, 3],
                complete: true,
                reason: "duration".into(),
            }),
        ])
        .collect::<Vec<_>>();
        assert_eq!(round_trip(&recs), recs);
    }

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
            for ((state, preempt), next_wait) in [(0, false), (1, false), (2, true), (0x80, false)]
                .into_iter()
                .zip(waits)
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
                    },
                });
            }
            events.push(wakeup(ts, cpu, *a, b, false));
            events.push(wakeup(i as u64, u32::MAX, *a, b, true));
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

    /// The fast path for switch and wakeup lines decodes exactly what the
    /// general path does, for every line the writer produces, and declines
    /// lines the general path would refuse.
    #[test]
    fn fast_event_path_matches_the_general_path() {
        let odd = |tid: u32, name: &[u8]| {
            let mut b = [0u8; schedtrace_common::COMM_LEN];
            b[..name.len()].copy_from_slice(name);
            Task {
                tid,
                tgid: 3,
                comm: Comm::from_bytes(b),
                prio: -5,
            }
        };
        let waited = with_wait(
            switch(u64::MAX, u32::MAX, odd(9, b"x"), 0, task(102)),
            u64::MAX,
            0,
        );
        let plain = [
            switch(1, 0, task(101), 1, task(0)),
            waited,
            wakeup(6, 1, task(7), task(101), true),
            wakeup(0, 0, odd(0, b""), odd(1, b"~ !"), false),
        ];
        // Names with escapes are left to the general path.
        let escaped = [
            switch(u64::MAX, u32::MAX, odd(7, b"a\"b\\c\td"), 0x402, task(102)),
            wakeup(5, 1, task(7), odd(8, b"caf\xc3\xa9 \xff"), false),
        ];
        for (e, fast_path) in plain
            .iter()
            .map(|e| (e, true))
            .chain(escaped.iter().map(|e| (e, false)))
        {
            let mut line = Vec::new();
            write_record(&mut line, &Record::Event(*e)).unwrap();
            let text = line.trim_ascii();
            let general = from_wire(serde_json::from_slice::<Wire>(text).unwrap());
            if fast_path {
                assert_eq!(general, Record::Event(*e));
            }
            match fast_event(text) {
                Some(fast) => assert_eq!(fast, general),
                None => assert!(!fast_path, "declined {}", String::from_utf8_lossy(text)),
            }
        }
        for bad in [
            &b"{\"type\":\"switch\",\"ts\":1}"[..],
            b"{\"type\":\"switch\",\"ts\":-1,\"cpu\":0}",
            b"{\"type\":\"wakeup\",\"ts\":1,\"cpu\":0,\"waker\":{}}",
        ] {
            assert!(fast_event(bad).is_none());
            assert!(serde_json::from_slice::<Wire>(bad).is_err());
        }
        // Without prev_state the general path refuses a switch; so does the fast one.
        let mut line = Vec::new();
        write_record(&mut line, &Record::Event(plain[0])).unwrap();
        let line = String::from_utf8(line).unwrap();
        let text = line.replace("\"prev_state\":\"S\",", "");
        assert!(fast_event(text.trim().as_bytes()).is_none());
        assert!(serde_json::from_slice::<Wire>(text.trim().as_bytes()).is_err());
        // JSON has no leading zeros; "-0" is left to the general path.
        let zero = line.replace("\"ts\":1,", "\"ts\":01,");
        assert!(fast_event(zero.trim().as_bytes()).is_none());
        assert!(serde_json::from_slice::<Wire>(zero.trim().as_bytes()).is_err());
        let minus_zero = line.replacen("\"prio\":120", "\"prio\":-0", 1);
        assert_ne!(minus_zero, line);
        assert!(fast_event(minus_zero.trim().as_bytes()).is_none());
    }

    fn read_all(text: &str) -> Result<Vec<Record>, ReadError> {
        JsonlReader::new(text.as_bytes()).collect()
    }

    #[test]
    fn empty_file_is_an_error() {
        assert!(matches!(read_all(""), Err(ReadError::Empty)));
        assert!(matches!(read_all("\n\n"), Err(ReadError::Empty)));
    }

    #[test]
    fn missing_header_names_the_line() {
        let e = read_all("{\"type\":\"lost\",\"ts\":1,\"cpu\":0,\"count\":1}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: not a schedtrace trace (the first line must be a header record)"
        );
        assert!(matches!(
            read_all("\u{1}\u{2}garbage"),
            Err(ReadError::NoHeader { line: 1 })
        ));
    }

    #[test]
    fn newer_version_is_refused() {
        let mut w = JsonlWriter::new(Vec::new());
        let mut h = header(2, 1);
        h.version = TRACE_SCHEMA_VERSION + 1;
        w.write(&Record::Header(h)).unwrap();
        let text = String::from_utf8(w.into_inner()).unwrap();
        assert!(matches!(
            read_all(&text),
            Err(ReadError::NewerVersion { line: 1, .. })
        ));
    }

    #[test]
    fn truncated_line_reports_its_number() {
        let mut w = JsonlWriter::new(Vec::new());
        w.write(&Record::Header(header(2, 1))).unwrap();
        w.write(&Record::Event(switch(5, 0, task(1), 1, task(0))))
            .unwrap();
        let mut text = String::from_utf8(w.into_inner()).unwrap();
        text.truncate(text.len() - 20);
        match read_all(&text) {
            Err(ReadError::Json { line: 2, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn huge_line_is_refused() {
        let mut w = JsonlWriter::new(Vec::new());
        w.write(&Record::Header(header(2, 1))).unwrap();
        let mut text = String::from_utf8(w.into_inner()).unwrap();
        text.push_str(&"x".repeat(MAX_LINE_BYTES + 10));
        assert!(matches!(
            read_all(&text),
            Err(ReadError::LineTooLong { line: 2 })
        ));
    }

    mod fuzz {
        //! The reader never panics, whatever the input: random bytes,
        //! random JSON-ish lines, and valid traces cut or corrupted anywhere.
        //! Cases that once failed are kept by proptest in
        //! `proptest-regressions/` next to this crate.
        use super::*;
        use proptest::prelude::*;

        fn sample_trace() -> Vec<u8> {
            let mut w = JsonlWriter::new(Vec::new());
            w.write(&Record::Header(header(2, 1))).unwrap();
            w.write(&Record::Thread(thread_info(101, 'S'))).unwrap();
            for i in 0..20 {
                w.write(&Record::Event(switch(
                    10 + i,
                    (i % 2) as u32,
                    task(101),
                    1,
                    task(0),
                )))
                .unwrap();
            }
            w.into_inner()
        }

        fn read_everything(bytes: &[u8]) {
            let mut r = JsonlReader::new(bytes);
            for _ in 0..10_000 {
                match r.next_record() {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return,
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
                read_everything(&bytes);
            }

            #[test]
            fn cut_or_flipped_traces(cut in 0usize..4000, flip in 0usize..4000, byte in any::<u8>()) {
                let mut t = sample_trace();
                if flip < t.len() {
                    t[flip] = byte;
                }
                t.truncate(cut.min(t.len()));
                read_everything(&t);
            }

            /// Whatever the fast path accepts, the general path accepts too
            /// and reads the same: lines schedtrace writes, with one byte
            /// changed or added, or cut short.
            #[test]
            fn fast_path_accepts_only_what_the_general_path_reads_the_same(
                ts in any::<u64>(),
                cpu in any::<u32>(),
                tids in any::<(u32, u32, u32)>(),
                prios in any::<(i32, i32)>(),
                names in ("[ -~]{0,15}", "[ -~]{0,15}"),
                state in any::<u32>(),
                wait in proptest::option::of(any::<(u64, u32)>()),
                wakeup_line in any::<bool>(),
                at in any::<proptest::sample::Index>(),
                byte in any::<u8>(),
                op in 0u8..3,
            ) {
                let t = |tid, tgid, prio, name: &str| Task { tid, tgid, comm: Comm::new(name), prio };
                let a = t(tids.0, tids.1, prios.0, &names.0);
                let b = t(tids.2, tids.1, prios.1, &names.1);
                let kind = if wakeup_line {
                    EventKind::Wakeup { waker: a, wakee: b, wakee_cpu: cpu, new: state % 2 == 0 }
                } else {
                    EventKind::Switch {
                        prev: a,
                        next: b,
                        prev_state: state.into(),
                        preempt: state % 3 == 0,
                        next_wait: wait.map(|(r, q)| KernelWait { run_delay_ns: r, queued_ns: q.into() }),
                    }
                };
                let e = Event { ts, cpu, kind };
                let mut line = Vec::new();
                write_record(&mut line, &Record::Event(e)).unwrap();
                let mut text = line.trim_ascii().to_vec();
                let plain = names.0.bytes().chain(names.1.bytes()).all(|c| c != b'"' && c != b'\\');
                if plain {
                    prop_assert_eq!(fast_event(&text), Some(Record::Event(e)));
                }
                let (len, i) = (text.len(), at.index(text.len() + 1));
                match op {
                    0 => text.truncate(i),
                    1 => text.insert(i, byte),
                    _ => text[i.min(len - 1)] = byte,
                }
                if let Some(fast) = fast_event(&text) {
                    let general = serde_json::from_slice::<Wire>(&text).map(from_wire);
                    prop_assert_eq!(general.ok(), Some(fast));
                }
            }

            #[test]
            fn json_like_lines(lines in proptest::collection::vec("[{}\\[\\]\":,a-z0-9 ]{0,80}", 0..20)) {
                let mut t = sample_trace();
                for l in lines {
                    t.extend_from_slice(l.as_bytes());
                    t.push(b'\n');
                }
                read_everything(&t);
            }
        }
    }
}
