//! The Wasm plugin platform: one engine configuration ([`engine::engine_config`]), the
//! compiled-artifact cache ([`cache`]), the sandboxed call ([`runtime`]) and [`Plugins`], the
//! lazily loaded plugins one invocation uses.
//!
//! Plugins are found in `wasm.plugin-dir`, else `contrail-cni-wasm/` beside the executable
//! (the symlink's directory first, so `mesos -> contrail-cni-plugin` works from any install
//! dir), as `mesos-delegate.wasm` and `contrail-ipam.wasm` unless `wasm.translator` /
//! `wasm.ipam` say otherwise.

pub mod bindings;
pub mod cache;
pub mod engine;
pub mod runtime;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ipnet::IpNet;
use wasmtime::component::{Component, HasSelf};

use crate::cni::config::{Label, WasmSettings};
use crate::cni::error::{CniError, INTERNAL};
use crate::cni::result::{Dns, IpConfig, Route};
use crate::cni::skel::Command;
use bindings::ipam::exports::contrail::cni_plugin::ipam as wit_ipam;
use bindings::ipam::{IpamPlugin, IpamPluginPre};
use bindings::translator::exports::contrail::cni_plugin::translator as wit_tr;
use bindings::translator::{LabelTranslator, LabelTranslatorPre};
use runtime::{Limits, State, classify, load_error, malformed, plugin_error};

pub use cache::DEFAULT_CACHE_DIR;

/// Default file names in the plugin dir.
pub const TRANSLATOR_FILE: &str = "mesos-delegate.wasm";
pub const IPAM_FILE: &str = "contrail-ipam.wasm";
/// Directory beside the executable holding the plugins.
pub const PLUGIN_DIR_NAME: &str = "contrail-cni-wasm";
/// Largest delegate config a translator may return.
const CONFIG_MAX: usize = 1 << 20;

/// Host-side mirror of the WIT `invocation` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationRecord {
    pub command: Command,
    pub container_id: String,
    pub ifname: String,
    pub netns: Option<String>,
    pub network_name: String,
    pub cni_version: String,
    /// The network config text exactly as the runtime passed it.
    pub config: String,
}

impl InvocationRecord {
    fn to_wit(&self) -> Result<bindings::Invocation, CniError> {
        use bindings::Command as W;
        let command = match self.command {
            Command::Add => W::Add,
            Command::Del => W::Del,
            Command::Check => W::Check,
            Command::Status => W::Status,
            Command::Gc => W::Gc,
            Command::Version => {
                return Err(CniError::new(INTERNAL, "VERSION never reaches a plugin"));
            }
        };
        Ok(bindings::Invocation {
            command,
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
            netns: self.netns.clone(),
            network_name: self.network_name.clone(),
            cni_version: self.cni_version.clone(),
            config: self.config.clone(),
        })
    }
}

/// The agent's port answer lives with the agent client; the IPAM call below converts it into
/// the WIT record.
pub use crate::contrail::agent::VrouterPort;

/// What the IPAM plugin computed, checked and typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpamConfig {
    /// `interface` is `None`; the caller sets the index of the interface it created.
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    IpamPlugin,
    LabelTranslator,
}

impl World {
    pub fn name(self) -> &'static str {
        match self {
            World::IpamPlugin => "ipam-plugin",
            World::LabelTranslator => "label-translator",
        }
    }
}

/// A loaded, type-checked plugin ready to instantiate.
struct Prepared<P> {
    name: String,
    pre: P,
}

/// The plugins of one invocation, loaded on first use.
pub struct Plugins {
    settings: WasmSettings,
    plugin_dir: PathBuf,
    cache_dir: PathBuf,
    container_id: String,
    translator: OnceLock<Prepared<LabelTranslatorPre<State>>>,
    ipam: OnceLock<Prepared<IpamPluginPre<State>>>,
}

/// `contrail-cni-wasm/` beside the executable: beside the path we were invoked by (a `mesos`
/// symlink in the CNI dir) if that dir has one, else beside the resolved binary.
pub fn default_plugin_dir() -> PathBuf {
    let invoked = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .filter(|p| p.components().count() > 1)
        .and_then(|p| p.parent().map(|d| d.join(PLUGIN_DIR_NAME)));
    let resolved = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(PLUGIN_DIR_NAME)));
    match (invoked, resolved) {
        (Some(i), _) if i.is_dir() => i,
        (_, Some(r)) => r,
        (Some(i), None) => i,
        (None, None) => PathBuf::from(PLUGIN_DIR_NAME),
    }
}

fn engine() -> Result<&'static wasmtime::Engine, CniError> {
    let e = engine::engine().map_err(|e| load_error("(engine)", e))?;
    engine::start_ticker(e).map_err(|e| load_error("(engine)", e))?;
    Ok(e)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

impl Plugins {
    pub fn new(settings: WasmSettings, container_id: &str) -> Self {
        let plugin_dir = settings
            .plugin_dir
            .clone()
            .unwrap_or_else(default_plugin_dir);
        let cache_dir = settings
            .cache_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR));
        Plugins {
            settings,
            plugin_dir,
            cache_dir,
            container_id: container_id.to_owned(),
            translator: OnceLock::new(),
            ipam: OnceLock::new(),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            memory_limit_mb: self.settings.memory_limit_mb,
            timeout_ms: self.settings.timeout_ms,
        }
    }

    fn resolve(&self, configured: Option<&PathBuf>, default: &str) -> PathBuf {
        match configured {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => self.plugin_dir.join(p),
            None => self.plugin_dir.join(default),
        }
    }

    /// Path of the label translator.
    pub fn translator_path(&self) -> PathBuf {
        self.resolve(self.settings.translator.as_ref(), TRANSLATOR_FILE)
    }

    /// Path of the IPAM plugin.
    pub fn ipam_path(&self) -> PathBuf {
        self.resolve(self.settings.ipam.as_ref(), IPAM_FILE)
    }

    fn load(&self, path: &Path) -> Result<(String, Component), CniError> {
        let name = file_name(path);
        let engine = engine()?;
        let loaded =
            cache::load(engine, path, Some(&self.cache_dir)).map_err(|e| load_error(&name, e))?;
        Ok((name, loaded.component))
    }

    fn translator(&self) -> Result<&Prepared<LabelTranslatorPre<State>>, CniError> {
        if let Some(p) = self.translator.get() {
            return Ok(p);
        }
        let (name, component) = self.load(&self.translator_path())?;
        let pre = prepare_translator(&component).map_err(|e| load_error(&name, e))?;
        Ok(self.translator.get_or_init(|| Prepared { name, pre }))
    }

    fn ipam(&self) -> Result<&Prepared<IpamPluginPre<State>>, CniError> {
        if let Some(p) = self.ipam.get() {
            return Ok(p);
        }
        let (name, component) = self.load(&self.ipam_path())?;
        let pre = prepare_ipam(&component).map_err(|e| load_error(&name, e))?;
        Ok(self.ipam.get_or_init(|| Prepared { name, pre }))
    }

    /// Loads and type-checks the IPAM plugin now (cache load, linker, `instantiate_pre`) so a
    /// later [`Plugins::ipam_configure`] only instantiates and calls. Nothing of the plugin
    /// runs. Safe to call from another thread while this `Plugins` is in use.
    pub fn preload_ipam(&self) -> Result<(), CniError> {
        self.ipam().map(drop)
    }

    /// [`Plugins::preload_ipam`] for the label translator.
    pub fn preload_translator(&self) -> Result<(), CniError> {
        self.translator().map(drop)
    }

    /// Runs `f` on a fresh instance of a prepared plugin with the limits armed.
    fn call<P, I, R>(
        &self,
        prepared: &Prepared<P>,
        instantiate: impl FnOnce(&P, &mut wasmtime::Store<State>) -> wasmtime::Result<I>,
        f: impl FnOnce(&I, &mut wasmtime::Store<State>) -> wasmtime::Result<R>,
    ) -> Result<R, CniError> {
        let limits = self.limits();
        let mut store = runtime::new_store(engine()?, &prepared.name, &self.container_id, limits);
        let started = std::time::Instant::now();
        let out = instantiate(&prepared.pre, &mut store).and_then(|inst| f(&inst, &mut store));
        tracing::debug!(plugin = %prepared.name, us = started.elapsed().as_micros() as u64, "Wasm call");
        out.map_err(|e| classify(e, store.data(), limits))
    }

    /// `translate-delegate`: the delegate's complete network config (a JSON object with a
    /// string `type`), as text.
    pub fn translate_delegate(
        &self,
        inv: &InvocationRecord,
        labels: &[Label],
        delegate_json: &str,
        ignore_unknown: bool,
    ) -> Result<String, CniError> {
        let p = self.translator()?;
        let req = wit_tr::DelegateRequest {
            invocation: inv.to_wit()?,
            labels: labels
                .iter()
                .map(|l| bindings::Label {
                    key: l.key.clone(),
                    value: l.value.clone(),
                })
                .collect(),
            delegate: delegate_json.to_owned(),
            ignore_unknown,
        };
        let answer = self.call(
            p,
            |pre, store| pre.instantiate(store),
            |inst: &LabelTranslator, store| {
                inst.contrail_cni_plugin_translator()
                    .call_translate_delegate(store, &req)
            },
        )?;
        let text = answer.map_err(|e| plugin_error(&p.name, e))?;
        if text.len() > CONFIG_MAX {
            return Err(malformed(
                &p.name,
                format!("delegate config of {} bytes", text.len()),
            ));
        }
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| malformed(&p.name, format!("delegate config is not JSON: {e}")))?;
        match v.get("type").and_then(serde_json::Value::as_str) {
            Some(t) if !t.is_empty() => Ok(text),
            _ => Err(malformed(&p.name, "delegate config has no string \"type\"")),
        }
    }

    /// `translate-contrail`: the Contrail label vocabulary, checked and converted to the
    /// attachment API type. `inv` tags the plugin's log lines.
    pub fn translate_contrail(
        &self,
        _inv: &InvocationRecord,
        labels: &[Label],
    ) -> Result<contrail_mesos_api::ContrailRequest, CniError> {
        let p = self.translator()?;
        let labels: Vec<bindings::Label> = labels
            .iter()
            .map(|l| bindings::Label {
                key: l.key.clone(),
                value: l.value.clone(),
            })
            .collect();
        let answer = self.call(
            p,
            |pre, store| pre.instantiate(store),
            |inst: &LabelTranslator, store| {
                inst.contrail_cni_plugin_translator()
                    .call_translate_contrail(store, &labels)
            },
        )?;
        let r = answer.map_err(|e| plugin_error(&p.name, e))?;
        contrail_from_wit(r).map_err(|what| malformed(&p.name, what))
    }

    /// `configure`: the IP configuration for one port.
    pub fn ipam_configure(
        &self,
        inv: &InvocationRecord,
        port: &VrouterPort,
        primary: bool,
    ) -> Result<IpamConfig, CniError> {
        let p = self.ipam()?;
        let req = wit_ipam::Request {
            invocation: inv.to_wit()?,
            port: wit_ipam::VrouterPort {
                id: port.id.clone(),
                ip_address: port.ip_address.clone(),
                plen: port.plen,
                gateway: port.gateway.clone(),
                dns_server: port.dns_server.clone(),
                mac_address: port.mac_address.clone(),
                v6_ip_address: port.v6_ip_address.clone(),
                v6_plen: port.v6_plen,
                v6_gateway: port.v6_gateway.clone(),
                v6_dns_server: port.v6_dns_server.clone(),
            },
            primary,
        };
        let answer = self.call(
            p,
            |pre, store| pre.instantiate(store),
            |inst: &IpamPlugin, store| inst.contrail_cni_plugin_ipam().call_configure(store, &req),
        )?;
        let r = answer.map_err(|e| plugin_error(&p.name, e))?;
        ipam_from_wit(r).map_err(|what| malformed(&p.name, what))
    }
}

fn prepare_translator(component: &Component) -> wasmtime::Result<LabelTranslatorPre<State>> {
    let engine = component.engine();
    let linker = runtime::linker_for(engine, component, |l| {
        LabelTranslator::add_to_linker::<State, HasSelf<State>>(l, |s| s)
    })?;
    LabelTranslatorPre::new(linker.instantiate_pre(component)?)
}

fn prepare_ipam(component: &Component) -> wasmtime::Result<IpamPluginPre<State>> {
    let engine = component.engine();
    let linker = runtime::linker_for(engine, component, |l| {
        IpamPlugin::add_to_linker::<State, HasSelf<State>>(l, |s| s)
    })?;
    IpamPluginPre::new(linker.instantiate_pre(component)?)
}

/// Which of our worlds `component` implements (`plugin check`), or why none.
pub fn detect_world(component: &Component) -> Result<World, String> {
    let t = prepare_translator(component).map(|_| World::LabelTranslator);
    let i = prepare_ipam(component).map(|_| World::IpamPlugin);
    match (t, i) {
        (Ok(w), _) | (_, Ok(w)) => Ok(w),
        (Err(te), Err(ie)) => Err(format!(
            "implements neither world: as label-translator: {te:#}; as ipam-plugin: {ie:#}"
        )),
    }
}

/// Imports of `component` that are not ours (they trap if called; typically unused WASI).
pub fn trapped_imports(component: &Component) -> Vec<String> {
    let engine = component.engine();
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .filter(|n| !n.starts_with("contrail:cni-plugin/"))
        .collect()
}

fn fq_ok(parts: &[String], allowed: &[usize]) -> bool {
    allowed.contains(&parts.len()) && parts.iter().all(|p| !p.is_empty())
}

fn contrail_from_wit(
    r: wit_tr::ContrailRequest,
) -> Result<contrail_mesos_api::ContrailRequest, String> {
    if let Some(n) = &r.network
        && !fq_ok(n, &[1, 3])
    {
        return Err(format!(
            "network fq-name {n:?} must have 1 or 3 non-empty parts"
        ));
    }
    for s in &r.subnets {
        let net: IpNet = s
            .cidr
            .parse()
            .map_err(|_| format!("subnet {:?} is not a CIDR", s.cidr))?;
        if net.trunc() != net {
            return Err(format!("subnet {:?} has host bits set", s.cidr));
        }
    }
    if let Some(ip) = &r.ip {
        ip.parse::<IpAddr>()
            .map_err(|_| format!("network-ip {ip:?} is not an IP address"))?;
    }
    for f in &r.floating_ips {
        if !fq_ok(&f.pool, &[4]) {
            return Err(format!(
                "floating-ip pool {:?} must have 4 non-empty parts",
                f.pool
            ));
        }
        if let Some(a) = &f.address {
            a.parse::<IpAddr>()
                .map_err(|_| format!("floating-ip address {a:?} is not an IP address"))?;
        }
    }
    for sg in &r.security_groups {
        if !fq_ok(sg, &[1, 3]) {
            return Err(format!(
                "security-group fq-name {sg:?} must have 1 or 3 non-empty parts"
            ));
        }
    }
    Ok(contrail_mesos_api::ContrailRequest {
        domain: r.domain,
        project: r.project,
        network: r.network,
        subnets: r.subnets.into_iter().map(|s| s.cidr).collect(),
        ip: r.ip,
        floating_ips: r
            .floating_ips
            .into_iter()
            .map(|f| contrail_mesos_api::FloatingIpRequest {
                pool: f.pool,
                address: f.address,
            })
            .collect(),
        security_groups: r.security_groups,
        other: r
            .other
            .into_iter()
            .map(|l| Label {
                key: l.key,
                value: l.value,
            })
            .collect(),
    })
}

fn ipam_from_wit(r: wit_ipam::IpConfig) -> Result<IpamConfig, String> {
    let ip = |s: &str, what: &str| {
        s.parse::<IpAddr>()
            .map_err(|_| format!("{what} {s:?} is not an IP address"))
    };
    let mut out = IpamConfig::default();
    for a in r.ips {
        out.ips.push(IpConfig {
            interface: None,
            address: a
                .address
                .parse()
                .map_err(|_| format!("address {:?} is not CIDR", a.address))?,
            gateway: a.gateway.as_deref().map(|g| ip(g, "gateway")).transpose()?,
        });
    }
    for rt in r.routes {
        out.routes.push(Route::new(
            rt.dst
                .parse()
                .map_err(|_| format!("route dst {:?} is not CIDR", rt.dst))?,
            rt.gw.as_deref().map(|g| ip(g, "route gw")).transpose()?,
        ));
    }
    for ns in &r.dns.nameservers {
        ip(ns, "nameserver")?;
    }
    out.dns = Dns {
        nameservers: r.dns.nameservers,
        domain: r.dns.domain.filter(|d| !d.is_empty()),
        search: r.dns.search,
        options: r.dns.options,
    };
    Ok(out)
}
