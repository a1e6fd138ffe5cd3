//! Label semantics: an attachment request's labels resolved against the manager's defaults
//! into the fq-names and addresses the writer needs. No I/O; every refusal names its label.

use std::net::IpAddr;

use contrail_mesos_api::AttachRequest;

use super::writer::{AttachError, WriterConfig, bad};

/// Resolved names of one request.
pub(crate) struct Plan {
    pub domain: String,
    pub project_fq: Vec<String>,
    pub vn_fq: Vec<String>,
    pub subnets: Vec<ipnet::IpNet>,
    pub ip: Option<IpAddr>,
    pub sgs: Vec<Vec<String>>,
    pub fips: Vec<(Vec<String>, Option<IpAddr>)>,
}

pub(crate) fn plan(cfg: &WriterConfig, req: &AttachRequest) -> Result<Plan, AttachError> {
    let r = &req.request;
    let domain = r.domain.clone().unwrap_or_else(|| cfg.domain.clone());
    let project = r.project.clone().unwrap_or_else(|| cfg.project.clone());
    let project_fq = vec![domain.clone(), project];
    let vn_fq = match r.network.as_deref() {
        None => {
            let mut f = project_fq.clone();
            f.push(cfg.network.clone());
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
