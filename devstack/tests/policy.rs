//! The devstack's dataplane enforces Contrail network policy with real packets (root).
//!
//! Two virtual networks on one flat-subnet IPAM (one address space, as a cluster network and a
//! network per Marathon app or group are), the real `contrail-cni-plugin` and
//! `contrail-mesos-manager` attaching Marathon tasks to them, and policies written to the VNC
//! stand-in over its REST API the way any config API client writes them. The containers hold
//! /12 addresses, so the other network's addresses look on-link to them: traffic crosses only
//! through the node's proxy ARP and routing, and the node's nftables table decides.
//!
//! Needs root (network namespaces; prints SKIPPED otherwise) and built binaries:
//! `cargo build -p contrail-cni-host -p contrail-mesos-manager --bins` and
//! `cargo build --profile wasm-release --target wasm32-wasip2 -p mesos-delegate -p contrail-ipam`.
//! The stack runs in a node namespace of its own, removed with it (also on failure); every wait
//! is bounded and nothing asserts on timing.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use contrail_devstack::probe::{Conn, Echo, reachable};
use contrail_devstack::stack::CONTRAIL_NETWORK;
use contrail_devstack::{RunSpec, Stack, StackOptions};
use contrail_integration::mesos_agent::NetworkRequest;
use contrail_integration::netns::require_root;
use nix::sched::{CloneFlags, setns};
use serde_json::{Value, json};

/// How long a state that must eventually hold is looked for.
const CONVERGE: Duration = Duration::from_secs(20);
/// A connect that gets no answer within this is dropped.
const DROPPED: Duration = Duration::from_secs(1);

fn options() -> StackOptions {
    let o = StackOptions::from_target_dir("debug");
    for p in [
        o.cni_bin.clone(),
        o.manager_bin.clone(),
        o.wasm_dir.join("mesos_delegate.wasm"),
        o.wasm_dir.join("contrail_ipam.wasm"),
    ] {
        assert!(
            p.is_file(),
            "{} is missing: build the CNI host, the manager and the Wasm plugins first",
            p.display()
        );
    }
    o
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// `POST /<type>s`; the new object's uuid.
fn vnc_create(stack: &Stack, ty: &str, body: Value) -> String {
    let mut r = http()
        .post(format!("{}/{ty}s", stack.vnc_url))
        .send_json(json!({ ty: body }))
        .unwrap_or_else(|e| panic!("POST /{ty}s: {e}"));
    let text = r.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(r.status().as_u16(), 200, "POST /{ty}s: {text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    v[ty]["uuid"].as_str().expect("uuid").to_owned()
}

/// `POST /ref-update` of a virtual network's `network_policy_refs`.
fn policy_ref(stack: &Stack, vn: &str, policy: &str, op: &str) {
    let mut body = json!({"type": "virtual-network", "uuid": vn, "ref-type": "network-policy",
        "ref-uuid": policy, "operation": op});
    if op == "ADD" {
        body["attr"] = json!({"sequence": {"major": 0, "minor": 0}, "timer": null});
    }
    let r = http()
        .post(format!("{}/ref-update", stack.vnc_url))
        .send_json(&body)
        .expect("ref-update");
    assert_eq!(r.status().as_u16(), 200, "ref-update {body}");
}

fn fq(name: &str) -> Value {
    json!(["default-domain", "default-project", name])
}

/// A flat-subnet IPAM holding 10.32.0.0/12 and two L3 networks on it; their uuids.
fn flat_networks(stack: &Stack) -> (String, String) {
    let ipam = vnc_create(
        stack,
        "network-ipam",
        json!({"fq_name": fq("pods-ipam"), "parent_type": "project",
            "ipam_subnet_method": "flat-subnet",
            "ipam_subnets": {"subnets": [{"subnet": {"ip_prefix": "10.32.0.0", "ip_prefix_len": 12}}]}}),
    );
    let vn = |name: &str| {
        vnc_create(
            stack,
            "virtual-network",
            json!({"fq_name": fq(name), "parent_type": "project",
                "virtual_network_properties": {"forwarding_mode": "l3"},
                "network_ipam_refs": [{"to": fq("pods-ipam"), "uuid": ipam,
                    "attr": {"ipam_subnets": [{"subnet_uuid": null}]}}]}),
        )
    };
    (vn("team-a"), vn("team-b"))
}

/// An app on an existing network (no `network-subnets`: the manager uses the network as is).
fn app(id: &str, instances: usize, network: &str) -> RunSpec {
    let labels = [
        ("networks", network),
        ("project-name", "default-project"),
        ("domain-name", "default-domain"),
    ];
    RunSpec {
        id: id.into(),
        instances,
        networks: vec![NetworkRequest::new(CONTRAIL_NETWORK, &labels)],
        containers: vec![],
    }
}

/// (netns path, eth0 address) of each instance.
fn containers(stack: &Stack, id: &str) -> Vec<(PathBuf, IpAddr)> {
    stack
        .scheduler
        .instances(id)
        .into_iter()
        .map(|(_, _, netns, nets)| {
            let ip = nets[0].2.as_deref().expect("an address").parse().unwrap();
            (PathBuf::from("/run/netns").join(netns), ip)
        })
        .collect()
}

/// `ip -n <ns> -j addr show dev eth0` as `addr/plen` strings.
fn eth0_addrs(netns: &std::path::Path) -> Vec<String> {
    let name = netns.file_name().unwrap().to_string_lossy().into_owned();
    let out = Command::new("ip")
        .args(["-n", &name, "-j", "addr", "show", "dev", "eth0"])
        .output()
        .expect("ip");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
        .collect()
}

/// Reachable within `CONVERGE` (the first packets may beat the tap's attachment or the
/// policy's poll).
fn eventually_reachable(from: &std::path::Path, to: SocketAddr) -> bool {
    Stack::wait_for(CONVERGE, || reachable(from, to, DROPPED))
}

/// IPv4 forwarding of the namespace `ns` (read by a thread that joins it).
fn ip_forward_of(ns: &File) -> String {
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(ns, CloneFlags::CLONE_NEWNET).expect("setns");
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("ip_forward")
        })
        .join()
        .expect("thread")
    })
}

fn policy_rule(dir: &str, proto: &str, src: &str, dst: &str, dport: i64) -> Value {
    json!({"direction": dir, "protocol": proto,
        "src_addresses": [{"virtual_network": format!("default-domain:default-project:{src}")}],
        "dst_addresses": [{"virtual_network": format!("default-domain:default-project:{dst}")}],
        "src_ports": [{"start_port": -1, "end_port": -1}],
        "dst_ports": [{"start_port": dport, "end_port": dport}],
        "action_list": {"simple_action": "pass"}})
}

#[test]
fn flat_networks_are_isolated_until_a_policy_on_both_passes_one_direction_and_port() {
    if !require_root(
        "flat_networks_are_isolated_until_a_policy_on_both_passes_one_direction_and_port",
    ) {
        return;
    }
    let machine = File::open("/proc/thread-self/ns/net").expect("own netns");
    let forward_before = ip_forward_of(&machine);
    let stack = Stack::start(&options()).unwrap_or_else(|e| panic!("stack: {e}"));
    let (vn_a, vn_b) = flat_networks(&stack);
    for (id, vn) in [("/team-a/web", "team-a"), ("/team-b/db", "team-b")] {
        stack
            .scheduler
            .deploy(app(id, 2, vn))
            .unwrap_or_else(|e| panic!("deploy {id}: {e}"));
    }
    let a = containers(&stack, "/team-a/web");
    let b = containers(&stack, "/team-b/db");
    // One address space: every address is in the IPAM's /12, held as a /12 (so the other
    // network's addresses are on-link to the container), and no two are the same.
    let mut all: Vec<IpAddr> = a.iter().chain(&b).map(|(_, ip)| *ip).collect();
    for (ns, ip) in a.iter().chain(&b) {
        assert_eq!(eth0_addrs(ns), vec![format!("{ip}/12")]);
        assert!("10.32.0.0/12".parse::<ipnet::IpNet>().unwrap().contains(ip));
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 4, "addresses unique across both networks");

    // A service on 8080 and one on another port in every container.
    let echo = |(ns, ip): &(PathBuf, IpAddr), port: u16| {
        Echo::start_on(ns, SocketAddr::new(*ip, port)).expect("echo")
    };
    let (a0, a1, b0) = (&a[0].0, &a[1].0, &b[0].0);
    let a1_8080 = echo(&a[1], 8080);
    let b1_8080 = echo(&b[1], 8080);
    let b1_other = echo(&b[1], 0);

    // Inside one network traffic always passes (and each target is shown alive).
    assert!(eventually_reachable(a0, a1_8080.addr), "team-a → team-a");
    assert!(eventually_reachable(b0, b1_8080.addr), "team-b → team-b");
    assert!(eventually_reachable(b0, b1_other.addr), "team-b → team-b");

    // (a) No policy: nothing crosses, either way.
    assert!(
        !reachable(a0, b1_8080.addr, DROPPED),
        "team-a → team-b without a policy"
    );
    assert!(
        !reachable(b0, a1_8080.addr, DROPPED),
        "team-b → team-a without a policy"
    );

    // A policy on one side only opens nothing.
    let pol = vnc_create(
        &stack,
        "network-policy",
        json!({"fq_name": fq("a-to-b-8080"), "parent_type": "project",
            "network_policy_entries": {"policy_rule": [policy_rule(">", "tcp", "team-a", "team-b", 8080)]}}),
    );
    policy_ref(&stack, &vn_a, &pol, "ADD");
    // Given the poll time to act (the rule set is rebuilt every 500 ms) before looking.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !reachable(a0, b1_8080.addr, DROPPED),
        "policy on team-a only"
    );

    // (b) On both: team-a → team-b:8080 connects; another port and the other way do not.
    policy_ref(&stack, &vn_b, &pol, "ADD");
    assert!(
        eventually_reachable(a0, b1_8080.addr),
        "team-a → team-b:8080 with the policy on both"
    );
    assert!(
        reachable(a1, b1_8080.addr, DROPPED),
        "from every team-a task"
    );
    assert!(
        !reachable(a0, b1_other.addr, DROPPED),
        "team-a → team-b, another port"
    );
    assert!(
        !reachable(b0, a1_8080.addr, DROPPED),
        "team-b → team-a:8080 (one-way rule)"
    );
    assert!(
        eventually_reachable(a0, a1_8080.addr),
        "team-a → team-a still"
    );
    let mut held = Conn::open(a0, b1_8080.addr, DROPPED).expect("a connection while allowed");
    assert!(held.echoes(b"first"), "an allowed connection carries data");

    // (c) The refs removed: dropped again after the poll.
    policy_ref(&stack, &vn_a, &pol, "DELETE");
    policy_ref(&stack, &vn_b, &pol, "DELETE");
    assert!(
        Stack::wait_for(CONVERGE, || !reachable(a0, b1_8080.addr, DROPPED)),
        "team-a → team-b:8080 once the policy is gone"
    );
    assert!(
        eventually_reachable(b0, b1_8080.addr),
        "team-b → team-b still"
    );
    // As the vRouter re-evaluates its flows, a connection made while allowed stops too.
    assert!(
        !held.echoes(b"again"),
        "the established connection once the policy is gone"
    );

    // The table is the node namespace's own, and the machine's forwarding never changed.
    let table = Command::new(contrail_devstack::dataplane::NFT)
        .args(["list", "table", "inet", contrail_devstack::policy::TABLE])
        .output()
        .expect("nft");
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("policy drop"),
        "the policy table in the node namespace"
    );
    drop((a1_8080, b1_8080, b1_other));
    drop(stack);
    assert_eq!(
        ip_forward_of(&machine),
        forward_before,
        "the machine's ip_forward"
    );
}

/// A network with a subnet of its own next to a flat one, and a `<>` any-protocol policy between
/// them: TCP crosses both ways while the policy holds.
#[test]
fn a_both_ways_any_protocol_policy_joins_a_subnet_network_and_a_flat_one() {
    if !require_root("a_both_ways_any_protocol_policy_joins_a_subnet_network_and_a_flat_one") {
        return;
    }
    let stack = Stack::start(&options()).unwrap_or_else(|e| panic!("stack: {e}"));
    let (vn_a, _) = flat_networks(&stack);
    let mut blue = app("/blue", 1, "blue-net");
    blue.networks[0]
        .labels
        .push(("network-subnets".into(), "10.10.1.0/24".into()));
    stack.scheduler.deploy(blue).expect("deploy /blue");
    stack
        .scheduler
        .deploy(app("/team-a/web", 1, "team-a"))
        .expect("deploy /team-a/web");
    let blue_c = containers(&stack, "/blue").remove(0);
    let a_c = containers(&stack, "/team-a/web").remove(0);
    let blue_echo = Echo::start(&blue_c.0, blue_c.1).expect("echo");
    let a_echo = Echo::start(&a_c.0, a_c.1).expect("echo");
    assert!(
        !reachable(&a_c.0, blue_echo.addr, DROPPED),
        "isolated first"
    );

    let blue_uuid = {
        let mut r = http()
            .post(format!("{}/fqname-to-id", stack.vnc_url))
            .send_json(json!({"type": "virtual-network", "fq_name": fq("blue-net")}))
            .expect("fqname-to-id");
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        v["uuid"].as_str().expect("blue-net uuid").to_owned()
    };
    let mut rule = policy_rule("<>", "any", "team-a", "blue-net", -1);
    rule["dst_ports"] = json!([{"start_port": -1, "end_port": -1}]);
    let pol = vnc_create(
        &stack,
        "network-policy",
        json!({"fq_name": fq("a-blue"), "parent_type": "project",
            "network_policy_entries": {"policy_rule": [rule]}}),
    );
    policy_ref(&stack, &vn_a, &pol, "ADD");
    policy_ref(&stack, &blue_uuid, &pol, "ADD");
    assert!(
        eventually_reachable(&a_c.0, blue_echo.addr),
        "team-a → blue"
    );
    assert!(
        eventually_reachable(&blue_c.0, a_echo.addr),
        "blue → team-a"
    );
}
