//! Marathon's scheduling, reduced to what the network sees: an app or pod definition becomes
//! instances; each instance is a Mesos container launched by the agent stand-in
//! ([`contrail_integration::mesos_agent`]) on the app's networks, and its tasks are reported to the Marathon
//! stand-in ([`contrail_integration::marathon`]) with the IPs Mesos recorded from the 0.2.0 result, which emits
//! the `status_update_event`s the manager follows. Kill, scale and destroy behave as Marathon's
//! do: `TASK_KILLING`, the container is destroyed (CNI DEL), `TASK_KILLED`.
//!
//! Network translation follows Marathon's networking docs (`docs/docs/networking.md`): `networks: [{mode: container, name,
//! labels}]` (named container networks only), or the legacy `ipAddress: {networkName, labels}`;
//! apps get `ip_addresses: [{}]`, pods none. An app's `container.portMappings` with a `hostPort`
//! become the `port_mappings` of the networks they apply to (all of them, or those named in
//! `networkNames`), as Marathon's TaskBuilder hands them to Mesos.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use contrail_integration::marathon::{FakePodInstance, MarathonServer};
use contrail_integration::mesos_agent::{
    CniFailure, Container, MesosAgent, NetworkRequest, OperatorApi,
};

/// An app or pod as far as networking goes.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// `/app-id`.
    pub id: String,
    pub instances: usize,
    pub networks: Vec<NetworkRequest>,
    /// Pod container names (empty for an app).
    pub containers: Vec<String>,
}

fn labels_of(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The `port_mappings` of network `name` from an app's `container.portMappings`: entries with a
/// `hostPort` (without one a port is only named, not mapped), for every network unless the
/// entry's `networkNames` lists others. Marathon fills `hostPort: 0` from the agent's offered
/// port range; the devstack has no offers, so it asks for an explicit port.
fn port_mappings_of(app: &Value, name: &str) -> Result<Vec<(u16, u16, String)>, String> {
    let mut out = vec![];
    for pm in app["container"]["portMappings"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(host) = pm.get("hostPort").filter(|h| !h.is_null()) else {
            continue;
        };
        if let Some(names) = pm["networkNames"].as_array()
            && !names.is_empty()
            && !names.iter().any(|n| n == name)
        {
            continue;
        }
        let port = |v: &Value, what: &str| {
            v.as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| format!("portMappings: {what} {v} is not a port"))
        };
        let host = port(host, "hostPort")?;
        if host == 0 {
            return Err(
                "portMappings: hostPort 0 (a port from the offer) needs an explicit port here"
                    .into(),
            );
        }
        let container = port(&pm["containerPort"], "containerPort")?;
        let protocol = pm["protocol"].as_str().unwrap_or("tcp").to_owned();
        out.push((host, container, protocol));
    }
    Ok(out)
}

fn normalise_id(id: &str) -> String {
    if id.starts_with('/') {
        id.to_owned()
    } else {
        format!("/{id}")
    }
}

impl RunSpec {
    /// From a Marathon app definition (`POST /v2/apps` body).
    pub fn from_app(v: &Value) -> Result<RunSpec, String> {
        let id = v["id"].as_str().ok_or("app: missing id")?;
        let mut networks = Vec::new();
        if let Some(ip) = v.get("ipAddress").filter(|x| !x.is_null()) {
            if v.get("networks").is_some() {
                return Err("cannot mix deprecated and canonical network APIs".into());
            }
            let name = ip["networkName"]
                .as_str()
                .ok_or("ipAddress.networkName is required here")?;
            networks.push(NetworkRequest {
                name: name.into(),
                labels: labels_of(&ip["labels"]),
                port_mappings: port_mappings_of(v, name)?,
                app_style_ip_addresses: true,
            });
        }
        for n in v["networks"].as_array().into_iter().flatten() {
            match n["mode"].as_str().unwrap_or("container") {
                "host" => {}
                "container/bridge" => networks.push(NetworkRequest {
                    name: "mesos-bridge".into(),
                    labels: labels_of(&n["labels"]),
                    port_mappings: vec![],
                    app_style_ip_addresses: true,
                }),
                "container" => {
                    let name = n["name"]
                        .as_str()
                        .ok_or("container network without a name")?;
                    networks.push(NetworkRequest {
                        name: name.into(),
                        labels: labels_of(&n["labels"]),
                        port_mappings: port_mappings_of(v, name)?,
                        app_style_ip_addresses: true,
                    });
                }
                m => return Err(format!("unknown network mode {m}")),
            }
        }
        Ok(RunSpec {
            id: normalise_id(id),
            instances: v["instances"].as_u64().unwrap_or(1) as usize,
            networks,
            containers: vec![],
        })
    }

    /// From a Marathon pod definition (`POST /v2/pods` body): containers share the instance's
    /// network namespace; `ip_addresses` is not set for pods.
    pub fn from_pod(v: &Value) -> Result<RunSpec, String> {
        let mut spec = RunSpec::from_app(
            &json!({"id": v["id"], "instances": v["scaling"]["instances"].as_u64().unwrap_or(1), "networks": v["networks"]}),
        )?;
        for n in &mut spec.networks {
            n.app_style_ip_addresses = false;
        }
        spec.containers = v["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect();
        if spec.containers.is_empty() {
            return Err("pod: no containers".into());
        }
        Ok(spec)
    }

    fn is_pod(&self) -> bool {
        !self.containers.is_empty()
    }
}

/// The ids Marathon gives one new instance of a run spec (`mesosphere.marathon.core.instance.
/// Instance.Id` and `core.task.Task.Id`): the path's safe form is its segments joined by `_`
/// (`/team-a/web` -> `team-a_web`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarathonIds {
    /// An app's task id, `<safe>.<uuid>`, or since Marathon 1.5 `<safe>.instance-<uuid>._app.1`
    /// (`Task.Id.forInstanceId`: the instance id, the container name `_app`, the incarnation);
    /// the command executor's id is the task id.
    pub app_task: String,
    /// A pod's instance id, `<safe>.instance-<uuid>` (its tasks are `<instance>.<container>`).
    pub pod_instance: String,
    /// A pod's executor id, `instance-<safe>.<uuid>` (`Instance.Id.executorIdString`).
    pub pod_executor: String,
}

impl MarathonIds {
    pub fn new(run_id: &str, instance_style: bool) -> MarathonIds {
        let safe = run_id.trim_start_matches('/').replace('/', "_");
        let u = uuid::Uuid::new_v4();
        MarathonIds {
            app_task: if instance_style {
                format!("{safe}.instance-{u}._app.1")
            } else {
                format!("{safe}.{u}")
            },
            pod_instance: format!("{safe}.instance-{u}"),
            pod_executor: format!("instance-{safe}.{u}"),
        }
    }
}

/// A running instance.
pub struct Instance {
    /// App task id, or pod instance id.
    pub id: String,
    pub container: Container,
}

struct RunState {
    spec: RunSpec,
    instances: Vec<Instance>,
}

pub struct Scheduler {
    pub marathon: Arc<MarathonServer>,
    pub agent: MesosAgent,
    /// The agent's operator API (`GET_CONTAINERS`): every container this agent runs, with its
    /// executor id, from before its CNI ADD until after its DEL (the manager asks during ADD).
    pub operator: OperatorApi,
    /// The agent's hostname as Marathon reports it.
    pub host: String,
    runs: Mutex<BTreeMap<String, RunState>>,
    /// Deployments running in the background (Marathon's REST API answers before they finish).
    in_flight: std::sync::atomic::AtomicUsize,
    /// App task ids in Marathon >= 1.5's instance form (`<safe>.instance-<uuid>._app.1`)
    /// instead of the legacy `<safe>.<uuid>`; both are live in real clusters.
    pub instance_style_task_ids: std::sync::atomic::AtomicBool,
}

/// Counts one background deployment for as long as it lives.
pub struct InFlight(Arc<Scheduler>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Scheduler {
    /// Marks a background deployment as started; it ends when the guard drops.
    pub fn begin_background(self: &Arc<Self>) -> InFlight {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Background deployments not finished yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn new(
        marathon: Arc<MarathonServer>,
        agent: MesosAgent,
        operator: OperatorApi,
        host: &str,
    ) -> Self {
        Scheduler {
            marathon,
            agent,
            operator,
            host: host.into(),
            runs: Mutex::new(BTreeMap::new()),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            instance_style_task_ids: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Deploys an app or pod and waits until every instance runs. Returns the instance ids.
    pub fn deploy(&self, spec: RunSpec) -> Result<Vec<String>, String> {
        {
            let mut runs = self.runs.lock().unwrap();
            if runs.contains_key(&spec.id) {
                return Err(format!("{} already exists", spec.id));
            }
            runs.insert(
                spec.id.clone(),
                RunState {
                    spec: spec.clone(),
                    instances: vec![],
                },
            );
        }
        self.scale(&spec.id, spec.instances)
    }

    /// Scales to `n` instances, launching in parallel (as Marathon offers do) or killing the
    /// youngest first (`killSelection: YOUNGEST_FIRST`). Returns the ids of running instances.
    pub fn scale(&self, id: &str, n: usize) -> Result<Vec<String>, String> {
        let id = normalise_id(id);
        let (spec, current) = {
            let runs = self.runs.lock().unwrap();
            let r = runs
                .get(&id)
                .ok_or_else(|| format!("{id} does not exist"))?;
            (r.spec.clone(), r.instances.len())
        };
        if n > current {
            let launched: Vec<Result<Instance, String>> = std::thread::scope(|s| {
                let hs: Vec<_> = (current..n)
                    .map(|_| s.spawn(|| self.launch(&spec)))
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().expect("launch thread"))
                    .collect()
            });
            let mut first_err = None;
            let mut runs = self.runs.lock().unwrap();
            let r = runs.get_mut(&id).expect("run");
            for l in launched {
                match l {
                    Ok(i) => r.instances.push(i),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
        } else {
            // Every victim is killed (its namespace goes even when its DEL fails, as Mesos
            // destroys the container anyway); the first failure is reported at the end.
            let mut first_err = None;
            loop {
                let victim = {
                    let mut runs = self.runs.lock().unwrap();
                    let r = runs.get_mut(&id).expect("run");
                    if r.instances.len() <= n {
                        break;
                    }
                    r.instances.pop().expect("instance")
                };
                if let Err(e) = self.kill(&spec, victim, false) {
                    first_err.get_or_insert(e);
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        Ok(self.instance_ids(&id))
    }

    /// Destroys an app or pod: every instance is killed (with CNI DEL).
    /// The app is gone afterwards even when a DEL failed (that failure is returned).
    pub fn destroy(&self, id: &str) -> Result<(), String> {
        let id = normalise_id(id);
        let res = self.scale(&id, 0);
        self.runs.lock().unwrap().remove(&id);
        res.map(|_| ())
    }

    /// Kills one instance the way a crashed agent loses it: the container goes away but the CNI
    /// DEL never runs. Marathon still reports the task's end (`TASK_GONE`/`TASK_KILLED`) unless
    /// `silently`, in which case the task just vanishes from the lists (a missed event).
    pub fn lose_instance(&self, id: &str, silently: bool) -> Result<String, String> {
        let id = normalise_id(id);
        let (spec, victim) = {
            let mut runs = self.runs.lock().unwrap();
            let r = runs
                .get_mut(&id)
                .ok_or_else(|| format!("{id} does not exist"))?;
            (r.spec.clone(), r.instances.pop().ok_or("no instance")?)
        };
        let iid = victim.id.clone();
        if silently {
            self.destroy_container(&victim.container, true)
                .map_err(|e| e.to_string())?;
            if spec.is_pod() {
                // A pod instance that vanished from the lists without an event.
                self.marathon.end_pod_instance(&iid, "Gone");
            } else {
                self.marathon.remove_task_silently(&iid);
            }
        } else {
            self.kill(&spec, victim, true)?;
        }
        Ok(iid)
    }

    pub fn instance_ids(&self, id: &str) -> Vec<String> {
        let runs = self.runs.lock().unwrap();
        runs.get(&normalise_id(id))
            .map(|r| r.instances.iter().map(|i| i.id.clone()).collect())
            .unwrap_or_default()
    }

    /// (instance id, container id, netns name, [(network, ifname, ip)]) for every instance.
    #[allow(clippy::type_complexity)]
    pub fn instances(
        &self,
        id: &str,
    ) -> Vec<(
        String,
        String,
        String,
        Vec<(String, String, Option<String>)>,
    )> {
        let runs = self.runs.lock().unwrap();
        runs.get(&normalise_id(id))
            .map(|r| {
                r.instances
                    .iter()
                    .map(|i| {
                        (
                            i.id.clone(),
                            i.container.container_id.clone(),
                            i.container.netns_name.clone(),
                            i.container
                                .attached
                                .iter()
                                .map(|a| (a.network.clone(), a.ifname.clone(), a.ip4.clone()))
                                .collect(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn run_ids(&self) -> Vec<String> {
        self.runs.lock().unwrap().keys().cloned().collect()
    }

    /// Launches one instance as Marathon and Mesos do: the task is known (`TASK_STAGING`, no
    /// IPs yet) before the container's networks are set up, and reports its IPs with
    /// `TASK_RUNNING` once the CNI ADDs returned; a failed launch ends as `TASK_FAILED`. The
    /// manager's reconciler relies on that window: an unjoined attachment is kept while a task
    /// on its node has no IPs yet.
    fn launch(&self, spec: &RunSpec) -> Result<Instance, String> {
        let cid = uuid::Uuid::new_v4().to_string();
        let ids = MarathonIds::new(
            &spec.id,
            self.instance_style_task_ids
                .load(std::sync::atomic::Ordering::SeqCst),
        );
        if spec.is_pod() {
            let instance_id = ids.pod_instance.clone();
            let report = |ips: &[String], state: &str| {
                let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
                let containers: Vec<(String, String)> = spec
                    .containers
                    .iter()
                    .map(|c| (format!("{instance_id}.{c}"), state.to_owned()))
                    .collect();
                self.marathon.add_pod_instance(FakePodInstance {
                    pod_id: spec.id.clone(),
                    id: instance_id.clone(),
                    host: self.host.clone(),
                    ips: ips.to_vec(),
                    containers: containers.clone(),
                });
                for (task, state) in &containers {
                    self.status_event(&spec.id, task, state, &ip_refs);
                }
            };
            report(&[], "TASK_STAGING");
            let container = match self.launch_container(&cid, &ids.pod_executor, &spec.networks) {
                Ok(c) => c,
                Err(e) => {
                    self.marathon.end_pod_instance(&instance_id, "Failed");
                    return Err(e.to_string());
                }
            };
            report(&container.ips(), "TASK_RUNNING");
            Ok(Instance {
                id: instance_id,
                container,
            })
        } else {
            // Marathon's command executor: the executor id is the task id.
            let task_id = ids.app_task.clone();
            self.marathon
                .add_task(&spec.id, &task_id, &self.host, &[], "TASK_STAGING");
            let container = match self.launch_container(&cid, &task_id, &spec.networks) {
                Ok(c) => c,
                Err(e) => {
                    self.marathon.set_task_state(&task_id, "TASK_FAILED");
                    return Err(e.to_string());
                }
            };
            let ips = container.ips();
            let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
            self.marathon
                .add_task(&spec.id, &task_id, &self.host, &ip_refs, "TASK_RUNNING");
            Ok(Instance {
                id: task_id,
                container,
            })
        }
    }

    /// Launches a container as the agent does: it is listed by the operator API (with its
    /// executor) before the isolator's CNI ADD runs, and no longer once it is destroyed.
    fn launch_container(
        &self,
        cid: &str,
        executor_id: &str,
        networks: &[NetworkRequest],
    ) -> Result<Container, CniFailure> {
        self.operator.add_container(cid, executor_id);
        self.agent
            .launch(cid, networks)
            .inspect_err(|_| self.operator.remove_container(cid))
    }

    /// Destroys a container (its DELs, unless `skip_del`), then drops it from the operator API.
    fn destroy_container(&self, c: &Container, skip_del: bool) -> Result<(), CniFailure> {
        let res = self.agent.destroy(c, skip_del);
        self.operator.remove_container(&c.container_id);
        res
    }

    fn kill(&self, spec: &RunSpec, inst: Instance, lost: bool) -> Result<(), String> {
        if spec.is_pod() {
            let ips = inst.container.ips();
            let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
            for c in &spec.containers {
                self.status_event(
                    &spec.id,
                    &format!("{}.{c}", inst.id),
                    "TASK_KILLING",
                    &ip_refs,
                );
            }
            let res = self.destroy_container(&inst.container, lost);
            self.marathon
                .end_pod_instance(&inst.id, if lost { "Gone" } else { "Killed" });
            res.map_err(|e| e.to_string())
        } else {
            self.marathon.set_task_state(&inst.id, "TASK_KILLING");
            let res = self.destroy_container(&inst.container, lost);
            self.marathon
                // TASK_GONE (the agent is known gone), not TASK_LOST: since Marathon 1.4 a lost
                // task is Unreachable and may come back, so it ends nothing.
                .set_task_state(&inst.id, if lost { "TASK_GONE" } else { "TASK_KILLED" });
            res.map_err(|e| e.to_string())
        }
    }

    fn status_event(&self, run_id: &str, task: &str, state: &str, ips: &[&str]) {
        self.marathon
            .emit_status_update(run_id, task, &self.host, ips, state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_app_and_legacy_ip_address_translate_to_networks() {
        // Marathon's `networks` form and Contrail's Mesos example (legacy ipAddress).
        let app = json!({"id": "/app-no-1", "instances": 1,
            "networks": [{"name": "contrail-cni-plugin", "mode": "container"}]});
        let s = RunSpec::from_app(&app).unwrap();
        assert_eq!(s.networks.len(), 1);
        assert_eq!(s.networks[0].name, "contrail-cni-plugin");
        let legacy = json!({"id": "app-id-1", "ipAddress": {"networkName": "contrail-cni-plugin",
            "labels": {"networks": "blue-network", "network-subnets": "5.5.5.0/24"}}});
        let s = RunSpec::from_app(&legacy).unwrap();
        assert_eq!(s.id, "/app-id-1");
        assert_eq!(s.networks[0].labels.len(), 2);
        let mixed = json!({"id": "x", "ipAddress": {"networkName": "n"}, "networks": []});
        assert!(RunSpec::from_app(&mixed).is_err());
    }

    #[test]
    fn port_mappings_with_a_host_port_go_to_their_networks() {
        let app = json!({"id": "/web", "networks": [
                {"mode": "container", "name": "a"}, {"mode": "container", "name": "b"}],
            "container": {"portMappings": [
                {"containerPort": 8080, "hostPort": 18080},
                {"containerPort": 53, "hostPort": 15353, "protocol": "udp", "networkNames": ["b"]},
                {"containerPort": 9090, "name": "no-host-port"}]}});
        let s = RunSpec::from_app(&app).unwrap();
        assert_eq!(s.networks[0].port_mappings, [(18080, 8080, "tcp".into())]);
        assert_eq!(
            s.networks[1].port_mappings,
            [(18080, 8080, "tcp".into()), (15353, 53, "udp".into())]
        );
        assert_eq!(
            s.networks[1].network_info()["port_mappings"][1],
            json!({"host_port": 15353, "container_port": 53, "protocol": "udp"})
        );
        for bad in [json!(0), json!(70000), json!("x")] {
            let app = json!({"id": "/w", "networks": [{"mode": "container", "name": "a"}],
                "container": {"portMappings": [{"containerPort": 80, "hostPort": bad}]}});
            assert!(RunSpec::from_app(&app).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_networks_are_not_cni_and_bridge_maps_to_mesos_bridge() {
        let app = json!({"id": "/a", "networks": [{"mode": "host"}]});
        assert!(RunSpec::from_app(&app).unwrap().networks.is_empty());
        let app = json!({"id": "/a", "networks": [{"mode": "container/bridge"}]});
        assert_eq!(
            RunSpec::from_app(&app).unwrap().networks[0].name,
            "mesos-bridge"
        );
    }

    #[test]
    fn instance_ids_have_marathons_forms() {
        let ids = MarathonIds::new("/team-a/web", false);
        let u = ids
            .app_task
            .strip_prefix("team-a_web.")
            .expect("safe path prefix");
        assert!(uuid::Uuid::parse_str(u).is_ok(), "{}", ids.app_task);
        assert_eq!(ids.pod_instance, format!("team-a_web.instance-{u}"));
        assert_eq!(ids.pod_executor, format!("instance-team-a_web.{u}"));
        let ids = MarathonIds::new("/team-a/web", true);
        let u = ids
            .pod_instance
            .strip_prefix("team-a_web.instance-")
            .unwrap();
        assert_eq!(ids.app_task, format!("team-a_web.instance-{u}._app.1"));
    }

    #[test]
    fn pods_share_networks_and_carry_no_ip_addresses() {
        let pod = json!({"id": "/pod", "scaling": {"instances": 2},
            "containers": [{"name": "a"}, {"name": "b"}],
            "networks": [{"name": "contrail-cni-plugin", "mode": "container", "labels": {"networks": "blue"}}]});
        let s = RunSpec::from_pod(&pod).unwrap();
        assert_eq!(s.instances, 2);
        assert_eq!(s.containers, vec!["a", "b"]);
        assert!(!s.networks[0].app_style_ip_addresses);
    }
}
