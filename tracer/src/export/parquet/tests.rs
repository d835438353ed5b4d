use std::collections::{BTreeMap, HashMap};
use std::fs::File;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrowPrimitiveType, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::*;
use crate::analysis::{Analyzer, Options};
use crate::event::{Event, EventKind, WakeContext};
use crate::testutil::{self, assert_on_cpu_matches, interleaved_analysis, interleaved_trace};

fn tmpdir() -> testutil::TempDir {
    testutil::TempDir::new("schedtrace-parquet")
}

/// Analyse `records` while writing the tables to `dir`, as `report` does;
/// the summary.
fn write(records: &[Record], dir: &Path, opts: ParquetOptions) -> anyhow::Result<Summary> {
    let mut tables = ParquetTables::create(dir, false, opts)?;
    let mut a = Analyzer::new(Options::default());
    tables.attach(&mut a);
    for r in records {
        a.feed(r);
        tables.record(r);
    }
    let (summary, _) = a.finish();
    tables.finish(&summary)?;
    Ok(summary)
}

fn read(path: &Path) -> (Vec<String>, Vec<RecordBatch>) {
    let b = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let names = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let batches = b.build().unwrap().map(|b| b.unwrap()).collect();
    (names, batches)
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// An integer column of any width, widened.
fn ints<T: ArrowPrimitiveType>(batches: &[RecordBatch], col: &str) -> Vec<Option<i64>>
where
    T::Native: Into<i64>,
{
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(col).unwrap().as_primitive::<T>();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i).into()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn i64s(batches: &[RecordBatch], col: &str) -> Vec<Option<i64>> {
    ints::<Int64Type>(batches, col)
}

fn i32s(batches: &[RecordBatch], col: &str) -> Vec<Option<i64>> {
    ints::<Int32Type>(batches, col)
}

fn bools(batches: &[RecordBatch], col: &str) -> Vec<Option<bool>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(col).unwrap().as_boolean();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn strs(batches: &[RecordBatch], col: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(col).unwrap().as_string::<i32>();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The columns docs/parquet.md lists for `table`, in order: the first
/// cells of the `| column |` table under the heading that names the file.
fn documented_columns(table: &str) -> Vec<String> {
    let doc = include_str!("../../../../docs/parquet.md");
    let heading = format!("### `{table}`");
    let at = doc
        .find(&heading)
        .unwrap_or_else(|| panic!("docs/parquet.md has no {heading}"));
    doc[at..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with("| column |"))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            let cell = l.split('|').nth(1).unwrap().trim();
            cell.trim_matches('`').to_string()
        })
        .collect()
}

#[test]
fn every_table_has_its_documented_columns_and_a_row_per_thing() {
    let dir = tmpdir();
    let records = interleaved_trace();
    let summary = write(&records, &dir, ParquetOptions::default()).unwrap();
    let (_, timeline) = interleaved_analysis();
    let events = records
        .iter()
        .filter(|r| matches!(r, Record::Event(_) | Record::Lost(_)))
        .count();
    let expected = [
        ("segments.parquet", timeline.segments.len()),
        ("events.parquet", events),
        ("threads.parquet", summary.threads.len()),
        ("meta.parquet", 1),
    ];
    for (name, n) in expected {
        let (columns, batches) = read(&dir.join(name));
        assert_eq!(columns, documented_columns(name), "{name}");
        assert_eq!(rows(&batches), n, "{name}");
        assert!(n > 0, "{name}");
        // Where the trace was taken is on every row of every table.
        assert!(
            strs(&batches, "host")
                .iter()
                .all(|h| h.as_deref() == Some("test"))
        );
        let offsets = i64s(&batches, "wall_clock_offset_ns");
        assert!(
            offsets
                .iter()
                .all(|o| *o == Some(1_700_000_000_000_000_000))
        );
        let kv = SerializedFileReader::new(File::open(dir.join(name)).unwrap()).unwrap();
        let kv: BTreeMap<String, Option<String>> = kv
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|k| (k.key.clone(), k.value.clone()))
            .collect();
        assert_eq!(
            kv["schedtrace.schema"].as_deref(),
            Some("schedtrace-parquet")
        );
        assert_eq!(
            kv["schedtrace.version"].as_deref(),
            Some(PARQUET_SCHEMA_VERSION.to_string().as_str())
        );
        assert_eq!(
            kv["schedtrace.table"].as_deref(),
            Some(name.trim_end_matches(".parquet"))
        );
    }
}

/// A runnable segment that a wakeup began names what woke it: the waker
/// of the timeline's wake edge at its start (a traced thread, or the task
/// of another process, by TID and name); every other segment has none.
#[test]
fn runnable_segments_name_their_waker() {
    let dir = tmpdir();
    write(&interleaved_trace(), &dir, ParquetOptions::default()).unwrap();
    let (_, timeline) = interleaved_analysis();
    let (_, b) = read(&dir.join("segments.parquet"));
    let (tid, start, state) = (i64s(&b, "tid"), i64s(&b, "start_ns"), strs(&b, "state"));
    let (context, waker, name) = (
        strs(&b, "wake_context"),
        i64s(&b, "waker_tid"),
        strs(&b, "waker_comm"),
    );
    let mut named = 0;
    for i in 0..tid.len() {
        let edge = timeline.wakeups.iter().find(|w| {
            i64::from(w.wakee_tid) == tid[i].unwrap() && w.ts as i64 == start[i].unwrap()
        });
        match (state[i].as_deref(), edge) {
            (Some("runnable"), Some(w)) => {
                assert_eq!(context[i].as_deref(), Some("task"), "row {i}");
                assert_eq!(waker[i], Some(i64::from(w.waker_tid)), "row {i}");
                let comm = timeline
                    .threads
                    .iter()
                    .find(|t| t.tid == w.waker_tid)
                    .map_or_else(|| w.waker_comm.as_str().into_owned(), |t| t.comm.clone());
                assert_eq!(name[i].as_deref(), Some(comm.as_str()), "row {i}");
                named += 1;
            }
            _ => assert_eq!((&context[i], waker[i]), (&None, None), "row {i}"),
        }
    }
    assert!(named >= 2, "the sample has woken threads: {named}");
    assert!(
        (0..tid.len()).any(|i| waker[i].is_some()
            && !timeline
                .threads
                .iter()
                .any(|t| i64::from(t.tid) == waker[i].unwrap())),
        "and a waker outside the process"
    );
}

#[test]
fn segments_are_the_timeline_and_running_time_sums_to_on_cpu() {
    let dir = tmpdir();
    let summary = write(&interleaved_trace(), &dir, ParquetOptions::default()).unwrap();
    let (_, timeline) = interleaved_analysis();
    let (_, b) = read(&dir.join("segments.parquet"));
    let (tid, start, end) = (i64s(&b, "tid"), i64s(&b, "start_ns"), i64s(&b, "end_ns"));
    let state = strs(&b, "state");
    let cpus: Vec<Option<i32>> = b
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name("cpu").unwrap().as_primitive::<Int32Type>();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i)))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut got: Vec<(u64, u64, u32, String, Option<i32>)> = (0..tid.len())
        .map(|i| {
            (
                start[i].unwrap() as u64,
                end[i].unwrap() as u64,
                tid[i].unwrap() as u32,
                state[i].clone().unwrap(),
                cpus[i],
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(u64, u64, u32, String, Option<i32>)> = timeline
        .segments
        .iter()
        .map(|s| {
            let cpu = match s.state {
                crate::analysis::timeline::SegState::Running { cpu } => Some(cpu as i32),
                _ => None,
            };
            (s.start, s.end, s.tid, s.state.name().to_string(), cpu)
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
    let mut on_cpu: HashMap<u64, u64> = HashMap::new();
    for (start, end, tid, state, _) in &got {
        if state == "running" {
            *on_cpu.entry(u64::from(*tid)).or_default() += end - start;
        }
    }
    assert_on_cpu_matches(&summary, &on_cpu);
    let (_, t) = read(&dir.join("threads.parquet"));
    let from_table: HashMap<u64, u64> = i64s(&t, "tid")
        .into_iter()
        .zip(i64s(&t, "on_cpu_ns"))
        .map(|(tid, ns)| (tid.unwrap() as u64, ns.unwrap() as u64))
        .collect();
    assert_on_cpu_matches(&summary, &from_table);
}

#[test]
fn events_keep_each_kind_in_its_columns() {
    let dir = tmpdir();
    let mut records = testutil::every_record_kind();
    // One wakeup of a task is enough here (the contexts have their own
    // test).
    let mut wakeups = 0;
    records.retain(|r| {
        let Record::Event(e) = r else { return true };
        let EventKind::Wakeup { new: false, .. } = e.kind else {
            return true;
        };
        wakeups += 1;
        wakeups == 1
    });
    // Keep the values a signed column holds (the overflow has its own test).
    for r in &mut records {
        if let Record::Event(e) = r
            && let EventKind::Switch {
                next_wait: Some(w),
                counters,
                ..
            } = &mut e.kind
        {
            w.run_delay_ns = 9_876;
            if let Some(p) = &mut counters.prev {
                p.runtime_ns = 4_321;
            }
        }
        if let Record::Lost(l) = r {
            l.count = 3;
        }
        if let Record::End(e) = r {
            e.ordering.late_per_cpu = vec![2, 0];
        }
    }
    write(&records, &dir, ParquetOptions::default()).unwrap();
    let (_, b) = read(&dir.join("events.parquet"));
    let kinds: Vec<String> = strs(&b, "kind").into_iter().map(Option::unwrap).collect();
    assert_eq!(
        kinds,
        [
            "switch",
            "switch",
            "switch",
            "switch",
            "wakeup",
            "wakeup_new",
            "migrate",
            "fork",
            "exec",
            "exit",
            "join",
            "lost"
        ]
    );
    let prev = i64s(&b, "prev_tid");
    let next = i64s(&b, "next_tid");
    // What a target leaving the CPU was doing, where the switch says.
    let syscall = i64s(&b, "prev_syscall");
    let iowait = bools(&b, "prev_iowait");
    assert_eq!((syscall[0], iowait[0]), (None, None));
    assert_eq!(
        (syscall[1], iowait[1]),
        (Some(i64::from(u32::MAX)), Some(true))
    );
    let futex = crate::syscalls::number("futex").map(i64::from);
    assert_eq!((syscall[2], iowait[2]), (futex, Some(false)));
    assert_eq!((syscall[3], iowait[3]), (None, Some(false)));
    // A switch's and a wakeup's two tasks, a migration's and an exec's one
    // (in next_*), an exit's (in prev_*), a join's (in next_*), a loss
    // mark's none.
    assert_eq!(prev[0], Some(100));
    assert_eq!(next[0], Some(0));
    assert_eq!(prev[1], Some(i64::from(u32::MAX)));
    assert_eq!((prev[4], next[4]), (Some(7), Some(101)));
    assert_eq!((prev[6], next[6]), (None, Some(101)));
    assert_eq!((prev[7], next[7]), (Some(100), Some(103)));
    assert_eq!((prev[8], next[8]), (None, Some(100)));
    assert_eq!((prev[9], next[9]), (Some(103), None));
    assert_eq!((prev[10], next[10]), (None, Some(i64::from(u32::MAX))));
    assert_eq!((prev[11], next[11]), (None, None));
    let state = strs(&b, "prev_state");
    assert_eq!(state[0].as_deref(), Some("S"));
    assert_eq!(state[1].as_deref(), Some("R"));
    assert_eq!(state[4], None);
    assert_eq!(i64s(&b, "next_run_delay_ns")[1], Some(9_876));
    assert_eq!(i64s(&b, "next_queued_ns")[1], Some(1_234));
    assert_eq!(i64s(&b, "lost_count")[11], Some(3));
    // The kernel counters a switch carries, null where it has none.
    assert_eq!(i64s(&b, "prev_runtime_ns")[1], Some(4_321));
    assert_eq!(i64s(&b, "prev_pcount")[1], Some(i64::from(u32::MAX)));
    assert_eq!(i64s(&b, "prev_run_clock_ns")[1], None);
    assert_eq!(i64s(&b, "next_runtime_ns")[1], Some(5));
    assert_eq!(i64s(&b, "next_pcount")[1], None);
    assert_eq!(i64s(&b, "prev_runtime_ns")[0], None);
    assert_eq!(i64s(&b, "old_tid")[8], Some(100));
    // Names are decoded like the JSON Lines trace's (invalid bytes as U+FFFD).
    assert_eq!(
        strs(&b, "prev_comm")[1].as_deref(),
        Some("café \u{fffd}\u{fffd}01234567")
    );
}

/// Each wakeup's context in the `wake_*` columns, as the JSON Lines
/// trace's `context` has it, and an outside waker's process by name; every
/// other kind of row has them null.
#[test]
fn wakeups_keep_their_context_and_an_outside_wakers_process() {
    let dir = tmpdir();
    let mut records = testutil::every_record_kind();
    // Switches and losses carry values a signed column cannot hold (the
    // overflow has its own test) and nothing this test reads.
    records.retain(|r| {
        !matches!(
            r,
            Record::Lost(_)
                | Record::Event(Event {
                    kind: EventKind::Switch { .. },
                    ..
                })
        )
    });
    let wakeups: Vec<(WakeContext, Option<String>)> = records
        .iter()
        .filter_map(|r| match r {
            Record::Event(Event {
                kind:
                    EventKind::Wakeup {
                        context,
                        waker_process,
                        ..
                    },
                ..
            }) => Some((*context, waker_process.map(|c| c.as_str().into_owned()))),
            _ => None,
        })
        .collect();
    // A count the meta table's signed column holds.
    for r in &mut records {
        if let Record::End(e) = r {
            e.ordering.late_per_cpu = vec![2, 0];
        }
    }
    write(&records, &dir, ParquetOptions::default()).unwrap();
    let (_, b) = read(&dir.join("events.parquet"));
    let kinds = strs(&b, "kind");
    let rows: Vec<usize> = (0..kinds.len())
        .filter(|&i| kinds[i].as_deref().is_some_and(|k| k.starts_with("wakeup")))
        .collect();
    assert_eq!(rows.len(), wakeups.len());
    let (context, function, name) = (
        strs(&b, "wake_context"),
        strs(&b, "wake_function"),
        strs(&b, "wake_name"),
    );
    let (soft, vector, irq) = (
        bools(&b, "wake_soft"),
        i32s(&b, "wake_vector"),
        i64s(&b, "wake_irq"),
    );
    let process = strs(&b, "waker_process");
    for (&i, (c, p)) in rows.iter().zip(&wakeups) {
        assert_eq!(context[i].as_deref(), Some(c.kind_name()), "row {i}");
        assert_eq!(&process[i], p, "row {i}");
        let want = match *c {
            WakeContext::Timer { function, soft } => (
                function.map(|f| f.as_str().into_owned()),
                Some(soft),
                None,
                None,
                None,
            ),
            WakeContext::Softirq { vector } => (
                None,
                None,
                vector.map(i64::from),
                None,
                vector
                    .and_then(WakeContext::softirq_name)
                    .map(str::to_owned),
            ),
            WakeContext::Hardirq { irq, name } => (
                None,
                None,
                None,
                irq.map(i64::from),
                name.map(|n| n.as_str().into_owned()),
            ),
            _ => (None, None, None, None, None),
        };
        let got = (
            function[i].clone(),
            soft[i],
            vector[i],
            irq[i],
            name[i].clone(),
        );
        assert_eq!(got, want, "row {i}");
    }
    // Every context the trace format has is in the sample, and the columns
    // say each apart.
    let mut seen: Vec<&str> = rows.iter().filter_map(|&i| context[i].as_deref()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen,
        ["hardirq", "nmi", "softirq", "task", "timer", "unknown"]
    );
    let softirq = rows
        .iter()
        .find(|&&i| context[i].as_deref() == Some("softirq"));
    assert_eq!(name[*softirq.unwrap()].as_deref(), Some("NET_RX"));
    assert!(process.iter().flatten().any(|p| p == "other-proc"));
    for i in (0..kinds.len()).filter(|i| !rows.contains(i)) {
        assert_eq!(
            (&context[i], &process[i], soft[i]),
            (&None, &None, None),
            "row {i}"
        );
    }
}

#[test]
fn a_value_that_does_not_fit_fails_the_table_and_removes_its_file() {
    let dir = tmpdir();
    // A switch's runtime is u64::MAX: no signed 64-bit column holds it.
    let e = write(
        &testutil::every_record_kind(),
        &dir,
        ParquetOptions::default(),
    )
    .unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("events.parquet failed; the incomplete file was removed")
            && e.contains("prev_runtime_ns 18446744073709551615 does not fit"),
        "{e}"
    );
    assert!(!dir.join("events.parquet").exists());
    assert!(dir.join("segments.parquet").exists());
}

#[test]
fn host_and_boot_id_are_the_callers_when_given() {
    let dir = tmpdir();
    let opts = ParquetOptions {
        host: Some("web-7".into()),
        boot_id: Some("0f1e2d3c".into()),
    };
    write(&interleaved_trace(), &dir, opts).unwrap();
    for name in FILES {
        let (_, b) = read(&dir.join(name));
        assert!(
            strs(&b, "host")
                .iter()
                .all(|h| h.as_deref() == Some("web-7"))
        );
        assert!(
            strs(&b, "boot_id")
                .iter()
                .all(|h| h.as_deref() == Some("0f1e2d3c"))
        );
    }
    let (_, b) = read(&dir.join("meta.parquet"));
    // The traced machine's own name stays in `hostname`.
    assert_eq!(strs(&b, "hostname")[0].as_deref(), Some("test"));
}

#[test]
fn long_traces_go_out_in_row_groups() {
    // Two threads taking turns on one CPU for 2.5 row groups of switches:
    // the writer holds at most one row group, and the file has three.
    let n = ROWS_PER_GROUP * 5 / 2;
    let events: Vec<_> = (0..n as u64)
        .map(|i| {
            let (a, b) = if i % 2 == 0 { (100, 101) } else { (101, 100) };
            testutil::switch(1_000 + i * 10, 0, testutil::task(a), 0, testutil::task(b))
        })
        .collect();
    let stop = 1_000 + n as u64 * 10;
    let records = testutil::trace(1, 1_000, &[(100, 'R'), (101, 'R')], &events, stop);
    let dir = tmpdir();
    let summary = write(&records, &dir, ParquetOptions::default()).unwrap();
    let groups = |name: &str| {
        let r = SerializedFileReader::new(File::open(dir.join(name)).unwrap()).unwrap();
        r.metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows() as usize)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        groups("events.parquet"),
        [ROWS_PER_GROUP, ROWS_PER_GROUP, n - 2 * ROWS_PER_GROUP]
    );
    // Each switch closes one running and one runnable segment.
    let segs: usize = groups("segments.parquet").iter().sum();
    assert!(groups("segments.parquet").len() >= 4, "{segs}");
    let on_cpu: u64 = summary.threads.iter().map(|t| t.on_cpu_ns).sum();
    assert_eq!(on_cpu, n as u64 * 10);
}

#[test]
fn existing_files_are_kept_without_force() {
    let dir = tmpdir();
    std::fs::write(dir.join("threads.parquet"), "keep").unwrap();
    let e = ParquetTables::create(&dir, false, ParquetOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("already exists"), "{e}");
    // The two made before it are removed again; the third is untouched.
    assert!(!dir.join("segments.parquet").exists());
    assert!(!dir.join("events.parquet").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("threads.parquet")).unwrap(),
        "keep"
    );
    let t = ParquetTables::create(&dir, true, ParquetOptions::default()).unwrap();
    t.discard();
    for name in FILES {
        assert!(!dir.join(name).exists(), "{name}");
    }
}

/// What the kernel's stream lacked is in `meta.parquet`, as in the
/// summary: a run whose switch-in is missing (inferred), a switch-in the
/// capture counted missing, a wakeup the stream lacked; `missing_switch_ins`
/// is null for a trace that does not say.
#[test]
fn meta_counts_what_the_stream_lacked() {
    const MS: u64 = 1_000_000;
    let (a, b) = (testutil::task(101), testutil::task(102));
    let ev = vec![
        testutil::in_counters(
            testutil::switch(2 * MS, 0, testutil::task(0), 0, a),
            10 * MS,
            0,
            0,
        ),
        testutil::out_counters(
            testutil::switch(3 * MS, 0, a, 0, testutil::task(7)),
            11 * MS,
            MS,
            0,
            1,
        ),
        // 101's switch-in at 4 ms is not in the stream.
        testutil::out_counters(
            testutil::switch(5 * MS, 0, a, 1, testutil::task(0)),
            12 * MS,
            MS,
            1,
            1,
        ),
        // 102, asleep, is switched in after a 1 ms wait no wakeup began.
        testutil::in_counters(
            testutil::switch(6 * MS, 1, testutil::task(0), 0, b),
            0,
            MS,
            MS,
        ),
    ];
    let mut records = testutil::trace(2, MS, &[(101, 'S'), (102, 'S')], &ev, 9 * MS);
    if let Some(Record::End(e)) = records.last_mut() {
        e.missing_switch_ins_per_cpu = vec![1, 0];
    }
    let dir = tmpdir();
    let s = write(&records, &dir, ParquetOptions::default()).unwrap();
    let (_, m) = read(&dir.join("meta.parquet"));
    assert_eq!(i64s(&m, "inferred_runs"), [Some(1)]);
    assert_eq!(i64s(&m, "missing_switch_ins"), [Some(1)]);
    assert_eq!(
        i64s(&m, "missing_wakeups"),
        [Some(s.missing_wakeups_per_cpu.iter().sum::<u64>() as i64)]
    );
    assert_eq!(i64s(&m, "missing_wakeups"), [Some(1)]);
    assert_eq!(i64s(&m, "unplaced_runs"), [Some(s.unplaced_runs as i64)]);

    let dir = tmpdir();
    write(&interleaved_trace(), &dir, ParquetOptions::default()).unwrap();
    let (_, m) = read(&dir.join("meta.parquet"));
    assert_eq!(i64s(&m, "missing_switch_ins"), [None]);
    assert_eq!(i64s(&m, "inferred_runs"), [Some(0)]);
}
