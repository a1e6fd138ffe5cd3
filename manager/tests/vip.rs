//! Marathon VIPs as Contrail native load balancers, against the VNC stand-in (which keeps the
//! real server's load-balancer shapes and delete rules) and the Marathon stand-in (which
//! serves app definitions with their port labels and health checks, and health events).

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use common::wait_for;
use contrail_integration::marathon::MarathonServer;
use contrail_integration::vnc::VncServer;
use contrail_mesos_manager::app::{self, App};
use contrail_mesos_manager::config::Config;
use serde_json::{Value, json};

struct Rig {
    v: VncServer,
    m: MarathonServer,
    app: Arc<App>,
}

const LB_TYPES: [&str; 5] = [
    "loadbalancer",
    "loadbalancer-listener",
    "loadbalancer-healthmonitor",
    "loadbalancer-pool",
    "loadbalancer-member",
];

fn rig() -> Rig {
    rig_with(|_| {})
}

fn rig_with(tweak: impl FnOnce(&mut Config)) -> Rig {
    let v = VncServer::start().expect("vnc");
    let m = MarathonServer::start().unwrap();
    let mut c = Config::default();
    c.api.listen = "127.0.0.1:0".into();
    c.api.token = common::TOKEN.into();
    c.vnc.urls = vec![v.url()];
    c.vnc.backoff_ms = 10;
    c.cluster.subnet = "10.32.0.0/16".into();
    c.marathon.urls = vec![m.url()];
    c.marathon.backoff_min_ms = 50;
    c.reconcile.interval_secs = 3600;
    c.reconcile.grace_secs = 0;
    c.vip.min_event_gap_ms = 50;
    tweak(&mut c);
    let app = Arc::new(app::start(&c).unwrap());
    Rig { v, m, app }
}

/// An app whose port mapping (container port 8080) carries `VIP_0: vip`.
fn web(vip: &str, health: bool) -> Value {
    let mut a = json!({"container": {"type": "MESOS", "portMappings": [
        {"containerPort": 8080, "protocol": "tcp", "name": "http", "labels": {"VIP_0": vip}}]}});
    if health {
        a["healthChecks"] = json!([{"protocol": "MESOS_TCP", "portIndex": 0, "intervalSeconds": 5,
            "timeoutSeconds": 2, "maxConsecutiveFailures": 3}]);
    }
    a
}

impl Rig {
    fn pass(&self) {
        self.app
            .watcher
            .as_ref()
            .unwrap()
            .relist_and_reconcile()
            .unwrap();
    }

    fn objs(&self, ty: &str) -> Vec<(Vec<String>, Value)> {
        let s = self.v.store();
        s.list_type(ty)
            .into_iter()
            .map(|o| (o.fq_name.clone(), Value::Object(o.props.clone())))
            .collect()
    }

    /// (address, port) of every member.
    fn members(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .objs("loadbalancer-member")
            .into_iter()
            .map(|(_, p)| {
                let m = &p["loadbalancer_member_properties"];
                (
                    m["address"].as_str().unwrap().to_owned(),
                    m["protocol_port"].as_u64().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    fn counts(&self) -> Vec<(&'static str, usize)> {
        let s = self.v.store();
        let mut v: Vec<(&'static str, usize)> = LB_TYPES.iter().map(|t| (*t, s.count(t))).collect();
        v.push((
            "virtual-machine-interface",
            s.count("virtual-machine-interface"),
        ));
        v.push(("instance-ip", s.count("instance-ip")));
        v
    }

    fn nothing_left(&self) -> bool {
        self.counts().iter().all(|(_, n)| *n == 0)
    }
}

fn ann(p: &Value, k: &str) -> Option<String> {
    p["annotations"]["key_value_pair"]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == k)
        .and_then(|kv| kv["value"].as_str())
        .map(str::to_owned)
}

#[test]
fn a_named_vip_follows_its_tasks_health_and_app() {
    let r = rig();
    r.m.set_app_definition("/web", &web("/web:80", true));
    r.m.add_task("/web", "web.1", "agent-1", &["10.32.0.2"], "TASK_RUNNING");
    r.m.add_task("/web", "web.2", "agent-1", &["10.32.0.3"], "TASK_RUNNING");
    r.m.set_task_health("web.1", true);
    r.m.set_task_health("web.2", true);
    r.pass();

    // The loadbalancer: native, its VIP address on the VIP network, named by DC/OS' DNS name.
    let lbs = r.objs("loadbalancer");
    assert_eq!(lbs.len(), 1, "{lbs:?}");
    let (fq, lb) = &lbs[0];
    assert_eq!(fq.join(":"), "default-domain:default-project:mesos-vip_web");
    assert_eq!(lb["display_name"], "web.marathon.l4lb.thisdcos.directory");
    assert_eq!(
        ann(lb, "dns-name").as_deref(),
        Some("web.marathon.l4lb.thisdcos.directory")
    );
    assert_eq!(
        ann(lb, "created-by").as_deref(),
        Some("contrail-mesos-manager")
    );
    assert_eq!(ann(lb, "cluster").as_deref(), Some("mesos"));
    assert_eq!(ann(lb, "apps").as_deref(), Some("/web"));
    assert_eq!(lb["loadbalancer_provider"], "native");
    let vip: std::net::Ipv4Addr = lb["loadbalancer_properties"]["vip_address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        "10.32.0.0/16"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&vip),
        "{vip}"
    );
    assert!(lb["loadbalancer_properties"]["vip_subnet_id"].is_string());
    {
        let s = r.v.store();
        assert!(
            s.uuid_of(
                "virtual-network",
                &[
                    "default-domain".into(),
                    "default-project".into(),
                    "mesos-vip-network".into()
                ]
            )
            .is_some()
        );
        let iips = s.list_type("instance-ip");
        assert_eq!(iips.len(), 1);
        assert_eq!(iips[0].props["instance_ip_address"], vip.to_string());
    }
    let l = r.objs("loadbalancer-listener");
    assert_eq!(l.len(), 1);
    assert_eq!(
        l[0].1["loadbalancer_listener_properties"]["protocol"],
        "TCP"
    );
    assert_eq!(
        l[0].1["loadbalancer_listener_properties"]["protocol_port"],
        80
    );
    let hm = r.objs("loadbalancer-healthmonitor");
    assert_eq!(hm.len(), 1);
    assert_eq!(
        hm[0].1["loadbalancer_healthmonitor_properties"]["monitor_type"],
        "TCP"
    );
    assert_eq!(hm[0].1["loadbalancer_healthmonitor_properties"]["delay"], 5);
    assert_eq!(r.objs("loadbalancer-pool").len(), 1);
    assert_eq!(
        r.members(),
        [
            ("10.32.0.2".to_owned(), 8080),
            ("10.32.0.3".to_owned(), 8080)
        ]
    );
    // A second pass changes nothing.
    let before = r.v.store().count("loadbalancer-member");
    r.pass();
    assert_eq!(r.v.store().count("loadbalancer-member"), before);

    // Scale up: the new task joins once it is healthy (not before).
    r.m.add_task("/web", "web.3", "agent-1", &["10.32.0.4"], "TASK_RUNNING");
    r.pass();
    assert_eq!(r.members().len(), 2, "not healthy yet: not a member");
    r.m.set_task_health("web.3", true);
    wait_for(
        "the healthy task to become a member (event-driven pass)",
        100,
        || r.members().len() == 3,
    );
    // A task fails its health check: out of the pool, through the health event alone.
    r.m.set_task_health("web.2", false);
    wait_for("the unhealthy task's member to go", 100, || {
        r.members()
            == [
                ("10.32.0.2".to_owned(), 8080),
                ("10.32.0.4".to_owned(), 8080),
            ]
    });
    // Scale down: the killed task's member goes.
    r.m.kill_task("web.1");
    r.pass();
    assert_eq!(r.members(), [("10.32.0.4".to_owned(), 8080)]);

    // The app goes: every load-balancer object, the VIP port and its address go.
    r.m.kill_task("web.2");
    r.m.kill_task("web.3");
    r.m.remove_app_definition("/web");
    r.pass();
    assert!(r.nothing_left(), "{:?}", r.counts());
    assert_eq!(r.app.mgr.metrics.vip_loadbalancers.load(Relaxed), 0);
}

#[test]
fn two_apps_on_one_vip_share_it_and_a_bad_label_is_reported_not_fatal() {
    let r = rig();
    r.m.set_app_definition("/a", &web("/web:80", false));
    r.m.set_app_definition("/b", &web("/web:80", false));
    r.m.set_app_definition("/c", &web("/web:http", false));
    r.m.add_task("/a", "a.1", "agent-1", &["10.32.0.2"], "TASK_RUNNING");
    r.m.add_task("/b", "b.1", "agent-1", &["10.32.0.3"], "TASK_RUNNING");
    r.m.add_task("/c", "c.1", "agent-1", &["10.32.0.4"], "TASK_RUNNING");
    r.pass();
    // One VIP, one pool, both apps' tasks in it (DC/OS balances a VIP across every app that
    // declares it); /c's label is reported, its task untouched.
    let lbs = r.objs("loadbalancer");
    assert_eq!(lbs.len(), 1);
    assert_eq!(ann(&lbs[0].1, "apps").as_deref(), Some("/a,/b"));
    assert_eq!(
        r.members(),
        [
            ("10.32.0.2".to_owned(), 8080),
            ("10.32.0.3".to_owned(), 8080)
        ]
    );
    let metrics = &r.app.mgr.metrics;
    assert_eq!(metrics.vip_bad_labels.load(Relaxed), 1);
    assert!(metrics.render().contains("contrail_mesos_vip_bad_labels 1"));
    assert_eq!(r.m.tasks().len(), 3);

    // /a goes: the VIP stays for /b.
    r.m.kill_task("a.1");
    r.m.remove_app_definition("/a");
    r.pass();
    assert_eq!(r.objs("loadbalancer").len(), 1);
    assert_eq!(
        ann(&r.objs("loadbalancer")[0].1, "apps").as_deref(),
        Some("/b")
    );
    assert_eq!(r.members(), [("10.32.0.3".to_owned(), 8080)]);
    // /b drops the label: nothing is left.
    r.m.set_app_definition(
        "/b",
        &json!({"container": {"portMappings": [{"containerPort": 8080}]}}),
    );
    r.pass();
    assert!(r.nothing_left(), "{:?}", r.counts());
    // The bad label is fixed: the gauge follows.
    r.m.set_app_definition("/c", &web("/c:81", false));
    r.pass();
    assert_eq!(metrics.vip_bad_labels.load(Relaxed), 0);
    assert_eq!(r.members(), [("10.32.0.4".to_owned(), 8080)]);
}

#[test]
fn an_address_vip_takes_that_address_and_one_outside_the_vip_network_makes_nothing() {
    let r = rig();
    r.m.set_app_definition("/db", &web("10.32.0.100:5432", false));
    r.m.add_task("/db", "db.1", "agent-1", &["10.32.0.2"], "TASK_RUNNING");
    r.m.set_app_definition("/x", &web("192.0.2.10:80", false));
    r.m.add_task("/x", "x.1", "agent-1", &["10.32.0.3"], "TASK_RUNNING");
    r.pass();
    let lbs = r.objs("loadbalancer");
    assert_eq!(lbs.len(), 1, "{lbs:?}");
    assert_eq!(
        lbs[0].1["loadbalancer_properties"]["vip_address"],
        "10.32.0.100"
    );
    assert_eq!(lbs[0].1["display_name"], "10.32.0.100");
    assert_eq!(r.members(), [("10.32.0.2".to_owned(), 8080)]);
    // The refused VIP left no port or address behind, and counts as an error.
    assert_eq!(r.v.store().count("virtual-machine-interface"), 1);
    assert_eq!(r.v.store().count("instance-ip"), 1);
    assert!(r.app.mgr.metrics.vip_errors.load(Relaxed) >= 1);
    r.m.kill_task("db.1");
    r.m.kill_task("x.1");
    r.m.remove_app_definition("/db");
    r.m.remove_app_definition("/x");
    r.pass();
    assert!(r.nothing_left(), "{:?}", r.counts());
}

#[test]
fn an_incomplete_listing_adds_but_never_removes_members() {
    let r = rig();
    r.m.set_app_definition("/web", &web("/web:80", false));
    r.m.add_task("/web", "web.1", "agent-1", &["10.32.0.2"], "TASK_RUNNING");
    r.m.add_task("/web", "web.2", "agent-1", &["10.32.0.3"], "TASK_RUNNING");
    r.pass();
    assert_eq!(r.members().len(), 2);
    // Marathon counts 2 running tasks but embeds none: not the whole truth.
    r.m.knobs
        .omit_tasks
        .store(true, std::sync::atomic::Ordering::SeqCst);
    r.pass();
    assert_eq!(
        r.members().len(),
        2,
        "members kept on an incomplete listing"
    );
    assert_eq!(r.objs("loadbalancer").len(), 1);
    r.m.knobs
        .omit_tasks
        .store(false, std::sync::atomic::Ordering::SeqCst);
    r.m.kill_task("web.2");
    r.pass();
    assert_eq!(r.members(), [("10.32.0.2".to_owned(), 8080)]);
}

/// Cost of VIP passes: one VIP whose app scales to `BENCH_VIP_TASKS` tasks (default 500).
#[test]
#[ignore = "benchmark: cargo test --release -p contrail-mesos-manager --test vip -- --ignored --nocapture"]
fn bench_vip_passes() {
    let n: usize = std::env::var("BENCH_VIP_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let r = rig();
    r.m.set_app_definition("/web", &web("/web:80", false));
    for i in 0..n {
        let ip = format!("10.32.{}.{}", 1 + i / 250, 1 + i % 250);
        r.m.add_task_silently(
            "/web",
            &format!("web.{i}"),
            "agent-1",
            &[&ip],
            "TASK_RUNNING",
        );
    }
    let calls = |r: &Rig| -> u64 {
        r.app
            .mgr
            .metrics
            .vnc_calls
            .iter()
            .map(|c| c.load(Relaxed))
            .sum()
    };
    let w = r.app.watcher.as_ref().unwrap();
    for (what, f) in [
        ("first pass (creates the LB and every member)", 0usize),
        ("steady pass (nothing changes)", 1),
        ("one task gone", 2),
    ] {
        if f == 2 {
            r.m.kill_task("web.0");
        }
        let c0 = calls(&r);
        let t = std::time::Instant::now();
        w.relist_and_reconcile().unwrap();
        println!(
            "{what}: {n} tasks, {:.1} ms, {} VNC calls",
            t.elapsed().as_secs_f64() * 1e3,
            calls(&r) - c0
        );
    }
    assert_eq!(r.v.store().count("loadbalancer-member"), n - 1);
}

/// Leads while `leading`, and for at most `fences` more fence checks (a lease that ends).
struct Lease {
    leading: std::sync::atomic::AtomicBool,
    fences: std::sync::atomic::AtomicU64,
}

impl contrail_mesos_manager::leader::Leadership for Lease {
    fn is_leader(&self) -> bool {
        self.leading.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn fence(&self) -> Result<(), contrail_mesos_manager::leader::NotLeader> {
        use std::sync::atomic::Ordering::SeqCst;
        let left = self
            .fences
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
        if self.is_leader() && left.is_ok() {
            Ok(())
        } else {
            Err(contrail_mesos_manager::leader::NotLeader(
                "test: lease gone".into(),
            ))
        }
    }
    fn elections_won(&self) -> u64 {
        0
    }
    fn role(&self) -> &'static str {
        "test"
    }
}

/// A watcher of `r`'s manager with VIPs, acting under `fences` fence checks.
fn watcher_with_lease(r: &Rig, fences: u64) -> contrail_mesos_manager::watcher::Watcher {
    use contrail_mesos_manager::marathon::{HttpMarathon, HttpMarathonConfig, MarathonAuth};
    use contrail_mesos_manager::watcher::{WatchConfig, Watcher};
    use std::time::Duration;
    let marathon = Arc::new(HttpMarathon::new(HttpMarathonConfig {
        urls: vec![r.m.url()],
        auth: MarathonAuth::None,
        timeout: Duration::from_secs(5),
        stall_timeout: Duration::from_secs(1),
        tls: Default::default(),
    }));
    let mut w = Watcher::new(
        r.app.mgr.clone(),
        marathon,
        WatchConfig {
            policy: contrail_mesos_manager::reconcile::Policy {
                grace_secs: 0,
                delete_unjoined: true,
            },
            interval: Duration::from_secs(3600),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
            max_delete_percent: 100,
            confirm_delay: Duration::from_millis(10),
        },
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    )
    .with_leadership(Arc::new(Lease {
        leading: std::sync::atomic::AtomicBool::new(true),
        fences: std::sync::atomic::AtomicU64::new(fences),
    }));
    w.vips = Some(Arc::new(contrail_mesos_manager::vip::Vips::new(
        contrail_mesos_manager::vip::VipNames {
            network: "mesos-vip-network".into(),
            domain: "thisdcos.directory".into(),
        },
        Duration::from_secs(1),
    )));
    w
}

#[test]
fn only_a_leader_whose_lease_holds_makes_or_removes_a_vip() {
    // The manager's own (standalone) watcher makes no VIP: only the watchers below act.
    let r = rig_with(|c| c.vip.enabled = false);
    r.m.set_app_definition("/web", &web("/web:80", false));
    r.m.add_task("/web", "web.1", "agent-1", &["10.32.0.2"], "TASK_RUNNING");
    // The lease ends right after the pass starts: the VIP pass decides, but nothing is sent.
    let fenced = r.app.mgr.metrics.fenced_writes.load(Relaxed);
    watcher_with_lease(&r, 1).relist_and_reconcile().unwrap();
    assert!(r.nothing_left(), "{:?}", r.counts());
    assert!(r.app.mgr.metrics.fenced_writes.load(Relaxed) > fenced);
    // A leader makes it.
    watcher_with_lease(&r, u64::MAX)
        .relist_and_reconcile()
        .unwrap();
    assert_eq!(r.objs("loadbalancer").len(), 1);
    assert_eq!(r.members().len(), 1);
    // The app goes; a deposed leader removes nothing, the leader everything.
    r.m.kill_task("web.1");
    r.m.remove_app_definition("/web");
    watcher_with_lease(&r, 1).relist_and_reconcile().unwrap();
    assert_eq!(r.objs("loadbalancer").len(), 1);
    watcher_with_lease(&r, u64::MAX)
        .relist_and_reconcile()
        .unwrap();
    assert!(r.nothing_left(), "{:?}", r.counts());
}
