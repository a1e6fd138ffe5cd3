//! The IP fabric next to the devstack's node: a host (a namespace of its own, standing in for a
//! master, Mesos-DNS, marathon-lb or a public agent) on a link to the node, `192.168.200.0/24`.
//! The fabric host routes the Contrail networks' addresses to the node, as a real fabric learns
//! them from the vRouter gateway; whether its packets get through is the dataplane's policy (the
//! `ip-fabric` network's), and tasks on `fabric_snat` networks reach it with the node's address.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use contrail_integration::mesos_agent::{create_netns, delete_netns};

use crate::dataplane::ip;

/// The node's end of the link.
pub const FABRIC_IF: &str = "fabric0";
pub const NODE_FABRIC_IP: &str = "192.168.200.1";
pub const FABRIC_HOST_IP: &str = "192.168.200.2";

/// The fabric host's namespace; deleted (with the link) on drop.
pub struct FabricHost {
    pub netns: String,
}

impl FabricHost {
    /// Creates the host and its link; call on a thread inside the node namespace (the node's
    /// end is made where the caller is). `routes`: prefixes the host sends to the node.
    pub fn create(name: &str, routes: &[&str]) -> Result<FabricHost, String> {
        create_netns(name)?;
        let host = FabricHost {
            netns: name.to_owned(),
        };
        ip(&[
            "link", "add", FABRIC_IF, "type", "veth", "peer", "name", "eth0", "netns", name,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{NODE_FABRIC_IP}/24"),
            "dev",
            FABRIC_IF,
        ])?;
        ip(&["link", "set", FABRIC_IF, "up"])?;
        ip(&[
            "-n",
            name,
            "addr",
            "add",
            &format!("{FABRIC_HOST_IP}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", name, "link", "set", "eth0", "up"])?;
        for r in routes {
            ip(&["-n", name, "route", "add", r, "via", NODE_FABRIC_IP])?;
        }
        Ok(host)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }
}

impl Drop for FabricHost {
    fn drop(&mut self) {
        delete_netns(&self.netns);
    }
}

/// A TCP service in a namespace that answers each connection with an address: the one the
/// connection came from ([`WhoCalls::start`], so a check can tell a masqueraded connection from
/// a direct one) or its own ([`WhoCalls::identify`], so a check can tell load-balanced backends
/// apart); stopped on drop.
pub struct WhoCalls {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl WhoCalls {
    pub fn start(netns: &Path, addr: SocketAddr) -> std::io::Result<WhoCalls> {
        Self::serve(netns, addr, false)
    }

    pub fn identify(netns: &Path, addr: SocketAddr) -> std::io::Result<WhoCalls> {
        Self::serve(netns, addr, true)
    }

    fn serve(netns: &Path, addr: SocketAddr, own: bool) -> std::io::Result<WhoCalls> {
        let listener = crate::probe::in_netns(netns, || TcpListener::bind(addr))??;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.set_nonblocking(false);
                        let who = if own { addr.ip() } else { peer.ip() };
                        let _ = s.write_all(who.to_string().as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(WhoCalls { addr, stop })
    }
}

impl Drop for WhoCalls {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// From inside `from`, the address `to` saw the connection come from (None: no answer within
/// `timeout`).
pub fn seen_as(from: &Path, to: SocketAddr, timeout: Duration) -> Option<String> {
    crate::probe::in_netns(from, || {
        let mut s = std::net::TcpStream::connect_timeout(&to, timeout).ok()?;
        s.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        Some(buf)
    })
    .ok()
    .flatten()
}
