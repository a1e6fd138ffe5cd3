//! `mesos-delegate`: one component implementing two worlds of `contrail:cni-plugin@0.2.0`
//! (why one component: `plugins/README.md`).
//!
//! * `delegate-translator` ([`delegate::translate_delegate`]): for a `"type": "mesos"` network
//!   with a `delegate` block, decide what the delegate is told: the `CNI_ARGS` network label
//!   (`IP=`, `MAC=`, `IgnoreUnknown=`) becomes `args.cni.ips` / `args.cni.mac`, the way the
//!   third-party Mesos delegate plugin meant it, and the labels `args.cni.labels`. The host
//!   applies the decision to the operator's block.
//! * `contrail-translator` ([`contrail::translate_contrail`]): the Contrail label vocabulary
//!   (`networks`, `network-subnets`, `network-ip`, `project-name`, `domain-name`, `floating-ips`,
//!   `security-groups`, `isolation`) parsed into a typed request.
//!
//! All logic lives in plain Rust modules so `cargo test -p mesos-delegate` runs natively; the
//! WIT glue in `component.rs` only converts records and forwards log lines.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

#[allow(unused_imports)]
use guest_support::prelude::*;

pub mod cni_args;
pub mod contrail;
pub mod delegate;
pub mod error;
mod net;

// Only for the component: natively, the export names (`contrail:cni-plugin/...`) are not valid
// in an ELF linker version script, so a native cdylib with them does not link.
#[cfg(target_arch = "wasm32")]
mod component;

pub use error::PluginError;

/// A Mesos network label (`NetworkInfo.labels.labels[]`), independent of the WIT bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub key: String,
    pub value: String,
}

impl Label {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            key: key.into(),
            value: value.into(),
        }
    }
}
