//! Several processes in one trace (a repeated `--pid`): each one's threads
//! exact against the kernel's counters, a process that was not named never
//! in the trace, and tracing that ends only when every target has exited.

use std::process::Command;
use std::time::Duration;

use schedtrace_tests::cgroup::TestCgroup;
use schedtrace_tests::hostile::cc;
use schedtrace_tests::*;

/// A gated [`SHAPES_C`] workload: `mode` with `threads` threads.
fn shape(mode: &str, threads: usize, seconds: &str) -> anyhow::Result<Workload> {
    let mut cmd = Command::new(cc("shapes", SHAPES_C));
    cmd.args([mode, seconds]);
    Workload::spawn(cmd, threads)
}

#[test]
fn repeated_pid_traces_each_process_exactly_and_no_other() -> anyhow::Result<()> {
    require_root();
    let mut queue = shape("queue", 5, "1")?;
    let mut pingpong = shape("pingpong", 3, "1")?;
    // Runs beside them, at the same time, and is not named.
    let mut bystander = shape("timers", 5, "1")?;
    let (a, b) = (queue.pid.to_string(), pingpong.pid.to_string());
    let tracer = Tracer::start(&["--records", "--pid", &a, "--pid", &b, "--format", "json"])?;
    let before = settled_counters_of(&[queue.pid, pingpong.pid])?;
    for w in [&mut queue, &mut pingpong, &mut bystander] {
        w.go()?;
    }
    for w in [&mut queue, &mut pingpong, &mut bystander] {
        assert!(w.wait_done()?.is_empty(), "no children in these shapes");
    }
    let after = settled_counters_of(&[queue.pid, pingpong.pid])?;
    let (status, out) = tracer.stop()?;
    assert!(status.success(), "schedtrace failed: {status}");
    let s = summary_from(&out)?;
    assert_eq!(s["lost_events"], 0, "no loss expected");
    // Every thread of both processes to the nanosecond and the switch, and
    // the summary's threads are exactly theirs: none of the bystander's,
    // though it ran on the same CPUs throughout.
    assert_totals_match_kernel(&s, &before, &after);
    assert_eq!(s["target"]["pid"], queue.pid);
    assert_eq!(s["target"]["also"][0]["pid"], pingpong.pid);
    let procs = s["processes"].as_array().unwrap();
    let tgids: Vec<u64> = procs.iter().map(|p| p["tgid"].as_u64().unwrap()).collect();
    assert_eq!(tgids.len(), 2, "{procs:?}");
    for (w, threads) in [(&queue, 5), (&pingpong, 3)] {
        let p = procs
            .iter()
            .find(|p| p["tgid"] == w.pid)
            .unwrap_or_else(|| panic!("process {} in {procs:?}", w.pid));
        assert_eq!(p["threads_seen"], threads, "{p}");
        // A process's on-CPU time is its own threads' and nobody else's.
        let own: u64 = s["threads"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["tgid"] == w.pid)
            .map(|t| t["on_cpu_ns"].as_u64().unwrap())
            .sum();
        assert_eq!(p["on_cpu_ns"], own, "{p}");
        assert!(own > 0, "process {} ran", w.pid);
    }
    for w in [queue, pingpong, bystander] {
        w.finish()?;
    }
    Ok(())
}

#[test]
fn tracing_ends_once_every_target_has_exited() -> anyhow::Result<()> {
    require_root();
    let mut first = shape("timers", 5, "0.1")?;
    let mut second = shape("timers", 5, "0.1")?;
    let pids = [first.pid, second.pid];
    let (a, b) = (first.pid.to_string(), second.pid.to_string());
    let mut tracer = Tracer::start(&["--records", "--pid", &a, "--pid", &b, "--format", "json"])?;
    first.go()?;
    first.wait_done()?;
    first.finish()?;
    // The first target is gone; the second is parked until released, so
    // schedtrace must still be tracing however long this waits. 20 times
    // the grace schedtrace keeps reading after its targets exit (50 ms)
    // gives a tracer that stopped at the first exit ample time to show it.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        tracer.child.try_wait()?.is_none(),
        "schedtrace stopped while PID {b} still ran"
    );
    second.go()?;
    second.wait_done()?;
    second.finish()?;
    let (status, out) = tracer.wait()?;
    assert!(status.success(), "schedtrace failed: {status}");
    let s = summary_from(&out)?;
    assert_eq!(s["stop_reason"], "target-exited");
    for pid in pids {
        let exited = s["threads"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["tgid"] == pid && t["exited_ns"].is_u64())
            .count();
        assert_eq!(exited, 5, "every thread of {pid} is seen to exit");
    }
    Ok(())
}

#[test]
fn repeated_pid_is_refused_when_one_is_not_there_or_named_twice() -> anyhow::Result<()> {
    require_root();
    let w = shape("timers", 5, "0.1")?;
    let pid = w.pid.to_string();
    // A PID above pid_max never names a process.
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")?
        .trim()
        .parse()?;
    let absent = (max + 1).to_string();
    for (args, says) in [
        (vec!["--pid", &pid, "--pid", &absent], "no process with PID"),
        (vec!["--pid", &pid, "--pid", &pid], "given twice"),
    ] {
        let (status, stdout, stderr) = run_schedtrace(&args)?;
        assert!(!status.success(), "{args:?} should fail");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?} printed a summary: {stdout}");
    }
    drop(w);
    Ok(())
}

#[test]
fn comm_traces_every_process_of_that_name_and_no_other() -> anyhow::Result<()> {
    require_root();
    // A name no other process here has, made of this test's PID (comm
    // keeps 15 characters); the bystander keeps the usual one.
    let name = format!("sel{}-w", std::process::id() % 1_000_000);
    let named = |mode: &str, threads| -> anyhow::Result<Workload> {
        let mut cmd = Command::new(cc("shapes", SHAPES_C));
        cmd.args([mode, "0.5"]).env("SHAPES_MAIN", &name);
        Workload::spawn(cmd, threads)
    };
    let mut one = named("timers", 5)?;
    let mut two = named("pingpong", 3)?;
    let mut other = shape("timers", 5, "0.5")?;
    let pattern = format!("sel{}-*", std::process::id() % 1_000_000);
    let tracer = Tracer::start(&["--comm", &pattern, "--format", "json"])?;
    let pids = [one.pid, two.pid];
    let before = settled_counters_of(&pids)?;
    for w in [&mut one, &mut two, &mut other] {
        w.go()?;
    }
    for w in [&mut one, &mut two, &mut other] {
        w.wait_done()?;
    }
    let after = settled_counters_of(&pids)?;
    let (status, out) = tracer.stop()?;
    assert!(status.success(), "schedtrace failed: {status}");
    let s = summary_from(&out)?;
    // Both processes of that name, exact; the other one not at all.
    assert_totals_match_kernel(&s, &before, &after);
    let mut traced: Vec<u64> = vec![s["target"]["pid"].as_u64().unwrap()];
    traced.extend(
        s["target"]["also"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["pid"].as_u64().unwrap()),
    );
    traced.sort_unstable();
    let mut want: Vec<u64> = pids.iter().map(|&p| p.into()).collect();
    want.sort_unstable();
    assert_eq!(traced, want);
    for w in [one, two, other] {
        w.finish()?;
    }
    Ok(())
}

/// A process that renames itself, while tracing runs, to a name `--comm`
/// matches (`prctl(PR_SET_NAME)` on its main thread: the kernel's
/// `task_rename`) is traced from then on. Only a thread of the process can
/// rename it (another process's write to `/proc/PID/comm` is refused), so
/// the join comes while it runs: the workload renames itself after
/// creating its threads and before its gate. The trace then holds, for
/// each thread, at least all it ran after the gate and at most all it ran.
/// Nothing had the name when tracing started; a bystander never takes it
/// and is never traced.
#[test]
fn comm_traces_a_process_that_renames_itself_to_the_name_while_tracing() -> anyhow::Result<()> {
    require_root();
    let tag = format!("ren{}", std::process::id() % 1_000_000);
    let tracer = Tracer::start(&["--comm", &format!("{tag}-*"), "--format", "json"])?;
    assert!(
        tracer.stderr_head.contains("(0 processes so far)"),
        "{}",
        tracer.stderr_head
    );
    let mut cmd = Command::new(cc("shapes", SHAPES_C));
    cmd.args(["pingpong", "0.5"])
        .env("SHAPES_MAIN", format!("{tag}-x"));
    let mut joiner = Workload::spawn(cmd, 3)?;
    let mut bystander = shape("timers", 5, "0.5")?;
    let before = settled_counters(joiner.pid)?;
    for w in [&mut joiner, &mut bystander] {
        w.go()?;
    }
    for w in [&mut joiner, &mut bystander] {
        w.wait_done()?;
    }
    let after = settled_counters(joiner.pid)?;
    let (status, out) = tracer.stop()?;
    assert!(status.success(), "schedtrace failed: {status}");
    let s = summary_from(&out)?;
    assert_eq!(s["lost_events"], 0, "no loss expected");
    assert_traced_between(&s, &before, &after, &after);
    for w in [joiner, bystander] {
        w.finish()?;
    }
    Ok(())
}

/// The summary's threads are exactly those of `after`, and each one's
/// on-CPU time is at least its growth from `before` (all it ran after the
/// gate, where tracing had begun) and at most its whole time in `whole`.
fn assert_traced_between(
    s: &serde_json::Value,
    before: &Counters,
    after: &Counters,
    whole: &Counters,
) {
    assert_threads_are(s, after);
    let threads = threads_by_tid(s);
    for (tid, a) in &whole.schedstat {
        let traced = threads[tid]["on_cpu_ns"].as_u64().unwrap();
        let b = before.schedstat[tid].on_cpu_ns;
        let a = a.on_cpu_ns;
        assert!(
            (a - b..=a).contains(&traced),
            "thread {tid}: traced {traced} ns, kernel {b} ns at its gate and {a} ns in all"
        );
    }
}

/// A process that execs a file whose name `--comm` matches, after tracing
/// started, is traced from its exec (the kernel's `sched_process_exec`).
/// Its other threads, all created after the exec, are in the trace from
/// their birth: exact against their whole counters. Its main thread ran a
/// few µs between its fork and its exec, before it had the name: the trace
/// holds at least all it ran after its gate and at most all it ran.
#[test]
fn comm_traces_a_process_that_execs_the_name_while_tracing() -> anyhow::Result<()> {
    require_root();
    let dir = tempdir();
    let tag = format!("exe{}", std::process::id() % 1_000_000);
    let file = dir.path().join(format!("{tag}-w"));
    std::fs::copy(cc("shapes", SHAPES_C), &file)?;
    let tracer = Tracer::start(&["--comm", &format!("{tag}-*"), "--format", "json"])?;
    let mut cmd = Command::new(&file);
    cmd.args(["pingpong", "0.5"]);
    let mut execd = Workload::spawn(cmd, 3)?;
    let mut bystander = shape("timers", 5, "0.5")?;
    let before = settled_counters(execd.pid)?;
    for w in [&mut execd, &mut bystander] {
        w.go()?;
    }
    for w in [&mut execd, &mut bystander] {
        w.wait_done()?;
    }
    let after = settled_counters(execd.pid)?;
    let (status, out) = tracer.stop()?;
    assert!(status.success(), "schedtrace failed: {status}");
    let s = summary_from(&out)?;
    assert_eq!(s["lost_events"], 0, "no loss expected");
    let mut born = after.clone();
    born.schedstat.remove(&execd.pid);
    born.switches.remove(&execd.pid);
    assert!(!born.schedstat.is_empty(), "the workload has threads");
    assert_threads_match_kernel(&s, &Counters::default(), &born);
    let mut main = after.clone();
    main.schedstat.retain(|&tid, _| tid == execd.pid);
    assert_traced_between(&s, &before, &after, &main);
    for w in [execd, bystander] {
        w.finish()?;
    }
    Ok(())
}

#[test]
fn a_target_in_another_pid_namespace_shows_both_pids() -> anyhow::Result<()> {
    require_root();
    // `unshare` forks the command into a new PID namespace, where it is 1.
    let mut unshare = Command::new("unshare")
        .args(["--fork", "--pid", "--mount-proc", "sleep", "30"])
        .spawn()?;
    let outer = unshare.id();
    let children = format!("/proc/{outer}/task/{outer}/children");
    let inner: u32 = wait_for(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&children).ok()?;
        let pid: u32 = text.split_whitespace().next()?.parse().ok()?;
        // Once it is sleep (it starts as unshare's copy).
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "sleep").then_some(pid)
    })?;
    let (status, out, err) = run_schedtrace(&[
        "--records",
        "--pid",
        &inner.to_string(),
        "--duration",
        "0.2",
        "--format",
        "json",
    ])?;
    let _ = unshare.kill();
    let _ = unshare.wait();
    assert!(status.success(), "{err}");
    let s = summary_from(&out)?;
    assert_eq!(s["target"]["pid"], inner, "the host's PID");
    assert_eq!(s["target"]["ns_pid"], 1, "its PID in its namespace");
    assert!(
        err.contains(&format!("PID {inner} (sleep, PID 1 in its namespace)")),
        "{err}"
    );
    // A process in schedtrace's own namespace has no second PID.
    let w = shape("timers", 5, "0.1")?;
    let (status, out, err) = run_schedtrace(&[
        "--records",
        "--pid",
        &w.pid.to_string(),
        "--duration",
        "0.1",
        "--format",
        "json",
    ])?;
    assert!(status.success(), "{err}");
    assert!(summary_from(&out)?["target"].get("ns_pid").is_none());
    Ok(())
}

#[test]
fn cgroup_traces_its_processes_and_those_that_enter_later_exactly() -> anyhow::Result<()> {
    require_root();
    let cg = TestCgroup::create("targets")?;
    let mut inside = shape("queue", 5, "1")?;
    cg.add(inside.pid)?;
    // Outside when tracing starts; moved in while it runs.
    let mut joiner = shape("pingpong", 3, "1")?;
    // Runs beside them, at the same time, and never enters.
    let mut bystander = shape("timers", 5, "1")?;
    let tracer = Tracer::start(&["--cgroup", cg.path_str(), "--format", "json"])?;
    assert!(
        tracer
            .stderr_head
            .contains(&format!("cgroup {} (1 process so far)", cg.path_str())),
        "{}",
        tracer.stderr_head
    );
    cg.add(joiner.pid)?;
    // Every thread of both sleeps at its gate from here to `go`, so its
    // counters stand still: all it runs from now on is in the trace.
    let pids = [inside.pid, joiner.pid];
    let before = settled_counters_of(&pids)?;
    for w in [&mut inside, &mut joiner, &mut bystander] {
        w.go()?;
    }
    for w in [&mut inside, &mut joiner, &mut bystander] {
        w.wait_done()?;
    }
    let after = settled_counters_of(&pids)?;
    let (status, out) = tracer.stop()?;
    assert!(status.success(), "schedtrace failed: {status}");
    let s = summary_from(&out)?;
    assert_eq!(s["lost_events"], 0, "no loss expected");
    assert_totals_match_kernel(&s, &before, &after);
    assert_eq!(s["target"]["pid"], pids[0]);
    assert_eq!(s["target"]["cgroup"]["path"], cg.path_str());
    let mut tgids: Vec<u64> = s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["tgid"].as_u64().unwrap())
        .collect();
    tgids.sort_unstable();
    let mut want: Vec<u64> = pids.iter().map(|&p| p.into()).collect();
    want.sort_unstable();
    assert_eq!(tgids, want, "the cgroup's processes, and no other");
    for w in [inside, joiner, bystander] {
        w.finish()?;
    }
    Ok(())
}

#[test]
fn cgroup_tracing_goes_on_when_it_empties_and_takes_what_enters_later() -> anyhow::Result<()> {
    require_root();
    let cg = TestCgroup::create("empties")?;
    let mut first = shape("timers", 5, "0.1")?;
    cg.add(first.pid)?;
    let tracer = Tracer::start(&["--cgroup", cg.path_str(), "--format", "json"])?;
    first.go()?;
    first.wait_done()?;
    first.finish()?;
    // The cgroup is empty now, and may gain processes: tracing goes on
    // (10 times the 50 ms schedtrace reads on after its targets exit).
    std::thread::sleep(Duration::from_millis(500));
    let mut tracer = tracer;
    assert!(
        tracer.child.try_wait()?.is_none(),
        "schedtrace stopped when the cgroup's processes exited"
    );
    let mut later = shape("pingpong", 3, "0.1")?;
    cg.add(later.pid)?;
    let before = settled_counters(later.pid)?;
    later.go()?;
    later.wait_done()?;
    let after = settled_counters(later.pid)?;
    let (status, out) = tracer.stop()?;
    assert!(status.success(), "schedtrace failed: {status}");
    let s = summary_from(&out)?;
    assert_eq!(s["stop_reason"], "signal SIGINT");
    // The first process exited in the window: every thread seen to end.
    let threads = s["threads"].as_array().unwrap();
    let ended = threads
        .iter()
        .filter(|t| t["tgid"] == first_pid(&s) && t["exited_ns"].is_u64())
        .count();
    assert_eq!(ended, 5, "{threads:?}");
    // The one that entered the emptied cgroup: traced from then on, exact.
    let p = s["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["tgid"] == later.pid)
        .unwrap_or_else(|| panic!("process {} in {}", later.pid, s["processes"]));
    assert_eq!(p["threads_seen"], 3, "{p}");
    for (tid, st) in &after.schedstat {
        let t = threads
            .iter()
            .find(|t| t["tid"] == *tid)
            .unwrap_or_else(|| panic!("thread {tid} of {}", later.pid));
        let grew = st.on_cpu_ns - before.schedstat[tid].on_cpu_ns;
        assert_eq!(
            t["on_cpu_ns"], grew,
            "thread {tid}: on-CPU traced vs schedstat"
        );
    }
    later.finish()?;
    Ok(())
}

/// The PID of the process a cgroup's trace started with.
fn first_pid(s: &serde_json::Value) -> u64 {
    s["target"]["pid"].as_u64().unwrap()
}

#[test]
fn cgroup_is_refused_when_it_is_not_a_cgroup_v2_directory() -> anyhow::Result<()> {
    require_root();
    let dir = tempdir();
    let file = dir.path().join("f");
    std::fs::write(&file, "x")?;
    let missing = dir.path().join("missing");
    for (path, says) in [
        (dir.path(), "not a cgroup v2 directory"),
        (file.as_path(), "not a directory"),
        (missing.as_path(), "no such directory"),
    ] {
        let p = path.to_str().unwrap();
        let (status, stdout, stderr) = run_schedtrace(&["--cgroup", p])?;
        assert!(!status.success(), "--cgroup {p} should fail");
        assert!(stderr.contains(says), "--cgroup {p}: {stderr}");
        assert!(
            stdout.is_empty(),
            "--cgroup {p} printed a summary: {stdout}"
        );
    }
    Ok(())
}

#[test]
fn all_traces_every_process_and_each_matches_the_kernel() -> anyhow::Result<()> {
    require_root();
    let mut queue = shape("queue", 5, "0.5")?;
    let mut pingpong = shape("pingpong", 3, "0.5")?;
    let tracer = Tracer::start(&["--all", "--format", "json"])?;
    assert!(
        tracer.stderr_head.contains("tracing every task"),
        "{}",
        tracer.stderr_head
    );
    let own = tracer.child.id();
    let pids = [queue.pid, pingpong.pid];
    let before = settled_counters_of(&pids)?;
    for w in [&mut queue, &mut pingpong] {
        w.go()?;
    }
    for w in [&mut queue, &mut pingpong] {
        w.wait_done()?;
    }
    let after = settled_counters_of(&pids)?;
    let (status, out) = tracer.stop()?;
    assert!(status.success(), "schedtrace failed: {status}");
    let s = summary_from(&out)?;
    assert_eq!(s["target"]["all_but"], own, "every task but schedtrace's");
    // Losses would not change this: totals come from the kernel's
    // counters in the records that remain (and a whole machine's events
    // may overflow the ring on a loaded one).
    eprintln!(
        "lost events: {}, anomalies: {}",
        s["lost_events"], s["anomalies"]
    );
    assert_threads_match_kernel(&s, &before, &after);
    // Without losses, nothing contradicts: the switches the kernel's
    // stream lacks (it hides every event whose current task is PID 1's)
    // are runs inferred on one side and ended unseen on the other.
    if s["lost_events"] == 0 {
        assert_eq!(s["anomalies"], 0, "{}", s["threads"]);
    }
    let procs = s["processes"].as_array().unwrap();
    for pid in pids {
        let p = procs
            .iter()
            .find(|p| p["tgid"] == pid)
            .unwrap_or_else(|| panic!("process {pid} in the summary"));
        let kernel: u64 = after
            .schedstat
            .iter()
            .filter(|(tid, _)| tids(pid).unwrap_or_default().contains(tid))
            .map(|(tid, a)| a.on_cpu_ns - before.schedstat[tid].on_cpu_ns)
            .sum();
        assert_eq!(p["on_cpu_ns"], kernel, "process {pid}: on-CPU vs schedstat");
    }
    // The machine's other processes are there (this test's own, which
    // released the workloads), and schedtrace is not.
    let tgids: Vec<u64> = procs.iter().map(|p| p["tgid"].as_u64().unwrap()).collect();
    assert!(tgids.contains(&u64::from(std::process::id())), "{tgids:?}");
    assert!(!tgids.contains(&u64::from(own)), "schedtrace traced itself");
    for w in [queue, pingpong] {
        w.finish()?;
    }
    Ok(())
}

#[test]
fn all_is_refused_beside_other_targets() -> anyhow::Result<()> {
    require_root();
    for args in [
        vec!["--all", "--pid", "1"],
        vec!["--all", "--comm", "x"],
        vec!["--all", "--", "true"],
    ] {
        let (status, stdout, stderr) = run_schedtrace(&args)?;
        assert!(!status.success(), "{args:?} should fail");
        assert!(stderr.contains("cannot be used with"), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
    Ok(())
}
