//! `translate-contrail`: the Contrail label vocabulary (Contrail's Mesos examples, Marathon network labels)
//! parsed and validated into a typed request for the manager.
//!
//! Grammar (every value trimmed; list items and fq-name parts trimmed; empty ones rejected):
//! * `networks`: `name` (in the project) or `domain:project:name`. One network only.
//! * `network-subnets`: `cidr[,cidr…]`, IPv4 or IPv6, no host bits; normalised.
//! * `network-ip`: an address. Older examples wrote the subnet here (`"network-ip": "5.5.5.0/24"`):
//!   a value with a prefix and zero host bits (prefix shorter than the address) is taken as a
//!   subnet, added to the subnets, and a warning is returned. An address with a prefix and
//!   host bits set is taken as the address; the prefix is dropped with a warning (the subnet
//!   decides the prefix length). When subnets are given, the address must be inside one.
//! * `project-name`, `domain-name`: non-empty, no `:`.
//! * `floating-ips`: `domain:project:network:pool[(address)][,…]`.
//! * `security-groups`: `domain:project:name` or `name` (in the project), comma-separated.
//! * `isolation`: `cluster`, `group`, `app` or `user-defined` (exact spelling).
//!
//! A vocabulary label given twice is an error; duplicate items in a list are errors. Labels
//! outside the vocabulary pass through in `other`, untouched (duplicates included: they are
//! not ours to judge). Every error is CNI code 7 and its message is
//! `label <key>: "<offending item>": <reason>`.

#[allow(unused_imports)]
use guest_support::prelude::*;

use crate::Label;
use crate::error::PluginError;
use crate::net::{parse_addr, parse_addr_with_prefix, parse_subnet, unusable_reason};
use ipnet::IpNet;

pub const NETWORKS: &str = "networks";
pub const NETWORK_SUBNETS: &str = "network-subnets";
pub const NETWORK_IP: &str = "network-ip";
pub const PROJECT_NAME: &str = "project-name";
pub const DOMAIN_NAME: &str = "domain-name";
pub const FLOATING_IPS: &str = "floating-ips";
pub const SECURITY_GROUPS: &str = "security-groups";
pub const ISOLATION: &str = "isolation";

const VOCABULARY: [&str; 8] = [
    NETWORKS,
    NETWORK_SUBNETS,
    NETWORK_IP,
    PROJECT_NAME,
    DOMAIN_NAME,
    FLOATING_IPS,
    SECURITY_GROUPS,
    ISOLATION,
];

/// The `isolation` label's values (WIT `isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    Cluster,
    Group,
    App,
    UserDefined,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloatingIp {
    /// domain, project, virtual network, pool.
    pub pool: Vec<String>,
    pub address: Option<String>,
}

/// Mirrors the WIT `contrail-request`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ContrailRequest {
    pub domain: Option<String>,
    pub project: Option<String>,
    pub network: Option<Vec<String>>,
    /// Normalised CIDRs.
    pub subnets: Vec<String>,
    pub ip: Option<String>,
    pub floating_ips: Vec<FloatingIp>,
    pub security_groups: Vec<Vec<String>>,
    pub isolation: Option<Isolation>,
    pub other: Vec<Label>,
}

/// The request plus warnings for the host log (the translation itself does not log, so it stays
/// testable natively).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Translation {
    pub request: ContrailRequest,
    pub warnings: Vec<String>,
}

fn err(key: &str, item: &str, why: impl core::fmt::Display) -> PluginError {
    PluginError::invalid(format!("label {key}: \"{item}\": {why}"))
}

pub fn translate_contrail(labels: &[Label]) -> Result<Translation, PluginError> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Translation::default();
    let mut subnets: Vec<IpNet> = Vec::new();
    let mut network_ip: Option<&str> = None;

    for label in labels {
        let key = label.key.as_str();
        if !VOCABULARY.contains(&key) {
            out.request.other.push(label.clone());
            continue;
        }
        if seen.contains(&key) {
            return Err(PluginError::invalid(format!(
                "label {key}: given more than once"
            )));
        }
        seen.push(key);
        let value = label.value.trim();
        if value.is_empty() {
            return Err(PluginError::invalid(format!("label {key}: empty value")));
        }
        let r = &mut out.request;
        match key {
            NETWORKS => {
                if value.contains(',') {
                    return Err(err(key, value, "only one network can be given"));
                }
                r.network = Some(fq_name(
                    key,
                    value,
                    value,
                    &[1, 3],
                    "name or domain:project:name",
                )?);
            }
            NETWORK_SUBNETS => {
                for item in items(key, value)? {
                    let net = parse_subnet(item).map_err(|why| err(key, item, why))?;
                    if subnets.contains(&net) {
                        return Err(err(key, item, format!("{net} is given twice")));
                    }
                    subnets.push(net);
                }
            }
            // Decided after the loop: its meaning depends on network-subnets.
            NETWORK_IP => network_ip = Some(value),
            PROJECT_NAME => r.project = Some(plain_name(key, value)?),
            DOMAIN_NAME => r.domain = Some(plain_name(key, value)?),
            FLOATING_IPS => {
                for item in items(key, value)? {
                    let fip = floating_ip(key, item)?;
                    if r.floating_ips.contains(&fip) {
                        return Err(err(key, item, "given twice"));
                    }
                    r.floating_ips.push(fip);
                }
            }
            SECURITY_GROUPS => {
                for item in items(key, value)? {
                    let sg = fq_name(key, item, item, &[1, 3], "name or domain:project:name")?;
                    if r.security_groups.contains(&sg) {
                        return Err(err(key, item, "given twice"));
                    }
                    r.security_groups.push(sg);
                }
            }
            ISOLATION => {
                r.isolation = Some(match value {
                    "cluster" => Isolation::Cluster,
                    "group" => Isolation::Group,
                    "app" => Isolation::App,
                    "user-defined" => Isolation::UserDefined,
                    _ => {
                        return Err(err(
                            key,
                            value,
                            "not one of cluster, group, app, user-defined",
                        ));
                    }
                });
            }
            _ => unreachable!("VOCABULARY covers every arm"),
        }
    }

    if let Some(value) = network_ip {
        let key = NETWORK_IP;
        let a = parse_addr_with_prefix(value).map_err(|why| err(key, value, why))?;
        if let Some(why) = unusable_reason(a.addr) {
            return Err(err(key, value, format!("{} {why}", a.addr)));
        }
        match a.net() {
            Some(net) if net.prefix_len() < net.max_prefix_len() && net.addr() == net.network() => {
                out.warnings.push(format!(
                    "label {key}: \"{value}\" is a subnet (an older spelling); \
                     treating it as {NETWORK_SUBNETS}, the address will be allocated from it"
                ));
                if !subnets.contains(&net) {
                    subnets.push(net);
                }
            }
            _ => {
                if let Some(p) = a.prefix {
                    out.warnings.push(format!(
                        "label {key}: \"{value}\": prefix /{p} ignored, the subnet decides the \
                         prefix length"
                    ));
                }
                if !subnets.is_empty() && !subnets.iter().any(|n| n.contains(&a.addr)) {
                    let list: Vec<String> = subnets.iter().map(|n| n.to_string()).collect();
                    return Err(err(
                        key,
                        value,
                        format!("{} is not in {NETWORK_SUBNETS} {}", a.addr, list.join(",")),
                    ));
                }
                out.request.ip = Some(a.addr.to_string());
            }
        }
    }
    out.request.subnets = subnets.iter().map(|n| n.to_string()).collect();
    Ok(out)
}

/// Comma-separated items, trimmed; an empty item is an error (a stray comma usually means an
/// item was lost in editing).
fn items<'a>(key: &str, value: &'a str) -> Result<Vec<&'a str>, PluginError> {
    value
        .split(',')
        .map(str::trim)
        .map(|item| {
            if item.is_empty() {
                Err(err(key, value, "empty item in the list"))
            } else {
                Ok(item)
            }
        })
        .collect()
}

fn plain_name(key: &str, value: &str) -> Result<String, PluginError> {
    if value.contains(':') {
        return Err(err(key, value, "a name cannot contain ':'"));
    }
    Ok(value.to_string())
}

/// A `:`-separated Contrail fq-name with one of the allowed numbers of parts.
/// `shown` is what the error quotes (the whole list item, which may carry more than the name).
fn fq_name(
    key: &str,
    shown: &str,
    text: &str,
    parts: &[usize],
    shape: &str,
) -> Result<Vec<String>, PluginError> {
    let item = shown;
    let names: Vec<String> = text.split(':').map(|p| p.trim().to_string()).collect();
    if !parts.contains(&names.len()) {
        return Err(err(
            key,
            item,
            format!("expected {shape}, got {} parts", names.len()),
        ));
    }
    if names.iter().any(String::is_empty) {
        return Err(err(key, item, "empty name part"));
    }
    Ok(names)
}

/// `domain:project:network:pool` with an optional `(address)` suffix.
fn floating_ip(key: &str, item: &str) -> Result<FloatingIp, PluginError> {
    let opens = item.matches('(').count();
    let closes = item.matches(')').count();
    let (pool, address) = if opens == 0 && closes == 0 {
        (item, None)
    } else {
        if opens != 1 || closes != 1 || !item.ends_with(')') || item.find('(') > item.find(')') {
            return Err(err(
                key,
                item,
                "unbalanced parentheses (expected pool(address) with the address last)",
            ));
        }
        let open = item.find('(').expect("counted");
        let inner = item[open + 1..item.len() - 1].trim();
        if inner.is_empty() {
            return Err(err(key, item, "empty address in parentheses"));
        }
        let addr = parse_addr(inner).ok_or_else(|| {
            let why = if inner.contains('/') {
                format!("{inner} is not an IP address (no prefix length here)")
            } else {
                format!("{inner} is not an IP address")
            };
            err(key, item, why)
        })?;
        if let Some(why) = unusable_reason(addr) {
            return Err(err(key, item, format!("{addr} {why}")));
        }
        (&item[..open], Some(addr.to_string()))
    };
    let pool = fq_name(key, item, pool.trim(), &[4], "domain:project:network:pool")?;
    Ok(FloatingIp { pool, address })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs.iter().map(|(k, v)| Label::new(*k, *v)).collect()
    }

    fn ok(pairs: &[(&str, &str)]) -> Translation {
        translate_contrail(&l(pairs)).unwrap()
    }

    fn bad(pairs: &[(&str, &str)]) -> String {
        let e = translate_contrail(&l(pairs)).unwrap_err();
        assert_eq!(e.code, 7, "{}", e.msg);
        e.msg
    }

    fn v(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn isolation_label() {
        for (value, want) in [
            ("cluster", Isolation::Cluster),
            ("group", Isolation::Group),
            (" app ", Isolation::App),
            ("user-defined", Isolation::UserDefined),
        ] {
            assert_eq!(ok(&[("isolation", value)]).request.isolation, Some(want));
        }
        assert_eq!(ok(&[("networks", "blue")]).request.isolation, None);
        assert_eq!(
            bad(&[("isolation", "App")]),
            "label isolation: \"App\": not one of cluster, group, app, user-defined"
        );
        assert_eq!(
            bad(&[("isolation", "app"), ("isolation", "group")]),
            "label isolation: given more than once"
        );
    }

    #[test]
    fn floating_ips_example() {
        let t = ok(&[
            ("networks", "blue-network"),
            ("project-name", "default-project"),
            ("domain-name", "default-domain"),
            (
                "floating-ips",
                "default-domain:default-project:__public__:__fip_pool_public__(10.66.77.123),\
                 default-domain:default-project:__public__:__fip_pool_public2__(10.33.44.11)",
            ),
        ]);
        let r = t.request;
        assert_eq!(r.network, Some(v(&["blue-network"])));
        assert_eq!(r.project.as_deref(), Some("default-project"));
        assert_eq!(r.domain.as_deref(), Some("default-domain"));
        assert_eq!(
            r.floating_ips,
            vec![
                FloatingIp {
                    pool: v(&[
                        "default-domain",
                        "default-project",
                        "__public__",
                        "__fip_pool_public__"
                    ]),
                    address: Some("10.66.77.123".into()),
                },
                FloatingIp {
                    pool: v(&[
                        "default-domain",
                        "default-project",
                        "__public__",
                        "__fip_pool_public2__"
                    ]),
                    address: Some("10.33.44.11".into()),
                },
            ]
        );
        assert!(t.warnings.is_empty());
        assert!(r.other.is_empty());
    }

    #[test]
    fn security_groups_and_subnets_example() {
        let r = ok(&[
            ("networks", "default-domain:default-project:blue-network"),
            ("network-subnets", " 5.5.5.0/24 , FD00:5::/64"),
            (
                "security-groups",
                "default-domain:default-project:security_groups_mesos, web",
            ),
        ])
        .request;
        assert_eq!(
            r.network,
            Some(v(&["default-domain", "default-project", "blue-network"]))
        );
        assert_eq!(r.subnets, v(&["5.5.5.0/24", "fd00:5::/64"]));
        assert_eq!(
            r.security_groups,
            vec![
                v(&["default-domain", "default-project", "security_groups_mesos"]),
                v(&["web"])
            ]
        );
    }

    #[test]
    fn older_network_ip_subnet_spelling_becomes_a_subnet_with_a_warning() {
        let t = ok(&[("networks", "blue-network"), ("network-ip", "5.5.5.0/24")]);
        assert_eq!(t.request.subnets, v(&["5.5.5.0/24"]));
        assert_eq!(t.request.ip, None);
        assert_eq!(t.warnings.len(), 1);
        assert!(t.warnings[0].contains("is a subnet"), "{:?}", t.warnings);
        // Same subnet in both labels: not doubled.
        let t = ok(&[
            ("network-ip", "5.5.5.0/24"),
            ("network-subnets", "5.5.5.0/24"),
        ]);
        assert_eq!(t.request.subnets, v(&["5.5.5.0/24"]));
    }

    #[test]
    fn network_ip_address_forms() {
        let t = ok(&[("network-ip", "5.5.5.7")]);
        assert_eq!(
            (t.request.ip.as_deref(), t.warnings.len()),
            (Some("5.5.5.7"), 0)
        );
        let t = ok(&[
            ("network-ip", "5.5.5.7/24"),
            ("network-subnets", "5.5.5.0/24"),
        ]);
        assert_eq!(t.request.ip.as_deref(), Some("5.5.5.7"));
        assert!(t.warnings[0].contains("prefix /24 ignored"));
        // A /32 is an address, not a subnet.
        let t = ok(&[("network-ip", "5.5.5.0/32")]);
        assert_eq!(t.request.ip.as_deref(), Some("5.5.5.0"));
        assert!(t.request.subnets.is_empty());
        let t = ok(&[("network-ip", "FD00::0005")]);
        assert_eq!(t.request.ip.as_deref(), Some("fd00::5"));
        // Label order does not matter for the subnet check.
        assert_eq!(
            bad(&[
                ("network-ip", "6.6.6.6"),
                ("network-subnets", "5.5.5.0/24,fd00::/64")
            ]),
            "label network-ip: \"6.6.6.6\": 6.6.6.6 is not in network-subnets 5.5.5.0/24,fd00::/64"
        );
        assert_eq!(
            bad(&[("network-ip", "5.5.5.300")]),
            "label network-ip: \"5.5.5.300\": 5.5.5.300 is not an IP address"
        );
        assert!(bad(&[("network-ip", "0.0.0.0")]).contains("unspecified"));
    }

    #[test]
    fn floating_ip_forms_and_errors() {
        let r = ok(&[("floating-ips", "d:p:vn:pool, d:p:vn:pool6(2001:DB8::1)")]).request;
        assert_eq!(
            r.floating_ips[0],
            FloatingIp {
                pool: v(&["d", "p", "vn", "pool"]),
                address: None
            }
        );
        assert_eq!(r.floating_ips[1].address.as_deref(), Some("2001:db8::1"));

        let cases = [
            (
                "d:p:vn:pool(10.1.1.300)",
                "label floating-ips: \"d:p:vn:pool(10.1.1.300)\": 10.1.1.300 is not an IP address",
            ),
            (
                "pool(10.1.1.300)",
                "label floating-ips: \"pool(10.1.1.300)\": 10.1.1.300 is not an IP address",
            ),
            (
                "d:p:vn:pool(10.1.1.1",
                "label floating-ips: \"d:p:vn:pool(10.1.1.1\": unbalanced parentheses (expected pool(address) with the address last)",
            ),
            (
                "d:p:vn:pool10.1.1.1)",
                "label floating-ips: \"d:p:vn:pool10.1.1.1)\": unbalanced parentheses (expected pool(address) with the address last)",
            ),
            ("d:p:vn:pool((10.1.1.1))", "unbalanced parentheses"),
            ("d:p:vn:pool(10.1.1.1)x", "unbalanced parentheses"),
            ("d:p:vn:pool)10.1.1.1(", "unbalanced parentheses"),
            (
                "d:p:vn:pool()",
                "label floating-ips: \"d:p:vn:pool()\": empty address in parentheses",
            ),
            (
                "d:p:vn:pool(10.1.1.0/24)",
                "10.1.1.0/24 is not an IP address (no prefix length here)",
            ),
            (
                "d:p:pool(10.1.1.1)",
                "label floating-ips: \"d:p:pool(10.1.1.1)\": expected domain:project:network:pool, got 3 parts",
            ),
            ("d:p:vn:pool:x", "got 5 parts"),
            (
                "d::vn:pool",
                "label floating-ips: \"d::vn:pool\": empty name part",
            ),
            (
                "d:p:vn:pool,",
                "label floating-ips: \"d:p:vn:pool,\": empty item in the list",
            ),
            (
                "d:p:vn:pool(10.1.1.1),d:p:vn:pool(10.1.1.1)",
                "label floating-ips: \"d:p:vn:pool(10.1.1.1)\": given twice",
            ),
            ("d:p:vn:pool(224.1.1.1)", "224.1.1.1 is a multicast address"),
        ];
        for (value, want) in cases {
            let msg = bad(&[("floating-ips", value)]);
            assert!(msg.contains(want), "{value}: {msg}");
        }
    }

    #[test]
    fn networks_and_names_errors() {
        assert_eq!(
            bad(&[("networks", "default-project:blue")]),
            "label networks: \"default-project:blue\": expected name or domain:project:name, got 2 parts"
        );
        assert!(bad(&[("networks", "a:b:c:d")]).contains("got 4 parts"));
        assert!(bad(&[("networks", "blue,red")]).contains("only one network"));
        assert!(bad(&[("networks", "d: :blue")]).contains("empty name part"));
        assert_eq!(
            bad(&[("project-name", "dom:proj")]),
            "label project-name: \"dom:proj\": a name cannot contain ':'"
        );
        assert!(bad(&[("domain-name", "a:b")]).contains("cannot contain ':'"));
        assert_eq!(
            bad(&[("domain-name", "   ")]),
            "label domain-name: empty value"
        );
        assert_eq!(bad(&[("networks", "")]), "label networks: empty value");
        // Trimmed on the way in.
        let r = ok(&[("networks", " d : p : blue "), ("project-name", " p ")]).request;
        assert_eq!(r.network, Some(v(&["d", "p", "blue"])));
        assert_eq!(r.project.as_deref(), Some("p"));
    }

    #[test]
    fn subnet_and_security_group_errors() {
        assert_eq!(
            bad(&[("network-subnets", "5.5.5.1/24")]),
            "label network-subnets: \"5.5.5.1/24\": 5.5.5.1/24 has host bits set (the subnet is 5.5.5.0/24)"
        );
        assert!(bad(&[("network-subnets", "5.5.5.0")]).contains("no prefix length"));
        assert!(bad(&[("network-subnets", "5.5.5.0/33")]).contains("/33 is not a prefix length"));
        assert!(bad(&[("network-subnets", "fd00::/129")]).contains("0..=128"));
        assert!(bad(&[("network-subnets", "5.5.5.0/24,,6.6.6.0/24")]).contains("empty item"));
        assert!(
            bad(&[("network-subnets", "5.5.5.0/24, 5.5.5.0/24")])
                .contains("5.5.5.0/24 is given twice")
        );
        assert!(bad(&[("security-groups", "d:p:sg,d:p:sg")]).contains("\"d:p:sg\": given twice"));
        assert!(bad(&[("security-groups", "p:sg")]).contains("got 2 parts"));
    }

    #[test]
    fn duplicate_vocabulary_labels_rejected_others_pass_through() {
        assert_eq!(
            bad(&[("networks", "a"), ("networks", "b")]),
            "label networks: given more than once"
        );
        let r = ok(&[
            ("CNI_ARGS", "IP=1.2.3.4"),
            ("networks", "blue"),
            ("HAPROXY_GROUP", " external "),
            ("HAPROXY_GROUP", "internal"),
        ])
        .request;
        assert_eq!(
            r.other,
            vec![
                Label::new("CNI_ARGS", "IP=1.2.3.4"),
                Label::new("HAPROXY_GROUP", " external "),
                Label::new("HAPROXY_GROUP", "internal"),
            ]
        );
    }

    #[test]
    fn no_labels_is_an_empty_request() {
        assert_eq!(ok(&[]), Translation::default());
    }
}
