//! Operator commands, used when the binary gets arguments (a CNI invocation has none):
//!
//! * `contrail-cni-plugin plugin check <file.wasm> [--world W] [--allow-ungranted-imports]`:
//!   which of our worlds it implements (exact type check), every import and whether it is
//!   granted, permission warnings; non-zero exit for no world or an ungranted import.
//! * `contrail-cni-plugin plugin run <file.wasm> --world W --input sample.json`: a dry run.
//! * `contrail-cni-plugin plugin compile <file.wasm> [--cache-dir DIR]`: precompiles into the
//!   artifact cache (with the compiler installed beside this binary, as an ADD would), so the
//!   first ADD after a deploy does not pay for compilation.
//! * `contrail-cni-plugin config check FILE|-`: the network config (`.conf` or `.conflist`) as
//!   ADD reads it; one `error: <key>: ...` / `warning: <key>: ...` line per problem; exit 1 on
//!   any error, 2 when the file cannot be read.
//! * `contrail-cni-plugin sweep --config FILE [--dry-run]`: removes what lost DELs left on the
//!   node (see `crate::contrail::sweep`); one line per removal, exit 1 on any error.
//! * `contrail-cni-plugin version`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};

use crate::cni::CniVersion;
use crate::wasm::{self, cache};

#[derive(Parser)]
#[command(
    name = "contrail-cni-plugin",
    about = "CNI plugin host with sandboxed Wasm policy plugins"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate or precompile a Wasm plugin.
    Plugin {
        #[command(subcommand)]
        cmd: PluginCmd,
    },
    /// Check a network config file.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Remove the tap, port file, agent port and record of attachments whose network
    /// namespace is gone (a DEL that never came). Only attachments with our record are
    /// touched, never one whose namespace exists. One line per removal; exit 1 on any error.
    Sweep {
        /// The network config (.conf or .conflist) whose `contrail` section names the
        /// state, config and agent.
        #[arg(long)]
        config: PathBuf,
        /// Print what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the version, the CNI versions and the plugin contract.
    Version,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Check a network config (.conf, or a .conflist) as ADD reads it, without contacting
    /// anything: prints `error: <key>: ...` / `warning: <key>: ...` per problem; exits 1 on
    /// any error, 2 when the file cannot be read.
    Check {
        /// The config file, or `-` for stdin.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginCmd {
    /// Check that a .wasm is a component implementing one of the host's worlds (exact types),
    /// list every import, and fail on imports the host does not grant.
    Check {
        file: PathBuf,
        /// Check as this world only (`delegate-translator`, `contrail-translator`, `ipam-plugin`).
        #[arg(long)]
        world: Option<String>,
        /// Exit 0 even when the plugin imports something the host does not grant (it traps if
        /// called).
        #[arg(long)]
        allow_ungranted_imports: bool,
    },
    /// Check, then compile into the artifact cache.
    Compile {
        file: PathBuf,
        #[arg(long, default_value = cache::DEFAULT_CACHE_DIR)]
        cache_dir: PathBuf,
        #[arg(long)]
        allow_ungranted_imports: bool,
    },
    /// Dry run: feed a sample invocation (JSON) to a plugin and print its checked answer.
    Run {
        file: PathBuf,
        #[arg(long)]
        world: String,
        /// Sample: `{"config": {network config}, "labels": [{"key","value"}], "port": {agent
        /// port answer}, "primary": true, "command": "ADD", "container-id": "..", "ifname": ".."}`.
        #[arg(long)]
        input: PathBuf,
    },
}

pub use crate::wasm::WIT_PACKAGE;

/// What `plugin check` found.
struct Report {
    worlds: Vec<(wasm::World, wasm::Version)>,
    imports: Vec<wasm::Import>,
    warnings: Vec<String>,
}

fn inspect(
    file: &Path,
    only: Option<wasm::World>,
    cache_dir: Option<&Path>,
) -> Result<(Report, cache::Loaded)> {
    let engine = wasm::engine::engine().map_err(|e| anyhow!(e))?;
    let mut warnings = Vec::new();
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if let Some(why) = cache::insecure_permissions(file, &meta) {
        warnings.push(format!(
            "{why}: an ADD refuses this file unless the network config sets wasm.allow-insecure-permissions: true"
        ));
    }
    let opts = cache::Options {
        cache_dir,
        allow_insecure_permissions: true,
        ..cache::Options::default()
    };
    let loaded = cache::load(engine, file, &opts)?;
    let candidates: Vec<wasm::World> = match only {
        Some(w) => vec![w],
        None => wasm::World::ALL.to_vec(),
    };
    let mut worlds = Vec::new();
    let mut errors = Vec::new();
    for w in candidates {
        match wasm::check_world(&loaded.component, w) {
            Ok(v) => worlds.push((w, v)),
            Err(e) => errors.push(format!("as {}: {e}", w.name())),
        }
    }
    if worlds.is_empty() {
        return Err(anyhow!(
            "{}: not a plugin of {WIT_PACKAGE} (or {}): {}",
            file.display(),
            wasm::WIT_PACKAGE_COMPAT,
            errors.join("; ")
        ));
    }
    let imports = wasm::imports(&loaded.component);
    Ok((
        Report {
            worlds,
            imports,
            warnings,
        },
        loaded,
    ))
}

fn print_report(file: &Path, r: &Report) -> usize {
    for (w, v) in &r.worlds {
        println!(
            "{}: ok: world {} of {}",
            file.display(),
            w.name(),
            v.package()
        );
    }
    for i in &r.imports {
        let what = match i.grant {
            wasm::Grant::Granted => "granted",
            wasm::Grant::StdStub => "std runtime import, stubbed (traps if called, grants nothing)",
            wasm::Grant::NotGranted => "NOT GRANTED (traps if called)",
        };
        println!("  import {}: {what}", i.name);
    }
    for w in &r.warnings {
        println!("  warning: {w}");
    }
    r.imports
        .iter()
        .filter(|i| i.grant == wasm::Grant::NotGranted)
        .count()
}

fn gate(ungranted: usize, allow: bool) -> Result<()> {
    if ungranted > 0 && !allow {
        return Err(anyhow!(
            "{ungranted} import(s) the host does not grant; rebuild the plugin without them, or pass --allow-ungranted-imports to accept that they trap if called"
        ));
    }
    Ok(())
}

fn parse_world(s: &str) -> Result<wasm::World> {
    wasm::World::parse(s).ok_or_else(|| {
        anyhow!("unknown world {s:?}: delegate-translator, contrail-translator or ipam-plugin")
    })
}

/// `config check`: prints the problems, then a summary line.
fn config_check(file: &Path) -> ExitCode {
    use std::io::Read;
    let read = if file == Path::new("-") {
        let mut b = vec![];
        std::io::stdin().read_to_end(&mut b).map(|_| b)
    } else {
        std::fs::read(file)
    };
    let bytes = match read {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let problems = crate::config_check::check_file(&bytes);
    // A closed pipe (`| head`) ends the output, not the process with a panic.
    let mut out = std::io::stdout().lock();
    let mut print = |line: String| {
        use std::io::Write;
        let _ = writeln!(out, "{line}");
    };
    for p in &problems {
        print(p.to_string());
    }
    let errors = contrail_mesos_api::config_problem::errors(&problems);
    let warnings = problems.len() - errors;
    let name = if file == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        file.display().to_string()
    };
    if problems.is_empty() {
        print(format!("{name}: ok"));
    } else {
        print(format!("{name}: {errors} error(s), {warnings} warning(s)"));
    }
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The Contrail network of a config file: the file itself, or the first Contrail plugin of a
/// `.conflist` (with the list's name, as libcni hands it over).
fn contrail_config(file: &Path) -> Result<crate::contrail::ContrailConfig> {
    use serde_json::Value;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let conf = crate::cni::config::NetConf::parse(&bytes).map_err(|e| anyhow!(e.msg))?;
    let is_contrail = |v: &Value| {
        v.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| crate::dispatch::CONTRAIL_TYPES.contains(&t))
    };
    let section = match conf.get("plugins").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .find(|p| is_contrail(p))
            .ok_or_else(|| anyhow!("{}: no Contrail plugin in the list", file.display()))?
            .get("contrail")
            .cloned(),
        None if conf
            .type_()
            .is_some_and(|t| crate::dispatch::CONTRAIL_TYPES.contains(&t)) =>
        {
            conf.get("contrail").cloned()
        }
        None => {
            return Err(anyhow!(
                "{}: not a Contrail network (type {:?})",
                file.display(),
                crate::dispatch::CONTRAIL_TYPES
            ));
        }
    };
    let cfg = match section.filter(|v| !v.is_null()) {
        None => crate::contrail::ContrailConfig::default(),
        Some(v) => crate::contrail::ContrailConfig::from_section(
            crate::contrail::config::Section::parse(&v).map_err(|e| anyhow!(e.msg))?,
        )
        .map_err(|e| anyhow!(e.msg))?,
    };
    cfg.check_state_dir().map_err(|e| anyhow!(e.msg))?;
    Ok(cfg)
}

/// `sweep`: prints a line per removal; errors to stderr and exit 1.
fn sweep(file: &Path, dry_run: bool) -> Result<ExitCode> {
    use crate::contrail::{agent, sweep};
    let cfg = contrail_config(file)?;
    let tls = cfg.agent_tls().map_err(|e| anyhow!(e.msg))?;
    let agent = agent::HttpAgent::new(&cfg.agent_base(), tls);
    let mut net = crate::net::Netlink::new().map_err(|e| anyhow!(e))?;
    let ports = crate::contrail::portmap::Nft::new(&cfg);
    let report = sweep::sweep(&cfg, &agent, &mut net, &ports, dry_run, &sweep::netns_gone);
    let mut out = std::io::stdout().lock();
    for l in &report.lines {
        use std::io::Write;
        let _ = writeln!(out, "{l}");
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Sweep { config, dry_run } => return sweep(&config, dry_run),
        Cmd::Config {
            cmd: ConfigCmd::Check { file },
        } => return Ok(config_check(&file)),
        Cmd::Version => {
            println!(
                "contrail-cni-plugin {} (CNI {}; plugins: {WIT_PACKAGE}, {})",
                env!("CARGO_PKG_VERSION"),
                CniVersion::ALL.map(CniVersion::as_str).join(", "),
                wasm::WIT_PACKAGE_COMPAT,
            );
            // Where a plugin not yet in the cache gets compiled (this binary cannot).
            match wasm::compiler::Compiler::beside_exe() {
                Ok(c) if c.path().is_file() => {
                    println!("plugin compiler: {}", c.path().display())
                }
                Ok(c) => println!(
                    "plugin compiler: {} is missing: only plugins already in the cache can load",
                    c.path().display()
                ),
                Err(e) => println!("plugin compiler: {e}"),
            }
        }
        Cmd::Plugin {
            cmd:
                PluginCmd::Check {
                    file,
                    world,
                    allow_ungranted_imports,
                },
        } => {
            let only = world.as_deref().map(parse_world).transpose()?;
            let (report, _) = inspect(&file, only, None)?;
            let ungranted = print_report(&file, &report);
            gate(ungranted, allow_ungranted_imports)?;
        }
        Cmd::Plugin {
            cmd:
                PluginCmd::Compile {
                    file,
                    cache_dir,
                    allow_ungranted_imports,
                },
        } => {
            let (report, loaded) = inspect(&file, None, Some(&cache_dir))?;
            let ungranted = print_report(&file, &report);
            gate(ungranted, allow_ungranted_imports)?;
            let entry = loaded
                .entry
                .clone()
                .context("cache dir unusable (see the warning above)")?;
            match loaded.origin {
                cache::Origin::Compiled { stored: false } => {
                    return Err(anyhow!(
                        "could not store the artifact in {}",
                        cache_dir.display()
                    ));
                }
                cache::Origin::Cache => {
                    println!("{}: already compiled: {}", file.display(), entry.display())
                }
                cache::Origin::Compiled { stored: true } => {
                    println!("{}: compiled: {}", file.display(), entry.display())
                }
            }
        }
        Cmd::Plugin {
            cmd: PluginCmd::Run { file, world, input },
        } => {
            let world = parse_world(&world)?;
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("cannot read {}", input.display()))?;
            let sample: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", input.display()))?;
            let out = dry_run(&file, world, &sample)
                .map_err(|e| anyhow!("CNI error {}: {} ({})", e.code, e.msg, e.details))?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `plugin run`: one call of `world` on `file` with a sample invocation, answered as the host
/// would act on it (every check applied), as JSON. Nothing touches the node.
fn dry_run(
    file: &Path,
    world: wasm::World,
    sample: &serde_json::Value,
) -> Result<serde_json::Value, crate::cni::CniError> {
    use crate::cni::CniError;
    use crate::cni::config::{Label, NetConf};
    use serde_json::{Value, json};
    let invalid = |m: String| CniError::new(crate::cni::error::INVALID_CONFIG, m);
    let config = sample.get("config").cloned().unwrap_or_else(|| json!({}));
    let conf = NetConf::parse(config.to_string().as_bytes())?;
    let mut settings = conf.wasm()?;
    let abs = std::path::absolute(file).map_err(|e| invalid(format!("{}: {e}", file.display())))?;
    match world {
        wasm::World::DelegateTranslator => settings.delegate_translator = Some(abs),
        wasm::World::ContrailTranslator => settings.contrail_translator = Some(abs),
        wasm::World::IpamPlugin => settings.ipam = Some(abs),
    }
    settings.allow_insecure_permissions = true;
    if settings.cache_dir.is_none() {
        settings.cache_dir = Some(std::env::temp_dir().join("contrail-cni-wasm-dryrun"));
    }
    let str_of = |k: &str, d: &str| {
        sample
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or(d)
            .to_owned()
    };
    let container_id = str_of("container-id", "dry-run");
    let command = match str_of("command", "ADD").to_ascii_uppercase().as_str() {
        "ADD" => crate::cni::Command::Add,
        "DEL" => crate::cni::Command::Del,
        "CHECK" => crate::cni::Command::Check,
        other => return Err(invalid(format!("command {other:?}: ADD, DEL or CHECK"))),
    };
    let labels: Vec<Label> = match sample.get("labels") {
        None => conf.mesos_labels()?,
        Some(v) => {
            serde_json::from_value(v.clone()).map_err(|e| invalid(format!("labels: {e}")))?
        }
    };
    let plugins = wasm::Plugins::new(settings, &container_id);
    let record = wasm::InvocationRecord {
        command,
        container_id,
        ifname: str_of("ifname", "eth0"),
        netns: Some(str_of("netns", "/var/run/netns/dry-run")),
        network_name: conf.name().unwrap_or_default().to_owned(),
        cni_version: conf.cni_version().to_owned(),
        config: conf.text().to_owned(),
    };
    match world {
        wasm::World::DelegateTranslator => {
            let block = conf
                .delegate()
                .and_then(Value::as_object)
                .cloned()
                .ok_or_else(|| invalid("config: no \"delegate\" object".into()))?;
            let reply = plugins.translate_delegate(
                &record,
                &labels,
                &Value::Object(block.clone()),
                conf.ignore_unknown()?,
            )?;
            let outer = config.as_object().cloned().unwrap_or_default();
            crate::delegate::answer::delegate_config(&outer, &block, reply, plugins.settings())
                .map(Value::Object)
        }
        wasm::World::ContrailTranslator => {
            let r = plugins.translate_contrail(&record, &labels)?;
            let req = crate::contrail::plugin::contrail_request(r, plugins.settings())?;
            Ok(serde_json::to_value(req).unwrap_or_default())
        }
        wasm::World::IpamPlugin => {
            let port: wasm::VrouterPort =
                serde_json::from_value(sample.get("port").cloned().unwrap_or_else(|| json!({})))
                    .map_err(|e| invalid(format!("port: {e}")))?;
            let primary = sample
                .get("primary")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let a = plugins.ipam_configure(&record, &port, primary)?;
            let c = crate::contrail::plugin::ipam_config(a, plugins.settings())?;
            let result = crate::cni::CniResult {
                ips: c.ips,
                routes: c.routes,
                dns: c.dns,
                ..Default::default()
            };
            result.encode(crate::cni::CniVersion::parse("1.1.0")?)
        }
    }
}

/// The status the CLI exits with. The binary's `main` is the C one (see `main.rs`), which
/// returns an `int`: std's `ExitCode` cannot become one on stable Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCode(pub u8);

impl ExitCode {
    pub const SUCCESS: ExitCode = ExitCode(0);
    pub const FAILURE: ExitCode = ExitCode(1);
}

impl From<u8> for ExitCode {
    fn from(code: u8) -> Self {
        ExitCode(code)
    }
}

/// `main` for argument-driven use. Errors go to stderr with exit 1 (clap's usage errors: 2).
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    crate::logging::init(&crate::cni::config::LogSettings::default());
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
