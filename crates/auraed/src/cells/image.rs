//! What the cells runtime needs from the image layer: pull an image (the tag
//! resolved at the registry every time) and mount its root filesystem for one
//! container. [`ImageSource`] keeps the runtime testable without a registry.

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;

use crate::images::ImageError;

/// How the image says to run it (the OCI image config's `config` object).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Empty means `/`.
    pub working_dir: String,
    /// `user`, `uid`, `user:group`, `uid:gid`...; empty means root.
    pub user: String,
}

/// A pulled image: its digest, how to run it, and its unpacked layers.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference as requested.
    pub reference: String,
    /// The manifest digest the tag resolved to for this pull.
    pub digest: String,
    pub config: RunConfig,
    /// Unpacked layer directories, lowest first.
    pub layers: Vec<PathBuf>,
}

/// A container's root filesystem, mounted until [`MountedRootfs::unmount`].
pub trait MountedRootfs: Send + Sync {
    fn path(&self) -> &Path;
    /// Unmounts it; safe to call once more after a failure.
    fn unmount(&mut self) -> Result<(), String>;
    /// Leaves it mounted for a container that outlives the daemon's handle
    /// (a detached cell: its removal unmounts everything under its directory).
    fn leave_mounted(self: Box<Self>);
}

pub trait ImageSource: Send + Sync + 'static {
    /// Pulls `reference` (always asking the registry what the tag points to).
    /// Errors say what went wrong (not found, unreachable, ...).
    fn pull<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<PulledImage, ImageError>>;

    /// Mounts `image`'s root filesystem under `container_dir`, writable and
    /// private to one container. Blocking: called from a blocking thread.
    fn mount_rootfs(
        &self,
        image: &PulledImage,
        container_dir: &Path,
    ) -> Result<Box<dyn MountedRootfs>, ImageError>;
}

/// The daemon's image store as the cells' image source.
impl ImageSource for crate::images::ImageStore {
    fn pull<'a>(&'a self, reference: &'a str) -> BoxFuture<'a, Result<PulledImage, ImageError>> {
        Box::pin(async move {
            let pulled = crate::images::ImageStore::pull(self, reference, None).await?;
            let run = pulled.config;
            Ok(PulledImage {
                reference: pulled.reference,
                digest: pulled.manifest_digest,
                config: RunConfig {
                    entrypoint: run.entrypoint,
                    cmd: run.cmd,
                    env: run.env,
                    working_dir: run.working_dir.unwrap_or_default(),
                    user: run.user.unwrap_or_default(),
                },
                layers: pulled.layers,
            })
        })
    }

    fn mount_rootfs(
        &self,
        image: &PulledImage,
        container_dir: &Path,
    ) -> Result<Box<dyn MountedRootfs>, ImageError> {
        let rootfs = crate::images::ImageStore::mount_rootfs(
            self,
            &image.reference,
            &image.layers,
            container_dir,
        )?;
        Ok(Box::new(StoreRootfs {
            path: rootfs.path.clone(),
            rootfs: Some(rootfs),
        }))
    }
}

/// [`crate::images::Rootfs`] behind [`MountedRootfs`].
struct StoreRootfs {
    path: PathBuf,
    rootfs: Option<crate::images::Rootfs>,
}

impl MountedRootfs for StoreRootfs {
    fn path(&self) -> &Path {
        &self.path
    }

    fn unmount(&mut self) -> Result<(), String> {
        match self.rootfs.take() {
            Some(r) => r.unmount().map_err(|e| crate::error_chain::chain(&e)),
            None => Ok(()),
        }
    }

    fn leave_mounted(mut self: Box<Self>) {
        if let Some(r) = self.rootfs.take() {
            r.leave_mounted();
        }
    }
}
