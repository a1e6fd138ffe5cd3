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
    assert_eq!(a.index.to_string(), "0/1");
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
        // Refused by the shared vocabulary check before any VNC call.
        (
            "network-subnets",
            ContrailRequest {
                subnets: vec!["5.5.5.1/24".into()],
                ..blue()
            },
        ),
        (
            "security-groups",
            ContrailRequest {
                security_groups: vec![vec!["default-domain".into(), "sg".into()]],
                ..blue()
            },
        ),
        (
            "isolation",
            ContrailRequest {
                isolation: Some(contrail_mesos_api::Isolation::UserDefined),
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
    // The VM goes after its VMI (dependency order): wait for both, not just the first.
    wait_for("the reconcile", 200, || {
        v.count("virtual-machine-interface") == 1 && v.store().get(&vm_uuid_for(&cid(1))).is_none()
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

// ---------------------------------------------------------------------------------------
// Hostile clients and faults. Raw sockets so every byte is under the test's control.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};

mod common;
use common::*;

/// Sends `bytes` (a write error is fine: the server may close early) and returns the answer's
/// head (status line and headers), or "" when the server closed without one.
fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(bytes);
    read_head(&mut s)
}

fn read_head(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn status_of(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn get_status(addr: SocketAddr, path: &str) -> u16 {
    let a: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    a.get(format!("http://{addr}{path}"))
        .call()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[test]
fn a_huge_declared_body_costs_nothing() {
    let v = vnc();
    let app = app::start(&config(&v, &[])).unwrap();
    // tiny_http read the declared body after every answer and aborted the process on the
    // allocation; a length above isize::MAX killed the worker thread instead.
    for len in ["1099511627776", "9223372036854775808"] {
        for _ in 0..17 {
            let h = raw(
                app.api.addr,
                format!("GET /livez HTTP/1.1\r\nHost: m\r\nContent-Length: {len}\r\n\r\n")
                    .as_bytes(),
            );
            assert_eq!(status_of(&h), 200, "{h}");
        }
        let h = raw(
            app.api.addr,
            format!(
                "POST /v1/attachments HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {len}\r\n\r\n{{"
            )
            .as_bytes(),
        );
        assert_eq!(status_of(&h), 413, "{h}");
    }
    // u64::MAX is no length hyper accepts: a clean 4xx, nothing read.
    let h = raw(
        app.api.addr,
        b"GET /livez HTTP/1.1\r\nHost: m\r\nContent-Length: 18446744073709551615\r\n\r\n",
    );
    assert!((400..500).contains(&status_of(&h)), "{h}");
    assert_eq!(get_status(app.api.addr, "/livez"), 200);
    assert_eq!(post(&app, &request(&cid(1), "eth0", blue())).0, 201);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn silent_uploads_do_not_freeze_the_api() {
    let v = vnc();
    let mut c = config(&v, &[]);
    c.api.body_timeout_ms = 2_000;
    let app = app::start(&c).unwrap();
    // More silent uploads than workers (8): each declares a body and never sends it.
    let mut silent: Vec<TcpStream> = (0..24)
        .map(|_| {
            let mut s = TcpStream::connect(app.api.addr).unwrap();
            s.write_all(
                format!(
                    "POST /v1/attachments HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
            s
        })
        .collect();
    // Everything else is still served meanwhile.
    assert_eq!(get_status(app.api.addr, "/livez"), 200);
    assert_eq!(get_status(app.api.addr, "/healthz"), 200);
    assert_eq!(post(&app, &request(&cid(1), "eth0", blue())).0, 201);
    // And each silent upload ends with 408 once its body timeout passes.
    let s = &mut silent[0];
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let h = read_head(s);
    assert_eq!(status_of(&h), 408, "{h}");
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn a_giant_header_is_431_and_an_oversized_body_413() {
    let v = vnc();
    let app = app::start(&config(&v, &[])).unwrap();
    let big = "a".repeat(1 << 20);
    let h = raw(
        app.api.addr,
        format!("GET /livez HTTP/1.1\r\nHost: m\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    assert_eq!(status_of(&h), 431, "{h}");
    // Declared too large.
    let body = "x".repeat(2 << 20);
    let h = raw(
        app.api.addr,
        format!(
            "POST /v1/attachments HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(status_of(&h), 413, "{h}");
    // Chunked, so only counting tells.
    let mut req = format!(
        "POST /v1/attachments HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for _ in 0..40 {
        req.push_str(&format!("{:x}\r\n{}\r\n", 64 * 1024, "y".repeat(64 * 1024)));
    }
    req.push_str("0\r\n\r\n");
    let h = raw(app.api.addr, req.as_bytes());
    assert_eq!(status_of(&h), 413, "{h}");
    assert_eq!(get_status(app.api.addr, "/livez"), 200);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn without_a_token_the_api_stays_on_loopback() {
    let v = vnc();
    let mut c = config(&v, &[]);
    c.api.token = String::new();
    c.api.listen = "0.0.0.0:0".into();
    let e = app::start(&c).err().expect("an open API must be refused");
    assert!(e.to_string().contains("allow-unauthenticated"), "{e}");
    // Loopback without a token: served, no authentication.
    c.api.listen = "127.0.0.1:0".into();
    let app = app::start(&c).unwrap();
    let (st, _) = post(&app, &request(&cid(1), "eth0", blue()));
    assert_eq!(st, 201);
    app.shutdown(Duration::from_secs(1));
    // The default is loopback.
    assert!(Config::default().api.listen.starts_with("127.0.0.1:"));
}

#[test]
fn health_answers_while_vnc_hangs_and_readiness_follows_vnc() {
    let v = vnc();
    let mut c = config(&v, &[]);
    c.api.probe_interval_secs = 1;
    c.vnc.timeout_secs = 2;
    c.vnc.attempts = 1;
    let app = Arc::new(app::start(&c).unwrap());
    wait_for("ready", 100, || get_status(app.api.addr, "/readyz") == 200);
    // VNC answers nothing in time: every worker (8) blocks on it, and more requests queue.
    v.set_delay(Duration::from_secs(5));
    let hs: Vec<_> = (0..12)
        .map(|i| {
            let app = app.clone();
            std::thread::spawn(move || post(&app, &request(&cid(50 + i), "eth0", blue())).0)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get_status(app.api.addr, "/livez"), 200);
    let code = get_status(app.api.addr, "/healthz");
    assert!(
        code == 200 || code == 503,
        "{code}: answered, without waiting on VNC"
    );
    v.set_delay(Duration::ZERO);
    for h in hs {
        h.join().unwrap();
    }
    // VNC failing: readiness says so (and liveness does not).
    v.fail_next(1_000_000, 500, "/");
    wait_for("not ready", 100, || {
        get_status(app.api.addr, "/readyz") == 503
    });
    assert_eq!(get_status(app.api.addr, "/livez"), 200);
    v.fail_next(0, 500, "/");
    wait_for("ready again", 100, || {
        get_status(app.api.addr, "/readyz") == 200
    });
}

/// The manager binary under a low RLIMIT_NOFILE (a child process, killed on drop).
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn out_of_descriptors_the_api_pauses_and_comes_back() {
    use std::os::unix::process::CommandExt as _;
    let v = vnc();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfgp = dir.path().join("m.toml");
    std::fs::write(
        &cfgp,
        format!(
            "[api]\nlisten = \"{addr}\"\nmax-connections = 100000\n[vnc]\nurls = [\"{}\"]\n",
            v.url()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_contrail-mesos-manager"));
    cmd.arg("--config")
        .arg(&cfgp)
        .arg("--log-file")
        .arg(dir.path().join("m.log"));
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let _child = Child(cmd.spawn().expect("manager binary"));
    wait_for("the manager", 200, || get_status(addr, "/livez") == 200);
    // Hold more connections than the manager has descriptors.
    let held: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok())
        .collect();
    assert!(held.len() > 64, "only {} connections", held.len());
    // Give the accept loop time to hit the limit.
    std::thread::sleep(Duration::from_millis(500));
    drop(held);
    wait_for("the API after the squeeze", 200, || {
        get_status(addr, "/livez") == 200
    });
    let a: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let m = a
        .get(format!("http://{addr}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let n: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("contrail_mesos_accept_exhausted_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        n > 0,
        "the squeeze never ran the process out of descriptors:\n{m}"
    );
}

// ---------------------------------------------------------------------------------------
// The reconciler against Marathon as it misbehaves.

fn joined_setup(m: &MarathonServer, app: &App, n: u32) {
    wait_for("the stream", 200, || m.subscribers() == 1);
    for i in 0..n {
        let (st, b) = post(app, &request(&cid(i), "eth0", blue()));
        assert_eq!(st, 201, "{b}");
        let ip = b["ip"].as_str().unwrap().to_owned();
        m.add_task(
            "/web",
            &format!("web.{i}"),
            "agent-1",
            &[&ip],
            "TASK_RUNNING",
        );
    }
    wait_for("the joins", 200, || {
        app.mgr
            .cache
            .all()
            .iter()
            .filter(|o| o.task_id.is_some())
            .count()
            == n as usize
    });
}

fn relist(m: &MarathonServer, app: &App) {
    use std::sync::atomic::Ordering::SeqCst;
    let runs = app.mgr.metrics.reconcile_runs.load(SeqCst);
    m.drop_streams();
    wait_for("a full pass", 300, || {
        app.mgr.metrics.reconcile_runs.load(SeqCst) > runs
    });
}

#[test]
fn an_empty_listing_deletes_nothing_unconfirmed() {
    use std::sync::atomic::Ordering::SeqCst;
    let v = vnc();
    let m = MarathonServer::start().unwrap();
    let mut c = config(&v, &[m.url()]);
    c.reconcile.grace_secs = 0;
    c.reconcile.confirm_delay_ms = 100;
    let app = app::start(&c).unwrap();
    joined_setup(&m, &app, 6);
    // One 200 with no app at all, then the truth again.
    m.knobs.empty_lists.store(1, SeqCst);
    relist(&m, &app);
    assert!(app.mgr.metrics.reconcile_held.load(SeqCst) >= 1);
    assert_eq!(v.count("virtual-machine-interface"), 6);
    assert_eq!(v.count("virtual-machine"), 6);
    // A shrunken listing: 4 of 6 gone at once is held, and deleted once confirmed.
    for i in 0..4 {
        m.remove_task_silently(&format!("web.{i}"));
    }
    relist(&m, &app);
    assert_eq!(v.count("virtual-machine-interface"), 2);
    assert!(app.mgr.metrics.reconcile_held.load(SeqCst) >= 2);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn a_listing_without_tasks_deletes_nothing_and_pods_404_is_no_pods() {
    use std::sync::atomic::Ordering::SeqCst;
    let v = vnc();
    let m = MarathonServer::start().unwrap();
    m.knobs.no_pods.store(true, SeqCst);
    let mut c = config(&v, &[m.url()]);
    c.reconcile.grace_secs = 0;
    let app = app::start(&c).unwrap();
    joined_setup(&m, &app, 2);
    // tasksRunning = 2 and no `tasks` key: not "zero tasks".
    m.knobs.omit_tasks.store(true, SeqCst);
    relist(&m, &app);
    assert!(app.mgr.metrics.marathon_incomplete.load(SeqCst) >= 1);
    assert_eq!(v.count("virtual-machine-interface"), 2);
    // Complete again (and still no pods endpoint): a lost DEL is cleaned up.
    m.knobs.omit_tasks.store(false, SeqCst);
    m.remove_task_silently("web.0");
    relist(&m, &app);
    wait_for("the cleanup", 200, || {
        v.count("virtual-machine-interface") == 1
    });
    assert!(v.store().get(&vm_uuid_for(&cid(1))).is_some());
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn a_task_on_another_node_with_the_same_address_is_not_joined() {
    let v = vnc();
    let m = MarathonServer::start().unwrap();
    let app = app::start(&config(&v, &[m.url()])).unwrap();
    wait_for("the stream", 200, || m.subscribers() == 1);
    let (_, b) = post(&app, &request(&cid(1), "eth0", blue()));
    let ip = b["ip"].as_str().unwrap().to_owned();
    // agent-2 reports the same address (its own bridge network): not ours, never joined.
    m.add_task("/other", "other.1", "agent-2", &[&ip], "TASK_RUNNING");
    relist(&m, &app);
    assert_eq!(app.mgr.cache.all()[0].task_id, None);
    // So the other node's task ending changes nothing.
    m.kill_task("other.1");
    relist(&m, &app);
    assert_eq!(v.count("virtual-machine-interface"), 1);
    // Its own task on its own node joins it.
    m.add_task("/web", "web.1", "agent-1", &[&ip], "TASK_RUNNING");
    wait_for("the join", 200, || {
        app.mgr
            .cache
            .all()
            .first()
            .and_then(|o| o.task_id.clone())
            .as_deref()
            == Some("web.1")
    });
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn a_task_that_ends_before_reporting_its_address_is_cleaned_up_at_the_next_pass() {
    use std::sync::atomic::Ordering::SeqCst;
    let v = vnc();
    let m = MarathonServer::start().unwrap();
    // The grace (3600 s) would keep the attachment for an hour: it must not be what frees it.
    let app = app::start(&config(&v, &[m.url()])).unwrap();
    wait_for("the stream", 200, || m.subscribers() == 1);
    m.add_task("/web", "web.1", "agent-1", &[], "TASK_STAGING");
    let events = app.mgr.metrics.sse_events.load(SeqCst);
    wait_for("the staging event", 200, || {
        app.mgr.metrics.sse_events.load(SeqCst) > events
    });
    // The ADD runs while the task is staging; the task is killed before it reports an
    // address, and no DEL comes.
    assert_eq!(post(&app, &request(&cid(1), "eth0", blue())).0, 201);
    let events = app.mgr.metrics.sse_events.load(SeqCst);
    m.kill_task("web.1");
    wait_for("the kill event", 200, || {
        app.mgr.metrics.sse_events.load(SeqCst) > events
    });
    relist(&m, &app);
    wait_for("the cleanup", 100, || {
        v.count("virtual-machine-interface") == 0
    });
    assert_eq!(v.count("virtual-machine"), 0);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn a_container_its_agent_still_runs_is_never_deleted_and_joins_follow_the_agent() {
    use contrail_integration::mesos_agent::OperatorApi;
    use std::sync::atomic::Ordering::SeqCst;
    let v = vnc();
    let m = MarathonServer::start().unwrap();
    let agent = OperatorApi::start().unwrap();
    let mut c = config(&v, &[m.url()]);
    c.reconcile.grace_secs = 0;
    c.mesos.agent_url = agent.url();
    let app = app::start(&c).unwrap();
    wait_for("the stream", 200, || m.subscribers() == 1);
    let (_, b) = post(&app, &request(&cid(1), "eth0", blue()));
    let ip = b["ip"].as_str().unwrap().to_owned();
    // Two tasks report the address on the node (ambiguous by address); the agent says the
    // container is web.2's.
    agent.add_container(&cid(1), "web.2");
    m.add_task("/web", "web.1", "agent-1", &[&ip], "TASK_RUNNING");
    m.add_task("/web", "web.2", "agent-1", &[&ip], "TASK_RUNNING");
    relist(&m, &app);
    wait_for("the join by identity", 100, || {
        app.mgr.cache.all()[0].task_id.as_deref() == Some("web.2")
    });
    // Marathon loses the task (no event, no DEL) while the agent still runs the container:
    // kept.
    m.remove_task_silently("web.1");
    m.remove_task_silently("web.2");
    relist(&m, &app);
    assert!(app.mgr.metrics.agent_kept.load(SeqCst) >= 1);
    assert_eq!(v.count("virtual-machine-interface"), 1);
    // The agent no longer runs it: deleted.
    agent.remove_container(&cid(1));
    relist(&m, &app);
    wait_for("the cleanup", 100, || {
        v.count("virtual-machine-interface") == 0
    });
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn a_container_created_during_a_pass_is_not_joined_to_the_dead_task_that_had_its_address() {
    let v = vnc();
    let m = MarathonServer::start().unwrap();
    let app = Arc::new(app::start(&config(&v, &[m.url()])).unwrap());
    wait_for("the stream", 200, || m.subscribers() == 1);
    let (_, b1) = post(&app, &request(&cid(1), "eth0", blue()));
    let ip = b1["ip"].as_str().unwrap().to_owned();
    m.add_task("/web", "web.1", "agent-1", &[&ip], "TASK_RUNNING");
    wait_for("the join", 200, || {
        app.mgr
            .cache
            .all()
            .first()
            .and_then(|o| o.task_id.clone())
            .as_deref()
            == Some("web.1")
    });
    // While the next listing is on its way (it still has web.1), web.1's container goes with
    // its DEL and a new container on the node gets the freed address.
    let (a, ip2) = (app.clone(), ip.clone());
    let got = Arc::new(std::sync::Mutex::new(None));
    let g = got.clone();
    *m.knobs.after_next_list.lock().unwrap() = Some(Box::new(move || {
        assert_eq!(delete(&a, &cid(1), "eth0").0, 200);
        let (st, b2) = post(&a, &request(&cid(2), "eth0", blue()));
        assert_eq!(st, 201);
        *g.lock().unwrap() = b2["ip"].as_str().map(str::to_owned);
        let _ = ip2;
    }));
    relist(&m, &app);
    assert_eq!(
        got.lock().unwrap().as_deref(),
        Some(ip.as_str()),
        "the new container reuses the address"
    );
    assert_eq!(
        app.mgr
            .cache
            .get(&(cid(2), "eth0".into()))
            .and_then(|o| o.task_id),
        None
    );
    // Marathon catches up: web.1 is gone. The new container is alive and must stay.
    m.remove_task_silently("web.1");
    relist(&m, &app);
    assert!(v.store().get(&vm_uuid_for(&cid(2))).is_some());
    assert_eq!(v.count("virtual-machine-interface"), 1);
}

#[test]
fn a_trickling_head_and_an_idle_connection_are_closed() {
    let v = vnc();
    let mut c = config(&v, &[]);
    c.api.header_timeout_ms = 500;
    c.api.idle_timeout_secs = 1;
    let app = app::start(&c).unwrap();
    // Slowloris: a head that never ends. The server closes it (EOF) well before the client's
    // own 20 s read timeout.
    let mut s = TcpStream::connect(app.api.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /livez HTTP/1.1\r\nHost: m\r\nX-Slow: a")
        .unwrap();
    let mut b = [0u8; 256];
    let r = s.read(&mut b);
    assert!(
        matches!(r, Ok(0))
            || matches!(&r, Ok(n) if String::from_utf8_lossy(&b[..*n]).starts_with("HTTP/1.1 408"))
            || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the server did not close a trickling head: {r:?}"
    );
    // Keep-alive: one answer, then silence; the server closes the idle connection.
    let mut s = TcpStream::connect(app.api.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /livez HTTP/1.1\r\nHost: m\r\n\r\n")
        .unwrap();
    let h = read_head(&mut s);
    assert_eq!(status_of(&h), 200, "{h}");
    let mut rest = Vec::new();
    let r = s.read_to_end(&mut rest);
    assert!(r.is_ok(), "the idle connection was not closed: {r:?}");
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn the_stream_backoff_restarts_from_the_minimum_on_every_connect() {
    use std::sync::atomic::Ordering::SeqCst;
    let v = vnc();
    let m = MarathonServer::start().unwrap();
    // Five streams in a row are accepted and closed before any event.
    m.knobs.close_next_streams.store(5, SeqCst);
    let mut c = config(&v, &[m.url()]);
    c.marathon.backoff_min_ms = 50;
    c.marathon.backoff_max_ms = 10_000;
    let app = app::start(&c).unwrap();
    wait_for("the stream", 200, || m.subscribers() == 1);
    // Each close is followed by one back-off of the minimum (reset on connect): 5 x 50 ms.
    // Reset only on an event, it doubled on: 50+100+...+800 = 1.55 s.
    let ms = app.mgr.metrics.sse_backoff_ms.load(SeqCst);
    assert_eq!(ms, 5 * 50, "backed off {ms} ms in total");
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn the_first_pass_uses_the_start_up_scan_and_later_passes_scan_again() {
    use std::sync::atomic::Ordering::SeqCst;
    let v = vnc();
    // Three attachments registered by an earlier run, their tasks running.
    let app = app::start(&config(&v, &[])).unwrap();
    let mut ips = Vec::new();
    for i in 0..3 {
        let (st, b) = post(&app, &request(&cid(i), "eth0", blue()));
        assert_eq!(st, 201, "{b}");
        ips.push(b["ip"].as_str().unwrap().to_owned());
    }
    app.shutdown(Duration::from_secs(1));
    let m = MarathonServer::start().unwrap();
    for (i, ip) in ips.iter().enumerate() {
        m.add_task_silently(
            "/web",
            &format!("web.{i}"),
            "agent-1",
            &[ip],
            "TASK_RUNNING",
        );
    }
    let lists = || v.calls("GET /virtual-machine-interfaces");
    let before = lists();
    let app = app::start(&config(&v, &[m.url()])).unwrap();
    common::wait_for("the first pass", 200, || {
        app.mgr.metrics.reconcile_runs.load(SeqCst) >= 1
    });
    // One scan for the rebuild and the first pass; the pass still joined every attachment.
    assert_eq!(lists() - before, 1);
    assert_eq!(app.mgr.metrics.joins.load(SeqCst), 3);
    assert!(app.mgr.cache.all().iter().all(|o| o.task_id.is_some()));
    // A later pass scans VNC afresh.
    relist(&m, &app);
    assert_eq!(lists() - before, 2);
    app.shutdown(Duration::from_secs(1));
}
