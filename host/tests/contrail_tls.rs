//! The CNI host's clients over `https://`: the manager's attachment API and the vRouter agent,
//! each a plain stand-in behind a TLS-terminating relay with a CA made at run time; a CA file
//! that is missing or not PEM is error 7 on ADD. No root needed; everything is on 127.0.0.1.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use contrail_cni_host::contrail::agent::{Agent, AgentError, HttpAgent};
use contrail_cni_host::contrail::manager::{Failover, Manager};
use contrail_integration::attach_standin::AttachStandin;
use contrail_integration::tls_proxy::{Pki, TlsProxy};
use contrail_integration::vrouter_agent::AgentStandin;
use contrail_mesos_api::{AttachRequest, ContrailRequest, Node};
use serde_json::Value;

fn tls(ca: &Pki) -> ureq::tls::TlsConfig {
    contrail_mesos_api::tls::client_config(&ca.ca_file().display().to_string()).unwrap()
}

fn request(cid: &str) -> AttachRequest {
    AttachRequest {
        container_id: cid.into(),
        ifname: "eth0".into(),
        netns: Some(format!("/var/run/mesos/isolators/network/cni/{cid}/ns")),
        node: Node {
            name: "agent-1".into(),
            ip: "127.0.0.1".into(),
        },
        network_name: "contrail-cni-plugin".into(),
        request: ContrailRequest {
            subnets: vec!["10.9.0.0/24".into()],
            ..Default::default()
        },
        labels: vec![],
    }
}

#[test]
fn the_manager_client_registers_and_deregisters_over_https() {
    let pki = Pki::new("manager");
    let agent = Arc::new(AgentStandin::start());
    let api = AttachStandin::start(agent.clone());
    let p = TlsProxy::start(api.addr(), pki.server_config()).unwrap();
    let m = Failover::http(&[p.url()], None, Duration::from_secs(5), &tls(&pki));
    let a = m.attach(&request("c1")).expect("attach over https");
    assert!(!a.attachment.vmi_uuid.is_empty());
    assert!(a.created);
    let again = m.attach(&request("c1")).expect("attach again");
    assert!(
        !again.created,
        "the stand-in's 200 is an existing registration"
    );
    assert_eq!(api.attachments().len(), 1);
    assert!(m.detach("c1", "eth0").expect("detach over https"));
    assert!(api.attachments().is_empty());
    assert!(p.handshakes() >= 1, "not reached through TLS");
}

#[test]
fn a_manager_whose_certificate_fails_is_error_7_and_the_next_instance_is_asked() {
    let (pki, other) = (Pki::new("manager"), Pki::new("other"));
    let agent = Arc::new(AgentStandin::start());
    let api = AttachStandin::start(agent.clone());
    let bad = TlsProxy::start(api.addr(), other.server_config()).unwrap();
    let good = TlsProxy::start(api.addr(), pki.server_config()).unwrap();
    let t = tls(&pki);
    let only_bad = Failover::http(&[bad.url()], None, Duration::from_secs(5), &t);
    let e = only_bad.attach(&request("c1")).unwrap_err();
    assert_eq!(e.code, 7, "{}", e.msg);
    assert!(e.msg.contains("TLS verification failed"), "{}", e.msg);
    assert!(api.attachments().is_empty());
    assert_eq!(bad.handshakes(), 0);
    // Another instance with a good certificate still serves the ADD.
    let both = Failover::http(&[bad.url(), good.url()], None, Duration::from_secs(5), &t);
    both.attach(&request("c2")).expect("the second instance");
    assert_eq!(api.attachments().len(), 1);
}

#[test]
fn the_vrouter_agent_client_over_https() {
    let (pki, other) = (Pki::new("vrouter"), Pki::new("other"));
    let agent = AgentStandin::start();
    let p = TlsProxy::start(agent.addr(), pki.server_config()).unwrap();
    let base = format!("{}/", p.url());
    let t = Duration::from_secs(5);
    let a = HttpAgent::new(&base, tls(&pki));
    a.ping(t).expect("ping over https");
    assert_eq!(a.vm_cfg("nope", t).expect("vm-cfg over https"), None);
    let e = HttpAgent::new(&base, tls(&other)).ping(t).unwrap_err();
    assert!(matches!(e, AgentError::Tls(_)), "{e}");
    assert!(e.to_string().contains("TLS verification failed"), "{e}");
    let e = contrail_cni_host::contrail::error::Error::from(e);
    assert_eq!(e.code, 7, "a certificate failure is not 'try again later'");
}

fn run(env: &[(&str, &str)], stdin: &str) -> (i32, String) {
    let mut child = Command::new(contrail_integration::cni_host!())
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn add_with_a_ca_file_that_is_missing_or_not_pem_is_error_7() {
    let pki = Pki::new("x");
    let junk = pki.dir().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let missing = pki.dir().join("missing.pem");
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/none"),
        ("CNI_IFNAME", "eth0"),
    ];
    for (key, file, want) in [
        ("manager-ca-file", &missing, "contrail.manager-ca-file"),
        ("manager-ca-file", &junk, "no PEM CERTIFICATE"),
        ("vrouter-ca-file", &missing, "contrail.vrouter-ca-file"),
    ] {
        let conf = serde_json::json!({
            "cniVersion": "0.4.0", "name": "n", "type": "contrail-cni-plugin",
            "contrail": {"mode": "mesos", "managers": ["https://127.0.0.1:1"],
                         "vrouter-port": 1, "poll-timeout": 0.01, "poll-retries": 1,
                         "config-dir": dir.path(), key: file}
        });
        let (exit, out) = run(&env, &conf.to_string());
        assert_eq!(exit, 1, "{key}: {out}");
        let v: Value = serde_json::from_str(out.trim()).expect("one CNI error");
        assert_eq!(v["code"], 7, "{key}: {v}");
        let msg = v["msg"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{key}: {v}");
    }
}

/// DEL is best-effort: an unusable CA file is logged, the manager is skipped (its reconciler
/// removes the VNC objects) and the node side is still torn down.
#[test]
fn del_goes_on_with_a_ca_file_that_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let env = [
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "eth0"),
    ];
    let conf = serde_json::json!({
        "cniVersion": "0.4.0", "name": "n", "type": "contrail-cni-plugin",
        "contrail": {"mode": "mesos", "managers": ["https://127.0.0.1:1"],
                     "vrouter-port": 1, "config-dir": dir.path(), "async-teardown": false,
                     "manager-ca-file": missing, "vrouter-ca-file": missing}
    });
    let (exit, out) = run(&env, &conf.to_string());
    assert_eq!((exit, out.as_str()), (0, ""), "DEL failed on a CA file");
}
