//! Builds the eBPF object (`schedtrace-ebpf`, folder `tracer-ebpf`) with the pinned nightly and
//! bpf-linker, so that the loader can embed it. `cargo xtask setup` installs
//! both. The toolchain can be overridden with `SCHEDTRACE_EBPF_TOOLCHAIN`.
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// Keep in sync with xtask's `EBPF_TOOLCHAIN`.
const DEFAULT_EBPF_TOOLCHAIN: &str = "nightly-2026-05-20";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=SCHEDTRACE_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("SCHEDTRACE_EBPF_TOOLCHAIN")
        .unwrap_or_else(|_| DEFAULT_EBPF_TOOLCHAIN.to_string());
    let meta = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let pkg = meta
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "schedtrace-ebpf")
        .ok_or_else(|| anyhow!("schedtrace-ebpf package not found"))?;
    let root = pkg
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("schedtrace-ebpf has no directory"))?;
    println!("cargo:rustc-env=SCHEDTRACE_EBPF_TOOLCHAIN_USED={toolchain}");
    let toolchain: &'static str = Box::leak(toolchain.into_boxed_str());
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "schedtrace-ebpf",
            root_dir: root.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom(toolchain),
    )
    .context(
        "building the eBPF object failed; run `cargo xtask setup` to install the pinned \
         nightly, rust-src and bpf-linker",
    )
}
