//! CRUD of the shared objects an attachment needs (project, network with its IPAM, virtual
//! router lookups) and of single owned objects, over the `VncApi` edge.

use serde_json::{Value, json};

use contrail_mesos_api::Node;

use super::client::{RefOp, VncError};
use super::model::annotations;
use super::planning::{NetKind, NetSpec};
use super::writer::{AttachError, Writer, bad};

/// A create's uuid and `true`, or on `409 already exists` the existing object's and `false`.
fn or_existing(r: Result<String, VncError>) -> Result<(String, bool), VncError> {
    match r {
        Ok(u) => Ok((u, true)),
        Err(e) => match e.existing_uuid() {
            Some(u) => Ok((u, false)),
            None => Err(e),
        },
    }
}

impl Writer {
    /// `create_or_reuse` of a body already written as JSON text.
    pub(crate) fn create_text_or_reuse(
        &self,
        ty: &str,
        body: &str,
    ) -> Result<(String, bool), VncError> {
        or_existing(self.api.create_text(ty, body))
    }

    /// A shared object's uuid by fq_name, cached.
    pub(crate) fn lookup(&self, ty: &str, fq: &[String]) -> Result<Option<String>, AttachError> {
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
    pub(crate) fn create_or_reuse(
        &self,
        ty: &str,
        body: Value,
    ) -> Result<(String, bool), VncError> {
        or_existing(self.api.create(ty, body))
    }

    /// The project, created when absent. A project made for a group network carries the
    /// manager's ownership annotations, so the collector can remove it once it is empty.
    pub(crate) fn ensure_project(
        &self,
        project_fq: &[String],
        kind: &NetKind,
    ) -> Result<String, AttachError> {
        if let Some(u) = self.lookup("project", project_fq)? {
            return Ok(u);
        }
        let mut body = json!({"fq_name": project_fq, "parent_type": "domain"});
        if let NetKind::Group(_) = kind {
            body["annotations"] = self.made_for(kind);
        }
        match self.create_or_reuse("project", body) {
            Ok((u, _)) => {
                self.cache.put_name("project", project_fq, &u);
                Ok(u)
            }
            // The server says 400 `Parent ['x'] type domain does not exist` for a project under
            // a missing domain (404 `Name[...] not found` for other parents).
            Err(e)
                if e.is_not_found()
                    || (e.status() == Some(400) && e.body().contains("does not exist")) =>
            {
                Err(bad(
                    "domain-name",
                    format!("domain {} does not exist", project_fq[0]),
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Annotations of an object the manager makes for a network kind: `created-by`,
    /// `cluster`, `isolation` and `for` (the group or app).
    pub(crate) fn made_for(&self, kind: &NetKind) -> Value {
        let (mode, what) = kind.annotation();
        let now = super::ids::now_secs().to_string();
        let mut pairs = vec![
            ("created-by", self.cfg.owner.as_str()),
            ("cluster", self.cfg.cluster.as_str()),
            ("isolation", mode),
            ("created-at", now.as_str()),
        ];
        if !what.is_empty() {
            pairs.push(("for", what));
        }
        annotations(&pairs)
    }

    /// The VN (created with its IPAM and subnets when absent). Returns (uuid, subnets).
    pub(crate) fn ensure_network(
        &self,
        n: &NetSpec<'_>,
    ) -> Result<(String, Vec<ipnet::IpNet>), AttachError> {
        if let Some(u) = self.lookup("virtual-network", n.vn_fq)? {
            let subnets = match self.cache.subnets(&u) {
                Some(s) => s,
                None => match self.api.read("virtual-network", &u) {
                    Ok(o) => {
                        let s = self.network_subnets(&o)?;
                        self.cache.put_subnets(&u, s.clone());
                        s
                    }
                    Err(e) if e.is_not_found() => {
                        // The cache was stale: the VN went away. Look again from scratch.
                        self.cache.forget_name("virtual-network", n.vn_fq);
                        return self.create_network(n);
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            for want in n.subnets {
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
                            n.vn_fq.join(":"),
                            have.join(", ")
                        ),
                    ));
                }
            }
            return Ok((u, subnets));
        }
        self.create_network(n)
    }

    /// A network's subnets: those on its IPAM refs, and for a ref that carries none (a
    /// flat-subnet IPAM: the ref attr holds only a `subnet_uuid`) those on the IPAM itself.
    pub(crate) fn network_subnets(
        &self,
        vn: &super::model::VncObject,
    ) -> Result<Vec<ipnet::IpNet>, VncError> {
        let mut out = vn.subnets();
        for r in vn.ipam_refs_without_subnets() {
            match self.api.read("network-ipam", &r.uuid) {
                Ok(ipam) => out.extend(ipam.flat_subnets()),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The flat-subnet IPAM of the networks the manager creates without a `network-subnets`
    /// label (`<cluster>-pod-ipam` in the cluster's project, holding `[cluster] subnet`), as
    /// Contrail's Kubernetes manager makes its pod IPAM: every network on it draws from one
    /// allocation space, so a group's and an app's addresses never overlap and a policy can
    /// route between them.
    pub(crate) fn ensure_pod_ipam(
        &self,
    ) -> Result<(Vec<String>, String, Vec<ipnet::IpNet>), AttachError> {
        let s = self.cfg.subnet.as_deref().unwrap_or_default();
        let n: ipnet::IpNet = s
            .parse()
            .map_err(|_| AttachError::Internal(format!("config subnet {s:?} is not a CIDR")))?;
        if let Some(why) = super::planning::unallocatable(&n) {
            return Err(AttachError::Internal(format!("config subnet {s}: {why}")));
        }
        let fq = vec![
            self.cfg.domain.clone(),
            self.cfg.project.clone(),
            format!("{}-pod-ipam", self.cfg.cluster),
        ];
        if let Some(u) = self.lookup("network-ipam", &fq)? {
            return Ok((fq, u, vec![n]));
        }
        self.ensure_project(&fq[..2], &NetKind::Labels)?;
        let mut body = json!({"fq_name": fq, "parent_type": "project", "ipam_subnet_method": "flat-subnet",
            "ipam_subnets": {"subnets": [{"subnet": {"ip_prefix": n.network().to_string(), "ip_prefix_len": n.prefix_len()}}]},
            "annotations": annotations(&[("created-by", &self.cfg.owner), ("cluster", &self.cfg.cluster)])});
        if let Some(d) = &self.cfg.dns {
            let server = self.ensure_dns_server(d)?;
            let (mgmt, refs) = Writer::ipam_dns_fields(d, &server);
            body["network_ipam_mgmt"] = mgmt;
            body["virtual_DNS_refs"] = refs;
        }
        let (u, _) = self.create_or_reuse("network-ipam", body)?;
        self.cache.put_name("network-ipam", &fq, &u);
        Ok((fq, u, vec![n]))
    }

    /// Start-up provisioning (idempotent): with `[dns]` the virtual DNS server; with
    /// `[cluster] subnet` the cluster network on the cluster's flat-subnet IPAM, whose uuid it
    /// returns (None without a subnet). With `[fabric]`, the network's `fabric_snat` is set (on
    /// a network made before it was asked for) and its ip-fabric policy made.
    pub fn provision(&self) -> Result<Option<String>, AttachError> {
        if let Some(d) = &self.cfg.dns {
            self.ensure_dns_server(d)?;
        }
        if self.cfg.subnet.is_none() {
            return Ok(None);
        }
        if let Some(d) = &self.cfg.dns {
            // A pod IPAM made before `[dns]` was turned on points at the server now.
            let (fq, ipam, _) = self.ensure_pod_ipam()?;
            let o = self.api.read("network-ipam", &ipam)?;
            if o.network_ipam_mgmt.is_none() {
                let server = self.ensure_dns_server(d)?;
                let (mgmt, refs) = Writer::ipam_dns_fields(d, &server);
                tracing::info!(ipam = %fq.join(":"), "pointing the pod IPAM at the virtual DNS server");
                self.api.update(
                    "network-ipam",
                    &ipam,
                    json!({"network_ipam_mgmt": mgmt, "virtual_DNS_refs": refs}),
                )?;
            }
        }
        let vn = self.cluster_network();
        self.ensure_project(&vn[..2], &NetKind::Labels)?;
        let (u, _) = self.ensure_network(&NetSpec {
            vn_fq: &vn,
            subnets: &[],
            kind: &NetKind::Labels,
        })?;
        if self.cfg.fabric.snat_for(&vn) {
            let o = self.api.read("virtual-network", &u)?;
            if !o.fabric_snat {
                self.api
                    .update("virtual-network", &u, json!({"fabric_snat": true}))?;
            }
        }
        if self.cfg.fabric.policy_for(&vn) {
            self.ensure_policy(&vn, &[super::fabric::Fabric::rule()], &u)?;
        }
        Ok(Some(u))
    }

    /// `[cluster]` domain, project and network.
    pub(crate) fn cluster_network(&self) -> Vec<String> {
        vec![
            self.cfg.domain.clone(),
            self.cfg.project.clone(),
            self.cfg.network.clone(),
        ]
    }

    pub(crate) fn create_network(
        &self,
        n: &NetSpec<'_>,
    ) -> Result<(String, Vec<ipnet::IpNet>), AttachError> {
        if n.subnets.is_empty() && self.cfg.subnet.is_none() {
            return Err(bad(
                "networks",
                format!(
                    "network {} does not exist and no network-subnets label says how to create it",
                    n.vn_fq.join(":")
                ),
            ));
        }
        if let NetKind::Group(_) = n.kind {
            self.ensure_project(&n.vn_fq[..2], n.kind)?;
        }
        let mut made_ipam = None;
        let (subnets, ipam_ref, props) = if n.subnets.is_empty() {
            let (fq, u, subnets) = self.ensure_pod_ipam()?;
            // The server makes the ref's `subnet_uuid`; a flat-subnet network must be l3
            // (sent with `address_allocation_mode: flat-subnet-only`, as kube-manager does).
            (
                subnets,
                json!({"to": fq, "uuid": u, "attr": {"ipam_subnets": []}}),
                json!({"forwarding_mode": "l3"}),
            )
        } else {
            let ipam_fq = n.vn_fq.to_vec();
            let (ipam, ipam_new) = match self.create_or_reuse(
                "network-ipam",
                json!({"fq_name": ipam_fq, "parent_type": "project"}),
            ) {
                Ok(x) => x,
                Err(e) if e.is_not_found() => {
                    return Err(bad(
                        "networks",
                        format!("project {}:{} does not exist", n.vn_fq[0], n.vn_fq[1]),
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            if ipam_new {
                made_ipam = Some(ipam.clone());
            }
            let ipam_subnets: Vec<Value> = n.subnets
                .iter()
                .map(|s| json!({"subnet": {"ip_prefix": s.network().to_string(), "ip_prefix_len": s.prefix_len()}}))
                .collect();
            (
                n.subnets.to_vec(),
                json!({"to": ipam_fq, "uuid": ipam, "attr": {"ipam_subnets": ipam_subnets}}),
                Value::Null,
            )
        };
        let mut body = json!({"fq_name": n.vn_fq, "parent_type": "project",
            "network_ipam_refs": [ipam_ref], "annotations": self.made_for(n.kind)});
        if self.cfg.fabric.snat_for(n.vn_fq) {
            body["fabric_snat"] = json!(true);
        }
        if !props.is_null() {
            body["virtual_network_properties"] = props;
            body["address_allocation_mode"] = json!("flat-subnet-only");
        }
        match self.create_or_reuse("virtual-network", body) {
            Ok((u, true)) => {
                self.cache.put_name("virtual-network", n.vn_fq, &u);
                self.cache.put_subnets(&u, subnets.clone());
                Ok((u, subnets))
            }
            // Someone created it in between: validate against what is there.
            Ok((u, false)) => {
                self.cache.put_name("virtual-network", n.vn_fq, &u);
                self.ensure_network(n)
            }
            Err(e) => {
                // No network, so the IPAM made for it goes too.
                if let Some(ipam) = made_ipam
                    && let Err(de) = ignore_404(self.api.delete("network-ipam", &ipam))
                {
                    tracing::warn!(ipam = %ipam, error = %de, "could not delete the IPAM of a network that failed");
                }
                if e.is_permanent() {
                    Err(bad("network-subnets", e.body().to_owned()))
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// Virtual router of a node: by IP, then by name.
    pub(crate) fn find_vrouter(&self, node: &Node) -> Result<Option<String>, AttachError> {
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
}

pub(crate) fn ignore_404(r: Result<(), VncError>) -> Result<(), VncError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}
