//! End-to-end tests of contrail-mesos-manager against the VNC and Marathon stand-ins on
//! 127.0.0.1 random ports. Waits are bounded polling loops on a condition, never timings.

use std::sync::Arc;
use std::time::Duration;

use contrail_integration::marathon::MarathonServer;
use contrail_integration::vnc::VncServer;
use contrail_mesos_api::{
    AttachRequest, Attachment, ContrailRequest, FloatingIpRequest, Label, Node, vm_uuid_for,
};
use contrail_mesos_manager::app::{self, App};
use contrail_mesos_manager::config::Config;
use serde_json::{Value, json};

const TOKEN: &str = "s3cret";

fn config(vnc: &VncServer, marathon: &[String]) -> Config {
    let mut c = Config::default();
    c.api.listen = "127.0.0.1:0".into();
    c.api.token = TOKEN.into();
    c.api.workers = 8;
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
    v.add_virtual_router("agent-2", "10.0.0.6");
    v
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn request(cid: &str, ifname: &str, r: ContrailRequest) -> AttachRequest {
    AttachRequest {
        container_id: cid.into(),
        ifname: ifname.into(),
        netns: Some(format!("/var/run/mesos/isolators/network/cni/{cid}/ns")),
        node: Node {
            name: "agent-1".into(),
            ip: "10.0.0.5".into(),
        },
        network_name: "contrail-cni-plugin".into(),
        request: r,
        labels: vec![Label {
            key: "networks".into(),
            value: "blue".into(),
        }],
    }
}

fn blue() -> ContrailRequest {
    ContrailRequest {
        network: Some(vec!["blue".into()]),
        subnets: vec!["5.5.5.0/24".into()],
        ..Default::default()
    }
}

fn post(app: &App, req: &AttachRequest) -> (u16, Value) {
    let mut r = agent()
        .post(format!("http://{}/v1/attachments", app.api.addr))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send_json(req)
        .expect("post");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn delete(app: &App, cid: &str, ifname: &str) -> (u16, Value) {
    let mut r = agent()
        .delete(format!(
            "http://{}/v1/attachments/{cid}/{ifname}",
            app.api.addr
        ))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .expect("delete");
    (
        r.status().as_u16(),
        r.body_mut().read_json().unwrap_or(Value::Null),
    )
}

/// Polls `cond` up to `tries` times, 50 ms apart.
fn wait_for(what: &str, tries: u32, mut cond: impl FnMut() -> bool) {
    for _ in 0..tries {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn cid(n: u32) -> String {
    format!("5baff64c-d028-47ba-864e-{n:012x}")
}

#[test]
fn attach_and_detach_with_every_label() {
    let v = vnc();
    let sg = v.create(
        "security-group",
        json!({"fq_name": ["default-domain", "p1", "sg-web"], "parent_type": "project"}),
    );
    assert!(sg.is_err(), "project p1 does not exist yet");
    v.create(
        "project",
        json!({"fq_name": ["default-domain", "p1"], "parent_type": "domain"}),
    )
    .unwrap();
    v.create(
        "security-group",
        json!({"fq_name": ["default-domain", "p1", "sg-web"], "parent_type": "project"}),
    )
    .unwrap();
    let ipam = v
        .create(
            "network-ipam",
            json!({"fq_name": ["default-domain", "p1", "pub-ipam"], "parent_type": "project"}),
        )
        .unwrap();
    v.create(
        "virtual-network",
        json!({"fq_name": ["default-domain", "p1", "public"], "parent_type": "project",
        "network_ipam_refs": [{"to": ["default-domain", "p1", "pub-ipam"], "uuid": ipam,
            "attr": {"ipam_subnets": [{"subnet": {"ip_prefix": "10.66.77.0", "ip_prefix_len": 24}}]}}]}),
    )
    .unwrap();
    v.create(
        "floating-ip-pool",
        json!({"fq_name": ["default-domain", "p1", "public", "pool"], "parent_type": "virtual-network"}),
    )
    .unwrap();
    let app = app::start(&config(&v, &[])).unwrap();
    let c = cid(1);
    let req = request(
        &c,
        "eth0",
        ContrailRequest {
            domain: Some("default-domain".into()),
            project: Some("p1".into()),
            network: Some(vec!["default-domain".into(), "p1".into(), "blue".into()]),
            subnets: vec!["5.5.5.0/24".into()],
            ip: Some("5.5.5.10".into()),
            floating_ips: vec![
                FloatingIpRequest {
                    pool: vec![
                        "default-domain".into(),
                        "p1".into(),
                        "public".into(),
                        "pool".into(),
                    ],
                    address: Some("10.66.77.123".into()),
                },
                FloatingIpRequest {
                    pool: vec![
                        "default-domain".into(),
                        "p1".into(),
                        "public".into(),
                        "pool".into(),
                    ],
                    address: None,
                },
            ],
            security_groups: vec![vec!["sg-web".into()]],
            isolation: None,
            other: vec![],
        },
    );
    let (st, body) = post(&app, &req);
    assert_eq!(st, 201, "{body}");
    let a: Attachment = serde_json::from_value(body).unwrap();
    assert_eq!(a.vm_uuid, c);
    assert_eq!(a.vm_name, c);
    assert_eq!(a.ip.as_deref(), Some("5.5.5.10"));
    assert_eq!(a.index, "0/1");
    assert_eq!(a.vn.fq_name, ["default-domain", "p1", "blue"]);
    assert_eq!(a.floating_ips, ["10.66.77.123", "10.66.77.252"]);
    let ports = v.ports();
    assert_eq!(ports.len(), 1);
    let p = &ports[0];
    assert_eq!(p.vmi_uuid, a.vmi_uuid);
    assert_eq!(p.mac, a.mac);
    assert_eq!(p.ip.as_deref(), Some("5.5.5.10"));
    assert_eq!(p.vm_uuid.as_deref(), Some(c.as_str()));
    assert_eq!(p.vrouters, ["agent-1"]);
    assert!(p.annotations.contains(&("index".into(), "0/1".into())));
    assert!(
        p.annotations
            .contains(&("owner".into(), "contrail-mesos-manager".into()))
    );
    {
        let s = v.store();
        let vmi = s.get(&a.vmi_uuid).unwrap();
        assert_eq!(vmi.ref_uuids("security-group").len(), 1);
    }
    // Idempotent.
    let (st, body) = post(&app, &req);
    assert_eq!(st, 200, "{body}");
    assert_eq!(serde_json::from_value::<Attachment>(body).unwrap(), a);
    // GET one and list.
    let mut r = agent()
        .get(format!("http://{}/v1/attachments/{c}/eth0", app.api.addr))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.body_mut().read_json::<Attachment>().unwrap(), a);
    // Same key, other network: conflict.
    let mut other = req.clone();
    other.request.network = Some(vec!["default-domain".into(), "p1".into(), "public".into()]);
    other.request.subnets = vec![];
    other.request.ip = None;
    assert_eq!(post(&app, &other).0, 409);
    // Deregister: everything per-attachment goes, the network stays.
    assert_eq!(delete(&app, &c, "eth0"), (200, json!({"found": true})));
    assert_eq!(v.count("virtual-machine-interface"), 0);
    assert_eq!(v.count("instance-ip"), 0);
    assert_eq!(v.count("floating-ip"), 0);
    assert_eq!(v.count("virtual-machine"), 0);
    assert!(
        v.store()
            .uuid_of(
                "virtual-network",
                &["default-domain".into(), "p1".into(), "blue".into()]
            )
            .is_some()
    );
    assert_eq!(delete(&app, &c, "eth0"), (200, json!({"found": false})));
    // /healthz and /metrics.
    let mut r = agent()
        .get(format!("http://{}/metrics", app.api.addr))
        .call()
        .unwrap();
    let m = r.body_mut().read_to_string().unwrap();
    assert!(
        m.contains("contrail_mesos_vnc_calls_total{op=\"create\"}"),
        "{m}"
    );
    assert!(m.contains("contrail_mesos_attachments 0"));
    assert_eq!(
        agent()
            .get(format!("http://{}/healthz", app.api.addr))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn each_bad_label_is_a_422_naming_it_and_leaves_nothing() {
    let v = vnc();
    let app = app::start(&config(&v, &[])).unwrap();
    assert_eq!(post(&app, &request(&cid(1), "eth0", blue())).0, 201);
    let cases: Vec<(&str, ContrailRequest)> = vec![
        (
            "security-groups",
            ContrailRequest {
                security_groups: vec![vec!["nope".into()]],
                ..blue()
            },
        ),
        (
            "floating-ips",
            ContrailRequest {
                floating_ips: vec![FloatingIpRequest {
                    pool: vec![
                        "default-domain".into(),
                        "default-project".into(),
                        "x".into(),
                        "y".into(),
                    ],
                    address: None,
                }],
                ..blue()
            },
        ),
        (
            "floating-ips",
            ContrailRequest {
                floating_ips: vec![FloatingIpRequest {
                    pool: vec!["a".into(), "b".into(), "c".into(), "d".into()],
                    address: Some("10.1.1.300".into()),
                }],
                ..blue()
            },
        ),
        (
            "network-subnets",
            ContrailRequest {
                subnets: vec!["5.5.0.0/16".into()],
                ..blue()
            },
        ),
        (
            "network-ip",
            ContrailRequest {
                ip: Some("6.6.6.6".into()),
                ..blue()
            },
        ),
        (
            "network-ip",
            ContrailRequest {
                ip: Some("5.5.5.253".into()),
                ..blue()
            },
        ),
        (
            "networks",
            ContrailRequest {
                network: Some(vec!["unknown".into()]),
                subnets: vec![],
                ..blue()
            },
        ),
    ];
    // The default network may be created from the configured subnet, so "networks" only
    // fails without it: use a manager with no default subnet for that case.
    for (i, (label, r)) in cases.into_iter().enumerate() {
        let target = if label == "networks" {
            let mut c = config(&v, &[]);
            c.cluster.subnet = String::new();
            Some(app::start(&c).unwrap())
        } else {
            None
        };
        let a = target.as_ref().unwrap_or(&app);
        let (st, body) = post(a, &request(&cid(100 + i as u32), "eth0", r));
        assert_eq!(st, 422, "case {i}: {body}");
        assert_eq!(body["error"]["kind"], "bad-label", "case {i}: {body}");
        assert_eq!(body["error"]["label"], label, "case {i}: {body}");
        if let Some(t) = target {
            t.shutdown(Duration::from_secs(1));
        }
    }
    assert_eq!(
        v.count("virtual-machine"),
        1,
        "only the good attachment remains"
    );
    assert_eq!(v.count("virtual-machine-interface"), 1);
    // Malformed body and missing token.
    let r = agent()
        .post(format!("http://{}/v1/attachments", app.api.addr))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send("{\"nope\": 1}")
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = agent()
        .post(format!("http://{}/v1/attachments", app.api.addr))
        .send_json(request(&cid(9), "eth0", blue()))
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn vnc_5xx_409_and_slow_answers() {
    let v = vnc();
    let app = app::start(&config(&v, &[])).unwrap();
    // 5xx twice, then success: retried inside one registration.
    v.fail_next(2, 503, "/virtual-machines");
    let (st, body) = post(&app, &request(&cid(1), "eth0", blue()));
    assert_eq!(st, 201, "{body}");
    // The VM already exists (created out of band, e.g. by a crashed earlier run): 409 reused.
    let c2 = cid(2);
    v.create("virtual-machine", json!({"uuid": vm_uuid_for(&c2), "fq_name": [c2],
        "annotations": {"key_value_pair": [{"key": "owner", "value": "contrail-mesos-manager"}, {"key": "cluster", "value": "mesos"}]}}))
        .unwrap();
    let (st, body) = post(&app, &request(&c2, "eth0", blue()));
    assert_eq!(st, 201, "{body}");
    assert_eq!(v.count("virtual-machine"), 2);
    // Slow answers still succeed within the timeout.
    v.set_delay(Duration::from_millis(100));
    assert_eq!(post(&app, &request(&cid(3), "eth0", blue())).0, 201);
    v.set_delay(Duration::ZERO);
    // VNC down for longer than the retries: 503 unavailable, and the CNI retries later.
    v.fail_next(100, 500, "/");
    let (st, body) = post(&app, &request(&cid(4), "eth0", blue()));
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["error"]["kind"], "unavailable");
    v.fail_next(0, 500, "/");
    assert_eq!(post(&app, &request(&cid(4), "eth0", blue())).0, 201);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn restart_rebuilds_the_cache_without_duplicates() {
    let v = vnc();
    let app = app::start(&config(&v, &[])).unwrap();
    let mut first = Vec::new();
    for i in 0..3 {
        let (st, b) = post(&app, &request(&cid(i), "eth0", blue()));
        assert_eq!(st, 201);
        first.push(serde_json::from_value::<Attachment>(b).unwrap());
    }
    app.shutdown(Duration::from_secs(1));
    let app = app::start(&config(&v, &[])).unwrap();
    assert_eq!(app.mgr.cache.len(), 3);
    for (i, a) in first.iter().enumerate() {
        let (st, b) = post(&app, &request(&cid(i as u32), "eth0", blue()));
        assert_eq!(st, 200, "{b}");
        assert_eq!(&serde_json::from_value::<Attachment>(b).unwrap(), a);
    }
    assert_eq!(v.count("virtual-machine-interface"), 3);
    assert_eq!(v.count("instance-ip"), 3);
    assert_eq!(v.count("virtual-machine"), 3);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn parallel_attachments_for_one_container() {
    let v = vnc();
    let app = Arc::new(app::start(&config(&v, &[])).unwrap());
    let c = cid(7);
    let hs: Vec<_> = (0..4)
        .map(|i| {
            let (app, c) = (app.clone(), c.clone());
            std::thread::spawn(move || post(&app, &request(&c, &format!("eth{i}"), blue())))
        })
        .collect();
    for h in hs {
        let (st, b) = h.join().unwrap();
        assert_eq!(st, 201, "{b}");
    }
    assert_eq!(v.count("virtual-machine"), 1);
    assert_eq!(v.count("virtual-machine-interface"), 4);
    let hs: Vec<_> = (0..4)
        .map(|i| {
            let (app, c) = (app.clone(), c.clone());
            std::thread::spawn(move || delete(&app, &c, &format!("eth{i}")))
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap().0, 200);
    }
    assert_eq!(v.count("virtual-machine"), 0);
    assert_eq!(v.count("virtual-machine-interface"), 0);
}

#[test]
fn a_killed_task_loses_its_objects_without_a_del() {
    let v = vnc();
    let m = MarathonServer::start().unwrap();
    let app = app::start(&config(&v, &[m.url()])).unwrap();
    wait_for("the stream", 200, || m.subscribers() == 1);
    let (st, b) = post(&app, &request(&cid(1), "eth0", blue()));
    assert_eq!(st, 201);
    let ip = b["ip"].as_str().unwrap().to_owned();
    m.add_task("/web", "web.1", "agent-1", &[&ip], "TASK_RUNNING");
    let vm = vm_uuid_for(&cid(1));
    wait_for("the join", 200, || {
        v.store()
            .get(&vm)
            .and_then(|o| o.prop_str("display_name").map(str::to_owned))
            .as_deref()
            == Some("web.1")
    });
    m.kill_task("web.1");
    wait_for("the cleanup", 200, || {
        v.count("virtual-machine-interface") == 0 && v.count("virtual-machine") == 0
    });
    assert_eq!(v.count("instance-ip"), 0);
    assert_eq!(app.mgr.cache.len(), 0);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn a_lost_del_is_removed_by_the_reconciler_after_a_dropped_stream() {
    let v = vnc();
    let m = MarathonServer::start().unwrap();
    let mut c = config(&v, &[m.url()]);
    c.reconcile.grace_secs = 0;
    let app = app::start(&c).unwrap();
    wait_for("the stream", 200, || m.subscribers() == 1);
    let (_, b1) = post(&app, &request(&cid(1), "eth0", blue()));
    let (_, b2) = post(&app, &request(&cid(2), "eth0", blue()));
    let ip1 = b1["ip"].as_str().unwrap().to_owned();
    let ip2 = b2["ip"].as_str().unwrap().to_owned();
    m.add_task("/web", "web.1", "agent-1", &[&ip1], "TASK_RUNNING");
    m.add_task("/web", "web.2", "agent-1", &[&ip2], "TASK_RUNNING");
    wait_for("both joins", 200, || {
        app.mgr
            .cache
            .all()
            .iter()
            .filter(|o| o.task_id.is_some())
            .count()
            == 2
    });
    // web.1 dies while the manager is not listening: the event is lost, and so is the DEL.
    let lists = m.knobs.app_lists.load(std::sync::atomic::Ordering::SeqCst);
    m.remove_task_silently("web.1");
    m.drop_streams();
    wait_for("a re-list", 200, || {
        m.knobs.app_lists.load(std::sync::atomic::Ordering::SeqCst) > lists
    });
    wait_for("the reconcile", 200, || {
        v.count("virtual-machine-interface") == 1
    });
    assert!(
        v.store().get(&vm_uuid_for(&cid(2))).is_some(),
        "the running task keeps its objects"
    );
    assert!(v.store().get(&vm_uuid_for(&cid(1))).is_none());
    // The reconciler never touches what it does not own.
    assert!(v.count("virtual-network") >= 5);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn redirected_and_silent_streams_reconnect_and_relist() {
    let v = vnc();
    let leader = MarathonServer::start().unwrap();
    let standby = MarathonServer::start().unwrap();
    standby.set_leader(Some(&leader.url()));
    let app = app::start(&config(&v, &[standby.url()])).unwrap();
    wait_for("the redirected stream", 200, || leader.subscribers() == 1);
    assert_eq!(
        standby
            .knobs
            .stream_connects
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert_eq!(
        leader
            .knobs
            .refused
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "Accept was exactly text/event-stream"
    );
    // Silence longer than the stall timeout (1 s): reconnect, then a fresh list.
    let lists = leader
        .knobs
        .app_lists
        .load(std::sync::atomic::Ordering::SeqCst)
        + standby
            .knobs
            .app_lists
            .load(std::sync::atomic::Ordering::SeqCst);
    leader.set_silent(true);
    wait_for("a reconnect", 200, || {
        leader
            .knobs
            .stream_connects
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 2
    });
    leader.set_silent(false);
    wait_for("the re-list", 200, || {
        leader
            .knobs
            .app_lists
            .load(std::sync::atomic::Ordering::SeqCst)
            + standby
                .knobs
                .app_lists
                .load(std::sync::atomic::Ordering::SeqCst)
            > lists
    });
    let mut r = agent()
        .get(format!("http://{}/metrics", app.api.addr))
        .call()
        .unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    assert!(
        !text.contains("contrail_mesos_sse_reconnects_total 0\n"),
        "{text}"
    );
    app.shutdown(Duration::from_secs(2));
}
