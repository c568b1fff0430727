//! What the subsystems say about a workload's state, without the wire types:
//! the meaning of `meta.Status`, converted to it in `api/`.

/// The state of an executable, container or cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Status {
    #[default]
    Unknown,
    Standby,
    Active,
    Passive,
    Error,
    Complete,
}

impl Status {
    /// The name operators see in messages (`STATUS_ACTIVE`, ...), the same as
    /// the wire enum's.
    pub fn as_str_name(self) -> &'static str {
        match self {
            Status::Unknown => "STATUS_UNKNOWN",
            Status::Standby => "STATUS_STANDBY",
            Status::Active => "STATUS_ACTIVE",
            Status::Passive => "STATUS_PASSIVE",
            Status::Error => "STATUS_ERROR",
            Status::Complete => "STATUS_COMPLETE",
        }
    }
}

/// An executable as RunExecutable and the schedule take it: its name, its
/// command line (split like a systemd `ExecStart=` line), a free-form
/// comment, the limits of its cgroup and who it runs as (unset: the
/// daemon's defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutableSpec {
    pub name: String,
    pub command: String,
    pub comment: String,
    pub limits: crate::cgroups::Limits,
    pub user: String,
    pub group: String,
}
