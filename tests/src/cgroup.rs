//! A cgroup v2 directory of the test's own, removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// A fresh cgroup under the machine's cgroup v2 mount (one is mounted in a
/// temporary directory when the machine has none).
pub struct TestCgroup {
    pub path: PathBuf,
    /// The temporary cgroup2 mount this made, unmounted at drop.
    mounted: Option<PathBuf>,
}

impl TestCgroup {
    pub fn create(name: &str) -> anyhow::Result<TestCgroup> {
        let (root, mounted) = match cgroup2_mount() {
            Some(m) => (m, None),
            None => {
                let dir =
                    std::env::temp_dir().join(format!("schedtrace-it-cg2-{}", std::process::id()));
                std::fs::create_dir_all(&dir)?;
                let st = Command::new("mount")
                    .args(["-t", "cgroup2", "none"])
                    .arg(&dir)
                    .status()?;
                if !st.success() {
                    bail!("mounting cgroup2 on {} failed: {st}", dir.display());
                }
                (dir.clone(), Some(dir))
            }
        };
        let path = root.join(format!("schedtrace-it-{name}-{}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TestCgroup { path, mounted })
    }

    /// Move process `pid` (all its threads) into this cgroup.
    pub fn add(&self, pid: u32) -> anyhow::Result<()> {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving {pid} into {}", self.path.display()))
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("a UTF-8 path")
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Empty once its processes are reaped; a process killed just now
        // may take a moment to leave.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(m) = &self.mounted {
            let _ = Command::new("umount").arg(m).status();
            let _ = std::fs::remove_dir(m);
        }
    }
}

/// Where cgroup v2 is mounted, if it is.
fn cgroup2_mount() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mounts").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 2 && f[2] == "cgroup2" && !f[1].contains('\\'))
            .then(|| Path::new(f[1]).to_path_buf())
    })
}
