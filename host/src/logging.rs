//! Logging: tracing to the config's log file (`log-file`/`log-level`, or the Contrail
//! section's `contrail.log-file`/`contrail.log-level`), else stderr at `warn`. Never stdout:
//! stdout carries only the CNI result or error.
//!
//! The log file is size-capped: before an entry would take it past `log-max-bytes`, it is
//! renamed to `<file>.1` (`.1` to `.2` ..., `log-keep` of them kept) and a new one started.
//! Every CNI invocation is its own process appending to the same file, so each entry is written
//! under an exclusive `flock` on `<file>.lock`: check the size, rotate if needed, append (the
//! file is opened `O_APPEND`). One process therefore rotates per overflow (the others see the
//! new, small file when they get the lock), and the file never exceeds the cap by more than one
//! entry (only an entry larger than the cap on its own does).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use std::os::fd::{AsRawFd, RawFd};
use tracing_subscriber::fmt::MakeWriter;

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
        let cap = settings.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        let keep = settings.keep.unwrap_or(DEFAULT_KEEP);
        match RotatingFile::open(path, cap, keep) {
            Ok(f) => {
                let _ = builder.with_writer(f).try_init();
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

pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_KEEP: u32 = 3;

/// The size-capped log file, shared by concurrent processes (see the module comment).
pub struct RotatingFile {
    path: PathBuf,
    /// `log-max-bytes`; 0 turns rotation off.
    cap: u64,
    keep: u32,
    state: Mutex<Open>,
}

struct Open {
    file: File,
    lock: File,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

impl RotatingFile {
    pub fn open(path: &Path, cap: u64, keep: u32) -> std::io::Result<RotatingFile> {
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o640)
            .open(PathBuf::from(lock_path))?;
        Ok(RotatingFile {
            path: path.to_owned(),
            cap,
            keep,
            state: Mutex::new(Open {
                file: open_append(path)?,
                lock,
            }),
        })
    }

    /// Appends one entry, rotating first when it would take the file past the cap.
    pub fn append(&self, entry: &[u8]) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let _held = Held::lock(&st.lock)?;
        // Another process may have rotated since our open: write to the file now at `path`.
        let current = std::fs::metadata(&self.path);
        let ours = st.file.metadata()?;
        let size = match current {
            Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => m.len(),
            _ => {
                st.file = open_append(&self.path)?;
                st.file.metadata()?.len()
            }
        };
        if self.cap > 0 && size > 0 && size + entry.len() as u64 > self.cap {
            self.rotate()?;
            st.file = open_append(&self.path)?;
        }
        st.file.write_all(entry)
    }

    /// `<file>.keep-1` → `<file>.keep` ... `<file>` → `<file>.1`; the oldest is dropped.
    /// Called with the lock held.
    fn rotate(&self) -> std::io::Result<()> {
        if self.keep == 0 {
            return std::fs::remove_file(&self.path);
        }
        for i in (1..self.keep).rev() {
            match std::fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))
    }
}

/// An exclusive `flock` on the lock file, released on drop (on the fd we keep open, so no
/// dup/close per entry).
struct Held(RawFd);

impl Held {
    fn lock(f: &File) -> std::io::Result<Held> {
        let fd = f.as_raw_fd();
        loop {
            // SAFETY: `fd` is an open file of ours for the duration of the call.
            if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
                return Ok(Held(fd));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: the fd is still open (its `File` outlives this guard, both under one mutex).
        unsafe { libc::flock(self.0, libc::LOCK_UN) };
    }
}

/// One event's text, written as one entry when tracing drops the writer.
pub struct Entry<'a> {
    to: &'a RotatingFile,
    buf: Vec<u8>,
}

impl Write for Entry<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            // Logging must not fail the invocation; a lost line is all a failure costs.
            let _ = self.to.append(&self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = Entry<'a>;
    fn make_writer(&'a self) -> Entry<'a> {
        Entry {
            to: self,
            buf: Vec::with_capacity(256),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many writers with their own open file (as separate processes have), a small cap, enough
    /// rotations kept to see every entry: each entry is in exactly one file, no file is above
    /// the cap, and every rotated file was full when rotated (a rotation done twice for one
    /// overflow would leave a nearly empty one).
    #[test]
    fn concurrent_writers_rotate_once_per_overflow_and_never_exceed_the_cap() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cni.log");
        const WRITERS: usize = 8;
        const ENTRIES: usize = 200;
        const CAP: u64 = 4096;
        std::thread::scope(|s| {
            for w in 0..WRITERS {
                let path = &path;
                s.spawn(move || {
                    let f = RotatingFile::open(path, CAP, 10_000).unwrap();
                    for i in 0..ENTRIES {
                        let mut e = f.make_writer();
                        writeln!(e, "writer {w:02} entry {i:04} {}", "x".repeat(i % 50)).unwrap();
                    }
                });
            }
        });
        let mut seen = std::collections::HashSet::new();
        let mut files = 0;
        let longest = ("writer 00 entry 0000 ".len() + 49 + 1) as u64;
        for i in 0.. {
            let p = if i == 0 {
                path.clone()
            } else {
                rotated(&path, i)
            };
            let Ok(text) = std::fs::read_to_string(&p) else {
                break;
            };
            files += 1;
            let len = text.len() as u64;
            assert!(len <= CAP, "{} is {len} bytes", p.display());
            if i > 0 {
                assert!(len > CAP - longest, "{} is only {len} bytes", p.display());
            }
            for line in text.lines() {
                assert!(seen.insert(line.to_owned()), "duplicated: {line}");
            }
        }
        assert_eq!(seen.len(), WRITERS * ENTRIES);
        assert!(files > 10, "{files} files");
    }

    /// The cost of one entry (flock, two stats, append), for docs/BENCHMARKS.md; prints, asserts
    /// nothing. `cargo test -p contrail-cni-host --lib append_cost -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn append_cost() {
        let tmp = tempfile::tempdir().unwrap();
        let line = format!("{}\n", "z".repeat(120));
        for (what, cap) in [("no rotation", 0), ("rotating every ~8 entries", 1024)] {
            let f = RotatingFile::open(&tmp.path().join(format!("{cap}.log")), cap, 3).unwrap();
            let n = 20_000;
            let t = std::time::Instant::now();
            for _ in 0..n {
                f.append(line.as_bytes()).unwrap();
            }
            let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            println!("{what}: {us:.2} us per 121-byte entry over {n}");
        }
        let mut plain = open_append(&tmp.path().join("plain.log")).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..20_000 {
            plain.write_all(line.as_bytes()).unwrap();
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / 20_000.0;
        println!("plain O_APPEND write: {us:.2} us per entry");
    }

    #[test]
    fn only_keep_rotations_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cni.log");
        let f = RotatingFile::open(&path, 100, 2).unwrap();
        for i in 0..50 {
            f.append(format!("line {i:03} {}\n", "y".repeat(20)).as_bytes())
                .unwrap();
        }
        assert!(rotated(&path, 1).exists() && rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists());
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.ends_with(&format!("line 049 {}\n", "y".repeat(20))));
    }

    #[test]
    fn levels() {
        assert_eq!(level(Some("debug")), LevelFilter::DEBUG);
        assert_eq!(level(Some("INFO")), LevelFilter::INFO);
        assert_eq!(level(Some("nonsense")), LevelFilter::WARN);
        assert_eq!(level(None), LevelFilter::WARN);
    }
}
