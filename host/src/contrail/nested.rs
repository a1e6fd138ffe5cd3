//! Nested mode (`vif-type: macvlan`): the node is a VM of an OpenStack Contrail cloud, and a
//! container's interface is a macvlan on the VLAN sub-interface `<parent-interface>.<vlan>` of
//! the VM, tagged with the VLAN the agent gives for the container's VMI (a sub-interface VMI of
//! the VM's port, so the compute node's vRouter sees the container's traffic on that tag).
//!
//! tf-controller's Go CNI (`src/container/cni/common/macvlan.go`, chosen in
//! `src/container/cni/contrail/cni.go` `makeInterface`) does the same with two differences: it
//! makes one VLAN interface per container (named from the container's uuid, with the alias
//! `INTF_ALIAS<vlan>`) and a VEPA-mode macvlan. Here the VLAN interface is named for its VLAN and
//! shared by the containers on that VLAN (the kernel allows one VLAN device per tag and parent),
//! and the macvlan is in bridge mode, so containers on one VLAN of this VM reach each other
//! without a hairpin through the vRouter.
//!
//! Who uses a VLAN interface is known from our attachment records (`vlan_link`), under a
//! node-wide lock in the state directory: ADD holds it from finding (or creating) the
//! sub-interface until its record is written, and the last user out removes the sub-interface
//! under it, so a DEL never pulls the sub-interface from under an ADD that is about to use it.
//! Only sub-interfaces carrying our alias ([`crate::net::VLAN_OWNER_ALIAS`]) are ever removed:
//! one the operator made stays.

use std::fs::File;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::agent::VmiCfg;
use super::config::valid_ifname;
use super::error::{Error, Result, code};
use super::record::Store;
use crate::net::{NetError, NetOps, VLAN_OWNER_ALIAS};

/// The agent's "no VLAN" (`VmInterface::kInvalidVlanId` in tf-controller's agent).
const NO_VLAN: u32 = 0xffff;

/// The node-wide lock over the VLAN sub-interfaces and the records that use them.
pub struct VlanLock {
    _lock: Flock<File>,
}

impl VlanLock {
    pub fn acquire(state_dir: &Path) -> Result<VlanLock> {
        let err = |e: std::io::Error| {
            Error::new(
                code::PORT_FILE,
                format!("lock {}/.nested.lock: {e}", state_dir.display()),
            )
        };
        std::fs::create_dir_all(state_dir).map_err(err)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(state_dir.join(".nested.lock"))
            .map_err(err)?;
        let lock = Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| err(std::io::Error::from(e)))?;
        Ok(VlanLock { _lock: lock })
    }
}

/// The VLAN tag of this VMI, checked: nested mode cannot work without one (the VMI is then not
/// a sub-interface of the VM's port, or the agent is not the VM's compute node's).
pub fn vlan_of(vmi: &VmiCfg) -> Result<u16> {
    match vmi.vlan_id {
        Some(v) if (1..=4094).contains(&v) => Ok(v as u16),
        None | Some(0) | Some(NO_VLAN) => Err(Error::new(
            code::AGENT,
            format!(
                "nested mode (vif-type macvlan): the agent gives no vlan-id for VMI {} (is it a sub-interface of this VM's port?)",
                vmi.id
            ),
        )),
        Some(v) => Err(Error::new(
            code::AGENT,
            format!("the agent gives VMI {} the invalid vlan-id {v}", vmi.id),
        )),
    }
}

/// `<parent>.<vlan>`, as `ip link add link <parent> name <parent>.<vlan> type vlan` names it.
pub fn vlan_link_name(parent: &str, vlan: u16) -> Result<String> {
    let name = format!("{parent}.{vlan}");
    if !valid_ifname(&name) {
        return Err(Error::new(
            code::INVALID_CONFIG,
            format!(
                "contrail.parent-interface {parent:?}: the VLAN interface name {name:?} would be longer than 15 bytes"
            ),
        ));
    }
    Ok(name)
}

/// The parent must exist on the node before anything is asked of anyone: a config error (7)
/// naming the key.
pub fn check_parent(net: &mut dyn NetOps, parent: &str) -> Result<()> {
    match net.host_link_exists(parent) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::new(
            code::INVALID_CONFIG,
            format!("contrail.parent-interface {parent:?}: no such interface on the node"),
        )),
        Err(e) => Err(super::error::at_step(
            e.into(),
            "look up contrail.parent-interface",
        )),
    }
}

/// Removes the VLAN sub-interface `name` when it is ours and no recorded attachment uses it any
/// more. Ok(true) when it was removed.
pub fn release_vlan(net: &mut dyn NetOps, state_dir: &Path, name: &str) -> Result<bool> {
    let _lock = VlanLock::acquire(state_dir)?;
    let records = Store::new(state_dir).list(None).map_err(|e| {
        Error::new(
            code::PORT_FILE,
            format!("attachment records {}: {e}", state_dir.display()),
        )
    })?;
    if let Some(r) = records
        .iter()
        .find(|r| r.vlan_link.as_deref() == Some(name))
    {
        tracing::debug!(
            vlan = name,
            container_id = r.container_id,
            "VLAN interface still in use"
        );
        return Ok(false);
    }
    match net.host_link_alias(name).map_err(Error::from)? {
        Some(a) if a == VLAN_OWNER_ALIAS => {}
        Some(_) => {
            tracing::info!(vlan = name, "VLAN interface not made by us: left alone");
            return Ok(false);
        }
        None => return Ok(false),
    }
    match net.delete_host_link(name) {
        Ok(r) => Ok(r),
        Err(NetError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_ids_are_checked() {
        let mk = |v| VmiCfg {
            id: "x".into(),
            vlan_id: v,
            ..Default::default()
        };
        assert_eq!(vlan_of(&mk(Some(100))).unwrap(), 100);
        assert_eq!(vlan_of(&mk(Some(4094))).unwrap(), 4094);
        for v in [None, Some(0), Some(65535), Some(4095), Some(70000)] {
            let e = vlan_of(&mk(v)).unwrap_err();
            assert_eq!(e.code, code::AGENT);
            assert!(e.msg.contains("vlan-id"), "{}", e.msg);
        }
        assert_eq!(vlan_link_name("em2", 100).unwrap(), "em2.100");
        let e = vlan_link_name("enp0s31f6abcd", 4000).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("contrail.parent-interface"), "{}", e.msg);
    }

    #[test]
    fn a_release_waits_for_the_add_that_holds_the_lock() {
        use crate::contrail::fakes::FakeNet;
        use crate::contrail::record::Record;

        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let fake = || FakeNet {
            vlans: [("em2.100".to_string(), VLAN_OWNER_ALIAS.to_string())].into(),
            ..Default::default()
        };
        // An ADD that reuses em2.100 holds the lock until its record is written; a release
        // started meanwhile must wait for it and then keep the interface.
        let lock = VlanLock::acquire(&state).unwrap();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let releaser = std::thread::spawn({
            let state = state.clone();
            move || {
                let mut net = fake();
                started_tx.send(()).unwrap();
                let r = release_vlan(&mut net, &state, "em2.100").unwrap();
                (r, net.vlans.contains_key("em2.100"))
            }
        });
        started_rx.recv().unwrap();
        // Give the releaser the chance to run ahead if the lock did not hold it.
        std::thread::sleep(std::time::Duration::from_millis(50));
        Store::new(&state)
            .write(&Record {
                network: "blue".into(),
                container_id: "c2".into(),
                ifname: "eth0".into(),
                netns: "/run/netns/x".into(),
                vm_name: "c2".into(),
                vm_uuid: String::new(),
                vmi_uuid: "v".into(),
                tap: String::new(),
                vlan_link: Some("em2.100".into()),
                config_dir: tmp.path().join("ports"),
            })
            .unwrap();
        drop(lock);
        assert_eq!(releaser.join().unwrap(), (false, true));
        // Once nobody's record names it, it goes; one not marked ours never does.
        Store::new(&state).remove("blue", "c2", "eth0").unwrap();
        let mut net = fake();
        assert!(release_vlan(&mut net, &state, "em2.100").unwrap());
        assert!(net.vlans.is_empty());
        let mut net = FakeNet {
            vlans: [("em2.100".to_string(), "operator".to_string())].into(),
            ..Default::default()
        };
        assert!(!release_vlan(&mut net, &state, "em2.100").unwrap());
        assert!(!net.vlans.is_empty());
    }
}
