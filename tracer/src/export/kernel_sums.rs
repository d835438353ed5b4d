//! The summary of a `--kernel-sums` capture as text and as JSON: a row per
//! thread, with which figures came from the kernel's counters and which
//! from its sums.

use std::io::Write;

use serde_json::{Value, json};

use super::text::table;
use crate::analysis::kernel_sums::{KernelSummary, KernelThread, ReasonTime};
use crate::units::duration;

/// What the capture itself says beside the sums.
#[derive(Clone, Copy, Debug, Default)]
pub struct Capture {
    /// Records written (the lifecycle records a `--kernel-sums` capture
    /// still writes).
    pub events: u64,
    /// Records lost (the lifecycle records a `--kernel-sums` capture still
    /// writes: forks, exits, names).
    pub lost_events: u64,
    pub ncpus: u32,
}

/// The text summary.
pub fn text(s: &KernelSummary, c: &Capture, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "{} thread{} over {} on {} CPU{} (kernel sums: no record per switch); \
         {} records lost, {} threads' sums lost",
        s.threads.len(),
        if s.threads.len() == 1 { "" } else { "s" },
        duration(s.window_ns),
        c.ncpus,
        if c.ncpus == 1 { "" } else { "s" },
        c.lost_events,
        s.lost_sums,
    )?;
    let mut rows = vec![
        [
            "TID",
            "TGID",
            "COMM",
            "ON-CPU",
            "RUNNABLE",
            "SLEEP",
            "BLOCKED",
            "STEAL",
            "SLICES",
            "WAITS",
            "WAIT P50",
            "WAIT P99",
            "WAIT MAX",
            "MIGR",
            "VOL",
            "INVOL",
            "MOST OFF-CPU IN",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for t in &s.threads {
        rows.push(row(t));
    }
    writeln!(out, "{}", table(&rows, 3, 2))?;
    let p = &s.parallelism;
    let profile: Vec<String> = p
        .running_ns
        .iter()
        .enumerate()
        .map(|(k, ns)| format!("{k}: {}", duration(*ns)))
        .collect();
    writeln!(
        out,
        "Traced threads running at once: {} (mean {:.2}); in parallel {}, busy {}",
        profile.join(", "),
        p.mean_running,
        duration(p.parallel_ns),
        duration(p.busy_ns),
    )?;
    writeln!(
        out,
        "On-CPU, runnable and switch counts: the kernel's counters (their growth \
         between the ends). The rest: the kernel's per-thread sums (waits from a \
         histogram, a quarter of an octave a bucket; sleeps and runs seen whole, \
         sleeps by the system call they were in). \
         \"-\": no sums (the thread did not switch while traced)."
    )?;
    Ok(())
}

fn row(t: &KernelThread) -> Vec<String> {
    let name = if t.ended {
        format!("{} (ended)", t.comm)
    } else {
        t.comm.clone()
    };
    let mut r = vec![
        t.tid.to_string(),
        t.tgid.to_string(),
        name,
        duration(t.on_cpu_ns),
        duration(t.runnable_ns),
    ];
    match &t.sums {
        Some(f) => r.extend([
            duration(f.sleeping_ns),
            duration(f.blocked_ns),
            duration(f.steal_ns),
            f.slices.to_string(),
            f.wait.count.to_string(),
            duration(f.wait.p50_ns),
            duration(f.wait.p99_ns),
            duration(f.wait.max_ns),
            f.migrations.to_string(),
        ]),
        None => r.extend(std::iter::repeat_n("-".to_string(), 9)),
    }
    r.push(t.voluntary_switches.to_string());
    r.push(t.involuntary_switches.to_string());
    r.push(match t.sums.as_ref().and_then(|f| f.off_cpu.first()) {
        Some(top) => format!("{} {}", reason_label(top), duration(top.ns)),
        None => "-".into(),
    });
    r
}

/// A reason for people: the system call's name (its number if unknown),
/// "no syscall", with " (I/O)" for I/O wait.
fn reason_label(r: &ReasonTime) -> String {
    let base = match r.syscall {
        Some(nr) => crate::syscalls::name(nr).map_or_else(|| format!("syscall {nr}"), String::from),
        None => "no syscall".into(),
    };
    if r.iowait {
        format!("{base} (I/O)")
    } else {
        base
    }
}

/// The JSON summary (one object; field names as the full summary's where
/// the figure is the same).
pub fn json(s: &KernelSummary, c: &Capture, out: &mut dyn Write) -> anyhow::Result<()> {
    let threads: Vec<Value> = s.threads.iter().map(thread_json).collect();
    let v = json!({
        "mode": "kernel-sums",
        "window_ns": s.window_ns,
        "ncpus": c.ncpus,
        "events": c.events,
        "lost_events": c.lost_events,
        "lost_sums": s.lost_sums,
        "parallelism": {
            "running_ns": s.parallelism.running_ns,
            "parallel_ns": s.parallelism.parallel_ns,
            "busy_ns": s.parallelism.busy_ns,
            "mean_running": s.parallelism.mean_running,
        },
        "threads": threads,
    });
    serde_json::to_writer_pretty(&mut *out, &v)?;
    writeln!(out)?;
    Ok(())
}

fn thread_json(t: &KernelThread) -> Value {
    let mut v = json!({
        "tid": t.tid,
        "tgid": t.tgid,
        "comm": t.comm,
        "ended": t.ended,
        "on_cpu_ns": t.on_cpu_ns,
        // The kernel's run delay includes waits begun while asleep (a
        // sleeper queued again on another CPU); the full summary tells
        // those apart from its records, this one cannot.
        "run_delay_asleep_ns": 0,
        "switch_ins": t.switch_ins,
        "voluntary_switches": t.voluntary_switches,
        "involuntary_switches": t.involuntary_switches,
    });
    let Some(f) = &t.sums else {
        v["states"] = json!({ "runnable_ns": t.runnable_ns });
        v["sums"] = Value::Null;
        return v;
    };
    v["states"] = json!({
        "runnable_ns": t.runnable_ns,
        "sleeping_ns": f.sleeping_ns,
        "blocked_ns": f.blocked_ns,
    });
    v["steal_ns"] = json!(f.steal_ns);
    v["slices"] = json!(f.slices);
    v["longest_slice_ns"] = json!(f.longest_slice_ns);
    v["migrations"] = json!(f.migrations);
    v["wait"] = json!({
        "count": f.wait.count,
        "total_ns": f.wait.total_ns,
        "mean_ns": f.wait.mean_ns,
        "p50_ns": f.wait.p50_ns,
        "p99_ns": f.wait.p99_ns,
        "max_ns": f.wait.max_ns,
    });
    v["wait_after_wakeup"] = json!({
        "count": f.wait_after_wakeup.0,
        "total_ns": f.wait_after_wakeup.1,
    });
    v["wait_after_preempt"] = json!({
        "count": f.wait_after_preempt.0,
        "total_ns": f.wait_after_preempt.1,
    });
    let reasons: Vec<Value> = f
        .off_cpu
        .iter()
        .map(|r| {
            json!({
                "syscall": r.syscall.and_then(crate::syscalls::name),
                "syscall_nr": r.syscall,
                "iowait": r.iowait,
                "count": r.count,
                "ns": r.ns,
            })
        })
        .collect();
    v["off_cpu"] = json!(reasons);
    v["off_cpu_other"] = json!({ "count": f.off_cpu_other.0, "ns": f.off_cpu_other.1 });
    v["sums"] = json!({
        "runs_on_cpu_ns": f.runs_on_cpu_ns,
        "voluntary": f.voluntary,
        "involuntary": f.involuntary,
    });
    v
}
