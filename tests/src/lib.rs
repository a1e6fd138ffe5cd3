//! Test support shared by every integration test in the workspace, and faithful stand-ins for
//! the peers we cannot run here (vRouter agent, VNC API server, Marathon + Mesos agent). Each
//! stand-in is built from the peer's public sources and from recorded real exchanges
//! (`tests/fixtures/`), never from our own clients.

pub mod attach_standin;
pub mod login;
pub mod marathon;
pub mod mesos_agent;
pub mod netns;
pub mod paths;
pub mod proxy;
pub mod tls_proxy;
pub mod vnc;
pub mod vrouter_agent;
pub mod zookeeper;
