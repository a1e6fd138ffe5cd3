//! The rollback of a failed ADD: each side effect pushes the step that undoes it, and a failure
//! runs the list in reverse (the port mappings before the record before the port before the veth
//! before the manager registration, the opposite of the order ADD made them; in nested mode the
//! record before the port file before the macvlan before the VLAN sub-interface). Every step runs
//! even when an earlier one failed; a failed undo is logged, the ADD's own error is what the
//! runtime gets.

use std::path::PathBuf;
use std::time::Instant;

use super::config::ContrailConfig;
use super::ctx::Deps;
use super::del::release_port;
use super::poll::ms;

/// One side effect of an ADD, as what undoes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// Registered with the manager (also pushed before the POST: one that timed out may still
    /// have registered). Undone with `DELETE /v1/attachments/<cid>/<ifname>`.
    Registration,
    /// The veth pair, by its host end (the container end goes with it).
    Veth { tap: String },
    /// Nested mode: the VLAN sub-interface this ADD created. Undone only when no other
    /// attachment's record uses it (one may have started to since).
    Vlan { name: String },
    /// Nested mode: the container's macvlan.
    Macvlan { netns: PathBuf, ifname: String },
    /// The port file, and the agent subscription once `posted`. Undone under the VM directory
    /// lock like a DEL, so a sibling interface's subscription survives.
    Port {
        vm_name: String,
        vmi: String,
        vm_uuid: String,
        posted: bool,
    },
    /// Our attachment record (`record`), by its network.
    Record { network: String },
    /// The node's DNAT rules of this attachment, by their chain (pushed before the install:
    /// removing what is not there is a no-op).
    PortMap { chain: String },
}

/// The undo steps of one ADD, in the order their side effects happened.
#[derive(Debug, Default)]
pub struct UndoList {
    steps: Vec<Undo>,
}

impl UndoList {
    pub fn push(&mut self, step: Undo) {
        self.steps.push(step);
    }

    /// Drops the registration's undo: a refused ADD that did not create the registration
    /// leaves it to the interface that has it.
    pub fn forget_registration(&mut self) {
        self.steps.retain(|s| *s != Undo::Registration);
    }

    /// Records that the port's `POST /vm` went through.
    pub fn mark_posted(&mut self) {
        for s in self.steps.iter_mut().rev() {
            if let Undo::Port { posted, .. } = s {
                *posted = true;
                return;
            }
        }
    }

    /// Undoes everything, newest first.
    pub fn run(self, deps: &mut Deps, cfg: &ContrailConfig, container_id: &str, ifname: &str) {
        let t = Instant::now();
        for step in self.steps.into_iter().rev() {
            let res = match &step {
                Undo::Port {
                    vm_name,
                    vmi,
                    vm_uuid,
                    posted,
                } => release_port(
                    deps.agent,
                    cfg,
                    container_id,
                    vm_name,
                    vmi,
                    vm_uuid,
                    *posted,
                )
                .map(drop),
                Undo::Record { network } => super::record::Store::new(&cfg.state_dir)
                    .remove(network, container_id, ifname)
                    .map(drop)
                    .map_err(|e| {
                        super::error::Error::new(
                            super::error::code::PORT_FILE,
                            format!("attachment record: {e}"),
                        )
                    }),
                Undo::Veth { tap } => deps.net.delete_host_link(tap).map(drop).map_err(Into::into),
                Undo::Macvlan { netns, ifname } => deps
                    .net
                    .delete_container_link(netns, ifname)
                    .map(drop)
                    .map_err(Into::into),
                Undo::Vlan { name } => {
                    super::nested::release_vlan(&mut *deps.net, &cfg.state_dir, name).map(drop)
                }
                Undo::PortMap { chain } => deps.ports.remove(chain).map(drop),
                Undo::Registration => match deps.manager {
                    Some(m) => m.detach(container_id, ifname).map(drop),
                    None => Ok(()),
                },
            };
            if let Err(e) = res {
                tracing::warn!(container_id, ?step, error = %e, "rollback step failed");
            }
        }
        tracing::info!(container_id, ms = ms(t.elapsed()), "ADD rolled back");
    }
}
