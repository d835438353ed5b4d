//! `--cgroup PATH`: the cgroup v2 directory whose processes are traced,
//! checked to be one, and the processes in it and below it as `/proc`-like
//! `cgroup.procs` files list them. The kernel side adds the processes that
//! enter it later (`schedtrace_common::CgroupFilter`).

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use schedtrace_common::MAX_CGROUP_DEPTH;

use crate::trace::TargetCgroup;

/// A cgroup v2 directory, checked.
#[derive(Clone, Debug)]
pub(crate) struct Cgroup {
    path: PathBuf,
    id: u64,
}

impl Cgroup {
    /// Check that `path` is a directory of a cgroup v2 file system, and
    /// take its id (the directory's inode number, which is the kernel's
    /// cgroup id on cgroup v2).
    pub(crate) fn open(path: &Path) -> anyhow::Result<Cgroup> {
        let canon = std::fs::canonicalize(path)
            .with_context(|| format!("--cgroup {}: no such directory", path.display()))?;
        let meta =
            std::fs::metadata(&canon).with_context(|| format!("--cgroup {}", canon.display()))?;
        if !meta.is_dir() {
            bail!("--cgroup {}: not a directory", canon.display());
        }
        if !is_cgroup2(&canon)? {
            let mounts = cgroup2_mounts();
            let hint = match mounts.first() {
                Some(m) => format!("cgroup v2 is mounted at {m}"),
                None => "no cgroup v2 file system is mounted".into(),
            };
            bail!(
                "--cgroup {}: not a cgroup v2 directory ({hint}; cgroup v1 hierarchies are \
                 not supported)",
                canon.display()
            );
        }
        Ok(Cgroup {
            path: canon,
            id: meta.ino(),
        })
    }

    /// What the trace's header says of it.
    pub(crate) fn target(&self) -> TargetCgroup {
        TargetCgroup {
            path: self.path.display().to_string(),
            id: self.id,
        }
    }

    /// The processes in the cgroup and in the cgroups below it, each once,
    /// in the order found. A cgroup that vanishes while it is read (a
    /// container stopping) has none.
    pub(crate) fn pids(&self) -> anyhow::Result<Vec<u32>> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut dirs = vec![(self.path.clone(), 0)];
        while let Some((dir, depth)) = dirs.pop() {
            match std::fs::read_to_string(dir.join("cgroup.procs")) {
                Ok(text) => {
                    for pid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                        if seen.insert(pid) {
                            out.push(pid);
                        }
                    }
                }
                // Gone meanwhile, or a threaded cgroup's (whose processes
                // its domain lists).
                Err(e) if dir != self.path => log::debug!("{}: {e}", dir.display()),
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("reading {}/cgroup.procs", dir.display()));
                }
            }
            if depth >= MAX_CGROUP_DEPTH {
                continue;
            }
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
            };
            for entry in entries.flatten() {
                // Child cgroups are directories; cgroupfs has no symlinks.
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push((entry.path(), depth + 1));
                }
            }
        }
        Ok(out)
    }
}

/// Where cgroup v2 file systems are mounted, as `/proc/self/mounts` says.
pub(crate) fn cgroup2_mounts() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (_, at, fs) = (f.next()?, f.next()?, f.next()?);
            // Mount points escape spaces and the like as octal (`\040`).
            (fs == "cgroup2" && !at.contains('\\')).then(|| at.to_string())
        })
        .collect()
}

/// Is `path` on a cgroup v2 file system (`statfs`'s `f_type`)?
fn is_cgroup2(path: &Path) -> anyhow::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: a NUL-terminated path and a buffer of the size `statfs` fills.
    let r = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("statfs {}", path.display()));
    }
    // SAFETY: `statfs` succeeded and filled it.
    let f_type = unsafe { st.assume_init() }.f_type;
    // Signed with glibc, unsigned with musl: compared as both.
    Ok(i128::from(f_type) == i128::from(libc::CGROUP2_SUPER_MAGIC))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_cgroup_v2_directory() {
        let e = Cgroup::open(Path::new("/proc")).unwrap_err().to_string();
        assert!(e.contains("not a cgroup v2 directory"), "{e}");
        let e = Cgroup::open(Path::new("/nonexistent/x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such directory"), "{e}");
        let e = Cgroup::open(Path::new("/proc/self/status"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a directory"), "{e}");
    }
}
