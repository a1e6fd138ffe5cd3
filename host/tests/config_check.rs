//! `contrail-cni-plugin config check` run as an operator runs it (the real binary, installed
//! beside its Wasm plugins as `make install` lays it out), and the same findings in the log of
//! an ADD. No root needed: the ADD fails before it touches any namespace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use contrail_integration::paths::{fixtures_dir, wasm_plugin};
use serde_json::{Value, json};

/// `<dir>/contrail-cni-plugin` (a symlink to the built binary) with `<dir>/contrail-cni-wasm/`
/// holding the plugins, where the host looks for them by default.
fn installed() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = static_tempdir();
        let w = d.path().join("contrail-cni-wasm");
        std::fs::create_dir(&w).unwrap();
        std::fs::copy(wasm_plugin("mesos_delegate"), w.join("mesos-delegate.wasm")).unwrap();
        std::fs::copy(wasm_plugin("contrail_ipam"), w.join("contrail-ipam.wasm")).unwrap();
        std::os::unix::fs::symlink(
            contrail_integration::cni_host!(),
            d.path().join("contrail-cni-plugin"),
        )
        .unwrap();
        d
    });
    dir.path().join("contrail-cni-plugin")
}

struct Checked {
    code: i32,
    stdout: String,
    /// (severity, key) of each problem line.
    problems: Vec<(String, String)>,
}

impl Checked {
    fn keys(&self, severity: &str) -> Vec<&str> {
        self.problems
            .iter()
            .filter(|(s, _)| s == severity)
            .map(|(_, k)| k.as_str())
            .collect()
    }
}

fn parse(out: Output) -> Checked {
    let stdout = String::from_utf8(out.stdout).unwrap();
    let problems = stdout
        .lines()
        .filter_map(|l| {
            let (sev, rest) = l.split_once(": ")?;
            if sev != "error" && sev != "warning" {
                return None;
            }
            let (key, _) = rest.split_once(": ")?;
            Some((sev.to_owned(), key.to_owned()))
        })
        .collect();
    Checked {
        code: out.status.code().unwrap(),
        stdout,
        problems,
    }
}

fn check_path(path: &Path) -> Checked {
    parse(
        Command::new(installed())
            .args(["config", "check"])
            .arg(path)
            .output()
            .unwrap(),
    )
}

/// Checks `conf` through stdin (`config check -`).
fn check_value(conf: &Value) -> Checked {
    let mut child = Command::new(installed())
        .args(["config", "check", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    parse(child.wait_with_output().unwrap())
}

fn log_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(static_tempdir).path()
}

/// A directory for a `static`: statics are never dropped, so it is made under cargo's
/// per-target scratch dir (`CARGO_TARGET_TMPDIR`, cleaned with `target/`), not in `/tmp`.
fn static_tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// A production Mesos config that passes: 0.2.0 results, a manager, the agent's address.
fn good() -> Value {
    json!({
        "cniVersion": "0.2.0",
        "name": "contrail-cni-plugin",
        "type": "contrail-cni-plugin",
        "contrail": {
            "vrouter-ip": "10.0.0.5", "vrouter-port": 9091, "cluster-name": "agent-1",
            "mode": "mesos", "managers": ["http://127.0.0.1:6991"],
            "poll-timeout": 3, "poll-retries": 20,
            "log-file": log_dir().join("cni.log"), "log-level": "info"
        }
    })
}

fn with(mut v: Value, path: &[&str], new: Value) -> Value {
    let (last, parents) = path.split_last().unwrap();
    let mut at = &mut v;
    for p in parents {
        at = at.get_mut(*p).unwrap();
    }
    at[*last] = new;
    v
}

#[test]
fn contrails_own_sample_gets_one_finding_per_problem() {
    let sample = fixtures_dir().join("examples/cni/contrail-specs-mesos-cni-sample.conf");
    let c = check_path(&sample);
    // The log directory is created by the first ADD; whether it exists depends on the machine.
    let log_dir_missing = !Path::new("/var/log/contrail/cni").is_dir();
    let mut warnings = vec!["contrail.cluster-name", "contrail.managers", "cniVersion"];
    if log_dir_missing {
        warnings.push("contrail.log-file");
    }
    let mut got = c.keys("warning");
    got.sort();
    warnings.sort();
    assert_eq!(got, warnings, "{}", c.stdout);
    assert_eq!(c.keys("error"), ["contrail.vrouter-ip"], "{}", c.stdout);
    assert_eq!(c.code, 1, "{}", c.stdout);
    assert!(c.stdout.contains("Mesos labels") || c.stdout.contains("labels"));
    assert!(c.stdout.contains("\"ip4\""), "{}", c.stdout);

    // The placeholders filled in: runs, with the two silent failures still reported.
    let text = std::fs::read_to_string(&sample)
        .unwrap()
        .replace("<slave-ip>", "10.0.0.5")
        .replace("<slave-hostname>", "agent-1");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["contrail"]["log-file"] = json!(log_dir().join("opencontrail.log"));
    let c = check_value(&v);
    let mut got = c.keys("warning");
    got.sort();
    assert_eq!(got, ["cniVersion", "contrail.managers"], "{}", c.stdout);
    assert_eq!(c.code, 0, "{}", c.stdout);
}

#[test]
fn a_good_config_passes() {
    for conf in [
        good(),
        // Nested mode, with its parent (whether it exists on the node is ADD's check).
        with(
            with(good(), &["contrail", "vif-type"], json!("macvlan")),
            &["contrail", "parent-interface"],
            json!("eth1"),
        ),
        json!({"cniVersion": "0.2.0", "name": "mesos-bridge", "type": "mesos",
               "delegate": {"type": "bridge", "bridge": "br0",
                            "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}}}),
    ] {
        let c = check_value(&conf);
        assert_eq!(c.code, 0, "{conf}: {}", c.stdout);
        assert!(c.problems.is_empty(), "{conf}: {}", c.stdout);
        assert!(c.stdout.ends_with("<stdin>: ok\n"), "{}", c.stdout);
    }
}

#[test]
fn each_error_exits_1_naming_the_key() {
    let delegate = json!({"cniVersion": "0.2.0", "name": "d", "type": "mesos",
                          "delegate": {"type": "bridge"}});
    let cases = [
        (
            with(good(), &["contrail", "vif-type"], json!("macvlan")),
            "contrail.parent-interface",
        ),
        (
            with(good(), &["contrail", "vif-type"], json!("ipvlan")),
            "contrail.vif-type",
        ),
        (
            with(good(), &["contrail", "mesos-port"], json!("x")),
            "contrail.mesos-port",
        ),
        (
            with(good(), &["contrail", "poll-retries"], json!(1.5)),
            "contrail.poll-retries",
        ),
        (
            with(good(), &["contrail", "poll-timeout"], json!(0)),
            "contrail.poll-timeout",
        ),
        (
            with(good(), &["contrail", "vrouter-ip"], json!("<vrouter>")),
            "contrail.vrouter-ip",
        ),
        (
            with(good(), &["contrail", "managers"], json!(["ftp://m:1"])),
            "contrail.managers",
        ),
        (
            with(
                good(),
                &["contrail", "mesos-token-file"],
                json!("/nonexistent/token"),
            ),
            "contrail.mesos-token-file",
        ),
        (
            with(good(), &["contrail", "nft-path"], json!("sbin/nft")),
            "contrail.nft-path",
        ),
        (
            with(good(), &["contrail", "nft-timeout"], json!(0)),
            "contrail.nft-timeout",
        ),
        (with(good(), &["name"], json!("bad/name")), "name"),
        (with(good(), &["cniVersion"], json!("9.9.9")), "cniVersion"),
        (with(good(), &["type"], json!("bridge")), "type"),
        (
            with(good(), &["wasm"], json!({"memory-limit-mb": 0})),
            "wasm.memory-limit-mb",
        ),
        (
            with(good(), &["wasm"], json!({"timeout-ms": "fast"})),
            "wasm.timeout-ms",
        ),
        (
            with(good(), &["wasm"], json!({"ipam": "/nonexistent/ipam.wasm"})),
            "wasm.ipam",
        ),
        (
            with(good(), &["wasm"], json!({"plugin-dir": "/nonexistent"})),
            "wasm.plugin-dir",
        ),
        (
            with(delegate.clone(), &["delegate"], json!({"bridge": "br0"})),
            "delegate.type",
        ),
        (
            with(delegate.clone(), &["delegate"], json!(null)),
            "delegate",
        ),
        (
            with(delegate.clone(), &["delegate", "type"], json!("mesos")),
            "delegate.type",
        ),
        (
            with(delegate, &["cniVersion"], json!("1.1.0")),
            "cniVersion",
        ),
    ];
    for (conf, key) in cases {
        let c = check_value(&conf);
        assert_eq!(c.code, 1, "{key}: {}", c.stdout);
        assert!(c.keys("error").contains(&key), "{key}: {}", c.stdout);
    }
    let c = parse(
        Command::new(installed())
            .args(["config", "check", "-"])
            .stdin(Stdio::from(std::fs::File::open("/dev/null").unwrap()))
            .output()
            .unwrap(),
    );
    assert_eq!(
        (c.code, c.keys("error")),
        (1, vec!["config"]),
        "{}",
        c.stdout
    );
}

#[test]
fn warnings_exit_0_naming_the_key() {
    let cases = [
        (
            with(good(), &["contrail", "poll-timeout"], json!(100)),
            "contrail.poll-timeout",
        ),
        (
            with(good(), &["contrail", "poll-timeout"], json!(0.01)),
            "contrail.poll-timeout",
        ),
        (
            with(good(), &["contrail", "poll-retries"], json!(0)),
            "contrail.poll-retries",
        ),
        (
            with(good(), &["contrail", "frobnicate"], json!(1)),
            "contrail.frobnicate",
        ),
        (
            with(good(), &["contrail", "mode"], json!("k8s")),
            "contrail.mode",
        ),
        (
            with(good(), &["contrail", "managers"], json!([])),
            "contrail.managers",
        ),
        (
            with(
                good(),
                &["contrail", "managers"],
                json!(["http://10.0.0.1:6991"]),
            ),
            "contrail.mesos-token",
        ),
        (
            with(good(), &["contrail", "vrouter-ip"], json!(null)),
            "contrail.vrouter-ip",
        ),
        (
            with(good(), &["contrail", "vrouter-port"], json!(null)),
            "contrail.vrouter-port",
        ),
        (with(good(), &["cniVersion"], json!("1.0.0")), "cniVersion"),
        (
            with(good(), &["contrail", "log-level"], json!("4")),
            "contrail.log-level",
        ),
        // Under a regular file: the directory can never be created.
        (
            with(
                good(),
                &["contrail", "log-file"],
                json!("/proc/version/cni/x.log"),
            ),
            "contrail.log-file",
        ),
        (
            with(good(), &["log-file"], json!("relative.log")),
            "log-file",
        ),
        (
            with(good(), &["wasm"], json!({"frobnicate": 1})),
            "wasm.frobnicate",
        ),
        (
            with(
                good(),
                &["wasm"],
                json!({"allow-insecure-permissions": true}),
            ),
            "wasm.allow-insecure-permissions",
        ),
    ];
    for (conf, key) in cases {
        let c = check_value(&conf);
        assert_eq!(c.code, 0, "{key}: {}", c.stdout);
        assert_eq!(c.keys("warning"), [key], "{}", c.stdout);
    }
}

#[test]
fn a_missing_log_directory_is_reported() {
    let dir = log_dir().join("not-yet/cni");
    let c = check_value(&with(
        good(),
        &["contrail", "log-file"],
        json!(dir.join("o.log")),
    ));
    assert_eq!(c.keys("warning"), ["contrail.log-file"], "{}", c.stdout);
    assert!(c.stdout.contains("does not exist"), "{}", c.stdout);
}

#[test]
fn conflists_and_unreadable_files() {
    let list = json!({"cniVersion": "0.4.0", "name": "k8s-pod-network", "plugins": [
        {"type": "contrail-k8s-cni", "contrail": {"mode": "k8s", "vif-type": "macvlan",
                                                 "vrouter-ip": "10.0.0.5", "vrouter-port": 9091}},
        {"type": "portmap", "capabilities": {"portMappings": true}}
    ]});
    let c = check_value(&list);
    assert_eq!(c.code, 1, "{}", c.stdout);
    assert_eq!(
        c.keys("error"),
        ["plugins[0].contrail.parent-interface"],
        "{}",
        c.stdout
    );
    assert_eq!(c.keys("warning"), ["plugins"], "{}", c.stdout);
    let c = check_path(
        &fixtures_dir().join("examples/cni/plugins-integration-chained-ptp-bandwidth.conflist"),
    );
    assert_eq!(c.code, 0, "{}", c.stdout);

    let out = Command::new(installed())
        .args(["config", "check", "/nonexistent/net.conf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/net.conf"));
}

/// The same findings in the configured log on an ADD, once each, and never on stdout (which
/// carries only the CNI error here: the netns path is not a namespace, so the ADD fails before
/// it creates anything).
#[test]
fn add_logs_the_findings_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cni.log");
    let conf = json!({
        "cniVersion": "0.3.1",
        "name": "contrail-cni-plugin",
        "type": "contrail-cni-plugin",
        "contrail": {"vrouter-ip": "127.0.0.1", "vrouter-port": 9091,
                     "poll-timeout": 0.1, "poll-retries": 2,
                     "config-dir": dir.path().join("ports"),
                     "state-dir": dir.path().join("state"),
                     "log-file": log, "log-level": "warn"},
        // Everything the ADD may write stays in the test's directory.
        "wasm": {"cache-dir": dir.path().join("wasm-cache")},
        "args": {"org.apache.mesos": {"network_info": {"name": "contrail-cni-plugin",
            "labels": {"labels": [{"key": "networks", "value": "blue"}]}}}}
    });
    let not_a_netns = dir.path().join("netns");
    std::fs::write(&not_a_netns, "").unwrap();
    let mut child = Command::new(installed())
        .env_clear()
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "cfgcheck")
        .env("CNI_NETNS", &not_a_netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stdout: Value = serde_json::from_slice(&out.stdout).expect("stdout is the CNI error");
    assert!(stdout.get("code").is_some(), "{stdout}");
    let text = std::fs::read_to_string(&log).unwrap();
    for key in ["cniVersion", "contrail.managers", "contrail.poll-timeout"] {
        let n = text
            .lines()
            .filter(|l| l.contains(&format!("warning: {key}: ")))
            .count();
        assert_eq!(n, 1, "{key} in\n{text}");
    }
    assert!(!String::from_utf8_lossy(&out.stdout).contains("warning:"));
}

/// The README's example config (the first `json` block of "Installing on an agent node")
/// passes, its token file pointed at a real one.
#[test]
fn the_readme_example_passes() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let section = &readme[readme.find("## Installing on an agent node").unwrap()..];
    let start = section.find("```json\n").unwrap() + "```json\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let mut v: Value = serde_json::from_str(block).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("mesos-token");
    std::fs::write(&token, "s3cret\n").unwrap();
    v["contrail"]["mesos-token-file"] = json!(token);
    let c = check_value(&v);
    assert_eq!(c.keys("error"), Vec::<&str>::new(), "{}", c.stdout);
    // The log directory is created by the first ADD; whether it exists depends on the machine.
    for w in c.keys("warning") {
        assert_eq!(w, "contrail.log-file", "{}", c.stdout);
    }
    assert_eq!(c.code, 0, "{}", c.stdout);
}

/// What the checks add to an ADD (they run once per ADD): the median of 2,000 runs over a
/// Mesos ADD's config with the plugins installed. Reports, never fails (`--ignored`).
#[test]
#[ignore]
fn cost_per_add() {
    use contrail_cni_host::cni::NetConf;
    use contrail_cni_host::config_check::{Runtime, check};
    let dir = installed().parent().unwrap().join("contrail-cni-wasm");
    let mut v = good();
    v["wasm"] = json!({"plugin-dir": dir});
    v["args"] = json!({"org.apache.mesos": {"network_info": {"name": "contrail-cni-plugin",
        "labels": {"labels": [{"key": "networks", "value": "blue"}]}}}});
    let conf = NetConf::from_value(v).unwrap();
    assert!(check(&conf, Runtime::Mesos).is_empty());
    let mut us: Vec<f64> = (0..2000)
        .map(|_| {
            let t = std::time::Instant::now();
            std::hint::black_box(check(&conf, Runtime::Mesos));
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    us.sort_by(f64::total_cmp);
    println!(
        "config checks per ADD: median {:.1} us, p90 {:.1} us, max {:.1} us",
        us[us.len() / 2],
        us[us.len() * 9 / 10],
        us[us.len() - 1]
    );
}
