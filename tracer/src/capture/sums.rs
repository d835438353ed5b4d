//! `--kernel-sums`: reading the per-thread sums the switch program keeps
//! in the kernel (`schedtrace_common::ThreadSums`): a live thread's from
//! its task storage, looked up by a pidfd of the thread; an ended thread's
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
/// `BPF_MAP_LOOKUP_ELEM`.
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;

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

    /// Thread `tid`'s sums: `None` when it has none (it did not switch
    /// while traced, or has ended since). Only a thread the programs
    /// traced has a value, so a TID taken by another task since it was
    /// listed finds none.
    pub(crate) fn of_thread(&self, tid: u32) -> anyhow::Result<Option<ThreadSums>> {
        let Map::Unsupported(data) = &self.task else {
            return Err(anyhow!("SUMS_TASK is not a task storage map"));
        };
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

/// The task storage value of the task `pidfd` refers to.
fn lookup(map: &MapData, pidfd: &OwnedFd) -> anyhow::Result<Option<ThreadSums>> {
    let key: i32 = pidfd.as_raw_fd();
    let mut value = ThreadSums::ZERO;
    let attr = LookupAttr {
        map_fd: map.fd().as_fd().as_raw_fd() as u32,
        _pad: 0,
        key: std::ptr::from_ref(&key) as u64,
        value: std::ptr::from_mut(&mut value) as u64,
        flags: 0,
    };
    // SAFETY: `attr` points at a key of the map's key size (a descriptor)
    // and a value of its value size (`ThreadSums`, checked by the kernel
    // against the map's BTF when it was created); both outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_ELEM,
            std::ptr::from_ref(&attr),
            size_of::<LookupAttr>(),
        )
    };
    if r == 0 {
        return Ok(Some(value));
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        e => Err(anyhow!("reading a thread's sums: {e}")),
    }
}
