//! GC (CNI SPEC.md "GC: Clean up any stale resources"). The runtime names the attachments that
//! are still valid *for this network*; anything else this network created may go. Port files
//! cannot tell: they do not record which CNI network wrote them, and one container's interfaces
//! on two Contrail networks share the VM's port directory. So GC goes by our own attachment
//! records ([`super::record`], under `state-dir`), which ADD writes per (network, container id,
//! ifname): for each record of this network whose (container id, ifname) is not in
//! `cni.dev/valid-attachments`, the node side of a DEL runs (the port mappings' nft rules, the
//! tap, the port file and, for the VM's last port, the agent's subscription, then the record). Another network's records, and
//! any port without a record (written by Contrail's own CNI, or before records existed), are
//! never touched; nor is a port file whose `vm-id` names another container than the record.
//! The manager's reconciler removes the VNC objects of containers that are gone.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

use super::agent::Agent;
use super::config::ContrailConfig;
use super::del::release_locked;
use super::error::{Error, Result, code};
use super::portfile::VmDir;
use super::portmap::{PortMap, chain_name};
use super::record::{Record, Store};
use crate::cni::config::NetConf;
use crate::net::NetOps;

/// Keys of the valid-attachment list (CNI SPEC.md "GC"; libcni also sent the older spelling).
const VALID_KEYS: &[&str] = &["cni.dev/valid-attachments", "cni.dev/attachments"];

/// The (container id, ifname) pairs the runtime still holds. A GC without the list, or with a
/// malformed one, is refused (code 7) and removes nothing: reading it as "none valid" would
/// tear down every live attachment.
pub fn valid_attachments(conf: &NetConf) -> Result<HashSet<(String, String)>> {
    let bad = |m: String| Error::new(code::INVALID_CONFIG, m);
    let (key, list) = VALID_KEYS
        .iter()
        .find_map(|k| conf.get(k).map(|v| (*k, v)))
        .ok_or_else(|| bad("GC needs cni.dev/valid-attachments".into()))?;
    let list = list
        .as_array()
        .ok_or_else(|| bad(format!("{key}: expected a list, got {list}")))?;
    let mut out = HashSet::with_capacity(list.len());
    for (i, a) in list.iter().enumerate() {
        let field = |name: &str| {
            a.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("{key}[{i}].{name}: expected a non-empty string")))
        };
        out.insert((field("containerID")?, field("ifname")?));
    }
    Ok(out)
}

/// Removes the node side of one recorded attachment (or, `dry_run`, only says what it would
/// remove). Returns what was (or would be) removed, for the operator's line; the record goes
/// last, and only when the other steps succeeded, so a failure is retried by the next run.
pub fn teardown(
    rec: &Record,
    cfg: &ContrailConfig,
    agent: &dyn Agent,
    net: &mut dyn NetOps,
    ports: &dyn PortMap,
    dry_run: bool,
) -> Result<Vec<String>> {
    let mut done = vec![];
    // The node's DNAT rules of the attachment, by its (container id, ifname).
    let chain = chain_name(&rec.container_id, &rec.ifname);
    let ports_error = if dry_run {
        match ports.list() {
            Ok(l) => {
                if l.chains.contains(&chain) || !l.keys_of(&chain).is_empty() {
                    done.push(format!("port mappings (nft chain {chain})"));
                }
                None
            }
            Err(e) => Some(super::error::at_step(e, "list the port mappings")),
        }
    } else {
        match ports.remove(&chain) {
            Ok(true) => {
                done.push(format!("port mappings (nft chain {chain})"));
                None
            }
            Ok(false) => None,
            Err(e) => Some(super::error::at_step(e, "remove the port mappings")),
        }
    };
    let tap = if rec.tap.is_empty() {
        // Nested mode: no tap; the container's macvlan, when its namespace is still there.
        let ns = Path::new(&rec.netns);
        match (&rec.vlan_link, dry_run) {
            (None, _) => Ok(false),
            (Some(_), true) => net.container_link_exists(ns, &rec.ifname).or(Ok(false)),
            (Some(_), false) => net.delete_container_link(ns, &rec.ifname),
        }
        .map(|r| {
            if r {
                done.push(format!("macvlan {} in {}", rec.ifname, rec.netns));
            }
            false
        })
    } else if dry_run {
        net.host_link_exists(&rec.tap)
    } else {
        net.delete_host_link(&rec.tap)
    };
    // A tap that cannot go does not keep the port from going; the record stays for a retry.
    let tap_error = match tap {
        Ok(true) => {
            done.push(format!("tap {}", rec.tap));
            None
        }
        Ok(false) => None,
        Err(e) => Some(super::error::at_step(e.into(), "remove the tap")),
    };
    // The port file of the record's config dir, under the VM directory lock, and only when it
    // still names this container (the VM name of a k8s pod is reused by its next sandbox).
    let cfg = ContrailConfig {
        config_dir: rec.config_dir.clone(),
        ..cfg.clone()
    };
    let pf = |e: std::io::Error| {
        Error::new(
            code::PORT_FILE,
            format!(
                "port file {}/{}/{}: {e}",
                rec.config_dir.display(),
                rec.vm_name,
                rec.vmi_uuid
            ),
        )
    };
    if let Some(dir) = VmDir::lock(&rec.config_dir, &rec.vm_name, false).map_err(pf)? {
        let entries = dir.entries().map_err(pf)?;
        match entries.iter().find(|(n, _)| *n == rec.vmi_uuid) {
            Some((_, m)) if m.vm_id == rec.container_id => {
                let file = format!("port file {}/{}", dir.path().display(), rec.vmi_uuid);
                if dry_run {
                    done.push(file);
                    if entries.len() == 1 && !rec.vm_uuid.is_empty() && rec.vlan_link.is_none() {
                        done.push(format!("agent VM {}", rec.vm_uuid));
                    }
                } else {
                    let last = release_locked(
                        agent,
                        &cfg,
                        &dir,
                        &rec.container_id,
                        &rec.vmi_uuid,
                        &rec.vm_uuid,
                        // Nested mode never subscribed the port.
                        !rec.vm_uuid.is_empty() && rec.vlan_link.is_none(),
                    )?;
                    done.push(file);
                    if last && !rec.vm_uuid.is_empty() && rec.vlan_link.is_none() {
                        done.push(format!("agent VM {}", rec.vm_uuid));
                    }
                }
            }
            Some((_, m)) => tracing::warn!(
                container_id = rec.container_id,
                owner = m.vm_id,
                "port file {}/{} belongs to another container: left alone",
                dir.path().display(),
                rec.vmi_uuid
            ),
            None => {}
        }
    }
    if let Some(e) = ports_error.or(tap_error) {
        return Err(e);
    }
    if !dry_run {
        Store::new(&cfg.state_dir)
            .remove(&rec.network, &rec.container_id, &rec.ifname)
            .map_err(|e| {
                Error::new(
                    code::PORT_FILE,
                    format!(
                        "attachment record of {}/{}: {e}",
                        rec.container_id, rec.ifname
                    ),
                )
            })?;
    }
    done.push("record".into());
    if let Some(v) = &rec.vlan_link
        && !dry_run
        && super::nested::release_vlan(net, &cfg.state_dir, v)?
    {
        done.push(format!("VLAN interface {v}"));
    }
    Ok(done)
}

/// GC of `network`: tears down its recorded attachments that are not in `valid`. Every stale
/// attachment is tried; the error names every failure.
pub fn gc(
    cfg: &ContrailConfig,
    network: &str,
    valid: &HashSet<(String, String)>,
    agent: &dyn Agent,
    net: &mut dyn NetOps,
    ports: &dyn PortMap,
) -> Result<usize> {
    let store = Store::new(&cfg.state_dir);
    let records = store.list(Some(network)).map_err(|e| {
        Error::new(
            code::PORT_FILE,
            format!("attachment records under {}: {e}", cfg.state_dir.display()),
        )
    })?;
    let (stale, kept): (Vec<&Record>, Vec<&Record>) = records
        .iter()
        .partition(|r| !valid.contains(&(r.container_id.clone(), r.ifname.clone())));
    let mut errors = vec![];
    let mut removed = 0;
    for r in stale {
        match teardown(r, cfg, agent, net, ports, false) {
            Ok(what) => {
                removed += 1;
                tracing::info!(
                    network,
                    container_id = r.container_id,
                    ifname = r.ifname,
                    "GC removed a stale attachment: {}",
                    what.join(", ")
                );
            }
            Err(e) => {
                tracing::warn!(
                    network,
                    container_id = r.container_id,
                    ifname = r.ifname,
                    "GC: {}",
                    e.msg
                );
                errors.push(format!("{}/{}: {}", r.container_id, r.ifname, e.msg));
            }
        }
    }
    tracing::info!(
        network,
        valid_attachments = valid.len(),
        kept = kept.len(),
        removed,
        failed = errors.len(),
        "GC done"
    );
    if errors.is_empty() {
        Ok(removed)
    } else {
        Err(Error::new(
            code::PORT_FILE,
            format!(
                "GC: {} stale attachment(s) not removed: {}",
                errors.len(),
                errors.join("; ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::contrail::add::add;
    use crate::contrail::ctx::Ctx;
    use crate::contrail::fakes::*;

    fn add_as(
        cfg: &ContrailConfig,
        agent: &FakeAgent,
        net: &mut FakeNet,
        network: &str,
        cid: &str,
    ) {
        let ctx = Ctx {
            network_name: network,
            container_id: cid,
            ..ctx(cfg, Path::new("/run/netns/x"))
        };
        let mut deps = fake_deps(agent, net);
        add(&ctx, &mut deps).unwrap();
        // Each container has its own namespace; the fake has one list for all.
        net.container.clear();
    }

    fn valid(pairs: &[(&str, &str)]) -> HashSet<(String, String)> {
        pairs
            .iter()
            .map(|(c, i)| (c.to_string(), i.to_string()))
            .collect()
    }

    #[test]
    fn gc_removes_only_this_networks_stale_records() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let mut net = FakeNet::default();
        // In Mesos mode the VM name is the container id: one directory per container.
        add_as(&cfg, &agent, &mut net, "blue", "stale");
        add_as(&cfg, &agent, &mut net, "blue", "live");
        add_as(&cfg, &agent, &mut net, "red", "other");
        assert_eq!(net.links.len(), 3);
        let n = gc(
            &cfg,
            "blue",
            &valid(&[("live", "eth0")]),
            &agent,
            &mut net,
            &agent.ports,
        )
        .unwrap();
        assert_eq!(n, 1);
        // The stale one's tap, port file and record are gone, its VM deleted at the agent.
        assert!(!cfg.config_dir.join("stale").exists());
        assert!(cfg.config_dir.join("live").join(VMI).exists());
        assert!(cfg.config_dir.join("other").join(VMI).exists());
        let store = Store::new(&cfg.state_dir);
        let left: Vec<_> = store
            .list(None)
            .unwrap()
            .into_iter()
            .map(|r| (r.network, r.container_id))
            .collect();
        assert_eq!(
            left,
            [
                ("blue".into(), "live".into()),
                ("red".into(), "other".into())
            ]
        );
        assert_eq!(net.links.len(), 2);
        assert!(
            !net.links
                .contains(&crate::contrail::naming::tap_name("stale", "eth0"))
        );
        let deletes: Vec<_> = agent
            .calls
            .borrow()
            .iter()
            .filter(|c| c.starts_with("DELETE"))
            .cloned()
            .collect();
        assert_eq!(deletes.len(), 1);
        // Repeatable: nothing else is stale.
        assert_eq!(
            gc(
                &cfg,
                "blue",
                &valid(&[("live", "eth0")]),
                &agent,
                &mut net,
                &agent.ports
            )
            .unwrap(),
            0
        );
    }

    #[test]
    fn gc_in_nested_mode_releases_the_vlan_interface_with_its_last_user() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = nested_cfg(tmp.path());
        let agent = FakeAgent {
            vlan: Some(100),
            ..Default::default()
        };
        let mut net = FakeNet {
            parents: vec!["em2".into()],
            ..Default::default()
        };
        add_as(&cfg, &agent, &mut net, "blue", "stale");
        add_as(&cfg, &agent, &mut net, "blue", "live");
        assert_eq!(net.macvlans.len(), 2);
        let n = gc(
            &cfg,
            "blue",
            &valid(&[("live", "eth0")]),
            &agent,
            &mut net,
            &agent.ports,
        )
        .unwrap();
        assert_eq!(n, 1);
        assert!(net.vlans.contains_key("em2.100"));
        assert!(!cfg.config_dir.join("stale").exists());
        assert!(cfg.config_dir.join("live").join(VMI).exists());
        // Nested mode never subscribed: nothing to unsubscribe.
        assert!(!agent.calls.borrow().iter().any(|c| c.starts_with("DELETE")));
        let n = gc(&cfg, "blue", &valid(&[]), &agent, &mut net, &agent.ports).unwrap();
        assert_eq!(n, 1);
        assert!(net.vlans.is_empty(), "{:?}", net.journal.lock().unwrap());
        assert!(Store::new(&cfg.state_dir).list(None).unwrap().is_empty());
    }

    #[test]
    fn gc_leaves_a_port_file_that_now_belongs_to_another_container() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let mut net = FakeNet::default();
        add_as(&cfg, &agent, &mut net, "blue", CID);
        let file = cfg.config_dir.join(CID).join(VMI);
        let mut m: crate::contrail::portfile::PortMsg =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        m.vm_id = "newer".into();
        std::fs::write(&file, m.to_body()).unwrap();
        gc(&cfg, "blue", &valid(&[]), &agent, &mut net, &agent.ports).unwrap();
        assert!(file.exists());
        assert!(!agent.calls.borrow().iter().any(|c| c.starts_with("DELETE")));
        assert!(Store::new(&cfg.state_dir).list(None).unwrap().is_empty());
    }

    #[test]
    fn a_port_without_a_record_is_never_touched() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let mut net = FakeNet::default();
        add_as(&cfg, &agent, &mut net, "blue", CID);
        // As if Contrail's own CNI (which writes no record) had made it.
        std::fs::remove_dir_all(&cfg.state_dir).unwrap();
        assert_eq!(
            gc(&cfg, "blue", &valid(&[]), &agent, &mut net, &agent.ports).unwrap(),
            0
        );
        assert!(cfg.config_dir.join(CID).join(VMI).exists());
        assert_eq!(net.links.len(), 1);
    }

    #[test]
    fn the_valid_list_is_required_and_checked() {
        let conf = |v: Value| NetConf::from_value(v).unwrap();
        let base = json!({"cniVersion": "1.1.0", "name": "n", "type": "t"});
        let e = valid_attachments(&conf(base.clone())).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        let mut c = base.clone();
        c["cni.dev/valid-attachments"] =
            json!([{"containerID": "a", "ifname": "eth0"}, {"containerID": "b"}]);
        let e = valid_attachments(&conf(c)).unwrap_err();
        assert!(e.msg.contains("[1].ifname"), "{}", e.msg);
        let mut c = base;
        c["cni.dev/valid-attachments"] = json!([{"containerID": "a", "ifname": "eth0"}]);
        assert_eq!(
            valid_attachments(&conf(c)).unwrap(),
            valid(&[("a", "eth0")])
        );
    }
}
