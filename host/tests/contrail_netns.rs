//! The Contrail path end to end, in real network namespaces (root): the real binary, run inside
//! a test-owned "node" namespace (so its taps never touch the machine's own namespace), against
//! the vRouter agent and attachment-API stand-ins listening on the node's 127.0.0.1.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use contrail_integration::attach_standin::AttachStandin;
use contrail_integration::netns::{TestNetns, require_root};
use contrail_integration::paths::wasm_plugin;
use contrail_integration::vrouter_agent::{AgentStandin, VmiSpec, mac_for};
use serde_json::{Value, json};

/// A node: its namespace, the agent (and manager) stand-ins inside it, a port dir and a Wasm
/// cache.
struct Node {
    ns: TestNetns,
    agent: Arc<AgentStandin>,
    manager: Option<AttachStandin>,
    dir: tempfile::TempDir,
}

fn wasm_cache() -> PathBuf {
    // Shared across tests of this binary so the plugins are compiled once; under cargo's
    // per-target scratch dir so that nothing is left in /tmp.
    let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join("contrail-cni-test-wasm-cache");
    std::fs::create_dir_all(&p).unwrap();
    p
}

impl Node {
    fn new(with_manager: bool) -> Node {
        let ns = TestNetns::new("n");
        let agent = Arc::new(AgentStandin::start_in_netns(&ns.path()));
        let manager =
            with_manager.then(|| AttachStandin::start_in_netns(&ns.path(), agent.clone()));
        Node {
            ns,
            agent,
            manager,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A port of the node's 127.0.0.1 nothing listens on (bound once, then released).
    fn dead_port(&self) -> u16 {
        let ns = File::open(self.ns.path()).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            })
            .join()
            .unwrap()
        })
    }

    /// Whether a TCP connection to the node's 127.0.0.1:`port` is refused.
    fn refused(&self, port: u16) -> bool {
        let ns = File::open(self.ns.path()).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            })
            .join()
            .unwrap()
        })
    }

    fn ports_dir(&self) -> PathBuf {
        self.dir.path().join("ports")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Our attachment records: (network, "container-id=ifname").
    fn records(&self) -> Vec<(String, String)> {
        let mut out = vec![];
        for n in std::fs::read_dir(self.state_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            for r in std::fs::read_dir(n.path()).into_iter().flatten().flatten() {
                out.push((
                    n.file_name().to_string_lossy().into_owned(),
                    r.file_name().to_string_lossy().into_owned(),
                ));
            }
        }
        out.sort();
        out
    }

    /// `contrail-cni-plugin sweep --config <conf> [--dry-run]` inside the node namespace:
    /// (exit ok, stdout).
    fn sweep(&self, conf: &Value, dry_run: bool) -> (bool, String) {
        let file = self.dir.path().join("sweep.conf");
        std::fs::write(&file, conf.to_string()).unwrap();
        let node = File::open(self.ns.path()).unwrap();
        let fd = node.as_raw_fd();
        let mut c = Command::new(contrail_integration::cni_host!());
        c.arg("sweep").arg("--config").arg(&file);
        if dry_run {
            c.arg("--dry-run");
        }
        // SAFETY: setns is async-signal-safe; the fd outlives the spawn.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = c.output().expect("run sweep");
        drop(node);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            eprintln!("sweep: {stderr}");
        }
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn conf(&self, version: &str) -> Value {
        let mut c = json!({
            "cniVersion": version,
            "name": "contrail-cni-plugin",
            "type": "contrail-cni-plugin",
            "contrail": {
                "vrouter-ip": "127.0.0.1",
                "vrouter-port": self.agent.port(),
                "cluster-name": "node1",
                "config-dir": self.ports_dir(),
                "state-dir": self.state_dir(),
                "poll-timeout": 0.2,
                "poll-retries": 10,
                "log-file": self.dir.path().join("cni.log"),
                "log-level": "debug",
                "mode": "mesos",
                "mtu": 1400
            },
            "wasm": {
                "translator": wasm_plugin("mesos_delegate"),
                "ipam": wasm_plugin("contrail_ipam"),
                "cache-dir": wasm_cache()
            },
            "args": {"org.apache.mesos": {"network_info": {
                "name": "contrail-cni-plugin",
                "labels": {"labels": [
                    {"key": "networks", "value": "blue-network"},
                    {"key": "network-subnets", "value": "5.5.5.0/24"}
                ]},
                "ip_addresses": [{"protocol": "IPv4"}]
            }}}
        });
        if let Some(m) = &self.manager {
            c["contrail"]["mesos-ip"] = json!("127.0.0.1");
            c["contrail"]["mesos-port"] = json!(m.port().to_string());
        }
        c
    }

    /// Runs the plugin inside the node namespace. Returns (exit ok, stdout JSON or Null).
    fn cni(
        &self,
        cmd: &str,
        cid: &str,
        ifname: &str,
        netns: Option<&Path>,
        conf: &Value,
    ) -> (bool, Value) {
        self.cni_args(cmd, cid, ifname, netns, conf, None)
    }

    fn cni_args(
        &self,
        cmd: &str,
        cid: &str,
        ifname: &str,
        netns: Option<&Path>,
        conf: &Value,
        args: Option<&str>,
    ) -> (bool, Value) {
        let node = File::open(self.ns.path()).unwrap();
        let fd = node.as_raw_fd();
        let mut c = Command::new(contrail_integration::cni_host!());
        c.env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", cid)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(n) = netns {
            c.env("CNI_NETNS", n);
        }
        if let Some(a) = args {
            c.env("CNI_ARGS", a);
        }
        // SAFETY: setns is async-signal-safe; the fd outlives the spawn.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = c.spawn().expect("spawn plugin");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        drop(node);
        let text = String::from_utf8_lossy(&out.stdout);
        let v = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(json!({"raw": text}))
        };
        if !out.status.success() {
            eprintln!(
                "{cmd} {cid} {ifname}: {v}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (out.status.success(), v)
    }

    fn taps(&self) -> Vec<String> {
        let v = self.ns.links();
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| n.starts_with("tap"))
            .map(str::to_owned)
            .collect()
    }

    fn tap(&self, name: &str) -> Option<Value> {
        self.ns
            .links()
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["ifname"] == name)
            .cloned()
    }

    fn port_files(&self) -> Vec<PathBuf> {
        let mut out = vec![];
        if let Ok(d) = std::fs::read_dir(self.ports_dir()) {
            for e in d.flatten() {
                out.push(e.path());
                if let Ok(d2) = std::fs::read_dir(e.path()) {
                    out.extend(d2.flatten().map(|e| e.path()));
                }
            }
        }
        out
    }
}

/// DEL frees the names at once and the kernel finishes the veth teardown in a detached child
/// (`async-teardown`): what is gone must be gone within a bounded time.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(3),
            "still not true after 3 s: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn only_lo(ns: &TestNetns) -> bool {
    ns.links().as_array().unwrap().len() == 1
}

fn link<'a>(links: &'a Value, name: &str) -> Option<&'a Value> {
    links
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifname"] == name)
}

fn cid(n: u32) -> String {
    format!(
        "5baff64c-d028-47ba-864e-{:012x}",
        0xa5ee_0000_0000u64 + std::process::id() as u64 * 1000 + n as u64
    )
}

/// The whole ADD → verify → DEL → verify cycle, Mesos mode with the manager.
#[test]
fn contrail_add_verify_del_mesos() {
    if !require_root("contrail_add_verify_del_mesos") {
        return;
    }
    let node = Node::new(true);
    let ct = TestNetns::new("c");
    let id = cid(1);
    let conf = node.conf("0.2.0");
    let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(ok, "{res}");

    // The manager stand-in allocated 5.5.5.2/24; gateway .254, DNS .253 (Contrail's service
    // addresses). Result in 0.2.0 for Mesos.
    assert_eq!(res["cniVersion"], "0.2.0");
    assert_eq!(res["ip4"]["ip"], "5.5.5.2/24");
    assert_eq!(res["ip4"]["gateway"], "5.5.5.254");
    assert_eq!(
        res["ip4"]["routes"][0],
        json!({"dst": "0.0.0.0/0", "gw": "5.5.5.254"})
    );
    assert_eq!(res["dns"]["nameservers"], json!(["5.5.5.253"]));

    // Inside the container.
    let att = node.manager.as_ref().unwrap().attachments().pop().unwrap();
    let links = ct.links();
    let eth0 = link(&links, "eth0").expect("eth0 in the container");
    assert_eq!(eth0["address"], mac_for(&att.vmi_uuid));
    assert_eq!(eth0["mtu"], 1400);
    assert!(
        eth0["flags"].as_array().unwrap().contains(&json!("UP")),
        "{eth0}"
    );
    let addrs = ct.ip(&["-j", "-4", "addr", "show", "dev", "eth0"]);
    let addrs: Value = serde_json::from_str(&addrs).unwrap();
    let a = &addrs[0]["addr_info"][0];
    assert_eq!(
        (a["local"].as_str(), a["prefixlen"].as_u64()),
        (Some("5.5.5.2"), Some(24))
    );
    let routes: Value = serde_json::from_str(&ct.ip(&["-j", "-4", "route", "show"])).unwrap();
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "5.5.5.254" && r["dev"] == "eth0"),
        "{routes}"
    );

    // On the node: one tap, up, MTU 1400, 14 characters.
    let taps = node.taps();
    assert_eq!(taps.len(), 1, "{taps:?}");
    let tap = &taps[0];
    assert_eq!(tap.len(), 14);
    let t = node.tap(tap).unwrap();
    assert!(t["flags"].as_array().unwrap().contains(&json!("UP")), "{t}");
    assert_eq!(t["mtu"], 1400);

    // The port file is exactly the POST /vm body the agent received.
    let posts = node.agent.requests_matching("POST", "/vm");
    assert_eq!(posts.len(), 1);
    let file = node.ports_dir().join(&id).join(&att.vmi_uuid);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes, posts[0].body);
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "time",
            "vm-id",
            "vm-uuid",
            "vm-name",
            "host-ifname",
            "vm-ifname",
            "vm-namespace",
            "vn-uuid",
            "vmi-uuid"
        ]
    );
    assert_eq!(body["vm-id"], id.as_str());
    assert_eq!(body["vm-uuid"], id.as_str());
    assert_eq!(body["vm-name"], id.as_str());
    assert_eq!(body["host-ifname"], tap.as_str());
    assert_eq!(body["vm-ifname"], "eth0");
    assert_eq!(body["vm-namespace"], ct.path().to_str().unwrap());
    assert_eq!(body["vmi-uuid"], att.vmi_uuid.as_str());
    assert!(
        String::from_utf8(bytes)
            .unwrap()
            .starts_with("{\n\t\"time\": \"")
    );
    // The manager got the translated labels.
    let reg: Value =
        serde_json::from_slice(&node.manager.as_ref().unwrap().requests()[0].body).unwrap();
    assert_eq!(reg["request"]["network"], json!(["blue-network"]));
    assert_eq!(reg["request"]["subnets"], json!(["5.5.5.0/24"]));
    assert_eq!(reg["node"], json!({"name": "node1", "ip": "127.0.0.1"}));

    // DEL: nothing left anywhere.
    let (ok, out) = node.cni("DEL", &id, "eth0", Some(&ct.path()), &conf);
    assert!(ok, "{out}");
    assert_eq!(out, Value::Null);
    eventually("no taps", || node.taps().is_empty());
    assert!(link(&ct.links(), "eth0").is_none());
    eventually("container has only lo", || only_lo(&ct));
    assert!(node.port_files().is_empty(), "{:?}", node.port_files());
    assert!(node.agent.subscriptions().is_empty());
    assert_eq!(
        node.agent
            .requests_matching("DELETE", &format!("/vm/{id}"))
            .len(),
        1
    );
    assert!(node.manager.as_ref().unwrap().attachments().is_empty());

    // DEL again: still success, nothing to do.
    let (ok, out) = node.cni("DEL", &id, "eth0", Some(&ct.path()), &conf);
    assert!(ok, "{out}");
}

#[test]
fn contrail_agent_answers_after_polls() {
    if !require_root("contrail_agent_answers_after_polls") {
        return;
    }
    let node = Node::new(true);
    node.agent.set_cfg_after_polls(4);
    let ct = TestNetns::new("c");
    let id = cid(2);
    let conf = node.conf("0.2.0");
    let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(ok, "{res}");
    assert_eq!(node.agent.requests_matching("GET", "/vm-cfg/").len(), 5);
    let (ok, _) = node.cni("DEL", &id, "eth0", None, &conf);
    assert!(ok);
    eventually("no taps", || node.taps().is_empty());
}

#[test]
fn contrail_agent_down_is_error_11_and_leaves_nothing() {
    if !require_root("contrail_agent_down_is_error_11_and_leaves_nothing") {
        return;
    }
    let node = Node::new(true);
    let ct = TestNetns::new("c");
    let id = cid(3);
    let mut conf = node.conf("0.2.0");
    // Nothing listens there in the node namespace.
    conf["contrail"]["vrouter-port"] = json!(1);
    conf["contrail"]["poll-retries"] = json!(3);
    let t = std::time::Instant::now();
    let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(!ok);
    assert_eq!(res["code"], 11, "{res}");
    let msg = res["msg"].as_str().unwrap();
    assert!(msg.contains("/vm-cfg/") && msg.contains(&id), "{msg}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    eventually("no taps", || node.taps().is_empty());
    assert!(link(&ct.links(), "eth0").is_none());
    assert!(node.port_files().is_empty());
    // The registration was rolled back.
    assert!(node.manager.as_ref().unwrap().attachments().is_empty());
    assert_eq!(
        node.manager
            .as_ref()
            .unwrap()
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .count(),
        1
    );
}

#[test]
fn contrail_post_failure_rolls_back_everything() {
    if !require_root("contrail_post_failure_rolls_back_everything") {
        return;
    }
    let node = Node::new(true);
    let ct = TestNetns::new("c");
    let id = cid(4);
    let conf = node.conf("0.2.0");
    node.agent.fail_next("POST /vm", 500, 1);
    let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(!ok);
    assert_eq!(res["code"], 120, "{res}");
    assert!(
        res["msg"].as_str().unwrap().starts_with("POST /vm"),
        "{res}"
    );
    eventually("no taps", || node.taps().is_empty());
    assert!(link(&ct.links(), "eth0").is_none());
    assert!(node.port_files().is_empty());
    assert!(node.manager.as_ref().unwrap().attachments().is_empty());
}

#[test]
fn contrail_twenty_parallel_adds() {
    if !require_root("contrail_twenty_parallel_adds") {
        return;
    }
    let node = Node::new(true);
    let conf = node.conf("0.2.0");
    // Warm the Wasm artifact cache so 20 processes do not all compile the plugins.
    let warm = TestNetns::new("w");
    assert!(
        node.cni("ADD", &cid(99), "eth0", Some(&warm.path()), &conf)
            .0
    );
    assert!(
        node.cni("DEL", &cid(99), "eth0", Some(&warm.path()), &conf)
            .0
    );
    let cts: Vec<TestNetns> = (0..20).map(|_| TestNetns::new("p")).collect();
    let results: Vec<(bool, Value)> = std::thread::scope(|s| {
        let hs: Vec<_> = cts
            .iter()
            .enumerate()
            .map(|(i, ct)| {
                let (node, conf) = (&node, &conf);
                s.spawn(move || {
                    node.cni("ADD", &cid(100 + i as u32), "eth0", Some(&ct.path()), conf)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips = std::collections::HashSet::new();
    for (ok, r) in &results {
        assert!(ok, "{r}");
        ips.insert(r["ip4"]["ip"].as_str().unwrap().to_owned());
    }
    assert_eq!(ips.len(), 20);
    assert_eq!(node.taps().len(), 20);
    for ct in &cts {
        assert!(link(&ct.links(), "eth0").is_some());
    }
    std::thread::scope(|s| {
        for (i, ct) in cts.iter().enumerate() {
            let (node, conf) = (&node, &conf);
            s.spawn(move || {
                assert!(
                    node.cni("DEL", &cid(100 + i as u32), "eth0", Some(&ct.path()), conf)
                        .0
                )
            });
        }
    });
    eventually("no taps", || node.taps().is_empty());
    assert!(node.port_files().is_empty());
    assert!(node.agent.subscriptions().is_empty());
}

#[test]
fn contrail_two_networks_on_one_container() {
    if !require_root("contrail_two_networks_on_one_container") {
        return;
    }
    let node = Node::new(true);
    let ct = TestNetns::new("c");
    let id = cid(5);
    let conf0 = node.conf("0.2.0");
    let mut conf1 = node.conf("0.2.0");
    conf1["args"]["org.apache.mesos"]["network_info"]["labels"]["labels"] = json!([{"key": "networks", "value": "red-network"}, {"key": "network-subnets", "value": "6.6.6.0/24"}]);
    // Mesos ADDs a container's networks in parallel.
    let (r0, r1) = std::thread::scope(|s| {
        let a = s.spawn(|| node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf0));
        let b = s.spawn(|| node.cni("ADD", &id, "eth1", Some(&ct.path()), &conf1));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(r0.0 && r1.0, "{} {}", r0.1, r1.1);
    assert!(r0.1["ip4"]["ip"].as_str().unwrap().starts_with("5.5.5."));
    assert!(r1.1["ip4"]["ip"].as_str().unwrap().starts_with("6.6.6."));
    // Only the primary interface gets the default route.
    assert!(r0.1["ip4"]["routes"].is_array());
    assert!(
        r1.1["ip4"]
            .get("routes")
            .is_none_or(|r| r.as_array().unwrap().is_empty()),
        "{}",
        r1.1
    );
    let links = ct.links();
    assert!(link(&links, "eth0").is_some() && link(&links, "eth1").is_some());
    assert_eq!(node.taps().len(), 2);
    assert_eq!(node.agent.subscriptions().len(), 2);

    // DEL eth1 only: eth0's subscription must survive. DELETE /vm drops all of the VM's, so
    // it is not sent while another port file remains; eth1's now inert subscription (its tap
    // and VMI are gone) goes with the VM's last DEL.
    let eth0_vmi = node
        .manager
        .as_ref()
        .unwrap()
        .attachments()
        .into_iter()
        .find(|a| a.ifname == "eth0")
        .unwrap()
        .vmi_uuid;
    assert!(node.cni("DEL", &id, "eth1", Some(&ct.path()), &conf1).0);
    assert!(
        node.agent
            .subscriptions()
            .contains_key(&(id.clone(), eth0_vmi.clone()))
    );
    assert!(node.agent.requests_matching("DELETE", "/vm/").is_empty());
    assert_eq!(node.port_files().len(), 2, "{:?}", node.port_files()); // dir + eth0's file
    assert!(link(&ct.links(), "eth1").is_none());
    assert!(link(&ct.links(), "eth0").is_some());
    assert_eq!(node.taps().len(), 1);
    // The last one out unsubscribes the VM.
    assert!(node.cni("DEL", &id, "eth0", Some(&ct.path()), &conf0).0);
    assert!(node.agent.subscriptions().is_empty());
    assert_eq!(node.agent.requests_matching("DELETE", "/vm/").len(), 1);
    assert!(node.port_files().is_empty());
    eventually("no taps", || node.taps().is_empty());
}

#[test]
fn contrail_del_without_netns_and_twice() {
    if !require_root("contrail_del_without_netns_and_twice") {
        return;
    }
    let node = Node::new(true);
    let id = cid(6);
    let conf = node.conf("0.2.0");
    {
        let ct = TestNetns::new("c");
        assert!(node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf).0);
        // The container's namespace goes away (reboot, runtime cleanup) before the DEL; the
        // kernel then removes the veth pair itself.
    }
    for _ in 0..2 {
        let (ok, out) = node.cni("DEL", &id, "eth0", None, &conf);
        assert!(ok, "{out}");
    }
    assert!(node.port_files().is_empty());
    assert!(node.agent.subscriptions().is_empty());
    assert!(node.manager.as_ref().unwrap().attachments().is_empty());

    // Netns still alive but not passed: the veth is found by its host name.
    let ct = TestNetns::new("c");
    let id = cid(7);
    assert!(node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf).0);
    assert!(node.cni("DEL", &id, "eth0", None, &conf).0);
    eventually("no taps", || node.taps().is_empty());
    assert!(link(&ct.links(), "eth0").is_none());
}

#[test]
fn contrail_stale_del_is_ignored_k8s() {
    if !require_root("contrail_stale_del_is_ignored_k8s") {
        return;
    }
    let node = Node::new(false);
    let ct = TestNetns::new("c");
    let mut conf = node.conf("0.3.1");
    conf["contrail"]["mode"] = json!("k8s");
    conf["contrail"]["cluster-name"] = json!("k8s");
    let vm_uuid = "0f1e2d3c-0000-4000-8000-00000000000a";
    let vmi = "0f1e2d3c-0000-4000-8000-00000000000b";
    let mut spec = VmiSpec::mesos(vm_uuid, vmi, 0, 1, "10.47.255.250", 12);
    spec.vm_name = "k8s__default__web-1".into();
    node.agent.add_vmi(spec);
    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1";
    let new_cid = "bbbbbbbbbbbb";
    let (ok, res) = node.cni_args("ADD", new_cid, "eth0", Some(&ct.path()), &conf, Some(args));
    assert!(ok, "{res}");
    assert_eq!(res["ips"][0]["address"], "10.47.255.250/12");
    let file = node.ports_dir().join("k8s__default__web-1").join(vmi);
    let body: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(body["vm-uuid"], vm_uuid);
    assert_eq!(body["vm-id"], new_cid);

    // A late DEL of the pod's previous sandbox: must not touch the new one.
    let (ok, out) = node.cni_args("DEL", "aaaaaaaaaaaa", "eth0", None, &conf, Some(args));
    assert!(ok, "{out}");
    assert!(file.exists());
    assert!(link(&ct.links(), "eth0").is_some());
    assert_eq!(node.taps().len(), 1);
    assert!(node.agent.requests_matching("DELETE", "/vm/").is_empty());

    let (ok, _) = node.cni_args("DEL", new_cid, "eth0", Some(&ct.path()), &conf, Some(args));
    assert!(ok);
    assert!(!file.exists());
    eventually("no taps", || node.taps().is_empty());
    assert_eq!(
        node.agent
            .requests_matching("DELETE", &format!("/vm/{vm_uuid}"))
            .len(),
        1
    );
}

#[test]
fn contrail_add_when_ifname_exists_fails_cleanly() {
    if !require_root("contrail_add_when_ifname_exists_fails_cleanly") {
        return;
    }
    let node = Node::new(true);
    let ct = TestNetns::new("c");
    ct.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ]);
    let id = cid(8);
    let conf = node.conf("0.2.0");
    let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(!ok);
    assert!(
        res["msg"].as_str().unwrap().contains("already exists"),
        "{res}"
    );
    eventually("no taps", || node.taps().is_empty());
    assert!(node.port_files().is_empty());
    assert!(node.manager.as_ref().unwrap().attachments().is_empty());
    // The dummy is untouched.
    // The runtime's eth0 is untouched.
    assert!(ct.ip(&["link", "show", "eth0"]).contains("eth0@other0"));
}

#[test]
fn contrail_check_detects_a_changed_address() {
    if !require_root("contrail_check_detects_a_changed_address") {
        return;
    }
    let node = Node::new(true);
    let ct = TestNetns::new("c");
    let id = cid(9);
    let conf = node.conf("1.0.0");
    let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(ok, "{res}");
    let mut check = conf.clone();
    check["prevResult"] = res.clone();
    let (ok, out) = node.cni("CHECK", &id, "eth0", Some(&ct.path()), &check);
    assert!(ok, "{out}");
    let addr = res["ips"][0]["address"].as_str().unwrap();
    ct.ip(&["addr", "del", addr, "dev", "eth0"]);
    ct.ip(&["addr", "add", "5.5.5.77/24", "dev", "eth0"]);
    let (ok, out) = node.cni("CHECK", &id, "eth0", Some(&ct.path()), &check);
    assert!(!ok);
    assert!(out["msg"].as_str().unwrap().contains(addr), "{out}");
    assert!(node.cni("DEL", &id, "eth0", Some(&ct.path()), &conf).0);
}

#[test]
fn contrail_status_is_50_when_the_agent_is_down() {
    if !require_root("contrail_status_is_50_when_the_agent_is_down") {
        return;
    }
    let node = Node::new(false);
    let conf = node.conf("1.1.0");
    assert!(node.cni("STATUS", "", "", None, &conf).0);
    let mut down = conf.clone();
    down["contrail"]["vrouter-port"] = json!(1);
    let (ok, out) = node.cni("STATUS", "", "", None, &down);
    assert!(!ok);
    assert_eq!(out["code"], 50, "{out}");
}

/// The names are free as soon as DEL returns: an immediate re-ADD of the same container and
/// interface in the same namespace never collides with the teardown still running.
#[test]
fn contrail_readd_right_after_del() {
    if !require_root("contrail_readd_right_after_del") {
        return;
    }
    let node = Node::new(true);
    let ct = TestNetns::new("c");
    let id = cid(10);
    let conf = node.conf("0.2.0");
    for round in 0..5 {
        let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
        assert!(ok, "round {round}: {res}");
        assert_eq!(node.taps().len(), 1, "round {round}");
        let (ok, res) = node.cni("DEL", &id, "eth0", Some(&ct.path()), &conf);
        assert!(ok, "round {round}: {res}");
        assert!(link(&ct.links(), "eth0").is_none());
    }
    eventually("no taps", || node.taps().is_empty());
    eventually("container has only lo", || only_lo(&ct));
    assert!(node.port_files().is_empty());
    assert!(node.agent.subscriptions().is_empty());
}

#[test]
fn contrail_hanging_agent_times_out_with_11() {
    if !require_root("contrail_hanging_agent_times_out_with_11") {
        return;
    }
    let node = Node::new(true);
    node.agent.set_hang(true);
    let ct = TestNetns::new("c");
    let id = cid(11);
    let mut conf = node.conf("0.2.0");
    conf["contrail"]["poll-retries"] = json!(3); // 0.6 s budget
    let t = std::time::Instant::now();
    let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(!ok);
    assert_eq!(res["code"], 11, "{res}");
    // Every request has its own timeout: a hung agent cannot hold the ADD past the budget.
    assert!(
        t.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        t.elapsed()
    );
    node.agent.set_hang(false);
    eventually("no taps", || node.taps().is_empty());
    assert!(node.port_files().is_empty());
    assert!(node.manager.as_ref().unwrap().attachments().is_empty());
}

#[test]
fn contrail_manager_4xx_is_error_7_and_5xx_is_11() {
    if !require_root("contrail_manager_4xx_is_error_7_and_5xx_is_11") {
        return;
    }
    use contrail_mesos_api::ErrorKind;
    let node = Node::new(true);
    let ct = TestNetns::new("c");
    let id = cid(12);
    let conf = node.conf("0.2.0");
    let m = node.manager.as_ref().unwrap();
    m.fail_next(
        ErrorKind::BadLabel,
        Some("security-groups"),
        "unknown security group sg-x",
        1,
    );
    let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(!ok);
    assert_eq!(res["code"], 7, "{res}");
    assert!(
        res["msg"]
            .as_str()
            .unwrap()
            .contains("unknown security group sg-x"),
        "{res}"
    );
    m.fail_next(ErrorKind::Unavailable, None, "VNC down", 1);
    let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(!ok);
    assert_eq!(res["code"], 11, "{res}");
    assert!(node.taps().is_empty());
    assert!(
        node.agent.requests().is_empty(),
        "the agent is not asked before the manager answered"
    );
}

/// A second ADD of the same container and interface is refused before anything is made: the
/// existing eth0, its address, tap, port file, agent subscription and registration all stay.
#[test]
fn contrail_repeated_add_leaves_the_first_alone() {
    if !require_root("contrail_repeated_add_leaves_the_first_alone") {
        return;
    }
    let node = Node::new(true);
    let ct = TestNetns::new("c");
    let id = cid(13);
    let conf = node.conf("0.2.0");
    let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(ok, "{res}");
    let ip = res["ip4"]["ip"].as_str().unwrap().to_owned();
    let (files, taps) = (node.port_files(), node.taps());
    let requests = node.agent.requests().len();

    let (ok, e) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(!ok);
    assert_eq!(e["code"], 7, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("already exists"), "{e}");
    let addrs: Value =
        serde_json::from_str(&ct.ip(&["-j", "-4", "addr", "show", "dev", "eth0"])).unwrap();
    let a = &addrs[0]["addr_info"][0];
    assert_eq!(
        format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]),
        ip
    );
    assert_eq!(node.taps(), taps);
    assert_eq!(node.port_files(), files);
    assert_eq!(node.agent.subscriptions().len(), 1);
    // Beside the name check the agent was only read, and the manager answered 200 (already
    // registered, nothing changed).
    let later: Vec<_> = node.agent.requests()[requests..].to_vec();
    assert!(
        later.iter().all(|r| r.method == "GET"),
        "the agent was only read: {:?}",
        later
            .iter()
            .map(|r| (&r.method, &r.path))
            .collect::<Vec<_>>()
    );
    let m = node.manager.as_ref().unwrap();
    assert_eq!(m.attachments().len(), 1);
    assert!(
        m.requests().iter().all(|r| r.method != "DELETE"),
        "the registration was not undone"
    );

    assert!(node.cni("DEL", &id, "eth0", Some(&ct.path()), &conf).0);
    eventually("no taps", || node.taps().is_empty());
}

/// A `CNI_NETNS` that is not a network namespace is error 4 at once: nothing registered, the
/// agent never polled (it used to be polled for the whole budget first).
#[test]
fn contrail_bad_netns_fails_before_anything_else() {
    if !require_root("contrail_bad_netns_fails_before_anything_else") {
        return;
    }
    let node = Node::new(true);
    let mut conf = node.conf("0.2.0");
    conf["contrail"]["poll-retries"] = json!(1000);
    let plain = node.dir.path().join("not-a-netns");
    std::fs::write(&plain, b"").unwrap();
    for netns in [plain.clone(), PathBuf::from("/run/netns/does-not-exist-ct")] {
        let (ok, e) = node.cni("ADD", &cid(14), "eth0", Some(&netns), &conf);
        assert!(!ok);
        assert_eq!(e["code"], 4, "{netns:?}: {e}");
    }
    assert!(node.agent.requests().is_empty());
    assert!(node.manager.as_ref().unwrap().requests().is_empty());
    assert!(node.taps().is_empty());
    assert!(node.port_files().is_empty());
}

/// Several manager instances (`contrail.managers`): with the first one down, ADD and DEL go to
/// the next, per try bounded by `mesos-timeout`.
#[test]
fn contrail_manager_failover() {
    if !require_root("contrail_manager_failover") {
        return;
    }
    let node = Node::new(false);
    // An instance that was there and is gone: its port refuses connections.
    let dead = AttachStandin::start_in_netns(&node.ns.path(), node.agent.clone());
    let dead_port = dead.port();
    drop(dead);
    // tiny_http's accept thread closes the listener shortly after the drop returns.
    let refused = (0..100).any(|_| {
        node.refused(dead_port) || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            false
        }
    });
    assert!(refused, "a dropped stand-in must not keep its port open");
    let dead_url = format!("http://127.0.0.1:{dead_port}");
    let live = AttachStandin::start_in_netns(&node.ns.path(), node.agent.clone());
    let mut conf = node.conf("0.2.0");
    conf["contrail"]["managers"] = json!([dead_url, format!("http://127.0.0.1:{}", live.port())]);
    conf["contrail"]["mesos-timeout"] = json!(2);
    let ct = TestNetns::new("c");
    let id = cid(15);
    let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(ok, "{res}");
    assert_eq!(res["ip4"]["ip"], "5.5.5.2/24");
    assert_eq!(live.attachments().len(), 1);
    assert!(link(&ct.links(), "eth0").is_some());
    let (ok, out) = node.cni("DEL", &id, "eth0", Some(&ct.path()), &conf);
    assert!(ok, "{out}");
    assert!(
        live.attachments().is_empty(),
        "the DEL reached the live instance"
    );
    eventually("no taps", || node.taps().is_empty());
}

/// DEL never blocks teardown: with no manager reachable it still removes the interface, the
/// agent's port and the port file, exits 0, and says the manager's reconciler will clean up.
#[test]
fn contrail_del_without_a_reachable_manager_still_tears_down() {
    if !require_root("contrail_del_without_a_reachable_manager_still_tears_down") {
        return;
    }
    let node = Node::new(true);
    let ct = TestNetns::new("c");
    let id = cid(16);
    let mut conf = node.conf("0.2.0");
    let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(ok, "{res}");
    // The manager is gone: nothing listens where the config points.
    conf["contrail"]["mesos-port"] = json!(node.dead_port().to_string());
    let (ok, out) = node.cni("DEL", &id, "eth0", Some(&ct.path()), &conf);
    assert!(ok, "{out}");
    assert_eq!(out, Value::Null);
    assert!(link(&ct.links(), "eth0").is_none());
    eventually("no taps", || node.taps().is_empty());
    assert!(node.port_files().is_empty(), "{:?}", node.port_files());
    assert!(node.agent.subscriptions().is_empty());
    let log = std::fs::read_to_string(node.dir.path().join("cni.log")).unwrap();
    assert!(log.contains("reconciler"), "{log}");
}

/// The manager over `https://` (`contrail.managers` + `manager-ca-file`): ADD and DEL through a
/// TLS relay in front of the attachment API stand-in; a CA that does not vouch for the
/// manager's certificate fails the ADD with 7 (not 11) and leaves nothing behind.
#[test]
fn contrail_add_and_del_over_https_to_the_manager() {
    if !require_root("contrail_add_and_del_over_https_to_the_manager") {
        return;
    }
    use contrail_integration::tls_proxy::{Pki, TlsProxy};
    let node = Node::new(false);
    let live = AttachStandin::start_in_netns(&node.ns.path(), node.agent.clone());
    let (pki, other) = (Pki::new("manager"), Pki::new("other"));
    let tls = TlsProxy::start_in_netns(&node.ns.path(), live.addr(), pki.server_config()).unwrap();
    let mut conf = node.conf("0.4.0");
    conf["contrail"]["managers"] = json!([tls.url()]);
    conf["contrail"]["manager-ca-file"] = json!(other.ca_file());
    let ct = TestNetns::new("c");
    let id = cid(17);
    let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(
        !ok,
        "ADD passed a manager whose certificate the CA does not vouch for"
    );
    assert_eq!(res["code"], 7, "{res}");
    assert!(
        res["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("TLS verification failed"),
        "{res}"
    );
    assert!(live.attachments().is_empty());
    assert!(link(&ct.links(), "eth0").is_none());
    eventually("no taps", || node.taps().is_empty());
    assert!(node.port_files().is_empty(), "{:?}", node.port_files());

    conf["contrail"]["manager-ca-file"] = json!(pki.ca_file());
    let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(ok, "{res}");
    assert_eq!(res["ips"][0]["address"], "5.5.5.2/24", "{res}");
    assert_eq!(live.attachments().len(), 1);
    assert!(tls.handshakes() > 0, "the manager was not reached over TLS");
    let (ok, out) = node.cni("DEL", &id, "eth0", Some(&ct.path()), &conf);
    assert!(ok, "{out}");
    assert!(
        live.attachments().is_empty(),
        "the DEL reached the manager over TLS"
    );
    eventually("no taps", || node.taps().is_empty());
}

/// CNI GC (spec 1.1): the stale attachment of this network goes (tap, port file, the agent's
/// VM, our record); a valid one of this network and one of another network stay.
#[test]
fn contrail_gc_removes_only_this_networks_stale_attachments() {
    if !require_root("contrail_gc_removes_only_this_networks_stale_attachments") {
        return;
    }
    let node = Node::new(true);
    let (stale, live, other) = (cid(40), cid(41), cid(42));
    let (ct_stale, ct_live, ct_other) = (
        TestNetns::new("c"),
        TestNetns::new("c"),
        TestNetns::new("c"),
    );
    let blue = node.conf("0.2.0");
    let mut red = node.conf("0.2.0");
    red["name"] = json!("red-net");
    red["args"]["org.apache.mesos"]["network_info"]["name"] = json!("red-net");
    assert!(
        node.cni("ADD", &stale, "eth0", Some(&ct_stale.path()), &blue)
            .0
    );
    assert!(
        node.cni("ADD", &live, "eth0", Some(&ct_live.path()), &blue)
            .0
    );
    assert!(
        node.cni("ADD", &other, "eth0", Some(&ct_other.path()), &red)
            .0
    );
    assert_eq!(node.records().len(), 3, "{:?}", node.records());
    assert_eq!(node.agent.subscriptions().len(), 3);

    // The runtime still holds `live` on this network; it says nothing about red-net's.
    let mut gc = node.conf("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": live, "ifname": "eth0"}]);
    let (ok, out) = node.cni("GC", "", "", None, &gc);
    assert!(ok, "{out}");

    assert!(!node.ports_dir().join(&stale).exists());
    assert!(node.ports_dir().join(&live).is_dir());
    assert!(node.ports_dir().join(&other).is_dir());
    let subs = node.agent.subscriptions();
    assert_eq!(subs.len(), 2, "{subs:?}");
    assert!(
        !subs
            .keys()
            .any(|(vm, _)| *vm == contrail_mesos_api::vm_uuid_for(&stale))
    );
    assert_eq!(node.agent.requests_matching("DELETE", "/vm/").len(), 1);
    assert_eq!(
        node.records(),
        [
            ("contrail-cni-plugin".to_owned(), format!("{live}=eth0")),
            ("red-net".to_owned(), format!("{other}=eth0")),
        ]
    );
    eventually("the stale tap gone", || node.taps().len() == 2);
    assert!(link(&ct_stale.links(), "eth0").is_none());
    assert!(link(&ct_live.links(), "eth0").is_some());
    assert!(link(&ct_other.links(), "eth0").is_some());

    // Repeatable; and a GC without the list removes nothing and says why (code 7).
    assert!(node.cni("GC", "", "", None, &gc).0);
    let (ok, out) = node.cni("GC", "", "", None, &node.conf("1.1.0"));
    assert!(!ok);
    assert_eq!(out["code"], 7, "{out}");
    assert_eq!(node.records().len(), 2);
}

/// A lost DEL: the container's namespace is deleted and no DEL comes. `sweep --dry-run` only
/// reports; `sweep` removes the port file, the agent's port and the record, and leaves the
/// live container alone.
#[test]
fn contrail_sweep_after_a_lost_del() {
    if !require_root("contrail_sweep_after_a_lost_del") {
        return;
    }
    let node = Node::new(true);
    let (dead, live) = (cid(50), cid(51));
    let conf = node.conf("0.2.0");
    {
        let ct = TestNetns::new("c");
        assert!(node.cni("ADD", &dead, "eth0", Some(&ct.path()), &conf).0);
    } // namespace deleted; the DEL never comes
    let ct_live = TestNetns::new("c");
    assert!(
        node.cni("ADD", &live, "eth0", Some(&ct_live.path()), &conf)
            .0
    );
    // The kernel removes the veth pair with the namespace (asynchronously).
    eventually("the dead container's tap gone", || node.taps().len() == 1);
    let before = (
        node.port_files(),
        node.agent.subscriptions(),
        node.records(),
    );
    assert_eq!(before.1.len(), 2);

    let (ok, out) = node.sweep(&conf, true);
    assert!(ok);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with(&format!("would remove contrail-cni-plugin {dead}/eth0")),
        "{out}"
    );
    assert_eq!(
        (
            node.port_files(),
            node.agent.subscriptions(),
            node.records()
        ),
        before
    );
    assert!(node.agent.requests_matching("DELETE", "/vm/").is_empty());

    let (ok, out) = node.sweep(&conf, false);
    assert!(ok);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with(&format!("removed contrail-cni-plugin {dead}/eth0")),
        "{out}"
    );
    assert!(!node.ports_dir().join(&dead).exists());
    assert!(node.ports_dir().join(&live).is_dir());
    let subs = node.agent.subscriptions();
    assert_eq!(subs.len(), 1);
    assert!(
        subs.keys()
            .all(|(vm, _)| *vm == contrail_mesos_api::vm_uuid_for(&live))
    );
    assert_eq!(
        node.records(),
        [("contrail-cni-plugin".to_owned(), format!("{live}=eth0"))]
    );
    assert!(link(&ct_live.links(), "eth0").is_some());
    assert_eq!(node.taps().len(), 1);
    // Nothing left to remove.
    let (ok, out) = node.sweep(&conf, false);
    assert!(ok && out.is_empty(), "{out}");
    assert!(
        node.cni("DEL", &live, "eth0", Some(&ct_live.path()), &conf)
            .0
    );
}

/// Nested mode: a node (a VM of a Contrail cloud) with the parent interface `par0` (a veth end:
/// some kernels have no `dummy`), up; k8s naming so that the VMIs are set up on the agent
/// stand-in directly, each a sub-interface on its VLAN.
struct Nested {
    node: Node,
    conf: Value,
}

const PARENT: &str = "par0";

impl Nested {
    fn new() -> Nested {
        let node = Node::new(false);
        node.ns.ip(&[
            "link", "add", PARENT, "type", "veth", "peer", "name", "par1",
        ]);
        node.ns.ip(&["link", "set", PARENT, "up"]);
        node.ns.ip(&["link", "set", "par1", "up"]);
        let mut conf = node.conf("1.0.0");
        conf["contrail"]["mode"] = json!("k8s");
        conf["contrail"]["cluster-name"] = json!("k8s");
        conf["contrail"]["vif-type"] = json!("macvlan");
        conf["contrail"]["parent-interface"] = json!(PARENT);
        Nested { node, conf }
    }

    /// Pod `web-<n>`: its VMI on `vlan` with address 10.47.0.<n>/16. Returns (vmi uuid, CNI_ARGS).
    fn pod(&self, n: u32, vlan: Option<u16>) -> (String, String) {
        let vm = format!("0f1e2d3c-0000-4000-8000-{:012x}", 0xa00 + n);
        let vmi = format!("0f1e2d3c-0000-4000-8000-{:012x}", 0xb00 + n);
        let mut spec = VmiSpec::mesos(&vm, &vmi, 0, 1, &format!("10.47.0.{n}"), 16);
        spec.vm_name = format!("k8s__default__web-{n}");
        spec.vlan_id = vlan;
        self.node.agent.add_vmi(spec);
        (
            vmi,
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-{n}"),
        )
    }

    fn cni(&self, cmd: &str, cid: &str, ct: Option<&TestNetns>, args: &str) -> (bool, Value) {
        let path = ct.map(TestNetns::path);
        self.node
            .cni_args(cmd, cid, "eth0", path.as_deref(), &self.conf, Some(args))
    }

    /// The node's links other than lo and the parent.
    fn node_links(&self) -> Vec<String> {
        self.node
            .ns
            .links()
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| !["lo", PARENT, "par1"].contains(n))
            .map(str::to_owned)
            .collect()
    }

    /// Whether the kernel can make VLAN interfaces (CONFIG_VLAN_8021Q); tests that need one print
    /// `SKIPPED` otherwise, like the root tests (a failure with `CONTRAIL_REQUIRE_VLAN_TESTS=1`).
    fn vlan_supported(&self, test: Option<&str>) -> bool {
        let ok = Command::new("ip")
            .args(["-n", self.node.ns.name(), "link", "add", "link", PARENT])
            .args(["name", "probe.9", "type", "vlan", "id", "9"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            self.node.ns.ip(&["link", "del", "probe.9"]);
        } else if let Some(test) = test {
            // Where the kernel is known to have it, a skip must not pass silently.
            if std::env::var("CONTRAIL_REQUIRE_VLAN_TESTS").as_deref() == Ok("1") {
                panic!(
                    "{test}: the kernel has no 802.1Q VLAN support (CONTRAIL_REQUIRE_VLAN_TESTS=1)"
                );
            }
            eprintln!("SKIPPED {test}: the kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q)");
        }
        ok
    }

    fn detail(ns: &TestNetns, dev: &str) -> Value {
        let v: Value = serde_json::from_str(&ns.ip(&["-d", "-j", "link", "show", "dev", dev]))
            .unwrap_or(Value::Null);
        v[0].clone()
    }
}

#[test]
fn contrail_nested_add_makes_a_macvlan_on_the_vlan_interface() {
    if !require_root("contrail_nested_add_makes_a_macvlan_on_the_vlan_interface") {
        return;
    }
    let n = Nested::new();
    if !n.vlan_supported(Some(
        "contrail_nested_add_makes_a_macvlan_on_the_vlan_interface",
    )) {
        return;
    }
    let ct = TestNetns::new("c");
    let (vmi, args) = n.pod(1, Some(100));
    let (ok, res) = n.cni("ADD", "nested-1", Some(&ct), &args);
    assert!(ok, "{res}");
    assert_eq!(res["ips"][0]["address"], "10.47.0.1/16");
    assert_eq!(res["interfaces"][0]["mac"], mac_for(&vmi));

    // The VLAN sub-interface on the node: par0.100, VLAN 100 on par0, up, with our alias.
    assert_eq!(n.node_links(), ["par0.100"]);
    let vlan = Nested::detail(&n.node.ns, "par0.100");
    assert_eq!(vlan["linkinfo"]["info_kind"], "vlan", "{vlan}");
    assert_eq!(vlan["linkinfo"]["info_data"]["id"], 100, "{vlan}");
    assert_eq!(vlan["link"], PARENT, "{vlan}");
    assert!(vlan["flags"].as_array().unwrap().contains(&json!("UP")));
    assert_eq!(vlan["ifalias"], "contrail-mesos-cni nested", "{vlan}");

    // eth0 in the container: a bridge-mode macvlan on par0.100, the agent's MAC, MTU, up.
    let eth0 = Nested::detail(&ct, "eth0");
    assert_eq!(eth0["linkinfo"]["info_kind"], "macvlan", "{eth0}");
    assert_eq!(eth0["linkinfo"]["info_data"]["mode"], "bridge", "{eth0}");
    assert_eq!(eth0["link_index"], vlan["ifindex"], "{eth0}");
    assert_eq!(eth0["address"], mac_for(&vmi));
    assert_eq!(eth0["mtu"], 1400);
    assert!(
        eth0["flags"].as_array().unwrap().contains(&json!("UP")),
        "{eth0}"
    );
    let addrs: Value =
        serde_json::from_str(&ct.ip(&["-j", "-4", "addr", "show", "dev", "eth0"])).unwrap();
    let a = &addrs[0]["addr_info"][0];
    assert_eq!(
        (a["local"].as_str(), a["prefixlen"].as_u64()),
        (Some("10.47.0.1"), Some(16))
    );
    let routes: Value = serde_json::from_str(&ct.ip(&["-j", "-4", "route", "show"])).unwrap();
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "default"
                && r["gateway"] == "10.47.255.254"
                && r["dev"] == "eth0"),
        "{routes}"
    );
    // No tap and no subscription (upstream's nested mode does not POST /vm); the port file is
    // kept, naming the parent as Contrail's does.
    assert!(n.node.taps().is_empty());
    assert!(n.node.agent.requests_matching("POST", "/vm").is_empty());
    let file = n.node.ports_dir().join("k8s__default__web-1").join(&vmi);
    let body: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(body["host-ifname"], PARENT);

    let (ok, out) = n.cni("DEL", "nested-1", Some(&ct), &args);
    assert!(ok, "{out}");
    assert!(only_lo(&ct));
    assert!(n.node_links().is_empty(), "{:?}", n.node_links());
    assert!(n.node.port_files().is_empty());
    assert!(n.node.records().is_empty());
    assert!(n.node.agent.requests_matching("DELETE", "/vm").is_empty());
    // Again, without a netns: nothing left to do, still fine.
    let (ok, out) = n.cni("DEL", "nested-1", None, &args);
    assert!(ok, "{out}");
}

#[test]
fn contrail_nested_containers_share_the_vlan_interface_until_the_last_del() {
    if !require_root("contrail_nested_containers_share_the_vlan_interface_until_the_last_del") {
        return;
    }
    let n = Nested::new();
    if !n.vlan_supported(Some(
        "contrail_nested_containers_share_the_vlan_interface_until_the_last_del",
    )) {
        return;
    }
    let (c1, c2) = (TestNetns::new("c"), TestNetns::new("c"));
    let (_, a1) = n.pod(1, Some(200));
    let (_, a2) = n.pod(2, Some(200));
    assert!(n.cni("ADD", "nested-1", Some(&c1), &a1).0);
    assert!(n.cni("ADD", "nested-2", Some(&c2), &a2).0);
    assert_eq!(n.node_links(), ["par0.200"]);
    let vlan = Nested::detail(&n.node.ns, "par0.200");
    for ct in [&c1, &c2] {
        assert_eq!(Nested::detail(ct, "eth0")["link_index"], vlan["ifindex"]);
    }
    // The first DEL (without its netns, as after a reboot) keeps the sub-interface and the
    // other container's macvlan.
    let (ok, out) = n.cni("DEL", "nested-1", None, &a1);
    assert!(ok, "{out}");
    assert_eq!(n.node_links(), ["par0.200"]);
    assert_eq!(Nested::detail(&c2, "eth0")["link_index"], vlan["ifindex"]);
    let (ok, out) = n.cni("DEL", "nested-2", Some(&c2), &a2);
    assert!(ok, "{out}");
    assert!(n.node_links().is_empty(), "{:?}", n.node_links());
    assert!(only_lo(&c2));
    assert!(n.node.records().is_empty());
}

#[test]
fn contrail_nested_failed_add_leaves_nothing() {
    if !require_root("contrail_nested_failed_add_leaves_nothing") {
        return;
    }
    let n = Nested::new();
    if !n.vlan_supported(Some("contrail_nested_failed_add_leaves_nothing")) {
        return;
    }
    let ct = TestNetns::new("c");
    let (vmi, args) = n.pod(1, Some(300));
    // An address the IPAM plugin refuses: the ADD fails after the VLAN interface and the
    // macvlan were made.
    let mut spec = VmiSpec::mesos(
        "0f1e2d3c-0000-4000-8000-000000000a01",
        &vmi,
        0,
        1,
        "10.47.0.1",
        16,
    );
    spec.vm_name = "k8s__default__web-1".into();
    spec.vlan_id = Some(300);
    spec.ip = Some("10.47.0.300".into());
    n.node.agent.add_vmi(spec);
    let (ok, res) = n.cni("ADD", "nested-1", Some(&ct), &args);
    assert!(!ok);
    assert!(
        res["msg"].as_str().unwrap().starts_with("IPAM plugin"),
        "{res}"
    );
    assert!(only_lo(&ct));
    assert!(n.node_links().is_empty(), "{:?}", n.node_links());
    assert!(n.node.port_files().is_empty());
    assert!(n.node.records().is_empty());

    // With a sub-interface in use by another container, a failed ADD leaves it to that one.
    let c2 = TestNetns::new("c");
    let (_, a2) = n.pod(2, Some(300));
    assert!(n.cni("ADD", "nested-2", Some(&c2), &a2).0);
    let (ok, _) = n.cni("ADD", "nested-1", Some(&ct), &args);
    assert!(!ok);
    assert_eq!(n.node_links(), ["par0.300"]);
    assert!(Nested::detail(&c2, "eth0")["linkinfo"]["info_kind"] == "macvlan");
    assert!(only_lo(&ct));
    assert!(n.cni("DEL", "nested-2", Some(&c2), &a2).0);
    assert!(n.node_links().is_empty());
}

#[test]
fn contrail_nested_missing_parent_or_vlan_is_refused_and_changes_nothing() {
    if !require_root("contrail_nested_missing_parent_or_vlan_is_refused_and_changes_nothing") {
        return;
    }
    let mut n = Nested::new();
    let ct = TestNetns::new("c");
    let (_, args) = n.pod(1, Some(100));
    let good = n.conf.clone();
    n.conf["contrail"]["parent-interface"] = json!("nope0");
    let (ok, res) = n.cni("ADD", "nested-1", Some(&ct), &args);
    assert!(!ok);
    assert_eq!(res["code"], 7, "{res}");
    assert!(
        res["msg"]
            .as_str()
            .unwrap()
            .contains("contrail.parent-interface \"nope0\""),
        "{res}"
    );
    assert!(n.node.agent.requests().is_empty(), "nobody was asked");
    n.conf["contrail"]
        .as_object_mut()
        .unwrap()
        .remove("parent-interface");
    let (ok, res) = n.cni("ADD", "nested-1", Some(&ct), &args);
    assert!(!ok);
    assert_eq!(res["code"], 7, "{res}");
    assert!(
        res["msg"]
            .as_str()
            .unwrap()
            .contains("contrail.parent-interface is required"),
        "{res}"
    );
    // A VMI the agent gives no VLAN for.
    n.conf = good;
    let (_, a2) = n.pod(2, None);
    let (ok, res) = n.cni("ADD", "nested-2", Some(&ct), &a2);
    assert!(!ok);
    assert!(
        res["msg"].as_str().unwrap().contains("no vlan-id for VMI"),
        "{res}"
    );
    assert!(only_lo(&ct));
    assert!(n.node_links().is_empty(), "{:?}", n.node_links());
    assert!(n.node.port_files().is_empty());
    assert!(n.node.records().is_empty());
}

#[test]
fn contrail_nested_without_kernel_vlan_support_fails_cleanly() {
    if !require_root("contrail_nested_without_kernel_vlan_support_fails_cleanly") {
        return;
    }
    let n = Nested::new();
    if n.vlan_supported(None) {
        eprintln!(
            "SKIPPED contrail_nested_without_kernel_vlan_support_fails_cleanly: the kernel has 802.1Q"
        );
        return;
    }
    let ct = TestNetns::new("c");
    let (_, args) = n.pod(1, Some(100));
    let (ok, res) = n.cni("ADD", "nested-1", Some(&ct), &args);
    assert!(!ok);
    assert_eq!(res["code"], 121, "{res}");
    let msg = res["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("create the VLAN interface:") && msg.contains("802.1Q"),
        "{res}"
    );
    assert!(only_lo(&ct));
    assert!(n.node_links().is_empty(), "{:?}", n.node_links());
    assert!(n.node.port_files().is_empty());
    assert!(n.node.records().is_empty());
}

/// The node's port-mapping table (`nft -j list table inet contrail_cni_portmap` inside the
/// node namespace): (the map's elements as "proto/port->chain", the chains); None when there is
/// no table.
fn portmap_table(node: &Node) -> Option<(Vec<String>, Vec<String>)> {
    let out = Command::new("ip")
        .args(["netns", "exec", node.ns.name(), "/usr/sbin/nft", "-j"])
        .args(["list", "table", "inet", "contrail_cni_portmap"])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (mut elems, mut chains) = (vec![], vec![]);
    for it in v["nftables"].as_array().unwrap() {
        if let Some(n) = it["chain"]["name"].as_str() {
            chains.push(n.to_owned());
        }
        for e in it["map"]["elem"].as_array().into_iter().flatten() {
            elems.push(format!(
                "{}/{}->{}",
                e[0]["concat"][0].as_str().unwrap(),
                e[0]["concat"][1],
                e[1]["goto"]["target"].as_str().unwrap()
            ));
        }
    }
    elems.sort();
    chains.sort();
    Some((elems, chains))
}

/// Runs `f` on a thread that joined the namespace at `ns`.
fn in_ns<T: Send>(ns: &Path, f: impl FnOnce() -> T + Send) -> T {
    let file = File::open(ns).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// A TCP service inside a namespace that answers each connection with the peer address it sees,
/// and a UDP one that answers each datagram the same way; both stop on drop (bounded waits).
struct Whoami {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Whoami {
    fn start(ns: &Path, port: u16) -> Whoami {
        use std::sync::atomic::Ordering;
        let (tcp, udp) = in_ns(ns, || {
            (
                std::net::TcpListener::bind(("0.0.0.0", port)).unwrap(),
                std::net::UdpSocket::bind(("0.0.0.0", port)).unwrap(),
            )
        });
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(std::time::Duration::from_millis(20)))
            .unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let t1 = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.write_all(format!("{}\n", peer.ip()).as_bytes());
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        let st = stop.clone();
        let t2 = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !st.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(format!("{}\n", peer.ip()).as_bytes(), peer);
                }
            }
        });
        Whoami {
            stop,
            threads: vec![t1, t2],
        }
    }
}

impl Drop for Whoami {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What a TCP connection from inside `from` to `to` reads (the peer address the container
/// saw), or the connect error's kind.
fn tcp_answer(from: &Path, to: &str) -> Result<String, std::io::ErrorKind> {
    let to: std::net::SocketAddr = to.parse().unwrap();
    in_ns(from, || {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect_timeout(&to, std::time::Duration::from_secs(5))
            .map_err(|e| e.kind())?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.kind())?;
        Ok(out.trim().to_owned())
    })
}

/// What a UDP datagram from inside `from` to `to` gets back within 5 s.
fn udp_answer(from: &Path, to: &str) -> Option<String> {
    let to: std::net::SocketAddr = to.parse().unwrap();
    in_ns(from, || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        s.send_to(b"ping", to).ok()?;
        let mut buf = [0u8; 64];
        let (n, _) = s.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
    })
}

/// Mesos' `port_mappings` forwarded on the node: a client in its own namespace, linked to the
/// node, reaches the container's listener on the node's address and host port (TCP and UDP,
/// its own address seen by the container), so does the node itself, not its 127.0.0.1; a
/// second container asking for the same host port fails its ADD and leaves nothing; after the
/// DEL the port is closed and no rule is left.
#[test]
fn contrail_port_mappings_forward_the_nodes_host_ports() {
    if !require_root("contrail_port_mappings_forward_the_nodes_host_ports") {
        return;
    }
    let node = Node::new(true);
    let ct = TestNetns::new("c");
    let client = TestNetns::new("k");
    // The client's link to the node (192.0.2.0/24, documentation addresses, inside the test's
    // namespaces only) and the node's forwarding.
    node.ns.ip(&[
        "link",
        "add",
        "pm-node",
        "type",
        "veth",
        "peer",
        "name",
        "pm-client",
        "netns",
        client.name(),
    ]);
    node.ns
        .ip(&["addr", "add", "192.0.2.1/24", "dev", "pm-node"]);
    node.ns.ip(&["link", "set", "pm-node", "up"]);
    client.ip(&["addr", "add", "192.0.2.2/24", "dev", "pm-client"]);
    client.ip(&["link", "set", "pm-client", "up"]);
    contrail_integration::netns::run(
        "ip",
        &[
            "netns",
            "exec",
            node.ns.name(),
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
        ],
    );

    let mut conf = node.conf("0.2.0");
    conf["args"]["org.apache.mesos"]["network_info"]["port_mappings"] = json!([
        {"host_port": 18080, "container_port": 8080, "protocol": "tcp"},
        {"host_port": 15353, "container_port": 8080, "protocol": "udp"}
    ]);
    let id = cid(90);
    let (ok, res) = node.cni("ADD", &id, "eth0", Some(&ct.path()), &conf);
    assert!(ok, "{res}");
    assert_eq!(res["ip4"]["ip"], "5.5.5.2/24");
    // The vRouter's part in this stand-in: the node routes the container's subnet to its tap
    // and holds the container's gateway.
    let tap = node.taps().pop().unwrap();
    node.ns.ip(&["addr", "add", "5.5.5.254/24", "dev", &tap]);
    let _svc = Whoami::start(&ct.path(), 8080);

    let chain = {
        let (elems, chains) = portmap_table(&node).expect("the port-mapping table");
        assert_eq!(elems.len(), 2, "{elems:?}");
        let chain = elems[0].split("->").nth(1).unwrap().to_owned();
        assert_eq!(
            elems,
            [format!("tcp/18080->{chain}"), format!("udp/15353->{chain}")]
        );
        assert!(chains.contains(&chain), "{chains:?}");
        chain
    };
    // From the client, through the node: answered by the container, which sees the client.
    assert_eq!(
        tcp_answer(&client.path(), "192.0.2.1:18080"),
        Ok("192.0.2.2".into())
    );
    assert_eq!(
        udp_answer(&client.path(), "192.0.2.1:15353").as_deref(),
        Some("192.0.2.2")
    );
    // From the node itself, to its own address (the output hook); not to its loopback.
    assert_eq!(
        tcp_answer(&node.ns.path(), "192.0.2.1:18080"),
        Ok("192.0.2.1".into())
    );
    assert_eq!(
        tcp_answer(&node.ns.path(), "127.0.0.1:18080"),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    // A port that is not mapped is not forwarded.
    assert_eq!(
        tcp_answer(&client.path(), "192.0.2.1:18081"),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    // CHECK (a 1.0.0 config) finds the rules.
    let mut check = node.conf("1.0.0");
    check["args"] = conf["args"].clone();
    check["prevResult"] = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": ct.path()}],
        "ips": [{"address": "5.5.5.2/24", "interface": 0}]
    });
    let (ok, out) = node.cni("CHECK", &id, "eth0", Some(&ct.path()), &check);
    assert!(ok, "{out}");

    // A second container asking for the taken TCP port: the ADD fails naming it and the
    // container holding it, and leaves nothing of its own.
    let ct2 = TestNetns::new("c");
    let id2 = cid(91);
    let mut conf2 = node.conf("0.2.0");
    conf2["args"]["org.apache.mesos"]["network_info"]["port_mappings"] = json!([
        {"host_port": 19090, "container_port": 80},
        {"host_port": 18080, "container_port": 80}
    ]);
    let before = (portmap_table(&node), node.records(), node.port_files());
    let (ok, err) = node.cni("ADD", &id2, "eth0", Some(&ct2.path()), &conf2);
    assert!(!ok);
    assert_eq!(err["code"], 124, "{err}");
    let msg = err["msg"].as_str().unwrap();
    assert!(
        msg.contains(&format!("tcp/18080 (forwarded to container {id} (eth0))"))
            && msg.contains("already mapped on this node"),
        "{msg}"
    );
    assert_eq!(
        (portmap_table(&node), node.records(), node.port_files()),
        before
    );
    assert_eq!(node.taps(), std::slice::from_ref(&tap));
    assert!(only_lo(&ct2));
    assert_eq!(node.manager.as_ref().unwrap().attachments().len(), 1);
    // The first container is still reachable.
    assert_eq!(
        tcp_answer(&client.path(), "192.0.2.1:18080"),
        Ok("192.0.2.2".into())
    );

    // CHECK misses a rule removed behind the plugin's back.
    contrail_integration::netns::run(
        "ip",
        &[
            "netns",
            "exec",
            node.ns.name(),
            "/usr/sbin/nft",
            "delete element inet contrail_cni_portmap hostports { udp . 15353 }",
        ],
    );
    let (ok, out) = node.cni("CHECK", &id, "eth0", Some(&ct.path()), &check);
    assert!(!ok);
    assert!(
        out["msg"]
            .as_str()
            .unwrap()
            .contains("host port udp/15353 is not forwarded to eth0"),
        "{out}"
    );

    // DEL (without a netns, then again): the port closes, no rule is left.
    assert!(node.cni("DEL", &id, "eth0", None, &conf).0);
    assert!(node.cni("DEL", &id, "eth0", None, &conf).0);
    assert_eq!(
        tcp_answer(&client.path(), "192.0.2.1:18080"),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    let (elems, chains) = portmap_table(&node).unwrap();
    assert!(elems.is_empty(), "{elems:?}");
    assert!(!chains.contains(&chain), "{chains:?}");
    assert!(chains.iter().all(|c| !c.starts_with("cni-")), "{chains:?}");
}

/// A lost DEL's port mappings: `sweep` removes those of the container whose namespace is gone
/// and keeps the live one's.
#[test]
fn contrail_sweep_removes_a_dead_containers_port_mappings_only() {
    if !require_root("contrail_sweep_removes_a_dead_containers_port_mappings_only") {
        return;
    }
    let node = Node::new(true);
    let (dead, live) = (cid(92), cid(93));
    let with_port = |port: u16| {
        let mut c = node.conf("0.2.0");
        c["args"]["org.apache.mesos"]["network_info"]["port_mappings"] =
            json!([{"host_port": port, "container_port": 80}]);
        c
    };
    {
        let ct = TestNetns::new("c");
        let (ok, out) = node.cni("ADD", &dead, "eth0", Some(&ct.path()), &with_port(18081));
        assert!(ok, "{out}");
    } // namespace deleted; the DEL never comes
    let ct_live = TestNetns::new("c");
    let (ok, out) = node.cni(
        "ADD",
        &live,
        "eth0",
        Some(&ct_live.path()),
        &with_port(18082),
    );
    assert!(ok, "{out}");
    eventually("the dead container's tap gone", || node.taps().len() == 1);
    let (elems, _) = portmap_table(&node).unwrap();
    assert_eq!(elems.len(), 2, "{elems:?}");
    let (ok, out) = node.sweep(&node.conf("0.2.0"), false);
    assert!(ok);
    assert!(
        out.starts_with(&format!("removed contrail-cni-plugin {dead}/eth0"))
            && out.contains("port mappings (nft chain cni-"),
        "{out}"
    );
    let (elems, chains) = portmap_table(&node).unwrap();
    assert_eq!(elems.len(), 1, "{elems:?}");
    assert!(elems[0].starts_with("tcp/18082->"), "{elems:?}");
    assert_eq!(chains.iter().filter(|c| c.starts_with("cni-")).count(), 1);
    assert!(
        node.cni(
            "DEL",
            &live,
            "eth0",
            Some(&ct_live.path()),
            &node.conf("0.2.0")
        )
        .0
    );
    assert!(portmap_table(&node).unwrap().0.is_empty());
}
