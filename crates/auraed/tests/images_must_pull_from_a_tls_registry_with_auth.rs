//! Pulls from a registry that serves TLS with its own CA and wants HTTP
//! basic auth (htpasswd): Debian's docker-registry started by the test on a
//! free loopback port with a temporary configuration, a certificate made
//! with rcgen, an htpasswd entry made with `htpasswd -B`. The CA and the
//! credentials reach the store only through the `--registries` files
//! (registries.toml `[ca_files]` and auth.json). Needs docker-registry and
//! apache2-utils (.ci/run installs them); without them the test fails when
//! `CI` is set and is skipped (with the reason) otherwise.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auraed::images::{ImageError, ImageStore, RegistryConfig};
use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientProtocol, ImageLayer,
};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

#[path = "common/push.rs"]
mod push;
#[allow(dead_code)]
#[path = "common/registry.rs"]
mod registry;

const USER: &str = "aurae";
const PASSWORD: &str = "s3cret-pass";

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

fn start_registry() -> TlsRegistry {
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
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\nhttp:\n  addr: {addr}\n  tls:\n    certificate: {root}/server.crt\n    key: {root}/server.key\nauth:\n  htpasswd:\n    realm: aurae-test\n    path: {root}/htpasswd\n",
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
    let reg = start_registry();
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
