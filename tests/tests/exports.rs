//! The visual exports on a real trace of the built-in workload: the HTML
//! report loaded in headless Chromium, the Perfetto trace decoded with
//! Perfetto's own generated protobuf classes, the Chrome trace checked for
//! overlaps and totals, the terminal timeline's width and colours.
//!
//! Needs root (the trace is taken live), Chromium (Debian `chromium`) and
//! Python 3 with pip: the PyPI packages `perfetto` and `protobuf` are
//! installed into `target/perfetto-py` on first use unless
//! `SCHEDTRACE_PYTHON` names a Python that has them. Screenshots go to
//! `artifacts/` at the workspace root.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use schedtrace_tests::*;
use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

fn scratch() -> PathBuf {
    fixture_dir(env!("CARGO_TARGET_TMPDIR"), "schedtrace-exports")
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One live trace of the workload (1 s, all CPUs), shared by the tests.
fn trace() -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        require_root();
        let t = scratch().join("workload.jsonl");
        let _ = std::fs::remove_file(&t);
        let b = bin();
        ok(
            schedtrace()
                .arg("--quiet")
                .arg("--json")
                .arg(&t)
                .arg("--")
                .arg(&b)
                .args(["__workload", "--seconds", "1"])
                .output()
                .unwrap(),
            "tracing the workload",
        );
        t
    })
}

/// `schedtrace report TRACE ARGS --format json`: the summary.
fn report(args: &[&std::ffi::OsStr]) -> Value {
    let out = ok(
        schedtrace()
            .arg("report")
            .arg(trace())
            .args(args)
            .args(["--format", "json", "--force", "--quiet"])
            .output()
            .unwrap(),
        "schedtrace report",
    );
    serde_json::from_slice(&out.stdout).expect("JSON summary")
}

/// Each thread's on-CPU time by the tracepoint timestamps, which the
/// timelines show (`on_cpu_ns` is the kernel's charge: less by the steal).
fn on_cpu_by_tid(summary: &Value) -> BTreeMap<u64, u64> {
    summary["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tid"].as_u64().unwrap(),
                t["timeline_on_cpu_ns"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Headless Chromium with a fresh profile, logging the page's console to stderr.
fn chromium() -> Command {
    let profile = scratch().join(format!("chromium-profile-{}", rand_suffix()));
    let mut c = chromium::headless(&profile);
    c.args(["--enable-logging=stderr", "--v=0"]);
    c
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn run_chromium(args: &[String]) -> Output {
    let out = chromium().args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run chromium ({e}): install Debian's `chromium` \
             (cargo xtask setup --tests) or set SCHEDTRACE_CHROMIUM"
        )
    });
    ok(out, "chromium")
}

/// Console messages Chromium logged for the page.
fn console_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect()
}

/// The header of a hand-written one-CPU trace of process 100, named
/// `comm`, with wakeups, starting at `start`.
fn trace_header(comm: &str, start: u64) -> Value {
    serde_json::json!({"type": "header", "schema": "schedtrace-trace", "version": 2,
        "clock": "CLOCK_MONOTONIC", "wall_clock_offset_ns": 0, "ncpus": 1,
        "target": {"pid": 100, "comm": comm, "follow_children": false},
        "kernel_release": "test", "hostname": "test", "tool_version": "test",
        "start_ns": start, "wakeups": true})
}

/// A hand-written trace's records, a JSON line each, to `path`.
fn write_lines(path: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// A trace in which the kernel counted sleep as run-queue wait: thread 101
/// sleeps from the start; its wakeup at 30 ms finds the kernel already
/// counting a wait (`wakee_queued`, as when the load balancer moved it
/// while its dequeue was delayed), and its switch-in at 34 ms carries a
/// 24 ms wait. Of that, the 4 ms since the wakeup are runnable, 20 ms sleep.
fn kernel_counted_sleep_trace(path: &Path) {
    use serde_json::json;
    const START: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;
    let task = json!({"tid": 101, "tgid": 100, "comm": "sleepy", "prio": 120});
    let idle = json!({"tid": 0, "tgid": 0, "comm": "swapper/0", "prio": 120});
    let lines = [
        trace_header("sleepy", START),
        json!({"type": "thread", "ts": START, "tid": 101, "tgid": 100,
            "comm": "sleepy", "state": "S", "cpu": 0}),
        json!({"type": "counters", "ts": START, "tid": 101, "tgid": 100,
            "runtime_ns": 5 * MS, "run_delay_ns": MS, "pcount": 3, "nvcsw": 2, "nivcsw": 0}),
        json!({"type": "wakeup", "ts": START + 30 * MS, "cpu": 0, "waker": idle,
            "wakee": task, "wakee_cpu": 0, "wakee_run_delay_ns": MS, "wakee_queued": true}),
        json!({"type": "switch", "ts": START + 34 * MS, "cpu": 0, "prev": idle, "next": task,
            "prev_state": "R", "prev_state_raw": 0, "preempt": false,
            "next_counters": {"runtime_ns": 5 * MS, "pcount": 4},
            "next_wait": {"run_delay_ns": 25 * MS, "queued_ns": 24 * MS}}),
        json!({"type": "switch", "ts": START + 35 * MS, "cpu": 0, "prev": task, "next": idle,
            "prev_state": "S", "prev_state_raw": 1, "preempt": false,
            "prev_counters": {"runtime_ns": 6 * MS, "run_clock_ns": MS, "pcount": 4,
                "nvcsw": 3, "nivcsw": 0}}),
        json!({"type": "end", "end_ns": START + 50 * MS, "events": 3, "lost_events": 0,
            "lost_per_cpu": [0], "complete": true, "reason": "duration"}),
    ];
    write_lines(path, &lines);
}

/// `schedtrace report TRACE --format json`: the JSON summary of a trace.
fn json_summary_of(trace: &Path) -> Value {
    let out = ok(
        schedtrace()
            .arg("report")
            .arg(trace)
            .args(["--format", "json"])
            .output()
            .unwrap(),
        "schedtrace report --format json",
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Sleep the kernel counted as waiting is stated apart in every summary:
/// the JSON's `run_delay_asleep_ns` (beside runnable time that excludes
/// it), the text's note and the HTML page's.
#[test]
fn sleep_the_kernel_counted_as_waiting_is_stated_apart() {
    let dir = tempdir();
    let trace = dir.path().join("sleepy.jsonl");
    kernel_counted_sleep_trace(&trace);
    let s = json_summary_of(&trace);
    let t = &s["threads"][0];
    assert_eq!(t["run_delay_asleep_ns"], 20_000_000, "{t}");
    assert_eq!(t["states"]["runnable_ns"], 4_000_000, "{t}");
    assert_eq!(s["totals"]["run_delay_asleep_ns"], 20_000_000);
    let text = ok(
        schedtrace().arg("report").arg(&trace).output().unwrap(),
        "schedtrace report",
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("the kernel counted 20.0 ms of sleep as run-queue wait"),
        "{text}"
    );
    let dom = html_dom(&trace);
    assert!(
        dom.contains("the kernel counted 20.0 ms of sleep as run-queue wait"),
        "{}",
        &dom[..dom.len().min(2000)]
    );
}

/// Two threads on one CPU, each run once; their switch-outs' counters say
/// how long each run was on the run-queue clock and what the kernel
/// charged: thread 101 ran 10 ms and was charged 8 ms (2 ms stolen),
/// thread 102 ran 5 ms and was charged all of it.
fn steal_trace(path: &Path) {
    use serde_json::json;
    const START: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;
    let task = |tid: u32| json!({"tid": tid, "tgid": 100, "comm": format!("t{tid}"), "prio": 120});
    let idle = json!({"tid": 0, "tgid": 0, "comm": "swapper/0", "prio": 120});
    let mut lines = vec![trace_header("stolen", START)];
    // (tid, runtime at the start, when it runs, how long, what it is charged)
    let runs = [
        (101, 5 * MS, 10 * MS, 10 * MS, 8 * MS),
        (102, MS, 20 * MS, 5 * MS, 5 * MS),
    ];
    for (tid, runtime, ..) in runs {
        lines.push(
            json!({"type": "thread", "ts": START, "tid": tid, "tgid": 100,
            "comm": format!("t{tid}"), "state": "S", "cpu": 0}),
        );
        lines.push(
            json!({"type": "counters", "ts": START, "tid": tid, "tgid": 100,
            "runtime_ns": runtime, "run_delay_ns": 0, "pcount": 1, "nvcsw": 1, "nivcsw": 0}),
        );
    }
    for (tid, runtime, at, len, charged) in runs {
        lines.push(
            json!({"type": "wakeup", "ts": START + at, "cpu": 0, "waker": idle,
            "wakee": task(tid), "wakee_cpu": 0, "wakee_run_delay_ns": 0}),
        );
        lines.push(
            json!({"type": "switch", "ts": START + at, "cpu": 0, "prev": idle,
            "next": task(tid), "prev_state": "S", "prev_state_raw": 1, "preempt": false,
            "next_counters": {"runtime_ns": runtime, "pcount": 2},
            "next_wait": {"run_delay_ns": 0, "queued_ns": 0}}),
        );
        lines.push(
            json!({"type": "switch", "ts": START + at + len, "cpu": 0, "prev": task(tid),
            "next": idle, "prev_state": "S", "prev_state_raw": 1, "preempt": false,
            "prev_counters": {"runtime_ns": runtime + charged, "run_clock_ns": len,
                "pcount": 2, "nvcsw": 2, "nivcsw": 0}}),
        );
    }
    lines.push(
        json!({"type": "end", "end_ns": START + 50 * MS, "events": 6, "lost_events": 0,
        "lost_per_cpu": [0], "complete": true, "reason": "duration"}),
    );
    write_lines(path, &lines);
}

/// The cell texts of each row of the HTML page's thread table (the header
/// first, the total last).
fn thread_table(dom: &str) -> Vec<Vec<String>> {
    let start = dom
        .find("<table class=\"threads\"")
        .expect("a thread table");
    let table = &dom[start..start + dom[start..].find("</table>").unwrap()];
    table
        .split("<tr")
        .skip(1)
        .map(|row| {
            row.split("<t")
                .filter(|c| ["d>", "d ", "h>", "h "].iter().any(|p| c.starts_with(p)))
                .map(|c| {
                    c[c.find('>').unwrap() + 1..]
                        .split('<')
                        .next()
                        .unwrap()
                        .to_string()
                })
                .collect()
        })
        .collect()
}

/// Steal is shown per thread beside on-CPU time: the JSON summary's
/// `steal_ns` of each thread and the total, and the HTML page's thread
/// table's column of it.
#[test]
fn html_thread_table_shows_each_threads_steal() {
    let dir = tempdir();
    let trace = dir.path().join("stolen.jsonl");
    steal_trace(&trace);
    let s = json_summary_of(&trace);
    let steal: BTreeMap<u64, u64> = s["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["tid"].as_u64().unwrap(), t["steal_ns"].as_u64().unwrap()))
        .collect();
    assert_eq!(steal, BTreeMap::from([(101, 2_000_000), (102, 0)]), "{s}");
    assert_eq!(s["totals"]["steal_ns"], 2_000_000);

    let rows = thread_table(&html_dom(&trace));
    let col = |name: &str| {
        rows[0]
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", rows[0]))
    };
    let steal_col = col("steal");
    assert_eq!(
        steal_col,
        col("on-CPU") + 2,
        "steal after on-CPU and its share: {:?}",
        rows[0]
    );
    let cell = |tid: &str| {
        let row = rows
            .iter()
            .find(|r| r.get(1).is_some_and(|c| c == tid))
            .unwrap_or_else(|| panic!("no row {tid}: {rows:?}"));
        row[steal_col].clone()
    };
    assert_eq!(cell("101"), "2.0 ms", "{rows:?}");
    assert_eq!(cell("102"), "0 ns", "{rows:?}");
    let total = rows.last().unwrap();
    assert_eq!(total[2], "total", "{rows:?}");
    assert_eq!(total[steal_col], "2.0 ms", "{rows:?}");
}

/// The data the page embeds.
fn embedded(page: &str) -> Value {
    let start = page.find("id=\"schedtrace-data\">").unwrap() + "id=\"schedtrace-data\">".len();
    let end = page[start..].find("</script>").unwrap() + start;
    serde_json::from_str(&page[start..end]).unwrap()
}

#[test]
fn html_report_renders_in_chromium_without_errors() {
    let html = scratch().join("report.html");
    let summary = report(&["--html".as_ref(), html.as_os_str()]);
    let page = std::fs::read_to_string(&html).unwrap();
    let data = embedded(&page);
    let threads = data["runs"][0]["timeline"]["threads"]
        .as_array()
        .unwrap()
        .len();
    assert!(threads >= 7, "the workload has 7 threads, got {threads}");
    let ncpus = summary["ncpus"].as_u64().unwrap() as usize;
    let url = format!("file://{}", html.display());

    let out = run_chromium(&[
        "--virtual-time-budget=5000".into(),
        "--dump-dom".into(),
        url.clone(),
    ]);
    let console = console_lines(&out.stderr);
    assert!(console.is_empty(), "console messages: {console:#?}");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-status=\"ok\""),
        "the page's script did not finish: {}",
        &dom[..dom.len().min(400)]
    );
    let lanes = |kind: &str| {
        dom.matches(&format!("class=\"lane\" data-kind=\"{kind}\""))
            .count()
    };
    assert_eq!(lanes("thread"), threads, "one lane per thread");
    assert_eq!(lanes("cpu"), ncpus, "one lane per CPU");
    assert_eq!(lanes("conc"), 1);
    assert!(dom.contains("<table class=\"threads\""));
    assert!(dom.contains("class=\"profile\""));
    assert!(dom.contains("Lost events"));
    // Drawn: rectangles in the plot, not just labels.
    assert!(
        dom.matches("<rect").count() > 100,
        "the timeline has rectangles"
    );

    // Zoom, pan and hover, with synthetic events from a script added to a
    // copy of the page (the page's policy allows inline scripts only).
    let probe = scratch().join("report-interact.html");
    std::fs::write(&probe, page.replace("</body>", INTERACT_JS)).unwrap();
    let out = run_chromium(&[
        "--window-size=1400,1100".into(),
        "--virtual-time-budget=5000".into(),
        "--dump-dom".into(),
        format!("file://{}", probe.display()),
    ]);
    let console = console_lines(&out.stderr);
    assert!(console.is_empty(), "console messages: {console:#?}");
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom.find("<pre id=\"interact\">").expect("the probe ran") + 19;
    let probe_out = &dom[start..start + dom[start..].find("</pre>").unwrap()];
    let field = |k: &str| {
        probe_out
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in {probe_out}"))
            .to_string()
    };
    assert_ne!(field("before"), field("zoomed"), "the wheel zooms");
    assert_ne!(field("zoomed"), field("panned"), "dragging pans");
    assert_eq!(field("reset"), field("before"), "double-click resets");
    let tip = field("tip");
    assert!(
        ["running", "runnable", "sleeping", "blocked", "not alive"]
            .iter()
            .any(|s| tip.contains(s)),
        "hover shows the state: {tip:?}"
    );
    assert_eq!(field("tipshown"), "block");

    let artifacts = workspace().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    for (name, hash) in [
        ("html-report.png", String::new()),
        ("html-report-zoomed.png", "#view=300000000-330000000".into()),
    ] {
        let png = artifacts.join(name);
        let _ = std::fs::remove_file(&png);
        let out = run_chromium(&[
            "--window-size=1400,1100".into(),
            "--virtual-time-budget=5000".into(),
            format!("--screenshot={}", png.display()),
            format!("{url}{hash}"),
        ]);
        assert!(console_lines(&out.stderr).is_empty());
        let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(size > 20_000, "{} is only {size} bytes", png.display());
        eprintln!("screenshot: {}", png.display());
    }
}

/// Drives the first timeline: wheel, drag, double-click, hover; writes what
/// the toolbar and tooltip said into `<pre id="interact">`.
const INTERACT_JS: &str = r#"<script>
(async () => {
  const frames = () => new Promise((r) => setTimeout(r, 150));
  const lines = [];
  try {
    const svg = document.querySelector('svg.timeline');
    const r = svg.getBoundingClientRect();
    const info = () => document.querySelector('.toolbar span').textContent;
    const at = (x, y) => ({ clientX: r.left + x, clientY: r.top + y, bubbles: true, cancelable: true });
    await frames();
    lines.push('before=' + info());
    svg.dispatchEvent(new WheelEvent('wheel', Object.assign({ deltaY: -600 }, at(700, 60))));
    await frames();
    lines.push('zoomed=' + info());
    svg.dispatchEvent(new MouseEvent('mousedown', at(700, 60)));
    window.dispatchEvent(new MouseEvent('mousemove', at(500, 60)));
    window.dispatchEvent(new MouseEvent('mouseup', at(500, 60)));
    await frames();
    lines.push('panned=' + info());
    svg.dispatchEvent(new MouseEvent('dblclick', at(700, 60)));
    await frames();
    lines.push('reset=' + info());
    const label = document.querySelector('g.lane[data-kind="thread"] text');
    const lr = label.getBoundingClientRect();
    svg.dispatchEvent(new MouseEvent('mousemove', { clientX: r.left + 600, clientY: lr.top + lr.height / 2, bubbles: true }));
    const tip = document.querySelector('.tooltip');
    lines.push('tip=' + tip.textContent);
    lines.push('tipshown=' + tip.style.display);
  } catch (e) {
    lines.push('error=' + e);
  }
  const pre = document.createElement('pre');
  pre.id = 'interact';
  pre.textContent = lines.join('\n');
  document.body.appendChild(pre);
})();
</script>
</body>"#;

/// Decode a Perfetto trace with Perfetto's generated classes; print the
/// sched events, the process tree and loss flags as JSON.
const DECODE_PY: &str = r#"
import json, sys
from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace
t = Trace()
t.ParseFromString(open(sys.argv[1], 'rb').read())
out = {"switches": [], "wakings": [], "processes": [], "threads": [], "lost_bundles": 0, "packets": len(t.packet)}
for p in t.packet:
    if p.HasField("ftrace_events"):
        b = p.ftrace_events
        if b.lost_events:
            out["lost_bundles"] += 1
        for e in b.event:
            if e.HasField("sched_switch"):
                s = e.sched_switch
                out["switches"].append([b.cpu, e.timestamp, e.pid, s.prev_pid, s.prev_state, s.next_pid, s.next_comm])
            elif e.HasField("sched_waking"):
                out["wakings"].append([b.cpu, e.timestamp, e.pid, e.sched_waking.pid])
    if p.HasField("process_tree"):
        for pr in p.process_tree.processes:
            out["processes"].append({"pid": pr.pid, "cmdline": list(pr.cmdline)})
        for th in p.process_tree.threads:
            out["threads"].append({"tid": th.tid, "tgid": th.tgid, "name": th.name})
print(json.dumps(out))
"#;

/// A Python with Perfetto's protos: `SCHEDTRACE_PYTHON`, or a venv in
/// `target/perfetto-py`, created with pip on first use.
fn perfetto_python() -> PathBuf {
    let has = |py: &Path| {
        Command::new(py)
            .args([
                "-c",
                "import perfetto.protos.perfetto.trace.perfetto_trace_pb2",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if let Some(p) = std::env::var_os("SCHEDTRACE_PYTHON") {
        let p = PathBuf::from(p);
        assert!(has(&p), "{} cannot import perfetto's protos", p.display());
        return p;
    }
    let venv = workspace().join("target/perfetto-py");
    let py = venv.join("bin/python");
    if py.exists() && has(&py) {
        return py;
    }
    ok(
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .expect("python3 is needed to decode the Perfetto trace"),
        "python3 -m venv",
    );
    ok(
        Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "perfetto",
                "protobuf",
            ])
            .output()
            .unwrap(),
        "pip install perfetto protobuf",
    );
    assert!(has(&py), "perfetto's protos still cannot be imported");
    py
}

#[test]
fn perfetto_trace_decodes_with_perfettos_own_protos() {
    let pf = scratch().join("trace.pftrace");
    let summary = report(&["--perfetto".as_ref(), pf.as_os_str()]);
    let py = perfetto_python();
    let out = ok(
        Command::new(&py)
            .arg("-c")
            .arg(DECODE_PY)
            .arg(&pf)
            .output()
            .unwrap(),
        "decoding the Perfetto trace",
    );
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pid = summary["target"]["pid"].as_u64().unwrap();

    // Process tree: the target, every thread of the summary, by name.
    assert!(
        d["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"] == pid)
    );
    let names: HashMap<u64, (String, u64)> = d["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tid"].as_u64().unwrap(),
                (
                    t["name"].as_str().unwrap().to_string(),
                    t["tgid"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    for t in summary["threads"].as_array().unwrap() {
        let tid = t["tid"].as_u64().unwrap();
        let (name, tgid) = names
            .get(&tid)
            .unwrap_or_else(|| panic!("thread {tid} unnamed"));
        assert_eq!(name, t["comm"].as_str().unwrap());
        assert_eq!(*tgid, pid);
    }

    // Sched switches chain per CPU and give back every thread's on-CPU time.
    let end = summary["window_end_ns"].as_u64().unwrap();
    let mut on: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut on_cpu: BTreeMap<u64, u64> = BTreeMap::new();
    let mut switches = d["switches"].as_array().unwrap().clone();
    switches.sort_by_key(|s| (s[0].as_u64(), s[1].as_u64()));
    assert!(switches.len() > 100, "only {} switches", switches.len());
    for s in &switches {
        let v: Vec<u64> = (0..6).map(|i| s[i].as_u64().unwrap()).collect();
        let (cpu, ts, common_pid, prev, prev_state, next) = (v[0], v[1], v[2], v[3], v[4], v[5]);
        assert_eq!(common_pid, prev);
        assert!(
            [0, 1, 2, 0x10].contains(&prev_state),
            "prev_state {prev_state}"
        );
        let (cur, since) = on.get(&cpu).copied().unwrap_or((0, 0));
        assert_eq!(cur, prev, "switches chain on CPU {cpu} at {ts}");
        if prev != 0 {
            *on_cpu.entry(prev).or_default() += ts - since;
        }
        on.insert(cpu, (next, ts));
    }
    for (_, (tid, since)) in on {
        if tid != 0 {
            *on_cpu.entry(tid).or_default() += end - since;
        }
    }
    for (tid, want) in on_cpu_by_tid(&summary) {
        assert_eq!(
            on_cpu.get(&tid).copied().unwrap_or(0),
            want,
            "on-CPU of {tid}"
        );
    }
    assert!(!d["wakings"].as_array().unwrap().is_empty());
    let lost = summary["lost_events"].as_u64().unwrap();
    assert_eq!(d["lost_bundles"].as_u64().unwrap() > 0, lost > 0);
}

#[test]
fn chrome_trace_has_no_partial_overlaps_and_keeps_on_cpu_time() {
    let path = scratch().join("trace.chrome.json");
    let summary = report(&["--chrome-trace".as_ref(), path.as_os_str()]);
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(doc["traceEvents"].as_array().unwrap().len() > 100);
    // ts/dur as written: "<µs>.<3 digits>" → exact ns.
    let ns = |line: &str, key: &str| -> u64 {
        let i = line.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
        let raw = &line[i..i + line[i..].find([',', '}']).unwrap()];
        let (a, b) = raw.split_once('.').unwrap();
        assert_eq!(b.len(), 3);
        a.parse::<u64>().unwrap() * 1000 + b.parse::<u64>().unwrap()
    };
    let mut tracks: HashMap<(u64, u64), Vec<(u64, u64)>> = HashMap::new();
    let mut on_cpu: BTreeMap<u64, u64> = BTreeMap::new();
    for line in text.lines().filter(|l| l.contains("\"ph\":\"X\"")) {
        let e: Value = serde_json::from_str(line.trim_end_matches(',')).unwrap();
        let (ts, dur) = (ns(line, "ts"), ns(line, "dur"));
        let key = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
        tracks.entry(key).or_default().push((ts, ts + dur));
        if e["args"]["state"] == "running" {
            *on_cpu.entry(key.1).or_default() += dur;
        }
    }
    for (key, mut v) in tracks {
        v.sort();
        for w in v.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "{key:?}: {:?} and {:?} overlap",
                w[0],
                w[1]
            );
        }
    }
    for (tid, want) in on_cpu_by_tid(&summary) {
        assert_eq!(on_cpu.get(&tid).copied().unwrap_or(0), want, "tid {tid}");
    }
}

#[test]
fn terminal_timeline_fits_the_width_and_colours_only_when_asked() {
    let run = |color: &str, columns: &str, no_color: bool| {
        let mut c = schedtrace();
        c.arg("report")
            .arg(trace())
            .args(["--timeline", "--color", color])
            .env("COLUMNS", columns);
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        String::from_utf8(ok(c.output().unwrap(), "report --timeline").stdout).unwrap()
    };
    let plain = run("never", "80", false);
    let tl = &plain[plain
        .find("Timeline:")
        .expect("a timeline after the summary")..];
    for line in tl.lines().filter(|l| l.contains('|')) {
        assert!(line.chars().count() <= 80, "too wide: {line:?}");
    }
    assert!(tl.contains("CPU 0"));
    assert!(!plain.contains('\x1b'));
    assert!(run("always", "120", false).contains("\x1b["));
    // auto: stdout is a pipe here, so no colours either way.
    assert!(!run("auto", "120", false).contains('\x1b'));
    assert!(!run("auto", "120", true).contains('\x1b'));
}

/// A ping-pong on one CPU, written as a trace file: two threads taking
/// 40 µs turns for 1 s. Each runs half the time, sleeps a quarter and
/// waits a quarter (woken 20 µs before its turn), so running is every
/// pixel's largest state though it fills only half of it. And 50 losses
/// within 1 ms in the middle. With `other`, a second traced process whose
/// one thread sleeps throughout.
fn ping_pong_trace(path: &Path, other: bool) {
    ping_pong_trace_of(path, other, 12_499);
}

/// [`ping_pong_trace`] with `cycles` turns of 80 µs (the losses come
/// after cycle 6,000).
fn ping_pong_trace_of(path: &Path, other: bool, cycles: u64) {
    use serde_json::json;
    const START: u64 = 1_000_000_000;
    const US: u64 = 1_000;
    let task = |tid: u32| json!({"tid": tid, "tgid": 100, "comm": format!("t{tid}"), "prio": 120});
    let mut lines = vec![trace_header("pingpong", START)];
    for tid in [101, 102] {
        lines.push(
            json!({"type": "thread", "ts": START, "tid": tid, "tgid": 100,
            "comm": format!("t{tid}"), "state": "S", "cpu": 0}),
        );
    }
    if other {
        lines[0]["version"] = json!(3);
        lines[0]["target"]["also"] = json!([{"pid": 200, "comm": "other"}]);
        lines.push(
            json!({"type": "thread", "ts": START, "tid": 200, "tgid": 200,
            "comm": "other", "state": "S", "cpu": 0}),
        );
    }
    let switch = |ts: u64, prev: Value, next: u32| {
        json!({"type": "switch", "ts": ts, "cpu": 0, "prev": prev, "next": task(next),
            "prev_state": "S", "prev_state_raw": 1, "preempt": false})
    };
    let wakeup = |ts: u64, waker: u32, wakee: u32| {
        json!({"type": "wakeup", "ts": ts, "cpu": 0, "waker": task(waker),
            "wakee": task(wakee), "wakee_cpu": 0})
    };
    let idle = json!({"tid": 0, "tgid": 0, "comm": "swapper/0", "prio": 120});
    lines.push(wakeup(START + 500, 0, 101));
    lines.push(switch(START + US, idle, 101));
    let mut events = 2;
    // Cycle c starts at 1 µs + 80c µs: 101 runs 40 µs, then 102.
    for c in 0..cycles {
        let t = START + US + c * 80 * US;
        lines.push(wakeup(t + 20 * US, 101, 102));
        lines.push(switch(t + 40 * US, task(101), 102));
        lines.push(wakeup(t + 60 * US, 102, 101));
        lines.push(switch(t + 80 * US, task(102), 101));
        events += 4;
        if c == 6_000 {
            for k in 0..50u64 {
                lines.push(
                    json!({"type": "lost", "ts": t + 80 * US + k * 20 * US, "cpu": 0, "count": 2}),
                );
            }
        }
    }
    lines.push(
        json!({"type": "end", "end_ns": START + 2 * US + cycles * 80 * US, "events": events,
        "lost_events": 100, "lost_per_cpu": [100], "complete": true, "reason": "duration"}),
    );
    write_lines(path, &lines);
}

/// The DOM of `schedtrace report TRACE --html` once its script has drawn
/// the page in a 1400×900 window.
fn html_dom(trace: &Path) -> String {
    dom_of(&html_page(trace), "")
}

/// `schedtrace report TRACE --html`: the page's path.
fn html_page(trace: &Path) -> PathBuf {
    let html = trace.with_extension("html");
    let out = schedtrace()
        .arg("report")
        .arg(trace)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    ok(out, "schedtrace report");
    html
}

/// The DOM of a page (its URL ending in `hash`) once its script has drawn
/// it in a 1400×900 window, checked to have finished without a console
/// message.
fn dom_of(html: &Path, hash: &str) -> String {
    let out = run_chromium(&[
        "--window-size=1400,900".into(),
        "--virtual-time-budget=5000".into(),
        "--dump-dom".into(),
        format!("file://{}{hash}", html.display()),
    ]);
    let console = console_lines(&out.stderr);
    assert!(console.is_empty(), "console messages: {console:#?}");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("data-status=\"ok\""),
        "the page's script did not finish: {}",
        &dom[..dom.len().min(400)]
    );
    dom
}

/// The area of the rectangles of each fill in `svg`, a piece of a page.
fn area_by_fill(svg: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for r in svg.split("<rect").skip(1) {
        let attr = |k: &str| -> Option<&str> {
            let at = r.find(&format!(" {k}=\""))? + k.len() + 3;
            Some(&r[at..at + r[at..].find('"')?])
        };
        let (Some(fill), Some(w), Some(h)) = (attr("fill"), attr("width"), attr("height")) else {
            continue;
        };
        let a = w.parse::<f64>().unwrap() * h.parse::<f64>().unwrap();
        *out.entry(fill.to_string()).or_default() += a;
    }
    out
}

/// Zoomed out, a lane shows each state's share of every pixel: two
/// threads that each ran half the time are drawn half green, not solid as
/// when a pixel took its largest state's colour (each pixel spans about 10
/// of their 80 µs cycles, and the shares of all pixels add up to the
/// lane's time, so the lanes' green share is one half up to the rounding
/// of each cell's height to 1/100 px and the segments cut at the window's
/// ends, far inside 5 points). Losses 20 µs apart make one mark, not
/// fifty.
#[test]
fn html_lanes_show_state_shares_and_close_loss_marks_collapse() {
    let dir = tempdir();
    let trace = dir.path().join("pingpong.jsonl");
    ping_pong_trace(&trace, false);
    let dom = html_dom(&trace);
    let area = |fill: &str| -> f64 {
        dom.split("<rect")
            .skip(1)
            .filter(|r| r.contains(&format!("fill=\"{fill}\"")))
            .map(|r| {
                let num = |k: &str| -> f64 {
                    let at = r.find(&format!(" {k}=\"")).expect(k) + k.len() + 3;
                    r[at..at + r[at..].find('"').unwrap()].parse().unwrap()
                };
                num("width") * num("height")
            })
            .sum()
    };
    let running = area("#2e9e5b");
    let all = running + area("#f0a030") + area("#e6e8eb") + area("#c0392b");
    let share = running / all;
    eprintln!("running share of the thread lanes: {share:.4}");
    assert!(
        (0.45..=0.55).contains(&share),
        "running share of the thread lanes: {share:.3} (solid lanes would be near 1)"
    );
    assert_eq!(
        dom.matches("class=\"lost-mark\"").count(),
        1,
        "one mark for the close losses"
    );
    assert!(
        dom.contains("100 lost in 50 places"),
        "the mark counts them all"
    );
}

/// With several processes, the page draws each one's threads together
/// under its name, the busiest process first.
#[test]
fn html_groups_threads_by_process() {
    let dir = tempdir();
    let trace = dir.path().join("two.jsonl");
    ping_pong_trace(&trace, true);
    let dom = html_dom(&trace);
    let at = |needle: &str| {
        dom.find(needle)
            .unwrap_or_else(|| panic!("{needle} in the page"))
    };
    let (first, second) = (at(">process 100 ("), at(">process 200 (other)<"));
    let lane = |tid: u32| at(&format!("data-kind=\"thread\" data-id=\"{tid}\""));
    assert!(
        first < lane(101) && lane(102) < second && second < lane(200),
        "grouped, busiest first"
    );
}

/// A ping-pong of 60,000 cycles (4.8 s, 240,000 events; about 840,000
/// records to draw, more than the page embeds in full): the page stays
/// under 50 MB, draws without errors, says that it left detail out, and
/// zoomed out shows every lane beyond the cut from the aggregates, with
/// each thread's shares as the trace made them (half running, a quarter
/// runnable: far from a solid lane). Zoomed into the first millisecond it
/// draws the records themselves; zoomed in beyond the cut, aggregates.
#[test]
fn html_long_trace_embeds_aggregates_beyond_its_detail() {
    let dir = tempdir();
    let trace = dir.path().join("long.jsonl");
    ping_pong_trace_of(&trace, false, 60_000);
    let html = html_page(&trace);
    let size = std::fs::metadata(&html).unwrap().len();
    eprintln!("page: {size} bytes");
    assert!(size < 50_000_000, "the page is {size} bytes");
    let data = embedded(&std::fs::read_to_string(&html).unwrap());
    let tl = &data["runs"][0]["timeline"];
    let (cut, window) = (
        tl["detail_ns"].as_u64().unwrap(),
        tl["window_ns"].as_u64().unwrap(),
    );
    assert!(cut < window / 2, "detail up to {cut} of {window} ns");

    let dom = dom_of(&html, "");
    let lanes = |kind: &str| {
        dom.matches(&format!("class=\"lane\" data-kind=\"{kind}\""))
            .count()
    };
    // The first wakeup's waker, TID 0 in the ping-pong's TGID, is a thread too.
    assert_eq!((lanes("thread"), lanes("cpu")), (3, 1));
    let note = dom
        .split("class=\"meta lod-note\">")
        .nth(1)
        .expect("a note on the detail left out");
    let note = &note[..note.find("</div>").unwrap()];
    assert!(
        note.contains("Full detail for the first") && note.contains("Perfetto"),
        "{note}"
    );
    assert!(dom.contains("class=\"detail-end\""), "the cut is marked");
    let agg: String = dom
        .split("<g class=\"agg\" data-kind=\"thread\">")
        .skip(1)
        .map(|g| &g[..g.find("</g>").unwrap()])
        .collect();
    let area = area_by_fill(&agg);
    let all: f64 = area.values().sum();
    let share = |fill: &str| area.get(fill).copied().unwrap_or(0.0) / all;
    eprintln!("thread lanes from aggregates: {area:?}");
    // Each lane is 15 px high and the cut is in the first half of about
    // 1200 px: both lanes draw over 500 px from the aggregates.
    assert!(all > 2.0 * 15.0 * 500.0 * 0.95, "aggregate area {all}");
    assert!(
        (0.45..=0.55).contains(&share("#2e9e5b")),
        "running {}",
        share("#2e9e5b")
    );
    assert!(
        (0.20..=0.30).contains(&share("#f0a030")),
        "runnable {}",
        share("#f0a030")
    );

    let first_ms = dom_of(&html, "#view=0-1000000");
    assert!(
        !first_ms.contains("class=\"share agg\""),
        "records, not aggregates, before the cut"
    );
    assert!(area_by_fill(&first_ms).contains_key("#2e9e5b"));
    let late = dom_of(
        &html,
        &format!("#view={}-{}", window - 2_000_000, window - 1_000_000),
    );
    assert!(
        late.contains("class=\"share agg\""),
        "aggregates beyond the cut"
    );
}

/// With several processes, a click on a process's heading collapses its
/// lanes and another shows them again; the filter box keeps the lanes
/// whose thread or process name contains what is typed.
#[test]
fn html_processes_collapse_and_lanes_filter_by_name() {
    let dir = tempdir();
    let trace = dir.path().join("two.jsonl");
    ping_pong_trace(&trace, true);
    let html = html_page(&trace);
    let page = std::fs::read_to_string(&html).unwrap();
    let probe = dir.path().join("probe.html");
    std::fs::write(&probe, page.replace("</body>", LANES_JS)).unwrap();
    let dom = dom_of(&probe, "");
    let start = dom.find("<pre id=\"lanes\">").expect("the probe ran") + 16;
    let out = &dom[start..start + dom[start..].find("</pre>").unwrap()];
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k} in {out}"))
            .to_string()
    };
    // TID 0, the first wakeup's waker, is in the ping-pong's TGID.
    assert_eq!(field("all"), "0,101,102,200");
    assert_eq!(field("collapsed"), "200", "process 100's lanes hidden");
    assert!(
        field("heading").contains("3 threads"),
        "{}",
        field("heading")
    );
    let (tall, short): (f64, f64) = (
        field("height_all").parse().unwrap(),
        field("height_collapsed").parse().unwrap(),
    );
    assert!(short < tall, "the timeline shrinks: {short} vs {tall}");
    assert_eq!(field("expanded"), "0,101,102,200");
    assert_eq!(field("by_thread"), "101", "filter t101");
    assert_eq!(field("by_process"), "0,101,102", "filter process 100");
    assert_eq!(field("cleared"), "0,101,102,200");
}

/// Collapses process 100 and opens it again, then filters the lanes;
/// writes the thread lanes shown after each step into `<pre id="lanes">`.
const LANES_JS: &str = r#"<script>
(async () => {
  const frames = () => new Promise((r) => setTimeout(r, 150));
  const lines = [];
  try {
    const ids = () => [...document.querySelectorAll('g.lane[data-kind="thread"]')].map((g) => g.getAttribute('data-id')).join(',');
    const svg = document.querySelector('svg.timeline');
    const heading = () => document.querySelector('text.section.process[data-tgid="100"]');
    await frames();
    lines.push('all=' + ids());
    lines.push('height_all=' + svg.getAttribute('height'));
    heading().dispatchEvent(new MouseEvent('click', { bubbles: true }));
    await frames();
    lines.push('collapsed=' + ids());
    lines.push('heading=' + heading().textContent);
    lines.push('height_collapsed=' + svg.getAttribute('height'));
    heading().dispatchEvent(new MouseEvent('click', { bubbles: true }));
    await frames();
    lines.push('expanded=' + ids());
    const input = document.querySelector('input.lane-filter');
    const type = async (text) => { input.value = text; input.dispatchEvent(new Event('input')); await frames(); };
    await type('t101');
    lines.push('by_thread=' + ids());
    await type('process 100');
    lines.push('by_process=' + ids());
    await type('');
    lines.push('cleared=' + ids());
  } catch (e) {
    lines.push('error=' + e);
  }
  const pre = document.createElement('pre');
  pre.id = 'lanes';
  pre.textContent = lines.join('\n');
  document.body.appendChild(pre);
})();
</script>
</body>"#;
