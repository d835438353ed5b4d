//! `schedtrace compare A B`: two saved traces (either format) side by
//! side, as `schedtrace demo` shows its two runs. No root needed.

use std::path::Path;

use anyhow::{Context as _, bail};
use schedtrace::analysis::{Analyzer, Options};
use schedtrace::export::comparison::{Analysed, label_for};
use schedtrace::trace::files;
use schedtrace::trace::read_file;

use super::args::CompareArgs;
use super::output::{Heading, show_comparison};

pub(super) fn compare(args: &CompareArgs) -> anyhow::Result<i32> {
    if let Some(p) = &args.html {
        if p == &args.a || p == &args.b {
            bail!(
                "--html {} would overwrite a trace being compared",
                p.display()
            );
        }
        files::check_writable(p, args.common.force)?;
    }
    let runs = vec![load(&args.a)?, load(&args.b)?];
    let heading = Heading {
        title: "schedtrace: comparing two traces",
        intro: None,
    };
    show_comparison(&runs, &heading, args.html.as_deref(), &args.common)?;
    Ok(0)
}

/// Analyse a saved trace with its timeline.
fn load(path: &Path) -> anyhow::Result<Analysed> {
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
