//! Waiting for the vRouter agent: bounded polling with backoff, and per-request timeouts.

use std::time::{Duration, Instant};

use super::agent::AgentError;
use super::config::ContrailConfig;
use super::error::{Error, Result, code};

/// Milliseconds with microsecond precision, for log fields.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// One poll's outcome.
pub enum Poll<T> {
    Done(T),
    /// Not there yet; the string says what was seen (for the final error).
    NotYet(String),
    Fatal(Error),
}

/// Per-request timeout: a poll must not outlive the budget, and a request never gets less than
/// a fraction of a second (a loaded agent answers slowly, not never).
pub fn request_timeout(cfg: &ContrailConfig) -> Duration {
    cfg.poll_timeout
        .clamp(Duration::from_millis(500), Duration::from_secs(10))
}

/// Whether an agent error is worth another poll: a restarting or overloaded agent (no answer,
/// 5xx, a garbled answer) may heal; a 4xx other than 404 will not. Some(what was seen) if so.
pub fn agent_poll_reason(e: &AgentError) -> Option<String> {
    match e {
        AgentError::Unreachable(m) => Some(m.clone()),
        AgentError::Status { status, body } if *status >= 500 => Some(format!("{status} {body}")),
        AgentError::Malformed(m) => Some(format!("malformed answer: {m}")),
        _ => None,
    }
}

/// Polls with exponential backoff (5 ms doubling, capped at min(poll-timeout, 500 ms)) until
/// `poll-timeout * poll-retries` has passed. Contrail's CNI slept a fixed `poll-timeout`
/// between polls (3 s by default) and, in R2008, did not sleep at all on a partial answer.
pub fn poll<T>(
    cfg: &ContrailConfig,
    what: &str,
    mut attempt: impl FnMut(Duration) -> Poll<T>,
) -> Result<T> {
    let start = Instant::now();
    let deadline = start + cfg.poll_budget();
    let cap = cfg
        .poll_timeout
        .min(Duration::from_millis(500))
        .max(Duration::from_millis(5));
    let mut step = Duration::from_millis(5).min(cap);
    let mut polls = 0u32;
    loop {
        polls += 1;
        let now = Instant::now();
        let timeout = request_timeout(cfg)
            .min(deadline.saturating_duration_since(now))
            .max(Duration::from_millis(50));
        let last = match attempt(timeout) {
            Poll::Done(v) => {
                tracing::debug!(what, polls, ms = ms(start.elapsed()), "poll done");
                return Ok(v);
            }
            Poll::Fatal(e) => return Err(e),
            Poll::NotYet(why) => why,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::new(
                code::TRY_AGAIN,
                format!(
                    "gave up after {:.1} s and {polls} polls waiting for {what}; last answer: {last}",
                    start.elapsed().as_secs_f64()
                ),
            )
            .with_details(format!(
                "contrail.poll-timeout {} s x contrail.poll-retries {} bound the wait",
                cfg.poll_timeout.as_secs_f64(),
                cfg.poll_retries
            )));
        }
        std::thread::sleep(step.min(deadline - now));
        step = (step * 2).min(cap);
    }
}
