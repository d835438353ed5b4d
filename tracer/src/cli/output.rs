//! Where results go: the summary (and terminal timeline) on stdout, the
//! export files the flags ask for, and the side-by-side comparison of
//! `demo` and `compare` with its HTML page. Output paths are checked before
//! any work starts.

use std::io::Write;
use std::path::Path;

use anyhow::bail;
use schedtrace::analysis::summary::Summary;
use schedtrace::export::chrome::ChromeTrace;
use schedtrace::export::comparison::{Analysed, comparison, findings, render_text};
use schedtrace::export::folded::Folded;
use schedtrace::export::html::{self, Html, Page, Run};
use schedtrace::export::parquet::{self, ParquetOptions, ParquetTables};
use schedtrace::export::perfetto::Perfetto;
use schedtrace::export::pprof::Pprof;
use schedtrace::export::terminal::{TerminalTimeline, terminal_width};
use schedtrace::export::{Exporter, Report, summary_exporter};
use schedtrace::trace::Format;
use schedtrace::trace::files;

use super::args::{Common, OutputArgs, SummaryFormat};

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
    if let Some(p) = &out.folded {
        v.push((p, "folded off-CPU stacks", Box::new(Folded)));
    }
    if let Some(p) = &out.pprof {
        v.push((p, "pprof off-CPU profile", Box::new(Pprof)));
    }
    v
}

/// Does anything `out` asks for need the events: the terminal timeline,
/// the Parquet tables or an export file?
pub(super) fn wants_events(out: &OutputArgs) -> bool {
    out.timeline || out.parquet.is_some() || !exports(out).is_empty()
}

/// Does any requested output need the full timeline?
pub(super) fn wants_timeline(out: &OutputArgs) -> bool {
    out.timeline || exports(out).iter().any(|(_, _, e)| e.needs_timeline())
}

/// The trace files asked for (`--json`, `--record`), with their formats.
pub(super) fn trace_outputs<'a>(
    json: Option<&'a Path>,
    record: Option<&'a Path>,
) -> Vec<(&'a Path, Format)> {
    let mut v = Vec::new();
    if let Some(p) = json {
        v.push((p, Format::Jsonl));
    }
    if let Some(p) = record {
        v.push((p, Format::Binary));
    }
    v
}

/// Refuse bad output combinations and paths before any work: every output
/// file (and `also`, e.g. `--json`) must be creatable and distinct.
pub(super) fn check_outputs(out: &OutputArgs, also: &[&Path]) -> anyhow::Result<()> {
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
        files::check_writable(p, out.common.force)?;
        seen.push(p);
    }
    if let Some(dir) = &out.parquet {
        for name in parquet::FILES {
            let p = dir.join(name);
            if seen.contains(&p.as_path()) {
                bail!("{} is named for two outputs", p.display());
            }
        }
    }
    Ok(())
}

/// The Parquet tables `--parquet DIR` asks for, made before any work starts
/// (the directory, and the four files in it). `boot_id` is this machine's
/// for a live capture; a saved trace does not say it.
pub(super) fn parquet_tables(
    out: &OutputArgs,
    boot_id: Option<String>,
) -> anyhow::Result<Option<ParquetTables>> {
    let Some(dir) = &out.parquet else {
        return Ok(None);
    };
    let opts = ParquetOptions {
        host: out.host.clone(),
        boot_id,
    };
    ParquetTables::create(dir, out.common.force, opts).map(Some)
}

/// Write the rest of the Parquet tables (from the whole, unfiltered summary)
/// and finish them.
pub(super) fn finish_parquet(
    out: &OutputArgs,
    tables: Option<ParquetTables>,
    summary: &Summary,
) -> anyhow::Result<()> {
    let Some(tables) = tables else {
        return Ok(());
    };
    let dir = tables.dir().to_path_buf();
    tables.finish(summary)?;
    if !out.common.quiet {
        eprintln!("schedtrace: wrote the Parquet tables to {}", dir.display());
    }
    Ok(())
}

/// Print the summary in the chosen format on stdout, then the terminal
/// timeline when asked.
pub(super) fn print_summary(out: &OutputArgs, report: &Report<'_>) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    summary_exporter(out.format.into()).write(report, &mut lock)?;
    if out.timeline && report.timeline.is_some() {
        lock.write_all(b"\n")?;
        let timeline = TerminalTimeline {
            width: terminal_width(),
            color: out.common.color.for_stdout(),
        };
        timeline.write(report, &mut lock)?;
    }
    lock.flush()?;
    Ok(())
}

/// Say on stderr what the trace lacks, whatever else is printed: the
/// summary says it too, but `report --chain` prints none, and export files
/// such as folded stacks have no place for it. `tracing`: this run took the
/// trace, so a larger ring buffer is a remedy now.
pub(super) fn warn_losses(s: &Summary, tracing: bool) {
    if s.lost_events > 0 {
        if tracing {
            eprintln!(
                "schedtrace: warning: {} events were lost (ring buffer full); raise --buffer-size",
                s.lost_events
            );
        } else {
            eprintln!(
                "schedtrace: warning: the trace lacks {} events, lost when it was taken (ring \
                 buffer full)",
                s.lost_events
            );
        }
    }
    if s.lost_processes > 0 {
        eprintln!(
            "schedtrace: warning: {}",
            schedtrace::analysis::summary::lost_processes_note(s.lost_processes)
        );
    }
}

/// Write every requested export file; the first failure is returned after
/// trying them all.
pub(super) fn write_exports(out: &OutputArgs, report: &Report<'_>) -> anyhow::Result<()> {
    let mut first_err = None;
    for (path, what, exporter) in exports(out) {
        match files::write_file(path, out.common.force, |w| exporter.write(report, w)) {
            Ok(()) => {
                if !out.common.quiet {
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

/// The page of a comparison: its title and the text above the runs.
pub(super) struct Heading<'a> {
    pub title: &'a str,
    pub intro: Option<&'a str>,
}

/// Print the runs' timelines and the table; write the HTML report if asked.
pub(super) fn show_comparison(
    runs: &[Analysed],
    heading: &Heading<'_>,
    html_path: Option<&Path>,
    common: &Common,
) -> anyhow::Result<()> {
    let rows = comparison(runs);
    let text = render_text(runs, &rows, terminal_width(), common.color.for_stdout());
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    lock.write_all(text.as_bytes())?;
    lock.flush()?;
    drop(lock);
    if let Some(path) = html_path {
        let page = Page {
            title: heading.title.to_string(),
            intro: match (heading.intro, findings(runs)) {
                (Some(i), Some(f)) => Some(format!("{i} {f}")),
                (i, f) => i.map(str::to_string).or(f),
            },
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
        files::write_file(path, common.force, |w| html::write_page(&page, w))?;
        if !common.quiet {
            eprintln!(
                "schedtrace: wrote the HTML report to {}; open it in a browser",
                path.display()
            );
        }
    }
    Ok(())
}
