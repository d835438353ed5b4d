//! A process by identity, not by number (docs/security.md, "The target
//! process"): a pidfd, taken before anything is read about the process,
//! and the pidfs inode number of the PID structure behind it. The kernel
//! never gives that number to another PID structure while the system runs,
//! and the eBPF filter compares it with each task's own
//! (`task->signal->pids[PIDTYPE_TGID]->ino`), so a reused PID never
//! matches.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `PID_FS_MAGIC`: pidfds live on pidfs since Linux 6.9; before, on an
/// anonymous inode shared by all of them.
const PID_FS_MAGIC: u64 = 0x5049_4446;

/// A process held by a pidfd.
#[derive(Debug)]
pub struct ProcessHandle {
    pub pid: u32,
    pidfd: OwnedFd,
    /// The pidfs inode number of its PID structure, when the kernel has pidfs.
    ino: Option<u64>,
}

/// `pidfd_open(pid, 0)`: the process whose TGID is `pid` now.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: a plain system call; a descriptor it returns is ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The pidfs inode number of `pidfd`, if pidfds have unique ones here.
fn pidfs_ino(pidfd: &OwnedFd) -> Option<u64> {
    // SAFETY: zeroed buffers to fill; a valid descriptor.
    unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(pidfd.as_raw_fd(), &mut fs) != 0
            || i128::from(fs.f_type) != i128::from(PID_FS_MAGIC)
        {
            return None;
        }
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(pidfd.as_raw_fd(), &mut st) != 0 {
            return None;
        }
        Some(st.st_ino)
    }
}

impl ProcessHandle {
    /// Take hold of the process whose PID is `pid` now. `ESRCH` if there is none.
    pub fn open(pid: u32) -> io::Result<ProcessHandle> {
        let pidfd = pidfd_open(pid)?;
        let ino = pidfs_ino(&pidfd);
        Ok(ProcessHandle { pid, pidfd, ino })
    }

    /// The identity the eBPF filter compares, or `None` on a kernel
    /// without pidfs (then only the number can be compared).
    pub fn ino(&self) -> Option<u64> {
        self.ino
    }

    pub fn pidfd(&self) -> &OwnedFd {
        &self.pidfd
    }

    pub fn into_pidfd(self) -> OwnedFd {
        self.pidfd
    }

    /// Has the process ended? (See [`pidfd_exited`].)
    pub fn exited(&self) -> bool {
        pidfd_exited(&self.pidfd)
    }

    /// Is `pid` still this process? (It may have ended and the number been
    /// given to another.) What `/proc/<pid>` said while this returns true
    /// afterwards was about this process.
    pub fn is_current(&self) -> bool {
        if self.exited() {
            return false;
        }
        match (self.ino, ProcessHandle::open(self.pid)) {
            (Some(ino), Ok(now)) => now.ino == Some(ino),
            // Without pidfs, a live pidfd means the number is still ours.
            (None, Ok(_)) => true,
            (_, Err(_)) => false,
        }
    }
}

/// Has the process of `pidfd` ended? A pidfd becomes readable once every
/// thread has exited (a zombie leader with live threads is still alive).
/// Until then its PID cannot be given to another process.
pub(crate) fn pidfd_exited(pidfd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}

/// Whether process `pid` has a thread that has not exited: a process whose
/// leader called `pthread_exit` shows the leader as a zombie while its
/// other threads run.
pub fn has_live_thread(pid: u32) -> io::Result<bool> {
    for tid in crate::procfs::tids(pid)? {
        match crate::procfs::task_stat(pid, tid) {
            Ok(st) if st.state != 'Z' && st.state != 'X' => return Ok(true),
            _ => {}
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn identifies_a_child_and_sees_it_end() {
        let mut c = Command::new("sleep").arg("10").spawn().unwrap();
        let h = ProcessHandle::open(c.id()).unwrap();
        assert!(!h.exited());
        assert!(h.is_current());
        let other = Command::new("sleep").arg("10").spawn().unwrap();
        let o = ProcessHandle::open(other.id()).unwrap();
        if let (Some(a), Some(b)) = (h.ino(), o.ino()) {
            assert_ne!(a, b, "two processes, two identities");
        }
        c.kill().unwrap();
        c.wait().unwrap();
        assert!(h.exited());
        assert!(!h.is_current());
        drop(o);
        let mut other = other;
        other.kill().unwrap();
        other.wait().unwrap();
    }

    #[test]
    fn no_process_is_esrch() {
        // PIDs above pid_max (at most 2^22) never exist.
        let e = ProcessHandle::open(4_000_000_000).unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::ESRCH) | Some(libc::EINVAL)),
            "{e}"
        );
    }

    #[test]
    fn this_process_has_a_live_thread() {
        assert!(has_live_thread(std::process::id()).unwrap());
    }
}
