//! Turning a request into a profile: finds the identity selector a dialect accepts, then applies
//! core's `Directory` rules (path prefix, listener, selector alias, caller default, global default).
//!
//! The rules themselves live in `azbroker_core::select`; this module never re-implements them and
//! never falls back silently when an explicit selector is unknown.

use std::borrow::Cow;

use azbroker_core::{IdSelector, ProfileName, Selection};

use crate::error::RequestError;
use crate::query::QueryParams;
use crate::runtime::Runtime;

/// A user-assigned identity selector found in a request (`client_id=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selector<'q> {
    pub(crate) param: &'static str,
    pub(crate) value: Cow<'q, str>,
}

/// The profile named by a `/p/{profile}` path prefix, set when the path is canonicalised.
#[derive(Debug, Clone)]
pub(crate) struct PathProfile(pub(crate) String);

/// Takes the selector among `names` out of the query. Empty values count as absent; two
/// selectors in one request are refused.
pub(crate) fn take_selector<'q>(
    query: &mut QueryParams<'q>,
    names: &[&'static str],
) -> Result<Option<Selector<'q>>, RequestError> {
    let mut found: Option<Selector<'q>> = None;
    for &param in names {
        let Some(value) = query.take(param).filter(|v| !v.is_empty()) else { continue };
        if let Some(first) = &found {
            return Err(RequestError::ConflictingSelectors(first.param, param));
        }
        found = Some(Selector { param, value });
    }
    Ok(found)
}

/// Picks the profile for a request by the rules of generation `rt`.
pub(crate) fn profile(
    rt: &Runtime,
    path_profile: Option<&PathProfile>,
    listener_profile: Option<&ProfileName>,
    selector: Option<&Selector<'_>>,
    uid: Option<u32>,
) -> Result<ProfileName, RequestError> {
    let selection = Selection {
        path_profile: path_profile.map(|p| p.0.as_str()),
        listener_profile,
        id: selector.map(|s| IdSelector { param: s.param, value: &s.value }),
        uid,
    };
    rt.select(&selection).map_err(RequestError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["client_id", "object_id", "msi_res_id"];

    #[test]
    fn one_selector_is_taken() {
        let mut q = QueryParams::parse(Some("client_id=abc&resource=r")).unwrap();
        let s = take_selector(&mut q, NAMES).unwrap().unwrap();
        assert_eq!((s.param, s.value.as_ref()), ("client_id", "abc"));
    }

    #[test]
    fn empty_selectors_are_absent() {
        let mut q = QueryParams::parse(Some("client_id=&object_id=o")).unwrap();
        let s = take_selector(&mut q, NAMES).unwrap().unwrap();
        assert_eq!(s.param, "object_id");
        let mut q = QueryParams::parse(Some("client_id=")).unwrap();
        assert_eq!(take_selector(&mut q, NAMES).unwrap(), None);
    }

    #[test]
    fn two_selectors_conflict() {
        let mut q = QueryParams::parse(Some("client_id=a&msi_res_id=b")).unwrap();
        assert!(matches!(
            take_selector(&mut q, NAMES),
            Err(RequestError::ConflictingSelectors("client_id", "msi_res_id"))
        ));
    }

    #[test]
    fn names_outside_the_dialect_are_ignored() {
        let mut q = QueryParams::parse(Some("clientid=a")).unwrap();
        assert_eq!(take_selector(&mut q, NAMES).unwrap(), None);
    }
}
