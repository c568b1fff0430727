//! Every tracing record the daemon emits, fanned out to log-stream subscribers.
//!
//! A `tokio::sync::broadcast` channel is used because its sender never waits:
//! a subscriber that falls behind loses the oldest records and is told how
//! many (`RecvError::Lagged`), and the daemon is never blocked by it.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Records kept per subscriber before the slowest starts losing the oldest.
pub const DAEMON_LOG_CAPACITY: usize = 4096;

/// One daemon log record as sent to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// `LEVEL target`, e.g. `INFO auraed::server`.
    pub channel: String,
    pub line: String,
    /// Unix time in nanoseconds.
    pub timestamp: i64,
}

/// The broadcast side: cheap to clone, shared by the tracing layer and the Observe service.
#[derive(Debug, Clone)]
pub struct DaemonLog {
    tx: broadcast::Sender<LogRecord>,
}

impl Default for DaemonLog {
    fn default() -> Self {
        Self::new(DAEMON_LOG_CAPACITY)
    }
}

impl DaemonLog {
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// A receiver that sees every record published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LogRecord> {
        self.tx.subscribe()
    }

    pub fn publish(&self, record: LogRecord) {
        // No subscriber is the normal case; the record is simply not kept.
        let _ = self.tx.send(record);
    }

    /// The tracing layer that publishes every event into this log.
    pub fn layer(&self) -> DaemonLogLayer {
        DaemonLogLayer { log: self.clone() }
    }
}

pub fn unix_nanos_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub struct DaemonLogLayer {
    log: DaemonLog,
}

impl<S: Subscriber> Layer<S> for DaemonLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // Formatting costs time on every log call: skip it when nobody listens.
        if self.log.tx.receiver_count() == 0 {
            return;
        }
        let meta = event.metadata();
        let mut visitor = LineVisitor::default();
        event.record(&mut visitor);
        self.log.publish(LogRecord {
            channel: format!("{} {}", meta.level(), meta.target()),
            line: visitor.finish(),
            timestamp: unix_nanos_now(),
        });
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
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn every_subscriber_gets_every_record() {
        let log = DaemonLog::new(16);
        let mut a = log.subscribe();
        let mut b = log.subscribe();
        let subscriber = tracing_subscriber::registry().with(log.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(pid = 7, "started");
            tracing::warn!("second");
        });
        for rx in [&mut a, &mut b] {
            let first = rx.try_recv().expect("first record");
            assert_eq!(first.channel, "INFO auraed::observe::daemon_log::tests");
            assert_eq!(first.line, "started pid=7");
            assert!(first.timestamp > 1_600_000_000_000_000_000);
            assert_eq!(rx.try_recv().expect("second").line, "second");
        }
    }

    #[test]
    fn slow_subscriber_is_told_what_it_lost() {
        let log = DaemonLog::new(4);
        let mut rx = log.subscribe();
        for i in 0..10 {
            log.publish(LogRecord {
                channel: "c".into(),
                line: i.to_string(),
                timestamp: 0,
            });
        }
        match rx.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n, 6),
            other => panic!("expected lag, got {other:?}"),
        }
        assert_eq!(rx.try_recv().expect("oldest kept").line, "6");
    }
}
