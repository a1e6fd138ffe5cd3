//! Logging: tracing to the config's log file (`log-file`/`log-level`, or the Contrail
//! section's `contrail.log-file`/`contrail.log-level`), else stderr at `warn`. Never stdout:
//! stdout carries only the CNI result or error.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;

use crate::cni::config::LogSettings;

fn level(s: Option<&str>) -> LevelFilter {
    s.and_then(parse_level).unwrap_or(LevelFilter::WARN)
}

/// A `log-level` this host knows; None for anything else (logged at `warn`).
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    match s.to_ascii_lowercase().as_str() {
        "trace" => Some(LevelFilter::TRACE),
        "debug" => Some(LevelFilter::DEBUG),
        "info" => Some(LevelFilter::INFO),
        "warn" | "warning" => Some(LevelFilter::WARN),
        "error" => Some(LevelFilter::ERROR),
        "off" | "none" => Some(LevelFilter::OFF),
        _ => None,
    }
}

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(settings: &LogSettings) {
    let lvl = level(settings.level.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(lvl)
        .with_target(false);
    if let Some(path) = &settings.file {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
        {
            Ok(f) => {
                let _ = builder.with_writer(Mutex::new(f)).try_init();
                return;
            }
            Err(e) => {
                let _ = builder.with_writer(std::io::stderr).try_init();
                tracing::warn!(
                    "cannot open log file {}: {e}; logging to stderr",
                    path.display()
                );
                return;
            }
        }
    }
    let _ = builder.with_writer(std::io::stderr).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level(Some("debug")), LevelFilter::DEBUG);
        assert_eq!(level(Some("INFO")), LevelFilter::INFO);
        assert_eq!(level(Some("nonsense")), LevelFilter::WARN);
        assert_eq!(level(None), LevelFilter::WARN);
    }
}
