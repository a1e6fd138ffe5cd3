//! Fakes of the agent, the kernel and the Wasm policy, so the Contrail verbs run without root.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contrail_mesos_api::{AttachRequest, Attachment, ContrailRequest, ObjectRef};
use ipnet::IpNet;

use super::agent::{Agent, AgentError, VmiCfg, VrouterPort};
use super::config::{ContrailConfig, Mode};
use super::ctx::{Ctx, Policy};
use super::error::{Error, Result};
use super::manager::{Manager, Registered};
use super::portmap::{Entry, InstallError, Listing, Mapping, PortMap, Target, chain_name};
use crate::cni::config::Label;
use crate::cni::result::{Dns, IpConfig, Route};
use crate::net::{
    IfaceState, MacvlanSpec, NetError, NetOps, RouteSpec, VLAN_OWNER_ALIAS, VethSpec, VlanSpec,
};
use crate::wasm::IpamConfig;

pub const CID: &str = "5baff64c-d028-47ba-864e-a5ee679fc069";
pub const VMI: &str = "a1b2c3d4-0000-4000-8000-000000000001";

#[derive(Default)]
pub struct FakeAgent {
    pub cfg_404s: RefCell<u32>,
    /// `GET /vm/...` answers 200 without an address this many times first.
    pub port_unaddressed: RefCell<u32>,
    pub fail_post: bool,
    /// The `vlan-id` of the VMI (nested mode).
    pub vlan: Option<u32>,
    /// The VMI without an `index` annotation (then taken for any ifname).
    pub no_index: bool,
    pub calls: RefCell<Vec<String>>,
    pub subs: RefCell<BTreeMap<String, Vec<u8>>>,
    /// The node's port forwarding (here so that every `fake_deps` of a test shares it).
    pub ports: FakePorts,
}

/// What one install forwarded: the IPv4 address and the mappings.
pub type Installed = (Option<std::net::Ipv4Addr>, Vec<Mapping>);

/// The nft table as a map of (proto, host port) → chain, with the kernel's rule that an
/// existing key refuses the whole install.
#[derive(Default)]
pub struct FakePorts {
    pub listing: RefCell<Listing>,
    /// The targets installed, by chain.
    pub targets: RefCell<BTreeMap<String, Installed>>,
    pub fail_remove: bool,
}

impl PortMap for FakePorts {
    fn install(&self, t: &Target, maps: &[Mapping]) -> std::result::Result<(), InstallError> {
        let chain = chain_name(t.container_id, t.ifname);
        let mut l = self.listing.borrow_mut();
        if maps
            .iter()
            .any(|m| l.holder(m.proto, m.host_port).is_some())
        {
            return Err(InstallError::Conflict);
        }
        for m in maps {
            l.entries.push(Entry {
                proto: m.proto,
                host_port: m.host_port,
                chain: chain.clone(),
            });
        }
        l.chains.push(chain.clone());
        self.targets
            .borrow_mut()
            .insert(chain, (t.v4, maps.to_vec()));
        Ok(())
    }
    fn list(&self) -> Result<Listing> {
        Ok(self.listing.borrow().clone())
    }
    fn remove(&self, chain: &str) -> Result<bool> {
        if self.fail_remove {
            return Err(Error::new(124, "nft: fake failure"));
        }
        let mut l = self.listing.borrow_mut();
        let before = (l.entries.len(), l.chains.len());
        l.entries.retain(|e| e.chain != chain);
        l.chains.retain(|c| c != chain);
        self.targets.borrow_mut().remove(chain);
        Ok(before != (l.entries.len(), l.chains.len()))
    }
}

impl Agent for FakeAgent {
    fn vm_cfg(
        &self,
        key: &str,
        _: Duration,
    ) -> std::result::Result<Option<Vec<VmiCfg>>, AgentError> {
        self.calls.borrow_mut().push(format!("GET /vm-cfg/{key}"));
        let mut n = self.cfg_404s.borrow_mut();
        if *n > 0 {
            *n -= 1;
            return Ok(None);
        }
        Ok(Some(vec![VmiCfg {
            id: VMI.into(),
            vm_uuid: Some(CID.into()),
            vn_id: Some("vn".into()),
            mac: Some("02:00:00:00:00:01".into()),
            annotations: if self.no_index {
                Default::default()
            } else {
                [("index".to_string(), "0/1".to_string())].into()
            },
            vlan_id: self.vlan,
            ..Default::default()
        }]))
    }
    fn add_port(&self, body: &[u8], _: Duration) -> std::result::Result<(), AgentError> {
        self.calls.borrow_mut().push("POST /vm".into());
        if self.fail_post {
            return Err(AgentError::Status {
                status: 500,
                body: "{}".into(),
            });
        }
        self.subs.borrow_mut().insert(VMI.into(), body.to_vec());
        Ok(())
    }
    fn get_port(
        &self,
        _: &str,
        vmi: &str,
        _: Duration,
    ) -> std::result::Result<Option<VrouterPort>, AgentError> {
        self.calls.borrow_mut().push(format!("GET /vm/{vmi}"));
        let mut n = self.port_unaddressed.borrow_mut();
        if *n > 0 {
            *n -= 1;
            return Ok(Some(VrouterPort {
                id: vmi.into(),
                ..Default::default()
            }));
        }
        Ok(Some(VrouterPort {
            id: vmi.into(),
            ip_address: Some("10.0.0.5".into()),
            plen: Some(24),
            gateway: Some("10.0.0.254".into()),
            ..Default::default()
        }))
    }
    fn delete_vm(&self, vm: &str, _: &[u8], _: Duration) -> std::result::Result<(), AgentError> {
        self.calls.borrow_mut().push(format!("DELETE /vm/{vm}"));
        self.subs.borrow_mut().clear();
        Ok(())
    }
    fn ping(&self, _: Duration) -> std::result::Result<(), AgentError> {
        Err(AgentError::Unreachable("refused".into()))
    }
    fn endpoint(&self) -> String {
        "fake:9091".into()
    }
}

/// What the fakes did, in order, across fakes (the rollback order is checked with it).
pub type Journal = Arc<Mutex<Vec<String>>>;

#[derive(Default)]
pub struct FakeNet {
    /// Host ends.
    pub links: Vec<String>,
    /// Container ends (by ifname).
    pub container: Vec<String>,
    pub fail_configure: bool,
    pub fail_retire: bool,
    /// `check_netns` says the path is not a network namespace.
    pub bad_netns: bool,
    /// Host interfaces that exist (nested mode's parents).
    pub parents: Vec<String>,
    /// VLAN interfaces: name → alias.
    pub vlans: BTreeMap<String, String>,
    /// Macvlans: (container name, lower).
    pub macvlans: Vec<(String, String)>,
    pub fail_macvlan: bool,
    /// Container ends set up, with the MAC they were given.
    pub up: Vec<(String, [u8; 6])>,
    pub journal: Journal,
}

impl NetOps for FakeNet {
    fn check_netns(&mut self, netns: &Path) -> std::result::Result<(), NetError> {
        if self.bad_netns {
            return Err(NetError::NotNetns {
                path: netns.to_owned(),
            });
        }
        Ok(())
    }

    fn create_veth(&mut self, _: &Path, spec: &VethSpec) -> std::result::Result<(), NetError> {
        self.links.push(spec.host_name.clone());
        self.container.push(spec.container_name.clone());
        Ok(())
    }
    fn up_container_link(
        &mut self,
        _: &Path,
        ifname: &str,
        mac: [u8; 6],
    ) -> std::result::Result<(), NetError> {
        if !self.container.iter().any(|c| c == ifname) {
            return Err(NetError::NotFound {
                name: ifname.to_owned(),
            });
        }
        self.up.push((ifname.to_owned(), mac));
        Ok(())
    }
    fn configure(
        &mut self,
        _: &Path,
        _: &str,
        _: &[IpNet],
        _: &[RouteSpec],
    ) -> std::result::Result<(), NetError> {
        if self.fail_configure {
            return Err(NetError::Netlink {
                op: "add route".into(),
                errno: Some(101),
                msg: "unreachable".into(),
            });
        }
        Ok(())
    }
    fn ensure_vlan(&mut self, spec: &VlanSpec) -> std::result::Result<bool, NetError> {
        if !self.parents.contains(&spec.parent) {
            return Err(NetError::NotFound {
                name: spec.parent.clone(),
            });
        }
        if self.vlans.contains_key(&spec.name) {
            return Ok(false);
        }
        self.journal
            .lock()
            .unwrap()
            .push(format!("vlan {}", spec.name));
        self.vlans
            .insert(spec.name.clone(), VLAN_OWNER_ALIAS.to_owned());
        Ok(true)
    }
    fn create_macvlan(
        &mut self,
        _: &Path,
        spec: &MacvlanSpec,
    ) -> std::result::Result<(), NetError> {
        if self.fail_macvlan || !self.vlans.contains_key(&spec.lower) {
            return Err(NetError::Netlink {
                op: "create macvlan".into(),
                errno: Some(22),
                msg: "invalid".into(),
            });
        }
        if self.container.contains(&spec.container_name) {
            return Err(NetError::IfnameExists {
                name: spec.container_name.clone(),
            });
        }
        self.journal
            .lock()
            .unwrap()
            .push(format!("macvlan {} on {}", spec.container_name, spec.lower));
        self.container.push(spec.container_name.clone());
        self.macvlans
            .push((spec.container_name.clone(), spec.lower.clone()));
        Ok(())
    }
    fn delete_container_link(
        &mut self,
        netns: &Path,
        ifname: &str,
    ) -> std::result::Result<bool, NetError> {
        // A namespace under /gone (the sweep tests' dead containers) took its links with it.
        if netns.starts_with("/gone") {
            return Ok(false);
        }
        self.journal
            .lock()
            .unwrap()
            .push(format!("delete {ifname} in the container"));
        let before = self.container.len();
        self.container.retain(|c| c != ifname);
        self.macvlans.retain(|(c, _)| c != ifname);
        Ok(before != self.container.len())
    }
    fn host_link_alias(&mut self, name: &str) -> std::result::Result<Option<String>, NetError> {
        Ok(self.vlans.get(name).cloned().or_else(|| {
            (self.parents.iter().any(|p| p == name) || self.links.iter().any(|l| l == name))
                .then(String::new)
        }))
    }
    fn delete_host_link(&mut self, name: &str) -> std::result::Result<bool, NetError> {
        self.journal.lock().unwrap().push(format!("delete {name}"));
        if self.vlans.remove(name).is_some() {
            // Its macvlans go with it.
            let gone: Vec<String> = self
                .macvlans
                .iter()
                .filter(|(_, l)| l == name)
                .map(|(c, _)| c.clone())
                .collect();
            self.macvlans.retain(|(_, l)| l != name);
            self.container.retain(|c| !gone.contains(c));
            return Ok(true);
        }
        let before = self.links.len();
        self.links.retain(|l| l != name);
        // One veth per test container: its peer goes with it.
        if before != self.links.len() {
            self.container.pop();
        }
        Ok(before != self.links.len())
    }
    fn retire(
        &mut self,
        _: Option<&Path>,
        _: &str,
        name: &str,
        _: bool,
    ) -> std::result::Result<bool, NetError> {
        if self.fail_retire {
            return Err(NetError::Netlink {
                op: format!("delete link {name}"),
                errno: Some(16),
                msg: "busy".into(),
            });
        }
        self.delete_host_link(name)
    }
    fn host_link_exists(&mut self, name: &str) -> std::result::Result<bool, NetError> {
        Ok(self.links.iter().any(|l| l == name)
            || self.parents.iter().any(|p| p == name)
            || self.vlans.contains_key(name))
    }
    fn container_link_exists(
        &mut self,
        _: &Path,
        ifname: &str,
    ) -> std::result::Result<bool, NetError> {
        Ok(self.container.iter().any(|c| c == ifname))
    }
    fn inspect(
        &mut self,
        _: &Path,
        ifname: &str,
    ) -> std::result::Result<Option<IfaceState>, NetError> {
        Ok(self
            .container
            .iter()
            .any(|c| c == ifname)
            .then(|| IfaceState {
                name: ifname.to_owned(),
                index: 2,
                mac: None,
                mtu: None,
                up: true,
                addrs: vec![],
                routes: vec![],
            }))
    }
}

/// The attachment API, answering from a fixed attachment.
#[derive(Default)]
pub struct FakeManager {
    pub attached: RefCell<Vec<String>>,
    /// `attach` answers as a manager refusing the request does (CNI code 7).
    pub fail_attach: bool,
    pub fail_detach: bool,
    pub journal: Journal,
}

impl Manager for FakeManager {
    fn attach(&self, req: &AttachRequest) -> Result<Registered> {
        self.journal.lock().unwrap().push("attach".into());
        if self.fail_attach {
            return Err(Error::new(7, "manager at fake: no such network"));
        }
        let created = !self.attached.borrow().contains(&req.container_id);
        if created {
            self.attached.borrow_mut().push(req.container_id.clone());
        }
        let attachment = Attachment {
            container_id: req.container_id.clone(),
            ifname: req.ifname.clone(),
            vm_uuid: CID.into(),
            vm_name: CID.into(),
            vmi_uuid: VMI.into(),
            vn: ObjectRef {
                uuid: "vn".into(),
                fq_name: vec!["d".into(), "p".into(), "n".into()],
            }
            .into(),
            ip: None,
            mac: Some("02:00:00:00:00:01".into()),
            index: contrail_mesos_api::InterfaceIndex::SOLE,
            floating_ips: vec![],
        };
        Ok(Registered {
            attachment,
            created,
        })
    }
    fn detach(&self, container_id: &str, _: &str) -> Result<bool> {
        self.journal.lock().unwrap().push("detach".into());
        if self.fail_detach {
            return Err(Error::new(11, "manager at fake did not answer"));
        }
        let mut a = self.attached.borrow_mut();
        let before = a.len();
        a.retain(|c| c != container_id);
        Ok(before != a.len())
    }
}

pub struct FakePolicy;

/// Fakes wired as the verbs take them, without a manager.
pub fn fake_deps<'a>(agent: &'a FakeAgent, net: &'a mut FakeNet) -> super::ctx::Deps<'a> {
    super::ctx::Deps {
        agent,
        manager: None,
        net,
        policy: &FakePolicy,
        ports: &agent.ports,
    }
}

impl Policy for FakePolicy {
    fn translate(&self, _: &[Label]) -> Result<ContrailRequest> {
        Ok(ContrailRequest::default())
    }
    fn ipam(&self, port: &VrouterPort, primary: bool) -> Result<IpamConfig> {
        let ip: IpAddr = port.ip_address.as_deref().unwrap().parse().unwrap();
        let gw: IpAddr = port.gateway.as_deref().unwrap().parse().unwrap();
        Ok(IpamConfig {
            ips: vec![IpConfig {
                interface: None,
                address: IpNet::new(ip, 24).unwrap(),
                gateway: Some(gw),
            }],
            routes: if primary {
                vec![Route::new("0.0.0.0/0".parse().unwrap(), Some(gw))]
            } else {
                vec![]
            },
            dns: Dns::default(),
        })
    }
}

pub fn cfg(dir: &Path) -> ContrailConfig {
    ContrailConfig {
        config_dir: dir.join("ports"),
        state_dir: dir.join("state"),
        poll_timeout: Duration::from_millis(20),
        poll_retries: 5,
        mode: Some(Mode::Mesos),
        ..Default::default()
    }
}

/// [`cfg`] in nested mode on parent `em2`.
pub fn nested_cfg(dir: &Path) -> ContrailConfig {
    ContrailConfig {
        vif_type: "macvlan".into(),
        parent_interface: Some("em2".into()),
        ..cfg(dir)
    }
}

pub fn ctx<'a>(cfg: &'a ContrailConfig, netns: &'a Path) -> Ctx<'a> {
    Ctx {
        cfg,
        container_id: CID,
        ifname: "eth0",
        netns: Some(netns),
        cni_args: None,
        network_name: "contrail-cni-plugin",
        labels: vec![],
        port_mappings: vec![],
    }
}
