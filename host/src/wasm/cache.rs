//! Compiled-artifact cache.
//!
//! A cached artifact is native code that wasmtime maps executable, so it is only ever loaded
//! after these checks (anything else is a miss: logged, rebuilt, never executed):
//! * the file name is `<blake3(wasm)>-<engine digest>.cwasm`, so a swapped `.wasm` or a new
//!   engine/host build is simply another entry;
//! * the file is the artifact followed by a trailer holding the magic, the format version,
//!   both of those digests in full, the artifact length and blake3 of the artifact; all must
//!   match (the hash is computed over the file's mapped pages on every load);
//! * the directory and the file must be owned by us or root and not group/world-writable,
//!   since anyone who can write there could otherwise plant code.
//!
//! Entries are written to a temp file in the same directory and renamed into place, so a
//! concurrent ADD sees either nothing or a whole entry, and an entry's inode is never written
//! after the rename. That is what lets a load map the file instead of copying it: the verified
//! file is opened once, and wasmtime maps that same open file (through `/proc/self/fd`), so
//! what was hashed is what runs. (The artifact comes first because wasmtime maps a whole file
//! and expects its ELF image at offset 0; bytes after the ELF image are not looked at.) When
//! the directory cannot be used the plugin is compiled in memory (slow, but correct) with a
//! warning.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::engine::compatibility_digest;

/// Where artifacts go when the config names no `wasm.cache-dir`.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/contrail-cni/wasm";

const MAGIC: &[u8; 8] = b"CCNIWASM";
/// 2: trailer after the artifact (1 had a header before it).
const FORMAT: u32 = 2;
/// Length of the trailer after the artifact.
pub const TRAILER_LEN: usize = 8 + 4 + 32 + 32 + 8 + 32;

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
    #[error("Wasm engine unavailable: {0}")]
    Engine(String),
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
fn trusted(meta: &fs::Metadata) -> bool {
    let me = nix::unistd::geteuid().as_raw();
    (meta.uid() == me || meta.uid() == 0) && meta.mode() & 0o022 == 0
}

/// The cache directory, created if needed; `None` (with a warning) when it cannot be used.
fn usable_dir(dir: &Path) -> Option<&Path> {
    if !dir.exists()
        && let Err(e) = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
    {
        tracing::warn!(dir = %dir.display(), "Wasm cache dir cannot be created ({e}); compiling in memory");
        return None;
    }
    match fs::metadata(dir) {
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
    compat: &[u8; 32],
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
    if &h[44..76] != compat {
        return Err("built by another engine");
    }
    if u64::from_le_bytes(h[76..84].try_into().expect("8")) != artifact.len() as u64 {
        return Err("length mismatch (truncated or extended)");
    }
    if blake3::hash(artifact).as_bytes() != &h[84..116] {
        return Err("artifact digest mismatch (corrupt)");
    }
    Ok(artifact)
}

fn encode(source: &[u8; 32], compat: &[u8; 32], artifact: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(artifact.len() + TRAILER_LEN);
    out.extend_from_slice(artifact);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(source);
    out.extend_from_slice(compat);
    out.extend_from_slice(&(artifact.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(artifact).as_bytes());
    out
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
    compat: &[u8; 32],
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
    let artifact = verify(map.bytes(), source, compat)?;
    // The same open file, not the path: a rename over the entry in between cannot swap in
    // unverified bytes.
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    // SAFETY: the file holds exactly what `precompile_component` produced with this engine
    // configuration (artifact digest, engine digest and source digest checked above, in a
    // directory only we/root can write), followed by our trailer, which wasmtime ignores (it
    // reads the ELF image through its section table). The inode is never written after it was
    // renamed into place.
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
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Loads the component at `wasm_path`: from a verified cache entry when there is one, else by
/// compiling it (and storing the artifact when the cache dir is usable).
pub fn load(
    engine: &Engine,
    wasm_path: &Path,
    cache_dir: Option<&Path>,
) -> Result<Loaded, LoadError> {
    let wasm = fs::read(wasm_path).map_err(|source| LoadError::Read {
        path: wasm_path.to_owned(),
        source,
    })?;
    load_bytes(engine, wasm_path, &wasm, cache_dir)
}

/// [`load`] with the bytes already read (`wasm_path` names them in messages).
pub fn load_bytes(
    engine: &Engine,
    wasm_path: &Path,
    wasm: &[u8],
    cache_dir: Option<&Path>,
) -> Result<Loaded, LoadError> {
    // Never accept a ready-made artifact as a plugin: that would run unverified native code.
    if Engine::detect_precompiled(wasm).is_some() {
        return Err(LoadError::Precompiled {
            path: wasm_path.to_owned(),
        });
    }
    let source = *blake3::hash(wasm).as_bytes();
    let compat = compatibility_digest(engine);
    let dir = cache_dir.and_then(usable_dir);
    let entry = dir.map(|d| d.join(format!("{}-{}.cwasm", hex(&source), hex(&compat[..8]))));

    if let Some(entry) = &entry {
        match load_entry(engine, entry, &source, &compat) {
            Ok(Some(component)) => {
                return Ok(Loaded {
                    component,
                    origin: Origin::Cache,
                    entry: Some(entry.clone()),
                });
            }
            Ok(None) => {}
            Err(why) => {
                tracing::warn!(entry = %entry.display(), "Wasm cache entry rejected: {why}; rebuilding");
                // Remove it now so a failed rebuild does not leave a known-bad file behind.
                let _ = fs::remove_file(entry);
            }
        }
    }

    let started = std::time::Instant::now();
    let artifact = engine
        .precompile_component(wasm)
        .map_err(|e| LoadError::Compile {
            path: wasm_path.to_owned(),
            reason: format!("{e:#}"),
        })?;
    tracing::info!(plugin = %wasm_path.display(), ms = started.elapsed().as_secs_f64() * 1e3, "compiled Wasm plugin");
    // SAFETY: `artifact` was just produced by this engine from these bytes.
    let component =
        unsafe { Component::deserialize(engine, &artifact) }.map_err(|e| LoadError::Compile {
            path: wasm_path.to_owned(),
            reason: format!("{e:#}"),
        })?;
    let mut stored = false;
    if let Some(entry) = &entry {
        match write_atomic(entry, &encode(&source, &compat, &artifact)) {
            Ok(()) => stored = true,
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
            Err("artifact digest mismatch (corrupt)")
        );
        let mut magic = good;
        magic[8] = b'X';
        assert_eq!(verify(&magic, &s, &c), Err("bad magic"));
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
