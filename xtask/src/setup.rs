//! Installing what schedtrace needs, idempotently and quickly when it is
//! already there: the pinned eBPF nightly with rust-src, bpf-linker built
//! against that nightly's own LLVM (so their LLVM majors match), the tracefs
//! mount, and the Debian packages the tests use (Node.js and protoc among
//! them).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::run;

/// The eBPF toolchain pin: `[workspace.metadata.schedtrace]` in the root
/// Cargo.toml, the table tracer/build.rs builds the eBPF crate with.
pub(crate) struct Pin {
    /// The nightly that builds the eBPF crate.
    pub ebpf_toolchain: String,
    /// Its LLVM major version (`rustc +nightly-... -vV`).
    pub llvm_major: String,
    pub bpf_linker_version: String,
}

impl Pin {
    /// Read the pin through `cargo metadata`, as tracer/build.rs does.
    pub(crate) fn read() -> anyhow::Result<Pin> {
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .current_dir(crate::root())
            .stderr(Stdio::inherit())
            .output()
            .context("running cargo metadata")?;
        if !out.status.success() {
            bail!("cargo metadata failed: {}", out.status);
        }
        let meta: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("reading cargo metadata's output")?;
        let table = &meta["metadata"]["schedtrace"];
        let field = |key: &str| {
            table[key].as_str().map(str::to_string).with_context(|| {
                format!("the root Cargo.toml has no [workspace.metadata.schedtrace] {key}")
            })
        };
        Ok(Pin {
            ebpf_toolchain: field("ebpf-toolchain")?,
            llvm_major: field("ebpf-llvm-major")?,
            bpf_linker_version: field("bpf-linker-version")?,
        })
    }
}
/// Debian packages the tests use, by a command each provides: perf (perf
/// sched timehist as an oracle), bpftool (checking that nothing stays
/// loaded), util-linux (setpriv), chromium (loading the HTML report
/// headless), python3-venv (a venv for Perfetto's protobuf classes from
/// PyPI, tests/tests/exports.rs), nodejs (the real Node.js whose thread
/// roles tests/tests/why.rs checks), protobuf-compiler (protoc, compiling
/// pprof's profile.proto for Python to decode `--pprof` files with).
const TEST_PACKAGES: &[(&str, &str)] = &[
    ("perf", "linux-perf"),
    ("bpftool", "bpftool"),
    ("setpriv", "util-linux"),
    ("chromium", "chromium"),
    ("tmux", "tmux"),
    ("python3", "python3-venv"),
    ("node", "nodejs"),
    ("protoc", "protobuf-compiler"),
    // `cargo xtask dist` checks its binary is static, and packages it.
    ("readelf", "binutils"),
    ("dpkg-deb", "dpkg"),
];

/// The Python with DuckDB that the Parquet tests query the tables with
/// (tests/tests/parquet.rs, docs/fleet.md): a venv in the workspace's
/// `target/`, since Debian's Python refuses `pip install` outside one.
const DUCKDB_VENV: &str = "target/duckdb-py";

/// Make the DuckDB venv unless its Python already imports `duckdb`.
fn ensure_duckdb() -> anyhow::Result<()> {
    let venv = crate::root().join(DUCKDB_VENV);
    let py = venv.join("bin/python");
    if quiet_ok(Command::new(&py).args(["-c", "import duckdb"])) {
        return Ok(());
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(&py).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "duckdb",
    ]))?;
    if !quiet_ok(Command::new(&py).args(["-c", "import duckdb"])) {
        bail!(
            "duckdb was installed in {} but does not import",
            venv.display()
        );
    }
    Ok(())
}

/// Python modules the tests import with Debian's `/usr/bin/python3`, by
/// the package that provides each: the protobuf runtime that matches
/// Debian's protoc (decoding `--pprof` files).
const TEST_PYTHON_MODULES: &[(&str, &str)] = &[("google.protobuf", "python3-protobuf")];

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        })
}

/// PATH with `$CARGO_HOME/bin` first, where bpf-linker is installed.
pub(crate) fn path_with_cargo_bin() -> String {
    let bin = cargo_home().join("bin");
    match std::env::var("PATH") {
        Ok(p) => format!("{}:{p}", bin.display()),
        Err(_) => bin.display().to_string(),
    }
}

fn quiet_ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn output(cmd: &mut Command) -> Option<String> {
    let o = cmd.stderr(Stdio::null()).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn ensure_toolchain(pin: &Pin) -> anyhow::Result<()> {
    let has_src = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        &pin.ebpf_toolchain,
    ]))
    .is_some_and(|s| s.lines().any(|l| l.starts_with("rust-src")));
    if has_src {
        return Ok(());
    }
    run(Command::new("rustup").args([
        "toolchain",
        "install",
        &pin.ebpf_toolchain,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
}

/// The nightly's own libLLVM, which bpf-linker links against.
fn nightly_libllvm(pin: &Pin) -> anyhow::Result<PathBuf> {
    let sysroot = output(Command::new("rustup").args([
        "run",
        &pin.ebpf_toolchain,
        "rustc",
        "--print",
        "sysroot",
    ]))
    .context("asking the eBPF nightly for its sysroot")?;
    let lib = PathBuf::from(sysroot.trim()).join("lib");
    std::fs::read_dir(&lib)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM") && n.contains(".so"))
        })
        .with_context(|| format!("no libLLVM in {}", lib.display()))
}

fn bpf_linker_ok(pin: &Pin) -> bool {
    let bin = cargo_home().join("bin/bpf-linker");
    output(Command::new(bin).arg("--version"))
        .is_some_and(|v| v.contains(pin.bpf_linker_version.as_str()))
}

fn ensure_bpf_linker(pin: &Pin) -> anyhow::Result<()> {
    if bpf_linker_ok(pin) {
        return Ok(());
    }
    // A prefix whose lib/ holds libLLVM.so -> the nightly's libLLVM. The
    // bpf-linker binary keeps this path (rpath), so the folder stays.
    let llvm = nightly_libllvm(pin)?;
    let prefix = cargo_home().join(format!("schedtrace-llvm/{}", pin.ebpf_toolchain));
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib)?;
    let name = llvm.file_name().expect("file name").to_owned();
    for link in [lib.join("libLLVM.so"), lib.join(&name)] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            &pin.bpf_linker_version,
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
            &format!("llvm-{}", pin.llvm_major),
        ])
        .env("LLVM_PREFIX", &prefix))?;
    if !bpf_linker_ok(pin) {
        bail!("bpf-linker was installed but does not run");
    }
    Ok(())
}

/// Mount tracefs if it is not (schedtrace itself uses `tp_btf` programs and
/// does not need it; perf, trace-cmd and bpftrace in tests and benchmarks do).
pub(crate) fn ensure_tracefs() {
    let mounted = std::fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split_whitespace().nth(2) == Some("tracefs"))
    });
    if mounted {
        return;
    }
    if !quiet_ok(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])) {
        eprintln!(
            "xtask: warning: tracefs is not mounted and mounting it failed; run \
             `sudo mount -t tracefs nodev /sys/kernel/tracing` (only the peer tools need it)"
        );
    }
}

/// Install Debian packages whose commands are missing.
pub(crate) fn ensure_packages(pkgs: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .filter(|(cmd, _)| !quiet_ok(Command::new("sh").args(["-c", &format!("command -v {cmd}")])))
        .map(|(_, pkg)| *pkg)
        .collect();
    apt_install(&missing)
}

/// Install Debian packages whose Python modules `/usr/bin/python3` lacks.
fn ensure_python_modules(mods: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = mods
        .iter()
        .filter(|(m, _)| {
            !quiet_ok(Command::new("/usr/bin/python3").args(["-c", &format!("import {m}")]))
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    apt_install(&missing)
}

fn apt_install(missing: &[&str]) -> anyhow::Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run(&mut apt(&["update", "-q"]))?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(missing);
    run(&mut install)
}

pub(crate) fn setup(tests: bool) -> anyhow::Result<()> {
    let t = std::time::Instant::now();
    let pin = Pin::read()?;
    ensure_toolchain(&pin)?;
    ensure_bpf_linker(&pin)?;
    ensure_tracefs();
    if tests {
        ensure_packages(TEST_PACKAGES)?;
        ensure_duckdb()?;
        ensure_python_modules(TEST_PYTHON_MODULES)?;
    }
    eprintln!("xtask: setup done in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}
