//! Headless Chromium, launched one way for the HTML report's integration
//! test (`tests/tests/exports.rs`) and for `cargo xtask readme-images`,
//! which builds this file into xtask (`#[path]`: xtask cannot depend on
//! this crate, which needs the eBPF build). Only `std` here.

use std::path::Path;
use std::process::Command;

/// Chromium (`SCHEDTRACE_CHROMIUM`, else `chromium` from Debian's package)
/// headless, with its profile in `profile`, without sandbox, GPU,
/// first-run work, network chatter or scrollbars; the caller adds the
/// window size, what to do (`--dump-dom`, `--screenshot=...`) and the page.
pub fn headless(profile: &Path) -> Command {
    let exe = std::env::var("SCHEDTRACE_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let mut c = Command::new(exe);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}
