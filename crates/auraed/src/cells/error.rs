//! Every way a cells call can fail, mapped once to a gRPC status. Messages
//! leave their `#[source]` out: [`crate::cgroups::chain`] joins the whole chain
//! at the edge.

use std::path::PathBuf;

use thiserror::Error;

use crate::cgroups::CgroupError;
use crate::validation::NameError;

use super::request::{MAX_CONTAINERS, MAX_IMAGE_LEN};

#[derive(Debug, Error)]
pub enum CellError {
    #[error(transparent)]
    CellName(NameError),
    #[error("containers[{index}]")]
    ContainerName {
        index: usize,
        #[source]
        source: NameError,
    },
    #[error(
        "cell {cell:?} has no containers: give at least one container with a name and an image"
    )]
    NoContainers { cell: String },
    #[error("cell {cell:?} has {count} containers: at most {MAX_CONTAINERS} are allowed")]
    TooManyContainers { cell: String, count: usize },
    #[error("containers[{index}] and an earlier container are both named {name:?}: container names must be unique within a cell")]
    DuplicateContainer { index: usize, name: String },
    #[error("container {container:?} has no image: give an image reference such as \"docker.io/library/busybox:latest\"")]
    EmptyImage { container: String },
    #[error("the image of container {container:?} is {len} bytes long: at most {MAX_IMAGE_LEN} are allowed")]
    ImageTooLong { container: String, len: usize },
    #[error("the image of container {container:?} ({image:?}) contains whitespace or control characters")]
    BadImage { container: String, image: String },
    #[error("image {image:?} of container {container:?} sets neither an entrypoint nor a command: there is nothing to run")]
    NothingToRun { container: String, image: String },
    #[error("image {image:?} of container {container:?}: {reason}")]
    BadImageConfig {
        container: String,
        image: String,
        reason: String,
    },
    #[error("container {container:?}: user {user:?} of image {image:?}: {reason}")]
    User {
        container: String,
        image: String,
        user: String,
        reason: String,
    },
    #[error("a cell named {cell:?} is already running: stop it first (cells.Cells/Stop) or pick another name")]
    AlreadyRunning { cell: String },
    #[error("no cell named {cell:?} is running: see the running cells with cells.Cells/List")]
    NotFound { cell: String },
    #[error("cell {cell:?} was stopped before its containers started")]
    StoppedBeforeStart { cell: String },
    #[error("auraed is shutting down: retry once it is back")]
    ShuttingDown,
    /// An image could not be pulled or mounted: the image layer's status, with context.
    #[error("container {container:?}, image {image:?}: {}", status.message())]
    Image {
        container: String,
        image: String,
        status: tonic::Status,
    },
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup {path}")]
    Cgroup {
        path: String,
        #[source]
        source: CgroupError,
    },
    #[error("the cell task failed: {0}")]
    Task(String),
}

impl CellError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CellError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

impl From<CellError> for tonic::Status {
    fn from(e: CellError) -> Self {
        let msg = crate::cgroups::chain(&e);
        match e {
            CellError::CellName(_)
            | CellError::ContainerName { .. }
            | CellError::NoContainers { .. }
            | CellError::TooManyContainers { .. }
            | CellError::DuplicateContainer { .. }
            | CellError::EmptyImage { .. }
            | CellError::ImageTooLong { .. }
            | CellError::BadImage { .. }
            | CellError::NothingToRun { .. }
            | CellError::BadImageConfig { .. }
            | CellError::User { .. } => tonic::Status::invalid_argument(msg),
            CellError::AlreadyRunning { .. } => tonic::Status::already_exists(msg),
            CellError::NotFound { .. } => tonic::Status::not_found(msg),
            CellError::StoppedBeforeStart { .. } => tonic::Status::aborted(msg),
            CellError::ShuttingDown => tonic::Status::unavailable(msg),
            // Keep the image layer's code (NOT_FOUND, UNAVAILABLE, ...), add which container.
            CellError::Image { status, .. } => tonic::Status::new(status.code(), msg),
            CellError::Io { .. } | CellError::Cgroup { .. } | CellError::Task(_) => {
                tonic::Status::internal(msg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_kind_of_failure() {
        let cases: Vec<(CellError, tonic::Code)> = vec![
            (
                CellError::NoContainers { cell: "c".into() },
                tonic::Code::InvalidArgument,
            ),
            (
                CellError::AlreadyRunning { cell: "c".into() },
                tonic::Code::AlreadyExists,
            ),
            (
                CellError::NotFound { cell: "c".into() },
                tonic::Code::NotFound,
            ),
            (CellError::ShuttingDown, tonic::Code::Unavailable),
            (
                CellError::Image {
                    container: "a".into(),
                    image: "x".into(),
                    status: tonic::Status::unavailable("registry down"),
                },
                tonic::Code::Unavailable,
            ),
            (
                CellError::io("creating", "/x", std::io::Error::other("boom")),
                tonic::Code::Internal,
            ),
        ];
        for (err, code) in cases {
            let text = err.to_string();
            let status = tonic::Status::from(err);
            assert_eq!(status.code(), code, "{text}");
            assert!(status.message().starts_with(&text), "{status:?}");
        }
    }

    #[test]
    fn image_errors_name_the_container_and_keep_the_message() {
        let status = tonic::Status::from(CellError::Image {
            container: "web".into(),
            image: "127.0.0.1:5000/nope:latest".into(),
            status: tonic::Status::not_found("manifest unknown"),
        });
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(
            status.message(),
            "container \"web\", image \"127.0.0.1:5000/nope:latest\": manifest unknown"
        );
    }
}
