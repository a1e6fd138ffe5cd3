//! Compiled-artifact cache.
//!
//! A cached artifact is native code that wasmtime maps executable, so it is only ever loaded
//! after these checks (anything else is a miss: logged, removed, rebuilt, never executed):
//! * the file name is `<plugin stem>-<path digest>.<blake3(wasm)>-<engine fingerprint>.cwasm`,
//!   so a swapped `.wasm` or a new engine/host build is simply another entry (and storing it
//!   prunes the entries of the plugin's older builds; the dir keeps at most
//!   [`CACHE_MAX_ENTRIES`]);
//! * the file is the artifact followed by a trailer holding the magic, the format version,
//!   both of those digests in full, the artifact length and an XXH3-128 checksum of the
//!   artifact; all must match, the checksum over every byte of the file's mapped pages on
//!   every load;
//! * the directory and the file must be owned by us or root and not group/world-writable.
//!
//! What protects an entry from what (the threat model):
//! * **Tampering** (someone planting or editing native code): only the ownership and mode
//!   checks stop it. Whoever passes them (root, or the host's own user) can replace the host
//!   binary itself, so no check inside the host could stop them; an unkeyed digest in the
//!   trailer would not either, since they can rewrite the trailer too. That is why the
//!   artifact checksum does not need to be cryptographic.
//! * **Corruption** (disk or filesystem errors, a torn or partial copy, a truncated file, a
//!   tool rewriting the file): the checksum over every byte on every load, plus the length
//!   and magic at the end (a truncated file loses its trailer). A 128-bit checksum misses a
//!   random corruption with probability 2^-128. Writes go to a temp file that is fsynced and
//!   renamed into place, so a crash leaves nothing or a whole entry.
//! * **Staleness** (an entry of another plugin build or another engine): the blake3 of the
//!   `.wasm` bytes the host read (cryptographic: it binds the code that runs to the bytes the
//!   operator installed) and the engine fingerprint, in the name and the trailer; wasmtime
//!   also checks the artifact's recorded settings (target, CPU features, tunables, version).
//! * **A lying compiler**: artifacts come from the sibling compiler process
//!   ([`super::compiler`]); its output is stored only after this engine deserialised it, and
//!   the trailer's source digest is the host's own, over the bytes it sent.
//!
//! Entries are written to a temp file in the same directory and renamed into place, so a
//! concurrent ADD sees either nothing or a whole entry, and an entry's inode is never written
//! after the rename. That is what lets a load map the file instead of copying it: the verified
//! file is opened once, and wasmtime maps that same open file (through `/proc/self/fd`), so
//! what was checked is what runs. (The artifact comes first because wasmtime maps a whole file
//! and expects its ELF image at offset 0; bytes after the ELF image are not looked at.) When
//! the directory cannot be used the plugin is compiled and loaded from memory (slow, but
//! correct) with a warning. A compile runs under a `flock` beside the entry (one compile per
//! artifact across concurrent ADDs) and a wall-time limit.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Engine, Precompiled};

use super::compiler::{CompileError, Compiler};
use super::engine::fingerprint;
use super::stamp;

/// Where artifacts go when the config names no `wasm.cache-dir`.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/contrail-cni/wasm";

const MAGIC: &[u8; 8] = b"CCNIWASM";
/// 3: XXH3-128 checksum, engine fingerprint (2: blake3 of the artifact, wasmtime's
/// compatibility hash; 1 had a header before the artifact).
const FORMAT: u32 = 3;
/// Largest plugin file accepted (the stock plugins are a few hundred KiB).
pub const PLUGIN_MAX_BYTES: u64 = 16 << 20;
/// Entries kept in a cache dir (builds of other plugin files); the oldest go first.
pub const CACHE_MAX_ENTRIES: usize = 64;
/// Length of the trailer after the artifact.
pub const TRAILER_LEN: usize = 8 + 4 + 32 + 32 + 8 + 16;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is a precompiled artifact; give the plugin's .wasm")]
    Precompiled { path: PathBuf },
    #[error("{path} is not a valid WebAssembly component: {reason}")]
    Compile { path: PathBuf, reason: String },
    /// Not in the cache, and the compiler could not produce it (missing, timed out, crashed,
    /// of another release, or its output does not load).
    #[error("{path} is not compiled for this host and cannot be compiled now: {source}")]
    Compiler { path: PathBuf, source: CompileError },
    #[error("Wasm engine unavailable: {0}")]
    Engine(String),
    #[error("refused: {why} (wasm.allow-insecure-permissions: true loads it anyway)")]
    Insecure { why: String },
}

/// How a component was obtained (reported by `plugin compile` and the benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Loaded from a verified cache entry.
    Cache,
    /// Compiled now; `stored` says whether the artifact went into the cache.
    Compiled { stored: bool },
}

pub struct Loaded {
    pub component: Component,
    pub origin: Origin,
    /// The cache entry (whether or not it could be written).
    pub entry: Option<PathBuf>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// True when `meta` is owned by us or root and not writable by group or others.
pub(super) fn trusted(meta: &fs::Metadata) -> bool {
    let me = nix::unistd::geteuid().as_raw();
    (meta.uid() == me || meta.uid() == 0) && meta.mode() & 0o022 == 0
}

/// The cache directory, created if needed; `None` (with a warning) when it cannot be used.
fn usable_dir(dir: &Path) -> Option<&Path> {
    // One `stat` when the dir exists (every ADD); creating it is the first run's path.
    let meta = match fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Err(e) = fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
            {
                tracing::warn!(dir = %dir.display(), "Wasm cache dir cannot be created ({e}); compiling in memory");
                return None;
            }
            fs::metadata(dir)
        }
        other => other,
    };
    match meta {
        Ok(m) if m.is_dir() && trusted(&m) => Some(dir),
        Ok(_) => {
            tracing::warn!(dir = %dir.display(), "Wasm cache dir is not a directory owned by us/root and closed to others; not using it");
            None
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "Wasm cache dir unusable ({e}); compiling in memory");
            None
        }
    }
}

/// The artifact inside a cache file, if every check passes; otherwise why not.
fn verify<'a>(
    bytes: &'a [u8],
    source: &[u8; 32],
    engine_fp: &[u8; 32],
) -> Result<&'a [u8], &'static str> {
    if bytes.len() < TRAILER_LEN {
        return Err("truncated trailer");
    }
    let (artifact, h) = bytes.split_at(bytes.len() - TRAILER_LEN);
    if &h[..8] != MAGIC {
        return Err("bad magic");
    }
    if u32::from_le_bytes(h[8..12].try_into().expect("4")) != FORMAT {
        return Err("other format version");
    }
    if &h[12..44] != source {
        return Err("built from other wasm bytes");
    }
    if &h[44..76] != engine_fp {
        return Err("built by another engine");
    }
    if u64::from_le_bytes(h[76..84].try_into().expect("8")) != artifact.len() as u64 {
        return Err("length mismatch (truncated or extended)");
    }
    if checksum(artifact) != h[84..100] {
        return Err("artifact checksum mismatch (corrupt)");
    }
    Ok(artifact)
}

fn encode(source: &[u8; 32], engine_fp: &[u8; 32], artifact: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(artifact.len() + TRAILER_LEN);
    out.extend_from_slice(artifact);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(source);
    out.extend_from_slice(engine_fp);
    out.extend_from_slice(&(artifact.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(artifact));
    out
}

/// The corruption check over a whole artifact (see the module doc for why XXH3-128 and not
/// a cryptographic hash: 4x cheaper on every load, and no weaker against what it is for).
pub fn checksum(artifact: &[u8]) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(artifact).to_le_bytes()
}

/// A read-only private mapping of a whole file (no copy; pages come from the page cache).
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn new(file: &fs::File, len: usize) -> std::io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        if len == 0 {
            return Ok(Mapped {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a fresh read-only private mapping of an open file; nothing else aliases it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives. Entries are never
        // written in place (new entries are renamed over old ones), so the pages do not change
        // under us; only root or our own user could do that, and they can run code anyway.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: unmapping our own mapping; no slice of it outlives `self`.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

/// Loads a verified entry: opened once; trust (owner/mode) checked on the open file; the
/// trailer and the artifact digest checked over a mapping of it; then wasmtime maps the same
/// open file. `Ok(None)` when there is no entry; `Err(why)` when it must be rebuilt.
fn load_entry(
    engine: &Engine,
    entry: &Path,
    source: &[u8; 32],
    engine_fp: &[u8; 32],
) -> Result<Option<Component>, String> {
    use std::os::fd::AsRawFd;
    let file = match fs::File::open(entry) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it ({e})")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat it ({e})"))?;
    if !(meta.is_file() && trusted(&meta)) {
        return Err("not trusted (owner/mode)".into());
    }
    let len = usize::try_from(meta.len()).map_err(|_| "too large".to_owned())?;
    let map = Mapped::new(&file, len).map_err(|e| format!("cannot map it ({e})"))?;
    let artifact = verify(map.bytes(), source, engine_fp)?;
    // The same open file, not the path: a rename over the entry in between cannot swap in
    // unverified bytes.
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    // SAFETY: the file holds what this host verified and stored from the compiler's output
    // for this engine configuration (checksum, engine fingerprint and source digest checked
    // above, in a directory only we/root can write), followed by our trailer, which wasmtime
    // ignores (it reads the ELF image through its section table). The inode is never written
    // after it was renamed into place.
    let loaded = if by_fd.exists() {
        unsafe { Component::deserialize_file(engine, &by_fd) }
    } else {
        // No /proc: copy the verified bytes instead.
        unsafe { Component::deserialize(engine, artifact) }
    };
    loaded
        .map(Some)
        .map_err(|e| format!("refused by the engine ({e:#})"))
}

/// Writes `data` to `path` atomically (temp file in the same dir, fsync, rename). The temp
/// file never survives a failure.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_replacing(path, data, true)
}

/// Replaces `path` with `data` through a temp file in the same dir and a rename, so a reader
/// sees the old file or the whole new one; `sync` makes the data durable before the rename
/// (a hint that is checked when read can do without). The temp file never survives a failure.
pub(super) fn write_replacing(path: &Path, data: &[u8], sync: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{nanos}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    let res = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// How [`load`] may obtain a component.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// Where artifacts go; `None` compiles in memory.
    pub cache_dir: Option<&'a Path>,
    /// Wall time a compile may take before the load fails.
    pub compile_timeout: Duration,
    /// Load a `.wasm` that a non-root user (other than us) could have written.
    pub allow_insecure_permissions: bool,
    /// The compiler to run on a miss; `None`: [`Compiler::beside_exe`], the only choice of
    /// the CNI path and the CLI (tests and benchmarks of the library name the built one).
    pub compiler: Option<&'a Compiler>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            cache_dir: None,
            compile_timeout: Duration::from_millis(crate::cni::config::DEFAULT_COMPILE_TIMEOUT_MS),
            allow_insecure_permissions: false,
            compiler: None,
        }
    }
}

/// Why a plugin file (or its directory) could be replaced by someone who is neither root nor
/// us; `None` when it could not. A plugin decides where a container's traffic goes, so a
/// writable plugin is as good as a writable host binary.
pub fn insecure_permissions(path: &Path, meta: &fs::Metadata) -> Option<String> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Some(format!(
            "{} is owned by uid {}, not root",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "{} is writable by group or others (mode {:o})",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match fs::metadata(dir) {
        Ok(d) if d.uid() != me && d.uid() != 0 => Some(format!(
            "its directory {} is owned by uid {}, not root",
            dir.display(),
            d.uid()
        )),
        // A sticky dir still lets only the owner rename over the file.
        Ok(d) if d.mode() & 0o022 != 0 && d.mode() & 0o1000 == 0 => Some(format!(
            "its directory {} is writable by group or others (mode {:o})",
            dir.display(),
            d.mode() & 0o7777
        )),
        Ok(_) => None,
        Err(e) => Some(format!(
            "its directory {} cannot be checked: {e}",
            dir.display()
        )),
    }
}

/// Opens a plugin file and checks who could have written it and its size; its bytes are
/// read later through the same descriptor, only when they are needed.
fn open_plugin(
    wasm_path: &Path,
    allow_insecure: bool,
) -> Result<(fs::File, fs::Metadata), LoadError> {
    let read_err = |source| LoadError::Read {
        path: wasm_path.to_owned(),
        source,
    };
    let file = fs::File::open(wasm_path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if let Some(why) = insecure_permissions(wasm_path, &meta) {
        if !allow_insecure {
            return Err(LoadError::Insecure { why });
        }
        tracing::warn!(plugin = %wasm_path.display(), "loading a plugin with insecure permissions (wasm.allow-insecure-permissions): {why}");
    }
    if meta.len() > PLUGIN_MAX_BYTES {
        return Err(LoadError::Compile {
            path: wasm_path.to_owned(),
            reason: format!(
                "{} bytes, more than a plugin may have ({PLUGIN_MAX_BYTES})",
                meta.len()
            ),
        });
    }
    Ok((file, meta))
}

/// The bytes of an opened plugin file (at most [`PLUGIN_MAX_BYTES`] + 1, so a file that grew
/// after the check is still refused by the compiler's size limit rather than read whole).
fn read_opened(
    mut file: &fs::File,
    meta: &fs::Metadata,
    wasm_path: &Path,
) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let mut wasm = Vec::with_capacity(meta.len() as usize);
    Read::by_ref(&mut file)
        .take(PLUGIN_MAX_BYTES + 1)
        .read_to_end(&mut wasm)
        .map_err(|source| LoadError::Read {
            path: wasm_path.to_owned(),
            source,
        })?;
    Ok(wasm)
}

/// Loads the component at `wasm_path`: from a verified cache entry when there is one, else by
/// compiling it (and storing the artifact when the cache dir is usable). The entry is found
/// by the plugin's source digest, which comes from the file's stamp when the file is the
/// version the stamp describes ([`super::stamp`]), else from reading and hashing the file.
pub fn load(engine: &Engine, wasm_path: &Path, opts: &Options<'_>) -> Result<Loaded, LoadError> {
    let (file, meta) = open_plugin(wasm_path, opts.allow_insecure_permissions)?;
    let dir = opts.cache_dir.and_then(usable_dir);
    let prefix = entry_prefix(wasm_path);
    let id = stamp::FileId::of(&meta);
    if let Some(d) = dir
        && let Some(source) = stamp::recall(d, &prefix, &id)
    {
        let engine_fp = fingerprint();
        let entry = entry_path(d, &prefix, &source, &engine_fp);
        if let Some(component) = try_entry(engine, &entry, &source, &engine_fp) {
            return Ok(Loaded {
                component,
                origin: Origin::Cache,
                entry: Some(entry),
            });
        }
        // No entry for that digest (evicted, or rejected and removed): the slow path reads
        // the bytes, so what is compiled is what the file holds now.
    }
    let wasm = read_opened(&file, &meta, wasm_path)?;
    let source = source_digest(wasm_path, &wasm)?;
    let loaded = load_source(engine, wasm_path, &wasm, &source, dir, &prefix, opts)?;
    if let Some(d) = dir {
        stamp::remember(d, &prefix, &id, &source, &file);
    }
    Ok(loaded)
}

/// The cache file names of one plugin file: `<stem>-<path digest>.` then
/// `<blake3(wasm)>-<engine fingerprint>.cwasm` for each build, and `.lock` for the compile lock.
/// Keying by the plugin's path lets a new build of the same file prune the old entries without
/// touching other plugins' (or another network's same-named plugin's).
fn entry_prefix(wasm_path: &Path) -> String {
    let stem: String = wasm_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    let abs = std::path::absolute(wasm_path).unwrap_or_else(|_| wasm_path.to_owned());
    // A name, not a check (XXH3 for the reason `engine::fingerprint` gives).
    let digest = xxhash_rust::xxh3::xxh3_128(abs.as_os_str().as_encoded_bytes()).to_le_bytes();
    format!("{stem}-{}", hex(&digest[..6]))
}

/// An exclusive `flock` on `<prefix>.lock`: one process compiles a plugin, the others wait and
/// then load its entry. Released when dropped (or when the process dies).
struct CompileLock(#[allow(dead_code)] fs::File);

impl CompileLock {
    fn acquire(path: &Path, wait: Duration) -> Option<CompileLock> {
        use std::os::fd::AsRawFd;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .ok()?;
        let deadline = std::time::Instant::now() + wait;
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Some(CompileLock(f));
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Runs the compiler on `wasm` and checks what it answered: a component artifact that this
/// engine deserialises (wasmtime checks its ELF image and recorded settings). Returns the
/// artifact and the component loaded from it.
fn compile_verified(
    engine: &Engine,
    wasm_path: &Path,
    wasm: &[u8],
    opts: &Options<'_>,
) -> Result<(Vec<u8>, Component), LoadError> {
    let beside;
    let compiler = match opts.compiler {
        Some(c) => c,
        None => {
            beside = Compiler::beside_exe().map_err(|source| LoadError::Compiler {
                path: wasm_path.to_owned(),
                source,
            })?;
            &beside
        }
    };
    let failed = |source| LoadError::Compiler {
        path: wasm_path.to_owned(),
        source,
    };
    let artifact = compiler
        .compile(wasm, opts.compile_timeout)
        .map_err(|e| match e {
            CompileError::Invalid(reason) => LoadError::Compile {
                path: wasm_path.to_owned(),
                reason,
            },
            other => failed(other),
        })?;
    if Engine::detect_precompiled(&artifact) != Some(Precompiled::Component) {
        return Err(failed(CompileError::Failed(
            "its output is not a component artifact".into(),
        )));
    }
    // SAFETY: the bytes come from the compiler installed beside this binary (trusted as the
    // binary itself is: see `Compiler::check`), for this engine's fingerprint; wasmtime checks
    // the image and its recorded settings against this engine before anything of it runs.
    let component = unsafe { Component::deserialize(engine, &artifact) }.map_err(|e| {
        failed(CompileError::Failed(format!(
            "its output does not load in this host: {e:#}"
        )))
    })?;
    Ok((artifact, component))
}

/// Removes the entries of other builds of the same plugin file (same prefix), then the
/// oldest entries beyond [`CACHE_MAX_ENTRIES`]. Best effort.
fn evict(dir: &Path, prefix: &str, keep: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut others: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for e in rd.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".cwasm") || path == keep {
            continue;
        }
        if name.starts_with(&format!("{prefix}.")) {
            let _ = fs::remove_file(&path);
            continue;
        }
        let mtime = e
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        others.push((mtime, path));
    }
    if others.len() >= CACHE_MAX_ENTRIES {
        others.sort();
        for (_, p) in others.iter().take(others.len() + 1 - CACHE_MAX_ENTRIES) {
            let _ = fs::remove_file(p);
            // The plugin's compile lock and source stamp are named by its prefix (the name up
            // to the first dot), not by the build.
            if let Some(prefix) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split_once('.'))
                .map(|(prefix, _)| prefix)
            {
                let _ = fs::remove_file(dir.join(format!("{prefix}.lock")));
                let _ = fs::remove_file(dir.join(format!("{prefix}.src")));
            }
        }
    }
}

/// The cache key of a plugin's bytes, after refusing a ready-made artifact (which would run
/// unverified native code).
fn source_digest(wasm_path: &Path, wasm: &[u8]) -> Result<[u8; 32], LoadError> {
    if Engine::detect_precompiled(wasm).is_some() {
        return Err(LoadError::Precompiled {
            path: wasm_path.to_owned(),
        });
    }
    Ok(*blake3::hash(wasm).as_bytes())
}

fn entry_path(dir: &Path, prefix: &str, source: &[u8; 32], engine_fp: &[u8; 32]) -> PathBuf {
    dir.join(format!(
        "{prefix}.{}-{}.cwasm",
        hex(source),
        hex(&engine_fp[..8])
    ))
}

/// The entry's component if it passes every check; a rejected entry is removed (and logged)
/// so that a failed rebuild does not leave a known-bad file behind.
fn try_entry(
    engine: &Engine,
    entry: &Path,
    source: &[u8; 32],
    engine_fp: &[u8; 32],
) -> Option<Component> {
    match load_entry(engine, entry, source, engine_fp) {
        Ok(c) => c,
        Err(why) => {
            tracing::warn!(entry = %entry.display(), "Wasm cache entry rejected: {why}; rebuilding");
            let _ = fs::remove_file(entry);
            None
        }
    }
}

/// [`load`] with the bytes already read (`wasm_path` names them in messages).
pub fn load_bytes(
    engine: &Engine,
    wasm_path: &Path,
    wasm: &[u8],
    opts: &Options<'_>,
) -> Result<Loaded, LoadError> {
    let source = source_digest(wasm_path, wasm)?;
    let dir = opts.cache_dir.and_then(usable_dir);
    load_source(
        engine,
        wasm_path,
        wasm,
        &source,
        dir,
        &entry_prefix(wasm_path),
        opts,
    )
}

fn load_source(
    engine: &Engine,
    wasm_path: &Path,
    wasm: &[u8],
    source: &[u8; 32],
    dir: Option<&Path>,
    prefix: &str,
    opts: &Options<'_>,
) -> Result<Loaded, LoadError> {
    let engine_fp = fingerprint();
    let entry = dir.map(|d| entry_path(d, prefix, source, &engine_fp));
    let try_entry = |entry: &Path| try_entry(engine, entry, source, &engine_fp);
    if let Some(entry) = &entry
        && let Some(component) = try_entry(entry)
    {
        return Ok(Loaded {
            component,
            origin: Origin::Cache,
            entry: Some(entry.clone()),
        });
    }
    // Not cached: one compile per artifact across concurrent ADDs. Whoever gets the lock
    // compiles; the others find the entry when they get it. Waiting is bounded by the compile
    // timeout (plus slack); a lock that cannot be had means compiling here anyway.
    let _lock = match (dir, &entry) {
        (Some(d), Some(entry)) => {
            let lock = CompileLock::acquire(
                &d.join(format!("{prefix}.lock")),
                opts.compile_timeout + Duration::from_secs(1),
            );
            if lock.is_some()
                && let Some(component) = try_entry(entry)
            {
                return Ok(Loaded {
                    component,
                    origin: Origin::Cache,
                    entry: Some(entry.clone()),
                });
            }
            lock
        }
        _ => None,
    };

    let started = std::time::Instant::now();
    let (artifact, component) = compile_verified(engine, wasm_path, wasm, opts)?;
    tracing::info!(plugin = %wasm_path.display(), ms = started.elapsed().as_secs_f64() * 1e3, "compiled Wasm plugin");
    let mut stored = false;
    if let (Some(entry), Some(d)) = (&entry, dir) {
        match write_atomic(entry, &encode(source, &engine_fp, &artifact)) {
            Ok(()) => {
                stored = true;
                evict(d, prefix, entry);
            }
            Err(e) => {
                tracing::warn!(entry = %entry.display(), "cannot store the compiled Wasm plugin ({e}); it will be compiled again next time")
            }
        }
    }
    Ok(Loaded {
        component,
        origin: Origin::Compiled { stored },
        entry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks() {
        let s = [1u8; 32];
        let c = [2u8; 32];
        let good = encode(&s, &c, b"artifact");
        assert_eq!(verify(&good, &s, &c), Ok(&b"artifact"[..]));
        assert!(verify(&good, &[9; 32], &c).is_err());
        assert!(verify(&good, &s, &[9; 32]).is_err());
        assert!(verify(&good[..TRAILER_LEN - 1], &s, &c).is_err());
        assert!(verify(&good[1..], &s, &c).is_err());
        let mut extended = good.clone();
        extended.insert(0, 0);
        assert!(verify(&extended, &s, &c).is_err());
        let mut flipped = good.clone();
        flipped[0] ^= 1;
        assert_eq!(
            verify(&flipped, &s, &c),
            Err("artifact checksum mismatch (corrupt)")
        );
        let mut magic = good;
        magic[8] = b'X';
        assert_eq!(verify(&magic, &s, &c), Err("bad magic"));
    }

    #[test]
    fn eviction_prunes_older_builds_and_bounds_the_dir() {
        let d = tempfile::tempdir().unwrap();
        let keep = d.path().join("p-aaaa.new-x.cwasm");
        fs::write(&keep, b"k").unwrap();
        fs::write(d.path().join("p-aaaa.old-x.cwasm"), b"o").unwrap();
        fs::write(d.path().join("p-aaaa.lock"), b"").unwrap();
        fs::write(d.path().join("p-aaaa.src"), b"").unwrap();
        for i in 0..CACHE_MAX_ENTRIES + 5 {
            fs::write(d.path().join(format!("other{i}-bbbb.h-x.cwasm")), b"x").unwrap();
            fs::write(d.path().join(format!("other{i}-bbbb.lock")), b"").unwrap();
            fs::write(d.path().join(format!("other{i}-bbbb.src")), b"").unwrap();
        }
        evict(d.path(), "p-aaaa", &keep);
        let names: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"p-aaaa.new-x.cwasm".to_owned()));
        assert!(
            !names.contains(&"p-aaaa.old-x.cwasm".to_owned()),
            "older build pruned"
        );
        let entries = names.iter().filter(|n| n.ends_with(".cwasm")).count();
        assert!(entries <= CACHE_MAX_ENTRIES, "{entries} entries");
        let has = |n: String| names.contains(&n);
        assert!(has("p-aaaa.lock".into()) && has("p-aaaa.src".into()));
        // An evicted plugin's lock and stamp go with its entry; a kept one's stay.
        for i in 0..CACHE_MAX_ENTRIES + 5 {
            let kept = has(format!("other{i}-bbbb.h-x.cwasm"));
            assert_eq!(has(format!("other{i}-bbbb.lock")), kept, "lock of {i}");
            assert_eq!(has(format!("other{i}-bbbb.src")), kept, "stamp of {i}");
        }
    }

    #[test]
    fn atomic_write_leaves_no_temp_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.cwasm");
        write_atomic(&p, b"abc").unwrap();
        write_atomic(&p, b"def").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"def");
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // Into a missing dir: error, and nothing created.
        assert!(write_atomic(&d.path().join("no/such/x"), b"a").is_err());
    }
}
