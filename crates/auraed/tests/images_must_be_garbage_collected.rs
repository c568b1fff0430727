//! The image store's garbage collection against the registry on
//! 127.0.0.1:5000, as root: List, Remove and Prune keep exactly what kept
//! images and running containers need, a container's root filesystem holds
//! its layers through a lease (also after its image was removed, and until
//! a crash's clean-up removes the root filesystem), and an overlay mount
//! made without a lease still protects its layers.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use auraed::images::{mount_rootfs, remove_rootfs, ImageError, ImageStore, RegistryConfig};

#[path = "common/registry.rs"]
mod registry;

#[path = "common/push.rs"]
mod push;
use push::{push_image, tar_of, unique};

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn hex(digest: &str) -> String {
    digest.trim_start_matches("sha256:").to_string()
}

struct Fixture {
    _state: tempfile::TempDir,
    store: Arc<ImageStore>,
    a: String,
    b: String,
    shared: String,
    a_top: String,
    b_top: String,
    a_layers: Vec<PathBuf>,
}

async fn two_images_sharing_a_layer(name: &str) -> Fixture {
    let shared_tar = tar_of(&[("etc/shared", &format!("shared by {name}\n"))]);
    let a = unique(&format!("{name}-a"));
    let b = unique(&format!("{name}-b"));
    push_image(&a, &[shared_tar.clone(), tar_of(&[("a", "a\n")])], "amd64").await;
    push_image(&b, &[shared_tar, tar_of(&[("b", "b\n")])], "amd64").await;
    let state = tempfile::tempdir().unwrap();
    let store = ImageStore::open(state.path(), RegistryConfig::default()).unwrap();
    let pa = store.pull(&a, None).await.unwrap();
    let pb = store.pull(&b, None).await.unwrap();
    assert_eq!(pa.layer_digests[0], pb.layer_digests[0]);
    Fixture {
        _state: state,
        a: pa.reference.clone(),
        b: pb.reference.clone(),
        shared: hex(&pa.layer_digests[0]),
        a_top: hex(&pa.layer_digests[1]),
        b_top: hex(&pb.layer_digests[1]),
        a_layers: pa.layers,
        store,
    }
}

#[tokio::test]
async fn prune_keeps_what_images_and_running_containers_use() {
    if !registry::require_registry(module_path!()) {
        return;
    }
    let f = two_images_sharing_a_layer("gc").await;
    let unpacked = f.store.root().join("unpacked/sha256");
    let blobs = f.store.root().join("blobs/sha256");

    let list = f.store.list().await.unwrap();
    let refs: Vec<&str> = list.iter().map(|i| i.record.reference.as_str()).collect();
    assert_eq!(refs, vec![f.a.as_str(), f.b.as_str()]);
    assert!(list
        .iter()
        .all(|i| i.containers.is_empty() && i.record.size > 0));
    assert_eq!(list[0].record.layers.len(), 2);

    // Nothing is garbage yet.
    let report = f.store.prune(false).await.unwrap();
    assert_eq!(
        (report.blobs_removed, report.layers_removed),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(names(&unpacked).len(), 3);

    // A container of image a holds its layers.
    let container = f._state.path().join("run/c1");
    let rootfs = f.store.mount_rootfs(&f.a, &f.a_layers, &container).unwrap();
    assert!(rootfs.path.join("etc/shared").is_file());
    let list = f.store.list().await.unwrap();
    assert_eq!(list[0].containers.len(), 1, "{list:?}");
    let e = f.store.remove(&f.a).await.unwrap_err();
    assert!(matches!(e, ImageError::InUse { .. }), "{e}");
    assert!(e.to_string().contains("stop them first"), "{e}");

    // prune --all forgets b (no container) and frees its own layer only.
    let report = f.store.prune(true).await.unwrap();
    assert_eq!(report.images_removed, vec![f.b.clone()]);
    assert_eq!(report.layers_removed, 1, "{report:?}");
    assert!(report.bytes_freed > 0);
    let mut expected = vec![f.shared.clone(), f.a_top.clone()];
    expected.sort();
    assert_eq!(names(&unpacked), expected);
    assert!(!blobs.join(&f.b_top).exists());
    assert!(blobs.join(&f.a_top).exists());

    // Removing the root filesystem ends the lease: a can go, and everything with it.
    rootfs.unmount().unwrap();
    assert!(names(&f.store.root().join("leases")).is_empty());
    let report = f.store.remove(&f.a).await.unwrap();
    assert_eq!(report.images_removed, vec![f.a.clone()]);
    assert_eq!(report.layers_removed, 2);
    assert!(names(&unpacked).is_empty());
    assert!(names(&blobs).is_empty(), "{:?}", names(&blobs));
    assert!(f.store.list().await.unwrap().is_empty());
    let e = f.store.remove(&f.a).await.unwrap_err();
    assert!(matches!(e, ImageError::NotStored { .. }), "{e}");
}

#[tokio::test]
async fn a_lease_outlives_its_image_and_ends_with_the_crash_clean_up() {
    if !registry::require_registry(module_path!()) {
        return;
    }
    let f = two_images_sharing_a_layer("lease").await;
    let unpacked = f.store.root().join("unpacked/sha256");
    let container = f._state.path().join("run/c2");
    let rootfs = f.store.mount_rootfs(&f.a, &f.a_layers, &container).unwrap();
    // A daemon that dies leaves the root filesystem and its lease behind.
    std::mem::forget(rootfs);
    let report = f.store.prune(true).await.unwrap();
    assert_eq!(report.images_removed, vec![f.b.clone()]);
    assert!(unpacked.join(&f.a_top).is_dir());
    assert!(unpacked.join(&f.shared).is_dir());

    // The next daemon's clean-up removes the root filesystem: the lease no
    // longer holds, and prune frees the layers.
    remove_rootfs(&container).unwrap();
    let report = f.store.prune(true).await.unwrap();
    assert_eq!(report.images_removed, vec![f.a.clone()]);
    assert!(names(&unpacked).is_empty());
    assert!(names(&f.store.root().join("leases")).is_empty());
}

#[tokio::test]
async fn an_overlay_mounted_without_a_lease_still_protects_its_layers() {
    if !registry::require_registry(module_path!()) {
        return;
    }
    let f = two_images_sharing_a_layer("overlay").await;
    let unpacked = f.store.root().join("unpacked/sha256");
    let rootfs = mount_rootfs(&f.a_layers, &f._state.path().join("run/c3")).unwrap();
    // (A copy would not use the layers once made: the case needs overlayfs.)
    assert_eq!(rootfs.kind, auraed::images::RootfsKind::Overlay);
    f.store.prune(true).await.unwrap();
    assert!(unpacked.join(&f.a_top).is_dir());
    assert!(unpacked.join(&f.shared).is_dir());
    assert!(!unpacked.join(&f.b_top).exists());
    rootfs.unmount().unwrap();
    f.store.prune(true).await.unwrap();
    assert!(names(&unpacked).is_empty());
}
