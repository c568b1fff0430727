//! Every way an instance operation can fail (mapped to a gRPC status in
//! `crate::api::instances`).

use std::path::PathBuf;

use thiserror::Error;

use crate::pki::PkiError;
use crate::state::StateError;
use crate::validation::NameError;
use crate::vms::VmError;

#[derive(Debug, Error)]
pub enum InstanceError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("instance name {name:?} is not a DNS label (its certificate names it): use letters, digits and '-', starting with a letter, at most 63")]
    NotDnsLabel { name: String },
    #[error("instance {name:?} already exists: free it first (aer instance free {name})")]
    AlreadyExists { name: String },
    #[error("instance {name:?} not found")]
    NotFound { name: String },
    #[error("the instance image is missing: {} does not exist; build it with hack/build-instance-image.sh {} (or point --instance-image-dir at one)", missing.display(), dir.display())]
    NoImage { dir: PathBuf, missing: PathBuf },
    #[error("the CA key {} is not readable ({source}): nested instances need the CA's key to get certificates; give it with --ca-key", path.display())]
    NoCaKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA certificate {} is not readable ({source}); give it with --ca-crt", path.display())]
    NoCaCrt {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("issuing the certificates of instance {name:?}: {source}")]
    Pki {
        name: String,
        #[source]
        source: PkiError,
    },
    #[error("handing the pod's images to the instance")]
    Image(#[from] crate::images::ImageError),
    #[error("writing the initramfs of the instance")]
    Initramfs(#[from] super::cpio::CpioError),
    #[error("no free address left in --instance-subnet {subnet}: free an instance or give a larger subnet")]
    PoolExhausted { subnet: String },
    #[error("network of instance {name:?}: {detail}")]
    Network { name: String, detail: String },
    #[error(transparent)]
    Hypervisor(#[from] VmError),
    #[error("instance {name:?} did not answer over mTLS at {address} within {secs}s: {detail}")]
    NotAnswering {
        name: String,
        address: String,
        secs: u64,
        detail: String,
    },
    #[error("the hypervisor of instance {name:?} exited while it booted: {detail}")]
    Exited { name: String, detail: String },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

impl InstanceError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        InstanceError::Io(what.into(), source)
    }
}
