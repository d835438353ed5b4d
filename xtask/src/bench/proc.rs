//! Running one measured process: its exit, wall time, resource usage from
//! `wait4`, and what `/proc` says about it after it exited but before it was
//! reaped (`waitid(WNOWAIT)`), which separates a tracer's own CPU time and
//! context switches from those of the workload it launched and reaped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Resource usage in the units the tables use.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Usage {
    pub user_s: f64,
    pub sys_s: f64,
    pub nvcsw: u64,
    pub nivcsw: u64,
    pub maxrss_kb: u64,
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 * 1e-6
}

impl Usage {
    pub(super) fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }

    fn from_rusage(r: &libc::rusage) -> Usage {
        Usage {
            user_s: tv(r.ru_utime),
            sys_s: tv(r.ru_stime),
            nvcsw: r.ru_nvcsw as u64,
            nivcsw: r.ru_nivcsw as u64,
            maxrss_kb: r.ru_maxrss as u64,
        }
    }

    /// `self` without `other`'s share (times and switch counts; the peak
    /// RSS cannot be subtracted and stays `self`'s).
    pub(super) fn minus(&self, other: &Usage) -> Usage {
        Usage {
            user_s: (self.user_s - other.user_s).max(0.0),
            sys_s: (self.sys_s - other.sys_s).max(0.0),
            nvcsw: self.nvcsw.saturating_sub(other.nvcsw),
            nivcsw: self.nivcsw.saturating_sub(other.nivcsw),
            maxrss_kb: self.maxrss_kb,
        }
    }

    /// `user sys nvcsw nivcsw maxrss_kb` on one line (the wrapper's file).
    pub(super) fn to_line(self) -> String {
        format!(
            "{} {} {} {} {}\n",
            self.user_s, self.sys_s, self.nvcsw, self.nivcsw, self.maxrss_kb
        )
    }

    pub(super) fn from_line(s: &str) -> Option<Usage> {
        let v: Vec<&str> = s.split_whitespace().collect();
        if v.len() != 5 {
            return None;
        }
        Some(Usage {
            user_s: v[0].parse().ok()?,
            sys_s: v[1].parse().ok()?,
            nvcsw: v[2].parse().ok()?,
            nivcsw: v[3].parse().ok()?,
            maxrss_kb: v[4].parse().ok()?,
        })
    }
}

/// A process's own figures, read from `/proc` after it exited and before it
/// was reaped: its children's usage is not mixed in.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Own {
    /// Whole thread group, clock-tick resolution.
    pub user_s: f64,
    pub sys_s: f64,
    /// The leader thread's on-CPU nanoseconds (`schedstat`): exact when the
    /// process is single-threaded.
    pub leader_on_cpu_ns: u64,
    /// The leader thread's context switches.
    pub leader_nvcsw: u64,
    pub leader_nivcsw: u64,
}

/// Everything measured about one finished process.
#[derive(Debug)]
pub(super) struct Finished {
    /// Exit code, or 128 + signal.
    pub exit: i32,
    pub wall: Duration,
    /// From `wait4`: the process plus every child it reaped.
    pub usage: Usage,
    /// Its own share, if `/proc` could be read before reaping.
    pub own: Option<Own>,
    /// Peak `VmHWM` seen while polling (kB): the process alone.
    pub hwm_kb: u64,
    /// Most threads seen while polling.
    pub max_threads: u64,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The process's own CPU seconds: schedstat when it had one thread
    /// (nanosecond resolution), else the tick-resolution group total.
    pub(super) fn own_cpu_s(&self) -> Option<f64> {
        let o = self.own?;
        Some(if self.max_threads <= 1 && o.leader_on_cpu_ns > 0 {
            o.leader_on_cpu_ns as f64 * 1e-9
        } else {
            o.user_s + o.sys_s
        })
    }

    /// `usage` without the process's own share: what its reaped children
    /// (the launched workload) used. Exact for a single-threaded process.
    /// With more threads (schedtrace's file writer), the CPU time is the
    /// group's at clock-tick resolution, and only the leader's context
    /// switches can be subtracted: /proc keeps no count for threads that
    /// have exited, so the writer's (a few hundred per run, nearly all
    /// voluntary) stay in the workload's figure.
    pub(super) fn children_usage(&self) -> Option<Usage> {
        let o = self.own?;
        let cpu = self.own_cpu_s()?;
        let own_user = if o.user_s + o.sys_s > 0.0 {
            cpu * o.user_s / (o.user_s + o.sys_s)
        } else {
            0.0
        };
        Some(self.usage.minus(&Usage {
            user_s: own_user,
            sys_s: cpu - own_user,
            nvcsw: o.leader_nvcsw,
            nivcsw: o.leader_nivcsw,
            maxrss_kb: 0,
        }))
    }
}

/// A started process, polled until it exits.
pub(super) struct Running {
    pid: i32,
    started: Instant,
    out: PathBuf,
    err: PathBuf,
    hwm_kb: u64,
    max_threads: u64,
}

/// Start `cmd` with stdout and stderr going to files.
pub(super) fn spawn(cmd: &mut Command, out: &Path, err: &Path) -> anyhow::Result<Running> {
    let o = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let e = std::fs::File::create(err).with_context(|| format!("creating {}", err.display()))?;
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(o)
        .stderr(e)
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    // The Child handle is dropped without waiting: we reap with wait4.
    let pid = child.id() as i32;
    drop(child);
    Ok(Running {
        pid,
        started,
        out: out.to_path_buf(),
        err: err.to_path_buf(),
        hwm_kb: 0,
        max_threads: 0,
    })
}

fn status_field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn ticks_per_s() -> f64 {
    // SAFETY: plain sysconf query.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn read_own(pid: i32) -> Option<Own> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which ends at the last ')': state is
    // field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = ticks_per_s();
    let user_s = f.get(11)?.parse::<f64>().ok()? / tick;
    let sys_s = f.get(12)?.parse::<f64>().ok()? / tick;
    let leader_on_cpu_ns = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    Some(Own {
        user_s,
        sys_s,
        leader_on_cpu_ns,
        leader_nvcsw: status_field(&status, "voluntary_ctxt_switches:").unwrap_or(0),
        leader_nivcsw: status_field(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0),
    })
}

impl Running {
    pub(super) fn pid(&self) -> i32 {
        self.pid
    }

    /// Poll once: sample the peak RSS; true once the process has exited
    /// (it stays a zombie until [`Running::wait`]).
    pub(super) fn poll(&mut self) -> bool {
        // SAFETY: zeroed siginfo is a valid out-parameter.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child; WNOWAIT leaves it reapable.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            )
        };
        // SAFETY: si_pid is valid for SIGCHLD-style siginfo from waitid.
        if r == 0 && unsafe { info.si_pid() } != 0 {
            return true;
        }
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) {
            if let Some(h) = status_field(&s, "VmHWM:") {
                self.hwm_kb = self.hwm_kb.max(h);
            }
            if let Some(t) = status_field(&s, "Threads:") {
                self.max_threads = self.max_threads.max(t);
            }
        }
        r != 0 // waitid failed: not our child any more; treat as gone
    }

    pub(super) fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    pub(super) fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Wait until `pred(stdout, stderr)` holds, polling; false on exit or timeout.
    pub(super) fn wait_for_output(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str, &str) -> bool,
    ) -> bool {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if pred(&self.stdout_text(), &self.stderr_text()) {
                return true;
            }
            if self.poll() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    pub(super) fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling our own, not yet reaped child by PID.
        unsafe {
            libc::kill(self.pid, sig);
        }
    }

    /// Poll until exit (SIGINT at `timeout`, SIGKILL 5 s later), read its
    /// own figures from `/proc`, then reap it.
    pub(super) fn wait(mut self, timeout: Duration) -> anyhow::Result<Finished> {
        let mut interrupted = None::<Instant>;
        while !self.poll() {
            if self.started.elapsed() > timeout {
                match interrupted {
                    None => {
                        eprintln!("bench: pid {} ran past {timeout:?}; SIGINT", self.pid);
                        self.signal(libc::SIGINT);
                        interrupted = Some(Instant::now());
                    }
                    Some(t) if t.elapsed() > Duration::from_secs(5) => {
                        self.signal(libc::SIGKILL);
                    }
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let wall = self.started.elapsed();
        let own = read_own(self.pid);
        let mut status = 0;
        // SAFETY: zeroed rusage is a valid out-parameter.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: reaping our own child.
        let r = unsafe { libc::wait4(self.pid, &mut status, 0, &mut ru) };
        if r != self.pid {
            bail!(
                "wait4({}) failed: {}",
                self.pid,
                std::io::Error::last_os_error()
            );
        }
        let exit = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status)
        } else {
            -1
        };
        Ok(Finished {
            exit,
            wall,
            usage: Usage::from_rusage(&ru),
            own,
            hwm_kb: self.hwm_kb,
            max_threads: self.max_threads,
            stdout: self.stdout_text(),
            stderr: self.stderr_text(),
        })
    }
}

/// The wrapper's side (`xtask bench --child-rusage FILE -- CMD`): run CMD
/// with inherited stdio, write its rusage (RUSAGE_CHILDREN) to FILE, and
/// exit with its status. Peers that launch a command run this wrapper, so
/// the workload's own usage is known exactly.
pub(super) fn child_main(out: &Path, cmd: &[String]) -> anyhow::Result<()> {
    let Some((prog, args)) = cmd.split_first() else {
        bail!("--child-rusage needs a command after --");
    };
    let status = Command::new(prog)
        .args(args)
        .status()
        .with_context(|| format!("starting {prog}"))?;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: plain getrusage on ourselves.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    std::fs::write(out, Usage::from_rusage(&ru).to_line())?;
    std::process::exit(status.code().unwrap_or(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_line_round_trips() {
        let u = Usage {
            user_s: 1.25,
            sys_s: 0.5,
            nvcsw: 7,
            nivcsw: 3,
            maxrss_kb: 1024,
        };
        assert_eq!(Usage::from_line(&u.to_line()), Some(u));
        assert_eq!(Usage::from_line("1 2"), None);
    }

    #[test]
    fn measures_a_child_and_its_own_share() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Command::new("sh");
        c.args(["-c", "echo hi; echo err >&2; exit 3"]);
        let r = spawn(&mut c, &dir.join("o"), &dir.join("e")).unwrap();
        let f = r.wait(Duration::from_secs(10)).unwrap();
        assert_eq!(f.exit, 3);
        assert_eq!(f.stdout, "hi\n");
        assert_eq!(f.stderr, "err\n");
        assert!(f.own.is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
