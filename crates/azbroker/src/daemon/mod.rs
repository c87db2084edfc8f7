//! The daemon half of the binary (`azbroker serve`): the serving loop and reload (`serve`), the
//! listeners and socket activation, readiness and the config watcher, logging, the login store
//! and token sources wired to the engine, runtime secrets and state files, and what `status`
//! reports of them.
//!
//! It never prints for a user at a terminal beyond the start-up hint; commands that a user runs
//! against a running daemon live in `crate::cli`.

pub(crate) mod access;
pub(crate) mod activation;
pub(crate) mod admin_hooks;
pub(crate) mod bound_file;
pub(crate) mod keys;
pub(crate) mod link_local;
pub(crate) mod listeners;
pub(crate) mod local_authority;
pub(crate) mod logins;
pub(crate) mod owned_dir;
pub(crate) mod personal;
pub(crate) mod personal_hooks;
pub(crate) mod profile_listeners;
pub(crate) mod readiness;
pub(crate) mod runtime;
pub(crate) mod scrub;
pub(crate) mod secrets;
pub(crate) mod serve;
pub(crate) mod sources;
pub(crate) mod state;
pub(crate) mod status_info;
pub(crate) mod telemetry;
pub(crate) mod tls_identity;
pub(crate) mod trust_store;
pub(crate) mod watch;
