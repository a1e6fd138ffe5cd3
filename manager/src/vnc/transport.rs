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
//! non-blocking probe that tells the pool whether an idle connection is still open), with
//! fewer system calls per exchange, which is most of the manager's CPU per attachment
//! (docs/BENCHMARKS.md, "Sixth round"):
//! * A request leaves in one segment: ureq hands over the head and then the body, and both
//!   are kept until ureq waits for the answer (or [`FLUSH_AT`] bytes are pending). Two
//!   segments cost a `send` each here and a wake-up and a `recv` each at the server.
//! * The write is tried without blocking first; only a request the socket buffer cannot take
//!   at once sets the write timeout (`SO_SNDTIMEO`) and blocks for the rest.
//! * The read timeout is the time left of the call, so it shrinks with every read; it is set
//!   again only when it is more than [`TIMEOUT_SLACK`] off, so a read ends within that slack of
//!   the call's deadline.
//! * The pool's liveness probe is one `recv(MSG_PEEK | MSG_DONTWAIT)` instead of switching the
//!   socket to non-blocking and back around a read.

use std::io::{self, Read as _, Write as _};
use std::mem::MaybeUninit;
use std::net::TcpStream;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ureq::Error;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle,
    Transport,
};

/// Pending request bytes beyond which they are sent before ureq waits for the answer (a large
/// body then streams instead of piling up here).
pub const FLUSH_AT: usize = 64 * 1024;

/// How far the read timeout set on the socket may be from the time left of the call before it
/// is set again (each `setsockopt` is a system call; the call's deadline is seconds away).
pub const TIMEOUT_SLACK: Duration = Duration::from_millis(5);

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
            pending: Vec::new(),
            pending_timeout: None,
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
    /// Request bytes ureq has handed over that are not sent yet (see the module doc).
    pending: Vec<u8>,
    /// The write timeout of the pending bytes (ureq's, for the last of them).
    pending_timeout: Option<NextTimeout>,
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
        if self.answered {
            // The first write of the next request on this connection.
            self.reused = true;
            self.answered = false;
        }
        self.pending
            .extend_from_slice(&self.buffers.output()[..amount]);
        self.pending_timeout = Some(timeout);
        if self.pending.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.flush()?;
        let timeout = timeout.for_read();
        let t = timeout.not_zero().map(|d| *d);
        if !close_enough(self.read_timeout, t) {
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
    /// from a server that closed it), peeked without blocking and without taking anything.
    fn is_open(&mut self) -> bool {
        if !self.pending.is_empty() {
            // A request that was never sent: the connection is mid-exchange.
            return false;
        }
        let mut byte = [MaybeUninit::<u8>::uninit()];
        let r = socket2::SockRef::from(&*self.stream)
            .recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT);
        matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl QuickAckTransport {
    /// Sends the pending request bytes: without blocking when the socket buffer takes them
    /// all (a VNC request always fits), else the rest blocking under ureq's write timeout.
    fn flush(&mut self) -> Result<(), Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let timeout = self
            .pending_timeout
            .take()
            .expect("pending bytes come with their timeout")
            .for_write();
        let sock = socket2::SockRef::from(&*self.stream);
        let mut sent = 0;
        let res = loop {
            match sock.send_with_flags(
                &self.pending[sent..],
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            ) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    sent += n;
                    if sent == self.pending.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let t = timeout.not_zero().map(|d| *d);
                    if t != self.write_timeout {
                        if let Err(e) = self.stream.set_write_timeout(t) {
                            break Err(e);
                        }
                        self.write_timeout = t;
                    }
                    break (&*self.stream).write_all(&self.pending[sent..]);
                }
                Err(e) => break Err(e),
            }
        };
        self.pending.clear();
        match res {
            Err(e) if self.reused && is_closed(&e) => Err(idle_closed()),
            r => r.map_err(|e| io_error(e, timeout.reason)),
        }
    }
}

/// Whether a socket timeout of `set` serves for a read that may take `want` (see
/// [`TIMEOUT_SLACK`]). "No timeout" only matches itself.
fn close_enough(set: Option<Duration>, want: Option<Duration>) -> bool {
    match (set, want) {
        (Some(a), Some(b)) => a.abs_diff(b) <= TIMEOUT_SLACK,
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_timeout_is_set_again_only_when_it_is_off_by_more_than_the_slack() {
        let s = |ms| Some(Duration::from_millis(ms));
        assert!(close_enough(s(10_000), s(9_996)));
        assert!(close_enough(s(9_996), s(10_000)));
        assert!(!close_enough(s(10_000), s(9_994)));
        assert!(!close_enough(s(9_994), s(10_000)));
        assert!(close_enough(None, None));
        assert!(!close_enough(None, s(10_000)));
        assert!(!close_enough(s(10_000), None));
    }
}
