//! The Contrail path (issue 3): a network of type `contrail-cni-plugin` / `contrail-k8s-cni`.
//!
//! ADD: translate the Mesos labels (Wasm `translate-contrail`) → register with the manager
//! (`mode: mesos`) → poll the agent's `GET /vm-cfg/<key>` → veth pair over netlink → port file +
//! `POST /vm` → `GET /vm/<vm>/<vmi>` → Wasm IPAM → addresses and routes in the netns. Any failure
//! after a side effect rolls everything back ([`ops::add`]). DEL, CHECK and STATUS: see [`ops`].
//!
//! Modules: [`config`] (the `contrail` section), [`agent`] (vRouter agent client), [`manager`]
//! (attachment API client), [`portfile`] (port files + per-VM lock), [`naming`] (tap names, k8s
//! names), [`ops`] (the logic, over traits).

pub mod agent;
pub mod config;
pub mod error;
pub mod manager;
pub mod naming;
pub mod ops;
pub mod plugin;
pub mod portfile;

use std::path::Path;

use contrail_mesos_api::ContrailRequest;

use crate::Invocation;
use crate::cni::config::Label;
use crate::cni::{CniError, CniResult, Command};
use crate::wasm::{InvocationRecord, IpamConfig, Plugins, VrouterPort};

pub use config::ContrailConfig;
use error::code;

/// [`ops::Policy`] over the real Wasm plugins.
struct WasmPolicy<'a> {
    plugins: &'a Plugins,
    record: InvocationRecord,
    /// Held by [`ops::Policy::prefetch`] while it loads the IPAM component, so the real call
    /// waits for that load instead of doing it a second time in parallel.
    loading: std::sync::Mutex<()>,
}

impl ops::Policy for WasmPolicy<'_> {
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

/// Entry point from the dispatcher.
pub fn run(inv: &Invocation) -> Result<Option<CniResult>, CniError> {
    let cfg = ContrailConfig::from_netconf(inv.conf.raw())?;
    let agent = agent::HttpAgent::new(&cfg.agent_base());
    if inv.command == Command::Status {
        return ops::status(&cfg, &agent).map(|()| None);
    }
    if inv.command == Command::Gc {
        // Port files carry no attachment list the runtime could validate against here; GC is
        // informational for us (DEL is the cleanup path).
        return Ok(None);
    }
    let manager = cfg
        .manager_base()
        .map(|base| manager::HttpManager::new(&base, cfg.mesos_token.clone(), cfg.mesos_timeout));
    let labels = if inv.command == Command::Add {
        inv.conf.mesos_labels()?
    } else {
        vec![]
    };
    let network_name = inv.conf.name()?.unwrap_or_default().to_owned();
    let ctx = ops::Ctx {
        cfg: &cfg,
        container_id: &inv.args.container_id,
        ifname: &inv.args.ifname,
        netns: inv.args.netns.as_deref().map(Path::new),
        cni_args: inv.args.args.as_deref(),
        network_name: &network_name,
        labels,
    };
    let mut net = crate::net::Netlink::new()?;
    let policy = WasmPolicy {
        plugins: &inv.plugins,
        record: inv.record(),
        loading: std::sync::Mutex::new(()),
    };
    let mut deps = ops::Deps {
        agent: &agent,
        manager: manager.as_ref().map(|m| m as &dyn manager::Manager),
        net: &mut net,
        policy: &policy,
    };
    match inv.command {
        Command::Add => ops::add(&ctx, &mut deps).map(Some),
        Command::Del => ops::del(&ctx, &mut deps).map(|()| None),
        Command::Check => {
            let prev = inv.conf.prev_result()?.ok_or_else(|| {
                CniError::new(
                    code::INVALID_CONFIG,
                    "CHECK needs prevResult in the network config",
                )
            })?;
            ops::check(&ctx, &prev, &mut deps).map(|()| None)
        }
        Command::Status | Command::Gc | Command::Version => Ok(None),
    }
}
