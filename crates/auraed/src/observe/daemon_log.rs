//! The daemon's own log in the log store: every tracing event at or above
//! the configured level, as a CRI record whose content is
//! `LEVEL target message key=value ...`. Followers read it like any other
//! log, so a slow reader loses nothing that is still retained, and the
//! recent history survives a restart (`aer logs daemon`, like `journalctl -u`).
//!
//! Until the store is attached (the first moments of start-up) events only
//! go to stderr.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use crate::logs::{LogLimits, LogWriter, Stream};

/// The writer side, shared by the tracing layer and the daemon.
#[derive(Clone, Default)]
pub struct DaemonLog {
    writer: Arc<Mutex<Option<LogWriter>>>,
}

impl DaemonLog {
    /// Starts writing to `dir` (created if needed), after what is there.
    pub fn attach(&self, dir: &Path, limits: LogLimits) -> std::io::Result<()> {
        let writer = LogWriter::open(dir, limits)?;
        *self.lock() = Some(writer);
        Ok(())
    }

    /// Stops writing (the daemon is exiting).
    pub fn detach(&self) {
        *self.lock() = None;
    }

    /// The tracing layer that writes every event into this log.
    pub fn layer(&self) -> DaemonLogLayer {
        DaemonLogLayer { log: self.clone() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<LogWriter>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, line: &str) {
        if let Some(w) = self.lock().as_mut() {
            // Nowhere to report a failure to write the log but the log: drop it.
            let _ = w.note(Stream::Stdout, line);
        }
    }
}

/// Splits a stored record's content back into `LEVEL target` and the rest.
pub fn split_record(content: &str) -> (String, String) {
    let mut parts = content.splitn(3, ' ');
    let level = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let rest = parts.next().unwrap_or_default();
    (format!("{level} {target}"), rest.to_string())
}

pub struct DaemonLogLayer {
    log: DaemonLog,
}

impl<S: Subscriber> Layer<S> for DaemonLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut visitor = LineVisitor::default();
        event.record(&mut visitor);
        let line = format!("{} {} {}", meta.level(), meta.target(), visitor.finish());
        self.log.write(&line);
    }
}

/// Renders an event as `message key=value ...`, the way the fmt layer does.
#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
}

impl LineVisitor {
    fn finish(self) -> String {
        match (self.message.is_empty(), self.fields.is_empty()) {
            (_, true) => self.message,
            (true, false) => self.fields,
            (false, false) => format!("{} {}", self.message, self.fields),
        }
    }

    fn push_field(&mut self, name: &str, value: std::fmt::Arguments<'_>) {
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{name}={value}");
    }
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.push_field(field.name(), format_args!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.push_field(field.name(), format_args!("{value:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::read_output;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn events_land_in_the_log_and_split_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = DaemonLog::default();
        let subscriber = tracing_subscriber::registry().with(log.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before the store: only stderr");
            log.attach(dir.path(), LogLimits::default())
                .expect("attach");
            tracing::info!(pid = 7, "started");
            tracing::warn!("second\nline");
        });
        let text = read_output(dir.path(), 1 << 20).expect("read").stdout;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let (channel, line) = split_record(lines[0]);
        assert_eq!(channel, "INFO auraed::observe::daemon_log::tests");
        assert_eq!(line, "started pid=7");
        assert_eq!(split_record(lines[1]).1, "second line");
    }
}
