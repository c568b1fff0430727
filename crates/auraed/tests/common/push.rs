//! Building small images in memory and pushing them to the test registry
//! with oci-client (plain HTTP), shared by the image tests by path.

#![allow(dead_code)]

use std::io::Write;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

use super::registry::REGISTRY;

pub fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, content.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(raw).unwrap();
    gz.finish().unwrap()
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn push_client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

/// Pushes an image with one gzip layer per raw tar; returns its manifest digest.
pub async fn push_image(reference: &str, raw_layers: &[Vec<u8>], arch: &str) -> String {
    let layers: Vec<ImageLayer> = raw_layers
        .iter()
        .map(|raw| ImageLayer::new(gzip(raw), IMAGE_LAYER_GZIP_MEDIA_TYPE.to_string(), None))
        .collect();
    push_layers(reference, layers, raw_layers, arch).await
}

/// Pushes an image of `layers` (compressed as they are) whose uncompressed
/// tars are `raw_layers`; returns its manifest digest.
pub async fn push_layers(
    reference: &str,
    layers: Vec<ImageLayer>,
    raw_layers: &[Vec<u8>],
    arch: &str,
) -> String {
    let auth = RegistryAuth::Anonymous;
    push_with(&push_client(), &auth, reference, layers, raw_layers, arch).await
}

/// [`push_layers`] with a client and credentials of the caller's choosing.
pub async fn push_with(
    client: &Client,
    auth: &RegistryAuth,
    reference: &str,
    layers: Vec<ImageLayer>,
    raw_layers: &[Vec<u8>],
    arch: &str,
) -> String {
    let r: Reference = reference.parse().unwrap();
    let diff_ids: Vec<String> = raw_layers.iter().map(|raw| sha256(raw)).collect();
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/bin/true"], "Env": ["PATH=/bin", "PUSHED=by-test"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = Config::new(
        serde_json::to_vec(&config).unwrap(),
        IMAGE_CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let manifest = OciImageManifest::build(&layers, &config, None);
    client
        .push(&r, &layers, config, auth, Some(manifest))
        .await
        .unwrap();
    client.fetch_manifest_digest(&r, auth).await.unwrap()
}

pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{REGISTRY}/aurae/test-{name}-{}-{nanos}",
        std::process::id()
    )
}
