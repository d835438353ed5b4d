//! `cargo xtask dist`: a binary to ship to every host. One statically
//! linked executable (musl, the eBPF object embedded as always) and a
//! `.deb` with it, the man page and the shell completions, in `target/dist/`.
//! docs/dist.md says what a host needs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{release_build, root, run, setup, target_dir};

/// The Rust target of the shipped binary.
const TARGET: &str = "x86_64-unknown-linux-musl";

/// What `dist` made.
pub(crate) struct Dist {
    pub binary: PathBuf,
    pub deb: PathBuf,
}

pub(crate) fn main() -> anyhow::Result<()> {
    setup::setup(false)?;
    let d = build()?;
    eprintln!(
        "xtask: dist: {} and {}",
        d.binary.display(),
        d.deb.display()
    );
    Ok(())
}

/// Build the static binary and the package.
pub(crate) fn build() -> anyhow::Result<Dist> {
    ensure_target()?;
    run(release_build()
        .args(["--target", TARGET])
        .env("RUSTFLAGS", "-C target-feature=+crt-static"))?;
    let built = target_dir().join(TARGET).join("release/schedtrace");
    check_static(&built)?;
    let version = version(&built)?;
    let out = target_dir().join("dist");
    std::fs::create_dir_all(&out)?;
    let binary = out.join(format!("schedtrace-{version}-x86_64-linux-musl"));
    std::fs::copy(&built, &binary).with_context(|| format!("copying to {}", binary.display()))?;
    let deb = deb(&built, &version, &out)?;
    Ok(Dist { binary, deb })
}

/// Install the musl target of the stable toolchain if it is missing.
fn ensure_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", TARGET]))
}

/// A static executable has no program interpreter (`PT_INTERP`).
fn check_static(bin: &Path) -> anyhow::Result<()> {
    let out = Command::new("readelf")
        .args(["--program-headers", "--wide"])
        .arg(bin)
        .output()
        .context("running readelf")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("INTERP") {
        bail!("{} is not a static executable:\n{text}", bin.display());
    }
    Ok(())
}

/// The version the binary says it is (`schedtrace 0.1.0 ...`).
fn version(bin: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin).arg("--version").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .map(str::to_string)
        .with_context(|| format!("{} --version said {text:?}", bin.display()))
}

/// What the package holds besides the binary: workspace file, where it goes.
const PACKAGED: &[(&str, &str)] = &[
    (
        "completions/schedtrace.bash",
        "usr/share/bash-completion/completions/schedtrace",
    ),
    (
        "completions/_schedtrace",
        "usr/share/zsh/vendor-completions/_schedtrace",
    ),
    (
        "completions/schedtrace.fish",
        "usr/share/fish/vendor_completions.d/schedtrace.fish",
    ),
    ("docs/man/schedtrace.1", "usr/share/man/man1/schedtrace.1"),
];

/// `schedtrace_VERSION_amd64.deb`: the binary in `/usr/bin`, the man page,
/// the bash, zsh and fish completions, made with `dpkg-deb`.
fn deb(bin: &Path, version: &str, out: &Path) -> anyhow::Result<PathBuf> {
    let stage = out.join("deb-root");
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    let root = root();
    let mut files = vec![(bin.to_path_buf(), "usr/bin/schedtrace", 0o755)];
    files.extend(
        PACKAGED
            .iter()
            .map(|&(from, to)| (root.join(from), to, 0o644)),
    );
    for (from, to, mode) in files {
        let dest = stage.join(to);
        std::fs::create_dir_all(dest.parent().expect("a file in a folder"))?;
        std::fs::copy(&from, &dest).with_context(|| format!("copying {}", from.display()))?;
        std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    }
    run(Command::new("gzip")
        .args(["-9n"])
        .arg(stage.join("usr/share/man/man1/schedtrace.1")))?;
    let size_kib = dir_size(&stage)? / 1024;
    std::fs::create_dir_all(stage.join("DEBIAN"))?;
    std::fs::write(
        stage.join("DEBIAN/control"),
        format!(
            "Package: schedtrace\n\
             Version: {version}\n\
             Architecture: amd64\n\
             Maintainer: schedtrace developers <schedtrace@localhost>\n\
             Installed-Size: {size_kib}\n\
             Section: devel\n\
             Priority: optional\n\
             Description: which threads ran on which CPU, when, and why they stopped\n \
             A Linux scheduler tracer on eBPF: per-thread on-CPU and wait times exact\n \
             against the kernel's own accounting, wakeup chains, and exports (JSON,\n \
             Perfetto, HTML, Parquet). One static binary; needs a kernel with BTF.\n"
        ),
    )?;
    let deb = out.join(format!("schedtrace_{version}_amd64.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    std::fs::remove_dir_all(&stage)?;
    Ok(deb)
}

fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        n += if m.is_dir() {
            dir_size(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(n)
}
