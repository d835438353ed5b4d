//! The built-in example workload, modelled on a Node.js process: a main
//! thread running an event loop (short CPU bursts, then waiting), four
//! "libuv" pool threads doing blocking work handed to them by the main
//! thread, and two "V8" helper threads doing periodic background work.
//! Work is measured in CPU time, so pinned to one core it takes longer in
//! wall time but does the same work: the point of the one-core demo.

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The workload's shape (`schedtrace __workload` takes it from its flags).
#[derive(Clone, Debug)]
pub struct Workload {
    /// How long the event loop runs (seconds of wall time).
    pub seconds: f64,
    /// Pool threads.
    pub pool: usize,
    /// Helper threads.
    pub helpers: usize,
    /// Create every thread, then wait for a line on stdin before working;
    /// when done, print `done` and wait for stdin to close before exiting.
    /// (Integration tests use this to read /proc at quiet moments.)
    pub gated: bool,
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Spin for `ns` of this thread's CPU time.
pub(crate) fn burn(ns: u64) -> u64 {
    let start = thread_cpu_ns();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while thread_cpu_ns() - start < ns {
        for _ in 0..256 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
    }
    std::hint::black_box(x)
}

fn set_name(name: &str) {
    let c = std::ffi::CString::new(name).expect("no NUL");
    // SAFETY: PR_SET_NAME with a NUL-terminated string.
    unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
}

#[derive(Default)]
struct Queue {
    tasks: Mutex<(u64, bool)>, // (pending tasks, shutting down)
    cv: Condvar,
}

/// Where threads wait until the main thread opens it (open from the start
/// unless gated).
#[derive(Clone)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn new(open: bool) -> Self {
        Gate(Arc::new((Mutex::new(open), Condvar::new())))
    }

    fn wait(&self) {
        let (m, cv) = &*self.0;
        let mut open = m.lock().expect("lock");
        while !*open {
            open = cv.wait(open).expect("wait");
        }
    }

    fn open(&self) {
        let (m, cv) = &*self.0;
        *m.lock().expect("lock") = true;
        cv.notify_all();
    }
}

/// The gates every thread passes: `go` before working, `release` before
/// exiting. Gated mode keeps finished threads alive (asleep) until stdin
/// says so, so that /proc still has their counters.
#[derive(Clone)]
struct Gates {
    go: Gate,
    release: Gate,
}

pub fn run(args: &Workload) -> anyhow::Result<()> {
    set_name("node-main");
    let queue = Arc::new(Queue::default());
    let stop = Arc::new(AtomicBool::new(false));
    let gates = Gates {
        go: Gate::new(!args.gated),
        release: Gate::new(!args.gated),
    };
    let mut handles = Vec::new();
    for i in 0..args.pool {
        handles.push(pool_thread(i, queue.clone(), gates.clone())?);
    }
    for i in 0..args.helpers {
        handles.push(helper_thread(i, stop.clone(), gates.clone())?);
    }
    if args.gated {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        gates.go.open();
    }
    event_loop(&queue, args.seconds);
    stop.store(true, Ordering::Relaxed);
    {
        let mut q = queue.tasks.lock().expect("lock");
        q.0 = 0;
        q.1 = true;
        queue.cv.notify_all();
    }
    if args.gated {
        // Let every thread reach its final wait before saying so.
        std::thread::sleep(Duration::from_millis(100));
        println!("done");
        let mut rest = String::new();
        let _ = std::io::stdin().lock().read_line(&mut rest);
        gates.release.open();
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

/// A "libuv" pool thread: takes blocking work from the queue until it
/// shuts down.
fn pool_thread(i: usize, queue: Arc<Queue>, gates: Gates) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("libuv-worker{i}"))
        .spawn(move || {
            gates.go.wait();
            loop {
                {
                    let mut q = queue.tasks.lock().expect("lock");
                    while q.0 == 0 && !q.1 {
                        q = queue.cv.wait(q).expect("wait");
                    }
                    if q.0 == 0 && q.1 {
                        drop(q);
                        gates.release.wait();
                        return;
                    }
                    q.0 -= 1;
                }
                burn(4_000_000); // e.g. crypto.pbkdf2 or zlib
                std::thread::sleep(Duration::from_millis(1)); // fs I/O
            }
        })
}

/// A "V8" helper thread: periodic background work until `stop`.
fn helper_thread(i: usize, stop: Arc<AtomicBool>, gates: Gates) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("V8 Worker{i}"))
        .spawn(move || {
            gates.go.wait();
            while !stop.load(Ordering::Relaxed) {
                burn(1_000_000); // background GC marking
                std::thread::sleep(Duration::from_millis(15));
            }
            gates.release.wait();
        })
}

/// The main thread's event loop: a short burst of JavaScript, two tasks
/// for the pool, then a wait, for `seconds` of wall time.
fn event_loop(queue: &Queue, seconds: f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds.max(0.0));
    while Instant::now() < deadline {
        burn(1_000_000); // JavaScript on the main thread
        {
            let mut q = queue.tasks.lock().expect("lock");
            q.0 += 2;
            queue.cv.notify_all();
        }
        std::thread::sleep(Duration::from_millis(5)); // waiting in epoll
    }
}
