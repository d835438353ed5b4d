//! Builds the eBPF object (`schedtrace-ebpf`, folder `tracer-ebpf`) with the
//! pinned nightly and bpf-linker, so that the loader can embed it. The pin
//! is `ebpf-toolchain` in the root Cargo.toml's
//! `[workspace.metadata.schedtrace]`, which `cargo xtask setup` installs;
//! `SCHEDTRACE_EBPF_TOOLCHAIN` overrides it.
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=SCHEDTRACE_EBPF_TOOLCHAIN");
    let meta = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    println!(
        "cargo:rerun-if-changed={}",
        meta.workspace_root.join("Cargo.toml")
    );
    let toolchain = match std::env::var("SCHEDTRACE_EBPF_TOOLCHAIN") {
        Ok(t) => t,
        Err(_) => meta
            .workspace_metadata
            .get("schedtrace")
            .and_then(|s| s.get("ebpf-toolchain"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| {
                anyhow!("the root Cargo.toml has no [workspace.metadata.schedtrace] ebpf-toolchain")
            })?
            .to_string(),
    };
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
