//! The text summary: a table of threads sorted by on-CPU time and the
//! process's parallelism profile, in units chosen for people.

use std::io::Write;

use super::{Exporter, Report};
use crate::analysis::summary::{HolderTime, ProcessSummary, Summary, ThreadSummary, holder_label};
use crate::units::{cpus, duration, percent};

pub(crate) struct Text;

/// Width of the profile bars.
const BAR: usize = 30;

fn header(s: &Summary) -> String {
    let what = s.targets_label();
    let pinned = s
        .pinned_cpus
        .as_ref()
        .map(|c| format!(", pinned to {}", cpus(c)))
        .unwrap_or_default();
    let threads = match &s.selection {
        Some(sel) => format!(
            "{} of {} threads selected ({})",
            s.total.threads_seen,
            sel.of_threads,
            sel.describe()
        ),
        None => format!(
            "{} thread{}",
            s.total.threads_seen,
            if s.total.threads_seen == 1 { "" } else { "s" }
        ),
    };
    format!(
        "{what}: {threads} over {} on {} CPU{}{pinned}; {} events, {} lost{}",
        duration(s.window_ns),
        s.ncpus,
        if s.ncpus == 1 { "" } else { "s" },
        s.events,
        s.lost_events,
        if s.lost_events > 0 {
            " (raise --buffer-size)"
        } else {
            ""
        },
    )
}

/// Render rows with columns padded to their widest cell and `gap` spaces
/// between them; the first `left` columns are left-aligned, the rest
/// right-aligned.
pub(crate) fn table(rows: &[Vec<String>], left: usize, gap: usize) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|x| x.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c > 0 {
                line.extend(std::iter::repeat_n(' ', gap));
            }
            if c < left {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            } else {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(crate) fn render(s: &Summary) -> String {
    let mut out = String::new();
    out.push_str(&header(s));
    out.push_str("\n\n");
    let (rows, more) = thread_rows(s);
    out.push_str(&table(&rows, 2, 2));
    out.push_str(&more);
    out.push_str(&process_rows(s));
    out.push_str(&profile(s));
    out.push_str(&why(s));
    out.push_str(&notes(s));
    out
}

/// Rows of the thread and process tables of a trace of every task
/// (`--all`): the busiest that ran or waited at all; the JSON summary lists
/// every one.
const ALL_ROWS: usize = 30;

/// Threads listed per section of [`why`].
const WHY_THREADS: usize = 12;
/// Entries listed per thread and section.
const WHY_ENTRIES: usize = 3;

/// The threads with some of `ns`, largest first (the first few, then how
/// many more), each as "comm tid duration".
fn largest_first(s: &Summary, ns: impl Fn(&ThreadSummary) -> u64) -> String {
    let mut top: Vec<&ThreadSummary> = s.threads.iter().filter(|t| ns(t) > 0).collect();
    top.sort_by_key(|t| (std::cmp::Reverse(ns(t)), t.tid));
    first_few(
        top.iter()
            .map(|t| format!("{} {} {}", t.comm, t.tid, duration(ns(t))))
            .collect(),
    )
}

/// `a, b, c` of the first [`WHY_ENTRIES`], then `, … (N more)`.
fn first_few(items: Vec<String>) -> String {
    let n = items.len();
    let mut s = items
        .into_iter()
        .take(WHY_ENTRIES)
        .collect::<Vec<_>>()
        .join(", ");
    if n > WHY_ENTRIES {
        s.push_str(&format!(", … ({} more)", n - WHY_ENTRIES));
    }
    s
}

pub(crate) fn holders(list: &[HolderTime], others: (u64, u64), count: bool) -> Vec<String> {
    let mut v: Vec<String> = list
        .iter()
        .map(|h| {
            let name = holder_label(&h.holder);
            if count {
                format!("{name} ×{} ({})", h.count, duration(h.ns))
            } else {
                format!("{name} {}", duration(h.ns))
            }
        })
        .collect();
    if others.0 > 0 || others.1 > 0 {
        v.push(if count {
            format!("others ×{} ({})", others.1, duration(others.0))
        } else {
            format!("others {}", duration(others.0))
        });
    }
    v
}

/// One section: a heading and a line per thread that has something to say.
fn section(s: &Summary, heading: &str, line: impl Fn(&ThreadSummary) -> Option<String>) -> String {
    let lines: Vec<String> = s
        .threads
        .iter()
        .filter_map(|t| Some(format!("  {}: {}", t.label(), line(t)?)))
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    let mut out = format!("\n{heading}\n");
    for l in lines.iter().take(WHY_THREADS) {
        out.push_str(l);
        out.push('\n');
    }
    if lines.len() > WHY_THREADS {
        out.push_str(&format!(
            "  … and {} more threads (--format json lists every one)\n",
            lines.len() - WHY_THREADS
        ));
    }
    out
}

/// Why threads were off the CPU, who ran instead, and what woke them.
fn why(s: &Summary) -> String {
    let mut out = String::new();
    let recorded = s
        .threads
        .iter()
        .any(|t| t.off_cpu.iter().any(|o| o.key.syscall.is_some()));
    if recorded {
        out.push_str(&section(
            s,
            "Off the CPU, by what the thread was waiting in (sleeping and blocked time):",
            |t| {
                let total = t.states.sleeping_ns + t.states.blocked_ns;
                (total > 0).then(|| {
                    let items = t
                        .off_cpu
                        .iter()
                        .filter(|o| o.ns > 0)
                        .map(|o| format!("{} {}", duration(o.ns), o.key.describe()))
                        .collect();
                    format!("{}: {}", duration(total), first_few(items))
                })
            },
        ));
    }
    out.push_str(&section(
        s,
        "Who ran instead (preempted by: count and the wait that followed; waited behind: \
         time they held the CPU it waited for):",
        |t| {
            let a = t.antagonists();
            let p = holders(&a.preempted_by, a.preempted_by_others, true);
            let w = holders(&a.waited_behind, a.waited_behind_others, false);
            let mut parts = Vec::new();
            if !p.is_empty() {
                parts.push(format!("preempted by {}", first_few(p)));
            }
            if !w.is_empty() {
                parts.push(format!("waited behind {}", first_few(w)));
            }
            (!parts.is_empty()).then(|| parts.join("; "))
        },
    ));
    out.push_str(&section(
        s,
        "Wakeup chains (who woke it ← who woke that one ..., most common first):",
        |t| {
            (!t.chains.is_empty()).then(|| {
                first_few(
                    t.chains
                        .iter()
                        .map(|(c, n)| format!("{} ×{n}", s.chain_label(c)))
                        .collect(),
                )
            })
        },
    ));
    out
}

/// The thread table: a row per thread, then the total.
/// The processes, most on-CPU time first (then by PID).
fn by_on_cpu(s: &Summary) -> Vec<&ProcessSummary> {
    let mut procs: Vec<&ProcessSummary> = s.processes.iter().collect();
    procs.sort_by(|a, b| b.on_cpu_ns.cmp(&a.on_cpu_ns).then(a.tgid.cmp(&b.tgid)));
    procs
}

/// The threads, each process's together when there are several (in the
/// order of [`by_on_cpu`]), and within a process in the summary's order
/// (by on-CPU time).
fn grouped(s: &Summary) -> Vec<&ThreadSummary> {
    let mut threads: Vec<&ThreadSummary> = s.threads.iter().collect();
    if s.processes.len() > 1 {
        let order: Vec<u32> = by_on_cpu(s).iter().map(|p| p.tgid).collect();
        let rank = |tgid: u32| order.iter().position(|&t| t == tgid).unwrap_or(order.len());
        threads.sort_by_key(|t| rank(t.tgid));
    }
    threads
}

/// The thread table's rows, and the line that says how many it leaves out.
fn thread_rows(s: &Summary) -> (Vec<Vec<String>>, String) {
    let mut more = String::new();
    let mut rows = vec![
        [
            "TID", "NAME", "ON-CPU", "SHARE", "RUNNABLE", "SLEEPING", "BLOCKED", "VOL", "INVOL",
            "MIGR", "LONGEST", "WAIT p50", "WAIT p99", "CPUS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let threads = grouped(s);
    if s.all_but.is_some() {
        // Hundreds of tasks: the busiest, whatever their process.
        let mut busiest: Vec<&ThreadSummary> = s
            .threads
            .iter()
            .filter(|t| t.on_cpu_ns > 0 || t.states.runnable_ns > 0)
            .collect();
        busiest.sort_by(|a, b| b.on_cpu_ns.cmp(&a.on_cpu_ns).then(a.tid.cmp(&b.tid)));
        for t in busiest.iter().take(ALL_ROWS) {
            rows.push(thread_row(s, t));
        }
        let left = threads.len() - busiest.len().min(ALL_ROWS);
        if left > 0 {
            more = format!("  … and {left} more threads, most idle (--format json lists them)\n");
        }
    } else {
        for t in threads {
            rows.push(thread_row(s, t));
        }
    }
    let p = &s.total;
    rows.push(vec![
        String::new(),
        "TOTAL".into(),
        duration(p.on_cpu_ns),
        percent(p.on_cpu_ns, s.window_ns),
        String::new(),
        String::new(),
        String::new(),
        p.voluntary_switches.to_string(),
        p.involuntary_switches.to_string(),
        p.migrations.to_string(),
    ]);
    (rows, more)
}

fn thread_row(s: &Summary, t: &ThreadSummary) -> Vec<String> {
    let cpus = t
        .cpus
        .iter()
        .map(|(c, ns)| format!("{c}:{}", percent(*ns, t.on_cpu_ns.max(1))))
        .collect::<Vec<_>>()
        .join(" ");
    let mut name = t.comm.clone();
    if let Some(r) = &t.role {
        name = format!("{name} ({})", r.label);
    }
    if t.tgid != s.target_pid {
        name = format!("{name} [{}]", t.tgid);
    }
    if t.exited_ns.is_some() {
        name.push_str(" (exited)");
    }
    vec![
        t.tid.to_string(),
        name,
        duration(t.on_cpu_ns),
        percent(t.on_cpu_ns, s.window_ns),
        duration(t.states.runnable_ns),
        duration(t.states.sleeping_ns),
        duration(t.states.blocked_ns),
        t.voluntary_switches.to_string(),
        t.involuntary_switches.to_string(),
        t.migrations.to_string(),
        duration(t.longest_slice_ns),
        if t.wait.count > 0 {
            duration(t.wait.p50_ns)
        } else {
            "-".into()
        },
        if t.wait.count > 0 {
            duration(t.wait.p99_ns)
        } else {
            "-".into()
        },
        if cpus.is_empty() { "-".into() } else { cpus },
    ]
}

/// The columns of a row per process (this summary's and the kernel
/// summary's).
pub(crate) const PROCESS_COLUMNS: [&str; 9] = [
    "PID",
    "NAME",
    "THREADS",
    "ON-CPU",
    "SHARE",
    "STEAL",
    "RUNNABLE",
    "PARALLEL",
    "MEAN RUNNING",
];

/// One row per process when several were traced (a repeated `--pid`,
/// followed children): each process's own on-CPU time, steal and parallelism.
fn process_rows(s: &Summary) -> String {
    if s.processes.len() < 2 {
        return String::new();
    }
    let mut rows = vec![PROCESS_COLUMNS.map(String::from).to_vec()];
    let procs = by_on_cpu(s);
    let shown = if s.all_but.is_some() {
        ALL_ROWS.min(procs.iter().filter(|p| p.on_cpu_ns > 0).count())
    } else {
        procs.len()
    };
    for p in &procs[..shown] {
        // Its threads' run-queue wait (those the summary lists).
        let runnable: u64 = s
            .threads
            .iter()
            .filter(|t| t.tgid == p.tgid)
            .map(|t| t.states.runnable_ns)
            .fold(0, u64::saturating_add);
        rows.push(vec![
            p.tgid.to_string(),
            p.comm.clone(),
            p.threads_seen.to_string(),
            duration(p.on_cpu_ns),
            percent(p.on_cpu_ns, s.window_ns),
            duration(p.steal_ns),
            duration(runnable),
            duration(p.parallelism.parallel_ns),
            format!("{:.2}", p.parallelism.mean_running),
        ]);
    }
    let more = if shown < procs.len() {
        format!(
            "  … and {} more processes, idle or less busy\n",
            procs.len() - shown
        )
    } else {
        String::new()
    };
    format!("\nBy process:\n{}{more}", table(&rows, 2, 2))
}

/// The parallelism profile: a bar per number of threads on a CPU at once,
/// then the parallel and time-sliced figures.
fn profile(s: &Summary) -> String {
    let mut out = String::new();
    let par = &s.total.parallelism;
    out.push_str("\nThreads on a CPU at once (share of the window):\n");
    for (k, ns) in par.running_ns.iter().enumerate() {
        let frac = if s.window_ns == 0 {
            0.0
        } else {
            *ns as f64 / s.window_ns as f64
        };
        let bar = "█".repeat((frac * BAR as f64).round() as usize);
        let line = format!(
            "  {k:>2}  {:>9}  {:>6}  {bar}",
            duration(*ns),
            percent(*ns, s.window_ns)
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "\nParallel (2+ threads running at once): {} ({})\n\
         Time-sliced (2+ threads wanted a CPU, some had to wait): {} ({})\n\
         Mean threads running: {:.2}, waiting for a CPU: {:.2}\n",
        duration(par.parallel_ns),
        percent(par.parallel_ns, s.window_ns),
        duration(par.time_sliced_ns),
        percent(par.time_sliced_ns, s.window_ns),
        par.mean_running,
        par.mean_runnable,
    ));
    out
}

/// Who woke whom, and notes on anomalies and an incomplete trace.
fn notes(s: &Summary) -> String {
    let mut out = who_woke_whom(s);
    out.push_str(&anomalies_note(s));
    out.push_str(&accounting(s));
    out.push_str(&unknown_note(s));
    out.push_str(&incomplete_note(s));
    out
}

/// The threads' most frequent wakers, and the wakeups the kernel's stream
/// lacked.
fn who_woke_whom(s: &Summary) -> String {
    let mut out = String::new();
    let wakers: Vec<String> = s
        .threads
        .iter()
        .filter(|t| !t.wakers.is_empty())
        .take(8)
        .map(|t| {
            let w = &t.wakers[0];
            let mut line = format!(
                "  {} ({}) woken most by {} x{}",
                t.comm,
                t.tid,
                w.describe(),
                w.count
            );
            if let Some(w) = t.wakers.get(1) {
                line.push_str(&format!(", then {} x{}", w.describe(), w.count));
            }
            line
        })
        .collect();
    if !s.wakeups {
        out.push_str(
            "\nWho woke whom: not traced (--no-wakeups); waits are the kernel's own \
             run-queue accounting\n",
        );
    } else if !wakers.is_empty() {
        out.push_str("\nWho woke whom:\n");
        out.push_str(&wakers.join("\n"));
        out.push('\n');
    }
    let missing: u64 = s.missing_wakeups_per_cpu.iter().sum();
    if s.wakeups && missing > 0 {
        out.push_str(&format!(
            "\nnote: {missing} wakeups of the threads were not in the kernel's event stream \
             (a thread was switched in with no wakeup seen): who woke them is unknown, so \
             the wakers above leave them out; their waits are the kernel's own\n"
        ));
    }
    out
}

/// The note on events that did not fit the state machine, and why.
fn anomalies_note(s: &Summary) -> String {
    if s.anomalies == 0 {
        return String::new();
    }
    let (why, then) = if s.lost_events > 0 {
        ("events were lost", "the time they hide is unknown time")
    } else if s.kernel_counters {
        (
            "a damaged trace: events or kernel counters that contradict the rest",
            "on-CPU time stays the kernel's count, cut where it would exceed what the \
             CPUs had",
        )
    } else {
        (
            "mostly a thread the kernel resumed without a sched_switch event",
            "those runs count as runnable time",
        )
    };
    format!(
        "\nnote: {} events did not fit the state machine ({why}); {then}\n",
        s.anomalies
    )
}

/// The note on the threads' time in no known state, and why.
fn unknown_note(s: &Summary) -> String {
    let unknown: u64 = s.threads.iter().map(|t| t.states.unknown_ns).sum();
    if unknown == 0 {
        return String::new();
    }
    // Only losses are the buffer's to fix; the kernel's own stream can
    // lack a switch too (the anomalies and inferred runs above).
    let why = if s.lost_events > 0 {
        "events were lost, or did not fit"
    } else if s.anomalies > 0 {
        "after switches the kernel's stream lacked, or events that did not fit; none was lost"
    } else {
        // A run whose switch-out the stream lacks (see `inferred_runs`)
        // ended unseen, and what its thread did next is unknown until
        // its next event.
        "after switches the kernel's stream lacked; none was lost"
    };
    let fix = if s.lost_events > 0 {
        "; raise --buffer-size"
    } else {
        ""
    };
    format!(
        "\nnote: {} of the threads' time is unknown ({why}): counted in no state, never \
         as on-CPU time{fix}\n",
        duration(unknown)
    )
}

/// The notes on processes not traced and on a trace that is incomplete.
fn incomplete_note(s: &Summary) -> String {
    let mut out = String::new();
    if s.lost_processes > 0 {
        out.push_str(&format!(
            "\nnote: {}\n",
            crate::analysis::summary::lost_processes_note(s.lost_processes)
        ));
    }
    if s.stop_reason == crate::analysis::summary::NO_END_RECORD {
        out.push_str(&format!(
            "\nnote: the trace is incomplete: {} (schedtrace was killed, or the file was cut); \
             figures end at the last event\n",
            s.stop_reason
        ));
    } else if !s.complete {
        out.push_str(&format!(
            "\nnote: the trace is incomplete ({}); figures end at the last event\n",
            s.stop_reason
        ));
    }
    out
}

/// What the kernel's counters show beyond the event stream: runs whose
/// switch-in the stream lacked, and CPU time the kernel did not charge.
fn accounting(s: &Summary) -> String {
    let mut out = String::new();
    if s.unplaced_runs > 0 {
        out.push_str(&format!(
            "\nnote: {} runs had neither end in the kernel's event stream: their on-CPU time \
             is the kernel's count, in the totals above, but they are not drawn in the \
             timelines\n",
            s.unplaced_runs
        ));
    }
    let inferred: u64 = s.inferred_per_cpu.iter().sum();
    if inferred > 0 {
        let ns: u64 = s.threads.iter().map(|t| t.inferred_ns).sum();
        out.push_str(&format!(
            "\nnote: {inferred} runs ({}) had no switch-in in the kernel's event stream; \
             they are placed from their switch-out's counters and drawn as inferred \
             (docs/summary-schema.md, inferred_runs)\n",
            duration(ns)
        ));
    }
    if s.total.steal_ns > 0 {
        out.push_str(&format!(
            "\nSteal: {} on a CPU the kernel did not charge (hypervisor steal; interrupts \
             too where the kernel accounts IRQ time): {}\n",
            duration(s.total.steal_ns),
            largest_first(s, |t| t.steal_ns)
        ));
    }
    if s.total.run_delay_asleep_ns > 0 {
        out.push_str(&format!(
            "\nnote: the kernel counted {} of sleep as run-queue wait (a sleeping thread \
             moved to another CPU while its dequeue was delayed); not in the runnable \
             times: {} (docs/summary-schema.md, run_delay_asleep_ns)\n",
            duration(s.total.run_delay_asleep_ns),
            largest_first(s, |t| t.run_delay_asleep_ns)
        ));
    }
    if let Some(n) = s.recursion_misses.filter(|&n| n > 0) {
        out.push_str(&format!(
            "\nnote: the kernel skipped {n} runs of schedtrace's programs (recursion): \
             their events are missing\n"
        ));
    }
    let late = s.late_events();
    if late > 0 {
        let cpus: Vec<String> = s
            .late_per_cpu
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(cpu, n)| format!("{n} on CPU {cpu}"))
            .collect();
        out.push_str(&format!(
            "\nnote: {late} events arrived after newer ones had been handed on ({}): \
             each was taken at the time the analysis had reached (an anomaly)\n",
            cpus.join(", ")
        ));
    }
    for g in &s.end_gaps {
        out.push_str(&format!(
            "\nnote: CPU {}'s events could not be shown complete for the last {} of the \
             trace (no progress mark): events there may be missing\n",
            g.cpu,
            duration(g.to_ns.saturating_sub(g.from_ns))
        ));
    }
    if s.lost_stacks > 0 {
        out.push_str(&format!(
            "\nnote: {} sleeps lost their stack (the stack map was full, or every id the \
             stack may take held another): their time is in the waits, not in the stacks\n",
            s.lost_stacks
        ));
    }
    out
}

impl Exporter for Text {
    fn write(&self, report: &Report<'_>, out: &mut dyn Write) -> anyhow::Result<()> {
        out.write_all(render(report.summary).as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Options, analyze};
    use crate::testutil::*;

    #[test]
    fn text_summary_snapshot() {
        let ev = [
            switch(2_000_000, 1, task(0), 0, task(102)),
            wakeup(2_500_000, 1, task(102), task(101), false),
            switch(4_000_000, 0, task(100), 1, task(101)),
            switch(6_000_000, 1, task(102), 0, task(0)),
        ];
        let recs = trace(
            2,
            1_000_000,
            &[(100, 'R'), (101, 'S'), (102, 'R')],
            &ev,
            8_000_000,
        );
        let (s, _) = analyze(&recs, Options::default());
        insta::assert_snapshot!(render(&s));
    }

    #[test]
    fn several_processes_are_grouped_snapshot() {
        let other = |tid| crate::event::Task {
            tid,
            tgid: 400,
            ..task(tid)
        };
        let ev = [
            // 101 runs most, but its process less than process 400.
            switch(2_000_000, 0, task(0), 0, task(101)),
            switch(2_000_000, 1, task(0), 0, other(400)),
            switch(5_000_000, 0, task(101), 1, other(401)),
            switch(6_000_000, 1, other(400), 1, task(102)),
            switch(7_000_000, 0, other(401), 1, task(0)),
            switch(7_500_000, 1, task(102), 1, task(0)),
        ];
        let mut recs = trace(2, 1_000_000, &[(101, 'R'), (102, 'R')], &ev, 8_000_000);
        for (i, tid) in [400, 401].into_iter().enumerate() {
            let info = crate::trace::ThreadInfo {
                tgid: 400,
                ..thread_info(tid, 'R')
            };
            recs.insert(3 + i, crate::trace::Record::Thread(info));
        }
        if let crate::trace::Record::Header(h) = &mut recs[0] {
            h.also = vec![crate::trace::TargetProcess {
                pid: 400,
                comm: "other".into(),
                ns_pid: Some(1),
            }];
        }
        let (mut s, _) = analyze(&recs, Options::default());
        // Steal on one thread of process 400 (a synthetic trace has none):
        // its process's row says it, the other's says 0.
        let stolen = 300_000;
        s.threads
            .iter_mut()
            .find(|t| t.tid == 401)
            .unwrap()
            .steal_ns = stolen;
        s.processes
            .iter_mut()
            .find(|p| p.tgid == 400)
            .unwrap()
            .steal_ns = stolen;
        s.total.steal_ns = stolen;
        let text = render(&s);
        let rows: Vec<&str> = text
            .lines()
            .skip(3)
            .take(4)
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(rows, ["400", "401", "101", "102"], "{text}");
        insta::assert_snapshot!(text);
    }

    /// `--all`: the tables list what ran or waited, busiest first, and say
    /// how many they leave out.
    #[test]
    fn every_task_lists_the_busy_ones() {
        let ev = [
            switch(2_000_000, 0, task(0), 0, task(101)),
            switch(5_000_000, 0, task(101), 1, task(0)),
        ];
        let mut recs = trace(2, 1_000_000, &[(101, 'S'), (102, 'S')], &ev, 8_000_000);
        if let crate::trace::Record::Header(h) = &mut recs[0] {
            h.target_pid = 0;
            h.all_but = Some(999);
        }
        let (s, _) = analyze(&recs, Options::default());
        let text = render(&s);
        assert!(text.starts_with("every task (1 process)"), "{text}");
        assert!(text.contains("\n101 "), "{text}");
        assert!(
            !text.contains("\n102 "),
            "an idle thread is left out: {text}"
        );
        assert!(text.contains("… and 1 more threads, most idle"), "{text}");
    }

    /// Two threads of PID 100 switching with each other on two CPUs, 1 to 8 ms.
    fn two_threads_taking_turns() -> Vec<crate::trace::Record> {
        let ev = [
            switch(2_000_000, 0, task(100), 0, task(101)),
            switch(4_000_000, 1, task(101), 0, task(100)),
        ];
        trace(2, 1_000_000, &[(100, 'R'), (101, 'R')], &ev, 8_000_000)
    }

    #[test]
    fn missing_wakeups_and_unplaced_runs_are_stated() {
        let recs = two_threads_taking_turns();
        let (mut s, _) = analyze(&recs, Options::default());
        let quiet = render(&s);
        assert!(!quiet.contains("neither end") && !quiet.contains("wakeups of the threads"));
        s.unplaced_runs = 2;
        s.missing_wakeups_per_cpu = vec![1, 3];
        let text = render(&s);
        assert!(text.contains("note: 2 runs had neither end"), "{text}");
        assert!(
            text.contains("note: 4 wakeups of the threads were not in the kernel's event stream"),
            "{text}"
        );
        // Without wakeups traced, none is missing: none was looked for.
        s.wakeups = false;
        assert!(!render(&s).contains("wakeups of the threads"));
    }

    #[test]
    fn processes_the_kernel_could_not_trace_reach_the_summary_and_are_stated() {
        let mut recs = two_threads_taking_turns();
        let (quiet, _) = analyze(&recs, Options::default());
        assert_eq!(quiet.lost_processes, 0);
        assert!(!render(&quiet).contains("to be traced could not be"));
        if let Some(crate::trace::Record::End(e)) = recs.last_mut() {
            e.lost_processes = 3;
        }
        // Through both file formats, as `report` reads them back.
        for format in [crate::trace::Format::Jsonl, crate::trace::Format::Binary] {
            let bytes = write_all(format, &recs);
            let mut reader = crate::trace::TraceReader::with_format(format, &bytes[..]);
            let mut back = Vec::new();
            while let Some(r) = reader.next_record().unwrap() {
                back.push(r);
            }
            let (s, _) = analyze(&back, Options::default());
            assert_eq!(s.lost_processes, 3, "{format:?}");
            let text = render(&s);
            assert!(
                text.contains(
                    "note: 3 processes to be traced could not be: the kernel's map of traced \
                     processes was full (it holds 4096 besides the first"
                ),
                "{text}"
            );
            let json = crate::export::json::to_value(&s);
            assert_eq!(json["lost_processes"], 3);
        }
    }

    #[test]
    fn late_events_and_end_gaps_reach_the_summary_and_are_stated() {
        let mut recs = two_threads_taking_turns();
        let (quiet, _) = analyze(&recs, Options::default());
        let text = render(&quiet);
        assert!(!text.contains("arrived after") && !text.contains("could not be shown"));
        if let Some(crate::trace::Record::End(e)) = recs.last_mut() {
            e.ordering.late_per_cpu = vec![0, 3];
            e.ordering.gaps = vec![crate::trace::Gap {
                cpu: 1,
                from_ns: 6_000_000,
                to_ns: 8_000_000,
            }];
        }
        let (s, _) = analyze(&recs, Options::default());
        assert_eq!(s.late_per_cpu, [0, 3]);
        assert_eq!(s.late_events(), 3);
        assert_eq!(s.end_gaps.len(), 1);
        let text = render(&s);
        assert!(
            text.contains(
                "note: 3 events arrived after newer ones had been handed on (3 on CPU 1)"
            ),
            "{text}"
        );
        assert!(
            text.contains("note: CPU 1's events could not be shown complete for the last 2.0 ms"),
            "{text}"
        );
        let json = crate::export::json::to_value(&s);
        assert_eq!(json["late_per_cpu"], serde_json::json!([0, 3]));
        assert_eq!(
            json["end_gaps"],
            serde_json::json!([{"cpu": 1, "from_ns": 6_000_000, "to_ns": 8_000_000}])
        );
    }

    #[test]
    fn steal_inferred_runs_and_recursion_misses_are_stated() {
        let recs = two_threads_taking_turns();
        let (mut s, _) = analyze(&recs, Options::default());
        let quiet = render(&s);
        assert!(
            !quiet.contains("Steal") && !quiet.contains("switch-in"),
            "{quiet}"
        );
        s.threads[0].steal_ns = 1_200_000;
        s.threads[1].steal_ns = 300_000;
        s.threads[1].inferred_ns = 3_000_000;
        s.total.steal_ns = 1_500_000;
        s.inferred_per_cpu = vec![1, 2];
        s.recursion_misses = Some(4);
        let text = render(&s);
        let (a, b) = (&s.threads[0], &s.threads[1]);
        let steal = format!(
            "Steal: 1.5 ms on a CPU the kernel did not charge (hypervisor steal; interrupts \
             too where the kernel accounts IRQ time): {} {} 1.2 ms, {} {} 300.0 µs",
            a.comm, a.tid, b.comm, b.tid
        );
        assert!(text.contains(&steal), "{text}");
        assert!(
            text.contains("note: 3 runs (3.0 ms) had no switch-in"),
            "{text}"
        );
        assert!(text.contains("skipped 4 runs"), "{text}");
        // Unknown time in a trace that lost nothing and has no anomaly: the
        // runs whose switch-out the stream lacked.
        s.threads[1].states.unknown_ns = 2_000_000;
        s.anomalies = 0;
        let text = render(&s);
        assert!(
            text.contains(
                "note: 2.0 ms of the threads' time is unknown (after switches the kernel's \
                 stream lacked; none was lost)"
            ),
            "{text}"
        );
        // Anomalies in a trace with the kernel's counters and no losses:
        // damage, not a missing switch-in (those are inferred runs).
        s.kernel_counters = true;
        s.anomalies = 2;
        let text = render(&s);
        assert!(
            text.contains("note: 2 events did not fit the state machine (a damaged trace"),
            "{text}"
        );
        assert!(!text.contains("runnable time"), "{text}");
    }
}
