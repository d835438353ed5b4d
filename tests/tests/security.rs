//! schedtrace runs as root on behalf of a user (issue 15, docs/security.md):
//! played here as a hostile user would. Output paths through directories the
//! user controls, swapped for symlinks in a loop while schedtrace works;
//! outputs and inputs outside what the user may write or read; malformed
//! sudo environments; launched commands trying to gain privileges; a PID
//! reused by a stranger while schedtrace watches it.
//!
//! The race tests use `schedtrace report` to create, hand over and remove
//! output files: it goes through the same output-file code as live tracing
//! and takes milliseconds, so thousands of attempts fit in a few seconds.

use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use schedtrace_tests::hostile::*;
use schedtrace_tests::*;

/// How long each race test keeps trying. Unfixed, the chown race was hit
/// within a few tries and the removal race within a few hundred; each try
/// takes a few ms, so this is thousands of tries.
const RACE_BUDGET: Duration = Duration::from_secs(15);

/// A valid trace: a header, one thread, two switches, an end record.
fn small_trace() -> String {
    let header = r#"{"type":"header","schema":"schedtrace-trace","version":1,"clock":"CLOCK_MONOTONIC","wall_clock_offset_ns":0,"ncpus":2,"target":{"pid":100,"comm":"app"},"kernel_release":"k","hostname":"h","tool_version":"t","start_ns":1000}"#;
    let mut t = format!("{header}\n");
    t.push_str(
        r#"{"type":"thread","ts":1001,"tid":100,"tgid":100,"comm":"app","state":"R","cpu":0}"#,
    );
    t.push('\n');
    for (ts, state) in [(2000, "S"), (3000, "S")] {
        t.push_str(&switch_line(ts, 0, state));
        t.push('\n');
    }
    t.push_str(r#"{"type":"end","end_ns":4000,"events":2,"lost_events":0,"lost_per_cpu":[0,0],"complete":true,"reason":"duration"}"#);
    t.push('\n');
    t
}

fn switch_line(ts: u64, cpu: u32, state: &str) -> String {
    format!(
        r#"{{"type":"switch","ts":{ts},"cpu":{cpu},"prev":{{"tid":100,"tgid":100,"comm":"app","prio":120}},"next":{{"tid":0,"tgid":0,"comm":"swapper/0","prio":0}},"prev_state":"{state}","prev_state_raw":1,"preempt":false}}"#
    )
}

/// A trace of `lines` switch events (about 210 bytes each).
fn big_trace(lines: u64) -> String {
    let mut t = small_trace();
    let end = t.rfind("{\"type\":\"end\"").unwrap();
    t.truncate(end);
    for i in 0..lines {
        t.push_str(&switch_line(3001 + i, 0, "S"));
        t.push('\n');
    }
    t.push_str(r#"{"type":"end","end_ns":999999999,"events":2,"lost_events":0,"lost_per_cpu":[0,0],"complete":true,"reason":"duration"}"#);
    t.push('\n');
    t
}

fn write_readable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// A directory only root may enter, holding a root-only file named
/// `name`: what the hostile user points the swapped symlink at.
fn secret_dir(base: &Path, name: &str) -> PathBuf {
    let dir = base.join("secret");
    std::fs::create_dir(&dir).unwrap();
    let f = dir.join(name);
    std::fs::write(&f, "root's secret\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// A directory of the test user (mode 0755) under `base`.
fn user_dir(user: &TestUser, path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    user.chown(path);
    path.to_path_buf()
}

/// How the race tests invoke schedtrace.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Under sudo, creating a new file (create, then hand it to the user).
    SudoCreate,
    /// Under sudo, a trace that turns out broken after the output was
    /// created (the output is removed).
    SudoBrokenInput,
    /// Under sudo, `--force` over the user's own file.
    SudoForce,
    /// As root without sudo, `--force` over a file in the user's directory.
    RootForce,
}

const MODES: [Mode; 4] = [
    Mode::SudoCreate,
    Mode::SudoBrokenInput,
    Mode::SudoForce,
    Mode::RootForce,
];

#[test]
fn rename_exchange_race_never_touches_files_outside_the_users_rights() {
    require_root();
    let user = test_user();
    let base = tempdir();
    let secret = secret_dir(&base, "t.jsonl");
    let before = snapshot(&secret);
    let good = base.join("in.jsonl");
    write_readable(&good, &small_trace());
    let broken = base.join("broken.jsonl");
    write_readable(&broken, &format!("{}not json\n", small_trace()));
    // The user's directory holds `d` (a directory, where the output goes)
    // and `l` (a symlink to the secret directory); the user swaps them.
    let u = user_dir(&user, &base.join("u"));
    let d = user_dir(&user, &u.join("d"));
    let l = u.join("l");
    std::os::unix::fs::symlink(&secret, &l).unwrap();
    user.chown(&l);
    let real_d = open_dir(&d);
    let out = d.join("t.jsonl");
    let swapping = swapper(&user, &d, &l);

    let start = Instant::now();
    let mut tries = 0u64;
    let mut written = 0u64;
    let mut refused_symlink = 0u64;
    while start.elapsed() < RACE_BUDGET {
        let mode = MODES[(tries % MODES.len() as u64) as usize];
        tries += 1;
        unlink_in(&real_d, "t.jsonl");
        if matches!(mode, Mode::SudoForce | Mode::RootForce) {
            // The user's own file, to be overwritten with --force.
            let name = std::ffi::CString::new("t.jsonl").unwrap();
            // SAFETY: a valid directory descriptor and name.
            let fd = unsafe {
                libc::openat(
                    real_d.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                    0o644,
                )
            };
            assert!(fd >= 0);
            // SAFETY: our descriptor.
            unsafe {
                libc::fchown(fd, user.uid, user.gid);
                libc::close(fd);
            }
        }
        let mut cmd = schedtrace();
        if !matches!(mode, Mode::RootForce) {
            user.sudo_env(&mut cmd);
        }
        let input = if matches!(mode, Mode::SudoBrokenInput) {
            &broken
        } else {
            &good
        };
        cmd.arg("report")
            .arg(input)
            .arg("--json")
            .arg(&out)
            .arg("-q");
        if matches!(mode, Mode::SudoForce | Mode::RootForce) {
            cmd.arg("--force");
        }
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{err}");
        if o.status.success() {
            written += 1;
        } else if err.contains("symbolic link") {
            refused_symlink += 1;
        }
        let now = snapshot(&secret);
        assert_eq!(
            now, before,
            "try {tries} ({mode:?}): a file outside the user's rights changed: {err}"
        );
    }
    let swaps = swapping.finish();
    eprintln!(
        "{tries} tries in {:?}: {written} written, {refused_symlink} refused a symlink; \
         {swaps} swaps by the user",
        start.elapsed()
    );
    assert!(swaps > 1000, "the user swapped the entries");
    assert!(written > 0, "some tries wrote their file: the race was run");
    assert!(
        refused_symlink > 0,
        "some tries met the symlink mid-way: the race was hit"
    );
}

#[test]
fn removal_after_a_write_error_never_removes_another_file() {
    require_root();
    let user = test_user();
    let base = tempdir();
    let secret = secret_dir(&base, "t.jsonl");
    let before = snapshot(&secret);
    // 300 KB of trace into a 64 KiB file system: every write fails with
    // ENOSPC, and schedtrace removes what it created.
    let input = base.join("big.jsonl");
    write_readable(&input, &big_trace(1500));
    let m = base.join("m");
    let _fs = Tmpfs::mount(
        &m,
        &format!("size=64k,mode=0755,uid={},gid={}", user.uid, user.gid),
    );
    // RENAME_EXCHANGE works within one file system: both entries live in
    // the tmpfs, the symlink pointing out of it.
    let d = user_dir(&user, &m.join("d"));
    let l = m.join("l");
    std::os::unix::fs::symlink(&secret, &l).unwrap();
    user.chown(&l);
    let real_d = open_dir(&d);
    let out = d.join("t.jsonl");
    let swapping = swapper(&user, &d, &l);

    let start = Instant::now();
    let (mut tries, mut full) = (0u64, 0u64);
    while start.elapsed() < RACE_BUDGET {
        tries += 1;
        unlink_in(&real_d, "t.jsonl");
        let mut cmd = schedtrace();
        if tries % 2 == 0 {
            user.sudo_env(&mut cmd);
        }
        let o = cmd
            .arg("report")
            .arg(&input)
            .arg("--json")
            .arg(&out)
            .arg("-q")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{err}");
        if err.contains("No space left on device") {
            full += 1;
        }
        assert_eq!(
            snapshot(&secret),
            before,
            "try {tries}: a file outside the user's rights changed: {err}"
        );
    }
    let swaps = swapping.finish();
    eprintln!(
        "{tries} tries in {:?}: {full} filled the disk; {swaps} swaps by the user",
        start.elapsed()
    );
    assert!(swaps > 1000, "the user swapped the entries");
    assert!(full > 0, "some tries filled the disk: the removal ran");
}

#[test]
fn under_sudo_outputs_go_only_where_the_user_may_write() {
    require_root();
    let user = test_user();
    let base = tempdir();
    let input = base.join("in.jsonl");
    write_readable(&input, &small_trace());
    let run = |out: &Path, force: bool| {
        let mut cmd = schedtrace();
        user.sudo_env(&mut cmd)
            .arg("report")
            .arg(&input)
            .arg("--json")
            .arg(out)
            .arg("-q");
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };

    // A directory only root may write to (`base` is root's, mode 0755): the
    // user could not create a file there, so schedtrace does not either.
    let o = run(&base.join("t.jsonl"), false);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    says_each_fact_once(&err);
    assert!(
        !base.join("t.jsonl").exists(),
        "nothing created in root's directory"
    );

    // In the user's own directory the file is created, and is theirs.
    let mine = user_dir(&user, &base.join("mine"));
    let o = run(&mine.join("t.jsonl"), false);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta = std::fs::metadata(mine.join("t.jsonl")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (user.uid, user.gid));

    // A root-owned file in the user's directory is not theirs to write:
    // --force does not overwrite it, nor give it to them.
    let roots = mine.join("roots.jsonl");
    std::fs::write(&roots, "root's\n").unwrap();
    std::fs::set_permissions(&roots, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(&roots, true);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    let meta = std::fs::metadata(&roots).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "still root's");
    assert_eq!(std::fs::read_to_string(&roots).unwrap(), "root's\n");
}

#[test]
fn report_under_sudo_reads_only_what_the_user_may_read() {
    require_root();
    let user = test_user();
    let base = tempdir();
    let secret = base.join("roots-trace.jsonl");
    std::fs::write(&secret, small_trace()).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mine = user_dir(&user, &base.join("mine"));
    let copy = mine.join("copy.jsonl");
    let mut cmd = schedtrace();
    let o = user
        .sudo_env(&mut cmd)
        .arg("report")
        .arg(&secret)
        .arg("--json")
        .arg(&copy)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    says_each_fact_once(&err);
    assert!(o.stdout.is_empty(), "nothing of root's trace is shown");
    assert!(!copy.exists(), "no copy of root's trace for the user");
}

#[test]
fn malformed_sudo_environments_are_refused() {
    require_root();
    let user = test_user();
    let base = tempdir();
    let (u, g) = (user.uid.to_string(), user.gid.to_string());
    let name = user.name.as_str();
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("SUDO_UID", &u)],
        vec![("SUDO_UID", &u), ("SUDO_GID", &g)],
        vec![("SUDO_GID", &g), ("SUDO_USER", name)],
        vec![("SUDO_USER", name)],
        vec![("SUDO_UID", "abc"), ("SUDO_GID", &g), ("SUDO_USER", name)],
        vec![("SUDO_UID", ""), ("SUDO_GID", &g), ("SUDO_USER", name)],
        vec![("SUDO_UID", "-1"), ("SUDO_GID", &g), ("SUDO_USER", name)],
        vec![
            ("SUDO_UID", "4294967295"),
            ("SUDO_GID", &g),
            ("SUDO_USER", name),
        ],
        vec![("SUDO_UID", &u), ("SUDO_GID", "abc"), ("SUDO_USER", name)],
        // The name is another user's, or nobody's.
        vec![("SUDO_UID", &u), ("SUDO_GID", &g), ("SUDO_USER", "root")],
        vec![
            ("SUDO_UID", &u),
            ("SUDO_GID", &g),
            ("SUDO_USER", "no-such-user-schedtrace"),
        ],
        // A group the user is not in.
        vec![("SUDO_UID", &u), ("SUDO_GID", "0"), ("SUDO_USER", name)],
    ];
    for (i, env) in cases.iter().enumerate() {
        let marker = base.join(format!("ran-{i}"));
        let out = base.join(format!("t-{i}.jsonl"));
        let mut cmd = schedtrace();
        cmd.env_remove("SUDO_UID")
            .env_remove("SUDO_GID")
            .env_remove("SUDO_USER");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let o = cmd
            .args(["-q", "--json"])
            .arg(&out)
            .args(["--", "touch"])
            .arg(&marker)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{env:?}: {err}");
        assert!(err.contains("sudo environment"), "{env:?}: {err}");
        says_each_fact_once(&err);
        assert!(!marker.exists(), "{env:?}: the command ran");
        assert!(!out.exists(), "{env:?}: an output was left");
    }
    // Consistent, for root itself (`sudo` run by root): runs as root.
    let o = schedtrace()
        .env("SUDO_UID", "0")
        .env("SUDO_GID", "0")
        .env("SUDO_USER", "root")
        .args(["--records", "-q", "--format", "json", "--", "id", "-u"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("0\n{"));
}

#[test]
fn launched_commands_cannot_gain_privileges_unless_asked() {
    require_root();
    let user = test_user();
    let show = ["--", "sh", "-c", "id -u; grep NoNewPrivs /proc/self/status"];
    let run = |sudo: bool, extra: &[&str]| {
        let mut cmd = schedtrace();
        if sudo {
            user.sudo_env(&mut cmd);
        }
        let o = cmd
            .args(["--records", "-q", "--format", "json"])
            .args(extra)
            .args(show)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // What the command printed, before the JSON summary.
        let out = String::from_utf8(o.stdout).unwrap();
        out[..out.find('{').unwrap_or(out.len())].to_string()
    };
    assert_eq!(
        run(true, &[]),
        format!("{}\nNoNewPrivs:\t1\n", user.uid),
        "under sudo: the user, without new privileges"
    );
    assert_eq!(run(false, &[]), "0\nNoNewPrivs:\t1\n", "as root, the same");
    assert_eq!(
        run(true, &["--as-root"]),
        "0\nNoNewPrivs:\t1\n",
        "--as-root: root, still no new privileges"
    );
    assert_eq!(
        run(true, &["--allow-new-privs"]),
        format!("{}\nNoNewPrivs:\t0\n", user.uid),
        "--allow-new-privs lets setuid programs work"
    );
}

/// Records of a trace that describe a task of the traced processes named
/// `comm` whose TGID is `tgid`.
fn records_of(records: &[serde_json::Value], tgid: u32, comm: &str) -> Vec<serde_json::Value> {
    // Which side of a switch is traced is told by its counters: a trace
    // without them would let every switch pass.
    assert!(
        records
            .iter()
            .any(|r| r.get("prev_counters").is_some() || r.get("next_counters").is_some()),
        "the trace has no kernel counters in its switch records"
    );
    records
        .iter()
        .filter(|r| {
            traced_tasks(r)
                .iter()
                .any(|t| t["tgid"] == tgid && t["comm"] == comm)
        })
        .cloned()
        .collect()
}

#[test]
fn a_reused_pid_is_never_traced() {
    reused_pid(false);
}

/// The stranger with the target's number is released as it exits (its
/// parent ignores SIGCHLD) while schedtrace is still tracing, before it
/// stops for the target's exit: its last switch-out, which comes when its
/// process has no identity left to check, was traced.
#[test]
fn a_reused_pid_released_as_it_exits_is_never_traced() {
    reused_pid(true);
}

/// The target ends and is reaped, and a stranger gets its PID before
/// schedtrace has stopped: nothing of the stranger is traced.
fn reused_pid(autoreaped: bool) {
    require_root();
    let napper = cc("napper", NAPPER_C);
    let stranger = cc("stranger", STRANGER_C);
    let dir = tempdir();
    let file = dir.join("t.jsonl");
    let mut target = Command::new(&napper).spawn().unwrap();
    let pid = target.id();
    let tracer = Tracer::start(&[
        "--pid",
        &pid.to_string(),
        "--format",
        "json",
        "--json",
        file.to_str().unwrap(),
    ])
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // The target ends and is reaped; at once a stranger gets its PID.
    target.kill().unwrap();
    target.wait().unwrap();
    let within = Duration::from_secs(2);
    let mut s = if autoreaped {
        let autoreap = cc("autoreap", AUTOREAP_C);
        spawn_autoreaped_with_pid(pid, &autoreap, &stranger, &["0.01"], within)
    } else {
        spawn_with_pid(pid, &stranger, &["0.5"], within)
    }
    .expect("forcing PID reuse");
    let (status, out) = tracer.wait().unwrap();
    s.wait().unwrap();
    assert!(status.success());
    let summary = summary_from(&out).unwrap();
    assert_eq!(summary["stop_reason"], "target-exited");
    for t in summary["threads"].as_array().unwrap() {
        assert_ne!(t["comm"], "stranger", "the stranger is in the summary: {t}");
    }
    let records = jsonl_records(&file);
    let theirs = records_of(&records, pid, "stranger");
    assert!(
        theirs.is_empty(),
        "{} records of the stranger that took PID {pid}, e.g. {}",
        theirs.len(),
        theirs[0]
    );
    assert!(
        !records.iter().any(|r| r["type"] == "exec"),
        "no exec: the target never exec'd"
    );
}

#[test]
fn a_reused_child_pid_is_never_traced_with_follow_children() {
    reused_child_pid(false);
}

/// The stranger that took the followed child's PID is released as it exits
/// (its parent ignores SIGCHLD), so its last switch-out comes when its
/// process has no identity left to check, and before userspace has swept
/// the child's entry away (once a second): that switch-out was traced.
#[test]
fn a_reused_child_pid_released_as_it_exits_is_never_traced() {
    reused_child_pid(true);
}

/// The launched command forks a child (followed) that ends and is reaped;
/// a stranger then takes its PID. Nothing of the stranger is traced.
fn reused_child_pid(autoreaped: bool) {
    require_root();
    let forker = cc("forker", FORKER_C);
    let stranger = cc("stranger", STRANGER_C);
    let dir = tempdir();
    let file = dir.join("t.jsonl");
    let mut child = schedtrace()
        .args(["--follow-children", "--format", "json", "--json"])
        .arg(&file)
        .arg("--")
        .arg(&forker)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let reaped: u32 = line
        .trim()
        .parse()
        .expect("the forker prints its child's PID");
    // The followed child exited and was reaped by the launched command; a
    // process that is no descendant of it now gets the same PID.
    let within = Duration::from_secs(2);
    let mut s = if autoreaped {
        let autoreap = cc("autoreap", AUTOREAP_C);
        spawn_autoreaped_with_pid(reaped, &autoreap, &stranger, &["0.05"], within)
    } else {
        spawn_with_pid(reaped, &stranger, &["0.3"], within)
    }
    .expect("forcing PID reuse");
    s.wait().unwrap();
    // Let the launched command finish, which ends the trace.
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = summary_from(&rest).unwrap();
    for t in summary["threads"].as_array().unwrap() {
        assert_ne!(t["comm"], "stranger", "the stranger is in the summary: {t}");
    }
    let records = jsonl_records(&file);
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "fork" && r["child"]["tgid"] == reaped),
        "the real child was followed"
    );
    let theirs = records_of(&records, reaped, "stranger");
    assert!(
        theirs.is_empty(),
        "{} records of the stranger that took PID {reaped}, e.g. {}",
        theirs.len(),
        theirs[0]
    );
}
