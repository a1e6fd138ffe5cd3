//! Attachment → VNC objects, and back: the order of the writes of one registration and of one
//! deregistration. Label semantics live in `planning`, CRUD of shared objects in `objects`,
//! the owned-object inventory in `inventory`, and names/uuids in `ids` (every per-attachment
//! name is derived from (container id, ifname), so a DEL finds the objects from VNC alone).

use std::net::IpAddr;
use std::sync::Arc;

use contrail_mesos_api::{AttachRequest, Attachment, ObjectRef, vm_uuid_for};
use serde_json::json;

use std::collections::HashSet;

use super::bodies::{self, Annotations, Ref};
use super::client::{RefOp, VncApi, VncError};
use super::ids::{Family, fip_name, iip_name, index_of, legacy_port_name, mac_for, port_name};
use super::model::{VncObject, annotations};
use super::objects::ignore_404;
use super::planning::{Plan, plan};
use crate::cache::{Cache, Owned};
use crate::isolation::{Placement, TaskIdentity};

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
    /// The address space of networks the manager creates without a `network-subnets` label
    /// (on the flat-subnet IPAM `<cluster>-pod-ipam`).
    pub subnet: Option<String>,
    /// Segments of an app id that make its group (`[cluster] group-depth`).
    pub group_depth: usize,
    /// `[fabric]`: fabric SNAT and the ip-fabric policy.
    pub fabric: super::fabric::Fabric,
    /// `[dns]`, when enabled.
    pub dns: Option<super::dns::Dns>,
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
    /// VNC answered `404 Unknown id: <uuid>` for a uuid this manager sent, or `404 Name[...]
    /// not found` for a parent it named: the object was deleted (and perhaps re-created under
    /// its name) behind the manager's back, e.g. by the collector racing this registration. A
    /// registration retries once with the names looked up again; what is still stale then is
    /// an internal error.
    #[error("{0}")]
    Stale(String),
    /// This manager cannot reach VNC as configured (TLS verification failed): an operator
    /// must fix `[vnc]`; another manager instance may still serve the request.
    #[error("{0}")]
    Misconfigured(String),
}

pub(crate) fn bad(label: &'static str, message: impl Into<String>) -> AttachError {
    AttachError::BadLabel {
        label,
        message: message.into(),
    }
}

impl From<VncError> for AttachError {
    fn from(e: VncError) -> Self {
        if matches!(&e, VncError::Tls(_)) || matches!(&e, VncError::Auth(a) if a.is_permanent()) {
            AttachError::Misconfigured(e.to_string())
        } else if e.is_transient() {
            AttachError::Unavailable(e.to_string())
        } else if is_stale(&e) {
            AttachError::Stale(e.to_string())
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

    /// Registers one attachment. Returns it and whether it was newly created. A failure takes
    /// back every object this call created (best effort: what a failed take-back leaves is an
    /// orphan the reconciler removes after its grace).
    pub fn attach(&self, req: &AttachRequest) -> Result<(Attachment, bool), AttachError> {
        self.attach_placed(req, &Placement::Labels, None)
    }

    /// Registers one attachment on the network its placement (isolation mode) gives it;
    /// `who` is the container's Marathon task when its agent named it.
    pub fn attach_placed(
        &self,
        req: &AttachRequest,
        placement: &Placement,
        who: Option<&TaskIdentity>,
    ) -> Result<(Attachment, bool), AttachError> {
        let p = plan(
            &self.cfg,
            req,
            placement,
            who.is_some_and(|w| w.marathon_lb),
        )?;
        if let Some(a) = self.registered(req, &p)? {
            return Ok((a, false));
        }
        if let Some(w) = who {
            self.tell_of_moved_tasks(w, &p);
        }
        let mut refreshed = false;
        loop {
            let mut created = Created::default();
            let r = self.register(req, &p, who, &mut created);
            let failure = match r {
                Ok(x) => return Ok(x),
                Err(f) => f,
            };
            self.take_back(&req.container_id, &req.ifname, &created);
            match failure {
                // An operator re-created a network or re-provisioned a node's virtual router,
                // or the collector removed an unused network or policy meanwhile: a uuid this
                // manager remembered is gone. Learn the names afresh, once.
                AttachError::Stale(e) if !refreshed => {
                    tracing::info!(cid = %req.container_id, ifname = %req.ifname, error = %e,
                        "a remembered uuid is gone from VNC; looking the names up again");
                    self.forget_shared(&p);
                    refreshed = true;
                }
                e => return Err(e),
            }
        }
    }

    /// The cached registration of this key, confirmed with VNC (the cache is never the
    /// authority); None when it has to be (re)registered.
    fn registered(&self, req: &AttachRequest, p: &Plan) -> Result<Option<Attachment>, AttachError> {
        let (cid, ifname) = (req.container_id.as_str(), req.ifname.as_str());
        let key = (cid.to_owned(), ifname.to_owned());
        let Some(o) = self.cache.get(&key) else {
            return Ok(None);
        };
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
                    return Ok(Some(o.attachment));
                }
            }
            Ok(_) | Err(VncError::Status { status: 404, .. }) => {
                self.cache.remove(&key);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(None)
    }

    /// An app whose mode (or labels) changed: its new tasks go to the new network, the running
    /// ones stay where they are until they end. Said once per registration, in the log.
    fn tell_of_moved_tasks(&self, who: &TaskIdentity, p: &Plan) {
        // The app's tasks through the cache's task index (a task id is the app's safe path and
        // `.<uuid>`, a pod executor's `instance-` and that), not a scan of every attachment on
        // every registration; `app_of_task` then tells `/a/web` from `/a/web.v2`.
        let safe = crate::isolation::safe_path(&who.app_id);
        let roots = [safe.clone(), format!("instance-{safe}")];
        let elsewhere = self.cache.filter_related(&[], &[], &roots, |o| {
            o.attachment.vn.fq_name != p.vn_fq
                && o.task_id
                    .as_deref()
                    .and_then(crate::isolation::app_of_task)
                    .is_some_and(|a| a == who.app_id)
        });
        if let Some(o) = elsewhere.first() {
            tracing::info!(app = %who.app_id, network = %p.vn_fq.join(":"), running = elsewhere.len(),
                old_network = %o.attachment.vn.fq_name.join(":"),
                "the app's new tasks go to another network than its running ones; the running tasks stay where they are until they end");
        }
    }

    /// Forgets the uuids of the shared objects a request names (network, security groups,
    /// pools) and the virtual routers, so the next lookup asks VNC.
    fn forget_shared(&self, p: &Plan) {
        for vn in std::iter::once(&p.vn_fq).chain(p.allow.iter().map(|a| &a.src_fq)) {
            if let Some(u) = self.cache.name("virtual-network", vn) {
                self.cache.forget_subnets(&u);
            }
            self.cache.forget_name("virtual-network", vn);
        }
        self.cache
            .forget_name("network-policy", &self.policy_fq(&p.vn_fq));
        self.cache.forget_name("project", &p.project_fq);
        for g in &p.sgs {
            self.cache.forget_name("security-group", g);
        }
        for (pool, _) in &p.fips {
            self.cache.forget_name("floating-ip-pool", pool);
        }
        self.cache.put_vrouters(Vec::new());
    }

    /// One registration attempt; every object it creates is recorded in `created`.
    fn register(
        &self,
        req: &AttachRequest,
        p: &Plan,
        who: Option<&TaskIdentity>,
        created: &mut Created,
    ) -> Result<(Attachment, bool), AttachError> {
        let cid = req.container_id.as_str();
        let ifname = req.ifname.as_str();
        self.ensure_project(&p.project_fq, &p.kind)?;
        let (vn, subnets) = self.ensure_network(&p.net())?;
        let rules = self.ensure_policy(&p.vn_fq, &p.allow, &vn)?;
        let rules_ann = (!rules.is_empty()).then(|| super::policy::encode_rules(&rules));
        if let Some(ip) = p.ip
            && !subnets.iter().any(|s| s.contains(&ip))
        {
            return Err(bad(
                "network-ip",
                format!("{ip} is outside the subnets of {}", p.vn_fq.join(":")),
            ));
        }
        let mut sg_uuids = Vec::new();
        for g in &p.sgs {
            match self.lookup("security-group", g)? {
                Some(u) => sg_uuids.push(u),
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
        // The display name is the Marathon task once known (the join the reconciler uses).
        let display = who.map(|w| w.task_id.as_str()).unwrap_or(cid);
        let vm_body = bodies::text(&bodies::VirtualMachine {
            uuid: &vm_uuid,
            fq_name: [cid],
            display_name: display,
            server_type: "container",
            annotations: Annotations(&[
                ("owner", &self.cfg.owner),
                ("cluster", &self.cfg.cluster),
                ("container-id", cid),
                ("created-at", &created_at),
                ("kind", "mesos-container"),
            ]),
        });
        let (vm_uuid, vm_new) = self.create_text_or_reuse("virtual-machine", &vm_body)?;
        if vm_new {
            created.vm = Some(vm_uuid.clone());
        }

        // Objects of this attachment named the way names were made before they were
        // one-to-one are removed first (by identity), so the new names take over.
        if let Some(old) = legacy_port_name(cid, ifname) {
            self.retire_legacy(cid, ifname, &p.project_fq, &old)?;
        }

        // VMI: our uuid and MAC (the server's rule, "02:" + first 5 uuid bytes), so the answer
        // needs no read-back.
        let name = port_name(cid, ifname);
        let mut vmi_fq = p.project_fq.clone();
        vmi_fq.push(name.clone());
        let index = index_of(ifname, self.cache.count_of_container(cid));
        let index_ann = index.to_string();
        let vmi_uuid = uuid::Uuid::new_v4().to_string();
        let mac = mac_for(&vmi_uuid);
        let mut vmi_ann = owner.clone();
        vmi_ann.extend([
            ("index", index_ann.as_str()),
            ("node-name", req.node.name.as_str()),
            ("node-ip", req.node.ip.as_str()),
            ("network", req.network_name.as_str()),
        ]);
        if let Some(r) = &rules_ann {
            vmi_ann.push(("allow-rules", r.as_str()));
        }
        let sg_refs: Vec<Ref<'_>> = (p.sgs.iter().zip(&sg_uuids))
            .map(|(to, uuid)| Ref { to, uuid })
            .collect();
        let vmi_body = bodies::text(&bodies::VirtualMachineInterface {
            uuid: &vmi_uuid,
            fq_name: &vmi_fq,
            parent_type: "project",
            display_name: &name,
            virtual_network_refs: [Ref {
                to: &p.vn_fq,
                uuid: &vn,
            }],
            virtual_machine_refs: [bodies::VmRef {
                to: [cid],
                uuid: &vm_uuid,
            }],
            security_group_refs: &sg_refs,
            virtual_machine_interface_mac_addresses: bodies::MacAddresses {
                mac_address: [&mac],
            },
            annotations: Annotations(&vmi_ann),
        });
        let (vmi_uuid, vmi_new, mac, index) = match self
            .create_text_or_reuse("virtual-machine-interface", &vmi_body)?
        {
            (u, true) => (u, true, mac, index),
            (u, false) => {
                let o = self.api.read("virtual-machine-interface", &u)?;
                if !self.is_port_of(&o, cid, ifname) {
                    return Err(AttachError::Conflict(format!(
                        "the port name {name} is held by {}/{} (named before names were one-to-one); it is free once that attachment is deleted",
                        o.annotation("container-id").unwrap_or("?"),
                        o.annotation("ifname").unwrap_or("?"),
                    )));
                }
                if !o.virtual_network_refs.iter().any(|r| r.uuid == vn) {
                    return Err(AttachError::Conflict(format!(
                        "{cid}/{ifname} is registered on another network"
                    )));
                }
                let mac = o.mac().unwrap_or_default().to_owned();
                let idx = o
                    .annotation("index")
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(index);
                (u, false, mac, idx)
            }
        };
        if vmi_new {
            created.vmi = Some(vmi_uuid.clone());
        }
        let port = Port {
            vn: &vn,
            subnets: &subnets,
            vmi_fq: &vmi_fq,
            vmi_uuid: &vmi_uuid,
            owner: &owner,
        };
        let (iips, ip) = self.attach_addresses(req, p, &port, created)?;
        let (fips, fip_uuids) = self.attach_floating_ips(req, p, &port, &pools, created)?;
        // The task's name (its app's, Mesos-DNS style) on the cluster's virtual DNS server.
        if let (Some(d), Some(w), Ok(IpAddr::V4(_))) = (&self.cfg.dns, who, ip.parse::<IpAddr>()) {
            let r = self.add_task_record(d, &vmi_uuid, &w.app_id, &ip, &owner)?;
            created.record = Some(r);
        }
        // Without this ref the agent never learns the port; ADD of an existing ref is a no-op.
        self.api.ref_update(
            "virtual-router",
            &vrouter,
            "virtual-machine",
            &vm_uuid,
            RefOp::Add,
        )?;
        let attachment = Attachment {
            container_id: cid.to_owned(),
            ifname: ifname.to_owned(),
            vm_uuid: vm_uuid.clone(),
            vm_name: cid.to_owned(),
            vmi_uuid: vmi_uuid.clone(),
            vn: self.cache.intern_vn(&ObjectRef {
                uuid: vn.clone(),
                fq_name: p.vn_fq.clone(),
            }),
            ip: Some(ip),
            mac: Some(mac),
            index,
            floating_ips: fips,
        };
        self.cache.put(Owned {
            attachment: attachment.clone(),
            iip_uuid: iips.into_iter().next(),
            fip_uuids,
            node: self.cache.intern_node(&req.node),
            created_at: now_secs(),
            task_id: who.map(|w| w.task_id.as_str().into()),
            allow_rules: rules_ann.clone(),
        });
        Ok((attachment, vmi_new))
    }

    /// One instance-ip per address family of the network (`instance_ip_family`, as Contrail's
    /// kube-manager does for dual stack), the requested address in its family. Returns the
    /// instance-ip uuids and the address the attachment reports (IPv4 when there is one).
    fn attach_addresses(
        &self,
        req: &AttachRequest,
        p: &Plan,
        port: &Port<'_>,
        created: &mut Created,
    ) -> Result<(Vec<String>, String), AttachError> {
        let families = families_of(port.subnets, p.ip);
        let mut uuids = Vec::new();
        let mut shown = None;
        for family in families {
            let name = iip_name(&req.container_id, &req.ifname, family);
            let requested = p.ip.filter(|ip| family_of(ip) == family);
            let iip = bodies::text(&bodies::InstanceIp {
                fq_name: [&name],
                virtual_network_refs: [Ref {
                    to: &p.vn_fq,
                    uuid: port.vn,
                }],
                virtual_machine_interface_refs: [Ref {
                    to: port.vmi_fq,
                    uuid: port.vmi_uuid,
                }],
                annotations: Annotations(port.owner),
                instance_ip_family: (family == Family::V6
                    || families_of(port.subnets, None).len() > 1)
                    .then(|| family.vnc()),
                instance_ip_address: requested.map(|ip| ip.to_string()),
            });
            let (u, ip) = match self.create_text_or_reuse("instance-ip", &iip) {
                Ok((u, true)) if requested.is_some() => {
                    created.iips.push(u.clone());
                    (u, requested.map(|i| i.to_string()).unwrap_or_default())
                }
                Ok((u, new)) => {
                    if new {
                        created.iips.push(u.clone());
                    }
                    let o = self.api.read("instance-ip", &u)?;
                    if !new && !self.is_port_of(&o, &req.container_id, &req.ifname) {
                        return Err(AttachError::Conflict(format!(
                            "the instance-ip name {name} is held by an object that is not this attachment's"
                        )));
                    }
                    (u, o.instance_ip_address.unwrap_or_default())
                }
                // The server's answer for an address it cannot give (taken, outside the
                // network, none left): the request can never succeed as it is.
                Err(e) if e.is_permanent() && !is_stale(&e) => {
                    let label = if requested.is_some() {
                        "network-ip"
                    } else {
                        "network-subnets"
                    };
                    return Err(bad(label, e.body().to_owned()));
                }
                Err(e) => return Err(e.into()),
            };
            if shown.is_none() || family == Family::V4 {
                shown = Some(ip);
            }
            uuids.push(u);
        }
        Ok((uuids, shown.unwrap_or_default()))
    }

    fn attach_floating_ips(
        &self,
        req: &AttachRequest,
        p: &Plan,
        port: &Port<'_>,
        pools: &[(Vec<String>, String, Option<IpAddr>)],
        created: &mut Created,
    ) -> Result<(Vec<String>, Vec<String>), AttachError> {
        let name = port_name(&req.container_id, &req.ifname);
        let mut fips = Vec::new();
        let mut fip_uuids = Vec::new();
        for (i, (pool_fq, _pool, addr)) in pools.iter().enumerate() {
            let mut fq = pool_fq.clone();
            fq.push(fip_name(&name, i));
            let mut body = json!({"fq_name": fq, "parent_type": "floating-ip-pool",
                "project_refs": [{"to": p.project_fq}],
                "virtual_machine_interface_refs": [{"to": port.vmi_fq, "uuid": port.vmi_uuid}],
                "annotations": annotations(port.owner)});
            if let Some(a) = addr {
                body["floating_ip_address"] = json!(a.to_string());
            }
            match self.create_or_reuse("floating-ip", body) {
                Ok((u, true)) if addr.is_some() => {
                    created.fips.push(u.clone());
                    fips.push(addr.map(|a| a.to_string()).unwrap_or_default());
                    fip_uuids.push(u);
                }
                Ok((u, new)) => {
                    if new {
                        created.fips.push(u.clone());
                    }
                    let o = self.api.read("floating-ip", &u)?;
                    fips.push(o.floating_ip_address.unwrap_or_default());
                    fip_uuids.push(u);
                }
                // Taken (409), outside the pool's network or the pool exhausted: the server
                // says 500 `... has exhausted subnet([])` for a floating IP (400 for an
                // instance-ip), which no retry changes.
                Err(e) if e.is_permanent() && !is_stale(&e) => {
                    return Err(bad(
                        "floating-ips",
                        format!("{}: {}", pool_fq.join(":"), e.body()),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok((fips, fip_uuids))
    }

    /// Deletes what one failed registration created, newest first.
    fn take_back(&self, cid: &str, ifname: &str, created: &Created) {
        let steps = created
            .record
            .iter()
            .map(|u| ("virtual-DNS-record", u))
            .chain(created.fips.iter().rev().map(|u| ("floating-ip", u)))
            .chain(created.iips.iter().rev().map(|u| ("instance-ip", u)))
            .chain(created.vmi.iter().map(|u| ("virtual-machine-interface", u)))
            .chain(created.vm.iter().map(|u| ("virtual-machine", u)));
        for (ty, u) in steps {
            match self.api.delete(ty, u) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                // The VM got another interface meanwhile: it stays.
                Err(e) if ty == "virtual-machine" && e.status() == Some(409) => {}
                Err(e) => {
                    tracing::warn!(cid, ifname, ty, uuid = %u, error = %e,
                        "taking back a failed registration failed; the reconciler removes it later")
                }
            }
        }
    }

    /// Removes the objects of (cid, ifname) named the old way, `<cid>__<ifname>`, after
    /// checking by their annotations that they are this attachment's (that name may be another
    /// attachment's under the old scheme).
    fn retire_legacy(
        &self,
        cid: &str,
        ifname: &str,
        project_fq: &[String],
        old: &str,
    ) -> Result<(), VncError> {
        let mut fq = project_fq.to_vec();
        fq.push(old.to_owned());
        if let Some(u) = self.api.fqname_to_id("virtual-machine-interface", &fq)?
            && let Some(vmi) = not_found_is_none(self.api.read("virtual-machine-interface", &u))?
            && self.is_port_of(&vmi, cid, ifname)
        {
            tracing::info!(cid, ifname, vmi = %u, "replacing a port named the old way");
            self.remove_port(&vmi, None)?;
        }
        self.remove_iip_by_name(cid, ifname, old).map(|_| ())
    }

    /// True when `o` is owned by this manager and carries this attachment's identity.
    fn is_port_of(&self, o: &VncObject, cid: &str, ifname: &str) -> bool {
        self.owns(o)
            && o.annotation("container-id") == Some(cid)
            && o.annotation("ifname") == Some(ifname)
    }

    /// Deletes a port's VMI with what hangs on it: its own instance-ips and floating IPs are
    /// deleted; an operator's (not owned) only lose their ref to the VMI, so the VMI can go.
    fn remove_port(&self, vmi: &VncObject, cached: Option<&Owned>) -> Result<(), VncError> {
        let known: HashSet<&str> = cached
            .map(|o| {
                o.iip_uuid
                    .iter()
                    .chain(o.fip_uuids.iter())
                    .map(String::as_str)
                    .collect()
            })
            .unwrap_or_default();
        let hanging = vmi
            .floating_ip_back_refs
            .iter()
            .map(|r| ("floating-ip", r))
            .chain(vmi.instance_ip_back_refs.iter().map(|r| ("instance-ip", r)));
        for (ty, r) in hanging {
            let mine = known.contains(r.uuid.as_str())
                || match not_found_is_none(self.api.read(ty, &r.uuid))? {
                    Some(o) => self.owns(&o),
                    None => continue,
                };
            if mine {
                ignore_404(self.api.delete(ty, &r.uuid))?;
            } else {
                tracing::info!(ty, uuid = %r.uuid, vmi = %vmi.uuid, "not ours: dropping its ref to the port only");
                ignore_404(self.api.ref_update(
                    ty,
                    &r.uuid,
                    "virtual-machine-interface",
                    &vmi.uuid,
                    RefOp::Delete,
                ))?;
            }
        }
        ignore_404(self.api.delete("virtual-machine-interface", &vmi.uuid))
    }

    /// An instance-ip found by name only (its VMI is gone): deleted when it is this
    /// attachment's (returns whether it was); a name held by someone else's object is left
    /// alone.
    fn remove_iip_by_name(&self, cid: &str, ifname: &str, name: &str) -> Result<bool, VncError> {
        if let Some(u) = self
            .api
            .fqname_to_id("instance-ip", std::slice::from_ref(&name.to_owned()))?
            && let Some(o) = not_found_is_none(self.api.read("instance-ip", &u))?
            && self.is_port_of(&o, cid, ifname)
        {
            ignore_404(self.api.delete("instance-ip", &u))?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Deregisters one attachment from what VNC holds. Returns whether anything was found.
    /// Only objects this manager owns are deleted, each once.
    pub fn detach(&self, cid: &str, ifname: &str) -> Result<bool, AttachError> {
        let key = (cid.to_owned(), ifname.to_owned());
        let cached = self.cache.get(&key);
        let name = port_name(cid, ifname);
        let legacy = legacy_port_name(cid, ifname);
        let vm = not_found_is_none(self.api.read("virtual-machine", &vm_uuid_for(cid)))?;
        // The VMI: from the cache, else among the VM's interfaces by name (today's or the old
        // one), and in every case only when its annotations say it is this attachment's.
        let mut candidates: Vec<String> = cached
            .iter()
            .map(|o| o.attachment.vmi_uuid.clone())
            .collect();
        if candidates.is_empty()
            && let Some(vm) = &vm
        {
            candidates = vm
                .virtual_machine_interface_back_refs
                .iter()
                .filter(|r| {
                    r.to.last()
                        .is_some_and(|n| *n == name || Some(n) == legacy.as_ref())
                })
                .map(|r| r.uuid.clone())
                .collect();
        }
        let mut vmis = Vec::new();
        for u in candidates {
            if let Some(o) = not_found_is_none(self.api.read("virtual-machine-interface", &u))?
                && self.is_port_of(&o, cid, ifname)
            {
                vmis.push(o);
            }
        }
        let other_vmis = vm
            .as_ref()
            .map(|vm| {
                vm.virtual_machine_interface_back_refs
                    .iter()
                    .filter(|r| !vmis.iter().any(|v| v.uuid == r.uuid))
                    .count()
            })
            .unwrap_or(0);
        let our_vm = vm.as_ref().filter(|v| self.owns(v));
        // 1. The vrouter ref, when this was the last interface of a VM this manager owns.
        if let Some(vm) = our_vm
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
        // 2. The port with its floating IPs and instance-ips.
        let mut found = !vmis.is_empty();
        for vmi in &vmis {
            self.remove_task_record(&vmi.uuid)?;
            self.remove_port(vmi, cached.as_ref())?;
        }
        // 3. Without a VMI, instance-ips can only be found by name.
        if vmis.is_empty() {
            for n in [
                Some(name.clone()),
                Some(iip_name(cid, ifname, Family::V6)),
                legacy.clone(),
            ]
            .into_iter()
            .flatten()
            {
                found |= self.remove_iip_by_name(cid, ifname, &n)?;
            }
        }
        // 4. The VM, when no interface is left (another ifname may still use it).
        if let Some(vm) = our_vm
            && other_vmis == 0
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

/// The objects one registration attempt created.
#[derive(Default)]
struct Created {
    record: Option<String>,
    vm: Option<String>,
    vmi: Option<String>,
    iips: Vec<String>,
    fips: Vec<String>,
}

/// The port of a registration in progress.
struct Port<'a> {
    vn: &'a str,
    subnets: &'a [ipnet::IpNet],
    vmi_fq: &'a [String],
    vmi_uuid: &'a str,
    owner: &'a [(&'a str, &'a str)],
}

/// `404 Unknown id: <uuid>`: a uuid in the request names nothing any more (a VMI create with a
/// deleted network's uuid, a ref-update with a re-provisioned virtual router's); or `404
/// Name[...] not found` on a create: the parent it names is gone (a group project the collector
/// removed since this manager last used it). The real server's wording, as recorded in
/// tests/fixtures/vnc/vnc-transcript-2.json.
fn is_stale(e: &VncError) -> bool {
    let body = e.body();
    e.is_not_found()
        && (body.starts_with("Unknown id:")
            || (body.starts_with("Name[") && body.ends_with("not found")))
}

fn not_found_is_none<T>(r: Result<T, VncError>) -> Result<Option<T>, VncError> {
    match r {
        Ok(x) => Ok(Some(x)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The address families an attachment gets an instance-ip in: each family the network has a
/// subnet of, or the requested address's family when the network shows none.
fn families_of(subnets: &[ipnet::IpNet], requested: Option<IpAddr>) -> Vec<Family> {
    let mut v = Vec::new();
    if subnets.iter().any(|s| matches!(s, ipnet::IpNet::V4(_))) {
        v.push(Family::V4);
    }
    if subnets.iter().any(|s| matches!(s, ipnet::IpNet::V6(_))) {
        v.push(Family::V6);
    }
    if v.is_empty() {
        v.push(requested.map(|a| family_of(&a)).unwrap_or(Family::V4));
    }
    v
}

fn family_of(a: &IpAddr) -> Family {
    match a {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6,
    }
}
