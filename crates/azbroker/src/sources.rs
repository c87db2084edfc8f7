//! Turns the configuration into what the engine and the server run on: one token source per
//! login, one engine binding per profile, and the selection directory.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use azbroker_core::select::ProfileSelectors;
use azbroker_core::{Directory, ProfileBinding, ProfileName, TokenSource};
use azbroker_entra::{EntraClient, HttpSettings, ServicePrincipalSource};
use url::Url;

use crate::config::{Config, LoginKind};

/// The upstream client for a config, optionally pointed at a different authority host.
pub fn entra_client(config: &Config, authority_override: Option<&Url>) -> Result<EntraClient> {
    let host = authority_override.unwrap_or(&config.cloud.authority_host).clone();
    let mut settings = HttpSettings::new(host);
    settings.ca_file = config.cloud.ca_file.clone();
    EntraClient::new(settings).context("cannot set up the Entra ID client")
}

/// One engine binding per profile, sharing one source per login.
pub fn bindings(config: &Config, client: &EntraClient) -> Vec<ProfileBinding> {
    let mut sources: HashMap<&ProfileName, Arc<dyn TokenSource>> = HashMap::new();
    for login in config.logins.values() {
        let source: Arc<dyn TokenSource> = match &login.kind {
            LoginKind::ServicePrincipal { client_id, secret } => {
                Arc::new(ServicePrincipalSource::new(client.clone(), client_id.clone(), secret.clone()))
            }
        };
        sources.insert(&login.name, source);
    }
    config
        .profiles
        .values()
        .filter_map(|p| {
            let source = sources.get(&p.login)?.clone();
            Some(ProfileBinding {
                name: p.name.clone(),
                tenant: p.tenant.clone(),
                source,
                prefetch: p.prefetch.clone(),
                fingerprint: p.fingerprint.clone(),
            })
        })
        .collect()
}

/// The selection table, with the per-user default profiles (uid → profile).
pub fn directory(config: &Config, user_defaults: HashMap<u32, ProfileName>) -> Result<Directory> {
    let profiles = config.profiles.values().map(|p| {
        (
            p.name.clone(),
            ProfileSelectors { aliases: p.aliases.clone(), accept_any_client_id: p.accept_any_client_id },
        )
    });
    Directory::new(profiles, config.server.default_profile.clone(), user_defaults)
        .context("invalid profile aliases")
}
