//! Where the client config is looked for, in order.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::tilde::expand_tilde_with;

/// Names the one config to use; when set, no other location is tried.
pub const ENV_CONFIG: &str = "AURAE_CONFIG";
pub const USER_CONFIG_IN_HOME: &str = ".aurae/config";
pub const SYSTEM_CONFIG: &str = "/etc/aurae/config";

/// The paths to try, in order: `$AURAE_CONFIG` alone when it is set and not
/// empty (a named config that is missing is an error, not a reason to pick
/// another), else `~/.aurae/config` (when there is a home) and
/// `/etc/aurae/config`.
pub fn candidates(env: Option<&OsStr>, home: Option<&Path>) -> Result<Vec<PathBuf>, ConfigError> {
    if let Some(env) = env.filter(|v| !v.is_empty()) {
        return Ok(vec![expand_tilde_with(Path::new(env), home)?]);
    }
    let mut paths = Vec::new();
    if let Some(home) = home {
        paths.push(home.join(USER_CONFIG_IN_HOME));
    }
    paths.push(PathBuf::from(SYSTEM_CONFIG));
    Ok(paths)
}
