//! Our own record of each attachment, kept beside (never inside) Contrail's port files: the port
//! file format is the vRouter agent's (it replays every file under `config-dir` on restart) and
//! does not say which CNI network wrote it, while GC (CNI SPEC.md "GC") must only touch what its
//! own network made. ADD writes `<state-dir>/<network>/<container-id>=<ifname>` after the port
//! file; DEL removes it; GC and `sweep` read it to know what is theirs.
//!
//! Files are written atomically (temporary name, then rename), read with a size bound, and a
//! file that does not parse, or whose content disagrees with its name, is skipped (and logged):
//! a corrupt record makes its attachment unknown, never a reason to delete something.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::portfile::check_component;

/// A record is a few hundred bytes; anything far larger is not one of ours.
pub const MAX_RECORD_BYTES: u64 = 16 * 1024;

/// One attachment, as ADD made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Record {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub vm_name: String,
    pub vm_uuid: String,
    pub vmi_uuid: String,
    /// The veth's host end; empty in nested mode (no tap).
    pub tap: String,
    /// Nested mode: the VLAN sub-interface the container's macvlan sits on (what tells DEL
    /// whether another container still uses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_link: Option<String>,
    /// The `config-dir` the port file went to (networks may use different ones).
    pub config_dir: PathBuf,
}

/// The records under one state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

impl Store {
    pub fn new(dir: &Path) -> Store {
        Store {
            dir: dir.to_owned(),
        }
    }

    /// `<dir>/<network>/<container-id>=<ifname>`. A CNI container id has no `=` (CNI SPEC.md,
    /// "Parameters": alphanumerics, `_`, `.`, `-`), so the name splits back unambiguously.
    fn path(&self, network: &str, container_id: &str, ifname: &str) -> std::io::Result<PathBuf> {
        check_component(network)?;
        check_component(container_id)?;
        check_component(ifname)?;
        if container_id.contains('=') || network.starts_with('.') {
            return Err(invalid(format!(
                "cannot record {network:?}/{container_id:?}: not a CNI name"
            )));
        }
        Ok(self
            .dir
            .join(network)
            .join(format!("{container_id}={ifname}")))
    }

    /// Writes (or replaces) the record, atomically.
    pub fn write(&self, r: &Record) -> std::io::Result<PathBuf> {
        let dst = self.path(&r.network, &r.container_id, &r.ifname)?;
        let body = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        if body.len() as u64 > MAX_RECORD_BYTES {
            return Err(invalid(format!(
                "record of {}/{} is {} bytes (at most {MAX_RECORD_BYTES})",
                r.container_id,
                r.ifname,
                body.len()
            )));
        }
        let dir = dst.parent().expect("a record has a network directory");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            dst.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let res = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            std::fs::rename(&tmp, &dst)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res.map(|()| dst)
    }

    /// The record of one attachment, None when there is none (or it does not parse).
    pub fn get(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> std::io::Result<Option<Record>> {
        let p = self.path(network, container_id, ifname)?;
        let f = match std::fs::File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut body = vec![];
        f.take(MAX_RECORD_BYTES + 1).read_to_end(&mut body)?;
        Ok(serde_json::from_slice(&body).ok())
    }

    /// Ok(false) when there was none. Repeatable.
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> std::io::Result<bool> {
        let p = self.path(network, container_id, ifname)?;
        match std::fs::remove_file(p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The well-formed records of `network` (all networks with None), sorted by path. A missing
    /// state directory is an empty one.
    pub fn list(&self, network: Option<&str>) -> std::io::Result<Vec<Record>> {
        let networks = match network {
            Some(n) => {
                check_component(n)?;
                vec![n.to_owned()]
            }
            None => match std::fs::read_dir(&self.dir) {
                Ok(rd) => {
                    let mut v = vec![];
                    for e in rd {
                        let e = e?;
                        let name = e.file_name().to_string_lossy().into_owned();
                        if !name.starts_with('.') && e.file_type()?.is_dir() {
                            v.push(name);
                        }
                    }
                    v.sort();
                    v
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
                Err(e) => return Err(e),
            },
        };
        let mut out = vec![];
        for net in networks {
            let dir = self.dir.join(&net);
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut names = vec![];
            for e in rd {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') && e.file_type()?.is_file() {
                    names.push(name);
                }
            }
            names.sort();
            for name in names {
                let path = dir.join(&name);
                match read_one(&path, &net, &name) {
                    Ok(r) => out.push(r),
                    Err(why) => tracing::warn!(
                        path = %path.display(),
                        "attachment record ignored: {why}"
                    ),
                }
            }
        }
        Ok(out)
    }
}

/// One record, checked against the name it is stored under.
fn read_one(path: &Path, network: &str, name: &str) -> Result<Record, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut buf = vec![];
    f.take(MAX_RECORD_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > MAX_RECORD_BYTES {
        return Err(format!("larger than {MAX_RECORD_BYTES} bytes"));
    }
    let r: Record = serde_json::from_slice(&buf).map_err(|e| format!("corrupt: {e}"))?;
    let expected = format!("{}={}", r.container_id, r.ifname);
    if r.network != network || expected != name {
        return Err(format!(
            "content names {}/{} but the file is {network}/{name}",
            r.network, expected
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn rec(network: &str, cid: &str, ifname: &str) -> Record {
        Record {
            network: network.into(),
            container_id: cid.into(),
            ifname: ifname.into(),
            netns: "/run/netns/x".into(),
            vm_name: cid.into(),
            vm_uuid: "u".into(),
            vmi_uuid: "v".into(),
            tap: "tapx".into(),
            vlan_link: None,
            config_dir: "/ports".into(),
        }
    }

    #[test]
    fn write_list_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Store::new(&tmp.path().join("state"));
        assert!(s.list(None).unwrap().is_empty());
        s.write(&rec("a", "c1", "eth0")).unwrap();
        s.write(&rec("a", "c1", "eth1")).unwrap();
        s.write(&rec("b", "c1", "eth0")).unwrap();
        assert_eq!(s.list(Some("a")).unwrap().len(), 2);
        assert_eq!(s.list(None).unwrap().len(), 3);
        assert!(s.remove("a", "c1", "eth0").unwrap());
        assert!(!s.remove("a", "c1", "eth0").unwrap());
        assert_eq!(s.list(Some("a")).unwrap(), [rec("a", "c1", "eth1")]);
        // Nothing but the records themselves is left (no temporaries).
        let n = std::fs::read_dir(tmp.path().join("state/a"))
            .unwrap()
            .count();
        assert_eq!(n, 1);
    }

    #[test]
    fn corrupt_oversized_and_misnamed_records_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Store::new(tmp.path());
        s.write(&rec("a", "good", "eth0")).unwrap();
        std::fs::write(tmp.path().join("a/bad=eth0"), b"{not json").unwrap();
        std::fs::write(
            tmp.path().join("a/big=eth0"),
            vec![b' '; MAX_RECORD_BYTES as usize + 10],
        )
        .unwrap();
        // A record copied under another name is not trusted for that name.
        std::fs::write(
            tmp.path().join("a/other=eth0"),
            serde_json::to_vec(&rec("a", "good", "eth0")).unwrap(),
        )
        .unwrap();
        assert_eq!(s.list(Some("a")).unwrap(), [rec("a", "good", "eth0")]);
    }

    #[test]
    fn names_that_escape_or_split_ambiguously_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Store::new(tmp.path());
        assert!(s.write(&rec("../x", "c", "eth0")).is_err());
        assert!(s.write(&rec("a", "c=d", "eth0")).is_err());
        assert!(s.write(&rec("a", "c", "..")).is_err());
        assert!(s.list(Some("..")).is_err());
    }
}
