//! Helpers shared by the plugin components.
//!
//! Why [`Json`] exists instead of `serde_json::Value`: the workspace enables serde_json's
//! `preserve_order`, so `Value` objects are `IndexMap`s with std's `RandomState`. On
//! `wasm32-wasip2` the first `RandomState` calls `wasi:random/insecure-seed`, and the host links
//! no WASI: every unknown import traps. A plugin that parsed a JSON object would trap on its
//! first call. [`Json`] keeps objects as a `Vec` of entries (ordered, no hashing); serde_json is
//! still the parser and printer. Check a built plugin with
//! `grep -c insecure-seed target/wasm32-wasip2/wasm-release/<plugin>.wasm` (must print 0).

pub mod json;

pub use json::Json;
