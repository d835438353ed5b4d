//! Live capture: arms the kernel side for one process (`loader`, with the
//! task-struct offsets from [`btf`]), reads the ring buffer on a timer (the
//! kernel only wakes us when the buffer fills past a threshold, so the
//! reader does not preempt the threads it watches), puts events in
//! timestamp order (`reorder`) and hands every [`Record`] to a
//! [`Consumer`], until Ctrl-C, SIGTERM/SIGHUP, `--duration`, a consumer's
//! stop, or the target's exit (`signals` handles a second stop signal
//! while finishing). A command to trace is started by [`launch`].
//!
//! A [`Session`] runs in three steps: [`Session::start`] (check the target,
//! load and attach, write the header), [`Session::run`] (release a
//! launched command, read until a stop condition) and [`Session::finish`]
//! (detach, read what is left, write the end record).
//!
//! [`Record`]: crate::trace::Record
//! [`Consumer`]: crate::trace::consumer::Consumer

pub mod btf;
mod cgroup;
pub mod identity;
pub mod launch;
pub(crate) mod loader;
mod names;
pub(crate) mod reorder;
mod session;
pub(crate) mod signals;
mod sums;
pub(crate) mod symbolize;
mod targets;
mod thread_root;

use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::procfs;
use crate::trace::End;
use launch::{LaunchSpec, Launched};
pub use session::Session;

/// How the kernel side is armed and the ring buffer read.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub follow_children: bool,
    /// Trace wakeups (`sched_waking`); without them, switches carry the
    /// kernel's run-queue wait instead.
    pub wakeups: bool,
    pub duration: Option<Duration>,
    pub ring_bytes: u32,
    pub drain_interval: Duration,
    /// Record kernel and user stacks where target threads go to sleep
    /// (`--stacks`), symbolised at the end of the capture.
    pub stacks: bool,
    /// Record which other tasks held the CPUs target threads waited for.
    pub antagonists: bool,
    /// Record why target threads left the CPU (system call, I/O wait).
    pub wait_reasons: bool,
    /// `--kernel-sums`: keep per-thread sums in the kernel instead of
    /// writing a record per switch (no wakeups, no who ran instead, no
    /// wait reasons); the [`Outcome`] carries them.
    pub kernel_sums: bool,
    pub verbose: bool,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            follow_children: false,
            wakeups: true,
            duration: None,
            ring_bytes: schedtrace_common::DEFAULT_RING_BYTES,
            drain_interval: Duration::from_millis(20),
            stacks: false,
            antagonists: true,
            wait_reasons: true,
            kernel_sums: false,
            verbose: false,
        }
    }
}

/// What the trace's header says about how the target was started; the
/// capture itself does not use it.
#[derive(Clone, Debug, Default)]
pub struct TraceMeta {
    /// The command line, when schedtrace started the target itself.
    pub command: Option<Vec<String>>,
    /// CPUs the launched command was pinned to.
    pub pinned_cpus: Option<Vec<u32>>,
}

/// What a live capture traces.
pub enum Target {
    /// Running processes: those `--pid` names (repeatable) and those whose
    /// name matches the `--comm` glob when tracing starts. The first is the
    /// trace's first target, the rest its `also`. With `cgroup`, also
    /// every process in that cgroup v2 directory or below it, including
    /// those that enter it while tracing.
    Running {
        pids: Vec<u32>,
        comm: Option<String>,
        cgroup: Option<std::path::PathBuf>,
        /// `--all`: every task (the fields above are then empty).
        all: bool,
    },
    /// A command started for the trace: forked at once, held at a gate
    /// until the probes are armed.
    Launch(LaunchSpec),
}

impl Target {
    /// What [`Session::start`] takes, forking a command to launch first.
    /// Call it while the process has a single thread (before any async
    /// runtime starts).
    pub fn start(&self) -> anyhow::Result<(Selected, Option<Launched>)> {
        match self {
            Target::Running {
                pids,
                comm,
                cgroup,
                all,
            } => Ok((
                Selected {
                    pids: pids.clone(),
                    comm: comm.clone(),
                    cgroup: cgroup.clone(),
                    all: *all,
                },
                None,
            )),
            Target::Launch(spec) => {
                let l = launch::spawn(spec)?;
                Ok((
                    Selected {
                        pids: vec![l.pid],
                        comm: None,
                        cgroup: None,
                        all: false,
                    },
                    Some(l),
                ))
            }
        }
    }
}

/// The processes a capture is to trace: by PID, and by name (a glob
/// matched against each running process's name when tracing starts).
#[derive(Clone, Debug, Default)]
pub struct Selected {
    pub pids: Vec<u32>,
    pub comm: Option<String>,
    /// `--cgroup`: a cgroup v2 directory.
    pub cgroup: Option<std::path::PathBuf>,
    /// `--all`: every task but schedtrace's own.
    pub all: bool,
}

/// Why capture stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    Duration,
    Signal(&'static str),
    TargetExited,
    /// The user quit the live view.
    Quit,
}

impl StopReason {
    pub fn as_str(&self) -> String {
        match self {
            StopReason::Duration => "duration".into(),
            StopReason::Signal(s) => format!("signal {s}"),
            StopReason::TargetExited => "target-exited".into(),
            StopReason::Quit => "quit".into(),
        }
    }
}

/// How often a capture reports its [`Progress`](crate::trace::consumer::Progress).
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What a capture found when tracing started: the facts of the
/// `schedtrace: tracing ...` line.
#[derive(Clone, Debug)]
pub struct Started {
    pub pid: u32,
    /// The target's name (its main thread's).
    pub comm: String,
    /// Its PID in its own PID namespace, when not schedtrace's.
    pub ns_pid: Option<u32>,
    /// The further processes of a repeated `--pid`.
    pub also: Vec<crate::trace::TargetProcess>,
    /// `--cgroup`: the traced cgroup (`pid` is 0 when it held no process).
    pub cgroup: Option<crate::trace::TargetCgroup>,
    /// `--comm`: the pattern (`pid` is 0 when no process had the name yet).
    pub comm_pattern: Option<String>,
    /// `--all`: every task was traced.
    pub all: bool,
    /// The command line from [`TraceMeta`], when schedtrace started it.
    pub command: Option<Vec<String>>,
    /// Threads found when tracing started.
    pub threads: usize,
    pub ncpus: u32,
    pub duration: Option<Duration>,
}

/// How a capture ended.
pub struct Outcome {
    pub reason: StopReason,
    pub end: End,
    /// A second stop signal cut finishing short (the end is then
    /// incomplete; a CPU whose last events cannot be accounted for makes
    /// it incomplete too, without this).
    pub interrupted: bool,
    /// Exit status of a launched command.
    pub child_status: Option<std::process::ExitStatus>,
    /// `--kernel-sums`: the sums read from the kernel.
    pub kernel_sums: Option<crate::trace::KernelSums>,
}

/// Validate that `pid` is something we can trace.
pub(crate) fn check_target(pid: u32) -> anyhow::Result<procfs::Stat> {
    if pid == 0 {
        bail!("--pid 0 is not a process (PID 0 is the kernel's idle task)");
    }
    let st = match procfs::stat(pid) {
        Ok(st) => st,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("no process with PID {pid}")
        }
        Err(e) => return Err(e).context(format!("reading /proc/{pid}/stat")),
    };
    if st.is_kernel_thread() {
        bail!(
            "PID {pid} ({}) is a kernel thread; schedtrace traces user processes",
            st.comm
        );
    }
    // A leader that called pthread_exit is a zombie while its threads run:
    // the process is alive as long as one of them is.
    if (st.state == 'Z' || st.state == 'X') && !identity::has_live_thread(pid).unwrap_or(false) {
        bail!(
            "PID {pid} ({}) has already exited (it is a zombie)",
            st.comm
        );
    }
    Ok(st)
}
