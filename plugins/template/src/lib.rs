//! `my-ipam`: a minimal plugin of world `ipam-plugin` (`contrail:cni-plugin@0.2.0`), the
//! starting point for a site's own IP policy. It gives the interface the agent's IPv4 address
//! with its prefix and gateway, a default route on the primary interface, the agent's DNS
//! server, and the DNS search domains the operator put in the network config:
//!
//! ```json
//! "wasm": {"ipam": "my-ipam.wasm", "plugin-config": {"ipam-plugin": {"search": ["corp.example"]}}}
//! ```
//!
//! The logic is plain Rust ([`configure`]) so `cargo test` runs natively; the WIT glue is
//! compiled for wasm32 only.

use serde::Deserialize;

/// What the operator may set in `wasm.plugin-config."ipam-plugin"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    #[serde(default)]
    pub search: Vec<String>,
}

/// The part of the agent's port answer this plugin uses.
#[derive(Debug, Default)]
pub struct Port {
    pub id: String,
    pub ip_address: Option<String>,
    pub plen: Option<u32>,
    pub gateway: Option<String>,
    pub dns_server: Option<String>,
}

/// The answer, in the WIT's shapes (strings; the host checks them again).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub address: String,
    pub gateway: Option<String>,
    pub default_route: Option<String>,
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
}

/// A CNI error: code 7 (invalid network config) or 200-299 for errors of your own.
#[derive(Debug, PartialEq, Eq)]
pub struct Error {
    pub code: u32,
    pub msg: String,
}

fn invalid(msg: String) -> Error {
    Error { code: 7, msg }
}

pub fn configure(port: &Port, primary: bool, plugin_config: Option<&str>) -> Result<Answer, Error> {
    let cfg: PluginConfig = match plugin_config {
        None => PluginConfig::default(),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| invalid(format!("wasm.plugin-config.ipam-plugin: {e}")))?,
    };
    let (Some(ip), Some(plen)) = (&port.ip_address, port.plen) else {
        return Err(invalid(format!("agent sent no IPv4 address for port {}", port.id)));
    };
    let ip: std::net::Ipv4Addr = ip
        .parse()
        .map_err(|_| invalid(format!("port {}: ip-address {ip:?} is not IPv4", port.id)))?;
    if plen > 32 {
        return Err(invalid(format!("port {}: plen {plen} is out of range", port.id)));
    }
    let gateway = port.gateway.clone().filter(|g| !g.is_empty() && g != "0.0.0.0");
    Ok(Answer {
        address: format!("{ip}/{plen}"),
        default_route: gateway.clone().filter(|_| primary),
        gateway,
        nameservers: port.dns_server.iter().filter(|d| !d.is_empty()).cloned().collect(),
        search: cfg.search,
    })
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "ipam-plugin", path: "wit" });

    use contrail::cni_plugin::host::{self, Level};
    use contrail::cni_plugin::types::PluginError;
    use exports::contrail::cni_plugin::ipam as wit;

    struct Component;
    export!(Component);

    impl wit::Guest for Component {
        fn configure(req: wit::Request) -> Result<wit::IpConfig, PluginError> {
            // Without WASI, std's default panic hook traps before printing: log instead.
            std::panic::set_hook(Box::new(|info| {
                host::log(Level::Error, &format!("my-ipam panicked: {info}"));
            }));
            let p = req.port;
            let port = crate::Port {
                id: p.id,
                ip_address: p.ip_address,
                plen: p.plen,
                gateway: p.gateway,
                dns_server: p.dns_server,
            };
            let a = crate::configure(&port, req.primary, req.invocation.plugin_config.as_deref())
                .map_err(|e| PluginError {
                    code: e.code,
                    msg: e.msg,
                    details: String::new(),
                })?;
            host::log(Level::Debug, &format!("port {}: {}", port.id, a.address));
            Ok(wit::IpConfig {
                ips: vec![wit::IpAddress {
                    address: a.address,
                    gateway: a.gateway,
                }],
                routes: a
                    .default_route
                    .map(|gw| wit::Route {
                        dst: "0.0.0.0/0".into(),
                        gw: Some(gw),
                    })
                    .into_iter()
                    .collect(),
                dns: wit::Dns {
                    nameservers: a.nameservers,
                    domain: None,
                    search: a.search,
                    options: Vec::new(),
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port() -> Port {
        Port {
            id: "vmi-1".into(),
            ip_address: Some("10.47.255.250".into()),
            plen: Some(12),
            gateway: Some("10.47.255.254".into()),
            dns_server: Some("10.47.255.253".into()),
        }
    }

    #[test]
    fn primary_gets_the_default_route_and_the_search_list() {
        let a = configure(&port(), true, Some(r#"{"search":["corp.example"]}"#)).unwrap();
        assert_eq!(a.address, "10.47.255.250/12");
        assert_eq!(a.default_route.as_deref(), Some("10.47.255.254"));
        assert_eq!(a.search, ["corp.example"]);
        assert!(configure(&port(), false, None).unwrap().default_route.is_none());
    }

    #[test]
    fn bad_input_is_code_7() {
        assert_eq!(configure(&Port::default(), true, None).unwrap_err().code, 7);
        assert_eq!(configure(&port(), true, Some(r#"{"serch":[]}"#)).unwrap_err().code, 7);
    }
}
