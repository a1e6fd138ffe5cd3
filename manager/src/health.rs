//! Readiness from background probes. `/readyz` and `/healthz` report the cached outcome and
//! never wait on a dependency themselves: a blackholed VNC or Marathon makes a probe hang on
//! its own thread, and a probe that has not answered within `stale_after` counts as failed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

/// A dependency check: `Err(reason)` when it is not usable.
pub type ProbeFn = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Debug, Default)]
struct ProbeState {
    ok: bool,
    last_answer: Option<Instant>,
    /// Set while a probe call is running.
    running_since: Option<Instant>,
    error: Option<String>,
}

/// One check in a report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    /// Milliseconds since the last answer, if any came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `/readyz` body.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    pub ready: bool,
    pub status: &'static str,
    /// `leader`, `follower` or `standalone`. Not part of readiness: a follower serves the
    /// attachment API as well as the leader does.
    pub role: &'static str,
    pub checks: BTreeMap<String, Check>,
}

pub struct Health {
    probes: Vec<(String, Mutex<ProbeState>)>,
    stale_after: Duration,
    /// The election, once the app has one.
    pub leadership: std::sync::OnceLock<std::sync::Arc<dyn crate::leader::Leadership>>,
    /// Checks reported but not part of readiness (see [`Health::informational`]).
    informational: Vec<String>,
}

impl Health {
    /// `names`: the checks that must pass; `stale_after`: how long a probe may run, or an
    /// answer be old, before the check counts as failed.
    pub fn new(names: &[&str], stale_after: Duration) -> Health {
        Health {
            probes: names
                .iter()
                .map(|n| (n.to_string(), Mutex::new(ProbeState::default())))
                .collect(),
            stale_after,
            leadership: std::sync::OnceLock::new(),
            informational: Vec::new(),
        }
    }

    /// Adds a check that `/healthz` reports but readiness ignores: ZooKeeper, whose loss only
    /// demotes this manager (every manager keeps serving the attachment API), so it must not
    /// make a whole cluster of managers unready at once.
    pub fn informational(mut self, name: &str) -> Health {
        self.probes
            .push((name.to_owned(), Mutex::new(ProbeState::default())));
        self.informational.push(name.to_owned());
        self
    }

    fn slot(&self, name: &str) -> Option<std::sync::MutexGuard<'_, ProbeState>> {
        self.probes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records an answer (also used when another path just proved the dependency works).
    pub fn record(&self, name: &str, r: Result<(), String>) {
        if let Some(mut s) = self.slot(name) {
            s.ok = r.is_ok();
            s.error = r.err();
            s.last_answer = Some(Instant::now());
            s.running_since = None;
        }
    }

    fn started(&self, name: &str) {
        if let Some(mut s) = self.slot(name) {
            s.running_since = Some(Instant::now());
        }
    }

    pub fn report(&self) -> Report {
        let now = Instant::now();
        let mut checks = BTreeMap::new();
        for (name, m) in &self.probes {
            let s = m.lock().unwrap_or_else(|p| p.into_inner());
            let age = s.last_answer.map(|t| now.duration_since(t));
            let hanging = s
                .running_since
                .is_some_and(|t| now.duration_since(t) > self.stale_after);
            let c = match (s.last_answer, hanging) {
                (None, _) => Check {
                    ok: false,
                    age_ms: None,
                    error: Some("not checked yet".into()),
                },
                (_, true) => Check {
                    ok: false,
                    age_ms: age.map(|a| a.as_millis() as u64),
                    error: Some(format!(
                        "no answer for {} ms",
                        s.running_since
                            .map(|t| now.duration_since(t).as_millis())
                            .unwrap_or(0)
                    )),
                },
                (Some(_), false) => Check {
                    ok: s.ok,
                    age_ms: age.map(|a| a.as_millis() as u64),
                    error: s.error.clone(),
                },
            };
            checks.insert(name.clone(), c);
        }
        let ready = checks
            .iter()
            .all(|(n, c)| c.ok || self.informational.contains(n));
        Report {
            ready,
            status: if ready { "ok" } else { "unavailable" },
            role: self.leadership.get().map_or("standalone", |l| l.role()),
            checks,
        }
    }

    /// Runs `probe` every `interval` on a thread of its own until `stop`.
    pub fn spawn(
        self: &Arc<Self>,
        name: &str,
        probe: ProbeFn,
        interval: Duration,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<JoinHandle<()>> {
        let (h, name) = (self.clone(), name.to_owned());
        std::thread::Builder::new()
            .name(format!("probe-{name}"))
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    h.started(&name);
                    let r = probe();
                    if let Err(e) = &r {
                        tracing::debug!(check = %name, error = %e, "readiness probe failed");
                    }
                    h.record(&name, r);
                    let end = Instant::now() + interval;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchecked_failed_and_hanging_probes_are_not_ready() {
        let h = Health::new(&["vnc", "marathon"], Duration::from_millis(50));
        assert!(!h.report().ready);
        h.record("vnc", Ok(()));
        h.record("marathon", Err("refused".into()));
        let r = h.report();
        assert!(!r.ready);
        assert!(r.checks["vnc"].ok);
        assert_eq!(r.checks["marathon"].error.as_deref(), Some("refused"));
        h.record("marathon", Ok(()));
        assert!(h.report().ready);
        // A probe call that does not come back within stale_after fails the check.
        h.started("vnc");
        std::thread::sleep(Duration::from_millis(80));
        let r = h.report();
        assert!(!r.ready);
        assert!(
            r.checks["vnc"]
                .error
                .as_deref()
                .unwrap()
                .contains("no answer")
        );
    }
}
