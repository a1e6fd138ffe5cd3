//! The Mesos delegate path (`"type": "mesos"` with a `delegate` block). The delegate
//! translator plugin decides what policy may decide (addresses, MAC, labels: [`answer`]); the
//! host applies that to the operator's block, and the delegate binary (the block's `type`,
//! found in `CNI_PATH`, never this host itself) then runs with our environment. Every command applies the same translation, so
//! DEL releases exactly what ADD took.
//!
//! * The delegate binary is the block's `type`, whatever the translator says, so it is known
//!   before the translation: [`Early`] execs it first thing and hands it its config once the
//!   checks and the translation are done. Its loader and runtime start-up (about a
//!   millisecond for a Go plugin) then overlap ours. A call refused before that kills it
//!   config-less: a CNI plugin acts on its config, so it has done nothing.
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

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::Invocation;
use crate::cni::error::{CniError, DELEGATE_FAILED, INTERNAL, INVALID_CONFIG, INVALID_ENV};
use crate::cni::{CniResult, Command};
use crate::net::{NetError, NetNs};
use exec::{find_in_path, valid_plugin_name};

/// Keys of a GC request that the delegate must see (libcni sends both spellings).
const GC_KEYS: &[&str] = &["cni.dev/valid-attachments", "cni.dev/attachments"];

/// Entry point from the dispatcher.
pub fn run(inv: &Invocation, early: Early) -> Result<Option<CniResult>, CniError> {
    match inv.command {
        Command::Add => cmd_add(inv, early).map(Some),
        Command::Del => cmd_del(inv, early).map(|()| None),
        Command::Check => forward(inv, early).map(|()| None),
        Command::Status => forward(inv, early).map(|()| None),
        Command::Gc => forward(inv, early).map(|()| None),
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

/// The block's delegate, looked up and started for the invocation's command before its
/// config is known (see [`exec::Started`]): its exec and start-up then overlap the checks and
/// the translation, which never chooses the binary. Any failure is kept for the command to
/// report in its turn.
pub struct Early(Result<(String, PathBuf, exec::Started), CniError>);

impl Early {
    pub fn start(conf: &crate::cni::NetConf, args: &crate::cni::CmdArgs, command: Command) -> Self {
        Early((|| {
            let block = delegate_block_of(conf)?;
            let ty = block
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let binary = find_in_path(&ty, &args.path)?;
            let started = exec::start(&binary, command, &args.environ)?;
            Ok((ty, binary, started))
        })())
    }
}

/// Hands a started delegate its config and waits for its answer.
fn feed(
    started: exec::Started,
    command: Command,
    conf: &Map<String, Value>,
) -> Result<exec::Output, CniError> {
    feed_with(started, command, conf, &mut || {})
}

/// [`feed`], running `meanwhile` while the delegate works.
fn feed_with(
    started: exec::Started,
    command: Command,
    conf: &Map<String, Value>,
    meanwhile: &mut dyn FnMut(),
) -> Result<exec::Output, CniError> {
    let stdin = serde_json::to_vec(conf).map_err(|e| {
        CniError::new(
            INTERNAL,
            format!("cannot encode the delegate's config: {e}"),
        )
    })?;
    tracing::debug!(command = command.as_str(), delegate = started.name(), config = %String::from_utf8_lossy(&stdin), "running delegate");
    started.finish_with(&stdin, meanwhile)
}

/// ADD on the delegate path, before the delegate is given anything: `CNI_NETNS` must be a
/// network namespace (the bridge plugin, for one, creates its bridge in the node's namespace
/// before it opens the container's), and `CNI_IFNAME` must not exist there yet. A repeated
/// ADD is refused here, so the DEL that rolls back a failed delegate ADD can never tear down
/// the runtime's existing interface and free its address.
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

/// ADD: check the container side, start the delegate, translate, hand it the config, read
/// its result, make sure it can be written in the config's version; roll back with the
/// delegate's DEL if anything after it got its config fails. A failure before that kills
/// the waiting delegate, which has done nothing.
///
/// What `config check` would say of the config is logged once per ADD (the log then names
/// the cause of a failure, or a silent misconfiguration, that the CNI error alone cannot):
/// while the delegate works on its config, or before failing if it never got it.
pub fn cmd_add(inv: &Invocation, early: Early) -> Result<CniResult, CniError> {
    let mut checked = false;
    let r = add(inv, early, &mut || {
        crate::config_check::log_for_add(&inv.conf);
        checked = true;
    });
    if !checked {
        crate::config_check::log_for_add(&inv.conf);
    }
    r
}

fn add(
    inv: &Invocation,
    early: Early,
    log_config: &mut dyn FnMut(),
) -> Result<CniResult, CniError> {
    container_side_is_free(inv)?;
    // Looked up and started first (`Early`): a missing binary has created nothing to roll back.
    let (ty, binary, started) = early.0?;
    let conf = translate(inv)?;
    let outcome = feed_with(started, Command::Add, &conf, log_config).and_then(|out| {
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
            let undo = exec::start(&binary, Command::Del, &inv.args.environ)
                .and_then(|s| feed(s, Command::Del, &conf));
            if let Err(de) = undo {
                tracing::error!(delegate = %ty, "rollback DEL failed: {} {}", de.msg, de.details);
            }
            Err(e)
        }
    }
}

/// DEL: same translation; if it fails, DEL with the untranslated block. A config that cannot
/// name a delegate at all could not have created anything, so it is a success.
pub fn cmd_del(inv: &Invocation, early: Early) -> Result<(), CniError> {
    if let Err(ce) = delegate_block(inv) {
        tracing::warn!(
            "DEL: nothing to delete, the config names no usable delegate ({})",
            ce.msg
        );
        return Ok(());
    }
    let (_, _, started) = early.0?;
    let conf = match translate(inv) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                code = e.code,
                "DEL: label translation failed ({}); deleting with the untranslated delegate config",
                e.msg
            );
            untranslated(inv)?
        }
    };
    feed(started, Command::Del, &conf).map(drop)
}

/// CHECK (with `prevResult`), STATUS and GC: forwarded with the same translation.
fn forward(inv: &Invocation, early: Early) -> Result<(), CniError> {
    let (_, _, started) = early.0?;
    let conf = translate(inv)?;
    feed(started, inv.command, &conf).map(drop)
}
