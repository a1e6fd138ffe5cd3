//! Isolation modes: which virtual network a container without a `networks` label lands on.
//! Contrail's container networking knows four (its Kubernetes design: cluster, namespace, app and
//! user-defined isolation); on Marathon a group plays the namespace's part:
//!
//! - `cluster`: the cluster's default network, provisioned at start;
//! - `group`: one project and network per Marathon group (the first `group-depth` segments of
//!   the app id), so tasks of two groups cannot talk unless a policy allows it;
//! - `app`: one network per Marathon app;
//! - `user-defined`: the labels decide (a `networks` label always wins, in every mode).
//!
//! The mode is the manager's `[cluster] isolation`, overridden per app by its `isolation`
//! label. Group and app modes need the container's Marathon app, which the CNI does not know:
//! Mesos hands it a ContainerID. The agent's operator API (`GET_CONTAINERS`, Apache Mesos
//! `docs/operator-http-api.md`) maps the ContainerID to its executor, whose id is the Marathon
//! task id for Marathon's command executor (and the instance id for pods), and Marathon's task
//! ids name their app (`team-a_web.<uuid>`, Marathon's `core/task/Task.scala` `Id`).

use contrail_mesos_api::{AttachRequest, Isolation, Node};

use crate::mesos::AgentApi;

/// A container's Marathon identity, as its agent reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIdentity {
    /// The executor id: the Marathon task id (or the pod instance id).
    pub task_id: String,
    /// `/team-a/web`.
    pub app_id: String,
    /// marathon-lb exposes the app (`HAPROXY_GROUP` among its labels, as of the last listing):
    /// its network must let the fabric in.
    pub marathon_lb: bool,
}

/// Where a container's interface goes when its labels name no network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The `networks` label names the network (or none does and the mode is user-defined or
    /// cluster): the cluster's default network when absent.
    Labels,
    /// The network of this Marathon group (`/team-a`).
    Group(String),
    /// The network of this Marathon app (`/team-a/web`).
    App(String),
}

/// Why no placement could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementError {
    /// The agent could not be asked (transient: the ADD can be retried).
    AgentUnreachable(String),
    /// The mode needs the agent's operator API and `[mesos] agent-url` is not set.
    NoAgentApi,
}

/// The app id of a Marathon task or instance id, or `None` when the id is not one Marathon
/// makes (another framework's executor). Forms: `app_path.<uuid>` (Marathon < 1.5),
/// `app_path.instance-<uuid>._app.<n>` and `app_path.marathon-<uuid>` (instances, 1.5+), and
/// for pods the default executor's `instance-app_path.<uuid>`. The path is the app id
/// with `/` made `_`, which no Marathon id segment contains.
pub fn app_of_task(task_id: &str) -> Option<String> {
    let id = task_id.strip_prefix("instance-").unwrap_or(task_id);
    let safe = ["instance-", "marathon-"]
        .iter()
        .filter_map(|m| id.find(&format!(".{m}")).map(|i| &id[..i]))
        .min_by_key(|s| s.len())
        .or_else(|| id.rsplit_once('.').map(|(a, _)| a))?;
    let app = format!("/{}", safe.replace('_', "/"));
    contrail_mesos_api::allow::marathon_path_ok(&app).then_some(app)
}

/// The group of an app at `depth` (1 = top-level): `/team-a` for `/team-a/web`. `None` for an
/// app directly in the root group, which has no group of its own.
pub fn group_of(app_id: &str, depth: usize) -> Option<String> {
    let segs: Vec<&str> = app_id.trim_start_matches('/').split('/').collect();
    if segs.len() < 2 {
        return None;
    }
    let n = depth.clamp(1, segs.len() - 1);
    Some(format!("/{}", segs[..n].join("/")))
}

/// Marathon's own reversible form of a path id (`/team-a/web` -> `team-a_web`), used in VNC
/// names, which cannot hold `/` in a readable way.
pub fn safe_path(p: &str) -> String {
    p.trim_start_matches('/').replace('/', "_")
}

/// The effective mode of a request: a `networks` label wins; then the `isolation` label; then
/// the manager's default.
pub fn mode_of(req: &AttachRequest, default: Isolation) -> Isolation {
    if req.request.network.is_some() {
        return Isolation::UserDefined;
    }
    req.request.isolation.unwrap_or(default)
}

/// Asks the container's agent who the container belongs to. `Ok(None)`: the agent does not
/// run it under a Marathon-made executor id (another framework, or not listed).
pub fn identify(
    agents: &dyn AgentApi,
    node: &Node,
    container_id: &str,
) -> Result<Option<TaskIdentity>, String> {
    // A nested container (`parent.child`) belongs to its top-level container's executor.
    let top = container_id.split('.').next().unwrap_or(container_id);
    let cs = agents.containers(node)?;
    Ok(cs
        .into_iter()
        .find(|c| c.container_id == top)
        .and_then(|c| {
            app_of_task(&c.executor_id).map(|app_id| TaskIdentity {
                task_id: c.executor_id,
                app_id,
                marathon_lb: false,
            })
        }))
}

/// The placement of one request, and the container's task when its agent names it. With
/// `[mesos] agent-url` the agent is asked at every registration, whatever the mode: the task id
/// it names is the join the reconciler uses (an address cannot tell two networks' equal
/// addresses apart). Only group and app mode fail without an answer.
pub fn place(
    req: &AttachRequest,
    default: Isolation,
    group_depth: usize,
    agents: Option<&dyn AgentApi>,
) -> Result<(Placement, Option<TaskIdentity>), PlacementError> {
    let mode = mode_of(req, default);
    let needs_app = matches!(mode, Isolation::Group | Isolation::App);
    let who = match agents {
        None if needs_app => return Err(PlacementError::NoAgentApi),
        None => None,
        Some(a) => match identify(a, &req.node, &req.container_id) {
            Ok(w) => w,
            Err(e) if needs_app => return Err(PlacementError::AgentUnreachable(e)),
            Err(e) => {
                tracing::debug!(cid = %req.container_id, error = %e, "agent not asked successfully; the reconciler joins the task later");
                None
            }
        },
    };
    if !needs_app {
        return Ok((Placement::Labels, who));
    }
    let Some(who) = who else {
        tracing::warn!(cid = %req.container_id, node = %req.node.name, mode = mode.as_str(),
            "the agent names no Marathon task for this container (another framework?); it goes on the cluster network");
        return Ok((Placement::Labels, None));
    };
    let p = match mode {
        Isolation::Group => match group_of(&who.app_id, group_depth) {
            Some(g) => Placement::Group(g),
            None => {
                tracing::info!(app = %who.app_id, "an app in the root group has no group network; it goes on the cluster network");
                Placement::Labels
            }
        },
        _ => Placement::App(who.app_id.clone()),
    };
    Ok((p, Some(who)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesos::AgentContainer;

    #[test]
    fn task_ids_of_every_marathon_version_name_their_app() {
        for (task, app) in [
            ("web.8f2c1f4e-1d2b-11e9-9d3f-0242ac110002", Some("/web")),
            (
                "team-a_web.8f2c1f4e-1d2b-11e9-9d3f-0242ac110002",
                Some("/team-a/web"),
            ),
            (
                "team-a_api.v2.instance-8f2c1f4e-1d2b-11e9-9d3f-0242ac110002._app.1",
                Some("/team-a/api.v2"),
            ),
            (
                "team-a_web.marathon-8f2c1f4e-1d2b-11e9-9d3f-0242ac110002",
                Some("/team-a/web"),
            ),
            (
                "instance-prod_db.instance-8f2c1f4e-1d2b-11e9-9d3f-0242ac110002",
                Some("/prod/db"),
            ),
            // A pod's default executor (Marathon's `executorIdString`).
            (
                "instance-team-a_pod.8f2c1f4e-1d2b-11e9-9d3f-0242ac110002",
                Some("/team-a/pod"),
            ),
            ("Executor_1", None),
            ("thermos-www-data-prod-hello-0-1234", None),
            ("", None),
            ("nodots", None),
        ] {
            assert_eq!(app_of_task(task).as_deref(), app, "{task}");
        }
    }

    #[test]
    fn groups_are_taken_at_the_configured_depth() {
        assert_eq!(group_of("/team-a/web", 1).as_deref(), Some("/team-a"));
        assert_eq!(group_of("/team-a/back/db", 1).as_deref(), Some("/team-a"));
        assert_eq!(
            group_of("/team-a/back/db", 2).as_deref(),
            Some("/team-a/back")
        );
        // Deeper than the app's own group: its own group.
        assert_eq!(group_of("/team-a/web", 3).as_deref(), Some("/team-a"));
        assert_eq!(group_of("/web", 1), None);
        assert_eq!(safe_path("/team-a/web"), "team-a_web");
    }

    struct Agent(Result<Vec<AgentContainer>, String>);
    impl AgentApi for Agent {
        fn containers(&self, _: &Node) -> Result<Vec<AgentContainer>, String> {
            self.0.clone()
        }
    }

    fn req(labels: &str) -> AttachRequest {
        let mut r: AttachRequest = serde_json::from_value(serde_json::json!({
            "container-id": "c1.nested", "ifname": "eth0",
            "node": {"name": "a1", "ip": "10.0.0.1"}, "network-name": "contrail",
            "request": {}
        }))
        .unwrap();
        if labels == "networks" {
            r.request.network = Some(vec!["blue".into()]);
        } else if let Some(i) = Isolation::parse(labels) {
            r.request.isolation = Some(i);
        }
        r
    }

    fn runs(exec: &str) -> Agent {
        Agent(Ok(vec![AgentContainer {
            container_id: "c1".into(),
            executor_id: exec.into(),
            framework_id: "fw".into(),
        }]))
    }

    #[test]
    fn placement_follows_the_mode_and_labels_win() {
        let a = runs("team-a_web.1234");
        let p = |r: &AttachRequest, d, ag: Option<&dyn AgentApi>| place(r, d, 1, ag);
        assert_eq!(
            p(&req(""), Isolation::Group, Some(&a)).unwrap().0,
            Placement::Group("/team-a".into())
        );
        let (pl, who) = p(&req("app"), Isolation::Group, Some(&a)).unwrap();
        assert_eq!(pl, Placement::App("/team-a/web".into()));
        assert_eq!(who.unwrap().task_id, "team-a_web.1234");
        // A `networks` label wins, and the task is still named (the join).
        let (pl, who) = p(&req("networks"), Isolation::App, Some(&a)).unwrap();
        assert_eq!(pl, Placement::Labels);
        assert_eq!(who.unwrap().app_id, "/team-a/web");
        assert_eq!(
            p(&req("cluster"), Isolation::App, None).unwrap().0,
            Placement::Labels
        );
        assert_eq!(
            p(&req(""), Isolation::App, None).unwrap_err(),
            PlacementError::NoAgentApi
        );
        let down = Agent(Err("connection refused".into()));
        assert!(matches!(
            p(&req(""), Isolation::App, Some(&down)).unwrap_err(),
            PlacementError::AgentUnreachable(_)
        ));
        // Cluster mode does not need the answer.
        assert_eq!(
            p(&req(""), Isolation::Cluster, Some(&down)).unwrap(),
            (Placement::Labels, None)
        );
        // Another framework's executor, or a container the agent does not list: the cluster
        // network.
        let other = runs("Executor_1");
        assert_eq!(
            p(&req(""), Isolation::App, Some(&other)).unwrap(),
            (Placement::Labels, None)
        );
        let none = Agent(Ok(vec![]));
        assert_eq!(
            p(&req(""), Isolation::Group, Some(&none)).unwrap(),
            (Placement::Labels, None)
        );
        // An app in the root group has no group network.
        let root = runs("web.1234");
        assert_eq!(
            p(&req(""), Isolation::Group, Some(&root)).unwrap().0,
            Placement::Labels
        );
    }
}
