//! Marathon's write API on the Marathon stand-in, backed by the devstack scheduler
//! (Marathon's REST API docs, `docs/docs/rest-api` in mesosphere/marathon): `POST /v2/apps`, `GET`/`PUT`/`DELETE /v2/apps/<id>`,
//! `POST /v2/pods`, `DELETE /v2/pods/<id>`. As in Marathon, a write answers at once with a
//! deployment id and the deployment runs in the background; clients follow it on
//! `/v2/apps?embed=apps.tasks`, `/v2/pods/::status` and the event stream.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::{Value, json};

use super::scheduler::{RunSpec, Scheduler};

fn error(status: u16, message: &str) -> (u16, Value) {
    (status, json!({ "message": message }))
}

fn deployment() -> Value {
    json!({"deploymentId": uuid::Uuid::new_v4().to_string(), "version": "2026-11-23T09:00:00.000Z"})
}

/// Runs `f` on the scheduler in the background (a deployment), logging its failure.
fn deploy_async(
    sched: Arc<Scheduler>,
    what: String,
    f: impl FnOnce(&Scheduler) -> Result<(), String> + Send + 'static,
) {
    // Counted before the thread starts, so a stack torn down right after the answer still
    // waits for this deployment (whose containers it must then destroy).
    let guard = sched.begin_background();
    std::thread::spawn(move || {
        let _guard = guard;
        if let Err(e) = f(&sched) {
            tracing::warn!("deployment {what} failed: {e}");
        }
    });
}

/// `POST /v2/apps` or `/v2/pods`: validate, refuse a duplicate id, deploy in the background.
fn create(
    sched: Arc<Scheduler>,
    body: &str,
    parse: fn(&Value) -> Result<RunSpec, String>,
    duplicate: &str,
    is_app: bool,
) -> (u16, Value) {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("Invalid JSON: {e}")),
    };
    let spec = match parse(&v) {
        Ok(s) => s,
        Err(e) => {
            let details = json!([{"path": "/", "errors": [e]}]);
            return (
                422,
                json!({"message": "Object is not valid", "details": details}),
            );
        }
    };
    if sched.run_ids().contains(&spec.id) {
        return error(409, &format!("{duplicate} [{}] already exists.", spec.id));
    }
    if is_app {
        // Its ports' labels (VIPs), container and health checks, as Marathon serves them.
        sched.marathon.set_app_definition(&spec.id, &v);
    }
    let mut answer = v;
    answer["id"] = json!(spec.id);
    answer["deployments"] = json!([{"id": deployment()["deploymentId"]}]);
    deploy_async(sched, spec.id.clone(), move |s| s.deploy(spec).map(drop));
    (201, answer)
}

/// Routes one write request. The scheduler is held weakly: the Marathon server outlives no
/// stack, and a strong reference here would make the two keep each other alive.
pub fn handle(sched: &Weak<Scheduler>, method: &str, path: &str, body: &str) -> (u16, Value) {
    let Some(sched) = sched.upgrade() else {
        return error(503, "scheduler stopped");
    };
    let parsed = || {
        serde_json::from_str::<Value>(body).map_err(|e| error(400, &format!("Invalid JSON: {e}")))
    };
    match (method, path) {
        ("POST", "/v2/apps") => create(sched, body, RunSpec::from_app, "An app with id", true),
        ("POST", "/v2/pods") => create(sched, body, RunSpec::from_pod, "A pod with id", false),
        (m, p) if p.starts_with("/v2/apps/") || p.starts_with("/v2/pods/") => {
            let id = p
                .trim_start_matches("/v2/apps")
                .trim_start_matches("/v2/pods")
                .to_owned();
            let kind = if p.starts_with("/v2/apps/") {
                "App"
            } else {
                "Pod"
            };
            if !sched.run_ids().contains(&id) {
                return error(404, &format!("{kind} '{id}' does not exist"));
            }
            match m {
                "GET" => {
                    let tasks: Vec<Value> = sched
                        .instances(&id)
                        .into_iter()
                        .map(|(task, _, _, nets)| {
                            let ips: Vec<Value> = nets
                                .iter()
                                .filter_map(|(_, _, ip)| ip.as_ref())
                                .map(|ip| json!({"ipAddress": ip, "protocol": "IPv4"}))
                                .collect();
                            json!({"id": task, "appId": id, "ipAddresses": ips})
                        })
                        .collect();
                    (
                        200,
                        json!({"app": {"id": id, "instances": tasks.len(), "tasks": tasks}}),
                    )
                }
                "PUT" if kind == "App" => {
                    let v = match parsed() {
                        Ok(v) => v,
                        Err(e) => return e,
                    };
                    let Some(n) = v["instances"].as_u64() else {
                        return (
                            422,
                            json!({"message": "Object is not valid", "details": [{"path": "/instances", "errors": ["instances is required"]}]}),
                        );
                    };
                    deploy_async(sched, id.clone(), move |s| {
                        s.scale(&id, n as usize).map(drop)
                    });
                    (200, deployment())
                }
                "DELETE" => {
                    let app = kind == "App";
                    deploy_async(sched, id.clone(), move |s| {
                        s.destroy(&id)?;
                        if app {
                            s.marathon.remove_app_definition(&id);
                        }
                        Ok(())
                    });
                    (if kind == "App" { 200 } else { 202 }, deployment())
                }
                _ => error(405, "method not allowed"),
            }
        }
        _ => error(404, "not found"),
    }
}

/// A Marathon REST client, as a user (or `curl`) drives Marathon.
pub struct Marathon {
    base: String,
    agent: ureq::Agent,
}

impl Marathon {
    pub fn new(base: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        Marathon {
            base: base.to_owned(),
            agent,
        }
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), String> {
        let url = format!("{}{path}", self.base);
        let res = match (method, body) {
            ("POST", Some(b)) => self.agent.post(&url).send_json(b),
            ("PUT", Some(b)) => self.agent.put(&url).send_json(b),
            ("DELETE", _) => self.agent.delete(&url).call(),
            _ => self.agent.get(&url).call(),
        };
        let mut resp = res.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        ))
    }

    /// Every task of every app, from `GET /v2/apps?embed=apps.tasks`.
    pub fn tasks(&self) -> Result<Vec<serde_json::Value>, String> {
        let (_, v) = self.call("GET", "/v2/apps?embed=apps.tasks", None)?;
        Ok(v["apps"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["tasks"].as_array().cloned().unwrap_or_default())
            .collect())
    }

    pub fn task_ips(&self) -> Result<Vec<String>, String> {
        Ok(self
            .tasks()?
            .iter()
            .flat_map(|t| t["ipAddresses"].as_array().cloned().unwrap_or_default())
            .filter_map(|ip| ip["ipAddress"].as_str().map(str::to_owned))
            .collect())
    }

    /// Waits (bounded) until `app` has exactly `n` TASK_RUNNING tasks with an address.
    pub fn wait_running(&self, app: &str, n: usize) -> Result<(), String> {
        let ok = super::Stack::wait_for(Duration::from_secs(60), || {
            self.tasks().is_ok_and(|ts| {
                let running = ts
                    .iter()
                    .filter(|t| t["appId"] == app && t["state"] == "TASK_RUNNING")
                    .collect::<Vec<_>>();
                running.len() == n
                    && running
                        .iter()
                        .all(|t| t["ipAddresses"].as_array().is_some_and(|a| !a.is_empty()))
            })
        });
        if ok {
            Ok(())
        } else {
            Err(format!("{app} did not reach {n} running tasks within 60 s"))
        }
    }
}

/// A Marathon app definition on the Contrail CNI network with these network labels (`{}` =
/// none: the managers' isolation mode places it).
pub fn contrail_app(id: &str, instances: usize, labels: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"id": id, "instances": instances, "cmd": "sleep 3600", "cpus": 0.1, "mem": 32,
        "networks": [{"mode": "container", "name": crate::stack::CONTRAIL_NETWORK, "labels": labels}]})
}
