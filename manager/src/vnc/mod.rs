//! Everything that talks to the Contrail VNC config API.

pub mod client;
pub mod model;
pub mod writer;

pub use client::{HttpVnc, HttpVncConfig, RefOp, VncApi, VncError};
pub use writer::{AttachError, Orphan, Scan, Writer, WriterConfig};
