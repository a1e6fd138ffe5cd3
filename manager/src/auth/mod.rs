//! Logins to the manager's peers: a token source behind a small trait, so the VNC and Marathon
//! clients only ask for "the token to send" and say "this one was refused".
//!
//! - `Static`: a token from the configuration (`[vnc] token`, `[marathon] token`), never renewed.
//! - `Cached<L>`: a token from a login (`keystone::KeystoneLogin`, `dcos::ServiceAccountLogin`),
//!   kept until shortly before it expires or until a peer refuses it, and renewed by one caller
//!   while the others wait for its result (no login storm when many calls find it stale).

pub mod cached;
pub mod dcos;
pub mod keystone;

use std::time::Duration;

pub use cached::Cached;

/// An identity service's answer to a login: status, the headers, the JSON body (`Null` when it
/// is not JSON).
pub struct LoginAnswer {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: serde_json::Value,
}

/// `POST url` with a JSON login body. A TLS verification failure is permanent (the same
/// certificate fails again), any other transport failure is not; the body read is bounded.
/// `who` names the service in messages (`Keystone`, `DC/OS login`).
pub fn post_login(
    agent: &ureq::Agent,
    who: &str,
    url: &str,
    body: serde_json::Value,
) -> Result<LoginAnswer, AuthError> {
    let mut resp = agent
        .post(url)
        .header("Accept", "application/json")
        .send_json(body)
        .map_err(|e| match contrail_mesos_api::tls::failure(&e) {
            Some(r) => AuthError::Refused(format!(
                "{who} {}",
                contrail_mesos_api::tls::describe(url, &r)
            )),
            None => AuthError::Unavailable(format!("{who} {url}: {e}")),
        })?;
    let text = resp
        .body_mut()
        .with_config()
        .limit(1024 * 1024)
        .read_to_string()
        .unwrap_or_default();
    Ok(LoginAnswer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    })
}

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The identity service refused the credentials (wrong password, unknown account, key not
    /// registered): the same login fails again until the configuration changes.
    #[error("{0}")]
    Refused(String),
    /// No usable answer (unreachable, timed out, 5xx): a later login may succeed.
    #[error("{0}")]
    Unavailable(String),
}

impl AuthError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, AuthError::Refused(_))
    }
}

/// Where a client gets the token it sends.
pub trait TokenSource: Send + Sync {
    /// The token to send now; `None` = send none.
    fn token(&self) -> Result<Option<String>, AuthError>;
    /// The peer answered 401 to `stale`: drop it, so the next `token` logs in again. A token
    /// that is no longer the current one (another caller renewed it already) is ignored.
    /// Returns whether a renewal can help (false for a static token).
    fn refused(&self, stale: &str) -> bool;
}

/// A configured token (or none); a 401 cannot be cured by asking again.
pub struct Static(pub Option<String>);

impl TokenSource for Static {
    fn token(&self) -> Result<Option<String>, AuthError> {
        Ok(self.0.clone())
    }
    fn refused(&self, _stale: &str) -> bool {
        false
    }
}

/// One login: a token and how long the identity service says it lives (`None` = unknown).
pub trait Login: Send + Sync {
    fn login(&self) -> Result<(String, Option<Duration>), AuthError>;
}
