//! What each command does, end to end: `schedtrace [--pid|-- CMD]` traces
//! live, `schedtrace report` re-reads a saved trace; both feed the same
//! analysis and the same exporters.

use std::io::{BufReader, Write};
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::analysis::{Analyzer, Options};
use crate::capture::{self, CaptureOptions};
use crate::cli::{Cli, Command, OutputArgs, ReportArgs, TraceArgs};
use crate::export::{Report, summary_exporter};
use crate::filter::ThreadFilter;
use crate::launch::{self, LaunchSpec};
use crate::output::OutFile;
use crate::trace::Record;
use crate::trace::jsonl::{JsonlReader, write_record};

/// Run the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.cmd {
        Some(Command::Report(r)) => report(&r),
        Some(Command::Workload(w)) => {
            crate::workload::run(&w)?;
            Ok(0)
        }
        None => trace(&cli.trace),
    }
}

/// A one-line progress report on stderr, only when stderr is a terminal and
/// not `--quiet`.
struct StatusLine {
    enabled: bool,
    shown: bool,
}

impl StatusLine {
    fn new(quiet: bool) -> Self {
        use std::io::IsTerminal;
        StatusLine {
            enabled: !quiet && std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn show(&mut self, p: &capture::Progress) {
        if !self.enabled {
            return;
        }
        eprint!(
            "\r\x1b[Kschedtrace: {:.1} s, {} events ({:.0}/s), {} lost",
            p.elapsed.as_secs_f64(),
            p.events,
            p.rate,
            p.lost
        );
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}

/// Print the summary in the chosen format on stdout.
fn print_summary(out: &OutputArgs, report: &Report<'_>) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    summary_exporter(out.format).write(report, &mut lock)?;
    lock.flush()?;
    Ok(())
}

fn trace(args: &TraceArgs) -> anyhow::Result<i32> {
    let builtin = args.pid.is_none() && args.command.is_empty();
    if args.pid.is_some() && (args.cpus.is_some() || args.as_root) {
        bail!("--cpus and --as-root apply to a command schedtrace starts (after --), not to --pid");
    }
    let argv: Vec<String> = if builtin {
        let exe = std::env::current_exe().context("locating our own executable")?;
        vec![
            exe.to_string_lossy().into_owned(),
            "__workload".into(),
            "--seconds".into(),
            "3".into(),
        ]
    } else {
        args.command.clone()
    };
    // Files first: a bad path must fail before anything starts.
    let mut jsonl = match &args.json {
        Some(p) => Some(OutFile::create(p, args.out.force)?),
        None => None,
    };
    // Fork before any thread exists (the async runtime starts below).
    let mut launched = if args.pid.is_none() {
        let run_as = if args.as_root {
            None
        } else {
            crate::privs::sudo_user()
        };
        Some(launch::spawn(&LaunchSpec {
            argv: argv.clone(),
            cpus: args.cpus.as_ref().map(|c| c.0.clone()),
            run_as,
        })?)
    } else {
        None
    };
    let pid = match (&launched, args.pid) {
        (Some(l), _) => l.pid,
        (None, Some(p)) => p,
        (None, None) => unreachable!("a PID or a command"),
    };
    let opts = CaptureOptions {
        follow_children: args.follow_children,
        duration: args.duration,
        ring_bytes: args.buffer_size,
        verbose: args.out.verbose,
        quiet: args.out.quiet,
        command: if builtin {
            Some(vec!["(built-in example workload)".into()])
        } else if args.pid.is_none() {
            Some(argv.clone())
        } else {
            None
        },
        pinned_cpus: args.cpus.as_ref().map(|c| c.0.clone()),
        ..Default::default()
    };
    let mut analyzer = Analyzer::new(Options::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = {
        let mut sink = |r: &Record| {
            analyzer.feed(r);
            if let Some(f) = &mut jsonl {
                f.write_with(|w| write_record(w, r));
            }
        };
        let mut status = StatusLine::new(args.out.quiet);
        let r = rt.block_on(capture::capture(
            pid,
            launched.as_mut(),
            &opts,
            &mut sink,
            &mut |p| status.show(p),
        ));
        status.clear();
        r
    };
    drop(rt);
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            // Tracing never started: leave no file behind.
            if let Some(f) = jsonl {
                f.discard();
            }
            return Err(e);
        }
    };
    let (summary, _timeline) = analyzer.finish();
    let write_result = jsonl.map(OutFile::finish);
    print_summary(
        &args.out,
        &Report {
            summary: &summary,
            timeline: None,
        },
    )?;
    if let Some(Err(e)) = write_result {
        return Err(e);
    }
    if summary.lost_events > 0 {
        eprintln!(
            "schedtrace: warning: {} events were lost (ring buffer full); raise --buffer-size",
            summary.lost_events
        );
    }
    Ok(match outcome.child_status {
        Some(s) if !builtin => launch::exit_code(s),
        _ => 0,
    })
}

fn report(args: &ReportArgs) -> anyhow::Result<i32> {
    let opts = Options {
        since_ns: args.since.map(|d| d.as_nanos() as u64),
        until_ns: args.until.map(|d| d.as_nanos() as u64),
        keep_timeline: false,
    };
    if let (Some(s), Some(u)) = (opts.since_ns, opts.until_ns)
        && s >= u
    {
        bail!("--since must be before --until");
    }
    let mut a = Analyzer::new(opts);
    for_each_record(&args.file, |r| a.feed(&r))?;
    let (mut summary, _) = a.finish();
    let filter = ThreadFilter {
        tids: args.tid.clone(),
        comm: args.comm.clone(),
        cpu: args.cpu,
    };
    filter.apply_summary(&mut summary);
    print_summary(
        &args.out,
        &Report {
            summary: &summary,
            timeline: None,
        },
    )?;
    Ok(0)
}

/// Stream a JSON Lines trace through `f`, with the file name in errors.
pub fn for_each_record(path: &Path, mut f: impl FnMut(Record)) -> anyhow::Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = JsonlReader::new(BufReader::with_capacity(1 << 20, file));
    while let Some(r) = reader
        .next_record()
        .with_context(|| format!("{}", path.display()))?
    {
        f(r);
    }
    Ok(())
}
