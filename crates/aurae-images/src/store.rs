//! The content store and the always-pull logic.
//!
//! Layout under `<state_dir>/images` (mode 0700: layers keep setuid bits):
//! - `blobs/sha256/<hex>`: manifests, configurations and layer blobs, each
//!   written only after its digest (and size) was verified;
//! - `unpacked/sha256/<hex>/`: one directory per layer blob digest, unpacked
//!   once, whiteouts in overlayfs form; read-only by convention;
//! - `tmp/`: downloads and unpack staging, emptied when the store opens.
//!
//! Every pull resolves the reference at the registry (a tag may have moved);
//! blobs and layers already stored are reused by digest. Missing blobs
//! download in parallel; layers then unpack bottom up (a layer's implicit
//! directories take their attributes from the layers below). A reference by
//! digest whose manifest is stored needs no registry at all. Concurrent pulls
//! share work through one async lock per digest: the first downloads and
//! unpacks, the others wait and find it done.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use tokio::io::AsyncWriteExt;

use super::digest::{Digest, Verifier};
use super::error::ImageError;
use super::image_config::{parse_image_config, ImageRunConfig};
use super::records::ImageRecord;
use super::reference::ImageReference;
use super::registry::{FetchedManifest, Registry, TargetPlatform, MAX_METADATA_BYTES};
use super::registry_config::RegistryConfig;
use super::unpack::{unpack_layer, UnpackOptions, DEFAULT_MAX_LAYER_BYTES};

/// Receives download progress, e.g. for `aer image pull` progress bars.
pub trait PullProgress: Send + Sync {
    /// `done` of `total` bytes of layer `digest` are stored. A layer already
    /// stored is reported once with `done == total`.
    fn layer(&self, digest: &str, total: u64, done: u64);

    /// The layers to store add up to `total` bytes (per their manifest),
    /// said once before any [`PullProgress::layer`].
    fn layers(&self, _total: u64) {}
}

/// A pulled image, ready for [`super::mount_rootfs`].
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The normalised reference, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// Digest of the platform manifest the reference resolved to.
    pub manifest_digest: String,
    pub config: ImageRunConfig,
    /// Unpacked layer directories, lowest first. Read-only: never write them.
    pub layers: Vec<PathBuf>,
    /// The layer blob digests, lowest first (same order as `layers`).
    pub layer_digests: Vec<String>,
    /// What this pull had to do.
    pub stats: PullStats,
}

/// What one pull had to fetch and unpack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullStats {
    /// Blobs downloaded (manifests are not counted: every pull fetches one).
    pub blobs_fetched: u64,
    pub bytes_fetched: u64,
    pub layers_unpacked: u64,
}

impl std::ops::AddAssign for PullStats {
    fn add_assign(&mut self, o: Self) {
        self.blobs_fetched += o.blobs_fetched;
        self.bytes_fetched += o.bytes_fetched;
        self.layers_unpacked += o.layers_unpacked;
    }
}

/// Totals since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub pulls: u64,
    pub blobs_fetched: u64,
    pub bytes_fetched: u64,
    pub layers_unpacked: u64,
}

pub struct ImageStore {
    root: PathBuf,
    registry: Registry,
    locks: Mutex<HashMap<Digest, Weak<tokio::sync::Mutex<()>>>>,
    next_tmp: AtomicU64,
    max_layer_bytes: u64,
    pulls: AtomicU64,
    blobs_fetched: AtomicU64,
    bytes_fetched: AtomicU64,
    layers_unpacked: AtomicU64,
    /// Shared by pulls, exclusive for Prune and Remove (see gc.rs).
    gc: tokio::sync::RwLock<()>,
    /// Held while a lease is written and while Prune decides and deletes.
    leases: Arc<Mutex<()>>,
    /// An OCI layout consulted before the registry (see layout.rs).
    preload: std::sync::OnceLock<PathBuf>,
}

/// Removes a temporary file unless kept.
struct TmpFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl ImageStore {
    /// Opens (creating) the store under `<state_dir>/images`. Empties its
    /// `tmp/`: open one store per state directory and process.
    pub fn open(state_dir: &Path, registries: RegistryConfig) -> Result<Arc<Self>, ImageError> {
        use std::os::unix::fs::PermissionsExt;
        let root = state_dir.join("images");
        for dir in [
            root.join("blobs/sha256"),
            root.join("unpacked/sha256"),
            root.join("tmp"),
            root.join("index"),
            root.join("leases"),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| ImageError::store(&dir, "creating the directory", e))?;
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| ImageError::store(&root, "setting mode 0700", e))?;
        let tmp = root.join("tmp");
        let leftovers =
            std::fs::read_dir(&tmp).map_err(|e| ImageError::store(&tmp, "listing it", e))?;
        for entry in leftovers.flatten() {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing an image download left by a previous daemon");
            let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = removed {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a leftover download");
            }
        }
        tracing::debug!(root = %root.display(), registries = ?registries, "image store open");
        Ok(Arc::new(Self {
            root,
            registry: Registry::new(registries),
            locks: Mutex::new(HashMap::new()),
            next_tmp: AtomicU64::new(1),
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
            pulls: AtomicU64::new(0),
            blobs_fetched: AtomicU64::new(0),
            bytes_fetched: AtomicU64::new(0),
            layers_unpacked: AtomicU64::new(0),
            gc: tokio::sync::RwLock::new(()),
            leases: Arc::new(Mutex::new(())),
            preload: std::sync::OnceLock::new(),
        }))
    }

    /// Takes images an OCI layout at `dir` names from there instead of
    /// their registry (`--image-preload-dir`); set once, at start.
    pub fn set_preload_dir(&self, dir: PathBuf) {
        let _ = self.preload.set(dir);
    }

    pub(super) fn preload_dir(&self) -> Option<&Path> {
        self.preload.get().map(PathBuf::as_path)
    }

    /// `<state_dir>/images`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(super) fn gc_lock(&self) -> &tokio::sync::RwLock<()> {
        &self.gc
    }

    pub(super) fn lease_lock(&self) -> Arc<Mutex<()>> {
        self.leases.clone()
    }

    /// The platform image indexes are resolved to (linux and the host's architecture).
    pub fn platform(&self) -> &TargetPlatform {
        self.registry.platform()
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            pulls: self.pulls.load(Ordering::Relaxed),
            blobs_fetched: self.blobs_fetched.load(Ordering::Relaxed),
            bytes_fetched: self.bytes_fetched.load(Ordering::Relaxed),
            layers_unpacked: self.layers_unpacked.load(Ordering::Relaxed),
        }
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    fn unpacked_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("unpacked/sha256").join(digest.hex())
    }

    fn tmp_path(&self, kind: &str, digest: &Digest) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.root.join("tmp").join(format!(
            "{kind}-{}-{}-{n}",
            digest.hex(),
            std::process::id()
        ))
    }

    /// The per-digest lock that makes concurrent pulls download once.
    fn lock_for(&self, digest: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = locks.get(digest).and_then(Weak::upgrade) {
            return lock;
        }
        locks.retain(|_, w| w.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(digest.clone(), Arc::downgrade(&lock));
        lock
    }

    /// Pulls `reference`: resolves it at the registry (always), fetches the
    /// blobs not yet stored, unpacks the layers not yet unpacked.
    pub async fn pull(
        &self,
        reference: &str,
        progress: Option<&dyn PullProgress>,
    ) -> Result<PulledImage, ImageError> {
        let r = ImageReference::parse(reference)?;
        self.pulls.fetch_add(1, Ordering::Relaxed);
        let _gc = self.gc.read().await;
        let (manifest, manifest_digest, index_digest) = self.resolve(&r).await?;
        let mut stats = PullStats::default();

        let config_digest = descriptor_digest(&r, &manifest.config, "configuration")?;
        let (config_bytes, fetched) = self
            .metadata_blob(&r, &manifest.config, &config_digest)
            .await?;
        stats += fetched;
        let parsed =
            parse_image_config(&config_bytes).map_err(|detail| ImageError::Unsupported {
                reference: r.to_string(),
                detail,
            })?;
        let platform = self.registry.platform();
        if let (Some(os), Some(arch)) = (&parsed.os, &parsed.architecture) {
            if *os != platform.os || *arch != platform.architecture {
                tracing::warn!(reference = %r, image = %format!("{os}/{arch}"), host = %platform, "the image is built for another platform");
            }
        }

        let diff_ids: Vec<Option<Digest>> = if parsed.diff_ids.len() == manifest.layers.len() {
            parsed
                .diff_ids
                .iter()
                .map(|d| Digest::parse(d).ok())
                .collect()
        } else {
            tracing::warn!(reference = %r, layers = manifest.layers.len(), diff_ids = parsed.diff_ids.len(), "the image configuration does not list one diff ID per layer: unpacked layers are not checked against it");
            vec![None; manifest.layers.len()]
        };
        let mut digests = Vec::with_capacity(manifest.layers.len());
        for desc in &manifest.layers {
            digests.push(descriptor_digest(&r, desc, "layer")?);
        }
        if let Some(p) = progress {
            p.layers(
                manifest
                    .layers
                    .iter()
                    .fold(0u64, |a, d| a.saturating_add(d.size.max(0) as u64)),
            );
        }
        // Downloads run in parallel, each to its end even when one fails,
        // so that none is still going once pull returns.
        let fetched = futures::future::join_all(
            manifest
                .layers
                .iter()
                .zip(&digests)
                .map(|(desc, digest)| self.layer_blob(&r, desc, digest, progress)),
        )
        .await;
        for f in fetched {
            stats += f?;
        }
        // Unpacks run bottom up: a layer's implicit directories take their
        // attributes from the layers below.
        let mut dirs: Vec<PathBuf> = Vec::with_capacity(digests.len());
        for (digest, diff_id) in digests.iter().zip(diff_ids) {
            let (dir, unpacked) = self.unpack(&r, digest, diff_id, &dirs).await?;
            stats += unpacked;
            dirs.push(dir);
        }
        let mut blobs: Vec<String> = index_digest.iter().map(|d| d.to_string()).collect();
        blobs.push(manifest_digest.to_string());
        blobs.push(config_digest.to_string());
        blobs.extend(digests.iter().map(|d| d.to_string()));
        let size = std::iter::once(&manifest.config)
            .chain(&manifest.layers)
            .map(|d| d.size.max(0) as u64)
            .sum();
        self.record_image(&ImageRecord {
            reference: r.to_string(),
            manifest_digest: manifest_digest.to_string(),
            blobs,
            layers: digests.iter().map(|d| d.to_string()).collect(),
            size,
            pulled_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })?;
        tracing::info!(
            reference = %r,
            manifest = %manifest_digest,
            layers = dirs.len(),
            fetched = stats.blobs_fetched,
            bytes = stats.bytes_fetched,
            unpacked = stats.layers_unpacked,
            "image pulled"
        );
        Ok(PulledImage {
            reference: r.to_string(),
            manifest_digest: manifest_digest.to_string(),
            config: parsed.run,
            layers: dirs,
            layer_digests: digests.iter().map(|d| d.to_string()).collect(),
            stats,
        })
    }

    /// Reference -> platform image manifest, its digest, and the digest of
    /// the index it was chosen from (if the reference named one).
    async fn resolve(
        &self,
        r: &ImageReference,
    ) -> Result<(OciImageManifest, Digest, Option<Digest>), ImageError> {
        let (fetched, digest) = match r.digest() {
            Some(d) => {
                let digest = Digest::parse(d).map_err(|e| ImageError::InvalidReference {
                    reference: r.to_string(),
                    reason: e.to_string(),
                })?;
                self.manifest_at(r, &digest).await?
            }
            None => match self.preloaded(r).await? {
                Some(d) => self.manifest_at(r, &d).await?,
                None => {
                    let (bytes, digest, fetched) = self.registry.manifest(r, r.oci()).await?;
                    self.store_manifest(r, &digest, &bytes).await?;
                    (fetched, digest)
                }
            },
        };
        match fetched {
            FetchedManifest::Image(m) => Ok((*m, digest, None)),
            FetchedManifest::Index(index) => {
                let platform_digest = self.registry.select_platform(r, &index)?;
                match self.manifest_at(r, &platform_digest).await? {
                    (FetchedManifest::Image(m), d) => Ok((*m, d, Some(digest))),
                    (FetchedManifest::Index(_), _) => Err(ImageError::Unsupported {
                        reference: r.to_string(),
                        detail: format!("its index entry {platform_digest} is another index"),
                    }),
                }
            }
        }
    }

    /// The manifest with a known digest: from the store when there, else
    /// from the registry (verified against the digest).
    async fn manifest_at(
        &self,
        r: &ImageReference,
        digest: &Digest,
    ) -> Result<(FetchedManifest, Digest), ImageError> {
        let path = self.blob_path(digest);
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                return Ok((super::registry::parse_manifest(r, &bytes)?, digest.clone()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::store(&path, "reading a stored manifest", e)),
        }
        let (bytes, got, fetched) = self.registry.manifest(r, &r.at_digest(digest)).await?;
        if got != *digest {
            return Err(ImageError::DigestMismatch {
                reference: r.to_string(),
                what: format!("manifest {digest}"),
                detail: format!("the registry served {got}"),
            });
        }
        self.store_manifest(r, digest, &bytes).await?;
        Ok((fetched, got))
    }

    async fn store_manifest(
        &self,
        r: &ImageReference,
        digest: &Digest,
        bytes: &[u8],
    ) -> Result<(), ImageError> {
        let path = self.blob_path(digest);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(());
        }
        if Digest::of(bytes) != *digest {
            // oci-client checked the body against the registry's digest
            // header; a registry without that header gets the computed one.
            return Err(ImageError::DigestMismatch {
                reference: r.to_string(),
                what: format!("manifest {digest}"),
                detail: format!("its content hashes to {}", Digest::of(bytes)),
            });
        }
        let tmp = TmpFile {
            path: self.tmp_path("manifest", digest),
            keep: false,
        };
        tokio::fs::write(&tmp.path, bytes)
            .await
            .map_err(|e| ImageError::store(&tmp.path, "writing a manifest", e))?;
        tokio::fs::rename(&tmp.path, &path)
            .await
            .map_err(|e| ImageError::store(&path, "storing a manifest", e))?;
        Ok(())
    }

    /// A small blob (the image configuration), fetched when missing, read
    /// into memory.
    async fn metadata_blob(
        &self,
        r: &ImageReference,
        desc: &OciDescriptor,
        digest: &Digest,
    ) -> Result<(Vec<u8>, PullStats), ImageError> {
        if desc.size < 0 || desc.size as u64 > MAX_METADATA_BYTES {
            return Err(ImageError::Unsupported {
                reference: r.to_string(),
                detail: format!(
                    "its configuration is {} bytes: at most {MAX_METADATA_BYTES} are accepted",
                    desc.size
                ),
            });
        }
        let lock = self.lock_for(digest);
        let _guard = lock.lock().await;
        let path = self.blob_path(digest);
        let mut stats = PullStats::default();
        if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
            stats.bytes_fetched = self.download(r, desc, digest, None).await?;
            stats.blobs_fetched = 1;
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| ImageError::store(&path, "reading a blob", e))?;
        Ok((bytes, stats))
    }

    /// A layer's blob, downloaded unless the blob or the unpacked layer is
    /// already stored.
    async fn layer_blob(
        &self,
        r: &ImageReference,
        desc: &OciDescriptor,
        digest: &Digest,
        progress: Option<&dyn PullProgress>,
    ) -> Result<PullStats, ImageError> {
        let lock = self.lock_for(digest);
        let _guard = lock.lock().await;
        let total = desc.size.max(0) as u64;
        let mut stats = PullStats::default();
        let stored = tokio::fs::try_exists(self.unpacked_path(digest))
            .await
            .unwrap_or(false)
            || tokio::fs::try_exists(self.blob_path(digest))
                .await
                .unwrap_or(false);
        if stored {
            if let Some(p) = progress {
                p.layer(&digest.to_string(), total, total);
            }
        } else {
            stats.bytes_fetched = self.download(r, desc, digest, progress).await?;
            stats.blobs_fetched = 1;
        }
        Ok(stats)
    }

    /// A layer's directory, unpacked from its stored blob unless already there.
    async fn unpack(
        &self,
        r: &ImageReference,
        digest: &Digest,
        diff_id: Option<Digest>,
        lower_layers: &[PathBuf],
    ) -> Result<(PathBuf, PullStats), ImageError> {
        let lock = self.lock_for(digest);
        let _guard = lock.lock().await;
        let dest = self.unpacked_path(digest);
        let mut stats = PullStats::default();
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            return Ok((dest, stats));
        }
        let blob = self.blob_path(digest);
        let staging = self.tmp_path("unpack", digest);
        let opts = UnpackOptions {
            diff_id,
            max_bytes: self.max_layer_bytes,
            lower_layers: lower_layers.to_vec(),
            ..UnpackOptions::default()
        };
        let (blob_c, dest_c) = (blob.clone(), dest.clone());
        let started = std::time::Instant::now();
        let unpacked = tokio::task::spawn_blocking(move || {
            let file = match std::fs::File::open(&blob_c) {
                Ok(f) => f,
                Err(e) => return Err(Err(ImageError::store(&blob_c, "opening a layer blob", e))),
            };
            unpack_layer(file, &staging, &dest_c, &opts).map_err(Ok)
        })
        .await
        .map_err(|e| ImageError::Task(e.to_string()))?;
        let unpack_stats = match unpacked {
            Ok(s) => s,
            Err(Ok(source)) => {
                tracing::warn!(reference = %r, layer = %digest, error = %source, "layer refused");
                return Err(ImageError::Layer {
                    reference: r.to_string(),
                    digest: digest.to_string(),
                    error: source,
                });
            }
            Err(Err(e)) => return Err(e),
        };
        tracing::debug!(
            layer = %digest,
            entries = unpack_stats.entries,
            bytes = unpack_stats.bytes,
            whiteouts = unpack_stats.whiteouts,
            ms = started.elapsed().as_millis() as u64,
            "layer unpacked"
        );
        self.layers_unpacked.fetch_add(1, Ordering::Relaxed);
        stats.layers_unpacked = 1;
        Ok((dest, stats))
    }

    /// Streams a blob into `tmp/`, verifying size and digest, then renames
    /// it into `blobs/`. The caller holds the digest's lock.
    async fn download(
        &self,
        r: &ImageReference,
        desc: &OciDescriptor,
        digest: &Digest,
        progress: Option<&dyn PullProgress>,
    ) -> Result<u64, ImageError> {
        const PROGRESS_EVERY: u64 = 256 * 1024;
        let what = format!("blob {digest}");
        let mut stream = self.registry.blob(r, desc).await?;
        let expected_size = (desc.size > 0).then_some(desc.size as u64);
        let total = expected_size.or(stream.content_length).unwrap_or(0);
        let mut tmp = TmpFile {
            path: self.tmp_path("blob", digest),
            keep: false,
        };
        let mut file = tokio::fs::File::create(&tmp.path)
            .await
            .map_err(|e| ImageError::store(&tmp.path, "creating a download", e))?;
        let mut verifier = Verifier::new(digest.clone(), expected_size);
        let mut reported = 0u64;
        let digest_s = digest.to_string();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.registry.map_stream_error(e, r, &what))?;
            verifier
                .update(&chunk)
                .map_err(|e| ImageError::DigestMismatch {
                    reference: r.to_string(),
                    what: what.clone(),
                    detail: e.to_string(),
                })?;
            file.write_all(&chunk)
                .await
                .map_err(|e| ImageError::store(&tmp.path, "writing a download", e))?;
            if let Some(p) = progress {
                if verifier.seen() - reported >= PROGRESS_EVERY {
                    reported = verifier.seen();
                    p.layer(&digest_s, total, reported);
                }
            }
        }
        file.sync_all()
            .await
            .map_err(|e| ImageError::store(&tmp.path, "syncing a download", e))?;
        drop(file);
        let size = verifier.seen();
        verifier.finish().map_err(|e| ImageError::DigestMismatch {
            reference: r.to_string(),
            what: what.clone(),
            detail: e.to_string(),
        })?;
        let path = self.blob_path(digest);
        tokio::fs::rename(&tmp.path, &path)
            .await
            .map_err(|e| ImageError::store(&path, "storing a blob", e))?;
        tmp.keep = true;
        if let Some(p) = progress {
            p.layer(&digest_s, total.max(size), size);
        }
        self.blobs_fetched.fetch_add(1, Ordering::Relaxed);
        self.bytes_fetched.fetch_add(size, Ordering::Relaxed);
        tracing::debug!(reference = %r, blob = %digest, bytes = size, "blob stored");
        Ok(size)
    }
}

fn descriptor_digest(
    r: &ImageReference,
    desc: &OciDescriptor,
    what: &str,
) -> Result<Digest, ImageError> {
    Digest::parse(&desc.digest).map_err(|e| ImageError::Unsupported {
        reference: r.to_string(),
        detail: format!("its {what} descriptor has a bad {e}"),
    })
}
