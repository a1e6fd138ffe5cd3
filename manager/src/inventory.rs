//! What the reconciler knows about VNC, in its own terms: the owned attachments (`cache::Owned`)
//! and the orphans a scan found. The VNC adapter (`vnc/`) fills these; the reconcile core
//! imports nothing from it.

use std::sync::Arc;

use crate::cache::Owned;

/// Owned objects as VNC holds them.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Shared with the cache where the cache already held the same attachment.
    pub owned: Vec<Arc<Owned>>,
    pub orphans: Vec<Orphan>,
    /// Containers with an attachment whose VM no virtual router refers to (the node's router
    /// was re-registered, or the ref was lost): the agent never learns such a port.
    /// `Writer::restore_vrouter_ref` puts the ref back.
    pub vms_without_vrouter: Vec<String>,
}

/// An owned object outside any complete attachment (a VM without interface, an instance-ip or
/// floating-ip without VMI: traces of a crash mid-registration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub ty: &'static str,
    pub uuid: String,
    pub container_id: String,
    /// Unix seconds (annotation `created-at`), for the grace.
    pub created_at: u64,
}
