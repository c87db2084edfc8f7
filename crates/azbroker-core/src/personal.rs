//! Personal profiles: on a shared machine (`[server] self_service`), each local user who signs in
//! gets profiles of their own — one named after their Unix user name, plus their personal
//! workspaces — that only their uid can select or use. This module owns the naming and the
//! (uid, name) → profile table the [`crate::Directory`] consults; the daemon builds it from its
//! personal state and it lives in the runtime snapshot like everything else selection reads.
//!
//! A personal profile's real name is `_u<uid>` (workspaces `_u<uid>.<name>`), a prefix config
//! files may not use ([`is_reserved`]), so engine cache keys and metrics never collide with a
//! configured profile or with another user's. Users see and select them by the short name.

use std::collections::HashMap;

use crate::names::ProfileName;

/// The profiles of one uid: the name they select each by, and their default.
#[derive(Debug, Clone, Default)]
pub struct PersonalOf {
    /// Short name (lower-case, as a `/p/{name}` prefix arrives) → profile.
    pub names: HashMap<String, ProfileName>,
    /// What a request of this uid that names no profile gets.
    pub default: Option<ProfileName>,
}

/// Every uid's personal profiles, and the owner of each.
#[derive(Debug, Clone, Default)]
pub struct PersonalProfiles {
    by_uid: HashMap<u32, PersonalOf>,
    owners: HashMap<ProfileName, u32>,
}

impl PersonalProfiles {
    /// Builds the table. Every profile of `of` must be a reserved name of that uid
    /// ([`profile_name`]); anything else is dropped, so a bug elsewhere can never give one
    /// user's profile to another.
    pub fn new(of: impl IntoIterator<Item = (u32, PersonalOf)>) -> Self {
        let mut by_uid = HashMap::new();
        let mut owners = HashMap::new();
        for (uid, mut mine) in of {
            mine.names.retain(|_, p| owned_by(p) == Some(uid));
            mine.default = mine.default.filter(|p| owned_by(p) == Some(uid));
            for p in mine.names.values().chain(mine.default.iter()) {
                owners.insert(p.clone(), uid);
            }
            by_uid.insert(uid, mine);
        }
        Self { by_uid, owners }
    }

    /// The uid a personal profile belongs to (`None` for configured profiles).
    pub fn owner(&self, profile: &ProfileName) -> Option<u32> {
        self.owners.get(profile).copied()
    }

    /// The profile `uid` means by `name`, if it is one of theirs.
    pub fn resolve(&self, uid: Option<u32>, name: &str) -> Option<&ProfileName> {
        let uid = uid?;
        let mine = self.by_uid.get(&uid)?;
        mine.names
            .get(&name.to_ascii_lowercase())
            .or_else(|| self.owners.get_key_value(name).filter(|(_, o)| **o == uid).map(|(k, _)| k))
    }

    /// The default personal profile of `uid`.
    pub fn default_of(&self, uid: Option<u32>) -> Option<&ProfileName> {
        self.by_uid.get(&uid?)?.default.as_ref()
    }

    /// Every personal profile.
    pub fn profile_names(&self) -> impl Iterator<Item = &ProfileName> {
        self.owners.keys()
    }

    /// The short names of `uid`'s profiles and the profile each selects, sorted.
    pub fn of(&self, uid: u32) -> Vec<(String, ProfileName)> {
        let mut out: Vec<_> = self
            .by_uid
            .get(&uid)
            .map(|m| m.names.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        out.sort();
        out
    }
}

/// The profile (and login) name of `uid`'s personal profile, or of their workspace `workspace`.
pub fn profile_name(uid: u32, workspace: Option<&str>) -> ProfileName {
    let raw = match workspace {
        None => format!("_u{uid}"),
        Some(ws) => format!("_u{uid}.{}", ws.to_ascii_lowercase()),
    };
    // `_`, digits, `.` and a workspace name that is itself a valid profile name.
    ProfileName::parse(&raw).unwrap_or_else(|_| ProfileName::parse(&format!("_u{uid}")).expect("valid"))
}

/// The uid a name of the reserved form `_u<uid>[.<anything>]` belongs to.
pub fn owned_by(name: &ProfileName) -> Option<u32> {
    let rest = name.as_str().strip_prefix("_u")?;
    let digits = rest.split('.').next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether a config may not use `name` for a login or profile (it is personal-profile space).
pub fn is_reserved(name: &str) -> bool {
    ProfileName::parse(name).is_ok_and(|n| owned_by(&n).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mine(uid: u32, names: &[&str]) -> (u32, PersonalOf) {
        let names: HashMap<String, ProfileName> = names
            .iter()
            .map(|n| {
                let ws = if *n == "me" { None } else { Some(*n) };
                ((*n).to_owned(), profile_name(uid, ws))
            })
            .collect();
        (uid, PersonalOf { names, default: Some(profile_name(uid, None)) })
    }

    #[test]
    fn names_are_reserved_and_owned() {
        assert_eq!(profile_name(1001, None).as_str(), "_u1001");
        assert_eq!(profile_name(1001, Some("ML")).as_str(), "_u1001.ml");
        assert_eq!(owned_by(&profile_name(1001, Some("ml"))), Some(1001));
        assert!(is_reserved("_u0") && is_reserved("_u12.x"));
        assert!(!is_reserved("_u") && !is_reserved("_ux1") && !is_reserved("u1") && !is_reserved("alice"));
    }

    #[test]
    fn each_uid_resolves_only_its_own() {
        let p = PersonalProfiles::new([mine(1001, &["me", "ml"]), mine(1002, &["me", "ml"])]);
        assert_eq!(p.resolve(Some(1001), "ml").unwrap().as_str(), "_u1001.ml");
        assert_eq!(p.resolve(Some(1002), "ML").unwrap().as_str(), "_u1002.ml");
        // The real name of another user's profile is not theirs to resolve.
        assert_eq!(p.resolve(Some(1002), "_u1001.ml"), None);
        assert_eq!(p.resolve(Some(1001), "_u1001.ml").unwrap().as_str(), "_u1001.ml");
        assert_eq!(p.resolve(None, "ml"), None);
        assert_eq!(p.resolve(Some(7), "ml"), None);
        assert_eq!(p.default_of(Some(1002)).unwrap().as_str(), "_u1002");
        assert_eq!(p.owner(&profile_name(1002, Some("ml"))), Some(1002));
        assert_eq!(p.owner(&ProfileName::parse("ml").unwrap()), None);
    }

    #[test]
    fn a_profile_of_another_uid_is_never_listed_as_mine() {
        let (_, theirs) = mine(1002, &["me"]);
        let p = PersonalProfiles::new([(1001, theirs)]);
        assert_eq!(p.resolve(Some(1001), "me"), None);
        assert_eq!(p.default_of(Some(1001)), None);
        assert_eq!(p.profile_names().count(), 0);
    }
}
