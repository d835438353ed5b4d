//! The four tables' columns (docs/parquet.md): a row builder per table,
//! turned into an Arrow record batch every few thousand rows. The columns
//! every table starts with (`host`, `boot_id`, `wall_clock_offset_ns`) are
//! the same on every row of a file and are filled in per batch.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

use crate::analysis::summary::{Summary, ThreadSummary};
use crate::analysis::timeline::{SegState, SegWaker, Segment};
use crate::event::{Comm, Event, EventKind, SwitchCounters, Task, WakeContext};
use crate::trace::{Header, Lost};

/// A value that does not fit its column (a trace file can state any
/// 64-bit value; the columns are signed, as Spark and Trino want them).
#[derive(Debug, thiserror::Error)]
#[error("{what} {value} does not fit a signed 64-bit Parquet column")]
pub(crate) struct Overflow {
    what: &'static str,
    value: u64,
}

/// `v` as a signed 64-bit column value.
pub(crate) fn i64_of(what: &'static str, v: u64) -> Result<i64, Overflow> {
    i64::try_from(v).map_err(|_| Overflow { what, value: v })
}

fn i32_of(what: &'static str, v: u32) -> Result<i32, Overflow> {
    i32::try_from(v).map_err(|_| Overflow {
        what,
        value: v.into(),
    })
}

/// Where a trace was taken, on every row of every table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub host: String,
    pub boot_id: Option<String>,
    pub wall_clock_offset_ns: i64,
}

fn stamp_fields() -> Vec<Field> {
    vec![
        Field::new("host", DataType::Utf8, false),
        Field::new("boot_id", DataType::Utf8, true),
        Field::new("wall_clock_offset_ns", DataType::Int64, false),
    ]
}

fn stamp_columns(s: &Stamp, n: usize) -> Vec<ArrayRef> {
    vec![
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            s.host.as_str(),
            n,
        ))),
        Arc::new(StringArray::from(vec![s.boot_id.as_deref(); n])),
        Arc::new(Int64Array::from_value(s.wall_clock_offset_ns, n)),
    ]
}

fn col(a: impl Array + 'static) -> ArrayRef {
    Arc::new(a)
}

fn schema(fields: Vec<Field>) -> SchemaRef {
    let mut all = stamp_fields();
    all.extend(fields);
    Arc::new(Schema::new(all))
}

fn batch(
    schema: &SchemaRef,
    stamp: &Stamp,
    n: usize,
    columns: Vec<ArrayRef>,
) -> Result<RecordBatch, ArrowError> {
    let mut all = stamp_columns(stamp, n);
    all.extend(columns);
    RecordBatch::try_new(Arc::clone(schema), all)
}

/// A table's rows being gathered.
pub(crate) trait Rows {
    fn schema() -> SchemaRef;
    fn len(&self) -> usize;
    /// The rows gathered so far as a batch; the builders start empty again.
    fn take_batch(&mut self, schema: &SchemaRef, stamp: &Stamp) -> Result<RecordBatch, ArrowError>;
}

fn state_name(s: SegState) -> &'static str {
    s.name()
}

/// `segments.parquet`: one row per state interval of a thread.
#[derive(Default)]
pub(crate) struct SegmentRows {
    tgid: Int64Builder,
    tid: Int64Builder,
    comm: StringBuilder,
    state: StringBuilder,
    cpu: Int32Builder,
    start_ns: Int64Builder,
    end_ns: Int64Builder,
    on_cpu_ns: Int64Builder,
    inferred: BooleanBuilder,
    wait_class: StringBuilder,
    wait_syscall: StringBuilder,
    wake_context: StringBuilder,
    waker_tid: Int64Builder,
    waker_comm: StringBuilder,
}

impl SegmentRows {
    pub(crate) fn push(
        &mut self,
        s: &Segment,
        tgid: u32,
        comm: &Comm,
        on_cpu_ns: u64,
        waker: Option<&SegWaker>,
    ) -> Result<(), Overflow> {
        let (start, end) = (i64_of("start_ns", s.start)?, i64_of("end_ns", s.end)?);
        let (cpu, on_cpu) = match s.state {
            SegState::Running { cpu } => (
                Some(i32_of("cpu", cpu)?),
                Some(i64_of("on_cpu_ns", on_cpu_ns)?),
            ),
            _ => (None, None),
        };
        self.tgid.append_value(tgid.into());
        self.tid.append_value(s.tid.into());
        self.comm.append_value(comm.as_str());
        self.state.append_value(state_name(s.state));
        self.cpu.append_option(cpu);
        self.start_ns.append_value(start);
        self.end_ns.append_value(end);
        self.on_cpu_ns.append_option(on_cpu);
        self.inferred.append_value(s.inferred);
        self.wait_class.append_option(s.wait.map(|w| w.class.key()));
        self.wait_syscall
            .append_option(s.wait.and_then(|w| w.syscall_name()));
        let task = waker.and_then(|w| w.task);
        self.wake_context.append_option(waker.map(|w| w.context));
        self.waker_tid
            .append_option(task.map(|(tid, _)| i64::from(tid)));
        self.waker_comm
            .append_option(task.map(|(_, c)| c.as_str().into_owned()));
        Ok(())
    }
}

impl Rows for SegmentRows {
    fn schema() -> SchemaRef {
        schema(vec![
            Field::new("tgid", DataType::Int64, false),
            Field::new("tid", DataType::Int64, false),
            Field::new("comm", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("cpu", DataType::Int32, true),
            Field::new("start_ns", DataType::Int64, false),
            Field::new("end_ns", DataType::Int64, false),
            Field::new("on_cpu_ns", DataType::Int64, true),
            Field::new("inferred", DataType::Boolean, false),
            Field::new("wait_class", DataType::Utf8, true),
            Field::new("wait_syscall", DataType::Utf8, true),
            Field::new("wake_context", DataType::Utf8, true),
            Field::new("waker_tid", DataType::Int64, true),
            Field::new("waker_comm", DataType::Utf8, true),
        ])
    }

    fn len(&self) -> usize {
        self.tid.len()
    }

    fn take_batch(&mut self, schema: &SchemaRef, stamp: &Stamp) -> Result<RecordBatch, ArrowError> {
        let n = self.len();
        batch(
            schema,
            stamp,
            n,
            vec![
                Arc::new(self.tgid.finish()),
                Arc::new(self.tid.finish()),
                Arc::new(self.comm.finish()),
                Arc::new(self.state.finish()),
                Arc::new(self.cpu.finish()),
                Arc::new(self.start_ns.finish()),
                Arc::new(self.end_ns.finish()),
                Arc::new(self.on_cpu_ns.finish()),
                Arc::new(self.inferred.finish()),
                col(self.wait_class.finish()),
                col(self.wait_syscall.finish()),
                col(self.wake_context.finish()),
                Arc::new(self.waker_tid.finish()),
                col(self.waker_comm.finish()),
            ],
        )
    }
}

/// One task slot of an event row (`prev_*` or `next_*`).
#[derive(Default)]
struct TaskCols {
    tid: Int64Builder,
    tgid: Int64Builder,
    comm: StringBuilder,
    prio: Int32Builder,
}

impl TaskCols {
    fn push(&mut self, t: Option<&Task>) {
        match t {
            Some(t) => {
                self.tid.append_value(t.tid.into());
                self.tgid.append_value(t.tgid.into());
                self.comm.append_value(t.comm.as_str());
                self.prio.append_value(t.prio);
            }
            None => {
                self.tid.append_null();
                self.tgid.append_null();
                self.comm.append_null();
                self.prio.append_null();
            }
        }
    }

    fn fields(prefix: &str) -> Vec<Field> {
        vec![
            Field::new(format!("{prefix}_tid"), DataType::Int64, true),
            Field::new(format!("{prefix}_tgid"), DataType::Int64, true),
            Field::new(format!("{prefix}_comm"), DataType::Utf8, true),
            Field::new(format!("{prefix}_prio"), DataType::Int32, true),
        ]
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.tid.finish()),
            Arc::new(self.tgid.finish()),
            Arc::new(self.comm.finish()),
            Arc::new(self.prio.finish()),
        ]
    }
}

/// What one event row holds besides its time, CPU and kind.
#[derive(Default)]
struct EventRow<'a> {
    prev: Option<&'a Task>,
    next: Option<&'a Task>,
    prev_state: Option<&'static str>,
    prev_state_raw: Option<i64>,
    preempt: Option<bool>,
    run_delay_ns: Option<i64>,
    queued_ns: Option<i64>,
    wakee_cpu: Option<i32>,
    from_cpu: Option<i32>,
    to_cpu: Option<i32>,
    old_tid: Option<i64>,
    lost: Option<i64>,
    /// What a target leaving the CPU was doing (its system call, I/O wait).
    prev_syscall: Option<i64>,
    prev_iowait: Option<bool>,
    /// The kernel counters of a switch (in [`COUNTER_COLUMNS`] order).
    counters: [Option<i64>; 7],
    /// What raised a wakeup, as the JSON Lines trace's `context`.
    wake: Option<WakeCols>,
}

/// A wakeup's context and, for a waker outside the traced processes, its
/// process's name: the columns after the counters.
struct WakeCols {
    context: &'static str,
    function: Option<String>,
    soft: Option<bool>,
    vector: Option<i32>,
    irq: Option<i64>,
    name: Option<String>,
    waker_process: Option<String>,
}

impl WakeCols {
    fn of(context: WakeContext, waker_process: Option<&Comm>) -> Result<Self, Overflow> {
        let mut w = WakeCols {
            context: context.kind_name(),
            function: None,
            soft: None,
            vector: None,
            irq: None,
            name: None,
            waker_process: waker_process.map(|c| c.as_str().into_owned()),
        };
        match context {
            WakeContext::Timer { function, soft } => {
                w.function = function.map(|f| f.as_str().into_owned());
                w.soft = Some(soft);
            }
            WakeContext::Softirq { vector } => {
                w.vector = vector.map(|v| i32_of("wake_vector", v)).transpose()?;
                w.name = vector
                    .and_then(WakeContext::softirq_name)
                    .map(str::to_owned);
            }
            WakeContext::Hardirq { irq, name } => {
                w.irq = irq.map(i64::from);
                w.name = name.map(|n| n.as_str().into_owned());
            }
            WakeContext::Task | WakeContext::Nmi | WakeContext::Unknown => {}
        }
        Ok(w)
    }
}

/// The wakeup columns, in [`WakeBuilders`]' order.
const WAKE_COLUMNS: [(&str, DataType); 7] = [
    ("wake_context", DataType::Utf8),
    ("wake_function", DataType::Utf8),
    ("wake_soft", DataType::Boolean),
    ("wake_vector", DataType::Int32),
    ("wake_irq", DataType::Int64),
    ("wake_name", DataType::Utf8),
    ("waker_process", DataType::Utf8),
];

#[derive(Default)]
struct WakeBuilders {
    context: StringBuilder,
    function: StringBuilder,
    soft: BooleanBuilder,
    vector: Int32Builder,
    irq: Int64Builder,
    name: StringBuilder,
    waker_process: StringBuilder,
}

impl WakeBuilders {
    fn push(&mut self, w: Option<&WakeCols>) {
        self.context.append_option(w.map(|w| w.context));
        self.function
            .append_option(w.and_then(|w| w.function.as_deref()));
        self.soft.append_option(w.and_then(|w| w.soft));
        self.vector.append_option(w.and_then(|w| w.vector));
        self.irq.append_option(w.and_then(|w| w.irq));
        self.name.append_option(w.and_then(|w| w.name.as_deref()));
        self.waker_process
            .append_option(w.and_then(|w| w.waker_process.as_deref()));
    }

    fn finish(&mut self) -> [ArrayRef; 7] {
        [
            col(self.context.finish()),
            col(self.function.finish()),
            Arc::new(self.soft.finish()),
            Arc::new(self.vector.finish()),
            Arc::new(self.irq.finish()),
            col(self.name.finish()),
            col(self.waker_process.finish()),
        ]
    }
}

/// The kernel counters a switch carries, at the end of the events table.
const COUNTER_COLUMNS: [&str; 7] = [
    "prev_runtime_ns",
    "prev_run_clock_ns",
    "prev_pcount",
    "prev_nvcsw",
    "prev_nivcsw",
    "next_runtime_ns",
    "next_pcount",
];

fn counter_values(c: &SwitchCounters) -> Result<[Option<i64>; 7], Overflow> {
    let p = c.prev.as_ref();
    let n = c.next.as_ref();
    Ok([
        p.map(|p| i64_of("prev_runtime_ns", p.runtime_ns))
            .transpose()?,
        p.and_then(|p| p.run_clock_ns)
            .map(|v| i64_of("prev_run_clock_ns", v))
            .transpose()?,
        p.and_then(|p| p.pcount).map(i64::from),
        p.map(|p| i64::from(p.nvcsw)),
        p.map(|p| i64::from(p.nivcsw)),
        n.map(|n| i64_of("next_runtime_ns", n.runtime_ns))
            .transpose()?,
        n.and_then(|n| n.pcount).map(i64::from),
    ])
}

/// `events.parquet`: one row per event of the trace (and per loss mark),
/// with the two tasks in the binary capture's `prev_*`/`next_*` slots.
#[derive(Default)]
pub(crate) struct EventRows {
    ts_ns: Int64Builder,
    cpu: Int32Builder,
    kind: StringBuilder,
    prev: TaskCols,
    next: TaskCols,
    prev_state: StringBuilder,
    prev_state_raw: Int64Builder,
    preempt: BooleanBuilder,
    next_run_delay_ns: Int64Builder,
    next_queued_ns: Int64Builder,
    wakee_cpu: Int32Builder,
    from_cpu: Int32Builder,
    to_cpu: Int32Builder,
    old_tid: Int64Builder,
    lost_count: Int64Builder,
    prev_syscall: Int64Builder,
    prev_iowait: BooleanBuilder,
    counters: [Int64Builder; 7],
    wake: WakeBuilders,
}

fn event_row(e: &Event) -> Result<EventRow<'_>, Overflow> {
    let mut r = EventRow::default();
    match &e.kind {
        EventKind::Switch {
            prev,
            next,
            prev_state,
            preempt,
            next_wait,
            counters,
            prev_off,
        } => {
            r.counters = counter_values(counters)?;
            if let Some(o) = prev_off {
                r.prev_syscall = o.syscall.map(i64::from);
                r.prev_iowait = Some(o.iowait);
            }
            r.prev = Some(prev);
            r.next = Some(next);
            r.prev_state = e.switch_reason().map(|s| s.letter());
            r.prev_state_raw = Some(i64_of("prev_state_raw", *prev_state)?);
            r.preempt = Some(*preempt);
            if let Some(w) = next_wait {
                r.run_delay_ns = Some(i64_of("next_run_delay_ns", w.run_delay_ns)?);
                r.queued_ns = Some(i64_of("next_queued_ns", w.queued_ns)?);
            }
        }
        EventKind::Wakeup {
            waker,
            wakee,
            wakee_cpu,
            context,
            waker_process,
            ..
        } => {
            r.prev = Some(waker);
            r.next = Some(wakee);
            r.wakee_cpu = Some(i32_of("wakee_cpu", *wakee_cpu)?);
            r.wake = Some(WakeCols::of(*context, waker_process.as_ref())?);
        }
        EventKind::Migrate { task, from, to } => {
            r.next = Some(task);
            r.from_cpu = Some(i32_of("from_cpu", *from)?);
            r.to_cpu = Some(i32_of("to_cpu", *to)?);
        }
        EventKind::Fork { parent, child } => {
            r.prev = Some(parent);
            r.next = Some(child);
        }
        EventKind::Exec { task, old_tid } => {
            r.next = Some(task);
            r.old_tid = Some((*old_tid).into());
        }
        EventKind::Exit { task, .. } => r.prev = Some(task),
        EventKind::Join { task } => r.next = Some(task),
    }
    Ok(r)
}

impl EventRows {
    pub(crate) fn push_event(&mut self, e: &Event) -> Result<(), Overflow> {
        let ts = i64_of("ts_ns", e.ts)?;
        let cpu = i32_of("cpu", e.cpu)?;
        let row = event_row(e)?;
        self.push(ts, cpu, e.kind.type_name(), &row);
        Ok(())
    }

    pub(crate) fn push_lost(&mut self, l: &Lost) -> Result<(), Overflow> {
        let row = EventRow {
            lost: Some(i64_of("lost_count", l.count)?),
            ..Default::default()
        };
        self.push(i64_of("ts_ns", l.ts)?, i32_of("cpu", l.cpu)?, "lost", &row);
        Ok(())
    }

    fn push(&mut self, ts: i64, cpu: i32, kind: &str, r: &EventRow<'_>) {
        self.ts_ns.append_value(ts);
        self.cpu.append_value(cpu);
        self.kind.append_value(kind);
        self.prev.push(r.prev);
        self.next.push(r.next);
        self.prev_state.append_option(r.prev_state);
        self.prev_state_raw.append_option(r.prev_state_raw);
        self.preempt.append_option(r.preempt);
        self.next_run_delay_ns.append_option(r.run_delay_ns);
        self.next_queued_ns.append_option(r.queued_ns);
        self.wakee_cpu.append_option(r.wakee_cpu);
        self.from_cpu.append_option(r.from_cpu);
        self.to_cpu.append_option(r.to_cpu);
        self.old_tid.append_option(r.old_tid);
        self.lost_count.append_option(r.lost);
        self.prev_syscall.append_option(r.prev_syscall);
        self.prev_iowait.append_option(r.prev_iowait);
        for (b, v) in self.counters.iter_mut().zip(r.counters) {
            b.append_option(v);
        }
        self.wake.push(r.wake.as_ref());
    }
}

impl Rows for EventRows {
    fn schema() -> SchemaRef {
        let mut f = vec![
            Field::new("ts_ns", DataType::Int64, false),
            Field::new("cpu", DataType::Int32, false),
            Field::new("kind", DataType::Utf8, false),
        ];
        f.extend(TaskCols::fields("prev"));
        f.extend(TaskCols::fields("next"));
        f.extend([
            Field::new("prev_state", DataType::Utf8, true),
            Field::new("prev_state_raw", DataType::Int64, true),
            Field::new("preempt", DataType::Boolean, true),
            Field::new("next_run_delay_ns", DataType::Int64, true),
            Field::new("next_queued_ns", DataType::Int64, true),
            Field::new("wakee_cpu", DataType::Int32, true),
            Field::new("from_cpu", DataType::Int32, true),
            Field::new("to_cpu", DataType::Int32, true),
            Field::new("old_tid", DataType::Int64, true),
            Field::new("lost_count", DataType::Int64, true),
            Field::new("prev_syscall", DataType::Int64, true),
            Field::new("prev_iowait", DataType::Boolean, true),
        ]);
        f.extend(
            COUNTER_COLUMNS
                .iter()
                .map(|n| Field::new(*n, DataType::Int64, true)),
        );
        f.extend(
            WAKE_COLUMNS
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true)),
        );
        schema(f)
    }

    fn len(&self) -> usize {
        self.ts_ns.len()
    }

    fn take_batch(&mut self, schema: &SchemaRef, stamp: &Stamp) -> Result<RecordBatch, ArrowError> {
        let n = self.len();
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.ts_ns.finish()),
            Arc::new(self.cpu.finish()),
            Arc::new(self.kind.finish()),
        ];
        cols.extend(self.prev.finish());
        cols.extend(self.next.finish());
        cols.extend([
            col(self.prev_state.finish()),
            Arc::new(self.prev_state_raw.finish()),
            Arc::new(self.preempt.finish()),
            Arc::new(self.next_run_delay_ns.finish()),
            Arc::new(self.next_queued_ns.finish()),
            Arc::new(self.wakee_cpu.finish()),
            Arc::new(self.from_cpu.finish()),
            Arc::new(self.to_cpu.finish()),
            Arc::new(self.old_tid.finish()),
            Arc::new(self.lost_count.finish()),
            Arc::new(self.prev_syscall.finish()),
            Arc::new(self.prev_iowait.finish()),
        ]);
        cols.extend(self.counters.iter_mut().map(|b| col(b.finish())));
        cols.extend(self.wake.finish());
        batch(schema, stamp, n, cols)
    }
}

/// The per-thread figures of `threads.parquet`, in column order.
const THREAD_FIGURES: [&str; 24] = [
    "on_cpu_ns",
    "runnable_ns",
    "sleeping_ns",
    "blocked_ns",
    "unknown_ns",
    "lifetime_ns",
    "voluntary_switches",
    "involuntary_switches",
    "anomalies",
    "migrations",
    "slices",
    "longest_slice_ns",
    "wait_count",
    "wait_total_ns",
    "wait_mean_ns",
    "wait_p50_ns",
    "wait_p99_ns",
    "wait_max_ns",
    "timeline_on_cpu_ns",
    "steal_ns",
    "inferred_runs",
    "inferred_ns",
    "unplaced_runs",
    "run_delay_asleep_ns",
];

fn thread_figures(t: &ThreadSummary) -> [u64; 24] {
    [
        t.on_cpu_ns,
        t.states.runnable_ns,
        t.states.sleeping_ns,
        t.states.blocked_ns,
        t.states.unknown_ns,
        t.lifetime_ns,
        t.voluntary_switches,
        t.involuntary_switches,
        t.anomalies,
        t.migrations,
        t.slices,
        t.longest_slice_ns,
        t.wait.count,
        t.wait.total_ns,
        t.wait.mean_ns,
        t.wait.p50_ns,
        t.wait.p99_ns,
        t.wait.max_ns,
        t.timeline_on_cpu_ns,
        t.steal_ns,
        t.inferred_runs,
        t.inferred_ns,
        t.unplaced_runs,
        t.run_delay_asleep_ns,
    ]
}

/// `threads.parquet`: the summary's per-thread figures.
pub(crate) struct ThreadRows {
    tgid: Int64Builder,
    tid: Int64Builder,
    comm: StringBuilder,
    figures: Vec<Int64Builder>,
    top_waker_tid: Int64Builder,
    top_waker_comm: StringBuilder,
    created_ns: Int64Builder,
    exited_ns: Int64Builder,
}

impl Default for ThreadRows {
    fn default() -> Self {
        ThreadRows {
            tgid: Int64Builder::new(),
            tid: Int64Builder::new(),
            comm: StringBuilder::new(),
            figures: THREAD_FIGURES.iter().map(|_| Int64Builder::new()).collect(),
            top_waker_tid: Int64Builder::new(),
            top_waker_comm: StringBuilder::new(),
            created_ns: Int64Builder::new(),
            exited_ns: Int64Builder::new(),
        }
    }
}

impl ThreadRows {
    pub(crate) fn push(&mut self, t: &ThreadSummary) -> Result<(), Overflow> {
        let figures = thread_figures(t);
        let mut values = [0i64; 24];
        for (i, v) in figures.iter().enumerate() {
            values[i] = i64_of(THREAD_FIGURES[i], *v)?;
        }
        let created = t.created_ns.map(|v| i64_of("created_ns", v)).transpose()?;
        let exited = t.exited_ns.map(|v| i64_of("exited_ns", v)).transpose()?;
        self.tgid.append_value(t.tgid.into());
        self.tid.append_value(t.tid.into());
        self.comm.append_value(&t.comm);
        for (b, v) in self.figures.iter_mut().zip(values) {
            b.append_value(v);
        }
        let top = t.wakers.first();
        self.top_waker_tid
            .append_option(top.map(|w| i64::from(w.tid)));
        self.top_waker_comm
            .append_option(top.map(|w| w.comm.as_str()));
        self.created_ns.append_option(created);
        self.exited_ns.append_option(exited);
        Ok(())
    }
}

impl Rows for ThreadRows {
    fn schema() -> SchemaRef {
        let mut f = vec![
            Field::new("tgid", DataType::Int64, false),
            Field::new("tid", DataType::Int64, false),
            Field::new("comm", DataType::Utf8, false),
        ];
        f.extend(
            THREAD_FIGURES
                .iter()
                .map(|n| Field::new(*n, DataType::Int64, false)),
        );
        f.extend([
            Field::new("top_waker_tid", DataType::Int64, true),
            Field::new("top_waker_comm", DataType::Utf8, true),
            Field::new("created_ns", DataType::Int64, true),
            Field::new("exited_ns", DataType::Int64, true),
        ]);
        schema(f)
    }

    fn len(&self) -> usize {
        self.tid.len()
    }

    fn take_batch(&mut self, schema: &SchemaRef, stamp: &Stamp) -> Result<RecordBatch, ArrowError> {
        let n = self.len();
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.tgid.finish()),
            Arc::new(self.tid.finish()),
            Arc::new(self.comm.finish()),
        ];
        cols.extend(self.figures.iter_mut().map(|b| col(b.finish())));
        cols.extend([
            col(self.top_waker_tid.finish()),
            Arc::new(self.top_waker_comm.finish()),
            Arc::new(self.created_ns.finish()),
            Arc::new(self.exited_ns.finish()),
        ]);
        batch(schema, stamp, n, cols)
    }
}

/// `meta.parquet`: one row about the trace.
#[derive(Default)]
pub(crate) struct MetaRows {
    schema_version: Int32Builder,
    hostname: StringBuilder,
    kernel_release: StringBuilder,
    ncpus: Int32Builder,
    clock: StringBuilder,
    start_ns: Int64Builder,
    window_start_ns: Int64Builder,
    window_end_ns: Int64Builder,
    target_pid: Int64Builder,
    target_comm: StringBuilder,
    command: ListBuilder<StringBuilder>,
    follow_children: BooleanBuilder,
    wakeups: BooleanBuilder,
    events: Int64Builder,
    lost_events: Int64Builder,
    complete: BooleanBuilder,
    stop_reason: StringBuilder,
    tool_version: StringBuilder,
    writer_version: StringBuilder,
    lost_stacks: Int64Builder,
    anomalies: Int64Builder,
    late_events: Int64Builder,
    recursion_misses: Int64Builder,
    inferred_runs: Int64Builder,
    missing_switch_ins: Int64Builder,
    missing_wakeups: Int64Builder,
    unplaced_runs: Int64Builder,
    lost_processes: Int64Builder,
}

impl MetaRows {
    pub(crate) fn push(&mut self, h: &Header, s: &Summary) -> Result<(), Overflow> {
        let start = i64_of("start_ns", h.start_ns)?;
        let window_start = i64_of("window_start_ns", s.window_start_ns)?;
        let window_end = i64_of("window_end_ns", s.window_end_ns)?;
        let events = i64_of("events", s.events)?;
        let lost = i64_of("lost_events", s.lost_events)?;
        let lost_stacks = i64_of("lost_stacks", s.lost_stacks)?;
        let anomalies = i64_of("anomalies", s.anomalies)?;
        let late = i64_of("late_events", s.late_events())?;
        let recursion = s
            .recursion_misses
            .map(|n| i64_of("recursion_misses", n))
            .transpose()?;
        let inferred = i64_of("inferred_runs", s.inferred_per_cpu.iter().sum())?;
        // Empty when the trace does not say (one written before it did).
        let missing_in = (!s.missing_switch_ins_per_cpu.is_empty())
            .then(|| {
                i64_of(
                    "missing_switch_ins",
                    s.missing_switch_ins_per_cpu.iter().sum(),
                )
            })
            .transpose()?;
        let missing_wakeups = i64_of("missing_wakeups", s.missing_wakeups_per_cpu.iter().sum())?;
        let unplaced = i64_of("unplaced_runs", s.unplaced_runs)?;
        let lost_processes = i64_of("lost_processes", s.lost_processes)?;
        self.schema_version
            .append_value(super::PARQUET_SCHEMA_VERSION as i32);
        self.hostname.append_value(&h.hostname);
        self.kernel_release.append_value(&h.kernel_release);
        self.ncpus.append_value(i32_of("ncpus", h.ncpus)?);
        self.clock.append_value("CLOCK_MONOTONIC");
        self.start_ns.append_value(start);
        self.window_start_ns.append_value(window_start);
        self.window_end_ns.append_value(window_end);
        self.target_pid.append_value(h.target_pid.into());
        self.target_comm.append_value(&s.target_comm);
        match &h.command {
            Some(c) => {
                for a in c {
                    self.command.values().append_value(a);
                }
                self.command.append(true);
            }
            None => self.command.append(false),
        }
        self.follow_children.append_value(h.follow_children);
        self.wakeups.append_value(h.wakeups);
        self.events.append_value(events);
        self.lost_events.append_value(lost);
        self.complete.append_value(s.complete);
        self.stop_reason.append_value(&s.stop_reason);
        self.tool_version.append_value(&h.tool_version);
        self.writer_version.append_value(crate::version::short());
        self.lost_stacks.append_value(lost_stacks);
        self.anomalies.append_value(anomalies);
        self.late_events.append_value(late);
        self.recursion_misses.append_option(recursion);
        self.inferred_runs.append_value(inferred);
        self.missing_switch_ins.append_option(missing_in);
        self.missing_wakeups.append_value(missing_wakeups);
        self.unplaced_runs.append_value(unplaced);
        self.lost_processes.append_value(lost_processes);
        Ok(())
    }
}

impl Rows for MetaRows {
    fn schema() -> SchemaRef {
        let item = Field::new("item", DataType::Utf8, true);
        schema(vec![
            Field::new("schema_version", DataType::Int32, false),
            Field::new("hostname", DataType::Utf8, false),
            Field::new("kernel_release", DataType::Utf8, false),
            Field::new("ncpus", DataType::Int32, false),
            Field::new("clock", DataType::Utf8, false),
            Field::new("start_ns", DataType::Int64, false),
            Field::new("window_start_ns", DataType::Int64, false),
            Field::new("window_end_ns", DataType::Int64, false),
            Field::new("target_pid", DataType::Int64, false),
            Field::new("target_comm", DataType::Utf8, false),
            Field::new("command", DataType::List(Arc::new(item)), true),
            Field::new("follow_children", DataType::Boolean, false),
            Field::new("wakeups", DataType::Boolean, false),
            Field::new("events", DataType::Int64, false),
            Field::new("lost_events", DataType::Int64, false),
            Field::new("complete", DataType::Boolean, false),
            Field::new("stop_reason", DataType::Utf8, false),
            Field::new("tool_version", DataType::Utf8, false),
            Field::new("writer_version", DataType::Utf8, false),
            Field::new("lost_stacks", DataType::Int64, false),
            Field::new("anomalies", DataType::Int64, false),
            Field::new("late_events", DataType::Int64, false),
            Field::new("recursion_misses", DataType::Int64, true),
            Field::new("inferred_runs", DataType::Int64, false),
            Field::new("missing_switch_ins", DataType::Int64, true),
            Field::new("missing_wakeups", DataType::Int64, false),
            Field::new("unplaced_runs", DataType::Int64, false),
            Field::new("lost_processes", DataType::Int64, false),
        ])
    }

    fn len(&self) -> usize {
        self.ncpus.len()
    }

    fn take_batch(&mut self, schema: &SchemaRef, stamp: &Stamp) -> Result<RecordBatch, ArrowError> {
        let n = self.len();
        batch(
            schema,
            stamp,
            n,
            vec![
                Arc::new(self.schema_version.finish()),
                Arc::new(self.hostname.finish()),
                Arc::new(self.kernel_release.finish()),
                Arc::new(self.ncpus.finish()),
                Arc::new(self.clock.finish()),
                Arc::new(self.start_ns.finish()),
                Arc::new(self.window_start_ns.finish()),
                Arc::new(self.window_end_ns.finish()),
                Arc::new(self.target_pid.finish()),
                Arc::new(self.target_comm.finish()),
                Arc::new(self.command.finish()),
                Arc::new(self.follow_children.finish()),
                Arc::new(self.wakeups.finish()),
                Arc::new(self.events.finish()),
                Arc::new(self.lost_events.finish()),
                Arc::new(self.complete.finish()),
                Arc::new(self.stop_reason.finish()),
                Arc::new(self.tool_version.finish()),
                Arc::new(self.writer_version.finish()),
                Arc::new(self.lost_stacks.finish()),
                Arc::new(self.anomalies.finish()),
                Arc::new(self.late_events.finish()),
                Arc::new(self.recursion_misses.finish()),
                Arc::new(self.inferred_runs.finish()),
                Arc::new(self.missing_switch_ins.finish()),
                Arc::new(self.missing_wakeups.finish()),
                Arc::new(self.unplaced_runs.finish()),
                Arc::new(self.lost_processes.finish()),
            ],
        )
    }
}
