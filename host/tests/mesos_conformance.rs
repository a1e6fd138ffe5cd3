//! CNI conformance of the `mesos` (delegate) path, with Debian's reference plugins in real
//! network namespaces (root), and of VERSION per invoked name (no root).
//!
//! The plugin runs inside a test-owned "node" namespace, so the bridge the delegate makes is
//! never the machine's own; host-local keeps its state in a temp dir.

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use contrail_integration::netns::{TestNetns, require_root};
use contrail_integration::paths::{REFERENCE_CNI_DIR, wasm_plugin};
use serde_json::{Value, json};

/// An install dir as `make install` lays it out: the host, its `mesos` alias, the translator,
/// and the reference plugins.
fn install() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A link, not a copy: a copy written while another test thread forks can leave the file
    // open in a child, and exec then fails with "text file busy". The host finds its plugins
    // beside the name it was invoked by.
    symlink(
        contrail_integration::cni_host!(),
        d.join("contrail-cni-plugin"),
    )
    .unwrap();
    symlink("contrail-cni-plugin", d.join("mesos")).unwrap();
    fs::create_dir(d.join("contrail-cni-wasm")).unwrap();
    fs::copy(
        wasm_plugin("mesos_delegate"),
        d.join("contrail-cni-wasm/mesos-delegate.wasm"),
    )
    .unwrap();
    for p in ["bridge", "host-local"] {
        symlink(Path::new(REFERENCE_CNI_DIR).join(p), d.join(p)).unwrap();
    }
    dir
}

struct Node {
    ns: TestNetns,
    install: tempfile::TempDir,
    data: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        Node {
            ns: TestNetns::new("m"),
            install: install(),
            data: tempfile::tempdir().unwrap(),
        }
    }

    fn conf(&self, bridge: &str) -> Value {
        json!({
            "cniVersion": "0.2.0", "name": "confnet", "type": "mesos",
            "delegate": {"type": "bridge", "bridge": bridge, "isGateway": true,
                "ipam": {"type": "host-local", "subnet": "10.77.0.0/24",
                         "dataDir": self.data.path().join("ipam")}},
            "args": {"org.apache.mesos": {"network_info": {"name": "confnet", "labels": {}}}},
            "wasm": {"cache-dir": self.data.path().join("cache")},
            "log-file": self.data.path().join("cni.log"), "log-level": "debug"
        })
    }

    /// Runs the installed `mesos` inside the node namespace; (exit code, stdout JSON or Null).
    fn mesos(&self, command: &str, cid: &str, netns: &Path, conf: &Value) -> (i32, Value) {
        let node = fs::File::open(self.ns.path()).unwrap();
        let fd = node.as_raw_fd();
        let mut c = Command::new(self.install.path().join("mesos"));
        c.env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", cid)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_NETNS", netns)
            .env("CNI_PATH", self.install.path())
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: setns is async-signal-safe; the fd outlives the spawn.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let v = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !out.status.success() {
            eprintln!(
                "{command} {cid}: {v}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (out.status.code().unwrap_or(-1), v)
    }

    fn links(&self) -> Vec<String> {
        names(&self.ns.links())
    }

    fn reservations(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.data.path().join("ipam/confnet")) else {
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

fn eth0_addrs(ns: &TestNetns) -> Vec<String> {
    ns.addrs()
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ifname"] == "eth0")
        .flat_map(|l| l["addr_info"].as_array().unwrap().clone())
        .filter(|a| a["scope"] == "global")
        .map(|a| a["local"].as_str().unwrap().to_owned())
        .collect()
}

/// A second ADD for the same container and interface is refused before the delegate runs, so
/// the rollback DEL a failed delegate ADD gets can never take the existing eth0 and its address.
#[test]
fn a_repeated_add_leaves_the_existing_interface_alone() {
    if !require_root("a_repeated_add_leaves_the_existing_interface_alone") {
        return;
    }
    let node = Node::new();
    let ct = TestNetns::new("c");
    let conf = node.conf("mcbr0");
    let (code, r) = node.mesos("ADD", "c1", &ct.path(), &conf);
    assert_eq!(code, 0, "{r}");
    let ip = r["ip4"]["ip"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(eth0_addrs(&ct), vec![ip.clone()]);

    let (code, e) = node.mesos("ADD", "c1", &ct.path(), &conf);
    assert_eq!(code, 1, "{e}");
    assert_eq!(e["code"], 7, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("already exists"), "{e}");
    // The first ADD's interface, address and reservation are all still there.
    assert_eq!(eth0_addrs(&ct), vec![ip.clone()]);
    assert_eq!(node.reservations(), vec![ip]);

    assert_eq!(node.mesos("DEL", "c1", &ct.path(), &conf).0, 0);
    assert!(node.reservations().is_empty());
}

/// A `CNI_NETNS` that is not a network namespace is error 4 before the delegate runs: the
/// bridge plugin would otherwise create its bridge on the node first.
#[test]
fn a_bad_netns_is_error_4_and_the_delegate_never_runs() {
    if !require_root("a_bad_netns_is_error_4_and_the_delegate_never_runs") {
        return;
    }
    let node = Node::new();
    let conf = node.conf("mcbr1");
    let plain = node.data.path().join("not-a-netns");
    fs::write(&plain, b"").unwrap();
    for netns in [plain.clone(), PathBuf::from("/run/netns/does-not-exist-ct")] {
        let (code, e) = node.mesos("ADD", "c2", &netns, &conf);
        assert_eq!(code, 1, "{e}");
        assert_eq!(e["code"], 4, "{netns:?}: {e}");
        assert!(
            !node.links().iter().any(|l| l == "mcbr1"),
            "the delegate ran: {:?}",
            node.links()
        );
        assert!(node.reservations().is_empty());
    }
}
