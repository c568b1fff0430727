//! OCI images: pull from a registry, a content store keyed by digest, safe
//! layer unpack, and root filesystems (overlayfs, or a copy as fallback).
//! auraed re-exports this crate as `auraed::images`; it takes no gRPC or
//! protobuf types (auraed's `api` module maps [`ImageError`] to a status).
//!
//! The flow of a pull reads straight down: [`reference`] parses the name,
//! [`registry`] talks to the registry through `oci-client` (protocol, auth,
//! manifest and platform resolution, error mapping), [`store`] keeps verified
//! blobs and unpacked layers and makes concurrent pulls share downloads,
//! [`unpack`] turns one layer tarball into one directory, refusing anything
//! that would leave it, and [`rootfs`] stacks the layers for a container.
//! [`gc`] lists, removes and prunes what the store keeps, with the image
//! records and container leases of [`records`].
//! Documentation for operators: docs/images.md.

pub mod digest;
pub mod error;
pub mod gc;
pub mod image_config;
pub mod layout;
pub mod records;
pub mod reference;
pub mod registry;
pub mod registry_config;
pub mod rootfs;
pub mod store;
pub mod unpack;

#[cfg(test)]
mod unpack_props;
#[cfg(test)]
mod unpack_tests;

pub use error::ImageError;
pub use gc::{ImageInfo, PruneReport};
pub use image_config::ImageRunConfig;
pub use reference::ImageReference;
pub use registry_config::{RegistryConfig, DEFAULT_REGISTRIES_FILE};
pub use rootfs::{mount_rootfs, remove_rootfs, Rootfs, RootfsKind};
pub use store::{ImageStore, PullProgress, PullStats, PulledImage, StoreStats};
