//! Prometheus text exposition, hand-rolled over atomics: a fixed, small metric set needs no
//! registry crate, and every hot-path update is one relaxed atomic add.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// VNC operations, one label value each.
pub const VNC_OPS: [&str; 7] = [
    "create",
    "read",
    "update",
    "delete",
    "list",
    "fqname-to-id",
    "ref-update",
];
/// Latency buckets in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0];

#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; 10],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.counts[i].fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }
}

#[derive(Default)]
pub struct Metrics {
    pub attachments: AtomicI64,
    pub attach_ok: AtomicU64,
    pub attach_err: AtomicU64,
    pub detach_total: AtomicU64,
    pub vnc_calls: [AtomicU64; 7],
    pub vnc_errors: [AtomicU64; 7],
    pub vnc_retries: AtomicU64,
    pub vnc_latency: Histogram,
    pub sse_reconnects: AtomicU64,
    pub sse_events: AtomicU64,
    pub marathon_lists: AtomicU64,
    pub marathon_errors: AtomicU64,
    pub reconcile_runs: AtomicU64,
    /// Duration of the last completed reconcile pass, in milliseconds.
    pub reconcile_last_pass_ms: AtomicU64,
    pub reconcile_deletions: AtomicU64,
    pub event_deletions: AtomicU64,
    pub joins: AtomicU64,
    /// Accept attempts that found the process out of descriptors.
    pub accept_exhausted: AtomicU64,
    /// Reconcile passes held back (deleting too much, or from an empty listing).
    pub reconcile_held: AtomicU64,
    /// Deletions held back by the last held pass (0 when the last pass was not held).
    pub reconcile_held_deletions: AtomicI64,
    /// Marathon listings not used for deletion because they were incomplete.
    pub marathon_incomplete: AtomicU64,
    /// Marathon events that could not be decoded.
    pub marathon_bad_events: AtomicU64,
    /// Deletions skipped because the container's Mesos agent still runs it.
    pub agent_kept: AtomicU64,
    /// Milliseconds the event-stream loop spent backing off.
    pub sse_backoff_ms: AtomicU64,
    /// Watcher writes refused because this manager no longer led (`vnc::fenced`).
    pub fenced_writes: AtomicU64,
    /// VIP passes run (`crate::vip`).
    pub vip_passes: AtomicU64,
    /// VIP objects that could not be made or removed (each retried by the next pass).
    pub vip_errors: AtomicU64,
    /// `VIP_<n>` labels the last VIP pass could not use.
    pub vip_bad_labels: AtomicI64,
    /// Load balancers the last VIP pass kept, and their members.
    pub vip_loadbalancers: AtomicI64,
    pub vip_members: AtomicI64,
    /// The election, once the app has one (gauge `leader`, counter of elections won).
    pub leadership: std::sync::OnceLock<std::sync::Arc<dyn crate::leader::Leadership>>,
}

pub fn op_index(op: &str) -> usize {
    VNC_OPS.iter().position(|o| *o == op).unwrap_or(0)
}

impl Metrics {
    pub fn vnc_call(&self, op: &str, d: Duration, ok: bool) {
        let i = op_index(op);
        self.vnc_calls[i].fetch_add(1, Relaxed);
        if !ok {
            self.vnc_errors[i].fetch_add(1, Relaxed);
        }
        self.vnc_latency.observe(d);
    }

    /// The `/metrics` body (Prometheus text format 0.0.4).
    pub fn render(&self) -> String {
        let mut o = String::new();
        let mut g = |name: &str, help: &str, ty: &str, v: String| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {ty}\n{name} {v}");
        };
        g(
            "contrail_mesos_attachments",
            "Attachments the manager owns.",
            "gauge",
            self.attachments.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_attach_success_total",
            "Registrations answered 200/201.",
            "counter",
            self.attach_ok.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_attach_errors_total",
            "Registrations answered with an error.",
            "counter",
            self.attach_err.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_detach_total",
            "Deregistrations.",
            "counter",
            self.detach_total.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_vnc_retries_total",
            "VNC calls retried after 5xx or connection errors.",
            "counter",
            self.vnc_retries.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_sse_reconnects_total",
            "Marathon event stream (re)connections.",
            "counter",
            self.sse_reconnects.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_sse_events_total",
            "Marathon events received.",
            "counter",
            self.sse_events.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_marathon_lists_total",
            "Full Marathon re-lists.",
            "counter",
            self.marathon_lists.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_marathon_errors_total",
            "Failed Marathon calls.",
            "counter",
            self.marathon_errors.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_reconcile_runs_total",
            "Reconcile passes.",
            "counter",
            self.reconcile_runs.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_reconcile_last_pass_seconds",
            "Duration of the last completed reconcile pass.",
            "gauge",
            format!(
                "{:.3}",
                self.reconcile_last_pass_ms.load(Relaxed) as f64 / 1e3
            ),
        );
        g(
            "contrail_mesos_reconcile_deletions_total",
            "Attachments or objects deleted by the reconciler.",
            "counter",
            self.reconcile_deletions.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_event_deletions_total",
            "Attachments deleted on terminal Marathon events.",
            "counter",
            self.event_deletions.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_task_joins_total",
            "VM display names set to a Marathon task id.",
            "counter",
            self.joins.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_accept_exhausted_total",
            "Accept attempts that found the process out of file descriptors (it backs off and retries).",
            "counter",
            self.accept_exhausted.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_reconcile_held_total",
            "Reconcile passes whose deletions were held for a confirming listing.",
            "counter",
            self.reconcile_held.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_reconcile_held_deletions",
            "Deletions the last held pass did not carry out.",
            "gauge",
            self.reconcile_held_deletions.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_vip_passes_total",
            "VIP (load balancer) passes.",
            "counter",
            self.vip_passes.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_vip_errors_total",
            "VIP load balancer objects that could not be made or removed (retried next pass).",
            "counter",
            self.vip_errors.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_vip_bad_labels",
            "VIP_<n> labels the last VIP pass could not use (the log names the app and label).",
            "gauge",
            self.vip_bad_labels.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_vip_loadbalancers",
            "VIP load balancers after the last VIP pass.",
            "gauge",
            self.vip_loadbalancers.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_vip_members",
            "VIP load balancer members after the last VIP pass.",
            "gauge",
            self.vip_members.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_marathon_incomplete_lists_total",
            "Marathon listings not used for deletion (tasks not embedded, counts disagree).",
            "counter",
            self.marathon_incomplete.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_marathon_bad_events_total",
            "Marathon events that could not be decoded (logged).",
            "counter",
            self.marathon_bad_events.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_sse_backoff_seconds_total",
            "Time the event-stream loop spent backing off before reconnecting.",
            "counter",
            (self.sse_backoff_ms.load(Relaxed) as f64 / 1e3).to_string(),
        );
        g(
            "contrail_mesos_agent_kept_total",
            "Deletions skipped because the container's Mesos agent still runs it.",
            "counter",
            self.agent_kept.load(Relaxed).to_string(),
        );
        g(
            "contrail_mesos_fenced_writes_total",
            "Watcher writes to VNC not sent because this manager no longer led.",
            "counter",
            self.fenced_writes.load(Relaxed).to_string(),
        );
        if let Some(l) = self.leadership.get() {
            g(
                "contrail_mesos_leader",
                "1 while this manager leads the watch and the reconciler (always 1 without ZooKeeper).",
                "gauge",
                u8::from(l.is_leader()).to_string(),
            );
            g(
                "contrail_mesos_elections_won_total",
                "ZooKeeper elections this manager has won since it started.",
                "counter",
                l.elections_won().to_string(),
            );
        }
        let _ = writeln!(
            o,
            "# HELP contrail_mesos_vnc_calls_total VNC API calls by operation.\n# TYPE contrail_mesos_vnc_calls_total counter"
        );
        for (i, op) in VNC_OPS.iter().enumerate() {
            let _ = writeln!(
                o,
                "contrail_mesos_vnc_calls_total{{op=\"{op}\"}} {}",
                self.vnc_calls[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            o,
            "# HELP contrail_mesos_vnc_errors_total Failed VNC API calls (after retries) by operation.\n# TYPE contrail_mesos_vnc_errors_total counter"
        );
        for (i, op) in VNC_OPS.iter().enumerate() {
            let _ = writeln!(
                o,
                "contrail_mesos_vnc_errors_total{{op=\"{op}\"}} {}",
                self.vnc_errors[i].load(Relaxed)
            );
        }
        let h = &self.vnc_latency;
        let _ = writeln!(
            o,
            "# HELP contrail_mesos_vnc_latency_seconds VNC API call latency (one HTTP exchange).\n# TYPE contrail_mesos_vnc_latency_seconds histogram"
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "contrail_mesos_vnc_latency_seconds_bucket{{le=\"{b}\"}} {}",
                h.counts[i].load(Relaxed)
            );
        }
        let n = h.count.load(Relaxed);
        let _ = writeln!(
            o,
            "contrail_mesos_vnc_latency_seconds_bucket{{le=\"+Inf\"}} {n}"
        );
        let _ = writeln!(
            o,
            "contrail_mesos_vnc_latency_seconds_sum {}",
            h.sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(o, "contrail_mesos_vnc_latency_seconds_count {n}");
        o
    }
}
