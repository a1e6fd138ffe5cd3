//! `v010-ipam`: a component of world `ipam-plugin` of `contrail:cni-plugin@0.1.0`, built from
//! its own copy of that WIT (`wit/`). Never deployed. It answers the agent's IPv4 address with
//! its gateway and a default route; with `"misbehave": "gw-outside"` in the network config the
//! gateway is 192.168.9.1 whatever the subnet (a 0.1.0 answer gets the 0.2.0 checks).

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "ipam-plugin", path: "wit" });

    use exports::contrail::cni_plugin::ipam as wit;

    struct Old;
    export!(Old);

    impl wit::Guest for Old {
        fn configure(req: wit::Request) -> Result<wit::IpConfig, wit::PluginError> {
            let p = req.port;
            let (Some(ip), Some(plen)) = (p.ip_address, p.plen) else {
                return Err(wit::PluginError {
                    code: 7,
                    msg: "no IPv4 address".into(),
                    details: String::new(),
                });
            };
            let gw = if req.invocation.config.contains("\"gw-outside\"") {
                Some("192.168.9.1".to_owned())
            } else {
                p.gateway
            };
            Ok(wit::IpConfig {
                ips: vec![wit::IpAddress {
                    address: format!("{ip}/{plen}"),
                    gateway: gw.clone(),
                }],
                routes: gw
                    .map(|g| wit::Route {
                        dst: "0.0.0.0/0".into(),
                        gw: Some(g),
                    })
                    .into_iter()
                    .collect(),
                dns: wit::Dns {
                    nameservers: Vec::new(),
                    domain: None,
                    search: Vec::new(),
                    options: Vec::new(),
                },
            })
        }
    }
}
