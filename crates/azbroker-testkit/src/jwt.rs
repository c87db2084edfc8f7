//! Compact-JWS plumbing: base64url, splitting a token into its parts, and reading the header
//! and claims without verification. Signing and verification live in `keys`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Upper bound on a token we are willing to parse; real access tokens are a few KiB.
const MAX_JWT_LEN: usize = 64 * 1024;

/// Decodes a JWT's claims (its middle part) without checking the signature. For tests and for
/// inspecting assertions; never use the result to make a trust decision.
pub fn decode_claims(jwt: &str) -> Result<serde_json::Value, String> {
    let parts = Parts::split(jwt)?;
    decode_json(parts.claims, "claims")
}

/// The three base64url segments of a compact JWS, plus the signed input.
pub(crate) struct Parts<'a> {
    pub header: &'a str,
    pub claims: &'a str,
    pub signature: &'a str,
    /// `header.claims`: the bytes the signature covers.
    pub signing_input: &'a str,
}

impl<'a> Parts<'a> {
    pub(crate) fn split(jwt: &'a str) -> Result<Self, String> {
        if jwt.len() > MAX_JWT_LEN {
            return Err("token is too long".into());
        }
        let mut it = jwt.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err("token is not a compact JWS with three parts".into());
        };
        if header.is_empty() || claims.is_empty() {
            return Err("token has an empty header or claims part".into());
        }
        let signing_input = &jwt[..header.len() + 1 + claims.len()];
        Ok(Parts { header, claims, signature, signing_input })
    }
}

/// Decodes one base64url segment into a JSON object.
pub(crate) fn decode_json(segment: &str, what: &str) -> Result<serde_json::Value, String> {
    let bytes = b64_decode(segment).map_err(|e| format!("{what} are not base64url: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{what} are not JSON: {e}"))?;
    if value.is_object() { Ok(value) } else { Err(format!("{what} are not a JSON object")) }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn b64_decode(segment: &str) -> Result<Vec<u8>, base64::DecodeError> {
    // Tolerate padding: some producers emit it even though JWS forbids it.
    URL_SAFE_NO_PAD.decode(segment.trim_end_matches('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_claims_of_a_well_formed_token() {
        let token = format!("{}.{}.sig", b64(br#"{"alg":"none"}"#), b64(br#"{"aud":"x"}"#));
        assert_eq!(decode_claims(&token).unwrap()["aud"], "x");
    }

    #[test]
    fn rejects_malformed_tokens() {
        for bad in ["", "a", "a.b", "a.b.c.d", ".b.c", "!!.b.c", &format!("{}.{}.", b64(b"{}"), b64(b"[1]"))]
        {
            assert!(decode_claims(bad).is_err(), "{bad:?}");
        }
        assert!(decode_claims(&"a".repeat(MAX_JWT_LEN + 1)).is_err());
    }
}
