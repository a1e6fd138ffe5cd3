//! Real packets between container namespaces: a TCP echo listener whose socket is created inside
//! the destination namespace, and a connect from a thread that joined the source namespace. A
//! connect that times out (no SYN-ACK, no RST) means the packet was dropped on the way — what
//! isolation between two virtual networks looks like.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

/// Runs `f` on a fresh thread that joined the namespace at `netns` (the caller's thread is never
/// moved).
pub fn in_netns<T: Send>(netns: &Path, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    let file = File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            Ok(f())
        })
        .join()
        .expect("netns thread")
    })
}

/// A TCP echo service inside a namespace, stopped on drop.
pub struct Echo {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Echo {
    pub fn start(netns: &Path, ip: IpAddr) -> std::io::Result<Echo> {
        Echo::start_on(netns, SocketAddr::new(ip, 0))
    }

    /// On a given port (0: any free one).
    pub fn start_on(netns: &Path, addr: SocketAddr) -> std::io::Result<Echo> {
        let listener = in_netns(netns, || TcpListener::bind(addr))??;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    // One thread per connection (at most 64 at once), echoing until the peer
                    // closes or is idle for 10 s, so a connection can be held open.
                    Ok((mut s, _)) if open.load(Ordering::SeqCst) < 64 => {
                        open.fetch_add(1, Ordering::SeqCst);
                        let (open, st) = (open.clone(), st.clone());
                        std::thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                            let mut buf = [0u8; 64];
                            while !st.load(Ordering::Relaxed) {
                                match s.read(&mut buf) {
                                    Ok(n) if n > 0 && s.write_all(&buf[..n]).is_ok() => {}
                                    _ => break,
                                }
                            }
                            open.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Echo { addr, stop })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A TCP connection from inside a namespace, held open.
pub struct Conn(TcpStream);

impl Conn {
    /// Connects from inside `from` (the socket stays in that namespace).
    pub fn open(from: &Path, to: SocketAddr, timeout: Duration) -> std::io::Result<Conn> {
        let s = in_netns(from, || TcpStream::connect_timeout(&to, timeout))??;
        s.set_read_timeout(Some(timeout))?;
        Ok(Conn(s))
    }

    /// True when `msg` comes back within the connection's timeout.
    pub fn echoes(&mut self, msg: &[u8]) -> bool {
        let mut buf = vec![0u8; msg.len()];
        self.0.write_all(msg).is_ok() && self.0.read_exact(&mut buf).is_ok() && buf == msg
    }
}

/// True when a TCP exchange from inside `from` to `to` completes within `timeout`.
pub fn reachable(from: &Path, to: SocketAddr, timeout: Duration) -> bool {
    in_netns(from, || {
        let Ok(mut s) = TcpStream::connect_timeout(&to, timeout) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(timeout));
        if s.write_all(b"hello").is_err() {
            return false;
        }
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).is_ok() && &buf == b"hello"
    })
    .unwrap_or(false)
}

/// A TCP service inside a namespace that answers every connection with an address and a
/// newline, and closes: its own (`ip:port`, [`Ident::start_on`]: which backend a load balancer
/// chose) or the caller's (`ip`, [`Ident::caller_on`]: whether a connection was masqueraded).
/// Stopped on drop.
pub struct Ident {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Ident {
    pub fn start_on(netns: &Path, addr: SocketAddr) -> std::io::Result<Ident> {
        Self::serve(netns, addr, false)
    }

    pub fn caller_on(netns: &Path, addr: SocketAddr) -> std::io::Result<Ident> {
        Self::serve(netns, addr, true)
    }

    fn serve(netns: &Path, addr: SocketAddr, caller: bool) -> std::io::Result<Ident> {
        let listener = in_netns(netns, || TcpListener::bind(addr))??;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                        let who = if caller {
                            peer.ip().to_string()
                        } else {
                            addr.to_string()
                        };
                        let _ = s.write_all(format!("{who}\n").as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Ident { addr, stop })
    }
}

impl Drop for Ident {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Connects from inside `from` to `to` and returns the first line the peer sends (at most 128
/// bytes), `None` when no answer comes within `timeout`.
pub fn ask(from: &Path, to: SocketAddr, timeout: Duration) -> Option<String> {
    in_netns(from, || {
        let mut s = TcpStream::connect_timeout(&to, timeout).ok()?;
        s.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = Vec::new();
        let mut b = [0u8; 128];
        while buf.len() < 128 && !buf.contains(&b'\n') {
            match s.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&b[..n]),
            }
        }
        let line = String::from_utf8_lossy(&buf).lines().next()?.to_owned();
        (!line.is_empty()).then_some(line)
    })
    .ok()
    .flatten()
}
