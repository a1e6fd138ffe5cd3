//! contrail-mesos-manager library.
