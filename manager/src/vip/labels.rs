//! `VIP_<n>` port labels (DC/OS "Load Balancing and VIPs"; the layer-4 load balancer,
//! minuteman / dcos-l4lb): `ip:port` names an address, `/name:port` (or `name:port`) a named
//! VIP reached as `<name>.marathon.l4lb.<domain>:<port>`. A label is untrusted input: every
//! part is checked and bounded, and a bad one is reported, never guessed at.

use std::fmt;
use std::net::IpAddr;

/// What a VIP label names: an address or a name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VipKey {
    Addr(IpAddr),
    /// The name as DC/OS forms the DNS label: slashes removed, lower case.
    Name(String),
}

impl fmt::Display for VipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VipKey::Addr(a) => write!(f, "{a}"),
            VipKey::Name(n) => write!(f, "/{n}"),
        }
    }
}

/// One parsed label: the VIP and its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipLabel {
    pub key: VipKey,
    pub port: u16,
}

/// Longest label value taken (a DNS name is at most 253 characters, plus `:port`).
const MAX_VALUE: usize = 260;
/// A DNS label is at most 63 characters (RFC 1035 2.3.4).
const MAX_NAME: usize = 63;

/// Whether a label key is a VIP label: `VIP_` followed by a number (DC/OS: `VIP_$IDX`).
pub fn is_vip_key(k: &str) -> bool {
    k.strip_prefix("VIP_")
        .is_some_and(|n| !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses a label value; the error says what is wrong with it.
pub fn parse(value: &str) -> Result<VipLabel, String> {
    if value.len() > MAX_VALUE {
        return Err(format!("longer than {MAX_VALUE} characters"));
    }
    let v = value.trim();
    let (host, port) = v
        .rsplit_once(':')
        .ok_or_else(|| "expected `ip:port` or `/name:port`".to_owned())?;
    let port: u16 = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("port {port:?} is not a number in 1-65535")),
    };
    // `[fd00::5]:80` for an IPv6 address: without brackets the port cannot be told apart.
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!(
            "{host:?} is neither an address nor a name (an IPv6 address goes in brackets)"
        ));
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(a) = bare.parse::<IpAddr>() {
        if a.is_unspecified() || a.is_loopback() || a.is_multicast() {
            return Err(format!("{a} cannot be a VIP"));
        }
        return Ok(VipLabel {
            key: VipKey::Addr(a),
            port,
        });
    }
    if host.contains(':') {
        return Err(format!("{host:?} is neither an address nor a name"));
    }
    // DC/OS forms the DNS label of `/group/app` by dropping the slashes.
    let name: String = host.chars().filter(|c| *c != '/').collect();
    let name = name.to_ascii_lowercase();
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "the name {name:?} is longer than {MAX_NAME} characters (one DNS label)"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        || name.starts_with(['-', '.'])
        || name.ends_with(['-', '.'])
    {
        return Err(format!(
            "the name {name:?} is not a DNS name (letters, digits, `-`, `.`)"
        ));
    }
    Ok(VipLabel {
        key: VipKey::Name(name),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_address_vips_parse() {
        assert_eq!(
            parse("/web:80").unwrap(),
            VipLabel {
                key: VipKey::Name("web".into()),
                port: 80
            }
        );
        // The form without a slash, and a group path whose slashes DC/OS drops.
        assert_eq!(parse("web:80").unwrap().key, VipKey::Name("web".into()));
        assert_eq!(
            parse("/Team/Web:8080").unwrap().key,
            VipKey::Name("teamweb".into())
        );
        assert_eq!(
            parse("10.32.0.100:5000").unwrap(),
            VipLabel {
                key: VipKey::Addr("10.32.0.100".parse().unwrap()),
                port: 5000
            }
        );
        assert_eq!(
            parse("[fd00::5]:80").unwrap().key,
            VipKey::Addr("fd00::5".parse().unwrap())
        );
    }

    #[test]
    fn bad_values_say_why() {
        for (v, why) in [
            ("/web", "expected"),
            ("/web:0", "1-65535"),
            ("/web:65536", "1-65535"),
            ("/web:http", "1-65535"),
            ("/:80", "empty"),
            ("/we b:80", "not a DNS name"),
            ("/-web:80", "not a DNS name"),
            ("0.0.0.0:80", "cannot be a VIP"),
            ("127.0.0.1:80", "cannot be a VIP"),
            ("fd00::5:80", "neither"),
        ] {
            let e = parse(v).unwrap_err();
            assert!(e.contains(why), "{v}: {e}");
        }
        assert!(parse(&format!("/{}:80", "a".repeat(64))).is_err());
        assert!(parse(&"a".repeat(300)).unwrap_err().contains("longer"));
    }

    #[test]
    fn only_numbered_vip_keys_count() {
        assert!(is_vip_key("VIP_0"));
        assert!(is_vip_key("VIP_12"));
        assert!(!is_vip_key("VIP_"));
        assert!(!is_vip_key("VIP_x"));
        assert!(!is_vip_key("vip_0"));
        assert!(!is_vip_key("HAPROXY_0_VHOST"));
    }
}
