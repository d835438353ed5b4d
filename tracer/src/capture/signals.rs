//! The second stop signal: once tracing has stopped and schedtrace is
//! finishing (draining what the kernel still holds, writing the end
//! records), a stop signal cuts that short, and a third one exits at once.
//! Also the hidden test hook that makes finishing slow enough to signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set by a second stop signal while schedtrace is finishing: stop draining
/// at once and mark the trace incomplete.
static ABORT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_second_signal(_: libc::c_int) {
    if ABORT.swap(true, Ordering::SeqCst) {
        // A third signal: leave now.
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// The stop signals' handlers as they were before [`arm_second_signal`]
/// (the async runtime's), put back when finishing is over so that a later
/// capture in the same process (the demo's second run) hears its first
/// Ctrl-C again.
pub(crate) struct SecondSignal {
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl Drop for SecondSignal {
    fn drop(&mut self) {
        for (sig, sa) in &self.previous {
            // SAFETY: restoring a handler the kernel gave us back.
            unsafe { libc::sigaction(*sig, sa, std::ptr::null_mut()) };
        }
        ABORT.store(false, Ordering::SeqCst);
    }
}

/// Until the returned guard is dropped, a stop signal aborts the finishing
/// work (see [`ABORT`]).
pub(crate) fn arm_second_signal() -> SecondSignal {
    let mut previous = Vec::with_capacity(3);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing a handler that only touches an atomic; the old
        // one is kept to be restored.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_second_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, &sa, &mut old) == 0 {
                previous.push((sig, old));
            }
        }
    }
    SecondSignal { previous }
}

/// Has a second stop signal asked us to finish at once?
pub(crate) fn aborted() -> bool {
    ABORT.load(Ordering::SeqCst)
}

/// Hidden test hook: `SCHEDTRACE_TEST_SLOW_FINISH_MS=N` stands in for a
/// finishing phase that takes up to N ms (a long drain, checking
/// [`aborted`] as the real one does), so that a test can send the second
/// stop signal while schedtrace is finishing (the integration test
/// `second_ctrl_c_while_finishing_stops_at_once_and_leaves_valid_files`).
/// Finishing is otherwise too fast to catch. Read here and nowhere else.
pub(crate) fn test_hook_slow_finish() {
    let Some(ms) = std::env::var("SCHEDTRACE_TEST_SLOW_FINISH_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    let until = std::time::Instant::now() + Duration::from_millis(ms);
    while !aborted() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
}
