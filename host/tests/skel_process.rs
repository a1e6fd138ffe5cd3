//! The skel as a process: exit codes, one JSON document on stdout, nothing else there.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn run(env: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(contrail_integration::cni_host!())
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The plugin may exit (env errors) before reading stdin: a broken pipe is expected then.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn one_json(stdout: &str) -> Value {
    assert_eq!(
        stdout.lines().count(),
        1,
        "exactly one line on stdout: {stdout:?}"
    );
    serde_json::from_str(stdout).unwrap()
}

#[test]
fn version_answers_what_we_speak() {
    let (code, out, _) = run(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#);
    assert_eq!(code, 0);
    let v = one_json(&out);
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(
        v["supportedVersions"],
        serde_json::json!([
            "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"
        ])
    );
}

#[test]
fn errors_are_json_on_stdout_with_exit_1() {
    let add = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/none"),
        ("CNI_IFNAME", "eth0"),
    ];
    for (env, stdin, code) in [
        (&[][..], "{}", 4),
        (&[("CNI_COMMAND", "ADD")][..], "{}", 4),
        (&add[..], "garbage", 6),
        (&add[..], r#"{"cniVersion":"0.2.0","type":"mesos"}"#, 7),
        (
            &add[..],
            r#"{"cniVersion":"0.5.0","name":"n","type":"mesos"}"#,
            1,
        ),
        (
            &add[..],
            r#"{"cniVersion":"0.2.0","name":"n","type":"weird"}"#,
            7,
        ),
        (
            &add[..],
            r#"{"cniVersion":"0.2.0","name":"n","type":"mesos","wasm":{"timeout-ms":-1}}"#,
            7,
        ),
    ] {
        let (exit, out, _) = run(env, stdin);
        assert_eq!(exit, 1, "{env:?} {stdin}");
        let v = one_json(&out);
        assert_eq!(v["code"], code, "{env:?} {stdin}: {v}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(v["cniVersion"].is_string());
    }
}

#[test]
fn arguments_select_the_cli_and_bad_ones_fail() {
    let out = Command::new(contrail_integration::cni_host!())
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// CNI SPEC.md: a network name must match `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` (it is used as a
/// directory name by IPAM plugins such as host-local). Refused on both paths, before anything
/// runs.
#[test]
fn a_network_name_the_spec_forbids_is_error_7_on_both_paths() {
    let add = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/none"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/nonexistent"),
    ];
    for ty in ["mesos", "contrail-cni-plugin"] {
        for name in ["../../etc", "a/b", "-x", "a b"] {
            let conf = serde_json::json!({
                "cniVersion": "0.4.0", "name": name, "type": ty,
                "delegate": {"type": "bridge"},
                "contrail": {"poll-timeout": 0.01, "poll-retries": 1}
            });
            let (exit, out, _) = run(&add, &conf.to_string());
            assert_eq!(exit, 1, "{ty} {name}");
            let v = one_json(&out);
            assert_eq!(v["code"], 7, "{ty} {name}: {v}");
            assert!(v["msg"].as_str().unwrap().contains("network name"), "{v}");
        }
    }
}

/// `args."org.apache.mesos"` is Mesos' injection; when it is there but not an object the
/// config is broken, and the Contrail ADD must not go on as if no runtime had passed labels.
#[test]
fn mesos_args_that_are_not_an_object_are_error_7() {
    let add = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/none"),
        ("CNI_IFNAME", "eth0"),
    ];
    let conf = serde_json::json!({
        "cniVersion": "0.2.0", "name": "n", "type": "contrail-cni-plugin",
        "args": {"org.apache.mesos": 5},
        "contrail": {"vrouter-port": 1, "poll-timeout": 0.01, "poll-retries": 1}
    });
    let (exit, out, _) = run(&add, &conf.to_string());
    assert_eq!(exit, 1);
    let v = one_json(&out);
    assert_eq!(v["code"], 7, "{v}");
    assert!(
        v["msg"].as_str().unwrap().contains("org.apache.mesos"),
        "{v}"
    );
}

/// VERSION tells what the path behind the invoked name serves: as `mesos` (the delegate path,
/// whose delegates get the network's version) what the reference delegates speak, up to 1.0.0
/// (Debian's bridge/host-local refuse a 1.1.0 network); as `contrail-cni-plugin` every version.
#[test]
fn version_is_per_path() {
    let dir = tempfile::tempdir().unwrap();
    let mesos = dir.path().join("mesos");
    std::os::unix::fs::symlink(contrail_integration::cni_host!(), &mesos).unwrap();
    let mut child = Command::new(&mesos)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"cniVersion":"0.4.0"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v = one_json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(v["cniVersion"], "0.4.0");
    assert_eq!(
        v["supportedVersions"],
        serde_json::json!(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"])
    );
    let (_, out, _) = run(&[("CNI_COMMAND", "VERSION")], "");
    let v = one_json(&out);
    assert_eq!(
        v["supportedVersions"].as_array().unwrap().last().unwrap(),
        "1.1.0"
    );
}

/// An error about the environment is written in the config's `cniVersion` (a 0.2.0 runtime
/// such as Mesos reads it), not in ours.
#[test]
fn env_errors_carry_the_configs_version() {
    let (exit, out, _) = run(
        &[("CNI_COMMAND", "ADD")],
        r#"{"cniVersion":"0.2.0","name":"n","type":"mesos"}"#,
    );
    assert_eq!(exit, 1);
    let v = one_json(&out);
    assert_eq!(
        (v["code"].as_u64(), v["cniVersion"].as_str()),
        (Some(4), Some("0.2.0"))
    );
}

/// libcni reads an empty `cniVersion` as 0.1.0; it is not an incompatible version.
#[test]
fn an_empty_cni_version_is_0_1_0() {
    let add = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/none"),
        ("CNI_IFNAME", "eth0"),
    ];
    // A type nobody serves: the error is about the type (7), not the version (1).
    let (exit, out, _) = run(&add, r#"{"cniVersion":"","name":"n","type":"weird"}"#);
    assert_eq!(exit, 1);
    let v = one_json(&out);
    assert_eq!(v["code"], 7, "{v}");
    assert_eq!(v["cniVersion"], "0.1.0");
}

/// The Contrail path refuses a `CNI_ARGS` key it does not know unless `IgnoreUnknown=1`, as
/// libcni's `types.LoadArgs` makes Go plugins do.
#[test]
fn contrail_refuses_unknown_cni_args_without_ignore_unknown() {
    let env = |cmd: &'static str, args: &'static str| {
        vec![
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/none"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", args),
        ]
    };
    let dir = tempfile::tempdir().unwrap();
    let conf = serde_json::json!({
        "cniVersion": "0.4.0", "name": "n", "type": "contrail-cni-plugin",
        "contrail": {"vrouter-port": 1, "poll-timeout": 0.01, "poll-retries": 1,
                     "config-dir": dir.path(), "async-teardown": false}
    })
    .to_string();
    let (exit, out, _) = run(&env("ADD", "FOO=bar"), &conf);
    assert_eq!(exit, 1);
    let v = one_json(&out);
    assert_eq!(v["code"], 2, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("FOO=bar"), "{v}");
    let (_, out, _) = run(&env("ADD", "K8S_POD_NAME"), &conf);
    assert_eq!(one_json(&out)["code"], 4);
    // Ignored when asked to: the ADD then fails on the missing namespace instead.
    let (_, out, _) = run(&env("ADD", "IgnoreUnknown=1;FOO=bar"), &conf);
    assert_eq!(one_json(&out)["code"], 4, "{out}");
}
