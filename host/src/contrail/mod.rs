//! The Contrail path: a network of type `contrail-cni-plugin` / `contrail-k8s-cni`, doing what
//! tf-controller's `src/container/cni/` plugin does, over the same agent API and port files.
//!
//! ADD: translate the Mesos labels (Wasm `translate-contrail`) → register with the manager
//! (`mode: mesos`) → poll the agent's `GET /vm-cfg/<key>` → veth pair over netlink → port file +
//! `POST /vm` → `GET /vm/<vm>/<vmi>` → Wasm IPAM → addresses and routes in the netns. Any failure
//! after a side effect rolls everything back ([`undo`]).
//!
//! One module per verb ([`add`], [`del`], [`check`], [`status`], [`gc`]) over the traits of
//! [`ctx`], so each runs against fakes without root; [`poll`] waits for the agent. Peers:
//! [`agent`] (vRouter agent client and its wire types), [`manager`] (attachment API client).
//! [`config`] is the `contrail` section, [`portfile`] the port files and per-VM lock, [`naming`]
//! the tap and k8s names. [`record`] is our own record of which network made each attachment
//! (what [`gc`] and the operator's [`sweep`] go by). [`nested`] is nested mode (`vif-type:
//! macvlan`): a macvlan on a VLAN interface of `parent-interface` instead of a veth, and no
//! `POST /vm`. [`portmap`] forwards the host ports Mesos asks for (`network_info.port_mappings`)
//! with nftables DNAT on the node.

pub mod add;
pub mod agent;
pub mod check;
pub mod config;
pub mod ctx;
pub mod del;
pub mod error;
#[cfg(test)]
mod fakes;
pub mod gc;
pub mod manager;
pub mod naming;
pub mod nested;
pub mod plugin;
pub mod poll;
pub mod portfile;
pub mod portmap;
pub mod record;
pub mod status;
pub mod sweep;
pub mod undo;

use std::path::Path;

use contrail_mesos_api::ContrailRequest;

use crate::cni::config::Label;
use crate::cni::{CniError, CniResult, Command};
use crate::invocation::Invocation;
use crate::wasm::{InvocationRecord, IpamConfig, Plugins};
use agent::VrouterPort;

pub use config::ContrailConfig;
use error::code;

/// [`ctx::Policy`] over the real Wasm plugins.
struct WasmPolicy<'a> {
    plugins: &'a Plugins,
    record: InvocationRecord,
    /// Held by [`ctx::Policy::prefetch`] while it loads the IPAM component, so the real call
    /// waits for that load instead of doing it a second time in parallel.
    loading: std::sync::Mutex<()>,
}

impl ctx::Policy for WasmPolicy<'_> {
    fn translate(&self, labels: &[Label]) -> Result<ContrailRequest, CniError> {
        let answer = self.plugins.translate_contrail(&self.record, labels)?;
        plugin::contrail_request(answer, self.plugins.settings())
    }

    fn ipam(&self, port: &VrouterPort, primary: bool) -> Result<IpamConfig, CniError> {
        drop(self.loading.lock());
        let answer = self.plugins.ipam_configure(&self.record, port, primary)?;
        plugin::ipam_config(answer, self.plugins.settings())
    }

    /// Loads and type-checks the IPAM component (no call into it).
    fn prefetch(&self) {
        let _loading = self.loading.lock();
        let t = std::time::Instant::now();
        let r = self.plugins.preload_ipam();
        tracing::debug!(
            ok = r.is_ok(),
            us = t.elapsed().as_micros() as u64,
            "IPAM plugin preloaded"
        );
    }
}

/// The longest a DEL spends on manager instances that do not answer (each try is bounded by
/// `mesos-timeout` and by this; no new try starts after it).
const DEL_MANAGER_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// The HTTP client of the node's peers (the vRouter agent, the managers): no proxy from the
/// environment (both are reached directly), statuses and redirects handled by the caller, one
/// budget `timeout` per call, `tls` for `https://`.
///
/// Their answers and heads are a few KiB: 16 KiB buffers come from the heap, where ureq's
/// 128 KiB defaults are two fresh mmaps (and their page faults) per connection, in a process
/// that makes one connection per peer per command. An IP literal needs no lookup thread
/// (`contrail_mesos_api::resolve`).
pub(crate) fn http_client(timeout: std::time::Duration, tls: ureq::tls::TlsConfig) -> ureq::Agent {
    let cfg = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .input_buffer_size(16 * 1024)
        .output_buffer_size(16 * 1024)
        .tls_config(tls)
        .build();
    ureq::Agent::with_parts(
        cfg,
        ureq::unversioned::transport::DefaultConnector::default(),
        contrail_mesos_api::resolve::LiteralFirst::default(),
    )
}

/// Entry point from the dispatcher.
pub fn run(inv: &Invocation) -> Result<Option<CniResult>, CniError> {
    let cfg = ContrailConfig::from_netconf(&inv.conf)?;
    // An unusable CA file fails every command but DEL (code 7). DEL is best-effort: it tears
    // down the node side without the client that cannot be built (the agent client then
    // trusts no certificate at all, so it fails closed; the manager's reconciler removes the
    // VNC objects, as when the manager is unreachable).
    let del = inv.command == Command::Del;
    let best_effort = |r: Result<ureq::tls::TlsConfig, CniError>| match r {
        Ok(t) => Ok(Some(t)),
        Err(e) if del => {
            tracing::warn!("{}; DEL goes on without that client", e.msg);
            Ok(None)
        }
        Err(e) => Err(e),
    };
    let manager_tls = best_effort(cfg.manager_tls())?;
    let agent_tls = best_effort(cfg.agent_tls())?.unwrap_or_else(|| {
        ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Default::default()))
            .build()
    });
    let agent = agent::HttpAgent::new(&cfg.agent_base(), agent_tls);
    if inv.command == Command::Status {
        return status::status(&cfg, &agent).map(|()| None);
    }
    if inv.command == Command::Gc {
        let valid = gc::valid_attachments(&inv.conf)?;
        let mut net = crate::net::Netlink::new()?;
        let ports = portmap::Nft::new(&cfg);
        return gc::gc(&cfg, inv.network_name(), &valid, &agent, &mut net, &ports).map(|_| None);
    }
    if let Some(a) = inv.args.args.as_deref()
        && let Err(e) = naming::check_cni_args(a)
    {
        // DEL must not be blocked by what ADD already refused.
        if inv.command == Command::Del {
            tracing::warn!("{}; DEL goes on", e.msg);
        } else {
            return Err(e);
        }
    }
    let manager = manager_tls.filter(|_| !cfg.managers.is_empty()).map(|tls| {
        if inv.command == Command::Del {
            // DEL never fails on the manager (its reconciler cleans up), so it must not hold
            // the runtime's teardown for a timeout per hanging instance either.
            let t = cfg.mesos_timeout.min(DEL_MANAGER_BUDGET);
            manager::Failover::http(&cfg.managers, cfg.mesos_token.clone(), t, &tls)
                .with_budget(DEL_MANAGER_BUDGET)
        } else {
            manager::Failover::http(
                &cfg.managers,
                cfg.mesos_token.clone(),
                cfg.mesos_timeout,
                &tls,
            )
        }
    });
    let labels = if inv.command == Command::Add {
        inv.conf.mesos_labels()?
    } else {
        vec![]
    };
    // The host ports to forward: ADD installs them, CHECK looks for them (DEL removes whatever
    // the attachment has, without reading them).
    let port_mappings = match inv.command {
        Command::Add | Command::Check => portmap::from_mesos(
            &inv.conf
                .mesos_network_info()?
                .map(|n| n.port_mappings)
                .unwrap_or_default(),
        )?,
        _ => vec![],
    };
    let network_name = inv.network_name().to_owned();
    let ctx = ctx::Ctx {
        cfg: &cfg,
        container_id: &inv.args.container_id,
        ifname: &inv.args.ifname,
        netns: inv.args.netns.as_deref().map(Path::new),
        cni_args: inv.args.args.as_deref(),
        network_name: &network_name,
        labels,
        port_mappings,
    };
    let mut net = crate::net::Netlink::new()?;
    let policy = WasmPolicy {
        plugins: &inv.plugins,
        record: inv.record(),
        loading: std::sync::Mutex::new(()),
    };
    let mut deps = ctx::Deps {
        agent: &agent,
        manager: manager.as_ref().map(|m| m as &dyn manager::Manager),
        net: &mut net,
        policy: &policy,
        ports: &portmap::Nft::new(&cfg),
    };
    match inv.command {
        Command::Add => add::add(&ctx, &mut deps).map(Some),
        Command::Del => del::del(&ctx, &mut deps).map(|()| None),
        Command::Check => {
            let prev = inv.conf.prev_result()?.ok_or_else(|| {
                CniError::new(
                    code::INVALID_CONFIG,
                    "CHECK needs prevResult in the network config",
                )
            })?;
            check::check(&ctx, &prev, &mut deps).map(|()| None)
        }
        Command::Status | Command::Gc | Command::Version => Ok(None),
    }
}
