//! Name and uuid derivation of the objects the manager creates per attachment. Every name is
//! a function of (container id, ifname) alone, so a repeated or crashed registration meets
//! `409 already exists` and reuses what is there, and a DEL finds the objects from VNC alone.

use contrail_mesos_api::InterfaceIndex;

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Name of the VMI and the instance-ip of one attachment: `<cid'>__<ifname>`, where `cid'` is
/// the container id with every `_` written as `_.`. `cid'` then never holds `__` (every `_` in
/// it is followed by `.`), so the first `__` of a name is the separator and the pair can be read
/// back: two attachments never share a name. A container id without `_` (every Mesos UUID) is
/// written as it is, so those names are the same as before this scheme.
pub fn port_name(cid: &str, ifname: &str) -> String {
    format!("{}__{ifname}", cid.replace('_', "_."))
}

/// The name the manager gave a port before `port_name` was one-to-one (`<cid>__<ifname>`),
/// when it differs from today's. Objects named so are found by it and then taken only when
/// their `container-id`/`ifname` annotations say they are this attachment's.
pub fn legacy_port_name(cid: &str, ifname: &str) -> Option<String> {
    cid.contains('_').then(|| format!("{cid}__{ifname}"))
}

/// Name of the `i`-th floating IP of a port (under its pool): `<port name>__fip<i>`. One-to-one
/// as well: `i` is the digits after the last `__fip`, the port name is the rest.
pub fn fip_name(port: &str, i: usize) -> String {
    format!("{port}__fip{i}")
}

/// An address family, as VNC's `instance_ip_family` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn vnc(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }
}

/// Name of a port's instance-ip of one family: the port name for IPv4 (as before dual
/// stack), `<cid'>_6__<ifname>` for IPv6. `_6` cannot occur in an escaped container id (each
/// of its `_` is followed by `.`), so no IPv6 name equals any port name or another IPv6 name.
pub fn iip_name(cid: &str, ifname: &str, family: Family) -> String {
    match family {
        Family::V4 => port_name(cid, ifname),
        Family::V6 => format!("{}_6__{ifname}", cid.replace('_', "_.")),
    }
}

/// (container id, ifname) back from a `port_name`, or None when `name` is not one.
pub fn parse_port_name(name: &str) -> Option<(String, String)> {
    let (c, ifname) = name.split_once("__")?;
    let mut cid = String::with_capacity(c.len());
    let mut it = c.chars();
    while let Some(ch) = it.next() {
        cid.push(ch);
        if ch == '_' && it.next() != Some('.') {
            return None;
        }
    }
    Some((cid, ifname.to_owned()))
}

/// The MAC the server gives a VMI (`"02:"` + its uuid's first 5 bytes): the manager sets the
/// same one itself, so a create needs no read-back.
pub fn mac_for(vmi_uuid: &str) -> String {
    let h = vmi_uuid.replace('-', "");
    format!(
        "02:{}:{}:{}:{}:{}",
        &h[0..2],
        &h[2..4],
        &h[4..6],
        &h[6..8],
        &h[8..10]
    )
}

/// `index` annotation `i/N`: i from the ifname's trailing digits (eth1 → 1), else the number
/// of interfaces already registered; N = i + 1. Mesos gives each network its own ADD and the
/// manager cannot know how many follow, so N counts the interfaces up to this one.
pub fn index_of(ifname: &str, registered: usize) -> InterfaceIndex {
    let digits: String = ifname
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let i = digits
        .parse::<u32>()
        .unwrap_or_else(|_| u32::try_from(registered).unwrap_or(u32::MAX - 1))
        .min(u32::MAX - 1);
    InterfaceIndex {
        index: i,
        count: i + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_are_one_to_one() {
        // The pair that collided when names were `<cid>__<ifname>`.
        assert_ne!(port_name("v1__x", "eth0"), port_name("v1", "x__eth0"));
        let cases = [
            ("v1__x", "eth0"),
            ("v1", "x__eth0"),
            ("v1_", "_eth0"),
            ("v1", "__eth0"),
            ("a_.b", "c"),
            ("a_", ".b__c"),
            ("_", "_"),
            ("5baff64c-d028-47ba-864e-000000000001", "eth0"),
        ];
        let mut seen = std::collections::HashSet::new();
        for (c, i) in cases {
            let n = port_name(c, i);
            assert_eq!(
                parse_port_name(&n),
                Some((c.to_owned(), i.to_owned())),
                "{n}"
            );
            assert!(seen.insert(n.clone()), "{n} is not unique");
        }
        // Mesos container ids (UUIDs) keep the names they always had.
        assert_eq!(
            port_name("5baff64c-d028-47ba-864e-000000000001", "eth0"),
            "5baff64c-d028-47ba-864e-000000000001__eth0"
        );
        assert_eq!(legacy_port_name("5baff64c", "eth0"), None);
        assert_eq!(
            legacy_port_name("v1__x", "eth0").as_deref(),
            Some("v1__x__eth0")
        );
        assert_ne!(
            fip_name(&port_name("a", "b__fip1"), 0),
            fip_name(&port_name("a", "b"), 1)
        );
    }

    #[test]
    fn index_from_ifname() {
        assert_eq!(index_of("eth0", 0).to_string(), "0/1");
        assert_eq!(index_of("eth2", 0).to_string(), "2/3");
        assert_eq!(index_of("net", 1).to_string(), "1/2");
    }
}
