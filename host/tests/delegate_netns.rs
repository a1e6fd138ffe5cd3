//! The Mesos delegate path in real network namespaces, with Debian's reference plugins.
//!
//! The installed `mesos` alias is invoked exactly as the Mesos agent does: the network config
//! file (with `args."org.apache.mesos".network_info` injected, as the Mesos network/cni isolator does) on stdin;
//! env CNI_COMMAND/CNI_CONTAINERID/CNI_PATH/CNI_IFNAME/CNI_NETNS/PATH and nothing else.
//!
//! Everything runs inside a test-owned "node" namespace (`ip netns exec`), so the bridge,
//! ip_forward and macvlan master the delegates touch are never the machine's own; host-local
//! keeps its state in a temp dir. Namespaces are removed on drop, pass or fail.
//! Needs root (prints SKIPPED otherwise) and `make wasm`.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use contrail_integration::netns::{TestNetns, require_root};
use contrail_integration::paths::{REFERENCE_CNI_DIR, wasm_plugin};
use serde_json::{Value, json};

const NETWORK: &str = "test-delegate";
const REFERENCE: &[&str] = &[
    "bridge",
    "host-local",
    "macvlan",
    "ipvlan",
    "static",
    "loopback",
];

/// One agent node: its namespace and the install dir (`CNI_PATH`).
struct Node {
    ns: TestNetns,
    install: tempfile::TempDir,
    cache: tempfile::TempDir,
    ipam_data: tempfile::TempDir,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {} stdout={:?} stderr={:?}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Node {
    fn new() -> Self {
        let node = Node {
            ns: TestNetns::new("n"),
            install: tempfile::tempdir().unwrap(),
            cache: tempfile::tempdir().unwrap(),
            ipam_data: tempfile::tempdir().unwrap(),
        };
        let dir = node.install.path();
        fs::copy(
            contrail_integration::cni_host!(),
            dir.join("contrail-cni-plugin"),
        )
        .unwrap();
        // Installed beside the host, as `make install` does: the first ADD compiles with it.
        fs::copy(
            env!("CARGO_BIN_EXE_contrail-cni-plugin-compile"),
            dir.join("contrail-cni-plugin-compile"),
        )
        .unwrap();
        symlink("contrail-cni-plugin", dir.join("mesos")).unwrap();
        fs::create_dir(dir.join("contrail-cni-wasm")).unwrap();
        fs::copy(
            wasm_plugin("mesos_delegate"),
            dir.join("contrail-cni-wasm/mesos-delegate.wasm"),
        )
        .unwrap();
        for p in REFERENCE {
            symlink(Path::new(REFERENCE_CNI_DIR).join(p), dir.join(p)).unwrap();
        }
        node
    }

    /// A network config as Mesos passes it: the operator's file plus the injected `args`.
    fn conf(&self, version: Option<&str>, delegate: Value, labels: &[(&str, &str)]) -> Value {
        let labels = if labels.is_empty() {
            json!({})
        } else {
            json!({"labels": labels.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>()})
        };
        let mut c = json!({
            "args": {"org.apache.mesos": {"network_info": {
                "ip_addresses": [{"protocol": "IPv4"}], "labels": labels, "name": NETWORK}}},
            "delegate": delegate,
            "name": NETWORK,
            "type": "mesos",
            "wasm": {"cache-dir": self.cache.path()},
        });
        if let Some(v) = version {
            c["cniVersion"] = json!(v);
        }
        c
    }

    fn bridge(&self, bridge: &str, subnet: &str) -> Value {
        json!({"type": "bridge", "bridge": bridge, "isGateway": true,
               "ipam": {"type": "host-local", "subnet": subnet, "dataDir": self.ipam_data.path()}})
    }

    /// Runs the installed `mesos` in the node namespace with the agent's environment.
    fn mesos(
        &self,
        command: &str,
        cid: &str,
        netns: Option<&Path>,
        ifname: Option<&str>,
        conf: &Value,
    ) -> Out {
        let conf_file = self
            .install
            .path()
            .join(format!("{}.network.conf", cid.replace('/', "_")));
        fs::write(&conf_file, serde_json::to_vec(conf).unwrap()).unwrap();
        let mut env = vec![
            format!("CNI_COMMAND={command}"),
            format!("CNI_CONTAINERID={cid}"),
            format!("CNI_PATH={}", self.install.path().display()),
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ];
        if let Some(i) = ifname {
            env.push(format!("CNI_IFNAME={i}"));
        }
        if let Some(n) = netns {
            env.push(format!("CNI_NETNS={}", n.display()));
        }
        let out = Command::new("ip")
            .args(["netns", "exec", self.ns.name(), "env", "-i"])
            .args(&env)
            .arg(self.install.path().join("mesos"))
            .stdin(Stdio::from(fs::File::open(&conf_file).unwrap()))
            .output()
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn add(&self, cid: &str, c: &TestNetns, conf: &Value) -> Out {
        self.mesos("ADD", cid, Some(&c.path()), Some("eth0"), conf)
    }

    fn del(&self, cid: &str, c: Option<&TestNetns>, conf: &Value) -> Out {
        let p: Option<PathBuf> = c.map(TestNetns::path);
        self.mesos("DEL", cid, p.as_deref(), Some("eth0"), conf)
    }

    fn link_names(&self) -> Vec<String> {
        names(&self.ns.links())
    }

    /// Files host-local keeps for the network (one per reserved address, plus its lock etc.).
    fn reservations(&self) -> Vec<String> {
        let dir = self.ipam_data.path().join(NETWORK);
        let Ok(rd) = fs::read_dir(dir) else {
            return vec![];
        };
        rd.map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }
}

fn names(links: &Value) -> Vec<String> {
    links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_owned())
        .collect()
}

/// Addresses (`a.b.c.d/len`) on `ifname` inside `ns`.
fn addrs(ns: &TestNetns, ifname: &str) -> Vec<String> {
    ns.addrs()
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ifname"] == ifname)
        .flat_map(|l| l["addr_info"].as_array().unwrap().clone())
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn only_lo(ns: &TestNetns) -> bool {
    names(&ns.links()) == vec!["lo".to_owned()]
}

#[test]
fn bridge_host_local_0_2_0_add_del_and_reuse() {
    if !require_root("bridge_host_local_0_2_0_add_del_and_reuse") {
        return;
    }
    let node = Node::new();
    let conf = node.conf(
        Some("0.2.0"),
        node.bridge("mbr0", "10.99.0.0/24"),
        &[("CNI_ARGS", "IP=10.99.0.42")],
    );
    let (c1, c2, c3) = (
        TestNetns::new("a"),
        TestNetns::new("b"),
        TestNetns::new("c"),
    );

    let out = node.add("c1", &c1, &conf);
    assert_eq!(out.code, 0, "{out}");
    let r = out.json();
    assert_eq!(r["cniVersion"], "0.2.0", "{out}");
    assert_eq!(r["ip4"]["ip"], "10.99.0.42/24", "{out}");
    assert_eq!(r["ip4"]["gateway"], "10.99.0.1", "{out}");
    assert!(
        r.get("ips").is_none() && r.get("interfaces").is_none(),
        "0.2.0 shape only: {out}"
    );
    assert_eq!(addrs(&c1, "eth0"), vec!["10.99.0.42/24"]);
    assert_eq!(node.reservations(), vec!["10.99.0.42"]);

    // The label's address is taken: the second container's ADD fails, and the delegate's DEL
    // (our rollback) leaves nothing behind in its namespace.
    let out = node.add("c2", &c2, &conf);
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(out.json()["code"], 102, "{out}");
    assert!(only_lo(&c2), "rollback left {:?}", c2.links());
    assert_eq!(node.reservations(), vec!["10.99.0.42"], "c1 still holds it");
    let veths = node
        .link_names()
        .into_iter()
        .filter(|n| n.starts_with("veth"))
        .count();
    assert_eq!(
        veths,
        1,
        "one host-side veth (c1's): {:?}",
        node.link_names()
    );

    // DEL frees the address; then the second container gets it.
    let out = node.del("c1", Some(&c1), &conf);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out}");
    assert!(only_lo(&c1), "{:?}", c1.links());
    assert!(node.reservations().is_empty());
    let out = node.add("c2", &c2, &conf);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(addrs(&c2, "eth0"), vec!["10.99.0.42/24"]);

    // DEL twice, and DEL without CNI_NETNS (after a reboot), succeed.
    let out = node.del("c1", Some(&c1), &conf);
    assert_eq!(out.code, 0, "{out}");
    let out = node.del("c1", None, &conf);
    assert_eq!(out.code, 0, "{out}");
    // A netns-less DEL of c2 still releases its address (same translation, host-local by id).
    let out = node.del("c2", None, &conf);
    assert_eq!(out.code, 0, "{out}");
    assert!(node.reservations().is_empty());
    let out = node.add("c3", &c3, &conf);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(node.del("c3", Some(&c3), &conf).code, 0);
}

#[test]
fn version_1_0_0_config_gets_the_1_0_0_shape() {
    if !require_root("version_1_0_0_config_gets_the_1_0_0_shape") {
        return;
    }
    let node = Node::new();
    let conf = node.conf(
        Some("1.0.0"),
        node.bridge("mbr1", "10.97.0.0/24"),
        &[("CNI_ARGS", "IP=10.97.0.9")],
    );
    let c = TestNetns::new("d");
    let out = node.add("c1", &c, &conf);
    assert_eq!(out.code, 0, "{out}");
    let r = out.json();
    assert_eq!(r["cniVersion"], "1.0.0");
    assert!(r.get("ip4").is_none(), "{out}");
    let ips = r["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 1, "{out}");
    assert_eq!(ips[0]["address"], "10.97.0.9/24");
    assert!(
        ips[0].get("version").is_none(),
        "1.0.0 has no ips[].version: {out}"
    );
    let itf = &r["interfaces"][ips[0]["interface"].as_u64().unwrap() as usize];
    assert_eq!(itf["name"], "eth0");
    assert_eq!(itf["sandbox"], c.path().to_str().unwrap());
    assert_eq!(addrs(&c, "eth0"), vec!["10.97.0.9/24"]);
    assert_eq!(node.del("c1", Some(&c), &conf).code, 0);
    assert!(only_lo(&c));
}

#[test]
fn macvlan_static_with_ipv4_and_ipv6_labels() {
    if !require_root("macvlan_static_with_ipv4_and_ipv6_labels") {
        return;
    }
    let node = Node::new();
    // The macvlan master: a veth that exists only inside the node namespace.
    node.ns.ip(&[
        "link", "add", "mvm0", "type", "veth", "peer", "name", "mvm1",
    ]);
    node.ns.ip(&["link", "set", "mvm0", "up"]);
    let delegate =
        json!({"type": "macvlan", "master": "mvm0", "mode": "bridge", "ipam": {"type": "static"}});
    let conf = node.conf(
        None,
        delegate,
        &[("CNI_ARGS", "IP=10.98.0.7/24,fd00:98::7/64")],
    );
    let c = TestNetns::new("e");
    let out = node.add("c1", &c, &conf);
    assert_eq!(out.code, 0, "{out}");
    let r = out.json();
    // No cniVersion in the config = 0.1.0: the ip4/ip6 shape Mesos reads.
    assert_eq!(r["cniVersion"], "0.1.0");
    assert_eq!(r["ip4"]["ip"], "10.98.0.7/24", "{out}");
    assert_eq!(r["ip6"]["ip"], "fd00:98::7/64", "{out}");
    let mut got = addrs(&c, "eth0");
    got.sort();
    assert_eq!(got, vec!["10.98.0.7/24", "fd00:98::7/64"]);
    let out = node.del("c1", Some(&c), &conf);
    assert_eq!(out.code, 0, "{out}");
    assert!(only_lo(&c));
    assert_eq!(node.del("c1", Some(&c), &conf).code, 0, "DEL twice");
    assert_eq!(node.del("c1", None, &conf).code, 0, "DEL without CNI_NETNS");
}

#[test]
fn bad_labels_and_missing_env_create_nothing() {
    if !require_root("bad_labels_and_missing_env_create_nothing") {
        return;
    }
    let node = Node::new();
    let c = TestNetns::new("f");
    let before = node.link_names();
    let check_nothing = |what: &str| {
        assert!(only_lo(&c), "{what}: {:?}", c.links());
        assert_eq!(node.link_names(), before, "{what}: node links changed");
        assert!(node.reservations().is_empty(), "{what}");
    };

    let bad_ip = node.conf(
        Some("0.2.0"),
        node.bridge("mbr2", "10.96.0.0/24"),
        &[("CNI_ARGS", "IP=banana")],
    );
    let out = node.add("c1", &c, &bad_ip);
    assert_eq!(
        (out.code, out.json()["code"].clone()),
        (1, json!(7)),
        "{out}"
    );
    assert!(
        out.json()["msg"].as_str().unwrap().contains("banana"),
        "{out}"
    );
    assert_eq!(out.json()["cniVersion"], "0.2.0");
    check_nothing("bad IP");
    // DEL with the same bad label (Mesos cleans up after a failed ADD) succeeds.
    assert_eq!(node.del("c1", Some(&c), &bad_ip).code, 0);

    let unknown = node.conf(
        Some("0.2.0"),
        node.bridge("mbr2", "10.96.0.0/24"),
        &[("CNI_ARGS", "IP=10.96.0.5;FOO=1")],
    );
    let out = node.add("c1", &c, &unknown);
    assert_eq!(out.json()["code"], 2, "{out}");
    assert!(out.json()["msg"].as_str().unwrap().contains("FOO"), "{out}");
    check_nothing("unknown key");

    let good = node.conf(
        Some("0.2.0"),
        node.bridge("mbr2", "10.96.0.0/24"),
        &[("CNI_ARGS", "IP=10.96.0.5")],
    );
    let out = node.mesos("ADD", "c1", None, Some("eth0"), &good);
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(out.json()["code"], 4);
    assert!(
        out.json()["msg"].as_str().unwrap().contains("CNI_NETNS"),
        "{out}"
    );
    check_nothing("no CNI_NETNS");
    let out = node.mesos("ADD", "c1", Some(&c.path()), None, &good);
    assert_eq!(out.json()["code"], 4, "{out}");
    assert!(
        out.json()["msg"].as_str().unwrap().contains("CNI_IFNAME"),
        "{out}"
    );
    let out = node.mesos("ADD", "bad/id", Some(&c.path()), Some("eth0"), &good);
    assert_eq!(out.json()["code"], 4, "{out}");
    check_nothing("bad env");

    // A delegate that is not in CNI_PATH: 101, nothing run.
    let mut missing = good.clone();
    missing["delegate"]["type"] = json!("no-such-plugin");
    let out = node.add("c1", &c, &missing);
    assert_eq!(out.json()["code"], 101, "{out}");
    check_nothing("missing delegate");

    // Finally the same network works, so the failures above were about the input.
    let out = node.add("c1", &c, &good);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(node.del("c1", Some(&c), &good).code, 0);
}
