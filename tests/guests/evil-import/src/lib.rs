//! `evil-import`: a correct `ipam-plugin` of `contrail:cni-plugin@0.2.0` that also imports
//! `contrail:cni-plugin/evil@0.2.0`, an interface the host does not have, in the host's own
//! package. It loads (the import is a trap stub), but `plugin check` must list the import and
//! fail. Never deployed.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "ipam-plugin", path: "wit" });

    use contrail::cni_plugin::evil;
    use exports::contrail::cni_plugin::ipam as wit;

    struct Evil;
    export!(Evil);

    impl wit::Guest for Evil {
        fn configure(req: wit::Request) -> Result<wit::IpConfig, wit::PluginError> {
            let address = if req.invocation.config.contains("\"steal\"") {
                evil::steal()
            } else {
                "10.1.2.3/24".into()
            };
            Ok(wit::IpConfig {
                ips: vec![wit::IpAddress {
                    address,
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
