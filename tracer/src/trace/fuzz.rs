//! The readers never panic and never allocate without bound, whatever the
//! input: one property harness over [`TraceReader`] for both formats, fed
//! random bytes, valid traces cut or corrupted anywhere, garbage after a
//! valid header, and (JSON Lines) JSON-like lines. Cases that once failed
//! are kept by proptest in `proptest-regressions/` next to this crate.
//! (`analysis::fuzz` analyses what they read and checks the figures.)
//!
//! 512 cases per property by default, always the same ones (a fixed seed:
//! the suite must not pass or fail by chance); `SCHEDTRACE_FUZZ_CASES=N
//! SCHEDTRACE_FUZZ_SEED=random` for a long run that explores new cases
//! (`cargo test -p schedtrace --lib fuzz`: a debug build, so that overflows
//! panic).

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use super::{Format, Record, TraceReader};
use crate::testutil::*;

pub(crate) const FORMATS: [Format; 2] = [Format::Jsonl, Format::Binary];

/// Cases per property: `SCHEDTRACE_FUZZ_CASES`, or 512.
pub(crate) fn cases() -> u32 {
    std::env::var("SCHEDTRACE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

/// The seed the suite's cases come from.
const SEED: u64 = 0x05ee_d0f5_c4ed;

/// The configuration of every fuzz property: [`cases`] cases from [`SEED`],
/// or from `SCHEDTRACE_FUZZ_SEED` (a number, or `random`).
pub(crate) fn config() -> ProptestConfig {
    let rng_seed = match std::env::var("SCHEDTRACE_FUZZ_SEED").ok() {
        None => RngSeed::Fixed(SEED),
        Some(s) => s.parse().map_or(RngSeed::Random, RngSeed::Fixed),
    };
    ProptestConfig {
        cases: cases(),
        rng_seed,
        ..ProptestConfig::default()
    }
}

/// A valid trace in `format`: every record kind, then 20 switches, then
/// the end.
pub(crate) fn sample(format: Format) -> Vec<u8> {
    let mut recs = every_record_kind();
    let end = recs.pop().unwrap();
    for i in 0..20 {
        recs.push(Record::Event(switch(
            10 + i,
            (i % 2) as u32,
            task(101),
            1,
            task(0),
        )));
    }
    recs.push(end);
    write_all(format, &recs)
}

/// Read `bytes` as a trace in `format` until the end or the first error.
fn read_everything(format: Format, bytes: &[u8]) {
    let mut r = TraceReader::with_format(format, bytes);
    for _ in 0..10_000 {
        match r.next_record() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        for format in FORMATS {
            read_everything(format, &bytes);
        }
    }

    #[test]
    fn random_bytes_after_a_valid_header(tail in proptest::collection::vec(any::<u8>(), 0..4096)) {
        for format in FORMATS {
            let mut t = write_all(format, &[Record::Header(Box::new(header(2, 1)))]);
            t.extend_from_slice(&tail);
            read_everything(format, &t);
        }
    }

    #[test]
    fn cut_or_flipped_traces(
        cut in any::<proptest::sample::Index>(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..4),
    ) {
        for format in FORMATS {
            let mut t = sample(format);
            for (at, byte) in &flips {
                let i = at.index(t.len());
                t[i] = *byte;
            }
            t.truncate(cut.index(t.len() + 1));
            read_everything(format, &t);
        }
    }

    #[test]
    fn json_like_lines(lines in proptest::collection::vec("[{}\\[\\]\":,a-z0-9 ]{0,80}", 0..20)) {
        let mut t = sample(Format::Jsonl);
        for l in lines {
            t.extend_from_slice(l.as_bytes());
            t.push(b'\n');
        }
        read_everything(Format::Jsonl, &t);
    }
}
