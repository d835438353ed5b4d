//! Closing the window: the open states are charged up to its end, and the
//! summary (per thread, per process, for all traced threads) and the
//! timeline are built from the tracks.

use std::collections::{BTreeMap, HashMap};

use super::antagonists::{Holder, HolderTimes};
use super::histogram::Histogram;
use super::process::ProcAcc;
use super::roles::{RoleInput, roles};
use super::summary::{
    Antagonists, DelayStats, HolderTime, NO_END_RECORD, OffCpuTime, ProcessSummary, Selection,
    StackTime, StateTimes, Summary, ThreadSummary, Waker,
};
use super::thread::ThreadTrack;
use super::timeline::{Timeline, TimelineThread};
use super::{Analyzer, State, TOP_WAKERS, overlap, placer};
use crate::event::WakeContext;
use crate::trace::{Header, Stack, StackKind};

/// Tasks listed per thread as preempting it or holding its CPU.
pub(crate) const TOP_ANTAGONISTS: usize = 5;
/// Chains listed per thread.
pub(crate) const TOP_CHAINS: usize = 3;

impl Analyzer {
    /// Close the window and build the summary (and the timeline if kept).
    pub fn finish(mut self) -> (Summary, Option<Timeline>) {
        self.close_window();
        let timeline = self.take_timeline();
        let summary = self.summary();
        (summary, timeline)
    }

    /// Let the placer and the prelude hand over what they hold, and charge
    /// every thread's state up to the window's end.
    fn close_window(&mut self) {
        if let Some(p) = &self.placer {
            // What the placer held at most, for memory checks.
            log::debug!("analysis: held events: {} KiB", p.held_bytes() / 1024);
        }
        if let Some(mut p) = self.placer.take() {
            p.finish(&mut |i| self.item(i));
        }
        self.finish_prelude();
        if self.late_waits > 0 {
            log::info!(
                "{} waits longer than {} ms: counted in full for their threads, \
                 but not in the process's time-sliced figure",
                self.late_waits,
                placer::LAG_NS / 1_000_000
            );
        }
        if self.window_end == u64::MAX {
            // No end record (a cut trace): end at the last event, or where
            // the window starts if every event came before it.
            self.window_end = self.clock.max(self.window_start);
            self.edge_at = None;
        }
        let window_end = self.window_end;
        self.advance(window_end);
        // What holds each CPU at the end is shown up to there.
        if let Some(tl) = &mut self.timeline {
            for mut h in self.cpus.open_at(window_end) {
                let traced = matches!(h.holder, Holder::Task(o) if self.traced.contains(&o.tgid));
                h.start = h.start.max(self.window_start);
                if !traced && h.start < h.end {
                    tl.holds.push(h);
                }
            }
        }
        let live: Vec<u32> = self.tracks_in_order().iter().map(|t| t.tid).collect();
        for tid in live {
            if let Some(t) = self.threads.get_mut(&tid) {
                let state = t.state;
                if state.is_running() && t.since < window_end {
                    // The slice still open at the end counts as a slice.
                    t.slices += 1;
                    t.longest_slice_ns = t
                        .longest_slice_ns
                        .max(window_end.saturating_sub(t.since.max(self.window_start)));
                }
                if state == State::Runnable
                    && t.since < window_end
                    && !t.kernel.waits
                    && t.kernel.end_wait.is_none()
                {
                    // So does a wait still under way, up to the end, when
                    // the runnable time has it: when it is charged by the
                    // timestamps (from the kernel's run delay, it is not
                    // there: the kernel adds a wait at its end). With
                    // `--until`, one that ends later is recorded at its
                    // switch-in.
                    let wait = overlap(self.window_start, window_end, t.since, window_end);
                    t.record_wait(wait);
                    if let Some(p) = t.preempter.take() {
                        t.preempted_by.add(p, wait, 0);
                    }
                }
                self.transition(tid, state, window_end);
            }
        }
        // Every process's time is accounted up to the end.
        let window = self.window();
        for acc in self.procs.values_mut() {
            acc.catch_up(window, window.end);
        }
        self.total.catch_up(window, window.end);
        // A process is named after its main thread's latest name.
        let threads = &self.threads;
        self.procs
            .rename(|tgid| threads.get(&tgid).map(|leader| leader.comm));
    }

    /// The summary of the closed window (the ended threads' summaries move
    /// into it).
    fn summary(&mut self) -> Summary {
        let window = self.window_end.saturating_sub(self.window_start);
        let header = self.header.clone().unwrap_or_else(|| self.headerless());
        let mut threads = self.thread_summaries(window);
        let stack_table = self.stack_table(&threads);
        let found = roles(&self.role_inputs(&threads, &stack_table));
        for t in &mut threads {
            t.role = found.get(&t.tid).cloned().map(Box::new);
        }
        let (selection, anomalies) = self.select(&mut threads);

        let processes = self.process_summaries(&threads, window, selection.as_ref());
        let total = self.total_summary(&header, &processes, &threads, window);
        let total_comm = total.comm.clone();

        let end = self.end.as_ref();
        // Saturating: a file can claim any counts.
        let lost_events = self.lost.iter().fold(0u64, |a, &b| a.saturating_add(b));
        Summary {
            target_pid: header.target_pid,
            target_comm: total_comm,
            target_ns_pid: header.target_ns_pid,
            also: header.also,
            cgroup: header.cgroup,
            all_but: header.all_but,
            comm_pattern: header.comm_pattern,
            command: header.command,
            pinned_cpus: header.pinned_cpus,
            follow_children: header.follow_children,
            wakeups: header.wakeups,
            ncpus: self.ncpus,
            kernel_release: header.kernel_release,
            hostname: header.hostname,
            wall_clock_offset_ns: header.wall_clock_offset_ns,
            window_start_ns: self.window_start,
            window_end_ns: self.window_end,
            window_ns: window,
            events: self.events,
            lost_events: end.map_or(lost_events, |e| e.lost_events.max(lost_events)),
            lost_per_cpu: end
                .filter(|e| !e.lost_per_cpu.is_empty())
                .map_or_else(|| self.lost.clone(), |e| e.lost_per_cpu.clone()),
            lost_processes: end.map_or(0, |e| e.lost_processes),
            complete: end.is_some_and(|e| e.complete),
            stop_reason: end.map_or_else(|| NO_END_RECORD.to_string(), |e| e.reason.clone()),
            anomalies,
            kernel_counters: self.kernel_counters,
            inferred_per_cpu: per_cpu(&self.inferred_per_cpu, self.ncpus),
            missing_switch_ins_per_cpu: end
                .map(|e| e.missing_switch_ins_per_cpu.clone())
                .unwrap_or_default(),
            missing_wakeups_per_cpu: per_cpu(&self.missing_wakeups, self.ncpus),
            unplaced_runs: self.unplaced_runs,
            recursion_misses: end.and_then(|e| e.recursion_misses),
            lost_stacks: self.lost_stacks,
            late_per_cpu: end
                .map(|e| e.ordering.late_per_cpu.clone())
                .unwrap_or_default(),
            end_gaps: end.map(|e| e.ordering.gaps.clone()).unwrap_or_default(),
            total,
            processes,
            threads,
            selection,
            stack_table,
            kernel_names: self.kernel_names(),
        }
    }

    /// Every thread's summary (the ended threads' moved, not copied),
    /// most on-CPU time first.
    fn thread_summaries(&mut self, window: u64) -> Vec<ThreadSummary> {
        // Collected in place: the ended threads' buffer becomes the
        // summaries' (a second copy would double the peak memory that a
        // churn of short-lived threads costs).
        let mut threads: Vec<ThreadSummary> = std::mem::take(&mut self.ended)
            .into_iter()
            .map(|(_, mut t)| {
                t.share = share(t.on_cpu_ns, window);
                t
            })
            .collect();
        threads.extend(
            self.tracks_in_order()
                .into_iter()
                .filter(|t| t.lifetime_ns() > 0 || t.voluntary + t.involuntary > 0)
                .map(|t| thread_summary(t, window)),
        );
        // Unstable (no scratch copy of the summaries); a reused TID ties
        // only with an earlier life, which its creation time orders.
        threads.sort_unstable_by(|a, b| {
            b.on_cpu_ns
                .cmp(&a.on_cpu_ns)
                .then(a.tid.cmp(&b.tid))
                .then(a.created_ns.cmp(&b.created_ns))
                .then(a.exited_ns.cmp(&b.exited_ns))
        });
        threads
    }

    /// The selection of threads (`--tid`, `--comm`...), if any, applied to
    /// `threads`; with the anomalies counted, over the selected threads
    /// only when there is one.
    fn select(&self, threads: &mut Vec<ThreadSummary>) -> (Option<Selection>, u64) {
        let selection = self.opts.selection.clone().map(|mut s| {
            s.of_threads = threads.len() as u64;
            s
        });
        let mut anomalies = self.anomalies;
        if let Some(s) = &selection {
            threads.retain(|t| s.tids.contains(&t.tid));
            anomalies = threads
                .iter()
                .fold(0u64, |a, t| a.saturating_add(t.anomalies));
        }
        (selection, anomalies)
    }

    /// Each process's summary: of those with a selected thread, if there
    /// is a selection.
    fn process_summaries(
        &self,
        threads: &[ThreadSummary],
        window: u64,
        selection: Option<&Selection>,
    ) -> Vec<ProcessSummary> {
        self.procs
            .iter()
            .filter(|&(tgid, _)| selection.is_none() || threads.iter().any(|t| t.tgid == tgid))
            .map(|(tgid, acc)| process_summary(tgid, acc, threads, window, |t| t.tgid == tgid))
            .collect()
    }

    /// The summary of all the traced threads together, named after the
    /// target process.
    fn total_summary(
        &self,
        header: &Header,
        processes: &[ProcessSummary],
        threads: &[ThreadSummary],
        window: u64,
    ) -> ProcessSummary {
        let root_comm = processes
            .iter()
            .find(|p| p.tgid == header.target_pid)
            .map(|p| p.comm.clone())
            .unwrap_or_else(|| header.target_comm.clone());
        let mut total = process_summary(header.target_pid, &self.total, threads, window, |_| true);
        total.comm = root_comm;
        total
    }

    /// The stacks the threads' off-CPU time refers to.
    fn stack_table(&self, threads: &[ThreadSummary]) -> BTreeMap<u32, Stack> {
        threads
            .iter()
            .flat_map(|t| &t.stacks)
            .flat_map(|s| [s.kernel_stack, s.user_stack])
            .flatten()
            .filter_map(|id| Some((id, self.stacks.get(&id)?.clone())))
            .collect()
    }

    /// Names of kernel functions, from the kernel stacks of the trace (a
    /// timer callback in a chain is named when some stack has it).
    fn kernel_names(&self) -> BTreeMap<u64, String> {
        self.stacks
            .values()
            .filter(|s| s.kind == StackKind::Kernel)
            .flat_map(|s| &s.frames)
            .filter_map(|f| Some((f.addr, f.name.clone()?)))
            .collect()
    }

    /// What [`roles`] needs of each thread.
    fn role_inputs(
        &self,
        threads: &[ThreadSummary],
        table: &BTreeMap<u32, Stack>,
    ) -> Vec<RoleInput> {
        // Stacks read from the threads' memory (thread roots), by thread.
        let roots: HashMap<(u32, u32), &Stack> = self
            .stacks
            .values()
            .filter_map(|s| Some(((s.tgid, s.thread?), s)))
            .collect();
        threads
            .iter()
            .filter_map(|t| {
                let root: Vec<String> = roots
                    .get(&(t.tgid, t.tid))
                    .into_iter()
                    .flat_map(|s| &s.frames)
                    .filter_map(|f| f.name.clone())
                    .collect();
                let mut functions: Vec<String> = t
                    .stacks
                    .iter()
                    .filter_map(|s| table.get(&s.user_stack?))
                    .flat_map(|s| &s.frames)
                    .filter_map(|f| f.name.clone())
                    .collect();
                functions.sort();
                functions.dedup();
                let mut by_class: HashMap<_, u64> = HashMap::new();
                for o in &t.off_cpu {
                    *by_class.entry(o.key.class).or_default() += o.ns;
                }
                // A live thread's track has every waker; an ended thread
                // (whose TID a new thread may have taken) keeps its top ones.
                let woken_by = match self.threads.get(&t.tid) {
                    Some(tr) if t.exited_ns.is_none() => {
                        tr.wakers.iter().map(|(tid, w)| (*tid, w.count)).collect()
                    }
                    _ => t.wakers.iter().map(|w| (w.tid, w.count)).collect(),
                };
                let main_wait = by_class
                    .into_iter()
                    .filter(|(c, _)| *c != super::waits::WaitClass::Unknown)
                    .max_by_key(|(c, ns)| (*ns, std::cmp::Reverse(*c)))
                    .map(|(c, _)| c);
                // Only threads that can have a role or tell another's (see
                // `roles`): stacks, a `node` name, or a possible event loop.
                // The rest (thousands of ended threads, say) need no input.
                let relevant = !functions.is_empty()
                    || !root.is_empty()
                    || t.comm == "node"
                    || t.tid == t.tgid
                    || main_wait == Some(super::waits::WaitClass::Idle);
                relevant.then(|| RoleInput {
                    tid: t.tid,
                    tgid: t.tgid,
                    comm: t.comm.clone(),
                    main_wait,
                    woken_by,
                    functions,
                    root,
                })
            })
            .collect()
    }

    /// What a trace without a header record is taken to be.
    fn headerless(&self) -> Header {
        Header {
            version: crate::trace::TRACE_SCHEMA_VERSION,
            wall_clock_offset_ns: 0,
            ncpus: self.ncpus,
            target_pid: 0,
            target_comm: String::new(),
            target_ns_pid: None,
            also: Vec::new(),
            cgroup: None,
            all_but: None,
            comm_pattern: None,
            command: None,
            follow_children: false,
            wakeups: true,
            pinned_cpus: None,
            kernel_release: String::new(),
            hostname: String::new(),
            tool_version: String::new(),
            start_ns: self.window_start,
        }
    }

    /// The timeline of the closed window, if one was kept.
    fn take_timeline(&mut self) -> Option<Timeline> {
        let mut tl = self.timeline.take()?;
        tl.start_ns = self.window_start;
        tl.end_ns = self.window_end;
        tl.segments.sort_by_key(|s| (s.start, s.tid));
        let mut threads: Vec<(u64, TimelineThread)> = self
            .ended
            .iter()
            .filter(|(_, t)| t.lifetime_ns > 0)
            .map(|(seq, t)| {
                let tt = TimelineThread {
                    tid: t.tid,
                    tgid: t.tgid,
                    comm: t.comm.clone(),
                    created_ns: t.created_ns,
                    exited_ns: t.exited_ns,
                };
                (*seq, tt)
            })
            .collect();
        threads.extend(
            self.tracks_in_order()
                .into_iter()
                .filter(|t| t.lifetime_ns() > 0)
                .map(|t| {
                    let tt = TimelineThread {
                        tid: t.tid,
                        tgid: t.tgid,
                        comm: t.comm.to_string(),
                        created_ns: t.created_ns,
                        exited_ns: t.exited_ns,
                    };
                    (t.seq, tt)
                }),
        );
        threads.sort_by_key(|(seq, _)| *seq);
        tl.threads = threads.into_iter().map(|(_, t)| t).collect();
        Some(tl)
    }
}

fn delay_stats(h: &Histogram) -> DelayStats {
    DelayStats {
        count: h.count(),
        total_ns: h.sum(),
        mean_ns: h.mean(),
        p50_ns: h.quantile(0.5),
        p99_ns: h.quantile(0.99),
        max_ns: h.max(),
    }
}

/// On-CPU time as a share of the window.
fn share(on_cpu_ns: u64, window: u64) -> f64 {
    if window == 0 {
        0.0
    } else {
        on_cpu_ns as f64 / window as f64
    }
}

pub(super) fn thread_summary(t: &ThreadTrack, window: u64) -> ThreadSummary {
    let mut wakers: Vec<Waker> = t
        .wakers
        .iter()
        .map(|(tid, w)| Waker {
            tid: *tid,
            tgid: w.tgid,
            comm: w.comm.to_string(),
            context: WakeContext::Task,
            process: w.process.map(|p| p.to_string()),
            count: w.count,
        })
        .chain(t.context_wakers.iter().map(|&(context, count)| Waker {
            tid: 0,
            tgid: 0,
            comm: context.label().unwrap_or_default(),
            context,
            process: None,
            count,
        }))
        .collect();
    // Interrupt contexts (TID 0) before tasks at equal counts, then by name.
    wakers.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.tid.cmp(&b.tid))
            .then(a.comm.cmp(&b.comm))
    });
    wakers.truncate(TOP_WAKERS);
    // An ended thread keeps this for the rest of the trace: no spare room.
    wakers.shrink_to_fit();
    let states = state_times(t);
    let (off_cpu, stacks) = off_cpu_times(t, &states);
    ThreadSummary {
        tid: t.tid,
        tgid: t.tgid,
        comm: t.comm.to_string(),
        on_cpu_ns: t.running_ns,
        share: share(t.running_ns, window),
        steal_ns: t.steal_ns,
        timeline_on_cpu_ns: t.tl_running_ns,
        run_delay_asleep_ns: t.run_delay_asleep_ns,
        off_cpu,
        states,
        lifetime_ns: t.lifetime_ns(),
        voluntary_switches: t.voluntary,
        involuntary_switches: t.involuntary,
        anomalies: t.anomalies,
        inferred_runs: t.inferred_runs,
        inferred_ns: t.inferred_ns,
        unplaced_runs: t.unplaced_runs,
        migrations: t.migrations,
        migration_pairs: t.migration_pairs.clone(),
        migrate_events: t.migrate_events,
        cpus: t.cpu_ns.to_map(),
        slices: t.slices,
        longest_slice_ns: t.longest_slice_ns,
        wait: delay_stats(&t.wait()),
        wait_after_wakeup: delay_stats(&t.wait_wakeup),
        wait_after_preempt: delay_stats(&t.wait_preempt),
        wakers,
        created_ns: t.created_ns,
        exited_ns: t.exited_ns,
        antagonists: antagonists(t),
        chains: t.chains.top(TOP_CHAINS),
        stacks,
        role: None,
    }
}

fn holder_list(h: &HolderTimes) -> (Vec<HolderTime>, (u64, u64)) {
    let (top, rest) = h.top(TOP_ANTAGONISTS);
    (
        top.into_iter()
            .map(|(holder, ns, count)| HolderTime { holder, ns, count })
            .collect(),
        rest,
    )
}

fn antagonists(t: &ThreadTrack) -> Option<Box<Antagonists>> {
    let (preempted_by, preempted_by_others) = holder_list(&t.preempted_by);
    let (waited_behind, waited_behind_others) = holder_list(&t.waited_behind);
    let a = Antagonists {
        preempted_by,
        waited_behind,
        preempted_by_others,
        waited_behind_others,
    };
    let nobody = a.preempted_by.is_empty()
        && a.waited_behind.is_empty()
        && a.preempted_by_others == (0, 0)
        && a.waited_behind_others == (0, 0);
    (!nobody).then(|| Box::new(a))
}

/// The thread's stacks with their raw times, in no order.
fn stack_times(t: &ThreadTrack) -> Vec<StackTime> {
    t.stacks
        .iter()
        .filter(|(_, w)| w.ns > 0 || w.count > 0)
        .map(|(&(kernel_stack, user_stack, key), w)| StackTime {
            kernel_stack,
            user_stack,
            key,
            ns: w.ns,
            count: w.count,
        })
        .collect()
}

/// Longest first, then by stacks and reason.
fn stack_order(a: &StackTime, b: &StackTime) -> std::cmp::Ordering {
    b.ns.cmp(&a.ns)
        .then(a.kernel_stack.cmp(&b.kernel_stack))
        .then(a.user_stack.cmp(&b.user_stack))
        .then(a.key.cmp(&b.key))
}

fn process_summary(
    tgid: u32,
    acc: &ProcAcc,
    threads: &[ThreadSummary],
    window: u64,
    member: impl Fn(&ThreadSummary) -> bool,
) -> ProcessSummary {
    let mine = || threads.iter().filter(|t| member(t));
    // Saturating: a crafted trace can declare more CPUs times time than fit.
    let sum = |f: fn(&ThreadSummary) -> u64| mine().map(f).fold(0u64, u64::saturating_add);
    ProcessSummary {
        tgid,
        comm: acc.comm.to_string(),
        threads_seen: mine().count() as u64,
        on_cpu_ns: sum(|t| t.on_cpu_ns),
        steal_ns: sum(|t| t.steal_ns),
        run_delay_asleep_ns: sum(|t| t.run_delay_asleep_ns),
        voluntary_switches: sum(|t| t.voluntary_switches),
        involuntary_switches: sum(|t| t.involuntary_switches),
        migrations: sum(|t| t.migrations),
        parallelism: acc.parallelism(window),
    }
}

/// A per-CPU count with one entry per CPU (at least).
fn per_cpu(counts: &[u64], ncpus: u32) -> Vec<u64> {
    let mut v = counts.to_vec();
    if v.len() < ncpus as usize {
        v.resize(ncpus as usize, 0);
    }
    v
}

/// A thread's sleeping and blocked time by what it waited in, adding up to
/// its states' sleeping and blocked time, and the stacks it waited at. Those
/// times give way to the kernel's run-queue waits where both would not fit
/// in the lifetime (see [`state_times`]: a wait the kernel counts from a
/// wakeup that came while the thread was still switching out to sleep
/// overlaps the sleep by the timestamps); which sleeps overlapped is not
/// known, so every reason gives way in proportion, and within a reason its
/// stacked and unstacked time and each stack. The stacks of a reason and its
/// time without a stack thus add up to its time, and the stack profiles
/// (pprof, folded) to the thread's sleeping and blocked time.
fn off_cpu_times(t: &ThreadTrack, states: &StateTimes) -> (Vec<OffCpuTime>, Vec<StackTime>) {
    let waits = t.waits.sorted();
    let raw: Vec<u64> = waits.iter().map(|(_, w)| w.ns).collect();
    let fitted = give_way(&raw, states.sleeping_ns + states.blocked_ns);
    let mut stacks = stack_times(t);
    for (((key, _), &raw), &fitted) in waits.iter().zip(&raw).zip(&fitted) {
        if fitted == raw {
            continue;
        }
        let mine: Vec<usize> = (0..stacks.len())
            .filter(|&i| stacks[i].key == *key)
            .collect();
        let stacked_raw = mine
            .iter()
            .fold(0u64, |a, &i| a.saturating_add(stacks[i].ns));
        let [stacked, _] = give_way(&[stacked_raw, raw.saturating_sub(stacked_raw)], fitted)[..]
        else {
            unreachable!("two shares in, two out")
        };
        let each: Vec<u64> = mine.iter().map(|&i| stacks[i].ns).collect();
        for (&i, ns) in mine.iter().zip(give_way(&each, stacked)) {
            stacks[i].ns = ns;
        }
    }
    stacks.sort_by(stack_order);
    let off_cpu = waits
        .into_iter()
        .zip(fitted)
        .map(|((key, w), ns)| OffCpuTime {
            key,
            ns,
            count: w.count,
        })
        .collect();
    (off_cpu, stacks)
}

/// `values` as they are if they add up to `total` or less; else each
/// scaled down in proportion so that they add up to exactly `total` (the
/// units the rounding down leaves over go one each to the values with the
/// largest remainders, the first such on ties).
fn give_way(values: &[u64], total: u64) -> Vec<u64> {
    let sum = values.iter().fold(0u128, |a, &v| a + u128::from(v));
    if sum <= u128::from(total) {
        return values.to_vec();
    }
    let scaled = |v: u64| u128::from(v) * u128::from(total);
    // Each below `total`, as `sum` > `total`.
    let mut out: Vec<u64> = values.iter().map(|&v| (scaled(v) / sum) as u64).collect();
    let left = total - out.iter().sum::<u64>();
    let mut by_remainder: Vec<usize> = (0..values.len()).collect();
    by_remainder.sort_by_key(|&i| std::cmp::Reverse(scaled(values[i]) % sum));
    for &i in by_remainder.iter().take(left as usize) {
        out[i] += 1;
    }
    out
}

/// A thread's states. Running and runnable are the kernel's figures where
/// the trace has them, the rest the timestamps', so they need not add up to
/// the lifetime (the timestamps'): the kernel leaves out steal, and its
/// clock reads sit a few µs before each tracepoint. They never exceed it:
/// where the kernel's figures and the timestamps together would (the µs
/// shifts, or a file whose counters say more than its times), the
/// timestamps' states give way first, then waits; on-CPU time only when it
/// alone exceeds the lifetime, which no kernel's counters can make.
fn state_times(t: &ThreadTrack) -> StateTimes {
    let life = t.lifetime_ns();
    let running_ns = t.running_ns.min(life);
    let runnable_ns = t.runnable_ns.min(life - running_ns);
    let mut room = life - running_ns - runnable_ns;
    let mut fit = |ns: u64| {
        let v = ns.min(room);
        room -= v;
        v
    };
    let unknown_ns = fit(t.unknown_ns);
    let blocked_ns = fit(t.blocked_ns);
    let sleeping_ns = fit(t.sleeping_ns);
    StateTimes {
        running_ns,
        runnable_ns,
        sleeping_ns,
        blocked_ns,
        unknown_ns,
    }
}
