//! One capture, start to finish: [`Session::start`] checks the target,
//! loads and attaches the programs and writes the trace's header;
//! [`Session::run`] releases a launched command and reads until a stop
//! condition; [`Session::finish`] detaches, reads what is left and writes
//! the end record.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use schedtrace_common::{FLAG_DIRECT, RawEvent, kind};
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::identity::ProcessHandle;
use super::launch::Launched;
use super::loader::{self, LoadOptions, Mark, Probes};
use super::names::KernelNames;
use super::reorder::{Order, Reorder};
use super::signals::{aborted, arm_second_signal, test_hook_slow_finish};
use super::symbolize::{RawStack, symbolize_with, symbolizer};
use super::targets::{Opened, Targets};
use super::{CaptureOptions, Outcome, PROGRESS_EVERY, Selected, Started, StopReason, TraceMeta};
use crate::event::{DecodeError, Event, EventKind, SwitchReason, WakeContext, hrtimer_address};
use crate::procfs;
use crate::trace::consumer::{Consumer, Flow, Progress};
use crate::trace::occupancy::OccupancyFold;
use crate::trace::{
    End, Gap, Header, KernelSums, LiveSums, Lost, Occupancy, OrderMethod, Ordering, Record, Stack,
    StackKind, TargetProcess, ThreadCounters, schema_version,
};

/// How long to keep reading after the target exits: its threads still
/// switch out once more after the exit is visible.
const EXIT_GRACE: Duration = Duration::from_millis(50);

/// Events read from the ring buffer between two releases from the reorder
/// buffer while draining: keeps the reorder buffer (and what the consumers
/// touch) in cache when a drain finds a large backlog.
const RELEASE_EVERY: u64 = 4096;

/// Pause between detaching and the last reads (programs run for microseconds).
const SETTLE: Duration = Duration::from_millis(2);

/// Outputs are flushed (in whole records) at least this often, so that a
/// SIGKILL, the OOM killer or a power cut loses at most about this much.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Longest the loop reads the ring buffer before it looks at the clock and
/// the signals again: under overload the kernel refills the buffer as fast
/// as it is read, and `--duration` and Ctrl-C must still be seen.
const DRAIN_SLICE: Duration = Duration::from_millis(50);

/// How often followed children that have ended are looked for in the
/// kernel's map (and removed at the second look, once their last threads'
/// final switches are long past).
const CHILDREN_SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Tries of the last heartbeat on a CPU whose stage is held (after
/// detaching, only by a program still finishing), [`SETTLE`] apart.
const LAST_MARK_TRIES: u32 = 5;
/// How often stacks first seen since are named (while their processes
/// are still there to read).
const NAME_STACKS_EVERY: Duration = Duration::from_millis(100);

/// The stop signals, handled from the start: the "tracing" line invites them.
struct StopSignals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

type Logger = aya_log::EbpfLogger<&'static dyn log::Log>;

/// A capture in progress (see the module documentation).
pub struct Session {
    launched: Option<Launched>,
    /// The launched command's name, for the error when it cannot start.
    argv0: String,
    duration: Option<Duration>,
    drain_interval: Duration,
    /// The window's start (`Header::start_ns`).
    start_ns: u64,
    signals: StopSignals,
    probes: Probes,
    /// `--cgroup`: processes may enter it at any time, so the exit of
    /// those traced so far does not end the capture.
    open_ended: bool,
    /// Followed children found ended at the last sweep.
    children_gone: std::collections::HashSet<u32>,
    /// Events read after the end of `--duration`, left out of the trace.
    beyond_window: u64,
    ring: AsyncFd<RingBuf<MapData>>,
    /// The processes given by PID (or launched): the capture stops once all
    /// have exited.
    targets: Targets,
    logger: Option<AsyncFd<Logger>>,
    reorder: Reorder,
    /// Timer callbacks and interrupt handlers, named (with wakeups).
    names: KernelNames,
    ncpus: u32,
    /// When the last heartbeat round started (trace clock): a CPU that has
    /// marked its progress since needs none in the next.
    last_beat: u64,
    decode_errors: u64,
    /// Events read from the kernel so far.
    events: u64,
    /// Events handed on.
    released: u64,
    /// Each CPU's losses already written as `lost` records.
    lost_seen: Vec<u64>,
    /// Switch-ins the stream lacked, per CPU (see [`MissingSwitchIns`]).
    missing: MissingSwitchIns,
    /// The stacks the events name (`--stacks`), read from the kernel's
    /// stack map and symbolised at the end.
    stack_refs: StackRefs,
    /// `--kernel-sums`: the counters at the start, and the ended threads'
    /// sums taken out of the kernel's map so far.
    sums: Option<KernelSums>,
}

/// Stack ids the events name, each with the process whose address space
/// a user stack is in (the first seen: a user stack id the kernel shares
/// between processes has the same addresses in both, so it is a forked
/// child's copy of the same code).
#[derive(Default)]
struct StackRefs {
    ids: std::collections::BTreeMap<u32, (StackKind, u32)>,
    /// Switch records with a stack the map could not hold (the kernel
    /// side's `STACK_LOST` bit: the map was full, or each id the stack may
    /// take held another stack).
    lost: u64,
    /// The stacks named so far, by id. User stacks are named while the
    /// capture runs: once a process has exited, its address space (and the
    /// binaries it mapped) can no longer be read.
    named: std::collections::BTreeMap<u32, Stack>,
    /// Ids noted since the last [`StackRefs::name_new`].
    pending: usize,
    symbolizer: Option<blazesym::symbolize::Symbolizer>,
    /// The processes whose threads' stack memory is read (with `--stacks`
    /// only): those given by PID (or launched), whose pidfds tell whether a
    /// read is still theirs (followed children have none).
    rooted: Vec<u32>,
    /// Threads of those processes whose stack memory is still to be read
    /// for the functions it holds (see [`super::thread_root`]): TID →
    /// (TGID, tries so far).
    roots_pending: std::collections::BTreeMap<u32, (u32, u32)>,
    /// Threads whose stack memory was read or given up on.
    roots_done: std::collections::HashSet<u32>,
    /// Stack memory reads so far (for their stack ids).
    roots_read: u32,
}

/// Stack ids of thread roots: above every id of the kernel's stack map.
const ROOT_STACK_IDS: u32 = 1 << 31;
/// The most threads whose stack memory is read in one capture.
const MAX_ROOTS: usize = 1024;
/// How often a thread found running, or blocked in a page fault, is read
/// again (once per naming round).
const ROOT_TRIES: u32 = 20;

impl StackRefs {
    /// Note the stacks a switch record names, whether the kernel lost one
    /// (`OffCpu::stack_lost`), and a thread of a rooted process that went
    /// to sleep, whose stack memory is then to be read.
    fn note(&mut self, e: &Event) {
        if let EventKind::Switch {
            prev,
            prev_off: Some(o),
            prev_state,
            preempt,
            ..
        } = &e.kind
        {
            self.lost += u64::from(o.stack_lost);
            if let Some(k) = o.kernel_stack
                && let std::collections::btree_map::Entry::Vacant(v) = self.ids.entry(k)
            {
                v.insert((StackKind::Kernel, 0));
                self.pending += 1;
            }
            if let Some(u) = o.user_stack
                && let std::collections::btree_map::Entry::Vacant(v) = self.ids.entry(u)
            {
                v.insert((StackKind::User, prev.tgid));
                self.pending += 1;
            }
            // Not only when the kernel's map held its user stack: reading
            // the stack memory needs none, and a thread's one sleep whose
            // stack was lost would otherwise leave it unread.
            if SwitchReason::decode(*prev_state, *preempt).is_voluntary()
                && self.roots_done.len() + self.roots_pending.len() < MAX_ROOTS
                && self.rooted.contains(&prev.tgid)
                && !self.roots_done.contains(&prev.tid)
            {
                self.roots_pending.entry(prev.tid).or_insert((prev.tgid, 0));
            }
        }
    }

    /// Whether [`StackRefs::name_new`] has work.
    fn due(&self) -> bool {
        self.pending > 0 || !self.roots_pending.is_empty()
    }

    /// Read the stack memory of the pending threads that are blocked now,
    /// keeping what was read of a process only if its pidfd (in
    /// `targets`) shows it still running afterwards.
    fn scan_roots(&mut self, targets: &[(u32, &OwnedFd)]) -> Vec<(u32, RawStack)> {
        let mut found = Vec::new();
        for (&tid, (tgid, tries)) in &mut self.roots_pending {
            *tries += 1;
            match super::thread_root::scan(*tgid, tid) {
                Some(read) if read.worth_keeping(*tries, ROOT_TRIES) => {
                    found.push((tid, *tgid, read.ips));
                }
                Some(_) => log::debug!(
                    "thread {tid}: blocked in a page fault, not a system call: read again"
                ),
                None => log::debug!("thread {tid}: running or gone, its stack memory unread"),
            }
        }
        let ended: Vec<u32> = targets
            .iter()
            .filter(|(_, fd)| super::identity::pidfd_exited(fd))
            .map(|(pid, _)| *pid)
            .collect();
        // The PID of an ended process may be another's by now: nothing read
        // of it counts. A thread stays pending until its stack shows where
        // it started (see `name_new`), for at most `ROOT_TRIES` rounds.
        found.retain(|(_, tgid, _)| !ended.contains(tgid));
        let done = &mut self.roots_done;
        self.roots_pending.retain(|&tid, (tgid, tries)| {
            let more = *tries < ROOT_TRIES && !ended.contains(tgid);
            if !more {
                log::debug!(
                    "thread {tid}: where it started was not found in its stack memory ({tries} reads)"
                );
                done.insert(tid);
            }
            more
        });
        found
            .into_iter()
            .map(|(tid, tgid, ips)| {
                self.roots_read += 1;
                let id = ROOT_STACK_IDS + self.roots_read;
                (
                    tid,
                    RawStack {
                        id,
                        kind: StackKind::User,
                        tgid,
                        ips,
                    },
                )
            })
            .collect()
    }

    /// Read the stacks noted since the last call from the kernel's map and
    /// name them.
    fn name_new(&mut self, probes: &Probes, targets: &[(u32, &OwnedFd)]) {
        if !self.due() {
            return;
        }
        self.pending = 0;
        let roots = self.scan_roots(targets);
        let root_of: std::collections::HashMap<u32, u32> =
            roots.iter().map(|(tid, r)| (r.id, *tid)).collect();
        let mut raw: Vec<RawStack> = self
            .ids
            .iter()
            .filter(|(id, _)| !self.named.contains_key(id))
            .filter_map(|(&id, &(kind, tgid))| {
                Some(RawStack {
                    id,
                    kind,
                    tgid,
                    ips: probes.stack(id)?,
                })
            })
            .collect();
        raw.extend(roots.into_iter().map(|(_, r)| r));
        let started = std::time::Instant::now();
        let symbolizer = self.symbolizer.get_or_insert_with(symbolizer);
        let (stacks, stats) = symbolize_with(symbolizer, &raw);
        log::debug!(
            "{} stacks ({} frames, {} addresses, {} named, {} from perf maps) symbolised in {} ms",
            stacks.len(),
            stats.frames,
            stats.unique_addresses,
            stats.named,
            stats.jit,
            started.elapsed().as_millis()
        );
        for mut s in stacks {
            s.thread = root_of.get(&s.id).copied();
            if let Some(tid) = s.thread {
                if !super::thread_root::trim(&mut s.frames) {
                    // Not read up to where it started: try again later.
                    log::debug!("thread {tid}: its stack memory does not reach start_thread");
                    continue;
                }
                // What roles are told from: the frames nearest its start.
                let near: Vec<&str> = s
                    .frames
                    .iter()
                    .rev()
                    .take(4)
                    .map(|f| f.name.as_deref().unwrap_or("?"))
                    .collect();
                log::debug!(
                    "thread {tid}: started in {} ({} frames, nearest its start: {})",
                    near.get(1).unwrap_or(&"?"),
                    s.frames.len(),
                    near.join(" > ")
                );
                self.roots_pending.remove(&tid);
                self.roots_done.insert(tid);
            }
            self.named.insert(s.id, s);
        }
    }

    /// The stack table: every stack the events name.
    fn table(&mut self, probes: &Probes, targets: &[(u32, &OwnedFd)]) -> Vec<Stack> {
        self.pending += 1;
        self.name_new(probes, targets);
        if self.lost > 0 {
            log::warn!(
                "{} sleeps lost a stack: the stack map was full (at most {} stacks), \
                 or every id the stack may take held another",
                self.lost,
                schedtrace_common::STACK_ENTRIES
            );
        }
        std::mem::take(&mut self.named).into_values().collect()
    }
}

impl Session {
    /// Check that the processes `sel` names can be traced, load and attach
    /// the programs with the filter armed for them, and give `out` the
    /// header and the threads found in `/proc`. A launched command (the one
    /// PID) stays at its gate until [`Self::run`].
    pub async fn start(
        sel: &Selected,
        launched: Option<Launched>,
        opts: &CaptureOptions,
        meta: &TraceMeta,
        out: &mut dyn Consumer,
    ) -> anyhow::Result<(Session, Started)> {
        let signals = StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        };
        let mut opened = Opened::open(sel, launched.is_some())?;
        let cgroup = opened.cgroup().map(|c| c.target());
        // A cgroup's processes' children stay in it: they are followed.
        // With `--all`, children are traced like every other task.
        let follow_children = (opts.follow_children || cgroup.is_some()) && !sel.all;
        let all_but = sel.all.then(std::process::id);
        let (pid, target_ino) = opened.first();
        let ncpus = procfs::possible_cpus();
        // Before attaching: reading kallsyms must not land in the trace.
        let names = if opts.wakeups {
            KernelNames::read()
        } else {
            KernelNames::default()
        };
        let mut probes = loader::load_and_attach(&LoadOptions {
            target_tgid: pid,
            target_ino,
            also: opened.also(),
            follow_children,
            cgroup: cgroup.as_ref().map(|c| c.id),
            comm: opened.comm(),
            all_but,
            ring_bytes: opts.ring_bytes,
            wakeup_bytes: u64::from(opts.ring_bytes / 4),
            wakeups: opts.wakeups,
            stacks: opts.stacks,
            antagonists: opts.antagonists,
            wait_reasons: opts.wait_reasons,
            ncpus: procfs::possible_cpus(),
            kernel_sums: opts.kernel_sums,
            verbose: opts.verbose,
        })?;
        // Not later: what happens from the last attachment on is complete
        // and in the window (loading freed megabytes of BTF since, for
        // milliseconds).
        let start_ns = probes.attached_ns;
        let mut entered = opened.add_cgroup_members()?;
        entered.extend(opened.add_named()?);
        probes.add_targets(&entered)?;
        let rooted = if opts.stacks {
            opened.pids()
        } else {
            Vec::new()
        };
        let (targets, threads, mut processes) = opened.attached(launched.is_some())?;
        let first = if processes.is_empty() {
            TargetProcess {
                pid: 0,
                comm: String::new(),
                ns_pid: None,
            }
        } else {
            processes.remove(0)
        };
        let comm = first.comm;
        let also = processes;
        let mut header = Header {
            version: 0,
            wall_clock_offset_ns: procfs::wall_clock_offset_ns(),
            ncpus,
            target_pid: pid,
            target_comm: comm.clone(),
            target_ns_pid: first.ns_pid,
            also: also.clone(),
            cgroup: cgroup.clone(),
            all_but,
            comm_pattern: sel.comm.clone(),
            command: meta.command.clone(),
            follow_children,
            wakeups: opts.wakeups,
            pinned_cpus: meta.pinned_cpus.clone(),
            kernel_release: procfs::kernel_release(),
            hostname: procfs::hostname(),
            tool_version: crate::version::long(),
            start_ns,
        };
        header.version = schema_version(&header);
        out.record(&Record::Header(Box::new(header)));
        for t in &threads {
            out.record(&Record::Thread(*t));
        }
        let counters = targets.counters();
        for c in &counters {
            out.record(&Record::Counters(*c));
        }
        // A trace killed from now on still has its header.
        out.flush();
        let order = if probes.can_mark() {
            Order::Marks { ncpus }
        } else {
            log::warn!(
                "the heartbeat program could not be loaded: events are put in order by \
                 holding them back {} ms, and the end of the trace is not checked",
                super::reorder::SLACK_NS / 1_000_000
            );
            Order::Slack
        };
        let ring = register(probes.events_take(), "the ring buffer")?;
        let logger = match probes.logger.take() {
            Some(l) => Some(register(l, "the log buffer")?),
            None => None,
        };
        let started = Started {
            pid,
            comm,
            ns_pid: first.ns_pid,
            also,
            cgroup: cgroup.clone(),
            comm_pattern: sel.comm.clone(),
            all: sel.all,
            command: meta.command.clone(),
            threads: threads.len(),
            ncpus,
            duration: opts.duration,
        };
        let mut session = Session {
            open_ended: cgroup.is_some() || sel.comm.is_some() || sel.all,
            launched,
            argv0: meta
                .command
                .as_ref()
                .and_then(|c| c.first().cloned())
                .unwrap_or_default(),
            duration: opts.duration,
            drain_interval: opts.drain_interval,
            start_ns,
            signals,
            probes,
            children_gone: Default::default(),
            beyond_window: 0,
            ring,
            targets,
            logger,
            reorder: Reorder::new(order),
            names,
            ncpus,
            last_beat: 0,
            decode_errors: 0,
            events: 0,
            released: 0,
            lost_seen: vec![0; ncpus as usize],
            missing: MissingSwitchIns::new(ncpus),
            stack_refs: StackRefs {
                rooted,
                ..Default::default()
            },
            sums: opts.kernel_sums.then(|| KernelSums {
                start_ns,
                start: counters.clone(),
                ncpus,
                occupancy: OccupancyFold::new(start_ns, ncpus),
                ..Default::default()
            }),
        };
        for c in &counters {
            session.missing.snapshot(c);
        }
        Ok((session, started))
    }

    /// Release a launched command, then read the ring buffer every drain
    /// interval (or when the kernel wakes us) into `out` until a stop
    /// signal, the duration, a consumer's [`Flow::Stop`] or the target's
    /// exit.
    pub async fn run(&mut self, out: &mut dyn Consumer) -> anyhow::Result<StopReason> {
        let mut window = Window::new(out, self.window_end());
        let r = self.run_in(&mut window).await;
        self.beyond_window += window.beyond;
        r
    }

    /// The end of the window `--duration` sets, if any: events after it
    /// (read before schedtrace got the CPU to detach) are not part of the
    /// trace.
    fn window_end(&self) -> u64 {
        self.duration.map_or(u64::MAX, |d| {
            self.start_ns
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        })
    }

    async fn run_in(&mut self, out: &mut dyn Consumer) -> anyhow::Result<StopReason> {
        if let Some(l) = self.launched.as_mut() {
            l.release(&self.argv0)?;
        }
        let mut tick = tokio::time::interval(self.drain_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let duration = self.duration;
        let deadline = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut exited_at: Option<tokio::time::Instant> = None;
        let started = tokio::time::Instant::now();
        let mut last_progress = started;
        let mut last_flush = started;
        let mut last_sweep = started;
        let mut last_named = started;
        loop {
            let mut stop = None;
            tokio::select! {
                _ = tick.tick() => {}
                r = self.ring.readable_mut() => { r?.clear_ready(); }
                _ = self.signals.int.recv() => stop = Some(StopReason::Signal("SIGINT")),
                _ = self.signals.term.recv() => stop = Some(StopReason::Signal("SIGTERM")),
                _ = self.signals.hup.recv() => stop = Some(StopReason::Signal("SIGHUP")),
                () = &mut deadline => stop = Some(StopReason::Duration),
                r = self.targets.next_exit(), if exited_at.is_none() => {
                    r?;
                    if self.targets.all_exited() && !self.open_ended {
                        exited_at = Some(tokio::time::Instant::now());
                    }
                }
                r = async { self.logger.as_mut().expect("guarded").readable_mut().await }, if self.logger.is_some() => {
                    let mut g = r?;
                    g.get_inner_mut().flush();
                    g.clear_ready();
                }
            }
            let lost_now = self.read_ring(out);
            if last_flush.elapsed() >= FLUSH_EVERY {
                last_flush = tokio::time::Instant::now();
                out.flush();
            }
            if self.stack_refs.due() && last_named.elapsed() >= NAME_STACKS_EVERY {
                last_named = tokio::time::Instant::now();
                let targets = self.targets.fds();
                self.stack_refs.name_new(&self.probes, &targets);
            }
            if last_sweep.elapsed() >= CHILDREN_SWEEP_EVERY {
                last_sweep = tokio::time::Instant::now();
                self.sweep_children();
                self.drain_sums_ended();
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = tokio::time::Instant::now();
                let elapsed = started.elapsed();
                let flow = out.progress(&Progress {
                    elapsed,
                    events: self.events,
                    lost: lost_now,
                    rate: self.events as f64 / elapsed.as_secs_f64().max(1e-9),
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
                return Ok(s);
            }
        }
    }

    /// Detach, then give `out` what the ring buffer and the CPUs' stages
    /// still hold and the end record; reap a launched command (stopping it
    /// if it is still running). A second stop signal cuts this short and
    /// marks the trace incomplete.
    ///
    /// The window ends just before the first program is detached: detaching
    /// takes a while (each link goes through an RCU grace period; tens of
    /// milliseconds on a busy machine), and a program detached early would
    /// otherwise leave the window's last stretch silently without its
    /// events. Records time-stamped after the end are dropped. Every CPU
    /// then writes its stage and a mark (the heartbeat still runs with the
    /// programs detached), so the end is provably complete; a CPU whose
    /// mark does not reach the end is reported as a gap.
    pub fn finish(mut self, reason: StopReason, out: &mut dyn Consumer) -> anyhow::Result<Outcome> {
        // The counters of every thread while the probes still run: a run
        // in progress at the end is measured up to here by the kernel. The
        // processes followed or joined since the start too: their last
        // run may lack its switch-in, and only these counters then have
        // the wait before it.
        let mut counters = self.targets.counters();
        if let Some(map) = &self.probes.children {
            let followed: Vec<(u32, u64)> = map.iter().filter_map(Result::ok).collect();
            counters.extend(self.targets.followed_counters(followed));
        }
        let _second_signal = arm_second_signal();
        // The window ends now, before detaching; `--duration` is its
        // length, however late we got the CPU to stop.
        let window_end = self.window_end();
        let end_ns = procfs::monotonic_ns().min(window_end);
        self.probes.detach();
        let mut window = Window::new(out, window_end);
        let out = &mut window;
        // Detaching does not wait for a program already running on another CPU;
        // give it time to finish before the ring buffer and the stages are read.
        std::thread::sleep(SETTLE);
        test_hook_slow_finish();
        // The programs stay loaded after detaching: every run they missed is counted.
        let recursion_misses = self.probes.recursion_misses();
        self.last_marks(end_ns);
        self.drain(out, None, false);
        match self.probes.staged_events() {
            Ok(staged) => {
                let mut taker = self.taker();
                for raw in &staged {
                    taker.take(raw);
                }
            }
            Err(e) => log::warn!("{e:#}: the last few events of each CPU are missing"),
        }
        let lost_per_cpu = self.emit_lost(out);
        let gaps = self.gaps(end_ns);
        self.release_all(out, end_ns);
        if self.probes.stacks.is_some() && !aborted() {
            // While the traced processes (and their perf maps) are still there.
            let targets = self.targets.fds();
            for s in self.stack_refs.table(&self.probes, &targets) {
                out.record(&Record::Stack(s));
            }
        }
        for c in &counters {
            out.record(&Record::Counters(*c));
        }
        if let Some(mut l) = self.logger.take() {
            l.get_mut().flush();
        }
        let kernel_sums = self.read_sums(&counters, end_ns);
        let ordering = self.ordering(gaps);
        let complete = !aborted() && ordering.gaps.is_empty();
        let mut why = reason.as_str();
        if aborted() {
            why.push_str(", then interrupted while finishing");
        }
        // Interrupted, the last reads were cut short: that, not a gap, is why.
        if !ordering.gaps.is_empty() && !aborted() {
            why.push_str(", then a CPU's last events could not be accounted for");
        }
        self.beyond_window += out.beyond;
        if self.beyond_window > 0 {
            log::debug!(
                "{} events after the end of --duration left out of the trace",
                self.beyond_window
            );
        }
        let end = End {
            end_ns,
            events: self.released.saturating_sub(self.beyond_window),
            lost_events: lost_per_cpu.iter().sum(),
            lost_per_cpu,
            complete,
            reason: why,
            ordering,
            missing_switch_ins_per_cpu: self.missing.per_cpu.clone(),
            recursion_misses,
            lost_processes: self.probes.lost_processes(),
        };
        out.record(&Record::End(end.clone()));
        let child_status = match self.launched.as_mut() {
            Some(l) if reason == StopReason::TargetExited => Some(l.wait()?),
            Some(l) => Some(l.stop(Duration::from_secs(2))?),
            None => None,
        };
        Ok(Outcome {
            reason,
            end,
            interrupted: aborted(),
            child_status,
            kernel_sums,
        })
    }

    /// `--kernel-sums`: take the ended threads' sums out of the kernel's
    /// map, which has room for a few thousand.
    fn drain_sums_ended(&mut self) {
        if let (Some(maps), Some(sums)) = (self.probes.sums.as_mut(), self.sums.as_mut()) {
            maps.drain_ended(&mut sums.ended);
        }
    }

    /// `--kernel-sums`, once the programs are detached: the sums of the
    /// threads still there (`end`, their counters) and of those that ended.
    fn read_sums(&mut self, end: &[ThreadCounters], end_ns: u64) -> Option<KernelSums> {
        self.drain_sums_ended();
        let mut sums = self.sums.take()?;
        let maps = self.probes.sums.as_ref()?;
        sums.end_ns = end_ns;
        sums.end = end.to_vec();
        for c in end {
            let read = match maps.of_thread(c.tid) {
                Ok(v) => v,
                Err(e) => {
                    log::warn!("{e:#}");
                    sums.lost += 1;
                    None
                }
            };
            let stat = std::fs::read_to_string(format!("/proc/{}/task/{}/stat", c.tgid, c.tid))
                .ok()
                .and_then(|t| procfs::parse_stat(&t));
            sums.live.push(LiveSums {
                tid: c.tid,
                tgid: c.tgid,
                comm: stat.as_ref().map(|s| s.comm.clone()).unwrap_or_default(),
                sums: read,
                cpu: stat.map(|s| s.processor),
            });
        }
        let counted = |c| self.probes.lost_per_cpu(c).iter().sum::<u64>();
        sums.lost += counted(schedtrace_common::counter::LOST_SUMS);
        sums.missed = counted(schedtrace_common::counter::MISSED_SUMS);
        self.name_wakers(&mut sums);
        Some(sums)
    }

    /// Name the timer callbacks and device interrupts among the wakers
    /// the sums count.
    fn name_wakers(&self, sums: &mut KernelSums) {
        let all = sums
            .live
            .iter()
            .filter_map(|l| l.sums.as_ref())
            .chain(sums.ended.iter().map(|e| &e.sums));
        for slot in all.flat_map(|s| s.wakers.iter()).filter(|w| w.count != 0) {
            let flags = slot.flags as u16;
            if flags & schedtrace_common::FLAG_CTX_FUNCTION != 0 {
                if let Some(f) = self.names.function(slot.id) {
                    sums.names.functions.insert(slot.id, f);
                }
            } else if flags & schedtrace_common::FLAG_CTX_DETAIL != 0
                && flags & schedtrace_common::ctx::MASK
                    == schedtrace_common::ctx::HARDIRQ << schedtrace_common::ctx::SHIFT
            {
                let irq = slot.id as u32;
                if let Some(n) = self.names.irq(irq) {
                    sums.names.irqs.insert(irq, n);
                }
            }
        }
    }

    /// The last heartbeat: with the programs detached, nothing holds a
    /// stage for long, so every CPU writes its stage and a mark past
    /// `end_ns` (an offline CPU has nothing to write).
    fn last_marks(&mut self, end_ns: u64) {
        if self.reorder.order() == Order::Slack {
            return;
        }
        for cpu in 0..self.ncpus {
            for _ in 0..LAST_MARK_TRIES {
                match self.probes.mark(cpu) {
                    Ok(Mark::Written) => break,
                    Ok(Mark::Offline) => {
                        self.reorder.mark(cpu, end_ns);
                        break;
                    }
                    Ok(Mark::NotNow) => std::thread::sleep(SETTLE),
                    Err(e) => {
                        log::warn!("{e:#}");
                        break;
                    }
                }
            }
        }
    }

    /// CPUs whose events cannot be shown complete up to `end_ns`: their
    /// last mark is older (only with marks; otherwise nothing is known).
    fn gaps(&self, end_ns: u64) -> Vec<Gap> {
        if self.reorder.order() == Order::Slack {
            return Vec::new();
        }
        (0..self.ncpus)
            .filter_map(|cpu| {
                let from_ns = self.reorder.mark_of(cpu);
                (from_ns < end_ns).then_some(Gap {
                    cpu,
                    from_ns,
                    to_ns: end_ns,
                })
            })
            .collect()
    }

    /// How the events were ordered, and what was late (logged too).
    fn ordering(&self, gaps: Vec<Gap>) -> Ordering {
        log::debug!("reorder queues: {} KiB", self.reorder.queued_bytes() / 1024);
        let late = self.reorder.late();
        if late > 0 {
            log::warn!("{late} events arrived after newer ones had been passed on");
        }
        if self.reorder.forced() > 0 {
            log::warn!(
                "{} times a CPU's events were passed on without its progress mark",
                self.reorder.forced()
            );
        }
        for g in &gaps {
            log::warn!(
                "CPU {}: no progress mark after {} ns before the end of the trace; its \
                 events after that may be missing",
                g.cpu,
                g.to_ns - g.from_ns
            );
        }
        let mut late_per_cpu = self.reorder.late_per_cpu().to_vec();
        late_per_cpu.resize(late_per_cpu.len().max(self.ncpus as usize), 0);
        Ordering {
            method: Some(match self.reorder.order() {
                Order::Marks { .. } => OrderMethod::Marks,
                Order::Slack => OrderMethod::Slack,
            }),
            late_per_cpu,
            gaps,
        }
    }

    /// Read what the ring buffer holds, write new losses, release the
    /// events that are ready; returns the losses so far. First, the CPUs
    /// that have not marked their progress since the last time are asked
    /// to (the heartbeat), so that their marks are in what is read.
    fn read_ring(&mut self, out: &mut dyn Consumer) -> u64 {
        self.heartbeat();
        self.drain(out, Some(std::time::Instant::now() + DRAIN_SLICE), true);
        let lost_now: u64 = self.emit_lost(out).iter().sum();
        self.release_ready(out);
        lost_now
    }

    /// Remove from the kernel's map of further targets those that have
    /// ended (their PID gone, or another process's now) at two sweeps in a
    /// row: the map holds `MAX_CHILDREN`, and a long `make -j` forks more.
    /// The program removes most itself, at a process's last final
    /// switch-out; this catches the rest (on a kernel without pidfs, or
    /// when the program's map of exiting threads had to give way).
    fn sweep_children(&mut self) {
        let Some(map) = self.probes.children.as_mut() else {
            return;
        };
        let entries: Vec<(u32, u64)> = map.iter().filter_map(Result::ok).collect();
        let mut gone = std::collections::HashSet::new();
        for (tgid, ino) in entries {
            let ended = match ProcessHandle::open(tgid) {
                Err(_) => true,
                Ok(h) => ino != 0 && h.ino() != Some(ino),
            };
            if !ended {
                continue;
            }
            if self.children_gone.contains(&tgid) {
                let _ = map.remove(&tgid);
            } else {
                gone.insert(tgid);
            }
        }
        self.children_gone = gone;
    }

    /// Have every CPU that has marked no progress since the last round
    /// write its stage and a mark. A CPU running the target's threads
    /// marks by itself whenever it writes its stage out (within a few
    /// milliseconds); an idle one, or one running other processes, gets
    /// an IPI. Falls back to holding events back if the kernel refuses.
    fn heartbeat(&mut self) {
        if self.reorder.order() == Order::Slack {
            return;
        }
        let now = procfs::monotonic_ns();
        for cpu in 0..self.ncpus {
            if self.reorder.mark_of(cpu) > self.last_beat {
                continue;
            }
            match self.probes.mark(cpu) {
                Ok(Mark::Written | Mark::NotNow) => {}
                // Nothing can come from it: it has passed `now` already.
                Ok(Mark::Offline) => self.reorder.mark(cpu, now),
                Err(e) => {
                    log::warn!(
                        "{e:#}: events are put in order by holding them back {} ms from now on",
                        super::reorder::SLACK_NS / 1_000_000
                    );
                    self.reorder.fall_back_to_slack();
                    return;
                }
            }
        }
        self.last_beat = now;
    }

    /// Read what the ring buffer holds into the reorder buffer until it is
    /// empty or (with a `deadline`) that time has come, releasing the events
    /// that are ready to `out` as it goes if `releasing` (not once the
    /// window's end is known: the end decides what is released).
    fn drain(
        &mut self,
        out: &mut dyn Consumer,
        deadline: Option<std::time::Instant>,
        releasing: bool,
    ) {
        let size = size_of::<RawEvent>();
        let mut n = 0u64;
        while !aborted() {
            let before = n;
            {
                // Decoded where the kernel wrote them: the ring lends the
                // record while the session's other parts take it.
                let (ring, mut taker) = self.ring_and_taker();
                let Some(item) = ring.get_mut().next() else {
                    break;
                };
                // A record is one event or a CPU's batch of them (see `Stage`).
                if item.is_empty() || item.len() % size != 0 {
                    taker.undecodable(&DecodeError::Size(item.len(), size));
                    continue;
                }
                let mut last = None;
                for chunk in item.chunks_exact(size) {
                    let raw = raw_event(chunk);
                    n += u64::from(taker.take(&raw));
                    last = Some((raw.kind, raw.flags, raw.cpu, raw.ts_ns));
                }
                // A stage written out marks its CPU's progress up to its last record.
                if let Some((k, flags, cpu, ts)) = last
                    && k != kind::MARK
                    && flags & FLAG_DIRECT == 0
                {
                    taker.reorder.mark(cpu, ts);
                }
            }
            if releasing && n / RELEASE_EVERY != before / RELEASE_EVERY {
                self.release_ready(out);
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    break;
                }
            }
        }
    }

    /// What taking a raw record touches (outside the ring buffer).
    fn taker(&mut self) -> Taker<'_> {
        self.ring_and_taker().1
    }

    /// The ring buffer, and apart from it what taking its records touches
    /// (split borrows: a record the ring lends is taken while it is held).
    fn ring_and_taker(&mut self) -> (&mut AsyncFd<RingBuf<MapData>>, Taker<'_>) {
        let taker = Taker {
            reorder: &mut self.reorder,
            names: &self.names,
            stack_refs: &mut self.stack_refs,
            events: &mut self.events,
            decode_errors: &mut self.decode_errors,
            occupancy: self.sums.as_mut().map(|s| &mut s.occupancy),
        };
        (&mut self.ring, taker)
    }

    /// Hand the events known to be in order to `out`.
    fn release_ready(&mut self, out: &mut dyn Consumer) {
        if let Some(s) = self.sums.as_mut() {
            s.occupancy.fold_until(self.reorder.complete_until());
        }
        let (released, missing) = (&mut self.released, &mut self.missing);
        self.reorder.drain_ready(|e| {
            *released += 1;
            missing.see(e);
            release(out, e);
        });
    }

    /// Hand every event up to `end_ns` to `out`; later ones (time-stamped
    /// while the programs were being detached) are dropped.
    fn release_all(&mut self, out: &mut dyn Consumer, end_ns: u64) {
        let (released, missing, mut dropped) = (&mut self.released, &mut self.missing, 0u64);
        self.reorder.drain_all(|e| {
            if e.ts <= end_ns {
                *released += 1;
                missing.see(e);
                release(out, e);
            } else {
                dropped += 1;
            }
        });
        if dropped > 0 {
            log::debug!("{dropped} events after the end of the window (while detaching) dropped");
        }
    }

    /// Give `out` a `lost` record for each CPU whose count of lost records
    /// grew; returns the counts per CPU.
    fn emit_lost(&mut self, out: &mut dyn Consumer) -> Vec<u64> {
        let now = procfs::monotonic_ns();
        for (cpu, v) in self.probes.lost_events_per_cpu().into_iter().enumerate() {
            if cpu >= self.lost_seen.len() {
                self.lost_seen.resize(cpu + 1, 0);
            }
            if v > self.lost_seen[cpu] {
                out.record(&Record::Lost(Lost {
                    ts: now,
                    cpu: cpu as u32,
                    count: v - self.lost_seen[cpu],
                }));
                self.lost_seen[cpu] = v;
            }
        }
        self.lost_seen.clone()
    }
}

/// What taking a raw record touches: the session's parts other than the
/// ring buffer, which lends the record being read meanwhile.
struct Taker<'a> {
    reorder: &'a mut Reorder,
    names: &'a KernelNames,
    stack_refs: &'a mut StackRefs,
    /// Events read from the kernel so far.
    events: &'a mut u64,
    decode_errors: &'a mut u64,
    /// `--kernel-sums`: where the CPUs' occupancy records go (they are
    /// not events).
    occupancy: Option<&'a mut OccupancyFold>,
}

impl Taker<'_> {
    /// One raw record into the reorder buffer (a mark into the CPU's
    /// progress); true for an event.
    fn take(&mut self, raw: &RawEvent) -> bool {
        if raw.kind == kind::MARK {
            self.reorder.mark(raw.cpu, raw.ts_ns);
            return false;
        }
        if raw.kind == kind::OCCUPY {
            if let Some(o) = self.occupancy.as_mut() {
                o.push(Occupancy {
                    ts: raw.ts_ns,
                    cpu: raw.cpu,
                    before: (raw.aux0 != 0).then_some(raw.aux0),
                    after: (raw.aux1 != 0).then_some(raw.aux1),
                });
            }
            return false;
        }
        *self.events += 1;
        match Event::try_from(raw) {
            Ok(mut e) => {
                self.name(&mut e, raw);
                self.stack_refs.note(&e);
                self.reorder.push(e);
            }
            Err(err) => self.undecodable(&err),
        }
        true
    }

    /// Name the timer callback or device interrupt behind a wakeup.
    fn name(&self, e: &mut Event, raw: &RawEvent) {
        let EventKind::Wakeup { context, .. } = &mut e.kind else {
            return;
        };
        match context {
            WakeContext::Timer { function, .. } => {
                *function = hrtimer_address(raw).and_then(|a| self.names.function(a));
            }
            WakeContext::Hardirq {
                irq: Some(irq),
                name,
            } => *name = self.names.irq(*irq),
            _ => {}
        }
    }

    fn undecodable(&mut self, err: &DecodeError) {
        *self.decode_errors += 1;
        if *self.decode_errors == 1 {
            log::warn!("undecodable ring-buffer record: {err}");
        }
    }
}

/// The raw event a ring-buffer chunk of `size_of::<RawEvent>()` bytes
/// holds: read where it lies when it is aligned (ring-buffer records are,
/// to 8 bytes), so that it is not copied first; copied otherwise.
fn raw_event(chunk: &[u8]) -> std::borrow::Cow<'_, RawEvent> {
    assert_eq!(chunk.len(), size_of::<RawEvent>());
    let ptr = chunk.as_ptr().cast::<RawEvent>();
    if ptr.is_aligned() {
        // SAFETY: the chunk is `size_of::<RawEvent>()` bytes at an aligned
        // address, every bit pattern is a valid RawEvent (plain old data:
        // integers and byte arrays), and the reference borrows the chunk,
        // which the kernel does not write while the record is being read.
        std::borrow::Cow::Borrowed(unsafe { &*ptr })
    } else {
        // SAFETY: as above; read_unaligned copes with any alignment.
        std::borrow::Cow::Owned(unsafe { std::ptr::read_unaligned(ptr) })
    }
}

/// Hands `inner` the records of the window: events after `until` (the end
/// of `--duration`) are counted and left out.
struct Window<'a> {
    inner: &'a mut dyn Consumer,
    until: u64,
    beyond: u64,
}

impl<'a> Window<'a> {
    fn new(inner: &'a mut dyn Consumer, until: u64) -> Self {
        Window {
            inner,
            until,
            beyond: 0,
        }
    }
}

impl Consumer for Window<'_> {
    fn record(&mut self, r: &Record) {
        match r {
            Record::Event(e) => self.event(e),
            _ => self.inner.record(r),
        }
    }

    fn event(&mut self, e: &Event) {
        if e.ts > self.until {
            self.beyond += 1;
            return;
        }
        self.inner.event(e);
    }

    fn progress(&mut self, p: &Progress) -> Flow {
        self.inner.progress(p)
    }

    fn flush(&mut self) {
        self.inner.flush();
    }
}

/// Counts, per CPU, the switch-ins of traced threads that the kernel made
/// and its tracepoint stream lacked. A traced thread's switch records carry
/// its switch-in count (`sched_info.pcount`: at a switch-out, this run's
/// included; at a switch-in, once it is counted), so a switch-out whose
/// count is ahead of the thread's previous record is that many switch-ins
/// short; they ran on the switch-out's CPU (the last of them, at least).
/// The `/proc` snapshot at the start gives each thread's first count.
struct MissingSwitchIns {
    /// TID -> its switch-in count at its latest record (low 32 bits).
    pcount: crate::tid::TidMap<u32>,
    per_cpu: Vec<u64>,
}

impl MissingSwitchIns {
    fn new(ncpus: u32) -> Self {
        MissingSwitchIns {
            pcount: Default::default(),
            per_cpu: vec![0; ncpus as usize],
        }
    }

    fn snapshot(&mut self, c: &ThreadCounters) {
        self.pcount.entry(c.tid).or_insert(c.pcount as u32);
    }

    fn see(&mut self, e: &Event) {
        let EventKind::Switch {
            prev,
            next,
            counters,
            prev_state,
            preempt,
            ..
        } = e.kind
        else {
            return;
        };
        if let Some(p) = counters.prev.and_then(|c| c.pcount) {
            if let Some(before) = self.pcount.insert(prev.tid, p) {
                // Counts only grow; a snapshot read after this record was
                // made reads ahead of it (a "negative" difference).
                let missing = p.wrapping_sub(before);
                if missing > 0 && missing < 1 << 31 {
                    let cpu = e.cpu as usize;
                    if self.per_cpu.len() <= cpu {
                        self.per_cpu.resize(cpu + 1, 0);
                    }
                    self.per_cpu[cpu] += u64::from(missing);
                }
            }
            if SwitchReason::decode(prev_state, preempt) == SwitchReason::Dead {
                self.pcount.remove(&prev.tid);
            }
        }
        if let Some(p) = counters.next.and_then(|c| c.pcount) {
            self.pcount.insert(next.tid, p);
        }
    }
}

/// Hand an event that left the reorder buffer to `out` (where it is held:
/// see [`Consumer::event`]), unless a second stop signal asked to finish
/// at once.
fn release(out: &mut dyn Consumer, e: &Event) {
    if !aborted() {
        out.event(e);
    }
}

/// Register `inner`'s descriptor with the runtime for readability.
pub(super) fn register<T: AsRawFd>(inner: T, what: &str) -> anyhow::Result<AsyncFd<T>> {
    // SAFETY: the AsyncFd owns `inner`, so the descriptor stays open for as
    // long as it is registered and is closed only after deregistration.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering {what} with the runtime: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TARGET, switch, task, with_off};

    /// A thread of a rooted process that goes to sleep is to have its
    /// stack memory read, whether or not the kernel's map held its user
    /// stack; one preempted is not (its stack pointer is anywhere).
    #[test]
    fn a_sleep_whose_user_stack_the_map_lost_still_gets_its_stack_memory_read() {
        let mut refs = StackRefs {
            rooted: vec![TARGET],
            ..Default::default()
        };
        // TID 101 sleeps (state 1) with its kernel stack but no user stack:
        // the map lost it (its slot held another stack).
        let mut lost = with_off(
            switch(10, 0, task(101), 1, task(0)),
            Some("futex"),
            Some(3),
            None,
        );
        if let EventKind::Switch {
            prev_off: Some(o), ..
        } = &mut lost.kind
        {
            o.stack_lost = true;
        }
        refs.note(&lost);
        // TID 102 is preempted (state 0): no stacks are taken.
        let preempted = with_off(switch(20, 1, task(102), 0, task(0)), None, None, None);
        refs.note(&preempted);
        // A stranger sleeps with both stacks.
        let stranger = with_off(
            switch(30, 1, task(300), 1, task(0)),
            Some("read"),
            Some(4),
            Some(5),
        );
        refs.note(&stranger);
        assert_eq!(
            refs.roots_pending.keys().copied().collect::<Vec<_>>(),
            vec![101]
        );
        assert_eq!(refs.lost, 1);
        assert_eq!(refs.ids.len(), 3, "{:?}", refs.ids);
    }

    /// A process not rooted has none of its threads' stack memory read
    /// (without `--stacks` none is: `Session::start` roots none).
    #[test]
    fn nothing_is_read_of_a_process_not_rooted() {
        let mut refs = StackRefs::default();
        let sleep = with_off(
            switch(10, 0, task(101), 1, task(0)),
            Some("futex"),
            None,
            None,
        );
        refs.note(&sleep);
        assert!(refs.roots_pending.is_empty());
        assert!(!refs.due());
    }
}
