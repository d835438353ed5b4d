//! Live capture: arms the kernel side for one process, reads the ring buffer
//! on a timer (the kernel only wakes us when the buffer fills past a
//! threshold, so the reader does not preempt the threads it watches), puts
//! events in timestamp order and hands every [`Record`] to a sink, until
//! Ctrl-C, SIGTERM/SIGHUP, `--duration`, or the target's exit.

pub mod btf;
pub mod launch;
pub mod loader;
pub mod reorder;
pub mod signals;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{Context as _, bail};
use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};

use schedtrace_common::RawEvent;

use crate::event::{DecodeError, Event};
use crate::procfs;
use crate::trace::{End, Header, Lost, Record, TRACE_SCHEMA_VERSION};
use launch::Launched;
use loader::LoadOptions;
use reorder::Reorder;
use signals::{aborted, arm_second_signal, test_hook_slow_finish};

/// How long to keep reading after the target exits: its threads still
/// switch out once more after the exit is visible.
const EXIT_GRACE: Duration = Duration::from_millis(50);

#[derive(Clone, Debug)]
pub struct CaptureOptions {
    pub follow_children: bool,
    /// Trace wakeups (`sched_waking`); without them, switches carry the
    /// kernel's run-queue wait instead.
    pub wakeups: bool,
    pub duration: Option<Duration>,
    pub ring_bytes: u32,
    pub drain_interval: Duration,
    pub verbose: bool,
    pub quiet: bool,
    /// Show the full-screen live view while tracing.
    pub live: bool,
    pub command: Option<Vec<String>>,
    pub pinned_cpus: Option<Vec<u32>>,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            follow_children: false,
            wakeups: true,
            duration: None,
            ring_bytes: schedtrace_common::DEFAULT_RING_BYTES,
            drain_interval: Duration::from_millis(20),
            verbose: false,
            quiet: false,
            live: false,
            command: None,
            pinned_cpus: None,
        }
    }
}

/// Why capture stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    Duration,
    Signal(&'static str),
    TargetExited,
    /// The user quit the live view.
    Quit,
}

/// What a progress callback wants the capture to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

impl StopReason {
    pub fn as_str(&self) -> String {
        match self {
            StopReason::Duration => "duration".into(),
            StopReason::Signal(s) => format!("signal {s}"),
            StopReason::TargetExited => "target-exited".into(),
            StopReason::Quit => "quit".into(),
        }
    }
}

/// Where a running capture stands, for status lines and live views.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Progress {
    pub elapsed: Duration,
    pub events: u64,
    pub lost: u64,
    /// Events per second over the whole capture so far.
    pub rate: f64,
}

/// How often [`capture`] reports [`Progress`].
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

pub struct Outcome {
    pub reason: StopReason,
    pub end: End,
    /// Exit status of a launched command.
    pub child_status: Option<std::process::ExitStatus>,
}

/// Register `inner`'s descriptor with the runtime for readability.
fn register<T: AsRawFd>(inner: T, what: &str) -> anyhow::Result<AsyncFd<T>> {
    // SAFETY: the AsyncFd owns `inner`, so the descriptor stays open for as
    // long as it is registered and is closed only after deregistration.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering {what} with the runtime: {e}"))
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success the fd is ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor pidfd_open returned is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_exited(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}

/// Events read from the ring buffer between two releases from the reorder
/// buffer while draining: keeps the reorder buffer (and what the sink
/// touches) in cache when a drain finds a large backlog.
const RELEASE_EVERY: u64 = 4096;

/// Pause between detaching and the last reads (programs run for microseconds).
const SETTLE: Duration = Duration::from_millis(2);

/// Read everything the ring buffer holds into the reorder buffer, releasing
/// the events that are ready to `release` as it goes.
fn drain(
    rb: &mut RingBuf<MapData>,
    reorder: &mut Reorder,
    decode_errors: &mut u64,
    release: &mut dyn FnMut(Event),
) -> u64 {
    let mut n = 0;
    while !aborted()
        && let Some(item) = rb.next()
    {
        let before = n;
        // A record is one event or a CPU's batch of them (see `Stage`).
        let size = size_of::<RawEvent>();
        if item.is_empty() || item.len() % size != 0 {
            push_decoded(reorder, Event::try_from(&*item), decode_errors);
            n += 1;
            continue;
        }
        for raw in item.chunks_exact(size) {
            push_decoded(reorder, Event::try_from(raw), decode_errors);
            n += 1;
        }
        if n / RELEASE_EVERY != before / RELEASE_EVERY {
            reorder.drain_ready(&mut *release);
        }
    }
    n
}

fn push_decoded(
    reorder: &mut Reorder,
    decoded: Result<Event, DecodeError>,
    decode_errors: &mut u64,
) {
    match decoded {
        Ok(e) => reorder.push(e),
        Err(err) => {
            *decode_errors += 1;
            if *decode_errors == 1 {
                log::warn!("undecodable ring-buffer record: {err}");
            }
        }
    }
}

/// Validate that `pid` is something we can trace.
pub fn check_target(pid: u32) -> anyhow::Result<procfs::Stat> {
    if pid == 0 {
        bail!("--pid 0 is not a process (PID 0 is the kernel's idle task)");
    }
    let st = match procfs::stat(pid) {
        Ok(st) => st,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("no process with PID {pid}")
        }
        Err(e) => return Err(e).context(format!("reading /proc/{pid}/stat")),
    };
    if st.is_kernel_thread() {
        bail!(
            "PID {pid} ({}) is a kernel thread; schedtrace traces user processes",
            st.comm
        );
    }
    if st.state == 'Z' || st.state == 'X' {
        bail!(
            "PID {pid} ({}) has already exited (it is a zombie)",
            st.comm
        );
    }
    Ok(st)
}

/// Trace `pid` until a stop condition; every record goes to `sink`.
/// With `launched`, the child is released once the probes are armed.
pub async fn capture(
    pid: u32,
    mut launched: Option<&mut Launched>,
    opts: &CaptureOptions,
    sink: &mut dyn FnMut(&Record),
    progress: &mut dyn FnMut(&Progress) -> Flow,
) -> anyhow::Result<Outcome> {
    // Handle stop signals from the start: the "tracing" line invites them.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let st = check_target(pid)?;
    let pidfd = pidfd_open(pid).map_err(|e| match e.raw_os_error() {
        Some(libc::ESRCH) => anyhow::anyhow!("process {pid} exited before tracing could start"),
        _ => anyhow::Error::new(e).context("pidfd_open"),
    })?;
    let ncpus = procfs::possible_cpus();
    let mut probes = loader::load_and_attach(&LoadOptions {
        target_tgid: pid,
        follow_children: opts.follow_children,
        ring_bytes: opts.ring_bytes,
        wakeup_bytes: (opts.ring_bytes / 4) as u64,
        wakeups: opts.wakeups,
        verbose: opts.verbose,
    })?;
    let start_ns = procfs::monotonic_ns();
    if launched.is_none() && pidfd_exited(&pidfd) {
        bail!("process {pid} exited before tracing could start");
    }
    let threads = procfs::thread_infos(pid).unwrap_or_default();
    let comm = threads
        .iter()
        .find(|t| t.tid == pid)
        .map(|t| t.comm.to_string())
        .unwrap_or(st.comm);
    sink(&Record::Header(Header {
        version: TRACE_SCHEMA_VERSION,
        wall_clock_offset_ns: procfs::wall_clock_offset_ns(),
        ncpus,
        target_pid: pid,
        target_comm: comm.clone(),
        command: opts.command.clone(),
        follow_children: opts.follow_children,
        wakeups: opts.wakeups,
        pinned_cpus: opts.pinned_cpus.clone(),
        kernel_release: procfs::kernel_release(),
        hostname: procfs::hostname(),
        tool_version: crate::version::long(),
        start_ns,
    }));
    for t in &threads {
        sink(&Record::Thread(*t));
    }
    if !opts.quiet && !opts.live {
        let what = match &opts.command {
            Some(cmd) => format!("command {:?}", cmd.join(" ")),
            None => format!("PID {pid} ({comm})"),
        };
        eprintln!(
            "schedtrace: tracing {what}, PID {pid}, {} thread{}, {ncpus} CPU{}{}",
            threads.len(),
            if threads.len() == 1 { "" } else { "s" },
            if ncpus == 1 { "" } else { "s" },
            match &opts.duration {
                Some(d) => format!(", for {}", crate::units::duration(d.as_nanos() as u64)),
                None => ", until Ctrl-C or exit".into(),
            }
        );
    }
    if let Some(l) = launched.as_deref_mut() {
        let argv0 = opts
            .command
            .as_ref()
            .and_then(|c| c.first().cloned())
            .unwrap_or_default();
        l.release(&argv0)?;
    }

    let mut rb = register(probes.events_take(), "the ring buffer")?;
    let pidfd = register(pidfd, "the pidfd")?;
    let mut logger = match probes.logger.take() {
        Some(l) => Some(register(l, "the log buffer")?),
        None => None,
    };
    let mut tick = tokio::time::interval(opts.drain_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let deadline = async {
        match opts.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);

    let mut reorder = Reorder::default();
    let mut decode_errors = 0u64;
    let mut events = 0u64;
    let mut lost_seen = vec![0u64; ncpus as usize];
    let mut exited_at: Option<tokio::time::Instant> = None;
    let mut emit_lost = |probes: &loader::Probes, sink: &mut dyn FnMut(&Record)| {
        let now = procfs::monotonic_ns();
        for (cpu, v) in probes.lost_events_per_cpu().into_iter().enumerate() {
            if cpu >= lost_seen.len() {
                lost_seen.resize(cpu + 1, 0);
            }
            if v > lost_seen[cpu] {
                sink(&Record::Lost(Lost {
                    ts: now,
                    cpu: cpu as u32,
                    count: v - lost_seen[cpu],
                }));
                lost_seen[cpu] = v;
            }
        }
        lost_seen.clone()
    };

    let started = tokio::time::Instant::now();
    let mut last_progress = started;
    let reason = loop {
        let mut stop = None;
        tokio::select! {
            _ = tick.tick() => {}
            r = rb.readable_mut() => { r?.clear_ready(); }
            _ = sigint.recv() => stop = Some(StopReason::Signal("SIGINT")),
            _ = sigterm.recv() => stop = Some(StopReason::Signal("SIGTERM")),
            _ = sighup.recv() => stop = Some(StopReason::Signal("SIGHUP")),
            _ = &mut deadline => stop = Some(StopReason::Duration),
            r = pidfd.readable(), if exited_at.is_none() => {
                r?.retain_ready();
                exited_at = Some(tokio::time::Instant::now());
            }
            r = async { logger.as_mut().expect("guarded").readable_mut().await }, if logger.is_some() => {
                let mut g = r?;
                g.get_inner_mut().flush();
                g.clear_ready();
            }
        }
        events += drain(rb.get_mut(), &mut reorder, &mut decode_errors, &mut |e| {
            sink(&Record::Event(e));
        });
        let lost_now: u64 = emit_lost(&probes, sink).iter().sum();
        reorder.drain_ready(|e| sink(&Record::Event(e)));
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = tokio::time::Instant::now();
            let elapsed = started.elapsed();
            let flow = progress(&Progress {
                elapsed,
                events,
                lost: lost_now,
                rate: events as f64 / elapsed.as_secs_f64().max(1e-9),
            });
            if flow == Flow::Stop && stop.is_none() {
                stop = Some(StopReason::Quit);
            }
        }
        if let Some(t) = exited_at
            && stop.is_none()
            && t.elapsed() >= EXIT_GRACE
        {
            stop = Some(StopReason::TargetExited);
        }
        if let Some(s) = stop {
            break s;
        }
    };

    // Detach first, then take the window's end: no event can come after it.
    arm_second_signal();
    probes.detach();
    let end_ns = procfs::monotonic_ns();
    // Detaching does not wait for a program already running on another CPU;
    // give it time to finish before the ring buffer and the stages are read.
    std::thread::sleep(SETTLE);
    test_hook_slow_finish();
    events += drain(rb.get_mut(), &mut reorder, &mut decode_errors, &mut |e| {
        if !aborted() {
            sink(&Record::Event(e));
        }
    });
    match probes.staged_events() {
        Ok(staged) => {
            events += staged.len() as u64;
            for raw in &staged {
                push_decoded(&mut reorder, Event::try_from(raw), &mut decode_errors);
            }
        }
        Err(e) => log::warn!("{e:#}: the last few events of each CPU are missing"),
    }
    let lost_per_cpu = emit_lost(&probes, sink);
    reorder.drain_all(|e| {
        if !aborted() {
            sink(&Record::Event(e));
        }
    });
    if let Some(mut l) = logger {
        l.get_mut().flush();
    }
    if reorder.late() > 0 {
        log::warn!(
            "{} events arrived out of order beyond the reorder window",
            reorder.late()
        );
    }
    let complete = !aborted();
    let end = End {
        end_ns,
        events,
        lost_events: lost_per_cpu.iter().sum(),
        lost_per_cpu,
        complete,
        reason: if complete {
            reason.as_str()
        } else {
            format!("{}, then interrupted while finishing", reason.as_str())
        },
    };
    sink(&Record::End(end.clone()));

    let child_status = match launched {
        Some(l) if reason == StopReason::TargetExited => Some(l.wait()?),
        Some(l) => Some(l.stop(Duration::from_secs(2))?),
        None => None,
    };
    Ok(Outcome {
        reason,
        end,
        child_status,
    })
}
