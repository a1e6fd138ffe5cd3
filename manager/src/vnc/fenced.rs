//! The watcher's view of VNC: every write is checked against the leadership fence right
//! before it is sent.
//!
//! The attachment API (which any manager serves, leader or not) writes through the plain
//! client; only what the *watcher* decides (deleting what ended, joins, restoring refs) goes
//! through [`Fenced`]. A leader frozen past its ZooKeeper session (SIGSTOP, a VM pause) resumes
//! believing it leads, with decisions taken from a picture that is no longer true while another
//! manager now acts; checking the lease before each request, not once per pass, means a pass
//! that was half-way through when the process froze sends nothing more once it resumes.
//!
//! VNC itself has no fencing token (a conditional write keyed on an epoch), so a request that
//! already left before the freeze still lands; the window is one request, not one pass.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::Value;

use super::client::{RefOp, VncApi, VncError};
use super::model::VncObject;
use crate::leader::Leadership;
use crate::metrics::Metrics;

pub struct Fenced {
    pub inner: Arc<dyn VncApi>,
    pub leader: Arc<dyn Leadership>,
    pub metrics: Arc<Metrics>,
}

impl Fenced {
    fn check(&self, what: &str) -> Result<(), VncError> {
        self.leader.fence().map_err(|e| {
            self.metrics.fenced_writes.fetch_add(1, Relaxed);
            tracing::warn!(write = what, error = %e, "VNC write refused by the leadership fence");
            VncError::Fenced(e.to_string())
        })
    }
}

impl VncApi for Fenced {
    fn create(&self, ty: &str, obj: Value) -> Result<String, VncError> {
        self.check("create")?;
        self.inner.create(ty, obj)
    }
    fn create_text(&self, ty: &str, obj: &str) -> Result<String, VncError> {
        self.check("create")?;
        self.inner.create_text(ty, obj)
    }
    fn read(&self, ty: &str, uuid: &str) -> Result<VncObject, VncError> {
        self.inner.read(ty, uuid)
    }
    fn update(&self, ty: &str, uuid: &str, obj: Value) -> Result<(), VncError> {
        self.check("update")?;
        self.inner.update(ty, uuid, obj)
    }
    fn delete(&self, ty: &str, uuid: &str) -> Result<(), VncError> {
        self.check("delete")?;
        self.inner.delete(ty, uuid)
    }
    fn list_each(&self, ty: &str, f: &mut dyn FnMut(VncObject)) -> Result<(), VncError> {
        self.inner.list_each(ty, f)
    }
    fn list_fields_each(
        &self,
        ty: &str,
        fields: &[&str],
        f: &mut dyn FnMut(VncObject),
    ) -> Result<(), VncError> {
        self.inner.list_fields_each(ty, fields, f)
    }
    fn fqname_to_id(&self, ty: &str, fq_name: &[String]) -> Result<Option<String>, VncError> {
        self.inner.fqname_to_id(ty, fq_name)
    }
    fn ref_update(
        &self,
        ty: &str,
        uuid: &str,
        ref_ty: &str,
        ref_uuid: &str,
        op: RefOp,
    ) -> Result<(), VncError> {
        self.check("ref-update")?;
        self.inner.ref_update(ty, uuid, ref_ty, ref_uuid, op)
    }
    fn ref_add_with_attr(
        &self,
        ty: &str,
        uuid: &str,
        ref_ty: &str,
        ref_uuid: &str,
        attr: &Value,
    ) -> Result<(), VncError> {
        self.check("ref-update")?;
        self.inner
            .ref_add_with_attr(ty, uuid, ref_ty, ref_uuid, attr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::NotLeader;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Records what reached the server.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);
    impl VncApi for Recorder {
        fn create(&self, ty: &str, _: Value) -> Result<String, VncError> {
            self.0.lock().unwrap().push(format!("create {ty}"));
            Ok("u".into())
        }
        fn read(&self, ty: &str, _: &str) -> Result<VncObject, VncError> {
            self.0.lock().unwrap().push(format!("read {ty}"));
            Err(VncError::Status {
                status: 404,
                body: String::new(),
            })
        }
        fn update(&self, ty: &str, _: &str, _: Value) -> Result<(), VncError> {
            self.0.lock().unwrap().push(format!("update {ty}"));
            Ok(())
        }
        fn delete(&self, ty: &str, _: &str) -> Result<(), VncError> {
            self.0.lock().unwrap().push(format!("delete {ty}"));
            Ok(())
        }
        fn list_each(&self, ty: &str, _: &mut dyn FnMut(VncObject)) -> Result<(), VncError> {
            self.0.lock().unwrap().push(format!("list {ty}"));
            Ok(())
        }
        fn fqname_to_id(&self, ty: &str, _: &[String]) -> Result<Option<String>, VncError> {
            self.0.lock().unwrap().push(format!("fqname {ty}"));
            Ok(None)
        }
        fn ref_update(
            &self,
            ty: &str,
            _: &str,
            _: &str,
            _: &str,
            _: RefOp,
        ) -> Result<(), VncError> {
            self.0.lock().unwrap().push(format!("ref {ty}"));
            Ok(())
        }
        fn ref_add_with_attr(
            &self,
            ty: &str,
            _: &str,
            _: &str,
            _: &str,
            _: &Value,
        ) -> Result<(), VncError> {
            self.0.lock().unwrap().push(format!("ref {ty}"));
            Ok(())
        }
    }

    struct Switch(AtomicBool);
    impl Leadership for Switch {
        fn is_leader(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
        fn fence(&self) -> Result<(), NotLeader> {
            if self.is_leader() {
                Ok(())
            } else {
                Err(NotLeader("test".into()))
            }
        }
        fn elections_won(&self) -> u64 {
            0
        }
        fn role(&self) -> &'static str {
            "test"
        }
    }

    #[test]
    fn writes_reach_the_server_only_while_leading_and_reads_always() {
        let rec = Arc::new(Recorder::default());
        let sw = Arc::new(Switch(AtomicBool::new(true)));
        let metrics = Arc::new(Metrics::default());
        let f = Fenced {
            inner: rec.clone(),
            leader: sw.clone(),
            metrics: metrics.clone(),
        };
        f.delete("virtual-machine", "a").unwrap();
        sw.0.store(false, Ordering::SeqCst);
        let writes: Vec<Result<(), VncError>> = vec![
            f.delete("virtual-machine", "b"),
            f.update("virtual-machine", "b", Value::Null),
            f.create("instance-ip", Value::Null).map(|_| ()),
            f.create_text("instance-ip", "{}").map(|_| ()),
            f.ref_update("virtual-router", "r", "virtual-machine", "b", RefOp::Delete),
        ];
        for w in &writes {
            assert!(matches!(w, Err(VncError::Fenced(_))), "{w:?}");
            assert!(!w.as_ref().unwrap_err().is_transient());
        }
        let _ = f.read("virtual-machine", "b");
        f.list_each("virtual-machine", &mut |_| {}).unwrap();
        f.fqname_to_id("domain", &[]).unwrap();
        assert_eq!(
            *rec.0.lock().unwrap(),
            [
                "delete virtual-machine",
                "read virtual-machine",
                "list virtual-machine",
                "fqname domain"
            ]
        );
        assert_eq!(metrics.fenced_writes.load(Relaxed), 5);
    }
}
