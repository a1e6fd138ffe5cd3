//! The devstack agent's forwarding plane: each virtual network is a Linux bridge that holds the
//! network's gateway (service) address, inside the node namespace the whole devstack runs in
//! (so the machine's own links and sysctls are never touched). `POST /vm` attaches the tap to
//! its network's bridge; `DELETE /vm` detaches it.
//!
//! Forwarding between bridges stays off (a fresh namespace has `ip_forward=0`), which is the
//! isolation Contrail gives two virtual networks without a policy between them: a packet from blue
//! to red reaches blue's gateway and dies there.
//!
//! This is test infrastructure, so it drives `ip`; the product itself never shells out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::Command;
use std::sync::Mutex;

/// Bridges created so far, by VN uuid.
#[derive(Default)]
pub struct Dataplane {
    bridges: Mutex<HashMap<String, String>>,
}

fn ip(args: &[&str]) -> Result<(), String> {
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
    /// Ensures the VN's bridge exists, is up and holds `gateway/plen`.
    pub fn ensure_network(
        &self,
        vn_uuid: &str,
        gateway: Option<IpAddr>,
        plen: Option<u8>,
    ) -> Result<String, String> {
        let mut bridges = self.bridges.lock().unwrap();
        if let Some(b) = bridges.get(vn_uuid) {
            return Ok(b.clone());
        }
        let br = bridge_name(vn_uuid);
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&["link", "set", &br, "up"])?;
        if let (Some(gw), Some(plen)) = (gateway, plen) {
            ip(&["addr", "add", &format!("{gw}/{plen}"), "dev", &br])?;
        }
        bridges.insert(vn_uuid.to_owned(), br.clone());
        Ok(br)
    }

    /// Enslaves a tap to its network's bridge.
    pub fn attach(&self, tap: &str, bridge: &str) -> Result<(), String> {
        ip(&["link", "set", tap, "master", bridge])?;
        ip(&["link", "set", tap, "up"])
    }

    /// Releases a tap (it may already be gone with its container).
    pub fn detach(&self, tap: &str) {
        let _ = ip(&["link", "set", tap, "nomaster"]);
    }

    /// The bridge of a network, once it exists.
    pub fn bridge_of(&self, vn_uuid: &str) -> Option<String> {
        self.bridges.lock().unwrap().get(vn_uuid).cloned()
    }

    /// Names of the bridges this dataplane made.
    pub fn bridges(&self) -> Vec<String> {
        self.bridges.lock().unwrap().values().cloned().collect()
    }

    /// Removes every bridge.
    pub fn teardown(&self) {
        for br in self.bridges.lock().unwrap().drain().map(|(_, b)| b) {
            let _ = ip(&["link", "delete", &br]);
        }
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
}
