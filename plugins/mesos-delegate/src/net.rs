//! Address helpers shared by the two translators. std's parsers are strict (no leading zeros,
//! no embedded whitespace), which is what we want for operator input.

#[allow(unused_imports)]
use guest_support::prelude::*;

use core::net::IpAddr;
use ipnet::IpNet;

/// Parse a plain address (no prefix); `None` if it is not one.
pub fn parse_addr(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok()
}

/// An address that may carry a prefix length, e.g. `10.1.1.5`, `10.1.1.5/24`, `fd00::5/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrWithPrefix {
    pub addr: IpAddr,
    pub prefix: Option<u8>,
}

impl AddrWithPrefix {
    /// The subnet when a prefix was given.
    pub fn net(&self) -> Option<IpNet> {
        self.prefix
            .map(|p| IpNet::new(self.addr, p).expect("prefix was range-checked when parsed"))
    }
}

impl core::fmt::Display for AddrWithPrefix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.prefix {
            Some(p) => write!(f, "{}/{}", self.addr, p),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// Parse `addr` or `addr/prefix`. The error is a phrase that completes "…: <reason>".
pub fn parse_addr_with_prefix(s: &str) -> Result<AddrWithPrefix, String> {
    let (addr_s, prefix_s) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr = parse_addr(addr_s).ok_or_else(|| format!("{addr_s} is not an IP address"))?;
    let prefix = match prefix_s {
        None => None,
        Some(p) => {
            let max = max_prefix(addr);
            // Digits only: u8::from_str would also take "+24".
            let n = (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u8>().ok())
                .flatten()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("/{p} is not a prefix length for {addr} (0..={max})"))?;
            Some(n)
        }
    };
    Ok(AddrWithPrefix { addr, prefix })
}

/// Parse a subnet in CIDR form whose host bits are all zero; returns it normalised.
pub fn parse_subnet(s: &str) -> Result<IpNet, String> {
    let a = parse_addr_with_prefix(s)?;
    let net = a.net().ok_or_else(|| {
        format!("{s} has no prefix length (a subnet is written like 10.1.2.0/24)")
    })?;
    if net.addr() != net.network() {
        return Err(format!(
            "{s} has host bits set (the subnet is {})",
            net.trunc()
        ));
    }
    Ok(net)
}

pub fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Why an address cannot be put on an interface, if it cannot.
pub fn unusable_reason(addr: IpAddr) -> Option<&'static str> {
    if addr.is_unspecified() {
        return Some("is the unspecified address");
    }
    if addr.is_multicast() {
        return Some("is a multicast address");
    }
    if let IpAddr::V4(v4) = addr
        && v4.is_broadcast()
    {
        return Some("is the broadcast address");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_with_and_without_prefix() {
        let a = parse_addr_with_prefix("10.1.2.3").unwrap();
        assert_eq!((a.to_string(), a.prefix), ("10.1.2.3".into(), None));
        let a = parse_addr_with_prefix("10.1.2.3/24").unwrap();
        assert_eq!(a.to_string(), "10.1.2.3/24");
        let a = parse_addr_with_prefix("FD00:0::5/64").unwrap();
        assert_eq!(a.to_string(), "fd00::5/64");
    }

    #[test]
    fn bad_addresses_and_prefixes() {
        assert_eq!(
            parse_addr_with_prefix("10.1.1.300").unwrap_err(),
            "10.1.1.300 is not an IP address"
        );
        assert!(
            parse_addr_with_prefix("10.1.1.1/33")
                .unwrap_err()
                .contains("0..=32")
        );
        assert!(
            parse_addr_with_prefix("fd00::1/129")
                .unwrap_err()
                .contains("0..=128")
        );
        assert!(parse_addr_with_prefix("10.1.1.1/").is_err());
        assert!(parse_addr_with_prefix("10.1.1.1/+8").is_err());
        assert!(parse_addr_with_prefix("010.1.1.1").is_err());
        assert!(parse_addr_with_prefix(" 10.1.1.1").is_err());
    }

    #[test]
    fn subnets_need_zero_host_bits() {
        assert_eq!(
            parse_subnet("5.5.5.0/24").unwrap().to_string(),
            "5.5.5.0/24"
        );
        assert_eq!(parse_subnet("FD00::/64").unwrap().to_string(), "fd00::/64");
        assert_eq!(
            parse_subnet("5.5.5.1/24").unwrap_err(),
            "5.5.5.1/24 has host bits set (the subnet is 5.5.5.0/24)"
        );
        assert!(
            parse_subnet("5.5.5.0")
                .unwrap_err()
                .contains("no prefix length")
        );
    }
}
