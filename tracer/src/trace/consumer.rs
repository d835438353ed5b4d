//! The one seam between a record stream and what uses it: a [`Consumer`]
//! takes every [`Record`] in order and, while a live capture runs, its
//! [`Progress`]. The analysis, the trace-file writers, the status line and
//! the live view are consumers; a capture or a saved trace feeds them all
//! through a [`Fanout`].

use std::time::Duration;

use super::Record;
use crate::event::Event;

/// Where a running capture stands, for status lines and live views.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Progress {
    pub elapsed: Duration,
    pub events: u64,
    pub lost: u64,
    /// Events per second over the whole capture so far.
    pub rate: f64,
}

/// What a consumer wants the capture to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Something fed the record stream.
pub trait Consumer {
    /// The next record (records come in stream order).
    fn record(&mut self, r: &Record);

    /// The next record when it is an event: the same as [`Self::record`]
    /// of a [`Record::Event`], for a source that holds events rather than
    /// records (the capture's reorder buffer), which would otherwise copy
    /// each event (192 bytes) into a record to hand it on.
    fn event(&mut self, e: &Event) {
        self.record(&Record::Event(*e));
    }

    /// Where a live capture stands, a few times a second; [`Flow::Stop`]
    /// ends the capture (the user quit). A saved trace has no progress.
    fn progress(&mut self, _p: &Progress) -> Flow {
        Flow::Continue
    }

    /// Push what is buffered on (whole records), so that a crash loses no
    /// more than what came since; a live capture asks at least once a
    /// second.
    fn flush(&mut self) {}
}

/// Several consumers fed as one, in order: every record and every progress
/// report goes to each; the capture stops when any of them asks.
pub struct Fanout<'a>(pub Vec<&'a mut dyn Consumer>);

impl Consumer for Fanout<'_> {
    fn record(&mut self, r: &Record) {
        for c in &mut self.0 {
            c.record(r);
        }
    }

    fn event(&mut self, e: &Event) {
        for c in &mut self.0 {
            c.event(e);
        }
    }

    fn progress(&mut self, p: &Progress) -> Flow {
        let mut flow = Flow::Continue;
        for c in &mut self.0 {
            if c.progress(p) == Flow::Stop {
                flow = Flow::Stop;
            }
        }
        flow
    }

    fn flush(&mut self) {
        for c in &mut self.0 {
            c.flush();
        }
    }
}
