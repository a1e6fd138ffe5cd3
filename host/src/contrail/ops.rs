//! The Contrail path's logic: ADD, DEL, CHECK, STATUS over the [`Agent`], [`Manager`],
//! [`NetOps`] and [`Policy`] traits, so it runs against fakes without root.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use contrail_mesos_api::{AttachRequest, ContrailRequest, Node, vm_uuid_for};
use ipnet::IpNet;

use super::agent::{Agent, AgentError, VmPort, VmiCfg};
use super::config::{ContrailConfig, Mode};
use super::error::{Error, Result, at_step, code};
use super::manager::Manager;
use super::naming::{eth_index, k8s_pod, k8s_vm_name, tap_name};
use super::portfile::{PortMsg, VmDir, go_time_now};
use crate::cni::config::Label;
use crate::cni::result::{CniResult, Interface, IpConfig, Route};
use crate::net::{NetError, NetOps, RouteSpec, VethSpec, format_mac, parse_mac};
use crate::wasm::{IpamConfig, VrouterPort};

/// The two Wasm plugins, as the Contrail logic sees them.
pub trait Policy {
    /// `translate-contrail`: the Mesos labels in Contrail's vocabulary.
    fn translate(&self, labels: &[Label]) -> Result<ContrailRequest>;
    /// `configure`: the IP configuration of one port.
    fn ipam(&self, port: &VrouterPort, primary: bool) -> Result<IpamConfig>;
    /// Gets the IPAM plugin ready (load, type-check) ahead of [`Policy::ipam`]; called on a
    /// thread while the agent is polled. Best effort.
    fn prefetch(&self) {}
}

/// One invocation, as the Contrail logic needs it.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    pub cfg: &'a ContrailConfig,
    pub container_id: &'a str,
    pub ifname: &'a str,
    pub netns: Option<&'a Path>,
    pub cni_args: Option<&'a str>,
    pub network_name: &'a str,
    pub labels: Vec<Label>,
}

pub struct Deps<'a> {
    pub agent: &'a dyn Agent,
    /// None in k8s mode or when `mesos-ip` is not configured.
    pub manager: Option<&'a dyn Manager>,
    pub net: &'a mut (dyn NetOps + Send),
    pub policy: &'a (dyn Policy + Sync),
}

/// How the workload is named towards the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    mode: Mode,
    /// Key of `/vm-cfg/<key>` and the port-file directory.
    vm_name: String,
    /// Known up front in Mesos mode (the container id, or a uuid derived from it); learned
    /// from vm-cfg in Kubernetes mode.
    vm_uuid: Option<String>,
}

fn identity(ctx: &Ctx) -> Result<Identity> {
    let pod = ctx.cni_args.and_then(k8s_pod);
    let mode = ctx.cfg.mode.unwrap_or(if pod.is_some() {
        Mode::K8s
    } else {
        Mode::Mesos
    });
    match mode {
        Mode::K8s => {
            let (ns, name) = pod.ok_or_else(|| {
                Error::new(
                    code::INVALID_ENV,
                    "contrail.mode is k8s but CNI_ARGS has no K8S_POD_NAMESPACE and K8S_POD_NAME",
                )
            })?;
            Ok(Identity {
                mode,
                vm_name: k8s_vm_name(&ctx.cfg.cluster_name, &ns, &name),
                vm_uuid: None,
            })
        }
        Mode::Mesos => Ok(Identity {
            mode,
            vm_name: ctx.container_id.to_owned(),
            vm_uuid: Some(vm_uuid_for(ctx.container_id)),
        }),
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// One poll's outcome.
enum Poll<T> {
    Done(T),
    /// Not there yet; the string says what was seen (for the final error).
    NotYet(String),
    Fatal(Error),
}

/// True when the agent's port answer carries an IPv4 or IPv6 address (empty strings and the
/// unspecified addresses count as absent, as the IPAM plugin treats them).
fn has_address(p: &VmPort) -> bool {
    let set = |a: &Option<String>| {
        a.as_deref()
            .is_some_and(|s| !s.is_empty() && s != "0.0.0.0" && s != "::")
    };
    set(&p.ip_address) || set(&p.v6_ip_address)
}

/// Per-request timeout: a poll must not outlive the budget, and a request never gets less than
/// a fraction of a second (a loaded agent answers slowly, not never).
fn request_timeout(cfg: &ContrailConfig) -> Duration {
    cfg.poll_timeout
        .clamp(Duration::from_millis(500), Duration::from_secs(10))
}

/// Polls with exponential backoff (5 ms doubling, capped at min(poll-timeout, 500 ms)) until
/// `poll-timeout * poll-retries` has passed. Contrail's CNI slept a fixed `poll-timeout`
/// between polls (3 s by default) and, in R2008, did not sleep at all on a partial answer.
fn poll<T>(
    cfg: &ContrailConfig,
    what: &str,
    mut attempt: impl FnMut(Duration) -> Poll<T>,
) -> Result<T> {
    let start = Instant::now();
    let deadline = start + cfg.poll_budget();
    let cap = cfg
        .poll_timeout
        .min(Duration::from_millis(500))
        .max(Duration::from_millis(5));
    let mut step = Duration::from_millis(5).min(cap);
    let mut polls = 0u32;
    loop {
        polls += 1;
        let now = Instant::now();
        let timeout = request_timeout(cfg)
            .min(deadline.saturating_duration_since(now))
            .max(Duration::from_millis(50));
        let last = match attempt(timeout) {
            Poll::Done(v) => {
                tracing::debug!(what, polls, ms = ms(start.elapsed()), "poll done");
                return Ok(v);
            }
            Poll::Fatal(e) => return Err(e),
            Poll::NotYet(why) => why,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::new(
                code::TRY_AGAIN,
                format!(
                    "gave up after {:.1} s and {polls} polls waiting for {what}; last answer: {last}",
                    start.elapsed().as_secs_f64()
                ),
            )
            .with_details(format!(
                "contrail.poll-timeout {} s x contrail.poll-retries {} bound the wait",
                cfg.poll_timeout.as_secs_f64(),
                cfg.poll_retries
            )));
        }
        std::thread::sleep(step.min(deadline - now));
        step = (step * 2).min(cap);
    }
}

/// Which vm-cfg element is this interface's.
fn select_vmi<'v>(
    cfgs: &'v [VmiCfg],
    ifname: &str,
    want: Option<&str>,
) -> std::result::Result<&'v VmiCfg, Poll<()>> {
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

fn agent_poll_reason(e: &AgentError) -> Option<String> {
    match e {
        // Retry what a restarting or overloaded agent does; a 4xx other than 404 will not heal.
        AgentError::Unreachable(m) => Some(m.clone()),
        AgentError::Status { status, body } if *status >= 500 => Some(format!("{status} {body}")),
        AgentError::Malformed(m) => Some(format!("malformed answer: {m}")),
        _ => None,
    }
}

/// What a failed ADD has to undo, undone on drop unless disarmed (RAII rollback).
struct Rollback<'d, 'a> {
    deps: &'d mut Deps<'a>,
    cfg: &'d ContrailConfig,
    container_id: String,
    ifname: String,
    registered: bool,
    veth: Option<String>,
    /// (vm-name, vmi-uuid, vm-uuid, posted)
    port: Option<(String, String, String, bool)>,
    armed: bool,
}

impl Rollback<'_, '_> {
    fn run(&mut self) {
        let t = Instant::now();
        if let Some((vm_name, vmi, vm_uuid, posted)) = self.port.take()
            && let Err(e) = release_port(
                self.deps.agent,
                self.cfg,
                &self.container_id,
                &vm_name,
                &vmi,
                &vm_uuid,
                posted,
            )
        {
            tracing::warn!(container_id = %self.container_id, error = %e, "rollback: port file / agent");
        }
        if let Some(tap) = self.veth.take()
            && let Err(e) = self.deps.net.delete_host_link(&tap)
        {
            tracing::warn!(container_id = %self.container_id, error = %e, "rollback: veth {tap}");
        }
        if std::mem::take(&mut self.registered)
            && let Some(m) = self.deps.manager
            && let Err(e) = m.detach(&self.container_id, &self.ifname)
        {
            tracing::warn!(container_id = %self.container_id, error = %e, "rollback: manager");
        }
        tracing::info!(container_id = %self.container_id, ms = ms(t.elapsed()), "ADD rolled back");
    }
}

impl Drop for Rollback<'_, '_> {
    fn drop(&mut self) {
        if self.armed {
            self.run();
        }
    }
}

/// Removes this port's file and, when it was the VM's last, the directory and the agent's
/// subscriptions (`DELETE /vm/<uuid>` drops every subscription of the VM, contract §1.5, so it
/// is only sent by the last one out; a sibling's leftover subscription on a DEL of one of
/// several networks goes with the VM's last DEL). All under the VM directory lock.
fn release_port(
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

/// ADD. Returns the result in the canonical (1.1.0) shape.
pub fn add(ctx: &Ctx, deps: &mut Deps) -> Result<CniResult> {
    let policy = deps.policy;
    std::thread::scope(|s| {
        // Loading the IPAM component (~3 ms) overlaps the agent round trips instead of
        // following them.
        s.spawn(|| policy.prefetch());
        add_steps(ctx, deps)
    })
}

fn add_steps(ctx: &Ctx, deps: &mut Deps) -> Result<CniResult> {
    let t0 = Instant::now();
    let cfg = ctx.cfg;
    let netns = ctx
        .netns
        .ok_or_else(|| Error::new(code::INVALID_ENV, "CNI_NETNS is required for ADD"))?;
    let mut id = identity(ctx)?;
    let mut rb = Rollback {
        deps,
        cfg,
        container_id: ctx.container_id.to_owned(),
        ifname: ctx.ifname.to_owned(),
        registered: false,
        veth: None,
        port: None,
        armed: true,
    };
    let cid = ctx.container_id;
    let lap = |step: &str, t: &mut Instant| {
        tracing::info!(
            container_id = cid,
            step,
            ms = ms(t.elapsed()),
            "ADD step done"
        );
        *t = Instant::now();
    };
    let mut t = Instant::now();

    // 1-2. Mesos: labels -> Contrail request -> manager, which answers once VNC has the objects.
    let mut want_vmi = None;
    let mut mac = None;
    let mut primary = None;
    if id.mode == Mode::Mesos
        && let Some(m) = rb.deps.manager
    {
        let request = rb
            .deps
            .policy
            .translate(&ctx.labels)
            .map_err(|e| at_step(e, "translate labels"))?;
        let req = AttachRequest {
            container_id: cid.to_owned(),
            ifname: ctx.ifname.to_owned(),
            netns: Some(netns.to_string_lossy().into_owned()),
            node: Node {
                name: cfg.cluster_name.clone(),
                ip: cfg.vrouter_ip.clone(),
            },
            network_name: ctx.network_name.to_owned(),
            request,
            labels: ctx.labels.clone(),
        };
        rb.registered = true; // a timed-out POST may still have registered: undo either way
        let att = m
            .attach(&req)
            .map_err(|e| at_step(e, "register with the manager"))?;
        id.vm_name = att.vm_name.clone();
        id.vm_uuid = Some(att.vm_uuid.clone());
        want_vmi = Some(att.vmi_uuid.clone());
        mac = att.mac.clone();
        primary = att
            .index
            .split_once('/')
            .and_then(|(i, _)| i.parse::<u32>().ok())
            .map(|i| i == 0);
        lap("register", &mut t);
    }

    // 3. Wait until the agent has the VMI config.
    let agent = rb.deps.agent;
    let what = format!(
        "the vRouter agent at {} to have the config of VM {} (GET /vm-cfg/{})",
        agent.endpoint(),
        id.vm_name,
        id.vm_name
    );
    // The netlink connections (a thread joins the container's namespace for one) open while
    // the agent is polled.
    let net = &mut *rb.deps.net;
    let (vmi, _) = std::thread::scope(|scope| {
        let prep = scope.spawn(move || net.prepare(Some(netns)));
        let vmi = poll(cfg, &what, |timeout| {
            match agent.vm_cfg(&id.vm_name, timeout) {
                Ok(None) => Poll::NotYet("404 (not configured yet)".into()),
                Ok(Some(cfgs)) => match select_vmi(&cfgs, ctx.ifname, want_vmi.as_deref()) {
                    Ok(c) => Poll::Done(c.clone()),
                    Err(Poll::NotYet(s)) => Poll::NotYet(s),
                    Err(Poll::Fatal(e)) => Poll::Fatal(e),
                    Err(Poll::Done(())) => unreachable!(),
                },
                Err(e) => match agent_poll_reason(&e) {
                    Some(r) => Poll::NotYet(r),
                    None => Poll::Fatal(e.into()),
                },
            }
        });
        (vmi, prep.join())
    });
    let vmi = vmi.map_err(|e| at_step(e, "wait for the VMI config"))?;
    lap("vm-cfg", &mut t);
    let vm_uuid = match (&id.vm_uuid, &vmi.vm_uuid) {
        (Some(u), _) => u.clone(),
        (None, Some(u)) => u.clone(),
        (None, None) => {
            return Err(Error::new(
                code::AGENT,
                "the agent's vm-cfg answer has no vm-uuid",
            ));
        }
    };
    let vn_uuid = vmi.vn_id.clone().unwrap_or_default();
    let mac_text = vmi.mac.clone().or(mac).ok_or_else(|| {
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
    let primary = vmi
        .index()
        .map(|(i, _)| i == 0)
        .or(primary)
        .unwrap_or(ctx.ifname == "eth0");

    // 4. The veth pair.
    let tap = tap_name(cid, ctx.ifname);
    let spec = VethSpec {
        host_name: tap.clone(),
        container_name: ctx.ifname.to_owned(),
        mac: Some(mac),
        mtu: cfg.mtu,
    };
    let created = match rb.deps.net.create_veth(netns, &spec) {
        Err(NetError::Netlink {
            errno: Some(libc::EEXIST),
            ..
        }) => {
            // The host name is unique to (container id, ifname) and the container side is
            // free: a tap left by a lost DEL of this very attachment. Replace it.
            tracing::warn!(container_id = cid, tap, "replacing a stale host interface");
            rb.deps
                .net
                .delete_host_link(&tap)
                .and_then(|_| rb.deps.net.create_veth(netns, &spec))
        }
        r => r,
    };
    created.map_err(|e| at_step(e.into(), "create veth"))?;
    rb.veth = Some(tap.clone());
    // Contrail disables router advertisements on the tap (087f7957f7); best effort, the file
    // is absent when IPv6 is disabled.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{tap}/accept_ra"), b"0");
    lap("veth", &mut t);

    // 5. Port file, then POST /vm, under the VM's directory lock.
    let msg = PortMsg {
        time: go_time_now(),
        vm_id: cid.to_owned(),
        vm_uuid: vm_uuid.clone(),
        vm_name: id.vm_name.clone(),
        host_ifname: tap.clone(),
        vm_ifname: ctx.ifname.to_owned(),
        vm_namespace: netns.to_string_lossy().into_owned(),
        vn_uuid,
        vmi_uuid: vmi.id.clone(),
    };
    let body = msg.to_body();
    {
        let pf = |e: std::io::Error| {
            Error::new(
                code::PORT_FILE,
                format!(
                    "{}/{}/{}: {e}",
                    cfg.config_dir.display(),
                    id.vm_name,
                    vmi.id
                ),
            )
        };
        let dir = VmDir::lock(&cfg.config_dir, &id.vm_name, true)
            .map_err(pf)
            .and_then(|d| d.ok_or_else(|| pf(std::io::ErrorKind::NotFound.into())))
            .map_err(|e| at_step(e, "write port file"))?;
        dir.write(&vmi.id, &body)
            .map_err(|e| at_step(pf(e), "write port file"))?;
        rb.port = Some((id.vm_name.clone(), vmi.id.clone(), vm_uuid.clone(), false));
        rb.deps
            .agent
            .add_port(&body, request_timeout(cfg))
            .map_err(|e| at_step(e.into(), "POST /vm"))?;
        if let Some(p) = rb.port.as_mut() {
            p.3 = true;
        }
    }
    lap("port", &mut t);

    // 6. The port's IP configuration, then the IPAM plugin.
    let what = format!(
        "the vRouter agent at {} to report port {} of VM {vm_uuid} (GET /vm/{vm_uuid}/{})",
        agent.endpoint(),
        vmi.id,
        vmi.id
    );
    let port = poll(cfg, &what, |timeout| {
        match agent.get_port(&vm_uuid, &vmi.id, timeout) {
            // A port the agent knows before its instance-ip reached it has no address yet
            // (a real agent says 404 "Missing IPAM entry ... Retry"; a 200 without one is the
            // same state), so it is polled on rather than handed to IPAM as an error.
            Ok(Some(p)) if !has_address(&p) => {
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
    .map_err(|e| at_step(e, "get the port's IP configuration"))?;
    lap("vm-port", &mut t);
    let ipcfg = rb
        .deps
        .policy
        .ipam(&port, primary)
        .map_err(|e| at_step(e, "IPAM plugin"))?;
    lap("ipam", &mut t);

    // 7. Addresses and routes inside the netns.
    let addrs: Vec<IpNet> = ipcfg.ips.iter().map(|i| i.address).collect();
    let routes: Vec<RouteSpec> = ipcfg
        .routes
        .iter()
        .map(|r| RouteSpec {
            dst: r.dst,
            gw: r.gw,
        })
        .collect();
    rb.deps
        .net
        .configure(netns, ctx.ifname, &addrs, &routes)
        .map_err(|e| at_step(e.into(), "configure addresses and routes"))?;
    lap("configure", &mut t);

    rb.armed = false;
    tracing::info!(container_id = cid, ifname = ctx.ifname, tap, vmi = %vmi.id, ms = ms(t0.elapsed()), "ADD done");
    Ok(CniResult {
        interfaces: vec![Interface {
            name: ctx.ifname.to_owned(),
            mac: Some(format_mac(&mac)),
            mtu: Some(cfg.mtu),
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

/// DEL: Mesos semantics (no prevResult, maybe no netns). Repeatable; succeeds when everything is
/// already gone; ignores a stale DEL (port file written by another container id).
pub fn del(ctx: &Ctx, deps: &mut Deps) -> Result<()> {
    let t0 = Instant::now();
    let cfg = ctx.cfg;
    let cid = ctx.container_id;
    let tap = tap_name(cid, ctx.ifname);
    // Without the pod's name a k8s DEL cannot find the port file; it still removes the veth.
    let id = identity(ctx).ok();
    // (vmi uuid, vm uuid) of this interface's port file.
    let mut port = None;
    if let Some(id) = &id {
        let pf = |e: std::io::Error| {
            Error::new(
                code::PORT_FILE,
                format!("{}/{}: {e}", cfg.config_dir.display(), id.vm_name),
            )
        };
        if let Some(dir) = VmDir::lock(&cfg.config_dir, &id.vm_name, false).map_err(pf)? {
            let entries = dir.entries().map_err(pf)?;
            if let Some((vmi, msg)) = entries.iter().find(|(_, m)| m.vm_ifname == ctx.ifname) {
                if !msg.vm_id.is_empty() && msg.vm_id != cid {
                    // Contrail #1694317: a late DEL of an earlier container must not tear
                    // down the newer one that reuses the name.
                    tracing::warn!(container_id = cid, owner = %msg.vm_id, "stale DEL ignored: the port file belongs to another container");
                    return Ok(());
                }
                let vm_uuid = if msg.vm_uuid.is_empty() {
                    id.vm_uuid.clone().unwrap_or_default()
                } else {
                    msg.vm_uuid.clone()
                };
                port = Some((vmi.clone(), vm_uuid));
            }
        }
    }
    let t_lookup = t0.elapsed();
    // Veth first: the agent then sees the tap vanish before the unsubscribe.
    let removed = deps
        .net
        .retire(ctx.netns, ctx.ifname, &tap, cfg.async_teardown)?;
    let t_veth = t0.elapsed();
    if let (Some(id), Some((vmi, vm_uuid))) = (&id, &port) {
        release_port(
            deps.agent,
            cfg,
            cid,
            &id.vm_name,
            vmi,
            vm_uuid,
            !vm_uuid.is_empty(),
        )?;
    }
    if let (Some(id), Some(m)) = (&id, deps.manager)
        && id.mode == Mode::Mesos
    {
        m.detach(cid, ctx.ifname)
            .map_err(|e| at_step(e, "deregister from the manager"))?;
    }
    tracing::info!(
        container_id = cid,
        ifname = ctx.ifname,
        tap,
        removed,
        port_file_ms = ms(t_lookup),
        veth_ms = ms(t_veth - t_lookup),
        ms = ms(t0.elapsed()),
        "DEL done"
    );
    Ok(())
}

/// CHECK: the interface, its MAC, addresses and routes are still what ADD reported.
pub fn check(ctx: &Ctx, prev: &CniResult, deps: &mut Deps) -> Result<()> {
    let netns = ctx
        .netns
        .ok_or_else(|| Error::new(code::INVALID_ENV, "CNI_NETNS is required for CHECK"))?;
    let fail = |m: String| Error::new(code::INVALID_CONFIG, m);
    let st = deps.net.inspect(netns, ctx.ifname)?.ok_or_else(|| {
        fail(format!(
            "interface {} is missing in {}",
            ctx.ifname,
            netns.display()
        ))
    })?;
    let idx = prev.interfaces.iter().position(|i| i.name == ctx.ifname);
    if let Some(want) = idx.and_then(|i| prev.interfaces[i].mac.as_deref()) {
        let have = st.mac.map(|m| format_mac(&m)).unwrap_or_default();
        if parse_mac(want) != st.mac {
            return Err(fail(format!(
                "interface {} has MAC {have}, expected {want}",
                ctx.ifname
            )));
        }
    }
    if !st.up {
        return Err(fail(format!("interface {} is down", ctx.ifname)));
    }
    for ip in prev
        .ips
        .iter()
        .filter(|ip| ip.interface.is_none() || ip.interface == idx)
    {
        if !st.addrs.contains(&ip.address) {
            return Err(fail(format!(
                "address {} is missing on {}",
                ip.address, ctx.ifname
            )));
        }
    }
    for r in &prev.routes {
        let ok = st
            .routes
            .iter()
            .any(|h| h.dst == r.dst && (r.gw.is_none() || h.gw == r.gw));
        if !ok {
            let via =
                r.gw.map(|g: IpAddr| format!(" via {g}"))
                    .unwrap_or_default();
            return Err(fail(format!(
                "route {}{via} is missing on {}",
                r.dst, ctx.ifname
            )));
        }
    }
    let tap = tap_name(ctx.container_id, ctx.ifname);
    if !deps.net.host_link_exists(&tap)? {
        return Err(fail(format!("host interface {tap} is missing")));
    }
    Ok(())
}

/// STATUS: 50 when the agent does not answer.
pub fn status(cfg: &ContrailConfig, agent: &dyn Agent) -> Result<()> {
    agent
        .ping(request_timeout(cfg).min(Duration::from_secs(2)))
        .map_err(|e| {
            Error::new(
                code::NOT_AVAILABLE,
                format!(
                    "vRouter agent at {} does not respond: {e}",
                    agent.endpoint()
                ),
            )
        })
}

/// Result routes by the CNI canonical type, for tests and callers.
pub fn routes_of(r: &CniResult) -> Vec<RouteSpec> {
    r.routes
        .iter()
        .map(|x: &Route| RouteSpec {
            dst: x.dst,
            gw: x.gw,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;
    use crate::cni::result::Dns;
    use crate::net::IfaceState;

    const CID: &str = "5baff64c-d028-47ba-864e-a5ee679fc069";
    const VMI: &str = "a1b2c3d4-0000-4000-8000-000000000001";

    #[derive(Default)]
    struct FakeAgent {
        cfg_404s: RefCell<u32>,
        /// `GET /vm/...` answers 200 without an address this many times first.
        port_unaddressed: RefCell<u32>,
        fail_post: bool,
        calls: RefCell<Vec<String>>,
        subs: RefCell<BTreeMap<String, Vec<u8>>>,
    }

    impl Agent for FakeAgent {
        fn vm_cfg(
            &self,
            key: &str,
            _: Duration,
        ) -> std::result::Result<Option<Vec<VmiCfg>>, AgentError> {
            self.calls.borrow_mut().push(format!("GET /vm-cfg/{key}"));
            let mut n = self.cfg_404s.borrow_mut();
            if *n > 0 {
                *n -= 1;
                return Ok(None);
            }
            Ok(Some(vec![VmiCfg {
                id: VMI.into(),
                vm_uuid: Some(CID.into()),
                vn_id: Some("vn".into()),
                mac: Some("02:00:00:00:00:01".into()),
                annotations: [("index".to_string(), "0/1".to_string())].into(),
                ..Default::default()
            }]))
        }
        fn add_port(&self, body: &[u8], _: Duration) -> std::result::Result<(), AgentError> {
            self.calls.borrow_mut().push("POST /vm".into());
            if self.fail_post {
                return Err(AgentError::Status {
                    status: 500,
                    body: "{}".into(),
                });
            }
            self.subs.borrow_mut().insert(VMI.into(), body.to_vec());
            Ok(())
        }
        fn get_port(
            &self,
            _: &str,
            vmi: &str,
            _: Duration,
        ) -> std::result::Result<Option<VmPort>, AgentError> {
            self.calls.borrow_mut().push(format!("GET /vm/{vmi}"));
            let mut n = self.port_unaddressed.borrow_mut();
            if *n > 0 {
                *n -= 1;
                return Ok(Some(VmPort {
                    id: vmi.into(),
                    ..Default::default()
                }));
            }
            Ok(Some(VmPort {
                id: vmi.into(),
                ip_address: Some("10.0.0.5".into()),
                plen: Some(24),
                gateway: Some("10.0.0.254".into()),
                ..Default::default()
            }))
        }
        fn delete_vm(
            &self,
            vm: &str,
            _: &[u8],
            _: Duration,
        ) -> std::result::Result<(), AgentError> {
            self.calls.borrow_mut().push(format!("DELETE /vm/{vm}"));
            self.subs.borrow_mut().clear();
            Ok(())
        }
        fn ping(&self, _: Duration) -> std::result::Result<(), AgentError> {
            Err(AgentError::Unreachable("refused".into()))
        }
        fn endpoint(&self) -> String {
            "fake:9091".into()
        }
    }

    #[derive(Default)]
    struct FakeNet {
        links: Vec<String>,
        fail_configure: bool,
    }

    impl NetOps for FakeNet {
        fn create_veth(&mut self, _: &Path, spec: &VethSpec) -> std::result::Result<(), NetError> {
            self.links.push(spec.host_name.clone());
            Ok(())
        }
        fn configure(
            &mut self,
            _: &Path,
            _: &str,
            _: &[IpNet],
            _: &[RouteSpec],
        ) -> std::result::Result<(), NetError> {
            if self.fail_configure {
                return Err(NetError::Netlink {
                    op: "add route".into(),
                    errno: Some(101),
                    msg: "unreachable".into(),
                });
            }
            Ok(())
        }
        fn delete_host_link(&mut self, name: &str) -> std::result::Result<bool, NetError> {
            let before = self.links.len();
            self.links.retain(|l| l != name);
            Ok(before != self.links.len())
        }
        fn retire(
            &mut self,
            _: Option<&Path>,
            _: &str,
            name: &str,
            _: bool,
        ) -> std::result::Result<bool, NetError> {
            self.delete_host_link(name)
        }
        fn host_link_exists(&mut self, name: &str) -> std::result::Result<bool, NetError> {
            Ok(self.links.iter().any(|l| l == name))
        }
        fn inspect(
            &mut self,
            _: &Path,
            _: &str,
        ) -> std::result::Result<Option<IfaceState>, NetError> {
            Ok(None)
        }
    }

    struct FakePolicy;

    impl Policy for FakePolicy {
        fn translate(&self, _: &[Label]) -> Result<ContrailRequest> {
            Ok(ContrailRequest::default())
        }
        fn ipam(&self, port: &VrouterPort, primary: bool) -> Result<IpamConfig> {
            let ip: IpAddr = port.ip_address.as_deref().unwrap().parse().unwrap();
            let gw: IpAddr = port.gateway.as_deref().unwrap().parse().unwrap();
            Ok(IpamConfig {
                ips: vec![IpConfig {
                    interface: None,
                    address: IpNet::new(ip, 24).unwrap(),
                    gateway: Some(gw),
                }],
                routes: if primary {
                    vec![Route::new("0.0.0.0/0".parse().unwrap(), Some(gw))]
                } else {
                    vec![]
                },
                dns: Dns::default(),
            })
        }
    }

    fn cfg(dir: &Path) -> ContrailConfig {
        ContrailConfig {
            config_dir: dir.to_owned(),
            poll_timeout: Duration::from_millis(20),
            poll_retries: 5,
            mode: Some(Mode::Mesos),
            ..Default::default()
        }
    }

    fn ctx<'a>(cfg: &'a ContrailConfig, netns: &'a Path) -> Ctx<'a> {
        Ctx {
            cfg,
            container_id: CID,
            ifname: "eth0",
            netns: Some(netns),
            cni_args: None,
            network_name: "contrail-cni-plugin",
            labels: vec![],
        }
    }

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
        let mut deps = Deps {
            agent: &agent,
            manager: None,
            net: &mut net,
            policy: &FakePolicy,
        };
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
        let mut deps = Deps {
            agent: &agent,
            manager: None,
            net: &mut net,
            policy: &FakePolicy,
        };
        let r = add(&ctx(&cfg, ns), &mut deps).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.5/24");
        assert_eq!(r.ips[0].interface, Some(0));
        assert_eq!(r.routes.len(), 1);
        assert_eq!(r.interfaces[0].mac.as_deref(), Some("02:00:00:00:00:01"));
        let file = tmp.path().join(CID).join(VMI);
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

        let mut deps = Deps {
            agent: &agent,
            manager: None,
            net: &mut net,
            policy: &FakePolicy,
        };
        del(&ctx(&cfg, ns), &mut deps).unwrap();
        assert!(net.links.is_empty());
        assert!(!tmp.path().join(CID).exists());
        assert!(agent.subs.borrow().is_empty());
        let mut deps = Deps {
            agent: &agent,
            manager: None,
            net: &mut net,
            policy: &FakePolicy,
        };
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
        let mut deps = Deps {
            agent: &agent,
            manager: None,
            net: &mut net,
            policy: &FakePolicy,
        };
        let e = add(&ctx(&cfg, ns), &mut deps).unwrap_err();
        assert_eq!(e.code, code::NETLINK);
        assert!(
            e.msg.starts_with("configure addresses and routes:"),
            "{}",
            e.msg
        );
        assert!(net.links.is_empty());
        assert!(!tmp.path().join(CID).exists());
        assert!(agent.subs.borrow().is_empty());

        let agent = FakeAgent {
            fail_post: true,
            ..Default::default()
        };
        let mut deps = Deps {
            agent: &agent,
            manager: None,
            net: &mut net,
            policy: &FakePolicy,
        };
        let e = add(&ctx(&cfg, ns), &mut deps).unwrap_err();
        assert_eq!(e.code, code::AGENT);
        assert!(e.msg.starts_with("POST /vm:"), "{}", e.msg);
        assert!(net.links.is_empty());
        assert!(!tmp.path().join(CID).exists());
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
        let mut deps = Deps {
            agent: &agent,
            manager: None,
            net: &mut net,
            policy: &FakePolicy,
        };
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
        assert!(net.links.is_empty());
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
        assert_eq!(select_vmi(&two, "eth1", None).ok().unwrap().id, "b");
        assert_eq!(select_vmi(&two, "eth0", Some("b")).ok().unwrap().id, "b");
        assert!(matches!(
            select_vmi(&two, "eth0", Some("c")),
            Err(Poll::NotYet(_))
        ));
        // Partial set: wait for the rest instead of failing (Contrail R2008 spun here).
        assert!(matches!(
            select_vmi(&two[..1], "eth1", None),
            Err(Poll::NotYet(_))
        ));
        let named = vec![
            mk("a", &[("index", "0/2")]),
            mk("b", &[("index", "1/2"), ("interface", "net1")]),
        ];
        assert_eq!(select_vmi(&named, "net1", None).ok().unwrap().id, "b");
        assert!(matches!(
            select_vmi(&two, "net9", None),
            Err(Poll::Fatal(_))
        ));
        // No index annotation (CEM-24753 crashed the Go CNI): a single VMI is taken.
        assert_eq!(
            select_vmi(&[mk("x", &[])], "eth0", None).ok().unwrap().id,
            "x"
        );
    }

    #[test]
    fn stale_del_touches_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let agent = FakeAgent::default();
        let mut net = FakeNet::default();
        let ns = Path::new("/run/netns/x");
        let mut deps = Deps {
            agent: &agent,
            manager: None,
            net: &mut net,
            policy: &FakePolicy,
        };
        add(&ctx(&cfg, ns), &mut deps).unwrap();
        // Rewrite the port file as if a newer container with the same name owned it.
        let file = tmp.path().join(CID).join(VMI);
        let mut m: PortMsg = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        m.vm_id = "newer".into();
        std::fs::write(&file, m.to_body()).unwrap();
        let mut deps = Deps {
            agent: &agent,
            manager: None,
            net: &mut net,
            policy: &FakePolicy,
        };
        del(&ctx(&cfg, ns), &mut deps).unwrap();
        assert!(file.exists());
        assert_eq!(net.links.len(), 1);
        assert!(!agent.calls.borrow().iter().any(|c| c.starts_with("DELETE")));
    }

    #[test]
    fn status_is_50_when_the_agent_does_not_answer() {
        let e = status(&ContrailConfig::default(), &FakeAgent::default()).unwrap_err();
        assert_eq!(e.code, 50);
        assert!(e.msg.contains("fake:9091"));
    }
}
