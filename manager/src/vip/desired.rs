//! What the load balancers must be, from Marathon's apps: one per VIP (address or name),
//! a listener and a pool per (port, protocol), a member per running, healthy task of every
//! app that declares the VIP, and a health monitor from the declaring apps' health checks.
//!
//! Two apps declaring the same VIP share it: their tasks are members of one pool, as DC/OS'
//! layer-4 load balancer balances a named VIP across every task that carries it.

use std::collections::{BTreeMap, BTreeSet};

use crate::marathon::model::{HealthCheckView, ServiceApp};

use super::labels::{VipKey, is_vip_key, parse};

/// One listener: the VIP's port and protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerKey {
    /// `TCP` or `UDP` (`LoadbalancerProtocolType`).
    pub protocol: String,
    pub port: u16,
}

/// One backend: a task's address and the port it listens on there.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub task_id: String,
    pub app_id: String,
    pub address: String,
    pub port: u16,
}

/// `LoadbalancerHealthmonitorType` from a Marathon health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    /// `TCP`, `HTTP` or `HTTPS`.
    pub monitor_type: String,
    pub delay: u32,
    pub timeout: u32,
    pub max_retries: u32,
    pub url_path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pool {
    pub members: BTreeSet<Member>,
    pub monitor: Option<Monitor>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vip {
    /// The apps that declare it, sorted.
    pub apps: BTreeSet<String>,
    pub listeners: BTreeMap<ListenerKey, Pool>,
}

/// A label that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BadLabel {
    pub app: String,
    pub label: String,
    pub value: String,
    pub why: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub vips: BTreeMap<VipKey, Vip>,
    pub bad: Vec<BadLabel>,
}

/// Marathon's protocol field (`tcp`, `udp`, `udp,tcp`) as listener protocols.
fn protocols(p: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for x in p.split(',') {
        match x.trim().to_ascii_lowercase().as_str() {
            "tcp" => out.push("TCP".to_owned()),
            "udp" => out.push("UDP".to_owned()),
            other => return Err(format!("protocol {other:?} is neither tcp nor udp")),
        }
    }
    Ok(out)
}

/// A monitor for a Marathon health check of this port; `COMMAND` checks have none.
fn monitor(h: &HealthCheckView) -> Option<Monitor> {
    let t = match h.protocol.to_ascii_uppercase().as_str() {
        "TCP" | "MESOS_TCP" => "TCP",
        "HTTP" | "MESOS_HTTP" => "HTTP",
        "HTTPS" | "MESOS_HTTPS" => "HTTPS",
        _ => return None,
    };
    Some(Monitor {
        monitor_type: t.to_owned(),
        delay: h.interval_seconds.max(1),
        timeout: h.timeout_seconds.max(1),
        // Marathon's 0 means "never kill"; a monitor needs at least one try.
        max_retries: h.max_consecutive_failures.clamp(1, 10),
        url_path: (t != "TCP").then(|| h.path.clone().unwrap_or_else(|| "/".into())),
    })
}

/// Whether a task serves: running, and with health checks, reported alive by all of them.
fn serving(app: &ServiceApp, t: &crate::marathon::model::ServiceTask) -> bool {
    t.state == "TASK_RUNNING" && (app.health_checks.is_empty() || t.alive == Some(true))
}

pub fn desired(apps: &[ServiceApp]) -> Desired {
    let mut d = Desired::default();
    let mut sorted: Vec<&ServiceApp> = apps.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    for app in sorted {
        for p in &app.ports {
            for (k, v) in &p.labels {
                if !k.starts_with("VIP_") {
                    continue;
                }
                let bad = |why: String| BadLabel {
                    app: app.id.clone(),
                    label: k.clone(),
                    value: v.chars().take(80).collect(),
                    why,
                };
                if !is_vip_key(k) {
                    d.bad.push(bad("the key is not VIP_<number>".into()));
                    continue;
                }
                let label = match parse(v) {
                    Ok(l) => l,
                    Err(why) => {
                        d.bad.push(bad(why));
                        continue;
                    }
                };
                let protos = match protocols(&p.protocol) {
                    Ok(x) => x,
                    Err(why) => {
                        d.bad.push(bad(why));
                        continue;
                    }
                };
                // The first mappable health check on this port (or without a port index,
                // which Marathon applies to the first port).
                let mon = app
                    .health_checks
                    .iter()
                    .filter(|h| h.port_index.unwrap_or(0) as usize == p.index)
                    .find_map(monitor);
                let vip = d.vips.entry(label.key.clone()).or_default();
                vip.apps.insert(app.id.clone());
                for proto in protos {
                    let pool = vip
                        .listeners
                        .entry(ListenerKey {
                            protocol: proto,
                            port: label.port,
                        })
                        .or_default();
                    // Apps sorted by id: the first to declare a monitor gives it.
                    if pool.monitor.is_none() {
                        pool.monitor = mon.clone();
                    }
                    for t in app.tasks.iter().filter(|t| serving(app, t)) {
                        let Some(address) = t.ips.first() else {
                            continue;
                        };
                        let port = p.port.or_else(|| t.ports.get(p.index).copied());
                        let Some(port) =
                            port.and_then(|x| u16::try_from(x).ok()).filter(|x| *x > 0)
                        else {
                            continue;
                        };
                        pool.members.insert(Member {
                            task_id: t.id.clone(),
                            app_id: app.id.clone(),
                            address: address.clone(),
                            port,
                        });
                    }
                }
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marathon::model::{AppPort, ServiceTask};

    fn task(id: &str, ip: &str, state: &str, alive: Option<bool>) -> ServiceTask {
        ServiceTask {
            id: id.into(),
            state: state.into(),
            ips: vec![ip.into()],
            ports: vec![31000],
            alive,
        }
    }

    fn app(id: &str, label: &str, port: Option<u32>, tasks: Vec<ServiceTask>) -> ServiceApp {
        ServiceApp {
            id: id.into(),
            ports: vec![AppPort {
                index: 0,
                port,
                protocol: "tcp".into(),
                labels: vec![("VIP_0".into(), label.into())],
            }],
            health_checks: vec![],
            tasks,
        }
    }

    #[test]
    fn running_tasks_become_members_with_the_container_port() {
        let d = desired(&[app(
            "/web",
            "/web:80",
            Some(8080),
            vec![
                task("web.1", "10.32.0.2", "TASK_RUNNING", None),
                task("web.2", "10.32.0.3", "TASK_STAGING", None),
            ],
        )]);
        let v = &d.vips[&VipKey::Name("web".into())];
        let p = &v.listeners[&ListenerKey {
            protocol: "TCP".into(),
            port: 80,
        }];
        assert_eq!(p.members.len(), 1);
        let m = p.members.iter().next().unwrap();
        assert_eq!((m.address.as_str(), m.port), ("10.32.0.2", 8080));
        // A port definition: the task's assigned port.
        let d = desired(&[app(
            "/h",
            "10.32.0.100:80",
            None,
            vec![task("h.1", "10.0.0.5", "TASK_RUNNING", None)],
        )]);
        let p = d
            .vips
            .values()
            .next()
            .unwrap()
            .listeners
            .values()
            .next()
            .unwrap();
        assert_eq!(p.members.iter().next().unwrap().port, 31000);
    }

    #[test]
    fn with_health_checks_only_healthy_tasks_are_members_and_a_monitor_is_made() {
        let mut a = app(
            "/web",
            "/web:80",
            Some(8080),
            vec![
                task("web.1", "10.32.0.2", "TASK_RUNNING", Some(true)),
                task("web.2", "10.32.0.3", "TASK_RUNNING", Some(false)),
                task("web.3", "10.32.0.4", "TASK_RUNNING", None),
            ],
        );
        a.health_checks = vec![HealthCheckView {
            protocol: "MESOS_HTTP".into(),
            path: Some("/health".into()),
            port_index: Some(0),
            interval_seconds: 5,
            timeout_seconds: 2,
            max_consecutive_failures: 0,
        }];
        let d = desired(&[a]);
        let p = d
            .vips
            .values()
            .next()
            .unwrap()
            .listeners
            .values()
            .next()
            .unwrap();
        let ids: Vec<&str> = p.members.iter().map(|m| m.task_id.as_str()).collect();
        assert_eq!(ids, ["web.1"]);
        assert_eq!(
            p.monitor,
            Some(Monitor {
                monitor_type: "HTTP".into(),
                delay: 5,
                timeout: 2,
                max_retries: 1,
                url_path: Some("/health".into())
            })
        );
    }

    #[test]
    fn two_apps_on_one_vip_share_its_pool_and_bad_labels_are_reported() {
        let d = desired(&[
            app(
                "/b",
                "/web:80",
                Some(80),
                vec![task("b.1", "10.32.0.3", "TASK_RUNNING", None)],
            ),
            app(
                "/a",
                "/web:80",
                Some(80),
                vec![task("a.1", "10.32.0.2", "TASK_RUNNING", None)],
            ),
            app(
                "/c",
                "/web",
                Some(80),
                vec![task("c.1", "10.32.0.4", "TASK_RUNNING", None)],
            ),
        ]);
        assert_eq!(d.vips.len(), 1);
        let v = &d.vips[&VipKey::Name("web".into())];
        assert_eq!(
            v.apps.iter().map(String::as_str).collect::<Vec<_>>(),
            ["/a", "/b"]
        );
        assert_eq!(v.listeners.values().next().unwrap().members.len(), 2);
        assert_eq!(d.bad.len(), 1);
        assert_eq!(
            (d.bad[0].app.as_str(), d.bad[0].label.as_str()),
            ("/c", "VIP_0")
        );
    }

    #[test]
    fn udp_and_tcp_make_two_listeners() {
        let mut a = app("/dns", "/dns:53", Some(53), vec![]);
        a.ports[0].protocol = "udp,tcp".into();
        let d = desired(&[a]);
        let ls: Vec<String> = d
            .vips
            .values()
            .next()
            .unwrap()
            .listeners
            .keys()
            .map(|k| k.protocol.clone())
            .collect();
        assert_eq!(ls, ["TCP", "UDP"]);
        let mut a = app("/x", "/x:53", Some(53), vec![]);
        a.ports[0].protocol = "sctp".into();
        assert!(desired(&[a]).bad[0].why.contains("sctp"));
    }
}
