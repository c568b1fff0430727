//! The cell's network: which CNI network its sandbox joins and which host
//! ports reach it (checked with the request), the ADD once the sandbox's
//! namespaces exist, and the DEL before they are released. The CNI work
//! itself is `crate::cni`'s.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use super::core::Inner;
use super::error::CellError;
use crate::cni::{AttachRequest, Attached, Dns, PortMapping, Protocol};

/// Most ports one cell may publish.
pub const MAX_PORTS: usize = 64;
/// Longest network name accepted.
const MAX_NETWORK_LEN: usize = 128;

/// A published port as asked, not yet checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSpec {
    pub host_port: u32,
    pub container_port: u32,
    /// "tcp" (also when empty) or "udp".
    pub protocol: String,
}

/// Which network the cell's sandbox joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NetworkChoice {
    /// Loopback only.
    None,
    /// The first network of the conf dir; loopback only when there is none.
    Default,
    Named(String),
}

/// The network part of a checked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetworkRequest {
    pub choice: NetworkChoice,
    pub ports: Vec<PortMapping>,
}

/// `network` and `ports` of a cell, or why not.
pub(crate) fn validate(
    cell: &str,
    network: &str,
    ports: &[PortSpec],
) -> Result<NetworkRequest, CellError> {
    let choice = match network {
        "" => NetworkChoice::Default,
        "none" => NetworkChoice::None,
        name if name.len() > MAX_NETWORK_LEN || name.chars().any(|c| c.is_control()) => {
            return Err(CellError::BadNetwork {
                cell: cell.to_string(),
                network: name.chars().take(MAX_NETWORK_LEN).collect(),
            })
        }
        name => NetworkChoice::Named(name.to_string()),
    };
    if ports.len() > MAX_PORTS {
        return Err(CellError::TooManyPorts {
            cell: cell.to_string(),
            count: ports.len(),
        });
    }
    if choice == NetworkChoice::None && !ports.is_empty() {
        return Err(CellError::PortsWithoutNetwork {
            cell: cell.to_string(),
        });
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(ports.len());
    for (index, p) in ports.iter().enumerate() {
        let port = |n: u32| u16::try_from(n).ok().filter(|n| *n > 0);
        let (Some(host_port), Some(container_port)) = (port(p.host_port), port(p.container_port))
        else {
            return Err(CellError::BadPort {
                index,
                reason: format!(
                    "ports must be 1 to 65535, not {}:{}",
                    p.host_port, p.container_port
                ),
            });
        };
        let protocol = match p.protocol.to_ascii_lowercase().as_str() {
            "" | "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => {
                return Err(CellError::BadPort {
                    index,
                    reason: format!(
                        "protocol {:?} is not \"tcp\" or \"udp\"",
                        other.chars().take(16).collect::<String>()
                    ),
                })
            }
        };
        if !seen.insert((host_port, protocol)) {
            return Err(CellError::BadPort {
                index,
                reason: format!(
                    "host port {host_port}/{} is published twice",
                    protocol.as_str()
                ),
            });
        }
        out.push(PortMapping {
            host_port,
            container_port,
            protocol,
        });
    }
    Ok(NetworkRequest { choice, ports: out })
}

/// ADD of the cell's sandbox (`netns`) to its network; None for loopback
/// only. Blocking.
pub(crate) fn connect(
    inner: &Inner,
    cell: &str,
    netns: &Path,
    req: &NetworkRequest,
) -> Result<Option<Attached>, CellError> {
    let network = match &req.choice {
        NetworkChoice::None => return Ok(None),
        NetworkChoice::Default => None,
        NetworkChoice::Named(name) => Some(name.as_str()),
    };
    let net_err = |source| CellError::Network {
        cell: cell.to_string(),
        source: Box::new(source),
    };
    let Some(cni) = inner.network.get() else {
        if network.is_some() || !req.ports.is_empty() {
            return Err(CellError::NoNetworking {
                cell: cell.to_string(),
            });
        }
        return Ok(None);
    };
    if network.is_none()
        && req.ports.is_empty()
        && cni.default_network().map_err(net_err)?.is_none()
    {
        // Cells ran with loopback only before CNI: a node without a network
        // configuration keeps doing so rather than refusing every cell.
        tracing::warn!(cell, conf_dir = %cni.conf_dir().display(), "no CNI network configured: the cell gets loopback only (auraed --bootstrap writes a default network)");
        return Ok(None);
    }
    let attached = cni
        .attach(&AttachRequest {
            owner: cell,
            netns,
            network,
            ports: &req.ports,
        })
        .map_err(net_err)?;
    Ok(Some(attached))
}

/// The cell's `/etc/resolv.conf`: the DNS settings of the CNI result when
/// the plugins gave any (most do not), else the host's, without loopback
/// nameservers, which cannot be reached from the cell's namespace (as
/// Docker and containerd do).
pub(crate) fn resolv_conf(dns: &Dns) -> String {
    if !dns.nameservers.is_empty() {
        return resolv_from_dns(dns);
    }
    let mut host = String::new();
    if let Ok(f) = std::fs::File::open(HOST_RESOLV_CONF) {
        use std::io::Read;
        let _ = f.take(MAX_RESOLV_CONF).read_to_string(&mut host);
    }
    without_loopback_nameservers(&host)
}

const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
const MAX_RESOLV_CONF: u64 = 64 << 10;

fn resolv_from_dns(dns: &Dns) -> String {
    let mut out = String::new();
    for ns in &dns.nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    let search: Vec<&str> = std::iter::once(dns.domain.as_str())
        .filter(|d| !d.is_empty())
        .chain(dns.search.iter().map(String::as_str))
        .collect();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    out
}

fn without_loopback_nameservers(text: &str) -> String {
    text.lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            !(words.next() == Some("nameserver")
                && words
                    .next()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .is_some_and(|a| a.is_loopback()))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// DEL of every network attachment of `cell`, while its network namespace
/// is still pinned. Failures stay recorded and are retried at the next
/// daemon start. Blocking.
pub(crate) fn disconnect(inner: &Inner, cell: &str) {
    if let Some(cni) = inner.network.get() {
        if let Err(e) = cni.detach(cell) {
            tracing::error!(cell, error = %crate::error_chain::chain(&e), "disconnecting the cell from its network; retried at the next start");
        }
    }
}

/// The cells with recorded network attachments (leftovers at start).
pub(crate) fn owners(inner: &Inner) -> Vec<String> {
    let Some(cni) = inner.network.get() else {
        return Vec::new();
    };
    cni.owners().unwrap_or_else(|e| {
        tracing::warn!(error = %crate::error_chain::chain(&e), "reading the recorded network attachments");
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(h: u32, c: u32, p: &str) -> PortSpec {
        PortSpec {
            host_port: h,
            container_port: c,
            protocol: p.into(),
        }
    }

    #[test]
    fn resolv_conf_comes_from_the_result_or_the_host_without_loopback() {
        let dns = Dns {
            nameservers: vec!["10.91.0.1".into(), "fd00::1".into()],
            domain: "cluster.local".into(),
            search: vec!["svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_from_dns(&dns),
            "nameserver 10.91.0.1\nnameserver fd00::1\nsearch cluster.local svc.cluster.local\noptions ndots:5\n"
        );
        assert_eq!(
            without_loopback_nameservers(
                "# generated\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.0.0.2\nsearch lan\n"
            ),
            "# generated\nnameserver 10.0.0.2\nsearch lan\n"
        );
    }

    #[test]
    fn networks_and_ports_are_checked() {
        let r = validate("c", "", &[port(8080, 80, ""), port(8080, 53, "UDP")]).expect("valid");
        assert_eq!(r.choice, NetworkChoice::Default);
        assert_eq!(
            r.ports,
            [
                PortMapping {
                    host_port: 8080,
                    container_port: 80,
                    protocol: Protocol::Tcp
                },
                PortMapping {
                    host_port: 8080,
                    container_port: 53,
                    protocol: Protocol::Udp
                }
            ]
        );
        assert_eq!(
            validate("c", "none", &[]).expect("none").choice,
            NetworkChoice::None
        );
        assert_eq!(
            validate("c", "lan", &[]).expect("named").choice,
            NetworkChoice::Named("lan".into())
        );
    }

    #[test]
    fn bad_networks_and_ports_are_refused_with_the_reason() {
        let err = |network: &str, ports: &[PortSpec]| {
            validate("c", network, ports)
                .expect_err("refused")
                .to_string()
        };
        assert!(err("none", &[port(1, 1, "")]).contains("network \"none\""));
        assert!(err("a\nb", &[]).contains("network name"));
        assert!(err(&"n".repeat(200), &[]).contains("network name"));
        assert!(err("", &[port(0, 80, "")]).contains("1 to 65535"));
        assert!(err("", &[port(70000, 80, "")]).contains("1 to 65535"));
        assert!(err("", &[port(80, 0, "")]).contains("1 to 65535"));
        assert!(err("", &[port(80, 80, "sctp")]).contains("\"sctp\""));
        assert!(err("", &[port(80, 80, "tcp"), port(80, 81, "")]).contains("published twice"));
        let many: Vec<PortSpec> = (1..=(MAX_PORTS as u32 + 1))
            .map(|p| port(p, p, ""))
            .collect();
        assert!(err("", &many).contains("at most"));
    }
}
