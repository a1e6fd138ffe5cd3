//! Host bindings of every world the host links: the three worlds of `wit/` (0.2.0) and the two
//! worlds of `wit/compat/v0.1.0` (plugins built against 0.1.0 keep loading). Within a version,
//! `types` and `host` are generated once and shared through `with`, so there is one
//! `Invocation`, `Label`, `PluginError` and `Host` impl per version.

/// `contrail:cni-plugin@0.2.0`.
pub mod v2 {
    pub mod ipam {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "ipam-plugin",
        });
    }

    pub mod delegate {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "delegate-translator",
            with: {
                "contrail:cni-plugin/types": super::ipam::contrail::cni_plugin::types,
                "contrail:cni-plugin/host": super::ipam::contrail::cni_plugin::host,
            },
        });
    }

    pub mod contrail {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "contrail-translator",
            with: {
                "contrail:cni-plugin/types": super::ipam::contrail::cni_plugin::types,
                "contrail:cni-plugin/host": super::ipam::contrail::cni_plugin::host,
            },
        });
    }

    pub use contrail::exports::contrail::cni_plugin::contrail as wit_contrail;
    pub use delegate::exports::contrail::cni_plugin::delegate as wit_delegate;
    pub use ipam::contrail::cni_plugin::host::Level;
    pub use ipam::contrail::cni_plugin::types::{Command, Invocation, Label, PluginError};
    pub use ipam::exports::contrail::cni_plugin::ipam as wit_ipam;
}

/// `contrail:cni-plugin@0.1.0`: one translator world with both translations, one IPAM world.
pub mod v1 {
    pub mod ipam {
        wasmtime::component::bindgen!({
            path: "../wit/compat/v0.1.0",
            world: "ipam-plugin",
        });
    }

    pub mod translator {
        wasmtime::component::bindgen!({
            path: "../wit/compat/v0.1.0",
            world: "label-translator",
            with: {
                "contrail:cni-plugin/types": super::ipam::contrail::cni_plugin::types,
                "contrail:cni-plugin/host": super::ipam::contrail::cni_plugin::host,
            },
        });
    }

    pub use ipam::contrail::cni_plugin::host::Level;
    pub use ipam::contrail::cni_plugin::types::{Command, Invocation, Label, PluginError};
    pub use ipam::exports::contrail::cni_plugin::ipam as wit_ipam;
    pub use translator::exports::contrail::cni_plugin::translator as wit_translator;
}
