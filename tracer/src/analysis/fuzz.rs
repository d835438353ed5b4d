//! The analysis never states an impossible figure, whatever the stream it
//! is fed: random event streams of a few threads on a few CPUs (lost
//! events, out-of-order times, exits, execs, reused TIDs), and whatever
//! the readers accept from traces cut or damaged anywhere, in both formats.
//! Every summary is checked by [`check_invariants`]. Cases that once
//! failed are kept by proptest in `proptest-regressions/` next to this
//! crate; `SCHEDTRACE_FUZZ_CASES=N` for a long run.

use proptest::prelude::*;

use super::summary::{Parallelism, Summary};
use super::{Analyzer, Options};
use crate::event::{
    Comm, Event, EventKind, KernelWait, NextCounters, OffCpu, PrevCounters, SwitchCounters,
    WakeContext,
};
use crate::testutil::*;
use crate::trace::fuzz::{FORMATS, config, sample};
use crate::trace::{Format, Lost, Record, ThreadCounters, TraceReader};

/// What no summary may say, however broken its input: more on-CPU time
/// than the CPUs had, more threads running than CPUs, states that do not
/// add up, a profile that does not cover the window.
fn check_invariants(s: &Summary) {
    let window = s.window_ns;
    let n = u64::from(s.ncpus);
    // The kernel's charges may run ahead of the window by an edge
    // (`Analyzer::allowance`); without counters the timestamps cannot.
    let edge = if s.kernel_counters {
        super::machine::CHARGE_EDGE_NS
    } else {
        0
    };
    assert!(
        u128::from(s.total.on_cpu_ns) <= u128::from(window + edge) * u128::from(n),
        "on-CPU {} in {window} ns on {n} CPUs",
        s.total.on_cpu_ns
    );
    for t in &s.threads {
        assert!(
            t.on_cpu_ns <= window + edge,
            "thread {}: on-CPU {} in {window} ns",
            t.tid,
            t.on_cpu_ns
        );
        // The kernel's waits (without wakeups) and counters are not the
        // timestamps' stretches: then the states only fit in the lifetime.
        if s.wakeups && !s.kernel_counters {
            assert_eq!(t.states.total(), t.lifetime_ns, "thread {}: states", t.tid);
        } else {
            assert!(
                t.states.total() <= t.lifetime_ns,
                "thread {}: states",
                t.tid
            );
        }
        assert!(
            t.lifetime_ns <= window,
            "thread {}: lifetime {}",
            t.tid,
            t.lifetime_ns
        );
        assert_eq!(
            t.cpus.values().sum::<u64>(),
            t.on_cpu_ns,
            "thread {}: CPUs",
            t.tid
        );
        assert!(
            t.cpus.keys().all(|&c| u64::from(c) < n),
            "thread {}: CPU numbers",
            t.tid
        );
        // What it waited in is a breakdown of its sleeping and blocked time,
        // and each reason's stacks of that reason's time.
        let reasons: u64 = t.off_cpu.iter().map(|o| o.ns).sum();
        assert_eq!(
            reasons,
            t.states.sleeping_ns + t.states.blocked_ns,
            "thread {}: off-CPU reasons",
            t.tid
        );
        for o in &t.off_cpu {
            let stacked: u64 = t
                .stacks
                .iter()
                .filter(|x| x.key == o.key)
                .map(|x| x.ns)
                .sum();
            assert!(stacked <= o.ns, "thread {}: stacks of {:?}", t.tid, o.key);
        }
        // (With the kernel's waits, each wait is the kernel's figure and
        // runnable time gives way in `state_times`; left unchecked there.)
        if s.wakeups && !s.kernel_counters {
            assert!(t.wait.total_ns <= t.states.runnable_ns + t.states.unknown_ns || window == 0);
        }
    }
    let profile = |p: &Parallelism, what: &str| {
        assert_eq!(p.running_ns.len() as u64, n + 1, "{what}: profile buckets");
        assert!(
            p.mean_running <= n as f64 + 1e-9,
            "{what}: mean running {}",
            p.mean_running
        );
        assert!(
            p.busy_ns <= window && p.parallel_ns <= p.busy_ns,
            "{what}: {p:?}"
        );
        assert!(
            p.running_ns.iter().sum::<u64>() <= window,
            "{what}: profile {p:?}"
        );
    };
    profile(&s.total.parallelism, "all threads");
    assert_eq!(
        s.total.parallelism.running_ns.iter().sum::<u64>(),
        window,
        "the profile covers the window"
    );
    for p in &s.processes {
        profile(&p.parallelism, &format!("process {}", p.tgid));
        assert!(
            u128::from(p.on_cpu_ns) <= u128::from(window + edge) * u128::from(n),
            "process {}: on-CPU",
            p.tgid
        );
    }
}

/// Analyse `records` (a header first) and check the summary.
fn analyse_and_check(records: &[Record]) {
    if !matches!(records.first(), Some(Record::Header(_))) {
        return;
    }
    let mut a = Analyzer::new(Options {
        keep_timeline: true,
        ..Default::default()
    });
    for r in records {
        a.feed(r);
    }
    let (s, _) = a.finish();
    check_invariants(&s);
}

/// Read `bytes` as a trace in `format` until the end or the first error,
/// and analyse what was read.
fn read_and_check(format: Format, bytes: &[u8]) {
    let mut r = TraceReader::with_format(format, bytes);
    let mut records = Vec::new();
    for _ in 0..10_000 {
        match r.next_record() {
            Ok(Some(rec)) => records.push(rec),
            Ok(None) | Err(_) => break,
        }
    }
    analyse_and_check(&records);
}

/// One step of a random event stream: what happens, to which threads, on
/// which CPU, how long after the step before.
#[derive(Clone, Debug)]
struct Step {
    what: u8,
    a: u32,
    b: u32,
    cpu: u32,
    dt: u64,
    state: u64,
    /// How the kernel counters of a switch or a `/proc` read look: none,
    /// plausible, or hostile (see [`counter`]).
    counters: u8,
}

/// A counter value of kind `k` from a running value `base`: sane growth
/// mostly, but also zero, the maximum, a step back, or half the range
/// away, as a damaged or forged trace may have them.
fn counter(k: u8, base: u64) -> u64 {
    match k % 8 {
        0 => 0,
        1 => u64::MAX,
        2 => base.saturating_sub(10_000),
        3 => base ^ (1 << 63),
        _ => base,
    }
}

fn step() -> impl Strategy<Value = Step> {
    // Threads 100..=104 of the target, 0 (idle) and 7 (a stranger);
    // `dt` 0 now and then (equal times), or a little back in time.
    (
        0u8..13,
        prop_oneof![Just(0u32), Just(7), 100u32..105],
        prop_oneof![Just(0u32), Just(7), 100u32..105],
        0u32..4,
        prop_oneof![Just(0u64), 1u64..5_000, Just(u64::MAX)],
        prop_oneof![Just(0u64), Just(1), Just(2), Just(0x80)],
        any::<u8>(),
    )
        .prop_map(|(what, a, b, cpu, dt, state, counters)| Step {
            what,
            a,
            b,
            cpu,
            dt,
            state,
            counters,
        })
}

/// A trace from `steps` on `ncpus` CPUs: a header, the target's threads
/// at attach, the events (and loss marks), and an end record unless cut.
fn stream(ncpus: u32, wakeups: bool, steps: &[Step], end: bool) -> Vec<Record> {
    let start = 1_000;
    let mut h = header(ncpus, start);
    h.wakeups = wakeups;
    let mut v = vec![Record::Header(Box::new(h))];
    for (tid, state) in [(100, 'R'), (101, 'S'), (102, 'R'), (103, 'D')] {
        let mut info = thread_info(tid, state);
        info.ts = start + 1;
        info.cpu = tid % ncpus;
        v.push(Record::Thread(info));
    }
    let mut ts = start;
    let mut run_delay = 0u64;
    // The kernel's on-CPU clock and switch counts, as a real thread's
    // grow; `counter` makes some of them hostile.
    let (mut runtime, mut switches) = (0u64, 0u64);
    for st in steps {
        // u64::MAX: a step back in time (a late event).
        ts = if st.dt == u64::MAX {
            ts.saturating_sub(700)
        } else {
            ts + st.dt
        };
        let cpu = st.cpu % ncpus;
        let (a, b) = (task(st.a), task(st.b));
        runtime += st.dt % 5_000;
        switches += 1;
        let k = st.counters;
        let with_counters = k >= 64;
        if with_counters && st.what == 11 {
            // A `/proc` read of a thread, as at attach and at stop.
            v.push(Record::Counters(ThreadCounters {
                ts,
                tid: st.a,
                tgid: TARGET,
                runtime_ns: counter(k, runtime),
                run_delay_ns: counter(k >> 3, run_delay),
                pcount: counter(k >> 1, switches),
                nvcsw: counter(k >> 2, switches),
                nivcsw: counter(k >> 4, switches / 2),
            }));
            continue;
        }
        let counters = SwitchCounters {
            prev: with_counters.then(|| PrevCounters {
                runtime_ns: counter(k, runtime),
                run_clock_ns: (k % 3 != 0).then(|| counter(k >> 2, st.dt % 5_000)),
                pcount: (k % 5 != 0).then(|| counter(k >> 3, switches) as u32),
                nvcsw: counter(k >> 1, switches) as u32,
                nivcsw: counter(k >> 4, switches / 2) as u32,
            }),
            next: (with_counters && k % 2 == 0).then(|| NextCounters {
                runtime_ns: counter(k >> 5, runtime),
                pcount: (k % 7 != 0).then(|| counter(k >> 1, switches) as u32),
            }),
        };
        let kind = match st.what {
            0..=4 => {
                run_delay += st.dt % 3_000;
                EventKind::Switch {
                    prev: a,
                    next: b,
                    prev_state: st.state,
                    preempt: st.state == 0,
                    next_wait: (!wakeups).then_some(KernelWait {
                        run_delay_ns: run_delay,
                        queued_ns: st.dt % 1_000,
                    }),
                    counters,
                    // Wait reasons and stack ids, some naming no stack in
                    // the trace.
                    prev_off: (st.dt % 4 != 0).then_some(OffCpu {
                        syscall: (st.dt % 3 != 0).then_some((st.dt % 400) as u32),
                        iowait: st.state == 2,
                        kernel_stack: (st.dt % 5 == 1).then_some((st.dt % 9) as u32),
                        user_stack: None,
                        stack_lost: st.dt % 7 == 2,
                    }),
                }
            }
            5 | 6 => EventKind::Wakeup {
                waker: a,
                wakee: b,
                wakee_cpu: (st.b) % ncpus,
                // A figure that may or may not fit the thread's others.
                wakee_run_delay_ns: (st.state % 3 == 0).then_some(st.dt),
                // Now and then the kernel already counts a wait for it.
                wakee_queued: st.dt % 4 == 1,
                new: st.what == 6,
                context: match st.dt % 5 {
                    0 | 1 => WakeContext::Task,
                    2 => WakeContext::Timer {
                        function: None,
                        soft: false,
                    },
                    3 => WakeContext::Softirq { vector: Some(st.b) },
                    _ => WakeContext::Hardirq {
                        irq: Some(st.b),
                        name: None,
                    },
                },
                waker_process: (st.state % 2 == 1).then(|| Comm::new("other")),
            },
            7 => EventKind::Migrate {
                task: b,
                from: cpu,
                to: (cpu + 1) % ncpus,
            },
            8 => EventKind::Fork {
                parent: a,
                child: b,
            },
            9 => EventKind::Exit {
                task: a,
                run_delay_ns: None,
            },
            10 => EventKind::Exec {
                task: a,
                old_tid: st.b,
            },
            // A process entering a traced cgroup (`--cgroup`).
            12 => EventKind::Join { task: b },
            _ => {
                v.push(Record::Lost(Lost {
                    ts,
                    cpu,
                    count: 1 + st.dt % 7,
                }));
                continue;
            }
        };
        v.push(Record::Event(Event { ts, cpu, kind }));
    }
    if end {
        v.push(Record::End(crate::trace::End {
            end_ns: ts + 500,
            events: steps.len() as u64,
            lost_events: 0,
            lost_per_cpu: vec![0; ncpus as usize],
            complete: true,
            reason: "fuzz".into(),
            missing_switch_ins_per_cpu: vec![],
            recursion_misses: None,
            ordering: Default::default(),
            lost_processes: 0,
        }));
    }
    v
}

proptest! {
    #![proptest_config(config())]

    /// Random event streams, as records and after a round trip through
    /// each format: the analysis never panics and never states an
    /// impossible figure, lost events or not.
    #[test]
    fn random_event_streams_give_possible_figures(
        ncpus in 1u32..5,
        wakeups in any::<bool>(),
        steps in proptest::collection::vec(step(), 0..120),
        end in any::<bool>(),
    ) {
        let records = stream(ncpus, wakeups, &steps, end);
        analyse_and_check(&records);
        for format in FORMATS {
            read_and_check(format, &write_all(format, &records));
        }
    }

    /// Valid traces cut or damaged anywhere: what the readers accept
    /// analyses to possible figures.
    #[test]
    fn damaged_traces_give_possible_figures(
        cut in any::<proptest::sample::Index>(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..4),
    ) {
        for format in FORMATS {
            let mut t = sample(format);
            for (at, byte) in &flips {
                let i = at.index(t.len());
                t[i] = *byte;
            }
            t.truncate(cut.index(t.len() + 1));
            read_and_check(format, &t);
        }
    }
}
