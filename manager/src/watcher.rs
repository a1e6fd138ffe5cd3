//! Drives the reconcile core: follows Marathon's event stream (re-listing after every
//! (re)connect, since the stream is only cache invalidation), applies events to the live-task
//! index, and runs full passes periodically. Deletions go through the same per-container
//! locks as the attachment API.
//!
//! With several managers, only the leader ([`Leadership`]) follows the stream and runs passes;
//! a follower waits, and becoming leader starts with a fresh listing. Every VNC write the
//! watcher makes goes through [`Fenced`], which refuses it once the leadership lease is gone.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cache::Owned;
use crate::leader::{Leadership, Standalone};
use crate::marathon::model::{instance_task_ids, is_terminal_condition};
use crate::marathon::{Event, MarathonApi, MarathonError};
use crate::mesos::{AgentApi, AgentView};
use crate::reconcile::{Action, Hold, Policy, TaskIndex, affected_by_task, guard, reconcile};
use crate::service::Manager;
use crate::vnc::writer::now_secs;
use crate::vnc::{Fenced, Writer};

/// How recent the start-up scan must be for the first pass to use it instead of its own.
const START_SCAN_REUSE: Duration = Duration::from_secs(30);

/// How often a follower checks whether it now leads.
const FOLLOWER_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct WatchConfig {
    pub policy: Policy,
    pub interval: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Share (percent) of owned attachments one pass may delete without confirmation.
    pub max_delete_percent: u64,
    /// Delay before the confirming listing of a held pass.
    pub confirm_delay: Duration,
}

pub struct Watcher {
    pub mgr: Arc<Manager>,
    pub marathon: Arc<dyn MarathonApi>,
    /// The Mesos agents' operator API, when configured (`[mesos] agent-url`).
    pub agents: Option<Arc<dyn AgentApi>>,
    pub cfg: WatchConfig,
    pub index: Mutex<TaskIndex>,
    pub shutdown: Arc<AtomicBool>,
    /// Who may act; see [`Watcher::with_leadership`].
    pub leader: Arc<dyn Leadership>,
    /// The manager's writer over the fenced VNC client: every write the watcher makes.
    writer: Writer,
    /// With several managers, attachments registered through another one reach this cache
    /// only at a full pass: a task event carrying an address no cached attachment has then
    /// asks for a pass, at most one per this gap. `None`: the cache is complete between passes
    /// (one manager), an unknown address is a task on another network.
    pub pass_on_cache_miss: Option<Duration>,
    pass_wanted: AtomicBool,
    /// Marathon VIPs as load balancers (`crate::vip`): after every full pass, and after task
    /// events between passes.
    pub vips: Option<Arc<crate::vip::Vips>>,
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
    /// Deletions not carried out (held and not confirmed, or from an incomplete listing).
    pub held: usize,
    /// Network policies changed or deleted to follow the tasks that ask for them.
    pub policies: usize,
    /// Group and app networks and projects removed once nothing used them.
    pub unused: usize,
}

impl Watcher {
    pub fn new(
        mgr: Arc<Manager>,
        marathon: Arc<dyn MarathonApi>,
        cfg: WatchConfig,
        shutdown: Arc<AtomicBool>,
    ) -> Watcher {
        let leader: Arc<dyn Leadership> = Arc::new(Standalone);
        Watcher {
            writer: fenced_writer(&mgr, leader.clone()),
            mgr,
            marathon,
            agents: None,
            cfg,
            index: Mutex::new(TaskIndex::default()),
            shutdown,
            leader,
            pass_on_cache_miss: None,
            pass_wanted: AtomicBool::new(false),
            vips: None,
            pass: Mutex::new(()),
        }
    }

    /// Acts only while `leader` leads (the default, [`Standalone`], always does).
    pub fn with_leadership(mut self, leader: Arc<dyn Leadership>) -> Watcher {
        self.writer = fenced_writer(&self.mgr, leader.clone());
        self.leader = leader;
        self
    }

    fn index(&self) -> std::sync::MutexGuard<'_, TaskIndex> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A full pass: what VNC holds, then what Marathon runs. A failed list means no pass:
    /// deleting on an incomplete picture is how leaks become outages.
    ///
    /// The order is the fence against stale joins: VNC is scanned *first*, so every
    /// attachment in the pass existed before the listing was taken. Listing first let a
    /// container created after the listing (and given a dead task's freed address) be
    /// joined to the dead task still in that older listing, and deleted with it.
    pub fn relist_and_reconcile(&self) -> anyhow::Result<PassStats> {
        let _pass = self.pass.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        self.leader
            .fence()
            .map_err(|e| anyhow::anyhow!("no pass: {e}"))?;
        let generation = self.mgr.cache.generation();
        // The first pass after start uses the start-up scan when it is recent and nothing was
        // registered or deleted since: it was taken before the listing below, as every pass's
        // scan is, and scanning 100,000 attachments again right away doubled the time from
        // start to the first completed pass. Its orphans wait for the next pass, which scans.
        let start = self
            .mgr
            .start_scan
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .filter(|s| s.generation == generation && s.at.elapsed() < START_SCAN_REUSE);
        let scan = match start {
            Some(s) => crate::inventory::Scan {
                owned: self.mgr.cache.all_shared(),
                orphans: Vec::new(),
                vms_without_vrouter: s.vms_without_vrouter,
            },
            None => {
                let scan = self
                    .mgr
                    .writer
                    .scan()
                    .map_err(|e| anyhow::anyhow!("scanning VNC: {e}"))?;
                // VNC is the authority: the cache follows the scan at once, sharing its
                // entries (the pass and the cache hold one copy, and what changed goes before
                // the listing is read), unless an API call changed the cache while the scan
                // ran (the scan may predate it).
                self.mgr
                    .cache
                    .replace_all_if(generation, scan.owned.iter().cloned());
                scan
            }
        };
        let owned: Vec<Arc<Owned>> = scan.owned;
        // Where a pass spends its time, in the pass's log line (a slow pass at scale is
        // either VNC's lists or Marathon's, and an operator needs to know which).
        let scanned = started.elapsed();
        let mut listing = self.list()?;
        let listed = started.elapsed();
        let services = std::mem::take(&mut listing.services);
        *self
            .mgr
            .marathon_lb
            .write()
            .unwrap_or_else(|p| p.into_inner()) = std::mem::take(&mut listing.marathon_lb)
            .into_iter()
            .collect();
        let complete = listing.incomplete.is_empty();
        let now = now_secs();
        // The index follows the listing in place (one index, not two, for the pass); events
        // wait while the pass reads it.
        let (n_tasks, mut actions) = {
            let mut ix = self.index();
            ix.refresh(listing.tasks, now, self.cfg.policy.grace_secs);
            let actions = reconcile(&owned, &scan.orphans, &ix, now, self.cfg.policy);
            (ix.len(), actions)
        };
        let mut held = 0;
        if !listing.incomplete.is_empty() {
            // Joins are safe on a partial listing; deciding what ended is not.
            let before = actions.len();
            actions.retain(|a| !matches!(a, Action::Delete { .. }));
            held = before - actions.len();
            self.mgr.metrics.marathon_incomplete.fetch_add(1, Relaxed);
            tracing::warn!(
                reasons = ?listing.incomplete,
                held,
                "Marathon listing incomplete: no attachment deleted in this pass"
            );
        } else {
            let hold = {
                let ix = self.index();
                guard(&owned, &ix, &actions, self.cfg.max_delete_percent)
            };
            if let Some(h) = hold {
                let (kept, h2) = self.confirm(h, &owned, actions);
                actions = kept;
                held = h2;
            }
        }
        self.mgr
            .metrics
            .reconcile_held_deletions
            .store(held as i64, Relaxed);
        let actions = self.with_agents(actions, &owned, true);
        let decided = started.elapsed();
        let n_owned = owned.len();
        drop(owned);
        for cid in &scan.vms_without_vrouter {
            let w = &self.writer;
            if let Err(e) = self.mgr.with_container(cid, || w.restore_vrouter_ref(cid)) {
                tracing::warn!(%cid, error = %e, "restoring the virtual-router ref failed; next pass retries");
            }
        }
        drop(scan.orphans);
        let mut st = self.execute(actions, true);
        let executed = started.elapsed();
        // After the deletions: the policies follow the ports left, then what no port and no
        // policy uses goes. Each reads VNC afresh; a failure waits for the next pass.
        match self.writer.collect_policies(self.cfg.policy.grace_secs) {
            Ok(p) => st.policies = p.updated + p.deleted,
            Err(e) => tracing::warn!(error = %e, "policy pass failed; next pass retries"),
        }
        match self.writer.collect_unused(self.cfg.policy.grace_secs) {
            Ok(u) => st.unused = u.networks + u.projects,
            Err(e) => tracing::warn!(error = %e, "unused-network pass failed; next pass retries"),
        }
        match self.writer.collect_records() {
            Ok(n) => st.unused += n,
            Err(e) => tracing::warn!(error = %e, "DNS record pass failed; next pass retries"),
        }
        let collected = started.elapsed();
        self.vip_pass(&services, complete);
        st.tasks = n_tasks;
        st.owned = n_owned;
        st.held = held;
        self.mgr
            .metrics
            .reconcile_last_pass_ms
            .store(started.elapsed().as_millis() as u64, Relaxed);
        self.mgr.metrics.reconcile_runs.fetch_add(1, Relaxed);
        release_free_memory();
        self.mgr
            .metrics
            .attachments
            .store(self.mgr.cache.len() as i64, Relaxed);
        tracing::info!(
            tasks = st.tasks,
            owned = st.owned,
            deleted = st.deleted,
            joined = st.joined,
            held = st.held,
            policies = st.policies,
            unused = st.unused,
            ms = started.elapsed().as_millis() as u64,
            scan_ms = scanned.as_millis() as u64,
            list_ms = (listed - scanned).as_millis() as u64,
            decide_ms = (decided - listed).as_millis() as u64,
            execute_ms = (executed - decided).as_millis() as u64,
            collect_ms = (collected - executed).as_millis() as u64,
            vip_ms = (started.elapsed() - collected).as_millis() as u64,
            "reconcile pass"
        );
        Ok(st)
    }

    /// With the agents' operator API: a container its agent still runs is not deleted, and a
    /// container whose executor is a live task is joined to that task (identity beats an
    /// address). Agents that cannot be asked leave Marathon's word standing. `all_nodes`:
    /// ask every node with an attachment (full pass), else only the nodes of deletions.
    fn with_agents<O: std::borrow::Borrow<Owned>>(
        &self,
        actions: Vec<Action>,
        owned: &[O],
        all_nodes: bool,
    ) -> Vec<Action> {
        let Some(api) = &self.agents else {
            return actions;
        };
        // The first interface of each container (a lookup per action: a scan per action was
        // quadratic over a pass with 100,000 joins).
        let mut first: std::collections::HashMap<&str, &Owned> =
            std::collections::HashMap::with_capacity(owned.len());
        for o in owned {
            let o = o.borrow();
            first.entry(o.attachment.container_id.as_str()).or_insert(o);
        }
        let find = |cid: &str| first.get(cid).copied();
        let nodes: Vec<&contrail_mesos_api::Node> = if all_nodes {
            owned.iter().map(|o| &*o.borrow().node).collect()
        } else {
            actions
                .iter()
                .filter_map(|a| match a {
                    Action::Delete { container_id, .. } => find(container_id).map(|o| &*o.node),
                    _ => None,
                })
                .collect()
        };
        if nodes.is_empty() {
            return actions;
        }
        let view = AgentView::fetch(api.as_ref(), nodes);
        // Held while the actions are rewritten (no I/O below): a clone of 100,000 tasks per
        // event was the alternative.
        let ix = self.index();
        let executor_task = |o: &Owned| -> Option<String> {
            let e = view.runs(&o.node, &o.attachment.container_id)??;
            ix.by_id.contains_key(e).then(|| e.to_owned())
        };
        let mut out = Vec::with_capacity(actions.len());
        let mut joined = std::collections::HashSet::new();
        for a in actions {
            match a {
                Action::Delete {
                    ref container_id, ..
                } if find(container_id)
                    .is_some_and(|o| matches!(view.runs(&o.node, container_id), Some(Some(_)))) =>
                {
                    self.mgr.metrics.agent_kept.fetch_add(1, Relaxed);
                    tracing::info!(cid = %container_id, "not deleted: its Mesos agent still runs the container");
                }
                Action::Join {
                    container_id,
                    task_id,
                } => {
                    let task_id = find(&container_id)
                        .and_then(executor_task)
                        .unwrap_or(task_id);
                    joined.insert(container_id.clone());
                    out.push(Action::Join {
                        container_id,
                        task_id,
                    });
                }
                other => out.push(other),
            }
        }
        if all_nodes {
            for o in owned {
                let o = o.borrow();
                let cid = &o.attachment.container_id;
                if let Some(t) = executor_task(o)
                    && o.task_id.as_deref() != Some(t.as_str())
                    && joined.insert(cid.clone())
                {
                    out.push(Action::Join {
                        container_id: cid.clone(),
                        task_id: t,
                    });
                }
            }
        }
        // A join replaced by the agent's answer may now be a no-op.
        out.retain(|a| match a {
            Action::Join {
                container_id,
                task_id,
            } => find(container_id).is_none_or(|o| o.task_id.as_deref() != Some(task_id.as_str())),
            _ => true,
        });
        out
    }

    fn list(&self) -> anyhow::Result<crate::marathon::Listing> {
        let l = self.marathon.list_tasks().inspect_err(|e| {
            self.mgr.metrics.marathon_errors.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, "Marathon listing failed");
        })?;
        self.mgr.metrics.marathon_lists.fetch_add(1, Relaxed);
        Ok(l)
    }

    /// A held pass: waits, lists again, and keeps only the deletions the second listing
    /// also calls for (joins and orphan deletions are kept as they were). Returns the
    /// actions to run and how many deletions were dropped.
    fn confirm<O: std::borrow::Borrow<Owned>>(
        &self,
        hold: Hold,
        owned: &[O],
        actions: Vec<Action>,
    ) -> (Vec<Action>, usize) {
        self.mgr.metrics.reconcile_held.fetch_add(1, Relaxed);
        let n_del = actions
            .iter()
            .filter(|a| matches!(a, Action::Delete { .. }))
            .count();
        tracing::warn!(
            ?hold,
            deletions = n_del,
            delay_ms = self.cfg.confirm_delay.as_millis() as u64,
            "reconcile pass held: confirming with a second listing before deleting"
        );
        self.sleep(self.cfg.confirm_delay);
        let confirmed: std::collections::HashSet<Action> = match self.list() {
            Ok(l) if l.incomplete.is_empty() => {
                let now = now_secs();
                let mut ix = self.index();
                ix.refresh(l.tasks, now, self.cfg.policy.grace_secs);
                reconcile(owned, &[], &ix, now, self.cfg.policy)
                    .into_iter()
                    .filter(|a| matches!(a, Action::Delete { .. }))
                    .collect()
            }
            Ok(l) => {
                tracing::warn!(reasons = ?l.incomplete, "confirming listing incomplete");
                Default::default()
            }
            Err(_) => Default::default(),
        };
        let before = actions.len();
        let kept: Vec<Action> = actions
            .into_iter()
            .filter(|a| !matches!(a, Action::Delete { .. }) || confirmed.contains(a))
            .collect();
        let dropped = before - kept.len();
        tracing::warn!(
            confirmed = n_del - dropped,
            dropped,
            "held deletions: only those the second listing confirmed are carried out"
        );
        (kept, dropped)
    }

    fn execute(&self, actions: Vec<Action>, from_reconciler: bool) -> PassStats {
        let mut st = PassStats::default();
        let w = &self.writer;
        for a in actions {
            match a {
                Action::Delete {
                    container_id,
                    ifname,
                    vmi_uuid,
                    reason,
                } => {
                    tracing::info!(cid = %container_id, %ifname, %vmi_uuid, reason, "deleting attachment");
                    let r = self
                        .mgr
                        .detach_decided(w, &container_id, &ifname, &vmi_uuid);
                    match r {
                        Ok(None) => {
                            tracing::info!(cid = %container_id, %ifname, "re-registered since the decision; kept");
                        }
                        Ok(Some(_)) => {
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
        if let Some(v) = &self.vips
            && matches!(
                ev,
                Event::StatusUpdate(_)
                    | Event::InstanceChanged { .. }
                    | Event::HealthChanged { .. }
            )
        {
            v.want();
        }
        let policy = Policy {
            delete_unjoined: false,
            ..self.cfg.policy
        };
        let affected = match ev {
            Event::StatusUpdate(t) => {
                self.index().upsert_at(t.clone(), now_secs());
                // Through the cache's indexes (by address, by joined task): the predicate
                // is the same as a scan's, over the few attachments that can match.
                let affected =
                    self.mgr
                        .cache
                        .filter_related(&t.ips, std::slice::from_ref(&t.id), &[], |o| {
                            affected_by_task(std::slice::from_ref(o), &t).len() == 1
                        });
                if affected.is_empty() && !t.ips.is_empty() && self.pass_on_cache_miss.is_some() {
                    self.pass_wanted.store(true, Ordering::SeqCst);
                }
                affected
            }
            Event::InstanceChanged {
                instance_id,
                condition,
            } if is_terminal_condition(&condition) => {
                let ids = self.index().remove_instance(&instance_id);
                let roots = instance_task_ids(&instance_id);
                self.mgr.cache.filter_related(&[], &ids, &roots, |o| {
                    o.task_id.as_deref().is_some_and(|t| {
                        roots.iter().any(|r| {
                            t == r
                                || t.strip_prefix(r.as_str())
                                    .is_some_and(|x| x.starts_with('.'))
                        }) || ids.iter().any(|i| i == t)
                    })
                })
            }
            Event::Undecodable { name, error } => {
                self.mgr.metrics.marathon_bad_events.fetch_add(1, Relaxed);
                tracing::warn!(event = %name, %error, "Marathon event not understood; ignored (the next full pass covers it)");
                return PassStats::default();
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
        let actions = self.with_agents(actions, &affected, false);
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
            if !self.leader.is_leader() {
                self.sleep(FOLLOWER_POLL);
                continue;
            }
            let stream = self.marathon.events();
            let mut stream = match stream {
                Ok(s) => s,
                Err(e @ MarathonError::Tls(_)) => {
                    // Only a change of configuration or of the server's certificate helps:
                    // ask again at the longest interval, not at the short back-off of an
                    // outage. Readiness shows the error meanwhile.
                    self.mgr.metrics.marathon_errors.fetch_add(1, Relaxed);
                    tracing::error!(error = %e, "event stream: TLS failure; check [marathon] ca-file");
                    backoff = self.cfg.backoff_max;
                    self.backoff(backoff);
                    continue;
                }
                Err(e) if e.is_refused_credentials() => {
                    // The same: a login or credentials Marathon refuses (a renewal was already
                    // tried by the client) need an operator.
                    self.mgr.metrics.marathon_errors.fetch_add(1, Relaxed);
                    tracing::error!(error = %e, "event stream: credentials refused; check the [marathon] login keys");
                    backoff = self.cfg.backoff_max;
                    self.backoff(backoff);
                    continue;
                }
                Err(e) => {
                    self.mgr.metrics.marathon_errors.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, "event stream connect failed");
                    self.backoff(backoff);
                    backoff = (backoff * 2).min(self.cfg.backoff_max);
                    continue;
                }
            };
            // Connected: the outage is over, so the next failure starts from the minimum.
            backoff = self.cfg.backoff_min;
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
                if !self.leader.is_leader() {
                    // Another manager decides now; it starts from its own listing. Whatever
                    // this one still reads from the stream is left to it.
                    tracing::info!("leadership lost: leaving the event stream");
                    break;
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
                        self.marathon.stream_failed();
                        break;
                    }
                }
            }
            if !self.leader.is_leader() {
                continue;
            }
            self.backoff(backoff);
            backoff = (backoff * 2).min(self.cfg.backoff_max);
        }
    }

    fn backoff(&self, d: Duration) {
        self.mgr
            .metrics
            .sse_backoff_ms
            .fetch_add(d.as_millis() as u64, Relaxed);
        self.sleep(d);
    }

    /// Periodic full passes.
    pub fn run_periodic(&self) {
        let mut last = Instant::now();
        while !self.shutdown.load(Ordering::Relaxed) {
            self.sleep(FOLLOWER_POLL);
            if let Some(v) = &self.vips
                && self.leader.is_leader()
                && v.due()
                && let Ok(l) = self.list()
            {
                self.vip_pass(&l.services, l.incomplete.is_empty());
            }
            let requested = self
                .pass_on_cache_miss
                .is_some_and(|gap| last.elapsed() >= gap)
                && self.pass_wanted.swap(false, Ordering::SeqCst);
            if !requested && last.elapsed() < self.cfg.interval {
                continue;
            }
            last = Instant::now();
            if self.shutdown.load(Ordering::Relaxed) {
                break;
            }
            if !self.leader.is_leader() {
                continue;
            }
            if let Err(e) = self.relist_and_reconcile() {
                tracing::warn!(error = %e, "periodic reconcile skipped");
            }
        }
    }
}

impl Watcher {
    /// The VIP load balancers follow `services` (through the fenced writer: leader only).
    fn vip_pass(&self, services: &[crate::marathon::model::ServiceApp], complete: bool) {
        if let Some(v) = &self.vips {
            let _ = v.pass(&self.writer, services, complete, &self.mgr.metrics);
        }
    }
}

/// Hands the pages a pass freed back to the kernel. A pass allocates and frees a scan's and a
/// listing's worth (~80 MiB at 100,000 tasks); without this the freed pages stayed resident
/// between passes (357 MiB resident after a pass, 266 MiB with it; the peak during a pass is
/// the same either way: docs/BENCHMARKS.md).
fn release_free_memory() {
    // SAFETY: malloc_trim only returns free memory of the allocator to the kernel.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The manager's writer (same settings, same cache) over a VNC client whose writes check the
/// leadership fence.
fn fenced_writer(mgr: &Manager, leader: Arc<dyn Leadership>) -> Writer {
    Writer {
        api: Arc::new(Fenced {
            inner: mgr.writer.api.clone(),
            leader,
            metrics: mgr.metrics.clone(),
        }),
        cfg: mgr.writer.cfg.clone(),
        cache: mgr.writer.cache.clone(),
    }
}
