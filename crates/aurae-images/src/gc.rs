//! Garbage collection of the store: the images it keeps (List, Remove),
//! root filesystems made from its layers under a lease, and Prune, which
//! removes every blob and unpacked layer that no kept image and no running
//! container needs.
//!
//! What keeps content alive:
//! - an image record (`index/`) keeps its blobs and its unpacked layers;
//! - a lease (`leases/`, written by [`ImageStore::mount_rootfs`]) keeps the
//!   layers of a container's root filesystem while that container has one,
//!   also across a daemon restart and after its image was removed;
//! - any overlay mount on the host whose lower directories are layers of the
//!   store (a root filesystem made without a lease) keeps those layers.
//!
//! Pulls hold the store's collection lock shared for their whole length and
//! Prune and Remove hold it exclusively, so a blob a pull just stored cannot
//! vanish before its record is written. Leases are written under a second,
//! blocking lock that Prune also holds while it decides and deletes: a root
//! filesystem is either seen by Prune or made after it, from layers checked
//! to still exist.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::digest::Digest;
use super::error::ImageError;
use super::records::{self, ImageRecord, LeaseRecord};
use super::reference::ImageReference;
use super::rootfs::{mount_rootfs, Rootfs};
use super::store::ImageStore;

/// A kept image and the containers whose root filesystems use it.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub record: ImageRecord,
    /// Container directories holding a lease on this reference.
    pub containers: Vec<PathBuf>,
}

/// What a Prune or Remove freed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// References of the image records removed.
    pub images_removed: Vec<String>,
    pub blobs_removed: u64,
    pub layers_removed: u64,
    /// Bytes of the removed blobs and layer directories.
    pub bytes_freed: u64,
}

/// The store's directories, cloned into blocking tasks.
#[derive(Debug, Clone)]
struct Dirs {
    root: PathBuf,
}

impl Dirs {
    fn index(&self) -> PathBuf {
        self.root.join("index")
    }
    fn leases(&self) -> PathBuf {
        self.root.join("leases")
    }
    fn blobs(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }
    fn unpacked(&self) -> PathBuf {
        self.root.join("unpacked/sha256")
    }
    fn tmp(&self, what: &str) -> PathBuf {
        self.root.join("tmp").join(format!(
            "{what}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ))
    }
}

impl ImageStore {
    fn dirs(&self) -> Dirs {
        Dirs {
            root: self.root().to_path_buf(),
        }
    }

    /// Records `image` as kept (called at the end of a successful pull).
    pub(super) fn record_image(&self, record: &ImageRecord) -> Result<(), ImageError> {
        let dirs = self.dirs();
        let path = records::record_path(&dirs.index(), &record.reference);
        records::write(&path, &dirs.tmp("record"), record)
            .map_err(|e| ImageError::store(&path, "writing the image record", e))
    }

    /// The kept images, sorted by reference.
    pub async fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let dirs = self.dirs();
        blocking(move || {
            let leases = holding_leases(&dirs, false)?;
            let mut images: Vec<ImageInfo> = read_images(&dirs)?
                .into_iter()
                .map(|(_, record)| ImageInfo {
                    containers: leases
                        .iter()
                        .filter(|l| l.reference == record.reference)
                        .map(|l| l.holder.clone())
                        .collect(),
                    record,
                })
                .collect();
            images.sort_by(|a, b| a.record.reference.cmp(&b.record.reference));
            Ok(images)
        })
        .await
    }

    /// Forgets the image `reference` and frees what nothing else needs.
    /// Refused while a container's root filesystem uses it.
    pub async fn remove(&self, reference: &str) -> Result<PruneReport, ImageError> {
        let r = ImageReference::parse(reference)?.to_string();
        let _gc = self.gc_lock().write().await;
        let dirs = self.dirs();
        let leases = self.lease_lock();
        blocking(move || {
            let _leases = leases.lock().unwrap_or_else(|p| p.into_inner());
            let path = records::record_path(&dirs.index(), &r);
            let record: Option<ImageRecord> = records::read(&path)
                .map_err(|e| ImageError::store(&path, "reading the image record", e))?;
            if record.is_none() {
                return Err(ImageError::NotStored { reference: r });
            }
            let users: Vec<String> = holding_leases(&dirs, true)?
                .into_iter()
                .filter(|l| l.reference == r)
                .map(|l| l.holder.display().to_string())
                .collect();
            if !users.is_empty() {
                return Err(ImageError::InUse {
                    reference: r,
                    containers: users.join(", "),
                });
            }
            records::remove(&path)
                .map_err(|e| ImageError::store(&path, "removing the image record", e))?;
            let mut report = collect(&dirs)?;
            report.images_removed.insert(0, r);
            Ok(report)
        })
        .await
    }

    /// Removes every blob and unpacked layer no kept image and no running
    /// container needs; with `all`, first forgets every image that no
    /// running container uses (as `docker image prune --all`).
    pub async fn prune(&self, all: bool) -> Result<PruneReport, ImageError> {
        let _gc = self.gc_lock().write().await;
        let dirs = self.dirs();
        let leases = self.lease_lock();
        blocking(move || {
            let _leases = leases.lock().unwrap_or_else(|p| p.into_inner());
            let mut removed = Vec::new();
            if all {
                let used: HashSet<String> = holding_leases(&dirs, true)?
                    .into_iter()
                    .map(|l| l.reference)
                    .collect();
                for (path, record) in read_images(&dirs)? {
                    if !used.contains(&record.reference) {
                        records::remove(&path).map_err(|e| {
                            ImageError::store(&path, "removing the image record", e)
                        })?;
                        removed.push(record.reference);
                    }
                }
            }
            let mut report = collect(&dirs)?;
            removed.sort();
            report.images_removed = removed;
            tracing::info!(
                images = report.images_removed.len(),
                blobs = report.blobs_removed,
                layers = report.layers_removed,
                bytes = report.bytes_freed,
                "image store pruned"
            );
            Ok(report)
        })
        .await
    }

    /// Makes a container's root filesystem from `layers` (directories of
    /// this store, lowest first) under a lease that keeps them from Prune
    /// until the root filesystem is removed. Blocking.
    pub fn mount_rootfs(
        &self,
        reference: &str,
        layers: &[PathBuf],
        container_dir: &Path,
    ) -> Result<Rootfs, ImageError> {
        let dirs = self.dirs();
        let lock = self.lease_lock();
        let _leases = lock.lock().unwrap_or_else(|p| p.into_inner());
        let digests = layer_digests(&dirs, layers)?;
        let mut rootfs = mount_rootfs(layers, container_dir)?;
        let lease = LeaseRecord {
            while_exists: None,
            holder: rootfs.container_dir().to_path_buf(),
            reference: reference.to_string(),
            layers: digests,
        };
        let path = records::record_path(&dirs.leases(), &lease.holder.to_string_lossy());
        // On failure the root filesystem is dropped, which unmounts it.
        records::write(&path, &dirs.tmp("lease"), &lease)
            .map_err(|e| ImageError::store(&path, "writing a layer lease", e))?;
        rootfs.set_lease(path);
        Ok(rootfs)
    }

    /// Keeps `layers` (directories of this store) from Prune and Remove
    /// while `path` exists: a VM's overlay over a containerDisk in a layer.
    /// Blocking.
    pub fn lease_while(
        &self,
        reference: &str,
        layers: &[PathBuf],
        path: &Path,
    ) -> Result<(), ImageError> {
        let dirs = self.dirs();
        let lock = self.lease_lock();
        let _leases = lock.lock().unwrap_or_else(|p| p.into_inner());
        let lease = LeaseRecord {
            holder: path.to_path_buf(),
            reference: reference.to_string(),
            layers: layer_digests(&dirs, layers)?,
            while_exists: Some(path.to_path_buf()),
        };
        let record = records::record_path(&dirs.leases(), &lease.holder.to_string_lossy());
        records::write(&record, &dirs.tmp("lease"), &lease)
            .map_err(|e| ImageError::store(&record, "writing a layer lease", e))
    }
}

/// The digests of `layers`, each of which must be an unpacked layer of the
/// store that still exists.
fn layer_digests(dirs: &Dirs, layers: &[PathBuf]) -> Result<Vec<String>, ImageError> {
    let mut digests = Vec::with_capacity(layers.len());
    for layer in layers {
        let hex = layer
            .strip_prefix(dirs.unpacked())
            .ok()
            .and_then(|rest| rest.to_str())
            .filter(|hex| Digest::parse(&format!("sha256:{hex}")).is_ok())
            .ok_or_else(|| {
                ImageError::rootfs(layer, "leasing it", "it is not a layer of the image store")
            })?;
        if !layer.is_dir() {
            return Err(ImageError::rootfs(
                layer,
                "leasing it",
                "the layer is no longer stored (pruned meanwhile?): pull the image again",
            ));
        }
        digests.push(format!("sha256:{hex}"));
    }
    Ok(digests)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ImageError::Task(e.to_string()))?
}

fn read_images(dirs: &Dirs) -> Result<Vec<(PathBuf, ImageRecord)>, ImageError> {
    let dir = dirs.index();
    records::read_all(&dir).map_err(|e| ImageError::store(&dir, "listing the images", e))
}

/// The leases whose containers still have a root filesystem. With
/// `drop_stale` (only under the lease lock: a new root filesystem in the
/// same directory rewrites the same file) the others are removed.
fn holding_leases(dirs: &Dirs, drop_stale: bool) -> Result<Vec<LeaseRecord>, ImageError> {
    let dir = dirs.leases();
    let all: Vec<(PathBuf, LeaseRecord)> =
        records::read_all(&dir).map_err(|e| ImageError::store(&dir, "listing the leases", e))?;
    let mut holding = Vec::with_capacity(all.len());
    for (path, lease) in all {
        if lease.holds() {
            holding.push(lease);
        } else if drop_stale {
            tracing::debug!(holder = %lease.holder.display(), "dropping the lease of a removed root filesystem");
            let _ = records::remove(&path);
        }
    }
    Ok(holding)
}

/// Lower directories of the host's overlay mounts, from mountinfo text.
pub fn overlay_lower_dirs(mountinfo: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((_, after)) = line.split_once(" - ") else {
            continue;
        };
        let mut fields = after.split(' ');
        if fields.next() != Some("overlay") {
            continue;
        }
        let options = fields.nth(1).unwrap_or_default();
        for option in options.split(',') {
            if let Some(lower) = option.strip_prefix("lowerdir=") {
                out.extend(
                    lower
                        .split(':')
                        .map(|p| PathBuf::from(p.replace("\\040", " "))),
                );
            }
        }
    }
    out
}

/// Deletes the blobs and layers nothing keeps. The caller holds both locks.
fn collect(dirs: &Dirs) -> Result<PruneReport, ImageError> {
    let mut live_blobs: HashSet<String> = HashSet::new();
    let mut live_layers: HashSet<String> = HashSet::new();
    for (_, record) in read_images(dirs)? {
        live_blobs.extend(record.blobs.iter().map(|d| hex_of(d).to_string()));
        live_layers.extend(record.layers.iter().map(|d| hex_of(d).to_string()));
    }
    for lease in holding_leases(dirs, true)? {
        live_layers.extend(lease.layers.iter().map(|d| hex_of(d).to_string()));
    }
    let unpacked = dirs.unpacked();
    let canonical_unpacked = std::fs::canonicalize(&unpacked).unwrap_or(unpacked.clone());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| ImageError::store("/proc/self/mountinfo", "reading it", e))?;
    for lower in overlay_lower_dirs(&mountinfo) {
        // Long layer lists are mounted through short symlinks (`l/0`).
        let resolved = std::fs::canonicalize(&lower).unwrap_or(lower);
        if resolved.parent() == Some(canonical_unpacked.as_path()) {
            if let Some(name) = resolved.file_name().and_then(|n| n.to_str()) {
                live_layers.insert(name.to_string());
            }
        }
    }

    let mut report = PruneReport::default();
    for (path, name) in entries(&dirs.blobs())? {
        if live_blobs.contains(&name) {
            continue;
        }
        let size = std::fs::symlink_metadata(&path).map_or(0, |m| m.len());
        records::remove(&path).map_err(|e| ImageError::store(&path, "removing a blob", e))?;
        report.blobs_removed += 1;
        report.bytes_freed += size;
    }
    for (path, name) in entries(&unpacked)? {
        if live_layers.contains(&name) {
            continue;
        }
        let size = disk_usage(&path);
        std::fs::remove_dir_all(&path)
            .map_err(|e| ImageError::store(&path, "removing an unpacked layer", e))?;
        report.layers_removed += 1;
        report.bytes_freed += size;
    }
    Ok(report)
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn entries(dir: &Path) -> Result<Vec<(PathBuf, String)>, ImageError> {
    let read = std::fs::read_dir(dir).map_err(|e| ImageError::store(dir, "listing it", e))?;
    Ok(read
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            Some((e.path(), name))
        })
        .collect())
}

/// Bytes of the regular files below `dir` (symlinks not followed).
fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in read.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn overlay_lower_dirs_are_read_from_mountinfo() {
        let text = "\
36 35 98:0 / /mnt rw,noatime master:1 - ext3 /dev/root rw,errors=continue
412 30 0:77 / /run/c/rootfs rw,relatime - overlay overlay rw,lowerdir=/s/unpacked/sha256/bb:/s/unpacked/sha256/aa,upperdir=/run/c/upper,workdir=/run/c/work
413 30 0:78 / /run/d/rootfs rw - overlay overlay rw,lowerdir=/run/d/l/0,upperdir=/run/d/upper,workdir=/run/d/work";
        assert_eq!(
            overlay_lower_dirs(text),
            vec![
                PathBuf::from("/s/unpacked/sha256/bb"),
                PathBuf::from("/s/unpacked/sha256/aa"),
                PathBuf::from("/run/d/l/0"),
            ]
        );
    }
}
