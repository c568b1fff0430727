//! The client config file (TOML), as written by `auraed pki init`:
//!
//! ```toml
//! [auth]
//! ca_crt = "~/.aurae/pki/ca.crt"
//! client_crt = "~/.aurae/pki/_signed.client.admin.crt"
//! client_key = "~/.aurae/pki/client.admin.key"
//!
//! [system]
//! socket = "/var/run/aurae/aurae.sock"   # or: address = "10.0.0.5:8080"
//! # server_name = "server.unsafe.aurae.io"
//! ```
//!
//! Paths may start with `~`; relative paths are relative to the config
//! file's directory, so a config and its PKI can move together.

mod discovery;
mod error;
mod tilde;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use discovery::{candidates, ENV_CONFIG, SYSTEM_CONFIG, USER_CONFIG_IN_HOME};
pub use error::ConfigError;
pub use tilde::{expand_tilde, expand_tilde_with};

/// Daemon socket when the config names neither a socket nor an address.
pub const DEFAULT_SOCKET: &str = "/var/run/aurae/aurae.sock";
/// Name verified in the server certificate unless `system.server_name` says otherwise.
pub const DEFAULT_SERVER_NAME: &str = "server.unsafe.aurae.io";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuraeConfig {
    pub auth: AuthConfig,
    #[serde(default)]
    pub system: SystemConfig,
}

/// The client's mTLS identity and the CA it trusts the daemon by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    pub ca_crt: PathBuf,
    pub client_crt: PathBuf,
    pub client_key: PathBuf,
}

/// Where the daemon is: a Unix socket or a TCP address, not both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemConfig {
    pub socket: Option<String>,
    /// `host:port` for TCP, e.g. `10.0.0.5:8080` or `[::1]:8080`.
    pub address: Option<String>,
    /// Name expected in the server certificate (default `server.unsafe.aurae.io`).
    pub server_name: Option<String>,
}

impl SystemConfig {
    pub fn server_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or(DEFAULT_SERVER_NAME)
    }
}

impl AuraeConfig {
    /// Parses config text as is: no `~` expansion, no path resolution.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_from(text, "text")
    }

    /// Reads the config at `path` (after `~` expansion) and resolves its
    /// paths: `~` expanded, relative ones joined to the file's directory.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::from_path_with_home(path.as_ref(), dirs::home_dir().as_deref())
    }

    /// The first config of the discovery order: `$AURAE_CONFIG` if set
    /// (then only it), else `~/.aurae/config`, else `/etc/aurae/config`.
    pub fn from_default_locations() -> Result<Self, ConfigError> {
        let env = std::env::var_os(ENV_CONFIG);
        Ok(Self::discover_with(env.as_deref(), dirs::home_dir().as_deref())?.1)
    }

    /// Discovery with the environment and home given, for callers that want
    /// to know which file was used. Returns that file and its config.
    pub fn discover_with(
        env: Option<&std::ffi::OsStr>,
        home: Option<&Path>,
    ) -> Result<(PathBuf, Self), ConfigError> {
        let tried = candidates(env, home)?;
        let explicit = env.is_some_and(|e| !e.is_empty());
        for (i, path) in tried.iter().enumerate() {
            match Self::from_path_with_home(path, home) {
                // Only a missing file moves on: an unreadable or invalid one
                // is an error, never silently skipped for the next.
                Err(ConfigError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue
                }
                // Typically /etc/aurae/config under a 0700 /etc/aurae, for a
                // user without a config of its own: say what is missing and
                // what is unreadable, and what to do, not just EACCES.
                Err(ConfigError::Read { source, .. })
                    if !explicit && source.kind() == std::io::ErrorKind::PermissionDenied =>
                {
                    return Err(ConfigError::Denied {
                        missing: tried[..i].to_vec(),
                        path: path.clone(),
                        blocked_dir: crate::access::blocking_dir(path),
                    })
                }
                other => return other.map(|config| (path.clone(), config)),
            }
        }
        Err(ConfigError::NotFound { tried })
    }

    fn from_path_with_home(path: &Path, home: Option<&Path>) -> Result<Self, ConfigError> {
        let path = expand_tilde_with(path, home)?;
        // Absolute, so that paths resolved against its directory (and the
        // errors naming them) do not depend on the working directory.
        let path = std::path::absolute(&path).unwrap_or(path);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let mut config = Self::parse_from(&text, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve(base, home)?;
        Ok(config)
    }

    fn parse_from(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_string(),
            source,
        })
    }

    /// Expands `~` and anchors relative paths at `base` (the config's directory).
    pub fn resolve(&mut self, base: &Path, home: Option<&Path>) -> Result<(), ConfigError> {
        let fix = |p: &Path| -> Result<PathBuf, ConfigError> {
            Ok(base.join(expand_tilde_with(p, home)?))
        };
        self.auth.ca_crt = fix(&self.auth.ca_crt)?;
        self.auth.client_crt = fix(&self.auth.client_crt)?;
        self.auth.client_key = fix(&self.auth.client_key)?;
        if let Some(socket) = &self.system.socket {
            self.system.socket = Some(fix(Path::new(socket))?.to_string_lossy().into_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
