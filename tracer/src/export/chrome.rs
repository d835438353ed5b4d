//! Chrome Trace Event JSON (`--chrome-trace FILE`), for chrome://tracing and
//! ui.perfetto.dev.
//!
//! - One track per thread (pid = TGID, tid = TID) with an `X` (complete)
//!   event per state segment: `Running (CPU n)`, `Runnable`, `Sleeping`,
//!   `Blocked`. Segments tile each thread's life, so slices on a track touch
//!   but never overlap.
//! - A synthetic process `CPUs` whose threads are the CPUs, with one `X`
//!   event per run of a target thread on that CPU (named after the thread),
//!   and per stretch another task held it as far as the switch records tell
//!   (`name TID (PID n)`, category `other`, grey), the CPU was idle
//!   (`idle`, white) or the holder was not recorded (`not recorded`).
//! - Sleeping and blocked slices carry the wait reason in `args.reason`
//!   (and `args.blocked_function` with `--stacks`); a run whose switch-in
//!   the kernel's stream lacked, placed from its switch-out's counters,
//!   has `args.inferred` on both its slices.
//! - Per-thread instant events for wakeups (`woken by ...`), global instant
//!   events where events were lost.
//! - A counter track `threads` in the target process: how many threads were
//!   running and how many runnable, over time.
//! - Metadata events name the processes and threads and order the tracks.
//!
//! Timestamps are microseconds since the start of the window, written from
//! integer nanoseconds as `{µs}.{ns:03}` so no rounding can make slices on
//! one track partly overlap. `otherData` records the window's start in the
//! trace clock (CLOCK_MONOTONIC ns).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

use serde_json::json;

use super::{Exporter, Report};
use crate::analysis::antagonists::Holder;
use crate::analysis::concurrency::concurrency_steps;
use crate::analysis::summary::{Summary, holder_label};
use crate::analysis::timeline::{SegState, Segment, Timeline};

/// PID of the synthetic `CPUs` process: above any real PID (Linux caps
/// them at 2²²), so it cannot collide with a traced one.
pub(crate) const CPUS_PID: u32 = 0x7fff_0000;

/// TID of CPU `cpu`'s track inside [`CPUS_PID`].
pub(crate) fn cpu_tid(cpu: u32) -> u32 {
    CPUS_PID + 1 + cpu
}

/// `ns` as microseconds with exactly three decimals.
pub(crate) fn us(ns: u64) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

fn state_name(s: SegState) -> String {
    match s {
        SegState::Running { cpu } => format!("Running (CPU {cpu})"),
        SegState::Runnable => "Runnable".into(),
        SegState::Sleeping => "Sleeping".into(),
        SegState::Blocked => "Blocked".into(),
    }
}

/// Chrome's reserved colour names for thread states.
fn state_color(s: SegState) -> &'static str {
    match s {
        SegState::Running { .. } => "thread_state_running",
        SegState::Runnable => "thread_state_runnable",
        SegState::Sleeping => "thread_state_sleeping",
        SegState::Blocked => "thread_state_uninterruptible",
    }
}

/// Events as JSON text lines: `ts`/`dur` must be written verbatim, which a
/// `serde_json::Value` (f64) could not guarantee.
struct Events {
    lines: Vec<String>,
}

impl Events {
    fn push(&mut self, v: serde_json::Value, ts: Option<u64>, dur: Option<u64>) {
        let mut s = v.to_string();
        debug_assert!(s.ends_with('}'));
        s.pop();
        if let Some(ts) = ts {
            let _ = write!(s, ",\"ts\":{}", us(ts));
        }
        if let Some(d) = dur {
            let _ = write!(s, ",\"dur\":{}", us(d));
        }
        s.push('}');
        self.lines.push(s);
    }

    fn meta(&mut self, name: &str, pid: u32, tid: Option<u32>, args: serde_json::Value) {
        let mut v = json!({"ph": "M", "name": name, "pid": pid, "args": args});
        if let Some(t) = tid {
            v["tid"] = json!(t);
        }
        self.push(v, None, None);
    }
}

/// The whole document as a string.
pub fn render(s: &Summary, tl: &Timeline) -> String {
    let mut d = Doc::new(s, tl);
    d.process_and_thread_names();
    let ncpus = d.cpu_names();
    d.state_slices();
    d.cpu_slices();
    d.wakeups();
    d.losses();
    d.counts();
    let other = json!({
        "tool": "schedtrace",
        "target_pid": s.target_pid,
        "target_comm": s.target_comm,
        "window_start_ns": tl.start_ns,
        "window_end_ns": tl.end_ns,
        "clock": "CLOCK_MONOTONIC; ts are µs since window_start_ns",
        "ncpus": ncpus,
        "lost_events": s.lost_events,
        "lost_processes": s.lost_processes,
        "lost_stacks": s.lost_stacks,
        "anomalies": s.anomalies,
        "late_events": s.late_events(),
        "recursion_misses": s.recursion_misses,
        "complete": s.complete,
    });
    let lines = d.ev.lines;
    let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 2).sum::<usize>() + 512);
    out.push_str("{\"displayTimeUnit\":\"ns\",\"otherData\":");
    out.push_str(&other.to_string());
    out.push_str(",\"traceEvents\":[\n");
    let n = lines.len();
    for (i, l) in lines.into_iter().enumerate() {
        out.push_str(&l);
        out.push_str(if i + 1 < n { ",\n" } else { "\n" });
    }
    out.push_str("]}\n");
    out
}

/// The document being built, and the lookups its parts share.
struct Doc<'a> {
    s: &'a Summary,
    tl: &'a Timeline,
    ev: Events,
    /// TID → name.
    names: BTreeMap<u32, &'a str>,
    /// TID → TGID.
    tgid_of: BTreeMap<u32, u32>,
    lanes: Vec<Vec<Segment>>,
}

impl<'a> Doc<'a> {
    fn new(s: &'a Summary, tl: &'a Timeline) -> Self {
        Doc {
            s,
            tl,
            ev: Events { lines: Vec::new() },
            names: tl
                .threads
                .iter()
                .map(|t| (t.tid, t.comm.as_str()))
                .collect(),
            tgid_of: tl.threads.iter().map(|t| (t.tid, t.tgid)).collect(),
            lanes: super::exclusive_cpu_lanes(tl),
        }
    }

    /// `t` relative to the window's start.
    fn rel(&self, t: u64) -> u64 {
        t.saturating_sub(self.tl.start_ns)
    }

    /// Processes and threads, named and ordered.
    fn process_and_thread_names(&mut self) {
        let (s, tl) = (self.s, self.tl);
        let mut procs: BTreeMap<u32, String> = BTreeMap::new();
        for t in &tl.threads {
            let name = if t.tgid == t.tid {
                t.comm.clone()
            } else if t.tgid == s.target_pid {
                s.target_comm.clone()
            } else {
                self.names
                    .get(&t.tgid)
                    .map_or_else(String::new, |n| n.to_string())
            };
            let e = procs.entry(t.tgid).or_default();
            if e.is_empty() || t.tgid == t.tid {
                *e = name;
            }
        }
        for (&pid, name) in &procs {
            let label = if name.is_empty() {
                format!("process {pid}")
            } else {
                name.clone()
            };
            self.ev
                .meta("process_name", pid, None, json!({"name": label}));
            let rank = if pid == s.target_pid { 0 } else { 1 };
            self.ev
                .meta("process_sort_index", pid, None, json!({"sort_index": rank}));
        }
        let mut sorted: Vec<_> = tl.threads.iter().collect();
        sorted.sort_by_key(|t| (t.tgid, t.tid));
        for (i, t) in sorted.iter().enumerate() {
            self.ev.meta(
                "thread_name",
                t.tgid,
                Some(t.tid),
                json!({"name": format!("{} {}", t.comm, t.tid)}),
            );
            self.ev.meta(
                "thread_sort_index",
                t.tgid,
                Some(t.tid),
                json!({"sort_index": i}),
            );
        }
    }

    /// The `CPUs` process and a track per CPU; returns how many CPUs.
    fn cpu_names(&mut self) -> u32 {
        let ev = &mut self.ev;
        ev.meta("process_name", CPUS_PID, None, json!({"name": "CPUs"}));
        ev.meta(
            "process_sort_index",
            CPUS_PID,
            None,
            json!({"sort_index": -1}),
        );
        let ncpus = self.lanes.len().max(self.tl.ncpus as usize) as u32;
        for cpu in 0..ncpus {
            ev.meta(
                "thread_name",
                CPUS_PID,
                Some(cpu_tid(cpu)),
                json!({"name": format!("CPU {cpu}")}),
            );
            ev.meta(
                "thread_sort_index",
                CPUS_PID,
                Some(cpu_tid(cpu)),
                json!({"sort_index": cpu}),
            );
        }
        ncpus
    }

    /// Thread state slices.
    fn state_slices(&mut self) {
        for seg in &self.tl.segments {
            let Some(&pid) = self.tgid_of.get(&seg.tid) else {
                continue;
            };
            let mut args = json!({"state": seg.state.name()});
            if let SegState::Running { cpu } = seg.state {
                args["cpu"] = json!(cpu);
            }
            if seg.inferred {
                args["inferred"] = json!(true);
            }
            if let Some(w) = seg.wait {
                args["reason"] = json!(w.describe());
                if let Some(f) = super::blocked_function(self.s, seg.kernel_stack) {
                    args["blocked_function"] = json!(f);
                }
            }
            let ts = self.rel(seg.start);
            self.ev.push(
                json!({
                    "ph": "X",
                    "cat": "thread_state",
                    "name": state_name(seg.state),
                    "pid": pid,
                    "tid": seg.tid,
                    "cname": state_color(seg.state),
                    "args": args,
                }),
                Some(ts),
                Some(seg.end - seg.start),
            );
        }
    }

    /// CPU slices: each run of a target thread, on its CPU's track.
    fn cpu_slices(&mut self) {
        for (cpu, segs) in self.lanes.iter().enumerate() {
            for seg in segs {
                let name = self.names.get(&seg.tid).copied().unwrap_or("?");
                let ts = self.rel(seg.start);
                let mut args =
                    json!({"tid": seg.tid, "tgid": self.tgid_of.get(&seg.tid), "comm": name});
                if seg.inferred {
                    args["inferred"] = json!(true);
                }
                self.ev.push(
                    json!({
                        "ph": "X",
                        "cat": "cpu",
                        "name": format!("{name} {}", seg.tid),
                        "pid": CPUS_PID,
                        "tid": cpu_tid(cpu as u32),
                        "args": args,
                    }),
                    Some(ts),
                    Some(seg.end - seg.start),
                );
            }
        }
        for (cpu, holds) in super::other_holds(self.tl).iter().enumerate() {
            for h in holds {
                let (cat, cname) = match h.holder {
                    Holder::Task(o) if o.is_idle() => ("idle", "white"),
                    Holder::Task(_) => ("other", "grey"),
                    Holder::Unrecorded => ("unrecorded", "black"),
                };
                let mut args = json!({});
                if let Holder::Task(o) = h.holder
                    && !o.is_idle()
                {
                    args = json!({"tid": o.tid, "comm": o.comm.to_string()});
                    if o.tgid != 0 {
                        args["tgid"] = json!(o.tgid);
                    }
                }
                let ts = self.rel(h.start);
                self.ev.push(
                    json!({
                        "ph": "X",
                        "cat": cat,
                        "name": holder_label(&h.holder),
                        "pid": CPUS_PID,
                        "tid": cpu_tid(cpu as u32),
                        "cname": cname,
                        "args": args,
                    }),
                    Some(ts),
                    Some(h.end - h.start),
                );
            }
        }
    }

    /// Wakeups, on the wakee's track.
    fn wakeups(&mut self) {
        for w in &self.tl.wakeups {
            let Some(&pid) = self.tgid_of.get(&w.wakee_tid) else {
                continue;
            };
            // An interrupt context is the waker, not the task it interrupted.
            let waker = w.context.label().unwrap_or_else(|| {
                self.names.get(&w.waker_tid).map_or_else(
                    || format!("{}", w.waker_tid),
                    |n| format!("{n} {}", w.waker_tid),
                )
            });
            let ts = self.rel(w.ts);
            self.ev.push(
                json!({
                    "ph": "i",
                    "s": "t",
                    "cat": "wakeup",
                    "name": "wakeup",
                    "pid": pid,
                    "tid": w.wakee_tid,
                    "args": {"waker": waker, "waker_tid": w.waker_tid, "cpu": w.cpu},
                }),
                Some(ts),
                None,
            );
        }
    }

    /// Lost events, on every track.
    fn losses(&mut self) {
        let tl = self.tl;
        for &(ts, cpu, count) in &tl.lost {
            let ts = self.rel(ts.clamp(tl.start_ns, tl.end_ns.max(tl.start_ns)));
            self.ev.push(
                json!({
                    "ph": "i",
                    "s": "g",
                    "cat": "lost",
                    "name": format!("{count} events lost on CPU {cpu}"),
                    "pid": CPUS_PID,
                    "tid": cpu_tid(cpu),
                    "args": {"cpu": cpu, "count": count},
                }),
                Some(ts),
                None,
            );
        }
    }

    /// Running / runnable counts, as a counter track.
    fn counts(&mut self) {
        for step in concurrency_steps(self.tl) {
            let ts = self.rel(step.ts);
            self.ev.push(
                json!({
                    "ph": "C",
                    "name": "threads",
                    "pid": self.s.target_pid,
                    "args": {"running": step.running, "runnable": step.runnable},
                }),
                Some(ts),
                None,
            );
        }
    }
}

pub struct ChromeTrace;

impl Exporter for ChromeTrace {
    fn needs_timeline(&self) -> bool {
        true
    }

    fn write(&self, report: &Report<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
        let Some(tl) = report.timeline else {
            anyhow::bail!("the Chrome trace needs the analysis to keep a timeline");
        };
        out.write_all(render(report.summary, tl).as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::testutil::*;

    fn sample() -> (Summary, Timeline) {
        interleaved_analysis()
    }

    /// `ts`/`dur` back to integer ns, from the text as written.
    fn ns_of(raw: &str) -> u64 {
        let (a, b) = raw.split_once('.').expect("three decimals");
        assert_eq!(b.len(), 3, "{raw}");
        a.parse::<u64>().unwrap() * 1000 + b.parse::<u64>().unwrap()
    }

    #[test]
    fn inferred_runs_are_marked_on_both_tracks() {
        let (s, tl) = inferred_run_analysis();
        let doc: serde_json::Value = serde_json::from_str(&render(&s, &tl)).unwrap();
        let marked: Vec<&str> = doc["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["args"]["inferred"] == true)
            .map(|e| e["cat"].as_str().unwrap())
            .collect();
        assert_eq!(marked, ["thread_state", "cpu"], "{doc}");
    }

    #[test]
    fn chrome_trace_snapshot() {
        let (s, tl) = sample();
        insta::assert_snapshot!(render(&s, &tl));
    }

    #[test]
    fn parses_never_overlaps_and_round_trips_on_cpu_time() {
        let (s, tl) = sample();
        let text = render(&s, &tl);
        let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let events = doc["traceEvents"].as_array().unwrap();
        // Timestamps exactly as written, from the raw lines.
        let raw: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("\"ph\":\"X\""))
            .collect();
        let mut tracks: HashMap<(u64, u64), Vec<(u64, u64)>> = HashMap::new();
        let mut on_cpu: HashMap<u64, u64> = HashMap::new();
        for line in &raw {
            let v: serde_json::Value =
                serde_json::from_str(line.trim_end_matches(',')).expect("one event per line");
            let field = |k: &str| {
                let i = line.find(&format!("\"{k}\":")).unwrap() + k.len() + 3;
                let end = line[i..].find([',', '}']).unwrap() + i;
                ns_of(&line[i..end])
            };
            let (ts, dur) = (field("ts"), field("dur"));
            let key = (v["pid"].as_u64().unwrap(), v["tid"].as_u64().unwrap());
            tracks.entry(key).or_default().push((ts, ts + dur));
            if v["cat"] == "thread_state" && v["args"]["state"] == "running" {
                *on_cpu.entry(key.1).or_default() += dur;
            }
        }
        assert_eq!(raw.len(), events.iter().filter(|e| e["ph"] == "X").count());
        for (key, mut slices) in tracks {
            slices.sort();
            for w in slices.windows(2) {
                assert!(w[0].1 <= w[1].0, "{key:?}: {:?} overlaps {:?}", w[0], w[1]);
            }
        }
        assert_on_cpu_matches(&s, &on_cpu);
        // Every thread and CPU is named.
        let named = |pid: u64, tid: u64| {
            events.iter().any(|e| {
                e["ph"] == "M" && e["name"] == "thread_name" && e["pid"] == pid && e["tid"] == tid
            })
        };
        for t in &tl.threads {
            assert!(named(t.tgid as u64, t.tid as u64));
        }
        for c in 0..2 {
            assert!(named(CPUS_PID as u64, cpu_tid(c) as u64));
        }
        assert!(events.iter().any(|e| e["ph"] == "C"));
    }

    #[test]
    fn microseconds_are_exact() {
        assert_eq!(us(0), "0.000");
        assert_eq!(us(1_234_567), "1234.567");
        assert_eq!(us(5), "0.005");
    }
}
