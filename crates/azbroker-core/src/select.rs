//! Which profile a request is for. The managed-identity protocols carry no tenant, so selection is
//! explicit, first match wins (DESIGN.md "How a client picks tenant/profile"):
//!
//! 1. a `/p/{profile}` path prefix;
//! 2. the profile that owns the listener the request arrived on (selectors are then ignored);
//! 3. an identity selector (`client_id`, `object_id`, `mi_res_id`, ...) matching a profile's name
//!    or one of its aliases;
//! 4. the caller's personal profile (shared machines, `crate::personal`), then their per-user
//!    default profile;
//! 5. the global default profile.
//!
//! Personal profiles resolve only for their owner's uid: a `/p/{name}` prefix or selector is
//! first looked up among the caller's own personal profiles, and another user's is never found.
//!
//! An unknown explicit selector is an error, never a silent fallback, unless the profile that
//! would otherwise serve the request sets `accept_any_client_id`.

use std::collections::HashMap;

use crate::names::{ProfileName, TenantId};
use crate::personal::PersonalProfiles;

/// What a profile contributes to selection.
#[derive(Debug, Clone, Default)]
pub struct ProfileSelectors {
    /// Values of `client_id`/`object_id`/`mi_res_id`/... that select this profile.
    pub aliases: Vec<String>,
    /// Treat an unknown identity selector as "this profile" when this profile is the fallback.
    pub accept_any_client_id: bool,
}

/// The selection table, built from config.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    profiles: HashMap<ProfileName, ProfileSelectors>,
    /// alias (lower-cased) → profile
    aliases: HashMap<String, ProfileName>,
    default_profile: Option<ProfileName>,
    user_defaults: HashMap<u32, ProfileName>,
    personal: PersonalProfiles,
}

/// A user-assigned identity selector as a dialect found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdSelector<'a> {
    /// The parameter name (`client_id`, `object_id`, `mi_res_id`, `clientid`, ...).
    pub param: &'a str,
    pub value: &'a str,
}

/// Everything a request offers for selection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Selection<'a> {
    pub path_profile: Option<&'a str>,
    pub listener_profile: Option<&'a ProfileName>,
    pub id: Option<IdSelector<'a>>,
    pub uid: Option<u32>,
}

/// Why no profile could be chosen. Each maps to a 400 in the dialect's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("profile '{0}' is not configured")]
    UnknownProfile(String),
    #[error("Identity not found")]
    IdentityNotFound { param: String, value: String },
    #[error("no profile is configured; add one to the config file (see azbroker.example.toml)")]
    NoDefault,
}

/// Error from building a directory: two profiles claim the same alias.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alias '{alias}' is claimed by both profile '{first}' and profile '{second}'")]
pub struct AliasConflict {
    pub alias: String,
    pub first: String,
    pub second: String,
}

impl Directory {
    /// Builds the table. Aliases compare case-insensitively (GUIDs arrive in either case).
    pub fn new(
        profiles: impl IntoIterator<Item = (ProfileName, ProfileSelectors)>,
        default_profile: Option<ProfileName>,
        user_defaults: HashMap<u32, ProfileName>,
    ) -> Result<Self, AliasConflict> {
        let profiles: HashMap<_, _> = profiles.into_iter().collect();
        let mut aliases: HashMap<String, ProfileName> = HashMap::new();
        let mut names: Vec<_> = profiles.keys().cloned().collect();
        names.sort();
        for name in &names {
            for alias in &profiles[name].aliases {
                let key = alias.to_ascii_lowercase();
                if let Some(first) = aliases.get(&key).filter(|first| *first != name) {
                    return Err(AliasConflict {
                        alias: alias.clone(),
                        first: first.to_string(),
                        second: name.to_string(),
                    });
                }
                aliases.insert(key, name.clone());
            }
        }
        Ok(Self { profiles, aliases, default_profile, user_defaults, personal: PersonalProfiles::default() })
    }

    /// This table with the personal profiles of a shared machine.
    pub fn with_personal(mut self, personal: PersonalProfiles) -> Self {
        self.personal = personal;
        self
    }

    pub fn personal(&self) -> &PersonalProfiles {
        &self.personal
    }

    /// The uid a personal profile belongs to; `None` for a configured profile.
    pub fn owner(&self, profile: &ProfileName) -> Option<u32> {
        self.personal.owner(profile)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.lookup(name).is_some()
    }

    pub fn default_profile(&self) -> Option<&ProfileName> {
        self.default_profile.as_ref()
    }

    /// Every profile that can be selected, personal ones included.
    pub fn profile_names(&self) -> impl Iterator<Item = &ProfileName> {
        self.profiles.keys().chain(self.personal.profile_names())
    }

    /// Applies the selection rules.
    pub fn select(&self, sel: &Selection<'_>) -> Result<ProfileName, SelectError> {
        if let Some(p) = sel.path_profile {
            return self
                .lookup_for(sel.uid, p)
                .cloned()
                .ok_or_else(|| SelectError::UnknownProfile(p.to_owned()));
        }
        if let Some(p) = sel.listener_profile {
            return Ok(p.clone());
        }
        let fallback = self
            .personal
            .default_of(sel.uid)
            .or_else(|| sel.uid.and_then(|uid| self.user_defaults.get(&uid)))
            .or(self.default_profile.as_ref());
        if let Some(id) = sel.id.filter(|id| !id.value.is_empty()) {
            if let Some(p) = self.aliases.get(&id.value.to_ascii_lowercase()) {
                return Ok(p.clone());
            }
            if let Some(p) = self.lookup_for(sel.uid, id.value) {
                return Ok(p.clone());
            }
            return match fallback {
                Some(p) if self.profiles.get(p).is_some_and(|s| s.accept_any_client_id) => Ok(p.clone()),
                _ => Err(SelectError::IdentityNotFound {
                    param: id.param.to_owned(),
                    value: id.value.to_owned(),
                }),
            };
        }
        fallback.cloned().ok_or(SelectError::NoDefault)
    }

    fn lookup(&self, name: &str) -> Option<&ProfileName> {
        self.profiles.get_key_value(name).map(|(k, _)| k)
    }

    /// `name` as `uid` means it: one of their personal profiles first, then a configured one.
    fn lookup_for(&self, uid: Option<u32>, name: &str) -> Option<&ProfileName> {
        self.personal.resolve(uid, name).or_else(|| self.lookup(name))
    }
}

/// A profile as tenant selection sees it (the native API, where a request names its tenant).
#[derive(Debug, Clone, Copy)]
pub struct TenantCandidate<'a> {
    pub name: &'a ProfileName,
    /// The tenant the profile is configured with (GUID or domain).
    pub tenant: &'a TenantId,
    /// The tenant id (`tid`) a token of this profile carried, once one was seen.
    pub learned: Option<&'a str>,
}

/// Where a request that names tenant `T` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantMatch {
    /// A profile configured with `T`, or known to issue tokens of `T`.
    Exact(ProfileName),
    /// No exact match; `T` is a GUID and these domain-configured profiles (tid not yet learned)
    /// may be it: each must be asked for a token and its `tid` compared before it is used.
    /// Empty when nothing can match.
    Unresolved(Vec<ProfileName>),
}

/// Finds the profile for tenant `tenant` among `candidates` (compared case-insensitively). Among
/// several exact matches, `preferred` (the profile the request would get without a tenant) wins,
/// else the first. A profile whose tenant is neither `tenant` nor resolvable to it is never
/// returned.
pub fn by_tenant<'a>(
    candidates: impl IntoIterator<Item = TenantCandidate<'a>>,
    tenant: &str,
    preferred: Option<&ProfileName>,
) -> TenantMatch {
    let tenant_is_guid = uuid_shaped(tenant);
    let (mut exact, mut unresolved) = (Vec::new(), Vec::new());
    for c in candidates {
        if c.tenant.as_str().eq_ignore_ascii_case(tenant)
            || c.learned.is_some_and(|t| t.eq_ignore_ascii_case(tenant))
        {
            exact.push(c.name);
        } else if tenant_is_guid && !c.tenant.is_guid() && c.learned.is_none() {
            unresolved.push(c.name.clone());
        }
    }
    match preferred.filter(|p| exact.contains(p)).or(exact.first().copied()) {
        Some(p) => TenantMatch::Exact(p.clone()),
        None => TenantMatch::Unresolved(unresolved),
    }
}

fn uuid_shaped(s: &str) -> bool {
    TenantId::parse(s).is_ok_and(|t| t.is_guid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ProfileName {
        ProfileName::parse(s).unwrap()
    }

    fn dir(accept_any: bool) -> Directory {
        Directory::new(
            [
                (
                    name("contoso"),
                    ProfileSelectors { aliases: vec!["AAAA-1".into()], accept_any_client_id: accept_any },
                ),
                (
                    name("fabrikam"),
                    ProfileSelectors { aliases: vec!["bbbb-2".into()], accept_any_client_id: false },
                ),
            ],
            Some(name("contoso")),
            HashMap::from([(1001, name("fabrikam"))]),
        )
        .unwrap()
    }

    fn id<'a>(v: &'a str) -> Option<IdSelector<'a>> {
        Some(IdSelector { param: "client_id", value: v })
    }

    #[test]
    fn path_prefix_wins() {
        let d = dir(false);
        let sel = Selection { path_profile: Some("fabrikam"), id: id("aaaa-1"), ..Default::default() };
        assert_eq!(d.select(&sel).unwrap(), name("fabrikam"));
        let sel = Selection { path_profile: Some("nope"), ..Default::default() };
        assert_eq!(d.select(&sel), Err(SelectError::UnknownProfile("nope".into())));
    }

    #[test]
    fn alias_case_insensitive_then_profile_name() {
        let d = dir(false);
        assert_eq!(d.select(&Selection { id: id("aaaa-1"), ..Default::default() }).unwrap(), name("contoso"));
        assert_eq!(
            d.select(&Selection { id: id("fabrikam"), ..Default::default() }).unwrap(),
            name("fabrikam")
        );
    }

    #[test]
    fn unknown_selector_is_an_error_unless_opted_in() {
        let sel = Selection { id: id("zzz"), ..Default::default() };
        assert!(matches!(dir(false).select(&sel), Err(SelectError::IdentityNotFound { .. })));
        assert_eq!(dir(true).select(&sel).unwrap(), name("contoso"));
    }

    #[test]
    fn empty_selector_counts_as_absent() {
        let sel = Selection { id: id(""), ..Default::default() };
        assert_eq!(dir(false).select(&sel).unwrap(), name("contoso"));
    }

    #[test]
    fn listener_then_uid_then_default() {
        let d = dir(false);
        let fab = name("fabrikam");
        assert_eq!(d.select(&Selection { uid: Some(1001), ..Default::default() }).unwrap(), fab);
        assert_eq!(d.select(&Selection { uid: Some(7), ..Default::default() }).unwrap(), name("contoso"));
        let con = name("contoso");
        let sel = Selection { listener_profile: Some(&con), uid: Some(1001), ..Default::default() };
        assert_eq!(d.select(&sel).unwrap(), con);
        // The listener's profile outranks an alias of another profile (rule 2 before rule 3).
        let sel = Selection { listener_profile: Some(&con), id: id("bbbb-2"), ..Default::default() };
        assert_eq!(d.select(&sel).unwrap(), con);
    }

    #[test]
    fn personal_profiles_come_first_and_only_for_their_owner() {
        use crate::personal::{PersonalOf, profile_name};
        let personal = |uid: u32| {
            let names = HashMap::from([
                ("me".to_owned(), profile_name(uid, None)),
                ("ml".to_owned(), profile_name(uid, Some("ml"))),
            ]);
            (uid, PersonalOf { names, default: Some(profile_name(uid, None)) })
        };
        let d = dir(false).with_personal(PersonalProfiles::new([personal(1001), personal(1002)]));
        let sel = |uid: u32, path: Option<&'static str>| Selection {
            uid: Some(uid),
            path_profile: path,
            ..Default::default()
        };
        // A plain request gets the caller's own personal profile, before the configured default.
        assert_eq!(d.select(&sel(1001, None)).unwrap().as_str(), "_u1001");
        assert_eq!(d.select(&sel(1002, None)).unwrap().as_str(), "_u1002");
        assert_eq!(d.select(&sel(7, None)).unwrap(), name("contoso"));
        // Two users' `ml` are two profiles; the other's real name is unknown to each.
        assert_eq!(d.select(&sel(1001, Some("ml"))).unwrap().as_str(), "_u1001.ml");
        assert_eq!(d.select(&sel(1002, Some("ml"))).unwrap().as_str(), "_u1002.ml");
        assert!(d.select(&sel(1002, Some("_u1001.ml"))).is_err());
        assert!(d.select(&Selection { path_profile: Some("_u1001"), ..Default::default() }).is_err());
        let by_id = Selection { uid: Some(1002), id: id("_u1001"), ..Default::default() };
        assert!(d.select(&by_id).is_err());
        // Configured profiles stay reachable by everyone.
        assert_eq!(d.select(&sel(1001, Some("fabrikam"))).unwrap(), name("fabrikam"));
        assert_eq!(d.owner(&profile_name(1002, None)), Some(1002));
        assert_eq!(d.profile_names().count(), 6);
    }

    #[test]
    fn no_default_is_reported() {
        let d = Directory::new([], None, HashMap::new()).unwrap();
        assert_eq!(d.select(&Selection::default()), Err(SelectError::NoDefault));
    }

    #[test]
    fn alias_conflicts_are_refused() {
        let r = Directory::new(
            [
                (name("a"), ProfileSelectors { aliases: vec!["X".into()], accept_any_client_id: false }),
                (name("b"), ProfileSelectors { aliases: vec!["x".into()], accept_any_client_id: false }),
            ],
            None,
            HashMap::new(),
        );
        assert!(r.is_err());
    }

    fn tenant(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    const GUID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    /// Three profiles: `a` (contoso by domain), `b` (configured by GUID), `c` (contoso, its tid
    /// learned as GUID).
    fn with_candidates(check: impl FnOnce([TenantCandidate<'_>; 3], [&ProfileName; 3])) {
        let (a, b, c) = (name("a"), name("b"), name("c"));
        let (contoso, guid) = (tenant("contoso.example"), tenant(GUID));
        let cands = [
            TenantCandidate { name: &a, tenant: &contoso, learned: None },
            TenantCandidate { name: &b, tenant: &guid, learned: None },
            TenantCandidate { name: &c, tenant: &contoso, learned: Some(GUID) },
        ];
        check(cands, [&a, &b, &c]);
    }

    #[test]
    fn tenant_matches_configured_or_learned_ids_and_prefers_the_usual_profile() {
        with_candidates(|cands, [a, b, c]| {
            assert_eq!(by_tenant(cands, "CONTOSO.example", None), TenantMatch::Exact(a.clone()));
            assert_eq!(by_tenant(cands, GUID, None), TenantMatch::Exact(b.clone()));
            assert_eq!(by_tenant(cands, GUID, Some(c)), TenantMatch::Exact(c.clone()));
            // A preferred profile of another tenant is not taken.
            assert_eq!(by_tenant(cands, "contoso.example", Some(b)), TenantMatch::Exact(a.clone()));
            assert_eq!(by_tenant(cands, "fabrikam.example", None), TenantMatch::Unresolved(vec![]));
        });
    }

    #[test]
    fn an_unknown_guid_lists_only_unresolved_domain_profiles() {
        with_candidates(|cands, [a, _, _]| {
            let other = "00000000-0000-0000-0000-000000000001";
            assert_eq!(by_tenant(cands, other, None), TenantMatch::Unresolved(vec![a.clone()]));
        });
    }
}
