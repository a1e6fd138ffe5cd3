//! The delegate translator's answer, applied to the operator's `delegate` block.
//!
//! The host builds the delegate's config; policy only fills in what it may decide
//! (`wit/delegate.wit`: `args.cni.ips`, `args.cni.mac` (+ `runtimeConfig.mac` when the block
//! declares the capability), `args.cni.labels`). Everything else is the operator's: which
//! binary runs (`type`), its sections, limits and logs. The rest is carried the way libcni and
//! Mesos do (CNI SPEC.md "Section 4: Plugin Delegation"):
//! * `cniVersion` and `name` of the outer network (a `name` in the block is refused: it would
//!   silently be replaced);
//! * `args."org.apache.mesos"` from the outer config (as Mesos' own port-mapper does);
//! * `runtimeConfig` of the block, then the outer's (outer keys win); `prevResult` of the outer.
//!
//! A 0.1.0 translator answers a whole config. It is diffed against what the host builds from
//! the block with the decisions found in it: any other difference (a `type`, a `wasm` or
//! `contrail` section, a log file, ...) is refused, naming the key.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value, json};

use crate::cni::config::WasmSettings;
use crate::cni::error::{CniError, INVALID_CONFIG, WASM_MALFORMED};
use crate::wasm::runtime::escape;
use crate::wasm::{DelegateReply, Named, delegate_wit};

/// At most this many `args.cni.labels`.
pub const MAX_LABELS: usize = 64;

/// What policy decided, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub ips: Option<Vec<String>>,
    pub mac: Option<String>,
    pub labels: Option<Vec<(String, String)>>,
}

fn bad(plugin: &str, field: &str, why: impl std::fmt::Display) -> CniError {
    CniError::new(
        WASM_MALFORMED,
        format!(
            "Wasm plugin {plugin} answered a bad {field}: {}",
            escape(&why.to_string(), 512)
        ),
    )
}

/// `aa:bb:cc:dd:ee:ff` (or `-`), unicast and not all-zero; normalised to lower case with `:`.
fn check_mac(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let octets: Option<Vec<u8>> = (parts.len() == 6)
        .then(|| {
            parts
                .iter()
                .map(|p| {
                    (p.len() == 2)
                        .then(|| u8::from_str_radix(p, 16).ok())
                        .flatten()
                })
                .collect()
        })
        .flatten();
    let o = octets.ok_or_else(|| format!("{s:?} is not a MAC address"))?;
    if o[0] & 1 == 1 {
        return Err(format!("{s:?} is a multicast MAC"));
    }
    if o.iter().all(|b| *b == 0) {
        return Err(format!("{s:?} is the all-zero MAC"));
    }
    Ok(o.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// An address with an optional prefix, usable on an interface.
fn check_ip(s: &str) -> Result<(), String> {
    let addr = match s.parse::<IpNet>() {
        Ok(n) => n.addr(),
        Err(_) => s
            .parse::<IpAddr>()
            .map_err(|_| format!("{s:?} is not an address or address/prefix"))?,
    };
    if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
        return Err(format!("{s:?} cannot be a container address"));
    }
    if addr == IpAddr::from([255, 255, 255, 255]) {
        return Err(format!("{s:?} is the broadcast address"));
    }
    Ok(())
}

/// Checks a 0.2.0 answer against the contract and the configured bounds.
pub fn check(
    plugin: &str,
    a: delegate_wit::DelegateAnswer,
    limits: &WasmSettings,
) -> Result<Decision, CniError> {
    let mut size = 0usize;
    let ips = match a.ips {
        None => None,
        Some(ips) => {
            if ips.len() as u64 > limits.max_ips {
                return Err(bad(
                    plugin,
                    "ips",
                    format!(
                        "{} addresses (at most {}, wasm.max-ips)",
                        ips.len(),
                        limits.max_ips
                    ),
                ));
            }
            for ip in &ips {
                size += ip.len();
                check_ip(ip).map_err(|w| bad(plugin, "ips", w))?;
            }
            Some(ips)
        }
    };
    let mac = a
        .mac
        .map(|m| check_mac(&m).map_err(|w| bad(plugin, "mac", w)))
        .transpose()?;
    let labels = match a.labels {
        None => None,
        Some(l) => {
            if l.len() > MAX_LABELS {
                return Err(bad(
                    plugin,
                    "labels",
                    format!("{} labels (at most {MAX_LABELS})", l.len()),
                ));
            }
            size += l.iter().map(|l| l.key.len() + l.value.len()).sum::<usize>();
            Some(l.into_iter().map(|l| (l.key, l.value)).collect())
        }
    };
    if size as u64 > limits.max_answer_bytes {
        return Err(bad(
            plugin,
            "answer",
            format!(
                "{size} bytes (at most {}, wasm.max-answer-bytes)",
                limits.max_answer_bytes
            ),
        ));
    }
    Ok(Decision { ips, mac, labels })
}

fn object<'a>(
    m: &'a mut Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<&'a mut Map<String, Value>, CniError> {
    let v = m.entry(key).or_insert_with(|| Value::Object(Map::new()));
    v.as_object_mut()
        .ok_or_else(|| CniError::new(INVALID_CONFIG, format!("{what} must be an object")))
}

/// The delegate's config: the operator's block, the outer network's identity and Mesos'
/// args, and the decision.
pub fn apply(
    outer: &Map<String, Value>,
    block: &Map<String, Value>,
    d: &Decision,
) -> Result<Map<String, Value>, CniError> {
    if let Some(name) = block.get("name") {
        return Err(CniError::new(
            INVALID_CONFIG,
            format!(
                "delegate: must not have a \"name\" (found {name}); it gets the network's name"
            ),
        ));
    }
    let mut out = Map::new();
    out.insert(
        "cniVersion".into(),
        outer
            .get("cniVersion")
            .cloned()
            .unwrap_or_else(|| json!(crate::cni::version::DEFAULT_VERSION)),
    );
    if let Some(name) = outer.get("name") {
        out.insert("name".into(), name.clone());
    }
    for (k, v) in block {
        if k != "cniVersion" && k != "args" && k != "runtimeConfig" {
            out.insert(k.clone(), v.clone());
        }
    }
    let mut args = match block.get("args") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(v) => {
            return Err(CniError::new(
                INVALID_CONFIG,
                format!("delegate: \"args\" must be an object, got {v}"),
            ));
        }
    };
    if let Some(mesos) = outer.get("args").and_then(|a| a.get("org.apache.mesos")) {
        args.insert("org.apache.mesos".into(), mesos.clone());
    }
    if d.ips.is_some() || d.mac.is_some() || d.labels.is_some() {
        let cni = object(&mut args, "cni", "delegate: \"args.cni\"")?;
        if let Some(ips) = &d.ips {
            cni.insert("ips".into(), json!(ips));
        }
        if let Some(mac) = &d.mac {
            cni.insert("mac".into(), json!(mac));
        }
        if let Some(labels) = &d.labels {
            let list: Vec<Value> = labels
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            cni.insert("labels".into(), Value::Array(list));
        }
    }
    let mut runtime = match block.get("runtimeConfig") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(v) => {
            return Err(CniError::new(
                INVALID_CONFIG,
                format!("delegate: \"runtimeConfig\" must be an object, got {v}"),
            ));
        }
    };
    match outer.get("runtimeConfig") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => runtime.extend(m.clone()),
        Some(v) => {
            return Err(CniError::new(
                INVALID_CONFIG,
                format!("network config: \"runtimeConfig\" must be an object, got {v}"),
            ));
        }
    }
    let declares_mac = block
        .get("capabilities")
        .and_then(|c| c.get("mac"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let (Some(mac), true) = (&d.mac, declares_mac) {
        runtime.insert("mac".into(), json!(mac));
    }
    if !args.is_empty() {
        out.insert("args".into(), Value::Object(args));
    }
    if !runtime.is_empty() {
        out.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    if let Some(prev) = outer.get("prevResult").filter(|v| !v.is_null()) {
        out.insert("prevResult".into(), prev.clone());
    }
    Ok(out)
}

/// The first path where `got` differs from `want`, e.g. `type` or `args.cni.foo`.
fn first_difference(want: &Value, got: &Value, path: &str) -> Option<String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            let join = |k: &str| {
                if path.is_empty() {
                    k.to_owned()
                } else {
                    format!("{path}.{k}")
                }
            };
            for (k, gv) in g {
                match w.get(k) {
                    None => return Some(join(k)),
                    Some(wv) => {
                        if let Some(p) = first_difference(wv, gv, &join(k)) {
                            return Some(p);
                        }
                    }
                }
            }
            w.keys().find(|k| !g.contains_key(*k)).map(|k| join(k))
        }
        _ if want == got => None,
        _ => Some(if path.is_empty() {
            "(whole config)".into()
        } else {
            path.into()
        }),
    }
}

/// What a 0.1.0 config answer decided: `args.cni.{ips,mac,labels}`; shapes checked.
fn decisions_in(
    plugin: &str,
    conf: &Map<String, Value>,
) -> Result<delegate_wit::DelegateAnswer, CniError> {
    let cni = conf.get("args").and_then(|a| a.get("cni"));
    let field = |k: &str| cni.and_then(|c| c.get(k));
    let ips = field("ips")
        .map(|v| {
            v.as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|i| i.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| bad(plugin, "args.cni.ips", "not a list of strings"))
        })
        .transpose()?;
    let mac = field("mac")
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(plugin, "args.cni.mac", "not a string"))
        })
        .transpose()?;
    let labels = field("labels")
        .map(|v| {
            v.as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|l| {
                            Some(crate::wasm::bindings::v2::Label {
                                key: l.get("key")?.as_str()?.to_owned(),
                                value: l.get("value")?.as_str()?.to_owned(),
                            })
                        })
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| bad(plugin, "args.cni.labels", "not a list of {key, value}"))
        })
        .transpose()?;
    Ok(delegate_wit::DelegateAnswer { ips, mac, labels })
}

/// The delegate config for a translator's reply, every check applied.
pub fn delegate_config(
    outer: &Map<String, Value>,
    block: &Map<String, Value>,
    reply: Named<DelegateReply>,
    limits: &WasmSettings,
) -> Result<Map<String, Value>, CniError> {
    let plugin = reply.plugin;
    match reply.answer {
        DelegateReply::Answer(a) => {
            let d = check(&plugin, a, limits)?;
            apply(outer, block, &d)
        }
        DelegateReply::Config(text) => {
            if text.len() as u64 > limits.max_answer_bytes {
                return Err(bad(
                    &plugin,
                    "delegate config",
                    format!(
                        "{} bytes (at most {}, wasm.max-answer-bytes)",
                        text.len(),
                        limits.max_answer_bytes
                    ),
                ));
            }
            let Ok(Value::Object(conf)) = serde_json::from_str::<Value>(&text) else {
                return Err(bad(&plugin, "delegate config", "not a JSON object"));
            };
            let d = check(&plugin, decisions_in(&plugin, &conf)?, limits)?;
            let want = apply(outer, block, &d)?;
            // The 0.1.0 stock plugin wrote the MAC as given; compare against that spelling.
            let mut want_v = Value::Object(want.clone());
            if let (Some(m), Some(orig)) = (
                &d.mac,
                conf.get("args")
                    .and_then(|a| a.get("cni"))
                    .and_then(|c| c.get("mac")),
            ) {
                for p in ["/args/cni/mac", "/runtimeConfig/mac"] {
                    if let Some(v) = want_v.pointer_mut(p)
                        && v == &json!(m)
                    {
                        *v = orig.clone();
                    }
                }
            }
            // The plugin saw the block without credentials (wasm::redact); what it could not
            // see it could not echo, so compare without them and keep the host's build.
            crate::wasm::redact::strip(&mut want_v);
            if let Some(path) = first_difference(&want_v, &Value::Object(conf), "") {
                return Err(CniError::new(
                    WASM_MALFORMED,
                    format!(
                        "Wasm plugin {plugin} (contrail:cni-plugin@0.1.0) tried to set {}, which is the operator's, not policy's; only args.cni.ips, args.cni.mac and args.cni.labels may come from a translator",
                        escape(&path, 256)
                    ),
                ));
            }
            Ok(want)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn outer() -> Map<String, Value> {
        obj(
            json!({"cniVersion": "0.2.0", "name": "net1", "type": "mesos",
            "delegate": {"type": "bridge"},
            "args": {"org.apache.mesos": {"network_info": {"name": "net1"}}}}),
        )
    }

    fn v1(conf: Value) -> Named<DelegateReply> {
        Named {
            plugin: "old.wasm".into(),
            answer: DelegateReply::Config(conf.to_string()),
        }
    }

    #[test]
    fn a_typed_answer_is_applied_to_the_operators_block() {
        let block = obj(
            json!({"type": "bridge", "bridge": "mesos0", "args": {"cni": {"ips": ["10.0.0.1"]}}}),
        );
        let a = delegate_wit::DelegateAnswer {
            ips: Some(vec!["10.0.0.5".into()]),
            mac: Some("0A-00-00-00-00-01".into()),
            labels: None,
        };
        let reply = Named {
            plugin: "p.wasm".into(),
            answer: DelegateReply::Answer(a),
        };
        let c = delegate_config(&outer(), &block, reply, &WasmSettings::default()).unwrap();
        assert_eq!(c["type"], "bridge");
        assert_eq!(c["name"], "net1");
        assert_eq!(c["args"]["cni"]["ips"], json!(["10.0.0.5"]));
        assert_eq!(c["args"]["cni"]["mac"], "0a:00:00:00:00:01");
        assert_eq!(
            c["args"]["org.apache.mesos"]["network_info"]["name"],
            "net1"
        );
    }

    #[test]
    fn bad_typed_answers_name_the_plugin_and_field() {
        let block = obj(json!({"type": "bridge"}));
        let limits = WasmSettings::default();
        for (a, field) in [
            (
                delegate_wit::DelegateAnswer {
                    ips: Some(vec!["10.0.0.1".into(); 17]),
                    mac: None,
                    labels: None,
                },
                "ips",
            ),
            (
                delegate_wit::DelegateAnswer {
                    ips: Some(vec!["nope".into()]),
                    mac: None,
                    labels: None,
                },
                "ips",
            ),
            (
                delegate_wit::DelegateAnswer {
                    ips: Some(vec!["0.0.0.0".into()]),
                    mac: None,
                    labels: None,
                },
                "ips",
            ),
            (
                delegate_wit::DelegateAnswer {
                    ips: None,
                    mac: Some("01:00:5e:00:00:01".into()),
                    labels: None,
                },
                "mac",
            ),
            (
                delegate_wit::DelegateAnswer {
                    ips: None,
                    mac: None,
                    labels: Some(vec![crate::wasm::bindings::v2::Label {
                        key: "k".into(),
                        value: "v".repeat(70_000),
                    }]),
                },
                "answer",
            ),
        ] {
            let reply = Named {
                plugin: "p.wasm".into(),
                answer: DelegateReply::Answer(a),
            };
            let e = delegate_config(&outer(), &block, reply, &limits).unwrap_err();
            assert_eq!(e.code, WASM_MALFORMED);
            assert!(e.msg.contains("p.wasm") && e.msg.contains(field), "{e:?}");
        }
    }

    #[test]
    fn a_v010_answer_may_only_change_what_policy_decides() {
        let block = obj(json!({"type": "bridge", "ipam": {"type": "host-local"}}));
        let good = json!({"cniVersion": "0.2.0", "name": "net1", "type": "bridge", "ipam": {"type": "host-local"},
            "args": {"org.apache.mesos": {"network_info": {"name": "net1"}}, "cni": {"ips": ["10.0.0.5"]}}});
        let c =
            delegate_config(&outer(), &block, v1(good.clone()), &WasmSettings::default()).unwrap();
        assert_eq!(Value::Object(c), good);
        for (change, key) in [
            (json!({"type": "host-device", "device": "eth0"}), "type"),
            (json!({"type": "contrail-cni-plugin"}), "type"),
            (json!({"wasm": {"memory-limit-mb": 4096}}), "wasm"),
            (
                json!({"log-file": "/root/.ssh/authorized_keys"}),
                "log-file",
            ),
            (json!({"contrail": {"vrouter-ip": "10.9.9.9"}}), "contrail"),
            (json!({"ipam": {"type": "dhcp"}}), "ipam.type"),
        ] {
            let mut bad_conf = good.clone();
            for (k, v) in change.as_object().unwrap() {
                bad_conf[k] = v.clone();
            }
            let e = delegate_config(&outer(), &block, v1(bad_conf), &WasmSettings::default())
                .unwrap_err();
            assert_eq!(e.code, WASM_MALFORMED, "{e:?}");
            assert!(
                e.msg.contains(&format!("tried to set {key}")) && e.msg.contains("old.wasm"),
                "{e:?}"
            );
        }
    }

    #[test]
    fn a_v010_answer_without_the_blocks_secrets_keeps_them() {
        let block = obj(json!({"type": "bridge", "ipam": {"type": "x", "token-file": "/etc/t"}}));
        let seen = json!({"cniVersion": "0.2.0", "name": "net1", "type": "bridge", "ipam": {"type": "x"},
            "args": {"org.apache.mesos": {"network_info": {"name": "net1"}}, "cni": {"ips": ["10.0.0.5"]}}});
        let c = delegate_config(&outer(), &block, v1(seen), &WasmSettings::default()).unwrap();
        assert_eq!(c["ipam"]["token-file"], "/etc/t");
        assert_eq!(c["args"]["cni"]["ips"], json!(["10.0.0.5"]));
    }

    #[test]
    fn a_name_in_the_block_is_refused() {
        let block = obj(json!({"type": "bridge", "name": "x"}));
        let e = apply(&outer(), &block, &Decision::default()).unwrap_err();
        assert_eq!(e.code, INVALID_CONFIG);
    }
}
