//! What each command does, end to end: `schedtrace [--pid|-- CMD]` traces
//! live, `schedtrace report` re-reads a saved trace; both feed the same
//! analysis and the same exporters.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::analysis::filter::ThreadFilter;
use crate::analysis::summary::Summary;
use crate::analysis::timeline::Timeline;
use crate::analysis::{Analyzer, Options};
use crate::capture::launch::{self, LaunchSpec};
use crate::capture::{self, CaptureOptions, Session, Started, Target, TraceMeta};
use crate::cli::{Cli, Command, OutputArgs, ReportArgs, TraceArgs};
use crate::export::chrome::ChromeTrace;
use crate::export::html::Html;
use crate::export::perfetto::Perfetto;
use crate::export::terminal::TerminalTimeline;
use crate::export::{Exporter, Report, SummaryFormat, summary_exporter};
use crate::trace::consumer::{Consumer, Fanout, Flow, Progress};
use crate::trace::files::{self, TraceFiles};
use crate::trace::{Format, read_file};

/// Run the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.cmd {
        Some(Command::Report(r)) => report(&r),
        Some(Command::Demo(d)) => crate::demo::demo(&d),
        Some(Command::Compare(c)) => crate::demo::compare(&c),
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

    fn show(&mut self, p: &Progress) {
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

impl Consumer for StatusLine {
    fn record(&mut self, _: &crate::trace::Record) {}

    fn progress(&mut self, p: &Progress) -> Flow {
        self.show(p);
        Flow::Continue
    }
}

/// The line that says tracing has started (once the probes are armed).
fn banner(s: &Started) -> String {
    let what = match &s.command {
        Some(cmd) => format!("command {:?}", cmd.join(" ")),
        None => format!("PID {} ({})", s.pid, s.comm),
    };
    format!(
        "schedtrace: tracing {what}, PID {}, {} thread{}, {} CPU{}{}",
        s.pid,
        s.threads,
        if s.threads == 1 { "" } else { "s" },
        s.ncpus,
        if s.ncpus == 1 { "" } else { "s" },
        match &s.duration {
            Some(d) => format!(", for {}", crate::units::duration(d.as_nanos() as u64)),
            None => ", until Ctrl-C or exit".into(),
        }
    )
}

/// The files the export flags ask for, with their exporters.
fn exports(out: &OutputArgs) -> Vec<(&Path, &'static str, Box<dyn Exporter>)> {
    let mut v: Vec<(&Path, &'static str, Box<dyn Exporter>)> = Vec::new();
    if let Some(p) = &out.perfetto {
        v.push((p, "Perfetto trace", Box::new(Perfetto)));
    }
    if let Some(p) = &out.chrome_trace {
        v.push((p, "Chrome trace", Box::new(ChromeTrace)));
    }
    if let Some(p) = &out.html {
        v.push((p, "HTML report", Box::new(Html)));
    }
    v
}

/// Does any requested output need the full timeline?
pub fn wants_timeline(out: &OutputArgs) -> bool {
    out.timeline || exports(out).iter().any(|(_, _, e)| e.needs_timeline())
}

/// Refuse bad output combinations and paths before any work: every output
/// file (and `also`, e.g. `--json`) must be creatable and distinct.
fn check_outputs(out: &OutputArgs, also: &[&Path]) -> anyhow::Result<()> {
    if out.timeline && out.format == SummaryFormat::Json {
        bail!("--timeline draws on stdout after the text summary; it cannot follow --format json");
    }
    let mut seen: Vec<&Path> = Vec::new();
    for p in also {
        if seen.contains(p) {
            bail!("{} is named for two outputs", p.display());
        }
        seen.push(p);
    }
    for (p, _, _) in exports(out) {
        if seen.contains(&p) {
            bail!("{} is named for two outputs", p.display());
        }
        files::check_writable(p, out.force)?;
        seen.push(p);
    }
    Ok(())
}

/// Print the summary in the chosen format on stdout, then the terminal
/// timeline when asked.
fn print_summary(out: &OutputArgs, report: &Report<'_>) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    summary_exporter(out.format).write(report, &mut lock)?;
    if out.timeline && report.timeline.is_some() {
        lock.write_all(b"\n")?;
        TerminalTimeline::for_stdout(out.color).write(report, &mut lock)?;
    }
    lock.flush()?;
    Ok(())
}

/// Write every requested export file; the first failure is returned after
/// trying them all.
fn write_exports(out: &OutputArgs, report: &Report<'_>) -> anyhow::Result<()> {
    let mut first_err = None;
    for (path, what, exporter) in exports(out) {
        match files::write_file(path, out.force, |w| exporter.write(report, w)) {
            Ok(()) => {
                if !out.quiet {
                    eprintln!("schedtrace: wrote the {what} to {}", path.display());
                }
            }
            Err(e) => {
                eprintln!("schedtrace: error: {e:#}");
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e.context("an output could not be written")),
        None => Ok(()),
    }
}

/// What the user sees while a capture runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ui {
    /// No banner and no status line.
    pub quiet: bool,
    /// The full-screen live view.
    pub live: bool,
}

/// What a live capture produced.
pub struct Captured {
    pub summary: Summary,
    pub timeline: Option<Timeline>,
    pub outcome: capture::Outcome,
}

/// Trace `target` until a stop condition, analysing as it goes; every
/// record also goes to `files`. The one capture path of `schedtrace`,
/// `schedtrace -- CMD` and `schedtrace demo`. Call it while the process has
/// a single thread: a launched command is forked before the runtime starts.
pub fn capture_live(
    target: &Target,
    opts: &CaptureOptions,
    meta: &TraceMeta,
    ui: Ui,
    analysis: Options,
    files: &mut TraceFiles,
) -> anyhow::Result<Captured> {
    let (pid, launched) = target.start()?;
    let mut analyzer = Analyzer::new(analysis);
    let outcome = {
        let mut view;
        let analysis: &mut dyn Consumer = if ui.live {
            let what = match &meta.command {
                Some(c) => c.join(" "),
                None => crate::procfs::stat(pid).map(|s| s.comm).unwrap_or_default(),
            };
            view = crate::live::LiveView::start(
                format!("schedtrace — PID {pid} ({what})"),
                crate::procfs::possible_cpus(),
                &mut analyzer,
            )?;
            &mut view
        } else {
            &mut analyzer
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let mut status = StatusLine::new(ui.quiet);
        let r = rt.block_on(async {
            let mut out = Fanout(vec![&mut status, analysis, files]);
            let (mut session, started) =
                Session::start(pid, launched, opts, meta, &mut out).await?;
            if !ui.quiet {
                eprintln!("{}", banner(&started));
            }
            let reason = session.run(&mut out).await?;
            session.finish(reason, &mut out)
        });
        status.clear();
        drop(rt);
        // Give the terminal back (the view drops here) before anything is printed.
        r
    };
    let outcome = outcome?;
    let (summary, timeline) = analyzer.finish();
    Ok(Captured {
        summary,
        timeline,
        outcome,
    })
}

fn trace(args: &TraceArgs) -> anyhow::Result<i32> {
    if args.live && !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!("--live needs a terminal on stdout; run it in a terminal or drop --live");
    }
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
    let trace_paths = trace_outputs(args.json.as_deref(), args.record.as_deref());
    let also: Vec<&Path> = trace_paths.iter().map(|(p, _)| *p).collect();
    check_outputs(&args.out, &also)?;
    let mut files = TraceFiles::create(&trace_paths, args.out.force)?;
    let target = match args.pid {
        Some(pid) => Target::Pid(pid),
        None => Target::Launch(LaunchSpec {
            argv: argv.clone(),
            cpus: args.cpus.as_ref().map(|c| c.0.clone()),
            run_as: if args.as_root {
                None
            } else {
                crate::privs::sudo_user()
            },
        }),
    };
    let opts = CaptureOptions {
        follow_children: args.follow_children,
        wakeups: !args.no_wakeups,
        duration: args.duration,
        ring_bytes: args.buffer_size,
        verbose: args.out.verbose,
        ..Default::default()
    };
    let meta = TraceMeta {
        command: if builtin {
            Some(vec!["(built-in example workload)".into()])
        } else if args.pid.is_none() {
            Some(argv)
        } else {
            None
        },
        pinned_cpus: args.cpus.as_ref().map(|c| c.0.clone()),
    };
    let ui = Ui {
        quiet: args.out.quiet || args.live,
        live: args.live,
    };
    let analysis = Options {
        keep_timeline: wants_timeline(&args.out),
        ..Default::default()
    };
    let captured = match capture_live(&target, &opts, &meta, ui, analysis, &mut files) {
        Ok(c) => c,
        Err(e) => {
            // Tracing never started: leave no file behind.
            files.discard();
            return Err(e);
        }
    };
    let Captured {
        summary,
        timeline,
        outcome,
    } = captured;
    let write_result = files.finish();
    let report = Report {
        summary: &summary,
        timeline: timeline.as_ref(),
    };
    print_summary(&args.out, &report)?;
    let export_result = write_exports(&args.out, &report);
    write_result?;
    export_result?;
    if summary.lost_events > 0 {
        eprintln!(
            "schedtrace: warning: {} events were lost (ring buffer full); raise --buffer-size",
            summary.lost_events
        );
    }
    if !outcome.end.complete {
        eprintln!(
            "schedtrace: warning: stopped while finishing (second signal): the outputs end \
             early and say \"complete\": false"
        );
        return Ok(EXIT_INTERRUPTED);
    }
    Ok(match outcome.child_status {
        Some(s) if !builtin => launch::exit_code(s),
        _ => 0,
    })
}

/// Exit status after a second stop signal cut finishing short (128 + SIGINT,
/// as shells report an interrupted command).
const EXIT_INTERRUPTED: i32 = 130;

fn report(args: &ReportArgs) -> anyhow::Result<i32> {
    let opts = Options {
        since_ns: args.since.map(|d| d.as_nanos() as u64),
        until_ns: args.until.map(|d| d.as_nanos() as u64),
        keep_timeline: wants_timeline(&args.out),
    };
    if let (Some(s), Some(u)) = (opts.since_ns, opts.until_ns)
        && s >= u
    {
        bail!("--since must be before --until");
    }
    let trace_paths = trace_outputs(args.json.as_deref(), args.record.as_deref());
    let mut also = vec![args.file.as_path()];
    also.extend(trace_paths.iter().map(|(p, _)| *p));
    check_outputs(&args.out, &also)?;
    let mut files = TraceFiles::create(&trace_paths, args.out.force)?;
    let mut a = Analyzer::new(opts);
    if let Err(e) = read_file(&args.file, &mut Fanout(vec![&mut a, &mut files])) {
        files.discard();
        return Err(e);
    }
    files.finish()?;
    if !args.out.quiet {
        for (p, format) in &trace_paths {
            eprintln!(
                "schedtrace: wrote the trace as {} to {}",
                match format {
                    Format::Jsonl => "JSON Lines",
                    Format::Binary => "a binary capture",
                },
                p.display()
            );
        }
    }
    let (mut summary, mut timeline) = a.finish();
    let filter = ThreadFilter {
        tids: args.tid.clone(),
        comm: args.comm.clone(),
        cpu: args.cpu,
    };
    filter.apply_summary(&mut summary);
    if let Some(tl) = &mut timeline {
        filter.apply_timeline(tl);
    }
    let report = Report {
        summary: &summary,
        timeline: timeline.as_ref(),
    };
    print_summary(&args.out, &report)?;
    write_exports(&args.out, &report)?;
    Ok(0)
}

/// The trace files asked for (`--json`, `--record`), with their formats.
fn trace_outputs<'a>(json: Option<&'a Path>, record: Option<&'a Path>) -> Vec<(&'a Path, Format)> {
    let mut v = Vec::new();
    if let Some(p) = json {
        v.push((p, Format::Jsonl));
    }
    if let Some(p) = record {
        v.push((p, Format::Binary));
    }
    v
}
