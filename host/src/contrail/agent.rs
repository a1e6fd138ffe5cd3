//! The vRouter agent's port-IPC API (tf-controller `src/vnsw/agent/port_ipc/`, the REST server
//! the Contrail CNI `src/container/cni/contrail/vrouter.go` talks to): the wire types, the
//! client trait the Contrail logic uses, and its HTTP implementation (ureq, one timeout per
//! request, no proxy from the environment: the agent is node-local).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One element of `GET /vm-cfg/<key>`: a VMI of the VM as configured (not yet operational).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VmiCfg {
    /// VMI uuid (`id`).
    pub id: String,
    /// `vm-uuid` (R5.1+) or `instance-id` (R4.1 single-object answer).
    pub vm_uuid: Option<String>,
    pub vn_id: Option<String>,
    pub vn_name: Option<String>,
    pub mac: Option<String>,
    pub vlan_id: Option<u32>,
    /// `"{k:v}"` strings parsed into a map.
    pub annotations: BTreeMap<String, String>,
}

impl VmiCfg {
    /// The `index` annotation `i/N`, as (i, N).
    pub fn index(&self) -> Option<(u32, u32)> {
        let (i, n) = self.annotations.get("index")?.split_once('/')?;
        Some((i.trim().parse().ok()?, n.trim().parse().ok()?))
    }
}

/// One element of `GET /vm/<vm-uuid>/<vmi-uuid>`: the port's IP configuration, with the agent's
/// own key names. The IPAM plugin receives the same fields (`wit/ipam.wit` `vrouter-port`); the
/// conversion into that record happens where the plugin is called. Strings that the agent writes
/// empty count as absent, numbers written as strings are read (older agents did both).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct VrouterPort {
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub ip_address: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    pub plen: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub gateway: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub dns_server: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub mac_address: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub v6_ip_address: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    pub v6_plen: Option<u32>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub v6_gateway: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub v6_dns_server: Option<String>,
}

impl VrouterPort {
    /// True when the answer carries an IPv4 or IPv6 address (empty strings and the
    /// unspecified addresses count as absent, as the IPAM plugin treats them).
    pub fn has_address(&self) -> bool {
        let set = |a: &Option<String>| {
            a.as_deref()
                .is_some_and(|s| !s.is_empty() && s != "0.0.0.0" && s != "::")
        };
        set(&self.ip_address) || set(&self.v6_ip_address)
    }
}

/// Field readers that accept what agents of several releases write: a string or a number for a
/// string, a number or a numeric string for a number; anything else (or `""`) is absent.
mod lenient {
    use super::*;

    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) if !s.is_empty() => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        opt_string(d).map(Option::unwrap_or_default)
    }

    pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Value::String(s) => s.parse().ok(),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// No answer: refused, reset, timed out. The agent may be (re)starting.
    #[error("no answer from the vRouter agent ({0})")]
    Unreachable(String),
    /// An answer other than 200/404.
    #[error("the vRouter agent answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the vRouter agent answered something unusable: {0}")]
    Malformed(String),
    /// The TLS handshake failed (the agent's certificate does not verify against
    /// `contrail.vrouter-ca-file`): a configuration problem, never polled again.
    #[error("vRouter agent {0}")]
    Tls(String),
}

/// The calls the Contrail path makes. `Ok(None)` is the agent's 404 ("not yet").
pub trait Agent {
    fn vm_cfg(&self, key: &str, timeout: Duration) -> Result<Option<Vec<VmiCfg>>, AgentError>;
    fn add_port(&self, body: &[u8], timeout: Duration) -> Result<(), AgentError>;
    fn get_port(
        &self,
        vm_uuid: &str,
        vmi_uuid: &str,
        timeout: Duration,
    ) -> Result<Option<VrouterPort>, AgentError>;
    fn delete_vm(&self, vm_uuid: &str, body: &[u8], timeout: Duration) -> Result<(), AgentError>;
    /// Any HTTP answer proves the agent serves requests (STATUS).
    fn ping(&self, timeout: Duration) -> Result<(), AgentError>;
    /// `host:port`, for messages.
    fn endpoint(&self) -> String;
}

/// Parses one annotation string. The agent sends `"{" + key + ":" + value + "}"`; the key never
/// contains ':' but values may (fq-names), so split at the first ':' only (Contrail's CNI split on
/// every ':' and dropped the rest: tf-controller `src/container/cni/contrail/vrouter.go`).
pub fn parse_annotation(s: &str) -> Option<(String, String)> {
    let s = s.trim();
    let inner = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    let (k, v) = inner.split_once(':')?;
    let k = k.trim();
    (!k.is_empty()).then(|| (k.to_owned(), v.trim().to_owned()))
}

fn str_field(o: &Value, k: &str) -> Option<String> {
    match o.get(k)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn u32_field(o: &Value, k: &str) -> Option<u32> {
    match o.get(k)? {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn elements(v: Value) -> Result<Vec<Value>, AgentError> {
    match v {
        Value::Array(a) => Ok(a),
        // R4.1 and older answered a single object.
        o @ Value::Object(_) => Ok(vec![o]),
        other => Err(AgentError::Malformed(format!(
            "expected an array or object, got {other}"
        ))),
    }
}

pub fn parse_vm_cfg(body: &str) -> Result<Vec<VmiCfg>, AgentError> {
    let v: Value = serde_json::from_str(body).map_err(|e| AgentError::Malformed(e.to_string()))?;
    elements(v)?
        .into_iter()
        .map(|o| {
            let id = str_field(&o, "id")
                .ok_or_else(|| AgentError::Malformed(format!("vm-cfg element without id: {o}")))?;
            let annotations = match o.get("annotations") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|s| s.as_str().and_then(parse_annotation))
                    .collect(),
                _ => BTreeMap::new(),
            };
            Ok(VmiCfg {
                id,
                vm_uuid: str_field(&o, "vm-uuid").or_else(|| str_field(&o, "instance-id")),
                vn_id: str_field(&o, "vn-id"),
                vn_name: str_field(&o, "vn-name"),
                mac: str_field(&o, "mac-address"),
                vlan_id: u32_field(&o, "vlan-id"),
                annotations,
            })
        })
        .collect()
}

pub fn parse_vm_ports(body: &str) -> Result<Vec<VrouterPort>, AgentError> {
    let v: Value = serde_json::from_str(body).map_err(|e| AgentError::Malformed(e.to_string()))?;
    elements(v)?
        .into_iter()
        .map(|o| {
            if !o.is_object() {
                return Err(AgentError::Malformed(format!(
                    "port element is not an object: {o}"
                )));
            }
            VrouterPort::deserialize(o).map_err(|e| AgentError::Malformed(e.to_string()))
        })
        .collect()
}

/// The HTTP client.
pub struct HttpAgent {
    base: String,
    http: ureq::Agent,
}

impl HttpAgent {
    /// `base` is `http://host:port/` or `https://host:port/`; `tls` applies to the latter.
    pub fn new(base: &str, tls: ureq::tls::TlsConfig) -> HttpAgent {
        HttpAgent {
            base: base.trim_end_matches('/').to_owned(),
            // The agent is on this node: a proxy from the environment would be wrong.
            http: super::http_client(Duration::from_secs(30), tls),
        }
    }

    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<(u16, String), AgentError> {
        let started = std::time::Instant::now();
        let url = format!("{}{}", self.base, path);
        let t = Some(timeout.max(Duration::from_millis(10)));
        let res = match method {
            "GET" => self
                .http
                .get(&url)
                .config()
                .timeout_global(t)
                .build()
                .call(),
            "POST" => self
                .http
                .post(&url)
                .config()
                .timeout_global(t)
                .build()
                .content_type("application/json")
                .send(body.unwrap_or_default()),
            "DELETE" => match body {
                // The Go CNI sends a body with DELETE; the agent ignores it (it drops every
                // subscription of the VM named in the path).
                Some(b) => self
                    .http
                    .delete(&url)
                    .config()
                    .timeout_global(t)
                    .allow_non_standard_methods(true)
                    .build()
                    .force_send_body()
                    .content_type("application/json")
                    .send(b),
                None => self
                    .http
                    .delete(&url)
                    .config()
                    .timeout_global(t)
                    .build()
                    .call(),
            },
            _ => unreachable!("only GET/POST/DELETE"),
        };
        let mut resp = res.map_err(|e| match contrail_mesos_api::tls::failure(&e) {
            Some(reason) => AgentError::Tls(contrail_mesos_api::tls::describe(&url, &reason)),
            None => AgentError::Unreachable(format!("{method} {path}: {e}")),
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(4 << 20)
            .read_to_string()
            .map_err(|e| AgentError::Unreachable(format!("{method} {path}: reading body: {e}")))?;
        tracing::debug!(
            method,
            path,
            status,
            us = started.elapsed().as_micros() as u64,
            "agent"
        );
        Ok((status, text))
    }
}

impl Agent for HttpAgent {
    fn vm_cfg(&self, key: &str, timeout: Duration) -> Result<Option<Vec<VmiCfg>>, AgentError> {
        let path = format!("/vm-cfg/{key}");
        match self.exchange("GET", &path, None, timeout)? {
            (200, body) => parse_vm_cfg(&body).map(Some),
            (404, _) => Ok(None),
            (status, body) => Err(AgentError::Status { status, body }),
        }
    }

    fn add_port(&self, body: &[u8], timeout: Duration) -> Result<(), AgentError> {
        match self.exchange("POST", "/vm", Some(body), timeout)? {
            (200 | 201, _) => Ok(()),
            (status, body) => Err(AgentError::Status { status, body }),
        }
    }

    fn get_port(
        &self,
        vm_uuid: &str,
        vmi_uuid: &str,
        timeout: Duration,
    ) -> Result<Option<VrouterPort>, AgentError> {
        let path = format!("/vm/{vm_uuid}/{vmi_uuid}");
        match self.exchange("GET", &path, None, timeout)? {
            (200, body) => {
                let ports = parse_vm_ports(&body)?;
                // With the vmi suffix the array has one element; match by id anyway.
                Ok(ports
                    .iter()
                    .find(|p| p.id == vmi_uuid)
                    .or(ports.first())
                    .cloned())
            }
            (404, _) => Ok(None),
            (status, body) => Err(AgentError::Status { status, body }),
        }
    }

    fn delete_vm(&self, vm_uuid: &str, body: &[u8], timeout: Duration) -> Result<(), AgentError> {
        match self.exchange("DELETE", &format!("/vm/{vm_uuid}"), Some(body), timeout)? {
            // 404 cannot happen for a valid uuid; treat it as "already gone" anyway.
            (200 | 404, _) => Ok(()),
            (status, body) => Err(AgentError::Status { status, body }),
        }
    }

    fn ping(&self, timeout: Duration) -> Result<(), AgentError> {
        // Unknown routes answer 404 "Unknown Request": any answer means the server runs.
        self.exchange("GET", "/", None, timeout).map(|_| ())
    }

    fn endpoint(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_keep_colons_in_values() {
        assert_eq!(
            parse_annotation("{index:0/2}"),
            Some(("index".into(), "0/2".into()))
        );
        assert_eq!(
            parse_annotation("{network:default-domain:p:blue}"),
            Some(("network".into(), "default-domain:p:blue".into()))
        );
        assert_eq!(parse_annotation("{novalue}"), None);
        assert_eq!(parse_annotation("{:x}"), None);
        assert_eq!(parse_annotation("{k:}"), Some(("k".into(), "".into())));
    }

    #[test]
    fn vm_cfg_array_and_legacy_object() {
        let a = parse_vm_cfg(
            r#"[{"id":"i1","vm-uuid":"v","vn-id":"n","vn-name":"d:p:n","mac-address":"02:00:00:00:00:01",
                "sub-interface":false,"vlan-id":65535,"annotations":["{index:1/2}","{interface:eth1}"]}]"#,
        )
        .unwrap();
        assert_eq!(a[0].index(), Some((1, 2)));
        assert_eq!(a[0].annotations["interface"], "eth1");
        assert_eq!(a[0].vlan_id, Some(65535));
        let l =
            parse_vm_cfg(r#"{"id":"i1","instance-id":"v","vn-id":"n","mac-address":"m"}"#).unwrap();
        assert_eq!(l[0].vm_uuid.as_deref(), Some("v"));
        assert_eq!(l[0].index(), None);
        assert!(parse_vm_cfg("[1]").is_err());
        assert!(parse_vm_cfg("\"x\"").is_err());
    }

    #[test]
    fn vm_port_fields() {
        let p = parse_vm_ports(
            r#"[{"id":"i","ip-address":"10.47.255.250","plen":12,"gateway":"10.47.255.254",
                "dns-server":"10.47.255.253","mac-address":"02:aa:00:00:00:01"}]"#,
        )
        .unwrap();
        assert_eq!(p[0].plen, Some(12));
        assert_eq!(p[0].v6_ip_address, None);
        assert!(p[0].has_address());
        let p = parse_vm_ports(r#"{"id":"i","ip-address":"","plen":"24","v6-ip-address":"::"}"#)
            .unwrap();
        assert_eq!((p[0].ip_address.as_deref(), p[0].plen), (None, Some(24)));
        assert!(!p[0].has_address());
        assert!(parse_vm_ports("[1]").is_err());
    }
}
