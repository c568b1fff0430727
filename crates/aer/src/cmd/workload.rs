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

impl WorkloadArgs {
    /// Sets the user, group and limits of `exe` from these options.
    pub fn apply(self, exe: &mut Executable) {
        exe.user = self.user.unwrap_or_default();
        exe.group = self.group.unwrap_or_default();
        let limits = Limits {
            cpu_millis: self.cpu.unwrap_or(0),
            memory_bytes: self.memory.unwrap_or(0),
            pids: self.pids.unwrap_or(0),
        };
        exe.limits = (limits != Limits::default()).then_some(limits);
    }
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
    if let Some(l) = &e.limits {
        for (key, v) in [
            ("pids", l.pids),
            ("memory", l.memory_bytes),
            ("cpu", l.cpu_millis),
        ] {
            if v != 0 {
                words.push(format!("{key}={v}"));
            }
        }
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
            pids: Some(10),
            memory: Some(1 << 20),
            ..Default::default()
        }
        .apply(&mut e);
        assert_eq!(e.user, "nobody");
        assert_eq!(settings_text(&e), "user=nobody pids=10 memory=1048576");
        let mut plain = Executable::default();
        WorkloadArgs::default().apply(&mut plain);
        assert_eq!(plain.limits, None);
        assert_eq!(settings_text(&plain), "");
    }
}
