//! The full-machine workload (`--workloads full`): one pipe ping-pong pair
//! per CPU, both threads of a pair pinned to that CPU, all in one process
//! (so that schedtrace, launching it, traces every thread), for a fixed
//! time. It is `perf bench sched pipe -T` once per CPU at the same time:
//! every CPU is busy for the whole window, so every cycle a tracer's
//! consumer takes comes out of the workload's throughput. Run as
//! `xtask bench --pipe-pairs SECONDS`; prints `N ops/sec` (round trips,
//! all pairs) as perf does, then one line per CPU.

use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

fn pin(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes within it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu < CPU_SETSIZE (checked by the caller against nproc).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; set is a valid cpu_set_t.
    let r = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A pipe as two files.
fn pipe() -> std::io::Result<(std::fs::File, std::fs::File)> {
    use std::os::fd::FromRawFd as _;
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned here only.
    Ok(unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    })
}

pub(super) fn main(seconds: f64) -> anyhow::Result<()> {
    let cpus = std::thread::available_parallelism()
        .context("counting CPUs")?
        .get();
    if !(seconds > 0.0 && seconds <= 600.0) {
        bail!("--pipe-pairs takes 0 < SECONDS <= 600");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(2 * cpus + 1));
    let counts: Arc<Vec<AtomicU64>> = Arc::new((0..cpus).map(|_| AtomicU64::new(0)).collect());
    let mut threads = Vec::new();
    for cpu in 0..cpus {
        let (a_rx, b_tx) = pipe()?; // B -> A
        let (b_rx, a_tx) = pipe()?; // A -> B
        // A: write, then wait for the answer; counts round trips; stops first.
        let (stop_a, start_a, counts_a) = (stop.clone(), start.clone(), counts.clone());
        threads.push(std::thread::spawn(move || -> std::io::Result<()> {
            // Pin before the barrier, fail after it: a failed thread must
            // not leave the others waiting.
            let pinned = pin(cpu);
            let (mut rx, mut tx) = (a_rx, a_tx);
            let mut b = [0u8; 1];
            start_a.wait();
            pinned?;
            let mut n = 0u64;
            while !stop_a.load(Ordering::Relaxed) {
                tx.write_all(&b)?;
                rx.read_exact(&mut b)?;
                n += 1;
            }
            counts_a[cpu].store(n, Ordering::Relaxed);
            Ok(()) // dropping tx ends B
        }));
        // B: answer every byte until A closes its end.
        let start_b = start.clone();
        threads.push(std::thread::spawn(move || -> std::io::Result<()> {
            let pinned = pin(cpu);
            let (mut rx, mut tx) = (b_rx, b_tx);
            let mut b = [0u8; 1];
            start_b.wait();
            pinned?;
            while rx.read(&mut b)? == 1 {
                tx.write_all(&b)?;
            }
            Ok(())
        }));
    }
    start.wait();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let wall = t0.elapsed().as_secs_f64();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a pipe thread panicked"))??;
    }
    let per: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let total: u64 = per.iter().sum();
    println!("{:.0} ops/sec", total as f64 / wall);
    for (cpu, n) in per.iter().enumerate() {
        println!("cpu {cpu}: {:.0} ops/sec", *n as f64 / wall);
    }
    Ok(())
}
