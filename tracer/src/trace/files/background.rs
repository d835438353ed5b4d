//! A buffered file writer whose `write(2)` calls run on a thread of their
//! own, so that a stalled disk (page-cache writeback throttling, a journal
//! commit) stalls that thread and not the capture loop that drains the
//! kernel's ring buffer. Filled buffers wait in a bounded queue: when the
//! disk falls behind for longer than the queue covers, the producer blocks,
//! so memory stays bounded and a slow disk shows up as counted ring-buffer
//! losses, never as unbounded growth.
//!
//! The thread starts with the second buffer handed on, not at creation:
//! launch mode forks its child while the process still has a single
//! thread. The first buffer (a trace's header and the threads found at
//! attach, handed on before the capture says it is tracing) is written at
//! once, on the caller's thread, so that a capture killed the moment after
//! it started still leaves a file with its header.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Bytes gathered before a buffer is handed to the writer thread.
pub(super) const BUFFER_BYTES: usize = 1 << 20;
/// Filled buffers that may wait for the writer thread: 32 MiB, about
/// 150k JSON Lines events, or 30 ms of the busiest capture here on top of
/// what the ring buffer holds.
pub(super) const QUEUE_BUFFERS: usize = 32;

/// Room left in a buffer for one record formatted straight into it
/// ([`BackgroundWriter::append`]): four times the longest event line (a
/// wakeup with every optional field and every name escaped at six bytes a
/// byte is about 1.1 KB). A longer record would only grow the buffer.
pub(super) const RECORD_ROOM: usize = 4096;

/// The writer thread, once started.
struct Worker {
    full: SyncSender<Vec<u8>>,
    empty: Receiver<Vec<u8>>,
    abort: Arc<AtomicBool>,
    thread: JoinHandle<io::Result<File>>,
}

/// See the module documentation.
pub(crate) struct BackgroundWriter {
    buf: Vec<u8>,
    /// The file, until the worker takes it.
    file: Option<File>,
    worker: Option<Worker>,
    buffer_bytes: usize,
    queue: usize,
    /// Buffers allocated so far. They are reused once written, so this is
    /// how far the writer thread ever fell behind, plus one, and bounds the
    /// memory the writer holds (`allocated * buffer_bytes`).
    allocated: usize,
    /// The first buffer has been written (see the module documentation).
    wrote_first: bool,
}

impl BackgroundWriter {
    pub(crate) fn new(file: File) -> Self {
        Self::with_sizes(file, BUFFER_BYTES, QUEUE_BUFFERS)
    }

    fn with_sizes(file: File, buffer_bytes: usize, queue: usize) -> Self {
        BackgroundWriter {
            buf: Vec::with_capacity(buffer_bytes),
            file: Some(file),
            worker: None,
            buffer_bytes,
            queue,
            allocated: 1,
            wrote_first: false,
        }
    }

    /// Bytes of buffer space allocated so far (see `allocated`).
    pub(crate) fn buffer_bytes_allocated(&self) -> usize {
        self.allocated * self.buffer_bytes
    }

    fn start(&mut self) -> io::Result<()> {
        if self.worker.is_none() {
            let mut file = self
                .file
                .take()
                .ok_or_else(|| io::Error::other("the writer thread has already ended"))?;
            let (full, full_rx) = mpsc::sync_channel::<Vec<u8>>(self.queue);
            let (empty_tx, empty) = mpsc::channel::<Vec<u8>>();
            let abort = Arc::new(AtomicBool::new(false));
            let stop = Arc::clone(&abort);
            let thread = std::thread::Builder::new()
                .name("schedtrace-write".into())
                .spawn(move || {
                    for mut buf in full_rx {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        file.write_all(&buf)?;
                        buf.clear();
                        // The producer may be gone already; the buffer is then freed.
                        let _ = empty_tx.send(buf);
                    }
                    Ok(file)
                })?;
            self.worker = Some(Worker {
                full,
                empty,
                abort,
                thread,
            });
        }
        Ok(())
    }

    /// Queue the current buffer for writing, blocking while the queue is
    /// full. A write error of the thread comes back here.
    fn hand_off(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if !self.wrote_first
            && let Some(file) = self.file.as_mut()
        {
            self.wrote_first = true;
            file.write_all(&self.buf)?;
            self.buf.clear();
            return Ok(());
        }
        self.start()?;
        let worker = self.worker.as_ref().expect("started above");
        let fresh = match worker.empty.try_recv() {
            Ok(buf) => buf,
            Err(_) => {
                self.allocated += 1;
                Vec::with_capacity(self.buffer_bytes)
            }
        };
        let full = std::mem::replace(&mut self.buf, fresh);
        if worker.full.send(full).is_err() {
            // The thread stopped on an error: collect it.
            return Err(self.join().err().unwrap_or_else(|| {
                io::Error::other("the writer thread stopped without an error")
            }));
        }
        Ok(())
    }

    /// Append one record that `f` formats straight into the buffer,
    /// handing the buffer on first if less than [`RECORD_ROOM`] is left:
    /// without a line formatted apart and copied in, as `write_all` needs.
    pub(crate) fn append(&mut self, f: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        if self.buf.len() + RECORD_ROOM > self.buffer_bytes {
            self.hand_off()?;
        }
        f(&mut self.buf);
        Ok(())
    }

    /// Stop the thread once the queue is written (or at once after
    /// [`BackgroundWriter::abandon`]) and take the file back.
    fn join(&mut self) -> io::Result<File> {
        match self.worker.take() {
            Some(w) => {
                drop(w.full);
                w.thread
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("the writer thread panicked")))
            }
            None => self
                .file
                .take()
                .ok_or_else(|| io::Error::other("the writer thread has already ended")),
        }
    }

    /// Write everything out and return the file (not synced).
    pub(crate) fn finish(mut self) -> io::Result<File> {
        self.hand_off()?;
        self.join()
    }

    /// Drop what is queued without writing it, and stop the thread.
    pub(crate) fn abandon(mut self) {
        self.buf.clear();
        if let Some(w) = &self.worker {
            w.abort.store(true, Ordering::Relaxed);
        }
        let _ = self.join();
    }
}

/// Like `BufWriter`'s: what was written reaches the file, errors ignored.
impl Drop for BackgroundWriter {
    fn drop(&mut self) {
        let _ = self.hand_off();
        let _ = self.join();
    }
}

impl Write for BackgroundWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.buffer_bytes {
            self.hand_off()?;
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.write(data).map(|_| ())
    }

    /// Hands the buffer to the thread; does not wait for the disk.
    fn flush(&mut self) -> io::Result<()> {
        self.hand_off()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file path in a fresh directory (removed when the guard drops).
    fn tmpfile(name: &str) -> (crate::testutil::TempDir, std::path::PathBuf) {
        let d = crate::trace::files::tests::tmpdir();
        let p = d.join(name);
        (d, p)
    }

    #[test]
    fn the_first_buffer_is_in_the_file_when_flush_returns() {
        let (_dir, p) = tmpfile("first");
        let mut w = BackgroundWriter::with_sizes(File::create(&p).unwrap(), 64, 2);
        w.write_all(b"header\n").unwrap();
        w.flush().unwrap();
        // No writer thread to wait for: a SIGKILL now leaves the header.
        assert!(w.worker.is_none());
        assert_eq!(std::fs::read(&p).unwrap(), b"header\n");
        w.write_all(b"events\n").unwrap();
        w.flush().unwrap();
        assert!(w.worker.is_some());
        drop(w.finish().unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"header\nevents\n");
    }

    #[test]
    fn writes_every_byte_in_order_across_many_buffers() {
        let (_dir, p) = tmpfile("order");
        let mut w = BackgroundWriter::with_sizes(File::create(&p).unwrap(), 64, 2);
        let mut expected = Vec::new();
        for i in 0..5000u32 {
            let line = format!("{i} {}\n", "x".repeat((i % 97) as usize));
            w.write_all(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
        }
        // A write larger than a buffer goes through whole.
        let big = vec![b'y'; 1000];
        w.write_all(&big).unwrap();
        expected.extend_from_slice(&big);
        // Buffers are reused: one being filled, one handed off, `queue`
        // waiting and one being written is the most there can ever be.
        assert!(
            w.buffer_bytes_allocated() <= (2 + 3) * 64,
            "{}",
            w.buffer_bytes_allocated()
        );
        drop(w.finish().unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), expected);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn nothing_is_written_before_a_buffer_fills() {
        let (_dir, p) = tmpfile("lazy");
        let mut w = BackgroundWriter::with_sizes(File::create(&p).unwrap(), 64, 2);
        w.write_all(b"short").unwrap();
        assert!(w.worker.is_none(), "no thread before the first hand-off");
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        drop(w.finish().unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"short");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_write_error_of_the_thread_reaches_the_producer() {
        // /dev/full fails every write with ENOSPC.
        let Ok(f) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            return;
        };
        let mut w = BackgroundWriter::with_sizes(f, 16, 1);
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = w.write_all(b"0123456789abcdef") {
                err = Some(e);
                break;
            }
        }
        let e = match err {
            Some(e) => e,
            None => w.finish().unwrap_err(),
        };
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    }

    #[test]
    fn abandon_stops_without_writing_the_queue() {
        let (_dir, p) = tmpfile("abandon");
        let mut w = BackgroundWriter::with_sizes(File::create(&p).unwrap(), 16, 64);
        w.write_all(b"abc").unwrap();
        w.abandon();
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        let _ = std::fs::remove_file(&p);
    }
}
