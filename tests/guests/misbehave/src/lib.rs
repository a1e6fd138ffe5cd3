//! `misbehave-plugin`: a deliberately hostile component of world `ipam-plugin`, for the host's
//! sandbox tests. It is never deployed.
//!
//! The behaviour is chosen by the string field `"misbehave"` of the network configuration
//! (`request.invocation.config`, JSON):
//!
//! | mode          | what `configure` does                                                     | host should report |
//! |---------------|---------------------------------------------------------------------------|--------------------|
//! | `"loop"`      | spins forever (no host calls, no allocation)                              | time limit (112)   |
//! | `"alloc"`     | pushes 1 MiB chunks (each written, so pages are really used) until the    | memory limit (113) |
//! |               | memory grow fails, which aborts (an `unreachable` trap)                   |                    |
//! | `"trap"`      | panics with "misbehave: trap requested"; the panic hook logs the message  | trap (111)         |
//! |               | through `host.log` (level error), then the wasm `unreachable` traps       |                    |
//! | `"garbage"`   | returns ok with the address `"not-an-ip/99"` (and gateway `"nope"`)       | malformed (114)    |
//! | `"error0"`    | returns a `plugin-error` with code 0 ("misbehave: error with code 0")     | code 999           |
//! | `"log-flood"` | calls `host.log(info, <1 MiB of 'x'>)` 100 000 times, then returns "ok"'s | ok, log capped; or |
//! |               | answer                                                                    | time limit         |
//! | `"ok"`        | returns `10.1.2.3/24` gateway `10.1.2.1`, route `0.0.0.0/0` via it, no DNS| success            |
//!
//! A missing or unknown mode, or a config that is not JSON, returns a `plugin-error` with code 7
//! naming the problem (so a typo in a test is not mistaken for a sandbox result).
//!
//! Build: `cargo build --profile wasm-release --target wasm32-wasip2 -p misbehave-plugin` →
//! `target/wasm32-wasip2/wasm-release/misbehave_plugin.wasm`. Everything is compiled for wasm32 only:
//! the export names do not link natively and the modes make no sense outside the sandbox.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        world: "ipam-plugin",
        path: "../../../wit",
    });

    use contrail::cni_plugin::host::{self, Level};
    use exports::contrail::cni_plugin::ipam as wit;

    struct Misbehave;

    export!(Misbehave);

    fn error(code: u32, msg: String) -> wit::PluginError {
        wit::PluginError {
            code,
            msg,
            details: String::new(),
        }
    }

    fn ok_answer() -> wit::IpConfig {
        wit::IpConfig {
            ips: vec![wit::IpAddress {
                address: "10.1.2.3/24".into(),
                gateway: Some("10.1.2.1".into()),
            }],
            routes: vec![wit::Route {
                dst: "0.0.0.0/0".into(),
                gw: Some("10.1.2.1".into()),
            }],
            dns: wit::Dns {
                nameservers: Vec::new(),
                domain: None,
                search: Vec::new(),
                options: Vec::new(),
            },
        }
    }

    impl wit::Guest for Misbehave {
        fn configure(req: wit::Request) -> Result<wit::IpConfig, wit::PluginError> {
            // Same hook as the real plugins: without it a panic's text is lost (no WASI).
            std::panic::set_hook(Box::new(|info| {
                host::log(Level::Error, &format!("misbehave-plugin panicked: {info}"));
            }));
            // guest_support::Json, not serde_json::Value: Value's hashing would call a WASI
            // import, which traps before any mode could run.
            let config = guest_support::Json::parse(&req.invocation.config)
                .map_err(|e| error(7, format!("misbehave: config is not JSON: {e}")))?;
            let mode = config
                .get("misbehave")
                .and_then(guest_support::Json::as_str)
                .ok_or_else(|| error(7, "misbehave: config has no string \"misbehave\"".into()))?;
            match mode {
                "loop" => {
                    // black_box keeps the optimiser from proving the loop side-effect free.
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                }
                "alloc" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        // Non-zero fill: a zeroed allocation could be satisfied lazily.
                        hoard.push(vec![0xa5; 1 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                "trap" => panic!("misbehave: trap requested"),
                "garbage" => Ok(wit::IpConfig {
                    ips: vec![wit::IpAddress {
                        address: "not-an-ip/99".into(),
                        gateway: Some("nope".into()),
                    }],
                    ..ok_answer()
                }),
                "error0" => Err(error(0, "misbehave: error with code 0".into())),
                "log-flood" => {
                    let line = "x".repeat(1 << 20);
                    for _ in 0..100_000 {
                        host::log(Level::Info, &line);
                    }
                    Ok(ok_answer())
                }
                "ok" => Ok(ok_answer()),
                other => Err(error(7, format!("misbehave: unknown mode \"{other}\""))),
            }
        }
    }
}
