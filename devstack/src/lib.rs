//! The devstack: the whole system on one machine, inside a "node" network namespace of its own.
//! Used by `make demo` (`contrail-devstack demo`) and the end-to-end tests.

pub mod agent;
pub mod dataplane;
pub mod dns;
pub mod fabric;
pub mod lb;
pub mod marathon_api;
pub mod marathon_lb;
pub mod policy;
pub mod probe;
pub mod scheduler;
pub mod stack;
pub mod vnc_view;

pub use scheduler::{RunSpec, Scheduler};
pub use stack::{Stack, StackOptions};
