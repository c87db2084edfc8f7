//! An access token as the engine holds it: the secret value plus its lifetime, both as wall-clock
//! Unix seconds (what dialects put on the wire) and as `tokio` instants (what the engine schedules on).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::secret::{Secret, sha256_hex};

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A bearer access token from upstream. `Debug` shows only a short hash.
#[derive(Clone)]
pub struct AccessToken {
    value: Secret,
    /// Lowercase hex SHA-256 of `value`, computed once: every grant's audit line names the token
    /// by its hash, and hashing a ~1.5 KB JWT per cache hit is a measurable share of a hit.
    sha256: Arc<str>,
    /// The value can be put in a JSON string as it is (no quote, backslash or control character;
    /// a JWT never has one). Found once for the same reason as the hash: every success body
    /// embeds the value, and scanning ~1.5 KB per cache hit is a measurable share of a hit.
    json_plain: bool,
    /// Wall-clock expiry in Unix seconds, as upstream stated it (matches the JWT's `exp`).
    pub expires_on: u64,
    /// Wall-clock start of validity in Unix seconds.
    pub not_before: u64,
    /// When the engine received it.
    pub received_at: Instant,
    /// `received_at` + the lifetime upstream granted.
    pub expires_at: Instant,
}

impl AccessToken {
    /// Builds a token that upstream says lives `expires_in` from now.
    pub fn new(value: Secret, expires_in: Duration) -> Self {
        let now_unix = unix_now();
        let now = Instant::now();
        let sha256 = sha256_hex(value.expose().as_bytes()).into();
        let json_plain = !value.expose().bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
        Self {
            value,
            sha256,
            json_plain,
            expires_on: now_unix + expires_in.as_secs(),
            not_before: now_unix,
            received_at: now,
            expires_at: now + expires_in,
        }
    }

    pub fn secret(&self) -> &Secret {
        &self.value
    }

    /// True when the value needs no escaping inside a JSON string.
    pub fn is_json_plain(&self) -> bool {
        self.json_plain
    }

    /// The lifetime granted when it was issued.
    pub fn lifetime(&self) -> Duration {
        self.expires_at.saturating_duration_since(self.received_at)
    }

    /// Time left until expiry at `now`.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.expires_at.saturating_duration_since(now)
    }

    /// Seconds left now, for `expires_in` fields.
    pub fn expires_in_secs(&self) -> u64 {
        self.remaining(Instant::now()).as_secs()
    }

    /// Short hash identifying the token in logs and status.
    pub fn hash(&self) -> String {
        self.short_hash().to_owned()
    }

    /// [`AccessToken::hash`] without the copy (the audit line of every grant writes it).
    pub fn short_hash(&self) -> &str {
        &self.sha256[..8]
    }

    /// Full SHA-256 hex of the token (Service Fabric `token_sha256_to_refresh`).
    pub fn sha256(&self) -> String {
        self.sha256.to_string()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("hash", &self.hash())
            .field("expires_on", &self.expires_on)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::short_hash;

    #[test]
    fn hashes_are_those_of_the_value() {
        let t = AccessToken::new(Secret::new("eyJ0eXAi.e30.c2ln"), Duration::from_secs(60));
        assert_eq!(t.hash(), short_hash(b"eyJ0eXAi.e30.c2ln"));
        assert_eq!(t.sha256(), sha256_hex(b"eyJ0eXAi.e30.c2ln"));
        assert_eq!(t.clone().hash(), t.hash());
        assert_eq!(t.short_hash(), t.hash());
        assert!(!format!("{t:?}").contains("c2ln"));
    }

    #[test]
    fn json_plainness_is_that_of_the_value() {
        assert!(
            AccessToken::new(Secret::new("eyJ0eXAi.e30.c2ln-_"), Duration::from_secs(60)).is_json_plain()
        );
        for odd in ["a\"b", "a\\b", "a\nb", "\u{1}"] {
            assert!(!AccessToken::new(Secret::new(odd), Duration::from_secs(60)).is_json_plain(), "{odd:?}");
        }
    }
}
