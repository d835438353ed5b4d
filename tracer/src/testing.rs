//! Test support shared by the unit tests and the root integration tests
//! (`schedtrace-tests`): not part of the tool. Hidden from the docs.

use std::path::PathBuf;

/// A fresh directory for one test: removed with everything in it when
/// dropped, unless the thread is panicking (a failed assertion), when it
/// is kept and its path printed so the files can be looked at. (A test that
/// fails by returning an error has already dropped its locals when the
/// error is reported, so its directory goes: check what matters with
/// `assert!`.)
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh `PREFIX-PID-NS` directory under the system temp dir.
    pub fn new(prefix: &str) -> Self {
        Self::new_in(&std::env::temp_dir(), prefix)
    }

    /// A fresh `PREFIX-PID-NS` directory under `parent`.
    pub fn new_in(parent: &std::path::Path, prefix: &str) -> Self {
        let d = parent.join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            crate::procfs::monotonic_ns()
        ));
        std::fs::create_dir_all(&d).expect("temp dir");
        TempDir(d)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the test failed: keeping {}", self.0.display());
            return;
        }
        // Symlinks inside are removed, never followed.
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("could not remove {}: {e}", self.0.display());
        }
    }
}
