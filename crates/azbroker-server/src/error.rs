//! Everything that can make a request fail, and the status-code policy shared by all dialects
//! (DESIGN.md "Status codes", PROTOCOLS.md §1 items 5–8): conditions a client cannot fix by waiting
//! are 400/401/403, real rate limiting (the per-uid rate limit, upstream throttling, a caller's
//! full share of a profile's cache) is 429, and only transient upstream trouble is 5xx.
//! `Retry-After` comes with 429 and with the 503 of a caller released after `client_wait` while
//! its upstream call goes on (clients retry 5xx; the retry is served from that call). Never 404/410, which clients retry for over a minute.
//!
//! This module decides status, error code and description; it never builds a body — each dialect
//! wraps these in its own shape. Descriptions never contain a token or secret.

use std::borrow::Cow;
use std::time::Duration;

use azbroker_core::{Denial, EngineError, NameError, SelectError, UpstreamError};
use http::StatusCode;

/// `Retry-After` when upstream throttled us without saying for how long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Longest `Retry-After` we pass on (MSAL Python caps at the same value).
const MAX_RETRY_AFTER_SECS: u64 = 3600;

/// Why a request was refused.
#[derive(Debug)]
pub(crate) enum RequestError {
    /// The peer is not on this machine.
    NotLoopback,
    /// `Host` (or the request target's authority) does not name this machine.
    BadHost,
    /// IMDS: no `Metadata: true`.
    MissingMetadata,
    /// A secret header is absent (`missing`) or wrong.
    Unauthorized {
        header: &'static str,
        missing: bool,
    },
    /// The request went through a proxy (`X-Forwarded-For`, `Forwarded`).
    Forwarded {
        header: &'static str,
    },
    TooManyParams,
    DuplicateParam(String),
    /// A `%` not followed by two hex digits, or an escape that decodes to invalid UTF-8.
    MalformedQuery,
    MissingParam(&'static str),
    InvalidResource(NameError),
    ConflictingSelectors(&'static str, &'static str),
    /// A request body that cannot be read or parsed (form or JSON).
    BadBody(&'static str),
    /// A path that could mean another path after decoding (`%2F`, `%5C`, a backslash, `..`): what it holds.
    BadPath(&'static str),
    /// A parameter with a malformed value: (name, what it must be).
    BadParam(&'static str, &'static str),
    /// Native API: scopes that do not name exactly one resource's `/.default`.
    BadScopes(&'static str),
    /// Native API: no configured profile has this tenant.
    UnknownTenant(String),
    /// This dialect cannot be served by this daemon (e.g. Arc without access to its key directory).
    Unavailable(&'static str),
    Select(SelectError),
    /// Refused by the access policy (caller, resource).
    Denied(Denial),
    /// Over the per-uid rate limit.
    RateLimited {
        retry_after_secs: u64,
    },
    Engine(EngineError),
    /// A client key refused the request, or a container listener wanted one.
    Key(crate::keys::KeyRefusal),
}

impl RequestError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::NotLoopback | Self::Denied(_) | Self::Unavailable(_) => StatusCode::FORBIDDEN,
            Self::Key(k) => k.status(),
            // A quota of this user (or of the profile's users together): the retry after
            // `Retry-After` can be served once an idle entry has made room.
            Self::RateLimited { .. } | Self::Engine(EngineError::CacheFull { .. }) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Engine(EngineError::Upstream(e)) => upstream_status(e),
            Self::Engine(EngineError::ShuttingDown | EngineError::Pending { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Engine(EngineError::UnknownProfile(_)) => StatusCode::BAD_REQUEST,
            Self::BadHost
            | Self::MissingMetadata
            | Self::Forwarded { .. }
            | Self::TooManyParams
            | Self::DuplicateParam(_)
            | Self::MalformedQuery
            | Self::MissingParam(_)
            | Self::InvalidResource(_)
            | Self::ConflictingSelectors(..)
            | Self::BadBody(_)
            | Self::BadPath(_)
            | Self::BadParam(..)
            | Self::BadScopes(_)
            | Self::UnknownTenant(_)
            | Self::Select(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The OAuth-style `error` code for dialects that have one (IMDS).
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::NotLoopback | Self::Denied(_) | Self::Unavailable(_) => "forbidden",
            Self::Key(k) if k.status() == StatusCode::UNAUTHORIZED => "unauthorized",
            Self::Key(_) => "forbidden",
            Self::RateLimited { .. } | Self::Engine(EngineError::CacheFull { .. }) => "throttled",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Engine(EngineError::Upstream(UpstreamError::InvalidResource { .. })) => "invalid_resource",
            Self::Engine(EngineError::Upstream(UpstreamError::Throttled { .. })) => "throttled",
            Self::Engine(EngineError::Upstream(e)) if !e.is_definitive() => "unknown",
            Self::Engine(EngineError::ShuttingDown | EngineError::Pending { .. }) => "unknown",
            _ => "invalid_request",
        }
    }

    /// Human-readable text naming the problem.
    pub(crate) fn description(&self) -> Cow<'static, str> {
        match self {
            Self::Key(k) => k.to_string().into(),
            Self::NotLoopback => "Only clients on this machine (loopback) are served".into(),
            Self::BadHost => {
                "The Host header must name this machine (localhost, 127.0.0.1, [::1] or 169.254.169.254)"
                    .into()
            }
            Self::MissingMetadata => "Required metadata header not specified".into(),
            Self::Unauthorized { header, missing: true } => {
                format!("Required header '{header}' is missing").into()
            }
            Self::Unauthorized { header, missing: false } => {
                format!("The '{header}' header does not match the identity header of this endpoint").into()
            }
            Self::Forwarded { header } => {
                format!("Requests carrying a '{header}' header are not accepted").into()
            }
            Self::TooManyParams => "Too many query parameters".into(),
            Self::DuplicateParam(name) => format!("Duplicate query parameter '{name}'").into(),
            Self::MalformedQuery => "The query string has a malformed percent-encoding".into(),
            Self::Denied(d) => d.to_string().into(),
            Self::RateLimited { retry_after_secs } => {
                format!("Too many token requests from this user; retry in {retry_after_secs} s").into()
            }
            Self::MissingParam(name) => format!("Required query variable '{name}' is missing").into(),
            Self::InvalidResource(e) => e.to_string().into(),
            Self::ConflictingSelectors(a, b) => {
                format!("Only one identity selector may be given, found '{a}' and '{b}'").into()
            }
            Self::BadBody(what) => (*what).into(),
            Self::BadPath(what) => format!("The request path must not contain {what}").into(),
            Self::BadParam(name, must) => format!("Query parameter '{name}' must be {must}").into(),
            Self::BadScopes(what) => format!("Invalid scopes: {what}").into(),
            Self::UnknownTenant(t) => {
                format!("No profile of this broker is configured for tenant '{t}'").into()
            }
            Self::Unavailable(why) => (*why).into(),
            Self::Select(e) => e.to_string().into(),
            Self::Engine(EngineError::Upstream(e)) => upstream_description(e).into(),
            Self::Engine(EngineError::ShuttingDown) => "The broker is shutting down; retry shortly".into(),
            Self::Engine(
                e @ (EngineError::UnknownProfile(_)
                | EngineError::Pending { .. }
                | EngineError::CacheFull { .. }),
            ) => e.to_string().into(),
        }
    }

    /// Whole seconds for `Retry-After`: present when the status is 429, and on the 503 of a
    /// caller released after `client_wait`.
    pub(crate) fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } => {
                Some((*retry_after_secs).clamp(1, MAX_RETRY_AFTER_SECS))
            }
            Self::Engine(EngineError::Upstream(UpstreamError::Throttled { retry_after })) => {
                let wait = retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Some(secs.clamp(1, MAX_RETRY_AFTER_SECS))
            }
            // The upstream call goes on past `client_wait`; its token serves the retry.
            Self::Engine(
                EngineError::Pending { retry_after } | EngineError::CacheFull { retry_after, .. },
            ) => Some(retry_after.as_secs().clamp(1, MAX_RETRY_AFTER_SECS)),
            _ => None,
        }
    }

    /// A stable, low-cardinality label for logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::NotLoopback => "not_loopback",
            Self::Key(k) => k.kind(),
            Self::BadHost => "bad_host",
            Self::MissingMetadata => "missing_metadata",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forwarded { .. } => "forwarded",
            Self::TooManyParams | Self::DuplicateParam(_) | Self::MalformedQuery | Self::MissingParam(_) => {
                "bad_query"
            }
            Self::Denied(d) => d.kind(),
            Self::RateLimited { .. } => "rate_limited",
            Self::InvalidResource(_) => "invalid_resource",
            Self::ConflictingSelectors(..) => "conflicting_selectors",
            Self::BadBody(_) | Self::BadParam(..) | Self::BadScopes(_) => "bad_request",
            Self::BadPath(_) => "bad_path",
            Self::UnknownTenant(_) => "unknown_tenant",
            Self::Unavailable(_) => "unavailable",
            Self::Select(SelectError::IdentityNotFound { .. }) => "identity_not_found",
            Self::Select(SelectError::UnknownProfile(_)) | Self::Engine(EngineError::UnknownProfile(_)) => {
                "unknown_profile"
            }
            Self::Select(SelectError::NoDefault) => "no_default_profile",
            Self::Engine(EngineError::Upstream(e)) => e.kind(),
            Self::Engine(EngineError::ShuttingDown) => "shutting_down",
            Self::Engine(EngineError::Pending { .. }) => "pending",
            Self::Engine(EngineError::CacheFull { .. }) => "cache_full",
        }
    }
}

impl From<EngineError> for RequestError {
    fn from(e: EngineError) -> Self {
        Self::Engine(e)
    }
}

impl From<SelectError> for RequestError {
    fn from(e: SelectError) -> Self {
        Self::Select(e)
    }
}

fn upstream_status(e: &UpstreamError) -> StatusCode {
    match e {
        UpstreamError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
        e if e.is_definitive() => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn upstream_description(e: &UpstreamError) -> String {
    if e.is_definitive() { e.to_string() } else { format!("Failed to get a token from Entra ID: {e}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(e: UpstreamError) -> RequestError {
        RequestError::Engine(EngineError::Upstream(e))
    }

    #[test]
    fn only_throttling_is_429_and_carries_retry_after() {
        let throttled = upstream(UpstreamError::Throttled { retry_after: Some(Duration::from_millis(1500)) });
        assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(throttled.retry_after_secs(), Some(2));
        let no_hint = upstream(UpstreamError::Throttled { retry_after: None });
        assert_eq!(no_hint.retry_after_secs(), Some(5));
        let zero = upstream(UpstreamError::Throttled { retry_after: Some(Duration::ZERO) });
        assert_eq!(zero.retry_after_secs(), Some(1));
        let unavailable =
            upstream(UpstreamError::Unavailable { status: 503, retry_after: Some(Duration::from_secs(9)) });
        assert_eq!(unavailable.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(unavailable.retry_after_secs(), None);
        assert_eq!(RequestError::MissingMetadata.retry_after_secs(), None);
    }

    #[test]
    fn a_full_cache_is_429_with_retry_after_and_names_the_setting() {
        let full = RequestError::Engine(EngineError::CacheFull {
            profile: "team".into(),
            scope: azbroker_core::BoundScope::User,
            limit: 64,
            retry_after: Duration::from_secs(60),
        });
        assert_eq!(full.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(full.retry_after_secs(), Some(60));
        assert_eq!((full.code(), full.kind()), ("throttled", "cache_full"));
        assert!(full.description().contains("max_cached_resources_per_user"));
    }

    #[test]
    fn definitive_upstream_errors_are_400_never_404_or_5xx() {
        let definitive = [
            UpstreamError::InvalidGrant { codes: vec![], description: "d".into() },
            UpstreamError::InteractionRequired { codes: vec![], description: "d".into() },
            UpstreamError::InvalidClient {
                error: "invalid_client".into(),
                codes: vec![],
                description: "d".into(),
            },
            UpstreamError::InvalidResource {
                error: "invalid_resource".into(),
                codes: vec![],
                description: "d".into(),
            },
            UpstreamError::Refused { error: "x".into(), codes: vec![], description: "d".into() },
            UpstreamError::LoginRequired { login: "l".into(), tenant: None, reason: "r".into() },
            UpstreamError::Config("c".into()),
        ];
        for e in definitive {
            let err = upstream(e);
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{err:?}");
        }
        for e in [
            UpstreamError::Timeout,
            UpstreamError::Network("n".into()),
            UpstreamError::BadResponse("b".into()),
        ] {
            let err = upstream(e);
            assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(err.code(), "unknown");
            assert!(err.description().starts_with("Failed to get a token from Entra ID: "));
        }
    }

    #[test]
    fn request_problems_are_400_401_or_403() {
        for e in [
            RequestError::BadBody("b"),
            RequestError::BadPath("p"),
            RequestError::BadParam("p", "m"),
            RequestError::BadScopes("s"),
            RequestError::UnknownTenant("t".into()),
            RequestError::Unavailable("u"),
            RequestError::Unauthorized { header: "secret", missing: true },
            RequestError::NotLoopback,
        ] {
            let status = e.status().as_u16();
            assert!(matches!(status, 400 | 401 | 403), "{e:?}: {status}");
            assert_eq!(e.retry_after_secs(), None);
            assert!(!e.description().contains("unreachable"), "SDKs read 403 + 'unreachable' as no IMDS");
        }
    }

    #[test]
    fn codes_and_descriptions_name_the_problem() {
        let res = upstream(UpstreamError::InvalidResource {
            error: "invalid_resource".into(),
            codes: vec![500011],
            description: "AADSTS500011: not found".into(),
        });
        assert_eq!(res.code(), "invalid_resource");
        assert!(res.description().contains("AADSTS500011"));
        let login = upstream(UpstreamError::LoginRequired {
            login: "me".into(),
            tenant: None,
            reason: "run `azbroker login me`".into(),
        });
        assert_eq!(login.code(), "invalid_request");
        let text = login.description();
        assert!(text.contains("'me'") && text.contains("run `azbroker login me`"), "{text}");
        let nf = RequestError::Select(SelectError::IdentityNotFound {
            param: "client_id".into(),
            value: "x".into(),
        });
        assert_eq!(nf.description(), "Identity not found");
        assert_eq!(
            RequestError::MissingParam("resource").description(),
            "Required query variable 'resource' is missing"
        );
    }
}
