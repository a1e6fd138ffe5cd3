//! TLS everywhere: the manager reaches VNC and Marathon over `https://` with a CA bundle made
//! at run time, refuses a server its CA does not vouch for (at start: non-zero exit; later:
//! 503, never retried), and serves the attachment API over TLS with the handshake bounded by
//! the header timeout. The stand-ins stay plain: a TLS-terminating relay sits in front of each.
//! No root needed; everything is on 127.0.0.1.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use contrail_integration::marathon::MarathonServer;
use contrail_integration::proxy::TcpProxy;
use contrail_integration::tls_proxy::{Pki, TlsProxy};
use contrail_integration::vnc::VncServer;
use contrail_mesos_api::Node;
use contrail_mesos_manager::app::{self, App};
use contrail_mesos_manager::config::Config;
use serde_json::Value;

mod common;
use common::*;

fn config(vnc_urls: Vec<String>, vnc_ca: &Pki) -> Config {
    let mut c = Config::default();
    c.api.listen = "127.0.0.1:0".into();
    c.api.token = TOKEN.into();
    c.vnc.urls = vnc_urls;
    c.vnc.ca_file = vnc_ca.ca_file().display().to_string();
    c.vnc.backoff_ms = 10;
    c.vnc.timeout_secs = 2;
    c.vnc.connect_timeout_secs = 1;
    c.cluster.subnet = "10.32.0.0/16".into();
    c.marathon.timeout_secs = 2;
    c.marathon.stall_timeout_secs = 1;
    c.marathon.backoff_min_ms = 50;
    c.marathon.backoff_max_ms = 200;
    c.reconcile.interval_secs = 3600;
    c.reconcile.grace_secs = 3600;
    c
}

/// A client of the attachment API; over https it trusts `ca` only.
fn http(ca: Option<&Pki>) -> ureq::Agent {
    let tls = contrail_mesos_api::tls::client_config(
        &ca.map(|p| p.ca_file().display().to_string())
            .unwrap_or_default(),
    )
    .unwrap();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .tls_config(tls)
        .build()
        .into()
}

fn attach(base: &str, ca: Option<&Pki>, cid: &str) -> (u16, Value) {
    let mut r = http(ca)
        .post(format!("{base}/v1/attachments"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send_json(blue_request(cid))
        .expect("post");
    let st = r.status().as_u16();
    (st, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn plain(app: &App) -> String {
    format!("http://{}", app.api.addr)
}

fn cid(n: u32) -> String {
    format!("7150fe70-0000-4000-8000-{n:012x}")
}

#[test]
fn vnc_over_https_attach_and_detach() {
    let pki = Pki::new("vnc");
    let v = VncServer::start().expect("vnc");
    v.add_virtual_router("agent-1", "10.0.0.5");
    let p = TlsProxy::start(addr_of(&v.url()), pki.server_config()).unwrap();
    let app = app::start(&config(vec![p.url()], &pki)).expect("manager over https VNC");
    let (st, b) = attach(&plain(&app), None, &cid(1));
    assert_eq!(st, 201, "{b}");
    assert_eq!(v.count("virtual-machine-interface"), 1);
    let st = http(None)
        .delete(format!("{}/v1/attachments/{}/eth0", plain(&app), cid(1)))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(st, 200);
    assert_eq!(v.count("virtual-machine-interface"), 0);
    assert!(p.handshakes() > 0, "VNC was not reached through TLS");
    app.shutdown(Duration::from_secs(2));
}

#[test]
fn vnc_with_a_certificate_the_ca_does_not_vouch_for_fails_at_start_without_retries() {
    let (pki, other) = (Pki::new("vnc"), Pki::new("other"));
    let v = VncServer::start().expect("vnc");
    let p = TlsProxy::start(addr_of(&v.url()), pki.server_config()).unwrap();
    let t0 = Instant::now();
    let e = match app::start(&config(vec![p.url()], &other)) {
        Ok(_) => panic!("started against a VNC whose certificate it must not trust"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("TLS verification failed"), "{e}");
    // One connection per list the start-up scan begins side by side (virtual machines,
    // instance-ips, floating IPs): neither the client's retries nor the start-up loop tried
    // again.
    assert_eq!(p.accepted(), 3, "a TLS failure was retried");
    assert_eq!(p.handshakes(), 0);
    eprintln!("refused after {:?}", t0.elapsed());
}

#[test]
fn a_ca_file_that_is_missing_or_not_pem_stops_the_binary_at_start() {
    let pki = Pki::new("vnc");
    let v = VncServer::start().expect("vnc");
    let p = TlsProxy::start(addr_of(&v.url()), pki.server_config()).unwrap();
    let other = Pki::new("other");
    let junk = pki.dir().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let missing = pki.dir().join("missing.pem");
    let q = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    let good_ca = format!("ca-file = {}\n", q(&pki.ca_file()));
    // (extra [api] keys, extra [vnc] keys, further sections, what stderr must say)
    let cases = [
        (
            String::new(),
            format!("ca-file = {}\n", q(&missing)),
            String::new(),
            "missing.pem",
        ),
        (
            String::new(),
            good_ca.clone(),
            format!("[marathon]\nca-file = {}\n", q(&junk)),
            "no PEM CERTIFICATE",
        ),
        (
            String::new(),
            good_ca.clone(),
            format!("[mesos]\nca-file = {}\n", q(&missing)),
            "mesos.ca-file",
        ),
        (
            format!(
                "tls-cert-file = {}\ntls-key-file = {}\n",
                q(&junk),
                q(&pki.key_file())
            ),
            good_ca.clone(),
            String::new(),
            "tls-cert-file",
        ),
        (
            format!("tls-cert-file = {}\n", q(&pki.cert_file())),
            good_ca.clone(),
            String::new(),
            "must be set together",
        ),
        // A working file, but the wrong CA for this VNC.
        (
            String::new(),
            format!("ca-file = {}\n", q(&other.ca_file())),
            String::new(),
            "TLS verification failed",
        ),
    ];
    let cfg = pki.dir().join("manager.toml");
    for (api, vnc, tail, want) in cases {
        let text = format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n{api}\n[vnc]\nurls = [{:?}]\nattempts = 2\nbackoff-ms = 10\n{vnc}\n{tail}",
            p.url()
        );
        std::fs::write(&cfg, &text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_contrail-mesos-manager"))
            .arg("--config")
            .arg(&cfg)
            .output()
            .expect("run the manager");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with\n{text}");
        assert!(stderr.contains(want), "{text}\n=> {stderr}");
    }
    // The control: the right CA starts (and is stopped here).
    std::fs::write(
        &cfg,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n[vnc]\nurls = [{:?}]\n{good_ca}",
            p.url()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_contrail-mesos-manager"))
        .arg("--config")
        .arg(&cfg)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = wait_until(Duration::from_secs(20), || p.handshakes() > 0);
    let early_exit = child.try_wait().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        started && early_exit.is_none(),
        "the right CA did not start: {early_exit:?}"
    );
}

#[test]
fn a_tls_failure_after_start_is_a_503_not_a_retry() {
    let (pki, other) = (Pki::new("vnc"), Pki::new("other"));
    let v = VncServer::start().expect("vnc");
    v.add_virtual_router("agent-1", "10.0.0.5");
    let good = TlsProxy::start(addr_of(&v.url()), pki.server_config()).unwrap();
    // The first server of the list is reached through a relay that can go down; the second
    // presents a certificate of another CA.
    let front = TcpProxy::start(good.addr).unwrap();
    let bad = TlsProxy::start(addr_of(&v.url()), other.server_config()).unwrap();
    let mut c = config(vec![format!("https://{}", front.addr), bad.url()], &pki);
    // Only the registration below may reach the second server (no readiness probe).
    c.api.probe_interval_secs = 3600;
    let app = app::start(&c).expect("manager");
    assert_eq!(attach(&plain(&app), None, &cid(1)).0, 201);
    front.down();
    let (st, b) = attach(&plain(&app), None, &cid(2));
    assert_eq!(st, 503, "{b}");
    let msg = b["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("TLS verification failed"), "{b}");
    // The registration's one try there, and perhaps the first readiness probe's, should that
    // thread have run only after the first server went down. Retried, the registration alone
    // would have made four (attempts = 5, the first went to the server that is down).
    assert!(
        bad.accepted() <= 2,
        "the TLS failure was retried: {} connections",
        bad.accepted()
    );
    assert_eq!(v.count("virtual-machine-interface"), 1);
    app.shutdown(Duration::from_secs(2));
}

#[test]
fn marathon_over_https_an_event_on_the_stream_deletes_the_attachment() {
    let (vpki, mpki) = (Pki::new("vnc"), Pki::new("marathon"));
    let v = VncServer::start().expect("vnc");
    v.add_virtual_router("agent-1", "10.0.0.5");
    let vp = TlsProxy::start(addr_of(&v.url()), vpki.server_config()).unwrap();
    let m = MarathonServer::start().expect("marathon");
    m.set_heartbeat(Duration::from_millis(200));
    let mp = TlsProxy::start(addr_of(&m.url()), mpki.server_config()).unwrap();
    let mut c = config(vec![vp.url()], &vpki);
    c.marathon.urls = vec![mp.url()];
    c.marathon.ca_file = mpki.ca_file().display().to_string();
    let app = app::start(&c).expect("manager");
    assert!(
        wait_until(Duration::from_secs(10), || m.subscribers() == 1),
        "no event stream over TLS"
    );
    let (st, b) = attach(&plain(&app), None, &cid(1));
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
    m.kill_task("web.1");
    assert!(
        wait_until(Duration::from_secs(10), || v
            .count("virtual-machine-interface")
            == 0),
        "the event over TLS did not remove the attachment"
    );
    assert!(mp.handshakes() > 0);
    app.shutdown(Duration::from_secs(3));
}

#[test]
fn marathon_with_the_wrong_ca_stays_unready() {
    let (vpki, mpki, other) = (Pki::new("vnc"), Pki::new("marathon"), Pki::new("other"));
    let v = VncServer::start().expect("vnc");
    let vp = TlsProxy::start(addr_of(&v.url()), vpki.server_config()).unwrap();
    let m = MarathonServer::start().expect("marathon");
    let mp = TlsProxy::start(addr_of(&m.url()), mpki.server_config()).unwrap();
    let mut c = config(vec![vp.url()], &vpki);
    c.api.probe_interval_secs = 1;
    c.marathon.urls = vec![mp.url()];
    c.marathon.ca_file = other.ca_file().display().to_string();
    c.marathon.backoff_max_ms = 60_000;
    let app = app::start(&c).expect("manager");
    // The stream is asked again at the longest back-off at once, not from the shortest.
    let backoff = || {
        app.mgr
            .metrics
            .sse_backoff_ms
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(
        wait_until(Duration::from_secs(10), || backoff() >= 60_000),
        "a TLS failure of the stream backed off like an outage: {} ms",
        backoff()
    );
    let mut last = Value::Null;
    let said_tls = wait_until(Duration::from_secs(10), || {
        let mut r = http(None)
            .get(format!("{}/readyz", plain(&app)))
            .call()
            .unwrap();
        let st = r.status().as_u16();
        last = r.body_mut().read_json().unwrap_or(Value::Null);
        st == 503 && last.to_string().contains("TLS verification failed")
    });
    assert!(said_tls, "{last}");
    assert_eq!(m.subscribers(), 0);
    assert_eq!(mp.handshakes(), 0);
    app.shutdown(Duration::from_secs(2));
}

fn tls_server_config(pki: &Pki) -> Config {
    let v = VncServer::start().expect("vnc");
    v.add_virtual_router("agent-1", "10.0.0.5");
    let mut c = Config::default();
    c.api.listen = "127.0.0.1:0".into();
    c.api.token = TOKEN.into();
    c.api.tls_cert_file = pki.cert_file().display().to_string();
    c.api.tls_key_file = pki.key_file().display().to_string();
    c.vnc.urls = vec![v.url()];
    c.cluster.subnet = "10.32.0.0/16".into();
    // Keep the stand-in alive for the test's duration.
    std::mem::forget(v);
    c
}

#[test]
fn the_api_serves_tls_and_only_tls() {
    let pki = Pki::new("manager");
    let app = app::start(&tls_server_config(&pki)).expect("manager");
    let base = format!("https://{}", app.api.addr);
    let (st, b) = attach(&base, Some(&pki), &cid(1));
    assert_eq!(st, 201, "{b}");
    let r = http(Some(&pki))
        .get(format!("{base}/livez"))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A client that trusts another CA is refused in the handshake.
    let other = Pki::new("other");
    let e = http(Some(&other))
        .get(format!("{base}/livez"))
        .call()
        .unwrap_err();
    assert!(contrail_mesos_api::tls::failure(&e).is_some(), "{e}");
    // Plain HTTP gets no answer.
    assert!(
        http(None)
            .get(format!("{}/livez", plain(&app)))
            .call()
            .is_err()
    );
    app.shutdown(Duration::from_secs(2));
}

#[test]
fn a_client_that_never_finishes_the_handshake_is_closed_after_the_header_timeout() {
    let pki = Pki::new("manager");
    let mut c = tls_server_config(&pki);
    c.api.header_timeout_ms = 300;
    // Far above what the test waits: only the handshake bound can close the socket in time.
    c.api.idle_timeout_secs = 600;
    let app = app::start(&c).expect("manager");
    for partial in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let mut s = TcpStream::connect(app.api.addr).unwrap();
        std::io::Write::write_all(&mut s, partial).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Ok(n) => panic!("the server answered {n} bytes to a handshake never finished"),
            Err(e) => panic!("the socket was still open after 20 s: {e}"),
        }
    }
    // The server still serves.
    let r = http(Some(&pki))
        .get(format!("https://{}/livez", app.api.addr))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    app.shutdown(Duration::from_secs(2));
}

#[test]
fn tls_does_not_lift_the_token_rule_on_a_public_listen() {
    let pki = Pki::new("manager");
    let mut c = tls_server_config(&pki);
    c.api.listen = "0.0.0.0:0".into();
    c.api.token = String::new();
    let e = match app::start(&c) {
        Ok(_) => panic!("a public TLS listener started without a token"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("token"), "{e}");
}

#[test]
fn the_mesos_agent_operator_api_over_https() {
    use contrail_integration::mesos_agent::OperatorApi;
    use contrail_mesos_manager::mesos::{AgentApi, HttpAgent};
    let (pki, other) = (Pki::new("mesos"), Pki::new("other"));
    let api = OperatorApi::start().unwrap();
    api.add_container("c-1", "web.1");
    let p = TlsProxy::start(addr_of(&api.url()), pki.server_config()).unwrap();
    let template = format!("https://{{node-ip}}:{}", p.addr.port());
    let node = Node {
        name: "agent-1".into(),
        ip: "127.0.0.1".into(),
    };
    let tls = |p: &Pki| {
        contrail_mesos_api::tls::client_config(&p.ca_file().display().to_string()).unwrap()
    };
    let a = HttpAgent::new(&template, None, Duration::from_secs(5), tls(&pki));
    let cs = a.containers(&node).expect("GET_CONTAINERS over https");
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0].executor_id, "web.1");
    let e = HttpAgent::new(&template, None, Duration::from_secs(5), tls(&other))
        .containers(&node)
        .unwrap_err();
    assert!(e.contains("TLS verification failed"), "{e}");
}

/// The CNI host's own client (what every ADD and DEL uses) against this server over TLS: the
/// two ends of the attachment API, each with its TLS settings as configured in production.
#[test]
fn the_cni_hosts_client_registers_with_the_manager_over_tls() {
    use contrail_cni_host::contrail::manager::{Failover, Manager};
    let pki = Pki::new("manager");
    let app = app::start(&tls_server_config(&pki)).expect("manager");
    let base = format!("https://{}", app.api.addr);
    let client = |ca: &Pki| {
        let tls =
            contrail_mesos_api::tls::client_config(&ca.ca_file().display().to_string()).unwrap();
        Failover::http(
            std::slice::from_ref(&base),
            Some(TOKEN.into()),
            Duration::from_secs(10),
            &tls,
        )
    };
    let m = client(&pki);
    let a = m
        .attach(&blue_request(&cid(1)))
        .expect("ADD's registration over TLS");
    assert!(!a.attachment.vmi_uuid.is_empty());
    assert!(a.created, "201 for a new registration");
    // The same request again finds it (200): the client tells it from a new one.
    let again = m
        .attach(&blue_request(&cid(1)))
        .expect("repeated registration");
    assert!(!again.created, "200 for an existing registration");
    assert_eq!(again.attachment.vmi_uuid, a.attachment.vmi_uuid);
    assert_eq!(app.mgr.list().len(), 1);
    assert!(m.detach(&cid(1), "eth0").expect("DEL over TLS"));
    assert!(app.mgr.list().is_empty());
    // The CNI trusting another CA: error 7 that says why, nothing registered.
    let e = client(&Pki::new("other"))
        .attach(&blue_request(&cid(2)))
        .unwrap_err();
    assert_eq!(e.code, 7, "{}", e.msg);
    assert!(e.msg.contains("TLS verification failed"), "{}", e.msg);
    assert!(app.mgr.list().is_empty());
    app.shutdown(Duration::from_secs(2));
}

#[test]
fn server_certificate_and_key_must_belong_together() {
    use contrail_mesos_manager::server::tls_acceptor;
    let (pki, other) = (Pki::new("manager"), Pki::new("other"));
    let mut api = Config::default().api;
    api.tls_cert_file = pki.cert_file().display().to_string();
    api.tls_key_file = other.key_file().display().to_string();
    let e = match tls_acceptor(&api) {
        Ok(_) => panic!("a key of another certificate was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("tls-key-file"), "{e}");
    api.tls_key_file = pki.cert_file().display().to_string();
    assert!(tls_acceptor(&api).is_err(), "a certificate taken for a key");
    api.tls_key_file = pki.key_file().display().to_string();
    assert!(tls_acceptor(&api).unwrap().is_some());
    assert!(tls_acceptor(&Config::default().api).unwrap().is_none());
}
