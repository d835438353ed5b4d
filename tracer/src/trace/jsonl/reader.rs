//! Reading a JSON Lines trace back, line by line: the header first (its
//! schema version checked before anything else), then records in order,
//! with line numbers in every error.

use std::io::{self, BufRead};

use super::scanner::fast_event;
use super::{MAX_LINE_BYTES, SCHEMA_NAME};
use crate::trace::validate::{Invalid, Limits};
use crate::trace::{Record, TRACE_SCHEMA_VERSION, json_message};

/// Why a trace file could not be read. Line numbers start at 1. No variant
/// has a `source`: each message says everything once.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("reading the trace: {0}")]
    Io(io::Error),
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
    /// A line that is not a record: `column` in it, serde's message.
    #[error("line {line}, column {column}: {message}")]
    Json {
        line: u64,
        column: usize,
        message: String,
    },
    #[error("line {line}: {what}")]
    Invalid { line: u64, what: Invalid },
    #[error("line {line}: a second header record")]
    SecondHeader { line: u64 },
    #[error("line {line}: record after the end record")]
    AfterEnd { line: u64 },
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl ReadError {
    fn json(line: u64, e: &serde_json::Error) -> Self {
        let (message, column) = json_message(e);
        ReadError::Json {
            line,
            column,
            message,
        }
    }
}

/// Reads records back, checking the header, version, order and every
/// value's range ([`Limits`]). A last line cut short (no newline, not a
/// record: schedtrace was killed while writing it) ends the trace there,
/// like a trace without its end record.
pub(crate) struct JsonlReader<R: BufRead> {
    input: R,
    line: u64,
    buf: Vec<u8>,
    seen_header: bool,
    seen_end: bool,
    limits: Option<Limits>,
    cut: bool,
}

impl<R: BufRead> JsonlReader<R> {
    pub(crate) fn new(input: R) -> Self {
        JsonlReader {
            input,
            line: 0,
            buf: Vec::with_capacity(512),
            seen_header: false,
            seen_end: false,
            limits: None,
            cut: false,
        }
    }

    #[cfg(test)]
    /// Did the input end in the middle of its last line?
    pub(crate) fn cut(&self) -> bool {
        self.cut
    }

    /// The next line into `buf`, at most `MAX_LINE_BYTES` and its newline
    /// (one byte more: too long). `false` at the end of the input.
    fn read_line(&mut self) -> Result<bool, ReadError> {
        self.buf.clear();
        loop {
            let avail = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            let room = (MAX_LINE_BYTES + 1).saturating_sub(self.buf.len());
            let window = &avail[..avail.len().min(room)];
            if let Some(p) = memchr::memchr(b'\n', window) {
                self.buf.extend_from_slice(&window[..=p]);
                self.input.consume(p + 1);
                break;
            }
            let n = window.len();
            self.buf.extend_from_slice(window);
            self.input.consume(n);
            if n == 0 {
                // The end of the input, or a line too long.
                break;
            }
        }
        if self.buf.is_empty() {
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
        if self.cut {
            return Ok(None);
        }
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
            let last_unfinished = self.buf.last() != Some(&b'\n');
            let rec = match fast_event(text) {
                Some(r) => r,
                None => match super::record_from_json(text) {
                    Ok(r) => r,
                    Err(_) if last_unfinished && self.seen_header && !self.seen_end => {
                        self.cut = true;
                        return Ok(None);
                    }
                    Err(e) => return Err(ReadError::json(line, &e)),
                },
            };
            if self.seen_end {
                return Err(ReadError::AfterEnd { line });
            }
            let invalid = |what| ReadError::Invalid { line, what };
            match &rec {
                Record::Header(_) if self.seen_header => {
                    return Err(ReadError::SecondHeader { line });
                }
                Record::Header(h) => {
                    self.limits = Some(Limits::from_header(h).map_err(invalid)?);
                    self.seen_header = true;
                }
                r => {
                    if let Some(l) = &self.limits {
                        l.check(r).map_err(invalid)?;
                    }
                    if let Record::End(_) = r {
                        self.seen_end = true;
                    }
                }
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
        let text = text_of(&[Record::Header(Box::new(h))]);
        assert!(matches!(
            read_all(&text),
            Err(ReadError::NewerVersion { line: 1, .. })
        ));
    }

    #[test]
    fn a_cut_last_line_ends_the_trace_a_broken_one_is_an_error() {
        let recs = [
            Record::Header(Box::new(header(2, 1))),
            Record::Event(switch(5, 0, task(1), 1, task(0))),
            Record::Event(switch(6, 0, task(1), 1, task(0))),
        ];
        let whole = text_of(&recs);
        // Cut inside the last line: read up to the line before.
        let cut = &whole[..whole.len() - 20];
        let mut r = JsonlReader::new(cut.as_bytes());
        let got: Vec<Record> = r.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(got, recs[..2]);
        assert!(r.cut());
        // The same damage in the middle of the file is an error, once.
        let lines: Vec<&str> = whole.lines().collect();
        let broken = format!("{}\n{}\n{}\n", lines[0], &lines[1][..40], lines[2]);
        let e = read_all(&broken).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2, column 40: EOF while parsing an object",
            "no position of serde's own"
        );
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn values_out_of_range_name_the_line() {
        let recs = [
            Record::Header(Box::new(header(2, 1))),
            Record::Event(switch(5, 7, task(1), 1, task(0))),
        ];
        let e = read_all(&text_of(&recs)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: cpu 7 is out of range: the trace has CPUs 0 to 1"
        );
    }

    #[test]
    fn huge_line_is_refused() {
        let mut text = text_of(&[Record::Header(Box::new(header(2, 1)))]);
        text.push_str(&"x".repeat(MAX_LINE_BYTES + 10));
        assert!(matches!(
            read_all(&text),
            Err(ReadError::LineTooLong { line: 2 })
        ));
    }
}
