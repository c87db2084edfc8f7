//! The authorization-code grant with PKCE: redeems a code minted by `routes::authorize` once,
//! for the same client and redirect URI, when `code_verifier` hashes (S256) to the challenge.

use std::collections::HashSet;

use aws_lc_rs::digest;
use axum::response::Response;

use super::TokenRequest;
use super::delegated::{issue_for_user, user_tid};
use crate::error::EntraError;
use crate::jwt::b64;
use crate::tenant::Tenant;

pub(crate) const GRANT_TYPE: &str = "authorization_code";

pub(crate) async fn handle(req: &TokenRequest<'_>) -> Result<Response, EntraError> {
    let client_id = req.params.require("client_id")?.to_owned();
    let code = req.params.require("code")?;
    let redirect_uri = req.params.require("redirect_uri")?;
    let verifier = req.params.require("code_verifier")?;
    let grant = req.state.users().take_auth_code(code).ok_or_else(|| {
        EntraError::bad_request(
            "invalid_grant",
            70_008,
            "The provided authorization code or refresh token has expired due to inactivity, or was already \
             redeemed. Send a new interactive authorization request for this user and resource.",
        )
    })?;
    if !grant.client_id.eq_ignore_ascii_case(&client_id) {
        return Err(EntraError::bad_request(
            "invalid_grant",
            70_000,
            "The code was issued to another client.",
        ));
    }
    if grant.redirect_uri != redirect_uri {
        return Err(EntraError::bad_request(
            "invalid_grant",
            500_117,
            "The reply uri specified in the request does not match the reply uri of the authorization request.",
        ));
    }
    if b64(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref()) != grant.challenge {
        return Err(EntraError::bad_request(
            "invalid_grant",
            501_481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
        ));
    }
    let user = req.state.users().get(&grant.username).cloned().ok_or_else(|| {
        EntraError::bad_request("invalid_grant", 50_034, "The user account does not exist in this directory.")
    })?;
    let tenant = Tenant::parse(&grant.tenant_path)?;
    let tid = user_tid(&tenant, &user, &client_id)?;
    let scope = req.params.get("scope").map_or(grant.scope.clone(), str::to_owned);
    let interactive = HashSet::from([tid.clone()]);
    issue_for_user(req, &user, &tid, &client_id, &scope, interactive, false).await
}
