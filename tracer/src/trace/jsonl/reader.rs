//! Reading a JSON Lines trace back, line by line: the header first (its
//! schema version checked before anything else), then records in order,
//! with line numbers in every error.

use std::io::{self, BufRead};

use super::scanner::fast_event;
use super::wire::{Wire, from_wire};
use super::{MAX_LINE_BYTES, SCHEMA_NAME};
use crate::trace::{Record, TRACE_SCHEMA_VERSION};

/// Why a trace file could not be read. Line numbers start at 1.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("reading the trace: {0}")]
    Io(#[from] io::Error),
    #[error("the trace file is empty")]
    Empty,
    #[error("line {line}: not a schedtrace trace (the first line must be a header record)")]
    NoHeader { line: u64 },
    #[error(
        "line {line}: trace schema version {found} is newer than this schedtrace understands \
         ({TRACE_SCHEMA_VERSION}); upgrade schedtrace"
    )]
    NewerVersion { line: u64, found: u32 },
    #[error("line {line}: longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong { line: u64 },
    #[error("line {line}: {source}")]
    Json {
        line: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line}: a second header record")]
    SecondHeader { line: u64 },
    #[error("line {line}: record after the end record")]
    AfterEnd { line: u64 },
}

/// Reads records back, checking the header, version and order.
pub(crate) struct JsonlReader<R: BufRead> {
    input: R,
    line: u64,
    buf: Vec<u8>,
    seen_header: bool,
    seen_end: bool,
}

impl<R: BufRead> JsonlReader<R> {
    pub(crate) fn new(input: R) -> Self {
        JsonlReader {
            input,
            line: 0,
            buf: Vec::with_capacity(512),
            seen_header: false,
            seen_end: false,
        }
    }

    fn read_line(&mut self) -> Result<bool, ReadError> {
        self.buf.clear();
        let n = io::Read::take(self.input.by_ref(), MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        if self.buf.len() > MAX_LINE_BYTES && self.buf.last() != Some(&b'\n') {
            return Err(ReadError::LineTooLong { line: self.line });
        }
        Ok(true)
    }

    /// The next record, `None` at the end of the input.
    pub(crate) fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        loop {
            if !self.read_line()? {
                if !self.seen_header {
                    return Err(ReadError::Empty);
                }
                return Ok(None);
            }
            let text = self.buf.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let line = self.line;
            if !self.seen_header {
                // Peek at the version before decoding the whole header, so a
                // newer file gets the right message even if fields changed.
                let v: serde_json::Value =
                    serde_json::from_slice(text).map_err(|_| ReadError::NoHeader { line })?;
                if v.get("type").and_then(|t| t.as_str()) != Some("header")
                    || v.get("schema").and_then(|t| t.as_str()) != Some(SCHEMA_NAME)
                {
                    return Err(ReadError::NoHeader { line });
                }
                if let Some(found) = v.get("version").and_then(|x| x.as_u64())
                    && found > TRACE_SCHEMA_VERSION as u64
                {
                    return Err(ReadError::NewerVersion {
                        line,
                        found: found as u32,
                    });
                }
            }
            let rec = match fast_event(text) {
                Some(r) => r,
                None => serde_json::from_slice::<Wire>(text)
                    .map(from_wire)
                    .map_err(|source| ReadError::Json { line, source })?,
            };
            if self.seen_end {
                return Err(ReadError::AfterEnd { line });
            }
            match &rec {
                Record::Header(_) if self.seen_header => {
                    return Err(ReadError::SecondHeader { line });
                }
                Record::Header(_) => self.seen_header = true,
                Record::End(_) => self.seen_end = true,
                _ => {}
            }
            return Ok(Some(rec));
        }
    }
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = Result<Record, ReadError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::trace::Format;

    fn read_all(text: &str) -> Result<Vec<Record>, ReadError> {
        JsonlReader::new(text.as_bytes()).collect()
    }

    fn text_of(records: &[Record]) -> String {
        String::from_utf8(write_all(Format::Jsonl, records)).unwrap()
    }

    #[test]
    fn empty_file_is_an_error() {
        assert!(matches!(read_all(""), Err(ReadError::Empty)));
        assert!(matches!(read_all("\n\n"), Err(ReadError::Empty)));
    }

    #[test]
    fn missing_header_names_the_line() {
        let e = read_all("{\"type\":\"lost\",\"ts\":1,\"cpu\":0,\"count\":1}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: not a schedtrace trace (the first line must be a header record)"
        );
        assert!(matches!(
            read_all("\u{1}\u{2}garbage"),
            Err(ReadError::NoHeader { line: 1 })
        ));
    }

    #[test]
    fn newer_version_is_refused() {
        let mut h = header(2, 1);
        h.version = TRACE_SCHEMA_VERSION + 1;
        let text = text_of(&[Record::Header(h)]);
        assert!(matches!(
            read_all(&text),
            Err(ReadError::NewerVersion { line: 1, .. })
        ));
    }

    #[test]
    fn truncated_line_reports_its_number() {
        let mut text = text_of(&[
            Record::Header(header(2, 1)),
            Record::Event(switch(5, 0, task(1), 1, task(0))),
        ]);
        text.truncate(text.len() - 20);
        match read_all(&text) {
            Err(ReadError::Json { line: 2, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn huge_line_is_refused() {
        let mut text = text_of(&[Record::Header(header(2, 1))]);
        text.push_str(&"x".repeat(MAX_LINE_BYTES + 10));
        assert!(matches!(
            read_all(&text),
            Err(ReadError::LineTooLong { line: 2 })
        ));
    }
}
