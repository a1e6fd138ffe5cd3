//! Keystone v3 stand-in (OpenStack Identity API v3 reference, "Password authentication with
//! scoped authorization"): `POST /v3/auth/tokens` with the `password` method and a project
//! scope by name and domain name. Success is 201 with the token in `X-Subject-Token` and
//! `{"token": {"expires_at", "issued_at", "methods", "user", "project", ...}}`; a wrong user or
//! password is 401 `{"error": {"code": 401, "title": "Unauthorized", "message": ...}}`, a body
//! that is not a v3 auth request 400.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Http, Validator};

#[derive(Debug, Clone)]
pub struct Account {
    pub user: String,
    pub user_domain: String,
    pub password: String,
    pub project: String,
    pub project_domain: String,
}

impl Account {
    /// `admin` in `Default`, scoped to project `admin`.
    pub fn admin(password: &str) -> Account {
        Account {
            user: "admin".into(),
            user_domain: "Default".into(),
            password: password.into(),
            project: "admin".into(),
            project_domain: "Default".into(),
        }
    }
}

struct State {
    account: Account,
    lifetime: Duration,
    /// Issued tokens and when they stop being honoured.
    tokens: HashMap<String, Instant>,
    logins: AtomicU64,
    refused: AtomicU64,
}

pub struct KeystoneServer {
    http: Http,
    state: Arc<Mutex<State>>,
}

fn unauthorized() -> Value {
    json!({"error": {"code": 401, "title": "Unauthorized",
        "message": "The request you have made requires authentication."}})
}

fn handle(state: &Mutex<State>, mut req: tiny_http::Request) {
    use super::json as answer;
    let path = req.url().split('?').next().unwrap_or("").to_owned();
    if req.method() != &tiny_http::Method::Post || path != "/v3/auth/tokens" {
        let _ = req.respond(answer(
            404,
            &json!({"error": {"code": 404, "title": "Not Found", "message": "not found"}}),
        ));
        return;
    }
    let Some(b) = super::body(&mut req) else {
        let _ = req.respond(answer(
            400,
            &json!({"error": {"code": 400, "title": "Bad Request",
            "message": "Expecting to find auth in request body."}}),
        ));
        return;
    };
    let id = &b["auth"]["identity"];
    let is_password = id["methods"]
        .as_array()
        .is_some_and(|m| m.iter().any(|x| x == "password"));
    if !is_password {
        let _ = req.respond(answer(
            400,
            &json!({"error": {"code": 400, "title": "Bad Request",
            "message": "Expecting to find identity methods in request body."}}),
        ));
        return;
    }
    let u = &id["password"]["user"];
    let scope = &b["auth"]["scope"]["project"];
    let mut st = state.lock().unwrap();
    let a = st.account.clone();
    let good = u["name"] == a.user.as_str()
        && u["domain"]["name"] == a.user_domain.as_str()
        && u["password"] == a.password.as_str()
        && scope["name"] == a.project.as_str()
        && scope["domain"]["name"] == a.project_domain.as_str();
    if !good {
        st.refused.fetch_add(1, Ordering::SeqCst);
        drop(st);
        let _ = req.respond(answer(401, &unauthorized()));
        return;
    }
    st.logins.fetch_add(1, Ordering::SeqCst);
    let token = super::new_token("gAAAAA");
    let life = st.lifetime;
    st.tokens.insert(token.clone(), Instant::now() + life);
    drop(st);
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let now = time::OffsetDateTime::now_utc();
    let body = json!({"token": {
        "methods": ["password"],
        "expires_at": rfc(now + life),
        "issued_at": rfc(now),
        "audit_ids": [uuid::Uuid::new_v4().simple().to_string()],
        "user": {"id": "u-1", "name": a.user, "domain": {"id": "default", "name": a.user_domain},
            "password_expires_at": null},
        "project": {"id": "p-1", "name": a.project, "domain": {"id": "default", "name": a.project_domain}},
        "roles": [{"id": "r-1", "name": "admin"}],
        "is_domain": false,
        "catalog": []
    }});
    let resp = super::json(201, &body).with_header(
        tiny_http::Header::from_bytes("X-Subject-Token", token.as_bytes()).expect("header"),
    );
    let _ = req.respond(resp);
}

impl KeystoneServer {
    /// Honours `account`; tokens live `lifetime`.
    pub fn start(account: Account, lifetime: Duration) -> anyhow::Result<KeystoneServer> {
        let state = Arc::new(Mutex::new(State {
            account,
            lifetime,
            tokens: HashMap::new(),
            logins: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }));
        let st = state.clone();
        let http = Http::start(move |req| handle(&st, req))?;
        Ok(KeystoneServer { http, state })
    }

    /// The v3 base, as `[vnc] auth-url` takes it.
    pub fn url(&self) -> String {
        format!("http://{}/v3", self.http.addr)
    }

    /// Successful logins so far.
    pub fn logins(&self) -> u64 {
        self.state.lock().unwrap().logins.load(Ordering::SeqCst)
    }

    /// Logins refused (401) so far.
    pub fn refused(&self) -> u64 {
        self.state.lock().unwrap().refused.load(Ordering::SeqCst)
    }

    /// Every token issued so far stops being honoured (revoked, or expired early).
    pub fn revoke_all(&self) {
        self.state.lock().unwrap().tokens.clear();
    }

    pub fn set_lifetime(&self, d: Duration) {
        self.state.lock().unwrap().lifetime = d;
    }

    pub fn is_valid(&self, token: &str) -> bool {
        valid(&self.state, token)
    }

    /// The check for the VNC stand-in (`X-Auth-Token` value).
    pub fn validator(&self) -> Validator {
        let st = self.state.clone();
        Arc::new(move |t: &str| valid(&st, t))
    }
}

fn valid(state: &Mutex<State>, token: &str) -> bool {
    state
        .lock()
        .unwrap()
        .tokens
        .get(token)
        .is_some_and(|until| Instant::now() < *until)
}
