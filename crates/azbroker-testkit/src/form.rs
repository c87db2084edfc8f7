//! Token-request bodies: `application/x-www-form-urlencoded` parameters, parsed once into a map.
//!
//! Like Entra, a body with another content type is treated as carrying no parameters (so the
//! client gets "must contain the following parameter: 'grant_type'"); a repeated parameter is
//! rejected, as RFC 6749 §3.2 forbids it.

use std::collections::HashMap;

use axum::http::{HeaderMap, header};

use crate::error::EntraError;
use crate::tenant::printable;

/// Decoded form parameters of one request.
#[derive(Debug, Default)]
pub(crate) struct Params {
    map: HashMap<String, String>,
}

impl Params {
    pub(crate) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Params, EntraError> {
        if !is_form(headers) {
            return Ok(Params::default());
        }
        let mut map = HashMap::new();
        for (name, value) in form_urlencoded::parse(body) {
            if map.insert(name.clone().into_owned(), value.into_owned()).is_some() {
                return Err(EntraError::malformed(&format!(
                    "The parameter '{}' is present more than once.",
                    printable(&name)
                )));
            }
        }
        Ok(Params { map })
    }

    /// The parameter's value; an empty value counts as absent, as it does for Entra.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The parameter or 400 `invalid_request` AADSTS900144 naming it.
    pub(crate) fn require(&self, name: &str) -> Result<&str, EntraError> {
        self.get(name).ok_or_else(|| EntraError::missing_parameter(name))
    }

    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Params {
        Params { map: pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() }
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn form_headers(ct: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        h
    }

    #[test]
    fn parses_form_bodies_only() {
        let body = b"grant_type=client_credentials&scope=https%3A%2F%2Fx%2F%2F.default&empty=";
        let p =
            Params::parse(&form_headers("application/x-www-form-urlencoded; charset=utf-8"), body).unwrap();
        assert_eq!(p.get("scope"), Some("https://x//.default"));
        assert_eq!(p.get("empty"), None);
        assert_eq!(p.require("client_id").unwrap_err().code(), 900_144);
        let p = Params::parse(&form_headers("application/json"), body).unwrap();
        assert_eq!(p.get("grant_type"), None);
    }

    #[test]
    fn rejects_repeated_parameters() {
        let err = Params::parse(&form_headers("application/x-www-form-urlencoded"), b"a=1&a=2").unwrap_err();
        assert_eq!(err.error(), "invalid_request");
    }
}
