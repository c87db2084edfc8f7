//! The [`RedirectListener`] seam through which the upstream crate receives a browser's loopback
//! redirect (a browser sign-in) without importing an HTTP server. What the admin API carries
//! about logins (flows, their states, tenants) is in [`crate::admin_api`].
//!
//! Nothing here ever holds a token or a refresh token.

use std::collections::HashMap;

use crate::source::BoxFuture;

/// The query parameters a browser brought to the loopback redirect (`code`, `state`, or `error`,
/// `error_description`).
pub type CallbackParams = HashMap<String, String>;

/// A bound loopback redirect: the URI to register with the authorize request, and the first
/// callback that arrives. Dropping `callback` closes the listener.
pub struct Redirect {
    pub redirect_uri: String,
    pub callback: BoxFuture<'static, Result<CallbackParams, String>>,
}

/// Binds loopback redirect listeners for browser sign-ins (implemented by the server crate).
pub trait RedirectListener: Send + Sync + 'static {
    fn listen(&self) -> BoxFuture<'static, Result<Redirect, String>>;
}
