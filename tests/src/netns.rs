//! Network namespaces for tests: unique names, always removed (Drop), even when the test fails.
//! Only what the test created is ever touched.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// True when running as root. Tests that need root call [`require_root`].
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns false (and prints why) when the test cannot run here. When
/// `CONTRAIL_REQUIRE_ROOT_TESTS=1` (set by `make test` under CI) a missing root is a failure,
/// so a skipped privileged test can never pass silently in CI.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CONTRAIL_REQUIRE_ROOT_TESTS").as_deref() == Ok("1") {
        panic!("{test} needs root (CONTRAIL_REQUIRE_ROOT_TESTS=1)");
    }
    eprintln!("SKIPPED {test}: needs root (network namespaces)");
    false
}

/// A named network namespace under /run/netns, deleted on drop.
pub struct TestNetns {
    name: String,
}

impl TestNetns {
    /// Creates `ct<pid><n><tag>` (kept short and unique per process and call).
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("ct{}x{}{}", std::process::id(), n, tag);
        // With lo up, so loopback traffic inside works like in a real container.
        crate::mesos_agent::create_netns(&name)
            .unwrap_or_else(|e| panic!("ip netns add {name}: {e}"));
        TestNetns { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted handle, as a runtime passes it in `CNI_NETNS`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `ip -n <ns> <args...>` and returns stdout; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// JSON view of the links inside (`ip -j link show`).
    pub fn links(&self) -> serde_json::Value {
        serde_json::from_str(&self.ip(&["-j", "link", "show"])).expect("ip -j link")
    }

    /// JSON view of the addresses inside (`ip -j addr show`).
    pub fn addrs(&self) -> serde_json::Value {
        serde_json::from_str(&self.ip(&["-j", "addr", "show"])).expect("ip -j addr")
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        crate::mesos_agent::delete_netns(&self.name);
    }
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
