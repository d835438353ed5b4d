//! `schedtrace demo`: concurrency versus parallelism, shown. The built-in
//! Node.js-like workload runs twice under the tracer, first pinned to one
//! core (its threads can only take turns) and then on all cores (they can
//! run at once); both timelines are drawn in the terminal, a side-by-side
//! table compares them, and an HTML report holds both.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use schedtrace::analysis::Options;
use schedtrace::capture::launch::LaunchSpec;
use schedtrace::capture::{CaptureOptions, StopReason, Target, TraceMeta};
use schedtrace::export::comparison::Analysed;
use schedtrace::trace::Format;
use schedtrace::trace::files::{self, TraceFiles};

use super::args::DemoArgs;
use super::capture::{Ui, capture_live};
use super::output::{Heading, show_comparison};

const INTRO: &str = "The same Node.js-like workload (a main thread running an event loop, four \
libuv pool threads doing blocking work, two V8 helper threads) ran twice under schedtrace. \
Pinned to one core, its threads are concurrent but never parallel: they take turns, and \
whoever is not on the core waits in the run queue (orange). On all cores they can run at \
once, when the machine has cores to spare. What these two runs show:";

/// The two runs: a label, and the CPUs the workload is pinned to.
const RUNS: [(&str, Option<&[u32]>); 2] = [
    ("One core (pinned to CPU 0)", Some(&[0])),
    ("All cores", None),
];

/// Where `--save-traces` keeps each run's trace.
const TRACE_NAMES: [&str; 2] = ["one-core.jsonl", "all-cores.jsonl"];

pub(super) fn demo(args: &DemoArgs) -> anyhow::Result<i32> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "`schedtrace demo` loads eBPF programs and must run as root: \
             sudo schedtrace demo (or `schedtrace compare A.jsonl B.jsonl` for saved traces)"
        );
    }
    // Outputs first: nothing runs if they cannot be written.
    files::check_writable(&args.html, args.common.force)?;
    let mut traces = open_traces(args)?;
    let ncpus = schedtrace::procfs::possible_cpus();
    let online = online_cpus().unwrap_or_else(|| (0..ncpus).collect());
    if online.len() < 2 && !args.common.quiet {
        eprintln!(
            "schedtrace: warning: only one CPU is online, so both runs are on one core; \
             the comparison needs a machine with two or more"
        );
    }
    let exe = std::env::current_exe().context("locating our own executable")?;
    let mut done: Vec<Analysed> = Vec::new();
    for (i, (label, cpus)) in RUNS.into_iter().enumerate() {
        if !args.common.quiet {
            eprintln!(
                "schedtrace: run {} of 2: {}, {} s",
                i + 1,
                label.to_lowercase(),
                args.seconds
            );
        }
        done.push(run(
            args,
            &exe,
            label,
            cpus.map(<[u32]>::to_vec),
            i,
            &mut traces,
        )?);
    }
    let heading = Heading {
        title: "schedtrace demo: one core versus all cores",
        intro: Some(INTRO),
    };
    show_comparison(&done, &heading, Some(&args.html), &args.common)?;
    if let Some(dir) = &args.save_traces
        && !args.common.quiet
    {
        eprintln!(
            "schedtrace: saved both traces in {} (one-core.jsonl, all-cores.jsonl); \
             `schedtrace compare` redraws them",
            dir.display()
        );
    }
    Ok(0)
}

/// The trace file of each run: none without `--save-traces`.
fn open_traces(args: &DemoArgs) -> anyhow::Result<Vec<TraceFiles>> {
    let mut traces: Vec<TraceFiles> = vec![TraceFiles::default(), TraceFiles::default()];
    if let Some(dir) = &args.save_traces {
        files::create_dir_all(dir)?;
        for (i, name) in TRACE_NAMES.iter().enumerate() {
            let path = dir.join(name);
            match TraceFiles::create(&[(&path, Format::Jsonl)], args.common.force) {
                Ok(t) => traces[i] = t,
                Err(e) => {
                    // The files already created are not left behind empty.
                    for f in traces.drain(..) {
                        f.discard();
                    }
                    return Err(e);
                }
            }
        }
    }
    Ok(traces)
}

/// Run `i` of the demo: the workload (this binary's `__workload`) traced
/// into `traces[i]`. On failure or a stop signal every trace file not yet
/// finished is removed.
fn run(
    args: &DemoArgs,
    exe: &Path,
    label: &str,
    cpus: Option<Vec<u32>>,
    i: usize,
    traces: &mut Vec<TraceFiles>,
) -> anyhow::Result<Analysed> {
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
        run_as: schedtrace::privs::acting_for().cloned(),
        allow_new_privs: false,
    });
    let analysis = Options {
        keep_timeline: true,
        ..Default::default()
    };
    let ui = Ui {
        quiet: args.common.quiet,
        live: false,
    };
    let captured = match capture_live(&target, &opts, &meta, ui, analysis, &mut traces[i], None) {
        Ok(c) => c,
        Err(e) => {
            for f in traces.drain(..) {
                f.discard();
            }
            return Err(e);
        }
    };
    if let StopReason::Signal(sig) = captured.outcome.reason {
        for f in traces.drain(..) {
            f.discard();
        }
        bail!("interrupted ({sig}); no report written");
    }
    std::mem::take(&mut traces[i]).finish()?;
    Ok(Analysed {
        label: label.to_string(),
        summary: captured.summary,
        timeline: captured.timeline.context("the analysis kept no timeline")?,
    })
}

/// The CPUs online now (`/sys/devices/system/cpu/online`).
fn online_cpus() -> Option<Vec<u32>> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    schedtrace::procfs::parse_cpu_list(s.trim()).ok()
}
