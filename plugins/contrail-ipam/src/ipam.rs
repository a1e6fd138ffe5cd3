//! vRouter agent port answer + network config → CNI IP configuration.
//!
//! Rules (the README repeats them for operators):
//! * Empty strings and the unspecified address (`0.0.0.0`, `::`) in the agent's optional
//!   fields mean "absent": the agent leaves a gateway or DNS server at zero when the subnet has
//!   none, and a zero next hop would be a broken route.
//! * IPv4: `ip-address` needs `plen` (0..=32); a `gateway` must lie inside `ip/plen` and differ
//!   from the address.
//! * IPv6: `v6-plen` (0..=128) is used when sent, with the same gateway rule (a link-local
//!   gateway is always accepted: it is on-link by definition). When the agent sends no
//!   `v6-plen`, the address gets **/128** and, if there is a (non-link-local) `v6-gateway`, an
//!   on-link host route `<v6-gateway>/128` comes first in the routes so the gateway is reachable.
//!   Guessing /64 could claim on-link neighbours that are not; /128 + host route is correct for
//!   any real prefix because the vRouter routes everything in the VN anyway.
//! * Neither IPv4 nor IPv6: error 7 "agent sent no address for port <id>".
//! * Routes: on the primary interface only, `0.0.0.0/0` via `gateway` and `::/0` via
//!   `v6-gateway` (when there is one). `ipam.routes` of the config (`[{dst, gw?}]`, CNI's
//!   format) apply to every interface; a missing `gw` means the family's gateway (CNI: "a
//!   default gateway is assumed"), or on-link when there is none; `gw` `0.0.0.0`/`::` means
//!   on-link (the classic Mesos delegate example writes it that way). A config route for `0.0.0.0/0` or `::/0`
//!   replaces the generated default route instead of duplicating it (the kernel would refuse a
//!   second one with EEXIST).
//! * DNS: nameservers `dns-server`, then `v6-dns-server`, then the config's `dns.nameservers`
//!   without repeats; `domain`, `search`, `options` from the config's `dns`.
//!
//! Errors: code 6 when the config is not JSON, code 7 for everything else.

#[allow(unused_imports)]
use guest_support::prelude::*;

use core::net::IpAddr;
use guest_support::Json;
use ipnet::IpNet;

pub const DECODE_FAILED: u32 = 6;
pub const INVALID_CONFIG: u32 = 7;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl PluginError {
    fn new(code: u32, msg: impl Into<String>) -> Self {
        PluginError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    fn invalid(msg: impl Into<String>) -> Self {
        Self::new(INVALID_CONFIG, msg)
    }
}

/// Mirrors the WIT `vrouter-port`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Port {
    pub id: String,
    pub ip_address: Option<String>,
    pub plen: Option<u32>,
    pub gateway: Option<String>,
    pub dns_server: Option<String>,
    pub mac_address: Option<String>,
    pub v6_ip_address: Option<String>,
    pub v6_plen: Option<u32>,
    pub v6_gateway: Option<String>,
    pub v6_dns_server: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAddress {
    pub address: String,
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: String,
    pub gw: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub ips: Vec<IpAddress>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(addr: IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn max_plen(self) -> u32 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    fn default_dst(self) -> IpNet {
        match self {
            Family::V4 => "0.0.0.0/0".parse().expect("literal"),
            Family::V6 => "::/0".parse().expect("literal"),
        }
    }

    /// The agent's field names, for messages that point at the offending field.
    fn fields(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Family::V4 => ("ip-address", "plen", "gateway", "dns-server"),
            Family::V6 => ("v6-ip-address", "v6-plen", "v6-gateway", "v6-dns-server"),
        }
    }
}

/// One address family of the port, validated.
#[derive(Debug)]
struct Iface {
    family: Family,
    net: IpNet,
    gateway: Option<IpAddr>,
    /// v6 without `v6-plen`: the gateway needs an on-link host route.
    gateway_needs_host_route: bool,
}

fn present(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Parse an optional agent address of `family`; unspecified counts as absent.
fn agent_addr(
    port: &Port,
    family: Family,
    field: &str,
    value: &Option<String>,
) -> Result<Option<IpAddr>, PluginError> {
    let Some(s) = present(value) else {
        return Ok(None);
    };
    let addr: IpAddr = s
        .parse()
        .ok()
        .filter(|a| Family::of(*a) == family)
        .ok_or_else(|| {
            PluginError::invalid(format!(
                "port {}: {field} \"{s}\" is not an {} address",
                port.id,
                family.name()
            ))
        })?;
    Ok((!addr.is_unspecified()).then_some(addr))
}

fn iface(port: &Port, family: Family) -> Result<Option<Iface>, PluginError> {
    let (f_ip, f_plen, f_gw, _) = family.fields();
    let (ip, plen, gw) = match family {
        Family::V4 => (&port.ip_address, port.plen, &port.gateway),
        Family::V6 => (&port.v6_ip_address, port.v6_plen, &port.v6_gateway),
    };
    let Some(addr) = agent_addr(port, family, f_ip, ip)? else {
        // Without an address the other fields of the family say nothing useful.
        return Ok(None);
    };
    let bad = |why: String| PluginError::invalid(format!("port {}: {why}", port.id));
    if addr.is_multicast() || matches!(addr, IpAddr::V4(a) if a.is_broadcast()) {
        return Err(bad(format!("{f_ip} {addr} cannot be an interface address")));
    }
    let (plen, defaulted) = match (plen, family) {
        (Some(p), _) if p <= family.max_plen() => (p, false),
        (Some(p), _) => {
            return Err(bad(format!(
                "{f_plen} {p} is out of range 0..={}",
                family.max_plen()
            )));
        }
        (None, Family::V4) => return Err(bad(format!("{f_ip} {addr} came without {f_plen}"))),
        (None, Family::V6) => (128, true),
    };
    let net = IpNet::new(addr, plen as u8).expect("plen range-checked");
    let gateway = agent_addr(port, family, f_gw, gw)?;
    let mut gateway_needs_host_route = false;
    if let Some(g) = gateway {
        let link_local = matches!(g, IpAddr::V6(v6) if v6.is_unicast_link_local());
        if g == addr {
            return Err(bad(format!("{f_gw} {g} is the interface's own address")));
        }
        if defaulted {
            gateway_needs_host_route = !link_local;
        } else if !link_local && !net.contains(&g) {
            return Err(bad(format!(
                "{f_gw} {g} is outside the subnet {} of {net}",
                net.trunc()
            )));
        }
    }
    Ok(Some(Iface {
        family,
        net,
        gateway,
        gateway_needs_host_route,
    }))
}

/// Compute the interface configuration. `config` is the whole network configuration (JSON).
pub fn configure(config: &str, port: &Port, primary: bool) -> Result<IpConfig, PluginError> {
    let config = Json::parse(config).map_err(|e| {
        PluginError::new(
            DECODE_FAILED,
            format!("network config: not valid JSON: {e}"),
        )
    })?;
    if config.as_object().is_none() {
        return Err(PluginError::new(
            DECODE_FAILED,
            "network config: must be a JSON object",
        ));
    }

    let ifaces: Vec<Iface> = [iface(port, Family::V4)?, iface(port, Family::V6)?]
        .into_iter()
        .flatten()
        .collect();
    if ifaces.is_empty() {
        return Err(PluginError::invalid(format!(
            "agent sent no address for port {}",
            port.id
        )));
    }
    let by_family = |f: Family| ifaces.iter().find(|i| i.family == f);

    let ips = ifaces
        .iter()
        .map(|i| IpAddress {
            address: i.net.to_string(),
            gateway: i.gateway.map(|g| g.to_string()),
        })
        .collect();

    let config_routes = config_routes(&config, port, &by_family)?;
    let mut routes = Vec::new();
    for i in &ifaces {
        if let (Some(g), true) = (i.gateway, i.gateway_needs_host_route) {
            routes.push(Route {
                dst: IpNet::from(g).to_string(),
                gw: None,
            });
        }
    }
    if primary {
        for i in &ifaces {
            let dst = i.family.default_dst();
            if let Some(g) = i.gateway
                && !config_routes.iter().any(|(d, _)| *d == dst)
            {
                routes.push(Route {
                    dst: dst.to_string(),
                    gw: Some(g.to_string()),
                });
            }
        }
    }
    routes.extend(config_routes.into_iter().map(|(dst, gw)| Route {
        dst: dst.to_string(),
        gw: gw.map(|g| g.to_string()),
    }));

    let dns = dns(&config, port, &by_family)?;
    Ok(IpConfig { ips, routes, dns })
}

/// `ipam.routes` of the config, validated, with the gateway each one will use.
fn config_routes<'a>(
    config: &Json,
    port: &Port,
    by_family: &impl Fn(Family) -> Option<&'a Iface>,
) -> Result<Vec<(IpNet, Option<IpAddr>)>, PluginError> {
    let ipam = match config.get("ipam") {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(v @ Json::Object(_)) => v,
        Some(other) => {
            return Err(PluginError::invalid(format!(
                "network config: \"ipam\" must be an object, got {other}"
            )));
        }
    };
    let list = match ipam.get("routes") {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Array(list)) => list,
        Some(other) => {
            return Err(PluginError::invalid(format!(
                "network config: \"ipam.routes\" must be a list, got {other}"
            )));
        }
    };
    let mut out: Vec<(IpNet, Option<IpAddr>)> = Vec::new();
    for (n, r) in list.iter().enumerate() {
        let bad =
            |why: String| PluginError::invalid(format!("network config: ipam.routes[{n}]: {why}"));
        let dst_s = r
            .get("dst")
            .and_then(Json::as_str)
            .ok_or_else(|| bad(format!("needs a string \"dst\", got {r}")))?;
        let dst: IpNet = dst_s
            .parse()
            .map_err(|_| bad(format!("dst \"{dst_s}\" is not a CIDR (e.g. 10.2.0.0/16)")))?;
        if dst.addr() != dst.network() {
            return Err(bad(format!(
                "dst \"{dst_s}\" has host bits set (did you mean {}?)",
                dst.trunc()
            )));
        }
        let family = Family::of(dst.addr());
        let Some(iface) = by_family(family) else {
            return Err(bad(format!(
                "dst {dst} is {} but the agent gave port {} no {} address",
                family.name(),
                port.id,
                family.name()
            )));
        };
        let gw = match r.get("gw") {
            None | Some(Json::Null) => iface.gateway,
            Some(Json::String(s)) => {
                let g: IpAddr = s
                    .parse()
                    .map_err(|_| bad(format!("gw \"{s}\" is not an IP address")))?;
                if Family::of(g) != family {
                    return Err(bad(format!(
                        "gw {g} is not {} like dst {dst}",
                        family.name()
                    )));
                }
                (!g.is_unspecified()).then_some(g)
            }
            Some(other) => return Err(bad(format!("gw must be a string, got {other}"))),
        };
        if out.iter().any(|(d, _)| *d == dst) {
            return Err(bad(format!("dst {dst} is listed twice")));
        }
        out.push((dst, gw));
    }
    Ok(out)
}

fn string_list(v: Option<&Json>, what: &str) -> Result<Vec<String>, PluginError> {
    match v {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| {
                    PluginError::invalid(format!(
                        "network config: \"{what}\" must be a list of strings, got {i} in it"
                    ))
                })
            })
            .collect(),
        Some(other) => Err(PluginError::invalid(format!(
            "network config: \"{what}\" must be a list of strings, got {other}"
        ))),
    }
}

fn dns<'a>(
    config: &Json,
    port: &Port,
    by_family: &impl Fn(Family) -> Option<&'a Iface>,
) -> Result<Dns, PluginError> {
    let mut nameservers: Vec<IpAddr> = Vec::new();
    for family in [Family::V4, Family::V6] {
        // A DNS server of a family the interface has no address in would be unreachable.
        if by_family(family).is_none() {
            continue;
        }
        let (_, _, _, field) = family.fields();
        let value = match family {
            Family::V4 => &port.dns_server,
            Family::V6 => &port.v6_dns_server,
        };
        if let Some(a) = agent_addr(port, family, field, value)?
            && !nameservers.contains(&a)
        {
            nameservers.push(a);
        }
    }
    let mut dns = Dns::default();
    match config.get("dns") {
        None | Some(Json::Null) => {}
        Some(Json::Object(d)) => {
            for s in string_list(d.get("nameservers"), "dns.nameservers")? {
                let a: IpAddr = s.trim().parse().map_err(|_| {
                    PluginError::invalid(format!(
                        "network config: dns.nameservers: \"{s}\" is not an IP address"
                    ))
                })?;
                if !nameservers.contains(&a) {
                    nameservers.push(a);
                }
            }
            dns.domain = match d.get("domain") {
                None | Some(Json::Null) => None,
                Some(Json::String(s)) if s.trim().is_empty() => None,
                Some(Json::String(s)) => Some(s.trim().to_string()),
                Some(other) => {
                    return Err(PluginError::invalid(format!(
                        "network config: \"dns.domain\" must be a string, got {other}"
                    )));
                }
            };
            dns.search = string_list(d.get("search"), "dns.search")?;
            dns.options = string_list(d.get("options"), "dns.options")?;
        }
        Some(other) => {
            return Err(PluginError::invalid(format!(
                "network config: \"dns\" must be an object, got {other}"
            )));
        }
    }
    dns.nameservers = nameservers.iter().map(ToString::to_string).collect();
    Ok(dns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6f3c2c1e-0d7a-4b1f-9a53-0a1f2e3d4c5b";

    /// The agent's answer as the port-IPC API sends it.
    fn v4_port() -> Port {
        Port {
            id: ID.into(),
            ip_address: Some("10.47.255.250".into()),
            plen: Some(12),
            gateway: Some("10.47.255.254".into()),
            dns_server: Some("10.47.255.253".into()),
            mac_address: Some("02:6f:3c:2c:1e:0d".into()),
            ..Port::default()
        }
    }

    fn v6_port() -> Port {
        Port {
            id: ID.into(),
            v6_ip_address: Some("FD00:0:0:1::5".into()),
            v6_plen: Some(64),
            v6_gateway: Some("fd00:0:0:1::1".into()),
            v6_dns_server: Some("fd00:0:0:1::2".into()),
            ..Port::default()
        }
    }

    fn dual_port() -> Port {
        Port {
            v6_ip_address: v6_port().v6_ip_address,
            v6_plen: v6_port().v6_plen,
            v6_gateway: v6_port().v6_gateway,
            v6_dns_server: v6_port().v6_dns_server,
            ..v4_port()
        }
    }

    const CONF: &str =
        r#"{"cniVersion":"0.3.1","name":"contrail-cni-plugin","type":"contrail-cni-plugin"}"#;

    fn route(dst: &str, gw: Option<&str>) -> Route {
        Route {
            dst: dst.into(),
            gw: gw.map(Into::into),
        }
    }

    fn err(config: &str, port: &Port) -> PluginError {
        let e = configure(config, port, true).unwrap_err();
        assert_eq!(e.code, 7, "{}", e.msg);
        e
    }

    #[test]
    fn ipv4_primary_gets_default_route_and_dns() {
        let c = configure(CONF, &v4_port(), true).unwrap();
        assert_eq!(
            c.ips,
            vec![IpAddress {
                address: "10.47.255.250/12".into(),
                gateway: Some("10.47.255.254".into())
            }]
        );
        assert_eq!(c.routes, vec![route("0.0.0.0/0", Some("10.47.255.254"))]);
        assert_eq!(
            c.dns,
            Dns {
                nameservers: vec!["10.47.255.253".into()],
                ..Dns::default()
            }
        );
    }

    #[test]
    fn secondary_interface_gets_no_default_route() {
        let c = configure(CONF, &dual_port(), false).unwrap();
        assert!(c.routes.is_empty(), "{:?}", c.routes);
        assert_eq!(c.ips.len(), 2);
    }

    #[test]
    fn ipv6_only() {
        let c = configure(CONF, &v6_port(), true).unwrap();
        assert_eq!(
            c.ips,
            vec![IpAddress {
                address: "fd00:0:0:1::5/64".into(),
                gateway: Some("fd00:0:0:1::1".into())
            }]
        );
        assert_eq!(c.routes, vec![route("::/0", Some("fd00:0:0:1::1"))]);
        assert_eq!(c.dns.nameservers, vec!["fd00:0:0:1::2"]);
    }

    #[test]
    fn dual_stack_primary() {
        let c = configure(CONF, &dual_port(), true).unwrap();
        let addrs: Vec<&str> = c.ips.iter().map(|i| i.address.as_str()).collect();
        assert_eq!(addrs, ["10.47.255.250/12", "fd00:0:0:1::5/64"]);
        assert_eq!(
            c.routes,
            vec![
                route("0.0.0.0/0", Some("10.47.255.254")),
                route("::/0", Some("fd00:0:0:1::1"))
            ]
        );
        assert_eq!(c.dns.nameservers, vec!["10.47.255.253", "fd00:0:0:1::2"]);
    }

    #[test]
    fn missing_v6_plen_gives_128_and_on_link_route_to_gateway() {
        let port = Port {
            v6_plen: None,
            ..v6_port()
        };
        let c = configure(CONF, &port, true).unwrap();
        assert_eq!(c.ips[0].address, "fd00:0:0:1::5/128");
        assert_eq!(c.ips[0].gateway.as_deref(), Some("fd00:0:0:1::1"));
        assert_eq!(
            c.routes,
            vec![
                route("fd00:0:0:1::1/128", None),
                route("::/0", Some("fd00:0:0:1::1"))
            ]
        );
        // The host route is needed on a secondary interface too (config routes may use it).
        let c = configure(CONF, &port, false).unwrap();
        assert_eq!(c.routes, vec![route("fd00:0:0:1::1/128", None)]);
        // A link-local gateway is on-link already.
        let port = Port {
            v6_gateway: Some("fe80::1".into()),
            ..port
        };
        let c = configure(CONF, &port, true).unwrap();
        assert_eq!(c.routes, vec![route("::/0", Some("fe80::1"))]);
    }

    #[test]
    fn zero_or_empty_gateway_and_dns_mean_absent() {
        let port = Port {
            gateway: Some("0.0.0.0".into()),
            dns_server: Some("".into()),
            ..v4_port()
        };
        let c = configure(CONF, &port, true).unwrap();
        assert_eq!(c.ips[0].gateway, None);
        assert!(c.routes.is_empty());
        assert!(c.dns.nameservers.is_empty());
        // An empty v6 address is "no IPv6", not an error.
        let port = Port {
            v6_ip_address: Some(String::new()),
            ..v4_port()
        };
        assert_eq!(configure(CONF, &port, true).unwrap().ips.len(), 1);
    }

    #[test]
    fn config_routes_apply_to_every_interface() {
        let conf = r#"{"name":"n","ipam":{"routes":[
            {"dst":"192.168.0.0/16"},
            {"dst":"172.16.0.0/12","gw":"10.47.0.1"},
            {"dst":"192.168.122.22/32","gw":"0.0.0.0"},
            {"dst":"FD10::/48"}]}}"#;
        let c = configure(conf, &dual_port(), false).unwrap();
        assert_eq!(
            c.routes,
            vec![
                route("192.168.0.0/16", Some("10.47.255.254")),
                route("172.16.0.0/12", Some("10.47.0.1")),
                route("192.168.122.22/32", None),
                route("fd10::/48", Some("fd00:0:0:1::1")),
            ]
        );
        let c = configure(conf, &dual_port(), true).unwrap();
        assert_eq!(c.routes.len(), 6);
        assert_eq!(c.routes[0], route("0.0.0.0/0", Some("10.47.255.254")));
    }

    #[test]
    fn config_default_route_replaces_the_generated_one() {
        let conf = r#"{"ipam":{"routes":[{"dst":"0.0.0.0/0","gw":"10.47.0.1"}]}}"#;
        let c = configure(conf, &v4_port(), true).unwrap();
        assert_eq!(c.routes, vec![route("0.0.0.0/0", Some("10.47.0.1"))]);
    }

    #[test]
    fn bad_config_routes() {
        let cases = [
            (
                r#"{"ipam":{"routes":[{"dst":"10.1.1.1/24"}]}}"#,
                "ipam.routes[0]: dst \"10.1.1.1/24\" has host bits set (did you mean 10.1.1.0/24?)",
            ),
            (
                r#"{"ipam":{"routes":[{"dst":"10.1.1.0"}]}}"#,
                "is not a CIDR",
            ),
            (
                r#"{"ipam":{"routes":[{"gw":"10.1.1.1"}]}}"#,
                "needs a string \"dst\"",
            ),
            (
                r#"{"ipam":{"routes":[{"dst":"10.1.0.0/16","gw":"fd00::1"}]}}"#,
                "gw fd00::1 is not IPv4 like dst 10.1.0.0/16",
            ),
            (
                r#"{"ipam":{"routes":[{"dst":"10.1.0.0/16","gw":"x"}]}}"#,
                "gw \"x\" is not an IP address",
            ),
            (
                r#"{"ipam":{"routes":[{"dst":"10.1.0.0/16"},{"dst":"10.1.0.0/16"}]}}"#,
                "ipam.routes[1]: dst 10.1.0.0/16 is listed twice",
            ),
            (
                r#"{"ipam":{"routes":[{"dst":"fd00::/8"}]}}"#,
                &format!("dst fd00::/8 is IPv6 but the agent gave port {ID} no IPv6 address"),
            ),
            (
                r#"{"ipam":{"routes":{}}}"#,
                "\"ipam.routes\" must be a list",
            ),
            (r#"{"ipam":[]}"#, "\"ipam\" must be an object"),
        ];
        for (conf, want) in cases {
            let e = err(conf, &v4_port());
            assert!(e.msg.contains(want), "{conf}: {}", e.msg);
        }
    }

    #[test]
    fn dns_merge_with_config() {
        let conf = r#"{"dns":{"nameservers":["8.8.8.8","10.47.255.253","2001:4860:4860::8888"],
                       "domain":"marathon.mesos","search":["marathon.mesos","mesos"],
                       "options":["ndots:2"]}}"#;
        let c = configure(conf, &v4_port(), true).unwrap();
        assert_eq!(
            c.dns,
            Dns {
                nameservers: vec![
                    "10.47.255.253".into(),
                    "8.8.8.8".into(),
                    "2001:4860:4860::8888".into()
                ],
                domain: Some("marathon.mesos".into()),
                search: vec!["marathon.mesos".into(), "mesos".into()],
                options: vec!["ndots:2".into()],
            }
        );
        for (conf, want) in [
            (
                r#"{"dns":{"nameservers":["ns1"]}}"#,
                "dns.nameservers: \"ns1\" is not an IP address",
            ),
            (
                r#"{"dns":{"search":"mesos"}}"#,
                "\"dns.search\" must be a list of strings",
            ),
            (
                r#"{"dns":{"options":[1]}}"#,
                "\"dns.options\" must be a list of strings, got 1 in it",
            ),
            (r#"{"dns":{"domain":1}}"#, "\"dns.domain\" must be a string"),
            (r#"{"dns":[]}"#, "\"dns\" must be an object"),
        ] {
            assert!(err(conf, &v4_port()).msg.contains(want), "{conf}");
        }
    }

    #[test]
    fn bad_plen() {
        let e = err(
            CONF,
            &Port {
                plen: Some(33),
                ..v4_port()
            },
        );
        assert_eq!(e.msg, format!("port {ID}: plen 33 is out of range 0..=32"));
        let e = err(
            CONF,
            &Port {
                v6_plen: Some(129),
                ..v6_port()
            },
        );
        assert_eq!(
            e.msg,
            format!("port {ID}: v6-plen 129 is out of range 0..=128")
        );
        let e = err(
            CONF,
            &Port {
                plen: None,
                ..v4_port()
            },
        );
        assert_eq!(
            e.msg,
            format!("port {ID}: ip-address 10.47.255.250 came without plen")
        );
    }

    #[test]
    fn gateway_outside_subnet() {
        let e = err(
            CONF,
            &Port {
                gateway: Some("10.48.0.1".into()),
                ..v4_port()
            },
        );
        assert_eq!(
            e.msg,
            format!(
                "port {ID}: gateway 10.48.0.1 is outside the subnet 10.32.0.0/12 of 10.47.255.250/12"
            )
        );
        let e = err(
            CONF,
            &Port {
                v6_gateway: Some("fd00:0:0:2::1".into()),
                ..v6_port()
            },
        );
        assert!(
            e.msg
                .contains("v6-gateway fd00:0:0:2::1 is outside the subnet fd00:0:0:1::/64"),
            "{}",
            e.msg
        );
        let e = err(
            CONF,
            &Port {
                gateway: Some("10.47.255.250".into()),
                ..v4_port()
            },
        );
        assert!(e.msg.contains("is the interface's own address"));
    }

    #[test]
    fn malformed_and_missing_addresses() {
        let empty = Port {
            id: ID.into(),
            ..Port::default()
        };
        assert_eq!(
            err(CONF, &empty).msg,
            format!("agent sent no address for port {ID}")
        );
        // Gateway without an address is still "no address".
        let gw_only = Port {
            gateway: Some("10.0.0.1".into()),
            ..empty.clone()
        };
        assert_eq!(
            err(CONF, &gw_only).msg,
            format!("agent sent no address for port {ID}")
        );
        let cases = [
            (
                Port {
                    ip_address: Some("10.47.255.300".into()),
                    ..v4_port()
                },
                "ip-address \"10.47.255.300\" is not an IPv4 address",
            ),
            (
                Port {
                    ip_address: Some("fd00::5".into()),
                    ..v4_port()
                },
                "ip-address \"fd00::5\" is not an IPv4 address",
            ),
            (
                Port {
                    v6_ip_address: Some("10.0.0.5".into()),
                    ..v6_port()
                },
                "v6-ip-address \"10.0.0.5\" is not an IPv6 address",
            ),
            (
                Port {
                    gateway: Some("gw".into()),
                    ..v4_port()
                },
                "gateway \"gw\" is not an IPv4 address",
            ),
            (
                Port {
                    dns_server: Some("10.1".into()),
                    ..v4_port()
                },
                "dns-server \"10.1\" is not an IPv4 address",
            ),
            (
                Port {
                    ip_address: Some("224.0.0.5".into()),
                    ..v4_port()
                },
                "ip-address 224.0.0.5 cannot be an interface address",
            ),
        ];
        for (port, want) in cases {
            assert_eq!(err(CONF, &port).msg, format!("port {ID}: {want}"));
        }
        // The unspecified address is "absent", so an all-zero v4 answer is "no address".
        let zero = Port {
            ip_address: Some("0.0.0.0".into()),
            ..v4_port()
        };
        assert_eq!(
            err(CONF, &zero).msg,
            format!("agent sent no address for port {ID}")
        );
    }

    #[test]
    fn config_must_be_json_object() {
        assert_eq!(configure("{", &v4_port(), true).unwrap_err().code, 6);
        assert_eq!(configure("[]", &v4_port(), true).unwrap_err().code, 6);
    }
}
