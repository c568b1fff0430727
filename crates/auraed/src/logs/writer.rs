//! Appending a workload's output to its log: CRI records in numbered
//! segments (`0000000001.log`, `0000000002.log`, ...), a new segment once
//! the current one reaches its size cap, the oldest deleted beyond the
//! segment count (kubelet's `containerLogMaxSize` x `containerLogMaxFiles`).
//!
//! Every read from a pipe is written at once, its complete lines as `F`
//! records and an unfinished tail as a `P` record, so followers see output
//! as soon as it is produced and nothing waits in memory for a newline.
//! Writing never waits for a reader: readers follow the files.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::cri::{append_record, format_timestamp, now_nanos, Stream};
use super::end::EndMarker;

/// Longest record content; longer lines are written as several `P` records
/// (containerd's CRI plugin uses the same 16 KiB).
pub const MAX_RECORD: usize = 16 * 1024;

/// Size cap and count of segments kept per workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    pub max_segment_bytes: u64,
    pub max_segments: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_segment_bytes: 10 << 20,
            max_segments: 5,
        }
    }
}

/// The file name of segment `n`.
pub fn segment_name(n: u64) -> String {
    format!("{n:010}.log")
}

/// The segment number of a file name, if it is a segment.
pub fn segment_number(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment numbers present in `dir`, ascending.
pub fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(n) = entry.file_name().to_str().and_then(segment_number) {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// The writer of one workload's log.
pub struct LogWriter {
    dir: PathBuf,
    limits: LogLimits,
    /// Current segment number; its file is opened on the first write.
    segment: u64,
    file: Option<File>,
    size: u64,
    /// Oldest segment that may still exist (deletion goes from here up).
    oldest: u64,
    buf: Vec<u8>,
    ts: Vec<u8>,
}

impl LogWriter {
    /// A writer appending to `dir` (created if needed), after any segment already there.
    pub fn open(dir: &Path, limits: LogLimits) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let existing = segments(dir)?;
        let segment = existing.last().copied().unwrap_or(1);
        let size = match std::fs::metadata(dir.join(segment_name(segment))) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        let oldest = existing.first().copied().unwrap_or(1);
        Ok(Self::at(dir, limits, segment, size, oldest))
    }

    /// A writer of a directory just made empty (a new workload's log): no
    /// lookups on disk.
    pub fn fresh(dir: &Path, limits: LogLimits) -> Self {
        Self::at(dir, limits, 1, 0, 1)
    }

    fn at(dir: &Path, limits: LogLimits, segment: u64, size: u64, oldest: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            limits: LogLimits {
                max_segment_bytes: limits.max_segment_bytes.max(1),
                max_segments: limits.max_segments.max(1),
            },
            segment,
            file: None,
            size,
            oldest,
            buf: Vec::new(),
            ts: Vec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of the log on disk, when this writer knows them without a
    /// look at the directory (it wrote every segment there is).
    pub fn kept_bytes(&self) -> Option<u64> {
        (self.oldest == self.segment).then_some(self.size)
    }

    /// Appends `data` read from `stream`: complete lines as `F` records, an
    /// unfinished tail as a `P` record.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.ts.clear();
        format_timestamp(now_nanos(), &mut self.ts);
        self.buf.clear();
        let mut rest = data;
        while !rest.is_empty() {
            let (line, ended, next) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], true, &rest[i + 1..]),
                None => (rest, false, &rest[rest.len()..]),
            };
            let mut pieces = line.chunks(MAX_RECORD).peekable();
            if line.is_empty() {
                append_record(&mut self.buf, &self.ts, stream, !ended, b"");
            }
            while let Some(piece) = pieces.next() {
                let last = pieces.peek().is_none();
                append_record(&mut self.buf, &self.ts, stream, !(last && ended), piece);
            }
            rest = next;
        }
        let buf = std::mem::take(&mut self.buf);
        let result = self.append(&buf);
        self.buf = buf;
        result
    }

    /// Writes a whole line of the daemon's own (e.g. a notice that output
    /// was cut) so that readers of the log see it in place.
    pub fn note(&mut self, stream: Stream, text: &str) -> io::Result<()> {
        let mut line = text.replace('\n', " ");
        line.push('\n');
        self.write(stream, line.as_bytes())
    }

    /// Marks the log complete: followers end once they have read it all.
    pub fn finish(&mut self, end: &EndMarker) -> io::Result<()> {
        if let Some(f) = self.file.as_mut() {
            f.flush()?;
        }
        end.write(&self.dir)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.limits.max_segment_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            let path = self.dir.join(segment_name(self.segment));
            self.file = Some(OpenOptions::new().create(true).append(true).open(path)?);
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(bytes)?;
        }
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Starts the next segment and deletes those beyond the count.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        self.segment += 1;
        self.size = 0;
        let keep_from = (self.segment + 1).saturating_sub(self.limits.max_segments as u64);
        while self.oldest < keep_from {
            match std::fs::remove_file(self.dir.join(segment_name(self.oldest))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            self.oldest += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::cri::parse_record;

    fn records(dir: &Path) -> Vec<(Stream, bool, Vec<u8>)> {
        let mut out = Vec::new();
        for n in segments(dir).expect("segments") {
            let text = std::fs::read(dir.join(segment_name(n))).expect("read");
            for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let r = parse_record(line).expect("record");
                out.push((r.stream, r.partial, r.content.to_vec()));
            }
        }
        out
    }

    #[test]
    fn lines_tails_and_long_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = LogWriter::open(dir.path(), LogLimits::default()).expect("open");
        w.write(Stream::Stdout, b"one\n\ntw").expect("write");
        w.write(Stream::Stderr, b"err\n").expect("write");
        w.write(Stream::Stdout, b"o\n").expect("write");
        let long = vec![b'x'; MAX_RECORD + 3];
        w.write(Stream::Stdout, &long).expect("write");
        let r = records(dir.path());
        let want: Vec<(Stream, bool, Vec<u8>)> = vec![
            (Stream::Stdout, false, b"one".to_vec()),
            (Stream::Stdout, false, b"".to_vec()),
            (Stream::Stdout, true, b"tw".to_vec()),
            (Stream::Stderr, false, b"err".to_vec()),
            (Stream::Stdout, false, b"o".to_vec()),
            (Stream::Stdout, true, vec![b'x'; MAX_RECORD]),
            (Stream::Stdout, true, b"xxx".to_vec()),
        ];
        assert_eq!(r, want);
    }

    #[test]
    fn rotates_and_keeps_the_newest_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = LogLimits {
            max_segment_bytes: 100,
            max_segments: 3,
        };
        let mut w = LogWriter::open(dir.path(), limits).expect("open");
        for i in 0..40 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .expect("write");
        }
        let segs = segments(dir.path()).expect("segments");
        assert_eq!(segs.len(), 3, "{segs:?}");
        let last = records(dir.path()).pop().expect("a record");
        assert_eq!(last.2, b"line 39");
        // A new writer on the same directory appends after the last segment.
        drop(w);
        let mut w = LogWriter::open(dir.path(), limits).expect("reopen");
        w.write(Stream::Stdout, b"again\n").expect("write");
        assert_eq!(records(dir.path()).pop().expect("a record").2, b"again");
        assert!(segments(dir.path()).expect("segments").len() <= 3);
    }
}
