//! One CNI invocation, end to end: skel → logging → dispatch by `type` → result on stdout.
//!
//! [`Invocation`] is what both paths receive:
//! * `"type": "mesos"` (or any config with a `delegate` block) → [`crate::delegate::run`];
//! * `"type": "contrail-cni-plugin"` / `"contrail-k8s-cni"` → [`crate::contrail::run`].
//!
//! Both return `Ok(Some(result))` for ADD (canonical form; skel writes it in the config's
//! `cniVersion`), `Ok(None)` for the other commands, or the CNI error to print.

use std::io::{Read, Write};
use std::time::Instant;

use crate::cni::error::{CniError, INTERNAL, INVALID_CONFIG};
use crate::cni::skel::{self, Env, Request};
use crate::cni::{CmdArgs, CniResult, CniVersion, Command, NetConf};
use crate::wasm::{InvocationRecord, Plugins};

/// A validated invocation and the plugins it may use (loaded on first use).
pub struct Invocation {
    pub command: Command,
    pub args: CmdArgs,
    pub conf: NetConf,
    /// The config's `cniVersion`, parsed (results are written in it).
    pub version: CniVersion,
    pub plugins: Plugins,
}

impl Invocation {
    /// Builds the invocation from a skel request; a bad `wasm` section is error 7.
    pub fn new(req: Request) -> Result<Self, CniError> {
        let plugins = Plugins::new(req.conf.wasm()?, &req.args.container_id);
        Ok(Invocation {
            command: req.command,
            args: req.args,
            conf: req.conf,
            version: req.version,
            plugins,
        })
    }

    /// The WIT `invocation` record handed to plugins.
    pub fn record(&self) -> InvocationRecord {
        InvocationRecord {
            command: self.command,
            container_id: self.args.container_id.clone(),
            ifname: self.args.ifname.clone(),
            netns: self.args.netns.clone(),
            network_name: self
                .conf
                .name()
                .ok()
                .flatten()
                .unwrap_or_default()
                .to_owned(),
            cni_version: self.conf.cni_version().to_owned(),
            config: self.conf.text().to_owned(),
        }
    }
}

/// Types served by the Contrail path.
pub const CONTRAIL_TYPES: &[&str] = &["contrail-cni-plugin", "contrail-k8s-cni"];
/// The Mesos delegate type (the `mesos` alias of the binary).
pub const MESOS_TYPE: &str = "mesos";

/// Chooses the path by the config's `type`.
pub fn dispatch(inv: &Invocation) -> Result<Option<CniResult>, CniError> {
    let ty = inv.conf.type_()?.unwrap_or_default();
    if CONTRAIL_TYPES.contains(&ty) {
        crate::contrail::run(inv)
    } else if ty == MESOS_TYPE || inv.conf.delegate().is_some() {
        crate::delegate::run(inv)
    } else {
        Err(CniError::new(INVALID_CONFIG, format!("unsupported network type {ty:?}")).with_details(format!(
            "this plugin serves \"{MESOS_TYPE}\" (with a \"delegate\" block) and {CONTRAIL_TYPES:?}"
        )))
    }
}

/// The whole CNI side of `main`: returns the exit code. A panic becomes error 100 on stdout
/// (the runtime must always get JSON it can read).
pub fn run_cni(env: &dyn Env, stdin: &mut dyn Read, stdout: &mut dyn Write) -> i32 {
    skel::run(env, stdin, stdout, |req| {
        crate::logging::init(&req.conf.log_settings());
        let started = Instant::now();
        let (command, container) = (req.command, req.args.container_id.clone());
        let network = req
            .conf
            .name()
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_owned();
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let inv = Invocation::new(req)?;
            dispatch(&inv)
        }))
        .unwrap_or_else(|p| {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(CniError::new(INTERNAL, "internal error (panic)").with_details(what))
        });
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match &out {
            Ok(_) => {
                tracing::info!(command = command.as_str(), container = %container, network = %network, ms, "done")
            }
            Err(e) => {
                tracing::error!(command = command.as_str(), container = %container, network = %network, ms, code = e.code, details = %e.details, "{}", e.msg)
            }
        }
        out
    })
}
