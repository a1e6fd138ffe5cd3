//! `contrail-cni-plugin-compile`: the plugin compiler, installed beside `contrail-cni-plugin`,
//! which runs it on a cache miss (see `contrail_cni_host::wasm::compiler` for the protocol and
//! the limits it runs under). It is the only binary that links Cranelift.
//!
//! `contrail-cni-plugin-compile --engine <fingerprint>`: a `.wasm` component on stdin, its
//! artifact for this machine on stdout. Exit 1 (one line on stderr) when the input is not a
//! component this engine accepts; 2 on usage errors; 3 when `<fingerprint>` is not this
//! build's engine (a host of another release). It reads no file, no environment variable and
//! no configuration: the engine settings are the host library's
//! (`contrail_cni_host::wasm::engine::engine_config`).

use std::io::{Read, Write};
use std::process::ExitCode;

use contrail_cni_host::wasm::cache::PLUGIN_MAX_BYTES;
use contrail_cni_host::wasm::compiler::{EXIT_ENGINE, EXIT_INVALID, EXIT_USAGE};
use contrail_cni_host::wasm::engine;
use wasmtime::Engine;

fn fail(code: i32, msg: impl std::fmt::Display) -> ExitCode {
    // One line: the host shows the first line of stderr.
    let msg = msg.to_string().replace('\n', "; ");
    let _ = writeln!(std::io::stderr(), "{msg}");
    ExitCode::from(code as u8)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let expected = match args.as_slice() {
        [flag, fp] if flag == "--engine" => fp.clone(),
        _ => {
            return fail(
                EXIT_USAGE,
                "usage: contrail-cni-plugin-compile --engine <fingerprint> <plugin.wasm >artifact (run by contrail-cni-plugin, not by hand; use `contrail-cni-plugin plugin compile`)",
            );
        }
    };
    let ours = engine::fingerprint_hex();
    if expected != ours {
        return fail(
            EXIT_ENGINE,
            format!(
                "asked for engine {expected}, this compiler ({} {}) builds for {ours}; install the compiler of the same release as contrail-cni-plugin",
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION")
            ),
        );
    }
    let mut wasm = Vec::new();
    if let Err(e) = std::io::stdin()
        .lock()
        .take(PLUGIN_MAX_BYTES + 1)
        .read_to_end(&mut wasm)
    {
        return fail(EXIT_INVALID, format!("cannot read the plugin: {e}"));
    }
    if wasm.len() as u64 > PLUGIN_MAX_BYTES {
        return fail(
            EXIT_INVALID,
            format!("more than a plugin may have ({PLUGIN_MAX_BYTES} bytes)"),
        );
    }
    // Never pass an artifact through as if it had been compiled here.
    if Engine::detect_precompiled(&wasm).is_some() {
        return fail(
            EXIT_INVALID,
            "a precompiled artifact, not a WebAssembly component",
        );
    }
    let engine = match Engine::new(&engine::engine_config()) {
        Ok(e) => e,
        Err(e) => return fail(4, format!("Wasm engine unavailable: {e:#}")),
    };
    let artifact = match engine.precompile_component(&wasm) {
        Ok(a) => a,
        Err(e) => {
            return fail(
                EXIT_INVALID,
                format!("not a valid WebAssembly component: {e:#}"),
            );
        }
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(&artifact).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(4, format!("cannot write the artifact: {e}")),
    }
}
