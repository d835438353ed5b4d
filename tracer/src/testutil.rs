//! Builders for synthetic traces in unit tests. Target process: TGID 100,
//! threads 100..=199; other TIDs are strangers (their own TGID), TID 0 is idle.

use crate::event::{
    Comm, Event, EventKind, KernelWait, NextCounters, OffCpu, PrevCounters, SwitchCounters, Symbol,
    Task, WakeContext,
};
use crate::trace::{
    End, Format, Frame, Header, Lost, Record, Stack, StackKind, ThreadCounters, ThreadInfo,
};

pub(crate) const TARGET: u32 = 100;

pub(crate) fn task(tid: u32) -> Task {
    let tgid = if (100..200).contains(&tid) {
        TARGET
    } else {
        tid
    };
    let comm = match tid {
        0 => "swapper/0".to_string(),
        100 => "node".to_string(),
        t if (100..200).contains(&t) => format!("worker-{t}"),
        t => format!("other-{t}"),
    };
    Task {
        tid,
        tgid,
        comm: Comm::new(&comm),
        prio: 120,
    }
}

pub(crate) fn header(ncpus: u32, start_ns: u64) -> Header {
    Header {
        version: crate::trace::TRACE_SCHEMA_VERSION,
        wall_clock_offset_ns: 1_700_000_000_000_000_000,
        ncpus,
        target_pid: TARGET,
        target_comm: "node".into(),
        target_ns_pid: None,
        also: Vec::new(),
        cgroup: None,
        all_but: None,
        comm_pattern: None,
        command: None,
        follow_children: false,
        wakeups: true,
        pinned_cpus: None,
        kernel_release: "6.18.0-test".into(),
        hostname: "test".into(),
        tool_version: "test".into(),
        start_ns,
    }
}

pub(crate) fn thread_info(tid: u32, state: char) -> ThreadInfo {
    let t = task(tid);
    ThreadInfo {
        ts: 0,
        tid,
        tgid: t.tgid,
        comm: t.comm,
        state,
        cpu: 0,
        syscall: None,
    }
}

/// `prev` leaves CPU `cpu` with raw `prev_state` (0 = preempted), `next` gets it.
pub(crate) fn switch(ts: u64, cpu: u32, prev: Task, prev_state: u64, next: Task) -> Event {
    Event {
        ts,
        cpu,
        kind: EventKind::Switch {
            prev,
            next,
            prev_state,
            preempt: false,
            next_wait: None,
            counters: SwitchCounters::default(),
            prev_off: None,
        },
    }
}

/// `e`, a switch, with what `prev` was doing: in system call `syscall`
/// (by name), with the given stack ids.
pub(crate) fn with_off(
    mut e: Event,
    syscall: Option<&str>,
    kernel_stack: Option<u32>,
    user_stack: Option<u32>,
) -> Event {
    if let EventKind::Switch { prev_off, .. } = &mut e.kind {
        *prev_off = Some(OffCpu {
            syscall: syscall.map(|n| crate::syscalls::number(n).expect("a known system call")),
            iowait: false,
            kernel_stack,
            user_stack,
            stack_lost: false,
        });
    }
    e
}

/// A stack-table entry with functions `names` (innermost first) at
/// addresses `base`, `base + 1`, ...
pub(crate) fn stack(id: u32, kind: StackKind, base: u64, names: &[&str]) -> Record {
    Record::Stack(Stack {
        id,
        kind,
        tgid: TARGET,
        frames: names
            .iter()
            .enumerate()
            .map(|(i, n)| Frame {
                addr: base + i as u64,
                name: Some(n.to_string()),
                module: Some(match kind {
                    StackKind::Kernel => "[kernel]".into(),
                    StackKind::User => "/usr/bin/app".into(),
                }),
            })
            .collect(),
        thread: None,
    })
}

/// `e`, a switch, with the incoming task's run-queue wait (as recorded
/// without wakeups).
pub(crate) fn with_wait(mut e: Event, run_delay_ns: u64, queued_ns: u64) -> Event {
    if let EventKind::Switch { next_wait, .. } = &mut e.kind {
        *next_wait = Some(KernelWait {
            run_delay_ns,
            queued_ns,
        });
    }
    e
}

/// `e`, a switch whose outgoing task is traced, with its counters: its
/// runtime, its run on the run-queue clock (0: not known), and its switch
/// counts.
pub(crate) fn out_counters(mut e: Event, runtime: u64, run_clock: u64, nv: u32, niv: u32) -> Event {
    if let EventKind::Switch { counters, .. } = &mut e.kind {
        counters.prev = Some(PrevCounters {
            runtime_ns: runtime,
            run_clock_ns: (run_clock > 0).then_some(run_clock),
            pcount: None,
            nvcsw: nv,
            nivcsw: niv,
        });
    }
    e
}

/// `e`, a switch whose incoming task is traced, with its counters: its
/// runtime and its run-queue wait (as `with_wait`).
pub(crate) fn in_counters(e: Event, runtime: u64, run_delay: u64, queued: u64) -> Event {
    let mut e = with_wait(e, run_delay, queued);
    if let EventKind::Switch { counters, .. } = &mut e.kind {
        counters.next = Some(NextCounters {
            runtime_ns: runtime,
            pcount: None,
        });
    }
    e
}

pub(crate) fn wakeup(ts: u64, cpu: u32, waker: Task, wakee: Task, new: bool) -> Event {
    Event {
        ts,
        cpu,
        kind: EventKind::Wakeup {
            waker,
            wakee,
            wakee_cpu: cpu,
            wakee_run_delay_ns: None,
            wakee_queued: false,
            new,
            context: WakeContext::Task,
            waker_process: None,
        },
    }
}

/// `e`, a wakeup, with the wakee's run delay as the wakeup found it.
pub(crate) fn with_wakee_run_delay(mut e: Event, d: u64) -> Event {
    if let EventKind::Wakeup {
        wakee_run_delay_ns, ..
    } = &mut e.kind
    {
        *wakee_run_delay_ns = Some(d);
    }
    e
}

/// `e`, a wakeup that found the kernel already counting a wait for the
/// wakee (`sched_info.last_queued` set while it slept).
pub(crate) fn found_queued(mut e: Event) -> Event {
    if let EventKind::Wakeup { wakee_queued, .. } = &mut e.kind {
        *wakee_queued = true;
    }
    e
}

/// `e`, a wakeup, raised in `context` (the waker is then the task that
/// was interrupted).
pub(crate) fn in_context(mut e: Event, c: WakeContext) -> Event {
    if let EventKind::Wakeup { context, .. } = &mut e.kind {
        *context = c;
    }
    e
}

/// `e`, a wakeup by a task of another process called `process`.
pub(crate) fn from_process(mut e: Event, process: &str) -> Event {
    if let EventKind::Wakeup { waker_process, .. } = &mut e.kind {
        *waker_process = Some(Comm::new(process));
    }
    e
}

/// A timer wakeup by `hrtimer_wakeup` (a `nanosleep` ending) that
/// interrupted `running` on `cpu`.
pub(crate) fn timer_wakeup(ts: u64, cpu: u32, running: Task, wakee: Task) -> Event {
    in_context(
        wakeup(ts, cpu, running, wakee, false),
        WakeContext::Timer {
            function: Some(Symbol::new("hrtimer_wakeup")),
            soft: false,
        },
    )
}

/// One event of each of the kinds `switch` and `wakeup` do not build, at
/// `ts`, `ts + 100`, ...: `task(101)` moves from CPU 0 to 1, `task(100)`
/// forks `task(103)` and execs, `task(103)` exits (on CPU `exit_cpu`, at
/// `exit_ts`, its run delay 12,345 ns).
pub(crate) fn migrate_fork_exec_exit(ts: u64, exit_ts: u64, exit_cpu: u32) -> Vec<Event> {
    let at = |ts, kind| Event { ts, cpu: 0, kind };
    vec![
        at(
            ts,
            EventKind::Migrate {
                task: task(101),
                from: 0,
                to: 1,
            },
        ),
        at(
            ts + 100,
            EventKind::Fork {
                parent: task(100),
                child: task(103),
            },
        ),
        at(
            ts + 200,
            EventKind::Exec {
                task: task(100),
                old_tid: 100,
            },
        ),
        Event {
            ts: exit_ts,
            cpu: exit_cpu,
            kind: EventKind::Exit {
                task: task(103),
                run_delay_ns: Some(12_345),
            },
        },
    ]
}

pub(crate) fn end(end_ns: u64) -> Record {
    Record::End(End {
        end_ns,
        events: 0,
        lost_events: 0,
        lost_per_cpu: vec![],
        complete: true,
        reason: "test".into(),
        missing_switch_ins_per_cpu: vec![],
        recursion_misses: None,
        ordering: Default::default(),
        lost_processes: 0,
    })
}

/// A trace: header at `start`, the given `/proc` threads, events, end at `stop`.
pub(crate) fn trace(
    ncpus: u32,
    start: u64,
    threads: &[(u32, char)],
    events: &[Event],
    stop: u64,
) -> Vec<Record> {
    let mut v = vec![Record::Header(Box::new(header(ncpus, start)))];
    v.extend(
        threads
            .iter()
            .map(|&(tid, s)| Record::Thread(thread_info(tid, s))),
    );
    v.extend(events.iter().map(|e| Record::Event(*e)));
    v.push(end(stop));
    v
}

/// A small two-CPU trace with every state and transition the exporters
/// draw: preemption, sleep, uninterruptible block, wakeups (one by a task
/// outside the process), a migration, a thread exit, a thread that only
/// sleeps, and a loss mark. Window: 1 ms .. 9 ms.
pub(crate) fn interleaved_trace() -> Vec<Record> {
    let ev = [
        wakeup(1_500_000, 0, task(100), task(101), false),
        switch(2_000_000, 0, task(100), 0, task(101)),
        switch(2_500_000, 1, task(102), 1, task(0)),
        wakeup(3_000_000, 0, task(101), task(102), false),
        switch(3_200_000, 1, task(0), 0, task(102)),
        switch(4_000_000, 0, task(101), 2, task(100)),
        wakeup(5_000_000, 0, task(7), task(101), false),
        switch(5_500_000, 1, task(102), 0, task(101)),
        switch(6_000_000, 0, task(100), 1, task(102)),
        switch(7_000_000, 1, task(101), 0x80, task(0)),
        switch(8_000_000, 0, task(102), 1, task(0)),
    ];
    let mut recs = trace(
        2,
        1_000_000,
        &[(100, 'R'), (101, 'S'), (102, 'R'), (103, 'S')],
        &ev,
        9_000_000,
    );
    let end = recs.pop().expect("end record");
    recs.insert(
        recs.len() - 1,
        Record::Lost(Lost {
            ts: 7_500_000,
            cpu: 1,
            count: 3,
        }),
    );
    recs.push(end);
    recs
}

/// One inferred run, analysed with its timeline kept: 101 is preempted at
/// 3 ms; its switch-in at 4 ms is not in the stream, its switch-out at
/// 5 ms shows the run (1 ms on the run-queue clock).
pub(crate) fn inferred_run_analysis() -> (
    crate::analysis::summary::Summary,
    crate::analysis::timeline::Timeline,
) {
    const MS: u64 = 1_000_000;
    let a = task(101);
    let ev = vec![
        in_counters(switch(2 * MS, 0, task(0), 0, a), 10 * MS, 0, 0),
        out_counters(switch(3 * MS, 0, a, 0, task(7)), 11 * MS, MS, 0, 1),
        out_counters(switch(5 * MS, 0, a, 1, task(0)), 12 * MS, MS, 1, 1),
    ];
    let recs = trace(1, MS, &[(101, 'S')], &ev, 9 * MS);
    let opts = crate::analysis::Options {
        keep_timeline: true,
        ..Default::default()
    };
    let (s, tl) = crate::analysis::analyze(&recs, opts);
    assert_eq!(s.thread(101).expect("thread 101").inferred_runs, 1);
    (s, tl.expect("timeline"))
}

/// [`interleaved_trace`] analysed with its timeline kept.
pub(crate) fn interleaved_analysis() -> (
    crate::analysis::summary::Summary,
    crate::analysis::timeline::Timeline,
) {
    let opts = crate::analysis::Options {
        keep_timeline: true,
        ..Default::default()
    };
    let (s, tl) = crate::analysis::analyze(&interleaved_trace(), opts);
    (s, tl.expect("timeline"))
}

/// On-CPU time per TID rebuilt from an export equals the analysis's.
pub(crate) fn assert_on_cpu_matches(
    s: &crate::analysis::summary::Summary,
    on_cpu: &std::collections::HashMap<u64, u64>,
) {
    for t in &s.threads {
        assert_eq!(
            on_cpu.get(&(t.tid as u64)).copied().unwrap_or(0),
            t.on_cpu_ns,
            "thread {}",
            t.tid
        );
    }
}

/// A trace with a record of every kind, odd names and extreme values
/// included: a header (command, pinned CPUs), threads, every event kind,
/// a loss mark and an incomplete end.
pub(crate) fn every_record_kind() -> Vec<Record> {
    let odd = Task {
        tid: u32::MAX,
        tgid: 7,
        comm: Comm::from_bytes(*b"caf\xc3\xa9 \xff\xfe01234567"),
        prio: i32::MIN,
    };
    let mut h = header(2, 100);
    h.command = Some(vec!["node".into(), "app.js".into()]);
    h.pinned_cpus = Some(vec![0]);
    h.also = vec![crate::trace::TargetProcess {
        pid: 200,
        comm: "caf\u{e9}".into(),
        ns_pid: Some(1),
    }];
    h.target_ns_pid = Some(7);
    h.cgroup = Some(crate::trace::TargetCgroup {
        path: "/sys/fs/cgroup/app".into(),
        id: 4242,
    });
    h.version = crate::trace::schema_version(&h);
    vec![
        Record::Header(Box::new(h)),
        Record::Thread(ThreadInfo {
            syscall: crate::syscalls::number("futex"),
            ..thread_info(101, 'S')
        }),
        Record::Thread(thread_info(102, 'R')),
        Record::Counters(ThreadCounters {
            ts: 90,
            tid: 102,
            tgid: TARGET,
            runtime_ns: u64::MAX,
            run_delay_ns: 0,
            pcount: 1 << 40,
            nvcsw: 7,
            nivcsw: u64::MAX - 1,
        }),
        Record::Event(switch(1_000, 0, task(100), 1, task(0))),
        Record::Event(Event {
            ts: 1_050,
            cpu: 1,
            kind: EventKind::Switch {
                prev: odd,
                next: task(101),
                prev_state: 0x402,
                preempt: true,
                next_wait: Some(KernelWait {
                    run_delay_ns: u64::MAX - 1,
                    queued_ns: 1_234,
                }),
                counters: SwitchCounters {
                    prev: Some(PrevCounters {
                        runtime_ns: u64::MAX,
                        run_clock_ns: None,
                        pcount: Some(u32::MAX),
                        nvcsw: 0,
                        nivcsw: 1,
                    }),
                    next: Some(NextCounters {
                        runtime_ns: 5,
                        pcount: None,
                    }),
                },
                prev_off: Some(OffCpu {
                    syscall: Some(u32::MAX),
                    iowait: true,
                    kernel_stack: Some(u32::MAX),
                    user_stack: None,
                    stack_lost: true,
                }),
            },
        }),
        Record::Event(with_off(
            switch(1_060, 0, task(101), 1, task(0)),
            Some("futex"),
            None,
            Some(7),
        )),
        Record::Event(with_off(
            switch(1_070, 0, task(0), 2, task(102)),
            None,
            None,
            None,
        )),
        Record::Event(from_process(
            wakeup(1_100, 1, task(7), task(101), false),
            "other-proc",
        )),
        Record::Event(wakeup(1_150, 1, task(100), odd, true)),
        Record::Event(with_wakee_run_delay(
            timer_wakeup(1_160, 0, task(0), task(102)),
            u64::MAX - 2,
        )),
        Record::Event(found_queued(with_wakee_run_delay(
            wakeup(1_165, 1, task(7), task(101), false),
            3_000,
        ))),
        Record::Event(in_context(
            wakeup(1_170, 1, task(7), task(101), false),
            WakeContext::Timer {
                function: None,
                soft: true,
            },
        )),
        Record::Event(in_context(
            wakeup(1_180, 1, task(7), task(101), false),
            WakeContext::Softirq { vector: Some(3) },
        )),
        Record::Event(in_context(
            wakeup(1_190, 0, odd, task(101), false),
            WakeContext::Hardirq {
                irq: Some(u32::MAX),
                name: Some(Symbol::from_bytes(
                    *b"caf\xc3\xa9 \xff\xfe0123456789abcdefghijklmn",
                )),
            },
        )),
        Record::Event(in_context(
            wakeup(1_195, 0, odd, task(101), false),
            WakeContext::Nmi,
        )),
        Record::Event(in_context(
            wakeup(1_196, 0, task(0), task(101), false),
            WakeContext::Unknown,
        )),
    ]
    .into_iter()
    .chain(
        // The latest timestamp a reader accepts (see `trace::validate`), on
        // the last CPU.
        migrate_fork_exec_exit(1_200, 100 + crate::trace::validate::MAX_SPAN_NS, 1)
            .into_iter()
            .map(Record::Event),
    )
    .chain([
        // A process entering a traced cgroup.
        Record::Event(Event {
            ts: 1_590,
            cpu: 0,
            kind: EventKind::Join { task: odd },
        }),
        Record::Lost(Lost {
            ts: 1_600,
            cpu: 1,
            count: u64::MAX,
        }),
        stack(
            7,
            StackKind::User,
            0x5555_0000_1000,
            &["worker", "start_thread"],
        ),
        Record::Stack(Stack {
            id: u32::MAX,
            kind: StackKind::Kernel,
            tgid: 0,
            frames: vec![
                Frame {
                    addr: u64::MAX,
                    name: Some("caf\u{e9} \"x\"".into()),
                    module: None,
                },
                Frame {
                    addr: 0,
                    name: None,
                    module: Some("[kernel]".into()),
                },
            ],
            thread: Some(u32::MAX),
        }),
        Record::End(End {
            end_ns: 2_000,
            events: 8,
            lost_events: 3,
            lost_per_cpu: vec![0, 3],
            complete: false,
            reason: "signal SIGINT, then \"interrupted\" while finishing".into(),
            missing_switch_ins_per_cpu: vec![2, 0],
            recursion_misses: Some(0),
            lost_processes: 5,
            ordering: crate::trace::Ordering {
                method: Some(crate::trace::OrderMethod::Slack),
                late_per_cpu: vec![u64::MAX, 0],
                gaps: vec![],
            },
        }),
    ])
    .collect()
}

/// `records` written in `format`, as a file would hold them.
pub(crate) fn write_all(format: Format, records: &[Record]) -> Vec<u8> {
    let mut v = Vec::new();
    for r in records {
        format.write(&mut v, r).unwrap();
    }
    v
}

pub(crate) use crate::testing::TempDir;

/// A timeline of `ncpus` CPUs from 0 to `end_ns` with no segment yet, whose
/// threads are `tids` of process `tgid`, each named `t<tid>`, alive
/// throughout.
pub(crate) fn empty_timeline(
    ncpus: u32,
    end_ns: u64,
    tgid: u32,
    tids: &[u32],
) -> crate::analysis::timeline::Timeline {
    let threads = tids
        .iter()
        .map(|&tid| crate::analysis::timeline::TimelineThread {
            tid,
            tgid,
            comm: format!("t{tid}"),
            created_ns: None,
            exited_ns: None,
        })
        .collect();
    crate::analysis::timeline::Timeline {
        start_ns: 0,
        end_ns,
        ncpus,
        threads,
        ..Default::default()
    }
}
