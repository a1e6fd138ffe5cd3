//! The one wasmtime configuration, shared by the host (which only loads precompiled
//! artifacts: no compiler is linked into `contrail-cni-plugin`) and the sibling compiler
//! `contrail-cni-plugin-compile` (which links Cranelift). Both build their `Config` from
//! [`engine_config`], so an artifact from the compiler deserialises in the host; wasmtime
//! itself checks the artifact's recorded settings against the loading engine (target, ISA
//! flags, tunables, wasm features, wasmtime version) and refuses a mismatch.

use std::sync::OnceLock;

use wasmtime::{Config, Engine};

/// The wasmtime release both binaries are built against (pinned with `=` in the workspace
/// `Cargo.toml`; a unit test keeps the two in step). Part of [`fingerprint`].
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Every setting [`engine_config`] applies, as data: the configuration and the
/// [`fingerprint`] both derive from it, so changing a setting changes the cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub component_model: bool,
    pub epoch_interruption: bool,
    pub memory_reservation: u64,
    pub memory_guard_size: u64,
    pub memory_reservation_for_growth: u64,
    pub generate_address_map: bool,
    pub native_unwind_info: bool,
}

/// The settings of every engine in this project (see [`engine_config`] for why each).
pub const SETTINGS: Settings = Settings {
    component_model: true,
    epoch_interruption: true,
    memory_reservation: 64 << 20,
    memory_guard_size: 2 << 20,
    memory_reservation_for_growth: 16 << 20,
    generate_address_map: false,
    native_unwind_info: false,
};

/// The configuration every engine in this project uses, the host's and the compiler's.
pub fn engine_config() -> Config {
    let s = SETTINGS;
    let mut c = Config::new();
    c.wasm_component_model(s.component_model);
    // Wall-time limits: epochs are cheaper than fuel and are compiled into the artifact, so
    // they must be on for compile and load alike.
    c.epoch_interruption(s.epoch_interruption);
    // Plugins are small and short-lived. A 4 GiB virtual reservation per linear memory (the
    // default) is harmless on most nodes but fails under an RLIMIT_AS; 64 MiB plus explicit
    // bounds checks costs nothing measurable for a single call. Memory beyond the reservation
    // still works (the memory moves), and the store limiter caps it anyway.
    c.memory_reservation(s.memory_reservation);
    c.memory_guard_size(s.memory_guard_size);
    c.memory_reservation_for_growth(s.memory_reservation_for_growth);
    // Load cost, not safety: every ADD deserialises an artifact, and its size and the work of
    // publishing it (unwind registration) are most of the Wasm step.
    // * No native-address → wasm-offset map: traps still name the plugin and the function
    //   (the guest's name section), only the `@0x…` wasm offsets go.
    c.generate_address_map(s.generate_address_map);
    // * No `.eh_frame` for the system unwinder: wasmtime walks Wasm frames itself (frame
    //   pointers) for traps and backtraces, and host panics are caught at the host-call
    //   boundary; registering the frames costs time on every load.
    c.native_unwind_info(s.native_unwind_info);
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

/// A digest of everything that decides whether an artifact fits this engine, computable with
/// or without a compiler linked (wasmtime's own `precompile_compatibility_hash` needs one):
/// the settings above, the wasmtime release, this crate's version and the target. It names
/// cache entries and is the handshake with the compiler (which refuses to compile for another
/// fingerprint). It is a key, not the safety check: wasmtime still checks every artifact's
/// recorded settings, including the CPU features it was compiled for, when it is loaded.
pub fn fingerprint() -> [u8; 32] {
    // Every plugin load names its entry with it: computed once per process.
    static FP: OnceLock<[u8; 32]> = OnceLock::new();
    *FP.get_or_init(|| fingerprint_of(&SETTINGS))
}

fn fingerprint_of(settings: &Settings) -> [u8; 32] {
    let text = format!(
        "contrail-cni engine v1; wasmtime {WASMTIME_VERSION}; {} {}; {}-{}-{}; {:?}",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS,
        if cfg!(target_endian = "little") {
            "le"
        } else {
            "be"
        },
        settings,
    );
    // A key, so XXH3 rather than blake3: on the delegate path nothing else would use blake3,
    // and its first call in a process detects the CPU's features with CPUID instructions, each
    // a trap to the hypervisor on a VM (~20 us in all here). Two seeds make the 32 bytes.
    let mut out = [0u8; 32];
    for (seed, half) in out.chunks_exact_mut(16).enumerate() {
        half.copy_from_slice(
            &xxhash_rust::xxh3::xxh3_128_with_seed(text.as_bytes(), seed as u64).to_le_bytes(),
        );
    }
    out
}

/// [`fingerprint`] as lowercase hex (the compiler's `--engine` argument).
pub fn fingerprint_hex() -> String {
    fingerprint().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fingerprint names the wasmtime release; the workspace must pin that release.
    #[test]
    fn wasmtime_version_matches_the_workspace_pin() {
        let manifest = include_str!("../../../Cargo.toml");
        let pin = format!("wasmtime = {{ version = \"={WASMTIME_VERSION}\"");
        assert!(
            manifest.contains(&pin),
            "the workspace Cargo.toml must pin wasmtime to ={WASMTIME_VERSION}"
        );
    }

    /// A changed setting is another engine, so another cache key.
    #[test]
    fn the_fingerprint_follows_the_settings() {
        assert_eq!(fingerprint(), fingerprint_of(&SETTINGS));
        let other = Settings {
            memory_guard_size: SETTINGS.memory_guard_size * 2,
            ..SETTINGS
        };
        assert_ne!(fingerprint(), fingerprint_of(&other));
        let other = Settings {
            native_unwind_info: !SETTINGS.native_unwind_info,
            ..SETTINGS
        };
        assert_ne!(fingerprint(), fingerprint_of(&other));
        assert_eq!(fingerprint_hex().len(), 64);
        assert!(engine().is_ok(), "the shared settings make an engine");
    }
}
