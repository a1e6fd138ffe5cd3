//! What a vRouter agent knows about its ports, read from the VNC config API over REST
//! (`shared/contracts/vnc-api.md` §4: list with `detail=True`; refs as `{to, uuid, attr}`).
//!
//! A real agent learns this through the control node (IFMap/XMPP) once the manager has added the
//! `virtual-router -> virtual-machine` ref (`contrail.md` §1.8). The devstack's agent does the
//! same from VNC directly: a VM is visible to this node only through that ref, so a manager that
//! forgets it gets the 404s a real agent would give.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

/// One VMI as the agent's port-IPC API describes it (`/vm-cfg` and `/vm` answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortView {
    pub vm_uuid: String,
    /// The VM's name (fq_name[0]); the `/vm-cfg/<key>` key for agents R2008+.
    pub vm_name: String,
    pub vmi_uuid: String,
    pub vn_uuid: String,
    pub vn_fq_name: Vec<String>,
    pub project_uuid: String,
    pub mac: String,
    /// VMI annotations as (key, value), e.g. ("index", "0/1").
    pub annotations: Vec<(String, String)>,
    pub ip: Option<IpAddr>,
    pub plen: Option<u8>,
    pub gateway: Option<IpAddr>,
    pub dns: Option<IpAddr>,
}

/// A VNC REST reader.
pub struct VncView {
    base: String,
    agent: ureq::Agent,
}

impl VncView {
    pub fn new(base: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        VncView { base: base.trim_end_matches('/').to_owned(), agent }
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}{}", self.base, path);
        let mut resp = self.agent.get(&url).call().map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().map_err(|e| format!("GET {url}: {e}"))?;
        if status != 200 {
            return Err(format!("GET {url}: {status} {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("GET {url}: {e}"))
    }

    /// `GET /<type>s?detail=True` → the inner objects.
    pub fn list(&self, type_: &str) -> Result<Vec<Value>, String> {
        let v = self.get(&format!("/{type_}s?detail=True"))?;
        Ok(v[format!("{type_}s")]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|o| o.get(type_).cloned().unwrap_or(o))
            .collect())
    }

    /// The uuid of the virtual-router whose fq_name is
    /// `[default-global-system-config, <name>]`, if it exists.
    pub fn vrouter_uuid(&self, name: &str) -> Result<Option<String>, String> {
        Ok(self
            .list("virtual-router")?
            .into_iter()
            .find(|vr| vr["fq_name"][1].as_str() == Some(name))
            .and_then(|vr| vr["uuid"].as_str().map(str::to_owned)))
    }

    /// Every port of every VM the given vrouter refers to.
    pub fn ports_for_vrouter(&self, vrouter_name: &str) -> Result<Vec<PortView>, String> {
        let Some(vr_uuid) = self.vrouter_uuid(vrouter_name)? else { return Ok(Vec::new()) };
        let vr = self.get(&format!("/virtual-router/{vr_uuid}"))?;
        let vm_uuids: Vec<String> = refs(&vr["virtual-router"], "virtual_machine_refs")
            .into_iter()
            .map(|(uuid, _)| uuid)
            .collect();
        if vm_uuids.is_empty() {
            return Ok(Vec::new());
        }
        let vms: HashMap<String, Value> = self
            .list("virtual-machine")?
            .into_iter()
            .filter_map(|vm| Some((vm["uuid"].as_str()?.to_owned(), vm)))
            .collect();
        let vns: HashMap<String, Value> = self
            .list("virtual-network")?
            .into_iter()
            .filter_map(|vn| Some((vn["uuid"].as_str()?.to_owned(), vn)))
            .collect();
        let iips = self.list("instance-ip")?;
        let mut out = Vec::new();
        for vmi in self.list("virtual-machine-interface")? {
            let Some((vm_uuid, _)) = refs(&vmi, "virtual_machine_refs").into_iter().next() else {
                continue;
            };
            if !vm_uuids.contains(&vm_uuid) {
                continue;
            }
            let Some((vn_uuid, vn_fq)) = refs(&vmi, "virtual_network_refs").into_iter().next()
            else {
                continue;
            };
            let vmi_uuid = vmi["uuid"].as_str().unwrap_or_default().to_owned();
            let vm_name = vms
                .get(&vm_uuid)
                .and_then(|vm| vm["fq_name"][0].as_str())
                .unwrap_or(&vm_uuid)
                .to_owned();
            let mac = vmi["virtual_machine_interface_mac_addresses"]["mac_address"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let annotations = vmi["annotations"]["key_value_pair"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|kv| {
                    Some((kv["key"].as_str()?.to_owned(), kv["value"].as_str()?.to_owned()))
                })
                .collect();
            let ip: Option<IpAddr> = iips
                .iter()
                .find(|iip| {
                    refs(iip, "virtual_machine_interface_refs").iter().any(|(u, _)| *u == vmi_uuid)
                })
                .and_then(|iip| iip["instance_ip_address"].as_str()?.parse().ok());
            let (plen, gateway, dns) = ip
                .and_then(|ip| vns.get(&vn_uuid).and_then(|vn| subnet_of(vn, ip)))
                .unwrap_or((None, None, None));
            out.push(PortView {
                vm_uuid,
                vm_name,
                vmi_uuid,
                vn_uuid,
                vn_fq_name: vn_fq,
                project_uuid: vmi["parent_uuid"].as_str().unwrap_or_default().to_owned(),
                mac,
                annotations,
                ip,
                plen,
                gateway,
                dns,
            });
        }
        Ok(out)
    }
}

/// `[(uuid, to)]` of a ref list.
fn refs(obj: &Value, field: &str) -> Vec<(String, Vec<String>)> {
    obj[field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let uuid = r["uuid"].as_str()?.to_owned();
            let to = r["to"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            Some((uuid, to))
        })
        .collect()
}

/// The IPAM subnet of `vn` holding `ip`: (plen, gateway, dns).
type SubnetInfo = (Option<u8>, Option<IpAddr>, Option<IpAddr>);

fn subnet_of(vn: &Value, ip: IpAddr) -> Option<SubnetInfo> {
    for r in vn["network_ipam_refs"].as_array().into_iter().flatten() {
        for s in r["attr"]["ipam_subnets"].as_array().into_iter().flatten() {
            let prefix: IpAddr = s["subnet"]["ip_prefix"].as_str()?.parse().ok()?;
            let len = s["subnet"]["ip_prefix_len"].as_u64()? as u8;
            let net = ipnet::IpNet::new(prefix, len).ok()?;
            if net.contains(&ip) {
                return Some((
                    Some(len),
                    s["default_gateway"].as_str().and_then(|g| g.parse().ok()),
                    s["dns_server_address"].as_str().and_then(|g| g.parse().ok()),
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subnet_lookup_reads_the_vn_ipam_ref_attr() {
        // Shape from vnc-api.md §4 "VN subnet shape".
        let vn = json!({"network_ipam_refs": [{"to": ["default-domain","p1","ipam1"], "attr": {"ipam_subnets": [
            {"subnet": {"ip_prefix": "10.1.1.0", "ip_prefix_len": 24},
             "default_gateway": "10.1.1.254", "dns_server_address": "10.1.1.253"}]}}]});
        let (plen, gw, dns) = subnet_of(&vn, "10.1.1.252".parse().unwrap()).unwrap();
        assert_eq!(plen, Some(24));
        assert_eq!(gw, Some("10.1.1.254".parse().unwrap()));
        assert_eq!(dns, Some("10.1.1.253".parse().unwrap()));
        assert!(subnet_of(&vn, "10.9.9.9".parse().unwrap()).is_none());
    }

    #[test]
    fn refs_yield_uuid_and_fq_name() {
        let o = json!({"virtual_network_refs": [{"to": ["d","p","vn"], "attr": null, "uuid": "u1"}]});
        assert_eq!(refs(&o, "virtual_network_refs"), vec![("u1".to_string(), vec!["d".into(), "p".into(), "vn".into()])]);
        assert!(refs(&o, "missing").is_empty());
    }
}
