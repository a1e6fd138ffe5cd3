//! Inventory: every object this manager owns, read back from VNC (start-up cache rebuild and
//! the reconciler). Ownership is the `owner` and `cluster` annotations, never a name.

use std::collections::{HashMap, HashSet};

use contrail_mesos_api::{Attachment, Node, ObjectRef};

use super::model::VncObject;
use super::writer::{AttachError, Writer};
use crate::cache::Owned;

impl Writer {
    /// True for an object this manager (owner) of this cluster created: the only objects it
    /// ever deletes.
    pub(crate) fn owns(&self, o: &VncObject) -> bool {
        o.annotation("owner") == Some(self.cfg.owner.as_str())
            && o.annotation("cluster") == Some(self.cfg.cluster.as_str())
    }

    /// Reads every owned object from VNC: attachments, plus orphans (objects whose
    /// attachment is incomplete: a VM with no VMI, an instance-ip or floating-ip whose VMI is
    /// gone). Used at start and by the reconciler.
    pub fn scan(&self) -> Result<Scan, AttachError> {
        // Each list is streamed and every owned object is cut down to what the pass needs as
        // it is decoded: at 10,000 attachments, holding four lists of whole objects was most
        // of the manager's peak memory.
        let mine = |o: &VncObject| self.owns(o);
        // (display name, the VM as an orphan should no VMI use it), in list order.
        let mut vms: Vec<(Option<String>, Orphan)> = Vec::new();
        self.api.list_each("virtual-machine", &mut |o| {
            if mine(&o) {
                vms.push((o.display_name.clone(), orphan_of("virtual-machine", &o)));
            }
        })?;
        let mut owned = Vec::new();
        self.api.list_each("virtual-machine-interface", &mut |v| {
            if !mine(&v) {
                return;
            }
            let ann = |k: &str| v.annotation(k).unwrap_or_default().to_owned();
            let cid = ann("container-id");
            let vn = v.virtual_network_refs.first().cloned().unwrap_or_default();
            owned.push(Owned {
                attachment: Attachment {
                    container_id: cid.clone(),
                    ifname: ann("ifname"),
                    vm_uuid: v
                        .virtual_machine_refs
                        .first()
                        .map(|r| r.uuid.clone())
                        .unwrap_or_default(),
                    vm_name: cid,
                    vmi_uuid: v.uuid.clone(),
                    vn: ObjectRef {
                        uuid: vn.uuid,
                        fq_name: vn.to,
                    },
                    ip: None,
                    mac: v.mac().map(str::to_owned),
                    // An annotation another writer mangled reads as a sole interface.
                    index: v
                        .annotation("index")
                        .and_then(|a| a.parse().ok())
                        .unwrap_or(contrail_mesos_api::InterfaceIndex::SOLE),
                    floating_ips: Vec::new(),
                },
                iip_uuid: None,
                fip_uuids: Vec::new(),
                node: Node {
                    name: ann("node-name"),
                    ip: ann("node-ip"),
                },
                created_at: v
                    .annotation("created-at")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                task_id: None,
            });
        })?;
        // VMI uuid -> position in `owned`, for the instance-ips and floating-ips.
        let by_vmi: HashMap<String, usize> = owned
            .iter()
            .enumerate()
            .map(|(k, o)| (o.attachment.vmi_uuid.clone(), k))
            .collect();
        let find = |vmi: Option<&str>| by_vmi.get(vmi?).copied();
        let is_v4 = |a: Option<&str>| {
            a.and_then(|a| a.parse::<std::net::IpAddr>().ok())
                .is_some_and(|a| a.is_ipv4())
        };
        let mut orphans = Vec::new();
        self.api.list_each("instance-ip", &mut |i| {
            if !mine(&i) {
                return;
            }
            let vmi = i
                .virtual_machine_interface_refs
                .first()
                .map(|r| r.uuid.as_str());
            match find(vmi) {
                // A dual-stack port has one of each family: the IPv4 one is the attachment's
                // address (as at registration); otherwise the last one listed wins.
                Some(k) => {
                    let o = &mut owned[k];
                    if is_v4(i.instance_ip_address.as_deref()) || !is_v4(o.attachment.ip.as_deref())
                    {
                        o.attachment.ip = i.instance_ip_address.clone();
                        o.iip_uuid = Some(i.uuid.clone());
                    }
                }
                None => orphans.push(orphan_of("instance-ip", &i)),
            }
        })?;
        self.api.list_each("floating-ip", &mut |f| {
            if !mine(&f) {
                return;
            }
            let vmi = f
                .virtual_machine_interface_refs
                .first()
                .map(|r| r.uuid.as_str());
            match find(vmi) {
                Some(k) => {
                    let o = &mut owned[k];
                    if let Some(a) = &f.floating_ip_address {
                        o.attachment.floating_ips.push(a.clone());
                    }
                    o.fip_uuids.push(f.uuid.clone());
                }
                None => orphans.push(orphan_of("floating-ip", &f)),
            }
        })?;
        drop(by_vmi);
        let vm_by_uuid: HashMap<&str, &Option<String>> =
            vms.iter().map(|(d, x)| (x.uuid.as_str(), d)).collect();
        let mut used = HashSet::new();
        for o in &mut owned {
            if let Some(display) = vm_by_uuid.get(o.attachment.vm_uuid.as_str()) {
                o.task_id = display
                    .as_ref()
                    .filter(|d| **d != o.attachment.container_id && !d.is_empty())
                    .cloned();
            }
            used.insert(o.attachment.vm_uuid.clone());
        }
        drop(vm_by_uuid);
        orphans.extend(
            vms.into_iter()
                .map(|(_, x)| x)
                .filter(|x| !used.contains(&x.uuid)),
        );
        // Which VMs a virtual router refers to: a detail list carries refs (not back-refs),
        // so the routers' lists are the place to look.
        let mut referred = HashSet::new();
        self.api.list_each("virtual-router", &mut |r| {
            referred.extend(r.virtual_machine_refs.into_iter().map(|x| x.uuid));
        })?;
        let mut vms_without_vrouter: Vec<String> = owned
            .iter()
            .filter(|o| !referred.contains(&o.attachment.vm_uuid))
            .map(|o| o.attachment.container_id.clone())
            .collect();
        vms_without_vrouter.dedup();
        Ok(Scan {
            owned,
            orphans,
            vms_without_vrouter,
        })
    }
}

impl Writer {
    /// Re-creates the `virtual-router -> virtual-machine` ref of a container whose VM has
    /// interfaces but no router referring to it, as Contrail's kube-manager does on its resync.
    /// Checked afresh against VNC (the caller holds the container's lock, so a DEL cannot run
    /// in between). Returns whether a ref was added.
    pub fn restore_vrouter_ref(&self, cid: &str) -> Result<bool, AttachError> {
        let vm = match self
            .api
            .read("virtual-machine", &contrail_mesos_api::vm_uuid_for(cid))
        {
            Ok(vm) => vm,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if !self.owns(&vm)
            || vm.virtual_machine_interface_back_refs.is_empty()
            || !vm.virtual_router_back_refs.is_empty()
        {
            return Ok(false);
        }
        let node = match self.cache.of_container(cid).into_iter().next() {
            Some(o) => o.node,
            None => {
                let vmi = self.api.read(
                    "virtual-machine-interface",
                    &vm.virtual_machine_interface_back_refs[0].uuid,
                )?;
                Node {
                    name: vmi.annotation("node-name").unwrap_or_default().to_owned(),
                    ip: vmi.annotation("node-ip").unwrap_or_default().to_owned(),
                }
            }
        };
        for fresh in [false, true] {
            if fresh {
                self.cache.put_vrouters(Vec::new());
            }
            let Some(vr) = self.find_vrouter(&node)? else {
                return Ok(false);
            };
            match self.api.ref_update(
                "virtual-router",
                &vr,
                "virtual-machine",
                &vm.uuid,
                super::client::RefOp::Add,
            ) {
                Ok(()) => {
                    tracing::info!(cid, vrouter = %vr, "restored the virtual-router ref of a VM");
                    return Ok(true);
                }
                // The router was re-registered under a new uuid: look it up again, once.
                Err(e) if e.is_not_found() && !fresh => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }
}

// The inventory types belong to the reconciler (`crate::inventory`); the VNC side fills them.
pub use crate::inventory::{Orphan, Scan};

/// An owned object outside any complete attachment, from its VNC form.
fn orphan_of(ty: &str, o: &VncObject) -> Orphan {
    Orphan {
        ty: ty.to_owned(),
        uuid: o.uuid.clone(),
        container_id: o.annotation("container-id").unwrap_or_default().to_owned(),
        created_at: o
            .annotation("created-at")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    }
}
