//! Helpers for schedtrace's root-only integration tests: start the real
//! `schedtrace` binary (path in `SCHEDTRACE_BIN`, set by `cargo xtask
//! integration-test`) against real multi-threaded workloads, and read the
//! kernel's own accounting from /proc to compare with.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
pub mod cgroup;
pub mod chromium;
pub mod hostile;

pub use schedtrace::procfs::{SchedStat, ctxt_switches, schedstat, tids};

/// The schedtrace binary under test.
pub fn bin() -> PathBuf {
    let p = std::env::var_os("SCHEDTRACE_BIN")
        .map(PathBuf::from)
        .expect("SCHEDTRACE_BIN is not set: run these tests with `cargo xtask integration-test`");
    assert!(p.exists(), "{} does not exist", p.display());
    p
}

pub fn schedtrace() -> Command {
    Command::new(bin())
}

/// Fail clearly when not root: these tests load eBPF programs.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "integration tests must run as root (cargo xtask integration-test)"
    );
}

/// Poll `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The built-in example workload in gated mode: all threads exist and sleep
/// until [`Workload::go`], and stay alive (asleep) after [`Workload::wait_done`].
pub struct Workload {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub pid: u32,
}

impl Workload {
    pub fn start(seconds: f64, pool: usize, helpers: usize) -> anyhow::Result<Self> {
        Self::start_on(None, seconds, pool, helpers)
    }

    /// As [`Workload::start`], pinned to `cpus` (a `taskset` list) when given.
    pub fn start_on(
        cpus: Option<&str>,
        seconds: f64,
        pool: usize,
        helpers: usize,
    ) -> anyhow::Result<Self> {
        let mut cmd = match cpus {
            Some(list) => {
                let mut c = Command::new("taskset");
                c.args(["-c", list]).arg(bin());
                c
            }
            None => schedtrace(),
        };
        let child = cmd
            .args(["__workload", "--gated", "--seconds", &seconds.to_string()])
            .args([
                "--pool",
                &pool.to_string(),
                "--helpers",
                &helpers.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the workload")?;
        Self::gated(child, 1 + pool + helpers)
    }

    /// A gated workload started from `cmd` (the built-in one, or
    /// [`SHAPES_C`]): waits until its process has `threads` threads.
    pub fn spawn(mut cmd: Command, threads: usize) -> anyhow::Result<Self> {
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the workload")?;
        Self::gated(child, threads)
    }

    fn gated(mut child: Child, want: usize) -> anyhow::Result<Self> {
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        wait_for(Duration::from_secs(10), || {
            (tids(pid).ok()?.len() == want).then_some(())
        })
        .context("waiting for the workload's threads")?;
        Ok(Workload {
            child,
            stdin,
            stdout,
            pid,
        })
    }

    pub fn go(&mut self) -> anyhow::Result<()> {
        let s = self.stdin.as_mut().expect("stdin");
        s.write_all(b"go\n")?;
        s.flush()?;
        Ok(())
    }

    /// Wait for `done`; the PIDs of the child processes the workload says
    /// it keeps alive (parked) until [`Workload::finish`], if any.
    pub fn wait_done(&mut self) -> anyhow::Result<Vec<u32>> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let mut words = line.split_whitespace();
        if words.next() != Some("done") {
            bail!("workload said {line:?}");
        }
        words
            .map(|w| w.parse().with_context(|| format!("workload said {line:?}")))
            .collect()
    }

    /// Let the threads exit and reap the process.
    pub fn finish(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let st = self.child.wait()?;
        if !st.success() {
            bail!("workload exited with {st}");
        }
        Ok(())
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The kernel's counters for every thread of `pid`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub schedstat: BTreeMap<u32, SchedStat>,
    pub switches: BTreeMap<u32, (u64, u64)>,
}

pub fn counters(pid: u32) -> anyhow::Result<Counters> {
    counters_of(&[pid])
}

/// The kernel's counters for every thread of every process in `pids`.
pub fn counters_of(pids: &[u32]) -> anyhow::Result<Counters> {
    let mut c = Counters::default();
    for &pid in pids {
        for tid in tids(pid)? {
            c.schedstat.insert(tid, schedstat(pid, tid)?);
            c.switches.insert(tid, ctxt_switches(pid, tid)?);
        }
    }
    Ok(c)
}

/// The counters of `pid`'s threads once every one of them is asleep and
/// stays so: all in state `S` and two reads 20 ms apart equal. A thread
/// that has just said "done" (or just reached a gate) may still be on its
/// CPU on the way to its wait, and `schedstat` counts a running thread's
/// slice so far; a thread still queued shows `S` only after it ran. Once
/// every thread of the gated workload is parked, nothing of it changes any
/// more, so these are the values the kernel holds at any later instant
/// until the workload is released: what a tracer that stops then must see.
pub fn settled_counters(pid: u32) -> anyhow::Result<Counters> {
    settled_counters_of(&[pid])
}

/// [`settled_counters`] for every thread of every process in `pids` (a
/// workload and the children it keeps parked).
pub fn settled_counters_of(pids: &[u32]) -> anyhow::Result<Counters> {
    let asleep = || -> anyhow::Result<bool> {
        for &pid in pids {
            for tid in tids(pid)? {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))?;
                // The state follows the ")" that ends the command name.
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.trim_start().chars().next());
                if state != Some('S') {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    };
    let start = Instant::now();
    let mut last = counters_of(pids)?;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = counters_of(pids)?;
        if now == last && asleep()? {
            return Ok(now);
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!("the threads of {pids:?} did not settle in 10 s");
        }
        last = now;
    }
}

/// Check a JSON summary's per-thread totals against the kernel's counters
/// taken while every thread was parked before and after the traced run
/// (see [`settled_counters`]): on-CPU time equal to the growth of
/// schedstat's first field, runnable time to that of its second (the
/// run-queue wait; with the sleep the kernel counted as waiting, which the
/// summary reports apart as `run_delay_asleep_ns`), voluntary and involuntary switches to that of
/// `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches`, all to the
/// nanosecond and to the switch. The threads are parked outside
/// [before, after] and schedtrace is attached before `before` and stopped
/// after `after`, so the counters the switch records carry must add up to
/// exactly that growth, whatever the event stream lacked (a switch-in the
/// kernel did not report is put back from the counters of the next
/// switch-out) and whatever the hypervisor stole. A thread that is not in
/// `before` was created during the run: the kernel starts all four
/// counters of a new task at zero (`__sched_fork`, `sched_fork` clearing
/// `sched_info`, `copy_mm`), so its whole counters are the growth. The
/// summary's threads must be exactly those of `after`.
pub fn assert_totals_match_kernel(
    summary: &serde_json::Value,
    before: &Counters,
    after: &Counters,
) {
    assert_threads_are(summary, after);
    assert_threads_match_kernel(summary, before, after);
}

/// The summary's threads are exactly those the kernel listed in `after`.
pub fn assert_threads_are(summary: &serde_json::Value, after: &Counters) {
    assert_eq!(
        threads_by_tid(summary).keys().copied().collect::<Vec<_>>(),
        after.schedstat.keys().copied().collect::<Vec<_>>(),
        "the summary's threads are exactly the kernel's"
    );
}

/// As [`assert_totals_match_kernel`], for the threads of `after` only: the
/// summary may list others too (a trace of every task).
pub fn assert_threads_match_kernel(
    summary: &serde_json::Value,
    before: &Counters,
    after: &Counters,
) {
    let threads = threads_by_tid(summary);
    for tid in after.schedstat.keys() {
        let t = threads
            .get(tid)
            .unwrap_or_else(|| panic!("thread {tid} is not in the summary"));
        let (b, a) = (
            before.schedstat.get(tid).copied().unwrap_or_default(),
            after.schedstat[tid],
        );
        let (bs, as_) = (
            before.switches.get(tid).copied().unwrap_or_default(),
            after.switches[tid],
        );
        let on_kernel = a.on_cpu_ns - b.on_cpu_ns;
        let wait_kernel = a.wait_ns - b.wait_ns;
        let (vol, invol) = (as_.0 - bs.0, as_.1 - bs.1);
        let on_traced = t["on_cpu_ns"].as_u64().expect("on_cpu_ns");
        let runnable = t["states"]["runnable_ns"].as_u64().expect("runnable_ns");
        // Sleep the kernel counted as waiting (a sleeping task it queued
        // again when it moved it to another CPU; the wakeup found that
        // wait under way), reported beside the runnable time: together
        // they are the growth of `run_delay`.
        let asleep = t["run_delay_asleep_ns"]
            .as_u64()
            .expect("run_delay_asleep_ns");
        let wait_traced = runnable + asleep;
        let tv = t["voluntary_switches"]
            .as_u64()
            .expect("voluntary_switches");
        let ti = t["involuntary_switches"]
            .as_u64()
            .expect("involuntary_switches");
        // What a mismatch needs to be told apart: runs the stream lacked
        // a switch of (inferred, unplaced), waits counted per switch-in.
        eprintln!(
            "tid {tid} {}{}: on-cpu traced {on_traced} kernel {on_kernel} (diff {}); \
             wait traced {wait_traced} kernel {wait_kernel} (diff {}); {} anomalies; \
             vol {tv}/{vol} invol {ti}/{invol}; inferred runs {}, unplaced runs {}, \
             waits {} totalling {} ns, {asleep} ns of sleep in the kernel's wait",
            t["comm"],
            if before.schedstat.contains_key(tid) {
                ""
            } else {
                " (new)"
            },
            on_traced as i64 - on_kernel as i64,
            wait_traced as i64 - wait_kernel as i64,
            t["anomalies"],
            t["inferred_runs"],
            t["unplaced_runs"],
            t["wait"]["count"],
            t["wait"]["total_ns"],
        );
        assert_eq!(
            on_traced, on_kernel,
            "tid {tid}: on-CPU traced vs schedstat"
        );
        assert_eq!(
            wait_traced, wait_kernel,
            "tid {tid}: run-queue wait traced vs schedstat"
        );
        assert_eq!(
            (tv, ti),
            (vol, invol),
            "tid {tid}: voluntary, involuntary switches"
        );
    }
}

/// The workload shapes of the fidelity tests (`shapes MODE SECONDS`, a
/// gated workload: see the comment at its top), compiled with [`hostile::cc`].
pub const SHAPES_C: &str = include_str!("shapes.c");

/// Run `cmd` at nice `n` (set in the child before exec; root may lower it).
pub fn set_nice(cmd: &mut Command, n: i32) {
    // SAFETY: setpriority on the child itself, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            if libc::setpriority(libc::PRIO_PROCESS, 0, n) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
}

/// Set the nice value of every thread of process `pid` (a nice value is
/// per thread; threads it starts later inherit their creator's).
pub fn renice_threads(pid: u32, n: i32) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Some(tid) = entry?
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        // SAFETY: plain system call on a thread of our own child.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, n) } != 0 {
            let e = std::io::Error::last_os_error();
            // A thread that has just exited is gone.
            if e.raw_os_error() == Some(libc::ESRCH) {
                continue;
            }
            return Err(e).context(format!("renicing thread {tid} of {pid}"));
        }
        // As the kernel has it now (`stat` field 19).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))?;
        let after_comm = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        let nice = after_comm
            .split(' ')
            .nth(16)
            .and_then(|v| v.parse::<i32>().ok());
        anyhow::ensure!(
            nice == Some(n),
            "thread {tid} of {pid} at nice {nice:?}, not {n}"
        );
    }
    Ok(())
}

/// Foreign load while it lives: twice as many spinning threads as CPUs
/// and a process that creates and joins short-lived threads without end,
/// all at nice 0, in processes of their own (killed when dropped).
pub struct ForeignLoad(Vec<Child>);

impl ForeignLoad {
    pub fn start() -> Self {
        let ncpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let spinners = hostile::cc("spinners", hostile::SPINNERS_C);
        let churn = hostile::cc("churn", hostile::CHURN_C);
        let mut children = Vec::new();
        for mut cmd in [
            {
                let mut c = Command::new(spinners);
                c.args([&(2 * ncpus).to_string(), "600"]);
                c
            },
            {
                let mut c = Command::new(churn);
                c.args(["1000000000", "16"]);
                c
            },
        ] {
            set_nice(&mut cmd, 0);
            // Killed with the test's thread however the test ends (a test
            // binary killed midway would leave it loading the machine).
            // SAFETY: prctl is async-signal-safe; nothing else runs here.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            children.push(cmd.spawn().expect("starting the foreign load"));
        }
        ForeignLoad(children)
    }
}

impl Drop for ForeignLoad {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running `schedtrace` whose "tracing" line has been seen.
pub struct Tracer {
    pub child: Child,
    pub stderr_head: String,
    /// Collects what schedtrace writes on stderr after the tracing line
    /// (also echoed to the test's stderr); see [`Tracer::wait_stderr`].
    stderr_rest: std::thread::JoinHandle<String>,
}

impl Tracer {
    /// Start `schedtrace ARGS` and wait until it says it is tracing
    /// (so ARGS must not include `--quiet`).
    pub fn start(args: &[&str]) -> anyhow::Result<Self> {
        assert!(!args.contains(&"-q"), "the tracing line is needed");
        let mut cmd = schedtrace();
        cmd.args(args);
        Self::start_cmd(cmd)
    }

    /// As [`Tracer::start`], for a prepared `schedtrace` command (e.g. with
    /// extra environment variables).
    ///
    /// `SCHEDTRACE_IT_NICE` (set by `cargo xtask soak --load`) runs the
    /// capture at that nice value: every thread of schedtrace is reniced
    /// once it says it is tracing. What is to be starved is the reader;
    /// the start-up before it (BTF, loading and verifying the programs,
    /// about 0.3 s of CPU) took 107 s at nice 19 behind the soak's load,
    /// and a run of the suite hours. (Only here: a command launched by
    /// schedtrace would inherit it.)
    pub fn start_cmd(cmd: Command) -> anyhow::Result<Self> {
        Self::start_niced(cmd, None)
    }

    /// As [`Tracer::start_cmd`], reniced to `nice` (every thread) once it
    /// is tracing; `None`: as `SCHEDTRACE_IT_NICE` says, if set.
    pub fn start_niced(mut cmd: Command, nice: Option<i32>) -> anyhow::Result<Self> {
        let nice = nice.or_else(|| {
            std::env::var("SCHEDTRACE_IT_NICE")
                .ok()
                .and_then(|n| n.parse().ok())
        });
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting schedtrace")?;
        let mut err = BufReader::new(child.stderr.take().expect("piped"));
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if err.read_line(&mut line)? == 0 {
                let out = child.wait_with_output()?;
                bail!(
                    "schedtrace exited ({}) before tracing: {head}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout)
                );
            }
            head.push_str(&line);
            if line.starts_with("schedtrace: tracing") {
                break;
            }
        }
        if let Some(n) = nice {
            renice_threads(child.id(), n)?;
        }
        // Keep draining stderr so schedtrace never blocks on it.
        let rest = std::thread::spawn(move || {
            let mut all = String::new();
            let mut sink = String::new();
            while err.read_line(&mut sink).unwrap_or(0) > 0 {
                eprint!("{sink}");
                all.push_str(&sink);
                sink.clear();
            }
            all
        });
        Ok(Tracer {
            child,
            stderr_head: head,
            stderr_rest: rest,
        })
    }

    /// SIGINT, then wait; returns (exit status, stdout).
    pub fn stop(self) -> anyhow::Result<(std::process::ExitStatus, String)> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.wait()
    }

    pub fn wait(self) -> anyhow::Result<(std::process::ExitStatus, String)> {
        let out = self.child.wait_with_output()?;
        Ok((out.status, String::from_utf8(out.stdout)?))
    }

    /// Wait; returns (exit status, stdout, stderr after the tracing line).
    pub fn wait_stderr(self) -> anyhow::Result<(std::process::ExitStatus, String, String)> {
        let out = self.child.wait_with_output()?;
        let rest = self
            .stderr_rest
            .join()
            .map_err(|_| anyhow::anyhow!("the stderr reader panicked"))?;
        Ok((out.status, String::from_utf8(out.stdout)?, rest))
    }
}

/// The sum of a JSON summary's `lost_per_cpu`: every loss placed on its
/// CPU makes it equal `lost_events`.
pub fn lost_per_cpu_total(summary: &serde_json::Value) -> u64 {
    summary["lost_per_cpu"]
        .as_array()
        .expect("lost_per_cpu array")
        .iter()
        .map(|n| n.as_u64().expect("a count"))
        .sum()
}

/// Thread entries of a JSON summary, by TID.
pub fn threads_by_tid(summary: &serde_json::Value) -> BTreeMap<u32, serde_json::Value> {
    summary["threads"]
        .as_array()
        .expect("threads array")
        .iter()
        .map(|t| (t["tid"].as_u64().expect("tid") as u32, t.clone()))
        .collect()
}

/// IDs of the BPF programs loaded now (from `bpftool prog show`).
pub fn loaded_prog_ids() -> anyhow::Result<std::collections::BTreeSet<u64>> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .context("running bpftool")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v.as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_u64()).collect())
        .unwrap_or_default())
}

/// Run `schedtrace ARGS` to completion; returns (status, stdout, stderr).
pub fn run_schedtrace(args: &[&str]) -> anyhow::Result<(std::process::ExitStatus, String, String)> {
    let out = schedtrace().args(args).output()?;
    Ok((
        out.status,
        String::from_utf8(out.stdout)?,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The JSON summary at the end of `stdout` (a launched command may print
/// before it).
pub fn summary_from(stdout: &str) -> anyhow::Result<serde_json::Value> {
    let start = if stdout.starts_with('{') {
        0
    } else {
        stdout
            .find("\n{")
            .map(|i| i + 1)
            .context("no JSON summary in the output")?
    };
    Ok(serde_json::from_str(&stdout[start..])?)
}

pub use schedtrace::testing::TempDir;

/// A fresh directory under the system temp dir, removed when the test
/// passes (see [`TempDir`]).
pub fn tempdir() -> TempDir {
    TempDir::new_in(&std::env::temp_dir(), "schedtrace-it")
}

/// A directory the tests of one test binary share (a fixture kept in a
/// static, which is never dropped, so it cannot be a [`TempDir`]):
/// `BASE/NAME`, emptied the first time this process asks for it and left
/// for the next run to empty, so runs never pile up. Pass the test
/// binary's `env!("CARGO_TARGET_TMPDIR")` as `base` (each worktree has its
/// own target directory).
pub fn fixture_dir(base: &str, name: &str) -> PathBuf {
    static EMPTIED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let d = std::path::Path::new(base).join(name);
    let mut emptied = EMPTIED.lock().unwrap_or_else(|e| e.into_inner());
    if !emptied.contains(&d) {
        match std::fs::remove_dir_all(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("emptying {}: {e}", d.display()),
        }
        emptied.push(d.clone());
    }
    std::fs::create_dir_all(&d).expect("fixture dir");
    d
}

/// What [`run_with_maxrss`] saw.
pub struct MaxRss {
    pub status: std::process::ExitStatus,
    /// Peak RSS of the command (and of anything it waited for), KiB.
    pub kib: u64,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Run a command to completion; its status, peak RSS, stdout and stderr.
///
/// The command is forked by a small C launcher ([`hostile::MAXRSS_C`]),
/// never by this process: `ru_maxrss` is kept per process across `exec`,
/// and `exec` folds in the high-water mark of the address space it
/// replaces. Started from here, by `vfork` or `fork`, that address space is
/// this test process's (or a copy of it), so the figure would be the peak
/// of whatever earlier tests in this process read into memory; two
/// robustness tests failed that way behind a test that had read a large
/// summary. Forked by the launcher, the replaced address space is the
/// launcher's (a few hundred KiB), below any schedtrace figure.
pub fn run_with_maxrss(cmd: &mut Command) -> anyhow::Result<MaxRss> {
    use std::io::Read as _;
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let launcher = hostile::cc("maxrss", hostile::MAXRSS_C);
    let dir = std::env::temp_dir().join("schedtrace-it-maxrss");
    std::fs::create_dir_all(&dir)?;
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = dir.join(format!("{}-{n}", std::process::id()));
    let mut run = Command::new(launcher);
    run.arg(&out).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => run.env(k, v),
            None => run.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        run.current_dir(d);
    }
    let mut child = run.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    fn read_all(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    }
    let stdout = read_all(child.stdout.take().expect("piped"));
    let stderr = read_all(child.stderr.take().expect("piped"));
    let status = child.wait()?;
    let stdout = stdout
        .join()
        .map_err(|_| anyhow::anyhow!("the stdout reader panicked"))?;
    let stderr = stderr
        .join()
        .map_err(|_| anyhow::anyhow!("the stderr reader panicked"))?;
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let mut kib = String::new();
    std::fs::File::open(&out)
        .and_then(|mut f| f.read_to_string(&mut kib))
        .with_context(|| format!("the launcher wrote no peak RSS ({status}): {stderr}"))?;
    std::fs::remove_file(&out)?;
    Ok(MaxRss {
        status,
        kib: kib.trim().parse().context("the launcher's peak RSS")?,
        stdout,
        stderr,
    })
}

/// The KiB of write buffers a `--verbose` run says its trace file used.
pub fn write_buffers_kib(stderr: &str) -> anyhow::Result<u64> {
    logged_kib(stderr, "write buffers: ")
}

/// The KiB a `--verbose` line reports after `what` (e.g. `held events: `).
pub fn logged_kib(stderr: &str, what: &str) -> anyhow::Result<u64> {
    stderr
        .lines()
        .find_map(|l| l.split(what).nth(1))
        .and_then(|v| v.strip_suffix(" KiB")?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {what:?} line in {stderr}"))
}
