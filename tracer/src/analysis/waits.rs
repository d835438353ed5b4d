//! Why a thread left its CPU, in words a user understands: each
//! voluntary switch-out is put in a wait class from the system call the
//! thread was in (and the kernel's `in_iowait`), and the time it then spent
//! sleeping or blocked is charged to that class and call.

use std::fmt;
use std::sync::LazyLock;

use crate::event::{OffCpu, SwitchReason};
use crate::syscalls;

/// The class of each system call by number ([`WaitClass::of_syscall`] of
/// its name), so that a switch-out indexes a table instead of matching
/// names.
static SYSCALL_CLASSES: LazyLock<Vec<Option<WaitClass>>> = LazyLock::new(|| {
    (0..syscalls::COUNT as u32)
        .map(|nr| syscalls::name(nr).and_then(WaitClass::of_syscall))
        .collect()
});

/// What kind of wait a thread was in, from the system call it made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaitClass {
    /// `futex` and its variants: a mutex, condition variable or semaphore.
    Lock,
    /// `epoll_wait`, `poll`, `select` and variants: an event loop with
    /// nothing to do.
    Idle,
    /// `nanosleep`, `clock_nanosleep`.
    Sleep,
    /// Reading or writing files, pipes and sockets, `io_uring_enter`,
    /// `fsync`; and any wait the kernel counts as I/O wait.
    Io,
    /// Blocked (D) outside a system call: a page fault.
    PageFault,
    /// Blocked (D) in another system call.
    OtherBlocked,
    /// Sleeping in another system call (`wait4`, `rt_sigtimedwait`, ...),
    /// or outside one (stopped, traced).
    Other,
    /// The thread's last switch: it exited.
    Exit,
    /// Not recorded: a trace without wait reasons, or a thread already
    /// asleep when tracing started.
    Unknown,
}

impl WaitClass {
    /// Every class, in the order summaries list them.
    pub const ALL: [WaitClass; 9] = [
        WaitClass::Idle,
        WaitClass::Lock,
        WaitClass::Sleep,
        WaitClass::Io,
        WaitClass::PageFault,
        WaitClass::OtherBlocked,
        WaitClass::Other,
        WaitClass::Exit,
        WaitClass::Unknown,
    ];

    /// A short name for people.
    pub fn label(self) -> &'static str {
        match self {
            WaitClass::Lock => "lock/condvar",
            WaitClass::Idle => "event loop idle",
            WaitClass::Sleep => "sleep",
            WaitClass::Io => "I/O",
            WaitClass::PageFault => "page fault",
            WaitClass::OtherBlocked => "other D state",
            WaitClass::Other => "other",
            WaitClass::Exit => "exit",
            WaitClass::Unknown => "unknown",
        }
    }

    /// The machine-readable name (JSON, pprof labels).
    pub fn key(self) -> &'static str {
        match self {
            WaitClass::Lock => "lock",
            WaitClass::Idle => "idle",
            WaitClass::Sleep => "sleep",
            WaitClass::Io => "io",
            WaitClass::PageFault => "page_fault",
            WaitClass::OtherBlocked => "other_blocked",
            WaitClass::Other => "other",
            WaitClass::Exit => "exit",
            WaitClass::Unknown => "unknown",
        }
    }

    /// The class of a system call by name, `None` for calls not listed.
    fn of_syscall(name: &str) -> Option<WaitClass> {
        Some(match name {
            "futex" | "futex_wait" | "futex_waitv" | "futex_requeue" => WaitClass::Lock,
            "epoll_wait" | "epoll_pwait" | "epoll_pwait2" | "poll" | "ppoll" | "select"
            | "pselect6" => WaitClass::Idle,
            "nanosleep" | "clock_nanosleep" => WaitClass::Sleep,
            "read" | "write" | "readv" | "writev" | "pread64" | "pwrite64" | "preadv"
            | "pwritev" | "preadv2" | "pwritev2" | "recvfrom" | "sendto" | "recvmsg"
            | "sendmsg" | "recvmmsg" | "sendmmsg" | "io_uring_enter" | "io_getevents"
            | "io_pgetevents" | "fsync" | "fdatasync" | "sync_file_range" | "sync" | "syncfs"
            | "sendfile" | "splice" | "tee" | "copy_file_range" | "accept" | "accept4"
            | "connect" | "openat" | "open" | "openat2" => WaitClass::Io,
            "exit" | "exit_group" => WaitClass::Exit,
            _ => return None,
        })
    }
}

impl fmt::Display for WaitClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What a wait is charged to: its class, and the system call if known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaitKey {
    pub class: WaitClass,
    pub syscall: Option<u32>,
}

impl WaitKey {
    pub const UNKNOWN: WaitKey = WaitKey {
        class: WaitClass::Unknown,
        syscall: None,
    };

    /// The key of a switch-out for `reason`, with what the thread was doing
    /// (`None`: not recorded).
    pub fn of(reason: SwitchReason, off: Option<&OffCpu>) -> WaitKey {
        if reason == SwitchReason::Dead {
            return WaitKey {
                class: WaitClass::Exit,
                syscall: off.and_then(|o| o.syscall),
            };
        }
        let Some(off) = off else {
            return WaitKey::UNKNOWN;
        };
        let blocked = reason == SwitchReason::Blocked;
        let of_call = off
            .syscall
            .and_then(|nr| SYSCALL_CLASSES.get(nr as usize).copied().flatten());
        let class = match (off.syscall, of_call) {
            (_, Some(WaitClass::Exit)) => WaitClass::Exit,
            (_, _) if off.iowait => WaitClass::Io,
            (_, Some(c)) => c,
            (None, None) if blocked => WaitClass::PageFault,
            (Some(_), None) if blocked => WaitClass::OtherBlocked,
            _ => WaitClass::Other,
        };
        WaitKey {
            class,
            syscall: off.syscall,
        }
    }

    /// The system call's name (`syscall 999` for a number without one).
    pub fn syscall_name(&self) -> Option<String> {
        self.syscall.map(|nr| match syscalls::name(nr) {
            Some(n) => n.to_string(),
            None => format!("syscall {nr}"),
        })
    }

    /// `epoll_wait (event loop idle)`, `page fault`, ...
    pub fn describe(&self) -> String {
        match self.syscall_name() {
            Some(n) => format!("{n} ({})", self.class),
            None => self.class.label().to_string(),
        }
    }
}

/// Time and count of one [`WaitKey`] in a thread's breakdown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitTime {
    pub ns: u64,
    pub count: u64,
}

/// A thread's sleeping and blocked time by [`WaitKey`]: a short list (a
/// thread uses few distinct calls to wait), kept small for threads that end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct WaitBreakdown(Vec<(WaitKey, WaitTime)>);

impl WaitBreakdown {
    fn entry(&mut self, key: WaitKey) -> &mut WaitTime {
        let i = match self.0.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.0.push((key, WaitTime::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    pub(crate) fn add_time(&mut self, key: WaitKey, ns: u64) {
        if ns > 0 {
            self.entry(key).ns += ns;
        }
    }

    pub(crate) fn add_count(&mut self, key: WaitKey) {
        self.entry(key).count += 1;
    }

    /// Largest time first.
    pub(crate) fn sorted(&self) -> Vec<(WaitKey, WaitTime)> {
        let mut v: Vec<_> = self
            .0
            .iter()
            .copied()
            .filter(|(_, t)| t.ns > 0 || t.count > 0)
            .collect();
        v.sort_by(|a, b| b.1.ns.cmp(&a.1.ns).then(a.0.cmp(&b.0)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn off(name: Option<&str>, iowait: bool) -> OffCpu {
        OffCpu {
            syscall: name.map(|n| syscalls::number(n).unwrap()),
            iowait,
            ..OffCpu::default()
        }
    }

    #[test]
    fn classes_follow_the_system_call() {
        let s = SwitchReason::Sleeping;
        let d = SwitchReason::Blocked;
        let class = |r, o: OffCpu| WaitKey::of(r, Some(&o)).class;
        assert_eq!(class(s, off(Some("futex"), false)), WaitClass::Lock);
        assert_eq!(class(s, off(Some("epoll_pwait"), false)), WaitClass::Idle);
        assert_eq!(class(s, off(Some("select"), false)), WaitClass::Idle);
        assert_eq!(
            class(s, off(Some("clock_nanosleep"), false)),
            WaitClass::Sleep
        );
        assert_eq!(class(s, off(Some("read"), false)), WaitClass::Io);
        assert_eq!(class(d, off(Some("fsync"), false)), WaitClass::Io);
        assert_eq!(class(d, off(Some("io_uring_enter"), false)), WaitClass::Io);
        // in_iowait makes any wait I/O; a D wait outside a call is a page fault.
        assert_eq!(class(d, off(Some("mmap"), true)), WaitClass::Io);
        assert_eq!(class(d, off(None, false)), WaitClass::PageFault);
        assert_eq!(class(d, off(Some("mmap"), false)), WaitClass::OtherBlocked);
        assert_eq!(class(s, off(Some("wait4"), false)), WaitClass::Other);
        assert_eq!(class(s, off(None, false)), WaitClass::Other);
        assert_eq!(class(s, off(Some("exit_group"), false)), WaitClass::Exit);
        assert_eq!(WaitKey::of(SwitchReason::Dead, None).class, WaitClass::Exit);
        assert_eq!(WaitKey::of(s, None), WaitKey::UNKNOWN);
    }

    #[test]
    fn descriptions_name_the_call() {
        let k = WaitKey::of(
            SwitchReason::Sleeping,
            Some(&off(Some("epoll_wait"), false)),
        );
        assert_eq!(k.describe(), "epoll_wait (event loop idle)");
        let k = WaitKey::of(SwitchReason::Blocked, Some(&off(None, false)));
        assert_eq!(k.describe(), "page fault");
        let odd = WaitKey {
            class: WaitClass::Other,
            syscall: Some(9999),
        };
        assert_eq!(odd.describe(), "syscall 9999 (other)");
    }

    #[test]
    fn the_breakdown_sorts_by_time() {
        let mut b = WaitBreakdown::default();
        let lock = WaitKey::of(SwitchReason::Sleeping, Some(&off(Some("futex"), false)));
        let idle = WaitKey::of(
            SwitchReason::Sleeping,
            Some(&off(Some("epoll_wait"), false)),
        );
        b.add_count(lock);
        b.add_time(lock, 10);
        b.add_count(idle);
        b.add_time(idle, 30);
        b.add_time(idle, 0);
        let s = b.sorted();
        assert_eq!(s[0].0, idle);
        assert_eq!(s[0].1, WaitTime { ns: 30, count: 1 });
        assert_eq!(s[1].1, WaitTime { ns: 10, count: 1 });
    }
}
