//! STATUS (CNI SPEC.md "STATUS: Check plugin status"): whether an ADD could succeed now, which
//! needs the node's vRouter agent to answer.

use std::time::Duration;

use super::agent::Agent;
use super::config::ContrailConfig;
use super::error::{Error, Result, code};
use super::poll::request_timeout;

/// STATUS: 50 when the agent does not answer.
pub fn status(cfg: &ContrailConfig, agent: &dyn Agent) -> Result<()> {
    agent
        .ping(request_timeout(cfg).min(Duration::from_secs(2)))
        .map_err(|e| {
            Error::new(
                code::NOT_AVAILABLE,
                format!(
                    "vRouter agent at {} does not respond: {e}",
                    agent.endpoint()
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contrail::fakes::FakeAgent;

    #[test]
    fn status_is_50_when_the_agent_does_not_answer() {
        let e = status(&ContrailConfig::default(), &FakeAgent::default()).unwrap_err();
        assert_eq!(e.code, 50);
        assert!(e.msg.contains("fake:9091"));
    }
}
