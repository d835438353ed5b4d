//! `cargo xtask soak N [FILTER...]`: the root integration tests N times in
//! a row, to find tests that flake. The first run is what `cargo xtask
//! test` does (setup, fmt, clippy, unit tests, then the root tests; with a
//! filter, only setup and the root tests); later runs repeat the root
//! tests only. Every failure is printed as it happens (test, run, its
//! message), each run's whole output is kept in `target/soak/run-K.log`,
//! and a tally ends it. Exits nonzero if any run failed.
//!
//! `--load` runs the root tests (built first) beside foreign load: twice
//! as many busy shell loops as CPUs and a loop starting short-lived
//! processes without end, all at nice 0, while every schedtrace the tests
//! attach with `--pid` captures at nice 19 (`SCHEDTRACE_IT_NICE`, read by
//! the tests' `Tracer`, which renices it once it is tracing).

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::Context as _;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// How many times to run the root tests.
    runs: u32,
    /// Run beside foreign load, with the tests' tracers at nice 19.
    #[arg(long)]
    load: bool,
    /// Passed to the test binaries (e.g. a test name filter).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// One failed test of one run.
struct Failure {
    run: u32,
    test: String,
    message: String,
}

/// The failed tests in libtest output (the names listed under its last
/// "failures:"), each with what it printed when it failed: its panic
/// message or returned error ("thread 'NAME' panicked at" and the lines
/// after it, or "Error: ..."), not the progress it logged before. Works
/// with captured output (the "---- NAME stdout ----" sections) and with
/// `--nocapture` (messages inline, after the "test NAME ..." line).
fn failures(run: u32, output: &str) -> Vec<Failure> {
    let mut names: Vec<String> = Vec::new();
    let mut messages: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_panic = false;
    let mut in_list = false;
    for l in output.lines() {
        if in_list {
            if let Some(name) = l.strip_prefix("    ") {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
                continue;
            }
            in_list = false;
        }
        if l == "failures:" {
            in_list = true;
            in_panic = false;
            continue;
        }
        if let Some(name) = l
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            current = Some(name.to_string());
            in_panic = false;
            continue;
        }
        let mut l = l;
        if let Some(rest) = l.strip_prefix("test ")
            && let Some((name, after)) = rest.split_once(" ... ")
        {
            current = Some(name.to_string());
            in_panic = false;
            // With --nocapture the test's first line follows on this one.
            l = after;
        }
        // "thread 'NAME' panicked at" (recent Rust: "thread 'NAME' (TID) panicked at").
        if let Some(rest) = l.strip_prefix("thread '")
            && let Some((name, tail)) = rest.split_once('\'')
            && tail.contains("panicked at")
        {
            current = Some(name.to_string());
            in_panic = true;
            messages
                .entry(name.to_string())
                .or_default()
                .push(l.to_string());
            continue;
        }
        let Some(name) = &current else { continue };
        if l.starts_with("Error: ") {
            messages
                .entry(name.clone())
                .or_default()
                .push(l.to_string());
        } else if in_panic {
            if l.is_empty() || l.starts_with("note: ") || l.starts_with("stack backtrace:") {
                in_panic = false;
            } else {
                messages
                    .entry(name.clone())
                    .or_default()
                    .push(l.to_string());
            }
        }
    }
    let mut found: Vec<Failure> = names
        .into_iter()
        .map(|test| Failure {
            run,
            message: messages.remove(&test).unwrap_or_default().join("\n"),
            test,
        })
        .collect();
    // A test binary killed by a signal (a crash, an abort) lists no
    // failures: say which.
    for line in output.lines() {
        if line.contains("process didn't exit successfully") && line.contains("signal: ") {
            found.push(Failure {
                run,
                test: "(test binary)".into(),
                message: line.to_string(),
            });
        }
    }
    found
}

/// Foreign load for `--load`, killed when dropped.
struct Load(Vec<Child>);

impl Load {
    fn start() -> anyhow::Result<Self> {
        let ncpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut scripts = vec!["while :; do :; done"; 2 * ncpus];
        scripts.push("while :; do /bin/true; done");
        let mut children = Vec::new();
        for s in scripts {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", s]).stdin(Stdio::null());
            // Killed with the soak, however it ends: a loop left behind
            // keeps loading the machine (and holding whatever lock the
            // soak was started under).
            // SAFETY: prctl is async-signal-safe; nothing else runs here.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            children.push(cmd.spawn().context("starting the load")?);
        }
        Ok(Load(children))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn main(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs > 0, "soak needs at least one run");
    crate::setup::setup(true)?;
    if args.args.is_empty() {
        crate::lint()?;
        crate::unit_tests()?;
    }
    let logs = crate::target_dir().join("soak");
    std::fs::create_dir_all(&logs)?;
    // Built before the load starts: beside it, a build's jobs (one per
    // CPU) share the machine with twice as many busy loops and get a third
    // of it. Every binary runs even after one fails.
    let mut cmd = crate::integration_test_cmd(&["--no-fail-fast"], &args.args)?;
    if args.load {
        cmd.env("SCHEDTRACE_IT_NICE", "19");
    }
    let _load = args.load.then(Load::start).transpose()?;
    let mut all = Vec::new();
    let mut failed_runs = 0;
    let started = Instant::now();
    for run in 1..=args.runs {
        let t = Instant::now();
        eprintln!("xtask soak: run {run} of {}", args.runs);
        let out = cmd.output().context("running the root tests")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let log = logs.join(format!("run-{run}.log"));
        std::fs::write(&log, &text)?;
        let mut found = failures(run, &text);
        if !out.status.success() && found.is_empty() {
            found.push(Failure {
                run,
                test: "(cargo test)".into(),
                message: format!("exited with {}", out.status),
            });
        }
        let passed: u32 = text
            .lines()
            .filter_map(|l| l.strip_prefix("test result: "))
            .filter_map(|l| {
                l.split("; ")
                    .next()?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<u32>()
                    .ok()
            })
            .sum();
        eprintln!(
            "xtask soak: run {run}: {} passed, {} failed in {:.0} s ({})",
            passed,
            found.len(),
            t.elapsed().as_secs_f64(),
            log.display()
        );
        for f in &found {
            eprintln!("FAILED {} (run {}):\n{}\n", f.test, f.run, f.message);
        }
        if !found.is_empty() {
            failed_runs += 1;
        }
        all.extend(found);
    }
    let mut by_test: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for f in &all {
        by_test.entry(&f.test).or_default().push(f.run);
    }
    eprintln!(
        "xtask soak: {} runs{} in {:.0} s: {} green, {} with failures ({} failures)",
        args.runs,
        if args.load { " under load" } else { "" },
        started.elapsed().as_secs_f64(),
        args.runs - failed_runs,
        failed_runs,
        all.len()
    );
    for (test, runs) in &by_test {
        eprintln!("  {test}: failed in runs {runs:?}");
    }
    if failed_runs > 0 {
        anyhow::bail!("{failed_runs} of {} runs failed", args.runs);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_read_from_libtest_output() {
        let out = "\
running 2 tests
test a ... ok
test b ... FAILED

failures:

---- b stdout ----
tid 1: on-cpu traced 5 kernel 5
thread 'b' panicked at tests/tests/x.rs:10:5:
assertion `left == right` failed: tid 7: on-CPU
  left: 1
 right: 2
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace

---- c stdout ----
Error: the threads of [5] did not settle in 10 s

failures:
    b
    c

test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out
";
        let f = failures(3, out);
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].test.as_str(), f[0].run), ("b", 3));
        assert_eq!(
            f[0].message,
            "thread 'b' panicked at tests/tests/x.rs:10:5:\n\
             assertion `left == right` failed: tid 7: on-CPU\n  left: 1\n right: 2"
        );
        assert_eq!(f[1].test, "c");
        assert_eq!(
            f[1].message,
            "Error: the threads of [5] did not settle in 10 s"
        );
    }

    #[test]
    fn failures_are_read_from_nocapture_output() {
        let out = "\
running 2 tests
test a ... tid 1: on-cpu traced 5 kernel 5
ok
test b ... tid 2: on-cpu traced 5 kernel 6
thread 'b' (123) panicked at tests/tests/x.rs:10:5:
tid 2: on-CPU
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
FAILED
test c ... Error: did not settle
FAILED

failures:

failures:
    b
    c

test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out
";
        let f = failures(1, out);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].test, "b");
        assert_eq!(
            f[0].message,
            "thread 'b' (123) panicked at tests/tests/x.rs:10:5:\ntid 2: on-CPU"
        );
        assert_eq!(
            (f[1].test.as_str(), f[1].message.as_str()),
            ("c", "Error: did not settle")
        );
    }
}
