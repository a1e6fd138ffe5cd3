//! The parts of Marathon's JSON the manager uses (`/v2/apps?embed=apps.tasks`,
//! `/v2/pods/::status`, the `status_update_event` and `instance_changed_event` events of the
//! Marathon REST/event-bus docs); every other field is skipped while decoding.

use serde::{Deserialize, Deserializer};

/// A field Marathon may send as `null` (or leave out): its default then. The fields a load
/// balancer reads are decoded with it, so an odd app never fails the listing the reconciler
/// depends on.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct IpAddress {
    #[serde(rename = "ipAddress", default)]
    pub ip_address: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Task {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub state: String,
    #[serde(rename = "ipAddresses", default)]
    pub ip_addresses: Vec<IpAddress>,
    /// The host ports Marathon assigned, in `portDefinitions` order (host networking).
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<u32>,
    /// One result per health check Marathon ran on the task (absent: no health checks, or
    /// none reported yet).
    #[serde(rename = "healthCheckResults", default, deserialize_with = "nullable")]
    pub health_check_results: Vec<HealthCheckResult>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HealthCheckResult {
    #[serde(default)]
    pub alive: bool,
}

/// `portDefinitions[]` (host networking) of the app JSON.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PortDefinition {
    #[serde(default)]
    pub port: Option<u32>,
    /// `tcp`, `udp` or `udp,tcp`; Marathon's default is `tcp`.
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// `container.portMappings[]` (container networking: the port inside the task's own
/// address).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PortMapping {
    #[serde(rename = "containerPort", default)]
    pub container_port: Option<u32>,
    #[serde(rename = "hostPort", default)]
    pub host_port: Option<u32>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Docker {
    /// Marathon < 1.5 kept the mappings under `container.docker`.
    #[serde(rename = "portMappings", default)]
    pub port_mappings: Option<Vec<PortMapping>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Container {
    #[serde(rename = "portMappings", default)]
    pub port_mappings: Option<Vec<PortMapping>>,
    #[serde(default)]
    pub docker: Option<Docker>,
}

/// `healthChecks[]` of the app JSON (Marathon's health-checks docs; defaults as Marathon's).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HealthCheck {
    /// `HTTP`, `HTTPS`, `TCP`, `COMMAND`, `MESOS_HTTP`, `MESOS_HTTPS`, `MESOS_TCP`.
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(rename = "portIndex", default)]
    pub port_index: Option<u32>,
    #[serde(default)]
    pub port: Option<u32>,
    #[serde(rename = "intervalSeconds", default)]
    pub interval_seconds: Option<u32>,
    #[serde(rename = "timeoutSeconds", default)]
    pub timeout_seconds: Option<u32>,
    #[serde(rename = "maxConsecutiveFailures", default)]
    pub max_consecutive_failures: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct App {
    #[serde(default)]
    pub id: String,
    /// Present only with `embed=apps.tasks`; `None` is "not told", never "no tasks".
    #[serde(default)]
    pub tasks: Option<Vec<Task>>,
    #[serde(rename = "tasksRunning", default)]
    pub tasks_running: Option<u64>,
    #[serde(rename = "tasksStaged", default)]
    pub tasks_staged: Option<u64>,
    #[serde(rename = "portDefinitions", default, deserialize_with = "nullable")]
    pub port_definitions: Vec<PortDefinition>,
    #[serde(default)]
    pub container: Option<Container>,
    #[serde(rename = "healthChecks", default, deserialize_with = "nullable")]
    pub health_checks: Vec<HealthCheck>,
    /// The app's own labels hold a non-empty `HAPROXY_GROUP`: marathon-lb exposes it.
    #[serde(skip)]
    pub marathon_lb: bool,
}

/// One port of an app: a port mapping (container networking) or a port definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPort {
    /// Position in `portMappings`/`portDefinitions` (a health check's `portIndex`).
    pub index: usize,
    /// The port the task listens on at its own address: `containerPort` of a mapping;
    /// for a definition, the task's assigned port (`None`: take `task.ports[index]`).
    pub port: Option<u32>,
    pub protocol: String,
    pub labels: Vec<(String, String)>,
}

/// An app task as a load-balancer pool sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTask {
    pub id: String,
    pub state: String,
    pub ips: Vec<String>,
    pub ports: Vec<u32>,
    /// `None`: no result reported; else whether every reported check is alive.
    pub alive: Option<bool>,
}

/// The part of an app a VIP needs: its ports with their labels, its health checks and its
/// tasks. Kept only for apps with at least one `VIP_` label, so a large cluster's listing
/// keeps nothing more for the many apps that have none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceApp {
    pub id: String,
    pub ports: Vec<AppPort>,
    pub health_checks: Vec<HealthCheckView>,
    pub tasks: Vec<ServiceTask>,
}

/// A health check, in the fields a load balancer's monitor takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckView {
    pub protocol: String,
    pub path: Option<String>,
    pub port_index: Option<u32>,
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub max_consecutive_failures: u32,
}

impl App {
    /// The app's ports: `container.portMappings` (or the older `container.docker.portMappings`)
    /// when present, else `portDefinitions`.
    pub fn ports(&self) -> Vec<AppPort> {
        let labels = |l: &std::collections::BTreeMap<String, String>| {
            l.iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        let proto = |p: &Option<String>| p.clone().unwrap_or_else(|| "tcp".into());
        let mappings = self.container.as_ref().and_then(|c| {
            c.port_mappings
                .clone()
                .or_else(|| c.docker.as_ref().and_then(|d| d.port_mappings.clone()))
        });
        match mappings {
            Some(m) if !m.is_empty() => m
                .iter()
                .enumerate()
                .map(|(index, p)| AppPort {
                    index,
                    port: p.container_port.filter(|p| *p != 0),
                    protocol: proto(&p.protocol),
                    labels: labels(&p.labels),
                })
                .collect(),
            _ => self
                .port_definitions
                .iter()
                .enumerate()
                .map(|(index, p)| AppPort {
                    index,
                    port: None,
                    protocol: proto(&p.protocol),
                    labels: labels(&p.labels),
                })
                .collect(),
        }
    }

    /// `Some` for an app with a `VIP_<n>` label on a port.
    pub fn service(&self) -> Option<ServiceApp> {
        let ports = self.ports();
        if !ports
            .iter()
            .any(|p| p.labels.iter().any(|(k, _)| k.starts_with("VIP_")))
        {
            return None;
        }
        Some(ServiceApp {
            id: self.id.clone(),
            ports,
            health_checks: self
                .health_checks
                .iter()
                .map(|h| HealthCheckView {
                    protocol: h.protocol.clone().unwrap_or_else(|| "HTTP".into()),
                    path: h.path.clone(),
                    port_index: h.port_index,
                    interval_seconds: h.interval_seconds.unwrap_or(60),
                    timeout_seconds: h.timeout_seconds.unwrap_or(20),
                    max_consecutive_failures: h.max_consecutive_failures.unwrap_or(3),
                })
                .collect(),
            tasks: self
                .tasks
                .iter()
                .flatten()
                .map(|t| ServiceTask {
                    id: t.id.clone(),
                    state: t.state.clone(),
                    ips: t
                        .ip_addresses
                        .iter()
                        .map(|i| i.ip_address.clone())
                        .collect(),
                    ports: t.ports.clone(),
                    alive: (!t.health_check_results.is_empty())
                        .then(|| t.health_check_results.iter().all(|r| r.alive)),
                })
                .collect(),
        })
    }

    /// Why this app's tasks cannot be taken as the full truth, if they cannot: Marathon
    /// counts its running and staged tasks in `tasksRunning`/`tasksStaged`; the embedded list
    /// must hold at least that many (it also holds killing and unreachable ones).
    pub fn incomplete(&self) -> Option<String> {
        let counted = self.tasks_running.unwrap_or(0) + self.tasks_staged.unwrap_or(0);
        match &self.tasks {
            None if counted > 0 => Some(format!(
                "app {}: {counted} tasks counted but none embedded (no embed=apps.tasks?)",
                self.id
            )),
            Some(t) if (t.len() as u64) < counted => Some(format!(
                "app {}: {counted} tasks counted, {} embedded",
                self.id,
                t.len()
            )),
            _ => None,
        }
    }
}

/// A `/v2/apps?embed=apps.tasks` answer, decoded app by app.
#[derive(Debug, Clone, Default)]
pub struct AppList {
    pub apps: Vec<App>,
}

impl AppList {
    /// Decodes each app on its own, so a failure names the app, the task and the field
    /// (`app /web: tasks[1] (task web.3f2a...): ipAddresses[0]: invalid type ...`).
    pub fn decode(v: serde_json::Value) -> Result<AppList, String> {
        use serde::de::DeserializeSeed as _;
        Apps.deserialize(v)
            .map(|apps| AppList { apps })
            .map_err(|e| e.to_string())
    }

    /// The same decode, straight from the answer's bytes: only the fields above are kept, so
    /// 100,000 tasks never exist as a JSON tree (which was most of a pass's peak memory).
    pub fn from_reader(r: impl std::io::Read) -> Result<AppList, String> {
        use serde::de::DeserializeSeed as _;
        let mut de = serde_json::Deserializer::from_reader(r);
        let apps = Apps.deserialize(&mut de).map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        Ok(AppList { apps })
    }

    /// Why the listing cannot be used to decide what ended, if it cannot.
    pub fn incomplete(&self) -> Vec<String> {
        self.apps.iter().filter_map(App::incomplete).collect()
    }
}

/// What the app being decoded has shown so far, for the error message: its id and the id of
/// the task being decoded.
#[derive(Default)]
struct Seen {
    app: std::cell::RefCell<Option<String>>,
    task: std::cell::RefCell<Option<String>>,
}

/// The top object: its `apps`, app by app.
struct Apps;

impl<'de> serde::de::DeserializeSeed<'de> for Apps {
    type Value = Vec<App>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<App>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Apps {
    type Value = Vec<App>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the /v2/apps answer (a JSON object with `apps`)")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Vec<App>, A::Error> {
        let mut apps = None;
        while let Some(k) = m.next_key::<String>()? {
            if k == "apps" {
                apps = Some(m.next_value_seed(AppSeq)?);
            } else {
                m.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        apps.ok_or_else(|| serde::de::Error::custom("no `apps` key"))
    }
}

struct AppSeq;

impl<'de> serde::de::DeserializeSeed<'de> for AppSeq {
    type Value = Vec<App>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<App>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for AppSeq {
    type Value = Vec<App>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("`apps`, an array")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Vec<App>, A::Error> {
        let mut out = Vec::new();
        while let Some(app) = s.next_element_seed(OneApp(out.len()))? {
            out.push(app);
        }
        Ok(out)
    }
}

/// One app, with the path to a failure inside it and the app and task it was in.
struct OneApp(usize);

impl<'de> serde::de::DeserializeSeed<'de> for OneApp {
    type Value = App;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<App, D::Error> {
        let seen = Seen::default();
        let mut track = serde_path_to_error::Track::new();
        let r = serde::Deserializer::deserialize_map(
            serde_path_to_error::Deserializer::new(d, &mut track),
            AppVisitor(&seen),
        );
        r.map_err(|e| {
            let path = track.path().to_string();
            let id = seen.app.take().unwrap_or_else(|| format!("#{}", self.0));
            let task = match seen.task.take() {
                Some(t) if path.starts_with("tasks[") => format!(" (task {t})"),
                _ => String::new(),
            };
            serde::de::Error::custom(format!("app {id}: {path}{task}: {e}"))
        })
    }
}

struct AppVisitor<'s>(&'s Seen);

impl<'de> serde::de::Visitor<'de> for AppVisitor<'_> {
    type Value = App;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an app object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<App, A::Error> {
        let mut app = App::default();
        while let Some(k) = m.next_key::<String>()? {
            match k.as_str() {
                "id" => {
                    app.id = m.next_value()?;
                    *self.0.app.borrow_mut() = Some(app.id.clone());
                }
                "tasks" => app.tasks = m.next_value_seed(TaskSeq(self.0))?,
                "tasksRunning" => app.tasks_running = m.next_value()?,
                "tasksStaged" => app.tasks_staged = m.next_value()?,
                // What a VIP needs (`vip`): an odd value here costs the app its VIPs (said in
                // the log), never the listing the reconciler decides on.
                // marathon-lb reads the app's own labels (its README, "HAPROXY_GROUP").
                "labels" => {
                    let v: serde_json::Value = m.next_value()?;
                    app.marathon_lb = v["HAPROXY_GROUP"]
                        .as_str()
                        .is_some_and(|g| !g.trim().is_empty());
                }
                "portDefinitions" | "container" | "healthChecks" => {
                    let v: serde_json::Value = m.next_value()?;
                    let r = match k.as_str() {
                        "portDefinitions" => Option::<Vec<PortDefinition>>::deserialize(v)
                            .map(|x| app.port_definitions = x.unwrap_or_default()),
                        "container" => {
                            Option::<Container>::deserialize(v).map(|x| app.container = x)
                        }
                        _ => Option::<Vec<HealthCheck>>::deserialize(v)
                            .map(|x| app.health_checks = x.unwrap_or_default()),
                    };
                    if let Err(e) = r {
                        tracing::warn!(app = %app.id, field = %k, error = %e, "app field not understood; the app gets no VIP from it");
                    }
                }
                _ => {
                    m.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(app)
    }
}

/// `tasks`: null (not told) or the tasks, each recording its id in `Seen` as it goes.
struct TaskSeq<'s>(&'s Seen);

impl<'de> serde::de::DeserializeSeed<'de> for TaskSeq<'_> {
    type Value = Option<Vec<Task>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TaskSeq<'_> {
    type Value = Option<Vec<Task>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of tasks")
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(t) = s.next_element_seed(OneTask(self.0))? {
            out.push(t);
        }
        Ok(Some(out))
    }
}

struct OneTask<'s>(&'s Seen);

impl<'de> serde::de::DeserializeSeed<'de> for OneTask<'_> {
    type Value = Task;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Task, D::Error> {
        *self.0.task.borrow_mut() = None;
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for OneTask<'_> {
    type Value = Task;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a task object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Task, A::Error> {
        let mut t = Task::default();
        // Marathon writes `ipAddresses`, `state` and `host` before `id`: they are kept as
        // (small) JSON values and typed once the whole task, and so its id, has been read, so
        // a failure names the task.
        let mut later: Vec<(&'static str, serde_json::Value)> = Vec::new();
        while let Some(k) = m.next_key::<String>()? {
            match k.as_str() {
                "id" => {
                    t.id = m.next_value()?;
                    *self.0.task.borrow_mut() = Some(t.id.clone());
                }
                "host" => later.push(("host", m.next_value()?)),
                "state" => later.push(("state", m.next_value()?)),
                "ipAddresses" => later.push(("ipAddresses", m.next_value()?)),
                "ports" => later.push(("ports", m.next_value()?)),
                "healthCheckResults" => later.push(("healthCheckResults", m.next_value()?)),
                _ => {
                    m.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        fn typed<T: serde::de::DeserializeOwned, E: serde::de::Error>(
            field: &str,
            v: serde_json::Value,
        ) -> Result<T, E> {
            serde_path_to_error::deserialize(v).map_err(|e| {
                let path = e.path().to_string();
                let path = match path.as_str() {
                    "." => String::new(),
                    p if p.starts_with('[') => p.to_owned(),
                    p => format!(".{p}"),
                };
                E::custom(format!("{field}{path}: {}", e.inner()))
            })
        }
        for (field, v) in later {
            match field {
                "host" => t.host = typed(field, v)?,
                "state" => t.state = typed(field, v)?,
                // Null is absent (as for the typed fields' `nullable`).
                "ports" => t.ports = typed::<Option<_>, _>(field, v)?.unwrap_or_default(),
                "healthCheckResults" => {
                    t.health_check_results = typed::<Option<_>, _>(field, v)?.unwrap_or_default()
                }
                _ => t.ip_addresses = typed(field, v)?,
            }
        }
        Ok(t)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodNetwork {
    #[serde(default)]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodContainer {
    #[serde(rename = "containerId", default)]
    pub container_id: String,
    #[serde(default)]
    pub status: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodInstance {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "agentHostname", default)]
    pub agent_hostname: Option<String>,
    #[serde(default)]
    pub networks: Vec<PodNetwork>,
    #[serde(default)]
    pub containers: Vec<PodContainer>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodStatus {
    #[serde(default)]
    pub instances: Vec<PodInstance>,
}

/// Decodes a `/v2/pods/::status` answer pod by pod, so a failure names the pod, the instance
/// and the field.
pub fn decode_pods(v: serde_json::Value) -> Result<Vec<PodStatus>, String> {
    let serde_json::Value::Array(pods) = v else {
        return Err("the pod status answer is not a JSON array".into());
    };
    pods.into_iter()
        .enumerate()
        .map(|(i, p)| {
            let id = p
                .get("id")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| format!("#{i}"));
            serde_path_to_error::deserialize::<_, PodStatus>(&p).map_err(|e| {
                let path = e.path().to_string();
                let inst = path
                    .strip_prefix("instances[")
                    .and_then(|r| r.split(']').next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| p.get("instances")?.get(n)?.get("id")?.as_str())
                    .map(|t| format!(" (instance {t})"))
                    .unwrap_or_default();
                format!("pod {id}: {path}{inst}: {}", e.inner())
            })
        })
        .collect()
}

/// One task as the reconciler sees it (app task or pod container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub id: String,
    pub host: String,
    pub ips: Vec<String>,
    pub state: String,
}

/// Mesos task states after which Marathon considers the task ended (its
/// `TaskCondition`/`Condition.isTerminal`). `TASK_LOST` and `TASK_UNREACHABLE` are not: since
/// Marathon 1.4 they make the instance Unreachable, and it may come back until it is expunged.
pub fn is_terminal_state(s: &str) -> bool {
    matches!(
        s,
        "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_ERROR"
            | "TASK_DROPPED"
            | "TASK_GONE"
            | "TASK_GONE_BY_OPERATOR"
    )
}

/// States in which a task's CNI ADD may still be running, so it has no address to report yet.
pub fn is_starting_state(s: &str) -> bool {
    matches!(s, "" | "TASK_STAGING" | "TASK_STARTING")
}

/// Instance conditions (`instance_changed_event`) after which the instance is gone
/// (Marathon's `Condition.isTerminal`). `Unreachable` and `UnreachableInactive` are not: the
/// instance can come back until Marathon expunges it. Unknown strings are not terminal.
pub fn is_terminal_condition(c: &str) -> bool {
    matches!(
        c,
        "Failed" | "Finished" | "Killed" | "Gone" | "Dropped" | "Error" | "Unknown"
    )
}

/// The task-id prefixes of an instance id: Marathon >= 1.8 names tasks
/// `<instance>.<n>`/`<instance>.<container>`; Marathon 1.4-1.7 names an app instance
/// `<app>.marathon-<uuid>` and its task `<app>.<uuid>`.
pub fn instance_task_ids(instance_id: &str) -> Vec<String> {
    let mut v = vec![instance_id.to_owned()];
    if let Some((app, last)) = instance_id.rsplit_once('.')
        && let Some(uuid) = last.strip_prefix("marathon-")
    {
        v.push(format!("{app}.{uuid}"));
    }
    v
}

impl AppList {
    /// The ids of the apps marathon-lb exposes (`HAPROXY_GROUP` among their labels).
    pub fn marathon_lb_apps(&self) -> Vec<String> {
        self.apps
            .iter()
            .filter(|a| a.marathon_lb)
            .map(|a| a.id.clone())
            .collect()
    }

    /// The apps that ask for a VIP (see [`App::service`]).
    pub fn services(&self) -> Vec<ServiceApp> {
        self.apps.iter().filter_map(App::service).collect()
    }

    pub fn tasks(self) -> impl Iterator<Item = TaskView> {
        self.apps
            .into_iter()
            .flat_map(|a| a.tasks.unwrap_or_default())
            .map(|t| TaskView {
                ips: t.ip_addresses.into_iter().map(|i| i.ip_address).collect(),
                id: t.id,
                host: t.host,
                state: t.state,
            })
    }
}

/// Pod instances → one TaskView per container (task id = `containerId`), sharing the
/// instance's addresses.
pub fn pod_tasks(pods: Vec<PodStatus>) -> impl Iterator<Item = TaskView> {
    pods.into_iter().flat_map(|p| p.instances).flat_map(|i| {
        let ips: Vec<String> = i
            .networks
            .iter()
            .flat_map(|n| n.addresses.iter().cloned())
            .collect();
        let host = i.agent_hostname.clone().unwrap_or_default();
        i.containers.into_iter().map(move |c| TaskView {
            id: c.container_id,
            host: host.clone(),
            ips: ips.clone(),
            state: c.status,
        })
    })
}

/// Events the manager acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Attached,
    StatusUpdate(TaskView),
    InstanceChanged {
        instance_id: String,
        condition: String,
    },
    /// `health_status_changed_event`: a task passed or failed its health checks.
    HealthChanged {
        task_id: String,
        alive: bool,
    },
    Other(String),
    /// A known event whose payload did not decode: the event name and why.
    Undecodable {
        name: String,
        error: String,
    },
}

#[derive(Deserialize)]
struct StatusUpdateJson {
    #[serde(rename = "taskId", default)]
    task_id: String,
    #[serde(rename = "taskStatus", default)]
    task_status: String,
    #[serde(default)]
    host: String,
    #[serde(rename = "ipAddresses", default)]
    ip_addresses: Vec<IpAddress>,
}

#[derive(Deserialize)]
struct HealthChangedJson {
    #[serde(rename = "taskId", default)]
    task_id: String,
    #[serde(rename = "instanceId", default)]
    instance_id: String,
    alive: bool,
}

#[derive(Deserialize)]
struct InstanceChangedJson {
    #[serde(rename = "instanceId", default)]
    instance_id: String,
    #[serde(default)]
    condition: String,
}

impl Event {
    /// Decodes an SSE event by its name; an undecodable payload becomes `Undecodable`, naming
    /// the field at fault.
    pub fn parse(name: &str, data: &str) -> Event {
        match name {
            "event_stream_attached" => Event::Attached,
            "status_update_event" => match serde_path_to_error::deserialize::<_, StatusUpdateJson>(
                &mut serde_json::Deserializer::from_str(data),
            ) {
                Ok(s) => Event::StatusUpdate(TaskView {
                    id: s.task_id,
                    host: s.host,
                    ips: s.ip_addresses.into_iter().map(|i| i.ip_address).collect(),
                    state: s.task_status,
                }),
                Err(e) => Event::Undecodable {
                    name: name.to_owned(),
                    error: format!("{}: {}", e.path(), e.inner()),
                },
            },
            "instance_changed_event" => {
                match serde_path_to_error::deserialize::<_, InstanceChangedJson>(
                    &mut serde_json::Deserializer::from_str(data),
                ) {
                    Ok(i) => Event::InstanceChanged {
                        instance_id: i.instance_id,
                        condition: i.condition,
                    },
                    Err(e) => Event::Undecodable {
                        name: name.to_owned(),
                        error: format!("{}: {}", e.path(), e.inner()),
                    },
                }
            }
            "health_status_changed_event" => {
                match serde_path_to_error::deserialize::<_, HealthChangedJson>(
                    &mut serde_json::Deserializer::from_str(data),
                ) {
                    Ok(h) => Event::HealthChanged {
                        task_id: if h.task_id.is_empty() {
                            h.instance_id
                        } else {
                            h.task_id
                        },
                        alive: h.alive,
                    },
                    Err(e) => Event::Undecodable {
                        name: name.to_owned(),
                        error: format!("{}: {}", e.path(), e.inner()),
                    },
                }
            }
            other => Event::Other(other.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marathon_lb_apps_example_decodes() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/examples/marathon/marathonlb-marathon15_apps.json"
        ))
        .expect("example");
        let l = AppList::decode(serde_json::from_str(&text).expect("json")).expect("decode");
        assert!(l.incomplete().is_empty(), "{:?}", l.incomplete());
        let streamed: Vec<TaskView> = AppList::from_reader(text.as_bytes())
            .expect("decode")
            .tasks()
            .collect();
        let t: Vec<TaskView> = l.tasks().collect();
        assert_eq!(t, streamed);
        assert!(!t.is_empty());
        assert_eq!(t[0].ips, vec!["172.17.0.2".to_owned()]);
        assert_eq!(t[0].state, "TASK_RUNNING");
    }

    fn fixture(name: &str) -> serde_json::Value {
        let p = format!(
            "{}/../tests/fixtures/examples/marathon/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(&p).expect(&p)).expect("json")
    }

    #[test]
    fn a_listing_without_embedded_tasks_is_incomplete() {
        // The marathon-lb capture with its `tasks` removed: tasksRunning = 1, nothing embedded.
        let mut v = fixture("marathonlb-marathon15_apps.json");
        for a in v["apps"].as_array_mut().unwrap() {
            a.as_object_mut().unwrap().remove("tasks");
        }
        let l = AppList::decode(v).unwrap();
        let why = l.incomplete();
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(why[0].contains("/pywebserver"), "{why:?}");
        // Fewer embedded than counted.
        let mut v = fixture("marathonlb-marathon15_apps.json");
        v["apps"][0]["tasksRunning"] = 3.into();
        assert!(!AppList::decode(v).unwrap().incomplete().is_empty());
        // The docs' /v2/apps example (no embed, every count 0) is complete and has no tasks.
        let l = AppList::decode(fixture("marathon-docs-app_list.json")).unwrap();
        assert!(l.incomplete().is_empty());
        assert_eq!(l.tasks().count(), 0);
    }

    #[test]
    fn a_decode_failure_names_the_app_the_task_and_the_field() {
        let mut v = fixture("marathonlb-marathon15_apps.json");
        let tid = v["apps"][0]["tasks"][0]["id"].as_str().unwrap().to_owned();
        v["apps"][0]["tasks"][0]["ipAddresses"][0]["ipAddress"] = 17.into();
        // The same from the answer's bytes, as the client reads it (the task's `id` comes
        // after its `ipAddresses` in Marathon's output).
        let streamed = AppList::from_reader(v.to_string().as_bytes()).unwrap_err();
        let e = AppList::decode(v).unwrap_err();
        for e in [e, streamed] {
            assert!(e.contains("app /pywebserver"), "{e}");
            assert!(e.contains(&tid), "{e}");
            assert!(e.contains("ipAddresses[0].ipAddress"), "{e}");
        }
    }

    #[test]
    fn a_pod_decode_failure_names_the_pod_the_instance_and_the_field() {
        let v = serde_json::json!([{"id": "/p", "instances": [{"id": "p.instance-1",
            "agentHostname": "a1", "networks": [{"addresses": ["10.0.0.2"]}],
            "containers": [{"containerId": 5, "status": "TASK_RUNNING"}]}]}]);
        let e = decode_pods(v).unwrap_err();
        assert!(e.contains("pod /p"), "{e}");
        assert!(e.contains("p.instance-1"), "{e}");
        assert!(e.contains("containers[0].containerId"), "{e}");
        let ok = serde_json::json!([{"id": "/p", "instances": [{"id": "p.instance-1",
            "agentHostname": "a1", "networks": [{"addresses": ["10.0.0.2"]}],
            "containers": [{"containerId": "p.instance-1.c", "status": "TASK_RUNNING"}]}]}]);
        let t: Vec<TaskView> = pod_tasks(decode_pods(ok).unwrap()).collect();
        assert_eq!(t[0].id, "p.instance-1.c");
        assert_eq!(t[0].ips, ["10.0.0.2"]);
    }

    #[test]
    fn apps_marathon_lb_exposes_are_the_ones_with_an_haproxy_group_label() {
        let l = AppList::decode(serde_json::json!({"apps": [
            {"id": "/shop/web", "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "shop"}},
            {"id": "/db", "labels": {"HAPROXY_GROUP": " "}},
            {"id": "/plain", "labels": null},
            {"id": "/other"}
        ]}))
        .unwrap();
        assert_eq!(l.marathon_lb_apps(), ["/shop/web"]);
    }

    #[test]
    fn an_app_with_a_vip_label_keeps_its_ports_health_checks_and_task_health() {
        // The Marathon docs' app, its `vip` labels renamed to the `VIP_0` DC/OS reads, with
        // one task whose health check passed.
        let mut app = fixture("marathon-docs-app.json");
        let mut a = app.get("app").cloned().unwrap_or(app.clone());
        a["container"]["docker"]["portMappings"][0]["labels"] =
            serde_json::json!({"VIP_0": "/foo:80"});
        a["tasks"] = serde_json::json!([{"id": "foo.1", "state": "TASK_RUNNING", "ports": [31001],
            "ipAddresses": [{"ipAddress": "10.32.0.2"}], "healthCheckResults": [{"alive": true}]}]);
        app = serde_json::json!({"apps": [a]});
        let l = AppList::decode(app).unwrap();
        let s = l.services();
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!(s.id, "/foo");
        // Marathon < 1.5 kept the mappings under `container.docker`; they win over
        // `portDefinitions`.
        assert_eq!(s.ports[0].port, Some(80));
        assert_eq!(
            s.ports[0].labels,
            [("VIP_0".to_owned(), "/foo:80".to_owned())]
        );
        assert_eq!(s.health_checks[0].protocol, "HTTP");
        assert_eq!(s.health_checks[0].path.as_deref(), Some("/"));
        assert_eq!(s.health_checks[0].interval_seconds, 20);
        assert_eq!(s.tasks[0].alive, Some(true));
        assert_eq!(s.tasks[0].ports, [31001]);
        // An app without VIP labels keeps nothing; `null`s decode as absent.
        let l = AppList::decode(
            serde_json::json!({"apps": [{"id": "/x", "portDefinitions": null,
            "healthChecks": null, "container": {"portMappings": null},
            "tasks": [{"id": "x.1", "healthCheckResults": null, "ports": null}]}]}),
        )
        .unwrap();
        assert!(l.services().is_empty());
    }

    #[test]
    fn health_events_decode() {
        let e = Event::parse(
            "health_status_changed_event",
            r#"{"appId":"/web","taskId":"web.1","instanceId":"web.marathon-1","version":"v","alive":false,"eventType":"health_status_changed_event","timestamp":"t"}"#,
        );
        assert_eq!(
            e,
            Event::HealthChanged {
                task_id: "web.1".into(),
                alive: false
            }
        );
        assert!(matches!(
            Event::parse("health_status_changed_event", r#"{"taskId":"web.1"}"#),
            Event::Undecodable { .. }
        ));
    }

    #[test]
    fn terminal_states_and_conditions_follow_marathon() {
        for s in [
            "TASK_FINISHED",
            "TASK_FAILED",
            "TASK_KILLED",
            "TASK_ERROR",
            "TASK_DROPPED",
            "TASK_GONE",
            "TASK_GONE_BY_OPERATOR",
        ] {
            assert!(is_terminal_state(s), "{s}");
        }
        for s in [
            "TASK_LOST",
            "TASK_UNREACHABLE",
            "TASK_RUNNING",
            "TASK_KILLING",
        ] {
            assert!(!is_terminal_state(s), "{s}");
        }
        assert!(!is_terminal_condition("UnreachableInactive"));
        assert!(!is_terminal_condition("Unreachable"));
        assert!(is_terminal_condition("Killed"));
    }

    #[test]
    fn marathon_1_4_instance_ids_map_to_their_task_ids() {
        assert_eq!(
            instance_task_ids("web.marathon-9f0c2b8e-0000-11e7-93ae-92361f002671"),
            vec![
                "web.marathon-9f0c2b8e-0000-11e7-93ae-92361f002671".to_owned(),
                "web.9f0c2b8e-0000-11e7-93ae-92361f002671".to_owned()
            ]
        );
        assert_eq!(
            instance_task_ids("pod.instance-a"),
            vec!["pod.instance-a".to_owned()]
        );
    }

    #[test]
    fn an_undecodable_event_says_which_field() {
        let e = Event::parse(
            "status_update_event",
            r#"{"taskId":"a.1","taskStatus":"TASK_RUNNING","ipAddresses":"10.0.0.2"}"#,
        );
        match e {
            Event::Undecodable { name, error } => {
                assert_eq!(name, "status_update_event");
                assert!(error.contains("ipAddresses"), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn events_decode() {
        let e = Event::parse(
            "status_update_event",
            r#"{"slaveId":"S4","taskId":"p.instance-f.sleep1","taskStatus":"TASK_KILLING","message":"","appId":"/p","host":"192.168.65.111","ipAddresses":[{"ipAddress":"9.0.1.3","protocol":"IPv4"}],"ports":[],"version":"v","eventType":"status_update_event","timestamp":"t"}"#,
        );
        assert!(
            matches!(e, Event::StatusUpdate(ref t) if t.ips == ["9.0.1.3"] && t.state == "TASK_KILLING")
        );
        let e = Event::parse(
            "instance_changed_event",
            r#"{"instanceId":"pod-multi.instance-a","condition":"Failed","runSpecId":"/p","agentId":null,"host":null,"runSpecVersion":"v","timestamp":"t","eventType":"instance_changed_event"}"#,
        );
        assert_eq!(
            e,
            Event::InstanceChanged {
                instance_id: "pod-multi.instance-a".into(),
                condition: "Failed".into()
            }
        );
    }
}
