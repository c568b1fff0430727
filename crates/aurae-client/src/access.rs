//! Why this user cannot reach a path: for messages that say what to change
//! rather than only "permission denied".

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags, Group, User};

/// The first directory on the way to `path` that this user may not enter.
pub fn blocking_dir(path: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
    dirs.reverse();
    dirs.into_iter()
        .filter(|d| !d.as_os_str().is_empty())
        .find(|d| access(*d, AccessFlags::X_OK).is_err())
        .map(Path::to_path_buf)
}

/// `mode 0600, owner root, group root` of a file this user can stat.
pub fn mode_owner_group(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let user = User::from_uid(meta.uid().into())
        .ok()
        .flatten()
        .map_or_else(|| meta.uid().to_string(), |u| u.name);
    let group = Group::from_gid(meta.gid().into())
        .ok()
        .flatten()
        .map_or_else(|| meta.gid().to_string(), |g| g.name);
    Some(format!(
        "mode {:04o}, owner {user}, group {group}",
        meta.mode() & 0o7777
    ))
}
