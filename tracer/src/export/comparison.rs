//! Runs side by side (`schedtrace demo`, `schedtrace compare`): each run's
//! terminal timeline, then a table of the process-wide figures and each
//! thread's on-CPU and wait time, matched across runs by name. The HTML
//! page shows the same table.

use std::collections::HashMap;
use std::path::Path;

use super::terminal;
use crate::analysis::concurrency::elsewhere_ns;
use crate::analysis::summary::Summary;
use crate::analysis::timeline::Timeline;
use crate::units::{cpus, duration, percent};

/// One analysed run.
pub struct Analysed {
    pub label: String,
    pub summary: Summary,
    pub timeline: Timeline,
}

/// A label for a saved trace: its file name, and the CPUs it was pinned to.
pub fn label_for(path: &Path, s: &Summary) -> String {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    match &s.pinned_cpus {
        Some(c) => format!("{name} (pinned to {})", cpus(c)),
        None => format!("{name} ({} CPUs)", s.ncpus),
    }
}

/// The terminal text: each run's timeline, then the table and notes.
pub fn render_text(runs: &[Analysed], rows: &[Vec<String>], width: usize, colored: bool) -> String {
    let mut text = String::new();
    for r in runs {
        text.push_str(&format!("== {} ==\n", r.label));
        text.push_str(&terminal::render(&r.timeline, width, colored));
        text.push('\n');
    }
    text.push_str("== Concurrency versus parallelism ==\n");
    text.push_str(&table(rows));
    text.push_str(
        "\nParallel: 2+ threads on CPUs at the same instant. Time-sliced: 2+ threads wanted a CPU \
         and some had to wait.\nOn-CPU / wait: time each thread ran, and waited runnable for a CPU.\n",
    );
    if let Some(f) = findings(runs) {
        text.push_str(&format!("\nWhat these runs show: {f}\n"));
    }
    for r in runs {
        let ns = elsewhere_ns(&r.summary, &r.timeline);
        if ns * 10 > r.summary.window_ns {
            text.push_str(&format!(
                "note: in \"{}\", threads waited for a CPU {} of the time while a CPU they \
                 could use ran something else: the machine was busy, so they got less CPU than \
                 they would on an idle one.\n",
                r.label,
                percent(ns, r.summary.window_ns)
            ));
        }
    }
    text
}

/// What the runs' own figures show, in sentences: the first run against
/// the last (for `demo`, one core against all cores). Every claim is
/// checked against the numbers, and a run that competed with other
/// processes for its CPUs is said to have been too busy to show the
/// difference. `None` with fewer than two runs.
pub fn findings(runs: &[Analysed]) -> Option<String> {
    let [a, .., b] = runs else {
        return None;
    };
    let (sa, sb) = (&a.summary, &b.summary);
    let waited = |s: &Summary| -> u64 {
        s.threads
            .iter()
            .fold(0u64, |n, t| n.saturating_add(t.states.runnable_ns))
    };
    let mut out: Vec<String> = Vec::new();
    let (pa, pb) = (
        sa.total.parallelism.parallel_ns,
        sb.total.parallelism.parallel_ns,
    );
    out.push(if pb == 0 {
        format!(
            "In \"{}\" the threads never ran at once (0 ns parallel).",
            b.label
        )
    } else {
        format!(
            "In \"{}\" two or more threads ran at once for {} ({} of the window), \
             against {} in \"{}\".",
            b.label,
            duration(pb),
            percent(pb, sb.window_ns),
            duration(pa),
            a.label
        )
    });
    let (wa, wb) = (waited(sa), waited(sb));
    let compared = match wb.cmp(&wa) {
        std::cmp::Ordering::Less => "less than",
        std::cmp::Ordering::Equal => "as long as",
        std::cmp::Ordering::Greater => "more than",
    };
    out.push(format!(
        "Its threads waited for a CPU {} in all, {compared} the {} of \"{}\"; they ran \
         {} in all, against {}.",
        duration(wb),
        duration(wa),
        a.label,
        duration(sb.total.on_cpu_ns),
        duration(sa.total.on_cpu_ns)
    ));
    let busy: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            let ns = elsewhere_ns(&r.summary, &r.timeline);
            (ns * 10 > r.summary.window_ns).then(|| {
                format!(
                    "\"{}\" (threads waited {} while a CPU they could use ran something else)",
                    r.label,
                    percent(ns, r.summary.window_ns)
                )
            })
        })
        .collect();
    if !busy.is_empty() {
        out.push(format!(
            "The machine was too busy for the difference to show fully in {}: other \
             processes took CPU time these threads could have used.",
            busy.join(" and ")
        ));
    }
    Some(out.join(" "))
}

/// Rows of the side-by-side table: a header, the process-wide figures, then
/// on-CPU and wait time of each thread (matched across runs by name).
pub fn comparison(runs: &[Analysed]) -> Vec<Vec<String>> {
    let mut rows = vec![
        std::iter::once(String::new())
            .chain(runs.iter().map(|r| r.label.clone()))
            .collect::<Vec<_>>(),
    ];
    figure_rows(runs, &mut rows);
    shortfall_rows(runs, &mut rows);
    thread_rows(runs, &mut rows);
    rows
}

/// The process-wide figures' rows: time, CPUs, threads, parallelism and
/// waits.
fn figure_rows(runs: &[Analysed], rows: &mut Vec<Vec<String>>) {
    let mut row = |name: &str, f: &dyn Fn(&Summary) -> String| {
        rows.push(
            std::iter::once(name.to_string())
                .chain(runs.iter().map(|r| f(&r.summary)))
                .collect(),
        );
    };
    let share = |ns: u64, s: &Summary| format!("{} ({})", duration(ns), percent(ns, s.window_ns));
    row("Wall time traced", &|s| duration(s.window_ns));
    row("CPUs it could use", &|s| match &s.pinned_cpus {
        Some(c) => c.len().to_string(),
        None => s.ncpus.to_string(),
    });
    row("Threads", &|s| s.total.threads_seen.to_string());
    row("On-CPU, all threads", &|s| duration(s.total.on_cpu_ns));
    if runs.iter().any(|r| r.summary.total.steal_ns > 0) {
        // Time the threads held a CPU that the kernel did not charge them
        // (hypervisor steal), beside the on-CPU time it did.
        row("Steal (on a CPU, not charged)", &|s| {
            duration(s.total.steal_ns)
        });
    }
    row("Parallel (2+ running at once)", &|s| {
        share(s.total.parallelism.parallel_ns, s)
    });
    row("Time-sliced (2+ wanted a CPU)", &|s| {
        share(s.total.parallelism.time_sliced_ns, s)
    });
    row("Mean threads running", &|s| {
        format!("{:.2}", s.total.parallelism.mean_running)
    });
    row("Mean threads waiting for a CPU", &|s| {
        format!("{:.2}", s.total.parallelism.mean_runnable)
    });
    row("Waiting for a CPU, all threads", &|s| {
        duration(s.threads.iter().map(|t| t.states.runnable_ns).sum())
    });
    rows.push(
        std::iter::once("Runnable while a usable CPU did other work".to_string())
            .chain(runs.iter().map(|r| {
                let ns = elsewhere_ns(&r.summary, &r.timeline);
                format!("{} ({})", duration(ns), percent(ns, r.summary.window_ns))
            }))
            .collect(),
    );
}

/// The rows of what can make a figure short: an incomplete trace, lost
/// events, and the rest when any run has them.
fn shortfall_rows(runs: &[Analysed], rows: &mut Vec<Vec<String>>) {
    let mut row = |name: &str, f: &dyn Fn(&Summary) -> String| {
        rows.push(
            std::iter::once(name.to_string())
                .chain(runs.iter().map(|r| f(&r.summary)))
                .collect(),
        );
    };
    if runs.iter().any(|r| !r.summary.complete) {
        row("Trace complete", &|s| {
            if s.complete {
                "yes".to_string()
            } else {
                format!("no ({})", s.stop_reason)
            }
        });
    }
    row("Lost events", &|s| s.lost_events.to_string());
    // The other ways a figure can be short, when any run has them (as the
    // text summary notes them).
    let any = |f: &dyn Fn(&Summary) -> u64| runs.iter().any(|r| f(&r.summary) > 0);
    if any(&|s| s.lost_processes) {
        row("Processes not traced (map full)", &|s| {
            s.lost_processes.to_string()
        });
    }
    if any(&|s| s.anomalies) {
        row("Anomalies (events that did not fit)", &|s| {
            s.anomalies.to_string()
        });
    }
    if any(&|s| s.recursion_misses.unwrap_or(0)) {
        row("Program runs the kernel skipped", &|s| {
            s.recursion_misses
                .map_or_else(|| "?".to_string(), |n| n.to_string())
        });
    }
    if any(&|s| s.inferred_per_cpu.iter().sum()) {
        row("Runs without a switch-in (inferred)", &|s| {
            s.inferred_per_cpu.iter().sum::<u64>().to_string()
        });
    }
    if any(&|s| s.late_events()) {
        row("Events that arrived late", &|s| s.late_events().to_string());
    }
    if any(&|s| s.lost_stacks) {
        row("Sleeps that lost their stack", &|s| {
            s.lost_stacks.to_string()
        });
    }
}

/// A run's threads by name (with #2, #3... for repeated names), in TID
/// order, with their on-CPU and wait time.
fn keyed_threads(s: &Summary) -> Vec<(String, u64, u64)> {
    let mut seen: HashMap<&str, u32> = HashMap::new();
    let mut v: Vec<_> = s.threads.iter().collect();
    v.sort_by_key(|t| t.tid);
    v.into_iter()
        .map(|t| {
            let n = seen.entry(t.comm.as_str()).or_default();
            *n += 1;
            let key = if *n == 1 {
                t.comm.clone()
            } else {
                format!("{} #{}", t.comm, n)
            };
            (key, t.on_cpu_ns, t.states.runnable_ns)
        })
        .collect()
}

/// One row per thread name, in the order the runs first have it: its
/// on-CPU and wait time in each run.
fn thread_rows(runs: &[Analysed], rows: &mut Vec<Vec<String>>) {
    // Per thread, by name (with #2, #3... for repeated names).
    let per_run: Vec<Vec<(String, u64, u64)>> =
        runs.iter().map(|r| keyed_threads(&r.summary)).collect();
    let mut names: Vec<String> = Vec::new();
    for run in &per_run {
        for (k, _, _) in run {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    for name in names {
        rows.push(
            std::iter::once(format!("{name}: on-CPU / wait"))
                .chain(per_run.iter().map(|run| {
                    run.iter().find(|(k, _, _)| *k == name).map_or_else(
                        || "-".to_string(),
                        |(_, on, wait)| format!("{} / {}", duration(*on), duration(*wait)),
                    )
                }))
                .collect(),
        );
    }
}

/// The comparison's columns: names left, figures right.
fn table(rows: &[Vec<String>]) -> String {
    crate::export::text::table(rows, 1, 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Options, analyze};
    use crate::testutil::*;

    fn run(label: &str, pinned: Option<Vec<u32>>) -> Analysed {
        let opts = Options {
            keep_timeline: true,
            ..Default::default()
        };
        let (mut s, tl) = analyze(&interleaved_trace(), opts);
        s.pinned_cpus = pinned;
        Analysed {
            label: label.into(),
            summary: s,
            timeline: tl.unwrap(),
        }
    }

    #[test]
    fn comparison_table_snapshot() {
        let runs = [run("One core", Some(vec![0])), run("All cores", None)];
        insta::assert_snapshot!(table(&comparison(&runs)));
    }

    #[test]
    fn findings_follow_the_figures() {
        let one = run("One core", Some(vec![0]));
        let mut all = run("All cores", None);
        // The same figures: nothing ran at once more, nobody waited less.
        let same = findings(&[run("One core", Some(vec![0])), run("All cores", None)]).unwrap();
        let p = duration(one.summary.total.parallelism.parallel_ns);
        assert!(
            same.contains(&format!("against {p} in \"One core\"")),
            "{same}"
        );
        assert!(same.contains("as long as"), "{same}");
        // No parallel time on all cores, and more waiting: said as such.
        all.summary.total.parallelism.parallel_ns = 0;
        for t in &mut all.summary.threads {
            t.states.runnable_ns += 1_000;
        }
        let f = findings(&[one, all]).unwrap();
        assert!(
            f.starts_with("In \"All cores\" the threads never ran at once (0 ns parallel)."),
            "{f}"
        );
        assert!(f.contains("more than"), "{f}");
        assert!(!f.contains("less than"), "{f}");
        assert_eq!(findings(&[run("x", None)]), None);
    }

    #[test]
    fn every_kind_of_loss_any_run_has_gets_a_row() {
        let rows_named = |runs: &[Analysed], name: &str| -> Vec<Vec<String>> {
            comparison(runs)
                .into_iter()
                .filter(|r| r[0] == name)
                .collect()
        };
        let clean = [run("a", None), run("b", None)];
        assert_eq!(rows_named(&clean, "Lost events").len(), 1);
        for name in [
            "Anomalies (events that did not fit)",
            "Program runs the kernel skipped",
            "Sleeps that lost their stack",
            "Events that arrived late",
            "Runs without a switch-in (inferred)",
            "Trace complete",
        ] {
            assert!(rows_named(&clean, name).is_empty(), "{name}");
        }
        let mut b = run("b", None);
        b.summary.lost_stacks = 7;
        b.summary.anomalies = 2;
        b.summary.recursion_misses = Some(3);
        b.summary.late_per_cpu = vec![0, 5];
        b.summary.inferred_per_cpu = vec![1, 1];
        b.summary.complete = false;
        b.summary.stop_reason = "ended without an end record".into();
        let mut a = run("a", None);
        a.summary.recursion_misses = None;
        let runs = [a, b];
        let row = |name: &str| rows_named(&runs, name).remove(0)[1..].to_vec();
        assert_eq!(row("Sleeps that lost their stack"), ["0", "7"]);
        assert_eq!(row("Anomalies (events that did not fit)"), ["0", "2"]);
        assert_eq!(row("Program runs the kernel skipped"), ["?", "3"]);
        assert_eq!(row("Events that arrived late"), ["0", "5"]);
        assert_eq!(row("Runs without a switch-in (inferred)"), ["0", "2"]);
        assert_eq!(
            row("Trace complete"),
            ["yes", "no (ended without an end record)"]
        );
    }

    #[test]
    fn steal_gets_a_row_beside_on_cpu_when_any_run_has_it() {
        let names = |runs: &[Analysed]| -> Vec<String> {
            comparison(runs).into_iter().map(|r| r[0].clone()).collect()
        };
        let clean = [run("a", None), run("b", None)];
        assert!(!names(&clean).iter().any(|n| n.starts_with("Steal")));
        let mut b = run("b", None);
        b.summary.total.steal_ns = 72_000_000;
        let runs = [run("a", None), b];
        let rows = comparison(&runs);
        let at = rows
            .iter()
            .position(|r| r[0] == "Steal (on a CPU, not charged)")
            .expect("a steal row");
        assert_eq!(rows[at - 1][0], "On-CPU, all threads");
        assert_eq!(rows[at][1..], [duration(0), duration(72_000_000)]);
    }

    #[test]
    fn labels_say_how_a_trace_was_pinned() {
        let r = run("x", Some(vec![0, 1]));
        assert_eq!(
            label_for(Path::new("/tmp/a.jsonl"), &r.summary),
            "a.jsonl (pinned to CPUs 0,1)"
        );
    }
}
