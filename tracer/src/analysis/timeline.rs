//! The full state timeline of every traced thread: segments that tile each
//! thread's lifetime in the window, wakeup edges and loss marks, and what
//! else held each CPU. Only kept when an output needs it (the timeline,
//! Perfetto, Chrome, HTML exporters, `report --chain`), since it grows with
//! the trace.

use super::antagonists::Hold;
use super::waits::WaitKey;
use crate::event::{Comm, WakeContext};

/// What a thread was doing during a [`Segment`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SegState {
    Running { cpu: u32 },
    Runnable,
    Sleeping,
    Blocked,
}

impl SegState {
    pub fn name(self) -> &'static str {
        match self {
            SegState::Running { .. } => "running",
            SegState::Runnable => "runnable",
            SegState::Sleeping => "sleeping",
            SegState::Blocked => "blocked",
        }
    }
}

/// `[start, end)` in trace-clock ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub tid: u32,
    pub start: u64,
    pub end: u64,
    pub state: SegState,
    /// A run whose switch-in the kernel's tracepoint stream lacked: placed
    /// from the counters its switch-out carried (its end is the switch-out,
    /// its start that less its length on the run-queue clock).
    pub inferred: bool,
    /// Sleeping or blocked: why, when the switch-out recorded it.
    pub wait: Option<WaitKey>,
    /// Sleeping or blocked: the kernel stack it slept in (`--stacks`).
    pub kernel_stack: Option<u32>,
}

impl Segment {
    /// A segment with no wait reason, not inferred.
    pub fn new(tid: u32, start: u64, end: u64, state: SegState) -> Self {
        Segment {
            tid,
            start,
            end,
            state,
            inferred: false,
            wait: None,
            kernel_stack: None,
        }
    }
}

/// Takes every segment as the analysis closes it, in the order they close
/// (not sorted), with its thread's TGID and name at that time and, for a
/// run, the on-CPU time the analysis charged for it (the kernel's own
/// figure where the trace has its counters; these add up to the thread's
/// `on_cpu_ns` but for runs no record places): how a streaming export sees
/// the timeline without keeping it in memory.
pub(crate) trait SegmentSink {
    /// A closed segment of thread `seg.tid` (process `tgid`, named `comm`),
    /// with the on-CPU time charged for a run and, for a runnable segment
    /// that a wakeup began, what woke it.
    fn segment(
        &mut self,
        seg: &Segment,
        tgid: u32,
        comm: &Comm,
        on_cpu_ns: u64,
        waker: Option<&SegWaker>,
    );
}

/// What made a runnable segment's thread runnable: its wakeup's context
/// (`task`, `timer`, ...; see `Link::context_name`) and, when a task woke
/// it, that task's TID and name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegWaker {
    pub context: &'static str,
    pub task: Option<(u32, Comm)>,
}

/// `waker` made `wakee` runnable at `ts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WakeEdge {
    pub ts: u64,
    /// The waker when `context` is a task's; otherwise the task the
    /// interrupt came in on (no waker).
    pub waker_tid: u32,
    pub wakee_tid: u32,
    /// CPU the wakeup ran on (the waker's).
    pub cpu: u32,
    /// The waker's process (0 if unknown) and name, for wakers outside the
    /// traced threads.
    pub waker_tgid: u32,
    pub waker_comm: Comm,
    /// Where it came from: with anything but `Task`, the waker is only the
    /// task the interrupt found running.
    pub context: WakeContext,
}

/// A thread that appears in the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineThread {
    pub tid: u32,
    pub tgid: u32,
    pub comm: String,
    pub created_ns: Option<u64>,
    pub exited_ns: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    pub start_ns: u64,
    pub end_ns: u64,
    pub ncpus: u32,
    /// In order of each thread's first appearance.
    pub threads: Vec<TimelineThread>,
    /// Sorted by start time.
    pub segments: Vec<Segment>,
    pub wakeups: Vec<WakeEdge>,
    /// (ts, cpu, count) of lost events.
    pub lost: Vec<(u64, u32, u64)>,
    /// Stretches of CPUs held by tasks outside the traced threads, by the
    /// idle task, or not recorded, as far as the switch records tell
    /// (sorted by start).
    pub holds: Vec<Hold>,
}

impl Timeline {
    /// Running segments grouped by CPU: index = CPU.
    pub fn cpu_lanes(&self) -> Vec<Vec<Segment>> {
        let mut lanes = vec![Vec::new(); self.ncpus as usize];
        for s in &self.segments {
            if let SegState::Running { cpu } = s.state {
                if lanes.len() <= cpu as usize {
                    lanes.resize(cpu as usize + 1, Vec::new());
                }
                lanes[cpu as usize].push(*s);
            }
        }
        lanes
    }

    /// Segments of one thread, in time order.
    pub fn thread_segments(&self, tid: u32) -> impl Iterator<Item = &Segment> {
        self.segments.iter().filter(move |s| s.tid == tid)
    }
}
