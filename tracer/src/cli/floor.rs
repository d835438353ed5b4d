//! `schedtrace __floor` (hidden): the benchmark's physical floor. Loads
//! the empty `tp_btf` programs of `tracer-ebpf/src/floor.rs` on
//! `sched_switch` and `sched_waking`, says so on stderr, and keeps them
//! attached until SIGINT or SIGTERM. `cargo xtask bench` runs the workload
//! while this holds them, to price merely being attached to the hot
//! tracepoints (docs/benchmark.md).
//!
//! It lives in the schedtrace binary, behind a hidden command, so that the
//! floor is built by the same build script, loaded by the same aya and the
//! same BTF path as a capture, and ships nowhere else.

use anyhow::{Context as _, anyhow};
use aya::{Btf, EbpfLoader, programs::BtfTracePoint};

/// The floor's eBPF object, built by `build.rs` with the capture's.
static FLOOR_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/floor"));

/// (program, tracepoint) pairs in the object.
const PROGRAMS: [(&str, &str); 2] = [
    ("floor_switch", "sched_switch"),
    ("floor_waking", "sched_waking"),
];

pub(crate) fn floor() -> anyhow::Result<i32> {
    let btf = Btf::from_sys_fs().context("reading the kernel's BTF")?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .load(FLOOR_OBJECT)
        .context("loading the floor's eBPF object")?;
    for (name, tp) in PROGRAMS {
        let prog: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("program {name} missing from the floor object"))?
            .try_into()?;
        prog.load(tp, &btf)
            .with_context(|| format!("loading {name}"))?;
        prog.attach()
            .with_context(|| format!("attaching {name} to {tp}"))?;
    }
    eprintln!("schedtrace: floor attached (empty programs on sched_switch, sched_waking)");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })?;
    drop(ebpf);
    Ok(0)
}
