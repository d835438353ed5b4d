//! Synthetic-trace tests of why threads stopped: wait reasons, off-CPU
//! stacks, who ran instead, wakeup chains and roles, each with its answer
//! worked out by hand from the events.

use super::antagonists::{Holder, Occupant};
use super::chain::{End, Link, walk};
use super::summary::{Summary, ThreadSummary, holder_label};
use super::timeline::SegState;
use super::waits::WaitClass;
use super::*;
use crate::event::{Event, EventKind, Task, WakeContext};
use crate::testutil::*;
use crate::trace::StackKind;

const S: u64 = 1; // TASK_INTERRUPTIBLE
const D: u64 = 2; // TASK_UNINTERRUPTIBLE

const MS: u64 = 1_000_000;

fn analyse(recs: &[Record], timeline: bool) -> (Summary, Option<Timeline>) {
    analyze(
        recs,
        Options {
            keep_timeline: timeline,
            ..Options::default()
        },
    )
}

fn thread(s: &Summary, tid: u32) -> &ThreadSummary {
    s.thread(tid).expect("thread in summary")
}

/// Thread 101 runs from the start (1 ms), sleeps 10 ms in futex, runs
/// 1 ms, sleeps 20 ms in epoll_wait, runs 1 ms, blocks 5 ms in a page
/// fault, runs to the end; each wait ends with a wakeup by 102 (a sibling
/// that sleeps in nanosleep otherwise). With stacks: the futex wait in
/// kernel stack 1 and user stack 2, the epoll wait in 3 and 4.
fn waits_trace() -> Vec<Record> {
    let ev = [
        with_off(
            switch(2 * MS, 0, task(101), S, task(0)),
            Some("futex"),
            Some(1),
            Some(2),
        ),
        wakeup(12 * MS, 1, task(102), task(101), false),
        switch(12 * MS, 0, task(0), 0, task(101)),
        with_off(
            switch(13 * MS, 0, task(101), S, task(0)),
            Some("epoll_wait"),
            Some(3),
            Some(4),
        ),
        wakeup(33 * MS, 1, task(102), task(101), false),
        switch(33 * MS, 0, task(0), 0, task(101)),
        with_off(switch(34 * MS, 0, task(101), D, task(0)), None, None, None),
        wakeup(39 * MS, 1, task(102), task(101), false),
        switch(39 * MS, 0, task(0), 0, task(101)),
    ];
    let mut recs = trace(2, MS, &[(101, 'R'), (102, 'S')], &ev, 50 * MS);
    let end = recs.pop().unwrap();
    recs.push(stack(
        1,
        StackKind::Kernel,
        0xffff_0000,
        &[
            "futex_wait_queue",
            "futex_wait",
            "do_futex",
            "__x64_sys_futex",
        ],
    ));
    recs.push(stack(
        2,
        StackKind::User,
        0x1000,
        &[
            "__futex_abstimed_wait_common",
            "pthread_cond_wait",
            "uv_cond_wait",
            "worker",
            "start_thread",
        ],
    ));
    recs.push(stack(
        3,
        StackKind::Kernel,
        0xffff_1000,
        &["schedule_hrtimeout_range", "do_epoll_wait"],
    ));
    recs.push(stack(
        4,
        StackKind::User,
        0x2000,
        &["epoll_wait", "uv__io_poll", "uv_run"],
    ));
    recs.push(end);
    recs
}

#[test]
fn sleeping_time_is_broken_down_by_system_call() {
    let (s, _) = analyse(&waits_trace(), false);
    let t = thread(&s, 101);
    assert_eq!(t.states.sleeping_ns, 30 * MS);
    assert_eq!(t.states.blocked_ns, 5 * MS);
    let got: Vec<(String, u64, u64)> = t
        .off_cpu
        .iter()
        .map(|o| (o.key.describe(), o.ns, o.count))
        .collect();
    assert_eq!(
        got,
        vec![
            ("epoll_wait (event loop idle)".into(), 20 * MS, 1),
            ("futex (lock/condvar)".into(), 10 * MS, 1),
            ("page fault".into(), 5 * MS, 1),
        ]
    );
    assert_eq!(t.off_cpu_ns(WaitClass::Idle), 20 * MS);
    // 102 was asleep from the start with no switch-out seen: unknown.
    let t = thread(&s, 102);
    assert_eq!(t.off_cpu.len(), 1);
    assert_eq!(t.off_cpu[0].key.class, WaitClass::Unknown);
    assert_eq!(t.off_cpu[0].ns, t.states.sleeping_ns);
}

#[test]
fn off_cpu_time_is_charged_to_the_stacks_it_was_spent_in() {
    let (s, _) = analyse(&waits_trace(), false);
    let t = thread(&s, 101);
    let got: Vec<_> = t
        .stacks
        .iter()
        .map(|x| (x.kernel_stack, x.user_stack, x.ns, x.count))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(3), Some(4), 20 * MS, 1),
            (Some(1), Some(2), 10 * MS, 1)
        ]
    );
    // The stack table keeps exactly the stacks referred to.
    assert_eq!(
        s.stack_table.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    // The stacks' time is the time of the waits they were recorded at.
    let total: u64 = t.stacks.iter().map(|x| x.ns).sum();
    assert_eq!(
        total,
        t.off_cpu_ns(WaitClass::Idle) + t.off_cpu_ns(WaitClass::Lock)
    );
}

/// A sleep whose stack the kernel side could not keep is counted in the
/// summary (and said in the text), in the window only; its time stays in
/// the waits.
#[test]
fn sleeps_that_lost_their_stack_are_counted_and_said() {
    let mut recs = waits_trace();
    // The page-fault block at 34 ms lost its stack.
    for r in &mut recs {
        if let Record::Event(e) = r
            && e.ts == 34 * MS
            && let EventKind::Switch {
                prev_off: Some(o), ..
            } = &mut e.kind
        {
            o.stack_lost = true;
        }
    }
    let (s, _) = analyse(&recs, false);
    assert_eq!(s.lost_stacks, 1);
    assert_eq!(crate::export::json::to_value(&s)["lost_stacks"], 1);
    assert_eq!(thread(&s, 101).states.blocked_ns, 5 * MS);
    let text = crate::export::text::render(&s);
    assert!(text.contains("note: 1 sleeps lost their stack"), "{text}");
    // Outside the window, not counted; without any, not said.
    let (s, _) = analyze(
        &recs,
        Options {
            since_ns: Some(35 * MS),
            ..Options::default()
        },
    );
    assert_eq!(s.lost_stacks, 0);
    assert!(!crate::export::text::render(&s).contains("lost their stack"));
    let (s, _) = analyse(&waits_trace(), false);
    assert_eq!(s.lost_stacks, 0);
}

#[test]
fn the_timeline_carries_the_wait_reasons() {
    let (_, tl) = analyse(&waits_trace(), true);
    let tl = tl.unwrap();
    let sleeps: Vec<_> = tl
        .thread_segments(101)
        .filter(|s| matches!(s.state, SegState::Sleeping | SegState::Blocked))
        .map(|s| (s.start, s.wait.map(|w| w.class), s.kernel_stack))
        .collect();
    assert_eq!(
        sleeps,
        vec![
            (2 * MS, Some(WaitClass::Lock), Some(1)),
            (13 * MS, Some(WaitClass::Idle), Some(3)),
            (34 * MS, Some(WaitClass::PageFault), None),
        ]
    );
}

fn foreign(tid: u32, name: &str) -> Task {
    let mut t = task(tid);
    t.comm = crate::event::Comm::new(name);
    t
}

/// On one CPU: 101 is preempted by `stress` (700, its own process) at 2 ms
/// and waits; the CPU passes from `stress` to `kworker` (800) at 5 ms and
/// back to 101 at 6 ms. Later 101 sleeps, is woken at 10 ms while `stress`
/// runs, and gets the CPU at 13 ms. Then the CPU is idle from 20 ms, 101 is
/// woken at 22 ms and runs at 22.5 ms (waking the idle CPU).
fn antagonist_trace() -> Vec<Record> {
    let stress = foreign(700, "stress");
    let kworker = foreign(800, "kworker/0:1");
    let ev = [
        switch(2 * MS, 0, task(101), 0, stress),
        switch(5 * MS, 0, stress, 0, kworker),
        switch(6 * MS, 0, kworker, S, task(101)),
        with_off(
            switch(8 * MS, 0, task(101), S, stress),
            Some("nanosleep"),
            None,
            None,
        ),
        in_context(
            wakeup(10 * MS, 0, stress, task(101), false),
            WakeContext::Timer {
                function: None,
                soft: false,
            },
        ),
        switch(13 * MS, 0, stress, 0, task(101)),
        with_off(
            switch(20 * MS, 0, task(101), S, task(0)),
            Some("read"),
            None,
            None,
        ),
        wakeup(22 * MS, 1, foreign(900, "bash"), task(101), false),
        switch(22 * MS + MS / 2, 0, task(0), 0, task(101)),
    ];
    trace(1, MS, &[(101, 'R')], &ev, 30 * MS)
}

#[test]
fn preemptions_name_the_task_that_took_the_cpu() {
    let (s, _) = analyse(&antagonist_trace(), false);
    let a = thread(&s, 101).antagonists();
    assert_eq!(a.preempted_by.len(), 1);
    let p = a.preempted_by[0];
    assert_eq!(holder_label(&p.holder), "stress 700");
    // Preempted once; it then waited 4 ms (2 ms .. 6 ms).
    assert_eq!((p.ns, p.count), (4 * MS, 1));
}

#[test]
fn waits_name_the_tasks_that_held_the_cpu() {
    let (s, _) = analyse(&antagonist_trace(), false);
    let a = thread(&s, 101).antagonists();
    let got: Vec<(String, u64)> = a
        .waited_behind
        .iter()
        .map(|h| (holder_label(&h.holder), h.ns))
        .collect();
    // stress: 3 ms of the first wait and 3 ms of the second (10..13);
    // kworker 1 ms; idle 0.5 ms (the CPU waking up).
    assert_eq!(
        got,
        vec![
            ("stress 700".into(), 6 * MS),
            ("kworker/0:1 800".into(), MS),
            ("idle".into(), MS / 2),
        ]
    );
    // All of its runnable time is accounted for.
    let total: u64 = a.waited_behind.iter().map(|h| h.ns).sum();
    assert_eq!(total, thread(&s, 101).states.runnable_ns);
}

#[test]
fn the_timeline_shows_other_tasks_and_idle_on_the_cpu() {
    let (_, tl) = analyse(&antagonist_trace(), true);
    let holds: Vec<(u64, u64, String)> = tl
        .unwrap()
        .holds
        .iter()
        .map(|h| (h.start, h.end, holder_label(&h.holder)))
        .collect();
    assert_eq!(
        holds,
        vec![
            (2 * MS, 5 * MS, "stress 700".into()),
            (5 * MS, 6 * MS, "kworker/0:1 800".into()),
            (8 * MS, 13 * MS, "stress 700".into()),
            (20 * MS, 22 * MS + MS / 2, "idle".into()),
        ]
    );
}

#[test]
fn a_gap_between_records_is_not_recorded_rather_than_guessed() {
    // 101 hands the CPU to 700 at 2 ms; the next record has 800 leaving
    // at 4 ms: what ran in between is unknown.
    let ev = [
        switch(2 * MS, 0, task(101), 0, foreign(700, "a")),
        switch(4 * MS, 0, foreign(800, "b"), S, task(101)),
    ];
    let (s, _) = analyse(&trace(1, MS, &[(101, 'R')], &ev, 5 * MS), false);
    let a = thread(&s, 101).antagonists();
    assert_eq!(a.waited_behind.len(), 1);
    assert_eq!(a.waited_behind[0].holder, Holder::Unrecorded);
    assert_eq!(a.waited_behind[0].ns, 2 * MS);
}

/// A timer wakes the main thread (100) at 10 ms; main wakes pool thread
/// 101 at 11 ms and sleeps; 101 works and wakes main at 15 ms; main
/// wakes 101 again at 16 ms. A second pool thread 102 is woken by
/// outsider bash (900).
fn chain_trace() -> Vec<Record> {
    let ev = [
        with_off(
            switch(2 * MS, 0, task(100), S, task(0)),
            Some("epoll_wait"),
            None,
            None,
        ),
        with_off(
            switch(3 * MS, 1, task(101), S, task(0)),
            Some("futex"),
            None,
            None,
        ),
        in_context(
            wakeup(10 * MS, 0, task(0), task(100), false),
            WakeContext::Timer {
                function: Some(crate::event::Symbol::new("hrtimer_wakeup")),
                soft: false,
            },
        ),
        switch(10 * MS, 0, task(0), 0, task(100)),
        wakeup(11 * MS, 0, task(100), task(101), false),
        switch(11 * MS, 1, task(0), 0, task(101)),
        with_off(
            switch(12 * MS, 0, task(100), S, task(0)),
            Some("epoll_wait"),
            None,
            None,
        ),
        wakeup(15 * MS, 1, task(101), task(100), false),
        switch(15 * MS, 0, task(0), 0, task(100)),
        with_off(
            switch(15 * MS + 1, 1, task(101), S, task(0)),
            Some("futex"),
            None,
            None,
        ),
        wakeup(16 * MS, 0, task(100), task(101), false),
        switch(16 * MS, 1, task(0), 0, task(101)),
        wakeup(17 * MS, 1, foreign(900, "bash"), task(102), false),
    ];
    let mut recs = trace(2, MS, &[(100, 'R'), (101, 'R'), (102, 'S')], &ev, 20 * MS);
    let end = recs.pop().unwrap();
    recs.push(stack(9, StackKind::Kernel, 0xabc, &["hrtimer_wakeup"]));
    recs.push(end);
    recs
}

#[test]
fn chains_in_the_summary_follow_wakers_back_to_the_timer() {
    let (s, _) = analyse(&chain_trace(), false);
    let labels = |tid| -> Vec<(String, u64)> {
        thread(&s, tid)
            .chains
            .iter()
            .map(|(c, n)| (s.chain_label(c), *n))
            .collect()
    };
    // Main: once from the timer, once from the pool thread (whose own chain
    // leads back to main: cut there).
    assert_eq!(
        labels(100),
        vec![
            ("worker-101 101 ← …".into(), 1),
            ("timer hrtimer_wakeup".into(), 1)
        ]
    );
    assert_eq!(
        labels(101),
        vec![
            ("node 100 (main event loop) ← …".into(), 1),
            (
                "node 100 (main event loop) ← timer hrtimer_wakeup".into(),
                1
            )
        ]
    );
    assert_eq!(labels(102), vec![("bash 900".into(), 1)]);
}

#[test]
fn a_walk_goes_back_through_each_wakers_own_wait() {
    let recs = chain_trace();
    let (s, tl) = analyse(&recs, true);
    let tl = tl.unwrap();
    let traced = |tid: u32| s.thread(tid).is_some();
    // 101's wait that ended at 16 ms: woken by main, whose own sleep
    // (12..15 ms) 101 ended, whose sleep (3..11 ms) main ended, whose
    // sleep (2..10 ms) a timer ended.
    let w = walk(&tl, 101, Some(15 * MS + MS / 2), &traced).unwrap();
    let got: Vec<(u32, u64, Option<u64>)> = w
        .steps
        .iter()
        .map(|st| (st.tid, st.wait_start, st.woken))
        .collect();
    assert_eq!(
        got,
        vec![
            (101, 15 * MS + 1, Some(16 * MS)),
            (100, 12 * MS, Some(15 * MS)),
            (101, 3 * MS, Some(11 * MS)),
            (100, 2 * MS, Some(10 * MS)),
        ]
    );
    assert_eq!(w.end, End::Link);
    assert_eq!(
        w.steps[3].by.map(|b| b.1),
        Some(Link::Timer(Some(crate::event::Symbol::new(
            "hrtimer_wakeup"
        ))))
    );
    assert_eq!(w.steps[1].reason.map(|r| r.class), Some(WaitClass::Idle));
    // An outside waker ends the walk at once.
    let w = walk(&tl, 102, Some(17 * MS), &traced).unwrap();
    assert_eq!(w.steps.len(), 1);
    assert!(matches!(
        w.steps[0].by,
        Some((_, Link::Outside(Occupant { tid: 900, .. })))
    ));
    // A time while the thread ran picks the wait that ended before it.
    let w = walk(&tl, 100, Some(13 * MS + 2), &traced).unwrap();
    assert_eq!(w.steps[0].wait_start, 12 * MS);
    // Without a time, the longest sleep: 101's 3..11 ms.
    let w = walk(&tl, 101, None, &traced).unwrap();
    assert_eq!(w.steps[0].wait_start, 3 * MS);
    // A timer is named by its callback.
    assert_eq!(
        s.link_label(&Link::Timer(Some(crate::event::Symbol::new(
            "hrtimer_wakeup"
        )))),
        "timer hrtimer_wakeup"
    );
}

#[test]
fn a_walk_stops_at_a_preemption_and_at_a_wait_without_wakeup() {
    let ev: Vec<Event> = vec![
        switch(2 * MS, 0, task(101), 0, foreign(700, "x")),
        switch(3 * MS, 0, foreign(700, "x"), S, task(101)),
        with_off(
            switch(4 * MS, 0, task(101), S, task(0)),
            Some("read"),
            None,
            None,
        ),
        switch(6 * MS, 0, task(0), 0, task(101)),
    ];
    let recs = trace(1, MS, &[(101, 'R')], &ev, 8 * MS);
    let (s, tl) = analyse(&recs, true);
    let traced = |tid: u32| s.thread(tid).is_some();
    let tl = tl.unwrap();
    let w = walk(&tl, 101, Some(2 * MS + 10), &traced).unwrap();
    assert_eq!(w.end, End::Preempted);
    let w = walk(&tl, 101, Some(5 * MS), &traced).unwrap();
    assert_eq!(w.end, End::NoWakeup);
    assert_eq!(w.steps[0].ran, Some(6 * MS));
}

#[test]
fn a_sleep_that_ends_at_its_switch_in_is_charged_to_what_it_slept_in() {
    // Without wakeups (or with the wakeup missing), a thread the kernel
    // says did not wait (its `run_delay` did not grow: woken and switched
    // in at once, as a pipe's reader on its writer's CPU) sleeps until its
    // switch-in. That sleep is the system call's, not unknown: `--no-wakeups`
    // on pinned pipe pairs put a fifth of the threads' sleep under
    // "unknown".
    let a = task(101);
    let ev = [
        with_off(
            out_counters(switch(2 * MS, 0, a, S, task(0)), 10 * MS, MS, 1, 0),
            Some("futex"),
            None,
            None,
        ),
        in_counters(switch(12 * MS, 0, task(0), 0, a), 10 * MS, 0, 0),
        with_off(
            out_counters(switch(13 * MS, 0, a, S, task(0)), 11 * MS, MS, 2, 0),
            Some("epoll_wait"),
            None,
            None,
        ),
        in_counters(switch(33 * MS, 0, task(0), 0, a), 11 * MS, 0, 0),
    ];
    let mut recs = trace(1, MS, &[(101, 'R')], &ev, 40 * MS);
    if let Record::Header(h) = &mut recs[0] {
        h.wakeups = false;
    }
    let (s, _) = analyse(&recs, false);
    let t = thread(&s, 101);
    let got: Vec<(String, u64)> = t.off_cpu.iter().map(|o| (o.key.describe(), o.ns)).collect();
    assert_eq!(
        got,
        vec![
            ("epoll_wait (event loop idle)".into(), 20 * MS),
            ("futex (lock/condvar)".into(), 10 * MS),
        ]
    );
    assert_eq!(t.states.sleeping_ns, 30 * MS);
}

#[test]
fn a_sleep_under_way_at_the_start_is_charged_to_the_call_proc_showed() {
    // 102 sleeps in futex when tracing starts (`/proc` showed the call);
    // woken at 10 ms, it runs 1 ms and sleeps again with no call recorded.
    // 103 sleeps from the start too, but `/proc` showed no call.
    let ev = [
        wakeup(10 * MS, 0, task(101), task(102), false),
        switch(10 * MS, 1, task(0), 0, task(102)),
        with_off(switch(11 * MS, 1, task(102), S, task(0)), None, None, None),
    ];
    let mut recs = trace(2, MS, &[(101, 'R'), (102, 'S'), (103, 'S')], &ev, 20 * MS);
    for r in &mut recs {
        if let Record::Thread(t) = r
            && t.tid == 102
        {
            t.syscall = crate::syscalls::number("futex");
        }
    }
    let (s, _) = analyse(&recs, false);
    let got = |tid| -> Vec<(String, u64)> {
        thread(&s, tid)
            .off_cpu
            .iter()
            .map(|o| (o.key.describe(), o.ns))
            .collect()
    };
    assert_eq!(
        got(102),
        vec![
            ("futex (lock/condvar)".into(), 9 * MS),
            ("other".into(), 9 * MS)
        ]
    );
    assert_eq!(got(103), vec![("unknown".into(), 19 * MS)]);
}

/// Thread 101 sleeps three times (futex and epoll_wait with stacks,
/// nanosleep without), each ended by a wakeup at its switch-in; the
/// kernel's run-queue wait at each switch-in (its `run_delay` growth: 1,
/// 2 and 0.5 ms + 1 ns) began before the wakeup's timestamp, so it overlaps
/// the sleep. The states cannot hold both within the 49 ms lifetime: the
/// sleeps give way by 3.5 ms + 1 ns, every reason in proportion (35 ms to
/// 31,499,999 ns: 0.9 of each, less 1 ns, which the rounding gives to the
/// two largest remainders), and each stack with its reason, so that the
/// stacks and the time without one add up to each reason, and the reasons
/// to the sleeping time.
#[test]
fn stacks_give_way_with_their_reason_where_the_kernels_waits_overlap_the_sleeps() {
    let out = |e, runtime, nv| out_counters(e, runtime, 0, nv, 0);
    let ev = [
        out(
            with_off(
                switch(2 * MS, 0, task(101), S, task(0)),
                Some("futex"),
                Some(1),
                Some(2),
            ),
            MS,
            1,
        ),
        wakeup(12 * MS, 1, task(102), task(101), false),
        in_counters(switch(12 * MS, 0, task(0), 0, task(101)), MS, MS, MS),
        out(
            with_off(
                switch(13 * MS, 0, task(101), S, task(0)),
                Some("epoll_wait"),
                Some(3),
                Some(4),
            ),
            2 * MS,
            2,
        ),
        wakeup(33 * MS, 1, task(102), task(101), false),
        in_counters(switch(33 * MS, 0, task(0), 0, task(101)), 2 * MS, 3 * MS, 0),
        out(
            with_off(
                switch(34 * MS, 0, task(101), S, task(0)),
                Some("nanosleep"),
                None,
                None,
            ),
            3 * MS,
            3,
        ),
        wakeup(39 * MS, 1, task(102), task(101), false),
        in_counters(
            switch(39 * MS, 0, task(0), 0, task(101)),
            3 * MS,
            3 * MS + MS / 2 + 1,
            0,
        ),
    ];
    let mut recs = trace(2, MS, &[(101, 'R'), (102, 'S')], &ev, 50 * MS);
    let end = recs.pop().unwrap();
    recs.extend(
        waits_trace()
            .into_iter()
            .filter(|r| matches!(r, Record::Stack(_))),
    );
    recs.push(end);
    let (s, _) = analyse(&recs, false);
    let t = thread(&s, 101);
    assert_eq!(t.states.runnable_ns, 3 * MS + MS / 2 + 1);
    assert_eq!(t.states.sleeping_ns, 31_499_999);
    let reasons: Vec<(String, u64)> = t.off_cpu.iter().map(|o| (o.key.describe(), o.ns)).collect();
    assert_eq!(
        reasons,
        vec![
            ("epoll_wait (event loop idle)".into(), 17_999_999),
            ("futex (lock/condvar)".into(), 9_000_000),
            ("nanosleep (sleep)".into(), 4_500_000),
        ]
    );
    let stacks: Vec<_> = t
        .stacks
        .iter()
        .map(|x| (x.kernel_stack, x.user_stack, x.ns, x.count))
        .collect();
    assert_eq!(
        stacks,
        vec![
            (Some(3), Some(4), 17_999_999, 1),
            (Some(1), Some(2), 9_000_000, 1)
        ]
    );
    // What the stack profiles show: the stacks, and each reason's time
    // without one (here only nanosleep's), adding up to the sleeping time.
    let stacked: u64 = t.stacks.iter().map(|x| x.ns).sum();
    let unstacked: Vec<_> = t.unstacked().iter().map(|o| o.ns).collect();
    assert_eq!(unstacked, vec![4_500_000]);
    assert_eq!(stacked + 4_500_000, t.states.sleeping_ns);
}
