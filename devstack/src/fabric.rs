//! The IP fabric next to the devstack's node: a host (a namespace of its own, standing in for a
//! master, Mesos-DNS, marathon-lb or a public agent) on a link to the node, `192.168.200.0/24`.
//! The fabric host routes the Contrail networks' addresses to the node, as a real fabric learns
//! them from the vRouter gateway; whether its packets get through is the dataplane's policy (the
//! `ip-fabric` network's), and tasks on `fabric_snat` networks reach it with the node's address.

use std::path::PathBuf;

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
