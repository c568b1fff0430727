//! Which registries are spoken to over plain HTTP, and the credentials for
//! each: `/etc/aurae/registries.toml` and a docker-style `auth.json`.
//!
//! ```toml
//! # /etc/aurae/registries.toml (optional; absent means the defaults)
//! insecure = ["registry.lan:5000"]        # plain HTTP; loopback registries are unless in ca_files
//! auth_file = "/etc/aurae/auth.json"      # default: auth.json next to this file
//!
//! [ca_files]                              # HTTPS, also trusting this CA (PEM)
//! "registry.lan:5443" = "certs/registry-ca.pem"   # relative to this file
//! ```
//!
//! ```json
//! {"auths": {"registry.example.com": {"auth": "base64(user:password)"}}}
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::error::ImageError;
use super::reference::{is_loopback_registry, registry_host};

/// Where the daemon reads its registry configuration.
pub const DEFAULT_REGISTRIES_FILE: &str = "/etc/aurae/registries.toml";
/// The auth file's name next to the registries file when `auth_file` is not set.
pub const DEFAULT_AUTH_FILE_NAME: &str = "auth.json";

/// Registry settings: plain-HTTP registries and credentials.
#[derive(Clone, Default)]
pub struct RegistryConfig {
    /// `host` or `host:port` entries spoken to over plain HTTP (loopback
    /// registries always are).
    pub insecure: Vec<String>,
    /// Credentials by registry (`host[:port]`, docker.io for Docker Hub).
    pub credentials: HashMap<String, Credentials>,
    /// The auth file the credentials came from, if any.
    pub auth_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) by registry (`host[:port]`): such a
    /// registry is spoken to over HTTPS trusting them besides the system
    /// roots, also when it is on loopback.
    pub ca_certs: HashMap<String, Vec<u8>>,
}

/// A user name and password for HTTP basic auth or a bearer token exchange.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut registries: Vec<&String> = self.credentials.keys().collect();
        registries.sort();
        f.debug_struct("RegistryConfig")
            .field("insecure", &self.insecure)
            .field("credentials_for", &registries)
            .field("auth_file", &self.auth_file)
            .field("ca_for", &{
                let mut v: Vec<&String> = self.ca_certs.keys().collect();
                v.sort();
                v
            })
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistriesFile {
    #[serde(default)]
    insecure: Vec<String>,
    auth_file: Option<PathBuf>,
    #[serde(default)]
    ca_files: HashMap<String, PathBuf>,
}

#[derive(Debug, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Debug, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl RegistryConfig {
    /// Reads `path` (TOML). An absent file gives the defaults: no insecure
    /// registry besides loopback ones, and credentials from `auth.json` next
    /// to `path` when that file exists.
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        let config_err = |detail: String| ImageError::Config {
            path: path.to_path_buf(),
            detail,
        };
        let file = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str::<RegistriesFile>(&text)
                .map_err(|e| config_err(e.to_string().trim().to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RegistriesFile {
                insecure: Vec::new(),
                auth_file: None,
                ca_files: HashMap::new(),
            },
            Err(e) => return Err(config_err(format!("cannot read it: {e}"))),
        };
        for entry in &file.insecure {
            if entry.is_empty() || entry.contains('/') || entry.contains(char::is_whitespace) {
                return Err(config_err(format!(
                    "insecure entry {entry:?} is not a host or host:port"
                )));
            }
        }
        let explicit = file.auth_file.is_some();
        let auth_path = match file.auth_file {
            Some(p) if p.is_relative() => path.parent().unwrap_or(Path::new("/")).join(p),
            Some(p) => p,
            None => path
                .parent()
                .unwrap_or(Path::new("/"))
                .join(DEFAULT_AUTH_FILE_NAME),
        };
        let base = path.parent().unwrap_or(Path::new("/"));
        let mut ca_certs = HashMap::new();
        for (registry, ca) in file.ca_files {
            if registry.is_empty()
                || registry.contains('/')
                || registry.contains(char::is_whitespace)
            {
                return Err(config_err(format!(
                    "ca_files entry {registry:?} is not a host or host:port"
                )));
            }
            let ca = base.join(ca);
            let pem = std::fs::read(&ca).map_err(|e| {
                config_err(format!(
                    "cannot read the CA file {} of {registry}: {e}",
                    ca.display()
                ))
            })?;
            check_pem_certificates(&pem).map_err(|why| {
                config_err(format!("the CA file {} of {registry} {why}", ca.display()))
            })?;
            ca_certs.insert(normalise_registry_key(&registry), pem);
        }
        let mut config = RegistryConfig {
            insecure: file.insecure,
            ca_certs,
            ..Default::default()
        };
        match std::fs::read_to_string(&auth_path) {
            Ok(text) => {
                config.credentials =
                    parse_auth_json(&text).map_err(|detail| ImageError::Config {
                        path: auth_path.clone(),
                        detail,
                    })?;
                warn_if_readable_by_others(&auth_path);
                config.auth_file = Some(auth_path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {}
            Err(e) => {
                return Err(ImageError::Config {
                    path: auth_path,
                    detail: format!("cannot read the auth file: {e}"),
                })
            }
        }
        Ok(config)
    }

    /// Whether `registry` (`host[:port]` as in the reference) is spoken to
    /// over plain HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        if self
            .ca_certs
            .contains_key(&normalise_registry_key(registry))
        {
            return false;
        }
        is_loopback_registry(registry)
            || self
                .insecure
                .iter()
                .any(|i| i == registry || i == registry_host(registry))
    }

    /// The credentials for `registry` (`host[:port]` as in the reference).
    pub fn credentials_for(&self, registry: &str) -> Option<&Credentials> {
        self.credentials.get(&normalise_registry_key(registry))
    }
}

impl RegistryConfig {
    /// The extra CA certificates (PEM) for `registry`, if configured.
    pub fn ca_for(&self, registry: &str) -> Option<&[u8]> {
        self.ca_certs
            .get(&normalise_registry_key(registry))
            .map(Vec::as_slice)
    }
}

/// At least one PEM certificate, each of which parses.
fn check_pem_certificates(pem: &[u8]) -> Result<(), String> {
    let mut n = 0;
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| format!("is not PEM: {e}"))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        block
            .parse_x509()
            .map_err(|e| format!("has a certificate that does not parse: {e}"))?;
        n += 1;
    }
    if n == 0 {
        return Err("has no PEM certificate".into());
    }
    Ok(())
}

/// Parses a docker-style `auth.json` into credentials by registry.
pub fn parse_auth_json(text: &str) -> Result<HashMap<String, Credentials>, String> {
    let file: AuthFile =
        serde_json::from_str(text).map_err(|e| format!("not a docker-style auth.json: {e}"))?;
    let mut out = HashMap::new();
    for (key, entry) in file.auths {
        let creds = match (entry.auth, entry.username, entry.password) {
            (Some(auth), _, _) if !auth.is_empty() => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|_| format!("auths.{key:?}.auth is not base64"))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| format!("auths.{key:?}.auth is not UTF-8 once decoded"))?;
                let (user, pass) = decoded.split_once(':').ok_or_else(|| {
                    format!("auths.{key:?}.auth must be base64 of \"user:password\"")
                })?;
                Credentials {
                    username: user.to_string(),
                    password: pass.to_string(),
                }
            }
            (_, Some(username), Some(password)) => Credentials { username, password },
            _ => continue,
        };
        out.insert(normalise_registry_key(&key), creds);
    }
    Ok(out)
}

/// `https://index.docker.io/v1/` and friends become `docker.io`; a URL
/// becomes its `host[:port]`.
fn normalise_registry_key(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "the registry auth file is readable by group or others: chmod 600 it"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn absent_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = RegistryConfig::load(&dir.path().join("registries.toml")).unwrap();
        assert!(c.insecure.is_empty());
        assert!(c.credentials.is_empty());
        assert!(c.is_insecure("127.0.0.1:5000"));
        assert!(c.is_insecure("localhost:1234"));
        assert!(!c.is_insecure("registry.example.com"));
    }

    #[test]
    fn reads_insecure_list_and_default_auth_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registries.toml");
        std::fs::write(&path, "insecure = [\"registry.lan:5000\", \"plain.lan\"]\n").unwrap();
        std::fs::write(
            dir.path().join("auth.json"),
            r#"{"auths": {
                "registry.lan:5000": {"auth": "dXNlcjpwYTpzcw=="},
                "https://index.docker.io/v1/": {"username": "hub", "password": "secret"},
                "empty.example": {}
            }}"#,
        )
        .unwrap();
        let c = RegistryConfig::load(&path).unwrap();
        assert!(c.is_insecure("registry.lan:5000"));
        assert!(!c.is_insecure("registry.lan:5001"));
        assert!(c.is_insecure("plain.lan:8080"));
        let lan = c.credentials_for("registry.lan:5000").unwrap();
        assert_eq!(
            (lan.username.as_str(), lan.password.as_str()),
            ("user", "pa:ss")
        );
        assert_eq!(c.credentials_for("docker.io").unwrap().username, "hub");
        assert!(c.credentials_for("empty.example").is_none());
        assert!(!format!("{c:?}").contains("secret"));
        assert_eq!(c.auth_file, Some(dir.path().join("auth.json")));
    }

    #[test]
    fn ca_files_make_a_registry_https_even_on_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        let path = dir.path().join("registries.toml");
        std::fs::write(&path, "[ca_files]\n\"127.0.0.1:5443\" = \"ca.pem\"\n").unwrap();
        let c = RegistryConfig::load(&path).unwrap();
        assert!(!c.is_insecure("127.0.0.1:5443"));
        assert!(c.is_insecure("127.0.0.1:5000"));
        assert_eq!(
            c.ca_for("127.0.0.1:5443").unwrap(),
            ca.cert.pem().as_bytes()
        );
        assert!(c.ca_for("127.0.0.1:5000").is_none());

        std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
        std::fs::write(&path, "[ca_files]\n\"r.lan\" = \"bad.pem\"\n").unwrap();
        let e = RegistryConfig::load(&path).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        std::fs::write(&path, "[ca_files]\n\"r.lan\" = \"missing.pem\"\n").unwrap();
        let e = RegistryConfig::load(&path).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
    }

    #[test]
    fn explicit_missing_auth_file_and_bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registries.toml");
        std::fs::write(&path, "auth_file = \"nope.json\"\n").unwrap();
        let e = RegistryConfig::load(&path).unwrap_err();
        assert!(e.to_string().contains("nope.json"), "{e}");

        std::fs::write(&path, "insecure = [\"http://x/y\"]\n").unwrap();
        assert!(RegistryConfig::load(&path).is_err());
        std::fs::write(&path, "unknown = 1\n").unwrap();
        assert!(RegistryConfig::load(&path).is_err());

        std::fs::write(&path, "").unwrap();
        std::fs::write(
            dir.path().join("auth.json"),
            r#"{"auths": {"x": {"auth": "bm9jb2xvbg=="}}}"#,
        )
        .unwrap();
        let e = RegistryConfig::load(&path).unwrap_err();
        assert!(e.to_string().contains("user:password"), "{e}");
    }
}
