//! schedtrace: trace which threads of a process ran on which CPU, when, and
//! why they stopped, with an eBPF program on the scheduler's tracepoints.
//!
//! Data flows kernel → ring buffer → [`capture`] (typed [`event::Event`]s in
//! timestamp order, as [`trace::Record`]s) → [`analysis`] (state machine,
//! summaries, timelines) → [`export`] (text, JSON, ...). A saved trace
//! ([`trace::jsonl`]) replays through the same analysis and exporters.

pub mod analysis;
pub mod app;
pub mod capture;
pub mod cli;
pub mod demo;
pub mod event;
pub mod export;
pub mod live;
pub mod privs;
pub mod procfs;
pub mod trace;
pub mod units;
pub mod version;
pub mod workload;

#[cfg(test)]
pub(crate) mod testutil;
