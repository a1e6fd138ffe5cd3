//! The slice of VNC object JSON the manager reads (tf-api-client's schema, `all_cfg.xsd`). Unknown fields are
//! skipped at decode time, which keeps a 10,000-object list small.

use std::marker::PhantomData;

use serde::Deserialize;
use serde_json::Value;

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
    /// instance-ip: the subnet its address came from (a VIP's `vip_subnet_id`).
    #[serde(default)]
    pub subnet_uuid: Option<String>,
    #[serde(default)]
    pub virtual_machine_interface_mac_addresses: Option<MacAddresses>,
    #[serde(default)]
    pub virtual_router_ip_address: Option<String>,
    /// network-ipam: `flat-subnet` when the subnets live on the IPAM (`ipam_subnets`).
    #[serde(default)]
    pub ipam_subnet_method: Option<String>,
    /// network-ipam: `{"subnets": [IpamSubnetType]}`.
    #[serde(default)]
    pub ipam_subnets: Option<Value>,
    /// network-policy: `{"policy_rule": [PolicyRuleType]}`.
    #[serde(default)]
    pub network_policy_entries: Option<Value>,
    /// virtual-network: the policies applied to it.
    #[serde(default)]
    pub network_policy_refs: Vec<RefEntry>,
    /// network-policy: the networks it is applied to.
    #[serde(default)]
    pub virtual_network_back_refs: Vec<RefEntry>,
    /// project: its networks.
    #[serde(default)]
    pub virtual_networks: Vec<RefEntry>,
    /// virtual-network: its tasks reach the underlay with their node's address.
    #[serde(default)]
    pub fabric_snat: bool,
    /// network-ipam: how its networks get DNS (`IpamType`).
    #[serde(default)]
    pub network_ipam_mgmt: Option<Value>,
    /// virtual-DNS: its records (children).
    #[serde(default, rename = "virtual_DNS_records")]
    pub virtual_dns_records: Vec<RefEntry>,
    /// project: its security groups.
    #[serde(default)]
    pub security_groups: Vec<RefEntry>,
    /// Load-balancer objects (`crate::vip`): their `*_properties` and refs.
    #[serde(default)]
    pub loadbalancer_properties: Option<Value>,
    #[serde(default)]
    pub loadbalancer_listener_properties: Option<Value>,
    #[serde(default)]
    pub loadbalancer_pool_properties: Option<Value>,
    #[serde(default)]
    pub loadbalancer_member_properties: Option<Value>,
    #[serde(default)]
    pub loadbalancer_healthmonitor_properties: Option<Value>,
    #[serde(default)]
    pub loadbalancer_refs: Vec<RefEntry>,
    #[serde(default)]
    pub loadbalancer_listener_refs: Vec<RefEntry>,
    #[serde(default)]
    pub loadbalancer_healthmonitor_refs: Vec<RefEntry>,
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

    /// Seconds since the Unix time in annotation `key` (`created-at`, `written-at`); None when
    /// the object has no such annotation or it is not a number.
    pub fn annotation_age_secs(&self, key: &str) -> Option<u64> {
        let t = self.annotation(key)?.parse::<u64>().ok()?;
        Some(super::ids::now_secs().saturating_sub(t))
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
            if let Some(subs) = r
                .attr
                .as_ref()
                .and_then(|a| a.get("ipam_subnets"))
                .and_then(Value::as_array)
            {
                out.extend(cidrs(subs));
            }
        }
        out
    }

    /// The IPAM refs of a VN whose attr carries no prefix (`{"ipam_subnets": []}` or only
    /// `[{"subnet_uuid"}]`): on a flat-subnet IPAM the subnets live on the IPAM itself.
    pub fn ipam_refs_without_subnets(&self) -> impl Iterator<Item = &RefEntry> {
        self.network_ipam_refs.iter().filter(|r| {
            !r.attr
                .as_ref()
                .and_then(|a| a.get("ipam_subnets"))
                .and_then(Value::as_array)
                .is_some_and(|subs| subs.iter().any(|s| s.get("subnet").is_some()))
        })
    }

    /// A flat-subnet IPAM's CIDRs (`ipam_subnets.subnets[].subnet`); empty for another IPAM.
    pub fn flat_subnets(&self) -> Vec<ipnet::IpNet> {
        if self.ipam_subnet_method.as_deref() != Some("flat-subnet") {
            return Vec::new();
        }
        self.ipam_subnets
            .as_ref()
            .and_then(|s| s.get("subnets"))
            .and_then(Value::as_array)
            .map(|subs| cidrs(subs))
            .unwrap_or_default()
    }
}

/// The CIDRs of a list of `IpamSubnetType`.
fn cidrs(subs: &[Value]) -> Vec<ipnet::IpNet> {
    subs.iter()
        .filter_map(|s| {
            let p = s["subnet"]["ip_prefix"].as_str()?;
            let l = s["subnet"]["ip_prefix_len"].as_u64()?;
            format!("{p}/{l}").parse::<ipnet::IpNet>().ok()
        })
        .map(|n| n.trunc())
        .collect()
}

/// `annotations` as VNC's `KeyValuePairs`, for a body built as a `Value` (the one shape is
/// `bodies::Annotations`).
pub fn annotations(pairs: &[(&str, &str)]) -> Value {
    serde_json::to_value(super::bodies::Annotations(pairs)).expect("strings always serialise")
}

/// Streams a detail list `{"<type>s": [{"<type>": {...}}, ...], "marker": ...}`: each object
/// is decoded and handed to `f` on its own, so only what `f` keeps stays in memory (no
/// whole-list `Vec`, no per-element map). Yields the page's `marker` (None on the last page or
/// when the server did not page).
pub struct ListStream<'f>(pub &'f mut dyn FnMut(VncObject), pub Entries);

/// How a list's entries come: `{"<type>": {...}}` (a detail list) or the object itself (a
/// short list, with `fields=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entries {
    Wrapped,
    Short,
}

impl<'de> serde::de::DeserializeSeed<'de> for ListStream<'_> {
    type Value = Option<String>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ListStream<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a VNC detail list")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Option<String>, A::Error> {
        let mut marker = None;
        while let Some(k) = m.next_key::<String>()? {
            if k == "marker" {
                marker = m.next_value::<Option<String>>()?;
            } else {
                m.next_value_seed(Items(&mut *self.0, self.1))?;
            }
        }
        Ok(marker)
    }
}

struct Items<'f>(&'f mut dyn FnMut(VncObject), Entries);

impl<'de> serde::de::DeserializeSeed<'de> for Items<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Items<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of {\"<type>\": {...}}")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        match self.1 {
            Entries::Wrapped => {
                // `{"<type>": {...}}`, the object under whatever key.
                while let Some(o) =
                    s.next_element_seed(Enveloped::<VncObject>(None, PhantomData))?
                {
                    if let Some(o) = o {
                        (self.0)(o);
                    }
                }
            }
            Entries::Short => {
                while let Some(o) = s.next_element::<VncObject>()? {
                    (self.0)(o);
                }
            }
        }
        Ok(())
    }
}

/// Decodes `T` from `{"<ty>": {...}}`, the envelope of VNC's single-object answers (a GET,
/// a create's answer), straight from the text: no `Value` tree in between, which an attachment
/// paid for on every VNC answer. Other top-level keys are skipped. `Ok(None)`: no `<ty>` key.
pub fn decode_enveloped<T: serde::de::DeserializeOwned>(
    text: &str,
    ty: &str,
) -> Result<Option<T>, serde_json::Error> {
    use serde::de::DeserializeSeed as _;
    let mut de = serde_json::Deserializer::from_str(text);
    let out = Enveloped(Some(ty), PhantomData).deserialize(&mut de)?;
    de.end()?;
    Ok(out)
}

/// `{"<key>": T}`: the value under the named key (`None`: under whatever key; a detail
/// list's entries), other keys skipped. Where several match, the last counts, as in a map.
struct Enveloped<'a, T>(Option<&'a str>, PhantomData<T>);

impl<'de, T: Deserialize<'de>> serde::de::DeserializeSeed<'de> for Enveloped<'_, T> {
    type Value = Option<T>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Enveloped<'_, T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{{\"{}\": {{...}}}}", self.0.unwrap_or("<type>"))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Option<T>, A::Error> {
        use serde::de::IgnoredAny;
        let mut out = None;
        loop {
            // Under whatever key, the key is not even read into a string (a scan decodes
            // every entry of every list this way).
            let matched = match self.0 {
                None => m.next_key::<IgnoredAny>()?.map(|_| true),
                Some(want) => m.next_key::<String>()?.map(|k| k == want),
            };
            match matched {
                None => return Ok(out),
                Some(true) => out = Some(m.next_value::<T>()?),
                Some(false) => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
    }
}

/// What a create's answer is read for: `{"<ty>": {"uuid": ..., "href": ..., ...}}`.
#[derive(Debug, Deserialize)]
pub struct CreatedRef {
    #[serde(default)]
    pub uuid: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeSeed as _;

    #[test]
    fn an_enveloped_answer_decodes_without_a_value_tree() {
        let text = r#"{"instance-ip": {"uuid": "u1", "instance_ip_address": "10.1.1.3",
            "id_perms": {"enable": true, "created": "x"}, "other": [1, {"y": null}]}, "extra": 7}"#;
        let o: VncObject = decode_enveloped(text, "instance-ip").unwrap().unwrap();
        assert_eq!(
            (o.uuid.as_str(), o.instance_ip_address.as_deref()),
            ("u1", Some("10.1.1.3"))
        );
        // Another type's envelope, or none: no object.
        assert!(
            decode_enveloped::<VncObject>(text, "virtual-machine")
                .unwrap()
                .is_none()
        );
        assert!(decode_enveloped::<VncObject>("{}", "x").unwrap().is_none());
        // A create's answer: the uuid, or none when it is missing or null.
        let c: CreatedRef = decode_enveloped(
            r#"{"virtual-machine": {"name": "n", "fq_name": ["n"], "uuid": "u2", "href": "h"}}"#,
            "virtual-machine",
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.uuid.as_deref(), Some("u2"));
        let c: CreatedRef =
            decode_enveloped(r#"{"virtual-machine": {"uuid": null}}"#, "virtual-machine")
                .unwrap()
                .unwrap();
        assert_eq!(c.uuid, None);
        // Not JSON, trailing bytes, a wrong shape: errors.
        for bad in [
            "",
            "[]",
            r#"{"instance-ip": 3}"#,
            r#"{"instance-ip": {}} x"#,
        ] {
            assert!(
                decode_enveloped::<VncObject>(bad, "instance-ip").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_detail_list_streams_object_by_object() {
        let text = r#"{"virtual-machines": [{"virtual-machine": {"uuid": "a", "fq_name": ["x"], "other": [1, {"y": 2}]}},
            {"virtual-machine": {"uuid": "b", "display_name": "t"}}]}"#;
        let mut got = Vec::new();
        ListStream(
            &mut |o: VncObject| got.push((o.uuid, o.display_name)),
            Entries::Wrapped,
        )
        .deserialize(&mut serde_json::Deserializer::from_str(text))
        .unwrap();
        assert_eq!(
            got,
            vec![("a".into(), None), ("b".into(), Some("t".into()))]
        );
        let mut n = 0;
        let marker = ListStream(&mut |_| n += 1, Entries::Wrapped)
            .deserialize(&mut serde_json::Deserializer::from_str(
                r#"{"floating-ips": []}"#,
            ))
            .unwrap();
        assert_eq!((n, marker), (0, None));
        // A page: the marker comes next to the list, before or after it.
        for text in [
            r#"{"virtual-networks": [{"virtual-network": {"uuid": "a"}}], "marker": "d:p:n:a"}"#,
            r#"{"marker": "d:p:n:a", "virtual-networks": [{"virtual-network": {"uuid": "a"}}]}"#,
        ] {
            let mut n = 0;
            let marker = ListStream(&mut |_| n += 1, Entries::Wrapped)
                .deserialize(&mut serde_json::Deserializer::from_str(text))
                .unwrap();
            assert_eq!((n, marker.as_deref()), (1, Some("d:p:n:a")));
        }
        // A short list (`fields=`): the entries are the objects.
        let mut got = Vec::new();
        let marker = ListStream(
            &mut |o: VncObject| got.push((o.uuid, o.display_name)),
            Entries::Short,
        )
        .deserialize(&mut serde_json::Deserializer::from_str(
            r#"{"virtual-machines": [{"fq_name": ["x"], "uuid": "a", "display_name": "t"}], "marker": "x:a"}"#,
        ))
        .unwrap();
        assert_eq!(
            (got, marker.as_deref()),
            (vec![("a".into(), Some("t".into()))], Some("x:a"))
        );
        let last = ListStream(&mut |_| {}, Entries::Wrapped)
            .deserialize(&mut serde_json::Deserializer::from_str(
                r#"{"virtual-networks": [], "marker": null}"#,
            ))
            .unwrap();
        assert_eq!(last, None);
    }
}
