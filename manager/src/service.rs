//! The manager's core operations, shared by the attachment API, the Marathon watcher and the
//! reconciler. Operations on one container are serialised (striped locks): its interfaces
//! share the VM, whose creation and deletion must not interleave.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use contrail_mesos_api::{ApiError, AttachRequest, Attachment, ErrorKind};

use crate::cache::Cache;
use crate::metrics::Metrics;
use crate::vnc::{AttachError, Writer};

const STRIPES: usize = 256;

pub struct Manager {
    pub writer: Writer,
    pub cache: Arc<Cache>,
    pub metrics: Arc<Metrics>,
    locks: Vec<Mutex<()>>,
}

impl From<AttachError> for ApiError {
    fn from(e: AttachError) -> ApiError {
        match e {
            AttachError::BadLabel { label, message } => {
                ApiError::new(ErrorKind::BadLabel, Some(label), message)
            }
            AttachError::Conflict(m) => ApiError::new(ErrorKind::Conflict, None, m),
            AttachError::Unavailable(m) => ApiError::new(ErrorKind::Unavailable, None, m),
            AttachError::Internal(m) => ApiError::new(ErrorKind::Internal, None, m),
        }
    }
}

fn stripe(cid: &str) -> usize {
    cid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, c| {
        (h ^ c as u64).wrapping_mul(0x100_0000_01b3)
    }) as usize
        % STRIPES
}

impl Manager {
    pub fn new(writer: Writer, metrics: Arc<Metrics>) -> Manager {
        let cache = writer.cache.clone();
        Manager {
            writer,
            cache,
            metrics,
            locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Runs `f` holding the container's lock.
    pub fn with_container<T>(&self, cid: &str, f: impl FnOnce() -> T) -> T {
        let _g = self.locks[stripe(cid)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f()
    }

    /// Rebuilds the cache from VNC (start-up). Returns the number of attachments found.
    pub fn rebuild(&self) -> Result<usize, AttachError> {
        let scan = self.writer.scan()?;
        let n = scan.owned.len();
        self.cache.replace_all(scan.owned);
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
        let r = self.with_container(&req.container_id, || self.writer.attach(req));
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
