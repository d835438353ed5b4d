//! `--kernel-sums`: the per-thread summary of a capture whose kernel kept
//! sums instead of writing records. Totals (on-CPU time, run-queue wait,
//! switches) are the growth of the kernel's own counters between the ends,
//! as `/proc` shows them; what those cannot give (the wait distribution and
//! its causes, sleeping and blocked time, steal, slices, migrations) comes
//! from the sums the switch program kept (`schedtrace_common::ThreadSums`).

use std::collections::{BTreeMap, BTreeSet};

use schedtrace_common::{
    FLAG_CTX_DETAIL, FLAG_CTX_FUNCTION, REASON_IOWAIT, REASON_NO_SYSCALL, RawEvent, SUM_BUCKETS,
    ThreadSums, WakerSum, kind, sum_bucket_floor,
};

use super::antagonists::{Holder, Occupant};
use super::summary::{DelayStats, HolderTime, Waker};
use crate::event::{Comm, WakeContext};
use crate::trace::occupancy::OccupancyProfile;
use crate::trace::{KernelSums, SumsNames, ThreadCounters};

/// The summary of a `--kernel-sums` capture.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelSummary {
    pub window_ns: u64,
    /// Threads still there at the end, then the ended ones, each by TID.
    pub threads: Vec<KernelThread>,
    /// Threads whose sums were lost (see [`KernelSums::lost`]).
    pub lost_sums: u64,
    /// Switches and wakings the sums miss (see [`KernelSums::missed`]).
    pub missed_sums: u64,
    /// The traced threads together, from the CPUs' occupancy records.
    pub parallelism: KernelParallelism,
    /// The threads by process, by PID.
    pub processes: Vec<KernelProcess>,
}

/// One process's threads together.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelProcess {
    pub pid: u32,
    /// Its main thread's name (another thread's if that one was not seen).
    pub comm: String,
    pub threads: u64,
    pub on_cpu_ns: u64,
    pub runnable_ns: u64,
    /// Of the runs seen whole.
    pub steal_ns: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// How many CPUs ran its threads at once.
    pub parallelism: KernelParallelism,
}

/// How many CPUs ran traced threads at once: the same figures as the
/// full summary's `parallelism`, less those that need the waiting threads
/// (time-sliced time, mean runnable).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelParallelism {
    /// `running_ns[k]`: time during which exactly k CPUs ran a traced
    /// thread (k = 0..ncpus; sums to the window).
    pub running_ns: Vec<u64>,
    /// Two or more at once.
    pub parallel_ns: u64,
    /// One or more.
    pub busy_ns: u64,
    pub mean_running: f64,
    /// Threads waiting for a CPU, on average: their runnable time (the
    /// kernel's counters) over the window.
    pub mean_waiting: f64,
}

/// One thread's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelThread {
    pub tid: u32,
    pub tgid: u32,
    pub comm: String,
    /// It ended while traced.
    pub ended: bool,
    /// Growth of `se.sum_exec_runtime`.
    pub on_cpu_ns: u64,
    /// Growth of `sched_info.run_delay`.
    pub runnable_ns: u64,
    /// Growth of `sched_info.pcount` (switch-ins after a wait).
    pub switch_ins: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// The kernel's sums; `None` when the thread has none (it did not
    /// switch while traced).
    pub sums: Option<SumsFigures>,
}

/// Sleeping and blocked time of one reason (see [`SumsFigures::off_cpu`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReasonTime {
    /// The system call it slept in; `None`: not in one (a kernel thread, a
    /// page fault), or reasons not read.
    pub syscall: Option<u32>,
    /// The kernel counted the sleep as I/O wait.
    pub iowait: bool,
    pub count: u64,
    pub ns: u64,
}

impl ReasonTime {
    /// For people, as the full summary says it: `futex (lock/condvar)`,
    /// `read (I/O)`, `other` (the sums do not tell a blocked sleep outside
    /// a system call, a page fault, from others).
    pub fn describe(&self) -> String {
        let off = crate::event::OffCpu {
            syscall: self.syscall,
            iowait: self.iowait,
            kernel_stack: None,
            user_stack: None,
            stack_lost: false,
        };
        super::waits::WaitKey::of(crate::event::SwitchReason::Sleeping, Some(&off)).describe()
    }
}

/// What a thread's [`ThreadSums`] say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SumsFigures {
    /// Switch-outs (the kernel's switch counts since first sight).
    pub slices: u64,
    /// On-CPU time since the thread's first switch seen (the growth of
    /// `sum_exec_runtime` in the sums).
    pub runs_on_cpu_ns: u64,
    /// Of the runs that ended in a switch-out seen, time the kernel did
    /// not charge (steal, interrupts).
    pub steal_ns: u64,
    /// Those runs as the kernel charged them (what `cpus` splits).
    pub runs_seen_ns: u64,
    pub longest_slice_ns: u64,
    pub migrations: u64,
    /// Waits (`pcount` growth since first sight; the histogram has the
    /// ones seen one by one, and the mean of those the stream lacked).
    /// Percentiles are the middle of their bucket of the kernel's
    /// log-linear histogram (a quarter of an octave), the maximum the top
    /// of the highest bucket used.
    pub wait: DelayStats,
    pub wait_after_wakeup: (u64, u64),
    pub wait_after_preempt: (u64, u64),
    /// Sleeps seen whole, from switch-out to the wakeup's enqueue.
    pub sleeping_ns: u64,
    pub blocked_ns: u64,
    pub voluntary: u64,
    pub involuntary: u64,
    /// Sleeping and blocked time by reason, largest first (the first
    /// eight reasons the thread slept for), and the rest's (count, ns).
    pub off_cpu: Vec<ReasonTime>,
    pub off_cpu_other: (u64, u64),
    /// On-CPU time of the runs seen whole by CPU (CPU, ns), by CPU number,
    /// and the rest's (CPUs beyond the first eight it ran on).
    pub cpus: Vec<(u32, u64)>,
    pub cpus_other_ns: u64,
    /// Who woke it, most often first (the first four wakers seen), and
    /// the wakeups of the rest.
    pub wakers: Vec<Waker>,
    pub wakers_other: u64,
    /// Who took the CPU when it was preempted (the first four seen), with
    /// the waits that followed, longest first; the rest's (ns, count).
    pub preempted_by: Vec<HolderTime>,
    pub preempted_by_others: (u64, u64),
}

/// The summary of what a `--kernel-sums` capture read.
pub fn summarize(k: &KernelSums) -> KernelSummary {
    let traced: BTreeSet<u32> = k
        .start
        .iter()
        .chain(&k.end)
        .map(|c| c.tgid)
        .chain(k.ended.iter().map(|e| e.tgid))
        .collect();
    let names = Names {
        names: &k.names,
        traced: &traced,
    };
    let mut start: BTreeMap<u32, ThreadCounters> = k.start.iter().map(|c| (c.tid, *c)).collect();
    // A thread's start counters are its own only once: a TID that an ended
    // thread had and a later one took starts from zero.
    let mut baseline = |tid: u32, tgid: u32| match start.remove(&tid) {
        Some(c) if c.tgid == tgid => c,
        _ => ThreadCounters {
            ts: 0,
            tid,
            tgid,
            runtime_ns: 0,
            run_delay_ns: 0,
            pcount: 0,
            nvcsw: 0,
            nivcsw: 0,
        },
    };
    let mut ended: Vec<KernelThread> = k
        .ended
        .iter()
        .map(|e| {
            let end = ThreadCounters {
                ts: e.ts,
                tid: e.tid,
                tgid: e.tgid,
                runtime_ns: e.runtime,
                run_delay_ns: e.run_delay,
                pcount: e.pcount,
                nvcsw: e.nvcsw,
                nivcsw: e.nivcsw,
            };
            (
                (e.ts, e.tid),
                (end, Comm::from_bytes(e.comm).to_string(), e.sums),
            )
        })
        .collect::<BTreeMap<_, _>>()
        .into_values()
        .map(|(end, comm, sums)| {
            let b = baseline(end.tid, end.tgid);
            thread(&b, &end, comm, true, Some(&sums), &names)
        })
        .collect();
    let end: BTreeMap<u32, &ThreadCounters> = k.end.iter().map(|c| (c.tid, c)).collect();
    let mut threads: Vec<KernelThread> = Vec::new();
    let mut listed = BTreeSet::new();
    for l in &k.live {
        let Some(e) = end.get(&l.tid) else { continue };
        if !listed.insert(l.tid) {
            continue;
        }
        let b = baseline(l.tid, l.tgid);
        threads.push(thread(
            &b,
            e,
            l.comm.clone(),
            false,
            l.sums.as_ref(),
            &names,
        ));
    }
    threads.sort_by_key(|t| (t.tgid, t.tid));
    ended.sort_by_key(|t| (t.tgid, t.tid));
    threads.append(&mut ended);
    rename_traced(&mut threads);
    // A thread with no sums that ran never switched: it held its CPU
    // for the whole window, a CPU with no occupancy record then.
    let ran = |tid: u32| {
        threads
            .iter()
            .any(|t| t.tid == tid && !t.ended && t.on_cpu_ns > 0)
    };
    let held: Vec<(u32, u32)> = k
        .live
        .iter()
        .filter(|l| l.sums.is_none() && ran(l.tid))
        .filter_map(|l| Some((l.cpu?, l.tgid)))
        .collect();
    let window_ns = k.end_ns.saturating_sub(k.start_ns);
    let occupied = occupied(k.occupancy.profile(k.end_ns, &held), window_ns);
    let mut parallelism = occupied.total;
    parallelism.mean_waiting = mean(threads.iter().map(|t| t.runnable_ns).sum(), window_ns);
    KernelSummary {
        window_ns,
        processes: processes(
            &threads,
            &occupied.processes,
            window_ns,
            parallelism.running_ns.len() - 1,
        ),
        threads,
        lost_sums: k.lost,
        missed_sums: k.missed,
        parallelism,
    }
}

/// `ns` over the window, as a mean count.
fn mean(ns: u64, window: u64) -> f64 {
    if window == 0 {
        0.0
    } else {
        ns as f64 / window as f64
    }
}

/// The threads added up by process, by PID: the counters' totals, the
/// steal of the runs seen whole, and the process's own occupancy of the
/// CPUs.
fn processes(
    threads: &[KernelThread],
    occupied: &BTreeMap<u32, KernelParallelism>,
    window: u64,
    cpus: usize,
) -> Vec<KernelProcess> {
    let mut by_pid: BTreeMap<u32, KernelProcess> = BTreeMap::new();
    for t in threads {
        let p = by_pid.entry(t.tgid).or_insert_with(|| KernelProcess {
            pid: t.tgid,
            comm: t.comm.clone(),
            ..Default::default()
        });
        if t.tid == t.tgid {
            p.comm.clone_from(&t.comm);
        }
        p.threads += 1;
        p.on_cpu_ns += t.on_cpu_ns;
        p.runnable_ns += t.runnable_ns;
        p.steal_ns += t.sums.as_ref().map_or(0, |f| f.steal_ns);
        p.voluntary_switches += t.voluntary_switches;
        p.involuntary_switches += t.involuntary_switches;
    }
    for p in by_pid.values_mut() {
        p.parallelism = match occupied.get(&p.pid) {
            Some(o) => o.clone(),
            // It ran on no CPU in the window.
            None => {
                let mut none = vec![0; cpus + 1];
                none[0] = window;
                profile_figures(none, window)
            }
        };
        p.parallelism.mean_waiting = mean(p.runnable_ns, window);
    }
    by_pid.into_values().collect()
}

/// The CPUs running traced threads, all together and by process (from an
/// [`OccupancyProfile`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Occupied {
    pub(crate) total: KernelParallelism,
    /// By TGID: the processes that ran on a CPU in the window.
    pub(crate) processes: BTreeMap<u32, KernelParallelism>,
}

/// The figures of a step function of how many CPUs ran a set of threads
/// (`running_ns[k]`, k = 0..=ncpus) over a window.
fn profile_figures(running_ns: Vec<u64>, window: u64) -> KernelParallelism {
    let weighted: u64 = running_ns
        .iter()
        .enumerate()
        .map(|(k, ns)| k as u64 * ns)
        .sum();
    KernelParallelism {
        parallel_ns: running_ns.iter().skip(2).sum(),
        busy_ns: running_ns.iter().skip(1).sum(),
        mean_running: mean(weighted, window),
        running_ns,
        mean_waiting: 0.0,
    }
}

/// The figures of an occupancy profile over a window.
fn occupied(p: OccupancyProfile, window: u64) -> Occupied {
    Occupied {
        total: profile_figures(p.total, window),
        processes: p
            .processes
            .into_iter()
            .map(|(g, r)| (g, profile_figures(r, window)))
            .collect(),
    }
}

/// The kernel names a waker or preemptor by its name when first seen,
/// which for a thread just created is still its creator's (a thread is
/// named after it starts): the traced ones take the name the summary
/// gives them.
fn rename_traced(threads: &mut [KernelThread]) {
    let names: BTreeMap<(u32, u32), Comm> = threads
        .iter()
        .map(|t| ((t.tid, t.tgid), Comm::new(&t.comm)))
        .collect();
    for f in threads.iter_mut().filter_map(|t| t.sums.as_mut()) {
        for w in f.wakers.iter_mut().filter(|w| w.context.is_task()) {
            if let Some(c) = names.get(&(w.tid, w.tgid)) {
                w.comm = c.to_string();
            }
        }
        for h in &mut f.preempted_by {
            if let Holder::Task(o) = &mut h.holder
                && let Some(c) = names.get(&(o.tid, o.tgid))
            {
                o.comm = *c;
            }
        }
    }
}

/// What names the wakers of a thread's sums.
struct Names<'a> {
    names: &'a SumsNames,
    /// The traced processes: a waker task of another is named with its
    /// process.
    traced: &'a BTreeSet<u32>,
}

fn thread(
    b: &ThreadCounters,
    e: &ThreadCounters,
    comm: String,
    ended: bool,
    sums: Option<&ThreadSums>,
    names: &Names<'_>,
) -> KernelThread {
    KernelThread {
        tid: e.tid,
        tgid: e.tgid,
        comm,
        ended,
        on_cpu_ns: e.runtime_ns.saturating_sub(b.runtime_ns),
        runnable_ns: e.run_delay_ns.saturating_sub(b.run_delay_ns),
        switch_ins: e.pcount.saturating_sub(b.pcount),
        voluntary_switches: e.nvcsw.saturating_sub(b.nvcsw),
        involuntary_switches: e.nivcsw.saturating_sub(b.nivcsw),
        sums: sums.map(|s| {
            let mut f = figures(s);
            f.wakers = wakers(s, names);
            f
        }),
    }
}

/// The wakers a thread's sums counted, most often first, named as the
/// full summary names them.
fn wakers(s: &ThreadSums, names: &Names<'_>) -> Vec<Waker> {
    let mut v: Vec<Waker> = s
        .wakers
        .iter()
        .filter(|w| w.count != 0)
        .map(|w| waker(w, names))
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then(a.tid.cmp(&b.tid)));
    v
}

/// One waker slot as the full summary's [`Waker`]: its context decoded
/// as a `sched_waking` record's with the same fields would be.
fn waker(w: &WakerSum, names: &Names<'_>) -> Waker {
    let flags = w.flags as u16;
    let mut r = RawEvent::ZERO;
    r.kind = kind::WAKING;
    r.flags = flags;
    if flags & FLAG_CTX_DETAIL != 0 {
        r.aux1 = w.id as u32;
    }
    let mut context = WakeContext::of(&r).unwrap_or_default();
    match &mut context {
        WakeContext::Timer { function, .. } if flags & FLAG_CTX_FUNCTION != 0 => {
            *function = names.names.functions.get(&w.id).copied();
        }
        WakeContext::Hardirq {
            irq: Some(irq),
            name,
        } => *name = names.names.irqs.get(irq).copied(),
        _ => {}
    }
    let task = context.is_task();
    Waker {
        tid: if task { w.id as u32 } else { 0 },
        tgid: if task { w.tgid } else { 0 },
        comm: match context.label() {
            Some(label) => label,
            None => Comm::from_bytes(w.comm).to_string(),
        },
        context,
        process: (task && !names.traced.contains(&w.tgid))
            .then(|| Comm::from_bytes(w.process).to_string()),
        count: w.count,
    }
}

/// What one thread's sums say.
pub(crate) fn figures(s: &ThreadSums) -> SumsFigures {
    SumsFigures {
        slices: s.slices,
        runs_on_cpu_ns: s.runs_exec_ns,
        steal_ns: s.runs_clock_ns.saturating_sub(s.runs_clock_exec_ns),
        runs_seen_ns: s.runs_clock_exec_ns,
        longest_slice_ns: s.longest_run_ns,
        migrations: s.migrations,
        wait: wait_stats(s),
        wait_after_wakeup: (
            s.waits.saturating_sub(s.waits_preempt),
            s.wait_ns.saturating_sub(s.wait_preempt_ns),
        ),
        wait_after_preempt: (s.waits_preempt, s.wait_preempt_ns),
        sleeping_ns: s.sleeping_ns,
        blocked_ns: s.blocked_ns,
        voluntary: s.voluntary,
        involuntary: s.involuntary,
        off_cpu: reasons(s),
        off_cpu_other: (u64::from(s.other_reason.count), s.other_reason.ns),
        cpus: {
            let mut c: Vec<(u32, u64)> = s
                .cpus
                .iter()
                .filter(|c| c.cpu != 0)
                .map(|c| (c.cpu - 1, c.ns))
                .collect();
            c.sort_unstable();
            c
        },
        cpus_other_ns: s.other_cpus_ns,
        wakers: Vec::new(),
        wakers_other: s.other_wakers,
        preempted_by: preemptors(s),
        preempted_by_others: (s.other_preempt_wait_ns, s.other_preempts),
    }
}

/// The preemptors' slots in use, as the full summary's "preempted by":
/// the longest waits first.
fn preemptors(s: &ThreadSums) -> Vec<HolderTime> {
    let mut v: Vec<HolderTime> = s
        .preemptors
        .iter()
        .filter(|p| p.count != 0)
        .map(|p| HolderTime {
            holder: Holder::Task(Occupant {
                tid: p.tid,
                tgid: p.tgid,
                comm: Comm::from_bytes(p.comm),
            }),
            ns: p.wait_ns,
            count: p.count,
        })
        .collect();
    v.sort_by(|a, b| b.ns.cmp(&a.ns).then(b.count.cmp(&a.count)));
    v
}

/// The reasons' slots in use, largest first.
fn reasons(s: &ThreadSums) -> Vec<ReasonTime> {
    let mut v: Vec<ReasonTime> = s
        .reasons
        .iter()
        .filter(|r| r.key != 0)
        .map(|r| {
            let nr = r.key & !(REASON_IOWAIT | REASON_NO_SYSCALL);
            ReasonTime {
                syscall: (r.key & REASON_NO_SYSCALL == 0 && nr > 0).then(|| nr - 1),
                iowait: r.key & REASON_IOWAIT != 0,
                count: u64::from(r.count),
                ns: r.ns,
            }
        })
        .collect();
    v.sort_by(|a, b| b.ns.cmp(&a.ns).then(a.syscall.cmp(&b.syscall)));
    v
}

/// The bucket `b` covers `[floor(b), floor(b + 1))`.
fn bucket_top(b: usize) -> u64 {
    if b + 1 < SUM_BUCKETS {
        sum_bucket_floor(b + 1) - 1
    } else {
        u64::MAX
    }
}

fn wait_stats(s: &ThreadSums) -> DelayStats {
    let counted: u64 = s.hist.iter().map(|&c| u64::from(c)).sum();
    let quantile = |q: f64| -> u64 {
        if counted == 0 {
            return 0;
        }
        let rank = ((q * counted as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, &c) in s.hist.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                let (lo, hi) = (sum_bucket_floor(b), bucket_top(b));
                return lo + (hi - lo) / 2;
            }
        }
        0
    };
    let max_ns = s.hist.iter().rposition(|&c| c != 0).map_or(0, bucket_top);
    DelayStats {
        count: s.waits,
        total_ns: s.wait_ns,
        mean_ns: s.wait_ns.checked_div(s.waits).unwrap_or(0),
        p50_ns: quantile(0.5),
        p99_ns: quantile(0.99),
        max_ns,
    }
}

#[cfg(test)]
mod tests {
    use schedtrace_common::{ThreadEnd, sum_bucket};

    use super::*;
    use crate::trace::occupancy::OccupancyFold;
    use crate::trace::occupancy::tests::occ;
    use crate::trace::{LiveSums, Occupancy};

    /// The step functions of CPUs running traced threads over `[start, end]`,
    /// all together and by process, from the occupancy records of a trace
    /// (see [`OccupancyFold`]); `held`: the CPUs (CPU, TGID) a traced thread
    /// that never switched held throughout.
    fn parallelism(
        occ: &[Occupancy],
        held: &[(u32, u32)],
        start: u64,
        end: u64,
        ncpus: u32,
    ) -> Occupied {
        let mut fold = OccupancyFold::new(start, ncpus);
        for o in occ {
            fold.push(*o);
        }
        occupied(fold.profile(end, held), end.saturating_sub(start))
    }

    #[test]
    fn buckets_are_log_linear_and_cover_every_value() {
        // Below 4, a bucket each; above, four to an octave.
        for v in 0..4u64 {
            assert_eq!(sum_bucket(v), v as usize);
        }
        assert_eq!(sum_bucket(4), 4);
        assert_eq!(sum_bucket(7), 7);
        assert_eq!(sum_bucket(8), 8);
        assert_eq!(sum_bucket(9), 8);
        assert_eq!(sum_bucket(10), 9);
        assert_eq!(sum_bucket(15), 11);
        assert_eq!(sum_bucket(16), 12);
        assert_eq!(sum_bucket(u64::MAX), SUM_BUCKETS - 1);
        // Every bucket's floor is in it, and the value below it is not.
        for b in 0..SUM_BUCKETS {
            let lo = sum_bucket_floor(b);
            assert_eq!(sum_bucket(lo), b, "floor of bucket {b}");
            if b > 0 {
                assert_eq!(sum_bucket(lo - 1), b - 1, "below bucket {b}");
            }
        }
        // A bucket spans at most a quarter of its values.
        for b in 8..SUM_BUCKETS - 1 {
            let (lo, hi) = (sum_bucket_floor(b), bucket_top(b));
            assert!((hi - lo + 1) * 4 <= lo, "bucket {b}: {lo}..={hi}");
        }
    }

    fn sums_with_waits(waits: &[u64], preempted: &[u64]) -> ThreadSums {
        let mut s = ThreadSums::ZERO;
        for &w in waits.iter().chain(preempted) {
            s.waits += 1;
            s.wait_ns += w;
            s.hist[sum_bucket(w)] += 1;
        }
        for &w in preempted {
            s.waits_preempt += 1;
            s.wait_preempt_ns += w;
        }
        s
    }

    #[test]
    fn wait_percentiles_come_from_the_histogram_within_its_bucket() {
        // 98 waits of 10 µs, two of 5 ms.
        let mut waits = vec![10_000u64; 98];
        waits.push(5_000_000);
        let s = sums_with_waits(&waits, &[5_000_000]);
        let w = wait_stats(&s);
        assert_eq!(w.count, 100);
        assert_eq!(w.total_ns, 98 * 10_000 + 10_000_000);
        assert_eq!(w.mean_ns, w.total_ns / 100);
        let near = |got: u64, want: u64| got.abs_diff(want) * 8 <= want;
        assert!(near(w.p50_ns, 10_000), "p50 {}", w.p50_ns);
        assert!(near(w.p99_ns, 5_000_000), "p99 {}", w.p99_ns);
        assert!(w.max_ns >= 5_000_000 && near(w.max_ns, 5_000_000));
        let f = figures(&s);
        assert_eq!(f.wait_after_preempt, (1, 5_000_000));
        assert_eq!(f.wait_after_wakeup, (99, 98 * 10_000 + 5_000_000));
    }

    fn counters(tid: u32, tgid: u32, base: u64) -> ThreadCounters {
        ThreadCounters {
            ts: 0,
            tid,
            tgid,
            runtime_ns: base * 1000,
            run_delay_ns: base * 100,
            pcount: base,
            nvcsw: base,
            nivcsw: base / 2,
        }
    }

    #[test]
    fn totals_are_the_counters_growth_and_an_ended_thread_uses_its_final_counters() {
        let mut ended = ThreadEnd {
            sums: ThreadSums::ZERO,
            ts: 5,
            tid: 12,
            tgid: 10,
            comm: [0; 16],
            runtime: 9000,
            run_delay: 900,
            pcount: 9,
            nvcsw: 9,
            nivcsw: 4,
        };
        ended.comm[..4].copy_from_slice(b"pool");
        // Thread 11 was woken by 13 and preempted by 12, each first seen
        // under its creator's name.
        let mut main_sums = sums_with_waits(&[100], &[]);
        main_sums.wakers[0] = slot(13, 0, 10, 2, "main", "main");
        main_sums.preemptors[0] = schedtrace_common::PreemptSum {
            tid: 12,
            tgid: 10,
            count: 1,
            wait_ns: 0,
            comm: *b"main\0\0\0\0\0\0\0\0\0\0\0\0",
        };
        let k = KernelSums {
            start_ns: 100,
            end_ns: 1100,
            // Thread 11 was there at the start; 12 too, and ended; 13 is new.
            start: vec![counters(11, 10, 2), counters(12, 10, 3)],
            end: vec![counters(11, 10, 7), counters(13, 10, 4)],
            live: vec![
                LiveSums {
                    tid: 11,
                    tgid: 10,
                    comm: "main".into(),
                    sums: Some(main_sums),
                    cpu: Some(0),
                },
                LiveSums {
                    tid: 13,
                    tgid: 10,
                    comm: "new".into(),
                    sums: None,
                    cpu: Some(1),
                },
            ],
            ended: vec![ended],
            lost: 1,
            missed: 2,
            occupancy: OccupancyFold::new(100, 2),
            ncpus: 2,
            names: SumsNames::default(),
        };
        let s = summarize(&k);
        assert_eq!(s.window_ns, 1000);
        assert_eq!((s.lost_sums, s.missed_sums), (1, 2));
        let tids: Vec<(u32, bool)> = s.threads.iter().map(|t| (t.tid, t.ended)).collect();
        assert_eq!(tids, [(11, false), (13, false), (12, true)]);
        let main = &s.threads[0];
        assert_eq!(
            (main.on_cpu_ns, main.runnable_ns, main.switch_ins),
            (5000, 500, 5)
        );
        assert_eq!((main.voluntary_switches, main.involuntary_switches), (5, 2));
        let f = main.sums.as_ref().unwrap();
        assert_eq!(f.wait.count, 1);
        // Named as the summary names the threads, not as first seen.
        assert_eq!(f.wakers[0].comm, "new");
        assert_eq!(
            super::super::summary::holder_label(&f.preempted_by[0].holder),
            "pool 12 (PID 10)"
        );
        let new = &s.threads[1];
        assert_eq!((new.on_cpu_ns, new.switch_ins), (4000, 4));
        assert!(new.sums.is_none());
        let pool = &s.threads[2];
        assert_eq!(pool.comm, "pool");
        assert_eq!(
            (pool.on_cpu_ns, pool.runnable_ns, pool.switch_ins),
            (6000, 600, 6)
        );
        assert_eq!((pool.voluntary_switches, pool.involuntary_switches), (6, 3));
        // Thread 13 ran and never switched: it held CPU 1 throughout.
        assert_eq!(s.parallelism.running_ns, [0, 1000, 0]);
        // Runnable 500 + 400 (13 is new: from zero) + 600 over 1000 ns.
        assert!((s.parallelism.mean_waiting - 1.5).abs() < 1e-9);
        // One process: its row adds up its threads (its main thread, 10,
        // was not seen: it takes the first one's name), and its
        // occupancy is all of it.
        assert_eq!(s.processes.len(), 1);
        let p = &s.processes[0];
        assert_eq!((p.pid, p.comm.as_str(), p.threads), (10, "main", 3));
        let sum = |f: fn(&KernelThread) -> u64| s.threads.iter().map(f).sum::<u64>();
        assert_eq!(p.on_cpu_ns, sum(|t| t.on_cpu_ns));
        assert_eq!(p.runnable_ns, 1500);
        assert_eq!(p.voluntary_switches, sum(|t| t.voluntary_switches));
        assert_eq!(p.involuntary_switches, sum(|t| t.involuntary_switches));
        assert_eq!(p.parallelism, s.parallelism);
    }

    fn slot(id: u64, flags: u16, tgid: u32, count: u64, comm: &str, process: &str) -> WakerSum {
        let mut w = WakerSum {
            id,
            flags: u32::from(flags),
            tgid,
            count,
            ..WakerSum::ZERO
        };
        w.comm[..comm.len()].copy_from_slice(comm.as_bytes());
        w.process[..process.len()].copy_from_slice(process.as_bytes());
        w
    }

    #[test]
    fn wakers_are_named_as_the_full_summary_names_them_most_often_first() {
        use schedtrace_common::ctx;
        let mut s = ThreadSums::ZERO;
        let hrtimer = (ctx::HRTIMER << ctx::SHIFT) | FLAG_CTX_FUNCTION;
        let softirq = (ctx::SOFTIRQ << ctx::SHIFT) | FLAG_CTX_DETAIL;
        let irq = (ctx::HARDIRQ << ctx::SHIFT) | FLAG_CTX_DETAIL;
        s.wakers = [
            slot(11, 0, 10, 5, "node-main", "node"),
            slot(0xffff_ffff_8100_1000, hrtimer, 0, 9, "", ""),
            slot(31, 0, 30, 2, "curl", "client"),
            slot(3, softirq, 0, 1, "", ""),
        ];
        s.other_wakers = 4;
        let mut names = SumsNames::default();
        names.functions.insert(
            0xffff_ffff_8100_1000,
            crate::event::Symbol::new("hrtimer_wakeup"),
        );
        let traced = BTreeSet::from([10]);
        let n = Names {
            names: &names,
            traced: &traced,
        };
        let got: Vec<(String, u64)> = wakers(&s, &n)
            .iter()
            .map(|w| (w.describe(), w.count))
            .collect();
        assert_eq!(
            got,
            [
                ("timer hrtimer_wakeup".to_string(), 9),
                ("node-main (11)".to_string(), 5),
                ("curl (31) of process client (30)".to_string(), 2),
                ("softirq NET_RX".to_string(), 1),
            ]
        );
        // A device interrupt is named from /proc/interrupts' names.
        s.wakers = [
            slot(24, irq, 0, 3, "", ""),
            WakerSum::ZERO,
            WakerSum::ZERO,
            WakerSum::ZERO,
        ];
        names
            .irqs
            .insert(24, crate::event::Symbol::new("virtio0-input"));
        let n = Names {
            names: &names,
            traced: &traced,
        };
        let w = wakers(&s, &n);
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].tid, w[0].count), (0, 3));
        assert!(
            w[0].describe().contains("virtio0-input"),
            "{}",
            w[0].describe()
        );
        assert_eq!(figures(&s).wakers_other, 4);
    }

    #[test]
    fn preemptors_are_holders_longest_wait_first_with_the_rest_apart() {
        let mut s = ThreadSums::ZERO;
        let mut p = |i: usize, tid: u32, count: u64, wait_ns: u64, comm: &str| {
            s.preemptors[i] = schedtrace_common::PreemptSum {
                tid,
                tgid: 10,
                count,
                wait_ns,
                comm: [0; 16],
            };
            s.preemptors[i].comm[..comm.len()].copy_from_slice(comm.as_bytes());
        };
        p(0, 11, 5, 100, "pool0");
        p(1, 12, 2, 900, "pool1");
        s.other_preempts = 3;
        s.other_preempt_wait_ns = 40;
        let f = figures(&s);
        let got: Vec<(String, u64, u64)> = f
            .preempted_by
            .iter()
            .map(|h| {
                (
                    super::super::summary::holder_label(&h.holder),
                    h.count,
                    h.ns,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("pool1 12 (PID 10)".to_string(), 2, 900),
                ("pool0 11 (PID 10)".to_string(), 5, 100)
            ]
        );
        assert_eq!(f.preempted_by_others, (40, 3));
    }

    #[test]
    fn cpus_are_by_number_with_the_rest_apart() {
        let mut s = ThreadSums::ZERO;
        s.cpus[0] = schedtrace_common::CpuSum {
            cpu: 4,
            _pad: 0,
            ns: 30,
        };
        s.cpus[1] = schedtrace_common::CpuSum {
            cpu: 1,
            _pad: 0,
            ns: 70,
        };
        s.other_cpus_ns = 5;
        let f = figures(&s);
        assert_eq!(f.cpus, [(0, 70), (3, 30)]);
        assert_eq!(f.cpus_other_ns, 5);
    }

    #[test]
    fn parallelism_steps_with_each_cpus_changes_from_its_first_records_before() {
        // CPU 0 ran a traced thread from the start until 40, and again
        // from 60; CPU 1 ran none until 20, one from 20 to 70. Window
        // 0..100. Records arrive out of order, as CPUs write them.
        let o = [
            occ(60, 0, 0, 7),
            occ(20, 1, 0, 7),
            occ(40, 0, 7, 0),
            occ(70, 1, 7, 0),
        ];
        let p = parallelism(&o, &[], 0, 100, 2);
        // 0..20: 1; 20..40: 2; 40..60: 1; 60..70: 2; 70..100: 1.
        assert_eq!(p.total.running_ns, [0, 70, 30]);
        assert_eq!((p.total.parallel_ns, p.total.busy_ns), (30, 100));
        assert!((p.total.mean_running - 1.3).abs() < 1e-9);
        // One process: it is all of them.
        assert_eq!(p.processes.len(), 1);
        assert_eq!(p.processes[&7], p.total);
        // A first record between two traced threads says the CPU ran one
        // since the start; records outside the window are clipped.
        let o = [occ(5, 1, 7, 7), occ(150, 1, 7, 0)];
        let p = parallelism(&o, &[], 10, 110, 2);
        assert_eq!(p.total.running_ns, [0, 100, 0]);
        // A CPU without records runs none, unless a thread held it.
        let p = parallelism(&[], &[(1, 7)], 0, 50, 2);
        assert_eq!(p.total.running_ns, [0, 50, 0]);
        assert_eq!(p.processes[&7].running_ns, [0, 50, 0]);
        let p = parallelism(&[], &[], 0, 50, 2);
        assert_eq!(p.total.running_ns, [50, 0, 0]);
        assert!(p.processes.is_empty());
    }

    #[test]
    fn each_process_steps_with_the_cpus_it_holds() {
        // Window 0..100 on 2 CPUs. CPU 0 runs process 7 until 30, then
        // process 8 until 80, then nothing. CPU 1 runs process 8 from 10
        // to 50, then process 7 from 50 on. Both CPUs busy from 10 to 80.
        let o = [
            occ(30, 0, 7, 8),
            occ(10, 1, 0, 8),
            occ(80, 0, 8, 0),
            occ(50, 1, 8, 7),
        ];
        let p = parallelism(&o, &[], 0, 100, 2);
        // Together: 0..10 one, 10..80 two, 80..100 one.
        assert_eq!(p.total.running_ns, [0, 30, 70]);
        // 7: CPU 0 0..30, CPU 1 50..100, never both at once.
        assert_eq!(p.processes[&7].running_ns, [20, 80, 0]);
        assert_eq!(p.processes[&7].parallel_ns, 0);
        // 8: CPU 1 10..50, CPU 0 30..80: both 30..50.
        assert_eq!(p.processes[&8].running_ns, [30, 50, 20]);
        assert_eq!(p.processes[&8].busy_ns, 70);
        assert!((p.processes[&8].mean_running - 0.9).abs() < 1e-9);
        // The processes' running time adds up to all of it.
        let area = |q: &KernelParallelism| q.mean_running * 100.0;
        assert!((area(&p.processes[&7]) + area(&p.processes[&8]) - area(&p.total)).abs() < 1e-9);
    }

    #[test]
    fn reasons_decode_their_keys_largest_first() {
        use schedtrace_common::reason_key;
        let mut s = ThreadSums::ZERO;
        s.reasons[0] = schedtrace_common::ReasonSum {
            key: reason_key(Some(202), false),
            count: 3,
            ns: 30,
        };
        s.reasons[1] = schedtrace_common::ReasonSum {
            key: reason_key(Some(0), true),
            count: 1,
            ns: 50,
        };
        s.reasons[2] = schedtrace_common::ReasonSum {
            key: reason_key(None, false),
            count: 2,
            ns: 20,
        };
        s.other_reason.count = 4;
        s.other_reason.ns = 7;
        let f = figures(&s);
        let got: Vec<(Option<u32>, bool, u64, u64)> = f
            .off_cpu
            .iter()
            .map(|r| (r.syscall, r.iowait, r.count, r.ns))
            .collect();
        // read (0) in I/O wait, futex (202), then no system call.
        assert_eq!(
            got,
            [
                (Some(0), true, 1, 50),
                (Some(202), false, 3, 30),
                (None, false, 2, 20)
            ]
        );
        assert_eq!(f.off_cpu_other, (4, 7));
    }

    #[test]
    fn steal_is_the_runs_clock_time_the_kernel_did_not_charge() {
        let mut s = ThreadSums::ZERO;
        s.runs_clock_exec_ns = 900;
        s.runs_clock_ns = 1000;
        assert_eq!(figures(&s).steal_ns, 100);
        // The clock cannot lag the charge, but a sum must not wrap if it did.
        s.runs_clock_ns = 800;
        assert_eq!(figures(&s).steal_ns, 0);
    }
}
