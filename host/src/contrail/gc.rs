//! GC (CNI SPEC.md "GC: Clean up any stale resources"). The runtime names the attachments that
//! are still valid *for this network*; anything else this network created may go. Port files do
//! not record which CNI network wrote them, and one container's interfaces on two Contrail
//! networks share the VM's port directory, so a GC of one network cannot tell another network's
//! live port from a stale one of its own. Deleting by that guess would tear down live
//! interfaces, so GC removes nothing: DEL (which the runtime sends per attachment) cleans up,
//! and the manager's reconciler removes the VNC objects of containers that are gone.

use crate::cni::config::NetConf;

/// Logs how many attachments the runtime still holds; always succeeds.
pub fn gc(conf: &NetConf) {
    let valid = conf
        .get("cni.dev/valid-attachments")
        .and_then(|v| v.as_array())
        .map(Vec::len);
    tracing::info!(
        valid_attachments = ?valid,
        "GC: nothing removed (port files are shared between networks; DEL and the manager's reconciler clean up)"
    );
}
