//! Sandbox tests: the hostile guest (`tests/guests/misbehave`, modes documented at its top)
//! loops, allocates without bound, traps, answers garbage; each must end in the right CNI error
//! within the cap and leave nothing behind. Also: corrupt cache entries are rebuilt, and
//! swapping a `.wasm` changes behaviour with no rebuild. Needs `make wasm`.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use contrail_cni_host::cni::config::WasmSettings;
use contrail_cni_host::cni::{CniError, Command};
use contrail_cni_host::contrail::plugin::ipam_config;
use contrail_cni_host::wasm::{InvocationRecord, Plugins, VrouterPort};
use contrail_integration::paths::wasm_plugin;

/// The plugin compiler built beside the host (the tests' own executable is not the host, so
/// they name it; the host finds it beside itself).
const COMPILER: &str = env!("CARGO_BIN_EXE_contrail-cni-plugin-compile");

struct Sandbox {
    plugins_dir: tempfile::TempDir,
    cache_dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let s = Sandbox {
            plugins_dir: tempfile::tempdir().unwrap(),
            cache_dir: tempfile::tempdir().unwrap(),
        };
        s.install("misbehave_plugin", "contrail-ipam.wasm");
        s
    }

    fn install(&self, stem: &str, as_name: &str) {
        // Write to a temp name and rename, as an operator's deploy would (no torn reads).
        let tmp = self.plugins_dir.path().join(".incoming");
        fs::copy(wasm_plugin(stem), &tmp).unwrap();
        fs::rename(&tmp, self.plugins_dir.path().join(as_name)).unwrap();
    }

    fn plugins(&self, memory_limit_mb: u64, timeout_ms: u64) -> Plugins {
        Plugins::new(
            WasmSettings {
                plugin_dir: Some(self.plugins_dir.path().to_owned()),
                cache_dir: Some(self.cache_dir.path().to_owned()),
                memory_limit_mb,
                timeout_ms,
                ..WasmSettings::default()
            },
            "c0ffee",
        )
        .with_compiler(COMPILER)
    }

    fn cache_entries(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.cache_dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    /// Nothing but complete `.cwasm` entries (and their compile locks and source stamps) in
    /// the cache, nothing new in the plugin dir.
    fn assert_clean(&self, expected_entries: usize) {
        let entries: Vec<PathBuf> = self
            .cache_entries()
            .into_iter()
            .filter(|e| e.extension().is_none_or(|x| x != "lock" && x != "src"))
            .collect();
        assert_eq!(entries.len(), expected_entries, "cache: {entries:?}");
        for e in &entries {
            let name = e.file_name().unwrap().to_str().unwrap();
            assert!(
                name.ends_with(".cwasm") && !name.starts_with('.'),
                "stray file in cache: {name}"
            );
        }
        let plugins: Vec<_> = fs::read_dir(self.plugins_dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(plugins, vec!["contrail-ipam.wasm"], "plugin dir changed");
    }
}

fn record(mode: &str) -> InvocationRecord {
    InvocationRecord {
        command: Command::Add,
        container_id: "c0ffee".into(),
        ifname: "eth0".into(),
        netns: Some("/run/netns/x".into()),
        network_name: "n".into(),
        cni_version: "0.2.0".into(),
        config: format!(
            r#"{{"cniVersion":"0.2.0","name":"n","type":"contrail-cni-plugin","misbehave":"{mode}"}}"#
        ),
    }
}

fn port() -> VrouterPort {
    VrouterPort {
        id: "vmi-1".into(),
        ip_address: Some("10.47.255.250".into()),
        plen: Some(12),
        gateway: Some("10.47.255.254".into()),
        dns_server: Some("10.47.255.253".into()),
        mac_address: Some("02:aa:bb:cc:dd:ee".into()),
        ..VrouterPort::default()
    }
}

fn call(
    p: &Plugins,
    mode: &str,
) -> (
    Result<contrail_cni_host::wasm::IpamConfig, CniError>,
    Duration,
) {
    let t = Instant::now();
    let r = p
        .ipam_configure(&record(mode), &port(), true)
        .and_then(|a| ipam_config(a, p.settings()));
    (r, t.elapsed())
}

#[test]
fn ok_mode_works_so_the_failures_below_mean_something() {
    let s = Sandbox::new();
    let (r, _) = call(&s.plugins(16, 1000), "ok");
    let r = r.unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.1.2.3/24");
    assert_eq!(r.ips[0].gateway.unwrap().to_string(), "10.1.2.1");
    s.assert_clean(1);
}

#[test]
fn endless_loop_hits_the_time_limit() {
    let s = Sandbox::new();
    let p = s.plugins(16, 200);
    // Load first so compile time does not count against the cap measured below.
    call(&p, "ok").0.unwrap();
    let (r, took) = call(&p, "loop");
    let e = r.unwrap_err();
    assert_eq!(e.code, 112, "{e:?}");
    assert!(
        e.msg.contains("contrail-ipam.wasm") && e.msg.contains("200 ms"),
        "{e:?}"
    );
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_millis(700),
        "took {took:?}"
    );
    s.assert_clean(1);
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let s = Sandbox::new();
    let (r, took) = call(&s.plugins(16, 5000), "alloc");
    let e = r.unwrap_err();
    assert_eq!(e.code, 113, "{e:?}");
    assert!(
        e.msg.contains("contrail-ipam.wasm") && e.msg.contains("16 MiB"),
        "{e:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "ended by the memory cap, not the clock: {took:?}"
    );
    s.assert_clean(1);
}

#[test]
fn a_trap_is_reported_with_the_plugin_name() {
    let s = Sandbox::new();
    let (r, _) = call(&s.plugins(16, 1000), "trap");
    let e = r.unwrap_err();
    assert_eq!(e.code, 111, "{e:?}");
    assert!(e.msg.contains("contrail-ipam.wasm"), "{e:?}");
    s.assert_clean(1);
}

#[test]
fn garbage_answers_are_malformed() {
    let s = Sandbox::new();
    let (r, _) = call(&s.plugins(16, 1000), "garbage");
    let e = r.unwrap_err();
    assert_eq!(e.code, 114, "{e:?}");
    assert!(e.msg.contains("not-an-ip/99"), "{e:?}");
}

#[test]
fn error_codes_a_plugin_may_not_use_become_299() {
    let s = Sandbox::new();
    let p = s.plugins(16, 1000);
    for mode in ["error0", "code-112", "code-max"] {
        let e = call(&p, mode).0.unwrap_err();
        assert_eq!(e.code, 299, "{mode}: {e:?}");
        assert!(
            e.details.contains("contrail-ipam.wasm")
                && e.details.contains("which is not a plugin's"),
            "{mode}: {e:?}"
        );
    }
    let e = call(&p, "code-112").0.unwrap_err();
    assert!(e.details.contains("returned code 112"), "{e:?}");
    // Its own range passes unchanged, and the plugin is still named.
    let e = call(&p, "code-201").0.unwrap_err();
    assert_eq!(e.code, 201, "{e:?}");
    assert!(
        e.details.contains("from Wasm plugin contrail-ipam.wasm"),
        "{e:?}"
    );
}

#[test]
fn plugin_text_is_escaped() {
    let s = Sandbox::new();
    let e = call(&s.plugins(16, 1000), "forge-log").0.unwrap_err();
    assert_eq!(e.code, 7);
    for text in [&e.msg, &e.details] {
        assert!(
            !text.chars().any(char::is_control),
            "control characters reach the log: {text:?}"
        );
    }
    assert!(e.msg.contains("\\n") && e.msg.contains("\\u{1b}"), "{e:?}");
}

#[test]
fn oversized_and_inconsistent_ipam_answers_are_refused_fast() {
    let s = Sandbox::new();
    let p = s.plugins(64, 5000);
    for (mode, field) in [
        ("many-ips", "ips"),
        ("huge", "dns.search"),
        ("gw-outside", "ips.gateway"),
    ] {
        let (r, took) = call(&p, mode);
        let e = r.unwrap_err();
        assert_eq!(e.code, 114, "{mode}: {e:?}");
        assert!(
            e.msg.contains("contrail-ipam.wasm") && e.msg.contains(field),
            "{mode}: {e:?}"
        );
        assert!(took < Duration::from_secs(5), "{mode} took {took:?}");
    }
}

#[test]
fn a_denied_import_is_one_line_naming_it() {
    let s = Sandbox::new();
    let e = call(&s.plugins(16, 1000), "hashmap").0.unwrap_err();
    assert_eq!(e.code, 111, "{e:?}");
    assert!(
        e.msg.contains("wasi:random/insecure-seed") && e.msg.contains("does not grant"),
        "{e:?}"
    );
    assert!(
        !e.msg.contains('\n') && !e.details.contains("backtrace"),
        "{e:?}"
    );
}

#[test]
fn a_log_flood_is_capped_and_bounded_in_time() {
    let s = Sandbox::new();
    let p = s.plugins(16, 500);
    call(&p, "ok").0.unwrap();
    let (r, took) = call(&p, "log-flood");
    match r {
        Ok(c) => assert_eq!(c.ips[0].address.to_string(), "10.1.2.3/24"),
        Err(e) => assert_eq!(e.code, 112, "{e:?}"),
    }
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn a_plugin_of_the_wrong_world_does_not_load() {
    let s = Sandbox::new();
    // The translator is a label-translator, not an ipam-plugin.
    s.install("mesos_delegate", "contrail-ipam.wasm");
    let (r, _) = call(&s.plugins(16, 1000), "ok");
    let e = r.unwrap_err();
    assert_eq!(e.code, 110, "{e:?}");
    // Not a component at all.
    fs::write(
        s.plugins_dir.path().join("contrail-ipam.wasm"),
        b"\0asm\x01\0\0\0",
    )
    .unwrap();
    let e = call(&s.plugins(16, 1000), "ok").0.unwrap_err();
    assert_eq!(e.code, 110, "{e:?}");
    fs::remove_file(s.plugins_dir.path().join("contrail-ipam.wasm")).unwrap();
    let e = call(&s.plugins(16, 1000), "ok").0.unwrap_err();
    assert_eq!(e.code, 110, "{e:?}");
}

#[test]
fn a_corrupt_cache_entry_is_rebuilt_not_executed() {
    let s = Sandbox::new();
    call(&s.plugins(16, 1000), "ok").0.unwrap();
    let entries: Vec<PathBuf> = s
        .cache_entries()
        .into_iter()
        .filter(|e| e.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1);
    let good = fs::read(&entries[0]).unwrap();

    // Flip one byte of the artifact (the code part, far from the header).
    let mut bad = good.clone();
    let i = bad.len() / 2;
    bad[i] ^= 0xff;
    fs::write(&entries[0], &bad).unwrap();
    call(&s.plugins(16, 1000), "ok").0.unwrap();
    assert_eq!(fs::read(&entries[0]).unwrap(), good, "entry rebuilt");

    // Truncated, and an empty file.
    fs::write(&entries[0], &good[..good.len() / 3]).unwrap();
    call(&s.plugins(16, 1000), "ok").0.unwrap();
    fs::write(&entries[0], b"").unwrap();
    call(&s.plugins(16, 1000), "ok").0.unwrap();
    assert_eq!(fs::read(&entries[0]).unwrap(), good);
    s.assert_clean(1);
}

/// The checksum is what keeps a damaged entry from running: here the entry holds another
/// plugin's complete, valid artifact (the real IPAM's) behind this plugin's trailer with the
/// length fixed up, so only the checksum differs. Run, it would answer the real IPAM's
/// address; it must be rebuilt and answer misbehave's.
#[test]
fn a_valid_artifact_behind_a_stale_checksum_is_not_run() {
    use contrail_cni_host::wasm::cache::TRAILER_LEN;
    let s = Sandbox::new();
    call(&s.plugins(16, 1000), "ok").0.unwrap();
    let entry = s
        .cache_entries()
        .into_iter()
        .find(|e| e.extension().is_some_and(|x| x == "cwasm"))
        .unwrap();
    let good = fs::read(&entry).unwrap();
    let other = Sandbox::new();
    other.install("contrail_ipam", "contrail-ipam.wasm");
    let r = call(&other.plugins(16, 1000), "ok").0.unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.47.255.250/12");
    let other_entry = other
        .cache_entries()
        .into_iter()
        .find(|e| e.extension().is_some_and(|x| x == "cwasm"))
        .unwrap();
    let other_bytes = fs::read(&other_entry).unwrap();
    let other_artifact = &other_bytes[..other_bytes.len() - TRAILER_LEN];
    let mut trailer = good[good.len() - TRAILER_LEN..].to_vec();
    // Trailer layout: magic 8, format 4, source 32, engine 32, length 8, checksum 16.
    trailer[76..84].copy_from_slice(&(other_artifact.len() as u64).to_le_bytes());
    let mut planted = other_artifact.to_vec();
    planted.extend_from_slice(&trailer);
    fs::write(&entry, &planted).unwrap();
    let r = call(&s.plugins(16, 1000), "ok").0.unwrap();
    assert_eq!(
        r.ips[0].address.to_string(),
        "10.1.2.3/24",
        "the planted artifact ran"
    );
    assert_eq!(fs::read(&entry).unwrap(), good, "entry rebuilt");
    s.assert_clean(1);
}

/// An entry that someone other than root or us could have written is not trusted: it is
/// removed and rebuilt (a new file), never loaded.
#[test]
fn an_entry_others_could_write_is_rebuilt_not_loaded() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let s = Sandbox::new();
    call(&s.plugins(16, 1000), "ok").0.unwrap();
    let entry = s
        .cache_entries()
        .into_iter()
        .find(|e| e.extension().is_some_and(|x| x == "cwasm"))
        .unwrap();
    let before = fs::metadata(&entry).unwrap().ino();
    fs::set_permissions(&entry, fs::Permissions::from_mode(0o666)).unwrap();
    // Held open, the old file's inode cannot be handed to the rebuilt entry (a filesystem
    // reuses a freed inode number at once), so a new number proves a new file.
    let _old = fs::File::open(&entry).unwrap();
    call(&s.plugins(16, 1000), "ok").0.unwrap();
    let after = fs::metadata(&entry).unwrap();
    assert_ne!(after.ino(), before, "the open entry was loaded");
    assert_eq!(after.mode() & 0o777, 0o644);
    s.assert_clean(1);
}

/// Without the compiler: what is cached still loads; a miss (a swapped plugin) is a clear
/// load error naming the compiler; a corrupt entry is refused, not run.
#[test]
fn without_the_compiler_cached_plugins_work_and_a_miss_is_a_clear_error() {
    let s = Sandbox::new();
    call(&s.plugins(16, 1000), "ok").0.unwrap();
    let missing = s
        .cache_dir
        .path()
        .join("gone")
        .join("contrail-cni-plugin-compile");
    let without = || {
        Plugins::new(
            WasmSettings {
                memory_limit_mb: 16,
                timeout_ms: 1000,
                ..settings(&s)
            },
            "c0ffee",
        )
        .with_compiler(&missing)
    };
    let r = call(&without(), "ok").0.unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.1.2.3/24");

    let entry = s
        .cache_entries()
        .into_iter()
        .find(|e| e.extension().is_some_and(|x| x == "cwasm"))
        .unwrap();
    let good = fs::read(&entry).unwrap();
    let mut bad = good.clone();
    let i = bad.len() / 2;
    bad[i] ^= 0x01;
    fs::write(&entry, &bad).unwrap();
    let e = call(&without(), "ok").0.unwrap_err();
    assert_eq!(e.code, 110, "{e:?}");
    assert!(!entry.exists(), "the corrupt entry is removed");

    s.install("contrail_ipam", "contrail-ipam.wasm");
    let e = call(&without(), "ok").0.unwrap_err();
    assert_eq!(e.code, 110, "{e:?}");
    assert!(
        e.msg.contains("contrail-ipam.wasm")
            && e.msg.contains("not compiled for this host")
            && e.msg.contains("contrail-cni-plugin-compile")
            && e.msg.contains("not installed"),
        "{e:?}"
    );
    // With the compiler back, the same ADD works.
    let r = call(&s.plugins(16, 1000), "ok").0.unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.47.255.250/12");
}

/// The compiler binary on its own: the artifact on stdout for a component; exit 1 with one
/// line for anything else; exit 3 for a host of another release; exit 2 on usage errors.
#[test]
fn the_compiler_binary_speaks_its_protocol() {
    use contrail_cni_host::wasm::engine;
    use std::io::Write;
    let run = |args: &[&str], input: &[u8]| {
        let mut c = std::process::Command::new(COMPILER)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = c.stdin.take().unwrap();
        let input = input.to_vec();
        let w = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = c.wait_with_output().unwrap();
        w.join().unwrap();
        (
            out.status.code(),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let fp = engine::fingerprint_hex();
    let wasm = fs::read(wasm_plugin("contrail_ipam")).unwrap();
    let (code, artifact, err) = run(&["--engine", &fp], &wasm);
    assert_eq!(code, Some(0), "{err}");
    let e = engine::engine().unwrap();
    // SAFETY: the artifact was just produced by the compiler for this engine.
    unsafe { wasmtime::component::Component::deserialize(e, &artifact) }.unwrap();

    let (code, out, err) = run(&["--engine", &fp], b"hello");
    assert_eq!((code, out.is_empty()), (Some(1), true), "{err}");
    assert!(
        err.contains("not a valid WebAssembly component") && err.lines().count() == 1,
        "{err}"
    );
    let (code, _, err) = run(&["--engine", &fp], &artifact);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("precompiled artifact"), "{err}");
    let (code, out, err) = run(&["--engine", &"0".repeat(64)], &wasm);
    assert_eq!((code, out.is_empty()), (Some(3), true), "{err}");
    assert!(err.contains("same release"), "{err}");
    let (code, _, err) = run(&[], &wasm);
    assert_eq!(code, Some(2), "{err}");
}

/// The host finds its compiler beside its own executable: a host installed alone reports
/// the missing compiler on a miss, and still loads what was precompiled.
#[test]
fn a_host_installed_without_its_compiler() {
    let host = contrail_integration::cni_host!();
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let alone = d.path().join("contrail-cni-plugin");
    // A hard link (same file system as the build): no copy to be "text file busy" while
    // another test thread forks.
    fs::hard_link(&host, &alone).unwrap();
    let cache = d.path().join("cache");
    let tr = wasm_plugin("mesos_delegate");
    let run = |bin: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let compile = [
        "plugin",
        "compile",
        tr.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    let (code, _, err) = run(&alone, &compile);
    assert_eq!(code, Some(1), "{err}");
    let beside = d.path().join("contrail-cni-plugin-compile");
    assert!(
        err.contains(beside.to_str().unwrap()) && err.contains("not installed"),
        "{err}"
    );
    let (code, out, err) = run(&host, &compile);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("compiled:"), "{out}");
    let (code, out, err) = run(&alone, &compile);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("already compiled"), "{out}");
}

#[test]
fn swapping_the_wasm_changes_behaviour_without_a_rebuild() {
    let s = Sandbox::new();
    let (r, _) = call(&s.plugins(16, 1000), "ok");
    assert_eq!(
        r.unwrap().ips[0].address.to_string(),
        "10.1.2.3/24",
        "misbehave's answer"
    );

    s.install("contrail_ipam", "contrail-ipam.wasm");
    let (r, _) = call(&s.plugins(16, 1000), "ok");
    let r = r.unwrap();
    assert_eq!(
        r.ips[0].address.to_string(),
        "10.47.255.250/12",
        "the real IPAM's answer: {r:?}"
    );
    // The new build's entry replaced the old build's (same plugin file: evicted).
    s.assert_clean(1);
}

#[test]
fn an_unwritable_cache_dir_still_works_in_memory() {
    let s = Sandbox::new();
    let file = s.cache_dir.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let p = Plugins::new(
        WasmSettings {
            plugin_dir: Some(s.plugins_dir.path().to_owned()),
            cache_dir: Some(file.join("sub")),
            ..WasmSettings::default()
        },
        "c0ffee",
    )
    .with_compiler(COMPILER);
    p.ipam_configure(&record("ok"), &port(), true).unwrap();
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

/// The CLI validates plugins before deployment.
#[test]
fn plugin_check_and_compile_commands() {
    let bin = &contrail_integration::cni_host!();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let tr = wasm_plugin("mesos_delegate");
    let (code, out, _) = run(&["plugin", "check", tr.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("delegate-translator") && out.contains("contrail-translator"),
        "{out}"
    );
    // The hostile guest imports wasi:random (std's HashMap): listed, and the gate fails
    // unless the operator accepts it explicitly.
    let bad = wasm_plugin("misbehave_plugin");
    let (code, out, err) = run(&["plugin", "check", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("wasi:random/insecure-seed") && out.contains("NOT GRANTED"),
        "{out}"
    );
    assert!(err.contains("--allow-ungranted-imports"), "{err}");
    let (code, _, err) = run(&[
        "plugin",
        "check",
        bad.to_str().unwrap(),
        "--allow-ungranted-imports",
    ]);
    assert_eq!(code, Some(0), "{err}");
    // A plugin others can write: a warning (the ADD would refuse it), not a failure.
    let od = tempfile::tempdir().unwrap();
    let open = od.path().join("open.wasm");
    fs::copy(wasm_plugin("contrail_ipam"), &open).unwrap();
    fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let (code, out, err) = run(&["plugin", "check", open.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("warning:") && out.contains("allow-insecure-permissions"),
        "{out}"
    );
    // Only the world asked for.
    let (code, _, err) = run(&[
        "plugin",
        "check",
        tr.to_str().unwrap(),
        "--world",
        "ipam-plugin",
    ]);
    assert_eq!(code, Some(1), "{err}");
    let (code, out, _) = run(&[
        "plugin",
        "check",
        wasm_plugin("contrail_ipam").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0));
    assert!(out.contains("ipam-plugin"), "{out}");

    let d = tempfile::tempdir().unwrap();
    let junk = d.path().join("junk.wasm");
    fs::write(&junk, b"hello").unwrap();
    let (code, _, err) = run(&["plugin", "check", junk.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("junk.wasm"), "{err}");

    let cache = d.path().join("cache");
    let (code, out, err) = run(&[
        "plugin",
        "compile",
        tr.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("compiled:"), "{out}");
    let (code, out, _) = run(&[
        "plugin",
        "compile",
        tr.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0));
    assert!(out.contains("already compiled"), "{out}");
    let entries = fs::read_dir(&cache)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "cwasm")
        })
        .count();
    assert_eq!(entries, 1);
    let (code, out, _) = run(&["version"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("1.1.0") && out.contains("contrail:cni-plugin@0.1.0"),
        "{out}"
    );
}

fn settings(s: &Sandbox) -> WasmSettings {
    WasmSettings {
        plugin_dir: Some(s.plugins_dir.path().to_owned()),
        cache_dir: Some(s.cache_dir.path().to_owned()),
        ..WasmSettings::default()
    }
}

/// Ten concurrent first ADDs compile a plugin once: the others wait on the lock beside the
/// cache entry and load what the first stored.
#[test]
fn concurrent_first_loads_compile_once() {
    use contrail_cni_host::wasm::{cache, engine};
    let s = Sandbox::new();
    let engine = engine::engine().unwrap();
    let wasm = s.plugins_dir.path().join("contrail-ipam.wasm");
    let barrier = std::sync::Barrier::new(8);
    let compiler = contrail_cni_host::wasm::compiler::Compiler::at(COMPILER);
    let origins: Vec<cache::Origin> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                sc.spawn(|| {
                    barrier.wait();
                    let opts = cache::Options {
                        cache_dir: Some(s.cache_dir.path()),
                        compiler: Some(&compiler),
                        ..Default::default()
                    };
                    cache::load(engine, &wasm, &opts).unwrap().origin
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let compiled = origins
        .iter()
        .filter(|o| matches!(o, cache::Origin::Compiled { .. }))
        .count();
    assert_eq!(compiled, 1, "{origins:?}");
    s.assert_clean(1);
}

/// Once a plugin file has been unchanged for a while, its source digest comes from the
/// stamp in the cache dir instead of reading and hashing the file on every load; a rewrite in
/// place (same inode, same size, one byte changed) right after is still noticed, because the
/// write changed the file's ctime.
#[test]
fn a_settled_plugin_is_found_by_its_stamp_and_a_rewrite_in_place_is_noticed() {
    use contrail_cni_host::wasm::{cache, engine, stamp};
    use std::os::unix::fs::FileExt;
    let s = Sandbox::new();
    let engine = engine::engine().unwrap();
    let wasm = s.plugins_dir.path().join("contrail-ipam.wasm");
    let compiler = contrail_cni_host::wasm::compiler::Compiler::at(COMPILER);
    let opts = cache::Options {
        cache_dir: Some(s.cache_dir.path()),
        compiler: Some(&compiler),
        ..Default::default()
    };
    let load = || cache::load(engine, &wasm, &opts).unwrap();
    let stamps = || {
        s.cache_entries()
            .into_iter()
            .filter(|e| e.extension().is_some_and(|x| x == "src"))
            .count()
    };
    assert!(matches!(
        load().origin,
        cache::Origin::Compiled { stored: true }
    ));
    assert_eq!(load().origin, cache::Origin::Cache);
    assert_eq!(
        stamps(),
        0,
        "a file changed moments ago is hashed, not remembered"
    );

    std::thread::sleep(stamp::SETTLED + Duration::from_millis(200));
    let first = load();
    assert_eq!(first.origin, cache::Origin::Cache);
    assert_eq!(stamps(), 1, "a settled file's digest is remembered");
    let again = load();
    assert_eq!(again.origin, cache::Origin::Cache);
    assert_eq!(again.entry, first.entry);

    // One hex digit of a mangled symbol's hash in the name section: a valid plugin of the same
    // size with other bytes, written over the same inode.
    let bytes = fs::read(&wasm).unwrap();
    let at = bytes
        .windows(20)
        .position(|w| {
            w.starts_with(b"17h") && w[19] == b'E' && w[3..19].iter().all(u8::is_ascii_hexdigit)
        })
        .expect("a mangled name in the name section")
        + 3;
    let digit = if bytes[at] == b'0' { b'1' } else { b'0' };
    let ino = fs::metadata(&wasm).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&wasm)
        .unwrap()
        .write_all_at(&[digit], at as u64)
        .unwrap();
    let after = fs::metadata(&wasm).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((after.ino(), after.len()), (ino.ino(), ino.len()));

    let rewritten = load();
    assert!(
        matches!(rewritten.origin, cache::Origin::Compiled { stored: true }),
        "{:?}",
        rewritten.origin
    );
    assert_ne!(
        rewritten.entry, first.entry,
        "the new bytes have their own entry"
    );
    assert_eq!(load().origin, cache::Origin::Cache);
    call(&s.plugins(16, 1000), "ok").0.unwrap();
    s.assert_clean(1);
}

/// A compile that takes longer than `wasm.compile-timeout-ms` fails the load (here with a
/// 1 ms budget, which no real compile meets) and stores nothing.
#[test]
fn compilation_has_a_time_limit() {
    let s = Sandbox::new();
    let p = Plugins::new(
        WasmSettings {
            compile_timeout_ms: 1,
            ..settings(&s)
        },
        "c0ffee",
    )
    .with_compiler(COMPILER);
    let e = call(&p, "ok").0.unwrap_err();
    assert_eq!(e.code, 110, "{e:?}");
    assert!(e.msg.contains("compile-timeout-ms"), "{e:?}");
    s.assert_clean(0);
}

/// A plugin file (or dir) that a non-root user could have written is refused unless the
/// operator says otherwise.
#[test]
fn insecure_plugin_permissions_are_refused_unless_allowed() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::new();
    let file = s.plugins_dir.path().join("contrail-ipam.wasm");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
    let e = call(&s.plugins(16, 1000), "ok").0.unwrap_err();
    assert_eq!(e.code, 110, "{e:?}");
    assert!(e.msg.contains("writable by group or others"), "{e:?}");
    let allowed = Plugins::new(
        WasmSettings {
            allow_insecure_permissions: true,
            ..settings(&s)
        },
        "c0ffee",
    )
    .with_compiler(COMPILER);
    call(&allowed, "ok").0.unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(s.plugins_dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let e = call(&s.plugins(16, 1000), "ok").0.unwrap_err();
    assert!(e.msg.contains("its directory"), "{e:?}");
    fs::set_permissions(s.plugins_dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    call(&s.plugins(16, 1000), "ok").0.unwrap();
}

/// An IPAM plugin built against 0.1.0 loads, and its answers get the same checks.
#[test]
fn a_v010_ipam_plugin_loads_and_is_checked() {
    let s = Sandbox::new();
    s.install("v010_ipam", "contrail-ipam.wasm");
    let r = call(&s.plugins(16, 1000), "ok").0.unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.47.255.250/12");
    assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
    let e = call(&s.plugins(16, 1000), "gw-outside").0.unwrap_err();
    assert_eq!(e.code, 114, "{e:?}");
    assert!(e.msg.contains("ips.gateway"), "{e:?}");
}

/// The Contrail translator world of the hostile guest: its answer goes through the api's
/// `validate`.
#[test]
fn contrail_translator_answers_are_validated() {
    use contrail_cni_host::contrail::plugin::contrail_request;
    let s = Sandbox::new();
    s.install("misbehave_plugin", "mesos-delegate.wasm");
    let p = s.plugins(16, 1000);
    let r = p
        .translate_contrail(&record("ok"), &[])
        .and_then(|a| contrail_request(a, p.settings()))
        .unwrap();
    assert_eq!(r.network, Some(vec!["blue".to_owned()]));
    let e = p
        .translate_contrail(&record("bad-fq"), &[])
        .and_then(|a| contrail_request(a, p.settings()))
        .unwrap_err();
    assert_eq!(e.code, 114, "{e:?}");
    assert!(
        e.msg.contains("mesos-delegate.wasm") && e.msg.contains("network"),
        "{e:?}"
    );
    // A 0.1.0 translator serves the Contrail world too.
    s.install("v010_translator", "mesos-delegate.wasm");
    let p = s.plugins(16, 1000);
    let r = p
        .translate_contrail(&record("ok"), &[])
        .and_then(|a| contrail_request(a, p.settings()))
        .unwrap();
    assert_eq!(r.network, Some(vec!["blue".to_owned()]));
}

/// The `isolation` label through the stock translator into the attachment request.
#[test]
fn the_isolation_label_reaches_the_attach_request() {
    use contrail_cni_host::cni::config::Label;
    use contrail_cni_host::contrail::plugin::contrail_request;
    let s = Sandbox::new();
    s.install("mesos_delegate", "mesos-delegate.wasm");
    let p = s.plugins(16, 1000);
    let labels = |v: &str| {
        vec![
            Label {
                key: "networks".into(),
                value: "blue".into(),
            },
            Label {
                key: "isolation".into(),
                value: v.into(),
            },
        ]
    };
    let r = p
        .translate_contrail(&record("ok"), &labels("app"))
        .and_then(|a| contrail_request(a, p.settings()))
        .unwrap();
    assert_eq!(r.isolation, Some(contrail_mesos_api::Isolation::App));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["isolation"], "app");
    // Parsed in the plugin (code 7 names the label), validated in api (114 names the field).
    let e = p
        .translate_contrail(&record("ok"), &labels("galaxy"))
        .unwrap_err();
    assert_eq!(e.code, 7, "{e:?}");
    assert!(e.msg.contains("label isolation"), "{e:?}");
    let e = p
        .translate_contrail(&record("ok"), &labels("user-defined"))
        .and_then(|a| contrail_request(a, p.settings()))
        .unwrap_err();
    assert_eq!(e.code, 114, "{e:?}");
    assert!(e.msg.contains("isolation"), "{e:?}");
}

/// The `allow-from` label passes the stock translator untouched (in `other`) and is checked by
/// the host before any manager call: a bad one is error 114 naming it.
#[test]
fn the_allow_from_label_reaches_the_attach_request_and_is_checked() {
    use contrail_cni_host::cni::config::Label;
    use contrail_cni_host::contrail::plugin::contrail_request;
    let s = Sandbox::new();
    s.install("mesos_delegate", "mesos-delegate.wasm");
    let p = s.plugins(16, 1000);
    let labels = |v: &str| {
        vec![Label {
            key: "allow-from".into(),
            value: v.into(),
        }]
    };
    let r = p
        .translate_contrail(&record("ok"), &labels("group:/team-b tcp:8080"))
        .and_then(|a| contrail_request(a, p.settings()))
        .unwrap();
    let allow = r.allow_from().unwrap();
    assert_eq!(allow.len(), 1);
    assert_eq!(allow[0].to_string(), "group:/team-b tcp:8080");
    let e = p
        .translate_contrail(&record("ok"), &labels("group:/team-b tcp:99999"))
        .and_then(|a| contrail_request(a, p.settings()))
        .unwrap_err();
    assert_eq!(e.code, 114, "{e:?}");
    assert!(e.msg.contains("allow-from"), "{e:?}");
}

/// The out-of-tree template builds against a copy of the shipped WIT: the copy must not drift.
#[test]
fn the_templates_wit_is_the_shipped_wit() {
    let root = contrail_integration::paths::workspace_root();
    let mut names: Vec<_> = fs::read_dir(root.join("wit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wit"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    for p in names {
        let copy = root
            .join("plugins/template/wit")
            .join(p.file_name().unwrap());
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            fs::read_to_string(&copy).unwrap_or_default(),
            "{} differs from {}",
            copy.display(),
            p.display()
        );
    }
}

/// `plugin run`: a dry run of one world with the template's sample, checks applied.
#[test]
fn plugin_run_answers_a_sample() {
    let bin = &contrail_integration::cni_host!();
    let root = contrail_integration::paths::workspace_root();
    let d = tempfile::tempdir().unwrap();
    let sample = root.join("plugins/template/sample.json");
    let run = |file: &std::path::Path, world: &str, input: &std::path::Path| {
        let out = std::process::Command::new(bin)
            .args(["plugin", "run"])
            .arg(file)
            .args(["--world", world, "--input"])
            .arg(input)
            .env("TMPDIR", d.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&wasm_plugin("contrail_ipam"), "ipam-plugin", &sample);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ips"][0]["address"], "10.47.255.250/12");
    assert_eq!(v["routes"][0]["dst"], "0.0.0.0/0");
    // A bad answer is reported as the ADD would report it.
    let bad = d.path().join("bad.json");
    fs::write(
        &bad,
        r#"{"config": {"name": "n", "type": "contrail-cni-plugin", "misbehave": "gw-outside"},
            "port": {"id": "p", "ip-address": "10.1.2.3", "plen": 24}}"#,
    )
    .unwrap();
    let (code, _, err) = run(&wasm_plugin("misbehave_plugin"), "ipam-plugin", &bad);
    assert_eq!(code, Some(1));
    assert!(err.contains("114") && err.contains("ips.gateway"), "{err}");
    // The delegate world prints the delegate's config.
    let deleg = d.path().join("delegate.json");
    fs::write(
        &deleg,
        r#"{"config": {"cniVersion": "0.3.1", "name": "net1", "type": "mesos",
              "delegate": {"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.5.0.0/16"}}},
            "labels": [{"key": "CNI_ARGS", "value": "IP=10.5.0.9"}]}"#,
    )
    .unwrap();
    let (code, out, err) = run(
        &wasm_plugin("mesos_delegate"),
        "delegate-translator",
        &deleg,
    );
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["type"], "bridge");
    assert_eq!(v["name"], "net1");
    assert_eq!(v["args"]["cni"]["ips"], serde_json::json!(["10.5.0.9"]));
}

/// A plugin built against a WIT whose record differs (same package version) is refused with
/// the mismatch named: by `plugin check` and by the ADD (a load error, not a trap).
#[test]
fn a_changed_record_fails_the_type_check() {
    let s = Sandbox::new();
    s.install("changed_record", "contrail-ipam.wasm");
    let e = call(&s.plugins(16, 1000), "ok").0.unwrap_err();
    assert_eq!(e.code, 110, "{e:?}");
    assert!(
        e.msg.contains("does not implement its world") && e.msg.contains("field ips"),
        "{e:?}"
    );
    let out = std::process::Command::new(contrail_integration::cni_host!())
        .args(["plugin", "check"])
        .arg(wasm_plugin("changed_record"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("type mismatch"), "{err}");
}

/// An import from our own package that the host does not have is listed and fails the gate;
/// at run time it traps with a one-line error naming it.
#[test]
fn an_unknown_import_from_our_own_package_is_listed_and_denied() {
    let s = Sandbox::new();
    s.install("evil_import", "contrail-ipam.wasm");
    let r = call(&s.plugins(16, 1000), "ok").0.unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.1.2.3/24");
    let e = call(&s.plugins(16, 1000), "steal").0.unwrap_err();
    assert_eq!(e.code, 111, "{e:?}");
    assert!(
        e.msg.contains("contrail:cni-plugin/evil@0.2.0#steal"),
        "{e:?}"
    );
    let out = std::process::Command::new(contrail_integration::cni_host!())
        .args(["plugin", "check"])
        .arg(wasm_plugin("evil_import"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("import contrail:cni-plugin/evil@0.2.0: NOT GRANTED"),
        "{stdout}"
    );
}

/// A component whose one core module declares `memories` linear memories of `pages` 64 KiB
/// pages each (hand-assembled: no text-format crate in the build).
fn component_with_memories(memories: u8, pages: u16) -> Vec<u8> {
    fn leb(mut v: u32, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }
    let mut mems = vec![memories];
    for _ in 0..memories {
        mems.push(0x00); // limits: min only
        leb(pages.into(), &mut mems);
    }
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.push(0x05); // memory section
    leb(mems.len() as u32, &mut module);
    module.extend(mems);
    let mut c = b"\0asm\x0d\0\x01\0".to_vec();
    c.push(0x01); // core module section
    leb(module.len() as u32, &mut c);
    c.extend(module);
    c.extend([0x02, 0x04, 0x01, 0x00, 0x00, 0x00]); // core instance: instantiate module 0
    c
}

/// One memory cap for the whole instance: two 20 MiB memories do not fit in 32 MiB although
/// each would, and more than the allowed number of memories is refused.
#[test]
fn the_memory_cap_covers_every_memory_of_an_instance() {
    use contrail_cni_host::wasm::{engine, runtime};
    let engine = engine::engine().unwrap();
    let limits = runtime::Limits {
        memory_limit_mb: 32,
        timeout_ms: 1000,
    };
    let instantiate = |bytes: &[u8]| {
        let c = wasmtime::component::Component::new(engine, bytes).unwrap();
        let mut store = runtime::new_store(engine, "multi.wasm", "c0ffee", limits).unwrap();
        let linker = wasmtime::component::Linker::<runtime::State>::new(engine);
        let r = linker.instantiate(&mut store, &c).map(drop);
        r.map_err(|e| runtime::classify(e, store.data(), limits))
    };
    // One memory of 20 MiB fits: the test component itself is sound.
    instantiate(&component_with_memories(1, 320)).unwrap();
    let e = instantiate(&component_with_memories(2, 320)).unwrap_err();
    assert_eq!(e.code, 113, "{e:?}");
    assert!(
        e.msg.contains("multi.wasm") && e.msg.contains("32 MiB"),
        "{e:?}"
    );
    assert!(e.details.contains("all memories and tables"), "{e:?}");
    // Sixteen one-page memories: over the count bound, whatever their size.
    let e = instantiate(&component_with_memories(16, 1)).unwrap_err();
    assert_eq!(e.code, 113, "{e:?}");
    assert!(
        e.msg.contains("multi.wasm") && e.details.contains("memory count"),
        "{e:?}"
    );
}
