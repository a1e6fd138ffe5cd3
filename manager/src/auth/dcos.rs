//! DC/OS service-account login (DC/OS IAM API, `POST /acs/api/v1/auth/login`): the manager
//! signs a short-lived RS256 JWT `{"uid", "exp"}` with the account's private key and sends
//! `{"uid", "token"}`; the answer's `token` is the authentication token, sent to Marathon as
//! `Authorization: token=<t>`.
//!
//! RSA signing is `ring`'s (already built for rustls); the JWT itself is three base64url
//! segments (RFC 7515 compact serialization, RFC 7518 §3.3 for RS256).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};

use super::{AuthError, Login, LoginAnswer, post_login};

/// How long the signed login token is valid: it is used once, at once.
const LOGIN_JWT_SECS: u64 = 300;

/// Reads an RSA private key from PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
pub fn load_rsa_key(path: &str) -> Result<RsaKeyPair, String> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject as _;
    let pem = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("{path}: no PEM private key in it ({e})"))?;
    let r = match &key {
        PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
        PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
        _ => return Err(format!("{path}: not an RSA private key")),
    };
    r.map_err(|e| format!("{path}: not a usable RSA private key ({e})"))
}

/// A signed RS256 JWT of `claims`.
pub fn sign_jwt(key: &RsaKeyPair, claims: &Value) -> Result<String, String> {
    let head = B64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let body = B64.encode(claims.to_string());
    let input = format!("{head}.{body}");
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .map_err(|e| format!("signing: {e}"))?;
    Ok(format!("{input}.{}", B64.encode(sig)))
}

/// `<scheme>://<host[:port]>/acs/api/v1/auth/login` of a Marathon URL.
pub fn default_login_url(marathon_url: &str) -> Option<String> {
    let u: http::Uri = marathon_url.parse().ok()?;
    Some(format!(
        "{}://{}/acs/api/v1/auth/login",
        u.scheme_str()?,
        u.authority()?
    ))
}

/// The `exp` of a token that is a JWT (DC/OS issues JWTs), as a lifetime from now.
fn jwt_lifetime(token: &str) -> Option<Duration> {
    let claims = token.split('.').nth(1)?;
    let v: Value = serde_json::from_slice(&B64.decode(claims).ok()?).ok()?;
    let exp = v["exp"].as_u64()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(exp.saturating_sub(now)))
}

pub struct ServiceAccountLogin {
    uid: String,
    key: RsaKeyPair,
    url: String,
    agent: ureq::Agent,
}

impl ServiceAccountLogin {
    pub fn new(
        uid: String,
        key: RsaKeyPair,
        url: String,
        timeout: Duration,
        tls: ureq::tls::TlsConfig,
    ) -> ServiceAccountLogin {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(timeout))
            .tls_config(tls)
            .build()
            .into();
        ServiceAccountLogin {
            uid,
            key,
            url,
            agent,
        }
    }
}

impl Login for ServiceAccountLogin {
    fn login(&self) -> Result<(String, Option<Duration>), AuthError> {
        let url = &self.url;
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + LOGIN_JWT_SECS;
        let jwt = sign_jwt(&self.key, &json!({"uid": self.uid, "exp": exp}))
            .map_err(AuthError::Refused)?;
        let LoginAnswer {
            status, body: v, ..
        } = post_login(
            &self.agent,
            "DC/OS login",
            url,
            json!({"uid": self.uid, "token": jwt}),
        )?;
        // IAM errors are `{"title", "description", "code"}`.
        let why = v["description"].as_str().unwrap_or("").to_owned();
        match status {
            200 => {}
            400 | 401 | 403 | 404 => {
                return Err(AuthError::Refused(format!(
                    "DC/OS login {url} refused service account {:?} ({status}: {why}): check \
                     [marathon] service-account-id, service-account-key-file and login-url",
                    self.uid
                )));
            }
            _ => {
                return Err(AuthError::Unavailable(format!(
                    "DC/OS login {url} answered {status}: {why}"
                )));
            }
        }
        let token = v["token"]
            .as_str()
            .filter(|t| !t.is_empty() && t.len() <= 16 * 1024 && t.is_ascii())
            .ok_or_else(|| AuthError::Unavailable(format!("DC/OS login {url}: no token")))?
            .to_owned();
        let life = jwt_lifetime(&token);
        Ok((token, life))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_url_and_jwt_expiry() {
        assert_eq!(
            default_login_url("https://master.mesos:443/service/marathon/").as_deref(),
            Some("https://master.mesos:443/acs/api/v1/auth/login")
        );
        assert_eq!(
            default_login_url("http://10.0.0.1:8080").as_deref(),
            Some("http://10.0.0.1:8080/acs/api/v1/auth/login")
        );
        assert_eq!(jwt_lifetime("opaque"), None);
        let far = B64.encode(br#"{"exp":32503680000}"#);
        assert!(jwt_lifetime(&format!("a.{far}.b")).unwrap() > Duration::from_secs(1));
    }
}
