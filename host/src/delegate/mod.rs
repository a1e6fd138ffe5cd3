//! The Mesos delegate path (`"type": "mesos"` with a `delegate` block). The delegate
//! translator plugin decides what policy may decide (addresses, MAC, labels: [`answer`]); the
//! host applies that to the operator's block, and the delegate binary (the block's `type`,
//! found in `CNI_PATH`, never this host itself) then runs with our environment. Every command applies the same translation, so
//! DEL releases exactly what ADD took.
//!
//! * ADD: a failure after the delegate may have done anything (its own error, a result we
//!   cannot read or cannot write in the config's version) runs the delegate's DEL before
//!   failing (CNI SPEC.md, "Section 4: Plugin Delegation": the upper plugin should execute again with DEL).
//! * DEL: best effort. When translation fails (a bad label: the ADD was refused and created
//!   nothing), the untranslated delegate block still gets a DEL, so IPAM state keyed by
//!   container id is released anyway. `CNI_NETNS` may be absent.
//! * CHECK/STATUS/GC: forwarded with the same translation (plus `prevResult` and the GC
//!   attachment lists, which live outside the delegate block).

pub mod answer;
pub mod exec;

use serde_json::{Map, Value};

use crate::Invocation;
use crate::cni::error::{CniError, DELEGATE_FAILED, INTERNAL, INVALID_CONFIG};
use crate::cni::{CniResult, Command};
use exec::{find_in_path, valid_plugin_name};

/// Keys of a GC request that the delegate must see (libcni sends both spellings).
const GC_KEYS: &[&str] = &["cni.dev/valid-attachments", "cni.dev/attachments"];

/// Entry point from the dispatcher.
pub fn run(inv: &Invocation) -> Result<Option<CniResult>, CniError> {
    match inv.command {
        Command::Add => cmd_add(inv).map(Some),
        Command::Del => cmd_del(inv).map(|()| None),
        Command::Check => cmd_check(inv).map(|()| None),
        Command::Status => forward(inv, Command::Status).map(|()| None),
        Command::Gc => forward(inv, Command::Gc).map(|()| None),
        Command::Version => Err(CniError::new(INTERNAL, "VERSION is answered by skel")),
    }
}

fn delegate_block(inv: &Invocation) -> Result<&Map<String, Value>, CniError> {
    delegate_block_of(&inv.conf)
}

/// The `delegate` block, which must be an object with a plain-name `type` (also run by
/// `crate::config_check`).
pub fn delegate_block_of(conf: &crate::cni::NetConf) -> Result<&Map<String, Value>, CniError> {
    let block = conf
        .delegate()
        .ok_or_else(|| CniError::new(INVALID_CONFIG, "network config: missing \"delegate\" block"))?
        .as_object()
        .ok_or_else(|| {
            CniError::new(
                INVALID_CONFIG,
                "network config: \"delegate\" must be an object",
            )
        })?;
    match block.get("type").and_then(Value::as_str) {
        Some(t) if valid_plugin_name(t) => Ok(block),
        Some(t) => Err(CniError::new(
            INVALID_CONFIG,
            format!("delegate.type {t:?} is not a plugin name"),
        )),
        None => Err(CniError::new(INVALID_CONFIG, "delegate: missing \"type\"")),
    }
}

/// The delegate's config: the operator's block with the translator's decision applied
/// ([`answer`]). The translator never chooses the binary: `type` is the block's.
fn translate(inv: &Invocation) -> Result<Map<String, Value>, CniError> {
    let block = delegate_block(inv)?;
    let labels = inv.conf.mesos_labels()?;
    let reply = inv.plugins.translate_delegate(
        &inv.record(),
        &labels,
        &Value::Object(block.clone()),
        inv.conf.ignore_unknown()?,
    )?;
    let empty = Map::new();
    let outer = inv.conf.raw().as_object().unwrap_or(&empty);
    let mut conf = answer::delegate_config(outer, block, reply, inv.plugins.settings())?;
    carry_over(inv, &mut conf);
    Ok(conf)
}

/// What lives outside the delegate block but a delegate must see: `prevResult` (CHECK/DEL,
/// converted to the delegate's version) and the GC attachment lists. Only added when the
/// translator did not set them.
fn carry_over(inv: &Invocation, conf: &mut Map<String, Value>) {
    if !conf.contains_key("prevResult")
        && let Some(prev) = inv.conf.get("prevResult").filter(|v| !v.is_null())
    {
        let dv = conf
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or(crate::cni::version::DEFAULT_VERSION);
        let converted = crate::cni::CniVersion::parse(dv).ok().and_then(|v| {
            CniResult::decode(prev)
                .ok()
                .and_then(|(r, _)| r.encode(v).ok())
        });
        conf.insert(
            "prevResult".into(),
            converted.unwrap_or_else(|| prev.clone()),
        );
    }
    if inv.command == Command::Gc {
        for k in GC_KEYS {
            if !conf.contains_key(*k)
                && let Some(v) = inv.conf.get(k)
            {
                conf.insert((*k).into(), v.clone());
            }
        }
    }
}

/// The delegate block with `name`/`cniVersion` carried over, untranslated: used for DEL when
/// the translation itself fails.
fn untranslated(inv: &Invocation) -> Result<Map<String, Value>, CniError> {
    let mut conf = delegate_block(inv)?.clone();
    if let Some(name) = inv.conf.get("name") {
        conf.insert("name".into(), name.clone());
    }
    if !conf.contains_key("cniVersion") {
        conf.insert(
            "cniVersion".into(),
            Value::String(inv.conf.cni_version().to_owned()),
        );
    }
    Ok(conf)
}

fn run_delegate(
    inv: &Invocation,
    command: Command,
    conf: &Map<String, Value>,
) -> Result<exec::Output, CniError> {
    let ty = conf.get("type").and_then(Value::as_str).unwrap_or_default();
    let binary = find_in_path(ty, &inv.args.path)?;
    run_delegate_at(inv, &binary, command, conf)
}

/// [`run_delegate`] with the binary already looked up.
fn run_delegate_at(
    inv: &Invocation,
    binary: &std::path::Path,
    command: Command,
    conf: &Map<String, Value>,
) -> Result<exec::Output, CniError> {
    let stdin = serde_json::to_vec(conf).map_err(|e| {
        CniError::new(
            INTERNAL,
            format!("cannot encode the delegate's config: {e}"),
        )
    })?;
    tracing::debug!(command = command.as_str(), delegate = %binary.display(), config = %String::from_utf8_lossy(&stdin), "running delegate");
    exec::exec(binary, command, &inv.args.environ, &stdin)
}

/// ADD: translate, run the delegate, read its result, make sure it can be written in the
/// config's version; roll back with the delegate's DEL if anything after the exec fails.
pub fn cmd_add(inv: &Invocation) -> Result<CniResult, CniError> {
    let conf = translate(inv)?;
    let ty = conf
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    // Looked up before anything runs: a missing binary has created nothing to roll back.
    let binary = find_in_path(&ty, &inv.args.path)?;
    let outcome = run_delegate_at(inv, &binary, Command::Add, &conf).and_then(|out| {
        let (result, _) = CniResult::parse(&out.stdout).map_err(|e| {
            CniError::new(
                DELEGATE_FAILED,
                format!(
                    "delegate plugin {ty} returned an unreadable result: {}",
                    e.msg
                ),
            )
            .with_details(
                String::from_utf8_lossy(&out.stdout)
                    .chars()
                    .take(4096)
                    .collect::<String>(),
            )
        })?;
        result.encode(inv.version)?;
        Ok(result)
    });
    match outcome {
        Ok(r) => Ok(r),
        Err(e) => {
            tracing::warn!(delegate = %ty, code = e.code, "ADD failed ({}); running the delegate's DEL", e.msg);
            if let Err(de) = run_delegate_at(inv, &binary, Command::Del, &conf) {
                tracing::error!(delegate = %ty, "rollback DEL failed: {} {}", de.msg, de.details);
            }
            Err(e)
        }
    }
}

/// DEL: same translation; if it fails, DEL with the untranslated block. A config that cannot
/// name a delegate at all could not have created anything, so it is a success.
pub fn cmd_del(inv: &Invocation) -> Result<(), CniError> {
    let conf = match translate(inv) {
        Ok(c) => c,
        Err(e) => match untranslated(inv) {
            Ok(c) => {
                tracing::warn!(
                    code = e.code,
                    "DEL: label translation failed ({}); deleting with the untranslated delegate config",
                    e.msg
                );
                c
            }
            Err(ce) => {
                tracing::warn!(
                    "DEL: nothing to delete, the config names no usable delegate ({})",
                    ce.msg
                );
                return Ok(());
            }
        },
    };
    run_delegate(inv, Command::Del, &conf).map(drop)
}

/// CHECK: forwarded (with `prevResult`).
pub fn cmd_check(inv: &Invocation) -> Result<(), CniError> {
    forward(inv, Command::Check)
}

fn forward(inv: &Invocation, command: Command) -> Result<(), CniError> {
    let conf = translate(inv)?;
    run_delegate(inv, command, &conf).map(drop)
}
