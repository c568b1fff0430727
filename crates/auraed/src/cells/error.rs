//! Every way a cells call can fail (mapped to a gRPC status in `crate::api`).
//! Messages leave their `#[source]` out: [`crate::error_chain::chain`] joins the
//! whole chain at the edge.

use std::path::PathBuf;

use thiserror::Error;

use crate::cgroups::{CgroupError, LimitError};
use crate::cni::CniError;
use crate::executables::CommandError;
use crate::images::ImageError;
use crate::state::StateError;
use crate::validation::NameError;

use super::network::MAX_PORTS;
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
    #[error("container {container:?}: {reason}")]
    BadProcess { container: String, reason: String },
    #[error("image {image:?} of container {container:?} sets neither an entrypoint nor a command: there is nothing to run (give the container a command)")]
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
    #[error("a cell named {cell:?} is already running: stop it first (aer cell stop {cell}) or pick another name")]
    AlreadyRunning { cell: String },
    #[error("no cell named {cell:?} is running: see the running cells with aer cell list")]
    NotFound { cell: String },
    #[error("a stopped cell named {cell:?} exists: remove it first (aer cell rm {cell}) or pick another name")]
    Exists { cell: String },
    #[error(
        "cell {cell:?} is running: stop it first (aer cell stop {cell}) or remove it with --force"
    )]
    StillRunning { cell: String },
    #[error("cell {cell:?} is bound to its RunCell call: stop it (aer cell stop {cell}) and it is removed")]
    BoundToCall { cell: String },
    #[error("this runtime keeps no state: cells need the daemon's state database")]
    NoState,
    #[error("cell {cell:?}: container {container:?} could not start: {reason}")]
    ContainerStart {
        cell: String,
        container: String,
        reason: String,
    },
    #[error("recording cell {cell:?}")]
    State {
        cell: String,
        #[source]
        source: Box<StateError>,
    },
    #[error("cell {cell:?} was stopped before its containers started")]
    StoppedBeforeStart { cell: String },
    #[error("auraed is shutting down: retry once it is back")]
    ShuttingDown,
    /// An image could not be pulled or mounted: the image layer's error, with context.
    #[error("container {container:?}, image {image:?}: {error}")]
    Image {
        container: String,
        image: String,
        error: Box<ImageError>,
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
    #[error("cell {cell:?}: network name {network:?} must be at most 128 printable characters (\"\" = the default network, \"none\" = loopback only)")]
    BadNetwork { cell: String, network: String },
    #[error("cell {cell:?} publishes {count} ports: at most {MAX_PORTS} are allowed")]
    TooManyPorts { cell: String, count: usize },
    #[error("ports[{index}]: {reason}")]
    BadPort { index: usize, reason: String },
    #[error("cell {cell:?} has network \"none\" and publishes ports: a cell without a network cannot be reached")]
    PortsWithoutNetwork { cell: String },
    #[error("cell {cell:?} asks for a network or ports, but this runtime has no CNI networking")]
    NoNetworking { cell: String },
    #[error(transparent)]
    ExecContainerName(NameError),
    #[error(
        "cell {cell:?} has no container named {container:?}: see its containers with aer cell ps"
    )]
    NoSuchContainer { cell: String, container: String },
    #[error("container {container:?} of cell {cell:?} is not running ({state}): exec needs a running container")]
    NotRunning {
        cell: String,
        container: String,
        state: String,
    },
    #[error(transparent)]
    Command(CommandError),
    #[error("exec: {0}")]
    Exec(String),
    #[error("cell {cell:?}")]
    CellLimits {
        cell: String,
        #[source]
        source: LimitError,
    },
    #[error("container {container:?}")]
    ContainerLimits {
        container: String,
        #[source]
        source: LimitError,
    },
    #[error("container {container:?}: limits.{what} {value} is above the cell's {cell_value}{origin}: lower it, or raise the cell's limits.{what}")]
    ContainerAboveCell {
        container: String,
        what: &'static str,
        value: u64,
        cell_value: u64,
        origin: String,
    },
    #[error("this node cannot apply the cell's limits")]
    LimitUnsupported(#[source] CgroupError),
    #[error("cell {cell:?}: network")]
    Network {
        cell: String,
        #[source]
        source: Box<CniError>,
    },
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
