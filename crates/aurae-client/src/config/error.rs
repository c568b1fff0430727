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

    #[error("{}", denied_text(missing, path, blocked_dir.as_deref()))]
    Denied {
        missing: Vec<PathBuf>,
        path: PathBuf,
        blocked_dir: Option<PathBuf>,
    },

    #[error("cannot expand \"~\" in {}: the home directory is unknown", path.display())]
    NoHome { path: PathBuf },
}

fn denied_text(
    missing: &[PathBuf],
    path: &std::path::Path,
    blocked: Option<&std::path::Path>,
) -> String {
    let missing = match missing {
        [] => String::new(),
        m => format!(
            "no client config at {}, and ",
            m.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    };
    let why = match blocked {
        Some(dir) => format!(
            "the directory {} is not accessible to this user",
            dir.display()
        ),
        None => "permission denied".to_string(),
    };
    format!(
        "{missing}{} cannot be read ({why}): run aer as root (e.g. with sudo), or use a client config of your own: \
         ask the node's administrator for a client certificate (`auraed pki init --client-name NAME --client-dir DIR --config DIR/config` makes one) \
         and put its config at ~/.aurae/config, or name it with --config or ${}",
        path.display(),
        super::discovery::ENV_CONFIG
    )
}
