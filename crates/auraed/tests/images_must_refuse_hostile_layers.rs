//! Hostile images, pushed by the test itself with oci-client to the registry
//! on 127.0.0.1:5000, are refused whole and nothing lands outside the store.
//! Needs root and hack/registry-up.sh; without them the tests fail when `CI`
//! is set and are skipped (with the reason) otherwise.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use auraed::api::status::image_status;
use auraed::images::{ImageStore, RegistryConfig};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use registry::REGISTRY;

#[path = "common/registry.rs"]
mod registry;

/// Root and the registry fixture; skipped with a reason, or a failure on CI.
fn fixture() -> bool {
    registry::require_registry(module_path!())
}

/// A layer built entry by entry with raw names, so hostile names survive.
#[derive(Default)]
struct Layer {
    entries: Vec<(Header, Vec<u8>)>,
}

impl Layer {
    fn entry(mut self, path: &str, kind: EntryType, data: &[u8], link: Option<&str>) -> Self {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        if let Some(link) = link {
            h.set_link_name_literal(link.as_bytes()).unwrap();
        }
        if kind == EntryType::Char {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        self.entries.push((h, data.to_vec()));
        self
    }

    fn file(self, path: &str, content: &str) -> Self {
        self.entry(path, EntryType::Regular, content.as_bytes(), None)
    }

    fn tar(&self) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (h, data) in &self.entries {
            b.append(h, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    }
}

async fn push(reference: &str, layers: &[Layer]) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let raws: Vec<Vec<u8>> = layers.iter().map(Layer::tar).collect();
    let image_layers: Vec<ImageLayer> = raws
        .iter()
        .map(|raw| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(raw).unwrap();
            ImageLayer::new(
                gz.finish().unwrap(),
                IMAGE_LAYER_GZIP_MEDIA_TYPE.to_string(),
                None,
            )
        })
        .collect();
    let diff_ids: Vec<String> = raws
        .iter()
        .map(|raw| format!("sha256:{}", hex::encode(Sha256::digest(raw))))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = Config::new(
        serde_json::to_vec(&config).unwrap(),
        IMAGE_CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let manifest = OciImageManifest::build(&image_layers, &config, None);
    let r: Reference = reference.parse().unwrap();
    client
        .push(
            &r,
            &image_layers,
            config,
            &RegistryAuth::Anonymous,
            Some(manifest),
        )
        .await
        .unwrap();
}

fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(tree(&p));
        }
        out.push(p);
    }
    out
}

#[tokio::test]
async fn hostile_layers_are_refused_and_nothing_lands_outside_the_store() {
    if !fixture() {
        return;
    }
    let sandbox = tempfile::tempdir().unwrap();
    let state = sandbox.path().join("state");
    let outside = sandbox.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let secret = outside.join("secret");
    std::fs::write(&secret, "host secret").unwrap();
    let store = ImageStore::open(&state, RegistryConfig::default()).unwrap();
    // Staging dirs are <state>/images/tmp/<name>: five `..` reach the sandbox.
    let climb = "../../../../../outside";
    let marker = format!("aurae-escape-{}", std::process::id());
    let outside_s = outside.display().to_string();

    let cases: Vec<(&str, Vec<Layer>, &str)> = vec![
        (
            "traversal",
            vec![Layer::default()
                .file("ok", "fine")
                .file(&format!("{climb}/{marker}"), "escaped")],
            "has a '..' component",
        ),
        (
            "symlink",
            vec![Layer::default()
                .entry(
                    "x",
                    EntryType::Symlink,
                    b"",
                    Some("../../../../../../../etc"),
                )
                .file("x/passwd", "root::0:0::/:/bin/sh")],
            "leaves the root filesystem",
        ),
        (
            "through-symlink",
            vec![Layer::default()
                .entry("x", EntryType::Symlink, b"", Some(&outside_s))
                .file(&format!("x/{marker}"), "escaped")],
            "is not a directory",
        ),
        (
            "hardlink",
            vec![Layer::default().entry("passwd", EntryType::Link, b"", Some("../../etc/passwd"))],
            "is outside the layer",
        ),
        (
            "hardlink-via-symlink",
            vec![Layer::default()
                .entry("out", EntryType::Symlink, b"", Some(&outside_s))
                .entry("stolen", EntryType::Link, b"", Some("out/secret"))],
            "is outside the layer",
        ),
        (
            "device",
            vec![Layer::default().entry("dev/mem", EntryType::Char, b"", None)],
            "device nodes are not allowed",
        ),
        (
            // A good first layer, a hostile second: the whole image fails.
            "second-layer",
            vec![
                Layer::default().file("etc/hostname", "fine"),
                Layer::default().file(&format!("../{marker}"), "escaped"),
            ],
            "has a '..' component",
        ),
    ];

    for (name, layers, why) in cases {
        let reference = format!(
            "{REGISTRY}/aurae/test-hostile-{name}-{}:latest",
            std::process::id()
        );
        push(&reference, &layers).await;
        let err = store.pull(&reference, None).await.unwrap_err();
        let status = image_status(err);
        eprintln!("{name}: {:?}: {}", status.code(), status.message());
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{name}: {status:?}"
        );
        assert!(
            status.message().contains(why) && status.message().contains("refused"),
            "{name}: {}",
            status.message()
        );

        // Nothing outside the store, no staging left, no hostile layer kept.
        let mut outside_now = tree(&outside);
        outside_now.sort();
        assert_eq!(outside_now, vec![secret.clone()], "{name}: wrote outside");
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host secret");
        assert_eq!(std::fs::metadata(&secret).unwrap().len(), 11);
        let mut top: Vec<_> = std::fs::read_dir(sandbox.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, vec!["outside", "state"], "{name}");
        assert!(
            tree(&store.root().join("tmp")).is_empty(),
            "{name}: staging left behind"
        );
        assert!(!Path::new("/etc").join(&marker).exists());
        assert!(!Path::new("/").join(&marker).exists());
    }
    // Only the good first layer of "second-layer" may have been kept.
    let unpacked = tree(&store.root().join("unpacked/sha256"));
    assert!(
        unpacked.iter().all(|p| p.ends_with("etc/hostname")
            || p.ends_with("etc")
            || p.parent() == Some(&store.root().join("unpacked/sha256"))),
        "{unpacked:?}"
    );
}

#[tokio::test]
async fn a_layer_that_does_not_match_its_diff_id_is_refused() {
    if !fixture() {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let raw = Layer::default().file("a", "b").tar();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let layer = ImageLayer::new(
        gz.finish().unwrap(),
        IMAGE_LAYER_GZIP_MEDIA_TYPE.to_string(),
        None,
    );
    let lie = format!("sha256:{}", hex::encode(Sha256::digest(b"another layer")));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [lie]},
    });
    let config = Config::new(
        serde_json::to_vec(&config).unwrap(),
        IMAGE_CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, None);
    let reference = format!("{REGISTRY}/aurae/test-diffid-{}:latest", std::process::id());
    let r: Reference = reference.parse().unwrap();
    client
        .push(
            &r,
            &[layer],
            config,
            &RegistryAuth::Anonymous,
            Some(manifest),
        )
        .await
        .unwrap();

    let state = tempfile::tempdir().unwrap();
    let store = ImageStore::open(state.path(), RegistryConfig::default()).unwrap();
    let status = image_status(store.pull(&reference, None).await.unwrap_err());
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("the image configuration says"),
        "{}",
        status.message()
    );
    assert!(tree(&store.root().join("unpacked/sha256")).is_empty());
}
