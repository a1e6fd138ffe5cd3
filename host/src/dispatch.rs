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

use std::path::Path;

use crate::cni::error::{CniError, INTERNAL, INVALID_CONFIG, INVALID_ENV};
use crate::cni::skel::{self, Env};
use crate::cni::{CniResult, CniVersion, Command};
use crate::invocation::Invocation;
use crate::net::{NetError, NetNs};

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

/// Chooses the path by the config's `type`.
pub fn dispatch(inv: &Invocation) -> Result<Option<CniResult>, CniError> {
    let ty = inv.conf.type_().unwrap_or_default();
    if CONTRAIL_TYPES.contains(&ty) {
        crate::contrail::run(inv)
    } else if ty == MESOS_TYPE || inv.conf.delegate().is_some() {
        if inv.command == Command::Add {
            container_side_is_free(inv)?;
        }
        crate::delegate::run(inv)
    } else {
        Err(CniError::new(INVALID_CONFIG, format!("unsupported network type {ty:?}")).with_details(format!(
            "this plugin serves \"{MESOS_TYPE}\" (with a \"delegate\" block) and {CONTRAIL_TYPES:?}"
        )))
    }
}

/// ADD on the delegate path, before the delegate runs: `CNI_NETNS` must be a network namespace
/// (the bridge plugin, for one, creates its bridge in the node's namespace before it opens the
/// container's), and `CNI_IFNAME` must not exist there yet. A repeated ADD is refused here, so
/// the DEL that rolls back a failed delegate ADD can never tear down the runtime's existing
/// interface and free its address.
fn container_side_is_free(inv: &Invocation) -> Result<(), CniError> {
    let netns = inv
        .args
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(INVALID_ENV, "CNI_NETNS is required for ADD"))?;
    if NetNs::open(Path::new(netns))?.has_link(&inv.args.ifname)? {
        return Err(NetError::IfnameExists {
            name: inv.args.ifname.clone(),
        }
        .into());
    }
    Ok(())
}

/// The whole CNI side of `main`: returns the exit code. A panic becomes error 100 on stdout
/// (the runtime must always get JSON it can read).
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
        crate::logging::init(&req.conf.log_settings());
        // What `config check` would say, once per ADD: the log then names the cause of a
        // failure (or a silent misconfiguration) the CNI error alone cannot.
        if req.command == Command::Add {
            crate::config_check::log_for_add(&req.conf);
        }
        let started = Instant::now();
        let (command, container) = (req.command, req.args.container_id.clone());
        let network = req.conf.name().unwrap_or_default().to_owned();
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
