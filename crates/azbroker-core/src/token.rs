//! An access token as the engine holds it: the secret value plus its lifetime, both as wall-clock
//! Unix seconds (what dialects put on the wire) and as `tokio` instants (what the engine schedules on).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::secret::{Secret, sha256_hex, short_hash};

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A bearer access token from upstream. `Debug` shows only a short hash.
#[derive(Clone)]
pub struct AccessToken {
    value: Secret,
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
        Self {
            value,
            expires_on: now_unix + expires_in.as_secs(),
            not_before: now_unix,
            received_at: now,
            expires_at: now + expires_in,
        }
    }

    pub fn secret(&self) -> &Secret {
        &self.value
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
        short_hash(self.value.expose().as_bytes())
    }

    /// Full SHA-256 hex of the token (Service Fabric `token_sha256_to_refresh`).
    pub fn sha256(&self) -> String {
        sha256_hex(self.value.expose().as_bytes())
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
