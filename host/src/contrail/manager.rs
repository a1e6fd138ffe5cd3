//! Client of the manager's attachment API (docs/attachment-api.md), `mode: mesos` only.
//! 4xx → CNI 7 quoting the manager's message (never retried); 5xx or no answer → CNI 11.
//! With several instances configured ([`Failover`]) each call tries them in turn, each try
//! bounded by `mesos-timeout`, and stops at the first answer that is not a transient failure.

use std::time::Duration;

use contrail_mesos_api::{ApiError, AttachRequest, Attachment, DetachResponse};

use super::error::{Error, Result, code};

pub trait Manager {
    fn attach(&self, req: &AttachRequest) -> Result<Registered>;
    /// Ok(found).
    fn detach(&self, container_id: &str, ifname: &str) -> Result<bool>;
}

/// What `attach` answered.
#[derive(Debug, Clone)]
pub struct Registered {
    pub attachment: Attachment,
    /// This call created the registration (`201 Created`), rather than finding it registered
    /// already with the same request (`200 OK`, which changes nothing): a refused ADD undoes
    /// only a registration it created, never one a running interface shares.
    pub created: bool,
}

pub struct HttpManager {
    base: String,
    token: Option<String>,
    http: ureq::Agent,
}

impl HttpManager {
    /// `timeout` bounds each call as a whole (`contrail.mesos-timeout`); `tls` applies to an
    /// `https://` base (`contrail.manager-ca-file`).
    pub fn new(
        base: &str,
        token: Option<String>,
        timeout: Duration,
        tls: ureq::tls::TlsConfig,
    ) -> HttpManager {
        HttpManager {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: super::http_client(timeout, tls),
        }
    }

    fn fail(&self, what: &str, status: u16, body: &str) -> Error {
        let message = serde_json::from_str::<ApiError>(body)
            .map(|e| match e.error.label {
                Some(l) => format!("{} (label {l})", e.error.message),
                None => e.error.message,
            })
            .unwrap_or_else(|_| body.chars().take(500).collect());
        let code = if (400..500).contains(&status) {
            code::INVALID_CONFIG
        } else {
            code::TRY_AGAIN
        };
        Error::new(code, format!("manager {what} answered {status}: {message}"))
    }

    fn unreachable(&self, what: &str, e: ureq::Error) -> Error {
        // A certificate the CA bundle does not trust fails the same way on every retry: a
        // configuration error (7), not "try again later".
        if let Some(reason) = contrail_mesos_api::tls::failure(&e) {
            return Error::new(
                code::INVALID_CONFIG,
                format!(
                    "manager {what}: {}",
                    contrail_mesos_api::tls::describe(&self.base, &reason)
                ),
            );
        }
        Error::new(
            code::TRY_AGAIN,
            format!("manager at {} did not answer {what}: {e}", self.base),
        )
    }
}

macro_rules! authed {
    ($self:ident, $req:expr) => {{
        let r = $req;
        match &$self.token {
            Some(t) => r.header("Authorization", format!("Bearer {t}")),
            None => r,
        }
    }};
}

impl Manager for HttpManager {
    fn attach(&self, req: &AttachRequest) -> Result<Registered> {
        let url = format!("{}{}", self.base, contrail_mesos_api::ATTACHMENTS_PATH);
        let what = "POST /v1/attachments";
        let body =
            serde_json::to_vec(req).map_err(|e| Error::new(code::INTERNAL, e.to_string()))?;
        let mut resp = authed!(self, self.http.post(&url))
            .content_type("application/json")
            .send(&body[..])
            .map_err(|e| self.unreachable(what, e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| self.unreachable(what, e))?;
        if !(200..300).contains(&status) {
            return Err(self.fail(what, status, &text));
        }
        let attachment = serde_json::from_str(&text).map_err(|e| {
            Error::new(
                code::MANAGER,
                format!("manager {what}: unusable answer: {e}"),
            )
        })?;
        // Only 200 says "already registered" (docs/attachment-api.md); any other success is
        // taken as new, so that a refused ADD errs towards undoing what it may have made.
        Ok(Registered {
            attachment,
            created: status != 200,
        })
    }

    fn detach(&self, container_id: &str, ifname: &str) -> Result<bool> {
        let path = contrail_mesos_api::attachment_path(container_id, ifname);
        let what = format!("DELETE {path}");
        let mut resp = authed!(self, self.http.delete(format!("{}{}", self.base, path)))
            .call()
            .map_err(|e| self.unreachable(&what, e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| self.unreachable(&what, e))?;
        match status {
            200..=299 => Ok(serde_json::from_str::<DetachResponse>(&text)
                .map(|d| d.found)
                .unwrap_or(true)),
            404 => Ok(false),
            _ => Err(self.fail(&what, status, &text)),
        }
    }
}

/// Several manager instances behind one [`Manager`]: a call goes to each in turn until one
/// answers, so an ADD succeeds while any instance is up. A refusal (4xx: code 7) is the
/// manager's verdict on the request and is not asked again elsewhere; no answer, a 5xx or an
/// unusable answer moves on to the next instance. Registration is idempotent on the manager's
/// side (same container and ifname: the same attachment), so a try that timed out after the
/// manager acted is harmless.
pub struct Failover {
    instances: Vec<(String, Box<dyn Manager>)>,
    /// No instance is tried once this much time has gone since the call began (DEL: the
    /// node's teardown must not wait a full timeout per hanging instance).
    budget: Option<Duration>,
}

impl Failover {
    pub fn new(instances: Vec<(String, Box<dyn Manager>)>) -> Failover {
        Failover {
            instances,
            budget: None,
        }
    }

    /// Stops trying further instances after `budget` (the try under way still ends by its own
    /// timeout).
    pub fn with_budget(mut self, budget: Duration) -> Failover {
        self.budget = Some(budget);
        self
    }

    /// One HTTP client per base URL.
    pub fn http(
        bases: &[String],
        token: Option<String>,
        timeout: Duration,
        tls: &ureq::tls::TlsConfig,
    ) -> Failover {
        Failover::new(
            bases
                .iter()
                .map(|b| {
                    let m: Box<dyn Manager> =
                        Box::new(HttpManager::new(b, token.clone(), timeout, tls.clone()));
                    (b.clone(), m)
                })
                .collect(),
        )
    }

    fn each<T>(&self, what: &str, call: impl Fn(&dyn Manager) -> Result<T>) -> Result<T> {
        let mut failures = vec![];
        let started = std::time::Instant::now();
        for (base, m) in &self.instances {
            if let Some(b) = self.budget
                && !failures.is_empty()
                && started.elapsed() >= b
            {
                tracing::warn!(manager = %base, budget_ms = b.as_millis() as u64, "{what}: time budget spent; the remaining instances are not tried");
                break;
            }
            match call(m.as_ref()) {
                Ok(v) => {
                    if !failures.is_empty() {
                        tracing::info!(manager = %base, skipped = failures.len(), "{what}: answered by a later manager instance");
                    }
                    return Ok(v);
                }
                // A TLS failure is this instance's certificate: the next may be fine.
                Err(e) if e.code == code::INVALID_CONFIG && !is_tls_failure(&e) => return Err(e),
                Err(e) => {
                    tracing::warn!(manager = %base, code = e.code, "{what}: {}; trying the next instance", e.msg);
                    failures.push(e);
                }
            }
        }
        let Some(last) = failures.pop() else {
            return Err(Error::new(code::INTERNAL, "no manager instance configured"));
        };
        if failures.is_empty() {
            return Err(last);
        }
        let earlier: Vec<String> = failures.iter().map(|e| e.msg.clone()).collect();
        Err(Error::new(
            last.code,
            format!(
                "no manager instance answered {what} ({} tried): {}",
                failures.len() + 1,
                last.msg
            ),
        )
        .with_details(earlier.join("\n")))
    }
}

/// The error `HttpManager` gives for a failed TLS handshake (see `tls::describe`).
fn is_tls_failure(e: &Error) -> bool {
    e.msg.contains(contrail_mesos_api::tls::FAILURE)
}

impl Manager for Failover {
    fn attach(&self, req: &AttachRequest) -> Result<Registered> {
        self.each("POST /v1/attachments", |m| m.attach(req))
    }

    fn detach(&self, container_id: &str, ifname: &str) -> Result<bool> {
        self.each("DELETE /v1/attachments", |m| m.detach(container_id, ifname))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    /// Answers `code` (0 = success) and counts its calls.
    struct Scripted {
        code: u32,
        calls: Rc<Cell<u32>>,
    }

    impl Manager for Scripted {
        fn attach(&self, _: &AttachRequest) -> Result<Registered> {
            unreachable!("these tests go through detach")
        }
        fn detach(&self, _: &str, _: &str) -> Result<bool> {
            self.calls.set(self.calls.get() + 1);
            match self.code {
                0 => Ok(true),
                c => Err(Error::new(c, format!("code {c}"))),
            }
        }
    }

    fn failover(codes: &[u32]) -> (Failover, Vec<Rc<Cell<u32>>>) {
        let calls: Vec<_> = codes.iter().map(|_| Rc::new(Cell::new(0))).collect();
        let f = Failover::new(
            codes
                .iter()
                .zip(&calls)
                .enumerate()
                .map(|(i, (&code, c))| {
                    let m: Box<dyn Manager> = Box::new(Scripted {
                        code,
                        calls: c.clone(),
                    });
                    (format!("m{i}"), m)
                })
                .collect(),
        );
        (f, calls)
    }

    #[test]
    fn the_first_instance_that_answers_wins() {
        let (f, calls) = failover(&[code::TRY_AGAIN, code::MANAGER, 0, 0]);
        assert!(f.detach("c", "eth0").unwrap());
        let n: Vec<u32> = calls.iter().map(|c| c.get()).collect();
        assert_eq!(n, [1, 1, 1, 0]);
    }

    /// Fails after `hang` (an instance that does not answer within its timeout).
    struct Hanging {
        hang: Duration,
        calls: Rc<Cell<u32>>,
    }

    impl Manager for Hanging {
        fn attach(&self, _: &AttachRequest) -> Result<Registered> {
            unreachable!("these tests go through detach")
        }
        fn detach(&self, _: &str, _: &str) -> Result<bool> {
            self.calls.set(self.calls.get() + 1);
            std::thread::sleep(self.hang);
            Err(Error::new(code::TRY_AGAIN, "timed out"))
        }
    }

    #[test]
    fn a_budget_stops_trying_hanging_instances() {
        let calls: Vec<_> = (0..4).map(|_| Rc::new(Cell::new(0))).collect();
        let f = Failover::new(
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let m: Box<dyn Manager> = Box::new(Hanging {
                        hang: Duration::from_millis(60),
                        calls: c.clone(),
                    });
                    (format!("m{i}"), m)
                })
                .collect(),
        )
        .with_budget(Duration::from_millis(100));
        let e = f.detach("c", "eth0").unwrap_err();
        let n: Vec<u32> = calls.iter().map(|c| c.get()).collect();
        assert_eq!(n, [1, 1, 0, 0], "{}", e.msg);
        assert!(e.msg.contains("2 tried"), "{}", e.msg);
    }

    #[test]
    fn a_refusal_is_final_and_all_down_is_11_naming_each() {
        let (f, calls) = failover(&[code::INVALID_CONFIG, 0]);
        assert_eq!(f.detach("c", "eth0").unwrap_err().code, 7);
        assert_eq!(calls[1].get(), 0, "a 4xx is not asked again elsewhere");
        let (f, _) = failover(&[code::TRY_AGAIN, code::TRY_AGAIN]);
        let e = f.detach("c", "eth0").unwrap_err();
        assert_eq!(e.code, code::TRY_AGAIN);
        assert!(e.msg.contains("2 tried"), "{}", e.msg);
        assert_eq!(e.details, "code 11");
    }
}
