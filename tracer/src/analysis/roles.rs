//! Thread roles where names do not tell: Node.js 20 names every thread
//! `node`. A role comes from the thread's stacks when the trace has them
//! (the function its thread started in is named there), otherwise from how
//! it waits and whom it wakes:
//!
//! | role | stacks (any frame) | wake pattern |
//! |---|---|---|
//! | main event loop | `uv_run` in the main thread | the main thread |
//! | libuv threadpool | libuv's `worker` with `uv_cond_wait`, `node::ThreadPoolWork` | waits on a lock, woken by an event-loop thread, and wakes one (its completion) |
//! | V8 platform worker | `PlatformWorkerThread` | waits on a lock, woken by an event-loop thread, wakes none |
//! | V8 delayed-task scheduler | `DelayedTaskScheduler` | the first (lowest TID) non-main thread that waits in `epoll_wait` |
//! | worker_threads worker | `node::worker::Worker::Run` | any later non-main thread that waits in `epoll_wait` |
//! | inspector I/O | `StartIoThreadMain` | — |
//!
//! (From Node 20's sources and its threads' stacks under gdb; a libuv
//! pool thread's completion writes the loop's eventfd, which wakes the loop
//! thread in `epoll_wait`.) Wake-pattern labels apply only to threads named
//! `node`; stack labels to any thread whose stacks show those functions.

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
    // The lowest-TID non-main event-loop thread of each process.
    let mut first_loop: HashMap<u32, u32> = HashMap::new();
    for t in threads {
        if t.tid != t.tgid && t.main_wait == Some(WaitClass::Idle) {
            let e = first_loop.entry(t.tgid).or_insert(t.tid);
            *e = (*e).min(t.tid);
        }
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
            let total: u64 = t.woken_by.iter().map(|w| w.1).sum();
            let from_loops: u64 = t
                .woken_by
                .iter()
                .filter(|w| is_loop(w.0))
                .map(|w| w.1)
                .sum();
            if total == 0 || from_loops * 2 < total {
                continue;
            }
            // Its wakeups of event-loop threads: a pool thread wakes the
            // loop once per completed request.
            let wakes_loops: u64 = threads
                .iter()
                .filter(|o| is_loop(o.tid))
                .flat_map(|o| o.woken_by.iter().filter(|w| w.0 == t.tid).map(|w| w.1))
                .sum();
            if wakes_loops * 4 >= total {
                "libuv threadpool"
            } else {
                "V8 platform worker"
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

/// A role from the functions in a thread's stacks.
fn from_stacks(t: &RoleInput) -> Option<&'static str> {
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
        }
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
        // Not node: no wake-pattern labels.
        let mut other = threads.to_vec();
        for o in &mut other {
            o.comm = "server".into();
        }
        assert!(roles(&other).is_empty());
    }
}
