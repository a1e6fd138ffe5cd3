//! `misbehave-plugin`: a deliberately hostile component of all three worlds of
//! `contrail:cni-plugin@0.2.0` (`ipam-plugin`, `delegate-translator`, `contrail-translator`),
//! for the host's sandbox tests. It is never deployed.
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
//! More IPAM modes: `"many-ips"` (100 000 addresses), `"huge"` (a 20 MB search domain list),
//! `"gw-outside"` (gateway 192.168.9.1 for 10.1.2.3/24, default route via it), `"code-112"`
//! and `"code-max"` (errors worded as the host's, codes 112 and 4294967295), `"forge-log"`
//! (a log line and an error message with newlines and ANSI escapes), `"hashmap"` (std's
//! `HashMap::new()`, which calls the ungranted `wasi:random`).
//!
//! `translate` of `delegate-translator`: `"ok"` answers `ips ["10.5.0.9"]` (`"forge-log"` too,
//! after logging a line with a newline, a forged log line and ANSI escapes); `"many-ips"` 17
//! addresses; `"bad-mac"` a multicast MAC; `"bad-ip"` `0.0.0.0`; `"secrets"` returns the text of
//! the config, delegate and plugin-config it received in an error's details (so a test can look for secrets).
//! `translate` of `contrail-translator`: `"ok"` a network `["blue"]`; `"bad-fq"` a 2-part
//! fq-name.
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
        path: "../../../wit",
        inline: "
            package test:misbehave;
            world misbehave {
                include contrail:cni-plugin/ipam-plugin@0.2.0;
                include contrail:cni-plugin/delegate-translator@0.2.0;
                include contrail:cni-plugin/contrail-translator@0.2.0;
            }
        ",
        world: "test:misbehave/misbehave",
        generate_all,
    });

    use contrail::cni_plugin::host::{self, Level};
    use contrail::cni_plugin::types as t;
    use exports::contrail::cni_plugin::contrail as wc;
    use exports::contrail::cni_plugin::delegate as wd;
    use exports::contrail::cni_plugin::ipam as wit;

    struct Misbehave;

    export!(Misbehave);

    fn error(code: u32, msg: String) -> t::PluginError {
        t::PluginError {
            code,
            msg,
            details: String::new(),
        }
    }

    fn mode_of(config: &str) -> Result<String, t::PluginError> {
        // Same hook as the real plugins: without it a panic's text is lost (no WASI).
        std::panic::set_hook(Box::new(|info| {
            host::log(Level::Error, &format!("misbehave-plugin panicked: {info}"));
        }));
        // guest_support::Json, not serde_json::Value: Value's hashing would call a WASI
        // import, which traps before any mode could run.
        let config = guest_support::Json::parse(config)
            .map_err(|e| error(7, format!("misbehave: config is not JSON: {e}")))?;
        config
            .get("misbehave")
            .and_then(guest_support::Json::as_str)
            .map(str::to_owned)
            .ok_or_else(|| error(7, "misbehave: config has no string \"misbehave\"".into()))
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
        fn configure(req: wit::Request) -> Result<wit::IpConfig, t::PluginError> {
            let mode = mode_of(&req.invocation.config)?;
            match mode.as_str() {
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
                "code-112" => Err(error(
                    112,
                    "Wasm plugin contrail-ipam.wasm exceeded its time limit of 1000 ms".into(),
                )),
                "code-max" => Err(error(u32::MAX, "misbehave: code 4294967295".into())),
                "code-201" => Err(error(201, "misbehave: a code of its own".into())),
                "forge-log" => {
                    host::log(
                        Level::Info,
                        "innocent\n2026-01-01T00:00:00Z ERROR forged line \x1b[31mred\x1b[0m",
                    );
                    Err(t::PluginError {
                        code: 7,
                        msg: "bad\nERROR forged \x1b[2J".into(),
                        details: "d\r\nforged".into(),
                    })
                }
                "log-flood" => {
                    let line = "x".repeat(1 << 20);
                    for _ in 0..100_000 {
                        host::log(Level::Info, &line);
                    }
                    Ok(ok_answer())
                }
                "many-ips" => Ok(wit::IpConfig {
                    ips: (0..100_000u32)
                        .map(|i| wit::IpAddress {
                            address: format!(
                                "10.{}.{}.{}/8",
                                (i >> 16) & 255,
                                (i >> 8) & 255,
                                i & 255
                            ),
                            gateway: None,
                        })
                        .collect(),
                    ..ok_answer()
                }),
                "huge" => {
                    let mut a = ok_answer();
                    a.dns.search = vec!["x".repeat(1000); 20_500];
                    Ok(a)
                }
                "gw-outside" => Ok(wit::IpConfig {
                    ips: vec![wit::IpAddress {
                        address: "10.1.2.3/24".into(),
                        gateway: Some("192.168.9.1".into()),
                    }],
                    routes: vec![wit::Route {
                        dst: "0.0.0.0/0".into(),
                        gw: Some("192.168.9.1".into()),
                    }],
                    ..ok_answer()
                }),
                "hashmap" => {
                    let m: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
                    std::hint::black_box(&m);
                    Ok(ok_answer())
                }
                "ok" => Ok(ok_answer()),
                other => Err(error(7, format!("misbehave: unknown mode \"{other}\""))),
            }
        }
    }

    impl wd::Guest for Misbehave {
        fn translate(req: wd::DelegateRequest) -> Result<wd::DelegateAnswer, t::PluginError> {
            let mode = mode_of(&req.invocation.config)?;
            let answer = |ips: Vec<&str>, mac: Option<&str>| wd::DelegateAnswer {
                ips: Some(ips.into_iter().map(Into::into).collect()),
                mac: mac.map(Into::into),
                labels: None,
            };
            match mode.as_str() {
                "ok" => Ok(answer(vec!["10.5.0.9"], None)),
                "many-ips" => Ok(answer(vec!["10.5.0.9"; 17], None)),
                "bad-mac" => Ok(answer(vec![], Some("01:00:5e:00:00:01"))),
                "bad-ip" => Ok(answer(vec!["0.0.0.0"], None)),
                "forge-log" => {
                    host::log(
                        Level::Warn,
                        "innocent\n2026-01-01T00:00:00Z ERROR forged line \x1b[31mred\x1b[0m",
                    );
                    Ok(answer(vec!["10.5.0.9"], None))
                }
                "secrets" => Err(t::PluginError {
                    code: 7,
                    msg: "misbehave: what I was given is in details".into(),
                    details: format!(
                        "config={} delegate={} plugin-config={:?}",
                        req.invocation.config, req.delegate, req.invocation.plugin_config
                    ),
                }),
                other => Err(error(7, format!("misbehave: unknown mode \"{other}\""))),
            }
        }
    }

    impl wc::Guest for Misbehave {
        fn translate(req: wc::TranslateRequest) -> Result<wc::ContrailRequest, t::PluginError> {
            let mode = mode_of(&req.invocation.config)?;
            let mut r = wc::ContrailRequest {
                domain: None,
                project: None,
                network: Some(vec!["blue".into()]),
                subnets: Vec::new(),
                ip: None,
                floating_ips: Vec::new(),
                security_groups: Vec::new(),
                isolation: None,
                other: Vec::new(),
            };
            match mode.as_str() {
                "ok" => Ok(r),
                "bad-fq" => {
                    r.network = Some(vec!["a".into(), "b".into()]);
                    Ok(r)
                }
                other => Err(error(7, format!("misbehave: unknown mode \"{other}\""))),
            }
        }
    }
}
