//! The devstack on a config API server it does not run itself (`contrail-devstack demo
//! --vnc-url`): here a VNC stand-in in the test's own namespace, outside the stack's node
//! namespace, reached only over REST (the manager, and the agent feed that learns the ports
//! from virtual-router refs, VMIs and instance-ips). Needs root (network namespaces).

use std::time::{Duration, Instant};

use contrail_devstack::stack::CONTRAIL_NETWORK;
use contrail_devstack::{RunSpec, Stack, StackOptions};
use contrail_integration::netns::require_root;
use contrail_integration::vnc::VncServer;
use serde_json::{Value, json};

fn wait(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// IPs of an app's tasks as Marathon reports them (from the CNI result Mesos recorded).
fn task_ips(stack: &Stack, app: &str) -> Vec<String> {
    let Ok(mut r) = ureq::get(format!("{}/v2/apps?embed=apps.tasks", stack.marathon.url())).call()
    else {
        return Vec::new();
    };
    let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
    let mut ips: Vec<String> = v["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["id"] == app)
        .flat_map(|a| a["tasks"].as_array().cloned().unwrap_or_default())
        .flat_map(|t| t["ipAddresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|i| i["ipAddress"].as_str().map(str::to_owned))
        .collect();
    ips.sort();
    ips
}

#[test]
fn the_devstack_runs_on_a_config_api_server_outside_its_namespace() {
    if !require_root("the_devstack_runs_on_a_config_api_server_outside_its_namespace") {
        return;
    }
    // The stack moves its thread into the node namespace: run it on a thread of its own.
    std::thread::spawn(|| {
        let outside = VncServer::start().expect("VNC outside");
        let mut opts = StackOptions::from_target_dir("debug");
        opts.vnc_url = Some(outside.url());
        let stack = Stack::start(&opts).unwrap_or_else(|e| panic!("stack: {e}"));
        // The node's virtual router was provisioned over REST.
        assert_eq!(outside.count("virtual-router"), 1);
        let spec = RunSpec::from_app(&json!({"id": "/ext", "instances": 2, "cmd": "sleep 3600",
            "cpus": 0.1, "mem": 32, "networks": [{"mode": "container", "name": CONTRAIL_NETWORK,
            "labels": {"networks": "ext-net", "network-subnets": "10.44.0.0/24"}}]}))
        .expect("app");
        stack.scheduler.deploy(spec).expect("deploy");
        // Both tasks run with the addresses VNC allocated: the agent learned the ports.
        wait(Duration::from_secs(60), "2 tasks with IPs", || {
            task_ips(&stack, "/ext") == ["10.44.0.251", "10.44.0.252"]
        });
        assert_eq!(outside.count("virtual-machine-interface"), 2);
        assert_eq!(stack.vnc_count("instance-ip"), 2);
        assert_eq!(
            stack.vnc.count("virtual-machine"),
            0,
            "the in-process stand-in is not used"
        );
        stack.scheduler.destroy("/ext").expect("destroy");
        wait(Duration::from_secs(60), "nothing left", || {
            stack.vnc_counts().iter().all(|(_, n)| *n == 0) && stack.taps().is_empty()
        });
        assert_eq!(outside.count("virtual-machine"), 0);
    })
    .join()
    .expect("the stack thread");
}
