//! Hostile workloads and hostile files (issue 15): thread churn that must
//! not grow memory, crafted traces that must not size anything, overload
//! that must not produce impossible figures, a process whose leader has
//! exited, SIGKILL at any moment, and error messages that state each fact
//! once.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use schedtrace_tests::hostile::*;
use schedtrace_tests::*;

const HEADER: &str = r#"{"type":"header","schema":"schedtrace-trace","version":1,"clock":"CLOCK_MONOTONIC","wall_clock_offset_ns":0,"ncpus":2,"target":{"pid":100,"comm":"app"},"kernel_release":"k","hostname":"h","tool_version":"t","start_ns":1000}"#;
const THREAD: &str =
    r#"{"type":"thread","ts":1001,"tid":100,"tgid":100,"comm":"app","state":"R","cpu":0}"#;
const END: &str = r#"{"type":"end","end_ns":9000,"events":2,"lost_events":0,"lost_per_cpu":[0,0],"complete":true,"reason":"duration"}"#;

fn switch(ts: u64, cpu: u32) -> String {
    format!(
        r#"{{"type":"switch","ts":{ts},"cpu":{cpu},"prev":{{"tid":100,"tgid":100,"comm":"app","prio":120}},"next":{{"tid":0,"tgid":0,"comm":"swapper/0","prio":0}},"prev_state":"S","prev_state_raw":1,"preempt":false}}"#
    )
}

fn wakeup(ts: u64, wakee_cpu: u32) -> String {
    format!(
        r#"{{"type":"wakeup","ts":{ts},"cpu":0,"waker":{{"tid":7,"tgid":0,"comm":"w","prio":0}},"wakee":{{"tid":100,"tgid":100,"comm":"app","prio":120}},"wakee_cpu":{wakee_cpu}}}"#
    )
}

fn lines(ls: &[&str]) -> Vec<u8> {
    let mut v = ls.join("\n").into_bytes();
    v.push(b'\n');
    v
}

/// Peak RSS a `report` of a crafted file may reach: the binary itself and
/// its buffers take about 10 MiB; anything sized by a crafted value would
/// take gigabytes.
const CRAFTED_RSS_KIB: u64 = 64 * 1024;

/// `report FILE` must refuse `bytes` with exit code 1, a one-line error
/// containing each of `needles`, no panic, and without allocating for it.
fn refused(dir: &Path, name: &str, bytes: &[u8], needles: &[&str]) {
    let f = dir.join(name);
    std::fs::write(&f, bytes).unwrap();
    let mut cmd = schedtrace();
    cmd.arg("report").arg(&f);
    let MaxRss {
        status,
        kib: maxrss_kib,
        stdout,
        stderr: err,
    } = run_with_maxrss(&mut cmd).unwrap();
    assert_eq!(status.code(), Some(1), "{name}: {status}, stderr {err}");
    assert!(
        stdout.is_empty(),
        "{name}: printed {}",
        String::from_utf8_lossy(&stdout)
    );
    for n in needles {
        assert!(err.contains(n), "{name}: expected {n:?} in {err:?}");
    }
    says_each_fact_once(&err);
    assert!(
        maxrss_kib < CRAFTED_RSS_KIB,
        "{name}: peak RSS {maxrss_kib} KiB"
    );
}

#[test]
fn crafted_json_lines_are_refused_before_anything_is_sized() {
    let dir = tempdir();
    let h = |field: &str, value: &str| {
        let v: serde_json::Value = serde_json::from_str(HEADER).unwrap();
        let mut v = v.as_object().unwrap().clone();
        v.insert(field.into(), serde_json::from_str(value).unwrap());
        serde_json::to_string(&v).unwrap()
    };
    let huge_ncpus = h("ncpus", "4000000000");
    refused(
        &dir,
        "ncpus",
        &lines(&[&huge_ncpus, THREAD, END]),
        &["line 1", "ncpus", "4000000000"],
    );
    let zero_ncpus = h("ncpus", "0");
    refused(
        &dir,
        "ncpus0",
        &lines(&[&zero_ncpus, END]),
        &["line 1", "ncpus"],
    );
    let lost = r#"{"type":"lost","ts":2000,"cpu":4294967295,"count":1}"#;
    refused(
        &dir,
        "lost-cpu",
        &lines(&[HEADER, THREAD, lost, END]),
        &["line 3", "4294967295"],
    );
    refused(
        &dir,
        "switch-ts",
        &lines(&[HEADER, THREAD, &switch(u64::MAX, 0), END]),
        &["line 3", "18446744073709551615"],
    );
    refused(
        &dir,
        "switch-cpu",
        &lines(&[HEADER, THREAD, &switch(2000, u32::MAX), END]),
        &["line 3", "4294967295"],
    );
    let thread_cpu = THREAD.replace("\"cpu\":0", "\"cpu\":99");
    refused(
        &dir,
        "thread-cpu",
        &lines(&[HEADER, &thread_cpu, END]),
        &["line 2", "99"],
    );
    refused(
        &dir,
        "wakee-cpu",
        &lines(&[HEADER, THREAD, &wakeup(2000, u32::MAX), END]),
        &["line 3", "4294967295"],
    );
    let migrate = r#"{"type":"migrate","ts":2000,"cpu":0,"task":{"tid":100,"tgid":100,"comm":"app","prio":120},"from_cpu":0,"to_cpu":4294967295}"#;
    refused(
        &dir,
        "migrate-cpu",
        &lines(&[HEADER, THREAD, migrate, END]),
        &["line 3", "4294967295"],
    );
    let end = END.replace("\"end_ns\":9000", "\"end_ns\":18446744073709551615");
    refused(
        &dir,
        "end-ns",
        &lines(&[HEADER, THREAD, &switch(2000, 0), &end]),
        &["line 4", "18446744073709551615"],
    );
}

/// A binary capture (docs/trace-format.md): the file header with `header`
/// as its object, then `records`.
fn capture(header: &str, records: &[[u8; 88]]) -> Vec<u8> {
    let mut obj = header.as_bytes().to_vec();
    while !(20 + obj.len()).is_multiple_of(8) {
        obj.push(b' ');
    }
    let mut v = b"\x89SCHDTR\n".to_vec();
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(&88u32.to_le_bytes());
    v.extend_from_slice(&(obj.len() as u32).to_le_bytes());
    v.extend_from_slice(&obj);
    for r in records {
        v.extend_from_slice(r);
    }
    v
}

/// One 88-byte record: `ts`, `state`, `kind`, `cpu`, and a traced task
/// (TID and TGID 100) on both sides.
fn record(ts: u64, state: u64, kind: u16, cpu: u32) -> [u8; 88] {
    let mut b = [0u8; 88];
    b[0..8].copy_from_slice(&ts.to_le_bytes());
    b[8..16].copy_from_slice(&state.to_le_bytes());
    b[16..18].copy_from_slice(&kind.to_le_bytes());
    b[20..24].copy_from_slice(&cpu.to_le_bytes());
    for at in [32, 36, 40, 44] {
        b[at..at + 4].copy_from_slice(&100u32.to_le_bytes());
    }
    b[56..59].copy_from_slice(b"app");
    b[72..75].copy_from_slice(b"app");
    b
}

#[test]
fn crafted_binary_captures_are_refused_before_anything_is_sized() {
    let dir = tempdir();
    let huge = HEADER.replace("\"ncpus\":2", "\"ncpus\":4000000000");
    refused(
        &dir,
        "ncpus.schedtrace",
        &capture(&huge, &[record(2000, 1, 1, 0)]),
        &["header", "ncpus", "4000000000"],
    );
    // kind 0x102: a loss mark, `state` is the count.
    refused(
        &dir,
        "lost.schedtrace",
        &capture(
            HEADER,
            &[record(2000, 1, 1, 0), record(2100, 1, 0x102, u32::MAX)],
        ),
        &["record 2", "4294967295"],
    );
    refused(
        &dir,
        "ts.schedtrace",
        &capture(HEADER, &[record(u64::MAX, 1, 1, 0)]),
        &["record 1", "18446744073709551615"],
    );
    refused(
        &dir,
        "cpu.schedtrace",
        &capture(HEADER, &[record(2000, 1, 1, 7)]),
        &["record 1", "cpu 7"],
    );
    // kind 0x101: a thread found at attach; `aux0` is its state letter.
    let mut thread = record(1500, 0, 0x101, 99);
    thread[24..28].copy_from_slice(&u32::from(b'R').to_le_bytes());
    refused(
        &dir,
        "thread.schedtrace",
        &capture(HEADER, &[thread]),
        &["record 1", "99"],
    );
}

#[test]
fn parse_errors_say_each_fact_once() {
    let dir = tempdir();
    let cut = &switch(2000, 0)[..60];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // A line cut short in the middle of the file (not its end).
        (
            "middle.jsonl",
            lines(&[HEADER, cut, &switch(3000, 0), END]),
            "line 2",
        ),
        (
            "type.jsonl",
            lines(&[
                HEADER,
                &switch(2000, 0).replace("\"ts\":2000", "\"ts\":\"x\""),
                END,
            ]),
            "line 2",
        ),
        (
            "unknown.jsonl",
            lines(&[HEADER, r#"{"type":"teleport","ts":5}"#, END]),
            "line 2",
        ),
    ];
    for (name, bytes, needle) in &cases {
        let f = dir.join(name);
        std::fs::write(&f, bytes).unwrap();
        let (status, _, err) = run_schedtrace(&["report", f.to_str().unwrap()]).unwrap();
        assert_eq!(status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(needle), "{name}: {err}");
        says_each_fact_once(&err);
    }
    // A binary capture whose end object is not JSON.
    let mut end = record(9000, 8, 0x103, 0);
    end[32..48].fill(0);
    let mut bytes = capture(HEADER, &[record(2000, 1, 1, 0), end]);
    bytes.extend_from_slice(b"{nope}  ");
    let f = dir.join("end.schedtrace");
    std::fs::write(&f, &bytes).unwrap();
    let (status, _, err) = run_schedtrace(&["report", f.to_str().unwrap()]).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("record 2"), "{err}");
    says_each_fact_once(&err);
    // Not a file.
    let (status, _, err) = run_schedtrace(&["report", dir.to_str().unwrap()]).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    says_each_fact_once(&err);
    // An output in a directory that does not exist.
    let good = dir.join("good.jsonl");
    std::fs::write(&good, lines(&[HEADER, THREAD, &switch(2000, 0), END])).unwrap();
    let (status, _, err) = run_schedtrace(&[
        "report",
        good.to_str().unwrap(),
        "--json",
        dir.join("no/such/t.jsonl").to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    says_each_fact_once(&err);
}

#[test]
fn a_process_whose_leader_called_pthread_exit_is_traced() {
    require_root();
    let exe = cc("leader_exit", LEADER_EXIT_C);
    let mut p = Command::new(&exe).args(["2", "3"]).spawn().unwrap();
    let pid = p.id();
    // The leader is a zombie while its two threads spin.
    wait_for(Duration::from_secs(5), || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let state = stat.rsplit_once(") ")?.1.chars().next()?;
        (state == 'Z' && tids(pid).ok()?.len() == 3).then_some(())
    })
    .expect("a zombie leader with live threads");
    let (status, out, err) = run_schedtrace(&[
        "--records",
        "--pid",
        &pid.to_string(),
        "--duration",
        "0.5",
        "--format",
        "json",
        "-q",
    ])
    .unwrap();
    assert!(status.success(), "{err}");
    let s = summary_from(&out).unwrap();
    // Both spin throughout the 0.5 s, so both are seen running: a runnable
    // task gets the CPU within a slice per task queued ahead of it (EEVDF),
    // a few ms each, and even the soak's load (a dozen runnable tasks per
    // CPU, where one of them got 99.9 ms, not the 100 ms this once asked
    // for) leaves each well under 0.5 s from its turn. How much CPU each
    // gets is the load's business, not this test's.
    let busy: Vec<_> = s["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["tid"] != pid && t["on_cpu_ns"].as_u64().unwrap() > 0)
        .collect();
    assert_eq!(busy.len(), 2, "both threads ran: {}", s["threads"]);
    p.wait().unwrap();
}

/// Peak RSS (KiB) of `schedtrace ARGS`, which must succeed.
fn maxrss(args: &[&str]) -> u64 {
    let mut cmd = schedtrace();
    cmd.args(args);
    let r = run_with_maxrss(&mut cmd).unwrap();
    assert!(r.status.success(), "schedtrace {args:?}: {}", r.status);
    r.kib
}

/// The target of issue 15: what an ended thread costs, in summary-only
/// mode, live and in `report`.
const BYTES_PER_ENDED_THREAD: f64 = 2048.0;

#[test]
fn memory_is_bounded_by_live_threads_on_a_100k_thread_churn() {
    require_root();
    let churn = cc("churn", CHURN_C);
    let dir = tempdir();
    let (few, many) = (10_000u64, 100_000u64);
    let mut live = Vec::new();
    let mut report = Vec::new();
    let mut seen = Vec::new();
    for n in [few, many] {
        let file = dir.join(format!("churn-{n}.schedtrace"));
        let kib = maxrss(&[
            "-q",
            "--format",
            "json",
            "--record",
            file.to_str().unwrap(),
            "--",
            churn.to_str().unwrap(),
            &n.to_string(),
            "16",
        ]);
        live.push(kib);
        report.push(maxrss(&[
            "report",
            file.to_str().unwrap(),
            "--format",
            "json",
        ]));
        let (_, out, _) =
            run_schedtrace(&["report", file.to_str().unwrap(), "--format", "json"]).unwrap();
        seen.push(
            summary_from(&out).unwrap()["totals"]["threads_seen"]
                .as_u64()
                .unwrap(),
        );
    }
    // The growth from `few` to `many` ended threads, per ended thread: the
    // fixed costs (binary, ring buffer, write queue) cancel out.
    let per = |v: &[u64]| (v[1] as f64 - v[0] as f64) * 1024.0 / (many - few) as f64;
    eprintln!(
        "peak RSS: live {:?} KiB ({:.0} B per ended thread), report {:?} KiB ({:.0} B)",
        live,
        per(&live),
        report,
        per(&report)
    );
    // Every thread is its own, even when the kernel gives a new thread the
    // TID of one that ended (TIDs wrap at pid_max, 32768 here).
    assert_eq!(seen, [few + 1, many + 1], "threads seen");
    assert!(
        per(&live) <= BYTES_PER_ENDED_THREAD,
        "live: {:.0} B per ended thread",
        per(&live)
    );
    assert!(
        per(&report) <= BYTES_PER_ENDED_THREAD,
        "report: {:.0} B per ended thread",
        per(&report)
    );
}

#[test]
fn under_overload_figures_stay_possible_and_duration_holds() {
    require_root();
    let spinners = cc("spinners", SPINNERS_C);
    let switcher = cc("switcher", SWITCHER_C);
    let ncpus = std::thread::available_parallelism().unwrap().get() as u64;
    // Foreign load: 32 spinning threads per CPU, for longer than the trace.
    let mut load = Command::new(&spinners)
        .args([&(32 * ncpus).to_string(), "12"])
        .spawn()
        .unwrap();
    let duration = Duration::from_secs(2);
    // A 4 KiB ring buffer (46 records) against 64 threads switching every
    // 50 µs: events are lost all the time.
    let tracer = Tracer::start(&[
        "--records",
        "--buffer-size",
        "4K",
        "--duration",
        "2",
        "--format",
        "json",
        "--",
        switcher.to_str().unwrap(),
        "64",
        "8",
    ])
    .unwrap();
    // Starting (reading BTF, loading, attaching) takes seconds when
    // schedtrace gets 1/65 of the CPUs; --duration counts from the moment
    // it says it is tracing.
    let started = Instant::now();
    let (_, out, err) = tracer.wait_stderr().unwrap();
    let took = started.elapsed();
    let _ = load.kill();
    let _ = load.wait();
    let s = summary_from(&out).unwrap_or_else(|e| panic!("{e}: {err}"));
    let window = s["window_ns"].as_u64().unwrap();
    let ncpus_trace = s["ncpus"].as_u64().unwrap();
    eprintln!(
        "window {:.3} s, wall {:.3} s, {} events, {} lost, mean running {}",
        window as f64 / 1e9,
        took.as_secs_f64(),
        s["events"],
        s["lost_events"],
        s["parallelism"]["mean_running"]
    );
    assert!(
        s["lost_events"].as_u64().unwrap() > 0,
        "the overload lost events"
    );
    // --duration is the window, however late schedtrace gets to detach.
    assert_eq!(
        window,
        duration.as_nanos() as u64,
        "the window is --duration"
    );
    // And in wall-clock time: after the deadline, schedtrace detaches,
    // reads what is left (the 4 KiB ring buffer and the per-CPU stages
    // bound it to about a hundred records), stops the command (SIGTERM,
    // then SIGKILL after a grace of `STOP_GRACE`) and writes the summary.
    // Everything but the grace is CPU work done at schedtrace's share of
    // this overload: one thread among 129 runnable on 2 CPUs (1/65 of a
    // CPU), where 10 ms of work take 0.65 s. Measured with bpftrace on this
    // 2-CPU VM: 0.29 s from the deadline to the SIGTERM (counters, detach,
    // last reads), 0.02 s until the command's 65 threads were gone, 0.24 s
    // writing the summary and exiting; 0.60-0.85 s in all over six runs,
    // 1.03 s once in CI. So the bound is the grace plus one second of
    // finishing work at that share, not one second in all.
    const STOP_GRACE: Duration = Duration::from_secs(2);
    assert!(
        took < duration + STOP_GRACE + Duration::from_secs(1),
        "--duration 2 took {took:?}"
    );
    // The invariants: no thread or sum runs on more CPUs than exist.
    let on_cpu = s["totals"]["on_cpu_ns"].as_u64().unwrap();
    assert!(
        on_cpu <= window * ncpus_trace,
        "on-CPU {on_cpu} in {window} ns on {ncpus_trace} CPUs"
    );
    let mean = s["parallelism"]["mean_running"].as_f64().unwrap();
    assert!(
        mean <= ncpus_trace as f64 + 1e-9,
        "mean running {mean} on {ncpus_trace} CPUs"
    );
    let running = s["parallelism"]["running_ns"].as_array().unwrap();
    let profile: u64 = running.iter().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(profile, window, "the parallelism profile covers the window");
    for t in s["threads"].as_array().unwrap() {
        let on = t["on_cpu_ns"].as_u64().unwrap();
        let life = t["lifetime_ns"].as_u64().unwrap();
        assert!(on <= window && life <= window, "thread {t}");
        let per_cpu: u64 = t["cpus"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(per_cpu, on, "thread {}: per-CPU times add up", t["tid"]);
    }
}

#[test]
fn sigkill_at_random_moments_leaves_files_report_can_read() {
    require_root();
    let mut rng = Rng::from_env_or_clock();
    for round in 0..6 {
        let dir = tempdir();
        let json = dir.join("t.jsonl");
        let bin = dir.join("t.schedtrace");
        let mut w = Workload::start(8.0, 2, 1).unwrap();
        let tracer = Tracer::start(&[
            "--pid",
            &w.pid.to_string(),
            "--json",
            json.to_str().unwrap(),
            "--record",
            bin.to_str().unwrap(),
        ])
        .unwrap();
        w.go().unwrap();
        let delay = Duration::from_millis(rng.below(2500));
        std::thread::sleep(delay);
        let killed_at = monotonic_ns();
        // SAFETY: our own child.
        unsafe { libc::kill(tracer.child.id() as i32, libc::SIGKILL) };
        let (status, _) = tracer.wait().unwrap();
        assert_eq!(status.code(), None, "killed");
        for f in [&json, &bin] {
            let (status, out, err) =
                run_schedtrace(&["report", f.to_str().unwrap(), "--format", "json"]).unwrap();
            assert!(
                status.success(),
                "round {round} (killed after {delay:?}): report {}: {err}",
                f.display()
            );
            let s = summary_from(&out).unwrap();
            assert_eq!(s["complete"], false);
            assert_eq!(s["stop_reason"], "ended without an end record");
            let (_, text, _) = run_schedtrace(&["report", f.to_str().unwrap()]).unwrap();
            assert!(
                text.contains("incomplete: ended without an end record"),
                "round {round}: {text}"
            );
            // Outputs are flushed at least once a second (whole records),
            // so what is lost is at most about a second: the flush period,
            // plus what waits in the reorder hold (25 ms), the drain
            // period (20 ms) and the kernel's per-CPU stages (2 ms and a
            // tick). The workload switches continuously.
            if delay > Duration::from_millis(1500) {
                let window_end = s["window_end_ns"].as_u64().unwrap();
                assert!(
                    window_end + 1_200_000_000 >= killed_at,
                    "round {round}: the last event is {:.3} s before the kill",
                    (killed_at - window_end) as f64 / 1e9
                );
            }
        }
        // Nothing partial in the JSON Lines file: every line is whole.
        let text = std::fs::read(&json).unwrap();
        if let Some(last_nl) = text.iter().rposition(|&b| b == b'\n') {
            let whole = &text[..=last_nl];
            for l in String::from_utf8_lossy(whole).lines() {
                serde_json::from_str::<serde_json::Value>(l).expect("a whole JSON line");
            }
        }
        drop(w);
    }
}

/// The JSON summary and stderr of `schedtrace --follow-children` running
/// `argv`, which must succeed.
fn follow_children_summary(argv: &[&str]) -> (serde_json::Value, String) {
    let mut args = vec![
        "--records",
        "--follow-children",
        "--format",
        "json",
        "-q",
        "--",
    ];
    args.extend_from_slice(argv);
    let (status, out, err) = run_schedtrace(&args).unwrap();
    assert!(status.success(), "{err}");
    (summary_from(&out).unwrap(), err)
}

#[test]
fn follow_children_keeps_following_past_the_kernel_maps_size() {
    require_root();
    // 20,000 short-lived children from four shells at once: five times what
    // the kernel's map of followed processes holds (MAX_CHILDREN, 4096),
    // and over a thousand a second, faster than a sweep from userspace
    // once a second frees entries (a child's entry stayed 1 to 2 s after
    // it ended, and about 8,000 of 20,000 went untraced). An ended child
    // leaves the map at its last thread's final switch-out, so the map
    // holds only the children that live: a few.
    let (shells, each) = (4, 5000);
    let script = format!(
        "for j in $(seq {shells}); do \
           (i=0; while [ $i -lt {each} ]; do /bin/true; i=$((i+1)); done) & \
         done; wait"
    );
    let (s, err) = follow_children_summary(&["sh", "-c", &script]);
    let full: Vec<&str> = err.lines().filter(|l| l.contains("map full")).collect();
    assert!(
        full.is_empty(),
        "{} warnings of a full map, the first: {}",
        full.len(),
        full[0]
    );
    assert_eq!(s["lost_processes"], 0, "children the map had no room for");
    let procs = s["processes"].as_array().unwrap();
    // sh, its subshells, `seq` and the children.
    assert!(procs.len() > shells * each, "{} processes", procs.len());
    // Every process ran, so every traced one has on-CPU time; a child
    // the map had no room for is known only from its fork, with none.
    let untraced: Vec<_> = procs
        .iter()
        .filter(|p| p["on_cpu_ns"].as_u64() == Some(0))
        .map(|p| p["tgid"].as_u64().unwrap())
        .collect();
    assert!(
        untraced.is_empty(),
        "{} processes with no on-CPU time, e.g. {:?}",
        untraced.len(),
        &untraced[..untraced.len().min(5)]
    );
}

#[test]
fn children_the_kernels_map_has_no_room_for_are_counted() {
    require_root();
    // More children alive at once than the kernel's map of followed
    // processes holds (MAX_CHILDREN, besides the first target): the map is
    // a plain hash map, so each child past the last it holds is refused,
    // and every one of them is still alive when the last is forked.
    let (max, over) = (schedtrace_common::MAX_CHILDREN as usize, 100);
    let exe = cc("waiting_children", WAITING_CHILDREN_C);
    let n = (max + over).to_string();
    let (s, err) = follow_children_summary(&[exe.to_str().unwrap(), &n]);
    assert_eq!(
        s["lost_processes"], over,
        "children refused by the full map"
    );
    // The refused ones are in no figure (not even as a process known only
    // from its fork); the others and the parent are.
    let procs = s["processes"].as_array().unwrap();
    assert_eq!(procs.len(), max + 1, "processes in the summary");
    assert!(
        err.contains(&format!(
            "schedtrace: warning: {over} processes to be traced could not be"
        )),
        "{err}"
    );
}

#[test]
fn followed_children_are_traced_to_every_threads_end() {
    require_root();
    // A followed child leaves the kernel's map of targets when the last of
    // its threads has begun to exit, at that thread's final switch-out.
    // Its other threads may not be done by then: they began to exit first,
    // but one can still be on its way to its exit record and final
    // switch-out, on the other CPU or preempted (with that map lookup alone
    // 23 to 34 exit records of 2,100 threads went missing). They must still
    // be traced to their end.
    let exe = cc_with("ending_threads", ENDING_THREADS_C, &["-O1"]);
    let children = 300;
    let dir = tempdir();
    let trace = dir.join("t.jsonl");
    let (status, out, err) = run_schedtrace(&[
        "--follow-children",
        "--format",
        "json",
        "-q",
        "--json",
        trace.to_str().unwrap(),
        "--",
        exe.to_str().unwrap(),
        &children.to_string(),
    ])
    .unwrap();
    assert!(status.success(), "{err}");
    let s = summary_from(&out).unwrap();
    assert_eq!(s["lost_events"], 0, "no loss expected");
    let (mut forked, mut exited, mut ended) = (Vec::new(), HashSet::new(), HashSet::new());
    for line in std::fs::read_to_string(&trace).unwrap().lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        match e["type"].as_str() {
            Some("fork") => forked.push(e["child"]["tid"].as_u64().unwrap()),
            Some("exit") => {
                exited.insert(e["task"]["tid"].as_u64().unwrap());
            }
            // TASK_DEAD in `prev_state`: the thread's final switch-out.
            Some("switch") if e["prev_state_raw"].as_u64().unwrap() & 0x80 != 0 => {
                ended.insert(e["prev"]["tid"].as_u64().unwrap());
            }
            _ => {}
        }
    }
    // Every child and its six threads were seen being created...
    assert_eq!(forked.len(), children * 7, "fork records");
    // ...and every task that is created runs, so it exits through
    // `do_exit`: an exit record, then a final switch-out.
    let no_exit: Vec<_> = forked.iter().filter(|t| !exited.contains(t)).collect();
    let no_end: Vec<_> = forked.iter().filter(|t| !ended.contains(t)).collect();
    assert!(
        no_exit.is_empty() && no_end.is_empty(),
        "{} threads without an exit record, {} without a final switch-out (e.g. {:?})",
        no_exit.len(),
        no_end.len(),
        no_exit.iter().chain(&no_end).take(5).collect::<Vec<_>>()
    );
}
