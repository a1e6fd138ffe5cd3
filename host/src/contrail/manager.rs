//! Client of the manager's attachment API (docs/attachment-api.md), `mode: mesos` only.
//! 4xx → CNI 7 quoting the manager's message (never retried); 5xx or no answer → CNI 11.

use std::time::Duration;

use contrail_mesos_api::{ApiError, AttachRequest, Attachment, DetachResponse};

use super::error::{Error, Result, code};

pub trait Manager {
    fn attach(&self, req: &AttachRequest) -> Result<Attachment>;
    /// Ok(found).
    fn detach(&self, container_id: &str, ifname: &str) -> Result<bool>;
}

pub struct HttpManager {
    base: String,
    token: Option<String>,
    http: ureq::Agent,
}

impl HttpManager {
    /// `timeout` bounds each call as a whole (`contrail.mesos-timeout`).
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> HttpManager {
        let cfg = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .build();
        HttpManager {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: ureq::Agent::new_with_config(cfg),
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
    fn attach(&self, req: &AttachRequest) -> Result<Attachment> {
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
        serde_json::from_str(&text).map_err(|e| {
            Error::new(
                code::MANAGER,
                format!("manager {what}: unusable answer: {e}"),
            )
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
