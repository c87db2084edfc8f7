//! Minting access tokens: the v1.0 app-token claim set, RS256 signing (off the runtime threads)
//! and the token endpoint's success body. Every grant that issues a token ends here, so the
//! `issued_tokens` counter and the claim shapes stay in one place.

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uuid::Uuid;

use crate::client_auth::Client;
use crate::error::EntraError;
use crate::jwt::b64;
use crate::state::State;
use crate::tenant::Tenant;
use crate::time::unix_now;

/// Namespace for the deterministic service-principal object ids (`oid`/`sub`).
const OID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_2a4e_8c3b_4f0a_9e57_b1c2_d3e4_f5a6);

/// An app-only access token for `resource`, issued to `client` in `tenant`.
pub(crate) async fn app_token(
    state: &Arc<State>,
    tenant: &Tenant,
    client: &Client,
    resource: &str,
) -> Result<Response, EntraError> {
    let lifetime = state.token_lifetime().as_secs();
    let now = unix_now();
    let tid = tenant.tid.clone();
    let oid = Uuid::new_v5(&OID_NAMESPACE, format!("{tid}/{}", client.id.to_ascii_lowercase()).as_bytes())
        .to_string();
    let claims = AppClaims {
        aud: resource.to_owned(),
        iss: format!("{}/{tid}/v2.0", state.authority),
        iat: now,
        nbf: now,
        exp: now.saturating_add(lifetime),
        appid: client.id.clone(),
        appidacr: client.method.appidacr(),
        azp: client.id.clone(),
        idp: format!("https://sts.windows.net/{tid}/"),
        idtyp: "app",
        oid: oid.clone(),
        sub: oid,
        tid,
        uti: b64(Uuid::new_v4().as_bytes()),
        jti: Uuid::new_v4().to_string(),
        ver: "1.0",
    };
    let signer = Arc::clone(state);
    let signed = tokio::task::spawn_blocking(move || signer.key.sign(&claims)).await;
    let access_token = match signed {
        Ok(Ok(token)) => token,
        Ok(Err(reason)) => return Err(server_error(&reason)),
        Err(join) => return Err(server_error(&join.to_string())),
    };
    state.count_issued();
    tracing::debug!(tenant = %tenant.path, client_id = %client.id, resource, "issued access token");
    let body =
        TokenBody { token_type: "Bearer", expires_in: lifetime, ext_expires_in: lifetime, access_token };
    let mut response = (StatusCode::OK, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, no-cache"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

fn server_error(reason: &str) -> EntraError {
    tracing::debug!(reason, "token signing failed");
    EntraError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        90_033,
        "A transient error has occurred. Please try again.",
    )
}

/// Claims of a v1.0 app-only token, in the order Entra writes them.
#[derive(Serialize)]
struct AppClaims {
    aud: String,
    iss: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    appid: String,
    appidacr: &'static str,
    azp: String,
    idp: String,
    idtyp: &'static str,
    oid: String,
    sub: String,
    tid: String,
    uti: String,
    jti: String,
    ver: &'static str,
}

/// The client-credentials success body (PROTOCOLS.md §12.4), numbers as JSON numbers.
#[derive(Serialize)]
struct TokenBody {
    token_type: &'static str,
    expires_in: u64,
    ext_expires_in: u64,
    access_token: String,
}

/// Namespace for the deterministic `uti`-like session ids of user tokens.
const SID_NAMESPACE: Uuid = Uuid::from_u128(0x9a4c_1e7b_2d3f_4c5a_8b6e_0f1a_2b3c_4d5e);

/// What a delegated grant hands back besides the access token.
pub(crate) struct UserIssue<'a> {
    pub user: &'a crate::users::User,
    /// The tenant the token is for (`tid`).
    pub tid: &'a str,
    pub client_id: &'a str,
    pub resource: &'a str,
    /// The scopes as requested, echoed in `scope`.
    pub scope: &'a str,
    pub refresh_token: Option<String>,
    pub client_info: bool,
}

/// The delegated success body (PROTOCOLS.md §12.2): a user access token for `resource`, an id
/// token, a refresh token when one was issued, and `client_info` when asked for.
pub(crate) async fn user_tokens(state: &Arc<State>, issue: UserIssue<'_>) -> Result<Response, EntraError> {
    let lifetime = state.token_lifetime().as_secs();
    let now = unix_now();
    let user = issue.user;
    let oid = user.oid_in(issue.tid);
    let iss = format!("{}/{}/v2.0", state.authority, issue.tid);
    let access = serde_json::json!({
        "aud": issue.resource,
        "iss": iss,
        "iat": now, "nbf": now, "exp": now.saturating_add(lifetime),
        "acr": "1",
        "amr": ["pwd", "mfa"],
        "appid": issue.client_id,
        "appidacr": "0",
        "family_name": "", "given_name": user.display_name,
        "idtyp": "user",
        "name": user.display_name,
        "oid": oid,
        "scp": "user_impersonation",
        "sid": Uuid::new_v5(&SID_NAMESPACE, format!("{oid}/{now}").as_bytes()).to_string(),
        "sub": oid,
        "tid": issue.tid,
        "unique_name": user.username,
        "upn": user.username,
        "uti": b64(Uuid::new_v4().as_bytes()),
        "ver": "1.0",
    });
    let id_token = serde_json::json!({
        "aud": issue.client_id,
        "iss": iss,
        "iat": now, "nbf": now, "exp": now.saturating_add(lifetime),
        "name": user.display_name,
        "oid": oid,
        "preferred_username": user.username,
        "sub": oid,
        "tid": issue.tid,
        "ver": "2.0",
    });
    let signer = Arc::clone(state);
    let signed = tokio::task::spawn_blocking(move || {
        Ok::<_, String>((signer.key.sign(&access)?, signer.key.sign(&id_token)?))
    })
    .await;
    let (access_token, id_token) = match signed {
        Ok(Ok(pair)) => pair,
        Ok(Err(reason)) => return Err(server_error(&reason)),
        Err(join) => return Err(server_error(&join.to_string())),
    };
    state.count_issued();
    tracing::debug!(
        tid = issue.tid,
        client_id = issue.client_id,
        resource = issue.resource,
        "issued user token"
    );
    let mut body = serde_json::json!({
        "token_type": "Bearer",
        "scope": issue.scope,
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
        "id_token": id_token,
    });
    if let Some(rt) = issue.refresh_token {
        body["refresh_token"] = rt.into();
    }
    if issue.client_info {
        let info = serde_json::json!({"uid": user.oid_in(&user.home_tid), "utid": user.home_tid});
        body["client_info"] = b64(info.to_string().as_bytes()).into();
    }
    let mut response = (StatusCode::OK, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, no-cache"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}
