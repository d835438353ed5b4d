//! The real eBPF program against real multi-threaded workloads, checked
//! against the kernel's own per-thread accounting in /proc.

use std::time::Duration;

use schedtrace_tests::*;

#[test]
fn on_cpu_time_and_switch_counts_match_the_kernel() -> anyhow::Result<()> {
    require_root();
    let mut w = Workload::start(1.5, 4, 2)?;
    let wpid = w.pid;
    let pid = w.pid.to_string();
    let tracer = Tracer::start(&["--records", "--pid", &pid, "--format", "json"])?;
    assert!(tracer.stderr_head.contains(&format!("PID {pid}")));
    assert!(
        tracer.stderr_head.contains("7 threads"),
        "{}",
        tracer.stderr_head
    );
    let before = settled_counters(w.pid)?;
    w.go()?;
    w.wait_done()?;
    let after = settled_counters(w.pid)?;
    let (status, out) = tracer.stop()?;
    assert!(status.success(), "schedtrace failed: {status}");
    w.finish()?;

    let summary: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(summary["lost_events"], 0);
    assert_eq!(summary["version"], 1);
    assert!(summary["window_ns"].as_u64().unwrap() > 1_000_000_000);
    eprintln!(
        "anomalies {}, events {}",
        summary["anomalies"], summary["events"]
    );
    let threads = threads_by_tid(&summary);
    for t in threads.values() {
        assert_eq!(t["tgid"].as_u64(), Some(wpid as u64), "a stranger in {t}");
    }
    assert_totals_match_kernel(&summary, &before, &after);
    for (tid, t) in &threads {
        assert!(
            t["on_cpu_ns"].as_u64().unwrap() > 10_000_000,
            "tid {tid} did real work"
        );
    }
    Ok(())
}

#[test]
fn json_lines_file_has_header_events_and_end() -> anyhow::Result<()> {
    require_root();
    let dir = tempdir();
    let file = dir.join("trace.jsonl");
    let mut w = Workload::start(0.3, 2, 1)?;
    let wpid = w.pid;
    let pid = w.pid.to_string();
    let tracer = Tracer::start(&["--pid", &pid, "--json", file.to_str().unwrap()])?;
    w.go()?;
    w.wait_done()?;
    let (status, _) = tracer.stop()?;
    assert!(status.success());
    w.finish()?;
    let text = std::fs::read_to_string(&file)?;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines[0]["type"], "header");
    assert_eq!(lines[0]["target"]["pid"], wpid);
    assert_eq!(lines[0]["clock"], "CLOCK_MONOTONIC");
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["complete"], true);
    let events = lines
        .iter()
        .filter(|l| {
            !matches!(
                l["type"].as_str(),
                Some("header" | "thread" | "counters" | "end" | "lost")
            )
        })
        .count() as u64;
    assert_eq!(end["events"].as_u64(), Some(events));
    assert!(events > 100, "only {events} events");
    let mut last = 0;
    for l in &lines[1..lines.len() - 1] {
        // (The /proc counters at stop are read before the last events are
        // drained, and written after them, with the time they were read.)
        if let Some(ts) = l["ts"].as_u64()
            && l["type"] != "thread"
            && l["type"] != "counters"
        {
            assert!(ts >= last, "events out of order at {l}");
            last = ts;
        }
    }
    // The saved trace gives the same summary offline.
    let out = schedtrace()
        .args(["report", file.to_str().unwrap(), "--format", "json"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(s["events"].as_u64(), Some(events));
    assert_eq!(s["threads"].as_array().unwrap().len(), 4);
    Ok(())
}

#[test]
fn stops_by_itself_when_the_target_exits() -> anyhow::Result<()> {
    require_root();
    let mut w = Workload::start(0.2, 1, 1)?;
    let pid = w.pid.to_string();
    let tracer = Tracer::start(&["--records", "--pid", &pid, "--format", "json"])?;
    w.go()?;
    w.wait_done()?;
    w.finish()?;
    let (status, out) = tracer.wait()?;
    assert!(status.success());
    let s: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(s["stop_reason"], "target-exited");
    // Every thread's exit was seen.
    for t in s["threads"].as_array().unwrap() {
        assert!(t["exited_ns"].as_u64().is_some(), "no exit for {t}");
    }
    Ok(())
}

#[test]
fn duration_stops_tracing() -> anyhow::Result<()> {
    require_root();
    let w = Workload::start(5.0, 1, 0)?;
    let started = std::time::Instant::now();
    let out = schedtrace()
        .args([
            "--records",
            "--pid",
            &w.pid.to_string(),
            "--duration",
            "0.5",
            "--format",
            "json",
            "-q",
        ])
        .output()?;
    assert!(out.status.success());
    assert!(started.elapsed() < Duration::from_secs(5));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(s["stop_reason"], "duration");
    // With --duration the window is exactly that long, however late
    // schedtrace got the CPU to detach (docs/summary-schema.md).
    assert_eq!(s["window_ns"], 500_000_000u64);
    Ok(())
}

#[test]
fn a_tiny_buffer_loses_events_and_says_so() -> anyhow::Result<()> {
    require_root();
    let dir = tempdir();
    let file = dir.join("lossy.jsonl");
    // Ping-pong on one CPU (~270k switches/s) with schedtrace's reader on
    // that same CPU: a 4 KiB ring buffer (46 records) must overflow.
    let out = std::process::Command::new("taskset")
        .args(["-c", "0"])
        .arg(bin())
        .args([
            "--buffer-size",
            "4K",
            "--format",
            "json",
            "-q",
            "--cpus",
            "0",
        ])
        .args(["--json", file.to_str().unwrap(), "--"])
        .args(["perf", "bench", "sched", "pipe", "-l", "100000"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The launched command prints to the same stdout before the summary.
    let stdout = String::from_utf8(out.stdout.clone())?;
    let json_start = stdout.find("\n{").map_or(0, |i| i + 1);
    let s: serde_json::Value = serde_json::from_str(&stdout[json_start..])?;
    // The name after exec (perf bench renames its main thread later on).
    let comm = s["target"]["comm"].as_str().unwrap();
    assert!(["perf", "sched-pipe"].contains(&comm), "{comm}");
    let lost = s["lost_events"].as_u64().unwrap();
    assert!(lost > 0, "a 4 KiB buffer must overflow here");
    assert_eq!(lost_per_cpu_total(&s), lost);
    let text = std::fs::read_to_string(&file)?;
    let end: serde_json::Value = serde_json::from_str(text.lines().last().unwrap())?;
    assert_eq!(end["type"], "end");
    assert_eq!(end["lost_events"].as_u64(), Some(lost));
    let marks: u64 = text
        .lines()
        .filter(|l| l.contains("\"type\":\"lost\""))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["count"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(
        marks, lost,
        "every loss is marked in the trace when it was noticed"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("events were lost"),
        "the loss is reported on stderr even with --quiet"
    );
    // Reading the trace back says so too, whatever is printed (here only a
    // folded-stacks file, which has no place for it).
    let folded = file.with_extension("folded");
    let out = std::process::Command::new(bin())
        .args(["report", file.to_str().unwrap(), "-q", "--folded"])
        .arg(&folded)
        .output()?;
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("the trace lacks {lost} events")),
        "report warns of the loss: {err}"
    );
    Ok(())
}

#[test]
fn nothing_stays_loaded_after_exit() -> anyhow::Result<()> {
    require_root();
    // Programs are told apart by ID, so other tracers on the machine do not matter.
    let ids = || -> anyhow::Result<std::collections::BTreeSet<u64>> { loaded_prog_ids() };
    let w = Workload::start(5.0, 1, 0)?;
    for kill in [false, true] {
        let before = ids()?;
        let mut tracer = Tracer::start(&["--records", "--pid", &w.pid.to_string()])?;
        let ours: Vec<u64> = ids()?.difference(&before).copied().collect();
        assert!(
            ours.len() >= 7,
            "our programs are loaded while tracing: {ours:?}"
        );
        if kill {
            // Even SIGKILL leaves nothing: links and programs die with the fds.
            tracer.child.kill()?;
            tracer.child.wait()?;
        } else {
            let (status, _) = tracer.stop()?;
            assert!(status.success());
        }
        wait_for(Duration::from_secs(5), || {
            let now = ids().ok()?;
            ours.iter().all(|id| !now.contains(id)).then_some(())
        })?;
    }
    Ok(())
}

/// Lines in a file, read in pieces (the file can be hundreds of MB, and
/// this process's memory is not what is measured).
fn count_lines(path: &std::path::Path) -> anyhow::Result<usize> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut lines = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
    }
}

/// A directory on tmpfs, removed when dropped: the files written there
/// are large and live in memory.
struct ShmDir(std::path::PathBuf);

impl Drop for ShmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn memory_stays_flat_when_streaming_to_a_file() -> anyhow::Result<()> {
    require_root();
    // On tmpfs, which has no writeback and is never throttled for dirty
    // pages: a disk that stalls lets the write queue fill (legitimately, up
    // to its bound), which is not what this test is about.
    let dir = ShmDir(std::path::PathBuf::from(format!(
        "/dev/shm/schedtrace-it-{}-{}",
        std::process::id(),
        schedtrace::procfs::monotonic_ns()
    )));
    std::fs::create_dir(&dir.0)?;
    let mut runs = vec![];
    // Both threads of `perf bench sched pipe -T` are pinned to one CPU, so
    // every loop switches at least twice (each thread must leave the CPU
    // for the other to answer); its wakeups vary from 0 to 2 a loop with how
    // often the woken thread preempts its waker, which the tracer's own cost
    // shifts (1.1 a loop measured; an earlier build saw fewer). 550,000 more
    // loops are thus at least 1.1 million more switch records, whatever the
    // wakeups do.
    for loops in ["50000", "600000"] {
        let file = dir.0.join(format!("pipe-{loops}.jsonl"));
        let mut cmd = schedtrace();
        // A 2 MiB ring wraps in both runs, so the kernel buffer's pages
        // count the same and only userspace growth would show.
        cmd.args([
            "-q",
            "--verbose",
            "--buffer-size",
            "2M",
            "--json",
            file.to_str().unwrap(),
            "--",
        ])
        .args([
            "taskset", "-c", "0", "perf", "bench", "sched", "pipe", "-T", "-l", loops,
        ]);
        let run = run_with_maxrss(&mut cmd)?;
        assert!(run.status.success(), "{}", run.stderr);
        let lines = count_lines(&file)?;
        // The queues whose size depends on the peak rate and delays, not
        // on the trace's length: what each allocated at most.
        let buffers = write_buffers_kib(&run.stderr)?
            + logged_kib(&run.stderr, "held events: ")?
            + logged_kib(&run.stderr, "reorder queues: ")?;
        std::fs::remove_file(&file)?;
        eprintln!(
            "{loops} loops: {lines} lines, peak RSS {} KiB (write buffers, held events and \
             reorder queues {buffers} KiB)",
            run.kib
        );
        runs.push((lines as u64, run.kib, buffers));
    }
    let (short, long) = (runs[0], runs[1]);
    let more_events = long.0.saturating_sub(short.0);
    assert!(
        more_events >= 1_000_000,
        "the long run has a million more events: {runs:?}"
    );
    // What both runs hold legitimately is the same: the ring buffer (2 MiB,
    // full in both), the threads' state (the same threads). Three queues
    // are bounded but sized by peaks, which a longer run is more likely to
    // reach: the write buffers (how far the writer thread fell behind; it
    // shares 2 CPUs with everything else), the events the analysis holds
    // to place inferred marks (100 ms, at most 65,000 events), and the
    // reorder queues (until every CPU has marked its progress). A queue
    // that outgrows its buffer doubles it, so their difference is allowed
    // as schedtrace reports it (with `--verbose`). The margin on top,
    // 2 MiB, is what growth of 2 bytes per event would add over the long
    // run's extra million events: anything that keeps a byte or two per
    // event fails; allocator rounding (runs differ by about 0.2 MiB here)
    // does not.
    let allowed = short.1 + long.2.saturating_sub(short.2) + 2048;
    assert!(
        long.1 <= allowed,
        "peak RSS grew with the trace: {runs:?}, allowed {allowed} KiB"
    );
    Ok(())
}

#[test]
fn binary_capture_reads_back_like_the_json_lines_trace() -> anyhow::Result<()> {
    require_root();
    let dir = tempdir();
    let (jsonl, bin, conv) = (
        dir.join("t.jsonl"),
        dir.join("t.schedtrace"),
        dir.join("conv.jsonl"),
    );
    let p = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (status, stdout, stderr) = run_schedtrace(&[
        "-q",
        "--format",
        "json",
        "--json",
        &p(&jsonl),
        "--record",
        &p(&bin),
        "--",
        "taskset",
        "-c",
        "0",
        "perf",
        "bench",
        "sched",
        "pipe",
        "-T",
        "-l",
        "20000",
    ])?;
    assert!(status.success(), "{stderr}");
    let live = summary_from(&stdout)?;
    let events = live["events"].as_u64().unwrap();
    assert!(events > 40_000, "only {events} events");
    // 144 bytes per event (format 2), plus the header, threads, the
    // counters of each thread at attach and at stop, and the end.
    let size = std::fs::metadata(&bin)?.len();
    assert!(
        size >= 144 * events && size < 144 * events + 8192,
        "{size} bytes"
    );

    // report reads both, gives the same summary, and converts the capture
    // to exactly the JSON Lines file written alongside it.
    let report = |file: &std::path::Path, extra: &[&str]| -> anyhow::Result<serde_json::Value> {
        let mut args = vec![
            "report".to_string(),
            p(file),
            "--format".into(),
            "json".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, stdout, stderr) = run_schedtrace(&args)?;
        assert!(status.success(), "{stderr}");
        Ok(serde_json::from_str(&stdout)?)
    };
    let from_jsonl = report(&jsonl, &[])?;
    let from_bin = report(&bin, &["--json", &p(&conv)])?;
    assert_eq!(from_bin, from_jsonl);
    assert_eq!(from_bin["events"].as_u64(), Some(events));
    assert!(
        std::fs::read(&conv)? == std::fs::read(&jsonl)?,
        "the converted file differs"
    );

    // A capture cut short (schedtrace killed while writing it) is read up
    // to its last whole record, and says it is incomplete.
    let cut = dir.join("cut.schedtrace");
    let bytes = std::fs::read(&bin)?;
    std::fs::write(&cut, &bytes[..bytes.len() / 2 + 3])?;
    let (status, stdout, stderr) = run_schedtrace(&["report", &p(&cut), "--format", "json"])?;
    assert!(status.success(), "{stderr}");
    let s: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(s["stop_reason"], "ended without an end record");
    let half = s["events"].as_u64().unwrap();
    assert!(
        half > events / 3 && half < events,
        "{half} of {events} events"
    );
    Ok(())
}
