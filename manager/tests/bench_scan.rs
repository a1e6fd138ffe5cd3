//! Measurement (ignored by default; docs/BENCHMARKS.md has the command and the numbers): the
//! manager binary's start-up scan of VNC holding 100,000 owned objects (VM, VMI and
//! instance-ip of 33,334 attachments), its time to ready and its peak RSS.

use std::time::{Duration, Instant};

use contrail_integration::vnc::VncServer;
use contrail_mesos_api::vm_uuid_for;
use serde_json::json;

fn vm_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "benchmark: cargo test --release -p contrail-mesos-manager --test bench_scan -- --ignored --nocapture"]
fn bench_scan_of_100k_objects() {
    let objects: usize = std::env::var("BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let n = objects.div_ceil(3);
    let vnc = VncServer::start_on("127.0.0.1:0", 4).unwrap();
    vnc.add_virtual_router("agent-1", "10.0.0.5");
    let t0 = Instant::now();
    {
        let mut s = vnc.store();
        s.create("network-ipam", json!({"fq_name": ["default-domain", "default-project", "bench"], "parent_type": "project"}))
            .unwrap();
        s.create("virtual-network", json!({"fq_name": ["default-domain", "default-project", "bench"], "parent_type": "project",
            "network_ipam_refs": [{"to": ["default-domain", "default-project", "bench"],
                "attr": {"ipam_subnets": [{"subnet": {"ip_prefix": "10.32.0.0", "ip_prefix_len": 14}}]}}]}))
            .unwrap();
        for i in 0..n {
            let cid = format!("5ca11ab1-d028-47ba-864e-{i:012x}");
            let ann = json!({"key_value_pair": [
                {"key": "owner", "value": "contrail-mesos-manager"}, {"key": "cluster", "value": "mesos"},
                {"key": "container-id", "value": cid}, {"key": "ifname", "value": "eth0"},
                {"key": "created-at", "value": "0"}, {"key": "index", "value": "0/1"},
                {"key": "node-name", "value": "agent-1"}, {"key": "node-ip", "value": "10.0.0.5"}]});
            let vm = s
                .create(
                    "virtual-machine",
                    json!({"uuid": vm_uuid_for(&cid), "fq_name": [cid], "annotations": ann}),
                )
                .unwrap();
            let vmi_fq = json!(["default-domain", "default-project", format!("{cid}__eth0")]);
            let vmi = s
                .create("virtual-machine-interface", json!({"fq_name": vmi_fq, "parent_type": "project",
                    "virtual_network_refs": [{"to": ["default-domain", "default-project", "bench"]}],
                    "virtual_machine_refs": [{"to": [cid], "uuid": vm}], "annotations": ann}))
                .unwrap();
            s.create("instance-ip", json!({"fq_name": [format!("{cid}__eth0")],
                "virtual_network_refs": [{"to": ["default-domain", "default-project", "bench"]}],
                "virtual_machine_interface_refs": [{"to": vmi_fq, "uuid": vmi}], "annotations": ann}))
                .unwrap();
        }
    }
    println!(
        "BENCH scan setup: {} objects in the stand-in in {:.1} s",
        3 * n,
        t0.elapsed().as_secs_f64()
    );
    let bin = env!("CARGO_BIN_EXE_contrail-mesos-manager");
    let listen = "127.0.0.1:16992";
    let t0 = Instant::now();
    let mut child = std::process::Command::new(bin)
        .args([
            "--listen",
            listen,
            "--vnc-url",
            &vnc.url(),
            "--log-level",
            "warn",
        ])
        .spawn()
        .unwrap();
    let mut ready = None;
    for _ in 0..12_000 {
        if ureq::get(format!("http://{listen}/healthz")).call().is_ok() {
            ready = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let hwm = vm_hwm_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let ready = ready.expect("manager ready");
    let calls: Vec<String> = vnc
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("GET /"))
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!(
        "BENCH scan of {} owned objects: manager ready (scan done, cache rebuilt) in {:.2} s; peak RSS {:.1} MiB; list requests {}",
        3 * n,
        ready.as_secs_f64(),
        hwm as f64 / 1024.0,
        calls.join(", ")
    );
}
