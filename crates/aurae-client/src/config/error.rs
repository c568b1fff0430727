use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("could not read the client config {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("the client config {origin} is not valid")]
    Parse {
        origin: String,
        source: toml::de::Error,
    },

    #[error(
        "no client config found (tried {}): create one with `auraed pki init`, or point ${} at one",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        super::discovery::ENV_CONFIG
    )]
    NotFound { tried: Vec<PathBuf> },

    #[error("cannot expand \"~\" in {}: the home directory is unknown", path.display())]
    NoHome { path: PathBuf },
}
