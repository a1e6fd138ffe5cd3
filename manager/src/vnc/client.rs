//! The VNC API edge: a trait (so the writer and reconciler are testable) and its ureq
//! implementation. VNC errors are plain text, so the agent never turns statuses into errors;
//! 5xx and connection errors are retried with capped exponential backoff, 4xx never are.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::model::{CreatedRef, Entries, ListStream, VncObject, decode_enveloped};
use super::transport::{QuickAckConnector, is_idle_closed};
use crate::metrics::Metrics;
use crate::servers::Servers;
use ureq::unversioned::transport::Connector as _;

#[derive(Debug, Clone, thiserror::Error)]
pub enum VncError {
    /// The server answered with a non-2xx status and this plain-text body.
    #[error("VNC answered {status}: {body}")]
    Status { status: u16, body: String },
    /// No answer (connect, timeout, reset), after retries.
    #[error("VNC unreachable: {0}")]
    Transport(String),
    /// A 2xx answer we could not decode.
    #[error("VNC answer not understood: {0}")]
    Decode(String),
    /// Not sent: the write was the watcher's, and this manager no longer leads
    /// (`vnc::fenced`). Another manager owns the decision now.
    #[error("VNC write not sent: {0}")]
    Fenced(String),
    /// The TLS handshake failed (the server's certificate does not verify against
    /// `[vnc] ca-file`, or the server refused ours): the same call fails again until the
    /// configuration changes, so it is never retried.
    #[error("VNC {0}")]
    Tls(String),
    /// No token to send: the login was refused (permanent) or its service is unreachable.
    #[error("VNC login: {0}")]
    Auth(crate::auth::AuthError),
}

impl VncError {
    pub fn status(&self) -> Option<u16> {
        match self {
            VncError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
    pub fn body(&self) -> &str {
        match self {
            VncError::Status { body, .. } => body,
            _ => "",
        }
    }
    /// `409 ['a', 'b'] already exists with uuid: <uuid>` → the existing uuid.
    pub fn existing_uuid(&self) -> Option<String> {
        if self.status() != Some(409) {
            return None;
        }
        let (_, tail) = self.body().split_once("already exists with uuid: ")?;
        let u = tail.trim();
        uuid::Uuid::parse_str(u).ok().map(|_| u.to_owned())
    }
    /// Worth retrying: no answer, or a 5xx whose text is not one of the server's known
    /// answers to a request that can never succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            VncError::Status { status, body } => {
                *status >= 500 && !PERMANENT_5XX.iter().any(|p| body.contains(p))
            }
            VncError::Transport(_) => true,
            VncError::Auth(a) => !a.is_permanent(),
            VncError::Decode(_) | VncError::Fenced(_) | VncError::Tls(_) => false,
        }
    }

    /// The server answered, and the same request will get the same answer: a 4xx, or a 5xx
    /// from `PERMANENT_5XX`.
    pub fn is_permanent(&self) -> bool {
        matches!(self, VncError::Status { .. }) && !self.is_transient()
    }
}

/// Texts of 5xx answers the upstream API server (tf-controller `vnc_cfg_api_server`) gives
/// for requests that can never succeed, so they are not retried:
/// - `Virtual-Network([...]) has exhausted subnet([])`: a floating IP outside its pool's
///   network, or from an exhausted pool (`vnc_addr_mgmt.py` raises it as a 500 on the
///   floating-ip path; the same mistake on an instance-ip is a 400);
/// - `... has invalid alloc_unit(1) in subnet(...)`: a network with a /31, /32 or IPv6 /127
///   subnet.
const PERMANENT_5XX: &[&str] = &["has exhausted subnet(", "has invalid alloc_unit("];

/// A failed exchange: a TLS failure (permanent) or no answer (transient).
fn transport_error(url: &str, e: &ureq::Error) -> VncError {
    if let ureq::Error::Other(o) = e
        && let Some(a @ VncError::Auth(_)) = o.downcast_ref::<VncError>()
    {
        // No token to send (`get_authed`): the login's error, not a transport one.
        return a.clone();
    }
    match contrail_mesos_api::tls::failure(e) {
        Some(reason) => VncError::Tls(contrail_mesos_api::tls::describe(url, &reason)),
        None => VncError::Transport(format!("{url}: {e}")),
    }
}

/// Sends with `send`, again at once when the server had closed the pooled connection before
/// answering (`transport::IdleClosed`: the request most likely never reached it). This is the
/// re-send `call` already makes after any transport error, only at once and without counting
/// an attempt: a create the server did take answers 409 with its uuid the second time, which
/// the writer's create-or-reuse paths accept.
/// The largest answer body read (a list page of a large cluster is tens of MB).
const BODY_LIMIT: u64 = 256 * 1024 * 1024;

/// The most a body's buffer is sized up front from its `Content-Length`.
const PRESIZE_MAX: u64 = 1024 * 1024;

/// A request body as JSON text, written straight into a buffer sized for a VNC object (a
/// `Value`'s `Display` goes through a formatter and regrows a `String` from empty).
fn json_bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    serde_json::to_writer(&mut out, v).expect("a JSON value always serialises");
    out
}

fn resend_if_idle_closed<T>(send: impl Fn() -> Result<T, ureq::Error>) -> Result<T, ureq::Error> {
    let mut r = send();
    for _ in 0..IDLE_CLOSED_RESENDS {
        match &r {
            Err(e) if is_idle_closed(e) => r = send(),
            _ => break,
        }
    }
    r
}

fn with_token<B>(rb: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
    match token {
        Some(t) => rb.header("X-Auth-Token", t),
        None => rb,
    }
}

/// Idle keep-alive connections kept to the API servers: more than the callers that can be in
/// a call at once (the API's VNC pool of 16 workers, the reconciler, the watcher).
const IDLE_CONNECTIONS: usize = 64;

/// Immediate re-sends of a request whose pooled connection the server had closed
/// (`transport::IdleClosed`); each takes another connection, a new one once the pool's
/// idle ones are found closed too.
const IDLE_CLOSED_RESENDS: usize = 3;

/// Objects per list page. The server's own default (`paginate_count`) is 256; a larger page
/// means fewer requests, and a page is decoded object by object, never held whole.
const LIST_PAGE: usize = 1000;

/// A query value (RFC 3986 unreserved characters kept): markers carry fq-names.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `POST /ref-update` operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefOp {
    Add,
    Delete,
}

/// The calls the manager makes. Object bodies are the inner objects (`{"fq_name": ...}`),
/// not the `{"<type>": ...}` envelope.
pub trait VncApi: Send + Sync {
    /// Creates; returns the uuid.
    fn create(&self, ty: &str, obj: Value) -> Result<String, VncError>;
    /// `create` of an object already written as JSON text (the registration's bodies are
    /// serialised straight from borrowed fields, without a `Value` tree to build and free).
    /// By default decoded and handed to `create`, so a wrapper or a fake sees one object.
    fn create_text(&self, ty: &str, obj: &str) -> Result<String, VncError> {
        let obj = serde_json::from_str(obj)
            .map_err(|e| VncError::Decode(format!("create {ty}: body: {e}")))?;
        self.create(ty, obj)
    }
    fn read(&self, ty: &str, uuid: &str) -> Result<VncObject, VncError>;
    fn update(&self, ty: &str, uuid: &str, obj: Value) -> Result<(), VncError>;
    fn delete(&self, ty: &str, uuid: &str) -> Result<(), VncError>;
    /// `GET /<type>s?detail=True`, every object of the type.
    fn list(&self, ty: &str) -> Result<Vec<VncObject>, VncError> {
        let mut v = Vec::new();
        self.list_each(ty, &mut |o| v.push(o))?;
        Ok(v)
    }
    /// The same list, each object handed to `f` as it is decoded (nothing else is kept).
    /// A failure once the body started is returned, not retried: `f` may have seen part of
    /// the list, and the caller discards what it gathered.
    fn list_each(&self, ty: &str, f: &mut dyn FnMut(VncObject)) -> Result<(), VncError>;
    /// `list_each`, each object with only `fields` besides its uuid and fq-name (the short
    /// list with `fields=`, which the API server reads from its store field by field: a pass
    /// reading 100,000 interfaces needs five of their ~20 fields). Every object of the type
    /// is still listed. By default the detail list, which has every field.
    fn list_fields_each(
        &self,
        ty: &str,
        fields: &[&str],
        f: &mut dyn FnMut(VncObject),
    ) -> Result<(), VncError> {
        let _ = fields;
        self.list_each(ty, f)
    }
    /// `POST /fqname-to-id`; `None` on 404.
    fn fqname_to_id(&self, ty: &str, fq_name: &[String]) -> Result<Option<String>, VncError>;
    fn ref_update(
        &self,
        ty: &str,
        uuid: &str,
        ref_ty: &str,
        ref_uuid: &str,
        op: RefOp,
    ) -> Result<(), VncError>;
    /// `ref-update` ADD with the link's attribute (a VN's `network_policy_refs` carry a
    /// `VirtualNetworkPolicyType`, `{"sequence": {"major", "minor"}}`).
    fn ref_add_with_attr(
        &self,
        ty: &str,
        uuid: &str,
        ref_ty: &str,
        ref_uuid: &str,
        attr: &Value,
    ) -> Result<(), VncError>;
}

/// Settings of the HTTP client.
#[derive(Clone)]
pub struct HttpVncConfig {
    /// API servers; a connection failure moves to the next.
    pub urls: Vec<String>,
    /// The token sent as `X-Auth-Token` (static or from a Keystone login).
    pub auth: Arc<dyn crate::auth::TokenSource>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Attempts per call (1 = no retry).
    pub attempts: u32,
    pub backoff: Duration,
    /// Client TLS settings for `https://` URLs (`[vnc] ca-file`).
    pub tls: ureq::tls::TlsConfig,
}

pub struct HttpVnc {
    cfg: HttpVncConfig,
    agent: ureq::Agent,
    servers: Servers,
    metrics: Arc<Metrics>,
}

impl HttpVnc {
    pub fn new(cfg: HttpVncConfig, metrics: Arc<Metrics>) -> HttpVnc {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(cfg.timeout))
            .timeout_connect(Some(cfg.connect_timeout))
            // Keep-alive: one connection per concurrent caller (the API's workers, the
            // reconciler, the watcher), reused. The API server writes an answer's head and
            // body as two segments without TCP_NODELAY, which on a reused connection stalled
            // every call ~40 ms on our delayed ACK; the transport re-arms TCP_QUICKACK before
            // each read so the head is ACKed at once (`vnc::transport`; docs/BENCHMARKS.md,
            // "VNC wire"). A connection per call cost a connect, an accept and a TIME_WAIT.
            .max_idle_connections_per_host(IDLE_CONNECTIONS)
            .max_idle_connections(IDLE_CONNECTIONS)
            .tls_config(cfg.tls.clone())
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ().chain(QuickAckConnector)
                .chain(ureq::unversioned::transport::RustlsConnector::default()),
            // An IP literal needs no lookup thread per new connection.
            contrail_mesos_api::resolve::LiteralFirst::default(),
        );
        HttpVnc {
            servers: Servers::new(cfg.urls.clone()),
            cfg,
            agent,
            metrics,
        }
    }

    fn base(&self) -> String {
        self.servers.base()
    }

    /// One exchange: returns (status, body text) or a transport error. A 401 to a token from
    /// a login renews it and sends the request once more (the token was revoked or expired
    /// early); a second 401 is the answer.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, String), VncError> {
        let token = self.token()?;
        let r = self.exchange_with(method, path, body, token.as_deref())?;
        match token {
            Some(t) if r.0 == 401 && self.cfg.auth.refused(&t) => {
                let token = self.token()?;
                self.exchange_with(method, path, body, token.as_deref())
            }
            _ => Ok(r),
        }
    }

    fn token(&self) -> Result<Option<String>, VncError> {
        self.cfg.auth.token().map_err(VncError::Auth)
    }

    fn exchange_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        token: Option<&str>,
    ) -> Result<(u16, String), VncError> {
        let url = format!("{}{path}", self.base());
        let send = || match (method, body) {
            ("GET", _) => with_token(self.agent.get(&url), token).call(),
            ("DELETE", _) => with_token(self.agent.delete(&url), token).call(),
            ("PUT", Some(b)) => with_token(self.agent.put(&url), token)
                .content_type("application/json")
                .send(b),
            (_, Some(b)) => with_token(self.agent.post(&url), token)
                .content_type("application/json")
                .send(b),
            (_, None) => with_token(self.agent.post(&url), token).send_empty(),
        };
        let res = resend_if_idle_closed(send);
        match res {
            Ok(mut r) => {
                let status = r.status().as_u16();
                // Sized from Content-Length (up to a bound: the header is the peer's word), so
                // an answer is read without regrowing the string.
                let hint = r.body().content_length().unwrap_or(0).min(PRESIZE_MAX);
                let mut text = String::with_capacity(hint as usize);
                std::io::Read::read_to_string(
                    &mut r.body_mut().with_config().limit(BODY_LIMIT).reader(),
                    &mut text,
                )
                .map_err(|e| VncError::Transport(e.to_string()))?;
                Ok((status, text))
            }
            Err(e) => {
                // Try the next API server on the next attempt.
                self.servers.failed(&url);
                Err(transport_error(&url, &e))
            }
        }
    }

    /// One page of a detail list; returns the marker of the next page. Only failures before
    /// the body (status, connect) are retried: `f` may have seen part of a failed page.
    /// One page; `shape` is `detail=True` or `fields=...`.
    fn list_page(
        &self,
        ty: &str,
        shape: &str,
        marker: &str,
        f: &mut dyn FnMut(VncObject),
    ) -> Result<Option<String>, VncError> {
        use serde::de::DeserializeSeed as _;
        let entries = if shape.starts_with("detail=") {
            Entries::Wrapped
        } else {
            Entries::Short
        };
        let mut delay = self.cfg.backoff;
        for attempt in 1..=self.cfg.attempts.max(1) {
            let url = format!(
                "{}/{ty}s?{shape}&page_limit={LIST_PAGE}&page_marker={}",
                self.base(),
                percent_encode(marker)
            );
            let t0 = Instant::now();
            let r = match self.get_authed(&url) {
                Ok(resp) if resp.status().as_u16() == 200 => {
                    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(
                        resp.into_body().into_reader(),
                    ));
                    ListStream(&mut *f, entries)
                        .deserialize(&mut de)
                        .and_then(|m| de.end().map(|()| m))
                        .map_err(|e| VncError::Decode(format!("{url}: {e}")))
                }
                Ok(mut resp) => Err(VncError::Status {
                    status: resp.status().as_u16(),
                    body: resp.body_mut().read_to_string().unwrap_or_default(),
                }),
                Err(e) => {
                    self.servers.failed(&url);
                    Err(transport_error(&url, &e))
                }
            };
            self.metrics.vnc_call("list", t0.elapsed(), r.is_ok());
            match r {
                Err(e) if e.is_transient() && attempt < self.cfg.attempts => {
                    self.metrics.vnc_retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
        Err(VncError::Transport(format!("list {ty}: no attempt made")))
    }

    /// Every page of a list, from the first.
    fn list_pages(
        &self,
        ty: &str,
        shape: &str,
        f: &mut dyn FnMut(VncObject),
    ) -> Result<(), VncError> {
        let mut marker = "None".to_owned();
        loop {
            match self.list_page(ty, shape, &marker, f)? {
                Some(m) if m != marker => marker = m,
                _ => return Ok(()),
            }
        }
    }

    /// A GET with the token, renewed and sent once more after a 401 (as `exchange`).
    fn get_authed(&self, url: &str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let token = self.token().map_err(|e| ureq::Error::Other(Box::new(e)))?;
        let get = |token: Option<&str>| {
            resend_if_idle_closed(|| with_token(self.agent.get(url), token).call())
        };
        let resp = get(token.as_deref())?;
        match token {
            Some(t) if resp.status().as_u16() == 401 && self.cfg.auth.refused(&t) => {
                let token = self.token().map_err(|e| ureq::Error::Other(Box::new(e)))?;
                get(token.as_deref())
            }
            _ => Ok(resp),
        }
    }

    /// One VNC exchange, retried while the failure is transient; maps non-2xx to
    /// `VncError::Status`. The body is serialised once by the caller, not once per attempt.
    fn call(
        &self,
        op: &str,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<String, VncError> {
        let mut delay = self.cfg.backoff;
        let attempts = self.cfg.attempts.max(1);
        for attempt in 1..=attempts {
            let t0 = Instant::now();
            let r = self
                .exchange(method, path, body)
                .and_then(|(status, text)| {
                    if (200..300).contains(&status) {
                        Ok(text)
                    } else {
                        Err(VncError::Status { status, body: text })
                    }
                });
            // 404/409 are answers, not failures of the call.
            let ok = match &r {
                Ok(_) => true,
                Err(e) => matches!(e.status(), Some(404) | Some(409)),
            };
            self.metrics.vnc_call(op, t0.elapsed(), ok);
            match r {
                Err(e) if e.is_transient() && attempt < attempts => {
                    tracing::warn!(op, path, attempt, error = %e, "VNC call failed; retrying");
                    self.metrics.vnc_retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    fn call_json<T: DeserializeOwned>(
        &self,
        op: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, VncError> {
        let body = body.map(json_bytes);
        let text = self.call(op, method, path, body.as_deref())?;
        serde_json::from_str(&text).map_err(|e| VncError::Decode(format!("{path}: {e}")))
    }
}

/// The `ref-update` body, its keys in the order tf-api-client writes them.
#[derive(serde::Serialize)]
struct RefUpdateBody<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    uuid: &'a str,
    #[serde(rename = "ref-type")]
    ref_type: &'a str,
    #[serde(rename = "ref-uuid")]
    ref_uuid: &'a str,
    operation: &'a str,
    attr: &'a Value,
}

impl HttpVnc {
    /// `POST /<type>s` of an enveloped body; the created object's uuid.
    fn post_create(&self, ty: &str, body: &[u8]) -> Result<String, VncError> {
        let text = self.call("create", "POST", &format!("/{ty}s"), Some(body))?;
        decode_enveloped::<CreatedRef>(&text, ty)
            .map_err(|e| VncError::Decode(format!("create {ty}: {e}")))?
            .and_then(|c| c.uuid)
            .ok_or_else(|| VncError::Decode(format!("create {ty}: no uuid")))
    }

    /// `POST /ref-update` (tf-api-client `ref_update`): one ref added or removed, with the
    /// link's attribute (null for refs that have none).
    fn post_ref_update(
        &self,
        ty: &str,
        uuid: &str,
        ref_ty: &str,
        ref_uuid: &str,
        op: RefOp,
        attr: &Value,
    ) -> Result<(), VncError> {
        let body = RefUpdateBody {
            ty,
            uuid,
            ref_type: ref_ty,
            ref_uuid,
            operation: if op == RefOp::Add { "ADD" } else { "DELETE" },
            attr,
        };
        let body = serde_json::to_vec(&body).expect("a ref-update body always serialises");
        self.call("ref-update", "POST", "/ref-update", Some(&body))
            .map(|_| ())
    }
}

impl VncApi for HttpVnc {
    fn create(&self, ty: &str, obj: Value) -> Result<String, VncError> {
        self.post_create(ty, &json_bytes(&json!({ ty: obj })))
    }

    fn create_text(&self, ty: &str, obj: &str) -> Result<String, VncError> {
        // `{"<type>": <obj>}`: `ty` is one of the manager's own type names, never input.
        let mut body = Vec::with_capacity(obj.len() + ty.len() + 6);
        body.extend_from_slice(b"{\"");
        body.extend_from_slice(ty.as_bytes());
        body.extend_from_slice(b"\":");
        body.extend_from_slice(obj.as_bytes());
        body.push(b'}');
        self.post_create(ty, &body)
    }

    fn read(&self, ty: &str, uuid: &str) -> Result<VncObject, VncError> {
        let text = self.call("read", "GET", &format!("/{ty}/{uuid}"), None)?;
        decode_enveloped(&text, ty)
            .map_err(|e| VncError::Decode(format!("read {ty}: {e}")))?
            .ok_or_else(|| VncError::Decode(format!("read {ty}: no envelope")))
    }

    fn update(&self, ty: &str, uuid: &str, obj: Value) -> Result<(), VncError> {
        let body = json_bytes(&json!({ ty: obj }));
        self.call("update", "PUT", &format!("/{ty}/{uuid}"), Some(&body))
            .map(|_| ())
    }

    fn delete(&self, ty: &str, uuid: &str) -> Result<(), VncError> {
        self.call("delete", "DELETE", &format!("/{ty}/{uuid}"), None)
            .map(|_| ())
    }

    fn list_each(&self, ty: &str, f: &mut dyn FnMut(VncObject)) -> Result<(), VncError> {
        // Paged (`page_marker`/`page_limit`; without a scope the server walks the type's
        // fq-name index and the marker is "<fq:name>:<uuid>") and streamed straight from the
        // socket, object by object, into the slim `VncObject` (unknown fields skipped): no
        // answer holds more than a page, and no page is held as text or as a whole list.
        self.list_pages(ty, "detail=True", f)
    }

    fn list_fields_each(
        &self,
        ty: &str,
        fields: &[&str],
        f: &mut dyn FnMut(VncObject),
    ) -> Result<(), VncError> {
        // Short entries (`uuid`, `fq_name`) plus the fields; no `href`, which nothing reads.
        let shape = format!("fields={}&exclude_hrefs=true", fields.join(","));
        self.list_pages(ty, &shape, f)
    }

    fn fqname_to_id(&self, ty: &str, fq_name: &[String]) -> Result<Option<String>, VncError> {
        match self.call_json::<Value>(
            "fqname-to-id",
            "POST",
            "/fqname-to-id",
            Some(&json!({"type": ty, "fq_name": fq_name})),
        ) {
            Ok(v) => Ok(v["uuid"].as_str().map(str::to_owned)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn ref_update(
        &self,
        ty: &str,
        uuid: &str,
        ref_ty: &str,
        ref_uuid: &str,
        op: RefOp,
    ) -> Result<(), VncError> {
        self.post_ref_update(ty, uuid, ref_ty, ref_uuid, op, &Value::Null)
    }
    fn ref_add_with_attr(
        &self,
        ty: &str,
        uuid: &str,
        ref_ty: &str,
        ref_uuid: &str,
        attr: &Value,
    ) -> Result<(), VncError> {
        self.post_ref_update(ty, uuid, ref_ty, ref_uuid, RefOp::Add, attr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead as _, Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::AtomicUsize;

    /// A VNC-like server on 127.0.0.1: answers each request `{"uuid": ...}` the way the real
    /// server does (head and body as two writes, no TCP_NODELAY), keeps connections open, and
    /// leaves the `drop_after`-th request of every connection unanswered, closing it as a
    /// server ending an idle connection does. Counts connections and requests.
    struct Peer {
        url: String,
        accepts: Arc<AtomicUsize>,
        requests: Arc<AtomicUsize>,
        /// TCP segments with data that the server's sockets took in, over all connections.
        segments: Arc<AtomicUsize>,
    }

    /// `tcpi_data_segs_in` of a socket: the segments with data it has received (TCP_INFO,
    /// linux/tcp.h; Linux 4.6+). Read at its offset, which libc's `tcp_info` stops short of.
    fn data_segs_in(c: &TcpStream) -> usize {
        use std::os::fd::AsRawFd;
        let mut info = [0u8; 256];
        let mut len = info.len() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `info`.
        let rc = unsafe {
            libc::getsockopt(
                c.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        assert!(rc == 0 && len >= 156, "TCP_INFO: rc {rc}, {len} bytes");
        u32::from_ne_bytes(info[152..156].try_into().unwrap()) as usize
    }

    fn peer(drop_after: Option<usize>) -> Peer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let (accepts, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let segments = Arc::new(AtomicUsize::new(0));
        let (a, r, s) = (accepts.clone(), requests.clone(), segments.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { return };
                a.fetch_add(1, Ordering::SeqCst);
                let (r, s) = (r.clone(), s.clone());
                std::thread::spawn(move || serve(c, drop_after, &r, &s));
            }
        });
        Peer {
            url,
            accepts,
            requests,
            segments,
        }
    }

    fn serve(
        c: TcpStream,
        drop_after: Option<usize>,
        requests: &AtomicUsize,
        segments: &AtomicUsize,
    ) {
        let mut w = c.try_clone().unwrap();
        let mut counted = 0;
        let mut r = std::io::BufReader::new(c);
        for n in 0.. {
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let segs = data_segs_in(&w);
            segments.fetch_add(segs - counted, Ordering::SeqCst);
            counted = segs;
            requests.fetch_add(1, Ordering::SeqCst);
            if drop_after == Some(n) {
                return;
            }
            let body = r#"{"virtual-machine": {"uuid": "fc210677-dc78-4a15-8901-57c30e4b445a"}}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            w.write_all(head.as_bytes()).unwrap();
            w.write_all(body.as_bytes()).unwrap();
        }
    }

    fn client(url: &str, attempts: u32) -> (HttpVnc, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let vnc = HttpVnc::new(
            HttpVncConfig {
                urls: vec![url.to_owned()],
                auth: Arc::new(crate::auth::Static(None)),
                timeout: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(2),
                attempts,
                backoff: Duration::from_millis(10),
                tls: Default::default(),
            },
            metrics.clone(),
        );
        (vnc, metrics)
    }

    #[test]
    fn calls_reuse_one_connection_and_each_request_is_one_segment() {
        let p = peer(None);
        let (vnc, _) = client(&p.url, 1);
        for _ in 0..20 {
            vnc.create("virtual-machine", json!({"fq_name": ["c"]}))
                .unwrap();
        }
        assert_eq!(p.requests.load(Ordering::SeqCst), 20);
        assert_eq!(p.accepts.load(Ordering::SeqCst), 1);
        // Head and body leave together (`transport`): one data segment per request, where
        // two sends made two.
        assert_eq!(p.segments.load(Ordering::SeqCst), 20);
    }

    #[test]
    fn a_body_larger_than_the_socket_buffers_goes_out_whole() {
        // Beyond `transport::FLUSH_AT` the request streams, and once the socket buffer is full
        // the rest is written blocking under the call's timeout; the server reads exactly the
        // Content-Length (it would hang, and the call time out, on a short body).
        let p = peer(None);
        let (vnc, _) = client(&p.url, 1);
        let big = "x".repeat(8 << 20);
        for _ in 0..2 {
            vnc.create(
                "virtual-machine",
                json!({"fq_name": ["c"], "display_name": big}),
            )
            .unwrap();
        }
        assert_eq!(p.requests.load(Ordering::SeqCst), 2);
        assert_eq!(p.accepts.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_request_on_a_connection_the_server_closed_is_sent_again_at_once() {
        // Every connection answers one request and closes on the second without answering.
        let p = peer(Some(1));
        let (vnc, metrics) = client(&p.url, 1);
        for _ in 0..3 {
            let u = vnc
                .create("virtual-machine", json!({"fq_name": ["c"]}))
                .unwrap();
            assert_eq!(u, "fc210677-dc78-4a15-8901-57c30e4b445a");
        }
        // 1st call: new connection. 2nd and 3rd: the pooled one is closed unanswered, the
        // request goes again on a new connection, without counting as a retry.
        assert_eq!(p.requests.load(Ordering::SeqCst), 5);
        assert_eq!(p.accepts.load(Ordering::SeqCst), 3);
        assert_eq!(metrics.vnc_retries.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_new_connection_closed_unanswered_is_a_transport_error_not_a_resend() {
        // The first request of every connection goes unanswered: nothing to blame on an idle
        // connection, so the call's own attempts decide (1 here: one request, an error).
        let p = peer(Some(0));
        let (vnc, _) = client(&p.url, 1);
        let e = vnc
            .create("virtual-machine", json!({"fq_name": ["c"]}))
            .unwrap_err();
        assert!(matches!(e, VncError::Transport(_)), "{e}");
        assert_eq!(p.requests.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn existing_uuid_is_parsed_from_the_409_text() {
        let e = VncError::Status {
            status: 409,
            body: "['default-domain', 'p1'] already exists with uuid: fc210677-dc78-4a15-8901-57c30e4b445a".into(),
        };
        assert_eq!(
            e.existing_uuid().as_deref(),
            Some("fc210677-dc78-4a15-8901-57c30e4b445a")
        );
        let e = VncError::Status {
            status: 409,
            body: "IP address already in use".into(),
        };
        assert_eq!(e.existing_uuid(), None);
        assert!(
            VncError::Status {
                status: 503,
                body: String::new()
            }
            .is_transient()
        );
        assert!(
            !VncError::Status {
                status: 400,
                body: String::new()
            }
            .is_transient()
        );
        // What the server says decides, not the status alone.
        let fip = VncError::Status {
            status: 500,
            body: "Virtual-Network(['default-domain', 't3', 'pub']) has exhausted subnet([])"
                .into(),
        };
        assert!(!fip.is_transient() && fip.is_permanent());
        let unit = VncError::Status {
            status: 500,
            body: "Virtual-Network(default-domain:t3:p2p-31:10.8.1.0/31) has invalid alloc_unit(1) in subnet(10.8.1.0/31) reason: Pool range<=block_alloc_unit".into(),
        };
        assert!(unit.is_permanent());
        for (status, body) in [
            (500, "Internal Server Error"),
            (502, ""),
            (503, ""),
            (504, ""),
        ] {
            let e = VncError::Status {
                status,
                body: body.into(),
            };
            assert!(e.is_transient() && !e.is_permanent(), "{status}");
        }
        assert!(VncError::Transport("reset".into()).is_transient());
    }
}
