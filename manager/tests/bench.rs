//! Measurements (ignored by default; see docs/BENCHMARKS.md (manager section) for the command and results):
//! attachments per second through the attachment API of the manager binary against the VNC
//! stand-in on loopback, then, with 10,000 running tasks, the manager binary's restart time
//! (cache rebuild), first reconcile pass, peak RSS, and an in-process steady-state reconcile
//! pass.
//!
//! Knobs: `BENCH_TASKS` (10,000), `BENCH_CLIENTS` (16), `BENCH_WORKERS` (the manager's
//! `api.workers`, 16), `BENCH_VNC_THREADS` (the stand-in's, 2), `BENCH_RATE` and
//! `BENCH_RATE_SECS` (the paced phase, 500/s for 6 s), `BENCH_CLIENT=ureq` (the clients through
//! ureq instead of `std::net`), `BENCH_MANAGER=inprocess` (the manager in this process),
//! `BENCH_MANAGER_TUNABLES` (`GLIBC_TUNABLES` for the manager process), `BENCH_MANAGER_BIN`
//! (another manager build), `BENCH_ONLY_ATTACH` (stop after the attachment phases),
//! `BENCH_KEEPALIVE`, `BENCH_REVERSE`.

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

/// How the bench clients send an attachment: `Lean` (the default) writes the request with
/// `std::net` and reads the answer's status line and body, on a new connection each time, as a
/// CNI ADD's process does; `Ureq` (`BENCH_CLIENT=ureq`) goes through ureq as the CNI host's
/// manager client does. The clients share the two cores with the manager and the stand-in,
/// so a cheaper load generator leaves more of them to what is measured (as `wrk` does); the
/// bench prints each party's CPU either way.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Client {
    Lean,
    Ureq,
}

fn client_kind() -> Client {
    match std::env::var("BENCH_CLIENT").as_deref() {
        Ok("ureq") => Client::Ureq,
        _ => Client::Lean,
    }
}

/// One registration on a new connection with `std::net`: the request in one write, the
/// answer read to the end of its `Content-Length`; returns the status.
fn attach_lean(addr: &str, i: usize) -> u16 {
    use std::io::{Read as _, Write as _};
    let body = serde_json::to_vec(&req(i)).unwrap();
    let mut out = format!(
        "POST /v1/attachments HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&out).unwrap();
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = s.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if rest.len() >= len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
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

/// The manager binary the bench starts: this build's, or `BENCH_MANAGER_BIN` (another build,
/// for before/after runs with the same bench).
fn manager_bin() -> String {
    std::env::var("BENCH_MANAGER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_contrail-mesos-manager").to_owned())
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (utime + stime, clock ticks) of this process in all (exited threads included),
/// and of its live threads by name ("vnc-standin": the VNC stand-in; "api": the manager's
/// API and VNC threads when it runs in this process): ticks and context switches (voluntary
/// and not). With the manager as a child process, its whole CPU (exited threads included) and
/// its threads' switches are `child`.
struct Cpu {
    total: u64,
    by: std::collections::BTreeMap<String, (u64, u64)>,
    child: Option<(u64, u64)>,
}

/// utime + stime from a `/proc/.../stat` line.
fn stat_ticks(stat: &str) -> u64 {
    // Fields after the `(comm)`: utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// (name, ticks, context switches) of each live thread of `/proc/<proc_dir>`.
fn threads(proc_dir: &str) -> Vec<(String, u64, u64)> {
    let switches = |status: &str| -> u64 {
        status
            .lines()
            .filter_map(|l| {
                l.strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            })
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .sum()
    };
    std::fs::read_dir(format!("/proc/{proc_dir}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| {
            let p = t.path();
            let name = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            let n = stat_ticks(&std::fs::read_to_string(p.join("stat")).unwrap_or_default());
            let cs = switches(&std::fs::read_to_string(p.join("status")).unwrap_or_default());
            (name.trim().to_owned(), n, cs)
        })
        .collect()
}

fn cpu_ticks(child: Option<u32>) -> Cpu {
    let total = stat_ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default());
    let mut by = std::collections::BTreeMap::new();
    for (name, n, cs) in threads("self") {
        let e: &mut (u64, u64) = by.entry(name).or_default();
        e.0 += n;
        e.1 += cs;
    }
    let child = child.map(|pid| {
        let ticks =
            stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default());
        let cs = threads(&pid.to_string()).iter().map(|t| t.2).sum();
        (ticks, cs)
    });
    Cpu { total, by, child }
}

/// The CPU an attachment cost between two `cpu_ticks`, split into the stand-in, the manager
/// and the rest (the bench clients, whose threads are gone by then), in µs; and the context
/// switches of the stand-in's and the manager's threads per attachment (threads that exited
/// in between are not counted).
fn cpu_per_attachment(a: &Cpu, b: &Cpu, n: usize) -> String {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let us = |t: u64| t as f64 / hz * 1e6 / n as f64;
    let of = |k: &str| {
        let (t1, c1) = b.by.get(k).copied().unwrap_or((0, 0));
        let (t0, c0) = a.by.get(k).copied().unwrap_or((0, 0));
        (t1.saturating_sub(t0), c1.saturating_sub(c0))
    };
    let ours = b.total.saturating_sub(a.total);
    let (standin, s_cs) = of("vnc-standin");
    let ((mgr, m_cs), total) = match (a.child, b.child) {
        (Some((t0, c0)), Some((t1, c1))) => {
            let t = t1.saturating_sub(t0);
            ((t, c1.saturating_sub(c0)), ours + t)
        }
        _ => (of("api"), ours),
    };
    format!(
        "CPU per attachment {:.0} us: stand-in {:.0}, manager {:.0}, clients and rest {:.0}; context switches per attachment: stand-in {:.1}, manager {:.1}",
        us(total),
        us(standin),
        us(mgr),
        us(total.saturating_sub(standin + mgr)),
        s_cs as f64 / n as f64,
        m_cs as f64 / n as f64,
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
    let kind = client_kind();
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
                    if kind == Client::Lean && !keep_alive {
                        assert_eq!(attach_lean(&addr, i), 201);
                    } else {
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
                    }
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
    let kind = client_kind();
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
                    if kind == Client::Lean {
                        assert_eq!(attach_lean(&addr, from + k), 201);
                    } else {
                        let r = agent
                            .post(format!("http://{addr}/v1/attachments"))
                            .send_json(req(from + k))
                            .unwrap();
                        assert_eq!(r.status().as_u16(), 201);
                    }
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
    cfg.api.workers = env_usize("BENCH_WORKERS", 16);
    cfg.vnc.urls = vec![vnc.url()];
    cfg.log.level = "warn".into();
    // The manager binary as a child process (the default), configured as the in-process one
    // was: it runs as shipped (its `main` also sets the allocator up), and its CPU is the whole
    // process's, threads that ended included. BENCH_MANAGER=inprocess: in this process
    // (`app::start`), its CPU told apart by thread name.
    let as_process = std::env::var("BENCH_MANAGER").as_deref() != Ok("inprocess");
    let (a, mut child, addr) = if as_process {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = std::process::Command::new(manager_bin())
            .args([
                "--listen",
                &addr,
                "--vnc-url",
                &vnc.url(),
                "--log-level",
                "warn",
            ])
            .env(
                "CONTRAIL_MESOS_MANAGER_API_WORKERS",
                cfg.api.workers.to_string(),
            )
            // Allocator experiments on the manager alone, e.g.
            // BENCH_MANAGER_TUNABLES=glibc.malloc.tcache_count=64 (glibc tunables(7)).
            .envs(
                std::env::var("BENCH_MANAGER_TUNABLES")
                    .ok()
                    .map(|t| ("GLIBC_TUNABLES", t)),
            )
            .spawn()
            .unwrap();
        let mut up = false;
        for _ in 0..500 {
            if ureq::get(format!("http://{addr}/livez")).call().is_ok() {
                up = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(up, "the manager process answers /livez");
        (None, Some(child), addr)
    } else {
        let a = app::start(&cfg).unwrap();
        let addr = a.api.addr.to_string();
        (Some(a), None, addr)
    };
    let child_pid = child.as_ref().map(|c| c.id());
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
        let cpu0 = cpu_ticks(child_pid);
        let (el, per) = load(&addr, clients, first, first + share, keep_alive);
        let cpu1 = cpu_ticks(child_pid);
        let counts: Vec<usize> = per.iter().map(|(c, _)| *c).collect();
        let worst: Vec<f64> = per.iter().map(|(_, w)| w.as_secs_f64() * 1e3).collect();
        println!(
            "BENCH attachments: {share} in {:.2} s = {:.0} attachments/s ({clients} clients, {}, {} workers); per client: {}..{} attachments, slowest answer {:.1}..{:.1} ms",
            el.as_secs_f64(),
            share as f64 / el.as_secs_f64(),
            match (keep_alive, client_kind()) {
                (true, _) => "kept-alive connections (ureq)",
                (false, Client::Lean) => "a connection per attachment (std::net)",
                (false, Client::Ureq) => "a connection per attachment (ureq)",
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
    match (a, child.as_mut()) {
        (Some(a), _) => a.shutdown(Duration::from_secs(1)),
        (None, Some(c)) => {
            let _ = c.kill();
            let _ = c.wait();
        }
        _ => {}
    }

    if std::env::var("BENCH_ONLY_ATTACH").is_ok() {
        return;
    }
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
    let bin = manager_bin();
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
