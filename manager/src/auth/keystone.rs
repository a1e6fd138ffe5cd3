//! Keystone v3 password login (Identity API v3, "Password authentication with scoped
//! authorization": `POST /v3/auth/tokens`): the token is the `X-Subject-Token` header of the
//! 201 answer, its expiry the body's `token.expires_at` (ISO 8601, UTC).

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::{AuthError, Login, LoginAnswer, post_login};

/// No `Debug`: it holds the password.
#[derive(Clone)]
pub struct KeystoneConfig {
    /// The v3 base, e.g. `https://keystone:5000/v3` (a base without `/v3` gets it added).
    pub auth_url: String,
    pub username: String,
    pub password: String,
    pub user_domain: String,
    pub project: String,
    pub project_domain: String,
    pub timeout: Duration,
    pub tls: ureq::tls::TlsConfig,
}

pub struct KeystoneLogin {
    cfg: KeystoneConfig,
    agent: ureq::Agent,
}

/// `<base>/v3/auth/tokens` for a base given with or without its `/v3`.
pub fn tokens_url(auth_url: &str) -> String {
    let base = auth_url.trim_end_matches('/');
    if base.ends_with("/v3") {
        format!("{base}/auth/tokens")
    } else {
        format!("{base}/v3/auth/tokens")
    }
}

/// Seconds from now until `expires_at`; `None` when it cannot be read.
fn lifetime(expires_at: &str) -> Option<Duration> {
    let t = time::OffsetDateTime::parse(expires_at, &time::format_description::well_known::Rfc3339)
        .ok()?;
    let at = SystemTime::from(t);
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

impl KeystoneLogin {
    pub fn new(cfg: KeystoneConfig) -> KeystoneLogin {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(cfg.timeout))
            .tls_config(cfg.tls.clone())
            .build()
            .into();
        KeystoneLogin { cfg, agent }
    }

    fn body(&self) -> Value {
        let c = &self.cfg;
        json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": c.username, "domain": {"name": c.user_domain}, "password": c.password}}},
            "scope": {"project": {"name": c.project, "domain": {"name": c.project_domain}}}
        }})
    }
}

impl Login for KeystoneLogin {
    fn login(&self) -> Result<(String, Option<Duration>), AuthError> {
        let url = tokens_url(&self.cfg.auth_url);
        let LoginAnswer {
            status,
            headers,
            body: v,
        } = post_login(&self.agent, "Keystone", &url, self.body())?;
        // Keystone's errors are `{"error": {"code", "title", "message"}}`.
        let message = v["error"]["message"].as_str().unwrap_or("").to_owned();
        match status {
            200 | 201 => {}
            401 | 403 => {
                return Err(AuthError::Refused(format!(
                    "Keystone {url} refused the login of user {:?} (domain {:?}) to project {:?} \
                     ({status}: {message}): check [vnc] username, [vnc] password (or \
                     password-file), user-domain, project and project-domain",
                    self.cfg.username, self.cfg.user_domain, self.cfg.project
                )));
            }
            400 | 404 => {
                return Err(AuthError::Refused(format!(
                    "Keystone {url} answered {status} ({message}): check [vnc] auth-url"
                )));
            }
            _ => {
                return Err(AuthError::Unavailable(format!(
                    "Keystone {url} answered {status}: {message}"
                )));
            }
        }
        let token = headers
            .get("X-Subject-Token")
            .and_then(|h| h.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 16 * 1024)
            .ok_or_else(|| {
                AuthError::Unavailable(format!("Keystone {url}: no X-Subject-Token in its answer"))
            })?
            .to_owned();
        let life = v["token"]["expires_at"].as_str().and_then(lifetime);
        Ok((token, life))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_expiry() {
        assert_eq!(
            tokens_url("http://k:5000/v3/"),
            "http://k:5000/v3/auth/tokens"
        );
        assert_eq!(tokens_url("http://k:5000"), "http://k:5000/v3/auth/tokens");
        // The format of the Identity API reference's examples.
        assert_eq!(
            lifetime("2015-08-27T09:49:58.000000Z"),
            Some(Duration::ZERO)
        );
        assert!(lifetime("2999-01-01T00:00:00.000000Z").unwrap() > Duration::from_secs(1));
        assert_eq!(lifetime("soon"), None);
    }

    #[test]
    fn an_unreachable_keystone_is_transient() {
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let l = KeystoneLogin::new(KeystoneConfig {
            auth_url: format!("http://127.0.0.1:{port}/v3"),
            username: "admin".into(),
            password: "p".into(),
            user_domain: "Default".into(),
            project: "admin".into(),
            project_domain: "Default".into(),
            timeout: Duration::from_secs(2),
            tls: contrail_mesos_api::tls::client_config("").unwrap(),
        });
        let e = l.login().unwrap_err();
        assert!(!e.is_permanent(), "{e}");
    }
}
