//! What the parent tells the instance on the kernel command line. The
//! kernel hands parameters with a dot (`aurae.port`) to nobody and keeps
//! `ip=` for itself when it has IP autoconfiguration, so PID 1 reads
//! /proc/cmdline rather than its argv or environment.

use std::net::Ipv4Addr;

use super::InitError;

/// The TCP port the nested auraed serves on when `aurae.port` is absent.
pub const DEFAULT_PORT: u16 = 8080;

/// `ip=client::gw:netmask:hostname:device:off`, the kernel's nfsroot
/// syntax (Documentation/admin-guide/nfs/nfsroot.rst), static form only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    pub prefix_len: u8,
    pub hostname: String,
    pub device: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    pub ip: Option<IpConfig>,
    pub port: u16,
    /// The virtio-9p mount tag of the read-only image share, if any.
    pub preload: Option<String>,
}

impl BootParams {
    pub fn parse(cmdline: &str) -> Result<Self, InitError> {
        let mut params = BootParams {
            ip: None,
            port: DEFAULT_PORT,
            preload: None,
        };
        for word in cmdline.split_ascii_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            match key {
                "ip" => params.ip = Some(parse_ip(value)?),
                "aurae.port" => {
                    params.port = value.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
                        InitError::Cmdline(format!("aurae.port={value} is not a tcp port"))
                    })?
                }
                "aurae.preload" if !value.is_empty() => params.preload = Some(value.to_string()),
                _ => {}
            }
        }
        Ok(params)
    }
}

fn parse_ip(value: &str) -> Result<IpConfig, InitError> {
    let bad = |why: &str| InitError::Cmdline(format!("ip={value}: {why}"));
    let fields: Vec<&str> = value.split(':').collect();
    if fields.len() < 6 {
        return Err(bad("expected client::gateway:netmask:hostname:device:off"));
    }
    let addr = |s: &str, what: &str| -> Result<Ipv4Addr, InitError> {
        s.parse()
            .map_err(|_| bad(&format!("{what} {s:?} is not an ipv4 address")))
    };
    let address = addr(fields[0], "address")?;
    let gateway = match fields[2] {
        "" => None,
        g => Some(addr(g, "gateway")?),
    };
    let mask = u32::from(addr(fields[3], "netmask")?);
    if mask.leading_ones() + mask.trailing_zeros() != 32 {
        return Err(bad("the netmask is not contiguous"));
    }
    let hostname = fields[4].to_string();
    if hostname.is_empty()
        || hostname.len() > 64
        || !hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(bad(
            "the hostname must be 1 to 64 letters, digits, '-' or '.'",
        ));
    }
    let device = fields[5].to_string();
    if device.is_empty() || device.len() > 15 || device.contains('/') {
        return Err(bad("the device must be an interface name"));
    }
    if !matches!(
        fields.get(6).copied(),
        None | Some("") | Some("off") | Some("none")
    ) {
        return Err(bad("only static configuration (autoconf off) is supported"));
    }
    Ok(IpConfig {
        address,
        gateway,
        prefix_len: mask.leading_ones() as u8,
        hostname,
        device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parents_command_line_parses() {
        let p = BootParams::parse(
            "console=ttyS0 reboot=t panic=-1 quiet ip=10.80.0.5::10.80.0.1:255.255.255.0:inst-a:eth0:off aurae.port=9000 aurae.preload=aurae-images\n",
        )
        .expect("parses");
        assert_eq!(
            p.ip,
            Some(IpConfig {
                address: Ipv4Addr::new(10, 80, 0, 5),
                gateway: Some(Ipv4Addr::new(10, 80, 0, 1)),
                prefix_len: 24,
                hostname: "inst-a".into(),
                device: "eth0".into(),
            })
        );
        assert_eq!(p.port, 9000);
        assert_eq!(p.preload.as_deref(), Some("aurae-images"));
    }

    #[test]
    fn defaults_without_aurae_parameters() {
        let p = BootParams::parse("console=ttyS0 quiet").expect("parses");
        assert_eq!((p.ip, p.port, p.preload), (None, DEFAULT_PORT, None));
    }

    #[test]
    fn bad_values_are_refused_with_the_parameter_named() {
        for bad in [
            "ip=10.0.0.300::10.0.0.1:255.255.255.0:a:eth0:off",
            "ip=10.0.0.3::10.0.0.1:255.0.255.0:a:eth0:off",
            "ip=10.0.0.3::10.0.0.1:255.255.255.0::eth0:off",
            "ip=10.0.0.3::10.0.0.1:255.255.255.0:a/b:eth0:off",
            "ip=10.0.0.3::10.0.0.1:255.255.255.0:a:eth0:dhcp",
            "ip=dhcp",
            "aurae.port=0",
            "aurae.port=http",
        ] {
            let e = BootParams::parse(bad).expect_err(bad).to_string();
            let key = bad.split('=').next().unwrap_or_default();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn no_gateway_means_no_default_route() {
        let p = BootParams::parse("ip=192.168.7.2:::255.255.255.252:x:eth1:off").expect("parses");
        let ip = p.ip.expect("ip");
        assert_eq!((ip.gateway, ip.prefix_len), (None, 30));
    }
}
