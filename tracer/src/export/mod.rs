//! Output formats, one small module each behind the [`Exporter`] trait. An
//! exporter gets the analysis results (and the full timeline when it asks
//! for one) and writes one document.

pub mod chrome;
pub mod html;
pub mod json;
pub mod perfetto;
pub mod text;
pub mod timeline;

use std::io::Write;

use crate::analysis::summary::Summary;
use crate::analysis::timeline::Timeline;

/// What exporters draw from.
pub struct Report<'a> {
    pub summary: &'a Summary,
    pub timeline: Option<&'a Timeline>,
}

pub trait Exporter {
    /// Does this format need the full [`Timeline`] (memory grows with the trace)?
    fn needs_timeline(&self) -> bool {
        false
    }

    fn write(&self, report: &Report<'_>, out: &mut dyn Write) -> anyhow::Result<()>;
}

/// The summary formats for stdout (`--format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SummaryFormat {
    /// A table for people.
    Text,
    /// The JSON summary (docs/summary-schema.md).
    Json,
}

pub fn summary_exporter(f: SummaryFormat) -> Box<dyn Exporter> {
    match f {
        SummaryFormat::Text => Box::new(text::Text),
        SummaryFormat::Json => Box::new(json::Json),
    }
}
