//! The `schedtrace` binary: parse the command line ([`cli::args`]), run
//! the command ([`cli::run`]), report errors.
use clap::Parser;

mod cli;

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() {
    let cli = cli::args::Cli::parse();
    let verbose = match &cli.cmd {
        Some(cli::args::Command::Report(r)) => r.out.verbose,
        _ => cli.trace.out.verbose,
    };
    env_logger::Builder::new()
        .filter_level(if verbose {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Warn
        })
        .format_target(false)
        .format_timestamp(None)
        .parse_env("SCHEDTRACE_LOG")
        .init();
    // Who we act for, before any file or command is touched.
    if let Err(e) = schedtrace::privs::init() {
        eprintln!("schedtrace: error: {e}");
        std::process::exit(1);
    }
    match cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) if is_broken_pipe(&e) => std::process::exit(0),
        Err(e) => {
            eprintln!("schedtrace: error: {e:#}");
            std::process::exit(1);
        }
    }
}
