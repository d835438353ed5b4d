//! `schedtrace [--pid PID | -- CMD]`: trace a running process, a command
//! started for the trace, or (with neither) the built-in example workload;
//! then print the summary and write the outputs.

use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use schedtrace::analysis::Options;
use schedtrace::capture::launch::{self, LaunchSpec};
use std::io::Write as _;

use schedtrace::analysis::kernel_sums;
use schedtrace::capture::{CaptureOptions, Outcome, Target, TraceMeta};
use schedtrace::export::parquet::ParquetTables;
use schedtrace::export::{self, Report};
use schedtrace::trace::KernelSums;
use schedtrace::trace::files::TraceFiles;

use super::args::{SummaryFormat, TraceArgs};
use super::capture::{Captured, Ui, capture_live};
use super::output::{
    check_outputs, finish_parquet, parquet_tables, print_summary, trace_outputs, wants_timeline,
    warn_losses, write_exports,
};

/// Exit status after a second stop signal cut finishing short (128 + SIGINT,
/// as shells report an interrupted command).
const EXIT_INTERRUPTED: i32 = 130;

pub(super) fn trace(args: &TraceArgs) -> anyhow::Result<i32> {
    if args.live && !std::io::stdout().is_terminal() {
        bail!("--live needs a terminal on stdout; run it in a terminal or drop --live");
    }
    let running = by_process(args);
    let builtin = !running && args.command.is_empty();
    if running && (args.cpus.is_some() || args.as_root || args.allow_new_privs) {
        bail!(
            "--cpus, --as-root and --allow-new-privs apply to a command schedtrace starts \
             (after --), not to processes already running (--pid, --comm, --cgroup, --all)"
        );
    }
    let argv = command_line(args, builtin)?;
    // Files first: a bad path must fail before anything starts.
    let trace_paths = trace_outputs(args.json.as_deref(), args.record.as_deref());
    let also: Vec<&Path> = trace_paths.iter().map(|(p, _)| *p).collect();
    check_outputs(&args.out, &also)?;
    let mut files = TraceFiles::create(&trace_paths, args.out.common.force)?;
    let mut parquet = match parquet_tables(&args.out, schedtrace::procfs::boot_id()) {
        Ok(p) => p,
        Err(e) => {
            files.discard();
            return Err(e);
        }
    };
    let (target, meta) = target(args, builtin, argv);
    // The kernel sums keep wakers (the waking program counts them, no
    // record), wait reasons and preemptors, not who ran instead's
    // per-CPU queues.
    let sums = args.uses_kernel_sums();
    let opts = CaptureOptions {
        follow_children: args.follow_children,
        wakeups: !args.no_wakeups,
        duration: args.duration,
        ring_bytes: args.buffer_size,
        stacks: args.stacks,
        antagonists: !args.no_antagonists && !sums,
        wait_reasons: !args.no_wait_reasons,
        kernel_sums: sums,
        verbose: args.out.verbose,
        ..Default::default()
    };
    let ui = Ui {
        quiet: args.out.common.quiet || args.live,
        live: args.live,
    };
    let analysis = Options {
        keep_timeline: wants_timeline(&args.out),
        ..Default::default()
    };
    let captured = match capture_live(
        &target,
        &opts,
        &meta,
        ui,
        analysis,
        &mut files,
        parquet.as_mut(),
    ) {
        Ok(c) => c,
        Err(e) => {
            // Tracing never started: leave no file behind.
            files.discard();
            if let Some(p) = parquet {
                p.discard();
            }
            return Err(e);
        }
    };
    conclude(args, builtin, captured, files, parquet)
}

/// The command to launch: the one after `--`, or the built-in example
/// workload (this binary's hidden `__workload`).
fn command_line(args: &TraceArgs, builtin: bool) -> anyhow::Result<Vec<String>> {
    if !builtin {
        return Ok(args.command.clone());
    }
    let exe = std::env::current_exe().context("locating our own executable")?;
    Ok(vec![
        exe.to_string_lossy().into_owned(),
        "__workload".into(),
        "--seconds".into(),
        "3".into(),
    ])
}

/// Are running processes to be traced (`--pid`, `--comm`)?
fn by_process(args: &TraceArgs) -> bool {
    !args.pid.is_empty() || args.comm.is_some() || args.cgroup.is_some() || args.all
}

/// What to trace, and what the trace's header says about it.
fn target(args: &TraceArgs, builtin: bool, argv: Vec<String>) -> (Target, TraceMeta) {
    let target = match by_process(args) {
        true => Target::Running {
            pids: args.pid.clone(),
            comm: args.comm.clone(),
            cgroup: args.cgroup.clone(),
            all: args.all,
        },
        false => Target::Launch(LaunchSpec {
            argv: argv.clone(),
            cpus: args.cpus.as_ref().map(|c| c.0.clone()),
            run_as: if args.as_root {
                None
            } else {
                schedtrace::privs::acting_for().cloned()
            },
            allow_new_privs: args.allow_new_privs,
        }),
    };
    let meta = TraceMeta {
        command: if builtin {
            Some(vec!["(built-in example workload)".into()])
        } else if !by_process(args) {
            Some(argv)
        } else {
            None
        },
        pinned_cpus: args.cpus.as_ref().map(|c| c.0.clone()),
    };
    (target, meta)
}

/// Finish the trace files, print the summary, write the exports, warn about
/// losses and an interrupted finish; the exit code (a launched command's
/// own).
fn conclude(
    args: &TraceArgs,
    builtin: bool,
    captured: Captured,
    files: TraceFiles,
    parquet: Option<ParquetTables>,
) -> anyhow::Result<i32> {
    let Captured {
        summary,
        timeline,
        outcome,
    } = captured;
    if let Some(k) = &outcome.kernel_sums {
        files.finish()?;
        print_kernel_sums(args, k, &outcome, summary.ncpus)?;
        return Ok(exit_code(&outcome, builtin));
    }
    let write_result = files
        .finish()
        .and(finish_parquet(&args.out, parquet, &summary));
    let report = Report {
        summary: &summary,
        timeline: timeline.as_ref(),
    };
    print_summary(&args.out, &report)?;
    let export_result = write_exports(&args.out, &report);
    write_result?;
    export_result?;
    warn_losses(&summary, true);
    Ok(exit_code(&outcome, builtin))
}

/// Warn of an incomplete end; the exit code: 130 after a second signal,
/// else a launched command's own.
fn exit_code(outcome: &Outcome, builtin: bool) -> i32 {
    if let Some(warning) = incomplete_warning(outcome.interrupted, outcome.end.complete) {
        eprintln!("schedtrace: warning: {warning}");
    }
    if outcome.interrupted {
        return EXIT_INTERRUPTED;
    }
    match outcome.child_status {
        Some(s) if !builtin => launch::exit_code(s),
        _ => 0,
    }
}

/// `--kernel-sums`: the summary of the sums, and what was lost.
fn print_kernel_sums(
    args: &TraceArgs,
    k: &KernelSums,
    outcome: &Outcome,
    ncpus: u32,
) -> anyhow::Result<()> {
    let s = kernel_sums::summarize(k);
    let c = export::kernel_sums::Capture {
        events: outcome.end.events,
        lost_events: outcome.end.lost_events,
        ncpus,
        wakeups: !args.no_wakeups,
    };
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    match args.out.format {
        SummaryFormat::Text => export::kernel_sums::text(&s, &c, &mut lock)?,
        SummaryFormat::Json => export::kernel_sums::json(&s, &c, &mut lock)?,
    }
    lock.flush()?;
    if c.lost_events > 0 {
        eprintln!(
            "schedtrace: warning: {} records were lost (ring buffer full); raise --buffer-size",
            c.lost_events
        );
    }
    if s.lost_sums > 0 {
        eprintln!(
            "schedtrace: warning: the kernel's sums of {} threads were lost (too many threads \
             ended at once, or unreadable); their rows have none",
            s.lost_sums
        );
    }
    if s.missed_sums > 0 {
        eprintln!(
            "schedtrace: warning: the kernel could not reach a thread's sums at {} switches or \
             wakings (it makes a new thread's with an allocation that may not wait); the \
             totals are the kernel's counters and exact, the rest misses them",
            s.missed_sums
        );
    }
    Ok(())
}

/// What to say of an end that is not complete: cut short by a second stop
/// signal (exit status [`EXIT_INTERRUPTED`]), or with a CPU whose last
/// events could not be accounted for (each named in a warning before; what
/// was read is whole, and the exit status is the usual one).
fn incomplete_warning(interrupted: bool, complete: bool) -> Option<&'static str> {
    if interrupted {
        Some(
            "stopped while finishing (second signal): the outputs end early and say \
             \"complete\": false",
        )
    } else if !complete {
        Some(
            "the end of the trace is not known to be complete on every CPU: the outputs say \
             \"complete\": false",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::incomplete_warning;

    /// A gap at the end is not a second signal: a run of the loaded soak
    /// whose ring buffer overflowed lost a CPU's last progress mark, and
    /// schedtrace said "second signal" and exited 130 with no signal sent.
    #[test]
    fn an_incomplete_end_is_a_second_signal_only_if_there_was_one() {
        assert!(
            incomplete_warning(true, false)
                .unwrap()
                .contains("second signal")
        );
        let gap = incomplete_warning(false, false).unwrap();
        assert!(!gap.contains("signal") && gap.contains("not known to be complete"));
        assert_eq!(incomplete_warning(false, true), None);
    }
}
