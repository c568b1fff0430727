//! Observability: the daemon's own log (an audit trail, kept in the log
//! store) and the streams subscribers read from the log store. The
//! `observe.Observe` gRPC service over them is `crate::api::observe`.

pub mod daemon_log;
pub mod streams;
pub mod trim;

pub use daemon_log::DaemonLog;
pub use streams::{LogEntry, ObserveError, Observer};

/// Workload counts shown by `Status`, gathered from the subsystems.
pub trait WorkloadCounts: Send + Sync + 'static {
    /// `(label, count)` pairs, e.g. `("scheduled", 3)`.
    fn counts(&self) -> Vec<(&'static str, usize)>;
}
