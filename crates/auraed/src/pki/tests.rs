//! `init` and `issue_client` against temp dirs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    opts: PkiInitOptions,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    let mut opts = PkiInitOptions::for_home(&root.join("home"));
    opts.pki_dir = root.join("etc/aurae/pki");
    opts.socket = root.join("run/aurae.sock");
    Fixture { _dir: dir, opts }
}

fn all_files(opts: &PkiInitOptions) -> Vec<PathBuf> {
    let name = &opts.client_name;
    vec![
        opts.pki_dir.join(CA_CRT),
        opts.pki_dir.join(CA_KEY),
        opts.pki_dir.join(SERVER_CRT),
        opts.pki_dir.join(SERVER_KEY),
        opts.client_dir.join(CA_CRT),
        opts.client_dir.join(client_crt_file(name)),
        opts.client_dir.join(client_key_file(name)),
        opts.config_path.clone(),
    ]
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

fn der(pem: &str) -> Vec<u8> {
    issue::pem_to_der(pem, "test").expect("pem")
}

#[test]
fn init_creates_everything_with_private_keys() {
    let f = fixture();
    let report = init(&f.opts).expect("init");
    for p in all_files(&f.opts) {
        assert_eq!(
            report.outcome(&p),
            Some(Outcome::Created),
            "{}",
            p.display()
        );
    }
    assert!(report.kept().is_empty());
    for key in [
        f.opts.pki_dir.join(CA_KEY),
        f.opts.pki_dir.join(SERVER_KEY),
        f.opts.client_dir.join("client.admin.key"),
    ] {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }
    assert_eq!(mode(&f.opts.pki_dir), 0o700);
    assert_eq!(mode(&f.opts.client_dir), 0o700);
    assert_eq!(
        read(&f.opts.pki_dir.join(CA_CRT)),
        read(&f.opts.client_dir.join(CA_CRT))
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn second_init_keeps_every_byte() {
    let f = fixture();
    init(&f.opts).expect("first init");
    let before: Vec<String> = all_files(&f.opts).iter().map(|p| read(p)).collect();
    let report = init(&f.opts).expect("second init");
    let after: Vec<String> = all_files(&f.opts).iter().map(|p| read(p)).collect();
    assert_eq!(before, after);
    assert!(report.written().is_empty(), "{report}");
    assert_eq!(report.kept().len(), all_files(&f.opts).len());
}

#[test]
fn force_replaces_everything() {
    let f = fixture();
    init(&f.opts).expect("first init");
    let before: Vec<String> = all_files(&f.opts).iter().map(|p| read(p)).collect();
    let mut opts = f.opts.clone();
    opts.force = true;
    let report = init(&opts).expect("forced init");
    for (p, old) in all_files(&opts).iter().zip(&before) {
        assert_eq!(
            report.outcome(p),
            Some(Outcome::Replaced),
            "{}",
            p.display()
        );
        // The config only holds paths, which did not change.
        if *p != opts.config_path {
            assert_ne!(&read(p), old, "{} was not replaced", p.display());
        }
    }
    assert_eq!(mode(&opts.pki_dir.join(CA_KEY)), 0o600);
}

#[test]
fn existing_ca_issues_the_missing_certificates() {
    let f = fixture();
    init(&f.opts).expect("first init");
    let ca = read(&f.opts.pki_dir.join(CA_CRT));
    let mut opts = f.opts.clone();
    opts.client_name = "ops".into();
    let report = init(&opts).expect("init for a second client");
    assert_eq!(
        report.outcome(&opts.pki_dir.join(CA_CRT)),
        Some(Outcome::Kept)
    );
    let crt = opts.client_dir.join("_signed.client.ops.crt");
    assert_eq!(report.outcome(&crt), Some(Outcome::Created));
    assert!(issue::signed_by(&read(&crt), &ca));
    // The config of the first client is kept, not silently repointed.
    assert_eq!(report.outcome(&opts.config_path), Some(Outcome::Kept));
}

#[test]
fn certificates_chain_to_the_ca_and_carry_their_names() {
    let f = fixture();
    init(&f.opts).expect("init");
    let ca = read(&f.opts.pki_dir.join(CA_CRT));
    let client = read(&f.opts.client_dir.join("_signed.client.admin.crt"));
    let server = read(&f.opts.pki_dir.join(SERVER_CRT));
    assert!(issue::signed_by(&client, &ca));
    assert!(issue::signed_by(&server, &ca));
    let other = generate_ca(
        OffsetDateTime::now_utc(),
        OffsetDateTime::now_utc() + Duration::days(1),
    )
    .expect("ca");
    assert!(!issue::signed_by(&client, &other.cert_pem));

    assert_eq!(
        identities_from_der(&der(&client)).expect("client names"),
        ["admin"]
    );
    let server_names = identities_from_der(&der(&server)).expect("server names");
    for n in [DEFAULT_SERVER_NAME, "localhost", "auraed"] {
        assert!(
            server_names.iter().any(|s| s == n),
            "{n} missing from {server_names:?}"
        );
    }

    let client_der = der(&client);
    let (_, cert) = x509_parser::parse_x509_certificate(&client_der).expect("x509");
    let eku = cert
        .extended_key_usage()
        .expect("eku ext")
        .expect("eku present");
    assert!(eku.value.client_auth && !eku.value.server_auth);
    let server_der = der(&server);
    let (_, cert) = x509_parser::parse_x509_certificate(&server_der).expect("x509");
    let san = cert
        .subject_alternative_name()
        .expect("san ext")
        .expect("san present");
    let ips: Vec<&[u8]> = san
        .value
        .general_names
        .iter()
        .filter_map(|g| match g {
            x509_parser::extensions::GeneralName::IPAddress(ip) => Some(*ip),
            _ => None,
        })
        .collect();
    assert!(ips.contains(&[127u8, 0, 0, 1].as_slice()));
    assert!(ips.iter().any(|ip| ip.len() == 16));
}

#[test]
fn client_config_points_at_the_client_files() {
    let f = fixture();
    init(&f.opts).expect("init");
    let config: toml::Table = read(&f.opts.config_path).parse().expect("toml");
    let dir = std::fs::canonicalize(&f.opts.client_dir).expect("canonical");
    let path = |k: &str| PathBuf::from(config["auth"][k].as_str().expect("string"));
    assert_eq!(path("ca_crt"), dir.join(CA_CRT));
    assert_eq!(path("client_crt"), dir.join("_signed.client.admin.crt"));
    assert_eq!(path("client_key"), dir.join("client.admin.key"));
    assert_eq!(config["system"]["socket"].as_str(), f.opts.socket.to_str());
}

#[test]
fn invalid_client_names_are_rejected_before_writing() {
    for bad in ["", "a/b", "../x", ".hidden", "a b", "é"] {
        let f = fixture();
        let mut opts = f.opts.clone();
        opts.client_name = bad.into();
        assert!(
            matches!(init(&opts), Err(PkiError::InvalidClientName(_))),
            "{bad:?}"
        );
        assert!(!opts.pki_dir.exists(), "{bad:?} wrote files");
    }
}

#[test]
fn half_a_pair_is_an_error_not_an_overwrite() {
    let f = fixture();
    init(&f.opts).expect("init");
    let key = f.opts.pki_dir.join(SERVER_KEY);
    let crt = f.opts.pki_dir.join(SERVER_CRT);
    std::fs::remove_file(&crt).expect("rm");
    let key_before = read(&key);
    match init(&f.opts) {
        Err(PkiError::IncompletePair { present, missing }) => {
            assert_eq!((present, missing), (key.clone(), crt.clone()));
        }
        other => panic!("expected IncompletePair, got {other:?}"),
    }
    assert_eq!(read(&key), key_before);
}

#[test]
fn zero_validity_is_rejected() {
    let f = fixture();
    let mut opts = f.opts.clone();
    opts.validity_days = 0;
    assert!(matches!(
        init(&opts),
        Err(PkiError::Validity { days: 0, .. })
    ));
}

#[test]
fn issue_client_adds_an_identity_and_never_overwrites() {
    let f = fixture();
    init(&f.opts).expect("init");
    let out = f.opts.client_dir.parent().expect("parent").join("bob");
    let files = issue_client(&f.opts.pki_dir, &out, "bob", 30).expect("issue");
    assert_eq!(mode(&files.client_key), 0o600);
    assert_eq!(read(&files.ca_crt), read(&f.opts.pki_dir.join(CA_CRT)));
    assert!(issue::signed_by(
        &read(&files.client_crt),
        &read(&files.ca_crt)
    ));
    assert_eq!(
        identities_from_der(&der(&read(&files.client_crt))).expect("names"),
        ["bob"]
    );
    assert!(matches!(
        issue_client(&f.opts.pki_dir, &out, "bob", 30),
        Err(PkiError::AlreadyExists { .. })
    ));
    assert!(matches!(
        issue_client(&f.opts.pki_dir, &out, "b/ob", 30),
        Err(PkiError::InvalidClientName(_))
    ));
}

#[test]
fn explicit_validity_can_make_an_expired_certificate() {
    let now = OffsetDateTime::now_utc();
    let ca = generate_ca(now - Duration::days(10), now + Duration::days(10)).expect("ca");
    let (cert, key) = issue_client_with_validity(
        &ca.cert_pem,
        &ca.key_pem,
        "late",
        now - Duration::days(2),
        now - Duration::days(1),
    )
    .expect("issue");
    assert!(key.contains("PRIVATE KEY"));
    assert!(issue::signed_by(&cert, &ca.cert_pem));
    let cert_der = der(&cert);
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der).expect("x509");
    assert!(!parsed.validity().is_valid());
    assert!(issue_client_with_validity(&ca.cert_pem, &ca.key_pem, "x", now, now).is_err());
}

#[test]
fn a_ca_key_from_elsewhere_is_refused() {
    let now = OffsetDateTime::now_utc();
    let a = generate_ca(now, now + Duration::days(1)).expect("ca a");
    let b = generate_ca(now, now + Duration::days(1)).expect("ca b");
    let err =
        issue_client_with_validity(&a.cert_pem, &b.key_pem, "x", now, now + Duration::days(1));
    assert!(matches!(err, Err(PkiError::KeyMismatch { .. })), "{err:?}");
}
