//! Query-string parsing under our own control (no extractor rejections): percent/`+` decoding via
//! `form_urlencoded`, duplicate names refused as real IMDS does, a bound on the parameter count.
//!
//! It interprets no parameter; dialects decide which names they require.

use std::borrow::Cow;

use crate::error::RequestError;

/// More parameters than any client sends; bounds the duplicate scan.
const MAX_PARAMS: usize = 32;

/// Decoded query parameters, each name at most once, borrowing from the URI where possible.
#[derive(Debug, Default)]
pub(crate) struct QueryParams<'q> {
    pairs: Vec<(Cow<'q, str>, Cow<'q, str>)>,
}

impl<'q> QueryParams<'q> {
    /// Parses a raw query string (without `?`); `None` is an empty query.
    pub(crate) fn parse(raw: Option<&'q str>) -> Result<Self, RequestError> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Ok(Self::default());
        };
        if !well_formed(raw) {
            return Err(RequestError::MalformedQuery);
        }
        let mut pairs: Vec<(Cow<'q, str>, Cow<'q, str>)> = Vec::with_capacity(4);
        for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
            if pairs.len() == MAX_PARAMS {
                return Err(RequestError::TooManyParams);
            }
            if pairs.iter().any(|(seen, _)| *seen == name) {
                return Err(RequestError::DuplicateParam(name.into_owned()));
            }
            pairs.push((name, value));
        }
        Ok(Self { pairs })
    }

    /// The value of `name`, if present (possibly empty).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_ref())
    }

    /// A parameter that must be present with a non-empty value.
    pub(crate) fn require(&self, name: &'static str) -> Result<&str, RequestError> {
        self.get(name).filter(|v| !v.is_empty()).ok_or(RequestError::MissingParam(name))
    }

    /// Removes `name` and returns its value.
    pub(crate) fn take(&mut self, name: &str) -> Option<Cow<'q, str>> {
        let i = self.pairs.iter().position(|(n, _)| n == name)?;
        Some(self.pairs.swap_remove(i).1)
    }
}

/// Every `%` starts a two-hex-digit escape, and the decoded bytes are UTF-8 (`form_urlencoded`
/// would otherwise pass bad escapes through and replace invalid bytes silently).
fn well_formed(raw: &str) -> bool {
    let b = raw.as_bytes();
    let mut i = 0;
    while let Some(off) = b[i..].iter().position(|&c| c == b'%') {
        let at = i + off;
        if !(b.get(at + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(at + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return false;
        }
        i = at + 3;
    }
    !raw.contains('%') || percent_encoding::percent_decode_str(raw).decode_utf8().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_escapes_are_refused() {
        for bad in ["resource=%", "resource=%4", "resource=%zz", "resource=a%C3", "resource=%FF%FE", "%=x"] {
            assert!(matches!(QueryParams::parse(Some(bad)), Err(RequestError::MalformedQuery)), "{bad}");
        }
        let q = QueryParams::parse(Some("resource=caf%C3%A9%25")).unwrap();
        assert_eq!(q.get("resource"), Some("café%"));
    }

    #[test]
    fn decodes_and_borrows() {
        let q = QueryParams::parse(Some("resource=https%3A%2F%2Fvault.azure.net&api-version=2018-02-01&x="))
            .unwrap();
        assert_eq!(q.get("resource"), Some("https://vault.azure.net"));
        assert_eq!(q.get("api-version"), Some("2018-02-01"));
        assert_eq!(q.get("x"), Some(""));
        assert!(matches!(q.require("x"), Err(RequestError::MissingParam("x"))));
        assert_eq!(q.get("nope"), None);
    }

    #[test]
    fn plus_is_a_space() {
        let q = QueryParams::parse(Some("resource=a+b")).unwrap();
        assert_eq!(q.get("resource"), Some("a b"));
    }

    #[test]
    fn duplicates_are_refused_even_when_encoded_differently() {
        let e = QueryParams::parse(Some("resource=a&resourc%65=b")).unwrap_err();
        assert!(matches!(e, RequestError::DuplicateParam(ref n) if n == "resource"));
    }

    #[test]
    fn absent_and_empty_queries_are_empty() {
        assert!(QueryParams::parse(None).unwrap().pairs.is_empty());
        assert!(QueryParams::parse(Some("")).unwrap().pairs.is_empty());
    }

    #[test]
    fn parameter_count_is_bounded() {
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=1")).collect();
        assert!(matches!(QueryParams::parse(Some(&many.join("&"))), Err(RequestError::TooManyParams)));
    }
}
