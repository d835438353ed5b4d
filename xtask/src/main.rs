//! Developer tasks for schedtrace: `cargo xtask <task>`.
//!
//! - `setup`: install what building and testing need, idempotently.
//! - `run`: setup, build, run schedtrace (the built-in example by default).
//! - `test`: setup, fmt and clippy, unit tests, then the root integration tests.
//! - `integration-test`: only the root integration tests.
//! - `soak`: the root integration tests N times in a row, with a tally of failures.
//! - `gen`: regenerate the man page, the shell completions and the pprof code.
//! - `readme-images`: remake the README's and docs/why.md's pictures from real runs.
//! - `bench`: overhead benchmark against perf, trace-cmd, bpftrace (docs/benchmark.md).
//! - `dist`: a static binary and a `.deb` to ship to hosts (docs/dist.md).

mod bench;
mod dist;
mod soak;
// Headless Chromium, launched as the integration tests launch it (its
// items are public for the tests crate).
#[allow(unreachable_pub)]
#[path = "../../tests/src/chromium.rs"]
mod chromium;
mod images;
mod setup;

use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "schedtrace developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the pinned eBPF nightly, rust-src, bpf-linker, test packages; mount tracefs.
    Setup {
        /// Also install the packages the tests need (perf, bpftool, ...).
        #[arg(long)]
        tests: bool,
    },
    /// Set up, build (release) and run schedtrace with ARGS (default: the built-in example).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, check fmt and clippy, then run every test: unit tests and the root integration tests.
    Test,
    /// Regenerate the man page and shell completions from the CLI definition.
    Gen,
    /// Remake the README's and docs/why.md's pictures from real runs (root).
    ReadmeImages {
        /// Only the pictures of docs/why.md (real Node.js beside a busy loop).
        #[arg(long)]
        why_only: bool,
    },
    /// Build (release) and run the root integration tests only.
    IntegrationTest {
        /// Passed to the test binary (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the root integration tests N times (as root) and tally every failure.
    Soak(soak::Args),
    /// Measure schedtrace's overhead against the floor, perf, trace-cmd and bpftrace (as root, < 15 min).
    Bench(bench::Args),
    /// Build a static binary (musl) and a .deb with the man page and completions, in target/dist.
    Dist,
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Run a command in the workspace root, failing with its name.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: {shown}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

/// `cargo` with the environment the eBPF build needs.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.env("PATH", setup::path_with_cargo_bin());
    c
}

fn is_root() -> bool {
    // SAFETY-free: read our effective uid from /proc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|x| x == "0"))
        })
        .unwrap_or(false)
}

/// Run `program args` as root: directly when we are root, else through sudo.
fn as_root(program: &std::path::Path, args: &[String]) -> Command {
    if is_root() {
        let mut c = Command::new(program);
        c.args(args);
        c
    } else {
        let mut c = Command::new("sudo");
        c.arg("-E").arg(program).args(args);
        c
    }
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the
/// workspace root) or `target`.
fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .map(|p| if p.is_relative() { root().join(p) } else { p })
        .unwrap_or_else(|| root().join("target"))
}

/// What `cargo xtask test` leaves in a target directory built from nothing
/// (every profile it builds: 6.2-6.7 GB measured on clean clones, 1.4 GB of
/// it incremental-build caches), rounded up.
const TEST_BUILD_BYTES: u64 = 7 << 30;

/// Fail at once, saying why, when the target directory's file system cannot
/// take what the tests still have to build (`TEST_BUILD_BYTES` less what
/// the target directory already holds), instead of a compiler failing on
/// `No space left on device` twenty minutes in.
fn room_to_build() -> anyhow::Result<()> {
    let target = target_dir();
    let held = dir_bytes(&target);
    let probe = target.ancestors().find(|p| p.exists()).unwrap_or(&target);
    let path = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes())?;
    // SAFETY: all-zero bytes are a valid `statvfs` (plain integers).
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and outlives the call, which writes
    // only into `st`.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Ok(()); // Cannot tell: let the build find out.
    }
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let need = TEST_BUILD_BYTES.saturating_sub(held);
    if free < need {
        bail!(
            "{} has {:.1} GiB free; building the tests needs about {:.1} GiB more \
             (target directory holds {:.1} GiB of {:.1}): free some space first",
            probe.display(),
            free as f64 / f64::from(1 << 30),
            need as f64 / f64::from(1 << 30),
            held as f64 / f64::from(1 << 30),
            TEST_BUILD_BYTES as f64 / f64::from(1 << 30),
        );
    }
    Ok(())
}

/// Bytes of the regular files under `dir` (0 when it does not exist),
/// without following symbolic links.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// `cargo build` of the release binary, for the host or (with more
/// arguments) another target.
fn release_build() -> Command {
    let mut c = cargo();
    c.args([
        "build",
        "--release",
        "-p",
        "schedtrace",
        "--bin",
        "schedtrace",
    ]);
    c
}

/// Build the release binary; its path.
pub fn build_release() -> anyhow::Result<std::path::PathBuf> {
    run(&mut release_build())?;
    Ok(target_dir().join("release/schedtrace"))
}

/// Formatting and clippy (the workspace's `[workspace.lints]`, warnings as
/// errors), before any test runs. Clippy covers every member and target but
/// the eBPF crate: it only builds for bpfel-unknown-none with the pinned
/// nightly, whose minimal profile has no clippy.
fn lint() -> anyhow::Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "schedtrace-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

/// Build the release binary and the root test binaries; the command that
/// runs the tests (`cargo test ... -- --test-threads=1 ARGS`), with
/// `extra` cargo flags before the `--`.
fn integration_test_cmd(extra: &[&str], args: &[String]) -> anyhow::Result<Command> {
    let bin = build_release()?;
    // What `dist` ships, for the test that runs it where nothing else is.
    let dist = dist::build()?;
    // Build the test binary unprivileged, then run it as root.
    // The `root-tests` profile: release without LTO (see Cargo.toml).
    let profile = ["--profile", "root-tests", "-p", "schedtrace-tests"];
    run(cargo().arg("test").args(profile).arg("--no-run"))?;
    let mut c = cargo();
    c.arg("test")
        .args(profile)
        .args(extra)
        .args(["--", "--test-threads=1"])
        .args(args)
        .env("SCHEDTRACE_BIN", &bin)
        .env("SCHEDTRACE_DIST_DEB", &dist.deb)
        .current_dir(root());
    if !is_root() {
        bail!("the integration tests load eBPF programs: run `sudo -E cargo xtask test`");
    }
    Ok(c)
}

fn integration_tests(args: &[String]) -> anyhow::Result<()> {
    run(&mut integration_test_cmd(&[], args)?)
}

/// The default members' tests: everything but the eBPF crate (built for
/// bpfel by tracer/build.rs) and the root-only tests.
fn unit_tests() -> anyhow::Result<()> {
    run(cargo().args(["test"]))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup { tests } => setup::setup(tests),
        Task::Run { args } => {
            setup::setup(false)?;
            let bin = build_release()?;
            let status = as_root(&bin, &args)
                .status()
                .context("running schedtrace")?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Task::Test => {
            setup::setup(true)?;
            room_to_build()?;
            lint()?;
            unit_tests()?;
            integration_tests(&[])
        }
        // The man page and completions (binary), the pprof code (library).
        Task::Gen => run(cargo()
            .args(["test", "-p", "schedtrace", "generated_"])
            .env("SCHEDTRACE_UPDATE_GENERATED", "1")),
        Task::IntegrationTest { args } => {
            setup::setup(true)?;
            integration_tests(&args)
        }
        Task::Soak(args) => soak::main(args),
        Task::Bench(args) => bench::main(args),
        Task::ReadmeImages { why_only } => images::main(why_only),
        Task::Dist => dist::main(),
    }
}
