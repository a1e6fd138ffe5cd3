//! vRouter agent port-IPC stand-in (shared/contracts/contrail.md §1).
