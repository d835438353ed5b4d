//! Decodes the trace back with a minimal protobuf reader written for the
//! test (independent of the writer), guided by a schema table of the few
//! Perfetto messages used. The root integration tests also decode it with
//! Perfetto's own generated classes (tests/tests/exports.rs).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::*;
use crate::analysis::{Options, analyze};
use crate::testutil::*;

#[derive(Clone, Debug)]
enum Val {
    Int(u64),
    Str(String),
    Msg(Message),
}

#[derive(Clone, Debug, Default)]
struct Message {
    fields: Vec<(&'static str, Val)>,
}

impl Message {
    fn all(&self, k: &str) -> impl Iterator<Item = &Val> {
        self.fields
            .iter()
            .filter(move |(n, _)| *n == k)
            .map(|(_, v)| v)
    }
    fn int(&self, k: &str) -> Option<u64> {
        self.all(k).find_map(|v| match v {
            Val::Int(i) => Some(*i),
            _ => None,
        })
    }
    fn str(&self, k: &str) -> Option<&str> {
        self.all(k).find_map(|v| match v {
            Val::Str(s) => Some(s.as_str()),
            _ => None,
        })
    }
    fn msgs(&self, k: &str) -> Vec<&Message> {
        self.all(k)
            .filter_map(|v| match v {
                Val::Msg(m) => Some(m),
                _ => None,
            })
            .collect()
    }
    fn msg(&self, k: &str) -> Option<&Message> {
        self.msgs(k).into_iter().next()
    }
}

enum Kind {
    Int,
    Str,
    Msg(&'static str),
}

/// (message, field number) → (field name, kind), from Perfetto's protos.
fn schema(msg: &str, field: u64) -> Option<(&'static str, Kind)> {
    use Kind::*;
    Some(match (msg, field) {
        ("Trace", 1) => ("packet", Msg("TracePacket")),
        ("TracePacket", 1) => ("ftrace_events", Msg("FtraceEventBundle")),
        ("TracePacket", 2) => ("process_tree", Msg("ProcessTree")),
        ("TracePacket", 8) => ("timestamp", Int),
        ("TracePacket", 10) => ("trusted_packet_sequence_id", Int),
        ("TracePacket", 11) => ("track_event", Msg("TrackEvent")),
        ("TracePacket", 12) => ("interned_data", Msg("InternedData")),
        ("TracePacket", 13) => ("sequence_flags", Int),
        ("InternedData", 26) => ("kernel_symbols", Msg("InternedString")),
        ("InternedString", 1) => ("iid", Int),
        ("InternedString", 2) => ("str", Str),
        ("FtraceEvent", 18) => ("sched_blocked_reason", Msg("SchedBlockedReason")),
        ("SchedBlockedReason", 1) => ("pid", Int),
        ("SchedBlockedReason", 2) => ("caller", Int),
        ("SchedBlockedReason", 3) => ("io_wait", Int),
        ("TracePacket", 45) => ("system_info", Msg("SystemInfo")),
        ("TracePacket", 60) => ("track_descriptor", Msg("TrackDescriptor")),
        ("SystemInfo", 1) => ("utsname", Msg("Utsname")),
        ("SystemInfo", 8) => ("num_cpus", Int),
        ("Utsname", 1) => ("sysname", Str),
        ("Utsname", 3) => ("release", Str),
        ("ProcessTree", 1) => ("processes", Msg("Process")),
        ("ProcessTree", 2) => ("threads", Msg("Thread")),
        ("Process", 1) => ("pid", Int),
        ("Process", 2) => ("ppid", Int),
        ("Process", 3) => ("cmdline", Str),
        ("Thread", 1) => ("tid", Int),
        ("Thread", 2) => ("name", Str),
        ("Thread", 3) => ("tgid", Int),
        ("FtraceEventBundle", 1) => ("cpu", Int),
        ("FtraceEventBundle", 2) => ("event", Msg("FtraceEvent")),
        ("FtraceEventBundle", 3) => ("lost_events", Int),
        ("FtraceEventBundle", 10) => ("previous_bundle_end_timestamp", Int),
        ("FtraceEvent", 1) => ("timestamp", Int),
        ("FtraceEvent", 2) => ("pid", Int),
        ("FtraceEvent", 5) => ("common_flags", Int),
        ("FtraceEvent", 4) => ("sched_switch", Msg("SchedSwitch")),
        ("FtraceEvent", 20) => ("sched_waking", Msg("SchedWaking")),
        ("SchedSwitch", 1) => ("prev_comm", Str),
        ("SchedSwitch", 2) => ("prev_pid", Int),
        ("SchedSwitch", 3) => ("prev_prio", Int),
        ("SchedSwitch", 4) => ("prev_state", Int),
        ("SchedSwitch", 5) => ("next_comm", Str),
        ("SchedSwitch", 6) => ("next_pid", Int),
        ("SchedSwitch", 7) => ("next_prio", Int),
        ("SchedWaking", 1) => ("comm", Str),
        ("SchedWaking", 2) => ("pid", Int),
        ("SchedWaking", 3) => ("prio", Int),
        ("SchedWaking", 4) => ("success", Int),
        ("SchedWaking", 5) => ("target_cpu", Int),
        ("TrackDescriptor", 1) => ("uuid", Int),
        ("TrackDescriptor", 2) => ("name", Str),
        ("TrackEvent", 4) => ("debug_annotations", Msg("DebugAnnotation")),
        ("TrackEvent", 9) => ("type", Int),
        ("TrackEvent", 11) => ("track_uuid", Int),
        ("TrackEvent", 23) => ("name", Str),
        ("DebugAnnotation", 3) => ("uint_value", Int),
        ("DebugAnnotation", 10) => ("name", Str),
        _ => return None,
    })
}

fn read_varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*i];
        *i += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
        assert!(shift < 70, "varint too long");
    }
}

fn decode(name: &'static str, b: &[u8]) -> Message {
    let mut m = Message::default();
    let mut i = 0;
    while i < b.len() {
        let key = read_varint(b, &mut i);
        let (field, wire) = (key >> 3, key & 7);
        let (fname, kind) =
            schema(name, field).unwrap_or_else(|| panic!("unexpected field {field} in {name}"));
        let val = match wire {
            0 => Val::Int(read_varint(b, &mut i)),
            2 => {
                let len = read_varint(b, &mut i) as usize;
                let body = &b[i..i + len];
                i += len;
                match kind {
                    Kind::Str => Val::Str(String::from_utf8(body.to_vec()).expect("UTF-8")),
                    Kind::Msg(sub) => Val::Msg(decode(sub, body)),
                    Kind::Int => panic!("{name}.{fname}: length-delimited, expected varint"),
                }
            }
            w => panic!("{name}.{fname}: unexpected wire type {w}"),
        };
        if matches!(kind, Kind::Int) {
            assert!(
                matches!(val, Val::Int(_)),
                "{name}.{fname}: expected varint"
            );
        }
        m.fields.push((fname, val));
    }
    m
}

fn dump(m: &Message, depth: usize, out: &mut String) {
    for (k, v) in &m.fields {
        let pad = "  ".repeat(depth);
        match v {
            Val::Int(i) => {
                let _ = writeln!(out, "{pad}{k}: {i}");
            }
            Val::Str(s) => {
                let _ = writeln!(out, "{pad}{k}: {s:?}");
            }
            Val::Msg(sub) => {
                let _ = writeln!(out, "{pad}{k} {{");
                dump(sub, depth + 1, out);
                let _ = writeln!(out, "{pad}}}");
            }
        }
    }
}

fn sample() -> (Summary, Timeline, Message) {
    let opts = Options {
        keep_timeline: true,
        ..Default::default()
    };
    let (s, tl) = analyze(&interleaved_trace(), opts);
    let tl = tl.expect("timeline");
    let mut buf = Vec::new();
    write_trace(&s, &tl, &mut buf).unwrap();
    let trace = decode("Trace", &buf);
    (s, tl, trace)
}

#[test]
fn perfetto_snapshot() {
    let (_, _, trace) = sample();
    let mut out = String::new();
    dump(&trace, 0, &mut out);
    insta::assert_snapshot!(out);
}

#[test]
fn process_tree_names_every_thread() {
    let (_, tl, trace) = sample();
    let trees: Vec<&Message> = trace
        .msgs("packet")
        .into_iter()
        .filter_map(|p| p.msg("process_tree"))
        .collect();
    assert_eq!(trees.len(), 1);
    let procs = trees[0].msgs("processes");
    assert_eq!(procs.len(), 1);
    assert_eq!(procs[0].int("pid"), Some(100));
    assert_eq!(procs[0].str("cmdline"), Some("node"));
    let threads: BTreeMap<u64, (&str, u64)> = trees[0]
        .msgs("threads")
        .iter()
        .map(|t| {
            (
                t.int("tid").unwrap(),
                (t.str("name").unwrap(), t.int("tgid").unwrap()),
            )
        })
        .collect();
    assert_eq!(threads.len(), tl.threads.len());
    for t in &tl.threads {
        assert_eq!(threads[&(t.tid as u64)], (t.comm.as_str(), 100));
    }
}

#[test]
fn sched_switches_rebuild_on_cpu_time_and_states() {
    let (s, tl, trace) = sample();
    let bundles: Vec<&Message> = trace
        .msgs("packet")
        .into_iter()
        .filter_map(|p| p.msg("ftrace_events"))
        .collect();
    // Per CPU: who is on it since when; switches must chain.
    let mut on: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut on_cpu: HashMap<u64, u64> = HashMap::new();
    let mut prev_states: Vec<(u64, u64, u64)> = Vec::new();
    let mut wakings: Vec<(u64, u64, u64)> = Vec::new();
    let mut lost_bundles = 0;
    for b in &bundles {
        let cpu = b.int("cpu").unwrap();
        if b.int("lost_events") == Some(1) {
            lost_bundles += 1;
            assert_eq!(cpu, 1);
            assert!(b.int("previous_bundle_end_timestamp").is_some());
        }
        let mut last_ts = 0;
        for e in b.msgs("event") {
            let ts = e.int("timestamp").unwrap();
            assert!(ts >= last_ts, "events in time order within a bundle");
            last_ts = ts;
            if let Some(sw) = e.msg("sched_switch") {
                let prev = sw.int("prev_pid").unwrap();
                let next = sw.int("next_pid").unwrap();
                assert_eq!(
                    e.int("pid"),
                    Some(prev),
                    "the event's pid is the outgoing task"
                );
                let (cur, since) = on.get(&cpu).copied().unwrap_or((0, 0));
                assert_eq!(cur, prev, "switches chain on CPU {cpu} at {ts}");
                if prev != 0 {
                    *on_cpu.entry(prev).or_default() += ts - since;
                    prev_states.push((ts, prev, sw.int("prev_state").unwrap()));
                }
                if next == 0 {
                    assert!(sw.str("next_comm").unwrap().starts_with("swapper/"));
                }
                on.insert(cpu, (next, ts));
            } else if let Some(w) = e.msg("sched_waking") {
                wakings.push((ts, e.int("pid").unwrap(), w.int("pid").unwrap()));
            }
        }
    }
    for (_, (tid, since)) in on {
        if tid != 0 {
            *on_cpu.entry(tid).or_default() += tl.end_ns - since;
        }
    }
    assert_on_cpu_matches(&s, &on_cpu);
    prev_states.sort();
    assert_eq!(
        prev_states,
        vec![
            (2_000_000, 100, STATE_RUNNABLE),
            (2_500_000, 102, STATE_SLEEPING),
            (4_000_000, 101, STATE_BLOCKED),
            (5_500_000, 102, STATE_RUNNABLE),
            (6_000_000, 100, STATE_SLEEPING),
            (7_000_000, 101, STATE_DEAD),
            (8_000_000, 102, STATE_SLEEPING),
        ]
    );
    wakings.sort();
    assert_eq!(
        wakings,
        vec![
            (1_500_000, 100, 101),
            (3_000_000, 101, 102),
            (5_000_000, 7, 101)
        ]
    );
    assert_eq!(lost_bundles, 1);
    let lost_marks: Vec<&str> = trace
        .msgs("packet")
        .into_iter()
        .filter_map(|p| p.msg("track_event"))
        .filter_map(|e| e.str("name"))
        .collect();
    assert_eq!(lost_marks, vec!["3 events lost on CPU 1"]);
}

#[test]
fn processes_the_kernel_could_not_trace_are_a_mark_at_the_end() {
    let mut records = interleaved_trace();
    for r in &mut records {
        if let crate::trace::Record::End(e) = r {
            e.lost_processes = 2;
        }
    }
    let opts = Options {
        keep_timeline: true,
        ..Default::default()
    };
    let (s, tl) = analyze(&records, opts);
    let tl = tl.expect("timeline");
    assert_eq!(s.lost_processes, 2);
    let mut buf = Vec::new();
    write_trace(&s, &tl, &mut buf).unwrap();
    let trace = decode("Trace", &buf);
    // (timestamp, name, annotations) of every instant.
    type Mark<'a> = (u64, &'a str, Vec<(&'a str, u64)>);
    let marks: Vec<Mark<'_>> = trace
        .msgs("packet")
        .into_iter()
        .filter_map(|p| Some((p.int("timestamp")?, p.msg("track_event")?)))
        .map(|(ts, e)| {
            let notes = e
                .msgs("debug_annotations")
                .into_iter()
                .map(|a| (a.str("name").unwrap(), a.int("uint_value").unwrap()))
                .collect();
            (ts, e.str("name").unwrap(), notes)
        })
        .collect();
    let last = marks.last().expect("marks");
    assert_eq!(
        last,
        &(
            tl.end_ns,
            "2 processes not traced: the kernel's map of traced processes was full",
            vec![("processes", 2)]
        )
    );
    // The loss of events is still marked before it.
    assert_eq!(marks.len(), 2);
    assert_eq!(marks[0].1, "3 events lost on CPU 1");
}

#[test]
fn varints_and_negative_ints() {
    let mut p = Pb::default();
    p.uint(1, 300).int(2, -1);
    assert_eq!(p.0[..3], [0x08, 0xac, 0x02]);
    assert_eq!(p.0.len(), 3 + 1 + 10);
}

#[test]
fn long_cpu_histories_are_split_into_chained_bundles() {
    use crate::analysis::timeline::WakeEdge;
    let mut tl = empty_timeline(1, 10_000_000, 100, &[100, 101]);
    // 5000 runs of 1 µs with 1 µs gaps: 10000 switches on CPU 0.
    for i in 0..5000u64 {
        let tid = 100 + (i % 2) as u32;
        let start = i * 2_000;
        tl.segments.push(Segment::new(
            tid,
            start,
            start + 1_000,
            SegState::Running { cpu: 0 },
        ));
        tl.segments.push(Segment::new(
            tid,
            start + 1_000,
            start + 2_000,
            SegState::Sleeping,
        ));
        tl.wakeups.push(WakeEdge {
            ts: start,
            waker_tid: 0,
            wakee_tid: tid,
            cpu: 0,
            waker_tgid: 0,
            waker_comm: crate::event::Comm::new("swapper/0"),
            context: WakeContext::Task,
        });
    }
    let s = analyze(&interleaved_trace(), Options::default()).0;
    let mut buf = Vec::new();
    write_trace(&s, &tl, &mut buf).unwrap();
    let trace = decode("Trace", &buf);
    let bundles: Vec<&Message> = trace
        .msgs("packet")
        .into_iter()
        .filter_map(|p| p.msg("ftrace_events"))
        .collect();
    assert!(bundles.len() >= 4, "{} bundles", bundles.len());
    let mut prev_last: Option<u64> = None;
    let mut running = 0u64;
    let mut events = 0;
    for b in &bundles {
        let evs = b.msgs("event");
        assert!(evs.len() <= BUNDLE_EVENTS);
        assert_eq!(b.int("previous_bundle_end_timestamp"), prev_last);
        for e in &evs {
            events += 1;
            if let Some(sw) = e.msg("sched_switch") {
                assert_eq!(sw.int("prev_pid"), Some(running));
                running = sw.int("next_pid").unwrap();
            }
        }
        prev_last = evs.last().and_then(|e| e.int("timestamp"));
    }
    assert_eq!(events, 10_000 + 5_000);
}

#[test]
fn without_wakeups_a_wait_after_sleep_gets_a_waking_from_the_idle_task() {
    // 101 sleeps at 1 ms; the kernel says it then waited 1 ms before it ran
    // again at 4 ms: runnable from 3 ms, and no wakeup was recorded.
    let back = with_wait(
        switch(4_000_000, 0, task(0), 0, task(101)),
        5_000_000,
        1_000_000,
    );
    let ev = [switch(1_000_000, 0, task(101), 1, task(0)), back];
    let mut recs = trace(1, 500_000, &[(101, 'R')], &ev, 6_000_000);
    if let crate::trace::Record::Header(h) = &mut recs[0] {
        h.wakeups = false;
    }
    let opts = Options {
        keep_timeline: true,
        ..Default::default()
    };
    let (s, tl) = analyze(&recs, opts);
    let tl = tl.unwrap();
    assert!(tl.wakeups.is_empty());
    let mut buf = Vec::new();
    write_trace(&s, &tl, &mut buf).unwrap();
    let trace = decode("Trace", &buf);
    let wakings: Vec<(u64, u64, u64)> = trace
        .msgs("packet")
        .into_iter()
        .filter_map(|p| p.msg("ftrace_events"))
        .flat_map(|b| b.msgs("event"))
        .filter_map(|e| {
            let w = e.msg("sched_waking")?;
            Some((e.int("timestamp")?, e.int("pid")?, w.int("pid")?))
        })
        .collect();
    assert_eq!(wakings, vec![(3_000_000, 0, 101)]);
}

#[test]
fn a_timer_wakeup_is_in_irq_context_and_a_task_wakeup_is_not() {
    // 101 is woken by its timer while 500 (another process) runs on CPU 0,
    // then by 102 from a task, then by the NET_RX softirq.
    let ev = [
        switch(1_000_000, 0, task(101), 1, task(500)),
        timer_wakeup(2_000_000, 0, task(500), task(101)),
        switch(2_100_000, 0, task(500), 0, task(101)),
        switch(2_200_000, 0, task(101), 1, task(500)),
        wakeup(3_000_000, 1, task(102), task(101), false),
        switch(3_100_000, 0, task(500), 0, task(101)),
        switch(3_200_000, 0, task(101), 1, task(500)),
        in_context(
            wakeup(4_000_000, 0, task(500), task(101), false),
            WakeContext::Softirq { vector: Some(3) },
        ),
        switch(4_100_000, 0, task(500), 0, task(101)),
    ];
    let recs = trace(2, 500_000, &[(101, 'R'), (102, 'S')], &ev, 5_000_000);
    let opts = Options {
        keep_timeline: true,
        ..Default::default()
    };
    let (s, tl) = analyze(&recs, opts);
    let mut buf = Vec::new();
    write_trace(&s, &tl.unwrap(), &mut buf).unwrap();
    let trace = decode("Trace", &buf);
    let mut wakings: Vec<(u64, u64, u64)> = trace
        .msgs("packet")
        .into_iter()
        .filter_map(|p| p.msg("ftrace_events"))
        .flat_map(|b| b.msgs("event"))
        .filter_map(|e| {
            e.msg("sched_waking")?;
            Some((
                e.int("timestamp")?,
                e.int("pid")?,
                e.int("common_flags").unwrap_or(0),
            ))
        })
        .collect();
    wakings.sort_unstable(); // bundled per CPU
    // TRACE_FLAG_HARDIRQ (0x08) for the timer, none for the task,
    // TRACE_FLAG_SOFTIRQ (0x10) for the softirq.
    assert_eq!(
        wakings,
        vec![
            (2_000_000, 500, 0x08),
            (3_000_000, 102, 0),
            (4_000_000, 500, 0x10)
        ]
    );
}

/// A thread that sleeps in futex with a kernel stack, on one CPU with a
/// task of another process that preempts it.
fn why_trace() -> Vec<crate::trace::Record> {
    use crate::trace::StackKind;
    const MS: u64 = 1_000_000;
    let mut stress = task(700);
    stress.comm = crate::event::Comm::new("stress");
    let ev = [
        switch(2 * MS, 0, task(101), 0, stress),
        switch(4 * MS, 0, stress, 0, task(101)),
        with_off(
            switch(5 * MS, 0, task(101), 1, stress),
            Some("futex"),
            Some(1),
            None,
        ),
        wakeup(7 * MS, 0, stress, task(101), false),
        switch(8 * MS, 0, stress, 0, task(101)),
        with_off(
            switch(9 * MS, 0, task(101), 2, task(0)),
            Some("fsync"),
            None,
            None,
        ),
    ];
    let mut r = trace(1, MS, &[(101, 'R')], &ev, 12 * MS);
    let end = r.pop().unwrap();
    r.push(stack(
        1,
        StackKind::Kernel,
        0xffff_0000,
        &[
            "__traceiter_sched_switch",
            "__schedule",
            "schedule",
            "futex_wait_queue",
            "futex_wait",
        ],
    ));
    r.push(end);
    r
}

#[test]
fn other_tasks_hold_the_cpu_track_and_sleeps_say_why() {
    let opts = Options {
        keep_timeline: true,
        ..Default::default()
    };
    let (s, tl) = analyze(&why_trace(), opts);
    let tl = tl.unwrap();
    let mut buf = Vec::new();
    write_trace(&s, &tl, &mut buf).unwrap();
    let trace = decode("Trace", &buf);
    let packets = trace.msgs("packet");
    // Interned names of the blocked functions, by iid.
    let names: HashMap<u64, String> = packets
        .iter()
        .filter_map(|p| p.msg("interned_data"))
        .flat_map(|d| d.msgs("kernel_symbols"))
        .map(|k| (k.int("iid").unwrap(), k.str("str").unwrap().to_string()))
        .collect();
    let mut seq: Vec<String> = Vec::new();
    for p in &packets {
        let Some(b) = p.msg("ftrace_events") else {
            continue;
        };
        for e in b.msgs("event") {
            if let Some(sw) = e.msg("sched_switch") {
                seq.push(format!(
                    "{} {}->{}({})",
                    e.int("timestamp").unwrap() / 1_000_000,
                    sw.int("prev_pid").unwrap(),
                    sw.int("next_pid").unwrap(),
                    sw.str("next_comm").unwrap()
                ));
            }
            if let Some(br) = e.msg("sched_blocked_reason") {
                seq.push(format!(
                    "{} blocked {} in {} io_wait={}",
                    e.int("timestamp").unwrap() / 1_000_000,
                    br.int("pid").unwrap(),
                    names[&br.int("caller").unwrap()],
                    br.int("io_wait").unwrap_or(0)
                ));
            }
        }
    }
    assert_eq!(
        seq,
        vec![
            "1 0->101(worker-101)",
            "2 101->700(stress)",
            "4 700->101(worker-101)",
            "5 101->700(stress)",
            "5 blocked 101 in futex_wait_queue io_wait=0",
            "8 700->101(worker-101)",
            "9 101->0(swapper/0)",
            "9 blocked 101 in fsync (I/O) io_wait=1",
        ]
    );
    // The other task is named in the process tree.
    let tree = packets.iter().find_map(|p| p.msg("process_tree")).unwrap();
    assert!(
        tree.msgs("threads")
            .iter()
            .any(|t| t.int("tid") == Some(700) && t.str("name") == Some("stress"))
    );
}

#[test]
fn inferred_runs_are_marked_on_their_own_track() {
    const MS: u64 = 1_000_000;
    let (s, tl) = inferred_run_analysis();
    let mut buf = Vec::new();
    write_trace(&s, &tl, &mut buf).unwrap();
    let trace = decode("Trace", &buf);
    let packets = trace.msgs("packet");
    let tracks: Vec<&str> = packets
        .iter()
        .filter_map(|p| p.msg("track_descriptor"))
        .filter_map(|t| t.str("name"))
        .collect();
    assert_eq!(tracks, ["schedtrace: inferred runs"]);
    let marks: Vec<(u64, &str)> = packets
        .iter()
        .filter_map(|p| Some((p.int("timestamp")?, p.msg("track_event")?.str("name")?)))
        .collect();
    assert_eq!(marks, [(4 * MS, "inferred run: worker-101 101 on CPU 0")]);
}
