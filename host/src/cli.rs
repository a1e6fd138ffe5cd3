//! Operator commands, used when the binary gets arguments (a CNI invocation has none):
//!
//! * `contrail-cni-plugin plugin check <file.wasm>`: is it a component implementing one of our
//!   worlds? Prints which; exits non-zero otherwise.
//! * `contrail-cni-plugin plugin compile <file.wasm> [--cache-dir DIR]`: precompiles into the
//!   artifact cache, so the first ADD after a deploy does not pay for compilation.
//! * `contrail-cni-plugin version`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    /// Print the version, the CNI versions and the plugin contract.
    Version,
}

#[derive(Subcommand)]
enum PluginCmd {
    /// Check that a .wasm is a component implementing `ipam-plugin` or `label-translator`.
    Check { file: PathBuf },
    /// Check, then compile into the artifact cache.
    Compile {
        file: PathBuf,
        #[arg(long, default_value = cache::DEFAULT_CACHE_DIR)]
        cache_dir: PathBuf,
    },
}

/// The WIT package the host implements.
pub const WIT_PACKAGE: &str = "contrail:cni-plugin@0.1.0";

fn check(file: &Path, cache_dir: Option<&Path>) -> Result<(wasm::World, cache::Loaded)> {
    let engine = wasm::engine::engine().map_err(|e| anyhow!(e))?;
    let loaded = cache::load(engine, file, cache_dir)?;
    let world = wasm::detect_world(&loaded.component)
        .map_err(|e| anyhow!("{}: not a {WIT_PACKAGE} plugin: {e}", file.display()))?;
    Ok((world, loaded))
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Version => {
            println!(
                "contrail-cni-plugin {} (CNI {}; plugins: {WIT_PACKAGE})",
                env!("CARGO_PKG_VERSION"),
                CniVersion::ALL.map(CniVersion::as_str).join(", ")
            );
        }
        Cmd::Plugin {
            cmd: PluginCmd::Check { file },
        } => {
            let (world, loaded) = check(&file, None)?;
            println!(
                "{}: ok: component implementing world {} of {WIT_PACKAGE}",
                file.display(),
                world.name()
            );
            let trapped = wasm::trapped_imports(&loaded.component);
            if !trapped.is_empty() {
                println!(
                    "  imports not granted (they trap if called): {}",
                    trapped.join(", ")
                );
            }
        }
        Cmd::Plugin {
            cmd: PluginCmd::Compile { file, cache_dir },
        } => {
            let (world, loaded) = check(&file, Some(&cache_dir))?;
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
            println!("  world {}", world.name());
        }
    }
    Ok(())
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
