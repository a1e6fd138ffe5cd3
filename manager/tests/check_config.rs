//! `contrail-mesos-manager --check-config` and `--healthcheck`, run as an operator (or a
//! container HEALTHCHECK) runs them: the real binary, file + environment + flags.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_contrail-mesos-manager");

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args);
    // Only what the test sets: the caller's CONTRAIL_MESOS_MANAGER_* must not leak in.
    c.env_clear();
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn lines(o: &Output) -> (i32, String) {
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// A production master's file: reachable listen with a token file, VNC, Marathon, the agents,
/// a ZooKeeper ensemble.
fn production(dir: &Path) -> std::path::PathBuf {
    let token = dir.join("mesos-token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let p = dir.join("manager.toml");
    std::fs::write(
        &p,
        format!(
            r#"[api]
listen = "0.0.0.0:6991"
token-file = "{}"
[vnc]
urls = ["http://10.0.0.2:8082", "http://10.0.0.3:8082"]
[marathon]
urls = ["http://master.mesos:8080"]
[mesos]
agent-url = "http://{{node-ip}}:5051"
[zookeeper]
connect = "master1:2181,master2:2181,master3:2181"
[cluster]
name = "dcos-1"
subnet = "10.32.0.0/16"
[log]
file = "{}"
"#,
            token.display(),
            dir.join("manager.log").display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn a_production_config_passes() {
    let dir = tempfile::tempdir().unwrap();
    let p = production(dir.path());
    let (code, out) = lines(&run(
        &["--check-config", "--config", p.to_str().unwrap()],
        &[],
    ));
    assert_eq!((code, out.as_str()), (0, "config ok\n"));
}

#[test]
fn errors_from_file_env_and_flags_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = production(dir.path());
    let file = p.to_str().unwrap();
    // (flags, environment, the line's start)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![],
            vec![("CONTRAIL_MESOS_MANAGER_RECONCILE_MAX_DELETE_PERCENT", "101")],
            "error: reconcile.max-delete-percent: ",
        ),
        (
            vec![],
            vec![("CONTRAIL_MESOS_MANAGER_ZOOKEEPER_CONNECT", "master1")],
            "error: zookeeper.connect: ",
        ),
        (
            vec![],
            vec![(
                "CONTRAIL_MESOS_MANAGER_API_TOKEN_FILE",
                "/nonexistent/token",
            )],
            "error: api.token-file: ",
        ),
        (
            vec![],
            vec![("CONTRAIL_MESOS_MANAGER_CLUSTER_SUBNET", "10.32.0.0/33")],
            "error: cluster.subnet: ",
        ),
        (
            vec![],
            vec![(
                "CONTRAIL_MESOS_MANAGER_MESOS_AGENT_URL",
                "ftp://{node-ip}:5051",
            )],
            "error: mesos.agent-url: ",
        ),
        (
            vec![],
            vec![("CONTRAIL_MESOS_MANAGER_VNC_TIMEOUT_SECS", "0")],
            "error: vnc.timeout-secs: ",
        ),
        (
            vec!["--vnc-url", "ftp://vnc:8082"],
            vec![],
            "error: vnc.urls: ",
        ),
        (
            vec!["--marathon-url", "marathon:8080"],
            vec![],
            "error: marathon.urls: ",
        ),
        (vec!["--listen", "nonsense"], vec![], "error: api.listen: "),
        (vec!["--log-level", "info,=["], vec![], "error: log.level: "),
        (
            vec!["--log-file", "/nonexistent/dir/m.log"],
            vec![],
            "error: log.file: ",
        ),
    ];
    for (flags, env, want) in cases {
        let mut args = vec!["--check-config", "--config", file];
        args.extend(flags);
        let (code, out) = lines(&run(&args, &env));
        assert_eq!(code, 1, "{want}: {out}");
        assert!(out.lines().any(|l| l.starts_with(want)), "{want}: {out}");
    }
    // Without the token, a non-loopback listen is refused, as start refuses it.
    let (code, out) = lines(&run(&["--check-config", "--listen", "0.0.0.0:6991"], &[]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error: api.listen: ") && out.contains("token"),
        "{out}"
    );
    // A key the file format does not have, and an unreadable file.
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[api]\nlisen = \"0.0.0.0:6991\"\n").unwrap();
    let (code, out) = lines(&run(
        &["--check-config", "--config", typo.to_str().unwrap()],
        &[],
    ));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("error: config: ") && out.contains("lisen"),
        "{out}"
    );
    let o = run(&["--check-config", "--config", "/nonexistent/m.toml"], &[]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn the_defaults_pass_with_warnings() {
    let (code, out) = lines(&run(&["--check-config"], &[]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning: api.listen: "), "{out}");
    assert!(out.contains("warning: marathon.urls: "), "{out}");
}

/// One HTTP exchange on 127.0.0.1 answering `status`; returns the port and the request line
/// (empty when no request came within 30 s: the caller's assertion then fails, never hangs).
fn serve_once(status: &str) -> (u16, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    let status = status.to_owned();
    let t = std::thread::spawn(move || {
        let mut accepted = None;
        for _ in 0..3000 {
            match l.accept() {
                Ok((s, _)) => {
                    accepted = Some(s);
                    break;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        let Some(mut s) = accepted else {
            return String::new();
        };
        s.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        let req = String::from_utf8_lossy(&buf[..n]).into_owned();
        let body = "{}";
        write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        req.lines().next().unwrap_or_default().to_owned()
    });
    (port, t)
}

#[test]
fn healthcheck_asks_healthz() {
    let (port, t) = serve_once("200 OK");
    let listen = format!("0.0.0.0:{port}");
    let o = run(&["--healthcheck", "--listen", &listen], &[]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(t.join().unwrap(), "GET /healthz HTTP/1.1");

    let (port, t) = serve_once("503 Service Unavailable");
    let o = run(
        &["--healthcheck", "--listen", &format!("127.0.0.1:{port}")],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("503"));
    t.join().unwrap();
}

/// The image's HEALTHCHECK, run as the container runtime runs it (its exec array, the binary
/// path mapped to the built one, the config path to a test file): it must ask /healthz.
#[test]
fn the_containerfile_healthcheck_asks_healthz() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("Containerfile");
    let text = std::fs::read_to_string(file).unwrap();
    let joined = text.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK");
    let exec = &line[line.find("CMD [").expect("exec form") + 4..];
    let argv: Vec<String> = serde_json::from_str(exec.trim()).unwrap();
    assert_eq!(argv[0], "/usr/bin/contrail-mesos-manager");

    let (port, t) = serve_once("200 OK");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.toml");
    std::fs::write(&cfg, format!("[api]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
    let args: Vec<String> = argv[1..]
        .iter()
        .map(|a| {
            if a.ends_with(".toml") {
                cfg.display().to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&args, &[]);
    assert_eq!(o.status.code(), Some(0), "{line}: {o:?}");
    assert_eq!(t.join().unwrap(), "GET /healthz HTTP/1.1");
}

/// Start refuses what `--check-config` calls an error, with the same line, before contacting
/// anything (the VNC URL here would never answer).
#[test]
fn start_refuses_what_the_check_calls_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = production(dir.path());
    let o = run(
        &["--config", p.to_str().unwrap(), "--log-file", "/dev/null"],
        &[("CONTRAIL_MESOS_MANAGER_RECONCILE_MAX_DELETE_PERCENT", "150")],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("error: reconcile.max-delete-percent: 150"),
        "{err}"
    );
}

/// The environment of a manager started with `env`, once it has settled (it starts itself
/// again, once, to give glibc larger thread caches); the process is ended after.
fn settled_environment(env: &[(&str, &str)]) -> Vec<String> {
    let mut c = Command::new(BIN);
    c.args([
        "--listen",
        "127.0.0.1:0",
        "--vnc-url",
        "http://127.0.0.1:1",
        "--log-level",
        "off",
    ]);
    c.env_clear();
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let read = |pid: u32| -> Vec<String> {
        std::fs::read(format!("/proc/{pid}/environ"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    };
    // The second start has the marker; a manager that keeps the operator's setting never gets
    // one, so that case waits the whole (bounded) time.
    let mut env = read(child.id());
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        env = read(child.id());
        if env
            .iter()
            .any(|v| v.starts_with("CONTRAIL_MESOS_THREAD_CACHES_SET="))
        {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    env
}

#[test]
fn the_manager_runs_with_larger_glibc_thread_caches_unless_the_operator_set_them() {
    // glibc's loader may split `GLIBC_TUNABLES` in place as it parses it, so the settings are
    // looked for one by one in what `/proc/<pid>/environ` shows.
    let has = |env: &[String], s: &str| env.iter().any(|v| v.contains(s));
    let started_again = |env: &[String]| has(env, "CONTRAIL_MESOS_THREAD_CACHES_SET=1");
    let env = settled_environment(&[]);
    assert!(started_again(&env), "{env:?}");
    assert!(has(&env, "glibc.malloc.tcache_count=512"), "{env:?}");
    // Other tunables are kept, the cache size added.
    let env = settled_environment(&[("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576")]);
    assert!(started_again(&env), "{env:?}");
    assert!(has(&env, "glibc.malloc.trim_threshold=1048576"), "{env:?}");
    assert!(has(&env, "glibc.malloc.tcache_count=512"), "{env:?}");
    // The operator's own cache size stands: no second start.
    let env = settled_environment(&[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=7")]);
    assert!(!started_again(&env), "{env:?}");
    assert!(has(&env, "glibc.malloc.tcache_count=7"), "{env:?}");
    assert!(!has(&env, "tcache_count=512"), "{env:?}");
}
