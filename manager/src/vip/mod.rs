//! Marathon VIPs as Contrail native load balancers.
//!
//! A port label `VIP_<n>` (`portDefinitions[].labels` or `container.portMappings[].labels`;
//! DC/OS "Load Balancing and VIPs") asks for a layer-4 load balancer: `ip:port` on that
//! address, `/name:port` on an address the manager allocates on the VIP network
//! (`[vip] network`, on the cluster's flat pod IPAM), reached by DC/OS' name
//! `<name>.marathon.l4lb.<domain>`. The leader keeps VNC in step with Marathon's app list
//! (`GET /v2/apps?embed=apps.tasks`) after every full pass and, between passes, after task
//! status and health events (at most once per `[vip] min-event-gap-ms`): members follow the
//! running, healthy tasks; what no app declares any more is removed. See `docs/manager.md`.

pub mod desired;
pub mod labels;
pub mod vnc;

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::marathon::model::ServiceApp;
use crate::metrics::Metrics;
use crate::vnc::Writer;

pub use desired::{BadLabel, Desired, desired};
pub use vnc::{VipNames, VipStats};

/// The VIP reconciler's settings and memory.
pub struct Vips {
    pub names: VipNames,
    /// Least time between two event-driven passes (each lists Marathon).
    pub min_event_gap: Duration,
    wanted: AtomicBool,
    last: Mutex<Option<Instant>>,
    /// Bad labels already logged, so a bad label is told once, not at every pass (the
    /// gauge `contrail_mesos_vip_bad_labels` says it is still there).
    warned: Mutex<HashSet<BadLabel>>,
    /// One pass at a time (the stream's re-list and the periodic thread may both run one).
    pass: Mutex<()>,
}

impl Vips {
    pub fn new(names: VipNames, min_event_gap: Duration) -> Vips {
        Vips {
            names,
            min_event_gap,
            wanted: AtomicBool::new(false),
            last: Mutex::new(None),
            warned: Mutex::new(HashSet::new()),
            pass: Mutex::new(()),
        }
    }

    /// A task changed (status, health): a pass is wanted.
    pub fn want(&self) {
        self.wanted.store(true, Ordering::SeqCst);
    }

    /// Whether an event-driven pass is due now (wanted, and the gap since the last passed).
    pub fn due(&self) -> bool {
        let last = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|l| l.elapsed() < self.min_event_gap) {
            return false;
        }
        self.wanted.swap(false, Ordering::SeqCst)
    }

    /// Brings VNC in step with `apps`. `complete`: the listing is the whole truth, so what
    /// it lacks may be deleted; otherwise this pass only adds.
    pub fn pass(
        &self,
        w: &Writer,
        apps: &[ServiceApp],
        complete: bool,
        metrics: &Metrics,
    ) -> Result<VipStats, crate::vnc::VncError> {
        let _one = self.pass.lock().unwrap_or_else(PoisonError::into_inner);
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        let d = desired(apps);
        {
            let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
            for b in &d.bad {
                if warned.insert(b.clone()) {
                    tracing::warn!(app = %b.app, label = %b.label, value = %b.value, reason = %b.why,
                        "VIP label not understood: no load balancer for it (the task runs as usual)");
                }
            }
            // Forget what is fixed, so it is told again should it come back.
            warned.retain(|b| d.bad.contains(b));
        }
        metrics.vip_bad_labels.store(d.bad.len() as i64, Relaxed);
        metrics.vip_passes.fetch_add(1, Relaxed);
        let r = w.apply_vips(&d, &self.names, complete);
        match &r {
            Ok(st) => {
                metrics.vip_errors.fetch_add(st.errors as u64, Relaxed);
                metrics
                    .vip_loadbalancers
                    .store(st.loadbalancers as i64, Relaxed);
                metrics.vip_members.store(st.members as i64, Relaxed);
                if st.created + st.deleted + st.updated > 0 {
                    tracing::info!(
                        created = st.created,
                        deleted = st.deleted,
                        updated = st.updated,
                        loadbalancers = st.loadbalancers,
                        members = st.members,
                        "VIP pass"
                    );
                }
            }
            Err(e) => {
                metrics.vip_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "VIP pass failed; next pass retries");
            }
        }
        r
    }
}
