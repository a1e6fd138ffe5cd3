//! `contrail-ipam`: the IPAM component (world `ipam-plugin` of `contrail:cni-plugin@0.2.0`).
//! Turns the vRouter agent's answer for one port (`GET /vm/<vm>/<vmi>`, the agent's port-IPC
//! API) and the network configuration into the interface's addresses, routes and DNS. Pure logic in [`ipam`]; `component.rs` is glue.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod ipam;

// Only for the component: natively, the export names (`contrail:cni-plugin/...`) are not valid
// in an ELF linker version script, so a native cdylib with them does not link.
#[cfg(target_arch = "wasm32")]
mod component;
