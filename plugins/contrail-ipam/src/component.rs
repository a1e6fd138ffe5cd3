//! The WIT glue: convert records, forward panics to the host log. No logic here.

#[allow(unused_imports)]
use guest_support::prelude::*;

wit_bindgen::generate!({
    world: "ipam-plugin",
    path: "../../wit",
});

use contrail::cni_plugin::host::{self, Level};
use exports::contrail::cni_plugin::ipam as wit;

struct Component;

export!(Component);

/// The build has no `std` (guest-support's crate docs), so the panic handler is ours: the
/// message goes to the host log, then the call traps (`unreachable`) and the host reports it.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    host::log(Level::Error, &format!("contrail-ipam panicked: {info}"));
    core::arch::wasm32::unreachable()
}

impl wit::Guest for Component {
    fn configure(req: wit::Request) -> Result<wit::IpConfig, wit::PluginError> {
        let p = req.port;
        let port = crate::ipam::Port {
            id: p.id,
            ip_address: p.ip_address,
            plen: p.plen,
            gateway: p.gateway,
            dns_server: p.dns_server,
            mac_address: p.mac_address,
            v6_ip_address: p.v6_ip_address,
            v6_plen: p.v6_plen,
            v6_gateway: p.v6_gateway,
            v6_dns_server: p.v6_dns_server,
        };
        let c =
            crate::ipam::configure(&req.invocation.config, &port, req.primary).map_err(|e| {
                wit::PluginError {
                    code: e.code,
                    msg: e.msg,
                    details: e.details,
                }
            })?;
        Ok(wit::IpConfig {
            ips: c
                .ips
                .into_iter()
                .map(|i| wit::IpAddress {
                    address: i.address,
                    gateway: i.gateway,
                })
                .collect(),
            routes: c
                .routes
                .into_iter()
                .map(|r| wit::Route {
                    dst: r.dst,
                    gw: r.gw,
                })
                .collect(),
            dns: wit::Dns {
                nameservers: c.dns.nameservers,
                domain: c.dns.domain,
                search: c.dns.search,
                options: c.dns.options,
            },
        })
    }
}
