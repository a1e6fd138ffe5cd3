//! Logins to the manager's peers, against the identity stand-ins on 127.0.0.1: VNC through a
//! Keystone v3 password login, Marathon through a DC/OS service-account login (lists and the
//! event stream) or HTTP basic auth. The VNC and Marathon stand-ins accept only tokens their
//! identity stand-in issued and still honours. Waits are bounded polling loops.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use contrail_integration::login::dcos_iam::{IamServer, basic_validator};
use contrail_integration::login::keystone::{Account, KeystoneServer};
use contrail_integration::marathon::MarathonServer;
use contrail_integration::vnc::VncServer;
use contrail_mesos_api::vm_uuid_for;
use contrail_mesos_manager::app::{self, App};
use contrail_mesos_manager::config::Config;
use serde_json::Value;

mod common;
use common::*;

const PASSWORD: &str = "c0ntrail123";
const HOUR: Duration = Duration::from_secs(3600);

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel)
}

fn vnc() -> VncServer {
    let v = VncServer::start().expect("vnc");
    v.add_virtual_router("agent-1", "10.0.0.5");
    v
}

/// VNC behind Keystone: the stand-in honours only Keystone's live tokens.
fn vnc_behind(k: &KeystoneServer) -> VncServer {
    let v = vnc();
    v.require_auth(Some(k.validator()));
    v
}

fn config(v: &VncServer) -> Config {
    let mut c = Config::default();
    c.api.listen = "127.0.0.1:0".into();
    c.api.token = TOKEN.into();
    c.api.workers = 16;
    c.vnc.urls = vec![v.url()];
    c.vnc.backoff_ms = 10;
    c.vnc.timeout_secs = 5;
    c.cluster.subnet = "10.32.0.0/16".into();
    c.marathon.stall_timeout_secs = 1;
    c.marathon.backoff_min_ms = 50;
    c.marathon.backoff_max_ms = 200;
    c.reconcile.interval_secs = 3600;
    c.reconcile.grace_secs = 3600;
    c
}

fn keystone_config(v: &VncServer, k: &KeystoneServer, password: &str) -> Config {
    let mut c = config(v);
    c.vnc.auth_url = k.url();
    c.vnc.username = "admin".into();
    c.vnc.password = password.into();
    c
}

fn post(app: &App, cid: &str) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(format!("http://{}/v1/attachments", app.api.addr))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send_json(blue_request(cid))
        .expect("post");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn cid(n: u32) -> String {
    format!("6c0a1b2e-0000-4000-8000-{n:012x}")
}

#[test]
fn attach_works_through_a_keystone_login() {
    let k = KeystoneServer::start(Account::admin(PASSWORD), HOUR).unwrap();
    let v = vnc_behind(&k);
    let app = app::start(&keystone_config(&v, &k, PASSWORD)).expect("start with a login");
    let (st, b) = post(&app, &cid(1));
    assert_eq!(st, 201, "{b}");
    assert_eq!(v.count("virtual-machine-interface"), 1);
    // One login served the start-up rebuild and the attach; VNC never refused a token.
    assert_eq!(k.logins(), 1);
    assert_eq!(v.faults.unauthorized.load(Ordering::SeqCst), 0);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn a_token_revoked_mid_run_is_renewed_after_one_401() {
    let k = KeystoneServer::start(Account::admin(PASSWORD), HOUR).unwrap();
    let v = vnc_behind(&k);
    let app = app::start(&keystone_config(&v, &k, PASSWORD)).unwrap();
    assert_eq!(post(&app, &cid(1)).0, 201);
    k.revoke_all();
    let (st, b) = post(&app, &cid(2));
    assert_eq!(st, 201, "{b}");
    assert_eq!(v.count("virtual-machine-interface"), 2);
    assert_eq!(v.faults.unauthorized.load(Ordering::SeqCst), 1);
    assert_eq!(k.logins(), 2);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn a_token_is_renewed_before_its_expires_at_without_a_401() {
    // Tokens live 3 s; the manager renews a tenth of a lifetime (at least 1 s) before
    // `expires_at`, so calls made across the expiry never meet a 401.
    let k = KeystoneServer::start(Account::admin(PASSWORD), Duration::from_secs(3)).unwrap();
    let v = vnc_behind(&k);
    let app = app::start(&keystone_config(&v, &k, PASSWORD)).unwrap();
    let mut n = 0;
    wait_for("a renewal", 200, || {
        n += 1;
        assert_eq!(post(&app, &cid(200 + n)).0, 201);
        k.logins() >= 2
    });
    assert_eq!(v.faults.unauthorized.load(Ordering::SeqCst), 0);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn many_concurrent_attaches_after_a_revocation_cause_one_login() {
    let k = KeystoneServer::start(Account::admin(PASSWORD), HOUR).unwrap();
    let v = vnc_behind(&k);
    let app = Arc::new(app::start(&keystone_config(&v, &k, PASSWORD)).unwrap());
    assert_eq!(k.logins(), 1);
    k.revoke_all();
    let hs: Vec<_> = (0..12)
        .map(|i| {
            let app = app.clone();
            std::thread::spawn(move || post(&app, &cid(100 + i)).0)
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap(), 201);
    }
    assert_eq!(v.count("virtual-machine-interface"), 12);
    assert_eq!(k.logins(), 2, "every stale caller waited for one renewal");
}

#[test]
fn a_wrong_password_stops_the_manager_at_start() {
    let k = KeystoneServer::start(Account::admin(PASSWORD), HOUR).unwrap();
    let v = vnc_behind(&k);
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("vnc-password");
    std::fs::write(&pw, "not-the-password\n").unwrap();
    let conf = dir.path().join("manager.toml");
    std::fs::write(
        &conf,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n[vnc]\nurls = [\"{}\"]\nauth-url = \"{}\"\n\
             username = \"admin\"\npassword-file = \"{}\"\n[cluster]\nsubnet = \"10.32.0.0/16\"\n",
            v.url(),
            k.url(),
            pw.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_contrail-mesos-manager"))
        .arg("--config")
        .arg(&conf)
        .env_clear()
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started with a wrong password: {err}"
    );
    assert!(err.contains("[vnc] password"), "{err}");
    // A refused login is not retried: the same password gets the same answer.
    assert_eq!(k.refused(), 1, "{err}");
    assert_eq!(k.logins(), 0);
}

/// Marathon behind a DC/OS IAM with the service account `contrail`.
fn dcos(lifetime: Duration) -> (IamServer, MarathonServer) {
    let pubkey = std::fs::read_to_string(fixture("login/service-account.pub.pem")).unwrap();
    let iam = IamServer::start("contrail", &pubkey, lifetime).unwrap();
    let m = MarathonServer::start().unwrap();
    m.set_heartbeat(Duration::from_millis(100));
    m.require_auth(Some(iam.authorization_validator()));
    (iam, m)
}

fn service_account_config(v: &VncServer, iam: &IamServer, m: &MarathonServer, key: &str) -> Config {
    let mut c = config(v);
    c.marathon.urls = vec![m.url()];
    c.marathon.service_account_id = "contrail".into();
    c.marathon.service_account_key_file = fixture(key).display().to_string();
    c.marathon.login_url = iam.login_url();
    c
}

/// Attaches `cid(n)`, runs it as Marathon task `web.<n>`, waits for the join.
fn running_task(app: &App, v: &VncServer, m: &MarathonServer, n: u32) {
    let (st, b) = post(app, &cid(n));
    assert_eq!(st, 201, "{b}");
    let ip = b["ip"].as_str().unwrap().to_owned();
    let task = format!("web.{n}");
    m.add_task("/web", &task, "agent-1", &[&ip], "TASK_RUNNING");
    let vm = vm_uuid_for(&cid(n));
    wait_for("the join", 200, || {
        v.store()
            .get(&vm)
            .and_then(|o| o.prop_str("display_name").map(str::to_owned))
            .as_deref()
            == Some(task.as_str())
    });
}

#[test]
fn marathon_service_account_login_drives_the_stream_and_renews_an_expired_token() {
    let v = vnc();
    let (iam, m) = dcos(HOUR);
    let app = app::start(&service_account_config(
        &v,
        &iam,
        &m,
        "login/service-account.key.pem",
    ))
    .unwrap();
    wait_for("the stream", 200, || m.subscribers() == 1);
    running_task(&app, &v, &m, 1);
    running_task(&app, &v, &m, 2);
    assert_eq!(iam.logins(), 1);
    // An event on the authenticated stream deletes an attachment.
    m.kill_task("web.1");
    wait_for("the cleanup of web.1", 200, || {
        v.store().get(&vm_uuid_for(&cid(1))).is_none()
    });
    // The token expires: the open stream is cut, the reconnect's 401 brings a new login, and
    // the new stream carries the next event.
    let connects = m.knobs.stream_connects.load(Ordering::SeqCst);
    iam.expire_all();
    wait_for("a stream with a new token", 200, || {
        m.knobs.stream_connects.load(Ordering::SeqCst) > connects && m.subscribers() == 1
    });
    assert_eq!(iam.logins(), 2);
    assert!(m.knobs.unauthorized.load(Ordering::SeqCst) >= 1);
    m.kill_task("web.2");
    wait_for("the cleanup of web.2", 200, || {
        v.count("virtual-machine-interface") == 0
    });
    assert_eq!(iam.refused(), 0);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn a_key_the_iam_does_not_know_gets_no_stream() {
    let v = vnc();
    let (iam, m) = dcos(HOUR);
    let app = app::start(&service_account_config(&v, &iam, &m, "login/other.key.pem")).unwrap();
    wait_for("a refused login", 200, || iam.refused() >= 1);
    assert_eq!(iam.logins(), 0);
    assert_eq!(m.subscribers(), 0);
    app.shutdown(Duration::from_secs(1));
}

#[test]
fn marathon_basic_auth() {
    let v = vnc();
    let m = MarathonServer::start().unwrap();
    m.set_heartbeat(Duration::from_millis(100));
    m.require_auth(Some(basic_validator("contrail", "m4rathon")));
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("marathon-password");
    std::fs::write(&pw, "m4rathon\n").unwrap();
    let mut c = config(&v);
    c.marathon.urls = vec![m.url()];
    c.marathon.username = "contrail".into();
    c.marathon.password_file = pw.display().to_string();
    let app = app::start(&c).unwrap();
    wait_for("the stream", 200, || m.subscribers() == 1);
    running_task(&app, &v, &m, 1);
    m.kill_task("web.1");
    wait_for("the cleanup", 200, || {
        v.count("virtual-machine-interface") == 0
    });
    assert_eq!(m.knobs.unauthorized.load(Ordering::SeqCst), 0);
    app.shutdown(Duration::from_secs(1));
}
