//! Large-cluster measurement (ignored by default; docs/BENCHMARKS.md, "The manager at cluster
//! scale", has the command and the numbers). Sized by environment variables:
//! `BENCH_TASKS` (100,000 running tasks, one attachment each), `BENCH_VROUTERS` (1,000 nodes),
//! `BENCH_NETWORKS` (50 networks, one Marathon app each), `BENCH_EVENT_RATE` (status updates
//! per second, 1,000), `BENCH_EVENT_SECS` (10), `BENCH_INTERVAL_SECS` (the manager's reconcile
//! interval, 20), `BENCH_MANAGER_BIN` (another manager binary, e.g. an older build),
//! `BENCH_MANAGER_LOG` (the manager's `--log-level`, `warn`).
//!
//! The VNC stand-in's store is seeded directly with what the manager's registrations write
//! (`vnc/writer.rs`: VM with the task as display name, VMI, instance-ip, the virtual-router's
//! ref to the VM), and the Marathon stand-in with the matching running tasks. Then the real
//! manager binary is started with its default settings (only the reconcile interval is
//! shortened, so that periodic passes happen during the run) and measured from outside:
//!
//! 0. the VNC stand-in's own time to serve the lists a scan reads (a floor for a pass);
//! 1. restart: process start to the first completed pass (`contrail_mesos_reconcile_runs_total`);
//! 2. its peak RSS (`VmHWM` of the manager's own process), after the first pass and again after
//!    periodic passes and the event load;
//! 3. a steady pass (nothing to do): `contrail_mesos_reconcile_last_pass_seconds` of a periodic pass;
//! 4. status updates: `status_update_event`s of running tasks emitted through the Marathon
//!    stand-in at a fixed rate; an event counts as applied once the manager has started on the
//!    next one (`contrail_mesos_sse_events_total` is counted as an event is taken up, and the
//!    stream is applied in order), a last unmeasured event closes the series. Lag = applied -
//!    emitted; throughput = events / (last applied - first emitted).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use contrail_integration::marathon::MarathonServer;
use contrail_integration::vnc::VncServer;
use contrail_mesos_api::vm_uuid_for;
use serde_json::{Value, json};

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn metric(addr: &str, name: &str) -> Option<f64> {
    let mut r = ureq::get(format!("http://{addr}/metrics")).call().ok()?;
    let text = r.body_mut().read_to_string().ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// One seeded attachment: the container, its task, node and address.
struct Seeded {
    task: String,
    app: String,
    node: String,
    ip: String,
}

fn node_name(j: usize) -> String {
    format!("agent-{j:04}")
}

fn node_ip(j: usize) -> String {
    format!("172.16.{}.{}", j >> 8, j & 255)
}

fn net_name(k: usize) -> String {
    format!("net-{k:02}")
}

/// Seeds the VNC stand-in with what `n` registrations (and their joins) would have left, and
/// returns the attachments. Bodies as `vnc/writer.rs` sends them.
fn seed_vnc(vnc: &VncServer, n: usize, vrouters: usize, networks: usize) -> Vec<Seeded> {
    let (owner, cluster) = ("contrail-mesos-manager", "mesos");
    let project = ["default-domain", "default-project"];
    let created_at = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600)
        .to_string();
    let mut s = vnc.store();
    let mut vr_uuids = Vec::with_capacity(vrouters);
    for j in 0..vrouters {
        vr_uuids.push(
            s.create(
                "virtual-router",
                json!({"fq_name": ["default-global-system-config", node_name(j)],
                    "parent_type": "global-system-config", "virtual_router_ip_address": node_ip(j)}),
            )
            .unwrap(),
        );
    }
    let mut vns = Vec::with_capacity(networks);
    for k in 0..networks {
        let fq = json!([project[0], project[1], net_name(k)]);
        s.create(
            "network-ipam",
            json!({"fq_name": fq, "parent_type": "project"}),
        )
        .unwrap();
        let vn = s
            .create(
                "virtual-network",
                json!({"fq_name": fq, "parent_type": "project",
                    "network_ipam_refs": [{"to": fq,
                        "attr": {"ipam_subnets": [{"subnet": {"ip_prefix": format!("10.{k}.0.0"), "ip_prefix_len": 16}}]}}]}),
            )
            .unwrap();
        vns.push((fq, vn));
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (j, k, slot) = (i % vrouters, i % networks, i / networks + 2);
        let cid = format!("5ca1ab1e-d028-47ba-864e-{i:012x}");
        let app = net_name(k);
        let task = format!("{app}.{}", uuid::Uuid::new_v4());
        let ip = format!("10.{k}.{}.{}", slot >> 8, slot & 255);
        let (vn_fq, vn) = &vns[k];
        let vm = s
            .create(
                "virtual-machine",
                json!({"uuid": vm_uuid_for(&cid), "fq_name": [cid], "display_name": task,
                    "server_type": "container",
                    "annotations": {"key_value_pair": [
                        {"key": "owner", "value": owner}, {"key": "cluster", "value": cluster},
                        {"key": "container-id", "value": cid}, {"key": "created-at", "value": created_at},
                        {"key": "kind", "value": "mesos-container"}]}}),
            )
            .unwrap();
        let port = format!("{cid}__eth0");
        let vmi_fq = json!([project[0], project[1], port]);
        let owner_kv = |extra: &[(&str, &str)]| -> Value {
            let mut kv = vec![
                json!({"key": "owner", "value": owner}),
                json!({"key": "cluster", "value": cluster}),
                json!({"key": "container-id", "value": cid}),
                json!({"key": "ifname", "value": "eth0"}),
                json!({"key": "created-at", "value": created_at}),
            ];
            kv.extend(extra.iter().map(|(k, v)| json!({"key": k, "value": v})));
            json!({ "key_value_pair": kv })
        };
        let vmi_uuid = uuid::Uuid::new_v4().to_string();
        let h = vmi_uuid.replace('-', "");
        let mac = format!(
            "02:{}:{}:{}:{}:{}",
            &h[0..2],
            &h[2..4],
            &h[4..6],
            &h[6..8],
            &h[8..10]
        );
        let (nn, ni) = (node_name(j), node_ip(j));
        let vmi = s
            .create(
                "virtual-machine-interface",
                json!({"uuid": vmi_uuid, "fq_name": vmi_fq, "parent_type": "project", "display_name": port,
                    "virtual_network_refs": [{"to": vn_fq, "uuid": vn}],
                    "virtual_machine_refs": [{"to": [cid], "uuid": vm}],
                    "security_group_refs": [],
                    "virtual_machine_interface_mac_addresses": {"mac_address": [mac]},
                    "annotations": owner_kv(&[("index", "0/1"), ("node-name", &nn), ("node-ip", &ni),
                        ("network", "contrail-cni-plugin")])}),
            )
            .unwrap();
        s.create(
            "instance-ip",
            json!({"fq_name": [port], "virtual_network_refs": [{"to": vn_fq, "uuid": vn}],
                "virtual_machine_interface_refs": [{"to": vmi_fq, "uuid": vmi}],
                "instance_ip_address": ip, "annotations": owner_kv(&[])}),
        )
        .unwrap();
        s.ref_update(
            &json!({"type": "virtual-router", "uuid": vr_uuids[j], "ref-type": "virtual-machine",
            "ref-uuid": vm, "operation": "ADD", "attr": null}),
        )
        .unwrap();
        out.push(Seeded {
            task,
            app: format!("/{app}"),
            node: nn,
            ip,
        });
    }
    out
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return t0.elapsed();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{what}: not within {limit:?}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[test]
#[ignore = "benchmark: cargo test --release -p contrail-mesos-manager --test bench_scale -- --ignored --nocapture"]
fn bench_cluster_scale() {
    let n = env_usize("BENCH_TASKS", 100_000);
    let vrouters = env_usize("BENCH_VROUTERS", 1_000).max(1);
    let networks = env_usize("BENCH_NETWORKS", 50).clamp(1, 250);
    let rate = env_usize("BENCH_EVENT_RATE", 1_000).max(1);
    let event_secs = env_usize("BENCH_EVENT_SECS", 10);
    let interval = env_usize("BENCH_INTERVAL_SECS", 20);

    let vnc = VncServer::start_on("127.0.0.1:0", 4).unwrap();
    let t = Instant::now();
    let seeded = seed_vnc(&vnc, n, vrouters, networks);
    println!(
        "BENCH scale setup: {n} attachments ({} VNC objects) on {vrouters} virtual-routers, {networks} networks seeded in {:.1} s",
        3 * n + vrouters + 2 * networks,
        t.elapsed().as_secs_f64()
    );
    // The stand-in's own share of a scan: the lists a pass reads, paged as the manager pages
    // them, each body read to the end and thrown away (no decode). Twice: as detail lists
    // (every field), and as the short lists with only the fields the scan reads, which is
    // what the manager asks for.
    for (how, shapes) in [
        (
            "detail lists",
            [
                ("virtual-machine", "detail=True"),
                ("instance-ip", "detail=True"),
                ("floating-ip", "detail=True"),
                ("virtual-machine-interface", "detail=True"),
                ("virtual-router", "detail=True"),
            ],
        ),
        (
            "lists with the scan's fields",
            [
                (
                    "virtual-machine",
                    "fields=annotations,display_name&exclude_hrefs=true",
                ),
                (
                    "instance-ip",
                    "fields=annotations,instance_ip_address,virtual_machine_interface_refs&exclude_hrefs=true",
                ),
                (
                    "floating-ip",
                    "fields=annotations,floating_ip_address,virtual_machine_interface_refs&exclude_hrefs=true",
                ),
                (
                    "virtual-machine-interface",
                    "fields=annotations,virtual_network_refs,virtual_machine_refs,virtual_machine_interface_mac_addresses&exclude_hrefs=true",
                ),
                (
                    "virtual-router",
                    "fields=virtual_machine_refs&exclude_hrefs=true",
                ),
            ],
        ),
    ] {
        let t = Instant::now();
        let (mut pages, mut bytes) = (0, 0);
        for (ty, shape) in shapes {
            let mut marker = "None".to_owned();
            loop {
                let mut r = ureq::get(format!(
                    "{}/{ty}s?{shape}&page_limit=1000&page_marker={}",
                    vnc.url(),
                    marker.replace(':', "%3A")
                ))
                .call()
                .unwrap();
                // Only the marker is read; the objects are skipped.
                #[derive(serde::Deserialize)]
                struct Page {
                    #[serde(default)]
                    marker: Option<String>,
                }
                let body = r
                    .body_mut()
                    .with_config()
                    .limit(1 << 30)
                    .read_to_vec()
                    .unwrap();
                let p: Page = serde_json::from_slice(&body).unwrap();
                pages += 1;
                bytes += body.len();
                match p.marker {
                    Some(m) => marker = m,
                    None => break,
                }
            }
        }
        println!(
            "BENCH scale VNC stand-in alone ({how}): the scan's {pages} list pages ({:.0} MiB) served and read in {:.2} s",
            bytes as f64 / 1048576.0,
            t.elapsed().as_secs_f64()
        );
    }
    let m = MarathonServer::start().unwrap();
    // Deep enough that a slow reader is measured, not dropped (Marathon's own
    // `event_stream_max_outstanding_messages` is a deployment setting).
    m.set_max_outstanding(1_000_000);
    for a in &seeded {
        m.add_task_silently(&a.app, &a.task, &a.node, &[&a.ip], "TASK_RUNNING");
    }
    // The Marathon stand-in's own time for the listing a pass reads (its floor, as above).
    let t = Instant::now();
    let body = ureq::get(format!("{}/v2/apps?embed=apps.tasks", m.url()))
        .call()
        .unwrap()
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    println!(
        "BENCH scale Marathon stand-in alone: the apps listing with {} tasks ({:.0} MiB) served and read in {:.2} s",
        seeded.len(),
        body.len() as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    drop(body);

    // 1. Restart: the manager binary on the populated VNC, default settings.
    // `BENCH_MANAGER_BIN`: another build of the manager (e.g. the one before a change) against
    // the same stand-ins.
    let bin = std::env::var("BENCH_MANAGER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_contrail-mesos-manager").to_owned());
    // A port nobody holds now (a manager left over from an earlier run would answer instead).
    let listen: &'static str = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Box::leak(l.local_addr().unwrap().to_string().into_boxed_str())
    };
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // The guard ends the manager however the bench ends.
    let child = Kill(
        std::process::Command::new(&bin)
            .args([
                "--listen",
                listen,
                "--vnc-url",
                &vnc.url(),
                "--marathon-url",
                &m.url(),
                "--log-level",
                // e.g. BENCH_MANAGER_LOG=warn,contrail_mesos_manager::watcher=info: each
                // pass's line with where its time went.
                &std::env::var("BENCH_MANAGER_LOG").unwrap_or_else(|_| "warn".into()),
            ])
            .env(
                "CONTRAIL_MESOS_MANAGER_RECONCILE_INTERVAL_SECS",
                interval.to_string(),
            )
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let runs = || metric(listen, "contrail_mesos_reconcile_runs_total").unwrap_or(-1.0);
    let ready = wait_for("API up", Duration::from_secs(600), || {
        ureq::get(format!("http://{listen}/livez")).call().is_ok()
    });
    let mut child = child;
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the manager exited: another process answers on {listen}"
    );
    let first = wait_for("first pass", Duration::from_secs(600), || runs() >= 1.0) + ready;
    let hwm_first = proc_status_kib(pid, "VmHWM:");
    let first_pass = metric(listen, "contrail_mesos_reconcile_last_pass_seconds").unwrap_or(-1.0);
    println!(
        "BENCH scale restart: cache rebuilt and API up after {:.2} s; first pass completed {:.2} s after start (the pass itself {first_pass:.2} s); peak RSS {:.1} MiB; joins {}, deletions {}",
        ready.as_secs_f64(),
        first.as_secs_f64(),
        mib(hwm_first),
        metric(listen, "contrail_mesos_task_joins_total").unwrap_or(-1.0),
        metric(listen, "contrail_mesos_reconcile_deletions_total").unwrap_or(-1.0),
    );

    // 2. Steady passes (everything joined, nothing to do), periodic.
    wait_for(
        "two periodic passes",
        Duration::from_secs(4 * interval as u64 + 600),
        || runs() >= 3.0,
    );
    println!(
        "BENCH scale steady pass: {:.2} s (last of {} passes); peak RSS {:.1} MiB, RSS now {:.1} MiB",
        metric(listen, "contrail_mesos_reconcile_last_pass_seconds").unwrap_or(-1.0),
        runs(),
        mib(proc_status_kib(pid, "VmHWM:")),
        mib(proc_status_kib(pid, "VmRSS:")),
    );

    // 3. Status updates at a fixed rate.
    let total = rate * event_secs;
    let base = metric(listen, "contrail_mesos_sse_events_total").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(c) = metric(listen, "contrail_mesos_sse_events_total") {
                    samples.push((Instant::now(), c - base));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            samples
        })
    };
    let mut emitted = Vec::with_capacity(total + 1);
    let te = Instant::now();
    for e in 0..=total {
        let due = te + Duration::from_secs_f64(e as f64 / rate as f64);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        // Spread over the cluster: a stride coprime with n walks every task.
        let a = &seeded[(e * 7919) % seeded.len()];
        m.emit_status_update(&a.app, &a.task, &a.node, &[&a.ip], "TASK_RUNNING");
        emitted.push(Instant::now());
    }
    let emit_secs = te.elapsed().as_secs_f64();
    let drained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("events applied", Duration::from_secs(300), || {
            metric(listen, "contrail_mesos_sse_events_total").unwrap_or(0.0) - base
                >= (total + 1) as f64
        })
    }));
    std::thread::sleep(Duration::from_millis(20));
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    // Event i (0-based) is applied once the count reached i + 2.
    let mut lags = Vec::with_capacity(total);
    let mut last_applied = te;
    let mut k = 0;
    for (i, sent) in emitted.iter().take(total).enumerate() {
        while k < samples.len() && samples[k].1 < (i + 2) as f64 {
            k += 1;
        }
        let Some((at, _)) = samples.get(k) else { break };
        lags.push(at.saturating_duration_since(*sent).as_secs_f64());
        last_applied = *at;
    }
    lags.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "BENCH scale status updates: {total} emitted at {rate}/s (took {emit_secs:.2} s), {} applied{}; throughput {:.0}/s; lag p50 {:.3} s, p99 {:.3} s, max {:.3} s; stream reconnects {}; peak RSS {:.1} MiB",
        lags.len(),
        if drained.is_ok() {
            ""
        } else {
            " (not all within 300 s)"
        },
        lags.len() as f64 / last_applied.duration_since(te).as_secs_f64(),
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(f64::NAN),
        metric(listen, "contrail_mesos_sse_reconnects_total").unwrap_or(-1.0),
        mib(proc_status_kib(pid, "VmHWM:")),
    );
    drop(child);
}
