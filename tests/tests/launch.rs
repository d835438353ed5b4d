//! Launch mode (`schedtrace [--cpus LIST] -- CMD`), run-queue waits against
//! schedstat, and following child processes: the real program, as root.

use std::os::unix::fs::MetadataExt;

use schedtrace_tests::*;

fn workload_cmd(seconds: &str) -> Vec<String> {
    vec![
        bin().to_string_lossy().into_owned(),
        "__workload".into(),
        "--seconds".into(),
        seconds.into(),
    ]
}

fn launch_json(extra: &[&str], cmd: &[String]) -> anyhow::Result<serde_json::Value> {
    let mut args: Vec<&str> = vec!["--records", "--format", "json", "-q"];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend(cmd.iter().map(String::as_str));
    let (status, out, err) = run_schedtrace(&args)?;
    assert!(status.success(), "schedtrace {args:?} failed: {err}");
    summary_from(&out)
}

#[test]
fn one_core_takes_turns_all_cores_run_in_parallel() -> anyhow::Result<()> {
    takes_turns_then_runs_in_parallel(&[])
}

/// The same lesson from a trace without wakeups: the time-sliced figure
/// rests on the waits the analysis puts back from the kernel's run delay.
#[test]
fn without_wakeups_one_core_takes_turns_all_cores_run_in_parallel() -> anyhow::Result<()> {
    takes_turns_then_runs_in_parallel(&["--no-wakeups"])
}

/// The built-in workload pinned to CPU 0 (its threads take turns: no
/// parallel time, much time-sliced), then on every CPU (parallel time).
fn takes_turns_then_runs_in_parallel(extra: &[&str]) -> anyhow::Result<()> {
    require_root();
    let mut args = vec!["--cpus", "0"];
    args.extend_from_slice(extra);
    let one = launch_json(&args, &workload_cmd("1"))?;
    assert_eq!(one["wakeups"], extra.is_empty());
    assert_eq!(one["target"]["pinned_cpus"], serde_json::json!([0]));
    for t in one["threads"].as_array().unwrap() {
        let cpus: Vec<&String> = t["cpus"].as_object().unwrap().keys().collect();
        assert!(cpus.iter().all(|c| *c == "0"), "ran off CPU 0: {t}");
    }
    let p1 = &one["parallelism"];
    assert_eq!(p1["parallel_ns"], 0, "no two threads at once on one core");
    assert_eq!(p1["running_ns"][2], 0);
    assert!(p1["time_sliced_ns"].as_u64().unwrap() > 100_000_000);

    let all = launch_json(extra, &workload_cmd("1"))?;
    let p2 = &all["parallelism"];
    // How much the threads must have overlapped follows from the kernel's
    // own on-CPU counters, whatever else the machine was running: with
    // `r[k]` the time k threads ran, sum(k * r[k]) is the threads' on-CPU
    // time and sum(r[k]) the window, so the parallel time sum(k>=2, r[k])
    // is at least (on-CPU - window) / (ncpus - 1). On a quiet 2-CPU machine
    // four CPU-bound pool threads make that most of the window; under
    // foreign load it shrinks, and so may the lesson, but never the rule.
    // The profile is drawn from tracepoint timestamps, the counters from
    // the run-queue clock: each run's two ends can be read up to a few µs
    // apart from their tracepoints (the instructions between them in
    // __schedule, see `timeline_on_cpu_ns` in docs/summary-schema.md), so
    // each run may shift the comparison by that much: 10 µs per run is
    // allowed.
    let window = all["window_ns"].as_u64().unwrap();
    let ncpus = all["ncpus"].as_u64().unwrap();
    let (mut on_cpu, mut runs) = (0u64, 0u64);
    for t in all["threads"].as_array().unwrap() {
        on_cpu += t["on_cpu_ns"].as_u64().unwrap();
        runs += 1
            + t["voluntary_switches"].as_u64().unwrap()
            + t["involuntary_switches"].as_u64().unwrap();
    }
    let overlap = on_cpu.saturating_sub(window) / (ncpus - 1).max(1);
    let must = overlap.saturating_sub(runs * 10_000);
    let parallel = p2["parallel_ns"].as_u64().unwrap();
    eprintln!(
        "all cores: on-CPU {on_cpu} ns in a {window} ns window on {ncpus} CPUs, {runs} runs: \
         parallel {parallel} ns, at least {must} ns"
    );
    assert!(parallel >= must, "threads on different CPUs overlap: {p2}");
    Ok(())
}

#[test]
fn run_queue_wait_matches_schedstat() -> anyhow::Result<()> {
    waits_match_schedstat(Some("0"), &[])
}

/// Without wakeups the waits are the kernel's own run-delay accounting
/// too, and the switch counts still hold.
#[test]
fn without_wakeups_run_queue_wait_matches_schedstat() -> anyhow::Result<()> {
    waits_match_schedstat(Some("0"), &["--no-wakeups"])
}

/// The same on every CPU: threads that wait are also moved between run
/// queues, and the run delay keeps the wait from before the move.
#[test]
fn without_wakeups_waits_match_schedstat_across_cpus() -> anyhow::Result<()> {
    waits_match_schedstat(None, &["--no-wakeups"])
}

/// Trace a workload of 6 busy threads on `cpus` (all of them if `None`) so
/// they queue behind each other, and compare each thread's runnable time
/// with the second field of its schedstat. The switch records carry the
/// kernel's `run_delay` in both modes, and the threads are parked before
/// `before` and after `after` (see [`assert_totals_match_kernel`]), so the
/// figures must be equal to the nanosecond, as must the switch counts.
fn waits_match_schedstat(cpus: Option<&str>, extra: &[&str]) -> anyhow::Result<()> {
    require_root();
    let mut w = Workload::start_on(cpus, 1.0, 4, 2)?;
    let pid = w.pid.to_string();
    let mut args = vec!["--records", "--pid", &pid, "--format", "json"];
    args.extend_from_slice(extra);
    let tracer = Tracer::start(&args)?;
    let before = settled_counters(w.pid)?;
    w.go()?;
    w.wait_done()?;
    let after = settled_counters(w.pid)?;
    let (status, out) = tracer.stop()?;
    assert!(status.success());
    w.finish()?;
    let s = summary_from(&out)?;
    assert_eq!(s["wakeups"], extra.is_empty());
    assert_eq!(s["lost_events"], 0);
    assert_totals_match_kernel(&s, &before, &after);
    for (tid, t) in threads_by_tid(&s) {
        if !extra.is_empty() {
            assert!(t["wakers"].as_array().unwrap().is_empty());
        }
        let kernel = after.schedstat[&tid].wait_ns - before.schedstat[&tid].wait_ns;
        let traced = t["states"]["runnable_ns"].as_u64().unwrap();
        let waits = t["wait"]["total_ns"].as_u64().unwrap();
        eprintln!("tid {tid}: waits {waits} in {} runs", t["wait"]["count"]);
        // Every thread of the workload sleeps and is woken many times, and
        // the kernel's run delay counts each wakeup's enqueue-to-run time,
        // so every figure compared is nonzero. How much more a thread
        // waits depends on what else ran (the light V8 helpers waited
        // 19.6 ms in one run on all CPUs), so no larger floor holds.
        assert!(kernel > 0, "tid {tid} waited for a CPU");
        assert!(t["wait"]["count"].as_u64().unwrap() > 0, "tid {tid}");
        // Every wait ends in a switch-in, where the kernel adds it up.
        assert_eq!(
            waits, traced,
            "tid {tid}: waits ending in a run vs runnable"
        );
    }
    Ok(())
}

#[test]
fn exit_status_is_propagated() -> anyhow::Result<()> {
    require_root();
    let (status, _, _) = run_schedtrace(&["-q", "--", "sh", "-c", "exit 7"])?;
    assert_eq!(status.code(), Some(7));
    let (status, _, _) = run_schedtrace(&["-q", "--", "sh", "-c", "kill -TERM $$"])?;
    assert_eq!(status.code(), Some(128 + 15));
    let (status, _, err) = run_schedtrace(&["-q", "--", "/nonexistent/program"])?;
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("cannot run"), "{err}");
    Ok(())
}

#[test]
fn launched_command_runs_as_the_sudo_user_and_files_are_theirs() -> anyhow::Result<()> {
    require_root();
    // A directory of theirs: schedtrace writes files as the user who ran
    // sudo, so only where they may (docs/security.md).
    let dir = tempdir();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534))?;
    let file = dir.join("t.jsonl");
    let out = schedtrace()
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65534")
        .env("SUDO_USER", "nobody")
        .args(["-q", "--format", "json", "--json", file.to_str().unwrap()])
        .args(["--", "sh", "-c", "id -u; id -g"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)?;
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("65534"), "uid of the command");
    assert_eq!(lines.next(), Some("65534"), "gid of the command");
    let meta = std::fs::metadata(&file)?;
    assert_eq!(
        (meta.uid(), meta.gid()),
        (65534, 65534),
        "the trace file is theirs"
    );
    // --as-root keeps root.
    let out = schedtrace()
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65534")
        .env("SUDO_USER", "nobody")
        .args([
            "--records",
            "-q",
            "--format",
            "json",
            "--as-root",
            "--",
            "id",
            "-u",
        ])
        .output()?;
    assert!(String::from_utf8(out.stdout)?.starts_with("0\n"));
    Ok(())
}

#[test]
fn follow_children_adds_forked_processes() -> anyhow::Result<()> {
    require_root();
    // `; true` keeps sh from exec'ing the workload in place.
    let script = format!(
        "{} __workload --seconds 0.3 --pool 1 --helpers 0; true",
        bin().display()
    );
    let cmd = vec!["sh".to_string(), "-c".to_string(), script];
    let followed = launch_json(&["--follow-children"], &cmd)?;
    let procs = followed["processes"].as_array().unwrap();
    assert!(procs.len() >= 2, "sh and its child: {procs:?}");
    let child = procs
        .iter()
        .find(|p| p["comm"] == "node-main")
        .expect("the forked workload is traced");
    // Its threads work for 0.3 s of wall time: it ran (how much CPU it got
    // depends on the machine's load; a soak run under load saw under 100 ms).
    assert!(child["on_cpu_ns"].as_u64().unwrap() > 0, "{child}");
    assert!(
        followed["threads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["comm"].as_str().unwrap().starts_with("libuv-worker")),
        "the child's threads are traced"
    );

    let alone = launch_json(&[], &cmd)?;
    let procs = alone["processes"].as_array().unwrap();
    assert_eq!(
        procs.len(),
        1,
        "without --follow-children only sh: {procs:?}"
    );
    assert!(alone["threads"].as_array().unwrap().len() == 1);
    Ok(())
}

#[test]
fn node_pinned_and_unpinned_differ() -> anyhow::Result<()> {
    require_root();
    let app = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node/app.js");
    let cmd = vec![
        "node".to_string(),
        app.to_string_lossy().into_owned(),
        "1".to_string(),
    ];
    let one = launch_json(&["--cpus", "0"], &cmd)?;
    let all = launch_json(&[], &cmd)?;
    for s in [&one, &all] {
        let threads = s["threads"].as_array().unwrap();
        assert!(
            threads.len() >= 7,
            "main, libuv pool, V8 helpers, workers: {}",
            threads.len()
        );
        assert_eq!(s["lost_events"], 0);
    }
    assert_eq!(one["parallelism"]["parallel_ns"], 0);
    assert!(one["parallelism"]["time_sliced_ns"].as_u64().unwrap() > 0);
    assert!(all["parallelism"]["parallel_ns"].as_u64().unwrap() > 0);
    Ok(())
}
