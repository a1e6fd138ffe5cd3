//! Drives the reconcile core: follows Marathon's event stream (re-listing after every
//! (re)connect, since the stream is only cache invalidation), applies events to the live-task
//! index, and runs full passes periodically. Deletions go through the same per-container
//! locks as the attachment API.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::marathon::model::is_terminal_condition;
use crate::marathon::{Event, MarathonApi};
use crate::reconcile::{Action, Policy, TaskIndex, affected_by_task, reconcile};
use crate::service::Manager;
use crate::vnc::writer::now_secs;

#[derive(Debug, Clone, Copy)]
pub struct WatchConfig {
    pub policy: Policy,
    pub interval: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

pub struct Watcher {
    pub mgr: Arc<Manager>,
    pub marathon: Arc<dyn MarathonApi>,
    pub cfg: WatchConfig,
    pub index: Mutex<TaskIndex>,
    pub shutdown: Arc<AtomicBool>,
    /// Serialises full passes (periodic and after a re-list).
    pass: Mutex<()>,
}

/// Outcome of one full pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    pub tasks: usize,
    pub owned: usize,
    pub deleted: usize,
    pub joined: usize,
}

impl Watcher {
    pub fn new(
        mgr: Arc<Manager>,
        marathon: Arc<dyn MarathonApi>,
        cfg: WatchConfig,
        shutdown: Arc<AtomicBool>,
    ) -> Watcher {
        Watcher {
            mgr,
            marathon,
            cfg,
            index: Mutex::new(TaskIndex::default()),
            shutdown,
            pass: Mutex::new(()),
        }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, TaskIndex> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Full re-list from Marathon, then a full pass against what VNC holds. A failed list
    /// means no pass: deleting on an incomplete picture is how leaks become outages.
    pub fn relist_and_reconcile(&self) -> anyhow::Result<PassStats> {
        let _pass = self.pass.lock().unwrap_or_else(|p| p.into_inner());
        let tasks = self.marathon.list_tasks().inspect_err(|_| {
            self.mgr.metrics.marathon_errors.fetch_add(1, Relaxed);
        })?;
        self.mgr.metrics.marathon_lists.fetch_add(1, Relaxed);
        let ix = TaskIndex::from_tasks(tasks);
        let n_tasks = ix.len();
        *self.index() = ix;
        let scan = self
            .mgr
            .writer
            .scan()
            .map_err(|e| anyhow::anyhow!("scanning VNC: {e}"))?;
        let actions = {
            let ix = self.index();
            reconcile(&scan.owned, &scan.orphans, &ix, now_secs(), self.cfg.policy)
        };
        let n_owned = scan.owned.len();
        for cid in &scan.vms_without_vrouter {
            let w = &self.mgr.writer;
            if let Err(e) = self.mgr.with_container(cid, || w.restore_vrouter_ref(cid)) {
                tracing::warn!(%cid, error = %e, "restoring the virtual-router ref failed; next pass retries");
            }
        }
        // VNC is the authority: the cache follows the scan (moved, not copied).
        self.mgr.cache.replace_all(scan.owned);
        drop(scan.orphans);
        let mut st = self.execute(actions, true);
        st.tasks = n_tasks;
        st.owned = n_owned;
        self.mgr.metrics.reconcile_runs.fetch_add(1, Relaxed);
        self.mgr
            .metrics
            .attachments
            .store(self.mgr.cache.len() as i64, Relaxed);
        tracing::info!(
            tasks = st.tasks,
            owned = st.owned,
            deleted = st.deleted,
            joined = st.joined,
            "reconcile pass"
        );
        Ok(st)
    }

    fn execute(&self, actions: Vec<Action>, from_reconciler: bool) -> PassStats {
        let mut st = PassStats::default();
        let w = &self.mgr.writer;
        for a in actions {
            match a {
                Action::Delete {
                    container_id,
                    ifname,
                    reason,
                } => {
                    tracing::info!(cid = %container_id, %ifname, reason, "deleting attachment");
                    match self
                        .mgr
                        .with_container(&container_id, || w.detach(&container_id, &ifname))
                    {
                        Ok(_) => {
                            st.deleted += 1;
                            let m = if from_reconciler {
                                &self.mgr.metrics.reconcile_deletions
                            } else {
                                &self.mgr.metrics.event_deletions
                            };
                            m.fetch_add(1, Relaxed);
                        }
                        Err(e) => {
                            tracing::warn!(cid = %container_id, %ifname, error = %e, "delete failed; next pass retries")
                        }
                    }
                }
                Action::Join {
                    container_id,
                    task_id,
                } => {
                    match self
                        .mgr
                        .with_container(&container_id, || w.join_task(&container_id, &task_id))
                    {
                        Ok(()) => {
                            st.joined += 1;
                            self.mgr.metrics.joins.fetch_add(1, Relaxed);
                        }
                        Err(e) => {
                            tracing::warn!(cid = %container_id, %task_id, error = %e, "join failed")
                        }
                    }
                }
                Action::DeleteObject { ty, uuid } => {
                    tracing::info!(%ty, %uuid, "deleting orphan object");
                    match w.delete_object(&ty, &uuid) {
                        Ok(()) => {
                            st.deleted += 1;
                            self.mgr.metrics.reconcile_deletions.fetch_add(1, Relaxed);
                        }
                        Err(e) => tracing::warn!(%ty, %uuid, error = %e, "orphan delete failed"),
                    }
                }
            }
        }
        st
    }

    /// Applies one event: updates the live-task index, then reconciles only the attachments
    /// the event concerns. Unjoined attachments are never deleted here (only after the grace,
    /// by a full pass): a late event about an old task could carry an address VNC has since
    /// given to a new container.
    pub fn apply(&self, ev: Event) -> PassStats {
        self.mgr.metrics.sse_events.fetch_add(1, Relaxed);
        let policy = Policy {
            delete_unjoined: false,
            ..self.cfg.policy
        };
        let affected = match ev {
            Event::StatusUpdate(t) => {
                self.index().upsert(t.clone());
                self.mgr
                    .cache
                    .filter(|o| affected_by_task(std::slice::from_ref(o), &t).len() == 1)
            }
            Event::InstanceChanged {
                instance_id,
                condition,
            } if is_terminal_condition(&condition) => {
                let ids = self.index().remove_instance(&instance_id);
                let prefix = format!("{instance_id}.");
                self.mgr.cache.filter(|o| {
                    o.task_id.as_deref().is_some_and(|t| {
                        t == instance_id || t.starts_with(&prefix) || ids.iter().any(|i| i == t)
                    })
                })
            }
            _ => return PassStats::default(),
        };
        if affected.is_empty() {
            return PassStats::default();
        }
        let actions = {
            let ix = self.index();
            reconcile(&affected, &[], &ix, now_secs(), policy)
        };
        self.execute(actions, false)
    }

    fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        while !self.shutdown.load(Ordering::Relaxed) && Instant::now() < end {
            std::thread::sleep(
                Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())),
            );
        }
    }

    /// The stream loop: connect, re-list, follow; on any end, back off and start over.
    pub fn run_stream(&self) {
        let mut backoff = self.cfg.backoff_min;
        while !self.shutdown.load(Ordering::Relaxed) {
            let stream = self.marathon.events();
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    self.mgr.metrics.marathon_errors.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, "event stream connect failed");
                    self.sleep(backoff);
                    backoff = (backoff * 2).min(self.cfg.backoff_max);
                    continue;
                }
            };
            self.mgr.metrics.sse_reconnects.fetch_add(1, Relaxed);
            tracing::info!(url = %self.marathon.current_url(), "event stream connected");
            // Events may have been missed while disconnected: start from a fresh snapshot.
            if let Err(e) = self.relist_and_reconcile() {
                tracing::warn!(error = %e, "re-list failed");
            }
            loop {
                if self.shutdown.load(Ordering::Relaxed) {
                    return;
                }
                match stream.next_event() {
                    Ok(Some(ev)) => {
                        backoff = self.cfg.backoff_min;
                        self.apply(ev);
                    }
                    Ok(None) => {
                        tracing::info!("event stream closed by Marathon");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream failed");
                        break;
                    }
                }
            }
            self.sleep(backoff);
            backoff = (backoff * 2).min(self.cfg.backoff_max);
        }
    }

    /// Periodic full passes.
    pub fn run_periodic(&self) {
        while !self.shutdown.load(Ordering::Relaxed) {
            self.sleep(self.cfg.interval);
            if self.shutdown.load(Ordering::Relaxed) {
                break;
            }
            if let Err(e) = self.relist_and_reconcile() {
                tracing::warn!(error = %e, "periodic reconcile skipped");
            }
        }
    }
}
