//! The instances' address pool: an IPv4 subnet (`--instance-subnet`) whose
//! first host address is the bridge's (the instances' gateway) and whose
//! other host addresses go to instances, the lowest free one first.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Smallest pool worth having (/30: one instance) and largest (/8).
const MIN_PREFIX: u8 = 8;
const MAX_PREFIX: u8 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl FromStr for Subnet {
    type Err = String;

    /// `A.B.C.D/N` with the host bits zero, N from 8 to 30.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || format!("{s:?} is not an IPv4 subnet such as 10.92.0.0/24");
        let (addr, prefix) = s.split_once('/').ok_or_else(usage)?;
        let network: Ipv4Addr = addr.parse().map_err(|_| usage())?;
        let prefix: u8 = prefix.parse().map_err(|_| usage())?;
        if !(MIN_PREFIX..=MAX_PREFIX).contains(&prefix) {
            return Err(format!(
                "{s:?}: the prefix length must be from {MIN_PREFIX} to {MAX_PREFIX}"
            ));
        }
        let subnet = Subnet { network, prefix };
        if u32::from(network) & !subnet.mask() != 0 {
            return Err(format!(
                "{s:?} has host bits set: did you mean {}/{prefix}?",
                Ipv4Addr::from(u32::from(network) & subnet.mask())
            ));
        }
        Ok(subnet)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Subnet {
    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    /// The bridge's address: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    /// The lowest host address after the gateway that is not in `used`.
    pub fn allocate(&self, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        let first = u32::from(self.network) + 2;
        let broadcast = u32::from(self.network) | !self.mask();
        (first..broadcast)
            .map(Ipv4Addr::from)
            .find(|ip| !used.contains(ip))
    }
}

/// A locally administered MAC derived from the address: unique within a
/// /8 pool, the same on every boot of the same address.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let [_, b, c, d] = ip.octets();
    format!("52:54:00:{b:02x}:{c:02x}:{d:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_refuse_what_is_not_one() {
        let s: Subnet = "10.92.0.0/24".parse().expect("subnet");
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 92, 0, 1));
        assert_eq!(s.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(s.to_string(), "10.92.0.0/24");
        for bad in [
            "10.92.0.0",
            "10.92.0.1/24",
            "10.92.0.0/31",
            "10.0.0.0/7",
            "x/24",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
        let err = "10.92.0.1/24".parse::<Subnet>().expect_err("host bits");
        assert!(err.contains("10.92.0.0/24"), "{err}");
    }

    #[test]
    fn allocation_skips_the_gateway_and_used_addresses_and_ends() {
        let s: Subnet = "192.168.7.0/30".parse().expect("subnet");
        let mut used = BTreeSet::new();
        let a = s.allocate(&used).expect("one address");
        assert_eq!(a, Ipv4Addr::new(192, 168, 7, 2));
        used.insert(a);
        assert_eq!(s.allocate(&used), None, "a /30 holds one instance");
        let s: Subnet = "10.92.0.0/24".parse().expect("subnet");
        let used: BTreeSet<_> = [Ipv4Addr::new(10, 92, 0, 2), Ipv4Addr::new(10, 92, 0, 4)]
            .into_iter()
            .collect();
        assert_eq!(s.allocate(&used), Some(Ipv4Addr::new(10, 92, 0, 3)));
        assert!(s.contains(Ipv4Addr::new(10, 92, 0, 254)));
        assert!(!s.contains(Ipv4Addr::new(10, 92, 1, 1)));
    }

    #[test]
    fn macs_follow_the_address() {
        assert_eq!(mac_for(Ipv4Addr::new(10, 92, 1, 200)), "52:54:00:5c:01:c8");
    }
}
