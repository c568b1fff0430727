//! Following a log as an async stream: read what is there, then wait for
//! the watcher to say more was written, until the log is complete (its
//! `end` marker exists and everything before it has been read).
//!
//! Each read is a bounded blocking call on the blocking pool, and the
//! stream reads only when it is polled, so a subscriber that does not read
//! holds one small batch, never a backlog.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;

use super::end::EndMarker;
use super::reader::{Event, LogCursor};
use super::watch::{DirWatch, Watcher};

/// Bytes of log read per step: one batch is what a stalled subscriber holds.
const READ_BUDGET: usize = 4 * 1024;
/// A wake-up even without an inotify event, so a lost event only delays.
const POLL_FALLBACK: Duration = Duration::from_secs(2);

/// When a follower stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// At the end of a complete log (a workload's output).
    Complete,
    /// Never: the daemon's own log goes on as long as the daemon.
    Forever,
    /// At the end of what is written now.
    Now,
}

struct Follower {
    cursor: Option<LogCursor>,
    dir: PathBuf,
    watch: Option<DirWatch>,
    queue: VecDeque<Event>,
    until: Until,
    done: bool,
}

/// The events of the log read by `cursor`, following it as `until` says.
pub fn follow(
    watcher: &Arc<Watcher>,
    cursor: LogCursor,
    until: Until,
) -> impl Stream<Item = std::io::Result<Event>> + Send + 'static {
    let dir = cursor.dir().to_path_buf();
    let watch = match until {
        Until::Now => None,
        // Without a watch the fallback poll still gets everything, later.
        _ => watcher.follow(&dir).ok(),
    };
    let state = Follower {
        cursor: Some(cursor),
        dir,
        watch,
        queue: VecDeque::new(),
        until,
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.queue.pop_front() {
                return Some((Ok(ev), st));
            }
            if st.done {
                return None;
            }
            if let Some(w) = st.watch.as_mut() {
                w.mark_seen();
            }
            let mut cursor = st.cursor.take()?;
            let dir = st.dir.clone();
            let until = st.until;
            let step = tokio::task::spawn_blocking(move || {
                // Checked before reading: an end seen now means the read below
                // reaches the true end of the log.
                let complete =
                    until == Until::Complete && (EndMarker::read(&dir).is_some() || !dir.exists());
                let batch = cursor.read(READ_BUDGET);
                (cursor, complete, batch)
            })
            .await;
            let (mut cursor, complete, batch) = match step {
                Ok(s) => s,
                Err(e) => return Some((Err(std::io::Error::other(e)), st)),
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            };
            st.queue.extend(batch.events);
            if batch.at_end {
                match st.until {
                    Until::Complete if complete => {
                        st.queue.extend(cursor.finish());
                        st.done = true;
                    }
                    Until::Now => st.done = true,
                    _ => {}
                }
            }
            st.cursor = Some(cursor);
            if batch.at_end && !st.done && st.queue.is_empty() {
                match st.watch.as_mut() {
                    Some(w) => {
                        let _ = tokio::time::timeout(POLL_FALLBACK, w.changed()).await;
                    }
                    None => tokio::time::sleep(POLL_FALLBACK / 4).await,
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::cri::Stream as Out;
    use crate::logs::writer::{LogLimits, LogWriter};
    use futures::StreamExt;

    fn text(ev: &Event) -> String {
        match ev {
            Event::Line(l) => String::from_utf8_lossy(&l.bytes).into_owned(),
            Event::Lost { segments } => format!("lost {segments}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_follower_gets_every_line_then_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let watcher = Watcher::start().expect("watcher");
        let mut w = LogWriter::open(
            dir.path(),
            LogLimits {
                max_segment_bytes: 4096,
                max_segments: 1000,
            },
        )
        .expect("open");
        let cursor = LogCursor::from_start(dir.path(), None).expect("cursor");
        let reader = tokio::spawn(
            follow(&watcher, cursor, Until::Complete)
                .map(|e| text(&e.expect("event")))
                .collect::<Vec<_>>(),
        );
        for i in 0..2000 {
            w.write(Out::Stdout, format!("{i}\n").as_bytes())
                .expect("write");
            if i % 500 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        w.write(Out::Stdout, b"tail").expect("write");
        w.finish(&EndMarker {
            ended_at: 0,
            code: Some(0),
            signal: None,
            message: "exited with code 0".into(),
        })
        .expect("finish");
        let got = tokio::time::timeout(Duration::from_secs(20), reader)
            .await
            .expect("ends")
            .expect("join");
        let mut want: Vec<String> = (0..2000).map(|i| i.to_string()).collect();
        want.push("tail".into());
        assert_eq!(got, want);
        assert_eq!(watcher.watched(), 0, "the watch went with the follower");
    }

    #[tokio::test]
    async fn until_now_stops_at_the_current_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let watcher = Watcher::start().expect("watcher");
        let mut w = LogWriter::open(dir.path(), LogLimits::default()).expect("open");
        w.write(Out::Stderr, b"a\nb\n").expect("write");
        let cursor = LogCursor::from_start(dir.path(), None).expect("cursor");
        let got: Vec<String> = follow(&watcher, cursor, Until::Now)
            .map(|e| text(&e.expect("event")))
            .collect()
            .await;
        assert_eq!(got, ["a", "b"]);
    }
}
