//! contrail-mesos-manager: the master-side daemon that turns container attachments (from
//! `contrail-cni-plugin`, `docs/attachment-api.md`) into Contrail VNC objects, watches Marathon
//! to learn which tasks run, and reconciles VNC with what runs. See `docs/manager.md`.

pub mod app;
pub mod auth;
pub mod cache;
pub mod config;
pub mod config_check;
pub mod health;
pub mod inventory;
pub mod isolation;
pub mod leader;
pub mod marathon;
pub mod mesos;
pub mod metrics;
pub mod reconcile;
pub mod server;
pub mod servers;
pub mod service;
pub mod signals;
pub mod vip;
pub mod vnc;
pub mod watcher;
