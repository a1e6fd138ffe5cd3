//! Configuration checks an operator can act on: `contrail-cni-plugin config check FILE`, and the
//! same findings logged on every ADD (to the configured log file, never stdout).
//!
//! Everything is decoded by the parsers ADD itself uses ([`NetConf`], the `contrail` section's
//! [`Section`]/[`ContrailConfig`], the `wasm` section, the delegate block); this module only
//! judges what they decoded. It reads nothing but file metadata (plugin files, the log
//! directory) and the token file ADD reads anyway, so it is cheap enough for every ADD.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::cni::{CniError, CniVersion, NetConf};
use crate::contrail::config::{ContrailConfig, DEFAULT_MESOS_PORT, Mode, Section};
use crate::dispatch::{CONTRAIL_TYPES, DELEGATE_VERSIONS, MESOS_TYPE};
use crate::wasm::{Plugins, World, cache};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// ADD fails (or does something else than the operator meant) with this config.
    Error,
    /// ADD runs, but not as the operator probably expects.
    Warning,
}

/// One finding: the config key it is about and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub key: String,
    pub msg: String,
}

impl Problem {
    fn error(key: impl Into<String>, msg: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            key: key.into(),
            msg: msg.into(),
        }
    }

    fn warning(key: impl Into<String>, msg: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            key: key.into(),
            msg: msg.into(),
        }
    }

    /// A parser's error (`contrail.mesos-port: expected ...`, `wasm.max-ips must be ...`) as a
    /// problem of the key it names, else of `fallback`.
    fn from_parse(e: &CniError, fallback: &str) -> Self {
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
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{s}: {}: {}", self.key, self.msg)
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

/// A poll budget beyond this holds a failing task launch for longer than anyone waits for one.
const MAX_POLL_BUDGET: Duration = Duration::from_secs(600);
/// Below this the agent rarely has the port yet (Contrail's defaults allow 60 s).
const MIN_POLL_BUDGET: Duration = Duration::from_secs(1);

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
        out.push(Problem::from_parse(&e, "ignoreUnknown"));
    }
    if let Err(e) = conf.mesos_network_info() {
        out.push(Problem::from_parse(&e, "args"));
    }
    let mut worlds = vec![];
    let mut mesos_run = runtime == Runtime::Mesos || (runtime == Runtime::File && delegate);
    if contrail {
        let c = contrail_section(conf, ty, runtime, out);
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
    wasm_section(conf, &worlds, out);
    log_settings(conf, out);
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

/// What the `contrail` section decides for the rest of the checks.
#[derive(Default)]
struct ContrailFacts {
    mesos_run: bool,
    registers: bool,
}

fn contrail_section(
    conf: &NetConf,
    ty: &str,
    runtime: Runtime,
    out: &mut Vec<Problem>,
) -> ContrailFacts {
    let mut facts = ContrailFacts::default();
    let section = match conf.get("contrail").filter(|v| !v.is_null()) {
        None => Section::default(),
        Some(v) => match Section::parse(v) {
            Ok(s) => s,
            Err(e) => {
                out.push(Problem::from_parse(&e, "contrail"));
                return facts;
            }
        },
    };
    for k in section.unknown_keys() {
        out.push(Problem::warning(
            format!("contrail.{k}"),
            "unknown key, ignored (check the spelling against the keys in the README)",
        ));
    }
    match section.vrouter_ip.as_deref() {
        None | Some("") => out.push(Problem::warning(
            "contrail.vrouter-ip",
            "not set: the agent is asked at 127.0.0.1; set the address this node's \
             contrail-vrouter-agent serves its port API on",
        )),
        Some(ip) if !is_host(ip) => out.push(Problem::error(
            "contrail.vrouter-ip",
            format!(
                "{ip:?} is not an IP address or host name (a placeholder left in?): set this \
                 node's vRouter agent address"
            ),
        )),
        Some(_) => {}
    }
    if section.vrouter_port.is_none() {
        out.push(Problem::warning(
            "contrail.vrouter-port",
            "not set: 9091 (the agent's port API default) is used",
        ));
    }
    if section.mesos_port.is_some() && section.mesos_ip.as_deref().unwrap_or("").is_empty() {
        out.push(Problem::warning(
            "contrail.mesos-port",
            "set without mesos-ip: ignored; set mesos-ip (or list the managers in \"managers\")",
        ));
    }
    if let Some(name) = section.cluster_name.as_deref()
        && !is_host(name)
    {
        out.push(Problem::warning(
            "contrail.cluster-name",
            format!(
                "{name:?} is not a host name (a placeholder left in?): in mesos mode it is this \
                 node's name, by which the manager finds its virtual-router"
            ),
        ));
    }
    let cfg = match ContrailConfig::from_section(section) {
        Ok(c) => c,
        Err(e) => {
            out.push(Problem::from_parse(&e, "contrail"));
            return facts;
        }
    };
    if let Err(e) = cfg.check_supported() {
        out.push(Problem::from_parse(&e, "contrail.vif-type"));
    }
    poll_budget(&cfg, out);

    // Mode: unset decides per ADD (k8s when CNI_ARGS names a pod, else mesos).
    facts.mesos_run = match runtime {
        Runtime::Mesos => true,
        Runtime::Other => false,
        Runtime::File => match cfg.mode {
            Some(m) => m == Mode::Mesos,
            None => ty != "contrail-k8s-cni",
        },
    };
    let mesos_mode = cfg.mode == Some(Mode::Mesos) || (cfg.mode.is_none() && facts.mesos_run);
    if cfg.mode == Some(Mode::K8s) && !cfg.managers.is_empty() {
        out.push(Problem::warning(
            "contrail.mode",
            "\"k8s\": the managers (managers, mesos-ip) are never asked and Mesos labels are \
             ignored; set \"mode\": \"mesos\" (or leave mode out) to register Mesos tasks",
        ));
    }
    if mesos_mode && cfg.managers.is_empty() {
        out.push(Problem::warning(
            "contrail.managers",
            format!(
                "no manager endpoint (\"managers\", or \"mesos-ip\"/\"mesos-port\"): ADD \
                 registers nothing with contrail-mesos-manager, so the task's Mesos labels \
                 (networks, project-name, floating-ips, ...) are ignored and ADD waits the whole \
                 poll budget ({}s) for a port nothing creates, then fails with an agent error. \
                 Set \"managers\": [\"http://<master>:{DEFAULT_MESOS_PORT}\", ...] and \
                 \"mode\": \"mesos\"",
                cfg.poll_budget().as_secs_f64()
            ),
        ));
    }
    facts.registers = mesos_mode && !cfg.managers.is_empty();
    if facts.registers
        && cfg.mesos_token.as_deref().unwrap_or("").is_empty()
        && cfg.managers.iter().any(|u| !loopback_url(u))
    {
        out.push(Problem::warning(
            "contrail.mesos-token",
            "not set, and a manager is not on this node: a manager listening beyond loopback \
             refuses registrations without its token (unless it runs with \
             allow-unauthenticated); set mesos-token-file to the manager's [api] token-file",
        ));
    }
    facts
}

fn poll_budget(cfg: &ContrailConfig, out: &mut Vec<Problem>) {
    const KEY: &str = "contrail.poll-timeout";
    let budget = cfg.poll_budget();
    if cfg.poll_retries == 0 {
        out.push(Problem::warning(
            "contrail.poll-retries",
            "0 is read as 1 (one poll-timeout to wait for the agent); Contrail's default is 20",
        ));
    }
    if budget.is_zero() {
        out.push(Problem::error(
            KEY,
            "0: the poll budget (poll-timeout x poll-retries) is zero, so every ADD gives up \
             before the agent can answer; Contrail's defaults are 3 s x 20",
        ));
    } else if budget < MIN_POLL_BUDGET {
        out.push(Problem::warning(
            KEY,
            format!(
                "poll budget (poll-timeout x poll-retries) {}s: the agent rarely has a new port \
                 that soon; Contrail's defaults allow 60 s",
                budget.as_secs_f64()
            ),
        ));
    } else if budget > MAX_POLL_BUDGET {
        out.push(Problem::warning(
            KEY,
            format!(
                "poll budget (poll-timeout x poll-retries) {}s: a failing ADD holds the task \
                 launch that long before Mesos hears of it; keep it under {}s (Contrail's \
                 defaults: 60 s)",
                budget.as_secs_f64(),
                MAX_POLL_BUDGET.as_secs()
            ),
        ));
    }
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

fn wasm_section(conf: &NetConf, worlds: &[World], out: &mut Vec<Problem>) {
    for k in conf.wasm_unknown_keys() {
        out.push(Problem::warning(
            format!("wasm.{k}"),
            "unknown key, ignored",
        ));
    }
    let settings = match conf.wasm() {
        Ok(s) => s,
        Err(e) => {
            out.push(Problem::from_parse(&e, "wasm"));
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
fn log_settings(conf: &NetConf, out: &mut Vec<Problem>) {
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

/// An IP address or a host name (RFC 1123 labels).
fn is_host(s: &str) -> bool {
    if s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
    {
        return true;
    }
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// `http://127.0.0.1:6991`, `http://[::1]:6991`, `http://localhost:6991`.
fn loopback_url(url: &str) -> bool {
    let hostport = url.trim_start_matches("http://");
    let host = match hostport.rsplit_once(':') {
        Some((h, _)) => h,
        None => hostport,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::error::INVALID_CONFIG;

    #[test]
    fn parse_errors_keep_the_key_they_name() {
        let p = Problem::from_parse(
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
        let p = Problem::from_parse(
            &CniError::new(
                INVALID_CONFIG,
                "wasm.max-ips must be an integer from 1 to 1024",
            ),
            "wasm",
        );
        assert_eq!(p.key, "wasm.max-ips");
        assert_eq!(p.msg, "must be an integer from 1 to 1024");
        // A message that names no key of the section stays whole.
        let p = Problem::from_parse(&CniError::new(INVALID_CONFIG, "args: bad"), "wasm");
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
