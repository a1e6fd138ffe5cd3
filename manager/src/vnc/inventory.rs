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
        // it is decoded. The interfaces are listed last: by then each one's VM, addresses and
        // floating IPs are known, so its attachment is complete as it is read and, when the
        // cache already holds the same, the cached one is shared instead (a pass then holds
        // the cache plus the few small maps below, not a second copy of every attachment).
        let mine = |o: &VncObject| self.owns(o);
        let mut vms: HashMap<UuidKey, Vm> = HashMap::new();
        let mut orphans = Vec::new();
        // VMI uuid -> its instance-ips / floating-ips, in list order.
        let mut iips: HashMap<UuidKey, Vec<Part>> = HashMap::new();
        let mut fips: HashMap<UuidKey, Vec<Part>> = HashMap::new();
        // The VMs, the instance-ips and the floating IPs do not depend on each other: they are
        // listed side by side, so the server renders one list's page while this process
        // decodes another's (a pass at 100,000 tasks is mostly that; docs/BENCHMARKS.md). All
        // three are read before the interfaces, as the comment above needs.
        let (vm_list, part_lists) = std::thread::scope(|sc| {
            let vm_list = sc.spawn(|| {
                self.api
                    .list_fields_each("virtual-machine", VM_FIELDS, &mut |o| {
                        if mine(&o) {
                            let (cid, created_at) = identity(&o);
                            vms.insert(
                                UuidKey::new(o.uuid),
                                Vm {
                                    display: o.display_name,
                                    cid,
                                    created_at,
                                    used: false,
                                },
                            );
                        }
                    })
            });
            let part_lists: Vec<_> = [
                ("instance-ip", &mut iips, Vec::new()),
                ("floating-ip", &mut fips, Vec::new()),
            ]
            .into_iter()
            .map(|(ty, parts, mut lost)| {
                sc.spawn(move || {
                    let fields = if ty == "instance-ip" {
                        IIP_FIELDS
                    } else {
                        FIP_FIELDS
                    };
                    let r = self.api.list_fields_each(ty, fields, &mut |i| {
                        if !mine(&i) {
                            return;
                        }
                        let (cid, created_at) = identity(&i);
                        let part = Part {
                            address: if ty == "instance-ip" {
                                i.instance_ip_address
                            } else {
                                i.floating_ip_address
                            },
                            uuid: UuidKey::new(i.uuid),
                            cid,
                            created_at,
                        };
                        match i.virtual_machine_interface_refs.into_iter().next() {
                            Some(r) => crate::cache::push_small(
                                parts.entry(UuidKey::new(r.uuid)).or_default(),
                                part,
                            ),
                            None => lost.push(part.orphan(ty)),
                        }
                    });
                    r.map(|()| lost)
                })
            })
            .collect();
            (
                join(vm_list),
                part_lists.into_iter().map(join).collect::<Vec<_>>(),
            )
        });
        vm_list?;
        for lost in part_lists {
            orphans.extend(lost?);
        }
        let is_v4 = |a: Option<&str>| {
            a.and_then(|a| a.parse::<std::net::IpAddr>().ok())
                .is_some_and(|a| a.is_ipv4())
        };
        // The routers' refs are listed beside the interfaces (neither needs the other). A
        // router read before an interface's registration added its ref only makes the pass
        // restore that ref, which adding again leaves as it is.
        let mut owned = Vec::new();
        // Which VMs a virtual router refers to: a detail list carries refs (not back-refs),
        // so the routers' lists are the place to look.
        let mut referred = HashSet::new();
        let (vmi_list, vr_list) = std::thread::scope(|sc| {
            let vr_list = sc.spawn(|| {
                self.api
                    .list_fields_each("virtual-router", &["virtual_machine_refs"], &mut |r| {
                        referred.extend(
                            r.virtual_machine_refs
                                .into_iter()
                                .map(|x| UuidKey::new(x.uuid)),
                        );
                    })
            });
            let vmi_list =
                self.api
                    .list_fields_each("virtual-machine-interface", VMI_FIELDS, &mut |v| {
                        if !mine(&v) {
                            return;
                        }
                        let ann = |k: &str| v.annotation(k).unwrap_or_default().to_owned();
                        let cid = ann("container-id");
                        let vn = v.virtual_network_refs.first().cloned().unwrap_or_default();
                        let vm_uuid = v
                            .virtual_machine_refs
                            .first()
                            .map(|r| r.uuid.clone())
                            .unwrap_or_default();
                        let task_id = vms.get_mut(&UuidKey::of(&vm_uuid)).and_then(|vm| {
                            vm.used = true;
                            vm.display
                                .as_ref()
                                .filter(|d| **d != cid && !d.is_empty())
                                .cloned()
                        });
                        let mut o = Owned {
                            attachment: Attachment {
                                container_id: cid.clone(),
                                ifname: ann("ifname"),
                                vm_uuid,
                                vm_name: cid,
                                vmi_uuid: v.uuid.clone(),
                                vn: self.cache.intern_vn(&ObjectRef {
                                    uuid: vn.uuid,
                                    fq_name: vn.to,
                                }),
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
                            node: self.cache.intern_node(&Node {
                                name: ann("node-name"),
                                ip: ann("node-ip"),
                            }),
                            created_at: v
                                .annotation("created-at")
                                .and_then(|s| s.parse().ok())
                                .unwrap_or(0),
                            task_id: task_id.map(Into::into),
                            allow_rules: v.annotation("allow-rules").map(str::to_owned),
                        };
                        // A dual-stack port has one of each family: the IPv4 one is the attachment's
                        // address (as at registration); otherwise the last one listed wins.
                        let vmi = UuidKey::of(&v.uuid);
                        for i in iips.remove(&vmi).unwrap_or_default() {
                            if is_v4(i.address.as_deref()) || !is_v4(o.attachment.ip.as_deref()) {
                                o.attachment.ip = i.address;
                                o.iip_uuid = Some(i.uuid.text());
                            }
                        }
                        for f in fips.remove(&vmi).unwrap_or_default() {
                            if let Some(a) = f.address {
                                o.attachment.floating_ips.push(a);
                            }
                            o.fip_uuids.push(f.uuid.text());
                        }
                        owned.push(self.cache.share(o));
                    });
            (vmi_list, join(vr_list))
        });
        vmi_list?;
        vr_list?;
        // What is left has no interface: instance-ips and floating-ips whose VMI is gone, VMs
        // no VMI uses.
        for (ty, parts) in [("instance-ip", iips), ("floating-ip", fips)] {
            let mut left: Vec<Orphan> = parts
                .into_values()
                .flatten()
                .map(|p| p.orphan(ty))
                .collect();
            left.sort_by(|a, b| a.uuid.cmp(&b.uuid));
            orphans.extend(left);
        }
        let mut unused: Vec<(String, Vm)> = vms
            .into_iter()
            .filter(|(_, vm)| !vm.used)
            .map(|(k, vm)| (k.text(), vm))
            .collect();
        unused.sort_by(|a, b| a.0.cmp(&b.0));
        orphans.extend(unused.into_iter().map(|(uuid, vm)| Orphan {
            ty: "virtual-machine",
            uuid,
            container_id: vm.cid.text(),
            created_at: vm.created_at,
        }));
        let mut vms_without_vrouter: Vec<String> = owned
            .iter()
            .filter(|o| !referred.contains(&UuidKey::of(&o.attachment.vm_uuid)))
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

/// A scoped list thread's result; its panic goes on in the caller (as the same code on the
/// caller's thread would have panicked).
fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// What the scan reads of each type besides uuid and fq-name (ownership and identity are
/// annotations).
const VM_FIELDS: &[&str] = &["annotations", "display_name"];
const IIP_FIELDS: &[&str] = &[
    "annotations",
    "instance_ip_address",
    "virtual_machine_interface_refs",
];
const FIP_FIELDS: &[&str] = &[
    "annotations",
    "floating_ip_address",
    "virtual_machine_interface_refs",
];
const VMI_FIELDS: &[&str] = &[
    "annotations",
    "virtual_network_refs",
    "virtual_machine_refs",
    "virtual_machine_interface_mac_addresses",
];

/// A uuid as the key of the scan's maps: 16 bytes in place for the canonical form VNC gives
/// (the scan keys 100,000 VMs, interfaces' addresses and the routers' VM refs by uuid; a
/// 36-byte string each was ~15 MiB of a pass's peak), any other text kept as it is, so two
/// keys are equal exactly when their texts are. The scan also holds the addresses' uuids and
/// the container ids (Mesos container ids are uuids) this way until the interfaces are read:
/// another ~14 MiB of the peak at 100,000 tasks, in a heap chunk each as strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum UuidKey {
    Id(u128),
    Text(String),
}

impl UuidKey {
    fn new(s: String) -> UuidKey {
        match Self::id(&s) {
            Some(u) => UuidKey::Id(u),
            None => UuidKey::Text(s),
        }
    }
    fn of(s: &str) -> UuidKey {
        match Self::id(s) {
            Some(u) => UuidKey::Id(u),
            None => UuidKey::Text(s.to_owned()),
        }
    }
    fn id(s: &str) -> Option<u128> {
        contrail_mesos_api::is_canonical_uuid(s)
            .then(|| uuid::Uuid::parse_str(s).ok())
            .flatten()
            .map(|u| u.as_u128())
    }
    /// The key's text (a canonical uuid prints back as it was read).
    fn text(self) -> String {
        match self {
            UuidKey::Id(u) => uuid::Uuid::from_u128(u).hyphenated().to_string(),
            UuidKey::Text(s) => s,
        }
    }
}

/// An owned VM as the scan keeps it until the interfaces are read.
struct Vm {
    display: Option<String>,
    cid: UuidKey,
    created_at: u64,
    /// An interface refers to it.
    used: bool,
}

/// An owned instance-ip or floating-ip as the scan keeps it until the interfaces are read.
struct Part {
    address: Option<String>,
    uuid: UuidKey,
    cid: UuidKey,
    created_at: u64,
}

impl Part {
    fn orphan(self, ty: &'static str) -> Orphan {
        Orphan {
            ty,
            uuid: self.uuid.text(),
            container_id: self.cid.text(),
            created_at: self.created_at,
        }
    }
}

/// The `container-id` and `created-at` annotations of an owned object.
fn identity(o: &VncObject) -> (UuidKey, u64) {
    (
        UuidKey::of(o.annotation("container-id").unwrap_or_default()),
        o.annotation("created-at")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    )
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
            Some(o) => Node::clone(&o.node),
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

#[cfg(test)]
mod tests {
    use super::UuidKey;

    #[test]
    fn a_uuid_key_is_equal_exactly_when_the_text_is() {
        let lower = "5baff64c-d028-47ba-864e-a5ee679fc069";
        let upper = "5BAFF64C-D028-47BA-864E-A5EE679FC069";
        assert!(matches!(UuidKey::of(lower), UuidKey::Id(_)));
        assert_eq!(UuidKey::of(lower), UuidKey::new(lower.to_owned()));
        assert_ne!(UuidKey::of(lower), UuidKey::of(upper));
        assert_ne!(
            UuidKey::of(lower),
            UuidKey::of("5baff64cd02847ba864ea5ee679fc069")
        );
        for s in [lower, upper, "not-a-uuid", ""] {
            assert_eq!(UuidKey::of(s).text(), s);
        }
    }
}
