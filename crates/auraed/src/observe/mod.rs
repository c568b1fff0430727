//! Observability: the daemon's own log stream and the output of every
//! process it started, plus the `observe.Observe` gRPC service over them.

pub mod daemon_log;
pub mod output;
mod service;

pub use daemon_log::{DaemonLog, LogRecord};
pub use output::{Channel, ProcessOutputs};
pub use service::{ObserveService, WorkloadCounts};
