//! The devstack's vRouter agent: the port-IPC stand-in (`vrouter_agent`) fed from what the
//! manager wrote to VNC, plus a real dataplane.
//!
//! A real agent learns a VM's ports once the `virtual-router -> virtual-machine` ref exists
//! (Contrail's agent gets them over IF-MAP/XMPP from the control node); this one reads the
//! config API over REST, as any client can: the node's virtual router and the VMs it refers to,
//! their VMIs (`back_ref_id`), the VMIs' instance-ips (`back_ref_id`), and each network's
//! subnets (for a flat-subnet network, its IPAM's). So the devstack runs on the VNC stand-in
//! or on a real config API server alike. Ports are configured on the agent stand-in and
//! removed when VNC no longer has them; subscriptions (`POST /vm`) attach the tap to the
//! network's bridge.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use contrail_integration::vrouter_agent::{AgentStandin, VmiSpec};
use serde_json::Value;

use super::dataplane::Dataplane;
use super::policy;

/// A tap on its bridge, with the addresses routed to it.
struct Attachment {
    bridge: String,
    addrs: Vec<IpAddr>,
}

/// How often VNC is re-read: the delay a real agent has between config and IF-MAP push.
const SYNC_PERIOD: Duration = Duration::from_millis(25);
/// How often the policy rule set is rebuilt from VNC without a new port or bridge to prompt it
/// (the manager adds, changes and removes policies and their refs after ports exist).
const POLICY_PERIOD: Duration = Duration::from_millis(500);

pub struct DevAgent {
    pub standin: Arc<AgentStandin>,
    pub dataplane: Arc<Dataplane>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DevAgent {
    /// Starts the agent stand-in on 127.0.0.1 of the calling thread's namespace (never the
    /// machine's: the dataplane refuses it) and the sync loop for `node_name`'s vrouter,
    /// reading the config API at `vnc_url`.
    pub fn start(vnc_url: &str, node_name: &str) -> Result<DevAgent, String> {
        let dataplane = Arc::new(Dataplane::new()?);
        let standin = Arc::new(AgentStandin::start());
        let stop = Arc::new(AtomicBool::new(false));
        let feed = VncFeed::new(vnc_url, node_name);
        let (s, d, st) = (standin.clone(), dataplane.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut feed = feed;
            let mut configured: BTreeMap<String, VmiSpec> = BTreeMap::new();
            let mut attached: HashMap<String, Attachment> = HashMap::new();
            let mut policy_due = Instant::now();
            let mut lb = super::lb::LbPlane::default();
            while !st.load(Ordering::Relaxed) {
                let changed = match feed.ports() {
                    Ok(ports) => sync_once(ports, &s, &d, &mut configured, &mut attached),
                    // VNC unreachable or mid-change: keep what is configured, read again.
                    Err(e) => {
                        tracing::debug!("agent feed: {e}");
                        false
                    }
                };
                // On every new port or bridge, and periodically for policy changes alone.
                if changed || Instant::now() >= policy_due {
                    match feed.policy_ruleset(&d.bridge_map(), d.fabric().as_deref()) {
                        Ok(rs) => {
                            if let Err(e) = d.apply_policy(&rs) {
                                tracing::warn!("dataplane policy: {e}");
                            }
                        }
                        // Keep the rule set in force: VNC may be mid-change or away.
                        Err(e) => tracing::debug!("policy feed: {e}"),
                    }
                    policy_due = Instant::now() + POLICY_PERIOD;
                    // Native load balancers (Marathon VIPs), rebuilt with the policy.
                    let l = |ty: &str| feed.list(ty, "");
                    match (
                        l("loadbalancer"),
                        l("loadbalancer-listener"),
                        l("loadbalancer-pool"),
                        l("loadbalancer-member"),
                    ) {
                        (Ok(a), Ok(b), Ok(c), Ok(m)) => {
                            if let Err(e) = lb.apply(&d, &super::lb::services(&a, &b, &c, &m)) {
                                tracing::warn!("dataplane load balancer: {e}");
                            }
                        }
                        (a, b, c, m) => tracing::debug!(
                            "load-balancer feed: {:?}",
                            [a.err(), b.err(), c.err(), m.err()]
                        ),
                    }
                }
                std::thread::sleep(SYNC_PERIOD);
            }
            lb.teardown(&d);
        });
        Ok(DevAgent {
            standin,
            dataplane,
            stop,
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.standin.port()
    }
}

/// A subnet of a network: (prefix, gateway, dns).
type Subnet = (ipnet::IpNet, Option<String>, Option<String>);

/// Reads this node's ports from the config API.
struct VncFeed {
    base: String,
    node: String,
    http: ureq::Agent,
    /// Network uuid -> its subnets (a network's subnets do not change under a port).
    subnets: HashMap<String, Vec<Subnet>>,
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect()
}

/// The `IpamSubnetType`s of a list, as (prefix, gateway, dns).
fn subnets_of(list: &Value) -> Vec<Subnet> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let net: ipnet::IpNet = format!(
                "{}/{}",
                s["subnet"]["ip_prefix"].as_str()?,
                s["subnet"]["ip_prefix_len"].as_u64()?
            )
            .parse()
            .ok()?;
            Some((
                net.trunc(),
                s["default_gateway"].as_str().map(str::to_owned),
                s["dns_server_address"].as_str().map(str::to_owned),
            ))
        })
        .collect()
}

impl VncFeed {
    fn new(base: &str, node: &str) -> VncFeed {
        VncFeed {
            base: base.trim_end_matches('/').to_owned(),
            node: node.to_owned(),
            http: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into(),
            subnets: HashMap::new(),
        }
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        self.http
            .get(format!("{}{path}", self.base))
            .call()
            .map_err(|e| format!("GET {path}: {e}"))?
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_json()
            .map_err(|e| format!("GET {path}: {e}"))
    }

    /// A detail list, the objects unwrapped.
    fn list(&self, ty: &str, query: &str) -> Result<Vec<Value>, String> {
        let v = self.get(&format!("/{ty}s?detail=True&{query}"))?;
        Ok(v[format!("{ty}s")]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.get(ty).cloned())
            .collect())
    }

    fn network_subnets(&mut self, vn: &str) -> Result<Vec<Subnet>, String> {
        if let Some(s) = self.subnets.get(vn) {
            return Ok(s.clone());
        }
        let o = self.get(&format!("/virtual-network/{vn}"))?;
        let mut out = Vec::new();
        for r in o["virtual-network"]["network_ipam_refs"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let mine = subnets_of(&r["attr"]["ipam_subnets"]);
            if mine.is_empty() {
                // A flat-subnet IPAM holds the subnets itself.
                if let Some(u) = r["uuid"].as_str() {
                    let ipam = self.get(&format!("/network-ipam/{u}"))?;
                    out.extend(subnets_of(&ipam["network-ipam"]["ipam_subnets"]["subnets"]));
                }
            } else {
                out.extend(mine);
            }
        }
        self.subnets.insert(vn.to_owned(), out.clone());
        Ok(out)
    }

    /// Every port of a VM this node's router refers to, with all of it (its instance-ip
    /// included) in VNC.
    fn ports(&mut self) -> Result<Vec<VmiSpec>, String> {
        let vr = self.list(
            "virtual-router",
            &format!("fq_names=default-global-system-config:{}", self.node),
        )?;
        let vms: Vec<String> = vr
            .iter()
            .flat_map(|r| {
                r["virtual_machine_refs"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|r| r["uuid"].as_str().map(str::to_owned))
            .collect();
        if vms.is_empty() {
            return Ok(Vec::new());
        }
        let vm_names: HashMap<String, String> = self
            .list("virtual-machine", &format!("obj_uuids={}", vms.join(",")))?
            .iter()
            .filter_map(|o| {
                Some((
                    o["uuid"].as_str()?.to_owned(),
                    o["fq_name"][0].as_str()?.to_owned(),
                ))
            })
            .collect();
        let vmis = self.list(
            "virtual-machine-interface",
            &format!("back_ref_id={}", vms.join(",")),
        )?;
        if vmis.is_empty() {
            return Ok(Vec::new());
        }
        let vmi_uuids: Vec<&str> = vmis.iter().filter_map(|o| o["uuid"].as_str()).collect();
        // VMI uuid -> its addresses.
        let mut addrs: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for i in self.list(
            "instance-ip",
            &format!("back_ref_id={}", vmi_uuids.join(",")),
        )? {
            let Some(a) = i["instance_ip_address"]
                .as_str()
                .and_then(|a| a.parse().ok())
            else {
                continue;
            };
            for r in i["virtual_machine_interface_refs"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(u) = r["uuid"].as_str() {
                    addrs.entry(u.to_owned()).or_default().push(a);
                }
            }
        }
        let mut out = Vec::new();
        for vmi in &vmis {
            let uuid = vmi["uuid"].as_str().unwrap_or_default().to_owned();
            let vm = vmi["virtual_machine_refs"][0]["uuid"]
                .as_str()
                .map(str::to_owned);
            let vn = &vmi["virtual_network_refs"][0];
            let (Some(vm_uuid), Some(vn_uuid), Some(mac)) = (
                vm,
                vn["uuid"].as_str().map(str::to_owned),
                vmi["virtual_machine_interface_mac_addresses"]["mac_address"][0]
                    .as_str()
                    .map(str::to_owned),
            ) else {
                continue;
            };
            // A port is published once VNC holds all of it, its instance-ip included. The
            // manager creates the VMI before its instance-ip, and a container's second VMI is
            // visible through the VM (already referred by the vrouter) before its address
            // exists. A real agent answers `GET /vm/<vm>/<vmi>` for such a port with 404
            // "Missing IPAM entry … Retry", which the CNI polls; the port-IPC stand-in would
            // answer 200 without any address instead, which the CNI's IPAM step takes as final.
            let Some(ips) = addrs.get(&uuid) else {
                continue;
            };
            let subnets = self.network_subnets(&vn_uuid)?;
            let find = |v6: bool| {
                let a = *ips.iter().find(|a| a.is_ipv6() == v6)?;
                let s = subnets.iter().find(|(n, _, _)| n.contains(&a));
                Some((a, s.cloned()))
            };
            let (v4, v6) = (find(false), find(true));
            let annotations = vmi["annotations"]["key_value_pair"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|kv| {
                    (
                        kv["key"].as_str().unwrap_or("").to_owned(),
                        kv["value"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            let sub = v4.as_ref().and_then(|(_, s)| s.clone());
            let sub6 = v6.as_ref().and_then(|(_, s)| s.clone());
            let fq = strs(&vmi["fq_name"]);
            out.push(VmiSpec {
                vm_name: vm_names
                    .get(&vm_uuid)
                    .cloned()
                    .unwrap_or_else(|| vm_uuid.clone()),
                vm_uuid,
                vmi_uuid: uuid,
                vn_uuid,
                vn_name: strs(&vn["to"]).join(":"),
                mac,
                annotations,
                ip: v4.map(|(a, _)| a.to_string()),
                plen: sub.as_ref().map(|(n, _, _)| u32::from(n.prefix_len())),
                gateway: sub.as_ref().and_then(|(_, g, _)| g.clone()),
                dns: sub.as_ref().and_then(|(_, _, d)| d.clone()),
                v6_ip: v6.map(|(a, _)| a.to_string()),
                v6_gateway: sub6.as_ref().and_then(|(_, g, _)| g.clone()),
                v6_dns: sub6.as_ref().and_then(|(_, _, d)| d.clone()),
                project_uuid: fq.get(1).cloned().unwrap_or_default(),
                // A sub-interface VMI (nested mode) carries its VLAN tag in its properties.
                vlan_id: vmi["virtual_machine_interface_properties"]["sub_interface_vlan_tag"]
                    .as_u64()
                    .and_then(|v| u16::try_from(v).ok())
                    .filter(|v| (1..=4094).contains(v)),
            });
        }
        Ok(out)
    }
}

impl VncFeed {
    /// The policy rule set for the networks with a bridge here (`bridges`: VN uuid -> bridge):
    /// those networks with their `network_policy_refs`, and the policies they refer to.
    fn policy_ruleset(
        &self,
        bridges: &HashMap<String, String>,
        fabric: Option<&str>,
    ) -> Result<String, String> {
        let mut nets = Vec::new();
        if !bridges.is_empty() {
            let uuids: Vec<&str> = bridges.keys().map(String::as_str).collect();
            let vns = self.list("virtual-network", &format!("obj_uuids={}", uuids.join(",")))?;
            nets = policy::networks(&vns, bridges);
        }
        // The node's link to the IP fabric stands in for the `ip-fabric` network's bridge: its
        // policies decide what the fabric may reach.
        if let Some(f) = fabric {
            let fab = self.list(
                "virtual-network",
                "fq_names=default-domain:default-project:ip-fabric",
            )?;
            if let Some(uuid) = fab.first().and_then(|v| v["uuid"].as_str()) {
                let m = HashMap::from([(uuid.to_owned(), f.to_owned())]);
                nets.extend(policy::networks(&fab, &m));
            }
        }
        // A bridge whose network is gone from VNC keeps only its own traffic.
        for (vn, br) in bridges {
            if !nets.iter().any(|n| &n.bridge == br) {
                nets.push(policy::Network {
                    fq_name: format!("(deleted network {vn})"),
                    bridge: br.clone(),
                    policies: Vec::new(),
                    fabric_snat: false,
                });
            }
        }
        let refs: std::collections::BTreeSet<&str> = nets
            .iter()
            .flat_map(|n| n.policies.iter().map(String::as_str))
            .collect();
        let rules = if refs.is_empty() {
            HashMap::new()
        } else {
            let list = self.list(
                "network-policy",
                &format!(
                    "obj_uuids={}",
                    refs.into_iter().collect::<Vec<_>>().join(",")
                ),
            )?;
            policy::policies(&list)
        };
        Ok(policy::ruleset_with_fabric(&nets, &rules, fabric))
    }
}

/// One pass: ports to the agent stand-in, bridges for their networks, subscribed taps onto
/// their bridges. True when a bridge or an attachment was added (the policy is rebuilt then).
fn sync_once(
    ports: Vec<VmiSpec>,
    agent: &AgentStandin,
    dataplane: &Dataplane,
    configured: &mut BTreeMap<String, VmiSpec>,
    attached: &mut HashMap<String, Attachment>,
) -> bool {
    let mut changed = false;
    let mut seen = BTreeMap::new();
    for spec in ports {
        if let Some(gw) = &spec.gateway
            && dataplane.bridge_of(&spec.vn_uuid).is_none()
        {
            changed = true;
            let dns = spec.dns.as_deref().and_then(|d| d.parse().ok());
            if let Err(e) = dataplane.ensure_network(&spec.vn_uuid, gw.parse().ok(), dns) {
                tracing::warn!("dataplane: {e}");
            }
        }
        seen.insert(spec.vmi_uuid.clone(), spec);
    }
    for (uuid, spec) in &seen {
        if configured.get(uuid) != Some(spec) {
            agent.add_vmi(spec.clone());
        }
    }
    for uuid in configured.keys() {
        if !seen.contains_key(uuid) {
            agent.remove_vmi(uuid);
        }
    }
    *configured = seen;

    // Subscriptions → taps on bridges.
    let mut subscribed = HashMap::new();
    for ((_, vmi), body) in agent.subscriptions() {
        let Some(tap) = body["host-ifname"].as_str() else {
            continue;
        };
        // Attached once the port (with its addresses, routed to the tap's bridge) is known.
        let Some(spec) = configured.get(&vmi) else {
            if attached.contains_key(tap) {
                // Still subscribed; its port left VNC first.
                subscribed.insert(tap.to_owned(), (String::new(), Vec::new()));
            }
            continue;
        };
        let vn = body["vn-uuid"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| spec.vn_uuid.clone());
        let addrs: Vec<IpAddr> = [&spec.ip, &spec.v6_ip]
            .into_iter()
            .filter_map(|a| a.as_deref()?.parse().ok())
            .collect();
        subscribed.insert(tap.to_owned(), (vn, addrs));
    }
    for (tap, (vn, addrs)) in &subscribed {
        if attached.contains_key(tap) {
            continue;
        }
        let Some(bridge) = dataplane.bridge_of(vn) else {
            continue;
        };
        match dataplane.attach(tap, &bridge, addrs) {
            Ok(()) => {
                changed = true;
                attached.insert(
                    tap.clone(),
                    Attachment {
                        bridge,
                        addrs: addrs.clone(),
                    },
                );
            }
            // The tap may not exist yet (POST /vm races the veth) or already be gone.
            Err(e) => tracing::debug!("attach {tap}: {e}"),
        }
    }
    attached.retain(|tap, a| {
        let keep = subscribed.contains_key(tap);
        if !keep {
            dataplane.detach(tap, &a.bridge, &a.addrs);
        }
        keep
    });
    changed
}

impl Drop for DevAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.dataplane.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrail_integration::vnc::VncServer;
    use serde_json::json;

    /// A dual-stack port as the manager writes it, read back over REST.
    #[test]
    fn the_feed_reads_a_dual_stack_port_over_rest() {
        let v = VncServer::start().unwrap();
        let vr = v.add_virtual_router("node-1", "127.0.0.1");
        let vn_fq = json!(["default-domain", "default-project", "ds"]);
        v.create("network-ipam", json!({"fq_name": ["default-domain", "default-project", "ds"], "parent_type": "project"}))
            .unwrap();
        v.create("virtual-network", json!({"fq_name": vn_fq, "parent_type": "project",
            "network_ipam_refs": [{"to": ["default-domain", "default-project", "ds"], "attr": {"ipam_subnets": [
                {"subnet": {"ip_prefix": "10.50.0.0", "ip_prefix_len": 24}},
                {"subnet": {"ip_prefix": "fd00:50::", "ip_prefix_len": 64}}]}}]}))
            .unwrap();
        let vm = v
            .create("virtual-machine", json!({"fq_name": ["c1"]}))
            .unwrap();
        let vmi_fq = json!(["default-domain", "default-project", "c1__eth0"]);
        let vmi = v
            .create(
                "virtual-machine-interface",
                json!({"fq_name": vmi_fq, "parent_type": "project",
                "virtual_network_refs": [{"to": vn_fq}], "virtual_machine_refs": [{"to": ["c1"]}],
                "annotations": {"key_value_pair": [{"key": "index", "value": "0/1"}]}}),
            )
            .unwrap();
        let mut feed = VncFeed::new(&v.url(), "node-1");
        assert!(feed.ports().unwrap().is_empty(), "no vrouter ref yet");
        v.store()
            .ref_update(
                &json!({"type": "virtual-router", "uuid": vr, "ref-type": "virtual-machine",
                "ref-uuid": vm, "operation": "ADD"}),
            )
            .unwrap();
        assert!(
            feed.ports().unwrap().is_empty(),
            "no address yet: not published"
        );
        for fam in ["v4", "v6"] {
            v.create(
                "instance-ip",
                json!({"fq_name": [format!("c1-{fam}")], "instance_ip_family": fam,
                "virtual_network_refs": [{"to": vn_fq}],
                "virtual_machine_interface_refs": [{"to": vmi_fq, "uuid": vmi}]}),
            )
            .unwrap();
        }
        let ports = feed.ports().unwrap();
        assert_eq!(ports.len(), 1);
        let p = &ports[0];
        assert_eq!(
            (p.vm_uuid.as_str(), p.vm_name.as_str()),
            (vm.as_str(), "c1")
        );
        assert_eq!(p.vmi_uuid, vmi);
        assert_eq!(p.ip.as_deref(), Some("10.50.0.252"));
        assert_eq!(p.plen, Some(24));
        assert_eq!(p.gateway.as_deref(), Some("10.50.0.254"));
        assert_eq!(p.v6_ip.as_deref(), Some("fd00:50::ffff:ffff:ffff:fffc"));
        assert_eq!(
            p.v6_gateway.as_deref(),
            Some("fd00:50::ffff:ffff:ffff:fffe")
        );
        assert_eq!(p.v6_dns.as_deref(), Some("fd00:50::ffff:ffff:ffff:fffd"));
        assert_eq!(p.vn_name, "default-domain:default-project:ds");
        assert!(p.annotations.contains(&("index".into(), "0/1".into())));
        assert!(p.mac.starts_with("02:"));
    }

    /// The policy feed reads the shapes a config API client writes (flat-subnet IPAM networks,
    /// `network_policy_refs` with a sequence, a `network-policy` with its rules) over REST.
    #[test]
    fn the_policy_feed_reads_networks_refs_and_policies_over_rest() {
        let v = VncServer::start().unwrap();
        let fq = |n: &str| json!(["default-domain", "default-project", n]);
        let ipam = v
            .create("network-ipam", json!({"fq_name": fq("flat"), "parent_type": "project",
                "ipam_subnet_method": "flat-subnet",
                "ipam_subnets": {"subnets": [{"subnet": {"ip_prefix": "10.32.0.0", "ip_prefix_len": 12}}]}}))
            .unwrap();
        let vn = |n: &str| {
            v.create(
                "virtual-network",
                json!({"fq_name": fq(n), "parent_type": "project",
                "virtual_network_properties": {"forwarding_mode": "l3"},
                "network_ipam_refs": [{"to": fq("flat"), "uuid": ipam,
                    "attr": {"ipam_subnets": [{"subnet_uuid": null}]}}]}),
            )
            .unwrap()
        };
        let (a, b, c) = (vn("a"), vn("b"), vn("c"));
        let rule = json!({"direction": ">", "protocol": "tcp",
            "src_addresses": [{"virtual_network": "default-domain:default-project:a"}],
            "dst_addresses": [{"virtual_network": "default-domain:default-project:b"}],
            "src_ports": [{"start_port": -1, "end_port": -1}],
            "dst_ports": [{"start_port": 8080, "end_port": 8080}],
            "action_list": {"simple_action": "pass"}});
        let pol = v
            .create(
                "network-policy",
                json!({"fq_name": fq("a-b"), "parent_type": "project",
                "network_policy_entries": {"policy_rule": [rule]}}),
            )
            .unwrap();
        for n in [&a, &b] {
            v.store()
                .ref_update(&json!({"type": "virtual-network", "uuid": n,
                    "ref-type": "network-policy", "ref-uuid": pol, "operation": "ADD",
                    "attr": {"sequence": {"major": 0, "minor": 0}, "timer": null}}))
                .unwrap();
        }
        let feed = VncFeed::new(&v.url(), "node-1");
        let bridges: HashMap<String, String> = [&a, &b, &c]
            .into_iter()
            .map(|u| (u.clone(), super::super::dataplane::bridge_name(u)))
            .collect();
        let set = feed.policy_ruleset(&bridges, None).unwrap();
        let (ba, bb) = (&bridges[&a], &bridges[&b]);
        assert!(set.contains(&format!(
            "iifname \"{ba}\" oifname \"{bb}\" goto eg-{ba}-{bb}"
        )));
        assert!(set.contains("meta l4proto 6 th dport 8080 accept"), "{set}");
        assert!(
            !set.contains(&format!("goto eg-{bb}-{ba}")),
            "one way only: {set}"
        );
        // A bridge whose network left VNC keeps only its own traffic.
        v.store().delete("virtual-network", &c).unwrap();
        let set = feed.policy_ruleset(&bridges, None).unwrap();
        let bc = &bridges[&c];
        assert!(
            set.contains(&format!("iifname \"{bc}\" oifname \"{bc}\" accept")),
            "{set}"
        );
    }
}
