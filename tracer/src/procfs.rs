//! What `/proc` and the clocks say about processes and threads: their
//! lists, names and states, and the kernel's own per-thread
//! accounting (`schedstat`, context-switch counters) that tests compare
//! against.

use std::fs;
use std::io;

/// `PF_KTHREAD` in `/proc/<pid>/stat`'s flags.
const PF_KTHREAD: u64 = 0x0020_0000;

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; these clocks always exist.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns` and of every trace timestamp.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Wall clock minus trace clock.
pub fn wall_clock_offset_ns() -> i64 {
    let mono = monotonic_ns();
    let real = clock_ns(libc::CLOCK_REALTIME);
    real as i64 - mono as i64
}

/// Number of possible CPUs (the size of per-CPU maps).
pub fn possible_cpus() -> u32 {
    fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| parse_cpu_list(s.trim()).ok())
        .and_then(|v| v.into_iter().max())
        .map(|m| m + 1)
        .unwrap_or_else(|| {
            // SAFETY: sysconf has no preconditions.
            let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
            n.max(1) as u32
        })
}

/// Parse a CPU list such as `0-3,6` into sorted, de-duplicated CPU numbers.
pub fn parse_cpu_list(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    if s.trim().is_empty() {
        return Err("empty CPU list".into());
    }
    for part in s.split(',') {
        let part = part.trim();
        let bad = || format!("bad CPU list element {part:?} (expected N or N-M)");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u32 = a.trim().parse().map_err(|_| bad())?;
                let b: u32 = b.trim().parse().map_err(|_| bad())?;
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// `uname -r`.
pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// This boot's random ID (`/proc/sys/kernel/random/boot_id`), which tells
/// two boots of one host apart.
pub fn boot_id() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The fields of `/proc/<pid>/stat` that we use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub flags: u64,
    pub processor: u32,
}

impl Stat {
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }
}

pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    Some(Stat {
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        flags: rest.get(6)?.parse().ok()?,
        processor: rest.get(36)?.parse().ok()?,
    })
}

pub fn stat(pid: u32) -> io::Result<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad stat"))
}

pub(crate) fn task_stat(pid: u32, tid: u32) -> io::Result<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))?;
    parse_stat(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad stat"))
}

/// The system call task `tid` of `pid` is in (`/proc/<pid>/task/<tid>/syscall`):
/// `None` when it is in none (`-1`: a page fault, or a kernel thread's own
/// wait), running (the kernel reads it only from a task off its CPU), or the
/// file cannot be read (PID 1's threads on this kernel).
pub(crate) fn task_syscall(pid: u32, tid: u32) -> Option<u32> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    parse_syscall(&text)
}

pub(crate) fn parse_syscall(text: &str) -> Option<u32> {
    text.split_whitespace().next()?.parse().ok()
}

/// The numbered entries of directory `dir`, sorted.
fn numbered(dir: &str) -> io::Result<Vec<u32>> {
    let mut v: Vec<u32> = fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// PIDs of the processes there are now (the numbered entries of `/proc`), sorted.
pub fn pids() -> io::Result<Vec<u32>> {
    numbered("/proc")
}

/// TIDs of a process's threads, sorted.
pub fn tids(pid: u32) -> io::Result<Vec<u32>> {
    numbered(&format!("/proc/{pid}/task"))
}

/// `/proc/<pid>/task/<tid>/schedstat`: on-CPU ns, run-queue wait ns, timeslices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedStat {
    pub on_cpu_ns: u64,
    pub wait_ns: u64,
    pub timeslices: u64,
}

pub fn schedstat(pid: u32, tid: u32) -> io::Result<SchedStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))?;
    let v: Vec<u64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match v[..] {
        [a, b, c, ..] => Ok(SchedStat {
            on_cpu_ns: a,
            wait_ns: b,
            timeslices: c,
        }),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "bad schedstat")),
    }
}

/// `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` of a thread.
pub fn ctxt_switches(pid: u32, tid: u32) -> io::Result<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no {name}")))
    };
    Ok((
        field("voluntary_ctxt_switches:")?,
        field("nonvoluntary_ctxt_switches:")?,
    ))
}

/// The PID `pid` has in its own PID namespace, when that is not this
/// one's (a process in a container): the last of `/proc/PID/status`'s
/// `NSpid` values, which run from the outermost namespace to its own.
pub fn ns_pid(pid: u32) -> Option<u32> {
    parse_ns_pid(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn parse_ns_pid(status: &str) -> Option<u32> {
    let ids: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    (ids.len() > 1).then(|| *ids.last().expect("two or more"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_call_is_the_first_field_of_the_syscall_file() {
        let sleeping =
            "230 0x0 0x0 0x7ffe427feb60 0x7ffe427feba0 0x0 0x0 0x7ffe427feb48 0x7f96c0600503\n";
        assert_eq!(parse_syscall(sleeping), Some(230));
        assert_eq!(parse_syscall("-1 0x7ffe427feb48 0x7f96c0600503\n"), None);
        assert_eq!(parse_syscall("running\n"), None);
        assert_eq!(parse_syscall(""), None);
    }

    #[test]
    fn the_pid_in_its_own_namespace_is_the_last_nspid() {
        assert_eq!(
            parse_ns_pid("Name:\tx\nNSpid:\t4242\t17\t1\nNSpgid:\t1\n"),
            Some(1)
        );
        assert_eq!(parse_ns_pid("NSpid:\t4242\n"), None, "this namespace");
        assert_eq!(parse_ns_pid("Name:\tx\n"), None, "a kernel without NSpid");
        assert_eq!(parse_ns_pid("NSpid:\t4242\tx\n"), None);
    }

    #[test]
    fn parses_stat_with_awkward_names() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 3 0 100 0 0 \
                    18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.comm, "a (b) c");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.processor, 1);
        assert!(!s.is_kernel_thread());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0-3,6").unwrap(), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("1,1,0").unwrap(), vec![0, 1]);
        for bad in ["", "a", "3-1", "1-", "-1"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let st = stat(me).unwrap();
        assert!(!st.is_kernel_thread());
        let threads = tids(me).unwrap();
        assert!(threads.contains(&me));
        assert_eq!(task_stat(me, me).unwrap().comm, st.comm);
        let ss = schedstat(me, me).unwrap();
        assert!(ss.on_cpu_ns > 0);
        let (v, n) = ctxt_switches(me, me).unwrap();
        assert!(v + n > 0);
    }
}
