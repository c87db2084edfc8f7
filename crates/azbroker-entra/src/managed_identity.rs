//! The `managed-identity` source: tokens from the real managed-identity endpoint of the Azure
//! host the broker itself runs on (VM/VMSS IMDS, App Service, Container Apps), through
//! `azure_identity`'s `ManagedIdentityCredential`.
//!
//! `azure_identity` chooses the endpoint from the process environment when the credential is
//! built, so the binary scrubs the variables the broker exports for its own clients before
//! (pitfall 5 of DEPENDENCIES.md); see `azbroker::scrub`. An `endpoint` override sends every
//! request to another base URL (a fake IMDS in tests, an IMDS proxy) by rewriting the URL in a
//! custom transport, because the IMDS address is hard-coded in `azure_identity`.

use std::sync::Arc;
use std::time::Duration;

use azbroker_core::{AccessToken, BoxFuture, FetchRequest, Secret, TokenSource, UpstreamError};
use azure_core::credentials::TokenCredential;
use azure_core::http::{AsyncRawResponse, ClientOptions, HttpClient, Request, Transport, Url};
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};

use crate::error_map::truncate_chars;

/// Which identity of the host to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    SystemAssigned,
    ClientId(String),
    ObjectId(String),
    ResourceId(String),
}

/// A managed identity of the host.
pub struct ManagedIdentitySource {
    credential: Arc<ManagedIdentityCredential>,
    client_id: Option<String>,
}

impl std::fmt::Debug for ManagedIdentitySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedIdentitySource").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

impl ManagedIdentitySource {
    /// Builds the credential (reading the managed-identity variables of the environment now).
    pub fn new(identity: Identity, endpoint: Option<Url>) -> Result<Self, String> {
        let client_id = match &identity {
            Identity::ClientId(id) => Some(id.clone()),
            _ => None,
        };
        let user_assigned_id = match identity {
            Identity::SystemAssigned => None,
            Identity::ClientId(v) => Some(UserAssignedId::ClientId(v)),
            Identity::ObjectId(v) => Some(UserAssignedId::ObjectId(v)),
            Identity::ResourceId(v) => Some(UserAssignedId::ResourceId(v)),
        };
        let mut client_options = ClientOptions::default();
        if let Some(to) = endpoint {
            let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
            if crate::cloud::is_loopback_url(&to) {
                builder = builder.no_proxy();
            }
            let inner = builder.build().map_err(|e| e.to_string())?;
            client_options.transport = Some(Transport::new(Arc::new(Rewrite { inner, to })));
        }
        let options = ManagedIdentityCredentialOptions { user_assigned_id, client_options };
        let credential = ManagedIdentityCredential::new(Some(options)).map_err(|e| e.to_string())?;
        Ok(Self { credential, client_id })
    }
}

impl TokenSource for ManagedIdentitySource {
    fn fetch<'a>(&'a self, request: &'a FetchRequest) -> BoxFuture<'a, Result<AccessToken, UpstreamError>> {
        Box::pin(async move {
            let scope = request.resource.scope();
            let token = self.credential.get_token(&[scope.as_str()], None).await.map_err(map_error)?;
            let now = azure_core::time::OffsetDateTime::now_utc();
            let secs = (token.expires_on - now).whole_seconds();
            if secs <= 0 {
                return Err(UpstreamError::BadResponse(
                    "the managed-identity token has already expired".into(),
                ));
            }
            let lifetime = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
            Ok(AccessToken::new(Secret::new(token.token.secret()), lifetime))
        })
    }

    fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    fn kind(&self) -> &'static str {
        "managed-identity"
    }
}

fn map_error(e: azure_core::Error) -> UpstreamError {
    let text = truncate_chars(e.to_string().lines().next().unwrap_or("").to_owned(), 400);
    match e.http_status().map(u16::from) {
        Some(429) => UpstreamError::Throttled { retry_after: None },
        Some(s) if s >= 500 => UpstreamError::Unavailable { status: s, retry_after: None },
        Some(_) => {
            UpstreamError::Refused { error: "managed_identity".into(), codes: vec![], description: text }
        }
        None if matches!(e.kind(), azure_core::error::ErrorKind::Io) => UpstreamError::Network(text),
        None => UpstreamError::Refused { error: "managed_identity".into(), codes: vec![], description: text },
    }
}

/// Sends every request to `to`'s scheme, host and port (path and query kept).
#[derive(Debug)]
struct Rewrite {
    inner: reqwest::Client,
    to: Url,
}

#[async_trait::async_trait]
impl HttpClient for Rewrite {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let mut request = request.clone();
        let url = request.url_mut();
        // Setting a scheme, host and port taken from a parsed URL cannot fail for http(s).
        let _ = url.set_scheme(self.to.scheme());
        let _ = url.set_host(self.to.host_str());
        let _ = url.set_port(self.to.port_or_known_default());
        self.inner.execute_request(&request).await
    }
}
