//! Pulls from a registry that serves TLS with its own CA and wants HTTP
//! basic auth (htpasswd) or bearer tokens: Debian's docker-registry started
//! by the test on a free loopback port with a temporary configuration, a
//! certificate made with rcgen, an htpasswd entry made with `htpasswd -B`,
//! and for token auth a small token issuer in the test (JWTs signed ES256
//! with a key whose certificate is the registry's `rootcertbundle`), which
//! checks the same credentials. The CA and the credentials reach the store
//! only through the `--registries` files (registries.toml `[ca_files]` and
//! auth.json). Needs docker-registry and
//! apache2-utils (.ci/run installs them); without them the test fails when
//! `CI` is set and is skipped (with the reason) otherwise.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auraed::images::{ImageError, ImageStore, RegistryConfig};
use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientProtocol, ImageLayer,
};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "common/push.rs"]
mod push;
#[allow(dead_code)]
#[path = "common/registry.rs"]
mod registry;

const USER: &str = "aurae";
const PASSWORD: &str = "s3cret-pass";
const SERVICE: &str = "aurae-test-registry";
const ISSUER: &str = "aurae-test-issuer";

fn tools_present(test: &str) -> bool {
    let missing: Vec<&str> = ["/usr/bin/docker-registry", "/usr/bin/htpasswd"]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: {missing:?} missing: apt-get install docker-registry apache2-utils");
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("skipping {msg}");
    false
}

/// A docker-registry child, killed on drop.
struct TlsRegistry {
    child: Child,
    addr: String,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

impl Drop for TlsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the registry authenticates.
enum Auth {
    Htpasswd,
    /// Bearer tokens from the issuer at `realm`, trusting `cert_pem`.
    Token {
        realm: String,
        cert_pem: String,
    },
}

fn start_registry(auth: Auth) -> TlsRegistry {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(d.join("server.crt"), cert.pem()).unwrap();
    std::fs::write(d.join("server.key"), key.serialize_pem()).unwrap();

    let htpasswd = Command::new("htpasswd")
        .args(["-Bbn", USER, PASSWORD])
        .output()
        .unwrap();
    assert!(htpasswd.status.success(), "{htpasswd:?}");
    std::fs::write(d.join("htpasswd"), &htpasswd.stdout).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let auth = match auth {
        Auth::Htpasswd => format!(
            "  htpasswd:\n    realm: aurae-test\n    path: {}/htpasswd\n",
            d.display()
        ),
        Auth::Token { realm, cert_pem } => {
            std::fs::write(d.join("token.crt"), cert_pem).unwrap();
            format!(
                "  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}/token.crt\n",
                d.display()
            )
        }
    };
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\nhttp:\n  addr: {addr}\n  tls:\n    certificate: {root}/server.crt\n    key: {root}/server.key\nauth:\n{auth}",
        root = d.display()
    );
    std::fs::write(d.join("config.yml"), config).unwrap();
    let log = std::fs::File::create(d.join("registry.log")).unwrap();
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(d.join("config.yml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "docker-registry did not listen on {addr}: {}",
            std::fs::read_to_string(d.join("registry.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    TlsRegistry {
        child,
        addr,
        ca_pem: ca_cert.pem(),
        _dir: dir,
    }
}

async fn push_with_auth(reg: &TlsRegistry, reference: &str, raw: Vec<u8>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_from(ClientConfig {
        protocol: ClientProtocol::Https,
        extra_root_certificates: vec![Certificate {
            encoding: CertificateEncoding::Pem,
            data: reg.ca_pem.clone().into_bytes(),
        }],
        ..Default::default()
    })
    .unwrap();
    let layers = vec![ImageLayer::new(
        push::gzip(&raw),
        oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE.to_string(),
        None,
    )];
    let auth = RegistryAuth::Basic(USER.into(), PASSWORD.into());
    push::push_with(&client, &auth, reference, layers, &[raw], "amd64").await;
}

/// Writes registries.toml (CA) and, when given, auth.json; loads them the
/// way the daemon does.
fn registries(dir: &Path, reg: &TlsRegistry, password: Option<&str>) -> RegistryConfig {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("registry-ca.pem"), &reg.ca_pem).unwrap();
    std::fs::write(
        dir.join("registries.toml"),
        format!("[ca_files]\n\"{}\" = \"registry-ca.pem\"\n", reg.addr),
    )
    .unwrap();
    if let Some(password) = password {
        let auth = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{USER}:{password}"),
        );
        std::fs::write(
            dir.join("auth.json"),
            format!(
                "{{\"auths\": {{\"{}\": {{\"auth\": \"{auth}\"}}}}}}",
                reg.addr
            ),
        )
        .unwrap();
    }
    RegistryConfig::load(&dir.join("registries.toml")).unwrap()
}

#[tokio::test]
async fn a_tls_registry_with_basic_auth_is_pulled_with_the_configured_ca_and_credentials() {
    if !tools_present(module_path!()) {
        return;
    }
    let reg = start_registry(Auth::Htpasswd);
    let reference = format!("{}/aurae/private:v1", reg.addr);
    let raw = push::tar_of(&[("etc/secret-image", "behind tls and auth\n")]);
    push_with_auth(&reg, &reference, raw).await;

    let base = tempfile::tempdir().unwrap();
    let config = registries(&base.path().join("good"), &reg, Some(PASSWORD));
    let store = ImageStore::open(&base.path().join("state"), config).unwrap();
    let image = store.pull(&reference, None).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(image.layers[0].join("etc/secret-image")).unwrap(),
        "behind tls and auth\n"
    );

    // No credentials, or wrong ones: refused, and the message says where
    // credentials go.
    for (name, password) in [("anonymous", None), ("wrong", Some("nope"))] {
        let config = registries(&base.path().join(name), &reg, password);
        let store = ImageStore::open(&base.path().join(format!("state-{name}")), config).unwrap();
        let e = store.pull(&reference, None).await.unwrap_err();
        assert!(matches!(e, ImageError::Denied { .. }), "{name}: {e}");
        assert!(e.to_string().contains("credentials"), "{name}: {e}");
    }

    // Without ca_files a loopback registry is spoken to over plain HTTP.
    let store = ImageStore::open(
        &base.path().join("state-noca"),
        RegistryConfig {
            credentials: registries(&base.path().join("noca"), &reg, Some(PASSWORD)).credentials,
            ..Default::default()
        },
    )
    .unwrap();
    let e = store.pull(&reference, None).await.unwrap_err();
    assert!(matches!(e, ImageError::Registry { .. }), "{e}");
    assert!(e.to_string().contains("HTTPS server"), "{e}");

    // Another CA: the certificate is not trusted, and the message says where a CA goes.
    let other = TlsRegistry {
        ca_pem: rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])
            .unwrap()
            .cert
            .pem(),
        addr: reg.addr.clone(),
        child: Command::new("true").spawn().unwrap(),
        _dir: tempfile::tempdir().unwrap(),
    };
    let config = registries(&base.path().join("otherca"), &other, Some(PASSWORD));
    let store = ImageStore::open(&base.path().join("state-otherca"), config).unwrap();
    let e = store.pull(&reference, None).await.unwrap_err();
    assert!(matches!(e, ImageError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("ca_files"), "{e}");
}

// --- bearer tokens --------------------------------------------------------------

/// A token issuer on loopback (plain HTTP, as the realm of a test registry
/// may be): checks basic credentials, grants the scopes asked for.
struct TokenIssuer {
    realm: String,
    cert_pem: String,
    issued: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
}

fn b64url(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

/// An ECDSA signature from DER (SEQUENCE of two INTEGERs) to JWS's r || s.
fn der_to_raw(der: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut i = 2; // SEQUENCE tag and (short) length
    for _ in 0..2 {
        assert_eq!(der[i], 0x02, "an INTEGER");
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend(int);
        i += 2 + len;
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn token(key: &KeyPair, cert_der: &[u8], scopes: &[String]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| {
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let header = serde_json::json!({
        "typ": "JWT", "alg": "ES256",
        "x5c": [base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cert_der)],
    });
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": USER, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now - 10,
        "jti": format!("{now}-{}", scopes.len()), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let der = rcgen::SigningKey::sign(key, signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", b64url(&der_to_raw(&der)))
}

async fn start_token_issuer() -> TokenIssuer {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["aurae-token-issuer".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let realm = format!("http://{}/token", listener.local_addr().unwrap());
    let (issued, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (issued_c, refused_c) = (issued.clone(), refused.clone());
    let cert_der = cert.der().to_vec();
    let expected = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{USER}:{PASSWORD}")
        )
    );
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let target = head.split(' ').nth(1).unwrap_or_default().to_string();
            let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
            let scopes: Vec<String> = query
                .split('&')
                .filter_map(|kv| kv.strip_prefix("scope="))
                .map(percent_decode)
                .collect();
            let authorized = head.lines().any(|l| {
                l.split_once(':').is_some_and(|(k, v)| {
                    k.eq_ignore_ascii_case("authorization") && v.trim() == expected
                })
            });
            let response = if authorized {
                issued_c.fetch_add(1, Ordering::Relaxed);
                let t = token(&key, &cert_der, &scopes);
                let body = serde_json::json!({"token": t, "access_token": t, "expires_in": 300})
                    .to_string();
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            } else {
                refused_c.fetch_add(1, Ordering::Relaxed);
                let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
                format!("HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
            };
            let _ = conn.write_all(response.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    });
    TokenIssuer {
        realm,
        cert_pem: cert.pem(),
        issued,
        refused,
    }
}

#[tokio::test]
async fn a_tls_registry_with_token_auth_is_pulled_with_a_token_for_the_configured_credentials() {
    if !tools_present(module_path!()) {
        return;
    }
    let issuer = start_token_issuer().await;
    let reg = start_registry(Auth::Token {
        realm: issuer.realm.clone(),
        cert_pem: issuer.cert_pem.clone(),
    });
    let reference = format!("{}/aurae/token-private:v1", reg.addr);
    let raw = push::tar_of(&[("etc/token-image", "behind a bearer token\n")]);
    push_with_auth(&reg, &reference, raw).await;
    assert!(
        issuer.issued.load(Ordering::Relaxed) > 0,
        "the push used tokens"
    );

    let base = tempfile::tempdir().unwrap();
    let issued_before = issuer.issued.load(Ordering::Relaxed);
    let config = registries(&base.path().join("good"), &reg, Some(PASSWORD));
    let store = ImageStore::open(&base.path().join("state"), config).unwrap();
    let image = store.pull(&reference, None).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(image.layers[0].join("etc/token-image")).unwrap(),
        "behind a bearer token\n"
    );
    assert!(
        issuer.issued.load(Ordering::Relaxed) > issued_before,
        "the pull got a token"
    );

    let refused_before = issuer.refused.load(Ordering::Relaxed);
    let config = registries(&base.path().join("wrong"), &reg, Some("nope"));
    let store = ImageStore::open(&base.path().join("state-wrong"), config).unwrap();
    let e = store.pull(&reference, None).await.unwrap_err();
    assert!(matches!(e, ImageError::Denied { .. }), "{e}");
    assert!(e.to_string().contains("credentials"), "{e}");
    assert!(issuer.refused.load(Ordering::Relaxed) > refused_before);
}
