//! What the host does with each import of a plugin: its own interfaces are granted, the WASI
//! that Rust's std imports by itself is a trap stub, everything else is not granted.

use wasmtime::component::Component;

/// What the host does with one import of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The host's own interfaces (`host.log`, the shared types), linked for real.
    Granted,
    /// The part of WASI that Rust's `wasm32-wasip2` std imports whether or not a plugin uses
    /// it (environment, exit, stdio, terminals, the stream/poll/error plumbing): linked as a
    /// trap. None of it would hand a plugin a capability (files, network, time, randomness).
    StdStub,
    /// Anything else: a capability (filesystem, sockets, clocks, random, http...) or an
    /// interface the host does not have (including a made-up one in our own package).
    /// Linked as a trap; `plugin check` fails on it.
    NotGranted,
}

/// One import of a plugin and what the host does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub name: String,
    pub grant: Grant,
}

/// The host's own interfaces, linked for real.
pub const GRANTED_IMPORTS: &[&str] = &[
    "contrail:cni-plugin/host@0.2.0",
    "contrail:cni-plugin/types@0.2.0",
    "contrail:cni-plugin/host@0.1.0",
    "contrail:cni-plugin/types@0.1.0",
];

/// The WASI interfaces (without version) that std imports by itself.
pub const STD_STUB_IMPORTS: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
];

/// How the host treats an import named `name`.
pub fn grant_of(name: &str) -> Grant {
    if GRANTED_IMPORTS.contains(&name) {
        return Grant::Granted;
    }
    let unversioned = name.split_once('@').map_or(name, |(n, _)| n);
    if name.starts_with("wasi:") && STD_STUB_IMPORTS.contains(&unversioned) {
        Grant::StdStub
    } else {
        Grant::NotGranted
    }
}

/// Every import of `component`, our own package's included, with what the host does with it.
pub fn imports(component: &Component) -> Vec<Import> {
    let engine = component.engine();
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| Import {
            grant: grant_of(name),
            name: name.to_owned(),
        })
        .collect()
}
