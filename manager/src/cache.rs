//! What the manager knows it owns in VNC, plus lookups of shared objects (projects, networks,
//! security groups, pools, vrouters). Rebuilt from VNC at start (objects carrying our ownership
//! annotations); it only saves reads: every write path still goes to VNC, and a VNC answer
//! that disagrees (404, a different ref) replaces the cached entry.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use contrail_mesos_api::{Attachment, Node};

/// One registered attachment and the uuids of its owned objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Owned {
    pub attachment: Attachment,
    pub iip_uuid: Option<String>,
    pub fip_uuids: Vec<String>,
    pub node: Node,
    /// Unix seconds of registration (annotation `created-at`), for the reconcile grace.
    pub created_at: u64,
    /// The Marathon task joined to it (the VM's display name when it is not the container id).
    pub task_id: Option<String>,
}

pub type Key = (String, String);

#[derive(Default)]
pub struct Cache {
    /// Ordered by (container id, ifname), so a container's interfaces are one range scan
    /// (registration and joins look them up; a full scan per call is quadratic at 10,000).
    attachments: RwLock<BTreeMap<Key, Owned>>,
    /// (type, fq_name) -> uuid of shared (not owned) objects.
    names: RwLock<HashMap<(String, Vec<String>), String>>,
    /// VN uuid -> its subnets.
    subnets: RwLock<HashMap<String, Vec<ipnet::IpNet>>>,
    /// (uuid, name, ip) of virtual routers.
    vrouters: RwLock<Vec<(String, String, String)>>,
    /// Bumped on every change of `attachments`, so a scan taken before a change does not
    /// overwrite it (`replace_all_if`).
    generation: std::sync::atomic::AtomicU64,
}

/// Keys `(cid, *)`: from `(cid, "")` up to, not including, `(cid + "\0", "")`.
fn container_range(cid: &str) -> std::ops::Range<Key> {
    (cid.to_owned(), String::new())..(format!("{cid}\0"), String::new())
}

fn r<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
fn w<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Cache {
    pub fn get(&self, key: &Key) -> Option<Owned> {
        r(&self.attachments).get(key).cloned()
    }
    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub fn put(&self, o: Owned) {
        let k = (
            o.attachment.container_id.clone(),
            o.attachment.ifname.clone(),
        );
        w(&self.attachments).insert(k, o);
        self.bump();
    }
    pub fn remove(&self, key: &Key) -> Option<Owned> {
        let r = w(&self.attachments).remove(key);
        self.bump();
        r
    }
    pub fn len(&self) -> usize {
        r(&self.attachments).len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn all(&self) -> Vec<Owned> {
        r(&self.attachments).values().cloned().collect()
    }
    /// Attachments for which `pred` holds (cloned; the lock is not held by the caller).
    pub fn filter(&self, pred: impl Fn(&Owned) -> bool) -> Vec<Owned> {
        r(&self.attachments)
            .values()
            .filter(|o| pred(o))
            .cloned()
            .collect()
    }
    /// Attachments of one container.
    pub fn of_container(&self, cid: &str) -> Vec<Owned> {
        r(&self.attachments)
            .range(container_range(cid))
            .map(|(_, o)| o.clone())
            .collect()
    }
    /// Number of registered interfaces of one container.
    pub fn count_of_container(&self, cid: &str) -> usize {
        r(&self.attachments).range(container_range(cid)).count()
    }
    pub fn set_task(&self, cid: &str, task: &str) {
        for (_, o) in w(&self.attachments).range_mut(container_range(cid)) {
            o.task_id = Some(task.to_owned());
        }
        self.bump();
    }
    /// `replace_all`, unless the cache changed since `generation` was read: then the
    /// caller's list may be older than the cache, which is kept. Returns whether it replaced.
    pub fn replace_all_if(&self, generation: u64, all: Vec<Owned>) -> bool {
        let mut m = w(&self.attachments);
        if self.generation() != generation {
            return false;
        }
        m.clear();
        for o in all {
            m.insert(
                (
                    o.attachment.container_id.clone(),
                    o.attachment.ifname.clone(),
                ),
                o,
            );
        }
        self.bump();
        true
    }
    pub fn replace_all(&self, all: Vec<Owned>) {
        self.bump();
        let mut m = w(&self.attachments);
        m.clear();
        for o in all {
            m.insert(
                (
                    o.attachment.container_id.clone(),
                    o.attachment.ifname.clone(),
                ),
                o,
            );
        }
    }

    pub fn name(&self, ty: &str, fq: &[String]) -> Option<String> {
        r(&self.names).get(&(ty.to_owned(), fq.to_vec())).cloned()
    }
    pub fn put_name(&self, ty: &str, fq: &[String], uuid: &str) {
        w(&self.names).insert((ty.to_owned(), fq.to_vec()), uuid.to_owned());
    }
    pub fn forget_name(&self, ty: &str, fq: &[String]) {
        w(&self.names).remove(&(ty.to_owned(), fq.to_vec()));
    }
    pub fn subnets(&self, vn: &str) -> Option<Vec<ipnet::IpNet>> {
        r(&self.subnets).get(vn).cloned()
    }
    pub fn put_subnets(&self, vn: &str, s: Vec<ipnet::IpNet>) {
        w(&self.subnets).insert(vn.to_owned(), s);
    }
    pub fn forget_subnets(&self, vn: &str) {
        w(&self.subnets).remove(vn);
    }
    pub fn vrouters(&self) -> Vec<(String, String, String)> {
        r(&self.vrouters).clone()
    }
    pub fn put_vrouters(&self, v: Vec<(String, String, String)>) {
        *w(&self.vrouters) = v;
    }
}
