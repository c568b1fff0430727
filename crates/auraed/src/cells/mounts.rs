//! Mounts under a cell's directory: a private bind mount of the directory on
//! itself (so nothing mounted below it propagates to other mount
//! namespaces), and a sweep that unmounts everything below a directory,
//! found in /proc/self/mountinfo, so teardown and leftover clean-up never
//! depend on remembering what was mounted.

use std::io;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::mountinfo::mounted_under;

/// Unmounts everything at or below `dir`, newest first (lazily, so a busy
/// mount cannot keep the rest in place). Fails if anything is still mounted.
pub(crate) fn unmount_under(dir: &Path) -> io::Result<()> {
    // Stacked mounts show up once per layer: a few rounds take them all.
    for _ in 0..8 {
        let mounted = mounted_under(dir)?;
        if mounted.is_empty() {
            return Ok(());
        }
        for point in mounted.iter().rev() {
            match umount2(point, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => {
                    return Err(io::Error::other(format!(
                        "unmounting {}: {e}",
                        point.display()
                    )))
                }
            }
        }
    }
    let left = mounted_under(dir)?;
    if left.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(format!("still mounted: {left:?}")))
    }
}

/// Bind-mounts `dir` on itself and makes it private: mounts made below it
/// (namespace files, root filesystems) then stay in the daemon's namespace.
pub(crate) fn make_private(dir: &Path) -> io::Result<()> {
    mount(
        Some(dir),
        dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| io::Error::other(format!("bind-mounting {} on itself: {e}", dir.display())))?;
    if let Err(e) = mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None::<&str>,
    ) {
        let _ = umount2(dir, MntFlags::MNT_DETACH);
        return Err(io::Error::other(format!(
            "making {} a private mount: {e}",
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmount_under_a_directory_without_mounts_is_a_no_op() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        unmount_under(dir.path()).expect("nothing to do");
    }
}
