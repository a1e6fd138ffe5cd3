//! `translate-delegate`: build the configuration the host passes to a Mesos network's delegate.
//!
//! What the delegate receives, and why:
//! * `cniVersion` and `name` of the outer network (CNI spec §4: the delegate gets the network
//!   configuration of the network being set up; the host converts the result to the outer
//!   version anyway, so they must agree). A `name` inside the `delegate` block is an error
//!   (code 7), as in the seed-003 plugin: it would silently be replaced otherwise.
//! * everything in the `delegate` block, untouched apart from what follows;
//! * `args."org.apache.mesos"` from the outer config (as Mesos' own port-mapper does), so a
//!   delegate that understands Mesos sees the `network_info`;
//! * `args.cni.ips` += the `IP=` addresses of the `CNI_ARGS` label (after those already there,
//!   no duplicates), `args.cni.mac` = its `MAC=` (the label wins over a configured value: it is
//!   per task), also `runtimeConfig.mac` when the delegate declares `capabilities.mac`;
//!   `runtimeConfig.ips` is deliberately not set: host-local reads both and would try to
//!   allocate the address twice;
//! * `args.cni.labels` += the network labels as `[{"key","value"}]` (CNI conventions);
//! * `prevResult` and `runtimeConfig` of the outer config (outer keys win over the block's).
//!
//! The command does not matter: DEL gets exactly the ADD translation, so host-local releases
//! the address the label asked for.

use guest_support::json::{Json, Object};

use crate::Label;
use crate::cni_args::{self, LABEL};
use crate::error::{DECODE_FAILED, PluginError};
use crate::net::parse_addr_with_prefix;

/// The CNI operation (WIT `command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
}

/// The parts of the WIT `delegate-request` the translation needs.
#[derive(Debug, Clone)]
pub struct DelegateRequest<'a> {
    /// Carried so the contract is explicit: the translation must not depend on it. DEL has to
    /// reproduce ADD's config (host-local releases by the requested address); the seed plugin
    /// hard-coded its DEL config instead.
    pub command: Command,
    /// The network's `name` (`invocation.network-name`).
    pub network_name: &'a str,
    /// The network's `cniVersion` (`invocation.cni-version`).
    pub cni_version: &'a str,
    /// The whole outer network configuration (`invocation.config`).
    pub config: &'a str,
    pub labels: &'a [Label],
    /// The `delegate` block as JSON text.
    pub delegate: &'a str,
    pub ignore_unknown: bool,
}

/// Returns the delegate's network configuration as JSON text.
pub fn translate_delegate(req: &DelegateRequest<'_>) -> Result<String, PluginError> {
    let delegate = Json::parse(req.delegate)
        .map_err(|e| PluginError::invalid(format!("delegate: not valid JSON: {e}")))?;
    let Json::Object(mut delegate) = delegate else {
        return Err(PluginError::invalid("delegate: must be a JSON object"));
    };
    match delegate.get("type") {
        Some(Json::String(t)) if !t.is_empty() => {}
        Some(Json::String(_)) | None => {
            return Err(PluginError::invalid(
                "delegate: missing \"type\" (the delegate plugin's name)",
            ));
        }
        Some(other) => {
            return Err(PluginError::invalid(format!(
                "delegate: \"type\" must be a string, got {other}"
            )));
        }
    }
    if let Some(name) = delegate.get("name") {
        return Err(PluginError::invalid(format!(
            "delegate: must not have a \"name\" (found {name}); it gets the network's name \"{}\"",
            req.network_name
        )));
    }

    let outer = Json::parse(req.config).map_err(|e| {
        PluginError::new(
            DECODE_FAILED,
            format!("network config: not valid JSON: {e}"),
        )
    })?;
    let Json::Object(outer) = outer else {
        return Err(PluginError::new(
            DECODE_FAILED,
            "network config: must be a JSON object",
        ));
    };

    // One CNI_ARGS label at most: two would leave it unclear which addresses were meant.
    let mut cni_args_labels = req.labels.iter().filter(|l| l.key == LABEL);
    let cni_args_label = cni_args_labels.next();
    if cni_args_labels.next().is_some() {
        return Err(PluginError::invalid(format!(
            "label {LABEL}: given more than once"
        )));
    }
    let parsed = match cni_args_label {
        Some(l) => cni_args::parse(&l.value, req.ignore_unknown)?,
        None => cni_args::CniArgs::default(),
    };

    // args: the block's own, then Mesos' namespace, then the conventional `cni` keys.
    let mut args = match delegate.remove("args") {
        None => Object::new(),
        Some(Json::Object(m)) => m,
        Some(other) => {
            return Err(PluginError::invalid(format!(
                "delegate: \"args\" must be an object, got {other}"
            )));
        }
    };
    if let Some(mesos) = outer.get("args").and_then(|a| a.get("org.apache.mesos")) {
        args.insert("org.apache.mesos", mesos.clone());
    }
    let mut cni = match args.remove("cni") {
        None => Object::new(),
        Some(Json::Object(m)) => m,
        Some(other) => {
            return Err(PluginError::invalid(format!(
                "delegate: \"args.cni\" must be an object, got {other}"
            )));
        }
    };
    if !parsed.ips.is_empty() {
        let mut ips = existing_ips(&cni)?;
        let configured = ips.len();
        for ip in &parsed.ips {
            cni_args::push_unique(&mut ips, *ip).map_err(|why| {
                PluginError::invalid(format!(
                    "label {LABEL}: IP {ip}: {why} (delegate args.cni.ips)"
                ))
            })?;
        }
        if ips.len() > configured || !cni.contains_key("ips") {
            cni.insert(
                "ips",
                Json::Array(ips.iter().map(|i| Json::String(i.to_string())).collect()),
            );
        }
    }
    if let Some(mac) = &parsed.mac {
        cni.insert("mac", Json::String(mac.clone()));
    }
    if !req.labels.is_empty() {
        let mut list = match cni.remove("labels") {
            None => Vec::new(),
            Some(Json::Array(list)) => list,
            Some(other) => {
                return Err(PluginError::invalid(format!(
                    "delegate: \"args.cni.labels\" must be a list, got {other}"
                )));
            }
        };
        for l in req.labels {
            let mut entry = Object::new();
            entry.insert("key", Json::from(l.key.as_str()));
            entry.insert("value", Json::from(l.value.as_str()));
            list.push(Json::Object(entry));
        }
        cni.insert("labels", Json::Array(list));
    }
    if !cni.is_empty() {
        args.insert("cni", Json::Object(cni));
    }

    let mut runtime_config = match delegate.remove("runtimeConfig") {
        None => Object::new(),
        Some(Json::Object(m)) => m,
        Some(other) => {
            return Err(PluginError::invalid(format!(
                "delegate: \"runtimeConfig\" must be an object, got {other}"
            )));
        }
    };
    match outer.get("runtimeConfig") {
        None => {}
        Some(Json::Object(m)) => runtime_config.extend(m.clone()),
        Some(other) => {
            return Err(PluginError::invalid(format!(
                "network config: \"runtimeConfig\" must be an object, got {other}"
            )));
        }
    }
    let declares_mac = delegate
        .get("capabilities")
        .and_then(|c| c.get("mac"))
        .and_then(Json::as_bool)
        .unwrap_or(false);
    if let (Some(mac), true) = (&parsed.mac, declares_mac) {
        runtime_config.insert("mac", Json::String(mac.clone()));
    }

    // cniVersion and name first, for readability of logged configs.
    delegate.remove("cniVersion");
    let mut out = Object::new();
    out.insert("cniVersion", Json::String(req.cni_version.into()));
    out.insert("name", Json::String(req.network_name.into()));
    out.extend(delegate);
    if !args.is_empty() {
        out.insert("args", Json::Object(args));
    }
    if !runtime_config.is_empty() {
        out.insert("runtimeConfig", Json::Object(runtime_config));
    }
    if let Some(prev) = outer.get("prevResult") {
        out.insert("prevResult", prev.clone());
    }
    Ok(Json::Object(out).to_string())
}

/// The block's own `args.cni.ips`, which must be a list of addresses: the label's addresses are
/// deduplicated against them.
fn existing_ips(cni: &Object) -> Result<Vec<crate::net::AddrWithPrefix>, PluginError> {
    let Some(v) = cni.get("ips") else {
        return Ok(Vec::new());
    };
    let bad = |what: String| PluginError::invalid(format!("delegate: \"args.cni.ips\": {what}"));
    let list = v
        .as_array()
        .ok_or_else(|| bad(format!("must be a list of addresses, got {v}")))?;
    let mut out = Vec::new();
    for item in list {
        let s = item
            .as_str()
            .ok_or_else(|| bad(format!("{item} is not a string")))?;
        let ip = parse_addr_with_prefix(s).map_err(bad)?;
        cni_args::push_unique(&mut out, ip).map_err(bad)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// The seed-003 network configuration, with `args` injected exactly as Mesos does for the
    /// seed's Marathon app (`"labels": {"CNI_ARGS": "IP=192.168.122.176"}`).
    const SEED_CONFIG: &str = r#"{
      "args": {"org.apache.mesos": {"network_info": {
          "ip_addresses": [{"protocol": "IPv4"}],
          "labels": {"labels": [{"key": "CNI_ARGS", "value": "IP=192.168.122.176"}]},
          "name": "test-delegate"}}},
      "name" : "test-delegate",
      "type" : "mesos",
      "MyAwesomeFlag": false,
      "AnotherAwesomeArg": "qwerqwer",
      "delegate": {
          "type": "macvtap",
          "master": "eth1",
          "hostrouteif": "macvtap0",
          "ipam": {
            "type": "host-local",
            "subnet": "192.168.122.0/24",
            "rangeStart": "192.168.122.171",
            "rangeEnd": "192.168.122.179",
            "routes": [ { "dst": "192.168.122.22/32", "gw": "0.0.0.0" },
                    { "dst": "192.168.10.153/32", "gw": "0.0.0.0" }]
          },
          "dns": { "nameservers": ["192.168.10.10"] },
          "args": {
              "test": { "rs": ["192.168.10.10"] },
              "cni": {
                "test": [
                  "192.168.122.172"
                ]
              }
          }
      }
    }"#;

    fn seed_delegate_block() -> String {
        let v: Value = serde_json::from_str(SEED_CONFIG).unwrap();
        v["delegate"].to_string()
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs.iter().map(|(k, v)| Label::new(*k, *v)).collect()
    }

    /// Run the translation with the seed's outer config and the given labels and block.
    fn run(labels: &[Label], delegate: &str, ignore_unknown: bool) -> Result<Value, PluginError> {
        run_with(SEED_CONFIG, "0.3.1", labels, delegate, ignore_unknown)
    }

    fn run_with(
        config: &str,
        version: &str,
        labels: &[Label],
        delegate: &str,
        ignore_unknown: bool,
    ) -> Result<Value, PluginError> {
        let out = translate_delegate(&DelegateRequest {
            command: Command::Add,
            network_name: "test-delegate",
            cni_version: version,
            config,
            labels,
            delegate,
            ignore_unknown,
        })?;
        Ok(serde_json::from_str(&out).expect("the plugin returns JSON"))
    }

    #[test]
    fn golden_seed_003() {
        let block = seed_delegate_block();
        let l = labels(&[("CNI_ARGS", "IP=192.168.122.176")]);
        // The seed config has no cniVersion, so the host passes "0.1.0".
        let got = run_with(SEED_CONFIG, "0.1.0", &l, &block, false).unwrap();
        let want = json!({
            "cniVersion": "0.1.0",
            "name": "test-delegate",
            "type": "macvtap",
            "master": "eth1",
            "hostrouteif": "macvtap0",
            "ipam": {
                "type": "host-local",
                "subnet": "192.168.122.0/24",
                "rangeStart": "192.168.122.171",
                "rangeEnd": "192.168.122.179",
                "routes": [ { "dst": "192.168.122.22/32", "gw": "0.0.0.0" },
                            { "dst": "192.168.10.153/32", "gw": "0.0.0.0" }]
            },
            "dns": { "nameservers": ["192.168.10.10"] },
            "args": {
                "test": { "rs": ["192.168.10.10"] },
                "org.apache.mesos": {"network_info": {
                    "ip_addresses": [{"protocol": "IPv4"}],
                    "labels": {"labels": [{"key": "CNI_ARGS", "value": "IP=192.168.122.176"}]},
                    "name": "test-delegate"}},
                "cni": {
                    "test": ["192.168.122.172"],
                    "ips": ["192.168.122.176"],
                    "labels": [{"key": "CNI_ARGS", "value": "IP=192.168.122.176"}]
                }
            }
        });
        assert_eq!(got, want);
        // Key order: cniVersion and name lead, the block's keys follow in their order.
        let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
        assert_eq!(keys[..4], ["cniVersion", "name", "type", "master"]);
    }

    #[test]
    fn del_translation_is_identical_to_add() {
        // A DEL replays the checkpointed config; whatever ADD asked the delegate for, DEL must
        // ask for too, for every command the host may run.
        let block = seed_delegate_block();
        let l = labels(&[(
            "CNI_ARGS",
            "IP=192.168.122.176/24,fd00::6;MAC=02:00:00:00:00:07",
        )]);
        let req = |command| DelegateRequest {
            command,
            network_name: "test-delegate",
            cni_version: "0.3.1",
            config: SEED_CONFIG,
            labels: &l,
            delegate: &block,
            ignore_unknown: false,
        };
        let add = translate_delegate(&req(Command::Add)).unwrap();
        for command in [Command::Del, Command::Check, Command::Status, Command::Gc] {
            assert_eq!(
                translate_delegate(&req(command)).unwrap(),
                add,
                "{command:?}"
            );
        }
        let v: Value = serde_json::from_str(&add).unwrap();
        assert_eq!(
            v["args"]["cni"]["ips"],
            json!(["192.168.122.176/24", "fd00::6"])
        );
        assert_eq!(v["args"]["cni"]["mac"], "02:00:00:00:00:07");
    }

    #[test]
    fn several_ips_v6_and_mac() {
        let block = r#"{"type":"bridge","capabilities":{"mac":true},
                        "args":{"cni":{"ips":["10.0.0.9/24"]}}}"#;
        let l = labels(&[
            ("app", "web"),
            (
                "CNI_ARGS",
                "IP=10.0.0.5/24,10.0.0.9/24;IP=2001:DB8::5/64;MAC=02:AA:bb:cc:dd:ee",
            ),
        ]);
        let got = run(&l, block, false).unwrap();
        assert_eq!(
            got["args"]["cni"]["ips"],
            json!(["10.0.0.9/24", "10.0.0.5/24", "2001:db8::5/64"])
        );
        assert_eq!(got["args"]["cni"]["mac"], "02:aa:bb:cc:dd:ee");
        assert_eq!(got["runtimeConfig"]["mac"], "02:aa:bb:cc:dd:ee");
        assert_eq!(
            got["args"]["cni"]["labels"],
            json!([{"key":"app","value":"web"},
                   {"key":"CNI_ARGS","value":"IP=10.0.0.5/24,10.0.0.9/24;IP=2001:DB8::5/64;MAC=02:AA:bb:cc:dd:ee"}])
        );
    }

    #[test]
    fn mac_goes_to_runtime_config_only_with_the_capability() {
        let l = labels(&[("CNI_ARGS", "MAC=02:00:00:00:00:01")]);
        let got = run(&l, r#"{"type":"macvlan"}"#, false).unwrap();
        assert_eq!(got["args"]["cni"]["mac"], "02:00:00:00:00:01");
        assert!(got.get("runtimeConfig").is_none(), "{got}");
        let got = run(
            &l,
            r#"{"type":"macvlan","capabilities":{"mac":false}}"#,
            false,
        )
        .unwrap();
        assert!(got.get("runtimeConfig").is_none(), "{got}");
        // The label overrides a MAC configured in the block: it is per task.
        let got = run(
            &l,
            r#"{"type":"tuning","args":{"cni":{"mac":"02:00:00:00:00:09"}}}"#,
            false,
        )
        .unwrap();
        assert_eq!(got["args"]["cni"]["mac"], "02:00:00:00:00:01");
    }

    #[test]
    fn conflicting_ip_with_block_is_an_error() {
        let l = labels(&[("CNI_ARGS", "IP=10.0.0.9/16")]);
        let e = run(
            &l,
            r#"{"type":"bridge","args":{"cni":{"ips":["10.0.0.9/24"]}}}"#,
            false,
        )
        .unwrap_err();
        assert_eq!(e.code, 7);
        assert_eq!(
            e.msg,
            "label CNI_ARGS: IP 10.0.0.9/16: 10.0.0.9/16 conflicts with 10.0.0.9/24 (delegate args.cni.ips)"
        );
        let e = run(
            &l,
            r#"{"type":"bridge","args":{"cni":{"ips":"10.0.0.9/24"}}}"#,
            false,
        )
        .unwrap_err();
        assert!(
            e.msg
                .starts_with("delegate: \"args.cni.ips\": must be a list"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn no_cni_args_label_leaves_the_delegate_alone_but_name_and_version() {
        let got = run_with(
            r#"{"name":"n","type":"mesos","cniVersion":"1.0.0"}"#,
            "1.0.0",
            &[],
            r#"{"type":"bridge","cniVersion":"0.3.1","bridge":"br0"}"#,
            false,
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"cniVersion":"1.0.0","name":"test-delegate","type":"bridge","bridge":"br0"})
        );
        // An empty label value is the same as no label (Marathon sends "" for an empty field).
        let l = labels(&[("CNI_ARGS", "")]);
        let got = run(&l, r#"{"type":"bridge"}"#, false).unwrap();
        assert!(got["args"]["cni"].get("ips").is_none(), "{got}");
    }

    #[test]
    fn name_in_block_and_bad_blocks_are_code_7() {
        let cases = [
            (
                r#"{"type":"bridge","name":"x"}"#,
                "must not have a \"name\"",
            ),
            (r#"{"bridge":"br0"}"#, "missing \"type\""),
            (r#"{"type":""}"#, "missing \"type\""),
            (r#"{"type":7}"#, "\"type\" must be a string"),
            (r#"["bridge"]"#, "must be a JSON object"),
            (r#"{"type":"bridge""#, "not valid JSON"),
            (
                r#"{"type":"bridge","args":[]}"#,
                "\"args\" must be an object",
            ),
            (
                r#"{"type":"bridge","args":{"cni":1}}"#,
                "\"args.cni\" must be an object",
            ),
            (
                r#"{"type":"bridge","args":{"cni":{"labels":{}}}}"#,
                "\"args.cni.labels\" must be a list",
            ),
            (
                r#"{"type":"bridge","runtimeConfig":1}"#,
                "\"runtimeConfig\" must be an object",
            ),
        ];
        let l = labels(&[("CNI_ARGS", "IP=10.0.0.5")]);
        for (block, want) in cases {
            let e = run(&l, block, false).unwrap_err();
            assert_eq!(e.code, 7, "{block}");
            assert!(e.msg.contains(want), "{block}: {}", e.msg);
        }
    }

    #[test]
    fn unknown_keys_code_2_unless_ignored() {
        let l = labels(&[("CNI_ARGS", "IP=10.0.0.5;K8S_POD_NAME=web")]);
        let e = run(&l, r#"{"type":"bridge"}"#, false).unwrap_err();
        assert_eq!(e.code, 2);
        assert_eq!(
            e.msg,
            "label CNI_ARGS: unknown key \"K8S_POD_NAME\" in \"K8S_POD_NAME=web\""
        );
        let got = run(&l, r#"{"type":"bridge"}"#, true).unwrap();
        assert_eq!(got["args"]["cni"]["ips"], json!(["10.0.0.5"]));
        let l = labels(&[("CNI_ARGS", "IgnoreUnknown=1;IP=10.0.0.5;K8S_POD_NAME=web")]);
        assert!(run(&l, r#"{"type":"bridge"}"#, false).is_ok());
    }

    #[test]
    fn two_cni_args_labels_are_refused() {
        let l = labels(&[("CNI_ARGS", "IP=10.0.0.5"), ("CNI_ARGS", "IP=10.0.0.6")]);
        let e = run(&l, r#"{"type":"bridge"}"#, false).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (7, "label CNI_ARGS: given more than once")
        );
    }

    #[test]
    fn version_is_overridden_and_prev_result_runtime_config_carried() {
        let config = r#"{"cniVersion":"1.0.0","name":"test-delegate","type":"mesos",
            "delegate":{},
            "prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.5/24"}]},
            "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}"#;
        let got = run_with(
            config,
            "1.0.0",
            &[],
            r#"{"type":"bridge","cniVersion":"0.2.0","runtimeConfig":{"bandwidth":{"ingressRate":1},"portMappings":[]},
                "prevResult":{"stale":true}}"#,
            false,
        )
        .unwrap();
        assert_eq!(got["cniVersion"], "1.0.0");
        assert_eq!(got["prevResult"]["ips"][0]["address"], "10.0.0.5/24");
        assert_eq!(got["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert_eq!(got["runtimeConfig"]["bandwidth"]["ingressRate"], 1);
        // Without Mesos' injection there is no org.apache.mesos to carry.
        assert!(got.get("args").is_none(), "{got}");
    }

    #[test]
    fn outer_config_must_be_json() {
        let e = run_with("{", "0.3.1", &[], r#"{"type":"bridge"}"#, false).unwrap_err();
        assert_eq!(e.code, 6);
        let e = run_with(
            r#"{"runtimeConfig":[]}"#,
            "0.3.1",
            &[],
            r#"{"type":"bridge"}"#,
            false,
        )
        .unwrap_err();
        assert_eq!(e.code, 7);
    }
}
