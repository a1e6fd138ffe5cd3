//! Marathon: REST lists, the SSE event bus (`/v2/events`) and their models. Supported:
//! Marathon 1.4 and later (see `docs/manager.md`); older versions have no pods and answer 404
//! on `/v2/pods/::status`, which reads as "no pods".

pub mod client;
pub mod model;
pub mod sse;

pub use client::{
    EventStream, HttpMarathon, HttpMarathonConfig, Listing, MarathonApi, MarathonAuth,
    MarathonError,
};
pub use model::{Event, TaskView};
