//! Starting a command to trace from its first instruction: the child is
//! forked (before any other thread exists), pinned and stripped of root as
//! asked, barred from gaining privileges (`PR_SET_NO_NEW_PRIVS`) unless
//! allowed, then waits on a pipe until the probes are armed for its PID,
//! and only then execs.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitStatus;

use anyhow::{Context as _, bail};

use crate::privs::Invoker;

/// What to start.
#[derive(Clone, Debug)]
pub struct LaunchSpec {
    pub argv: Vec<String>,
    /// CPUs to pin the command (and every thread it creates) to.
    pub cpus: Option<Vec<u32>>,
    /// Drop root to this user before exec.
    pub run_as: Option<Invoker>,
    /// Let setuid/setgid programs and file capabilities raise the
    /// command's privileges (`--allow-new-privs`); by default the command
    /// runs with `PR_SET_NO_NEW_PRIVS`.
    pub allow_new_privs: bool,
}

/// A forked child waiting at the gate.
pub struct Launched {
    pub pid: u32,
    gate: Option<OwnedFd>,
    exec_err: Option<OwnedFd>,
    reaped: Option<ExitStatus>,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by us.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Fork the child. Must be called while this process has a single thread.
pub fn spawn(spec: &LaunchSpec) -> anyhow::Result<Launched> {
    if spec.argv.is_empty() {
        bail!("no command given after --");
    }
    let argv: Vec<CString> = spec
        .argv
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .context("command arguments must not contain NUL bytes")?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut cpuset: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if let Some(cpus) = &spec.cpus {
        let online = crate::procfs::possible_cpus();
        for &c in cpus {
            if c >= online {
                bail!(
                    "--cpus names CPU {c}, but this machine has CPUs 0-{}",
                    online - 1
                );
            }
            // SAFETY: c is below CPU_SETSIZE (checked against the CPU count).
            unsafe { libc::CPU_SET(c as usize, &mut cpuset) };
        }
    }
    let groups: Vec<libc::gid_t> = spec
        .run_as
        .as_ref()
        .map(|u| u.groups.clone())
        .unwrap_or_default();
    let home = spec
        .run_as
        .as_ref()
        .and_then(|u| u.home.as_deref())
        .and_then(|h| CString::new(h).ok());
    let (gate_r, gate_w) = pipe()?;
    let (err_r, err_w) = pipe()?;

    // SAFETY: we are single-threaded here (checked by the caller's design:
    // called before the async runtime starts); the child only makes
    // async-signal-safe calls before exec or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        // Child.
        // SAFETY: only async-signal-safe calls until exec or _exit (see above).
        unsafe {
            drop(gate_w);
            drop(err_r);
            let fail = |code: i32| -> ! {
                let e = *libc::__errno_location();
                let bytes = [code as u8, e as u8, (e >> 8) as u8, 0];
                libc::write(err_w.as_raw_fd(), bytes.as_ptr().cast(), 4);
                libc::_exit(127);
            };
            if spec.cpus.is_some() && libc::sched_setaffinity(0, size_of_val(&cpuset), &cpuset) != 0
            {
                fail(1);
            }
            if let Some(u) = &spec.run_as {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
                    fail(2);
                }
                if libc::setgid(u.gid) != 0 {
                    fail(2);
                }
                if libc::setuid(u.uid) != 0 {
                    fail(2);
                }
                if let Some(h) = &home {
                    libc::setenv(c"HOME".as_ptr(), h.as_ptr(), 1);
                }
            }
            if !spec.allow_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                fail(4);
            }
            let mut b = 0u8;
            if libc::read(gate_r.as_raw_fd(), std::ptr::from_mut(&mut b).cast(), 1) != 1 {
                libc::_exit(127); // schedtrace went away before arming
            }
            libc::execvp(argv_ptrs[0], argv_ptrs.as_ptr());
            fail(3);
        }
    }
    drop(gate_r);
    drop(err_w);
    Ok(Launched {
        pid: pid as u32,
        gate: Some(gate_w),
        exec_err: Some(err_r),
        reaped: None,
    })
}

impl Launched {
    /// Let the child exec. Returns an error if it could not start the command.
    pub fn release(&mut self, argv0: &str) -> anyhow::Result<()> {
        let Some(gate) = self.gate.take() else {
            return Ok(());
        };
        // SAFETY: writing one byte from a valid buffer to our pipe end.
        let n = unsafe { libc::write(gate.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        drop(gate);
        if n != 1 {
            bail!("the launched command went away before it could start");
        }
        let Some(err) = self.exec_err.take() else {
            return Ok(());
        };
        let mut buf = [0u8; 4];
        // SAFETY: reading into a local buffer; EOF (0) means exec succeeded.
        let n = unsafe { libc::read(err.as_raw_fd(), buf.as_mut_ptr().cast(), 4) };
        if n == 4 {
            let errno = buf[1] as i32 | ((buf[2] as i32) << 8);
            let e = io::Error::from_raw_os_error(errno);
            let _ = self.wait();
            match buf[0] {
                1 => bail!("cannot pin the command to the requested CPUs: {e}"),
                2 => bail!("cannot switch to the invoking user to run the command: {e}"),
                4 => bail!("cannot bar the command from gaining privileges: {e}"),
                _ => bail!("cannot run {argv0:?}: {e}"),
            }
        }
        Ok(())
    }

    /// Reap the child (blocking).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.reaped {
            return Ok(s);
        }
        use std::os::unix::process::ExitStatusExt;
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(self.pid as i32, &mut status, 0) };
            if r == self.pid as i32 {
                let s = ExitStatus::from_raw(status);
                self.reaped = Some(s);
                return Ok(s);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Stop the child when tracing ends before it does: SIGTERM, then
    /// SIGKILL if it is still there after `grace`; returns its status.
    pub fn stop(&mut self, grace: std::time::Duration) -> io::Result<ExitStatus> {
        self.terminate();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            let mut status = 0;
            // SAFETY: non-blocking wait for our own child.
            let r = unsafe { libc::waitpid(self.pid as i32, &mut status, libc::WNOHANG) };
            if r == self.pid as i32 {
                use std::os::unix::process::ExitStatusExt;
                let s = ExitStatus::from_raw(status);
                self.reaped = Some(s);
                return Ok(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.kill();
        self.wait()
    }

    /// Ask the child to stop (when tracing ends before it does).
    pub fn terminate(&self) {
        if self.reaped.is_none() {
            // SAFETY: signalling our own, not yet reaped, child.
            unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        }
    }

    pub fn kill(&self) {
        if self.reaped.is_none() {
            // SAFETY: as above.
            unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        // A child still at the gate must not run untraced.
        if self.gate.is_some() {
            self.kill();
            let _ = self.wait();
        }
    }
}

/// The exit code a shell would report for `status`.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        _ => 1,
    }
}
