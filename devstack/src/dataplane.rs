//! The devstack agent's forwarding plane, standing in for the vRouter's, inside the node
//! namespace the whole devstack runs in (the machine's own links, routes and sysctls are never
//! touched: the dataplane refuses to start in the machine's namespace).
//!
//! Each virtual network is a Linux bridge; `POST /vm` attaches the tap to its network's bridge
//! and `DELETE /vm` detaches it. Between bridges the node routes, as the vRouter routes between
//! virtual networks in L3 mode:
//! - every bridge holds its network's gateway as a /32 (two networks on one flat-subnet IPAM
//!   share a subnet and a gateway, so no bridge may own the subnet's prefix route);
//! - every attached container address gets a /32 host route to its bridge (added at attach,
//!   removed at detach);
//! - proxy ARP on the bridges (no delay) answers for addresses routed through another bridge,
//!   as the vRouter answers ARP for every address it routes: a container that believes an
//!   address of another network on the same subnet is on-link still reaches it through the node.
//!
//! Isolation and policy are an nftables table of the dataplane's own (`policy::TABLE`), whose
//! forward chain drops by default (see `policy`); IPv4 forwarding is on in the node namespace.
//!
//! This is test infrastructure, so it drives `ip` and `nft`; the product itself never shells out.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use nix::sched::{CloneFlags, setns};

/// `nft`, from Debian's `nftables` package.
pub const NFT: &str = "/usr/sbin/nft";

/// Bridges created so far, by VN uuid, and the rule set last applied.
pub struct Dataplane {
    /// The node namespace every operation runs in.
    netns: File,
    netns_ino: (u64, u64),
    bridges: Mutex<HashMap<String, String>>,
    applied: Mutex<Option<String>>,
    /// The node's interface to the IP fabric, when the node has one.
    fabric: Mutex<Option<String>>,
}

fn ns_id(path: &str) -> std::io::Result<(u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Runs `ip` with `args` (the devstack is test infrastructure: it drives `ip`; the product
/// itself never shells out); the error quotes the command and its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Writes a sysctl of the calling thread's network namespace (`/proc/sys/net` is per namespace).
pub(crate) fn sysctl(path: &str, value: &str) -> Result<(), String> {
    std::fs::write(format!("/proc/sys/{path}"), value).map_err(|e| format!("sysctl {path}: {e}"))
}

/// Applies a rule set with `nft -f -`: one transaction, all or nothing.
pub(crate) fn nft_apply(ruleset: &str) -> Result<(), String> {
    let mut child = Command::new(NFT)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{NFT}: {e} (Debian package nftables)"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(ruleset.as_bytes())
        .map_err(|e| format!("nft -f -: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("nft -f -: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft -f -: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Refuses the machine's own namespace (PID 1's), where forwarding and a drop-by-default
/// forward chain would cut the machine's traffic.
fn not_the_machines(here: (u64, u64), pid1: Option<(u64, u64)>) -> Result<(), String> {
    if pid1 == Some(here) {
        return Err(
            "the devstack dataplane runs only in a namespace of its own, not the machine's".into(),
        );
    }
    Ok(())
}

/// A bridge name for a VN: `vn` + 12 hex chars of its uuid (≤ 15, IFNAMSIZ).
pub fn bridge_name(vn_uuid: &str) -> String {
    let hex: String = vn_uuid
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(12)
        .collect();
    format!("vn{hex}")
}

impl Dataplane {
    /// The dataplane of the calling thread's namespace, which must not be the machine's own
    /// (PID 1's): there it installs its drop-by-default table, then turns IPv4 forwarding on.
    pub fn new() -> Result<Dataplane, String> {
        let here = ns_id("/proc/thread-self/ns/net").map_err(|e| format!("own netns: {e}"))?;
        not_the_machines(here, ns_id("/proc/1/ns/net").ok())?;
        let dp = Dataplane {
            netns: File::open("/proc/thread-self/ns/net").map_err(|e| e.to_string())?,
            netns_ino: here,
            bridges: Mutex::new(HashMap::new()),
            applied: Mutex::new(None),
            fabric: Mutex::new(None),
        };
        dp.apply_policy(&super::policy::ruleset(&[], &HashMap::new()))?;
        sysctl("net/ipv4/ip_forward", "1")?;
        Ok(dp)
    }

    /// Runs `f` in the node namespace: on the calling thread when it is there, else on a
    /// thread that joins it (a stack may be dropped from anywhere).
    fn here<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        if ns_id("/proc/thread-self/ns/net").ok() == Some(self.netns_ino) {
            return f();
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(&self.netns, CloneFlags::CLONE_NEWNET).expect("join the node namespace");
                f()
            })
            .join()
            .expect("node namespace thread")
        })
    }

    /// The node's link to the IP fabric (`fabric_snat` and the `ip-fabric` network's policies
    /// apply to it).
    pub fn set_fabric(&self, ifname: &str) {
        *self.fabric.lock().unwrap() = Some(ifname.to_owned());
    }

    pub fn fabric(&self) -> Option<String> {
        self.fabric.lock().unwrap().clone()
    }

    /// Runs `f` in the node namespace (the load balancer, `lb`).
    pub(crate) fn in_node<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.here(f)
    }

    /// Ensures the VN's bridge exists, is up, holds its IPv4 gateway as a /32 and proxies ARP.
    /// The network's DNS address (`dns`) is held the same way: the node's DNS server
    /// (`dns::DnsServer`, on every address of the node) answers there, as the vRouter answers a
    /// task's queries to it.
    pub fn ensure_network(
        &self,
        vn_uuid: &str,
        gateway: Option<IpAddr>,
        dns: Option<IpAddr>,
    ) -> Result<String, String> {
        let mut bridges = self.bridges.lock().unwrap();
        if let Some(b) = bridges.get(vn_uuid) {
            return Ok(b.clone());
        }
        let br = bridge_name(vn_uuid);
        self.here(|| ip(&["link", "add", &br, "type", "bridge"]))?;
        // Recorded at once: teardown removes it even when a step below fails.
        bridges.insert(vn_uuid.to_owned(), br.clone());
        drop(bridges);
        self.here(|| {
            sysctl(&format!("net/ipv4/conf/{br}/proxy_arp"), "1")?;
            // Proxied answers are otherwise delayed up to 0.8 s (`proxy_delay`, in jiffies).
            sysctl(&format!("net/ipv4/neigh/{br}/proxy_delay"), "0")?;
            ip(&["link", "set", &br, "up"])?;
            for a in [gateway, dns].into_iter().flatten().filter(IpAddr::is_ipv4) {
                ip(&["addr", "add", &format!("{a}/32"), "dev", &br])?;
            }
            Ok(br.clone())
        })
    }

    /// Enslaves a tap to its network's bridge and routes its IPv4 addresses there.
    pub fn attach(&self, tap: &str, bridge: &str, addrs: &[IpAddr]) -> Result<(), String> {
        self.here(|| {
            ip(&["link", "set", tap, "master", bridge])?;
            ip(&["link", "set", tap, "up"])?;
            for a in addrs.iter().filter(|a| a.is_ipv4()) {
                ip(&["route", "replace", &format!("{a}/32"), "dev", bridge])?;
            }
            Ok(())
        })
    }

    /// Releases a tap (it may already be gone with its container) and its host routes.
    pub fn detach(&self, tap: &str, bridge: &str, addrs: &[IpAddr]) {
        self.here(|| {
            let _ = ip(&["link", "set", tap, "nomaster"]);
            for a in addrs.iter().filter(|a| a.is_ipv4()) {
                let _ = ip(&["route", "del", &format!("{a}/32"), "dev", bridge]);
            }
        })
    }

    /// Replaces the policy table with `ruleset` (see `policy::ruleset`) unless it is what was
    /// applied last.
    pub fn apply_policy(&self, ruleset: &str) -> Result<(), String> {
        let mut applied = self.applied.lock().unwrap();
        if applied.as_deref() == Some(ruleset) {
            return Ok(());
        }
        self.here(|| nft_apply(ruleset))?;
        tracing::debug!("dataplane policy applied:\n{ruleset}");
        *applied = Some(ruleset.to_owned());
        Ok(())
    }

    /// The bridge of a network, once it exists.
    pub fn bridge_of(&self, vn_uuid: &str) -> Option<String> {
        self.bridges.lock().unwrap().get(vn_uuid).cloned()
    }

    /// VN uuid -> bridge, for every bridge this dataplane made.
    pub fn bridge_map(&self) -> HashMap<String, String> {
        self.bridges.lock().unwrap().clone()
    }

    /// Names of the bridges this dataplane made.
    pub fn bridges(&self) -> Vec<String> {
        self.bridges.lock().unwrap().values().cloned().collect()
    }

    /// Removes every bridge (their routes go with them), the policy table, and forwarding.
    pub fn teardown(&self) {
        let bridges: Vec<String> = self
            .bridges
            .lock()
            .unwrap()
            .drain()
            .map(|(_, b)| b)
            .collect();
        self.here(|| {
            for br in &bridges {
                let _ = ip(&["link", "delete", br]);
            }
            let _ = sysctl("net/ipv4/ip_forward", "0");
            let _ = Command::new(NFT)
                .args(["delete", "table", "inet", super::policy::TABLE])
                .stderr(Stdio::null())
                .status();
        });
        *self.applied.lock().unwrap() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_fit_ifnamsiz_and_differ_per_network() {
        let a = bridge_name("e4ce16e6-3d1f-4888-9c77-071eae29cde5");
        let b = bridge_name("fce2f6de-7b08-4d43-91ca-13a51029120e");
        assert_eq!(a, "vne4ce16e63d1f");
        assert!(a.len() <= 15);
        assert_ne!(a, b);
    }

    #[test]
    fn the_dataplane_refuses_the_machines_own_namespace() {
        let e = not_the_machines((4, 4026531840), Some((4, 4026531840))).unwrap_err();
        assert!(e.contains("namespace of its own"), "{e}");
        assert!(not_the_machines((4, 4026532999), Some((4, 4026531840))).is_ok());
    }
}
