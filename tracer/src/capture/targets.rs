//! The processes a capture traces, each held by its pidfd (see
//! [`super::identity`]): taking hold of them and checking them before
//! loading, what `/proc` says about their threads (read only while the pidfd
//! shows the process alive, so a reused PID is never read as the target),
//! and watching them exit.

use std::os::fd::OwnedFd;
use std::task::Poll;

use anyhow::bail;
use tokio::io::unix::AsyncFd;

use super::cgroup::Cgroup;
use super::identity::{ProcessHandle, has_live_thread, pidfd_exited};
use super::{Selected, check_target};
use crate::event::Comm;
use crate::procfs;
use crate::trace::{TargetProcess, ThreadCounters, ThreadInfo};
use schedtrace_common::{MAX_NAME_PATTERN, NamePattern};

/// The processes named on the command line, held and checked, before the
/// programs are loaded.
pub(crate) struct Opened {
    held: Vec<(ProcessHandle, procfs::Stat)>,
    cgroup: Option<Cgroup>,
    /// `--comm`: the pattern, compiled as the kernel side matches it.
    comm: Option<NamePattern>,
    /// `--all`: no process is held; every one is read from `/proc`.
    all: bool,
}

impl Opened {
    /// Take hold of each process of `sel.pids` (the first is the trace's
    /// first target), then check what `/proc` says about it: what it said
    /// is about this process if the pidfd shows it is still this one after.
    /// Then the same for every other running process whose name matches
    /// `sel.comm`, and for every process in `sel.cgroup` and below it
    /// (which may hold none yet). With `sel.all`, nothing is held: every
    /// process is read from `/proc` once attached.
    pub(crate) fn open(sel: &Selected, launched: bool) -> anyhow::Result<Opened> {
        if sel.all {
            return Ok(Opened {
                held: Vec::new(),
                cgroup: None,
                comm: None,
                all: true,
            });
        }
        let pids = &sel.pids;
        let mut held = Vec::with_capacity(pids.len());
        for (i, &pid) in pids.iter().enumerate() {
            if pids[..i].contains(&pid) {
                bail!("--pid {pid} is given twice");
            }
            let handle = open_target(pid)?;
            let st = check_target(pid)?;
            if !launched && !handle.is_current() {
                bail!("process {pid} exited before tracing could start");
            }
            held.push((handle, st));
        }
        let comm = sel.comm.as_deref().map(compile_comm).transpose()?;
        let cgroup = sel.cgroup.as_deref().map(Cgroup::open).transpose()?;
        let mut opened = Opened {
            held,
            cgroup,
            comm,
            all: false,
        };
        opened.add_named()?;
        opened.add_cgroup_members()?;
        let max = schedtrace_common::MAX_CHILDREN as usize + 1;
        // A cgroup may be empty yet, and no process may have the name yet:
        // what enters the one or takes the other is traced.
        if opened.held.is_empty() && opened.cgroup.is_none() && opened.comm.is_none() {
            bail!("no process to trace");
        }
        if opened.held.len() > max {
            bail!(
                "{} processes selected: schedtrace traces at most {max} at once",
                opened.held.len()
            );
        }
        Ok(opened)
    }

    /// Hold every process of the traced cgroup not held yet, and give their
    /// PIDs and identities. Called again once the programs are attached, for
    /// the processes that entered the cgroup between the first reading and
    /// the attach (the kernel side sees those that enter after it).
    pub(crate) fn add_cgroup_members(&mut self) -> anyhow::Result<Vec<(u32, Option<u64>)>> {
        let Some(cg) = &self.cgroup else {
            return Ok(Vec::new());
        };
        let pids = cg.pids()?;
        Ok(self.hold_new(pids, None))
    }

    /// Hold every running process not held yet whose name the `--comm`
    /// pattern matches, and give their PIDs and identities. Called again
    /// once the programs are attached, for those that took the name
    /// between the first reading and the attach (the kernel side sees
    /// those that exec or are renamed after it).
    pub(crate) fn add_named(&mut self) -> anyhow::Result<Vec<(u32, Option<u64>)>> {
        let Some(pattern) = self.comm else {
            return Ok(Vec::new());
        };
        Ok(self.hold_new(procfs::pids()?, Some(&pattern)))
    }

    /// Hold each of `pids` that is not ours nor held yet and is a live user
    /// process (named by `pattern`, if given); their PIDs and identities.
    fn hold_new(
        &mut self,
        pids: Vec<u32>,
        pattern: Option<&NamePattern>,
    ) -> Vec<(u32, Option<u64>)> {
        let mut added = Vec::new();
        for pid in pids {
            if pid == std::process::id() || self.held.iter().any(|(h, _)| h.pid == pid) {
                continue;
            }
            if let Some(found) = named(pid, pattern) {
                added.push((pid, found.0.ino()));
                self.held.push(found);
            }
        }
        added
    }

    /// The traced cgroup, if any.
    pub(crate) fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// The `--comm` pattern, compiled, if any.
    pub(crate) fn comm(&self) -> Option<NamePattern> {
        self.comm
    }

    /// The first target's PID and identity (PID 0 for a cgroup that held
    /// no process when tracing started).
    pub(crate) fn first(&self) -> (u32, Option<u64>) {
        match self.held.first() {
            Some((h, _)) => (h.pid, h.ino()),
            None => (0, None),
        }
    }

    /// Every target's PID, the first first.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.held.iter().map(|(h, _)| h.pid).collect()
    }

    /// The further targets' PIDs and identities.
    pub(crate) fn also(&self) -> Vec<(u32, Option<u64>)> {
        self.held
            .iter()
            .skip(1)
            .map(|(h, _)| (h.pid, h.ino()))
            .collect()
    }

    /// Once the programs are attached: fail if a process given by PID has
    /// exited meanwhile, and read the threads of each (none for one that
    /// ended while they were read: its PID may be another process's). Gives
    /// the targets to watch, their threads, and each one's name.
    pub(crate) fn attached(
        self,
        launched: bool,
    ) -> anyhow::Result<(Targets, Vec<ThreadInfo>, Vec<TargetProcess>)> {
        let mut threads = Vec::new();
        let mut names = Vec::new();
        let mut held = Vec::new();
        if self.all {
            for pid in others()? {
                threads.extend(thread_infos(pid).unwrap_or_default());
            }
        }
        for (handle, st) in self.held {
            let pid = handle.pid;
            if !launched && handle.exited() {
                bail!("process {pid} exited before tracing could start");
            }
            let mut mine = thread_infos(pid).unwrap_or_default();
            let mut ns_pid = procfs::ns_pid(pid);
            if !handle.is_current() {
                // It ended meanwhile, and its PID may be another's now.
                mine.clear();
                ns_pid = None;
            }
            let comm = mine
                .iter()
                .find(|t| t.tid == pid)
                .map(|t| t.comm.to_string())
                .unwrap_or(st.comm);
            threads.extend(mine);
            names.push(TargetProcess { pid, comm, ns_pid });
            held.push(Held {
                pid,
                pidfd: super::session::register(handle.into_pidfd(), "the pidfd")?,
                exited: false,
            });
        }
        let all = self.all;
        Ok((Targets { held, all }, threads, names))
    }
}

/// The traced processes given by PID (or launched), while the capture runs.
pub(crate) struct Targets {
    held: Vec<Held>,
    /// `--all`: the counters are every process's.
    all: bool,
}

struct Held {
    pid: u32,
    pidfd: AsyncFd<OwnedFd>,
    exited: bool,
}

impl Targets {
    /// Wait until one more target exits. Pending for ever once all have.
    pub(crate) async fn next_exit(&mut self) -> std::io::Result<()> {
        std::future::poll_fn(|cx| {
            for h in self.held.iter_mut().filter(|h| !h.exited) {
                let ready = match h.pidfd.poll_read_ready(cx) {
                    Poll::Ready(Ok(_)) => Ok(()),
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => continue,
                };
                h.exited = true;
                return Poll::Ready(ready);
            }
            Poll::Pending
        })
        .await
    }

    /// Have all the targets exited (as far as [`Self::next_exit`] saw)?
    pub(crate) fn all_exited(&self) -> bool {
        self.held.iter().all(|h| h.exited)
    }

    /// Each target's PID and pidfd.
    pub(crate) fn fds(&self) -> Vec<(u32, &OwnedFd)> {
        self.held
            .iter()
            .map(|h| (h.pid, h.pidfd.get_ref()))
            .collect()
    }

    /// The counters of every thread of every target that is still running
    /// after they were read (the rest have none to give: a PID that ended
    /// may be another process's by now).
    pub(crate) fn counters(&self) -> Vec<ThreadCounters> {
        let mut out = Vec::new();
        if self.all {
            for pid in others().unwrap_or_default() {
                out.extend(thread_counters(pid));
            }
        }
        for h in &self.held {
            let read = thread_counters(h.pid);
            if !pidfd_exited(h.pidfd.get_ref()) {
                out.extend(read);
            }
        }
        out
    }

    /// The counters of every thread of the processes the kernel side added
    /// to the traced ones (`followed`: TGID and identity, its map of
    /// followed children and of processes that joined by name or cgroup)
    /// that are not held: each one only if it is still the process the
    /// kernel added (the same pidfs identity, 0 where the kernel has none,
    /// and then not read) and still running after the read.
    pub(crate) fn followed_counters(
        &self,
        followed: impl IntoIterator<Item = (u32, u64)>,
    ) -> Vec<ThreadCounters> {
        let mut out = Vec::new();
        for (tgid, ino) in followed {
            if ino == 0 || self.held.iter().any(|h| h.pid == tgid) {
                continue;
            }
            let Ok(h) = ProcessHandle::open(tgid) else {
                continue;
            };
            if h.ino() != Some(ino) {
                continue;
            }
            let read = thread_counters(tgid);
            if !h.exited() {
                out.extend(read);
            }
        }
        out
    }
}

/// Every process but schedtrace's own (`--all`), kernel threads included.
fn others() -> std::io::Result<Vec<u32>> {
    let me = std::process::id();
    Ok(procfs::pids()?.into_iter().filter(|&p| p != me).collect())
}

/// `--comm`'s pattern compiled for both sides, or why it cannot be.
fn compile_comm(pattern: &str) -> anyhow::Result<NamePattern> {
    NamePattern::compile(pattern.as_bytes()).ok_or_else(|| {
        anyhow::anyhow!(
            "--comm {pattern:?} is too long: at most {MAX_NAME_PATTERN} characters (a run of \
             `*` counts one; a process name has at most 15)"
        )
    })
}

/// The process `pid`, held, if it is a live user process whose name matches
/// `pattern` if one is given (read after the pidfd is open, and trusted only
/// if the pidfd shows the process still there after: a PID reused meanwhile
/// is skipped).
fn named(pid: u32, pattern: Option<&NamePattern>) -> Option<(ProcessHandle, procfs::Stat)> {
    let handle = ProcessHandle::open(pid).ok()?;
    let st = procfs::stat(pid).ok()?;
    // A leader that called pthread_exit is a zombie while its threads run.
    let zombie = (st.state == 'Z' || st.state == 'X') && !has_live_thread(pid).unwrap_or(false);
    let alive = !zombie && !st.is_kernel_thread();
    let matches = pattern.is_none_or(|p| p.matches(Comm::new(&st.comm).as_bytes()));
    (alive && matches && handle.is_current()).then_some((handle, st))
}

/// Take hold of the process `--pid` names, before anything is read about it.
fn open_target(pid: u32) -> anyhow::Result<ProcessHandle> {
    if pid == 0 {
        bail!("--pid 0 is not a process (PID 0 is the kernel's idle task)");
    }
    ProcessHandle::open(pid).map_err(|e| match e.raw_os_error() {
        Some(libc::ESRCH) | Some(libc::EINVAL) => anyhow::anyhow!("no process with PID {pid}"),
        _ => anyhow::anyhow!("cannot open process {pid}: {e}"),
    })
}

/// The threads of `pid` as they are now, stamped with the trace clock.
fn thread_infos(pid: u32) -> std::io::Result<Vec<ThreadInfo>> {
    let mut out = Vec::new();
    for tid in procfs::tids(pid)? {
        let Ok(st) = procfs::task_stat(pid, tid) else {
            continue; // exited meanwhile
        };
        out.push(ThreadInfo {
            ts: procfs::monotonic_ns(),
            tid,
            tgid: pid,
            comm: Comm::new(&st.comm),
            state: st.state,
            cpu: st.processor,
            // Only off its CPU has the kernel a system call to show.
            syscall: matches!(st.state, 'S' | 'D')
                .then(|| procfs::task_syscall(pid, tid))
                .flatten(),
        });
    }
    Ok(out)
}

/// The counters of every thread of `pid` as `/proc` shows them now.
fn thread_counters(pid: u32) -> Vec<ThreadCounters> {
    procfs::tids(pid)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|tid| {
            // A thread that exited meanwhile has none. Its switch counts
            // are read first: a switch between this read and the stamp is
            // in the stream before the snapshot, and its record's counts
            // are then the base.
            let (nvcsw, nivcsw) = procfs::ctxt_switches(pid, tid).ok()?;
            let (ts, st) = timed_read(|| procfs::schedstat(pid, tid), procfs::monotonic_ns).ok()?;
            Some(ThreadCounters {
                ts,
                tid,
                tgid: pid,
                runtime_ns: st.on_cpu_ns,
                run_delay_ns: st.wait_ns,
                pcount: st.timeslices,
                nvcsw,
                nivcsw,
            })
        })
        .collect()
}

/// A `/proc` read of a thread's counters taking longer than this is taken
/// again. The counters hold at some instant inside the read, and the
/// snapshot is stamped at its end, so a thread running meanwhile is
/// misplaced by up to the read's length. A read takes 5 µs (median of
/// 20,000 on the 2-CPU test VM, p99 6 µs, with the machine loaded), but a
/// read whose task is preempted or whose vCPU is stolen takes milliseconds
/// (p99.9 8 ms there): a 60 ms stall put into the first read of an attach
/// had two ping-pong threads' runs meanwhile counted twice (105-120 ms
/// charged against 80-92 ms without it). 50 µs is ten normal reads, and far
/// inside the 1 ms a charge may run ahead of the window
/// (`analysis::machine::CHARGE_EDGE_NS`).
const COUNTERS_READ_NS: u64 = 50_000;
/// Reads tried before the shortest is kept.
const COUNTERS_TRIES: usize = 5;

/// `read`'s value and the time its read ended, from the first read that
/// took at most [`COUNTERS_READ_NS`] by `clock`, else from the shortest of
/// [`COUNTERS_TRIES`]. An error ends the tries.
fn timed_read<T>(
    mut read: impl FnMut() -> std::io::Result<T>,
    mut clock: impl FnMut() -> u64,
) -> std::io::Result<(u64, T)> {
    let mut best: Option<(u64, u64, T)> = None;
    for _ in 0..COUNTERS_TRIES {
        let before = clock();
        let value = read()?;
        let after = clock();
        let took = after.saturating_sub(before);
        if best.as_ref().is_none_or(|b| took < b.0) {
            best = Some((took, after, value));
        }
        if took <= COUNTERS_READ_NS {
            break;
        }
    }
    let (_, ts, value) = best.expect("at least one read");
    Ok((ts, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that reads `times` in turn, and a read that returns how
    /// many reads came before it.
    fn scripted(times: Vec<u64>) -> (impl FnMut() -> u64, impl FnMut() -> std::io::Result<u32>) {
        let mut t = times.into_iter();
        let mut n = 0;
        (
            move || t.next().expect("a clock reading"),
            move || {
                n += 1;
                Ok(n)
            },
        )
    }

    #[test]
    fn a_quick_read_is_kept_and_stamped_at_its_end() {
        let (clock, read) = scripted(vec![1_000, 6_000]);
        assert_eq!(timed_read(read, clock).unwrap(), (6_000, 1));
    }

    #[test]
    fn a_stalled_read_is_taken_again() {
        // 50 ms, then 5 µs: the second is kept.
        let (clock, read) = scripted(vec![0, 50_000_000, 50_001_000, 50_006_000]);
        assert_eq!(timed_read(read, clock).unwrap(), (50_006_000, 2));
    }

    #[test]
    fn when_every_read_stalls_the_shortest_is_kept() {
        let ms = 1_000_000;
        let (clock, read) = scripted(vec![
            0,
            9 * ms,
            10 * ms,
            12 * ms,
            20 * ms,
            27 * ms,
            30 * ms,
            38 * ms,
            40 * ms,
            45 * ms,
        ]);
        assert_eq!(timed_read(read, clock).unwrap(), (12 * ms, 2));
    }

    #[test]
    fn a_failed_read_is_an_error() {
        let mut calls = 0;
        let r = timed_read(
            || -> std::io::Result<()> {
                calls += 1;
                Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            },
            || 0,
        );
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
