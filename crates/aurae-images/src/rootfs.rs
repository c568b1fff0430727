//! A container's root filesystem: the image's unpacked layers stacked with
//! overlayfs (lower dirs shared read-only, one upper and work dir per
//! container), or, when overlay cannot be mounted, a private copy of the
//! layers with the whiteouts applied while copying.
//!
//! Inside `container_dir` this creates `rootfs/` (the mount point or the
//! copy), `upper/` and `work/` (overlay), and `l/` (short symlinks to the
//! layers, only when the mount options would exceed a page).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::error::ImageError;
use super::unpack::OVERLAY_OPAQUE_XATTR;
use aurae_kernel::xattr;

/// Longest overlay mount option string (the kernel copies one page).
const MAX_MOUNT_DATA: usize = 4000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsKind {
    /// overlayfs over the shared layer directories.
    Overlay,
    /// A private copy of the layers (overlay unavailable).
    Copy,
}

/// A mounted (or copied) root filesystem. [`Rootfs::unmount`] removes it;
/// dropping it does the same, best effort.
#[derive(Debug)]
pub struct Rootfs {
    /// The directory to use as the container's root.
    pub path: PathBuf,
    pub kind: RootfsKind,
    container_dir: PathBuf,
    created_container_dir: bool,
    done: bool,
    /// The store's lease on the layers, removed with the root filesystem.
    lease: Option<PathBuf>,
}

/// Makes the root filesystem for one container from `layers` (lowest first)
/// under `container_dir` (created if missing; its `rootfs`, `upper`, `work`
/// and `l` entries must not exist).
pub fn mount_rootfs(layers: &[PathBuf], container_dir: &Path) -> Result<Rootfs, ImageError> {
    let created_container_dir = !container_dir.exists();
    fs::create_dir_all(container_dir)
        .map_err(|e| ImageError::rootfs(container_dir, "creating the container directory", e))?;
    // /proc/self/mountinfo names mounts by their resolved path (/var/run is
    // often a symlink to /run): work with that one throughout.
    let container_dir = &fs::canonicalize(container_dir)
        .map_err(|e| ImageError::rootfs(container_dir, "resolving the container directory", e))?;
    let path = container_dir.join("rootfs");
    fs::create_dir(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            ImageError::rootfs(
                &path,
                "creating the mount point",
                "it already exists (left by a crash? remove_rootfs clears it)",
            )
        } else {
            ImageError::rootfs(&path, "creating the mount point", e)
        }
    })?;
    let mut rootfs = Rootfs {
        path,
        kind: RootfsKind::Overlay,
        container_dir: container_dir.to_path_buf(),
        created_container_dir,
        done: false,
        lease: None,
    };
    if layers.is_empty() {
        rootfs.kind = RootfsKind::Copy;
        return Ok(rootfs);
    }
    match mount_overlay(layers, container_dir, &rootfs.path) {
        Ok(()) => {
            tracing::debug!(rootfs = %rootfs.path.display(), layers = layers.len(), "overlay root filesystem mounted");
            Ok(rootfs)
        }
        Err(why) => {
            tracing::warn!(
                rootfs = %rootfs.path.display(),
                reason = %why,
                "overlayfs cannot be mounted: copying the image layers instead (slower, uses disk)"
            );
            for dir in ["upper", "work", "l"] {
                let _ = fs::remove_dir_all(container_dir.join(dir));
            }
            rootfs.kind = RootfsKind::Copy;
            if let Err(e) = copy_layers(layers, &rootfs.path) {
                let err = ImageError::rootfs(&rootfs.path, "copying the layers", e);
                drop(rootfs);
                return Err(err);
            }
            Ok(rootfs)
        }
    }
}

fn mount_overlay(layers: &[PathBuf], container_dir: &Path, target: &Path) -> Result<(), String> {
    let upper = container_dir.join("upper");
    let work = container_dir.join("work");
    for dir in [&upper, &work] {
        fs::create_dir(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    fs::set_permissions(&upper, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", upper.display()))?;
    let mut data = overlay_options(layers.iter().map(PathBuf::as_path), &upper, &work)?;
    if data.len() > MAX_MOUNT_DATA {
        // Short names for long layer paths, as Docker's overlay2 does.
        let links = container_dir.join("l");
        fs::create_dir(&links).map_err(|e| format!("creating {}: {e}", links.display()))?;
        let mut short = Vec::with_capacity(layers.len());
        for (i, layer) in layers.iter().enumerate() {
            let link = links.join(i.to_string());
            std::os::unix::fs::symlink(layer, &link)
                .map_err(|e| format!("linking {}: {e}", link.display()))?;
            short.push(link);
        }
        data = overlay_options(short.iter().map(PathBuf::as_path), &upper, &work)?;
        if data.len() > MAX_MOUNT_DATA {
            return Err(format!(
                "the overlay mount options are {} bytes: at most {MAX_MOUNT_DATA} fit ({} layers)",
                data.len(),
                layers.len()
            ));
        }
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| format!("mount -t overlay: {e}"))
}

/// `lowerdir=top:...:bottom,upperdir=..,workdir=..` for layers given lowest first.
fn overlay_options<'a>(
    layers: impl DoubleEndedIterator<Item = &'a Path>,
    upper: &Path,
    work: &Path,
) -> Result<String, String> {
    let check = |p: &Path| -> Result<String, String> {
        let s = p
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", p.display()))?;
        if s.contains([':', ',', '\\', '\n']) {
            return Err(format!(
                "{s} has a character overlayfs options cannot carry (: , \\)"
            ));
        }
        Ok(s.to_string())
    };
    let lower = layers.rev().map(check).collect::<Result<Vec<_>, _>>()?;
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        check(upper)?,
        check(work)?
    ))
}

impl Rootfs {
    /// Unmounts and removes the root filesystem and its overlay directories
    /// (and `container_dir` when [`mount_rootfs`] created it and it is empty).
    pub fn unmount(mut self) -> Result<(), ImageError> {
        self.teardown()
    }

    pub fn container_dir(&self) -> &Path {
        &self.container_dir
    }

    /// Leaves the root filesystem mounted and leased for a container that
    /// outlives this handle (a detached cell's); the cell's removal
    /// unmounts it (`remove_rootfs`).
    pub fn leave_mounted(mut self) {
        self.done = true;
    }

    pub(super) fn set_lease(&mut self, lease: PathBuf) {
        self.lease = Some(lease);
    }

    fn teardown(&mut self) -> Result<(), ImageError> {
        if self.done {
            return Ok(());
        }
        remove_rootfs(&self.container_dir)?;
        if let Some(lease) = self.lease.take() {
            if let Err(e) = super::records::remove(&lease) {
                // Harmless: a lease without its rootfs no longer holds.
                tracing::debug!(lease = %lease.display(), error = %e, "could not remove a layer lease");
            }
        }
        if self.created_container_dir {
            let _ = fs::remove_dir(&self.container_dir);
        }
        self.done = true;
        Ok(())
    }
}

/// Unmounts whatever is mounted at or below `container_dir/rootfs` and
/// removes the directories [`mount_rootfs`] makes in `container_dir`
/// (`rootfs`, `upper`, `work`, `l`). For clean-up after a crash, when no
/// [`Rootfs`] is left to drop; harmless when they are already gone.
pub fn remove_rootfs(container_dir: &Path) -> Result<(), ImageError> {
    let container_dir = match fs::canonicalize(container_dir) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ImageError::rootfs(container_dir, "resolving it", e)),
    };
    let path = container_dir.join("rootfs");
    let mountinfo = |p: &Path| {
        aurae_kernel::mountinfo::mounted_under(p)
            .map_err(|e| ImageError::rootfs(p, "reading /proc/self/mountinfo", e))
    };
    // Mounts a runtime left below the root filesystem go first, deepest first.
    let mut mounts = mountinfo(&path)?;
    mounts.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    mounts.dedup();
    for m in &mounts {
        match umount2(m.as_path(), MntFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(nix::errno::Errno::EBUSY) => {
                tracing::warn!(mount = %m.display(), "mount busy: detaching it lazily");
                umount2(m.as_path(), MntFlags::MNT_DETACH)
                    .map_err(|e| ImageError::rootfs(m, "unmounting", e))?;
            }
            Err(e) => return Err(ImageError::rootfs(m, "unmounting", e)),
        }
    }
    if !mountinfo(&path)?.is_empty() {
        return Err(ImageError::rootfs(
            &path,
            "removing it",
            "something is still mounted there",
        ));
    }
    // Nothing is mounted below: removing recursively cannot reach a layer.
    for dir in ["rootfs", "upper", "work", "l"] {
        let p = container_dir.join(dir);
        remove_if_exists(&p).map_err(|e| ImageError::rootfs(&p, "removing it", e))?;
    }
    Ok(())
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::warn!(rootfs = %self.path.display(), error = %e, "could not remove a root filesystem");
        }
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Copies `layers` (lowest first, overlay-form whiteouts) into `dest`,
/// applying whiteouts and opaque directories as it goes. Never follows a
/// symlink: a name that is a symlink in `dest` is replaced, not entered.
pub fn copy_layers(layers: &[PathBuf], dest: &Path) -> io::Result<()> {
    for layer in layers {
        let mut links = HashMap::new();
        merge_dir(layer, dest, &mut links)?;
        copy_meta(&fs::symlink_metadata(layer)?, dest, false)?;
    }
    Ok(())
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn merge_dir(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let s = entry.path();
        let d = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&s)?;
        let ft = meta.file_type();
        if is_whiteout(&meta) {
            remove_any(&d)?;
            continue;
        }
        if ft.is_dir() {
            let opaque = xattr::lget(&s, OVERLAY_OPAQUE_XATTR)?.is_some_and(|v| v == b"y");
            match fs::symlink_metadata(&d) {
                Ok(m) if m.is_dir() => {
                    if opaque {
                        for child in fs::read_dir(&d)? {
                            remove_any(&child?.path())?;
                        }
                    }
                }
                Ok(_) => {
                    fs::remove_file(&d)?;
                    fs::create_dir(&d)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&d)?,
                Err(e) => return Err(e),
            }
            merge_dir(&s, &d, links)?;
            copy_meta(&meta, &d, false)?;
            continue;
        }
        remove_any(&d)?;
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&s)?, &d)?;
            copy_meta(&meta, &d, true)?;
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&key) {
                    fs::hard_link(first, &d)?;
                    continue;
                }
            }
            fs::copy(&s, &d)?;
            if let Some(cap) = xattr::lget(&s, "security.capability")? {
                xattr::lset(&d, "security.capability", &cap)?;
            }
            copy_meta(&meta, &d, false)?;
            if meta.nlink() > 1 {
                links.insert(key, d);
            }
        } else if ft.is_fifo() {
            nix::unistd::mkfifo(
                &d,
                nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o777),
            )?;
            copy_meta(&meta, &d, false)?;
        } else {
            tracing::debug!(path = %s.display(), "skipping a special file while copying a layer");
        }
    }
    Ok(())
}

/// Owner (as root), mode (after the owner: chown clears setuid) and mtime.
fn copy_meta(meta: &fs::Metadata, dst: &Path, symlink: bool) -> io::Result<()> {
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
    }
    if !symlink {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    let mtime = nix::sys::time::TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dst,
        &mtime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_put_the_top_layer_first() {
        let layers = [PathBuf::from("/s/l1"), PathBuf::from("/s/l2")];
        let o = overlay_options(
            layers.iter().map(PathBuf::as_path),
            Path::new("/c/upper"),
            Path::new("/c/work"),
        )
        .unwrap();
        assert_eq!(o, "lowerdir=/s/l2:/s/l1,upperdir=/c/upper,workdir=/c/work");
        let bad = [PathBuf::from("/s/a:b")];
        assert!(overlay_options(
            bad.iter().map(PathBuf::as_path),
            Path::new("/u"),
            Path::new("/w")
        )
        .is_err());
    }
}
