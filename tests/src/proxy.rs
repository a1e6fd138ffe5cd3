//! A TCP relay on 127.0.0.1 in front of a stand-in, so a test can take "one server of a list"
//! down (refusing connections and cutting the open ones) or make it hang (connections stay
//! open, nothing moves), while the stand-in behind it keeps serving the other entries of the
//! list. Threads are bounded by the connections made and end when the relay is dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const UP: u8 = 0;
const HUNG: u8 = 1;
const DOWN: u8 = 2;

struct Shared {
    mode: AtomicU8,
    accepted: AtomicUsize,
    open: Mutex<Vec<TcpStream>>,
}

pub struct TcpProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl TcpProxy {
    /// Relays every connection to `target`.
    pub fn start(target: SocketAddr) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(UP),
            accepted: AtomicUsize::new(0),
            open: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            // The listener is dropped when the relay goes down: connections are then refused.
            while s.mode.load(Ordering::SeqCst) != DOWN {
                match listener.accept() {
                    Ok((client, _)) => {
                        s.accepted.fetch_add(1, Ordering::SeqCst);
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(target) else {
                            continue;
                        };
                        relay(&s, client, server);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
                // Never outlive the test by much: a relay nobody holds goes down.
                if Arc::strong_count(&s) == 1 {
                    s.mode.store(DOWN, Ordering::SeqCst);
                }
            }
            for c in s.open.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        });
        Ok(TcpProxy { addr, shared })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Refuses new connections and cuts the open ones.
    pub fn down(&self) {
        self.shared.mode.store(DOWN, Ordering::SeqCst);
        for c in self.shared.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Keeps every connection open but moves no more bytes (a hung server or a black-holed
    /// route); new connections are accepted and hang too.
    pub fn hang(&self) {
        self.shared.mode.store(HUNG, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.down();
    }
}

fn relay(s: &Arc<Shared>, client: TcpStream, server: TcpStream) {
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    {
        let mut open = s.open.lock().unwrap();
        for x in [&client, &server] {
            if let Ok(x) = x.try_clone() {
                open.push(x);
            }
        }
    }
    for (from, to) in [(client, s2), (server, c2)] {
        let s = s.clone();
        std::thread::spawn(move || pump(&s, from, to));
    }
}

fn pump(s: &Shared, mut from: TcpStream, mut to: TcpStream) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.mode.load(Ordering::SeqCst) {
            DOWN => break,
            HUNG => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            _ => {}
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
