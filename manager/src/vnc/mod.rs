//! Everything that talks to the Contrail VNC config API.

pub mod bodies;
pub mod client;
pub mod dns;
pub mod fabric;
pub mod fenced;
pub mod ids;
pub mod inventory;
pub mod model;
pub mod objects;
pub mod planning;
pub mod policy;
pub mod transport;
pub mod unused;
pub mod writer;

pub use client::{HttpVnc, HttpVncConfig, RefOp, VncApi, VncError};
pub use fenced::Fenced;
pub use inventory::{Orphan, Scan};
pub use writer::{AttachError, Writer, WriterConfig};
