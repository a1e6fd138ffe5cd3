//! Address allocation of the VNC API server (`vnc-api.md` §5, from upstream `vnc_addr_mgmt.py`):
//! gateway `last-1` and DNS `last-2` by default (first+1/first+2 with `addr_from_start`),
//! top-down allocation (bottom-up with `addr_from_start`), network and broadcast always excluded,
//! gateway/DNS excluded only when they lie in an allocation pool. IPv4 only.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// One `IpamSubnetType` of a virtual network, with its allocation state.
#[derive(Debug, Clone)]
pub struct SubnetAlloc {
    pub subnet_uuid: String,
    pub net: Ipv4Net,
    pub gateway: u32,
    pub dns: u32,
    /// Inclusive ranges. The implicit pool is first..last-1 (upstream quirk).
    pub pools: Vec<(u32, u32)>,
    pub from_start: bool,
    pub used: BTreeSet<u32>,
    /// Top-down: every pool address above `hint` is used or reserved (bottom-up: below).
    /// Keeps allocation O(1) amortised with 10,000s of addresses while giving the same
    /// "highest free address first" answers as upstream's bitmap allocator.
    hint: u32,
}

/// Why an address could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// 409 `IP address already in use`.
    InUse,
    /// 400 `... has exhausted subnet([])`.
    Exhausted,
}

impl SubnetAlloc {
    /// Builds from a client `IpamSubnetType`; returns the error text (status, body) upstream
    /// gives for an invalid one.
    pub fn from_ipam_subnet(
        v: &serde_json::Value,
        subnet_uuid: String,
    ) -> Result<SubnetAlloc, (u16, String)> {
        let prefix = v["subnet"]["ip_prefix"].as_str().unwrap_or("");
        let len = v["subnet"]["ip_prefix_len"].as_u64().unwrap_or(0) as u8;
        let addr: Ipv4Addr = prefix
            .parse()
            .map_err(|_| (400, format!("Invalid subnet {prefix}/{len}")))?;
        let net = Ipv4Net::new(addr, len)
            .map_err(|_| (400, format!("Invalid subnet {prefix}/{len}")))?
            .trunc();
        let first = u32::from(net.network());
        let last = u32::from(net.broadcast());
        let from_start = v["addr_from_start"].as_bool().unwrap_or(false);
        let cidr = format!("{}/{}", net.network(), net.prefix_len());
        let ip_in = |s: &str| s.parse::<Ipv4Addr>().ok().map(u32::from);
        let gateway = match v["default_gateway"].as_str() {
            Some(g) => {
                let g_ip = ip_in(g).ok_or((400, format!("Invalid gateway {g}")))?;
                if g_ip < first || g_ip > last {
                    return Err((409, format!("gateway Ip {g} out of cidr: {cidr}")));
                }
                g_ip
            }
            None if from_start => first + 1,
            None => last.saturating_sub(1),
        };
        let dns = match v["dns_server_address"].as_str() {
            Some(d) => {
                let d_ip = ip_in(d).ok_or((400, format!("Invalid dns {d}")))?;
                if d_ip < first || d_ip > last {
                    return Err((409, format!("dns server Ip {d} out of cidr: {cidr}")));
                }
                d_ip
            }
            None if from_start => first + 2,
            None => last.saturating_sub(2),
        };
        let mut pools = Vec::new();
        if let Some(ps) = v["allocation_pools"].as_array() {
            for p in ps {
                let s = p["start"].as_str().unwrap_or("");
                let e = p["end"].as_str().unwrap_or("");
                match (ip_in(s), ip_in(e)) {
                    (Some(a), Some(b)) if a >= first && b <= last && a <= b => pools.push((a, b)),
                    _ => {
                        return Err((
                            409,
                            format!("allocation pool start:{s}, end:{e} out of cidr:{cidr}"),
                        ));
                    }
                }
            }
        }
        if pools.is_empty() {
            pools.push((first, last.saturating_sub(1)));
        }
        let hint = if from_start { first } else { last };
        Ok(SubnetAlloc {
            subnet_uuid,
            net,
            gateway,
            dns,
            pools,
            from_start,
            used: BTreeSet::new(),
            hint,
        })
    }

    fn in_pool(&self, a: u32) -> bool {
        self.pools.iter().any(|&(s, e)| a >= s && a <= e)
    }

    fn reserved(&self, a: u32) -> bool {
        let first = u32::from(self.net.network());
        let last = u32::from(self.net.broadcast());
        a == first
            || a == last
            || ((a == self.gateway || a == self.dns) && self.in_pool(a))
            || self.used.contains(&a)
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        self.net.contains(&a)
    }

    pub fn gateway_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.gateway)
    }

    pub fn dns_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dns)
    }

    /// Reserves a requested address. `gateway_ok`: the gateway may be taken (no VM port).
    pub fn reserve(&mut self, a: Ipv4Addr, gateway_ok: bool) -> Result<(), AllocError> {
        let a = u32::from(a);
        if gateway_ok && a == self.gateway && !self.used.contains(&a) {
            self.used.insert(a);
            return Ok(());
        }
        if self.reserved(a) {
            return Err(AllocError::InUse);
        }
        self.used.insert(a);
        Ok(())
    }

    /// Allocates the next address (highest free first unless `addr_from_start`).
    pub fn allocate(&mut self) -> Result<Ipv4Addr, AllocError> {
        let mut pools = self.pools.clone();
        if self.from_start {
            pools.sort();
            for (s, e) in pools {
                let mut a = s.max(self.hint);
                while a <= e {
                    if !self.reserved(a) {
                        self.used.insert(a);
                        self.hint = a;
                        return Ok(Ipv4Addr::from(a));
                    }
                    a += 1;
                }
            }
        } else {
            pools.sort_by(|x, y| y.cmp(x));
            for (s, e) in pools {
                let mut a = e.min(self.hint);
                while a >= s {
                    if !self.reserved(a) {
                        self.used.insert(a);
                        self.hint = a;
                        return Ok(Ipv4Addr::from(a));
                    }
                    if a == 0 {
                        break;
                    }
                    a -= 1;
                }
            }
        }
        Err(AllocError::Exhausted)
    }

    pub fn free(&mut self, a: Ipv4Addr) {
        let a = u32::from(a);
        if self.used.remove(&a) {
            if self.from_start {
                self.hint = self.hint.min(a);
            } else {
                self.hint = self.hint.max(a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slash_29_top_down_then_exhausted() {
        let v = json!({"subnet": {"ip_prefix": "10.2.2.0", "ip_prefix_len": 29}});
        let mut s = SubnetAlloc::from_ipam_subnet(&v, "u".into()).unwrap();
        assert_eq!(s.gateway_addr().to_string(), "10.2.2.6");
        assert_eq!(s.dns_addr().to_string(), "10.2.2.5");
        let got: Vec<String> = (0..4).map(|_| s.allocate().unwrap().to_string()).collect();
        assert_eq!(got, ["10.2.2.4", "10.2.2.3", "10.2.2.2", "10.2.2.1"]);
        assert_eq!(s.allocate(), Err(AllocError::Exhausted));
        s.free("10.2.2.3".parse().unwrap());
        assert_eq!(s.allocate().unwrap().to_string(), "10.2.2.3");
    }

    #[test]
    fn from_start_with_pool() {
        let v = json!({"subnet": {"ip_prefix": "10.3.3.0", "ip_prefix_len": 24},
            "default_gateway": "10.3.3.254", "dns_server_address": "10.3.3.253",
            "allocation_pools": [{"start": "10.3.3.100", "end": "10.3.3.110"}], "addr_from_start": true});
        let mut s = SubnetAlloc::from_ipam_subnet(&v, "u".into()).unwrap();
        assert_eq!(s.allocate().unwrap().to_string(), "10.3.3.100");
    }

    #[test]
    fn requested_addresses() {
        let v = json!({"subnet": {"ip_prefix": "10.1.1.0", "ip_prefix_len": 24}});
        let mut s = SubnetAlloc::from_ipam_subnet(&v, "u".into()).unwrap();
        assert_eq!(
            s.reserve("10.1.1.255".parse().unwrap(), false),
            Err(AllocError::InUse)
        );
        assert_eq!(
            s.reserve("10.1.1.0".parse().unwrap(), false),
            Err(AllocError::InUse)
        );
        assert_eq!(
            s.reserve("10.1.1.253".parse().unwrap(), false),
            Err(AllocError::InUse)
        );
        assert_eq!(s.reserve("10.1.1.254".parse().unwrap(), true), Ok(()));
        assert_eq!(s.reserve("10.1.1.10".parse().unwrap(), false), Ok(()));
        assert_eq!(
            s.reserve("10.1.1.10".parse().unwrap(), false),
            Err(AllocError::InUse)
        );
        assert_eq!(s.allocate().unwrap().to_string(), "10.1.1.252");
    }
}
