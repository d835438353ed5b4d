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

/// Keeps glibc from turning freed large buffers into heap holes.
///
/// glibc serves an allocation of 128 KiB or more with its own mapping, but
/// each time such a mapping is freed it raises that threshold to the freed
/// size. The queues that double as a capture's peak rate grows (the held
/// events, the reorder queues) then land on the heap, and the capacities
/// they outgrew stay there as holes: measured, one run in two of the same
/// capture peaked 9.5 MB higher (49.7 against 40.2 MB), all of it a 12 MB
/// queue mapped beside a heap that still held its old 3 and 6 MB copies. A
/// fixed threshold keeps every large buffer in a mapping of its own, which
/// growing moves (`mremap`) and freeing returns. The buffers that are
/// reused (write buffers) are allocated once, so no extra mapping is made
/// per event: user plus system time of the same capture was 2.96 s either
/// way (5 runs each).
fn fix_malloc_mmap_threshold() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a tuning parameter, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn main() {
    fix_malloc_mmap_threshold();
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
