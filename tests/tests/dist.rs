//! What `cargo xtask dist` ships runs on a host with nothing else: its
//! `.deb` unpacked into an empty root file system (no libc, no loader, no
//! toolchain; only fresh `/proc` and `/sys` mounts and a `/dev/null`, as a
//! container has them) traces its built-in workload there.

use std::path::{Path, PathBuf};

use schedtrace_tests::TempDir;
use std::process::Command;

use schedtrace_tests::*;

/// An empty root file system with fresh `/proc` and `/sys` mounts and a
/// `/dev` holding only `null`: nothing of the host's files under it, so that
/// nothing of them can be reached through it. Dropped, it unmounts them and
/// removes the directory only if nothing is mounted under it any more.
struct Root {
    dir: Option<TempDir>,
    fs: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Root {
    fn new() -> anyhow::Result<Root> {
        let dir = tempdir();
        let fs = dir.path().join("root");
        std::fs::create_dir(&fs)?;
        let mut root = Root {
            dir: Some(dir),
            fs: fs.clone(),
            mounts: Vec::new(),
        };
        for (what, fstype) in [("proc", "proc"), ("sys", "sysfs"), ("dev", "tmpfs")] {
            let at = fs.join(what);
            std::fs::create_dir_all(&at)?;
            let st = Command::new("mount")
                .args(["-t", fstype, fstype])
                .arg(&at)
                .status()?;
            anyhow::ensure!(st.success(), "mounting {fstype} on {}: {st}", at.display());
            root.mounts.push(at);
        }
        let null = fs.join("dev/null");
        let st = Command::new("mknod")
            .arg(&null)
            .args(["c", "1", "3"])
            .status()?;
        anyhow::ensure!(st.success(), "mknod {}: {st}", null.display());
        std::fs::create_dir_all(fs.join("tmp"))?;
        Ok(root)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg(m).status();
        }
        let left = mounts_under(&self.fs);
        if left.is_empty() {
            drop(self.dir.take());
        } else {
            // Never remove a tree with a file system mounted in it.
            eprintln!("still mounted, kept: {left:?}");
            std::mem::forget(self.dir.take());
        }
    }
}

#[test]
fn the_dist_package_traces_in_an_empty_root_file_system() -> anyhow::Result<()> {
    require_root();
    let deb = std::env::var_os("SCHEDTRACE_DIST_DEB")
        .map(PathBuf::from)
        .expect("SCHEDTRACE_DIST_DEB: run the tests with `cargo xtask test`, which builds it");
    let root = Root::new()?;
    let fs = root.fs.clone();
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&fs)
        .status()?;
    assert!(st.success(), "unpacking {}: {st}", deb.display());
    for f in [
        "usr/share/man/man1/schedtrace.1.gz",
        "usr/share/bash-completion/completions/schedtrace",
        "usr/share/zsh/vendor-completions/_schedtrace",
        "usr/share/fish/vendor_completions.d/schedtrace.fish",
    ] {
        assert!(fs.join(f).is_file(), "{f} is in the package");
    }
    // Nothing but the package: no shared library anywhere to load.
    assert!(!fs.join("lib").exists() && !fs.join("usr/lib").exists());
    let out = Command::new("chroot")
        .arg(&fs)
        .args(["/usr/bin/schedtrace", "--records", "--duration", "3"])
        .args(["--format", "json"])
        // Nothing of the host's environment but where `chroot` is found.
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()?;
    let left = {
        drop(root);
        mounts_under(&fs)
    };
    assert!(left.is_empty(), "still mounted: {left:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let s = summary_from(&String::from_utf8(out.stdout)?)?;
    // The built-in workload: its main thread and pool ran, nothing lost.
    assert_eq!(s["lost_events"], 0, "{stderr}");
    let threads = s["threads"].as_array().unwrap();
    assert!(threads.len() >= 5, "{threads:?}");
    let ran = threads
        .iter()
        .filter(|t| t["on_cpu_ns"].as_u64().unwrap() > 0)
        .count();
    assert!(ran >= 5, "the workload's threads ran: {threads:?}");
    assert_eq!(s["complete"], true, "{stderr}");
    Ok(())
}

/// Mounts at or under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}
