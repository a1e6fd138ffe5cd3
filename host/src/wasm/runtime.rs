//! Running one plugin call in its sandbox: a fresh store per call, a memory cap, a wall-time
//! deadline, and the only host import, `log`. Whatever goes wrong becomes a CNI error that
//! names the plugin file.

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};

use super::bindings::{self, Level};
use crate::cni::error::{
    CniError, PLUGIN_CODE_ZERO, WASM_LOAD, WASM_MALFORMED, WASM_MEMORY, WASM_TIMEOUT, WASM_TRAP,
};

/// `host.log`: lines are cut at 4 KiB and at most 256 are kept per call (wit/types.wit).
pub const LOG_LINE_MAX: usize = 4096;
pub const LOG_LINES_PER_CALL: u32 = 256;
/// Limits on what a plugin's answer may carry into our stdout/logs.
pub const TEXT_MAX: usize = 4096;
/// Tables are small in real plugins; this only stops unbounded growth.
const TABLE_ELEMENTS_MAX: usize = 100_000;

/// Cuts `s` to at most `max` bytes on a char boundary.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Caps each linear memory and table; remembers that a cap was hit so the error can say so
/// (the trap itself only carries a message).
pub struct Limiter {
    memory_max: usize,
    pub hit: Option<String>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_max {
            let msg = format!(
                "linear memory growth to {desired} bytes refused (cap {} bytes)",
                self.memory_max
            );
            self.hit = Some(msg.clone());
            // An error (not `Ok(false)`) traps at once, so a guest cannot loop on failed grows.
            return Err(wasmtime::Error::msg(msg));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > TABLE_ELEMENTS_MAX {
            let msg =
                format!("table growth to {desired} elements refused (cap {TABLE_ELEMENTS_MAX})");
            self.hit = Some(msg.clone());
            return Err(wasmtime::Error::msg(msg));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        16
    }
}

/// Per-call store data.
pub struct State {
    /// Plugin file name, as it appears in errors and logs.
    pub plugin: String,
    pub container_id: String,
    pub limiter: Limiter,
    logged: u32,
}

impl State {
    pub fn new(plugin: &str, container_id: &str, memory_limit_mb: u64) -> Self {
        State {
            plugin: plugin.to_owned(),
            container_id: container_id.to_owned(),
            limiter: Limiter {
                memory_max: (memory_limit_mb as usize) << 20,
                hit: None,
            },
            logged: 0,
        }
    }
}

impl bindings::ipam::contrail::cni_plugin::types::Host for State {}

impl bindings::ipam::contrail::cni_plugin::host::Host for State {
    fn log(&mut self, level: Level, message: String) {
        self.logged = self.logged.saturating_add(1);
        if self.logged > LOG_LINES_PER_CALL {
            if self.logged == LOG_LINES_PER_CALL + 1 {
                tracing::warn!(plugin = %self.plugin, container = %self.container_id, "plugin log limit reached; further lines dropped");
            }
            return;
        }
        // Escape control characters so a plugin cannot forge lines in the log file.
        let line = truncate(message, LOG_LINE_MAX).escape_debug().to_string();
        let (p, c) = (&self.plugin, &self.container_id);
        match level {
            Level::Trace => tracing::trace!(plugin = %p, container = %c, "{line}"),
            Level::Debug => tracing::debug!(plugin = %p, container = %c, "{line}"),
            Level::Info => tracing::info!(plugin = %p, container = %c, "{line}"),
            Level::Warn => tracing::warn!(plugin = %p, container = %c, "{line}"),
            Level::Error => tracing::error!(plugin = %p, container = %c, "{line}"),
        }
    }
}

/// Call limits from the `wasm` config section.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_limit_mb: u64,
    pub timeout_ms: u64,
}

/// A linker for one world: our `host` import, and every other import (the WASI a
/// `wasm32-wasip2` guest imports even when unused) defined as a trap. No capability is granted.
pub fn linker_for(
    engine: &Engine,
    component: &Component,
    add: impl FnOnce(&mut Linker<State>) -> wasmtime::Result<()>,
) -> wasmtime::Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    add(&mut linker)?;
    linker.define_unknown_imports_as_traps(component)?;
    Ok(linker)
}

/// A new store for one call, with the memory cap and the deadline armed.
pub fn new_store(
    engine: &Engine,
    plugin: &str,
    container_id: &str,
    limits: Limits,
) -> Store<State> {
    let mut store = Store::new(
        engine,
        State::new(plugin, container_id, limits.memory_limit_mb),
    );
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(super::engine::deadline_ticks(limits.timeout_ms));
    store
}

/// Turns a failed instantiate/call into the CNI error, by cause.
pub fn classify(err: wasmtime::Error, state: &State, limits: Limits) -> CniError {
    let plugin = &state.plugin;
    let details = truncate(format!("{err:?}"), TEXT_MAX);
    if let Some(hit) = &state.limiter.hit {
        return CniError::new(
            WASM_MEMORY,
            format!(
                "Wasm plugin {plugin} exceeded its memory limit of {} MiB",
                limits.memory_limit_mb
            ),
        )
        .with_details(format!("{hit}\n{details}"));
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CniError::new(
            WASM_TIMEOUT,
            format!(
                "Wasm plugin {plugin} exceeded its time limit of {} ms",
                limits.timeout_ms
            ),
        ),
        Some(trap) => CniError::new(WASM_TRAP, format!("Wasm plugin {plugin} trapped: {trap}"))
            .with_details(details),
        None => CniError::new(
            WASM_TRAP,
            format!(
                "Wasm plugin {plugin} failed: {}",
                truncate(format!("{err}"), 512)
            ),
        )
        .with_details(details),
    }
}

/// A `plugin-error` returned by the guest. Code 0 is not an error code; wit/types.wit
/// promises plugin authors that the host turns it into 999 (Go's `ErrInternal`), and says so.
pub fn plugin_error(plugin: &str, e: bindings::PluginError) -> CniError {
    if e.code == 0 {
        return CniError::new(
            PLUGIN_CODE_ZERO,
            format!(
                "Wasm plugin {plugin} returned an error with code 0: {}",
                truncate(e.msg, TEXT_MAX)
            ),
        )
        .with_details(truncate(e.details, TEXT_MAX));
    }
    let details = if e.details.is_empty() {
        format!("from Wasm plugin {plugin}")
    } else {
        format!(
            "from Wasm plugin {plugin}: {}",
            truncate(e.details, TEXT_MAX)
        )
    };
    CniError::new(e.code, truncate(e.msg, TEXT_MAX)).with_details(details)
}

/// A plugin answer that breaks the contract.
pub fn malformed(plugin: &str, what: impl std::fmt::Display) -> CniError {
    CniError::new(
        WASM_MALFORMED,
        format!("Wasm plugin {plugin} answered something malformed: {what}"),
    )
}

/// A plugin that cannot be loaded or does not implement its world.
pub fn load_error(plugin: &str, what: impl std::fmt::Display) -> CniError {
    CniError::new(
        WASM_LOAD,
        format!(
            "Wasm plugin {plugin} cannot be loaded: {}",
            truncate(what.to_string(), TEXT_MAX)
        ),
    )
}
