//! Who may use a profile, and for which resources: the per-profile access policy
//! (`allowed_users`, `allowed_groups`, `allowed_resources`) evaluated against the local user the
//! kernel says opened a connection.
//!
//! Pure decisions only: this module never looks anything up. The server learns a connection's uid
//! (and, when a rule needs them, the user's groups) and hands them in; the binary resolves user and
//! group names to ids when it loads the config. Every decision fails closed: an unknown caller is
//! refused by every restricted policy, and a profile the policy does not know is refused too.
//! Root (uid 0) is always admitted, since it can read the daemon's files anyway.
//!
//! A caller that is not a local user at all (another host or network namespace, reaching a
//! listener enabled with `allow_non_loopback`) has no uid: it is admitted only to a profile that
//! opts in (`allow_remote_callers`), and only on a dialect whose secret it presented — never on
//! one that asks for nothing but `Metadata: true`.

use std::collections::BTreeSet;
use std::fmt;

use crate::names::{ProfileName, Resource};

/// The local user on the other end of a connection, as the kernel reported it (`SO_PEERCRED` on a
/// unix socket, the socket table for loopback TCP). Request extension set by the connection
/// code; absent when the owner could not be determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Caller {
    pub uid: u32,
}

/// Who is asking, as far as the policy is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester<'a> {
    /// A peer on this machine: its local user when the kernel could say, else `None`.
    Local(Option<&'a Caller>),
    /// A peer that is not on this machine (no local user can be known). `with_secret`: the
    /// request passed its dialect's secret check (identity header, MSI secret, native key).
    Remote { with_secret: bool },
}

/// The local users a profile serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Users {
    /// Every identified local user.
    Everyone,
    /// The listed uids, members of the listed gids, and root.
    Only { uids: BTreeSet<u32>, gids: BTreeSet<u32> },
}

impl Users {
    /// Exactly these uids (plus root).
    pub fn uids(uids: impl IntoIterator<Item = u32>) -> Self {
        Self::Only { uids: uids.into_iter().collect(), gids: BTreeSet::new() }
    }
}

/// Resources a profile may be asked for, compared after [`Resource::normalized`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceAllowList(BTreeSet<String>);

impl ResourceAllowList {
    pub fn new<'a>(resources: impl IntoIterator<Item = &'a Resource>) -> Self {
        Self(resources.into_iter().map(Resource::normalized).collect())
    }

    pub fn allows(&self, resource: &Resource) -> bool {
        self.0.contains(&resource.normalized())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One profile's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileAccess {
    pub users: Users,
    /// `None`: any resource.
    pub resources: Option<ResourceAllowList>,
    /// Callers that are not local users may use the profile when they present the dialect's
    /// secret (`allow_remote_callers`).
    pub remote: bool,
}

impl ProfileAccess {
    /// Every local user, any resource, no remote callers.
    pub fn open() -> Self {
        Self { users: Users::Everyone, resources: None, remote: false }
    }
}

/// Why a request was refused by policy. `Display` is safe to send to the client and says what
/// would fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The connection's owner could not be determined.
    UnknownCaller,
    /// The caller is not among the profile's users.
    User { uid: u32, profile: ProfileName },
    /// The resource is not in the profile's allow-list.
    Resource { resource: Resource, profile: ProfileName },
    /// A caller from another host or network namespace, for a profile that serves none.
    Remote { profile: ProfileName },
    /// A caller from another host or network namespace on a dialect without a secret.
    RemoteWithoutSecret,
}

impl Denial {
    /// A stable, low-cardinality label for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownCaller => "unknown_caller",
            Self::User { .. } => "user_not_allowed",
            Self::Resource { .. } => "resource_not_allowed",
            Self::Remote { .. } => "remote_not_allowed",
            Self::RemoteWithoutSecret => "remote_without_secret",
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownCaller => f.write_str(
                "The broker could not determine which local user opened this connection, so it serves \
                 no token on it; connect from a process on this machine over loopback",
            ),
            Self::User { uid, profile } => write!(
                f,
                "Local user uid {uid} may not use profile '{profile}'; the broker's administrator can \
                 add the user to profiles.{profile}.allowed_users (or one of its groups to allowed_groups)"
            ),
            Self::Resource { resource, profile } => write!(
                f,
                "Resource '{resource}' is not allowed for profile '{profile}'; the broker's administrator \
                 can add it to profiles.{profile}.allowed_resources"
            ),
            Self::Remote { profile } => write!(
                f,
                "Profile '{profile}' serves only local users, and this connection comes from another host \
                 or network namespace; the broker's administrator can set \
                 profiles.{profile}.allow_remote_callers = true"
            ),
            Self::RemoteWithoutSecret => f.write_str(
                "Callers from another host or network namespace must use a dialect with a secret: set \
                 IDENTITY_ENDPOINT and IDENTITY_HEADER as `azbroker env` prints them",
            ),
        }
    }
}

/// The access rules of every profile.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    profiles: crate::FastMap<ProfileName, ProfileAccess>,
    /// `false` only for [`AccessPolicy::unrestricted`].
    restricted: bool,
}

impl AccessPolicy {
    /// No caller checks at all (unknown callers included): the behaviour of a bare router in
    /// tests. The daemon always installs a configured policy instead.
    pub fn unrestricted() -> Self {
        Self { profiles: crate::FastMap::default(), restricted: false }
    }

    /// The configured rules; profiles missing from `profiles` are refused to everyone.
    pub fn new(profiles: impl IntoIterator<Item = (ProfileName, ProfileAccess)>) -> Self {
        Self { profiles: profiles.into_iter().collect(), restricted: true }
    }

    /// This policy with rules for more profiles (the personal profiles of a shared machine).
    pub fn with_profiles(mut self, more: impl IntoIterator<Item = (ProfileName, ProfileAccess)>) -> Self {
        self.profiles.extend(more);
        self
    }

    /// The rules of `profile`, if configured.
    pub fn profile(&self, profile: &str) -> Option<&ProfileAccess> {
        self.profiles.get(profile)
    }

    /// True when deciding on `uid` for `profile` needs the user's group list.
    pub fn needs_groups(&self, profile: &str, uid: u32) -> bool {
        match self.profiles.get(profile).map(|a| &a.users) {
            Some(Users::Only { uids, gids }) => uid != 0 && !uids.contains(&uid) && !gids.is_empty(),
            _ => false,
        }
    }

    /// May `caller` (with `groups`, when [`needs_groups`](Self::needs_groups) said so) use `profile`?
    pub fn check_caller(
        &self,
        profile: &ProfileName,
        caller: Option<&Caller>,
        groups: &[u32],
    ) -> Result<(), Denial> {
        if !self.restricted {
            return Ok(());
        }
        let Some(caller) = caller else { return Err(Denial::UnknownCaller) };
        let denied = || Denial::User { uid: caller.uid, profile: profile.clone() };
        match self.profiles.get(profile).map(|a| &a.users) {
            None => Err(denied()),
            Some(Users::Everyone) => Ok(()),
            Some(Users::Only { uids, gids }) => {
                if caller.uid == 0 || uids.contains(&caller.uid) || groups.iter().any(|g| gids.contains(g)) {
                    Ok(())
                } else {
                    Err(denied())
                }
            }
        }
    }

    /// May `requester` use `profile`? For a local requester this is [`check_caller`]
    /// (`groups` as it says); a remote one needs the profile's opt-in and the dialect's secret.
    ///
    /// [`check_caller`]: Self::check_caller
    pub fn check_requester(
        &self,
        profile: &ProfileName,
        requester: Requester<'_>,
        groups: &[u32],
    ) -> Result<(), Denial> {
        match requester {
            Requester::Local(caller) => self.check_caller(profile, caller, groups),
            Requester::Remote { .. } if !self.restricted => Ok(()),
            Requester::Remote { with_secret: false } => Err(Denial::RemoteWithoutSecret),
            Requester::Remote { with_secret: true } => match self.profiles.get(profile) {
                Some(access) if access.remote => Ok(()),
                _ => Err(Denial::Remote { profile: profile.clone() }),
            },
        }
    }

    /// May `profile` be asked for `resource`?
    pub fn check_resource(&self, profile: &ProfileName, resource: &Resource) -> Result<(), Denial> {
        if !self.restricted {
            return Ok(());
        }
        match self.profiles.get(profile).map(|a| &a.resources) {
            Some(None) => Ok(()),
            Some(Some(list)) if list.allows(resource) => Ok(()),
            _ => Err(Denial::Resource { resource: resource.clone(), profile: profile.clone() }),
        }
    }
}

impl Default for AccessPolicy {
    fn default() -> Self {
        Self::unrestricted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> ProfileName {
        ProfileName::parse(s).unwrap()
    }

    fn res(s: &str) -> Resource {
        Resource::parse(s).unwrap()
    }

    fn policy() -> AccessPolicy {
        AccessPolicy::new([
            (name("open"), ProfileAccess::open()),
            (
                name("team"),
                ProfileAccess {
                    users: Users::Only { uids: [1000].into(), gids: [2000].into() },
                    resources: Some(ResourceAllowList::new(&[res("https://management.azure.com/")])),
                    remote: false,
                },
            ),
            (name("fleet"), ProfileAccess { remote: true, ..ProfileAccess::open() }),
        ])
    }

    #[test]
    fn remote_callers_need_the_opt_in_and_a_secret() {
        let p = policy();
        let with = Requester::Remote { with_secret: true };
        let without = Requester::Remote { with_secret: false };
        assert_eq!(p.check_requester(&name("fleet"), with, &[]), Ok(()));
        assert_eq!(p.check_requester(&name("fleet"), without, &[]), Err(Denial::RemoteWithoutSecret));
        assert_eq!(
            p.check_requester(&name("open"), with, &[]),
            Err(Denial::Remote { profile: name("open") })
        );
        assert!(p.check_requester(&name("other"), with, &[]).is_err(), "unknown profiles fail closed");
        // A local requester is judged by its uid, the opt-in changes nothing for it.
        assert_eq!(
            p.check_requester(&name("fleet"), Requester::Local(None), &[]),
            Err(Denial::UnknownCaller)
        );
        let d = Denial::Remote { profile: name("open") }.to_string();
        assert!(d.contains("profiles.open.allow_remote_callers"), "{d}");
        assert!(Denial::RemoteWithoutSecret.to_string().contains("IDENTITY_HEADER"));
    }

    #[test]
    fn listed_uids_groups_and_root_are_admitted() {
        let p = policy();
        let team = name("team");
        assert_eq!(p.check_caller(&team, Some(&Caller { uid: 1000 }), &[]), Ok(()));
        assert_eq!(p.check_caller(&team, Some(&Caller { uid: 0 }), &[]), Ok(()));
        assert_eq!(p.check_caller(&team, Some(&Caller { uid: 1001 }), &[5, 2000]), Ok(()));
        assert_eq!(
            p.check_caller(&team, Some(&Caller { uid: 1001 }), &[5]),
            Err(Denial::User { uid: 1001, profile: team.clone() })
        );
        assert!(p.needs_groups("team", 1001));
        assert!(!p.needs_groups("team", 1000));
        assert!(!p.needs_groups("open", 1001));
    }

    #[test]
    fn unknown_callers_and_unknown_profiles_fail_closed() {
        let p = policy();
        assert_eq!(p.check_caller(&name("open"), None, &[]), Err(Denial::UnknownCaller));
        assert!(p.check_caller(&name("other"), Some(&Caller { uid: 0 }), &[]).is_err());
        assert!(p.check_resource(&name("other"), &res("https://x")).is_err());
        // The unrestricted policy (bare routers in tests) admits everything.
        let u = AccessPolicy::unrestricted();
        assert_eq!(u.check_caller(&name("x"), None, &[]), Ok(()));
        assert_eq!(u.check_resource(&name("x"), &res("https://x")), Ok(()));
    }

    #[test]
    fn resources_compare_normalised() {
        let p = policy();
        let team = name("team");
        for ok in
            ["https://management.azure.com/", "https://management.azure.com", "HTTPS://Management.Azure.COM/"]
        {
            assert_eq!(p.check_resource(&team, &res(ok)), Ok(()), "{ok}");
        }
        for no in
            ["https://management.azure.com//", "https://vault.azure.net", "https://management.azure.com/x"]
        {
            assert!(p.check_resource(&team, &res(no)).is_err(), "{no}");
        }
        assert_eq!(p.check_resource(&name("open"), &res("https://anything")), Ok(()));
    }

    #[test]
    fn denials_say_what_to_change() {
        let d = Denial::User { uid: 1001, profile: name("team") };
        assert!(d.to_string().contains("uid 1001") && d.to_string().contains("profiles.team.allowed_users"));
        let d = Denial::Resource { resource: res("https://v"), profile: name("team") };
        assert!(d.to_string().contains("profiles.team.allowed_resources"));
        assert!(!Denial::UnknownCaller.to_string().to_lowercase().contains("unreachable"));
    }

    proptest! {
        /// A uid outside the lists and groups is never admitted; one inside always is.
        #[test]
        fn membership_decides(uid in 1u32..5000, listed in proptest::collection::btree_set(1u32..5000, 0..20),
                              groups in proptest::collection::vec(0u32..100, 0..8),
                              gids in proptest::collection::btree_set(0u32..100, 0..4)) {
            let team = name("team");
            let p = AccessPolicy::new([(team.clone(), ProfileAccess {
                users: Users::Only { uids: listed.clone(), gids: gids.clone() }, resources: None, remote: false })]);
            let expected = listed.contains(&uid) || groups.iter().any(|g| gids.contains(g));
            prop_assert_eq!(p.check_caller(&team, Some(&Caller { uid }), &groups).is_ok(), expected);
        }
    }
}
