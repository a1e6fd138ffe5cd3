//! The VNC client's TCP transport: ureq's plain TCP transport, except that every read first
//! re-arms `TCP_QUICKACK`, so keep-alive connections do not stall against the real API server.
//!
//! The server (gevent under tf-controller's `vnc_cfg_api_server`) writes an answer's head and
//! body as two segments without `TCP_NODELAY`. On a reused connection Nagle holds the body until
//! the client ACKs the head, and Linux delays that ACK (up to 40 ms: the connection has gone
//! "interactive", so the kernel waits to piggyback the ACK on our next request). `TCP_QUICKACK`
//! switches delayed ACKs off only until the kernel decides otherwise (tcp(7): "not permanent"),
//! so it is set again before each read: when the head has arrived and ureq reads again for the
//! body, the setsockopt sends the pending ACK at once and leaves the socket acking at once.
//! Without it the only remedy was a fresh connection per call (a connect, an accept and a
//! TIME_WAIT each; docs/BENCHMARKS.md, "VNC wire").
//!
//! ureq's own `TcpTransport` does not expose its socket, hence this small copy of it
//! (connect with the connect timeout, `TCP_NODELAY`, per-read/write timeouts, the
//! non-blocking probe that tells the pool whether an idle connection is still open).

use std::io::{self, Read as _, Write as _};
use std::net::TcpStream;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ureq::Error;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle,
    Transport,
};

/// Opens TCP connections whose reads re-arm `TCP_QUICKACK`. Chain TLS after it.
#[derive(Debug, Default)]
pub struct QuickAckConnector;

impl<In: Transport> Connector<In> for QuickAckConnector {
    type Out = Either<In, QuickAckTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        if let Some(c) = chained {
            return Ok(Some(Either::A(c)));
        }
        let timeout = details.timeout.not_zero().map(|d| *d);
        let mut last = None;
        let mut stream = None;
        for addr in details.addrs.iter() {
            let r = match timeout {
                Some(t) => TcpStream::connect_timeout(addr, t),
                None => TcpStream::connect(addr),
            };
            match r {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    last = Some(Error::Timeout(details.timeout.reason))
                }
                Err(e) => last = Some(Error::Io(e)),
            }
        }
        let Some(stream) = stream else {
            return Err(last.unwrap_or(Error::ConnectionFailed));
        };
        if details.config.no_delay() {
            stream.set_nodelay(true)?;
        }
        let config = details.config;
        let t = QuickAckTransport {
            stream: Arc::new(stream),
            buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
            read_timeout: None,
            write_timeout: None,
            reused: false,
            answered: false,
        };
        // `Agent::shutdown` shuts the socket from another thread (ureq's handle for a
        // `TcpStream`).
        let handle: Weak<dyn ShutdownHandle> =
            Arc::downgrade(&t.stream) as Weak<dyn ShutdownHandle>;
        (details.register_shutdown)(handle)?;
        Ok(Some(Either::B(t)))
    }
}

pub struct QuickAckTransport {
    stream: Arc<TcpStream>,
    buffers: LazyBuffers,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// An earlier exchange was answered on this connection (it came from the pool).
    reused: bool,
    /// Bytes of the current exchange's answer have arrived.
    answered: bool,
}

/// A connection from the pool turned out closed by the server before any byte of the answer
/// to this request came: the server closed it while idle, as servers and proxies in front of
/// them do after their keep-alive time, and the request most likely never reached it. The
/// caller sends it again on another connection at once (the same request on a fresh
/// connection, so a create the server did receive answers 409 with the existing uuid, which
/// the writer's create-or-reuse paths take).
#[derive(Debug, thiserror::Error)]
#[error("keep-alive connection closed by the server before it answered")]
pub struct IdleClosed;

/// `e` is an `IdleClosed`.
pub fn is_idle_closed(e: &Error) -> bool {
    matches!(e, Error::Io(io) if io.get_ref().is_some_and(|i| i.is::<IdleClosed>()))
}

fn idle_closed() -> Error {
    Error::Io(io::Error::new(io::ErrorKind::ConnectionAborted, IdleClosed))
}

/// How a connection the server has closed shows when we write to it or read from it.
fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

impl std::fmt::Debug for QuickAckTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickAckTransport")
            .field("peer", &self.stream.peer_addr().ok())
            .finish()
    }
}

/// ACK what arrives at once, from now until the kernel turns delayed ACKs back on.
fn quickack(s: &TcpStream) {
    // A failure only means the ACK may be delayed, as without the option.
    let _ = socket2::SockRef::from(s).set_tcp_quickack(true);
}

fn io_error(e: io::Error, reason: ureq::Timeout) -> Error {
    match e.kind() {
        // A socket timeout surfaces as WouldBlock on Linux.
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout(reason),
        _ => Error::Io(e),
    }
}

impl Transport for QuickAckTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let timeout = timeout.for_write();
        let t = timeout.not_zero().map(|d| *d);
        if t != self.write_timeout {
            self.stream.set_write_timeout(t)?;
            self.write_timeout = t;
        }
        if self.answered {
            // The first write of the next request on this connection.
            self.reused = true;
            self.answered = false;
        }
        let output = &self.buffers.output()[..amount];
        match (&*self.stream).write_all(output) {
            Err(e) if self.reused && is_closed(&e) => Err(idle_closed()),
            r => r.map_err(|e| io_error(e, timeout.reason)),
        }
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let timeout = timeout.for_read();
        let t = timeout.not_zero().map(|d| *d);
        if t != self.read_timeout {
            self.stream.set_read_timeout(t)?;
            self.read_timeout = t;
        }
        quickack(&self.stream);
        let started = std::time::Instant::now();
        let input = self.buffers.input_append_buf();
        let n = loop {
            match (&*self.stream).read(input) {
                // Linux does not restart a socket read with SO_RCVTIMEO after a signal.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    let Some(t) = t else { return Err(Error::Io(e)) };
                    let left = t.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        return Err(Error::Timeout(timeout.reason));
                    }
                    self.stream.set_read_timeout(Some(left))?;
                    self.read_timeout = Some(left);
                }
                Ok(0) if self.reused && !self.answered => return Err(idle_closed()),
                Err(e) if self.reused && !self.answered && is_closed(&e) => {
                    return Err(idle_closed());
                }
                r => break r.map_err(|e| io_error(e, timeout.reason))?,
            }
        };
        self.answered |= n > 0;
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    /// Whether an idle connection may be reused: nothing to read (no early answer, no FIN
    /// from a server that closed it).
    fn is_open(&mut self) -> bool {
        let s = &*self.stream;
        if s.set_nonblocking(true).is_err() {
            return false;
        }
        let open =
            matches!((&*s).read(&mut [0u8]), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        open && s.set_nonblocking(false).is_ok()
    }
}
