//! What a plugin answers, typed after the CNI specification 1.0.0 (and the
//! 0.3.x/0.4.0 layout, which only adds `ips[].version`): the result of ADD
//! on stdout and exit 0, or the error object on stdout and a non-zero exit.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The result of a successful ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The netns path for an interface inside the container; empty on the host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR notation: `10.88.0.5/16`.
    #[serde(with = "cidr")]
    pub address: (IpAddr, u8),
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    #[serde(with = "cidr")]
    pub dst: (IpAddr, u8),
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl CniResult {
    /// Parses a plugin's stdout.
    pub fn parse(stdout: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(stdout).map_err(|e| e.to_string())
    }

    /// The address of the container: the first IPv4 address on an
    /// interface inside the sandbox, else the first IPv4, else the first.
    pub fn container_ip(&self) -> Option<IpAddr> {
        let in_sandbox = |ip: &&IpConfig| {
            ip.interface
                .and_then(|i| self.interfaces.get(i))
                .is_some_and(|iface| !iface.sandbox.is_empty())
        };
        let v4 = |ip: &&IpConfig| ip.address.0.is_ipv4();
        self.ips
            .iter()
            .filter(in_sandbox)
            .find(v4)
            .or_else(|| self.ips.iter().find(v4))
            .or_else(|| self.ips.first())
            .map(|ip| ip.address.0)
    }
}

/// The error object a failing plugin writes on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginError {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

impl PluginError {
    /// Reads a failing plugin's stdout; a plugin that wrote no error object
    /// gets one made from its exit status and stderr.
    /// Texts are cut to [`MAX_TEXT`] characters: they end up in a gRPC status.
    pub fn from_failure(stdout: &[u8], stderr: &[u8], status: &str) -> Self {
        if let Ok(mut e) = serde_json::from_slice::<PluginError>(stdout) {
            e.msg = cut(&e.msg);
            e.details = cut(&e.details);
            return e;
        }
        let said = String::from_utf8_lossy(if stdout.trim_ascii().is_empty() {
            stderr
        } else {
            stdout
        });
        PluginError {
            cni_version: String::new(),
            code: 0,
            msg: format!("{status} without a CNI error object"),
            details: cut(said.trim()),
        }
    }

    /// The meaning of the well-known codes of the specification (0: the
    /// plugin failed without saying how).
    pub fn code_name(&self) -> &'static str {
        match self.code {
            0 => "plugin failed",
            1 => "incompatible CNI version",
            2 => "unsupported field in network configuration",
            3 => "container unknown or does not exist",
            4 => "invalid necessary environment variables",
            5 => "I/O failure",
            6 => "failed to decode content",
            7 => "invalid network config",
            11 => "try again later",
            100.. => "plugin-specific error",
            _ => "error",
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            0 => write!(f, "{}: {}", self.code_name(), self.msg)?,
            code => write!(f, "{} (code {code}): {}", self.code_name(), self.msg)?,
        }
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

/// Most characters of a plugin's `msg` or `details` kept.
pub const MAX_TEXT: usize = 4096;

fn cut(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

/// `addr/prefix` as in the specification's `address`, `dst` fields.
mod cidr {
    use std::net::IpAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn parse(s: &str) -> Result<(IpAddr, u8), String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not in CIDR notation (addr/prefix)"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?;
        Ok((addr, prefix))
    }

    pub fn serialize<S: Serializer>(v: &(IpAddr, u8), s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}/{}", v.0, v.1))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(IpAddr, u8), D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().expect("an IP address")
    }

    /// What Debian's bridge plugin (1.1.1) answers for cniVersion 1.0.0.
    const BRIDGE_1_0: &str = r#"{
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "aurae0", "mac": "3a:1b:00:00:00:01"},
            {"name": "veth1234", "mac": "3a:1b:00:00:00:02"},
            {"name": "eth0", "mac": "3a:1b:00:00:00:03", "sandbox": "/run/aurae/cells/c/ns/net"}
        ],
        "ips": [{"interface": 2, "address": "10.91.0.7/16", "gateway": "10.91.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {}
    }"#;

    #[test]
    fn parses_a_1_0_0_result_and_finds_the_container_ip() {
        let r = CniResult::parse(BRIDGE_1_0.as_bytes()).expect("parse");
        assert_eq!(r.cni_version, "1.0.0");
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.ips[0].address, (ip("10.91.0.7"), 16));
        assert_eq!(r.ips[0].gateway, Some(ip("10.91.0.1")));
        assert_eq!(r.routes[0].dst, (ip("0.0.0.0"), 0));
        assert_eq!(r.container_ip(), Some(ip("10.91.0.7")));
    }

    #[test]
    fn parses_a_0_4_0_result_with_ip_versions() {
        let r = CniResult::parse(
            br#"{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/x"}],
                 "ips":[{"version":"6","address":"fd00::5/64","interface":0},
                        {"version":"4","address":"192.168.1.5/24","interface":0}]}"#,
        )
        .expect("parse");
        assert_eq!(r.container_ip(), Some(ip("192.168.1.5")));
    }

    #[test]
    fn prefers_the_sandbox_interface_and_falls_back_to_any_address() {
        let r = CniResult::parse(
            br#"{"cniVersion":"1.0.0","interfaces":[{"name":"br"},{"name":"eth0","sandbox":"/x"}],
                 "ips":[{"address":"10.0.0.1/24","interface":0},{"address":"10.0.0.2/24","interface":1}]}"#,
        )
        .expect("parse");
        assert_eq!(r.container_ip(), Some(ip("10.0.0.2")));
        let r = CniResult::parse(br#"{"cniVersion":"1.0.0","ips":[{"address":"fd00::2/64"}]}"#)
            .expect("parse");
        assert_eq!(r.container_ip(), Some(ip("fd00::2")));
        let r = CniResult::parse(br#"{"cniVersion":"1.0.0"}"#).expect("parse");
        assert_eq!(r.container_ip(), None);
    }

    #[test]
    fn refuses_malformed_results() {
        for bad in [
            &b""[..],
            b"not json",
            br#"{"ips":[]}"#,
            br#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1"}]}"#,
            br#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/33"}]}"#,
            br#"{"cniVersion":"1.0.0","ips":[{"address":"ten/8"}]}"#,
            br#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/8","gateway":"x"}]}"#,
            br#"{"cniVersion":"1.0.0","routes":[{"dst":"::/129"}]}"#,
        ] {
            assert!(
                CniResult::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn results_round_trip_as_prev_result() {
        let r = CniResult::parse(BRIDGE_1_0.as_bytes()).expect("parse");
        let again = CniResult::parse(&serde_json::to_vec(&r).expect("json")).expect("reparse");
        assert_eq!(r, again);
    }

    #[test]
    fn reads_the_error_format_and_names_the_code() {
        let e = PluginError::from_failure(
            br#"{"cniVersion":"1.0.0","code":7,"msg":"invalid network config","details":"missing subnet"}"#,
            b"",
            "exit status 1",
        );
        assert_eq!(e.code, 7);
        assert_eq!(
            e.to_string(),
            "invalid network config (code 7): invalid network config: missing subnet"
        );
        let e = PluginError::from_failure(br#"{"code":11,"msg":"busy"}"#, b"", "exit status 1");
        assert_eq!(e.to_string(), "try again later (code 11): busy");
        let e = PluginError::from_failure(b"", b"panic: oops\n", "exit status 2");
        assert_eq!(e.code, 0);
        assert_eq!(
            e.to_string(),
            "plugin failed: exit status 2 without a CNI error object: panic: oops"
        );
        assert_eq!(
            PluginError::from_failure(br#"{"code":120,"msg":"m"}"#, b"", "x").code_name(),
            "plugin-specific error"
        );
        let long = format!(r#"{{"code":5,"msg":"{}"}}"#, "x".repeat(100_000));
        let e = PluginError::from_failure(long.as_bytes(), b"", "x");
        assert_eq!(e.msg.len(), MAX_TEXT, "a status message stays small");
    }
}
