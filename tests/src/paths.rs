//! Where tests find build outputs that cargo does not hand them directly.

use std::path::PathBuf;

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `tests/fixtures/`: payloads and transcripts copied into the repository (see its README).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The cargo target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Directory holding the `.wasm` plugins built by `make wasm`
/// (`cargo build --profile wasm-release --target wasm32-wasip2 -p contrail-ipam -p mesos-delegate ...`).
/// Overridable with `CONTRAIL_WASM_DIR`.
pub fn wasm_dir() -> PathBuf {
    std::env::var_os("CONTRAIL_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("wasm32-wasip2").join("wasm-release"))
}

/// Path of a built plugin, e.g. `wasm_plugin("mesos_delegate")`. Panics with the command to
/// run when it is missing, so a test never silently skips.
pub fn wasm_plugin(stem: &str) -> PathBuf {
    let p = wasm_dir().join(format!("{stem}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: run `make wasm` first",
        p.display()
    );
    p
}

/// Debian's reference CNI plugins.
pub const REFERENCE_CNI_DIR: &str = "/usr/lib/cni";

/// The CNI host binary a test execs: `built` (the test's own build,
/// `env!("CARGO_BIN_EXE_contrail-cni-plugin")`, which [`cni_host!`](crate::cni_host) passes),
/// unless `CONTRAIL_TEST_HOST_BIN` names another build. `make test-shipped` runs the host's
/// tests that way against the static musl build that ships (`make host`), with its plugin
/// compiler beside it as an install has it.
pub fn cni_host(built: &str) -> PathBuf {
    std::env::var_os("CONTRAIL_TEST_HOST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(built))
}

/// [`paths::cni_host`](crate::paths::cni_host) for the calling test crate's own
/// `contrail-cni-plugin` (the `env!` expands where the macro is used).
#[macro_export]
macro_rules! cni_host {
    () => {
        $crate::paths::cni_host(env!("CARGO_BIN_EXE_contrail-cni-plugin"))
    };
}
