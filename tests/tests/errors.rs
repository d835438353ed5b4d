//! Failing clearly: bad input, missing privileges, missing kernel features,
//! unwritable or full outputs, broken trace files, signals. Each test checks
//! the one-line message the user sees (listed in the README's
//! troubleshooting table), the exit code, and that nothing is left behind.

use std::process::Command;
use std::time::Duration;

use schedtrace_tests::*;

/// Run schedtrace with `args`; expect exit code 1 and `needle` in the error line.
fn fails_with(args: &[&str], needle: &str) -> String {
    let (status, out, err) = run_schedtrace(args).expect("run schedtrace");
    assert_eq!(status.code(), Some(1), "{args:?}: {err}");
    assert!(out.is_empty(), "{args:?} printed on stdout: {out}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// clap rejects these before anything runs (exit code 2).
fn usage_error(args: &[&str], needle: &str) {
    let (status, _, err) = run_schedtrace(args).expect("run schedtrace");
    assert_eq!(status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err:?}"
    );
}

#[test]
fn bad_pids_are_refused_clearly() {
    require_root();
    fails_with(&["--pid", "4000000"], "no process with PID 4000000");
    usage_error(&["--pid", "0"], "is not a process ID");
    usage_error(&["--pid", "-5"], "is not a process ID");
    usage_error(&["--pid", "abc"], "is not a process ID");
    fails_with(&["--pid", "2"], "is a kernel thread");
    // A zombie: our own child that exited and was not reaped yet.
    let mut z = Command::new("true").spawn().unwrap();
    let zpid = z.id();
    wait_for(Duration::from_secs(5), || {
        (schedtrace::procfs::stat(zpid).ok()?.state == 'Z').then_some(())
    })
    .expect("a zombie child");
    fails_with(&["--pid", &zpid.to_string()], "is a zombie");
    z.wait().unwrap();
}

#[test]
fn conflicting_and_invalid_options_are_refused() {
    require_root();
    for d in ["0", "-1", "abc"] {
        usage_error(&["--pid", "1", "--duration", d], "--duration");
    }
    usage_error(&["--pid", "1", "--", "true"], "cannot be used with");
    usage_error(&["--format", "xml"], "invalid value 'xml'");
    usage_error(&["--buffer-size", "1000"], "power of two");
    fails_with(
        &["--pid", "1", "--cpus", "0"],
        "--cpus, --as-root and --allow-new-privs apply to a command",
    );
    fails_with(&["--cpus", "99", "--", "true"], "--cpus names CPU 99");
    // The kernel sums write no record per switch: nothing to save or draw.
    for extra in [
        &["--json", "t.jsonl"][..],
        &["--record", "t.bin"],
        &["--timeline"],
        &["--html", "t.html"],
        &["--stacks"],
        &["--all"],
        // A process that becomes a target mid-trace (an exec or rename to
        // the name, a move into the cgroup) has counters from before it.
        &["--comm", "x"],
        &["--cgroup", "/sys/fs/cgroup"],
    ] {
        let mut args = vec!["--kernel-sums"];
        args.extend_from_slice(extra);
        usage_error(&args, "cannot be used with");
    }
}

#[test]
fn without_root_or_capabilities_says_what_is_needed() {
    require_root();
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(bin())
        .args(["--pid", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("needs root") && err.contains("CAP_BPF"),
        "{err}"
    );
    let out = Command::new("setpriv")
        .args([
            "--bounding-set=-bpf,-perfmon,-sys_admin",
            "--inh-caps=-bpf,-perfmon,-sys_admin",
        ])
        .arg(bin())
        .args(["--pid", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("without CAP_BPF and CAP_PERFMON"), "{err}");
}

#[test]
fn missing_btf_is_explained() {
    require_root();
    let out = schedtrace()
        .env("SCHEDTRACE_BTF", "/nonexistent/vmlinux")
        .args(["--pid", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
}

#[test]
fn works_without_tracefs() {
    require_root();
    // In a private mount namespace with tracefs and debugfs unmounted: `tp_btf`
    // programs attach by BTF type and need neither.
    let script = format!(
        "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug 2>/dev/null; \
         grep -q tracefs /proc/mounts && exit 99; \
         exec {} --format json -q -- sh -c 'sleep 0.1'",
        bin().display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(99), "tracefs still mounted");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary_from(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert!(s["events"].as_u64().unwrap() > 0);
}

#[test]
fn output_files_are_checked_before_tracing() {
    require_root();
    let dir = tempdir();
    let missing = dir.join("no/such/dir/t.jsonl");
    fails_with(
        &["--json", missing.to_str().unwrap(), "--", "true"],
        "does not exist",
    );
    fails_with(
        &["--json", dir.to_str().unwrap(), "--", "true"],
        "is a directory",
    );
    let existing = dir.join("exists.jsonl");
    std::fs::write(&existing, "keep me").unwrap();
    fails_with(
        &["--json", existing.to_str().unwrap(), "--", "true"],
        "already exists; use --force",
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
    let link = dir.join("link.jsonl");
    std::os::unix::fs::symlink(&existing, &link).unwrap();
    fails_with(
        &["--json", link.to_str().unwrap(), "--force", "--", "true"],
        "symbolic link",
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
    // Unwritable for the user: a read-only bind of the directory.
    let ro = dir.join("ro");
    std::fs::create_dir(&ro).unwrap();
    let script = format!(
        "mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && exec {bin} --json {ro}/t.jsonl -- true",
        ro = ro.display(),
        bin = bin().display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write") && err.contains("Read-only"),
        "{err}"
    );
}

#[test]
fn full_disk_reports_the_error_prints_the_summary_and_removes_the_file() {
    require_root();
    let dir = tempdir();
    let mnt = dir.join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    // A 64 KiB tmpfs in a private mount namespace: the trace cannot fit.
    let script = format!(
        "mount -t tmpfs -o size=64k tmpfs {m} && {bin} --format json --json {m}/t.jsonl -- {bin} __workload --seconds 0.5; \
         rc=$?; ls {m}; exit $rc",
        m = mnt.display(),
        bin = bin().display()
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("incomplete file was removed"), "{err}");
    let s = summary_from(&stdout).expect("the summary still prints");
    assert!(s["events"].as_u64().unwrap() > 100);
    assert!(
        !stdout.contains("t.jsonl"),
        "the partial file is gone: {stdout}"
    );
}

#[test]
fn broken_trace_files_give_line_numbers() {
    let dir = tempdir();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "the trace file is empty"),
        (
            "random",
            (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
            "line 1: not a schedtrace trace",
        ),
        (
            "newer",
            b"{\"type\":\"header\",\"schema\":\"schedtrace-trace\",\"version\":99}\n".to_vec(),
            "line 1: trace schema version 99 is newer",
        ),
        (
            // A line cut short in the middle of the file (a cut at the
            // end is a trace killed while writing: see robustness.rs).
            "broken-line",
            format!(
                "{}\n{{\"type\":\"switch\",\"ts\":5,\"cpu\":0,\"prev\":{{\"tid\":1,\n{}\n",
                header_line(),
                r#"{"type":"lost","ts":6,"cpu":0,"count":1}"#
            )
            .into_bytes(),
            "line 2, column 48: EOF while parsing a value",
        ),
        (
            "huge",
            format!("{}\n{}", header_line(), "x".repeat(2 << 20)).into_bytes(),
            "line 2: longer than",
        ),
    ];
    for (name, bytes, needle) in cases {
        let f = dir.join(name);
        std::fs::write(&f, bytes).unwrap();
        fails_with(&["report", f.to_str().unwrap()], needle);
    }
}

fn header_line() -> String {
    r#"{"type":"header","schema":"schedtrace-trace","version":1,"clock":"CLOCK_MONOTONIC","wall_clock_offset_ns":0,"ncpus":2,"target":{"pid":100,"comm":"x"},"kernel_release":"k","hostname":"h","tool_version":"t","start_ns":1}"#.to_string()
}

#[test]
fn signals_finish_every_output() {
    require_root();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let dir = tempdir();
        let file = dir.join("t.jsonl");
        let w = Workload::start(5.0, 1, 0).unwrap();
        let tracer = Tracer::start(&[
            "--pid",
            &w.pid.to_string(),
            "--format",
            "json",
            "--json",
            file.to_str().unwrap(),
        ])
        .unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(tracer.child.id() as i32, sig) };
        let (status, out) = tracer.wait().unwrap();
        assert!(status.success(), "signal {sig}: {status}");
        let s = summary_from(&out).unwrap();
        assert!(s["stop_reason"].as_str().unwrap().starts_with("signal"));
        let text = std::fs::read_to_string(&file).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["type"], "end");
        assert_eq!(last["complete"], true);
    }
}

#[test]
fn closed_pipe_exits_quietly() {
    require_root();
    let dir = tempdir();
    let file = dir.join("t.jsonl");
    let (status, _, err) = run_schedtrace(&[
        "-q",
        "--json",
        file.to_str().unwrap(),
        "--",
        bin().to_str().unwrap(),
        "__workload",
        "--seconds",
        "0.3",
    ])
    .unwrap();
    assert!(status.success(), "{err}");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} report {} | head -c 10",
            bin().display(),
            file.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.is_empty(), "nothing on stderr for a closed pipe: {err}");
}

/// Make a named pipe at `path`.
fn mkfifo(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn target_exiting_between_lookup_and_attach_is_reported() {
    require_root();
    let dir = tempdir();
    let json = dir.join("t.jsonl");
    // schedtrace reads the kernel's BTF after it has looked the target up
    // and opened a pidfd on it, and before it loads and attaches. Serving
    // the BTF through a FIFO holds it in that window for as long as we like.
    let fifo = dir.join("vmlinux");
    mkfifo(&fifo);
    let btf = std::fs::read("/sys/kernel/btf/vmlinux").expect("kernel BTF");
    let mut target = Command::new("sleep").arg("60").spawn().unwrap();
    let tpid = target.id();
    let tracer = schedtrace()
        .env("SCHEDTRACE_BTF", &fifo)
        .args(["--pid", &tpid.to_string(), "--json", json.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A non-blocking open for writing succeeds once schedtrace has the FIFO
    // open for reading.
    let opened = wait_for(Duration::from_secs(10), || {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .ok()
    });
    let Ok(mut w) = opened else {
        let out = tracer.wait_with_output().unwrap();
        panic!(
            "schedtrace never read its BTF: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The target goes away for good while schedtrace is in the window.
    target.kill().unwrap();
    target.wait().unwrap();
    // SAFETY: clearing O_NONBLOCK on a descriptor we own.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&w), libc::F_SETFL, 0) };
    std::io::Write::write_all(&mut w, &btf).unwrap();
    drop(w);
    let out = tracer.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        format!("schedtrace: error: process {tpid} exited before tracing could start\n")
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!json.exists(), "no partial trace file is left behind");
}

/// Descriptors of loaded BPF programs or links that `pid` holds.
fn bpf_program_fds(pid: u32) -> usize {
    bpf_fds(pid, &["bpf-prog", "bpf_link", "bpf-link"])
}

/// Descriptors of BPF links (attachments) that `pid` holds.
fn bpf_link_fds(pid: u32) -> usize {
    bpf_fds(pid, &["bpf_link", "bpf-link"])
}

fn bpf_fds(pid: u32, kinds: &[&str]) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| {
                    let l = l.to_string_lossy();
                    kinds.iter().any(|k| l.contains(k))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn second_ctrl_c_while_finishing_stops_at_once_and_leaves_valid_files() {
    require_root();
    let dir = tempdir();
    let file = dir.join("t.jsonl");
    let mut w = Workload::start(2.0, 1, 0).unwrap();
    let mut cmd = schedtrace();
    // The hidden hook holds the finishing phase for up to a minute (see
    // `test_hook_slow_finish` in tracer/src/capture/signals.rs).
    cmd.env("SCHEDTRACE_TEST_SLOW_FINISH_MS", "60000").args([
        "--pid",
        &w.pid.to_string(),
        "--format",
        "json",
        "--json",
        file.to_str().unwrap(),
    ]);
    let tracer = Tracer::start_cmd(cmd).unwrap();
    let spid = tracer.child.id();
    assert!(bpf_program_fds(spid) > 0, "the probes are attached");
    assert!(bpf_link_fds(spid) > 0, "the probes are attached by links");
    w.go().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(spid as i32, libc::SIGINT) };
    // Finishing starts by detaching the programs: wait until their links
    // are gone (the programs stay loaded until exit: the last progress
    // marks run after detaching).
    wait_for(Duration::from_secs(10), || {
        (bpf_link_fds(spid) == 0).then_some(())
    })
    .expect("schedtrace detaches after the first Ctrl-C");
    let second = std::time::Instant::now();
    // SAFETY: as above.
    unsafe { libc::kill(spid as i32, libc::SIGINT) };
    let (status, out, err) = tracer.wait_stderr().unwrap();
    let took = second.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "schedtrace took {took:?} after the second Ctrl-C"
    );
    // Interrupted: 128 + SIGINT, with a warning that the outputs end early.
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("stopped while finishing"), "{err}");
    assert!(!err.contains("error") && !err.contains("panicked"), "{err}");
    // The summary is still there and says it is incomplete.
    let s = summary_from(&out).unwrap();
    assert_eq!(s["complete"], false);
    assert_eq!(
        s["stop_reason"],
        "signal SIGINT, then interrupted while finishing"
    );
    // The trace file is whole JSON Lines, ending with an honest end record.
    let text = std::fs::read_to_string(&file).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    assert_eq!(records[0]["type"], "header");
    let end = records.last().unwrap();
    assert_eq!(end["type"], "end", "{end}");
    assert_eq!(end["complete"], false);
    assert_eq!(
        end["reason"],
        "signal SIGINT, then interrupted while finishing"
    );
    assert_eq!(records.iter().filter(|r| r["type"] == "end").count(), 1);
    // ... which `schedtrace report` reads, and tells the user about.
    let (status, report, err) = run_schedtrace(&["report", file.to_str().unwrap()]).unwrap();
    assert!(status.success(), "{err}");
    assert!(
        report.contains(
            "note: the trace is incomplete (signal SIGINT, then interrupted while finishing)"
        ),
        "{report}"
    );
}

#[test]
fn kernel_without_sched_tracepoints_is_explained() {
    require_root();
    let dir = tempdir();
    // The kernel's BTF with the `btf_trace_sched_switch` typedef renamed:
    // a kernel that has every other tracepoint we need, but not that one.
    let mut btf = std::fs::read("/sys/kernel/btf/vmlinux").expect("kernel BTF");
    let u32_at = |o: usize| u32::from_le_bytes(btf[o..o + 4].try_into().unwrap()) as usize;
    let (hdr_len, str_off, str_len) = (u32_at(4), u32_at(16), u32_at(20));
    let strings = hdr_len + str_off..hdr_len + str_off + str_len;
    let name = b"\0btf_trace_sched_switch\0";
    let at = btf[strings.clone()]
        .windows(name.len())
        .position(|w| w == name)
        .expect("btf_trace_sched_switch in the kernel's BTF strings")
        + strings.start;
    assert!(
        !btf[strings.clone()]
            .windows(name.len())
            .skip(at + 1 - strings.start)
            .any(|w| w == name),
        "the name is stored once"
    );
    btf[at + 1..at + name.len() - 1].copy_from_slice(b"btf_trace_sched_swXtch");
    let parsed = schedtrace::capture::btf::Btf::parse(&btf).expect("still valid BTF");
    assert!(!parsed.has_typedef("btf_trace_sched_switch"));
    assert!(parsed.has_typedef("btf_trace_sched_waking"));
    let path = dir.join("vmlinux");
    std::fs::write(&path, &btf).unwrap();

    let json = dir.join("t.jsonl");
    let out = schedtrace()
        .env("SCHEDTRACE_BTF", &path)
        .args(["--json", json.to_str().unwrap(), "--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        "schedtrace: error: this kernel lacks the tracepoints sched_switch (needs \
         CONFIG_TRACEPOINTS with the sched and timer events, and BTF for them)\n"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!json.exists(), "no partial trace file is left behind");
}

/// Ctrl-C during the demo's second run stops it like during the first: the
/// first run's finishing put its own handler in place of the runtime's, and
/// it must give it back. A demo that ignored the signal would run on and
/// write its report; so the outcome, not a time, shows the difference.
#[test]
fn ctrl_c_in_the_demos_second_run_stops_it() {
    require_root();
    let dir = tempdir();
    let html = dir.join("demo.html");
    let saved = dir.join("traces");
    let mut child = schedtrace()
        .args(["demo", "--seconds", "5", "--html"])
        .arg(&html)
        .arg("--save-traces")
        .arg(&saved)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The workload is launched after the tracing line and runs 5 s: the
    // signal, sent right after that line, is handled (a runtime wakeup, well
    // under a millisecond of work) long before the run could end by itself.
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut tracing_lines = 0;
    while tracing_lines < 2 {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut err, &mut line).unwrap() == 0 {
            panic!("the demo ended before its second run traced: {seen}");
        }
        if line.starts_with("schedtrace: tracing") {
            tracing_lines += 1;
        }
        seen.push_str(&line);
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{seen}{rest}");
    assert!(rest.contains("interrupted (SIGINT)"), "{rest}");
    assert!(!html.exists(), "no report after an interrupted demo");
    // The first run's trace was finished and is kept whole; the second's,
    // cut short, is removed.
    let first = std::fs::read_to_string(saved.join("one-core.jsonl")).unwrap();
    let end: serde_json::Value = serde_json::from_str(first.lines().last().unwrap()).unwrap();
    assert_eq!(
        (&end["type"], &end["complete"]),
        (&"end".into(), &true.into())
    );
    assert!(
        !saved.join("all-cores.jsonl").exists(),
        "the cut trace is left behind"
    );
}

/// When the demo cannot create its second trace file, the first (still
/// empty) is not left behind.
#[test]
fn demo_that_cannot_save_its_second_trace_leaves_no_first() {
    require_root();
    let dir = tempdir();
    std::fs::write(dir.join("all-cores.jsonl"), "mine").unwrap();
    let err = fails_with(
        &[
            "demo",
            "--html",
            dir.join("demo.html").to_str().unwrap(),
            "--save-traces",
            dir.to_str().unwrap(),
        ],
        "all-cores.jsonl",
    );
    assert!(!dir.join("one-core.jsonl").exists(), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("all-cores.jsonl")).unwrap(),
        "mine"
    );
}
