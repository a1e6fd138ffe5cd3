//! The `contrail` section: addresses, placeholders, vif-type, the poll budget, mode and
//! managers.

use std::net::IpAddr;
use std::time::Duration;

use super::{Problem, Runtime};
use crate::cni::NetConf;
use crate::contrail::config::{ContrailConfig, DEFAULT_MESOS_PORT, Mode, Section};

/// A poll budget beyond this holds a failing task launch for longer than anyone waits for one.
const MAX_POLL_BUDGET: Duration = Duration::from_secs(600);
/// Below this the agent rarely has the port yet (Contrail's defaults allow 60 s).
const MIN_POLL_BUDGET: Duration = Duration::from_secs(1);

/// What the `contrail` section decides for the rest of the checks.
#[derive(Default)]
pub(super) struct ContrailFacts {
    pub mesos_run: bool,
    pub registers: bool,
}

pub(super) fn section(
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
                out.push(super::from_parse(&e, "contrail"));
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
            out.push(super::from_parse(&e, "contrail"));
            return facts;
        }
    };
    if let Err(e) = cfg.check_supported() {
        let key = if e.msg.starts_with("contrail.parent-interface") {
            "contrail.parent-interface"
        } else {
            "contrail.vif-type"
        };
        out.push(super::from_parse(&e, key));
    }
    if let Err(e) = cfg.check_state_dir() {
        out.push(super::from_parse(&e, "contrail.state-dir"));
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

/// An IP address or a host name (RFC 1123 labels).
pub(super) fn is_host(s: &str) -> bool {
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
pub(super) fn loopback_url(url: &str) -> bool {
    let hostport = url.trim_start_matches("http://");
    let host = match hostport.rsplit_once(':') {
        Some((h, _)) => h,
        None => hostport,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
