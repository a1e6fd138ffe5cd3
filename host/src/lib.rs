//! contrail-cni-plugin: see the README and docs/DESIGN.md.

pub mod contrail;
pub mod net;
