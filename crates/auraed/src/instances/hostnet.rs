//! The host side of the instances' network: one bridge the daemon manages
//! (the instances' gateway) and one TAP per instance on it. Behind a trait
//! so that Spawn's and Free's cleanup is tested without root.

use std::net::Ipv4Addr;
use std::path::Path;

use futures::future::BoxFuture;

use crate::vms::net as vmnet;

/// What a network step returns: why it failed, in words.
pub type NetStep<'a> = BoxFuture<'a, Result<(), String>>;

pub trait HostNet: Send + Sync + 'static {
    /// Makes `bridge` with address `gateway/prefix` and brings it up, when
    /// it is not there yet.
    fn ensure_bridge(&self, bridge: &str, gateway: Ipv4Addr, prefix: u8) -> NetStep<'_>;
    /// Makes `tap` afresh on `bridge`, up.
    fn create_tap(&self, tap: &str, bridge: &str) -> NetStep<'_>;
    /// Removes `tap` if it exists.
    fn remove_tap(&self, tap: &str) -> BoxFuture<'_, ()>;
    /// The interfaces whose names start with `prefix`.
    fn taps_with_prefix(&self, prefix: &str) -> Vec<String>;
}

/// The real host, through `ip` (as the VMs' TAPs).
pub struct IpHostNet;

impl HostNet for IpHostNet {
    fn ensure_bridge(&self, bridge: &str, gateway: Ipv4Addr, prefix: u8) -> NetStep<'_> {
        let (bridge, cidr) = (bridge.to_string(), format!("{gateway}/{prefix}"));
        Box::pin(async move {
            if vmnet::check_bridge(&bridge).is_err() {
                vmnet::ip(&["link", "add", "name", &bridge, "type", "bridge"]).await?;
            }
            if !has_address(&bridge, &cidr).await? {
                vmnet::ip(&["addr", "add", &cidr, "dev", &bridge]).await?;
            }
            vmnet::ip(&["link", "set", "dev", &bridge, "up"]).await
        })
    }

    fn create_tap(&self, tap: &str, bridge: &str) -> NetStep<'_> {
        let (tap, bridge) = (tap.to_string(), bridge.to_string());
        Box::pin(async move {
            vmnet::create_tap(&tap, &bridge)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn remove_tap(&self, tap: &str) -> BoxFuture<'_, ()> {
        let tap = tap.to_string();
        Box::pin(async move { vmnet::remove_tap(&tap).await })
    }

    fn taps_with_prefix(&self, prefix: &str) -> Vec<String> {
        vmnet::taps_with_prefix(prefix)
    }
}

async fn has_address(bridge: &str, cidr: &str) -> Result<bool, String> {
    let out = tokio::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", bridge])
        .output()
        .await
        .map_err(|e| format!("running ip: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .any(|w| w == cidr))
}

/// The prefix of this daemon's instance TAPs (distinct from its VMs').
pub fn tap_prefix(instances_state_dir: &Path) -> String {
    vmnet::tap_prefix(instances_state_dir)
}

pub fn tap_name(prefix: &str, name: &str) -> String {
    vmnet::tap_name(prefix, name)
}
