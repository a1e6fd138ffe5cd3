//! Network namespaces without ever moving the process: a namespace is opened as a file, checked
//! to really be a *network* namespace, and work that must happen inside it runs on a scoped
//! thread that `setns()`es itself and is then thrown away. A failed switch-back can therefore
//! never leave the process (or a reused thread) in the wrong namespace (Go's `ns.Do` lesson).
//! The exception is [`NetNs::visit`], for work that only makes a socket there (a link lookup, a
//! netlink connection): the calling thread enters the namespace and comes back, and if it
//! cannot come back the process aborts.

use std::fs::File;
use std::io::Write;
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

    /// Whether a link named `name` exists in this namespace: one `SIOCGIFINDEX` ioctl
    /// (`if_nametoindex`) on a socket made inside it, on the calling thread (see
    /// [`NetNs::visit`]). The delegate path's only question about the container's namespace,
    /// answered without a netlink connection, an async runtime or a thread.
    pub fn has_link(&self, name: &str) -> Result<bool, NetError> {
        // A name with a NUL cannot name a link (and `CNI_IFNAME` cannot carry one anyway).
        let Ok(cname) = std::ffi::CString::new(name) else {
            return Ok(false);
        };
        let lookup = move || {
            // SAFETY: `cname` is a valid NUL-terminated string for the call's duration.
            if unsafe { libc::if_nametoindex(cname.as_ptr()) } != 0 {
                return Ok(true);
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENODEV) => Ok(false),
                errno => Err(NetError::Netlink {
                    op: format!("get link {name}"),
                    errno,
                    msg: e.to_string(),
                }),
            }
        };
        if self.is_current() {
            lookup()
        } else {
            self.visit(lookup)
        }
    }

    /// Runs `f` on the calling thread after switching it into this namespace, then switches it
    /// back. For work that only needs a socket made inside the namespace (sockets keep the
    /// namespace they were made in): unlike [`NetNs::run`] no thread is started, which costs
    /// ~0.05 ms, and under CPU contention a new thread can wait milliseconds for a core. `f`
    /// must not start threads or processes (they would inherit the namespace).
    ///
    /// If the switch back fails the process aborts: going on with a thread in the container's
    /// namespace (whose later sockets and children would land there) is never an option. It
    /// cannot fail in practice: the thread was in that namespace a moment ago and holds an open
    /// handle to it, and `setns` into this one just succeeded with the same privileges.
    pub fn visit<T>(&self, f: impl FnOnce() -> Result<T, NetError>) -> Result<T, NetError> {
        const OWN: &str = "/proc/thread-self/ns/net";
        let own = File::open(OWN).map_err(|source| NetError::NetnsOpen {
            path: PathBuf::from(OWN),
            source,
        })?;
        setns(self.fd(), CloneFlags::CLONE_NEWNET).map_err(|e| NetError::Setns {
            path: self.path.clone(),
            source: e.into(),
        })?;
        // Restores the namespace when `f` returns and also when it panics.
        let _back = Back {
            own,
            from: &self.path,
        };
        f()
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

/// [`NetNs::visit`]'s way back to the thread's own namespace, taken on drop.
struct Back<'a> {
    own: File,
    from: &'a Path,
}

impl Drop for Back<'_> {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.own, CloneFlags::CLONE_NEWNET) {
            // Nothing may run in the wrong namespace, not even the error path's logging.
            let _ = writeln!(
                std::io::stderr(),
                "contrail-cni-plugin: cannot return from network namespace {}: {e}; aborting",
                self.from.display()
            );
            std::process::abort();
        }
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
    fn has_link_answers_for_the_own_namespace() {
        let Ok(ns) = NetNs::open(Path::new("/proc/self/ns/net")) else {
            return;
        };
        assert!(ns.has_link("lo").unwrap(), "every namespace has lo");
        assert!(!ns.has_link("nosuchlink0").unwrap());
    }

    /// `visit` runs its closure in the other namespace and comes back, also when the closure
    /// panics. The other namespace is made by the test (root only; skipped otherwise).
    #[test]
    fn visit_enters_and_comes_back_even_from_a_panic() {
        use std::os::unix::fs::MetadataExt;
        let here = || std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        // A fresh namespace, kept alive by an open handle once its thread is gone.
        let Some(handle) = std::thread::spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).ok()?;
            File::open("/proc/thread-self/ns/net").ok()
        })
        .join()
        .unwrap() else {
            return;
        };
        let ns = NetNs::open(Path::new(&format!("/proc/self/fd/{}", handle.as_raw_fd()))).unwrap();
        let (own, other) = (here(), handle.metadata().unwrap().ino());
        assert_ne!(own, other);
        assert_eq!(ns.visit(|| Ok(here())).unwrap(), other, "inside");
        assert_eq!(here(), own, "back");
        assert!(!ns.has_link("eth0").unwrap() && ns.has_link("lo").unwrap());
        let r =
            std::panic::catch_unwind(|| ns.visit(|| -> Result<(), NetError> { panic!("in f") }));
        assert!(r.is_err());
        assert_eq!(here(), own, "back after a panic");
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
