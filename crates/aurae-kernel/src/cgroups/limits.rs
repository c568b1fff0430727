//! Resource limits of one workload cgroup, and how each driver spells them.
//!
//! A limit left `None` is not written: the cgroup keeps the kernel's
//! default (unlimited). Request limits are merged over the daemon's
//! defaults with [`Limits::or`] before they reach a driver.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The CFS period used for CPU limits (the kernel's default, 100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;
/// Smallest CPU limit: the kernel refuses a quota under 1 ms per period.
pub const MIN_CPU_MILLIS: u64 = 10;
/// Largest CPU limit: a thousand cores.
pub const MAX_CPU_MILLIS: u64 = 1_000_000;
/// Smallest memory limit: one page.
pub const MIN_MEMORY_BYTES: u64 = 4096;
/// Largest memory limit the kernel accepts as a number.
pub const MAX_MEMORY_BYTES: u64 = i64::MAX as u64;
/// Largest pids limit: the kernel's PID_MAX_LIMIT.
pub const MAX_PIDS: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// pids.max: most tasks (processes and threads) at once.
    #[serde(default)]
    pub pids: Option<u64>,
    /// memory.max (v2) or memory.limit_in_bytes (v1).
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// CPU time in millicores (1000 = one core): cpu.max (v2) or
    /// cpu.cfs_quota_us over cpu.cfs_period_us (v1).
    #[serde(default)]
    pub cpu_millis: Option<u64>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LimitError {
    #[error("limits.{what} is {value}: give {min} to {max}, or 0 for the daemon's default")]
    OutOfRange {
        what: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
}

impl Limits {
    /// Limits from wire-style numbers where 0 means "the default".
    pub fn from_wire(pids: u64, memory_bytes: u64, cpu_millis: u64) -> Self {
        let set = |v: u64| (v != 0).then_some(v);
        Self {
            pids: set(pids),
            memory_bytes: set(memory_bytes),
            cpu_millis: set(cpu_millis),
        }
    }

    /// Each limit of `self`, or `defaults`'s where `self` has none.
    pub fn or(self, defaults: Limits) -> Self {
        Self {
            pids: self.pids.or(defaults.pids),
            memory_bytes: self.memory_bytes.or(defaults.memory_bytes),
            cpu_millis: self.cpu_millis.or(defaults.cpu_millis),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Refuses values the kernel would refuse or that make no sense.
    pub fn validate(&self) -> Result<(), LimitError> {
        let check = |what, value: Option<u64>, min, max| match value {
            Some(v) if v < min || v > max => Err(LimitError::OutOfRange {
                what,
                value: v,
                min,
                max,
            }),
            _ => Ok(()),
        };
        check("pids", self.pids, 1, MAX_PIDS)?;
        check(
            "memory_bytes",
            self.memory_bytes,
            MIN_MEMORY_BYTES,
            MAX_MEMORY_BYTES,
        )?;
        check(
            "cpu_millis",
            self.cpu_millis,
            MIN_CPU_MILLIS,
            MAX_CPU_MILLIS,
        )
    }

    /// The CFS quota per [`CPU_PERIOD_US`] for `millis` millicores.
    pub fn cpu_quota_us(millis: u64) -> u64 {
        millis.saturating_mul(CPU_PERIOD_US) / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_the_default_and_requests_win_over_defaults() {
        let req = Limits::from_wire(0, 1 << 20, 0);
        assert_eq!(req.pids, None);
        let defaults = Limits {
            pids: Some(4096),
            memory_bytes: Some(1 << 30),
            cpu_millis: None,
        };
        assert_eq!(
            req.or(defaults),
            Limits {
                pids: Some(4096),
                memory_bytes: Some(1 << 20),
                cpu_millis: None
            }
        );
        assert!(Limits::from_wire(0, 0, 0).is_empty());
    }

    #[test]
    fn validate_names_the_field_and_the_range() {
        Limits::from_wire(1, 4096, 10).validate().expect("smallest");
        Limits::from_wire(MAX_PIDS, MAX_MEMORY_BYTES, MAX_CPU_MILLIS)
            .validate()
            .expect("largest");
        let err = Limits::from_wire(0, 100, 0).validate().expect_err("tiny");
        assert!(
            err.to_string().starts_with("limits.memory_bytes is 100"),
            "{err}"
        );
        let err = Limits::from_wire(MAX_PIDS + 1, 0, 0)
            .validate()
            .expect_err("huge");
        assert!(err.to_string().contains("limits.pids"), "{err}");
        let err = Limits::from_wire(0, 0, 5).validate().expect_err("tiny cpu");
        assert!(err.to_string().contains("limits.cpu_millis is 5"), "{err}");
    }

    #[test]
    fn cpu_quota_scales_the_period() {
        assert_eq!(Limits::cpu_quota_us(1000), CPU_PERIOD_US);
        assert_eq!(Limits::cpu_quota_us(250), 25_000);
        assert_eq!(Limits::cpu_quota_us(10), 1000);
    }
}
