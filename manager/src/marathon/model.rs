//! The parts of Marathon's JSON the manager uses (`cni-mesos-marathon.md` §3.4-3.6); every
//! other field is skipped while decoding.

use serde::Deserialize;

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
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct App {
    #[serde(default)]
    pub tasks: Vec<Task>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppList {
    #[serde(default)]
    pub apps: Vec<App>,
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

/// One task as the reconciler sees it (app task or pod container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub id: String,
    pub host: String,
    pub ips: Vec<String>,
    pub state: String,
}

/// Mesos task states after which the task's network is gone.
pub fn is_terminal_state(s: &str) -> bool {
    matches!(
        s,
        "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_ERROR"
            | "TASK_LOST"
            | "TASK_DROPPED"
            | "TASK_GONE"
            | "TASK_GONE_BY_OPERATOR"
    )
}

/// Instance conditions (`instance_changed_event`) after which the instance is gone. Unknown
/// strings (Marathon renamed some across versions) are not terminal.
pub fn is_terminal_condition(c: &str) -> bool {
    matches!(
        c,
        "Failed" | "Finished" | "Killed" | "Gone" | "Dropped" | "Error" | "UnreachableInactive"
    )
}

impl AppList {
    pub fn tasks(self) -> impl Iterator<Item = TaskView> {
        self.apps
            .into_iter()
            .flat_map(|a| a.tasks)
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
    Other(String),
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
struct InstanceChangedJson {
    #[serde(rename = "instanceId", default)]
    instance_id: String,
    #[serde(default)]
    condition: String,
}

impl Event {
    /// Decodes an SSE event by its name; undecodable payloads become `Other`.
    pub fn parse(name: &str, data: &str) -> Event {
        match name {
            "event_stream_attached" => Event::Attached,
            "status_update_event" => match serde_json::from_str::<StatusUpdateJson>(data) {
                Ok(s) => Event::StatusUpdate(TaskView {
                    id: s.task_id,
                    host: s.host,
                    ips: s.ip_addresses.into_iter().map(|i| i.ip_address).collect(),
                    state: s.task_status,
                }),
                Err(_) => Event::Other(name.to_owned()),
            },
            "instance_changed_event" => match serde_json::from_str::<InstanceChangedJson>(data) {
                Ok(i) => Event::InstanceChanged {
                    instance_id: i.instance_id,
                    condition: i.condition,
                },
                Err(_) => Event::Other(name.to_owned()),
            },
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
        let l: AppList = serde_json::from_str(&text).expect("decode");
        let t: Vec<TaskView> = l.tasks().collect();
        assert!(!t.is_empty());
        assert_eq!(t[0].ips, vec!["172.17.0.2".to_owned()]);
        assert_eq!(t[0].state, "TASK_RUNNING");
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
