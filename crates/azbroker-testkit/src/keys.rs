//! The authority's signing key: an RSA-2048 key pair generated once at start, RS256 signing of
//! access tokens, the JWK published at `discovery/v2.0/keys`, and verification of our own tokens.
//!
//! Verification deliberately uses the published modulus and exponent (not the private key), so a
//! token that `verify` accepts is one any client could verify from the JWKS.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, RsaPublicKeyComponents};
use serde::Serialize;

use crate::jwt::{self, Parts, b64};
use crate::time::unix_now;

/// Clock skew we allow on `nbf`, as token consumers commonly do.
const NBF_SKEW_SECS: u64 = 300;

pub(crate) struct SigningKey {
    pair: KeyPair,
    rng: SystemRandom,
    kid: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

/// One entry of the JWKS document, field order as Entra sends it.
#[derive(Serialize)]
pub(crate) struct Jwk<'a> {
    kty: &'static str,
    #[serde(rename = "use")]
    use_: &'static str,
    kid: &'a str,
    n: String,
    e: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
}

#[derive(Serialize)]
struct Header<'a> {
    typ: &'static str,
    alg: &'static str,
    kid: &'a str,
}

impl SigningKey {
    /// Generates a fresh key. CPU-bound (tens of milliseconds): call it off the runtime threads.
    pub(crate) fn generate() -> std::io::Result<Self> {
        let pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| std::io::Error::other("RSA key generation failed"))?;
        let public = pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        // Entra's kids are 27-character base64url thumbprints; derive ours from the public key.
        let kid = b64(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, public.as_ref()).as_ref());
        Ok(SigningKey { pair, rng: SystemRandom::new(), kid, n, e })
    }

    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn jwk(&self, issuer: Option<String>) -> Jwk<'_> {
        Jwk { kty: "RSA", use_: "sig", kid: &self.kid, n: b64(&self.n), e: b64(&self.e), issuer }
    }

    /// Serialises `claims` and returns the compact RS256 JWS.
    pub(crate) fn sign(&self, claims: &impl Serialize) -> Result<String, String> {
        let header = Header { typ: "JWT", alg: "RS256", kid: &self.kid };
        let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        let claims = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let signing_input = format!("{}.{}", b64(&header), b64(&claims));
        let mut sig = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(&signature::RSA_PKCS1_SHA256, &self.rng, signing_input.as_bytes(), &mut sig)
            .map_err(|_| "RS256 signing failed".to_string())?;
        Ok(format!("{signing_input}.{}", b64(&sig)))
    }

    /// Checks that `token` is RS256-signed by this key, not expired and already valid; returns
    /// its claims.
    pub(crate) fn verify(&self, token: &str) -> Result<serde_json::Value, String> {
        let parts = Parts::split(token)?;
        let header = jwt::decode_json(parts.header, "header")?;
        if header["alg"] != "RS256" {
            return Err(format!("unexpected alg {}", header["alg"]));
        }
        if header["kid"] != self.kid.as_str() {
            return Err("token was signed with an unknown key (kid mismatch)".into());
        }
        let sig = jwt::b64_decode(parts.signature).map_err(|e| format!("signature is not base64url: {e}"))?;
        RsaPublicKeyComponents { n: &self.n, e: &self.e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, parts.signing_input.as_bytes(), &sig)
            .map_err(|_| "signature does not verify".to_string())?;
        let claims = jwt::decode_json(parts.claims, "claims")?;
        let now = unix_now();
        let exp = claims["exp"].as_u64().ok_or("claims lack a numeric exp")?;
        if exp <= now {
            return Err(format!("token expired at {exp} (now {now})"));
        }
        if let Some(nbf) = claims["nbf"].as_u64()
            && nbf > now + NBF_SKEW_SECS
        {
            return Err(format!("token is not valid before {nbf} (now {now})"));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signs_and_verifies_and_rejects_tampering() {
        let key = SigningKey::generate().unwrap();
        assert_eq!(key.kid().len(), 27);
        let now = unix_now();
        let token = key.sign(&json!({"aud": "a", "exp": now + 60, "nbf": now})).unwrap();
        assert_eq!(key.verify(&token).unwrap()["aud"], "a");

        let forged_claims = b64(json!({"aud": "b", "exp": now + 60}).to_string().as_bytes());
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &forged_claims;
        assert!(key.verify(&parts.join(".")).unwrap_err().contains("signature"));

        let expired = key.sign(&json!({"exp": now - 1})).unwrap();
        assert!(key.verify(&expired).unwrap_err().contains("expired"));
        let future = key.sign(&json!({"exp": now + 9999, "nbf": now + 3600})).unwrap();
        assert!(key.verify(&future).is_err());

        let other = SigningKey::generate().unwrap();
        assert!(other.verify(&token).is_err());
    }
}
