//! Client keys on the daemon's side: the state file (`state_dir/client-keys.json`, 0600, written
//! atomically, holding each key's SHA-256 and metadata, never a key), loading it at start, and
//! `key create` / `key revoke` from the admin socket. Every change is written, then published as
//! a new runtime with the same config and the new key set (one swap), under one lock, so two
//! changes never lose each other and a revoked key stops working as the call returns.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use azbroker_core::admin_api::{AdminError, DEFAULT_KEY_TTL_SECS, KeyCreate, KeyCreated, KeyInfo};
use azbroker_core::keys::{self, KeyEntry, KeyRecord, KeySet, KeyState, KeyUsage};
use azbroker_core::{ProfileName, Resource, unix_now};
use azbroker_server::AppState;
use serde::{Deserialize, Serialize};

use crate::daemon::runtime;
use crate::daemon::state::write_private;

/// The state file's name in `state_dir`.
pub const KEYS_FILE: &str = "client-keys.json";

/// The state file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
struct KeysFile {
    keys: Vec<KeyRecord>,
    /// Each key's use as last saved (on every change and at shutdown), by the key's hash, so
    /// `key list` keeps its last use and grant count across restarts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    usage: BTreeMap<String, StoredUsage>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct StoredUsage {
    /// Unix seconds; 0: never.
    last_use: u64,
    grants: u64,
}

impl KeysFile {
    /// `records` with the counters of `set` (the keys in force) for each.
    fn of(records: Vec<KeyRecord>, set: &KeySet) -> Self {
        let usage = (set.entries().iter())
            .filter(|k| records.iter().any(|r| r.hash == k.record.hash))
            .map(|k| {
                let used =
                    StoredUsage { last_use: k.usage.last_use().unwrap_or(0), grants: k.usage.grants() };
                (k.record.hash.clone(), used)
            })
            .filter(|(_, used)| used.grants > 0)
            .collect();
        Self { keys: records, usage }
    }
}

/// The daemon's client keys: where they are stored and where clients reach the daemon.
pub(crate) struct KeyStore {
    path: PathBuf,
    /// Held across write and publish.
    lock: Mutex<()>,
    app: AppState,
    /// `container_listen` and the loopback listeners, as bound, for what `key create` prints.
    container: Vec<SocketAddr>,
    loopback: Vec<SocketAddr>,
}

/// Loads the state file in `state_dir` (none yet: no keys) and publishes its keys; at start,
/// before any listener serves.
/// Records past [`keys::KEY_RETENTION_SECS`] are dropped from the file here.
pub(crate) fn publish_stored(state_dir: &Path, app: &AppState) -> Result<()> {
    let path = state_dir.join(KEYS_FILE);
    let stored = read(&path)?;
    let count = stored.keys.len();
    let records = prune(stored.keys, unix_now());
    let set = key_set(records.clone(), &KeySet::default(), &stored.usage);
    if records.len() != count {
        let bytes = serde_json::to_vec_pretty(&KeysFile::of(records.clone(), &set))?;
        write_private(&path, &bytes)?;
        tracing::info!(dropped = count - records.len(), "ended client keys past their retention dropped");
    }
    app.publish_keys(set);
    Ok(())
}

/// `records` without those whose retention after expiry or revocation is over, each undated
/// revocation dated `now` (so it goes one retention later).
fn prune(records: Vec<KeyRecord>, now: u64) -> Vec<KeyRecord> {
    records
        .into_iter()
        .filter(|r| r.retained(now))
        .map(|r| KeyRecord { revoked_at: r.revoked_at.or(r.revoked.then_some(now)), ..r })
        .collect()
}

impl KeyStore {
    /// The store of the keys [`publish_stored`] published, for `key create` / `key revoke`.
    pub(crate) fn new(
        state_dir: &Path,
        app: &AppState,
        container: Vec<SocketAddr>,
        loopback: Vec<SocketAddr>,
    ) -> Self {
        Self { path: state_dir.join(KEYS_FILE), lock: Mutex::new(()), app: app.clone(), container, loopback }
    }

    /// `key create`: checks the request against the runtime in force, mints the key, stores its
    /// hash, publishes it; the answer is the only place the key ever appears.
    pub(crate) fn create(&self, request: KeyCreate) -> Result<KeyCreated, AdminError> {
        let _held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let rt = self.app.runtime();
        check_name(&request.name)?;
        let profile =
            ProfileName::parse(&request.profile).ok().filter(|p| rt.profiles().contains_key(p)).ok_or_else(
                || AdminError::UnknownProfile(format!("'{}' is not a configured profile", request.profile)),
            )?;
        let resources = resources(&request, &profile, &runtime::config(&self.app))?;
        let now = unix_now();
        let current = rt.keys();
        if let Some(live) = current
            .entries()
            .iter()
            .find(|k| k.record.name == request.name && k.state(now) == KeyState::Valid)
        {
            return Err(AdminError::BadRequest(format!(
                "a key named '{}' exists (profile '{}'); revoke it first (`azbroker key revoke {}`) or pick another name",
                live.record.name, live.record.profile, live.record.name
            )));
        }
        let key = keys::generate();
        let record = KeyRecord {
            name: request.name.clone(),
            profile: profile.to_string(),
            resources,
            hash: keys::hash(key.expose().as_bytes()),
            created: now,
            expires: match request.ttl_secs.unwrap_or(DEFAULT_KEY_TTL_SECS) {
                0 => None,
                ttl => Some(now.saturating_add(ttl)),
            },
            revoked: false,
            revoked_at: None,
        };
        let mut records: Vec<KeyRecord> =
            current.entries().iter().map(|k| k.record.clone()).filter(|r| r.name != request.name).collect();
        records.push(record);
        let published = self.store(records, current)?;
        let info = published.entries().iter().find(|k| k.record.name == request.name).map(|k| k.info(now));
        let info = info.ok_or_else(|| AdminError::Unavailable("the new key did not publish".to_owned()))?;
        tracing::info!(key = %request.name, profile = %profile, "client key created");
        Ok(KeyCreated {
            key,
            info,
            container_listeners: self.container.iter().map(ToString::to_string).collect(),
            listeners: self.loopback.iter().map(ToString::to_string).collect(),
        })
    }

    /// `key revoke NAME`: marks it revoked, stores and publishes; it fails from the next request on.
    pub(crate) fn revoke(&self, name: &str) -> Result<KeyInfo, AdminError> {
        let _held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.app.runtime().keys().clone();
        if !current.entries().iter().any(|k| k.record.name == name) {
            return Err(AdminError::NotFound(format!(
                "no client key is named '{name}' (see `azbroker key list`)"
            )));
        }
        let records = current
            .entries()
            .iter()
            .map(|k| match k.record.name == name && !k.record.revoked {
                true => KeyRecord { revoked: true, revoked_at: Some(unix_now()), ..k.record.clone() },
                false => k.record.clone(),
            })
            .collect();
        let published = self.store(records, &current)?;
        tracing::info!(key = %name, "client key revoked");
        let now = unix_now();
        let info = published.entries().iter().find(|k| k.record.name == name).map(|k| k.info(now));
        info.ok_or_else(|| AdminError::NotFound(format!("no client key is named '{name}'")))
    }

    /// Writes `records`, then publishes them (usage counters carried over from `current`).
    /// Ended records past their retention are dropped on the way.
    fn store(&self, records: Vec<KeyRecord>, current: &KeySet) -> Result<Arc<KeySet>, AdminError> {
        let file = KeysFile::of(prune(records, unix_now()), current);
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| AdminError::Unavailable(format!("cannot encode the key file: {e}")))?;
        write_private(&self.path, &bytes).map_err(|e| {
            AdminError::Unavailable(format!("cannot write {}: {e:#}; nothing changed", self.path.display()))
        })?;
        let published = self.app.publish_keys(key_set(file.keys, current, &BTreeMap::new()));
        Ok(published.keys().clone())
    }

    /// Saves the keys' last use and grant counts (at shutdown), so `key list` shows them after
    /// a restart. Nothing to save (no key ever used): nothing written.
    pub(crate) fn save_usage(&self) -> Result<()> {
        let _held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.app.runtime().keys().clone();
        let records: Vec<KeyRecord> = current.entries().iter().map(|k| k.record.clone()).collect();
        let file = KeysFile::of(records, &current);
        if file.usage.is_empty() {
            return Ok(());
        }
        write_private(&self.path, &serde_json::to_vec_pretty(&file)?)
    }
}

/// The key set of `records`, each counting into its counters in `previous` (the same key before
/// this change), else into counters started from `stored` (the file's, at start), else new ones.
fn key_set(records: Vec<KeyRecord>, previous: &KeySet, stored: &BTreeMap<String, StoredUsage>) -> KeySet {
    let usage: BTreeMap<&str, &Arc<KeyUsage>> =
        previous.entries().iter().map(|k| (k.record.hash.as_str(), &k.usage)).collect();
    let entries = records
        .into_iter()
        .filter_map(|record| {
            let counters = match (usage.get(record.hash.as_str()), stored.get(&record.hash)) {
                (Some(live), _) => Arc::clone(live),
                (None, Some(saved)) => Arc::new(KeyUsage::new(saved.last_use, saved.grants)),
                (None, None) => Arc::default(),
            };
            let name = record.name.clone();
            let entry = KeyEntry::new(record, counters);
            if entry.is_none() {
                tracing::warn!(key = %name, "client key entry is damaged (hash, profile or resource); ignored");
            }
            entry.map(Arc::new)
        })
        .collect();
    KeySet::new(entries)
}

fn read(path: &Path) -> Result<KeysFile> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!("{} is not a client key file; move it away to start with no keys", path.display())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeysFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Names are what `key list`, `key revoke` and the audit lines show: short and plain.
fn check_name(name: &str) -> Result<(), AdminError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
        return Err(AdminError::BadRequest(format!(
            "key name '{name}': use 1 to 64 letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

/// The key's resource list: as asked (each within the profile's `allowed_resources`, if any),
/// else the profile's `allowed_resources`, else `None` (any).
fn resources(
    request: &KeyCreate,
    profile: &ProfileName,
    config: &crate::config::Config,
) -> Result<Option<Vec<String>>, AdminError> {
    let allowed = config.profiles.get(profile).and_then(|p| p.access.resources.as_ref());
    if request.resources.is_empty() {
        return Ok(allowed.map(|list| list.iter().map(|r| r.as_str().to_owned()).collect()));
    }
    let mut out = Vec::new();
    for raw in &request.resources {
        let resource = Resource::parse(raw).map_err(|e| AdminError::InvalidResource(e.to_string()))?;
        if let Some(list) = allowed
            && !azbroker_core::ResourceAllowList::new(list).allows(&resource)
        {
            return Err(AdminError::BadRequest(format!(
                "profile '{profile}' does not allow resource '{raw}' (its allowed_resources); a key cannot widen them"
            )));
        }
        out.push(resource.as_str().to_owned());
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        for ok in ["dev", "ci.build-1", "A_b"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "x/y", "é", &"n".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usage_counters_follow_the_key_across_sets() {
        let key = keys::generate();
        let record = KeyRecord {
            name: "dev".into(),
            profile: "fab".into(),
            resources: None,
            hash: keys::hash(key.expose().as_bytes()),
            created: 1,
            expires: None,
            revoked: false,
            revoked_at: None,
        };
        let first = key_set(vec![record.clone()], &KeySet::default(), &BTreeMap::new());
        first.entries()[0].usage.granted(5);
        let second = key_set(vec![KeyRecord { revoked: true, ..record }], &first, &BTreeMap::new());
        assert_eq!(second.entries()[0].usage.grants(), 1);
        assert_eq!(second.entries()[0].state(6), KeyState::Revoked);
    }

    #[test]
    fn the_state_file_drops_keys_past_their_retention_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let now = unix_now();
        let day = 86_400;
        let record = |name: &str, expires: Option<u64>, revoked: bool, revoked_at: Option<u64>| KeyRecord {
            name: name.into(),
            profile: "fab".into(),
            resources: None,
            hash: keys::hash(name.as_bytes()),
            created: now - 30 * day,
            expires,
            revoked,
            revoked_at,
        };
        let stored = vec![
            record("live", None, false, None),
            record("expired-long-ago", Some(now - 8 * day), false, None),
            record("expired-yesterday", Some(now - day), false, None),
            record("revoked-long-ago", None, true, Some(now - 8 * day)),
            record("revoked-undated", None, true, None),
        ];
        let path = dir.path().join(KEYS_FILE);
        let usage = [(keys::hash(b"live"), StoredUsage { last_use: now - day, grants: 7 })].into();
        std::fs::write(&path, serde_json::to_vec(&KeysFile { keys: stored, usage }).unwrap()).unwrap();
        let engine = azbroker_core::Engine::new(azbroker_core::EngineConfig::default(), vec![]);
        let directory = azbroker_core::Directory::new([], None, Default::default()).unwrap();
        let spec =
            azbroker_server::RuntimeSpec::new(directory, azbroker_core::AccessPolicy::unrestricted(), vec![]);
        let app = AppState::new(engine, spec, azbroker_server::RuntimeSecrets::default()).unwrap();
        publish_stored(dir.path(), &app).unwrap();
        let names = |records: &[KeyRecord]| records.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        let kept = read(&path).unwrap().keys;
        assert_eq!(names(&kept), ["live", "expired-yesterday", "revoked-undated"]);
        assert!(kept[2].revoked_at.is_some_and(|at| at >= now), "the undated revocation is dated now");
        let published: Vec<_> = app.runtime().keys().entries().iter().map(|k| k.record.clone()).collect();
        assert_eq!(names(&published), names(&kept));
        // The use saved before the restart comes back with the key, and is saved again at stop.
        let live = app.runtime().keys().entries()[0].clone();
        assert_eq!((live.usage.last_use(), live.usage.grants()), (Some(now - day), 7));
        live.usage.granted(now);
        KeyStore::new(dir.path(), &app, vec![], vec![]).save_usage().unwrap();
        let saved = read(&path).unwrap();
        assert_eq!(saved.usage[&keys::hash(b"live")], StoredUsage { last_use: now, grants: 8 });
        assert_eq!(saved.usage.len(), 1, "unused keys carry no counters");
        assert_eq!(names(&saved.keys), names(&kept));
    }
}
