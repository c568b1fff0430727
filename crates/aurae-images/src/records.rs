//! The store's two kinds of small records, one JSON file each, written to a
//! temporary name and renamed so that a crash leaves the old file or the new
//! one, never half of one:
//! - `index/<sha256 of the reference>.json`: an image, what a pull of its
//!   reference resolved to and every blob and layer it needs;
//! - `leases/<sha256 of the container directory>.json`: a container root
//!   filesystem made from the store's layers. A lease holds while its
//!   container's `rootfs` directory exists: the cells runtime removes it
//!   (`remove_rootfs`) when the container ends, also when it cleans up after
//!   a crash, so a lease never outlives its container by more than that and
//!   needs no separate clean-up.
//!
//! They live in the store directory rather than in the state database so that
//! the store stays one self-describing directory on one filesystem, renamed
//! atomically next to the blobs it describes.

use std::io;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::digest::Digest;

/// An image the store keeps: what its reference resolved to at its last pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The normalised reference, e.g. `127.0.0.1:5000/aurae/busybox:latest`.
    pub reference: String,
    /// The platform image manifest.
    pub manifest_digest: String,
    /// Every blob the image needs: index (when the reference named one),
    /// manifest, configuration and layer blobs.
    pub blobs: Vec<String>,
    /// The layer blob digests, lowest first (their unpacked directories).
    pub layers: Vec<String>,
    /// Bytes of the configuration and the (compressed) layers.
    pub size: u64,
    /// Seconds since the epoch of the last successful pull.
    pub pulled_at: u64,
}

/// A root filesystem made from the store's layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The container directory (its `rootfs` is the mount point or copy).
    pub holder: PathBuf,
    /// The reference of the image it was made from.
    pub reference: String,
    /// The layer digests it stacks.
    pub layers: Vec<String>,
    /// Set for a holder that is not a container (a VM's disk overlay): the
    /// lease holds while this path exists. Absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub while_exists: Option<PathBuf>,
}

impl LeaseRecord {
    /// Whether the holder still uses the layers: a container while it has
    /// its root filesystem, another holder while its path exists.
    pub fn holds(&self) -> bool {
        let path = match &self.while_exists {
            Some(p) => p.clone(),
            None => self.holder.join("rootfs"),
        };
        std::fs::symlink_metadata(path).is_ok()
    }
}

/// `<dir>/<sha256 of key>.json`.
pub fn record_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{}.json", Digest::of(key.as_bytes()).hex()))
}

/// Writes `record` to `path` through `tmp` and a rename.
pub fn write<T: Serialize>(path: &Path, tmp: &Path, record: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
    std::fs::write(tmp, bytes)?;
    std::fs::rename(tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(tmp);
    })
}

/// Removes `path`; an absent file is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// The record at `path`, or None when there is none.
pub fn read<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every readable record in `dir` with its path. An unreadable one is
/// logged and skipped: it protects nothing, and the next pull rewrites it.
pub fn read_all<T: DeserializeOwned>(dir: &Path) -> io::Result<Vec<(PathBuf, T)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match read(&path) {
            Ok(Some(r)) => out.push((path, r)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable image store record")
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let rec = ImageRecord {
            reference: "127.0.0.1:5000/a:latest".into(),
            manifest_digest: "sha256:00".into(),
            blobs: vec!["sha256:00".into()],
            layers: vec![],
            size: 3,
            pulled_at: 1,
        };
        let path = record_path(dir.path(), &rec.reference);
        write(&path, &dir.path().join("tmp"), &rec).unwrap();
        assert_eq!(read::<ImageRecord>(&path).unwrap(), Some(rec.clone()));
        std::fs::write(dir.path().join("bad.json"), b"{").unwrap();
        let all = read_all::<ImageRecord>(dir.path()).unwrap();
        assert_eq!(all, vec![(path.clone(), rec)]);
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert_eq!(read::<ImageRecord>(&path).unwrap(), None);
    }

    #[test]
    fn a_lease_holds_while_the_rootfs_exists() {
        let dir = tempfile::tempdir().unwrap();
        let lease = LeaseRecord {
            while_exists: None,
            holder: dir.path().to_path_buf(),
            reference: "x".into(),
            layers: vec![],
        };
        assert!(!lease.holds());
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        assert!(lease.holds());
    }
}
