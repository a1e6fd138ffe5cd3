//! Running a delegate CNI plugin the way libcni does: found by name in `CNI_PATH`, the same
//! environment with `CNI_COMMAND` set, the config on stdin, stderr relayed to ours, stdout
//! read as a result or an error, "text file busy" retried.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::Duration;

use crate::cni::Command;
use crate::cni::error::{CniError, DELEGATE_EXEC, DELEGATE_FAILED, INVALID_ENV};

/// libcni: up to 5 attempts, 1 s apart, when the binary is being written ("text file busy").
const BUSY_ATTEMPTS: u32 = 5;
const BUSY_WAIT: Duration = Duration::from_secs(1);
/// How much of the delegate's stderr we keep for an error message (all of it is relayed).
const STDERR_TAIL: usize = 4096;
/// A delegate's stdout larger than this is garbage.
const STDOUT_MAX: u64 = 4 << 20;

/// A plugin name must be a plain file name: a `type` with `/` could run anything.
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// True when the file `m` describes (`stat`ed through its symlinks) is this very executable:
/// a symlink such as `mesos`, a hard link, a bind mount or the path itself all have the device
/// and inode of `/proc/self/exe`.
fn is_self(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/exe").is_ok_and(|me| m.dev() == me.dev() && m.ino() == me.ino())
}

/// `type` looked up in the `CNI_PATH` dirs (first executable regular file wins). The host
/// itself is never a delegate: running it again as root with a config of someone else's
/// making would hand that config the host's privileges (and recurse).
pub fn find_in_path(name: &str, path: &[PathBuf]) -> Result<PathBuf, CniError> {
    let (found, meta) = find_executable(name, path)?;
    if is_self(&meta) {
        return Err(CniError::new(
            DELEGATE_EXEC,
            format!(
                "delegate plugin {name:?} is this host ({}); a network cannot delegate to itself",
                found.display()
            ),
        ));
    }
    Ok(found)
}

fn find_executable(name: &str, path: &[PathBuf]) -> Result<(PathBuf, std::fs::Metadata), CniError> {
    if path.is_empty() {
        return Err(
            CniError::new(INVALID_ENV, "required env variables [CNI_PATH] missing")
                .with_details(format!("needed to find the delegate plugin {name:?}")),
        );
    }
    for dir in path {
        let p = dir.join(name);
        if let Ok(m) = std::fs::metadata(&p)
            && m.is_file()
            && m.permissions().mode() & 0o111 != 0
        {
            return Ok((p, m));
        }
    }
    Err(CniError::new(
        DELEGATE_EXEC,
        format!("failed to find plugin {name:?} in path {path:?}"),
    ))
}

/// What a finished delegate printed.
#[derive(Debug)]
pub struct Output {
    pub stdout: Vec<u8>,
}

fn spawn(binary: &Path, command: Command, environ: &[(String, String)]) -> Result<Child, CniError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let res = Process::new(binary)
            .env_clear()
            .envs(environ.iter().map(|(k, v)| (k, v)))
            .env("CNI_COMMAND", command.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match res {
            Ok(c) => return Ok(c),
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < BUSY_ATTEMPTS => {
                tracing::debug!(plugin = %binary.display(), "text file busy; retrying");
                std::thread::sleep(BUSY_WAIT);
            }
            Err(e) => {
                return Err(CniError::new(
                    DELEGATE_EXEC,
                    format!("cannot run delegate {}: {e}", binary.display()),
                ));
            }
        }
    }
}

fn nonblocking(fd: &impl AsRawFd) -> std::io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, for the duration of the call.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Feeds `input` to the delegate's stdin while reading its stdout (up to [`STDOUT_MAX`], the
/// rest drained) and relaying its stderr to ours (the last [`STDERR_TAIL`] bytes kept), all on
/// this thread with `poll`, so a delegate that prints before it reads cannot deadlock against
/// us, and no thread is started per delegate run. Returns when both outputs are closed.
/// `meanwhile` runs once, as soon as the whole input is written: the delegate is working then,
/// so what it does costs the caller nothing.
fn exchange(
    child: &mut Child,
    input: &[u8],
    meanwhile: &mut dyn FnMut(),
) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut child_in = child.stdin.take();
    let (Some(mut child_out), Some(mut child_err)) = (child.stdout.take(), child.stderr.take())
    else {
        return Err(std::io::Error::other("delegate spawned without pipes"));
    };
    nonblocking(&child_out)?;
    nonblocking(&child_err)?;
    if let Some(i) = &child_in {
        nonblocking(i)?;
    }
    let (mut out, mut tail) = (Vec::new(), Vec::new());
    let mut ours = std::io::stderr();
    let (mut written, mut out_open, mut err_open) = (0usize, true, true);
    if input.is_empty() {
        child_in = None;
    }
    let mut meanwhile = Some(meanwhile);
    if child_in.is_none()
        && let Some(f) = meanwhile.take()
    {
        f();
    }
    let mut buf = [0u8; 8192];
    let pollfd = |fd: libc::c_int, events| libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    while out_open || err_open {
        // Closed entries are skipped by poll (negative fd).
        let mut fds = [
            pollfd(
                if out_open { child_out.as_raw_fd() } else { -1 },
                libc::POLLIN,
            ),
            pollfd(
                if err_open { child_err.as_raw_fd() } else { -1 },
                libc::POLLIN,
            ),
            pollfd(
                child_in.as_ref().map_or(-1, |i| i.as_raw_fd()),
                libc::POLLOUT,
            ),
        ];
        // SAFETY: `fds` is a valid pollfd array for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[0].revents != 0 {
            match child_out.read(&mut buf) {
                Ok(0) => out_open = false,
                // Beyond the cap the delegate's output is garbage: drained, not kept.
                Ok(k) if out.len() as u64 + k as u64 <= STDOUT_MAX => {
                    out.extend_from_slice(&buf[..k])
                }
                Ok(_) => {}
                Err(e) if retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if fds[1].revents != 0 {
            match child_err.read(&mut buf) {
                Ok(0) => err_open = false,
                Ok(k) => {
                    let _ = ours.write_all(&buf[..k]);
                    tail.extend_from_slice(&buf[..k]);
                    if tail.len() > STDERR_TAIL {
                        tail.drain(..tail.len() - STDERR_TAIL);
                    }
                }
                Err(e) if retry(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if fds[2].revents != 0
            && let Some(i) = &mut child_in
        {
            match i.write(&input[written..]) {
                Ok(k) => written += k,
                Err(e) if retry(&e) => {}
                // The delegate stopped reading (it exited or closed stdin): its exit status
                // and output say why.
                Err(_) => written = input.len(),
            }
            if written >= input.len() {
                // EOF for the delegate.
                child_in = None;
                if let Some(f) = meanwhile.take() {
                    f();
                }
            }
        }
    }
    Ok((out, tail))
}

fn retry(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
    )
}

/// A delegate that has been exec'd but not yet given its config. Starting it before the
/// config is ready lets its loader and runtime start-up (a Go plugin spends about a
/// millisecond there before it reads stdin) run beside the label translation. A CNI plugin
/// acts on its config (CNI SPEC.md, "Section 2: Execution Protocol"), so one that never got
/// it has done nothing: dropping a `Started` without [`Started::finish`] kills and reaps it.
pub struct Started {
    child: Option<Child>,
    name: String,
    command: Command,
}

/// Starts `binary` with `command` (its environment set, its stdin still open).
pub fn start(
    binary: &Path,
    command: Command,
    environ: &[(String, String)],
) -> Result<Started, CniError> {
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let child = spawn(binary, command, environ)?;
    Ok(Started {
        child: Some(child),
        name,
        command,
    })
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Never given a config (or the exchange failed): nothing to wait for. Its stdin
            // is closed first, so a reader of it ends even if the kill misses it (a script
            // plugin's child).
            drop(child.stdin.take());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `binary` with `command` and `stdin`: [`start`], then [`Started::finish`].
pub fn exec(
    binary: &Path,
    command: Command,
    environ: &[(String, String)],
    stdin: &[u8],
) -> Result<Output, CniError> {
    start(binary, command, environ)?.finish(stdin)
}

impl Started {
    /// The delegate's file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hands the delegate its config and waits for it. Exit 0 → its stdout. Otherwise the
    /// delegate's own CNI error (code/msg/details also carried in `details` as JSON): a code
    /// of the spec's range (below 100, CNI SPEC.md "Error") is passed through unchanged, so
    /// the runtime can act on it (11: try again later); a plugin-specific code (100+) becomes
    /// 102. Without a CNI error, 102 with its stderr when stdout is empty (libcni's fallback).
    pub fn finish(self, stdin: &[u8]) -> Result<Output, CniError> {
        self.finish_with(stdin, &mut || {})
    }

    /// [`Started::finish`], running `meanwhile` once the delegate has its whole config (while
    /// it works on it).
    pub fn finish_with(
        mut self,
        stdin: &[u8],
        meanwhile: &mut dyn FnMut(),
    ) -> Result<Output, CniError> {
        let name = std::mem::take(&mut self.name);
        let command = self.command;
        // Only `Drop` empties it, and `self` is consumed here.
        let child = self
            .child
            .as_mut()
            .expect("a started delegate holds its child");
        let (stdout, tail) = exchange(child, stdin, meanwhile).map_err(|e| {
            // `self` is dropped on return: the delegate is killed and reaped.
            CniError::new(DELEGATE_EXEC, format!("talking to delegate {name}: {e}"))
        })?;
        // Both outputs are closed: it has exited or is about to; wait for it either way.
        let mut child = self
            .child
            .take()
            .expect("a started delegate holds its child");
        let status = child.wait().map_err(|e| {
            CniError::new(DELEGATE_EXEC, format!("waiting for delegate {name}: {e}"))
        })?;
        judge(&name, command, status, stdout, tail)
    }
}

/// A finished delegate's exit status and output, as [`Started::finish`] describes.
fn judge(
    name: &str,
    command: Command,
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    tail: Vec<u8>,
) -> Result<Output, CniError> {
    if status.success() {
        return Ok(Output { stdout });
    }
    let how = match status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_owned(),
    };
    let parsed = serde_json::from_slice::<serde_json::Value>(&stdout).ok();
    if let Some(e) = parsed.as_ref().and_then(CniError::from_json) {
        let code = if e.code < 100 {
            e.code
        } else {
            DELEGATE_FAILED
        };
        return Err(CniError::new(
            code,
            format!(
                "delegate plugin {name} failed ({command}): {}",
                e.msg,
                command = command.as_str()
            ),
        )
        .with_details(
            serde_json::json!({"code": e.code, "msg": e.msg, "details": e.details}).to_string(),
        ));
    }
    let text = if stdout.iter().all(u8::is_ascii_whitespace) {
        tail
    } else {
        stdout
    };
    let text = String::from_utf8_lossy(&text);
    Err(CniError::new(
        DELEGATE_FAILED,
        format!(
            "delegate plugin {name} failed ({}, {how}) without a CNI error",
            command.as_str()
        ),
    )
    .with_details(text.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names() {
        for bad in ["", ".", "..", "../bin/sh", "/bin/sh", "a/b"] {
            assert!(!valid_plugin_name(bad), "{bad}");
        }
        assert!(valid_plugin_name("host-local"));
    }

    #[test]
    fn lookup() {
        let d = tempfile::tempdir().unwrap();
        let exe = d.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::write(d.path().join("plain"), "x").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = vec![PathBuf::from("/nonexistent"), d.path().to_owned()];
        assert_eq!(find_in_path("tool", &path).unwrap(), exe);
        assert_eq!(
            find_in_path("plain", &path).unwrap_err().code,
            DELEGATE_EXEC
        );
        assert_eq!(find_in_path("tool", &[]).unwrap_err().code, INVALID_ENV);
    }

    fn script(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("fake");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn runs_with_env_and_stdin() {
        let d = tempfile::tempdir().unwrap();
        let p = script(
            d.path(),
            r#"read line; echo "{\"cmd\":\"$CNI_COMMAND\",\"x\":\"$X\",\"in\":$line}""#,
        );
        let env = vec![
            ("X".to_owned(), "y".to_owned()),
            ("CNI_COMMAND".to_owned(), "ADD".to_owned()),
        ];
        let out = exec(&p, Command::Del, &env, b"{\"a\":1}\n").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"cmd": "DEL", "x": "y", "in": {"a": 1}})
        );
    }

    /// The poll loop's edge cases: a delegate that fills its stdout pipe several times over
    /// before it reads its stdin (no deadlock, everything kept), and one that exits without
    /// reading a stdin larger than a pipe holds (no hang, no SIGPIPE: its exit status is what
    /// counts).
    #[test]
    fn output_before_input_and_unread_input() {
        let d = tempfile::tempdir().unwrap();
        let p = script(
            d.path(),
            "head -c 200000 /dev/zero | tr '\\0' o; echo relayed >&2; wc -c",
        );
        let input = vec![b'i'; 300_000];
        let out = exec(&p, Command::Add, &[], &input).unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with(&"o".repeat(200_000)), "stdout kept whole");
        assert_eq!(text[200_000..].trim(), "300000", "stdin delivered whole");
        let p = script(d.path(), "exit 0");
        let out = exec(&p, Command::Add, &[], &vec![b'x'; 1 << 20]).unwrap();
        assert!(out.stdout.is_empty());
        let p = script(d.path(), "echo '{\"code\":11,\"msg\":\"later\"}'; exit 1");
        let e = exec(&p, Command::Add, &[], &vec![b'x'; 1 << 20]).unwrap_err();
        assert_eq!(e.code, 11, "{e:?}");
    }

    #[test]
    fn delegate_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = script(
            d.path(),
            r#"echo '{"cniVersion":"0.4.0","code":7,"msg":"no ips","details":"d"}'; exit 1"#,
        );
        let e = exec(&p, Command::Add, &[], b"{}").unwrap_err();
        assert_eq!(e.code, 7, "the spec's code passes through");
        assert!(e.msg.contains("no ips"), "{e:?}");
        let det: serde_json::Value = serde_json::from_str(&e.details).unwrap();
        assert_eq!(det["code"], 7);
        let p = script(d.path(), r#"echo '{"code":120,"msg":"own"}'; exit 1"#);
        let e = exec(&p, Command::Add, &[], b"{}").unwrap_err();
        assert_eq!(e.code, DELEGATE_FAILED, "a plugin-specific code is 102");
        let det: serde_json::Value = serde_json::from_str(&e.details).unwrap();
        assert_eq!(det["code"], 120);
        let p = script(d.path(), "echo boom >&2; exit 3");
        let e = exec(&p, Command::Add, &[], b"{}").unwrap_err();
        assert_eq!(e.code, DELEGATE_FAILED);
        assert!(e.msg.contains("exit status 3"), "{e:?}");
        assert_eq!(e.details, "boom");
    }
}
