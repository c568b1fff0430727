//! A complete log read back as text: the stdout and stderr a
//! RunExecutable reply carries, bounded by the size of the reply itself
//! (after invalid UTF-8 became U+FFFD, which takes three bytes).

use std::io;
use std::path::Path;

use super::cri::Stream;
use super::reader::{Event, LogCursor};

/// The output of one workload as text, with a marker where it was cut.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OutputText {
    pub stdout: String,
    pub stderr: String,
}

#[derive(Default)]
struct Part {
    text: String,
    /// Bytes of output seen (kept or not).
    seen: u64,
    cut: bool,
}

impl Part {
    fn push(&mut self, bytes: &[u8], newline: bool, limit: usize) {
        self.seen += bytes.len() as u64 + u64::from(newline);
        if self.cut {
            return;
        }
        let mut piece = String::from_utf8_lossy(bytes).into_owned();
        if newline {
            piece.push('\n');
        }
        let room = limit.saturating_sub(self.text.len());
        if piece.len() <= room {
            self.text.push_str(&piece);
            return;
        }
        let mut end = room;
        while !piece.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(&piece[..end]);
        self.cut = true;
    }

    fn finish(mut self, lost: u64) -> String {
        if lost > 0 {
            self.text.insert_str(
                0,
                &format!("[aurae: the first {lost} log segment(s) were rotated out before this reply was built]\n"),
            );
        }
        if self.cut {
            self.text.push_str(&format!(
                "\n[aurae: output truncated: {} bytes of {} kept; the full output is on GetSubProcessStream]\n",
                self.text.len(),
                self.seen
            ));
        }
        self.text
    }
}

/// Reads the whole log in `dir`, keeping at most `limit` bytes of text per stream.
pub fn read_output(dir: &Path, limit: usize) -> io::Result<OutputText> {
    let mut cursor = LogCursor::from_start(dir, None)?;
    let (mut out, mut err) = (Part::default(), Part::default());
    let mut lost = 0;
    let mut take = |events: Vec<Event>, lost: &mut u64| {
        for ev in events {
            match ev {
                Event::Line(l) => match l.stream {
                    Stream::Stdout => out.push(&l.bytes, l.newline, limit),
                    Stream::Stderr => err.push(&l.bytes, l.newline, limit),
                },
                Event::Lost { segments } => *lost += segments,
            }
        }
    };
    loop {
        let batch = cursor.read(256 * 1024)?;
        take(batch.events, &mut lost);
        if batch.at_end {
            break;
        }
    }
    take(cursor.finish(), &mut lost);
    Ok(OutputText {
        stdout: out.finish(lost),
        stderr: err.finish(lost),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::writer::{LogLimits, LogWriter};

    #[test]
    fn exact_text_back_and_bounded_by_reply_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = LogWriter::open(dir.path(), LogLimits::default()).expect("open");
        w.write(Stream::Stdout, b"a\n\nb").expect("write");
        w.write(Stream::Stderr, b"e\n").expect("write");
        let t = read_output(dir.path(), 100).expect("read");
        assert_eq!(t.stdout, "a\n\nb");
        assert_eq!(t.stderr, "e\n");

        let bin = tempfile::tempdir().expect("tempdir");
        let mut w = LogWriter::open(bin.path(), LogLimits::default()).expect("open");
        w.write(Stream::Stdout, &[0xff; 100]).expect("write");
        let t = read_output(bin.path(), 30).expect("read");
        let kept = t.stdout.split('\n').next().expect("text");
        assert_eq!(kept.len(), 30, "30 bytes of reply: ten U+FFFD");
        assert!(
            t.stdout.contains("output truncated: 30 bytes of 100 kept"),
            "{}",
            t.stdout
        );
    }
}
