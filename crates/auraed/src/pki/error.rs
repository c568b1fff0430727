//! Everything that can go wrong while creating, loading or reading certificates.

use std::path::PathBuf;

use thiserror::Error;

use crate::validation::NameError;

#[derive(Debug, Error)]
pub enum PkiError {
    #[error("invalid client name")]
    InvalidClientName(#[source] NameError),

    #[error("validity of {days} days is out of range: give 1 to {max} days")]
    Validity { days: u32, max: u32 },

    #[error(
        "certificate would be valid from {not_before} until {not_after}, which is not after it"
    )]
    EmptyValidity {
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    },

    #[error("could not {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("could not generate {what}")]
    Generate { what: String, source: rcgen::Error },

    #[error("could not read the private key of {what}")]
    Key { what: String, source: rcgen::Error },

    #[error("{what} is not a PEM certificate")]
    Pem {
        what: String,
        source: x509_parser::error::PEMError,
    },

    #[error("{what} is not a valid X.509 certificate")]
    X509 {
        what: String,
        source: x509_parser::error::X509Error,
    },

    #[error("the private key of {what} does not belong to its certificate")]
    KeyMismatch { what: String },

    #[error("{what} expired at {not_after}: replace the CA (force) to issue new certificates")]
    CaExpired {
        what: String,
        not_after: time::OffsetDateTime,
    },

    #[error(
        "{} exists but {} does not: they belong together, so nothing was overwritten (rerun with force to replace both)",
        present.display(),
        missing.display()
    )]
    IncompletePair { present: PathBuf, missing: PathBuf },

    #[error("{} already exists: refusing to overwrite it", path.display())]
    AlreadyExists { path: PathBuf },

    #[error("could not render the client config {}", path.display())]
    Config {
        path: PathBuf,
        source: toml::ser::Error,
    },
}

impl PkiError {
    pub(super) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| PkiError::Io {
            action,
            path,
            source,
        }
    }
}
