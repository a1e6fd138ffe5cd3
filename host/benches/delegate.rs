//! Timings of the delegate path, medians over repeated runs in one session:
//!
//! 1. the Wasm step per ADD, in process: load the translator from the artifact cache,
//!    instantiate, call `translate-delegate` (a fresh `Plugins` each time, as each CNI process
//!    has); plus `Engine::new` and the one-time compile (by the sibling compiler process),
//!    reported separately, and the integrity checks a load could use, side by side;
//! 2. the exec floor: the host answering `CNI_COMMAND=VERSION` against `/bin/true`
//!    (and against `CONTRAIL_BENCH_HOST_BEFORE`, another build of the host, when given),
//!    interleaved, plus the binaries' sizes;
//! 3. whole-process ADD and DEL (exec → exit) of the installed `mesos` delegating to
//!    `bridge` + `host-local`, against `bridge` called directly with the equivalent config (and
//!    the `CONTRAIL_BENCH_HOST_BEFORE` build's `mesos`, when given), in the same namespaces,
//!    interleaved with the order rotating; and cold first ADDs after a plugin swap (the host
//!    runs its compiler). Needs root; skipped otherwise.
//!
//! The host measured is `CONTRAIL_BENCH_HOST` (e.g. `target/ship/contrail-cni-plugin` as
//! `make host` builds it: static musl, no compiler linked), else the one cargo built for this bench (with
//! the `compiler` feature, so Cranelift linked but unused); its compiler is the
//! `contrail-cni-plugin-compile` beside it.
//!
//! It reports; it never fails the build (errors are printed and the section skipped).

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use contrail_cni_host::cni::Command as CniCommand;
use contrail_cni_host::cni::config::{Label, WasmSettings};
use contrail_cni_host::wasm::{self, InvocationRecord, Plugins};
use contrail_integration::netns::{TestNetns, is_root};
use contrail_integration::paths::{REFERENCE_CNI_DIR, wasm_dir};
use serde_json::json;

fn stats(name: &str, mut v: Vec<Duration>) -> f64 {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let med = ms(v[v.len() / 2]);
    println!(
        "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
        v.len(),
        med,
        ms(v[0]),
        ms(v[v.len() * 9 / 10]),
        ms(*v.last().unwrap())
    );
    med
}

fn header() {
    println!("| what | runs | median ms | min ms | p90 ms | max ms |");
    println!("|---|---|---|---|---|---|");
}

fn compiler_beside(host: &Path) -> PathBuf {
    host.with_file_name("contrail-cni-plugin-compile")
}

fn wasm_step(translator: &Path, compiler: &Path) {
    let cache = tempfile::tempdir().unwrap();
    let plugin_dir = translator.parent().unwrap().to_owned();
    let settings = WasmSettings {
        plugin_dir: Some(plugin_dir),
        translator: Some(translator.to_owned()),
        cache_dir: Some(cache.path().to_owned()),
        ..WasmSettings::default()
    };
    let config = json!({"cniVersion": "0.2.0", "name": "net1", "type": "mesos",
        "delegate": {"type": "bridge", "bridge": "mbr0", "ipam": {"type": "host-local", "subnet": "10.99.0.0/24"}},
        "args": {"org.apache.mesos": {"network_info": {"name": "net1",
            "labels": {"labels": [{"key": "CNI_ARGS", "value": "IP=10.99.0.42"}]}}}}});
    let record = InvocationRecord {
        command: CniCommand::Add,
        container_id: "5baff64c-d028-47ba-864e-a5ee679fc069".into(),
        ifname: "eth0".into(),
        netns: Some("/run/netns/x".into()),
        network_name: "net1".into(),
        cni_version: "0.2.0".into(),
        config: config.to_string(),
    };
    let labels = vec![Label {
        key: "CNI_ARGS".into(),
        value: "IP=10.99.0.42".into(),
    }];
    let delegate = config["delegate"].clone();
    let call = || {
        let p = Plugins::new(settings.clone(), "5baff64c-d028-47ba-864e-a5ee679fc069")
            .with_compiler(compiler);
        let t = Instant::now();
        let out = p.translate_delegate(&record, &labels, &delegate, false);
        (t.elapsed(), out)
    };

    println!("\n### Wasm step (in process, release build)\n");
    println!(
        "translator: `{}` ({} bytes)\n",
        translator.display(),
        fs::metadata(translator).unwrap().len()
    );
    header();
    let mut engine_new = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let e = wasmtime::Engine::new(&wasm::engine::engine_config()).unwrap();
        engine_new.push(t.elapsed());
        drop(e);
    }
    stats("`Engine::new` (once per process)", engine_new);
    let (first, out) = call();
    if let Err(e) = out {
        println!("translate-delegate failed: {e:?}");
        return;
    }
    stats(
        "first ADD after a new .wasm: compile (sibling process) + verify + store + instantiate + call",
        vec![first],
    );
    let runs: Vec<Duration> = (0..300).map(|_| call().0).collect();
    stats(
        "Wasm step per ADD: cache load (verify + deserialize_file) + instantiate + call",
        runs,
    );
    let engine = wasm::engine::engine().unwrap();
    let compiler = wasm::compiler::Compiler::at(compiler);
    let loads: Vec<Duration> = (0..300)
        .map(|_| {
            let t = Instant::now();
            let l = wasm::cache::load(
                engine,
                translator,
                &wasm::cache::Options {
                    cache_dir: Some(cache.path()),
                    compiler: Some(&compiler),
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(l.origin, wasm::cache::Origin::Cache);
            t.elapsed()
        })
        .collect();
    stats(
        "of which: cache load alone (open + source stamp + map + XXH3-128 + deserialize_file)",
        loads,
    );

    // Breakdown of the cache load, step by step.
    let entry = wasm::cache::load(
        engine,
        translator,
        &wasm::cache::Options {
            cache_dir: Some(cache.path()),
            compiler: Some(&compiler),
            ..Default::default()
        },
    )
    .unwrap()
    .entry
    .unwrap();
    let time = |f: &dyn Fn()| -> Vec<Duration> {
        (0..300)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect()
    };
    let wasm_bytes = fs::read(translator).unwrap();
    let entry_bytes = fs::read(&entry).unwrap();
    let artifact = &entry_bytes[..entry_bytes.len() - wasm::cache::TRAILER_LEN];
    println!("\nartifact: {} bytes\n", entry_bytes.len());
    header();
    stats(
        "read the .wasm",
        time(&|| drop(fs::read(translator).unwrap())),
    );
    stats(
        "blake3 of the .wasm (the cache key; read from the source stamp once the file is settled)",
        time(&|| {
            let _ = blake3::hash(&wasm_bytes);
        }),
    );
    stats(
        "read the cache entry",
        time(&|| drop(fs::read(&entry).unwrap())),
    );
    stats(
        "blake3 of the artifact (in memory; the check until format 2)",
        time(&|| {
            let _ = blake3::hash(artifact);
        }),
    );
    stats(
        "XXH3-128 of the artifact (in memory; the check now)",
        time(&|| {
            let _ = wasm::cache::checksum(artifact);
        }),
    );
    // As a load does it: over a fresh read-only mapping of the entry (page faults included).
    let mapped_with = |flags: libc::c_int, f: &dyn Fn(&[u8])| {
        let file = fs::File::open(&entry).unwrap();
        let len = file.metadata().unwrap().len() as usize;
        // SAFETY: a fresh private read-only mapping of a file nobody writes, unmapped below.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | flags,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            f(std::slice::from_raw_parts(
                p as *const u8,
                len - wasm::cache::TRAILER_LEN,
            ));
            libc::munmap(p, len);
        }
    };
    let mapped = |f: &dyn Fn(&[u8])| mapped_with(0, f);
    stats(
        "open + map + blake3 of the artifact (the load's check until format 2)",
        time(&|| {
            mapped(&|a| {
                std::hint::black_box(blake3::hash(a));
            });
        }),
    );
    stats(
        "open + map + XXH3-128 of the artifact (the load's check now)",
        time(&|| {
            mapped(&|a| {
                std::hint::black_box(wasm::cache::checksum(a));
            });
        }),
    );
    stats(
        "open + map with MAP_POPULATE + XXH3-128 (not kept)",
        time(&|| {
            mapped_with(libc::MAP_POPULATE, &|a| {
                std::hint::black_box(wasm::cache::checksum(a));
            });
        }),
    );
    stats(
        "open + map, no check (what verify-once-at-write would leave)",
        time(&|| {
            mapped(&|a| {
                std::hint::black_box(a.len());
            });
        }),
    );
    stats(
        "`Component::deserialize_file` of the entry (mapped, what a load does)",
        // SAFETY: as below; the trailer after the ELF image is ignored by wasmtime.
        time(&|| {
            drop(
                unsafe { wasmtime::component::Component::deserialize_file(engine, &entry) }
                    .unwrap(),
            )
        }),
    );
    stats(
        "`Component::deserialize` (copying; the previous load)",
        // SAFETY: the artifact was produced by this engine (verified entry).
        time(&|| {
            drop(unsafe { wasmtime::component::Component::deserialize(engine, artifact) }.unwrap())
        }),
    );
}

/// Runs `program` inside the netns `node` (setns in the child: no extra process).
fn run_in(
    node: &Path,
    program: &Path,
    env: &[(String, String)],
    stdin: &[u8],
) -> (Duration, bool, String) {
    let ns = fs::File::open(node).unwrap();
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe setns between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let t = Instant::now();
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let took = t.elapsed();
    (
        took,
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The cost of exec'ing the host at all: `CNI_COMMAND=VERSION` (parse the environment, print
/// the version JSON, exit), against `/bin/true`, interleaved.
fn exec_floor(host_bin: &Path, before: Option<&Path>) {
    println!("\n### Exec floor: `CNI_COMMAND=VERSION` against `/bin/true` (exec → exit)\n");
    let size = |p: &Path| fs::metadata(p).map_or(0, |m| m.len());
    println!("| binary | bytes |\n|---|---|");
    println!("| `{}` | {} |", host_bin.display(), size(host_bin));
    let compiler = compiler_beside(host_bin);
    println!("| `{}` | {} |", compiler.display(), size(&compiler));
    if let Some(b) = before {
        println!("| `{}` (before) | {} |", b.display(), size(b));
    }
    println!();
    let run = |program: &Path, env: &[(&str, &str)]| {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let t = Instant::now();
        let st = cmd.status().unwrap();
        let took = t.elapsed();
        assert!(st.success(), "{} failed", program.display());
        took
    };
    let version = [("CNI_COMMAND", "VERSION")];
    let (mut ours, mut theirs, mut truth) = (vec![], vec![], vec![]);
    for _ in 0..10 {
        run(host_bin, &version);
    }
    for _ in 0..300 {
        ours.push(run(host_bin, &version));
        if let Some(b) = before {
            theirs.push(run(b, &version));
        }
        truth.push(run(Path::new("/bin/true"), &[]));
    }
    header();
    let o = stats("host, `CNI_COMMAND=VERSION`", ours);
    let b = before.map(|_| {
        stats(
            "host before (`CONTRAIL_BENCH_HOST_BEFORE`), VERSION",
            theirs,
        )
    });
    let t = stats("`/bin/true`", truth);
    println!("\nhost over /bin/true: {:.3} ms (median difference)", o - t);
    if let Some(b) = b {
        println!("before over /bin/true: {:.3} ms", b - t);
    }
}

fn whole_process(host_bin: &Path, before: Option<&Path>, translator: &Path) {
    println!("\n### Whole process, ADD and DEL (exec → exit), bridge + host-local\n");
    if !is_root() {
        println!("SKIPPED: needs root (network namespaces)");
        return;
    }
    let node = TestNetns::new("bn");
    let install = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let dir = install.path();
    // `before/` holds the other build as `mesos` (its own compiler and plugin copy beside it);
    // it finds `bridge` and `host-local` through the same `CNI_PATH`.
    let mut hosts = vec![(host_bin, dir.to_owned())];
    if let Some(b) = before {
        hosts.push((b, dir.join("before")));
    }
    for (bin, at) in &hosts {
        fs::create_dir_all(at).unwrap();
        fs::copy(bin, at.join("contrail-cni-plugin")).unwrap();
        fs::copy(compiler_beside(bin), at.join("contrail-cni-plugin-compile")).unwrap();
        symlink("contrail-cni-plugin", at.join("mesos")).unwrap();
        fs::create_dir(at.join("contrail-cni-wasm")).unwrap();
        fs::copy(translator, at.join("contrail-cni-wasm/mesos-delegate.wasm")).unwrap();
    }
    for p in ["bridge", "host-local"] {
        symlink(Path::new(REFERENCE_CNI_DIR).join(p), dir.join(p)).unwrap();
    }
    // A node's plugins were installed long before its ADDs: once a plugin file has been
    // unchanged for `SETTLED`, loads take its digest from the cache's source stamp instead of
    // hashing it. Wait that long so the runs below measure that steady state.
    std::thread::sleep(wasm::stamp::SETTLED);
    let delegate = json!({"type": "bridge", "bridge": "mbr0", "isGateway": true,
        "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "dataDir": data.path()}});
    let mesos_conf = json!({
        "args": {"org.apache.mesos": {"network_info": {"ip_addresses": [{"protocol": "IPv4"}],
            "labels": {"labels": [{"key": "CNI_ARGS", "value": "IP=10.99.0.42"}]}, "name": "net1"}}},
        "cniVersion": "0.2.0", "delegate": delegate, "name": "net1", "type": "mesos",
        "wasm": {"cache-dir": cache.path()}});
    // What the reference plugin gets when called directly: the same thing the translator
    // produces (the address via args.cni.ips).
    let mut direct_conf = delegate.clone();
    direct_conf["name"] = json!("net1");
    direct_conf["cniVersion"] = json!("0.2.0");
    direct_conf["args"] = json!({"cni": {"ips": ["10.99.0.42"]}});
    let container = TestNetns::new("bc");
    let env = |cmd: &str| -> Vec<(String, String)> {
        vec![
            ("CNI_COMMAND".into(), cmd.into()),
            (
                "CNI_CONTAINERID".into(),
                "5baff64c-d028-47ba-864e-a5ee679fc069".into(),
            ),
            ("CNI_PATH".into(), dir.display().to_string()),
            ("CNI_IFNAME".into(), "eth0".into()),
            ("CNI_NETNS".into(), container.path().display().to_string()),
            ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        ]
    };
    let mesos = dir.join("mesos");
    let bridge = dir.join("bridge");
    let mesos_in = serde_json::to_vec(&mesos_conf).unwrap();
    let direct_in = serde_json::to_vec(&direct_conf).unwrap();
    // What runs: ours via `mesos`, `bridge` directly, and the other build via its `mesos`.
    let mut programs = vec![(mesos.clone(), &mesos_in), (bridge.clone(), &direct_in)];
    if before.is_some() {
        programs.push((dir.join("before/mesos"), &mesos_in));
    }
    // Warm-up: compiles the translator once per build (that cost is reported above) and
    // creates the bridge, so every measured ADD does the same work.
    for (p, i) in &programs {
        let (_, ok, out) = run_in(&node.path(), p, &env("ADD"), i);
        assert!(ok, "warm-up ADD failed: {out}");
        let (_, ok, out) = run_in(&node.path(), p, &env("DEL"), i);
        assert!(ok, "warm-up DEL failed: {out}");
    }
    let mut adds: Vec<Vec<Duration>> = vec![vec![]; programs.len()];
    let mut dels: Vec<Vec<Duration>> = vec![vec![]; programs.len()];
    for round in 0..rounds() {
        // Each takes its turn first: whatever a DEL leaves running weighs on the next ADD.
        for k in 0..programs.len() {
            let j = (round + k) % programs.len();
            let (p, i) = &programs[j];
            let (t, ok, out) = run_in(&node.path(), p, &env("ADD"), i);
            assert!(ok, "ADD failed: {out}");
            adds[j].push(t);
            let (t, ok, out) = run_in(&node.path(), p, &env("DEL"), i);
            assert!(ok, "DEL failed: {out}");
            dels[j].push(t);
        }
    }
    header();
    let (add_runs, del_runs) = (adds.clone(), dels.clone());
    let mut adds = adds.into_iter();
    let mut dels = dels.into_iter();
    let ma = stats("ADD via `mesos` (delegate path)", adds.next().unwrap());
    let da = stats("ADD of `bridge` directly", adds.next().unwrap());
    let md = stats("DEL via `mesos` (delegate path)", dels.next().unwrap());
    let dd = stats("DEL of `bridge` directly", dels.next().unwrap());
    let b = adds.next().map(|a| {
        (
            stats("ADD via the before build's `mesos`", a),
            stats("DEL via the before build's `mesos`", dels.next().unwrap()),
        )
    });
    println!(
        "\nDelegate-path overhead (difference of medians): ADD {:.3} ms, DEL {:.3} ms",
        ma - da,
        md - dd
    );
    // The same, as the median of each round's difference (the two ran back to back, so a
    // slow minute of the machine weighs on both).
    let paired = |a: &[Duration], b: &[Duration]| {
        let mut d: Vec<f64> = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x.as_secs_f64() - y.as_secs_f64()) * 1e3)
            .collect();
        d.sort_by(f64::total_cmp);
        d[d.len() / 2]
    };
    println!(
        "Delegate-path overhead (median of the rounds' differences): ADD {:.3} ms, DEL {:.3} ms",
        paired(&add_runs[0], &add_runs[1]),
        paired(&del_runs[0], &del_runs[1])
    );
    if add_runs.len() > 2 {
        println!(
            "before build's (median of the rounds' differences): ADD {:.3} ms, DEL {:.3} ms",
            paired(&add_runs[2], &add_runs[1]),
            paired(&del_runs[2], &del_runs[1])
        );
    }
    if let Some((ba, bd)) = b {
        println!(
            "before build's overhead: ADD {:.3} ms, DEL {:.3} ms",
            ba - da,
            bd - dd
        );
    }
    // `true` as the floor of a process exec on this machine.
    let truth: Vec<Duration> = (0..40)
        .map(|_| run_in(&node.path(), Path::new("/bin/true"), &[], b"").0)
        .collect();
    header();
    stats("`/bin/true` (exec floor)", truth);

    // A plugin swap: the cache holds nothing for the new bytes, so the ADD runs the compiler
    // (a sibling process), verifies and stores the artifact, then goes on as usual. Emptying
    // the cache dir before each ADD stands for the swap.
    let mut cold = vec![];
    for _ in 0..5 {
        for e in fs::read_dir(cache.path()).unwrap() {
            let _ = fs::remove_file(e.unwrap().path());
        }
        let (t, ok, out) = run_in(&node.path(), &mesos, &env("ADD"), &mesos_in);
        assert!(ok, "cold ADD failed: {out}");
        cold.push(t);
        let (_, ok, out) = run_in(&node.path(), &mesos, &env("DEL"), &mesos_in);
        assert!(ok, "DEL failed: {out}");
    }
    header();
    stats(
        "cold ADD via `mesos` after a plugin swap (compiler process + verify + store)",
        cold,
    );
}

/// Rounds of the whole-process comparison (`CONTRAIL_BENCH_ROUNDS`, default 40): each round
/// runs every program once, taking turns going first.
fn rounds() -> usize {
    std::env::var("CONTRAIL_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(40)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let host_bin = std::env::var_os("CONTRAIL_BENCH_HOST")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_contrail-cni-plugin")));
    let before = std::env::var_os("CONTRAIL_BENCH_HOST_BEFORE").map(PathBuf::from);
    let translator = wasm_dir().join("mesos_delegate.wasm");
    if !translator.is_file() {
        println!(
            "SKIPPED: {} missing (run `make wasm`)",
            translator.display()
        );
        return;
    }
    println!("## Delegate path timings\n");
    println!(
        "host binary: `{}`; machine: {} cores",
        host_bin.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    wasm_step(&translator, &compiler_beside(&host_bin));
    exec_floor(&host_bin, before.as_deref());
    whole_process(&host_bin, before.as_deref(), &translator);
}
