//! The Wasm plugin platform: one engine configuration ([`engine::engine_config`]), the
//! compiled-artifact cache ([`cache`]), the sibling compiler process that fills it on a miss
//! ([`compiler`]; this binary links no compiler), the sandboxed call ([`runtime`]), the bindings of every
//! world and version ([`bindings`]), what a plugin may read ([`redact`]) and [`Plugins`], the
//! lazily loaded plugins one invocation uses. What an answer *means* (and the checks before
//! it touches the node) lives with its user: `delegate::answer`, `contrail::plugin`.
//!
//! Plugins are found in `wasm.plugin-dir`, else `contrail-cni-wasm/` beside the executable
//! (the symlink's directory first, so `mesos -> contrail-cni-plugin` works from any install
//! dir). One file per world: `wasm.delegate-translator`, `wasm.contrail-translator` (both
//! default to `wasm.translator`, else `mesos-delegate.wasm`, which implements both worlds) and
//! `wasm.ipam` (default `contrail-ipam.wasm`). A plugin built against `contrail:cni-plugin`
//! 0.2.0 or 0.1.0 is accepted; 0.1.0 answers are converted to the 0.2.0 records here.

pub mod alarm;
pub mod bindings;
pub mod cache;
mod compat;
pub mod compiler;
pub mod engine;
pub mod imports;
pub mod redact;
pub mod runtime;
pub mod stamp;
pub mod worlds;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use wasmtime::component::Component;

use crate::cni::config::{Label, WasmSettings};
use crate::cni::error::{CniError, INTERNAL};
use crate::cni::result::{Dns, IpConfig, Route};
use crate::cni::skel::Command;
use bindings::{v1, v2};
use compat::{contrail_from_v1, ipam_from_v1};
use runtime::{Limits, State, classify, load_error};
use worlds::{
    ContrailPre, DelegatePre, IpamPre, Pre, Prepared, prepare_contrail, prepare_delegate,
    prepare_ipam,
};

pub use imports::{GRANTED_IMPORTS, Grant, Import, STD_STUB_IMPORTS, grant_of, imports};
pub use worlds::{Version, World, check_world, version_of};

pub use bindings::v2::wit_contrail as contrail_wit;
pub use bindings::v2::wit_delegate as delegate_wit;
pub use bindings::v2::wit_ipam as ipam_wit;
pub use cache::DEFAULT_CACHE_DIR;

/// Default file names in the plugin dir.
pub const TRANSLATOR_FILE: &str = "mesos-delegate.wasm";
pub const IPAM_FILE: &str = "contrail-ipam.wasm";
/// Directory beside the executable holding the plugins.
pub const PLUGIN_DIR_NAME: &str = "contrail-cni-wasm";

/// The WIT package versions the host links.
pub const WIT_PACKAGE: &str = "contrail:cni-plugin@0.2.0";
pub const WIT_PACKAGE_COMPAT: &str = "contrail:cni-plugin@0.1.0";

/// Host-side mirror of the WIT `invocation` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationRecord {
    pub command: Command,
    pub container_id: String,
    pub ifname: String,
    pub netns: Option<String>,
    pub network_name: String,
    pub cni_version: String,
    /// The network config text exactly as the runtime passed it; plugins get it through
    /// [`redact::config_for_plugin`].
    pub config: String,
}

macro_rules! invocation_to_wit {
    ($self:ident, $ver:ident { $($extra:tt)* }) => {{
        use $ver::Command as W;
        let command = match $self.command {
            Command::Add => W::Add,
            Command::Del => W::Del,
            Command::Check => W::Check,
            Command::Status => W::Status,
            Command::Gc => W::Gc,
            Command::Version => {
                return Err(CniError::new(INTERNAL, "VERSION never reaches a plugin"));
            }
        };
        Ok($ver::Invocation {
            command,
            container_id: $self.container_id.clone(),
            ifname: $self.ifname.clone(),
            netns: $self.netns.clone(),
            network_name: $self.network_name.clone(),
            cni_version: $self.cni_version.clone(),
            config: redact::config_for_plugin(&$self.config),
            $($extra)*
        })
    }};
}

impl InvocationRecord {
    fn to_v2(&self, plugin_config: Option<String>) -> Result<v2::Invocation, CniError> {
        invocation_to_wit!(self, v2 { plugin_config })
    }

    fn to_v1(&self) -> Result<v1::Invocation, CniError> {
        invocation_to_wit!(self, v1 {})
    }
}

/// What a delegate translator answered.
#[derive(Debug, Clone)]
pub enum DelegateReply {
    /// 0.2.0: the typed decision.
    Answer(delegate_wit::DelegateAnswer),
    /// 0.1.0: a whole delegate config (JSON text), to be diffed against the operator's block.
    Config(String),
}

/// A plugin's answer with the plugin's file name (for errors).
#[derive(Debug, Clone)]
pub struct Named<T> {
    pub plugin: String,
    pub answer: T,
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

/// The plugins of one invocation, loaded on first use.
pub struct Plugins {
    settings: WasmSettings,
    plugin_dir: PathBuf,
    cache_dir: PathBuf,
    container_id: String,
    /// `None`: the compiler beside the executable (the CNI path and the CLI).
    compiler: Option<compiler::Compiler>,
    delegate: OnceLock<Prepared<DelegatePre>>,
    contrail: OnceLock<Prepared<ContrailPre>>,
    ipam: OnceLock<Prepared<IpamPre>>,
}

/// `contrail-cni-wasm/` beside the executable: beside the path we were invoked by (a `mesos`
/// symlink in the CNI dir) if that dir has one, else beside the resolved binary. Neither
/// changes while the process runs: looked up once.
pub fn default_plugin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let invoked = crate::invoked_path::get()
            .filter(|p| p.components().count() > 1)
            .and_then(|p| p.parent().map(|d| d.join(PLUGIN_DIR_NAME)));
        if let Some(i) = &invoked
            && i.is_dir()
        {
            return i.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join(PLUGIN_DIR_NAME)))
            .or(invoked)
            .unwrap_or_else(|| PathBuf::from(PLUGIN_DIR_NAME))
    })
    .clone()
}

fn engine() -> Result<&'static wasmtime::Engine, CniError> {
    engine::engine().map_err(|e| load_error("(engine)", e))
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn labels_v2(labels: &[Label]) -> Vec<v2::Label> {
    labels
        .iter()
        .map(|l| v2::Label {
            key: l.key.clone(),
            value: l.value.clone(),
        })
        .collect()
}

fn labels_v1(labels: &[Label]) -> Vec<v1::Label> {
    labels
        .iter()
        .map(|l| v1::Label {
            key: l.key.clone(),
            value: l.value.clone(),
        })
        .collect()
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
            compiler: None,
            delegate: OnceLock::new(),
            contrail: OnceLock::new(),
            ipam: OnceLock::new(),
        }
    }

    /// Compile with the compiler at `path` instead of the one beside the executable. For tests
    /// and benchmarks of this library, whose executable is not the installed host; nothing a
    /// config or a plugin supplies reaches this.
    pub fn with_compiler(mut self, path: impl Into<PathBuf>) -> Self {
        self.compiler = Some(compiler::Compiler::at(path));
        self
    }

    pub fn settings(&self) -> &WasmSettings {
        &self.settings
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

    /// Path of the plugin serving `world`.
    pub fn path(&self, world: World) -> PathBuf {
        let s = &self.settings;
        match world {
            World::DelegateTranslator => self.resolve(
                s.delegate_translator.as_ref().or(s.translator.as_ref()),
                TRANSLATOR_FILE,
            ),
            World::ContrailTranslator => self.resolve(
                s.contrail_translator.as_ref().or(s.translator.as_ref()),
                TRANSLATOR_FILE,
            ),
            World::IpamPlugin => self.resolve(s.ipam.as_ref(), IPAM_FILE),
        }
    }

    /// The operator's `wasm.plugin-config` entry for `world`, as the JSON text a plugin gets.
    fn plugin_config(&self, world: World) -> Option<String> {
        self.settings
            .plugin_config
            .as_ref()
            .and_then(|c| c.get(world.name()))
            .map(redact::value_for_plugin)
    }

    fn cache_options(&self) -> cache::Options<'_> {
        cache::Options {
            cache_dir: Some(&self.cache_dir),
            compile_timeout: std::time::Duration::from_millis(self.settings.compile_timeout_ms),
            allow_insecure_permissions: self.settings.allow_insecure_permissions,
            compiler: self.compiler.as_ref(),
        }
    }

    fn load(&self, world: World) -> Result<(String, Component), CniError> {
        let path = self.path(world);
        let name = file_name(&path);
        let engine = engine()?;
        let loaded =
            cache::load(engine, &path, &self.cache_options()).map_err(|e| load_error(&name, e))?;
        Ok((name, loaded.component))
    }

    fn delegate(&self) -> Result<&Prepared<DelegatePre>, CniError> {
        if let Some(p) = self.delegate.get() {
            return Ok(p);
        }
        let (name, component) = self.load(World::DelegateTranslator)?;
        let pre = prepare_delegate(&component).map_err(|e| load_error(&name, e))?;
        Ok(self.delegate.get_or_init(|| Prepared { name, pre }))
    }

    fn contrail(&self) -> Result<&Prepared<ContrailPre>, CniError> {
        if let Some(p) = self.contrail.get() {
            return Ok(p);
        }
        let (name, component) = self.load(World::ContrailTranslator)?;
        let pre = prepare_contrail(&component).map_err(|e| load_error(&name, e))?;
        Ok(self.contrail.get_or_init(|| Prepared { name, pre }))
    }

    fn ipam(&self) -> Result<&Prepared<IpamPre>, CniError> {
        if let Some(p) = self.ipam.get() {
            return Ok(p);
        }
        let (name, component) = self.load(World::IpamPlugin)?;
        let pre = prepare_ipam(&component).map_err(|e| load_error(&name, e))?;
        Ok(self.ipam.get_or_init(|| Prepared { name, pre }))
    }

    /// Loads and type-checks the IPAM plugin now (cache load, linker, `instantiate_pre`) so a
    /// later [`Plugins::ipam_configure`] only instantiates and calls. Nothing of the plugin
    /// runs. Safe to call from another thread while this `Plugins` is in use.
    pub fn preload_ipam(&self) -> Result<(), CniError> {
        self.ipam().map(drop)
    }

    /// [`Plugins::preload_ipam`] for the Contrail label translator.
    pub fn preload_translator(&self) -> Result<(), CniError> {
        self.contrail().map(drop)
    }

    /// Runs `f` on a fresh store with the limits armed; failures become CNI errors naming
    /// the plugin.
    fn call<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut wasmtime::Store<State>) -> wasmtime::Result<R>,
    ) -> Result<R, CniError> {
        let limits = self.limits();
        let mut store = runtime::new_store(engine()?, name, &self.container_id, limits)
            .map_err(|e| load_error(name, e))?;
        let started = std::time::Instant::now();
        let out = f(&mut store);
        tracing::debug!(plugin = %name, us = started.elapsed().as_micros() as u64, "Wasm call");
        out.map_err(|e| classify(e, store.data(), limits))
    }

    /// The delegate translator's decision (0.2.0) or whole config (0.1.0). `delegate_json` is
    /// the operator's block; it is passed without credentials.
    pub fn translate_delegate(
        &self,
        inv: &InvocationRecord,
        labels: &[Label],
        delegate_json: &serde_json::Value,
        ignore_unknown: bool,
    ) -> Result<Named<DelegateReply>, CniError> {
        let p = self.delegate()?;
        let delegate = redact::value_for_plugin(delegate_json);
        let reply = match &p.pre {
            Pre::V2(pre) => {
                let req = delegate_wit::DelegateRequest {
                    invocation: inv.to_v2(self.plugin_config(World::DelegateTranslator))?,
                    labels: labels_v2(labels),
                    delegate,
                    ignore_unknown,
                };
                let r = self.call(&p.name, |store| {
                    pre.instantiate(&mut *store)?
                        .contrail_cni_plugin_delegate()
                        .call_translate(&mut *store, &req)
                })?;
                r.map(DelegateReply::Answer)
                    .map_err(|e| runtime::plugin_error(&p.name, e.code, &e.msg, &e.details))?
            }
            Pre::V1(pre) => {
                let req = v1::wit_translator::DelegateRequest {
                    invocation: inv.to_v1()?,
                    labels: labels_v1(labels),
                    delegate,
                    ignore_unknown,
                };
                let r = self.call(&p.name, |store| {
                    pre.instantiate(&mut *store)?
                        .contrail_cni_plugin_translator()
                        .call_translate_delegate(&mut *store, &req)
                })?;
                r.map(DelegateReply::Config)
                    .map_err(|e| runtime::plugin_error(&p.name, e.code, &e.msg, &e.details))?
            }
        };
        Ok(Named {
            plugin: p.name.clone(),
            answer: reply,
        })
    }

    /// The Contrail label translator's request record (a 0.1.0 record is converted; it has
    /// no `isolation`). Checking and typing it is `contrail::plugin`'s job.
    pub fn translate_contrail(
        &self,
        inv: &InvocationRecord,
        labels: &[Label],
    ) -> Result<Named<contrail_wit::ContrailRequest>, CniError> {
        let p = self.contrail()?;
        let answer = match &p.pre {
            Pre::V2(pre) => {
                let req = contrail_wit::TranslateRequest {
                    invocation: inv.to_v2(self.plugin_config(World::ContrailTranslator))?,
                    labels: labels_v2(labels),
                };
                self.call(&p.name, |store| {
                    pre.instantiate(&mut *store)?
                        .contrail_cni_plugin_contrail()
                        .call_translate(&mut *store, &req)
                })?
                .map_err(|e| runtime::plugin_error(&p.name, e.code, &e.msg, &e.details))?
            }
            Pre::V1(pre) => {
                let labels = labels_v1(labels);
                let r = self
                    .call(&p.name, |store| {
                        pre.instantiate(&mut *store)?
                            .contrail_cni_plugin_translator()
                            .call_translate_contrail(&mut *store, &labels)
                    })?
                    .map_err(|e| runtime::plugin_error(&p.name, e.code, &e.msg, &e.details))?;
                contrail_from_v1(r)
            }
        };
        Ok(Named {
            plugin: p.name.clone(),
            answer,
        })
    }

    /// `configure`: the IPAM plugin's answer for one port, unchecked (see `contrail::plugin`).
    pub fn ipam_configure(
        &self,
        inv: &InvocationRecord,
        port: &VrouterPort,
        primary: bool,
    ) -> Result<Named<ipam_wit::IpConfig>, CniError> {
        let p = self.ipam()?;
        macro_rules! port {
            ($m:path) => {{
                use $m as m;
                m::VrouterPort {
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
                }
            }};
        }
        let answer = match &p.pre {
            Pre::V2(pre) => {
                let req = ipam_wit::Request {
                    invocation: inv.to_v2(self.plugin_config(World::IpamPlugin))?,
                    port: port!(ipam_wit),
                    primary,
                };
                self.call(&p.name, |store| {
                    pre.instantiate(&mut *store)?
                        .contrail_cni_plugin_ipam()
                        .call_configure(&mut *store, &req)
                })?
                .map_err(|e| runtime::plugin_error(&p.name, e.code, &e.msg, &e.details))?
            }
            Pre::V1(pre) => {
                let req = v1::wit_ipam::Request {
                    invocation: inv.to_v1()?,
                    port: port!(v1::wit_ipam),
                    primary,
                };
                let r = self
                    .call(&p.name, |store| {
                        pre.instantiate(&mut *store)?
                            .contrail_cni_plugin_ipam()
                            .call_configure(&mut *store, &req)
                    })?
                    .map_err(|e| runtime::plugin_error(&p.name, e.code, &e.msg, &e.details))?;
                ipam_from_v1(r)
            }
        };
        Ok(Named {
            plugin: p.name.clone(),
            answer,
        })
    }
}
