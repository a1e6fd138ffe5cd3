//! `contrail-cni-plugin sweep`: what a lost DEL left on the node. A runtime that crashed, or a
//! node that rebooted, may never send the DEL of a container whose network namespace is gone;
//! its tap, port file (which the vRouter agent replays on every restart) and agent port then
//! stay. The sweep removes, for each of our attachment records ([`super::record`], any network)
//! whose namespace no longer exists, what a DEL would have removed on the node
//! ([`super::gc::teardown`]). A namespace that still exists is a live container and is never
//! touched. Neither is one whose tap still exists on the node: the kernel removes a veth pair
//! with its namespace, so a tap outliving the namespace's path means something still holds the
//! namespace (or the sweep runs in a mount namespace that does not see the runtime's paths); nor is anything without our record (a port file of Contrail's own CNI, say), which
//! is only reported in the log.

use std::path::Path;

use super::agent::Agent;
use super::config::ContrailConfig;
use super::gc::teardown;
use super::portfile::VmDir;
use super::portmap::PortMap;
use super::record::{Record, Store};
use crate::net::NetOps;

/// Whether the namespace at `path` is certainly gone: the path does not exist, or it is no
/// longer a namespace handle: `statfs(2)` does not say nsfs, as it does for `/proc/<pid>/ns/net`
/// or a bind mount of one under `/run/netns` (the mount was undone and an empty file is left).
/// Any other answer (no permission, an empty path) counts as alive.
pub fn netns_gone(path: &Path) -> bool {
    if path.as_os_str().is_empty() {
        return false;
    }
    match nix::sys::statfs::statfs(path) {
        Ok(fs) => fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC,
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => true,
        Err(_) => false,
    }
}

/// What one run did: a line per removed (or, dry run, removable) attachment, and the failures.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub errors: Vec<String>,
}

/// Sweeps the records under `cfg.state_dir`; `gone` decides whether a namespace is gone
/// ([`netns_gone`] outside tests).
pub fn sweep(
    cfg: &ContrailConfig,
    agent: &dyn Agent,
    net: &mut dyn NetOps,
    ports: &dyn PortMap,
    dry_run: bool,
    gone: &dyn Fn(&Path) -> bool,
) -> Report {
    let mut report = Report::default();
    let records = match Store::new(&cfg.state_dir).list(None) {
        Ok(r) => r,
        Err(e) => {
            report.errors.push(format!(
                "attachment records under {}: {e}",
                cfg.state_dir.display()
            ));
            return report;
        }
    };
    for r in &records {
        if !gone(Path::new(&r.netns)) {
            continue;
        }
        // Nested mode has no tap (the macvlan went with the namespace).
        let tap = if r.tap.is_empty() {
            Ok(false)
        } else {
            net.host_link_exists(&r.tap)
        };
        match tap {
            Ok(false) => {}
            Ok(true) => {
                tracing::warn!(
                    container_id = r.container_id,
                    ifname = r.ifname,
                    "netns {} is gone but tap {} still exists: the namespace is still held; left alone",
                    r.netns,
                    r.tap
                );
                continue;
            }
            Err(e) => {
                report.errors.push(format!(
                    "{} {}/{}: is tap {} there? {e}",
                    r.network, r.container_id, r.ifname, r.tap
                ));
                continue;
            }
        }
        let verb = if dry_run { "would remove" } else { "removed" };
        match teardown(r, cfg, agent, net, ports, dry_run) {
            Ok(what) => report.lines.push(format!(
                "{verb} {} {}/{} (netns {} is gone): {}",
                r.network,
                r.container_id,
                r.ifname,
                r.netns,
                what.join(", ")
            )),
            Err(e) => report.errors.push(format!(
                "{} {}/{}: {}",
                r.network, r.container_id, r.ifname, e.msg
            )),
        }
    }
    unrecorded(cfg, &records, gone);
    report
}

/// Port files under `config-dir` whose namespace is gone but that have no record of ours: not
/// ours to remove (Contrail's own CNI, or a version without records, wrote them); logged so an
/// operator sees them.
fn unrecorded(cfg: &ContrailConfig, records: &[Record], gone: &dyn Fn(&Path) -> bool) {
    let Ok(rd) = std::fs::read_dir(&cfg.config_dir) else {
        return;
    };
    for e in rd.flatten() {
        let vm = e.file_name().to_string_lossy().into_owned();
        if vm.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(Some(dir)) = VmDir::lock(&cfg.config_dir, &vm, false) else {
            continue;
        };
        for (vmi, m) in dir.entries().unwrap_or_default() {
            let ours = records
                .iter()
                .any(|r| r.vm_name == vm && r.vmi_uuid == vmi && r.config_dir == cfg.config_dir);
            if !ours && !m.vm_namespace.is_empty() && gone(Path::new(&m.vm_namespace)) {
                tracing::warn!(
                    "port file {}/{vmi}: netns {} is gone but there is no record of ours; left alone",
                    dir.path().display(),
                    m.vm_namespace
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contrail::add::add;
    use crate::contrail::ctx::Ctx;
    use crate::contrail::fakes::*;

    fn add_in(cfg: &ContrailConfig, agent: &FakeAgent, net: &mut FakeNet, cid: &str, ns: &str) {
        let ctx = Ctx {
            container_id: cid,
            ..ctx(cfg, Path::new(ns))
        };
        let mut deps = fake_deps(agent, net);
        add(&ctx, &mut deps).unwrap();
        net.container.clear();
    }

    fn gone(p: &Path) -> bool {
        p.starts_with("/gone")
    }

    #[test]
    fn sweep_removes_what_a_lost_del_left_and_nothing_live() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let mut net = FakeNet::default();
        add_in(&cfg, &agent, &mut net, "dead", "/gone/dead");
        add_in(&cfg, &agent, &mut net, "live", "/live/live");
        // While the dead one's tap exists, its namespace is still held somewhere.
        let r = sweep(&cfg, &agent, &mut net, &agent.ports, false, &gone);
        assert!(r.lines.is_empty() && r.errors.is_empty(), "{r:?}");
        assert!(cfg.config_dir.join("dead").join(VMI).exists());
        // The kernel removes the veth pair with the namespace.
        let dead_tap = crate::contrail::naming::tap_name("dead", "eth0");
        net.links.retain(|l| *l != dead_tap);
        // Dry run: reports, changes nothing.
        let r = sweep(&cfg, &agent, &mut net, &agent.ports, true, &gone);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.lines.len(), 1, "{:?}", r.lines);
        assert!(r.lines[0].starts_with("would remove contrail-cni-plugin dead/eth0"));
        assert!(cfg.config_dir.join("dead").join(VMI).exists());
        assert_eq!(net.links.len(), 1);
        assert_eq!(Store::new(&cfg.state_dir).list(None).unwrap().len(), 2);
        assert!(!agent.calls.borrow().iter().any(|c| c.starts_with("DELETE")));

        let r = sweep(&cfg, &agent, &mut net, &agent.ports, false, &gone);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.lines.len(), 1, "{:?}", r.lines);
        assert!(r.lines[0].contains("port file"), "{}", r.lines[0]);
        assert!(!r.lines[0].contains("tap"), "{}", r.lines[0]);
        assert!(r.lines[0].contains("agent VM"), "{}", r.lines[0]);
        assert!(!cfg.config_dir.join("dead").exists());
        assert!(cfg.config_dir.join("live").join(VMI).exists());
        assert_eq!(
            net.links,
            [crate::contrail::naming::tap_name("live", "eth0")]
        );
        let left = Store::new(&cfg.state_dir).list(None).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].container_id, "live");
        // Nothing left to do.
        assert!(
            sweep(&cfg, &agent, &mut net, &agent.ports, false, &gone)
                .lines
                .is_empty()
        );
    }

    #[test]
    fn sweep_removes_a_dead_containers_port_mappings_and_keeps_a_live_ones() {
        use crate::contrail::portmap::{Proto, chain_name, from_mesos};
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let mut net = FakeNet::default();
        for (cid, ns, port) in [("dead", "/gone/dead", 8080), ("live", "/live/live", 9090)] {
            let ctx = Ctx {
                container_id: cid,
                port_mappings: from_mesos(&[crate::cni::config::PortMapping {
                    host_port: port,
                    container_port: 80,
                    protocol: None,
                }])
                .unwrap(),
                ..ctx(&cfg, Path::new(ns))
            };
            add(&ctx, &mut fake_deps(&agent, &mut net)).unwrap();
            net.container.clear();
        }
        let dead_tap = crate::contrail::naming::tap_name("dead", "eth0");
        net.links.retain(|l| *l != dead_tap);
        let r = sweep(&cfg, &agent, &mut net, &agent.ports, true, &gone);
        assert_eq!(r.lines.len(), 1, "{:?}", r.lines);
        let dead = chain_name("dead", "eth0");
        assert!(
            r.lines[0].contains(&format!("port mappings (nft chain {dead})")),
            "{}",
            r.lines[0]
        );
        assert_eq!(agent.ports.listing.borrow().entries.len(), 2);
        let r = sweep(&cfg, &agent, &mut net, &agent.ports, false, &gone);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert!(r.lines[0].contains("port mappings"), "{}", r.lines[0]);
        let l = agent.ports.listing.borrow().clone();
        assert!(l.keys_of(&dead).is_empty() && !l.chains.contains(&dead));
        assert_eq!(l.keys_of(&chain_name("live", "eth0")), [(Proto::Tcp, 9090)]);
    }

    #[test]
    fn sweep_in_nested_mode_releases_the_vlan_interface_with_its_last_user() {
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
        add_in(&cfg, &agent, &mut net, "dead", "/gone/dead");
        add_in(&cfg, &agent, &mut net, "live", "/live/live");
        // No tap to wait for: the dead one goes at once, the VLAN interface stays for the live.
        let r = sweep(&cfg, &agent, &mut net, &agent.ports, false, &gone);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.lines.len(), 1, "{:?}", r.lines);
        assert!(r.lines[0].contains("port file"), "{}", r.lines[0]);
        assert!(!r.lines[0].contains("agent VM"), "{}", r.lines[0]);
        assert!(!r.lines[0].contains("VLAN"), "{}", r.lines[0]);
        assert!(net.vlans.contains_key("em2.100"));
        assert!(!cfg.config_dir.join("dead").exists());
        // The last one's namespace gone too: the VLAN interface goes with it.
        let r = sweep(&cfg, &agent, &mut net, &agent.ports, false, &|_: &Path| {
            true
        });
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.lines.len(), 1, "{:?}", r.lines);
        assert!(
            r.lines[0].contains("VLAN interface em2.100"),
            "{}",
            r.lines[0]
        );
        assert!(net.vlans.is_empty());
        assert!(Store::new(&cfg.state_dir).list(None).unwrap().is_empty());
        assert!(!agent.calls.borrow().iter().any(|c| c.starts_with("DELETE")));
    }

    #[test]
    fn port_files_without_a_record_are_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let mut net = FakeNet::default();
        add_in(&cfg, &agent, &mut net, "dead", "/gone/dead");
        net.links.clear();
        std::fs::remove_dir_all(&cfg.state_dir).unwrap();
        let r = sweep(&cfg, &agent, &mut net, &agent.ports, false, &gone);
        assert!(r.lines.is_empty() && r.errors.is_empty());
        assert!(cfg.config_dir.join("dead").join(VMI).exists());
        assert!(
            agent
                .calls
                .borrow()
                .iter()
                .all(|c| !c.starts_with("DELETE"))
        );
    }

    #[test]
    fn netns_liveness() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(netns_gone(&tmp.path().join("absent")));
        // A plain file where a bind mount used to be.
        let f = tmp.path().join("ns");
        std::fs::write(&f, b"").unwrap();
        assert!(netns_gone(&f));
        assert!(!netns_gone(Path::new("/proc/self/ns/net")));
        assert!(!netns_gone(Path::new("")));
    }
}
