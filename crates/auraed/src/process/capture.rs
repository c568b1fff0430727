//! Reading a child's pipe: every byte goes to the output channel (lines for
//! subscribers) and, up to a bound, into the bytes returned to the caller.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::observe::output::{ChannelBuffer, LineSplitter};
use crate::observe::Channel;

/// Output kept for the caller, bounded; `truncated` says bytes were dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub truncated: bool,
    /// Every byte read, kept or not.
    pub total: u64,
}

impl Captured {
    fn keep(&mut self, data: &[u8], limit: usize) {
        self.total += data.len() as u64;
        let room = limit.saturating_sub(self.bytes.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The text for a response: lossy UTF-8, with a marker when cut.
    pub fn to_text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.truncated {
            s.push_str(&format!(
                "\n[aurae: output truncated: {} of {} bytes kept; the full output is on GetSubProcessStream]\n",
                self.bytes.len(),
                self.total
            ));
        }
        s
    }
}

/// Reads `pipe` to its end; returns what was kept (nothing when `limit` is 0).
pub(crate) async fn pump<R: AsyncRead + Unpin>(
    mut pipe: R,
    output: Arc<crate::observe::output::ProcessOutput>,
    channel: Channel,
    limit: usize,
) -> Captured {
    let sink: &ChannelBuffer = output.channel(channel);
    let mut split = LineSplitter::new();
    let mut kept = Captured::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                let data = &buf[..n];
                split.feed(data, sink);
                kept.keep(data, limit);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(channel = channel.as_str(), error = %e, "reading process output failed");
                break;
            }
        }
    }
    split.finish(sink);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_with_marker() {
        let mut c = Captured::default();
        c.keep(b"hello ", 8);
        c.keep(b"world", 8);
        assert_eq!(c.bytes, b"hello wo");
        assert!(c.truncated);
        assert_eq!(c.total, 11);
        assert!(c
            .to_text()
            .starts_with("hello wo\n[aurae: output truncated: 8 of 11 bytes kept"));
    }

    #[tokio::test]
    async fn pump_feeds_lines_and_keeps_bytes() {
        let out = Arc::new(crate::observe::output::ProcessOutput::default());
        let kept = pump(&b"a\nb"[..], out.clone(), Channel::Stdout, 100).await;
        assert_eq!(kept.bytes, b"a\nb");
        let sub = out.stdout.subscribe();
        let lines: Vec<_> = sub.backlog.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(lines, ["a", "b"]);
    }
}
