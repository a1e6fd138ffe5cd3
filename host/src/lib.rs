//! contrail-cni-plugin: see the README and docs/DESIGN.md.

pub mod cni;
pub mod contrail;
pub mod net;
pub mod wasm;
