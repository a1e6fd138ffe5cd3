//! Label semantics: an attachment request's labels resolved against the manager's defaults
//! into the fq-names and addresses the writer needs. No I/O; every refusal names its label.

use std::net::IpAddr;

use contrail_mesos_api::AttachRequest;
use contrail_mesos_api::allow::{Allow, Source};

use super::writer::{AttachError, WriterConfig, bad};
use crate::isolation::{Placement, safe_path};

/// What made the network a request lands on; recorded on networks and projects the manager
/// creates (annotation `isolation`, with `for` = the group or app), so the collector knows
/// which ones are its to remove once unused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NetKind {
    /// Named by the labels, or the cluster network.
    Labels,
    Group(String),
    App(String),
}

impl NetKind {
    pub fn annotation(&self) -> (&'static str, &str) {
        match self {
            NetKind::Labels => ("labels", ""),
            NetKind::Group(g) => ("group", g),
            NetKind::App(a) => ("app", a),
        }
    }
}

/// One `allow-from` entry with its source network resolved.
#[derive(Debug, Clone)]
pub(crate) struct AllowPlan {
    pub entry: Allow,
    pub src_fq: Vec<String>,
    /// Group or app when the source is a network the manager makes.
    pub src_kind: NetKind,
}

/// A network to find or make.
pub(crate) struct NetSpec<'a> {
    pub vn_fq: &'a [String],
    /// Its own subnets; empty = on the cluster's flat-subnet IPAM.
    pub subnets: &'a [ipnet::IpNet],
    pub kind: &'a NetKind,
}

impl Plan {
    pub(crate) fn net(&self) -> NetSpec<'_> {
        NetSpec {
            vn_fq: &self.vn_fq,
            subnets: &self.subnets,
            kind: &self.kind,
        }
    }
}

/// Resolved names of one request.
pub(crate) struct Plan {
    pub project_fq: Vec<String>,
    pub vn_fq: Vec<String>,
    pub kind: NetKind,
    pub allow: Vec<AllowPlan>,
    pub subnets: Vec<ipnet::IpNet>,
    pub ip: Option<IpAddr>,
    pub sgs: Vec<Vec<String>>,
    pub fips: Vec<(Vec<String>, Option<IpAddr>)>,
}

impl WriterConfig {
    /// The project and network of a Marathon group (`/team-a` -> project `mesos-team-a`,
    /// network `mesos-team-a-network`, with `mesos` the cluster name). A deeper path than
    /// `group-depth` names the group it is in.
    pub(crate) fn group_network(&self, domain: &str, group: &str) -> (Vec<String>, Vec<String>) {
        let name = format!(
            "{}-{}",
            self.cluster,
            safe_path(&self.group_at_depth(group))
        );
        let project = vec![domain.to_owned(), name.clone()];
        let mut vn = project.clone();
        vn.push(format!("{name}-network"));
        (project, vn)
    }

    /// `/team-a/back` at depth 1 is `/team-a`.
    pub(crate) fn group_at_depth(&self, group: &str) -> String {
        let segs: Vec<&str> = group.trim_start_matches('/').split('/').collect();
        format!(
            "/{}",
            segs[..self.group_depth.clamp(1, segs.len())].join("/")
        )
    }

    /// The network of a Marathon app, in the cluster's project (`/team-a/web` ->
    /// `mesos-app-team-a_web`).
    pub(crate) fn app_network(&self, domain: &str, app: &str) -> Vec<String> {
        vec![
            domain.to_owned(),
            self.project.clone(),
            format!("{}-app-{}", self.cluster, safe_path(app)),
        ]
    }
}

/// `marathon_lb`: the task's app is exposed by marathon-lb (its own `HAPROXY_GROUP` label).
pub(crate) fn plan(
    cfg: &WriterConfig,
    req: &AttachRequest,
    placement: &Placement,
    marathon_lb: bool,
) -> Result<Plan, AttachError> {
    let r = &req.request;
    let domain = r.domain.clone().unwrap_or_else(|| cfg.domain.clone());
    let project = r.project.clone().unwrap_or_else(|| cfg.project.clone());
    let mut project_fq = vec![domain.clone(), project];
    let mut kind = NetKind::Labels;
    let vn_fq = match r.network.as_deref() {
        None => match placement {
            Placement::Group(g) => {
                let (p, vn) = cfg.group_network(&domain, g);
                project_fq = p;
                kind = NetKind::Group(cfg.group_at_depth(g));
                vn
            }
            Placement::App(a) => {
                project_fq = vec![domain.clone(), cfg.project.clone()];
                kind = NetKind::App(a.clone());
                cfg.app_network(&domain, a)
            }
            Placement::Labels => {
                let mut f = project_fq.clone();
                f.push(cfg.network.clone());
                f
            }
        },
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
        if let Some(why) = unallocatable(&n) {
            return Err(bad("network-subnets", format!("{s}: {why}")));
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
    let mut allow = Vec::new();
    for entry in r.allow_from().map_err(|e| bad("allow-from", e.reason))? {
        let (src_fq, src_kind) = match &entry.source {
            Source::Group(g) => (
                cfg.group_network(&domain, g).1,
                NetKind::Group(cfg.group_at_depth(g)),
            ),
            Source::App(a) => (cfg.app_network(&domain, a), NetKind::App(a.clone())),
            Source::Network(n) if n.len() == 1 => {
                let mut f = project_fq.clone();
                f.push(n[0].clone());
                (f, NetKind::Labels)
            }
            Source::Network(n) => (n.clone(), NetKind::Labels),
        };
        if src_fq == vn_fq {
            // Traffic inside one network always passes: nothing to allow.
            continue;
        }
        allow.push(AllowPlan {
            entry,
            src_fq,
            src_kind,
        });
    }
    // marathon-lb on the fabric load-balances to task addresses of the apps in its
    // `HAPROXY_GROUP`: their network must let the fabric in.
    let marathon_lb = marathon_lb
        || r.other
            .iter()
            .any(|l| l.key == super::fabric::HAPROXY_GROUP && !l.value.trim().is_empty());
    if cfg.fabric.policy_for(&vn_fq) || (marathon_lb && vn_fq != super::fabric::ip_fabric()) {
        allow.push(super::fabric::Fabric::rule());
    }
    Ok(Plan {
        project_fq,
        vn_fq,
        kind,
        allow,
        subnets,
        ip,
        sgs,
        fips,
    })
}

/// Why VNC can never give a container an address in `n`, if it cannot. The API server refuses
/// a network with a /31, /32 or IPv6 /127 subnet (500 `invalid alloc_unit(1)`), and in a /30
/// (IPv6 /126) its gateway (last-1) and DNS address (last-2) take both host addresses, so the
/// first instance-ip is refused as exhausted (`vnc_addr_mgmt.py`, `Subnet.__init__`).
pub fn unallocatable(n: &ipnet::IpNet) -> Option<&'static str> {
    let host_bits = n.max_prefix_len() - n.prefix_len();
    match host_bits {
        0 | 1 => Some("VNC cannot allocate in a subnet this small (a /31, /32 or IPv6 /127)"),
        2 => Some(
            "no address is left for a container: VNC gives a /30's (IPv6 /126's) two host addresses to the gateway and DNS",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_vnc_cannot_allocate_in_are_told_apart() {
        for s in [
            "10.8.1.0/31",
            "10.8.2.1/32",
            "fd00:32::/127",
            "10.8.3.0/30",
            "fd00::/126",
        ] {
            assert!(unallocatable(&s.parse().unwrap()).is_some(), "{s}");
        }
        for s in ["10.2.2.0/29", "10.0.0.0/8", "fd00::/125", "fd00::/64"] {
            assert!(unallocatable(&s.parse().unwrap()).is_none(), "{s}");
        }
    }
}
