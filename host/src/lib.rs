//! contrail-cni-plugin: see the README and docs/DESIGN.md.

pub mod cli;
pub mod cni;
pub mod config_check;
pub mod contrail;
pub mod delegate;
pub mod dispatch;
pub mod invocation;
pub mod invoked_path;
pub mod logging;
pub mod net;
pub mod wasm;

pub use dispatch::run_cni;
pub use invocation::Invocation;
