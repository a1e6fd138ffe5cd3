//! The request bodies of a registration (virtual-machine, virtual-machine-interface,
//! instance-ip), serialised straight from borrowed fields.
//!
//! Every attachment writes three of them. Built as `serde_json::Value` trees they cost a
//! map, a key `String` and a value `String` per field, then a walk to serialise and a walk to
//! free: about a tenth of the manager's CPU per attachment. The text is the same, key for key
//! and byte for byte, as the `json!` trees it replaces (the tests below hold the two side by
//! side); the objects and fields are those of the VNC schema (tf-api-client's
//! `vnc_api/gen/resource_common.py`).

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

/// `{"key_value_pair": [{"key": k, "value": v}, ...]}`, a `KeyValuePairs` annotation.
pub(crate) struct Annotations<'a>(pub &'a [(&'a str, &'a str)]);

impl Serialize for Annotations<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Pairs<'a>(&'a [(&'a str, &'a str)]);
        impl Serialize for Pairs<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for (key, value) in self.0 {
                    seq.serialize_element(&Pair { key, value })?;
                }
                seq.end()
            }
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("key_value_pair", &Pairs(self.0))?;
        m.end()
    }
}

#[derive(Serialize)]
struct Pair<'a> {
    key: &'a str,
    value: &'a str,
}

/// A ref without an attribute: `{"to": <fq_name>, "uuid": <uuid>}`.
#[derive(Serialize)]
pub(crate) struct Ref<'a> {
    pub to: &'a [String],
    pub uuid: &'a str,
}

/// A ref to the container's VM, whose fq_name is its one name, the container id.
#[derive(Serialize)]
pub(crate) struct VmRef<'a> {
    pub to: [&'a str; 1],
    pub uuid: &'a str,
}

#[derive(Serialize)]
pub(crate) struct VirtualMachine<'a> {
    pub uuid: &'a str,
    pub fq_name: [&'a str; 1],
    pub display_name: &'a str,
    pub server_type: &'a str,
    pub annotations: Annotations<'a>,
}

#[derive(Serialize)]
pub(crate) struct MacAddresses<'a> {
    pub mac_address: [&'a str; 1],
}

#[derive(Serialize)]
pub(crate) struct VirtualMachineInterface<'a> {
    pub uuid: &'a str,
    pub fq_name: &'a [String],
    pub parent_type: &'a str,
    pub display_name: &'a str,
    pub virtual_network_refs: [Ref<'a>; 1],
    pub virtual_machine_refs: [VmRef<'a>; 1],
    pub security_group_refs: &'a [Ref<'a>],
    pub virtual_machine_interface_mac_addresses: MacAddresses<'a>,
    pub annotations: Annotations<'a>,
}

#[derive(Serialize)]
pub(crate) struct InstanceIp<'a> {
    pub fq_name: [&'a str; 1],
    pub virtual_network_refs: [Ref<'a>; 1],
    pub virtual_machine_interface_refs: [Ref<'a>; 1],
    pub annotations: Annotations<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_ip_family: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_ip_address: Option<String>,
}

/// The body as JSON text, for `VncApi::create_text`.
pub(crate) fn text<T: Serialize>(body: &T) -> String {
    serde_json::to_string(body).expect("a body of strings always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vnc::model::annotations;
    use serde_json::json;

    fn same(typed: String, tree: serde_json::Value) {
        assert_eq!(typed, serde_json::to_string(&tree).unwrap());
    }

    const PAIRS: &[(&str, &str)] = &[
        ("owner", "contrail-mesos-manager"),
        ("container-id", "c\"1\\é"),
        ("created-at", "1764600000"),
    ];

    #[test]
    fn annotations_are_written_as_the_value_tree_was() {
        let tree = |pairs: &[(&str, &str)]| {
            let kv: Vec<serde_json::Value> = pairs
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            json!({ "key_value_pair": kv })
        };
        same(text(&Annotations(PAIRS)), tree(PAIRS));
        same(text(&Annotations(&[])), tree(&[]));
        // The `Value` form, for the bodies still built as trees, is the same shape.
        assert_eq!(annotations(PAIRS), tree(PAIRS));
    }

    #[test]
    fn a_virtual_machine_is_written_as_the_value_tree_was() {
        let vm = VirtualMachine {
            uuid: "u-vm",
            fq_name: ["cid"],
            display_name: "app.task-1",
            server_type: "container",
            annotations: Annotations(PAIRS),
        };
        same(
            text(&vm),
            json!({"uuid": "u-vm", "fq_name": ["cid"], "display_name": "app.task-1", "server_type": "container",
                "annotations": annotations(PAIRS)}),
        );
    }

    #[test]
    fn an_interface_is_written_as_the_value_tree_was() {
        let fq = vec![
            "default-domain".to_owned(),
            "p".to_owned(),
            "port".to_owned(),
        ];
        let vn = vec!["default-domain".to_owned(), "p".to_owned(), "n".to_owned()];
        let sg1 = vec![
            "default-domain".to_owned(),
            "p".to_owned(),
            "web".to_owned(),
        ];
        for sgs in [
            vec![],
            vec![Ref {
                to: &sg1,
                uuid: "u-sg",
            }],
        ] {
            let vmi = VirtualMachineInterface {
                uuid: "u-vmi",
                fq_name: &fq,
                parent_type: "project",
                display_name: "port",
                virtual_network_refs: [Ref {
                    to: &vn,
                    uuid: "u-vn",
                }],
                virtual_machine_refs: [VmRef {
                    to: ["cid"],
                    uuid: "u-vm",
                }],
                security_group_refs: &sgs,
                virtual_machine_interface_mac_addresses: MacAddresses {
                    mac_address: ["02:aa:bb:cc:dd:ee"],
                },
                annotations: Annotations(PAIRS),
            };
            let sg_tree: Vec<serde_json::Value> = sgs
                .iter()
                .map(|r| json!({"to": r.to, "uuid": r.uuid}))
                .collect();
            same(
                text(&vmi),
                json!({"uuid": "u-vmi", "fq_name": fq, "parent_type": "project", "display_name": "port",
                    "virtual_network_refs": [{"to": vn, "uuid": "u-vn"}],
                    "virtual_machine_refs": [{"to": ["cid"], "uuid": "u-vm"}],
                    "security_group_refs": sg_tree,
                    "virtual_machine_interface_mac_addresses": {"mac_address": ["02:aa:bb:cc:dd:ee"]},
                    "annotations": annotations(PAIRS)}),
            );
        }
    }

    #[test]
    fn an_instance_ip_is_written_as_the_value_tree_was() {
        let vn = vec!["d".to_owned(), "p".to_owned(), "n".to_owned()];
        let vmi = vec!["d".to_owned(), "p".to_owned(), "port".to_owned()];
        for (family, address) in [
            (None, None),
            (Some("v6"), None),
            (None, Some("10.0.0.5".to_owned())),
            (Some("v4"), Some("10.0.0.5".to_owned())),
        ] {
            let iip = InstanceIp {
                fq_name: ["iip"],
                virtual_network_refs: [Ref {
                    to: &vn,
                    uuid: "u-vn",
                }],
                virtual_machine_interface_refs: [Ref {
                    to: &vmi,
                    uuid: "u-vmi",
                }],
                annotations: Annotations(PAIRS),
                instance_ip_family: family,
                instance_ip_address: address.clone(),
            };
            let mut tree = json!({"fq_name": ["iip"], "virtual_network_refs": [{"to": vn, "uuid": "u-vn"}],
                "virtual_machine_interface_refs": [{"to": vmi, "uuid": "u-vmi"}],
                "annotations": annotations(PAIRS)});
            if let Some(f) = family {
                tree["instance_ip_family"] = json!(f);
            }
            if let Some(a) = &address {
                tree["instance_ip_address"] = json!(a);
            }
            same(text(&iip), tree);
        }
    }
}
