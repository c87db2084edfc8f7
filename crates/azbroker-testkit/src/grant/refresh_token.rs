//! The refresh-token grant (PROTOCOLS.md §12.3): one user's refresh token redeemed in any tenant
//! the user can reach, a new refresh token returned every time (the old one stays valid unless
//! rotation is set to retire it), revoked tokens answered with `invalid_grant` AADSTS50173, and
//! tenants that demand interaction answered as Entra answers MFA and conditional access.

use axum::response::Response;

use super::TokenRequest;
use super::delegated::{interaction_error, issue_for_user, resource_of, user_tid};
use crate::error::EntraError;
use crate::users::Redeem;

pub(crate) const GRANT_TYPE: &str = "refresh_token";

pub(crate) async fn handle(req: &TokenRequest<'_>) -> Result<Response, EntraError> {
    let client_id = req.params.require("client_id")?.to_owned();
    let token = req.params.require("refresh_token")?;
    let scope = req.params.get("scope").unwrap_or("openid profile offline_access").to_owned();
    let redeemed = req.state.users().redeem(token, &client_id);
    let (user, record) = match redeemed {
        Redeem::Ok(user, record) => (user, record),
        Redeem::Unknown => {
            return Err(EntraError::bad_request(
                "invalid_grant",
                9_002_313,
                "Invalid request. Request is malformed or invalid. The refresh token is not valid.",
            ));
        }
        Redeem::Revoked => {
            return Err(EntraError::bad_request(
                "invalid_grant",
                50_173,
                "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user \
                 might have changed or reset their password.",
            ));
        }
        Redeem::WrongClient => {
            return Err(EntraError::bad_request(
                "invalid_grant",
                70_000,
                "Provided grant is invalid or malformed: the refresh token was issued to another client.",
            ));
        }
    };
    let tid = user_tid(req.tenant, &user, &client_id)?;
    let demand = req.state.users().interaction_code(&tid);
    if let Some(code) = demand
        && !record.interactive_tids.contains(&tid)
    {
        return Err(interaction_error(code, &resource_of(&scope)));
    }
    req.state.users().used(token);
    issue_for_user(req, &user, &tid, &client_id, &scope, record.interactive_tids, true).await
}
