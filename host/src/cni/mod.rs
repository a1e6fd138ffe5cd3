//! CNI protocol pieces: errors, versions, results, network config, and the skel.

pub mod config;
pub mod error;
pub mod result;
pub mod skel;
pub mod version;

pub use config::NetConf;
pub use error::CniError;
pub use result::CniResult;
pub use skel::{CmdArgs, Command};
pub use version::CniVersion;
