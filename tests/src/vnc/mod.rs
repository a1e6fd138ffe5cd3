//! VNC config API stand-in (shared/contracts/vnc-api.md).
