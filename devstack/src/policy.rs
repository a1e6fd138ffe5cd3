//! Contrail network policy as the vRouter enforces it, compiled into an nftables rule set for
//! the devstack's dataplane (one Linux bridge per virtual network, see `dataplane`).
//!
//! What the config API holds (schema `vnc_cfg.xsd` of tf-api-client / `vnc_api`):
//! - `network-policy.network_policy_entries.policy_rule[]`: `direction` (`>` or `<>`),
//!   `protocol` (`any`, `tcp`, `udp`, `icmp`, `icmp6` or an IANA number as a string),
//!   `src_addresses[]`/`dst_addresses[]` (`{"virtual_network": "dom:proj:vn" | "any" | "local"}`),
//!   `src_ports[]`/`dst_ports[]` (`{"start_port", "end_port"}`, `-1/-1` = any),
//!   `action_list.simple_action` (`pass`, `deny`, `drop`, `reject`; `alert`/`log` give no verdict);
//! - `virtual-network.network_policy_refs[]` with `attr.sequence {major, minor}`: the VN's
//!   policies, lowest sequence first.
//!
//! The vRouter's semantics (Contrail's "Network Policy" documentation; the agent's
//! `filter/acl.cc`): traffic inside one VN always passes; a new flow from VN S to VN D passes
//! only when S's policies pass it AND D's policies pass it, each list evaluated in order with
//! the first matching rule deciding; no match drops. Flows are stateful: the reverse of an
//! accepted flow passes. A `<>` rule also matches the reverse direction with addresses and
//! ports swapped (the agent adds the mirrored ACL entry).
//!
//! Compiled form, one chain per ordered pair of bridges so both ordered lists keep their
//! first-match semantics: `forward` (policy drop) accepts replies (`ct direction reply`,
//! established) and related packets (ICMP errors) and same-bridge traffic, then sends S→D
//! traffic to `eg-S-D` (S's rules for that pair: pass = `goto in-S-D`, deny = `drop`); `in-S-D`
//! holds D's rules (pass = `accept`, deny = `drop`). Falling off either chain ends in
//! `forward`'s drop policy. Every packet of a flow's initiating direction is judged, not just
//! the first: when a policy goes, the vRouter re-evaluates its flows and drops those no longer
//! allowed, and so an established connection stops here too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use serde_json::Value;

/// The nftables table the dataplane owns (in the node namespace only).
pub const TABLE: &str = "contrail_devstack";

/// More rules than this in one rule set is a runaway config: the rest is left out (left-out
/// pass rules fail closed; the cap is logged).
pub const MAX_RULES: usize = 20_000;

/// A matched protocol: `None` = any.
type Proto = Option<u8>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Any,
    /// The VN the policy is applied to.
    Local,
    /// A VN by its fq_name joined with `:`.
    Network(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ports {
    pub lo: u16,
    pub hi: u16,
}

impl Ports {
    const ANY: Ports = Ports { lo: 0, hi: 65535 };

    fn is_any(&self) -> bool {
        *self == Ports::ANY
    }

    fn nft(&self) -> String {
        if self.lo == self.hi {
            self.lo.to_string()
        } else {
            format!("{}-{}", self.lo, self.hi)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pass,
    Drop,
    Reject,
}

/// One `PolicyRuleType`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub both_ways: bool,
    pub proto: Proto,
    pub src: Vec<Addr>,
    pub dst: Vec<Addr>,
    pub src_ports: Vec<Ports>,
    pub dst_ports: Vec<Ports>,
    /// None: a rule with no verdict (`alert`, `log`, `apply_service` alone).
    pub action: Option<Action>,
}

fn protocol(p: &str) -> Result<Proto, String> {
    Ok(Some(match p.to_ascii_lowercase().as_str() {
        "any" => return Ok(None),
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "icmp6" => 58,
        n => n
            .parse::<u8>()
            .map_err(|_| format!("unknown protocol {p:?}"))?,
    }))
}

fn addresses(v: &Value) -> Vec<Addr> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| match a["virtual_network"].as_str() {
            Some("any") => Some(Addr::Any),
            Some("local") => Some(Addr::Local),
            Some(vn) if !vn.is_empty() => Some(Addr::Network(vn.to_owned())),
            // Subnet, security-group and policy addresses are not modelled: they match nothing.
            _ => None,
        })
        .collect()
}

fn ports(v: &Value) -> Result<Vec<Ports>, String> {
    let list = v.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        return Ok(vec![Ports::ANY]);
    }
    list.iter()
        .map(|p| {
            let (s, e) = (
                p["start_port"].as_i64().unwrap_or(-1),
                p["end_port"].as_i64().unwrap_or(-1),
            );
            if s == -1 && e == -1 {
                return Ok(Ports::ANY);
            }
            match (u16::try_from(s), u16::try_from(e)) {
                (Ok(lo), Ok(hi)) if lo <= hi => Ok(Ports { lo, hi }),
                _ => Err(format!("bad port range {s}..{e}")),
            }
        })
        .collect()
}

impl Rule {
    pub fn parse(v: &Value) -> Result<Rule, String> {
        let both_ways = match v["direction"].as_str().unwrap_or(">") {
            ">" => false,
            "<>" => true,
            d => return Err(format!("unknown direction {d:?}")),
        };
        let action = match v["action_list"]["simple_action"].as_str() {
            Some("pass") => Some(Action::Pass),
            Some("deny" | "drop") => Some(Action::Drop),
            Some("reject") => Some(Action::Reject),
            _ => None,
        };
        Ok(Rule {
            both_ways,
            proto: protocol(v["protocol"].as_str().unwrap_or("any"))?,
            src: addresses(&v["src_addresses"]),
            dst: addresses(&v["dst_addresses"]),
            src_ports: ports(&v["src_ports"])?,
            dst_ports: ports(&v["dst_ports"])?,
            action,
        })
    }
}

/// `network-policy` objects (as `GET /network-policys?detail=True` lists them, unwrapped) ->
/// their rules by policy uuid. A rule that does not parse is left out (and logged).
pub fn policies(list: &[Value]) -> HashMap<String, Vec<Rule>> {
    let mut out = HashMap::new();
    for p in list {
        let Some(uuid) = p["uuid"].as_str() else {
            continue;
        };
        let rules = p["network_policy_entries"]["policy_rule"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Rule::parse(r)
                    .inspect_err(|e| tracing::warn!(policy = uuid, "policy rule left out: {e}"))
                    .ok()
            })
            .collect();
        out.insert(uuid.to_owned(), rules);
    }
    out
}

/// A virtual network with a bridge on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub fq_name: String,
    pub bridge: String,
    /// Its policies' uuids, in sequence order.
    pub policies: Vec<String>,
    /// `fabric_snat`: its tasks reach the fabric with the node's address.
    pub fabric_snat: bool,
}

/// `virtual-network` objects (unwrapped) -> the ones with a bridge here (`bridges`: VN uuid ->
/// bridge), each with its policy uuids ordered by `attr.sequence` (major, minor).
pub fn networks(list: &[Value], bridges: &HashMap<String, String>) -> Vec<Network> {
    let mut out: Vec<Network> = list
        .iter()
        .filter_map(|vn| {
            let bridge = bridges.get(vn["uuid"].as_str()?)?;
            let fq: Vec<&str> = vn["fq_name"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let mut refs: Vec<((i64, i64), String)> = vn["network_policy_refs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| {
                    let seq = &r["attr"]["sequence"];
                    Some((
                        (
                            seq["major"].as_i64().unwrap_or(0),
                            seq["minor"].as_i64().unwrap_or(0),
                        ),
                        r["uuid"].as_str()?.to_owned(),
                    ))
                })
                .collect();
            refs.sort();
            Some(Network {
                fq_name: fq.join(":"),
                bridge: bridge.clone(),
                policies: refs.into_iter().map(|(_, u)| u).collect(),
                fabric_snat: vn["fabric_snat"].as_bool().unwrap_or(false),
            })
        })
        .collect();
    out.sort_by(|a, b| a.bridge.cmp(&b.bridge));
    out
}

fn addr_matches(a: &Addr, vn: &str, applied_to: &str) -> bool {
    match a {
        Addr::Any => true,
        Addr::Local => vn == applied_to,
        Addr::Network(n) => n == vn,
    }
}

/// The nft matchers (protocol and ports) of one direction of a rule: one line per protocol /
/// port-range combination. Ports only constrain TCP, UDP and SCTP; `any` with ports means those.
fn matchers(proto: Proto, sports: &[Ports], dports: &[Ports]) -> Vec<String> {
    let ported = sports.iter().chain(dports).any(|p| !p.is_any());
    let protos: Vec<Proto> = match proto {
        None if ported => vec![Some(6), Some(17), Some(132)],
        p => vec![p],
    };
    let mut out = Vec::new();
    for p in protos {
        let Some(n) = p else {
            out.push(String::new());
            continue;
        };
        if !matches!(n, 6 | 17 | 132) || !ported {
            out.push(format!("meta l4proto {n} "));
            continue;
        }
        for s in sports {
            for d in dports {
                let mut m = format!("meta l4proto {n} ");
                if !s.is_any() {
                    let _ = write!(m, "th sport {} ", s.nft());
                }
                if !d.is_any() {
                    let _ = write!(m, "th dport {} ", d.nft());
                }
                out.push(m);
            }
        }
    }
    out
}

/// The lines of one VN's ordered policy list for the flow src_vn → dst_vn: each matching rule
/// (direction) becomes `<matchers> <verdict>`.
fn list_for(
    net: &Network,
    rules: &HashMap<String, Vec<Rule>>,
    src_vn: &str,
    dst_vn: &str,
    pass: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for p in &net.policies {
        for r in rules.get(p).into_iter().flatten() {
            let Some(action) = r.action else { continue };
            let verdict = match action {
                Action::Pass => pass,
                Action::Drop => "drop",
                Action::Reject => "reject",
            };
            let fwd = r.src.iter().any(|a| addr_matches(a, src_vn, &net.fq_name))
                && r.dst.iter().any(|a| addr_matches(a, dst_vn, &net.fq_name));
            if fwd {
                for m in matchers(r.proto, &r.src_ports, &r.dst_ports) {
                    out.push(format!("{m}{verdict}"));
                }
            }
            // The mirrored entry of a `<>` rule: addresses and ports swapped.
            let rev = r.both_ways
                && r.dst.iter().any(|a| addr_matches(a, src_vn, &net.fq_name))
                && r.src.iter().any(|a| addr_matches(a, dst_vn, &net.fq_name));
            if rev {
                for m in matchers(r.proto, &r.dst_ports, &r.src_ports) {
                    out.push(format!("{m}{verdict}"));
                }
            }
        }
    }
    // A later line identical to an earlier one can never decide anything (first match wins).
    let mut seen = BTreeSet::new();
    out.retain(|l| seen.insert(l.clone()));
    out
}

/// The whole rule set for `nft -f`: replaces the table in one transaction (created empty
/// first so the delete never fails).
pub fn ruleset(nets: &[Network], rules: &HashMap<String, Vec<Rule>>) -> String {
    ruleset_with_fabric(nets, rules, None)
}

/// [`ruleset`] on a node with a link to the IP fabric (`fabric`: its interface, which stands in
/// for the `ip-fabric` network's bridge in `nets`): a network with `fabric_snat` opens
/// connections to the fabric with the node's address (masquerade), as the vRouter's fabric SNAT
/// does; the fabric reaches a network only where a policy on both passes it.
pub fn ruleset_with_fabric(
    nets: &[Network],
    rules: &HashMap<String, Vec<Rule>>,
    fabric: Option<&str>,
) -> String {
    let mut snat = Vec::new();
    let mut forward = vec![
        "ct state related accept".to_owned(),
        "ct direction reply ct state established accept".to_owned(),
    ];
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let bridges: BTreeSet<&str> = nets.iter().map(|n| n.bridge.as_str()).collect();
    for b in &bridges {
        forward.push(format!("iifname \"{b}\" oifname \"{b}\" accept"));
    }
    if let Some(f) = fabric {
        for n in nets.iter().filter(|n| n.fabric_snat && n.bridge != f) {
            forward.push(format!("iifname \"{}\" oifname \"{f}\" accept", n.bridge));
            snat.push(format!(
                "iifname \"{}\" oifname \"{f}\" masquerade",
                n.bridge
            ));
        }
    }
    let mut count = forward.len();
    'pairs: for s in nets {
        for d in nets {
            if s.bridge == d.bridge {
                continue;
            }
            let eg = list_for(
                s,
                rules,
                &s.fq_name,
                &d.fq_name,
                &format!("goto in-{}-{}", s.bridge, d.bridge),
            );
            // A pair S's policies never pass needs no chains: the drop policy covers it.
            if !eg.iter().any(|l| l.contains("goto ")) {
                continue;
            }
            let ing = list_for(d, rules, &s.fq_name, &d.fq_name, "accept");
            if !ing.iter().any(|l| l.ends_with("accept")) {
                continue;
            }
            count += eg.len() + ing.len() + 1;
            if count > MAX_RULES {
                tracing::warn!(
                    "policy rule set capped at {MAX_RULES} rules: later network pairs stay isolated"
                );
                break 'pairs;
            }
            forward.push(format!(
                "iifname \"{}\" oifname \"{}\" goto eg-{}-{}",
                s.bridge, d.bridge, s.bridge, d.bridge
            ));
            chains.insert(format!("eg-{}-{}", s.bridge, d.bridge), eg);
            chains.insert(format!("in-{}-{}", s.bridge, d.bridge), ing);
        }
    }
    let mut out =
        format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n");
    out.push_str("\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n");
    for l in &forward {
        let _ = writeln!(out, "\t\t{l}");
    }
    out.push_str("\t}\n");
    if !snat.is_empty() {
        out.push_str("\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
        for l in &snat {
            let _ = writeln!(out, "\t\t{l}");
        }
        out.push_str("\t}\n");
    }
    for (name, lines) in &chains {
        let _ = writeln!(out, "\tchain {name} {{");
        for l in lines {
            let _ = writeln!(out, "\t\t{l}");
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(dir: &str, proto: &str, src: &str, dst: &str, dport: (i64, i64), act: &str) -> Value {
        json!({"direction": dir, "protocol": proto,
            "src_addresses": [{"virtual_network": src}], "dst_addresses": [{"virtual_network": dst}],
            "src_ports": [{"start_port": -1, "end_port": -1}],
            "dst_ports": [{"start_port": dport.0, "end_port": dport.1}],
            "action_list": {"simple_action": act}})
    }

    fn policy(uuid: &str, rules: Vec<Value>) -> Value {
        json!({"uuid": uuid, "fq_name": ["default-domain", "p", uuid],
            "network_policy_entries": {"policy_rule": rules}})
    }

    fn vn(uuid: &str, name: &str, pols: &[(&str, i64)]) -> Value {
        let refs: Vec<Value> = pols
            .iter()
            .map(|(u, major)| {
                json!({"to": ["default-domain", "p", u], "uuid": u,
                "attr": {"sequence": {"major": major, "minor": 0}, "timer": null}})
            })
            .collect();
        json!({"uuid": uuid, "fq_name": ["default-domain", "p", name], "network_policy_refs": refs})
    }

    fn bridges() -> HashMap<String, String> {
        [("a", "vna"), ("b", "vnb"), ("c", "vnc")]
            .into_iter()
            .map(|(u, b)| (u.to_owned(), b.to_owned()))
            .collect()
    }

    fn build(vns: &[Value], pols: &[Value]) -> String {
        ruleset(&networks(vns, &bridges()), &policies(pols))
    }

    /// The chain named `name`'s rule lines.
    fn chain<'a>(set: &'a str, name: &str) -> Vec<&'a str> {
        let start = format!("\tchain {name} {{");
        let Some(i) = set.find(&start) else {
            return vec![];
        };
        set[i + start.len()..]
            .lines()
            .skip(1)
            .take_while(|l| *l != "\t}")
            .map(str::trim)
            .collect()
    }

    #[test]
    fn fabric_snat_networks_reach_the_fabric_masqueraded_and_others_do_not() {
        let mut nets = vec![
            Network {
                fq_name: "d:p:a".into(),
                bridge: "vna".into(),
                policies: vec![],
                fabric_snat: true,
            },
            Network {
                fq_name: "d:p:b".into(),
                bridge: "vnb".into(),
                policies: vec![],
                fabric_snat: false,
            },
        ];
        let set = ruleset_with_fabric(&nets, &HashMap::new(), Some("fabric0"));
        assert!(
            set.contains("iifname \"vna\" oifname \"fabric0\" accept"),
            "{set}"
        );
        assert!(
            set.contains("iifname \"vna\" oifname \"fabric0\" masquerade"),
            "{set}"
        );
        assert!(
            !set.contains("iifname \"vnb\" oifname \"fabric0\""),
            "{set}"
        );
        assert!(set.contains("type nat hook postrouting"), "{set}");
        // Without a fabric link, or without a snat network, no nat chain.
        assert!(!ruleset_with_fabric(&nets, &HashMap::new(), None).contains("masquerade"));
        nets[0].fabric_snat = false;
        assert!(!ruleset_with_fabric(&nets, &HashMap::new(), Some("fabric0")).contains("nat hook"));
    }

    #[test]
    fn without_policies_only_same_network_and_replies_pass() {
        let set = build(&[vn("a", "A", &[]), vn("b", "B", &[])], &[]);
        assert!(
            set.starts_with(
                "table inet contrail_devstack {}\ndelete table inet contrail_devstack\n"
            )
        );
        assert!(set.contains("type filter hook forward priority filter; policy drop;"));
        assert_eq!(
            chain(&set, "forward"),
            vec![
                "type filter hook forward priority filter; policy drop;",
                "ct state related accept",
                "ct direction reply ct state established accept",
                "iifname \"vna\" oifname \"vna\" accept",
                "iifname \"vnb\" oifname \"vnb\" accept",
            ]
        );
    }

    #[test]
    fn a_one_way_tcp_port_rule_applied_to_both_opens_only_that_direction_and_port() {
        let p = policy(
            "p1",
            vec![rule(
                ">",
                "tcp",
                "default-domain:p:A",
                "default-domain:p:B",
                (8080, 8080),
                "pass",
            )],
        );
        let set = build(
            &[vn("a", "A", &[("p1", 0)]), vn("b", "B", &[("p1", 0)])],
            &[p],
        );
        assert!(
            chain(&set, "forward").contains(&"iifname \"vna\" oifname \"vnb\" goto eg-vna-vnb")
        );
        assert_eq!(
            chain(&set, "eg-vna-vnb"),
            vec!["meta l4proto 6 th dport 8080 goto in-vna-vnb"]
        );
        assert_eq!(
            chain(&set, "in-vna-vnb"),
            vec!["meta l4proto 6 th dport 8080 accept"]
        );
        // B → A has no chain: the drop policy decides.
        assert!(!set.contains("eg-vnb-vna"));
    }

    #[test]
    fn a_policy_on_one_side_only_opens_nothing() {
        let p = policy(
            "p1",
            vec![rule("<>", "any", "any", "any", (-1, -1), "pass")],
        );
        let set = build(&[vn("a", "A", &[("p1", 0)]), vn("b", "B", &[])], &[p]);
        assert!(!set.contains("goto"), "{set}");
    }

    #[test]
    fn both_ways_rules_mirror_addresses_and_ports() {
        let p = policy(
            "p1",
            vec![rule(
                "<>",
                "udp",
                "default-domain:p:A",
                "default-domain:p:B",
                (53, 53),
                "pass",
            )],
        );
        let set = build(
            &[vn("a", "A", &[("p1", 0)]), vn("b", "B", &[("p1", 0)])],
            &[p],
        );
        assert_eq!(
            chain(&set, "in-vna-vnb"),
            vec!["meta l4proto 17 th dport 53 accept"]
        );
        // The mirrored entry: B → A from port 53 (the agent swaps ports with addresses).
        assert_eq!(
            chain(&set, "in-vnb-vna"),
            vec!["meta l4proto 17 th sport 53 accept"]
        );
    }

    #[test]
    fn any_protocol_with_ports_means_the_ported_protocols_and_numbers_are_accepted() {
        let p = policy(
            "p1",
            vec![
                rule(">", "any", "any", "any", (80, 90), "pass"),
                rule(">", "1", "any", "any", (-1, -1), "pass"),
            ],
        );
        let set = build(
            &[vn("a", "A", &[("p1", 0)]), vn("b", "B", &[("p1", 0)])],
            &[p],
        );
        assert_eq!(
            chain(&set, "in-vna-vnb"),
            vec![
                "meta l4proto 6 th dport 80-90 accept",
                "meta l4proto 17 th dport 80-90 accept",
                "meta l4proto 132 th dport 80-90 accept",
                "meta l4proto 1 accept",
            ]
        );
    }

    #[test]
    fn policies_are_evaluated_in_sequence_order_first_match_wins() {
        let deny = policy("d", vec![rule("<>", "any", "any", "any", (-1, -1), "deny")]);
        let pass = policy("p", vec![rule("<>", "any", "any", "any", (-1, -1), "pass")]);
        let set = build(
            &[
                vn("a", "A", &[("p", 2), ("d", 1)]),
                vn("b", "B", &[("p", 0)]),
            ],
            &[deny, pass],
        );
        assert_eq!(
            chain(&set, "eg-vna-vnb"),
            vec!["drop", "goto in-vna-vnb"],
            "{set}"
        );
    }

    #[test]
    fn local_means_the_network_the_policy_is_applied_to() {
        let p = policy(
            "p1",
            vec![rule(">", "any", "local", "any", (-1, -1), "pass")],
        );
        let set = build(
            &[vn("a", "A", &[("p1", 0)]), vn("b", "B", &[("p1", 0)])],
            &[p],
        );
        // From A: `local` is A at A's end but B at B's end, so A → B fails at B.
        assert!(!set.contains("goto eg-"), "{set}");
    }

    #[test]
    fn networks_without_a_bridge_here_and_bad_rules_are_left_out() {
        let bad = json!({"uuid": "p1", "network_policy_entries": {"policy_rule": [
            {"direction": "<>", "protocol": "gre?", "action_list": {"simple_action": "pass"}},
            {"direction": ">", "protocol": "tcp", "dst_ports": [{"start_port": 9, "end_port": 2}]},
            {"direction": "><", "protocol": "tcp"}]}});
        assert!(policies(&[bad])["p1"].is_empty());
        let nets = networks(&[vn("a", "A", &[]), vn("zz", "Z", &[])], &bridges());
        assert_eq!(nets.len(), 1);
        assert_eq!(nets[0].fq_name, "default-domain:p:A");
    }
}
