//! Attaching in mid-flight, against a model of the kernel: two threads
//! ping-pong a token on two CPUs while a stranger and a thread of PID 1
//! (whose own events this kernel's stream lacks) preempt them. The model
//! keeps the kernel's counters as the kernel does and emits the stream
//! schedtrace would read, from a random start; the analysis of every such
//! stream must contradict nothing and give each thread the running time
//! the model had in the window, to the ns.

use std::collections::{BTreeMap, VecDeque};

use super::{Options, analyze};
use crate::event::{Comm, Event, EventKind, Task};
use crate::testutil::*;
use crate::trace::{Record, ThreadCounters, ThreadInfo};

const US: u64 = 1_000;
const NCPUS: usize = 2;
const PING: usize = 0;
const PONG: usize = 1;
const MAIN: usize = 2;
const STRANGER: usize = 3;
const INIT: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq)]
enum St {
    Running(usize),
    Queued(usize),
    Asleep,
}

struct Thread {
    task: Task,
    target: bool,
    /// A thread of PID 1: no event whose current task it is reaches us.
    hidden: bool,
    st: St,
    runtime: u64,
    run_delay: u64,
    last_queued: Option<u64>,
    pcount: u64,
    nv: u32,
    niv: u32,
    exec_start: u64,
    /// Work left in the burst under way (ping-pong threads).
    left: u64,
    /// Runs, for the expected on-CPU time.
    runs: Vec<(u64, u64)>,
}

#[derive(Clone, Copy, Debug)]
enum Action {
    /// The burst of the thread running on the CPU ends (unless the CPU
    /// has switched since: its `generation` moved on).
    BurstEnd { cpu: usize, generation: u64 },
    /// An idle CPU switches to the head of its queue.
    Pick { cpu: usize },
    /// The stranger or PID 1's thread wakes on a CPU.
    Wake { thread: usize, cpu: usize },
}

struct Sim {
    rng: u64,
    now: u64,
    threads: Vec<Thread>,
    current: [Option<usize>; NCPUS],
    queues: [VecDeque<usize>; NCPUS],
    generation: [u64; NCPUS],
    agenda: BTreeMap<(u64, u64), Action>,
    seq: u64,
    events: Vec<Event>,
}

fn thread(tid: u32, tgid: u32, comm: &str, target: bool, hidden: bool, st: St) -> Thread {
    Thread {
        task: Task {
            tid,
            tgid,
            comm: Comm::new(comm),
            prio: 120,
        },
        target,
        hidden,
        st,
        runtime: 0,
        run_delay: 0,
        last_queued: None,
        pcount: 0,
        nv: 0,
        niv: 0,
        exec_start: 0,
        left: 0,
        runs: Vec::new(),
    }
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut s = Sim {
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            now: 0,
            threads: vec![
                thread(101, TARGET, "ping", true, false, St::Asleep),
                thread(102, TARGET, "pong", true, false, St::Asleep),
                thread(100, TARGET, "main", true, false, St::Asleep),
                thread(300, 300, "stranger", false, false, St::Asleep),
                thread(61, 1, "vsock-console", false, true, St::Asleep),
            ],
            current: [None; NCPUS],
            queues: Default::default(),
            generation: [0; NCPUS],
            agenda: BTreeMap::new(),
            seq: 0,
            events: Vec::new(),
        };
        s.threads[PING].left = s.burst();
        s.enqueue(PING, 0);
        s.wake_later(STRANGER);
        s.wake_later(INIT);
        s
    }

    fn rand(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    fn burst(&mut self) -> u64 {
        3 * US + self.rand(6 * US)
    }

    fn at(&mut self, ts: u64, a: Action) {
        self.seq += 1;
        self.agenda.insert((ts, self.seq), a);
    }

    fn wake_later(&mut self, thread: usize) {
        let (after, cpu) = (
            20 * US + self.rand(400 * US),
            self.rand(NCPUS as u64) as usize,
        );
        self.at(self.now + after, Action::Wake { thread, cpu });
    }

    fn task(&self, i: Option<usize>) -> Task {
        i.map_or_else(|| task(0), |i| self.threads[i].task)
    }

    /// Queue `i` on `cpu` (now); an idle CPU picks it a little later.
    fn enqueue(&mut self, i: usize, cpu: usize) {
        self.threads[i].st = St::Queued(cpu);
        self.threads[i].last_queued = Some(self.now);
        self.queues[cpu].push_back(i);
        if self.current[cpu].is_none() && self.queues[cpu].len() == 1 {
            let lat = US + self.rand(20 * US);
            self.at(self.now + lat, Action::Pick { cpu });
        }
    }

    /// The CPU switches from its current thread (which sleeps, or is
    /// preempted and queued again) to `next`.
    fn switch(&mut self, cpu: usize, sleeps: bool, next: Option<usize>) {
        let now = self.now;
        let prev = self.current[cpu];
        let mut out = None;
        if let Some(p) = prev {
            let t = &mut self.threads[p];
            let ran = now - t.exec_start;
            t.runtime += ran;
            t.runs.push((t.exec_start, now));
            if sleeps {
                t.nv += 1;
                t.st = St::Asleep;
            } else {
                t.niv += 1;
            }
            out = t.target.then_some((t.runtime, ran, t.nv, t.niv));
        }
        let mut inc = None;
        if let Some(n) = next {
            let t = &mut self.threads[n];
            let mut queued = 0;
            if let Some(q) = t.last_queued.take() {
                queued = now - q;
                t.run_delay += queued;
                t.pcount += 1;
            }
            t.exec_start = now;
            t.st = St::Running(cpu);
            inc = t.target.then_some((t.runtime, t.run_delay, queued));
        }
        self.current[cpu] = next;
        self.generation[cpu] += 1;
        if let Some(p) = prev.filter(|_| !sleeps) {
            self.enqueue(p, cpu);
        }
        let hidden = prev.is_some_and(|p| self.threads[p].hidden);
        if (out.is_some() || inc.is_some()) && !hidden {
            let state = if sleeps { 1 } else { 0 };
            let mut e = switch(now, cpu as u32, self.task(prev), state, self.task(next));
            if let Some((runtime, ran, nv, niv)) = out {
                e = out_counters(e, runtime, ran, nv, niv);
            }
            if let Some((runtime, delay, queued)) = inc {
                e = in_counters(e, runtime, delay, queued);
            }
            self.events.push(e);
        }
        if let Some(n) = next {
            let left = match n {
                PING | PONG => self.threads[n].left,
                _ => 5 * US + self.rand(60 * US),
            };
            let generation = self.generation[cpu];
            self.at(now + left, Action::BurstEnd { cpu, generation });
        }
    }

    fn step(&mut self) -> bool {
        let Some(((ts, _), a)) = self.agenda.pop_first() else {
            return false;
        };
        self.now = ts;
        match a {
            Action::BurstEnd { cpu, generation } if generation == self.generation[cpu] => {
                let Some(i) = self.current[cpu] else {
                    return true;
                };
                if i == PING || i == PONG {
                    let partner = if i == PING { PONG } else { PING };
                    self.threads[partner].left = self.burst();
                    let to = if self.current[cpu ^ 1].is_none() {
                        cpu ^ 1
                    } else {
                        cpu
                    };
                    self.enqueue(partner, to);
                    let mut e = wakeup(
                        ts,
                        cpu as u32,
                        self.threads[i].task,
                        self.threads[partner].task,
                        false,
                    );
                    if let EventKind::Wakeup { wakee_cpu, .. } = &mut e.kind {
                        *wakee_cpu = to as u32;
                    }
                    self.events.push(e);
                } else {
                    self.wake_later(i);
                }
                let next = self.queues[cpu].pop_front();
                self.switch(cpu, true, next);
            }
            Action::BurstEnd { .. } => {}
            Action::Pick { cpu } => {
                if self.current[cpu].is_none()
                    && let Some(n) = self.queues[cpu].pop_front()
                {
                    self.switch(cpu, true, Some(n));
                }
            }
            Action::Wake { thread, cpu } => {
                match self.current[cpu] {
                    // It preempts whatever runs there (what is left of a
                    // ping-pong burst is kept for later).
                    Some(cur) => {
                        if cur == PING || cur == PONG {
                            let t = &mut self.threads[cur];
                            let done = ts - t.exec_start;
                            t.left = t.left.saturating_sub(done).max(1);
                        }
                        self.threads[thread].last_queued = Some(ts);
                        self.switch(cpu, false, Some(thread));
                    }
                    None => self.enqueue(thread, cpu),
                }
            }
        }
        true
    }

    fn counters(&self, i: usize, ts: u64) -> ThreadCounters {
        let t = &self.threads[i];
        let running = match t.st {
            St::Running(_) => ts - t.exec_start,
            _ => 0,
        };
        ThreadCounters {
            ts,
            tid: t.task.tid,
            tgid: t.task.tgid,
            runtime_ns: t.runtime + running,
            run_delay_ns: t.run_delay,
            pcount: t.pcount,
            nvcsw: u64::from(t.nv),
            nivcsw: u64::from(t.niv),
        }
    }

    fn info(&self, i: usize, ts: u64) -> ThreadInfo {
        let t = &self.threads[i];
        let (state, cpu) = match t.st {
            St::Running(c) | St::Queued(c) => ('R', c),
            St::Asleep => ('S', 0),
        };
        ThreadInfo {
            ts,
            tid: t.task.tid,
            tgid: t.task.tgid,
            comm: t.task.comm,
            state,
            cpu: cpu as u32,
            syscall: None,
        }
    }

    /// Run until `ts`.
    fn run_to(&mut self, ts: u64) {
        while self
            .agenda
            .first_key_value()
            .is_some_and(|((t, _), _)| *t <= ts)
        {
            self.step();
        }
        self.now = ts;
    }
}

/// The thread's running time inside `[start, end]` (a run under way at
/// the end counts up to it).
fn in_window(t: &Thread, start: u64, end: u64) -> u64 {
    let open = match t.st {
        St::Running(_) => Some((t.exec_start, end)),
        _ => None,
    };
    t.runs
        .iter()
        .copied()
        .chain(open)
        .map(|(a, b)| b.min(end).saturating_sub(a.max(start)))
        .sum()
}

/// What schedtrace records when it attaches at a random moment of the
/// model's run and stops 5-10 ms later, in the order the capture writes
/// it; the model at the end; and the window.
fn capture(seed: u64) -> (Vec<Record>, Sim, u64, u64) {
    let mut sim = Sim::new(seed);
    let start = 2_000 * US + sim.rand(3_000 * US);
    sim.run_to(start);
    // `/proc` read after attaching: the threads, then their counters.
    let hints_at = start + 50 * US + sim.rand(800 * US);
    sim.run_to(hints_at);
    let infos: Vec<_> = [MAIN, PING, PONG]
        .iter()
        .map(|&i| sim.info(i, hints_at))
        .collect();
    let counters_at = hints_at + sim.rand(300 * US);
    sim.run_to(counters_at);
    let first: Vec<_> = [MAIN, PING, PONG]
        .iter()
        .map(|&i| sim.counters(i, counters_at))
        .collect();
    let end = counters_at + 5_000 * US + sim.rand(5_000 * US);
    // Read at the end (the capture stamps its end just after): a run
    // whose switch-in the stream lacks and that began after this read
    // would be in no record.
    sim.run_to(end);
    let last: Vec<_> = [MAIN, PING, PONG]
        .iter()
        .map(|&i| sim.counters(i, end))
        .collect();
    let mut recs = vec![Record::Header(Box::new(header(NCPUS as u32, start)))];
    recs.extend(infos.into_iter().map(Record::Thread));
    recs.extend(first.into_iter().map(Record::Counters));
    // `sched_switch` is attached last, at the start; the other programs
    // saw a little before it.
    let early = start.saturating_sub(300 * US);
    recs.extend(
        sim.events
            .iter()
            .filter(|e| match e.kind {
                EventKind::Switch { .. } => e.ts >= start,
                _ => e.ts >= early,
            })
            .filter(|e| e.ts <= end)
            .map(|e| Record::Event(*e)),
    );
    recs.extend(last.into_iter().map(Record::Counters));
    recs.push(crate::testutil::end(end));
    (recs, sim, start, end)
}

/// The analysis of one attach: no anomaly, and each ping-pong thread's
/// on-CPU time is the model's in the window; else what it got.
fn attach(seed: u64) -> Result<(), String> {
    let (recs, sim, start, end) = capture(seed);
    let s = analyze(&recs, Options::default()).0;
    let report = |what: String| {
        let mut r = format!("seed {seed}, window {start}..{end}: {what}\n");
        for t in &s.threads {
            r += &format!(
                "  {} {}: on-CPU {} anomalies {} inferred runs {} unplaced {} unknown {}\n",
                t.tid,
                t.comm,
                t.on_cpu_ns,
                t.anomalies,
                t.inferred_runs,
                t.unplaced_runs,
                t.states.unknown_ns
            );
        }
        r
    };
    if s.anomalies != 0 {
        return Err(report(format!("{} anomalies", s.anomalies)));
    }
    for i in [PING, PONG] {
        let t = &sim.threads[i];
        let got = s
            .threads
            .iter()
            .find(|x| x.tid == t.task.tid)
            .map_or(0, |x| x.on_cpu_ns);
        let want = in_window(t, start, end);
        if got != want {
            return Err(report(format!("{} on-CPU {got}, not {want}", t.task.comm)));
        }
    }
    Ok(())
}

/// `SCHEDTRACE_MODEL_CASES=N` for a longer run.
#[test]
fn attaching_in_mid_flight_contradicts_nothing_and_counts_exactly() {
    let cases = std::env::var("SCHEDTRACE_MODEL_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let failed: Vec<_> = (1..=cases).filter_map(|seed| attach(seed).err()).collect();
    for f in failed.iter().take(3) {
        eprintln!("{f}");
    }
    assert!(
        failed.is_empty(),
        "{} of {cases} attaches failed",
        failed.len()
    );
}
