//! Where each runtime secret lives and how it is rotated: a file in the state directory
//! (generated once, 0600, kept across restarts) unless the config names a file of the operator's
//! own, which is then only read — and refused if other users can read it.
//!
//! Each secret has its `SecretId` in the server crate and one arm in [`file`]; loading, rotation and `azbroker env` then handle them like the others.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use azbroker_core::Secret;
use azbroker_server::admin::RotateOutcome;
use azbroker_server::{AppState, RuntimeSecrets, SecretId};

use crate::config::Config;
use crate::daemon::state;

/// Where one secret is kept.
pub struct SecretFile {
    pub path: PathBuf,
    /// Named in the config (the operator's file: read, never written).
    pub configured: bool,
}

/// The file of secret `id` under `config`.
pub fn file(config: &Config, id: SecretId) -> SecretFile {
    let configured = match id {
        SecretId::IdentityHeader => config.server.identity_header_file.clone(),
        SecretId::MsiSecret => config.server.dialects.msi_secret_file.clone(),
        SecretId::NativeKey => config.server.dialects.native_key_file.clone(),
    };
    match configured {
        Some(path) => SecretFile { path, configured: true },
        None => SecretFile { path: config.server.state_dir.join(id.name()), configured: false },
    }
}

/// The current value of `id`: read, or generated on first use.
pub fn load(config: &Config, id: SecretId) -> Result<Secret> {
    let f = file(config, id);
    if f.configured {
        state::read_secret_file(&f.path)
    } else {
        state::ensure_private_dir(&config.server.state_dir)?;
        state::load_or_create_secret(&f.path)
    }
}

/// Every runtime secret, for the daemon at start.
pub fn load_all(config: &Config) -> Result<RuntimeSecrets> {
    let mut values = Vec::new();
    for id in SecretId::ALL {
        values.push((*id, load(config, *id)?));
    }
    Ok(RuntimeSecrets::new(values))
}

/// New values for every secret (generated ones are replaced; configured files are re-read, so
/// rotating those is: change the file, then rotate), stored first and then installed, the old
/// values staying valid for `grace`.
pub fn rotate(config: &Config, app: &AppState, grace: Duration) -> Result<RotateOutcome> {
    let mut outcome = RotateOutcome { rotated: vec![], unchanged: vec![], grace_secs: grace.as_secs() };
    for id in SecretId::ALL {
        let f = file(config, *id);
        let next = if f.configured {
            state::read_secret_file(&f.path)?
        } else {
            let next = Secret::new(state::random_token());
            state::write_private(&f.path, next.expose().as_bytes())?;
            next
        };
        let name = id.name().to_owned();
        if app.rotate_secret(*id, next, grace) {
            outcome.rotated.push(name)
        } else {
            outcome.unchanged.push(name)
        }
    }
    tracing::info!(rotated = ?outcome.rotated, grace_secs = outcome.grace_secs, "runtime secrets rotated");
    Ok(outcome)
}
