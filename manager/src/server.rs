//! The attachment API (`docs/attachment-api.md`) plus `/livez`, `/readyz`, `/healthz` and
//! `/metrics`, on hyper 1 (HTTP/1.1) over a small tokio runtime of its own.
//!
//! Every resource a client can hold is bounded:
//! - connections: at most `max_connections` at once (the accept loop waits for a slot, so the
//!   excess waits in the kernel's backlog instead of costing descriptors);
//! - the request head: at most `max_header_bytes` (hyper answers 431), read within
//!   `header_timeout` (slowloris), and an idle keep-alive connection is closed after
//!   `idle_timeout` without a byte;
//! - the body: `Content-Length` above `max_body_bytes` is refused with 413 before a byte is read
//!   (a huge declared length costs nothing), a chunked body is cut at the same size, and the
//!   whole body must arrive within `body_timeout` (408);
//! - answers: a write that makes no progress for `write_timeout` ends the connection;
//! - TLS (`[api] tls-cert-file`): the handshake must finish within `header_timeout` too (a
//!   client that opens a socket and never completes it is closed, like a slow head), and the
//!   idle and write limits sit under the TLS layer, on the socket itself.
//!
//! The VNC-bound work (register, deregister) runs on the blocking pool behind a semaphore of
//! `workers` permits, so a blackholed VNC ties up at most those; the health endpoints and
//! `/metrics` never wait on VNC (readiness is a cached result of background probes, see
//! `health.rs`). Running out of descriptors (EMFILE/ENFILE) only pauses accepting: the loop
//! backs off and accepts again once descriptors are free.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use contrail_mesos_api::{ATTACHMENTS_PATH, ApiError, AttachRequest, DetachResponse, ErrorKind};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;

use crate::health::Health;
use crate::service::Manager;

/// Limits of the HTTP server (`[api]` section of the configuration).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body (an AttachRequest is a few KiB).
    pub max_body_bytes: usize,
    /// Largest request head (request line + headers); hyper's floor is 8 KiB.
    pub max_header_bytes: usize,
    /// The request head must be complete this long after the connection is ready for it.
    pub header_timeout: Duration,
    /// The body must be complete this long after the head.
    pub body_timeout: Duration,
    /// A connection with no read progress for this long is closed (idle keep-alive).
    pub idle_timeout: Duration,
    /// A write with no progress for this long ends the connection.
    pub write_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// VNC-bound requests in progress at once.
    pub workers: usize,
    /// How long a VNC-bound request waits for a worker before it is answered 503.
    pub queue_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(10),
            max_connections: 1024,
            workers: 16,
            queue_timeout: Duration::from_secs(60),
        }
    }
}

pub struct ApiServer {
    pub addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
    stop: watch::Sender<bool>,
    workers: Arc<Semaphore>,
    n_workers: u32,
}

struct State {
    mgr: Arc<Manager>,
    health: Arc<Health>,
    token: Option<String>,
    limits: Limits,
    workers: Arc<Semaphore>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

type Resp = Response<Full<Bytes>>;

fn json<T: Serialize>(status: u16, v: &T) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(v).unwrap_or_default(),
    )));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(e: ApiError) -> Resp {
    json(e.status(), &e)
}

/// An error answer whose status is not one of the API's error kinds (413, 408): the body
/// keeps the API's error shape, with the closest kind.
fn error_with(status: u16, kind: ErrorKind, msg: impl Into<String>) -> Resp {
    json(status, &ApiError::new(kind, None, msg))
}

fn text(status: StatusCode, ctype: &'static str, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// Whether a listen address is loopback-only (`127.0.0.0/8`, `::1`, `localhost`).
pub fn is_loopback(listen: &str) -> bool {
    match listen.parse::<SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => listen
            .rsplit_once(':')
            .is_some_and(|(h, _)| h.eq_ignore_ascii_case("localhost")),
    }
}

impl ApiServer {
    pub fn start(
        listen: &str,
        limits: Limits,
        token: Option<String>,
        mgr: Arc<Manager>,
        health: Arc<Health>,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> anyhow::Result<ApiServer> {
        let workers = limits.workers.max(1);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("api")
            // VNC-bound requests are bounded by the semaphore below; the pool only needs
            // room for them.
            .max_blocking_threads(workers + 2)
            .enable_io()
            .enable_time()
            .build()?;
        let std_listener = nodelay_listener(listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = {
            let _g = rt.enter();
            tokio::net::TcpListener::from_std(std_listener)?
        };
        let (stop, stop_rx) = watch::channel(false);
        let sem = Arc::new(Semaphore::new(workers));
        let st = Arc::new(State {
            mgr,
            health,
            token: token.filter(|t| !t.is_empty()),
            limits: Limits { workers, ..limits },
            workers: sem.clone(),
            tls,
        });
        let https = st.tls.is_some();
        rt.spawn(accept_loop(listener, st, stop_rx));
        tracing::info!(%addr, workers, https, "attachment API listening");
        Ok(ApiServer {
            addr,
            rt: Some(rt),
            stop,
            workers: sem,
            n_workers: workers as u32,
        })
    }

    /// Stops accepting; VNC-bound requests in flight get up to `grace` to finish.
    pub fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        if let Some(rt) = self.rt.take() {
            let sem = self.workers.clone();
            let n = self.n_workers;
            // Every permit back = no VNC work in flight.
            let _ =
                rt.block_on(
                    async move { tokio::time::timeout(grace, sem.acquire_many_owned(n)).await },
                );
            rt.shutdown_timeout(Duration::from_millis(200));
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// True for accept errors that mean "out of a resource for now": the listener is fine and
/// accepting works again once descriptors or memory are released.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    st: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    let conns = Arc::new(Semaphore::new(st.limits.max_connections.max(1)));
    let mut backoff = Duration::from_millis(10);
    let mut exhausted_since: Option<std::time::Instant> = None;
    loop {
        // A slot first: at the cap, new connections wait in the backlog.
        let permit = tokio::select! {
            p = conns.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Some(t) = exhausted_since.take() {
                    tracing::info!(
                        after_ms = t.elapsed().as_millis() as u64,
                        "accepting again: descriptors available"
                    );
                }
                backoff = Duration::from_millis(10);
                let st = st.clone();
                tokio::spawn(async move {
                    serve_connection(stream, peer, st).await;
                    drop(permit);
                });
            }
            Err(e) if is_resource_exhaustion(&e) => {
                // The pending connection stays in the backlog; retry when descriptors are
                // back. Log once per episode, not once per attempt.
                if exhausted_since.is_none() {
                    exhausted_since = Some(std::time::Instant::now());
                    tracing::error!(error = %e, "accept: out of descriptors; backing off");
                }
                st.mgr.metrics.accept_exhausted.fetch_add(1, Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {},
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                // ECONNABORTED and the like concern one connection only.
                tracing::debug!(error = %e, "accept failed");
            }
        }
    }
}

/// The server's TLS settings from `[api] tls-cert-file` / `tls-key-file`; `None` when both are
/// empty. A missing, unreadable or mismatched file is an error (the manager does not start).
pub fn tls_acceptor(
    api: &crate::config::ApiConfig,
) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = (&api.tls_cert_file, &api.tls_key_file);
    match (cert.is_empty(), key.is_empty()) {
        (true, true) => return Ok(None),
        (false, false) => {}
        _ => anyhow::bail!("[api] tls-cert-file and tls-key-file must be set together"),
    }
    let read = |key: &str, path: &str| {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("[api] {key} {path}: {e}"))
    };
    let pem = read("tls-cert-file", cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("[api] tls-cert-file {cert}: {e}"))?;
    if chain.is_empty() {
        anyhow::bail!("[api] tls-cert-file {cert}: no PEM CERTIFICATE in it");
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read("tls-key-file", key)?)
        .map_err(|e| anyhow::anyhow!("[api] tls-key-file {key}: no usable private key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS: {e}"))?
        .with_no_client_auth()
        // Also checks that the key belongs to the certificate.
        .with_single_cert(chain, key_der)
        .map_err(|e| anyhow::anyhow!("[api] tls-cert-file/tls-key-file: {e}"))?;
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(sc))))
}

async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, st: Arc<State>) {
    let io = TimedIo::new(stream, st.limits.idle_timeout, st.limits.write_timeout);
    let Some(acceptor) = st.tls.clone() else {
        return serve_http(io, peer, st).await;
    };
    // The handshake counts against the head's deadline: hyper's header timer only starts once
    // TLS is up, so without this a client that never finishes the handshake would hold a
    // connection slot until the idle timeout.
    match tokio::time::timeout(st.limits.header_timeout, acceptor.accept(io)).await {
        Ok(Ok(tls)) => serve_http(tls, peer, st).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake not finished within the header timeout"),
    }
}

async fn serve_http<I>(io: I, peer: SocketAddr, st: Arc<State>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(st.limits.header_timeout)
        .max_buf_size(st.limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let svc_st = st.clone();
    let svc = hyper::service::service_fn(move |req| {
        let st = svc_st.clone();
        async move { Ok::<_, Infallible>(handle(req, &st).await) }
    });
    if let Err(e) = b.serve_connection(TokioIo::new(io), svc).await {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

fn authorized(req: &Request<Incoming>, token: Option<&str>) -> bool {
    let Some(t) = token else { return true };
    req.headers().get_all(AUTHORIZATION).iter().any(|h| {
        h.to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|v| constant_time_eq(v.trim().as_bytes(), t.as_bytes()))
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle(req: Request<Incoming>, st: &Arc<State>) -> Resp {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/livez") => return text(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz" | "/healthz") => {
            let r = st.health.report();
            let status = if r.ready { 200 } else { 503 };
            return json(status, &r);
        }
        (&Method::GET, "/metrics") => {
            return text(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                st.mgr.metrics.render(),
            );
        }
        _ => {}
    }
    if !path.starts_with(ATTACHMENTS_PATH) {
        return error(ApiError::new(
            ErrorKind::NotFound,
            None,
            format!("no route {path}"),
        ));
    }
    if !authorized(&req, st.token.as_deref()) {
        return error(ApiError::new(
            ErrorKind::Unauthorized,
            None,
            "missing or wrong bearer token",
        ));
    }
    let rest = path[ATTACHMENTS_PATH.len()..].trim_start_matches('/');
    let parts: Vec<String> = if rest.is_empty() {
        vec![]
    } else {
        rest.split('/').map(str::to_owned).collect()
    };
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match (&method, parts.as_slice()) {
        (&Method::POST, []) => {
            let body = match read_body(req, &st.limits).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let ar: AttachRequest = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    return error(ApiError::new(
                        ErrorKind::BadRequest,
                        None,
                        format!("not an AttachRequest: {e}"),
                    ));
                }
            };
            match on_worker(st, move |mgr| mgr.attach(&ar)).await {
                Ok(Ok((a, true))) => json(201, &a),
                Ok(Ok((a, false))) => json(200, &a),
                Ok(Err(e)) | Err(e) => error(e),
            }
        }
        (&Method::GET, []) => json(200, &serde_json::json!({ "attachments": st.mgr.list() })),
        (&Method::GET, [cid, ifname]) => match st.mgr.get(cid, ifname) {
            Some(a) => json(200, &a),
            None => error(ApiError::new(
                ErrorKind::NotFound,
                None,
                format!("{cid}/{ifname} is not registered"),
            )),
        },
        (&Method::DELETE, [cid, ifname]) if !cid.is_empty() && !ifname.is_empty() => {
            let (cid, ifname) = (cid.to_string(), ifname.to_string());
            match on_worker(st, move |mgr| mgr.detach(&cid, &ifname)).await {
                Ok(Ok(found)) => json(200, &DetachResponse { found }),
                Ok(Err(e)) | Err(e) => error(e),
            }
        }
        _ => error(ApiError::new(
            ErrorKind::NotFound,
            None,
            format!("no route {method} {path}"),
        )),
    }
}

/// The body, within the size and time limits; otherwise the answer to send.
async fn read_body(req: Request<Incoming>, limits: &Limits) -> Result<Bytes, Resp> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(error_with(
            413,
            ErrorKind::BadRequest,
            format!("body larger than {} bytes", limits.max_body_bytes),
        ));
    }
    let body = Limited::new(req.into_body(), limits.max_body_bytes);
    match tokio::time::timeout(limits.body_timeout, body.collect()).await {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(error_with(
            413,
            ErrorKind::BadRequest,
            format!("body larger than {} bytes", limits.max_body_bytes),
        )),
        Ok(Err(e)) => Err(error_with(
            400,
            ErrorKind::BadRequest,
            format!("reading the body: {e}"),
        )),
        Err(_) => Err(error_with(
            408,
            ErrorKind::BadRequest,
            format!(
                "body not complete within {} ms",
                limits.body_timeout.as_millis()
            ),
        )),
    }
}

/// Runs VNC-bound work on the blocking pool, at most `workers` at once.
async fn on_worker<T: Send + 'static>(
    st: &Arc<State>,
    f: impl FnOnce(&Manager) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let unavailable = |m: &str| ApiError::new(ErrorKind::Unavailable, None, m.to_owned());
    let permit = tokio::time::timeout(st.limits.queue_timeout, st.workers.clone().acquire_owned())
        .await
        .map_err(|_| unavailable("all workers busy (VNC slow or unreachable); try again"))?
        .map_err(|_| unavailable("shutting down"))?;
    let mgr = st.mgr.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f(&mgr)
    })
    .await
    .map_err(|e| ApiError::new(ErrorKind::Internal, None, format!("worker failed: {e}")))
}

/// A socket whose reads and writes each fail with `TimedOut` after making no progress for
/// their timeout. Reads cover the idle keep-alive wait (hyper's header timeout covers a head
/// that trickles in); writes cover a client that stops reading its answer.
struct TimedIo {
    inner: tokio::net::TcpStream,
    read_timeout: Duration,
    write_timeout: Duration,
    read_deadline: Option<Pin<Box<Sleep>>>,
    write_deadline: Option<Pin<Box<Sleep>>>,
}

impl TimedIo {
    fn new(inner: tokio::net::TcpStream, read_timeout: Duration, write_timeout: Duration) -> Self {
        TimedIo {
            inner,
            read_timeout,
            write_timeout,
            read_deadline: None,
            write_deadline: None,
        }
    }
}

/// Pending: arms the deadline (once) and reports `TimedOut` when it passed.
fn expired(slot: &mut Option<Pin<Box<Sleep>>>, d: Duration, cx: &mut Context<'_>) -> bool {
    let s = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
    s.as_mut().poll(cx).is_ready()
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "no progress within the timeout")
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.read_deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending if expired(&mut this.read_deadline, this.read_timeout, cx) => {
                Poll::Ready(Err(timed_out()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl TimedIo {
    fn on_write<T>(&mut self, p: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match p {
            Poll::Ready(r) => {
                self.write_deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending if expired(&mut self.write_deadline, self.write_timeout, cx) => {
                Poll::Ready(Err(timed_out()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.on_write(p, cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.on_write(p, cx)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.inner).poll_flush(cx);
        this.on_write(p, cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.on_write(p, cx)
    }
}

/// A listener whose accepted connections have `TCP_NODELAY` (Linux copies it from the
/// listening socket): an answer written in two segments must not wait for the client's
/// delayed ACK (40 ms) on every keep-alive exchange.
pub fn nodelay_listener(listen: &str) -> anyhow::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("listen on {listen}: {e}"))?;
    if let Err(e) = socket2::SockRef::from(&l).set_tcp_nodelay(true) {
        tracing::warn!(error = %e, "TCP_NODELAY on the listener");
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses() {
        assert!(is_loopback("127.0.0.1:6991"));
        assert!(is_loopback("127.3.0.1:0"));
        assert!(is_loopback("[::1]:6991"));
        assert!(is_loopback("localhost:6991"));
        assert!(!is_loopback("0.0.0.0:6991"));
        assert!(!is_loopback("[::]:6991"));
        assert!(!is_loopback("10.0.0.1:6991"));
        assert!(!is_loopback("example.org:6991"));
    }
}
