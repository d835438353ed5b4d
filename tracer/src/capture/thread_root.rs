//! The functions a blocked thread's stack holds, found by scanning its
//! stack memory instead of walking frame pointers. Binaries built without
//! frame pointers (Node.js among them) give off-CPU stacks that stop after
//! a frame or two, but the function a thread started in is still there: a
//! return address into it sits near the top of the thread's stack for as
//! long as the thread lives. Thread roles (`analysis/roles.rs`) are told
//! from these names.
//!
//! Read once per thread while the capture runs (`--stacks`), for the
//! threads of the traced process named like it (where names do not tell):
//! `/proc/PID/task/TID/syscall` gives a blocked thread's stack and
//! instruction pointers, `/proc/PID/maps` its stack's mapping and the
//! executable ones, `/proc/PID/mem` the live part of its stack (from the
//! stack pointer up, at most [`SCAN_BYTES`]). Every aligned word that
//! points into an executable mapping is taken as a return address. Stale
//! words (leftovers of calls that have returned, in frames still live) are
//! addresses this thread itself ran, so they cannot name another thread's
//! start function; a function pointer held as data (the start function
//! passed to `pthread_create`) names the function before it, since return
//! addresses are looked up one byte back. What is read is kept only if the
//! process is still the traced one afterwards (its pidfd says it has not
//! exited, so its PID has not been reused).

use std::fs;
use std::os::unix::fs::FileExt as _;

use crate::trace::Frame;

/// The most of a stack read, from the stack pointer up: the start function
/// of a thread blocked in a condition variable or `epoll_wait` is a few
/// hundred bytes to a few KiB above it.
pub(crate) const SCAN_BYTES: u64 = 64 * 1024;
/// The most frames kept per thread, nearest `start_thread` (a stack
/// record's most frames).
pub(crate) const MAX_FRAMES: usize = crate::trace::validate::MAX_STACK_FRAMES;

/// Where a blocked thread is, from `/proc/PID/task/TID/syscall`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Regs {
    pub sp: u64,
    pub pc: u64,
    /// Blocked in a system call (`NR ARG1..ARG6 SP PC`), not outside one
    /// (`-1 SP PC`: in a page fault, where the thread may be anywhere in
    /// its code, between the calls that say what it waits for).
    pub in_syscall: bool,
}

/// A blocked thread's registers, from `/proc/PID/task/TID/syscall`;
/// `None` for `running` (on a CPU or runnable: nothing to read).
pub(crate) fn parse_syscall(text: &str) -> Option<Regs> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() < 3 || fields[0] == "running" {
        return None;
    }
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    Some(Regs {
        sp: hex(fields[fields.len() - 2])?,
        pc: hex(fields[fields.len() - 1])?,
        in_syscall: fields[0] != "-1",
    })
}

/// One line of `/proc/PID/maps`: its address range and whether it is
/// executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub start: u64,
    pub end: u64,
    pub exec: bool,
}

/// The mappings of `/proc/PID/maps`; lines that do not parse are skipped.
pub(crate) fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (start, end) = f.next()?.split_once('-')?;
            let perms = f.next()?;
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                exec: perms.as_bytes().get(2) == Some(&b'x'),
            })
        })
        .collect()
}

/// The words of `stack` (read from address `sp` up) that point into an
/// executable mapping, innermost first (all of them: a thread running
/// JavaScript has hundreds below where it started).
pub(crate) fn return_addresses(sp: u64, stack: &[u8], maps: &[Mapping]) -> Vec<u64> {
    let skip = (8 - (sp % 8) as usize) % 8;
    stack
        .get(skip..)
        .unwrap_or_default()
        .chunks_exact(8)
        .map(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")))
        .filter(|&a| maps.iter().any(|m| m.exec && m.start <= a && a < m.end))
        .collect()
}

/// Cut the named frames of a scanned stack to what tells where the thread
/// started: the named words up to glibc's `start_thread` (what lies above
/// it is the thread's descriptor and TLS), repeats of one function merged.
/// False, and nothing worth keeping, when `start_thread` is not among them
/// (the main thread, or a stack too deep for [`SCAN_BYTES`]).
pub(crate) fn trim(frames: &mut Vec<Frame>) -> bool {
    frames.retain(|f| f.name.is_some());
    frames.dedup_by(|a, b| a.name == b.name);
    let Some(top) = frames
        .iter()
        .position(|f| f.name.as_deref() == Some("start_thread"))
    else {
        return false;
    };
    frames.truncate(top + 1);
    // The frames nearest where it started are the ones that tell.
    frames.drain(..frames.len().saturating_sub(MAX_FRAMES));
    true
}

/// One read of a blocked thread's stack memory.
#[derive(Debug)]
pub(crate) struct Read {
    /// Its instruction pointer, then the return addresses on its stack.
    pub ips: Vec<u64>,
    /// Whether it was blocked in a system call (see [`Regs::in_syscall`]).
    pub in_syscall: bool,
}

impl Read {
    /// Whether this read is the one to keep, at the `tries`-th read of a
    /// thread. One made in a page fault shows where the thread started
    /// but may show nothing it waits in (a libuv pool thread faulting in
    /// its own `worker` has `worker` and `start_thread` on its stack, no
    /// `uv_cond_wait`, which is what tells libuv's `worker` from any
    /// other); the thread is read again at the next round, and such a
    /// read is kept only at the last try. (Seen with the target's code
    /// paged out under memory pressure.)
    pub(crate) fn worth_keeping(&self, tries: u32, max_tries: u32) -> bool {
        self.in_syscall || tries >= max_tries
    }
}

/// Thread `tid` of process `tgid`, if it is blocked: what its stack
/// memory holds. `None` when it is running, has exited, or its stack
/// cannot be read.
pub(crate) fn scan(tgid: u32, tid: u32) -> Option<Read> {
    let task = format!("/proc/{tgid}/task/{tid}");
    let Regs { sp, pc, in_syscall } =
        parse_syscall(&fs::read_to_string(format!("{task}/syscall")).ok()?)?;
    let maps = parse_maps(&fs::read_to_string(format!("{task}/maps")).ok()?);
    let stack = maps.iter().find(|m| m.start <= sp && sp < m.end)?;
    let len = (stack.end - sp).min(SCAN_BYTES);
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    let mem = fs::File::open(format!("{task}/mem")).ok()?;
    let n = mem.read_at(&mut buf, sp).ok()?;
    buf.truncate(n);
    let mut ips = vec![pc];
    ips.extend(return_addresses(sp, &buf, &maps));
    Some(Read { ips, in_syscall })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_of_a_blocked_thread() {
        let in_futex =
            "202 0x7f0c2a1fe910 0x80 0x0 0x0 0x0 0xffffffff 0x7f0c2a1fe8a0 0x7f0c2b0a3e3b\n";
        assert_eq!(
            parse_syscall(in_futex),
            Some(Regs {
                sp: 0x7f0c2a1fe8a0,
                pc: 0x7f0c2b0a3e3b,
                in_syscall: true
            })
        );
        // Blocked outside a system call: in a page fault.
        assert_eq!(
            parse_syscall("-1 0x7ffd1000 0x401000\n"),
            Some(Regs {
                sp: 0x7ffd1000,
                pc: 0x401000,
                in_syscall: false
            })
        );
        assert_eq!(parse_syscall("running\n"), None);
        assert_eq!(parse_syscall(""), None);
        assert_eq!(parse_syscall("202 0x1 zz"), None);
    }

    #[test]
    fn a_read_in_a_page_fault_is_kept_only_at_the_last_try() {
        let fault = Read {
            ips: vec![0x401000],
            in_syscall: false,
        };
        let futex = Read {
            ips: vec![0x401000],
            in_syscall: true,
        };
        assert!(futex.worth_keeping(1, 20));
        assert!(!fault.worth_keeping(1, 20));
        assert!(!fault.worth_keeping(19, 20));
        assert!(fault.worth_keeping(20, 20));
    }

    #[test]
    fn maps_lines() {
        let text = "00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/node\n\
                    7ffd1000-7ffd3000 rw-p 00000000 00:00 0 [stack]\n\
                    garbage\n";
        assert_eq!(
            parse_maps(text),
            [
                Mapping {
                    start: 0x400000,
                    end: 0x452000,
                    exec: true
                },
                Mapping {
                    start: 0x7ffd1000,
                    end: 0x7ffd3000,
                    exec: false
                }
            ]
        );
    }

    #[test]
    fn a_scanned_stack_is_cut_at_start_thread() {
        let f = |n: Option<&str>| Frame {
            addr: 1,
            name: n.map(String::from),
            module: None,
        };
        let mut frames = vec![
            f(Some("__futex_abstimed_wait_common")),
            f(None),
            f(Some("uv_cond_wait")),
            f(Some("worker")),
            f(Some("worker")),
            f(Some("start_thread")),
            f(Some("tls_junk")),
        ];
        assert!(trim(&mut frames));
        let names: Vec<_> = frames.iter().map(|f| f.name.as_deref().unwrap()).collect();
        assert_eq!(
            names,
            [
                "__futex_abstimed_wait_common",
                "uv_cond_wait",
                "worker",
                "start_thread"
            ]
        );
        let mut main = vec![f(Some("uv_run")), f(Some("__libc_start_call_main"))];
        assert!(!trim(&mut main));
        // A deep stack (JavaScript) keeps the frames nearest the start.
        let mut deep: Vec<Frame> = (0..400).map(|i| f(Some(&format!("js{i}")))).collect();
        deep.push(f(Some("node::worker::Worker::Run()")));
        deep.push(f(Some("start_thread")));
        assert!(trim(&mut deep));
        assert_eq!(deep.len(), MAX_FRAMES);
        let last: Vec<_> = deep[MAX_FRAMES - 2..]
            .iter()
            .map(|f| f.name.as_deref().unwrap())
            .collect();
        assert_eq!(last, ["node::worker::Worker::Run()", "start_thread"]);
    }

    #[test]
    fn words_into_code_are_kept_in_stack_order() {
        let maps = [
            Mapping {
                start: 0x1000,
                end: 0x2000,
                exec: true,
            },
            Mapping {
                start: 0x5000,
                end: 0x6000,
                exec: false,
            },
        ];
        // Read from an unaligned stack pointer: the first 4 bytes are not
        // a whole aligned word.
        let sp = 0x5004;
        let mut stack = vec![0xaau8; 4];
        for w in [0x1234u64, 0x5008, 0x1ff8, 0x2000, 7] {
            stack.extend(w.to_ne_bytes());
        }
        assert_eq!(return_addresses(sp, &stack, &maps), [0x1234, 0x1ff8]);
    }

    #[test]
    fn a_blocked_thread_of_this_process_shows_the_function_it_started_in() {
        use std::sync::mpsc;
        #[inline(never)]
        fn parked_in_this_function(rx: mpsc::Receiver<()>) {
            rx.recv().ok();
            std::hint::black_box(());
        }
        let (tx, rx) = mpsc::channel();
        let (tid_tx, tid_rx) = mpsc::channel();
        let h = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() } as u32).unwrap();
            parked_in_this_function(rx);
        });
        let tid = tid_rx.recv().unwrap();
        let pid = std::process::id();
        // Until it blocks in the channel's futex.
        let mut found = None;
        for _ in 0..200 {
            std::thread::sleep(std::time::Duration::from_millis(5));
            found = scan(pid, tid);
            if found.is_some() {
                break;
            }
        }
        tx.send(()).unwrap();
        h.join().unwrap();
        let Some(Read { ips: addrs, .. }) = found else {
            // Without the right to read /proc/PID/task/TID/syscall (not
            // root, or Yama's ptrace scope), nothing can be scanned.
            let readable = fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).is_ok();
            assert!(!readable, "thread {tid} never blocked");
            return;
        };
        let here = parked_in_this_function as *const () as u64;
        // Some return address lies in the function (its body is well under
        // 4 KiB), past its first instruction.
        assert!(
            addrs.iter().skip(1).any(|&a| a > here && a < here + 4096),
            "{here:#x} not in {addrs:x?}"
        );
    }
}
