//! The one adapter between the Contrail path and its Wasm plugins' records: the label
//! translator's `contrail-request` → [`contrail_mesos_api::ContrailRequest`] (checked with the
//! api's own `validate`), and the IPAM plugin's `ip-config` → [`IpamConfig`], checked before
//! anything touches the node. A bad answer is a CNI error naming the plugin and the field.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::cni::config::WasmSettings;
use crate::cni::error::{CniError, WASM_MALFORMED};
use crate::cni::result::{Dns, IpConfig, Route};
use crate::wasm::runtime::escape;
use crate::wasm::{IpamConfig, Named, contrail_wit, ipam_wit};

/// Bounds on the parts of a DNS answer that have no setting of their own.
const MAX_SEARCH: usize = 16;
const MAX_OPTIONS: usize = 16;
/// Bounds on a label translation's lists.
const MAX_LIST: usize = 64;

fn bad(plugin: &str, field: &str, why: impl std::fmt::Display) -> CniError {
    CniError::new(
        WASM_MALFORMED,
        format!(
            "Wasm plugin {plugin} answered a bad {field}: {}",
            escape(&why.to_string(), 512)
        ),
    )
}

/// The translator's record → the attachment API's request, checked.
pub fn contrail_request(
    r: Named<contrail_wit::ContrailRequest>,
    limits: &WasmSettings,
) -> Result<contrail_mesos_api::ContrailRequest, CniError> {
    let (plugin, r) = (r.plugin, r.answer);
    let size: usize = r.domain.as_ref().map_or(0, String::len)
        + r.project.as_ref().map_or(0, String::len)
        + r.network.iter().flatten().map(String::len).sum::<usize>()
        + r.subnets.iter().map(|s| s.cidr.len()).sum::<usize>()
        + r.ip.as_ref().map_or(0, String::len)
        + r.floating_ips
            .iter()
            .map(|f| {
                f.pool.iter().map(String::len).sum::<usize>()
                    + f.address.as_ref().map_or(0, String::len)
            })
            .sum::<usize>()
        + r.security_groups
            .iter()
            .flatten()
            .map(String::len)
            .sum::<usize>()
        + r.other
            .iter()
            .map(|l| l.key.len() + l.value.len())
            .sum::<usize>();
    if size as u64 > limits.max_answer_bytes {
        return Err(bad(
            &plugin,
            "contrail-request",
            format!(
                "{size} bytes (at most {}, wasm.max-answer-bytes)",
                limits.max_answer_bytes
            ),
        ));
    }
    for (field, n) in [
        ("subnets", r.subnets.len()),
        ("floating-ips", r.floating_ips.len()),
        ("security-groups", r.security_groups.len()),
        ("other", r.other.len()),
    ] {
        if n > MAX_LIST {
            return Err(bad(
                &plugin,
                field,
                format!("{n} entries (at most {MAX_LIST})"),
            ));
        }
    }
    let req = contrail_mesos_api::ContrailRequest {
        domain: r.domain,
        project: r.project,
        network: r.network,
        subnets: r.subnets.into_iter().map(|s| s.cidr).collect(),
        ip: r.ip,
        floating_ips: r
            .floating_ips
            .into_iter()
            .map(|f| contrail_mesos_api::FloatingIpRequest {
                pool: f.pool,
                address: f.address,
            })
            .collect(),
        security_groups: r.security_groups,
        isolation: r.isolation.map(|i| match i {
            contrail_wit::Isolation::Cluster => contrail_mesos_api::Isolation::Cluster,
            contrail_wit::Isolation::Group => contrail_mesos_api::Isolation::Group,
            contrail_wit::Isolation::App => contrail_mesos_api::Isolation::App,
            contrail_wit::Isolation::UserDefined => contrail_mesos_api::Isolation::UserDefined,
        }),
        other: r
            .other
            .into_iter()
            .map(|l| contrail_mesos_api::Label {
                key: l.key,
                value: l.value,
            })
            .collect(),
    };
    req.validate()
        .map_err(|e| bad(&plugin, e.field, e.reason))?;
    Ok(req)
}

fn parse_ip(plugin: &str, field: &str, s: &str) -> Result<IpAddr, CniError> {
    s.parse::<IpAddr>()
        .map_err(|_| bad(plugin, field, format!("{s:?} is not an IP address")))
}

fn is_link_local(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The IPAM plugin's answer → what the host configures, checked: CIDR addresses usable on an
/// interface, each gateway reachable (inside its address's subnet, link-local, or behind an
/// on-link host route in the same answer) and not the address itself, route next hops
/// reachable the same way, every count and the total size bounded.
pub fn ipam_config(
    a: Named<ipam_wit::IpConfig>,
    limits: &WasmSettings,
) -> Result<IpamConfig, CniError> {
    let (plugin, r) = (a.plugin.as_str(), a.answer);
    let size: usize = r
        .ips
        .iter()
        .map(|i| i.address.len() + i.gateway.as_ref().map_or(0, String::len))
        .sum::<usize>()
        + r.routes
            .iter()
            .map(|rt| rt.dst.len() + rt.gw.as_ref().map_or(0, String::len))
            .sum::<usize>()
        + r.dns
            .nameservers
            .iter()
            .chain(&r.dns.search)
            .chain(&r.dns.options)
            .map(String::len)
            .sum::<usize>()
        + r.dns.domain.as_ref().map_or(0, String::len);
    if r.ips.is_empty() {
        return Err(bad(plugin, "ips", "no address"));
    }
    for (field, n, max) in [
        ("ips", r.ips.len() as u64, limits.max_ips),
        ("routes", r.routes.len() as u64, limits.max_routes),
        (
            "dns.nameservers",
            r.dns.nameservers.len() as u64,
            limits.max_nameservers,
        ),
        ("dns.search", r.dns.search.len() as u64, MAX_SEARCH as u64),
        (
            "dns.options",
            r.dns.options.len() as u64,
            MAX_OPTIONS as u64,
        ),
    ] {
        if n > max {
            return Err(bad(plugin, field, format!("{n} entries (at most {max})")));
        }
    }
    if size as u64 > limits.max_answer_bytes {
        return Err(bad(
            plugin,
            "ip-config",
            format!(
                "{size} bytes (at most {}, wasm.max-answer-bytes)",
                limits.max_answer_bytes
            ),
        ));
    }
    let mut out = IpamConfig::default();
    let mut nets: Vec<IpNet> = Vec::new();
    for a in &r.ips {
        let net: IpNet = a.address.parse().map_err(|_| {
            bad(
                plugin,
                "ips.address",
                format!("{:?} is not CIDR", a.address),
            )
        })?;
        let addr = net.addr();
        if addr.is_unspecified()
            || addr.is_multicast()
            || addr.is_loopback()
            || addr == IpAddr::from([255, 255, 255, 255])
        {
            return Err(bad(
                plugin,
                "ips.address",
                format!("{:?} cannot be an interface address", a.address),
            ));
        }
        if nets.iter().any(|n| n.addr() == addr) {
            return Err(bad(plugin, "ips.address", format!("{addr} given twice")));
        }
        nets.push(net);
    }
    // On-link host routes (`<gw>/32` or `/128` without a next hop) make a gateway reachable.
    let mut host_routes: Vec<IpAddr> = Vec::new();
    let mut routes: Vec<(IpNet, Option<IpAddr>)> = Vec::new();
    for rt in &r.routes {
        let dst: IpNet = rt
            .dst
            .parse()
            .map_err(|_| bad(plugin, "routes.dst", format!("{:?} is not CIDR", rt.dst)))?;
        if dst.trunc() != dst {
            return Err(bad(
                plugin,
                "routes.dst",
                format!("{:?} has host bits set", rt.dst),
            ));
        }
        let gw = rt
            .gw
            .as_deref()
            .map(|g| parse_ip(plugin, "routes.gw", g))
            .transpose()?;
        // Two routes to one destination would fail in netlink (EEXIST) half-way through.
        if routes.iter().any(|(d, _)| *d == dst) {
            return Err(bad(plugin, "routes.dst", format!("{dst} given twice")));
        }
        if gw.is_none() && dst.prefix_len() == dst.max_prefix_len() {
            host_routes.push(dst.addr());
        }
        routes.push((dst, gw));
    }
    let reachable = |g: IpAddr| {
        is_link_local(g)
            || host_routes.contains(&g)
            || nets.iter().any(|n| n.contains(&g) && n.addr() != g)
    };
    for (a, net) in r.ips.iter().zip(&nets) {
        let gateway = match &a.gateway {
            None => None,
            Some(g) => {
                let g = parse_ip(plugin, "ips.gateway", g)?;
                if g.is_ipv4() != net.addr().is_ipv4() {
                    return Err(bad(
                        plugin,
                        "ips.gateway",
                        format!("{g} is not of the family of {net}"),
                    ));
                }
                if g == net.addr() {
                    return Err(bad(
                        plugin,
                        "ips.gateway",
                        format!("{g} is the address itself"),
                    ));
                }
                if !(net.contains(&g) || is_link_local(g) || host_routes.contains(&g)) {
                    return Err(bad(
                        plugin,
                        "ips.gateway",
                        format!("{g} is outside the subnet {}", net.trunc()),
                    ));
                }
                Some(g)
            }
        };
        out.ips.push(IpConfig {
            interface: None,
            address: *net,
            gateway,
        });
    }
    for (dst, gw) in routes {
        if let Some(g) = gw {
            if g.is_ipv4() != dst.addr().is_ipv4() {
                return Err(bad(
                    plugin,
                    "routes.gw",
                    format!("{g} is not of the family of {dst}"),
                ));
            }
            if !g.is_unspecified() && !reachable(g) {
                return Err(bad(
                    plugin,
                    "routes.gw",
                    format!("next hop {g} of {dst} is not on a subnet of the interface"),
                ));
            }
        } else if dst.prefix_len() == 0
            && !nets
                .iter()
                .any(|n| n.addr().is_ipv4() == dst.addr().is_ipv4())
        {
            return Err(bad(
                plugin,
                "routes.dst",
                format!("default route {dst} without an address of its family"),
            ));
        }
        out.routes.push(Route::new(dst, gw));
    }
    for ns in &r.dns.nameservers {
        parse_ip(plugin, "dns.nameservers", ns)?;
    }
    let text_ok = |s: &String| {
        !s.is_empty() && s.len() <= 253 && !s.chars().any(|c| c.is_control() || c.is_whitespace())
    };
    for (field, list) in [
        ("dns.search", &r.dns.search),
        ("dns.options", &r.dns.options),
    ] {
        if let Some(s) = list.iter().find(|s| !text_ok(s)) {
            return Err(bad(plugin, field, format!("{s:?} is not a name")));
        }
    }
    let domain = r.dns.domain.filter(|d| !d.is_empty());
    if let Some(d) = domain.as_ref().filter(|d| !text_ok(d)) {
        return Err(bad(plugin, "dns.domain", format!("{d:?} is not a name")));
    }
    out.dns = Dns {
        nameservers: r.dns.nameservers,
        domain,
        search: r.dns.search,
        options: r.dns.options,
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(
        ips: &[(&str, Option<&str>)],
        routes: &[(&str, Option<&str>)],
    ) -> Named<ipam_wit::IpConfig> {
        Named {
            plugin: "ipam.wasm".into(),
            answer: ipam_wit::IpConfig {
                ips: ips
                    .iter()
                    .map(|(a, g)| ipam_wit::IpAddress {
                        address: (*a).into(),
                        gateway: g.map(Into::into),
                    })
                    .collect(),
                routes: routes
                    .iter()
                    .map(|(d, g)| ipam_wit::Route {
                        dst: (*d).into(),
                        gw: g.map(Into::into),
                    })
                    .collect(),
                dns: ipam_wit::Dns {
                    nameservers: vec![],
                    domain: None,
                    search: vec![],
                    options: vec![],
                },
            },
        }
    }

    fn err(a: Named<ipam_wit::IpConfig>) -> CniError {
        ipam_config(a, &WasmSettings::default()).unwrap_err()
    }

    #[test]
    fn good_answers_pass() {
        let s = WasmSettings::default();
        ipam_config(
            answer(
                &[("10.1.2.3/24", Some("10.1.2.1"))],
                &[("0.0.0.0/0", Some("10.1.2.1"))],
            ),
            &s,
        )
        .unwrap();
        // v6 without a prefix: /128 plus an on-link host route to the gateway (contrail-ipam).
        ipam_config(
            answer(
                &[("fd00::5/128", Some("fd00::1"))],
                &[("fd00::1/128", None), ("::/0", Some("fd00::1"))],
            ),
            &s,
        )
        .unwrap();
        ipam_config(
            answer(
                &[("fd00::5/64", Some("fe80::1"))],
                &[("::/0", Some("fe80::1"))],
            ),
            &s,
        )
        .unwrap();
    }

    #[test]
    fn a_gateway_outside_the_subnet_is_refused() {
        let e = err(answer(
            &[("10.1.2.3/24", Some("192.168.9.1"))],
            &[("0.0.0.0/0", Some("192.168.9.1"))],
        ));
        assert_eq!(e.code, WASM_MALFORMED);
        assert!(
            e.msg.contains("ipam.wasm")
                && e.msg.contains("ips.gateway")
                && e.msg.contains("outside"),
            "{e:?}"
        );
        let e = err(answer(
            &[("10.1.2.3/24", None)],
            &[("0.0.0.0/0", Some("192.168.9.1"))],
        ));
        assert!(e.msg.contains("routes.gw"), "{e:?}");
        let e = err(answer(&[("10.1.2.3/24", Some("10.1.2.3"))], &[]));
        assert!(e.msg.contains("address itself"), "{e:?}");
    }

    #[test]
    fn counts_and_sizes_are_bounded() {
        let ips: Vec<String> = (0..17).map(|i| format!("10.1.2.{}/24", i + 2)).collect();
        let ips: Vec<(&str, Option<&str>)> = ips.iter().map(|s| (s.as_str(), None)).collect();
        let e = err(answer(&ips, &[]));
        assert!(
            e.msg.contains("ips") && e.msg.contains("17 entries"),
            "{e:?}"
        );
        let routes: Vec<String> = (0..65).map(|i| format!("10.9.{i}.0/24")).collect();
        let routes: Vec<(&str, Option<&str>)> = routes.iter().map(|s| (s.as_str(), None)).collect();
        let e = err(answer(&[("10.1.2.3/24", None)], &routes));
        assert!(e.msg.contains("routes"), "{e:?}");
        let mut a = answer(&[("10.1.2.3/24", None)], &[]);
        a.answer.dns.nameservers = vec!["10.0.0.1".into(); 9];
        assert!(err(a).msg.contains("dns.nameservers"));
        let mut a = answer(&[("10.1.2.3/24", None)], &[]);
        a.answer.dns.search = vec!["x".repeat(5000); 16];
        assert!(err(a).msg.contains("bytes"));
    }

    #[test]
    fn malformed_values_name_the_field() {
        for (a, field) in [
            (answer(&[("not-an-ip/99", None)], &[]), "ips.address"),
            (answer(&[("0.0.0.0/0", None)], &[]), "ips.address"),
            (answer(&[("10.1.2.3/24", Some("nope"))], &[]), "ips.gateway"),
            (
                answer(&[("10.1.2.3/24", None)], &[("10.0.0.1/8", None)]),
                "routes.dst",
            ),
            (answer(&[], &[]), "ips"),
            (
                answer(
                    &[("10.1.2.3/24", None)],
                    &[("10.9.0.0/16", None), ("10.9.0.0/16", None)],
                ),
                "routes.dst",
            ),
        ] {
            let e = err(a);
            assert!(e.msg.contains(field), "{field}: {e:?}");
        }
    }
}
