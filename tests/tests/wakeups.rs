//! Who woke whom, against the real kernel: wakeups raised by timers and
//! interrupts are named by their context, never credited to the task the
//! interrupt happened to come in on, and wakers in other processes are
//! shown as such.

use std::process::{Child, Command, Stdio};

use schedtrace_tests::*;

/// A busy loop pinned to `cpu`, killed when dropped.
struct BusyLoop(Child);

impl BusyLoop {
    fn start(cpu: &str) -> anyhow::Result<Self> {
        let child = Command::new("taskset")
            .args(["-c", cpu, "sh", "-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .spawn()?;
        Ok(BusyLoop(child))
    }
}

impl Drop for BusyLoop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The workload's threads all sleep with `nanosleep` on CPU 1 beside a
/// busy loop of another process there. Every timer that ends one of their
/// sleeps fires while something else runs on CPU 1, mostly the busy loop:
/// before wakeup contexts, the busy loop was listed as a waker of every
/// thread. Now no thread may list it (it never wakes anyone: it only
/// computes), and the threads that do nothing but sleep in a loop must be
/// woken most by the timer callback that ends `nanosleep`.
///
/// The `go` line the test writes to the workload's stdin wakes `node-main`
/// from this test process: a waker in another process, which must be
/// marked with this process's PID.
#[test]
fn timer_wakeups_are_named_and_never_credited_to_a_busy_bystander() -> anyhow::Result<()> {
    require_root();
    let busy = BusyLoop::start("1")?;
    let busy_pid = busy.0.id();
    // 2 pool threads, 2 helpers ("V8 Worker": 15 ms sleeps in a loop).
    let mut w = Workload::start_on(Some("1"), 1.0, 2, 2)?;
    let pid = w.pid.to_string();
    let dir = tempdir();
    let file = dir.join("trace.jsonl");
    let tracer = Tracer::start(&[
        "--pid",
        &pid,
        "--format",
        "json",
        "--json",
        file.to_str().unwrap(),
    ])?;
    w.go()?;
    w.wait_done()?;
    let (status, out) = tracer.stop()?;
    assert!(status.success(), "schedtrace failed: {status}");
    w.finish()?;
    drop(busy);

    let summary: serde_json::Value = serde_json::from_str(&out)?;
    let threads = threads_by_tid(&summary);
    let mut helpers = 0;
    let mut outside_seen = false;
    for (tid, t) in &threads {
        let comm = t["comm"].as_str().unwrap_or_default();
        let wakers = t["wakers"].as_array().unwrap();
        eprintln!("{tid} {comm}: {wakers:?}");
        for wk in wakers {
            let kind = wk["kind"].as_str().unwrap();
            if kind == "task" {
                assert_ne!(
                    wk["tgid"].as_u64(),
                    Some(u64::from(busy_pid)),
                    "{comm} ({tid}) credited to the busy loop: {wk}"
                );
            } else {
                // An interrupt context is no task.
                assert_eq!(wk["tid"], 0, "{wk}");
            }
            if wk["process"]["pid"].as_u64() == Some(u64::from(std::process::id())) {
                outside_seen = true;
                assert_eq!(wk["tgid"].as_u64(), Some(u64::from(std::process::id())));
            }
        }
        if comm.starts_with("V8 Worker") {
            helpers += 1;
            // About 1 s / 15 ms = 66 timer wakeups, and 2 from the gates.
            let top = &wakers[0];
            assert_eq!(top["kind"], "timer", "{comm}: {wakers:?}");
            assert_eq!(top["function"], "hrtimer_wakeup", "{comm}: {wakers:?}");
            assert!(top["count"].as_u64().unwrap() > 10, "{top}");
        }
    }
    assert_eq!(helpers, 2);
    assert!(
        outside_seen,
        "the test process woke node-main through its stdin"
    );

    // The same in the trace's events: every wakeup with a context names it,
    // and the end record says the order was proven and the end complete.
    let text = std::fs::read_to_string(&file)?;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let timers = lines
        .iter()
        .filter(|l| l["type"] == "wakeup" && l["context"]["kind"] == "timer")
        .count();
    assert!(timers > 20, "only {timers} timer wakeups");
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end");
    assert_eq!(end["order"], "marks", "{end}");
    assert_eq!(end["late_events"], 0, "{end}");
    assert_eq!(end["gaps"], serde_json::json!([]), "{end}");
    assert_eq!(end["complete"], true, "{end}");
    Ok(())
}

/// `report --tid A --tid B` on a real trace: every figure is the two
/// threads' own. The total is the sum of their rows, the profile never has
/// more than two running, the event count is below the whole file's, and
/// the summary says what was selected.
#[test]
fn report_filters_recompute_every_figure_for_the_selection() -> anyhow::Result<()> {
    require_root();
    let mut w = Workload::start(0.5, 2, 2)?;
    let pid = w.pid.to_string();
    let dir = tempdir();
    let file = dir.join("trace.jsonl");
    let tracer = Tracer::start(&["--pid", &pid, "--json", file.to_str().unwrap()])?;
    w.go()?;
    w.wait_done()?;
    let (status, _) = tracer.stop()?;
    assert!(status.success());
    w.finish()?;
    let report = |extra: &[&str]| -> anyhow::Result<serde_json::Value> {
        let out = schedtrace()
            .args(["report", file.to_str().unwrap(), "--format", "json"])
            .args(extra)
            .output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let all = report(&[])?;
    let all_threads = threads_by_tid(&all);
    // The two busiest threads.
    let mut busiest: Vec<(u64, u32)> = all_threads
        .iter()
        .map(|(tid, t)| (t["on_cpu_ns"].as_u64().unwrap(), *tid))
        .collect();
    busiest.sort_unstable_by(|a, b| b.cmp(a));
    let (a, b) = (busiest[0].1.to_string(), busiest[1].1.to_string());
    let sel = report(&["--tid", &a, "--tid", &b])?;
    let threads = threads_by_tid(&sel);
    assert_eq!(threads.len(), 2);
    let sum: u64 = threads
        .values()
        .map(|t| t["on_cpu_ns"].as_u64().unwrap())
        .sum();
    assert_eq!(sel["totals"]["threads_seen"], 2);
    assert_eq!(sel["totals"]["on_cpu_ns"].as_u64(), Some(sum));
    // Each selected thread's own figures do not change.
    for (tid, t) in &threads {
        assert_eq!(t["on_cpu_ns"], all_threads[tid]["on_cpu_ns"]);
        assert_eq!(t["wait"], all_threads[tid]["wait"]);
    }
    // Two threads: the profile has nothing beyond 2, and sums to the window.
    let running: Vec<u64> = sel["parallelism"]["running_ns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(running.iter().skip(3).all(|&ns| ns == 0), "{running:?}");
    assert_eq!(
        running.iter().sum::<u64>(),
        sel["window_ns"].as_u64().unwrap()
    );
    // The mean number running is the selection's own profile's mean. Not
    // the kernel's on-CPU total over the window: the profile is where the
    // runs sit on the timeline (wall time on a CPU), while the kernel does
    // not charge a thread the time the hypervisor stole or interrupts took
    // (`steal_ns`), 0.2% of this window in one run here. The JSON rounds
    // the mean to 3 decimals: half of 0.001 either way.
    let mean = sel["parallelism"]["mean_running"].as_f64().unwrap();
    let area: u64 = running
        .iter()
        .enumerate()
        .map(|(k, ns)| k as u64 * ns)
        .sum();
    let want = area as f64 / sel["window_ns"].as_f64().unwrap();
    assert!((mean - want).abs() <= 0.0005 + 1e-12, "{mean} vs {want}");
    assert!(sel["events"].as_u64() < all["events"].as_u64());
    assert_eq!(sel["selection"]["of_threads"], 5);
    assert_eq!(sel["selection"]["tids"].as_array().unwrap().len(), 2);
    assert!(all.get("selection").is_none());
    Ok(())
}
