//! Measurement (ignored by default; docs/BENCHMARKS.md has the command and the numbers): what
//! TLS costs a CNI call. Every ADD/DEL is a new process, so a new connection: the handshake is
//! paid on every call. Sequential `GET /livez` (no VNC work), each on a fresh connection, to the
//! manager's API served plain and over TLS.

use std::time::{Duration, Instant};

use contrail_integration::tls_proxy::Pki;
use contrail_integration::vnc::VncServer;
use contrail_mesos_manager::app;
use contrail_mesos_manager::config::Config;

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

#[test]
#[ignore = "benchmark: cargo test --release -p contrail-mesos-manager --test bench_tls -- --ignored --nocapture"]
fn bench_fresh_connection_latency_plain_and_tls() {
    const N: usize = 500;
    let pki = Pki::new("bench");
    let v = VncServer::start().unwrap();
    for tls in [false, true] {
        let mut c = Config::default();
        c.api.listen = "127.0.0.1:0".into();
        c.vnc.urls = vec![v.url()];
        if tls {
            c.api.tls_cert_file = pki.cert_file().display().to_string();
            c.api.tls_key_file = pki.key_file().display().to_string();
        }
        let app = app::start(&c).unwrap();
        let url = format!(
            "{}://{}/livez",
            if tls { "https" } else { "http" },
            app.api.addr
        );
        let ca = if tls {
            pki.ca_file().display().to_string()
        } else {
            String::new()
        };
        let mut lat = Vec::with_capacity(N);
        for _ in 0..N {
            // A new agent per call: a new connection, as a new CNI process has.
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .tls_config(contrail_mesos_api::tls::client_config(&ca).unwrap())
                .build()
                .into();
            let t0 = Instant::now();
            let r = agent.get(&url).call().unwrap();
            assert_eq!(r.status().as_u16(), 200);
            lat.push(t0.elapsed());
        }
        println!(
            "{:5}: {N} fresh-connection GET /livez: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms",
            if tls { "https" } else { "http" },
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.9),
            pct(&mut lat, 0.99)
        );
        app.shutdown(Duration::from_secs(2));
    }
}
