//! Turns what the token endpoint (or the network) did wrong into a typed [`UpstreamError`]:
//! OAuth error bodies (PROTOCOLS.md §12.5), 429 and 5xx with `Retry-After`, transport failures.
//!
//! Everything that leaves this module is safe to log and to show a client: descriptions are cut
//! to their first line, bounded, stripped of control characters and scrubbed of every secret the
//! request carried; response bodies are never quoted except for Entra's own description.

use std::time::{Duration, SystemTime};

use azbroker_core::UpstreamError;
use serde_json::Value;

/// Longest description kept from `error_description`, in characters.
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 500;

/// Longest OAuth `error` code kept, in characters.
const MAX_ERROR_CODE_CHARS: usize = 64;

/// Longest transport failure reason kept, in characters.
const MAX_REASON_CHARS: usize = 200;

/// AADSTS codes that mean a person has to sign in again (MFA, conditional access, sign-in
/// frequency), whatever OAuth `error` they arrive with (usually `invalid_grant`).
const INTERACTION_CODES: [u32; 6] = [50076, 50079, 53003, 50158, 50072, 50074];

/// Maps a non-2xx token-endpoint response. `secrets` are the values the request carried (client
/// secret, assertion, refresh token, ...); they are scrubbed from anything quoted.
pub(crate) fn map_error_response(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    secrets: &[&str],
) -> UpstreamError {
    if status == 429 {
        return UpstreamError::Throttled { retry_after };
    }
    if (500..=599).contains(&status) {
        return UpstreamError::Unavailable { status, retry_after };
    }
    if (300..=399).contains(&status) {
        return UpstreamError::BadResponse(format!(
            "unexpected redirect (HTTP {status}) from the token endpoint; redirects are not followed"
        ));
    }
    match parse_oauth_error(body) {
        Some(oauth) => classify(oauth, status, retry_after, secrets),
        None => UpstreamError::BadResponse(format!(
            "HTTP {status} with a body that is not an OAuth error ({} bytes)",
            body.len()
        )),
    }
}

/// The fields of an OAuth error body the broker acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthError {
    pub error: String,
    pub description: Option<String>,
    pub codes: Vec<u32>,
}

/// Reads `{error, error_description, error_codes}`; `None` unless the body is a JSON object with a
/// string `error`. Non-numeric `error_codes` entries are ignored.
pub(crate) fn parse_oauth_error(body: &[u8]) -> Option<OAuthError> {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let Some(Value::String(error)) = obj.remove("error") else {
        return None;
    };
    let description = match obj.remove("error_description") {
        Some(Value::String(d)) => Some(d),
        _ => None,
    };
    let codes = match obj.remove("error_codes") {
        Some(Value::Array(items)) => {
            items.iter().filter_map(Value::as_u64).filter_map(|c| u32::try_from(c).ok()).collect()
        }
        _ => Vec::new(),
    };
    Some(OAuthError { error, description, codes })
}

/// Chooses the `UpstreamError` variant for an OAuth error. The interaction codes win over the
/// OAuth `error`, because Entra reports MFA and conditional-access demands as `invalid_grant`.
pub(crate) fn classify(
    oauth: OAuthError,
    status: u16,
    retry_after: Option<Duration>,
    secrets: &[&str],
) -> UpstreamError {
    let OAuthError { error, description, codes } = oauth;
    let error = clean_error_code(&error, secrets);
    let description = describe(description.as_deref(), secrets);
    let needs_interaction = matches!(error.as_str(), "interaction_required" | "consent_required")
        || codes.iter().any(|c| INTERACTION_CODES.contains(c));
    if needs_interaction {
        return UpstreamError::InteractionRequired { codes, description };
    }
    match error.as_str() {
        "invalid_grant" => UpstreamError::InvalidGrant { codes, description },
        "invalid_client" | "unauthorized_client" => {
            UpstreamError::InvalidClient { error, codes, description }
        }
        "invalid_resource" | "invalid_scope" => UpstreamError::InvalidResource { error, codes, description },
        "temporarily_unavailable" => UpstreamError::Unavailable { status, retry_after },
        _ => UpstreamError::Refused { error, codes, description },
    }
}

/// The first line of an `error_description` (Entra appends `Trace ID`, `Correlation ID` and
/// `Timestamp` on later lines), keeping the `AADSTSnnnn:` prefix; control characters become
/// spaces, secrets are scrubbed, and the result is cut to [`MAX_DESCRIPTION_CHARS`].
pub(crate) fn describe(description: Option<&str>, secrets: &[&str]) -> String {
    let first_line = description.and_then(|d| d.split(['\r', '\n']).next()).unwrap_or("").trim();
    if first_line.is_empty() {
        return "no description given".to_owned();
    }
    let cleaned: String = first_line.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    truncate_chars(scrub(cleaned, secrets), MAX_DESCRIPTION_CHARS)
}

/// Parses `Retry-After`: integer seconds or an HTTP-date (a date in the past means "now").
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Maps a failure to get (or finish reading) a response: a timeout is `Timeout`, everything else
/// is `Network` with the innermost cause (e.g. "Connection refused (os error 111)"), which names
/// neither the URL's secrets nor the request body.
pub(crate) fn map_transport(err: &reqwest::Error) -> UpstreamError {
    if err.is_timeout() {
        return UpstreamError::Timeout;
    }
    let stage = if err.is_connect() {
        "cannot connect"
    } else if err.is_body() || err.is_decode() {
        "connection failed while reading the response"
    } else {
        "request failed"
    };
    match innermost_cause(err) {
        Some(cause) => UpstreamError::Network(truncate_chars(format!("{stage}: {cause}"), MAX_REASON_CHARS)),
        None => UpstreamError::Network(stage.to_owned()),
    }
}

/// The Display of the deepest `source()` of `err`, if it has any (never `err` itself: a reqwest
/// error's own Display carries the URL).
pub(crate) fn innermost_cause(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = err.source()?;
    while let Some(next) = current.source() {
        current = next;
    }
    Some(current.to_string())
}

/// An OAuth `error` code reduced to the characters such codes use, bounded and scrubbed.
fn clean_error_code(error: &str, secrets: &[&str]) -> String {
    let kept: String = error
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(MAX_ERROR_CODE_CHARS)
        .collect();
    let scrubbed = scrub(kept, secrets);
    if scrubbed.is_empty() { "unknown_error".to_owned() } else { scrubbed }
}

/// Replaces every occurrence of every non-empty secret with `<redacted>`.
fn scrub(mut text: String, secrets: &[&str]) -> String {
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if text.contains(secret) {
            text = text.replace(secret, "<redacted>");
        }
    }
    text
}

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
pub(crate) fn truncate_chars(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests;
