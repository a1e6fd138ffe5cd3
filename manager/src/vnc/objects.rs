//! CRUD of the shared objects an attachment needs (project, network with its IPAM, virtual
//! router lookups) and of single owned objects, over the `VncApi` edge.

use serde_json::{Value, json};

use contrail_mesos_api::Node;

use super::client::{RefOp, VncError};
use super::model::annotations;
use super::planning::Plan;
use super::writer::{AttachError, Writer, bad};

impl Writer {
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
        match self.api.create(ty, body) {
            Ok(u) => Ok((u, true)),
            Err(e) => match e.existing_uuid() {
                Some(u) => Ok((u, false)),
                None => Err(e),
            },
        }
    }

    pub(crate) fn ensure_project(&self, p: &Plan) -> Result<String, AttachError> {
        if let Some(u) = self.lookup("project", &p.project_fq)? {
            return Ok(u);
        }
        let body = json!({"fq_name": p.project_fq, "parent_type": "domain"});
        match self.create_or_reuse("project", body) {
            Ok((u, _)) => {
                self.cache.put_name("project", &p.project_fq, &u);
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
                    format!("domain {} does not exist", p.domain),
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The VN (created with its IPAM and subnets when absent). Returns (uuid, subnets).
    pub(crate) fn ensure_network(
        &self,
        p: &Plan,
    ) -> Result<(String, Vec<ipnet::IpNet>), AttachError> {
        if let Some(u) = self.lookup("virtual-network", &p.vn_fq)? {
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

    pub(crate) fn create_network(
        &self,
        p: &Plan,
    ) -> Result<(String, Vec<ipnet::IpNet>), AttachError> {
        let mut subnets = p.subnets.clone();
        if subnets.is_empty() {
            match &self.cfg.subnet {
                Some(s) => {
                    let n: ipnet::IpNet = s.parse().map_err(|_| {
                        AttachError::Internal(format!("config subnet {s} is not a CIDR"))
                    })?;
                    if let Some(why) = super::planning::unallocatable(&n) {
                        return Err(AttachError::Internal(format!("config subnet {s}: {why}")));
                    }
                    subnets.push(n)
                }
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
        let (ipam, ipam_new) = match self.create_or_reuse(
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
            Err(e) => {
                // No network, so the IPAM made for it goes too.
                if ipam_new && let Err(de) = ignore_404(self.api.delete("network-ipam", &ipam)) {
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
