//! Leaving the initramfs: the kernel unpacks it into `rootfs`, the root of
//! the mount tree, which pivot_root cannot move, so no container
//! (libcontainer pivots into its root) could start in an instance. PID 1
//! copies the image into a tmpfs, empties rootfs to give its memory back,
//! moves the tmpfs over `/`, chroots into it and executes itself again, as
//! busybox's switch_root does. Containers then pivot from the tmpfs.

use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};

use super::InitError;

/// Where the new root is assembled (inside rootfs, removed by the move).
const NEW_ROOT: &str = "/.aurae-root";

/// Whether `/` is still the kernel's rootfs: its mountinfo line says so.
pub fn on_rootfs(mountinfo: &str) -> bool {
    mountinfo.lines().any(|l| {
        let mut halves = l.split(" - ");
        let mount_point = halves.next().and_then(|h| h.split(' ').nth(4));
        let fstype = halves.next().and_then(|h| h.split(' ').next());
        mount_point == Some("/") && fstype == Some("rootfs")
    })
}

/// Copies the image to a tmpfs, switches to it and executes `/init` in it
/// (never returns on success). /proc must not be mounted.
pub fn switch_to_tmpfs() -> Result<std::convert::Infallible, InitError> {
    let root = Path::new(NEW_ROOT);
    std::fs::create_dir_all(root).map_err(InitError::io("creating the new root"))?;
    nix::mount::mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(|e| InitError::io("mounting the new root")(e.into()))?;
    for entry in read_dir(Path::new("/"))? {
        let name = entry.file_name();
        if name == root.file_name().unwrap_or_default() {
            continue;
        }
        copy_tree(&entry.path(), &root.join(&name))?;
        // Frees the memory the initramfs held; what cannot go is harmless.
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(entry.path()),
            _ => std::fs::remove_file(entry.path()),
        };
    }
    let sys = |what: &'static str| move |e: nix::Error| InitError::io(what)(e.into());
    nix::unistd::chdir(root).map_err(sys("entering the new root"))?;
    nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(sys("moving the new root over /"))?;
    nix::unistd::chroot(".").map_err(sys("chroot into the new root"))?;
    nix::unistd::chdir("/").map_err(sys("entering /"))?;
    let init = CString::from(c"/init");
    let err = nix::unistd::execv(&init, &[init.as_c_str()]).unwrap_err();
    Err(InitError::io("executing /init in the new root")(err.into()))
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, InitError> {
    std::fs::read_dir(dir)
        .and_then(|d| d.collect::<Result<Vec<_>, _>>())
        .map_err(InitError::io(format!("reading {}", dir.display())))
}

/// Files, directories, symlinks and device nodes (/dev/console), with
/// their modes; everything in an image belongs to root.
fn copy_tree(from: &Path, to: &Path) -> Result<(), InitError> {
    let err = || InitError::io(format!("copying {} to the new root", from.display()));
    let meta = std::fs::symlink_metadata(from).map_err(err())?;
    let kind = meta.file_type();
    if kind.is_dir() {
        std::fs::create_dir(to).map_err(err())?;
        for entry in read_dir(from)? {
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if kind.is_symlink() {
        let target = std::fs::read_link(from).map_err(err())?;
        std::os::unix::fs::symlink(target, to).map_err(err())?;
        return Ok(());
    } else if kind.is_file() {
        std::fs::copy(from, to).map_err(err())?;
    } else if kind.is_char_device() || kind.is_block_device() {
        let sflag = if kind.is_char_device() {
            SFlag::S_IFCHR
        } else {
            SFlag::S_IFBLK
        };
        nix::sys::stat::mknod(
            to,
            sflag,
            Mode::from_bits_truncate(meta.mode()),
            meta.rdev(),
        )
        .map_err(|e| err()(e.into()))?;
    } else {
        return Ok(());
    }
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_is_recognised_from_mountinfo() {
        let initramfs = "1 1 0:2 / / rw - rootfs none rw,size=233220k\n22 1 0:20 / /proc rw,nosuid - proc proc rw\n";
        // After the switch rootfs lies outside the chroot and is not listed.
        let switched = "25 1 0:22 / / rw - tmpfs tmpfs rw,mode=755\n";
        let host = "28 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n";
        assert!(on_rootfs(initramfs));
        assert!(!on_rootfs(switched));
        assert!(!on_rootfs(host));
    }
}
