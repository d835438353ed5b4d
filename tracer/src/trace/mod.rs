//! A trace as a stream of [`Record`]s: the header written when tracing
//! starts, the threads found at attach, the events, loss marks, and the end
//! record. Live capture produces this stream; `schedtrace report` reads it
//! back from a JSON Lines file (`jsonl`, the documented export) or a binary
//! capture (`binary`, compact and fast), so both feed the same analysis.

pub(crate) mod binary;
pub mod consumer;
pub mod files;
#[cfg(test)]
pub(crate) mod fuzz;
pub(crate) mod jsonl;
pub mod occupancy;
pub(crate) mod validate;

use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use anyhow::Context as _;

use crate::event::{Comm, Event};

/// Version of the JSON Lines trace schema (`docs/trace-format.md`): the
/// newest this build reads. Version 2: switches carry the scheduler's
/// counters, `counters` records, and the end record's counts of what the
/// kernel's stream lacked. Version 3: the header may name further target
/// processes (`target.also`), a traced cgroup (`target.cgroup`; `join`
/// records say when a process entered it), or every task (`target.all`).
pub(crate) const TRACE_SCHEMA_VERSION: u32 = 3;

/// The version a trace of these targets is written with: a trace of one
/// process stays version 2, which older schedtrace reads; one of several is
/// version 3, which older schedtrace refuses rather than read as a trace of
/// its first process alone; so is a trace of a cgroup or of every task.
pub(crate) fn schema_version(h: &Header) -> u32 {
    if h.also.is_empty() && h.cgroup.is_none() && h.all_but.is_none() && h.comm_pattern.is_none() {
        2
    } else {
        TRACE_SCHEMA_VERSION
    }
}

/// The cgroup v2 directory a trace followed (`--cgroup`): the processes in
/// it when tracing started are the header's targets, those that entered
/// later arrive as `join` events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetCgroup {
    /// The directory as given, made absolute.
    pub path: String,
    /// The cgroup's id: the directory's inode number (`bpf_get_current_cgroup_id`'s).
    pub id: u64,
}

/// A traced process named in the header, besides the first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetProcess {
    pub pid: u32,
    pub comm: String,
    /// Its PID in its own PID namespace, when that is not schedtrace's
    /// (a container's process), as `/proc/PID/status` `NSpid` said.
    pub ns_pid: Option<u32>,
}

impl TargetProcess {
    /// `4242 (nginx)`, or `4242 (nginx, PID 1 in its namespace)` for a
    /// process in another PID namespace (a container's).
    pub fn label(&self) -> String {
        match self.ns_pid {
            Some(n) => format!("{} ({}, PID {n} in its namespace)", self.pid, self.comm),
            None => format!("{} ({})", self.pid, self.comm),
        }
    }
}

/// What was traced, and how time in the trace relates to the wall clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    /// Wall clock (CLOCK_REALTIME) minus trace clock (CLOCK_MONOTONIC), ns.
    pub wall_clock_offset_ns: i64,
    pub ncpus: u32,
    pub target_pid: u32,
    pub target_comm: String,
    /// The target's PID in its own PID namespace, when that is not
    /// schedtrace's (see [`TargetProcess::ns_pid`]).
    pub target_ns_pid: Option<u32>,
    /// The further processes of a repeated `--pid`, in the order given.
    pub also: Vec<TargetProcess>,
    /// `--cgroup`: the traced cgroup. Its processes at the start are the
    /// targets above (`target_pid` 0 when it had none).
    pub cgroup: Option<TargetCgroup>,
    /// `--all`: every task was traced but those of this process,
    /// schedtrace's own (the targets above are then none: `target_pid` is 0).
    pub all_but: Option<u32>,
    /// `--comm`: the name pattern. Its processes at the start are the
    /// targets above (`target_pid` 0 when none had the name); those that
    /// take the name later arrive as `join` events.
    pub comm_pattern: Option<String>,
    /// The command line when schedtrace launched the target itself.
    pub command: Option<Vec<String>>,
    pub follow_children: bool,
    /// Wakeups were traced. Without them, switches carry the kernel's
    /// run-queue wait (`Switch::next_wait`) and no waker is known.
    pub wakeups: bool,
    /// CPUs the launched command was pinned to, if any.
    pub pinned_cpus: Option<Vec<u32>>,
    pub kernel_release: String,
    pub hostname: String,
    pub tool_version: String,
    /// Start of the window: every probe attached and the filter armed.
    pub start_ns: u64,
}

/// A thread that existed when tracing started, as `/proc` showed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadInfo {
    /// When `/proc` was read (after attach).
    pub ts: u64,
    pub tid: u32,
    pub tgid: u32,
    pub comm: Comm,
    /// State letter from `/proc/<pid>/task/<tid>/stat` (`R`, `S`, `D`, ...).
    pub state: char,
    /// The CPU it last ran on.
    pub cpu: u32,
    /// For a thread asleep then, the system call it slept in
    /// (`/proc/<pid>/task/<tid>/syscall`; `None`: in none, running, or not
    /// readable): what its first sleep of the trace is charged to.
    pub syscall: Option<u32>,
}

/// A thread's scheduler counters as `/proc/<pid>/task/<tid>/schedstat` and
/// `status` showed them at `ts`: read for every thread when tracing starts
/// (after the `thread` records) and when it stops (before the probes are
/// detached), so that runs in progress at either end are measured too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadCounters {
    /// When they were read (trace clock).
    pub ts: u64,
    pub tid: u32,
    pub tgid: u32,
    /// On-CPU ns (`se.sum_exec_runtime`, the in-progress run included).
    pub runtime_ns: u64,
    /// Run-queue wait ns (`sched_info.run_delay`; a wait in progress is
    /// not in it yet).
    pub run_delay_ns: u64,
    /// Switch-ins (`sched_info.pcount`).
    pub pcount: u64,
    /// Voluntary and involuntary switches.
    pub nvcsw: u64,
    pub nivcsw: u64,
}

/// `--kernel-sums`: what a capture read of the sums the kernel kept per
/// thread (`schedtrace_common::ThreadSums`) instead of writing records,
/// with the counters of the ends; `analysis::kernel_sums` makes the
/// summary of it.
#[derive(Clone, Debug, Default)]
pub struct KernelSums {
    /// The window (trace clock).
    pub start_ns: u64,
    pub end_ns: u64,
    /// Every traced thread's counters just after attach, and at the end
    /// (the threads still there then).
    pub start: Vec<ThreadCounters>,
    pub end: Vec<ThreadCounters>,
    /// The threads still there at the end: their sums (`None`: none, it
    /// did not switch while traced) and names.
    pub live: Vec<LiveSums>,
    /// Threads that ended while traced: their sums and final counters.
    pub ended: Vec<schedtrace_common::ThreadEnd>,
    /// Threads whose sums were lost: ended ones the kernel's map had no
    /// room for, or sums that could not be read.
    pub lost: u64,
    /// Program runs that could not find or make a thread's sums
    /// (`schedtrace_common::counter::MISSED_SUMS`).
    pub missed: u64,
    /// The CPUs' changes of which traced process they run (or none), as
    /// the kernel wrote them (`schedtrace_common::kind::OCCUPY`), folded as
    /// they were read.
    pub occupancy: occupancy::OccupancyFold,
    pub ncpus: u32,
    /// The names behind the wakers the sums count that are not tasks.
    pub names: SumsNames,
}

/// Names of the timer callbacks and device interrupts that woke traced
/// threads in a `--kernel-sums` capture (see
/// `schedtrace_common::WakerSum`), resolved once at the end.
#[derive(Clone, Debug, Default)]
pub struct SumsNames {
    /// hrtimer callbacks by address.
    pub functions: std::collections::BTreeMap<u64, crate::event::Symbol>,
    /// Device interrupts' handlers by IRQ number.
    pub irqs: std::collections::BTreeMap<u32, crate::event::Symbol>,
}

/// A CPU's switch that changed which traced process it runs (see
/// [`KernelSums::occupancy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Occupancy {
    pub ts: u64,
    pub cpu: u32,
    /// The TGID of the traced thread that ran until `ts`, if one did.
    pub before: Option<u32>,
    /// The TGID of the traced thread that runs from `ts`, if one does.
    pub after: Option<u32>,
}

/// A live thread's kernel sums (see [`KernelSums`]).
#[derive(Clone, Debug)]
pub struct LiveSums {
    pub tid: u32,
    pub tgid: u32,
    pub comm: String,
    pub sums: Option<schedtrace_common::ThreadSums>,
    /// The CPU `/proc` last saw it on, at the end.
    pub cpu: Option<u32>,
}

/// Ring-buffer records lost on one CPU, noticed at `ts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lost {
    pub ts: u64,
    pub cpu: u32,
    pub count: u64,
}

/// How a capture put events in time order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderMethod {
    /// Released once every CPU had marked its progress past them (a
    /// written-out stage, or a heartbeat mark): provably in order.
    Marks,
    /// Held back until 25 ms older than the newest event (a kernel where
    /// the heartbeat program cannot run): in order unless a CPU's records
    /// came later than that.
    Slack,
}

impl OrderMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderMethod::Marks => "marks",
            OrderMethod::Slack => "slack",
        }
    }
}

/// A stretch of one CPU's time at the end of the window that the capture
/// could not show complete: from the CPU's last progress mark to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub cpu: u32,
    pub from_ns: u64,
    pub to_ns: u64,
}

/// How events were put in order, and what did not fit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ordering {
    /// `None` in a trace written before schedtrace recorded it.
    pub method: Option<OrderMethod>,
    /// Per CPU: events that arrived after a newer one had been released
    /// (handed on late, out of order).
    pub late_per_cpu: Vec<u64>,
    /// CPUs whose events could not be shown complete up to the end.
    pub gaps: Vec<Gap>,
}

impl Ordering {
    pub fn late_events(&self) -> u64 {
        self.late_per_cpu
            .iter()
            .fold(0u64, |a, &n| a.saturating_add(n))
    }
}

/// How the trace ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// End of the window: taken just before the probes were detached, so
    /// every probe was attached throughout.
    pub end_ns: u64,
    pub events: u64,
    pub lost_events: u64,
    pub lost_per_cpu: Vec<u64>,
    /// False when schedtrace was stopped before it could drain the buffer.
    pub complete: bool,
    /// Why tracing stopped (`duration`, `signal`, `target-exited`, ...).
    pub reason: String,
    /// Per CPU: switch-ins of traced threads the kernel made but the
    /// tracepoint stream lacked, found from the switch-in counts the
    /// following switch-outs carry (empty when the trace cannot tell).
    pub missing_switch_ins_per_cpu: Vec<u64>,
    /// Program runs the kernel skipped because another program was
    /// running on the same CPU (`recursion_misses` of the programs'
    /// `bpf_prog_info`); `None` when it could not be read.
    pub recursion_misses: Option<u64>,
    pub ordering: Ordering,
    /// Processes that were to be traced (followed children, processes
    /// that joined) but could not be: the kernel's map of further targets
    /// was full. Counted in the kernel; 0 in traces written before it was.
    pub lost_processes: u64,
}

/// Which side of the system a stack is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StackKind {
    Kernel,
    User,
}

/// One frame of a [`Stack`]: an instruction address and, when symbolised,
/// the function it is in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Frame {
    pub addr: u64,
    /// The function's name (demangled), if known.
    pub name: Option<String>,
    /// The binary it is in (a path, `[kernel]`, a kernel module's name, or
    /// `[jit]` for a frame named by a perf map), if known.
    pub module: Option<String>,
}

/// An entry of the trace's stack table, which switch records refer to by
/// id ([`crate::event::OffCpu`]). Written after the events, when the
/// capture reads the kernel's stack map and symbolises it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stack {
    /// The kernel's stack id (one id space for kernel and user stacks).
    pub id: u32,
    pub kind: StackKind,
    /// The process whose address space a user stack's addresses are in.
    pub tgid: u32,
    /// Innermost frame (where it stopped) first.
    pub frames: Vec<Frame>,
    /// For a stack read from a thread's memory rather than the kernel's
    /// stack map (`capture/thread_root.rs`, for its role): that thread.
    /// Its frames are then the return addresses found on the thread's
    /// stack, innermost first, after its instruction pointer.
    pub thread: Option<u32>,
}

/// One element of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Header(Box<Header>),
    Thread(ThreadInfo),
    Counters(ThreadCounters),
    Event(Event),
    Lost(Lost),
    Stack(Stack),
    End(End),
}

/// The two file formats of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON Lines (`--json`): the documented interchange format.
    Jsonl,
    /// The binary capture (`--record`): compact, cheap to write and read.
    Binary,
}

impl Format {
    /// Write one record in this format.
    pub fn write(self, out: &mut impl Write, r: &Record) -> io::Result<()> {
        match self {
            Format::Jsonl => jsonl::write_record(out, r),
            Format::Binary => binary::write_record(out, r),
        }
    }

    /// Which format `input` holds, from its first bytes (binary captures
    /// start with `binary::MAGIC`; anything else is read as JSON Lines).
    pub fn detect(input: &mut impl BufRead) -> io::Result<Format> {
        let head = input.fill_buf()?;
        let n = head.len().min(binary::MAGIC.len());
        Ok(if n > 0 && head[..n] == binary::MAGIC[..n] {
            Format::Binary
        } else {
            Format::Jsonl
        })
    }
}

/// Why a trace could not be read, in either format.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error(transparent)]
    Jsonl(#[from] jsonl::ReadError),
    #[error(transparent)]
    Binary(#[from] binary::ReadError),
}

/// Reads a trace in whichever format it is.
pub(crate) enum TraceReader<R: BufRead> {
    Jsonl(jsonl::JsonlReader<R>),
    Binary(binary::BinaryReader<R>),
}

impl<R: BufRead> TraceReader<R> {
    /// Detect the format from the first bytes and read accordingly.
    pub(crate) fn new(mut input: R) -> io::Result<Self> {
        let format = Format::detect(&mut input)?;
        Ok(Self::with_format(format, input))
    }

    /// Read `input` as a trace in `format`.
    pub(crate) fn with_format(format: Format, input: R) -> Self {
        match format {
            Format::Jsonl => TraceReader::Jsonl(jsonl::JsonlReader::new(input)),
            Format::Binary => TraceReader::Binary(binary::BinaryReader::new(input)),
        }
    }

    /// The next record, `None` at the end of the input (the fuzz tests';
    /// [`read_file`] loops over each format's reader itself).
    #[cfg(test)]
    pub(crate) fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        match self {
            TraceReader::Jsonl(r) => Ok(r.next_record()?),
            TraceReader::Binary(r) => Ok(r.next_record()?),
        }
    }
}

/// A `serde_json` error's message without the position it adds (which
/// counts lines and columns inside the one line or object it was given, so
/// "line 1" there is misleading), and the column.
pub(crate) fn json_message(e: &serde_json::Error) -> (String, usize) {
    let full = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&position).unwrap_or(&full).to_string();
    (message, e.column())
}

/// Feed a saved trace (JSON Lines or binary capture, detected from its
/// first bytes) to `out`, with the file name in errors.
///
/// Reading and decoding run on a thread of their own, a batch of records
/// ahead of `out` (the two took about a third and two thirds of `report`'s
/// time on one thread). `out` still gets every record in file order, and
/// every record before a bad one before the error.
pub fn read_file(path: &Path, out: &mut dyn consumer::Consumer) -> anyhow::Result<()> {
    let file = files::open_input(path)?;
    let reader = TraceReader::new(BufReader::with_capacity(1 << 20, file))
        .with_context(|| format!("reading {}", path.display()))?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_AHEAD);
    // Emptied batches go back to the reader, to be filled again.
    let (back, spare) = std::sync::mpsc::channel::<Vec<Record>>();
    let read = std::thread::scope(|s| {
        s.spawn(move || match reader {
            TraceReader::Jsonl(mut r) => batches(|| r.next_record(), &tx, &spare),
            TraceReader::Binary(mut r) => batches(|| r.next_record(), &tx, &spare),
        });
        // `feed` owns the receiving end: if `out` panics, it is dropped as
        // the panic unwinds, so the reader's next send fails and it stops
        // (the scope waits for it before passing the panic on).
        feed(rx, &back, out)
    });
    read.with_context(|| format!("{}", path.display()))
}

/// Records a batch of [`read_file`]'s reader holds (about 0.8 MB of them).
const BATCH_RECORDS: usize = 4096;
/// Batches the reader may be ahead of the consumer.
const BATCHES_AHEAD: usize = 2;

/// A batch of records, or the error that ended the file (after the records
/// before it).
type Batch = Result<Vec<Record>, ReadError>;

/// Read records into batches and send them, in order, until the end, an
/// error, or a consumer that stopped listening.
fn batches<E: Into<ReadError>>(
    mut next: impl FnMut() -> Result<Option<Record>, E>,
    tx: &std::sync::mpsc::SyncSender<Batch>,
    spare: &std::sync::mpsc::Receiver<Vec<Record>>,
) {
    let empty = || {
        spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_RECORDS))
    };
    let mut batch = empty();
    loop {
        match next() {
            Ok(Some(r)) => {
                batch.push(r);
                if batch.len() == BATCH_RECORDS {
                    let full = std::mem::replace(&mut batch, empty());
                    if tx.send(Ok(full)).is_err() {
                        return;
                    }
                }
            }
            Ok(None) => {
                let _ = tx.send(Ok(batch));
                return;
            }
            Err(e) => {
                if tx.send(Ok(batch)).is_ok() {
                    let _ = tx.send(Err(e.into()));
                }
                return;
            }
        }
    }
}

fn feed(
    rx: std::sync::mpsc::Receiver<Batch>,
    back: &std::sync::mpsc::Sender<Vec<Record>>,
    out: &mut dyn consumer::Consumer,
) -> Result<(), ReadError> {
    // The reader ends by dropping its sender: after the last batch, or
    // after an error.
    for batch in rx {
        let mut batch = batch?;
        for r in &batch {
            out.record(r);
        }
        batch.clear();
        // The reader may have finished: the batch is then only dropped.
        let _ = back.send(batch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{TempDir, end, header, task, thread_info, wakeup};

    /// Every record a consumer was given.
    struct Collect(Vec<Record>);

    impl consumer::Consumer for Collect {
        fn record(&mut self, r: &Record) {
            self.0.push(r.clone());
        }
    }

    /// A trace of `n` wakeups, more than a few of the reader's batches.
    fn records(n: u64) -> Vec<Record> {
        let mut v = vec![
            Record::Header(Box::new(header(2, 1_000))),
            Record::Thread(thread_info(101, 'S')),
        ];
        v.extend((0..n).map(|i| Record::Event(wakeup(2_000 + i, 0, task(101), task(102), false))));
        v.push(end(2_000 + n));
        v
    }

    fn write(path: &Path, format: Format, recs: &[Record]) {
        let mut out = io::BufWriter::new(std::fs::File::create(path).unwrap());
        for r in recs {
            format.write(&mut out, r).unwrap();
        }
        out.flush().unwrap();
    }

    #[test]
    fn a_trace_reaches_its_consumer_whole_and_in_order() {
        let dir = TempDir::new("schedtrace-read");
        let recs = records(3 * BATCH_RECORDS as u64 + 17);
        for format in [Format::Binary, Format::Jsonl] {
            let path = dir.path().join(format!("{format:?}"));
            write(&path, format, &recs);
            let mut got = Collect(Vec::new());
            read_file(&path, &mut got).unwrap();
            assert_eq!(got.0.len(), recs.len(), "{format:?}");
            let ts = |v: &[Record]| -> Vec<u64> {
                v.iter()
                    .filter_map(|r| match r {
                        Record::Event(e) => Some(e.ts),
                        _ => None,
                    })
                    .collect()
            };
            assert_eq!(ts(&got.0), ts(&recs), "{format:?}");
            assert!(matches!(got.0.last(), Some(Record::End(_))), "{format:?}");
        }
    }

    /// A consumer that panics: the panic reaches the caller, with the reader
    /// stopped (it was blocked a batch ahead, waiting for room).
    #[test]
    fn a_consumer_that_panics_does_not_leave_the_reader_waiting() {
        struct Panics(usize);
        impl consumer::Consumer for Panics {
            fn record(&mut self, _: &Record) {
                self.0 += 1;
                assert!(self.0 < 10, "a consumer's bug");
            }
        }
        let dir = TempDir::new("schedtrace-read");
        let path = dir.path().join("t");
        write(&path, Format::Binary, &records(10 * BATCH_RECORDS as u64));
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(|| read_file(&path, &mut Panics(0)));
            let _ = done.send(r.is_err());
        });
        // A hang is what failed: the whole file reads in well under 1 s.
        let panicked = finished.recv_timeout(std::time::Duration::from_secs(30));
        assert_eq!(panicked, Ok(true));
    }

    /// A bad record: every record before it, then the error (the reader is
    /// a batch ahead of the consumer, and must not lose what it read before
    /// failing).
    #[test]
    fn records_before_a_bad_one_all_arrive_before_the_error() {
        let dir = TempDir::new("schedtrace-read");
        let n = 2 * BATCH_RECORDS as u64 + 5;
        let recs = records(n);
        let path = dir.path().join("cut");
        // The last event's kind (at byte 16 of its record) made unknown.
        write(&path, Format::Binary, &recs);
        let mut bytes = std::fs::read(&path).unwrap();
        let end = recs.last().unwrap();
        let mut tail = Vec::new();
        Format::Binary.write(&mut tail, end).unwrap();
        let last = bytes.len() - tail.len() - binary::RECORD_BYTES;
        bytes[last + 16..last + 18].copy_from_slice(&0xffffu16.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        let mut got = Collect(Vec::new());
        let err = read_file(&path, &mut got).unwrap_err();
        let events = got
            .0
            .iter()
            .filter(|r| matches!(r, Record::Event(_)))
            .count();
        assert_eq!(events as u64, n - 1, "{err:#}");
        assert!(!matches!(got.0.last(), Some(Record::End(_))));
    }
}
