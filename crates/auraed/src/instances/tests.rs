//! Unit tests without root: a fake host network, cgroups in a temporary
//! directory, a CA of the test's own; everything before the hypervisor
//! starts, and the cleanup of failures, Free and leftovers.

use std::path::Path;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::hostnet::NetStep;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::*;
use crate::cgroups::signal::RecordingSignaller;
use crate::cgroups::v2::V2Driver;
use crate::logs::{LogLimits, LogStore};

/// Records what it is asked; fails `create_tap` when told to.
#[derive(Default)]
struct FakeNet {
    calls: Mutex<Vec<String>>,
    fail_tap: bool,
    taps: Mutex<Vec<String>>,
}

impl FakeNet {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn record(&self, c: String) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(c);
    }
}

impl HostNet for FakeNet {
    fn ensure_bridge(&self, bridge: &str, gateway: Ipv4Addr, prefix: u8) -> NetStep<'_> {
        self.record(format!("bridge {bridge} {gateway}/{prefix}"));
        Box::pin(async { Ok(()) })
    }
    fn create_tap(&self, tap: &str, bridge: &str) -> NetStep<'_> {
        self.record(format!("create {tap} {bridge}"));
        let fail = self.fail_tap;
        Box::pin(async move {
            if fail {
                Err("no tap for you".to_string())
            } else {
                Ok(())
            }
        })
    }
    fn remove_tap(&self, tap: &str) -> BoxFuture<'_, ()> {
        self.record(format!("remove {tap}"));
        Box::pin(async {})
    }
    fn taps_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.taps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|t| t.starts_with(prefix))
            .cloned()
            .collect()
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    net: Arc<FakeNet>,
    db: Arc<StateDb>,
    instances: Arc<Instances>,
    ca_pem: String,
}

fn fixture(net: FakeNet) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let image = d.join("image");
    std::fs::create_dir_all(&image).expect("mkdir");
    std::fs::write(image.join(KERNEL_FILE), b"kernel").expect("kernel");
    std::fs::write(image.join(INITRAMFS_FILE), b"070701").expect("initramfs");
    let now = time::OffsetDateTime::now_utc();
    let ca = crate::pki::generate_ca(
        now - time::Duration::days(1),
        now + time::Duration::days(30),
    )
    .expect("ca");
    std::fs::write(d.join("ca.crt"), &ca.cert_pem).expect("ca.crt");
    std::fs::write(d.join("ca.key"), &ca.key_pem).expect("ca.key");
    let db = Arc::new(StateDb::open(&d.join("state")).expect("db"));
    let cgroups = Arc::new(V2Driver::new(
        &d.join("cgroup"),
        Arc::new(RecordingSignaller::new()),
    ));
    let logs = LogStore::open(&d.join("logs"), LogLimits::default(), 1 << 30).expect("logs");
    let processes = Processes::new(cgroups, logs, Duration::from_millis(100));
    let net = Arc::new(net);
    let instances = Instances::new(
        InstancesConfig {
            name: "root".into(),
            state_dir: d.join("state/instances"),
            runtime_dir: d.join("run/instances"),
            cgroup_parent: CgroupPath::new("test/instances").expect("cgroup"),
            image_dir: image,
            ca_crt: d.join("ca.crt"),
            ca_key: d.join("ca.key"),
            subnet: "10.92.0.0/29".parse().expect("subnet"),
            bridge: "aurae-test0".into(),
            accel: Accel::Tcg,
            boot_timeout: Duration::from_secs(5),
        },
        processes,
        db.clone(),
        net.clone(),
        crate::images::ImageStore::open(&d.join("state"), Default::default()).expect("images"),
    );
    Fixture {
        dir,
        net,
        db,
        instances,
        ca_pem: ca.cert_pem,
    }
}

fn spec(name: &str) -> SpawnSpec {
    SpawnSpec {
        name: name.into(),
        caller: "test".into(),
        ..Default::default()
    }
}

fn nothing_left(f: &Fixture, name: &str) {
    assert!(f.db.all(&INSTANCES).expect("records").is_empty());
    assert!(!f.dir.path().join("state/instances").join(name).exists());
    assert!(!f.dir.path().join("run/instances").join(name).exists());
    assert!(f.instances.creating().is_empty(), "the address is released");
    assert!(f.instances.list().is_empty());
}

#[tokio::test]
async fn spawn_without_a_readable_ca_key_says_so_and_leaves_nothing() {
    let f = fixture(FakeNet::default());
    std::fs::remove_file(f.dir.path().join("ca.key")).expect("rm");
    let e = f.instances.spawn(spec("a")).await.expect_err("no key");
    assert!(matches!(e, InstanceError::NoCaKey { .. }), "{e}");
    assert!(e.to_string().contains("--ca-key"), "{e}");
    nothing_left(&f, "a");
    assert!(f.net.calls().is_empty(), "{:?}", f.net.calls());
}

#[tokio::test]
async fn spawn_without_the_image_names_the_script() {
    let f = fixture(FakeNet::default());
    std::fs::remove_file(f.dir.path().join("image").join(KERNEL_FILE)).expect("rm");
    let e = f.instances.spawn(spec("a")).await.expect_err("no image");
    assert!(
        e.to_string().contains("hack/build-instance-image.sh"),
        "{e}"
    );
    nothing_left(&f, "a");
}

#[tokio::test]
async fn bad_names_are_refused_before_anything_is_made() {
    let f = fixture(FakeNet::default());
    for bad in ["a/b", "..", "1abc", "a_b", "a.b", "a-"] {
        let e = f.instances.spawn(spec(bad)).await.expect_err(bad);
        assert!(
            matches!(
                e,
                InstanceError::Name(_) | InstanceError::NotDnsLabel { .. }
            ),
            "{bad}: {e}"
        );
    }
    assert!(f.net.calls().is_empty());
    let g = generated_name();
    validate_instance_name(&g).expect("generated names are valid");
    assert_ne!(g, generated_name());
}

#[tokio::test]
async fn a_failed_boot_leaves_nothing_and_releases_the_address() {
    let f = fixture(FakeNet {
        fail_tap: true,
        ..Default::default()
    });
    let e = f.instances.spawn(spec("web")).await.expect_err("no tap");
    assert!(matches!(e, InstanceError::Network { .. }), "{e}");
    assert!(e.to_string().contains("no tap for you"), "{e}");
    nothing_left(&f, "web");
    let calls = f.net.calls();
    let tap = hostnet::tap_name(&f.instances.tap_prefix, "web");
    assert_eq!(
        calls,
        vec![
            "bridge aurae-test0 10.92.0.1/29".to_string(),
            format!("create {tap} aurae-test0"),
            format!("remove {tap}"),
        ]
    );
}

#[tokio::test]
async fn addresses_are_distinct_and_the_pool_ends() {
    let f = fixture(FakeNet::default());
    // A /29: the gateway and five instances.
    let mut got = BTreeSet::new();
    for i in 0..5 {
        got.insert(f.instances.reserve(&format!("i{i}")).expect("address"));
    }
    assert_eq!(got.len(), 5);
    assert!(!got.contains(&Ipv4Addr::new(10, 92, 0, 1)), "the gateway");
    assert!(matches!(
        f.instances.reserve("i5"),
        Err(InstanceError::PoolExhausted { .. })
    ));
    assert!(matches!(
        f.instances.reserve("i0"),
        Err(InstanceError::AlreadyExists { .. })
    ));
}

#[tokio::test]
async fn free_of_an_unknown_instance_is_not_found() {
    let f = fixture(FakeNet::default());
    let e = f.instances.free("nope".into()).await.expect_err("unknown");
    assert!(matches!(e, InstanceError::NotFound { .. }), "{e}");
}

#[tokio::test]
async fn leftovers_of_a_killed_daemon_are_removed_at_start() {
    let f = fixture(FakeNet::default());
    let prefix = f.instances.tap_prefix.clone();
    *f.net.taps.lock().expect("taps") = vec![format!("{prefix}abcd"), "eth0".into()];
    let leftover = f.dir.path().join("state/instances/old");
    std::fs::create_dir_all(&leftover).expect("mkdir");
    f.db.put(
        &INSTANCES,
        "old",
        &InstanceRecord {
            address: Ipv4Addr::new(10, 92, 0, 2),
            tap: format!("{prefix}abcd"),
            memory_mib: 256,
            vcpus: 1,
            run: None,
        },
    )
    .expect("put");
    f.instances.clean_leftovers().await;
    assert!(f.db.all(&INSTANCES).expect("records").is_empty());
    assert!(!leftover.exists());
    assert_eq!(f.net.calls(), vec![format!("remove {prefix}abcd")]);
}

#[tokio::test]
async fn an_instance_gets_a_fresh_key_and_a_certificate_naming_it() {
    let f = fixture(FakeNet::default());
    let ca = certs::CaFiles::read(&f.dir.path().join("ca.crt"), &f.dir.path().join("ca.key"))
        .expect("ca");
    let dir = f.dir.path().join("inst");
    let ip = Ipv4Addr::new(10, 92, 0, 3);
    let files = certs::provision(
        &ca,
        "web",
        ip,
        &dir,
        &f.dir.path().join("image").join(INITRAMFS_FILE),
    )
    .await
    .expect("provision");
    let client = std::fs::read_to_string(&files.client_crt).expect("client crt");
    assert!(signed_by(&client, &f.ca_pem));
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).expect("meta").permissions())
            & 0o777
    };
    assert_eq!(mode(&files.client_key), 0o600);
    assert_eq!(mode(&files.initramfs), 0o600);
    assert_eq!(mode(&dir), 0o700);
    let image = std::fs::read(&files.initramfs).expect("initramfs");
    assert!(image.starts_with(b"070701"), "the base comes first");
    let text = String::from_utf8_lossy(&image);
    let key = &text[text
        .find("-----BEGIN PRIVATE KEY-----")
        .expect("a key in the archive")..];
    let cert = &text[text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("certs in the archive")..];
    let ca_key = std::fs::read_to_string(f.dir.path().join("ca.key")).expect("ca key");
    assert!(!ca_key.contains(&key[..120]), "never the CA's key");
    let _ = cert;
    let server_pem = pem_after(&text, "_signed.server.crt");
    assert!(signed_by(&server_pem, &f.ca_pem));
    let (_, pem) = x509_parser::pem::parse_x509_pem(server_pem.as_bytes()).expect("pem");
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(&pem.contents).expect("x509");
    let sans: Vec<String> = c
        .subject_alternative_name()
        .expect("san ext")
        .expect("sans")
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => format!("dns:{d}"),
            GeneralName::IPAddress(b) => format!("ip:{b:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        sans,
        vec!["dns:web".to_string(), "ip:[10, 92, 0, 3]".to_string()]
    );
}

/// The PEM certificate stored after the archive entry named `name`.
fn pem_after(text: &str, name: &str) -> String {
    let at = text.find(name).expect("entry");
    let rest = &text[at..];
    let begin = rest.find("-----BEGIN CERTIFICATE-----").expect("begin");
    let end =
        rest.find("-----END CERTIFICATE-----").expect("end") + "-----END CERTIFICATE-----".len();
    rest[begin..end].to_string()
}

/// `cert_pem` carries a valid signature of the key of `ca_pem`.
fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let (_, cert) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).expect("pem");
    let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).expect("pem");
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(&cert.contents).expect("x509");
    let (_, ca) = x509_parser::certificate::X509Certificate::from_der(&ca.contents).expect("x509");
    cert.verify_signature(Some(ca.public_key())).is_ok()
}
