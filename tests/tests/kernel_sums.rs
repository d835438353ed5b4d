//! The default capture (`--kernel-sums`): the per-thread sums the switch
//! and waking programs keep in the kernel, checked against the kernel's
//! own counters. Each run is a gated
//! workload of the fidelity tests ([`SHAPES_C`]) traced with `--pid`,
//! parked outside the `[before, after]` snapshots, so every run, wait and
//! switch of the traced stretch has both its switch-in and its switch-out
//! inside the trace, and the sums must equal the counters' growth:
//!
//! - `slices` = voluntary + involuntary switches, `wait.count` = the
//!   growth of `pcount` (schedstat's third field), and the runs add up to
//!   the on-CPU time: the sums add the growth of the thread's own
//!   counters from one switch seen to the next, so a switch-in the
//!   kernel's stream lacks (it does, now and then, on two CPUs: a first
//!   version that counted waits switch by switch was one short in 4 of
//!   12 unpinned runs) still adds its wait and its run;
//! - every sleep seen whole is in the slot of its reason (the system call
//!   it slept in) or the rest's: by reason, they add up to the sleeping
//!   and blocked time;
//! - waits add up to the growth of `run_delay` when no thread moves while
//!   queued: pinned to one CPU. A thread's first wait after attach is
//!   measured from its last enqueue (`last_queued`): a queued task moved
//!   to another CPU has the part before the move added to `run_delay` at
//!   the move (`sched_info_dequeue`), which only a switch-out seen before
//!   would have counted. Unpinned, the sums may fall short by that, never
//!   exceed.

use std::process::Command;

use schedtrace_tests::hostile::cc;
use schedtrace_tests::*;

/// Trace `shapes MODE 1` (`threads` threads before it starts), pinned to
/// CPU 0 or not, with `--kernel-sums`; check the totals against the
/// kernel's counters as the fidelity tests do, and return the summary with
/// the snapshots.
fn traced(
    mode: &str,
    threads: usize,
    pinned: bool,
) -> anyhow::Result<(serde_json::Value, Counters, Counters)> {
    require_root();
    let exe = cc("shapes", SHAPES_C);
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args([mode, "1"]);
    let mut w = Workload::spawn(cmd, threads)?;
    let pid = w.pid.to_string();
    let mut st = schedtrace();
    // The default capture: no option that needs records.
    st.args(["--pid", &pid, "--format", "json"]);
    let tracer = Tracer::start_cmd(st)?;
    let before = settled_counters(w.pid)?;
    w.go()?;
    w.wait_done()?;
    let after = settled_counters(w.pid)?;
    let (status, out) = tracer.stop()?;
    assert!(status.success(), "schedtrace failed: {status}");
    w.finish()?;
    let s = summary_from(&out)?;
    assert_eq!(
        s["mode"], "kernel-sums",
        "the default keeps the sums in the kernel"
    );
    assert_eq!(s["schema"], "schedtrace-kernel-summary");
    assert_eq!(s["lost_events"], 0, "no loss expected on a quiet machine");
    assert_eq!(s["lost_sums"], 0, "every thread's sums were kept and read");
    // Every thread was there before the programs attached: schedtrace
    // made their sums then, and a program's look-up of an existing value
    // does not fail (only making one may: its allocation may not wait).
    assert_eq!(s["missed_sums"], 0, "no switch or waking missed");
    assert_totals_match_kernel(&s, &before, &after);
    Ok((s, before, after))
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The checks every run must pass, pinned or not; `pinned`: waits exact too.
fn check_sums(s: &serde_json::Value, before: &Counters, after: &Counters, pinned: bool) {
    for (tid, t) in threads_by_tid(s) {
        let b = before.schedstat.get(&tid).copied().unwrap_or_default();
        let a = after.schedstat[&tid];
        let switch_ins = a.timeslices - b.timeslices;
        let switches = u(&t["voluntary_switches"]) + u(&t["involuntary_switches"]);
        eprintln!(
            "tid {tid} {}: {switch_ins} switch-ins, {switches} switches, sums {}",
            t["comm"], t
        );
        if switches == 0 {
            // It never left its gate: it has no sums.
            assert!(t["sums"].is_null(), "tid {tid}: {t}");
            continue;
        }
        assert_eq!(u(&t["slices"]), switches, "tid {tid}: slices");
        assert_eq!(u(&t["wait"]["count"]), switch_ins, "tid {tid}: waits");
        assert_eq!(
            u(&t["wait_after_wakeup"]["count"]) + u(&t["wait_after_preempt"]["count"]),
            switch_ins,
            "tid {tid}: waits by cause"
        );
        assert_eq!(
            u(&t["sums"]["runs_on_cpu_ns"]),
            u(&t["on_cpu_ns"]),
            "tid {tid}: runs seen whole"
        );
        let (waited, runnable) = (u(&t["wait"]["total_ns"]), u(&t["states"]["runnable_ns"]));
        if pinned {
            assert_eq!(waited, runnable, "tid {tid}: waits");
            assert_eq!(u(&t["migrations"]), 0, "tid {tid}: pinned");
        } else {
            assert!(waited <= runnable, "tid {tid}: waits {waited} > {runnable}");
        }
        // Every sleep seen whole is in one reason's slot or the rest's.
        let by_reason: u64 = t["off_cpu"]
            .as_array()
            .expect("off_cpu")
            .iter()
            .map(|r| u(&r["ns"]))
            .sum::<u64>()
            + u(&t["off_cpu_other"]["ns"]);
        assert_eq!(
            by_reason,
            u(&t["states"]["sleeping_ns"]) + u(&t["states"]["blocked_ns"]),
            "tid {tid}: off-CPU time by reason"
        );
        // The percentiles come from the histogram, in order.
        let w = &t["wait"];
        assert!(u(&w["p50_ns"]) <= u(&w["p99_ns"]) && u(&w["p99_ns"]) <= u(&w["max_ns"]));
        // The runs seen whole, split by CPU with nothing lost between the
        // slots (eight: more than this machine's CPUs, so no rest).
        let cpus = t["cpus"].as_object().expect("cpus");
        let by_cpu: u64 = cpus.values().map(u).sum::<u64>() + u(&t["cpus_other_ns"]);
        assert_eq!(by_cpu, u(&t["sums"]["runs_seen_ns"]), "tid {tid}: by CPU");
        assert!(by_cpu <= u(&t["on_cpu_ns"]), "tid {tid}: by CPU");
        assert_eq!(u(&t["cpus_other_ns"]), 0, "tid {tid}");
        for cpu in cpus.keys() {
            let cpu: u64 = cpu.parse().expect("a CPU number");
            assert!(cpu < u(&s["ncpus"]), "tid {tid}: CPU {cpu}");
        }
        if pinned {
            assert!(cpus.keys().all(|c| c == "0"), "tid {tid}: pinned to CPU 0");
        }
        check_wakers(s, tid, &t);
        // Each preemption seen is its preemptor's (or the rest's), with
        // the waits that followed it: together, the waits after
        // preemption, to the nanosecond.
        let preempted = t["preempted_by"].as_array().expect("preempted_by");
        let others = &t["preempted_by_others"];
        let count: u64 =
            preempted.iter().map(|p| u(&p["count"])).sum::<u64>() + u(&others["count"]);
        let waited: u64 = preempted.iter().map(|p| u(&p["ns"])).sum::<u64>() + u(&others["ns"]);
        assert_eq!(
            count,
            u(&t["sums"]["involuntary"]),
            "tid {tid}: preemptions"
        );
        assert_eq!(
            waited,
            u(&t["wait_after_preempt"]["total_ns"]),
            "tid {tid}: waits after preemption"
        );
        assert!(
            preempted
                .iter()
                .all(|p| p["kind"] == "task" && u(&p["count"]) > 0)
        );
    }
}

/// The wakers the waking program counted: every voluntary switch-out in
/// the window but a thread's last (it may still be asleep at the end) is
/// followed by a wakeup of it before it runs again, all within the
/// counted stretch (attach to stop, around the window): a sleeping task
/// becomes runnable only through `try_to_wake_up`, which fires
/// `sched_waking`. (A sleep cut short by a pending signal counts as
/// voluntary with no wakeup; these workloads get no signals.)
fn check_wakers(s: &serde_json::Value, tid: u32, t: &serde_json::Value) {
    assert_eq!(s["wakeups"], true);
    let wakers = t["wakers"].as_array().expect("wakers");
    let woken: u64 = wakers.iter().map(|w| u(&w["count"])).sum::<u64>() + u(&t["wakers_other"]);
    let voluntary = u(&t["voluntary_switches"]);
    assert!(
        woken + 1 >= voluntary,
        "tid {tid}: {woken} wakeups for {voluntary} sleeps"
    );
    // Most often first.
    assert!(
        wakers
            .windows(2)
            .all(|p| u(&p[0]["count"]) >= u(&p[1]["count"]))
    );
}

/// The waker a thread had most often.
fn top_waker(t: &serde_json::Value) -> &serde_json::Value {
    &t["wakers"][0]
}

/// The parallelism profile: `running_ns[k]` for k = 0..ncpus, adding up to
/// the window; pinned to one CPU, never two at once (the other CPU runs
/// none of the workload's threads, so it writes no occupancy record that
/// says it does).
fn check_parallelism(s: &serde_json::Value, pinned: bool) -> Vec<u64> {
    let p = &s["parallelism"];
    let running: Vec<u64> = p["running_ns"]
        .as_array()
        .expect("running_ns")
        .iter()
        .map(u)
        .collect();
    eprintln!("parallelism: {p}");
    assert_eq!(running.len() as u64, u(&s["ncpus"]) + 1, "k = 0..ncpus");
    assert_eq!(running.iter().sum::<u64>(), u(&s["window_ns"]), "{p}");
    assert_eq!(u(&p["busy_ns"]), running[1..].iter().sum::<u64>());
    assert!(u(&p["busy_ns"]) > 0, "the workload ran: {p}");
    if pinned {
        assert_eq!(u(&p["parallel_ns"]), 0, "pinned to one CPU: {p}");
    }
    running
}

/// A mutex+condvar queue feeding four pool threads, all on CPU 0: the pool
/// threads preempt and wait for each other.
#[test]
fn pinned_task_queue_sums_equal_the_kernels_counters() -> anyhow::Result<()> {
    let (s, before, after) = traced("queue", 5, true)?;
    check_sums(&s, &before, &after, true);
    check_parallelism(&s, true);
    let preempted: u64 = threads_by_tid(&s)
        .values()
        .map(|t| u(&t["wait_after_preempt"]["count"]))
        .sum();
    eprintln!("{preempted} waits after preemption");
    Ok(())
}

/// Spin/sleep threads on `nanosleep`, all on CPU 0: the sleeps are seen,
/// most of them in `nanosleep`, and every thread waits behind the others.
#[test]
fn pinned_timer_threads_sleep_and_wait_as_the_kernel_counts() -> anyhow::Result<()> {
    let (s, before, after) = traced("timers", 5, true)?;
    check_sums(&s, &before, &after, true);
    check_parallelism(&s, true);
    for (tid, t) in threads_by_tid(&s) {
        let comm = t["comm"].as_str().unwrap_or_default();
        if comm.starts_with("tick") {
            // Each loop sleeps 1-4 ms in `nanosleep`; the loops before the
            // last end in a wakeup inside the traced second.
            assert!(
                u(&t["states"]["sleeping_ns"]) >= 1_000_000,
                "tid {tid}: {t}"
            );
            assert!(u(&t["wait"]["count"]) > 10, "tid {tid}: {t}");
            // Most of that sleep is in `nanosleep` (glibc makes it
            // `clock_nanosleep`).
            let top = &t["off_cpu"][0];
            assert!(
                matches!(
                    top["syscall"].as_str(),
                    Some("clock_nanosleep" | "nanosleep")
                ),
                "tid {tid}: {t}"
            );
            // Those sleeps end in the sleep's timer, an interrupt
            // context, never credited to the task it interrupted.
            let w = top_waker(&t);
            assert_eq!(w["kind"], "timer", "tid {tid}: {t}");
            assert_eq!(w["function"], "hrtimer_wakeup", "tid {tid}: {t}");
            assert_eq!(w["tid"], 0, "tid {tid}: {t}");
        }
    }
    Ok(())
}

/// Pipe ping-pong on both CPUs: thousands of short runs; waits cannot
/// exceed the kernel's.
#[test]
fn ping_pong_on_two_cpus_counts_every_run_and_wait() -> anyhow::Result<()> {
    let (s, before, after) = traced("pingpong", 3, false)?;
    check_sums(&s, &before, &after, false);
    check_parallelism(&s, false);
    let tid_of = |name: &str| -> u32 {
        threads_by_tid(&s)
            .into_iter()
            .find(|(_, t)| t["comm"] == name)
            .map(|(tid, _)| tid)
            .unwrap_or_else(|| panic!("no thread {name}"))
    };
    for (tid, t) in threads_by_tid(&s) {
        let comm = t["comm"].as_str().unwrap_or_default();
        if comm == "ping" || comm == "pong" {
            assert!(u(&t["slices"]) > 500, "tid {tid}: {t}");
            // Each sleeps in `read` on its pipe until the other writes:
            // the other is its waker but for the gate and the park.
            let other = tid_of(if comm == "ping" { "pong" } else { "ping" });
            let w = top_waker(&t);
            assert_eq!(w["kind"], "task", "tid {tid}: {t}");
            assert_eq!(u(&w["tid"]), u64::from(other), "tid {tid}: {t}");
            assert!(u(&w["count"]) > 500, "tid {tid}: {t}");
        }
    }
    Ok(())
}

/// The same timer threads on both CPUs: four threads each on a CPU about a
/// quarter of the time, and the scheduler puts a woken thread on an idle
/// CPU when there is one, so two run at once for part of the second.
#[test]
fn unpinned_timer_threads_run_in_parallel() -> anyhow::Result<()> {
    let (s, before, after) = traced("timers", 5, false)?;
    check_sums(&s, &before, &after, false);
    let running = check_parallelism(&s, false);
    assert!(running[2] > 0, "no two threads ran at once: {running:?}");
    Ok(())
}

/// Two processes in one trace, each pinned to its own CPU: the `queue`
/// pool on CPU 0, the timer threads on CPU 1. Each process's row adds up
/// its threads, and its occupancy is its own: neither ever runs two
/// threads at once (one CPU each), while the two together do (they run
/// side by side for most of their second). A CPU is held by one process
/// at a time, so the processes' running time adds up to the total's to
/// the nanosecond.
#[test]
fn two_processes_have_their_own_rows_and_occupancy() -> anyhow::Result<()> {
    require_root();
    let exe = cc("shapes", SHAPES_C);
    let spawn = |cpu: &str, mode: &str| {
        let mut c = Command::new("taskset");
        c.args(["-c", cpu]).arg(&exe).args([mode, "1"]);
        Workload::spawn(c, 5)
    };
    let mut a = spawn("0", "queue")?;
    let mut b = spawn("1", "timers")?;
    let pids = [a.pid, b.pid];
    let mut st = schedtrace();
    st.args(["--pid", &a.pid.to_string(), "--pid", &b.pid.to_string()]);
    st.args(["--format", "json"]);
    let tracer = Tracer::start_cmd(st)?;
    let before = settled_counters_of(&pids)?;
    a.go()?;
    b.go()?;
    a.wait_done()?;
    b.wait_done()?;
    let after = settled_counters_of(&pids)?;
    let (status, out) = tracer.stop()?;
    assert!(status.success(), "schedtrace failed: {status}");
    a.finish()?;
    b.finish()?;
    let s = summary_from(&out)?;
    assert_eq!(s["mode"], "kernel-sums");
    assert_eq!(s["lost_events"], 0, "no loss expected on a quiet machine");
    assert_totals_match_kernel(&s, &before, &after);
    let total = check_parallelism(&s, false);
    let procs = s["processes"].as_array().expect("processes");
    let tgids: Vec<u64> = procs.iter().map(|p| u(&p["tgid"])).collect();
    let mut want: Vec<u64> = pids.iter().map(|&p| u64::from(p)).collect();
    want.sort_unstable();
    assert_eq!(tgids, want, "a row per process, by PID");
    let area = |running: &[u64]| -> u64 {
        running
            .iter()
            .enumerate()
            .map(|(k, ns)| k as u64 * ns)
            .sum()
    };
    let mut areas = 0;
    for p in procs {
        let tgid = u(&p["tgid"]);
        let threads: Vec<serde_json::Value> = threads_by_tid(&s)
            .into_values()
            .filter(|t| u(&t["tgid"]) == tgid)
            .collect();
        assert_eq!(u(&p["threads"]), threads.len() as u64, "{p}");
        for (field, path) in [
            ("on_cpu_ns", &["on_cpu_ns"][..]),
            ("runnable_ns", &["states", "runnable_ns"]),
            ("voluntary_switches", &["voluntary_switches"]),
            ("involuntary_switches", &["involuntary_switches"]),
        ] {
            let sum: u64 = threads
                .iter()
                .map(|t| u(path.iter().fold(t, |v, k| &v[*k])))
                .sum();
            assert_eq!(u(&p[field]), sum, "{field} of {tgid}: {p}");
        }
        let running: Vec<u64> = p["parallelism"]["running_ns"]
            .as_array()
            .expect("running_ns")
            .iter()
            .map(u)
            .collect();
        assert_eq!(running.len(), total.len(), "{p}");
        assert_eq!(running.iter().sum::<u64>(), u(&s["window_ns"]), "{p}");
        assert_eq!(u(&p["parallelism"]["parallel_ns"]), 0, "one CPU: {p}");
        assert!(running[1] > 0, "it ran: {p}");
        areas += area(&running);
    }
    assert_eq!(areas, area(&total), "{s}");
    assert!(total[2] > 0, "the two never ran at once: {total:?}");
    Ok(())
}
