//! 0.1.0 answers in the 0.2.0 records (the shapes did not change; the 0.1.0
//! `contrail-request` has no `isolation`).

use super::bindings::{v1, v2};
use super::{contrail_wit, ipam_wit};

pub(super) fn contrail_from_v1(
    r: v1::wit_translator::ContrailRequest,
) -> contrail_wit::ContrailRequest {
    contrail_wit::ContrailRequest {
        domain: r.domain,
        project: r.project,
        network: r.network,
        subnets: r
            .subnets
            .into_iter()
            .map(|s| contrail_wit::Subnet { cidr: s.cidr })
            .collect(),
        ip: r.ip,
        floating_ips: r
            .floating_ips
            .into_iter()
            .map(|f| contrail_wit::FloatingIpRequest {
                pool: f.pool,
                address: f.address,
            })
            .collect(),
        security_groups: r.security_groups,
        isolation: None,
        other: r
            .other
            .into_iter()
            .map(|l| v2::Label {
                key: l.key,
                value: l.value,
            })
            .collect(),
    }
}

pub(super) fn ipam_from_v1(r: v1::wit_ipam::IpConfig) -> ipam_wit::IpConfig {
    ipam_wit::IpConfig {
        ips: r
            .ips
            .into_iter()
            .map(|a| ipam_wit::IpAddress {
                address: a.address,
                gateway: a.gateway,
            })
            .collect(),
        routes: r
            .routes
            .into_iter()
            .map(|rt| ipam_wit::Route {
                dst: rt.dst,
                gw: rt.gw,
            })
            .collect(),
        dns: ipam_wit::Dns {
            nameservers: r.dns.nameservers,
            domain: r.dns.domain,
            search: r.dns.search,
            options: r.dns.options,
        },
    }
}
