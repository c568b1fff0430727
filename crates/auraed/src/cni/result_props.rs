//! Property tests (proptest) of the CNI result parser: whatever a plugin
//! writes on stdout (arbitrary bytes, arbitrary JSON shaped like a result,
//! a real result with bytes flipped, cut or inserted), parsing and the
//! error reader never panic, and a result that parses serialises (as the
//! `prevResult` handed to the next plugin) to one that parses back to itself.

use std::net::IpAddr;

use proptest::prelude::*;
use serde_json::Value;

use super::result::{CniResult, Dns, Interface, IpConfig, PluginError, Route, MAX_TEXT};

/// What Debian's bridge plugin (1.1.1) answers, as the seed of mutations.
const BRIDGE: &[u8] = br#"{"cniVersion":"1.0.0","interfaces":[{"name":"aurae0","mac":"3a:1b:00:00:00:01"},{"name":"veth1234","mac":"3a:1b:00:00:00:02"},{"name":"eth0","mac":"3a:1b:00:00:00:03","sandbox":"/run/aurae/cells/c/ns/net"}],"ips":[{"interface":2,"address":"10.91.0.7/16","gateway":"10.91.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.91.0.1"]}}"#;

/// Parses, and when that succeeds checks the round trip and the IP choice.
fn check(stdout: &[u8]) -> Result<(), TestCaseError> {
    let _ = PluginError::from_failure(stdout, stdout, "exit status 1").to_string();
    let Ok(r) = CniResult::parse(stdout) else {
        return Ok(());
    };
    let json = serde_json::to_vec(&r).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let again = CniResult::parse(&json);
    prop_assert_eq!(again.as_ref(), Ok(&r), "{}", String::from_utf8_lossy(&json));
    match r.container_ip() {
        Some(ip) => prop_assert!(r.ips.iter().any(|c| c.address.0 == ip)),
        None => prop_assert!(r.ips.is_empty()),
    }
    Ok(())
}

/// Keys of the result format, so generated objects reach the nested fields.
const KEYS: &[&str] = &[
    "cniVersion",
    "interfaces",
    "ips",
    "routes",
    "dns",
    "name",
    "mac",
    "sandbox",
    "address",
    "gateway",
    "interface",
    "version",
    "dst",
    "gw",
    "nameservers",
    "domain",
    "search",
    "options",
    "code",
    "msg",
    "details",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
        "(10\\.0\\.0\\.[0-9]{1,3}|fd00::[0-9a-f]{1,4}|1\\.2\\.3\\.4)(/[0-9]{1,3})?"
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// A byte-level change to a valid result.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Cut(usize, usize),
    Insert(usize, Vec<u8>),
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(at, bits) => {
                if let Some(b) = bytes.get_mut(at % len) {
                    *b ^= bits;
                }
            }
            Mutation::Cut(at, n) => {
                let start = (at % len).min(bytes.len());
                let end = (start + n).min(bytes.len());
                bytes.drain(start..end);
            }
            Mutation::Insert(at, more) => {
                let at = (at % len).min(bytes.len());
                bytes.splice(at..at, more.iter().copied());
            }
        }
    }
    bytes
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(a, b)| Mutation::Flip(a, b)),
        (any::<usize>(), 1..16usize).prop_map(|(a, n)| Mutation::Cut(a, n)),
        (
            any::<usize>(),
            prop::collection::vec(
                prop::sample::select(b"{}[]\",:0123456789./-abcdefx \\".to_vec()),
                1..8
            )
        )
            .prop_map(|(a, v)| Mutation::Insert(a, v)),
    ]
}

fn ip_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn cidr() -> impl Strategy<Value = (IpAddr, u8)> {
    ip_addr().prop_flat_map(|ip| {
        let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
        (Just(ip), 0..=max)
    })
}

fn valid_result() -> impl Strategy<Value = CniResult> {
    let interface = (
        "[a-z0-9]{1,15}",
        "([0-9a-f]{2}:){5}[0-9a-f]{2}|",
        "(/run/[a-z]{1,8})?",
    )
        .prop_map(|(name, mac, sandbox)| Interface { name, mac, sandbox });
    let ip = (
        cidr(),
        prop::option::of(ip_addr()),
        prop::option::of(0..4usize),
    )
        .prop_map(|(address, gateway, interface)| IpConfig {
            address,
            gateway,
            interface,
        });
    let route = (cidr(), prop::option::of(ip_addr())).prop_map(|(dst, gw)| Route { dst, gw });
    let dns = (
        prop::collection::vec("[0-9.]{1,15}", 0..3),
        "[a-z.]{0,12}",
        prop::collection::vec("[a-z.]{1,12}", 0..3),
    )
        .prop_map(|(nameservers, domain, search)| Dns {
            nameservers,
            domain,
            search,
            options: Vec::new(),
        });
    (
        "(0\\.3\\.1|0\\.4\\.0|1\\.0\\.0)",
        prop::collection::vec(interface, 0..4),
        prop::collection::vec(ip, 0..4),
        prop::collection::vec(route, 0..4),
        dns,
    )
        .prop_map(|(cni_version, interfaces, ips, routes, dns)| CniResult {
            cni_version,
            interfaces,
            ips,
            routes,
            dns,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes)?;
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        check(&serde_json::to_vec(&v).expect("json"))?;
    }

    #[test]
    fn mutated_results_never_panic(mutations in prop::collection::vec(mutation(), 1..6)) {
        check(&mutate(BRIDGE.to_vec(), &mutations))?;
    }

    #[test]
    fn valid_results_round_trip(r in valid_result()) {
        let json = serde_json::to_vec(&r).expect("json");
        let parsed = CniResult::parse(&json);
        prop_assert_eq!(parsed.as_ref(), Ok(&r), "{}", String::from_utf8_lossy(&json));
        check(&json)?;
    }

    #[test]
    fn plugin_errors_stay_bounded(
        code in any::<u32>(),
        msg in any::<String>(),
        stderr in prop::collection::vec(any::<u8>(), 0..9000),
    ) {
        let json = serde_json::json!({"code": code, "msg": msg.repeat(3)}).to_string();
        let e = PluginError::from_failure(json.as_bytes(), b"", "exit status 1");
        prop_assert_eq!(e.code, code);
        prop_assert!(e.msg.chars().count() <= MAX_TEXT);
        let _ = e.to_string();
        let e = PluginError::from_failure(b"", &stderr, "exit status 2");
        prop_assert!(e.details.chars().count() <= MAX_TEXT);
        prop_assert_eq!(e.code, 0);
    }
}

#[test]
fn the_seed_parses() {
    let r = CniResult::parse(BRIDGE).expect("the seed is a valid result");
    assert_eq!(r.container_ip(), Some("10.91.0.7".parse().expect("ip")));
}
