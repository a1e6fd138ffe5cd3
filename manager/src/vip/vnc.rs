//! The load balancers in VNC, as Contrail's Kubernetes manager makes them for a service with
//! the native provider (tf-controller `kube_manager/vnc/loadbalancer.py`, `vnc_service.py`):
//! a VIP port (a `virtual-machine-interface` with no VM, on the VIP network) and its
//! `instance-ip`, a `loadbalancer` referring to the port, per port a `loadbalancer-listener`
//! referring to the loadbalancer, a `loadbalancer-pool` referring to the listener (and to its
//! `loadbalancer-healthmonitor`), and a `loadbalancer-member` per backend, a child of the pool.
//!
//! The API server refuses to delete what is still referred to or has children, so objects go
//! in dependency order: members, pool, health monitor, listener, loadbalancer, instance-ip,
//! VIP port. Every object carries the manager's `created-by`/`cluster` annotations and a
//! `vip` annotation; only such objects are ever changed or deleted, and only by uuid.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::desired::{Desired, Member, Monitor, Vip};
use super::labels::VipKey;
use crate::vnc::client::{RefOp, VncError};
use crate::vnc::model::{VncObject, annotations};
use crate::vnc::objects::ignore_404;
use crate::vnc::planning::{NetKind, NetSpec};
use crate::vnc::writer::{AttachError, Writer};

/// The types a VIP is made of, in creation order.
pub const LB_TYPES: [&str; 5] = [
    "loadbalancer",
    "loadbalancer-listener",
    "loadbalancer-healthmonitor",
    "loadbalancer-pool",
    "loadbalancer-member",
];

/// `virtual_machine_interface_device_owner` of a VIP port (kube-manager writes
/// `K8S:LOADBALANCER`).
pub const DEVICE_OWNER: &str = "MESOS:LOADBALANCER";

/// Settings the VNC side needs.
#[derive(Debug, Clone)]
pub struct VipNames {
    /// The VIP network's name in the cluster's project.
    pub network: String,
    /// DNS domain of named VIPs: `<name>.marathon.l4lb.<domain>`.
    pub domain: String,
}

/// The owned load-balancer objects, by type.
#[derive(Debug, Default)]
pub struct OwnedLbs {
    pub lbs: Vec<VncObject>,
    pub listeners: Vec<VncObject>,
    pub monitors: Vec<VncObject>,
    pub pools: Vec<VncObject>,
    pub members: Vec<VncObject>,
}

/// What one pass changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VipStats {
    pub created: usize,
    pub deleted: usize,
    pub updated: usize,
    pub errors: usize,
    pub loadbalancers: usize,
    pub members: usize,
}

fn props(v: &Option<Value>) -> Value {
    v.clone().unwrap_or(Value::Null)
}

impl Writer {
    fn owns_lb(&self, o: &VncObject) -> bool {
        o.annotation("created-by") == Some(self.cfg.owner.as_str())
            && o.annotation("cluster") == Some(self.cfg.cluster.as_str())
            && o.annotation("vip").is_some()
    }

    fn lb_annotations(&self, vip: &str, extra: &[(&str, &str)]) -> Value {
        let mut pairs = vec![
            ("created-by", self.cfg.owner.as_str()),
            ("cluster", self.cfg.cluster.as_str()),
            ("vip", vip),
        ];
        pairs.extend_from_slice(extra);
        annotations(&pairs)
    }

    fn in_project(&self, name: String) -> Vec<String> {
        vec![self.cfg.domain.clone(), self.cfg.project.clone(), name]
    }

    /// `<cluster>-vip_<name or address>`: `_` appears in no VIP name, and no name parses as
    /// an address, so two VIPs never share one.
    pub fn lb_name(&self, key: &VipKey) -> String {
        match key {
            VipKey::Name(n) => format!("{}-vip_{n}", self.cfg.cluster),
            VipKey::Addr(a) => format!("{}-vip_{a}", self.cfg.cluster),
        }
    }

    /// The owned load-balancer objects. `None` when none is owned and none is wanted (one
    /// list call in a cluster without VIPs).
    pub fn scan_lbs(&self, want_any: bool) -> Result<Option<OwnedLbs>, VncError> {
        let mut out = OwnedLbs::default();
        self.api.list_each("loadbalancer", &mut |o| {
            if self.owns_lb(&o) {
                out.lbs.push(o)
            }
        })?;
        if out.lbs.is_empty() && !want_any {
            return Ok(None);
        }
        for (ty, v) in [
            ("loadbalancer-listener", &mut out.listeners),
            ("loadbalancer-healthmonitor", &mut out.monitors),
            ("loadbalancer-pool", &mut out.pools),
            ("loadbalancer-member", &mut out.members),
        ] {
            self.api.list_each(ty, &mut |o| {
                if o.annotation("created-by") == Some(self.cfg.owner.as_str())
                    && o.annotation("cluster") == Some(self.cfg.cluster.as_str())
                    && o.annotation("vip").is_some()
                {
                    v.push(o)
                }
            })?;
        }
        Ok(Some(out))
    }

    /// Makes VNC hold exactly `d` (deletions only when `may_delete`: the listing was complete).
    pub fn apply_vips(
        &self,
        d: &Desired,
        names: &VipNames,
        may_delete: bool,
    ) -> Result<VipStats, VncError> {
        let mut st = VipStats::default();
        let Some(owned) = self.scan_lbs(!d.vips.is_empty())? else {
            return Ok(st);
        };
        let by_fq = |v: &[VncObject]| -> BTreeMap<Vec<String>, VncObject> {
            v.iter().map(|o| (o.fq_name.clone(), o.clone())).collect()
        };
        let lbs = by_fq(&owned.lbs);
        let listeners = by_fq(&owned.listeners);
        let monitors = by_fq(&owned.monitors);
        let pools = by_fq(&owned.pools);
        for (key, vip) in &d.vips {
            let fq = self.in_project(self.lb_name(key));
            match self.ensure_vip(key, vip, &fq, lbs.get(&fq), names, &mut st) {
                Ok(lb) => {
                    st.loadbalancers += 1;
                    // With `[dns]`, the name of a named VIP resolves to its address.
                    if let (Some(d), VipKey::Name(n)) = (&self.cfg.dns, key) {
                        let l4 = Writer::l4lb_server(d, &names.domain);
                        let addr = props(&lb.loadbalancer_properties)["vip_address"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        let vip_s = key.to_string();
                        let owner = [
                            ("created-by", self.cfg.owner.as_str()),
                            ("cluster", self.cfg.cluster.as_str()),
                            ("vip", vip_s.as_str()),
                        ];
                        if !addr.is_empty()
                            && let Err(e) = self.ensure_vip_record(&l4, &lb.uuid, n, &addr, &owner)
                        {
                            st.errors += 1;
                            tracing::warn!(vip = %key, error = %e, "VIP DNS record not made; next pass retries");
                        }
                    }
                    if let Err(e) = self.ensure_listeners(
                        key,
                        vip,
                        &lb,
                        &listeners,
                        &monitors,
                        &pools,
                        &owned.members,
                        may_delete,
                        &mut st,
                    ) {
                        st.errors += 1;
                        tracing::warn!(vip = %key, error = %e, "VIP listeners not brought in step; next pass retries");
                    }
                }
                Err(e) => {
                    st.errors += 1;
                    tracing::warn!(vip = %key, apps = ?vip.apps, error = %e, "VIP load balancer not made; next pass retries");
                }
            }
        }
        if may_delete {
            let wanted: BTreeSet<Vec<String>> = d
                .vips
                .keys()
                .map(|k| self.in_project(self.lb_name(k)))
                .collect();
            for lb in owned.lbs.iter().filter(|o| !wanted.contains(&o.fq_name)) {
                tracing::info!(lb = %lb.fq_name.join(":"), vip = lb.annotation("vip").unwrap_or(""), "no app declares the VIP any more: deleting its load balancer");
                if let Err(e) = self.delete_lb(lb, &owned, &mut st) {
                    st.errors += 1;
                    tracing::warn!(lb = %lb.uuid, error = %e, "VIP load balancer delete failed; next pass retries");
                }
            }
        }
        Ok(st)
    }

    /// The loadbalancer of a VIP with its port and address, made when absent.
    fn ensure_vip(
        &self,
        key: &VipKey,
        vip: &Vip,
        fq: &[String],
        have: Option<&VncObject>,
        names: &VipNames,
        st: &mut VipStats,
    ) -> Result<VncObject, AttachError> {
        let apps = vip.apps.iter().cloned().collect::<Vec<_>>().join(",");
        let apps: String = apps.chars().take(1000).collect();
        let dns = match key {
            VipKey::Name(n) => format!("{n}.marathon.l4lb.{}", names.domain),
            VipKey::Addr(a) => a.to_string(),
        };
        let vip_s = key.to_string();
        let ann = self.lb_annotations(&vip_s, &[("dns-name", &dns), ("apps", &apps)]);
        if let Some(lb) = have {
            if lb.annotation("apps") != Some(apps.as_str()) {
                self.api
                    .update("loadbalancer", &lb.uuid, json!({"annotations": ann}))?;
                st.updated += 1;
            }
            return Ok(lb.clone());
        }
        let name = fq[2].clone();
        let vn_fq = self.in_project(names.network.clone());
        self.ensure_project(&vn_fq[..2], &NetKind::Labels)?;
        let (vn, subnets) = self.ensure_network(&NetSpec {
            vn_fq: &vn_fq,
            subnets: &[],
            kind: &NetKind::Labels,
        })?;
        if let VipKey::Addr(a) = key
            && !subnets.iter().any(|s| s.contains(a))
        {
            let have: Vec<String> = subnets.iter().map(|s| s.to_string()).collect();
            return Err(AttachError::BadLabel {
                label: "VIP",
                message: format!(
                    "{a} is not in the VIP network {} ([{}])",
                    vn_fq.join(":"),
                    have.join(", ")
                ),
            });
        }
        let vmi_fq = self.in_project(format!("{name}__vip"));
        let (vmi, vmi_new) = self.create_or_reuse(
            "virtual-machine-interface",
            json!({"fq_name": vmi_fq, "parent_type": "project", "display_name": name,
                "virtual_machine_interface_device_owner": DEVICE_OWNER,
                "virtual_network_refs": [{"to": vn_fq, "uuid": vn}],
                "annotations": self.lb_annotations(&vip_s, &[])}),
        )?;
        let iip_fq = vec![format!("{name}__vip-iip")];
        let mut iip_body = json!({"fq_name": iip_fq, "display_name": name,
            "instance_ip_family": if matches!(key, VipKey::Addr(std::net::IpAddr::V6(_))) { "v6" } else { "v4" },
            "virtual_network_refs": [{"to": vn_fq, "uuid": vn}],
            "virtual_machine_interface_refs": [{"to": vmi_fq, "uuid": vmi}],
            "annotations": self.lb_annotations(&vip_s, &[])});
        if let VipKey::Addr(a) = key {
            iip_body["instance_ip_address"] = json!(a.to_string());
        }
        let made = self.create_or_reuse("instance-ip", iip_body).and_then(|(iip, iip_new)| {
            let o = self.api.read("instance-ip", &iip)?;
            let lb = json!({"fq_name": fq, "parent_type": "project", "display_name": dns,
                "loadbalancer_provider": "native",
                "loadbalancer_properties": {"provisioning_status": "ACTIVE", "operating_status": "ONLINE",
                    "vip_address": o.instance_ip_address, "vip_subnet_id": o.subnet_uuid, "admin_state": true},
                "virtual_machine_interface_refs": [{"to": vmi_fq, "uuid": vmi}],
                "annotations": ann});
            match self.create_or_reuse("loadbalancer", lb) {
                Ok((u, _)) => Ok(u),
                Err(e) => {
                    if iip_new {
                        let _ = ignore_404(self.api.delete("instance-ip", &iip));
                    }
                    Err(e)
                }
            }
        });
        match made {
            Ok(u) => {
                st.created += 1;
                tracing::info!(lb = %fq.join(":"), vip = %vip_s, dns = %dns, apps = %apps, "VIP load balancer created");
                Ok(self.api.read("loadbalancer", &u)?)
            }
            Err(e) => {
                // Nothing may be left behind that no loadbalancer leads to.
                if vmi_new {
                    let _ = ignore_404(self.api.delete("virtual-machine-interface", &vmi));
                }
                if e.status() == Some(409) && matches!(key, VipKey::Addr(_)) {
                    return Err(AttachError::BadLabel {
                        label: "VIP",
                        message: format!("{key}: {}", e.body()),
                    });
                }
                Err(e.into())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn ensure_listeners(
        &self,
        key: &VipKey,
        vip: &Vip,
        lb: &VncObject,
        listeners: &BTreeMap<Vec<String>, VncObject>,
        monitors: &BTreeMap<Vec<String>, VncObject>,
        pools: &BTreeMap<Vec<String>, VncObject>,
        members: &[VncObject],
        may_delete: bool,
        st: &mut VipStats,
    ) -> Result<(), VncError> {
        let vip_s = key.to_string();
        let mut wanted = BTreeSet::new();
        for (lk, pool) in &vip.listeners {
            let lname = format!("{}-{}-{}", lb.fq_name[2], lk.protocol, lk.port);
            let l_fq = self.in_project(lname.clone());
            wanted.insert(l_fq.clone());
            let listener = match listeners.get(&l_fq) {
                Some(l) => l.uuid.clone(),
                None => {
                    st.created += 1;
                    self.create_or_reuse(
                        "loadbalancer-listener",
                        json!({"fq_name": l_fq, "parent_type": "project", "display_name": lname,
                            "loadbalancer_listener_properties": {"protocol": lk.protocol, "protocol_port": lk.port,
                                "admin_state": true, "connection_limit": -1},
                            "loadbalancer_refs": [{"to": lb.fq_name, "uuid": lb.uuid}],
                            "annotations": self.lb_annotations(&vip_s, &[])}),
                    )?
                    .0
                }
            };
            let hm_fq = self.in_project(format!("{lname}-hm"));
            let hm = match (&pool.monitor, monitors.get(&hm_fq)) {
                (Some(m), Some(o)) => {
                    let want = monitor_props(m);
                    if props(&o.loadbalancer_healthmonitor_properties) != want {
                        self.api.update(
                            "loadbalancer-healthmonitor",
                            &o.uuid,
                            json!({"loadbalancer_healthmonitor_properties": want}),
                        )?;
                        st.updated += 1;
                    }
                    Some(o.uuid.clone())
                }
                (Some(m), None) => {
                    st.created += 1;
                    Some(
                        self.create_or_reuse(
                            "loadbalancer-healthmonitor",
                            json!({"fq_name": hm_fq, "parent_type": "project",
                                "loadbalancer_healthmonitor_properties": monitor_props(m),
                                "annotations": self.lb_annotations(&vip_s, &[])}),
                        )?
                        .0,
                    )
                }
                (None, _) => None,
            };
            let p_fq = self.in_project(format!("{lname}-pool"));
            match pools.get(&p_fq) {
                Some(p) => {
                    let have: Vec<&str> = p
                        .loadbalancer_healthmonitor_refs
                        .iter()
                        .map(|r| r.uuid.as_str())
                        .collect();
                    for h in &have {
                        if hm.as_deref() != Some(*h) {
                            ignore_404(self.api.ref_update(
                                "loadbalancer-pool",
                                &p.uuid,
                                "loadbalancer-healthmonitor",
                                h,
                                RefOp::Delete,
                            ))?;
                            st.updated += 1;
                        }
                    }
                    if let Some(h) = &hm
                        && !have.contains(&h.as_str())
                    {
                        self.api.ref_update(
                            "loadbalancer-pool",
                            &p.uuid,
                            "loadbalancer-healthmonitor",
                            h,
                            RefOp::Add,
                        )?;
                        st.updated += 1;
                    }
                }
                None => {
                    let mut body = json!({"fq_name": p_fq, "parent_type": "project",
                        "loadbalancer_pool_properties": {"loadbalancer_method": "ROUND_ROBIN",
                            "protocol": lk.protocol, "admin_state": true},
                        "loadbalancer_listener_refs": [{"to": l_fq, "uuid": listener}],
                        "annotations": self.lb_annotations(&vip_s, &[])});
                    if let Some(h) = &hm {
                        body["loadbalancer_healthmonitor_refs"] = json!([{"to": hm_fq, "uuid": h}]);
                    }
                    st.created += 1;
                    self.create_or_reuse("loadbalancer-pool", body)?;
                }
            }
            // A monitor no longer wanted goes once the pool no longer refers to it.
            if pool.monitor.is_none()
                && let Some(o) = monitors.get(&hm_fq)
            {
                self.delete_owned("loadbalancer-healthmonitor", &o.uuid, st)?;
            }
            self.sync_members(&vip_s, &p_fq, &pool.members, members, may_delete, st)?;
        }
        if may_delete {
            for l in listeners
                .values()
                .filter(|l| l.loadbalancer_refs.iter().any(|r| r.uuid == lb.uuid))
                .filter(|l| !wanted.contains(&l.fq_name))
            {
                self.delete_listener(l, pools, monitors, members, st)?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn sync_members(
        &self,
        vip_s: &str,
        pool_fq: &[String],
        want: &BTreeSet<Member>,
        members: &[VncObject],
        may_delete: bool,
        st: &mut VipStats,
    ) -> Result<(), VncError> {
        let have: Vec<&VncObject> = members
            .iter()
            .filter(|m| m.fq_name.len() == 4 && m.fq_name[..3] == *pool_fq)
            .collect();
        let want_by_name: BTreeMap<&str, &Member> =
            want.iter().map(|m| (m.task_id.as_str(), m)).collect();
        let mut present = BTreeSet::new();
        for m in &have {
            let same = want_by_name.get(m.fq_name[3].as_str()).is_some_and(|w| {
                let p = props(&m.loadbalancer_member_properties);
                p["address"].as_str() == Some(w.address.as_str())
                    && p["protocol_port"].as_u64() == Some(u64::from(w.port))
            });
            if same {
                present.insert(m.fq_name[3].clone());
            } else if may_delete || want_by_name.contains_key(m.fq_name[3].as_str()) {
                // Gone, unhealthy, or moved to another address or port: out of the pool.
                tracing::info!(member = %m.fq_name.join(":"), "VIP member removed");
                self.delete_owned("loadbalancer-member", &m.uuid, st)?;
            }
        }
        for m in want {
            if present.contains(&m.task_id) {
                st.members += 1;
                continue;
            }
            let mut fq = pool_fq.to_vec();
            fq.push(m.task_id.clone());
            self.create_or_reuse(
                "loadbalancer-member",
                json!({"fq_name": fq, "parent_type": "loadbalancer-pool", "display_name": m.task_id,
                    "loadbalancer_member_properties": {"address": m.address, "protocol_port": m.port,
                        "weight": 1, "admin_state": true},
                    "annotations": self.lb_annotations(vip_s, &[("task", &m.task_id), ("app", &m.app_id)])}),
            )?;
            tracing::info!(member = %fq.join(":"), address = %m.address, port = m.port, "VIP member added");
            st.created += 1;
            st.members += 1;
        }
        Ok(())
    }

    fn delete_owned(&self, ty: &str, uuid: &str, st: &mut VipStats) -> Result<(), VncError> {
        ignore_404(self.api.delete(ty, uuid))?;
        st.deleted += 1;
        Ok(())
    }

    fn delete_listener(
        &self,
        l: &VncObject,
        pools: &BTreeMap<Vec<String>, VncObject>,
        monitors: &BTreeMap<Vec<String>, VncObject>,
        members: &[VncObject],
        st: &mut VipStats,
    ) -> Result<(), VncError> {
        for p in pools.values().filter(|p| {
            p.loadbalancer_listener_refs
                .iter()
                .any(|r| r.uuid == l.uuid)
        }) {
            for m in members
                .iter()
                .filter(|m| m.fq_name.len() == 4 && m.fq_name[..3] == p.fq_name[..])
            {
                self.delete_owned("loadbalancer-member", &m.uuid, st)?;
            }
            self.delete_owned("loadbalancer-pool", &p.uuid, st)?;
            for h in &p.loadbalancer_healthmonitor_refs {
                if monitors.values().any(|o| o.uuid == h.uuid) {
                    self.delete_owned("loadbalancer-healthmonitor", &h.uuid, st)?;
                }
            }
        }
        // A monitor whose pool went in an earlier, interrupted pass.
        let mut hm_fq = l.fq_name.clone();
        if let Some(n) = hm_fq.last_mut() {
            n.push_str("-hm");
        }
        if let Some(o) = monitors.get(&hm_fq) {
            self.delete_owned("loadbalancer-healthmonitor", &o.uuid, st)?;
        }
        self.delete_owned("loadbalancer-listener", &l.uuid, st)
    }

    /// A loadbalancer and everything under it, in the order the API server enforces.
    fn delete_lb(
        &self,
        lb: &VncObject,
        owned: &OwnedLbs,
        st: &mut VipStats,
    ) -> Result<(), VncError> {
        let by_fq = |v: &[VncObject]| -> BTreeMap<Vec<String>, VncObject> {
            v.iter().map(|o| (o.fq_name.clone(), o.clone())).collect()
        };
        let pools = by_fq(&owned.pools);
        let monitors = by_fq(&owned.monitors);
        for l in owned
            .listeners
            .iter()
            .filter(|l| l.loadbalancer_refs.iter().any(|r| r.uuid == lb.uuid))
        {
            self.delete_listener(l, &pools, &monitors, &owned.members, st)?;
        }
        if let Some(d) = &self.cfg.dns {
            self.remove_vip_record(d, &lb.uuid)?;
        }
        self.delete_owned("loadbalancer", &lb.uuid, st)?;
        for r in &lb.virtual_machine_interface_refs {
            let vmi = match self.api.read("virtual-machine-interface", &r.uuid) {
                Ok(v) => v,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            if !self.owns_lb(&vmi) {
                continue;
            }
            for iip in &vmi.instance_ip_back_refs {
                self.delete_owned("instance-ip", &iip.uuid, st)?;
            }
            self.delete_owned("virtual-machine-interface", &vmi.uuid, st)?;
        }
        Ok(())
    }
}

fn monitor_props(m: &Monitor) -> Value {
    let mut v = json!({"monitor_type": m.monitor_type, "delay": m.delay, "timeout": m.timeout,
        "max_retries": m.max_retries, "admin_state": true});
    if let Some(p) = &m.url_path {
        v["url_path"] = json!(p);
        v["http_method"] = json!("GET");
        v["expected_codes"] = json!("200-399");
    }
    v
}
