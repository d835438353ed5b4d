//! Naming the addresses of off-CPU stacks at the end of a capture, while
//! the traced processes (and their perf maps) are still there, so that the
//! trace's stack table carries names and `schedtrace report` needs neither
//! the binaries nor root.
//!
//! blazesym (the libbpf project's symbolizer) does the work: the kernel
//! from `/proc/kallsyms` (or a vmlinux when one is found), processes from
//! their ELF symbol tables and DWARF (following `.gnu_debuglink` to
//! installed debug files), through `/proc/PID/map_files` so that deleted
//! binaries and other mount namespaces work, C++ and Rust names
//! demangled, and the perf map a JIT writes (`node --perf-basic-prof`
//! writes `/tmp/perf-PID.map`), which names JavaScript frames.
//! docs/stacks.md has the measurements that chose it.

use std::collections::HashMap;

use blazesym::Pid;
use blazesym::symbolize::source::{Kernel, Process, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};

use crate::trace::{Frame, Stack, StackKind};

/// A stack as the kernel's stack map holds it: instruction addresses,
/// innermost first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawStack {
    pub id: u32,
    pub kind: StackKind,
    /// The process whose address space the user addresses are in.
    pub tgid: u32,
    pub ips: Vec<u64>,
}

/// What symbolising a capture's stacks found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SymbolStats {
    pub frames: usize,
    pub unique_addresses: usize,
    pub named: usize,
    /// Named from a perf map (a JIT's code).
    pub jit: usize,
}

/// The address to look up for frame `i` of a stack: past the innermost
/// frame each address is a return address, the instruction after the call,
/// which can belong to the next function when the call was the last
/// instruction of its own; one byte back is inside the call.
fn lookup_addr(i: usize, ip: u64) -> u64 {
    if i == 0 { ip } else { ip.saturating_sub(1) }
}

/// A symbolizer for [`symbolize_with`]: it keeps what it parsed (symbol
/// tables, perf maps) for the next call.
pub(crate) fn symbolizer() -> Symbolizer {
    Symbolizer::builder()
        .enable_code_info(false)
        .enable_inlined_fns(false)
        .build()
}

/// Name the frames of `stacks`.
#[cfg(test)]
pub(crate) fn symbolize(stacks: &[RawStack]) -> (Vec<Stack>, SymbolStats) {
    symbolize_with(&symbolizer(), stacks)
}

/// How many innermost frames of a kernel stack taken at a tracepoint are
/// the tracing machinery (the BPF program, `bpf_trace_run*` or
/// `__bpf_trace_*`, `__traceiter_*`) rather than where the thread stopped:
/// the frames up to the last of those among the first few.
fn machinery_frames(frames: &[Frame]) -> usize {
    frames
        .iter()
        .take(6)
        .rposition(|f| {
            f.name.as_deref().is_some_and(|n| {
                n.starts_with("bpf_trace_run")
                    || n.starts_with("__bpf_trace_")
                    || n.starts_with("__traceiter_")
            })
        })
        .map_or(0, |i| i + 1)
}

/// Name the frames of `stacks` with `symbolizer`.
pub(crate) fn symbolize_with(
    symbolizer: &Symbolizer,
    stacks: &[RawStack],
) -> (Vec<Stack>, SymbolStats) {
    let mut stats = SymbolStats::default();
    // Unique addresses per address space: the kernel's, and each process's.
    let mut spaces: HashMap<(StackKind, u32), Vec<u64>> = HashMap::new();
    for s in stacks {
        let space = spaces.entry(space_of(s)).or_default();
        for (i, &ip) in s.ips.iter().enumerate() {
            space.push(lookup_addr(i, ip));
            stats.frames += 1;
        }
    }
    let mut names: HashMap<(StackKind, u32, u64), (String, Option<String>)> = HashMap::new();
    for ((kind, tgid), mut addrs) in spaces {
        addrs.sort_unstable();
        addrs.dedup();
        stats.unique_addresses += addrs.len();
        let src = match kind {
            StackKind::Kernel => Source::Kernel(Kernel::default()),
            StackKind::User => Source::Process(Process::new(Pid::from(tgid))),
        };
        let Ok(found) = symbolizer.symbolize(&src, Input::AbsAddr(&addrs)) else {
            log::info!("cannot symbolise the stacks of {kind:?} {tgid}");
            continue;
        };
        for (addr, sym) in addrs.iter().zip(found) {
            let Symbolized::Sym(sym) = sym else { continue };
            let module = match kind {
                StackKind::Kernel => Some(
                    sym.module
                        .as_deref()
                        .map(|m| m.to_string_lossy().into_owned())
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| "[kernel]".into()),
                ),
                StackKind::User => sym.module.as_deref().map(|m| {
                    let m = m.to_string_lossy();
                    if m.contains("/perf-") && m.ends_with(".map") {
                        stats.jit += 1;
                        "[jit]".to_string()
                    } else {
                        m.into_owned()
                    }
                }),
            };
            names.insert((kind, tgid, *addr), (sym.name.into_owned(), module));
        }
    }
    let out = stacks
        .iter()
        .map(|s| {
            let (kind, tgid) = space_of(s);
            let mut frames: Vec<Frame> = s
                .ips
                .iter()
                .enumerate()
                .map(|(i, &ip)| {
                    let named = names.get(&(kind, tgid, lookup_addr(i, ip)));
                    if named.is_some() {
                        stats.named += 1;
                    }
                    Frame {
                        addr: ip,
                        name: named.map(|n| n.0.clone()),
                        module: named.and_then(|n| n.1.clone()),
                    }
                })
                .collect();
            if kind == StackKind::Kernel {
                frames.drain(..machinery_frames(&frames));
            }
            Stack {
                id: s.id,
                kind: s.kind,
                tgid: s.tgid,
                frames,
                thread: None,
            }
        })
        .collect();
    (out, stats)
}

/// The address space of a stack: the kernel's is one for all.
fn space_of(s: &RawStack) -> (StackKind, u32) {
    match s.kind {
        StackKind::Kernel => (StackKind::Kernel, 0),
        StackKind::User => (StackKind::User, s.tgid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracing_machinery_is_cut_from_kernel_stacks() {
        let f = |n: &str| Frame {
            addr: 1,
            name: (!n.is_empty()).then(|| n.to_string()),
            module: None,
        };
        // As taken in sched_switch on Linux 6.18: the BPF program (named
        // after the nearest symbol, or not at all), bpf_trace_run4, then
        // the scheduler.
        let taken = [
            f("__stop_runtime_ptr_USER_PTR_MAX"),
            f("bpf_trace_run4"),
            f("__schedule"),
            f("schedule"),
            f("do_nanosleep"),
        ];
        assert_eq!(machinery_frames(&taken), 2);
        let older = [
            f(""),
            f("__bpf_trace_sched_switch"),
            f("__traceiter_sched_switch"),
            f("__schedule"),
        ];
        assert_eq!(machinery_frames(&older), 3);
        // A stack without them keeps every frame, and a deep one is not
        // searched past its first frames.
        assert_eq!(machinery_frames(&taken[2..]), 0);
        let mut deep = vec![f("schedule"); 8];
        deep.push(f("bpf_trace_run2"));
        assert_eq!(machinery_frames(&deep), 0);
    }

    #[inline(never)]
    fn a_function_of_this_test() -> u64 {
        std::hint::black_box(7)
    }

    /// Addresses in this very process get their function's name and binary
    /// (the test binary has its symbol table), including an address inside
    /// the function (as a return address would be) and libc's.
    #[test]
    fn names_the_functions_of_a_live_process() {
        let f = a_function_of_this_test as *const () as u64;
        let libc_fn = libc::nanosleep as *const () as u64;
        let stacks = [RawStack {
            id: 3,
            kind: StackKind::User,
            tgid: std::process::id(),
            // Innermost first: the function's start, then a return address
            // into it, then libc.
            ips: vec![f, f + 2, libc_fn + 1],
        }];
        let (out, stats) = symbolize(&stacks);
        assert_eq!(out.len(), 1);
        let names: Vec<Option<&str>> = out[0].frames.iter().map(|f| f.name.as_deref()).collect();
        assert!(
            names[0].is_some_and(|n| n.ends_with("a_function_of_this_test")),
            "{names:?}"
        );
        assert_eq!(names[0], names[1]);
        assert!(
            names[2].is_some_and(|n| n.contains("nanosleep")),
            "{names:?}"
        );
        let exe = std::env::current_exe().unwrap();
        let module = out[0].frames[0].module.as_deref().unwrap();
        assert!(
            module.ends_with(exe.file_name().unwrap().to_str().unwrap())
                || module.contains("map_files"),
            "{module}"
        );
        assert_eq!(out[0].frames[0].addr, f);
        assert_eq!(stats.frames, 3);
        assert_eq!(stats.named, 3);
        assert_eq!(stats.unique_addresses, 3);
    }

    #[test]
    fn a_gone_process_leaves_addresses_unnamed() {
        let stacks = [RawStack {
            id: 1,
            kind: StackKind::User,
            tgid: u32::MAX - 1,
            ips: vec![0x1234],
        }];
        let (out, stats) = symbolize(&stacks);
        assert_eq!(out[0].frames[0].name, None);
        assert_eq!(out[0].frames[0].addr, 0x1234);
        assert_eq!(stats.named, 0);
    }
}
