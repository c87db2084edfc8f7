//! Metadata endpoints: the JWKS (`discovery/v2.0/keys`, and the v1 `discovery/keys`), the
//! OpenID configuration (`v2.0/.well-known/openid-configuration`) and MSAL's instance discovery
//! (`common/discovery/instance`). All URLs they advertise point at this server. Faults never
//! apply here.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State as Extract};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::EntraError;
use crate::state::State;
use crate::tenant::Tenant;

/// `GET /{tenant}/discovery/v2.0/keys`: keys with the v2 `issuer` template.
pub(crate) async fn keys_v2(
    Extract(state): Extract<Arc<State>>,
    tenant: Result<Path<String>, PathRejection>,
) -> Response {
    with_tenant(&state, tenant, |state, tenant| {
        let issuer = format!("{}/{}/v2.0", state.authority, tenant.issuer_tid());
        Json(json!({ "keys": [state.key.jwk(Some(issuer))] })).into_response()
    })
}

/// `GET /{tenant}/discovery/keys`: the v1 document, same key without `issuer`.
pub(crate) async fn keys_v1(
    Extract(state): Extract<Arc<State>>,
    tenant: Result<Path<String>, PathRejection>,
) -> Response {
    with_tenant(&state, tenant, |state, _| Json(json!({ "keys": [state.key.jwk(None)] })).into_response())
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub(crate) async fn openid_configuration(
    Extract(state): Extract<Arc<State>>,
    tenant: Result<Path<String>, PathRejection>,
) -> Response {
    with_tenant(&state, tenant, |state, tenant| {
        let base = format!("{}/{}", state.authority, tenant.endpoint_segment());
        Json(json!({
            "issuer": format!("{}/{}/v2.0", state.authority, tenant.issuer_tid()),
            "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
            "token_endpoint": format!("{base}/oauth2/v2.0/token"),
            "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
            "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
            "jwks_uri": format!("{base}/discovery/v2.0/keys"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": [
                "sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username",
                "name", "tid", "ver", "at_hash", "c_hash", "email"
            ],
            "request_uri_parameter_supported": false,
            "tenant_region_scope": null,
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }))
        .into_response()
    })
}

/// `GET /common/discovery/instance`: MSAL's authority validation, answering that this host is
/// its own (only) alias.
pub(crate) async fn instance(Extract(state): Extract<Arc<State>>) -> Response {
    let host = state.authority.trim_start_matches("http://").to_owned();
    Json(json!({
        "tenant_discovery_endpoint": format!("{}/common/v2.0/.well-known/openid-configuration", state.authority),
        "api-version": "1.1",
        "metadata": [{ "preferred_network": host, "preferred_cache": host, "aliases": [host] }],
    }))
    .into_response()
}

/// Parses the tenant segment (Entra rejects bad syntax on metadata endpoints too) and renders.
fn with_tenant(
    state: &State,
    tenant: Result<Path<String>, PathRejection>,
    render: impl FnOnce(&State, &Tenant) -> Response,
) -> Response {
    let parsed = match tenant {
        Ok(Path(segment)) => Tenant::parse(&segment),
        Err(_) => Err(EntraError::malformed("The tenant segment of the URL is not valid UTF-8.")),
    };
    match parsed {
        Ok(tenant) => render(state, &tenant),
        Err(err) => err.into_response(&state.authority),
    }
}
