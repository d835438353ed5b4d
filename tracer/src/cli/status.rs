//! What schedtrace says on stderr while it traces: the line that says
//! tracing has started, and the one-line status (elapsed time, events,
//! rate, losses) redrawn on every progress report.

use schedtrace::capture::Started;
use schedtrace::trace::consumer::{Consumer, Flow, Progress};
use schedtrace::trace::{Record, TargetProcess};
use schedtrace::units::duration;

/// The line that says tracing has started (once the probes are armed).
pub(super) fn banner(s: &Started) -> String {
    let first = TargetProcess {
        pid: s.pid,
        comm: s.comm.clone(),
        ns_pid: s.ns_pid,
    };
    let so_far = || {
        let n = usize::from(s.pid != 0) + s.also.len();
        format!("{n} process{} so far", if n == 1 { "" } else { "es" })
    };
    let what = match (&s.command, &s.cgroup) {
        (Some(cmd), _) => format!("command {:?}, PID {}", cmd.join(" "), s.pid),
        _ if s.all => "every task".to_string(),
        (None, Some(cg)) => format!("cgroup {} ({})", cg.path, so_far()),
        (None, None) if s.comm_pattern.is_some() => format!(
            "processes named {:?} ({})",
            s.comm_pattern.as_deref().unwrap_or_default(),
            so_far()
        ),
        (None, None) => std::iter::once(&first)
            .chain(&s.also)
            .map(|p| format!("PID {}", p.label()))
            .collect::<Vec<_>>()
            .join(", "),
    };
    format!(
        "schedtrace: tracing {what}, {} thread{}, {} CPU{}{}",
        s.threads,
        if s.threads == 1 { "" } else { "s" },
        s.ncpus,
        if s.ncpus == 1 { "" } else { "s" },
        match &s.duration {
            Some(d) => format!(", for {}", duration(d.as_nanos() as u64)),
            None if s.cgroup.is_some() || s.comm_pattern.is_some() || s.all => {
                ", until Ctrl-C".into()
            }
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
