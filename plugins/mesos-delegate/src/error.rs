//! The plugin error record, mirroring `contrail:cni-plugin/types.plugin-error`.

#[allow(unused_imports)]
use guest_support::prelude::*;

use core::fmt;

/// CNI spec error codes this plugin uses.
pub const UNSUPPORTED_FIELD: u32 = 2;
pub const DECODE_FAILED: u32 = 6;
pub const INVALID_CONFIG: u32 = 7;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl PluginError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        PluginError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Code 7: the network configuration (which includes the labels) cannot be used.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(INVALID_CONFIG, msg)
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code {}: {}", self.code, self.msg)
    }
}
