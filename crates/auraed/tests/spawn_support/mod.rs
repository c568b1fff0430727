//! A daemon that spawns nested instances: the instance image (built on
//! first use), its CA key, a subnet and bridge of the test's own.
#![allow(dead_code)]

use std::path::Path;

use aurae_client::{AuraeConfig, Client};

use super::common::TestDaemon;
use super::instance_support::ip;

/// The test's bridge and subnet (10.252.N.0/24, N from the test's tag).
pub struct InstanceNet {
    pub bridge: String,
    pub third: u8,
}

impl InstanceNet {
    pub fn new(tag: u8) -> Self {
        let third = ((std::process::id() % 100) as u8).wrapping_add(tag.wrapping_mul(100));
        let net = InstanceNet {
            bridge: format!("aih{}-{tag}", std::process::id() % 100_000),
            third,
        };
        let _ = ip(&["link", "del", &net.bridge]);
        net
    }

    pub fn subnet(&self) -> String {
        format!("10.252.{}.0/24", self.third)
    }

    /// The TAPs on the bridge (the instances' links).
    pub fn ports(&self) -> Vec<String> {
        std::fs::read_dir(Path::new("/sys/class/net").join(&self.bridge).join("brif"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for InstanceNet {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// A daemon able to spawn instances from `image` on `net`.
pub async fn spawning_daemon(image: &Path, net: &InstanceNet) -> TestDaemon {
    TestDaemon::builder()
        .with_ca_key()
        .arg("--instance-image-dir")
        .arg(image.display().to_string())
        .arg("--instance-subnet")
        .arg(net.subnet())
        .arg("--instance-bridge")
        .arg(net.bridge.clone())
        .arg("--instance-boot-timeout")
        .arg("600")
        .stop_grace(30.0)
        .start()
        .await
}

/// A client of the instance at `address`, with the daemon's admin
/// identity, verifying the server as `server_name`.
pub async fn instance_client(
    d: &TestDaemon,
    address: &str,
    server_name: &str,
) -> Result<Client, aurae_client::ClientError> {
    let mut c: AuraeConfig = d.config();
    c.system.socket = None;
    c.system.address = Some(address.to_string());
    c.system.server_name = Some(server_name.to_string());
    Client::connect(&c).await
}
