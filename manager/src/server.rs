//! The attachment API (`docs/attachment-api.md`) on tiny_http with a fixed worker pool, plus
//! `/healthz` and `/metrics`. Workers block on VNC, so the pool size bounds VNC concurrency.

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use contrail_mesos_api::{ATTACHMENTS_PATH, ApiError, AttachRequest, DetachResponse, ErrorKind};
use serde::Serialize;

use crate::service::Manager;

/// Largest request body accepted (an AttachRequest is a few KiB).
const MAX_BODY: u64 = 1024 * 1024;

pub struct ApiServer {
    pub addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

type Resp = tiny_http::Response<std::io::Cursor<Vec<u8>>>;

fn json<T: Serialize>(status: u16, v: &T) -> Resp {
    tiny_http::Response::from_string(serde_json::to_string(v).unwrap_or_default())
        .with_status_code(status)
        .with_header(
            tiny_http::Header::from_bytes("Content-Type", "application/json")
                .expect("static header"),
        )
}

fn error(e: ApiError) -> Resp {
    json(e.status(), &e)
}

impl ApiServer {
    pub fn start(
        listen: &str,
        workers: usize,
        token: Option<String>,
        mgr: Arc<Manager>,
    ) -> anyhow::Result<ApiServer> {
        let server = Arc::new(
            tiny_http::Server::from_listener(nodelay_listener(listen)?, None)
                .map_err(|e| anyhow::anyhow!("listen on {listen}: {e}"))?,
        );
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow::anyhow!("{listen} is not an IP listener"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let token = Arc::new(token.filter(|t| !t.is_empty()));
        let mut hs = Vec::new();
        for i in 0..workers.max(1) {
            let (server, stop, mgr, token) =
                (server.clone(), stop.clone(), mgr.clone(), token.clone());
            hs.push(
                std::thread::Builder::new()
                    .name(format!("api-{i}"))
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            match server.recv_timeout(Duration::from_millis(250)) {
                                Ok(Some(req)) => handle(req, &mgr, token.as_deref()),
                                Ok(None) => {}
                                Err(e) => {
                                    tracing::error!(error = %e, "accept failed");
                                    break;
                                }
                            }
                        }
                    })
                    .expect("spawn api worker"),
            );
        }
        tracing::info!(%addr, workers, "attachment API listening");
        Ok(ApiServer {
            addr,
            server,
            stop,
            workers: hs,
        })
    }

    /// Stops accepting; requests in flight finish.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A listener whose accepted connections have `TCP_NODELAY` (Linux copies it from the
/// listening socket). tiny_http writes an answer through a 1 KiB buffer, so an answer over
/// 1 KiB leaves as two segments; with Nagle the second waits for the client's delayed ACK
/// (40 ms) on every keep-alive exchange.
pub fn nodelay_listener(listen: &str) -> anyhow::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("listen on {listen}: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd as _;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket fd and a c_int option value of the stated size.
        let rc = unsafe {
            libc::setsockopt(
                l.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "TCP_NODELAY on the listener");
        }
    }
    Ok(l)
}

fn authorized(req: &tiny_http::Request, token: Option<&str>) -> bool {
    let Some(t) = token else { return true };
    req.headers().iter().any(|h| {
        h.field.equiv("Authorization")
            && h.value
                .as_str()
                .strip_prefix("Bearer ")
                .is_some_and(|v| constant_time_eq(v.trim().as_bytes(), t.as_bytes()))
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn handle(mut req: tiny_http::Request, mgr: &Manager, token: Option<&str>) {
    let method = req.method().as_str().to_owned();
    let url = req.url().to_owned();
    let path = url.split('?').next().unwrap_or("").to_owned();
    let resp = match (method.as_str(), path.as_str()) {
        ("GET", "/healthz") => tiny_http::Response::from_string("ok\n").with_status_code(200),
        ("GET", "/metrics") => tiny_http::Response::from_string(mgr.metrics.render()).with_header(
            tiny_http::Header::from_bytes("Content-Type", "text/plain; version=0.0.4")
                .expect("static header"),
        ),
        _ if !path.starts_with(ATTACHMENTS_PATH) => error(ApiError::new(
            ErrorKind::NotFound,
            None,
            format!("no route {path}"),
        )),
        _ if !authorized(&req, token) => error(ApiError::new(
            ErrorKind::Unauthorized,
            None,
            "missing or wrong bearer token",
        )),
        _ => route(&mut req, &method, &path, mgr),
    };
    if let Err(e) = req.respond(resp) {
        tracing::debug!(error = %e, "client went away before the answer");
    }
}

fn route(req: &mut tiny_http::Request, method: &str, path: &str, mgr: &Manager) -> Resp {
    let rest = path[ATTACHMENTS_PATH.len()..].trim_start_matches('/');
    let parts: Vec<&str> = if rest.is_empty() {
        vec![]
    } else {
        rest.split('/').collect()
    };
    match (method, parts.as_slice()) {
        ("POST", []) => {
            let mut body = Vec::new();
            if let Err(e) = req.as_reader().take(MAX_BODY).read_to_end(&mut body) {
                return error(ApiError::new(
                    ErrorKind::BadRequest,
                    None,
                    format!("reading the body: {e}"),
                ));
            }
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
            match mgr.attach(&ar) {
                Ok((a, true)) => json(201, &a),
                Ok((a, false)) => json(200, &a),
                Err(e) => error(e),
            }
        }
        ("GET", []) => json(200, &serde_json::json!({ "attachments": mgr.list() })),
        ("GET", [cid, ifname]) => match mgr.get(cid, ifname) {
            Some(a) => json(200, &a),
            None => error(ApiError::new(
                ErrorKind::NotFound,
                None,
                format!("{cid}/{ifname} is not registered"),
            )),
        },
        ("DELETE", [cid, ifname]) if !cid.is_empty() && !ifname.is_empty() => {
            match mgr.detach(cid, ifname) {
                Ok(found) => json(200, &DetachResponse { found }),
                Err(e) => error(e),
            }
        }
        _ => error(ApiError::new(
            ErrorKind::NotFound,
            None,
            format!("no route {method} {path}"),
        )),
    }
}
