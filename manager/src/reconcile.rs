//! The reconcile core: a pure function from (owned attachments, what Marathon runs, now) to
//! actions. No I/O, so every rule below is unit-tested.
//!
//! Rules:
//! 1. An attachment is *matched* by a live task that reports its instance-ip address, on its
//!    node when several tasks report that address (the same subnet can exist in two VNs).
//!    A match whose task id differs from the VM's display name gives `Join`.
//! 2. An attachment *joined* to a task (the VM display name is a task id, persisted in VNC)
//!    whose task is no longer live is deleted: the task ended and the DEL never came.
//! 3. An attachment never joined is protected for `grace` after registration, because Mesos
//!    reports a task's IPs only after the CNI ADD returned, and Marathon later still. After
//!    the grace it is deleted only when `delete_unjoined` is set (containers of other
//!    frameworks never get a Marathon task) and no live task on its node is still without
//!    IPs (that task may be the one that will report this address).
//! 4. Orphans (an owned VM without interface, an instance-ip/floating-ip without VMI: traces
//!    of a crash mid-registration) are deleted after the grace.
//! 5. Only owned objects are ever considered: the caller filters by ownership annotations.

use std::collections::HashMap;

use crate::cache::Owned;
use crate::marathon::TaskView;
use crate::marathon::model::is_terminal_state;
use crate::vnc::Orphan;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub grace_secs: u64,
    pub delete_unjoined: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Deregister (container id, ifname).
    Delete {
        container_id: String,
        ifname: String,
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

/// Live tasks indexed by id and by IP.
#[derive(Debug, Clone, Default)]
pub struct TaskIndex {
    pub by_id: HashMap<String, TaskView>,
    by_ip: HashMap<String, Vec<String>>,
}

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
        self.remove(&t.id);
        if is_terminal_state(&t.state) {
            return;
        }
        for ip in &t.ips {
            self.by_ip.entry(ip.clone()).or_default().push(t.id.clone());
        }
        self.by_id.insert(t.id.clone(), t);
    }

    pub fn remove(&mut self, id: &str) -> Option<TaskView> {
        let t = self.by_id.remove(id)?;
        for ip in &t.ips {
            if let Some(v) = self.by_ip.get_mut(ip) {
                v.retain(|x| x != id);
                if v.is_empty() {
                    self.by_ip.remove(ip);
                }
            }
        }
        Some(t)
    }

    /// Removes the tasks of an instance (`<instance>` or `<instance>.<container>`).
    pub fn remove_instance(&mut self, instance_id: &str) -> Vec<String> {
        let prefix = format!("{instance_id}.");
        let ids: Vec<String> = self
            .by_id
            .keys()
            .filter(|k| *k == instance_id || k.starts_with(&prefix))
            .cloned()
            .collect();
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

    /// The live task that reports this attachment's address.
    pub fn matching(&self, o: &Owned) -> Option<&TaskView> {
        let ip = o.attachment.ip.as_deref()?;
        let ids = self.by_ip.get(ip)?;
        let on_node = |t: &&&TaskView| t.host == o.node.name || t.host == o.node.ip;
        let tasks: Vec<&TaskView> = ids.iter().filter_map(|i| self.by_id.get(i)).collect();
        match tasks.as_slice() {
            [one] => Some(*one),
            many => many.iter().find(on_node).copied(),
        }
    }

    fn node_has_ipless_task(&self, o: &Owned) -> bool {
        self.by_id
            .values()
            .any(|t| t.ips.is_empty() && (t.host == o.node.name || t.host == o.node.ip))
    }
}

/// One pass over a complete snapshot.
pub fn reconcile(
    owned: &[Owned],
    orphans: &[Orphan],
    tasks: &TaskIndex,
    now: u64,
    policy: Policy,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut joined_cids = std::collections::HashSet::new();
    for o in owned {
        let cid = &o.attachment.container_id;
        let young = now.saturating_sub(o.created_at) < policy.grace_secs;
        if let Some(t) = tasks.matching(o) {
            if o.task_id.as_deref() != Some(t.id.as_str()) && joined_cids.insert(cid.clone()) {
                actions.push(Action::Join {
                    container_id: cid.clone(),
                    task_id: t.id.clone(),
                });
            }
            continue;
        }
        match &o.task_id {
            Some(t) if tasks.by_id.contains_key(t) => {}
            Some(_) => actions.push(Action::Delete {
                container_id: cid.clone(),
                ifname: o.attachment.ifname.clone(),
                reason: "task ended",
            }),
            None if young || !policy.delete_unjoined || tasks.node_has_ipless_task(o) => {}
            None => actions.push(Action::Delete {
                container_id: cid.clone(),
                ifname: o.attachment.ifname.clone(),
                reason: "no task after the grace period",
            }),
        }
    }
    for x in orphans {
        if now.saturating_sub(x.created_at) >= policy.grace_secs {
            actions.push(Action::DeleteObject {
                ty: x.ty.clone(),
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
                || o.attachment
                    .ip
                    .as_ref()
                    .is_some_and(|ip| task.ips.contains(ip))
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
                },
                ip: Some(ip.into()),
                mac: None,
                index: "0/1".into(),
                floating_ips: vec![],
            },
            iip_uuid: Some("iip".into()),
            fip_uuids: vec![],
            node: Node {
                name: node.into(),
                ip: format!("ip-{node}"),
            },
            created_at,
            task_id: task.map(str::to_owned),
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
    fn orphans_wait_for_the_grace() {
        let x = [Orphan {
            ty: "virtual-machine".into(),
            uuid: "u".into(),
            container_id: "c".into(),
            created_at: 950,
        }];
        assert!(reconcile(&[], &x, &TaskIndex::default(), 1000, P).is_empty());
        assert_eq!(reconcile(&[], &x, &TaskIndex::default(), 1100, P).len(), 1);
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
