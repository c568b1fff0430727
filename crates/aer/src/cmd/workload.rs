//! The options every workload command shares (`aer run`, `aer schedule
//! enable`): who it runs as and the limits of its cgroup.
use aurae_client::size::parse_size;
use aurae_proto::runtime::{Executable, Limits};
use clap::Args;

#[derive(Debug, Default, Clone, Args)]
pub struct WorkloadArgs {
    /// Run as this user, a name or a uid (default: the daemon's --default-user, else root)
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Run with this group, a name or a gid (default: the user's groups)
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// The cgroup limits of a workload (`aer run`, `aer schedule enable`) or of
/// a whole cell (`aer cell run`).
#[derive(Debug, Default, Clone, Args)]
pub struct LimitArgs {
    /// Most processes and threads at once, pids.max (default: the daemon's --default-pids-max)
    #[arg(long, value_name = "N")]
    pub pids: Option<u64>,
    /// Memory limit: bytes, or with a K, M or G suffix (default: the daemon's --default-memory-max)
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// CPU limit in millicores, 1000 = one core (default: unlimited)
    #[arg(long, value_name = "MILLIS")]
    pub cpu: Option<u64>,
}

impl LimitArgs {
    /// The wire limits, None when no option was given (the daemon's defaults).
    pub fn to_wire(&self) -> Option<Limits> {
        let limits = Limits {
            cpu_millis: self.cpu.unwrap_or(0),
            memory_bytes: self.memory.unwrap_or(0),
            pids: self.pids.unwrap_or(0),
        };
        (limits != Limits::default()).then_some(limits)
    }
}

impl WorkloadArgs {
    /// Sets the user, group and limits of `exe` from these options.
    pub fn apply(self, exe: &mut Executable) {
        exe.user = self.user.unwrap_or_default();
        exe.group = self.group.unwrap_or_default();
        exe.limits = self.limits.to_wire();
    }
}

/// `pids=4096 memory=64M cpu=500`, only the limits set (0 is unset).
pub fn limits_text(l: &Limits) -> String {
    let mut words = Vec::new();
    if l.pids != 0 {
        words.push(format!("pids={}", l.pids));
    }
    if l.memory_bytes != 0 {
        words.push(format!("memory={}", size_text(l.memory_bytes)));
    }
    if l.cpu_millis != 0 {
        words.push(format!("cpu={}", l.cpu_millis));
    }
    words.join(" ")
}

/// Bytes as the largest K/M/G unit that divides them, as `--memory` reads them.
fn size_text(bytes: u64) -> String {
    for (unit, shift) in [("G", 30), ("M", 20), ("K", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// The user, group and limits of `e` as `key=value` words, only those set.
pub fn settings_text(e: &Executable) -> String {
    let mut words = Vec::new();
    if !e.user.is_empty() {
        words.push(format!("user={}", e.user));
    }
    if !e.group.is_empty() {
        words.push(format!("group={}", e.group));
    }
    if let Some(l) = e.limits.as_ref().filter(|l| **l != Limits::default()) {
        words.push(limits_text(l));
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_settings() {
        let mut e = Executable::default();
        WorkloadArgs {
            user: Some("nobody".into()),
            limits: LimitArgs {
                pids: Some(10),
                memory: Some(1 << 20),
                ..Default::default()
            },
            ..Default::default()
        }
        .apply(&mut e);
        assert_eq!(e.user, "nobody");
        assert_eq!(settings_text(&e), "user=nobody pids=10 memory=1M");
        let odd = Limits {
            memory_bytes: (1 << 20) + 1,
            cpu_millis: 250,
            pids: 0,
        };
        assert_eq!(limits_text(&odd), "memory=1048577 cpu=250");
        assert_eq!(size_text(3 << 30), "3G");
        assert_eq!(size_text(1536), "1536");
        let mut plain = Executable::default();
        WorkloadArgs::default().apply(&mut plain);
        assert_eq!(plain.limits, None);
        assert_eq!(settings_text(&plain), "");
    }
}
