//! What every verb of the Contrail path works with: the invocation ([`Ctx`]), the peers and the
//! kernel behind traits ([`Deps`]), the Wasm policy ([`Policy`]) and the workload's name towards
//! the agent ([`Identity`]).

use std::path::Path;

use contrail_mesos_api::{ContrailRequest, vm_uuid_for};

use super::agent::{Agent, VrouterPort};
use super::config::{ContrailConfig, Mode};
use super::error::{Error, Result, code};
use super::manager::Manager;
use super::naming::{k8s_pod, k8s_vm_name};
use super::portmap::{Mapping, PortMap};
use crate::cni::config::Label;
use crate::net::NetOps;
use crate::wasm::IpamConfig;

/// The two Wasm plugins, as the Contrail logic sees them.
pub trait Policy {
    /// `translate-contrail`: the Mesos labels in Contrail's vocabulary.
    fn translate(&self, labels: &[Label]) -> Result<ContrailRequest>;
    /// `configure`: the IP configuration of one port.
    fn ipam(&self, port: &VrouterPort, primary: bool) -> Result<IpamConfig>;
    /// Gets the IPAM plugin ready (load, type-check) ahead of [`Policy::ipam`]; called on a
    /// thread while the agent is polled. Best effort.
    fn prefetch(&self) {}
}

/// One invocation, as the Contrail logic needs it.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    pub cfg: &'a ContrailConfig,
    pub container_id: &'a str,
    pub ifname: &'a str,
    pub netns: Option<&'a Path>,
    pub cni_args: Option<&'a str>,
    pub network_name: &'a str,
    pub labels: Vec<Label>,
    /// Mesos' `network_info.port_mappings`, checked (ADD and CHECK).
    pub port_mappings: Vec<Mapping>,
}

pub struct Deps<'a> {
    pub agent: &'a dyn Agent,
    /// None in k8s mode or when no manager is configured.
    pub manager: Option<&'a dyn Manager>,
    pub net: &'a mut (dyn NetOps + Send),
    pub policy: &'a (dyn Policy + Sync),
    /// The node's port forwarding (nftables).
    pub ports: &'a dyn PortMap,
}

/// How the workload is named towards the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub mode: Mode,
    /// Key of `/vm-cfg/<key>` and the port-file directory.
    pub vm_name: String,
    /// Known up front in Mesos mode (a uuid derived from the container id); learned from
    /// vm-cfg in Kubernetes mode.
    pub vm_uuid: Option<String>,
}

impl Identity {
    /// Kubernetes when `contrail.mode` says so or (without a mode) when `CNI_ARGS` names a pod:
    /// VM name `<cluster>__<ns>__<pod>` as tf-controller's `src/container/cni/cni.go` builds
    /// it. Mesos otherwise: the container id.
    pub fn of(ctx: &Ctx) -> Result<Identity> {
        let pod = ctx.cni_args.and_then(k8s_pod);
        let mode = ctx.cfg.mode.unwrap_or(if pod.is_some() {
            Mode::K8s
        } else {
            Mode::Mesos
        });
        match mode {
            Mode::K8s => {
                let (ns, name) = pod.ok_or_else(|| {
                    Error::new(
                        code::INVALID_ENV,
                        "contrail.mode is k8s but CNI_ARGS has no K8S_POD_NAMESPACE and K8S_POD_NAME",
                    )
                })?;
                Ok(Identity {
                    mode,
                    vm_name: k8s_vm_name(&ctx.cfg.cluster_name, &ns, &name),
                    vm_uuid: None,
                })
            }
            Mode::Mesos => Ok(Identity {
                mode,
                vm_name: ctx.container_id.to_owned(),
                vm_uuid: Some(vm_uuid_for(ctx.container_id)),
            }),
        }
    }
}
