//! Every way pulling an image or making a root filesystem can fail (mapped
//! to a gRPC status by auraed, in `auraed::api::status`).

use std::path::PathBuf;

use thiserror::Error;

use super::unpack::UnpackError;

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason} (expected host[:port]/repository[:tag|@sha256:digest], e.g. 127.0.0.1:5000/aurae/busybox:latest or busybox)")]
    InvalidReference { reference: String, reason: String },
    #[error("registry {registry} is unreachable: {detail}")]
    Unreachable { registry: String, detail: String },
    #[error("image {reference} not found: {detail}")]
    NotFound { reference: String, detail: String },
    #[error("image {reference} has no {wanted} manifest: its index lists {available}")]
    NoPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("registry {registry} refused access to {reference}: {detail}")]
    Denied {
        registry: String,
        reference: String,
        detail: String,
    },
    #[error("registry {registry} failed serving {reference}: {detail}")]
    Registry {
        registry: String,
        reference: String,
        detail: String,
    },
    #[error("{reference} is not a usable container image: {detail}")]
    Unsupported { reference: String, detail: String },
    #[error("{what} of {reference} failed verification: {detail}")]
    DigestMismatch {
        reference: String,
        what: String,
        detail: String,
    },
    // The cause is in the message, so it is not a `#[source]` (gRPC
    // statuses carry the message alone).
    #[error("layer {digest} of {reference} is refused: {error}")]
    Layer {
        reference: String,
        digest: String,
        error: UnpackError,
    },
    #[error("registry configuration {}: {detail}", path.display())]
    Config { path: PathBuf, detail: String },
    #[error("image store {}: {what}: {error}", path.display())]
    Store {
        path: PathBuf,
        what: &'static str,
        error: std::io::Error,
    },
    #[error("root filesystem {}: {what}: {detail}", path.display())]
    Rootfs {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error("image {reference} is not in the store (aer image ls lists what is)")]
    NotStored { reference: String },
    #[error("image {reference} is used by running containers ({containers}): stop them first")]
    InUse {
        reference: String,
        containers: String,
    },
    #[error("an image store task failed: {0}")]
    Task(String),
}

impl ImageError {
    pub(crate) fn store(
        path: impl Into<PathBuf>,
        what: &'static str,
        source: std::io::Error,
    ) -> Self {
        ImageError::Store {
            path: path.into(),
            what,
            error: source,
        }
    }

    pub(crate) fn rootfs(
        path: impl Into<PathBuf>,
        what: &'static str,
        detail: impl ToString,
    ) -> Self {
        ImageError::Rootfs {
            path: path.into(),
            what,
            detail: detail.to_string(),
        }
    }
}

/// Library messages start with a capital ("Connection refused"); ours are
/// lowercase sentences, so a message quoted inside ours is lowered too.
pub(crate) fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_name_the_registry() {
        let e = ImageError::Unreachable {
            registry: "127.0.0.1:5999".into(),
            detail: "connection refused".into(),
        };
        assert_eq!(
            e.to_string(),
            "registry 127.0.0.1:5999 is unreachable: connection refused"
        );
    }
}
