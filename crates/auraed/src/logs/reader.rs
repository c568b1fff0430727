//! Reading a workload's log from any position: records in segment order,
//! `P` pieces joined back into lines, the move to the next segment at the
//! end of one, and a notice when a slow reader fell behind rotation.
//!
//! A reader holds an open file and a few bytes of an unfinished record;
//! every call reads a bounded amount, so its memory does not depend on how
//! much output there is or how far behind it is.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::cri::{parse_record, Stream};
use super::writer::{segment_name, segments};

/// Longest line handed out whole; longer ones come in pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;

/// One line of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Unix time in nanoseconds when the line (its first piece) was written.
    pub timestamp: i64,
    pub stream: Stream,
    pub bytes: Vec<u8>,
    /// The line ended with a newline (not a piece of a longer line, nor
    /// the unterminated end of the output).
    pub newline: bool,
}

/// What a reader hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Line(Line),
    /// Segments deleted by rotation before this reader reached them.
    Lost {
        segments: u64,
    },
}

/// What one `read` call produced.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Event>,
    /// The reader is at the end of what is written so far.
    pub at_end: bool,
}

/// A position in one workload's log.
pub struct LogCursor {
    dir: PathBuf,
    filter: Option<Stream>,
    segment: u64,
    file: Option<File>,
    /// Bytes of a record whose newline has not been read yet.
    carry: Vec<u8>,
    /// Per stream, a line being joined from `P` records.
    joining: [Option<Line>; 2],
    /// The next segment exists: one more read of this one, then move on.
    next_seen: bool,
}

impl LogCursor {
    /// A cursor at the start of what is retained.
    pub fn from_start(dir: &Path, filter: Option<Stream>) -> io::Result<Self> {
        let first = segments(dir)?.first().copied().unwrap_or(1);
        Ok(Self::at(dir, filter, first, None))
    }

    /// A cursor at the current end: it sees only what is written from now on.
    pub fn from_end(dir: &Path, filter: Option<Stream>) -> io::Result<Self> {
        let last = segments(dir)?.last().copied().unwrap_or(1);
        let file = match File::open(dir.join(segment_name(last))) {
            Ok(mut f) => {
                f.seek(SeekFrom::End(0))?;
                Some(f)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(Self::at(dir, filter, last, file))
    }

    fn at(dir: &Path, filter: Option<Stream>, segment: u64, file: Option<File>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            filter,
            segment,
            file,
            carry: Vec::new(),
            joining: [None, None],
            next_seen: false,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads up to about `budget` bytes of the log.
    pub fn read(&mut self, budget: usize) -> io::Result<Batch> {
        let mut batch = Batch::default();
        let mut chunk = vec![0u8; budget.clamp(4096, 1 << 20)];
        let mut read_total = 0;
        while read_total < budget {
            if self.file.is_none() && !self.open_current(&mut batch)? {
                batch.at_end = true;
                break;
            }
            let Some(file) = self.file.as_mut() else {
                batch.at_end = true;
                break;
            };
            let n = match file.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                if !self.next_segment(&mut batch)? {
                    batch.at_end = true;
                    break;
                }
                continue;
            }
            read_total += n;
            self.parse(&chunk[..n], &mut batch.events);
        }
        Ok(batch)
    }

    /// Hands out lines still being joined (the log is complete: no piece follows).
    pub fn finish(&mut self) -> Vec<Event> {
        self.joining
            .iter_mut()
            .filter_map(Option::take)
            .map(Event::Line)
            .collect()
    }

    /// Opens the current segment; false when it does not exist yet.
    fn open_current(&mut self, batch: &mut Batch) -> io::Result<bool> {
        match File::open(self.dir.join(segment_name(self.segment))) {
            Ok(f) => {
                self.file = Some(f);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Rotated away before we opened it: go on with the oldest kept.
                let later = self.later_segment()?;
                match later {
                    Some(n) => {
                        batch.events.push(Event::Lost {
                            segments: n - self.segment,
                        });
                        self.segment = n;
                        self.open_current(batch)
                    }
                    None => Ok(false),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// At the end of the current segment: moves to the next one if the
    /// writer has started it. False when this is the live end.
    fn next_segment(&mut self, batch: &mut Batch) -> io::Result<bool> {
        let next = self.dir.join(segment_name(self.segment + 1));
        if next.exists() {
            // The writer starts the next segment after its last write to
            // this one, which may have landed after our last read: read this
            // one to its end once more, then move on.
            if !self.next_seen {
                self.next_seen = true;
                return Ok(true);
            }
            self.segment += 1;
            self.file = None;
            self.carry.clear();
            self.next_seen = false;
            return Ok(true);
        }
        if self.dir.join(segment_name(self.segment)).exists() {
            return Ok(false);
        }
        // Our segment and those after it were deleted while we read it.
        match self.later_segment()? {
            Some(n) => {
                if n > self.segment + 1 {
                    batch.events.push(Event::Lost {
                        segments: n - self.segment - 1,
                    });
                }
                self.segment = n;
                self.file = None;
                self.carry.clear();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn later_segment(&self) -> io::Result<Option<u64>> {
        match segments(&self.dir) {
            Ok(s) => Ok(s.into_iter().find(|n| *n > self.segment)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn parse(&mut self, data: &[u8], out: &mut Vec<Event>) {
        let mut rest = data;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            if self.carry.is_empty() {
                self.record(&rest[..i], out);
            } else {
                let mut line = std::mem::take(&mut self.carry);
                line.extend_from_slice(&rest[..i]);
                self.record(&line, out);
            }
            rest = &rest[i + 1..];
        }
        self.carry.extend_from_slice(rest);
    }

    fn record(&mut self, raw: &[u8], out: &mut Vec<Event>) {
        // A malformed line (a file edited by hand) is skipped, not fatal.
        let Some(r) = parse_record(raw) else { return };
        if self.filter.is_some_and(|f| f != r.stream) {
            return;
        }
        let slot = r.stream.slot(&mut self.joining);
        let line = slot.get_or_insert_with(|| Line {
            timestamp: r.timestamp,
            stream: r.stream,
            bytes: Vec::new(),
            newline: false,
        });
        line.bytes.extend_from_slice(r.content);
        while line.bytes.len() > MAX_LINE {
            let rest = line.bytes.split_off(MAX_LINE);
            let piece = std::mem::replace(&mut line.bytes, rest);
            out.push(Event::Line(Line {
                timestamp: line.timestamp,
                stream: line.stream,
                bytes: piece,
                newline: false,
            }));
        }
        line.newline = !r.partial;
        if !r.partial || line.bytes.len() == MAX_LINE {
            if let Some(done) = slot.take() {
                out.push(Event::Line(done));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::writer::{LogLimits, LogWriter};

    fn lines(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Line(l) => format!(
                    "{}:{}",
                    l.stream.as_str(),
                    String::from_utf8_lossy(&l.bytes)
                ),
                Event::Lost { segments } => format!("lost {segments}"),
            })
            .collect()
    }

    fn read_all(c: &mut LogCursor) -> Vec<Event> {
        let mut all = Vec::new();
        loop {
            let b = c.read(64).expect("read");
            all.extend(b.events);
            if b.at_end {
                return all;
            }
        }
    }

    #[test]
    fn joins_pieces_and_filters_streams() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = LogWriter::open(dir.path(), LogLimits::default()).expect("open");
        w.write(Stream::Stdout, b"he").expect("write");
        w.write(Stream::Stderr, b"oops\n").expect("write");
        w.write(Stream::Stdout, b"llo\nworld").expect("write");
        let mut all = LogCursor::from_start(dir.path(), None).expect("cursor");
        let mut got = read_all(&mut all);
        assert_eq!(lines(&got), ["stderr:oops", "stdout:hello"]);
        got = all.finish();
        assert_eq!(lines(&got), ["stdout:world"]);
        let mut out = LogCursor::from_start(dir.path(), Some(Stream::Stdout)).expect("cursor");
        assert_eq!(lines(&read_all(&mut out)), ["stdout:hello"]);
    }

    #[test]
    fn follows_segments_and_reports_what_rotation_took() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = LogLimits {
            max_segment_bytes: 60,
            max_segments: 2,
        };
        let mut w = LogWriter::open(dir.path(), limits).expect("open");
        let mut early = LogCursor::from_start(dir.path(), None).expect("cursor");
        w.write(Stream::Stdout, b"0\n").expect("write");
        assert_eq!(lines(&read_all(&mut early)), ["stdout:0"]);
        let mut live = LogCursor::from_end(dir.path(), None).expect("cursor");
        for i in 1..4 {
            w.write(Stream::Stdout, format!("{i}\n").as_bytes())
                .expect("write");
            assert_eq!(lines(&read_all(&mut live)), [format!("stdout:{i}")]);
        }
        for i in 4..10 {
            w.write(Stream::Stdout, format!("{i}\n").as_bytes())
                .expect("write");
        }
        // `early` fell behind rotation: it is told how much it missed, then goes on.
        let got = lines(&read_all(&mut early));
        assert!(got[0].starts_with("lost "), "{got:?}");
        assert_eq!(got.last().map(String::as_str), Some("stdout:9"));
        let fresh = lines(&read_all(
            &mut LogCursor::from_start(dir.path(), None).expect("cursor"),
        ));
        assert_eq!(fresh.last().map(String::as_str), Some("stdout:9"));
        assert!(!fresh.iter().any(|l| l.starts_with("lost ")), "{fresh:?}");
    }

    #[test]
    fn cuts_overlong_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = LogWriter::open(dir.path(), LogLimits::default()).expect("open");
        w.write(Stream::Stdout, &vec![b'y'; MAX_LINE * 2 + 5])
            .expect("write");
        w.write(Stream::Stdout, b"\n").expect("write");
        let mut c = LogCursor::from_start(dir.path(), None).expect("cursor");
        let mut got = read_all(&mut c);
        got.extend(c.finish());
        let lens: Vec<usize> = got
            .iter()
            .map(|e| match e {
                Event::Line(l) => l.bytes.len(),
                Event::Lost { .. } => 0,
            })
            .collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 5]);
    }
}
