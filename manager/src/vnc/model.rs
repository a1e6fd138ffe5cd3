//! The slice of VNC object JSON the manager reads (`vnc-api.md` §4). Unknown fields are
//! skipped at decode time, which keeps a 10,000-object list small.

use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RefEntry {
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub uuid: String,
    #[serde(default)]
    pub attr: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct KeyValuePairs {
    #[serde(default)]
    pub key_value_pair: Vec<KeyValue>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MacAddresses {
    #[serde(default)]
    pub mac_address: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct VncObject {
    #[serde(default)]
    pub uuid: String,
    #[serde(default)]
    pub fq_name: Vec<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub annotations: Option<KeyValuePairs>,
    #[serde(default)]
    pub virtual_network_refs: Vec<RefEntry>,
    #[serde(default)]
    pub virtual_machine_refs: Vec<RefEntry>,
    #[serde(default)]
    pub virtual_machine_interface_refs: Vec<RefEntry>,
    #[serde(default)]
    pub network_ipam_refs: Vec<RefEntry>,
    #[serde(default)]
    pub virtual_machine_interface_back_refs: Vec<RefEntry>,
    #[serde(default)]
    pub virtual_router_back_refs: Vec<RefEntry>,
    #[serde(default)]
    pub instance_ip_back_refs: Vec<RefEntry>,
    #[serde(default)]
    pub floating_ip_back_refs: Vec<RefEntry>,
    #[serde(default)]
    pub instance_ip_address: Option<String>,
    #[serde(default)]
    pub floating_ip_address: Option<String>,
    #[serde(default)]
    pub virtual_machine_interface_mac_addresses: Option<MacAddresses>,
    #[serde(default)]
    pub virtual_router_ip_address: Option<String>,
}

impl VncObject {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .as_ref()?
            .key_value_pair
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| kv.value.as_str())
    }

    pub fn mac(&self) -> Option<&str> {
        self.virtual_machine_interface_mac_addresses
            .as_ref()?
            .mac_address
            .first()
            .map(String::as_str)
    }

    /// The CIDRs on the VN's IPAM refs (`attr.ipam_subnets[].subnet`).
    pub fn subnets(&self) -> Vec<ipnet::IpNet> {
        let mut out = Vec::new();
        for r in &self.network_ipam_refs {
            let Some(subs) = r
                .attr
                .as_ref()
                .and_then(|a| a.get("ipam_subnets"))
                .and_then(Value::as_array)
            else {
                continue;
            };
            for s in subs {
                let p = s["subnet"]["ip_prefix"].as_str().unwrap_or("");
                let l = s["subnet"]["ip_prefix_len"].as_u64().unwrap_or(0);
                if let Ok(n) = format!("{p}/{l}").parse::<ipnet::IpNet>() {
                    out.push(n.trunc());
                }
            }
        }
        out
    }
}

/// `{"<type>s": [{"<type>": {...}}]}` of a detail list.
#[derive(Debug, Deserialize)]
pub struct ListEnvelope(
    std::collections::HashMap<String, Vec<std::collections::HashMap<String, VncObject>>>,
);

impl ListEnvelope {
    pub fn into_objects(self) -> Vec<VncObject> {
        self.0
            .into_values()
            .flatten()
            .flat_map(|m| m.into_values())
            .collect()
    }
}

/// `annotations` as VNC's `KeyValuePairs`.
pub fn annotations(pairs: &[(&str, &str)]) -> Value {
    let kv: Vec<Value> = pairs
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    json!({ "key_value_pair": kv })
}
