//! VNC config API stand-in (shared/contracts/vnc-api.md): an in-memory server with fq_name
//! uniqueness, parents/children, refs and back-ref delete rules, the address allocation of §5
//! and the plain-text errors of the real server. `VncServer::start()` serves it on a random
//! loopback port; `VncServer::ports()` shows what a vRouter agent would learn.

pub mod alloc;
pub mod server;
pub mod store;

pub use server::{PortView, VncServer, Wire};
pub use store::{Store, VncErr};

#[cfg(test)]
mod replay_tests;
