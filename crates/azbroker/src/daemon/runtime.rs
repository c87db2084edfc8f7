//! The one function that turns a validated config into the server's [`RuntimeSpec`]: user and
//! group names resolved (the access policy, per-user defaults), the selection table, one engine
//! binding per profile, the rate limit and remote-peer setting — and the config itself, kept in
//! the runtime as the daemon's view of that generation (what `status`, secret rotation and the
//! next reload read). Start and every reload go through it, and the server publishes its result
//! whole, so no part of the daemon holds a config of its own beside the runtime in force.

use std::sync::Arc;

use azbroker_entra::{EntraClient, UserLogins};
use azbroker_server::{AppState, RuntimeSpec};

use super::{access, sources};
use crate::config::Config;

/// A generation ready to publish, and what only start-up uses of it.
pub struct Generation {
    pub spec: RuntimeSpec,
    /// The group whose members may read the admin socket (bound at start only).
    pub admin_gid: Option<u32>,
    /// Names that resolved but deserve a word (logged by the caller).
    pub warnings: Vec<String>,
}

/// Builds the runtime of `config`; `Err` lists every problem (the config in force stays).
pub fn build(
    config: Arc<Config>,
    client: &EntraClient,
    users: &Arc<UserLogins>,
) -> Result<Generation, Vec<String>> {
    let resolved = access::resolve(&config)?;
    let directory =
        sources::directory(&config, resolved.user_defaults).map_err(|e| vec![format!("{e:#}")])?;
    let bindings = sources::bindings(&config, client, users).into_iter().map(Arc::new).collect();
    let spec = RuntimeSpec {
        directory,
        policy: resolved.policy,
        rate_limit: config.server.hardening.rate_limit,
        allow_remote: config.server.hardening.allow_non_loopback,
        admin_gid: resolved.admin_gid,
        bindings,
        daemon: config,
    };
    Ok(Generation { spec, admin_gid: resolved.admin_gid, warnings: resolved.warnings })
}

/// The config of the generation in force (the daemon's view kept in its runtime).
pub fn config(app: &AppState) -> Arc<Config> {
    let rt = app.runtime();
    // Every runtime the daemon publishes comes from `build`, which stores the config.
    rt.daemon_arc::<Config>().expect("the daemon's runtimes carry their config")
}
