//! Host bindings of the two worlds in `wit/worlds.wit`. The `types` and `host` interfaces are
//! generated once (with the IPAM world) and reused by the translator world through `with`, so
//! there is one `Invocation`, one `Label`, one `PluginError` and one `Host` impl.

pub mod ipam {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "ipam-plugin",
    });
}

pub mod translator {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "label-translator",
        with: {
            "contrail:cni-plugin/types": super::ipam::contrail::cni_plugin::types,
            "contrail:cni-plugin/host": super::ipam::contrail::cni_plugin::host,
        },
    });
}

pub use ipam::contrail::cni_plugin::host::Level;
pub use ipam::contrail::cni_plugin::types::{Command, Invocation, Label, PluginError};
