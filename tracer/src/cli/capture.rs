//! A live capture as the commands run it: the target started, the
//! analysis fed (through the live view when asked), the trace files
//! written, the banner and status line shown.

use anyhow::Context as _;
use schedtrace::analysis::summary::Summary;
use schedtrace::analysis::timeline::Timeline;
use schedtrace::analysis::{Analyzer, Options};
use schedtrace::capture::{CaptureOptions, Outcome, Session, Target, TraceMeta};
use schedtrace::export::parquet::ParquetTables;
use schedtrace::procfs;
use schedtrace::trace::consumer::{Consumer, Fanout};
use schedtrace::trace::files::TraceFiles;

use super::live::LiveView;
use super::status::{StatusLine, banner};

/// What the user sees while a capture runs.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Ui {
    /// No banner and no status line.
    pub quiet: bool,
    /// The full-screen live view.
    pub live: bool,
}

/// What a live capture produced.
pub(super) struct Captured {
    pub summary: Summary,
    pub timeline: Option<Timeline>,
    pub outcome: Outcome,
}

/// Trace `target` until a stop condition, analysing as it goes; every
/// record also goes to `files`, and to the Parquet tables if given. The one capture path of `schedtrace`,
/// `schedtrace -- CMD` and `schedtrace demo`. Call it while the process has
/// a single thread: a launched command is forked before the runtime starts.
pub(super) fn capture_live(
    target: &Target,
    opts: &CaptureOptions,
    meta: &TraceMeta,
    ui: Ui,
    analysis: Options,
    files: &mut TraceFiles,
    parquet: Option<&mut ParquetTables>,
) -> anyhow::Result<Captured> {
    let (sel, launched) = target.start()?;
    let mut analyzer = Analyzer::new(analysis);
    if let Some(p) = &parquet {
        p.attach(&mut analyzer);
    }
    let outcome = {
        let mut view;
        let analysis: &mut dyn Consumer = if ui.live {
            let what: Vec<String> = sel
                .pids
                .iter()
                .map(|pid| {
                    let name = match &meta.command {
                        Some(c) => c.join(" "),
                        None => procfs::stat(*pid).map(|s| s.comm).unwrap_or_default(),
                    };
                    format!("PID {pid} ({name})")
                })
                .collect();
            view = LiveView::start(
                format!("schedtrace — {}", what.join(", ")),
                procfs::possible_cpus(),
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
            if let Some(p) = parquet {
                out.0.push(p);
            }
            let (mut session, started) =
                Session::start(&sel, launched, opts, meta, &mut out).await?;
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
