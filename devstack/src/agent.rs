//! The devstack's vRouter agent: the port-IPC stand-in (`vrouter_agent`) fed from what the
//! manager wrote to VNC, plus a real dataplane.
//!
//! A real agent learns a VM's ports once the `virtual-router -> virtual-machine` ref exists
//! (tf-controller commit "Agent changes to support CNI plugin"); this one reads the VNC stand-in's store for ports whose VM is referred to
//! by this node's vrouter, configures them on the agent stand-in, and removes them when VNC no
//! longer has them. Subscriptions (`POST /vm`) attach the tap to the network's bridge.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use contrail_integration::vnc::VncServer;
use contrail_integration::vrouter_agent::{AgentStandin, VmiSpec};

use super::dataplane::Dataplane;

/// How often VNC is re-read: the delay a real agent has between config and IFMap push.
const SYNC_PERIOD: Duration = Duration::from_millis(25);

pub struct DevAgent {
    pub standin: Arc<AgentStandin>,
    pub dataplane: Arc<Dataplane>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DevAgent {
    /// Starts the agent stand-in on 127.0.0.1 of the calling thread's namespace and the sync
    /// loop for `node_name`'s vrouter.
    pub fn start(vnc: Arc<VncServer>, node_name: &str) -> DevAgent {
        let standin = Arc::new(AgentStandin::start());
        let dataplane = Arc::new(Dataplane::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, d, st, node) = (
            standin.clone(),
            dataplane.clone(),
            stop.clone(),
            node_name.to_owned(),
        );
        let thread = std::thread::spawn(move || {
            let mut configured: BTreeMap<String, VmiSpec> = BTreeMap::new();
            let mut attached: HashMap<String, String> = HashMap::new(); // tap -> bridge
            while !st.load(Ordering::Relaxed) {
                sync_once(&vnc, &node, &s, &d, &mut configured, &mut attached);
                std::thread::sleep(SYNC_PERIOD);
            }
        });
        DevAgent {
            standin,
            dataplane,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.standin.port()
    }
}

fn sync_once(
    vnc: &VncServer,
    node: &str,
    agent: &AgentStandin,
    dataplane: &Dataplane,
    configured: &mut BTreeMap<String, VmiSpec>,
    attached: &mut HashMap<String, String>,
) {
    let mut seen = BTreeMap::new();
    for p in vnc.ports() {
        if !p.vrouters.iter().any(|v| v == node) {
            continue;
        }
        // A port is published once VNC holds all of it, its instance-ip included. The manager
        // creates the VMI before its instance-ip, and a container's second VMI is visible
        // through the VM (already referred by the vrouter) before its address exists. A real
        // agent answers `GET /vm/<vm>/<vmi>` for such a port with 404 "Missing IPAM entry …
        // Retry" (`port_ipc_handler.cc`), which the CNI polls; the port-IPC stand-in would answer 200
        // without any address instead, which the CNI's IPAM step takes as final.
        let (Some(vm_uuid), Some(vn_uuid), Some(mac), Some(_)) = (
            p.vm_uuid.clone(),
            p.vn_uuid.clone(),
            p.mac.clone(),
            p.ip.as_ref(),
        ) else {
            continue;
        };
        let spec = VmiSpec {
            vm_name: p.vm_name.clone().unwrap_or_else(|| vm_uuid.clone()),
            vm_uuid,
            vmi_uuid: p.vmi_uuid.clone(),
            vn_uuid,
            vn_name: p.vn_fq_name.clone().unwrap_or_default().join(":"),
            mac,
            annotations: p.annotations.clone(),
            ip: p.ip.clone(),
            plen: p.plen.map(u32::from),
            gateway: p.gateway.clone(),
            dns: p.dns.clone(),
            project_uuid: p.vmi_fq_name.get(1).cloned().unwrap_or_default(),
            ..Default::default()
        };
        if let (Some(gw), Some(plen)) = (&spec.gateway, spec.plen)
            && let Err(e) =
                dataplane.ensure_network(&spec.vn_uuid, gw.parse().ok(), Some(plen as u8))
        {
            tracing::warn!("dataplane: {e}");
        }
        seen.insert(spec.vmi_uuid.clone(), spec);
    }
    for (uuid, spec) in &seen {
        if configured.get(uuid) != Some(spec) {
            agent.add_vmi(spec.clone());
        }
    }
    for uuid in configured.keys() {
        if !seen.contains_key(uuid) {
            agent.remove_vmi(uuid);
        }
    }
    *configured = seen;

    // Subscriptions → taps on bridges.
    let mut subscribed = HashMap::new();
    for ((_, vmi), body) in agent.subscriptions() {
        let Some(tap) = body["host-ifname"].as_str() else {
            continue;
        };
        let vn = body["vn-uuid"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| configured.get(&vmi).map(|s| s.vn_uuid.clone()));
        if let Some(vn) = vn {
            subscribed.insert(tap.to_owned(), vn);
        }
    }
    for (tap, vn) in &subscribed {
        if attached.contains_key(tap) {
            continue;
        }
        let Some(bridge) = dataplane.bridge_of(vn) else {
            continue;
        };
        match dataplane.attach(tap, &bridge) {
            Ok(()) => {
                attached.insert(tap.clone(), bridge);
            }
            // The tap may not exist yet (POST /vm races the veth) or already be gone.
            Err(e) => tracing::debug!("attach {tap}: {e}"),
        }
    }
    attached.retain(|tap, _| {
        let keep = subscribed.contains_key(tap);
        if !keep {
            dataplane.detach(tap);
        }
        keep
    });
}

impl Drop for DevAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.dataplane.teardown();
    }
}
