//! URL lists for VNC and Marathon: the first server of the list down from the start, then the
//! one in use going down (or hanging) while the manager works. Each "server" is a relay in
//! front of one stand-in, so the servers of a list share their state as a real cluster's do.
//! No root needed; everything is on 127.0.0.1.

use std::time::Duration;

use contrail_integration::marathon::MarathonServer;
use contrail_integration::proxy::TcpProxy;
use contrail_integration::vnc::VncServer;
use contrail_mesos_manager::app::{self, App};
use contrail_mesos_manager::config::Config;
use serde_json::Value;

mod common;
use common::*;

/// A URL nothing listens on.
fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

fn config(vnc_urls: Vec<String>, marathon_urls: Vec<String>) -> Config {
    let mut c = Config::default();
    c.api.listen = "127.0.0.1:0".into();
    c.api.token = TOKEN.into();
    c.vnc.urls = vnc_urls;
    c.vnc.backoff_ms = 10;
    c.vnc.timeout_secs = 2;
    c.vnc.connect_timeout_secs = 1;
    c.cluster.subnet = "10.32.0.0/16".into();
    c.marathon.urls = marathon_urls;
    c.marathon.timeout_secs = 2;
    c.marathon.stall_timeout_secs = 1;
    c.marathon.backoff_min_ms = 50;
    c.marathon.backoff_max_ms = 200;
    c.reconcile.interval_secs = 3600;
    c.reconcile.grace_secs = 3600;
    c
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn attach(app: &App, cid: &str) -> (u16, Value) {
    let mut r = http()
        .post(format!("http://{}/v1/attachments", app.api.addr))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send_json(blue_request(cid))
        .expect("post");
    let st = r.status().as_u16();
    (st, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn detach(app: &App, cid: &str) -> u16 {
    http()
        .delete(format!("http://{}/v1/attachments/{cid}/eth0", app.api.addr))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .expect("delete")
        .status()
        .as_u16()
}

fn cid(n: u32) -> String {
    format!("fa110fe7-0000-4000-8000-{n:012x}")
}

#[test]
fn vnc_first_url_down_then_the_one_in_use_goes_down() {
    let v = VncServer::start().expect("vnc");
    v.add_virtual_router("agent-1", "10.0.0.5");
    let p1 = TcpProxy::start(addr_of(&v.url())).unwrap();
    let p2 = TcpProxy::start(addr_of(&v.url())).unwrap();
    let app = app::start(&config(vec![dead_url(), p1.url(), p2.url()], vec![]))
        .expect("starts with the first VNC server down");
    let (st, b) = attach(&app, &cid(1));
    assert_eq!(st, 201, "{b}");
    assert!(p1.accepted() > 0);
    assert_eq!(
        p2.accepted(),
        0,
        "the second server was used before the first failed"
    );

    p1.down();
    let (st, b) = attach(&app, &cid(2));
    assert_eq!(st, 201, "{b}");
    assert!(p2.accepted() > 0);
    assert_eq!(detach(&app, &cid(1)), 200);
    assert_eq!(v.count("virtual-machine-interface"), 1);
    assert_eq!(v.count("virtual-machine"), 1);
    app.shutdown(Duration::from_secs(2));
}

#[test]
fn vnc_server_hanging_mid_use_is_left_for_the_next() {
    let v = VncServer::start().expect("vnc");
    v.add_virtual_router("agent-1", "10.0.0.5");
    let p1 = TcpProxy::start(addr_of(&v.url())).unwrap();
    let p2 = TcpProxy::start(addr_of(&v.url())).unwrap();
    let app = app::start(&config(vec![p1.url(), p2.url()], vec![])).expect("manager");
    assert_eq!(attach(&app, &cid(1)).0, 201);
    p1.hang();
    // Each call to the hung server times out (2 s) and the retry goes to the next one.
    let (st, b) = attach(&app, &cid(2));
    assert_eq!(st, 201, "{b}");
    assert!(p2.accepted() > 0);
    assert_eq!(v.count("virtual-machine-interface"), 2);
    app.shutdown(Duration::from_secs(2));
}

fn marathon_case(hang: bool) {
    let v = VncServer::start().expect("vnc");
    v.add_virtual_router("agent-1", "10.0.0.5");
    let m = MarathonServer::start().expect("marathon");
    // Heartbeats inside the 1 s stall timeout; they also show the stand-in the streams left.
    m.set_heartbeat(Duration::from_millis(200));
    let q1 = TcpProxy::start(addr_of(&m.url())).unwrap();
    let q2 = TcpProxy::start(addr_of(&m.url())).unwrap();
    let app = app::start(&config(vec![v.url()], vec![dead_url(), q1.url(), q2.url()]))
        .expect("starts with the first Marathon down");
    let w = app.watcher.clone().expect("watcher");
    assert!(wait_until(Duration::from_secs(10), || m.subscribers() == 1));
    assert_eq!(w.marathon.current_url(), q1.url());

    let (st, b) = attach(&app, &cid(1));
    assert_eq!(st, 201, "{b}");
    let ip = b["ip"].as_str().unwrap().to_owned();
    m.add_task("/web", "web.1", "agent-1", &[&ip], "TASK_RUNNING");
    let joins = || {
        app.mgr
            .metrics
            .joins
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(wait_until(Duration::from_secs(10), || joins() == 1));

    // The server in use fails under the open stream.
    if hang {
        q1.hang();
    } else {
        q1.down();
    }
    assert!(
        // (A hung relay's stream stays registered in the stand-in: its socket still takes
        // the stand-in's writes.)
        wait_until(Duration::from_secs(20), || w.marathon.current_url()
            == q2.url()
            && (hang || m.subscribers() == 1)
            && q2.accepted() > 0),
        "the stream never moved to the next server (in use: {})",
        w.marathon.current_url()
    );
    // Events arrive over the new stream: the task ends, its attachment goes.
    m.kill_task("web.1");
    assert!(
        wait_until(Duration::from_secs(10), || v
            .count("virtual-machine-interface")
            == 0),
        "the attachment of the ended task was not removed"
    );
    app.shutdown(Duration::from_secs(3));
}

#[test]
fn marathon_first_url_down_then_the_one_in_use_goes_down_mid_stream() {
    marathon_case(false);
}

#[test]
fn marathon_server_hanging_mid_stream_is_left_for_the_next() {
    marathon_case(true);
}
