//! A trace as a stream of [`Record`]s: the header written when tracing
//! starts, the threads found at attach, the events, loss marks, and the end
//! record. Live capture produces this stream; `schedtrace report` reads it
//! back from a JSON Lines file (`jsonl`), so both feed the same analysis.

pub mod jsonl;

use crate::event::{Comm, Event};

/// Version of the JSON Lines trace schema (`docs/trace-format.md`).
pub const TRACE_SCHEMA_VERSION: u32 = 1;

/// What was traced, and how time in the trace relates to the wall clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    /// Wall clock (CLOCK_REALTIME) minus trace clock (CLOCK_MONOTONIC), ns.
    pub wall_clock_offset_ns: i64,
    pub ncpus: u32,
    pub target_pid: u32,
    pub target_comm: String,
    /// The command line when schedtrace launched the target itself.
    pub command: Option<Vec<String>>,
    pub follow_children: bool,
    /// CPUs the launched command was pinned to, if any.
    pub pinned_cpus: Option<Vec<u32>>,
    pub kernel_release: String,
    pub hostname: String,
    pub tool_version: String,
    /// Start of the window: every probe attached and the filter armed.
    pub start_ns: u64,
}

/// A thread that existed when tracing started, as `/proc` showed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadInfo {
    /// When `/proc` was read (after attach).
    pub ts: u64,
    pub tid: u32,
    pub tgid: u32,
    pub comm: Comm,
    /// State letter from `/proc/<pid>/task/<tid>/stat` (`R`, `S`, `D`, ...).
    pub state: char,
    /// The CPU it last ran on.
    pub cpu: u32,
}

/// Ring-buffer records lost on one CPU, noticed at `ts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lost {
    pub ts: u64,
    pub cpu: u32,
    pub count: u64,
}

/// How the trace ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// End of the window: every probe detached.
    pub end_ns: u64,
    pub events: u64,
    pub lost_events: u64,
    pub lost_per_cpu: Vec<u64>,
    /// False when schedtrace was stopped before it could drain the buffer.
    pub complete: bool,
    /// Why tracing stopped (`duration`, `signal`, `target-exited`, ...).
    pub reason: String,
}

/// One element of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Header(Header),
    Thread(ThreadInfo),
    Event(Event),
    Lost(Lost),
    End(End),
}
