//! The manager's VNC writer against behaviours of the real config API server (tf-controller
//! `vnc_cfg_api_server`) that the VNC stand-in reproduces as recorded in
//! `tests/fixtures/vnc/vnc-transcript-3.json`: allocation failures, subnets it cannot allocate
//! in, a missing domain, objects an operator put on our ports, uuids that went stale,
//! flat-subnet IPAMs, dual stack, lost virtual-router refs, and one-to-one names.
//! Waits are bounded polling loops on a condition, never timings.

use std::time::Duration;

use contrail_integration::marathon::MarathonServer;
use contrail_integration::vnc::VncServer;
use contrail_mesos_api::{AttachRequest, ContrailRequest, FloatingIpRequest, Node, vm_uuid_for};
use contrail_mesos_manager::app::{self, App};
use contrail_mesos_manager::config::Config;
use serde_json::{Value, json};

mod common;
use common::*;

fn config(vnc: &VncServer, marathon: &[String]) -> Config {
    let mut c = Config::default();
    c.api.listen = "127.0.0.1:0".into();
    c.api.workers = 4;
    c.vnc.urls = vec![vnc.url()];
    c.vnc.backoff_ms = 10;
    c.vnc.timeout_secs = 5;
    c.cluster.subnet = "10.32.0.0/16".into();
    c.marathon.urls = marathon.to_vec();
    c.marathon.stall_timeout_secs = 1;
    c.marathon.backoff_min_ms = 50;
    c.marathon.backoff_max_ms = 200;
    c.reconcile.interval_secs = 3600;
    c.reconcile.grace_secs = 3600;
    c
}

fn vnc() -> VncServer {
    let v = VncServer::start().expect("vnc");
    v.add_virtual_router("agent-1", "10.0.0.5");
    v
}

fn request(cid: &str, ifname: &str, r: ContrailRequest) -> AttachRequest {
    AttachRequest {
        container_id: cid.into(),
        ifname: ifname.into(),
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

fn net(name: &str, subnets: &[&str]) -> ContrailRequest {
    ContrailRequest {
        network: Some(vec![name.into()]),
        subnets: subnets.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn post(app: &App, req: &AttachRequest) -> (u16, Value) {
    let mut r = agent()
        .post(format!("http://{}/v1/attachments", app.api.addr))
        .send_json(req)
        .expect("post");
    (
        r.status().as_u16(),
        r.body_mut().read_json().unwrap_or(Value::Null),
    )
}

fn delete(app: &App, cid: &str, ifname: &str) -> (u16, Value) {
    let mut r = agent()
        .delete(format!(
            "http://{}/v1/attachments/{cid}/{ifname}",
            app.api.addr
        ))
        .call()
        .expect("delete");
    (
        r.status().as_u16(),
        r.body_mut().read_json().unwrap_or(Value::Null),
    )
}

fn cid(n: u32) -> String {
    format!("7c0ffee0-d028-47ba-864e-{n:012x}")
}

fn fq(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Project `p1`, a network `name` with `cidr` on its own IPAM, and a floating-ip pool on it.
fn pool_network(v: &VncServer, name: &str, cidr: &str) -> Vec<String> {
    let _ = v.create(
        "project",
        json!({"fq_name": ["default-domain", "p1"], "parent_type": "domain"}),
    );
    let ipam_fq = fq(&["default-domain", "p1", &format!("{name}-ipam")]);
    v.create(
        "network-ipam",
        json!({"fq_name": ipam_fq, "parent_type": "project"}),
    )
    .unwrap();
    let (p, l) = cidr.split_once('/').unwrap();
    v.create(
        "virtual-network",
        json!({"fq_name": ["default-domain", "p1", name], "parent_type": "project",
        "network_ipam_refs": [{"to": ipam_fq,
            "attr": {"ipam_subnets": [{"subnet": {"ip_prefix": p, "ip_prefix_len": l.parse::<u8>().unwrap()}}]}}]}),
    )
    .unwrap();
    let pool = fq(&["default-domain", "p1", name, "pool"]);
    v.create(
        "floating-ip-pool",
        json!({"fq_name": pool, "parent_type": "virtual-network"}),
    )
    .unwrap();
    pool
}

fn counts(v: &VncServer) -> [usize; 4] {
    [
        v.count("virtual-machine"),
        v.count("virtual-machine-interface"),
        v.count("instance-ip"),
        v.count("floating-ip"),
    ]
}

#[test]
fn a_floating_ip_the_server_cannot_allocate_is_a_bad_label_and_the_attach_is_taken_back() {
    let v = vnc();
    let pool = pool_network(&v, "pub-small", "10.66.78.0/29");
    let app = app::start(&config(&v, &[])).unwrap();
    let with_fip = |address: Option<&str>| ContrailRequest {
        floating_ips: vec![FloatingIpRequest {
            pool: pool.clone(),
            address: address.map(str::to_owned),
        }],
        ..net("blue", &["5.5.5.0/24"])
    };
    // Outside the pool's network: the server answers 500 "... has exhausted subnet([])".
    let (st, body) = post(&app, &request(&cid(1), "eth0", with_fip(Some("10.99.9.9"))));
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["error"]["label"], "floating-ips", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exhausted"),
        "{body}"
    );
    assert_eq!(counts(&v), [0, 0, 0, 0], "nothing of the attach is left");
    // The pool's four addresses go to four containers; the fifth finds it exhausted.
    for i in 0..4 {
        assert_eq!(
            post(&app, &request(&cid(10 + i), "eth0", with_fip(None))).0,
            201
        );
    }
    let before = counts(&v);
    let (st, body) = post(&app, &request(&cid(20), "eth0", with_fip(None)));
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["error"]["label"], "floating-ips", "{body}");
    assert_eq!(counts(&v), before);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn subnets_vnc_cannot_allocate_in_are_refused_before_any_write() {
    let v = vnc();
    let app = app::start(&config(&v, &[])).unwrap();
    let ipams = v.count("network-ipam");
    let vns = v.count("virtual-network");
    for (i, s) in ["10.8.1.0/31", "10.8.2.1/32", "fd00:32::/127", "10.8.3.0/30"]
        .iter()
        .enumerate()
    {
        let (st, body) = post(
            &app,
            &request(&cid(i as u32), "eth0", net(&format!("p2p-{i}"), &[s])),
        );
        assert_eq!(st, 422, "{s}: {body}");
        assert_eq!(body["error"]["label"], "network-subnets", "{s}: {body}");
    }
    assert_eq!(v.count("network-ipam"), ipams, "no IPAM left behind");
    assert_eq!(v.count("virtual-network"), vns);
    assert_eq!(counts(&v), [0, 0, 0, 0]);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn a_project_under_an_unknown_domain_is_a_bad_domain_label() {
    let v = vnc();
    let app = app::start(&config(&v, &[])).unwrap();
    let r = ContrailRequest {
        domain: Some("nodomain".into()),
        project: Some("p".into()),
        ..net("blue", &["5.5.5.0/24"])
    };
    let (st, body) = post(&app, &request(&cid(1), "eth0", r));
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["error"]["label"], "domain-name", "{body}");
    assert_eq!(counts(&v), [0, 0, 0, 0]);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn detach_deletes_only_what_the_manager_owns() {
    let v = vnc();
    let pool = pool_network(&v, "public", "10.66.77.0/24");
    let app = app::start(&config(&v, &[])).unwrap();
    let c = cid(1);
    let (st, body) = post(&app, &request(&c, "eth0", net("blue", &["5.5.5.0/24"])));
    assert_eq!(st, 201, "{body}");
    let vmi = body["vmi-uuid"].as_str().unwrap().to_owned();
    let vmi_fq = v.store().get(&vmi).unwrap().fq_name.clone();
    // An operator binds a floating IP of their own and a secondary address to the port.
    let mut fip_fq = pool.clone();
    fip_fq.push("operators-fip".into());
    let op_fip = v
        .create(
            "floating-ip",
            json!({"fq_name": fip_fq, "parent_type": "floating-ip-pool",
            "project_refs": [{"to": ["default-domain", "p1"]}],
            "virtual_machine_interface_refs": [{"to": vmi_fq, "uuid": vmi}]}),
        )
        .unwrap();
    let op_iip = v
        .create(
            "instance-ip",
            json!({"fq_name": ["operators-secondary"],
            "virtual_network_refs": [{"to": ["default-domain", "default-project", "blue"]}],
            "virtual_machine_interface_refs": [{"to": vmi_fq, "uuid": vmi}]}),
        )
        .unwrap();
    let deletes_before = v.calls("DELETE /instance-ip");
    assert_eq!(delete(&app, &c, "eth0"), (200, json!({"found": true})));
    assert_eq!(
        v.calls("DELETE /instance-ip") - deletes_before,
        1,
        "the port's own instance-ip is deleted once"
    );
    {
        let s = v.store();
        assert!(s.get(&vmi).is_none(), "the port is gone");
        assert!(s.get(&vm_uuid_for(&c)).is_none());
        let f = s.get(&op_fip).expect("the operator's floating IP stays");
        assert!(f.ref_uuids("virtual-machine-interface").is_empty());
        let i = s.get(&op_iip).expect("the operator's address stays");
        assert!(i.ref_uuids("virtual-machine-interface").is_empty());
    }
    assert_eq!(v.count("instance-ip"), 1);

    // An instance-ip that only has our name, and a VM that only has our uuid, are not ours.
    let c2 = cid(2);
    let iip = v
        .create(
            "instance-ip",
            json!({"fq_name": [format!("{c2}__eth0")],
            "virtual_network_refs": [{"to": ["default-domain", "default-project", "blue"]}]}),
        )
        .unwrap();
    let vm = v
        .create(
            "virtual-machine",
            json!({"uuid": vm_uuid_for(&c2), "fq_name": [c2]}),
        )
        .unwrap();
    let vr = v
        .store()
        .uuid_of(
            "virtual-router",
            &fq(&["default-global-system-config", "agent-1"]),
        )
        .unwrap();
    v.store()
        .ref_update(
            &json!({"type": "virtual-router", "uuid": vr, "ref-type": "virtual-machine",
            "ref-uuid": vm, "operation": "ADD"}),
        )
        .unwrap();
    assert_eq!(delete(&app, &c2, "eth0").0, 200);
    {
        let s = v.store();
        assert!(
            s.get(&iip).is_some(),
            "an instance-ip found by name only stays"
        );
        assert!(s.get(&vm).is_some(), "a foreign VM stays");
        assert_eq!(
            s.get(&vr).unwrap().ref_uuids("virtual-machine"),
            std::slice::from_ref(&vm),
            "and keeps its vrouter ref"
        );
    }
    // A VM with our owner but another cluster's annotation is not ours either.
    let c3 = cid(3);
    v.create(
        "virtual-machine",
        json!({"uuid": vm_uuid_for(&c3), "fq_name": [c3],
        "annotations": {"key_value_pair": [{"key": "owner", "value": "contrail-mesos-manager"},
            {"key": "cluster", "value": "another-cluster"}]}}),
    )
    .unwrap();
    assert_eq!(delete(&app, &c3, "eth0").0, 200);
    assert!(v.store().get(&vm_uuid_for(&c3)).is_some());
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn a_network_re_created_or_a_vrouter_re_provisioned_is_found_again() {
    let v = vnc();
    let app = app::start(&config(&v, &[])).unwrap();
    let blue = || net("blue", &["5.5.5.0/24"]);
    assert_eq!(post(&app, &request(&cid(1), "eth0", blue())).0, 201);
    assert_eq!(delete(&app, &cid(1), "eth0").0, 200);
    // The operator deletes the network and creates it again: a new uuid under the same name.
    let vn_fq = fq(&["default-domain", "default-project", "blue"]);
    let old = v.store().uuid_of("virtual-network", &vn_fq).unwrap();
    v.store().delete("virtual-network", &old).unwrap();
    let ipam_fq = fq(&["default-domain", "default-project", "blue"]);
    v.create("virtual-network", json!({"fq_name": vn_fq, "parent_type": "project",
        "network_ipam_refs": [{"to": ipam_fq, "attr": {"ipam_subnets": [{"subnet": {"ip_prefix": "5.5.5.0", "ip_prefix_len": 24}}]}}]}))
        .unwrap();
    let (st, body) = post(&app, &request(&cid(2), "eth0", blue()));
    assert_eq!(st, 201, "{body}");
    assert_ne!(body["vn"]["uuid"], old.as_str());
    // The node's virtual router is re-provisioned: a new uuid under the same name and IP.
    let vr_fq = fq(&["default-global-system-config", "agent-1"]);
    let old_vr = v.store().uuid_of("virtual-router", &vr_fq).unwrap();
    v.store()
        .ref_update(
            &json!({"type": "virtual-router", "uuid": old_vr, "ref-type": "virtual-machine",
            "ref-uuid": vm_uuid_for(&cid(2)), "operation": "DELETE"}),
        )
        .unwrap();
    v.store().delete("virtual-router", &old_vr).unwrap();
    let new_vr = v.add_virtual_router("agent-1", "10.0.0.5");
    let (st, body) = post(&app, &request(&cid(3), "eth0", blue()));
    assert_eq!(st, 201, "{body}");
    assert!(
        v.store()
            .get(&new_vr)
            .unwrap()
            .ref_uuids("virtual-machine")
            .contains(&vm_uuid_for(&cid(3)))
    );
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn every_label_works_on_a_flat_subnet_network() {
    let v = vnc();
    v.create(
        "network-ipam",
        json!({"fq_name": ["default-domain", "default-project", "flat-ipam"], "parent_type": "project",
        "ipam_subnet_method": "flat-subnet", "ipam_subnets": {"subnets": [{"subnet": {"ip_prefix": "10.32.0.0", "ip_prefix_len": 16}}]}}),
    )
    .unwrap();
    v.create(
        "virtual-network",
        json!({"fq_name": ["default-domain", "default-project", "pod-net"], "parent_type": "project",
        "address_allocation_mode": "flat-subnet-only", "virtual_network_properties": {"forwarding_mode": "l3"},
        "network_ipam_refs": [{"to": ["default-domain", "default-project", "flat-ipam"], "attr": {"ipam_subnets": []}}]}),
    )
    .unwrap();
    let app = app::start(&config(&v, &[])).unwrap();
    let r = ContrailRequest {
        ip: Some("10.32.0.50".into()),
        ..net("pod-net", &["10.32.0.0/16"])
    };
    let (st, body) = post(&app, &request(&cid(1), "eth0", r));
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["ip"], "10.32.0.50");
    let (st, body) = post(&app, &request(&cid(2), "eth0", net("pod-net", &[])));
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["ip"], "10.32.255.252");
    // A subnet that is not the IPAM's is still told apart.
    let (st, body) = post(
        &app,
        &request(&cid(3), "eth0", net("pod-net", &["10.33.0.0/16"])),
    );
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["error"]["label"], "network-subnets");
    let r = ContrailRequest {
        ip: Some("10.33.0.1".into()),
        ..net("pod-net", &[])
    };
    let (st, body) = post(&app, &request(&cid(4), "eth0", r));
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["error"]["label"], "network-ip");
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn a_dual_stack_network_gives_one_address_of_each_family() {
    let v = vnc();
    let app = app::start(&config(&v, &[])).unwrap();
    let c = cid(1);
    let (st, body) = post(
        &app,
        &request(&c, "eth0", net("ds-net", &["10.50.0.0/24", "fd00:50::/64"])),
    );
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["ip"], "10.50.0.252");
    let ports = v.ports();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].ip.as_deref(), Some("10.50.0.252"));
    assert_eq!(
        ports[0].v6_ip.as_deref(),
        Some("fd00:50::ffff:ffff:ffff:fffc")
    );
    assert_eq!(
        ports[0].v6_gateway.as_deref(),
        Some("fd00:50::ffff:ffff:ffff:fffe")
    );
    assert_eq!(v.count("instance-ip"), 2);
    // After a restart the cache rebuilt from VNC shows the same (IPv4) address.
    app.shutdown(Duration::from_secs(1));
    let app = app::start(&config(&v, &[])).unwrap();
    assert_eq!(
        app.mgr.get(&c, "eth0").and_then(|a| a.ip).as_deref(),
        Some("10.50.0.252")
    );
    // An IPv6-only network, with an address asked for.
    let r = ContrailRequest {
        ip: Some("fd00:60::10".into()),
        ..net("v6-net", &["fd00:60::/64"])
    };
    let (st, body) = post(&app, &request(&cid(2), "eth0", r));
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["ip"], "fd00:60::10");
    assert_eq!(delete(&app, &c, "eth0").0, 200);
    assert_eq!(delete(&app, &cid(2), "eth0").0, 200);
    assert_eq!(counts(&v), [0, 0, 0, 0]);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn the_reconciler_restores_a_lost_vrouter_ref() {
    let v = vnc();
    let m = MarathonServer::start().unwrap();
    let app = app::start(&config(&v, &[m.url()])).unwrap();
    wait_for("the stream", 200, || m.subscribers() == 1);
    let c = cid(1);
    let (st, body) = post(&app, &request(&c, "eth0", net("blue", &["5.5.5.0/24"])));
    assert_eq!(st, 201, "{body}");
    let ip = body["ip"].as_str().unwrap().to_owned();
    m.add_task("/web", "web.1", "agent-1", &[&ip], "TASK_RUNNING");
    // The node re-registers: its router loses the ref to the VM.
    let vr = v
        .store()
        .uuid_of(
            "virtual-router",
            &fq(&["default-global-system-config", "agent-1"]),
        )
        .unwrap();
    v.store()
        .ref_update(
            &json!({"type": "virtual-router", "uuid": vr, "ref-type": "virtual-machine",
            "ref-uuid": vm_uuid_for(&c), "operation": "DELETE"}),
        )
        .unwrap();
    assert!(v.ports()[0].vrouters.is_empty());
    // A reconcile pass (here: after a dropped stream) puts it back.
    m.drop_streams();
    wait_for("the ref", 200, || v.ports()[0].vrouters == ["agent-1"]);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn names_are_one_to_one_and_old_names_are_migrated_by_identity() {
    let v = vnc();
    let app = app::start(&config(&v, &[])).unwrap();
    let blue = || net("blue", &["5.5.5.0/24"]);
    // These two collided as `v1__x__eth0`: the second's DEL removed the first's objects.
    assert_eq!(post(&app, &request("v1__x", "eth0", blue())).0, 201);
    assert_eq!(post(&app, &request("v1", "x__eth0", blue())).0, 201);
    assert_eq!(counts(&v), [2, 2, 2, 0]);
    assert_eq!(delete(&app, "v1", "x__eth0"), (200, json!({"found": true})));
    assert_eq!(counts(&v), [1, 1, 1, 0]);
    let left = v.ports();
    assert_eq!(left[0].vm_name.as_deref(), Some("v1__x"));
    assert!(left[0].ip.is_some());
    assert_eq!(delete(&app, "v1__x", "eth0").0, 200);
    assert_eq!(counts(&v), [0, 0, 0, 0]);
    app.shutdown(Duration::from_secs(1));

    // Objects a manager named the old way (`<cid>__<ifname>`), here of ("v1__x", "eth0"):
    // the old name is what ("v1", "x__eth0") is called today.
    let (c, old) = ("v1__x", "v1__x__eth0");
    let ann = json!({"key_value_pair": [{"key": "owner", "value": "contrail-mesos-manager"},
        {"key": "cluster", "value": "mesos"}, {"key": "container-id", "value": c},
        {"key": "ifname", "value": "eth0"}, {"key": "created-at", "value": "0"}]});
    let vn_fq = fq(&["default-domain", "default-project", "blue"]);
    let vmi_fq = fq(&["default-domain", "default-project", old]);
    let vm = v
        .create(
            "virtual-machine",
            json!({"uuid": vm_uuid_for(c), "fq_name": [c], "annotations": ann}),
        )
        .unwrap();
    let vmi = v
        .create("virtual-machine-interface", json!({"fq_name": vmi_fq, "parent_type": "project",
            "virtual_network_refs": [{"to": vn_fq}], "virtual_machine_refs": [{"to": [c], "uuid": vm}],
            "annotations": ann}))
        .unwrap();
    v.create(
        "instance-ip",
        json!({"fq_name": [old], "virtual_network_refs": [{"to": vn_fq}],
        "virtual_machine_interface_refs": [{"uuid": vmi, "to": vmi_fq}], "annotations": ann}),
    )
    .unwrap();
    // Started again, the manager adopts them (its scan goes by annotations, not names).
    let app = app::start(&config(&v, &[])).unwrap();
    let (st, body) = post(&app, &request(c, "eth0", blue()));
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["vmi-uuid"], vmi.as_str());
    // The attachment whose name the old objects hold neither deletes nor adopts them.
    assert_eq!(
        delete(&app, "v1", "x__eth0"),
        (200, json!({"found": false}))
    );
    assert_eq!(counts(&v), [1, 1, 1, 0]);
    let (st, body) = post(&app, &request("v1", "x__eth0", blue()));
    assert_eq!(st, 409, "{body}");
    assert_eq!(counts(&v), [1, 1, 1, 0], "a refused attach leaves nothing");
    // Once the old attachment is gone, the name is free.
    assert_eq!(delete(&app, c, "eth0"), (200, json!({"found": true})));
    assert_eq!(counts(&v), [0, 0, 0, 0]);
    assert_eq!(post(&app, &request("v1", "x__eth0", blue())).0, 201);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn the_scan_pages_through_lists_longer_than_a_page() {
    let v = vnc();
    let n = 2_500;
    {
        let mut s = v.store();
        for i in 0..n {
            let cid = cid(i);
            let ann = json!({"key_value_pair": [
                {"key": "owner", "value": "contrail-mesos-manager"}, {"key": "cluster", "value": "mesos"},
                {"key": "container-id", "value": cid}, {"key": "created-at", "value": "0"}]});
            s.create(
                "virtual-machine",
                json!({"uuid": vm_uuid_for(&cid), "fq_name": [cid], "annotations": ann}),
            )
            .unwrap();
        }
    }
    let before = v.calls("GET /virtual-machines");
    let app = app::start(&config(&v, &[])).unwrap();
    // Every VM is seen (as an orphan: no interface), over three pages of 1,000.
    let scan = app.mgr.writer.scan().unwrap();
    assert_eq!(scan.orphans.len(), n as usize);
    let mut uuids: Vec<&str> = scan.orphans.iter().map(|o| o.uuid.as_str()).collect();
    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), n as usize, "no object twice");
    assert_eq!(v.calls("GET /virtual-machines") - before, 2 * 3);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn an_attach_that_fails_on_a_transient_error_takes_back_what_it_created() {
    let v = vnc();
    let app = app::start(&config(&v, &[])).unwrap();
    // The network exists; then the instance-ip step keeps failing with 503.
    assert_eq!(
        post(
            &app,
            &request(&cid(1), "eth0", net("blue", &["5.5.5.0/24"]))
        )
        .0,
        201
    );
    v.fail_next(100, 503, "/instance-ips");
    let (st, body) = post(
        &app,
        &request(&cid(2), "eth0", net("blue", &["5.5.5.0/24"])),
    );
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["error"]["kind"], "unavailable");
    v.fail_next(0, 503, "/");
    assert_eq!(
        counts(&v),
        [1, 1, 1, 0],
        "only the first attachment's objects"
    );
    // The CNI's retry then succeeds from scratch.
    assert_eq!(
        post(
            &app,
            &request(&cid(2), "eth0", net("blue", &["5.5.5.0/24"]))
        )
        .0,
        201
    );
    app.shutdown(Duration::from_secs(1));
}
