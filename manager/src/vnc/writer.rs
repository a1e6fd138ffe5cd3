//! Attachment → VNC objects, and back. Every object the manager creates per attachment has a
//! deterministic fq_name derived from (container id, ifname), so a repeated or crashed
//! registration meets `409 already exists` and reuses what is there, and a DEL finds the
//! objects from VNC alone (no cache, no local state).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use contrail_mesos_api::{AttachRequest, Attachment, Node, ObjectRef, vm_uuid_for};
use serde_json::{Value, json};

use super::client::{RefOp, VncApi, VncError};
use super::model::{VncObject, annotations};
use crate::cache::{Cache, Owned};

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

fn bad(label: &'static str, message: impl Into<String>) -> AttachError {
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

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Name of the VMI and the instance-ip of one attachment.
pub fn port_name(cid: &str, ifname: &str) -> String {
    format!("{cid}__{ifname}")
}

pub struct Writer {
    pub api: Arc<dyn VncApi>,
    pub cfg: WriterConfig,
    pub cache: Arc<Cache>,
}

/// Resolved names of one request.
struct Plan {
    domain: String,
    project_fq: Vec<String>,
    vn_fq: Vec<String>,
    subnets: Vec<ipnet::IpNet>,
    ip: Option<IpAddr>,
    sgs: Vec<Vec<String>>,
    fips: Vec<(Vec<String>, Option<IpAddr>)>,
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

    fn plan(&self, req: &AttachRequest) -> Result<Plan, AttachError> {
        let r = &req.request;
        let domain = r.domain.clone().unwrap_or_else(|| self.cfg.domain.clone());
        let project = r
            .project
            .clone()
            .unwrap_or_else(|| self.cfg.project.clone());
        let project_fq = vec![domain.clone(), project];
        let vn_fq = match r.network.as_deref() {
            None => {
                let mut f = project_fq.clone();
                f.push(self.cfg.network.clone());
                f
            }
            Some([name]) => {
                let mut f = project_fq.clone();
                f.push(name.clone());
                f
            }
            Some(f) if f.len() == 3 => f.to_vec(),
            Some(f) => {
                return Err(bad(
                    "networks",
                    format!("{} is neither a name nor domain:project:name", f.join(":")),
                ));
            }
        };
        let mut subnets = Vec::new();
        for s in &r.subnets {
            let n: ipnet::IpNet = s
                .parse()
                .map_err(|_| bad("network-subnets", format!("{s} is not a CIDR")))?;
            if n.trunc() != n {
                return Err(bad("network-subnets", format!("{s} has host bits set")));
            }
            subnets.push(n);
        }
        let ip = match &r.ip {
            Some(a) => Some(
                a.parse::<IpAddr>()
                    .map_err(|_| bad("network-ip", format!("{a} is not an IP address")))?,
            ),
            None => None,
        };
        let sgs = r
            .security_groups
            .iter()
            .map(|g| match g.len() {
                1 => Ok(vec![
                    project_fq[0].clone(),
                    project_fq[1].clone(),
                    g[0].clone(),
                ]),
                3 => Ok(g.clone()),
                _ => Err(bad(
                    "security-groups",
                    format!("{} is not a security group fq-name", g.join(":")),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut fips = Vec::new();
        for f in &r.floating_ips {
            if f.pool.len() != 4 {
                return Err(bad(
                    "floating-ips",
                    format!(
                        "pool {} is not domain:project:network:pool",
                        f.pool.join(":")
                    ),
                ));
            }
            let a = match &f.address {
                Some(a) => Some(
                    a.parse::<IpAddr>()
                        .map_err(|_| bad("floating-ips", format!("{a} is not an IP address")))?,
                ),
                None => None,
            };
            fips.push((f.pool.clone(), a));
        }
        Ok(Plan {
            domain,
            project_fq,
            vn_fq,
            subnets,
            ip,
            sgs,
            fips,
        })
    }

    /// A shared object's uuid by fq_name, cached.
    fn lookup(&self, ty: &str, fq: &[String]) -> Result<Option<String>, AttachError> {
        if let Some(u) = self.cache.name(ty, fq) {
            return Ok(Some(u));
        }
        let u = self.api.fqname_to_id(ty, fq)?;
        if let Some(u) = &u {
            self.cache.put_name(ty, fq, u);
        }
        Ok(u)
    }

    /// Create, or on `409 already exists` take the existing uuid. Returns (uuid, created).
    fn create_or_reuse(&self, ty: &str, body: Value) -> Result<(String, bool), VncError> {
        match self.api.create(ty, body) {
            Ok(u) => Ok((u, true)),
            Err(e) => match e.existing_uuid() {
                Some(u) => Ok((u, false)),
                None => Err(e),
            },
        }
    }

    fn ensure_project(&self, p: &Plan) -> Result<String, AttachError> {
        if let Some(u) = self.lookup("project", &p.project_fq)? {
            return Ok(u);
        }
        let body = json!({"fq_name": p.project_fq, "parent_type": "domain"});
        match self.create_or_reuse("project", body) {
            Ok((u, _)) => {
                self.cache.put_name("project", &p.project_fq, &u);
                Ok(u)
            }
            Err(e) if e.is_not_found() => Err(bad(
                "domain-name",
                format!("domain {} does not exist", p.domain),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The VN (created with its IPAM and subnets when absent). Returns (uuid, subnets).
    fn ensure_network(&self, p: &Plan) -> Result<(String, Vec<ipnet::IpNet>), AttachError> {
        if let Some(u) = self.lookup("virtual-network", &p.vn_fq)? {
            let subnets = match self.cache.subnets(&u) {
                Some(s) => s,
                None => match self.api.read("virtual-network", &u) {
                    Ok(o) => {
                        let s = o.subnets();
                        self.cache.put_subnets(&u, s.clone());
                        s
                    }
                    Err(e) if e.is_not_found() => {
                        // The cache was stale: the VN went away. Look again from scratch.
                        self.cache.forget_name("virtual-network", &p.vn_fq);
                        return self.create_network(p);
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            for want in &p.subnets {
                if !subnets.contains(want) {
                    let overlap = subnets
                        .iter()
                        .any(|s| s.contains(&want.network()) || want.contains(&s.network()));
                    let have: Vec<String> = subnets.iter().map(|s| s.to_string()).collect();
                    return Err(bad(
                        "network-subnets",
                        format!(
                            "{want} {} network {} whose subnets are [{}]",
                            if overlap {
                                "clashes with"
                            } else {
                                "is not a subnet of"
                            },
                            p.vn_fq.join(":"),
                            have.join(", ")
                        ),
                    ));
                }
            }
            return Ok((u, subnets));
        }
        self.create_network(p)
    }

    fn create_network(&self, p: &Plan) -> Result<(String, Vec<ipnet::IpNet>), AttachError> {
        let mut subnets = p.subnets.clone();
        if subnets.is_empty() {
            match &self.cfg.subnet {
                Some(s) => subnets.push(s.parse().map_err(|_| {
                    AttachError::Internal(format!("config subnet {s} is not a CIDR"))
                })?),
                None => {
                    return Err(bad(
                        "networks",
                        format!(
                            "network {} does not exist and no network-subnets label says how to create it",
                            p.vn_fq.join(":")
                        ),
                    ));
                }
            }
        }
        let mut ipam_fq = p.project_fq.clone();
        ipam_fq.push(p.vn_fq[2].clone());
        if p.vn_fq[..2] != p.project_fq[..] {
            // A network in another project gets its IPAM there.
            ipam_fq = vec![p.vn_fq[0].clone(), p.vn_fq[1].clone(), p.vn_fq[2].clone()];
        }
        let (ipam, _) = match self.create_or_reuse(
            "network-ipam",
            json!({"fq_name": ipam_fq, "parent_type": "project"}),
        ) {
            Ok(x) => x,
            Err(e) if e.is_not_found() => {
                return Err(bad(
                    "networks",
                    format!("project {}:{} does not exist", p.vn_fq[0], p.vn_fq[1]),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let ipam_subnets: Vec<Value> = subnets
            .iter()
            .map(|s| json!({"subnet": {"ip_prefix": s.network().to_string(), "ip_prefix_len": s.prefix_len()}}))
            .collect();
        let body = json!({"fq_name": p.vn_fq, "parent_type": "project",
            "network_ipam_refs": [{"to": ipam_fq, "uuid": ipam, "attr": {"ipam_subnets": ipam_subnets}}],
            "annotations": annotations(&[("created-by", &self.cfg.owner), ("cluster", &self.cfg.cluster)])});
        match self.create_or_reuse("virtual-network", body) {
            Ok((u, true)) => {
                self.cache.put_name("virtual-network", &p.vn_fq, &u);
                self.cache.put_subnets(&u, subnets.clone());
                Ok((u, subnets))
            }
            // Someone created it in between: validate against what is there.
            Ok((u, false)) => {
                self.cache.put_name("virtual-network", &p.vn_fq, &u);
                self.ensure_network(p)
            }
            Err(e) if matches!(e.status(), Some(400) | Some(409)) => {
                Err(bad("network-subnets", e.body().to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Virtual router of a node: by IP, then by name.
    fn find_vrouter(&self, node: &Node) -> Result<Option<String>, AttachError> {
        let pick = |v: &[(String, String, String)]| {
            v.iter()
                .find(|(_, _, ip)| !node.ip.is_empty() && *ip == node.ip)
                .or_else(|| v.iter().find(|(_, name, _)| *name == node.name))
                .map(|(u, _, _)| u.clone())
        };
        if let Some(u) = pick(&self.cache.vrouters()) {
            return Ok(Some(u));
        }
        let all: Vec<(String, String, String)> = self
            .api
            .list("virtual-router")?
            .into_iter()
            .map(|o| {
                let name = o.fq_name.last().cloned().unwrap_or_default();
                (
                    o.uuid,
                    name,
                    o.virtual_router_ip_address.unwrap_or_default(),
                )
            })
            .collect();
        let u = pick(&all);
        self.cache.put_vrouters(all);
        Ok(u)
    }

    /// Registers one attachment. Returns it and whether it was newly created.
    pub fn attach(&self, req: &AttachRequest) -> Result<(Attachment, bool), AttachError> {
        let cid = req.container_id.as_str();
        let ifname = req.ifname.as_str();
        let key = (cid.to_owned(), ifname.to_owned());
        let p = self.plan(req)?;

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
        let h = vmi_uuid.replace('-', "");
        let mac = format!(
            "02:{}:{}:{}:{}:{}",
            &h[0..2],
            &h[2..4],
            &h[4..6],
            &h[6..8],
            &h[8..10]
        );
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

    /// Deletes one owned object that has no attachment around it (reconciler).
    pub fn delete_object(&self, ty: &str, uuid: &str) -> Result<(), AttachError> {
        if ty == "virtual-machine"
            && let Ok(vm) = self.api.read(ty, uuid)
        {
            for vr in &vm.virtual_router_back_refs {
                ignore_404(self.api.ref_update(
                    "virtual-router",
                    &vr.uuid,
                    ty,
                    uuid,
                    RefOp::Delete,
                ))?;
            }
        }
        match self.api.delete(ty, uuid) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() || e.status() == Some(409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads every owned object from VNC: attachments, plus orphans (objects whose
    /// attachment is incomplete: a VM with no VMI, an instance-ip or floating-ip whose VMI is
    /// gone). Used at start and by the reconciler.
    pub fn scan(&self) -> Result<Scan, AttachError> {
        // Each list is streamed and every owned object is cut down to what the pass needs as
        // it is decoded: at 10,000 attachments, holding four lists of whole objects was most
        // of the manager's peak memory.
        let mine = |o: &VncObject| {
            o.annotation("owner") == Some(self.cfg.owner.as_str())
                && o.annotation("cluster") == Some(self.cfg.cluster.as_str())
        };
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
                    index: v.annotation("index").unwrap_or("0/1").to_owned(),
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
        let by_vmi: std::collections::HashMap<String, usize> = owned
            .iter()
            .enumerate()
            .map(|(k, o)| (o.attachment.vmi_uuid.clone(), k))
            .collect();
        let find = |_: &[Owned], vmi: Option<&str>| by_vmi.get(vmi?).copied();
        let mut orphans = Vec::new();
        self.api.list_each("instance-ip", &mut |i| {
            if !mine(&i) {
                return;
            }
            let vmi = i
                .virtual_machine_interface_refs
                .first()
                .map(|r| r.uuid.as_str());
            match find(&owned, vmi) {
                // The last one listed wins, as the map this replaced did.
                Some(k) => {
                    let o = &mut owned[k];
                    o.attachment.ip = i.instance_ip_address.clone();
                    o.iip_uuid = Some(i.uuid.clone());
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
            match find(&owned, vmi) {
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
        let vm_by_uuid: std::collections::HashMap<&str, &Option<String>> =
            vms.iter().map(|(d, x)| (x.uuid.as_str(), d)).collect();
        let mut used = std::collections::HashSet::new();
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
        Ok(Scan { owned, orphans })
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

fn ignore_404(r: Result<(), VncError>) -> Result<(), VncError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// `index` annotation `i/N`: i from the ifname's trailing digits (eth1 → 1), else the number
/// of interfaces already registered; N = i + 1. Mesos gives each network its own ADD and the
/// manager cannot know how many follow, so N counts the interfaces up to this one.
pub fn index_of(ifname: &str, registered: usize) -> String {
    let digits: String = ifname
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let i = digits.parse::<usize>().unwrap_or(registered);
    format!("{i}/{}", i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_from_ifname() {
        assert_eq!(index_of("eth0", 0), "0/1");
        assert_eq!(index_of("eth2", 0), "2/3");
        assert_eq!(index_of("net", 1), "1/2");
    }
}
