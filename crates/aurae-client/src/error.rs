use std::path::PathBuf;

use thiserror::Error;

use crate::config::ConfigError;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error("could not read the {what} {}", path.display())]
    ReadPem {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{} holds no PEM {what}", path.display())]
    NotPem { what: &'static str, path: PathBuf },

    #[error("the config names both a socket ({socket}) and an address ({address}): keep one")]
    AmbiguousTarget { socket: String, address: String },

    #[error("invalid daemon address {address:?}: give host:port, e.g. 10.0.0.5:8080")]
    InvalidAddress {
        address: String,
        source: tonic::transport::Error,
    },

    #[error("invalid TLS settings")]
    Tls(#[source] tonic::transport::Error),

    #[error("could not connect to auraed at {target}")]
    Connect {
        target: String,
        source: tonic::transport::Error,
    },

    #[error(
        "permission denied on the daemon's socket {} ({detail}): without --socket-group auraed lets only its owner use the socket; \
         start auraed with --socket-group GROUP (the socket is then mode 0660) and add this user to GROUP, or run aer as root",
        path.display()
    )]
    SocketDenied { path: PathBuf, detail: String },

    /// The call reached no answer or the daemon answered with an error; the
    /// status carries its code and message.
    #[error("the call failed")]
    Status(#[from] tonic::Status),
}

impl ClientError {
    /// The gRPC status of a failed call.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            ClientError::Status(s) => Some(s),
            _ => None,
        }
    }
}
