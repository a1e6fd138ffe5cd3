//! `contrail-cni-plugin` (also installed as `mesos`). With no arguments it is a CNI plugin
//! (env + stdin in, result or error JSON on stdout); with arguments, the operator CLI.
//!
//! The C `main`, not std's: every CNI call execs this binary, and std's start-up (a signal
//! stack and guard-page setup for the main thread, which reads `/proc/self/maps`, a `poll` of
//! the standard descriptors) is paid on each (docs/BENCHMARKS.md). The arguments are taken from
//! `main`'s own `argv`: `std::env::args` is empty without std's `main` on musl, the libc the
//! host ships with (glibc would hand them to std before `main`, musl does not). A panic that
//! escapes is caught here and ends the process with std's exit status for it, 101; stdout is
//! flushed before returning.

#![no_main]

use std::ffi::{CStr, OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use contrail_cni_host::cni::skel::ProcessEnv;

/// On musl (the shipped build) mimalloc, not musl's allocator: see host/Cargo.toml.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn run(args: Vec<OsString>) -> i32 {
    if args.len() > 1 {
        return i32::from(contrail_cni_host::cli::main(args).0);
    }
    let invoked_as = args
        .first()
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
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: the C runtime passes `main` `argc` pointers to NUL-terminated strings in `argv`.
    let args = unsafe { args_of(argc, argv) };
    if let Some(argv0) = args.first() {
        contrail_cni_host::invoked_path::record(argv0);
    }
    let code = std::panic::catch_unwind(|| run(args)).unwrap_or(101);
    let _ = std::io::stdout().flush();
    code
}

/// `argv` as owned strings (the bytes as they are: arguments need not be UTF-8).
///
/// # Safety
/// `argv` must point to `argc` valid pointers to NUL-terminated strings (a null pointer ends
/// the list early).
unsafe fn args_of(argc: libc::c_int, argv: *const *const libc::c_char) -> Vec<OsString> {
    let mut args = Vec::new();
    for i in 0..usize::try_from(argc).unwrap_or(0) {
        // SAFETY: within the `argc` entries the caller vouches for.
        let p = unsafe { *argv.add(i) };
        if p.is_null() {
            break;
        }
        // SAFETY: a NUL-terminated string, per the caller.
        let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
        args.push(OsStr::from_bytes(bytes).to_os_string());
    }
    args
}
