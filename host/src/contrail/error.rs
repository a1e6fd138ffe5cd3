//! Errors of the Contrail path are the CNI's [`CniError`]; this module adds the codes'
//! short names and the conversion from the agent client's errors (netlink's are in `crate::net`).

pub use crate::cni::error::CniError as Error;

pub type Result<T> = std::result::Result<T, Error>;

pub mod code {
    pub use crate::cni::error::{
        AGENT, INTERNAL, INVALID_CONFIG, INVALID_ENV, MANAGER, NETLINK, NOT_AVAILABLE, PORT_FILE,
        PORT_MAPPING, TRY_AGAIN_LATER as TRY_AGAIN,
    };
}

/// Prefixes the message with the step that failed (`create veth: ...`), so an operator reading
/// the CNI error knows how far the ADD got.
pub fn at_step(mut e: Error, step: &str) -> Error {
    e.msg = format!("{step}: {}", e.msg);
    e
}

impl From<super::agent::AgentError> for Error {
    fn from(e: super::agent::AgentError) -> Error {
        use super::agent::AgentError as A;
        match &e {
            A::Unreachable(_) => Error::new(code::TRY_AGAIN, e.to_string()),
            // The CA bundle and the agent's certificate disagree: fixed by configuration only.
            A::Tls(_) => Error::new(code::INVALID_CONFIG, e.to_string()),
            _ => Error::new(code::AGENT, e.to_string()),
        }
    }
}
