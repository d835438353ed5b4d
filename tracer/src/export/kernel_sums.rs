//! The summary of a `--kernel-sums` capture as text and as JSON: a row per
//! thread, with which figures came from the kernel's counters and which
//! from its sums.

use std::io::Write;

use serde_json::{Value, json};

use super::text::table;
use crate::analysis::kernel_sums::{
    KernelParallelism, KernelProcess, KernelSummary, KernelThread, SumsFigures,
};
use crate::units::{duration, percent};

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
    /// The waking program ran (not `--no-wakeups`): the sums count wakers.
    pub wakeups: bool,
}

/// The text summary.
pub fn text(s: &KernelSummary, c: &Capture, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "{} thread{} over {} on {} CPU{} (kernel sums: no record per switch); \
         {} records lost, {} threads' sums lost, {} switches or wakings missed by the sums",
        s.threads.len(),
        if s.threads.len() == 1 { "" } else { "s" },
        duration(s.window_ns),
        c.ncpus,
        if c.ncpus == 1 { "" } else { "s" },
        c.lost_events,
        s.lost_sums,
        s.missed_sums,
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
            "CPUS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for t in &s.threads {
        rows.push(row(t));
    }
    writeln!(out, "{}", table(&rows, 3, 2))?;
    if s.processes.len() > 1 {
        writeln!(out, "{}", processes(s))?;
    }
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
        "Mean threads waiting for a CPU: {:.2} (time-sliced time is not kept in this mode)",
        p.mean_waiting
    )?;
    section(
        out,
        "Off the CPU, by what the thread was waiting in (sleeps seen whole):",
        s,
        off_cpu_line,
    )?;
    section(
        out,
        "Preempted by (count and the wait that followed):",
        s,
        |f| {
            let items = super::text::holders(&f.preempted_by, f.preempted_by_others, true);
            (!items.is_empty()).then(|| items.join(", "))
        },
    )?;
    if c.wakeups {
        section(out, "Who woke whom (most often first):", s, wakers_line)?;
    } else {
        writeln!(out, "\nWho woke whom: not traced (--no-wakeups)")?;
    }
    writeln!(
        out,
        "\nOn-CPU, runnable and switch counts: the kernel's counters (their growth \
         between the ends). The rest: the kernel's per-thread sums (waits from a \
         histogram, a quarter of an octave a bucket; sleeps and runs seen whole, \
         sleeps by the system call they were in; the first {} wakers and {} CPUs of \
         each thread, the rest together). \"-\": no sums (the thread did not switch \
         while traced). Not in this mode: the time each waited behind others, wakeup \
         chains, time-sliced time, anomalies, the timeline.",
        schedtrace_common::SUM_WAKERS,
        schedtrace_common::SUM_CPUS,
    )?;
    Ok(())
}

/// A row per process, as the record summary's "By process".
fn processes(s: &KernelSummary) -> String {
    let mut rows = vec![super::text::PROCESS_COLUMNS.map(String::from).to_vec()];
    for p in &s.processes {
        rows.push(vec![
            p.pid.to_string(),
            p.comm.clone(),
            p.threads.to_string(),
            duration(p.on_cpu_ns),
            percent(p.on_cpu_ns, s.window_ns),
            duration(p.steal_ns),
            duration(p.runnable_ns),
            duration(p.parallelism.parallel_ns),
            format!("{:.2}", p.parallelism.mean_running),
        ]);
    }
    format!("By process:\n{}", table(&rows, 2, 2))
}

/// A titled list of a line per thread that has one.
fn section(
    out: &mut dyn Write,
    title: &str,
    s: &KernelSummary,
    line: fn(&SumsFigures) -> Option<String>,
) -> anyhow::Result<()> {
    let lines: Vec<String> = s
        .threads
        .iter()
        .filter_map(|t| {
            let l = line(t.sums.as_ref()?)?;
            Some(format!("  {} {}: {l}", t.comm, t.tid))
        })
        .collect();
    if !lines.is_empty() {
        writeln!(out, "\n{title}\n{}", lines.join("\n"))?;
    }
    Ok(())
}

fn off_cpu_line(f: &SumsFigures) -> Option<String> {
    let total = f.sleeping_ns + f.blocked_ns;
    if total == 0 {
        return None;
    }
    let mut items: Vec<String> = f
        .off_cpu
        .iter()
        .filter(|r| r.ns > 0)
        .map(|r| format!("{} {}", duration(r.ns), r.describe()))
        .collect();
    if f.off_cpu_other.1 > 0 {
        items.push(format!("{} other reasons", duration(f.off_cpu_other.1)));
    }
    Some(format!("{}: {}", duration(total), items.join(", ")))
}

fn wakers_line(f: &SumsFigures) -> Option<String> {
    if f.wakers.is_empty() {
        return None;
    }
    let mut items: Vec<String> = f
        .wakers
        .iter()
        .map(|w| format!("{} x{}", w.describe(), w.count))
        .collect();
    if f.wakers_other > 0 {
        items.push(format!("others x{}", f.wakers_other));
    }
    Some(items.join(", "))
}

/// Each CPU's share of the runs seen whole: `0:41.7% 1:58.3%`.
fn cpus_cell(f: &SumsFigures) -> String {
    let total = f.cpus.iter().map(|(_, ns)| ns).sum::<u64>() + f.cpus_other_ns;
    if total == 0 {
        return "-".into();
    }
    let mut cells: Vec<String> = f
        .cpus
        .iter()
        .map(|(c, ns)| format!("{c}:{}", percent(*ns, total)))
        .collect();
    if f.cpus_other_ns > 0 {
        cells.push(format!("other:{}", percent(f.cpus_other_ns, total)));
    }
    cells.join(" ")
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
        Some(top) => format!("{} {}", top.describe(), duration(top.ns)),
        None => "-".into(),
    });
    r.push(t.sums.as_ref().map_or_else(|| "-".into(), cpus_cell));
    r
}

/// The JSON summary (one object; field names as the full summary's where
/// the figure is the same).
pub fn json(s: &KernelSummary, c: &Capture, out: &mut dyn Write) -> anyhow::Result<()> {
    let threads: Vec<Value> = s.threads.iter().map(thread_json).collect();
    let v = json!({
        "schema": "schedtrace-kernel-summary",
        "version": 1,
        "mode": "kernel-sums",
        "window_ns": s.window_ns,
        "ncpus": c.ncpus,
        "events": c.events,
        "lost_events": c.lost_events,
        "lost_sums": s.lost_sums,
        "missed_sums": s.missed_sums,
        "wakeups": c.wakeups,
        "parallelism": parallelism_json(&s.parallelism),
        "processes": s.processes.iter().map(process_json).collect::<Vec<_>>(),
        "threads": threads,
    });
    serde_json::to_writer_pretty(&mut *out, &v)?;
    writeln!(out)?;
    Ok(())
}

fn parallelism_json(p: &KernelParallelism) -> Value {
    json!({
        "running_ns": p.running_ns,
        "parallel_ns": p.parallel_ns,
        "busy_ns": p.busy_ns,
        "mean_running": p.mean_running,
        "mean_runnable": p.mean_waiting,
    })
}

fn process_json(p: &KernelProcess) -> Value {
    json!({
        "tgid": p.pid,
        "comm": p.comm,
        "threads": p.threads,
        "on_cpu_ns": p.on_cpu_ns,
        "runnable_ns": p.runnable_ns,
        "steal_ns": p.steal_ns,
        "voluntary_switches": p.voluntary_switches,
        "involuntary_switches": p.involuntary_switches,
        "parallelism": parallelism_json(&p.parallelism),
    })
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
    v["cpus"] = json!(
        f.cpus
            .iter()
            .map(|(c, ns)| (c.to_string(), json!(ns)))
            .collect::<serde_json::Map<String, Value>>()
    );
    v["cpus_other_ns"] = json!(f.cpus_other_ns);
    let wakers: Vec<_> = f.wakers.iter().map(super::json::waker).collect();
    v["wakers"] = json!(wakers);
    v["wakers_other"] = json!(f.wakers_other);
    let preempted: Vec<_> = f.preempted_by.iter().map(super::json::holder).collect();
    v["preempted_by"] = json!(preempted);
    v["preempted_by_others"] = json!({
        "ns": f.preempted_by_others.0,
        "count": f.preempted_by_others.1,
    });
    v["sums"] = json!({
        "runs_on_cpu_ns": f.runs_on_cpu_ns,
        "runs_seen_ns": f.runs_seen_ns,
        "voluntary": f.voluntary,
        "involuntary": f.involuntary,
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::kernel_sums::{KernelProcess, ReasonTime};
    use crate::analysis::summary::Waker;
    use crate::event::WakeContext;

    fn summary() -> KernelSummary {
        let futex = crate::syscalls::number("futex").expect("futex");
        let f = SumsFigures {
            slices: 4,
            sleeping_ns: 3_000_000,
            off_cpu: vec![ReasonTime {
                syscall: Some(futex),
                iowait: false,
                count: 2,
                ns: 2_000_000,
            }],
            off_cpu_other: (1, 1_000_000),
            cpus: vec![(0, 250), (1, 750)],
            wakers: vec![Waker {
                tid: 11,
                tgid: 10,
                comm: "node-main".into(),
                context: WakeContext::Task,
                process: None,
                count: 3,
            }],
            wakers_other: 1,
            ..Default::default()
        };
        KernelSummary {
            window_ns: 1_000_000_000,
            threads: vec![KernelThread {
                tid: 12,
                tgid: 10,
                comm: "pool".into(),
                sums: Some(f),
                ..Default::default()
            }],
            parallelism: KernelParallelism {
                running_ns: vec![0, 1_000_000_000],
                mean_waiting: 0.25,
                ..Default::default()
            },
            processes: vec![KernelProcess {
                pid: 10,
                comm: "node".into(),
                threads: 1,
                on_cpu_ns: 250_000_000,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// [`summary`] with a second process, whose threads ran in parallel
    /// for 0.4 s.
    fn two_processes() -> KernelSummary {
        let mut s = summary();
        s.processes.push(KernelProcess {
            pid: 20,
            comm: "builder".into(),
            threads: 2,
            on_cpu_ns: 900_000_000,
            parallelism: KernelParallelism {
                parallel_ns: 400_000_000,
                mean_running: 0.9,
                ..Default::default()
            },
            ..Default::default()
        });
        s
    }

    #[test]
    fn processes_get_rows_when_there_are_several() {
        let c = Capture {
            ncpus: 2,
            wakeups: true,
            ..Default::default()
        };
        let text_of = |s: &KernelSummary| {
            let mut out = Vec::new();
            text(s, &c, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let one = text_of(&summary());
        assert!(!one.contains("By process:"), "{one}");
        let two = text_of(&two_processes());
        let rows: Vec<&str> = two
            .lines()
            .skip_while(|l| *l != "By process:")
            .skip(2)
            .take(2)
            .collect();
        let cells: Vec<Vec<&str>> = rows
            .iter()
            .map(|r| r.split_whitespace().collect())
            .collect();
        assert_eq!(cells[0][..3], ["10", "node", "1"], "{two}");
        assert_eq!(
            cells[1][..5],
            ["20", "builder", "2", "900.0", "ms"],
            "{two}"
        );
        assert_eq!(cells[1][5], "90.0%", "{two}");
        assert_eq!(
            cells[1][cells[1].len() - 3..],
            ["400.0", "ms", "0.90"],
            "{two}"
        );
        let mut out = Vec::new();
        json(&two_processes(), &c, &mut out).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["processes"][1]["tgid"], 20);
        assert_eq!(v["processes"][1]["threads"], 2);
        assert_eq!(v["processes"][1]["parallelism"]["parallel_ns"], 400_000_000);
        assert_eq!(v["processes"][0]["on_cpu_ns"], 250_000_000);
    }

    #[test]
    fn text_has_cpus_reasons_and_wakers_or_says_they_were_not_traced() {
        let c = Capture {
            ncpus: 2,
            wakeups: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        text(&summary(), &c, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("0:25.0% 1:75.0%"), "{out}");
        assert!(
            out.contains("Mean threads waiting for a CPU: 0.25"),
            "{out}"
        );
        assert!(
            out.contains("  pool 12: 3.0 ms: 2.0 ms futex (lock/condvar), 1.0 ms other reasons"),
            "{out}"
        );
        assert!(
            out.contains("  pool 12: node-main (11) x3, others x1"),
            "{out}"
        );
        let mut out = Vec::new();
        let c = Capture {
            wakeups: false,
            ..c
        };
        text(&summary(), &c, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("Who woke whom: not traced (--no-wakeups)"),
            "{out}"
        );
        assert!(!out.contains("node-main (11) x3"), "{out}");
    }

    #[test]
    fn json_has_cpus_and_wakers_with_the_full_summarys_field_names() {
        let c = Capture {
            ncpus: 2,
            wakeups: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        json(&summary(), &c, &mut out).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let t = &v["threads"][0];
        assert_eq!(t["cpus"], json!({"0": 250, "1": 750}));
        assert_eq!(t["wakers"][0]["tid"], 11);
        assert_eq!(t["wakers"][0]["kind"], "task");
        assert_eq!(t["wakers"][0]["count"], 3);
        assert_eq!(t["wakers_other"], 1);
        assert_eq!(v["parallelism"]["mean_runnable"], 0.25);
        assert_eq!(v["wakeups"], true);
        assert_eq!(
            (&v["schema"], &v["version"], &v["mode"]),
            (
                &json!("schedtrace-kernel-summary"),
                &json!(1),
                &json!("kernel-sums")
            )
        );
    }
}
