//! Confidential-client authentication on the token endpoint: which client is calling and with
//! which credential — `client_secret` in the body, HTTP Basic (RFC 6749 §2.3.1), or a
//! `client_assertion` JWT — checked against the app registry unless the fake is permissive.
//!
//! Grants call [`authenticate`]; assertion checking (certificate signatures, audience, lifetime,
//! federated subjects) is isolated in [`check_assertion`].

use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::percent_decode_str;

use crate::error::EntraError;
use crate::form::Params;
use aws_lc_rs::signature;

use crate::cert;
use crate::jwt;
use crate::state::{AppLookup, State};
use crate::tenant::{Tenant, printable};
use crate::time::unix_now;

pub(crate) const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client that proved who it is.
#[derive(Debug)]
pub(crate) struct Client {
    /// The client id as the client sent it.
    pub id: String,
    pub method: AuthMethod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthMethod {
    Secret,
    Assertion,
}

impl AuthMethod {
    /// The v1 `appidacr` claim: "1" for a secret, "2" for a certificate/assertion.
    pub(crate) fn appidacr(self) -> &'static str {
        match self {
            AuthMethod::Secret => "1",
            AuthMethod::Assertion => "2",
        }
    }
}

enum Credential {
    Secret(String),
    Assertion(String),
}

/// Identifies and authenticates the calling confidential client.
pub(crate) fn authenticate(
    state: &State,
    tenant: &Tenant,
    params: &Params,
    headers: &HeaderMap,
) -> Result<Client, EntraError> {
    let basic = basic_credentials(headers)?;
    let client_id = match (&basic, params.get("client_id")) {
        (Some((id, _)), Some(body_id)) if id != body_id => {
            return Err(EntraError::malformed(
                "The client_id in the body and in the Authorization header differ.",
            ));
        }
        (Some((id, _)), _) => id.clone(),
        (None, Some(id)) => id.to_owned(),
        (None, None) => return Err(EntraError::missing_parameter("client_id")),
    };
    let credential = credential(basic.map(|(_, secret)| secret), params)?;
    let secret = match &credential {
        Some(Credential::Secret(s)) => Some(s.as_str()),
        _ => None,
    };
    let lookup = state.lookup_app(&client_id, secret);
    if let AppLookup::Unknown = lookup {
        return Err(EntraError::bad_request(
            "unauthorized_client",
            700_016,
            format!(
                "Application with identifier '{}' was not found in the directory '{}'. This can happen if \
                 the application has not been installed by the administrator of the tenant or consented to \
                 by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                printable(&client_id),
                printable(&tenant.path)
            ),
        ));
    }
    let method = match credential {
        None => {
            return Err(EntraError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7_000_218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            ));
        }
        Some(Credential::Secret(_)) => {
            if let AppLookup::Registered { secret_ok: false } = lookup {
                return Err(EntraError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7_000_215,
                    format!(
                        "Invalid client secret provided. Ensure the secret being sent in the request is the \
                         client secret value, not the client secret ID, for a secret added to app '{}'.",
                        printable(&client_id)
                    ),
                ));
            }
            AuthMethod::Secret
        }
        Some(Credential::Assertion(assertion)) => {
            check_assertion(state, &lookup, &client_id, tenant, &assertion)?;
            AuthMethod::Assertion
        }
    };
    Ok(Client { id: client_id, method })
}

/// Checks a `client_assertion`. Permissive mode accepts any well-formed JWT. A registered app
/// accepts a certificate assertion signed (PS256 or RS256) by a certificate registered for it,
/// named by `x5t#S256` (or legacy `x5t`), with `aud` = this tenant's token endpoint, `iss` =
/// `sub` = the client id and a current `exp`/`nbf`; or a federated assertion signed by this
/// authority's own key whose (`iss`, `sub`) the app trusts.
fn check_assertion(
    state: &State,
    lookup: &AppLookup,
    client_id: &str,
    tenant: &Tenant,
    assertion: &str,
) -> Result<(), EntraError> {
    let malformed =
        || EntraError::bad_request("invalid_request", 50_027, "JWT token is invalid or malformed.");
    let parts = jwt::Parts::split(assertion).map_err(|_| malformed())?;
    let header = jwt::decode_json(parts.header, "header").map_err(|_| malformed())?;
    let claims = jwt::decode_json(parts.claims, "claims").map_err(|_| malformed())?;
    match lookup {
        AppLookup::AnyAccepted => {
            tracing::debug!(client_id, tenant = %tenant.path, "accepting client assertion (permissive)");
            return Ok(());
        }
        AppLookup::Unknown => return Err(key_not_found()),
        AppLookup::Registered { .. } => {}
    }
    if header["kid"].as_str() == Some(state.key.kid()) {
        let claims = state
            .key
            .verify(assertion)
            .map_err(|_| invalid_client(700_027, "Client assertion contains an invalid signature."))?;
        let (iss, sub) = (claims["iss"].as_str().unwrap_or(""), claims["sub"].as_str().unwrap_or(""));
        if state.trusts_federated(client_id, iss, sub) {
            return Ok(());
        }
        return Err(EntraError::bad_request(
            "invalid_request",
            700_213,
            format!(
                "No matching federated identity record found for presented assertion subject '{}'.",
                printable(sub)
            ),
        ));
    }
    let certs = state.certificates(client_id);
    let cert = match (header["x5t#S256"].as_str(), header["x5t"].as_str()) {
        (Some(t), _) => certs.iter().find(|c| cert::sha256_thumbprint(c) == t),
        (None, Some(t)) => certs.iter().find(|c| cert::sha1_thumbprint(c) == t),
        (None, None) => None,
    }
    .ok_or_else(key_not_found)?;
    let alg: &'static dyn signature::VerificationAlgorithm = match header["alg"].as_str() {
        Some("PS256") => &signature::RSA_PSS_2048_8192_SHA256,
        Some("RS256") => &signature::RSA_PKCS1_2048_8192_SHA256,
        _ => return Err(invalid_client(700_027, "Client assertion uses an unsupported signing algorithm.")),
    };
    let spki = cert::subject_public_key_info(cert).map_err(|_| key_not_found())?;
    let sig = jwt::b64_decode(parts.signature).map_err(|_| malformed())?;
    signature::UnparsedPublicKey::new(alg, spki)
        .verify(parts.signing_input.as_bytes(), &sig)
        .map_err(|_| invalid_client(700_027, "Client assertion contains an invalid signature."))?;
    let aud = claims["aud"].as_str().unwrap_or("");
    let audiences = [
        format!("{}/{}/oauth2/v2.0/token", state.authority, tenant.path),
        format!("{}/{}/oauth2/v2.0/token", state.authority, tenant.tid),
    ];
    if !audiences.iter().any(|a| a.eq_ignore_ascii_case(aud)) {
        return Err(invalid_client(
            700_021,
            format!(
                "Client assertion audience claim does not match Realm issuer. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials . Provided value: '{}'.",
                printable(aud)
            ),
        ));
    }
    if claims["iss"] != client_id || claims["sub"] != client_id {
        return Err(invalid_client(
            700_023,
            "Client assertion issuer and subject must both be the client id.",
        ));
    }
    if claims["jti"].as_str().is_none_or(str::is_empty) {
        return Err(invalid_client(700_022, "Client assertion must carry a jti claim."));
    }
    let now = unix_now();
    let exp = claims["exp"].as_u64().unwrap_or(0);
    let nbf = claims["nbf"].as_u64().unwrap_or(0);
    if exp <= now || nbf > now + 300 {
        return Err(invalid_client(700_024, "Client assertion is not within its valid time range."));
    }
    Ok(())
}

fn key_not_found() -> EntraError {
    invalid_client(
        700_027,
        "Client assertion contains an invalid signature. [Reason - The key was not found.]",
    )
}

fn invalid_client(code: u32, message: impl Into<String>) -> EntraError {
    EntraError::new(StatusCode::UNAUTHORIZED, "invalid_client", code, message)
}

/// The single credential the request carries, if any; more than one is a malformed request.
fn credential(basic_secret: Option<String>, params: &Params) -> Result<Option<Credential>, EntraError> {
    let body_secret = params.get("client_secret").map(str::to_owned);
    let assertion = params.get("client_assertion");
    let assertion_type = params.get("client_assertion_type");
    let mut found = Vec::with_capacity(1);
    if let Some(s) = basic_secret {
        found.push(Credential::Secret(s));
    }
    if let Some(s) = body_secret {
        found.push(Credential::Secret(s));
    }
    match (assertion, assertion_type) {
        (Some(a), Some(JWT_BEARER_ASSERTION)) => found.push(Credential::Assertion(a.to_owned())),
        (Some(_), None) => return Err(EntraError::missing_parameter("client_assertion_type")),
        (Some(_), Some(other)) => {
            return Err(EntraError::malformed(&format!(
                "The client_assertion_type '{}' is not supported; use '{JWT_BEARER_ASSERTION}'.",
                printable(other)
            )));
        }
        (None, _) => {}
    }
    if found.len() > 1 {
        return Err(EntraError::malformed("The request uses more than one client authentication method."));
    }
    Ok(found.pop())
}

/// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))`, if present.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, EntraError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let bad = || {
        EntraError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7_000_215,
            "Invalid client secret provided. The Authorization header is not valid Basic credentials.",
        )
    };
    let value = value.to_str().map_err(|_| bad())?;
    let Some((scheme, encoded)) = value.split_once(' ') else { return Err(bad()) };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(EntraError::malformed(
            "Only Basic client authentication is accepted in the Authorization header.",
        ));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let (id, secret) = (form_decode(id).ok_or_else(bad)?, form_decode(secret).ok_or_else(bad)?);
    if id.is_empty() {
        return Err(bad());
    }
    Ok(Some((id, secret)))
}

/// `application/x-www-form-urlencoded` decoding of one Basic credential half.
fn form_decode(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8().ok().map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn basic(raw: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!("Basic {}", STANDARD.encode(raw));
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
        h
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let (id, secret) = basic_credentials(&basic("app%201:s%3Ae+c~r.et")).unwrap().unwrap();
        assert_eq!((id.as_str(), secret.as_str()), ("app 1", "s:e c~r.et"));
        assert!(basic_credentials(&HeaderMap::new()).unwrap().is_none());
        assert!(basic_credentials(&basic("no-colon")).is_err());
    }

    #[test]
    fn at_most_one_credential() {
        let p = Params::from_pairs(&[("client_secret", "a")]);
        assert!(credential(Some("b".into()), &p).is_err());
        let p = Params::from_pairs(&[
            ("client_secret", "a"),
            ("client_assertion", "x.y.z"),
            ("client_assertion_type", JWT_BEARER_ASSERTION),
        ]);
        assert!(credential(None, &p).is_err());
        let p = Params::from_pairs(&[("client_assertion", "x.y.z")]);
        assert_eq!(credential(None, &p).err().map(|e| e.code()), Some(900_144));
        assert!(credential(None, &Params::default()).unwrap().is_none());
    }
}
