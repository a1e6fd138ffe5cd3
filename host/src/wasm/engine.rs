//! The one wasmtime configuration. Everything that compiles or loads a plugin goes through
//! [`engine`], so a cached artifact always matches the engine that loads it (the artifact
//! embeds the config; wasmtime refuses a mismatch, and our cache key includes the engine's
//! compatibility hash so a mismatch is a cache miss rather than an error).

use std::hash::Hasher;
use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::{Config, Engine};

/// Epoch tick. A call's deadline is counted in ticks; 10 ms keeps the ticker thread cheap
/// while a timeout overshoots by at most one tick.
pub const TICK: Duration = Duration::from_millis(10);

/// The configuration every engine in this crate uses.
pub fn engine_config() -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    // Wall-time limits: epochs are cheaper than fuel and are compiled into the artifact, so
    // they must be on for compile and load alike.
    c.epoch_interruption(true);
    // Plugins are small and short-lived. A 4 GiB virtual reservation per linear memory (the
    // default) is harmless on most nodes but fails under an RLIMIT_AS; 64 MiB plus explicit
    // bounds checks costs nothing measurable for a single call. Memory beyond the reservation
    // still works (the memory moves), and the store limiter caps it anyway.
    c.memory_reservation(64 << 20);
    c.memory_guard_size(2 << 20);
    c.memory_reservation_for_growth(16 << 20);
    // Load cost, not safety: every ADD deserialises an artifact, and its size and the work of
    // publishing it (unwind registration) are most of the Wasm step.
    // * No native-address → wasm-offset map: traps still name the plugin and the function
    //   (the guest's name section), only the `@0x…` wasm offsets go.
    c.generate_address_map(false);
    // * No `.eh_frame` for the system unwinder: wasmtime walks Wasm frames itself (frame
    //   pointers) for traps and backtraces, and host panics are caught at the host-call
    //   boundary; registering the frames costs time on every load.
    c.native_unwind_info(false);
    c
}

/// The process-wide engine.
pub fn engine() -> Result<&'static Engine, String> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| Engine::new(&engine_config()).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(Clone::clone)
}

/// Starts (once) the thread that advances the engine's epoch every [`TICK`]. Without it a
/// deadline never fires, so callers must not run a plugin when this fails.
pub fn start_ticker(engine: &'static Engine) -> Result<(), String> {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    STARTED
        .get_or_init(|| {
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                })
                .map(drop)
                .map_err(|e| format!("cannot start the Wasm epoch ticker: {e}"))
        })
        .clone()
}

/// Ticks for a wall-time budget (rounded up, plus one because the current tick is partial).
pub fn deadline_ticks(timeout_ms: u64) -> u64 {
    timeout_ms.div_ceil(TICK.as_millis() as u64) + 1
}

/// A stable digest of the engine's compatibility hash (wasmtime only gives `impl Hash`).
pub fn compatibility_digest(engine: &Engine) -> [u8; 32] {
    struct B3(blake3::Hasher);
    impl Hasher for B3 {
        fn finish(&self) -> u64 {
            let h = self.0.finalize();
            u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = B3(blake3::Hasher::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut h);
    // The wasmtime version is part of the artifact's own check too; folding it in keeps
    // artifacts of different host releases apart even if the hash above collided.
    h.0.update(env!("CARGO_PKG_VERSION").as_bytes());
    *h.0.finalize().as_bytes()
}
