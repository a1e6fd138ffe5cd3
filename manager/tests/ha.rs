//! Several managers for one cluster: only the leader watches Marathon and deletes, a follower
//! serves the attachment API, a leader that freezes is replaced and, once thawed, sends no
//! write. In-process tests use a scripted leadership; the process test runs two real manager
//! binaries against a real ZooKeeper (Debian's package) and freezes one with SIGSTOP. No root
//! needed; everything listens on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use contrail_integration::marathon::MarathonServer;
use contrail_integration::vnc::VncServer;
use contrail_integration::zookeeper::{self, ZkServer};
use contrail_mesos_manager::app;
use contrail_mesos_manager::config::Config;
use contrail_mesos_manager::leader::{Leadership, NotLeader};
use contrail_mesos_manager::marathon::{HttpMarathon, HttpMarathonConfig};
use contrail_mesos_manager::reconcile::Policy;
use contrail_mesos_manager::watcher::{WatchConfig, Watcher};
use serde_json::Value;

mod common;
use common::*;

/// Leads while `leading` is set, and for at most `fences` more fence checks.
struct Scripted {
    leading: AtomicBool,
    fences: AtomicU64,
}

impl Scripted {
    fn new(leading: bool, fences: u64) -> Arc<Scripted> {
        Arc::new(Scripted {
            leading: AtomicBool::new(leading),
            fences: AtomicU64::new(fences),
        })
    }
}

impl Leadership for Scripted {
    fn is_leader(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }
    fn fence(&self) -> Result<(), NotLeader> {
        let left = self
            .fences
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if self.is_leader() && left.is_ok() {
            Ok(())
        } else {
            Err(NotLeader("scripted: lease gone".into()))
        }
    }
    fn elections_won(&self) -> u64 {
        0
    }
    fn role(&self) -> &'static str {
        if self.is_leader() {
            "leader"
        } else {
            "follower"
        }
    }
}

fn vnc() -> VncServer {
    let v = VncServer::start().expect("vnc");
    v.add_virtual_router("agent-1", "10.0.0.5");
    v
}

fn config(v: &VncServer) -> Config {
    let mut c = Config::default();
    c.api.listen = "127.0.0.1:0".into();
    c.api.token = TOKEN.into();
    c.vnc.urls = vec![v.url()];
    c.vnc.backoff_ms = 10;
    c.cluster.subnet = "10.32.0.0/16".into();
    c
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// Registers through the API at `addr`; the instance address VNC gave.
fn attach(addr: SocketAddr, cid: &str) -> String {
    let mut r = http()
        .post(format!("http://{addr}/v1/attachments"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send_json(blue_request(cid))
        .expect("post");
    let st = r.status().as_u16();
    let b: Value = r.body_mut().read_json().unwrap_or(Value::Null);
    assert_eq!(st, 201, "{b}");
    b["ip"].as_str().expect("ip").to_owned()
}

fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut r = http().get(format!("http://{addr}{path}")).call().ok()?;
    r.body_mut().read_to_string().ok()
}

fn metric(addr: SocketAddr, line_prefix: &str) -> Option<f64> {
    get(addr, "/metrics")?
        .lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn watcher(app: &app::App, m: &MarathonServer, shutdown: Arc<AtomicBool>) -> Watcher {
    let marathon = Arc::new(HttpMarathon::new(HttpMarathonConfig {
        urls: vec![m.url()],
        auth: contrail_mesos_manager::marathon::MarathonAuth::None,
        timeout: Duration::from_secs(5),
        stall_timeout: Duration::from_secs(1),
        tls: Default::default(),
    }));
    Watcher::new(
        app.mgr.clone(),
        marathon,
        WatchConfig {
            policy: Policy {
                grace_secs: 0,
                delete_unjoined: true,
            },
            interval: Duration::from_secs(3600),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(200),
            max_delete_percent: 100,
            confirm_delay: Duration::from_millis(10),
        },
        shutdown,
    )
}

#[test]
fn a_pass_whose_lease_ends_midway_sends_no_further_write() {
    let v = vnc();
    let m = MarathonServer::start().expect("marathon");
    let app = app::start(&config(&v)).expect("manager");
    attach(app.api.addr, "c0ffee00-0000-4000-8000-000000000001");
    assert_eq!(v.count("virtual-machine-interface"), 1);
    let shutdown = Arc::new(AtomicBool::new(false));
    // The pass starts as leader (one fence check), then the lease is gone: the attachment,
    // unjoined and past its (zero) grace, is decided for deletion but no write leaves.
    let lease = Scripted::new(true, 1);
    let w = watcher(&app, &m, shutdown.clone()).with_leadership(lease);
    let st = w.relist_and_reconcile().expect("pass");
    assert_eq!(st.deleted, 0, "{st:?}");
    assert_eq!(v.count("virtual-machine-interface"), 1);
    assert_eq!(v.count("virtual-machine"), 1);
    assert!(app.mgr.metrics.fenced_writes.load(Ordering::Relaxed) >= 1);
    // A manager that leads carries the same decision out.
    let w = watcher(&app, &m, shutdown.clone()).with_leadership(Scripted::new(true, u64::MAX));
    let st = w.relist_and_reconcile().expect("pass");
    assert_eq!(st.deleted, 1, "{st:?}");
    assert_eq!(v.count("virtual-machine-interface"), 0);
    // A follower does not even start a pass.
    let w = watcher(&app, &m, shutdown.clone()).with_leadership(Scripted::new(false, 0));
    assert!(w.relist_and_reconcile().is_err());
    app.shutdown(Duration::from_secs(2));
}

#[test]
fn only_the_leader_follows_the_event_stream_and_a_new_leader_starts_from_a_listing() {
    let v = vnc();
    let m = MarathonServer::start().expect("marathon");
    // Like Jetty, the stand-in only notices a reader that left when a write to it fails: with
    // its default 10 s heartbeat the check below would take as long as its own limit.
    m.set_heartbeat(Duration::from_millis(200));
    let app = app::start(&config(&v)).expect("manager");
    let shutdown = Arc::new(AtomicBool::new(false));
    let lease = Scripted::new(false, u64::MAX);
    let w = Arc::new(watcher(&app, &m, shutdown.clone()).with_leadership(lease.clone()));
    let t = {
        let w = w.clone();
        std::thread::spawn(move || w.run_stream())
    };
    // A follower: no stream for several of its polls.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(m.subscribers(), 0);
    let lists = app.mgr.metrics.marathon_lists.load(Ordering::Relaxed);
    lease.leading.store(true, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(10), || m.subscribers() == 1));
    assert!(wait_until(Duration::from_secs(10), || {
        app.mgr.metrics.marathon_lists.load(Ordering::Relaxed) > lists
    }));
    // Deposed: the stream is left (within a stall timeout at most).
    lease.leading.store(false, Ordering::SeqCst);
    m.emit_status_update("/x", "x.1", "agent-1", &[] as &[&str], "TASK_RUNNING");
    assert!(wait_until(Duration::from_secs(10), || m.subscribers() == 0));
    shutdown.store(true, Ordering::SeqCst);
    t.join().unwrap();
    app.shutdown(Duration::from_secs(2));
}

// ---------------------------------------------------------------------------------------
// Two manager processes and a real ZooKeeper.

struct Proc {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Proc {
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }
    fn role(&self) -> Option<String> {
        let h: Value = serde_json::from_str(&get(self.addr, "/healthz")?).ok()?;
        h["role"].as_str().map(str::to_owned)
    }
    fn vnc_writes(&self) -> f64 {
        ["delete", "update", "create", "ref-update"]
            .iter()
            .map(|op| {
                metric(
                    self.addr,
                    &format!("contrail_mesos_vnc_calls_total{{op=\"{op}\"}} "),
                )
                .expect("metrics")
            })
            .sum()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn spawn_manager(
    dir: &std::path::Path,
    name: &str,
    v: &VncServer,
    m: &MarathonServer,
    zk: &ZkServer,
) -> Proc {
    let addr = free_addr();
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[api]\nlisten = \"{addr}\"\ntoken = \"{TOKEN}\"\nprobe-interval-secs = 1\n\
             [vnc]\nurls = [\"{vnc}\"]\nbackoff-ms = 10\n\
             [cluster]\nsubnet = \"10.32.0.0/16\"\n\
             [marathon]\nurls = [\"{mar}\"]\nstall-timeout-secs = 1\nbackoff-min-ms = 50\nbackoff-max-ms = 200\n\
             [reconcile]\ninterval-secs = 3600\ngrace-secs = 3600\nmin-pass-gap-secs = 1\n\
             [zookeeper]\nconnect = \"{zkc}\"\nsession-timeout-secs = 2\nid = \"{name}\"\n",
            vnc = v.url(),
            mar = m.url(),
            zkc = zk.connect_string(),
        ),
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_contrail-mesos-manager"))
        .arg("--config")
        .arg(&cfg)
        .arg("--log-file")
        .arg(dir.join(format!("{name}.log")))
        .spawn()
        .expect("manager binary");
    let p = Proc { child, addr };
    assert!(
        wait_until(Duration::from_secs(30), || get(addr, "/livez").is_some()),
        "manager {name} did not start"
    );
    p
}

#[test]
fn a_frozen_leader_is_replaced_and_once_thawed_sends_no_write() {
    if !zookeeper::available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ZooKeeper is required under CI (make deps installs it)"
        );
        eprintln!("SKIPPED: ZooKeeper not installed");
        return;
    }
    let zk = ZkServer::start().expect("zookeeper");
    let v = vnc();
    let m = MarathonServer::start().expect("marathon");
    // Heartbeats inside the managers' 1 s stall timeout (Marathon sends them every 10 s and a
    // real setting is above that); they also show the stand-in which streams were left.
    m.set_heartbeat(Duration::from_millis(200));
    let dir = tempfile::tempdir().unwrap();
    let a = spawn_manager(dir.path(), "a", &v, &m, &zk);
    assert!(wait_until(Duration::from_secs(20), || a.role().as_deref()
        == Some("leader")));
    let b = spawn_manager(dir.path(), "b", &v, &m, &zk);
    assert!(wait_until(Duration::from_secs(20), || b.role().as_deref()
        == Some("follower")));
    // One event stream for the cluster: the leader's.
    assert!(wait_until(Duration::from_secs(10), || m.subscribers() == 1));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(m.subscribers(), 1);

    // The follower serves the API; the leader joins the task that reports the address.
    let cid = "c0ffee00-0000-4000-8000-0000000000aa";
    let ip = attach(b.addr, cid);
    m.add_task("/web", "web.1", "agent-1", &[&ip], "TASK_RUNNING");
    assert!(
        wait_until(Duration::from_secs(10), || {
            metric(a.addr, "contrail_mesos_task_joins_total ").unwrap_or(0.0) >= 1.0
        }),
        "no join; logs in {}",
        dir.keep().display()
    );

    // Freeze the leader. The task ends while no one leads: the event reaches only the frozen
    // leader's socket. The follower takes over after the session timeout and, from its own
    // listing, removes the attachment.
    let writes_before = a.vnc_writes();
    a.signal(libc::SIGSTOP);
    let frozen = Instant::now();
    m.kill_task("web.1");
    assert!(
        wait_until(Duration::from_secs(20), || b.role().as_deref()
            == Some("leader")),
        "the follower never took over"
    );
    let takeover = frozen.elapsed();
    eprintln!("takeover after SIGSTOP of the leader: {takeover:?} (session timeout 2 s)");
    assert!(wait_until(Duration::from_secs(20), || {
        v.count("virtual-machine-interface") == 0
    }));
    // A new container on the cluster, joined by the new leader.
    let cid2 = "c0ffee00-0000-4000-8000-0000000000bb";
    let ip2 = attach(b.addr, cid2);
    m.add_task("/web", "web.2", "agent-1", &[&ip2], "TASK_RUNNING");
    assert!(wait_until(Duration::from_secs(10), || {
        metric(b.addr, "contrail_mesos_task_joins_total ").unwrap_or(0.0) >= 1.0
    }));

    // Thaw the old leader: it finds its lease gone, reads its stale event, and writes nothing.
    a.signal(libc::SIGCONT);
    assert!(wait_until(Duration::from_secs(20), || a.role().as_deref()
        == Some("follower")));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        a.vnc_writes(),
        writes_before,
        "the thawed leader wrote to VNC"
    );
    assert_eq!(b.role().as_deref(), Some("leader"));
    assert_eq!(v.count("virtual-machine-interface"), 1);
    // The old leader left its stream (the stand-in notices a closed one on its next write).
    m.emit_status_update("/x", "x.1", "agent-1", &[] as &[&str], "TASK_RUNNING");
    assert!(
        wait_until(Duration::from_secs(10), || m.subscribers() == 1),
        "{} event streams; logs in {}",
        m.subscribers(),
        dir.keep().display()
    );
    assert_eq!(
        metric(b.addr, "contrail_mesos_elections_won_total "),
        Some(1.0)
    );
    assert_eq!(metric(a.addr, "contrail_mesos_leader "), Some(0.0));
    assert_eq!(metric(b.addr, "contrail_mesos_leader "), Some(1.0));
}

#[test]
fn a_wrong_or_unreachable_ensemble_stops_the_manager_at_start() {
    let v = vnc();
    let dir = tempfile::tempdir().unwrap();
    let port = free_addr().port();
    for (name, zk, want) in [
        ("typo", "master1:2181,master2".to_owned(), "has no :port"),
        ("down", format!("127.0.0.1:{port}"), "unreachable"),
    ] {
        let cfg = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[api]\nlisten = \"127.0.0.1:0\"\n[vnc]\nurls = [\"{}\"]\n\
                 [zookeeper]\nconnect = \"{zk}\"\nconnect-timeout-secs = 1\n",
                v.url()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_contrail-mesos-manager"))
            .arg("--config")
            .arg(&cfg)
            .output()
            .expect("manager binary");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: started: {err}");
        assert!(err.contains(want), "{name}: {err}");
    }
}

#[test]
fn healthz_reports_zookeeper_but_losing_it_does_not_make_the_manager_unready() {
    if !zookeeper::available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ZooKeeper is required under CI (make deps installs it)"
        );
        eprintln!("SKIPPED: ZooKeeper not installed");
        return;
    }
    let zk = ZkServer::start().expect("zookeeper");
    let v = vnc();
    let m = MarathonServer::start().expect("marathon");
    let dir = tempfile::tempdir().unwrap();
    let a = spawn_manager(dir.path(), "a", &v, &m, &zk);
    let zk_ok = |p: &Proc| -> Option<bool> {
        let h: Value = serde_json::from_str(&get(p.addr, "/healthz")?).ok()?;
        h["checks"]["zookeeper"]["ok"].as_bool()
    };
    assert!(wait_until(Duration::from_secs(20), || zk_ok(&a) == Some(true)));
    drop(zk);
    assert!(
        wait_until(Duration::from_secs(20), || zk_ok(&a) == Some(false)),
        "/healthz never said ZooKeeper is gone"
    );
    let ready = http()
        .get(format!("http://{}/readyz", a.addr))
        .call()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(ready, 200, "ZooKeeper's loss made the manager unready");
    assert!(wait_until(Duration::from_secs(20), || a.role().as_deref()
        == Some("follower")));
}
