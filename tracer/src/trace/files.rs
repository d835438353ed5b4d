//! The files schedtrace writes, trace files ([`TraceFiles`], a consumer of
//! the record stream) and whole documents ([`write_file`]) alike: created
//! without following symlinks, never clobbering an existing file unless
//! `--force`, and handed to the invoking user under sudo. A file whose
//! writing fails is removed, so a file we leave behind is always complete.

mod background;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::consumer::Consumer;
use super::{Format, Record};
use crate::privs;

pub(crate) use background::BackgroundWriter;

/// An output file being written (through a [`BackgroundWriter`]: a stalled
/// disk must not stall the capture).
pub(crate) struct OutFile {
    path: PathBuf,
    writer: Option<BackgroundWriter>,
    failed: Option<io::Error>,
}

/// The directory `path` goes into must exist.
fn check_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        anyhow::bail!(
            "cannot write {}: directory {} does not exist",
            path.display(),
            parent.display()
        );
    }
    Ok(())
}

/// Open `path` for writing: `O_NOFOLLOW`, and `O_EXCL` unless `force`.
pub fn create(path: &Path, force: bool) -> anyhow::Result<File> {
    check_parent(path)?;
    if path.is_dir() {
        anyhow::bail!("cannot write {}: it is a directory", path.display());
    }
    let mut o = OpenOptions::new();
    o.write(true).custom_flags(libc::O_NOFOLLOW);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let f = o.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "{} already exists; use --force to overwrite it",
            path.display()
        ),
        _ if e.raw_os_error() == Some(libc::ELOOP) => anyhow::anyhow!(
            "{} is a symbolic link; refusing to write through it",
            path.display()
        ),
        _ => anyhow::Error::new(e).context(format!("cannot write {}", path.display())),
    })?;
    privs::chown_to_invoker(path);
    Ok(f)
}

/// Check, before any work is done, that [`create`] would accept `path`:
/// its directory exists, it is neither a directory nor a symbolic link, and
/// it does not exist yet unless `force`.
pub fn check_writable(path: &Path, force: bool) -> anyhow::Result<()> {
    check_parent(path)?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => anyhow::bail!(
            "{} is a symbolic link; refusing to write through it",
            path.display()
        ),
        Ok(m) if m.is_dir() => anyhow::bail!("cannot write {}: it is a directory", path.display()),
        Ok(_) if !force => anyhow::bail!(
            "{} already exists; use --force to overwrite it",
            path.display()
        ),
        _ => Ok(()),
    }
}

impl OutFile {
    pub(crate) fn create(path: &Path, force: bool) -> anyhow::Result<Self> {
        let f = create(path, force)?;
        Ok(OutFile {
            path: path.to_path_buf(),
            writer: Some(BackgroundWriter::new(f)),
            failed: None,
        })
    }

    /// Write through `f`; after the first failure, writes are dropped and
    /// the failure is kept for [`OutFile::finish`].
    pub(crate) fn write_with(&mut self, f: impl FnOnce(&mut BackgroundWriter) -> io::Result<()>) {
        if let Some(w) = &mut self.writer
            && let Err(e) = f(w)
        {
            self.failed = Some(e);
            self.abandon_writer();
        }
    }

    /// Stop writing; what is still queued is dropped.
    fn abandon_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.abandon();
        }
    }

    /// Remove the file without finishing it.
    pub(crate) fn discard(mut self) {
        self.abandon_writer();
        let _ = std::fs::remove_file(&self.path);
    }

    #[cfg(test)]
    pub(crate) fn failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Flush and sync. On any failure the file is removed and the error returned.
    pub(crate) fn finish(mut self) -> anyhow::Result<()> {
        if let Some(w) = self.writer.take() {
            let r = w.finish().and_then(|f| f.sync_all());
            if let Err(e) = r {
                self.failed = Some(e);
            }
        }
        if let Some(e) = self.failed.take() {
            let _ = std::fs::remove_file(&self.path);
            return Err(e).with_context(|| {
                format!(
                    "writing {} failed; the incomplete file was removed",
                    self.path.display()
                )
            });
        }
        Ok(())
    }
}

/// Write a whole file at once (for exporters that produce one document).
pub fn write_file(
    path: &Path,
    force: bool,
    f: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = create(path, force)?;
    let mut w = BufWriter::new(file);
    let r = f(&mut w).and_then(|_| {
        w.flush()?;
        w.get_ref().sync_all()?;
        Ok(())
    });
    if let Err(e) = r {
        let _ = std::fs::remove_file(path);
        return Err(e.context(format!(
            "writing {} failed; the incomplete file was removed",
            path.display()
        )));
    }
    Ok(())
}

/// A trace file being written in its format: a [`Consumer`] that writes
/// every record it is given.
pub(crate) struct TraceFile {
    file: OutFile,
    format: Format,
}

impl Consumer for TraceFile {
    fn record(&mut self, r: &Record) {
        let format = self.format;
        self.file.write_with(|w| format.write(w, r));
    }
}

/// The trace files one run writes (`--json`, `--record`), fed as one.
#[derive(Default)]
pub struct TraceFiles(Vec<TraceFile>);

impl TraceFiles {
    /// Create a file for each of `paths` in its format; on failure, remove
    /// the ones already created.
    pub fn create(paths: &[(&Path, Format)], force: bool) -> anyhow::Result<Self> {
        let mut files = TraceFiles::default();
        for (p, format) in paths {
            match OutFile::create(p, force) {
                Ok(file) => files.0.push(TraceFile {
                    file,
                    format: *format,
                }),
                Err(e) => {
                    files.discard();
                    return Err(e);
                }
            }
        }
        Ok(files)
    }

    /// Remove every file without finishing it (the trace never started).
    pub fn discard(self) {
        for f in self.0 {
            f.file.discard();
        }
    }

    /// Finish every file; the first failure is returned after trying all.
    pub fn finish(self) -> anyhow::Result<()> {
        let mut first = None;
        for f in self.0 {
            if let Err(e) = f.file.finish() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Consumer for TraceFiles {
    fn record(&mut self, r: &Record) {
        for f in &mut self.0 {
            f.record(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for one test (also used by `background`'s tests).
    pub(super) fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "schedtrace-out-{}-{}",
            std::process::id(),
            crate::procfs::monotonic_ns()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn refuses_to_clobber_without_force() {
        let d = tmpdir();
        let p = d.join("a.json");
        std::fs::write(&p, "old").unwrap();
        let e = create(&p, false).unwrap_err().to_string();
        assert!(e.contains("already exists; use --force"), "{e}");
        create(&p, true).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
    }

    #[test]
    fn refuses_symlinks_missing_dirs_and_directories() {
        let d = tmpdir();
        let target = d.join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = create(&link, true).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        let e = create(&d.join("nope/x.json"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        let e = create(&d, true).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
    }

    #[test]
    fn check_writable_agrees_with_create() {
        let d = tmpdir();
        let p = d.join("new.html");
        check_writable(&p, false).unwrap();
        std::fs::write(&p, "old").unwrap();
        assert!(check_writable(&p, false).is_err());
        check_writable(&p, true).unwrap();
        let link = d.join("l");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(check_writable(&link, true).is_err());
        assert!(check_writable(&d, true).is_err());
        assert!(check_writable(&d.join("no/x"), true).is_err());
    }

    #[test]
    fn failed_write_removes_the_file() {
        let d = tmpdir();
        let p = d.join("x");
        let mut f = OutFile::create(&p, false).unwrap();
        f.write_with(|_| Err(io::Error::other("disk full")));
        assert!(f.failed());
        let e = format!("{:#}", f.finish().unwrap_err());
        assert!(e.contains("removed") && e.contains("disk full"), "{e}");
        assert!(!p.exists());
    }
}
