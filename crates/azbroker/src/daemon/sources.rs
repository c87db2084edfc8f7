//! Turns the configuration into what the engine and the server run on: one token source per
//! login, one engine binding per profile (workspaces included), and the selection directory.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use azbroker_core::select::ProfileSelectors;
use azbroker_core::{
    AccessToken, BoxFuture, CacheKey, Directory, FetchRequest, ProfileBinding, ProfileName, TokenSource,
    UpstreamError,
};
use azbroker_entra::{
    AzureCliSource, Credential, EntraClient, HttpSettings, ManagedIdentitySource, ServicePrincipalSource,
    UserLogin, UserLogins,
};
use url::Url;

use crate::config::{Config, LoginKind};

/// The upstream client for a config, optionally pointed at a different authority host.
pub fn entra_client(config: &Config, authority_override: Option<&Url>) -> Result<EntraClient> {
    let host = authority_override.unwrap_or(&config.cloud.authority_host).clone();
    let mut settings = HttpSettings::new(host);
    settings.ca_file = config.cloud.ca_file.clone();
    EntraClient::new(settings).context("cannot set up the Entra ID client")
}

/// The `user` logins of a config, for [`UserLogins::set_logins`].
pub fn user_logins(config: &Config) -> Vec<UserLogin> {
    config
        .logins
        .values()
        .filter_map(|l| match &l.kind {
            LoginKind::User { client_id } => Some(UserLogin {
                name: l.name.to_string(),
                client_id: client_id.clone(),
                authority_tenant: l.tenant.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// One engine binding per profile, sharing one source per login. A login whose source cannot
/// be built (a managed identity on a host without one) serves its profiles an error saying so.
pub fn bindings(config: &Config, client: &EntraClient, users: &Arc<UserLogins>) -> Vec<ProfileBinding> {
    let mut sources: HashMap<&ProfileName, Arc<dyn TokenSource>> = HashMap::new();
    for login in config.logins.values() {
        let source: Arc<dyn TokenSource> = match &login.kind {
            LoginKind::ManagedIdentity { identity, endpoint } => {
                match ManagedIdentitySource::new(identity.clone(), endpoint.clone()) {
                    Ok(source) => Arc::new(source),
                    Err(why) => {
                        tracing::error!(login = %login.name, error = %why, "cannot use the managed identity");
                        Arc::new(Unusable { kind: "managed-identity", why })
                    }
                }
            }
            LoginKind::ServicePrincipal { client_id, secret } => {
                Arc::new(ServicePrincipalSource::new(client.clone(), client_id.clone(), secret.clone()))
            }
            LoginKind::Certificate { client_id, certificate_file, send_chain } => {
                let credential =
                    Credential::Certificate { path: certificate_file.clone(), send_chain: *send_chain };
                Arc::new(ServicePrincipalSource::with_credential(
                    client.clone(),
                    client_id.clone(),
                    credential,
                ))
            }
            LoginKind::WorkloadIdentity { client_id, token_file } => {
                let credential = Credential::FederatedTokenFile(token_file.clone());
                Arc::new(ServicePrincipalSource::with_credential(
                    client.clone(),
                    client_id.clone(),
                    credential,
                ))
            }
            LoginKind::AzureCli { command, timeout } => {
                Arc::new(AzureCliSource::new(command.clone(), *timeout))
            }
            LoginKind::User { .. } => users.source(login.name.as_str()),
        };
        sources.insert(&login.name, source);
    }
    config
        .profiles
        .values()
        .filter_map(|p| {
            let source = sources.get(&p.login)?.clone();
            let login = config.logins.get(&p.login)?;
            // Tokens depend on the login (name and settings) and the tenant only: a profile
            // renamed, re-aliased or given other access rules keeps its cache.
            let key = CacheKey::new(&login.name, &login.fingerprint, &p.tenant);
            let bounds = p.access.cache_bounds(config.server.hardening.cache);
            let binding =
                ProfileBinding::new(p.name.clone(), p.tenant.clone(), source, p.prefetch.clone(), key);
            Some(binding.with_cache(bounds, p.access.resources.as_deref()))
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

/// A source that could not be set up: every fetch reports why (a definitive error, so it is not
/// retried in a loop).
struct Unusable {
    kind: &'static str,
    why: String,
}

impl TokenSource for Unusable {
    fn fetch<'a>(&'a self, _: &'a FetchRequest) -> BoxFuture<'a, Result<AccessToken, UpstreamError>> {
        let err = UpstreamError::Config(format!("the {} login cannot be used: {}", self.kind, self.why));
        Box::pin(async move { Err(err) })
    }

    fn kind(&self) -> &'static str {
        self.kind
    }
}
