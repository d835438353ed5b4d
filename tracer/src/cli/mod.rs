//! The command line: [`args`] defines it; each command runs in its own
//! module ([`trace`], [`report`], [`demo`], [`compare`]) on top of the
//! shared pieces below them: [`capture`] (a live capture with the
//! [`status`] line or the [`live`] view) and [`output`] (the summary on
//! stdout, the export files, the comparison page).

pub(crate) mod args;
mod capture;
mod compare;
mod demo;
mod floor;
mod live;
mod output;
mod report;
mod status;
mod trace;

use args::{Cli, Command};

/// Run the parsed command line; returns the process exit code.
pub(crate) fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.cmd {
        Some(Command::Report(r)) => report::report(&r),
        Some(Command::Demo(d)) => demo::demo(&d),
        Some(Command::Compare(c)) => compare::compare(&c),
        Some(Command::Workload(w)) => {
            schedtrace::workload::run(&(&w).into())?;
            Ok(0)
        }
        Some(Command::Floor) => floor::floor(),
        None => trace::trace(&cli.trace),
    }
}
