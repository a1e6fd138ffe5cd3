//! The source digest of a plugin file, remembered by the file's identity, so that a load
//! does not read and hash the whole `.wasm` on every ADD.
//!
//! A cache entry is named by the blake3 of the plugin's bytes ([`super::cache`]). Computing it
//! means reading the file and hashing it, on every ADD, in a fresh process (about a third of
//! the cache load on a cold process). A stamp beside the entries (`<prefix>.src`) records
//! which digest a given *version* of the file had: device, inode, size, mtime and ctime, plus
//! the digest. When the open plugin file still has that identity, the digest is taken from the
//! stamp; anything else (no stamp, another identity, a malformed or untrusted stamp) reads and
//! hashes the file as before.
//!
//! Why an unchanged identity means unchanged bytes: every write to a file, and every rename
//! over it, changes its ctime (or its inode), and ctime cannot be set from user space; only
//! changing the system clock (root) could bring an old value back. The one blind spot is a
//! timestamp's granularity: two writes within one tick leave the same ctime (the "racy git"
//! problem). So a stamp is only written for a file whose ctime is at least [`SETTLED`] in
//! the past when it was hashed, and the file's identity is read again after the bytes were
//! read; any later write then gets a ctime of its own. A file changed within the last
//! [`SETTLED`] is simply hashed on every load until it settles.
//!
//! What it trusts: the stamp lives in the cache directory, which only root or our own user can
//! write (checked before use), and is itself checked for owner and mode. Whoever can write it
//! can write the cached native code too. The plugin's own permission checks are unchanged.
//! A stamp is a hint, not a record: it is written without `fsync` (a torn or empty stamp
//! fails its checks and the file is hashed again).

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a file must have been unchanged before its digest is remembered: longer than the
/// coarsest ctime granularity of a Linux file system in use for binaries (2 s on FAT).
pub const SETTLED: Duration = Duration::from_secs(3);

const MAGIC: &[u8; 8] = b"CCNISRC1";
const LEN: usize = 8 + 7 * 8 + 32;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    pub fn of(meta: &fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// True when the last change is at least [`SETTLED`] before `now` (and not in its future).
    pub fn settled(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let (Ok(secs), Ok(nanos)) = (u64::try_from(self.ctime.0), u32::try_from(self.ctime.1))
        else {
            return false;
        };
        if nanos >= 1_000_000_000 {
            return false;
        }
        let changed = Duration::new(secs, nanos);
        now.checked_sub(changed).is_some_and(|age| age >= SETTLED)
    }

    fn encode(&self, source: &[u8; 32]) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[..8].copy_from_slice(MAGIC);
        let fields = [
            self.dev,
            self.ino,
            self.size,
            self.mtime.0 as u64,
            self.mtime.1 as u64,
            self.ctime.0 as u64,
            self.ctime.1 as u64,
        ];
        for (i, f) in fields.iter().enumerate() {
            out[8 + i * 8..16 + i * 8].copy_from_slice(&f.to_le_bytes());
        }
        out[LEN - 32..].copy_from_slice(source);
        out
    }

    /// The digest in `stamp` if it was recorded for exactly this file version.
    fn decode(&self, stamp: &[u8]) -> Option<[u8; 32]> {
        if stamp.len() != LEN || &stamp[..8] != MAGIC {
            return None;
        }
        (stamp[..LEN - 32] == self.encode(&[0; 32])[..LEN - 32])
            .then(|| stamp[LEN - 32..].try_into().expect("32 bytes"))
    }
}

fn path(dir: &Path, prefix: &str) -> PathBuf {
    dir.join(format!("{prefix}.src"))
}

/// The remembered digest of the file version `id`, if the stamp has one and can be trusted.
pub fn recall(dir: &Path, prefix: &str, id: &FileId) -> Option<[u8; 32]> {
    let file = fs::File::open(path(dir, prefix)).ok()?;
    let meta = file.metadata().ok()?;
    if !(meta.is_file() && super::cache::trusted(&meta)) || meta.len() != LEN as u64 {
        return None;
    }
    // The length was checked on this descriptor, and a stamp is only ever replaced by a rename,
    // never written in place.
    let mut buf = [0u8; LEN];
    (&file).read_exact(&mut buf).ok()?;
    id.decode(&buf)
}

/// Remembers that the file version `id` (read through `file`) has digest `source`, when the
/// version is settled and `file` still has that identity after its bytes were read. Best
/// effort: a failure only means the next load hashes the file again.
pub fn remember(dir: &Path, prefix: &str, id: &FileId, source: &[u8; 32], file: &fs::File) {
    if !id.settled(SystemTime::now()) {
        return;
    }
    match file.metadata() {
        Ok(now) if FileId::of(&now) == *id => {}
        _ => return,
    }
    if let Err(e) = super::cache::write_replacing(&path(dir, prefix), &id.encode(source), false) {
        tracing::debug!(dir = %dir.display(), "cannot write the plugin's source stamp ({e})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> FileId {
        FileId {
            dev: 1,
            ino: 2,
            size: 3,
            mtime: (4, 5),
            ctime: (1_700_000_000, 6),
        }
    }

    #[test]
    fn a_stamp_answers_only_for_its_own_file_version() {
        let s = [7u8; 32];
        let stamp = id().encode(&s);
        assert_eq!(id().decode(&stamp), Some(s));
        let others = [
            FileId { dev: 9, ..id() },
            FileId { ino: 9, ..id() },
            FileId { size: 9, ..id() },
            FileId {
                mtime: (4, 9),
                ..id()
            },
            FileId {
                ctime: (1_700_000_000, 9),
                ..id()
            },
        ];
        for other in others {
            assert_eq!(other.decode(&stamp), None, "{other:?}");
        }
        assert_eq!(id().decode(&stamp[..LEN - 1]), None, "truncated");
        let mut bad = stamp;
        bad[0] = b'X';
        assert_eq!(id().decode(&bad), None, "magic");
        assert_eq!(id().decode(&[0; LEN]), None, "zeros");
    }

    #[test]
    fn only_a_settled_version_is_remembered() {
        let changed = UNIX_EPOCH + Duration::new(1_700_000_000, 6);
        assert!(id().settled(changed + SETTLED));
        assert!(!id().settled(changed + SETTLED - Duration::from_nanos(1)));
        assert!(
            !id().settled(changed - Duration::from_secs(60)),
            "ctime in the future"
        );
        let negative = FileId {
            ctime: (-1, 0),
            ..id()
        };
        assert!(!negative.settled(SystemTime::now()));
    }

    #[test]
    fn recall_and_remember_round_trip_through_the_cache_dir() {
        let d = tempfile::tempdir().unwrap();
        let wasm = d.path().join("p.wasm");
        fs::write(&wasm, b"\0asm").unwrap();
        let file = fs::File::open(&wasm).unwrap();
        let meta = file.metadata().unwrap();
        let fresh = FileId::of(&meta);
        // Just written: not settled, so nothing is remembered.
        remember(d.path(), "p-1", &fresh, &[1; 32], &file);
        assert_eq!(recall(d.path(), "p-1", &fresh), None);
        // An old version (as if written long ago) is remembered, for that identity only.
        let old = FileId {
            ctime: (meta.ctime() - 60, 0),
            ..fresh
        };
        // `file` does not have that identity any more: refused.
        remember(d.path(), "p-1", &old, &[1; 32], &file);
        assert_eq!(recall(d.path(), "p-1", &old), None);
        fs::write(path(d.path(), "p-1"), old.encode(&[1; 32])).unwrap();
        assert_eq!(recall(d.path(), "p-1", &old), Some([1; 32]));
        assert_eq!(recall(d.path(), "p-1", &fresh), None);
        assert_eq!(
            recall(d.path(), "p-2", &old),
            None,
            "another plugin's prefix"
        );
    }
}
