//! Identity-service stand-ins, written from the public API docs: Keystone v3 password logins
//! (`keystone`) and the DC/OS IAM service-account login (`dcos_iam`). Each issues tokens that
//! expire and can be revoked, and hands out a `Validator` that the VNC and Marathon stand-ins
//! use to accept only the tokens it currently honours.

pub mod dcos_iam;
pub mod keystone;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// "Is this credential (a token, or an `Authorization` header value) good now?"
pub type Validator = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A tiny_http server on 127.0.0.1 with a few threads running `handle`.
struct Http {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Http {
    fn start(handle: impl Fn(tiny_http::Request) + Send + Sync + 'static) -> anyhow::Result<Http> {
        let server = Arc::new(
            tiny_http::Server::http("127.0.0.1:0").map_err(|e| anyhow::anyhow!("bind: {e}"))?,
        );
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow::anyhow!("not an IP listener"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let threads = (0..4)
            .map(|_| {
                let (server, stop, handle) = (server.clone(), stop.clone(), handle.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match server.recv_timeout(Duration::from_millis(200)) {
                            Ok(Some(req)) => handle(req),
                            Ok(None) => {}
                            Err(_) => break,
                        }
                    }
                })
            })
            .collect();
        Ok(Http {
            addr,
            server,
            stop,
            threads,
        })
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A JSON answer.
fn json(status: u16, v: &serde_json::Value) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    tiny_http::Response::from_string(v.to_string())
        .with_status_code(status)
        .with_header(
            tiny_http::Header::from_bytes("Content-Type", "application/json").expect("header"),
        )
}

/// A request body, bounded (a login is small).
fn body(req: &mut tiny_http::Request) -> Option<serde_json::Value> {
    use std::io::Read;
    let mut b = Vec::new();
    req.as_reader().take(64 * 1024).read_to_end(&mut b).ok()?;
    serde_json::from_slice(&b).ok()
}

/// An opaque random-looking token.
fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}
