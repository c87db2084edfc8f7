//! The token endpoint's success body, parsed once into [`TokenResponse`].
//!
//! One shape serves every grant: client credentials return only an access token; refresh-token,
//! device-code and authorization-code grants add `refresh_token`, `id_token` and `client_info`.
//! Parse failures describe what was wrong by field name only — the body may hold a token.

use std::fmt;
use std::time::Duration;

use azbroker_core::{AccessToken, Secret, UpstreamError, unix_now};
use serde_json::{Map, Value};

/// Longest lifetime accepted from upstream. Entra tokens live hours; anything beyond a year is a
/// broken response (and would overflow instant arithmetic if absurd).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// How many field names a parse error lists at most.
const MAX_LISTED_FIELDS: usize = 12;

/// A successful token-endpoint response. `Debug` redacts every token.
#[derive(Clone)]
pub struct TokenResponse {
    pub access_token: Secret,
    /// Lifetime from `expires_in` (or derived from `expires_on`).
    pub expires_in: Duration,
    pub refresh_token: Option<Secret>,
    pub id_token: Option<Secret>,
    /// base64url JSON `{"uid":..,"utid":..}`, when the request asked for `client_info=1`.
    pub client_info: Option<String>,
    /// The scopes granted, space-separated, as upstream reported them.
    pub scope: Option<String>,
}

impl TokenResponse {
    /// The access token as the engine caches it.
    pub fn into_access_token(self) -> AccessToken {
        AccessToken::new(self.access_token, self.expires_in)
    }

    /// Parses a 2xx body from the token endpoint.
    pub fn from_json(body: &[u8]) -> Result<Self, UpstreamError> {
        let value: Value = serde_json::from_slice(body).map_err(|_| {
            UpstreamError::BadResponse(format!("token response is not JSON ({} bytes)", body.len()))
        })?;
        let Value::Object(mut obj) = value else {
            return Err(UpstreamError::BadResponse("token response is not a JSON object".to_owned()));
        };
        check_token_type(&obj)?;
        let expires_in = lifetime(&obj)?;
        let access_token = match obj.remove("access_token") {
            Some(Value::String(s)) if !s.is_empty() => Secret::new(s),
            Some(_) => return Err(bad("access_token is not a non-empty string")),
            None => return Err(missing("access_token", &obj)),
        };
        Ok(Self {
            access_token,
            expires_in,
            refresh_token: take_string(&mut obj, "refresh_token").map(Secret::new),
            id_token: take_string(&mut obj, "id_token").map(Secret::new),
            client_info: take_string(&mut obj, "client_info"),
            scope: take_string(&mut obj, "scope"),
        })
    }
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &self.access_token.short_hash())
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "<redacted>"))
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field("client_info", &self.client_info)
            .field("scope", &self.scope)
            .finish()
    }
}

/// `token_type` must be `Bearer` (any case) or absent: a PoP or other token would not work as a
/// bearer token for the clients the broker serves.
fn check_token_type(obj: &Map<String, Value>) -> Result<(), UpstreamError> {
    match obj.get("token_type") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => Ok(()),
        Some(_) => Err(bad("token_type is not Bearer")),
    }
}

/// The lifetime from `expires_in`, else from `expires_on` (Unix seconds), bounded.
fn lifetime(obj: &Map<String, Value>) -> Result<Duration, UpstreamError> {
    let secs = if let Some(v) = obj.get("expires_in") {
        seconds(v).ok_or_else(|| bad("expires_in is not a whole number of seconds"))?
    } else if let Some(v) = obj.get("expires_on") {
        let on = seconds(v).ok_or_else(|| bad("expires_on is not a Unix time in seconds"))?;
        let now = unix_now();
        if on <= now {
            return Err(bad("expires_on lies in the past"));
        }
        on - now
    } else {
        return Err(missing("expires_in", obj));
    };
    let lifetime = Duration::from_secs(secs);
    if lifetime > MAX_TOKEN_LIFETIME {
        return Err(UpstreamError::BadResponse(format!("token lifetime of {secs} s is implausibly long")));
    }
    Ok(lifetime)
}

/// A non-negative whole number of seconds: a JSON number, or a string of ASCII digits.
fn seconds(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1e15)
                .map(|f| f as u64)
        }),
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        }
        _ => None,
    }
}

/// Removes `key` if it holds a non-empty string.
fn take_string(obj: &mut Map<String, Value>, key: &str) -> Option<String> {
    match obj.remove(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

fn bad(what: &str) -> UpstreamError {
    UpstreamError::BadResponse(format!("token response: {what}"))
}

/// "no `field`", listing the field names that were present (names only, never values).
fn missing(field: &str, obj: &Map<String, Value>) -> UpstreamError {
    let mut names: Vec<String> = obj
        .keys()
        .take(MAX_LISTED_FIELDS)
        .map(|k| k.chars().filter(|c| !c.is_control()).take(40).collect())
        .collect();
    if obj.len() > MAX_LISTED_FIELDS {
        names.push("…".to_owned());
    }
    let present = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
    UpstreamError::BadResponse(format!("token response has no {field} (fields present: {present})"))
}

#[cfg(test)]
mod tests;
