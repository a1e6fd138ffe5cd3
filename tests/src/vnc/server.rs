//! HTTP front of the VNC stand-in (hyper on a few tokio threads, each request handled on the
//! thread that read it): the REST routes of the real API server with plain-text errors, plus
//! fault injection for tests (fail the next N requests with a status, delay answers, require an
//! `X-Auth-Token`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

use super::list::ListQuery;
use super::store::{Store, TYPES, VncErr};

/// Knobs tests turn while the server runs.
#[derive(Default)]
pub struct Faults {
    /// The next N requests (any route) fail with `fail_status` and a text body.
    pub fail_next: AtomicU32,
    pub fail_status: AtomicU16,
    /// Every answer is delayed this long.
    pub delay_ms: AtomicU64,
    /// Requests whose path starts with this prefix (e.g. "/virtual-machines") are the only ones
    /// that fail; empty = all.
    pub fail_prefix: Mutex<String>,
    /// When set, requests must carry `X-Auth-Token: <token>` (else 401).
    pub token: Mutex<Option<String>>,
    /// When set, the `X-Auth-Token` must satisfy it (a token the Keystone stand-in issued and
    /// still honours), else 401.
    pub auth: Mutex<Option<crate::login::Validator>>,
    /// Requests refused with 401 so far.
    pub unauthorized: AtomicU64,
}

/// A running stand-in.
pub struct VncServer {
    pub addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    pub faults: Arc<Faults>,
    /// Requests served, by "METHOD /collection-or-type".
    pub calls: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
    /// Ends the accept loop (and with it the runtime, its connections and the listener).
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// The listener of `Wire::SplitNagle` (dropped with the server).
    proxy: Option<std::net::TcpListener>,
}

/// How the stand-in puts its answers on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wire {
    /// Each answer in one go, `TCP_NODELAY` on: the stand-in's own processing time only.
    #[default]
    Whole,
    /// As the real API server (gevent under tf-controller's `vnc_cfg_api_server`) does: the
    /// response head and the body as two writes on a socket without `TCP_NODELAY`. On a reused
    /// keep-alive connection Nagle then holds the body until the client ACKs the head, which
    /// the client's delayed ACK postpones by tens of milliseconds (recorded: the head after
    /// ~11 ms, the body after ~52 ms, from the second request of a connection on).
    SplitNagle,
}

/// One port as a vRouter agent would serve it (for the agent stand-in and devstack).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortView {
    pub vmi_uuid: String,
    pub vmi_fq_name: Vec<String>,
    pub vm_uuid: Option<String>,
    pub vm_name: Option<String>,
    pub vn_uuid: Option<String>,
    pub vn_fq_name: Option<Vec<String>>,
    pub mac: Option<String>,
    pub ip: Option<String>,
    pub plen: Option<u8>,
    pub gateway: Option<String>,
    pub dns: Option<String>,
    /// The IPv6 instance-ip of a dual-stack or IPv6 port, with its subnet's gateway and DNS.
    pub v6_ip: Option<String>,
    pub v6_plen: Option<u8>,
    pub v6_gateway: Option<String>,
    pub v6_dns: Option<String>,
    /// `annotations.key_value_pair` as (key, value).
    pub annotations: Vec<(String, String)>,
    /// Virtual routers that refer to the VM.
    pub vrouters: Vec<String>,
}

impl VncServer {
    /// Starts on `127.0.0.1:0` (a random port) with `threads` workers.
    pub fn start() -> anyhow::Result<VncServer> {
        Self::start_on("127.0.0.1:0", 4)
    }

    /// Starts on `127.0.0.1:0` answering on the wire as `wire` says.
    pub fn start_wire(wire: Wire) -> anyhow::Result<VncServer> {
        let mut v = Self::start_on("127.0.0.1:0", 4)?;
        if wire == Wire::SplitNagle {
            let inner = v.addr;
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            v.addr = l.local_addr()?;
            let accept = l.try_clone()?;
            let stop = v.stop.clone();
            v.threads.push(std::thread::spawn(move || {
                split_nagle_proxy(accept, inner, stop)
            }));
            v.proxy = Some(l);
        }
        Ok(v)
    }

    pub fn start_on(bind: &str, threads: usize) -> anyhow::Result<VncServer> {
        let listener = nodelay_listener(bind)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let store = Arc::new(Mutex::new(Store::new(&format!("http://{addr}"))));
        let faults = Arc::new(Faults::default());
        let calls = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("vnc-standin")
            .enable_io()
            .enable_time()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared = Arc::new(Shared {
            store: store.clone(),
            faults: faults.clone(),
            calls: calls.clone(),
        });
        // The runtime lives on its own thread and is dropped there, so a `VncServer` dropped
        // inside another runtime does not drop a runtime in async context, and the listener is
        // closed when `drop` returns.
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let Ok(l) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                tokio::select! {
                    () = accept_loop(l, shared) => {}
                    _ = rx => {}
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        });
        Ok(VncServer {
            addr,
            store,
            faults,
            calls,
            shutdown: Some(tx),
            stop,
            threads: vec![thread],
            proxy: None,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Direct access to the objects (tests, devstack).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fail the next `n` requests with `status` (e.g. 503), optionally only those whose path
    /// starts with `prefix`.
    pub fn fail_next(&self, n: u32, status: u16, prefix: &str) {
        *self.faults.fail_prefix.lock().unwrap() = prefix.to_owned();
        self.faults.fail_status.store(status, Ordering::SeqCst);
        self.faults.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn set_delay(&self, d: Duration) {
        self.faults
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn require_token(&self, token: Option<&str>) {
        *self.faults.token.lock().unwrap() = token.map(str::to_owned);
    }

    /// Accept only `X-Auth-Token`s that satisfy `check` (`None` = any).
    pub fn require_auth(&self, check: Option<crate::login::Validator>) {
        *self.faults.auth.lock().unwrap() = check;
    }

    pub fn calls(&self, key: &str) -> u64 {
        self.calls.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    /// Adds a `virtual-router` `[default-global-system-config, name]` with an IP.
    pub fn add_virtual_router(&self, name: &str, ip: &str) -> String {
        self.store()
            .create(
                "virtual-router",
                json!({"fq_name": ["default-global-system-config", name], "parent_type": "global-system-config", "virtual_router_ip_address": ip}),
            )
            .expect("virtual-router")
    }

    /// Creates any object (test setup: security groups, pools...). Returns its uuid.
    pub fn create(&self, ty: &str, body: Value) -> Result<String, VncErr> {
        self.store().create(ty, body)
    }

    pub fn count(&self, ty: &str) -> usize {
        self.store().count(ty)
    }

    /// Every VMI with its VN, MAC, IP (first instance-ip of each family), VM and vrouters:
    /// what a vRouter agent learns for its ports.
    pub fn ports(&self) -> Vec<PortView> {
        let s = self.store();
        let mut out = Vec::new();
        for vmi in s.list_type("virtual-machine-interface") {
            let vm = vmi.ref_uuids("virtual-machine").first().cloned();
            let vn = vmi.ref_uuids("virtual-network").first().cloned();
            // The first instance-ip of each family, with the subnet its address lies in.
            let addrs: Vec<std::net::IpAddr> = s
                .back_refs_of(&vmi.uuid)
                .into_iter()
                .filter(|(t, _)| t == "instance-ip")
                .filter_map(|(_, u)| s.get(&u))
                .filter_map(|i| i.prop_str("instance_ip_address")?.parse().ok())
                .collect();
            let of_family = |v6: bool| {
                let a = *addrs.iter().find(|a| a.is_ipv6() == v6)?;
                let subnet = vn
                    .as_ref()
                    .and_then(|vn| s.vn_subnets(vn).iter().find(|x| x.contains(a)));
                Some((a, subnet))
            };
            let (v4, v6) = (of_family(false), of_family(true));
            let ip = v4.map(|(a, _)| a.to_string());
            let subnet = v4.and_then(|(_, x)| x);
            let subnet6 = v6.and_then(|(_, x)| x);
            let annotations = vmi
                .props
                .get("annotations")
                .and_then(|a| a.get("key_value_pair"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|kv| {
                            (
                                kv["key"].as_str().unwrap_or("").to_owned(),
                                kv["value"].as_str().unwrap_or("").to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let vrouters = vm
                .as_ref()
                .map(|vm| {
                    s.back_refs_of(vm)
                        .into_iter()
                        .filter(|(t, _)| t == "virtual-router")
                        .filter_map(|(_, u)| s.get(&u).map(|o| o.name().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(PortView {
                vmi_uuid: vmi.uuid.clone(),
                vmi_fq_name: vmi.fq_name.clone(),
                vm_name: vm
                    .as_ref()
                    .and_then(|u| s.get(u))
                    .map(|o| o.name().to_owned()),
                vm_uuid: vm,
                vn_fq_name: vn
                    .as_ref()
                    .and_then(|u| s.get(u))
                    .map(|o| o.fq_name.clone()),
                vn_uuid: vn,
                mac: vmi
                    .props
                    .get("virtual_machine_interface_mac_addresses")
                    .and_then(|m| m["mac_address"][0].as_str())
                    .map(str::to_owned),
                ip,
                plen: subnet.map(|a| a.net.prefix_len()),
                gateway: subnet.map(|a| a.gateway_addr().to_string()),
                dns: subnet.map(|a| a.dns_addr().to_string()),
                v6_ip: v6.map(|(a, _)| a.to_string()),
                v6_plen: subnet6.map(|a| a.net.prefix_len()),
                v6_gateway: subnet6.map(|a| a.gateway_addr().to_string()),
                v6_dns: subnet6.map(|a| a.dns_addr().to_string()),
                annotations,
                vrouters,
            });
        }
        out
    }
}

impl Drop for VncServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(l) = self.proxy.take() {
            // Wakes the accept loop, which then sees `stop`.
            let _ = std::net::TcpStream::connect(l.local_addr().expect("proxy address"));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `Wire::SplitNagle`: accepts on `l` (no `TCP_NODELAY`), relays each connection to the
/// stand-in at `inner`, and writes every answer back as two writes: head, then body.
fn split_nagle_proxy(l: std::net::TcpListener, inner: SocketAddr, stop: Arc<AtomicBool>) {
    for conn in l.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(client) = conn else { continue };
        let Ok(upstream) = std::net::TcpStream::connect(inner) else {
            continue;
        };
        // The relay's own leg must add no stall of its own.
        let _ = upstream.set_nodelay(true);
        let (Ok(mut c_read), Ok(mut u_write)) = (client.try_clone(), upstream.try_clone()) else {
            continue;
        };
        // Requests go through byte for byte.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut c_read, &mut u_write);
            let _ = u_write.shutdown(std::net::Shutdown::Write);
        });
        std::thread::spawn(move || {
            let _ = relay_answers(upstream, client);
        });
    }
}

/// Copies HTTP/1.1 answers (each with a `Content-Length`, as the stand-in always sends) from
/// `from` to `to`, the head and the body of each as separate writes.
fn relay_answers(from: std::net::TcpStream, mut to: std::net::TcpStream) -> std::io::Result<()> {
    use std::io::{BufRead as _, Read as _, Write as _};
    let mut r = std::io::BufReader::new(from);
    loop {
        let mut head = Vec::new();
        loop {
            let n = r.read_until(b'\n', &mut head)?;
            if n == 0 {
                return Ok(());
            }
            if head.ends_with(b"\r\n\r\n") {
                break;
            }
        }
        let len = String::from_utf8_lossy(&head)
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        to.write_all(&head)?;
        if !body.is_empty() {
            to.write_all(&body)?;
        }
    }
}

/// A listener whose accepted connections have `TCP_NODELAY` (Linux copies it from the
/// listening socket). An answer that leaves as two segments (tiny_http, which served this
/// before, wrote through a 1 KiB buffer; hyper writes head and body with one `writev` but
/// may still split a large one) must not wait for the client's delayed ACK: 40 ms per read
/// on a keep-alive connection. That stall is what `Wire::SplitNagle` is for, not the default.
fn nodelay_listener(bind: &str) -> anyhow::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(bind).map_err(|e| anyhow::anyhow!("bind {bind}: {e}"))?;
    socket2::SockRef::from(&l)
        .set_tcp_nodelay(true)
        .map_err(|e| anyhow::anyhow!("TCP_NODELAY: {e}"))?;
    Ok(l)
}

/// What a request handler reads: the objects, the fault knobs, the call counters.
struct Shared {
    store: Arc<Mutex<Store>>,
    faults: Arc<Faults>,
    calls: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
}

async fn accept_loop(l: tokio::net::TcpListener, sh: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = l.accept().await else {
            // Out of file descriptors and the like: try again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        // Inherited from the listener on Linux; set again so it never depends on that.
        let _ = stream.set_nodelay(true);
        let sh = sh.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let sh = sh.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, &sh).await) }
            });
            // Keep-alive, no header timeout (as before), and answers still go out after the
            // client shut its sending side (the `SplitNagle` relay does once its client has).
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .half_close(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

type Resp = hyper::Response<http_body_util::Full<bytes::Bytes>>;

fn answer(status: u16, content_type: &str, body: String) -> Resp {
    let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_str(content_type).expect("header"),
    );
    r
}

fn text(status: u16, body: &str) -> Resp {
    answer(status, "text/html; charset=UTF-8", body.to_owned())
}

fn json_resp(status: u16, text: String) -> Resp {
    answer(status, "application/json; charset=UTF-8", text)
}

async fn handle(req: hyper::Request<hyper::body::Incoming>, sh: &Shared) -> Resp {
    use http_body_util::BodyExt as _;
    let (faults, calls) = (&sh.faults, &sh.calls);
    let delay = faults.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let (parts, body) = req.into_parts();
    let url = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let method = parts.method.as_str().to_owned();
    // The whole body, read before any answer, so that every answer leaves the connection
    // ready for the next request. Not UTF-8 (or cut off) reads as empty, as before.
    let body = match body.collect().await {
        Ok(b) => String::from_utf8(b.to_bytes().to_vec()).unwrap_or_default(),
        Err(_) => String::new(),
    };
    let key = {
        let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        format!("{method} /{}", seg.first().copied().unwrap_or(""))
    };
    *calls.lock().unwrap().entry(key).or_default() += 1;
    let token = faults.token.lock().unwrap().clone();
    let check = faults.auth.lock().unwrap().clone();
    let sent = parts
        .headers
        .get("X-Auth-Token")
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
    let ok = token.is_none_or(|t| sent.as_deref() == Some(t.as_str()))
        && check.is_none_or(|c| sent.as_deref().is_some_and(|s| c(s)));
    if !ok {
        faults.unauthorized.fetch_add(1, Ordering::SeqCst);
        return text(401, "Authentication required");
    }
    let fails = faults.fail_next.load(Ordering::SeqCst);
    if fails > 0 && path.starts_with(faults.fail_prefix.lock().unwrap().as_str()) {
        faults.fail_next.fetch_sub(1, Ordering::SeqCst);
        let status = faults.fail_status.load(Ordering::SeqCst);
        return text(status, "Service Unavailable (injected)");
    }
    match route(&method, path, query, &body, &sh.store) {
        // DELETE answers 200 with an empty body.
        Ok(Answer::Json(Value::String(s))) if s.is_empty() => {
            answer(200, "text/plain; charset=UTF-8", String::new())
        }
        Ok(Answer::Json(v)) => json_resp(200, v.to_string()),
        Ok(Answer::Text(t)) => json_resp(200, t),
        Err(VncErr { status, text: t }) => text(status, &t),
    }
}

/// A query parameter, percent-decoded (`+` is a space, as form encoding has it).
fn param(query: &str, k: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(a, _)| *a == k)
        .map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse(body: &str) -> Result<Value, VncErr> {
    serde_json::from_str(body).map_err(|e| VncErr {
        status: 400,
        text: format!("Bad Request: {e}"),
    })
}

/// What a route answers with 200: a JSON value, or JSON text already written (lists, whose
/// text is written straight from the store: `list::list_text`).
pub enum Answer {
    Json(Value),
    Text(String),
}

/// Routes one request. Pure over the store.
pub fn route(
    method: &str,
    path: &str,
    query: &str,
    body: &str,
    store: &Mutex<Store>,
) -> Result<Answer, VncErr> {
    // The body is decoded before the store lock is taken (threads serialise on that lock);
    // a decode error still surfaces only where each route reads the body, as before.
    let mut pre = matches!(method, "POST" | "PUT").then(|| parse(body));
    let mut parse = |_: &str| pre.take().unwrap_or_else(|| parse(body));
    let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
    let seg: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|x| !x.is_empty())
        .collect();
    let not_found = || VncErr {
        status: 404,
        text: "Not Found".into(),
    };
    let answer = match (method, seg.as_slice()) {
        ("GET", []) => {
            let mut links = vec![
                json!({"link": {"rel": "documentation", "href": format!("{}/documentation/index.html", s.base), "name": "documentation", "method": "GET"}}),
            ];
            links.extend(TYPES.iter().map(
                |t| json!({"link": {"rel": "collection", "href": format!("{}/{t}s", s.base), "name": t, "method": null}}),
            ));
            Ok(json!({"href": s.base, "links": links}))
        }
        ("POST", ["fqname-to-id"]) => {
            let b = parse(body)?;
            let ty = b["type"].as_str().unwrap_or("");
            let fq: Vec<String> = b["fq_name"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect();
            s.uuid_of(ty, &fq)
                .map(|u| json!({"uuid": u}))
                .ok_or_else(|| VncErr {
                    status: 404,
                    text: format!("Name {} not found", super::store::py_list(&fq)),
                })
        }
        ("POST", ["id-to-fqname"]) => {
            let b = parse(body)?;
            let u = b["uuid"].as_str().unwrap_or("");
            s.get(u)
                .map(|o| json!({"fq_name": o.fq_name, "type": o.ty}))
                .ok_or_else(|| VncErr {
                    status: 404,
                    text: format!("UUID {u} not found"),
                })
        }
        ("POST", ["ref-update"]) => {
            let b = parse(body)?;
            s.ref_update(&b).map(|u| json!({"uuid": u}))
        }
        ("POST", ["list-bulk-collection"]) => {
            let b = parse(body)?;
            let ty = b["type"].as_str().unwrap_or("").to_owned();
            if !TYPES.contains(&ty.as_str()) {
                return Err(not_found());
            }
            return super::list::list_text(&s, &ty, &ListQuery::from_body(&b)).map(Answer::Text);
        }
        ("POST", [coll]) => {
            let ty = coll
                .strip_suffix('s')
                .filter(|t| TYPES.contains(t))
                .ok_or_else(not_found)?;
            let mut b = parse(body)?;
            let inner = b.get_mut(ty).map(Value::take).ok_or_else(|| VncErr {
                status: 400,
                text: format!("Bad Request: no {ty}"),
            })?;
            let u = s.create(ty, inner)?;
            let mut text = Vec::with_capacity(512);
            s.write_created(&u, &mut text);
            return Ok(Answer::Text(
                String::from_utf8(text).expect("JSON is UTF-8"),
            ));
        }
        ("GET", [coll]) => {
            let ty = coll
                .strip_suffix('s')
                .filter(|t| TYPES.contains(t))
                .ok_or_else(not_found)?;
            return super::list::list_text(&s, ty, &ListQuery::from_params(|k| param(query, k)))
                .map(Answer::Text);
        }
        ("GET", [ty, uuid]) if TYPES.contains(ty) => match s.get(uuid) {
            Some(o) if o.ty == *ty => {
                // `{"<type>": render(o, false)}`, written as text (`Store::write_render`).
                let mut text = Vec::with_capacity(2048);
                let mut top = super::store::JsonObj::open(&mut text);
                top.key(ty);
                s.write_render(o, false, top.out);
                top.close();
                return Ok(Answer::Text(
                    String::from_utf8(text).expect("JSON is UTF-8"),
                ));
            }
            _ => Err(VncErr {
                status: 404,
                text: format!("Unknown id: {uuid}"),
            }),
        },
        ("PUT", [ty, uuid]) if TYPES.contains(ty) => {
            let b = parse(body)?;
            let inner = b.get(*ty).cloned().unwrap_or(json!({}));
            s.update(ty, uuid, inner)?;
            Ok(json!({ *ty: {"uuid": uuid, "href": s.href(ty, uuid)} }))
        }
        ("DELETE", [ty, uuid]) if TYPES.contains(ty) => {
            s.delete(ty, uuid)?;
            Ok(Value::String(String::new()))
        }
        _ => Err(not_found()),
    };
    answer.map(Answer::Json)
}
