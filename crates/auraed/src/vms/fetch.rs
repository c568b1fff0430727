//! Disk images from http(s) URLs: re-resolved on every use with a
//! conditional request (ETag / Last-Modified), streamed to disk while being
//! hashed, and cached by digest: a URL whose server answers 304 downloads
//! nothing, and two URLs serving the same bytes share one file.
//!
//! A URL may pin its content with a `#sha256=<hex>` fragment; a download
//! with another digest is refused.
//!
//! Layout under `<state_dir>/vms/cache`: `sha256/<hex>` (verified disk
//! images, never written again), `urls/<sha256 of the URL>.json` (the
//! validators and digest last seen for a URL), `tmp/` (downloads).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::error::VmError;
use super::progress::Progress;

/// Largest disk image accepted.
pub const MAX_DISK_BYTES: u64 = 64 << 30;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between two chunks of a download.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What was last seen for one URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UrlEntry {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    digest: String,
}

/// A disk image in the cache.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// `sha256:<hex>`.
    pub digest: String,
    pub path: PathBuf,
    /// Bytes transferred by this fetch (0 when the cache answered).
    pub downloaded: u64,
}

pub struct DiskCache {
    root: PathBuf,
    http: reqwest::Client,
}

impl DiskCache {
    pub fn open(root: &Path) -> Result<Self, VmError> {
        for sub in ["sha256", "urls", "tmp"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir)
                .map_err(|e| VmError::io(format!("creating {}", dir.display()), e))?;
        }
        // Partial downloads of a daemon that died.
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| VmError::io("building the HTTP client", std::io::Error::other(e)))?;
        Ok(Self {
            root: root.to_path_buf(),
            http,
        })
    }

    /// The cached file of `digest` (`sha256:<hex>`), if present.
    pub fn blob(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        let p = self.root.join("sha256").join(hex);
        p.is_file().then_some(p)
    }

    /// Removes a cached image (one that proved unusable).
    pub fn forget(&self, digest: &str) {
        if let Some(p) = self.blob(digest) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Resolves `url` at its server and returns the cached image it serves;
    /// a download is counted in `progress`.
    pub async fn fetch(&self, url: &str, progress: &Progress) -> Result<Fetched, VmError> {
        let (location, pinned) = split_pin(url)?;
        let entry_path = self.root.join("urls").join(format!(
            "{}.json",
            hex::encode(Sha256::digest(location.as_bytes()))
        ));
        let cached = std::fs::read(&entry_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<UrlEntry>(&b).ok())
            .filter(|e| e.url == location && self.blob(&e.digest).is_some());
        let mut req = self.http.get(location);
        if let Some(e) = &cached {
            if let Some(t) = &e.etag {
                req = req.header(IF_NONE_MATCH, t);
            }
            if let Some(t) = &e.last_modified {
                req = req.header(IF_MODIFIED_SINCE, t);
            }
        }
        let resp = req.send().await.map_err(|e| VmError::Unreachable {
            url: location.to_string(),
            detail: crate::images::registry::root_cause(&e),
        })?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED {
            if let Some(e) = cached {
                check_pin(url, pinned, &e.digest)?;
                let path = self.blob(&e.digest).ok_or_else(|| VmError::Unreachable {
                    url: location.to_string(),
                    detail: "the cached copy vanished".into(),
                })?;
                return Ok(Fetched {
                    digest: e.digest,
                    path,
                    downloaded: 0,
                });
            }
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Err(VmError::HttpNotFound {
                url: location.to_string(),
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(VmError::HttpStatus {
                url: location.to_string(),
                status: status.as_u16(),
            });
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        let (digest, downloaded, path) = self.download(url, resp, progress).await?;
        check_pin(url, pinned, &digest).inspect_err(|_| {
            let _ = std::fs::remove_file(&path);
        })?;
        let path = self.store(&path, &digest)?;
        let entry = UrlEntry {
            url: location.to_string(),
            etag,
            last_modified,
            digest: digest.clone(),
        };
        if let Ok(bytes) = serde_json::to_vec(&entry) {
            let tmp = entry_path.with_extension("tmp");
            if std::fs::write(&tmp, bytes)
                .and_then(|_| std::fs::rename(&tmp, &entry_path))
                .is_err()
            {
                tracing::warn!(url = location, "could not remember the URL's validators");
            }
        }
        Ok(Fetched {
            digest,
            path,
            downloaded,
        })
    }

    /// Streams the body into `tmp/`, hashing it; bounded by [`MAX_DISK_BYTES`].
    async fn download(
        &self,
        url: &str,
        resp: reqwest::Response,
        progress: &Progress,
    ) -> Result<(String, u64, PathBuf), VmError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = self.root.join("tmp").join(format!(
            "download-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| VmError::io(format!("creating {}", path.display()), e))?;
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = Sha256::new();
        let mut n: u64 = 0;
        progress.start_download(resp.content_length());
        let mut body = resp.bytes_stream();
        let result = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| VmError::Unreachable {
                    url: url.to_string(),
                    detail: format!(
                        "download interrupted: {}",
                        crate::images::registry::root_cause(&e)
                    ),
                })?;
                n += chunk.len() as u64;
                if n > MAX_DISK_BYTES {
                    return Err(VmError::TooLarge {
                        image: url.to_string(),
                        limit: MAX_DISK_BYTES,
                    });
                }
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|e| VmError::io("writing a download", e))?;
                progress.add(chunk.len() as u64);
            }
            file.sync_all()
                .await
                .map_err(|e| VmError::io("writing a download", e))
        }
        .await;
        if let Err(e) = result {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok((
            format!("sha256:{}", hex::encode(hasher.finalize())),
            n,
            path,
        ))
    }

    /// Moves a verified download to its place by digest (read-only).
    fn store(&self, tmp: &Path, digest: &str) -> Result<PathBuf, VmError> {
        let hex = digest.trim_start_matches("sha256:");
        let dest = self.root.join("sha256").join(hex);
        if dest.is_file() {
            let _ = std::fs::remove_file(tmp);
            return Ok(dest);
        }
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o444));
        std::fs::rename(tmp, &dest).map_err(|e| {
            let _ = std::fs::remove_file(tmp);
            VmError::io(format!("storing {}", dest.display()), e)
        })?;
        Ok(dest)
    }
}

/// `url` without its `#sha256=<hex>` pin, and the pinned digest.
fn split_pin(url: &str) -> Result<(&str, Option<String>), VmError> {
    let Some((location, fragment)) = url.split_once('#') else {
        return Ok((url, None));
    };
    let bad = |detail: &str| VmError::BadImage {
        image: url.to_string(),
        detail: detail.to_string(),
    };
    let hex = fragment
        .strip_prefix("sha256=")
        .ok_or_else(|| bad("the only fragment understood is #sha256=<64 hex digits>"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("#sha256= needs 64 hex digits"));
    }
    Ok((
        location,
        Some(format!("sha256:{}", hex.to_ascii_lowercase())),
    ))
}

fn check_pin(url: &str, pinned: Option<String>, digest: &str) -> Result<(), VmError> {
    match pinned {
        Some(expected) if expected != digest => Err(VmError::DigestMismatch {
            image: url.to_string(),
            expected,
            actual: digest.to_string(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_parsed_and_checked() {
        let hex = "ab".repeat(32);
        let url = format!("http://h/d.qcow2#sha256={hex}");
        let (loc, pin) = split_pin(&url).expect("pin");
        assert_eq!(loc, "http://h/d.qcow2");
        assert_eq!(pin.as_deref(), Some(format!("sha256:{hex}").as_str()));
        assert!(split_pin("http://h/d#md5=00").is_err());
        assert!(split_pin("http://h/d#sha256=00").is_err());
        assert_eq!(split_pin("http://h/d").expect("plain").1, None);
        assert!(check_pin(&url, pin.clone(), &format!("sha256:{hex}")).is_ok());
        let e = check_pin(&url, pin, "sha256:00").expect_err("mismatch");
        assert!(matches!(e, VmError::DigestMismatch { .. }));
    }

    /// Serves `body` once on loopback with a Content-Length.
    async fn serve_once(body: Vec<u8>) -> String {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut request = vec![0u8; 4096];
            let _ = conn.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes()).await.expect("head");
            conn.write_all(&body).await.expect("body");
        });
        format!("http://{addr}/d.raw")
    }

    #[tokio::test]
    async fn a_download_is_counted_against_its_content_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = DiskCache::open(dir.path()).expect("cache");
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let url = serve_once(body.clone()).await;
        let progress = Progress::default();
        let f = cache.fetch(&url, &progress).await.expect("fetch");
        assert_eq!(f.downloaded, body.len() as u64);
        let v = progress.view();
        assert_eq!(v.phase, super::super::progress::Phase::Downloading);
        assert_eq!(v.bytes_done, body.len() as u64);
        assert_eq!(v.bytes_total, body.len() as u64, "from Content-Length");
    }
}
