//! The personal state of a shared machine (`[server] self_service`): which local user (uid) has a
//! personal login, the tenant their profile serves, and their personal workspaces. Kept in
//! `state_dir/personal.json` (0600, written atomically in the daemon's own directory), never in
//! the config file; the refresh tokens themselves live in the encrypted login store under the
//! login name `_u<uid>`.
//!
//! What a request may get is decided by the runtime snapshot alone, so this state only ever
//! reaches requests through [`Personal::extend`], which adds each user's profiles, bindings and
//! access rules to a generation being built; every change here is followed by building and
//! publishing the next generation ([`Personal::republish`]). A user counts only while their Unix
//! account still exists under the same name and their login holds a refresh token: a deleted
//! user (or a uid reused by someone else) keeps nothing usable.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use azbroker_core::personal::{PersonalOf, PersonalProfiles, profile_name};
use azbroker_core::{CacheKey, ProfileAccess, ProfileBinding, ProfileName, TenantId, Users};
use azbroker_entra::{AZURE_CLI_CLIENT_ID, UserLogin, UserLogins};
use azbroker_server::RuntimeSpec;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::daemon::owned_dir::OwnedDir;

/// File name of the personal state in the state directory.
pub const FILE: &str = "personal.json";
/// What personal logins' cache keys carry as their "settings" (they have no config section).
const FINGERPRINT: &str = "personal";
/// The window of the sign-in rate limit.
const SIGN_IN_WINDOW: Duration = Duration::from_secs(3600);

/// One user's personal state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The Unix user name at sign-in; a uid whose name changed is someone else.
    pub name: String,
    /// The tenant their personal profile serves (`--tenant`, else their home tenant once known).
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub workspaces: BTreeMap<String, Workspace>,
}

/// A personal Azure ML workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub subscription_id: String,
    pub resource_group: String,
    pub workspace_name: String,
    pub tenant: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Saved {
    #[serde(default)]
    users: BTreeMap<u32, Entry>,
}

/// The personal state, and the lock that orders every publication of the daemon.
pub struct Personal {
    state_dir: PathBuf,
    saved: Mutex<Saved>,
    /// Held while a generation is built and published (reloads and personal changes alike), so
    /// publications never interleave.
    publish: Mutex<()>,
    /// Sign-in starts per uid, for the rate limit.
    starts: Mutex<HashMap<u32, Vec<Instant>>>,
}

impl Personal {
    /// Loads `state_dir/personal.json` (absent: nobody has signed in yet).
    pub fn load(state_dir: &Path) -> Result<Self> {
        let path = state_dir.join(FILE);
        let saved = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is damaged; move it away to start over", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Self {
            state_dir: state_dir.to_owned(),
            saved: Mutex::new(saved),
            publish: Mutex::new(()),
            starts: Mutex::new(HashMap::new()),
        })
    }

    /// The personal login name of `uid`.
    pub fn login_name(uid: u32) -> ProfileName {
        profile_name(uid, None)
    }

    /// Every known user's personal login, for the login service (signed in or not: a sign-in
    /// needs its login registered).
    pub fn user_logins(&self) -> Vec<UserLogin> {
        self.lock()
            .users
            .iter()
            .map(|(uid, e)| UserLogin {
                name: Self::login_name(*uid).to_string(),
                client_id: AZURE_CLI_CLIENT_ID.to_owned(),
                authority_tenant: e
                    .tenant
                    .as_deref()
                    .and_then(|t| TenantId::parse(t).ok())
                    .unwrap_or_else(organizations),
            })
            .collect()
    }

    /// Every uid with personal state.
    pub fn uids(&self) -> Vec<u32> {
        self.lock().users.keys().copied().collect()
    }

    /// A copy of `uid`'s entry.
    pub fn entry(&self, uid: u32) -> Option<Entry> {
        self.lock().users.get(&uid).cloned()
    }

    /// Changes `uid`'s entry (`None` removes it) and saves the state.
    pub fn update<T>(&self, uid: u32, change: impl FnOnce(&mut Option<Entry>) -> T) -> Result<T> {
        let mut saved = self.lock();
        let mut entry = saved.users.remove(&uid);
        let out = change(&mut entry);
        if let Some(e) = entry {
            saved.users.insert(uid, e);
        }
        let bytes = serde_json::to_vec_pretty(&*saved)?;
        OwnedDir::prepare(&self.state_dir, 0o700)?.write(FILE, &bytes, 0o600)?;
        Ok(out)
    }

    /// Counts a sign-in start of `uid`; false when they already started `per_hour` this hour.
    pub fn allow_sign_in(&self, uid: u32, per_hour: u32) -> bool {
        let mut starts = self.starts.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let mine = starts.entry(uid).or_default();
        mine.retain(|t| now.duration_since(*t) < SIGN_IN_WINDOW);
        if mine.len() >= per_hour as usize {
            return false;
        }
        mine.push(now);
        true
    }

    /// Orders publications: hold the guard while building and publishing a generation.
    pub fn publish_lock(&self) -> MutexGuard<'_, ()> {
        self.publish.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds every usable user's personal profiles to `spec`: selection (by uid), an access rule
    /// admitting their uid alone, and an engine binding on their own login.
    pub fn extend(&self, spec: &mut RuntimeSpec, config: &Config, users: &Arc<UserLogins>) {
        if !config.server.self_service.enabled {
            return;
        }
        let saved = self.lock();
        let mut tables = Vec::new();
        let mut rules = Vec::new();
        for (uid, entry) in &saved.users {
            let login = Self::login_name(*uid);
            let stored = users.store().get(login.as_str()).filter(|s| s.refresh_token.is_some());
            let Some(stored) = stored else { continue };
            if unix_name(*uid).as_deref() != Some(entry.name.as_str()) {
                continue;
            }
            let home = stored.account.as_ref().and_then(|a| a.home_tenant.clone());
            let Some(tenant) = entry.tenant.clone().or(home).and_then(|t| TenantId::parse(&t).ok()) else {
                continue;
            };
            let source = users.source(login.as_str());
            let mut mine = PersonalOf { names: HashMap::new(), default: Some(login.clone()) };
            let profiles = std::iter::once((entry.name.to_ascii_lowercase(), None, tenant)).chain(
                entry.workspaces.iter().filter_map(|(name, w)| {
                    Some((name.clone(), Some(name.as_str()), TenantId::parse(&w.tenant).ok()?))
                }),
            );
            for (short, workspace, tenant) in profiles {
                let profile = profile_name(*uid, workspace);
                let key = CacheKey::new(&login, FINGERPRINT, &tenant);
                let binding = ProfileBinding::new(profile.clone(), tenant, source.clone(), Vec::new(), key);
                spec.bindings.push(Arc::new(binding.with_cache(config.server.hardening.cache, None)));
                rules.push((
                    profile.clone(),
                    ProfileAccess { users: Users::uids([*uid]), resources: None, remote: false },
                ));
                mine.names.insert(short, profile);
            }
            tables.push((*uid, mine));
        }
        drop(saved);
        spec.directory = std::mem::take(&mut spec.directory).with_personal(PersonalProfiles::new(tables));
        spec.policy = spec.policy.clone().with_profiles(rules);
    }

    fn lock(&self) -> MutexGuard<'_, Saved> {
        self.saved.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The Unix user name of `uid` now; `None` when the account is gone.
pub fn unix_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name)
}

/// The uid of user `name`, or `name` itself when it is a number (a user already deleted).
pub fn uid_of(name: &str) -> Option<u32> {
    if let Ok(uid) = name.parse() {
        return Some(uid);
    }
    nix::unistd::User::from_name(name).ok().flatten().map(|u| u.uid.as_raw())
}

fn organizations() -> TenantId {
    TenantId::parse("organizations").expect("a valid tenant")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_reload_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let p = Personal::load(&state).unwrap();
        p.update(1001, |e| {
            *e = Some(Entry { name: "alice".into(), tenant: None, workspaces: BTreeMap::new() });
        })
        .unwrap();
        let again = Personal::load(&state).unwrap();
        assert_eq!(again.entry(1001).unwrap().name, "alice");
        assert_eq!(again.user_logins()[0].name, "_u1001");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(state.join(FILE)).unwrap().mode() & 0o777, 0o600);
        again.update(1001, |e| *e = None).unwrap();
        assert!(Personal::load(&state).unwrap().entry(1001).is_none());
    }

    #[test]
    fn sign_ins_are_rate_limited_per_uid() {
        let p = Personal::load(Path::new("/nonexistent")).unwrap();
        assert!(p.allow_sign_in(1, 2) && p.allow_sign_in(1, 2));
        assert!(!p.allow_sign_in(1, 2));
        assert!(p.allow_sign_in(2, 2), "another user has a bucket of their own");
    }
}
