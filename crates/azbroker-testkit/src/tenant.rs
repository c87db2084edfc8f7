//! Tenants as they appear in the authority path: syntax checks (GUID, DNS domain or one of the
//! multi-tenant keywords) and the deterministic tenant id (`tid`) the fake assigns to each.

use uuid::Uuid;

use crate::error::EntraError;

/// The tenant id (`tid`) the fake authority uses for `tenant`.
///
/// A GUID (hyphenated form) passes through lower-cased; any other name — a domain such as
/// `contoso.onmicrosoft.com`, or a keyword — maps to a UUID v5 in the DNS namespace over its
/// lower-cased form, so every caller that knows the name can predict the id.
pub fn tenant_guid(tenant: &str) -> String {
    match parse_guid(tenant) {
        Some(guid) => guid.to_string(),
        None => Uuid::new_v5(&Uuid::NAMESPACE_DNS, tenant.to_ascii_lowercase().as_bytes()).to_string(),
    }
}

/// What kind of authority segment a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TenantKind {
    Guid,
    Domain,
    /// `common`, `organizations` or `consumers`: not a single tenant.
    MultiTenant,
}

/// A syntactically valid tenant segment from a request path.
#[derive(Debug, Clone)]
pub(crate) struct Tenant {
    /// Exactly as it appeared in the path (after percent-decoding).
    pub path: String,
    /// `tenant_guid(path)`.
    pub tid: String,
    pub kind: TenantKind,
}

impl Tenant {
    /// Accepts a GUID, a DNS domain or `common`/`organizations`/`consumers`; anything else is
    /// 400 `invalid_request` AADSTS900023, as Entra answers.
    pub(crate) fn parse(segment: &str) -> Result<Tenant, EntraError> {
        let kind = if parse_guid(segment).is_some() {
            TenantKind::Guid
        } else if ["common", "organizations", "consumers"].iter().any(|k| k.eq_ignore_ascii_case(segment)) {
            TenantKind::MultiTenant
        } else if is_domain(segment) {
            TenantKind::Domain
        } else {
            return Err(EntraError::bad_request(
                "invalid_request",
                900_023,
                format!(
                    "Specified tenant identifier '{}' is neither a valid DNS name, nor a valid external domain.",
                    printable(segment)
                ),
            ));
        };
        Ok(Tenant { path: segment.to_owned(), tid: tenant_guid(segment), kind })
    }

    /// The `{tenantid}` part of issuer URLs: our tid for a concrete tenant, the literal template
    /// for multi-tenant authorities (as Entra's metadata does).
    pub(crate) fn issuer_tid(&self) -> &str {
        match self.kind {
            TenantKind::MultiTenant => "{tenantid}",
            TenantKind::Guid | TenantKind::Domain => &self.tid,
        }
    }

    /// The authority segment Entra's metadata uses in endpoint URLs: the GUID for a concrete
    /// tenant (domains are resolved), the keyword otherwise.
    pub(crate) fn endpoint_segment(&self) -> &str {
        match self.kind {
            TenantKind::MultiTenant => &self.path,
            TenantKind::Guid | TenantKind::Domain => &self.tid,
        }
    }
}

fn parse_guid(s: &str) -> Option<Uuid> {
    // Only the 36-character hyphenated form is a tenant GUID; `Uuid::try_parse` also takes
    // simple, braced and URN forms.
    if s.len() == 36 { Uuid::try_parse(s).ok() } else { None }
}

fn is_domain(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Keeps error messages short and printable whatever the client sent.
pub(crate) fn printable(s: &str) -> String {
    s.chars().take(256).map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_passes_through_lowercased() {
        let g = "72F988BF-86F1-41AF-91AB-2D7CD011DB47";
        assert_eq!(tenant_guid(g), g.to_lowercase());
        assert_eq!(Tenant::parse(g).unwrap().kind, TenantKind::Guid);
    }

    #[test]
    fn domains_map_deterministically_and_case_insensitively() {
        let a = tenant_guid("Contoso.onmicrosoft.com");
        assert_eq!(a, tenant_guid("contoso.onmicrosoft.com"));
        assert_ne!(a, tenant_guid("fabrikam.onmicrosoft.com"));
        assert!(Uuid::try_parse(&a).is_ok());
        assert_eq!(Tenant::parse("contoso.com").unwrap().kind, TenantKind::Domain);
    }

    #[test]
    fn keywords_and_bad_syntax() {
        for k in ["common", "organizations", "Consumers"] {
            assert_eq!(Tenant::parse(k).unwrap().kind, TenantKind::MultiTenant);
        }
        for bad in ["", "contoso", "-a.com", "a..com", "a b.com", "72f988bf86f141af91ab2d7cd011db47"] {
            let err = Tenant::parse(bad).unwrap_err();
            assert_eq!((err.error(), err.code()), ("invalid_request", 900_023), "{bad:?}");
        }
    }
}
