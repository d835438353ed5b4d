//! schedtrace: trace which threads of a process ran on which CPU, when, and
//! why they stopped, with an eBPF program on the scheduler's tracepoints.
//!
//! The modules read as the pipeline: kernel → ring buffer → [`capture`]
//! (events decoded once by `event`, put in timestamp order, handed on as
//! [`trace::Record`]s) → [`analysis`] (state machine, summaries, timelines)
//! → [`export`] (text, JSON, Perfetto, Chrome, HTML, the terminal). The
//! [`trace`] module is the record stream itself: its model, the
//! [`trace::consumer::Consumer`] seam every stage plugs into, and the two
//! file formats a saved trace replays from. The command line lives in the
//! binary (`src/main.rs`, `src/cli/`).

pub mod analysis;
pub mod capture;
mod ebpf_object;
pub(crate) mod event;
pub mod export;
pub mod privs;
pub mod procfs;
pub(crate) mod syscalls;
#[doc(hidden)]
pub mod testing;
pub(crate) mod tid;
pub mod trace;
pub mod units;
pub mod version;
pub mod workload;

#[cfg(test)]
pub(crate) mod testutil;
