//! What the config API holds, read over its REST API the way an operator would (`GET
//! /<type>/<uuid>`, `GET /<type>s?detail=True`): for the demo's and the tests' checks.

use serde_json::Value;

use crate::Stack;

impl Stack {
    /// The config API's answer for `path`, or Null.
    pub fn vnc_get(&self, path: &str) -> Value {
        ureq::get(format!("{}/{path}", self.vnc_url))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json().ok())
            .unwrap_or(Value::Null)
    }

    /// The virtual network (fq-name, `:`-joined) of a container's first port; empty when it
    /// has none.
    pub fn network_of(&self, cid: &str) -> String {
        let vm = self.vnc_get(&format!(
            "virtual-machine/{}",
            contrail_mesos_api::vm_uuid_for(cid)
        ));
        let vmi = vm["virtual-machine"]["virtual_machine_interface_back_refs"][0]["uuid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let v = self.vnc_get(&format!("virtual-machine-interface/{vmi}"));
        joined(&v["virtual-machine-interface"]["virtual_network_refs"][0]["to"])
    }

    /// The fq-names (`:`-joined) of every object of a type.
    pub fn names_of(&self, ty: &str) -> Vec<String> {
        self.vnc_get(&format!("{ty}s?detail=True"))[format!("{ty}s")]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| joined(&o[ty]["fq_name"]))
            .collect()
    }
}

fn joined(fq: &Value) -> String {
    fq.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(":")
        })
        .unwrap_or_default()
}
