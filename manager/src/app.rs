//! Wiring: builds the clients, rebuilds the cache from VNC, starts the API server and (with
//! Marathon URLs) the watcher and the periodic reconciler. Used by `main` and by tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::auth::keystone::{KeystoneConfig, KeystoneLogin};
use crate::auth::{self, TokenSource};
use crate::cache::Cache;
use crate::config::Config;
use crate::health::Health;
use crate::leader::{Leadership, Standalone, ZkConfig, ZkElection};
use crate::marathon::{HttpMarathon, HttpMarathonConfig, MarathonApi, MarathonAuth};
use crate::metrics::Metrics;
use crate::reconcile::Policy;
use crate::server::{ApiServer, Limits};
use crate::service::Manager;
use crate::vnc::{HttpVnc, HttpVncConfig, VncApi, Writer, WriterConfig};
use crate::watcher::{WatchConfig, Watcher};

pub struct App {
    pub api: ApiServer,
    pub health: Arc<Health>,
    pub mgr: Arc<Manager>,
    pub watcher: Option<Arc<Watcher>>,
    pub shutdown: Arc<AtomicBool>,
    pub leader: Arc<dyn Leadership>,
    threads: Vec<JoinHandle<()>>,
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The client TLS settings for `key` (`[section] ca-file`); a CA file that is missing or does
/// not parse is a start-up error, never a fallback to the default roots.
fn client_tls(key: &str, ca_file: &str) -> anyhow::Result<ureq::tls::TlsConfig> {
    contrail_mesos_api::tls::client_config(ca_file).map_err(|e| anyhow::anyhow!("{key}: {e}"))
}

/// Where the VNC token comes from: a Keystone login with `[vnc] auth-url`, else the static
/// `[vnc] token` (or none).
pub fn vnc_auth(cfg: &Config, tls: &ureq::tls::TlsConfig) -> anyhow::Result<Arc<dyn TokenSource>> {
    let v = &cfg.vnc;
    if v.auth_url.is_empty() {
        return Ok(Arc::new(auth::Static(opt(&v.token))));
    }
    let password = cfg.vnc_password()?.ok_or_else(|| {
        anyhow::anyhow!("[vnc] auth-url is set but [vnc] password (or password-file) is not")
    })?;
    Ok(Arc::new(auth::Cached::new(KeystoneLogin::new(
        KeystoneConfig {
            auth_url: v.auth_url.clone(),
            username: v.username.clone(),
            password,
            user_domain: v.user_domain.clone(),
            project: v.project.clone(),
            project_domain: v.project_domain.clone(),
            timeout: Duration::from_secs(v.timeout_secs),
            tls: tls.clone(),
        },
    ))))
}

/// How the manager authenticates to Marathon: a DC/OS service-account login, HTTP basic auth,
/// a static token, or nothing.
pub fn marathon_auth(cfg: &Config, tls: &ureq::tls::TlsConfig) -> anyhow::Result<MarathonAuth> {
    let m = &cfg.marathon;
    if !m.service_account_id.is_empty() {
        let key = auth::dcos::load_rsa_key(&m.service_account_key_file)
            .map_err(|e| anyhow::anyhow!("[marathon] service-account-key-file: {e}"))?;
        let url = if m.login_url.is_empty() {
            m.urls
                .first()
                .and_then(|u| auth::dcos::default_login_url(u))
                .ok_or_else(|| {
                    anyhow::anyhow!("[marathon] login-url: no Marathon URL to derive it from")
                })?
        } else {
            m.login_url.clone()
        };
        return Ok(MarathonAuth::Token(Arc::new(auth::Cached::new(
            auth::dcos::ServiceAccountLogin::new(
                m.service_account_id.clone(),
                key,
                url,
                Duration::from_secs(m.timeout_secs),
                tls.clone(),
            ),
        ))));
    }
    if !m.username.is_empty() {
        let password = cfg.marathon_password()?.ok_or_else(|| {
            anyhow::anyhow!("[marathon] username is set but password-file is not")
        })?;
        return Ok(MarathonAuth::Basic {
            username: m.username.clone(),
            password,
        });
    }
    Ok(match opt(&m.token) {
        Some(t) => MarathonAuth::Token(Arc::new(auth::Static(Some(t)))),
        None => MarathonAuth::None,
    })
}

/// The manager core over an HTTP VNC client.
pub fn manager(cfg: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Arc<Manager>> {
    let tls = client_tls("[vnc] ca-file", &cfg.vnc.ca_file)?;
    let api: Arc<dyn VncApi> = Arc::new(HttpVnc::new(
        HttpVncConfig {
            urls: cfg.vnc.urls.clone(),
            auth: vnc_auth(cfg, &tls)?,
            timeout: Duration::from_secs(cfg.vnc.timeout_secs),
            connect_timeout: Duration::from_secs(cfg.vnc.connect_timeout_secs),
            attempts: cfg.vnc.attempts,
            backoff: Duration::from_millis(cfg.vnc.backoff_ms),
            tls,
        },
        metrics.clone(),
    ));
    let writer = Writer {
        api,
        cfg: WriterConfig {
            owner: cfg.cluster.owner.clone(),
            cluster: cfg.cluster.name.clone(),
            domain: cfg.cluster.domain.clone(),
            project: cfg.cluster.project.clone(),
            network: cfg.cluster.network.clone(),
            subnet: opt(&cfg.cluster.subnet),
            group_depth: cfg.cluster.group_depth.max(1),
            fabric: crate::vnc::fabric::Fabric::from_config(
                &cfg.fabric,
                &cfg.cluster.domain,
                &cfg.cluster.project,
            ),
            dns: cfg.dns.enabled.then(|| crate::vnc::dns::Dns {
                server_fq: vec![
                    cfg.cluster.domain.clone(),
                    if cfg.dns.server.is_empty() {
                        format!("{}-dns", cfg.cluster.name)
                    } else {
                        cfg.dns.server.clone()
                    },
                ],
                domain: cfg.dns.domain.clone(),
                forwarder: opt(&cfg.dns.forwarder),
                ttl: cfg.dns.ttl_secs.max(1),
            }),
        },
        cache: Arc::new(Cache::default()),
    };
    let mut m = Manager::new(writer, metrics);
    m.isolation = cfg.cluster.isolation;
    if !cfg.mesos.agent_url.is_empty() {
        tracing::info!(url = %cfg.mesos.agent_url, "Mesos agents' operator API used for container identity");
        m.agents = Some(Arc::new(crate::mesos::HttpAgent::new(
            &cfg.mesos.agent_url,
            opt(&cfg.mesos.token),
            Duration::from_secs(cfg.mesos.timeout_secs.max(1)),
            client_tls("[mesos] ca-file", &cfg.mesos.ca_file)?,
        )));
    }
    Ok(Arc::new(m))
}

/// `[zookeeper]` as the election wants it (root and id defaulted).
pub fn zk_config(cfg: &Config) -> ZkConfig {
    let z = &cfg.zookeeper;
    let root = if z.root.is_empty() {
        format!("/contrail-mesos-manager/{}", cfg.cluster.name)
    } else {
        z.root.clone()
    };
    let id = if z.id.is_empty() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        format!("{host}:{}", std::process::id())
    } else {
        z.id.clone()
    };
    ZkConfig {
        connect: z.connect.clone(),
        root,
        session_timeout: Duration::from_secs(z.session_timeout_secs.max(2)),
        id,
    }
}

/// Standalone without a connect string; otherwise a running election (an error when the
/// settings are wrong or no session could be had within the connect timeout: a manager that
/// was meant to share the cluster never runs as if it were alone).
pub fn leadership(cfg: &Config) -> anyhow::Result<Arc<dyn Leadership>> {
    if cfg.zookeeper.connect.is_empty() {
        return Ok(Arc::new(Standalone));
    }
    let zc = zk_config(cfg);
    tracing::info!(connect = %zc.connect, root = %zc.root, id = %zc.id, "joining the leader election");
    let e = ZkElection::start(
        zc,
        Duration::from_secs(cfg.zookeeper.connect_timeout_secs.max(1)),
    )?;
    Ok(Arc::new(e))
}

/// Whether any server of the ensemble accepts a TCP connection (for `/healthz`; the session
/// itself is the election's business, and 4-letter-word commands are often disabled).
fn zk_reachable(connect: &str) -> Result<(), String> {
    let (hosts, _) = crate::leader::split_connect(connect);
    let mut last = String::from("no server listed");
    for h in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let addrs = match std::net::ToSocketAddrs::to_socket_addrs(h) {
            Ok(a) => a,
            Err(e) => {
                last = format!("{h}: {e}");
                continue;
            }
        };
        for a in addrs {
            match std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)) {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("{h}: {e}"),
            }
        }
    }
    Err(last)
}

/// The HTTP server's limits from `[api]`.
pub fn limits(cfg: &Config) -> Limits {
    let a = &cfg.api;
    Limits {
        max_body_bytes: a.max_body_bytes,
        max_header_bytes: a.max_header_bytes,
        header_timeout: Duration::from_millis(a.header_timeout_ms),
        body_timeout: Duration::from_millis(a.body_timeout_ms),
        idle_timeout: Duration::from_secs(a.idle_timeout_secs),
        write_timeout: Duration::from_secs(a.write_timeout_secs),
        max_connections: a.max_connections,
        workers: a.workers,
        queue_timeout: Duration::from_secs(a.queue_timeout_secs),
    }
}

pub fn start(cfg: &Config) -> anyhow::Result<App> {
    // What `--check-config` finds: an error stops the start before anything is contacted (an
    // open API among them), warnings are logged.
    let mut errors = vec![];
    for p in crate::config_check::check(cfg) {
        match p.severity {
            crate::config_check::Severity::Error => errors.push(p.to_string()),
            crate::config_check::Severity::Warning => tracing::warn!("{p}"),
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("invalid configuration:\n{}", errors.join("\n"));
    }
    let token = cfg.checked_api_token()?;
    // Every TLS file is read before anything starts: a bad one is a configuration error.
    let server_tls = crate::server::tls_acceptor(&cfg.api)?;
    let marathon_tls = client_tls("[marathon] ca-file", &cfg.marathon.ca_file)?;
    let marathon_auth = marathon_auth(cfg, &marathon_tls)?;
    let metrics = Arc::new(Metrics::default());
    let mgr = manager(cfg, metrics.clone())?;
    let leader = leadership(cfg)?;
    let _ = metrics.leadership.set(leader.clone());
    // Resync from VNC before answering anything. VNC may come up after us: retry.
    let mut delay = Duration::from_millis(200);
    for attempt in 1.. {
        match mgr.rebuild() {
            Ok(n) => {
                tracing::info!(attachments = n, "cache rebuilt from VNC");
                break;
            }
            // VNC answered the handshake with a certificate we do not trust: retrying cannot help.
            Err(e @ crate::vnc::AttachError::Misconfigured(_)) => {
                anyhow::bail!("cache rebuild from VNC failed: {e}")
            }
            Err(e) if attempt < 10 => {
                tracing::warn!(error = %e, attempt, "cache rebuild failed; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => anyhow::bail!("cache rebuild from VNC failed: {e}"),
        }
    }
    // The cluster network and its IPAM exist before the first task needs them (as Contrail's
    // managers provision their default pod network). Idempotent; when VNC refuses, the first
    // registration that needs them makes them.
    if mgr.writer.cfg.subnet.is_some() || mgr.writer.cfg.dns.is_some() {
        match mgr.writer.provision() {
            Ok(Some(vn)) => tracing::info!(network = %vn, "cluster network provisioned"),
            Ok(None) => tracing::info!("virtual DNS server provisioned"),
            Err(e) => {
                tracing::warn!(error = %e, "cluster network not provisioned at start; the first registration on it will")
            }
        }
    }
    let shutdown = Arc::new(AtomicBool::new(false));
    let with_marathon = !cfg.marathon.urls.is_empty();
    let interval = Duration::from_secs(cfg.api.probe_interval_secs.max(1));
    // A probe may take a VNC timeout (or a Marathon one) before it answers; beyond that plus
    // two intervals the dependency counts as unreachable.
    let stale =
        Duration::from_secs(cfg.vnc.timeout_secs.max(cfg.marathon.timeout_secs)) + 2 * interval;
    let names: &[&str] = if with_marathon {
        &["vnc", "marathon"]
    } else {
        &["vnc"]
    };
    let mut health = Health::new(names, stale);
    if !cfg.zookeeper.connect.is_empty() {
        health = health.informational("zookeeper");
    }
    let health = Arc::new(health);
    let _ = health.leadership.set(leader.clone());
    // The rebuild above just read VNC.
    health.record("vnc", Ok(()));
    let mut threads = Vec::new();
    if !cfg.zookeeper.connect.is_empty() {
        let connect = cfg.zookeeper.connect.clone();
        threads.push(health.spawn(
            "zookeeper",
            Box::new(move || zk_reachable(&connect)),
            interval,
            shutdown.clone(),
        )?);
    }
    {
        let (m, domain) = (mgr.clone(), cfg.cluster.domain.clone());
        threads.push(health.spawn(
            "vnc",
            Box::new(move || {
                m.writer
                    .api
                    .fqname_to_id("domain", std::slice::from_ref(&domain))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }),
            interval,
            shutdown.clone(),
        )?);
    }
    let api = ApiServer::start(
        &cfg.api.listen,
        limits(cfg),
        token,
        mgr.clone(),
        health.clone(),
        server_tls,
    )?;
    let mut watcher = None;
    if with_marathon {
        let m: Arc<dyn MarathonApi> = Arc::new(HttpMarathon::new(HttpMarathonConfig {
            urls: cfg.marathon.urls.clone(),
            auth: marathon_auth,
            timeout: Duration::from_secs(cfg.marathon.timeout_secs),
            stall_timeout: Duration::from_secs(cfg.marathon.stall_timeout_secs),
            tls: marathon_tls,
        }));
        {
            let m = m.clone();
            threads.push(health.spawn(
                "marathon",
                Box::new(move || m.ping().map_err(|e| e.to_string())),
                interval,
                shutdown.clone(),
            )?);
        }
        let mut w = Watcher::new(
            mgr.clone(),
            m,
            WatchConfig {
                policy: Policy {
                    grace_secs: cfg.reconcile.grace_secs,
                    delete_unjoined: cfg.reconcile.delete_unjoined,
                },
                max_delete_percent: cfg.reconcile.max_delete_percent,
                confirm_delay: Duration::from_millis(cfg.reconcile.confirm_delay_ms),
                interval: Duration::from_secs(cfg.reconcile.interval_secs.max(1)),
                backoff_min: Duration::from_millis(cfg.marathon.backoff_min_ms),
                backoff_max: Duration::from_millis(cfg.marathon.backoff_max_ms),
            },
            shutdown.clone(),
        )
        .with_leadership(leader.clone());
        if !cfg.zookeeper.connect.is_empty() {
            w.pass_on_cache_miss = Some(Duration::from_secs(cfg.reconcile.min_pass_gap_secs));
        }
        w.agents = mgr.agents.clone();
        if cfg.vip.enabled {
            let network = if cfg.vip.network.is_empty() {
                format!("{}-vip-network", cfg.cluster.name)
            } else {
                cfg.vip.network.clone()
            };
            w.vips = Some(Arc::new(crate::vip::Vips::new(
                crate::vip::VipNames {
                    network,
                    domain: cfg.vip.domain.clone(),
                },
                Duration::from_millis(cfg.vip.min_event_gap_ms),
            )));
        }
        let w = Arc::new(w);
        let (a, b) = (w.clone(), w.clone());
        threads.push(
            std::thread::Builder::new()
                .name("marathon-stream".into())
                .spawn(move || a.run_stream())?,
        );
        threads.push(
            std::thread::Builder::new()
                .name("reconciler".into())
                .spawn(move || b.run_periodic())?,
        );
        watcher = Some(w);
    } else {
        tracing::warn!("no Marathon URL configured: no watcher and no reconciler");
    }
    Ok(App {
        api,
        health,
        mgr,
        watcher,
        shutdown,
        leader,
        threads,
    })
}

impl App {
    /// Stops the API (in-flight requests finish), then the watcher threads. A thread blocked
    /// on the event stream is left behind after `grace`; the process is exiting anyway.
    pub fn shutdown(self, grace: Duration) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.api.shutdown(grace);
        let deadline = std::time::Instant::now() + grace;
        for t in self.threads {
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}
