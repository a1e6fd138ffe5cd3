//! The devstack's Mesos agent serves the operator API (`POST /api/v1`, `GET_CONTAINERS`) for
//! every container it launches, from before the container's CNI ADD until after its DEL, with
//! the executor ids Marathon gives: an app task's id (the command executor runs it) and a pod
//! instance's `instance-<safe path>.<uuid>` (root).
//!
//! A CNI plugin of the test's own (a bash script, on a CNI network next to the Contrail ones)
//! asks the operator API during its ADD and records the answer, as a manager asked during ADD
//! would see it. Needs root (the node namespace; prints SKIPPED otherwise) and the binaries the
//! stack starts (see `tests/policy.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use contrail_devstack::{RunSpec, Stack, StackOptions};
use contrail_integration::mesos_agent::{NetworkRequest, write_network_config};
use contrail_integration::netns::require_root;
use serde_json::{Value, json};

fn options() -> StackOptions {
    let o = StackOptions::from_target_dir("debug");
    for p in [
        o.cni_bin.clone(),
        o.manager_bin.clone(),
        o.wasm_dir.join("mesos_delegate.wasm"),
        o.wasm_dir.join("contrail_ipam.wasm"),
    ] {
        assert!(
            p.is_file(),
            "{} is missing: build the CNI host, the manager and the Wasm plugins first",
            p.display()
        );
    }
    o
}

fn post_json(url: &str, body: &str) -> Value {
    let a: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut r = a.post(url).send(body).expect("POST");
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).expect("json")
}

/// container id -> executor id, as `GET_CONTAINERS` lists them now.
fn listed(stack: &Stack) -> BTreeMap<String, String> {
    let v = post_json(
        &format!("{}/api/v1", stack.agent_operator_url()),
        r#"{"type":"GET_CONTAINERS"}"#,
    );
    containers_of(&v)
}

fn containers_of(v: &Value) -> BTreeMap<String, String> {
    v["get_containers"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["container_id"]["value"].as_str().unwrap_or("").to_owned(),
                c["executor_id"]["value"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// A CNI network `op-probe` whose plugin records `GET_CONTAINERS` at ADD in `<dir>/<cid>.json`.
fn install_probe_network(stack: &Stack, dir: &std::path::Path) {
    let port = stack
        .agent_operator_url()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let script = format!(
        r#"#!/bin/bash
# ADD: the agent's operator API, asked from inside the ADD (bash's /dev/tcp, no curl needed).
cat > /dev/null
if [ "$CNI_COMMAND" = ADD ]; then
  body='{{"type":"GET_CONTAINERS"}}'
  exec 3<>/dev/tcp/127.0.0.1/{port}
  printf 'POST /api/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' "${{#body}}" "$body" >&3
  sed -n '/^\r$/,$p' <&3 | tail -n +2 > "{dir}/$CNI_CONTAINERID.json"
fi
echo '{{"cniVersion":"0.2.0"}}'
"#,
        dir = dir.display()
    );
    let plugin = stack.cni_bin_dir.join("op-probe");
    fs::write(&plugin, script).unwrap();
    fs::set_permissions(&plugin, fs::Permissions::from_mode(0o755)).unwrap();
    write_network_config(
        &stack.config_dir,
        "op-probe.conf",
        &json!({"cniVersion": "0.2.0", "name": "op-probe", "type": "op-probe"}),
    )
    .unwrap();
}

/// Task ids as Marathon's `GET /v2/tasks` lists them.
fn marathon_task_ids(stack: &Stack) -> Vec<String> {
    ureq::get(format!("{}/v2/tasks", stack.marathon.url()))
        .call()
        .unwrap()
        .body_mut()
        .read_json::<Value>()
        .unwrap()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

fn probe_run(id: &str, instances: usize, pod_containers: &[&str]) -> RunSpec {
    RunSpec {
        id: id.into(),
        instances,
        networks: vec![NetworkRequest::new("op-probe", &[])],
        containers: pod_containers.iter().map(|c| c.to_string()).collect(),
    }
}

#[test]
fn the_operator_api_lists_each_container_with_marathons_executor_id_from_add_to_del() {
    if !require_root(
        "the_operator_api_lists_each_container_with_marathons_executor_id_from_add_to_del",
    ) {
        return;
    }
    let stack = Stack::start(&options()).unwrap_or_else(|e| panic!("stack: {e}"));
    let cfg = fs::read_to_string(stack.work_dir().join("contrail-mesos-manager-0.toml")).unwrap();
    let port = stack
        .agent_operator_url()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        cfg.contains(&format!(
            "[mesos]\nagent-url = \"http://{{node-ip}}:{port}\""
        )),
        "the manager's config names the operator API: {cfg}"
    );
    let seen = stack.work_dir().join("seen-at-add");
    fs::create_dir_all(&seen).unwrap();
    install_probe_network(&stack, &seen);

    let tasks = stack
        .scheduler
        .deploy(probe_run("/team-a/web", 2, &[]))
        .expect("deploy app");
    let pods = stack
        .scheduler
        .deploy(probe_run("/team-a/pod", 1, &["main", "side"]))
        .expect("deploy pod");
    let now = listed(&stack);
    assert_eq!(now.len(), 3, "{now:?}");

    // An app task: the executor id is the task id Marathon lists, `team-a_web.<uuid>`.
    let marathon_tasks = marathon_task_ids(&stack);
    for (task, cid, _, _) in stack.scheduler.instances("/team-a/web") {
        assert!(tasks.contains(&task));
        assert!(
            marathon_tasks.contains(&task),
            "{task} in {marathon_tasks:?}"
        );
        let u = task.strip_prefix("team-a_web.").expect("safe path prefix");
        assert!(uuid::Uuid::parse_str(u).is_ok(), "{task}");
        assert_eq!(now.get(&cid), Some(&task));
        // Already listed, with its executor, while its CNI ADD ran.
        let at_add: Value =
            serde_json::from_str(&fs::read_to_string(seen.join(format!("{cid}.json"))).unwrap())
                .unwrap();
        assert_eq!(containers_of(&at_add).get(&cid), Some(&task));
    }
    // A pod instance `team-a_pod.instance-<uuid>`: its executor is `instance-team-a_pod.<uuid>`.
    let (instance, cid, _, _) = stack.scheduler.instances("/team-a/pod").remove(0);
    assert_eq!(pods, vec![instance.clone()]);
    let u = instance
        .strip_prefix("team-a_pod.instance-")
        .expect("instance id form");
    assert_eq!(now.get(&cid), Some(&format!("instance-team-a_pod.{u}")));

    // Marathon >= 1.5's instance-style task ids: the same id in Marathon and as the executor.
    stack
        .scheduler
        .instance_style_task_ids
        .store(true, std::sync::atomic::Ordering::SeqCst);
    stack
        .scheduler
        .deploy(probe_run("/team-b/api", 1, &[]))
        .expect("deploy instance-style app");
    let (task, cid, _, _) = stack.scheduler.instances("/team-b/api").remove(0);
    let u = task
        .strip_prefix("team-b_api.instance-")
        .and_then(|t| t.strip_suffix("._app.1"))
        .expect("instance-style task id");
    assert!(uuid::Uuid::parse_str(u).is_ok(), "{task}");
    assert_eq!(listed(&stack).get(&cid), Some(&task));
    assert!(marathon_task_ids(&stack).contains(&task));
    stack.scheduler.destroy("/team-b/api").unwrap();

    // Gone once destroyed (after its DEL); a failed launch is never left listed.
    stack.scheduler.scale("/team-a/web", 1).unwrap();
    assert_eq!(listed(&stack).len(), 2);
    stack.scheduler.destroy("/team-a/pod").unwrap();
    stack.scheduler.destroy("/team-a/web").unwrap();
    let bad = RunSpec {
        networks: vec![NetworkRequest::new("no-such-network", &[])],
        ..probe_run("/bad", 1, &[])
    };
    assert!(stack.scheduler.deploy(bad).is_err());
    assert!(listed(&stack).is_empty(), "{:?}", listed(&stack));
}
