//! The instance image for tests: hack/build-instance-image.sh's output
//! (built on first use, cached after), and what is needed to boot it by
//! hand: certificates for a name and address, a bridge and a TAP.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use aurae_client::{AuraeConfig, AuthConfig, SystemConfig};
use auraed::pki::{self, CertAndKey};
use time::{Duration, OffsetDateTime};

/// How long a TCG boot may take on a busy, shared machine.
pub const BOOT: std::time::Duration = std::time::Duration::from_secs(300);

/// The image directory: the build script's default output.
pub fn image_dir() -> PathBuf {
    std::env::var_os("AURAE_INSTANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/aurae/instance"))
}

/// True when an instance can be booted here (root, QEMU); otherwise says
/// why the test is skipped, and on CI fails.
pub fn require_instances(test: &str) -> bool {
    let missing = if !nix::unistd::geteuid().is_root() {
        Some("needs root")
    } else if !Path::new("/usr/bin/qemu-system-x86_64").is_file() {
        Some("qemu-system-x86_64 is not installed (see .ci/run)")
    } else {
        None
    };
    crate::common::require(test, missing.map(str::to_string))
}

/// Runs the build script (a no-op when the image is current) and returns
/// the image directory.
pub fn image() -> PathBuf {
    let dir = image_dir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/build-instance-image.sh");
    let out = Command::new(&script)
        .arg(&dir)
        .output()
        .expect("run hack/build-instance-image.sh");
    assert!(
        out.status.success(),
        "hack/build-instance-image.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// A CA and the PEM files of a server certificate (DNS = `name`, IP =
/// `address`) and of an `admin` client certificate, both from it.
pub struct TestPki {
    pub ca: CertAndKey,
    pub server: CertAndKey,
    pub client: (String, String),
}

impl TestPki {
    pub fn new(name: &str, address: Ipv4Addr) -> Self {
        let (from, to) = validity();
        let ca = pki::generate_ca(from, to).expect("ca");
        let server = pki::issue_server_with_validity(
            &ca.cert_pem,
            &ca.key_pem,
            &[name.to_string(), address.to_string()],
            from,
            to,
        )
        .expect("server certificate");
        let client = pki::issue_client_with_validity(&ca.cert_pem, &ca.key_pem, "admin", from, to)
            .expect("client certificate");
        TestPki { ca, server, client }
    }

    /// A client config for `address` verifying the server as `name`, its
    /// files written under `dir`.
    pub fn client_config(&self, dir: &Path, name: &str, address: &str) -> AuraeConfig {
        client_config(dir, &self.ca.cert_pem, &self.client, name, address)
    }
}

pub fn validity() -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - Duration::hours(1), now + Duration::days(1))
}

/// A client config with the given CA and client certificate (PEM).
pub fn client_config(
    dir: &Path,
    ca_pem: &str,
    client: &(String, String),
    name: &str,
    address: &str,
) -> AuraeConfig {
    std::fs::create_dir_all(dir).expect("client dir");
    let write = |file: &str, pem: &str| {
        let p = dir.join(file);
        std::fs::write(&p, pem).expect("write pem");
        p
    };
    AuraeConfig {
        auth: AuthConfig {
            ca_crt: write("ca.crt", ca_pem),
            client_crt: write("client.crt", &client.0),
            client_key: write("client.key", &client.1),
        },
        system: SystemConfig {
            socket: None,
            address: Some(address.to_string()),
            server_name: Some(name.to_string()),
        },
    }
}

/// A bridge with an address and one TAP on it, both removed when dropped.
pub struct TapOnBridge {
    pub bridge: String,
    pub tap: String,
}

impl TapOnBridge {
    pub fn new(tag: &str, gateway: Ipv4Addr, prefix_len: u8) -> Self {
        let net = TapOnBridge {
            bridge: format!("aib{tag}"),
            tap: format!("ait{tag}"),
        };
        for link in [&net.tap, &net.bridge] {
            ip(&["link", "del", link]);
        }
        let cidr = format!("{gateway}/{prefix_len}");
        for args in [
            vec!["link", "add", &net.bridge, "type", "bridge"],
            vec!["addr", "add", &cidr, "dev", &net.bridge],
            vec!["link", "set", &net.bridge, "up"],
            vec!["tuntap", "add", "dev", &net.tap, "mode", "tap"],
            vec!["link", "set", &net.tap, "master", &net.bridge],
            vec!["link", "set", &net.tap, "up"],
        ] {
            assert!(ip(&args), "ip {}", args.join(" "));
        }
        net
    }
}

impl Drop for TapOnBridge {
    fn drop(&mut self) {
        ip(&["link", "del", &self.tap]);
        ip(&["link", "del", &self.bridge]);
    }
}

pub fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// QEMU's argv for an instance, as docs/instances.md gives it, with
/// `share` offered read-only as the 9p tag `aurae-images`.
pub fn qemu_args(
    image: &Path,
    initramfs: &Path,
    cmdline: &str,
    tap: &str,
    mac: &str,
    share: &Path,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "-M",
        "pc",
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-cpu",
        "max",
        "-m",
        "512",
        "-smp",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        "-kernel".to_string(),
        image.join("vmlinux").display().to_string(),
        "-initrd".to_string(),
        initramfs.display().to_string(),
        "-append".to_string(),
        cmdline.to_string(),
        "-serial".to_string(),
        "stdio".to_string(),
        "-netdev".to_string(),
        format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
        "-device".to_string(),
        format!("virtio-net-pci,netdev=n0,mac={mac},romfile="),
        "-fsdev".to_string(),
        format!(
            "local,id=f0,path={},security_model=none,readonly=on",
            share.display()
        ),
        "-device".to_string(),
        "virtio-9p-pci,fsdev=f0,mount_tag=aurae-images".to_string(),
    ]);
    args
}
