//! `--kernel-sums`: the per-thread sums the switch program keeps in the
//! kernel (`schedtrace_common::ThreadSums`): made for the threads already
//! there before the programs attach, read at the end, a live thread's from
//! its task storage, looked up by a pidfd of the thread, an ended thread's
//! from the map its final switch-out copied them to.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd};

use anyhow::anyhow;
use aya::maps::{HashMap, Map, MapData};
use schedtrace_common::{ThreadEnd, ThreadSums};

/// The two maps of the kernel's sums.
pub(crate) struct SumsMaps {
    /// `SUMS_TASK`: task local storage, keyed by a pidfd from userspace.
    pub task: Map,
    /// `SUMS_ENDED`: ended threads, by a per-CPU sequence key.
    pub ended: HashMap<MapData, u64, ThreadEnd>,
}

/// `PIDFD_THREAD` (`O_EXCL`): a pidfd of one thread, not of a process.
const PIDFD_THREAD: libc::c_int = libc::O_EXCL;
/// `BPF_MAP_LOOKUP_ELEM`, `BPF_MAP_UPDATE_ELEM`.
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
/// `BPF_NOEXIST`: an update that only makes a value.
const BPF_NOEXIST: u64 = 1;

/// The `bpf_attr` of an element look-up.
#[repr(C)]
struct LookupAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

impl SumsMaps {
    /// Move the ended threads' entries out of the kernel's map into `into`
    /// (the map has room for `MAX_SUMS_ENDED`; the kernel counts what finds
    /// it full as lost).
    pub(crate) fn drain_ended(&mut self, into: &mut Vec<ThreadEnd>) {
        let keys: Vec<u64> = self.ended.keys().filter_map(Result::ok).collect();
        for k in keys {
            if let Ok(v) = self.ended.get(&k, 0) {
                into.push(v);
            }
            let _ = self.ended.remove(&k);
        }
    }

    /// Make zeroed sums for every thread of the target processes (TGID,
    /// identity) before the programs attach: the value a program's first
    /// look-up would make, but a program makes it with an allocation
    /// that may not wait (on a busy CPU it fails now and then: the
    /// thread's sums then begin at a later switch, and the miss is
    /// counted), where this system call's does not fail that way. A
    /// thread that cannot be made here (it ended, or its process is no
    /// longer the target) is left to the programs. Gives how many were
    /// made.
    pub(crate) fn prepare(&self, targets: &[(u32, Option<u64>)]) -> anyhow::Result<usize> {
        let data = self.task_data()?;
        let mut made = 0;
        for &(tgid, ino) in targets {
            // Each thread held by a pidfd while it is still listed as the
            // process's (a TID is not given to another task while that
            // task lives)...
            let threads: Vec<(u32, OwnedFd)> = crate::procfs::tids(tgid)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|tid| {
                    let pidfd = pidfd_of_thread(tid).ok()?;
                    std::fs::metadata(format!("/proc/{tgid}/task/{tid}")).ok()?;
                    Some((tid, pidfd))
                })
                .collect();
            // ... and the process still the target, not a later one with
            // its PID: then it was all along, and those are its threads.
            let current = super::identity::ProcessHandle::open(tgid).map(|h| h.ino());
            if ino.is_some() && current.ok() != Some(ino) {
                continue;
            }
            for (tid, pidfd) in threads {
                match make(data, &pidfd) {
                    Ok(true) => made += 1,
                    Ok(false) => {}
                    Err(e) => log::debug!("sums of thread {tid} left to the kernel: {e}"),
                }
            }
        }
        Ok(made)
    }

    fn task_data(&self) -> anyhow::Result<&MapData> {
        match &self.task {
            Map::Unsupported(data) => Ok(data),
            _ => Err(anyhow!("SUMS_TASK is not a task storage map")),
        }
    }

    /// Thread `tid`'s sums: `None` when it has none (it did not switch
    /// while traced, or has ended since). Only a thread the programs
    /// traced has a value, so a TID taken by another task since it was
    /// listed finds none.
    pub(crate) fn of_thread(&self, tid: u32) -> anyhow::Result<Option<ThreadSums>> {
        let data = self.task_data()?;
        let pidfd = match pidfd_of_thread(tid) {
            Ok(fd) => fd,
            // Gone since it was listed.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
            Err(e) => return Err(anyhow!("pidfd_open of thread {tid}: {e}")),
        };
        lookup(data, &pidfd)
    }
}

/// A pidfd of thread `tid`.
fn pidfd_of_thread(tid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain system call; a nonnegative result is a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid as libc::c_int, PIDFD_THREAD) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Make zeroed sums for the thread `pidfd` holds; false if it has sums
/// already.
fn make(map: &MapData, pidfd: &OwnedFd) -> io::Result<bool> {
    let mut value = ThreadSums::ZERO;
    match elem(map, BPF_MAP_UPDATE_ELEM, pidfd, &mut value, BPF_NOEXIST) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The task storage value of the task `pidfd` refers to. A value still
/// all zero is none: [`SumsMaps::prepare`] made it and no program used
/// it (the thread did not switch while traced).
fn lookup(map: &MapData, pidfd: &OwnedFd) -> anyhow::Result<Option<ThreadSums>> {
    let mut value = ThreadSums::ZERO;
    match elem(map, BPF_MAP_LOOKUP_ELEM, pidfd, &mut value, 0) {
        Ok(()) if value == ThreadSums::ZERO => Ok(None),
        Ok(()) => Ok(Some(value)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(anyhow!("reading a thread's sums: {e}")),
    }
}

/// One `bpf()` element command on the task storage map: the key is the
/// task's pidfd, the value a [`ThreadSums`].
fn elem(
    map: &MapData,
    cmd: libc::c_long,
    pidfd: &OwnedFd,
    value: &mut ThreadSums,
    flags: u64,
) -> io::Result<()> {
    let key: i32 = pidfd.as_raw_fd();
    let attr = LookupAttr {
        map_fd: map.fd().as_fd().as_raw_fd() as u32,
        _pad: 0,
        key: std::ptr::from_ref(&key) as u64,
        value: std::ptr::from_mut(value) as u64,
        flags,
    };
    // SAFETY: `attr` points at a key of the map's key size (a descriptor)
    // and a value of its value size (`ThreadSums`, checked by the kernel
    // against the map's BTF when it was created); both outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_ref(&attr),
            size_of::<LookupAttr>(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
