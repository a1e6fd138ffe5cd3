//! Reachability between Contrail networks and the IP fabric, as Contrail's Mesos and Kubernetes
//! managers provision it: `fabric_snat` on a network (its tasks reach the underlay with their
//! node's address; the vRouter translates) and a policy from the pre-created provider network
//! `default-domain:default-project:ip-fabric` to a network (hosts on the fabric, such as the
//! masters, Mesos-DNS or marathon-lb, reach task addresses). The policy is an `allow-from` rule
//! like any other (`vnc/policy.rs`), added by configuration instead of a label.

use contrail_mesos_api::allow::{Allow, Protocol, Source};

use super::planning::{AllowPlan, NetKind};
use crate::config::FabricConfig;

/// marathon-lb's label naming the load balancer group an app is exposed through (marathon-lb's
/// README, "HAPROXY_GROUP"); on a task's network labels it asks for the ip-fabric rule.
pub const HAPROXY_GROUP: &str = "HAPROXY_GROUP";

/// The provider network every Contrail cluster has (the API server makes it at boot).
pub fn ip_fabric() -> Vec<String> {
    ["default-domain", "default-project", "ip-fabric"]
        .map(str::to_owned)
        .to_vec()
}

/// `[fabric]` with the listed networks resolved to fq-names.
#[derive(Debug, Clone, Default)]
pub struct Fabric {
    pub snat: bool,
    pub snat_networks: Vec<Vec<String>>,
    pub policy: bool,
    pub policy_networks: Vec<Vec<String>>,
}

fn fq(name: &str, domain: &str, project: &str) -> Vec<String> {
    let parts: Vec<String> = name.split(':').map(str::to_owned).collect();
    if parts.len() == 3 {
        parts
    } else {
        vec![domain.to_owned(), project.to_owned(), name.to_owned()]
    }
}

impl Fabric {
    pub fn from_config(c: &FabricConfig, domain: &str, project: &str) -> Fabric {
        Fabric {
            snat: c.snat,
            snat_networks: c
                .snat_networks
                .iter()
                .map(|n| fq(n, domain, project))
                .collect(),
            policy: c.policy,
            policy_networks: c
                .policy_networks
                .iter()
                .map(|n| fq(n, domain, project))
                .collect(),
        }
    }

    /// Whether a network the manager creates gets `fabric_snat`.
    pub fn snat_for(&self, vn: &[String]) -> bool {
        self.snat || self.snat_networks.iter().any(|n| n == vn)
    }

    /// Whether tasks' ports on `vn` ask for the ip-fabric policy.
    pub fn policy_for(&self, vn: &[String]) -> bool {
        vn != ip_fabric().as_slice()
            && (self.policy || self.policy_networks.iter().any(|n| n == vn))
    }

    /// The rule that lets the fabric reach a network: any protocol, any port.
    pub(crate) fn rule() -> AllowPlan {
        AllowPlan {
            entry: Allow {
                source: Source::Network(ip_fabric()),
                protocol: Protocol::Any,
                ports: None,
            },
            src_fq: ip_fabric(),
            src_kind: NetKind::Labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_chosen_cluster_wide_or_by_name() {
        let c = FabricConfig {
            snat: false,
            snat_networks: vec!["blue".into(), "d:p:red".into()],
            policy: true,
            policy_networks: vec![],
        };
        let f = Fabric::from_config(&c, "default-domain", "default-project");
        let blue = ["default-domain", "default-project", "blue"].map(str::to_owned);
        let red = ["d", "p", "red"].map(str::to_owned);
        let green = ["default-domain", "default-project", "green"].map(str::to_owned);
        assert!(f.snat_for(&blue) && f.snat_for(&red) && !f.snat_for(&green));
        assert!(f.policy_for(&green));
        assert!(
            !f.policy_for(&ip_fabric()),
            "never a policy from ip-fabric to itself"
        );
    }
}
