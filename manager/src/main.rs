//! `contrail-mesos-manager`: see `docs/manager.md`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use contrail_mesos_manager::config::{Config, ConfigError};
use contrail_mesos_manager::{app, config_check, signals};

/// Master-side daemon for Contrail on Mesos/Marathon.
///
/// Serves the attachment API that `contrail-cni-plugin` (mode: mesos) calls on every ADD/DEL,
/// creates and deletes the Contrail VNC objects of each container interface (project, network,
/// VM, VMI, instance-ip, floating IPs, the vrouter ref), watches Marathon's event stream and
/// lists, and deletes what it owns when the task is gone even if the DEL never came.
///
/// Configuration: defaults, then the TOML file (--config), then environment variables
/// CONTRAIL_MESOS_MANAGER_<SECTION>_<KEY> (e.g. CONTRAIL_MESOS_MANAGER_API_TOKEN,
/// CONTRAIL_MESOS_MANAGER_VNC_URLS=http://a:8082,http://b:8082), then the flags below.
/// `--print-config` shows the result; `--check-config` checks it without contacting anything.
/// Endpoints: POST/GET /v1/attachments,
/// DELETE/GET /v1/attachments/<container-id>/<ifname>, GET /livez (the process serves),
/// GET /readyz and /healthz (VNC and Marathon reachable, from background probes), GET /metrics.
/// Without an API token the manager listens on loopback only (see --allow-unauthenticated).
/// Peers may be https:// (each section's ca-file; empty = the Mozilla roots built in); [api]
/// tls-cert-file and tls-key-file serve the API over TLS.
/// SIGTERM/SIGINT stop it gracefully.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// TOML configuration file (sections api, vnc, cluster, marathon, mesos, reconcile, log).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address of the attachment API ([api] listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Serve a non-loopback address without a token ([api] allow-unauthenticated). Anyone who
    /// reaches the port can then list and delete every attachment.
    #[arg(long)]
    allow_unauthenticated: bool,
    /// VNC API server URL; repeat for several ([vnc] urls).
    #[arg(long = "vnc-url", value_name = "URL")]
    vnc_urls: Vec<String>,
    /// Marathon URL; repeat for an HA list ([marathon] urls).
    #[arg(long = "marathon-url", value_name = "URL")]
    marathon_urls: Vec<String>,
    /// Log file; default stderr ([log] file).
    #[arg(long, value_name = "FILE")]
    log_file: Option<String>,
    /// Log filter, e.g. info, debug, contrail_mesos_manager=debug ([log] level).
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Check the effective configuration as start would (URLs, listen address, token rules,
    /// [zookeeper], subnet, timeouts, ...) without contacting anything: one
    /// `error|warning: <key>: ...` line per problem; exit 1 on any error, 2 when the config
    /// file cannot be read.
    #[arg(long, conflicts_with = "print_config")]
    check_config: bool,
    /// Ask the running manager's GET /healthz at [api] listen (an unspecified address as
    /// loopback) and exit 0 on 200: a container HEALTHCHECK without curl in the image.
    #[arg(long, conflicts_with_all = ["print_config", "check_config"])]
    healthcheck: bool,
}

/// Defaults, file, environment, then the flags.
fn effective_config(cli: &Cli) -> Result<Config, ConfigError> {
    let mut cfg = Config::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(l) = &cli.listen {
        cfg.api.listen = l.clone();
    }
    if cli.allow_unauthenticated {
        cfg.api.allow_unauthenticated = true;
    }
    if !cli.vnc_urls.is_empty() {
        cfg.vnc.urls = cli.vnc_urls.clone();
    }
    if !cli.marathon_urls.is_empty() {
        cfg.marathon.urls = cli.marathon_urls.clone();
    }
    if let Some(f) = &cli.log_file {
        cfg.log.file = f.clone();
    }
    if let Some(l) = &cli.log_level {
        cfg.log.level = l.clone();
    }
    Ok(cfg)
}

/// `--check-config`.
fn check_config(cli: &Cli) -> ExitCode {
    // A closed pipe (`| head`) ends the output, not the process with a panic.
    let mut out = std::io::stdout().lock();
    let mut print = |line: String| {
        use std::io::Write;
        let _ = writeln!(out, "{line}");
    };
    let cfg = match effective_config(cli) {
        Ok(c) => c,
        Err(e @ ConfigError::Read { .. }) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        Err(ConfigError::Parse(m)) => {
            print(format!("error: config: {m}"));
            return ExitCode::FAILURE;
        }
        Err(e) => {
            print(format!("error: config: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let problems = config_check::check(&cfg);
    for p in &problems {
        print(p.to_string());
    }
    let errors = contrail_mesos_api::config_problem::errors(&problems);
    if problems.is_empty() {
        print("config ok".to_owned());
    } else {
        print(format!(
            "config: {errors} error(s), {} warning(s)",
            problems.len() - errors
        ));
    }
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `--healthcheck`: GET /healthz on the configured listen address.
fn healthcheck(cfg: &Config) -> anyhow::Result<()> {
    let addr = match cfg.api.listen.parse::<SocketAddr>() {
        Ok(mut a) if a.ip().is_unspecified() => {
            a.set_ip(match a.ip() {
                IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
            a.to_string()
        }
        Ok(a) => a.to_string(),
        Err(_) => cfg.api.listen.clone(),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    let url = format!("http://{addr}/healthz");
    let mut resp = agent
        .get(&url)
        .call()
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    if resp.status() != 200 {
        anyhow::bail!("{url}: {} {}", resp.status(), body.trim());
    }
    Ok(())
}

fn init_logging(cfg: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)?;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if cfg.log.file.is_empty() {
        b.with_writer(std::io::stderr).init();
    } else {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.log.file)?;
        b.with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .init();
    }
    Ok(())
}

/// glibc keeps at most 7 freed chunks of a size per thread (its tcache). Past that, a malloc or
/// free takes the arena's lock, and with the one arena set below the API's blocking threads
/// queue on it: 15 context switches per attachment instead of 9, 17-20 % fewer attachments/s.
/// With 512 the attach path stays in the thread caches, for 2.4 MiB more peak RSS at 100,000
/// tasks (docs/BENCHMARKS.md, "Eighth round"). Only the environment at start-up sets it
/// (glibc tunables(7)), so the manager starts itself again, once, with it added. An operator's
/// own `glibc.malloc.tcache_count` is kept, and if the exec fails the manager runs on as is.
#[cfg(target_env = "gnu")]
fn with_thread_caches() {
    use std::os::unix::process::CommandExt as _;
    const KEY: &str = "glibc.malloc.tcache_count";
    // Set for the second start: glibc drops `GLIBC_TUNABLES` in secure mode, and the manager
    // must not start itself again and again then.
    const STARTED: &str = "CONTRAIL_MESOS_THREAD_CACHES_SET";
    let mut tunables = std::env::var_os("GLIBC_TUNABLES").unwrap_or_default();
    if std::env::var_os(STARTED).is_some() || tunables.to_string_lossy().contains(KEY) {
        return;
    }
    if !tunables.is_empty() {
        tunables.push(":");
    }
    tunables.push(format!("{KEY}=512"));
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    // Returns only when the exec failed.
    let _ = std::process::Command::new("/proc/self/exe")
        .arg0(argv0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .env(STARTED, "1")
        .exec();
}

fn main() -> anyhow::Result<ExitCode> {
    #[cfg(target_env = "gnu")]
    with_thread_caches();
    // Many worker threads each get a glibc malloc arena by default. One is enough for a
    // daemon whose threads mostly wait on sockets: the reconcile passes run on two threads
    // (the stream's and the periodic one), and with an arena each, each arena grew to a
    // pass's peak (100,000 tasks: 482 MiB resident with 2 arenas; docs/BENCHMARKS.md).
    // SAFETY: called before any other thread exists.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let cli = Cli::parse();
    if cli.check_config {
        return Ok(check_config(&cli));
    }
    let cfg = effective_config(&cli)?;
    if cli.print_config {
        print!("{}", cfg.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    if cli.healthcheck {
        return Ok(match healthcheck(&cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e:#}");
                ExitCode::FAILURE
            }
        });
    }
    init_logging(&cfg)?;
    signals::install()?;
    let app = app::start(&cfg)?;
    tracing::info!(addr = %app.api.addr, "contrail-mesos-manager running");
    while !signals::signalled() {
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!("signal received; shutting down");
    app.shutdown(Duration::from_secs(5));
    Ok(ExitCode::SUCCESS)
}
