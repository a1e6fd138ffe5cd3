//! The Contrail path (issue 3). Owned by the Contrail-path work.
