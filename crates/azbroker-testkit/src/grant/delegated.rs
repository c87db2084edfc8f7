//! What the delegated grants (device code, authorization code, refresh token) share: which
//! resource a scope list asks for, which tenant a user's token is issued in, the per-tenant
//! interaction demand, and issuing the token set with a new refresh token.

use std::collections::HashSet;

use axum::response::Response;

use super::TokenRequest;
use crate::error::EntraError;
use crate::issue::{self, UserIssue};
use crate::tenant::{Tenant, TenantKind, printable};
use crate::users::{RefreshRecord, User};

/// Microsoft Graph, which Entra issues for when only OIDC scopes (or bare Graph scopes) are asked.
const GRAPH: &str = "00000003-0000-0000-c000-000000000000";
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "offline_access", "email"];

/// The resource of a delegated scope list: the first non-OIDC scope, `/.default` or a named
/// permission (`https://graph.microsoft.com/User.Read`) stripped.
pub(crate) fn resource_of(scope: &str) -> String {
    let Some(first) =
        scope.split_ascii_whitespace().find(|s| !OIDC_SCOPES.contains(&s.to_ascii_lowercase().as_str()))
    else {
        return GRAPH.to_owned();
    };
    if let Some(resource) = first.strip_suffix("/.default") {
        return resource.to_owned();
    }
    match first.rfind('/') {
        Some(i) if first[..i].contains("://") || !first[..i].is_empty() => first[..i].to_owned(),
        _ => GRAPH.to_owned(),
    }
}

/// The tenant a user's token is issued in: the home tenant for `organizations`/`common`, else
/// the named one, which the user must be able to reach (AADSTS50020 otherwise).
pub(crate) fn user_tid(tenant: &Tenant, user: &User, client_id: &str) -> Result<String, EntraError> {
    if tenant.kind == TenantKind::MultiTenant {
        return Ok(user.home_tid.clone());
    }
    if user.can_reach(&tenant.tid) {
        return Ok(tenant.tid.clone());
    }
    Err(EntraError::bad_request(
        "invalid_grant",
        50_020,
        format!(
            "User account '{}' from identity provider 'https://sts.windows.net/{}/' does not exist in tenant '{}' \
             and cannot access the application '{}' in that tenant. The account needs to be added as an external \
             user in the tenant first.",
            printable(&user.username),
            user.home_tid,
            printable(&tenant.path),
            printable(client_id)
        ),
    ))
}

/// The error a tenant that demands interaction answers a silent redemption with.
pub(crate) fn interaction_error(code: u32, resource: &str) -> EntraError {
    match code {
        50_076 => EntraError::bad_request(
            "invalid_grant",
            50_076,
            format!(
                "Due to a configuration change made by your administrator, or because you moved to a new \
                 location, you must use multi-factor authentication to access '{}'.",
                printable(resource)
            ),
        )
        .with_suberror("basic_action"),
        53_003 => EntraError::bad_request(
            "invalid_grant",
            53_003,
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        )
        .with_suberror("message_only"),
        other => EntraError::bad_request(
            "interaction_required",
            other,
            "The request requires user interaction: the user must sign in again at this tenant.",
        ),
    }
}

/// Issues the token set for `user` in `tid` and, when `offline_access` was asked (or this is a
/// refresh), a new refresh token carrying `interactive_tids` forward.
pub(crate) async fn issue_for_user(
    req: &TokenRequest<'_>,
    user: &User,
    tid: &str,
    client_id: &str,
    scope: &str,
    interactive_tids: HashSet<String>,
    always_refresh: bool,
) -> Result<Response, EntraError> {
    let resource = resource_of(scope);
    if req.state.is_resource_denied(&resource) {
        return Err(EntraError::bad_request(
            "invalid_resource",
            500_011,
            format!(
                "The resource principal named {} was not found in the tenant named {}.",
                printable(&resource),
                tid
            ),
        ));
    }
    let wants_refresh =
        always_refresh || scope.split_ascii_whitespace().any(|s| s.eq_ignore_ascii_case("offline_access"));
    let refresh_token = wants_refresh.then(|| {
        req.state.users().issue_refresh(RefreshRecord {
            username: user.username.clone(),
            client_id: client_id.to_owned(),
            interactive_tids,
            revoked: false,
        })
    });
    issue::user_tokens(
        req.state,
        UserIssue {
            user,
            tid,
            client_id,
            resource: &resource,
            scope,
            refresh_token,
            client_info: req.params.get("client_info") == Some("1"),
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_of_scope_lists() {
        assert_eq!(
            resource_of("https://management.core.windows.net//.default offline_access"),
            "https://management.core.windows.net/"
        );
        assert_eq!(
            resource_of("offline_access openid https://vault.azure.net/.default"),
            "https://vault.azure.net"
        );
        assert_eq!(resource_of("https://graph.microsoft.com/User.Read"), "https://graph.microsoft.com");
        assert_eq!(resource_of("openid profile offline_access"), GRAPH);
        assert_eq!(resource_of("User.Read"), GRAPH);
    }
}
