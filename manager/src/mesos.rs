//! The Mesos agent's operator API (`POST /api/v1`, `{"type": "GET_CONTAINERS"}`; Apache Mesos
//! "Operator HTTP API", agent calls): which containers an agent runs, by container id, with
//! the executor each belongs to. It is the identity the reconciler prefers to an address:
//! a container its agent still runs is never deleted, whatever Marathon's listing says, and
//! for Marathon's command executor the executor id is the task id.

use std::collections::HashMap;
use std::time::Duration;

use contrail_mesos_api::Node;
use serde::Deserialize;

/// One container an agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentContainer {
    pub container_id: String,
    pub executor_id: String,
    pub framework_id: String,
}

pub trait AgentApi: Send + Sync {
    /// The containers the agent of `node` runs (top-level ones: the CNI attaches those).
    fn containers(&self, node: &Node) -> Result<Vec<AgentContainer>, String>;
}

#[derive(Debug, Default, Deserialize)]
struct Id {
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
struct Container {
    container_id: Id,
    #[serde(default)]
    executor_id: Id,
    #[serde(default)]
    framework_id: Id,
}

#[derive(Debug, Default, Deserialize)]
struct GetContainers {
    #[serde(default)]
    containers: Vec<Container>,
}

#[derive(Debug, Deserialize)]
struct Response {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    get_containers: Option<GetContainers>,
}

/// Decodes a `GET_CONTAINERS` answer.
pub fn decode_containers(body: &str) -> Result<Vec<AgentContainer>, String> {
    let r: Response =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(body))
            .map_err(|e| format!("GET_CONTAINERS answer: {}: {}", e.path(), e.inner()))?;
    if r.ty != "GET_CONTAINERS" {
        return Err(format!("answer of type {:?}, not GET_CONTAINERS", r.ty));
    }
    Ok(r.get_containers
        .unwrap_or_default()
        .containers
        .into_iter()
        .map(|c| AgentContainer {
            container_id: c.container_id.value,
            executor_id: c.executor_id.value,
            framework_id: c.framework_id.value,
        })
        .collect())
}

/// The operator API over HTTP. `url` is a template: `{node-ip}` and `{node-name}` are
/// replaced by the attachment's node (e.g. `http://{node-ip}:5051`).
pub struct HttpAgent {
    url: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl HttpAgent {
    /// `tls`: client TLS settings for an `https://` template (`[mesos] ca-file`).
    pub fn new(
        url: &str,
        token: Option<String>,
        timeout: Duration,
        tls: ureq::tls::TlsConfig,
    ) -> HttpAgent {
        HttpAgent {
            url: url.to_owned(),
            token,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .proxy(None)
                .timeout_global(Some(timeout))
                .tls_config(tls)
                .build()
                .into(),
        }
    }

    pub fn endpoint(&self, node: &Node) -> String {
        format!(
            "{}/api/v1",
            self.url
                .replace("{node-ip}", &node.ip)
                .replace("{node-name}", &node.name)
                .trim_end_matches('/')
        )
    }
}

impl AgentApi for HttpAgent {
    fn containers(&self, node: &Node) -> Result<Vec<AgentContainer>, String> {
        let url = self.endpoint(node);
        let mut rb = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(t) = &self.token {
            rb = rb.header("Authorization", format!("token={t}"));
        }
        let mut resp = rb.send(r#"{"type":"GET_CONTAINERS"}"#).map_err(|e| {
            match contrail_mesos_api::tls::failure(&e) {
                Some(reason) => contrail_mesos_api::tls::describe(&url, &reason),
                None => format!("{url}: {e}"),
            }
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| format!("{url}: {e}"))?;
        if status != 200 {
            return Err(format!("{url} answered {status}"));
        }
        decode_containers(&body).map_err(|e| format!("{url}: {e}"))
    }
}

/// What the agents said during one pass: per node, the container ids they run and each
/// one's executor, or `None` when the agent could not be asked.
#[derive(Debug, Default, Clone)]
pub struct AgentView {
    nodes: HashMap<(String, String), Option<HashMap<String, String>>>,
}

impl AgentView {
    /// Asks the agent of every node in `nodes` once.
    pub fn fetch<'a>(api: &dyn AgentApi, nodes: impl IntoIterator<Item = &'a Node>) -> AgentView {
        let mut v = AgentView::default();
        for n in nodes {
            let key = (n.name.clone(), n.ip.clone());
            if v.nodes.contains_key(&key) {
                continue;
            }
            let r = match api.containers(n) {
                Ok(cs) => Some(
                    cs.into_iter()
                        .map(|c| (c.container_id, c.executor_id))
                        .collect(),
                ),
                Err(e) => {
                    tracing::warn!(node = %n.name, error = %e, "Mesos agent not reachable; Marathon decides alone for its containers");
                    None
                }
            };
            v.nodes.insert(key, r);
        }
        v
    }

    /// `Some(Some(executor))`: the agent runs the container; `Some(None)`: it answered and
    /// does not; `None`: nobody could be asked.
    pub fn runs(&self, node: &Node, container_id: &str) -> Option<Option<&str>> {
        let m = self
            .nodes
            .get(&(node.name.clone(), node.ip.clone()))?
            .as_ref()?;
        Some(m.get(container_id).map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_containers_answer_decodes() {
        // The shape of the operator API docs' GET_CONTAINERS example.
        let body = r#"{"type":"GET_CONTAINERS","get_containers":{"containers":[{"container_id":{"value":"f0f97041-1860-4b9a-bc4d-57d8b8d4b8c1"},"executor_id":{"value":"web.8f2c"},"executor_name":"Command Executor","framework_id":{"value":"cbe36f41-0000"},"resource_statistics":{"cpus_limit":0.2,"timestamp":1.5}}]}}"#;
        let c = decode_containers(body).unwrap();
        assert_eq!(
            c,
            vec![AgentContainer {
                container_id: "f0f97041-1860-4b9a-bc4d-57d8b8d4b8c1".into(),
                executor_id: "web.8f2c".into(),
                framework_id: "cbe36f41-0000".into(),
            }]
        );
        assert_eq!(
            decode_containers(r#"{"type":"GET_CONTAINERS","get_containers":{}}"#).unwrap(),
            vec![]
        );
        let e = decode_containers(
            r#"{"type":"GET_CONTAINERS","get_containers":{"containers":[{"container_id":7}]}}"#,
        )
        .unwrap_err();
        assert!(e.contains("container_id"), "{e}");
        assert!(decode_containers(r#"{"type":"GET_HEALTH"}"#).is_err());
    }

    #[test]
    fn the_url_template_names_the_node() {
        let a = HttpAgent::new(
            "http://{node-ip}:5051/",
            None,
            Duration::from_secs(1),
            Default::default(),
        );
        let n = Node {
            name: "agent-1".into(),
            ip: "10.0.0.5".into(),
        };
        assert_eq!(a.endpoint(&n), "http://10.0.0.5:5051/api/v1");
    }
}
