//! The manager's core operations, shared by the attachment API, the Marathon watcher and the
//! reconciler. Operations on one container are serialised (a lock per container id): its
//! interfaces share the VM, whose creation and deletion must not interleave. One lock per
//! container, not a fixed set of stripes: with 256 stripes, one VNC call stuck for its timeout
//! held a stripe that every client hit within a few hundred requests, and all registrations
//! stalled behind it (seen in the bench as a 10 s stall of every client).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use contrail_mesos_api::{ApiError, AttachRequest, Attachment, ErrorKind, Isolation};

use crate::cache::Cache;
use crate::isolation::PlacementError;
use crate::mesos::AgentApi;
use crate::metrics::Metrics;
use crate::vnc::{AttachError, Writer};

pub struct Manager {
    pub writer: Writer,
    pub cache: Arc<Cache>,
    pub metrics: Arc<Metrics>,
    /// Container id -> its lock, present while someone holds or waits for it.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// `[cluster] isolation`: the mode of a request without `networks` and `isolation`.
    pub isolation: Isolation,
    /// The agents' operator API, which names a container's Marathon task (group and app
    /// modes need it).
    pub agents: Option<Arc<dyn AgentApi>>,
    /// The apps marathon-lb exposes, as of the watcher's last listing.
    pub marathon_lb: std::sync::RwLock<std::collections::HashSet<String>>,
    /// What the start-up scan found besides the attachments, for the first pass to use
    /// instead of a scan of its own (`Watcher::relist_and_reconcile`).
    pub start_scan: Mutex<Option<StartScan>>,
}

/// The start-up scan, as the first reconcile pass may use it.
pub struct StartScan {
    /// When the scan started.
    pub at: std::time::Instant,
    /// The cache's generation once it held the scan: a registration or deregistration since
    /// changes it, and the scan is not used.
    pub generation: u64,
    pub vms_without_vrouter: Vec<String>,
}

impl From<AttachError> for ApiError {
    fn from(e: AttachError) -> ApiError {
        match e {
            AttachError::BadLabel { label, message } => {
                ApiError::new(ErrorKind::BadLabel, Some(label), message)
            }
            AttachError::Conflict(m) => ApiError::new(ErrorKind::Conflict, None, m),
            AttachError::Unavailable(m) | AttachError::Misconfigured(m) => {
                ApiError::new(ErrorKind::Unavailable, None, m)
            }
            AttachError::Internal(m) | AttachError::Stale(m) => {
                ApiError::new(ErrorKind::Internal, None, m)
            }
        }
    }
}

impl Manager {
    pub fn new(writer: Writer, metrics: Arc<Metrics>) -> Manager {
        let cache = writer.cache.clone();
        Manager {
            writer,
            cache,
            metrics,
            locks: Mutex::new(HashMap::new()),
            isolation: Isolation::Cluster,
            agents: None,
            marathon_lb: Default::default(),
            start_scan: Mutex::new(None),
        }
    }

    /// Runs `f` holding the container's lock.
    pub fn with_container<T>(&self, cid: &str, f: impl FnOnce() -> T) -> T {
        let map = || self.locks.lock().unwrap_or_else(|p| p.into_inner());
        let l = map().entry(cid.to_owned()).or_default().clone();
        let r = {
            let _g = l.lock().unwrap_or_else(|p| p.into_inner());
            f()
        };
        // Forget the lock when nobody else holds or waits for it (counted under the map's
        // lock, where every other user got its clone).
        let mut m = map();
        if Arc::strong_count(&l) == 2 {
            m.remove(cid);
        }
        r
    }

    /// Containers whose lock is held or awaited (tests, metrics).
    pub fn locked_containers(&self) -> usize {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Rebuilds the cache from VNC (start-up). Returns the number of attachments found.
    pub fn rebuild(&self) -> Result<usize, AttachError> {
        let at = std::time::Instant::now();
        let scan = self.writer.scan()?;
        let n = scan.owned.len();
        self.cache.replace_all(scan.owned);
        // Orphans are not kept: a pass that uses this scan leaves them to the next one.
        *self.start_scan.lock().unwrap_or_else(|p| p.into_inner()) = Some(StartScan {
            at,
            generation: self.cache.generation(),
            vms_without_vrouter: scan.vms_without_vrouter,
        });
        self.metrics.attachments.store(n as i64, Relaxed);
        Ok(n)
    }

    pub fn attach(&self, req: &AttachRequest) -> Result<(Attachment, bool), ApiError> {
        if req.container_id.is_empty()
            || req.ifname.is_empty()
            || req.container_id.contains('/')
            || req.ifname.contains('/')
        {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                None,
                "container-id and ifname must be non-empty and contain no '/'",
            ));
        }
        // The same check the CNI host makes on its plugin's answer: a request from anything
        // else (an older host, curl) gets it here, before any VNC call.
        if let Err(e) = req.request.validate() {
            self.metrics.attach_err.fetch_add(1, Relaxed);
            return Err(ApiError::new(
                ErrorKind::BadLabel,
                Some(label_of(e.field)),
                e.to_string(),
            ));
        }
        let r = match crate::isolation::place(
            req,
            self.isolation,
            self.writer.cfg.group_depth,
            self.agents.as_deref(),
        ) {
            Ok((placement, mut who)) => self.with_container(&req.container_id, || {
                if let Some(w) = who.as_mut() {
                    w.marathon_lb = self
                        .marathon_lb
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains(&w.app_id);
                }
                self.writer.attach_placed(req, &placement, who.as_ref())
            }),
            Err(PlacementError::AgentUnreachable(e)) => Err(AttachError::Unavailable(format!(
                "the container's Mesos agent cannot say which app it runs ({e}); {} isolation needs it",
                crate::isolation::mode_of(req, self.isolation).as_str()
            ))),
            Err(PlacementError::NoAgentApi) => Err(AttachError::BadLabel {
                label: "isolation",
                message: format!(
                    "{} isolation needs the agents' operator API, and this manager has no [mesos] agent-url",
                    crate::isolation::mode_of(req, self.isolation).as_str()
                ),
            }),
        };
        match &r {
            Ok(_) => {
                self.metrics.attach_ok.fetch_add(1, Relaxed);
            }
            Err(e) => {
                self.metrics.attach_err.fetch_add(1, Relaxed);
                tracing::warn!(cid = %req.container_id, ifname = %req.ifname, error = %e, "registration failed");
            }
        }
        self.metrics
            .attachments
            .store(self.cache.len() as i64, Relaxed);
        r.map_err(ApiError::from)
    }

    pub fn detach(&self, cid: &str, ifname: &str) -> Result<bool, ApiError> {
        let r = self.with_container(cid, || self.writer.detach(cid, ifname));
        self.metrics.detach_total.fetch_add(1, Relaxed);
        self.metrics
            .attachments
            .store(self.cache.len() as i64, Relaxed);
        r.map_err(ApiError::from)
    }

    /// The watcher's deletion: the same lock, writer call and metrics as [`Manager::detach`],
    /// through the watcher's (fenced) writer, and only if the attachment is still the one the
    /// decision was about: re-registered since (another VMI) means it is kept (`Ok(None)`).
    pub fn detach_decided(
        &self,
        via: &Writer,
        cid: &str,
        ifname: &str,
        vmi_uuid: &str,
    ) -> Result<Option<bool>, AttachError> {
        let key = (cid.to_owned(), ifname.to_owned());
        let r = self.with_container(cid, || match self.cache.get(&key) {
            Some(o) if o.attachment.vmi_uuid != vmi_uuid => Ok(None),
            _ => via.detach(cid, ifname).map(Some),
        });
        if matches!(r, Ok(Some(_))) {
            self.metrics.detach_total.fetch_add(1, Relaxed);
        }
        self.metrics
            .attachments
            .store(self.cache.len() as i64, Relaxed);
        r
    }

    pub fn get(&self, cid: &str, ifname: &str) -> Option<Attachment> {
        self.cache
            .get(&(cid.to_owned(), ifname.to_owned()))
            .map(|o| o.attachment)
    }

    pub fn list(&self) -> Vec<Attachment> {
        let mut v: Vec<Attachment> = self.cache.all().into_iter().map(|o| o.attachment).collect();
        v.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
        v
    }
}

/// The Mesos label a request field comes from (`ValidationError::field` names the field).
fn label_of(field: &str) -> &str {
    match field {
        "domain" => "domain-name",
        "project" => "project-name",
        "network" => "networks",
        "subnets" => "network-subnets",
        "ip" => "network-ip",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    fn manager() -> Manager {
        struct NoVnc;
        impl crate::vnc::VncApi for NoVnc {
            fn create(
                &self,
                _: &str,
                _: serde_json::Value,
            ) -> Result<String, crate::vnc::VncError> {
                Err(crate::vnc::VncError::Transport("none".into()))
            }
            fn read(
                &self,
                _: &str,
                _: &str,
            ) -> Result<crate::vnc::model::VncObject, crate::vnc::VncError> {
                Err(crate::vnc::VncError::Transport("none".into()))
            }
            fn update(
                &self,
                _: &str,
                _: &str,
                _: serde_json::Value,
            ) -> Result<(), crate::vnc::VncError> {
                Err(crate::vnc::VncError::Transport("none".into()))
            }
            fn delete(&self, _: &str, _: &str) -> Result<(), crate::vnc::VncError> {
                Err(crate::vnc::VncError::Transport("none".into()))
            }
            fn list_each(
                &self,
                _: &str,
                _: &mut dyn FnMut(crate::vnc::model::VncObject),
            ) -> Result<(), crate::vnc::VncError> {
                Err(crate::vnc::VncError::Transport("none".into()))
            }
            fn fqname_to_id(
                &self,
                _: &str,
                _: &[String],
            ) -> Result<Option<String>, crate::vnc::VncError> {
                Err(crate::vnc::VncError::Transport("none".into()))
            }
            fn ref_update(
                &self,
                _: &str,
                _: &str,
                _: &str,
                _: &str,
                _: crate::vnc::RefOp,
            ) -> Result<(), crate::vnc::VncError> {
                Err(crate::vnc::VncError::Transport("none".into()))
            }
            fn ref_add_with_attr(
                &self,
                _: &str,
                _: &str,
                _: &str,
                _: &str,
                _: &serde_json::Value,
            ) -> Result<(), crate::vnc::VncError> {
                Err(crate::vnc::VncError::Transport("none".into()))
            }
        }
        let writer = Writer {
            api: Arc::new(NoVnc),
            cfg: crate::vnc::WriterConfig {
                owner: "o".into(),
                cluster: "c".into(),
                domain: "d".into(),
                project: "p".into(),
                network: "n".into(),
                subnet: None,
                group_depth: 1,
                fabric: Default::default(),
                dns: None,
            },
            cache: Arc::new(Cache::default()),
        };
        Manager::new(writer, Arc::new(Metrics::default()))
    }

    #[test]
    fn a_container_held_up_blocks_no_other_container() {
        let m = Arc::new(manager());
        let release = Arc::new(AtomicBool::new(false));
        let (m2, r2) = (m.clone(), release.clone());
        // One container's operation is stuck (a VNC call waiting for its timeout).
        let stuck = std::thread::spawn(move || {
            m2.with_container("stuck", || {
                while !r2.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        });
        while m.locked_containers() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Every other container goes through meanwhile (with 256 stripes, one in 256 of
        // these waited for the stuck one).
        for i in 0..2000 {
            m.with_container(&format!("c{i}"), || ());
        }
        assert_eq!(
            m.locked_containers(),
            1,
            "only the stuck container's lock is left"
        );
        release.store(true, Ordering::SeqCst);
        stuck.join().unwrap();
        assert_eq!(m.locked_containers(), 0);
    }
}
