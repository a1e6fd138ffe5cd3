//! Running one plugin call in its sandbox: a fresh store per call, a memory cap, a wall-time
//! deadline, and the only host import, `log`. Whatever goes wrong becomes a CNI error that
//! names the plugin file.

use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, ResourceLimiter, Store, Trap, UpdateDeadline};

use super::alarm::{self, Alarm};
use super::bindings::{v1, v2};
use crate::cni::error::{
    CniError, PLUGIN_CODE_OTHER, PLUGIN_CODES, WASM_LOAD, WASM_MALFORMED, WASM_MEMORY,
    WASM_TIMEOUT, WASM_TRAP,
};

/// `host.log`: lines are cut at 4 KiB and at most 256 are kept per call (wit/types.wit).
pub const LOG_LINE_MAX: usize = 4096;
pub const LOG_LINES_PER_CALL: u32 = 256;
/// Limits on what a plugin's text may carry into our stdout/logs: `details`, and `msg` (one line).
pub const TEXT_MAX: usize = 4096;
pub const MSG_MAX: usize = 512;

/// Plugin text made safe for a log line or a message: control characters (newlines, ANSI
/// escapes, C1 controls) and the Unicode characters that reorder or hide text (bidi
/// overrides, zero-width, line/paragraph separators) are written as escapes, so one entry is
/// one line and reads as what it is; then cut to `max` bytes.
pub fn escape(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 8);
    for c in s.chars() {
        if out.len() >= max {
            out.push('…');
            break;
        }
        let hidden = matches!(c,
            '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
        if c.is_control() || hidden {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

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

/// One budget for the whole instance: every linear memory and every table of every core
/// instance inside the component counts against it (tables at [`TABLE_ELEMENT_BYTES`] per
/// element), so a component with many memories gets no more than one with a single memory.
/// Remembers that a cap was hit so the error can say so (the trap only carries a message).
pub struct Limiter {
    budget: usize,
    used: usize,
    pub hit: Option<String>,
}

/// What a table element is charged (a funcref is a pointer plus bookkeeping on 64-bit hosts).
pub const TABLE_ELEMENT_BYTES: usize = 16;
/// Upper bounds on what one plugin instance may create. A Rust `wasm32-wasip2` component has
/// one core memory, one or two tables and a handful of core instances; these leave room for
/// other toolchains and stop a component from spreading its budget over hundreds of them.
pub const MAX_INSTANCES: usize = 32;
pub const MAX_TABLES: usize = 8;
pub const MAX_MEMORIES: usize = 4;

impl Limiter {
    pub fn new(budget: usize) -> Self {
        Limiter {
            budget,
            used: 0,
            hit: None,
        }
    }

    /// Bytes charged so far (memories and tables).
    pub fn used(&self) -> usize {
        self.used
    }

    fn charge(&mut self, what: &str, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        let total = self.used.saturating_add(more);
        if total > self.budget {
            let msg = format!(
                "{what} growth by {more} bytes refused: the instance would use {total} bytes (cap {} bytes for all memories and tables)",
                self.budget
            );
            self.hit = Some(msg.clone());
            // An error (not `Ok(false)`) traps at once, so a guest cannot loop on failed grows.
            return Err(wasmtime::Error::msg(msg));
        }
        self.used = total;
        Ok(true)
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.charge("linear memory", current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.charge(
            "table",
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }
    fn tables(&self) -> usize {
        MAX_TABLES
    }
    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Per-call store data.
pub struct State {
    /// Plugin file name, as it appears in errors and logs.
    pub plugin: String,
    pub container_id: String,
    pub limiter: Limiter,
    logged: u32,
    /// The call's timer (see [`new_store`]).
    alarm: Option<Alarm>,
}

impl State {
    pub fn new(plugin: &str, container_id: &str, memory_limit_mb: u64) -> Self {
        State {
            plugin: plugin.to_owned(),
            container_id: container_id.to_owned(),
            limiter: Limiter::new((memory_limit_mb as usize) << 20),
            logged: 0,
            alarm: None,
        }
    }

    fn log(&mut self, level: tracing::Level, message: String) {
        self.logged = self.logged.saturating_add(1);
        if self.logged > LOG_LINES_PER_CALL {
            if self.logged == LOG_LINES_PER_CALL + 1 {
                tracing::warn!(plugin = %self.plugin, container = %self.container_id, "plugin log limit reached; further lines dropped");
            }
            return;
        }
        // Plugin text is data: one entry is one line, no control characters, bounded.
        let line = escape(&message, LOG_LINE_MAX);
        let (p, c) = (&self.plugin, &self.container_id);
        match level {
            tracing::Level::TRACE => tracing::trace!(plugin = %p, container = %c, "{line}"),
            tracing::Level::DEBUG => tracing::debug!(plugin = %p, container = %c, "{line}"),
            tracing::Level::INFO => tracing::info!(plugin = %p, container = %c, "{line}"),
            tracing::Level::WARN => tracing::warn!(plugin = %p, container = %c, "{line}"),
            tracing::Level::ERROR => tracing::error!(plugin = %p, container = %c, "{line}"),
        }
    }
}

impl v2::ipam::contrail::cni_plugin::types::Host for State {}
impl v1::ipam::contrail::cni_plugin::types::Host for State {}

impl v2::ipam::contrail::cni_plugin::host::Host for State {
    fn log(&mut self, level: v2::Level, message: String) {
        use v2::Level as L;
        let level = match level {
            L::Trace => tracing::Level::TRACE,
            L::Debug => tracing::Level::DEBUG,
            L::Info => tracing::Level::INFO,
            L::Warn => tracing::Level::WARN,
            L::Error => tracing::Level::ERROR,
        };
        State::log(self, level, message)
    }
}

impl v1::ipam::contrail::cni_plugin::host::Host for State {
    fn log(&mut self, level: v1::Level, message: String) {
        use v1::Level as L;
        let level = match level {
            L::Trace => tracing::Level::TRACE,
            L::Debug => tracing::Level::DEBUG,
            L::Info => tracing::Level::INFO,
            L::Warn => tracing::Level::WARN,
            L::Error => tracing::Level::ERROR,
        };
        State::log(self, level, message)
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

/// A new store for one call, with the memory cap and the deadline armed: an [`Alarm`] on
/// this thread (kept in the store, so it is deleted with it) advances the epoch at the
/// deadline, and the deadline callback traps once the call's own time is up (an earlier tick
/// from another thread's alarm only continues the call). `engine` must be the process-wide
/// engine ([`super::engine::engine`]), the one the alarm advances.
pub fn new_store(
    engine: &'static Engine,
    plugin: &str,
    container_id: &str,
    limits: Limits,
) -> Result<Store<State>, String> {
    alarm::install(engine)?;
    let budget = Duration::from_millis(limits.timeout_ms);
    // `Limits` from the config are bounded (10 minutes at most); any other caller's huge
    // budget means no deadline rather than an overflow.
    let deadline = Instant::now().checked_add(budget);
    let mut store = Store::new(
        engine,
        State::new(plugin, container_id, limits.memory_limit_mb),
    );
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            Err(Trap::Interrupt.into())
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
    store.data_mut().alarm = Some(Alarm::arm(budget)?);
    Ok(store)
}

/// The import a trap stub reports when a plugin calls it (`define_unknown_imports_as_traps`
/// bails with "unknown import: `<name>` has not been defined").
fn denied_import(err: &wasmtime::Error) -> Option<String> {
    err.chain().find_map(|cause| {
        let text = cause.to_string();
        let rest = text.split_once("unknown import: `")?.1;
        Some(rest.split_once('`')?.0.to_owned())
    })
}

fn all_text(err: &wasmtime::Error) -> String {
    format!("{err:#}")
}

/// Turns a failed instantiate/call into the CNI error, by cause. Messages are one line; a
/// backtrace only goes to `details` for a genuine trap.
pub fn classify(err: wasmtime::Error, state: &State, limits: Limits) -> CniError {
    let plugin = &state.plugin;
    if let Some(hit) = &state.limiter.hit {
        return CniError::new(
            WASM_MEMORY,
            format!(
                "Wasm plugin {plugin} exceeded its memory limit of {} MiB",
                limits.memory_limit_mb
            ),
        )
        .with_details(escape(hit, TEXT_MAX));
    }
    if let Some(import) = denied_import(&err) {
        return CniError::new(
            WASM_TRAP,
            format!(
                "Wasm plugin {plugin} called {}, an import the host does not grant",
                escape(&import, 256)
            ),
        )
        .with_details(
            "plugins get no WASI capability (files, sockets, clocks, randomness, environment); see `contrail-cni-plugin plugin check`",
        );
    }
    // Too many memories/tables/instances (the limiter's counts): refused at instantiation.
    if all_text(&err).contains("resource limit exceeded") {
        return CniError::new(
            WASM_MEMORY,
            format!(
                "Wasm plugin {plugin} exceeded its resource limits ({MAX_MEMORIES} memories, {MAX_TABLES} tables, {MAX_INSTANCES} instances)"
            ),
        )
        .with_details(escape(&all_text(&err), TEXT_MAX));
    }
    // Exports are typechecked against the bindgen'd world when the instance is created: a
    // plugin built against a WIT with a changed record is a load error, not a trap.
    let all = format!("{err:#}");
    if all.contains("failed to convert function to given type") {
        return CniError::new(
            WASM_LOAD,
            format!(
                "Wasm plugin {plugin} does not implement its world: {}",
                escape(&all, 512)
            ),
        );
    }
    let details = escape(&format!("{err:?}"), TEXT_MAX);
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
                escape(&format!("{err}"), 512)
            ),
        )
        .with_details(details),
    }
}

/// Error codes a plugin may return as they are: the CNI spec's (SPEC.md "Error codes") and a
/// range of its own. Everything else (0, the host's own 100-199, 999, ...) would make a plugin
/// look like the host or like success, so it becomes [`PLUGIN_CODE_OTHER`].
pub fn plugin_code_allowed(code: u32) -> bool {
    matches!(code, 1..=7 | 11 | 50 | 51) || PLUGIN_CODES.contains(&code)
}

/// A `plugin-error` returned by the guest: the code checked, the text escaped and bounded, and
/// the plugin named in `details` so it can never pass for the host.
pub fn plugin_error(plugin: &str, code: u32, msg: &str, details: &str) -> CniError {
    let msg = escape(msg, MSG_MAX);
    let details = escape(details, TEXT_MAX);
    let (code, note) = if plugin_code_allowed(code) {
        (code, String::new())
    } else {
        (
            PLUGIN_CODE_OTHER,
            format!(
                " (it returned code {code}, which is not a plugin's: spec codes 1-7, 11, 50, 51 or {}-{})",
                PLUGIN_CODES.start(),
                PLUGIN_CODES.end()
            ),
        )
    };
    let details = if details.is_empty() {
        format!("from Wasm plugin {plugin}{note}")
    } else {
        format!("from Wasm plugin {plugin}{note}: {details}")
    };
    CniError::new(code, msg).with_details(details)
}

/// A plugin answer that breaks the contract.
pub fn malformed(plugin: &str, what: impl std::fmt::Display) -> CniError {
    CniError::new(
        WASM_MALFORMED,
        format!(
            "Wasm plugin {plugin} answered something malformed: {}",
            escape(&what.to_string(), MSG_MAX)
        ),
    )
}

/// A plugin that cannot be loaded or does not implement its world.
pub fn load_error(plugin: &str, what: impl std::fmt::Display) -> CniError {
    CniError::new(
        WASM_LOAD,
        format!(
            "Wasm plugin {plugin} cannot be loaded: {}",
            escape(&what.to_string(), TEXT_MAX)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_budget_for_all_memories_and_tables() {
        let mut l = Limiter::new(32 << 20);
        // Two memories of 20 MiB each: the second goes over the instance's 32 MiB.
        assert!(l.memory_growing(0, 20 << 20, None).unwrap());
        assert!(l.memory_growing(0, 20 << 20, None).is_err());
        assert!(l.hit.is_some());
        // Growing an existing memory is charged by the difference only.
        let mut l = Limiter::new(32 << 20);
        assert!(l.memory_growing(0, 16 << 20, None).unwrap());
        assert!(l.memory_growing(16 << 20, 24 << 20, None).unwrap());
        assert_eq!(l.used(), 24 << 20);
        // Tables count against the same budget.
        assert!(
            l.table_growing(0, (8 << 20) / TABLE_ELEMENT_BYTES, None)
                .unwrap()
        );
        assert!(l.table_growing(0, 1, None).is_err());
        assert!(l.memories() <= 4 && l.tables() <= 8 && l.instances() <= 32);
    }

    #[test]
    fn escape_keeps_one_line_and_no_controls() {
        let e = escape("a\nb\x1b[31mc\u{202e}d\r", 100);
        assert_eq!(e, "a\\nb\\u{1b}[31mc\\u{202e}d\\r");
        assert!(escape(&"x".repeat(100), 10).len() <= 10 + '…'.len_utf8());
    }

    #[test]
    fn plugin_codes() {
        for ok in [1, 2, 3, 4, 5, 6, 7, 11, 50, 51, 200, 250, 299] {
            assert!(plugin_code_allowed(ok), "{ok}");
        }
        for no in [0, 8, 99, 100, 112, 199, 300, 999, u32::MAX] {
            assert!(!plugin_code_allowed(no), "{no}");
            assert_eq!(plugin_error("p.wasm", no, "m", "").code, PLUGIN_CODE_OTHER);
        }
    }
}
