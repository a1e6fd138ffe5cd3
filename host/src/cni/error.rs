//! The CNI error: `{"cniVersion","code","msg","details"}` printed on stdout with a non-zero exit.
//!
//! Codes 0-99 are the spec's (1-7, 11, 50, 51); 100 and above are ours (docs/DESIGN.md).

use serde_json::{Map, Value, json};

/// 1: incompatible CNI version.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// 2: unsupported field in the network configuration (message names key and value).
pub const UNSUPPORTED_FIELD: u32 = 2;
/// 4: invalid necessary environment variables (message names them).
pub const INVALID_ENV: u32 = 4;
/// 5: I/O failure.
pub const IO_FAILURE: u32 = 5;
/// 6: failed to decode content.
pub const DECODE_FAILURE: u32 = 6;
/// 7: invalid network config.
pub const INVALID_CONFIG: u32 = 7;
/// 11: try again later.
pub const TRY_AGAIN_LATER: u32 = 11;
/// 50: plugin not available (cannot service ADD).
pub const NOT_AVAILABLE: u32 = 50;

/// 100: internal error.
pub const INTERNAL: u32 = 100;
/// 101: delegate plugin not found in CNI_PATH / failed to run.
pub const DELEGATE_EXEC: u32 = 101;
/// 102: delegate plugin returned a plugin-specific error (100+; its error is in `details`) or
/// garbage. A delegate's spec code (below 100) is passed through instead.
pub const DELEGATE_FAILED: u32 = 102;
/// 110: Wasm plugin could not be loaded / compiled / is not a valid component for its world.
pub const WASM_LOAD: u32 = 110;
/// 111: Wasm plugin trapped.
pub const WASM_TRAP: u32 = 111;
/// 112: Wasm plugin exceeded its time limit.
pub const WASM_TIMEOUT: u32 = 112;
/// 113: Wasm plugin exceeded its memory limit.
pub const WASM_MEMORY: u32 = 113;
/// 114: Wasm plugin answered something malformed.
pub const WASM_MALFORMED: u32 = 114;
/// 120: vRouter agent error (non-404 failure).
pub const AGENT: u32 = 120;
/// 121: netlink / netns failure.
pub const NETLINK: u32 = 121;
/// 122: port file I/O failure.
pub const PORT_FILE: u32 = 122;
/// 123: manager (attachment API) error.
pub const MANAGER: u32 = 123;
/// 124: port mapping (nftables) failure, or a host port another container already maps.
pub const PORT_MAPPING: u32 = 124;
/// 200-299: codes a Wasm plugin may use for errors of its own (wit/types.wit).
pub const PLUGIN_CODES: std::ops::RangeInclusive<u32> = 200..=299;
/// 299: a Wasm plugin returned a code it may not use (0, the host's 1xx, ...); the code it
/// returned is in `details`.
pub const PLUGIN_CODE_OTHER: u32 = 299;

/// A CNI error. `details` is empty when there is nothing more to say (then it is left out of the
/// JSON, as Go's `types.Error` does with `omitempty`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {code}: {msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The spec's JSON form. `cni_version` is the config's version (or our newest when the
    /// config could not be read).
    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut m = Map::new();
        m.insert("cniVersion".into(), json!(cni_version));
        m.insert("code".into(), json!(self.code));
        m.insert("msg".into(), json!(self.msg));
        if !self.details.is_empty() {
            m.insert("details".into(), json!(self.details));
        }
        Value::Object(m)
    }

    /// Reads an error object another plugin printed (a delegate's stdout). `None` when the
    /// value is not shaped like a CNI error (no numeric `code`).
    pub fn from_json(v: &Value) -> Option<Self> {
        let obj = v.as_object()?;
        let code = obj.get("code")?.as_u64()?;
        let msg = obj.get("msg").and_then(Value::as_str).unwrap_or_default();
        let details = obj
            .get("details")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Some(CniError {
            code: u32::try_from(code).unwrap_or(u32::MAX),
            msg: msg.to_owned(),
            details: details.to_owned(),
        })
    }
}

impl From<std::io::Error> for CniError {
    fn from(e: std::io::Error) -> Self {
        CniError::new(IO_FAILURE, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_spec() {
        let e = CniError::new(INVALID_ENV, "required env variables [CNI_NETNS] missing");
        assert_eq!(
            serde_json::to_string(&e.to_json("0.2.0")).unwrap(),
            r#"{"cniVersion":"0.2.0","code":4,"msg":"required env variables [CNI_NETNS] missing"}"#
        );
        let e = e.with_details("more");
        assert_eq!(e.to_json("1.1.0")["details"], "more");
    }

    #[test]
    fn reads_a_delegates_error() {
        let v: Value =
            serde_json::from_str(r#"{"cniVersion":"0.4.0","code":7,"msg":"bad","details":"x"}"#)
                .unwrap();
        assert_eq!(
            CniError::from_json(&v),
            Some(CniError::new(7, "bad").with_details("x"))
        );
        assert_eq!(CniError::from_json(&serde_json::json!({"ip4": {}})), None);
    }
}
