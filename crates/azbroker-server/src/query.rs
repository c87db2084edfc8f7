//! Query-string parsing under our own control (no extractor rejections): `application/x-www-form-
//! urlencoded` decoding (`+` is a space, `%XX` a byte) that refuses bad escapes and non-UTF-8
//! bytes instead of passing or replacing them, duplicate names refused as real IMDS does, a
//! bound on the parameter count.
//!
//! It is on every cache hit, so it borrows from the URI and allocates only for a name or value
//! that has escapes in it (typically `resource`, once). It interprets no parameter; dialects
//! decide which names they require.

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
    /// Parses a raw query string (without `?`); `None` is an empty query. Empty `&`-separated
    /// pieces are skipped; a piece without `=` is a name with an empty value.
    pub(crate) fn parse(raw: Option<&'q str>) -> Result<Self, RequestError> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Ok(Self::default());
        };
        let mut pairs: Vec<(Cow<'q, str>, Cow<'q, str>)> = Vec::with_capacity(4);
        // Byte scans rather than `split`/`split_once`: the pieces are a few bytes long, where
        // the searcher's set-up costs more than the search.
        let mut rest = raw;
        while !rest.is_empty() {
            let end = rest.bytes().position(|b| b == b'&').unwrap_or(rest.len());
            let piece = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or("");
            if piece.is_empty() {
                continue;
            }
            let (name, value) = match piece.bytes().position(|b| b == b'=') {
                Some(i) => (&piece[..i], &piece[i + 1..]),
                None => (piece, ""),
            };
            let (name, value) = (decode(name)?, decode(value)?);
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

/// Decodes one name or value: borrowed when it has no `%` and no `+`. Every `%` must start a
/// two-hex-digit escape, and the decoded bytes must be UTF-8.
fn decode(raw: &str) -> Result<Cow<'_, str>, RequestError> {
    let b = raw.as_bytes();
    let special = |c: &u8| *c == b'%' || *c == b'+';
    let Some(first) = b.iter().position(special) else {
        return Ok(Cow::Borrowed(raw));
    };
    let mut out = Vec::with_capacity(b.len());
    let mut rest = &b[first..];
    out.extend_from_slice(&b[..first]);
    while let Some((&c, tail)) = rest.split_first() {
        if c == b'+' {
            out.push(b' ');
            rest = tail;
        } else if c == b'%' {
            let (Some(hi), Some(lo)) = (tail.first().and_then(hex), tail.get(1).and_then(hex)) else {
                return Err(RequestError::MalformedQuery);
            };
            out.push(hi << 4 | lo);
            rest = &tail[2..];
        } else {
            // A run of plain bytes up to the next escape, copied at once.
            let run = rest.iter().position(special).unwrap_or(rest.len());
            out.extend_from_slice(&rest[..run]);
            rest = &rest[run..];
        }
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| RequestError::MalformedQuery)
}

fn hex(c: &u8) -> Option<u8> {
    let c = *c;
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
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
    fn pieces_without_values_and_empty_pieces() {
        let q = QueryParams::parse(Some("&a&&b=1=2&")).unwrap();
        assert_eq!(q.pairs.len(), 2);
        assert_eq!(q.get("a"), Some(""));
        assert_eq!(q.get("b"), Some("1=2"));
        let q = QueryParams::parse(Some("a%26b=c%3Dd%2B")).unwrap();
        assert_eq!(q.get("a&b"), Some("c=d+"));
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
