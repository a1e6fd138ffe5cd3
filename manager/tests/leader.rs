//! Leader election against a real ZooKeeper (Debian's package, started on 127.0.0.1 by the
//! test). No root needed.

use std::time::{Duration, Instant};

use contrail_integration::zookeeper::{self, ZkServer};
use contrail_mesos_manager::leader::{Leadership, ZkConfig, ZkElection, ZkSetupError};

const SESSION: Duration = Duration::from_secs(2);

fn require_zk() -> bool {
    if zookeeper::available() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "ZooKeeper is required under CI (make deps installs it)"
    );
    eprintln!("SKIPPED: ZooKeeper not installed");
    false
}

fn cfg(zk: &ZkServer, root: &str, id: &str) -> ZkConfig {
    ZkConfig {
        connect: zk.connect_string(),
        root: root.into(),
        session_timeout: SESSION,
        id: id.into(),
    }
}

fn start(zk: &ZkServer, root: &str, id: &str) -> ZkElection {
    ZkElection::start(cfg(zk, root, id), Duration::from_secs(10)).expect("election starts")
}

/// Polls `f` every 20 ms for at most `limit`.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

#[test]
fn exactly_one_of_three_leads_and_a_standby_takes_over() {
    if !require_zk() {
        return;
    }
    let zk = ZkServer::start().expect("zookeeper");
    let a = start(&zk, "/c1", "a");
    assert!(wait_until(Duration::from_secs(20), || a.is_leader()));
    let b = start(&zk, "/c1", "b");
    let c = start(&zk, "/c1", "c");
    // For a while (several lease ticks), never two leaders and never none.
    for _ in 0..100 {
        let leaders = [&a, &b, &c].iter().filter(|e| e.fence().is_ok()).count();
        assert_eq!(leaders, 1, "exactly one manager may act");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!((b.role(), c.role()), ("follower", "follower"));
    assert_eq!(a.elections_won(), 1);
    // The leader goes away: one standby leads, the other stays follower.
    let t = Instant::now();
    drop(a);
    assert!(
        wait_until(Duration::from_secs(30), || b.is_leader() || c.is_leader()),
        "no standby took over"
    );
    eprintln!("takeover after a clean stop: {:?}", t.elapsed());
    assert!(!(b.fence().is_ok() && c.fence().is_ok()));
    assert_eq!(b.elections_won() + c.elections_won(), 1);
}

#[test]
fn a_leader_that_cannot_reach_zookeeper_stops_acting_within_its_lease() {
    if !require_zk() {
        return;
    }
    let zk = ZkServer::start().expect("zookeeper");
    let a = start(&zk, "/c2", "a");
    assert!(wait_until(Duration::from_secs(20), || a.fence().is_ok()));
    zk.freeze(true);
    let t = Instant::now();
    // The lease lasts half the session timeout from the last renewal; renewals come every third.
    let fenced = wait_until(SESSION * 2, || a.fence().is_err());
    let waited = t.elapsed();
    zk.freeze(false);
    assert!(
        fenced,
        "leader still acting {waited:?} after ZooKeeper froze"
    );
    eprintln!("fenced {waited:?} after ZooKeeper froze");
    assert!(!a.is_leader());
    // ZooKeeper back: the manager leads again (same session, or a new one after expiry).
    assert!(wait_until(Duration::from_secs(30), || a.fence().is_ok()));
}

#[test]
fn an_unreachable_ensemble_or_a_bad_connect_string_is_an_error_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mk = |connect: &str| ZkConfig {
        connect: connect.into(),
        root: "/c3".into(),
        session_timeout: SESSION,
        id: "x".into(),
    };
    let e = ZkElection::start(mk(&format!("127.0.0.1:{port}")), Duration::from_secs(3))
        .err()
        .expect("no ensemble there");
    assert!(matches!(e, ZkSetupError::Unreachable(..)), "{e}");
    let e = ZkElection::start(mk("127.0.0.1"), Duration::from_secs(3))
        .err()
        .expect("bad string");
    assert!(matches!(e, ZkSetupError::BadConnect(..)), "{e}");
}
