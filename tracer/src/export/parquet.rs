//! Parquet tables (`--parquet DIR`, docs/parquet.md): `segments.parquet`
//! (every thread-state interval), `events.parquet` (every event),
//! `threads.parquet` (the per-thread summary) and `meta.parquet` (the
//! trace), for DuckDB, Spark, Trino or DataFusion across hosts.
//!
//! Unlike the other exports this one streams, so it is not an
//! [`Exporter`](super::Exporter): events arrive as a [`Consumer`] of the
//! record stream and segments from the analysis as it closes them
//! ([`ParquetTables::attach`]); rows go out in batches to an encoder
//! thread per table, and a row group is written every [`ROWS_PER_GROUP`]
//! rows, so memory stays flat however long the trace. The per-thread and meta tables are written at the end,
//! from the summary. The files are made like every output file
//! ([`crate::trace::files`]): as the invoking user under sudo, never
//! through a symbolic link, removed if writing fails.

mod tables;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::thread::JoinHandle;

use arrow_array::RecordBatch;

use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::analysis::Analyzer;
use crate::analysis::summary::Summary;
use crate::analysis::timeline::{SegWaker, Segment, SegmentSink};
use crate::event::Comm;
use crate::trace::consumer::Consumer;
use crate::trace::files::{self, OutFile};
use crate::trace::{Header, Record};
use tables::{EventRows, MetaRows, Overflow, Rows, SegmentRows, Stamp, ThreadRows};

/// Version of the tables' schema (docs/parquet.md): in `meta.parquet`'s
/// `schema_version` and in every file's key-value metadata.
pub const PARQUET_SCHEMA_VERSION: u32 = 2;

/// Rows gathered before they are handed to the Parquet writer as a batch.
const ROWS_PER_BATCH: usize = 8192;
/// Rows per row group: a row group's encoded columns are held in memory
/// until it is written, so this bounds the memory (a few MB per table).
/// DuckDB reads row groups in parallel; its own default is 122,880.
pub(crate) const ROWS_PER_GROUP: usize = 131_072;

/// The file names in the directory.
pub const FILES: [&str; 4] = [
    "segments.parquet",
    "events.parquet",
    "threads.parquet",
    "meta.parquet",
];

/// What the tables say about where the trace was taken.
#[derive(Clone, Debug, Default)]
pub struct ParquetOptions {
    /// The `host` column (default: the trace header's hostname).
    pub host: Option<String>,
    /// The `boot_id` column (`/proc/sys/kernel/random/boot_id` of a live
    /// capture; a saved trace does not say it).
    pub boot_id: Option<String>,
}

/// The Parquet writer's sink: the output file, taken back at the end.
struct Sink(Option<OutFile>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("the file is already closed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Some(f) => Write::flush(f),
            None => Ok(()),
        }
    }
}

/// One table being written.
struct Table<R: Rows> {
    path: PathBuf,
    schema: SchemaRef,
    rows: R,
    /// The writer, until the encoder thread takes it.
    writer: Option<ArrowWriter<Sink>>,
    encoder: Option<Encoder>,
    /// The first failure; rows are dropped after it.
    failed: Option<anyhow::Error>,
    /// The largest batch gathered (bytes of its arrays), and the most
    /// bytes of batches sent to the encoder and not yet written.
    batch_peak: usize,
    in_flight_peak: usize,
}

/// What the encoder thread gives back: the writer, its first error, and
/// the most memory its buffered row group held after a batch (bytes).
type Encoded = (
    ArrowWriter<Sink>,
    Result<(), parquet::errors::ParquetError>,
    usize,
);

/// The thread that encodes and compresses a table's batches, so that a
/// live capture's loop only gathers rows (encoding costs about 1 µs per
/// event, as much as the rest of the capture). Batches wait in a bounded
/// queue: when the thread falls behind, the capture blocks and the kernel
/// counts what its buffer loses, as with the trace files.
struct Encoder {
    /// Each batch with its bytes, as counted in `in_flight`.
    batches: SyncSender<(RecordBatch, usize)>,
    thread: JoinHandle<Encoded>,
    /// Bytes of the batches sent and not yet written (queued, or being
    /// encoded).
    in_flight: Arc<AtomicUsize>,
}

/// Batches (of [`ROWS_PER_BATCH`] rows) that may wait for an encoder.
const QUEUE_BATCHES: usize = 4;

impl Encoder {
    fn start(mut w: ArrowWriter<Sink>, table: &str) -> io::Result<Self> {
        let (batches, rx) = mpsc::sync_channel::<(RecordBatch, usize)>(QUEUE_BATCHES);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let written = Arc::clone(&in_flight);
        let thread = std::thread::Builder::new()
            .name(format!("st-parquet-{table}"))
            .spawn(move || {
                // The row group in progress is largest after the last
                // batch before the one that fills it (and writes it out),
                // give or take that batch.
                let mut peak = 0;
                for (b, bytes) in rx {
                    let r = w.write(&b);
                    written.fetch_sub(bytes, Ordering::Relaxed);
                    drop(b);
                    if let Err(e) = r {
                        return (w, Err(e), peak);
                    }
                    peak = peak.max(w.memory_size());
                }
                (w, Ok(()), peak)
            })?;
        Ok(Encoder {
            batches,
            thread,
            in_flight,
        })
    }
}

impl<R: Rows + Default> Table<R> {
    fn create(dir: &Path, name: &'static str, force: bool) -> anyhow::Result<Self> {
        let path = dir.join(name);
        let file = OutFile::create(&path, force)?;
        let schema = R::schema();
        let table = name.trim_end_matches(".parquet");
        let mut props = WriterProperties::builder();
        // Nanosecond columns are nearly all distinct: a dictionary there only
        // costs memory (up to its 1 MiB page limit per column) and time
        // before the writer falls back to plain encoding. Names, states and
        // IDs repeat and keep theirs.
        for f in schema.fields() {
            if f.name().ends_with("_ns") {
                props =
                    props.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), false);
            }
        }
        let props = props
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
            .set_created_by(format!("schedtrace {}", crate::version::short()))
            .set_key_value_metadata(Some(vec![
                KeyValue::new("schedtrace.schema".into(), "schedtrace-parquet".to_string()),
                KeyValue::new(
                    "schedtrace.version".into(),
                    PARQUET_SCHEMA_VERSION.to_string(),
                ),
                KeyValue::new("schedtrace.table".into(), table.to_string()),
            ]))
            .build();
        // Fails only on a schema Parquet cannot hold (the unit tests write
        // every table) or when the 4-byte magic cannot be buffered.
        let writer = ArrowWriter::try_new(Sink(Some(file)), schema.clone(), Some(props))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        Ok(Table {
            path,
            schema,
            rows: R::default(),
            writer: Some(writer),
            encoder: None,
            failed: None,
            batch_peak: 0,
            in_flight_peak: 0,
        })
    }

    /// Add a row with `f`; hand a full batch to the writer.
    fn push(&mut self, stamp: &Stamp, f: impl FnOnce(&mut R) -> Result<(), Overflow>) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = f(&mut self.rows) {
            self.fail(e.into());
            return;
        }
        if self.rows.len() >= ROWS_PER_BATCH {
            self.write_batch(stamp);
        }
    }

    fn fail(&mut self, e: anyhow::Error) {
        self.failed.get_or_insert(e);
    }

    fn write_batch(&mut self, stamp: &Stamp) {
        if self.rows.len() == 0 || self.failed.is_some() {
            return;
        }
        let batch = match self.rows.take_batch(&self.schema, stamp) {
            Ok(b) => b,
            Err(e) => return self.fail(e.into()),
        };
        let bytes = batch.get_array_memory_size();
        self.batch_peak = self.batch_peak.max(bytes);
        // The thread starts with the first batch, not at creation: a
        // launched command is forked while the process has one thread.
        if self.encoder.is_none()
            && let Some(w) = self.writer.take()
        {
            let table = self.path.file_stem().unwrap_or_default().to_string_lossy();
            match Encoder::start(w, &table) {
                Ok(e) => self.encoder = Some(e),
                Err(e) => return self.fail(anyhow::anyhow!("starting a Parquet encoder: {e}")),
            }
        }
        if let Some(e) = &self.encoder {
            let now = e.in_flight.fetch_add(bytes, Ordering::Relaxed) + bytes;
            self.in_flight_peak = self.in_flight_peak.max(now);
            // A send fails only once the thread has stopped at an error,
            // which `finish` reports.
            let _ = e.batches.send((batch, bytes));
        }
    }

    /// The writer back from the encoder thread (with its error, if any).
    fn take_writer(&mut self) -> Option<ArrowWriter<Sink>> {
        if let Some(Encoder {
            batches, thread, ..
        }) = self.encoder.take()
        {
            drop(batches);
            match thread.join() {
                Ok((w, r, peak)) => {
                    // Said for the memory tests (as the trace files say
                    // their write buffers): the tables' row groups peak at
                    // moments that drift apart and together, so a process
                    // may hold every table's peak at once.
                    log::debug!(
                        "{}: row group buffer: {} KiB at most",
                        self.path.display(),
                        peak / 1024
                    );
                    // Batches: those sent and not yet written, and the
                    // rows being gathered into the next.
                    log::debug!(
                        "{}: batches: {} KiB at most",
                        self.path.display(),
                        (self.in_flight_peak + self.batch_peak) / 1024
                    );
                    if let Err(e) = r {
                        self.fail(e.into());
                    }
                    self.writer = Some(w);
                }
                Err(_) => self.fail(anyhow::anyhow!("the Parquet encoder panicked")),
            }
        }
        self.writer.take()
    }

    /// Write what is left and the footer, then sync; on any failure the
    /// file is removed and the error returned.
    fn finish(mut self, stamp: &Stamp) -> anyhow::Result<()> {
        self.write_batch(stamp);
        let Some(mut w) = self.take_writer() else {
            return Err(anyhow::anyhow!(
                "writing {} failed: {:#}",
                self.path.display(),
                self.failed
                    .take()
                    .unwrap_or_else(|| anyhow::anyhow!("no writer"))
            ));
        };
        if self.failed.is_none()
            && let Err(e) = w.finish()
        {
            self.fail(e.into());
        }
        let file = w.inner_mut().0.take();
        drop(w);
        let Some(file) = file else {
            return Err(anyhow::anyhow!(
                "{}: the file was lost",
                self.path.display()
            ));
        };
        match self.failed.take() {
            None => file.finish(),
            Some(e) => {
                file.discard();
                Err(anyhow::anyhow!(
                    "writing {} failed; the incomplete file was removed: {e:#}",
                    self.path.display()
                ))
            }
        }
    }

    /// Remove the file without finishing it.
    fn discard(mut self) {
        if let Some(mut w) = self.take_writer()
            && let Some(f) = w.inner_mut().0.take()
        {
            f.discard();
        }
    }
}

/// The four tables of one run.
struct Tables {
    opts: ParquetOptions,
    header: Option<Header>,
    stamp: Stamp,
    segments: Table<SegmentRows>,
    events: Table<EventRows>,
    threads: Table<ThreadRows>,
    meta: Table<MetaRows>,
}

impl Tables {
    fn start(&mut self, h: &Header) {
        self.stamp = Stamp {
            host: self.opts.host.clone().unwrap_or_else(|| h.hostname.clone()),
            boot_id: self.opts.boot_id.clone(),
            wall_clock_offset_ns: h.wall_clock_offset_ns,
        };
        self.header = Some(h.clone());
    }
}

/// See the module documentation. A [`Consumer`] of the record stream;
/// [`ParquetTables::attach`] it to the analysis before the first record.
pub struct ParquetTables {
    dir: PathBuf,
    /// Shared with the analysis' segment sink; `None` once finished.
    tables: Rc<RefCell<Option<Tables>>>,
}

/// The analysis' segments, into the shared tables.
struct Segments(Rc<RefCell<Option<Tables>>>);

impl SegmentSink for Segments {
    fn segment(
        &mut self,
        seg: &Segment,
        tgid: u32,
        comm: &Comm,
        on_cpu_ns: u64,
        waker: Option<&SegWaker>,
    ) {
        let mut t = self.0.borrow_mut();
        let Some(t) = &mut *t else { return };
        t.segments.push(&t.stamp, |rows| {
            rows.push(seg, tgid, comm, on_cpu_ns, waker)
        });
    }
}

impl ParquetTables {
    /// Create `dir` if needed (as the files are made) and the four files in
    /// it; nothing is left behind on failure but the directory.
    pub fn create(dir: &Path, force: bool, opts: ParquetOptions) -> anyhow::Result<Self> {
        files::create_dir_all(dir)?;
        let segments = Table::create(dir, FILES[0], force)?;
        let events = match Table::create(dir, FILES[1], force) {
            Ok(t) => t,
            Err(e) => {
                segments.discard();
                return Err(e);
            }
        };
        let threads = match Table::create(dir, FILES[2], force) {
            Ok(t) => t,
            Err(e) => {
                segments.discard();
                events.discard();
                return Err(e);
            }
        };
        let meta = match Table::create(dir, FILES[3], force) {
            Ok(t) => t,
            Err(e) => {
                segments.discard();
                events.discard();
                threads.discard();
                return Err(e);
            }
        };
        let stamp = Stamp {
            host: opts.host.clone().unwrap_or_default(),
            boot_id: opts.boot_id.clone(),
            wall_clock_offset_ns: 0,
        };
        Ok(ParquetTables {
            dir: dir.to_path_buf(),
            tables: Rc::new(RefCell::new(Some(Tables {
                opts,
                header: None,
                stamp,
                segments,
                events,
                threads,
                meta,
            }))),
        })
    }

    /// The directory the tables are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Have `a` hand its segments to `segments.parquet` as it closes them.
    pub fn attach(&self, a: &mut Analyzer) {
        a.set_segment_sink(Box::new(Segments(Rc::clone(&self.tables))));
    }

    /// Write the per-thread and meta tables from `summary` (the whole
    /// window, before any display filter), and finish every file: call it
    /// once the analysis is finished. The first failure is returned after
    /// trying all four.
    pub fn finish(self, summary: &Summary) -> anyhow::Result<()> {
        let Some(tables) = self.tables.borrow_mut().take() else {
            return Ok(());
        };
        let Tables {
            header,
            stamp,
            segments,
            events,
            mut threads,
            mut meta,
            ..
        } = tables;
        for t in &summary.threads {
            threads.push(&stamp, |rows| rows.push(t));
        }
        match &header {
            Some(h) => meta.push(&stamp, |rows| rows.push(h, summary)),
            None => meta.fail(anyhow::anyhow!("the trace has no header")),
        }
        let mut first = None;
        for r in [
            segments.finish(&stamp),
            events.finish(&stamp),
            threads.finish(&stamp),
            meta.finish(&stamp),
        ] {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Remove every file without finishing it (the trace never started).
    pub fn discard(self) {
        if let Some(t) = self.tables.borrow_mut().take() {
            t.segments.discard();
            t.events.discard();
            t.threads.discard();
            t.meta.discard();
        }
    }
}

impl Consumer for ParquetTables {
    fn record(&mut self, r: &Record) {
        let mut t = self.tables.borrow_mut();
        let Some(t) = &mut *t else { return };
        match r {
            Record::Header(h) => t.start(h),
            Record::Event(e) => t.events.push(&t.stamp, |rows| rows.push_event(e)),
            Record::Lost(l) => t.events.push(&t.stamp, |rows| rows.push_lost(l)),
            Record::Thread(_) | Record::Counters(_) | Record::Stack(_) | Record::End(_) => {}
        }
    }
}
