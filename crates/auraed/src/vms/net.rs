//! A VM's network: QEMU user-mode (the default), none, or a TAP device the
//! daemon creates on an existing Linux bridge. The TAP is persistent (made
//! with `ip tuntap`), so it outlives a QEMU restart; the daemon removes it
//! whenever the VM is off and recreates it at every boot.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::error::VmError;

/// Linux interface names hold at most 15 bytes (IFNAMSIZ minus the NUL).
const IFNAME_MAX: usize = 15;
const SYS_NET: &str = "/sys/class/net";

/// How a VM is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// QEMU user-mode networking (outbound NAT, no inbound).
    User,
    /// No network device at all.
    None,
    /// A TAP on this existing bridge.
    Bridge(String),
}

impl Network {
    /// `""` or `user`, `none`, `bridge:NAME`.
    pub fn parse(v: &str) -> Result<Self, VmError> {
        let bad = |detail: &str| VmError::BadNetwork {
            value: v.to_string(),
            detail: detail.to_string(),
        };
        match v {
            "" | "user" => Ok(Network::User),
            "none" => Ok(Network::None),
            _ => match v.strip_prefix("bridge:") {
                Some(b) if valid_ifname(b) => Ok(Network::Bridge(b.to_string())),
                Some(_) => Err(bad(
                    "a bridge name is 1 to 15 characters of [A-Za-z0-9_.-], not . or ..",
                )),
                None => Err(bad("unknown network")),
            },
        }
    }
}

fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= IFNAME_MAX
        && n != "."
        && n != ".."
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The prefix of every TAP of one daemon: `vt` + 4 hex of its state
/// directory + `-`, so that daemons sharing a host never take each other's
/// TAPs for leftovers.
pub fn tap_prefix(state_dir: &Path) -> String {
    let h = Sha256::digest(state_dir.as_os_str().as_encoded_bytes());
    format!("vt{}-", &hex::encode(h)[..4])
}

/// The TAP of VM `name`: the daemon's prefix + 8 hex of the name (15 bytes).
pub fn tap_name(prefix: &str, name: &str) -> String {
    let h = hex::encode(Sha256::digest(name.as_bytes()));
    format!("{prefix}{}", &h[..IFNAME_MAX - prefix.len()])
}

/// `bridge` exists and is a Linux bridge.
pub fn check_bridge(bridge: &str) -> Result<(), VmError> {
    if Path::new(SYS_NET).join(bridge).join("bridge").is_dir() {
        return Ok(());
    }
    Err(VmError::NoBridge {
        bridge: bridge.to_string(),
    })
}

/// Makes `tap` afresh (a stale one is removed) on `bridge`, up.
pub async fn create_tap(tap: &str, bridge: &str) -> Result<(), VmError> {
    check_bridge(bridge)?;
    remove_tap(tap).await;
    let steps: [&[&str]; 3] = [
        &["tuntap", "add", "dev", tap, "mode", "tap"],
        &["link", "set", "dev", tap, "master", bridge],
        &["link", "set", "dev", tap, "up"],
    ];
    for args in steps {
        if let Err(e) = ip(args).await {
            remove_tap(tap).await;
            return Err(VmError::Tap {
                tap: tap.to_string(),
                bridge: bridge.to_string(),
                detail: e,
            });
        }
    }
    Ok(())
}

/// Removes `tap` if it exists (a failure is logged: nothing more to do).
pub async fn remove_tap(tap: &str) {
    if !Path::new(SYS_NET).join(tap).exists() {
        return;
    }
    if let Err(e) = ip(&["link", "del", "dev", tap]).await {
        tracing::warn!(kind = "vm", tap, error = %e, "could not remove a vm's tap device");
    }
}

/// The interfaces named with `prefix` (this daemon's TAPs).
pub fn taps_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir(SYS_NET)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) async fn ip(args: &[&str]) -> Result<(), String> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_values_parse() {
        assert_eq!(Network::parse("").expect("empty"), Network::User);
        assert_eq!(Network::parse("user").expect("user"), Network::User);
        assert_eq!(Network::parse("none").expect("none"), Network::None);
        assert_eq!(
            Network::parse("bridge:br-0.a").expect("bridge"),
            Network::Bridge("br-0.a".into())
        );
        for bad in [
            "bridge:",
            "bridge:a/b",
            "bridge:..",
            "bridge:abcdefghijklmnop",
            "tap",
            "User",
        ] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tap_names_are_stable_short_and_per_daemon() {
        let (p1, p2) = (tap_prefix(Path::new("/a")), tap_prefix(Path::new("/b")));
        assert_ne!(p1, p2);
        let t = tap_name(&p1, "web");
        assert_eq!(t, tap_name(&p1, "web"));
        assert_ne!(t, tap_name(&p1, "web2"));
        assert_eq!(t.len(), IFNAME_MAX);
        assert!(t.starts_with(&p1) && valid_ifname(&t), "{t}");
    }
}
