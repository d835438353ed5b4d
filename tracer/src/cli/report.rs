//! `schedtrace report FILE`: a saved trace (either format) through the
//! same analysis and outputs as a live capture, with thread filters, and
//! converted to the other format on request. No root needed.

use anyhow::bail;
use schedtrace::analysis::filter::ThreadFilter;
use schedtrace::analysis::{Analyzer, Options};
use schedtrace::export::Report;
use schedtrace::trace::consumer::Fanout;
use schedtrace::trace::files::TraceFiles;
use schedtrace::trace::{Format, read_file};

use schedtrace::analysis::chain::walk;
use schedtrace::analysis::summary::Summary;
use schedtrace::analysis::timeline::Timeline;
use schedtrace::export::chain;

use super::args::{ChainAt, ReportArgs};
use super::output::{
    check_outputs, finish_parquet, parquet_tables, print_summary, trace_outputs, wants_timeline,
    warn_losses, write_exports,
};

pub(super) fn report(args: &ReportArgs) -> anyhow::Result<i32> {
    let opts = Options {
        since_ns: args.since.map(|d| d.as_nanos() as u64),
        until_ns: args.until.map(|d| d.as_nanos() as u64),
        keep_timeline: wants_timeline(&args.out) || args.chain.is_some(),
        selection: None,
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
    let mut files = TraceFiles::create(&trace_paths, args.out.common.force)?;
    let mut parquet = match parquet_tables(&args.out, None) {
        Ok(p) => p,
        Err(e) => {
            files.discard();
            return Err(e);
        }
    };
    let mut a = Analyzer::new(opts.clone());
    if let Some(p) = &parquet {
        p.attach(&mut a);
    }
    let mut out = Fanout(vec![&mut a, &mut files]);
    if let Some(p) = &mut parquet {
        out.0.push(p);
    }
    let read = read_file(&args.file, &mut out);
    drop(out);
    if let Err(e) = read {
        files.discard();
        if let Some(p) = parquet {
            p.discard();
        }
        return Err(e);
    }
    files.finish()?;
    if !args.out.common.quiet {
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
    finish_parquet(&args.out, parquet, &summary)?;
    if let (Some(c), Some(tl)) = (args.chain, &timeline) {
        print_chain(&summary, tl, c)?;
    }
    let filter = ThreadFilter {
        tids: args.tid.clone(),
        comm: args.comm.clone(),
        cpu: args.cpu,
    };
    if let Some(selection) = filter.select(&summary) {
        // Again, accounting only the selected threads: every total, share,
        // count and profile is then theirs.
        let mut a = Analyzer::new(Options {
            selection: Some(selection),
            ..opts
        });
        read_file(&args.file, &mut a)?;
        (summary, timeline) = a.finish();
    }
    if let Some(tl) = &mut timeline {
        filter.apply_timeline(tl);
    }
    let report = Report {
        summary: &summary,
        timeline: timeline.as_ref(),
    };
    if args.chain.is_none() {
        print_summary(&args.out, &report)?;
    }
    let written = write_exports(&args.out, &report);
    warn_losses(&summary, false);
    written?;
    Ok(0)
}

/// Print the chain of the wait `c` names.
fn print_chain(s: &Summary, tl: &Timeline, c: ChainAt) -> anyhow::Result<()> {
    if s.thread(c.tid).is_none() {
        bail!("thread {} is not in the trace", c.tid);
    }
    let at =
        c.at.map(|d| s.window_start_ns.saturating_add(d.as_nanos() as u64));
    let traced = |tid: u32| s.thread(tid).is_some();
    let Some(w) = walk(tl, c.tid, at, &traced) else {
        bail!(
            "thread {} has no wait {}",
            c.tid,
            match c.at {
                Some(d) => format!("at or before {:.6} s", d.as_secs_f64()),
                None => "in the trace".into(),
            }
        );
    };
    print!("{}", chain::render(s, &w));
    Ok(())
}
