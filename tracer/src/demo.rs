//! `schedtrace demo`: concurrency versus parallelism, shown. The built-in
//! Node.js-like workload runs twice under the tracer, first pinned to one
//! core (its threads can only take turns) and then on all cores (they can
//! run at once); both timelines are drawn in the terminal, a side-by-side
//! table compares them, and an HTML report holds both.
//!
//! `schedtrace compare A.jsonl B.jsonl` does the same for two saved traces
//! (no root needed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::analysis::{Analyzer, Options};
use crate::app::{self, Ui};
use crate::capture::launch::LaunchSpec;
use crate::capture::{CaptureOptions, Target, TraceMeta};
use crate::export::comparison::{Analysed, comparison, label_for, render_text};
use crate::export::html::{self, Page, Run};
use crate::export::terminal::{ColorChoice, terminal_width};
use crate::trace::files::{self, TraceFiles};
use crate::trace::{Format, read_file};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How long the workload runs each time (seconds).
    #[arg(long, default_value_t = 2.0, value_parser = parse_demo_seconds)]
    pub seconds: f64,
    /// Write the HTML comparison report to FILE.
    #[arg(long, value_name = "FILE", default_value = "schedtrace-demo.html")]
    pub html: PathBuf,
    /// Also keep both traces (JSON Lines) in DIR: one-core.jsonl and all-cores.jsonl.
    #[arg(long, value_name = "DIR")]
    pub save_traces: Option<PathBuf>,
    /// Overwrite output files that already exist.
    #[arg(long)]
    pub force: bool,
    /// Colours in the terminal timelines: auto, always, never.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Only messages about errors on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The first trace (written by `schedtrace --json FILE` or `--record FILE`).
    pub a: PathBuf,
    /// The second trace (either format).
    pub b: PathBuf,
    /// Also write an HTML report of both to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Overwrite output files that already exist.
    #[arg(long)]
    pub force: bool,
    /// Colours in the terminal timelines: auto, always, never.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Only messages about errors on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_demo_seconds(s: &str) -> Result<f64, String> {
    let d = crate::units::parse_seconds(s)?;
    if d > Duration::from_secs(600) {
        return Err(format!(
            "{s:?}: the demo runs at most 600 seconds each time"
        ));
    }
    Ok(d.as_secs_f64())
}

const INTRO: &str = "The same Node.js-like workload (a main thread running an event loop, four \
libuv pool threads doing blocking work, two V8 helper threads) ran twice under schedtrace. \
Pinned to one core, its threads are concurrent but never parallel: they take turns, and \
whoever is not on the core waits in the run queue (orange). On all cores they can run at \
once: the CPU lanes overlap, more work gets done in the same time, and they wait less.";

/// `schedtrace demo`.
pub fn demo(args: &DemoArgs) -> anyhow::Result<i32> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "`schedtrace demo` loads eBPF programs and must run as root: \
             sudo schedtrace demo (or `schedtrace compare A.jsonl B.jsonl` for saved traces)"
        );
    }
    // Outputs first: nothing runs if they cannot be written.
    files::check_writable(&args.html, args.force)?;
    let mut traces: Vec<TraceFiles> = vec![TraceFiles::default(), TraceFiles::default()];
    if let Some(dir) = &args.save_traces {
        if !dir.exists() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            crate::privs::chown_to_invoker(dir);
        }
        for (slot, name) in traces.iter_mut().zip(["one-core.jsonl", "all-cores.jsonl"]) {
            *slot = TraceFiles::create(&[(&dir.join(name), Format::Jsonl)], args.force)?;
        }
    }
    let ncpus = crate::procfs::possible_cpus();
    let online = online_cpus().unwrap_or_else(|| (0..ncpus).collect());
    if online.len() < 2 && !args.quiet {
        eprintln!(
            "schedtrace: warning: only one CPU is online, so both runs are on one core; \
             the comparison needs a machine with two or more"
        );
    }
    let exe = std::env::current_exe().context("locating our own executable")?;
    let runs = [
        ("One core (pinned to CPU 0)", Some(vec![0u32])),
        ("All cores", None),
    ];
    let mut done: Vec<Analysed> = Vec::new();
    for (i, (label, cpus)) in runs.into_iter().enumerate() {
        if !args.quiet {
            eprintln!(
                "schedtrace: run {} of 2: {}, {} s",
                i + 1,
                label.to_lowercase(),
                args.seconds
            );
        }
        let argv = vec![
            exe.to_string_lossy().into_owned(),
            "__workload".into(),
            "--seconds".into(),
            args.seconds.to_string(),
        ];
        let opts = CaptureOptions {
            // The workload stops by itself; this only bounds a hang.
            duration: Some(Duration::from_secs_f64(args.seconds + 10.0)),
            ..Default::default()
        };
        let meta = TraceMeta {
            command: Some(vec![format!(
                "(built-in example workload, {} s)",
                args.seconds
            )]),
            pinned_cpus: cpus.clone(),
        };
        let target = Target::Launch(LaunchSpec {
            argv,
            cpus,
            run_as: crate::privs::sudo_user(),
        });
        let analysis = Options {
            keep_timeline: true,
            ..Default::default()
        };
        let ui = Ui {
            quiet: args.quiet,
            live: false,
        };
        let captured = match app::capture_live(&target, &opts, &meta, ui, analysis, &mut traces[i])
        {
            Ok(c) => c,
            Err(e) => {
                for f in traces.drain(..) {
                    f.discard();
                }
                return Err(e);
            }
        };
        if let crate::capture::StopReason::Signal(sig) = captured.outcome.reason {
            for f in traces.drain(..) {
                f.discard();
            }
            bail!("interrupted ({sig}); no report written");
        }
        std::mem::take(&mut traces[i]).finish()?;
        done.push(Analysed {
            label: label.to_string(),
            summary: captured.summary,
            timeline: captured.timeline.context("the analysis kept no timeline")?,
        });
    }
    show(
        &done,
        args.color,
        "schedtrace demo: one core versus all cores",
        Some(INTRO),
        Some(&args.html),
        args.force,
        args.quiet,
    )?;
    if let Some(dir) = &args.save_traces
        && !args.quiet
    {
        eprintln!(
            "schedtrace: saved both traces in {} (one-core.jsonl, all-cores.jsonl); \
             `schedtrace compare` redraws them",
            dir.display()
        );
    }
    Ok(0)
}

/// The CPUs online now (`/sys/devices/system/cpu/online`).
fn online_cpus() -> Option<Vec<u32>> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    crate::procfs::parse_cpu_list(s.trim()).ok()
}

/// Analyse a saved trace with its timeline.
pub fn load(path: &Path) -> anyhow::Result<Analysed> {
    let mut a = Analyzer::new(Options {
        keep_timeline: true,
        ..Default::default()
    });
    read_file(path, &mut a)?;
    let (summary, timeline) = a.finish();
    Ok(Analysed {
        label: label_for(path, &summary),
        summary,
        timeline: timeline.context("the analysis kept no timeline")?,
    })
}

/// `schedtrace compare A B`.
pub fn compare(args: &CompareArgs) -> anyhow::Result<i32> {
    if let Some(p) = &args.html {
        if p == &args.a || p == &args.b {
            bail!(
                "--html {} would overwrite a trace being compared",
                p.display()
            );
        }
        files::check_writable(p, args.force)?;
    }
    let runs = vec![load(&args.a)?, load(&args.b)?];
    show(
        &runs,
        args.color,
        "schedtrace: comparing two traces",
        None,
        args.html.as_deref(),
        args.force,
        args.quiet,
    )?;
    Ok(0)
}

/// Print both timelines and the table; write the HTML report if asked.
fn show(
    runs: &[Analysed],
    color: ColorChoice,
    title: &str,
    intro: Option<&str>,
    html_path: Option<&Path>,
    force: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    use std::io::Write;
    let rows = comparison(runs);
    let text = render_text(runs, &rows, terminal_width(), color.for_stdout());
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    lock.write_all(text.as_bytes())?;
    lock.flush()?;
    drop(lock);
    if let Some(path) = html_path {
        let page = Page {
            title: title.to_string(),
            intro: intro.map(str::to_string),
            comparison: Some(rows),
            runs: runs
                .iter()
                .map(|r| Run {
                    label: r.label.clone(),
                    summary: &r.summary,
                    timeline: &r.timeline,
                })
                .collect(),
        };
        files::write_file(path, force, |w| html::write_page(&page, w))?;
        if !quiet {
            eprintln!(
                "schedtrace: wrote the HTML report to {}; open it in a browser",
                path.display()
            );
        }
    }
    Ok(())
}
