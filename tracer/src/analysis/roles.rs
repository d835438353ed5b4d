//! Thread roles where names do not tell: Node.js 20 names every thread
//! `node`. A role comes from the thread's stacks when the trace has them
//! (the function its thread started in is named there), otherwise from how
//! it waits and whom it wakes:
//!
//! | role | stacks (any frame) | wake pattern |
//! |---|---|---|
//! | main event loop | `uv_run` in the main thread | the main thread |
//! | libuv threadpool | libuv's `worker` with `uv_cond_wait`, `node::ThreadPoolWork` | waits on a lock, woken by an event-loop thread, wakes one (its completion), and is woken about as often as the busiest such thread |
//! | V8 platform worker | `PlatformWorkerThread` | waits on a lock, woken by an event-loop thread, wakes none |
//! | V8 delayed-task scheduler | `DelayedTaskScheduler` | the first-created non-main thread that waits in `epoll_wait` |
//! | worker_threads worker | `node::worker::Worker::Run` | any later non-main thread that waits in `epoll_wait` |
//! | inspector I/O | `StartIoThreadMain` | — |
//!
//! (From Node 20's sources and its threads' stacks under gdb; a libuv
//! pool thread's completion writes the loop's eventfd, which wakes the loop
//! thread in `epoll_wait`.) Wake-pattern labels apply only to threads named
//! `node`; stack labels to any thread whose stacks show those functions.
//!
//! "First-created" is TID order counted from the process's own PID, so a
//! process whose threads were numbered across a PID wraparound is ordered
//! as the kernel numbered them. Node's binaries have no frame pointers, so
//! its threads' stacks rarely reach the function they started in and the
//! wake pattern usually decides. It tells the pool from the platform
//! workers by volume as well as by shape: a V8 job that posts its result to
//! the isolate also wakes the loop back, so a platform worker woken a few
//! times can look like a pool thread; but the pool threads share one
//! request queue, so under any pool use each is woken by the loops a
//! comparable number of times, and a thread woken four times less often
//! than the busiest of them is not serving that queue.

use std::collections::HashMap;

use super::summary::Role;
use super::waits::WaitClass;

/// What the role of one thread is told from.
#[derive(Clone, Debug, Default)]
pub(crate) struct RoleInput {
    pub tid: u32,
    pub tgid: u32,
    pub comm: String,
    /// The wait class it spent most sleeping and blocked time in.
    pub main_wait: Option<WaitClass>,
    /// Traced threads that woke it, with counts.
    pub woken_by: Vec<(u32, u64)>,
    /// Names of the functions in its user stacks.
    pub functions: Vec<String>,
    /// The functions read from its stack memory (`capture/thread_root.rs`),
    /// innermost first, ending at `start_thread`: the one before that is
    /// the function the thread started in.
    pub root: Vec<String>,
}

/// Roles by TID, for the threads whose role can be told.
pub(crate) fn roles(threads: &[RoleInput]) -> HashMap<u32, Role> {
    let mut out = HashMap::new();
    for t in threads {
        if let Some(label) = from_stacks(t) {
            out.insert(
                t.tid,
                Role {
                    label: label.into(),
                    evidence: "stacks",
                },
            );
        }
    }
    let by_tid: HashMap<u32, &RoleInput> = threads.iter().map(|t| (t.tid, t)).collect();
    let is_loop = |tid: u32| {
        by_tid
            .get(&tid)
            .is_some_and(|t| t.tid == t.tgid || t.main_wait == Some(WaitClass::Idle))
    };
    // The first-created non-main event-loop thread of each process.
    let mut first_loop: HashMap<u32, u32> = HashMap::new();
    for t in threads {
        if t.tid != t.tgid && t.main_wait == Some(WaitClass::Idle) {
            let e = first_loop.entry(t.tgid).or_insert(t.tid);
            *e = std::cmp::min_by_key(*e, t.tid, |&tid| creation_order(tid, t.tgid));
        }
    }
    let pool = pool_candidates(threads, &is_loop);
    // Per process, how often the loops woke its busiest pool-like thread.
    let mut busiest: HashMap<u32, u64> = HashMap::new();
    for (tid, from_loops) in &pool {
        let tgid = by_tid[tid].tgid;
        let e = busiest.entry(tgid).or_default();
        *e = (*e).max(*from_loops);
    }
    for t in threads {
        if out.contains_key(&t.tid) || t.comm != "node" {
            continue;
        }
        let label = if t.tid == t.tgid {
            "main event loop"
        } else if t.main_wait == Some(WaitClass::Idle) {
            if first_loop.get(&t.tgid) == Some(&t.tid) {
                "V8 delayed-task scheduler"
            } else {
                "worker_threads worker"
            }
        } else if t.main_wait == Some(WaitClass::Lock) {
            let (total, from_loops) = woken_counts(t, &is_loop);
            if total == 0 || from_loops * 2 < total {
                continue;
            }
            match pool.get(&t.tid) {
                Some(&n) if n * 4 >= busiest[&t.tgid] => "libuv threadpool",
                _ => "V8 platform worker",
            }
        } else {
            continue;
        };
        out.insert(
            t.tid,
            Role {
                label: label.into(),
                evidence: "wake pattern",
            },
        );
    }
    out
}

/// Where a thread stands in its process's creation order: TIDs count up
/// from the PID and wrap at `pid_max`, so one numbered after a wraparound
/// is later than every one numbered before it.
fn creation_order(tid: u32, tgid: u32) -> u32 {
    tid.wrapping_sub(tgid)
}

/// How often a thread was woken in all, and by event-loop threads.
fn woken_counts(t: &RoleInput, is_loop: &impl Fn(u32) -> bool) -> (u64, u64) {
    let total = t.woken_by.iter().map(|w| w.1).sum();
    let from_loops = t
        .woken_by
        .iter()
        .filter(|w| is_loop(w.0))
        .map(|w| w.1)
        .sum();
    (total, from_loops)
}

/// The `node` threads whose wake pattern is a pool thread's, with how often
/// loops woke them: they wait on a lock, are woken mostly by event-loop
/// threads, and wake loops back at least once per four wakeups (a pool
/// thread wakes its loop once per completed request, unless the loop was
/// already awake).
fn pool_candidates(threads: &[RoleInput], is_loop: &impl Fn(u32) -> bool) -> HashMap<u32, u64> {
    // Its wakeups of event-loop threads, per waker.
    let mut wakes_loops: HashMap<u32, u64> = HashMap::new();
    for o in threads.iter().filter(|o| is_loop(o.tid)) {
        for w in &o.woken_by {
            *wakes_loops.entry(w.0).or_default() += w.1;
        }
    }
    threads
        .iter()
        .filter(|t| t.comm == "node" && t.tid != t.tgid)
        .filter(|t| t.main_wait == Some(WaitClass::Lock))
        .filter_map(|t| {
            let (total, from_loops) = woken_counts(t, is_loop);
            let back = wakes_loops.get(&t.tid).copied().unwrap_or(0);
            (total > 0 && from_loops * 2 >= total && back * 4 >= total)
                .then_some((t.tid, from_loops))
        })
        .collect()
}

/// A role from the function a thread started in, read from its stack
/// memory: only that one function counts (stale words deeper in a stack
/// can name functions the thread merely called, such as the main thread's
/// `DelayedTaskScheduler::PostDelayedTask`).
fn from_start(t: &RoleInput) -> Option<&'static str> {
    let top = t.root.iter().position(|f| f == "start_thread")?;
    let start = t.root.get(top.checked_sub(1)?)?;
    if start.contains("PlatformWorkerThread") {
        Some("V8 platform worker")
    } else if start.contains("DelayedTaskScheduler") {
        Some("V8 delayed-task scheduler")
    } else if start.contains("StartIoThreadMain") {
        Some("inspector I/O")
    } else if start.contains("node::worker::Worker") {
        Some("worker_threads worker")
    } else if start == "worker"
        && t.root
            .iter()
            .any(|f| f.starts_with("uv_") || f.contains("node::ThreadPoolWork"))
    {
        // libuv starts its pool threads in its static `worker`, which
        // waits in `uv_cond_wait` between jobs; one read while blocked in
        // a job (a lock in OpenSSL under `pbkdf2`) has Node's job runner,
        // `node::ThreadPoolWork`, between the two instead.
        Some("libuv threadpool")
    } else {
        None
    }
}

/// A role from the functions in a thread's stacks.
fn from_stacks(t: &RoleInput) -> Option<&'static str> {
    if let Some(role) = from_start(t) {
        return Some(role);
    }
    let has = |needle: &str| t.functions.iter().any(|f| f.contains(needle));
    let exact = |name: &str| t.functions.iter().any(|f| f == name);
    if has("node::worker::Worker::Run") {
        Some("worker_threads worker")
    } else if has("PlatformWorkerThread") {
        Some("V8 platform worker")
    } else if has("DelayedTaskScheduler") {
        Some("V8 delayed-task scheduler")
    } else if has("StartIoThreadMain") {
        Some("inspector I/O")
    } else if has("node::ThreadPoolWork") || (exact("worker") && has("uv_cond_wait")) {
        Some("libuv threadpool")
    } else if t.tid == t.tgid && has("uv_run") {
        Some("main event loop")
    } else if has("uv_run") {
        Some("event loop thread")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tid: u32, wait: Option<WaitClass>, woken_by: &[(u32, u64)], f: &[&str]) -> RoleInput {
        RoleInput {
            tid,
            tgid: 100,
            comm: "node".into(),
            main_wait: wait,
            woken_by: woken_by.to_vec(),
            functions: f.iter().map(|s| s.to_string()).collect(),
            root: Vec::new(),
        }
    }

    #[test]
    fn the_function_a_thread_started_in_names_it() {
        use WaitClass::*;
        let rooted = |tid, wait, woken_by: &[(u32, u64)], root: &[&str]| RoleInput {
            root: root.iter().map(|s| s.to_string()).collect(),
            ..t(tid, wait, woken_by, &[])
        };
        let threads = [
            t(100, Some(Idle), &[(104, 40)], &[]),
            rooted(
                101,
                Some(Lock),
                &[(100, 12)],
                &[
                    "__futex_abstimed_wait_common",
                    "uv_cond_wait",
                    "node::TaskQueue<v8::Task>::BlockingPop()",
                    "node::(anonymous namespace)::PlatformWorkerThread(void*)",
                    "start_thread",
                ],
            ),
            // Woken by the main loop like a platform worker, but it
            // started in the inspector's I/O thread function.
            rooted(
                102,
                Some(Lock),
                &[(100, 2)],
                &[
                    "uv_sem_wait",
                    "node::inspector::(anonymous namespace)::StartIoThreadMain(void*)",
                    "start_thread",
                ],
            ),
            // A stale word deeper in the stack names a function the
            // thread called; only the start counts.
            rooted(
                104,
                Some(Lock),
                &[(100, 40)],
                &[
                    "node::WorkerThreadsTaskRunner::DelayedTaskScheduler::PostDelayedTask(std::unique_ptr<v8::Task>, double)",
                    "uv_cond_wait",
                    "worker",
                    "start_thread",
                ],
            ),
            rooted(
                105,
                Some(Idle),
                &[(100, 3)],
                &[
                    "uv_run",
                    "node::WorkerThreadsTaskRunner::DelayedTaskScheduler::Run()",
                    "start_thread",
                ],
            ),
            // A C program's own `worker`, not libuv's: no role from it.
            RoleInput {
                comm: "server".into(),
                ..rooted(
                    106,
                    Some(Lock),
                    &[],
                    &["pthread_cond_wait", "worker", "start_thread"],
                )
            },
        ];
        let r = roles(&threads);
        let label = |tid| r.get(&tid).map(|r| r.label.as_str());
        assert_eq!(label(101), Some("V8 platform worker"));
        assert_eq!(label(102), Some("inspector I/O"));
        assert_eq!(label(104), Some("libuv threadpool"));
        assert_eq!(label(105), Some("V8 delayed-task scheduler"));
        assert_eq!(label(106), None);
        assert!(
            [101, 102, 104, 105]
                .iter()
                .all(|t| r[t].evidence == "stacks")
        );
    }

    #[test]
    fn a_pool_thread_read_while_blocked_in_a_job_is_named_by_its_start() {
        // As read from a real pool thread blocked on a lock inside
        // `crypto.pbkdf2` (libcrypto's frames have no names): no `uv_`
        // frame, as it was not waiting for a job.
        let threads = [RoleInput {
            root: [
                "__futex_abstimed_wait_common",
                "node::crypto::PBKDF2Traits::DeriveBits(node::Environment*, node::crypto::PBKDF2Config const&, node::crypto::ByteSource*, node::crypto::CryptoJobMode)",
                "node::ThreadPoolWork::ScheduleWork()::{lambda(uv_work_s*)#1}::_FUN(uv_work_s*)",
                "worker",
                "start_thread",
            ]
            .map(String::from)
            .to_vec(),
            ..t(101, None, &[], &[])
        }];
        let r = roles(&threads);
        assert_eq!(r[&101].label, "libuv threadpool");
        assert_eq!(r[&101].evidence, "stacks");
    }

    #[test]
    fn stacks_name_node_threads() {
        let threads = [
            t(
                100,
                Some(WaitClass::Idle),
                &[],
                &["uv__io_poll", "uv_run", "node::Start"],
            ),
            t(
                101,
                None,
                &[],
                &[
                    "uv_run",
                    "node::WorkerThreadsTaskRunner::DelayedTaskScheduler::Start()::{lambda(void*)#1}::_FUN(void*)",
                ],
            ),
            t(
                102,
                None,
                &[],
                &[
                    "uv_cond_wait",
                    "node::(anonymous namespace)::PlatformWorkerThread(void*)",
                ],
            ),
            t(
                106,
                None,
                &[],
                &[
                    "uv_sem_wait",
                    "node::inspector::(anonymous namespace)::StartIoThreadMain(void*)",
                ],
            ),
            t(107, None, &[], &["uv_cond_wait", "worker", "start_thread"]),
            t(
                108,
                None,
                &[],
                &[
                    "uv_run",
                    "node::SpinEventLoopInternal(node::Environment*)",
                    "node::worker::Worker::Run()",
                ],
            ),
        ];
        let r = roles(&threads);
        let label = |tid| r.get(&tid).map(|r| r.label.as_str());
        assert_eq!(label(100), Some("main event loop"));
        assert_eq!(label(101), Some("V8 delayed-task scheduler"));
        assert_eq!(label(102), Some("V8 platform worker"));
        assert_eq!(label(106), Some("inspector I/O"));
        assert_eq!(label(107), Some("libuv threadpool"));
        assert_eq!(label(108), Some("worker_threads worker"));
        assert!(r.values().all(|r| r.evidence == "stacks"));
    }

    #[test]
    fn the_wake_pattern_names_node_threads_without_stacks() {
        use WaitClass::*;
        let threads = [
            // Main, woken by the pool threads' completions.
            t(100, Some(Idle), &[(105, 40), (104, 38)], &[]),
            t(101, Some(Idle), &[], &[]),
            // Platform worker: woken by main, wakes nobody.
            t(102, Some(Lock), &[(100, 12)], &[]),
            // Pool threads: woken by main, wake main.
            t(104, Some(Lock), &[(100, 40)], &[]),
            t(105, Some(Lock), &[(100, 41)], &[]),
            t(108, Some(Idle), &[(100, 9)], &[]),
            // Never woken: no role.
            t(106, Some(Lock), &[], &[]),
        ];
        let r = roles(&threads);
        let label = |tid| r.get(&tid).map(|r| r.label.as_str());
        assert_eq!(label(100), Some("main event loop"));
        assert_eq!(label(101), Some("V8 delayed-task scheduler"));
        assert_eq!(label(102), Some("V8 platform worker"));
        assert_eq!(label(104), Some("libuv threadpool"));
        assert_eq!(label(105), Some("libuv threadpool"));
        assert_eq!(label(108), Some("worker_threads worker"));
        assert_eq!(label(106), None);
        assert_eq!(r[&104].evidence, "wake pattern");
        // A platform worker whose V8 jobs post back to the isolate wakes
        // the loop back too, but is woken far less often than the pool
        // threads sharing the request queue (real Node 20: 4 vs 350).
        let mut posting = threads.to_vec();
        posting[2].woken_by = vec![(100, 3), (108, 1)];
        posting[5].woken_by = vec![(100, 9), (102, 1)];
        let r = roles(&posting);
        assert_eq!(r[&102].label, "V8 platform worker");
        assert_eq!(r[&104].label, "libuv threadpool");
        assert_eq!(r[&105].label, "libuv threadpool");
        // Not node: no wake-pattern labels.
        let mut other = threads.to_vec();
        for o in &mut other {
            o.comm = "server".into();
        }
        assert!(roles(&other).is_empty());
    }

    #[test]
    fn creation_order_survives_a_pid_wraparound() {
        use WaitClass::*;
        // PID 32000's threads were numbered across pid_max (32768): the
        // delayed-task scheduler got 32010, the Worker's loop later got 600.
        let mut threads = vec![
            t(32000, Some(Idle), &[], &[]),
            t(600, Some(Idle), &[(32000, 9)], &[]),
            t(32010, Some(Idle), &[(32000, 2)], &[]),
        ];
        for o in &mut threads {
            o.tgid = 32000;
        }
        let r = roles(&threads);
        assert_eq!(r[&32010].label, "V8 delayed-task scheduler");
        assert_eq!(r[&600].label, "worker_threads worker");
    }
}
