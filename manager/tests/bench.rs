//! Measurements (ignored by default; see docs/BENCHMARKS.md (manager section) for the command and results):
//! attachments per second through the attachment API against the VNC stand-in on loopback,
//! then, with 10,000 running tasks, the manager binary's restart time (cache rebuild), first
//! reconcile pass, peak RSS, and an in-process steady-state reconcile pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use contrail_integration::marathon::MarathonServer;
use contrail_integration::vnc::VncServer;
use contrail_mesos_api::{AttachRequest, ContrailRequest, Node};
use contrail_mesos_manager::app;
use contrail_mesos_manager::config::Config;
use contrail_mesos_manager::marathon::{HttpMarathon, HttpMarathonConfig};
use contrail_mesos_manager::reconcile::Policy;
use contrail_mesos_manager::watcher::{WatchConfig, Watcher};

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn req(i: usize) -> AttachRequest {
    AttachRequest {
        container_id: format!("5baff64c-d028-47ba-864e-{i:012x}"),
        ifname: "eth0".into(),
        netns: None,
        node: Node {
            name: format!("agent-{}", i % 10),
            ip: format!("10.0.0.{}", i % 10),
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

fn metric(addr: &str, name: &str) -> f64 {
    let mut r = match ureq::get(format!("http://{addr}/metrics")).call() {
        Ok(r) => r,
        Err(_) => return -1.0,
    };
    let text = r.body_mut().read_to_string().unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (utime + stime, clock ticks) of this process in all (exited threads included)
/// and of its live threads by name ("vnc-standin": the VNC stand-in; "api": the manager's
/// API and VNC threads).
fn cpu_ticks() -> (u64, std::collections::BTreeMap<String, u64>) {
    let ticks = |stat: &str| -> u64 {
        // Fields after the `(comm)`: utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
    };
    let total = ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default());
    let mut by = std::collections::BTreeMap::new();
    for t in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = t.path();
        let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let n = ticks(&std::fs::read_to_string(p.join("stat")).unwrap_or_default());
        *by.entry(name.trim().to_owned()).or_default() += n;
    }
    (total, by)
}

/// The CPU an attachment cost between two `cpu_ticks`, split into the stand-in, the manager
/// and the rest (the bench clients, whose threads are gone by then), in µs.
fn cpu_per_attachment(
    a: &(u64, std::collections::BTreeMap<String, u64>),
    b: &(u64, std::collections::BTreeMap<String, u64>),
    n: usize,
) -> String {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let us = |t: u64| t as f64 / hz * 1e6 / n as f64;
    let of = |k: &str| {
        b.1.get(k)
            .copied()
            .unwrap_or(0)
            .saturating_sub(a.1.get(k).copied().unwrap_or(0))
    };
    let total = b.0.saturating_sub(a.0);
    let (standin, mgr) = (of("vnc-standin"), of("api"));
    format!(
        "CPU per attachment {:.0} us: stand-in {:.0}, manager {:.0}, clients and rest {:.0}",
        us(total),
        us(standin),
        us(mgr),
        us(total.saturating_sub(standin + mgr))
    )
}

/// `clients` threads register attachments `from..to` (shared counter); returns the elapsed
/// time and, per client, (attachments done, slowest answer). Each attachment goes on a new
/// connection, as from the CNI host (a process per ADD), unless `keep_alive`: then each client
/// reads every answer to its end, so ureq reuses one connection per client.
fn load(
    addr: &str,
    clients: usize,
    from: usize,
    to: usize,
    keep_alive: bool,
) -> (Duration, Vec<(usize, Duration)>) {
    let next = Arc::new(AtomicUsize::new(from));
    let t0 = Instant::now();
    let hs: Vec<_> = (0..clients)
        .map(|_| {
            let (next, addr) = (next.clone(), addr.to_owned());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let (mut done, mut worst) = (0, Duration::ZERO);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= to {
                        break;
                    }
                    let t = Instant::now();
                    let mut r = agent
                        .post(format!("http://{addr}/v1/attachments"))
                        .send_json(req(i))
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 201);
                    if keep_alive {
                        r.body_mut().read_to_vec().unwrap();
                    }
                    // Otherwise the unread answer closes the connection.
                    drop(r);
                    worst = worst.max(t.elapsed());
                    done += 1;
                }
                (done, worst)
            })
        })
        .collect();
    let per: Vec<(usize, Duration)> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    (t0.elapsed(), per)
}

/// Open-loop load: `clients` threads register `rate` attachments a second for `secs` seconds
/// (`from..`), each at its own fixed schedule (attachment k is due at k / rate s). Returns the
/// time from when each attachment was due to its answer (a late client's wait counts, so a
/// slow answer cannot hide the ones queued behind it) and the elapsed time.
fn paced(
    addr: &str,
    clients: usize,
    rate: f64,
    secs: f64,
    from: usize,
) -> (Vec<Duration>, Duration) {
    let total = (rate * secs) as usize;
    let t0 = Instant::now() + Duration::from_millis(50);
    let hs: Vec<_> = (0..clients)
        .map(|c| {
            let addr = addr.to_owned();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut lat = Vec::new();
                for k in (c..total).step_by(clients) {
                    let due = t0 + Duration::from_secs_f64(k as f64 / rate);
                    if let Some(d) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                    let r = agent
                        .post(format!("http://{addr}/v1/attachments"))
                        .send_json(req(from + k))
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 201);
                    lat.push(due.elapsed());
                }
                lat
            })
        })
        .collect();
    let lat: Vec<Duration> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
    (lat, t0.elapsed())
}

fn pct(v: &[Duration], p: f64) -> f64 {
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

#[test]
#[ignore = "benchmark: cargo test --release -p contrail-mesos-manager --test bench -- --ignored --nocapture"]
fn bench_attachments_restart_reconcile() {
    let n = env_usize("BENCH_TASKS", 10_000);
    let clients = env_usize("BENCH_CLIENTS", 16);
    let vnc = VncServer::start_on("127.0.0.1:0", env_usize("BENCH_VNC_THREADS", 2)).unwrap();
    for a in 0..10 {
        vnc.add_virtual_router(&format!("agent-{a}"), &format!("10.0.0.{a}"));
    }
    let mut cfg = Config::default();
    cfg.api.listen = "127.0.0.1:0".into();
    cfg.api.workers = 16;
    cfg.vnc.urls = vec![vnc.url()];
    cfg.log.level = "warn".into();
    let a = app::start(&cfg).unwrap();
    let addr = a.api.addr.to_string();
    // Warm-up creates the project network once (an id no measured phase uses).
    assert_eq!(
        ureq::post(format!("http://{addr}/v1/attachments"))
            .send_json(req(0xffff_ffff_ffff))
            .unwrap()
            .status()
            .as_u16(),
        201
    );

    // 1. Attachments per second, with 8 then 16 clients (half of the attachments each), and
    // how evenly the server shares itself out: each client's count and slowest answer.
    let calls_before = vnc.calls.lock().unwrap().clone();
    let mut first = 0;
    // With BENCH_KEEPALIVE=1, a third run of n/2 more attachments (the later phases then see
    // them too) with the 16 clients on kept-alive connections: the manager without the cost
    // of a connection per attachment.
    let mut runs = vec![
        ((clients / 2).max(1), n / 2, false),
        (clients, n - n / 2, false),
    ];
    if std::env::var("BENCH_REVERSE").is_ok() {
        runs.reverse();
    }
    if std::env::var("BENCH_KEEPALIVE").is_ok() {
        runs.push((clients, n / 2, true));
    }
    for (clients, share, keep_alive) in runs {
        let cpu0 = cpu_ticks();
        let (el, per) = load(&addr, clients, first, first + share, keep_alive);
        let cpu1 = cpu_ticks();
        let counts: Vec<usize> = per.iter().map(|(c, _)| *c).collect();
        let worst: Vec<f64> = per.iter().map(|(_, w)| w.as_secs_f64() * 1e3).collect();
        println!(
            "BENCH attachments: {share} in {:.2} s = {:.0} attachments/s ({clients} clients, {}, {} workers); per client: {}..{} attachments, slowest answer {:.1}..{:.1} ms",
            el.as_secs_f64(),
            share as f64 / el.as_secs_f64(),
            if keep_alive {
                "kept-alive connections"
            } else {
                "a connection per attachment"
            },
            cfg.api.workers,
            counts.iter().min().unwrap(),
            counts.iter().max().unwrap(),
            worst.iter().cloned().fold(f64::MAX, f64::min),
            worst.iter().cloned().fold(0.0, f64::max),
        );
        first += share;
        println!("BENCH   {}", cpu_per_attachment(&cpu0, &cpu1, share));
        println!(
            "BENCH   VNC retries so far {}, VNC calls over 5 s {}",
            metric(&addr, "contrail_mesos_vnc_retries_total"),
            metric(&addr, "contrail_mesos_vnc_latency_seconds_count")
                - metric(&addr, "contrail_mesos_vnc_latency_seconds_bucket{le=\"5\"}")
        );
    }
    // 2. Latency at an offered rate below capacity: BENCH_RATE attachments/s (500 by
    // default) from BENCH_CLIENTS paced clients for BENCH_RATE_SECS seconds.
    let rate = env_usize("BENCH_RATE", 500) as f64;
    let secs = env_usize("BENCH_RATE_SECS", 6) as f64;
    let (mut lat, el) = paced(&addr, clients, rate, secs, first);
    lat.sort();
    println!(
        "BENCH paced: {} attachments offered at {rate:.0}/s by {clients} clients, done in {:.2} s ({:.0}/s); latency from due time p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        lat.len(),
        el.as_secs_f64(),
        lat.len() as f64 / el.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
    );
    first += lat.len();

    // VNC round trips per attachment, by request kind (from the stand-in's counters).
    let per: Vec<String> = vnc
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k, v - calls_before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{k}: {:.2}", v as f64 / first as f64))
        .collect();
    println!("BENCH VNC requests per attachment: {}", per.join(", "));
    let ips: Vec<(String, String)> = vnc
        .ports()
        .into_iter()
        .filter_map(|p| Some((p.vm_name?, p.ip?)))
        .collect();
    a.shutdown(Duration::from_secs(1));

    // 3. The running tasks in Marathon, one per attachment.
    let m = MarathonServer::start().unwrap();
    for (cid, ip) in &ips {
        // Each task on the node its attachment was registered from (`req`): a join needs
        // the node to match.
        let i = usize::from_str_radix(cid.rsplit('-').next().unwrap_or("0"), 16).unwrap_or(0);
        let node = format!("agent-{}", i % 10);
        m.add_task_silently(
            "/bench",
            &format!("bench.{cid}"),
            &node,
            &[ip],
            "TASK_RUNNING",
        );
    }
    let bin = env!("CARGO_BIN_EXE_contrail-mesos-manager");
    let t0 = Instant::now();
    let mut child = std::process::Command::new(bin)
        .args([
            "--listen",
            "127.0.0.1:16991",
            "--vnc-url",
            &vnc.url(),
            "--marathon-url",
            &m.url(),
            "--log-level",
            "warn",
        ])
        .env("CONTRAIL_MESOS_MANAGER_RECONCILE_GRACE_SECS", "3600")
        .spawn()
        .unwrap();
    let maddr = "127.0.0.1:16991";
    let mut ready = None;
    let mut reconciled = None;
    for _ in 0..6000 {
        if ready.is_none() && ureq::get(format!("http://{maddr}/livez")).call().is_ok() {
            ready = Some(t0.elapsed());
        }
        if ready.is_some() && metric(maddr, "contrail_mesos_reconcile_runs_total") >= 1.0 {
            reconciled = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let hwm = vm_hwm_kib(child.id());
    let joins = metric(maddr, "contrail_mesos_task_joins_total");
    let deletions = metric(maddr, "contrail_mesos_reconcile_deletions_total");
    let _ = child.kill();
    let _ = child.wait();
    let ready = ready.expect("manager ready");
    let reconciled = reconciled.expect("first reconcile");
    println!(
        "BENCH restart with {} attachments: ready (cache rebuilt, API up) in {:.2} s; first reconcile pass (a join each) done {:.2} s after ready; peak RSS {:.1} MiB; joins {joins}; deletions {deletions}",
        ips.len(),
        ready.as_secs_f64(),
        (reconciled - ready).as_secs_f64(),
        hwm as f64 / 1024.0
    );

    // 4. Steady-state pass in process (all joined already): list, scan, diff.
    let metrics = Arc::new(contrail_mesos_manager::metrics::Metrics::default());
    let mgr = app::manager(&cfg, metrics).unwrap();
    let marathon = Arc::new(HttpMarathon::new(HttpMarathonConfig {
        urls: vec![m.url()],
        auth: contrail_mesos_manager::marathon::MarathonAuth::None,
        timeout: Duration::from_secs(30),
        stall_timeout: Duration::from_secs(30),
        tls: Default::default(),
    }));
    let w = Watcher::new(
        mgr,
        marathon,
        WatchConfig {
            policy: Policy {
                grace_secs: 3600,
                delete_unjoined: true,
            },
            interval: Duration::from_secs(3600),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            max_delete_percent: 50,
            confirm_delay: Duration::from_secs(2),
        },
        Arc::new(AtomicBool::new(false)),
    );
    let t0 = Instant::now();
    let st = w.relist_and_reconcile().unwrap();
    println!(
        "BENCH steady reconcile pass: {} tasks, {} owned, {} deleted, {} joined in {:.2} s",
        st.tasks,
        st.owned,
        st.deleted,
        st.joined,
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(st.deleted, 0);
}
