//! A sliver of Azure Resource Manager on the same server (PROTOCOLS.md §12.7):
//!
//! * `GET /subscriptions/{id}`: without `Authorization`, 401 with the `WWW-Authenticate: Bearer
//!   authorization_uri="…/{tenantId}"` challenge that reveals a subscription's tenant; with a
//!   token from the right tenant, the subscription; from another tenant,
//!   `InvalidAuthenticationTokenTenant`;
//! * `GET /tenants`: the tenants the bearer token's user can reach (`value[]` with `tenantId`,
//!   `displayName`, `defaultDomain`, ...), as the Azure CLI reads it.
//!
//! Tokens must be this authority's own, for an ARM audience (this server's URL or the public
//! cloud's ARM App ID URIs). Faults never apply here.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::state::State;
use crate::tenant::printable;

/// Audiences accepted as "a token for ARM" besides this server's own URL.
const ARM_AUDIENCES: [&str; 2] = ["https://management.azure.com", "https://management.core.windows.net"];

pub(crate) async fn subscription(
    Extract(state): Extract<Arc<State>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(tid) = state.subscription_tenant(&id) else {
        return arm_error(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            &format!("The subscription '{}' could not be found.", printable(&id)),
        );
    };
    let claims = match bearer(&state, &headers) {
        Auth::Missing => return challenge(&state, &tid),
        Auth::Invalid(why) => return arm_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", &why),
        Auth::Valid(claims) => claims,
    };
    if claims["tid"] != tid.as_str() {
        return arm_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationTokenTenant",
            &format!(
                "The access token is from the wrong issuer '{}/{}/'. It must match the tenant '{}/{tid}/' associated \
                 with this subscription. Please use the authority (URL) '{}/{tid}' to get the token.",
                state.authority,
                claims["tid"].as_str().unwrap_or("?"),
                state.authority,
                state.authority
            ),
        );
    }
    Json(json!({
        "id": format!("/subscriptions/{id}"),
        "subscriptionId": id,
        "tenantId": tid,
        "displayName": format!("Subscription {}", id.get(..8).unwrap_or(&id)),
        "state": "Enabled",
    }))
    .into_response()
}

pub(crate) async fn tenants(Extract(state): Extract<Arc<State>>, headers: HeaderMap) -> Response {
    let claims = match bearer(&state, &headers) {
        Auth::Missing => {
            return arm_error(
                StatusCode::UNAUTHORIZED,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            );
        }
        Auth::Invalid(why) => return arm_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", &why),
        Auth::Valid(claims) => claims,
    };
    let (oid, tid) = (claims["oid"].as_str().unwrap_or(""), claims["tid"].as_str().unwrap_or(""));
    let user = state.users().by_oid(oid, tid).cloned();
    let value: Vec<Value> = user
        .map(|u| {
            u.tenants
                .iter()
                .map(|(tenant_id, name)| {
                    let domain =
                        if name.contains('.') { name.clone() } else { format!("{tenant_id}.invalid") };
                    let label = domain.split('.').next().unwrap_or("tenant");
                    let display: String = label
                        .chars()
                        .take(1)
                        .flat_map(char::to_uppercase)
                        .chain(label.chars().skip(1))
                        .collect();
                    json!({
                        "id": format!("/tenants/{tenant_id}"),
                        "tenantId": tenant_id,
                        "countryCode": "US",
                        "displayName": display,
                        "domains": [domain],
                        "tenantCategory": if *tenant_id == u.home_tid { "Home" } else { "ProjectedBy" },
                        "defaultDomain": domain,
                        "tenantType": "AAD",
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Json(json!({ "value": value })).into_response()
}

enum Auth {
    Missing,
    Invalid(String),
    Valid(Value),
}

fn bearer(state: &State, headers: &HeaderMap) -> Auth {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Auth::Missing };
    let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
        return Auth::Invalid("The 'Authorization' header is not a Bearer token.".into());
    };
    match state.key.verify(token.trim()) {
        Ok(claims) => {
            let aud = claims["aud"].as_str().unwrap_or("").trim_end_matches('/').to_owned();
            if aud == state.authority || ARM_AUDIENCES.contains(&aud.as_str()) {
                Auth::Valid(claims)
            } else {
                Auth::Invalid(format!("The access token has an invalid audience '{}'.", printable(&aud)))
            }
        }
        Err(why) => Auth::Invalid(format!("The access token is invalid: {why}.")),
    }
}

fn challenge(state: &State, tid: &str) -> Response {
    let mut response = arm_error(
        StatusCode::UNAUTHORIZED,
        "AuthenticationFailed",
        "Authentication failed. The 'Authorization' header is missing.",
    );
    let value = format!(
        "Bearer authorization_uri=\"{}/{tid}\", error=\"invalid_token\", error_description=\"The authentication failed because of missing 'Authorization' header.\"",
        state.authority
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

fn arm_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}
