//! Every domain error mapped once to a gRPC status: the code says what kind
//! of failure it is, the message is the error's own text.

use tonic::{Code, Status};

use crate::cells::CellError;
use crate::cgroups::CgroupError;
use crate::cni::CniError;
use crate::executables::ExecutableError;
use crate::images::ImageError;
use crate::instances::InstanceError;
use crate::observe::ObserveError;
use crate::process::ProcessError;
use crate::schedule::ScheduleError;
use crate::validation::NameError;
use crate::vms::VmError;

impl From<NameError> for Status {
    fn from(e: NameError) -> Self {
        Status::invalid_argument(e.to_string())
    }
}

impl From<ProcessError> for Status {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::EmptyCommand | ProcessError::Identity(_) => {
                Status::invalid_argument(e.to_string())
            }
            ProcessError::Start { .. }
            | ProcessError::Cgroup {
                source: CgroupError::NoController { .. },
                ..
            } => Status::failed_precondition(e.to_string()),
            _ => Status::internal(e.to_string()),
        }
    }
}

impl From<ObserveError> for Status {
    fn from(e: ObserveError) -> Self {
        match e {
            ObserveError::BadPid(_) => Status::invalid_argument(e.to_string()),
            ObserveError::UnknownPid(_) => Status::not_found(e.to_string()),
            ObserveError::Io(_) => Status::internal(e.to_string()),
        }
    }
}

impl From<ExecutableError> for Status {
    fn from(e: ExecutableError) -> Self {
        match e {
            ExecutableError::Name(e) => e.into(),
            ExecutableError::Process(e) => e.into(),
            ExecutableError::Command(_) | ExecutableError::Limits(_) => {
                Status::invalid_argument(e.to_string())
            }
            ExecutableError::Cgroup(_) => Status::internal(e.to_string()),
        }
    }
}

impl From<ScheduleError> for Status {
    fn from(e: ScheduleError) -> Self {
        let msg = e.to_string();
        match e {
            ScheduleError::Name(_)
            | ScheduleError::Command(_)
            | ScheduleError::CommentTooLong { .. }
            | ScheduleError::Limits(_)
            | ScheduleError::Identity(_) => Status::invalid_argument(msg),
            ScheduleError::NotFound { .. } => Status::not_found(msg),
            ScheduleError::AlreadyExists { .. } | ScheduleError::SettingsDiffer { .. } => {
                Status::already_exists(msg)
            }
            ScheduleError::ShuttingDown => Status::unavailable(msg),
            ScheduleError::Cgroup(CgroupError::NoController { .. }) => {
                Status::failed_precondition(msg)
            }
            ScheduleError::Store(_) | ScheduleError::Task(_) | ScheduleError::Cgroup(_) => {
                Status::internal(msg)
            }
        }
    }
}

impl From<VmError> for Status {
    fn from(e: VmError) -> Self {
        let msg = crate::error_chain::chain(&e);
        match e {
            VmError::Name(_) | VmError::BadSize { .. } | VmError::BadImage { .. } => {
                Status::invalid_argument(msg)
            }
            VmError::NotADisk { .. } | VmError::TooLarge { .. } | VmError::BadNetwork { .. } => {
                Status::invalid_argument(msg)
            }
            VmError::AlreadyExists { .. } => Status::already_exists(msg),
            VmError::NotFound { .. } | VmError::HttpNotFound { .. } => Status::not_found(msg),
            VmError::WrongState { .. }
            | VmError::DigestMismatch { .. }
            | VmError::NoBridge { .. } => Status::failed_precondition(msg),
            VmError::Unreachable { .. } | VmError::HttpStatus { .. } | VmError::ShuttingDown => {
                Status::unavailable(msg)
            }
            VmError::Image(e) => Status::new(image_code(&e), msg),
            VmError::Boot { .. } | VmError::Process { .. } => Status::failed_precondition(msg),
            VmError::State(_) | VmError::Io { .. } | VmError::Tap { .. } => Status::internal(msg),
        }
    }
}

impl From<CellError> for Status {
    fn from(e: CellError) -> Self {
        let msg = crate::error_chain::chain(&e);
        match e {
            CellError::CellName(_)
            | CellError::ContainerName { .. }
            | CellError::NoContainers { .. }
            | CellError::TooManyContainers { .. }
            | CellError::DuplicateContainer { .. }
            | CellError::EmptyImage { .. }
            | CellError::ImageTooLong { .. }
            | CellError::BadImage { .. }
            | CellError::BadProcess { .. }
            | CellError::NothingToRun { .. }
            | CellError::BadImageConfig { .. }
            | CellError::User { .. }
            | CellError::BadNetwork { .. }
            | CellError::TooManyPorts { .. }
            | CellError::BadPort { .. }
            | CellError::PortsWithoutNetwork { .. }
            | CellError::ExecContainerName(_)
            | CellError::Command(_)
            | CellError::CellLimits { .. }
            | CellError::ContainerLimits { .. }
            | CellError::ContainerAboveCell { .. } => Status::invalid_argument(msg),
            CellError::LimitUnsupported(_) => Status::failed_precondition(msg),
            CellError::NoSuchContainer { .. } => Status::not_found(msg),
            CellError::NotRunning { .. } => Status::failed_precondition(msg),
            CellError::NoNetworking { .. } => Status::failed_precondition(msg),
            CellError::Network { source, .. } => Status::new(cni_code(&source), msg),
            CellError::AlreadyRunning { .. } | CellError::Exists { .. } => {
                Status::already_exists(msg)
            }
            CellError::NotFound { .. } => Status::not_found(msg),
            CellError::StillRunning { .. }
            | CellError::BoundToCall { .. }
            | CellError::NoState
            | CellError::ContainerStart { .. } => Status::failed_precondition(msg),
            CellError::StoppedBeforeStart { .. } => Status::aborted(msg),
            CellError::ShuttingDown => Status::unavailable(msg),
            // Keep the image layer's code (NOT_FOUND, UNAVAILABLE, ...), add which container.
            CellError::Image { error, .. } => Status::new(image_code(&error), msg),
            CellError::Io { .. }
            | CellError::Cgroup { .. }
            | CellError::Task(_)
            | CellError::State { .. }
            | CellError::Exec(_) => Status::internal(msg),
        }
    }
}

/// The gRPC code an image error maps to.
pub fn image_code(e: &ImageError) -> Code {
    match e {
        ImageError::InvalidReference { .. } | ImageError::Unsupported { .. } => {
            Code::InvalidArgument
        }
        ImageError::Layer { error, .. } if error.is_refusal() => Code::InvalidArgument,
        ImageError::Layer { .. } => Code::Internal,
        ImageError::Unreachable { .. } | ImageError::Registry { .. } => Code::Unavailable,
        ImageError::NotFound { .. }
        | ImageError::NoPlatform { .. }
        | ImageError::NotStored { .. } => Code::NotFound,
        ImageError::InUse { .. } => Code::FailedPrecondition,
        ImageError::Denied { .. } => Code::PermissionDenied,
        ImageError::DigestMismatch { .. } => Code::FailedPrecondition,
        ImageError::Config { .. } => Code::FailedPrecondition,
        ImageError::Store { .. } | ImageError::Rootfs { .. } | ImageError::Task(_) => {
            Code::Internal
        }
    }
}

/// The status of an image error: a function, not a `From`, because neither
/// type is auraed's since the image store is a crate of its own.
pub fn image_status(e: ImageError) -> Status {
    Status::new(image_code(&e), e.to_string())
}

/// The code of a network failure: a configuration the admin must fix is a
/// precondition; a plugin asking to retry is unavailable; the rest internal.
fn cni_code(e: &CniError) -> tonic::Code {
    match e {
        CniError::UnknownNetwork { .. } => tonic::Code::InvalidArgument,
        CniError::NoConfig { .. }
        | CniError::BadConfig { .. }
        | CniError::NoPortMapping { .. }
        | CniError::PortInUse { .. }
        | CniError::PluginNotFound { .. } => tonic::Code::FailedPrecondition,
        CniError::Plugin { error, .. } if error.code == 11 => tonic::Code::Unavailable,
        CniError::Timeout { .. } => tonic::Code::Unavailable,
        _ => tonic::Code::Internal,
    }
}

impl From<InstanceError> for Status {
    fn from(e: InstanceError) -> Self {
        let msg = crate::error_chain::chain(&e);
        match e {
            InstanceError::Hypervisor(e) => Status::from(e),
            InstanceError::Image(e) => Status::new(image_code(&e), msg),
            InstanceError::Name(_) | InstanceError::NotDnsLabel { .. } => {
                Status::invalid_argument(msg)
            }
            InstanceError::AlreadyExists { .. } => Status::already_exists(msg),
            InstanceError::NotFound { .. } => Status::not_found(msg),
            InstanceError::NoImage { .. }
            | InstanceError::NoCaKey { .. }
            | InstanceError::NoCaCrt { .. }
            | InstanceError::Pki { .. }
            | InstanceError::Exited { .. } => Status::failed_precondition(msg),
            InstanceError::PoolExhausted { .. } => Status::resource_exhausted(msg),
            InstanceError::NotAnswering { .. } => Status::deadline_exceeded(msg),
            InstanceError::ShuttingDown => Status::unavailable(msg),
            InstanceError::Network { .. }
            | InstanceError::Initramfs(_)
            | InstanceError::State(_)
            | InstanceError::Io { .. } => Status::internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executables::split::SplitError;
    use crate::executables::CommandError;
    use crate::images::unpack::UnpackError;

    #[test]
    fn schedule_codes_follow_the_kind_of_error() {
        let code = |e: ScheduleError| Status::from(e).code();
        assert_eq!(
            code(ScheduleError::Command(CommandError::Empty)),
            Code::InvalidArgument
        );
        assert_eq!(
            code(ScheduleError::NotFound { name: "x".into() }),
            Code::NotFound
        );
        let exists = ScheduleError::AlreadyExists {
            name: "web".into(),
            state: "enabled",
            existing: "sleep 1".into(),
            requested: "sleep 2".into(),
        };
        let msg = exists.to_string();
        assert!(
            msg.contains("\"sleep 1\"")
                && msg.contains("\"sleep 2\"")
                && msg.contains("destroy it first"),
            "{msg}"
        );
        assert_eq!(code(exists), Code::AlreadyExists);
        assert_eq!(code(ScheduleError::ShuttingDown), Code::Unavailable);
        assert_eq!(code(ScheduleError::Task("x".into())), Code::Internal);
        let missing = CgroupError::NoController {
            what: "limits.memory_bytes",
            controller: "memory",
            path: "/sys/fs/cgroup".into(),
        };
        assert_eq!(
            code(ScheduleError::Cgroup(missing)),
            Code::FailedPrecondition
        );
    }

    #[test]
    fn cell_codes_follow_the_kind_of_failure() {
        let cases: Vec<(CellError, Code)> = vec![
            (
                CellError::NoContainers { cell: "c".into() },
                Code::InvalidArgument,
            ),
            (
                CellError::AlreadyRunning { cell: "c".into() },
                Code::AlreadyExists,
            ),
            (CellError::NotFound { cell: "c".into() }, Code::NotFound),
            (CellError::ShuttingDown, Code::Unavailable),
            (
                CellError::Image {
                    container: "a".into(),
                    image: "x".into(),
                    error: Box::new(ImageError::Unreachable {
                        registry: "127.0.0.1:5999".into(),
                        detail: "registry down".into(),
                    }),
                },
                Code::Unavailable,
            ),
            (
                CellError::io("creating", "/x", std::io::Error::other("boom")),
                Code::Internal,
            ),
        ];
        for (err, code) in cases {
            let text = err.to_string();
            let status = Status::from(err);
            assert_eq!(status.code(), code, "{text}");
            assert!(status.message().starts_with(&text), "{status:?}");
        }
    }

    #[test]
    fn cell_image_errors_name_the_container_and_keep_the_message() {
        let status = Status::from(CellError::Image {
            container: "web".into(),
            image: "127.0.0.1:5000/nope:latest".into(),
            error: Box::new(ImageError::NotFound {
                reference: "127.0.0.1:5000/nope:latest".into(),
                detail: "manifest unknown".into(),
            }),
        });
        assert_eq!(status.code(), Code::NotFound);
        assert!(
            status
                .message()
                .starts_with("container \"web\", image \"127.0.0.1:5000/nope:latest\": "),
            "{status:?}"
        );
        assert!(status.message().contains("manifest unknown"), "{status:?}");
    }

    #[test]
    fn cell_validation_errors_are_invalid_argument_with_the_whole_chain() {
        let err = CellError::ContainerName {
            index: 1,
            source: NameError::Empty {
                what: "container meta.name",
            },
        };
        let status = Status::from(err);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .starts_with("containers[1]: container meta.name"),
            "{status:?}"
        );
    }

    #[test]
    fn image_codes_follow_the_kind_of_error() {
        let code = |e: ImageError| image_status(e).code();
        assert_eq!(
            code(ImageError::Unreachable {
                registry: "127.0.0.1:5999".into(),
                detail: "connection refused".into()
            }),
            Code::Unavailable
        );
        assert_eq!(
            code(ImageError::NotFound {
                reference: "x".into(),
                detail: "y".into()
            }),
            Code::NotFound
        );
        assert_eq!(
            code(ImageError::InvalidReference {
                reference: "x".into(),
                reason: "y".into()
            }),
            Code::InvalidArgument
        );
        assert_eq!(
            code(ImageError::Layer {
                reference: "x".into(),
                digest: "sha256:00".into(),
                error: UnpackError::ParentComponent {
                    entry: "../escape".into()
                }
            }),
            Code::InvalidArgument
        );
        assert_eq!(
            code(ImageError::DigestMismatch {
                reference: "x".into(),
                what: "layer".into(),
                detail: "y".into()
            }),
            Code::FailedPrecondition
        );
    }

    #[test]
    fn executable_and_process_codes() {
        let code = |e: ExecutableError| Status::from(e).code();
        for e in [
            CommandError::Empty,
            CommandError::TooLong { len: 1 << 20 },
            CommandError::Split(SplitError::TrailingBackslash),
        ] {
            assert_eq!(code(ExecutableError::Command(e)), Code::InvalidArgument);
        }
        assert_eq!(code(ExecutableError::Cgroup("x".into())), Code::Internal);
        assert_eq!(
            code(ExecutableError::Process(ProcessError::EmptyCommand)),
            Code::InvalidArgument
        );
        assert_eq!(
            code(ExecutableError::Process(ProcessError::SupervisorGone {
                pid: 1
            })),
            Code::Internal
        );
    }
}
