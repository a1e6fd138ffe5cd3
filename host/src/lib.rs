//! contrail-cni-plugin: see the README.
