//! DEL, with Mesos' semantics: no `prevResult`, maybe no netns (a DEL after a reboot). It is
//! repeatable, succeeds when everything is already gone, and ignores a stale DEL (a port file
//! written by another container id). Every step runs even when an earlier one failed, and the
//! error names every failure, so one broken peer never keeps the others from being cleaned.
//! The manager never fails a DEL: the node side (interface, agent port, port file) is what only
//! this DEL can clean, while the manager's reconciler removes the VNC objects of containers
//! that are gone, so a manager that cannot be reached must not block the runtime's teardown.

use std::time::Instant;

use super::agent::Agent;
use super::config::{ContrailConfig, Mode};
use super::ctx::{Ctx, Deps, Identity};
use super::error::{Error, Result, code};
use super::naming::tap_name;
use super::poll::{ms, request_timeout};
use super::portfile::{PortMsg, VmDir};
use super::portmap::chain_name;
use super::record::Store;

/// Removes this port's file and, when it was the VM's last, the directory and the agent's
/// subscriptions. `DELETE /vm/<uuid>` drops every subscription of the VM (the agent's port-IPC
/// handler, tf-controller `src/vnsw/agent/port_ipc/port_ipc_handler.cc`), so it is only sent by
/// the last one out; a sibling's leftover subscription on a DEL of one of several networks goes
/// with the VM's last DEL. All under the VM directory lock. Ok(whether it was the last).
pub fn release_port(
    agent: &dyn Agent,
    cfg: &ContrailConfig,
    container_id: &str,
    vm_name: &str,
    vmi: &str,
    vm_uuid: &str,
    posted: bool,
) -> Result<bool> {
    let pf = |e: std::io::Error| {
        Error::new(
            code::PORT_FILE,
            format!("port file of {vm_name}/{vmi}: {e}"),
        )
    };
    let Some(dir) = VmDir::lock(&cfg.config_dir, vm_name, false).map_err(pf)? else {
        return Ok(false);
    };
    release_locked(agent, cfg, &dir, container_id, vmi, vm_uuid, posted)
}

/// [`release_port`] with the VM directory already locked (GC checks ownership under the same
/// lock).
pub fn release_locked(
    agent: &dyn Agent,
    cfg: &ContrailConfig,
    dir: &VmDir,
    container_id: &str,
    vmi: &str,
    vm_uuid: &str,
    posted: bool,
) -> Result<bool> {
    let pf = |e: std::io::Error| {
        Error::new(
            code::PORT_FILE,
            format!("port file {}/{vmi}: {e}", dir.path().display()),
        )
    };
    dir.remove(vmi).map_err(pf)?;
    let last = dir.remove_if_empty().map_err(pf)?;
    if last && posted {
        let body = PortMsg::delete_body(container_id, vm_uuid);
        if let Err(e) = agent.delete_vm(vm_uuid, &body, request_timeout(cfg)) {
            // The agent keeps no state across restarts other than port files, and ours is
            // gone: an agent that is down now will not resurrect the subscription.
            tracing::warn!(container_id, error = %e, "DELETE /vm/{vm_uuid} failed; the port file is gone");
        }
    }
    Ok(last)
}

/// This interface's port file: (vmi uuid, vm uuid). Ok(None) when there is none, or when it
/// belongs to another container (a late DEL of an earlier sandbox with the same VM name).
enum Lookup {
    Mine { vmi: String, vm_uuid: String },
    Absent,
    Stale { owner: String },
}

fn lookup(ctx: &Ctx, id: &Identity) -> Result<Lookup> {
    let cfg = ctx.cfg;
    let pf = |e: std::io::Error| {
        Error::new(
            code::PORT_FILE,
            format!("{}/{}: {e}", cfg.config_dir.display(), id.vm_name),
        )
    };
    let Some(dir) = VmDir::lock(&cfg.config_dir, &id.vm_name, false).map_err(pf)? else {
        return Ok(Lookup::Absent);
    };
    let entries = dir.entries().map_err(pf)?;
    let Some((vmi, msg)) = entries.iter().find(|(_, m)| m.vm_ifname == ctx.ifname) else {
        return Ok(Lookup::Absent);
    };
    if !msg.vm_id.is_empty() && msg.vm_id != ctx.container_id {
        return Ok(Lookup::Stale {
            owner: msg.vm_id.clone(),
        });
    }
    let vm_uuid = if msg.vm_uuid.is_empty() {
        id.vm_uuid.clone().unwrap_or_default()
    } else {
        msg.vm_uuid.clone()
    };
    Ok(Lookup::Mine {
        vmi: vmi.clone(),
        vm_uuid,
    })
}

/// Several failures as one CNI error: the first failure's code, every message.
fn aggregate(mut errors: Vec<Error>) -> Result<()> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        n => {
            let msg = errors
                .iter()
                .map(|e| e.msg.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            let details = errors
                .iter()
                .map(|e| format!("code {}: {}", e.code, e.msg))
                .collect::<Vec<_>>()
                .join("\n");
            Err(
                Error::new(errors[0].code, format!("DEL: {n} steps failed: {msg}"))
                    .with_details(details),
            )
        }
    }
}

fn step(e: Error, what: &str) -> Error {
    super::error::at_step(e, what)
}

/// Removes our record of this attachment. Best effort: a record left behind names a port that is
/// gone, which GC and `sweep` then find absent (they check the port file's owner first).
fn forget(ctx: &Ctx) {
    if let Err(e) =
        Store::new(&ctx.cfg.state_dir).remove(ctx.network_name, ctx.container_id, ctx.ifname)
    {
        tracing::warn!(
            container_id = ctx.container_id,
            ifname = ctx.ifname,
            "DEL: could not remove the attachment record under {}: {e}",
            ctx.cfg.state_dir.display()
        );
    }
}

pub fn del(ctx: &Ctx, deps: &mut Deps) -> Result<()> {
    let t0 = Instant::now();
    let cfg = ctx.cfg;
    let cid = ctx.container_id;
    let tap = tap_name(cid, ctx.ifname);
    let mut errors = vec![];
    // The host ports first: they stop forwarding before the interface goes. They are this
    // (container id, ifname)'s by name, so even a stale DEL removes them.
    let chain = chain_name(cid, ctx.ifname);
    match deps.ports.remove(&chain) {
        Ok(true) => tracing::info!(container_id = cid, chain, "port mappings removed"),
        Ok(false) => {}
        Err(e) => errors.push(step(e, "remove the port mappings")),
    }
    // Without the pod's name a k8s DEL cannot find the port file; it still removes the veth.
    let id = Identity::of(ctx).ok();
    let port = match &id {
        Some(id) => match lookup(ctx, id) {
            Ok(Lookup::Stale { owner }) => {
                // A late DEL of an earlier container must not tear down the newer one that
                // reuses the name (Contrail's CNI had this bug for Kubernetes sandboxes).
                tracing::warn!(container_id = cid, owner = %owner, "stale DEL ignored: the port file belongs to another container");
                forget(ctx);
                return aggregate(errors);
            }
            Ok(Lookup::Mine { vmi, vm_uuid }) => Some((vmi, vm_uuid)),
            Ok(Lookup::Absent) => None,
            Err(e) => {
                errors.push(step(e, "read the port file"));
                None
            }
        },
        None => None,
    };
    let t_lookup = t0.elapsed();
    // Nested mode: the VLAN interface our record names (read before the record goes).
    let vlan_link = if cfg.nested() {
        Store::new(&cfg.state_dir)
            .get(ctx.network_name, cid, ctx.ifname)
            .unwrap_or_else(|e| {
                tracing::warn!(container_id = cid, "DEL: attachment record unreadable: {e}");
                None
            })
            .and_then(|r| r.vlan_link)
    } else {
        None
    };
    let removed = if cfg.nested() {
        // The macvlan goes with its namespace anyway; removing it now frees the VLAN interface
        // at once. Without a netns there is nothing left to remove in the container.
        match ctx.netns {
            Some(ns) => deps
                .net
                .delete_container_link(ns, ctx.ifname)
                .unwrap_or_else(|e| {
                    errors.push(step(e.into(), "remove the macvlan"));
                    false
                }),
            None => false,
        }
    } else {
        // Veth first: the agent then sees the tap vanish before the unsubscribe.
        deps.net
            .retire(ctx.netns, ctx.ifname, &tap, cfg.async_teardown)
            .unwrap_or_else(|e| {
                errors.push(step(e.into(), "remove the veth"));
                false
            })
    };
    let t_veth = t0.elapsed();
    if let (Some(id), Some((vmi, vm_uuid))) = (&id, &port)
        && let Err(e) = release_port(
            deps.agent,
            cfg,
            cid,
            &id.vm_name,
            vmi,
            vm_uuid,
            // Nested mode never subscribed the port (see `add::subscribe`).
            !vm_uuid.is_empty() && !cfg.nested(),
        )
    {
        errors.push(step(e, "remove the port file"));
    }
    // The record goes only with a clean node side: what a failed step left, GC and `sweep`
    // can still find by it.
    if errors.is_empty() {
        forget(ctx);
        // The VLAN interface goes with its last user (a macvlan still on it would go with it).
        if let Some(v) = &vlan_link
            && let Err(e) = super::nested::release_vlan(&mut *deps.net, &cfg.state_dir, v)
        {
            errors.push(step(e, "remove the VLAN interface"));
        }
    }
    if let (Some(id), Some(m)) = (&id, deps.manager)
        && id.mode == Mode::Mesos
        && let Err(e) = m.detach(cid, ctx.ifname)
    {
        tracing::warn!(
            container_id = cid,
            ifname = ctx.ifname,
            code = e.code,
            "DEL: could not deregister from the manager ({}); the node side is clean, the manager's reconciler will remove the VNC objects",
            e.msg
        );
    }
    tracing::info!(
        container_id = cid,
        ifname = ctx.ifname,
        tap,
        removed,
        failed = errors.len(),
        port_file_ms = ms(t_lookup),
        veth_ms = ms(t_veth - t_lookup),
        ms = ms(t0.elapsed()),
        "DEL done"
    );
    aggregate(errors)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::contrail::add::add;
    use crate::contrail::fakes::*;

    #[test]
    fn stale_del_touches_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let mut net = FakeNet::default();
        let ns = Path::new("/run/netns/x");
        let mut deps = fake_deps(&agent, &mut net);
        add(&ctx(&cfg, ns), &mut deps).unwrap();
        // Rewrite the port file as if a newer container with the same name owned it.
        let file = cfg.config_dir.join(CID).join(VMI);
        let mut m: PortMsg = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        m.vm_id = "newer".into();
        std::fs::write(&file, m.to_body()).unwrap();
        let mut deps = fake_deps(&agent, &mut net);
        del(&ctx(&cfg, ns), &mut deps).unwrap();
        assert!(file.exists());
        assert_eq!(net.links.len(), 1);
        assert!(!agent.calls.borrow().iter().any(|c| c.starts_with("DELETE")));
    }

    #[test]
    fn del_keeps_going_after_a_failure_and_reports_every_error() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let manager = FakeManager::default();
        let mut net = FakeNet::default();
        let ns = Path::new("/run/netns/x");
        let mut deps = Deps {
            manager: Some(&manager),
            ..fake_deps(&agent, &mut net)
        };
        add(&ctx(&cfg, ns), &mut deps).unwrap();
        assert_eq!(manager.attached.borrow().len(), 1);
        net.fail_retire = true;
        // The VM's port directory is unreadable (a file where the directory should be).
        let vm_dir = cfg.config_dir.join(CID);
        std::fs::remove_dir_all(&vm_dir).unwrap();
        std::fs::write(&vm_dir, b"").unwrap();
        let manager = FakeManager {
            attached: manager.attached,
            fail_detach: true,
            ..Default::default()
        };
        let mut deps = Deps {
            manager: Some(&manager),
            ..fake_deps(&agent, &mut net)
        };
        let e = del(&ctx(&cfg, ns), &mut deps).unwrap_err();
        // The port file could not be read and the veth could not go: both are reported, and the
        // manager was still asked (its failure is only logged: it never blocks teardown).
        assert_eq!(*manager.journal.lock().unwrap(), ["detach"]);
        assert!(e.msg.starts_with("DEL: 2 steps failed:"), "{}", e.msg);
        assert!(
            e.msg.contains("read the port file") && e.msg.contains("remove the veth"),
            "{}",
            e.msg
        );
        assert_eq!(e.code, code::PORT_FILE);
        assert_eq!(e.details.lines().count(), 2, "{}", e.details);
        // What the failed steps left can still be found by GC and `sweep`.
        let store = crate::contrail::record::Store::new(&cfg.state_dir);
        assert_eq!(store.list(None).unwrap().len(), 1);
    }

    #[test]
    fn an_unreachable_manager_never_fails_a_del() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let manager = FakeManager::default();
        let mut net = FakeNet::default();
        let ns = Path::new("/run/netns/x");
        let mut deps = Deps {
            manager: Some(&manager),
            ..fake_deps(&agent, &mut net)
        };
        add(&ctx(&cfg, ns), &mut deps).unwrap();
        let down = FakeManager {
            fail_detach: true,
            ..Default::default()
        };
        let mut deps = Deps {
            manager: Some(&down),
            ..fake_deps(&agent, &mut net)
        };
        del(&ctx(&cfg, ns), &mut deps).unwrap();
        assert!(net.links.is_empty());
        assert!(!cfg.config_dir.join(CID).exists());
        assert!(agent.subs.borrow().is_empty());
        assert_eq!(*down.journal.lock().unwrap(), ["detach"]);
    }
}
