//! `~` at the start of a configured path means the user's home, as in a shell
//! (only `~` and `~/...`; `~user` is left alone).

use std::path::{Component, Path, PathBuf};

use super::error::ConfigError;

/// `path` with a leading `~` replaced by `home`.
pub fn expand_tilde_with(path: &Path, home: Option<&Path>) -> Result<PathBuf, ConfigError> {
    let mut components = path.components();
    match components.next() {
        Some(Component::Normal(first)) if first == "~" => {
            let home = home.ok_or_else(|| ConfigError::NoHome {
                path: path.to_path_buf(),
            })?;
            Ok(home.join(components.as_path()))
        }
        _ => Ok(path.to_path_buf()),
    }
}

/// `path` with a leading `~` replaced by the current user's home.
pub fn expand_tilde(path: &Path) -> Result<PathBuf, ConfigError> {
    expand_tilde_with(path, dirs::home_dir().as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(p: &str) -> PathBuf {
        expand_tilde_with(Path::new(p), Some(Path::new("/home/me"))).expect("expands")
    }

    #[test]
    fn leading_tilde_is_home() {
        assert_eq!(expand("~"), PathBuf::from("/home/me"));
        assert_eq!(expand("~/"), PathBuf::from("/home/me"));
        assert_eq!(
            expand("~/.aurae/pki/ca.crt"),
            PathBuf::from("/home/me/.aurae/pki/ca.crt")
        );
    }

    #[test]
    fn other_paths_are_untouched() {
        for p in ["/etc/aurae/config", "rel/~/x", "~user/x", "~~", "a~"] {
            assert_eq!(expand(p), PathBuf::from(p), "{p}");
        }
    }

    #[test]
    fn no_home_is_an_error_naming_the_path() {
        let err = expand_tilde_with(Path::new("~/x"), None).expect_err("no home");
        assert!(err.to_string().contains("~/x"), "{err}");
    }
}
