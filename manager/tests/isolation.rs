//! Isolation modes and `allow-from` policies end to end: the manager against the VNC stand-in
//! (which keeps the real server's flat-subnet and policy rules), the Mesos agent's operator API
//! stand-in (which names each container's Marathon task) and the Marathon stand-in (whose
//! passes collect what nothing uses any more).

mod common;

use std::sync::Arc;

use common::{TOKEN, wait_for};
use contrail_integration::marathon::MarathonServer;
use contrail_integration::mesos_agent::OperatorApi;
use contrail_integration::vnc::VncServer;
use contrail_mesos_api::{AttachRequest, ContrailRequest, Isolation, Label, Node};
use contrail_mesos_manager::app::{self, App};
use contrail_mesos_manager::config::Config;
use serde_json::Value;

struct Rig {
    v: VncServer,
    agent: OperatorApi,
    m: MarathonServer,
    app: Arc<App>,
}

fn rig(mode: Isolation, tweak: impl FnOnce(&mut Config)) -> Rig {
    let v = VncServer::start().expect("vnc");
    v.add_virtual_router("agent-1", "10.0.0.5");
    let agent = OperatorApi::start().unwrap();
    let m = MarathonServer::start().unwrap();
    let mut c = Config::default();
    c.api.listen = "127.0.0.1:0".into();
    c.api.token = TOKEN.into();
    c.vnc.urls = vec![v.url()];
    c.vnc.backoff_ms = 10;
    c.cluster.subnet = "10.32.0.0/16".into();
    c.cluster.isolation = mode;
    c.mesos.agent_url = agent.url();
    c.marathon.urls = vec![m.url()];
    c.marathon.backoff_min_ms = 50;
    c.reconcile.interval_secs = 3600;
    c.reconcile.grace_secs = 0;
    tweak(&mut c);
    let app = Arc::new(app::start(&c).unwrap());
    // The watcher's pass on connecting to the event stream runs in the background. With
    // `grace-secs = 0` it could collect what a test's registration has just written (a policy
    // before its port exists): the tests start once it is done.
    wait_for("the first pass", 600, || {
        app.mgr
            .metrics
            .reconcile_runs
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    });
    Rig { v, agent, m, app }
}

fn cid(n: u32) -> String {
    format!("7d0e3f2a-51c4-4b8e-9a1d-{n:012x}")
}

fn req(cid: &str, r: ContrailRequest) -> AttachRequest {
    AttachRequest {
        container_id: cid.into(),
        ifname: "eth0".into(),
        netns: None,
        node: Node {
            name: "agent-1".into(),
            ip: "10.0.0.5".into(),
        },
        network_name: "contrail-cni-plugin".into(),
        request: r,
        labels: vec![],
    }
}

fn allow(v: &str) -> ContrailRequest {
    ContrailRequest {
        other: vec![Label {
            key: "allow-from".into(),
            value: v.into(),
        }],
        ..Default::default()
    }
}

impl Rig {
    fn post(&self, r: &AttachRequest) -> (u16, Value) {
        let mut resp = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent()
            .post(format!("http://{}/v1/attachments", self.app.api.addr))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send_json(r)
            .expect("post");
        (
            resp.status().as_u16(),
            resp.body_mut().read_json().unwrap_or(Value::Null),
        )
    }

    fn delete(&self, cid: &str) {
        let r = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent()
            .delete(format!(
                "http://{}/v1/attachments/{cid}/eth0",
                self.app.api.addr
            ))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .call()
            .expect("delete");
        assert!(r.status().is_success(), "{}", r.status());
    }

    /// Registers `cid` for the task `task` (the agent names it) and returns its network and
    /// address.
    fn run(&self, n: u32, task: &str, r: ContrailRequest) -> (String, String) {
        self.agent.add_container(&cid(n), task);
        let (st, b) = self.post(&req(&cid(n), r));
        assert_eq!(st, 201, "{b}");
        (
            b["vn"]["fq-name"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(":"),
            b["ip"].as_str().unwrap().to_owned(),
        )
    }

    fn pass(&self) {
        self.app
            .watcher
            .as_ref()
            .unwrap()
            .relist_and_reconcile()
            .unwrap();
    }

    fn exists(&self, ty: &str, fq: &str) -> bool {
        self.uuid_of(ty, fq).is_some()
    }

    fn uuid_of(&self, ty: &str, fq: &str) -> Option<String> {
        let fq: Vec<String> = fq.split(':').map(str::to_owned).collect();
        self.v.store().uuid_of(ty, &fq)
    }

    /// Deletes an object from VNC behind the manager's back (as an operator or another
    /// manager's collector would); returns its uuid.
    fn remove(&self, ty: &str, fq: &str) -> String {
        let u = self
            .uuid_of(ty, fq)
            .unwrap_or_else(|| panic!("no {ty} {fq}"));
        self.v.store().delete(ty, &u).unwrap();
        u
    }

    /// The rules of a policy as (src, protocol, start, end), and the networks it is on.
    fn policy(&self, fq: &str) -> Option<(Vec<Rule>, Vec<String>)> {
        let fq: Vec<String> = fq.split(':').map(str::to_owned).collect();
        let s = self.v.store();
        let u = s.uuid_of("network-policy", &fq)?;
        let o = s.get(&u).unwrap();
        let rules = o.props["network_policy_entries"]["policy_rule"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["src_addresses"][0]["virtual_network"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    r["protocol"].as_str().unwrap().to_owned(),
                    r["dst_ports"][0]["start_port"].as_i64().unwrap(),
                    r["dst_ports"][0]["end_port"].as_i64().unwrap(),
                )
            })
            .collect();
        let mut on: Vec<String> = s
            .list_type("virtual-network")
            .into_iter()
            .filter(|vn| vn.ref_uuids("network-policy").contains(&u))
            .map(|vn| vn.fq_name.join(":"))
            .collect();
        on.sort();
        Some((rules, on))
    }
}

/// (source network, protocol, first port, last port).
type Rule = (String, String, i64, i64);

const CLUSTER_NET: &str = "default-domain:default-project:mesos-default-network";
const TEAM_A: &str = "default-domain:mesos-team-a:mesos-team-a-network";
const TEAM_B: &str = "default-domain:mesos-team-b:mesos-team-b-network";

#[test]
fn cluster_mode_provisions_the_cluster_network_at_start_and_unlabelled_tasks_land_on_it() {
    let r = rig(Isolation::Cluster, |_| {});
    // Before any task: the flat-subnet pod IPAM and the cluster network on it.
    assert!(r.exists("virtual-network", CLUSTER_NET));
    assert!(r.exists(
        "network-ipam",
        "default-domain:default-project:mesos-pod-ipam"
    ));
    // A task with no labels at all, and one of another framework.
    let (vn, ip) = r.run(
        1,
        "team-a_web.11111111-1111-1111-1111-111111111111",
        ContrailRequest::default(),
    );
    assert_eq!(vn, CLUSTER_NET);
    assert!(ip.starts_with("10.32."), "{ip}");
    // The agent named the task at ADD: the join is made by identity, not by address.
    assert_eq!(
        r.app.mgr.cache.all()[0].task_id.as_deref(),
        Some("team-a_web.11111111-1111-1111-1111-111111111111")
    );
    // A restart provisions nothing twice.
    let before = r.v.count("virtual-network");
    r.app.mgr.writer.provision().unwrap();
    assert_eq!(r.v.count("virtual-network"), before);
}

#[test]
fn group_mode_gives_each_group_its_project_and_network_on_one_address_space() {
    let r = rig(Isolation::Group, |_| {});
    let (a1, ip1) = r.run(
        1,
        "team-a_web.11111111-1111-1111-1111-111111111111",
        ContrailRequest::default(),
    );
    let (a2, ip2) = r.run(
        2,
        "team-a_back_db.instance-22222222-2222-2222-2222-222222222222._app.1",
        ContrailRequest::default(),
    );
    let (b1, ip3) = r.run(
        3,
        "team-b_web.33333333-3333-3333-3333-333333333333",
        ContrailRequest::default(),
    );
    // An app in the root group and another framework's executor: the cluster network.
    let (root, _) = r.run(
        4,
        "web.44444444-4444-4444-4444-444444444444",
        ContrailRequest::default(),
    );
    let (other, _) = r.run(5, "Executor_5", ContrailRequest::default());
    assert_eq!(
        (a1.as_str(), a2.as_str(), b1.as_str()),
        (TEAM_A, TEAM_A, TEAM_B)
    );
    assert_eq!((root.as_str(), other.as_str()), (CLUSTER_NET, CLUSTER_NET));
    // One flat address space: no address twice across the group networks.
    assert!(ip1 != ip2 && ip2 != ip3 && ip1 != ip3, "{ip1} {ip2} {ip3}");
    // The group's project is the manager's, and the VM carries the task id (the join).
    {
        let s = r.v.store();
        let p = s
            .get(
                &s.uuid_of("project", &["default-domain".into(), "mesos-team-a".into()])
                    .unwrap(),
            )
            .unwrap()
            .clone();
        let ann = p.props["annotations"].to_string();
        assert!(
            ann.contains("created-by") && ann.contains("/team-a"),
            "{ann}"
        );
        let vm = s.get(&cid(1)).unwrap();
        assert_eq!(
            vm.props["display_name"],
            "team-a_web.11111111-1111-1111-1111-111111111111"
        );
    }
    let o = r.app.mgr.cache.all();
    assert!(
        o.iter().any(
            |o| o.task_id.as_deref() == Some("team-a_web.11111111-1111-1111-1111-111111111111")
        )
    );
    // A `networks` label always wins; an `isolation` label overrides the mode.
    let blue = ContrailRequest {
        network: Some(vec!["blue".into()]),
        subnets: vec!["5.5.5.0/24".into()],
        isolation: Some(Isolation::Group),
        ..Default::default()
    };
    assert_eq!(
        r.run(6, "team-a_web.66666666-6666-6666-6666-666666666666", blue)
            .0,
        "default-domain:default-project:blue"
    );
    let app_mode = ContrailRequest {
        isolation: Some(Isolation::App),
        ..Default::default()
    };
    assert_eq!(
        r.run(
            7,
            "team-a_web.77777777-7777-7777-7777-777777777777",
            app_mode
        )
        .0,
        "default-domain:default-project:mesos-app-team-a_web"
    );
}

#[test]
fn without_an_answer_from_the_agent_nothing_is_placed() {
    // The agent API is configured but down: 503 (a retry can succeed), nothing written.
    let r = rig(Isolation::Group, |c| {
        c.mesos.agent_url = "http://127.0.0.1:9".into()
    });
    let vmis = r.v.count("virtual-machine-interface");
    let (st, b) = r.post(&req(&cid(1), ContrailRequest::default()));
    assert_eq!(st, 503, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("group isolation"),
        "{b}"
    );
    assert_eq!(r.v.count("virtual-machine-interface"), vmis);
    // Cluster and labelled tasks do not need the agent.
    let (st, b) = r.post(&req(
        &cid(2),
        ContrailRequest {
            isolation: Some(Isolation::Cluster),
            ..Default::default()
        },
    ));
    assert_eq!(st, 201, "{b}");
    // Without [mesos] agent-url an app label cannot be honoured: 422 naming it.
    let r = rig(Isolation::Cluster, |c| c.mesos.agent_url.clear());
    let (st, b) = r.post(&req(
        &cid(3),
        ContrailRequest {
            isolation: Some(Isolation::App),
            ..Default::default()
        },
    ));
    assert_eq!(st, 422, "{b}");
    assert_eq!(b["error"]["label"], "isolation", "{b}");
}

#[test]
fn allow_from_becomes_a_policy_on_both_networks_and_goes_with_the_last_task() {
    let r = rig(Isolation::Group, |_| {});
    let pol = "default-domain:mesos-team-a:mesos-allow-to-mesos-team-a-network";
    // A bad label: 422 naming it, nothing created.
    let nets = r.v.count("virtual-network");
    r.agent
        .add_container(&cid(9), "team-a_web.99999999-9999-9999-9999-999999999999");
    let (st, b) = r.post(&req(&cid(9), allow("group:Team-B tcp:80")));
    assert_eq!(st, 422, "{b}");
    assert_eq!(b["error"]["label"], "allow-from", "{b}");
    assert_eq!(r.v.count("virtual-network"), nets);
    assert_eq!(r.v.count("network-policy"), 0);

    let (vn, _) = r.run(
        1,
        "team-a_web.11111111-1111-1111-1111-111111111111",
        allow("group:/team-b tcp:8080"),
    );
    assert_eq!(vn, TEAM_A);
    // The source group's network exists (empty) so the policy can name it.
    assert!(r.exists("virtual-network", TEAM_B));
    let (rules, on) = r.policy(pol).expect("the policy");
    assert_eq!(rules, [(TEAM_B.to_owned(), "tcp".to_owned(), 8080, 8080)]);
    assert_eq!(on, [TEAM_A, TEAM_B]);
    // A second task of the app: no second rule. A second app widens the policy.
    r.run(
        2,
        "team-a_web.22222222-2222-2222-2222-222222222222",
        allow("group:/team-b tcp:8080"),
    );
    r.run(
        3,
        "team-a_api.33333333-3333-3333-3333-333333333333",
        allow("app:/ops/monitor"),
    );
    let (rules, on) = r.policy(pol).unwrap();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(rules.contains(&(
        "default-domain:default-project:mesos-app-ops_monitor".to_owned(),
        "any".to_owned(),
        -1,
        -1
    )));
    assert_eq!(on.len(), 3, "{on:?}");
    // A pass with everything running changes nothing.
    r.pass();
    assert_eq!(r.policy(pol).unwrap().0.len(), 2);
    // The api task ends: its rule goes, the monitor's network (unused) with it.
    r.delete(&cid(3));
    r.pass();
    let (rules, on) = r.policy(pol).unwrap();
    assert_eq!(rules, [(TEAM_B.to_owned(), "tcp".to_owned(), 8080, 8080)]);
    assert_eq!(on, [TEAM_A, TEAM_B]);
    assert!(!r.exists(
        "virtual-network",
        "default-domain:default-project:mesos-app-ops_monitor"
    ));
    // One task of the app left: the policy stays.
    r.delete(&cid(1));
    r.pass();
    assert!(r.policy(pol).is_some());
    // The last: no policy, no group network, no group project; the cluster network stays.
    r.delete(&cid(2));
    r.pass();
    assert!(r.policy(pol).is_none());
    for fq in [TEAM_A, TEAM_B] {
        assert!(!r.exists("virtual-network", fq), "{fq}");
    }
    for p in ["default-domain:mesos-team-a", "default-domain:mesos-team-b"] {
        assert!(!r.exists("project", p), "{p}");
    }
    assert!(r.exists("virtual-network", CLUSTER_NET));
    assert_eq!(r.v.count("network-policy"), 0);
    wait_for("no port left", 1, || {
        r.v.count("virtual-machine-interface") == 0
    });
}

#[test]
fn an_app_that_changes_mode_moves_its_next_tasks_and_leaves_the_running_ones() {
    let r = rig(Isolation::Group, |_| {});
    let (old, ip_old) = r.run(
        1,
        "team-a_web.11111111-1111-1111-1111-111111111111",
        ContrailRequest::default(),
    );
    assert_eq!(old, TEAM_A);
    // The app is redeployed with `isolation: app`: its new task gets the app's network.
    let (new, _) = r.run(
        2,
        "team-a_web.22222222-2222-2222-2222-222222222222",
        ContrailRequest {
            isolation: Some(Isolation::App),
            ..Default::default()
        },
    );
    assert_eq!(new, "default-domain:default-project:mesos-app-team-a_web");
    // The running task keeps its network and address, through a pass.
    r.pass();
    let ports = r.v.ports();
    let p1 = ports
        .iter()
        .find(|p| p.vm_uuid.as_deref() == Some(cid(1).as_str()))
        .expect("the running task's port");
    assert_eq!(p1.ip.as_deref(), Some(ip_old.as_str()));
    assert!(r.exists("virtual-network", TEAM_A));
}

#[test]
fn fabric_snat_and_the_ip_fabric_policy_are_provisioned_and_follow_the_networks() {
    let r = rig(Isolation::Group, |c| {
        c.fabric.snat = true;
        c.fabric.policy = true;
    });
    let ip_fabric = "default-domain:default-project:ip-fabric";
    let snat_of = |fq: &str| {
        let fq: Vec<String> = fq.split(':').map(str::to_owned).collect();
        let s = r.v.store();
        let u = s.uuid_of("virtual-network", &fq).unwrap();
        s.get(&u).unwrap().props.get("fabric_snat").cloned()
    };
    // At start: the cluster network with fabric SNAT and a policy from ip-fabric, applied to
    // both networks.
    assert_eq!(snat_of(CLUSTER_NET), Some(serde_json::json!(true)));
    let cluster_pol = "default-domain:default-project:mesos-allow-to-mesos-default-network";
    let (rules, on) = r
        .policy(cluster_pol)
        .expect("the cluster network's fabric policy");
    assert_eq!(rules, [(ip_fabric.to_owned(), "any".to_owned(), -1, -1)]);
    assert_eq!(on, [ip_fabric, CLUSTER_NET]);
    // A group network made on first use gets both.
    r.run(
        1,
        "team-a_web.11111111-1111-1111-1111-111111111111",
        allow("group:/team-b tcp:80"),
    );
    assert_eq!(snat_of(TEAM_A), Some(serde_json::json!(true)));
    let pol = "default-domain:mesos-team-a:mesos-allow-to-mesos-team-a-network";
    let (rules, on) = r.policy(pol).unwrap();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(rules.contains(&(ip_fabric.to_owned(), "any".to_owned(), -1, -1)));
    assert_eq!(on, [ip_fabric, TEAM_A, TEAM_B]);
    // A restart provisions nothing twice.
    let n = r.v.count("network-policy");
    r.app.mgr.writer.provision().unwrap();
    assert_eq!(r.v.count("network-policy"), n);
    // The group's last task ends: its policy and network go; the cluster network's stays.
    r.delete(&cid(1));
    r.pass();
    r.pass();
    assert!(r.policy(pol).is_none());
    assert!(!r.exists("virtual-network", TEAM_A));
    assert!(r.policy(cluster_pol).is_some());
    assert!(r.exists("virtual-network", ip_fabric));
}

#[test]
fn an_haproxy_group_label_lets_the_fabric_in_without_the_fabric_policy() {
    let r = rig(Isolation::Group, |_| {});
    let ip_fabric = "default-domain:default-project:ip-fabric";
    let lb = ContrailRequest {
        other: vec![Label {
            key: "HAPROXY_GROUP".into(),
            value: "external".into(),
        }],
        ..Default::default()
    };
    r.run(1, "shop_web.11111111-1111-1111-1111-111111111111", lb);
    let pol = "default-domain:mesos-shop:mesos-allow-to-mesos-shop-network";
    let (rules, on) = r.policy(pol).expect("the shop network's policy");
    assert_eq!(rules, [(ip_fabric.to_owned(), "any".to_owned(), -1, -1)]);
    assert_eq!(
        on,
        [ip_fabric, "default-domain:mesos-shop:mesos-shop-network"]
    );
    // Without the label (and without [fabric] policy): no policy at all.
    r.run(
        2,
        "team-a_web.22222222-2222-2222-2222-222222222222",
        ContrailRequest::default(),
    );
    assert!(
        r.policy("default-domain:mesos-team-a:mesos-allow-to-mesos-team-a-network")
            .is_none()
    );
}

#[test]
fn dns_gives_each_task_its_apps_mesos_dns_name_and_takes_it_back() {
    let r = rig(Isolation::Group, |c| c.dns.enabled = true);
    let server = ["default-domain".to_owned(), "mesos-dns".to_owned()];
    {
        let s = r.v.store();
        let u = s
            .uuid_of("virtual-DNS", &server)
            .expect("the virtual DNS server");
        assert_eq!(
            s.get(&u).unwrap().props["virtual_DNS_data"]["domain_name"],
            "marathon.mesos"
        );
        let ipam = s
            .uuid_of(
                "network-ipam",
                &["default-domain", "default-project", "mesos-pod-ipam"].map(str::to_owned),
            )
            .unwrap();
        let ipam = s.get(&ipam).unwrap();
        assert_eq!(
            ipam.props["network_ipam_mgmt"]["ipam_dns_method"],
            "virtual-dns-server"
        );
        assert_eq!(ipam.ref_uuids("virtual-DNS"), [u]);
    }
    let records = || -> Vec<(String, String)> {
        let s = r.v.store();
        s.list_type("virtual-DNS-record")
            .into_iter()
            .map(|o| {
                let d = &o.props["virtual_DNS_record_data"];
                (
                    d["record_name"].as_str().unwrap().to_owned(),
                    d["record_data"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let (_, ip1) = r.run(
        1,
        "team-a_web.11111111-1111-1111-1111-111111111111",
        ContrailRequest::default(),
    );
    let (_, ip2) = r.run(
        2,
        "team-a_web.22222222-2222-2222-2222-222222222222",
        ContrailRequest::default(),
    );
    let mut got = records();
    got.sort();
    let mut want = vec![
        ("web-team-a".to_owned(), ip1),
        ("web-team-a".to_owned(), ip2),
    ];
    want.sort();
    assert_eq!(got, want, "one A record per task under the app's name");
    // A DEL takes the task's record with it.
    r.delete(&cid(1));
    assert_eq!(records().len(), 1);
    // A port deleted behind the manager's back: its record goes at the next pass.
    let vmi = r.v.ports()[0].vmi_uuid.clone();
    {
        let mut s = r.v.store();
        for iip in s.back_refs_of(&vmi) {
            let _ = s.delete(&iip.0, &iip.1);
        }
        s.delete("virtual-machine-interface", &vmi).unwrap();
    }
    r.pass();
    assert!(records().is_empty());
}

#[test]
fn an_apps_own_haproxy_group_label_lets_the_fabric_in_to_its_next_tasks() {
    let r = rig(Isolation::Group, |_| {});
    // marathon-lb reads the app's labels; the manager learns them from its listing.
    r.m.set_app_definition(
        "/shop/web",
        &serde_json::json!({"id": "/shop/web", "labels": {"HAPROXY_GROUP": "external"}}),
    );
    r.pass();
    r.run(
        1,
        "shop_web.11111111-1111-1111-1111-111111111111",
        ContrailRequest::default(),
    );
    let ip_fabric = "default-domain:default-project:ip-fabric";
    let (rules, on) = r
        .policy("default-domain:mesos-shop:mesos-allow-to-mesos-shop-network")
        .expect("the shop network's policy");
    assert_eq!(rules, [(ip_fabric.to_owned(), "any".to_owned(), -1, -1)]);
    assert_eq!(
        on,
        [ip_fabric, "default-domain:mesos-shop:mesos-shop-network"]
    );
}

/// A network the collector (or an operator) removed while the manager still remembered its
/// uuid: the policy step's ref-update names a gone uuid (`404 Unknown id`), and the
/// registration looks the names up again and re-creates it, as the port step already did,
/// instead of answering 500.
#[test]
fn a_remembered_network_gone_before_the_policy_step_is_looked_up_again() {
    let r = rig(Isolation::Group, |_| {});
    let pol = "default-domain:mesos-team-a:mesos-allow-to-mesos-team-a-network";
    r.run(
        1,
        "team-a_web.11111111-1111-1111-1111-111111111111",
        allow("group:/team-b tcp:80"),
    );
    r.delete(&cid(1));
    let old = r.remove("virtual-network", TEAM_A);
    let (vn, _) = r.run(
        2,
        "team-a_web.22222222-2222-2222-2222-222222222222",
        allow("group:/team-b tcp:80"),
    );
    assert_eq!(vn, TEAM_A);
    assert_ne!(r.uuid_of("virtual-network", TEAM_A).unwrap(), old);
    let (_, on) = r.policy(pol).expect("the policy");
    assert!(on.iter().any(|n| n == TEAM_A), "{on:?}");
}

/// A registration's port comes a moment after it wrote its network's policy. A pass in between
/// must not take the rule off: it would stay lost until the next registration on that network.
/// Within the grace after the policy's `written-at` the collector leaves it alone.
#[test]
fn a_pass_leaves_a_policy_written_within_the_grace_alone() {
    let r = rig(Isolation::Group, |c| c.reconcile.grace_secs = 3600);
    let pol = "default-domain:mesos-team-a:mesos-allow-to-mesos-team-a-network";
    r.run(
        1,
        "team-a_web.11111111-1111-1111-1111-111111111111",
        allow("group:/team-b tcp:80"),
    );
    // No port on the network asks for the rule (as before the registration's port exists).
    r.delete(&cid(1));
    r.pass();
    let (rules, on) = r
        .policy(pol)
        .expect("a policy written within the grace stays");
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(on.iter().any(|n| n == TEAM_A), "{on:?}");
}

/// A group's project and network removed (by the collector's pass, or an operator) while the
/// manager still remembered the project: creating the network under it gets `404 Name[...] not
/// found`, and the registration looks the names up again and re-creates both.
#[test]
fn a_remembered_project_gone_is_made_again() {
    let r = rig(Isolation::Group, |_| {});
    r.run(
        1,
        "team-a_web.11111111-1111-1111-1111-111111111111",
        ContrailRequest::default(),
    );
    r.delete(&cid(1));
    let project = "default-domain:mesos-team-a";
    r.remove("virtual-network", TEAM_A);
    r.remove("project", project);
    let (vn, _) = r.run(
        2,
        "team-a_web.22222222-2222-2222-2222-222222222222",
        ContrailRequest::default(),
    );
    assert_eq!(vn, TEAM_A);
    assert!(r.exists("project", project));
}
