//! Network namespaces and netlink plumbing for the Contrail path.
//!
//! * [`netns`]: open and verify a netns, run a closure on a thread inside it (the process never
//!   changes namespace).
//! * [`link`]: the rtnetlink implementation of [`NetOps`], one netlink connection per namespace
//!   per invocation, on a current-thread tokio runtime.
//!
//! The Contrail logic only sees the [`NetOps`] trait, so it is unit-testable without root.

pub mod link;
pub mod netns;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

pub use link::Netlink;
pub use netns::NetNs;

/// Errors of the netns/netlink layer: CNI error 121, except a bad namespace (4) and
/// [`NetError::IfnameExists`] (7).
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot open network namespace {path}: {source}")]
    NetnsOpen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a network namespace")]
    NotNetns { path: PathBuf },
    #[error("cannot enter network namespace {path}: {source}")]
    Setns {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("netlink: {op}: {msg}")]
    Netlink {
        op: String,
        /// The kernel's errno when the kernel refused the request.
        errno: Option<i32>,
        msg: String,
    },
    #[error("interface {name} already exists in the container namespace")]
    IfnameExists { name: String },
    #[error("interface {name} not found")]
    NotFound { name: String },
    #[error("namespace worker thread panicked")]
    Panic,
}

impl NetError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetError::Netlink { errno, .. } => *errno,
            _ => None,
        }
    }
}

impl From<NetError> for crate::cni::CniError {
    fn from(e: NetError) -> Self {
        use crate::cni::CniError;
        use crate::cni::error::{INVALID_CONFIG, INVALID_ENV, NETLINK};
        match &e {
            NetError::NetnsOpen { .. } | NetError::NotNetns { .. } => {
                CniError::new(INVALID_ENV, e.to_string())
                    .with_details("CNI_NETNS must name a network namespace")
            }
            // "Interface already exists" is for the runtime to fix, not something a retry
            // heals.
            NetError::IfnameExists { .. } => CniError::new(INVALID_CONFIG, e.to_string()),
            _ => CniError::new(NETLINK, e.to_string()),
        }
    }
}

/// The veth pair to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethSpec {
    /// Host end (stays in the namespace of the caller), e.g. `tap1a2b3c4d5e6`.
    pub host_name: String,
    /// Container end, created directly inside the container namespace with this name. Its MAC
    /// (the VMI's) comes with [`NetOps::up_container_link`]; the host end keeps a kernel-chosen
    /// MAC, like Contrail's CNI: the vRouter answers ARP itself.
    pub container_name: String,
    pub mtu: u32,
}

/// The VLAN sub-interface of nested mode: `<parent>.<vlan>` in the node's namespace, the lower
/// device of the containers' macvlans (tf-controller `src/container/cni/common/macvlan.go`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanSpec {
    pub parent: String,
    pub name: String,
    pub vlan: u16,
}

/// A macvlan (bridge mode) on `lower`, created directly inside the container namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacvlanSpec {
    pub lower: String,
    pub container_name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
}

/// The alias our VLAN sub-interfaces carry: only those are ever deleted by us (one the operator
/// made is used, never removed).
pub const VLAN_OWNER_ALIAS: &str = "contrail-mesos-cni nested";

/// A route to set inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteSpec {
    pub dst: IpNet,
    /// None = on-link.
    pub gw: Option<IpAddr>,
}

/// What the kernel says about one container interface (for CHECK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceState {
    pub name: String,
    pub index: u32,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    pub up: bool,
    /// Addresses on the interface (permanent and dynamic; link-local IPv6 included).
    pub addrs: Vec<IpNet>,
    /// Routes of the main table that leave through the interface.
    pub routes: Vec<RouteSpec>,
}

/// The kernel operations the Contrail path needs. Implemented over netlink by [`Netlink`] and
/// by fakes in unit tests.
pub trait NetOps {
    /// Opens what later calls need (netlink connections in this namespace and in `netns`), so
    /// that it can overlap other work. Best effort: later calls report the errors.
    fn prepare(&mut self, _netns: Option<&Path>) -> Result<(), NetError> {
        Ok(())
    }
    /// Fails unless `netns` is a network namespace (cheap: no netlink, no thread).
    fn check_netns(&mut self, netns: &Path) -> Result<(), NetError>;
    /// Creates the veth pair: host end here and up, container end inside `netns` and down, MTU
    /// set on both. Fails with [`NetError::IfnameExists`] when the container already has an
    /// interface of that name. The pair needs only names, so it is made while the manager and
    /// the agent are asked; [`NetOps::up_container_link`] then gives the container end the
    /// VMI's MAC once that is known.
    fn create_veth(&mut self, netns: &Path, spec: &VethSpec) -> Result<(), NetError>;
    /// Sets `ifname` inside `netns` up with `mac` as its address (one message; the address is
    /// in place before IPv6 derives a link-local one from it).
    fn up_container_link(
        &mut self,
        netns: &Path,
        ifname: &str,
        mac: [u8; 6],
    ) -> Result<(), NetError>;
    /// Puts addresses and routes on `ifname` inside `netns`.
    fn configure(
        &mut self,
        netns: &Path,
        ifname: &str,
        addrs: &[IpNet],
        routes: &[RouteSpec],
    ) -> Result<(), NetError>;
    /// Deletes a host-side link by name (a veth end takes its peer with it). Ok(false) when
    /// there was nothing to delete.
    fn delete_host_link(&mut self, name: &str) -> Result<bool, NetError>;
    /// DEL's teardown of the veth whose host end is `host_name` (and whose container end is
    /// `ifname` inside `netns`, when given). Both names are free when this returns; with
    /// `background`, the kernel's slow part (a veth delete waits ~25-30 ms for RCU) runs in a
    /// detached child. Ok(false) when there was no such link.
    fn retire(
        &mut self,
        netns: Option<&Path>,
        ifname: &str,
        host_name: &str,
        background: bool,
    ) -> Result<bool, NetError>;
    /// Nested mode: the VLAN sub-interface, created up (with [`VLAN_OWNER_ALIAS`]) unless a VLAN
    /// link of that name, parent and tag exists already. Ok(true) when this call created it;
    /// [`NetError::NotFound`] when the parent does not exist; an error when the name is taken
    /// by another kind of link or another tag.
    fn ensure_vlan(&mut self, spec: &VlanSpec) -> Result<bool, NetError>;
    /// Nested mode: the macvlan on `spec.lower`, born inside `netns` with its name, MAC and
    /// MTU, then set up. [`NetError::IfnameExists`] when the name is taken there.
    fn create_macvlan(&mut self, netns: &Path, spec: &MacvlanSpec) -> Result<(), NetError>;
    /// Deletes `ifname` inside `netns`. Ok(false) when it (or the namespace) is gone.
    fn delete_container_link(&mut self, netns: &Path, ifname: &str) -> Result<bool, NetError>;
    /// A host-side link's alias: None when there is no such link, Some("") without alias.
    fn host_link_alias(&mut self, name: &str) -> Result<Option<String>, NetError>;
    /// Whether a host-side link of that name exists.
    fn host_link_exists(&mut self, name: &str) -> Result<bool, NetError>;
    /// Whether `ifname` exists inside `netns` (one netlink request; [`NetOps::inspect`] also
    /// dumps addresses and routes).
    fn container_link_exists(&mut self, netns: &Path, ifname: &str) -> Result<bool, NetError>;
    /// The state of `ifname` inside `netns`, None when absent.
    fn inspect(&mut self, netns: &Path, ifname: &str) -> Result<Option<IfaceState>, NetError>;
}

/// `02:42:ac:11:00:02` -> bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_format() {
        let m = parse_mac("02:AB:cd:00:11:ff").unwrap();
        assert_eq!(format_mac(&m), "02:ab:cd:00:11:ff");
        assert!(parse_mac("02:ab:cd:00:11").is_none());
        assert!(parse_mac("02:ab:cd:00:11:ff:00").is_none());
        assert!(parse_mac("02:ab:cd:00:11:fg").is_none());
        assert!(parse_mac("2:ab:cd:00:11:ff").is_none());
    }
}
