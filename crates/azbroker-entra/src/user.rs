//! User logins (`kind = "user"`): one person's refresh token, kept in the [`LoginStore`], redeemed
//! in whichever tenant a profile names (PROTOCOLS.md §12.3), with the rotated refresh token
//! persisted after every redemption.
//!
//! When Entra says a person must act — `interaction_required`, MFA or conditional access
//! (AADSTS50076, 50079, 53003 …) — only that tenant is marked as needing sign-in; when it
//! rejects the refresh token itself (`invalid_grant`), the whole login is. Marked logins and
//! tenants answer [`UpstreamError::LoginRequired`] (which names the command to run) without
//! calling Entra again, so a broken login causes no retry storm; a completed sign-in clears the
//! marks at once ([`UserLogins`] then tells the binary, which resets the engine's backoff).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use azbroker_core::admin_api::{LoginState, LoginStatus, TenantNeedingSignIn};
use azbroker_core::login::RedirectListener;
use azbroker_core::{AccessToken, BoxFuture, FetchRequest, Secret, TenantId, TokenSource, UpstreamError};

use crate::arm::ArmClient;
use crate::client::EntraClient;
use crate::flows::Flows;
use crate::response::TokenResponse;
use crate::store::{Account, LoginStore};

/// The Azure CLI's public client id, the default for user logins.
pub const AZURE_CLI_CLIENT_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// AADSTS codes of `invalid_grant` answers that concern one tenant only (the user does not
/// exist there, or must be added as a guest), not the refresh token.
const TENANT_SCOPED_INVALID_GRANT: [u32; 3] = [50_020, 50_034, 90_072];

/// A configured user login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserLogin {
    pub name: String,
    pub client_id: String,
    /// Where sign-ins happen by default (`organizations`, or a tenant).
    pub authority_tenant: TenantId,
}

/// What changed about a login, for the binary to act on (reset backoff, drop caches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginEvent {
    SignedIn,
    SignedOut,
}

type Listener = Box<dyn Fn(&str, LoginEvent) + Send + Sync>;

/// Every user login of the daemon: their configuration, the store, running sign-in flows.
pub struct UserLogins {
    pub(crate) client: EntraClient,
    pub(crate) store: Arc<LoginStore>,
    pub(crate) arm: ArmClient,
    pub(crate) redirect: Arc<dyn RedirectListener>,
    logins: RwLock<HashMap<String, UserLogin>>,
    pub(crate) flows: Flows,
    listener: Mutex<Option<Listener>>,
    /// Last transient error per login, for status (not persisted).
    last_error: Mutex<HashMap<String, String>>,
}

impl UserLogins {
    pub fn new(
        client: EntraClient,
        store: Arc<LoginStore>,
        arm: ArmClient,
        redirect: Arc<dyn RedirectListener>,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            store,
            arm,
            redirect,
            logins: RwLock::new(HashMap::new()),
            flows: Flows::default(),
            listener: Mutex::new(None),
            last_error: Mutex::new(HashMap::new()),
        })
    }

    /// Replaces the configured user logins (start-up and config reload).
    pub fn set_logins(&self, logins: Vec<UserLogin>) {
        *self.logins.write().unwrap_or_else(PoisonError::into_inner) =
            logins.into_iter().map(|l| (l.name.clone(), l)).collect();
    }

    /// Called after every sign-in and sign-out.
    pub fn on_event(&self, listener: impl Fn(&str, LoginEvent) + Send + Sync + 'static) {
        *self.listener.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(listener));
    }

    /// The token source of one login.
    pub fn source(self: &Arc<Self>, login: &str) -> Arc<UserSource> {
        Arc::new(UserSource { logins: self.clone(), login: login.to_owned() })
    }

    pub fn store(&self) -> &LoginStore {
        &self.store
    }

    pub(crate) fn login(&self, name: &str) -> Option<UserLogin> {
        self.logins.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// Every configured user login's state, by name.
    pub fn statuses(&self) -> Vec<LoginStatus> {
        let mut logins: Vec<UserLogin> =
            self.logins.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        logins.sort_by(|a, b| a.name.cmp(&b.name));
        let errors = self.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone();
        logins
            .into_iter()
            .map(|l| {
                let stored = self.store.get(&l.name).filter(|s| s.refresh_token.is_some());
                let (state, reason) = match &stored {
                    None => (LoginState::NotSignedIn, Some("not signed in yet".to_owned())),
                    Some(s) if s.needs_sign_in.is_some() => {
                        (LoginState::NeedsSignIn, s.needs_sign_in.clone())
                    }
                    Some(_) => (LoginState::SignedIn, None),
                };
                LoginStatus {
                    name: l.name.clone(),
                    kind: "user".into(),
                    tenant: l.authority_tenant.to_string(),
                    state,
                    account: stored.as_ref().and_then(|s| s.account.as_ref()).map(|a| a.username.clone()),
                    command: reason.as_ref().map(|_| azbroker_core::error::login_command(&l.name, None)),
                    reason,
                    tenants_needing_sign_in: stored
                        .as_ref()
                        .map(|s| {
                            s.tenants
                                .iter()
                                .map(|(t, why)| TenantNeedingSignIn {
                                    tenant: t.clone(),
                                    reason: why.clone(),
                                    command: azbroker_core::error::login_command(&l.name, Some(t)),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    last_error: errors.get(&l.name).cloned(),
                }
            })
            .collect()
    }

    /// Stores a completed sign-in and clears every "needs sign-in" mark of the login.
    pub(crate) async fn complete_sign_in(
        &self,
        login: &UserLogin,
        response: TokenResponse,
    ) -> Result<String, UpstreamError> {
        let Some(refresh_token) = response.refresh_token.clone() else {
            return Err(UpstreamError::BadResponse("the sign-in returned no refresh token".into()));
        };
        let account = response.id_token.as_ref().and_then(|t| account_of(t.expose())).unwrap_or(Account {
            username: "unknown user".into(),
            oid: None,
            home_tenant: None,
        });
        let username = account.username.clone();
        self.store
            .update(&login.name, |s| {
                s.client_id = login.client_id.clone();
                s.refresh_token = Some(refresh_token);
                s.account = Some(account);
                s.signed_in_at = azbroker_core::unix_now();
                s.needs_sign_in = None;
                s.tenants.clear();
            })
            .await
            .map_err(|e| UpstreamError::Config(e.to_string()))?;
        self.last_error.lock().unwrap_or_else(PoisonError::into_inner).remove(&login.name);
        tracing::info!(login = %login.name, account = %username, "signed in");
        self.emit(&login.name, LoginEvent::SignedIn);
        Ok(username)
    }

    /// Forgets a login's refresh token and state; true if it had any.
    pub(crate) async fn sign_out(&self, login: &str) -> Result<bool, UpstreamError> {
        let removed = self.store.remove(login).await.map_err(|e| UpstreamError::Config(e.to_string()))?;
        self.emit(login, LoginEvent::SignedOut);
        Ok(removed)
    }

    /// Redeems the login's refresh token in `tenant` for `scope`, keeping the rotated refresh
    /// token and marking what Entra says needs a person.
    pub(crate) async fn redeem(
        &self,
        login: &str,
        tenant: &TenantId,
        scope: &str,
    ) -> Result<TokenResponse, UpstreamError> {
        let required = |tenant: Option<&TenantId>, reason: String| UpstreamError::LoginRequired {
            login: login.to_owned(),
            tenant: tenant.map(ToString::to_string),
            reason,
        };
        let Some(config) = self.login(login) else {
            return Err(UpstreamError::Config(format!("login '{login}' is not a configured user login")));
        };
        let stored = self.store.get(login);
        let Some(rt) = stored.as_ref().and_then(|s| s.refresh_token.clone()) else {
            return Err(required(None, "not signed in yet".into()));
        };
        let stored = stored.unwrap_or_default();
        if let Some(reason) = stored.needs_sign_in {
            return Err(required(None, reason));
        }
        if let Some(reason) = stored.tenants.get(tenant.as_str()) {
            return Err(required(Some(tenant), reason.clone()));
        }
        match self.client.refresh_token(tenant, &config.client_id, &rt, scope).await {
            Ok(response) => {
                if let Some(next) = response.refresh_token.clone() {
                    // Rotated refresh tokens are kept every time (the old one may stop working),
                    // unless a sign-in or sign-out replaced the token while this request ran.
                    let rotated = self
                        .store
                        .update_existing(login, |s| {
                            let current = holds(s, &rt);
                            if current {
                                s.refresh_token = Some(next);
                            }
                            current
                        })
                        .await;
                    if let Err(e) = rotated {
                        tracing::error!(login, error = %e, "cannot persist the rotated refresh token");
                    }
                }
                self.last_error.lock().unwrap_or_else(PoisonError::into_inner).remove(login);
                Ok(response)
            }
            Err(UpstreamError::InteractionRequired { description, .. }) => {
                self.mark(login, Some(tenant), &description, &rt).await;
                Err(required(Some(tenant), description))
            }
            Err(UpstreamError::InvalidGrant { codes, description })
                if codes.iter().any(|c| TENANT_SCOPED_INVALID_GRANT.contains(c)) =>
            {
                self.mark(login, Some(tenant), &description, &rt).await;
                Err(required(Some(tenant), description))
            }
            Err(UpstreamError::InvalidGrant { description, .. }) => {
                self.mark(login, None, &description, &rt).await;
                Err(required(None, description))
            }
            Err(other) => {
                self.last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(login.to_owned(), other.to_string());
                Err(other)
            }
        }
    }

    /// Marks the login (or one tenant) as needing sign-in — unless the refresh token that failed
    /// is no longer the stored one (a sign-in completed while the request ran).
    async fn mark(&self, login: &str, tenant: Option<&TenantId>, reason: &str, used: &Secret) {
        tracing::warn!(
            login,
            tenant = tenant.map(TenantId::as_str),
            reason,
            "login needs an interactive sign-in"
        );
        let result = self
            .store
            .update_existing(login, |s| {
                if !holds(s, used) {
                    return false;
                }
                match tenant {
                    Some(t) => {
                        s.tenants.insert(t.to_string(), reason.to_owned());
                    }
                    None => s.needs_sign_in = Some(reason.to_owned()),
                }
                true
            })
            .await;
        if let Err(e) = result {
            tracing::error!(login, error = %e, "cannot persist the login state");
        }
    }

    fn emit(&self, login: &str, event: LoginEvent) {
        if let Some(listener) = self.listener.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            listener(login, event);
        }
    }
}

/// The `user` [`TokenSource`]: one login's refresh token redeemed in the request's tenant.
pub struct UserSource {
    logins: Arc<UserLogins>,
    login: String,
}

impl TokenSource for UserSource {
    fn fetch<'a>(&'a self, request: &'a FetchRequest) -> BoxFuture<'a, Result<AccessToken, UpstreamError>> {
        Box::pin(async move {
            let scope = format!("{} offline_access", request.resource.scope());
            let response = self.logins.redeem(&self.login, &request.tenant, &scope).await?;
            Ok(response.into_access_token())
        })
    }

    fn client_id(&self) -> Option<&str> {
        None
    }

    fn kind(&self) -> &'static str {
        "user"
    }
}

/// Whether the stored refresh token is still `token`.
fn holds(stored: &crate::store::StoredLogin, token: &Secret) -> bool {
    stored.refresh_token.as_ref().is_some_and(|t| t.matches(token.expose().as_bytes()))
}

/// Who signed in, from the id token's claims (not verified: it came straight from the token
/// endpoint over TLS, and is used for display only).
fn account_of(id_token: &str) -> Option<Account> {
    use base64::Engine as _;
    let claims = id_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let text = |k: &str| v.get(k).and_then(serde_json::Value::as_str).map(str::to_owned);
    Some(Account {
        username: text("preferred_username").or_else(|| text("upn")).or_else(|| text("name"))?,
        oid: text("oid"),
        home_tenant: text("tid"),
    })
}

/// A random base64url string of `bytes` random bytes (PKCE verifiers, `state`).
pub(crate) fn random_string(bytes: usize) -> Secret {
    Secret::random(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_from_an_id_token() {
        use base64::Engine as _;
        let enc =
            |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let token = format!(
            "{}.{}.sig",
            enc(serde_json::json!({"alg": "RS256"})),
            enc(serde_json::json!({"preferred_username": "alice@contoso.example", "oid": "o", "tid": "t"}))
        );
        let a = account_of(&token).unwrap();
        assert_eq!(
            (a.username.as_str(), a.oid.as_deref(), a.home_tenant.as_deref()),
            ("alice@contoso.example", Some("o"), Some("t"))
        );
        assert!(account_of("garbage").is_none());
        assert_eq!(random_string(32).expose().len(), 43);
    }
}
