//! ADD: labels → manager → agent → veth up with the VMI's MAC → port file + `POST /vm` → agent →
//! Wasm IPAM → addresses and routes (nested mode: VLAN interface + macvlan → port file, no
//! `POST /vm`; see [`super::nested`]). The veth pair is made, down, on a thread while the manager
//! and the agent are asked. Each step with a side effect records its [`Undo`]; a failure (or a panic) runs
//! them in reverse before the error goes back to the runtime.

use std::path::Path;
use std::time::Instant;

use contrail_mesos_api::{AttachRequest, Node};
use ipnet::IpNet;

use super::agent::Agent;
use super::agent::{VmiCfg, VrouterPort};
use super::config::Mode;
use super::ctx::{Ctx, Deps, Identity, Policy};
use super::error::{Error, Result, at_step, code};
use super::manager::Manager;
use super::naming::{eth_index, tap_name};
use super::nested::{self, VlanLock};
use super::poll::{Poll, agent_poll_reason, ms, poll, request_timeout};
use super::portfile::{PortMsg, VmDir, go_time_now};
use super::portmap::{InstallError, Target, chain_name};
use super::record::{Record, Store};
use super::undo::{Undo, UndoList};
use crate::cni::result::{CniResult, Interface, IpConfig};
use crate::net::{
    MacvlanSpec, NetError, NetOps, RouteSpec, VethSpec, VlanSpec, format_mac, parse_mac,
};

/// ADD. Returns the result in the canonical (1.1.0) shape.
pub fn add(ctx: &Ctx, deps: &mut Deps) -> Result<CniResult> {
    let netns = ctx
        .netns
        .ok_or_else(|| Error::new(code::INVALID_ENV, "CNI_NETNS is required for ADD"))?;
    ctx.cfg.check_supported()?;
    ctx.cfg.check_state_dir()?;
    let policy = deps.policy;
    let mut undo = UndoList::default();
    let out = std::thread::scope(|s| {
        // Loading the IPAM component (~0.4 ms of CPU) overlaps the agent round trips instead
        // of following them. It starts on `ipam_go` (see `steps`); without that signal (the
        // ADD failed before) it does not load at all.
        let (ipam_go, go) = std::sync::mpsc::channel::<()>();
        s.spawn(move || {
            if go.recv().is_ok() {
                policy.prefetch();
            }
        });
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            steps(ctx, netns, deps, &mut undo, ipam_go)
        }))
    });
    match out {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => {
            undo.run(deps, ctx.cfg, ctx.container_id, ctx.ifname);
            Err(e)
        }
        Err(panic) => {
            undo.run(deps, ctx.cfg, ctx.container_id, ctx.ifname);
            std::panic::resume_unwind(panic)
        }
    }
}

/// Logs how long each step took.
struct Laps<'a> {
    container_id: &'a str,
    t: Instant,
}

impl Laps<'_> {
    fn done(&mut self, step: &str) {
        tracing::info!(
            container_id = self.container_id,
            step,
            ms = ms(self.t.elapsed()),
            "ADD step done"
        );
        self.t = Instant::now();
    }
}

fn steps(
    ctx: &Ctx,
    netns: &Path,
    deps: &mut Deps,
    undo: &mut UndoList,
    ipam_go: std::sync::mpsc::Sender<()>,
) -> Result<CniResult> {
    let t0 = Instant::now();
    let mut laps = Laps {
        container_id: ctx.container_id,
        t: Instant::now(),
    };
    let mut id = Identity::of(ctx)?;
    // Before anything is created, a path that is not a network namespace fails at once (not
    // after the agent's poll budget).
    deps.net
        .check_netns(netns)
        .map_err(|e| at_step(e.into(), "open the container's network namespace"))?;
    if let Some(parent) = ctx
        .cfg
        .parent_interface
        .as_deref()
        .filter(|_| ctx.cfg.nested())
    {
        nested::check_parent(&mut *deps.net, parent)?;
    }
    if !ctx.port_mappings.is_empty() && ctx.cfg.nested() {
        // A macvlan's traffic bypasses the node's (the VM's) netfilter: a DNAT there would
        // never see it.
        return Err(Error::new(
            code::INVALID_CONFIG,
            "network_info.port_mappings: host ports are not forwarded in nested mode (contrail.vif-type \"macvlan\")",
        ));
    }
    let registers = id.mode == Mode::Mesos && deps.manager.is_some();
    let nested_link_mode = ctx.cfg.nested() && ctx.cfg.parent_interface.is_some();

    // The manager and the agent are asked while a thread opens the netlink connections,
    // checks that no interface has the name yet, and makes the veth pair, which needs only
    // names and the MTU (the VMI's MAC comes when its container end is brought up). An
    // interface that has the name is the runtime's (a repeated ADD): refusing it leaves it,
    // its tap, port and registration alone. Beside it the manager only answers `200` (already
    // registered, nothing changed) and the agent is only read, so the check need not wait
    // for them, nor they for it (its netlink connection inside the namespace is ~0.5 ms).
    let Deps {
        agent,
        manager,
        net,
        policy,
        ..
    } = deps;
    // The IPAM component's load starts now when no labels are translated; otherwise once the
    // veth is made, so that it does not compete with the translation and the veth for two
    // cores (measured: docs/BENCHMARKS.md, "Sixth round").
    let ipam_go = if registers {
        Some(ipam_go)
    } else {
        let _ = ipam_go.send(());
        None
    };
    let mut created = false;
    let (asked, linked) = std::thread::scope(|scope| {
        let link = scope.spawn(move || {
            // Best effort: the steps that need the connections report their errors.
            let _ = net.prepare(Some(netns));
            ifname_is_free(net.container_link_exists(netns, ctx.ifname), ctx.ifname)
                .map_err(NoVeth::NameTaken)?;
            let made = if nested_link_mode {
                None
            } else {
                Some(make_veth(ctx, netns, &mut **net).map_err(NoVeth::Failed)?)
            };
            if let Some(go) = ipam_go {
                let _ = go.send(());
            }
            Ok(made)
        });
        let asked = register(ctx, netns, *policy, *manager, &mut id, &mut created, undo).and_then(
            |hints| {
                if hints.is_some() {
                    laps.done("register");
                }
                let hints = hints.unwrap_or_default();
                let vmi = wait_for_vmi(ctx, *agent, &id, hints.vmi.as_deref())?;
                laps.done("vm-cfg");
                Ok((hints, vmi))
            },
        );
        // A panic leaves unknown whether the pair was made; nothing is deleted on that (the
        // name may be a repeated ADD's interface).
        let linked = link.join().unwrap_or_else(|_| {
            Err(NoVeth::Failed(Error::new(
                code::INTERNAL,
                "the veth thread panicked",
            )))
        });
        (asked, linked)
    });
    // What was made is undone whatever failed.
    let veth = match linked {
        Ok(Some(tap)) => {
            undo.push(Undo::Veth { tap: tap.clone() });
            Ok(Some(tap))
        }
        Ok(None) => Ok(None),
        Err(NoVeth::NameTaken(e)) => {
            // The name is taken, so the registration is most likely the running interface's:
            // it is undone only when this call created it. One whose POST failed without an
            // answer is left to the DEL the runtime sends after a failed ADD (and to the
            // manager's reconciler).
            if !created {
                undo.forget_registration();
            }
            return Err(e);
        }
        Err(NoVeth::Failed(e)) => Err(e),
    };
    let (hints, vmi) = asked?;
    let veth = veth?;
    let plan = Plan::new(ctx, &id, &vmi, &hints)?;

    let tap = match (veth, &plan.vlan, ctx.cfg.parent_interface.as_deref()) {
        (None, Some(vlan), Some(parent)) => {
            let link = nested_link(ctx, netns, deps, &id, &plan, parent, *vlan, undo)?;
            laps.done("macvlan");
            link
        }
        (Some(tap), _, _) => {
            deps.net
                .up_container_link(netns, ctx.ifname, plan.mac)
                .map_err(|e| at_step(e.into(), "set the container's interface up"))?;
            laps.done("veth");
            subscribe(ctx, netns, deps, &id, &plan, &tap, None, undo)?;
            laps.done("port");
            tap
        }
        (None, ..) => {
            return Err(Error::new(
                code::INTERNAL,
                "nested mode without its VLAN or parent interface",
            ));
        }
    };

    let port = wait_for_port(ctx, deps, &plan)?;
    laps.done("vm-port");
    let ipcfg = deps
        .policy
        .ipam(&port, plan.primary)
        .map_err(|e| at_step(e, "IPAM plugin"))?;
    laps.done("ipam");

    let addrs: Vec<IpNet> = ipcfg.ips.iter().map(|i| i.address).collect();
    let routes: Vec<RouteSpec> = ipcfg
        .routes
        .iter()
        .map(|r| RouteSpec {
            dst: r.dst,
            gw: r.gw,
        })
        .collect();
    deps.net
        .configure(netns, ctx.ifname, &addrs, &routes)
        .map_err(|e| at_step(e.into(), "configure addresses and routes"))?;
    laps.done("configure");
    if !ctx.port_mappings.is_empty() {
        forward_ports(ctx, deps, &addrs, undo)?;
        laps.done("port mappings");
    }

    tracing::info!(container_id = ctx.container_id, ifname = ctx.ifname, tap, vmi = %plan.vmi, ms = ms(t0.elapsed()), "ADD done");
    Ok(CniResult {
        interfaces: vec![Interface {
            name: ctx.ifname.to_owned(),
            mac: Some(format_mac(&plan.mac)),
            mtu: Some(ctx.cfg.mtu),
            sandbox: Some(netns.to_string_lossy().into_owned()),
            socket_path: None,
            pci_id: None,
        }],
        ips: ipcfg
            .ips
            .iter()
            .map(|i| IpConfig {
                interface: Some(0),
                ..i.clone()
            })
            .collect(),
        routes: ipcfg.routes.clone(),
        dns: ipcfg.dns.clone(),
    })
}

/// The node's DNAT rules for Mesos' port mappings, to the interface's first IPv4 and first
/// IPv6 address (see [`super::portmap`]).
fn forward_ports(ctx: &Ctx, deps: &mut Deps, addrs: &[IpNet], undo: &mut UndoList) -> Result<()> {
    let v4 = addrs.iter().find_map(|a| match a.addr() {
        std::net::IpAddr::V4(v) => Some(v),
        _ => None,
    });
    let v6 = addrs.iter().find_map(|a| match a.addr() {
        std::net::IpAddr::V6(v) => Some(v),
        _ => None,
    });
    if v4.is_none() && v6.is_none() {
        return Err(Error::new(
            code::PORT_MAPPING,
            format!(
                "forward host ports: interface {} got no address to forward to",
                ctx.ifname
            ),
        ));
    }
    let chain = chain_name(ctx.container_id, ctx.ifname);
    // Rules of this very attachment left by a lost DEL forward to an address that is gone.
    match deps.ports.remove(&chain) {
        Ok(true) => tracing::warn!(
            container_id = ctx.container_id,
            chain,
            "replaced stale port mappings"
        ),
        Ok(false) => {}
        Err(e) => return Err(at_step(e, "forward host ports")),
    }
    undo.push(Undo::PortMap {
        chain: chain.clone(),
    });
    let target = Target {
        container_id: ctx.container_id,
        ifname: ctx.ifname,
        v4,
        v6,
    };
    match deps.ports.install(&target, &ctx.port_mappings) {
        Ok(()) => {
            tracing::info!(
                container_id = ctx.container_id,
                chain,
                mappings = ctx.port_mappings.len(),
                "host ports forwarded"
            );
            Ok(())
        }
        Err(InstallError::Other(e)) => Err(at_step(e, "forward host ports")),
        Err(InstallError::Conflict) => Err(conflict(ctx, deps, &chain)),
    }
}

/// The error for a host port another attachment holds, naming it when our records can.
fn conflict(ctx: &Ctx, deps: &Deps, chain: &str) -> Error {
    let listing = deps.ports.list().unwrap_or_default();
    let records = Store::new(&ctx.cfg.state_dir)
        .list(None)
        .unwrap_or_default();
    let taken: Vec<String> = ctx
        .port_mappings
        .iter()
        .filter_map(|m| {
            let holder = listing.holder(m.proto, m.host_port)?;
            if holder == chain {
                return None;
            }
            let who = records
                .iter()
                .find(|r| chain_name(&r.container_id, &r.ifname) == holder)
                .map(|r| format!("container {} ({})", r.container_id, r.ifname))
                .unwrap_or_else(|| format!("nft chain {holder}"));
            Some(format!(
                "{}/{} (forwarded to {who})",
                m.proto.as_str(),
                m.host_port
            ))
        })
        .collect();
    let what = if taken.is_empty() {
        "one of the host ports".to_owned()
    } else {
        taken.join(", ")
    };
    Error::new(
        code::PORT_MAPPING,
        format!("forward host ports: {what} already mapped on this node"),
    )
}

/// What the manager's answer tells about the port before the agent does.
#[derive(Debug, Default)]
struct Hints {
    vmi: Option<String>,
    mac: Option<String>,
    primary: Option<bool>,
}

/// Mesos mode with a manager: labels → Contrail request → manager, which answers once VNC has
/// the objects. None when there is no manager to ask (k8s mode, or none configured).
/// `created` is set when the manager answered that this call created the registration.
fn register(
    ctx: &Ctx,
    netns: &Path,
    policy: &(dyn Policy + Sync),
    manager: Option<&dyn Manager>,
    id: &mut Identity,
    created: &mut bool,
    undo: &mut UndoList,
) -> Result<Option<Hints>> {
    let (Mode::Mesos, Some(m)) = (id.mode, manager) else {
        return Ok(None);
    };
    let t = Instant::now();
    let request = policy
        .translate(&ctx.labels)
        .map_err(|e| at_step(e, "translate labels"))?;
    tracing::debug!(
        container_id = ctx.container_id,
        us = t.elapsed().as_micros() as u64,
        "labels translated"
    );
    let req = AttachRequest {
        container_id: ctx.container_id.to_owned(),
        ifname: ctx.ifname.to_owned(),
        netns: Some(netns.to_string_lossy().into_owned()),
        node: Node {
            name: ctx.cfg.cluster_name.clone(),
            ip: ctx.cfg.vrouter_ip.clone(),
        },
        network_name: ctx.network_name.to_owned(),
        request,
        labels: ctx.labels.clone(),
    };
    // A timed-out POST may still have registered: undo either way.
    undo.push(Undo::Registration);
    let t = Instant::now();
    let registered = m
        .attach(&req)
        .map_err(|e| at_step(e, "register with the manager"))?;
    *created = registered.created;
    let att = &registered.attachment;
    tracing::debug!(
        container_id = ctx.container_id,
        us = t.elapsed().as_micros() as u64,
        "manager attach answered"
    );
    id.vm_name = att.vm_name.clone();
    id.vm_uuid = Some(att.vm_uuid.clone());
    Ok(Some(Hints {
        vmi: Some(att.vmi_uuid.clone()),
        mac: att.mac.clone(),
        primary: Some(att.index.is_primary()),
    }))
}

/// Why the veth thread made nothing.
enum NoVeth {
    /// An interface in the namespace has the name already.
    NameTaken(Error),
    Failed(Error),
}

/// Ok unless the lookup found an interface of that name (a lookup that failed is left to the
/// veth creation to report).
fn ifname_is_free(exists: std::result::Result<bool, NetError>, ifname: &str) -> Result<()> {
    match exists {
        Ok(true) => Err(Error::from(NetError::IfnameExists {
            name: ifname.to_owned(),
        })),
        Ok(false) | Err(_) => Ok(()),
    }
}

/// Polls `GET /vm-cfg/<vm-name>` until this interface's VMI is configured.
fn wait_for_vmi(ctx: &Ctx, agent: &dyn Agent, id: &Identity, want: Option<&str>) -> Result<VmiCfg> {
    let what = format!(
        "the vRouter agent at {} to have the config of VM {} (GET /vm-cfg/{})",
        agent.endpoint(),
        id.vm_name,
        id.vm_name
    );
    poll(ctx.cfg, &what, |timeout| {
        match agent.vm_cfg(&id.vm_name, timeout) {
            Ok(None) => Poll::NotYet("404 (not configured yet)".into()),
            Ok(Some(cfgs)) => match select_vmi(&cfgs, ctx.ifname, want) {
                Ok(c) => Poll::Done(c.clone()),
                Err(p) => p,
            },
            Err(e) => match agent_poll_reason(&e) {
                Some(r) => Poll::NotYet(r),
                None => Poll::Fatal(e.into()),
            },
        }
    })
    .map_err(|e| at_step(e, "wait for the VMI config"))
}

/// Which vm-cfg element is this interface's. Err is the poll outcome when none is (yet).
fn select_vmi<'v, T>(
    cfgs: &'v [VmiCfg],
    ifname: &str,
    want: Option<&str>,
) -> std::result::Result<&'v VmiCfg, Poll<T>> {
    if let Some(id) = want {
        return cfgs.iter().find(|c| c.id == id).ok_or_else(|| {
            Poll::NotYet(format!(
                "VMI {id} not among the {} configured VMIs",
                cfgs.len()
            ))
        });
    }
    if let Some(c) = cfgs
        .iter()
        .find(|c| c.annotations.get("interface").is_some_and(|i| i == ifname))
    {
        return Ok(c);
    }
    // The `index` annotation i/N: wait for all N VMIs (the manager creates them one by one),
    // then take the i-th for eth<i>.
    if let Some((_, n)) = cfgs.iter().find_map(VmiCfg::index) {
        if (cfgs.len() as u32) < n {
            return Err(Poll::NotYet(format!(
                "{} of {n} VMIs configured",
                cfgs.len()
            )));
        }
        if let Some(i) = eth_index(ifname)
            && let Some(c) = cfgs
                .iter()
                .find(|c| c.index().is_some_and(|(ci, _)| ci == i))
        {
            return Ok(c);
        }
    }
    if cfgs.len() == 1 && (cfgs[0].index().is_none() || ifname == "eth0") {
        return Ok(&cfgs[0]);
    }
    Err(Poll::Fatal(Error::new(
        code::INVALID_CONFIG,
        format!(
            "none of the VM's {} VMIs is for interface {ifname} (no matching `interface` or `index` annotation)",
            cfgs.len()
        ),
    )))
}

/// The port as the agent configured it, checked before anything is created for it.
struct Plan {
    vmi: String,
    vm_uuid: String,
    vn_uuid: String,
    mac: [u8; 6],
    primary: bool,
    /// Nested mode: the VMI's VLAN tag.
    vlan: Option<u16>,
}

impl Plan {
    fn new(ctx: &Ctx, id: &Identity, vmi: &VmiCfg, hints: &Hints) -> Result<Plan> {
        let vm_uuid = id
            .vm_uuid
            .clone()
            .or_else(|| vmi.vm_uuid.clone())
            .ok_or_else(|| Error::new(code::AGENT, "the agent's vm-cfg answer has no vm-uuid"))?;
        let mac_text = vmi.mac.clone().or(hints.mac.clone()).ok_or_else(|| {
            Error::new(
                code::AGENT,
                format!("no MAC address for VMI {} (vm-cfg or manager)", vmi.id),
            )
        })?;
        let mac = parse_mac(&mac_text).ok_or_else(|| {
            Error::new(
                code::AGENT,
                format!("VMI {} has a malformed MAC address {mac_text:?}", vmi.id),
            )
        })?;
        let vlan = if ctx.cfg.nested() {
            Some(nested::vlan_of(vmi)?)
        } else {
            None
        };
        Ok(Plan {
            vlan,
            vmi: vmi.id.clone(),
            vm_uuid,
            vn_uuid: vmi.vn_id.clone().unwrap_or_default(),
            mac,
            // Only the primary interface gets the default route (the IPAM plugin's rule).
            primary: vmi
                .index()
                .map(|(i, _)| i == 0)
                .or(hints.primary)
                .unwrap_or(ctx.ifname == "eth0"),
        })
    }
}

/// Creates the veth pair, its container end down and without its MAC yet; returns the host
/// end's name.
fn make_veth(ctx: &Ctx, netns: &Path, net: &mut (dyn NetOps + Send)) -> Result<String> {
    let tap = tap_name(ctx.container_id, ctx.ifname);
    let spec = VethSpec {
        host_name: tap.clone(),
        container_name: ctx.ifname.to_owned(),
        mtu: ctx.cfg.mtu,
    };
    let created = match net.create_veth(netns, &spec) {
        Err(NetError::Netlink {
            errno: Some(libc::EEXIST),
            ..
        }) => {
            // The host name is unique to (container id, ifname) and the container side was
            // checked free: a tap left by a lost DEL of this very attachment. Replace it.
            tracing::warn!(
                container_id = ctx.container_id,
                tap,
                "replacing a stale host interface"
            );
            net.delete_host_link(&tap)
                .and_then(|_| net.create_veth(netns, &spec))
        }
        r => r,
    };
    created.map_err(|e| at_step(e.into(), "create veth"))?;
    // Contrail disables router advertisements on the tap (tf-controller
    // `src/container/cni/contrail/veth.go`); best effort, the file is absent without IPv6.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{tap}/accept_ra"), b"0");
    Ok(tap)
}

/// Nested mode: the VLAN sub-interface (found or created), the macvlan on it inside the
/// container, then the port file and our record, all under the node-wide VLAN lock, so that a
/// DEL of the sub-interface's last other user sees this attachment's record before it decides.
/// Returns the tap name of the record: none.
#[allow(clippy::too_many_arguments)]
fn nested_link(
    ctx: &Ctx,
    netns: &Path,
    deps: &mut Deps,
    id: &Identity,
    plan: &Plan,
    parent: &str,
    vlan: u16,
    undo: &mut UndoList,
) -> Result<String> {
    let name = nested::vlan_link_name(parent, vlan)?;
    let _lock = VlanLock::acquire(&ctx.cfg.state_dir)
        .map_err(|e| at_step(e, "lock the VLAN interfaces"))?;
    let spec = VlanSpec {
        parent: parent.to_owned(),
        name: name.clone(),
        vlan,
    };
    let created = deps.net.ensure_vlan(&spec).map_err(|e| {
        let e = match e {
            NetError::NotFound { .. } => Error::new(
                code::INVALID_CONFIG,
                format!("contrail.parent-interface {parent:?}: no such interface on the node"),
            ),
            e if e.errno() == Some(libc::EOPNOTSUPP) => {
                let mut e = Error::from(e);
                e.msg = format!(
                    "{} (the node's kernel has no 802.1Q VLAN support: module 8021q, CONFIG_VLAN_8021Q)",
                    e.msg
                );
                e
            }
            e => e.into(),
        };
        at_step(e, "create the VLAN interface")
    })?;
    if created {
        undo.push(Undo::Vlan { name: name.clone() });
    }
    let mv = MacvlanSpec {
        lower: name.clone(),
        container_name: ctx.ifname.to_owned(),
        mac: plan.mac,
        mtu: ctx.cfg.mtu,
    };
    deps.net
        .create_macvlan(netns, &mv)
        .map_err(|e| at_step(e.into(), "create macvlan"))?;
    undo.push(Undo::Macvlan {
        netns: netns.to_owned(),
        ifname: ctx.ifname.to_owned(),
    });
    subscribe(ctx, netns, deps, id, plan, "", Some(&name), undo)?;
    tracing::info!(
        container_id = ctx.container_id,
        vlan_link = name,
        created,
        "macvlan on VLAN interface"
    );
    Ok(String::new())
}

/// Port file, then `POST /vm`, under the VM's directory lock.
#[allow(clippy::too_many_arguments)]
fn subscribe(
    ctx: &Ctx,
    netns: &Path,
    deps: &mut Deps,
    id: &Identity,
    plan: &Plan,
    tap: &str,
    vlan_link: Option<&str>,
    undo: &mut UndoList,
) -> Result<()> {
    let cfg = ctx.cfg;
    let body = PortMsg {
        time: go_time_now(),
        vm_id: ctx.container_id.to_owned(),
        vm_uuid: plan.vm_uuid.clone(),
        vm_name: id.vm_name.clone(),
        // Nested mode: the parent, as Contrail's `MacVlan::GetHostIfName` (the file is ours only:
        // no agent reads it on a VM).
        host_ifname: match vlan_link {
            Some(_) => cfg.parent_interface.clone().unwrap_or_default(),
            None => tap.to_owned(),
        },
        vm_ifname: ctx.ifname.to_owned(),
        vm_namespace: netns.to_string_lossy().into_owned(),
        vn_uuid: plan.vn_uuid.clone(),
        vmi_uuid: plan.vmi.clone(),
    }
    .to_body();
    let pf = |e: std::io::Error| {
        let path = format!("{}/{}/{}", cfg.config_dir.display(), id.vm_name, plan.vmi);
        at_step(
            Error::new(code::PORT_FILE, format!("{path}: {e}")),
            "write port file",
        )
    };
    let dir = VmDir::lock(&cfg.config_dir, &id.vm_name, true)
        .map_err(pf)?
        .ok_or_else(|| pf(std::io::ErrorKind::NotFound.into()))?;
    dir.write(&plan.vmi, &body).map_err(pf)?;
    undo.push(Undo::Port {
        vm_name: id.vm_name.clone(),
        vmi: plan.vmi.clone(),
        vm_uuid: plan.vm_uuid.clone(),
        posted: false,
    });
    // Which network made this port: what GC and `sweep` go by (the port file cannot say).
    let record = Record {
        network: ctx.network_name.to_owned(),
        container_id: ctx.container_id.to_owned(),
        ifname: ctx.ifname.to_owned(),
        netns: netns.to_string_lossy().into_owned(),
        vm_name: id.vm_name.clone(),
        vm_uuid: plan.vm_uuid.clone(),
        vmi_uuid: plan.vmi.clone(),
        tap: tap.to_owned(),
        vlan_link: vlan_link.map(str::to_owned),
        config_dir: cfg.config_dir.clone(),
    };
    undo.push(Undo::Record {
        network: record.network.clone(),
    });
    Store::new(&cfg.state_dir).write(&record).map_err(|e| {
        at_step(
            Error::new(code::PORT_FILE, format!("{}: {e}", cfg.state_dir.display())),
            "write the attachment record",
        )
    })?;
    if vlan_link.is_some() {
        // Nested mode: the port file is kept (DEL finds the VMI and its owner by it) but the
        // agent is not told: the VMI is a sub-interface of the VM's own port, which the compute
        // node's agent already has; tf-controller `src/container/cni/contrail/cni.go`
        // (`updateAgent = false` for macvlan) and `vrouter.go` (`Add` posts only then).
        return Ok(());
    }
    deps.agent
        .add_port(&body, request_timeout(cfg))
        .map_err(|e| at_step(e.into(), "POST /vm"))?;
    undo.mark_posted();
    Ok(())
}

/// Polls `GET /vm/<vm>/<vmi>` until the port has an address.
fn wait_for_port(ctx: &Ctx, deps: &Deps, plan: &Plan) -> Result<VrouterPort> {
    let agent = deps.agent;
    let what = format!(
        "the vRouter agent at {} to report port {} of VM {} (GET /vm/{}/{})",
        agent.endpoint(),
        plan.vmi,
        plan.vm_uuid,
        plan.vm_uuid,
        plan.vmi
    );
    poll(ctx.cfg, &what, |timeout| {
        match agent.get_port(&plan.vm_uuid, &plan.vmi, timeout) {
            // A port the agent knows before its instance-ip reached it has no address yet
            // (a real agent says 404 "Missing IPAM entry ... Retry"; a 200 without one is the
            // same state), so it is polled on rather than handed to IPAM as an error.
            Ok(Some(p)) if !p.has_address() => {
                Poll::NotYet("200 without an address (no instance-ip yet)".into())
            }
            Ok(Some(p)) => Poll::Done(p),
            Ok(None) => Poll::NotYet("404 (not active yet)".into()),
            Err(e) => match agent_poll_reason(&e) {
                Some(r) => Poll::NotYet(r),
                None => Poll::Fatal(e.into()),
            },
        }
    })
    .map_err(|e| at_step(e, "get the port's IP configuration"))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::time::Duration;

    use super::*;
    use crate::contrail::del::del;
    use crate::contrail::fakes::*;
    use crate::contrail::portmap::PortMap;

    #[test]
    fn a_port_without_an_address_yet_is_polled_again() {
        // The VMI is visible through its VM before its instance-ip exists (seen in the devstack
        // with a second network); the address must be waited for, not refused by IPAM.
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent {
            port_unaddressed: RefCell::new(2),
            ..Default::default()
        };
        let mut net = FakeNet::default();
        let mut deps = fake_deps(&agent, &mut net);
        let r = add(&ctx(&cfg, Path::new("/run/netns/x")), &mut deps).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.5/24");
        let gets = agent
            .calls
            .borrow()
            .iter()
            .filter(|c| c.starts_with("GET /vm/"))
            .count();
        assert_eq!(gets, 3);
    }

    #[test]
    fn add_then_del_without_root() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent {
            cfg_404s: RefCell::new(2),
            ..Default::default()
        };
        let mut net = FakeNet::default();
        let ns = Path::new("/run/netns/x");
        let mut deps = fake_deps(&agent, &mut net);
        let r = add(&ctx(&cfg, ns), &mut deps).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.5/24");
        assert_eq!(r.ips[0].interface, Some(0));
        assert_eq!(r.routes.len(), 1);
        assert_eq!(r.interfaces[0].mac.as_deref(), Some("02:00:00:00:00:01"));
        // The container end was made while the agent was asked and got the VMI's MAC when
        // it went up.
        assert_eq!(net.up, [("eth0".to_owned(), [2, 0, 0, 0, 0, 1])]);
        let file = cfg.config_dir.join(CID).join(VMI);
        assert_eq!(std::fs::read(&file).unwrap(), agent.subs.borrow()[VMI]);
        assert_eq!(
            agent
                .calls
                .borrow()
                .iter()
                .filter(|c| c.starts_with("GET /vm-cfg"))
                .count(),
            3
        );
        assert_eq!(net.links, vec![tap_name(CID, "eth0")]);
        // Our record of it, outside the agent's directory.
        let store = crate::contrail::record::Store::new(&cfg.state_dir);
        let recs = store.list(Some("contrail-cni-plugin")).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(
            (
                recs[0].vmi_uuid.as_str(),
                recs[0].tap.as_str(),
                recs[0].netns.as_str()
            ),
            (VMI, tap_name(CID, "eth0").as_str(), "/run/netns/x")
        );

        let mut deps = fake_deps(&agent, &mut net);
        del(&ctx(&cfg, ns), &mut deps).unwrap();
        assert!(net.links.is_empty());
        assert!(!cfg.config_dir.join(CID).exists());
        assert!(agent.subs.borrow().is_empty());
        assert!(store.list(None).unwrap().is_empty());
        let mut deps = fake_deps(&agent, &mut net);
        del(&ctx(&cfg, ns), &mut deps).unwrap();
        assert_eq!(
            agent
                .calls
                .borrow()
                .iter()
                .filter(|c| c.starts_with("DELETE"))
                .count(),
            1
        );
    }

    #[test]
    fn failure_after_side_effects_rolls_back_and_names_the_step() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let mut net = FakeNet {
            fail_configure: true,
            ..Default::default()
        };
        let ns = Path::new("/run/netns/x");
        let mut deps = fake_deps(&agent, &mut net);
        let e = add(&ctx(&cfg, ns), &mut deps).unwrap_err();
        assert_eq!(e.code, code::NETLINK);
        assert!(
            e.msg.starts_with("configure addresses and routes:"),
            "{}",
            e.msg
        );
        assert!(net.links.is_empty());
        assert!(!cfg.config_dir.join(CID).exists());
        assert!(agent.subs.borrow().is_empty());
        let store = crate::contrail::record::Store::new(&cfg.state_dir);
        assert!(store.list(None).unwrap().is_empty());

        let agent = FakeAgent {
            fail_post: true,
            ..Default::default()
        };
        let mut deps = fake_deps(&agent, &mut net);
        let e = add(&ctx(&cfg, ns), &mut deps).unwrap_err();
        assert_eq!(e.code, code::AGENT);
        assert!(e.msg.starts_with("POST /vm:"), "{}", e.msg);
        assert!(net.links.is_empty());
        assert!(!cfg.config_dir.join(CID).exists());
        // Not posted: no DELETE needed.
        assert!(!agent.calls.borrow().iter().any(|c| c.starts_with("DELETE")));
    }

    #[test]
    fn polling_is_bounded_backs_off_and_says_what_it_waited_for() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path()); // budget 100 ms, step cap 20 ms
        let agent = FakeAgent {
            cfg_404s: RefCell::new(u32::MAX),
            ..Default::default()
        };
        let mut net = FakeNet::default();
        let mut deps = fake_deps(&agent, &mut net);
        let t = Instant::now();
        let e = add(&ctx(&cfg, Path::new("/x")), &mut deps).unwrap_err();
        let took = t.elapsed();
        assert_eq!(e.code, code::TRY_AGAIN);
        assert!(
            e.msg.contains(&format!("GET /vm-cfg/{CID}")) && e.msg.contains("404"),
            "{}",
            e.msg
        );
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_millis(400),
            "{took:?}"
        );
        // 5, 10, 20, 20, 20, 20, 5 ms...: a handful of polls, not a spin.
        let polls = agent.calls.borrow().len();
        assert!((4..=12).contains(&polls), "{polls}");
        // The veth made meanwhile is gone again.
        assert!(net.links.is_empty() && net.container.is_empty());
    }

    #[test]
    fn a_refused_registration_removes_the_veth_made_meanwhile() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let manager = FakeManager {
            fail_attach: true,
            ..Default::default()
        };
        let mut net = FakeNet::default();
        let mut deps = Deps {
            manager: Some(&manager),
            ..fake_deps(&agent, &mut net)
        };
        let e = add(&ctx(&cfg, Path::new("/run/netns/x")), &mut deps).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.starts_with("register with the manager:"), "{}", e.msg);
        // The agent was never asked; the pair made beside the registration was deleted, and
        // the registration undone (a DEL to the manager, which had nothing).
        assert!(
            agent.calls.borrow().is_empty(),
            "{:?}",
            agent.calls.borrow()
        );
        assert!(net.links.is_empty() && net.container.is_empty());
        assert!(net.up.is_empty());
        assert_eq!(*manager.journal.lock().unwrap(), ["attach", "detach"]);
    }

    #[test]
    fn vmi_selection() {
        let mk = |id: &str, ann: &[(&str, &str)]| VmiCfg {
            id: id.into(),
            annotations: ann
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let two = vec![mk("a", &[("index", "0/2")]), mk("b", &[("index", "1/2")])];
        assert_eq!(select_vmi::<()>(&two, "eth1", None).ok().unwrap().id, "b");
        assert_eq!(
            select_vmi::<()>(&two, "eth0", Some("b")).ok().unwrap().id,
            "b"
        );
        assert!(matches!(
            select_vmi::<()>(&two, "eth0", Some("c")),
            Err(Poll::NotYet(_))
        ));
        // Partial set: wait for the rest instead of failing (Contrail R2008 spun here).
        assert!(matches!(
            select_vmi::<()>(&two[..1], "eth1", None),
            Err(Poll::NotYet(_))
        ));
        let named = vec![
            mk("a", &[("index", "0/2")]),
            mk("b", &[("index", "1/2"), ("interface", "net1")]),
        ];
        assert_eq!(select_vmi::<()>(&named, "net1", None).ok().unwrap().id, "b");
        assert!(matches!(
            select_vmi::<()>(&two, "net9", None),
            Err(Poll::Fatal(_))
        ));
        // No index annotation (Contrail's Go CNI indexed it unchecked and crashed): a single
        // VMI is taken.
        assert_eq!(
            select_vmi::<()>(&[mk("x", &[])], "eth0", None)
                .ok()
                .unwrap()
                .id,
            "x"
        );
    }

    #[test]
    fn rollback_undoes_in_reverse_order() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let journal = Journal::default();
        let manager = FakeManager {
            journal: journal.clone(),
            ..Default::default()
        };
        let mut net = FakeNet {
            fail_configure: true,
            journal: journal.clone(),
            ..Default::default()
        };
        let mut deps = Deps {
            manager: Some(&manager),
            ..fake_deps(&agent, &mut net)
        };
        add(&ctx(&cfg, Path::new("/run/netns/x")), &mut deps).unwrap_err();
        // Port (file + DELETE /vm), then the veth, then the registration.
        assert_eq!(
            *journal.lock().unwrap(),
            [
                "attach",
                &format!("delete {}", tap_name(CID, "eth0")),
                "detach"
            ]
        );
        assert!(agent.calls.borrow().iter().any(|c| c.starts_with("DELETE")));
        assert!(manager.attached.borrow().is_empty());
        assert!(!cfg.config_dir.join(CID).exists());
    }

    #[test]
    fn a_second_add_of_the_same_interface_leaves_the_first_alone() {
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
        let calls = agent.calls.borrow().len();
        let e = add(&ctx(&cfg, ns), &mut deps).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("already exists"), "{}", e.msg);
        // Asked beside the name check: the manager, which found the registration (nothing
        // changed), and the agent, only read. Nothing was undone.
        let after: Vec<String> = agent.calls.borrow()[calls..].to_vec();
        assert!(after.iter().all(|c| c.starts_with("GET")), "{after:?}");
        assert_eq!(*manager.journal.lock().unwrap(), ["attach", "attach"]);
        assert_eq!(manager.attached.borrow().len(), 1);
        assert_eq!(net.links, vec![tap_name(CID, "eth0")]);
        assert!(cfg.config_dir.join(CID).join(VMI).exists());
    }

    #[test]
    fn a_taken_name_undoes_the_registration_this_add_created() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let manager = FakeManager::default();
        // Someone else's eth0 in the namespace: not an ADD of ours.
        let mut net = FakeNet {
            container: vec!["eth0".into()],
            ..Default::default()
        };
        let mut deps = Deps {
            manager: Some(&manager),
            ..fake_deps(&agent, &mut net)
        };
        let e = add(&ctx(&cfg, Path::new("/run/netns/x")), &mut deps).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("already exists"), "{}", e.msg);
        // The registration it made is gone again; no veth, no port; eth0 stays.
        assert_eq!(*manager.journal.lock().unwrap(), ["attach", "detach"]);
        assert!(manager.attached.borrow().is_empty());
        assert!(net.links.is_empty());
        assert_eq!(net.container, ["eth0"]);
        assert!(
            agent.calls.borrow().iter().all(|c| c.starts_with("GET")),
            "{:?}",
            agent.calls.borrow()
        );
        assert!(!cfg.config_dir.join(CID).exists());
    }

    #[test]
    fn a_repeated_add_without_a_manager_is_refused_before_the_veth() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let mut net = FakeNet::default();
        let ns = Path::new("/run/netns/x");
        let mut deps = fake_deps(&agent, &mut net);
        add(&ctx(&cfg, ns), &mut deps).unwrap();
        let e = add(&ctx(&cfg, ns), &mut deps).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("already exists"), "{}", e.msg);
        // Only reads happened (vm-cfg polled while the name was checked).
        assert_eq!(
            agent
                .calls
                .borrow()
                .iter()
                .filter(|c| c.starts_with("POST") || c.starts_with("DELETE"))
                .count(),
            1
        );
        assert_eq!(net.links, vec![tap_name(CID, "eth0")]);
        assert!(cfg.config_dir.join(CID).join(VMI).exists());
    }

    #[test]
    fn a_path_that_is_no_netns_fails_before_anyone_is_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let manager = FakeManager::default();
        let mut net = FakeNet {
            bad_netns: true,
            ..Default::default()
        };
        let mut deps = Deps {
            manager: Some(&manager),
            ..fake_deps(&agent, &mut net)
        };
        let e = add(&ctx(&cfg, Path::new("/tmp/file")), &mut deps).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENV);
        assert!(agent.calls.borrow().is_empty());
        assert!(manager.journal.lock().unwrap().is_empty());
    }

    fn em2() -> FakeNet {
        FakeNet {
            parents: vec!["em2".into()],
            ..Default::default()
        }
    }

    fn journal(net: &FakeNet) -> Vec<String> {
        net.journal.lock().unwrap().clone()
    }

    #[test]
    fn nested_add_makes_a_macvlan_on_the_vlan_interface_and_no_tap_nor_post() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = nested_cfg(tmp.path());
        let agent = FakeAgent {
            vlan: Some(100),
            ..Default::default()
        };
        let mut net = em2();
        let ns = Path::new("/run/netns/x");
        let r = add(&ctx(&cfg, ns), &mut fake_deps(&agent, &mut net)).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.5/24");
        assert_eq!(r.interfaces[0].mac.as_deref(), Some("02:00:00:00:00:01"));
        assert_eq!(journal(&net), ["vlan em2.100", "macvlan eth0 on em2.100"]);
        assert!(net.links.is_empty(), "no tap: {:?}", net.links);
        assert!(
            !agent.calls.borrow().iter().any(|c| c.starts_with("POST")),
            "{:?}",
            agent.calls.borrow()
        );
        // The port file (upstream keeps it in nested mode too) and our record, with the VLAN.
        assert!(cfg.config_dir.join(CID).join(VMI).exists());
        let store = crate::contrail::record::Store::new(&cfg.state_dir);
        let recs = store.list(None).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].vlan_link.as_deref(), Some("em2.100"));
        assert_eq!(recs[0].tap, "");

        del(&ctx(&cfg, ns), &mut fake_deps(&agent, &mut net)).unwrap();
        assert_eq!(
            journal(&net)[2..],
            ["delete eth0 in the container", "delete em2.100"]
        );
        assert!(net.vlans.is_empty() && net.container.is_empty());
        assert!(!cfg.config_dir.join(CID).exists());
        assert!(store.list(None).unwrap().is_empty());
        assert!(!agent.calls.borrow().iter().any(|c| c.starts_with("DELETE")));
        // Repeatable, and without a netns.
        let mut c = ctx(&cfg, ns);
        c.netns = None;
        del(&c, &mut fake_deps(&agent, &mut net)).unwrap();
    }

    #[test]
    fn nested_containers_share_the_vlan_interface_until_the_last_del() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = nested_cfg(tmp.path());
        let agent = FakeAgent {
            vlan: Some(100),
            no_index: true,
            ..Default::default()
        };
        let mut net = em2();
        let ns = Path::new("/run/netns/x");
        let other = "0d3e7a52-0000-4000-8000-00000000000b";
        add(&ctx(&cfg, ns), &mut fake_deps(&agent, &mut net)).unwrap();
        let mut c2 = ctx(&cfg, ns);
        c2.container_id = other;
        c2.ifname = "eth1";
        add(&c2, &mut fake_deps(&agent, &mut net)).unwrap();
        assert_eq!(
            journal(&net),
            [
                "vlan em2.100",
                "macvlan eth0 on em2.100",
                "macvlan eth1 on em2.100"
            ]
        );
        del(&ctx(&cfg, ns), &mut fake_deps(&agent, &mut net)).unwrap();
        assert!(net.vlans.contains_key("em2.100"), "{:?}", journal(&net));
        assert_eq!(net.macvlans, [("eth1".to_string(), "em2.100".to_string())]);
        del(&c2, &mut fake_deps(&agent, &mut net)).unwrap();
        assert!(net.vlans.is_empty(), "{:?}", journal(&net));
    }

    #[test]
    fn nested_failed_add_removes_what_it_made_in_reverse_order() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = nested_cfg(tmp.path());
        let agent = FakeAgent {
            vlan: Some(7),
            ..Default::default()
        };
        let journal_ = Journal::default();
        let manager = FakeManager {
            journal: journal_.clone(),
            ..Default::default()
        };
        let mut net = FakeNet {
            fail_configure: true,
            journal: journal_.clone(),
            ..em2()
        };
        let mut deps = Deps {
            manager: Some(&manager),
            ..fake_deps(&agent, &mut net)
        };
        let e = add(&ctx(&cfg, Path::new("/run/netns/x")), &mut deps).unwrap_err();
        assert_eq!(e.code, code::NETLINK);
        assert_eq!(
            *journal_.lock().unwrap(),
            [
                "attach",
                "vlan em2.7",
                "macvlan eth0 on em2.7",
                "delete eth0 in the container",
                "delete em2.7",
                "detach"
            ]
        );
        assert!(net.vlans.is_empty() && net.container.is_empty());
        assert!(!cfg.config_dir.join(CID).exists());
        let store = crate::contrail::record::Store::new(&cfg.state_dir);
        assert!(store.list(None).unwrap().is_empty());
    }

    #[test]
    fn nested_failed_add_leaves_a_vlan_interface_it_did_not_make() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = nested_cfg(tmp.path());
        let agent = FakeAgent {
            vlan: Some(100),
            ..Default::default()
        };
        // The operator's own sub-interface (no alias of ours), and a macvlan that fails.
        let mut net = FakeNet {
            vlans: [("em2.100".to_string(), String::new())].into(),
            fail_macvlan: true,
            ..em2()
        };
        let ns = Path::new("/run/netns/x");
        let e = add(&ctx(&cfg, ns), &mut fake_deps(&agent, &mut net)).unwrap_err();
        assert!(e.msg.starts_with("create macvlan:"), "{}", e.msg);
        assert!(net.vlans.contains_key("em2.100"));
        assert!(journal(&net).is_empty(), "{:?}", journal(&net));
        // And a DEL of a working attachment on it leaves it too.
        net.fail_macvlan = false;
        add(&ctx(&cfg, ns), &mut fake_deps(&agent, &mut net)).unwrap();
        del(&ctx(&cfg, ns), &mut fake_deps(&agent, &mut net)).unwrap();
        assert!(net.vlans.contains_key("em2.100"), "{:?}", journal(&net));
        assert!(net.macvlans.is_empty());
    }

    #[test]
    fn nested_without_its_parent_is_error_7_before_anyone_is_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = nested_cfg(tmp.path());
        let agent = FakeAgent {
            vlan: Some(100),
            ..Default::default()
        };
        let manager = FakeManager::default();
        let mut net = FakeNet::default();
        let mut deps = Deps {
            manager: Some(&manager),
            ..fake_deps(&agent, &mut net)
        };
        let e = add(&ctx(&cfg, Path::new("/run/netns/x")), &mut deps).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(
            e.msg.contains("contrail.parent-interface \"em2\""),
            "{}",
            e.msg
        );
        assert!(agent.calls.borrow().is_empty());
        assert!(manager.journal.lock().unwrap().is_empty());
        assert!(journal(&net).is_empty());
        assert!(!cfg.config_dir.exists());
    }

    #[test]
    fn nested_without_a_vlan_id_from_the_agent_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = nested_cfg(tmp.path());
        for vlan in [None, Some(65535)] {
            let agent = FakeAgent {
                vlan,
                ..Default::default()
            };
            let mut net = em2();
            let e = add(
                &ctx(&cfg, Path::new("/run/netns/x")),
                &mut fake_deps(&agent, &mut net),
            )
            .unwrap_err();
            assert_eq!(e.code, code::AGENT);
            assert!(e.msg.contains("no vlan-id for VMI"), "{}", e.msg);
            assert!(journal(&net).is_empty());
            assert!(!cfg.config_dir.join(CID).exists());
        }
    }

    fn mappings(list: &[(u32, u32, &str)]) -> Vec<crate::contrail::portmap::Mapping> {
        let pms: Vec<_> = list
            .iter()
            .map(|(h, c, p)| crate::cni::config::PortMapping {
                host_port: *h,
                container_port: *c,
                protocol: Some((*p).to_owned()),
            })
            .collect();
        crate::contrail::portmap::from_mesos(&pms).unwrap()
    }

    #[test]
    fn port_mappings_are_forwarded_to_the_address_and_removed_by_del() {
        use crate::contrail::portmap::{Proto, chain_name};
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let mut net = FakeNet::default();
        let ns = Path::new("/run/netns/x");
        let mut c = ctx(&cfg, ns);
        c.port_mappings = mappings(&[(8080, 80, "tcp"), (5353, 53, "udp")]);
        add(&c, &mut fake_deps(&agent, &mut net)).unwrap();
        let chain = chain_name(CID, "eth0");
        let l = agent.ports.listing.borrow().clone();
        assert_eq!(l.keys_of(&chain), [(Proto::Tcp, 8080), (Proto::Udp, 5353)]);
        assert_eq!(
            agent.ports.targets.borrow()[&chain].0,
            Some("10.0.0.5".parse().unwrap())
        );
        // CHECK finds them.
        let prev = CniResult::default();
        crate::contrail::check::check(&c, &prev, &mut fake_deps(&agent, &mut net)).unwrap();
        // DEL (without a netns, twice) removes them.
        let mut d = ctx(&cfg, ns);
        d.netns = None;
        del(&d, &mut fake_deps(&agent, &mut net)).unwrap();
        assert_eq!(*agent.ports.listing.borrow(), Default::default());
        del(&d, &mut fake_deps(&agent, &mut net)).unwrap();
        // CHECK misses rules that went behind our back.
        add(&c, &mut fake_deps(&agent, &mut net)).unwrap();
        agent.ports.remove(&chain).unwrap();
        let e =
            crate::contrail::check::check(&c, &prev, &mut fake_deps(&agent, &mut net)).unwrap_err();
        assert_eq!(
            e.msg,
            "host port tcp/8080 is not forwarded to eth0 (nft table inet contrail_cni_portmap)"
        );
    }

    #[test]
    fn a_host_port_already_mapped_fails_the_add_and_rolls_everything_back() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let other = crate::contrail::portmap::Target {
            container_id: "other",
            ifname: "eth0",
            v4: Some("10.0.0.9".parse().unwrap()),
            v6: None,
        };
        agent
            .ports
            .install(&other, &mappings(&[(8080, 80, "tcp")]))
            .unwrap();
        // Our record of the other container, so the error can name it.
        crate::contrail::record::Store::new(&cfg.state_dir)
            .write(&crate::contrail::record::Record {
                network: "contrail-cni-plugin".into(),
                container_id: "other".into(),
                ifname: "eth0".into(),
                netns: "/run/netns/o".into(),
                vm_name: "other".into(),
                vm_uuid: String::new(),
                vmi_uuid: "v".into(),
                tap: String::new(),
                vlan_link: None,
                config_dir: cfg.config_dir.clone(),
            })
            .unwrap();
        let before = agent.ports.listing.borrow().clone();
        let mut net = FakeNet::default();
        let mut c = ctx(&cfg, Path::new("/run/netns/x"));
        c.port_mappings = mappings(&[(9090, 90, "tcp"), (8080, 80, "tcp")]);
        let e = add(&c, &mut fake_deps(&agent, &mut net)).unwrap_err();
        assert_eq!(e.code, code::PORT_MAPPING);
        assert_eq!(
            e.msg,
            "forward host ports: tcp/8080 (forwarded to container other (eth0)) already mapped on this node"
        );
        // Nothing of ours is left; the other container's rules are untouched.
        assert_eq!(*agent.ports.listing.borrow(), before);
        assert!(net.links.is_empty());
        assert!(!cfg.config_dir.join(CID).exists());
        assert!(agent.subs.borrow().is_empty());
        let recs = crate::contrail::record::Store::new(&cfg.state_dir)
            .list(None)
            .unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].container_id, "other");
    }

    #[test]
    fn a_failed_add_after_the_port_mappings_removes_them() {
        // The rollback runs the undo list: a failure of the install itself (not a conflict)
        // leaves nothing either, and a DEL whose nft fails keeps the record for GC and sweep.
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent {
            ports: FakePorts {
                fail_remove: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut net = FakeNet::default();
        let mut c = ctx(&cfg, Path::new("/run/netns/x"));
        c.port_mappings = mappings(&[(8080, 80, "tcp")]);
        // The pre-install removal of stale rules fails: the ADD fails at that step, cleanly.
        let e = add(&c, &mut fake_deps(&agent, &mut net)).unwrap_err();
        assert_eq!(e.code, code::PORT_MAPPING);
        assert!(e.msg.starts_with("forward host ports: "), "{}", e.msg);
        assert!(net.links.is_empty());
        assert!(
            crate::contrail::record::Store::new(&cfg.state_dir)
                .list(None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn del_keeps_the_record_when_the_port_mappings_cannot_go() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let mut net = FakeNet::default();
        let ns = Path::new("/run/netns/x");
        let mut c = ctx(&cfg, ns);
        c.port_mappings = mappings(&[(8080, 80, "tcp")]);
        add(&c, &mut fake_deps(&agent, &mut net)).unwrap();
        let failing = FakeAgent {
            ports: FakePorts {
                fail_remove: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut deps = fake_deps(&agent, &mut net);
        deps.ports = &failing.ports;
        let e = del(&ctx(&cfg, ns), &mut deps).unwrap_err();
        assert!(e.msg.contains("remove the port mappings"), "{}", e.msg);
        // The rest of the node side went; the record stays for GC and sweep.
        assert!(net.links.is_empty());
        let store = crate::contrail::record::Store::new(&cfg.state_dir);
        let recs = store.list(None).unwrap();
        assert_eq!(recs.len(), 1);
        // GC of it removes the rules, then the record.
        let n = crate::contrail::gc::gc(
            &cfg,
            "contrail-cni-plugin",
            &Default::default(),
            &agent,
            &mut net,
            &agent.ports,
        )
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(*agent.ports.listing.borrow(), Default::default());
        assert!(store.list(None).unwrap().is_empty());
    }

    #[test]
    fn port_mappings_are_refused_in_nested_mode_before_anything_is_made() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = nested_cfg(tmp.path());
        let agent = FakeAgent {
            vlan: Some(100),
            ..Default::default()
        };
        let mut net = em2();
        let mut c = ctx(&cfg, Path::new("/run/netns/x"));
        c.port_mappings = mappings(&[(8080, 80, "tcp")]);
        let e = add(&c, &mut fake_deps(&agent, &mut net)).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("nested mode"), "{}", e.msg);
        assert!(journal(&net).is_empty());
        assert!(agent.calls.borrow().is_empty());
    }
}
