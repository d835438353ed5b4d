//! The JSON Lines trace file: one JSON object per line with a `type` field;
//! a `header` first, an `end` record last (`docs/trace-format.md`). The
//! schema is [`wire`]'s serde types; [`writer`] writes it (events by hand),
//! [`scanner`] reads the event lines schedtrace writes without serde, and
//! [`reader`] reads a file back, checking its header and order.

mod reader;
mod scanner;
mod wire;
mod writer;

pub(crate) use reader::{JsonlReader, ReadError};
pub(crate) use wire::{header_version, record_from_json};
pub(crate) use writer::{append_event, write_record};

/// The `schema` value of a header line.
pub(crate) const SCHEMA_NAME: &str = "schedtrace-trace";
/// Lines longer than this are rejected rather than buffered.
pub(crate) const MAX_LINE_BYTES: usize = 1 << 20;

/// A byte of a string that is its own JSON text: printable ASCII but the
/// quote and the backslash. The writer writes such names without serde,
/// and the scanner reads exactly those.
#[inline]
fn plain_byte(c: u8) -> bool {
    (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::trace::{End, Format, Lost, Record};

    fn round_trip(records: &[Record]) -> Vec<Record> {
        let bytes = write_all(Format::Jsonl, records);
        JsonlReader::new(&bytes[..])
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    #[test]
    fn every_record_kind_round_trips() {
        let recs = vec![
            Record::Header(Box::new(header(2, 100))),
            Record::Thread(thread_info(101, 'S')),
            Record::Event(switch(1_000, 0, task(100), 1, task(0))),
            Record::Event(wakeup(1_100, 1, task(7), task(101), false)),
            Record::Event(wakeup(1_150, 1, task(100), task(102), true)),
        ]
        .into_iter()
        .chain(
            migrate_fork_exec_exit(1_200, 1_500, 0)
                .into_iter()
                .map(Record::Event),
        )
        .chain([
            Record::Lost(Lost {
                ts: 1_600,
                cpu: 1,
                count: 3,
            }),
            Record::End(End {
                end_ns: 2_000,
                events: 7,
                lost_events: 3,
                lost_per_cpu: vec![0, 3],
                complete: true,
                reason: "duration".into(),
                missing_switch_ins_per_cpu: vec![1, 0],
                recursion_misses: Some(4),
                lost_processes: 2,
                ordering: crate::trace::Ordering {
                    method: Some(crate::trace::OrderMethod::Marks),
                    late_per_cpu: vec![0, 2],
                    gaps: vec![crate::trace::Gap {
                        cpu: 1,
                        from_ns: 1_900,
                        to_ns: 2_000,
                    }],
                },
            }),
        ])
        .collect::<Vec<_>>();
        assert_eq!(round_trip(&recs), recs);
    }
}
