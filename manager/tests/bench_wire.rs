//! Measurement (ignored by default; docs/BENCHMARKS.md has the command and the numbers):
//! attach and detach latency through the attachment API against the VNC stand-in answering
//! in one write (`Wire::Whole`, the stand-in's own processing time) and as the real API server
//! does, head and body as two writes with Nagle on (`Wire::SplitNagle`).

use std::time::{Duration, Instant};

use contrail_integration::vnc::{VncServer, Wire};
use contrail_mesos_api::{AttachRequest, ContrailRequest, Node};
use contrail_mesos_manager::app;
use contrail_mesos_manager::config::Config;

fn req(i: usize) -> AttachRequest {
    AttachRequest {
        container_id: format!("6a11f00d-d028-47ba-864e-{i:012x}"),
        ifname: "eth0".into(),
        netns: None,
        node: Node {
            name: "agent-1".into(),
            ip: "10.0.0.5".into(),
        },
        network_name: "contrail-cni-plugin".into(),
        request: ContrailRequest {
            network: Some(vec!["bench".into()]),
            subnets: vec!["10.32.0.0/16".into()],
            ..Default::default()
        },
        labels: vec![],
    }
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

#[test]
#[ignore = "benchmark: cargo test --release -p contrail-mesos-manager --test bench_wire -- --ignored --nocapture"]
fn bench_attach_detach_latency_per_wire() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for wire in [Wire::Whole, Wire::SplitNagle] {
        let vnc = VncServer::start_wire(wire).unwrap();
        vnc.add_virtual_router("agent-1", "10.0.0.5");
        let mut cfg = Config::default();
        cfg.api.listen = "127.0.0.1:0".into();
        cfg.vnc.urls = vec![vnc.url()];
        cfg.log.level = "warn".into();
        let a = app::start(&cfg).unwrap();
        let url = format!("http://{}/v1/attachments", a.api.addr);
        let client: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        // Warm-up: creates the network once.
        assert_eq!(client.post(&url).send_json(req(n)).unwrap().status(), 201);
        let (mut att, mut det) = (Vec::new(), Vec::new());
        for i in 0..n {
            let t0 = Instant::now();
            let r = client.post(&url).send_json(req(i)).unwrap();
            att.push(t0.elapsed());
            assert_eq!(r.status(), 201);
            let t0 = Instant::now();
            let r = client
                .delete(format!("{url}/{}/eth0", req(i).container_id))
                .call()
                .unwrap();
            det.push(t0.elapsed());
            assert_eq!(r.status(), 200);
        }
        println!(
            "BENCH wire {wire:?}: attach p50 {:.2} ms p99 {:.2} ms; detach p50 {:.2} ms p99 {:.2} ms ({n} each, sequential)",
            pct(&mut att, 0.5),
            pct(&mut att, 0.99),
            pct(&mut det, 0.5),
            pct(&mut det, 0.99),
        );
        a.shutdown(Duration::from_secs(1));
    }
}
