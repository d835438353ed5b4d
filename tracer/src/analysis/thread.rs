//! The state of one traced thread as the analysis walks the events, and the
//! figures it accumulates. The transitions themselves are driven by
//! [`super::Analyzer`], which also keeps the per-process counts in step.

use std::collections::BTreeMap;

use super::histogram::Histogram;
use super::timeline::SegState;
use crate::event::{Comm, Task};

/// Where a thread is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Before it was created (or first seen).
    Absent,
    Running {
        cpu: u32,
    },
    Runnable,
    Sleeping,
    Blocked,
    /// Its events were lost (another thread took its CPU without a
    /// switch-out of it, or the kernel dropped records on its CPU): where it
    /// is is unknown until its next event says.
    Unknown,
    Dead,
}

impl State {
    /// The timeline state, for states that are part of the thread's life.
    pub(crate) fn seg(self) -> Option<SegState> {
        match self {
            State::Running { cpu } => Some(SegState::Running { cpu }),
            State::Runnable => Some(SegState::Runnable),
            State::Sleeping => Some(SegState::Sleeping),
            State::Blocked => Some(SegState::Blocked),
            State::Absent | State::Unknown | State::Dead => None,
        }
    }

    pub(crate) fn is_running(self) -> bool {
        matches!(self, State::Running { .. })
    }
}

/// Why a thread became runnable (to split run-queue delays by cause).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    Wakeup,
    Preempted,
    /// Created, or runnable when tracing started.
    Other,
}

#[derive(Clone, Debug)]
pub(crate) struct WakerAcc {
    pub tgid: u32,
    pub comm: Comm,
    pub count: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct ThreadTrack {
    /// Order of first appearance among all threads of the trace.
    pub seq: u64,
    pub tid: u32,
    pub tgid: u32,
    pub comm: Comm,
    pub state: State,
    /// When `state` began.
    pub since: u64,
    pub cause: Cause,
    /// A wakeup from another CPU that came while this thread was still on
    /// its CPU (time, waker, the waker's CPU): see `Analyzer::switch_out`.
    pub woken_on_cpu: Option<(u64, Task, u32)>,
    /// Switches of this thread that contradicted its state (see
    /// `Summary::anomalies`).
    pub anomalies: u64,
    pub last_cpu: Option<u32>,
    pub created_ns: Option<u64>,
    pub exited_ns: Option<u64>,
    // Accumulated inside the window:
    pub running_ns: u64,
    pub runnable_ns: u64,
    pub sleeping_ns: u64,
    pub blocked_ns: u64,
    /// Time in [`State::Unknown`], and running time that turned out to be
    /// unknown (see `Analyzer::transition`).
    pub unknown_ns: u64,
    pub cpu_ns: BTreeMap<u32, u64>,
    pub voluntary: u64,
    pub involuntary: u64,
    pub migrations: u64,
    pub migration_pairs: BTreeMap<(u32, u32), u64>,
    pub migrate_events: u64,
    pub slices: u64,
    pub longest_slice_ns: u64,
    pub wait: Histogram,
    pub wait_wakeup: Histogram,
    pub wait_preempt: Histogram,
    pub wakers: super::TidMap<WakerAcc>,
}

impl ThreadTrack {
    /// Count one wakeup of this thread by `waker`.
    pub(crate) fn add_waker(&mut self, waker: &Task) {
        let w = self.wakers.entry(waker.tid).or_insert(WakerAcc {
            tgid: waker.tgid,
            comm: waker.comm,
            count: 0,
        });
        w.count += 1;
        w.comm = waker.comm;
    }

    pub(crate) fn new(tid: u32, tgid: u32, comm: Comm, state: State, since: u64) -> Self {
        ThreadTrack {
            seq: 0,
            tid,
            tgid,
            comm,
            state,
            since,
            cause: Cause::Other,
            woken_on_cpu: None,
            anomalies: 0,
            last_cpu: match state {
                State::Running { cpu } => Some(cpu),
                _ => None,
            },
            created_ns: None,
            exited_ns: None,
            running_ns: 0,
            runnable_ns: 0,
            sleeping_ns: 0,
            blocked_ns: 0,
            unknown_ns: 0,
            cpu_ns: BTreeMap::new(),
            voluntary: 0,
            involuntary: 0,
            migrations: 0,
            migration_pairs: BTreeMap::new(),
            migrate_events: 0,
            slices: 0,
            longest_slice_ns: 0,
            wait: Histogram::default(),
            wait_wakeup: Histogram::default(),
            wait_preempt: Histogram::default(),
            wakers: super::TidMap::default(),
        }
    }

    /// Add `ns` (already clipped to the window) to the time of `state`.
    pub(crate) fn charge(&mut self, state: State, ns: u64) {
        if ns == 0 {
            return;
        }
        match state {
            State::Running { cpu } => {
                self.running_ns += ns;
                *self.cpu_ns.entry(cpu).or_default() += ns;
            }
            State::Runnable => self.runnable_ns += ns,
            State::Sleeping => self.sleeping_ns += ns,
            State::Blocked => self.blocked_ns += ns,
            State::Unknown => self.unknown_ns += ns,
            State::Absent | State::Dead => {}
        }
    }

    pub(crate) fn record_wait(&mut self, ns: u64) {
        self.wait.record(ns);
        match self.cause {
            Cause::Wakeup => self.wait_wakeup.record(ns),
            Cause::Preempted => self.wait_preempt.record(ns),
            Cause::Other => {}
        }
    }

    pub(crate) fn lifetime_ns(&self) -> u64 {
        self.running_ns + self.runnable_ns + self.sleeping_ns + self.blocked_ns + self.unknown_ns
    }
}
