//! Why threads stopped (issue 16), on real workloads traced live: wait
//! reasons and off-CPU stacks of a C program whose threads block in
//! functions of their own, the process that ran instead of a target
//! pinned beside it on one CPU, and the switches of other tasks recorded
//! while (and only while) a thread woken from another CPU waits. Needs
//! root and gcc.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use schedtrace_tests::hostile::{self, cc};
use schedtrace_tests::*;
use serde_json::Value;

/// A file of this run's scratch directory (`target/tmp/schedtrace-why`,
/// emptied when this binary first asks for it: nothing piles up).
fn scratch(name: &str) -> PathBuf {
    fixture_dir(env!("CARGO_TARGET_TMPDIR"), "schedtrace-why").join(name)
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

/// Compile with frame pointers (the kernel walks user stacks by them).
fn cc_fp(name: &str, source: &str) -> PathBuf {
    hostile::cc_with(name, source, &["-O1", "-g", "-fno-omit-frame-pointer"])
}

/// Threads that wait in functions of their own: `sleeper` in
/// nanosleep (`nap_in_sleeper`), `reader` in read(2) on a pipe the main
/// thread feeds every 3 ms (`wait_for_pipe`), two `locker`s on one
/// mutex each holds for 2 ms (`take_the_lock`). Runs `argv[1]` seconds.
const WAITERS_C: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile int stop;
static int fds[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000L + t.tv_nsec / 1000;
}
__attribute__((noinline)) static void spin_us(long us) {
    long end = now_us() + us;
    while (now_us() < end) {}
}
__attribute__((noinline)) void nap_in_sleeper(void) {
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
}
__attribute__((noinline)) void *sleeper_main(void *a) {
    pthread_setname_np(pthread_self(), "sleeper");
    while (!stop) { nap_in_sleeper(); spin_us(200); }
    return a;
}
__attribute__((noinline)) void wait_for_pipe(void) {
    char c;
    if (read(fds[0], &c, 1) != 1) stop = 1;
}
__attribute__((noinline)) void *reader_main(void *a) {
    pthread_setname_np(pthread_self(), "reader");
    while (!stop) { wait_for_pipe(); spin_us(100); }
    return a;
}
__attribute__((noinline)) void take_the_lock(void) {
    pthread_mutex_lock(&mu);
    spin_us(2000);
    pthread_mutex_unlock(&mu);
}
__attribute__((noinline)) void *locker_main(void *a) {
    pthread_setname_np(pthread_self(), "locker");
    while (!stop) { take_the_lock(); spin_us(100); }
    return a;
}
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    if (pipe(fds)) return 1;
    pthread_t t[4];
    pthread_create(&t[0], 0, sleeper_main, 0);
    pthread_create(&t[1], 0, reader_main, 0);
    pthread_create(&t[2], 0, locker_main, 0);
    pthread_create(&t[3], 0, locker_main, 0);
    long end = now_us() + (long)(secs * 1e6);
    struct timespec ts = {0, 3 * 1000 * 1000};
    while (now_us() < end) {
        nanosleep(&ts, NULL);
        if (write(fds[1], "x", 1) != 1) return 1;
    }
    stop = 1;
    if (write(fds[1], "x", 1) != 1) return 1;
    for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
    return 0;
}
"#;

/// Parse folded lines: (thread frame, frames, µs).
fn folded(text: &str) -> Vec<(String, Vec<String>, u64)> {
    text.lines()
        .map(|l| {
            let (stack, us) = l.rsplit_once(' ').expect("a space before the value");
            let mut frames: Vec<String> = stack.split(';').map(str::to_string).collect();
            let thread = frames.remove(0);
            (thread, frames, us.parse().expect("µs"))
        })
        .collect()
}

/// The thread's largest off-CPU reason: (class, syscall name).
fn top_reason(t: &Value) -> (String, String) {
    let r = &t["off_cpu"]["reasons"][0];
    (
        r["class"].as_str().unwrap_or("").to_string(),
        r["syscall_name"].as_str().unwrap_or("").to_string(),
    )
}

/// A process asleep since before tracing started (`sleep 30`, in
/// `clock_nanosleep`) never switches out in the trace: its sleep is charged
/// to the system call `/proc` showed when tracing started, not "unknown".
#[test]
fn a_sleep_under_way_when_tracing_starts_is_charged_to_its_system_call() -> anyhow::Result<()> {
    require_root();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let sleeper = Killed(Command::new("sleep").arg("30").spawn()?);
    let pid = sleeper.0.id();
    // Asleep (and its counters still) before tracing starts.
    settled_counters(pid)?;
    let (status, out, err) = run_schedtrace(&[
        "--records",
        "--pid",
        &pid.to_string(),
        "--duration",
        "0.3",
        "--format",
        "json",
    ])?;
    assert!(status.success(), "{err}");
    let s = summary_from(&out)?;
    let t = &s["threads"][0];
    assert_eq!(
        top_reason(t),
        ("sleep".to_string(), "clock_nanosleep".to_string()),
        "{t}"
    );
    assert_eq!(
        t["off_cpu"]["reasons"].as_array().map(Vec::len),
        Some(1),
        "{t}"
    );
    assert_eq!(
        t["off_cpu"]["reasons"][0]["ns"], t["states"]["sleeping_ns"],
        "{t}"
    );
    Ok(())
}

#[test]
fn wait_reasons_and_off_cpu_stacks_of_threads_blocking_in_their_own_functions() {
    require_root();
    let exe = cc_fp("waiters", WAITERS_C);
    let fold = scratch("waiters.folded");
    let pprof = scratch("waiters.pb.gz");
    let out = ok(
        schedtrace()
            .args(["--quiet", "--format", "json", "--stacks", "--folded"])
            .arg(&fold)
            .arg("--pprof")
            .arg(&pprof)
            .arg("--")
            .arg(&exe)
            .arg("1.5")
            .output()
            .unwrap(),
        "schedtrace --stacks",
    );
    let summary = summary_from(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let text = std::fs::read_to_string(&fold).unwrap();
    let lines = folded(&text);
    let threads = summary["threads"].as_array().unwrap();
    let by_name = |n: &str| -> Vec<&Value> { threads.iter().filter(|t| t["comm"] == n).collect() };

    // The wait classes are those of the system calls each thread makes
    // (glibc's nanosleep is clock_nanosleep; a contended mutex is futex).
    let expect = [
        ("sleeper", "sleep", &["nanosleep", "clock_nanosleep"][..]),
        ("reader", "io", &["read"][..]),
        ("locker", "lock", &["futex"][..]),
    ];
    for (name, class, calls) in expect {
        let ts = by_name(name);
        assert_eq!(ts.len(), if name == "locker" { 2 } else { 1 }, "{name}");
        for t in ts {
            let (c, call) = top_reason(t);
            assert_eq!(c, class, "{name}: {}", t["off_cpu"]);
            assert!(calls.contains(&call.as_str()), "{name}: {}", t["off_cpu"]);
        }
    }

    // Each thread's stacks show its own function and the kernel path it
    // slept in; nearly all its off-CPU time is in such stacks.
    let own = [
        ("sleeper", "sleeper_main", "nap_in_sleeper", "do_nanosleep"),
        ("reader", "reader_main", "wait_for_pipe", "pipe_read"),
        ("locker", "locker_main", "take_the_lock", "futex_wait"),
    ];
    for (name, main_fn, leaf_fn, kernel_fn) in own {
        for t in by_name(name) {
            let frame = format!("{name}-{}", t["tid"]);
            let mine: Vec<_> = lines
                .iter()
                .filter(|(th, ..)| th.starts_with(&frame))
                .collect();
            let total: u64 = mine.iter().map(|l| l.2).sum();
            let with_own: u64 = mine
                .iter()
                .filter(|(_, f, _)| f.iter().any(|x| x == main_fn || x == leaf_fn))
                .filter(|(_, f, _)| f.iter().any(|x| x.contains(kernel_fn)))
                .map(|l| l.2)
                .sum();
            // The thread starts asleep in nothing of its own only before
            // its first switch-out: a few µs of 1.5 s.
            assert!(
                with_own * 100 >= total * 95,
                "{frame}: {with_own} of {total} µs in stacks with {main_fn}/{leaf_fn} and \
                 {kernel_fn}:\n{text}"
            );
            // It slept most of its 1.5 s (its whole profile is that time:
            // see the pprof check below, to the nanosecond).
            let states = &t["states"];
            let off_us = (states["sleeping_ns"].as_u64().unwrap()
                + states["blocked_ns"].as_u64().unwrap())
                / 1000;
            assert!(off_us > 100_000, "{frame} slept only {off_us} µs");
        }
    }

    // The pprof profile, decoded by an independent reader (Google's
    // protobuf runtime for Python, with classes protoc generates from the
    // official profile.proto), holds each thread's sleeping and blocked
    // time to the nanosecond (every sleep is in one sample: with its
    // stack, or under its reason when it has none), and the same time as
    // the folded stacks (which round each line to the µs).
    let decoded = decode_pprof(&pprof);
    for t in threads {
        let tid = t["tid"].as_u64().unwrap();
        let frame = format!("{}-{tid}", t["comm"].as_str().unwrap());
        let folded_us: u64 = lines
            .iter()
            .filter(|(th, ..)| th.starts_with(&frame))
            .map(|l| l.2)
            .sum();
        let lines_of = lines
            .iter()
            .filter(|(th, ..)| th.starts_with(&frame))
            .count() as u64;
        let pprof_ns = decoded.get(&tid).copied().unwrap_or(0);
        let states = &t["states"];
        assert_eq!(
            pprof_ns,
            states["sleeping_ns"].as_u64().unwrap() + states["blocked_ns"].as_u64().unwrap(),
            "{frame}: pprof against sleeping + blocked"
        );
        assert!(
            (pprof_ns / 1000).abs_diff(folded_us) <= lines_of + 1,
            "{frame}: pprof {pprof_ns} ns, folded {folded_us} µs"
        );
    }
}

/// Off-CPU ns per `tid` label of a `--pprof` file, read with Python's
/// protobuf runtime (Debian's python3-protobuf) and classes generated by
/// Debian's protoc from tracer/proto/profile.proto.
fn decode_pprof(path: &std::path::Path) -> BTreeMap<u64, u64> {
    let out_dir = scratch("pprof-py");
    std::fs::create_dir_all(&out_dir).unwrap();
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tracer/proto");
    ok(
        Command::new("protoc")
            .arg(format!("--python_out={}", out_dir.display()))
            .arg("-I")
            .arg(&proto_dir)
            .arg(proto_dir.join("profile.proto"))
            .output()
            .expect("protoc (cargo xtask setup installs it)"),
        "protoc",
    );
    let script = r#"
import gzip, sys
sys.path.insert(0, sys.argv[1])
import profile_pb2
p = profile_pb2.Profile()
p.ParseFromString(gzip.open(sys.argv[2]).read())
s = p.string_table
idx = [s[t.type] for t in p.sample_type].index("off_cpu")
per = {}
for x in p.sample:
    tid = [l.num for l in x.label if s[l.key] == "tid"][0]
    per[tid] = per.get(tid, 0) + x.value[idx]
for tid, ns in sorted(per.items()):
    print(tid, ns)
"#;
    let out = ok(
        Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .arg(&out_dir)
            .arg(path)
            .output()
            .expect("python3"),
        "decoding the pprof file",
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

/// A Node.js script that keeps every kind of Node thread busy for
/// `argv[2]` seconds: crypto.pbkdf2 and fs.readFile on the libuv pool, a
/// worker_threads worker answering messages, timers on the main loop.
const ROLES_JS: &str = r#"
const crypto = require('crypto');
const fs = require('fs');
const { Worker } = require('worker_threads');
const w = new Worker(`
const { parentPort } = require('worker_threads');
parentPort.on('message', () => {
  let x = 0;
  for (let i = 0; i < 100000; i++) x += i;
  parentPort.postMessage(x);
});`, { eval: true });
const end = Date.now() + Number(process.argv[2] || 1.5) * 1000;
function tick() {
  if (Date.now() > end) { w.terminate(); return; }
  crypto.pbkdf2('secret', 'salt', 2000, 32, 'sha256', () => {});
  fs.readFile(__filename, () => {});
  w.postMessage(1);
  setTimeout(tick, 5);
}
tick();
"#;

#[test]
fn real_node_threads_get_their_roles() {
    require_root();
    let script = scratch("roles.js");
    std::fs::write(&script, ROLES_JS).unwrap();
    let fold = scratch("node.folded");
    let out = ok(
        schedtrace()
            // -v: its log says, per thread, how reading its stack memory went.
            .args(["--quiet", "-v", "--format", "json", "--stacks", "--folded"])
            .arg(&fold)
            .arg("--")
            .args([
                "env",
                "UV_THREADPOOL_SIZE=4",
                "node",
                "--v8-pool-size=4",
                "--perf-basic-prof",
            ])
            .arg(&script)
            .arg("1.5")
            // V8 writes an isolate-*-v8.log per isolate into its working
            // directory when asked for perf maps: keep them out of the repo.
            .current_dir(script.parent().unwrap())
            .output()
            .expect("node (cargo xtask setup installs Debian's nodejs)"),
        "schedtrace on node",
    );
    let summary = summary_from(&String::from_utf8_lossy(&out.stdout)).unwrap();
    // --perf-basic-prof has node write /tmp/perf-PID.map (env execs node,
    // so PID is the target's); the symboliser has read it by now.
    if let Some(pid) = summary["target"]["pid"].as_u64() {
        let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    }
    let threads = summary["threads"].as_array().unwrap();
    let mut roles: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for t in threads.iter().filter(|t| t["comm"] == "node") {
        let role = t["role"]["label"].as_str().unwrap_or("-").to_string();
        roles
            .entry(role)
            .or_default()
            .push(t["tid"].as_u64().unwrap());
    }
    let n = |r: &str| roles.get(r).map_or(0, Vec::len);
    let main = threads
        .iter()
        .find(|t| t["tid"] == t["tgid"] && t["comm"] == "node")
        .expect("node's main thread");
    assert_eq!(main["role"]["label"], "main event loop", "{roles:?}");
    // UV_THREADPOOL_SIZE=4: four pool threads, all busy with pbkdf2 and
    // reads; one Worker; one V8 delayed-task scheduler; --v8-pool-size=4:
    // four platform workers; Node's inspector signal thread.
    assert_eq!(n("libuv threadpool"), 4, "{roles:?}");
    assert_eq!(n("worker_threads worker"), 1, "{roles:?}");
    assert_eq!(n("V8 delayed-task scheduler"), 1, "{roles:?}");
    assert_eq!(n("V8 platform worker"), 4, "{roles:?}");
    assert_eq!(n("inspector I/O"), 1, "{roles:?}");
    // Node has no frame pointers, so those come from the function each
    // thread started in, read from its stack memory while it was blocked
    // in a system call (every one of them blocks within the first 100 ms
    // and is read at the next naming round, 100 ms later, for up to 2 s;
    // one caught in a page fault is read again). The main thread is
    // the process's first: it needs no start function.
    let log = String::from_utf8_lossy(&out.stderr);
    for t in threads
        .iter()
        .filter(|t| t["comm"] == "node" && t["tid"] != t["tgid"])
    {
        let said = format!("thread {}:", t["tid"]);
        let reads: Vec<&str> = log.lines().filter(|l| l.contains(&said)).collect();
        assert_eq!(t["role"]["evidence"], "stacks", "{t}\n{reads:#?}");
    }
    // The folded stacks carry the roles next to the names.
    let text = std::fs::read_to_string(&fold).unwrap();
    assert!(text.contains("(main event loop);"), "{text}");
    assert!(text.contains("(libuv threadpool);"), "{text}");
}

/// Spins for `argv[1]` seconds in bursts of 4 ms with 1 ms naps: a
/// target that wants a CPU most of the time.
const VICTIM_C: &str = r#"
#include <stdlib.h>
#include <time.h>
static long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000L + t.tv_nsec / 1000;
}
int main(int argc, char **argv) {
    long end = now_us() + (long)(atof(argv[1]) * 1e6);
    struct timespec ts = {0, 1000 * 1000};
    while (now_us() < end) {
        long b = now_us() + 4000;
        while (now_us() < b) {}
        nanosleep(&ts, 0);
    }
    return 0;
}
"#;

/// A process that spins on CPU 1 for 6 s, longer than any trace here.
fn hog_on_cpu1() -> std::process::Child {
    Command::new("taskset")
        .args(["-c", "1"])
        .arg(cc("cpuhog", hostile::STRANGER_C))
        .arg("6")
        .spawn()
        .unwrap()
}

#[test]
fn a_busy_process_pinned_beside_the_target_is_who_ran_instead() {
    require_root();
    let victim = cc("victim", VICTIM_C);
    // The hog spins on CPU 1 for longer than the trace.
    let mut hog = hog_on_cpu1();
    let hog_pid = hog.id();
    std::thread::sleep(Duration::from_millis(200));
    let chrome = scratch("victim.chrome.json");
    let out = schedtrace()
        .args([
            "--quiet",
            "--format",
            "json",
            "--cpus",
            "1",
            "--chrome-trace",
        ])
        .arg(&chrome)
        .arg("--")
        .arg(&victim)
        .arg("1.5")
        .output()
        .unwrap();
    let _ = hog.kill();
    let _ = hog.wait();
    let out = ok(out, "schedtrace beside a hog");
    let summary = summary_from(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let t = &summary["threads"][0];
    assert_eq!(t["comm"], "victim");
    let runnable = t["states"]["runnable_ns"].as_u64().unwrap();
    // Two tasks that both want CPU 1 share it: the victim waits a large
    // part of its 1.5 s.
    assert!(runnable > 200_000_000, "runnable {runnable} ns");
    let holders = |key: &str| -> BTreeMap<String, (u64, u64)> {
        t[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    format!("{}:{}", h["comm"].as_str().unwrap_or("?"), h["tgid"]),
                    (h["ns"].as_u64().unwrap(), h["count"].as_u64().unwrap()),
                )
            })
            .collect()
    };
    let hog_key = format!("cpuhog:{hog_pid}");
    // Stretches of the victim's waiting (by the tracepoint timestamps) are
    // charged to whoever held CPU 1 then (or to "not recorded"), so in all
    // they are at most its waiting by the same timestamps: its runnable
    // slices in the Chrome trace (written to the ns; 1 µs for the window's
    // edges). Not the summary's runnable time, which is the kernel's
    // `run_delay`: that starts at the enqueue on the wakee's CPU, which for
    // a wakeup from another CPU waits for an IPI that a VM delivers late
    // when its vCPU is not running (steal), by no bound a test can state.
    let sum = |key: &str, others: &str| -> u64 {
        t[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["ns"].as_u64().unwrap())
            .sum::<u64>()
            + t[others]["ns"].as_u64().unwrap()
    };
    let behind_total = sum("waited_behind", "waited_behind_others");
    let trace: Value = serde_json::from_slice(&std::fs::read(&chrome).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let victim_tid = t["tid"].as_u64().unwrap();
    let stamped: f64 = events
        .iter()
        .filter(|e| {
            e["cat"] == "thread_state" && e["tid"] == victim_tid && e["args"]["state"] == "runnable"
        })
        .map(|e| e["dur"].as_f64().unwrap_or(0.0))
        .sum();
    let stamped = (stamped * 1000.0).round() as u64;
    assert!(
        behind_total <= stamped + 1_000,
        "waited behind {behind_total} ns in all, runnable by the timestamps {stamped} ns \
         (by the kernel {runnable} ns)"
    );
    // The hog, always runnable on CPU 1, is named among the tasks the
    // victim waited behind and those that preempted it. CFS shares CPU 1
    // equally among the tasks that want it: with the hog and a few build
    // jobs of other users of this shared machine, the hog holds it for a
    // good part of the victim's wait (over 100 ms of its 1.5 s).
    let behind = holders("waited_behind");
    let preempted = holders("preempted_by");
    assert!(preempted.contains_key(&hog_key), "{hog_key}: {preempted:?}");
    let (ns, count) = *behind
        .get(&hog_key)
        .unwrap_or_else(|| panic!("{hog_key} not in waited_behind: {behind:?}"));
    assert!(ns > 100_000_000, "{hog_key}: {ns} ns, {count}");
    // Where no record tells who held the CPU (measured, for the notes).
    let unrecorded: u64 = t["waited_behind"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["kind"] == "unrecorded")
        .map(|h| h["ns"].as_u64().unwrap())
        .sum();
    eprintln!(
        "victim runnable {runnable} ns ({stamped} ns by the timestamps): charged \
         {behind_total} ns, behind the hog {ns} ns, unrecorded {unrecorded} ns"
    );

    // The Chrome trace shows the hog on CPU 1's lane.
    let on_lane: f64 = events
        .iter()
        .filter(|e| e["cat"] == "other" && e["args"]["tgid"] == hog_pid)
        .map(|e| e["dur"].as_f64().unwrap_or(0.0))
        .sum();
    // The lane shows each of the hog's holds of CPU 1 the trace knows,
    // those the victim waited through among them (µs in the Chrome trace).
    assert!(
        on_lane * 1000.0 + 1_000.0 >= ns as f64,
        "hog on the CPU lane for {on_lane} µs, waited behind for {ns} ns"
    );
}

/// A `sleeper` thread pinned to CPU 1 (at nice 19, so that it waits
/// behind what else runs there) blocks reading a pipe that the main
/// thread, pinned to CPU 0, writes a byte to every 5 ms for `argv[1]`
/// seconds: every wakeup of the sleeper comes from the other CPU.
const REMOTE_WAKEE_C: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static int fds[2];
static void pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof s, &s);
}
static void *sleeper(void *arg) {
    (void)arg;
    pin(1);
    setpriority(PRIO_PROCESS, syscall(SYS_gettid), 19);
    char c;
    while (read(fds[0], &c, 1) == 1) {}
    return 0;
}
int main(int argc, char **argv) {
    struct timespec t0, t, gap = {0, 5 * 1000 * 1000};
    if (pipe(fds)) return 1;
    pthread_t th;
    pthread_create(&th, 0, sleeper, 0);
    pthread_setname_np(th, "sleeper");
    pin(0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        nanosleep(&gap, 0);
        if (write(fds[1], "x", 1) != 1) return 1;
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < atof(argv[1]));
    close(fds[1]);
    pthread_join(th, 0);
    return 0;
}
"#;

/// The kernel side counts a wakee as waiting on its CPU from its
/// `sched_waking` (on the waker's CPU, here always the other one) to its
/// switch-in, and records the switches between other tasks on that CPU
/// only while such a count is up. Two hogs share CPU 1 with the sleeper:
/// their switches are recorded while it waits, and none while no traced
/// thread waits there (CPU 1 never goes idle, which would reset a count
/// left behind: one would show here).
#[test]
fn switches_of_others_are_recorded_while_a_wakee_from_another_cpu_waits_and_only_then() {
    require_root();
    let prog = cc("remote-wakee", REMOTE_WAKEE_C);
    let mut hogs: Vec<_> = (0..2).map(|_| hog_on_cpu1()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let events = scratch("remote-wakee.jsonl");
    let out = schedtrace()
        .args(["--quiet", "--format", "json", "--force", "--json"])
        .arg(&events)
        .arg("--")
        .arg(&prog)
        .arg("1.5")
        .output()
        .unwrap();
    for h in &mut hogs {
        let _ = h.kill();
        let _ = h.wait();
    }
    let out = ok(out, "schedtrace beside two hogs");
    let summary = summary_from(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(
        summary["lost_events"], 0,
        "a lost record would break the check"
    );
    let sleeper = summary["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["comm"] == "sleeper")
        .expect("the sleeper thread");
    let tgid = sleeper["tgid"].as_u64().unwrap();
    // Every traced thread's waits, by CPU: from its waking (or its
    // preemption) to its switch-in there.
    let text = std::fs::read_to_string(&events).unwrap();
    let mut since: BTreeMap<u64, u64> = BTreeMap::new();
    let mut waits: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    let mut foreign: Vec<(u64, u64)> = Vec::new();
    for line in text.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let ts = r["ts"].as_u64().unwrap_or(0);
        match r["type"].as_str() {
            Some("wakeup" | "wakeup_new") if r["wakee"]["tgid"] == tgid => {
                since
                    .entry(r["wakee"]["tid"].as_u64().unwrap())
                    .or_insert(ts);
            }
            Some("switch") => {
                let (prev, next) = (&r["prev"], &r["next"]);
                let cpu = r["cpu"].as_u64().unwrap();
                if next["tgid"] == tgid
                    && let Some(from) = since.remove(&next["tid"].as_u64().unwrap())
                {
                    waits.entry(cpu).or_default().push((from, ts));
                }
                // Preempted (also as it went to sleep): it waits on.
                if prev["tgid"] == tgid && (r["prev_state"] == "R" || r["preempt"] == true) {
                    since.insert(prev["tid"].as_u64().unwrap(), ts);
                }
                if prev["tgid"] != tgid && next["tgid"] != tgid {
                    foreign.push((cpu, ts));
                }
            }
            _ => {}
        }
    }
    // A wakee is counted just before its waking record's timestamp is
    // taken, in the same program run (155 ns in all, `bpf_stats`), so a
    // switch on its CPU can be recorded with a timestamp that little
    // before the waking's: 10 µs is over 60 such runs.
    const COUNTED_BEFORE_STAMP_NS: u64 = 10_000;
    let inside = |cpu: u64, ts: u64| {
        waits.get(&cpu).is_some_and(|w| {
            w.iter()
                .any(|&(a, b)| a.saturating_sub(COUNTED_BEFORE_STAMP_NS) <= ts && ts <= b)
        })
    };
    let outside: Vec<_> = foreign.iter().filter(|&&(c, t)| !inside(c, t)).collect();
    let on_cpu1 = foreign.iter().filter(|&&(c, _)| c == 1).count();
    let waited: u64 = waits
        .get(&1)
        .map_or(0, |w| w.iter().map(|(a, b)| b - a).sum());
    eprintln!(
        "sleeper waits on CPU 1: {} ({waited} ns); switches of others recorded: {} ({on_cpu1} on \
         CPU 1), {} outside every wait",
        waits.get(&1).map_or(0, Vec::len),
        foreign.len(),
        outside.len()
    );
    assert!(outside.is_empty(), "recorded outside any wait: {outside:?}");
    // The hogs take turns on CPU 1 every few ms while the sleeper, at
    // nice 19, waits there for a good part of its 300 wakeups.
    assert!(
        on_cpu1 > 0,
        "no switch of the hogs recorded while the sleeper waited"
    );
    let behind: Vec<&str> = sleeper["waited_behind"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["comm"].as_str())
        .collect();
    assert!(behind.contains(&"cpuhog"), "{behind:?}");
}
