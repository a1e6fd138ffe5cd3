//! Marathon stand-in (shared/contracts/cni-mesos-marathon.md §3).
