//! Compiling a plugin happens in another process. `contrail-cni-plugin` links no compiler
//! (wasmtime without Cranelift: smaller, faster to exec on every ADD); on a cache miss it runs
//! the sibling binary `contrail-cni-plugin-compile`, which links Cranelift and the same
//! engine settings ([`super::engine`]).
//!
//! The protocol is a pure function: the `.wasm` bytes the host read (and hashed for the cache
//! key) go to the compiler's stdin; the artifact comes back on stdout; one line of error on
//! stderr. The compiler gets no path, no environment and no say over where the artifact goes.
//! `--engine <fingerprint>` makes a compiler of another release refuse (exit
//! [`EXIT_ENGINE`]) instead of producing an artifact this host would reject.
//!
//! The host treats what comes back as untrusted until verified:
//! * the compiler is found only beside the host's own executable (`/proc/self/exe`, never
//!   `$PATH`, argv[0], the environment or the network config), and must be a regular file
//!   that only root (or our user) could have written, in a directory likewise;
//! * it runs with an empty environment, `/` as its directory, none of the host's descriptors
//!   but stdio, `PR_SET_NO_NEW_PRIVS`, a parent-death signal, no core dumps, no file writes
//!   (`RLIMIT_FSIZE` 0), an address-space cap ([`MEMORY_LIMIT_BYTES`]) and a CPU-time cap; it
//!   is killed (SIGKILL, by its pid) at the wall-time limit;
//! * its stdout is read up to [`ARTIFACT_MAX_BYTES`] and its stderr up to [`STDERR_MAX`];
//! * the caller ([`super::cache`]) then requires a wasmtime component artifact that this
//!   engine deserialises (wasmtime checks the ELF image, the recorded target, CPU features,
//!   tunables, wasm features and wasmtime version) before it runs it or stores it.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cache::{PLUGIN_MAX_BYTES, insecure_permissions};
use super::engine;

/// The compiler's file name, beside `contrail-cni-plugin`.
pub const COMPILER_FILE: &str = "contrail-cni-plugin-compile";
/// The compiler's exit codes (0: the artifact is on stdout).
pub const EXIT_INVALID: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_ENGINE: i32 = 3;
/// Largest artifact accepted back (artifacts are ~3x their `.wasm`; a plugin may have
/// [`PLUGIN_MAX_BYTES`]).
pub const ARTIFACT_MAX_BYTES: usize = 8 * PLUGIN_MAX_BYTES as usize;
/// Address space the compiler may map. Compiling a stock plugin (~200 KB) peaks at ~20 MiB
/// resident (`/usr/bin/time -v`); the cap leaves room for plugins up to [`PLUGIN_MAX_BYTES`]
/// while stopping a compile bomb from taking the node's memory.
pub const MEMORY_LIMIT_BYTES: u64 = 2 << 30;
/// Bytes of the compiler's stderr kept for the error message.
pub const STDERR_MAX: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(
        "the plugin compiler {path} cannot be used ({why}); it belongs beside {host} (`make install` and install.sh put it there)"
    )]
    Unavailable {
        path: PathBuf,
        host: String,
        why: String,
    },
    #[error("compilation took longer than {ms} ms (wasm.compile-timeout-ms)")]
    Timeout { ms: u128 },
    /// The compiler rejected the plugin (not a valid component, too large): permanent.
    #[error("{0}")]
    Invalid(String),
    /// The compiler is of another release (engine fingerprint mismatch).
    #[error("the plugin compiler {path} is from another release than this host: {msg}")]
    Engine { path: PathBuf, msg: String },
    /// Crashed, was killed (memory cap), or answered something that is not an artifact.
    #[error("the plugin compiler failed: {0}")]
    Failed(String),
}

/// The compiler binary to run. Only [`Compiler::beside_exe`] is used by the CNI path and the
/// CLI; [`Compiler::at`] is for tests and benchmarks of this library.
#[derive(Debug, Clone)]
pub struct Compiler {
    path: PathBuf,
}

impl Compiler {
    /// [`COMPILER_FILE`] in the directory of the running executable, as the kernel reports it
    /// (`/proc/self/exe`: symlinks such as `mesos -> contrail-cni-plugin` resolved). Nothing a
    /// caller, a plugin or a config supplies takes part.
    pub fn beside_exe() -> Result<Compiler, CompileError> {
        let exe = std::env::current_exe().map_err(|e| CompileError::Unavailable {
            path: PathBuf::from(COMPILER_FILE),
            host: "contrail-cni-plugin".into(),
            why: format!("the host's own path is unknown: {e}"),
        })?;
        let dir = exe.parent().unwrap_or(Path::new("/"));
        Ok(Compiler {
            path: dir.join(COMPILER_FILE),
        })
    }

    pub fn at(path: impl Into<PathBuf>) -> Compiler {
        Compiler { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn unavailable(&self, why: String) -> CompileError {
        let host = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "contrail-cni-plugin".into());
        CompileError::Unavailable {
            path: self.path.clone(),
            host,
            why,
        }
    }

    /// The file to exec: the compiler with symlinks resolved, a regular executable file that
    /// nobody but root or us could have replaced, in a directory likewise.
    fn check(&self) -> Result<PathBuf, CompileError> {
        use std::os::unix::fs::PermissionsExt;
        let real = match std::fs::canonicalize(&self.path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.unavailable("not installed".into()));
            }
            Err(e) => return Err(self.unavailable(e.to_string())),
        };
        let meta = std::fs::metadata(&real).map_err(|e| self.unavailable(e.to_string()))?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(self.unavailable("not an executable file".into()));
        }
        if let Some(why) = insecure_permissions(&real, &meta) {
            return Err(self.unavailable(why));
        }
        Ok(real)
    }

    /// Compiles `wasm` in a child process bounded as the module doc says; the artifact's bytes,
    /// not yet verified.
    pub fn compile(&self, wasm: &[u8], timeout: Duration) -> Result<Vec<u8>, CompileError> {
        let program = self.check()?;
        let deadline = Instant::now() + timeout;
        let cpu_secs = timeout.as_secs() + 2;
        let parent = std::process::id() as libc::pid_t;
        let mut cmd = Command::new(&program);
        cmd.arg("--engine")
            .arg(engine::fingerprint_hex())
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: between fork and exec only async-signal-safe calls (setrlimit, prctl,
        // getppid, _exit), no allocation.
        unsafe {
            cmd.pre_exec(move || {
                let limit = |res, v: u64| {
                    let l = libc::rlimit {
                        rlim_cur: v,
                        rlim_max: v,
                    };
                    if libc::setrlimit(res, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                };
                limit(libc::RLIMIT_AS, MEMORY_LIMIT_BYTES)?;
                limit(libc::RLIMIT_CPU, cpu_secs)?;
                limit(libc::RLIMIT_CORE, 0)?;
                limit(libc::RLIMIT_FSIZE, 0)?;
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // The host died before the death signal was armed.
                if libc::getppid() != parent {
                    libc::_exit(127);
                }
                // No descriptor of the host (a netlink socket, the log file) reaches the
                // compiler, even one a library opened without O_CLOEXEC: mark all but stdio
                // close-on-exec (Linux 5.11+; older kernels keep relying on O_CLOEXEC).
                libc::syscall(
                    libc::SYS_close_range,
                    3 as libc::c_uint,
                    libc::c_uint::MAX,
                    libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
                );
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| self.unavailable(e.to_string()))?;
        let out = exchange(&mut child, wasm, deadline);
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                // Our own child, by pid; reaped so nothing is left behind.
                let _ = child.kill();
                let _ = child.wait();
                return Err(match e {
                    Exchange::Timeout => CompileError::Timeout {
                        ms: timeout.as_millis(),
                    },
                    Exchange::TooLarge => CompileError::Failed(format!(
                        "more than {ARTIFACT_MAX_BYTES} bytes of output"
                    )),
                    Exchange::Io(e) => CompileError::Failed(format!("talking to it: {e}")),
                });
            }
        };
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(CompileError::Timeout {
                        ms: timeout.as_millis(),
                    });
                }
                Err(e) => return Err(CompileError::Failed(format!("waiting for it: {e}"))),
            }
        };
        let msg = first_line(&out.stderr);
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(0), _) if !out.stdout.is_empty() => Ok(out.stdout),
            (Some(0), _) => Err(CompileError::Failed("it exited 0 with no artifact".into())),
            (Some(EXIT_INVALID), _) => Err(CompileError::Invalid(msg)),
            (Some(EXIT_ENGINE), _) => Err(CompileError::Engine {
                path: self.path.clone(),
                msg,
            }),
            (Some(c), _) => Err(CompileError::Failed(format!("exit code {c}: {msg}"))),
            (None, Some(sig)) => Err(CompileError::Failed(format!(
                "killed by signal {sig} (limits: {} MiB of address space, {cpu_secs} s of CPU){}",
                MEMORY_LIMIT_BYTES >> 20,
                if msg.is_empty() {
                    String::new()
                } else {
                    format!(": {msg}")
                }
            ))),
            (None, None) => Err(CompileError::Failed(format!("ended with {status}"))),
        }
    }
}

/// The compiler's first stderr line, escaped (it may echo plugin bytes).
fn first_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    super::runtime::escape(text.lines().next().unwrap_or("").trim(), 512)
}

struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

enum Exchange {
    Timeout,
    TooLarge,
    Io(std::io::Error),
}

fn nonblocking(fd: libc::c_int) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Feeds `input` to the child's stdin while draining its stdout (bounded) and stderr (kept up
/// to [`STDERR_MAX`]), on this thread, until both outputs close or the deadline passes.
fn exchange(child: &mut Child, input: &[u8], deadline: Instant) -> Result<Output, Exchange> {
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take().ok_or(Exchange::TooLarge)?;
    let mut stderr = child.stderr.take().ok_or(Exchange::TooLarge)?;
    for fd in [stdout.as_raw_fd(), stderr.as_raw_fd()]
        .into_iter()
        .chain(stdin.as_ref().map(|s| s.as_raw_fd()))
    {
        nonblocking(fd).map_err(Exchange::Io)?;
    }
    let mut out = Output {
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let (mut written, mut out_open, mut err_open) = (0usize, true, true);
    let mut buf = vec![0u8; 64 << 10];
    while out_open || err_open {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Exchange::Timeout);
        }
        let mut fds = Vec::with_capacity(3);
        let poll_fd = |fd: libc::c_int, events| libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        if out_open {
            fds.push(poll_fd(stdout.as_raw_fd(), libc::POLLIN));
        }
        if err_open {
            fds.push(poll_fd(stderr.as_raw_fd(), libc::POLLIN));
        }
        if let Some(s) = &stdin {
            fds.push(poll_fd(s.as_raw_fd(), libc::POLLOUT));
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` is a valid array of pollfd for the call's duration.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Exchange::Io(e));
        }
        for p in &fds {
            if p.revents == 0 {
                continue;
            }
            if p.fd == stdout.as_raw_fd() {
                match stdout.read(&mut buf) {
                    Ok(0) => out_open = false,
                    Ok(k) => {
                        if out.stdout.len() + k > ARTIFACT_MAX_BYTES {
                            return Err(Exchange::TooLarge);
                        }
                        out.stdout.extend_from_slice(&buf[..k]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Exchange::Io(e)),
                }
            } else if p.fd == stderr.as_raw_fd() {
                match stderr.read(&mut buf) {
                    Ok(0) => err_open = false,
                    Ok(k) => {
                        let room = STDERR_MAX.saturating_sub(out.stderr.len());
                        out.stderr.extend_from_slice(&buf[..k.min(room)]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Exchange::Io(e)),
                }
            } else if let Some(s) = &mut stdin {
                match s.write(&input[written..]) {
                    Ok(k) => written += k,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // The compiler stopped reading (it refused the input): its exit status
                    // and stderr say why.
                    Err(_) => written = input.len(),
                }
                if written >= input.len() {
                    // EOF for the compiler.
                    stdin = None;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_compiler_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let c = Compiler::at(d.path().join(COMPILER_FILE));
        let e = c
            .compile(b"\0asm", Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not installed") && e.contains(COMPILER_FILE) && e.contains("beside"),
            "{e}"
        );
    }

    #[test]
    fn the_compiler_is_found_beside_the_executable_only() {
        let c = Compiler::beside_exe().unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(c.path().parent(), exe.parent());
        assert_eq!(c.path().file_name().unwrap(), COMPILER_FILE);
    }

    /// A stand-in that is not a compiler at all: a script that floods stdout, one that
    /// hangs, one that others may write. The host bounds each.
    #[test]
    fn a_misbehaving_compiler_is_bounded() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str, mode: u32| {
            let p = d.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            Compiler::at(p)
        };
        let t = Duration::from_secs(5);
        let flood = script("flood", "cat >/dev/null; exec cat /dev/zero", 0o755);
        let e = flood.compile(b"x", t).unwrap_err().to_string();
        assert!(e.contains("bytes of output"), "{e}");
        let hang = script("hang", "exec sleep 30", 0o755);
        let started = Instant::now();
        let e = hang.compile(b"x", Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, CompileError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(20));
        let open = script("open", "cat", 0o777);
        let e = open.compile(b"x", t).unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
        let refuses = script(
            "refuses",
            "cat >/dev/null; echo 'bad plugin\nmore' >&2; exit 1",
            0o755,
        );
        let e = refuses.compile(b"x", t).unwrap_err();
        assert!(
            matches!(&e, CompileError::Invalid(m) if m == "bad plugin"),
            "{e:?}"
        );
        // Stdin is the plugin's bytes, all of them, even when larger than a pipe's buffer;
        // the environment is empty.
        let echo = script(
            "echo",
            "[ -z \"$HOME$CARGO$RUST_BACKTRACE\" ] || exit 9; cat",
            0o755,
        );
        let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        assert_eq!(echo.compile(&big, t).unwrap(), big);
        // A descriptor the host opened without O_CLOEXEC does not reach the compiler.
        let marker = d.path().join("leak-marker");
        std::fs::write(&marker, b"").unwrap();
        let c = std::ffi::CString::new(marker.to_str().unwrap()).unwrap();
        // SAFETY: open/close of a descriptor this test owns.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
        assert!(fd >= 0);
        let leak = script(
            "leak",
            &format!(
                "[ \"$(readlink /proc/$$/fd/{fd})\" = \"{}\" ] && exit 9; cat",
                marker.display()
            ),
            0o755,
        );
        let r = leak.compile(b"x", t);
        // SAFETY: as above.
        unsafe { libc::close(fd) };
        assert_eq!(r.unwrap(), b"x");
    }
}
