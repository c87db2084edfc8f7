//! Validated names: profiles, tenants and resources. Parsed once at the edge, carried typed.

use std::borrow::{Borrow, Cow};
use std::fmt;

use serde::Serialize;

/// Why a name was refused. The message is safe to show to the client that sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {max} characters")]
    TooLong { what: &'static str, max: usize },
    #[error("{what} contains a space or control character")]
    BadCharacter { what: &'static str },
    #[error("{what} may contain only letters, digits, '-', '_' and '.'")]
    BadSyntax { what: &'static str },
}

/// The longest resource string accepted from a client.
pub const MAX_RESOURCE_LEN: usize = 2048;

/// A v1 resource (App ID URI or GUID) exactly as the client sent it. The cache keys on this exact
/// string and dialects echo it back; upstream scope and allow-list comparison derive from it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Resource(String);

impl Resource {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        Self::check(raw)?;
        Ok(Self(raw.to_owned()))
    }

    /// [`Resource::parse`] of a string the caller already owns (a decoded query value), without
    /// copying it again.
    pub fn parse_owned(raw: String) -> Result<Self, NameError> {
        Self::check(&raw)?;
        Ok(Self(raw))
    }

    fn check(raw: &str) -> Result<(), NameError> {
        const WHAT: &str = "resource";
        if raw.is_empty() {
            return Err(NameError::Empty { what: WHAT });
        }
        if raw.len() > MAX_RESOURCE_LEN {
            return Err(NameError::TooLong { what: WHAT, max: MAX_RESOURCE_LEN });
        }
        // ASCII (every resource clients send) is checked bytewise: whitespace and controls there
        // are exactly the bytes up to the space, and DEL.
        let bad = if raw.is_ascii() {
            raw.bytes().any(|b| b <= b' ' || b == 0x7f)
        } else {
            raw.chars().any(|c| c.is_whitespace() || c.is_control())
        };
        if bad {
            return Err(NameError::BadCharacter { what: WHAT });
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The v2 scope for this resource: `resource + "/.default"`, slashes *not* normalised
    /// (`https://management.core.windows.net/` → `https://management.core.windows.net//.default`).
    pub fn scope(&self) -> String {
        format!("{}/.default", self.0)
    }

    /// The form the token cache and the upstream call key on: scheme and host lower-cased (they
    /// name the same resource in any case), the path and every slash exactly as sent (the
    /// `//.default` rule: `https://x/` and `https://x` are different scopes). A resource that is
    /// not a URL (an application id) is lower-cased whole. Borrowed when already in that form, so
    /// the usual request allocates nothing. Dialects still echo the client's own string.
    pub fn cache_form(&self) -> Cow<'_, Resource> {
        let s = self.0.as_str();
        // Byte scans: a resource is a few dozen bytes, where `str::find`'s searcher set-up costs
        // more than the search (this runs on every cache hit).
        let b = s.as_bytes();
        let scheme_end = b.windows(3).position(|w| w == b"://");
        let folded_len = match scheme_end {
            Some(i) => i + 3 + b[i + 3..].iter().position(|&c| c == b'/').unwrap_or(b.len() - i - 3),
            None => s.len(),
        };
        if !s.as_bytes()[..folded_len].iter().any(u8::is_ascii_uppercase) {
            return Cow::Borrowed(self);
        }
        let mut out = String::with_capacity(s.len());
        out.push_str(&s[..folded_len].to_ascii_lowercase());
        out.push_str(&s[folded_len..]);
        Cow::Owned(Resource(out))
    }

    /// The form used to compare resources in allow-lists: scheme and host lower-cased, one
    /// trailing slash ignored. Never used as a cache key.
    pub fn normalized(&self) -> String {
        let s = self.0.strip_suffix('/').unwrap_or(&self.0);
        match s.split_once("://") {
            Some((scheme, rest)) => {
                let (host, path) = match rest.find('/') {
                    Some(i) => rest.split_at(i),
                    None => (rest, ""),
                };
                format!("{}://{}{}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase(), path)
            }
            None => s.to_ascii_lowercase(),
        }
    }
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An Entra tenant: a GUID, a verified domain, or `organizations`/`common`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        const WHAT: &str = "tenant";
        if raw.is_empty() {
            return Err(NameError::Empty { what: WHAT });
        }
        if raw.len() > 256 {
            return Err(NameError::TooLong { what: WHAT, max: 256 });
        }
        if !raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')) {
            return Err(NameError::BadSyntax { what: WHAT });
        }
        Ok(Self(raw.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for a GUID-shaped tenant id.
    pub fn is_guid(&self) -> bool {
        let b = self.0.as_bytes();
        b.len() == 36
            && b.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a profile (and of a login): used in URLs (`/p/{name}/...`), so kept URL-safe.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ProfileName(String);

impl ProfileName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        const WHAT: &str = "name";
        if raw.is_empty() {
            return Err(NameError::Empty { what: WHAT });
        }
        if raw.len() > 128 {
            return Err(NameError::TooLong { what: WHAT, max: 128 });
        }
        if !raw.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(NameError::BadSyntax { what: WHAT });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for Resource {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ProfileName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn cache_form_folds_scheme_and_host_only() {
        let form = |raw: &str| Resource::parse(raw).unwrap().cache_form().into_owned().0;
        assert_eq!(form("HTTPS://Vault.Azure.NET"), "https://vault.azure.net");
        assert_eq!(form("https://VAULT.azure.net/"), "https://vault.azure.net/");
        assert_eq!(form("https://Graph.microsoft.com//Path/X"), "https://graph.microsoft.com//Path/X");
        assert_eq!(form("api://AbC/Scope"), "api://abc/Scope");
        assert_eq!(form("2FF814A6-3304-4AB8-85CB-CD0E6F879C1D"), "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d");
        let plain = Resource::parse("https://management.azure.com/").unwrap();
        assert!(matches!(plain.cache_form(), Cow::Borrowed(_)), "no allocation when already folded");
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scope_keeps_slashes() {
        let r = Resource::parse("https://management.core.windows.net/").unwrap();
        assert_eq!(r.scope(), "https://management.core.windows.net//.default");
        let r = Resource::parse("https://vault.azure.net").unwrap();
        assert_eq!(r.scope(), "https://vault.azure.net/.default");
        let r = Resource::parse("api://x").unwrap();
        assert_eq!(r.scope(), "api://x/.default");
    }

    #[test]
    fn resource_rejects_absurd_input() {
        assert!(Resource::parse("").is_err());
        assert!(Resource::parse("a b").is_err());
        assert!(Resource::parse("a\nb").is_err());
        assert!(Resource::parse(&"x".repeat(MAX_RESOURCE_LEN + 1)).is_err());
        assert!(Resource::parse(&"x".repeat(MAX_RESOURCE_LEN)).is_ok());
        assert_eq!(Resource::parse_owned("api://x".to_owned()).unwrap(), Resource::parse("api://x").unwrap());
        assert!(Resource::parse_owned("a b".to_owned()).is_err());
    }

    #[test]
    fn ascii_fast_path_refuses_exactly_whitespace_and_controls() {
        for b in 0u8..0x80 {
            let c = char::from(b);
            let refused = Resource::parse(&format!("https://x{c}y/")).is_err();
            assert_eq!(refused, c.is_whitespace() || c.is_control(), "{b:#04x}");
        }
        // Outside ASCII the Unicode rules still apply.
        assert!(Resource::parse("https://x\u{a0}y/").is_err());
        assert!(Resource::parse("https://x\u{85}y/").is_err());
        assert!(Resource::parse("https://café/").is_ok());
    }

    #[test]
    fn normalized_ignores_case_of_host_and_one_slash() {
        let a = Resource::parse("HTTPS://Management.Azure.com/").unwrap();
        let b = Resource::parse("https://management.azure.com").unwrap();
        assert_eq!(a.normalized(), b.normalized());
        let c = Resource::parse("https://x.net/Path/").unwrap();
        assert_eq!(c.normalized(), "https://x.net/Path");
    }

    #[test]
    fn tenant_guid_detection() {
        assert!(TenantId::parse("72f988bf-86f1-41af-91ab-2d7cd011db47").unwrap().is_guid());
        assert!(!TenantId::parse("contoso.onmicrosoft.com").unwrap().is_guid());
        assert!(TenantId::parse("a/b").is_err());
        assert_eq!(TenantId::parse("Contoso.COM").unwrap().as_str(), "contoso.com");
    }

    proptest! {
        #[test]
        fn parsed_resource_round_trips(s in "[!-~]{1,200}") {
            let r = Resource::parse(&s).unwrap();
            prop_assert_eq!(r.as_str(), s.as_str());
            prop_assert!(r.scope().ends_with("/.default"));
        }

        #[test]
        fn resource_parse_never_panics(s in any::<String>()) {
            let _ = Resource::parse(&s);
        }
    }
}
