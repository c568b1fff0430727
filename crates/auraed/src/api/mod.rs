//! The edge of the daemon: one file per gRPC service. Each handler converts
//! the request (generated proto types) to the subsystem's own types, calls
//! the subsystem's core, converts the result back, and maps the subsystem's
//! error enum to a `tonic::Status` (`status`). Nothing below this module
//! imports tonic or the generated types.

pub mod cells;
pub mod core;
pub mod images;
pub mod instances;
pub mod observe;
pub mod schedule;
pub mod status;
pub mod vms;

pub use self::cells::CellsService;
pub use self::core::CoreService;
pub use self::images::ImagesService;
pub use self::instances::InstancesService;
pub use self::observe::ObserveService;
pub use self::schedule::{ScheduleExecutableService, ScheduleService};
pub use self::vms::VmsService;

use aurae_proto::meta::{AuraeMeta, Status as MetaStatus};
use aurae_proto::runtime;

use crate::cgroups::Limits;
use crate::workload::Status;

/// Wire limits (0 or unset: the daemon's default) as the domain's.
pub(crate) fn limits_in(l: Option<&runtime::Limits>) -> Limits {
    l.map_or_else(Limits::default, |l| {
        Limits::from_wire(l.pids, l.memory_bytes, l.cpu_millis)
    })
}

/// The domain's limits on the wire (None when all are the default).
pub(crate) fn limits_out(l: Limits) -> Option<runtime::Limits> {
    (!l.is_empty()).then(|| runtime::Limits {
        cpu_millis: l.cpu_millis.unwrap_or(0),
        memory_bytes: l.memory_bytes.unwrap_or(0),
        pids: l.pids.unwrap_or(0),
    })
}

/// The caller's identity for the audit trail: the names in its client certificate.
pub(crate) fn caller<T>(req: &tonic::Request<T>) -> String {
    let names = crate::server::peer_names(req.extensions());
    if names.is_empty() {
        "unknown".to_string()
    } else {
        names.join(",")
    }
}

/// `meta.name` of a request, "" when there is no meta.
pub(crate) fn name_in(meta: &Option<AuraeMeta>) -> String {
    meta.as_ref().map(|m| m.name.clone()).unwrap_or_default()
}

/// A response meta.
pub(crate) fn meta(name: impl Into<String>, message: impl Into<String>) -> Option<AuraeMeta> {
    Some(AuraeMeta {
        name: name.into(),
        message: message.into(),
    })
}

/// The wire value of a workload status.
pub(crate) fn status(s: Status) -> i32 {
    let wire = match s {
        Status::Unknown => MetaStatus::Unknown,
        Status::Standby => MetaStatus::Standby,
        Status::Active => MetaStatus::Active,
        Status::Passive => MetaStatus::Passive,
        Status::Error => MetaStatus::Error,
        Status::Complete => MetaStatus::Complete,
    };
    wire as i32
}

/// An `Executable` as RunExecutable and the schedule take it.
pub fn executable_spec(exe: aurae_proto::runtime::Executable) -> crate::workload::ExecutableSpec {
    crate::workload::ExecutableSpec {
        name: name_in(&exe.meta),
        command: exe.command,
        comment: exe.comment,
        limits: limits_in(exe.limits.as_ref()),
        user: exe.user,
        group: exe.group,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_round_trip_with_zero_as_default() {
        let wire = runtime::Limits {
            cpu_millis: 0,
            memory_bytes: 1 << 20,
            pids: 7,
        };
        let domain = limits_in(Some(&wire));
        assert_eq!(domain, Limits::from_wire(7, 1 << 20, 0));
        assert_eq!(limits_out(domain), Some(wire));
        assert_eq!(limits_in(None), Limits::default());
        assert_eq!(limits_out(Limits::default()), None);
    }

    #[test]
    fn statuses_keep_their_wire_names() {
        for s in [
            Status::Unknown,
            Status::Standby,
            Status::Active,
            Status::Passive,
            Status::Error,
            Status::Complete,
        ] {
            let wire = MetaStatus::try_from(status(s)).expect("known value");
            assert_eq!(wire.as_str_name(), s.as_str_name());
        }
    }
}
