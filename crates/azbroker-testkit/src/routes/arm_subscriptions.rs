//! A fake of Azure Resource Manager's subscription list (`GET /subscriptions?api-version=...`),
//! enough for `az login --identity` to finish: the caller's bearer token must be one this
//! authority minted (signature and expiry checked), and the answer lists one subscription in the
//! token's tenant, with the fields az reads. A missing or invalid token gets ARM's 401 with
//! `WWW-Authenticate: Bearer authorization_uri=...`. No faults apply here.

use std::sync::Arc;

use axum::Json;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::State;

/// `GET /subscriptions`.
pub(crate) async fn list(Extract(state): Extract<Arc<State>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    let claims = match bearer.map(|t| state.key.verify(t)) {
        Some(Ok(c)) => c,
        Some(Err(_)) => return unauthorized(&state, "invalid_token", "The access token is invalid."),
        None => {
            return unauthorized(
                &state,
                "invalid_token",
                "The authentication failed because of missing 'Authorization' header.",
            );
        }
    };
    let Some(tid) = claims.get("tid").and_then(|t| t.as_str()) else {
        return unauthorized(&state, "invalid_token", "The access token has no tenant.");
    };
    let sub = subscription_id(tid);
    Json(json!({
        "value": [{
            "id": format!("/subscriptions/{sub}"),
            "authorizationSource": "RoleBased",
            "managedByTenants": [],
            "subscriptionId": sub,
            "tenantId": tid,
            "displayName": format!("Fake subscription of tenant {tid}"),
            "state": "Enabled",
            "subscriptionPolicies": {
                "locationPlacementId": "Public_2014-09-01",
                "quotaId": "PayAsYouGo_2014-09-01",
                "spendingLimit": "Off"
            }
        }],
        "count": {"type": "Total", "value": 1}
    }))
    .into_response()
}

/// The one subscription the fake lists for tenant `tid` (stable, derived from `tid`).
pub fn subscription_id(tid: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("subscription:{tid}").as_bytes()).to_string()
}

fn unauthorized(state: &State, error: &str, description: &str) -> Response {
    let challenge = format!(
        "Bearer authorization_uri=\"{}/common\", error=\"{error}\", error_description=\"{description}\"",
        state.authority
    );
    let body = json!({"error": {"code": "AuthenticationFailed", "message": description}});
    let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}
