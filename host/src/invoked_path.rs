//! The path the process was invoked by (`argv[0]`), which can differ from the resolved binary:
//! Mesos execs the `mesos` symlink in its CNI plugin dir, and the plugins are looked up beside
//! that name first.
//!
//! The binary's C `main` records it here. `std::env::args` cannot be relied on: without std's
//! own `main` it is empty on musl, the libc the host ships with (glibc hands std the arguments
//! before `main`, musl does not). A program with std's `main` (a test, a bench) need not record
//! anything: the fallback reads `std::env::args_os`.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::OnceLock;

static INVOKED: OnceLock<PathBuf> = OnceLock::new();

/// Records `argv[0]`; the first call wins (it is the process's, and does not change).
pub fn record(argv0: &OsStr) {
    let _ = INVOKED.set(PathBuf::from(argv0));
}

/// `argv[0]` as recorded, else as std has it; `None` if neither knows.
pub fn get() -> Option<PathBuf> {
    INVOKED
        .get()
        .cloned()
        .or_else(|| std::env::args_os().next().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_path_wins_over_std_and_the_first_record_stays() {
        // A test binary has std's `main`, so std knows an argv[0] too.
        assert!(get().is_some());
        record(OsStr::new("/opt/cni/bin/mesos"));
        record(OsStr::new("/elsewhere/other"));
        assert_eq!(get(), Some(PathBuf::from("/opt/cni/bin/mesos")));
    }
}
