//! The devstack's native load balancer, standing in for the vRouter's: the loadbalancer,
//! listener, pool and member objects of the config API (as the manager writes them for
//! Marathon VIPs) become DNAT rules in the node namespace, each new connection to `VIP:port`
//! sent to the pool's members in turn (`numgen inc`), as the vRouter's ECMP over a native
//! load balancer's members spreads flows.
//!
//! In the node namespace only, in an nftables table of its own (`TABLE`), replaced whole in
//! one `nft -f` transaction. What else it needs there:
//! - each VIP as a /32 on the node's loopback, so the node answers ARP for it on every bridge
//!   (Linux answers for any local address, `arp_ignore` 0), as the vRouter answers ARP for every
//!   address it routes; traffic to a VIP port that no listener serves is dropped, never
//!   delivered to the node;
//! - connections that were DNATed are masqueraded out of the backend's bridge, so a backend on
//!   the client's own network answers through the node (which undoes the DNAT), not straight to
//!   the client over the bridge; and ICMP redirects are off, so the node never tells a client
//!   to send VIP traffic to a backend directly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde_json::Value;

use super::dataplane::Dataplane;

/// The load balancer's nftables table (family `ip`).
pub const TABLE: &str = "contrail_lb";

/// One listener with its members.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Service {
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub backends: Vec<(Ipv4Addr, u16)>,
}

fn fq(o: &Value) -> Vec<String> {
    o["fq_name"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn ref_uuids(o: &Value, key: &str) -> Vec<String> {
    o[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uuid"].as_str().map(str::to_owned))
        .collect()
}

fn admin_up(props: &Value) -> bool {
    props["admin_state"].as_bool().unwrap_or(true)
}

/// The services from detail lists of the four types. Anything malformed (a VIP that is no
/// IPv4 address, a port out of range, a member without address) is left out.
pub fn services(
    lbs: &[Value],
    listeners: &[Value],
    pools: &[Value],
    members: &[Value],
) -> Vec<Service> {
    let vips: BTreeMap<&str, Ipv4Addr> = lbs
        .iter()
        .filter(|l| admin_up(&l["loadbalancer_properties"]))
        .filter_map(|l| {
            let ip = l["loadbalancer_properties"]["vip_address"]
                .as_str()?
                .parse()
                .ok()?;
            Some((l["uuid"].as_str()?, ip))
        })
        .collect();
    let mut out = Vec::new();
    for l in listeners {
        let p = &l["loadbalancer_listener_properties"];
        if !admin_up(p) {
            continue;
        }
        let protocol = match p["protocol"].as_str() {
            Some("UDP") => "udp",
            Some("TCP" | "HTTP" | "HTTPS" | "TERMINATED_HTTPS") => "tcp",
            _ => continue,
        };
        let Some(port) = p["protocol_port"]
            .as_u64()
            .and_then(|x| u16::try_from(x).ok())
        else {
            continue;
        };
        let Some(vip) = ref_uuids(l, "loadbalancer_refs")
            .iter()
            .find_map(|u| vips.get(u.as_str()).copied())
        else {
            continue;
        };
        let luuid = l["uuid"].as_str().unwrap_or_default();
        let mut backends = BTreeSet::new();
        for pool in pools.iter().filter(|pl| {
            admin_up(&pl["loadbalancer_pool_properties"])
                && ref_uuids(pl, "loadbalancer_listener_refs")
                    .iter()
                    .any(|u| u == luuid)
        }) {
            let pfq = fq(pool);
            for m in members.iter().filter(|m| {
                let mfq = fq(m);
                mfq.len() == pfq.len() + 1 && mfq[..pfq.len()] == pfq[..]
            }) {
                let mp = &m["loadbalancer_member_properties"];
                if !admin_up(mp) {
                    continue;
                }
                let Some(a) = mp["address"].as_str().and_then(|a| a.parse().ok()) else {
                    continue;
                };
                let Some(port) = mp["protocol_port"]
                    .as_u64()
                    .and_then(|x| u16::try_from(x).ok())
                else {
                    continue;
                };
                backends.insert((a, port));
            }
        }
        out.push(Service {
            protocol,
            vip,
            port,
            backends: backends.into_iter().collect(),
        });
    }
    out.sort();
    out
}

/// The whole table: a rule per listener jumping to a chain that picks the next member.
pub fn ruleset(services: &[Service]) -> String {
    let mut pre = String::new();
    let mut chains = String::new();
    for (i, s) in services.iter().enumerate() {
        pre.push_str(&format!(
            "\t\tip daddr {} {} dport {} jump svc{i}\n",
            s.vip, s.protocol, s.port
        ));
        if s.backends.is_empty() {
            // No member: the connection goes nowhere, as with the vRouter.
            chains.push_str(&format!("\tchain svc{i} {{\n\t\tdrop\n\t}}\n"));
            continue;
        }
        let arms: Vec<String> = (0..s.backends.len())
            .map(|j| format!("{j} : jump svc{i}_{j}"))
            .collect();
        chains.push_str(&format!(
            "\tchain svc{i} {{\n\t\tnumgen inc mod {} vmap {{ {} }}\n\t}}\n",
            s.backends.len(),
            arms.join(", ")
        ));
        for (j, (a, p)) in s.backends.iter().enumerate() {
            chains.push_str(&format!(
                "\tchain svc{i}_{j} {{\n\t\tmeta l4proto {} dnat to {a}:{p}\n\t}}\n",
                s.protocol
            ));
        }
    }
    let vips: BTreeSet<String> = services.iter().map(|s| s.vip.to_string()).collect();
    let post = if vips.is_empty() {
        String::new()
    } else {
        let set = vips.into_iter().collect::<Vec<_>>().join(", ");
        // The VIPs are local addresses: what no listener took is not for the node.
        pre.push_str(&format!("\t\tip daddr {{ {set} }} drop\n"));
        format!("\t\tct status dnat ct original ip daddr {{ {set} }} masquerade\n")
    };
    format!(
        "table ip {TABLE} {{}}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n\
         \tchain prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n{pre}\t}}\n\
         {chains}\
         \tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n{post}\t}}\n}}\n"
    )
}

/// What this node's load balancer applied last.
#[derive(Default)]
pub struct LbPlane {
    applied: Option<String>,
    /// The VIPs on the loopback.
    routes: BTreeSet<Ipv4Addr>,
    ready: bool,
}

impl LbPlane {
    /// Applies `services` in the node namespace unless nothing changed.
    pub fn apply(&mut self, d: &Dataplane, services: &[Service]) -> Result<(), String> {
        let rs = ruleset(services);
        let vips: BTreeSet<Ipv4Addr> = services.iter().map(|s| s.vip).collect();
        if self.applied.as_deref() == Some(rs.as_str()) && vips == self.routes {
            return Ok(());
        }
        let bridges = d.bridges();
        let (gone, new): (Vec<Ipv4Addr>, Vec<Ipv4Addr>) = (
            self.routes.difference(&vips).copied().collect(),
            vips.difference(&self.routes).copied().collect(),
        );
        let ready = self.ready;
        d.in_node(|| -> Result<(), String> {
            if !ready {
                super::dataplane::ip(&["link", "set", "lo", "up"])?;
                for c in ["all", "default"] {
                    super::dataplane::sysctl(&format!("net/ipv4/conf/{c}/send_redirects"), "0")?;
                }
            }
            for b in &bridges {
                let _ = super::dataplane::sysctl(&format!("net/ipv4/conf/{b}/send_redirects"), "0");
            }
            super::dataplane::nft_apply(&rs)?;
            for v in &new {
                super::dataplane::ip(&["addr", "replace", &format!("{v}/32"), "dev", "lo"])?;
            }
            for v in &gone {
                let _ = super::dataplane::ip(&["addr", "del", &format!("{v}/32"), "dev", "lo"]);
            }
            Ok(())
        })?;
        self.ready = true;
        self.routes = vips;
        tracing::debug!("load balancer applied:\n{rs}");
        self.applied = Some(rs);
        Ok(())
    }

    /// Removes the table and the VIP addresses.
    pub fn teardown(&mut self, d: &Dataplane) {
        if !self.ready {
            return;
        }
        d.in_node(|| {
            let _ = std::process::Command::new(super::dataplane::NFT)
                .args(["delete", "table", "ip", TABLE])
                .stderr(std::process::Stdio::null())
                .status();
            for v in &self.routes {
                let _ = super::dataplane::ip(&["addr", "del", &format!("{v}/32"), "dev", "lo"]);
            }
        });
        *self = LbPlane::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn objs() -> (Vec<Value>, Vec<Value>, Vec<Value>, Vec<Value>) {
        let lb = json!({"uuid": "lb1", "fq_name": ["d", "p", "lb"], "loadbalancer_properties": {"vip_address": "10.32.255.1", "admin_state": true}});
        let l = json!({"uuid": "l1", "fq_name": ["d", "p", "lb-TCP-80"], "loadbalancer_listener_properties": {"protocol": "TCP", "protocol_port": 80, "admin_state": true},
            "loadbalancer_refs": [{"to": ["d", "p", "lb"], "uuid": "lb1"}]});
        let pool = json!({"uuid": "p1", "fq_name": ["d", "p", "lb-TCP-80-pool"], "loadbalancer_pool_properties": {"admin_state": true},
            "loadbalancer_listener_refs": [{"to": ["d", "p", "lb-TCP-80"], "uuid": "l1"}]});
        let m = |n: &str, a: &str| json!({"fq_name": ["d", "p", "lb-TCP-80-pool", n], "loadbalancer_member_properties": {"address": a, "protocol_port": 8080, "admin_state": true}});
        // A member of another pool, and one with a bad address: neither counts.
        let other = json!({"fq_name": ["d", "p", "x-pool", "m"], "loadbalancer_member_properties": {"address": "10.0.0.9", "protocol_port": 1}});
        (
            vec![lb],
            vec![l],
            vec![pool],
            vec![
                m("a", "10.32.0.3"),
                m("b", "10.32.0.2"),
                m("c", "nope"),
                other,
            ],
        )
    }

    #[test]
    fn listeners_pools_and_members_make_one_service_per_port() {
        let (a, b, c, d) = objs();
        let s = services(&a, &b, &c, &d);
        assert_eq!(
            s,
            [Service {
                protocol: "tcp",
                vip: "10.32.255.1".parse().unwrap(),
                port: 80,
                backends: vec![
                    ("10.32.0.2".parse().unwrap(), 8080),
                    ("10.32.0.3".parse().unwrap(), 8080)
                ]
            }]
        );
        let rs = ruleset(&s);
        assert!(
            rs.starts_with("table ip contrail_lb {}\ndelete table ip contrail_lb\n"),
            "{rs}"
        );
        assert!(
            rs.contains("ip daddr 10.32.255.1 tcp dport 80 jump svc0"),
            "{rs}"
        );
        assert!(
            rs.contains("numgen inc mod 2 vmap { 0 : jump svc0_0, 1 : jump svc0_1 }"),
            "{rs}"
        );
        assert!(
            rs.contains("meta l4proto tcp dnat to 10.32.0.2:8080"),
            "{rs}"
        );
        assert!(
            rs.contains("ct status dnat ct original ip daddr { 10.32.255.1 } masquerade")
                && rs.contains("ip daddr { 10.32.255.1 } drop"),
            "{rs}"
        );
    }

    #[test]
    fn a_listener_without_members_drops_and_a_disabled_one_is_left_out() {
        let (a, mut b, c, _) = objs();
        let s = services(&a, &b, &c, &[]);
        assert!(s[0].backends.is_empty());
        assert!(ruleset(&s).contains("chain svc0 {\n\t\tdrop\n\t}"));
        b[0]["loadbalancer_listener_properties"]["admin_state"] = json!(false);
        assert!(services(&a, &b, &c, &[]).is_empty());
        assert!(!ruleset(&[]).contains("masquerade"));
    }
}
