//! The image store against a real registry on 127.0.0.1:5000 (Debian's
//! docker-registry), as root: hack/registry-up.sh and
//! hack/build-test-images.sh set it up. Without it the tests fail when `CI`
//! is set and are skipped (with the reason) otherwise.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Mutex;

use auraed::api::status::image_status;
use auraed::images::rootfs::copy_layers;
use auraed::images::{
    mount_rootfs, remove_rootfs, ImageStore, PullProgress, RegistryConfig, RootfsKind,
};
use auraed::mountinfo::mounted_under;
use oci_client::client::ImageLayer;
use oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE;
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;

use registry::REGISTRY;

#[path = "common/registry.rs"]
mod registry;

#[path = "common/push.rs"]
mod push;
use push::{gzip, push_client, push_image, push_layers, tar_of, unique};

/// Root and the registry fixture; skipped with a reason, or a failure on CI.
fn fixture() -> bool {
    registry::require_registry(module_path!())
}

fn open_store(state: &Path) -> std::sync::Arc<ImageStore> {
    ImageStore::open(state, RegistryConfig::default()).unwrap()
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, u64, u64)>>);

impl PullProgress for Recorder {
    fn layer(&self, digest: &str, total: u64, done: u64) {
        self.0
            .lock()
            .unwrap()
            .push((digest.to_string(), total, done));
    }
}

/// Pushes an OCI image index listing `entries` (manifest digest, arch).
async fn push_index(reference: &str, repo_ref: &str, entries: &[(&str, &str)]) {
    let client = push_client();
    let mut manifests = Vec::new();
    for (digest, arch) in entries {
        let child: Reference = format!("{repo_ref}@{digest}").parse().unwrap();
        let (body, _) = client
            .pull_manifest_raw(
                &child,
                &RegistryAuth::Anonymous,
                &["application/vnd.oci.image.manifest.v1+json"],
            )
            .await
            .unwrap();
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": body.len(),
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let r: Reference = reference.parse().unwrap();
    client
        .push_manifest_raw(
            &r,
            serde_json::to_vec(&index).unwrap(),
            http::HeaderValue::from_static("application/vnd.oci.image.index.v1+json"),
        )
        .await
        .unwrap();
}

// --- tests -------------------------------------------------------------------

#[tokio::test]
async fn busybox_pulls_with_its_config_and_layer() {
    if !fixture() {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let store = open_store(state.path());
    let progress = Recorder::default();
    let image = store
        .pull(&format!("{REGISTRY}/aurae/busybox:latest"), Some(&progress))
        .await
        .unwrap();
    assert_eq!(image.reference, format!("{REGISTRY}/aurae/busybox:latest"));
    assert!(image.manifest_digest.starts_with("sha256:"));
    assert_eq!(image.config.cmd, vec!["sh"]);
    assert!(image.config.entrypoint.is_empty());
    assert!(
        image
            .config
            .env
            .iter()
            .any(|e| e.starts_with("PATH=") && e.contains("/bin")),
        "{:?}",
        image.config.env
    );
    assert_eq!(image.config.working_dir.as_deref(), Some("/"));
    assert_eq!(image.layers.len(), 1);
    let layer = &image.layers[0];
    assert!(layer.starts_with(store.root().join("unpacked/sha256")));
    assert!(layer.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(layer.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(image.stats.blobs_fetched, 2, "config and layer");
    assert_eq!(image.stats.layers_unpacked, 1);

    let events = progress.0.lock().unwrap();
    let last = events.last().expect("no progress reported");
    assert_eq!(last.0, image.layer_digests[0]);
    assert_eq!(last.1, last.2, "the last report is complete");
    assert!(last.1 > 1_000_000, "busybox is over a megabyte: {last:?}");

    let manifest_blob = store
        .root()
        .join("blobs/sha256")
        .join(image.manifest_digest.trim_start_matches("sha256:"));
    assert!(manifest_blob.is_file(), "the manifest is stored");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(store.root()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);
}

#[tokio::test]
async fn a_second_pull_fetches_nothing_but_still_resolves_the_tag() {
    if !fixture() {
        return;
    }
    let repo = unique("retag");
    let reference = format!("{repo}:latest");
    let v1 = push_image(&reference, &[tar_of(&[("etc/version", "one")])], "amd64").await;

    let state = tempfile::tempdir().unwrap();
    let store = open_store(state.path());
    let first = store.pull(&reference, None).await.unwrap();
    assert_eq!(first.manifest_digest, v1);
    assert_eq!(first.config.env, vec!["PATH=/bin", "PUSHED=by-test"]);
    assert_eq!(first.stats.blobs_fetched, 2);

    let again = store.pull(&reference, None).await.unwrap();
    assert_eq!(again.manifest_digest, v1);
    assert_eq!(again.layers, first.layers);
    assert_eq!(again.stats.blobs_fetched, 0, "nothing new to download");
    assert_eq!(again.stats.layers_unpacked, 0);

    // The tag moves: the next pull sees it without being told.
    let v2 = push_image(
        &reference,
        &[
            tar_of(&[("etc/version", "one")]),
            tar_of(&[("etc/version", "two")]),
        ],
        "amd64",
    )
    .await;
    assert_ne!(v1, v2);
    let moved = store.pull(&reference, None).await.unwrap();
    assert_eq!(moved.manifest_digest, v2);
    assert_eq!(moved.layers.len(), 2);
    assert_eq!(
        moved.layers[0], first.layers[0],
        "the shared layer is reused"
    );
    assert_eq!(
        std::fs::read_to_string(moved.layers[1].join("etc/version")).unwrap(),
        "two"
    );
    assert_eq!(
        moved.stats.blobs_fetched, 2,
        "new config and new layer only"
    );
    assert_eq!(moved.stats.layers_unpacked, 1);

    let stats = store.stats();
    assert_eq!(stats.pulls, 3);
    assert_eq!(stats.blobs_fetched, 4);
    assert_eq!(stats.layers_unpacked, 2);

    // By digest, the stored manifest is enough.
    let pinned = store.pull(&format!("{repo}@{v1}"), None).await.unwrap();
    assert_eq!(pinned.manifest_digest, v1);
    assert_eq!(pinned.stats.blobs_fetched, 0);
}

#[tokio::test]
async fn concurrent_pulls_download_each_blob_once() {
    if !fixture() {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let store = open_store(state.path());
    let reference = format!("{REGISTRY}/aurae/busybox:latest");
    let pulls = (0..6).map(|_| {
        let store = store.clone();
        let reference = reference.clone();
        tokio::spawn(async move { store.pull(&reference, None).await })
    });
    let mut fetched = 0;
    let mut unpacked = 0;
    let mut layers = None;
    for p in futures::future::join_all(pulls).await {
        let image = p.unwrap().unwrap();
        fetched += image.stats.blobs_fetched;
        unpacked += image.stats.layers_unpacked;
        match &layers {
            None => layers = Some(image.layers.clone()),
            Some(l) => assert_eq!(l, &image.layers),
        }
    }
    assert_eq!(fetched, 2, "config and layer, once each");
    assert_eq!(unpacked, 1);
    assert_eq!(store.stats().blobs_fetched, 2);
}

fn assert_layered(root: &Path) {
    assert!(root.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_to_string(root.join("data/keep")).unwrap(),
        "keep\n"
    );
    assert!(!root.join("data/gone").exists(), "layer 2's whiteout");
    assert!(
        !root.join("data/gone-later").exists(),
        "umoci's whiteout in layer 3"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("data/layer3")).unwrap(),
        "layer3\n"
    );
    let mut dir: Vec<String> = std::fs::read_dir(root.join("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    dir.sort();
    assert_eq!(dir, vec!["new"], "layer 2's opaque whiteout");
    for name in ["data/.wh.gone", "dir/.wh..wh..opq", "data/.wh.gone-later"] {
        assert!(
            std::fs::symlink_metadata(root.join(name)).is_err(),
            "{name} is visible"
        );
    }
}

#[tokio::test]
async fn the_layered_image_applies_whiteouts_in_overlay_and_in_a_copy() {
    if !fixture() {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let store = open_store(state.path());
    let image = store
        .pull(&format!("{REGISTRY}/aurae/layered:latest"), None)
        .await
        .unwrap();
    assert_eq!(image.layers.len(), 3);

    let containers = tempfile::tempdir().unwrap();
    let c1 = containers.path().join("c1");
    let c2 = containers.path().join("c2");
    let r1 = mount_rootfs(&image.layers, &c1).unwrap();
    let r2 = mount_rootfs(&image.layers, &c2).unwrap();
    assert_eq!(
        r1.kind,
        RootfsKind::Overlay,
        "overlayfs is available on this host"
    );
    assert_layered(&r1.path);

    // Each container writes to its own layer.
    std::fs::write(r1.path.join("data/keep"), "changed by c1").unwrap();
    std::fs::remove_file(r1.path.join("bin/sh")).unwrap();
    assert_eq!(
        std::fs::read_to_string(r2.path.join("data/keep")).unwrap(),
        "keep\n"
    );
    assert!(std::fs::symlink_metadata(r2.path.join("bin/sh")).is_ok());
    assert_eq!(
        std::fs::read_to_string(image.layers[0].join("data/keep")).unwrap(),
        "keep\n"
    );

    let p1 = r1.path.clone();
    r1.unmount().unwrap();
    drop(r2); // best-effort teardown on drop
    assert!(!c1.exists() && !c2.exists());
    assert!(mounted_under(containers.path()).unwrap().is_empty());
    assert!(!p1.exists());

    // Through a symlinked directory (as /var/run -> /run), and after a crash
    // (no Rootfs left to drop), everything still goes.
    let real = containers.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = containers.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let r3 = mount_rootfs(&image.layers, &link.join("c3")).unwrap();
    assert_layered(&r3.path);
    std::mem::forget(r3);
    assert_eq!(mounted_under(containers.path()).unwrap().len(), 1);
    remove_rootfs(&link.join("c3")).unwrap();
    assert!(mounted_under(containers.path()).unwrap().is_empty());
    assert!(!real.join("c3/rootfs").exists() && !real.join("c3/upper").exists());

    // The copy fallback applies the same whiteouts.
    let copy = containers.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    copy_layers(&image.layers, &copy).unwrap();
    assert_layered(&copy);
}

#[tokio::test]
async fn a_registry_that_is_down_is_unavailable() {
    let state = tempfile::tempdir().unwrap();
    let store = open_store(state.path());
    let e = store
        .pull("127.0.0.1:5999/aurae/busybox:latest", None)
        .await
        .unwrap_err();
    let status = image_status(e);
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(
        status.message(),
        "registry 127.0.0.1:5999 is unreachable: connection refused"
    );
}

#[tokio::test]
async fn unknown_repositories_and_tags_are_not_found() {
    if !fixture() {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let store = open_store(state.path());
    for reference in [
        format!("{REGISTRY}/aurae/does-not-exist:latest"),
        format!("{REGISTRY}/aurae/busybox:no-such-tag"),
    ] {
        let status = image_status(store.pull(&reference, None).await.unwrap_err());
        eprintln!("{:?}: {}", status.code(), status.message());
        assert_eq!(
            status.code(),
            tonic::Code::NotFound,
            "{reference}: {status:?}"
        );
        assert!(
            status.message().contains(&reference),
            "{}",
            status.message()
        );
    }
    let status = image_status(store.pull("Not A Reference", None).await.unwrap_err());
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn an_index_resolves_to_the_host_platform_or_names_what_it_has() {
    if !fixture() {
        return;
    }
    let repo = unique("index");
    let arm = push_image(
        &format!("{repo}:arm64"),
        &[tar_of(&[("arch", "arm64")])],
        "arm64",
    )
    .await;
    let amd = push_image(
        &format!("{repo}:amd64"),
        &[tar_of(&[("arch", "amd64")])],
        "amd64",
    )
    .await;
    push_index(&format!("{repo}:arm-only"), &repo, &[(&arm, "arm64")]).await;
    push_index(
        &format!("{repo}:multi"),
        &repo,
        &[(&arm, "arm64"), (&amd, "amd64")],
    )
    .await;

    let state = tempfile::tempdir().unwrap();
    let store = open_store(state.path());
    let status = image_status(
        store
            .pull(&format!("{repo}:arm-only"), None)
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(
        status.message().contains("has no linux/amd64 manifest")
            && status.message().contains("linux/arm64"),
        "{}",
        status.message()
    );

    let image = store.pull(&format!("{repo}:multi"), None).await.unwrap();
    assert_eq!(image.manifest_digest, amd);
    assert_eq!(
        std::fs::read_to_string(image.layers[0].join("arch")).unwrap(),
        "amd64"
    );
}

#[tokio::test]
async fn zstd_layers_pull_and_unpack_like_gzip_ones() {
    if !fixture() {
        return;
    }
    let reference = unique("zstd");
    let bottom = tar_of(&[("etc/motd", "from a gzip layer\n"), ("etc/keep", "k\n")]);
    let top = tar_of(&[("etc/motd", "from a zstd layer\n"), ("usr/zstd", "z\n")]);
    let layers = vec![
        ImageLayer::new(gzip(&bottom), IMAGE_LAYER_GZIP_MEDIA_TYPE.to_string(), None),
        ImageLayer::new(
            zstd::stream::encode_all(top.as_slice(), 19).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd".to_string(),
            None,
        ),
    ];
    let pushed = push_layers(&reference, layers, &[bottom, top], "amd64").await;

    let state = tempfile::tempdir().unwrap();
    let store = open_store(state.path());
    let image = store.pull(&reference, None).await.unwrap();
    assert_eq!(image.manifest_digest, pushed);
    assert_eq!(image.layers.len(), 2);
    assert_eq!(image.stats.layers_unpacked, 2);
    assert_eq!(
        std::fs::read_to_string(image.layers[1].join("usr/zstd")).unwrap(),
        "z\n"
    );
    let merged = state.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    copy_layers(&image.layers, &merged).unwrap();
    assert_eq!(
        std::fs::read_to_string(merged.join("etc/motd")).unwrap(),
        "from a zstd layer\n"
    );
    assert_eq!(
        std::fs::read_to_string(merged.join("etc/keep")).unwrap(),
        "k\n"
    );

    // The fixture image hack/build-test-images.sh makes with zstd(1).
    let image = store
        .pull(&format!("{REGISTRY}/aurae/busybox-zstd:latest"), None)
        .await
        .unwrap();
    assert_eq!(image.layers.len(), 1);
    assert_eq!(image.config.cmd, vec!["sh"]);
    let busybox = image.layers[0].join("bin/busybox");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&busybox).unwrap().permissions(),
    );
    assert!(mode & 0o111 != 0, "busybox is executable: {mode:o}");
    assert_eq!(
        std::fs::read(&busybox).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
}
