//! `v010-translator`: a component of world `label-translator` of `contrail:cni-plugin@0.1.0`,
//! built from its own copy of that WIT (`wit/`), so the host's 0.1.0 support is tested against
//! what an old plugin really looks like. Never deployed.
//!
//! `translate-delegate` returns a whole delegate config, as 0.1.0 translators did: the
//! operator's block with the outer network's `cniVersion`/`name`, Mesos' `args`, and
//! `args.cni.ips = ["10.5.0.9"]`. The string field `"misbehave"` of the network config picks a
//! variation: `"ok"` (as described), `"host-device"` (also sets `"type": "host-device"`),
//! `"self"` (`"type": "contrail-cni-plugin"`), `"wasm"` (adds a `wasm` section with its own
//! limits), `"log-file"` (adds `"log-file"`). `translate-contrail` answers network `["blue"]`.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "label-translator", path: "wit" });

    use exports::contrail::cni_plugin::translator as wit;
    use guest_support::Json;
    use guest_support::json::Object;

    struct Old;
    export!(Old);

    fn error(msg: String) -> wit::PluginError {
        wit::PluginError {
            code: 7,
            msg,
            details: String::new(),
        }
    }

    impl wit::Guest for Old {
        fn translate_delegate(req: wit::DelegateRequest) -> Result<String, wit::PluginError> {
            let outer = Json::parse(&req.invocation.config).map_err(|e| error(e.to_string()))?;
            let mode = outer
                .get("misbehave")
                .and_then(Json::as_str)
                .unwrap_or("ok")
                .to_owned();
            let Ok(Json::Object(block)) = Json::parse(&req.delegate) else {
                return Err(error("delegate is not an object".into()));
            };
            let mut out = Object::new();
            out.insert(
                "cniVersion",
                Json::from(req.invocation.cni_version.as_str()),
            );
            out.insert("name", Json::from(req.invocation.network_name.as_str()));
            out.extend(block);
            let mut args = Object::new();
            if let Some(m) = outer.get("args").and_then(|a| a.get("org.apache.mesos")) {
                args.insert("org.apache.mesos", m.clone());
            }
            let mut cni = Object::new();
            cni.insert("ips", Json::Array(vec![Json::from("10.5.0.9")]));
            args.insert("cni", Json::Object(cni));
            out.insert("args", Json::Object(args));
            match mode.as_str() {
                "ok" => {}
                "host-device" => {
                    out.insert("type", Json::from("host-device"));
                    out.insert("device", Json::from("eth0"));
                }
                "self" => out.insert("type", Json::from("contrail-cni-plugin")),
                "wasm" => {
                    let mut w = Object::new();
                    w.insert("memory-limit-mb", Json::Number(4096u64.into()));
                    out.insert("wasm", Json::Object(w));
                }
                "log-file" => out.insert("log-file", Json::from("/root/.ssh/authorized_keys")),
                other => return Err(error(format!("unknown mode {other}"))),
            }
            Ok(Json::Object(out).to_string())
        }

        fn translate_contrail(
            _labels: Vec<wit::Label>,
        ) -> Result<wit::ContrailRequest, wit::PluginError> {
            Ok(wit::ContrailRequest {
                domain: None,
                project: None,
                network: Some(vec!["blue".into()]),
                subnets: Vec::new(),
                ip: None,
                floating_ips: Vec::new(),
                security_groups: Vec::new(),
                other: Vec::new(),
            })
        }
    }
}
