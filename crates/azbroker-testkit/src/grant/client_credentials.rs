//! The `client_credentials` grant (PROTOCOLS.md §12.4): a confidential client asks for an app
//! token for exactly one resource's `/.default` scope; no refresh token is returned.

use axum::response::Response;

use super::TokenRequest;
use crate::client_auth;
use crate::error::EntraError;
use crate::issue;
use crate::scope::default_scope_resource;
use crate::tenant::printable;

pub(crate) const GRANT_TYPE: &str = "client_credentials";

pub(crate) async fn handle(req: &TokenRequest<'_>) -> Result<Response, EntraError> {
    let client = client_auth::authenticate(req.state, req.tenant, req.params, req.headers)?;
    let resource = default_scope_resource(req.params.get("scope"))?;
    if req.state.is_resource_denied(&resource) {
        return Err(EntraError::bad_request(
            "invalid_resource",
            500_011,
            format!(
                "The resource principal named {} was not found in the tenant named {}. This can happen if \
                 the application has not been installed by the administrator of the tenant or consented to by \
                 any user in the tenant. You might have sent your authentication request to the wrong tenant.",
                printable(&resource),
                printable(&req.tenant.path)
            ),
        ));
    }
    issue::app_token(req.state, req.tenant, &client, &resource).await
}
