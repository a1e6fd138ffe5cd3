//! Configuration: defaults, then the TOML file, then environment variables
//! `CONTRAIL_MESOS_MANAGER_<SECTION>_<KEY>` (key dashes as underscores; lists comma-separated),
//! then command-line flags (applied by `main`).

use std::path::Path;

use serde::{Deserialize, Serialize};

pub const ENV_PREFIX: &str = "CONTRAIL_MESOS_MANAGER_";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Listen address of the attachment API, the health endpoints and `/metrics`. Without a
    /// token only a loopback address is accepted (see `allow-unauthenticated`).
    pub listen: String,
    /// Bearer token the CNI must send; empty = no authentication (loopback only).
    pub token: String,
    /// File holding the token (first line), read when `token` is empty.
    pub token_file: String,
    /// Listen on a non-loopback address without a token. Anyone who reaches the port can then
    /// list and delete every attachment; logged as a warning at start.
    pub allow_unauthenticated: bool,
    /// VNC-bound requests in progress at once (each holds one blocking worker).
    pub workers: usize,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers); at least 8192.
    pub max_header_bytes: usize,
    /// The request head must arrive within this (slow clients, slowloris).
    pub header_timeout_ms: u64,
    /// The body must arrive within this after the head.
    pub body_timeout_ms: u64,
    /// A connection silent for this long is closed (idle keep-alive).
    pub idle_timeout_secs: u64,
    /// A write that makes no progress for this long ends the connection.
    pub write_timeout_secs: u64,
    /// A VNC-bound request waits at most this long for a worker, then gets 503.
    pub queue_timeout_secs: u64,
    /// Seconds between readiness probes of VNC and Marathon.
    pub probe_interval_secs: u64,
    /// Serve TLS with this certificate chain (PEM, leaf first). Both or neither of
    /// `tls-cert-file` and `tls-key-file`; empty = plain HTTP.
    pub tls_cert_file: String,
    /// The private key of `tls-cert-file` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_key_file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct VncConfig {
    /// VNC API servers, tried in turn on connection failure.
    pub urls: Vec<String>,
    /// Keystone token sent as `X-Auth-Token`; empty = none.
    pub token: String,
    pub timeout_secs: u64,
    pub connect_timeout_secs: u64,
    /// Attempts per call for 5xx and connection errors.
    pub attempts: u32,
    pub backoff_ms: u64,
    /// CA bundle (PEM) that `https://` URLs' certificates must chain to; empty = the Mozilla
    /// roots built in. Also used for an `https://` `auth-url`.
    pub ca_file: String,
    /// Keystone v3 base (e.g. `https://keystone:5000/v3`): log in with `username` and
    /// `password` and send the token it issues, renewed before it expires. Empty = `token`.
    pub auth_url: String,
    pub username: String,
    pub password: String,
    /// File holding the password (first line), read when `password` is empty.
    pub password_file: String,
    pub user_domain: String,
    /// The project the token is scoped to.
    pub project: String,
    pub project_domain: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Annotation `cluster` on every owned object.
    pub name: String,
    /// Annotation `owner`; only objects with it (and the cluster) are ever deleted.
    pub owner: String,
    /// Defaults for the `domain-name`, `project-name` and `networks` labels.
    pub domain: String,
    pub project: String,
    pub network: String,
    /// The address space of the networks the manager creates without a `network-subnets`
    /// label (the cluster network, group and app networks): one flat-subnet IPAM
    /// (`<name>-pod-ipam`, as Contrail's Kubernetes manager makes its pod IPAM), so addresses
    /// are unique across those networks and a policy can route between them. Empty = never
    /// create a network without a `network-subnets` label.
    pub subnet: String,
    /// Where a container without a `networks` label goes: `cluster` (the cluster network),
    /// `group` (a project and network per Marathon group), `app` (a network per app) or
    /// `user-defined` (the labels decide; the cluster network when they name none). An app's
    /// `isolation` label overrides it. `group` and `app` need `[mesos] agent-url` (the app of
    /// a container comes from its agent) and `subnet`.
    pub isolation: contrail_mesos_api::Isolation,
    /// How many segments of an app id make its group in `group` mode (1: `/team-a` for
    /// `/team-a/back/db`).
    pub group_depth: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct MarathonConfig {
    /// Marathon URLs (HA: tried in turn). Empty = no watcher, no reconciler.
    pub urls: Vec<String>,
    /// DC/OS ACL token, sent as `Authorization: token=<t>`; empty = none.
    pub token: String,
    pub timeout_secs: u64,
    /// The event stream is reconnected after this long without a byte.
    pub stall_timeout_secs: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// CA bundle (PEM) for `https://` Marathon URLs; empty = the Mozilla roots built in.
    /// Also used for an `https://` `login-url`.
    pub ca_file: String,
    /// DC/OS service account: log in with a JWT signed by `service-account-key-file` and send
    /// the token it gets, renewed before it expires or after a 401.
    pub service_account_id: String,
    /// The account's RSA private key (PEM, PKCS#8 or PKCS#1).
    pub service_account_key_file: String,
    /// The IAM login endpoint; empty = `<first URL's scheme://host>/acs/api/v1/auth/login`.
    pub login_url: String,
    /// HTTP basic auth (Marathon's `--http_credentials`), with `password-file`.
    pub username: String,
    /// File holding the basic-auth password (first line).
    pub password_file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct MesosConfig {
    /// The agents' operator API, as a template: `{node-ip}` and `{node-name}` are replaced by
    /// an attachment's node, e.g. `http://{node-ip}:5051`. Empty = not used. When set, a
    /// container its agent still runs is never deleted, and joins follow the agent's
    /// container -> executor (task) map.
    pub agent_url: String,
    /// Sent as `Authorization: token=<t>` when set (DC/OS).
    pub token: String,
    pub timeout_secs: u64,
    /// CA bundle (PEM) for an `https://` agent URL; empty = the Mozilla roots built in.
    pub ca_file: String,
}

/// `[zookeeper]`: leader election among several managers (one per master). Empty `connect` =
/// this manager is the only one and always leads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ZookeeperConfig {
    /// Connect string, e.g. `master1:2181,master2:2181,master3:2181` (Mesos' own ensemble).
    pub connect: String,
    /// Parent of the election nodes; empty = `/contrail-mesos-manager/<cluster name>`, so
    /// managers of two clusters sharing an ensemble never compete.
    pub root: String,
    /// ZooKeeper session timeout. A frozen leader stops deleting after half of it and another
    /// manager takes over after about all of it.
    pub session_timeout_secs: u64,
    /// How long start waits for a first session before giving up (non-zero exit).
    pub connect_timeout_secs: u64,
    /// This manager's name in its election node; empty = `<hostname>:<pid>`.
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// Seconds between full passes.
    pub interval_secs: u64,
    /// Seconds an attachment never seen in Marathon is protected.
    pub grace_secs: u64,
    /// Delete attachments never joined to a Marathon task after the grace period. Turn off
    /// when other Mesos frameworks use the Contrail network.
    pub delete_unjoined: bool,
    /// A pass that would delete more than this share (percent) of the owned attachments is
    /// held: only the deletions a second listing confirms are carried out.
    pub max_delete_percent: u64,
    /// Delay before the confirming listing of a held pass.
    pub confirm_delay_ms: u64,
    /// With `[zookeeper]`: a task event whose address no cached attachment has (registered
    /// through another manager) brings the next pass forward, at most once per this many
    /// seconds.
    pub min_pass_gap_secs: u64,
}

/// `[fabric]`: how tasks on Contrail networks and hosts on the IP fabric (masters, Mesos-DNS,
/// marathon-lb, public agents) reach each other, as Contrail's Mesos and Kubernetes managers
/// provision it. Cluster-wide, or for the networks listed (names in `cluster.project`, or
/// `domain:project:name`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct FabricConfig {
    /// `fabric_snat` on every network the manager creates: tasks reach the underlay with
    /// their node's address.
    pub snat: bool,
    /// The same for these networks only (when the manager creates them).
    pub snat_networks: Vec<String>,
    /// A policy from `default-domain:default-project:ip-fabric` to every network tasks land
    /// on: hosts on the fabric reach task addresses (replies pass).
    pub policy: bool,
    /// The same for these networks only.
    pub policy_networks: Vec<String>,
}

/// `[dns]`: a Contrail virtual DNS server for the cluster's networks, with an A record per task
/// under its app's Mesos-DNS name (`web-team-a` for `/team-a/web`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct DnsConfig {
    pub enabled: bool,
    /// The `virtual-DNS` object's name under `cluster.domain`; empty = `<cluster name>-dns`.
    /// No `_` (the API server refuses it).
    pub server: String,
    /// The server's domain: task names resolve as `<app name>.<domain>`.
    pub domain: String,
    /// Where names outside the domain go (`next_virtual_DNS`: an address or a virtual DNS
    /// server's `domain:name`); empty = nowhere.
    pub forwarder: String,
    pub ttl_secs: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: false,
            server: String::new(),
            domain: "marathon.mesos".into(),
            forwarder: String::new(),
            ttl_secs: 60,
        }
    }
}

/// `[vip]`: Marathon's `VIP_<n>` port labels as Contrail native load balancers
/// (`crate::vip`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct VipConfig {
    /// Off: no load balancer is made or removed.
    pub enabled: bool,
    /// The network named VIPs get their address on, in `[cluster] project`; made on the
    /// cluster's flat pod IPAM (`[cluster] subnet`) when absent. Empty: `<cluster>-vip-network`.
    pub network: String,
    /// DNS domain of named VIPs: `<name>.marathon.l4lb.<domain>` (DC/OS' form).
    pub domain: String,
    /// Least time between two VIP passes driven by task events (each lists Marathon).
    pub min_event_gap_ms: u64,
}

impl Default for VipConfig {
    fn default() -> Self {
        VipConfig {
            enabled: true,
            network: String::new(),
            domain: "thisdcos.directory".into(),
            min_event_gap_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct LogConfig {
    /// Log file; empty = stderr.
    pub file: String,
    /// tracing filter, e.g. `info` or `contrail_mesos_manager=debug`.
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    pub api: ApiConfig,
    pub vnc: VncConfig,
    pub cluster: ClusterConfig,
    pub marathon: MarathonConfig,
    pub mesos: MesosConfig,
    pub zookeeper: ZookeeperConfig,
    pub reconcile: ReconcileConfig,
    pub fabric: FabricConfig,
    pub dns: DnsConfig,
    pub vip: VipConfig,
    pub log: LogConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:6991".into(),
            token: String::new(),
            token_file: String::new(),
            allow_unauthenticated: false,
            workers: 16,
            max_connections: 1024,
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 16 * 1024,
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            idle_timeout_secs: 120,
            write_timeout_secs: 10,
            queue_timeout_secs: 60,
            probe_interval_secs: 5,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}
impl Default for VncConfig {
    fn default() -> Self {
        VncConfig {
            urls: vec!["http://127.0.0.1:8082".into()],
            token: String::new(),
            timeout_secs: 10,
            connect_timeout_secs: 3,
            attempts: 5,
            backoff_ms: 100,
            ca_file: String::new(),
            auth_url: String::new(),
            username: String::new(),
            password: String::new(),
            password_file: String::new(),
            user_domain: "Default".into(),
            project: "admin".into(),
            project_domain: "Default".into(),
        }
    }
}
impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            name: "mesos".into(),
            owner: "contrail-mesos-manager".into(),
            domain: "default-domain".into(),
            project: "default-project".into(),
            network: "mesos-default-network".into(),
            subnet: String::new(),
            isolation: contrail_mesos_api::Isolation::Cluster,
            group_depth: 1,
        }
    }
}
impl Default for MarathonConfig {
    fn default() -> Self {
        MarathonConfig {
            urls: vec![],
            token: String::new(),
            timeout_secs: 30,
            stall_timeout_secs: 30,
            backoff_min_ms: 500,
            backoff_max_ms: 30_000,
            ca_file: String::new(),
            service_account_id: String::new(),
            service_account_key_file: String::new(),
            login_url: String::new(),
            username: String::new(),
            password_file: String::new(),
        }
    }
}
impl Default for MesosConfig {
    fn default() -> Self {
        MesosConfig {
            agent_url: String::new(),
            token: String::new(),
            timeout_secs: 5,
            ca_file: String::new(),
        }
    }
}
impl Default for ZookeeperConfig {
    fn default() -> Self {
        ZookeeperConfig {
            connect: String::new(),
            root: String::new(),
            session_timeout_secs: 6,
            connect_timeout_secs: 15,
            id: String::new(),
        }
    }
}
impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            interval_secs: 60,
            grace_secs: 300,
            delete_unjoined: true,
            max_delete_percent: 50,
            confirm_delay_ms: 2_000,
            min_pass_gap_secs: 5,
        }
    }
}
impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            file: String::new(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config: {0}")]
    Parse(String),
    #[error("environment variable {var}: {msg}")]
    Env { var: String, msg: String },
}

impl Config {
    /// Defaults ← file (when given) ← environment (`vars`, normally `std::env::vars()`).
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = toml::Value::try_from(Config::default())
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        if let Some(p) = file {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?;
            let file_v: toml::Value = toml::from_str(&text)
                .map_err(|e| ConfigError::Parse(format!("{}: {e}", p.display())))?;
            merge(&mut table, file_v);
        }
        for (k, v) in vars {
            let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            apply_env(&mut table, &k, rest, &v)?;
        }
        let cfg: Config = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        Ok(cfg)
    }

    /// The API token, from `token` or `token-file`.
    pub fn api_token(&self) -> Result<Option<String>, ConfigError> {
        if !self.api.token.is_empty() {
            return Ok(Some(self.api.token.clone()));
        }
        first_line(&self.api.token_file)
    }

    /// The token to require, after checking the listen address is safe without one: with no
    /// token only loopback is allowed, unless `allow-unauthenticated` says otherwise.
    pub fn checked_api_token(&self) -> Result<Option<String>, ConfigError> {
        let token = self.api_token()?;
        if token.is_none() && !crate::server::is_loopback(&self.api.listen) {
            if !self.api.allow_unauthenticated {
                return Err(ConfigError::Parse(format!(
                    "[api] listen = {:?} is not a loopback address and no token is set: set \
                     [api] token or token-file (the CNI's contrail.mesos-token), or \
                     allow-unauthenticated = true to serve anyone who reaches the port",
                    self.api.listen
                )));
            }
            tracing::warn!(
                listen = %self.api.listen,
                "attachment API WITHOUT authentication on a non-loopback address \
                 (allow-unauthenticated): anyone who reaches it can list and delete attachments"
            );
        } else if token.is_none() {
            tracing::info!(
                listen = %self.api.listen,
                "no API token configured: serving on loopback only"
            );
        }
        Ok(token)
    }

    /// `[vnc] password`, or the first line of `[vnc] password-file`.
    pub fn vnc_password(&self) -> Result<Option<String>, ConfigError> {
        if !self.vnc.password.is_empty() {
            return Ok(Some(self.vnc.password.clone()));
        }
        first_line(&self.vnc.password_file)
    }

    /// The first line of `[marathon] password-file`.
    pub fn marathon_password(&self) -> Result<Option<String>, ConfigError> {
        first_line(&self.marathon.password_file)
    }

    /// The effective configuration as TOML (`--print-config`), `[vnc] password` masked: it
    /// ends up in terminals and bug reports.
    pub fn to_toml(&self) -> String {
        let mut c = self.clone();
        if !c.vnc.password.is_empty() {
            c.vnc.password = "(set, not shown)".into();
        }
        toml::to_string_pretty(&c).unwrap_or_default()
    }
}

/// A secret file's first line (trimmed); `None` for no file or an empty first line.
fn first_line(path: &str) -> Result<Option<String>, ConfigError> {
    if path.is_empty() {
        return Ok(None);
    }
    let t = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(t.lines()
        .next()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty()))
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(bv) if bv.is_table() && v.is_table() => merge(bv, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// `API_TOKEN` → `[api] token`; the value is typed after the default's type.
fn apply_env(table: &mut toml::Value, var: &str, rest: &str, val: &str) -> Result<(), ConfigError> {
    let env_err = |msg: String| ConfigError::Env {
        var: var.to_owned(),
        msg,
    };
    let (section, key) = rest
        .split_once('_')
        .ok_or_else(|| env_err("expected <SECTION>_<KEY>".into()))?;
    let section = section.to_ascii_lowercase();
    let key = key.to_ascii_lowercase().replace('_', "-");
    let sec = table
        .get_mut(&section)
        .and_then(toml::Value::as_table_mut)
        .ok_or_else(|| env_err(format!("no section [{section}]")))?;
    let cur = sec
        .get(&key)
        .ok_or_else(|| env_err(format!("no key {key} in [{section}]")))?;
    let new = match cur {
        toml::Value::Array(_) => toml::Value::Array(
            val.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        toml::Value::Integer(_) => {
            toml::Value::Integer(val.trim().parse().map_err(|e| env_err(format!("{e}")))?)
        }
        toml::Value::Boolean(_) => {
            toml::Value::Boolean(val.trim().parse().map_err(|e| env_err(format!("{e}")))?)
        }
        _ => toml::Value::String(val.to_owned()),
    };
    sec.insert(key, new);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_env_override_defaults() {
        let dir = std::env::temp_dir().join(format!("cmm-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.toml");
        std::fs::write(
            &p,
            "[api]\nlisten = \"127.0.0.1:1\"\n[reconcile]\ngrace-secs = 5\n",
        )
        .unwrap();
        let env = vec![
            (
                "CONTRAIL_MESOS_MANAGER_VNC_URLS".to_owned(),
                "http://a:1, http://b:2".to_owned(),
            ),
            (
                "CONTRAIL_MESOS_MANAGER_RECONCILE_DELETE_UNJOINED".to_owned(),
                "false".to_owned(),
            ),
            (
                "CONTRAIL_MESOS_MANAGER_API_WORKERS".to_owned(),
                "3".to_owned(),
            ),
            (
                "CONTRAIL_MESOS_MANAGER_VNC_CA_FILE".to_owned(),
                "/etc/contrail/ca.pem".to_owned(),
            ),
            (
                "CONTRAIL_MESOS_MANAGER_API_TLS_CERT_FILE".to_owned(),
                "/etc/contrail/api.pem".to_owned(),
            ),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let c = Config::load(Some(&p), env).unwrap();
        assert_eq!(c.api.listen, "127.0.0.1:1");
        assert_eq!(c.api.workers, 3);
        assert_eq!(c.reconcile.grace_secs, 5);
        assert!(!c.reconcile.delete_unjoined);
        assert_eq!(c.vnc.urls, vec!["http://a:1", "http://b:2"]);
        assert_eq!(c.vnc.ca_file, "/etc/contrail/ca.pem");
        assert_eq!(c.api.tls_cert_file, "/etc/contrail/api.pem");
        assert_eq!(c.cluster.owner, "contrail-mesos-manager");
        let bad = Config::load(
            None,
            vec![("CONTRAIL_MESOS_MANAGER_API_NOPE".to_owned(), "1".to_owned())],
        );
        assert!(bad.is_err());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn without_a_token_only_loopback_is_allowed() {
        let mut c = Config::default();
        assert_eq!(c.api.listen, "127.0.0.1:6991");
        assert_eq!(c.checked_api_token().unwrap(), None);
        c.api.listen = "0.0.0.0:6991".into();
        let e = c.checked_api_token().unwrap_err().to_string();
        assert!(e.contains("allow-unauthenticated"), "{e}");
        c.api.allow_unauthenticated = true;
        assert_eq!(c.checked_api_token().unwrap(), None);
        c.api.allow_unauthenticated = false;
        c.api.token = "t".into();
        assert_eq!(c.checked_api_token().unwrap().as_deref(), Some("t"));
    }

    #[test]
    fn the_printed_config_hides_the_vnc_password() {
        let mut c = Config::default();
        c.vnc.password = "hunter2".into();
        let t = c.to_toml();
        assert!(!t.contains("hunter2") && t.contains("not shown"), "{t}");
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let dir = std::env::temp_dir().join(format!("cmm-cfg2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.toml");
        std::fs::write(&p, "[api]\nlisen = \"x\"\n").unwrap();
        assert!(Config::load(Some(&p), Vec::<(String, String)>::new()).is_err());
        std::fs::remove_dir_all(dir).ok();
    }
}
