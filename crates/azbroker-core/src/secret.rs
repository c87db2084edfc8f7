//! A string that must never be printed: client secrets, access tokens, identity headers.
//!
//! `Debug` and `Display` redact; the value is zeroed when the last clone is dropped. Reading the
//! value is explicit (`expose`), which makes every place a secret leaves the process greppable.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

/// A cheaply cloneable secret string with redacting `Debug`.
#[derive(Clone)]
pub struct Secret(Arc<Zeroizing<String>>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::new(Zeroizing::new(value.into())))
    }

    /// `bytes` bytes from the system random number generator, base64url without padding (header-,
    /// URL- and file-name-safe): keys, runtime secrets, PKCE verifiers, `state` values.
    pub fn random(bytes: usize) -> Self {
        use base64::Engine as _;
        let mut buf = Zeroizing::new(vec![0u8; bytes]);
        // The system RNG failing is not recoverable for a credential broker.
        aws_lc_rs::rand::fill(&mut buf).expect("system random number generator is available");
        Self::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&*buf))
    }

    /// The secret value. Every caller is a place where the secret leaves our control.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Constant-time comparison against a presented value (identity headers, API keys).
    pub fn matches(&self, presented: &[u8]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.0.as_bytes(), presented).is_ok()
    }

    /// A short, non-reversible identifier for logs and status: the first 8 hex digits of SHA-256.
    pub fn short_hash(&self) -> String {
        short_hash(self.0.as_bytes())
    }
}

/// First 8 hex digits of the SHA-256 of `bytes`.
pub fn short_hash(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Full lowercase hex SHA-256 of `bytes` (Service Fabric's `token_sha256_to_refresh`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.expose().as_bytes())
    }
}

impl Eq for Secret {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("hunter2-very-secret");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn matches_is_exact() {
        let s = Secret::new("abc");
        assert!(s.matches(b"abc"));
        assert!(!s.matches(b"abcd"));
        assert!(!s.matches(b"ab"));
        assert!(!s.matches(b""));
    }

    #[test]
    fn short_hash_is_stable_and_short() {
        assert_eq!(short_hash(b"x"), short_hash(b"x"));
        assert_eq!(short_hash(b"x").len(), 8);
        assert_ne!(short_hash(b"x"), short_hash(b"y"));
    }
}
