//! The seam between the engine and upstream: anything that can turn (tenant, resource) into an
//! access token. Implementations live in `azbroker-entra` (and fakes in tests).

use std::future::Future;
use std::pin::Pin;

use crate::error::UpstreamError;
use crate::names::{Resource, TenantId};
use crate::token::AccessToken;

/// A boxed, sendable future (keeps `TokenSource` object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One upstream token request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchRequest {
    pub tenant: TenantId,
    pub resource: Resource,
}

/// A credential source. Implementations must bound every call with a timeout and must not cache:
/// caching, single-flight and refresh are the engine's job.
pub trait TokenSource: Send + Sync + 'static {
    /// Obtains a fresh token from upstream.
    fn fetch<'a>(&'a self, request: &'a FetchRequest) -> BoxFuture<'a, Result<AccessToken, UpstreamError>>;

    /// The application (client) id tokens are issued to, if known: echoed as `client_id` by the
    /// IMDS and App Service dialects.
    fn client_id(&self) -> Option<&str> {
        None
    }

    /// The login kind, for status (`service-principal`, `user`, ...).
    fn kind(&self) -> &'static str;
}
