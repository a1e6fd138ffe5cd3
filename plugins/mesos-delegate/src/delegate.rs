//! `translate` of the `delegate-translator` world: decide what a Mesos network's delegate is
//! told about this container. The host builds the delegate's config from the operator's block
//! (`cniVersion`/`name` of the outer network, Mesos' `args`, `runtimeConfig`, `prevResult`) and
//! applies this decision; which binary runs is never ours to say.
//!
//! The decision:
//! * `args.cni.ips` = the block's own `args.cni.ips`, then the `IP=` addresses of the
//!   `CNI_ARGS` label (no duplicates; the same address with another prefix is an error);
//!   `runtimeConfig.ips` is deliberately not used: host-local reads both and would try to
//!   allocate the address twice;
//! * `args.cni.mac` = the label's `MAC=` (it is per task; the host also sets
//!   `runtimeConfig.mac` when the block declares `capabilities.mac`);
//! * `args.cni.labels` = the block's, then the network labels (CNI conventions).
//!
//! The command does not matter: DEL gets exactly the ADD decision, so host-local releases the
//! address the label asked for.

#[allow(unused_imports)]
use guest_support::prelude::*;

use guest_support::json::{Json, Object};

use crate::Label;
use crate::cni_args::{self, LABEL};
use crate::error::PluginError;
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
    /// reproduce ADD's config (host-local releases by the requested address); the original plugin
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

/// What this policy decides for the delegate (WIT `delegate-answer`); `None` leaves the
/// operator's block as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// `args.cni.ips`: the block's own, then the label's, no duplicates.
    pub ips: Option<Vec<String>>,
    /// `args.cni.mac` (the host also sets `runtimeConfig.mac` when the block declares it).
    pub mac: Option<String>,
    /// `args.cni.labels`: the block's, then every network label.
    pub labels: Option<Vec<Label>>,
}

/// Decides the delegate's addresses, MAC and labels from the `CNI_ARGS` label and the
/// operator's block (which the host applies them to).
pub fn translate_delegate(req: &DelegateRequest<'_>) -> Result<Decision, PluginError> {
    let delegate = Json::parse(req.delegate)
        .map_err(|e| PluginError::invalid(format!("delegate: not valid JSON: {e}")))?;
    let Json::Object(delegate) = delegate else {
        return Err(PluginError::invalid("delegate: must be a JSON object"));
    };
    let _ = (req.config, req.network_name, req.cni_version);

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

    let empty = Object::new();
    let cni = match delegate.get("args") {
        None => &empty,
        Some(Json::Object(args)) => match args.get("cni") {
            None => &empty,
            Some(Json::Object(m)) => m,
            Some(other) => {
                return Err(PluginError::invalid(format!(
                    "delegate: \"args.cni\" must be an object, got {other}"
                )));
            }
        },
        Some(other) => {
            return Err(PluginError::invalid(format!(
                "delegate: \"args\" must be an object, got {other}"
            )));
        }
    };
    let mut out = Decision::default();
    if !parsed.ips.is_empty() {
        let mut ips = existing_ips(cni)?;
        let configured = ips.len();
        for ip in &parsed.ips {
            cni_args::push_unique(&mut ips, *ip).map_err(|why| {
                PluginError::invalid(format!(
                    "label {LABEL}: IP {ip}: {why} (delegate args.cni.ips)"
                ))
            })?;
        }
        if ips.len() > configured || !cni.contains_key("ips") {
            out.ips = Some(ips.iter().map(|i| i.to_string()).collect());
        }
    }
    out.mac = parsed.mac.clone();
    if !req.labels.is_empty() {
        let mut list = match cni.get("labels") {
            None => Vec::new(),
            Some(Json::Array(list)) => list
                .iter()
                .map(|l| {
                    match (
                        l.get("key").and_then(Json::as_str),
                        l.get("value").and_then(Json::as_str),
                    ) {
                        (Some(k), Some(v)) => Ok(Label::new(k, v)),
                        _ => Err(PluginError::invalid(format!(
                            "delegate: \"args.cni.labels\": {l} is not {{\"key\", \"value\"}}"
                        ))),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => {
                return Err(PluginError::invalid(format!(
                    "delegate: \"args.cni.labels\" must be a list, got {other}"
                )));
            }
        };
        list.extend(req.labels.iter().cloned());
        out.labels = Some(list);
    }
    Ok(out)
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

    /// The classic Mesos delegate example network configuration, with `args` injected exactly as Mesos does for the
    /// example's Marathon app (`"labels": {"CNI_ARGS": "IP=192.168.122.176"}`).
    const EXAMPLE_CONFIG: &str = r#"{
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

    fn example_delegate_block() -> String {
        let v: Value = serde_json::from_str(EXAMPLE_CONFIG).unwrap();
        v["delegate"].to_string()
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs.iter().map(|(k, v)| Label::new(*k, *v)).collect()
    }

    /// Run the translation with the example's outer config and the given labels and block.
    fn run(labels: &[Label], delegate: &str, ignore_unknown: bool) -> Result<Value, PluginError> {
        run_with(EXAMPLE_CONFIG, "0.3.1", labels, delegate, ignore_unknown)
    }

    fn run_with(
        config: &str,
        version: &str,
        labels: &[Label],
        delegate: &str,
        ignore_unknown: bool,
    ) -> Result<Value, PluginError> {
        let d = translate_delegate(&DelegateRequest {
            command: Command::Add,
            network_name: "test-delegate",
            cni_version: version,
            config,
            labels,
            delegate,
            ignore_unknown,
        })?;
        Ok(as_json(&d))
    }

    /// The decision in the shape the host applies it: `{"args": {"cni": {...}}}`.
    fn as_json(d: &Decision) -> Value {
        let mut cni = serde_json::Map::new();
        if let Some(ips) = &d.ips {
            cni.insert("ips".into(), json!(ips));
        }
        if let Some(mac) = &d.mac {
            cni.insert("mac".into(), json!(mac));
        }
        if let Some(l) = &d.labels {
            let l: Vec<Value> = l
                .iter()
                .map(|l| json!({"key": l.key, "value": l.value}))
                .collect();
            cni.insert("labels".into(), Value::Array(l));
        }
        json!({"args": {"cni": cni}})
    }

    #[test]
    fn golden_classic_example() {
        let block = example_delegate_block();
        let l = labels(&[("CNI_ARGS", "IP=192.168.122.176")]);
        // The example config has no cniVersion, so the host passes "0.1.0".
        let got = run_with(EXAMPLE_CONFIG, "0.1.0", &l, &block, false).unwrap();
        // The host keeps the block's other `args.cni` keys (`test`) and adds Mesos' args.
        let want = json!({"args": {"cni": {
            "ips": ["192.168.122.176"],
            "labels": [{"key": "CNI_ARGS", "value": "IP=192.168.122.176"}]
        }}});
        assert_eq!(got, want);
    }

    #[test]
    fn del_translation_is_identical_to_add() {
        // A DEL replays the checkpointed config; whatever ADD asked the delegate for, DEL must
        // ask for too, for every command the host may run.
        let block = example_delegate_block();
        let l = labels(&[(
            "CNI_ARGS",
            "IP=192.168.122.176/24,fd00::6;MAC=02:00:00:00:00:07",
        )]);
        let req = |command| DelegateRequest {
            command,
            network_name: "test-delegate",
            cni_version: "0.3.1",
            config: EXAMPLE_CONFIG,
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
        let v = as_json(&add);
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
        assert_eq!(
            got["args"]["cni"]["labels"],
            json!([{"key":"app","value":"web"},
                   {"key":"CNI_ARGS","value":"IP=10.0.0.5/24,10.0.0.9/24;IP=2001:DB8::5/64;MAC=02:AA:bb:cc:dd:ee"}])
        );
    }

    #[test]
    fn the_label_mac_overrides_the_blocks() {
        let l = labels(&[("CNI_ARGS", "MAC=02:00:00:00:00:01")]);
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
    fn no_cni_args_label_decides_nothing() {
        let got = run_with(
            r#"{"name":"n","type":"mesos","cniVersion":"1.0.0"}"#,
            "1.0.0",
            &[],
            r#"{"type":"bridge","cniVersion":"0.3.1","bridge":"br0"}"#,
            false,
        )
        .unwrap();
        assert_eq!(got, json!({"args": {"cni": {}}}));
        // An empty label value is the same as no label (Marathon sends "" for an empty field).
        let l = labels(&[("CNI_ARGS", "")]);
        let got = run(&l, r#"{"type":"bridge"}"#, false).unwrap();
        assert!(got["args"]["cni"].get("ips").is_none(), "{got}");
    }

    #[test]
    fn bad_blocks_are_code_7() {
        // `name`, `type` and `runtimeConfig` of the block are the host's to check now.
        let cases = [
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
}
