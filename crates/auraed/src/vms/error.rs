//! Every way a VM operation can fail (mapped to a gRPC status in `crate::api`).

use thiserror::Error;

use crate::images::ImageError;
use crate::process::ProcessError;
use crate::state::StateError;
use crate::validation::NameError;

#[derive(Debug, Error)]
pub enum VmError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("vm {name:?} already exists: delete it first (aer vm rm {name})")]
    AlreadyExists { name: String },
    #[error("vm {name:?} not found")]
    NotFound { name: String },
    #[error("vm {name:?} is {state}: {hint}")]
    WrongState {
        name: String,
        state: &'static str,
        hint: &'static str,
    },
    #[error("{what} must be {range}, not {value}")]
    BadSize {
        what: &'static str,
        range: &'static str,
        value: u32,
    },
    #[error("image {image:?}: {detail} (expected an http(s):// URL of a qcow2 or raw disk, or a containerDisk image reference such as 127.0.0.1:5000/aurae/vm-disk:latest)")]
    BadImage { image: String, detail: String },
    #[error("disk image {url} not found: the server answered {status}")]
    HttpNotFound { url: String, status: u16 },
    #[error("disk image {url}: the server answered {status}")]
    HttpStatus { url: String, status: u16 },
    #[error("disk image {url}: host unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("disk image {image}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        image: String,
        expected: String,
        actual: String,
    },
    #[error("disk image {image} is not usable: {detail}")]
    NotADisk { image: String, detail: String },
    #[error("disk image {image} is larger than {limit} bytes")]
    TooLarge { image: String, limit: u64 },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("vm {name:?} did not boot: {detail}")]
    Boot { name: String, detail: String },
    #[error("starting the hypervisor of vm {name:?}: {source}")]
    Process {
        name: String,
        #[source]
        source: ProcessError,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("network {value:?}: {detail} (expected \"user\", \"none\" or \"bridge:NAME\")")]
    BadNetwork { value: String, detail: String },
    #[error(
        "bridge {bridge:?} does not exist: create it first (ip link add {bridge} type bridge)"
    )]
    NoBridge { bridge: String },
    #[error("tap device {tap} on bridge {bridge}: {detail}")]
    Tap {
        tap: String,
        bridge: String,
        detail: String,
    },
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

impl VmError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        VmError::Io {
            what: what.into(),
            source,
        }
    }
}
