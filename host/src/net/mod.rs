//! Network namespaces and netlink plumbing. Owned by the Contrail-path work.
