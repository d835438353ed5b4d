//! Synthetic-event tests of the analysis: no root, no kernel.

use super::summary::ThreadSummary;
use super::*;
use crate::event::{Comm, Event, EventKind, SwitchReason, Task};
use crate::testutil::*;
use timeline::SegState;

const S: u64 = 1; // TASK_INTERRUPTIBLE
const D: u64 = 2; // TASK_UNINTERRUPTIBLE
const DEAD: u64 = 0x80;

fn run(ncpus: u32, threads: &[(u32, char)], events: &[Event], stop: u64) -> Summary {
    let recs = trace(ncpus, 1_000, threads, events, stop);
    analyze(&recs, Options::default()).0
}

/// A `/proc` snapshot of thread `tid` of the target, read at `ts` (just
/// before the end record of `recs`): (runtime, run delay), (pcount,
/// voluntary, involuntary switches).
fn snapshot_before_end(
    recs: &mut Vec<Record>,
    ts: u64,
    tid: u32,
    (runtime_ns, run_delay_ns): (u64, u64),
    (pcount, nvcsw, nivcsw): (u64, u64, u64),
) {
    let end = recs.pop().expect("an end record");
    recs.push(counters_record(
        ts,
        (tid, TARGET),
        (runtime_ns, run_delay_ns),
        (pcount, nvcsw, nivcsw),
    ));
    recs.push(end);
}

/// A `/proc` snapshot record of thread `tid` of process `tgid`, read at
/// `ts`: (runtime, run delay), (pcount, voluntary, involuntary switches).
fn counters_record(
    ts: u64,
    (tid, tgid): (u32, u32),
    (runtime_ns, run_delay_ns): (u64, u64),
    (pcount, nvcsw, nivcsw): (u64, u64, u64),
) -> Record {
    Record::Counters(crate::trace::ThreadCounters {
        ts,
        tid,
        tgid,
        runtime_ns,
        run_delay_ns,
        pcount,
        nvcsw,
        nivcsw,
    })
}

fn thread(s: &Summary, tid: u32) -> &ThreadSummary {
    s.threads
        .iter()
        .find(|t| t.tid == tid)
        .expect("thread in summary")
}

fn assert_tiles(s: &Summary) {
    for t in &s.threads {
        assert_eq!(
            t.states.total(),
            t.lifetime_ns,
            "thread {} states do not add up",
            t.tid
        );
        let cpu_sum: u64 = t.cpus.values().sum();
        assert_eq!(cpu_sum, t.on_cpu_ns, "thread {} per-CPU sum", t.tid);
    }
    let prof: u64 = s.total.parallelism.running_ns.iter().sum();
    assert_eq!(
        prof, s.window_ns,
        "parallelism profile must cover the window"
    );
}

#[test]
fn pairs_switches_and_splits_voluntary_from_involuntary() {
    // 101 runs 1000..3000 (at start), sleeps, is woken, runs 4000..5000,
    // is preempted, runs again 6000..7000, then blocks.
    let ev = [
        switch(3_000, 0, task(101), S, task(0)),
        wakeup(3_500, 1, task(7), task(101), false),
        switch(4_000, 0, task(0), 0, task(101)),
        switch(5_000, 0, task(101), 0, task(7)),
        switch(6_000, 0, task(7), S, task(101)),
        switch(7_000, 0, task(101), D, task(0)),
    ];
    let s = run(2, &[(101, 'R')], &ev, 10_000);
    let t = thread(&s, 101);
    assert_eq!(t.on_cpu_ns, 2_000 + 1_000 + 1_000);
    assert_eq!(t.voluntary_switches, 2);
    assert_eq!(t.involuntary_switches, 1);
    assert_eq!(t.slices, 3);
    assert_eq!(t.longest_slice_ns, 2_000);
    assert_eq!(t.states.runnable_ns, 500 + 1_000);
    assert_eq!(t.states.sleeping_ns, 500);
    assert_eq!(t.states.blocked_ns, 3_000);
    assert_eq!(t.lifetime_ns, 9_000);
    assert_eq!(t.wait.count, 2);
    assert_eq!(t.wait_after_wakeup.count, 1);
    assert_eq!(t.wait_after_wakeup.max_ns, 500);
    assert_eq!(t.wait_after_preempt.max_ns, 1_000);
    assert_eq!(t.wakers.len(), 1);
    assert_eq!(t.wakers[0].tid, 7);
    assert_eq!(t.wakers[0].count, 1);
    assert_eq!(s.window_ns, 9_000);
    assert_eq!(s.anomalies, 0);
    assert_tiles(&s);
}

#[test]
fn per_cpu_time_and_migrations() {
    let ev = [
        switch(2_000, 0, task(0), 0, task(101)),
        switch(3_000, 0, task(101), 0, task(0)),
        switch(3_500, 1, task(0), 0, task(101)),
        switch(4_000, 1, task(101), 0, task(0)),
        switch(4_100, 1, task(0), 0, task(101)),
        switch(4_200, 1, task(101), S, task(0)),
    ];
    let s = run(2, &[(101, 'R')], &ev, 5_000);
    let t = thread(&s, 101);
    assert_eq!(t.cpus.get(&0), Some(&1_000));
    assert_eq!(t.cpus.get(&1), Some(&600));
    assert_eq!(t.migrations, 1);
    assert_eq!(t.migration_pairs.get(&(0, 1)), Some(&1));
    assert_tiles(&s);
}

#[test]
fn parallelism_profile_counts_threads_on_cpus_at_once() {
    // 101 on CPU0 1000..5000; 102 on CPU1 3000..7000 (window 1000..9000).
    let ev = [
        switch(3_000, 1, task(0), 0, task(102)),
        switch(5_000, 0, task(101), S, task(0)),
        switch(7_000, 1, task(102), S, task(0)),
    ];
    let s = run(2, &[(101, 'R'), (102, 'R')], &ev, 9_000);
    let p = &s.total.parallelism;
    assert_eq!(p.running_ns, vec![2_000, 4_000, 2_000]);
    assert_eq!(p.parallel_ns, 2_000);
    assert_eq!(p.busy_ns, 6_000);
    // 102 was runnable 1000..3000 while 101 ran: time sliced.
    assert_eq!(p.time_sliced_ns, 2_000);
    assert!((p.mean_running - 8_000.0 / 8_000.0).abs() < 1e-9);
    assert!((p.mean_runnable - 2_000.0 / 8_000.0).abs() < 1e-9);
    assert_tiles(&s);
}

#[test]
fn one_core_time_slicing_has_no_parallel_time() {
    // Two threads share CPU 0, alternating every 1000 ns.
    let mut ev = vec![];
    let mut ts = 2_000;
    let (mut a, mut b) = (101, 102);
    for _ in 0..6 {
        ev.push(switch(ts, 0, task(a), 0, task(b)));
        std::mem::swap(&mut a, &mut b);
        ts += 1_000;
    }
    let s = run(1, &[(101, 'R'), (102, 'R')], &ev, ts);
    let p = &s.total.parallelism;
    assert_eq!(p.parallel_ns, 0);
    assert_eq!(p.running_ns[0], 0);
    assert_eq!(p.time_sliced_ns, s.window_ns);
    assert_eq!(thread(&s, 101).involuntary_switches, 3);
    assert_eq!(thread(&s, 102).involuntary_switches, 3);
    assert_tiles(&s);
}

#[test]
fn thread_running_at_the_end_is_charged_up_to_the_end() {
    let ev = [switch(2_000, 1, task(0), 0, task(101))];
    let s = run(2, &[(101, 'R')], &ev, 5_000);
    let t = thread(&s, 101);
    assert_eq!(t.on_cpu_ns, 3_000);
    assert_eq!(t.states.runnable_ns, 1_000);
    assert_eq!(t.cpus.get(&1), Some(&3_000));
    assert_tiles(&s);
}

#[test]
fn sleeping_at_attach_and_never_seen_again() {
    let s = run(2, &[(100, 'S'), (103, 'D')], &[], 4_000);
    assert_eq!(thread(&s, 100).states.sleeping_ns, 3_000);
    assert_eq!(thread(&s, 103).states.blocked_ns, 3_000);
    assert_eq!(s.total.parallelism.running_ns[0], 3_000);
    assert_tiles(&s);
}

#[test]
fn wakeup_before_first_switch_means_it_was_asleep() {
    let ev = [
        wakeup(2_000, 0, task(100), task(104), false),
        switch(2_500, 1, task(0), 0, task(104)),
        switch(3_000, 1, task(104), S, task(0)),
    ];
    let s = run(2, &[], &ev, 4_000);
    let t = thread(&s, 104);
    assert_eq!(t.states.sleeping_ns, 1_000 + 1_000);
    assert_eq!(t.states.runnable_ns, 500);
    assert_eq!(t.on_cpu_ns, 500);
    assert_eq!(s.anomalies, 0);
    assert_tiles(&s);
}

#[test]
fn new_thread_is_created_runs_and_exits_while_runnable_ends_dead() {
    let ev = [
        Event {
            ts: 2_000,
            cpu: 0,
            kind: EventKind::Fork {
                parent: task(100),
                child: task(105),
            },
        },
        wakeup(2_100, 0, task(100), task(105), true),
        switch(2_500, 1, task(0), 0, task(105)),
        Event {
            ts: 3_000,
            cpu: 1,
            kind: EventKind::Exit {
                task: task(105),
                run_delay_ns: None,
            },
        },
        switch(3_100, 1, task(105), 0, task(0)), // preempted while exiting
        switch(3_400, 1, task(0), 0, task(105)),
        switch(3_500, 1, task(105), DEAD, task(0)),
    ];
    let s = run(2, &[(100, 'S')], &ev, 6_000);
    let t = thread(&s, 105);
    assert_eq!(t.created_ns, Some(2_000));
    assert_eq!(t.exited_ns, Some(3_000));
    assert_eq!(t.lifetime_ns, 1_500);
    assert_eq!(t.on_cpu_ns, 700);
    assert_eq!(t.states.runnable_ns, 800);
    assert_eq!(t.involuntary_switches, 1);
    assert_eq!(t.voluntary_switches, 0);
    assert_eq!(t.wakers[0].tid, 100);
    assert_eq!(s.anomalies, 0);
    assert_tiles(&s);
}

#[test]
fn strangers_are_not_target_threads() {
    let ev = [
        switch(2_000, 0, task(7), 0, task(101)),
        switch(3_000, 0, task(101), S, task(8)),
    ];
    let s = run(2, &[(101, 'S')], &ev, 4_000);
    assert!(s.threads.iter().all(|t| t.tgid == TARGET));
    assert_eq!(s.threads.len(), 1);
}

#[test]
fn window_clips_since_and_until() {
    let ev = [
        switch(2_000, 0, task(0), 0, task(101)),
        switch(6_000, 0, task(101), S, task(0)),
    ];
    let recs = trace(1, 1_000, &[(101, 'R')], &ev, 9_000);
    let opts = Options {
        since_ns: Some(2_000),
        until_ns: Some(4_000),
        keep_timeline: true,
        ..Default::default()
    };
    let (s, tl) = analyze(&recs, opts);
    assert_eq!(s.window_ns, 2_000);
    assert_eq!(thread(&s, 101).on_cpu_ns, 2_000);
    let tl = tl.unwrap();
    assert_eq!(tl.start_ns, 3_000);
    assert_eq!(tl.end_ns, 5_000);
    assert!(
        tl.segments
            .iter()
            .all(|g| g.start >= 3_000 && g.end <= 5_000)
    );
    assert_tiles(&s);
}

#[test]
fn timeline_segments_tile_each_thread() {
    let ev = [
        switch(2_000, 0, task(101), S, task(102)),
        wakeup(2_500, 0, task(102), task(101), false),
        switch(3_000, 0, task(102), 0, task(101)),
    ];
    let recs = trace(1, 1_000, &[(101, 'R'), (102, 'R')], &ev, 4_000);
    let (_, tl) = analyze(
        &recs,
        Options {
            keep_timeline: true,
            ..Default::default()
        },
    );
    let tl = tl.unwrap();
    for tid in [101, 102] {
        let segs: Vec<_> = tl.thread_segments(tid).collect();
        assert_eq!(segs.first().unwrap().start, 1_000);
        assert_eq!(segs.last().unwrap().end, 4_000);
        for w in segs.windows(2) {
            assert_eq!(w[0].end, w[1].start, "gap or overlap in {tid}");
        }
    }
    assert_eq!(tl.wakeups.len(), 1);
    assert_eq!(tl.cpu_lanes()[0].len(), 3);
}

#[test]
fn lost_events_are_counted() {
    let mut recs = trace(2, 1_000, &[(101, 'S')], &[], 2_000);
    recs.insert(
        2,
        Record::Lost(Lost {
            ts: 1_500,
            cpu: 1,
            count: 4,
        }),
    );
    recs.pop();
    recs.push(end(2_000));
    let (s, _) = analyze(&recs, Options::default());
    assert_eq!(s.lost_events, 4);
    assert_eq!(s.lost_per_cpu, vec![0, 4]);
}

/// Records lost: 101's switch-out on CPU 0 never came, and 102 was
/// switched in there. Two threads cannot run on one CPU: 101's run is
/// unknown time, not on-CPU time, until its next event; no figure may
/// exceed what the CPUs allow.
#[test]
fn a_lost_switch_out_makes_the_run_unknown_never_two_threads_on_a_cpu() {
    let ev = [
        switch(2_000, 0, task(0), 0, task(101)),
        // (101's switch-out to sleep at about 2_500 was lost)
        switch(3_000, 0, task(0), 0, task(102)),
        switch(4_000, 0, task(102), S, task(0)),
        wakeup(5_000, 1, task(7), task(101), false),
        switch(5_500, 1, task(0), 0, task(101)),
        switch(6_000, 1, task(101), S, task(0)),
    ];
    let s = run(2, &[(101, 'S'), (102, 'S')], &ev, 7_000);
    let t = thread(&s, 101);
    assert_eq!(t.on_cpu_ns, 500, "only the run seen whole");
    // 2000..3000 (the run whose end was lost) and 3000..5000: unknown.
    assert_eq!(t.states.unknown_ns, 3_000);
    // Before its first switch-in (1000..2000) and after the wakeup.
    assert_eq!(t.states.runnable_ns, 1_000 + 500);
    assert_eq!(t.wait.count, 2);
    assert_eq!(t.anomalies, 1);
    assert_eq!(thread(&s, 102).on_cpu_ns, 1_000);
    let p = &s.total.parallelism;
    assert!(p.mean_running <= 2.0);
    assert_eq!(
        *p.running_ns.last().unwrap(),
        0,
        "never more threads than CPUs"
    );
    assert!(s.total.on_cpu_ns <= s.window_ns * 2);
    assert_tiles(&s);
}

/// A loss mark on the CPU a thread runs on: whether it still runs there
/// is unknown until its next event.
#[test]
fn a_loss_on_a_threads_cpu_makes_it_unknown_until_its_next_event() {
    let mut recs = trace(
        2,
        1_000,
        &[(101, 'S')],
        &[
            switch(2_000, 1, task(0), 0, task(101)),
            switch(4_000, 1, task(101), S, task(0)),
        ],
        5_000,
    );
    recs.insert(
        3,
        Record::Lost(Lost {
            ts: 3_000,
            cpu: 1,
            count: 2,
        }),
    );
    let (s, _) = analyze(&recs, Options::default());
    let t = thread(&s, 101);
    // Running from 2000 until the loss was noticed at 3000 (the loss mark
    // takes its place among the events), then unknown until the
    // switch-out at 4000.
    assert_eq!(t.states.running_ns, 1_000);
    assert_eq!(t.states.unknown_ns, 1_000);
    assert_eq!(t.voluntary_switches, 1);
    assert_eq!(t.anomalies, 0);
    assert_tiles(&s);
}

#[test]
fn every_transition_of_the_state_machine() {
    // 101: running -> blocked (D) -> woken -> runnable -> running ->
    // preempted -> runnable -> running -> sleeping (S) -> woken -> running
    // (a wakeup while runnable or running changes nothing).
    let ev = [
        switch(2_000, 0, task(101), D, task(0)),
        wakeup(3_000, 0, task(0), task(101), false),
        wakeup(3_100, 0, task(7), task(101), false), // already runnable
        switch(3_500, 0, task(0), 0, task(101)),
        wakeup(3_600, 0, task(7), task(101), false), // already running
        Event {
            ts: 3_700,
            cpu: 0,
            kind: EventKind::Migrate {
                task: task(101),
                from: 0,
                to: 1,
            },
        },
        switch(4_000, 0, task(101), 0, task(7)),
        switch(4_500, 1, task(0), 0, task(101)),
        switch(5_000, 1, task(101), S, task(0)),
        wakeup(6_000, 1, task(0), task(101), false),
        switch(6_200, 1, task(0), 0, task(101)),
    ];
    let s = run(2, &[(101, 'R')], &ev, 7_000);
    let t = thread(&s, 101);
    assert_eq!(t.states.running_ns, 1_000 + 500 + 500 + 800);
    assert_eq!(t.states.blocked_ns, 1_000);
    assert_eq!(t.states.runnable_ns, 500 + 500 + 200);
    assert_eq!(t.states.sleeping_ns, 1_000);
    assert_eq!((t.voluntary_switches, t.involuntary_switches), (2, 1));
    assert_eq!(t.wait.count, 3);
    assert_eq!(t.wait_after_wakeup.count, 2);
    assert_eq!(t.wait_after_preempt.count, 1);
    assert_eq!(t.migrate_events, 1);
    assert_eq!(t.migrations, 1);
    assert_eq!(t.migration_pairs.get(&(0, 1)), Some(&1));
    // Only wakeups that made it runnable count as "who woke me".
    let wakers: Vec<(u32, u64)> = t.wakers.iter().map(|w| (w.tid, w.count)).collect();
    assert_eq!(wakers, vec![(0, 2)]);
    assert_eq!(s.anomalies, 0);
    assert_tiles(&s);
}

/// A thread that ended and a new thread given its TID (TIDs wrap) are
/// two threads; the ended one holds no track any more.
#[test]
fn an_ended_thread_is_folded_and_a_new_thread_may_reuse_its_tid() {
    let fork = |ts| Event {
        ts,
        cpu: 0,
        kind: EventKind::Fork {
            parent: task(100),
            child: task(105),
        },
    };
    let ev = [
        fork(2_000),
        wakeup(2_100, 0, task(100), task(105), true),
        switch(2_200, 1, task(0), 0, task(105)),
        switch(2_500, 1, task(105), DEAD, task(0)),
        fork(3_000),
        wakeup(3_100, 0, task(100), task(105), true),
        switch(3_300, 1, task(0), 0, task(105)),
        switch(4_000, 1, task(105), S, task(0)),
        // Events reach the state machine once the placer has held them for
        // its lag: an event of no traced thread that much later releases them.
        switch(4_001 + placer::LAG_NS, 1, task(7), 0, task(8)),
    ];
    let recs = trace(2, 1_000, &[(100, 'S')], &ev, 6_000 + placer::LAG_NS);
    let mut a = Analyzer::new(Options::default());
    for r in &recs {
        a.feed(r);
    }
    // The first 105 was folded into its summary; the track is the second's.
    assert_eq!(a.ended.len(), 1);
    assert_eq!(a.threads.get(&105).unwrap().created_ns, Some(3_000));
    let (s, _) = a.finish();
    let both: Vec<_> = s
        .threads
        .iter()
        .filter(|t| t.tid == 105)
        .map(|t| (t.created_ns, t.on_cpu_ns, t.exited_ns))
        .collect();
    assert_eq!(
        both,
        vec![(Some(3_000), 700, None), (Some(2_000), 300, Some(2_500))],
        "sorted by on-CPU time"
    );
    assert_eq!(s.total.threads_seen, 3);
    assert_eq!(s.anomalies, 0);
    assert_tiles(&s);
}

#[test]
fn exec_by_a_non_leader_thread_takes_over_the_leader() {
    let ev = [
        switch(2_000, 0, task(100), DEAD, task(101)),
        Event {
            ts: 2_500,
            cpu: 0,
            kind: EventKind::Exec {
                task: Task {
                    tid: 100,
                    ..task(100)
                },
                old_tid: 101,
            },
        },
        switch(3_000, 0, task(100), S, task(0)),
    ];
    let s = run(1, &[(100, 'R'), (101, 'R')], &ev, 4_000);
    // Three threads: the old leader, which ended at 2000; 101, which
    // ran from 2000 and was gone at its exec; and the thread that carries
    // on under the leader's TID from the exec on.
    let by_tid = |tid| s.threads.iter().filter(move |t| t.tid == tid);
    let leaders: Vec<_> = by_tid(100)
        .map(|t| (t.on_cpu_ns, t.created_ns, t.exited_ns))
        .collect();
    assert_eq!(
        leaders,
        vec![(1_000, None, Some(2_000)), (500, Some(2_500), None)]
    );
    assert_eq!(thread(&s, 101).exited_ns, Some(2_500));
    assert_eq!(thread(&s, 101).on_cpu_ns, 500);
    assert_eq!(s.anomalies, 0);
    assert_tiles(&s);
}

#[test]
fn follow_children_adds_the_child_process() {
    let child = Task {
        tid: 300,
        tgid: 300,
        ..task(300)
    };
    let fork = Event {
        ts: 2_000,
        cpu: 0,
        kind: EventKind::Fork {
            parent: task(100),
            child,
        },
    };
    let ev = [
        fork,
        wakeup(2_100, 0, task(100), child, true),
        switch(2_500, 1, task(0), 0, child),
        switch(3_000, 1, child, S, task(0)),
    ];
    let mut recs = trace(2, 1_000, &[(100, 'R')], &ev, 4_000);
    let mut followed = recs.clone();
    if let Record::Header(h) = &mut followed[0] {
        h.follow_children = true;
    }
    let (s, _) = analyze(&followed, Options::default());
    assert_eq!(s.processes.len(), 2);
    assert_eq!(thread(&s, 300).on_cpu_ns, 500);
    assert_eq!(thread(&s, 300).created_ns, Some(2_000));
    let (s, _) = analyze(&recs, Options::default());
    assert_eq!(s.processes.len(), 1);
    assert!(s.threads.iter().all(|t| t.tid != 300));
    recs.clear();
}

#[test]
fn a_repeated_pid_traces_each_named_process_apart() {
    let other = Task {
        tid: 400,
        tgid: 400,
        ..task(400)
    };
    let stranger = Task {
        tid: 500,
        tgid: 500,
        ..task(500)
    };
    let ev = [
        switch(2_000, 1, task(0), 0, other),
        switch(2_600, 1, other, S, stranger),
        switch(2_800, 1, stranger, S, task(0)),
        switch(3_000, 0, task(0), 0, task(101)),
        switch(3_400, 0, task(101), S, task(0)),
    ];
    let mut recs = trace(2, 1_000, &[(101, 'S')], &ev, 4_000);
    let info = ThreadInfo {
        tgid: 400,
        ..thread_info(400, 'S')
    };
    recs.insert(2, Record::Thread(info));
    if let Record::Header(h) = &mut recs[0] {
        h.also = vec![crate::trace::TargetProcess {
            pid: 400,
            comm: "other".into(),
            ns_pid: None,
        }];
    }
    let (s, _) = analyze(&recs, Options::default());
    let tgids: Vec<u32> = s.processes.iter().map(|p| p.tgid).collect();
    assert_eq!(tgids, [100, 400], "the named processes, the stranger not");
    assert_eq!(thread(&s, 400).on_cpu_ns, 600);
    assert_eq!(thread(&s, 101).on_cpu_ns, 400);
    assert!(s.threads.iter().all(|t| t.tid != 500));
    let p400 = s.processes.iter().find(|p| p.tgid == 400).unwrap();
    assert_eq!(p400.on_cpu_ns, 600);
    assert_eq!(s.total.on_cpu_ns, 600 + 400);
    assert_eq!(s.also.len(), 1);
    assert!(
        s.targets_label().starts_with("PIDs 100 ("),
        "{}",
        s.targets_label()
    );
    assert!(s.targets_label().ends_with(", 400 (other)"));
}

#[test]
fn live_view_counts_open_states_up_to_now() {
    // Events reach the state machine once the placer has held them for
    // its lag: an event of no traced thread that much later releases them.
    let ev = [
        switch(2_000, 1, task(0), 0, task(101)),
        switch(2_000, 0, task(102), S, task(0)),
        switch(2_001 + placer::LAG_NS, 0, task(0), 0, task(0)),
    ];
    let mut a = Analyzer::new(Options::default());
    for r in trace(2, 1_000, &[(101, 'R'), (102, 'R')], &ev, 9_000)
        .iter()
        .take(6)
    {
        a.feed(r);
    }
    let v = a.live_view(5_000);
    let t101 = v.iter().find(|t| t.tid == 101).unwrap();
    assert_eq!(t101.state, Some(SegState::Running { cpu: 1 }));
    assert_eq!(t101.cpu_ns.get(&1), Some(&3_000));
    assert_eq!(t101.runnable_ns, 1_000);
    let t102 = v.iter().find(|t| t.tid == 102).unwrap();
    assert_eq!(t102.state, Some(SegState::Sleeping));
    assert_eq!(t102.cpu_ns.get(&0), Some(&1_000));
    assert_eq!(t102.switches, 1);
}

#[test]
fn a_wakeup_racing_with_the_switch_out_leaves_the_thread_runnable() {
    // 101 runs on CPU 0 and blocks; 7 on CPU 1 wakes it 21 ns before the
    // switch-out is recorded (the kernel queues it again as soon as it is
    // off CPU 0). It runs again at 7000: all of 2121..7000 is run-queue wait.
    let ev = [
        switch(1_500, 0, task(0), 0, task(101)),
        wakeup(2_100, 1, task(7), task(101), false),
        switch(2_121, 0, task(101), D, task(0)),
        switch(7_000, 0, task(0), 0, task(101)),
        switch(8_000, 0, task(101), S, task(0)),
    ];
    let recs = trace(2, 1_000, &[(101, 'R')], &ev, 10_000);
    let (s, tl) = analyze(
        &recs,
        Options {
            keep_timeline: true,
            ..Options::default()
        },
    );
    // The timeline draws the wake edge at the wakeup, from CPU 1.
    let edges: Vec<_> = tl
        .expect("timeline asked for")
        .wakeups
        .iter()
        .map(|w| (w.ts, w.waker_tid, w.wakee_tid, w.cpu))
        .collect();
    assert_eq!(edges, [(2_100, 7, 101, 1)]);
    assert_eq!(s.anomalies, 0);
    let t = thread(&s, 101);
    assert_eq!(t.states.blocked_ns, 0);
    assert_eq!(t.states.runnable_ns, 500 + 7_000 - 2_121);
    assert_eq!(t.wait.total_ns, 500 + 7_000 - 2_121);
    assert_eq!(t.voluntary_switches, 2);
    assert_eq!(t.wakers.len(), 1);
    assert_eq!(t.wakers[0].tid, 7);
    assert_tiles(&s);
}

#[test]
fn an_old_wakeup_while_running_does_not_cancel_a_later_sleep() {
    // A wakeup from CPU 1 while 101 runs (it was about to sleep, the
    // wakeup won), then 101 runs on and sleeps for real much later.
    let ev = [
        switch(1_500, 0, task(0), 0, task(101)),
        wakeup(2_000, 1, task(7), task(101), false),
        switch(500_000, 0, task(101), S, task(0)),
        wakeup(800_000, 1, task(7), task(101), false),
        switch(900_000, 0, task(0), 0, task(101)),
    ];
    let s = run(2, &[(101, 'R')], &ev, 1_000_000);
    assert_eq!(s.anomalies, 0);
    let t = thread(&s, 101);
    assert_eq!(t.states.sleeping_ns, 300_000);
    assert_eq!(t.states.runnable_ns, 500 + 100_000);
    assert_tiles(&s);
}

/// `events` as a trace taken without wakeups would have them: the wakeups
/// (not the creations) are gone, and each switch-in carries the run delay
/// the kernel would have accounted, counted from `base` for every thread.
fn without_wakeups(events: &[Event], base: u64) -> Vec<Event> {
    let mut since: HashMap<u32, u64> = HashMap::new();
    let mut delay: HashMap<u32, u64> = HashMap::new();
    let mut out = Vec::new();
    for e in events {
        let mut e = *e;
        let reason = e.switch_reason();
        match &mut e.kind {
            EventKind::Wakeup {
                wakee, new: false, ..
            } => {
                since.insert(wakee.tid, e.ts);
                continue;
            }
            EventKind::Switch {
                prev,
                next,
                next_wait,
                ..
            } => {
                if reason == Some(SwitchReason::Preempted) {
                    since.insert(prev.tid, e.ts);
                }
                if next.tid != 0 {
                    let queued = since.remove(&next.tid).map_or(0, |s| e.ts - s);
                    let d = delay.entry(next.tid).or_insert(base);
                    *d += queued;
                    *next_wait = Some(crate::event::KernelWait {
                        run_delay_ns: *d,
                        queued_ns: queued,
                    });
                }
            }
            _ => {}
        }
        out.push(e);
    }
    out
}

fn no_wakeups_trace(threads: &[(u32, char)], events: &[Event], stop: u64) -> Vec<Record> {
    let mut recs = trace(2, 1_000, threads, events, stop);
    if let Record::Header(h) = &mut recs[0] {
        h.wakeups = false;
    }
    recs
}

/// Three threads time-slice CPU 0 (preempted, sleeping, blocked, woken by
/// each other), a fourth runs alongside on CPU 1.
fn one_core_and_a_helper() -> Vec<Event> {
    vec![
        wakeup(2_000, 0, task(101), task(102), false),
        wakeup(2_500, 0, task(101), task(103), false),
        switch(3_000, 0, task(101), 0, task(102)),
        switch(4_000, 0, task(102), S, task(103)),
        wakeup(4_500, 0, task(103), task(104), false),
        switch(4_800, 1, task(0), 0, task(104)),
        switch(5_000, 0, task(103), 0, task(101)),
        wakeup(5_500, 0, task(101), task(102), false),
        switch(6_000, 0, task(101), S, task(103)),
        switch(7_000, 0, task(103), D, task(102)),
        wakeup(7_200, 0, task(102), task(101), false),
        wakeup(7_300, 0, task(102), task(103), false),
        switch(8_000, 0, task(102), 0, task(101)),
        switch(8_500, 1, task(104), S, task(0)),
        switch(9_000, 0, task(101), S, task(103)),
        switch(9_500, 0, task(103), S, task(102)),
    ]
}

#[test]
fn without_wakeups_run_delays_give_the_states_waits_and_profile_of_traced_wakeups() {
    let threads = [(101, 'R'), (102, 'S'), (103, 'S'), (104, 'S')];
    let ev = one_core_and_a_helper();
    let stop = 10_000;
    let opts = Options {
        keep_timeline: true,
        ..Default::default()
    };
    let (with, with_tl) = analyze(&trace(2, 1_000, &threads, &ev, stop), opts.clone());
    let lean = no_wakeups_trace(&threads, &without_wakeups(&ev, 1_000_000), stop);
    let (without, without_tl) = analyze(&lean, opts);
    assert_eq!(with.anomalies, 0);
    assert_eq!(without.anomalies, 0);
    assert!(with.wakeups && !without.wakeups);
    assert_tiles(&without);
    assert_eq!(with.threads.len(), 4);
    for (a, b) in with.threads.iter().zip(&without.threads) {
        assert_eq!(a.tid, b.tid);
        assert_eq!(a.states, b.states, "thread {}", a.tid);
        assert_eq!(a.wait, b.wait, "thread {}", a.tid);
        assert_eq!(a.wait_after_wakeup, b.wait_after_wakeup, "thread {}", a.tid);
        assert_eq!(
            a.wait_after_preempt, b.wait_after_preempt,
            "thread {}",
            a.tid
        );
        assert_eq!(
            (a.voluntary_switches, a.involuntary_switches, a.slices),
            (b.voluntary_switches, b.involuntary_switches, b.slices)
        );
        assert!(b.wakers.is_empty());
    }
    // Waits: 102 waited 1000 and 1500 after wakeups, 1500 preempted; 103
    // waited 1500 after a wakeup, 1000 preempted, 1700 woken from D.
    let t102 = thread(&without, 102);
    assert_eq!((t102.wait.count, t102.wait.total_ns), (3, 4_000));
    assert_eq!(t102.wait_after_preempt.total_ns, 1_500);
    assert_eq!(
        thread(&without, 103).states.runnable_ns,
        1_500 + 1_000 + 1_700
    );
    assert_eq!(with.total.parallelism, without.total.parallelism);
    assert!(without.total.parallelism.time_sliced_ns > 0);
    assert!(without.total.parallelism.parallel_ns > 0);
    let (with_tl, without_tl) = (with_tl.unwrap(), without_tl.unwrap());
    assert_eq!(with_tl.segments, without_tl.segments);
    assert!(without_tl.wakeups.is_empty() && !with_tl.wakeups.is_empty());
}

#[test]
fn without_wakeups_a_switch_in_with_no_wait_is_not_an_anomaly() {
    // The kernel skips the clock update right after a wakeup preemption,
    // so a thread can be switched in with no wait at all.
    let ev = [
        switch(2_000, 0, task(101), S, task(102)),
        switch(3_000, 0, task(102), S, task(101)),
    ];
    let lean = no_wakeups_trace(&[(101, 'R'), (102, 'S')], &without_wakeups(&ev, 0), 4_000);
    let s = analyze(&lean, Options::default()).0;
    assert_eq!(s.anomalies, 0);
    let t = thread(&s, 101);
    assert_eq!((t.states.sleeping_ns, t.states.runnable_ns), (1_000, 0));
    assert_eq!((t.wait.count, t.wait_after_wakeup.count), (1, 1));
}

#[test]
fn without_wakeups_a_wait_longer_than_the_lag_counts_in_full_for_its_thread() {
    let lag = placer::LAG_NS;
    // 101 sleeps at 2 µs, is woken at 1 ms and waits 2 lags for CPU 0,
    // which 102 holds; 103 switches on CPU 1 meanwhile, moving the clock.
    let woken = 1_000_000;
    let back = woken + 2 * lag;
    let mut ev = vec![
        wakeup(2_000, 0, task(101), task(102), false),
        switch(2_000, 0, task(101), S, task(102)),
        wakeup(woken, 1, task(7), task(101), false),
    ];
    for i in 1..8 {
        let ts = woken + i * lag / 4;
        ev.push(wakeup(ts, 1, task(7), task(103), false));
        ev.push(switch(ts, 1, task(0), 0, task(103)));
        ev.push(switch(ts + 1_000, 1, task(103), S, task(0)));
    }
    ev.push(switch(back, 0, task(102), S, task(101)));
    let stop = back + 1_000;
    let threads = [(101, 'R'), (102, 'S'), (103, 'S')];
    let with = analyze(&trace(2, 1_000, &threads, &ev, stop), Options::default()).0;
    let lean = no_wakeups_trace(&threads, &without_wakeups(&ev, 0), stop);
    let without = analyze(&lean, Options::default()).0;
    assert_eq!(without.anomalies, 0);
    let (a, b) = (thread(&with, 101), thread(&without, 101));
    assert_eq!(b.wait.max_ns, 2 * lag);
    assert_eq!(a.states, b.states);
    assert_eq!(a.wait, b.wait);
    // The process's mean of waiting threads still counts the whole wait.
    let (pa, pb) = (&with.total.parallelism, &without.total.parallelism);
    assert!((pa.mean_runnable - pb.mean_runnable).abs() < 1e-12);
    assert_tiles(&without);
}

#[test]
fn without_wakeups_a_first_switch_in_with_no_wait_means_it_slept_until_then() {
    // 102 sleeps when tracing starts and runs at 3000 without waiting (the
    // kernel skipped the clock update after the wakeup): nothing says it
    // was runnable before, so it slept.
    let ev = [
        switch(3_000, 0, task(101), S, task(102)),
        switch(4_000, 0, task(102), S, task(101)),
    ];
    let threads = [(101, 'R'), (102, 'S')];
    let lean = no_wakeups_trace(&threads, &without_wakeups(&ev, 0), 5_000);
    let s = analyze(&lean, Options::default()).0;
    let t = thread(&s, 102);
    assert_eq!(
        (t.states.sleeping_ns, t.states.runnable_ns),
        (2_000 + 1_000, 0)
    );
    assert_eq!(s.anomalies, 0);
}

// With the kernel's counters in the switch records (trace version 2), the
// totals are the counters' deltas; the timestamps only place things.

const MS: u64 = 1_000_000;
const US: u64 = 1_000;

/// 101 on CPU 0, every run and wait with counters that differ from the
/// timestamps: runs charged less than their wall time (steal), waits the
/// kernel counts from the enqueue, not from the wakeup event.
fn counted_runs() -> Vec<Event> {
    let (a, w) = (task(101), task(7));
    vec![
        wakeup(2 * MS, 0, w, a, false),
        // First switch-in: only the wait ending now is known (80 µs).
        in_counters(
            switch(2 * MS + 100 * US, 0, task(0), 0, a),
            10 * MS,
            5 * MS,
            80 * US,
        ),
        // 1 ms on the CPU by the timestamps, 900 µs charged, 1 ms on the
        // run-queue clock: 100 µs stolen.
        out_counters(
            switch(3 * MS + 100 * US, 0, a, S, task(0)),
            10 * MS + 900 * US,
            MS,
            5,
            2,
        ),
        wakeup(4 * MS, 0, w, a, false),
        in_counters(
            switch(4 * MS + 50 * US, 0, task(0), 0, a),
            10 * MS + 900 * US,
            5 * MS + 30 * US,
            30 * US,
        ),
        out_counters(
            switch(5 * MS + 50 * US, 0, a, 0, w),
            11 * MS + 900 * US,
            MS,
            5,
            3,
        ),
        in_counters(
            switch(5 * MS + 500 * US, 0, w, 0, a),
            11 * MS + 900 * US,
            5 * MS + 470 * US,
            440 * US,
        ),
        out_counters(
            switch(6 * MS, 0, a, S, task(0)),
            12 * MS + 350 * US,
            500 * US,
            6,
            3,
        ),
    ]
}

#[test]
fn with_counters_the_totals_are_the_kernels() {
    let s = analyze(
        &trace(2, MS, &[(101, 'S')], &counted_runs(), 8 * MS),
        Options::default(),
    )
    .0;
    assert!(s.kernel_counters);
    let t = thread(&s, 101);
    assert_eq!(t.on_cpu_ns, (900 + 1_000 + 450) * US);
    assert_eq!(t.cpus.values().sum::<u64>(), t.on_cpu_ns);
    assert_eq!(t.steal_ns, (100 + 50) * US);
    assert_eq!(t.states.runnable_ns, (80 + 30 + 440) * US);
    assert_eq!(t.wait.total_ns, t.states.runnable_ns);
    assert_eq!(t.wait.count, 3);
    // First switch-out by its reason, then the counters' deltas.
    assert_eq!((t.voluntary_switches, t.involuntary_switches), (2, 1));
    // Sleeping is the timestamps': 1 ms before, 0.9 ms between, 2 ms after.
    assert_eq!(t.states.sleeping_ns, 3_900 * US);
    // Lifetime by the timestamps; the states with the steal add up to it
    // but for the 50 µs the timestamps' waits (wakeup to switch-in) run
    // longer than the kernel's (enqueue to switch-in).
    assert_eq!(t.lifetime_ns, 7 * MS);
    let sum = t.states.total() + t.steal_ns;
    assert_eq!(t.lifetime_ns - sum, 50 * US);
    assert_eq!(s.total.steal_ns, t.steal_ns);
    assert_eq!((s.anomalies, t.inferred_runs, t.unplaced_runs), (0, 0, 0));
}

#[test]
fn with_counters_a_run_cut_by_the_window_is_charged_in_proportion() {
    // --since 2.6 ms: the first run (2.1..3.1 ms, 900 µs charged) is half
    // inside; --until 5.55 ms: the third (5.5..6.0, 450 µs) a tenth inside.
    let recs = trace(2, MS, &[(101, 'S')], &counted_runs(), 8 * MS);
    let opts = Options {
        since_ns: Some(1_600 * US),
        until_ns: Some(4_550 * US),
        ..Default::default()
    };
    let s = analyze(&recs, opts).0;
    let t = thread(&s, 101);
    assert_eq!(t.on_cpu_ns, (450 + 1_000 + 45) * US);
    assert_eq!(t.steal_ns, (50 + 5) * US);
    // The waits end at their switch-ins and began the kernel's wait before.
    assert_eq!(t.states.runnable_ns, (30 + 440) * US);
    assert_eq!((t.voluntary_switches, t.involuntary_switches), (1, 1));
}

/// A thread first seen at a wakeup (its process joined the trace): the
/// kernel banked part of the wait at a migration (`sched_info_dequeue`),
/// so the switch-in's "queued since" misses it while its run delay has
/// it. The wakeup's run delay is where the thread's waits are counted
/// from; without it, the first wait read 1 ms short (the cgroup test's
/// 72 µs and 1.58 ms).
#[test]
fn a_wait_banked_at_a_migration_counts_from_the_wakeups_run_delay() {
    let a = task(101);
    let ev = vec![
        with_wakee_run_delay(wakeup(2 * MS, 0, task(7), a, false), 5 * MS),
        Event {
            ts: 3 * MS,
            cpu: 0,
            kind: EventKind::Migrate {
                task: a,
                from: 0,
                to: 1,
            },
        },
        // 1 ms waited on CPU 0 (banked at the move), 1 ms on CPU 1.
        in_counters(switch(4 * MS, 1, task(0), 0, a), 10 * MS, 7 * MS, MS),
        out_counters(switch(5 * MS, 1, a, S, task(0)), 11 * MS, MS, 1, 0),
        with_wakee_run_delay(wakeup(6 * MS, 0, task(7), a, false), 7 * MS),
        in_counters(
            switch(6 * MS + 300 * US, 0, task(0), 0, a),
            11 * MS,
            7 * MS + 300 * US,
            300 * US,
        ),
        out_counters(
            switch(7 * MS, 0, a, S, task(0)),
            11 * MS + 700 * US,
            700 * US,
            2,
            0,
        ),
    ];
    let recs = trace(2, MS, &[], &ev, 8 * MS);
    let s = analyze(&recs, Options::default()).0;
    let t = thread(&s, 101);
    assert_eq!(t.states.runnable_ns, 2 * MS + 300 * US);
    assert_eq!(t.wait.total_ns, 2 * MS + 300 * US);
    assert_eq!(t.wait.count, 2);
    assert_eq!(s.anomalies, 0);
}

/// The kernel queued a sleeping thread again in its accounting (its
/// dequeue was delayed, and the load balancer moved it): `run_delay` counts
/// from then, 20 ms before the wakeup, which finds `last_queued` set. The
/// runnable time is the 4 ms since the wakeup, the thread slept until it,
/// and the 20 ms are reported apart, so that the two add up to the growth
/// of `run_delay` (24 ms). A later wakeup that finds the kernel counting
/// too, whose wait the kernel counts no longer than the time since it, is
/// all run-queue wait. Without the flag (an older trace), the kernel's
/// figure wins and the sleep gives way to it, as before.
#[test]
fn a_wait_the_kernel_began_while_the_thread_slept_is_reported_apart() {
    let a = task(101);
    let ev = |queued: bool| {
        let woken = |e| if queued { found_queued(e) } else { e };
        vec![
            wakeup(1_500 * US, 1, task(7), a, false),
            in_counters(switch(2 * MS, 0, task(0), 0, a), 10 * MS, 5 * MS, 500 * US),
            out_counters(switch(3 * MS, 0, a, S, task(0)), 11 * MS, MS, 1, 0),
            woken(wakeup(30 * MS, 1, task(7), a, false)),
            in_counters(switch(34 * MS, 0, task(0), 0, a), 11 * MS, 29 * MS, 24 * MS),
            out_counters(switch(35 * MS, 0, a, S, task(0)), 12 * MS, MS, 2, 0),
            woken(wakeup(40 * MS, 1, task(7), a, false)),
            in_counters(switch(42 * MS, 0, task(0), 0, a), 12 * MS, 31 * MS, 2 * MS),
            out_counters(switch(43 * MS, 0, a, S, task(0)), 13 * MS, MS, 3, 0),
        ]
    };
    let recs = trace(2, MS, &[(101, 'S')], &ev(true), 50 * MS);
    let s = analyze(&recs, Options::default()).0;
    let t = thread(&s, 101);
    assert_eq!(t.run_delay_asleep_ns, 20 * MS);
    assert_eq!(s.total.run_delay_asleep_ns, 20 * MS);
    assert_eq!(t.states.runnable_ns, 500 * US + 4 * MS + 2 * MS);
    // With it, the growth of `run_delay` since the first switch-in.
    assert_eq!(
        t.states.runnable_ns + t.run_delay_asleep_ns,
        26 * MS + 500 * US
    );
    // Asleep from 1 to 1.5 ms, from 3 to 30 ms, from 35 to 40 ms and from
    // 43 ms to the end.
    assert_eq!(t.states.sleeping_ns, 500 * US + 27 * MS + 5 * MS + 7 * MS);
    assert_eq!(t.wait.count, 3);
    assert_eq!(t.wait.total_ns, t.states.runnable_ns);
    assert_eq!(t.wait.max_ns, 4 * MS);
    assert_eq!(s.anomalies, 0);
    assert_tiles(&s);
    let text = crate::export::text::render(&s);
    assert!(
        text.contains("the kernel counted 20.0 ms of sleep as run-queue wait"),
        "{text}"
    );
    let json = crate::export::json::to_value(&s);
    assert_eq!(json["threads"][0]["run_delay_asleep_ns"], 20 * MS);
    assert_eq!(json["totals"]["run_delay_asleep_ns"], 20 * MS);

    let recs = trace(2, MS, &[(101, 'S')], &ev(false), 50 * MS);
    let s = analyze(&recs, Options::default()).0;
    let t = thread(&s, 101);
    assert_eq!(t.run_delay_asleep_ns, 0);
    assert_eq!(t.states.runnable_ns, 26 * MS + 500 * US);
    assert_eq!(t.states.sleeping_ns, 500 * US + 7 * MS + 5 * MS + 7 * MS);
    assert!(!crate::export::text::render(&s).contains("sleep as run-queue wait"));
}

/// A thread asleep to the end whose `run_delay` grew meanwhile, with no run
/// (its runtime did not grow): the kernel banked sleep at a move of the
/// sleeping task (`sched_info_dequeue` at a migration adds the wait it
/// thinks under way). No switch-in reports it; the end snapshot does, and
/// it is sleep, not a wait. Had the thread run (its runtime grew, a run
/// whose switch-in the stream lacked), the growth is its wait before that
/// run, as before.
#[test]
fn sleep_the_kernel_banked_by_the_end_snapshot_is_reported_apart() {
    let a = task(101);
    let ev = vec![
        in_counters(switch(2 * MS, 0, task(0), 0, a), 10 * MS, 5 * MS, 0),
        out_counters(switch(3 * MS, 0, a, S, task(0)), 11 * MS, MS, 1, 0),
    ];
    let mut recs = trace(2, MS, &[(101, 'S')], &ev, 20 * MS);
    snapshot_before_end(&mut recs, 19 * MS, 101, (11 * MS, 8 * MS), (1, 1, 0));
    let s = analyze(&recs, Options::default()).0;
    let t = thread(&s, 101);
    assert_eq!(t.run_delay_asleep_ns, 3 * MS);
    assert_eq!(t.states.runnable_ns, 0);
    assert_eq!(t.states.sleeping_ns, MS + 17 * MS);
    assert_eq!(s.anomalies, 0);

    let mut recs = trace(2, MS, &[(101, 'S')], &ev, 20 * MS);
    snapshot_before_end(
        &mut recs,
        19 * MS,
        101,
        (11 * MS + 500 * US, 8 * MS),
        (2, 1, 1),
    );
    let s = analyze(&recs, Options::default()).0;
    let t = thread(&s, 101);
    assert_eq!(t.run_delay_asleep_ns, 0);
    assert_eq!(t.states.runnable_ns, 3 * MS);
}

#[test]
fn a_switch_out_without_its_switch_in_is_an_inferred_run() {
    let a = task(101);
    let ev = vec![
        in_counters(switch(2 * MS, 0, task(0), 0, a), 10 * MS, 5 * MS, 0),
        out_counters(switch(3 * MS, 0, a, S, task(0)), 11 * MS, MS, 1, 0),
        // Woken and switched in on CPU 1 with neither in the stream; it
        // ran 700 µs on the run-queue clock (650 µs charged) and was
        // preempted at 5 ms.
        out_counters(
            switch(5 * MS, 1, a, 0, task(7)),
            11 * MS + 650 * US,
            700 * US,
            1,
            1,
        ),
        // Back at 6 ms: it waited 20 µs before the inferred run and 1 ms
        // since its preemption.
        in_counters(
            switch(6 * MS, 1, task(7), 0, a),
            11 * MS + 650 * US,
            5 * MS + 1_020 * US,
            MS,
        ),
        out_counters(
            switch(7 * MS, 1, a, S, task(0)),
            12 * MS + 650 * US,
            MS,
            2,
            1,
        ),
    ];
    let recs = trace(2, MS, &[(101, 'S')], &ev, 8 * MS);
    let opts = Options {
        keep_timeline: true,
        ..Default::default()
    };
    let (s, tl) = analyze(&recs, opts);
    let tl = tl.unwrap();
    let t = thread(&s, 101);
    assert_eq!(s.anomalies, 0);
    assert_eq!((t.inferred_runs, t.inferred_ns), (1, 650 * US));
    assert_eq!(s.inferred_per_cpu, [0, 1]);
    assert_eq!(t.on_cpu_ns, (1_000 + 650 + 1_000) * US);
    assert_eq!(t.steal_ns, 50 * US);
    assert_eq!(t.states.runnable_ns, 1_020 * US);
    assert_eq!((t.voluntary_switches, t.involuntary_switches), (2, 1));
    assert_eq!(t.cpus.get(&1), Some(&(1_650 * US)));
    let runs: Vec<(u64, u64, bool)> = tl
        .thread_segments(101)
        .filter(|g| matches!(g.state, SegState::Running { .. }))
        .map(|g| (g.start, g.end, g.inferred))
        .collect();
    assert_eq!(
        runs,
        [
            (2 * MS, 3 * MS, false),
            (4_300 * US, 5 * MS, true),
            (6 * MS, 7 * MS, false)
        ]
    );
    // Before the inferred run it slept (its wakeup is not in the stream
    // either), after it it waited.
    let before: Vec<SegState> = tl
        .thread_segments(101)
        .filter(|g| g.start >= 3 * MS && g.end <= 6 * MS)
        .map(|g| g.state)
        .collect();
    assert_eq!(
        before,
        [
            SegState::Sleeping,
            SegState::Running { cpu: 1 },
            SegState::Runnable
        ]
    );
}

#[test]
fn with_wakeups_a_wakeup_missing_from_the_stream_is_put_back_and_counted() {
    let a = task(101);
    let ev = vec![
        in_counters(switch(2 * MS, 0, task(0), 0, a), 10 * MS, 5 * MS, 0),
        out_counters(switch(3 * MS, 0, a, S, task(0)), 11 * MS, MS, 1, 0),
        // No wakeup in the stream; the kernel counted 300 µs of waiting.
        in_counters(
            switch(5 * MS, 1, task(7), 0, a),
            11 * MS,
            5 * MS + 300 * US,
            300 * US,
        ),
        out_counters(switch(6 * MS, 1, a, S, task(0)), 12 * MS, MS, 2, 0),
    ];
    let s = analyze(
        &trace(2, MS, &[(101, 'S')], &ev, 8 * MS),
        Options::default(),
    )
    .0;
    let t = thread(&s, 101);
    assert_eq!(s.anomalies, 0);
    assert_eq!(s.missing_wakeups_per_cpu, [0, 1]);
    assert_eq!(t.states.runnable_ns, 300 * US);
    assert_eq!(t.states.sleeping_ns, (1_000 + 1_700 + 2_000) * US);
    assert_eq!(t.wait_after_wakeup.total_ns, 300 * US);
}

#[test]
fn a_run_whose_switch_in_the_stream_lacked_after_proc_saw_the_thread_asleep_is_inferred() {
    // /proc saw 102 asleep at 1.2 ms. Its wakeup and switch-in are not in
    // the stream (both were a PID 1 task's doing, which the kernel's
    // stream hides); its switch-out at 5 ms shows a 400 µs run. The run
    // began after /proc saw it asleep, so its switch-in is what is
    // missing: an inferred run, not a contradiction. (A soak run of
    // `--all` counted an anomaly on such a thread, a process PID 1 runs.)
    let b = task(102);
    let ev = [out_counters(
        switch(5 * MS, 0, b, S, task(0)),
        50 * MS + 400 * US,
        400 * US,
        10,
        4,
    )];
    let mut recs = trace(1, MS, &[(102, 'S')], &ev, 8 * MS);
    recs.insert(
        2,
        counters_record(1_200 * US, (102, TARGET), (50 * MS, 7 * MS), (0, 9, 4)),
    );
    let s = analyze(&recs, Options::default()).0;
    assert_eq!(s.anomalies, 0, "{:?}", s.threads);
    let t = thread(&s, 102);
    assert_eq!(t.on_cpu_ns, 400 * US);
    assert_eq!((t.inferred_runs, t.unplaced_runs), (1, 0));
    assert_eq!(s.inferred_per_cpu, [1]);
    assert_eq!(t.states.total(), t.lifetime_ns);
}

/// An end snapshot is a thread's only where it is that thread: one that
/// ended may have left its TID to another process's thread by the read,
/// and a TID read under another process is not the thread the analysis has.
#[test]
fn a_snapshot_of_an_ended_thread_or_another_process_is_ignored() {
    let (a, b) = (task(101), task(102));
    let ev = [
        in_counters(switch(2 * MS, 0, task(0), 0, a), 10 * MS, MS, 0),
        // 101 exits at 3 ms.
        in_counters(
            out_counters(switch(3 * MS, 0, a, 0x80, b), 11 * MS, MS, 1, 0),
            19 * MS,
            0,
            0,
        ),
        out_counters(switch(4 * MS, 0, b, S, task(0)), 20 * MS, MS, 1, 0),
    ];
    let mut recs = trace(1, MS, &[(101, 'R'), (102, 'R')], &ev, 9 * MS);
    // Its TID reused: more runtime and waiting than it ever had.
    snapshot_before_end(&mut recs, 9 * MS, 101, (50 * MS, 9 * MS), (9, 9, 9));
    // 102's TID read in another process.
    let end = recs.pop().unwrap();
    recs.push(counters_record(
        9 * MS,
        (102, 555),
        (60 * MS, 9 * MS),
        (9, 9, 9),
    ));
    recs.push(end);
    let s = analyze(&recs, Options::default()).0;
    for tid in [101, 102] {
        let t = thread(&s, tid);
        assert_eq!(
            (t.on_cpu_ns, t.unplaced_runs, t.anomalies),
            (MS, 0, 0),
            "{tid}"
        );
        assert_eq!(t.states.runnable_ns, 0, "{tid}");
    }
}

#[test]
fn a_proc_snapshot_measures_a_run_in_progress_at_either_end() {
    let b = task(102);
    let snap = |ts, runtime, run_delay, nv, niv| {
        counters_record(ts, (102, TARGET), (runtime, run_delay), (0, nv, niv))
    };
    let ev = [
        // Running when tracing starts (1 ms; /proc read at 1.2 ms), off at
        // 2 ms: 700 µs charged since the read, 200 µs before it by the
        // timestamps.
        out_counters(
            switch(2 * MS, 0, b, S, task(0)),
            50 * MS + 700 * US,
            5 * MS,
            10,
            4,
        ),
        in_counters(
            switch(3 * MS, 0, task(0), 0, b),
            50 * MS + 700 * US,
            7 * MS,
            0,
        ),
        // Still running at the end (8 ms); /proc read at 7.5 ms.
    ];
    let mut recs = trace(2, MS, &[(102, 'R')], &ev, 8 * MS);
    recs.insert(2, snap(1_200 * US, 50 * MS, 7 * MS, 9, 4));
    let end = recs.pop().unwrap();
    recs.push(snap(7_500 * US, 54 * MS + 700 * US, 7 * MS, 10, 4));
    recs.push(end);
    let s = analyze(&recs, Options::default()).0;
    let t = thread(&s, 102);
    assert_eq!(t.on_cpu_ns, (200 + 700 + 4_000 + 500) * US);
    // The snapshot's switch counts are the base: one voluntary switch.
    assert_eq!((t.voluntary_switches, t.involuntary_switches), (1, 0));
    assert_eq!(s.anomalies, 0);
}

/// `/proc` shows a running thread's `se.sum_exec_runtime` as of the last
/// tick (or scheduler event), up to a tick before the read: the growth
/// from such a snapshot to the next record is more than the wall time
/// between them, and the excess is time the timestamps already charge
/// before the snapshot. Seen under `--all` on a CPU-bound compiler thread:
/// 3.45 ms counted twice, an anomaly.
#[test]
fn a_snapshot_of_a_running_thread_older_than_its_stamp_counts_no_time_twice() {
    let b = task(102);
    let ev = [
        // Running since 20 ms before its switch-out at 7 ms, so from the
        // trace's start (1 ms): 6 ms on the CPU in the window.
        out_counters(switch(7 * MS, 0, b, S, task(0)), 55 * MS, 20 * MS, 1, 0),
    ];
    let mut recs = trace(2, MS, &[(102, 'R')], &ev, 8 * MS);
    // Stamped at 5 ms, the runtime as the tick at 2 ms left it.
    recs.insert(
        2,
        counters_record(5 * MS, (102, TARGET), (50 * MS, 5 * MS), (0, 0, 0)),
    );
    let s = analyze(&recs, Options::default()).0;
    let t = thread(&s, 102);
    assert_eq!((t.on_cpu_ns, t.anomalies, s.anomalies), (6 * MS, 0, 0));
    assert_tiles(&s);
}

/// A snapshot is stamped when its read ended, and a read can stall (the
/// reader preempted, its vCPU stolen) while the thread runs on another CPU:
/// it can then say less than records stamped before it. Its older value
/// must not replace theirs, or the next record would show a run that was
/// already charged (a quiet soak run of the attach test showed 32 ms twice
/// counted, one anomaly).
#[test]
fn a_snapshot_read_before_the_latest_record_does_not_count_a_run_twice() {
    let b = task(102);
    let ev = [
        in_counters(switch(2 * MS, 0, task(0), 0, b), 10 * MS, MS, 0),
        out_counters(switch(3 * MS, 0, b, S, task(0)), 11 * MS, MS, 1, 0),
        // Read before the run at 2 ms, stamped at 3.5 ms.
        in_counters(switch(5 * MS, 0, task(0), 0, b), 11 * MS, MS, 0),
        out_counters(switch(6 * MS, 0, b, S, task(0)), 12 * MS, MS, 2, 0),
    ];
    let mut recs = trace(1, MS, &[(102, 'S')], &ev, 8 * MS);
    recs.insert(
        2,
        counters_record(3_500 * US, (102, TARGET), (10 * MS, MS), (0, 0, 0)),
    );
    let s = analyze(&recs, Options::default()).0;
    let t = thread(&s, 102);
    assert_eq!((t.on_cpu_ns, t.unplaced_runs, t.anomalies), (2 * MS, 0, 0));
    assert_eq!(t.voluntary_switches, 2);
    assert_tiles(&s);
}

#[test]
fn switch_counts_come_from_the_kernel_even_when_a_switch_out_is_lost() {
    let a = task(101);
    let ev = [
        in_counters(switch(2 * MS, 0, task(0), 0, a), 10 * MS, 5 * MS, 0),
        out_counters(switch(3 * MS, 0, a, S, task(0)), 11 * MS, MS, 1, 0),
        in_counters(switch(4 * MS, 0, task(0), 0, a), 11 * MS, 5 * MS, 0),
        // Lost here: a switch-out at 5 ms and the switch-in at 5.5 ms.
        out_counters(
            switch(6 * MS, 0, a, S, task(0)),
            12 * MS + 500 * US,
            500 * US,
            3,
            0,
        ),
    ];
    let s = run(2, &[(101, 'S')], &ev, 8 * MS);
    let t = thread(&s, 101);
    assert_eq!(t.voluntary_switches, 3);
    // The run from 4 ms has the kernel's charge up to its record at 6 ms,
    // the lost one's included.
    assert_eq!(t.on_cpu_ns, (1_000 + 1_500) * US);
}

/// Switch-outs lost after a thread's last record (the ring buffer was full
/// while its reader starved) are in the kernel's counts at the end
/// snapshot: the totals count them.
#[test]
fn switches_lost_after_the_last_record_are_counted_from_the_end_snapshot() {
    let a = task(101);
    let ev = [
        in_counters(switch(2 * MS, 0, task(0), 0, a), 10 * MS, 5 * MS, 0),
        out_counters(switch(3 * MS, 0, a, S, task(0)), 11 * MS, MS, 1, 0),
        // Lost: runs from 4 to 5 ms (it slept after) and from 6 to 6.5 ms
        // (it was preempted).
    ];
    let mut recs = trace(2, MS, &[(101, 'S')], &ev, 8 * MS);
    snapshot_before_end(&mut recs, 7 * MS, 101, (12_500 * US, 6 * MS), (3, 2, 1));
    let s = analyze(&recs, Options::default()).0;
    let t = thread(&s, 101);
    assert_eq!((t.voluntary_switches, t.involuntary_switches), (2, 1));
    assert_eq!(t.on_cpu_ns, 2_500 * US);
}

#[test]
fn a_wait_before_an_inferred_run_is_counted_once() {
    let a = task(101);
    let ev = vec![
        in_counters(switch(2 * MS, 0, task(0), 0, a), 10 * MS, 5 * MS, 0),
        // Preempted at 3 ms; switched in again at 3.5 ms with no record,
        // preempted again at 4 ms.
        out_counters(switch(3 * MS, 0, a, 0, task(7)), 11 * MS, MS, 0, 1),
        out_counters(
            switch(4 * MS, 0, a, 0, task(7)),
            11_500 * US,
            500 * US,
            0,
            2,
        ),
        // Back at 5 ms: run_delay grew by the 500 µs before the inferred
        // run and the 1 ms after it, and that is all the waiting it did.
        in_counters(
            switch(5 * MS, 0, task(7), 0, a),
            11_500 * US,
            6_500 * US,
            MS,
        ),
        out_counters(switch(6 * MS, 0, a, S, task(0)), 12_500 * US, MS, 1, 2),
    ];
    let s = run(2, &[(101, 'S')], &ev, 8 * MS);
    let t = thread(&s, 101);
    assert_eq!((t.inferred_runs, t.inferred_ns), (1, 500 * US));
    assert_eq!(t.on_cpu_ns, 2_500 * US);
    assert_eq!(t.states.runnable_ns, 1_500 * US);
    assert_eq!((t.voluntary_switches, t.involuntary_switches), (1, 2));
}

#[test]
fn interrupt_wakeups_are_credited_to_their_context_never_to_the_interrupted_task() {
    // 101 sleeps in nanosleep on CPU 0 while a busy loop of another
    // process (500) runs there; its timer fires three times in the busy
    // loop's context, once on an idle CPU 1; 102 wakes it once from a task.
    let sh = Task {
        tgid: 500,
        ..task(500)
    };
    let mut ev = vec![];
    for (i, (cpu, running)) in [(0, sh), (0, sh), (1, task(0)), (0, sh)]
        .into_iter()
        .enumerate()
    {
        let t = 2_000 + i as u64 * 1_000;
        ev.push(timer_wakeup(t, cpu, running, task(101)));
        ev.push(switch(t + 100, cpu, running, 0, task(101)));
        ev.push(switch(t + 200, cpu, task(101), S, running));
    }
    ev.push(from_process(
        wakeup(
            6_500,
            1,
            Task {
                tgid: 600,
                ..task(601)
            },
            task(101),
            false,
        ),
        "client",
    ));
    ev.push(switch(6_600, 1, task(0), 0, task(101)));
    ev.push(switch(6_700, 1, task(101), S, task(0)));
    ev.insert(0, switch(1_500, 0, task(101), S, sh));
    let s = run(2, &[(101, 'R')], &ev, 10_000);
    let t = thread(&s, 101);
    let got: Vec<(String, u32, u64)> = t
        .wakers
        .iter()
        .map(|w| (w.describe(), w.tid, w.count))
        .collect();
    assert_eq!(
        got,
        vec![
            ("timer hrtimer_wakeup".to_string(), 0, 4),
            (
                "other-601 (601) of process client (600)".to_string(),
                601,
                1
            ),
        ]
    );
    assert_eq!(t.wakers[0].context.kind_name(), "timer");
    assert_eq!(t.wakers[1].process.as_deref(), Some("client"));
    assert_eq!(s.anomalies, 0);
    assert_tiles(&s);
}

#[test]
fn a_selection_recomputes_every_total_share_count_and_profile() {
    // 101 on CPU 0 1000..5000, 102 on CPU 1 3000..7000, 103 on CPU 0
    // 5000..8000; window 1000..9000. Selecting 102 alone: its own figures,
    // no parallel time (it never ran beside another selected thread), and
    // only the events that involve it.
    let ev = [
        switch(3_000, 1, task(0), 0, task(102)),
        switch(5_000, 0, task(101), S, task(103)),
        switch(7_000, 1, task(102), S, task(0)),
        switch(8_000, 0, task(103), S, task(0)),
    ];
    let recs = trace(2, 1_000, &[(101, 'R'), (102, 'R'), (103, 'S')], &ev, 9_000);
    let all = analyze(&recs, Options::default()).0;
    assert_eq!(all.total.parallelism.parallel_ns, 4_000);
    let filter = filter::ThreadFilter {
        tids: vec![102],
        ..Default::default()
    };
    let selection = filter.select(&all).unwrap();
    assert_eq!(selection.of_threads, 3);
    let opts = Options {
        selection: Some(selection),
        ..Default::default()
    };
    let s = analyze(&recs, opts).0;
    let tids: Vec<u32> = s.threads.iter().map(|t| t.tid).collect();
    assert_eq!(tids, vec![102]);
    assert_eq!(s.total.threads_seen, 1);
    assert_eq!(s.total.on_cpu_ns, 4_000);
    assert_eq!(s.processes.len(), 1);
    assert_eq!(s.processes[0].on_cpu_ns, 4_000);
    let p = &s.total.parallelism;
    assert_eq!(p.running_ns, vec![4_000, 4_000, 0]);
    assert_eq!(p.parallel_ns, 0);
    assert_eq!(p.busy_ns, 4_000);
    // 102 waited 1000..3000 with no other selected thread wanting a CPU.
    assert_eq!(p.time_sliced_ns, 0);
    assert_eq!(s.events, 2);
    assert_eq!(all.events, 4);
    assert_eq!(thread(&s, 102), thread(&all, 102));
    assert_eq!(s.selection.as_ref().unwrap().describe(), "--tid 102");
    assert_tiles(&s);
}

/// A chain that runs through a thread the filters left out still names
/// it, as the unfiltered report does (it read "thread 101").
#[test]
fn a_selection_still_names_the_threads_it_left_out() {
    // 101 runs on CPU 0 and wakes 102, which then runs on CPU 1.
    let ev = [
        switch(2_000, 0, task(0), 0, task(101)),
        wakeup(3_000, 0, task(101), task(102), false),
        switch(3_500, 1, task(0), 0, task(102)),
        switch(4_000, 0, task(101), S, task(0)),
        switch(5_000, 1, task(102), S, task(0)),
    ];
    let recs = trace(2, 1_000, &[(101, 'R'), (102, 'S')], &ev, 9_000);
    let all = analyze(&recs, Options::default()).0;
    let labels = |s: &Summary| -> Vec<String> {
        thread(s, 102)
            .chains
            .iter()
            .map(|(c, _)| s.chain_label(c))
            .collect()
    };
    assert_eq!(labels(&all), vec!["worker-101 101".to_string()]);
    let filter = filter::ThreadFilter {
        tids: vec![102],
        ..Default::default()
    };
    let opts = Options {
        selection: filter.select(&all),
        ..Default::default()
    };
    let s = analyze(&recs, opts).0;
    assert_eq!(s.threads.len(), 1);
    assert_eq!(labels(&s), labels(&all));
}

/// The wait histograms cover the runnable time: a wait still under way
/// at the window's end counts up to the end, as a slice still running
/// there counts as a slice. `--until` cut one such wait out of `wait`
/// while `runnable` kept it.
#[test]
fn a_wait_under_way_at_the_end_is_in_the_wait_figures() {
    // 101 holds CPU 0 from 2000; 102 is woken onto it at 3000 and
    // switched in at 6000. Up to 5000, 102 is still waiting.
    let ev = [
        switch(2_000, 0, task(0), 0, task(101)),
        wakeup(3_000, 1, task(7), task(102), false),
        switch(6_000, 0, task(101), 0, task(102)),
        switch(7_000, 0, task(102), S, task(0)),
    ];
    let recs = trace(2, 1_000, &[(101, 'R'), (102, 'S')], &ev, 9_000);
    // The same trace stopped at 5000, before the switch-in.
    let cut = trace(2, 1_000, &[(101, 'R'), (102, 'S')], &ev[..2], 5_000);
    for (recs, until, wait) in [
        (&recs, None, 3_000),
        (&recs, Some(4_000), 2_000),
        (&cut, None, 2_000),
    ] {
        let opts = Options {
            until_ns: until,
            ..Default::default()
        };
        let s = analyze(recs, opts).0;
        let t = thread(&s, 102);
        assert_eq!(t.states.runnable_ns, wait, "until {until:?}");
        assert_eq!(t.wait.total_ns, wait, "until {until:?}");
        assert_eq!(t.wait.count, 1, "until {until:?}");
        assert_eq!(t.wait_after_wakeup.total_ns, wait, "until {until:?}");
        assert_tiles(&s);
    }
}

#[test]
fn a_window_counts_only_its_own_events() {
    // Window 1000..9000; --since 2000 --until 5000 keeps 3000..6000.
    let ev = [
        switch(2_000, 0, task(0), 0, task(101)),
        switch(4_000, 0, task(101), S, task(0)),
        wakeup(4_500, 1, task(7), task(101), false),
        switch(6_500, 0, task(0), 0, task(101)),
    ];
    let recs = trace(1, 1_000, &[(101, 'R')], &ev, 9_000);
    let opts = Options {
        since_ns: Some(2_000),
        until_ns: Some(5_000),
        ..Default::default()
    };
    let s = analyze(&recs, opts).0;
    assert_eq!(s.events, 2);
    assert_eq!(analyze(&recs, Options::default()).0.events, 4);
}

/// `--cgroup`: a process is traced from its `join` on, and only then; a
/// cgroup that held no process at the start names PID 0, which is the
/// idle task and never traced.
#[test]
fn a_process_that_joins_is_traced_from_its_join_on() {
    let joiner = Task {
        tid: 501,
        tgid: 500,
        ..task(501)
    };
    let ev = [
        // Before the join: not a target, whatever the stream holds.
        switch(2_000, 1, task(0), 0, joiner),
        switch(2_300, 1, joiner, S, task(0)),
        Event {
            ts: 2_500,
            cpu: 0,
            kind: EventKind::Join { task: joiner },
        },
        switch(3_000, 1, task(0), 0, joiner),
        switch(3_700, 1, joiner, S, task(0)),
    ];
    let mut recs = trace(2, 1_000, &[], &ev, 4_000);
    if let Record::Header(h) = &mut recs[0] {
        h.target_pid = 0;
        h.target_comm = String::new();
        h.cgroup = Some(crate::trace::TargetCgroup {
            path: "/sys/fs/cgroup/app".into(),
            id: 42,
        });
    }
    let (s, _) = analyze(&recs, Options::default());
    let tgids: Vec<u32> = s.processes.iter().map(|p| p.tgid).collect();
    assert_eq!(tgids, [500], "the joiner, and not the idle task");
    assert_eq!(thread(&s, 501).on_cpu_ns, 700);
    assert_eq!(s.total.on_cpu_ns, 700);
    assert_eq!(s.targets_label(), "cgroup /sys/fs/cgroup/app (1 process)");
}

/// `--comm` with no process of the name at the start: the one that took
/// it later is traced from its `join`, the label says what was asked, and
/// the header's pattern survives both trace formats (version 3).
#[test]
fn a_comm_trace_names_its_pattern_and_keeps_it_in_both_formats() {
    let joiner = Task {
        tid: 601,
        tgid: 601,
        ..task(601)
    };
    let ev = [
        Event {
            ts: 2_500,
            cpu: 0,
            kind: EventKind::Join { task: joiner },
        },
        switch(3_000, 1, task(0), 0, joiner),
        switch(3_400, 1, joiner, S, task(0)),
    ];
    let mut recs = trace(2, 1_000, &[], &ev, 4_000);
    if let Record::Header(h) = &mut recs[0] {
        h.target_pid = 0;
        h.target_comm = String::new();
        h.comm_pattern = Some("web*".into());
        h.version = crate::trace::schema_version(h);
        assert_eq!(h.version, crate::trace::TRACE_SCHEMA_VERSION);
    }
    let (s, _) = analyze(&recs, Options::default());
    assert_eq!(thread(&s, 601).on_cpu_ns, 400);
    assert_eq!(s.targets_label(), "processes named \"web*\" (1 process)");
    for format in [crate::trace::Format::Jsonl, crate::trace::Format::Binary] {
        let bytes = write_all(format, &recs);
        let mut r = crate::trace::TraceReader::with_format(format, bytes.as_slice());
        let Ok(Some(Record::Header(h))) = r.next_record() else {
            panic!("{format:?}: no header");
        };
        assert_eq!(h.comm_pattern.as_deref(), Some("web*"), "{format:?}");
    }
}

/// A stranger that took the PID of a target that ended shares a switch
/// with a target: the kernel put the target's counters on its own side
/// only (it checks identities), so the stranger is no thread of the trace
/// whatever its TGID.
#[test]
fn a_stranger_with_a_targets_tgid_is_not_traced() {
    let stranger = Task {
        tid: 101,
        tgid: TARGET,
        ..task(101)
    };
    let ev = [
        // The target's thread 101 runs and dies.
        in_counters(switch(2_000, 0, task(0), 0, task(101)), 0, 0, 0),
        out_counters(switch(2_500, 0, task(101), 0x10, task(0)), 500, 0, 1, 0),
        // Thread 102 of the target is preempted by a task with 101's TID
        // and TGID, which the kernel did not take for a target.
        in_counters(switch(3_000, 1, task(0), 0, task(102)), 0, 0, 0),
        out_counters(switch(3_400, 1, task(102), 0, stranger), 400, 0, 0, 1),
        in_counters(switch(3_900, 1, stranger, 0, task(102)), 400, 500, 500),
        out_counters(switch(4_200, 1, task(102), 1, task(0)), 700, 0, 1, 1),
    ];
    let recs = trace(2, 1_000, &[(101, 'S'), (102, 'S')], &ev, 5_000);
    let (s, _) = analyze(&recs, Options::default());
    assert_eq!(
        thread(&s, 101).on_cpu_ns,
        500,
        "the stranger's run is not 101's"
    );
    assert_eq!(thread(&s, 102).on_cpu_ns, 700);
    assert_eq!(s.total.on_cpu_ns, 1_200);
    assert_eq!(s.anomalies, 0, "{s:?}");
}

/// The kernel's stream lacks a switch-out: the thread, last seen going on
/// CPU 0, is taken off it by a switch whose `prev` is another task, and
/// never seen again. The `/proc` read at the end shows what it ran since
/// its switch-in: on-CPU time, unplaced, as at a switch-in after losses.
#[test]
fn runtime_the_stream_never_showed_is_charged_from_the_end_snapshot() {
    let a = task(101);
    let ev = [
        in_counters(switch(2 * MS, 0, task(0), 0, a), 10 * MS, 0, 0),
        // `a` left CPU 0 unseen; a stranger runs there and leaves.
        switch(3 * MS, 0, task(7), S, task(0)),
    ];
    let mut recs = trace(2, MS, &[(101, 'S')], &ev, 5 * MS);
    snapshot_before_end(&mut recs, 4 * MS, 101, (10 * MS + 400 * US, 0), (1, 1, 0));
    let (s, _) = analyze(&recs, Options::default());
    let t = thread(&s, 101);
    assert_eq!(
        t.on_cpu_ns,
        400 * US,
        "the kernel's charge since the switch-in"
    );
    assert_eq!(t.unplaced_runs, 1);
    assert_eq!(s.unplaced_runs, 1);
    assert_eq!(
        t.cpus.values().sum::<u64>(),
        t.on_cpu_ns,
        "per-CPU times add up"
    );
}

#[test]
fn events_before_the_start_say_nothing_of_any_threads_state() {
    // The programs are attached one by one, `sched_switch` last: before
    // the start, 101 wakes 102 on CPU 0 and leaves it unseen, and a
    // stranger switches back to it. Read as a stream, 101 was still
    // running when that switch-in came: an anomaly, in a trace that lost
    // nothing (a full machine showed one or two in every capture).
    let (a, b) = (task(101), task(102));
    let ev = [
        wakeup(200, 0, a, b, false),
        wakeup(400, 0, a, b, false),
        switch(600, 0, task(7), 0, a),
        // The start is at 1_000 (`run`).
        wakeup(2_000, 0, a, b, false),
        switch(3_000, 0, a, S, b),
        switch(7_000, 0, b, S, task(0)),
    ];
    let s = run(2, &[(101, 'R'), (102, 'S')], &ev, 10_000);
    assert_eq!(s.anomalies, 0);
    // Each thread's state at the start is what its first event after it
    // implies: 101 ran from the start (it woke 102 from CPU 0), 102 slept.
    let (ta, tb) = (thread(&s, 101), thread(&s, 102));
    assert_eq!(ta.on_cpu_ns, 2_000);
    assert_eq!(ta.states.sleeping_ns, 7_000);
    assert_eq!(tb.states.sleeping_ns, 1_000 + 3_000);
    assert_eq!(tb.states.runnable_ns, 1_000);
    assert_eq!(tb.on_cpu_ns, 4_000);
    assert_eq!(s.events, 6);
    assert_tiles(&s);
}

#[test]
fn a_process_forked_before_the_start_is_still_followed() {
    // A child forked while the programs were being attached: its events
    // after the start are the target's (the kernel follows it already).
    let mut h = header(1, 1_000);
    h.follow_children = true;
    let child = Task {
        tid: 300,
        tgid: 300,
        comm: Comm::new("child"),
        prio: 120,
    };
    let recs = vec![
        Record::Header(Box::new(h)),
        Record::Event(Event {
            ts: 500,
            cpu: 0,
            kind: EventKind::Fork {
                parent: task(100),
                child,
            },
        }),
        Record::Event(switch(2_000, 0, task(0), 0, child)),
        Record::Event(switch(5_000, 0, child, S, task(0))),
        end(10_000),
    ];
    let s = analyze(&recs, Options::default()).0;
    let t = thread(&s, 300);
    assert_eq!(t.on_cpu_ns, 3_000);
    assert_eq!(s.anomalies, 0);
}

#[test]
fn a_switch_the_stream_lacks_hides_one_threads_switch_out_and_the_next_ones_switch_in() {
    // `b` takes CPU 0 from `a`; the switch from `b` back to `a` is not in
    // the kernel's stream (this kernel hides every event whose current
    // task is PID 1's, so `b` could be a thread of PID 1 under `--all`).
    // `a`'s switch-out shows its run (1 ms on the run-queue clock): the
    // same missing switch ended `b`'s run then, and nothing contradicts.
    let (a, b) = (task(101), task(102));
    let ev = vec![
        in_counters(switch(2 * MS, 0, task(0), 0, a), 10 * MS, 0, 0),
        in_counters(
            out_counters(switch(3 * MS, 0, a, 0, b), 11 * MS, MS, 0, 1),
            20 * MS,
            0,
            0,
        ),
        // Hidden: `b` → `a` at 4 ms.
        out_counters(switch(5 * MS, 0, a, S, task(0)), 12 * MS, MS, 1, 1),
        wakeup(6 * MS, 1, task(7), b, false),
        in_counters(switch(7 * MS, 1, task(0), 0, b), 21 * MS, MS, MS),
        out_counters(switch(8 * MS, 1, b, S, task(0)), 22 * MS, MS, 2, 0),
    ];
    let recs = trace(2, MS, &[(101, 'S'), (102, 'S')], &ev, 9 * MS);
    let s = analyze(&recs, Options::default()).0;
    assert_eq!(s.anomalies, 0, "{:?}", s.threads);
    let (ta, tb) = (thread(&s, 101), thread(&s, 102));
    assert_eq!((ta.inferred_runs, ta.on_cpu_ns), (1, 2 * MS));
    assert_eq!(tb.on_cpu_ns, 2 * MS);
    assert_eq!(s.inferred_per_cpu, [1, 0]);
    // Its charge for the unseen end is the counters' (placed at its next
    // switch-in); the run and the time until its wakeup are unknown.
    assert_eq!(tb.unplaced_runs, 1);
    assert_eq!(tb.states.unknown_ns, 3 * MS);
    assert_eq!(tb.states.total(), tb.lifetime_ns);
}

#[test]
fn a_thread_proc_saw_runnable_and_no_event_involves_was_waiting_if_its_cpu_switched() {
    // `/proc` said R on CPU 0 for 103, and no event involves it before the
    // prelude ends (it waited for a CPU all along, as a low-priority
    // kernel thread can); other threads switched on CPU 0 meanwhile. It
    // was not running there: its switch-out would be in the stream.
    let (a, b) = (task(101), task(102));
    let mut ev = vec![];
    for i in 0..4u64 {
        ev.push(switch(2 * MS + i * 400 * MS, 0, a, 0, b));
        ev.push(switch(2 * MS + i * 400 * MS + 200 * MS, 0, b, 0, a));
    }
    let s = run(2, &[(101, 'R'), (102, 'R'), (103, 'R')], &ev, 1_700 * MS);
    assert_eq!(s.anomalies, 0);
    let t = thread(&s, 103);
    assert_eq!(t.on_cpu_ns, 0);
    assert_eq!(t.states.runnable_ns, t.lifetime_ns);
}

#[test]
fn a_run_that_ends_unseen_in_the_idle_task_is_unknown_time_not_a_contradiction() {
    // `b`'s switch to the idle task is not in the stream (its current task
    // was PID 1's); the idle task has no counters to infer a run from, so
    // the next switch on CPU 0 comes from the idle task while `b` still
    // runs there. Nothing was lost, and the trace has the kernel's
    // counters: the stream lacked a switch; no contradiction.
    let b = task(102);
    let ev = vec![
        in_counters(switch(2 * MS, 0, task(0), 0, b), 20 * MS, 0, 0),
        // Hidden: `b` → idle at 3 ms.
        in_counters(switch(5 * MS, 0, task(0), 0, task(103)), 30 * MS, 0, 0),
        out_counters(switch(6 * MS, 0, task(103), S, task(0)), 31 * MS, MS, 1, 0),
    ];
    let mut recs = trace(1, MS, &[(102, 'S'), (103, 'S')], &ev, 9 * MS);
    snapshot_before_end(&mut recs, 9 * MS, 102, (21 * MS, 0), (1, 1, 0));
    let s = analyze(&recs, Options::default()).0;
    assert_eq!(s.anomalies, 0);
    let t = thread(&s, 102);
    // The run counts as unknown until the thread's next event (none: the
    // end), and its charge is the counters' growth, placed at the end.
    assert_eq!(t.states.unknown_ns, 7 * MS);
    assert_eq!(t.on_cpu_ns, MS);
}

#[test]
fn a_run_that_ended_unseen_on_one_cpu_before_a_switch_in_on_another_is_not_a_contradiction() {
    // `b`'s switch to the idle task on CPU 0 is not in the stream (its
    // current task was PID 1's), and CPU 0 stays idle, so no later switch
    // there ends `b`'s run; `b` is next switched in on CPU 1. Nothing was
    // lost on CPU 0 and the trace has the kernel's counters: the stream
    // lacked a switch; no contradiction. (A soak run of `--all` counted
    // one here, on a thread of PID 1.)
    let b = task(102);
    let ev = vec![
        in_counters(switch(2 * MS, 0, task(0), 0, b), 20 * MS, 0, 0),
        // Hidden: `b` → idle at 3 ms on CPU 0.
        wakeup(6 * MS, 1, task(7), b, false),
        in_counters(switch(7 * MS, 1, task(0), 0, b), 21 * MS, MS, MS),
        // Hidden: `b` → idle at 8 ms on CPU 1.
    ];
    let mut recs = trace(2, MS, &[(102, 'S')], &ev, 9 * MS);
    snapshot_before_end(&mut recs, 9 * MS, 102, (22 * MS, MS), (2, 2, 0));
    let s = analyze(&recs, Options::default()).0;
    assert_eq!(s.anomalies, 0, "{:?}", s.threads);
    let t = thread(&s, 102);
    // The first run is the counters' charge, unplaced (its end is not in
    // the stream); the
    // second runs from its switch-in to the end snapshot, not 2 to 7 ms by
    // the timestamps.
    assert_eq!(t.on_cpu_ns, 2 * MS);
    assert_eq!(t.unplaced_runs, 1);
    assert_eq!(t.states.runnable_ns, MS, "the kernel's wait");
    assert_eq!(t.states.total(), t.lifetime_ns);
}

/// The wait that ended in the last run, an inferred one, is in the end
/// snapshot's `run_delay` only: in the runnable time and in the wait
/// figures alike (a root test compares the two to the nanosecond), with
/// wakeups recorded or not.
/// A thread that exits in a run whose switch-in the stream lacked: its
/// exit record's `run_delay` has the wait before that run, which nothing
/// after it can show (no switch-in record follows, no snapshot reads a
/// thread that is gone).
#[test]
fn a_wait_before_an_inferred_run_the_thread_exits_in_is_charged_from_its_exit() {
    let a = task(101);
    let exit = |run_delay_ns| Event {
        ts: 4_500 * US,
        cpu: 0,
        kind: EventKind::Exit {
            task: a,
            run_delay_ns,
        },
    };
    for (wakeups, run_delay) in [(true, Some(MS)), (false, Some(MS)), (true, None)] {
        let ev = vec![
            in_counters(switch(2 * MS, 0, task(0), 0, a), 10 * MS, 0, 0),
            out_counters(switch(3 * MS, 0, a, 0, task(7)), 11 * MS, MS, 0, 1),
            // Switched in again at 4 ms, unseen; exits at 4.5 ms.
            exit(run_delay),
            out_counters(switch(5 * MS, 0, a, 0x80, task(0)), 12 * MS, MS, 0, 2),
        ];
        let mut recs = trace(1, MS, &[(101, 'S')], &ev, 9 * MS);
        if let Record::Header(h) = &mut recs[0] {
            h.wakeups = wakeups;
        }
        let s = analyze(&recs, Options::default()).0;
        let t = thread(&s, 101);
        let what = format!("wakeups {wakeups}, run delay {run_delay:?}");
        assert_eq!(t.inferred_runs, 1, "{what}");
        assert_eq!(t.on_cpu_ns, 2 * MS, "{what}");
        // Without the exit's figure, the wait is unknown to the kernel's
        // accounting (as in traces written before exits carried it).
        let wait = if run_delay.is_some() { MS } else { 0 };
        assert_eq!(t.states.runnable_ns, wait, "{what}");
        assert_eq!(t.wait.total_ns, wait, "{what}");
    }
}

#[test]
fn a_wait_before_the_last_inferred_run_is_charged_from_the_end_snapshot() {
    // 101 is preempted at 3 ms and waits 1 ms; its switch-in at 4 ms is
    // not in the stream, its switch-out at 5 ms shows the run. No switch-in
    // record of it follows: the end snapshot's `run_delay` has the wait.
    let a = task(101);
    let ev = vec![
        in_counters(switch(2 * MS, 0, task(0), 0, a), 10 * MS, 0, 0),
        out_counters(switch(3 * MS, 0, a, 0, task(7)), 11 * MS, MS, 0, 1),
        out_counters(switch(5 * MS, 0, a, S, task(0)), 12 * MS, MS, 1, 1),
    ];
    for wakeups in [true, false] {
        let mut recs = trace(1, MS, &[(101, 'S')], &ev, 9 * MS);
        if let Record::Header(h) = &mut recs[0] {
            h.wakeups = wakeups;
        }
        snapshot_before_end(&mut recs, 9 * MS, 101, (12 * MS, MS), (2, 1, 1));
        let s = analyze(&recs, Options::default()).0;
        let t = thread(&s, 101);
        assert_eq!(t.inferred_runs, 1, "wakeups {wakeups}");
        assert_eq!(t.states.runnable_ns, MS, "the kernel's wait ({wakeups})");
        assert_eq!(t.on_cpu_ns, 2 * MS, "wakeups {wakeups}");
        assert_eq!(t.states.total(), t.lifetime_ns, "wakeups {wakeups}");
        assert_eq!(
            (t.wait.total_ns, t.wait.max_ns),
            (MS, MS),
            "wakeups {wakeups}: {:?}",
            t.wait
        );
        // It was preempted at 3 ms: a wait after a preemption.
        assert_eq!(t.wait_after_preempt.total_ns, MS, "wakeups {wakeups}");
    }
}

/// A thread forked before any record with the kernel's counters (its
/// process joined the trace by exec, `--comm`, and forked at once): from
/// its fork to its `wakeup_new` it is new, on no run queue, and the
/// kernel's run delay does not count that stretch. Its runnable time is
/// the run delay's growth, as its waits are; the timestamps' stretch
/// before it was counted as well (a soak run: 4.1 µs over schedstat).
#[test]
fn a_thread_forked_before_any_counters_is_runnable_only_as_the_kernel_counts() {
    let child = task(102);
    let ev = vec![
        Event {
            ts: 2 * MS,
            cpu: 0,
            kind: EventKind::Fork {
                parent: task(101),
                child,
            },
        },
        wakeup(2 * MS + 4 * US, 0, task(101), child, true),
        // Switched in at 2.010 ms with no record (an inferred run).
        out_counters(
            switch(3 * MS, 1, child, S, task(0)),
            990 * US,
            990 * US,
            1,
            0,
        ),
        wakeup(4 * MS, 0, task(101), child, false),
        // Its run delay grew by the 6 µs before the inferred run and the
        // 100 µs now.
        in_counters(
            switch(4 * MS + 100 * US, 1, task(0), 0, child),
            990 * US,
            106 * US,
            100 * US,
        ),
        out_counters(
            switch(5 * MS, 1, child, S, task(0)),
            1_890 * US,
            900 * US,
            2,
            0,
        ),
    ];
    let recs = trace(2, MS, &[], &ev, 6 * MS);
    let s = analyze(&recs, Options::default()).0;
    let t = thread(&s, 102);
    assert_eq!(t.inferred_runs, 1);
    assert_eq!(t.wait.total_ns, 106 * US);
    assert_eq!(t.states.runnable_ns, 106 * US);
    assert_eq!(s.anomalies, 0);
}
