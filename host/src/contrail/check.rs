//! CHECK (CNI SPEC.md "CHECK: Check container's networking is as expected"): the interface,
//! its MAC, addresses and routes are still what ADD reported, and the host end (nested mode: the
//! VLAN interface) still exists, and so do the node's rules for the port mappings.

use std::net::IpAddr;

use super::ctx::{Ctx, Deps};
use super::error::{Error, Result, code};
use super::naming::tap_name;
use crate::cni::result::CniResult;
use crate::net::{format_mac, parse_mac};

/// CHECK: the interface, its MAC, addresses and routes are still what ADD reported.
pub fn check(ctx: &Ctx, prev: &CniResult, deps: &mut Deps) -> Result<()> {
    let netns = ctx
        .netns
        .ok_or_else(|| Error::new(code::INVALID_ENV, "CNI_NETNS is required for CHECK"))?;
    let fail = |m: String| Error::new(code::INVALID_CONFIG, m);
    let st = deps.net.inspect(netns, ctx.ifname)?.ok_or_else(|| {
        fail(format!(
            "interface {} is missing in {}",
            ctx.ifname,
            netns.display()
        ))
    })?;
    let idx = prev.interfaces.iter().position(|i| i.name == ctx.ifname);
    if let Some(want) = idx.and_then(|i| prev.interfaces[i].mac.as_deref()) {
        let have = st.mac.map(|m| format_mac(&m)).unwrap_or_default();
        if parse_mac(want) != st.mac {
            return Err(fail(format!(
                "interface {} has MAC {have}, expected {want}",
                ctx.ifname
            )));
        }
    }
    if !st.up {
        return Err(fail(format!("interface {} is down", ctx.ifname)));
    }
    for ip in prev
        .ips
        .iter()
        .filter(|ip| ip.interface.is_none() || ip.interface == idx)
    {
        if !st.addrs.contains(&ip.address) {
            return Err(fail(format!(
                "address {} is missing on {}",
                ip.address, ctx.ifname
            )));
        }
    }
    for r in &prev.routes {
        let ok = st
            .routes
            .iter()
            .any(|h| h.dst == r.dst && (r.gw.is_none() || h.gw == r.gw));
        if !ok {
            let via =
                r.gw.map(|g: IpAddr| format!(" via {g}"))
                    .unwrap_or_default();
            return Err(fail(format!(
                "route {}{via} is missing on {}",
                r.dst, ctx.ifname
            )));
        }
    }
    // The node side: the veth's host end, or in nested mode the VLAN interface our record
    // names (without a record there is nothing to compare with).
    let host = if ctx.cfg.nested() {
        super::record::Store::new(&ctx.cfg.state_dir)
            .get(ctx.network_name, ctx.container_id, ctx.ifname)
            .ok()
            .flatten()
            .and_then(|r| r.vlan_link)
    } else {
        Some(tap_name(ctx.container_id, ctx.ifname))
    };
    if let Some(host) = host
        && !deps.net.host_link_exists(&host)?
    {
        return Err(fail(format!("host interface {host} is missing")));
    }
    // The node's DNAT rules of the port mappings asked for.
    if !ctx.port_mappings.is_empty() {
        let chain = super::portmap::chain_name(ctx.container_id, ctx.ifname);
        let listing = deps.ports.list()?;
        for m in &ctx.port_mappings {
            let holder = listing.holder(m.proto, m.host_port);
            if holder != Some(chain.as_str()) || !listing.chains.contains(&chain) {
                return Err(fail(format!(
                    "host port {}/{} is not forwarded to {} (nft table {})",
                    m.proto.as_str(),
                    m.host_port,
                    ctx.ifname,
                    super::portmap::TABLE
                )));
            }
        }
    }
    Ok(())
}
