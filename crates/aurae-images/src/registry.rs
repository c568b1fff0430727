//! Talking to registries through `oci-client`: plain HTTP or HTTPS per
//! registry, credentials, manifest and platform resolution, blob streams,
//! and the mapping of registry failures to [`ImageError`]s.

use std::error::Error as StdError;
use std::time::Duration;

use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientProtocol, SizedStream,
};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE,
    IMAGE_DOCKER_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE,
    IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE,
    IMAGE_LAYER_NONDISTRIBUTABLE_GZIP_MEDIA_TYPE, IMAGE_LAYER_NONDISTRIBUTABLE_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::digest::Digest;
use super::error::lowercase_first;
use super::error::ImageError;
use super::reference::ImageReference;
use super::registry_config::RegistryConfig;

/// Manifest media types asked for and accepted.
pub const MANIFEST_MEDIA_TYPES: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// An OCI layer compressed with zstd (oci-client has no constant for it).
pub const IMAGE_LAYER_ZSTD_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Layer media types accepted (compression is detected from the content).
pub const LAYER_MEDIA_TYPES: &[&str] = &[
    IMAGE_LAYER_GZIP_MEDIA_TYPE,
    IMAGE_LAYER_ZSTD_MEDIA_TYPE,
    IMAGE_LAYER_MEDIA_TYPE,
    IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE,
    IMAGE_DOCKER_LAYER_TAR_MEDIA_TYPE,
    IMAGE_LAYER_NONDISTRIBUTABLE_GZIP_MEDIA_TYPE,
    IMAGE_LAYER_NONDISTRIBUTABLE_MEDIA_TYPE,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

/// Largest manifest or configuration blob accepted (they are read into memory).
pub const MAX_METADATA_BYTES: u64 = 8 << 20;

/// The platform an image index is resolved to: the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPlatform {
    pub os: String,
    pub architecture: String,
}

impl TargetPlatform {
    /// Linux on this machine's architecture, in OCI (GOARCH) spelling.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Self {
            os: "linux".into(),
            architecture: architecture.into(),
        }
    }
}

impl std::fmt::Display for TargetPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)
    }
}

/// A fetched manifest, not yet resolved to a platform.
pub enum FetchedManifest {
    Image(Box<OciImageManifest>),
    Index(OciImageIndex),
}

pub struct Registry {
    https: Client,
    http: Client,
    /// HTTPS clients that also trust a registry's own CA, by registry.
    with_ca: std::collections::HashMap<String, Client>,
    config: RegistryConfig,
    platform: TargetPlatform,
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Self {
        // reqwest is built without a default rustls provider: use ring, as the
        // rest of the daemon does. Fails harmlessly when one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = |protocol, ca: Option<&[u8]>| {
            Client::new(ClientConfig {
                protocol,
                platform_resolver: None,
                connect_timeout: Some(Duration::from_secs(10)),
                read_timeout: Some(Duration::from_secs(120)),
                extra_root_certificates: ca
                    .map(|pem| Certificate {
                        encoding: CertificateEncoding::Pem,
                        data: pem.to_vec(),
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            })
        };
        let with_ca = config
            .ca_certs
            .iter()
            .map(|(registry, pem)| {
                (
                    registry.clone(),
                    client(ClientProtocol::Https, Some(pem.as_slice())),
                )
            })
            .collect();
        Self {
            https: client(ClientProtocol::Https, None),
            http: client(ClientProtocol::Http, None),
            with_ca,
            config,
            platform: TargetPlatform::host(),
        }
    }

    pub fn platform(&self) -> &TargetPlatform {
        &self.platform
    }

    fn client(&self, r: &ImageReference) -> &Client {
        if self.config.ca_for(r.registry()).is_some() {
            if let Some(c) = self.with_ca.get(&r.registry().to_ascii_lowercase()) {
                return c;
            }
        }
        if self.config.is_insecure(r.registry()) {
            &self.http
        } else {
            &self.https
        }
    }

    fn auth(&self, r: &ImageReference) -> RegistryAuth {
        match self.config.credentials_for(r.registry()) {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    /// Fetches the manifest `at` (the reference itself, or a digest in its
    /// repository) and verifies its digest. Returns the raw bytes, for the
    /// store, and the parsed manifest.
    pub async fn manifest(
        &self,
        r: &ImageReference,
        at: &Reference,
    ) -> Result<(Vec<u8>, Digest, FetchedManifest), ImageError> {
        let (body, digest) = self
            .client(r)
            .pull_manifest_raw(at, &self.auth(r), MANIFEST_MEDIA_TYPES)
            .await
            .map_err(|e| self.map_error(e, r))?;
        let digest = Digest::parse(&digest).map_err(|e| ImageError::Unsupported {
            reference: r.to_string(),
            detail: format!("the registry's manifest {e}"),
        })?;
        let parsed = parse_manifest(r, &body)?;
        Ok((body.to_vec(), digest, parsed))
    }

    /// Picks the manifest for this host's platform from an index.
    pub fn select_platform(
        &self,
        r: &ImageReference,
        index: &OciImageIndex,
    ) -> Result<Digest, ImageError> {
        select_platform(r, index, &self.platform)
    }

    /// Opens a blob download. The caller verifies the digest as it writes.
    pub async fn blob(
        &self,
        r: &ImageReference,
        desc: &OciDescriptor,
    ) -> Result<SizedStream, ImageError> {
        // Blob requests reuse the credentials stored by the manifest request.
        self.client(r)
            .pull_blob_stream(r.oci(), desc)
            .await
            .map_err(|e| self.map_error(e, r))
    }

    /// A failure while a blob streams in.
    pub fn map_stream_error(
        &self,
        e: std::io::Error,
        r: &ImageReference,
        what: &str,
    ) -> ImageError {
        if let Some(d) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<oci_client::errors::DigestError>())
        {
            return ImageError::DigestMismatch {
                reference: r.to_string(),
                what: what.to_string(),
                detail: lowercase_first(&d.to_string()),
            };
        }
        ImageError::Unreachable {
            registry: r.registry().to_string(),
            detail: format!("the download of {what} broke: {}", root_cause(&e)),
        }
    }

    pub fn map_error(&self, e: OciDistributionError, r: &ImageReference) -> ImageError {
        let registry = r.registry().to_string();
        let reference = r.to_string();
        let denied = |detail: String| ImageError::Denied {
            registry: registry.clone(),
            reference: reference.clone(),
            detail,
        };
        let creds_hint = match &self.config.auth_file {
            Some(p) => format!("check its credentials in {}", p.display()),
            None => "add credentials for it to the registry auth file (see docs/images.md)".into(),
        };
        match e {
            OciDistributionError::RequestError(re) => {
                let cause = root_cause(&re);
                if re.is_connect() || re.is_timeout() {
                    // rustls errors reach us as text when another rustls
                    // build or an io::Error wrapper sits in between.
                    let tls_text = ["certificate", "tls", "handshake"]
                        .iter()
                        .any(|w| cause.to_ascii_lowercase().contains(w));
                    let hint = if chain_has_tls_error(&re) || tls_text {
                        " (TLS failed: if this registry serves plain HTTP, list it under `insecure` in /etc/aurae/registries.toml; if a private CA signed its certificate, name the CA under `ca_files` there)"
                    } else {
                        ""
                    };
                    ImageError::Unreachable {
                        registry,
                        detail: format!("{cause}{hint}"),
                    }
                } else {
                    ImageError::Registry {
                        registry,
                        reference,
                        detail: cause,
                    }
                }
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let detail = envelope
                    .errors
                    .iter()
                    .map(|e| {
                        let msg = if e.message.is_empty() {
                            format!("{:?}", e.code)
                        } else {
                            e.message.clone()
                        };
                        lowercase_first(&msg)
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                let code = envelope.errors.first().map(|e| &e.code);
                match code {
                    Some(
                        OciErrorCode::NameUnknown
                        | OciErrorCode::ManifestUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::ManifestBlobUnknown,
                    ) => ImageError::NotFound { reference, detail },
                    Some(OciErrorCode::Unauthorized | OciErrorCode::Denied) => denied(format!(
                        "{detail}: the repository does not exist or needs credentials ({creds_hint})"
                    )),
                    Some(OciErrorCode::NameInvalid | OciErrorCode::TagInvalid) => {
                        ImageError::InvalidReference {
                            reference,
                            reason: detail,
                        }
                    }
                    _ => ImageError::Registry {
                        registry,
                        reference,
                        detail,
                    },
                }
            }
            OciDistributionError::ServerError { code, message, .. } => {
                let detail = format!(
                    "http {code}: {}",
                    message.trim().chars().take(300).collect::<String>()
                );
                match code {
                    404 => ImageError::NotFound { reference, detail },
                    401 | 403 => denied(format!("{detail} ({creds_hint})")),
                    _ => ImageError::Registry {
                        registry,
                        reference,
                        detail,
                    },
                }
            }
            OciDistributionError::UnauthorizedError { .. } => denied(format!(
                "the repository does not exist or needs credentials ({creds_hint})"
            )),
            OciDistributionError::AuthenticationFailure(msg) => denied(format!(
                "authentication failed: {} ({creds_hint})",
                msg.trim().chars().take(300).collect::<String>()
            )),
            OciDistributionError::DigestError(d) => ImageError::DigestMismatch {
                reference,
                what: "the manifest".into(),
                detail: lowercase_first(&d.to_string()),
            },
            OciDistributionError::ImageManifestNotFoundError(msg) => ImageError::NotFound {
                reference,
                detail: lowercase_first(&msg),
            },
            e @ (OciDistributionError::UnsupportedMediaTypeError(_)
            | OciDistributionError::UnsupportedSchemaVersionError(_)
            | OciDistributionError::ManifestParsingError(_)
            | OciDistributionError::VersionedParsingError(_)
            | OciDistributionError::IncompatibleLayerMediaTypeError(_)
            | OciDistributionError::ManifestEncodingError(_)
            | OciDistributionError::JsonError(_)) => ImageError::Unsupported {
                reference,
                detail: lowercase_first(&e.to_string()),
            },
            OciDistributionError::IoError(io) => ImageError::Unreachable {
                registry,
                detail: root_cause(&io),
            },
            other => ImageError::Registry {
                registry,
                reference,
                detail: lowercase_first(&other.to_string()),
            },
        }
    }
}

/// Parses a manifest body: an image manifest or an index, OCI or Docker.
pub fn parse_manifest(r: &ImageReference, body: &[u8]) -> Result<FetchedManifest, ImageError> {
    let unsupported = |detail: String| ImageError::Unsupported {
        reference: r.to_string(),
        detail,
    };
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| unsupported(format!("the manifest is not JSON: {e}")))?;
    let schema = value.get("schemaVersion").and_then(|v| v.as_i64());
    if schema != Some(2) {
        return Err(unsupported(format!(
            "manifest schema version {} is not supported (only 2)",
            schema.map_or("missing".to_string(), |s| s.to_string())
        )));
    }
    let media_type = value.get("mediaType").and_then(|v| v.as_str());
    if let Some(mt) = media_type {
        if !MANIFEST_MEDIA_TYPES.contains(&mt) {
            return Err(unsupported(format!(
                "manifest media type {mt} is not supported"
            )));
        }
    }
    let is_index = match media_type {
        Some(OCI_IMAGE_INDEX_MEDIA_TYPE | IMAGE_MANIFEST_LIST_MEDIA_TYPE) => true,
        Some(_) => false,
        None => value.get("manifests").is_some(),
    };
    if is_index {
        let index: OciImageIndex = serde_json::from_value(value)
            .map_err(|e| unsupported(format!("the image index does not parse: {e}")))?;
        return Ok(FetchedManifest::Index(index));
    }
    let manifest: OciImageManifest = serde_json::from_value(value)
        .map_err(|e| unsupported(format!("the image manifest does not parse: {e}")))?;
    let config_type = manifest.config.media_type.as_str();
    if config_type != IMAGE_CONFIG_MEDIA_TYPE && config_type != IMAGE_DOCKER_CONFIG_MEDIA_TYPE {
        return Err(unsupported(format!(
            "it is an artifact with configuration type {config_type}, not a container image"
        )));
    }
    for layer in &manifest.layers {
        let mt = layer.media_type.as_str();
        if !LAYER_MEDIA_TYPES.contains(&mt) {
            return Err(unsupported(format!(
                "layer {} has media type {mt}: the media type is not a container image layer (gzip, zstd or uncompressed tar)",
                layer.digest
            )));
        }
    }
    Ok(FetchedManifest::Image(Box::new(manifest)))
}

/// The first index entry for `platform`; the error names what the index has.
pub fn select_platform(
    r: &ImageReference,
    index: &OciImageIndex,
    platform: &TargetPlatform,
) -> Result<Digest, ImageError> {
    let matches = |e: &&ImageIndexEntry| {
        e.platform.as_ref().is_some_and(|p| {
            p.os.to_string() == platform.os && p.architecture.to_string() == platform.architecture
        })
    };
    if let Some(entry) = index.manifests.iter().find(matches) {
        return Digest::parse(&entry.digest).map_err(|e| ImageError::Unsupported {
            reference: r.to_string(),
            detail: format!("its index entry for {platform} has a bad {e}"),
        });
    }
    let mut available: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|e| e.platform.as_ref())
        .map(|p| {
            let mut s = format!("{}/{}", p.os, p.architecture);
            if let Some(v) = p.variant.as_deref().filter(|v| !v.is_empty()) {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .filter(|s| s != "unknown/unknown")
        .collect();
    available.dedup();
    Err(ImageError::NoPlatform {
        reference: r.to_string(),
        wanted: platform.to_string(),
        available: if available.is_empty() {
            "no platform".into()
        } else {
            available.join(", ")
        },
    })
}

/// The innermost cause of an error, phrased for a person.
pub fn root_cause(e: &(dyn StdError + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    if let Some(io) = cur.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind as K;
        let known = match io.kind() {
            K::ConnectionRefused => Some("connection refused"),
            K::ConnectionReset => Some("connection reset"),
            K::ConnectionAborted => Some("connection aborted"),
            K::TimedOut => Some("timed out"),
            K::HostUnreachable => Some("host unreachable"),
            K::NetworkUnreachable => Some("network unreachable"),
            K::UnexpectedEof => Some("connection closed early"),
            _ => None,
        };
        if let Some(k) = known {
            return k.to_string();
        }
    }
    lowercase_first(&cur.to_string())
}

fn chain_has_tls_error(e: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // io::Error's source() skips the error it wraps: look at it too.
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if inner.downcast_ref::<rustls::Error>().is_some() {
                return true;
            }
            cur = inner.source();
            continue;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn r() -> ImageReference {
        ImageReference::parse("127.0.0.1:5000/x:latest").unwrap()
    }

    #[test]
    fn index_without_the_host_platform_names_what_exists() {
        let index: OciImageIndex = serde_json::from_str(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":1,"platform":{"os":"linux","architecture":"s390x"}},
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","size":1,"platform":{"os":"unknown","architecture":"unknown"}}]}"#,
        )
        .unwrap();
        let amd64 = TargetPlatform {
            os: "linux".into(),
            architecture: "amd64".into(),
        };
        let e = select_platform(&r(), &index, &amd64).unwrap_err();
        assert!(matches!(e, ImageError::NoPlatform { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "image 127.0.0.1:5000/x:latest has no linux/amd64 manifest: its index lists linux/arm64/v8, linux/s390x"
        );
        let s390x = TargetPlatform {
            os: "linux".into(),
            architecture: "s390x".into(),
        };
        assert_eq!(
            select_platform(&r(), &index, &s390x).unwrap().hex(),
            "2222222222222222222222222222222222222222222222222222222222222222"
        );
    }

    #[test]
    fn manifests_of_both_flavours_parse_and_artifacts_are_refused() {
        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
          "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:aa","size":1},
          "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:bb","size":1}]}"#;
        assert!(matches!(
            parse_manifest(&r(), docker),
            Ok(FetchedManifest::Image(_))
        ));
        let list = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert!(matches!(
            parse_manifest(&r(), list),
            Ok(FetchedManifest::Index(_))
        ));
        let untyped_index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_manifest(&r(), untyped_index),
            Ok(FetchedManifest::Index(_))
        ));

        let zstd = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
          "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":1},
          "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"sha256:bb","size":1}]}"#;
        assert!(matches!(
            parse_manifest(&r(), zstd),
            Ok(FetchedManifest::Image(_))
        ));
        let lz4 = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
          "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":1},
          "layers":[{"mediaType":"application/vnd.example.layer+lz4","digest":"sha256:bb","size":1}]}"#;
        let e = parse_manifest(&r(), lz4).err().unwrap();
        assert!(e.to_string().contains("lz4"), "{e}");
        assert!(matches!(e, ImageError::Unsupported { .. }), "{e}");

        let artifact = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
          "config":{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"sha256:aa","size":1},
          "layers":[]}"#;
        let e = parse_manifest(&r(), artifact).err().unwrap();
        assert!(e.to_string().contains("not a container image"), "{e}");

        let schema1 = br#"{"schemaVersion":1,"name":"x","tag":"latest","fsLayers":[]}"#;
        assert!(parse_manifest(&r(), schema1).is_err());
    }

    #[test]
    fn root_cause_names_a_refused_connection() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(root_cause(&io), "connection refused");
    }
}
