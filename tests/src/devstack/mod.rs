//! The devstack: the whole system on one machine, inside a "node" network namespace of its own.
//! Used by `make demo` (`contrail-devstack demo`) and the end-to-end tests.

pub mod dataplane;
pub mod vnc_view;
