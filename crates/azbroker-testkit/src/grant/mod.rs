//! Grant dispatch for the token endpoint: one module per OAuth grant type, chosen by the
//! `grant_type` parameter. Adding a grant means adding a module with a `GRANT_TYPE` constant and
//! a `handle` function, and one arm in [`dispatch`].
//!
//! Grants see a request that already passed the endpoint's common checks (method, body size,
//! faults, tenant syntax and deny-list); they authenticate the client, validate their own
//! parameters and end in `issue` or an [`EntraError`].

mod authorization_code;
mod client_credentials;
mod delegated;
mod device_code;
mod refresh_token;

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::Response;

use crate::error::EntraError;
use crate::form::Params;
use crate::state::State;
use crate::tenant::{Tenant, printable};

/// Everything a grant needs to answer one token request.
pub(crate) struct TokenRequest<'a> {
    pub state: &'a Arc<State>,
    pub tenant: &'a Tenant,
    pub params: &'a Params,
    pub headers: &'a HeaderMap,
}

/// Routes the request to its grant; unknown or missing grant types get Entra's errors.
pub(crate) async fn dispatch(req: &TokenRequest<'_>) -> Result<Response, EntraError> {
    match req.params.require("grant_type")? {
        client_credentials::GRANT_TYPE => client_credentials::handle(req).await,
        device_code::GRANT_TYPE => device_code::handle(req).await,
        refresh_token::GRANT_TYPE => refresh_token::handle(req).await,
        authorization_code::GRANT_TYPE => authorization_code::handle(req).await,
        other => Err(EntraError::bad_request(
            "unsupported_grant_type",
            70_003,
            format!("The app requested an unsupported grant type '{}'.", printable(other)),
        )),
    }
}
