//! What ADD reads from disk: the Wasm plugin files (and the `wasm` section's values), the log
//! file's directory and the log level.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Problem;
use crate::cni::NetConf;
use crate::wasm::{Plugins, World, cache};

pub(super) fn wasm_section(conf: &NetConf, worlds: &[World], out: &mut Vec<Problem>) {
    for k in conf.wasm_unknown_keys() {
        out.push(Problem::warning(
            format!("wasm.{k}"),
            "unknown key, ignored",
        ));
    }
    let settings = match conf.wasm() {
        Ok(s) => s,
        Err(e) => {
            out.push(super::from_parse(&e, "wasm"));
            return;
        }
    };
    if settings.allow_insecure_permissions {
        out.push(Problem::warning(
            "wasm.allow-insecure-permissions",
            "true: whoever can write the plugin files (or their directory) decides this \
             node's networking",
        ));
    }
    let plugins = Plugins::new(settings.clone(), "config-check");
    for &w in worlds {
        let path = plugins.path(w);
        let own = match w {
            World::DelegateTranslator => settings.delegate_translator.as_ref(),
            World::ContrailTranslator => settings.contrail_translator.as_ref(),
            World::IpamPlugin => settings.ipam.as_ref(),
        };
        let key = if own.is_some() {
            format!(
                "wasm.{}",
                match w {
                    World::DelegateTranslator => "delegate-translator",
                    World::ContrailTranslator => "contrail-translator",
                    World::IpamPlugin => "ipam",
                }
            )
        } else if w != World::IpamPlugin && settings.translator.is_some() {
            "wasm.translator".to_owned()
        } else {
            "wasm.plugin-dir".to_owned()
        };
        match std::fs::metadata(&path) {
            Err(e) => out.push(Problem::error(
                key,
                format!(
                    "the {} plugin {}: {e}: install the plugins (make install puts them in \
                     contrail-cni-wasm/ beside the binary) or point wasm.plugin-dir at them",
                    w.name(),
                    path.display()
                ),
            )),
            Ok(m) if !m.is_file() => out.push(Problem::error(
                key,
                format!("the {} plugin {} is not a file", w.name(), path.display()),
            )),
            Ok(m) => {
                if !settings.allow_insecure_permissions
                    && let Some(why) = cache::insecure_permissions(&path, &m)
                {
                    out.push(Problem::error(
                        key,
                        format!(
                            "{why}: ADD refuses to load it; make it root's and not writable by \
                             group or others"
                        ),
                    ));
                }
            }
        }
    }
}

/// The top-level keys win over the `contrail` section's (see `NetConf::log_settings`).
pub(super) fn log_settings(conf: &NetConf, out: &mut Vec<Problem>) {
    log_counts(conf, out);
    let top = |k: &str| conf.get(k).filter(|v| !v.is_null());
    let section = |k: &str| {
        conf.get("contrail")
            .and_then(|c| c.get(k))
            .filter(|v| !v.is_null())
    };
    let which = |k: &str| -> Option<(String, &Value)> {
        top(k)
            .map(|v| (k.to_owned(), v))
            .or_else(|| section(k).map(|v| (format!("contrail.{k}"), v)))
    };
    if let Some((key, v)) = which("log-file") {
        match v.as_str() {
            None => out.push(Problem::warning(
                key,
                format!("expected a path, got {v}: ignored, logs go to stderr"),
            )),
            Some(p) if !p.is_empty() => log_file(&key, Path::new(p), out),
            Some(_) => {}
        }
    }
    if let Some((key, v)) = which("log-level") {
        match v.as_str() {
            Some(l) if crate::logging::parse_level(l).is_some() => {}
            _ => out.push(Problem::warning(
                key,
                format!("{v} is not one of trace, debug, info, warn, error, off: logging at warn"),
            )),
        }
    }
}

/// `log-max-bytes` / `log-keep`: a count, else the default applies.
fn log_counts(conf: &NetConf, out: &mut Vec<Problem>) {
    for (k, default) in [
        ("log-max-bytes", crate::logging::DEFAULT_MAX_BYTES),
        ("log-keep", u64::from(crate::logging::DEFAULT_KEEP)),
    ] {
        let found = conf
            .get(k)
            .filter(|v| !v.is_null())
            .map(|v| (k.to_owned(), v))
            .or_else(|| {
                conf.get("contrail")
                    .and_then(|c| c.get(k))
                    .filter(|v| !v.is_null())
                    .map(|v| (format!("contrail.{k}"), v))
            });
        if let Some((key, v)) = found
            && crate::cni::config::log_count(v).is_none()
        {
            out.push(Problem::warning(
                key,
                format!("expected a non-negative integer, got {v}: using {default}"),
            ));
        }
    }
}

/// The logger creates a missing directory; whether it can is what matters.
fn log_file(key: &str, path: &Path, out: &mut Vec<Problem>) {
    if path.is_relative() {
        out.push(Problem::warning(
            key,
            format!(
                "{} is relative: it lands in whatever directory the runtime runs the plugin \
                 from; use an absolute path",
                path.display()
            ),
        ));
        return;
    }
    if path.is_dir() {
        out.push(Problem::warning(
            key,
            format!(
                "{} is a directory: logs go to stderr, which the Mesos agent does not keep",
                path.display()
            ),
        ));
        return;
    }
    let Some(dir) = path.parent() else { return };
    if dir.is_dir() {
        return;
    }
    // The nearest ancestor that exists decides whether the directory can be created.
    let mut existing: PathBuf = dir.to_path_buf();
    while !existing.exists() {
        match existing.parent() {
            Some(p) => existing = p.to_path_buf(),
            None => break,
        }
    }
    let creatable =
        existing.is_dir() && nix::unistd::access(&existing, nix::unistd::AccessFlags::W_OK).is_ok();
    let msg = if creatable {
        format!(
            "directory {} does not exist: ADD creates it; create it now if a log collector \
             watches it",
            dir.display()
        )
    } else {
        format!(
            "directory {} does not exist and cannot be created ({} is not a writable \
             directory): logs go to stderr, which the Mesos agent does not keep",
            dir.display(),
            existing.display()
        )
    };
    out.push(Problem::warning(key, msg));
}
