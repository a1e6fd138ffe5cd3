//! TLS in tests: a throw-away PKI made at run time (a CA and a server certificate for
//! `127.0.0.1`/`localhost`, written as PEM files), and a TLS-terminating relay on 127.0.0.1 in
//! front of a plain stand-in, so every stand-in can be reached over `https://` unchanged.
//! Like `proxy.rs`: threads are bounded (one per connection, at most `MAX_CONNECTIONS` at
//! once) and end when the relay is dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Connections relayed at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 64;

/// A CA and one server certificate it signed, as PEM files in a temporary directory (removed
/// on drop).
pub struct Pki {
    dir: tempfile::TempDir,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
}

impl Pki {
    /// A new CA (`<name> test CA`) and a server certificate for 127.0.0.1 and localhost.
    pub fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");

        let key = KeyPair::generate().expect("server key");
        let mut sp = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params");
        sp.distinguished_name
            .push(DnType::CommonName, format!("{name} test server"));
        let cert = sp
            .signed_by(&key, &ca_cert, &ca_key)
            .expect("server certificate");

        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        Pki {
            dir,
            server_chain: vec![cert.der().clone()],
            server_key: key.serialize_der(),
        }
    }

    /// The CA certificate (PEM): what a client's `ca-file` names.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    /// The server certificate (PEM).
    pub fn cert_file(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }
    /// The server's private key (PEM, PKCS#8).
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// rustls server settings with the server certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                self.server_chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone())),
            )
            .expect("server certificate and key");
        Arc::new(cfg)
    }
}

struct Shared {
    stop: AtomicBool,
    accepted: AtomicUsize,
    handshakes: AtomicUsize,
    active: AtomicUsize,
}

/// Terminates TLS on 127.0.0.1 and relays the plain bytes to `target`.
pub struct TlsProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl TlsProxy {
    pub fn start(target: SocketAddr, cfg: Arc<rustls::ServerConfig>) -> std::io::Result<TlsProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            handshakes: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                if s.active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                match listener.accept() {
                    Ok((client, _)) => {
                        s.accepted.fetch_add(1, Ordering::SeqCst);
                        s.active.fetch_add(1, Ordering::SeqCst);
                        let (s, cfg) = (s.clone(), cfg.clone());
                        std::thread::spawn(move || {
                            let _ = serve(&s, client, target, cfg);
                            s.active.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
                // A relay nobody holds goes down.
                if Arc::strong_count(&s) == 1 {
                    s.stop.store(true, Ordering::SeqCst);
                }
            }
        });
        Ok(TlsProxy { addr, shared })
    }

    /// The same, listening on the 127.0.0.1 of the network namespace `netns` (and relaying
    /// to `target` there): the relay's threads are started from a thread inside it, so they
    /// stay in it.
    pub fn start_in_netns(
        netns: &Path,
        target: SocketAddr,
        cfg: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<TlsProxy> {
        let f = std::fs::File::open(netns)?;
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)?;
                TlsProxy::start(target, cfg)
            })
            .join()
            .map_err(|_| std::io::Error::other("relay thread panicked"))?
        })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed so far (a client that rejected our certificate never counts).
    pub fn handshakes(&self) -> usize {
        self.shared.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn is_wait(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// One connection: the handshake, then both directions on this thread (a rustls stream is
/// one object), each read bounded by a short timeout so neither side starves the other.
fn serve(
    s: &Shared,
    client: TcpStream,
    target: SocketAddr,
    cfg: Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_millis(20)))?;
    let conn = rustls::ServerConnection::new(cfg).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, client);
    // The handshake, bounded: a client that stops half-way is dropped after 10 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tls.conn.is_handshaking() {
        if s.stop.load(Ordering::SeqCst) || std::time::Instant::now() > deadline {
            return Ok(());
        }
        match tls.conn.complete_io(&mut tls.sock) {
            Ok(_) => {}
            Err(e) if is_wait(&e) => {}
            Err(e) => return Err(e),
        }
    }
    s.handshakes.fetch_add(1, Ordering::SeqCst);
    let mut server = TcpStream::connect(target)?;
    server.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut buf = vec![0u8; 16 * 1024];
    let result = loop {
        if s.stop.load(Ordering::SeqCst) {
            break Ok(());
        }
        match tls.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => server.write_all(&buf[..n])?,
            Err(e) if is_wait(&e) => {}
            Err(e) => break Err(e),
        }
        match server.read(&mut buf) {
            Ok(0) => {
                tls.conn.send_close_notify();
                let _ = tls.flush();
                break Ok(());
            }
            Ok(n) => {
                tls.write_all(&buf[..n])?;
                tls.flush()?;
            }
            Err(e) if is_wait(&e) => {}
            Err(e) => break Err(e),
        }
    };
    let _ = server.shutdown(Shutdown::Both);
    let _ = tls.sock.shutdown(Shutdown::Both);
    result
}
