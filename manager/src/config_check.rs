//! `contrail-mesos-manager --check-config`: everything `start` would refuse (and what it would
//! accept but run badly), found without contacting anything: no VNC, Marathon, ZooKeeper or
//! agent is asked and no port is bound. One [`Problem`] per finding, printed as
//! `error: <key>: <what and how to fix>` / `warning: ...`, the key as in the TOML file
//! (`api.listen`, `zookeeper.connect`).

use std::net::SocketAddr;
use std::path::Path;

use crate::config::Config;

pub use contrail_mesos_api::config_problem::{Problem, Severity};

#[derive(Default)]
struct Out(Vec<Problem>);

impl Out {
    fn error(&mut self, key: &str, msg: impl Into<String>) {
        self.0.push(Problem::error(key, msg));
    }
    fn warning(&mut self, key: &str, msg: impl Into<String>) {
        self.0.push(Problem::warning(key, msg));
    }
}

/// Checks a loaded configuration (file, environment and flags applied).
pub fn check(cfg: &Config) -> Vec<Problem> {
    let mut out = Out::default();
    api(cfg, &mut out);
    urls(&mut out, "vnc.urls", &cfg.vnc.urls, true);
    urls(&mut out, "marathon.urls", &cfg.marathon.urls, false);
    if cfg.marathon.urls.is_empty() {
        out.warning(
            "marathon.urls",
            "empty: no watcher and no reconciler, so what ends without a DEL from the CNI \
             (agent lost, node rebooted) is never cleaned up; list Marathon (e.g. \
             http://leader.mesos:8080)",
        );
    }
    agent_url(cfg, &mut out);
    isolation(cfg, &mut out);
    fabric(cfg, &mut out);
    dns(cfg, &mut out);
    zookeeper(cfg, &mut out);
    cluster(cfg, &mut out);
    numbers(cfg, &mut out);
    log(cfg, &mut out);
    tls(cfg, &mut out);
    logins(cfg, &mut out);
    out.0
}

/// A secret file start reads: readable, with a non-empty first line.
fn secret_file(out: &mut Out, key: &str, file: &str) {
    match std::fs::read_to_string(file) {
        Err(e) => out.error(key, format!("{file:?} cannot be read: {e}")),
        Ok(t) if t.lines().next().is_none_or(|l| l.trim().is_empty()) => {
            out.error(key, format!("{file:?}: its first line is empty"))
        }
        Ok(_) => {}
    }
}

/// The login keys: what start needs to log in to Keystone (VNC) and DC/OS or Marathon.
fn logins(cfg: &Config, out: &mut Out) {
    let v = &cfg.vnc;
    let vnc_login = !v.auth_url.is_empty();
    if vnc_login {
        if let Err(why) = base_url(&v.auth_url) {
            out.error("vnc.auth-url", format!("{:?}: {why}", v.auth_url));
        }
        if v.username.is_empty() {
            out.error(
                "vnc.username",
                "empty while auth-url is set: the Keystone user to log in as",
            );
        }
        for (key, val) in [
            ("vnc.user-domain", &v.user_domain),
            ("vnc.project", &v.project),
            ("vnc.project-domain", &v.project_domain),
        ] {
            if val.is_empty() {
                out.error(
                    key,
                    "empty while auth-url is set: the login is scoped by name",
                );
            }
        }
        if !v.token.is_empty() {
            out.warning(
                "vnc.token",
                "ignored: auth-url is set, tokens come from Keystone",
            );
        }
    }
    if !v.username.is_empty() && v.password.is_empty() && v.password_file.is_empty() {
        out.error(
            "vnc.password",
            "username is set without password or password-file",
        );
    } else if !v.password_file.is_empty() && v.password.is_empty() {
        secret_file(out, "vnc.password-file", &v.password_file);
    }
    if !vnc_login && (!v.username.is_empty() || !v.password.is_empty()) {
        out.error("vnc.auth-url", "empty while username/password are set: the Keystone v3 base to log in to (e.g. http://keystone:5000/v3)");
    }

    let m = &cfg.marathon;
    if !m.service_account_id.is_empty() {
        if m.service_account_key_file.is_empty() {
            out.error(
                "marathon.service-account-key-file",
                "empty while service-account-id is set: the account's PEM RSA private key",
            );
        } else if let Err(e) = crate::auth::dcos::load_rsa_key(&m.service_account_key_file) {
            out.error("marathon.service-account-key-file", e);
        }
        if m.login_url.is_empty() {
            if m.urls.is_empty() {
                out.error(
                    "marathon.login-url",
                    "empty and no Marathon URL to derive it from",
                );
            }
        } else if let Err(why) = base_url(&m.login_url) {
            out.error("marathon.login-url", format!("{:?}: {why}", m.login_url));
        }
        if !m.username.is_empty() {
            out.error(
                "marathon.username",
                "set together with service-account-id: choose one login",
            );
        }
    } else if !m.service_account_key_file.is_empty() {
        out.error(
            "marathon.service-account-id",
            "empty while service-account-key-file is set",
        );
    }
    if !m.username.is_empty() {
        if m.password_file.is_empty() {
            out.error("marathon.password-file", "empty while username is set");
        } else {
            secret_file(out, "marathon.password-file", &m.password_file);
        }
    } else if !m.password_file.is_empty() {
        out.error("marathon.username", "empty while password-file is set");
    }
}

/// The TLS files start loads: each CA bundle must parse, and the server's certificate and key
/// come as a pair.
fn tls(cfg: &Config, out: &mut Out) {
    for (key, file) in [
        ("vnc.ca-file", &cfg.vnc.ca_file),
        ("marathon.ca-file", &cfg.marathon.ca_file),
        ("mesos.ca-file", &cfg.mesos.ca_file),
    ] {
        if !file.is_empty()
            && let Err(e) = contrail_mesos_api::tls::load_ca_file(std::path::Path::new(file))
        {
            out.error(key, e.to_string());
        }
    }
    match (
        cfg.api.tls_cert_file.is_empty(),
        cfg.api.tls_key_file.is_empty(),
    ) {
        (true, false) => {
            return out.error(
                "api.tls-cert-file",
                "empty while tls-key-file is set: both must be set together",
            );
        }
        (false, true) => {
            return out.error(
                "api.tls-key-file",
                "empty while tls-cert-file is set: both must be set together",
            );
        }
        _ => {}
    }
    for (key, file) in [
        ("api.tls-cert-file", &cfg.api.tls_cert_file),
        ("api.tls-key-file", &cfg.api.tls_key_file),
    ] {
        if !file.is_empty() && std::fs::metadata(file).is_err() {
            out.error(key, format!("{file:?} cannot be read"));
        }
    }
}

fn api(cfg: &Config, out: &mut Out) {
    let listen = &cfg.api.listen;
    match listen.parse::<SocketAddr>() {
        Ok(_) => {}
        Err(_) => match listen.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty()
                    && !host.contains(char::is_whitespace)
                    && port.parse::<u16>().is_ok() => {}
            _ => out.error(
                "api.listen",
                format!("{listen:?} is not an address:port (e.g. \"0.0.0.0:6991\")"),
            ),
        },
    }
    if !cfg.api.token.is_empty() && !cfg.api.token_file.is_empty() {
        out.warning(
            "api.token-file",
            "ignored: api.token is set too, and wins; keep one of them",
        );
    }
    // The same rules `start` applies, token file read included.
    match cfg.api_token() {
        Err(e) => out.error("api.token-file", e.to_string()),
        Ok(None) if !cfg.api.token_file.is_empty() => out.error(
            "api.token-file",
            format!(
                "{}: the first line is empty, so no token would be required; write the token \
                 into it",
                cfg.api.token_file
            ),
        ),
        Ok(_) => match cfg.checked_api_token() {
            Err(crate::config::ConfigError::Parse(m)) => out.error("api.listen", m),
            Err(e) => out.error("api.listen", e.to_string()),
            Ok(None) if !crate::server::is_loopback(listen) => out.warning(
                "api.allow-unauthenticated",
                format!(
                    "true with {listen:?}: anyone who reaches the port can list and delete \
                     every attachment; set api.token-file (the CNI's contrail.mesos-token-file)"
                ),
            ),
            Ok(_) => {}
        },
    }
    if crate::server::is_loopback(listen) {
        out.warning(
            "api.listen",
            format!(
                "{listen:?} is loopback: only a CNI on this host can register; agents on other \
                 nodes need a reachable address (with api.token-file)"
            ),
        );
    }
}

/// Base URLs as the clients use them: `http(s)://host[:port][/path]`.
fn urls(out: &mut Out, key: &str, list: &[String], required: bool) {
    if list.is_empty() && required {
        out.error(
            key,
            "empty: list at least one server (e.g. http://config-api:8082)",
        );
    }
    for u in list {
        if let Err(why) = base_url(u) {
            out.error(key, format!("{u:?}: {why}"));
        }
    }
}

fn base_url(u: &str) -> Result<(), String> {
    let uri: http::Uri = u.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("expected http://host:port or https://host:port".into()),
    }
    let auth = uri.authority().ok_or("no host")?;
    if auth.host().is_empty() {
        return Err("no host".into());
    }
    if auth.as_str().contains('@') {
        return Err("credentials in the URL are not sent; use the section's token".into());
    }
    if uri.query().is_some() {
        return Err("a base URL has no query".into());
    }
    Ok(())
}

fn agent_url(cfg: &Config, out: &mut Out) {
    let t = &cfg.mesos.agent_url;
    if t.is_empty() {
        return;
    }
    if !t.contains("{node-ip}") && !t.contains("{node-name}") {
        // One fixed agent is right only for a one-agent cluster (or a proxy that routes).
        out.warning(
            "mesos.agent-url",
            format!(
                "{t:?} names no node: every node's containers are asked of this one agent, so \
                 with several agents the reconciler misjudges the others' containers; use a \
                 template with {{node-ip}} or {{node-name}}, e.g. \"http://{{node-ip}}:5051\""
            ),
        );
    }
    let sample = t
        .replace("{node-ip}", "10.0.0.1")
        .replace("{node-name}", "agent-1");
    if let Err(why) = base_url(&sample) {
        out.error("mesos.agent-url", format!("{t:?}: {why}"));
    }
}

fn zookeeper(cfg: &Config, out: &mut Out) {
    let z = &cfg.zookeeper;
    if z.connect.is_empty() {
        if !z.root.is_empty() || !z.id.is_empty() {
            out.warning(
                "zookeeper.connect",
                "empty: this manager runs alone and always leads, so zookeeper.root/id are \
                 unused; with several managers set the ensemble (e.g. \
                 \"master1:2181,master2:2181,master3:2181\")",
            );
        }
        return;
    }
    if let Err(e) = crate::leader::validate(&crate::app::zk_config(cfg)) {
        let key = match e {
            crate::leader::ZkSetupError::BadRoot(_) => "zookeeper.root",
            _ => "zookeeper.connect",
        };
        out.error(key, e.to_string());
    }
    if z.session_timeout_secs < 2 {
        out.warning(
            "zookeeper.session-timeout-secs",
            format!("{}: raised to 2 s", z.session_timeout_secs),
        );
    }
    if z.connect_timeout_secs == 0 {
        out.warning("zookeeper.connect-timeout-secs", "0: raised to 1 s");
    }
}

fn cluster(cfg: &Config, out: &mut Out) {
    let c = &cfg.cluster;
    for (key, v) in [
        ("cluster.name", &c.name),
        ("cluster.owner", &c.owner),
        ("cluster.domain", &c.domain),
        ("cluster.project", &c.project),
        ("cluster.network", &c.network),
    ] {
        if v.trim().is_empty() {
            out.error(
                key,
                "empty: VNC names and the ownership annotations need it (only objects with \
                 this manager's owner and cluster are ever deleted)",
            );
        }
    }
    if !c.subnet.is_empty() {
        match c.subnet.parse::<ipnet::IpNet>() {
            Err(e) => out.error(
                "cluster.subnet",
                format!("{:?}: {e}: expected a prefix like 10.32.0.0/16", c.subnet),
            ),
            Ok(n) if n.trunc() != n => out.error(
                "cluster.subnet",
                format!("{n} has host bits set: did you mean {}?", n.trunc()),
            ),
            Ok(n) => {
                if let Some(why) = crate::vnc::planning::unallocatable(&n) {
                    out.error("cluster.subnet", format!("{n}: {why}"));
                }
            }
        }
    }
}

/// Group and app modes need the app of each container (from its agent) and an address space
/// for the networks they create.
fn isolation(cfg: &Config, out: &mut Out) {
    use contrail_mesos_api::Isolation;
    let c = &cfg.cluster;
    if !matches!(c.isolation, Isolation::Group | Isolation::App) {
        return;
    }
    let mode = c.isolation.as_str();
    if cfg.mesos.agent_url.is_empty() {
        out.error(
            "cluster.isolation",
            format!(
                "{mode} isolation needs [mesos] agent-url: the app of a container comes from its agent's GET_CONTAINERS"
            ),
        );
    }
    if c.subnet.is_empty() {
        out.error(
            "cluster.isolation",
            format!("{mode} isolation creates networks: set cluster.subnet"),
        );
    }
    if c.group_depth == 0 {
        out.error("cluster.group-depth", "must be at least 1");
    }
}

/// `[fabric]` network lists: names in the cluster's project or `domain:project:name`.
fn fabric(cfg: &Config, out: &mut Out) {
    for (key, list) in [
        ("fabric.snat-networks", &cfg.fabric.snat_networks),
        ("fabric.policy-networks", &cfg.fabric.policy_networks),
    ] {
        for n in list {
            let parts: Vec<&str> = n.split(':').collect();
            if !matches!(parts.len(), 1 | 3) || parts.iter().any(|p| p.trim().is_empty()) {
                out.error(
                    key,
                    format!("{n:?} is neither a network name nor domain:project:name"),
                );
            }
        }
    }
}

/// `[dns]`: what the API server would refuse, said before it does.
fn dns(cfg: &Config, out: &mut Out) {
    let d = &cfg.dns;
    if !d.enabled {
        return;
    }
    if d.server.contains('_') || d.server.contains(':') {
        out.error(
            "dns.server",
            format!(
                "{:?}: the API server refuses `_` in a virtual DNS server's name",
                d.server
            ),
        );
    }
    if d.domain.trim().is_empty() || d.domain.contains(char::is_whitespace) {
        out.error("dns.domain", format!("{:?} is not a domain name", d.domain));
    }
}

fn numbers(cfg: &Config, out: &mut Out) {
    let (a, v, m, r) = (&cfg.api, &cfg.vnc, &cfg.marathon, &cfg.reconcile);
    let nonzero: [(&str, u64); 15] = [
        ("api.workers", a.workers as u64),
        ("api.max-connections", a.max_connections as u64),
        ("api.max-body-bytes", a.max_body_bytes as u64),
        ("api.header-timeout-ms", a.header_timeout_ms),
        ("api.body-timeout-ms", a.body_timeout_ms),
        ("api.idle-timeout-secs", a.idle_timeout_secs),
        ("api.write-timeout-secs", a.write_timeout_secs),
        ("api.queue-timeout-secs", a.queue_timeout_secs),
        ("vnc.timeout-secs", v.timeout_secs),
        ("vnc.connect-timeout-secs", v.connect_timeout_secs),
        ("vnc.attempts", u64::from(v.attempts)),
        ("marathon.timeout-secs", m.timeout_secs),
        ("marathon.stall-timeout-secs", m.stall_timeout_secs),
        ("mesos.timeout-secs", cfg.mesos.timeout_secs),
        ("reconcile.interval-secs", r.interval_secs),
    ];
    for (key, n) in nonzero {
        if n == 0 {
            out.error(
                key,
                "0: must be at least 1 (0 would stop every request or pass)",
            );
        }
    }
    if a.probe_interval_secs == 0 {
        out.warning("api.probe-interval-secs", "0: raised to 1 s");
    }
    if a.max_header_bytes < 8192 {
        out.error(
            "api.max-header-bytes",
            format!("{}: must be at least 8192", a.max_header_bytes),
        );
    }
    if m.backoff_min_ms > m.backoff_max_ms {
        out.error(
            "marathon.backoff-min-ms",
            format!(
                "{} is above marathon.backoff-max-ms ({})",
                m.backoff_min_ms, m.backoff_max_ms
            ),
        );
    }
    if r.max_delete_percent > 100 {
        out.error(
            "reconcile.max-delete-percent",
            format!(
                "{}: a share of the owned attachments, from 0 to 100",
                r.max_delete_percent
            ),
        );
    }
    if r.grace_secs == 0 && r.delete_unjoined {
        out.warning(
            "reconcile.grace-secs",
            "0 with delete-unjoined: an attachment registered a moment before Marathon lists \
             its task can be deleted by the next pass; keep a few minutes (default 300)",
        );
    }
}

fn log(cfg: &Config, out: &mut Out) {
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&cfg.log.level) {
        out.error(
            "log.level",
            format!(
                "{:?}: {e}: expected a filter like \"info\" or \"contrail_mesos_manager=debug\"",
                cfg.log.level
            ),
        );
    }
    if cfg.log.file.is_empty() {
        return;
    }
    let path = Path::new(&cfg.log.file);
    if path.is_dir() {
        out.error("log.file", format!("{} is a directory", path.display()));
        return;
    }
    // `start` opens the file (creating it), not its directory.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        out.error(
            "log.file",
            format!(
                "directory {} does not exist: start would fail; create it",
                dir.display()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(cfg: &Config, sev: Severity) -> Vec<String> {
        check(cfg)
            .into_iter()
            .filter(|p| p.severity == sev)
            .map(|p| p.key)
            .collect()
    }

    fn production() -> Config {
        let mut c = Config::default();
        c.api.listen = "0.0.0.0:6991".into();
        c.api.token = "t".into();
        c.marathon.urls = vec!["http://leader.mesos:8080".into()];
        c.vnc.urls = vec!["http://10.0.0.2:8082".into()];
        c
    }

    fn fixture(rel: &str) -> String {
        format!("{}/../tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn a_production_config_is_clean() {
        assert_eq!(check(&production()), vec![]);
        let mut c = production();
        c.cluster.isolation = contrail_mesos_api::Isolation::Group;
        c.cluster.subnet = "10.32.0.0/12".into();
        c.mesos.agent_url = "http://{node-ip}:5051".into();
        assert_eq!(check(&c), vec![]);
        let mut c = production();
        c.vnc.auth_url = "https://keystone:5000/v3".into();
        c.vnc.username = "admin".into();
        c.vnc.password = "p".into();
        c.marathon.service_account_id = "contrail".into();
        c.marathon.service_account_key_file = fixture("login/service-account.key.pem");
        assert_eq!(check(&c), vec![]);
        let mut c = production();
        c.marathon.urls = vec!["http://master.mesos/marathon".into()];
        c.mesos.agent_url = "http://{node-ip}:5051".into();
        c.zookeeper.connect = "m1:2181,m2:2181/mesos".into();
        c.cluster.subnet = "10.32.0.0/16".into();
        assert_eq!(check(&c), vec![]);
    }

    /// An edit of a good config, and the one key it must be reported under.
    type Case = (fn(&mut Config), &'static str);

    #[test]
    fn each_rule_names_its_key() {
        let cases: Vec<Case> = vec![
            (|c| c.api.listen = "nonsense".into(), "api.listen"),
            (|c| c.api.token = String::new(), "api.listen"),
            (
                |c| {
                    c.api.token = String::new();
                    c.api.token_file = "/nonexistent/token".into();
                },
                "api.token-file",
            ),
            (|c| c.vnc.urls = vec![], "vnc.urls"),
            (|c| c.vnc.urls = vec!["tcp://a:8082".into()], "vnc.urls"),
            (
                |c| c.vnc.ca_file = "/nonexistent/ca.pem".into(),
                "vnc.ca-file",
            ),
            (
                |c| c.api.tls_cert_file = "/nonexistent/cert.pem".into(),
                "api.tls-key-file",
            ),
            (|c| c.vnc.urls = vec!["ftp://a".into()], "vnc.urls"),
            (
                |c| c.marathon.urls = vec!["http://u:p@m:8080".into()],
                "marathon.urls",
            ),
            (
                |c| c.mesos.agent_url = "{node-ip}:5051".into(),
                "mesos.agent-url",
            ),
            (|c| c.zookeeper.connect = "m1".into(), "zookeeper.connect"),
            (
                |c| {
                    c.zookeeper.connect = "m1:2181".into();
                    c.zookeeper.root = "relative".into();
                },
                "zookeeper.root",
            ),
            (
                |c| c.cluster.subnet = "10.0.0.0/33".into(),
                "cluster.subnet",
            ),
            (
                |c| c.cluster.subnet = "10.0.0.1/16".into(),
                "cluster.subnet",
            ),
            (
                |c| c.cluster.subnet = "10.0.0.0/31".into(),
                "cluster.subnet",
            ),
            (|c| c.cluster.owner = String::new(), "cluster.owner"),
            (
                |c| c.fabric.snat_networks = vec!["a:b".into()],
                "fabric.snat-networks",
            ),
            (
                |c| {
                    c.dns.enabled = true;
                    c.dns.server = "my_dns".into();
                },
                "dns.server",
            ),
            (
                |c| c.fabric.policy_networks = vec!["".into()],
                "fabric.policy-networks",
            ),
            (
                |c| {
                    c.cluster.isolation = contrail_mesos_api::Isolation::Group;
                    c.cluster.subnet = "10.32.0.0/12".into();
                    c.mesos.agent_url.clear();
                },
                "cluster.isolation",
            ),
            (
                |c| {
                    c.cluster.isolation = contrail_mesos_api::Isolation::App;
                    c.mesos.agent_url = "http://{node-ip}:5051".into();
                    c.cluster.subnet.clear();
                },
                "cluster.isolation",
            ),
            (
                |c| {
                    c.cluster.isolation = contrail_mesos_api::Isolation::Group;
                    c.mesos.agent_url = "http://{node-ip}:5051".into();
                    c.cluster.subnet = "10.32.0.0/12".into();
                    c.cluster.group_depth = 0;
                },
                "cluster.group-depth",
            ),
            (|c| c.vnc.timeout_secs = 0, "vnc.timeout-secs"),
            (|c| c.api.header_timeout_ms = 0, "api.header-timeout-ms"),
            (
                |c| c.reconcile.max_delete_percent = 101,
                "reconcile.max-delete-percent",
            ),
            (|c| c.api.max_header_bytes = 100, "api.max-header-bytes"),
            (
                |c| c.marathon.backoff_min_ms = 60_000,
                "marathon.backoff-min-ms",
            ),
            (|c| c.log.level = "info,=[".into(), "log.level"),
            (|c| c.log.file = "/nonexistent/dir/m.log".into(), "log.file"),
            (
                |c| {
                    c.vnc.auth_url = "keystone:5000".into();
                    c.vnc.username = "admin".into();
                    c.vnc.password = "p".into();
                },
                "vnc.auth-url",
            ),
            (
                |c| {
                    c.vnc.auth_url = "http://keystone:5000/v3".into();
                    c.vnc.username = "admin".into();
                },
                "vnc.password",
            ),
            (
                |c| {
                    c.vnc.auth_url = "http://keystone:5000/v3".into();
                    c.vnc.password = "p".into();
                },
                "vnc.username",
            ),
            (
                |c| {
                    c.vnc.auth_url = "http://keystone:5000/v3".into();
                    c.vnc.username = "admin".into();
                    c.vnc.password_file = "/nonexistent/pw".into();
                },
                "vnc.password-file",
            ),
            (
                |c| {
                    c.marathon.service_account_id = "contrail".into();
                    c.marathon.service_account_key_file = "/nonexistent/key.pem".into();
                },
                "marathon.service-account-key-file",
            ),
            (
                |c| {
                    c.marathon.service_account_id = "contrail".into();
                    c.marathon.service_account_key_file = fixture("login/service-account.pub.pem");
                },
                "marathon.service-account-key-file",
            ),
            (
                |c| {
                    c.marathon.service_account_id = "contrail".into();
                    c.marathon.service_account_key_file = fixture("login/service-account.key.pem");
                    c.marathon.login_url = "iam/login".into();
                },
                "marathon.login-url",
            ),
            (
                |c| c.marathon.username = "m".into(),
                "marathon.password-file",
            ),
        ];
        for (edit, key) in cases {
            let mut c = production();
            edit(&mut c);
            assert_eq!(keys(&c, Severity::Error), [key], "{key}: {:?}", check(&c));
        }
        let warnings: Vec<Case> = vec![
            (|c| c.marathon.urls = vec![], "marathon.urls"),
            (|c| c.reconcile.grace_secs = 0, "reconcile.grace-secs"),
            (
                |c| c.mesos.agent_url = "http://agent:5051".into(),
                "mesos.agent-url",
            ),
            (
                |c| {
                    c.zookeeper.connect = "m1:2181".into();
                    c.zookeeper.session_timeout_secs = 1;
                },
                "zookeeper.session-timeout-secs",
            ),
            (|c| c.zookeeper.root = "/x".into(), "zookeeper.connect"),
            (
                |c| {
                    c.api.token = String::new();
                    c.api.allow_unauthenticated = true;
                },
                "api.allow-unauthenticated",
            ),
            (|c| c.api.listen = "127.0.0.1:6991".into(), "api.listen"),
        ];
        for (edit, key) in warnings {
            let mut c = production();
            edit(&mut c);
            assert_eq!(keys(&c, Severity::Error), Vec::<String>::new(), "{key}");
            assert_eq!(keys(&c, Severity::Warning), [key], "{key}: {:?}", check(&c));
        }
    }
}
