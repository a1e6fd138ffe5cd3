//! What the manager knows it owns in VNC, plus lookups of shared objects (projects, networks,
//! security groups, pools, vrouters). Rebuilt from VNC at start (objects carrying our ownership
//! annotations); it only saves reads: every write path still goes to VNC, and a VNC answer
//! that disagrees (404, a different ref) replaces the cached entry.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use contrail_mesos_api::{Attachment, Node, ObjectRef};

/// One registered attachment and the uuids of its owned objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Owned {
    pub attachment: Attachment,
    pub iip_uuid: Option<String>,
    pub fip_uuids: Vec<String>,
    /// Shared by the attachments on the node (`Cache::intern_node`).
    pub node: Arc<Node>,
    /// Unix seconds of registration (annotation `created-at`), for the reconcile grace.
    pub created_at: u64,
    /// The Marathon task joined to it (the VM's display name when it is not the container id).
    /// Shared with the cache's task index, which keys by it.
    pub task_id: Option<Arc<str>>,
    /// The `allow-from` rules its port records (annotation `allow-rules`), if any.
    pub allow_rules: Option<String>,
}

pub type Key = (String, String);

#[derive(Default)]
pub struct Cache {
    attachments: RwLock<Attachments>,
    /// (type, fq_name) -> uuid of shared (not owned) objects.
    names: RwLock<HashMap<(String, Vec<String>), String>>,
    /// VN uuid -> its subnets.
    subnets: RwLock<HashMap<String, Vec<ipnet::IpNet>>>,
    /// (uuid, name, ip) of virtual routers.
    vrouters: RwLock<Vec<(String, String, String)>>,
    /// Bumped on every change of `attachments`, so a scan taken before a change does not
    /// overwrite it (`replace_all_if`).
    generation: std::sync::atomic::AtomicU64,
    /// The nodes and networks attachments refer to, each held once: 100,000 attachments on
    /// 1,000 nodes and 50 networks repeat each one's strings (a network's uuid and fq-name,
    /// a node's name and address: ~300 bytes an attachment) otherwise. Pruned to what the
    /// attachments use on every full replacement.
    shared: std::sync::Mutex<Shared>,
}

#[derive(Default)]
struct Shared {
    nodes: std::collections::HashSet<Arc<Node>>,
    vns: std::collections::HashSet<Arc<ObjectRef>>,
}

fn intern<T: Eq + std::hash::Hash + Clone>(
    set: &mut std::collections::HashSet<Arc<T>>,
    v: &T,
) -> Arc<T> {
    if let Some(a) = set.get(v) {
        return Arc::clone(a);
    }
    let a = Arc::new(v.clone());
    set.insert(Arc::clone(&a));
    a
}

/// The attachments and two indexes over them, changed together under one lock. Every
/// Marathon event asks "which attachments report this address, or are joined to this task":
/// at 100,000 attachments a scan per event was ~14 ms, so the event stream fell behind at
/// ~70 events/s. The indexes only narrow the candidates (to container ids); the caller's
/// predicate still decides on each candidate.
#[derive(Default)]
struct Attachments {
    /// Ordered by (container id, ifname), so a container's interfaces are one range scan
    /// (registration and joins look them up; a full scan per call is quadratic at 10,000).
    /// Shared with the reconcile pass that read them (`replace_all_if`), so a pass never
    /// holds a second copy of 100,000 attachments.
    map: BTreeMap<Key, Arc<Owned>>,
    /// Address -> containers with an interface reporting it.
    by_ip: HashMap<String, Vec<Arc<str>>>,
    /// Joined task id -> its containers; ordered, so the tasks of an instance (`<instance>`,
    /// `<instance>.<container>`) are one range. The task id is the attachment's own, and both
    /// indexes hold one copy of a container id between them (at 100,000 attachments each
    /// string held again was ~7 MiB; docs/BENCHMARKS.md).
    by_task: BTreeMap<Arc<str>, Vec<Arc<str>>>,
}

/// Pushes onto one of the many small lists of an index: almost every list holds one item, and
/// `Vec::push` would give each room for four (at 100,000 attachments, two indexes of such
/// lists held ~16 MiB of unused capacity). Up to four items grow one at a time, then as usual.
pub fn push_small<T>(v: &mut Vec<T>, x: T) {
    if v.len() < 4 && v.len() == v.capacity() {
        v.reserve_exact(1);
    }
    v.push(x);
}

fn index_add(ix: &mut HashMap<String, Vec<Arc<str>>>, k: &str, cid: &Arc<str>) {
    let v = ix.entry(k.to_owned()).or_default();
    if !v.contains(cid) {
        push_small(v, Arc::clone(cid));
    }
}

fn index_del(ix: &mut HashMap<String, Vec<Arc<str>>>, k: &str, cid: &str) {
    if let Some(v) = ix.get_mut(k) {
        v.retain(|c| &**c != cid);
        if v.is_empty() {
            ix.remove(k);
        }
    }
}

impl Attachments {
    /// Whether another interface (not `except`) of `cid` still reports `ip` / is joined to
    /// `task`: an index entry stays while one does.
    fn still_needs_ip(&self, cid: &str, ip: &str, except: &str) -> bool {
        self.map
            .range(container_range(cid))
            .any(|((_, i), o)| i != except && o.attachment.ip.as_deref() == Some(ip))
    }
    fn still_needs_task(&self, cid: &str, task: &str, except: &str) -> bool {
        self.map
            .range(container_range(cid))
            .any(|((_, i), o)| i != except && o.task_id.as_deref() == Some(task))
    }
    fn unindex(&mut self, o: &Owned) {
        let (cid, ifname) = (&o.attachment.container_id, &o.attachment.ifname);
        if let Some(ip) = o.attachment.ip.as_deref()
            && !self.still_needs_ip(cid, ip, ifname)
        {
            index_del(&mut self.by_ip, ip, cid);
        }
        if let Some(t) = o.task_id.as_deref()
            && !self.still_needs_task(cid, t, ifname)
            && let Some(v) = self.by_task.get_mut(t)
        {
            v.retain(|c| &**c != cid.as_str());
            if v.is_empty() {
                self.by_task.remove(t);
            }
        }
    }
    fn index(&mut self, o: &Owned) {
        let cid: Arc<str> = Arc::from(o.attachment.container_id.as_str());
        if let Some(ip) = o.attachment.ip.as_deref() {
            index_add(&mut self.by_ip, ip, &cid);
        }
        if let Some(t) = &o.task_id {
            let v = self.by_task.entry(Arc::clone(t)).or_default();
            if !v.contains(&cid) {
                push_small(v, cid);
            }
        }
    }
    fn insert(&mut self, o: Arc<Owned>) {
        let k = (
            o.attachment.container_id.clone(),
            o.attachment.ifname.clone(),
        );
        if let Some(old) = self.map.remove(&k) {
            self.unindex(&old);
        }
        self.index(&o);
        self.map.insert(k, o);
    }
    fn remove(&mut self, k: &Key) -> Option<Arc<Owned>> {
        let o = self.map.remove(k)?;
        self.unindex(&o);
        Some(o)
    }
    fn replace<O: Into<Arc<Owned>>>(&mut self, all: impl IntoIterator<Item = O>) {
        *self = Attachments::default();
        // Built in bulk (the last of equal keys kept, as inserts in turn keep it): inserted
        // one by one in key order, the scan's order, a B-tree's nodes stay about half full.
        let map: BTreeMap<Key, Arc<Owned>> = all
            .into_iter()
            .map(|o| {
                let o: Arc<Owned> = o.into();
                (
                    (
                        o.attachment.container_id.clone(),
                        o.attachment.ifname.clone(),
                    ),
                    o,
                )
            })
            .collect();
        for o in map.values() {
            self.index(o);
        }
        self.map = map;
    }
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
    /// The shared copy of `n` (made on first use).
    pub fn intern_node(&self, n: &Node) -> Arc<Node> {
        intern(&mut self.shared_lock().nodes, n)
    }
    /// The shared copy of a network reference (made on first use).
    pub fn intern_vn(&self, v: &ObjectRef) -> Arc<ObjectRef> {
        intern(&mut self.shared_lock().vns, v)
    }
    fn shared_lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Keeps only the shared nodes and networks the attachments still use.
    fn prune_shared(&self, a: &Attachments) {
        let mut s = self.shared_lock();
        s.nodes = a.map.values().map(|o| Arc::clone(&o.node)).collect();
        s.vns = a
            .map
            .values()
            .map(|o| Arc::clone(&o.attachment.vn))
            .collect();
    }
    pub fn get(&self, key: &Key) -> Option<Owned> {
        r(&self.attachments).map.get(key).map(|o| Owned::clone(o))
    }
    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// `o` as a shared entry: the cached one when the cache holds an equal attachment under
    /// its key (a scan that finds nothing changed then allocates nothing lasting).
    pub fn share(&self, o: Owned) -> Arc<Owned> {
        let a = r(&self.attachments);
        let k = (
            o.attachment.container_id.clone(),
            o.attachment.ifname.clone(),
        );
        match a.map.get(&k) {
            Some(c) if **c == o => Arc::clone(c),
            _ => Arc::new(o),
        }
    }
    pub fn put(&self, o: Owned) {
        w(&self.attachments).insert(Arc::new(o));
        self.bump();
    }
    pub fn remove(&self, key: &Key) -> Option<Owned> {
        let r = w(&self.attachments).remove(key);
        self.bump();
        r.map(Arc::unwrap_or_clone)
    }
    pub fn len(&self) -> usize {
        r(&self.attachments).map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn all(&self) -> Vec<Owned> {
        r(&self.attachments)
            .map
            .values()
            .map(|o| Owned::clone(o))
            .collect()
    }
    /// Every attachment, shared (in key order).
    pub fn all_shared(&self) -> Vec<Arc<Owned>> {
        r(&self.attachments).map.values().cloned().collect()
    }
    /// Attachments for which `pred` holds (cloned; the lock is not held by the caller).
    pub fn filter(&self, pred: impl Fn(&Owned) -> bool) -> Vec<Owned> {
        r(&self.attachments)
            .map
            .values()
            .filter(|o| pred(o))
            .map(|o| Owned::clone(o))
            .collect()
    }
    /// `filter`, over only the attachments that report one of `ips` or are joined to a task
    /// in `tasks`, or to `<prefix>` or `<prefix>.<anything>` for a prefix in `task_roots`:
    /// what an event about a task can concern. In key order, as `filter`.
    pub fn filter_related(
        &self,
        ips: &[String],
        tasks: &[String],
        task_roots: &[String],
        pred: impl Fn(&Owned) -> bool,
    ) -> Vec<Owned> {
        let a = r(&self.attachments);
        let mut cids: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
        for ip in ips {
            cids.extend(a.by_ip.get(ip).into_iter().flatten().map(|c| &**c));
        }
        for t in tasks {
            cids.extend(
                a.by_task
                    .get(t.as_str())
                    .into_iter()
                    .flatten()
                    .map(|c| &**c),
            );
        }
        for root in task_roots {
            for (t, v) in a.by_task.range::<str, _>((
                std::ops::Bound::Included(root.as_str()),
                std::ops::Bound::Unbounded,
            )) {
                if !t.starts_with(root.as_str()) {
                    break;
                }
                if t.len() == root.len() || t[root.len()..].starts_with('.') {
                    cids.extend(v.iter().map(|c| &**c));
                }
            }
        }
        cids.into_iter()
            .flat_map(|c| a.map.range(container_range(c)).map(|(_, o)| o))
            .filter(|o| pred(o))
            .map(|o| Owned::clone(o))
            .collect()
    }
    /// Attachments of one container.
    pub fn of_container(&self, cid: &str) -> Vec<Owned> {
        r(&self.attachments)
            .map
            .range(container_range(cid))
            .map(|(_, o)| Owned::clone(o))
            .collect()
    }
    /// Number of registered interfaces of one container.
    pub fn count_of_container(&self, cid: &str) -> usize {
        r(&self.attachments).map.range(container_range(cid)).count()
    }
    pub fn set_task(&self, cid: &str, task: &str) {
        let mut a = w(&self.attachments);
        let mine: Vec<Owned> = a
            .map
            .range(container_range(cid))
            .map(|(_, o)| Owned::clone(o))
            .collect();
        for mut o in mine {
            o.task_id = Some(task.into());
            a.insert(Arc::new(o));
        }
        drop(a);
        self.bump();
    }
    /// `replace_all`, unless the cache changed since `generation` was read: then the
    /// caller's list may be older than the cache, which is kept. Returns whether it replaced.
    pub fn replace_all_if<O: Into<Arc<Owned>>>(
        &self,
        generation: u64,
        all: impl IntoIterator<Item = O>,
    ) -> bool {
        let mut m = w(&self.attachments);
        if self.generation() != generation {
            return false;
        }
        m.replace(all);
        self.bump();
        self.prune_shared(&m);
        true
    }
    pub fn replace_all<O: Into<Arc<Owned>>>(&self, all: impl IntoIterator<Item = O>) {
        self.bump();
        let mut m = w(&self.attachments);
        m.replace(all);
        self.prune_shared(&m);
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

#[cfg(test)]
mod tests {
    use super::*;
    use contrail_mesos_api::{InterfaceIndex, ObjectRef};

    fn owned(cid: &str, ifname: &str, ip: &str, task: Option<&str>) -> Owned {
        Owned {
            attachment: Attachment {
                container_id: cid.into(),
                ifname: ifname.into(),
                vm_uuid: format!("vm-{cid}"),
                vm_name: cid.into(),
                vmi_uuid: format!("vmi-{cid}-{ifname}"),
                vn: ObjectRef {
                    uuid: "vn".into(),
                    fq_name: vec!["d".into(), "p".into(), "n".into()],
                }
                .into(),
                ip: Some(ip.into()),
                mac: None,
                index: InterfaceIndex::SOLE,
                floating_ips: vec![],
            },
            iip_uuid: None,
            fip_uuids: vec![],
            node: Node {
                name: "n".into(),
                ip: "10.9.9.9".into(),
            }
            .into(),
            created_at: 0,
            task_id: task.map(Into::into),
            allow_rules: None,
        }
    }

    /// What an index lookup must return: exactly what a scan with the same predicate finds.
    fn by_scan(c: &Cache, ip: &str, task: &str, root: &str) -> Vec<Key> {
        let mut v: Vec<Key> = c
            .filter(|o| {
                o.attachment.ip.as_deref() == Some(ip)
                    || o.task_id.as_deref() == Some(task)
                    || o.task_id
                        .as_deref()
                        .is_some_and(|t| t == root || t.starts_with(&format!("{root}.")))
            })
            .into_iter()
            .map(|o| (o.attachment.container_id, o.attachment.ifname))
            .collect();
        v.sort();
        v
    }

    fn by_index(c: &Cache, ip: &str, task: &str, root: &str) -> Vec<Key> {
        c.filter_related(&[ip.into()], &[task.into()], &[root.into()], |_| true)
            .into_iter()
            .map(|o| (o.attachment.container_id, o.attachment.ifname))
            .collect()
    }

    #[test]
    fn the_indexes_follow_every_change_and_agree_with_a_scan() {
        let c = Cache::default();
        c.put(owned("c1", "eth0", "10.0.0.1", Some("app.1")));
        c.put(owned("c1", "eth1", "10.0.0.1", Some("app.1")));
        c.put(owned("c2", "eth0", "10.0.0.2", None));
        c.put(owned("c3", "eth0", "10.0.0.3", Some("pod.instance-1.a")));
        c.put(owned("c4", "eth0", "10.0.0.4", Some("pod.instance-10.a")));
        let probes = [
            ("10.0.0.1", "x", "none"),
            ("10.0.0.2", "app.1", "none"),
            ("9.9.9.9", "x", "pod.instance-1"),
            ("9.9.9.9", "x", "pod.instance-10"),
            ("9.9.9.9", "x", "pod"),
        ];
        let check = |c: &Cache| {
            for (ip, task, root) in probes {
                assert_eq!(
                    by_index(c, ip, task, root),
                    by_scan(c, ip, task, root),
                    "{ip} {task} {root}"
                );
            }
        };
        check(&c);
        assert_eq!(by_index(&c, "9.9.9.9", "x", "pod.instance-1").len(), 1);
        // A join, an interface gone (the other still reports the address), a re-registration
        // with another address, a removal, a whole replacement.
        c.set_task("c2", "app.2");
        check(&c);
        assert_eq!(by_index(&c, "9.9.9.9", "app.2", "none").len(), 1);
        c.remove(&("c1".into(), "eth1".into()));
        check(&c);
        assert_eq!(by_index(&c, "10.0.0.1", "x", "none").len(), 1);
        c.put(owned("c1", "eth0", "10.0.0.7", Some("app.1")));
        check(&c);
        assert!(by_index(&c, "10.0.0.1", "x", "none").is_empty());
        c.remove(&("c1".into(), "eth0".into()));
        assert!(by_index(&c, "9.9.9.9", "app.1", "none").is_empty());
        c.replace_all(vec![owned("c9", "eth0", "10.0.0.2", Some("app.9"))]);
        check(&c);
        assert_eq!(by_index(&c, "10.0.0.2", "x", "none").len(), 1);
        assert!(by_index(&c, "10.0.0.3", "x", "pod").is_empty());
    }
}
