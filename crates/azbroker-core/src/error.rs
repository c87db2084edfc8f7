//! What can go wrong upstream, typed so the engine and dialects can act on it.
//!
//! Messages carry Entra's error code and description (never a secret or token); dialects decide
//! the status code and body shape.

use std::time::Duration;

/// An upstream failure as a `TokenSource` reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No answer in time.
    #[error("upstream timed out")]
    Timeout,
    /// Could not connect, TLS failed, connection reset.
    #[error("upstream unreachable: {0}")]
    Network(String),
    /// 429 from upstream.
    #[error("upstream throttled the request")]
    Throttled { retry_after: Option<Duration> },
    /// 5xx or `temporarily_unavailable`.
    #[error("upstream unavailable (HTTP {status})")]
    Unavailable { status: u16, retry_after: Option<Duration> },
    /// `invalid_grant`: the credential (refresh token, secret, assertion) is no longer accepted.
    #[error("credential rejected (invalid_grant): {description}")]
    InvalidGrant { codes: Vec<u32>, description: String },
    /// `interaction_required` (MFA, conditional access): a person must sign in again.
    #[error("sign-in required (interaction_required): {description}")]
    InteractionRequired { codes: Vec<u32>, description: String },
    /// `invalid_client`, `unauthorized_client`: wrong client id or secret.
    #[error("client rejected ({error}): {description}")]
    InvalidClient { error: String, codes: Vec<u32>, description: String },
    /// `invalid_resource`, `invalid_scope`: the resource is unknown to the tenant.
    #[error("resource rejected ({error}): {description}")]
    InvalidResource { error: String, codes: Vec<u32>, description: String },
    /// Any other OAuth error from the token endpoint (tenant not found, bad request).
    #[error("upstream refused ({error}): {description}")]
    Refused { error: String, codes: Vec<u32>, description: String },
    /// Upstream answered something we cannot parse.
    #[error("upstream sent an unusable response: {0}")]
    BadResponse(String),
    /// The login cannot produce tokens until someone signs in (`azbroker login ...`).
    #[error("{}", login_required_message(.login, .tenant.as_deref(), .reason))]
    LoginRequired { login: String, tenant: Option<String>, reason: String },
    /// The source is misconfigured locally (unreadable secret file, bad certificate).
    #[error("login misconfigured: {0}")]
    Config(String),
}

/// The message clients see: what is wrong and the exact command that fixes it.
fn login_required_message(login: &str, tenant: Option<&str>, reason: &str) -> String {
    let command = login_command(login, tenant);
    match tenant {
        Some(t) => format!("login '{login}' needs sign-in for tenant {t} ({reason}); run `{command}`"),
        None => format!("login '{login}' needs sign-in ({reason}); run `{command}`"),
    }
}

/// The command that signs `login` in (at `tenant`, when only that tenant needs it).
pub fn login_command(login: &str, tenant: Option<&str>) -> String {
    match tenant {
        Some(t) => format!("azbroker login --login {login} --tenant {t}"),
        None => format!("azbroker login --login {login}"),
    }
}

impl UpstreamError {
    /// Errors that retrying soon will not fix: cached briefly so a broken login does not hammer
    /// upstream, and reported to clients as 4xx.
    pub fn is_definitive(&self) -> bool {
        matches!(
            self,
            Self::InvalidGrant { .. }
                | Self::InteractionRequired { .. }
                | Self::InvalidClient { .. }
                | Self::InvalidResource { .. }
                | Self::Refused { .. }
                | Self::LoginRequired { .. }
                | Self::Config(_)
        )
    }

    /// The wait upstream asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after } | Self::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A stable, low-cardinality label for logs, metrics and status.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Network(_) => "network",
            Self::Throttled { .. } => "throttled",
            Self::Unavailable { .. } => "unavailable",
            Self::InvalidGrant { .. } => "invalid_grant",
            Self::InteractionRequired { .. } => "interaction_required",
            Self::InvalidClient { .. } => "invalid_client",
            Self::InvalidResource { .. } => "invalid_resource",
            Self::Refused { .. } => "refused",
            Self::BadResponse(_) => "bad_response",
            Self::LoginRequired { .. } => "login_required",
            Self::Config(_) => "config",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_required_names_the_command() {
        let e = UpstreamError::LoginRequired {
            login: "me".into(),
            tenant: Some("fabrikam.onmicrosoft.com".into()),
            reason: "AADSTS50076: MFA required".into(),
        };
        let s = e.to_string();
        assert!(s.contains("run `azbroker login --login me --tenant fabrikam.onmicrosoft.com`"), "{s}");
        assert!(s.contains("AADSTS50076"));
        let e =
            UpstreamError::LoginRequired { login: "me".into(), tenant: None, reason: "not signed in".into() };
        assert!(e.to_string().ends_with("run `azbroker login --login me`"));
        assert!(e.is_definitive());
    }
}
