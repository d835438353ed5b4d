//! Helpers for the tests that play a hostile user or a hostile workload
//! against schedtrace (issue 15): an unprivileged user account, a process
//! of that user that swaps directory entries in a loop, forcing the kernel
//! to hand out a chosen PID, small C workloads compiled on demand, tmpfs
//! mounts, and snapshots of files that must not change.
//!
//! Nothing here uses schedtrace's library: these tests drive the binary, so
//! they hold whatever the crate's module layout becomes.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// CLOCK_MONOTONIC in ns: the clock of every trace timestamp.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in test paths")
}

/// The unprivileged account the hostile-user tests act as.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    /// Put the `SUDO_*` variables real `sudo` sets for this user on `cmd`.
    pub fn sudo_env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("SUDO_UID", self.uid.to_string())
            .env("SUDO_GID", self.gid.to_string())
            .env("SUDO_USER", &self.name)
    }

    /// Make `path` belong to this user.
    pub fn chown(&self, path: &Path) {
        let c = cstr(path);
        // SAFETY: a valid path; lchown does not follow a final symlink.
        let r = unsafe { libc::lchown(c.as_ptr(), self.uid, self.gid) };
        assert_eq!(r, 0, "lchown {}", path.display());
    }
}

/// The account `schedtrace-it` (a system user without a home or shell),
/// created on first use: a user name that resolves, with its own group, as
/// a real `sudo` invocation has.
pub fn test_user() -> TestUser {
    const NAME: &str = "schedtrace-it";
    let lookup = || -> Option<TestUser> {
        let name = CString::new(NAME).ok()?;
        // SAFETY: getpwnam returns NULL or a pointer to static storage that
        // we copy out at once (tests run one at a time).
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if pw.is_null() {
            return None;
        }
        // SAFETY: non-null passwd entry.
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        Some(TestUser {
            name: NAME.into(),
            uid,
            gid,
        })
    };
    if let Some(u) = lookup() {
        return u;
    }
    let st = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--user-group",
            "--shell",
            "/usr/sbin/nologin",
            NAME,
        ])
        .status()
        .expect("running useradd");
    assert!(st.success(), "useradd {NAME} failed: {st}");
    lookup().expect("the user exists after useradd")
}

/// Fork a child that becomes `user` (all of uid, gid and groups) and runs
/// `body` until `until`, or until the test drops the returned handle. The
/// child only makes raw system calls (it is forked from a multi-threaded
/// test process). `body` gets the deadline and returns a count it reports.
pub struct AsUser {
    pid: libc::pid_t,
    stop_w: Option<OwnedFd>,
    report_r: OwnedFd,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: room for two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl AsUser {
    /// `body(stop_fd)` runs in the child; it should poll `stop_fd` (readable
    /// or closed means stop) now and then and return how many attempts it made.
    pub fn spawn(user: &TestUser, body: impl FnOnce(i32) -> u64) -> AsUser {
        let (stop_r, stop_w) = pipe();
        let (report_r, report_w) = pipe();
        // SAFETY: the child only makes system calls until _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // SAFETY: in the forked child of a multi-threaded process: raw
            // system calls on descriptors and IDs we own, then _exit.
            unsafe {
                // Our copies of the parent's ends: the stop pipe must see
                // the parent close its end.
                libc::close(stop_w.as_raw_fd());
                libc::close(report_r.as_raw_fd());
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                let groups = [user.gid];
                if libc::setgroups(1, groups.as_ptr()) != 0
                    || libc::setresgid(user.gid, user.gid, user.gid) != 0
                    || libc::setresuid(user.uid, user.uid, user.uid) != 0
                {
                    libc::_exit(3);
                }
                let n = body(stop_r.as_raw_fd());
                let b = n.to_le_bytes();
                libc::write(report_w.as_raw_fd(), b.as_ptr().cast(), 8);
                libc::_exit(0);
            }
        }
        drop(stop_r);
        drop(report_w);
        AsUser {
            pid,
            stop_w: Some(stop_w),
            report_r,
        }
    }

    /// Stop the child; returns the count it reported.
    pub fn finish(mut self) -> u64 {
        drop(self.stop_w.take());
        let mut b = [0u8; 8];
        let mut f = std::fs::File::from(self.report_r.try_clone().expect("dup"));
        let n = f.read(&mut b).unwrap_or(0);
        let mut status = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
        self.pid = 0;
        assert_eq!(
            n, 8,
            "the hostile process reported nothing (status {status})"
        );
        u64::from_le_bytes(b)
    }
}

impl Drop for AsUser {
    fn drop(&mut self) {
        if self.pid > 0 {
            // SAFETY: our own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Has the parent asked the child to stop? (Readable or closed.)
pub fn stop_requested(fd: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, no wait.
    unsafe { libc::poll(&mut p, 1, 0) != 0 }
}

/// A process of `user` that swaps the directory entries `a` and `b` with
/// `renameat2(RENAME_EXCHANGE)` as fast as it can, until stopped.
pub fn swapper(user: &TestUser, a: &Path, b: &Path) -> AsUser {
    let (a, b) = (cstr(a), cstr(b));
    AsUser::spawn(user, move |stop| {
        let mut n = 0u64;
        loop {
            for _ in 0..256 {
                // SAFETY: valid paths; a raw system call.
                unsafe {
                    libc::syscall(
                        libc::SYS_renameat2,
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                n += 1;
            }
            if stop_requested(stop) {
                return n;
            }
        }
    })
}

/// What a file looks like: enough to tell that nobody changed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileState {
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub nlink: u64,
    pub content: String,
}

/// Every entry of `dir` (not following symlinks) and its state.
pub fn snapshot(dir: &Path) -> BTreeMap<String, FileState> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("dir entry");
        let m = std::fs::symlink_metadata(e.path()).expect("lstat");
        let content = if m.is_file() {
            String::from_utf8_lossy(&std::fs::read(e.path()).expect("read")).into_owned()
        } else {
            String::new()
        };
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            FileState {
                ino: m.ino(),
                uid: m.uid(),
                gid: m.gid(),
                mode: m.mode(),
                nlink: m.nlink(),
                content,
            },
        );
    }
    out
}

/// A tmpfs mounted for one test, unmounted (lazily) when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .status()
            .expect("running mount");
        assert!(st.success(), "mount tmpfs at {}", at.display());
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Compile the C program `source` (with `-O2 -pthread`) and return the
/// path of the executable, named `name` (its `comm`). Executables are kept
/// in `/tmp/schedtrace-it-cc/<name>-<hash of the source and flags>/`, one
/// per program, version and flags, and reused by later runs: nothing piles
/// up.
pub fn cc(name: &str, source: &str) -> PathBuf {
    cc_with(name, source, &["-O2"])
}

/// [`cc`] with these compiler flags instead of `-O2` (`-Wall -pthread` are
/// always given).
pub fn cc_with(name: &str, source: &str, flags: &[&str]) -> PathBuf {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (name, source, flags).hash(&mut h);
    let top = std::env::temp_dir().join("schedtrace-it-cc");
    let dir = top.join(format!("{name}-{:016x}", h.finish()));
    let exe = dir.join(name);
    if exe.exists() {
        return exe;
    }
    std::fs::create_dir_all(&dir).expect("cc dir");
    // Built under a name of this process's, then renamed into place, so a
    // concurrent run never executes a half-written file.
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let src = dir.join(format!("{name}.{}.c", std::process::id()));
    std::fs::write(&src, source).expect("write C source");
    let out = Command::new("gcc")
        .args(flags)
        .args(["-Wall", "-pthread", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .expect("running gcc");
    let _ = std::fs::remove_file(&src);
    assert!(
        out.status.success(),
        "gcc {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Executable by the unprivileged test user too.
    for p in [&top, &dir, &tmp] {
        let mut perm = std::fs::metadata(p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(p, perm).unwrap();
    }
    std::fs::rename(&tmp, &exe).expect("cc rename");
    exe
}

/// `maxrss OUT CMD [ARG...]`: forks, runs CMD in the child, waits for it,
/// writes the child's peak RSS in KiB to the new file OUT and exits as the
/// child did. The child's address space before its `exec` is a copy of this
/// small program's, so the figure is CMD's own (see `run_with_maxrss`).
pub const MAXRSS_C: &str = r#"
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: maxrss OUT CMD [ARG...]\n");
        return 125;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("maxrss: fork");
        return 125;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid) {
        perror("maxrss: wait4");
        return 125;
    }
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || dprintf(fd, "%ld\n", ru.ru_maxrss) < 0 || close(fd) != 0) {
        perror(argv[1]);
        return 125;
    }
    if (WIFSIGNALED(status)) {
        signal(WTERMSIG(status), SIG_DFL);
        raise(WTERMSIG(status));
    }
    return WEXITSTATUS(status);
}
"#;

/// Spins on the CPU for `argv[1]` seconds (default 0.5): the process that
/// takes over a reused PID in the PID-reuse tests.
pub const STRANGER_C: &str = r#"
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 0.5, end = now() + secs;
    volatile unsigned long x = 0;
    while (now() < end) for (int i = 0; i < 10000; i++) x++;
    return 0;
}
"#;

/// Sleeps in 1 ms steps for `argv[1]` seconds (default: forever).
pub const NAPPER_C: &str = r#"
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    double end = argc > 1 ? now() + atof(argv[1]) : 1e18;
    struct timespec ms = {0, 1000000};
    while (now() < end) nanosleep(&ms, 0);
    return 0;
}
"#;

/// Keep the PID of the process it is in view for a few seconds: the
/// launched command of the follow-children PID-reuse test. Forks a child
/// that spins for 20 ms and exits, reaps it, prints its PID, then waits for
/// a line on stdin before exiting.
pub const FORKER_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(void) {
    pid_t c = fork();
    if (c == 0) {
        double end = now() + 0.02;
        volatile unsigned long x = 0;
        while (now() < end) x++;
        _exit(0);
    }
    waitpid(c, 0, 0);
    printf("%d\n", (int)c);
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 1;
    return 0;
}
"#;

/// `churn N [BATCH]`: creates N short-lived threads, BATCH at a time (each
/// spins briefly and exits; all are joined), so that thousands of threads
/// begin and end while only BATCH live at once.
pub const CHURN_C: &str = r#"
#include <pthread.h>
#include <stdlib.h>
static void *work(void *a) { volatile unsigned long x = 0; for (int i = 0; i < 2000; i++) x++; return a; }
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000, batch = argc > 2 ? atol(argv[2]) : 16;
    pthread_t t[256];
    if (batch > 256) batch = 256;
    for (long done = 0; done < n; ) {
        long k = n - done < batch ? n - done : batch;
        for (long i = 0; i < k; i++) if (pthread_create(&t[i], 0, work, 0)) return 1;
        for (long i = 0; i < k; i++) pthread_join(t[i], 0);
        done += k;
    }
    return 0;
}
"#;

/// `leader_exit THREADS SECONDS`: the main thread starts THREADS threads
/// that spin for SECONDS, then calls `pthread_exit`: the process lives on
/// with a zombie leader until its threads end.
pub const LEADER_EXIT_C: &str = r#"
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
static double secs;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void *spin(void *a) { double end = now() + secs; volatile unsigned long x = 0; while (now() < end) for (int i = 0; i < 10000; i++) x++; return a; }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 2;
    secs = argc > 2 ? atof(argv[2]) : 2.0;
    pthread_t t;
    for (int i = 0; i < n; i++) pthread_create(&t, 0, spin, 0);
    pthread_exit(0);
}
"#;

/// `ending_threads N`: forks N children one after another, each with six
/// threads (three that end by themselves, three that spin until the
/// process ends), and ends them three ways in turn: `exit` from the main
/// thread, `pthread_exit` of the main thread then `SIGKILL`, and `SIGKILL`
/// (each only once all six threads exist). The threads of an ending child
/// begin to exit together, on every CPU.
pub const ENDING_THREADS_C: &str = r#"
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
static void *brief(void *a) { volatile long x = 0; for (long i = 0; i < 200000 + (long)a * 50000; i++) x += i; return 0; }
static void *endless(void *a) { volatile long x = 0; for (;;) x++; return a; }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    for (int k = 0; k < n; k++) {
        int fd[2];
        if (pipe(fd)) return 1;
        pid_t p = fork();
        if (p < 0) return 1;
        if (p == 0) {
            pthread_t t[6];
            for (long i = 0; i < 3; i++) pthread_create(&t[i], 0, brief, (void *)i);
            for (long i = 3; i < 6; i++) pthread_create(&t[i], 0, endless, 0);
            if (write(fd[1], "x", 1) != 1) _exit(1);
            for (long i = 0; i < 3; i++) pthread_join(t[i], 0);
            if (k % 3 == 1) pthread_exit(0);
            exit(0);
        }
        char c;
        if (read(fd[0], &c, 1) != 1) return 1;
        close(fd[0]);
        close(fd[1]);
        if (k % 3) { usleep(1000); kill(p, SIGKILL); }
        waitpid(p, 0, 0);
    }
    return 0;
}
"#;

/// `waiting_children N`: forks N children that all live at once, each
/// blocked reading a pipe, then closes the pipe so that they all end, and
/// reaps them. Exit status 1 if a fork failed.
pub const WAITING_CHILDREN_C: &str = r#"
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10;
    int fd[2];
    if (pipe(fd)) return 1;
    int made = 0;
    for (; made < n; made++) {
        pid_t p = fork();
        if (p < 0) break;
        if (p == 0) {
            char c;
            close(fd[1]);
            (void)!read(fd[0], &c, 1);
            _exit(0);
        }
    }
    close(fd[1]);
    while (wait(0) > 0) {}
    return made == n ? 0 : 1;
}
"#;

/// `spinners N SECONDS`: N threads spinning for SECONDS (foreign load).
pub const SPINNERS_C: &str = r#"
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
static double secs;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void *spin(void *a) { double end = now() + secs; volatile unsigned long x = 0; while (now() < end) for (int i = 0; i < 1000; i++) x++; return a; }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4;
    secs = argc > 2 ? atof(argv[2]) : 5.0;
    pthread_t t[1024];
    if (n > 1024) n = 1024;
    for (int i = 0; i < n; i++) pthread_create(&t[i], 0, spin, 0);
    for (int i = 0; i < n; i++) pthread_join(t[i], 0);
    return 0;
}
"#;

/// `switcher THREADS SECONDS`: THREADS threads that each spin about 50 µs
/// and sleep about 50 µs, over and over, for SECONDS: tens of thousands of
/// switches per second, to overflow a small ring buffer.
pub const SWITCHER_C: &str = r#"
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
static double secs;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void *work(void *a) {
    double end = now() + secs;
    struct timespec nap = {0, 50000};
    volatile unsigned long x = 0;
    while (now() < end) {
        double s = now() + 50e-6;
        while (now() < s) x++;
        nanosleep(&nap, 0);
    }
    return a;
}
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 8;
    secs = argc > 2 ? atof(argv[2]) : 5.0;
    pthread_t t[256];
    if (n > 256) n = 256;
    for (int i = 0; i < n; i++) pthread_create(&t[i], 0, work, 0);
    for (int i = 0; i < n; i++) pthread_join(t[i], 0);
    return 0;
}
"#;

/// Start `program args` with the next PID the kernel hands out set to
/// `pid` (through `/proc/sys/kernel/ns_last_pid`). Other processes may fork
/// in between, so this retries for up to `within`; returns the child once
/// it has exactly that PID.
pub fn spawn_with_pid(
    pid: u32,
    program: &Path,
    args: &[&str],
    within: Duration,
) -> anyhow::Result<Child> {
    let start = Instant::now();
    let mut tries = 0;
    while start.elapsed() < within {
        tries += 1;
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .context("writing /proc/sys/kernel/ns_last_pid")?;
        let mut child = Command::new(program).args(args).spawn()?;
        if child.id() == pid {
            return Ok(child);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    bail!("could not start a process with PID {pid} in {tries} tries");
}

/// `autoreap PROGRAM ARGS...`: start PROGRAM as a child with SIGCHLD
/// ignored, so that nobody waits for it: the kernel releases it as it
/// exits, before its last switch-out. Prints the child's PID, then waits
/// until the child is gone.
pub const AUTOREAP_C: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    signal(SIGCHLD, SIG_IGN);
    pid_t p = fork();
    if (p < 0) return 1;
    if (p == 0) { execv(argv[1], argv + 1); _exit(127); }
    printf("%d\n", p);
    fflush(stdout);
    while (kill(p, 0) == 0) usleep(1000);
    return 0;
}
"#;

/// As [`spawn_with_pid`], `program args` released by the kernel as it
/// exits (started by `autoreap`, the compiled [`AUTOREAP_C`], which forks
/// it right after taking the PID before `pid`). Returns the `autoreap`
/// process, which ends once the program has.
pub fn spawn_autoreaped_with_pid(
    pid: u32,
    autoreap: &Path,
    program: &Path,
    args: &[&str],
    within: Duration,
) -> anyhow::Result<Child> {
    let start = Instant::now();
    let mut tries = 0;
    let mut last = (0, 0);
    // PIDs taken between the write and autoreap's (by whatever else runs).
    let mut skew = 0;
    while start.elapsed() < within {
        tries += 1;
        let before = pid - 2 - skew;
        std::fs::write("/proc/sys/kernel/ns_last_pid", before.to_string())
            .context("writing /proc/sys/kernel/ns_last_pid")?;
        let mut launcher = Command::new(autoreap)
            .arg(program)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(launcher.stdout.take().expect("piped")),
            &mut line,
        )?;
        let got: u32 = line.trim().parse().context("autoreap prints a PID")?;
        if got == pid {
            return Ok(launcher);
        }
        last = (launcher.id(), got);
        skew = launcher.id().saturating_sub(before + 1).min(8);
        // SAFETY: a signal to the child autoreap just started.
        unsafe { libc::kill(got as i32, libc::SIGKILL) };
        let _ = launcher.wait();
    }
    bail!(
        "could not start a process with PID {pid} in {tries} tries (last: autoreap {}, its child {})",
        last.0,
        last.1
    );
}

/// Every record of a JSON Lines trace, parsed.
pub fn jsonl_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("read trace")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The traced tasks a trace record is about, as docs/trace-format.md tells
/// them. A switch also names its other side, the task a traced one
/// replaced or was replaced by (or, for who ran instead, two untraced
/// tasks on a CPU a traced thread waits for), which is traced only if the
/// record carries its counters (`prev_counters`, `next_counters`): its
/// TGID and name alone say nothing. A wakeup is about its `wakee` (its
/// `waker` is whoever raised it); a fork about `parent` and `child`; the
/// other records about their `task`.
pub fn traced_tasks(r: &serde_json::Value) -> Vec<&serde_json::Value> {
    let sides: &[&str] = match r["type"].as_str() {
        Some("switch") => {
            return [("prev", "prev_counters"), ("next", "next_counters")]
                .iter()
                .filter(|(_, counters)| r.get(*counters).is_some())
                .filter_map(|(side, _)| r.get(*side))
                .collect();
        }
        Some("wakeup") => &["wakee"],
        Some("fork") => &["parent", "child"],
        _ => &["task"],
    };
    sides.iter().filter_map(|k| r.get(*k)).collect()
}

/// A small deterministic random number generator (xorshift64*), seeded
/// from the clock by default; tests print the seed so a failure can be
/// replayed with `SCHEDTRACE_TEST_SEED`.
pub struct Rng(u64);

impl Rng {
    pub fn from_env_or_clock() -> Rng {
        let seed = std::env::var("SCHEDTRACE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| monotonic_ns() | 1);
        eprintln!("random seed: {seed} (replay with SCHEDTRACE_TEST_SEED={seed})");
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Split an error message into its `: `-separated clauses.
pub fn clauses(msg: &str) -> Vec<&str> {
    msg.split(": ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// Assert that `stderr` is one line that states each fact once: no clause
/// (a `: `-separated part) repeated, and no parser position that contradicts
/// the line number (`at line 1 column` in an error about another line).
pub fn says_each_fact_once(stderr: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr:?}");
    let c = clauses(lines[0]);
    for (i, a) in c.iter().enumerate() {
        for b in &c[i + 1..] {
            assert!(
                a != b && !(a.len() > 12 && b.contains(a)) && !(b.len() > 12 && a.contains(b)),
                "{a:?} is said twice in {stderr:?}"
            );
        }
    }
    assert!(
        !stderr.contains(" at line "),
        "a parser's own position inside the line: {stderr:?}"
    );
}

/// Open `dir` as a directory without following symlinks (for cleanup that
/// must not be redirected by the swapping process).
pub fn open_dir(dir: &Path) -> OwnedFd {
    let c = cstr(dir);
    // SAFETY: a valid path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    assert!(fd >= 0, "open {}", dir.display());
    // SAFETY: a fresh descriptor.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Remove `name` from the directory `dir` if it is there.
pub fn unlink_in(dir: &OwnedFd, name: &str) {
    let c = CString::new(name).unwrap();
    // SAFETY: a valid directory descriptor and name.
    unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
}

#[cfg(test)]
mod tests {
    use super::traced_tasks;

    fn comms(r: &str) -> Vec<String> {
        let r: serde_json::Value = serde_json::from_str(r).unwrap();
        traced_tasks(&r)
            .iter()
            .map(|t| t["comm"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_untraced_side_of_a_switch_is_not_a_traced_task() {
        // From a soak run: a stranger that took a followed child's PID,
        // preempted on the CPU where the (traced) forker was switched in.
        let r = r#"{"type":"switch","cpu":0,"next":{"comm":"forker","prio":120,"tgid":15075,"tid":15075},"next_counters":{"pcount":5,"runtime_ns":1703553},"prev":{"comm":"stranger","prio":0,"tgid":15076,"tid":15076},"prev_state":"R","ts":1}"#;
        assert_eq!(comms(r), ["forker"]);
        let r = r#"{"type":"switch","cpu":0,"prev":{"comm":"stranger","prio":120,"tgid":15076,"tid":15076},"prev_counters":{"runtime_ns":1,"pcount":1,"nvcsw":1,"nivcsw":0},"next":{"comm":"swapper/0","prio":0,"tgid":0,"tid":0},"prev_state":"S","ts":1}"#;
        assert_eq!(comms(r), ["stranger"]);
    }

    #[test]
    fn a_wakeup_is_about_its_wakee_not_its_waker() {
        let r = r#"{"type":"wakeup","ts":1,"cpu":1,"waker":{"tid":9,"tgid":9,"comm":"stranger","prio":0},"wakee":{"tid":7,"tgid":7,"comm":"forker","prio":120},"wakee_cpu":0}"#;
        assert_eq!(comms(r), ["forker"]);
    }
}
