//! `allow-from` labels -> Contrail `network-policy` objects. One policy per destination
//! network (`<cluster>-allow-to-<network>`, in the network's project), holding one rule per
//! (source network, protocol, destination ports) that some container on the network asked
//! for, applied to the destination and to every source network: Contrail passes traffic
//! between two networks only when a policy applied to both allows it (Contrail's "Network
//! Policy" documentation; `PolicyRuleType` and `VirtualNetworkPolicyType` in tf-api-client's
//! `all_cfg.xsd`).
//!
//! Each port records the rules it asked for (annotation `allow-rules`), so VNC alone says what
//! a policy must hold: the union of the rules of the ports on its network. A registration only
//! adds; the leader's collector ([`Writer::collect_policies`]) makes each policy exactly that
//! union, removing rules (and, when none is left, the policy) from a fresh read of the ports.

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::client::{RefOp, VncError};
use super::ids::now_secs;
use super::model::{VncObject, annotations};
use super::objects::ignore_404;
use super::planning::{AllowPlan, NetKind, NetSpec};
use super::writer::{AttachError, Writer, bad};

/// One rule, as recorded on a port and compared with a policy's entries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleKey {
    /// The source network's fq-name, `:`-joined (the form `PolicyRuleType` uses).
    pub src: String,
    pub protocol: String,
    /// Destination ports; (-1, -1) = any.
    pub ports: (i64, i64),
}

impl RuleKey {
    fn rule(&self, dst: &str) -> Value {
        json!({"direction": ">", "protocol": self.protocol, "ethertype": "IPv4",
            "src_addresses": [{"virtual_network": self.src}],
            "src_ports": [{"start_port": -1, "end_port": -1}],
            "dst_addresses": [{"virtual_network": dst}],
            "dst_ports": [{"start_port": self.ports.0, "end_port": self.ports.1}],
            "action_list": {"simple_action": "pass"}})
    }

    /// A rule this manager wrote (one source network, one port range, pass); others are
    /// ignored, and an update keeps only what the ports ask for.
    fn of_rule(r: &Value) -> Option<RuleKey> {
        let src = r["src_addresses"][0]["virtual_network"].as_str()?;
        let p = &r["dst_ports"][0];
        Some(RuleKey {
            src: src.to_owned(),
            protocol: r["protocol"].as_str()?.to_owned(),
            ports: (p["start_port"].as_i64()?, p["end_port"].as_i64()?),
        })
    }
}

/// The rules a port records: a JSON list of `[src, protocol, start, end]`.
pub fn encode_rules(rules: &BTreeSet<RuleKey>) -> String {
    Value::Array(
        rules
            .iter()
            .map(|r| json!([r.src, r.protocol, r.ports.0, r.ports.1]))
            .collect(),
    )
    .to_string()
}

pub fn decode_rules(s: &str) -> BTreeSet<RuleKey> {
    let v: Value = serde_json::from_str(s).unwrap_or(Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some(RuleKey {
                src: r[0].as_str()?.to_owned(),
                protocol: r[1].as_str()?.to_owned(),
                ports: (r[2].as_i64()?, r[3].as_i64()?),
            })
        })
        .collect()
}

/// The rules of a request's `allow-from` entries (and the fabric's).
pub(crate) fn rules_of(allow: &[AllowPlan]) -> BTreeSet<RuleKey> {
    allow
        .iter()
        .map(|a| RuleKey {
            src: a.src_fq.join(":"),
            protocol: a.entry.protocol.as_str().to_owned(),
            ports: a
                .entry
                .ports
                .map(|(x, y)| (i64::from(x), i64::from(y)))
                .unwrap_or((-1, -1)),
        })
        .collect()
}

fn entries_of(o: &VncObject) -> BTreeSet<RuleKey> {
    o.network_policy_entries
        .as_ref()
        .and_then(|e| e["policy_rule"].as_array())
        .into_iter()
        .flatten()
        .filter_map(RuleKey::of_rule)
        .collect()
}

/// `VirtualNetworkPolicyType`: the policy's place among the network's policies.
fn sequence() -> Value {
    json!({"sequence": {"major": 0, "minor": 0}, "timer": null})
}

/// Policy writes of this process one at a time: two registrations on one network would
/// otherwise each write their own union and the later would drop the other's rule (across
/// managers the collector's next pass restores it from the ports).
static POLICY_WRITES: Mutex<()> = Mutex::new(());

/// What one collector pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PolicyStats {
    pub updated: usize,
    pub deleted: usize,
}

impl Writer {
    pub(crate) fn policy_fq(&self, dst: &[String]) -> Vec<String> {
        vec![
            dst[0].clone(),
            dst[1].clone(),
            format!("{}-allow-to-{}", self.cfg.cluster, dst[2]),
        ]
    }

    /// The source networks of a plan: group and app networks are made when absent (empty
    /// until their first task); a network named by `network:` must exist.
    fn source_networks(&self, allow: &[AllowPlan]) -> Result<Vec<String>, AttachError> {
        let mut out = Vec::new();
        for a in allow {
            let u = match &a.src_kind {
                NetKind::Labels => self.lookup("virtual-network", &a.src_fq)?.ok_or_else(|| {
                    bad(
                        "allow-from",
                        format!("{}: network {} does not exist", a.entry, a.src_fq.join(":")),
                    )
                })?,
                kind => {
                    self.ensure_network(&NetSpec {
                        vn_fq: &a.src_fq,
                        subnets: &[],
                        kind,
                    })?
                    .0
                }
            };
            out.push(u);
        }
        Ok(out)
    }

    /// Makes the destination network's policy hold at least the plan's rules, applied to the
    /// destination and every source network. Returns the rules to record on the port.
    pub(crate) fn ensure_policy(
        &self,
        vn_fq: &[String],
        allow: &[AllowPlan],
        dst_uuid: &str,
    ) -> Result<BTreeSet<RuleKey>, AttachError> {
        let want = rules_of(allow);
        if want.is_empty() {
            return Ok(want);
        }
        let sources = self.source_networks(allow)?;
        let fq = self.policy_fq(vn_fq);
        let dst = vn_fq.join(":");
        let _g = POLICY_WRITES.lock().unwrap_or_else(|e| e.into_inner());
        let existing = match self.lookup("network-policy", &fq)? {
            Some(u) => match self.api.read("network-policy", &u) {
                Ok(o) => Some(o),
                Err(e) if e.is_not_found() => {
                    self.cache.forget_name("network-policy", &fq);
                    None
                }
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        // Whether this call has already stamped `written-at` (with the create or the rules).
        let (uuid, applied, stamped) = match existing {
            Some(o) => {
                let have = entries_of(&o);
                let grows = !want.is_subset(&have);
                if grows {
                    let all: BTreeSet<RuleKey> = have.union(&want).cloned().collect();
                    let rules: Vec<Value> = all.iter().map(|r| r.rule(&dst)).collect();
                    self.api.update(
                        "network-policy",
                        &o.uuid,
                        json!({"network_policy_entries": {"policy_rule": rules},
                            "annotations": self.policy_annotations(&dst)}),
                    )?;
                }
                let applied: BTreeSet<String> = o
                    .virtual_network_back_refs
                    .iter()
                    .map(|r| r.uuid.clone())
                    .collect();
                (o.uuid, applied, grows)
            }
            None => {
                let rules: Vec<Value> = want.iter().map(|r| r.rule(&dst)).collect();
                let body = json!({"fq_name": fq, "parent_type": "project",
                    "network_policy_entries": {"policy_rule": rules},
                    "annotations": self.policy_annotations(&dst)});
                let (u, new) = self.create_or_reuse("network-policy", body)?;
                self.cache.put_name("network-policy", &fq, &u);
                if !new {
                    // Made by another manager in between: merge into it.
                    drop(_g);
                    return self.ensure_policy(vn_fq, allow, dst_uuid);
                }
                (u, BTreeSet::new(), true)
            }
        };
        let mut refs_added = false;
        for vn in std::iter::once(dst_uuid.to_owned()).chain(sources) {
            if !applied.contains(&vn) {
                self.api.ref_add_with_attr(
                    "virtual-network",
                    &vn,
                    "network-policy",
                    &uuid,
                    &sequence(),
                )?;
                refs_added = true;
            }
        }
        if refs_added && !stamped {
            // The collector reads `written-at` before it takes anything off a policy.
            self.api.update(
                "network-policy",
                &uuid,
                json!({"annotations": self.policy_annotations(&dst)}),
            )?;
        }
        Ok(want)
    }

    /// A policy's annotations: whose it is, the network it protects, and when a registration
    /// last wrote it. That registration's port (which records the rules it asked for) comes a
    /// moment later, so the collector leaves a policy alone for the grace after `written-at`
    /// instead of shrinking it on ports that are not there yet.
    fn policy_annotations(&self, dst: &str) -> Value {
        let now = now_secs().to_string();
        annotations(&[
            ("created-by", &self.cfg.owner),
            ("cluster", &self.cfg.cluster),
            ("protects", dst),
            ("written-at", &now),
        ])
    }

    /// The rules the ports on a network record, read from VNC.
    fn rules_on_network(&self, vn: &VncObject) -> Result<BTreeSet<RuleKey>, VncError> {
        let mut out = BTreeSet::new();
        for r in &vn.virtual_machine_interface_back_refs {
            match self.api.read("virtual-machine-interface", &r.uuid) {
                Ok(vmi) => {
                    if let Some(a) = vmi.annotation("allow-rules") {
                        out.extend(decode_rules(a));
                    }
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The leader's pass over the policies this manager made: each becomes the union of the
    /// rules its network's ports record; one that no port needs is taken off every network and
    /// deleted. Run after the pass's scan has replaced the cache. A rule is only ever removed
    /// on VNC reads taken in this pass, never on the cache, and never within `grace_secs` of a
    /// registration's write (`written-at`): its port may not exist yet.
    pub fn collect_policies(&self, grace_secs: u64) -> Result<PolicyStats, AttachError> {
        let mut st = PolicyStats::default();
        // What the ports record, by network, from the cache the pass's scan just replaced: a
        // policy that only gains (or keeps) rules is decided on it; one that would lose a rule
        // is decided on a fresh read of its network's ports (a cluster network's ports are
        // not all read on every pass).
        let mut cached: std::collections::HashMap<String, BTreeSet<RuleKey>> =
            std::collections::HashMap::new();
        for o in self.cache.all_shared() {
            if let Some(a) = &o.allow_rules {
                cached
                    .entry(o.attachment.vn.fq_name.join(":"))
                    .or_default()
                    .extend(decode_rules(a));
            }
        }
        let _g = POLICY_WRITES.lock().unwrap_or_else(|e| e.into_inner());
        for pol in self.api.list("network-policy")? {
            if pol.annotation("created-by") != Some(self.cfg.owner.as_str())
                || pol.annotation("cluster") != Some(self.cfg.cluster.as_str())
            {
                continue;
            }
            let Some(dst) = pol.annotation("protects").map(str::to_owned) else {
                continue;
            };
            // The list may leave out back refs: read the policy and its network.
            let pol = match self.api.read("network-policy", &pol.uuid) {
                Ok(o) => o,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            if written_within(&pol, grace_secs) {
                continue;
            }
            let dst_fq: Vec<String> = dst.split(':').map(str::to_owned).collect();
            // The cluster network keeps its fabric rule without tasks (provisioned at start).
            let standing =
                if dst_fq == self.cluster_network() && self.cfg.fabric.policy_for(&dst_fq) {
                    rules_of(&[super::fabric::Fabric::rule()])
                } else {
                    BTreeSet::new()
                };
            let have = entries_of(&pol);
            let mut want: BTreeSet<RuleKey> = cached
                .get(&dst)
                .into_iter()
                .flatten()
                .chain(&standing)
                .cloned()
                .collect();
            if !want.is_superset(&have) {
                want = match self.api.fqname_to_id("virtual-network", &dst_fq)? {
                    Some(u) => match self.api.read("virtual-network", &u) {
                        Ok(vn) => self.rules_on_network(&vn)?,
                        Err(e) if e.is_not_found() => BTreeSet::new(),
                        Err(e) => return Err(e.into()),
                    },
                    None => BTreeSet::new(),
                };
                want.extend(standing);
            }
            // Networks that stay: the destination and the sources still named.
            let keep: BTreeSet<String> = want
                .iter()
                .map(|r| r.src.clone())
                .chain((!want.is_empty()).then(|| dst.clone()))
                .collect();
            let on: BTreeSet<String> = pol
                .virtual_network_back_refs
                .iter()
                .map(|r| r.to.join(":"))
                .collect();
            if want == have && on == keep {
                continue;
            }
            // A source another manager's registration named but could not apply.
            for fq in keep.difference(&on) {
                let parts: Vec<String> = fq.split(':').map(str::to_owned).collect();
                if let Some(u) = self.api.fqname_to_id("virtual-network", &parts)? {
                    self.api.ref_add_with_attr(
                        "virtual-network",
                        &u,
                        "network-policy",
                        &pol.uuid,
                        &sequence(),
                    )?;
                }
            }
            for r in &pol.virtual_network_back_refs {
                if !keep.contains(&r.to.join(":")) {
                    ignore_404(self.api.ref_update(
                        "virtual-network",
                        &r.uuid,
                        "network-policy",
                        &pol.uuid,
                        RefOp::Delete,
                    ))?;
                }
            }
            if want.is_empty() {
                tracing::info!(policy = %pol.fq_name.join(":"), "no task asks for this policy any more; deleting it");
                ignore_404(self.api.delete("network-policy", &pol.uuid))?;
                self.cache.forget_name("network-policy", &pol.fq_name);
                st.deleted += 1;
            } else if want != have {
                let rules: Vec<Value> = want.iter().map(|r| r.rule(&dst)).collect();
                tracing::info!(policy = %pol.fq_name.join(":"), rules = rules.len(), "policy follows the tasks that ask for it");
                self.api.update(
                    "network-policy",
                    &pol.uuid,
                    json!({"network_policy_entries": {"policy_rule": rules}}),
                )?;
                st.updated += 1;
            }
        }
        Ok(st)
    }
}

/// Whether a registration wrote the policy less than `grace_secs` ago (a policy without the
/// annotation, made by an older manager, is not protected).
fn written_within(pol: &VncObject, grace_secs: u64) -> bool {
    pol.annotation_age_secs("written-at")
        .is_some_and(|age| age < grace_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip_through_the_port_annotation_and_the_policy() {
        let rules: BTreeSet<RuleKey> = [
            RuleKey {
                src: "d:p:a".into(),
                protocol: "tcp".into(),
                ports: (8080, 8080),
            },
            RuleKey {
                src: "d:p:b c".into(),
                protocol: "any".into(),
                ports: (-1, -1),
            },
        ]
        .into();
        assert_eq!(decode_rules(&encode_rules(&rules)), rules);
        assert!(decode_rules("not json").is_empty());
        for r in &rules {
            assert_eq!(RuleKey::of_rule(&r.rule("d:p:dst")).as_ref(), Some(r));
        }
    }
}
