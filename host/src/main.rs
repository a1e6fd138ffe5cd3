//! `contrail-cni-plugin` (also installed as `mesos`). With no arguments it is a CNI plugin
//! (env + stdin in, result or error JSON on stdout); with arguments, the operator CLI.
//!
//! The C `main`, not std's: every CNI call execs this binary, and std's start-up (a signal
//! stack and guard-page setup for the main thread, which reads `/proc/self/maps`, a `poll` of
//! the standard descriptors) is paid on each (docs/BENCHMARKS.md). The arguments are still
//! std's (glibc hands them to `std::env` before `main`); a panic that escapes is caught here
//! and ends the process with std's exit status for it, 101; stdout is flushed before returning.

#![no_main]

use std::io::Write;

use contrail_cni_host::cni::skel::ProcessEnv;

fn run() -> i32 {
    if std::env::args_os().len() > 1 {
        return i32::from(contrail_cni_host::cli::main(std::env::args_os()).0);
    }
    let invoked_as = std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = contrail_cni_host::run_cni(
        &ProcessEnv,
        &invoked_as,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
    );
    if (0..=255).contains(&code) { code } else { 1 }
}

#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    let code = std::panic::catch_unwind(run).unwrap_or(101);
    let _ = std::io::stdout().flush();
    code
}
