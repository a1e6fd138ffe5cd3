//! What the manager's integration tests share: the attachment request they post, bounded
//! waits, an address parser. Each test file uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use contrail_mesos_api::{AttachRequest, ContrailRequest, Label, Node};

/// The API token the tests configure.
pub const TOKEN: &str = "s3cret";

/// The Contrail labels of a task on the `blue` network, 5.5.5.0/24.
pub fn blue() -> ContrailRequest {
    ContrailRequest {
        network: Some(vec!["blue".into()]),
        subnets: vec!["5.5.5.0/24".into()],
        ..Default::default()
    }
}

/// What the CNI host posts for `cid`'s `eth0` on `blue`, from node agent-1.
pub fn blue_request(cid: &str) -> AttachRequest {
    AttachRequest {
        container_id: cid.into(),
        ifname: "eth0".into(),
        netns: Some(format!("/var/run/mesos/isolators/network/cni/{cid}/ns")),
        node: Node {
            name: "agent-1".into(),
            ip: "10.0.0.5".into(),
        },
        network_name: "contrail-cni-plugin".into(),
        request: blue(),
        labels: vec![Label {
            key: "networks".into(),
            value: "blue".into(),
        }],
    }
}

/// Polls `f` every 20 ms for at most `limit`; whether it held.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Polls `cond` up to `tries` times, 50 ms apart; panics naming `what` when it never held.
pub fn wait_for(what: &str, tries: u32, mut cond: impl FnMut() -> bool) {
    for _ in 0..tries {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// `http://127.0.0.1:port` of a stand-in as a socket address.
pub fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("stand-in address")
}
