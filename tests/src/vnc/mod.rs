//! VNC config API stand-in: an in-memory server that answers as the real one (Tungsten Fabric
//! tf-controller `vnc_cfg_api_server`) did in the recorded transcripts
//! `tests/fixtures/vnc/vnc-transcript-{1,2,3}.json`: fq_name uniqueness, parents/children, refs
//! and the delete guards in upstream's order, the address allocation of `vnc_addr_mgmt.py`
//! (IPv4, IPv6, flat-subnet IPAMs), the list options (scopes, paging, counts, fields,
//! filters), the plain-text errors. `VncServer::start()` serves it on a random loopback port;
//! `VncServer::ports()` shows what a vRouter agent would learn.
//!
//! `replay_tests` replays all three transcripts and checks statuses and bodies (uuids mapped).
//! Where it still differs from the real server, and why that cannot matter to a client:
//!
//! | where | difference | why it cannot matter |
//! |---|---|---|
//! | uuids, MACs, `created` times | ours are new random ones | a client learns them from answers; the replay maps them |
//! | paged lists of a scoped list (uuid order) | which objects fill which page | the order is by uuid, which is random on any server; a client pages until `marker` is null |
//! | `*_back_refs`, lists by `back_ref_id`, the rows of an unscoped page, `Delete when ...` href lists | order | upstream orders them by uuid or not at all; no client can rely on it |
//! | `id_perms`, `perms2` | not modelled beyond a fixed shape (e.g. no `share` entry on a virtual-DNS) | RBAC is off on the recorded server and the manager never reads them |
//! | the text of a refused VN create | names a uuid upstream made for the refused object | that uuid never exists |
//! | the keep-alive stall (transcript 3, entry 208) | only with `Wire::SplitNagle` | the default answers in one write so tests are not slowed; the benchmarks use both |
//! | types and schema validation outside the transcripts | any type outside `store::TYPES` is 404; unknown properties are stored as sent | the manager and devstack use only modelled types |

pub mod alloc;
pub mod list;
pub mod server;
pub mod store;

pub use server::{PortView, VncServer, Wire};
pub use store::{Store, VncErr};

#[cfg(test)]
mod replay_tests;
