//! The whole system on one machine. Everything runs inside a "node" network namespace that the
//! stack creates and the calling thread joins (threads and processes started afterwards inherit
//! it), so servers listen on that namespace's 127.0.0.1 and taps and bridges live there: the
//! machine's own links, routes and sysctls are never touched.
//!
//! ```text
//!  node namespace
//!  ├─ VNC API stand-in (in-process)  <──── contrail-mesos-manager (child processes, real binary;
//!  │                                        with `managers` > 1, a ZooKeeper elects their leader)
//!  ├─ Marathon stand-in (in-process) <──── the leading manager's watcher (REST + SSE)
//!  ├─ vRouter agent stand-in + bridge per VN, routed and policed (nftables) from VNC (in-process)
//!  └─ Mesos agent stand-in: execs contrail-cni-plugin (real binary, copied as `make install` does);
//!     its operator API (GET_CONTAINERS) is the managers' `[mesos] agent-url`
//!       └─ container namespaces (ip netns), veth `tap…` host ends on the VN bridges
//! ```

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use serde_json::json;

use crate::dns::DnsServer;
use crate::fabric::{FABRIC_IF, FabricHost};
use contrail_integration::marathon::MarathonServer;
use contrail_integration::mesos_agent::{MesosAgent, OperatorApi, write_network_config};
use contrail_integration::vnc::VncServer;
use contrail_integration::zookeeper::ZkServer;

use super::agent::DevAgent;
use super::scheduler::Scheduler;

/// The CNI network name of the Contrail network (the name DC/OS deployments of Contrail use).
pub const CONTRAIL_NETWORK: &str = "contrail-cni-plugin";
/// A second CNI network with the same plugin and `contrail` section: Mesos refuses to join one
/// CNI network twice, so a task on two Contrail virtual networks (`eth0`, `eth1`) names both.
pub const CONTRAIL_NETWORK_2: &str = "contrail-cni-plugin-2";
/// The node's own address (documentation range, inside the node namespace only).
pub const NODE_ADDRESS: &str = "192.0.2.10";
/// The node's name: the vrouter's fq_name and the CNI's `cluster-name`.
pub const NODE_NAME: &str = "devstack-node-1";

static STACKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Where the built artifacts are.
/// The managers' `[cluster] subnet`: the flat-subnet IPAM of the cluster, group and app networks
/// (the managers run in group isolation, so a Marathon group gets its own network).
pub const POD_SUBNET: &str = "10.32.0.0/16";

/// The DNS address of the networks on the pod IPAM: the API server gives a subnet's DNS the
/// last address but two (`vnc_addr_mgmt.py`), here 10.32.255.253.
pub fn pod_dns_address() -> std::net::IpAddr {
    let n: ipnet::Ipv4Net = POD_SUBNET.parse().expect("POD_SUBNET");
    std::net::IpAddr::V4((u32::from(n.broadcast()) - 2).into())
}

#[derive(Debug, Clone)]
pub struct StackOptions {
    pub cni_bin: PathBuf,
    pub wasm_dir: PathBuf,
    pub manager_bin: PathBuf,
    /// Manager reconcile period and grace (seconds); short in tests.
    pub reconcile_interval_secs: u64,
    pub reconcile_grace_secs: u64,
    /// A config API server to use instead of the in-process VNC stand-in (the manager and the
    /// agent feed talk to it over REST; the node's virtual router is provisioned there).
    pub vnc_url: Option<String>,
    /// Managers to run. More than one: a ZooKeeper (Debian's package) is started in the node
    /// namespace, they elect a leader, and the CNI config lists them all (`contrail.managers`).
    pub managers: usize,
}

impl StackOptions {
    /// Paths of a `cargo build` of the workspace (release for the demo, else debug).
    pub fn from_target_dir(profile: &str) -> Self {
        let t = contrail_integration::paths::target_dir();
        StackOptions {
            cni_bin: t.join(profile).join("contrail-cni-plugin"),
            wasm_dir: contrail_integration::paths::wasm_dir(),
            manager_bin: t.join(profile).join("contrail-mesos-manager"),
            reconcile_interval_secs: 2,
            reconcile_grace_secs: 3,
            vnc_url: None,
            managers: 1,
        }
    }
}

/// The node namespace, joined by the creating thread; deleted on drop.
pub struct NodeNetns {
    pub name: String,
}

impl NodeNetns {
    /// Creates the namespace and moves the calling thread into it.
    pub fn enter(name: &str) -> Result<NodeNetns, String> {
        contrail_integration::mesos_agent::create_netns(name)?;
        let node = NodeNetns {
            name: name.to_owned(),
        };
        let f = fs::File::open(node.path()).map_err(|e| e.to_string())?;
        setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {name}: {e}"))?;
        Ok(node)
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for NodeNetns {
    fn drop(&mut self) {
        contrail_integration::mesos_agent::delete_netns(&self.name);
    }
}

pub struct Stack {
    pub work: tempfile::TempDir,
    pub vnc: Arc<VncServer>,
    /// The config API the manager and the agent use: `vnc`'s, or `StackOptions::vnc_url`.
    pub vnc_url: String,
    pub marathon: Arc<MarathonServer>,
    pub agent: DevAgent,
    /// Also reachable over Marathon's REST write API (`marathon_api`).
    pub scheduler: Arc<Scheduler>,
    /// The first manager's URL (the only one without HA).
    pub manager_url: String,
    /// Every manager's URL, in the order the CNI tries them.
    pub manager_urls: Vec<String>,
    pub cni_bin_dir: PathBuf,
    pub config_dir: PathBuf,
    /// `contrail.config-dir`: the port files.
    pub ports_dir: PathBuf,
    manager_cfgs: Vec<PathBuf>,
    manager_bin: PathBuf,
    /// Behind locks so a test can kill and restart a manager while other threads deploy.
    managers: Vec<Mutex<Option<Child>>>,
    /// The election's ensemble, with several managers.
    pub zookeeper: Option<ZkServer>,
    /// Leave the work directory (logs, configs) behind when dropped.
    pub keep_work_dir: bool,
    /// A host on the IP fabric, linked to the node (`fabric`).
    pub fabric: FabricHost,
    /// The node's DNS server (`dns`), on port 53 of every node address.
    pub dns: DnsServer,
    // Dropped last: the namespace holding everything above.
    _node: NodeNetns,
}

/// Connects to an outside address on request, from the namespace of the thread that started it
/// (a socket stays in the namespace it was made in, whatever thread uses it later).
struct OutboundDialer {
    target: String,
    requests:
        std::sync::mpsc::Sender<std::sync::mpsc::Sender<std::io::Result<std::net::TcpStream>>>,
}

impl OutboundDialer {
    /// `url`: `http://host:port[/...]`.
    fn start(url: &str) -> Result<OutboundDialer, String> {
        let target = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--vnc-url {url}: only http:// URLs are supported"))?
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let (tx, rx) = std::sync::mpsc::channel::<
            std::sync::mpsc::Sender<std::io::Result<std::net::TcpStream>>,
        >();
        let t = target.clone();
        std::thread::spawn(move || {
            for reply in rx {
                let _ = reply.send(std::net::TcpStream::connect(&t));
            }
        });
        Ok(OutboundDialer {
            target,
            requests: tx,
        })
    }

    fn dial(&self) -> std::io::Result<std::net::TcpStream> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.requests
            .send(tx)
            .map_err(|_| std::io::Error::other("dialer gone"))?;
        rx.recv()
            .map_err(|_| std::io::Error::other("dialer gone"))?
    }

    /// A listener on the calling thread's 127.0.0.1 relaying each connection to the target;
    /// returns its URL. Runs for the life of the process's stack (threads end with the
    /// connections).
    fn relay(self) -> Result<String, String> {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let url = format!("http://{}", l.local_addr().map_err(|e| e.to_string())?);
        tracing::info!(from = %url, to = %self.target, "relaying the config API into the node namespace");
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(inside) = c else { continue };
                let Ok(out) = self.dial() else { continue };
                let (Ok(mut a), Ok(mut b)) = (inside.try_clone(), out.try_clone()) else {
                    continue;
                };
                let (mut inside, mut out) = (inside, out);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut out);
                    let _ = out.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut b, &mut inside);
                    let _ = inside.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Ok(url)
    }
}

/// Provisions the node's `virtual-router` on a config API server, as Contrail's provisioning
/// does for a real node (an existing one is kept).
fn provision_vrouter(base: &str, name: &str, ip: &str) -> Result<(), String> {
    let body = json!({"virtual-router": {"fq_name": ["default-global-system-config", name],
        "parent_type": "global-system-config", "virtual_router_ip_address": ip}});
    let r = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .post(format!("{}/virtual-routers", base.trim_end_matches('/')))
        .send_json(&body)
        .map_err(|e| format!("provisioning the virtual-router at {base}: {e}"))?;
    match r.status().as_u16() {
        200 | 409 => Ok(()),
        s => Err(format!(
            "provisioning the virtual-router at {base}: HTTP {s}"
        )),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The plugin compiler `contrail-cni-plugin` runs on a cache miss; built and installed beside
/// it (`make build`, `make install`).
const COMPILER_FILE: &str = "contrail-cni-plugin-compile";

fn copy_exe(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to).map_err(|e| format!("copy {} → {}: {e}", from.display(), to.display()))?;
    Ok(())
}

impl Stack {
    /// Starts everything; the calling thread is moved into a new node namespace.
    pub fn start(opts: &StackOptions) -> Result<Stack, String> {
        let compiler = opts.cni_bin.with_file_name(COMPILER_FILE);
        for (what, p) in [
            ("CNI host", &opts.cni_bin),
            ("plugin compiler", &compiler),
            ("manager", &opts.manager_bin),
        ] {
            if !p.is_file() {
                return Err(format!(
                    "{what} binary {} is missing: run `make build`",
                    p.display()
                ));
            }
        }
        // Unique per stack: tests start several stacks in one process.
        let seq = STACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}x{seq}", std::process::id() % 100_000);
        // A config API outside: reached from the node namespace through a relay whose outbound
        // side is a thread that stays in the caller's namespace (set up before entering).
        let outside = opts
            .vnc_url
            .as_deref()
            .map(OutboundDialer::start)
            .transpose()?;
        let node = NodeNetns::enter(&format!("cdsnode{tag}"))?;
        let work = tempfile::Builder::new()
            .prefix("contrail-devstack")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let root = work.path();

        // Contrail side: VNC with this node's vrouter provisioned (Contrail's provisioning does
        // that on a real node), the agent fed from VNC.
        let vnc = Arc::new(VncServer::start_on("127.0.0.1:0", 4).map_err(|e| e.to_string())?);
        let vnc_url = match outside {
            Some(dialer) => {
                let u = dialer.relay()?;
                provision_vrouter(&u, NODE_NAME, "127.0.0.1")?;
                u
            }
            None => {
                vnc.add_virtual_router(NODE_NAME, "127.0.0.1");
                vnc.url()
            }
        };
        let agent = DevAgent::start(&vnc_url, NODE_NAME)?;
        // The fabric host routes every Contrail address (10/8 here) to the node.
        let fabric = FabricHost::create(&format!("cdsfab{tag}"), &["10.0.0.0/8"])?;
        agent.dataplane.set_fabric(FABRIC_IF);
        let dns = DnsServer::start(&vnc_url, "0.0.0.0:53".parse().unwrap())?;
        let marathon = Arc::new(MarathonServer::start().map_err(|e| e.to_string())?);
        // The Mesos agent's operator API; the managers learn a container's executor (its
        // Marathon task) from it (`[mesos] agent-url`).
        let operator = OperatorApi::start().map_err(|e| format!("operator API: {e}"))?;
        // As a production template (`{node-ip}` is the attachment's `contrail.vrouter-ip`,
        // 127.0.0.1 here, where the agent's operator API listens).
        let agent_url = format!("http://{{node-ip}}:{}", operator.addr.port());

        // Agent node install, as `make install CNI_BIN_DIR=...` lays it out.
        let cni_bin_dir = root.join("cni-bin");
        let wasm = cni_bin_dir.join("contrail-cni-wasm");
        fs::create_dir_all(&wasm).map_err(|e| e.to_string())?;
        copy_exe(&opts.cni_bin, &cni_bin_dir.join("contrail-cni-plugin"))?;
        // The plugin compiler the host runs on a cache miss, beside it.
        copy_exe(
            &opts.cni_bin.with_file_name(COMPILER_FILE),
            &cni_bin_dir.join(COMPILER_FILE),
        )?;
        std::os::unix::fs::symlink("contrail-cni-plugin", cni_bin_dir.join("mesos"))
            .map_err(|e| e.to_string())?;
        copy_exe(
            &opts.wasm_dir.join("mesos_delegate.wasm"),
            &wasm.join("mesos-delegate.wasm"),
        )?;
        copy_exe(
            &opts.wasm_dir.join("contrail_ipam.wasm"),
            &wasm.join("contrail-ipam.wasm"),
        )?;

        // The managers on the "masters".
        let n = opts.managers.max(1);
        let zookeeper = if n > 1 {
            Some(ZkServer::start().map_err(|e| format!("zookeeper: {e}"))?)
        } else {
            None
        };
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let manager_urls: Vec<String> = ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let mut manager_cfgs = Vec::new();
        for (i, mport) in ports.iter().enumerate() {
            let path = root.join(format!("contrail-mesos-manager-{i}.toml"));
            let zk = zookeeper
                .as_ref()
                .map(|z| {
                    format!(
                        "[zookeeper]\nconnect = \"{}\"\nsession-timeout-secs = 6\nid = \"manager-{i}\"\n\n",
                        z.connect_string()
                    )
                })
                .unwrap_or_default();
            let cfg = format!(
                "[api]\nlisten = \"127.0.0.1:{mport}\"\n\n[vnc]\nurls = [\"{}\"]\n\n[cluster]\nname = \"devstack\"\nsubnet = \"{POD_SUBNET}\"\nisolation = \"group\"\n\n[fabric]\nsnat = true\npolicy-networks = [\"mesos-default-network\"]\n\n[dns]\nenabled = true\n\n\
                 [marathon]\nurls = [\"{}\"]\nbackoff-min-ms = 100\nbackoff-max-ms = 2000\n\n\
                 [mesos]\nagent-url = \"{agent_url}\"\n\n{zk}\
                 [reconcile]\ninterval-secs = {}\ngrace-secs = {}\nmin-pass-gap-secs = 1\n\n[log]\nfile = \"{}\"\nlevel = \"debug\"\n",
                vnc_url,
                marathon.url(),
                opts.reconcile_interval_secs,
                opts.reconcile_grace_secs,
                root.join(if n == 1 {
                    "manager.log".to_owned()
                } else {
                    format!("manager-{i}.log")
                })
                .display()
            );
            fs::write(&path, cfg).map_err(|e| e.to_string())?;
            manager_cfgs.push(path);
        }
        let manager_url = manager_urls[0].clone();
        let mport = ports[0];

        // The Contrail CNI network, in the agent's --network_cni_config_dir.
        let config_dir = root.join("net.d");
        let ports_dir = root.join("ports");
        let conf = json!({
            "cniVersion": "0.2.0",
            "name": CONTRAIL_NETWORK,
            "type": "contrail-cni-plugin",
            "contrail": {
                "vrouter-ip": "127.0.0.1", "vrouter-port": agent.port(), "cluster-name": NODE_NAME,
                "config-dir": ports_dir, "state-dir": root.join("attachments"),
                "poll-timeout": 1, "poll-retries": 10,
                "log-file": root.join("cni.log"), "log-level": "debug",
                "mode": "mesos", "mesos-ip": "127.0.0.1", "mesos-port": mport.to_string(), "mtu": 1500
            },
            "wasm": { "cache-dir": root.join("wasm-cache") }
        });
        let mut conf = conf;
        if n > 1 {
            // Tried in turn, a few seconds each: an ADD succeeds while any manager is up.
            conf["contrail"]["managers"] = json!(manager_urls);
            conf["contrail"]["mesos-timeout"] = json!(5);
        }
        write_network_config(&config_dir, "contrail-cni-plugin.conf", &conf)
            .map_err(|e| e.to_string())?;
        let mut conf2 = conf.clone();
        conf2["name"] = json!(CONTRAIL_NETWORK_2);
        write_network_config(&config_dir, "contrail-cni-plugin-2.conf", &conf2)
            .map_err(|e| e.to_string())?;

        let mut mesos = MesosAgent::new(&config_dir, &cni_bin_dir, &root.join("mesos-cni-root"));
        mesos.netns_prefix = format!("mesos{tag}-");
        let scheduler = Arc::new(Scheduler::new(marathon.clone(), mesos, operator, NODE_NAME));
        let weak = Arc::downgrade(&scheduler);
        marathon.set_write_handler(Arc::new(move |m: &str, p: &str, b: &str| {
            super::marathon_api::handle(&weak, m, p, b)
        }));
        let stack = Stack {
            work,
            vnc,
            vnc_url,
            marathon,
            agent,
            scheduler,
            manager_url,
            manager_urls,
            cni_bin_dir,
            config_dir,
            ports_dir,
            manager_bin: opts.manager_bin.clone(),
            managers: manager_cfgs.iter().map(|_| Mutex::new(None)).collect(),
            manager_cfgs,
            zookeeper,
            keep_work_dir: false,
            fabric,
            dns,
            _node: node,
        };
        stack.start_manager()?;
        Ok(stack)
    }

    fn manager(&self, i: usize) -> MutexGuard<'_, Option<Child>> {
        self.managers[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts every manager that is not running and waits for each one's `/healthz`.
    pub fn start_manager(&self) -> Result<(), String> {
        (0..self.managers.len()).try_for_each(|i| self.start_manager_at(i))
    }

    /// Starts manager `i` (unless it runs) and waits for its `/healthz`.
    pub fn start_manager_at(&self, i: usize) -> Result<(), String> {
        let mut manager = self.manager(i);
        if let Some(Ok(None)) = manager.as_mut().map(|c| c.try_wait()) {
            return Ok(());
        }
        let stderr = self.work.path().join(if self.managers.len() == 1 {
            "manager.stderr".to_owned()
        } else {
            format!("manager-{i}.stderr")
        });
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr)
            .map_err(|e| e.to_string())?;
        let child = Command::new(&self.manager_bin)
            .arg("--config")
            .arg(&self.manager_cfgs[i])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn manager: {e}"))?;
        *manager = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.health(i).is_some() {
                return Ok(());
            }
            if let Some(Ok(Some(st))) = manager.as_mut().map(|c| c.try_wait()) {
                return Err(format!("manager exited: {st}; see {}", stderr.display()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("manager did not answer /healthz within 30 s".into())
    }

    /// Manager `i`'s `/healthz` body, when it answers.
    fn health(&self, i: usize) -> Option<serde_json::Value> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(1)))
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        agent
            .get(&format!("{}/healthz", self.manager_urls[i]))
            .call()
            .ok()?
            .body_mut()
            .read_json()
            .ok()
    }

    /// How many managers the stack runs.
    pub fn manager_count(&self) -> usize {
        self.managers.len()
    }

    /// Which manager leads now (`/healthz` role `leader`, or the only one).
    pub fn leader(&self) -> Option<usize> {
        (0..self.managers.len()).find(|&i| {
            self.health(i)
                .is_some_and(|h| matches!(h["role"].as_str(), Some("leader" | "standalone")))
        })
    }

    /// Kills every manager with SIGKILL (a crash), without waiting for anything.
    pub fn kill_manager(&self) {
        (0..self.managers.len()).for_each(|i| self.kill_manager_at(i));
    }

    /// Kills manager `i` with SIGKILL.
    pub fn kill_manager_at(&self, i: usize) {
        if let Some(mut c) = self.manager(i).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops every manager gracefully (SIGTERM) and waits.
    pub fn stop_manager(&self) {
        for i in 0..self.managers.len() {
            if let Some(mut c) = self.manager(i).take() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(c.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let _ = c.wait();
            }
        }
    }

    /// One value of the leading manager's `/metrics` (e.g.
    /// `contrail_mesos_event_deletions_total`); None when it does not answer.
    pub fn manager_metric(&self, name: &str) -> Option<f64> {
        self.manager_metric_at(self.leader().unwrap_or(0), name)
    }

    /// One value of manager `i`'s `/metrics`.
    pub fn manager_metric_at(&self, i: usize, name: &str) -> Option<f64> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .proxy(None)
            .build()
            .into();
        let text = agent
            .get(&format!("{}/metrics", self.manager_urls[i]))
            .call()
            .ok()?
            .body_mut()
            .read_to_string()
            .ok()?;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// The Mesos agent operator API's URL (`POST <url>/api/v1`, `GET_CONTAINERS`), as the
    /// managers' `[mesos] agent-url` names it.
    pub fn agent_operator_url(&self) -> String {
        self.scheduler.operator.url()
    }

    /// Name of the node namespace (under /run/netns) everything runs in.
    pub fn node_netns(&self) -> &str {
        &self._node.name
    }

    /// The node's own address, [`NODE_ADDRESS`], on a link `node0` standing for its host NIC (a
    /// veth pair with both ends in the node namespace: not every kernel has the dummy driver),
    /// made on first use: what Marathon's `hostPort`s are reached on.
    pub fn node_address(&self) -> Result<std::net::IpAddr, String> {
        let ns = self.node_netns();
        let ip = |args: &[&str]| -> Result<(), String> {
            crate::dataplane::ip(&[&["-n", ns][..], args].concat())
        };
        if ip(&["link", "show", "node0"]).is_err() {
            ip(&[
                "link", "add", "node0", "type", "veth", "peer", "name", "node0p",
            ])?;
            ip(&["addr", "add", &format!("{NODE_ADDRESS}/32"), "dev", "node0"])?;
            ip(&["link", "set", "node0p", "up"])?;
            ip(&["link", "set", "node0", "up"])?;
        }
        Ok(NODE_ADDRESS.parse().expect("an address"))
    }

    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// VNC objects the manager owns, by type (what must be gone at the end).
    pub fn vnc_counts(&self) -> Vec<(&'static str, usize)> {
        [
            "virtual-machine",
            "virtual-machine-interface",
            "instance-ip",
            "floating-ip",
            "virtual-DNS-record",
        ]
        .into_iter()
        .map(|t| (t, self.vnc_count(t)))
        .collect()
    }

    /// Objects of a type in the config API the stack uses (`GET /<type>s?count=true`);
    /// `usize::MAX` when it cannot be read, so no "all gone" check passes by accident.
    pub fn vnc_count(&self, ty: &str) -> usize {
        ureq::get(format!("{}/{ty}s?count=true", self.vnc_url))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json::<serde_json::Value>().ok())
            .and_then(|v| v[format!("{ty}s")]["count"].as_u64())
            .map(|n| n as usize)
            .unwrap_or(usize::MAX)
    }

    /// Host-side interfaces named `tap…` in the node namespace.
    pub fn taps(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-j", "link", "show"])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| n.starts_with("tap"))
            .map(str::to_owned)
            .collect()
    }

    /// Port files left under `contrail.config-dir`.
    pub fn port_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for d in fs::read_dir(&self.ports_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            if d.path().is_dir() {
                out.extend(
                    fs::read_dir(d.path())
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|f| f.path()),
                );
            } else {
                out.push(d.path());
            }
        }
        out
    }

    /// Container namespaces the Mesos agent stand-in made that still exist.
    pub fn container_netns(&self) -> Vec<String> {
        fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&self.scheduler.agent.netns_prefix))
            .collect()
    }

    /// Polls `cond` every 100 ms up to `limit`; true when it held.
    pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if cond() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Deployments still running in the background (Marathon's REST API) end first: a launch
        // in flight would otherwise leave its container behind when the process exits.
        Stack::wait_for(Duration::from_secs(120), || self.scheduler.in_flight() == 0);
        // Containers next (their DELs need the manager and agent), then the manager.
        for id in self.scheduler.run_ids() {
            let _ = self.scheduler.destroy(&id);
        }
        self.stop_manager();
        if self.keep_work_dir
            && let Ok(empty) = tempfile::tempdir()
        {
            let _ = std::mem::replace(&mut self.work, empty).keep();
        }
    }
}
