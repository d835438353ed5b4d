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

/// Rows of the side-by-side table: a header, the process-wide figures, then
/// on-CPU and wait time of each thread (matched across runs by name).
pub fn comparison(runs: &[Analysed]) -> Vec<Vec<String>> {
    let mut rows = vec![
        std::iter::once(String::new())
            .chain(runs.iter().map(|r| r.label.clone()))
            .collect::<Vec<_>>(),
    ];
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
    let mut row = |name: &str, f: &dyn Fn(&Summary) -> String| {
        rows.push(
            std::iter::once(name.to_string())
                .chain(runs.iter().map(|r| f(&r.summary)))
                .collect(),
        );
    };
    row("Lost events", &|s| s.lost_events.to_string());

    // Per thread, by name (with #2, #3... for repeated names).
    let keyed = |s: &Summary| -> Vec<(String, u64, u64)> {
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
    };
    let per_run: Vec<Vec<(String, u64, u64)>> = runs.iter().map(|r| keyed(&r.summary)).collect();
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
    rows
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
    fn labels_say_how_a_trace_was_pinned() {
        let r = run("x", Some(vec![0, 1]));
        assert_eq!(
            label_for(Path::new("/tmp/a.jsonl"), &r.summary),
            "a.jsonl (pinned to CPUs 0,1)"
        );
    }
}
