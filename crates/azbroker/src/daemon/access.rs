//! Applying the access-control config on this machine: user and group names resolved to ids
//! through the system's user database (NSS, so LDAP/SSSD users work too), the defaults filled in
//! (a user-mode daemon serves its own user and root; a system daemon with no list serves every
//! local user, with a warning), and the uid → groups resolver the server uses for
//! `allowed_groups` rules.
//!
//! Every unknown name is a problem reported with its key, like any other config error.

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::sync::Arc;

use azbroker_core::{AccessPolicy, ProfileAccess, ProfileName, ResourceAllowList, Users};
use azbroker_server::GroupResolver;
use nix::unistd::{Gid, Group, Uid, User};

use crate::config::{Config, GroupRef, UserRef};
use crate::paths;

/// The resolved policy, plus warnings worth printing at start (`check-config` prints them too).
pub struct Resolved {
    pub policy: AccessPolicy,
    pub user_defaults: HashMap<u32, ProfileName>,
    pub admin_gid: Option<u32>,
    pub warnings: Vec<String>,
}

/// Resolves every name in `config`; `Err` lists every one that does not exist here.
pub fn resolve(config: &Config) -> Result<Resolved, Vec<String>> {
    let me = paths::current_uid();
    let system = me == 0;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut profiles = Vec::new();
    for p in config.profiles.values() {
        let key = format!("profiles.{}", p.name);
        let users = if p.access.no_user_list() {
            if system {
                warnings.push(format!(
                    "profile '{}' serves every local user (a system daemon with no {key}.allowed_users or allowed_groups)",
                    p.name
                ));
                Users::Everyone
            } else {
                Users::uids([me])
            }
        } else {
            let mut uids = BTreeSet::new();
            let mut gids = BTreeSet::new();
            let mut anyone = false;
            for (i, u) in p.access.users.iter().flatten().enumerate() {
                match u {
                    UserRef::Anyone => anyone = true,
                    UserRef::Uid(uid) => {
                        uids.insert(*uid);
                    }
                    UserRef::Name(name) => match uid_of(name) {
                        Some(uid) => {
                            uids.insert(uid);
                        }
                        None => problems
                            .push(format!("{key}.allowed_users[{i}]: no user '{name}' on this system")),
                    },
                }
            }
            for (i, g) in p.access.groups.iter().flatten().enumerate() {
                match gid_of(g) {
                    Some(gid) => {
                        gids.insert(gid);
                    }
                    None => problems
                        .push(format!("{key}.allowed_groups[{i}]: no group '{}' on this system", show(g))),
                }
            }
            if anyone { Users::Everyone } else { Users::Only { uids, gids } }
        };
        let resources = p.access.resources.as_ref().map(ResourceAllowList::new);
        let remote = p.access.remote;
        if remote && !config.server.hardening.allow_non_loopback {
            problems.push(format!(
                "{key}.allow_remote_callers: needs server.allow_non_loopback = true (and a non-loopback listener); \
                 loopback listeners only ever see local callers"
            ));
        }
        profiles.push((p.name.clone(), ProfileAccess { users, resources, remote }));
    }
    let mut user_defaults = HashMap::new();
    for (user, profile) in &config.user_defaults {
        match user.parse::<u32>().ok().or_else(|| uid_of(user)) {
            Some(uid) => {
                user_defaults.insert(uid, profile.clone());
            }
            None => problems.push(format!("users.{user}: no user '{user}' on this system")),
        }
    }
    let admin_gid = match &config.server.hardening.admin_group {
        Some(g) => match gid_of(g) {
            Some(gid) => Some(gid),
            None => {
                problems.push(format!("server.admin_group: no group '{}' on this system", show(g)));
                None
            }
        },
        None => None,
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    warnings.extend(crate::config::trust::warnings(config));
    Ok(Resolved { policy: AccessPolicy::new(profiles), user_defaults, admin_gid, warnings })
}

/// A uid's groups (primary first) from the system's user database; just the uid's primary group
/// when the user has no name, nothing when the uid is unknown.
pub fn group_resolver() -> GroupResolver {
    Arc::new(|uid| {
        let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else { return Vec::new() };
        let primary = user.gid;
        let groups = CString::new(user.name.as_bytes())
            .ok()
            .and_then(|name| nix::unistd::getgrouplist(&name, primary).ok())
            .unwrap_or_default();
        let mut out = vec![primary.as_raw()];
        out.extend(groups.into_iter().map(Gid::as_raw).filter(|g| *g != primary.as_raw()));
        out
    })
}

/// One line for `check-config`: who may use a profile and for what.
pub fn describe(access: &ProfileAccess) -> String {
    let users = match &access.users {
        Users::Everyone => "every local user".to_owned(),
        Users::Only { uids, gids } => {
            let mut parts: Vec<String> = uids.iter().map(|u| format!("uid {u}")).collect();
            parts.extend(gids.iter().map(|g| format!("group {g}")));
            parts.push("root".into());
            parts.join(", ")
        }
    };
    let resources = match &access.resources {
        None => "any resource".to_owned(),
        Some(list) => format!("{} allowed resource(s)", list.len()),
    };
    format!("users: {users}; {resources}")
}

/// The groups whose members may use self-service (empty: every local user), or `None` when
/// `self_service` is off. A group that does not exist is an error, not "everyone".
pub fn self_service_gids(config: &Config) -> anyhow::Result<Option<Vec<u32>>> {
    let s = &config.server.self_service;
    if !s.enabled {
        return Ok(None);
    }
    let mut gids = Vec::new();
    for g in &s.groups {
        match gid_of(g) {
            Some(gid) => gids.push(gid),
            None => anyhow::bail!("server.self_service_groups: no group '{}' on this system", show(g)),
        }
    }
    Ok(Some(gids))
}

fn uid_of(name: &str) -> Option<u32> {
    User::from_name(name).ok().flatten().map(|u| u.uid.as_raw())
}

fn gid_of(g: &GroupRef) -> Option<u32> {
    match g {
        GroupRef::Gid(gid) => Some(*gid),
        GroupRef::Name(name) => Group::from_name(name).ok().flatten().map(|g| g.gid.as_raw()),
    }
}

fn show(g: &GroupRef) -> String {
    match g {
        GroupRef::Gid(gid) => gid.to_string(),
        GroupRef::Name(n) => n.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(profiles: &str) -> Config {
        let text = format!(
            "[logins.app]\nkind = \"service-principal\"\ntenant = \"t.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\n{profiles}"
        );
        Config::parse(&text, None).unwrap()
    }

    #[test]
    fn names_resolve_through_the_system_database() {
        let c = config(
            "[profiles.team]\nlogin = \"app\"\nallowed_users = [\"root\", 1234, \"nobody\"]\nallowed_groups = [\"root\"]\n\n[profiles.open]\nlogin = \"app\"\nallowed_users = [\"*\"]\n\n[users.nobody]\ndefault_profile = \"team\"\n",
        );
        let r = resolve(&c).unwrap();
        let team = r.policy.profile("team").unwrap();
        assert_eq!(
            team.users,
            Users::Only { uids: BTreeSet::from([0, 1234, 65534]), gids: BTreeSet::from([0]) }
        );
        assert_eq!(r.policy.profile("open").unwrap().users, Users::Everyone);
        assert_eq!(r.user_defaults.get(&65534).map(ProfileName::as_str), Some("team"));
    }

    #[test]
    fn unknown_names_are_problems_with_their_keys() {
        let c = config(
            "[profiles.team]\nlogin = \"app\"\nallowed_users = [\"no-such-user-azb\"]\nallowed_groups = [\"no-such-group-azb\"]\n\n[users.no-such-user-azb]\ndefault_profile = \"team\"\n",
        );
        let problems = resolve(&c).err().unwrap();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("profiles.team.allowed_users[0]: no user 'no-such-user-azb'"));
        assert!(problems[1].starts_with("profiles.team.allowed_groups[0]"));
        assert!(problems[2].starts_with("users.no-such-user-azb"));
    }

    #[test]
    fn a_profile_without_a_list_follows_the_daemon_mode() {
        let r = resolve(&config("[profiles.p]\nlogin = \"app\"\n")).unwrap();
        let users = &r.policy.profile("p").unwrap().users;
        if paths::current_uid() == 0 {
            assert_eq!(users, &Users::Everyone);
            assert!(r.warnings[0].contains("serves every local user"), "{:?}", r.warnings);
        } else {
            assert_eq!(users, &Users::uids([paths::current_uid()]));
        }
    }

    #[test]
    fn remote_callers_need_a_non_loopback_listener_to_be_allowed_at_all() {
        let profile = "[profiles.fleet]\nlogin = \"app\"\nallow_remote_callers = true\n";
        let problems = resolve(&config(profile)).err().unwrap();
        assert!(
            problems[0].starts_with("profiles.fleet.allow_remote_callers: needs server.allow_non_loopback")
        );
        let text = format!(
            "[server]\nallow_non_loopback = true\n[logins.app]\nkind = \"service-principal\"\ntenant = \"t.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n{profile}[profiles.local]\nlogin = \"app\"\n"
        );
        let r = resolve(&Config::parse(&text, None).unwrap()).unwrap();
        assert!(r.policy.profile("fleet").unwrap().remote);
        assert!(!r.policy.profile("local").unwrap().remote, "off by default");
    }

    #[test]
    fn groups_of_a_user_include_the_primary_group() {
        let groups = group_resolver()(65534);
        assert_eq!(groups.first(), Some(&65534), "nobody's primary group is nogroup");
        assert_eq!(group_resolver()(0).first(), Some(&0));
        assert!(group_resolver()(3_999_999).is_empty(), "unknown uid: no groups");
    }
}
