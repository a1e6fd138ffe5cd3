//! `changed-record`: an `ipam-plugin` of `contrail:cni-plugin@0.2.0` built against a copy of
//! the WIT whose `ip-address` record has an extra field, same package version. The host's
//! exact type check must refuse it (`plugin check` and every ADD). Never deployed.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "ipam-plugin", path: "wit" });

    use exports::contrail::cni_plugin::ipam as wit;

    struct Changed;
    export!(Changed);

    impl wit::Guest for Changed {
        fn configure(_req: wit::Request) -> Result<wit::IpConfig, wit::PluginError> {
            Ok(wit::IpConfig {
                ips: vec![wit::IpAddress {
                    address: "10.1.2.3/24".into(),
                    mtu: 9000,
                    gateway: None,
                }],
                routes: Vec::new(),
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
