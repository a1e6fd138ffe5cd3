//! Port files: `<config-dir>/<vm-name>/<vmi-uuid>`, whose content is exactly the `POST /vm` body
//! (Contrail's CNI writes them in `src/container/cni/contrail/vrouter.go`) because the agent
//! replays them as `POST /vm` bodies on restart (`src/vnsw/agent/port_ipc/port_ipc_handler.cc`).
//!
//! The per-VM directory is also the lock that orders the port subscriptions of one VM: the
//! agent's `DELETE /vm/<uuid>` drops *every* subscription of the VM, so with several
//! networks per container (eth0, eth1 ADDed/DELeted in parallel by Mesos) "write my file + POST"
//! and "remove my file + DELETE if it was the last" must not interleave. Both run under an
//! exclusive `flock` on the directory.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// The `POST /vm` body, in the Go CNI's field order (`contrailAddMsg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct PortMsg {
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub vm_id: String,
    #[serde(default)]
    pub vm_uuid: String,
    #[serde(default)]
    pub vm_name: String,
    #[serde(default)]
    pub host_ifname: String,
    #[serde(default)]
    pub vm_ifname: String,
    #[serde(default)]
    pub vm_namespace: String,
    #[serde(default)]
    pub vn_uuid: String,
    #[serde(default)]
    pub vmi_uuid: String,
}

impl PortMsg {
    /// Bytes as Go's `json.MarshalIndent(msg, "", "\t")` writes them.
    pub fn to_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        self.serialize(&mut ser).expect("plain strings serialize");
        out
    }

    /// The DELETE body the Go CNI sends: only `time`, `vm-id`, `vm-uuid` filled.
    pub fn delete_body(vm_id: &str, vm_uuid: &str) -> Vec<u8> {
        PortMsg {
            time: go_time_now(),
            vm_id: vm_id.into(),
            vm_uuid: vm_uuid.into(),
            ..Default::default()
        }
        .to_body()
    }
}

/// `time.Now().String()` without the monotonic part, UTC: `2020-09-01 10:00:00.123456789 +0000 UTC`.
/// The agent ignores `time`; it is there for operators and for byte-compatibility of the format.
pub fn go_time_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_go_time(d.as_secs() as i64, d.subsec_nanos())
}

pub fn format_go_time(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut frac = format!("{nanos:09}");
    while frac.ends_with('0') {
        frac.pop();
    }
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}{frac} +0000 UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Refuses names that would escape the config dir.
pub fn check_component(name: &str) -> std::io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name:?} cannot be a port file path component"),
        ));
    }
    Ok(())
}

/// The locked `<config-dir>/<vm-name>` directory. The lock is released on drop.
pub struct VmDir {
    path: PathBuf,
    _lock: Flock<File>,
}

impl VmDir {
    /// Locks the VM's directory, creating it (and the config dir) when `create`. Returns None
    /// when it does not exist and `create` is false.
    pub fn lock(config_dir: &Path, vm_name: &str, create: bool) -> std::io::Result<Option<VmDir>> {
        check_component(vm_name)?;
        let path = config_dir.join(vm_name);
        // Bounded: each retry means another process removed the directory between our open and
        // our lock, which needs a racing last-DEL every time.
        for _ in 0..64 {
            if create {
                std::fs::create_dir_all(&path)?;
            }
            let dir = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let lock = Flock::lock(dir, FlockArg::LockExclusive)
                .map_err(|(_, e)| std::io::Error::from(e))?;
            // The holder before us may have removed the directory: only a lock on the directory
            // that is still at `path` counts.
            let held = lock.metadata()?;
            match std::fs::metadata(&path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(Some(VmDir { path, _lock: lock }));
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(format!(
            "{}: kept disappearing while locking",
            path.display()
        )))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `<dir>/<vmi-uuid>` atomically: a temporary name the agent ignores (not a UUID),
    /// then rename. No fsync: a node crash loses the containers anyway, and the agent skips
    /// port files whose tap is gone.
    pub fn write(&self, vmi_uuid: &str, body: &[u8]) -> std::io::Result<PathBuf> {
        check_component(vmi_uuid)?;
        let dst = self.path.join(vmi_uuid);
        let tmp = self
            .path
            .join(format!(".{vmi_uuid}.tmp{}", std::process::id()));
        let res = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(body)?;
            std::fs::rename(&tmp, &dst)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res.map(|()| dst)
    }

    /// The port files (name, parsed content) in the directory; unparsable files are returned
    /// with a default message so they still count as "another port".
    pub fn entries(&self) -> std::io::Result<Vec<(String, PortMsg)>> {
        let mut out = vec![];
        for e in std::fs::read_dir(&self.path)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !e.file_type()?.is_file() {
                continue;
            }
            let msg = std::fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<PortMsg>(&b).ok())
                .unwrap_or_default();
            out.push((name, msg));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Ok(false) when already absent.
    pub fn remove(&self, vmi_uuid: &str) -> std::io::Result<bool> {
        check_component(vmi_uuid)?;
        match std::fs::remove_file(self.path.join(vmi_uuid)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the directory when no port file is left (leftover temporaries of crashed writers
    /// go with it). Returns whether it was removed. Called with the lock held.
    pub fn remove_if_empty(&self) -> std::io::Result<bool> {
        if !self.entries()?.is_empty() {
            return Ok(false);
        }
        for e in std::fs::read_dir(&self.path)? {
            let _ = std::fs::remove_file(e?.path());
        }
        match std::fs::remove_dir(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_go_marshal_indent_in_field_order() {
        let m = PortMsg {
            time: "t".into(),
            vm_id: "c".into(),
            vm_uuid: "u".into(),
            vm_name: "n".into(),
            host_ifname: "tapx".into(),
            vm_ifname: "eth0".into(),
            vm_namespace: "/ns".into(),
            vn_uuid: "vn".into(),
            vmi_uuid: "vmi".into(),
        };
        let s = String::from_utf8(m.to_body()).unwrap();
        assert_eq!(
            s,
            "{\n\t\"time\": \"t\",\n\t\"vm-id\": \"c\",\n\t\"vm-uuid\": \"u\",\n\t\"vm-name\": \"n\",\n\t\"host-ifname\": \"tapx\",\n\t\"vm-ifname\": \"eth0\",\n\t\"vm-namespace\": \"/ns\",\n\t\"vn-uuid\": \"vn\",\n\t\"vmi-uuid\": \"vmi\"\n}"
        );
        let back: PortMsg = serde_json::from_str(&s).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn go_time_format() {
        assert_eq!(format_go_time(0, 0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(
            format_go_time(1_598_954_400, 123_000_000),
            "2020-09-01 10:00:00.123 +0000 UTC"
        );
        assert_eq!(
            format_go_time(951_782_400, 5),
            "2000-02-29 00:00:00.000000005 +0000 UTC"
        );
    }

    #[test]
    fn lock_write_list_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("ports");
        assert!(VmDir::lock(&cfg, "vm1", false).unwrap().is_none());
        let d = VmDir::lock(&cfg, "vm1", true).unwrap().unwrap();
        d.write("a", b"{}").unwrap();
        d.write("b", b"{\"vm-id\":\"x\"}").unwrap();
        let e = d.entries().unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].1.vm_id, "x");
        assert!(!d.remove_if_empty().unwrap());
        assert!(d.remove("a").unwrap());
        assert!(!d.remove("a").unwrap());
        assert!(d.remove("b").unwrap());
        std::fs::write(d.path().join(".b.tmp1"), b"x").unwrap();
        assert!(d.remove_if_empty().unwrap());
        assert!(!cfg.join("vm1").exists());
        drop(d);
        assert!(VmDir::lock(&cfg, "../x", true).is_err());
    }

    #[test]
    fn lock_is_exclusive_across_handles() {
        let tmp = tempfile::tempdir().unwrap();
        let d = VmDir::lock(tmp.path(), "vm", true).unwrap().unwrap();
        let p = tmp.path().to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let d2 = VmDir::lock(&p, "vm", true).unwrap().unwrap();
            tx.send(()).unwrap();
            drop(d2);
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(100))
                .is_err()
        );
        // Removing the directory under the lock: the waiter must not use the stale one.
        d.remove_if_empty().unwrap();
        drop(d);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        t.join().unwrap();
        assert!(tmp.path().join("vm").is_dir());
    }
}
