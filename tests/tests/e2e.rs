//! End-to-end tests on the devstack: the real `contrail-cni-plugin` run by the
//! Mesos agent stand-in exactly as the `network/cni` isolator runs it, the real
//! `contrail-mesos-manager`, and the VNC, Marathon and vRouter agent stand-ins, all inside a node
//! namespace per test (see `devstack::stack`).
//!
//! Each test builds its own [`Stack`], which moves the test's thread into a fresh node namespace;
//! dropping it removes everything, also when the test fails. Tests need root: without it they
//! print SKIPPED (and fail under `CONTRAIL_REQUIRE_ROOT_TESTS=1`). Binaries come from a debug
//! build: `cargo build -p contrail-cni-host -p contrail-mesos-manager --bins` and
//! `cargo build --profile wasm-release --target wasm32-wasip2 -p mesos-delegate -p contrail-ipam`.
//!
//! Every wait is bounded ([`Stack::wait_for`]) and nothing asserts on timing: a wait only decides
//! how long to keep looking for a state that must eventually hold.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs::File;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use contrail_devstack::stack::{CONTRAIL_NETWORK, CONTRAIL_NETWORK_2, NODE_NAME};
use contrail_devstack::{RunSpec, Stack, StackOptions};
use contrail_integration::netns::require_root;
use contrail_integration::vnc::store::Obj;
use ipnet::Ipv4Net;
use nix::sched::{CloneFlags, setns};
use serde_json::{Value, json};

/// How long any eventually-true state is looked for.
const CONVERGE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Built binaries, or a panic that says how to build them.
fn options() -> StackOptions {
    let o = StackOptions::from_target_dir("debug");
    let wasm = [
        o.wasm_dir.join("mesos_delegate.wasm"),
        o.wasm_dir.join("contrail_ipam.wasm"),
    ];
    let build = "cargo build -p contrail-cni-host -p contrail-mesos-manager --bins && \
                 cargo build --profile wasm-release --target wasm32-wasip2 -p mesos-delegate -p contrail-ipam";
    for p in [&o.cni_bin, &o.manager_bin].into_iter().chain(wasm.iter()) {
        assert!(p.is_file(), "{} is missing: run `{build}`", p.display());
    }
    o
}

fn ip_cmd(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip_json(args: &[&str]) -> Value {
    serde_json::from_str(&ip_cmd(args)).unwrap_or(Value::Null)
}

/// `ip netns list` names (mount-wide, whichever net namespace asks).
fn netns_list() -> BTreeSet<String> {
    ip_cmd(&["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// `ip -br link` names in the calling thread's namespace.
fn links_here() -> BTreeSet<String> {
    ip_cmd(&["-br", "link"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

/// The machine's own namespace as the test found it, before the stack moved the thread away.
struct Machine {
    ns: File,
    links: BTreeSet<String>,
}

impl Machine {
    fn snapshot() -> Machine {
        Machine {
            ns: File::open("/proc/thread-self/ns/net").expect("own netns"),
            links: links_here(),
        }
    }

    /// `ip -br link` of the machine's namespace, from a thread that joined it.
    fn links_now(&self) -> BTreeSet<String> {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(&self.ns, CloneFlags::CLONE_NEWNET).expect("setns back");
                links_here()
            })
            .join()
            .expect("links thread")
        })
    }
}

/// A stack plus what is needed to prove it left nothing behind.
struct Harness {
    stack: Option<Stack>,
    machine: Machine,
    /// Every tap and bridge name the stack was seen to make.
    made: RefCell<BTreeSet<String>>,
}

impl Harness {
    fn start(opts: &StackOptions) -> Harness {
        let machine = Machine::snapshot();
        let stack = Stack::start(opts).unwrap_or_else(|e| panic!("stack: {e}"));
        Harness {
            stack: Some(stack),
            machine,
            made: RefCell::new(BTreeSet::new()),
        }
    }

    fn s(&self) -> &Stack {
        self.stack.as_ref().expect("stack")
    }

    fn note_links(&self) {
        let s = self.s();
        let mut made = self.made.borrow_mut();
        made.extend(s.taps());
        made.extend(s.agent.dataplane.bridges());
    }

    /// Drops the stack, then checks that its namespaces are gone and that none of its links
    /// showed up in the machine's namespace.
    fn finish(mut self) {
        self.note_links();
        let stack = self.stack.take().expect("stack");
        let node = stack.node_netns().to_owned();
        let prefix = stack.scheduler.agent.netns_prefix.clone();
        drop(stack);
        let left: Vec<String> = netns_list()
            .into_iter()
            .filter(|n| *n == node || n.starts_with(&prefix))
            .collect();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
        let now = self.machine.links_now();
        let made = self.made.borrow();
        let leaked: Vec<&String> = now
            .difference(&self.machine.links)
            .filter(|l| made.contains(*l))
            .collect();
        assert!(
            leaked.is_empty(),
            "links of the stack in the machine's namespace: {leaked:?}"
        );
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // A failed test keeps its logs (cni.log, manager.log) for the post-mortem.
        if std::thread::panicking()
            && let Some(s) = self.stack.as_mut()
        {
            s.keep_work_dir = true;
            eprintln!("keeping {} for the post-mortem", s.work_dir().display());
        }
    }
}

/// Polls `f` until it is Ok; panics with its last complaint when `limit` passes first.
fn wait_ok(limit: Duration, what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let mut last = String::new();
    let ok = Stack::wait_for(limit, || match f() {
        Ok(()) => true,
        Err(e) => {
            last = e;
            false
        }
    });
    assert!(ok, "{what}: still not true after {limit:?}: {last}");
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Views of the stack
// ---------------------------------------------------------------------------------------------

fn get_json(url: &str) -> Result<Value, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: {e}"))?;
    if status != 200 {
        return Err(format!("GET {url}: {status} {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("GET {url}: {e}"))
}

fn http_status(url: &str) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    agent
        .get(url)
        .call()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Marathon's view of an app (REST, as the manager reads it): (task id, host, ips), sorted.
fn marathon_tasks(stack: &Stack, app: &str) -> Result<Vec<(String, String, Vec<String>)>, String> {
    let v = get_json(&format!(
        "{}/v2/apps?embed=apps.tasks",
        stack.marathon.url()
    ))?;
    let mut out: Vec<(String, String, Vec<String>)> = v["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["id"] == app)
        .flat_map(|a| a["tasks"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            (
                t["id"].as_str().unwrap_or_default().to_owned(),
                t["host"].as_str().unwrap_or_default().to_owned(),
                t["ipAddresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["ipAddress"].as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

/// One instance as Mesos recorded it.
struct Inst {
    task: String,
    cid: String,
    netns: String,
    /// (network, ifname, ip)
    nets: Vec<(String, String, Option<String>)>,
}

fn instances(stack: &Stack, app: &str) -> Vec<Inst> {
    stack
        .scheduler
        .instances(app)
        .into_iter()
        .map(|(task, cid, netns, nets)| Inst {
            task,
            cid,
            netns,
            nets,
        })
        .collect()
}

fn objs(stack: &Stack, ty: &str) -> Vec<Obj> {
    stack
        .vnc
        .store()
        .list_type(ty)
        .into_iter()
        .cloned()
        .collect()
}

fn annotation(o: &Obj, k: &str) -> Option<String> {
    o.props
        .get("annotations")?
        .get("key_value_pair")?
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == k)
        .and_then(|kv| kv["value"].as_str().map(str::to_owned))
}

/// Owned objects of a type whose `container-id` annotation is `cid`.
fn of_container(stack: &Stack, ty: &str, cid: &str) -> Vec<Obj> {
    objs(stack, ty)
        .into_iter()
        .filter(|o| annotation(o, "container-id").as_deref() == Some(cid))
        .collect()
}

fn vmi_of(stack: &Stack, cid: &str, ifname: &str) -> Result<Obj, String> {
    let v: Vec<Obj> = of_container(stack, "virtual-machine-interface", cid)
        .into_iter()
        .filter(|o| annotation(o, "ifname").as_deref() == Some(ifname))
        .collect();
    match v.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("{} VMIs for {cid}/{ifname}", v.len())),
    }
}

fn mac_of(vmi: &Obj) -> Option<String> {
    vmi.props
        .get("virtual_machine_interface_mac_addresses")?
        .get("mac_address")?
        .get(0)?
        .as_str()
        .map(str::to_owned)
}

fn fq_of(stack: &Stack, uuid: &str) -> Vec<String> {
    stack
        .vnc
        .store()
        .get(uuid)
        .map(|o| o.fq_name.clone())
        .unwrap_or_default()
}

/// Instance-ips referring to a VMI.
fn iips_of(stack: &Stack, vmi_uuid: &str) -> Vec<Obj> {
    objs(stack, "instance-ip")
        .into_iter()
        .filter(|i| {
            i.ref_uuids("virtual-machine-interface")
                .contains(&vmi_uuid.to_owned())
        })
        .collect()
}

fn fq(name: &str) -> Vec<String> {
    ["default-domain", "default-project", name]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// IPv4 addresses on an interface inside a container namespace.
fn addrs_in(netns: &str, ifname: &str) -> Vec<String> {
    ip_json(&["-n", netns, "-j", "addr", "show", "dev", ifname])
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["family"] == "inet")
        .filter_map(|a| a["local"].as_str().map(str::to_owned))
        .collect()
}

fn mac_in(netns: &str, ifname: &str) -> Option<String> {
    ip_json(&["-n", netns, "-j", "link", "show", "dev", ifname])
        .get(0)?
        .get("address")?
        .as_str()
        .map(str::to_owned)
}

/// One network of an app: (ifname, virtual network name, subnet).
struct Net {
    ifname: &'static str,
    vn: &'static str,
    subnet: Ipv4Net,
}

fn net(ifname: &'static str, vn: &'static str, subnet: &str) -> Net {
    Net {
        ifname,
        vn,
        subnet: subnet.parse().expect("subnet"),
    }
}

/// Everything that must hold for an app with `n` running instances on `nets`, each check
/// naming what it found: Mesos' record, Marathon's REST view, VNC (one VM per container, one
/// VMI and one instance-ip per interface, on the right VN, with the address Mesos recorded, the
/// VM joined to its task), the node (taps, port files, namespaces) and the container's
/// interfaces. The totals make sure nothing else is left in VNC or on the node.
fn app_converged(stack: &Stack, app: &str, n: usize, nets: &[Net]) -> Result<(), String> {
    app_converged_with(stack, app, n, nets, 0)
}

/// [`app_converged`] on a node that also keeps `stale_ports` port files of containers whose
/// DEL never ran.
fn app_converged_with(
    stack: &Stack,
    app: &str,
    n: usize,
    nets: &[Net],
    stale_ports: usize,
) -> Result<(), String> {
    let insts = instances(stack, app);
    ensure!(insts.len() == n, "{} instances, want {n}", insts.len());
    let mut mesos: Vec<(String, String, Vec<String>)> = insts
        .iter()
        .map(|i| {
            let ips = i.nets.iter().filter_map(|(_, _, ip)| ip.clone()).collect();
            (i.task.clone(), NODE_NAME.to_owned(), ips)
        })
        .collect();
    mesos.sort();
    let marathon = marathon_tasks(stack, app)?;
    ensure!(
        marathon == mesos,
        "Marathon reports {marathon:?}, Mesos recorded {mesos:?}"
    );
    let mut all_ips = BTreeSet::new();
    for i in &insts {
        ensure!(
            i.nets.len() == nets.len(),
            "{}: {} attachments",
            i.task,
            i.nets.len()
        );
        let vms = of_container(stack, "virtual-machine", &i.cid);
        ensure!(vms.len() == 1, "{}: {} VMs", i.cid, vms.len());
        let vm = &vms[0];
        ensure!(
            vm.fq_name == vec![i.cid.clone()],
            "VM fq_name {:?}",
            vm.fq_name
        );
        ensure!(
            vm.props.get("display_name") == Some(&json!(i.task)),
            "VM of {} not joined to task {} (display_name {:?})",
            i.cid,
            i.task,
            vm.props.get("display_name")
        );
        for (k, want) in nets.iter().enumerate() {
            let (_, ifname, ip) = &i.nets[k];
            ensure!(
                ifname == want.ifname,
                "ifname {ifname}, want {}",
                want.ifname
            );
            let ip = ip.clone().ok_or(format!("{}: no IP on {ifname}", i.task))?;
            let addr: Ipv4Addr = ip.parse().map_err(|e| format!("{ip}: {e}"))?;
            ensure!(want.subnet.contains(&addr), "{ip} outside {}", want.subnet);
            ensure!(all_ips.insert(ip.clone()), "{ip} given twice");
            let vmi = vmi_of(stack, &i.cid, ifname)?;
            ensure!(
                vmi.ref_uuids("virtual-machine") == vec![vm.uuid.clone()],
                "VMI {} not on the VM",
                vmi.uuid
            );
            let vn = vmi.ref_uuids("virtual-network");
            ensure!(
                vn.len() == 1 && fq_of(stack, &vn[0]) == fq(want.vn),
                "VMI {} on {:?}",
                vmi.uuid,
                vn.iter().map(|u| fq_of(stack, u)).collect::<Vec<_>>()
            );
            let iips = iips_of(stack, &vmi.uuid);
            ensure!(
                iips.len() == 1,
                "{} instance-ips for {}",
                iips.len(),
                vmi.uuid
            );
            ensure!(
                iips[0].prop_str("instance_ip_address") == Some(ip.as_str()),
                "VNC has {:?}, Mesos recorded {ip}",
                iips[0].prop_str("instance_ip_address")
            );
            let inside = addrs_in(&i.netns, ifname);
            ensure!(
                inside.contains(&ip),
                "{} {ifname} has {inside:?}, not {ip}",
                i.netns
            );
        }
    }
    let per = n * nets.len();
    let counts = stack.vnc_counts();
    let want = [
        ("virtual-machine", n),
        ("virtual-machine-interface", per),
        ("instance-ip", per),
    ];
    for (ty, w) in want {
        let have = stack.vnc.count(ty);
        ensure!(have == w, "{have} {ty}s in VNC, want {w} ({counts:?})");
    }
    let taps = stack.taps();
    ensure!(taps.len() == per, "taps {taps:?}, want {per}");
    let ports = stack.port_files();
    ensure!(
        ports.len() == per + stale_ports,
        "port files {ports:?}, want {}",
        per + stale_ports
    );
    let ns: BTreeSet<String> = stack.container_netns().into_iter().collect();
    let want_ns: BTreeSet<String> = insts.iter().map(|i| i.netns.clone()).collect();
    ensure!(ns == want_ns, "namespaces {ns:?}, want {want_ns:?}");
    Ok(())
}

/// Nothing of any container is left: VNC objects the manager owns, taps, port files,
/// container namespaces, Marathon tasks.
fn nothing_left(stack: &Stack) -> Result<(), String> {
    let counts = stack.vnc_counts();
    ensure!(
        counts.iter().all(|(_, n)| *n == 0),
        "VNC still holds {counts:?}"
    );
    let taps = stack.taps();
    ensure!(taps.is_empty(), "taps left: {taps:?}");
    let ports = stack.port_files();
    ensure!(ports.is_empty(), "port files left: {ports:?}");
    let ns = stack.container_netns();
    ensure!(ns.is_empty(), "namespaces left: {ns:?}");
    let tasks = stack.marathon.tasks();
    ensure!(tasks.is_empty(), "Marathon tasks left: {tasks:?}");
    Ok(())
}

/// A Marathon app on Contrail networks: `(CNI network, labels)` per entry of `networks`.
fn app(id: &str, instances: usize, networks: &[(&str, &[(&str, &str)])]) -> RunSpec {
    let nets: Vec<Value> = networks
        .iter()
        .map(|(name, labels)| {
            let l: serde_json::Map<String, Value> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            json!({"mode": "container", "name": name, "labels": l})
        })
        .collect();
    RunSpec::from_app(
        &json!({"id": id, "instances": instances, "cmd": "sleep 3600",
        "cpus": 0.1, "mem": 32, "networks": nets}),
    )
    .expect("app definition")
}

// ---------------------------------------------------------------------------------------------
// 1. Deploy, scale up and down, destroy
// ---------------------------------------------------------------------------------------------

#[test]
fn deploy_scale_up_down_and_destroy_track_the_instance_count() {
    if !require_root("deploy_scale_up_down_and_destroy_track_the_instance_count") {
        return;
    }
    let h = Harness::start(&options());
    let s = h.s();
    let labels: &[(&str, &str)] = &[
        ("networks", "web-net"),
        ("network-subnets", "10.20.1.0/24"),
        ("project-name", "default-project"),
        ("domain-name", "default-domain"),
    ];
    let nets = [net("eth0", "web-net", "10.20.1.0/24")];
    s.scheduler
        .deploy(app("/web", 2, &[(CONTRAIL_NETWORK, labels)]))
        .expect("deploy /web");
    wait_ok(CONVERGE, "2 instances", || {
        app_converged(s, "/web", 2, &nets)
    });
    h.note_links();

    s.scheduler.scale("/web", 5).expect("scale up to 5");
    wait_ok(CONVERGE, "5 instances", || {
        app_converged(s, "/web", 5, &nets)
    });
    h.note_links();

    s.scheduler.scale("/web", 1).expect("scale down to 1");
    wait_ok(CONVERGE, "1 instance", || {
        app_converged(s, "/web", 1, &nets)
    });

    s.scheduler.destroy("/web").expect("destroy /web");
    wait_ok(CONVERGE, "nothing left after destroy", || nothing_left(s));
    // The network stays: the manager created it but it is shared, not per-container.
    assert!(
        s.vnc
            .store()
            .uuid_of("virtual-network", &fq("web-net"))
            .is_some()
    );
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// 2. A pod: two containers sharing one namespace
// ---------------------------------------------------------------------------------------------

#[test]
fn pod_containers_share_one_attachment_and_one_ip() {
    if !require_root("pod_containers_share_one_attachment_and_one_ip") {
        return;
    }
    let h = Harness::start(&options());
    let s = h.s();
    let pod = json!({"id": "/pod", "scaling": {"instances": 2},
        "containers": [{"name": "web", "resources": {"cpus": 0.1, "mem": 32}},
                       {"name": "sidecar", "resources": {"cpus": 0.1, "mem": 32}}],
        "networks": [{"mode": "container", "name": CONTRAIL_NETWORK,
            "labels": {"networks": "pod-net", "network-subnets": "10.30.1.0/24"}}]});
    let spec = RunSpec::from_pod(&pod).expect("pod definition");
    let ids = s.scheduler.deploy(spec).expect("deploy /pod");
    assert_eq!(ids.len(), 2);

    wait_ok(CONVERGE, "pod instances", || {
        let insts = instances(s, "/pod");
        ensure!(insts.len() == 2, "{} instances", insts.len());
        let status = get_json(&format!("{}/v2/pods/::status", s.marathon.url()))?;
        let reported = status[0]["instances"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ensure!(reported.len() == 2, "Marathon reports {reported:?}");
        for i in &insts {
            // One CNI attachment for the instance (one network), however many containers.
            ensure!(
                i.nets.len() == 1,
                "{} attachments for {}",
                i.nets.len(),
                i.task
            );
            let ip = i.nets[0].2.clone().ok_or("no IP")?;
            ensure!(
                of_container(s, "virtual-machine", &i.cid).len() == 1,
                "VMs of {}",
                i.cid
            );
            let vmi = vmi_of(s, &i.cid, "eth0")?;
            let iips = iips_of(s, &vmi.uuid);
            ensure!(
                iips.len() == 1 && iips[0].prop_str("instance_ip_address") == Some(ip.as_str()),
                "instance-ips of {}: {:?}",
                i.cid,
                iips.iter()
                    .map(|o| o.prop_str("instance_ip_address"))
                    .collect::<Vec<_>>()
            );
            ensure!(
                addrs_in(&i.netns, "eth0") == vec![ip.clone()],
                "eth0 of {}",
                i.netns
            );
            // Both container tasks reported with the instance's IP.
            let r = reported
                .iter()
                .find(|r| r["id"] == i.task.as_str())
                .ok_or(format!("{} not in pod status", i.task))?;
            let addrs: Vec<String> = r["networks"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|n| n["addresses"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect();
            ensure!(addrs == vec![ip.clone()], "{} reports {addrs:?}", i.task);
            let containers: BTreeSet<String> = r["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["containerId"].as_str().map(str::to_owned))
                .collect();
            let want: BTreeSet<String> = ["web", "sidecar"]
                .iter()
                .map(|c| format!("{}.{c}", i.task))
                .collect();
            ensure!(containers == want, "containers {containers:?}");
            // The manager joined the instance's VM to one of its container tasks.
            let vm = &of_container(s, "virtual-machine", &i.cid)[0];
            let dn = vm.props["display_name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            ensure!(want.contains(&dn), "VM of {} joined to {dn:?}", i.cid);
        }
        for (ty, n) in [
            ("virtual-machine", 2),
            ("virtual-machine-interface", 2),
            ("instance-ip", 2),
        ] {
            ensure!(s.vnc.count(ty) == n, "{} {ty}", s.vnc.count(ty));
        }
        ensure!(s.taps().len() == 2, "taps {:?}", s.taps());
        ensure!(s.port_files().len() == 2, "ports {:?}", s.port_files());
        ensure!(s.container_netns().len() == 2, "netns");
        Ok(())
    });
    h.note_links();

    s.scheduler.destroy("/pod").expect("destroy /pod");
    wait_ok(CONVERGE, "nothing left after destroy", || {
        nothing_left(s)?;
        let status = get_json(&format!("{}/v2/pods/::status", s.marathon.url()))?;
        ensure!(
            status.as_array().is_some_and(|a| a.is_empty()),
            "pods left: {status}"
        );
        Ok(())
    });
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// 3. One task on two networks
// ---------------------------------------------------------------------------------------------

#[test]
fn one_task_on_two_networks_gets_eth0_and_eth1() {
    if !require_root("one_task_on_two_networks_gets_eth0_and_eth1") {
        return;
    }
    let h = Harness::start(&options());
    let s = h.s();
    let front: &[(&str, &str)] = &[
        ("networks", "front-net"),
        ("network-subnets", "10.50.1.0/24"),
    ];
    let back: &[(&str, &str)] = &[
        ("networks", "back-net"),
        ("network-subnets", "10.50.2.0/24"),
    ];
    let nets = [
        net("eth0", "front-net", "10.50.1.0/24"),
        net("eth1", "back-net", "10.50.2.0/24"),
    ];
    // Mesos ADDs both networks of a container in parallel; two instances make four at once.
    s.scheduler
        .deploy(app(
            "/dual",
            2,
            &[(CONTRAIL_NETWORK, front), (CONTRAIL_NETWORK_2, back)],
        ))
        .expect("deploy /dual");
    wait_ok(CONVERGE, "2 instances on 2 networks", || {
        app_converged(s, "/dual", 2, &nets)
    });
    h.note_links();

    for i in instances(s, "/dual") {
        for (k, ifname) in ["eth0", "eth1"].into_iter().enumerate() {
            let vmi = vmi_of(s, &i.cid, ifname).unwrap();
            assert_eq!(
                annotation(&vmi, "index").as_deref(),
                Some(format!("{k}/{}", k + 1).as_str()),
                "index annotation of {}",
                vmi.uuid
            );
            let want = mac_of(&vmi).expect("VMI MAC");
            assert_eq!(
                mac_in(&i.netns, ifname).as_deref(),
                Some(want.as_str()),
                "{ifname} MAC in {} differs from VNC",
                i.netns
            );
        }
        let defaults = ip_json(&["-n", &i.netns, "-j", "route", "show", "default"]);
        let devs: Vec<&str> = defaults
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["dev"].as_str())
            .collect();
        assert_eq!(
            devs,
            vec!["eth0"],
            "default routes in {}: {defaults}",
            i.netns
        );
    }

    s.scheduler.destroy("/dual").expect("destroy /dual");
    wait_ok(CONVERGE, "nothing left after destroy", || nothing_left(s));
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// 4. Floating IPs and security groups
// ---------------------------------------------------------------------------------------------

#[test]
fn floating_ips_and_security_groups_reach_vnc_and_go_with_the_task() {
    if !require_root("floating_ips_and_security_groups_reach_vnc_and_go_with_the_task") {
        return;
    }
    let h = Harness::start(&options());
    let s = h.s();
    // What an operator provisions: two security groups and a public network with a pool.
    let sg = |name: &str, port: u16| {
        s.vnc
            .create(
                "security-group",
                json!({"fq_name": fq(name), "parent_type": "project",
                    "security_group_entries": {"policy_rule": [{"direction": ">", "protocol": "tcp",
                        "ethertype": "IPv4", "src_addresses": [{"subnet": {"ip_prefix": "0.0.0.0", "ip_prefix_len": 0}}],
                        "src_ports": [{"start_port": 0, "end_port": 65535}],
                        "dst_addresses": [{"security_group": "local"}],
                        "dst_ports": [{"start_port": port, "end_port": port}]}]}}),
            )
            .expect("security group")
    };
    let sg_web = sg("sg-web", 80);
    let sg_db = sg("sg-db", 5432);
    let public = s
        .vnc
        .create(
            "virtual-network",
            json!({"fq_name": fq("public-net"), "parent_type": "project",
                "network_ipam_refs": [{"to": fq("default-network-ipam"),
                    "attr": {"ipam_subnets": [{"subnet": {"ip_prefix": "10.99.0.0", "ip_prefix_len": 24}}]}}]}),
        )
        .expect("public network");
    let mut pool_fq = fq("public-net");
    pool_fq.push("public-pool".into());
    let pool = s
        .vnc
        .create(
            "floating-ip-pool",
            json!({"fq_name": pool_fq, "parent_type": "virtual-network"}),
        )
        .expect("pool");
    let pool_label = pool_fq.join(":");
    let fips_label = format!("{pool_label}(10.99.0.10),{pool_label}");
    let labels: &[(&str, &str)] = &[
        ("networks", "fip-net"),
        ("network-subnets", "10.60.1.0/24"),
        (
            "security-groups",
            "sg-web,default-domain:default-project:sg-db",
        ),
        ("floating-ips", &fips_label),
    ];
    let nets = [net("eth0", "fip-net", "10.60.1.0/24")];
    s.scheduler
        .deploy(app("/fip", 1, &[(CONTRAIL_NETWORK, labels)]))
        .expect("deploy /fip");
    wait_ok(CONVERGE, "1 instance", || {
        app_converged(s, "/fip", 1, &nets)
    });
    h.note_links();

    let inst = instances(s, "/fip").remove(0);
    let vmi = vmi_of(s, &inst.cid, "eth0").unwrap();
    let sgs: BTreeSet<String> = vmi.ref_uuids("security-group").into_iter().collect();
    assert_eq!(
        sgs,
        BTreeSet::from([sg_web.clone(), sg_db.clone()]),
        "security_group_refs of the VMI"
    );
    let project = s
        .vnc
        .store()
        .uuid_of(
            "project",
            &["default-domain".to_string(), "default-project".to_string()],
        )
        .unwrap();
    let fips = objs(s, "floating-ip");
    assert_eq!(fips.len(), 2, "floating-ips: {fips:?}");
    let mut addrs = Vec::new();
    for f in &fips {
        assert_eq!(
            f.parent.as_ref().map(|p| p.1.as_str()),
            Some(pool.as_str()),
            "parent pool"
        );
        assert_eq!(
            f.ref_uuids("virtual-machine-interface"),
            vec![vmi.uuid.clone()]
        );
        assert_eq!(f.ref_uuids("project"), vec![project.clone()]);
        assert_eq!(
            annotation(f, "container-id").as_deref(),
            Some(inst.cid.as_str())
        );
        addrs.push(f.prop_str("floating_ip_address").unwrap().to_owned());
    }
    addrs.sort();
    let public_net: Ipv4Net = "10.99.0.0/24".parse().unwrap();
    assert!(addrs.contains(&"10.99.0.10".to_owned()), "{addrs:?}");
    let other: Ipv4Addr = addrs
        .iter()
        .find(|a| *a != "10.99.0.10")
        .unwrap()
        .parse()
        .unwrap();
    assert!(public_net.contains(&other), "allocated {other}");

    s.scheduler.destroy("/fip").expect("destroy /fip");
    wait_ok(CONVERGE, "nothing left after destroy", || nothing_left(s));
    // The pool, its network and the groups are the operator's: they stay, unreferenced.
    let store = s.vnc.store();
    for u in [&sg_web, &sg_db, &public, &pool] {
        assert!(store.get(u).is_some(), "{u} was deleted");
    }
    for u in [&sg_web, &sg_db] {
        assert!(
            store.back_refs_of(u).is_empty(),
            "{u} still referred by {:?}",
            store.back_refs_of(u)
        );
    }
    drop(store);
    // The requested address went back to the pool.
    let mut f = pool_fq.clone();
    f.push("probe".into());
    s.vnc
        .create(
            "floating-ip",
            json!({"fq_name": f, "parent_type": "floating-ip-pool", "floating_ip_address": "10.99.0.10",
                "project_refs": [{"to": ["default-domain", "default-project"]}]}),
        )
        .expect("10.99.0.10 is free again");
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// 5. The manager killed (SIGKILL) in the middle of a deployment
// ---------------------------------------------------------------------------------------------

#[test]
fn manager_killed_mid_deployment_converges_without_duplicates_or_leftovers() {
    if !require_root("manager_killed_mid_deployment_converges_without_duplicates_or_leftovers") {
        return;
    }
    let h = Harness::start(&options());
    let s = h.s();
    let labels: &[(&str, &str)] = &[
        ("networks", "crash-net"),
        ("network-subnets", "10.70.0.0/24"),
    ];
    let nets = [net("eth0", "crash-net", "10.70.0.0/24")];
    s.scheduler
        .deploy(app("/crash", 1, &[(CONTRAIL_NETWORK, labels)]))
        .expect("deploy /crash");
    wait_ok(CONVERGE, "1 instance", || {
        app_converged(s, "/crash", 1, &nets)
    });

    // Slow VNC down so registrations are in flight (several VNC calls each) when the kill lands.
    s.vnc.set_delay(Duration::from_millis(40));
    let first = std::thread::scope(|sc| {
        let scaling = sc.spawn(|| s.scheduler.scale("/crash", 7));
        // Kill once the first new registration reached VNC: the others are mid-way.
        Stack::wait_for(CONVERGE, || {
            s.vnc.count("virtual-machine") >= 2 || scaling.is_finished()
        });
        s.kill_manager();
        scaling.join().expect("scale thread")
    });
    s.vnc.set_delay(Duration::ZERO);
    let survivors = instances(s, "/crash").len();
    eprintln!("scale-up during the kill: {survivors} of 7 running; {first:?}");

    // While the manager is down, ADDs fail (CNI error 11) and leave nothing on the node.
    let down = s.scheduler.scale("/crash", survivors + 2);
    assert!(down.is_err(), "ADD succeeded without a manager: {down:?}");
    assert_eq!(instances(s, "/crash").len(), survivors);
    assert_eq!(
        s.container_netns().len(),
        survivors,
        "namespaces of failed ADDs"
    );
    assert_eq!(
        s.taps().len(),
        survivors,
        "taps of failed ADDs: {:?}",
        s.taps()
    );
    assert_eq!(
        s.port_files().len(),
        survivors,
        "port files of failed ADDs: {:?}",
        s.port_files()
    );

    // Restart; Marathon relaunches what failed until the app has its 7 instances.
    s.start_manager().expect("manager restart");
    let mut tries = 0;
    while let Err(e) = s.scheduler.scale("/crash", 7) {
        tries += 1;
        assert!(tries < 5, "scale to 7 after the restart keeps failing: {e}");
    }
    // Partial registrations of the killed ADDs are owned objects without a task: the
    // reconciler removes them after the grace period. Exactly one VM/VMI/instance-ip per
    // running container must remain.
    wait_ok(CONVERGE, "7 instances, nothing extra", || {
        app_converged(s, "/crash", 7, &nets)
    });
    h.note_links();

    s.scheduler.destroy("/crash").expect("destroy /crash");
    wait_ok(CONVERGE, "nothing left after destroy", || nothing_left(s));
    h.finish();
}

/// What a leader crash in the middle of a scale-up cost (printed by the tests, recorded in
/// docs/BENCHMARKS.md for the 200-task run).
#[derive(Debug)]
struct Failover {
    tasks: usize,
    /// (VMs, instance-ips) in VNC when the leader died: a VM without its address is a
    /// registration in flight.
    at_kill: (usize, usize),
    takeover: Duration,
    first_pass: Duration,
    /// Scale calls that reported a failed launch (each failed ADD is retried by the next call).
    failed_scale_calls: usize,
    /// CNI calls to the manager answered by a later instance of `contrail.managers` (the
    /// first, the killed leader, refused or cut the connection).
    failed_over: usize,
    converged: Duration,
}

/// Three managers; the leader is killed (SIGKILL) once `kill_at` VMs of a scale-up to `n` tasks
/// are registered. A standby leads after the session timeout (6 s) and runs a pass; ADDs fail over
/// to the managers still up; at the end exactly one VM/VMI/instance-ip per task remains, and
/// after the destroy nothing does.
fn leader_killed_in_a_storm(n: usize, kill_at: usize) -> Option<Failover> {
    if !contrail_integration::zookeeper::available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ZooKeeper is required under CI (make deps installs it)"
        );
        eprintln!("SKIPPED: ZooKeeper not installed");
        return None;
    }
    let mut opts = options();
    opts.managers = 3;
    // Passes are the leader's job; a long interval shows the pass a new leader runs at once.
    opts.reconcile_interval_secs = 60;
    let h = Harness::start(&opts);
    let s = h.s();
    let labels: &[(&str, &str)] = &[
        ("networks", "storm-net"),
        ("network-subnets", "10.80.0.0/16"),
    ];
    let nets = [net("eth0", "storm-net", "10.80.0.0/16")];
    s.scheduler
        .deploy(app("/storm", 1, &[(CONTRAIL_NETWORK, labels)]))
        .expect("deploy /storm");
    wait_ok(CONVERGE, "1 instance", || {
        app_converged(s, "/storm", 1, &nets)
    });
    let old = s.leader().expect("a leader");

    let started = std::time::Instant::now();
    // VNC a little slow (as a loaded API server is), so registrations are in flight when the
    // kill lands.
    s.vnc.set_delay(Duration::from_millis(20));
    let (first, at_kill, killed_at) = std::thread::scope(|sc| {
        let scaling = sc.spawn(|| s.scheduler.scale("/storm", n));
        Stack::wait_for(Duration::from_secs(600), || {
            s.vnc.count("virtual-machine") >= kill_at || scaling.is_finished()
        });
        s.kill_manager_at(old);
        let at = (s.vnc.count("virtual-machine"), s.vnc.count("instance-ip"));
        let killed_at = std::time::Instant::now();
        (scaling.join().expect("scale thread"), at, killed_at)
    });
    s.vnc.set_delay(Duration::ZERO);
    let mut new = None;
    assert!(
        Stack::wait_for(Duration::from_secs(30), || {
            new = s.leader().filter(|&i| i != old);
            new.is_some()
        }),
        "no standby took over"
    );
    let new = new.unwrap();
    let takeover = killed_at.elapsed();
    assert!(
        Stack::wait_for(Duration::from_secs(30), || {
            s.manager_metric_at(new, "contrail_mesos_reconcile_runs_total")
                .is_some_and(|r| r >= 1.0)
        }),
        "the new leader ran no pass"
    );
    let first_pass = killed_at.elapsed();
    let mut failed_scale_calls = usize::from(first.is_err());
    while let Err(e) = s.scheduler.scale("/storm", n) {
        failed_scale_calls += 1;
        assert!(failed_scale_calls < 5, "scale to {n} keeps failing: {e}");
    }
    wait_ok(
        Duration::from_secs(120),
        "every task, nothing extra",
        || app_converged(s, "/storm", n, &nets),
    );
    let converged = started.elapsed();
    let failed_over = std::fs::read_to_string(s.work_dir().join("cni.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("answered by a later manager instance"))
        .count();
    h.note_links();
    s.scheduler.destroy("/storm").expect("destroy /storm");
    wait_ok(
        Duration::from_secs(120),
        "nothing left after destroy",
        || nothing_left(s),
    );
    h.finish();
    let f = Failover {
        tasks: n,
        at_kill,
        takeover,
        first_pass,
        failed_scale_calls,
        failed_over,
        converged,
    };
    eprintln!(
        "leader killed with {} VMs and {} instance-ips of {} tasks in VNC: standby leads after \
         {:.2?}, first pass done {:.2?} after the kill; failed scale calls {}; manager calls \
         failed over to a later instance {}; {} tasks converged in {:.2?}; nothing leaked or \
         missing",
        f.at_kill.0,
        f.at_kill.1,
        f.tasks,
        f.takeover,
        f.first_pass,
        f.failed_scale_calls,
        f.failed_over,
        f.tasks,
        f.converged
    );
    Some(f)
}

#[test]
fn leader_killed_mid_deployment_a_standby_takes_over_and_nothing_leaks() {
    if !require_root("leader_killed_mid_deployment_a_standby_takes_over_and_nothing_leaks") {
        return;
    }
    // Killed once the first new registration reached VNC: the others are mid-way.
    if let Some(f) = leader_killed_in_a_storm(8, 2) {
        assert_eq!(
            f.failed_scale_calls, 0,
            "ADDs failed with two managers up: {f:?}"
        );
    }
}

/// `HA_STORM_TASKS=200 cargo test -p contrail-integration --test e2e -- --ignored bench_leader`
#[test]
#[ignore = "benchmark: run by hand, results in docs/BENCHMARKS.md"]
fn bench_leader_killed_in_a_200_task_storm() {
    if !require_root("bench_leader_killed_in_a_200_task_storm") {
        return;
    }
    let n = std::env::var("HA_STORM_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    leader_killed_in_a_storm(n, n / 2);
}

// ---------------------------------------------------------------------------------------------
// 6. A CNI DEL that never happens
// ---------------------------------------------------------------------------------------------

fn lost_nets() -> [Net; 1] {
    [net("eth0", "lost-net", "10.80.0.0/24")]
}

fn lost_app_converged(s: &Stack, n: usize) -> Result<(), String> {
    app_converged(s, "/lost", n, &lost_nets())
}

fn lost_labels() -> &'static [(&'static str, &'static str)] {
    &[
        ("networks", "lost-net"),
        ("network-subnets", "10.80.0.0/24"),
    ]
}

/// VNC, the agent's config and the node keep nothing of a container whose DEL never ran,
/// except its port file (node-local state only a DEL removes).
fn lost_container_cleaned(s: &Stack, cid: &str, netns: &str) -> Result<(), String> {
    for ty in [
        "virtual-machine",
        "virtual-machine-interface",
        "instance-ip",
    ] {
        let left = of_container(s, ty, cid);
        ensure!(left.is_empty(), "{} {ty}s of {cid} left", left.len());
    }
    let st = http_status(&format!("{}/vm-cfg/{cid}", s.agent.standin.url()));
    ensure!(
        st == 404,
        "agent still configures {cid}: vm-cfg answered {st}"
    );
    ensure!(
        !s.container_netns().contains(&netns.to_owned()),
        "{netns} still exists"
    );
    Ok(())
}

#[test]
fn lost_del_with_task_lost_event_is_cleaned_up_by_the_event_path() {
    if !require_root("lost_del_with_task_lost_event_is_cleaned_up_by_the_event_path") {
        return;
    }
    // No periodic pass within the test: only the terminal event (TASK_GONE) can clean up.
    let mut opts = options();
    opts.reconcile_interval_secs = 3600;
    let h = Harness::start(&opts);
    let s = h.s();
    s.scheduler
        .deploy(app("/lost", 3, &[(CONTRAIL_NETWORK, lost_labels())]))
        .expect("deploy /lost");
    // Joined (VM display name = task id) through the TASK_RUNNING events.
    wait_ok(CONVERGE, "3 joined instances", || lost_app_converged(s, 3));
    h.note_links();
    let victim = instances(s, "/lost").pop().unwrap();

    let task = s.scheduler.lose_instance("/lost", false).expect("lose");
    assert_eq!(task, victim.task);
    wait_ok(CONVERGE, "lost container cleaned", || {
        lost_container_cleaned(s, &victim.cid, &victim.netns)
    });
    // The survivors are untouched; the lost container's port file stays (only DEL removes it).
    wait_ok(CONVERGE, "survivors intact", || {
        app_converged_with(s, "/lost", 2, &lost_nets(), 1)
    });
    assert!(
        s.manager_metric("contrail_mesos_event_deletions_total")
            .is_some_and(|n| n >= 1.0),
        "event deletions: {:?}",
        s.manager_metric("contrail_mesos_event_deletions_total")
    );
    assert_eq!(
        s.manager_metric("contrail_mesos_reconcile_deletions_total"),
        Some(0.0)
    );

    s.scheduler.destroy("/lost").expect("destroy /lost");
    wait_ok(CONVERGE, "VNC empty after destroy", || {
        let counts = s.vnc_counts();
        ensure!(counts.iter().all(|(_, n)| *n == 0), "{counts:?}");
        ensure!(s.taps().is_empty(), "taps {:?}", s.taps());
        ensure!(s.container_netns().is_empty(), "netns left");
        Ok(())
    });
    // Only the lost container's port file stays: DEL is the only thing that removes it.
    let ports = s.port_files();
    assert!(
        ports.len() == 1 && ports[0].to_string_lossy().contains(&victim.cid),
        "port files: {ports:?}"
    );
    h.finish();
}

#[test]
fn lost_del_without_any_event_is_cleaned_up_by_the_reconciler() {
    if !require_root("lost_del_without_any_event_is_cleaned_up_by_the_reconciler") {
        return;
    }
    let h = Harness::start(&options());
    let s = h.s();
    s.scheduler
        .deploy(app("/lost", 3, &[(CONTRAIL_NETWORK, lost_labels())]))
        .expect("deploy /lost");
    wait_ok(CONVERGE, "3 joined instances", || lost_app_converged(s, 3));
    h.note_links();
    let victim = instances(s, "/lost").pop().unwrap();
    let before = s
        .manager_metric("contrail_mesos_reconcile_deletions_total")
        .unwrap_or(0.0);

    // The task vanishes from Marathon's lists with no event, and its DEL never runs.
    let task = s.scheduler.lose_instance("/lost", true).expect("lose");
    assert_eq!(task, victim.task);
    assert!(
        marathon_tasks(s, "/lost")
            .unwrap()
            .iter()
            .all(|t| t.0 != task)
    );
    wait_ok(CONVERGE, "lost container cleaned", || {
        lost_container_cleaned(s, &victim.cid, &victim.netns)
    });
    // The survivors are untouched; the lost container's port file stays (only DEL removes it).
    wait_ok(CONVERGE, "survivors intact", || {
        app_converged_with(s, "/lost", 2, &lost_nets(), 1)
    });
    assert!(
        s.manager_metric("contrail_mesos_reconcile_deletions_total")
            .is_some_and(|n| n > before),
        "the reconciler did not count the deletion"
    );
    assert_eq!(
        s.manager_metric("contrail_mesos_event_deletions_total"),
        Some(0.0)
    );

    s.scheduler.destroy("/lost").expect("destroy /lost");
    wait_ok(CONVERGE, "VNC empty after destroy", || {
        let counts = s.vnc_counts();
        ensure!(counts.iter().all(|(_, n)| *n == 0), "{counts:?}");
        ensure!(s.taps().is_empty(), "taps {:?}", s.taps());
        ensure!(s.container_netns().is_empty(), "netns left");
        Ok(())
    });
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// The reconciler's grace against a slow ADD
// ---------------------------------------------------------------------------------------------

#[test]
fn an_add_slower_than_the_grace_period_keeps_its_objects() {
    if !require_root("an_add_slower_than_the_grace_period_keeps_its_objects") {
        return;
    }
    let h = Harness::start(&options());
    let s = h.s();
    // The agent configures the VM only after 20 polls (5 ms doubling to 500 ms: about 7 s,
    // inside the CNI's 10 s budget), longer than grace (3 s) + interval (2 s): the attachment
    // is unjoined and past its grace while the ADD still runs. Marathon lists the task as
    // TASK_STAGING without IPs meanwhile, which is what keeps the reconciler off it.
    s.agent.standin.set_cfg_after_polls(20);
    let labels: &[(&str, &str)] = &[
        ("networks", "slow-net"),
        ("network-subnets", "10.90.0.0/24"),
    ];
    s.scheduler
        .deploy(app("/slow", 1, &[(CONTRAIL_NETWORK, labels)]))
        .expect("deploy /slow");
    s.agent.standin.set_cfg_after_polls(0);
    wait_ok(CONVERGE, "1 instance", || {
        app_converged(s, "/slow", 1, &[net("eth0", "slow-net", "10.90.0.0/24")])
    });
    s.scheduler.destroy("/slow").expect("destroy /slow");
    wait_ok(CONVERGE, "nothing left after destroy", || nothing_left(s));
    h.finish();
}

/// Marathon's REST write API on the stand-in (apps and pods are accepted on Marathon's
/// REST API): a deployment answers at once and runs in the background; bad and conflicting
/// definitions get Marathon's status codes; scale and destroy go through the same path.
#[test]
fn marathon_rest_api_deploys_scales_and_destroys() {
    if !require_root("marathon_rest_api_deploys_scales_and_destroys") {
        return;
    }
    use contrail_devstack::marathon_api::Marathon;
    let h = Harness::start(&options());
    let s = h.s();
    let api = Marathon::new(&s.marathon.url());
    let app = json!({"id": "/rest", "instances": 2, "cmd": "sleep 3600",
        "networks": [{"mode": "container", "name": CONTRAIL_NETWORK, "labels": {
            "networks": "rest-network", "network-subnets": "10.44.0.0/24"}}]});
    let (status, body) = api.call("POST", "/v2/apps", Some(&app)).unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], "/rest");
    assert!(body["deployments"][0]["id"].is_string(), "{body}");
    let (status, _) = api.call("POST", "/v2/apps", Some(&app)).unwrap();
    assert_eq!(status, 409, "a second app with the same id");
    let (status, _) = api
        .call(
            "POST",
            "/v2/apps",
            Some(&json!({"id": "/bad", "networks": [{"mode": "container"}]})),
        )
        .unwrap();
    assert_eq!(status, 422, "a container network without a name");
    let (status, _) = api.call("DELETE", "/v2/apps/nope", None).unwrap();
    assert_eq!(status, 404);

    api.wait_running("/rest", 2).unwrap();
    let ips = api.task_ips().unwrap();
    assert_eq!(ips.len(), 2, "{ips:?}");
    assert!(ips.iter().all(|ip| ip.starts_with("10.44.0.")), "{ips:?}");
    h.note_links();

    let (status, _) = api
        .call("PUT", "/v2/apps/rest", Some(&json!({"instances": 3})))
        .unwrap();
    assert_eq!(status, 200);
    api.wait_running("/rest", 3).unwrap();
    wait_ok(Duration::from_secs(20), "3 VMs in VNC", || {
        let n = s.vnc.count("virtual-machine");
        if n == 3 {
            Ok(())
        } else {
            Err(format!("{n} VMs"))
        }
    });
    h.note_links();

    let (status, _) = api.call("DELETE", "/v2/apps/rest", None).unwrap();
    assert_eq!(status, 200);
    wait_ok(Duration::from_secs(30), "everything gone", || {
        let counts = s.vnc_counts();
        if s.scheduler.run_ids().is_empty()
            && counts.iter().all(|(_, n)| *n == 0)
            && s.taps().is_empty()
            && s.port_files().is_empty()
            && s.container_netns().is_empty()
        {
            Ok(())
        } else {
            Err(format!(
                "{counts:?} taps {:?} netns {:?}",
                s.taps(),
                s.container_netns()
            ))
        }
    });
    h.finish();
}

/// A deployment still running in the background when the stack goes away (a test that fails
/// right after `POST /v2/apps`) must not leave its containers behind: teardown waits for it.
#[test]
fn a_stack_torn_down_during_a_deployment_leaves_nothing() {
    if !require_root("a_stack_torn_down_during_a_deployment_leaves_nothing") {
        return;
    }
    use contrail_devstack::marathon_api::Marathon;
    let h = Harness::start(&options());
    let api = Marathon::new(&h.s().marathon.url());
    let app = json!({"id": "/inflight", "instances": 3,
        "networks": [{"mode": "container", "name": CONTRAIL_NETWORK, "labels": {
            "networks": "inflight-network", "network-subnets": "10.45.0.0/24"}}]});
    let (status, _) = api.call("POST", "/v2/apps", Some(&app)).unwrap();
    assert_eq!(status, 201);
    let sched = h.s().scheduler.clone();
    assert!(sched.in_flight() > 0 || !sched.run_ids().is_empty());
    // finish() drops the stack at once and asserts its namespaces and links are gone. Had the
    // drop not waited, the launches would still be running here, and a process exiting now
    // (a failed test) would leave their namespaces behind.
    h.finish();
    assert_eq!(
        sched.in_flight(),
        0,
        "teardown returned with deployments in flight"
    );
    assert!(sched.run_ids().is_empty(), "{:?}", sched.run_ids());
}

/// Isolation modes end to end, with real packets (root): the managers run in group mode, so two
/// Marathon groups land on networks of their own and cannot talk; an `allow-from` label opens one
/// port from one group to the other (a network policy the dataplane enforces, and no other port);
/// `isolation: app` puts an app alone on its network; an app in the root group lands on the
/// cluster network. After destroy, the policy, the group and app networks and the group projects
/// are gone; the cluster network stays.
#[test]
fn isolation_modes_and_an_allow_from_policy_with_real_packets() {
    if !require_root("isolation_modes_and_an_allow_from_policy_with_real_packets") {
        return;
    }
    use contrail_devstack::marathon_api::{Marathon, contrail_app};
    use contrail_devstack::probe::{Echo, reachable};
    use std::net::SocketAddr;
    let mut o = options();
    o.reconcile_interval_secs = 1;
    o.reconcile_grace_secs = 1;
    let h = Harness::start(&o);
    let s = h.s();
    let api = Marathon::new(&s.marathon.url());
    let apps = [
        ("/team-a/web", 2, json!({})),
        ("/team-b/client", 1, json!({})),
        ("/ops/tool", 1, json!({"isolation": "app"})),
        ("/plain", 1, json!({})),
        (
            "/team-a/gateway",
            1,
            json!({"allow-from": "group:/team-b tcp:8080"}),
        ),
    ];
    for (id, n, labels) in &apps[..4] {
        let (st, b) = api
            .call(
                "POST",
                "/v2/apps",
                Some(&contrail_app(id, *n, labels.clone())),
            )
            .unwrap();
        assert_eq!(st, 201, "{id}: {b}");
    }
    for (id, n, _) in &apps[..4] {
        api.wait_running(id, *n).unwrap();
    }
    h.note_links();
    let of = |id: &str| -> Vec<(std::path::PathBuf, std::net::IpAddr, String)> {
        s.scheduler
            .instances(id)
            .into_iter()
            .map(|(_, cid, ns, nets)| {
                let ip = nets[0].2.as_ref().expect("an address").parse().unwrap();
                (
                    std::path::PathBuf::from("/run/netns").join(ns),
                    ip,
                    s.network_of(&cid),
                )
            })
            .collect()
    };
    let (web, client, tool, plain) = (
        of("/team-a/web"),
        of("/team-b/client"),
        of("/ops/tool"),
        of("/plain"),
    );
    let team_a = "default-domain:devstack-team-a:devstack-team-a-network";
    assert!(web.iter().all(|w| w.2 == team_a), "{web:?}");
    assert_eq!(
        client[0].2,
        "default-domain:devstack-team-b:devstack-team-b-network"
    );
    assert_eq!(
        tool[0].2,
        "default-domain:default-project:devstack-app-ops_tool"
    );
    assert_eq!(
        plain[0].2,
        "default-domain:default-project:mesos-default-network"
    );
    let to = |p: u16| SocketAddr::new(web[1].1, p);
    let _e1 = Echo::start_on(&web[1].0, to(8080)).unwrap();
    let _e2 = Echo::start_on(&web[1].0, to(9090)).unwrap();
    let (t, short) = (Duration::from_secs(2), Duration::from_millis(700));
    assert!(reachable(&web[0].0, to(8080), t), "inside one group");
    for (from, what) in [
        (&client[0].0, "another group"),
        (&tool[0].0, "an app-isolated app"),
        (&plain[0].0, "the cluster network"),
    ] {
        assert!(!reachable(from, to(8080), short), "{what} reached team-a");
    }

    // DNS: another group's task resolves team-a's app name to its tasks.
    {
        let dns = SocketAddr::new(contrail_devstack::stack::pod_dns_address(), 53);
        let mut want: Vec<String> = web.iter().map(|w| w.1.to_string()).collect();
        want.sort();
        let mut got: Vec<String> =
            contrail_devstack::dns::resolve_in(&client[0].0, dns, "web-team-a.marathon.mesos", t)
                .expect("an answer")
                .iter()
                .map(|a| a.to_string())
                .collect();
        got.sort();
        assert_eq!(got, want);
        assert_eq!(
            contrail_devstack::dns::resolve_in(&client[0].0, dns, "nope.marathon.mesos", t),
            Some(vec![])
        );
    }
    // The IP fabric: tasks reach a fabric host with the node's address (fabric SNAT); the
    // fabric host reaches the cluster network (its ip-fabric policy, made at start) and not a
    // group network (no policy there).
    {
        use contrail_devstack::fabric::{FABRIC_HOST_IP, NODE_FABRIC_IP};
        use contrail_devstack::probe::{Ident, ask};
        let who = Ident::caller_on(
            &s.fabric.path(),
            SocketAddr::new(FABRIC_HOST_IP.parse().unwrap(), 7000),
        )
        .unwrap();
        assert_eq!(ask(&web[0].0, who.addr, t).as_deref(), Some(NODE_FABRIC_IP));
        let plain_echo = Echo::start_on(&plain[0].0, SocketAddr::new(plain[0].1, 8080)).unwrap();
        wait_ok(CONVERGE, "the fabric host reaches /plain", || {
            if reachable(&s.fabric.path(), plain_echo.addr, short) {
                Ok(())
            } else {
                Err("blocked".into())
            }
        });
        assert!(
            !reachable(&s.fabric.path(), to(8080), short),
            "the fabric reached a group network without its policy"
        );
    }
    let (id, n, labels) = &apps[4];
    let (st, b) = api
        .call(
            "POST",
            "/v2/apps",
            Some(&contrail_app(id, *n, labels.clone())),
        )
        .unwrap();
    assert_eq!(st, 201, "{b}");
    api.wait_running(id, *n).unwrap();
    wait_ok(CONVERGE, "team-b reaches team-a:8080", || {
        if reachable(&client[0].0, to(8080), short) {
            Ok(())
        } else {
            Err("blocked".into())
        }
    });
    assert!(
        !reachable(&client[0].0, to(9090), short),
        "9090 is not allowed"
    );
    assert!(
        !reachable(&plain[0].0, to(8080), short),
        "only team-b is allowed"
    );
    h.note_links();

    for (id, _, _) in &apps {
        api.call("DELETE", &format!("/v2/apps{id}"), None).unwrap();
    }
    let made = |n: &String| {
        n.contains("devstack-team-")
            || n.contains("devstack-app-")
            || n.contains("-allow-to-devstack-")
    };
    wait_ok(
        CONVERGE,
        "no policy, group/app network or project left",
        || {
            let left: Vec<String> = ["network-policy", "virtual-network", "project"]
                .iter()
                .flat_map(|ty| s.names_of(ty).into_iter().filter(made))
                .collect();
            ensure!(s.scheduler.run_ids().is_empty(), "apps still running");
            ensure!(left.is_empty(), "left: {left:?}");
            nothing_left(s)
        },
    );
    assert!(
        s.names_of("virtual-network")
            .contains(&"default-domain:default-project:mesos-default-network".to_owned())
    );
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// Port mappings: Marathon's hostPort on the node's address
// ---------------------------------------------------------------------------------------------

/// An app with `container.portMappings` (`hostPort` 18080 → `containerPort` 8080): Marathon's
/// mapping reaches the CNI as `network_info.port_mappings`, and a connection to the node's
/// address on the host port is answered by the task; after the destroy the port is closed and
/// the node's port-mapping table holds no chain of any container.
#[test]
fn a_host_port_reaches_the_task_on_the_nodes_address() {
    if !require_root("a_host_port_reaches_the_task_on_the_nodes_address") {
        return;
    }
    use contrail_devstack::probe::{Echo, reachable};
    use std::net::SocketAddr;
    let h = Harness::start(&options());
    let s = h.s();
    let node_ip = s.node_address().expect("the node's address");
    let nets = [net("eth0", "hostport-net", "10.46.0.0/24")];
    let app = RunSpec::from_app(
        &json!({"id": "/hostport", "instances": 1, "cmd": "sleep 3600",
        "networks": [{"mode": "container", "name": CONTRAIL_NETWORK, "labels": {
            "networks": "hostport-net", "network-subnets": "10.46.0.0/24"}}],
        "container": {"portMappings": [
            {"containerPort": 8080, "hostPort": 18080, "protocol": "tcp"}]}}),
    )
    .unwrap();
    assert_eq!(
        app.networks[0].port_mappings,
        [(18080, 8080, "tcp".to_owned())]
    );
    s.scheduler.deploy(app).expect("deploy /hostport");
    wait_ok(CONVERGE, "1 instance", || {
        app_converged(s, "/hostport", 1, &nets)
    });
    h.note_links();
    let inst = instances(s, "/hostport").pop().unwrap();
    let task_ns = std::path::PathBuf::from("/run/netns").join(&inst.netns);
    let node_ns = std::path::PathBuf::from("/run/netns").join(s.node_netns());
    let _echo = Echo::start_on(&task_ns, "0.0.0.0:8080".parse().unwrap()).unwrap();
    let node_addr = SocketAddr::new(node_ip, 18080);
    let t = Duration::from_secs(5);
    assert!(
        reachable(&node_ns, node_addr, t),
        "the node's {node_addr} reaches the task's :8080"
    );
    // Only the mapped port.
    assert!(!reachable(
        &node_ns,
        SocketAddr::new(node_ip, 18081),
        Duration::from_millis(500)
    ));

    s.scheduler.destroy("/hostport").expect("destroy /hostport");
    wait_ok(CONVERGE, "nothing left after destroy", || nothing_left(s));
    assert!(!reachable(&node_ns, node_addr, Duration::from_millis(500)));
    let out = Command::new(contrail_devstack::dataplane::NFT)
        .args(["-j", "list", "table", "inet", "contrail_cni_portmap"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let table: Value = serde_json::from_slice(&out.stdout).unwrap();
    let chains: Vec<&str> = table["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["chain"]["name"].as_str())
        .collect();
    assert!(chains.iter().all(|c| !c.starts_with("cni-")), "{chains:?}");
    h.finish();
}

// ---------------------------------------------------------------------------------------------
// VIPs: Marathon's layer-4 load balancing as Contrail load balancers
// ---------------------------------------------------------------------------------------------

/// A Marathon VIP through the whole system: `VIP_0: /web:80` on an app's port mapping becomes a
/// Contrail load balancer (the manager), which the devstack's dataplane serves as the vRouter
/// would; a client task connecting to the VIP several times is answered by each backend in turn.
/// Destroying the app removes every load-balancer object and the VIP address.
#[test]
fn a_vip_is_answered_by_each_backend_in_turn() {
    if !require_root("a_vip_is_answered_by_each_backend_in_turn") {
        return;
    }
    use contrail_devstack::marathon_api::{Marathon, contrail_app};
    use contrail_devstack::probe::{Ident, ask};
    use std::net::{IpAddr, SocketAddr};
    let mut o = options();
    o.reconcile_interval_secs = 1;
    o.reconcile_grace_secs = 1;
    let h = Harness::start(&o);
    let s = h.s();
    let api = Marathon::new(&s.marathon.url());
    let mut web = contrail_app("/web", 2, json!({}));
    web["container"] = json!({"type": "MESOS", "portMappings": [
        {"containerPort": 8080, "protocol": "tcp", "name": "http", "labels": {"VIP_0": "/web:80"}}]});
    for a in [web, contrail_app("/client", 1, json!({}))] {
        let (st, b) = api.call("POST", "/v2/apps", Some(&a)).unwrap();
        assert_eq!(st, 201, "{b}");
    }
    api.wait_running("/web", 2).unwrap();
    api.wait_running("/client", 1).unwrap();
    h.note_links();
    let of = |id: &str| -> Vec<(std::path::PathBuf, IpAddr)> {
        s.scheduler
            .instances(id)
            .into_iter()
            .map(|(_, _, ns, nets)| {
                (
                    std::path::PathBuf::from("/run/netns").join(ns),
                    nets[0].2.as_ref().expect("an address").parse().unwrap(),
                )
            })
            .collect()
    };
    let (backends, client) = (of("/web"), of("/client"));
    let _idents: Vec<Ident> = backends
        .iter()
        .map(|(ns, ip)| Ident::start_on(ns, SocketAddr::new(*ip, 8080)).unwrap())
        .collect();
    let want: BTreeSet<String> = backends
        .iter()
        .map(|(_, ip)| format!("{ip}:8080"))
        .collect();
    // The manager's load balancer: its VIP address and both tasks as members.
    let mut vip = None;
    wait_ok(CONVERGE, "the VIP's loadbalancer with 2 members", || {
        let lbs = objs(s, "loadbalancer");
        ensure!(lbs.len() == 1, "loadbalancers: {}", lbs.len());
        ensure!(
            lbs[0].props["display_name"] == "web.marathon.l4lb.thisdcos.directory",
            "{:?}",
            lbs[0].props["display_name"]
        );
        let n = s.vnc_count("loadbalancer-member");
        ensure!(n == 2, "members: {n}");
        vip = lbs[0].props["loadbalancer_properties"]["vip_address"]
            .as_str()
            .and_then(|a| a.parse::<IpAddr>().ok());
        ensure!(vip.is_some(), "no vip_address");
        Ok(())
    });
    let to = SocketAddr::new(vip.unwrap(), 80);
    let t = Duration::from_secs(2);
    // The dataplane follows VNC on its own period, so it may still balance over the one
    // member it saw before the second was written: wait until each backend has answered.
    let mut answered = BTreeSet::new();
    wait_ok(CONVERGE, "each backend answers through the VIP", || {
        answered.extend(ask(&client[0].0, to, t));
        ensure!(answered == want, "answered so far: {answered:?}");
        Ok(())
    });
    let answers: Vec<String> = (0..6)
        .map(|_| ask(&client[0].0, to, t).expect("the VIP answers every connection"))
        .collect();
    assert!(
        answers.iter().all(|a| want.contains(a)),
        "{answers:?} not in {want:?}"
    );
    let seen: BTreeSet<String> = answers.iter().cloned().collect();
    assert_eq!(seen, want, "every backend answers: {answers:?}");
    assert!(
        answers.windows(2).all(|w| w[0] != w[1]),
        "the backends answer in turn: {answers:?}"
    );
    // The VIP's DC/OS name resolves to its address (the managers' l4lb virtual DNS server).
    let dns = SocketAddr::new(contrail_devstack::stack::pod_dns_address(), 53);
    let mut named = None;
    wait_ok(
        CONVERGE,
        "web.marathon.l4lb.thisdcos.directory resolves",
        || {
            named = contrail_devstack::dns::resolve_in(
                &client[0].0,
                dns,
                "web.marathon.l4lb.thisdcos.directory",
                t,
            );
            ensure!(named.as_ref().is_some_and(|v| !v.is_empty()), "{named:?}");
            Ok(())
        },
    );
    assert_eq!(
        named
            .unwrap()
            .iter()
            .map(|a| IpAddr::V4(*a))
            .collect::<Vec<_>>(),
        [to.ip()]
    );

    for id in ["/web", "/client"] {
        api.call("DELETE", &format!("/v2/apps{id}"), None).unwrap();
    }
    wait_ok(
        CONVERGE,
        "no load-balancer object or VIP address left",
        || {
            for ty in [
                "loadbalancer",
                "loadbalancer-listener",
                "loadbalancer-pool",
                "loadbalancer-member",
                "loadbalancer-healthmonitor",
            ] {
                let n = s.vnc_count(ty);
                ensure!(n == 0, "{ty}: {n}");
            }
            nothing_left(s)
        },
    );
    h.finish();
}
