//! Writing PKI material without ever exposing a key: files are created with
//! their final mode (never chmod-ed afterwards, which would leave a window)
//! and replaced by an atomic rename, so a reader never sees half a key.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::PkiError;

/// Mode of private keys.
pub(super) const SECRET: u32 = 0o600;
/// Mode of certificates and the client config: nothing in them is secret.
pub(super) const PUBLIC: u32 = 0o644;
/// Mode of directories this module creates: they hold private keys.
pub(super) const KEY_DIR: u32 = 0o700;

/// Creates `dir` and missing parents with mode 0700; an existing dir is left as it is.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(KEY_DIR)
        .create(dir)
        .map_err(PkiError::io("create directory", dir))
}

/// True when anything (even a dangling symlink) is at `path`.
pub(super) fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

pub(super) fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(PkiError::io("read", path))
}

/// Writes a file that must not exist yet. `create_new` (O_EXCL) also refuses
/// to follow a symlink planted at `path`.
pub(super) fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::AlreadyExists {
                    path: path.to_path_buf(),
                }
            } else {
                PkiError::Io {
                    action: "create",
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(PkiError::io("write", path))
}

/// Replaces (or creates) `path` atomically: a fresh temp file in the same
/// directory, then a rename over the old one.
pub(super) fn replace(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let tmp = temp_path(path);
    write_new(&tmp, contents, mode)?;
    std::fs::rename(&tmp, path).map_err(|source| {
        // Best effort: a leftover temp file would only hold what we meant to write.
        let _ = std::fs::remove_file(&tmp);
        PkiError::Io {
            action: "replace",
            path: path.to_path_buf(),
            source,
        }
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{nanos}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn new_files_get_their_mode_and_are_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("k");
        write_new(&key, "secret", SECRET).expect("write");
        assert_eq!(mode(&key), 0o600);
        assert!(matches!(
            write_new(&key, "other", SECRET),
            Err(PkiError::AlreadyExists { .. })
        ));
        assert_eq!(std::fs::read_to_string(&key).expect("read"), "secret");
    }

    #[test]
    fn replace_swaps_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("k");
        write_new(&key, "old", PUBLIC).expect("write");
        replace(&key, "new", SECRET).expect("replace");
        assert_eq!(std::fs::read_to_string(&key).expect("read"), "new");
        assert_eq!(mode(&key), 0o600);
        let entries = std::fs::read_dir(dir.path()).expect("read_dir").count();
        assert_eq!(entries, 1);
    }

    #[test]
    fn dirs_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a/b");
        ensure_dir(&nested).expect("mkdir");
        assert_eq!(mode(&nested), 0o700);
        ensure_dir(&nested).expect("existing dir is fine");
    }
}
