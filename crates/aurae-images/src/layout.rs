//! OCI image layouts (image-spec `image-layout.md`): how a parent hands the
//! images it pulled to a nested instance that cannot reach the registry.
//!
//! The parent exports each pulled image into a layout directory (`oci-layout`,
//! `index.json` naming each image by its full reference in the
//! `org.opencontainers.image.ref.name` annotation, `blobs/sha256/*` hard
//! linked from the store where possible), shared read-only with the
//! instance. The instance's store, given `--image-preload-dir`, takes an
//! image whose reference the layout names from there instead of the
//! registry, verifying every blob's digest as it copies it in.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::digest::{Digest, Verifier};
use super::error::ImageError;
use super::reference::ImageReference;
use super::store::{ImageStore, PulledImage};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
const INDEX: &str = "index.json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The manifest's own media type, its configuration and layer digests.
fn manifest_parts(bytes: &[u8]) -> Option<(String, Vec<Digest>)> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let media = v
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or(OCI_MANIFEST)
        .to_string();
    let mut blobs = vec![Digest::parse(v.get("config")?.get("digest")?.as_str()?).ok()?];
    for l in v.get("layers")?.as_array()? {
        blobs.push(Digest::parse(l.get("digest")?.as_str()?).ok()?);
    }
    Some((media, blobs))
}

impl ImageStore {
    /// Writes an OCI image layout of `images` (pulled by this store) into
    /// `dir`, which must not exist yet.
    pub async fn export_layout(
        &self,
        images: &[PulledImage],
        dir: &Path,
    ) -> Result<(), ImageError> {
        let _gc = self.gc_lock().read().await;
        let blobs_dir = self.root().join("blobs/sha256");
        let (images, dir) = (images.to_vec(), dir.to_path_buf());
        tokio::task::spawn_blocking(move || export(&blobs_dir, &images, &dir))
            .await
            .map_err(|e| ImageError::Task(e.to_string()))?
    }

    /// The manifest digest of `r` in the preload layout, once its blobs are
    /// verified into the store; `None` when the layout does not name it.
    pub(super) async fn preloaded(&self, r: &ImageReference) -> Result<Option<Digest>, ImageError> {
        let Some(layout) = self.preload_dir().map(Path::to_path_buf) else {
            return Ok(None);
        };
        if !layout.join(INDEX).is_file() {
            return Ok(None);
        }
        let (name, blobs_dir, tmp) = (
            r.to_string(),
            self.root().join("blobs/sha256"),
            self.root().join("tmp"),
        );
        let found = tokio::task::spawn_blocking(move || import(&layout, &name, &blobs_dir, &tmp))
            .await
            .map_err(|e| ImageError::Task(e.to_string()))??;
        if let Some(d) = &found {
            tracing::info!(reference = %r, manifest = %d, "image taken from the preload layout");
        }
        Ok(found)
    }
}

fn export(blobs_dir: &Path, images: &[PulledImage], dir: &Path) -> Result<(), ImageError> {
    let out = dir.join("blobs/sha256");
    std::fs::create_dir_all(&out).map_err(|e| ImageError::store(&out, "creating the layout", e))?;
    let mut manifests = Vec::new();
    for image in images {
        let digest =
            Digest::parse(&image.manifest_digest).map_err(|e| ImageError::Unsupported {
                reference: image.reference.clone(),
                detail: e.to_string(),
            })?;
        let path = blobs_dir.join(digest.hex());
        let bytes =
            std::fs::read(&path).map_err(|e| ImageError::store(&path, "reading a manifest", e))?;
        let (media, parts) = manifest_parts(&bytes).ok_or_else(|| ImageError::Unsupported {
            reference: image.reference.clone(),
            detail: "its stored manifest lists no configuration or layers".into(),
        })?;
        for d in std::iter::once(&digest).chain(&parts) {
            link_or_copy(&blobs_dir.join(d.hex()), &out.join(d.hex()))?;
        }
        manifests.push(json!({
            "mediaType": media,
            "digest": digest.to_string(),
            "size": bytes.len(),
            "annotations": { REF_NAME: image.reference },
        }));
    }
    let index = json!({ "schemaVersion": 2, "manifests": manifests });
    let write = |name: &str, v: &Value| {
        let p = dir.join(name);
        std::fs::write(&p, v.to_string())
            .map_err(|e| ImageError::store(&p, "writing the layout", e))
    };
    write("oci-layout", &json!({ "imageLayoutVersion": "1.0.0" }))?;
    write(INDEX, &index)
}

fn link_or_copy(from: &Path, to: &Path) -> Result<(), ImageError> {
    if to.exists() {
        return Ok(());
    }
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| ImageError::store(from, "copying a blob into the layout", e))
}

fn import(
    layout: &Path,
    name: &str,
    blobs_dir: &Path,
    tmp: &Path,
) -> Result<Option<Digest>, ImageError> {
    let index_path = layout.join(INDEX);
    let text = std::fs::read(&index_path)
        .map_err(|e| ImageError::store(&index_path, "reading the preload index", e))?;
    let index: Value = serde_json::from_slice(&text).map_err(|e| ImageError::Unsupported {
        reference: name.to_string(),
        detail: format!(
            "the preload index {} is not JSON: {e}",
            index_path.display()
        ),
    })?;
    let entry = index
        .get("manifests")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter().find(|d| {
                d.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                    .and_then(Value::as_str)
                    == Some(name)
            })
        });
    let Some(digest) = entry
        .and_then(|d| d.get("digest"))
        .and_then(Value::as_str)
        .and_then(|d| Digest::parse(d).ok())
    else {
        return Ok(None);
    };
    let src = layout.join("blobs/sha256");
    copy_verified(&src, &digest, blobs_dir, tmp, name)?;
    let manifest = blobs_dir.join(digest.hex());
    let bytes = std::fs::read(&manifest)
        .map_err(|e| ImageError::store(&manifest, "reading a manifest", e))?;
    let (_, parts) = manifest_parts(&bytes).ok_or_else(|| ImageError::Unsupported {
        reference: name.to_string(),
        detail: "its preloaded manifest lists no configuration or layers".into(),
    })?;
    for d in &parts {
        copy_verified(&src, d, blobs_dir, tmp, name)?;
    }
    Ok(Some(digest))
}

/// Copies blob `digest` from `src` into the store unless there, checking
/// that its content hashes to its name.
fn copy_verified(
    src: &Path,
    digest: &Digest,
    blobs_dir: &Path,
    tmp: &Path,
    name: &str,
) -> Result<(), ImageError> {
    let dest = blobs_dir.join(digest.hex());
    if dest.exists() {
        return Ok(());
    }
    let from = src.join(digest.hex());
    let staged: PathBuf = tmp.join(format!("preload-{}-{}", digest.hex(), std::process::id()));
    let mut input = std::fs::File::open(&from)
        .map_err(|e| ImageError::store(&from, "opening a preloaded blob", e))?;
    let mut output = std::fs::File::create(&staged)
        .map_err(|e| ImageError::store(&staged, "staging a preloaded blob", e))?;
    let mut verifier = Verifier::new(digest.clone(), None);
    let mut buf = vec![0u8; 1 << 16];
    let copied = (|| -> std::io::Result<Result<(), String>> {
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                return Ok(Ok(()));
            }
            if let Err(e) = verifier.update(&buf[..n]) {
                return Ok(Err(e.to_string()));
            }
            std::io::Write::write_all(&mut output, &buf[..n])?;
        }
    })();
    let mismatch = |detail: String| {
        let _ = std::fs::remove_file(&staged);
        ImageError::DigestMismatch {
            reference: name.to_string(),
            what: format!("preloaded blob {digest}"),
            detail,
        }
    };
    match copied {
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(ImageError::store(&from, "reading a preloaded blob", e));
        }
        Ok(Err(detail)) => return Err(mismatch(detail)),
        Ok(Ok(())) => {}
    }
    verifier.finish().map_err(|e| mismatch(e.to_string()))?;
    std::fs::rename(&staged, &dest)
        .map_err(|e| ImageError::store(&dest, "storing a preloaded blob", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RegistryConfig;

    /// A store holding one image's manifest, configuration and layer.
    fn store_with_image(dir: &Path) -> (std::sync::Arc<ImageStore>, PulledImage, Digest) {
        let store = ImageStore::open(dir, RegistryConfig::default()).expect("store");
        let blobs = store.root().join("blobs/sha256");
        let put = |bytes: &[u8]| {
            let d = Digest::of(bytes);
            std::fs::write(blobs.join(d.hex()), bytes).expect("blob");
            d
        };
        let config = put(
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        );
        let layer = put(b"not really a tarball");
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 1},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": 1}],
        }))
        .expect("json");
        let m = put(&manifest);
        let pulled = PulledImage {
            reference: "127.0.0.1:5000/aurae/busybox:latest".into(),
            manifest_digest: m.to_string(),
            config: Default::default(),
            layers: Vec::new(),
            layer_digests: vec![layer.to_string()],
            stats: Default::default(),
        };
        (store, pulled, layer)
    }

    #[tokio::test]
    async fn an_exported_layout_is_imported_verified_by_reference() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (parent, pulled, layer) = store_with_image(&dir.path().join("parent"));
        let layout = dir.path().join("layout");
        parent
            .export_layout(std::slice::from_ref(&pulled), &layout)
            .await
            .expect("export");
        let index: Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
                .expect("json");
        assert_eq!(
            index["manifests"][0]["annotations"][REF_NAME],
            "127.0.0.1:5000/aurae/busybox:latest"
        );
        assert_eq!(
            std::fs::read_dir(layout.join("blobs/sha256"))
                .expect("blobs")
                .count(),
            3
        );
        // Hard links from the store, not copies.
        use std::os::unix::fs::MetadataExt;
        let nlink = std::fs::metadata(layout.join("blobs/sha256").join(layer.hex()))
            .expect("meta")
            .nlink();
        assert_eq!(nlink, 2);

        let guest =
            ImageStore::open(&dir.path().join("guest"), RegistryConfig::default()).expect("store");
        guest.set_preload_dir(layout.clone());
        let r = ImageReference::parse("127.0.0.1:5000/aurae/busybox:latest").expect("ref");
        let got = guest.preloaded(&r).await.expect("import");
        assert_eq!(
            got.map(|d| d.to_string()),
            Some(pulled.manifest_digest.clone())
        );
        assert!(guest
            .root()
            .join("blobs/sha256")
            .join(layer.hex())
            .is_file());
        let other = ImageReference::parse("127.0.0.1:5000/aurae/other:latest").expect("ref");
        assert!(guest.preloaded(&other).await.expect("other").is_none());

        // A tampered blob is refused and not stored.
        let tampered = ImageStore::open(&dir.path().join("tampered"), RegistryConfig::default())
            .expect("store");
        tampered.set_preload_dir(layout.clone());
        let blob = layout.join("blobs/sha256").join(layer.hex());
        std::fs::remove_file(&blob).expect("unlink");
        std::fs::write(&blob, b"something else").expect("tamper");
        let e = tampered.preloaded(&r).await.expect_err("tampered");
        assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
        assert!(!tampered
            .root()
            .join("blobs/sha256")
            .join(layer.hex())
            .exists());
    }
}
