//! Observability: the daemon's own log stream and the output of every
//! process it started. The `observe.Observe` gRPC service over them is
//! `crate::api::observe`.

pub mod daemon_log;
pub mod output;

pub use daemon_log::{DaemonLog, LogRecord};
pub use output::{Channel, ProcessOutputs};

/// Workload counts shown by `Status`, gathered from the subsystems.
pub trait WorkloadCounts: Send + Sync + 'static {
    /// `(label, count)` pairs, e.g. `("scheduled", 3)`.
    fn counts(&self) -> Vec<(&'static str, usize)>;
}
