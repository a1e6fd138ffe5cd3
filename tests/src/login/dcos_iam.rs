//! DC/OS IAM login stand-in (DC/OS IAM API, service-account login): `POST
//! /acs/api/v1/auth/login` with `{"uid", "token"}`, where `token` is an RS256 JWT with claims
//! `uid` and `exp`, signed by the service account's private key. The stand-in verifies the
//! signature against the account's public key and answers `{"token": <JWT>}` (its `exp` says
//! when it expires); anything else is 401 `{"title", "description", "code"}` as the IAM does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use serde_json::{Value, json};

use super::{Http, Validator};

struct State {
    uid: String,
    /// PKCS#1 `RSAPublicKey` DER of the account.
    public_key: Vec<u8>,
    lifetime: Duration,
    tokens: HashMap<String, Instant>,
    logins: AtomicU64,
    refused: AtomicU64,
}

pub struct IamServer {
    http: Http,
    state: Arc<Mutex<State>>,
}

/// The DER of a PEM `RSA PUBLIC KEY` block.
pub fn rsa_public_key_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN RSA PUBLIC KEY-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    anyhow::ensure!(!b64.is_empty(), "no RSA PUBLIC KEY block");
    Ok(STANDARD.decode(b64)?)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why a login token is refused, or `None` when it is good for `uid`.
fn check_login(st: &State, uid: &str, jwt: &str) -> Option<String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [head, claims, sig] = parts[..] else {
        return Some("not a JWT".into());
    };
    let h: Value = B64
        .decode(head)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    if h["alg"] != "RS256" {
        return Some(format!("unsupported alg {}", h["alg"]));
    }
    let Ok(sig) = B64.decode(sig) else {
        return Some("bad signature encoding".into());
    };
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &st.public_key,
    );
    if key
        .verify(format!("{head}.{claims}").as_bytes(), &sig)
        .is_err()
    {
        return Some("signature does not verify against the account's public key".into());
    }
    let c: Value = B64
        .decode(claims)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    if uid != st.uid || c["uid"] != uid {
        return Some("unknown service account".into());
    }
    match c["exp"].as_u64() {
        Some(exp) if exp > now_secs() => None,
        _ => Some("login token expired or without exp".into()),
    }
}

fn handle(state: &Mutex<State>, mut req: tiny_http::Request) {
    use super::json as answer;
    let path = req.url().split('?').next().unwrap_or("").to_owned();
    if req.method() != &tiny_http::Method::Post || path != "/acs/api/v1/auth/login" {
        let _ = req.respond(answer(
            404,
            &json!({"title": "Not Found", "description": "not found",
            "code": "ERR_NOT_FOUND"}),
        ));
        return;
    }
    let b = super::body(&mut req).unwrap_or(Value::Null);
    let (uid, jwt) = (
        b["uid"].as_str().unwrap_or(""),
        b["token"].as_str().unwrap_or(""),
    );
    let mut st = state.lock().unwrap();
    if let Some(why) = check_login(&st, uid, jwt) {
        st.refused.fetch_add(1, Ordering::SeqCst);
        drop(st);
        let _ = req.respond(answer(
            401,
            &json!({"title": "Unauthorized",
            "description": format!("Service login token invalid: {why}"),
            "code": "ERR_INVALID_SERVICE_LOGIN_TOKEN"}),
        ));
        return;
    }
    st.logins.fetch_add(1, Ordering::SeqCst);
    let life = st.lifetime;
    // An auth token shaped as DC/OS issues it (a JWT with `uid` and `exp`); its signature is
    // not checked by anyone here.
    let claims = json!({"uid": uid, "exp": now_secs() + life.as_secs()});
    let token = format!(
        "{}.{}.{}",
        B64.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        B64.encode(claims.to_string()),
        super::new_token("sig")
    );
    st.tokens.insert(token.clone(), Instant::now() + life);
    drop(st);
    let _ = req.respond(answer(200, &json!({"token": token})));
}

impl IamServer {
    /// Knows one service account, `uid`, with the PEM `RSA PUBLIC KEY` `public_key_pem`.
    pub fn start(uid: &str, public_key_pem: &str, lifetime: Duration) -> anyhow::Result<IamServer> {
        let state = Arc::new(Mutex::new(State {
            uid: uid.into(),
            public_key: rsa_public_key_der(public_key_pem)?,
            lifetime,
            tokens: HashMap::new(),
            logins: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }));
        let st = state.clone();
        let http = Http::start(move |req| handle(&st, req))?;
        Ok(IamServer { http, state })
    }

    /// The login endpoint (`[marathon] login-url`).
    pub fn login_url(&self) -> String {
        format!("http://{}/acs/api/v1/auth/login", self.http.addr)
    }

    pub fn logins(&self) -> u64 {
        self.state.lock().unwrap().logins.load(Ordering::SeqCst)
    }

    pub fn refused(&self) -> u64 {
        self.state.lock().unwrap().refused.load(Ordering::SeqCst)
    }

    /// Every token issued so far expires now.
    pub fn expire_all(&self) {
        self.state.lock().unwrap().tokens.clear();
    }

    pub fn is_valid(&self, token: &str) -> bool {
        valid(&self.state, token)
    }

    /// The check for the Marathon stand-in: an `Authorization: token=<t>` header with a token
    /// this IAM issued and still honours.
    pub fn authorization_validator(&self) -> Validator {
        let st = self.state.clone();
        Arc::new(move |h: &str| h.strip_prefix("token=").is_some_and(|t| valid(&st, t)))
    }
}

/// The check for HTTP basic auth (Marathon's `--http_credentials user:password`).
pub fn basic_validator(user: &str, password: &str) -> Validator {
    let want = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    Arc::new(move |h: &str| h == want)
}

fn valid(state: &Mutex<State>, token: &str) -> bool {
    state
        .lock()
        .unwrap()
        .tokens
        .get(token)
        .is_some_and(|until| Instant::now() < *until)
}
