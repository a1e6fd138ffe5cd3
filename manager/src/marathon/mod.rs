//! Marathon: REST lists, the SSE event bus (`cni-mesos-marathon.md` §3) and their models.

pub mod client;
pub mod model;
pub mod sse;

pub use client::{EventStream, HttpMarathon, HttpMarathonConfig, MarathonApi, MarathonError};
pub use model::{Event, TaskView};
