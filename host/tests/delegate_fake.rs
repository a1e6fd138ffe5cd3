//! The delegate path end to end through the real binary, with a scripted fake delegate (the
//! role of libcni's `noop` test plugin), so it runs without root: what the delegate receives
//! (translated config, same environment, CNI_COMMAND), result conversion, error relay,
//! rollback DEL, CHECK/STATUS/GC forwarding, and stdout hygiene with logging on.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use contrail_integration::paths::wasm_plugin;
use serde_json::{Value, json};

const FAKE: &str = r#"#!/bin/sh
d=$(dirname "$0")
cat > "$d/stdin.$CNI_COMMAND"
env > "$d/env.$CNI_COMMAND"
echo "fake delegate $CNI_COMMAND on stderr" >&2
[ -f "$d/reply.$CNI_COMMAND" ] && cat "$d/reply.$CNI_COMMAND"
[ -f "$d/exit.$CNI_COMMAND" ] && exit "$(cat "$d/exit.$CNI_COMMAND")"
exit 0
"#;

const IFNAME: &str = "cnifake0";

struct Setup {
    dir: tempfile::TempDir,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Setup {
    fn new() -> Self {
        let s = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        let fake = s.bin().join("fake");
        fs::create_dir_all(s.bin()).unwrap();
        fs::write(&fake, FAKE).unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all(s.path("wasm")).unwrap();
        fs::copy(
            wasm_plugin("mesos_delegate"),
            s.path("wasm/mesos-delegate.wasm"),
        )
        .unwrap();
        s
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn bin(&self) -> PathBuf {
        self.path("bin")
    }

    fn reply(&self, command: &str, stdout: &str, exit: i32) {
        fs::write(self.bin().join(format!("reply.{command}")), stdout).unwrap();
        fs::write(self.bin().join(format!("exit.{command}")), exit.to_string()).unwrap();
    }

    /// What the fake delegate got on stdin for `command`, if it got a config. The host starts
    /// the delegate before the translation is done and kills it, config-less, when the
    /// translation or a check refuses the call: the script may then have created an empty
    /// `stdin.*` before it died, which counts as not run.
    fn seen(&self, command: &str) -> Option<Value> {
        fs::read(self.bin().join(format!("stdin.{command}")))
            .ok()
            .filter(|b| !b.is_empty())
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    fn seen_env(&self, command: &str) -> String {
        fs::read_to_string(self.bin().join(format!("env.{command}"))).unwrap()
    }

    fn conf(&self, version: &str, labels: Value) -> Value {
        json!({
            "cniVersion": version,
            "name": "net1",
            "type": "mesos",
            "delegate": {"type": "fake", "ipam": {"type": "host-local", "subnet": "10.5.0.0/16"}},
            "args": {"org.apache.mesos": {"network_info": {"name": "net1", "labels": labels}}},
            "wasm": {"plugin-dir": self.path("wasm"), "cache-dir": self.path("cache")},
            "log-file": self.path("log/cni.log"),
            "log-level": "debug",
        })
    }

    fn run(&self, command: &str, extra_env: &[(&str, &str)], conf: &Value) -> Out {
        self.run_bin(&contrail_integration::cni_host!(), command, extra_env, conf)
    }

    fn run_bin(
        &self,
        host: &std::path::Path,
        command: &str,
        extra_env: &[(&str, &str)],
        conf: &Value,
    ) -> Out {
        let mut cmd = Command::new(host);
        cmd.env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", "5baff64c-d028-47ba-864e-a5ee679fc069")
            // The host checks CNI_NETNS is a network namespace without CNI_IFNAME before the
            // delegate runs: our own namespace (no root needed), a name no machine has.
            .env("CNI_IFNAME", IFNAME)
            .env("CNI_NETNS", "/proc/self/ns/net")
            .env("CNI_PATH", format!("/nonexistent:{}", self.bin().display()))
            .env("PATH", "/usr/bin:/bin")
            .envs(extra_env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&serde_json::to_vec(conf).unwrap())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn label(v: &str) -> Value {
    json!({"labels": [{"key": "CNI_ARGS", "value": v}]})
}

const RESULT_100: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"0a:00:00:00:00:01","sandbox":"/x"}],"ips":[{"interface":0,"address":"10.5.0.9/16","gateway":"10.5.0.1"},{"interface":0,"address":"fd00::9/64"}],"routes":[{"dst":"0.0.0.0/0"},{"dst":"::/0","gw":"fd00::1"}],"dns":{"nameservers":["10.5.0.2"]}}"#;

#[test]
fn add_translates_passes_the_environment_and_converts_the_result() {
    let s = Setup::new();
    s.reply("ADD", RESULT_100, 0);
    let out = s.run(
        "ADD",
        &[("EXTRA_AGENT_VAR", "kept")],
        &s.conf("0.2.0", label("IP=10.5.0.9")),
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        "{\"cniVersion\":\"0.2.0\",\"ip4\":{\"ip\":\"10.5.0.9/16\",\"gateway\":\"10.5.0.1\",\"routes\":[{\"dst\":\"0.0.0.0/0\"}]},\"ip6\":{\"ip\":\"fd00::9/64\",\"routes\":[{\"dst\":\"::/0\",\"gw\":\"fd00::1\"}]},\"dns\":{\"nameservers\":[\"10.5.0.2\"]}}\n"
    );
    // The delegate got the translated config: label IP in args.cni.ips, name/cniVersion carried.
    let got = s.seen("ADD").unwrap();
    assert_eq!(got["type"], "fake");
    assert_eq!(got["name"], "net1");
    assert_eq!(got["cniVersion"], "0.2.0");
    assert_eq!(got["args"]["cni"]["ips"], json!(["10.5.0.9"]));
    assert_eq!(got["ipam"]["subnet"], "10.5.0.0/16");
    // Same environment, CNI_COMMAND set.
    let env = s.seen_env("ADD");
    for want in [
        "CNI_COMMAND=ADD",
        "CNI_CONTAINERID=5baff64c-d028-47ba-864e-a5ee679fc069",
        &format!("CNI_IFNAME={IFNAME}"),
        "CNI_NETNS=/proc/self/ns/net",
        "EXTRA_AGENT_VAR=kept",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing in {env}");
    }
    // Its stderr is relayed; our logs went to the log file, never stdout.
    assert!(
        out.stderr.contains("fake delegate ADD on stderr"),
        "{}",
        out.stderr
    );
    let log = fs::read_to_string(s.path("log/cni.log")).unwrap();
    assert!(log.contains("done") && log.contains("ADD"), "{log}");
    assert!(s.seen("DEL").is_none(), "no rollback on success");

    // The same result in 1.1.0 and 0.4.0.
    let out = s.run("ADD", &[], &s.conf("1.1.0", label("IP=10.5.0.9")));
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["cniVersion"], "1.1.0");
    assert!(v["ips"][0].get("version").is_none());
    let out = s.run("ADD", &[], &s.conf("0.4.0", label("IP=10.5.0.9")));
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["ips"][1]["version"], "6");
}

#[test]
fn a_failing_delegate_is_relayed_and_rolled_back() {
    let s = Setup::new();
    s.reply(
        "ADD",
        r#"{"cniVersion":"0.2.0","code":11,"msg":"busy","details":"try later"}"#,
        1,
    );
    let out = s.run("ADD", &[], &s.conf("0.2.0", label("IP=10.5.0.9")));
    assert_eq!(out.code, 1);
    let e: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(e["code"], 11, "the delegate's own spec code");
    assert!(e["msg"].as_str().unwrap().contains("busy"), "{e}");
    let inner: Value = serde_json::from_str(e["details"].as_str().unwrap()).unwrap();
    assert_eq!(
        inner,
        json!({"code": 11, "msg": "busy", "details": "try later"})
    );
    // Rollback: the delegate's DEL ran with the same translated config.
    assert_eq!(s.seen("DEL").unwrap(), s.seen("ADD").unwrap());
    assert_eq!(out.stdout.lines().count(), 1);
}

#[test]
fn garbage_or_an_unconvertible_result_is_rolled_back() {
    let s = Setup::new();
    s.reply("ADD", "this is not json", 0);
    let out = s.run("ADD", &[], &s.conf("0.2.0", label("IP=10.5.0.9")));
    let e: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (out.code, e["code"].clone()),
        (1, json!(102)),
        "{}",
        out.stdout
    );
    assert!(s.seen("DEL").is_some(), "rolled back");

    let s = Setup::new();
    // A 1.0.0 result with no address cannot be written as 0.2.0.
    s.reply(
        "ADD",
        r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"dns":{}}"#,
        0,
    );
    let out = s.run("ADD", &[], &s.conf("0.2.0", label("IP=10.5.0.9")));
    let e: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        e["msg"], "cannot convert: no valid IP addresses",
        "{}",
        out.stdout
    );
    assert!(s.seen("DEL").is_some(), "rolled back");
}

#[test]
fn del_uses_the_same_translation_and_survives_a_bad_label() {
    let s = Setup::new();
    let out = s.run(
        "DEL",
        &[("CNI_NETNS", "")],
        &s.conf("0.2.0", label("IP=10.5.0.9")),
    );
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    let got = s.seen("DEL").unwrap();
    assert_eq!(got["args"]["cni"]["ips"], json!(["10.5.0.9"]));
    assert!(
        !s.seen_env("DEL")
            .lines()
            .any(|l| l.starts_with("CNI_NETNS=/")),
        "no netns passed on"
    );

    // A label the translator refuses: DEL still reaches the delegate (untranslated block).
    let s = Setup::new();
    let out = s.run("DEL", &[], &s.conf("0.2.0", label("IP=banana")));
    assert_eq!(out.code, 0, "{}", out.stdout);
    let got = s.seen("DEL").unwrap();
    assert_eq!(
        (got["name"].clone(), got["cniVersion"].clone()),
        (json!("net1"), json!("0.2.0"))
    );
    assert!(got["args"]["cni"].get("ips").is_none());

    // The delegate's own DEL error is reported.
    let s = Setup::new();
    s.reply("DEL", r#"{"code":5,"msg":"disk"}"#, 1);
    let out = s.run("DEL", &[], &s.conf("0.2.0", label("IP=10.5.0.9")));
    let e: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(e["code"], 5);
}

#[test]
fn check_status_gc_are_forwarded() {
    let s = Setup::new();
    let mut conf = s.conf("1.1.0", label("IP=10.5.0.9"));
    conf["prevResult"] = serde_json::from_str(RESULT_100).unwrap();
    let out = s.run("CHECK", &[], &conf);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    let got = s.seen("CHECK").unwrap();
    assert_eq!(got["prevResult"]["ips"][0]["address"], "10.5.0.9/16");
    assert_eq!(got["args"]["cni"]["ips"], json!(["10.5.0.9"]));

    let out = s.run("STATUS", &[], &s.conf("1.1.0", json!({})));
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(s.seen("STATUS").is_some());
    s.reply("STATUS", r#"{"code":50,"msg":"not ready"}"#, 1);
    let out = s.run("STATUS", &[], &s.conf("1.1.0", json!({})));
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap()["code"],
        50
    );

    let mut gc = s.conf("1.1.0", json!({}));
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "a", "ifname": "eth0"}]);
    let out = s.run("GC", &[], &gc);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(
        s.seen("GC").unwrap()["cni.dev/valid-attachments"][0]["containerID"],
        "a"
    );

    // CHECK on a 0.2.0 config is refused by skel, as Go's does; nothing runs.
    let s = Setup::new();
    let out = s.run("CHECK", &[], &s.conf("0.2.0", json!({})));
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap()["code"],
        1
    );
    assert!(s.seen("CHECK").is_none());
}

#[test]
fn misconfigured_delegate_blocks_are_config_errors() {
    let s = Setup::new();
    for (delegate, code) in [
        (json!(null), 7),
        (json!({"ipam": {}}), 7),
        (json!({"type": "../../bin/sh"}), 7),
        (json!({"type": "absent"}), 101),
    ] {
        let mut conf = s.conf("0.2.0", json!({}));
        if delegate.is_null() {
            conf.as_object_mut().unwrap().remove("delegate");
        } else {
            conf["delegate"] = delegate.clone();
        }
        let out = s.run("ADD", &[], &conf);
        let e: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(e["code"], code, "{delegate}: {e}");
    }
    // A missing translator plugin is a load error naming the file.
    let mut conf = s.conf("0.2.0", label("IP=10.5.0.9"));
    conf["wasm"]["translator"] = json!("nope.wasm");
    let e: Value = serde_json::from_str(&s.run("ADD", &[], &conf).stdout).unwrap();
    assert_eq!(e["code"], 110);
    assert!(e["msg"].as_str().unwrap().contains("nope.wasm"), "{e}");
    // Only `mesos` (or a delegate block) and the Contrail types are served.
    let mut conf = s.conf("0.2.0", json!({}));
    conf["type"] = json!("bridge");
    conf.as_object_mut().unwrap().remove("delegate");
    let e: Value = serde_json::from_str(&s.run("ADD", &[], &conf).stdout).unwrap();
    assert_eq!(e["code"], 7);
    assert!(s.seen("ADD").is_none());
}

impl Setup {
    /// Replaces the delegate translator with another build.
    fn translator(&self, stem: &str) {
        fs::copy(wasm_plugin(stem), self.path("wasm/mesos-delegate.wasm")).unwrap();
    }

    /// A recording fake under another name (e.g. `host-device`), to prove it never runs.
    fn decoy(&self, name: &str) {
        let p = self.bin().join(name);
        fs::write(
            &p,
            "#!/bin/sh\ntouch \"$(dirname \"$0\")/RAN.$(basename \"$0\")\"\n",
        )
        .unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn ran(&self, name: &str) -> bool {
        self.bin().join(format!("RAN.{name}")).exists()
    }
}

fn error_of(out: &Out) -> Value {
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

/// A translator built against contrail:cni-plugin@0.1.0 (answering a whole config) still works
/// when its answer only decides what policy may decide.
#[test]
fn a_v010_translator_still_works() {
    let s = Setup::new();
    s.translator("v010_translator");
    s.reply("ADD", RESULT_100, 0);
    let out = s.run("ADD", &[], &s.conf("0.2.0", label("IP=10.5.0.9")));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let got = s.seen("ADD").unwrap();
    assert_eq!(got["type"], "fake");
    assert_eq!(got["args"]["cni"]["ips"], json!(["10.5.0.9"]));
}

/// A 0.1.0 translator's config may not choose the binary, host sections or logs: refused,
/// naming the key, and nothing runs.
#[test]
fn a_v010_translator_cannot_choose_the_binary_or_host_sections() {
    let s = Setup::new();
    s.translator("v010_translator");
    s.decoy("host-device");
    s.decoy("contrail-cni-plugin");
    for (mode, key) in [
        ("host-device", "type"),
        ("self", "type"),
        ("wasm", "wasm"),
        ("log-file", "log-file"),
    ] {
        let mut conf = s.conf("0.2.0", label("IP=10.5.0.9"));
        conf["misbehave"] = json!(mode);
        let e = error_of(&s.run("ADD", &[], &conf));
        assert_eq!(e["code"], 114, "{mode}: {e}");
        let msg = e["msg"].as_str().unwrap();
        assert!(
            msg.contains(&format!("tried to set {key}")) && msg.contains("mesos-delegate.wasm"),
            "{mode}: {e}"
        );
    }
    assert!(s.seen("ADD").is_none() && s.seen("DEL").is_none());
    assert!(!s.ran("host-device") && !s.ran("contrail-cni-plugin"));
}

/// The host is never its own delegate (here through a `mesos` symlink in CNI_PATH, as
/// `make install` lays it out).
#[test]
fn the_host_never_execs_itself() {
    let s = Setup::new();
    std::os::unix::fs::symlink(contrail_integration::cni_host!(), s.bin().join("mesos")).unwrap();
    let mut conf = s.conf("0.2.0", label("IP=10.5.0.9"));
    conf["delegate"]["type"] = json!("mesos");
    let e = error_of(&s.run("ADD", &[], &conf));
    assert_eq!(e["code"], 101, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("this host"), "{e}");
}

/// A 0.2.0 translator's decision is checked: bad values are CNI errors naming the plugin and
/// the field, and the delegate never runs.
#[test]
fn bad_decisions_are_refused_before_the_delegate_runs() {
    let s = Setup::new();
    s.translator("misbehave_plugin");
    for (mode, field) in [("many-ips", "ips"), ("bad-mac", "mac"), ("bad-ip", "ips")] {
        let mut conf = s.conf("0.2.0", label("IP=10.5.0.9"));
        conf["misbehave"] = json!(mode);
        let e = error_of(&s.run("ADD", &[], &conf));
        assert_eq!(e["code"], 114, "{mode}: {e}");
        let msg = e["msg"].as_str().unwrap();
        assert!(
            msg.contains("mesos-delegate.wasm") && msg.contains(&format!("bad {field}")),
            "{mode}: {e}"
        );
    }
    assert!(s.seen("ADD").is_none() && s.seen("DEL").is_none());
    // The honest mode of the same plugin works, so the refusals above mean something.
    let mut conf = s.conf("0.2.0", label("IP=10.5.0.9"));
    conf["misbehave"] = json!("ok");
    s.reply("ADD", RESULT_100, 0);
    let out = s.run("ADD", &[], &conf);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        s.seen("ADD").unwrap()["args"]["cni"]["ips"],
        json!(["10.5.0.9"])
    );
}

/// Plugins get the config without credentials, and their own `wasm.plugin-config`.
#[test]
fn plugins_never_see_secrets() {
    let s = Setup::new();
    s.translator("misbehave_plugin");
    let mut conf = s.conf("0.2.0", label("IP=10.5.0.9"));
    conf["misbehave"] = json!("secrets");
    conf["contrail"] = json!({"mesos-token": "S3CRET-1", "vrouter-ip": "10.0.0.5"});
    conf["delegate"]["ipam"]["token-file"] = json!("/etc/S3CRET-2");
    conf["delegate"]["auth"] = json!({"password": "S3CRET-3", "user": "u"});
    conf["wasm"]["plugin-config"] =
        json!({"delegate-translator": {"zone": "z1", "apiKey": "S3CRET-4"}});
    let e = error_of(&s.run("ADD", &[], &conf));
    let details = e["details"].as_str().unwrap();
    assert!(
        details.contains("vrouter-ip") && details.contains("z1") && details.contains("\"user\""),
        "the plugin got the rest: {details}"
    );
    assert!(
        !details.contains("S3CRET"),
        "a secret reached the plugin: {details}"
    );
    assert!(
        !details.contains("plugin-dir"),
        "the wasm section reached the plugin: {details}"
    );
}

/// A plugin's log line is one escaped entry in the log file: no forged line, no ANSI escape.
#[test]
fn plugin_log_lines_cannot_forge_entries() {
    let s = Setup::new();
    s.translator("misbehave_plugin");
    s.reply("ADD", RESULT_100, 0);
    let mut conf = s.conf("0.2.0", label("IP=10.5.0.9"));
    conf["misbehave"] = json!("forge-log");
    let out = s.run("ADD", &[], &conf);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let log = fs::read_to_string(s.path("log/cni.log")).unwrap();
    let entry = log
        .lines()
        .find(|l| l.contains("innocent"))
        .unwrap_or_else(|| panic!("the plugin's line is missing: {log}"));
    assert!(entry.contains("mesos-delegate.wasm"), "{entry}");
    assert!(entry.contains("forged line"), "{entry}");
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a forged line: {log}"
    );
    assert!(
        !log.contains('\x1b'),
        "an ANSI escape reached the log: {log:?}"
    );
}

/// A host installed without its compiler (`contrail-cni-plugin-compile` beside it): an ADD
/// whose plugin is not in the cache fails with the CNI error naming the missing compiler, and
/// runs nothing; once the plugin is precompiled (by a complete install), the same host's ADD
/// works.
#[test]
fn a_host_without_its_compiler_runs_cached_plugins_and_says_why_not_others() {
    let s = Setup::new();
    s.reply("ADD", RESULT_100, 0);
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let alone = d.path().join("contrail-cni-plugin");
    // A hard link (the build's file system): a copy could be "text file busy" while another
    // test thread forks.
    fs::hard_link(contrail_integration::cni_host!(), &alone).unwrap();
    let conf = s.conf("0.2.0", label("IP=10.5.0.9"));
    let out = s.run_bin(&alone, "ADD", &[], &conf);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let err: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(err["code"], 110, "{err}");
    let msg = err["msg"].as_str().unwrap();
    let missing = d.path().join("contrail-cni-plugin-compile");
    assert!(
        msg.contains("mesos-delegate.wasm")
            && msg.contains(missing.to_str().unwrap())
            && msg.contains("not installed"),
        "{msg}"
    );
    assert!(s.seen("ADD").is_none(), "the delegate ran");

    let status = Command::new(contrail_integration::cni_host!())
        .args(["plugin", "compile", "--cache-dir"])
        .arg(s.path("cache"))
        .arg(s.path("wasm/mesos-delegate.wasm"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let out = s.run_bin(&alone, "ADD", &[], &conf);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(s.seen("ADD").is_some());
}

/// What `config check` says of the config is logged once per ADD on the delegate path too:
/// while the delegate works on its config when it got one, before the error when the call was
/// refused first (a label the translator rejects kills the waiting delegate).
#[test]
fn add_logs_the_config_findings_once_whether_the_delegate_ran_or_not() {
    let finding = "the only form Mesos' network/cni isolator reads";
    let s = Setup::new();
    s.reply("ADD", RESULT_100, 0);
    // 0.4.0 for a Mesos network: the result carries `ips`, which Mesos cannot read.
    let out = s.run("ADD", &[], &s.conf("0.4.0", label("IP=10.5.0.9")));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(s.seen("ADD").is_some(), "the delegate got its config");
    let log = fs::read_to_string(s.path("log/cni.log")).unwrap();
    assert_eq!(log.matches(finding).count(), 1, "{log}");
    assert!(
        !out.stdout.contains(finding),
        "never on stdout: {}",
        out.stdout
    );

    let s = Setup::new();
    let out = s.run("ADD", &[], &s.conf("0.4.0", label("IP=banana")));
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        s.seen("ADD").is_none(),
        "refused before the delegate got a config"
    );
    let log = fs::read_to_string(s.path("log/cni.log")).unwrap();
    assert_eq!(log.matches(finding).count(), 1, "{log}");
}
