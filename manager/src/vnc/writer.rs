//! Attachment → VNC objects, and back: the order of the writes of one registration and of one
//! deregistration. Label semantics live in `planning`, CRUD of shared objects in `objects`,
//! the owned-object inventory in `inventory`, and names/uuids in `ids` (every per-attachment
//! name is derived from (container id, ifname), so a DEL finds the objects from VNC alone).

use std::net::IpAddr;
use std::sync::Arc;

use contrail_mesos_api::{AttachRequest, Attachment, ObjectRef, vm_uuid_for};
use serde_json::json;

use super::client::{RefOp, VncApi, VncError};
use super::ids::{index_of, mac_for, port_name};
use super::model::annotations;
use super::objects::ignore_404;
use super::planning::{Plan, plan};
use crate::cache::{Cache, Owned};

pub use super::ids::now_secs;

/// Defaults and identity of this manager.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Annotation `owner`: marks what this manager may delete.
    pub owner: String,
    /// Annotation `cluster`: several managers (clusters) can share one VNC.
    pub cluster: String,
    pub domain: String,
    pub project: String,
    /// Network name used when the `networks` label is absent.
    pub network: String,
    /// Subnet for a network the manager has to create without a `network-subnets` label.
    pub subnet: Option<String>,
}

/// Why a registration failed; maps onto the attachment API's error kinds.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AttachError {
    #[error("label {label}: {message}")]
    BadLabel {
        label: &'static str,
        message: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

pub(crate) fn bad(label: &'static str, message: impl Into<String>) -> AttachError {
    AttachError::BadLabel {
        label,
        message: message.into(),
    }
}

impl From<VncError> for AttachError {
    fn from(e: VncError) -> Self {
        if e.is_transient() {
            AttachError::Unavailable(e.to_string())
        } else {
            AttachError::Internal(e.to_string())
        }
    }
}

pub struct Writer {
    pub api: Arc<dyn VncApi>,
    pub cfg: WriterConfig,
    pub cache: Arc<Cache>,
}

impl Writer {
    fn owner_pairs<'a>(
        &'a self,
        cid: &'a str,
        ifname: &'a str,
        created: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        vec![
            ("owner", self.cfg.owner.as_str()),
            ("cluster", self.cfg.cluster.as_str()),
            ("container-id", cid),
            ("ifname", ifname),
            ("created-at", created),
        ]
    }

    /// Registers one attachment. Returns it and whether it was newly created.
    pub fn attach(&self, req: &AttachRequest) -> Result<(Attachment, bool), AttachError> {
        let cid = req.container_id.as_str();
        let ifname = req.ifname.as_str();
        let key = (cid.to_owned(), ifname.to_owned());
        let p = plan(&self.cfg, req)?;

        // Fast path: registered before. Confirm with VNC (the cache is never the authority).
        if let Some(o) = self.cache.get(&key) {
            if o.attachment.vn.fq_name != p.vn_fq {
                return Err(AttachError::Conflict(format!(
                    "{cid}/{ifname} is registered on network {}, not {}",
                    o.attachment.vn.fq_name.join(":"),
                    p.vn_fq.join(":")
                )));
            }
            match self
                .api
                .read("virtual-machine-interface", &o.attachment.vmi_uuid)
            {
                Ok(vmi)
                    if vmi
                        .virtual_network_refs
                        .iter()
                        .any(|r| r.uuid == o.attachment.vn.uuid) =>
                {
                    if o.iip_uuid.is_some() {
                        return Ok((o.attachment, false));
                    }
                }
                Ok(_) | Err(VncError::Status { status: 404, .. }) => {
                    self.cache.remove(&key);
                }
                Err(e) => return Err(e.into()),
            }
        }

        let project = self.ensure_project(&p)?;
        let (vn, subnets) = self.ensure_network(&p)?;
        if let Some(ip) = p.ip
            && !subnets.iter().any(|s| s.contains(&ip))
        {
            return Err(bad(
                "network-ip",
                format!("{ip} is outside the subnets of {}", p.vn_fq.join(":")),
            ));
        }
        let mut sg_refs = Vec::new();
        for g in &p.sgs {
            match self.lookup("security-group", g)? {
                Some(u) => sg_refs.push(json!({"to": g, "uuid": u})),
                None => {
                    return Err(bad(
                        "security-groups",
                        format!("security group {} does not exist", g.join(":")),
                    ));
                }
            }
        }
        let mut pools = Vec::new();
        for (pool, addr) in &p.fips {
            match self.lookup("floating-ip-pool", pool)? {
                Some(u) => pools.push((pool.clone(), u, *addr)),
                None => {
                    return Err(bad(
                        "floating-ips",
                        format!("floating-ip pool {} does not exist", pool.join(":")),
                    ));
                }
            }
        }
        let vrouter = self.find_vrouter(&req.node)?.ok_or_else(|| {
            AttachError::Unavailable(format!(
                "no virtual-router named {} or with IP {}",
                req.node.name, req.node.ip
            ))
        })?;

        let created_at = now_secs().to_string();
        let owner = self.owner_pairs(cid, ifname, &created_at);

        // VM: uuid and name from the container id, shared by the container's interfaces.
        let vm_uuid = vm_uuid_for(cid);
        let vm_body = json!({"uuid": vm_uuid, "fq_name": [cid], "display_name": cid, "server_type": "container",
            "annotations": annotations(&[("owner", &self.cfg.owner), ("cluster", &self.cfg.cluster),
                ("container-id", cid), ("created-at", &created_at), ("kind", "mesos-container")])});
        let (vm_uuid, _) = self.create_or_reuse("virtual-machine", vm_body)?;

        // VMI: our uuid and MAC (the server's rule, "02:" + first 5 uuid bytes), so the answer
        // needs no read-back.
        let name = port_name(cid, ifname);
        let mut vmi_fq = p.project_fq.clone();
        vmi_fq.push(name.clone());
        let index = index_of(ifname, self.cache.count_of_container(cid));
        let vmi_uuid = uuid::Uuid::new_v4().to_string();
        let mac = mac_for(&vmi_uuid);
        let mut vmi_ann = owner.clone();
        vmi_ann.extend([
            ("index", index.as_str()),
            ("node-name", req.node.name.as_str()),
            ("node-ip", req.node.ip.as_str()),
            ("network", req.network_name.as_str()),
        ]);
        let vmi_body = json!({"uuid": vmi_uuid, "fq_name": vmi_fq, "parent_type": "project", "display_name": name,
            "virtual_network_refs": [{"to": p.vn_fq, "uuid": vn}],
            "virtual_machine_refs": [{"to": [cid], "uuid": vm_uuid}],
            "security_group_refs": sg_refs,
            "virtual_machine_interface_mac_addresses": {"mac_address": [mac]},
            "annotations": annotations(&vmi_ann)});
        let (vmi_uuid, created, mac, index) =
            match self.create_or_reuse("virtual-machine-interface", vmi_body)? {
                (u, true) => (u, true, mac, index),
                (u, false) => {
                    let o = self.api.read("virtual-machine-interface", &u)?;
                    if !o.virtual_network_refs.iter().any(|r| r.uuid == vn) {
                        return Err(AttachError::Conflict(format!(
                            "{cid}/{ifname} is registered on another network"
                        )));
                    }
                    let mac = o.mac().unwrap_or_default().to_owned();
                    let idx = o.annotation("index").unwrap_or(&index).to_owned();
                    (u, false, mac, idx)
                }
            };
        let _ = project;

        let result = self.attach_addresses(
            req, &p, &vn, &vmi_fq, &vmi_uuid, &owner, &pools, &vm_uuid, &vrouter,
        );
        let (iip_uuid, ip, fips, fip_uuids) = match result {
            Ok(x) => x,
            Err(e) => {
                if created && matches!(e, AttachError::BadLabel { .. }) {
                    // Leave nothing behind for a request that can never succeed.
                    if let Err(de) = self.detach(cid, ifname) {
                        tracing::warn!(cid, ifname, error = %de, "rollback after a bad label failed; the reconciler will retry");
                    }
                }
                return Err(e);
            }
        };
        let attachment = Attachment {
            container_id: cid.to_owned(),
            ifname: ifname.to_owned(),
            vm_uuid: vm_uuid.clone(),
            vm_name: cid.to_owned(),
            vmi_uuid: vmi_uuid.clone(),
            vn: ObjectRef {
                uuid: vn.clone(),
                fq_name: p.vn_fq.clone(),
            },
            ip: Some(ip),
            mac: Some(mac),
            index,
            floating_ips: fips,
        };
        self.cache.put(Owned {
            attachment: attachment.clone(),
            iip_uuid: Some(iip_uuid),
            fip_uuids,
            node: req.node.clone(),
            created_at: now_secs(),
            task_id: None,
        });
        Ok((attachment, created))
    }

    #[allow(clippy::too_many_arguments)]
    fn attach_addresses(
        &self,
        req: &AttachRequest,
        p: &Plan,
        vn: &str,
        vmi_fq: &[String],
        vmi_uuid: &str,
        owner: &[(&str, &str)],
        pools: &[(Vec<String>, String, Option<IpAddr>)],
        vm_uuid: &str,
        vrouter: &str,
    ) -> Result<(String, String, Vec<String>, Vec<String>), AttachError> {
        let name = port_name(&req.container_id, &req.ifname);
        let mut iip = json!({"fq_name": [name], "virtual_network_refs": [{"to": p.vn_fq, "uuid": vn}],
            "virtual_machine_interface_refs": [{"to": vmi_fq, "uuid": vmi_uuid}], "annotations": annotations(owner)});
        if let Some(ip) = p.ip {
            iip["instance_ip_address"] = json!(ip.to_string());
        }
        let (iip_uuid, ip) = match self.create_or_reuse("instance-ip", iip) {
            Ok((u, true)) if p.ip.is_some() => (u, p.ip.map(|i| i.to_string()).unwrap_or_default()),
            Ok((u, _)) => {
                let o = self.api.read("instance-ip", &u)?;
                (u, o.instance_ip_address.unwrap_or_default())
            }
            Err(e) if matches!(e.status(), Some(400) | Some(409)) => {
                let label = if p.ip.is_some() {
                    "network-ip"
                } else {
                    "network-subnets"
                };
                return Err(bad(label, e.body().to_owned()));
            }
            Err(e) => return Err(e.into()),
        };
        let mut fips = Vec::new();
        let mut fip_uuids = Vec::new();
        for (i, (pool_fq, _pool, addr)) in pools.iter().enumerate() {
            let mut fq = pool_fq.clone();
            fq.push(format!("{name}__fip{i}"));
            let mut body = json!({"fq_name": fq, "parent_type": "floating-ip-pool",
                "project_refs": [{"to": p.project_fq}],
                "virtual_machine_interface_refs": [{"to": vmi_fq, "uuid": vmi_uuid}], "annotations": annotations(owner)});
            if let Some(a) = addr {
                body["floating_ip_address"] = json!(a.to_string());
            }
            match self.create_or_reuse("floating-ip", body) {
                Ok((u, true)) if addr.is_some() => {
                    fips.push(addr.map(|a| a.to_string()).unwrap_or_default());
                    fip_uuids.push(u);
                }
                Ok((u, _)) => {
                    let o = self.api.read("floating-ip", &u)?;
                    fips.push(o.floating_ip_address.unwrap_or_default());
                    fip_uuids.push(u);
                }
                Err(e) if matches!(e.status(), Some(400) | Some(409)) => {
                    return Err(bad(
                        "floating-ips",
                        format!("{}: {}", pool_fq.join(":"), e.body()),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Without this ref the agent never learns the port; ADD of an existing ref is a no-op.
        self.api.ref_update(
            "virtual-router",
            vrouter,
            "virtual-machine",
            vm_uuid,
            RefOp::Add,
        )?;
        Ok((iip_uuid, ip, fips, fip_uuids))
    }

    /// Deregisters one attachment from what VNC holds. Returns whether anything was found.
    pub fn detach(&self, cid: &str, ifname: &str) -> Result<bool, AttachError> {
        let key = (cid.to_owned(), ifname.to_owned());
        let cached = self.cache.get(&key);
        let name = port_name(cid, ifname);
        let mut found = false;
        // The VMI: from the cache, else from the instance-ip, else from the VM's back-refs.
        let mut vmi_uuid = cached.as_ref().map(|o| o.attachment.vmi_uuid.clone());
        let iip = self
            .api
            .fqname_to_id("instance-ip", std::slice::from_ref(&name))?;
        let vm_uuid = vm_uuid_for(cid);
        let vm = match self.api.read("virtual-machine", &vm_uuid) {
            Ok(v) => Some(v),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        if vmi_uuid.is_none()
            && let Some(vm) = &vm
        {
            vmi_uuid = vm
                .virtual_machine_interface_back_refs
                .iter()
                .find(|r| r.to.last() == Some(&name))
                .map(|r| r.uuid.clone());
        }
        let vmi = match &vmi_uuid {
            Some(u) => match self.api.read("virtual-machine-interface", u) {
                Ok(o) => Some(o),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let other_vmis = vm
            .as_ref()
            .map(|vm| {
                vm.virtual_machine_interface_back_refs
                    .iter()
                    .filter(|r| Some(&r.uuid) != vmi_uuid.as_ref())
                    .count()
            })
            .unwrap_or(0);
        // 1. The vrouter ref, when this was the VM's last interface.
        if let Some(vm) = &vm
            && other_vmis == 0
        {
            for vr in &vm.virtual_router_back_refs {
                ignore_404(self.api.ref_update(
                    "virtual-router",
                    &vr.uuid,
                    "virtual-machine",
                    &vm.uuid,
                    RefOp::Delete,
                ))?;
            }
        }
        // 2. Floating IPs, 3. instance-ips, 4. the VMI.
        if let Some(vmi) = &vmi {
            found = true;
            for f in &vmi.floating_ip_back_refs {
                ignore_404(self.api.delete("floating-ip", &f.uuid))?;
            }
            for i in &vmi.instance_ip_back_refs {
                ignore_404(self.api.delete("instance-ip", &i.uuid))?;
            }
        }
        if let Some(i) = iip {
            found = true;
            ignore_404(self.api.delete("instance-ip", &i))?;
        }
        if let Some(vmi) = &vmi {
            ignore_404(self.api.delete("virtual-machine-interface", &vmi.uuid))?;
        }
        // 5. The VM, when no interface is left (another ifname may still use it).
        if let Some(vm) = &vm
            && other_vmis == 0
            && vm.annotation("owner") == Some(self.cfg.owner.as_str())
        {
            found = true;
            match self.api.delete("virtual-machine", &vm.uuid) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                // A parallel registration added an interface meanwhile: the VM stays.
                Err(e) if e.status() == Some(409) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.cache.remove(&key);
        Ok(found || cached.is_some())
    }

    /// Sets the VM's display name to the Marathon task id.
    pub fn join_task(&self, cid: &str, task_id: &str) -> Result<(), AttachError> {
        ignore_404(self.api.update(
            "virtual-machine",
            &vm_uuid_for(cid),
            json!({"display_name": task_id}),
        ))?;
        self.cache.set_task(cid, task_id);
        Ok(())
    }
}
