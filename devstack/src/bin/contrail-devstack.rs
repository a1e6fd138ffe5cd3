//! `contrail-devstack demo`: the whole system on one machine (`make demo`).
//!
//! Starts the stack (see `devstack::stack`), deploys two Marathon apps with two instances each on
//! two Contrail networks (blue and red, with Contrail labels), shows each task's IP as Mesos
//! records it, proves with real packets that blue reaches blue and red reaches red but blue
//! cannot reach red, then scales down, destroys the apps and shows that nothing is left. Exits 0
//! only when every check held; cleans up after itself, also on Ctrl-C.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use contrail_devstack::dns::resolve_in;
use contrail_devstack::fabric::{FABRIC_HOST_IP, NODE_FABRIC_IP};
use contrail_devstack::marathon_api::{Marathon, contrail_app};
use contrail_devstack::marathon_lb::Haproxy;
use contrail_devstack::probe::{Echo, Ident, ask, reachable};
use contrail_devstack::stack::pod_dns_address;
use contrail_devstack::{Stack, StackOptions};
use serde_json::json;

#[derive(Parser)]
#[command(about = "The whole contrail-mesos-cni system on one machine")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the demo (root).
    Demo {
        /// The `contrail-cni-plugin` binary.
        #[arg(long)]
        cni_bin: PathBuf,
        /// Directory with `mesos_delegate.wasm` and `contrail_ipam.wasm`.
        #[arg(long)]
        wasm_dir: PathBuf,
        /// The `contrail-mesos-manager` binary.
        #[arg(long)]
        manager_bin: PathBuf,
        /// Keep the work directory (logs) after the run.
        #[arg(long)]
        keep: bool,
        /// A Contrail config API server (e.g. `http://10.0.0.1:8082`) to use instead of the
        /// in-process VNC stand-in.
        #[arg(long)]
        vnc_url: Option<String>,
        /// Managers to run; more than one starts a ZooKeeper for their election, and the demo
        /// kills the leader in the middle of a deployment.
        #[arg(long, default_value_t = 3)]
        managers: usize,
    },
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: i32) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

struct Report {
    checks: Vec<(String, bool)>,
    started: Instant,
}

impl Report {
    fn step(&self, msg: &str) {
        println!("[{:>5.1}s] {msg}", self.started.elapsed().as_secs_f64());
    }
    fn check(&mut self, what: &str, ok: bool) -> bool {
        println!("          {} {what}", if ok { "ok  " } else { "FAIL" });
        self.checks.push((what.to_owned(), ok));
        ok
    }
}

fn interrupted() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

fn app(id: &str, network: &str, subnet: &str) -> serde_json::Value {
    // Contrail's Mesos labels (`networks`, `network-subnets`, ...) on Marathon's `networks` form.
    json!({"id": id, "instances": 2, "cmd": "sleep 3600", "cpus": 0.1, "mem": 32,
        "networks": [{"mode": "container", "name": "contrail-cni-plugin", "labels": {
            "networks": network, "network-subnets": subnet,
            "project-name": "default-project", "domain-name": "default-domain"}}]})
}

fn demo(stack: &Stack, r: &mut Report) -> Result<(), String> {
    r.step("POST /v2/apps: /blue (2 instances, blue-network 10.10.1.0/24) and /red (2 instances, red-network 10.10.2.0/24)");
    let api = Marathon::new(&stack.marathon.url());
    for (id, net, subnet) in [
        ("/blue", "blue-network", "10.10.1.0/24"),
        ("/red", "red-network", "10.10.2.0/24"),
    ] {
        let (status, _) = api.call("POST", "/v2/apps", Some(&app(id, net, subnet)))?;
        if status != 201 {
            return Err(format!("POST /v2/apps {id}: HTTP {status}"));
        }
    }
    for id in ["/blue", "/red"] {
        api.wait_running(id, 2)?;
        interrupted()?;
    }

    r.step("tasks and the IPs Mesos recorded from the CNI's 0.2.0 result:");
    let mut ips: Vec<(String, String, IpAddr)> = Vec::new(); // (app, netns, ip)
    for id in ["/blue", "/red"] {
        for (task, cid, ns, nets) in stack.scheduler.instances(id) {
            for (_, ifname, ip) in nets {
                let ip_s = ip.clone().unwrap_or_else(|| "-".into());
                println!("          {task:<50} container {:.8}… {ifname} {ip_s}", cid);
                if let Some(ip) = ip.and_then(|i| i.parse().ok()) {
                    ips.push((id.to_owned(), ns.clone(), ip));
                }
            }
        }
    }
    r.check(
        "every task got an address on its own network",
        ips.len() == 4
            && ips.iter().all(|(app, _, ip)| {
                ip.to_string().starts_with(if app == "/blue" {
                    "10.10.1."
                } else {
                    "10.10.2."
                })
            }),
    );
    let mut from_marathon = api.task_ips()?;
    let mut from_mesos: Vec<String> = ips.iter().map(|(_, _, ip)| ip.to_string()).collect();
    from_marathon.sort();
    from_mesos.sort();
    r.check(
        "Marathon's /v2/apps?embed=apps.tasks reports the same addresses",
        from_marathon == from_mesos,
    );
    let joined = Stack::wait_for(Duration::from_secs(10), || {
        stack.vnc_count("virtual-machine") == 4 && stack.vnc_count("instance-ip") == 4
    });
    r.check(
        "VNC holds 4 virtual-machines, 4 VMIs, 4 instance-ips",
        joined && stack.vnc_count("virtual-machine-interface") == 4,
    );
    interrupted()?;

    r.step("real packets (TCP) between the containers:");
    let ns = |app: &str, i: usize| -> (PathBuf, IpAddr) {
        let v: Vec<_> = ips.iter().filter(|(a, _, _)| a == app).collect();
        (PathBuf::from("/run/netns").join(&v[i].1), v[i].2)
    };
    let (blue0, _) = ns("/blue", 0);
    let (blue1, blue1_ip) = ns("/blue", 1);
    let (red0, red0_ip) = ns("/red", 0);
    let (red1, red1_ip) = ns("/red", 1);
    let echo_blue1 = Echo::start(&blue1, blue1_ip).map_err(|e| e.to_string())?;
    let echo_red0 = Echo::start(&red0, red0_ip).map_err(|e| e.to_string())?;
    let echo_red1 = Echo::start(&red1, red1_ip).map_err(|e| e.to_string())?;
    let t = Duration::from_secs(2);
    r.check(
        &format!("blue → blue {} reachable", echo_blue1.addr),
        reachable(&blue0, echo_blue1.addr, t),
    );
    // Each target of a "blocked" check below is first shown alive from its own network, so a
    // blocked result can only mean the packets were dropped between the networks.
    r.check(
        &format!("red → red {} reachable", echo_red1.addr),
        reachable(&red0, echo_red1.addr, t),
    );
    r.check(
        &format!("red → red {} reachable", echo_red0.addr),
        reachable(&red1, echo_red0.addr, t),
    );
    r.check(
        &format!("blue → red {} blocked (isolated networks)", echo_red0.addr),
        !reachable(&blue0, echo_red0.addr, Duration::from_secs(1)),
    );
    r.check(
        &format!("red → blue {} blocked (isolated networks)", echo_blue1.addr),
        !reachable(
            &red1,
            SocketAddr::new(blue1_ip, echo_blue1.addr.port()),
            Duration::from_secs(1),
        ),
    );
    drop((echo_blue1, echo_red0, echo_red1));
    interrupted()?;

    if stack.manager_count() > 1 {
        failover(stack, &api, r)?;
    }

    r.step("PUT /v2/apps/blue {\"instances\": 1}");
    api.call("PUT", "/v2/apps/blue", Some(&json!({"instances": 1})))?;
    api.wait_running("/blue", 1)?;
    // Marathon shows the task KILLING at once; the DEL and cleanup follow.
    let ok = Stack::wait_for(Duration::from_secs(20), || {
        stack.vnc_count("virtual-machine") == 3
            && stack.taps().len() == 3
            && stack.container_netns().len() == 3
    });
    r.check(
        "the killed task's VNC objects, tap and namespace are gone",
        ok,
    );

    r.step("DELETE /v2/apps/blue, DELETE /v2/apps/red");
    api.call("DELETE", "/v2/apps/blue", None)?;
    api.call("DELETE", "/v2/apps/red", None)?;
    let gone = Stack::wait_for(Duration::from_secs(20), || {
        stack.scheduler.run_ids().is_empty()
    });
    r.check("Marathon finished both destroy deployments", gone);
    let clean = Stack::wait_for(Duration::from_secs(10), || {
        stack.vnc_counts().iter().all(|(_, n)| *n == 0)
    });
    let counts = stack.vnc_counts();
    r.check(&format!("no VNC objects left {counts:?}"), clean);
    r.check(
        &format!("no taps left {:?}", stack.taps()),
        stack.taps().is_empty(),
    );
    r.check(
        &format!("no port files left {:?}", stack.port_files()),
        stack.port_files().is_empty(),
    );
    r.check(
        &format!("no container namespaces left {:?}", stack.container_netns()),
        stack.container_netns().is_empty(),
    );
    host_ports(stack, &api, r)?;
    isolation(stack, &api, r)?;
    vip(stack, &api, r)
}

/// Marathon's `portMappings` with a `hostPort`: the CNI forwards the node's port to the task
/// (nftables DNAT in the node's table `inet contrail_cni_portmap`), and removes the rules with
/// the task.
fn host_ports(stack: &Stack, api: &Marathon, r: &mut Report) -> Result<(), String> {
    let node = stack.node_address()?;
    r.step(&format!(
        "POST /v2/apps /web-hostport with portMappings [{{containerPort: 8080, hostPort: 18080}}]; the node's address is {node}"
    ));
    let mut app = app("/web-hostport", "web-hostport-network", "10.10.4.0/24");
    app["instances"] = json!(1);
    app["container"] = json!({"portMappings": [
        {"containerPort": 8080, "hostPort": 18080, "protocol": "tcp"}]});
    let (status, body) = api.call("POST", "/v2/apps", Some(&app))?;
    if status != 201 {
        return Err(format!("POST /v2/apps /web-hostport: HTTP {status} {body}"));
    }
    api.wait_running("/web-hostport", 1)?;
    let (_, _, netns, nets) = stack
        .scheduler
        .instances("/web-hostport")
        .pop()
        .ok_or("no /web-hostport instance")?;
    let task_ns = PathBuf::from("/run/netns").join(netns);
    let task_ip = nets[0].2.clone().unwrap_or_default();
    let _echo = Echo::start_on(&task_ns, SocketAddr::new([0, 0, 0, 0].into(), 8080))
        .map_err(|e| e.to_string())?;
    let node_ns = PathBuf::from("/run/netns").join(stack.node_netns());
    let to = SocketAddr::new(node, 18080);
    r.check(
        &format!("node → {to} reaches the task's {task_ip}:8080"),
        reachable(&node_ns, to, Duration::from_secs(2)),
    );
    r.check(
        &format!("node → {node}:18081 is not forwarded (not mapped)"),
        !reachable(
            &node_ns,
            SocketAddr::new(node, 18081),
            Duration::from_secs(1),
        ),
    );
    api.call("DELETE", "/v2/apps/web-hostport", None)?;
    let gone = Stack::wait_for(Duration::from_secs(20), || {
        stack.scheduler.run_ids().is_empty() && stack.taps().is_empty()
    });
    r.check(
        &format!("after DELETE /v2/apps/web-hostport, {to} is closed"),
        gone && !reachable(&node_ns, to, Duration::from_secs(1)),
    );
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", stack.node_netns()])
        .args([contrail_devstack::dataplane::NFT, "-j", "list", "table"])
        .args(["inet", "contrail_cni_portmap"])
        .output()
        .map_err(|e| e.to_string())?;
    let table: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let chains: Vec<&str> = table["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["chain"]["name"].as_str())
        .filter(|c| c.starts_with("cni-"))
        .collect();
    r.check(
        &format!("no port-mapping rules left {chains:?}"),
        out.status.success() && chains.is_empty(),
    );
    interrupted()
}

/// Isolation modes with real packets: two Marathon groups on networks of their own cannot talk;
/// an `allow-from` label opens one port from one group to the other (a Contrail network policy
/// that the dataplane enforces); an app with `isolation: app` is alone on its network; an app in
/// the root group lands on the cluster network. Destroying the apps removes the policy, the
/// group and app networks and the group projects.
fn isolation(stack: &Stack, api: &Marathon, r: &mut Report) -> Result<(), String> {
    r.step("isolation: the managers run in group mode; POST /v2/apps /team-a/web (2), /team-b/client, /ops/tool (isolation: app), /plain, all without a networks label");
    let apps = [
        ("/team-a/web", 2, json!({})),
        ("/team-b/client", 1, json!({})),
        ("/ops/tool", 1, json!({"isolation": "app"})),
        ("/plain", 1, json!({})),
    ];
    for (id, n, labels) in &apps {
        let (status, body) = api.call(
            "POST",
            "/v2/apps",
            Some(&contrail_app(id, *n, labels.clone())),
        )?;
        if status != 201 {
            return Err(format!("POST /v2/apps {id}: HTTP {status} {body}"));
        }
    }
    for (id, n, _) in &apps {
        api.wait_running(id, *n)?;
        interrupted()?;
    }
    // (netns path, address, network) of each instance of an app.
    let of = |id: &str| -> Vec<(PathBuf, IpAddr, String)> {
        stack
            .scheduler
            .instances(id)
            .into_iter()
            .filter_map(|(_, cid, ns, nets)| {
                let ip = nets.first()?.2.as_ref()?.parse().ok()?;
                Some((
                    PathBuf::from("/run/netns").join(ns),
                    ip,
                    stack.network_of(&cid),
                ))
            })
            .collect()
    };
    let (web, client, tool, plain) = (
        of("/team-a/web"),
        of("/team-b/client"),
        of("/ops/tool"),
        of("/plain"),
    );
    if web.len() != 2 || client.len() != 1 || tool.len() != 1 || plain.len() != 1 {
        return Err("not every instance has an address".into());
    }
    for (id, list) in [
        ("/team-a/web", &web),
        ("/team-b/client", &client),
        ("/ops/tool", &tool),
        ("/plain", &plain),
    ] {
        for (_, ip, vn) in list {
            println!("          {id:<16} {ip:<12} {vn}");
        }
    }
    r.check(
        "each group has its own project and network (devstack-team-a, devstack-team-b)",
        web.iter()
            .all(|w| w.2 == "default-domain:devstack-team-a:devstack-team-a-network")
            && client[0].2 == "default-domain:devstack-team-b:devstack-team-b-network",
    );
    r.check(
        "/ops/tool (isolation: app) has a network of its own",
        tool[0].2 == "default-domain:default-project:devstack-app-ops_tool",
    );
    r.check(
        "/plain (root group, no labels) is on the cluster network",
        plain[0].2 == "default-domain:default-project:mesos-default-network",
    );
    r.check(
        "one address space: every address is in the pod subnet and none is used twice",
        {
            let mut all: Vec<IpAddr> = [&web, &client, &tool, &plain]
                .iter()
                .flat_map(|l| l.iter().map(|x| x.1))
                .collect();
            let n = all.len();
            all.sort();
            all.dedup();
            all.len() == n && all.iter().all(|a| a.to_string().starts_with("10.32."))
        },
    );
    let (w0, w1) = (&web[0], &web[1]);
    let on = |p: u16| SocketAddr::new(w1.1, p);
    let _e8080 = Echo::start_on(&w1.0, on(8080)).map_err(|e| e.to_string())?;
    let _e9090 = Echo::start_on(&w1.0, on(9090)).map_err(|e| e.to_string())?;
    let t = Duration::from_secs(2);
    let blocked = Duration::from_secs(1);
    r.check(
        "team-a → team-a :8080 reachable (one group, one network)",
        reachable(&w0.0, on(8080), t),
    );
    r.check(
        "team-b → team-a :8080 blocked (group isolation)",
        !reachable(&client[0].0, on(8080), blocked),
    );
    r.check(
        "/ops/tool → team-a :8080 blocked (app isolation)",
        !reachable(&tool[0].0, on(8080), blocked),
    );
    r.check(
        "/plain → team-a :8080 blocked (cluster network ≠ group network)",
        !reachable(&plain[0].0, on(8080), blocked),
    );
    interrupted()?;

    r.step("DNS: the managers keep an A record per task on a Contrail virtual DNS server (web-team-a for /team-a/web); the node answers each network's DNS address from it");
    let dns = SocketAddr::new(pod_dns_address(), 53);
    let mut want: Vec<std::net::Ipv4Addr> = web
        .iter()
        .filter_map(|w| match w.1 {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        })
        .collect();
    want.sort();
    let got = resolve_in(&client[0].0, dns, "web-team-a.marathon.mesos", t).map(|mut v| {
        v.sort();
        v
    });
    r.check(
        &format!("team-b resolves web-team-a.marathon.mesos at {dns}: {got:?}"),
        got.as_ref() == Some(&want),
    );
    interrupted()?;

    r.step("the IP fabric: a host on a link to the node (192.168.200.2); the managers set fabric_snat on the networks they make and an ip-fabric policy on the cluster network");
    let fabric_host = stack.fabric.path();
    let who = Ident::caller_on(
        &fabric_host,
        SocketAddr::new(FABRIC_HOST_IP.parse().unwrap(), 7000),
    )
    .map_err(|e| e.to_string())?;
    let seen = ask(&w0.0, who.addr, t);
    r.check(
        &format!("team-a → fabric host {} reachable, seen as the node's {NODE_FABRIC_IP} (fabric SNAT): {seen:?}", who.addr),
        seen.as_deref() == Some(NODE_FABRIC_IP),
    );
    drop(who);
    let plain_echo = Echo::start_on(&plain[0].0, SocketAddr::new(plain[0].1, 8080))
        .map_err(|e| e.to_string())?;
    r.check(
        &format!("fabric host → /plain {} reachable (the cluster network's ip-fabric policy, made at start)", plain_echo.addr),
        Stack::wait_for(Duration::from_secs(5), || {
            reachable(&fabric_host, plain_echo.addr, blocked)
        }),
    );
    r.check(
        "fabric host → team-a :8080 blocked (no ip-fabric policy on team-a's network)",
        !reachable(&fabric_host, on(8080), blocked),
    );
    drop(plain_echo);
    interrupted()?;

    r.step("marathon-lb: POST /v2/apps /shop/web (2 instances, HAPROXY_GROUP: external); a real HAProxy on the fabric host balances 192.168.200.2:8000 over the task addresses in Marathon's task list");
    let shop = contrail_app("/shop/web", 2, json!({"HAPROXY_GROUP": "external"}));
    let (status, body) = api.call("POST", "/v2/apps", Some(&shop))?;
    if status != 201 {
        return Err(format!("POST /v2/apps /shop/web: HTTP {status} {body}"));
    }
    api.wait_running("/shop/web", 2)?;
    let shops = of("/shop/web");
    let _ids: Vec<Ident> = shops
        .iter()
        .map(|(ns, ip, _)| Ident::start_on(ns, SocketAddr::new(*ip, 8080)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    // What marathon-lb reads: the app's tasks and their addresses, from Marathon.
    let backends: Vec<SocketAddr> = api
        .tasks()?
        .iter()
        .filter(|t| t["appId"] == "/shop/web")
        .filter_map(|t| t["ipAddresses"][0]["ipAddress"].as_str()?.parse().ok())
        .map(|ip| SocketAddr::new(ip, 8080))
        .collect();
    let bind = SocketAddr::new(FABRIC_HOST_IP.parse().unwrap(), 8000);
    let haproxy = Haproxy::start(&stack.fabric.netns, bind, &backends, stack.work_dir())?;
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..6 {
        if let Some(a) = ask(&fabric_host, bind, t) {
            answered.insert(a);
        }
    }
    let want: std::collections::BTreeSet<String> =
        shops.iter().map(|s| format!("{}:8080", s.1)).collect();
    r.check(
        &format!("HAProxy on the fabric reached both /shop/web tasks in turn {answered:?} (HAPROXY_GROUP let the fabric in)"),
        backends.len() == 2 && answered == want,
    );
    drop(haproxy);
    interrupted()?;

    r.step("POST /v2/apps /team-a/gateway with allow-from: \"group:/team-b tcp:8080\"");
    let gw = contrail_app(
        "/team-a/gateway",
        1,
        json!({"allow-from": "group:/team-b tcp:8080"}),
    );
    let (status, body) = api.call("POST", "/v2/apps", Some(&gw))?;
    if status != 201 {
        return Err(format!(
            "POST /v2/apps /team-a/gateway: HTTP {status} {body}"
        ));
    }
    api.wait_running("/team-a/gateway", 1)?;
    let policy = "default-domain:devstack-team-a:devstack-allow-to-devstack-team-a-network";
    r.check(
        &format!("network policy {policy} exists"),
        Stack::wait_for(Duration::from_secs(10), || {
            stack.names_of("network-policy").iter().any(|n| n == policy)
        }),
    );
    // The dataplane re-reads policies every 500 ms: the first check waits for it.
    r.check(
        "team-b → team-a :8080 reachable (the policy)",
        Stack::wait_for(Duration::from_secs(5), || {
            reachable(&client[0].0, on(8080), blocked)
        }),
    );
    r.check(
        "team-b → team-a :9090 still blocked (only 8080 is allowed)",
        !reachable(&client[0].0, on(9090), blocked),
    );
    r.check(
        "/plain → team-a :8080 still blocked (only team-b is allowed)",
        !reachable(&plain[0].0, on(8080), blocked),
    );
    interrupted()?;

    r.step("DELETE every isolation app");
    for id in [
        "/team-a/web",
        "/team-a/gateway",
        "/team-b/client",
        "/ops/tool",
        "/plain",
        "/shop/web",
    ] {
        let (status, body) = api.call("DELETE", &format!("/v2/apps{id}"), None)?;
        if status != 200 {
            return Err(format!("DELETE /v2/apps{id}: HTTP {status} {body}"));
        }
    }
    let gone = Stack::wait_for(Duration::from_secs(30), || {
        stack.scheduler.run_ids().is_empty()
    });
    r.check("Marathon finished the destroy deployments", gone);
    // The leader's pass (every 5 s here) removes the policy, then the networks and projects
    // nothing uses once they are older than the grace (10 s here).
    let made = |n: &String| {
        n.contains("devstack-team-")
            || n.contains("devstack-shop")
            || n.contains("devstack-app-")
            || n.contains("devstack-allow-to-devstack-")
    };
    let clean = Stack::wait_for(Duration::from_secs(40), || {
        ["network-policy", "virtual-network", "project"]
            .iter()
            .all(|ty| !stack.names_of(ty).iter().any(made))
    });
    let left: Vec<String> = ["network-policy", "virtual-network", "project"]
        .iter()
        .flat_map(|ty| stack.names_of(ty).into_iter().filter(made))
        .collect();
    r.check(
        &format!("no policy, group/app network or group project left {left:?}"),
        clean,
    );
    r.check(
        "the cluster network stays",
        stack
            .names_of("virtual-network")
            .iter()
            .any(|n| n == "default-domain:default-project:mesos-default-network"),
    );
    Ok(())
}

/// A Marathon VIP reached from a task: `VIP_0: /web:80` on `/web`'s port mapping becomes a
/// Contrail native load balancer (the manager), which the dataplane serves as the vRouter would;
/// a client task connects to the VIP several times and each backend answers in turn.
fn vip(stack: &Stack, api: &Marathon, r: &mut Report) -> Result<(), String> {
    r.step("a VIP reached from a task, answered by each backend in turn: POST /v2/apps /web (2, VIP_0: /web:80 on container port 8080) and /client");
    let mut web = contrail_app("/web", 2, json!({}));
    web["container"] = json!({"type": "MESOS", "portMappings": [
        {"containerPort": 8080, "protocol": "tcp", "name": "http", "labels": {"VIP_0": "/web:80"}}]});
    for a in [web, contrail_app("/client", 1, json!({}))] {
        let (status, body) = api.call("POST", "/v2/apps", Some(&a))?;
        if status != 201 {
            return Err(format!("POST /v2/apps {}: HTTP {status} {body}", a["id"]));
        }
    }
    api.wait_running("/web", 2)?;
    api.wait_running("/client", 1)?;
    let of = |id: &str| -> Vec<(PathBuf, IpAddr)> {
        stack
            .scheduler
            .instances(id)
            .into_iter()
            .filter_map(|(_, _, ns, nets)| {
                Some((
                    PathBuf::from("/run/netns").join(ns),
                    nets.first()?.2.as_ref()?.parse().ok()?,
                ))
            })
            .collect()
    };
    let (backends, client) = (of("/web"), of("/client"));
    if backends.len() != 2 || client.len() != 1 {
        return Err("not every instance has an address".into());
    }
    let _idents = backends
        .iter()
        .map(|(ns, ip)| Ident::start_on(ns, SocketAddr::new(*ip, 8080)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let lb_url = format!("{}/loadbalancers?detail=True", stack.vnc_url);
    let read_vip = || -> Option<(String, IpAddr)> {
        let v: serde_json::Value = ureq::get(&lb_url)
            .call()
            .ok()?
            .body_mut()
            .read_json()
            .ok()?;
        let lb = v["loadbalancers"].as_array()?.first()?["loadbalancer"].clone();
        Some((
            lb["display_name"].as_str()?.to_owned(),
            lb["loadbalancer_properties"]["vip_address"]
                .as_str()?
                .parse()
                .ok()?,
        ))
    };
    let made = Stack::wait_for(Duration::from_secs(15), || {
        read_vip().is_some() && stack.vnc_count("loadbalancer-member") == 2
    });
    let Some((dns, vip)) = read_vip() else {
        r.check("the manager made the VIP's load balancer", false);
        return Ok(());
    };
    println!(
        "          {dns} → {vip}:80, members {:?}",
        backends.iter().map(|b| b.1).collect::<Vec<_>>()
    );
    r.check(
        "a native loadbalancer with a listener on :80 and the 2 tasks as members (port 8080)",
        made && stack.vnc_count("loadbalancer-listener") == 1,
    );
    let to = SocketAddr::new(vip, 80);
    let t = Duration::from_secs(2);
    // The dataplane re-reads the load balancers every 500 ms: the first answer waits for it.
    let up = Stack::wait_for(Duration::from_secs(10), || {
        ask(&client[0].0, to, t).is_some()
    });
    let answers: Vec<String> = (0..6).filter_map(|_| ask(&client[0].0, to, t)).collect();
    println!("          /client → {to}: {}", answers.join(", "));
    let want: std::collections::BTreeSet<String> = backends
        .iter()
        .map(|(_, ip)| format!("{ip}:8080"))
        .collect();
    let seen: std::collections::BTreeSet<String> = answers.iter().cloned().collect();
    r.check(
        "6 connections to the VIP, each backend answering in turn",
        up && answers.len() == 6 && seen == want && answers.windows(2).all(|w| w[0] != w[1]),
    );
    let named = Stack::wait_for(Duration::from_secs(10), || {
        resolve_in(
            &client[0].0,
            SocketAddr::new(pod_dns_address(), 53),
            &dns,
            t,
        )
        .is_some_and(|a| a.iter().any(|a| IpAddr::V4(*a) == vip))
    });
    r.check(&format!("/client resolves {dns} to the VIP {vip}"), named);
    interrupted()?;
    r.step("DELETE /v2/apps/web, /v2/apps/client");
    for id in ["/web", "/client"] {
        api.call("DELETE", &format!("/v2/apps{id}"), None)?;
    }
    let types = [
        "loadbalancer",
        "loadbalancer-listener",
        "loadbalancer-pool",
        "loadbalancer-member",
        "loadbalancer-healthmonitor",
        "virtual-machine-interface",
        "instance-ip",
        "virtual-DNS-record",
    ];
    let clean = Stack::wait_for(Duration::from_secs(30), || {
        stack.scheduler.run_ids().is_empty() && types.iter().all(|t| stack.vnc_count(t) == 0)
    });
    let left: Vec<(&str, usize)> = types.iter().map(|t| (*t, stack.vnc_count(t))).collect();
    r.check(
        &format!("no load-balancer object, VIP port or address left {left:?}"),
        clean,
    );
    Ok(())
}

/// Kills the leading manager with SIGKILL while a deployment runs; a standby takes over (its
/// ZooKeeper session outlives the dead one by the session timeout, 6 s here), the CNI's ADDs
/// fail over to the managers still up, and nothing is lost or leaked.
fn failover(stack: &Stack, api: &Marathon, r: &mut Report) -> Result<(), String> {
    let Some(old) = stack.leader() else {
        r.check("one of the managers leads", false);
        return Ok(());
    };
    r.step(&format!(
        "{} managers, elected through ZooKeeper: manager-{old} leads; the others serve the attachment API",
        stack.manager_count()
    ));
    r.step("POST /v2/apps: /green (4 instances, green-network 10.10.3.0/24), and kill -9 the leader mid-deployment");
    let mut green_app = app("/green", "green-network", "10.10.3.0/24");
    green_app["instances"] = json!(4);
    let (status, _) = api.call("POST", "/v2/apps", Some(&green_app))?;
    if status != 201 {
        return Err(format!("POST /v2/apps /green: HTTP {status}"));
    }
    let killed_at = Instant::now();
    stack.kill_manager_at(old);
    r.step(&format!(
        "killed manager-{old} (SIGKILL) with {} of 4 /green tasks launched",
        stack.scheduler.instances("/green").len()
    ));
    let mut new = None;
    Stack::wait_for(Duration::from_secs(30), || {
        new = stack.leader().filter(|&i| i != old);
        new.is_some()
    });
    let Some(new) = new else {
        r.check("a standby took over", false);
        return Ok(());
    };
    r.check(
        &format!(
            "manager-{new} leads {:.1}s after the kill (session timeout 6 s)",
            killed_at.elapsed().as_secs_f64()
        ),
        true,
    );
    api.wait_running("/green", 4)?;
    let green: Vec<String> = stack
        .scheduler
        .instances("/green")
        .into_iter()
        .flat_map(|(_, _, _, nets)| nets.into_iter().filter_map(|(_, _, ip)| ip))
        .collect();
    r.check(
        &format!("all 4 /green tasks got an address in 10.10.3.0/24 {green:?}"),
        green.len() == 4 && green.iter().all(|ip| ip.starts_with("10.10.3.")),
    );
    let whole = Stack::wait_for(Duration::from_secs(20), || {
        stack.vnc_count("virtual-machine") == 8 && stack.vnc_count("instance-ip") == 8
    });
    r.check(
        "VNC holds exactly 8 virtual-machines and 8 instance-ips (nothing lost or doubled)",
        whole,
    );
    stack.start_manager_at(old)?;
    let rejoined = Stack::wait_for(Duration::from_secs(10), || stack.leader() == Some(new));
    r.check(
        &format!("manager-{old} restarted and follows; manager-{new} still leads"),
        rejoined,
    );
    r.step("DELETE /v2/apps/green (the new leader cleans up)");
    api.call("DELETE", "/v2/apps/green", None)?;
    let gone = Stack::wait_for(Duration::from_secs(30), || {
        stack.scheduler.instances("/green").is_empty() && stack.vnc_count("virtual-machine") == 4
    });
    r.check("the /green tasks and their VNC objects are gone", gone);
    interrupted()
}

fn main() {
    let cli = Cli::parse();
    let Cmd::Demo {
        cni_bin,
        wasm_dir,
        manager_bin,
        keep,
        vnc_url,
        managers,
    } = cli.cmd;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("contrail-devstack demo needs root: it creates network namespaces");
        std::process::exit(2);
    }
    // Ctrl-C/SIGTERM: finish the current step, then clean up (Stack's Drop) and exit non-zero.
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_signal),
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    for sig in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { nix::sys::signal::sigaction(sig, &action) }.expect("sigaction");
    }

    let mut r = Report {
        checks: vec![],
        started: Instant::now(),
    };
    r.step(&format!(
        "starting the stack: VNC API, Marathon, vRouter agent + dataplane, {}, Mesos agent",
        if managers > 1 {
            format!("ZooKeeper + {managers} contrail-mesos-managers")
        } else {
            "contrail-mesos-manager".into()
        }
    ));
    let opts = StackOptions {
        cni_bin,
        wasm_dir,
        manager_bin,
        reconcile_interval_secs: 5,
        reconcile_grace_secs: 10,
        vnc_url,
        managers,
    };
    let mut stack = match Stack::start(&opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("could not start the stack: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "          work dir {} (logs: cni.log, manager*.log)",
        stack.work_dir().display()
    );
    let res = demo(&stack, &mut r);
    if keep {
        stack.keep_work_dir = true;
        println!("          keeping {}", stack.work_dir().display());
    }
    drop(stack);

    let failed: Vec<_> = r.checks.iter().filter(|(_, ok)| !ok).collect();
    println!();
    match (&res, failed.is_empty()) {
        (Ok(()), true) => {
            println!(
                "demo passed: {} checks held in {:.1}s",
                r.checks.len(),
                r.started.elapsed().as_secs_f64()
            );
        }
        _ => {
            if let Err(e) = &res {
                println!("demo stopped: {e}");
            }
            for (what, _) in failed {
                println!("failed: {what}");
            }
            std::process::exit(1);
        }
    }
}
