//! ADD/DEL latency of the Contrail path against the vRouter agent stand-in answering at once,
//! compared in the same run with Debian's `bridge` + `host-local` and with a floor (the same
//! kernel operations done by `ip -batch`). Root; ignored by default. Run (see
//! docs/BENCHMARKS.md (Contrail path section)):
//!
//! ```text
//! make host
//! CONTRAIL_BENCH_BIN=target/ship/contrail-cni-plugin \
//!   cargo test -p contrail-cni-host --test contrail_bench -- --ignored --nocapture
//! ```
//!
//! "ours" is measured twice: against the agent alone, and with `mode: mesos` registering with
//! the manager (the attachment API stand-in, `AttachStandin`, on the node's loopback) as a
//! Mesos ADD does in production. `CONTRAIL_BENCH_BIN_BEFORE` (another build of the host) adds
//! both rows for that build, interleaved with the others, for before/after in one run.
//!
//! Everything runs inside a test-owned "node" namespace (plugins exec'd with `setns` in
//! `pre_exec`, no `ip netns exec` mount games), so the machine's namespace is untouched.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use contrail_integration::attach_standin::AttachStandin;
use contrail_integration::netns::{TestNetns, require_root};
use contrail_integration::paths::wasm_plugin;
use contrail_integration::vrouter_agent::{AgentStandin, VmiSpec, mac_for};
use serde_json::{Value, json};

fn bin_before() -> Option<PathBuf> {
    std::env::var_os("CONTRAIL_BENCH_BIN_BEFORE").map(PathBuf::from)
}

fn bin() -> PathBuf {
    std::env::var_os("CONTRAIL_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_contrail-cni-plugin")))
}

/// Runs `prog` with `env`, `stdin`, inside the namespace `ns_fd`; returns (ok, stdout, elapsed).
fn run_in(
    ns_fd: RawFd,
    prog: &Path,
    args: &[&str],
    env: &[(&str, String)],
    stdin: &[u8],
) -> (bool, String, Duration) {
    let mut c = Command::new(prog);
    c.args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    // SAFETY: setns is async-signal-safe; the fd outlives the spawn.
    unsafe {
        c.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let t = Instant::now();
    let mut child = c.spawn().expect("spawn");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let el = t.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        eprintln!(
            "{} {args:?} failed: {text} {}",
            prog.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (out.status.success(), text, el)
}

fn cni_env(cmd: &str, cid: &str, netns: Option<&Path>) -> Vec<(&'static str, String)> {
    let mut e = vec![
        ("CNI_COMMAND", cmd.to_owned()),
        ("CNI_CONTAINERID", cid.to_owned()),
        ("CNI_IFNAME", "eth0".to_owned()),
        ("CNI_PATH", "/usr/lib/cni".to_owned()),
    ];
    if let Some(n) = netns {
        e.push(("CNI_NETNS", n.display().to_string()));
    }
    e
}

#[derive(Default)]
struct Series(Vec<Duration>);

impl Series {
    fn push(&mut self, d: Duration) {
        self.0.push(d);
    }
    fn pct(&self, p: f64) -> f64 {
        let mut v: Vec<f64> = self.0.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i]
    }
}

fn cid(i: u32) -> String {
    format!(
        "be0c0000-0000-4000-8000-{:012x}",
        std::process::id() as u64 * 100_000 + i as u64
    )
}

/// Container ids of the runs that register with the manager stand-in (which configures the
/// agent itself) and of the "before" build: apart from [`cid`]'s, so no run finds another's
/// state.
fn cid_of(series: u32, i: u32) -> String {
    format!(
        "be0c{series:04x}-0000-4000-8000-{:012x}",
        std::process::id() as u64 * 100_000 + i as u64
    )
}

#[test]
#[ignore = "benchmark: run explicitly (root)"]
fn contrail_bench() {
    if !require_root("contrail_bench") {
        return;
    }
    let iters: u32 = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let parallel: u32 = std::env::var("BENCH_PARALLEL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let node = TestNetns::new("bn");
    let node_f = File::open(node.path()).unwrap();
    let nfd = node_f.as_raw_fd();
    let agent = std::sync::Arc::new(AgentStandin::start_in_netns(&node.path()));
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("wasm-cache");
    let conf = json!({
        "cniVersion": "0.2.0", "name": "contrail-cni-plugin", "type": "contrail-cni-plugin",
        "contrail": {
            "vrouter-ip": "127.0.0.1", "vrouter-port": agent.port(), "cluster-name": "node1",
            "config-dir": tmp.path().join("ports"), "state-dir": tmp.path().join("state"), "poll-timeout": 1, "poll-retries": 5,
            "log-file": tmp.path().join("cni.log"), "log-level": "debug", "mode": "mesos", "mtu": 1400
        },
        "wasm": {"translator": wasm_plugin("mesos_delegate"), "ipam": wasm_plugin("contrail_ipam"), "cache-dir": cache},
        "args": {"org.apache.mesos": {"network_info": {"name": "contrail-cni-plugin", "labels": {"labels": []}}}}
    })
    .to_string();
    // The same network registering with the manager first (`mesos-ip`/`mesos-port`): the
    // stand-in answers as the manager does once VNC has the objects, and configures the agent.
    let manager = AttachStandin::start_in_netns(&node.path(), agent.clone());
    let conf_mgr = {
        let mut c: Value = serde_json::from_str(&conf).unwrap();
        c["contrail"]["mesos-ip"] = json!("127.0.0.1");
        c["contrail"]["mesos-port"] = json!(manager.port().to_string());
        c["args"]["org.apache.mesos"]["network_info"]["labels"]["labels"] = json!([
            {"key": "networks", "value": "blue-network"},
            {"key": "network-subnets", "value": "10.96.0.0/12"}
        ]);
        c.to_string()
    };
    let reference = json!({
        "cniVersion": "0.4.0", "name": "benchnet", "type": "bridge", "bridge": "cnibench0",
        "isGateway": true, "mtu": 1400,
        "ipam": {"type": "host-local", "subnet": "10.77.0.0/16", "dataDir": tmp.path().join("host-local")}
    })
    .to_string();
    let bridge = Path::new("/usr/lib/cni/bridge");
    let ip = Path::new("/usr/sbin/ip");

    // The agent knows every container up front: "answering at once".
    let n_total = iters + parallel + 1;
    let before_ids = (0..iters).map(|i| cid_of(2, i));
    for (i, id) in (0..n_total).map(cid).chain(before_ids).enumerate() {
        let i = i as u32;
        let vmi = format!("b0b00000-0000-4000-8000-{:012x}", i);
        agent.add_vmi(VmiSpec::mesos(
            &id,
            &vmi,
            0,
            1,
            // 10.40.0.1 upwards in the node's /8.
            &std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 40, 0, 1)) + i)
                .to_string(),
            8,
        ));
    }
    // Warm-up (Wasm artifact cache, bridge creation): not measured.
    {
        let ct = TestNetns::new("bw");
        let id = cid(n_total - 1);
        assert!(
            run_in(
                nfd,
                &bin(),
                &[],
                &cni_env("ADD", &id, Some(&ct.path())),
                conf.as_bytes()
            )
            .0
        );
        assert!(
            run_in(
                nfd,
                &bin(),
                &[],
                &cni_env("DEL", &id, Some(&ct.path())),
                conf.as_bytes()
            )
            .0
        );
        for b in std::iter::once(bin()).chain(bin_before()) {
            let id = cid_of(9, 0);
            for cmd in ["ADD", "DEL"] {
                let (ok, out, _) = run_in(
                    nfd,
                    &b,
                    &[],
                    &cni_env(cmd, &id, Some(&ct.path())),
                    conf_mgr.as_bytes(),
                );
                assert!(ok, "warm-up {cmd} with the manager: {out}");
            }
        }
        assert!(
            run_in(
                nfd,
                bridge,
                &[],
                &cni_env("ADD", "warm", Some(&ct.path())),
                reference.as_bytes()
            )
            .0
        );
        assert!(
            run_in(
                nfd,
                bridge,
                &[],
                &cni_env("DEL", "warm", Some(&ct.path())),
                reference.as_bytes()
            )
            .0
        );
    }

    let (mut mgr_add, mut mgr_del) = (Series::default(), Series::default());
    let (mut before_add, mut before_del) = (Series::default(), Series::default());
    let (mut before_mgr_add, mut before_mgr_del) = (Series::default(), Series::default());
    // One ADD then DEL of `b` with `conf` in `ct`: (ADD, DEL) times.
    let add_del = |b: &Path, conf: &str, id: &str, ct: &TestNetns| {
        let (ok, out, a) = run_in(
            nfd,
            b,
            &[],
            &cni_env("ADD", id, Some(&ct.path())),
            conf.as_bytes(),
        );
        assert!(ok, "ADD {}: {out}", b.display());
        let (ok, out, d) = run_in(
            nfd,
            b,
            &[],
            &cni_env("DEL", id, Some(&ct.path())),
            conf.as_bytes(),
        );
        assert!(ok, "DEL {}: {out}", b.display());
        (a, d)
    };
    let (mut ours_add, mut ours_del) = (Series::default(), Series::default());
    let (mut ref_add, mut ref_del) = (Series::default(), Series::default());
    let (mut floor_add, mut floor_del) = (Series::default(), Series::default());
    // What every row above pays before its program does anything: this harness's fork (of a
    // large, multi-threaded test process, as a Mesos agent's is) and exec, in the namespace.
    let mut spawn_floor = Series::default();
    for i in 0..iters {
        // Interleaved, so all three see the same machine load.
        let ct = TestNetns::new("b");
        let id = cid(i);
        // Ours and the "before" build take turns going first: each DEL leaves a background
        // veth teardown (~25-30 ms) behind, and whichever runs right after it pays for it.
        let mut ours = || {
            let (a, d) = add_del(&bin(), &conf, &id, &ct);
            ours_add.push(a);
            ours_del.push(d);
            let (a, d) = add_del(&bin(), &conf_mgr, &cid_of(1, i), &ct);
            mgr_add.push(a);
            mgr_del.push(d);
        };
        let mut before = || {
            if let Some(b) = bin_before() {
                let (a, d) = add_del(&b, &conf, &cid_of(2, i), &ct);
                before_add.push(a);
                before_del.push(d);
                let (a, d) = add_del(&b, &conf_mgr, &cid_of(3, i), &ct);
                before_mgr_add.push(a);
                before_mgr_del.push(d);
            }
        };
        if i % 2 == 0 {
            ours();
            before();
        } else {
            before();
            ours();
        }

        let rid = format!("ref{i}");
        let (ok, out, d) = run_in(
            nfd,
            bridge,
            &[],
            &cni_env("ADD", &rid, Some(&ct.path())),
            reference.as_bytes(),
        );
        assert!(ok, "{out}");
        ref_add.push(d);
        let (ok, out, d) = run_in(
            nfd,
            bridge,
            &[],
            &cni_env("DEL", &rid, Some(&ct.path())),
            reference.as_bytes(),
        );
        assert!(ok, "{out}");
        ref_del.push(d);

        // Floor: the kernel operations of our ADD by `ip -batch`. The kernel refuses to create
        // the veth peer already up (ENOTCONN), so the container side needs a second `ip`
        // inside the container namespace.
        let ct_f = File::open(ct.path()).unwrap();
        let tap = format!("tapfloor{i:05}");
        let host_batch = format!(
            "link add {tap} mtu 1400 up type veth peer name eth0 mtu 1400 address {} netns {}\n",
            mac_for(&tap),
            ct.name()
        );
        let ct_batch = "link set eth0 up\naddr add 10.99.0.2/8 dev eth0\nroute add default via 10.255.255.254\n";
        let t = Instant::now();
        assert!(run_in(nfd, ip, &["-batch", "-"], &[], host_batch.as_bytes()).0);
        assert!(
            run_in(
                ct_f.as_raw_fd(),
                ip,
                &["-batch", "-"],
                &[],
                ct_batch.as_bytes()
            )
            .0
        );
        floor_add.push(t.elapsed());
        let (ok, _, d) = run_in(
            nfd,
            ip,
            &["-batch", "-"],
            &[],
            format!("link del {tap}\n").as_bytes(),
        );
        assert!(ok);
        floor_del.push(d);
        let (ok, _, d) = run_in(nfd, Path::new("/bin/true"), &[], &[], b"");
        assert!(ok);
        spawn_floor.push(d);
    }

    // 100 ADDs at once, 100 DELs at once.
    let cts: Vec<TestNetns> = (0..parallel).map(|_| TestNetns::new("q")).collect();
    let t = Instant::now();
    let fails = std::thread::scope(|s| {
        let hs: Vec<_> = cts
            .iter()
            .enumerate()
            .map(|(i, ct)| {
                let (conf, id) = (&conf, cid(iters + i as u32));
                s.spawn(move || {
                    run_in(
                        nfd,
                        &bin(),
                        &[],
                        &cni_env("ADD", &id, Some(&ct.path())),
                        conf.as_bytes(),
                    )
                    .0
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| !ok)
            .count()
    });
    let par_add = t.elapsed();
    let t = Instant::now();
    let del_fails = std::thread::scope(|s| {
        let hs: Vec<_> = cts
            .iter()
            .enumerate()
            .map(|(i, ct)| {
                let (conf, id) = (&conf, cid(iters + i as u32));
                s.spawn(move || {
                    run_in(
                        nfd,
                        &bin(),
                        &[],
                        &cni_env("DEL", &id, Some(&ct.path())),
                        conf.as_bytes(),
                    )
                    .0
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| !ok)
            .count()
    });
    let par_del = t.elapsed();
    // Everything gone (the background teardown included) before the namespaces are dropped.
    let t = Instant::now();
    loop {
        let links: Value = serde_json::from_str(&node.ip(&["-j", "link", "show"])).unwrap();
        let taps = links
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["ifname"].as_str().is_some_and(|n| n.starts_with("tap")))
            .count();
        if taps == 0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{taps} taps left");
        std::thread::sleep(Duration::from_millis(20));
    }
    let settle = t.elapsed();

    let row =
        |name: &str, s: &Series| format!("| {name} | {:.1} | {:.1} |", s.pct(0.5), s.pct(0.9));
    println!("\n## Contrail path latency ({iters} iterations, interleaved; ms)\n");
    println!("| what | median | p90 |\n|---|---|---|");
    println!("{}", row("ours ADD", &ours_add));
    println!(
        "{}",
        row("ours ADD, registering with the manager", &mgr_add)
    );
    if !before_add.0.is_empty() {
        println!("{}", row("before ADD", &before_add));
        println!("{}", row("before ADD, with the manager", &before_mgr_add));
    }
    println!("{}", row("reference ADD (bridge + host-local)", &ref_add));
    println!("{}", row("floor ADD (ip -batch, 2 processes)", &floor_add));
    println!("{}", row("ours DEL", &ours_del));
    println!("{}", row("ours DEL, with the manager", &mgr_del));
    if !before_del.0.is_empty() {
        println!("{}", row("before DEL", &before_del));
        println!("{}", row("before DEL, with the manager", &before_mgr_del));
    }
    println!("{}", row("reference DEL", &ref_del));
    println!("{}", row("floor DEL (ip -batch link del)", &floor_del));
    println!(
        "{}",
        row("spawn floor (/bin/true, in every row)", &spawn_floor)
    );
    let ratios = |what: &str, add: &Series, del: &Series| {
        println!(
            "ratios ({what}): ADD ours/reference {:.2}, ours/floor {:.2}; DEL ours/reference {:.2}",
            add.pct(0.5) / ref_add.pct(0.5),
            add.pct(0.5) / floor_add.pct(0.5),
            del.pct(0.5) / ref_del.pct(0.5)
        )
    };
    println!();
    ratios("agent only", &ours_add, &ours_del);
    ratios("with the manager", &mgr_add, &mgr_del);
    if !before_add.0.is_empty() {
        ratios("before, agent only", &before_add, &before_del);
        ratios("before, with the manager", &before_mgr_add, &before_mgr_del);
    }
    println!(
        "parallel: {parallel} ADDs in {:.0} ms ({fails} failed); {parallel} DELs in {:.0} ms ({del_fails} failed); background teardown finished {:.0} ms later",
        par_add.as_secs_f64() * 1e3,
        par_del.as_secs_f64() * 1e3,
        settle.as_secs_f64() * 1e3
    );
    // Where one sequential ADD and DEL spent their time (our log, step timings), agent only
    // and registering with the manager.
    let log = std::fs::read_to_string(tmp.path().join("cni.log")).unwrap_or_default();
    for (what, last) in [
        ("agent only", cid(iters - 1)),
        ("with the manager", cid_of(1, iters - 1)),
    ] {
        println!("\nlog of one ADD and DEL, {what}:");
        let from = log.find(&last).unwrap_or(0);
        let until = log[from..]
            .find("command=\"DEL\"")
            .map_or(log.len(), |i| from + i);
        for l in log[log[..from].rfind('\n').map_or(0, |i| i + 1)..until].lines() {
            println!("log: {l}");
        }
    }
    let mut series = vec![
        ("ours", (0..iters).map(cid).collect::<Vec<_>>()),
        ("ours, manager", (0..iters).map(|i| cid_of(1, i)).collect()),
    ];
    if !before_add.0.is_empty() {
        series.push(("before", (0..iters).map(|i| cid_of(2, i)).collect()));
        series.push((
            "before, manager",
            (0..iters).map(|i| cid_of(3, i)).collect(),
        ));
    }
    step_medians(&log, &series);
    assert_eq!(fails, 0);
    assert_eq!(del_fails, 0);
    let _ = node.ip(&["link", "del", "cnibench0"]);
}

/// Where the sequential ADDs spent their time, from our debug log: the median of each logged
/// step (ms) per series, the series told apart by container id.
fn step_medians(log: &str, series: &[(&str, Vec<String>)]) {
    let mut of: HashMap<&str, usize> = HashMap::new();
    for (k, (_, ids)) in series.iter().enumerate() {
        for id in ids {
            of.insert(id.as_str(), k);
        }
    }
    let field = |l: &str, key: &str| -> Option<String> {
        let at = l.find(key)? + key.len();
        let v = l[at..].trim_start_matches('"');
        Some(v[..v.find(['"', ' ']).unwrap_or(v.len())].to_owned())
    };
    // (step, series) → samples; steps in the order first seen.
    let mut steps: Vec<String> = Vec::new();
    let mut samples: HashMap<(String, usize), Series> = HashMap::new();
    for l in log.lines() {
        // Steps name `container_id=`; the host's closing line of a run names `container=`.
        let Some(k) = field(l, "container_id=")
            .or_else(|| field(l, " container="))
            .and_then(|c| of.get(c.as_str()).copied())
        else {
            continue;
        };
        // The value and how many of it make a millisecond.
        let (step, value, per_ms) = if let Some(step) = field(l, "step=") {
            (step, field(l, " ms="), 1.0)
        } else if l.contains("labels translated") {
            ("(translate labels)".to_owned(), field(l, " us="), 1e3)
        } else if l.contains("manager attach answered") {
            ("(manager POST)".to_owned(), field(l, " us="), 1e3)
        } else if l.contains("ADD done") {
            ("ADD, in process".to_owned(), field(l, " ms="), 1.0)
        } else if l.contains(" done command=\"ADD\"") {
            // From the dispatch of the parsed request to the result; outside it are exec,
            // start-up, logging set-up, the config check and exit.
            ("ADD, dispatched".to_owned(), field(l, " ms="), 1.0)
        } else {
            continue;
        };
        let Some(d) = value
            .and_then(|v| v.parse::<f64>().ok())
            .and_then(|v| Duration::try_from_secs_f64(v / per_ms / 1e3).ok())
        else {
            continue;
        };
        if !steps.contains(&step) {
            steps.push(step.clone());
        }
        samples.entry((step, k)).or_default().push(d);
    }
    println!("\nlogged ADD steps, median ms (sequential runs):\n");
    let names: Vec<&str> = series.iter().map(|(n, _)| *n).collect();
    println!("| step | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    for step in &steps {
        let cells: Vec<String> = (0..series.len())
            .map(|k| {
                samples
                    .get(&(step.clone(), k))
                    .map_or_else(|| "–".to_owned(), |s| format!("{:.3}", s.pct(0.5)))
            })
            .collect();
        println!("| {step} | {} |", cells.join(" | "));
    }
}
