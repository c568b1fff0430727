//! The streams behind `observe.Observe`: a workload's output by pid and
//! the daemon's log, read from the log store as entries for the API edge.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use thiserror::Error;

use super::daemon_log::split_record;
use crate::logs::{follow, Event, LogCursor, LogStore, Stream as Out, Until};

/// One line for a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// `stdout`/`stderr` for output, `LEVEL target` for the daemon log.
    pub channel: String,
    pub line: String,
    /// Unix time in nanoseconds.
    pub timestamp: i64,
}

#[derive(Debug, Error)]
pub enum ObserveError {
    #[error("process_id {0} is not a valid pid")]
    BadPid(i64),
    #[error("no process with pid {0} was started by this daemon (or its log is no longer kept)")]
    UnknownPid(i32),
    #[error("reading the log: {0}")]
    Io(#[from] std::io::Error),
}

/// Longest daemon-log history a subscriber may ask for.
pub const MAX_TAIL: usize = 10_000;

/// Reads the log store for subscribers.
#[derive(Clone)]
pub struct Observer {
    logs: Arc<LogStore>,
}

pub type EntryStream = std::pin::Pin<Box<dyn Stream<Item = Result<LogEntry, ObserveError>> + Send>>;

impl Observer {
    pub fn new(logs: Arc<LogStore>) -> Self {
        Self { logs }
    }

    /// `stream` of the workload that had `pid`: from the start of what is
    /// retained, then live until the workload has ended and its log is
    /// read (or only what is there now, with `no_follow`).
    pub fn process_output(
        &self,
        pid: i64,
        stream: Out,
        no_follow: bool,
    ) -> Result<EntryStream, ObserveError> {
        let pid = i32::try_from(pid).map_err(|_| ObserveError::BadPid(pid))?;
        if pid <= 0 {
            return Err(ObserveError::BadPid(pid.into()));
        }
        let dir = self.logs.by_pid(pid).ok_or(ObserveError::UnknownPid(pid))?;
        let cursor = LogCursor::from_start(&dir, Some(stream))?;
        let until = if no_follow {
            Until::Now
        } else {
            Until::Complete
        };
        let name = stream.as_str();
        Ok(Box::pin(follow(self.logs.watcher()?, cursor, until).map(
            move |ev| {
                ev.map(|ev| {
                    entry(ev, |bytes| {
                        (
                            name.to_string(),
                            String::from_utf8_lossy(bytes).into_owned(),
                        )
                    })
                })
                .map_err(ObserveError::from)
            },
        )))
    }

    /// The daemon's log: the last `tail` records, then (unless `no_follow`)
    /// every record from now on.
    pub async fn daemon_log(
        &self,
        tail: usize,
        no_follow: bool,
    ) -> Result<EntryStream, ObserveError> {
        let dir: PathBuf = self.logs.daemon_dir();
        let tail = tail.min(MAX_TAIL);
        let (cursor, history) = tokio::task::spawn_blocking(move || history(dir, tail))
            .await
            .map_err(|e| ObserveError::Io(std::io::Error::other(e)))??;
        let until = if no_follow {
            Until::Now
        } else {
            Until::Forever
        };
        let live = follow(self.logs.watcher()?, cursor, until);
        let all = futures::stream::iter(history.into_iter().map(Ok)).chain(live);
        Ok(Box::pin(all.map(|ev| {
            ev.map(|ev| entry(ev, |bytes| split_record(&String::from_utf8_lossy(bytes))))
                .map_err(ObserveError::from)
        })))
    }
}

/// A cursor at the end of the daemon log and its last `tail` events.
fn history(dir: PathBuf, tail: usize) -> std::io::Result<(LogCursor, VecDeque<Event>)> {
    std::fs::create_dir_all(&dir)?;
    if tail == 0 {
        return Ok((LogCursor::from_end(&dir, None)?, VecDeque::new()));
    }
    let mut cursor = LogCursor::from_start(&dir, None)?;
    let mut last = VecDeque::with_capacity(tail);
    loop {
        let batch = cursor.read(256 * 1024)?;
        for ev in batch.events {
            if last.len() == tail {
                last.pop_front();
            }
            last.push_back(ev);
        }
        if batch.at_end {
            return Ok((cursor, last));
        }
    }
}

fn entry(ev: Event, split: impl Fn(&[u8]) -> (String, String)) -> LogEntry {
    match ev {
        Event::Line(l) => {
            let (channel, line) = split(&l.bytes);
            LogEntry {
                channel,
                line,
                timestamp: l.timestamp,
            }
        }
        Event::Lost { segments } => LogEntry {
            channel: "WARN aurae.observe".into(),
            line: format!(
                "aurae: {segments} log segment(s) were rotated out before this reader got to them"
            ),
            timestamp: crate::logs::cri::now_nanos(),
        },
    }
}
