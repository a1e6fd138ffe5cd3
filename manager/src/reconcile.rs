//! The reconcile core: a pure function from (owned attachments, what Marathon runs, now) to
//! actions. No I/O, so every rule below is unit-tested.
//!
//! Rules:
//! 1. An attachment is *matched* by a live task on its node that reports its instance-ip
//!    address. The node must match: the same address exists on every node in bridge-style
//!    networks and in two VNs with the same subnet. Several candidates of different
//!    instances are ambiguous: the attachment counts as alive and nothing is joined.
//!    A match whose task id differs from the VM's display name gives `Join`.
//! 2. An attachment *joined* to a task (the VM display name is a task id, persisted in VNC)
//!    whose task is no longer live is deleted: the task ended and the DEL never came.
//! 3. An attachment never joined is protected for `grace` after registration, because Mesos
//!    reports a task's IPs only after the CNI ADD returned, and Marathon later still. After
//!    the grace it is deleted only when `delete_unjoined` is set (containers of other
//!    frameworks never get a Marathon task) and no task on its node is still starting
//!    without IPs (that task may be the one that will report this address; a *running* task
//!    without IPs, e.g. on host networking, never will, so it protects nothing).
//! 4. Orphans (an owned VM without interface, an instance-ip/floating-ip without VMI: traces
//!    of a crash mid-registration) are deleted after the grace.
//! 5. Only owned objects are ever considered: the caller filters by ownership annotations,
//!    and a deletion names the VMI it was decided for, so the executor deletes nothing that
//!    was re-registered since.
//! 6. `guard` holds back a pass that deletes too much, or that rests on an empty listing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::cache::Owned;
use crate::inventory::Orphan;
use crate::marathon::TaskView;
use crate::marathon::model::{instance_task_ids, is_starting_state, is_terminal_state};

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub grace_secs: u64,
    pub delete_unjoined: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Deregister (container id, ifname).
    Delete {
        container_id: String,
        ifname: String,
        /// The VMI the decision was made for (identity fence).
        vmi_uuid: String,
        reason: &'static str,
    },
    /// Set the container's VM display name to the task id.
    Join {
        container_id: String,
        task_id: String,
    },
    /// Delete one orphan object.
    DeleteObject { ty: String, uuid: String },
}

/// Live tasks indexed by id and by IP, plus the tasks that ended before reporting an address.
#[derive(Debug, Clone, Default)]
pub struct TaskIndex {
    /// Ordered, so the tasks of an instance (`<instance>`, `<instance>.<container>`) are one
    /// range: an `instance_changed_event` does not scan every task.
    ///
    /// A task id is held once (`Arc<str>`) by every part of the index: at 100,000 tasks its
    /// four copies were ~25 MiB.
    pub by_id: BTreeMap<Arc<str>, TaskView>,
    by_ip: HashMap<String, Vec<Arc<str>>>,
    /// Live tasks still starting without an address (few at any time): what protects an
    /// unjoined attachment on their node, looked up without walking every task.
    starting: std::collections::BTreeSet<Arc<str>>,
    /// When each live task was first seen (unix seconds), carried across listings.
    seen: HashMap<Arc<str>, u64>,
    /// Tasks that ended (or vanished) while still without an address: their CNI ADD may
    /// still have been running, and nothing will ever join what it created.
    pub ended_early: Vec<EndedEarly>,
}

/// A task that ended before it reported an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedEarly {
    pub task_id: String,
    pub host: String,
    pub first_seen: u64,
    pub ended_at: u64,
}

/// Seconds of slack around the `[first_seen, ended_at]` window of an early-ended task.
const EARLY_SLACK_SECS: u64 = 2;

impl TaskIndex {
    /// From a full list; terminal tasks are left out.
    pub fn from_tasks(tasks: impl IntoIterator<Item = TaskView>) -> TaskIndex {
        let mut ix = TaskIndex::default();
        for t in tasks {
            ix.upsert(t);
        }
        ix
    }

    /// Applies one status update: terminal states remove the task.
    pub fn upsert(&mut self, t: TaskView) {
        self.upsert_at(t, 0);
    }

    /// `upsert`, at `now` (unix seconds): remembers when a task was first seen, and a task
    /// that ends without ever having had an address as ended early.
    pub fn upsert_at(&mut self, t: TaskView, now: u64) {
        let prev = self.remove(&t.id);
        let first_seen = self.seen.get(t.id.as_str()).copied().unwrap_or(now);
        if is_terminal_state(&t.state) {
            self.seen.remove(t.id.as_str());
            let had_ip = !t.ips.is_empty() || prev.as_ref().is_some_and(|p| !p.ips.is_empty());
            if !had_ip && now > 0 && prev.is_some() {
                let host = if t.host.is_empty() {
                    prev.map(|p| p.host).unwrap_or_default()
                } else {
                    t.host.clone()
                };
                self.ended_early.push(EndedEarly {
                    task_id: t.id.clone(),
                    host,
                    first_seen,
                    ended_at: now,
                });
            }
            return;
        }
        let id: Arc<str> = Arc::from(t.id.as_str());
        self.seen.insert(Arc::clone(&id), first_seen);
        self.add(id, t);
    }

    /// Indexes a live task under its (shared) id.
    fn add(&mut self, id: Arc<str>, t: TaskView) {
        for ip in &t.ips {
            crate::cache::push_small(self.by_ip.entry(ip.clone()).or_default(), Arc::clone(&id));
        }
        if t.ips.is_empty() && is_starting_state(&t.state) {
            self.starting.insert(Arc::clone(&id));
        }
        self.by_id.insert(id, t);
    }

    /// Takes over what `prev` (the index this one replaces) knew: first-seen times, and the
    /// early-ended tasks younger than `keep_secs`. A task `prev` had starting without an
    /// address that this listing no longer has ended early too.
    pub fn succeed(&mut self, prev: &TaskIndex, now: u64, keep_secs: u64) {
        for id in self.by_id.keys() {
            if let Some(s) = prev.seen.get(id) {
                self.seen.insert(id.clone(), *s);
            }
        }
        self.ended_early = prev
            .ended_early
            .iter()
            .filter(|e| now.saturating_sub(e.ended_at) < keep_secs.max(1))
            .cloned()
            .collect();
        for (id, t) in &prev.by_id {
            if !self.by_id.contains_key(id) && t.ips.is_empty() && is_starting_state(&t.state) {
                self.ended_early.push(EndedEarly {
                    task_id: id.to_string(),
                    host: t.host.clone(),
                    first_seen: prev.seen.get(id).copied().unwrap_or(now),
                    ended_at: now,
                });
            }
        }
    }

    /// This index becomes what `from_tasks(tasks)` followed by `succeed(<this index>, now,
    /// keep_secs)` gives, changed in place: at 100,000 tasks a second index for the length of
    /// a pass was ~90 MiB of the manager's peak.
    pub fn refresh(&mut self, tasks: Vec<TaskView>, now: u64, keep_secs: u64) {
        // The listed live tasks by id, the last one listed winning (as repeated upserts do).
        let mut listed = tasks;
        listed.reverse();
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        listed.dedup_by(|a, b| a.id == b.id);
        listed.retain(|t| !is_terminal_state(&t.state));
        let is_listed = |id: &str| listed.binary_search_by(|t| t.id.as_str().cmp(id)).is_ok();
        self.ended_early
            .retain(|e| now.saturating_sub(e.ended_at) < keep_secs.max(1));
        let gone: Vec<Arc<str>> = self
            .by_id
            .keys()
            .filter(|id| !is_listed(id))
            .cloned()
            .collect();
        for id in gone {
            let first_seen = self.seen.remove(&id);
            if let Some(t) = self.remove(&id)
                && t.ips.is_empty()
                && is_starting_state(&t.state)
            {
                self.ended_early.push(EndedEarly {
                    task_id: id.to_string(),
                    host: t.host,
                    first_seen: first_seen.unwrap_or(now),
                    ended_at: now,
                });
            }
        }
        // Whatever else `seen` holds (a task that ended by an event) the listing does not
        // have either.
        self.seen.retain(|id, _| is_listed(id));
        // What is left of the index is listed, and every listed task is indexed anew: the
        // tree is built in bulk from the (sorted) listing. Inserted one by one in key order,
        // a B-tree's nodes stay about half full: ~9 MiB more at 100,000 tasks.
        self.by_id = BTreeMap::new();
        self.by_ip.clear();
        self.starting.clear();
        let mut entries = Vec::with_capacity(listed.len());
        for t in listed {
            // The id already held by `seen` when the task was known, else a new one.
            let id = match self.seen.get_key_value(t.id.as_str()) {
                Some((k, _)) => Arc::clone(k),
                None => {
                    let k: Arc<str> = Arc::from(t.id.as_str());
                    self.seen.insert(Arc::clone(&k), 0);
                    k
                }
            };
            for ip in &t.ips {
                crate::cache::push_small(
                    self.by_ip.entry(ip.clone()).or_default(),
                    Arc::clone(&id),
                );
            }
            if t.ips.is_empty() && is_starting_state(&t.state) {
                self.starting.insert(Arc::clone(&id));
            }
            entries.push((id, t));
        }
        self.by_id = entries.into_iter().collect();
    }

    pub fn remove(&mut self, id: &str) -> Option<TaskView> {
        let t = self.by_id.remove(id)?;
        self.starting.remove(id);
        for ip in &t.ips {
            if let Some(v) = self.by_ip.get_mut(ip) {
                v.retain(|x| &**x != id);
                if v.is_empty() {
                    self.by_ip.remove(ip);
                }
            }
        }
        Some(t)
    }

    /// Removes the tasks of an instance (`<instance>`, `<instance>.<container>`, and the
    /// Marathon 1.4-1.7 form, see `instance_task_ids`).
    pub fn remove_instance(&mut self, instance_id: &str) -> Vec<String> {
        let roots = instance_task_ids(instance_id);
        let mut ids: Vec<String> = Vec::new();
        for r in &roots {
            ids.extend(
                self.by_id
                    .range::<str, _>((
                        std::ops::Bound::Included(r.as_str()),
                        std::ops::Bound::Unbounded,
                    ))
                    .map(|(k, _)| k)
                    .take_while(|k| k.starts_with(r.as_str()))
                    .filter(|k| is_task_of(k, r))
                    .map(|k| k.to_string()),
            );
        }
        ids.sort();
        ids.dedup();
        for id in &ids {
            self.remove(id);
        }
        ids
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The live tasks on this attachment's node that report its address.
    fn candidates(&self, o: &Owned) -> Vec<&TaskView> {
        let Some(ip) = o.attachment.ip.as_deref() else {
            return vec![];
        };
        let mut v: Vec<&TaskView> = self
            .by_ip
            .get(ip)
            .into_iter()
            .flatten()
            .filter_map(|i| self.by_id.get(i))
            .filter(|t| on_node(t, o))
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// What the listing says about this attachment.
    pub fn lookup(&self, o: &Owned) -> Lookup<'_> {
        let c = self.candidates(o);
        match c.as_slice() {
            [] => Lookup::None,
            [one] => Lookup::One(one),
            // The containers of one pod instance share its addresses: one owner.
            [first, rest @ ..] if rest.iter().all(|t| same_instance(&first.id, &t.id)) => {
                Lookup::One(first)
            }
            _ => Lookup::Ambiguous,
        }
    }

    /// The live task on the attachment's node that reports its address, when exactly one
    /// instance does.
    pub fn matching(&self, o: &Owned) -> Option<&TaskView> {
        match self.lookup(o) {
            Lookup::One(t) => Some(t),
            _ => None,
        }
    }

    fn node_has_starting_task(&self, o: &Owned) -> bool {
        self.starting
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .any(|t| t.ips.is_empty() && is_starting_state(&t.state) && on_node(t, o))
    }

    /// The early-ended task whose ADD may have created `o`: on its node, created between the
    /// task's first sighting and its end.
    fn ended_early_for<'a>(&'a self, o: &'a Owned) -> impl Iterator<Item = usize> + 'a {
        self.ended_early
            .iter()
            .enumerate()
            .filter_map(move |(k, e)| {
                (host_on_node(&e.host, o)
                    && o.created_at + EARLY_SLACK_SECS >= e.first_seen
                    && o.created_at <= e.ended_at + EARLY_SLACK_SECS)
                    .then_some(k)
            })
    }
}

/// The outcome of looking an attachment up in the listing.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    None,
    One(&'a TaskView),
    /// Tasks of several instances on the node report the address: alive, but whose is unknown.
    Ambiguous,
}

/// Marathon's `host` is the agent's hostname (or IP); the attachment knows the node's name
/// (the CNI's `cluster-name`) and the vRouter's IP. A short name matches its FQDN.
fn on_node(t: &TaskView, o: &Owned) -> bool {
    host_on_node(&t.host, o)
}

fn host_on_node(host: &str, o: &Owned) -> bool {
    let h = host.trim();
    if h.is_empty() {
        return false;
    }
    let short = |s: &str| s.split('.').next().unwrap_or(s).to_ascii_lowercase();
    h == o.node.ip
        || h.eq_ignore_ascii_case(&o.node.name)
        || (h.parse::<std::net::IpAddr>().is_err()
            && !o.node.name.is_empty()
            && o.node.name.parse::<std::net::IpAddr>().is_err()
            && short(h) == short(&o.node.name))
}

/// Whether `task` is `root` or one of its containers (`root.<container>`).
fn is_task_of(task: &str, root: &str) -> bool {
    task == root
        || task
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// Pod container task ids are `<instance>.<container>`; two ids with the same instance part
/// belong to one instance.
fn same_instance(a: &str, b: &str) -> bool {
    let inst = |s: &str| s.rsplit_once('.').map(|(i, _)| i.to_owned());
    inst(a).is_some() && inst(a) == inst(b) && inst(a).is_some_and(|i| i.contains(".instance-"))
}

/// Why a pass's deletions are held back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// The listing had no task at all while attachments are joined to tasks: an empty 200
    /// (Marathon restarting, an ACL that hides every app) looks exactly like this.
    EmptyListing { joined: usize },
    /// More than the allowed share of owned attachments would go.
    TooMany { deletions: usize, owned: usize },
}

/// Decides whether a pass's attachment deletions may run as they are.
pub fn guard<O: std::borrow::Borrow<Owned>>(
    owned: &[O],
    tasks: &TaskIndex,
    actions: &[Action],
    max_delete_percent: u64,
) -> Option<Hold> {
    let deletions = actions
        .iter()
        .filter(|a| matches!(a, Action::Delete { .. }))
        .count();
    if deletions == 0 {
        return None;
    }
    let joined = owned
        .iter()
        .filter(|o| o.borrow().task_id.is_some())
        .count();
    if tasks.is_empty() && joined > 0 {
        return Some(Hold::EmptyListing { joined });
    }
    // One deletion is always allowed: a share of a handful would otherwise block every
    // small cluster's cleanup.
    if deletions > 1 && (deletions as u64) * 100 > (owned.len() as u64) * max_delete_percent {
        return Some(Hold::TooMany {
            deletions,
            owned: owned.len(),
        });
    }
    None
}

/// One pass over a complete snapshot.
pub fn reconcile<O: std::borrow::Borrow<Owned>>(
    owned: &[O],
    orphans: &[Orphan],
    tasks: &TaskIndex,
    now: u64,
    policy: Policy,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut joined_cids = std::collections::HashSet::new();
    // Rule 7: an unjoined, unmatched attachment created while a task on its node was
    // starting, that task having ended without an address, was that task's: the ADD ran
    // while (or after) the task ended and no DEL will come. Only when exactly one attachment
    // fits an ended task, so a second container on the node is never taken for it.
    let mut early: HashMap<usize, Vec<usize>> = HashMap::new();
    if policy.delete_unjoined {
        for (k, o) in owned.iter().enumerate() {
            let o = o.borrow();
            if o.task_id.is_none() && matches!(tasks.lookup(o), Lookup::None) {
                for e in tasks.ended_early_for(o) {
                    early.entry(e).or_default().push(k);
                }
            }
        }
    }
    let early_owned: std::collections::HashSet<usize> = early
        .values()
        .filter(|v| v.len() == 1)
        .map(|v| v[0])
        .collect();
    for (k, o) in owned.iter().enumerate() {
        let o = o.borrow();
        let cid = &o.attachment.container_id;
        let young = now.saturating_sub(o.created_at) < policy.grace_secs;
        match tasks.lookup(o) {
            Lookup::One(t) => {
                if o.task_id.as_deref() != Some(t.id.as_str()) && joined_cids.insert(cid.clone()) {
                    actions.push(Action::Join {
                        container_id: cid.clone(),
                        task_id: t.id.clone(),
                    });
                }
                continue;
            }
            Lookup::Ambiguous => continue,
            Lookup::None => {}
        }
        let delete = |reason| Action::Delete {
            container_id: cid.clone(),
            ifname: o.attachment.ifname.clone(),
            vmi_uuid: o.attachment.vmi_uuid.clone(),
            reason,
        };
        match &o.task_id {
            Some(t) if tasks.by_id.contains_key(&**t) => {}
            Some(_) => actions.push(delete("task ended")),
            None if early_owned.contains(&k) && !tasks.node_has_starting_task(o) => {
                actions.push(delete("its task ended before reporting an address"))
            }
            None if young || !policy.delete_unjoined || tasks.node_has_starting_task(o) => {}
            None => actions.push(delete("no task after the grace period")),
        }
    }
    for x in orphans {
        if now.saturating_sub(x.created_at) >= policy.grace_secs {
            actions.push(Action::DeleteObject {
                ty: x.ty.to_owned(),
                uuid: x.uuid.clone(),
            });
        }
    }
    actions
}

/// The attachments one event may have changed: those joined to the task, or reporting its IPs.
pub fn affected_by_task<'a>(owned: &'a [Owned], task: &TaskView) -> Vec<&'a Owned> {
    owned
        .iter()
        .filter(|o| {
            o.task_id.as_deref() == Some(task.id.as_str())
                || (on_node(task, o)
                    && o.attachment
                        .ip
                        .as_ref()
                        .is_some_and(|ip| task.ips.contains(ip)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrail_mesos_api::{Attachment, Node, ObjectRef};

    fn owned(cid: &str, ip: &str, node: &str, created_at: u64, task: Option<&str>) -> Owned {
        Owned {
            attachment: Attachment {
                container_id: cid.into(),
                ifname: "eth0".into(),
                vm_uuid: "vm".into(),
                vm_name: cid.into(),
                vmi_uuid: format!("vmi-{cid}"),
                vn: ObjectRef {
                    uuid: "vn".into(),
                    fq_name: vec!["d".into(), "p".into(), "n".into()],
                }
                .into(),
                ip: Some(ip.into()),
                mac: None,
                index: contrail_mesos_api::InterfaceIndex::SOLE,
                floating_ips: vec![],
            },
            iip_uuid: Some("iip".into()),
            fip_uuids: vec![],
            node: Node {
                name: node.into(),
                ip: format!("ip-{node}"),
            }
            .into(),
            created_at,
            task_id: task.map(Into::into),
            allow_rules: None,
        }
    }

    fn task(id: &str, host: &str, ips: &[&str], state: &str) -> TaskView {
        TaskView {
            id: id.into(),
            host: host.into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            state: state.into(),
        }
    }

    const P: Policy = Policy {
        grace_secs: 100,
        delete_unjoined: true,
    };

    #[test]
    fn a_running_task_joins_its_attachment_once() {
        let ix = TaskIndex::from_tasks([task("app.1", "a1", &["10.0.0.2"], "TASK_RUNNING")]);
        let o = [owned("c1", "10.0.0.2", "a1", 0, None)];
        assert_eq!(
            reconcile(&o, &[], &ix, 1000, P),
            vec![Action::Join {
                container_id: "c1".into(),
                task_id: "app.1".into()
            }]
        );
        let o = [owned("c1", "10.0.0.2", "a1", 0, Some("app.1"))];
        assert!(reconcile(&o, &[], &ix, 1000, P).is_empty());
    }

    #[test]
    fn a_joined_attachment_whose_task_ended_is_deleted_even_when_young() {
        let ix = TaskIndex::from_tasks([task("app.1", "a1", &["10.0.0.2"], "TASK_KILLED")]);
        let o = [owned("c1", "10.0.0.2", "a1", 999, Some("app.1"))];
        assert!(matches!(
            reconcile(&o, &[], &ix, 1000, P).as_slice(),
            [Action::Delete {
                reason: "task ended",
                ..
            }]
        ));
    }

    #[test]
    fn an_unjoined_attachment_gets_the_grace_period() {
        let ix = TaskIndex::default();
        let o = [owned("c1", "10.0.0.2", "a1", 950, None)];
        assert!(reconcile(&o, &[], &ix, 1000, P).is_empty());
        assert_eq!(reconcile(&o, &[], &ix, 1050, P).len(), 1);
        let keep = Policy {
            delete_unjoined: false,
            ..P
        };
        assert!(reconcile(&o, &[], &ix, 5000, keep).is_empty());
    }

    #[test]
    fn a_task_without_ips_on_the_node_protects_unjoined_attachments() {
        let ix = TaskIndex::from_tasks([task("app.2", "a1", &[], "TASK_STAGING")]);
        let o = [owned("c1", "10.0.0.2", "a1", 0, None)];
        assert!(reconcile(&o, &[], &ix, 5000, P).is_empty());
        let o = [owned("c1", "10.0.0.2", "other-node", 0, None)];
        assert_eq!(reconcile(&o, &[], &ix, 5000, P).len(), 1);
    }

    #[test]
    fn the_same_ip_in_two_networks_is_told_apart_by_node() {
        let ix = TaskIndex::from_tasks([
            task("a.1", "n1", &["10.0.0.2"], "TASK_RUNNING"),
            task("b.1", "n2", &["10.0.0.2"], "TASK_RUNNING"),
        ]);
        let o = [owned("c1", "10.0.0.2", "n2", 0, None)];
        assert_eq!(
            reconcile(&o, &[], &ix, 1000, P),
            vec![Action::Join {
                container_id: "c1".into(),
                task_id: "b.1".into()
            }]
        );
    }

    #[test]
    fn an_address_on_another_node_is_not_a_match() {
        // Docker-bridge style addresses exist on every node: a task on n1 reporting
        // 172.17.0.2 says nothing about the attachment with that address on n2.
        let ix = TaskIndex::from_tasks([task("a.1", "n1", &["172.17.0.2"], "TASK_RUNNING")]);
        let o = [owned("c2", "172.17.0.2", "n2", 0, None)];
        let keep = Policy {
            delete_unjoined: false,
            ..P
        };
        assert!(reconcile(&o, &[], &ix, 1000, keep).is_empty());
        // Joined to a task on n2 that ended: deleted even though n1's task has the address.
        let o = [owned("c2", "172.17.0.2", "n2", 0, Some("b.1"))];
        assert!(matches!(
            reconcile(&o, &[], &ix, 1000, P).as_slice(),
            [Action::Delete {
                reason: "task ended",
                ..
            }]
        ));
    }

    #[test]
    fn the_node_matches_by_ip_name_or_short_name() {
        let o = owned("c1", "10.0.0.2", "agent-1", 0, None);
        for host in ["agent-1", "AGENT-1", "agent-1.example.org", "ip-agent-1"] {
            let ix = TaskIndex::from_tasks([task("a.1", host, &["10.0.0.2"], "TASK_RUNNING")]);
            assert!(ix.matching(&o).is_some(), "{host}");
        }
        let ix = TaskIndex::from_tasks([task("a.1", "agent-10", &["10.0.0.2"], "TASK_RUNNING")]);
        assert!(ix.matching(&o).is_none());
    }

    #[test]
    fn two_instances_with_one_address_on_a_node_are_ambiguous_and_keep_it() {
        let ix = TaskIndex::from_tasks([
            task("a.1", "n", &["10.0.0.2"], "TASK_RUNNING"),
            task("b.1", "n", &["10.0.0.2"], "TASK_RUNNING"),
        ]);
        let o = [owned("c1", "10.0.0.2", "n", 0, Some("gone.1"))];
        assert!(reconcile(&o, &[], &ix, 1000, P).is_empty());
    }

    #[test]
    fn a_running_task_without_ips_protects_nothing() {
        // Host-networking tasks never report a container address.
        let ix = TaskIndex::from_tasks([task("host.1", "a1", &[], "TASK_RUNNING")]);
        let o = [owned("c1", "10.0.0.2", "a1", 0, None)];
        assert_eq!(reconcile(&o, &[], &ix, 5000, P).len(), 1);
    }

    #[test]
    fn unreachable_and_lost_tasks_are_still_alive() {
        for state in ["TASK_UNREACHABLE", "TASK_LOST"] {
            let ix = TaskIndex::from_tasks([task("a.1", "n", &["10.0.0.2"], state)]);
            let o = [owned("c1", "10.0.0.2", "n", 0, Some("a.1"))];
            assert!(reconcile(&o, &[], &ix, 1000, P).is_empty(), "{state}");
        }
    }

    #[test]
    fn marathon_1_4_instances_remove_their_task() {
        let mut ix = TaskIndex::from_tasks([
            task("web.5f1d", "n", &["10.0.0.2"], "TASK_RUNNING"),
            task("web2.5f1d", "n", &["10.0.0.3"], "TASK_RUNNING"),
        ]);
        assert_eq!(ix.remove_instance("web.marathon-5f1d"), vec!["web.5f1d"]);
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn the_guard_holds_mass_deletions_and_empty_listings() {
        let owned_n = |n: u32| -> Vec<Owned> {
            (0..n)
                .map(|i| {
                    owned(
                        &format!("c{i}"),
                        &format!("10.0.0.{i}"),
                        "n",
                        0,
                        Some(&format!("a.{i}")),
                    )
                })
                .collect()
        };
        let o = owned_n(20);
        // Everything ended according to an empty listing.
        let empty = TaskIndex::default();
        let a = reconcile(&o, &[], &empty, 1000, P);
        assert_eq!(a.len(), 20);
        assert_eq!(
            guard(&o, &empty, &a, 50),
            Some(Hold::EmptyListing { joined: 20 })
        );
        // 15 of 20 gone: above 50 %.
        let ix = TaskIndex::from_tasks((0..5).map(|i| {
            task(
                &format!("a.{i}"),
                "n",
                &[&format!("10.0.0.{i}")],
                "TASK_RUNNING",
            )
        }));
        let a = reconcile(&o, &[], &ix, 1000, P);
        assert_eq!(a.len(), 15);
        assert_eq!(
            guard(&o, &ix, &a, 50),
            Some(Hold::TooMany {
                deletions: 15,
                owned: 20
            })
        );
        assert_eq!(guard(&o, &ix, &a, 80), None);
        // One deletion always passes.
        let o = owned_n(1);
        let a = reconcile(
            &o,
            &[],
            &TaskIndex::from_tasks([task("x.1", "n", &["9.9.9.9"], "TASK_RUNNING")]),
            1000,
            P,
        );
        assert_eq!(a.len(), 1);
        assert_eq!(
            guard(
                &o,
                &TaskIndex::from_tasks([task("x.1", "n", &["9.9.9.9"], "TASK_RUNNING")]),
                &a,
                50
            ),
            None
        );
    }

    #[test]
    fn a_task_that_ends_during_its_add_frees_its_attachment_without_the_grace() {
        let mut ix = TaskIndex::default();
        ix.upsert_at(task("web.1", "a1", &[], "TASK_STAGING"), 1000);
        // The ADD finishes at 1003, the task was killed at 1002: no DEL ever comes.
        ix.upsert_at(task("web.1", "a1", &[], "TASK_KILLED"), 1002);
        let o = [owned("c1", "10.0.0.2", "a1", 1003, None)];
        assert!(matches!(
            reconcile(&o, &[], &ix, 1010, P).as_slice(),
            [Action::Delete {
                reason: "its task ended before reporting an address",
                ..
            }]
        ));
        // Not with delete-unjoined off, not on another node, not for an attachment from
        // long before the task, and not when two attachments fit.
        let keep = Policy {
            delete_unjoined: false,
            ..P
        };
        assert!(reconcile(&o, &[], &ix, 1010, keep).is_empty());
        let other = [owned("c1", "10.0.0.2", "a2", 1003, None)];
        assert!(reconcile(&other, &[], &ix, 1010, P).is_empty());
        let old = [owned("c1", "10.0.0.2", "a1", 950, None)];
        assert!(reconcile(&old, &[], &ix, 1010, P).is_empty());
        let two = [
            owned("c1", "10.0.0.2", "a1", 1001, None),
            owned("c2", "10.0.0.3", "a1", 1001, None),
        ];
        assert!(reconcile(&two, &[], &ix, 1010, P).is_empty());
    }

    #[test]
    fn a_starting_task_that_vanishes_from_the_listing_ended_early() {
        let mut a = TaskIndex::default();
        a.upsert_at(task("web.1", "a1", &[], "TASK_STAGING"), 1000);
        let mut b = TaskIndex::from_tasks([]);
        b.succeed(&a, 1005, 300);
        assert_eq!(b.ended_early.len(), 1);
        assert_eq!(b.ended_early[0].first_seen, 1000);
        let o = [owned("c1", "10.0.0.2", "a1", 1002, None)];
        assert_eq!(reconcile(&o, &[], &b, 1006, P).len(), 1);
        // Forgotten after keep_secs.
        let mut c = TaskIndex::default();
        c.succeed(&b, 2000, 300);
        assert!(c.ended_early.is_empty());
    }

    /// The same index as `from_tasks` + `succeed`, whatever the old one held.
    fn same(a: &TaskIndex, b: &TaskIndex) {
        assert_eq!(a.by_id, b.by_id);
        let ips = |x: &TaskIndex| {
            let mut v: Vec<(String, Vec<Arc<str>>)> = x
                .by_ip
                .iter()
                .map(|(k, v)| {
                    let mut v = v.clone();
                    v.sort();
                    (k.clone(), v)
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(ips(a), ips(b));
        let seen = |x: &TaskIndex| {
            x.seen
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(seen(a), seen(b));
        let mut ea = a.ended_early.clone();
        let mut eb = b.ended_early.clone();
        ea.sort_by(|x, y| x.task_id.cmp(&y.task_id));
        eb.sort_by(|x, y| x.task_id.cmp(&y.task_id));
        assert_eq!(ea, eb);
        assert_eq!(a.starting, b.starting);
    }

    #[test]
    fn a_refresh_in_place_is_a_new_index_that_succeeds_the_old() {
        let mut old = TaskIndex::default();
        old.upsert_at(task("a.1", "n1", &["10.0.0.1"], "TASK_RUNNING"), 900);
        old.upsert_at(task("a.2", "n1", &[], "TASK_STAGING"), 950);
        old.upsert_at(task("a.3", "n2", &["10.0.0.3"], "TASK_RUNNING"), 960);
        old.upsert_at(task("a.4", "n2", &[], "TASK_STARTING"), 970);
        old.upsert_at(task("a.4", "n2", &[], "TASK_KILLED"), 980);
        old.ended_early.push(EndedEarly {
            task_id: "z.1".into(),
            host: "n9".into(),
            first_seen: 10,
            ended_at: 20,
        });
        let listing = vec![
            task("a.1", "n1", &["10.0.0.1"], "TASK_RUNNING"),
            // Changed address, a duplicate (the last wins), a terminal one, new ones.
            task("a.3", "n2", &["10.0.0.9"], "TASK_RUNNING"),
            task("a.3", "n2", &["10.0.0.8"], "TASK_RUNNING"),
            task("a.5", "n3", &["10.0.0.1"], "TASK_KILLED"),
            task("a.7", "n3", &["10.0.0.7"], "TASK_RUNNING"),
            task("a.7", "n3", &["10.0.0.7"], "TASK_FINISHED"),
            task("a.8", "n3", &["10.0.0.8"], "TASK_FINISHED"),
            task("a.8", "n3", &["10.0.0.8"], "TASK_RUNNING"),
            task("a.6", "n3", &[], "TASK_STAGING"),
            task("b.1", "n3", &["10.0.0.1"], "TASK_RUNNING"),
        ];
        for keep in [1, 300, 5000] {
            let mut want = TaskIndex::from_tasks(listing.clone());
            want.succeed(&old, 1000, keep);
            let mut got = old.clone();
            got.refresh(listing.clone(), 1000, keep);
            same(&got, &want);
            // a.2 was starting without an address and is not listed: it ended early.
            assert!(got.ended_early.iter().any(|e| e.task_id == "a.2"));
        }
        // From an empty index, and to an empty listing.
        let mut got = TaskIndex::default();
        got.refresh(listing.clone(), 1000, 300);
        let mut want = TaskIndex::from_tasks(listing.clone());
        want.succeed(&TaskIndex::default(), 1000, 300);
        same(&got, &want);
        let mut got = old.clone();
        got.refresh(vec![], 1000, 300);
        let mut want = TaskIndex::from_tasks([]);
        want.succeed(&old, 1000, 300);
        same(&got, &want);
    }

    #[test]
    fn orphans_wait_for_the_grace() {
        let x = [Orphan {
            ty: "virtual-machine",
            uuid: "u".into(),
            container_id: "c".into(),
            created_at: 950,
        }];
        assert!(reconcile::<Owned>(&[], &x, &TaskIndex::default(), 1000, P).is_empty());
        assert_eq!(
            reconcile::<Owned>(&[], &x, &TaskIndex::default(), 1100, P).len(),
            1
        );
    }

    #[test]
    fn pod_instance_removal_drops_its_containers() {
        let mut ix = TaskIndex::from_tasks([
            task("pod.instance-1.c1", "n", &["10.0.0.3"], "TASK_RUNNING"),
            task("pod.instance-1.c2", "n", &["10.0.0.3"], "TASK_RUNNING"),
            task("pod.instance-10.c1", "n", &["10.0.0.4"], "TASK_RUNNING"),
        ]);
        assert_eq!(ix.remove_instance("pod.instance-1").len(), 2);
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn one_pod_container_ending_keeps_the_shared_attachment() {
        let mut ix = TaskIndex::from_tasks([
            task("pod.i.c1", "n", &["10.0.0.3"], "TASK_RUNNING"),
            task("pod.i.c2", "n", &["10.0.0.3"], "TASK_RUNNING"),
        ]);
        ix.upsert(task("pod.i.c1", "n", &["10.0.0.3"], "TASK_FINISHED"));
        let o = [owned("c1", "10.0.0.3", "n", 0, Some("pod.i.c1"))];
        // Rejoined to the surviving container, not deleted.
        assert_eq!(
            reconcile(&o, &[], &ix, 1000, P),
            vec![Action::Join {
                container_id: "c1".into(),
                task_id: "pod.i.c2".into()
            }]
        );
    }
}
