//! The `scope` parameter of app-only grants: exactly one `<resource>/.default` scope, mapped to
//! the v1 resource (the `aud` claim) by removing `/.default` and nothing else, so
//! `https://management.core.windows.net//.default` names `https://management.core.windows.net/`.

use crate::error::EntraError;
use crate::tenant::printable;

const DEFAULT_SUFFIX: &str = "/.default";

/// Returns the resource of a single `/.default` scope, or 400 `invalid_scope` AADSTS70011.
pub(crate) fn default_scope_resource(scope: Option<&str>) -> Result<String, EntraError> {
    let scope = scope.map(str::trim).unwrap_or_default();
    if scope.is_empty() {
        return Err(invalid_scope("The provided request must include a 'scope' input parameter.".into()));
    }
    let mut scopes = scope.split_ascii_whitespace();
    match (scopes.next(), scopes.next()) {
        (Some(only), None) => match only.strip_suffix(DEFAULT_SUFFIX) {
            Some(resource) if !resource.is_empty() => Ok(resource.to_owned()),
            _ => Err(invalid_scope(format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {} is not \
                 valid. Client credential flows must have a scope value with /.default suffixed to the \
                 resource identifier (application ID URI).",
                printable(only)
            ))),
        },
        _ => Err(invalid_scope(format!(
            "The provided value for the input parameter 'scope' is not valid. The scope {} is not valid. \
             Only a single resource's /.default scope is allowed in this flow.",
            printable(scope)
        ))),
    }
}

/// How deny-lists compare resources: case-insensitively, ignoring trailing slashes, so denying
/// `https://vault.azure.net` also denies `https://vault.azure.net/`.
pub(crate) fn normalise_resource(resource: &str) -> String {
    resource.trim_end_matches('/').to_ascii_lowercase()
}

fn invalid_scope(message: String) -> EntraError {
    EntraError::bad_request("invalid_scope", 70_011, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_the_default_suffix() {
        let ok = |s: &str| default_scope_resource(Some(s)).unwrap();
        assert_eq!(
            ok("https://management.core.windows.net//.default"),
            "https://management.core.windows.net/"
        );
        assert_eq!(ok("https://vault.azure.net/.default"), "https://vault.azure.net");
        assert_eq!(ok(" api://x/.default "), "api://x");
        assert_eq!(
            ok("00000003-0000-0000-c000-000000000000/.default"),
            "00000003-0000-0000-c000-000000000000"
        );
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [None, Some(""), Some("/.default"), Some("User.Read"), Some("a/.default b/.default")] {
            let err = default_scope_resource(bad).unwrap_err();
            assert_eq!((err.error(), err.code()), ("invalid_scope", 70_011), "{bad:?}");
        }
    }

    #[test]
    fn normalises_for_deny_lists() {
        assert_eq!(normalise_resource("HTTPS://Vault.azure.net//"), "https://vault.azure.net");
    }
}
