//! Output files, made so that no path component can be raced
//! (docs/security.md): the directory is opened without following symlinks
//! at any level, the file is created relative to it (never clobbering an
//! existing file unless `--force`), and under sudo all of it runs with the
//! invoking user's filesystem identity, so files are theirs from the start
//! and go only where they could write ([`safefs`]). A file whose writing
//! fails is removed through the same directory, if its name still refers
//! to it, so a file we leave behind is complete, or cut by a crash (then
//! `report` reads it up to its last whole record).

mod background;
pub(crate) mod safefs;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::consumer::Consumer;
use super::{Format, Record};
use crate::privs;
use crate::privs::FsIdentity;
use safefs::{PathError, Placed, Removed};

pub(crate) use background::BackgroundWriter;

/// An output file being written (through a [`BackgroundWriter`]: a stalled
/// disk must not stall the capture).
pub(crate) struct OutFile {
    path: PathBuf,
    placed: Placed,
    who: Option<FsIdentity>,
    writer: Option<BackgroundWriter>,
    failed: Option<io::Error>,
}

/// The message for a path [`safefs`] refused.
fn path_error(path: &Path, e: PathError, who: Option<&FsIdentity>) -> anyhow::Error {
    match e {
        PathError::Exists(_) | PathError::SymlinkFile(_) => anyhow::anyhow!("{e}"),
        PathError::Io(io)
            if matches!(io.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
                && who.is_some() =>
        {
            let name = privs::acting_for().map_or("the user who ran sudo", |u| u.name.as_str());
            anyhow::anyhow!(
                "cannot write {}: {io}; schedtrace writes files as {name}, who ran sudo",
                path.display()
            )
        }
        e => anyhow::anyhow!("cannot write {}: {e}", path.display()),
    }
}

/// Create `path` for writing (see the module documentation).
fn create(path: &Path, force: bool) -> anyhow::Result<(File, Placed, Option<FsIdentity>)> {
    let who = privs::fs_identity();
    let c =
        safefs::create(path, force, who.as_ref()).map_err(|e| path_error(path, e, who.as_ref()))?;
    Ok((c.file, c.placed, who))
}

/// Check, before any work is done, that a file could be created at `path`
/// now: its directory exists and is ours to write (under sudo: the user's),
/// no component is a symbolic link, it is not a directory, and it does not
/// exist yet unless `force`.
pub fn check_writable(path: &Path, force: bool) -> anyhow::Result<()> {
    let who = privs::fs_identity();
    safefs::check_creatable(path, force, who.as_ref())
        .map_err(|e| path_error(path, e, who.as_ref()))
}

/// Remove a file we made, for `what` went wrong; the message says what
/// became of the file.
fn remove(path: &Path, placed: &Placed, who: Option<&FsIdentity>) -> String {
    match placed.remove(who) {
        Ok(Removed::Yes) => format!(
            "writing {} failed; the incomplete file was removed",
            path.display()
        ),
        Ok(Removed::NotOurs) => format!(
            "writing {} failed; the incomplete file was moved or replaced meanwhile and is left \
             alone",
            path.display()
        ),
        Err(e) => format!(
            "writing {} failed, and so did removing the incomplete file ({e})",
            path.display()
        ),
    }
}

impl OutFile {
    pub(crate) fn create(path: &Path, force: bool) -> anyhow::Result<Self> {
        let (f, placed, who) = create(path, force)?;
        Ok(OutFile {
            path: path.to_path_buf(),
            placed,
            who,
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

    /// Hand what is buffered (whole records) to the writer thread, so that
    /// a crash loses no more than what came since.
    pub(crate) fn flush(&mut self) {
        self.write_with(|w| w.flush());
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
        let _ = self.placed.remove(self.who.as_ref());
    }

    #[cfg(test)]
    pub(crate) fn failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Flush and sync. On any failure the file is removed and the error returned.
    pub(crate) fn finish(mut self) -> anyhow::Result<()> {
        if let Some(w) = self.writer.take() {
            // What the file's writer held at most, for memory checks: a
            // disk or a writer thread that falls behind makes it grow, up to
            // the queue's bound.
            log::debug!(
                "{}: write buffers: {} KiB",
                self.path.display(),
                w.buffer_bytes_allocated() / 1024
            );
            let r = w.finish().and_then(|f| f.sync_all());
            if let Err(e) = r {
                self.failed = Some(e);
            }
        }
        if let Some(e) = self.failed.take() {
            let what = remove(&self.path, &self.placed, self.who.as_ref());
            return Err(anyhow::anyhow!("{what}: {e}"));
        }
        Ok(())
    }
}

/// Bytes written to an [`OutFile`] go through [`OutFile::write_with`], for
/// writers that want an `io::Write` (the Parquet tables): after the first
/// failure every write fails with it, and [`OutFile::finish`] removes the
/// file.
impl Write for OutFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(|w| w.write_all(buf));
        self.failure()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        OutFile::flush(self);
        self.failure()
    }
}

impl OutFile {
    /// The first failure so far, as an error of the same kind.
    fn failure(&self) -> io::Result<()> {
        match &self.failed {
            Some(e) => Err(io::Error::new(e.kind(), e.to_string())),
            None => Ok(()),
        }
    }
}

/// Write a whole file at once (for exporters that produce one document).
pub fn write_file(
    path: &Path,
    force: bool,
    f: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (file, placed, who) = create(path, force)?;
    let mut w = BufWriter::new(file);
    let r = f(&mut w).and_then(|_| {
        w.flush()?;
        w.get_ref().sync_all()?;
        Ok(())
    });
    if let Err(e) = r {
        let what = remove(path, &placed, who.as_ref());
        return Err(anyhow::anyhow!("{what}: {e:#}"));
    }
    Ok(())
}

/// Create directory `dir` (and its parents) for outputs, as the files in
/// it would be.
pub fn create_dir_all(dir: &Path) -> anyhow::Result<()> {
    let who = privs::fs_identity();
    safefs::create_dir_all(dir, who.as_ref())
        .map_err(|e| anyhow::anyhow!("cannot create directory {}: {e}", dir.display()))
}

/// Open a file the user named for reading, with their rights under sudo.
pub(crate) fn open_input(path: &Path) -> anyhow::Result<File> {
    let who = privs::fs_identity();
    safefs::open_input(path, who.as_ref())
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
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
        self.file.write_with(|w| match r {
            // Event lines, nearly every record, are formatted in place.
            Record::Event(e) if format == Format::Jsonl => {
                w.append(|buf| super::jsonl::append_event(buf, e))
            }
            _ => format.write(w, r),
        });
    }

    fn flush(&mut self) {
        self.file.flush();
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

    /// With no file, no record is made of the event.
    fn event(&mut self, e: &crate::event::Event) {
        for f in &mut self.0 {
            f.event(e);
        }
    }

    fn flush(&mut self) {
        for f in &mut self.0 {
            f.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for one test (also used by `background`'s tests).
    pub(super) fn tmpdir() -> crate::testutil::TempDir {
        crate::testutil::TempDir::new("schedtrace-out")
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
    fn a_trace_file_holds_what_its_format_writes() {
        let d = tmpdir();
        for format in [Format::Jsonl, Format::Binary] {
            // Every kind of record, and enough events to fill buffers.
            let mut recs = crate::testutil::every_record_kind();
            let end = recs.pop().unwrap();
            for i in 0..20_000u64 {
                let (a, b) = (crate::testutil::task(101), crate::testutil::task(i as u32));
                recs.push(Record::Event(crate::testutil::switch(10 + i, 0, a, 1, b)));
            }
            recs.push(end);
            let p = d.join("t");
            let mut files = TraceFiles::create(&[(&p, format)], true).unwrap();
            for r in &recs {
                files.record(r);
            }
            files.finish().unwrap();
            let expected = crate::testutil::write_all(format, &recs);
            assert!(std::fs::read(&p).unwrap() == expected, "{format:?}");
        }
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
