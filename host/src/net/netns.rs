//! Network namespaces without ever moving the process: a namespace is opened as a file, checked
//! to really be a *network* namespace, and work that must happen inside it runs on a scoped
//! thread that `setns()`es itself and is then thrown away. A failed switch-back can therefore
//! never leave the process (or a reused thread) in the wrong namespace (Go's `ns.Do` lesson).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

use super::NetError;

/// `NSFS_MAGIC` from `<linux/magic.h>`: the filesystem type of `/proc/<pid>/ns/*` and of the
/// bind mounts under `/run/netns`.
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// `NS_GET_NSTYPE` ioctl (`_IO(0xb7, 0x3)`): which kind of namespace an nsfs file is.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// An open network namespace handle.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens `path` and verifies that it is a network namespace (nsfs + `NS_GET_NSTYPE`), so a
    /// wrong `CNI_NETNS` (a plain file, a mount namespace...) is refused before anything happens.
    pub fn open(path: &Path) -> Result<NetNs, NetError> {
        let file = File::open(path).map_err(|source| NetError::NetnsOpen {
            path: path.to_owned(),
            source,
        })?;
        let st = nix::sys::statfs::fstatfs(&file).map_err(|e| NetError::NetnsOpen {
            path: path.to_owned(),
            source: e.into(),
        })?;
        #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs
        let magic = st.filesystem_type().0 as i64;
        if magic != NSFS_MAGIC {
            return Err(NetError::NotNetns {
                path: path.to_owned(),
            });
        }
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd.
        let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
        if kind != libc::CLONE_NEWNET {
            return Err(NetError::NotNetns {
                path: path.to_owned(),
            });
        }
        Ok(NetNs {
            file,
            path: path.to_owned(),
        })
    }

    /// Whether this is the calling thread's own network namespace (no thread needs to join it
    /// then; joining one's own namespace still needs CAP_SYS_ADMIN).
    pub fn is_current(&self) -> bool {
        let (Ok(mine), Ok(this)) = (
            std::fs::metadata("/proc/thread-self/ns/net"),
            self.file.metadata(),
        ) else {
            return false;
        };
        use std::os::unix::fs::MetadataExt;
        mine.dev() == this.dev() && mine.ino() == this.ino()
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Runs `f` on a fresh thread that has joined this namespace. Sockets created there stay in
    /// this namespace after the thread ends, which is how the netlink connection is opened.
    pub fn run<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, NetError> + Send,
    ) -> Result<T, NetError> {
        let fd = self.fd();
        let path = &self.path;
        std::thread::scope(|s| {
            s.spawn(move || {
                setns(fd, CloneFlags::CLONE_NEWNET).map_err(|e| NetError::Setns {
                    path: path.clone(),
                    source: e.into(),
                })?;
                f()
            })
            .join()
            .map_err(|_| NetError::Panic)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_file_is_not_a_netns() {
        let err = NetNs::open(Path::new("/proc/self/status")).unwrap_err();
        assert!(matches!(err, NetError::NotNetns { .. }), "{err}");
    }

    #[test]
    fn a_missing_path_is_an_open_error() {
        let err = NetNs::open(Path::new("/nonexistent/ns")).unwrap_err();
        assert!(matches!(err, NetError::NetnsOpen { .. }), "{err}");
    }

    #[test]
    fn a_mount_namespace_is_not_a_netns() {
        match NetNs::open(Path::new("/proc/self/ns/mnt")) {
            Err(NetError::NotNetns { .. }) => {}
            // Unreadable where /proc is restricted: nothing to learn then.
            Err(NetError::NetnsOpen { .. }) => {}
            other => panic!("mnt ns accepted: {other:?}"),
        }
    }

    #[test]
    fn own_netns_opens_and_run_works() {
        let Ok(ns) = NetNs::open(Path::new("/proc/self/ns/net")) else {
            return;
        };
        assert!(ns.is_current());
        let v = ns.run(|| Ok(41 + 1)).unwrap();
        assert_eq!(v, 42);
    }
}
