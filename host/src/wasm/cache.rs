//! Compiled-artifact cache.
//!
//! A cached artifact is native code that wasmtime maps executable, so it is only ever loaded
//! after these checks (anything else is a miss: logged, rebuilt, never executed):
//! * the file name is `<blake3(wasm)>-<engine digest>.cwasm`, so a swapped `.wasm` or a new
//!   engine/host build is simply another entry;
//! * the file starts with a header holding the magic, the format version, both of those
//!   digests in full, the artifact length and blake3 of the artifact; all must match;
//! * the directory and the file must be owned by us or root and not group/world-writable,
//!   since anyone who can write there could otherwise plant code.
//!
//! Entries are written to a temp file in the same directory and renamed into place, so a
//! concurrent ADD sees either nothing or a whole entry. When the directory cannot be used the
//! plugin is compiled in memory (slow, but correct) with a warning.

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
const FORMAT: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 32 + 32 + 8 + 32;

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
    if bytes.len() < HEADER_LEN {
        return Err("truncated header");
    }
    let (h, artifact) = bytes.split_at(HEADER_LEN);
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
    let mut out = Vec::with_capacity(HEADER_LEN + artifact.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(source);
    out.extend_from_slice(compat);
    out.extend_from_slice(&(artifact.len() as u64).to_le_bytes());
    out.extend_from_slice(blake3::hash(artifact).as_bytes());
    out.extend_from_slice(artifact);
    out
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
        match fs::read(entry) {
            Ok(bytes) => {
                let meta_ok = fs::metadata(entry).is_ok_and(|m| m.is_file() && trusted(&m));
                let checked = if meta_ok {
                    verify(&bytes, &source, &compat)
                } else {
                    Err("not trusted (owner/mode)")
                };
                match checked {
                    Ok(artifact) => {
                        // SAFETY: the bytes are exactly what `precompile_component` produced
                        // with this engine configuration (digest, engine digest and source
                        // digest checked above, in a directory only we/root can write).
                        match unsafe { Component::deserialize(engine, artifact) } {
                            Ok(component) => {
                                return Ok(Loaded {
                                    component,
                                    origin: Origin::Cache,
                                    entry: Some(entry.clone()),
                                });
                            }
                            Err(e) => {
                                tracing::warn!(entry = %entry.display(), "cached Wasm artifact refused by the engine ({e}); rebuilding")
                            }
                        }
                    }
                    Err(why) => {
                        tracing::warn!(entry = %entry.display(), "Wasm cache entry rejected: {why}; rebuilding")
                    }
                }
                // Remove it now so a failed rebuild does not leave a known-bad file behind.
                let _ = fs::remove_file(entry);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(entry = %entry.display(), "cannot read Wasm cache entry ({e}); rebuilding")
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
        assert!(verify(&good[..HEADER_LEN - 1], &s, &c).is_err());
        assert!(verify(&good[..good.len() - 1], &s, &c).is_err());
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            verify(&flipped, &s, &c),
            Err("artifact digest mismatch (corrupt)")
        );
        let mut magic = good;
        magic[0] = b'X';
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
