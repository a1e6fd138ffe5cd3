//! One CNI invocation, end to end: skel → logging → dispatch by `type` → result on stdout.
//!
//! [`Invocation`] (its own module) is what both paths receive:
//! * `"type": "mesos"` (or any config with a `delegate` block) → [`crate::delegate::run`];
//! * `"type": "contrail-cni-plugin"` / `"contrail-k8s-cni"` → [`crate::contrail::run`].
//!
//! Both return `Ok(Some(result))` for ADD (canonical form; skel writes it in the config's
//! `cniVersion`), `Ok(None)` for the other commands, or the CNI error to print.

use std::io::{Read, Write};
use std::time::Instant;

use crate::cni::error::{CniError, INTERNAL, INVALID_CONFIG};
use crate::cni::skel::{self, Env};
use crate::cni::{CniResult, CniVersion, Command};
use crate::invocation::Invocation;

/// Types served by the Contrail path.
pub const CONTRAIL_TYPES: &[&str] = &["contrail-cni-plugin", "contrail-k8s-cni"];
/// The Mesos delegate type (the `mesos` alias of the binary).
pub const MESOS_TYPE: &str = "mesos";

/// Versions the delegate path serves: the delegate gets the network's `cniVersion`, so a version
/// newer than the delegates' is refused by them. The reference plugins (containernetworking
/// plugins 1.1, as Debian ships them) speak up to 1.0.0.
pub const DELEGATE_VERSIONS: &[CniVersion] = &[
    CniVersion::V0_1_0,
    CniVersion::V0_2_0,
    CniVersion::V0_3_0,
    CniVersion::V0_3_1,
    CniVersion::V0_4_0,
    CniVersion::V1_0_0,
];

/// What VERSION answers for the binary run as `invoked_as` (its file name): the `mesos` alias
/// is the delegate path; otherwise every version (the Contrail path writes every result shape
/// itself).
pub fn supported_versions(invoked_as: &str) -> &'static [CniVersion] {
    let name = std::path::Path::new(invoked_as)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name == MESOS_TYPE {
        DELEGATE_VERSIONS
    } else {
        &CniVersion::ALL
    }
}

/// Which path serves a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Contrail,
    Delegate,
    Unsupported,
}

/// Chooses the path by the config's `type`.
pub fn route(conf: &crate::cni::NetConf) -> Route {
    let ty = conf.type_().unwrap_or_default();
    if CONTRAIL_TYPES.contains(&ty) {
        Route::Contrail
    } else if ty == MESOS_TYPE || conf.delegate().is_some() {
        Route::Delegate
    } else {
        Route::Unsupported
    }
}

/// Runs the path the config's `type` chooses. `early` is the delegate started by
/// [`run_cni`] before anything else (the delegate path only).
pub fn dispatch(
    inv: &Invocation,
    early: Option<crate::delegate::Early>,
) -> Result<Option<CniResult>, CniError> {
    match route(&inv.conf) {
        Route::Contrail => crate::contrail::run(inv),
        Route::Delegate => {
            let early = early.unwrap_or_else(|| {
                crate::delegate::Early::start(&inv.conf, &inv.args, inv.command)
            });
            crate::delegate::run(inv, early)
        }
        Route::Unsupported => {
            let ty = inv.conf.type_().unwrap_or_default();
            Err(CniError::new(INVALID_CONFIG, format!("unsupported network type {ty:?}")).with_details(format!(
                "this plugin serves \"{MESOS_TYPE}\" (with a \"delegate\" block) and {CONTRAIL_TYPES:?}"
            )))
        }
    }
}

/// The whole CNI side of `main`: returns the exit code. A panic becomes error 100 on stdout
/// (the runtime must always get JSON it can read). For a process that exits right after: the
/// invocation's loaded plugins are left for the exit to unmap.
///
/// `invoked_as` is the name the binary was run by: as `mesos` it is the delegate path, whose
/// VERSION answers what that path serves with the reference delegates (see
/// [`supported_versions`]).
pub fn run_cni(
    env: &dyn Env,
    invoked_as: &str,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
) -> i32 {
    skel::run(env, stdin, stdout, supported_versions(invoked_as), |req| {
        // The delegate path's delegate is exec'd first: its start-up then runs beside all of
        // what follows (logging, checks, the label translation); it gets its config last.
        let early = (route(&req.conf) == Route::Delegate)
            .then(|| crate::delegate::Early::start(&req.conf, &req.args, req.command));
        crate::logging::init(&req.conf.log_settings());
        // What `config check` would say, once per ADD: the log then names the cause of a
        // failure (or a silent misconfiguration) the CNI error alone cannot. The delegate
        // path logs it while its delegate works (`delegate::cmd_add`).
        if req.command == Command::Add && early.is_none() {
            crate::config_check::log_for_add(&req.conf);
        }
        let started = Instant::now();
        let (command, container) = (req.command, req.args.container_id.clone());
        let network = req.conf.name().unwrap_or_default().to_owned();
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let inv = Invocation::new(req)?;
            let r = dispatch(&inv, early);
            // The process exits right after: its exit unmaps the loaded plugins wholesale,
            // cheaper than wasmtime's piecemeal teardown (0.05-0.1 ms per ADD).
            std::mem::forget(inv);
            r
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
