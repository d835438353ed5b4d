//! What schedtrace says on stderr while it traces: the line that says
//! tracing has started, and the one-line status (elapsed time, events,
//! rate, losses) redrawn on every progress report.

use schedtrace::capture::Started;
use schedtrace::trace::Record;
use schedtrace::trace::consumer::{Consumer, Flow, Progress};
use schedtrace::units::duration;

/// The line that says tracing has started (once the probes are armed).
pub(super) fn banner(s: &Started) -> String {
    let what = match &s.command {
        Some(cmd) => format!("command {:?}, PID {}", cmd.join(" "), s.pid),
        None if !s.also.is_empty() => {
            let rest: Vec<String> = s
                .also
                .iter()
                .map(|p| format!("PID {} ({})", p.pid, p.comm))
                .collect();
            format!("PID {} ({}), {}", s.pid, s.comm, rest.join(", "))
        }
        None => format!("PID {} ({})", s.pid, s.comm),
    };
    format!(
        "schedtrace: tracing {what}, {} thread{}, {} CPU{}{}",
        s.threads,
        if s.threads == 1 { "" } else { "s" },
        s.ncpus,
        if s.ncpus == 1 { "" } else { "s" },
        match &s.duration {
            Some(d) => format!(", for {}", duration(d.as_nanos() as u64)),
            None => ", until Ctrl-C or exit".into(),
        }
    )
}

/// A one-line progress report on stderr, only when stderr is a terminal and
/// not `--quiet`.
pub(super) struct StatusLine {
    enabled: bool,
    shown: bool,
}

impl StatusLine {
    pub(super) fn new(quiet: bool) -> Self {
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

    /// Erase the line, if it was drawn.
    pub(super) fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}

impl Consumer for StatusLine {
    fn record(&mut self, _: &Record) {}

    fn progress(&mut self, p: &Progress) -> Flow {
        self.show(p);
        Flow::Continue
    }
}
