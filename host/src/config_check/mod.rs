//! Configuration checks an operator can act on: `contrail-cni-plugin config check FILE`, and the
//! same findings logged on every ADD (to the configured log file, never stdout).
//!
//! Everything is decoded by the parsers ADD itself uses ([`NetConf`], the `contrail` section's
//! [`Section`]/[`ContrailConfig`], the `wasm` section, the delegate block); this module only
//! judges what they decoded. It reads nothing but file metadata (plugin files, the log
//! directory) and the token file ADD reads anyway, so it is cheap enough for every ADD.
//!
//! `contrail.rs` judges the `contrail` section, `files.rs` what ADD reads from disk (plugins, log).
//!
//! [`Section`]: crate::contrail::config::Section
//! [`ContrailConfig`]: crate::contrail::config::ContrailConfig

mod contrail;
mod files;

use serde_json::Value;

use crate::cni::{CniError, CniVersion, NetConf};
use crate::dispatch::{CONTRAIL_TYPES, DELEGATE_VERSIONS, MESOS_TYPE};
use crate::wasm::World;

pub use contrail_mesos_api::config_problem::{Problem, Severity};

/// A parser's error (`contrail.mesos-port: expected ...`, `wasm.max-ips must be ...`) as a
/// problem of the key it names, else of `fallback`.
fn from_parse(e: &CniError, fallback: &str) -> Problem {
    let msg = e.msg.as_str();
    let end = msg
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        .unwrap_or(msg.len());
    let (key, rest) = msg.split_at(end);
    let rest = rest.trim_start_matches(':').trim_start();
    if key.starts_with(fallback) && !rest.is_empty() {
        Problem::error(key, rest)
    } else {
        Problem::error(fallback, msg)
    }
}

/// Who runs the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// A config file on its own: a `contrail-cni-plugin` network without `mode: k8s`, or a
    /// `mesos` delegate network, is taken to be run by the Mesos agent.
    File,
    /// An ADD with Mesos' `args."org.apache.mesos"` injected.
    Mesos,
    /// An ADD from another runtime (kubelet, cnitool), or a plugin inside a `.conflist`.
    Other,
}

/// Checks a config file's bytes: a network config, or a `.conflist` (each of its plugins served
/// by this binary checked as libcni hands it over: with the list's `name` and `cniVersion`).
pub fn check_file(bytes: &[u8]) -> Vec<Problem> {
    let conf = match NetConf::parse(bytes) {
        Ok(c) => c,
        Err(e) => return vec![Problem::error("config", e.msg)],
    };
    match conf.get("plugins") {
        Some(Value::Array(list)) => check_list(&conf, list),
        Some(v) => vec![Problem::error(
            "plugins",
            format!("expected a list of plugin configs, got {v}"),
        )],
        None => check(&conf, Runtime::File),
    }
}

/// Checks one network config as ADD will read it.
pub fn check(conf: &NetConf, runtime: Runtime) -> Vec<Problem> {
    let mut out = vec![];
    common(conf, &mut out);
    plugin(conf, runtime, &mut out);
    out
}

/// ADD: the problems of its config, logged once (errors at error, the rest at warn). The
/// messages are those `config check` prints.
pub fn log_for_add(conf: &NetConf) {
    let runtime = match conf.mesos_network_info() {
        Ok(Some(_)) => Runtime::Mesos,
        _ => Runtime::Other,
    };
    for p in check(conf, runtime) {
        match p.severity {
            Severity::Error => tracing::error!("{p}"),
            Severity::Warning => tracing::warn!("{p}"),
        }
    }
}

fn check_list(list: &NetConf, plugins: &[Value]) -> Vec<Problem> {
    let mut out = vec![Problem::warning(
        "plugins",
        "a .conflist (plugin chain): Mesos' network/cni isolator reads one plugin per file \
         (with a top-level \"type\"); only a runtime that reads conflists (kubelet, cnitool) \
         can use it. For Mesos write a .conf",
    )];
    common(list, &mut out);
    if plugins.is_empty() {
        out.push(Problem::error(
            "plugins",
            "empty: a list needs at least one plugin",
        ));
    }
    let mut ours = 0;
    for (i, p) in plugins.iter().enumerate() {
        let at = format!("plugins[{i}]");
        let Some(obj) = p.as_object() else {
            out.push(Problem::error(at, format!("expected an object, got {p}")));
            continue;
        };
        let ty = obj.get("type").and_then(Value::as_str).unwrap_or_default();
        if !(CONTRAIL_TYPES.contains(&ty) || ty == MESOS_TYPE) {
            continue; // another binary's plugin
        }
        ours += 1;
        // libcni's buildOneConfig: each plugin gets the list's name and cniVersion.
        let mut obj = obj.clone();
        for k in ["name", "cniVersion"] {
            if let Some(v) = list.get(k) {
                obj.insert(k.into(), v.clone());
            }
        }
        match NetConf::from_value(Value::Object(obj)) {
            Err(e) => out.push(Problem::error(at, e.msg)),
            Ok(c) => {
                let mut found = vec![];
                plugin(&c, Runtime::Other, &mut found);
                out.extend(found.into_iter().map(|mut p| {
                    p.key = format!("{at}.{}", p.key);
                    p
                }));
            }
        }
    }
    if ours == 0 && !plugins.is_empty() {
        out.push(Problem::warning(
            "plugins",
            format!(
                "no plugin of type {MESOS_TYPE:?} or {CONTRAIL_TYPES:?}: nothing here runs contrail-cni-plugin"
            ),
        ));
    }
    out
}

/// `name` and `cniVersion` (a `.conflist` has them once, for all its plugins).
fn common(conf: &NetConf, out: &mut Vec<Problem>) {
    match conf.name() {
        None | Some("") => out.push(Problem::error(
            "name",
            "missing: every network needs a name (Marathon's networks[].name refers to it)",
        )),
        Some(n) if !crate::cni::config::valid_network_name(n) => out.push(Problem::error(
            "name",
            format!(
                "{n:?} does not match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$ (CNI SPEC.md, network \
                 configuration): runtimes use it as a directory name; use letters, digits, \
                 '_', '.' and '-', starting with a letter or digit"
            ),
        )),
        Some(_) => {}
    }
    if let Err(e) = conf.version() {
        out.push(Problem::error("cniVersion", e.msg));
    }
}

/// What the plugin of `conf`'s type reads.
fn plugin(conf: &NetConf, runtime: Runtime, out: &mut Vec<Problem>) {
    let ty = conf.type_().unwrap_or_default();
    let contrail = CONTRAIL_TYPES.contains(&ty);
    let delegate = !contrail && (ty == MESOS_TYPE || conf.delegate().is_some());
    if ty.is_empty() {
        out.push(Problem::error(
            "type",
            format!(
                "missing: set \"type\": \"contrail-cni-plugin\" (Contrail networks) or \
                 {MESOS_TYPE:?} (a delegate block)"
            ),
        ));
    } else if !contrail && !delegate {
        out.push(Problem::error(
            "type",
            format!(
                "{ty:?} is not served by this plugin: it serves {MESOS_TYPE:?} (with a \
                 \"delegate\" block) and {CONTRAIL_TYPES:?}"
            ),
        ));
    }
    if let Err(e) = conf.ignore_unknown() {
        out.push(from_parse(&e, "ignoreUnknown"));
    }
    if let Err(e) = conf.mesos_network_info() {
        out.push(from_parse(&e, "args"));
    }
    let mut worlds = vec![];
    let mut mesos_run = runtime == Runtime::Mesos || (runtime == Runtime::File && delegate);
    if contrail {
        let c = contrail::section(conf, ty, runtime, out);
        mesos_run |= c.mesos_run;
        if c.registers {
            worlds.push(World::ContrailTranslator);
        }
        worlds.push(World::IpamPlugin);
    } else if delegate {
        delegate_block(conf, out);
        worlds.push(World::DelegateTranslator);
    }
    if mesos_run {
        result_version(conf, out);
    }
    files::wasm_section(conf, &worlds, out);
    files::log_settings(conf, out);
}

/// Mesos' `network/cni` isolator decodes the plugin's result with its own 0.2.0-era schema
/// (Mesos' `isolators/network/cni/spec.proto`: `NetworkInfo` has `ip4`, `ip6` and `dns`), so a
/// newer result (`ips`, `interfaces`) decodes to a container without an address.
fn result_version(conf: &NetConf, out: &mut Vec<Problem>) {
    let Ok(v) = conf.version() else { return };
    if matches!(v, CniVersion::V0_1_0 | CniVersion::V0_2_0) {
        return;
    }
    out.push(Problem::warning(
        "cniVersion",
        format!(
            "{}: the result is written in this version, and from 0.3.0 on it carries \"ips\" \
             instead of \"ip4\"/\"ip6\", the only form Mesos' network/cni isolator reads: \
             Mesos records no IP for the task, Marathon reports none, and the manager cannot \
             join tasks to their attachments by IP. Set \"cniVersion\": \"0.2.0\" for a \
             network the Mesos agent runs",
            v.as_str()
        ),
    ));
}

fn delegate_block(conf: &NetConf, out: &mut Vec<Problem>) {
    let Some(block) = conf.delegate() else {
        out.push(Problem::error(
            "delegate",
            "missing: a \"mesos\" network names the plugin to run in a \"delegate\" block, e.g. \
             {\"type\": \"bridge\", \"ipam\": {...}}",
        ));
        return;
    };
    match crate::delegate::delegate_block_of(conf) {
        Err(e) if block.is_object() => out.push(Problem::error(
            "delegate.type",
            format!(
                "{}: set \"type\" to the delegate plugin's binary name in the CNI bin dir \
                 (e.g. \"bridge\")",
                e.msg
            ),
        )),
        Err(_) => out.push(Problem::error(
            "delegate",
            format!(
                "expected an object (the delegate plugin's own config, e.g. {{\"type\": \
                 \"bridge\", ...}}), got {block}"
            ),
        )),
        Ok(b) => {
            let ty = b.get("type").and_then(Value::as_str).unwrap_or_default();
            if ty == MESOS_TYPE || CONTRAIL_TYPES.contains(&ty) {
                out.push(Problem::error(
                    "delegate.type",
                    format!("{ty:?} is this plugin itself: name the plugin to delegate to"),
                ));
            }
        }
    }
    if let Ok(v) = conf.version()
        && !DELEGATE_VERSIONS.contains(&v)
    {
        out.push(Problem::error(
            "cniVersion",
            format!(
                "{}: the delegate path serves {}",
                v.as_str(),
                DELEGATE_VERSIONS
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::contrail::{is_host, loopback_url};
    use super::*;
    use crate::cni::error::INVALID_CONFIG;

    #[test]
    fn parse_errors_keep_the_key_they_name() {
        let p = from_parse(
            &CniError::new(
                INVALID_CONFIG,
                "contrail.mesos-port: expected a port number",
            ),
            "contrail",
        );
        assert_eq!(
            (p.key.as_str(), p.msg.as_str()),
            ("contrail.mesos-port", "expected a port number")
        );
        let p = from_parse(
            &CniError::new(
                INVALID_CONFIG,
                "wasm.max-ips must be an integer from 1 to 1024",
            ),
            "wasm",
        );
        assert_eq!(p.key, "wasm.max-ips");
        assert_eq!(p.msg, "must be an integer from 1 to 1024");
        // A message that names no key of the section stays whole.
        let p = from_parse(&CniError::new(INVALID_CONFIG, "args: bad"), "wasm");
        assert_eq!((p.key.as_str(), p.msg.as_str()), ("wasm", "args: bad"));
        assert_eq!(
            p.to_string(),
            "error: wasm: args: bad",
            "the line format operators grep for"
        );
    }

    #[test]
    fn hosts_and_loopback_urls() {
        for ok in [
            "10.0.0.5",
            "fd00::1",
            "[fd00::1]",
            "agent-1",
            "a.b-c.example",
        ] {
            assert!(is_host(ok), "{ok}");
        }
        for bad in ["<slave-ip>", "", "a..b", "-a", "a b", "host_name"] {
            assert!(!is_host(bad), "{bad}");
        }
        assert!(loopback_url("http://127.0.0.1:6991"));
        assert!(loopback_url("http://[::1]:6991"));
        assert!(loopback_url("http://localhost:6991"));
        assert!(!loopback_url("http://10.0.0.1:6991"));
    }

    #[test]
    fn the_runtime_decides_the_mesos_only_findings() {
        let conf = NetConf::from_value(serde_json::json!({
            "cniVersion": "1.0.0", "name": "n", "type": "contrail-cni-plugin",
            "contrail": {"vrouter-ip": "10.0.0.5", "vrouter-port": 9091}}))
        .unwrap();
        let keys = |r| -> Vec<String> {
            check(&conf, r)
                .into_iter()
                // The plugins are not installed beside the test binary.
                .filter(|p| p.key != "wasm.plugin-dir")
                .map(|p| p.key)
                .collect()
        };
        // kubelet (or cnitool) running it: no Mesos result or label concerns.
        assert_eq!(keys(Runtime::Other), Vec::<String>::new());
        assert_eq!(keys(Runtime::Mesos), ["contrail.managers", "cniVersion"]);
    }
}
