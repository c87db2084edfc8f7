//! Scoped client keys (`azbroker key create`): a random key bound to one profile, an optional
//! resource list and an expiry, that a caller outside the host's user model (a container) presents
//! in place of a dialect's secret.
//!
//! Only the SHA-256 of a key is ever kept ([`KeyRecord::hash`]); the value exists once, in the
//! answer to `key create`. A [`KeySet`] is the immutable set a server runtime holds: lookups hash
//! the presented value and compare it with every entry in constant time. Usage counters (last use,
//! grants) are atomics shared by every runtime that holds the same entry.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::names::{ProfileName, Resource};
use crate::policy::ResourceAllowList;
use crate::secret::Secret;

/// Every key starts with this, so a key is recognisable (in a leaked file, in a header).
pub const KEY_PREFIX: &str = "azbk_";

/// A new random key: the prefix and 32 random bytes, base64url without padding.
pub fn generate() -> Secret {
    Secret::new(format!("{KEY_PREFIX}{}", Secret::random(32).expose()))
}

/// The lowercase hex SHA-256 of a key: what the state file and the runtime keep.
pub fn hash(key: &[u8]) -> String {
    crate::secret::sha256_hex(key)
}

/// Does `presented` look like a key (rather than another secret)?
pub fn is_key(presented: &[u8]) -> bool {
    presented.starts_with(KEY_PREFIX.as_bytes())
}

/// A key as stored: its hash and metadata, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub name: String,
    pub profile: String,
    /// `None`: any resource the profile allows.
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    /// Hex SHA-256 of the key.
    pub hash: String,
    pub created: u64,
    /// Unix seconds; `None`: valid until revoked.
    #[serde(default)]
    pub expires: Option<u64>,
    #[serde(default)]
    pub revoked: bool,
    /// Unix seconds of the revocation (absent in files written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

/// How long a key that expired or was revoked stays in the state file (and in `key list`, so its
/// end can still be seen); after that it is dropped, so the file does not grow without bound.
pub const KEY_RETENTION_SECS: u64 = 7 * 86_400;

impl KeyRecord {
    /// When the key stopped working, if it has by `now` (a revocation without a date counts as
    /// `now`).
    pub fn ended(&self, now: u64) -> Option<u64> {
        if self.revoked {
            return Some(self.revoked_at.unwrap_or(now));
        }
        self.expires.filter(|&end| now >= end)
    }

    /// Whether the state file keeps this record at `now`: a live key always, an ended one for
    /// [`KEY_RETENTION_SECS`].
    pub fn retained(&self, now: u64) -> bool {
        self.ended(now).is_none_or(|end| now.saturating_sub(end) < KEY_RETENTION_SECS)
    }
}

/// How a key's use went: last use (unix seconds, 0 = never) and grants served.
#[derive(Debug, Default)]
pub struct KeyUsage {
    last_use: AtomicU64,
    grants: AtomicU64,
}

impl KeyUsage {
    pub fn new(last_use: u64, grants: u64) -> Self {
        Self { last_use: AtomicU64::new(last_use), grants: AtomicU64::new(grants) }
    }

    /// Records one granted token at `now`.
    pub fn granted(&self, now: u64) {
        self.last_use.store(now, Ordering::Relaxed);
        self.grants.fetch_add(1, Ordering::Relaxed);
    }

    pub fn last_use(&self) -> Option<u64> {
        Some(self.last_use.load(Ordering::Relaxed)).filter(|t| *t != 0)
    }

    pub fn grants(&self) -> u64 {
        self.grants.load(Ordering::Relaxed)
    }
}

/// One key of a [`KeySet`]: its record, its resource list ready to compare, its raw hash, its
/// usage counters.
pub struct KeyEntry {
    pub record: KeyRecord,
    pub profile: ProfileName,
    allow: Option<ResourceAllowList>,
    digest: Vec<u8>,
    pub usage: Arc<KeyUsage>,
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("name", &self.record.name)
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// Whether a key may be used at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Valid,
    Expired,
    Revoked,
}

impl KeyEntry {
    /// An entry for `record`, counting into `usage`. `None` when the stored hash is not hex
    /// SHA-256 or a resource does not parse (a damaged state file).
    pub fn new(record: KeyRecord, usage: Arc<KeyUsage>) -> Option<Self> {
        let digest = decode_hex(&record.hash).filter(|d| d.len() == 32)?;
        let profile = ProfileName::parse(&record.profile).ok()?;
        let allow = match &record.resources {
            None => None,
            Some(list) => {
                let parsed: Vec<Resource> =
                    list.iter().map(|r| Resource::parse(r).ok()).collect::<Option<_>>()?;
                Some(ResourceAllowList::new(&parsed))
            }
        };
        Some(Self { record, profile, allow, digest, usage })
    }

    pub fn state(&self, now: u64) -> KeyState {
        if self.record.revoked {
            KeyState::Revoked
        } else if self.record.expires.is_some_and(|e| now >= e) {
            KeyState::Expired
        } else {
            KeyState::Valid
        }
    }

    /// What `key list` shows of this key at `now`.
    pub fn info(&self, now: u64) -> crate::admin_api::KeyInfo {
        let state = match self.state(now) {
            KeyState::Valid => "valid",
            KeyState::Expired => "expired",
            KeyState::Revoked => "revoked",
        };
        crate::admin_api::KeyInfo {
            name: self.record.name.clone(),
            profile: self.record.profile.clone(),
            resources: self.record.resources.clone(),
            created: self.record.created,
            expires: self.record.expires,
            state: state.to_owned(),
            last_use: self.usage.last_use(),
            grants: self.usage.grants(),
        }
    }

    /// Is `resource` on the key's list (compared like `allowed_resources`)? No list: any.
    pub fn allows(&self, resource: &Resource) -> bool {
        self.allow.as_ref().is_none_or(|list| list.allows(resource))
    }
}

/// The keys a runtime accepts (valid, expired and revoked alike, so a refusal can say which).
#[derive(Debug, Default)]
pub struct KeySet {
    entries: Vec<Arc<KeyEntry>>,
}

impl KeySet {
    pub fn new(entries: Vec<Arc<KeyEntry>>) -> Self {
        Self { entries }
    }

    pub fn entries(&self) -> &[Arc<KeyEntry>] {
        &self.entries
    }

    /// The entry whose hash is the hash of `presented`. Every entry is compared, in constant time.
    pub fn lookup(&self, presented: &[u8]) -> Option<&Arc<KeyEntry>> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, presented);
        let mut found = None;
        for entry in &self.entries {
            if aws_lc_rs::constant_time::verify_slices_are_equal(&entry.digest, digest.as_ref()).is_ok() {
                found = Some(entry);
            }
        }
        found
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &Secret, resources: Option<Vec<String>>) -> KeyRecord {
        KeyRecord {
            name: "dev".into(),
            profile: "fab".into(),
            resources,
            hash: hash(key.expose().as_bytes()),
            created: 1,
            expires: Some(100),
            revoked: false,
            revoked_at: None,
        }
    }

    #[test]
    fn keys_are_prefixed_random_and_found_by_hash_only() {
        let (a, b) = (generate(), generate());
        assert!(a.expose().starts_with(KEY_PREFIX) && is_key(a.expose().as_bytes()));
        assert_eq!(a.expose().len(), KEY_PREFIX.len() + 43);
        assert_ne!(a, b);
        let entry = KeyEntry::new(record(&a, None), Arc::default()).unwrap();
        assert!(!format!("{entry:?}").contains(a.expose()));
        let set = KeySet::new(vec![Arc::new(entry)]);
        assert_eq!(set.lookup(a.expose().as_bytes()).unwrap().record.name, "dev");
        assert!(set.lookup(b.expose().as_bytes()).is_none());
        assert!(set.lookup(b"").is_none());
    }

    #[test]
    fn expiry_revocation_and_resources() {
        let key = generate();
        let list = Some(vec!["https://Vault.Azure.net/".to_owned()]);
        let mut entry = KeyEntry::new(record(&key, list), Arc::default()).unwrap();
        assert_eq!(entry.state(99), KeyState::Valid);
        assert_eq!(entry.state(100), KeyState::Expired);
        assert!(entry.allows(&Resource::parse("https://vault.azure.net").unwrap()));
        assert!(!entry.allows(&Resource::parse("https://management.azure.com/").unwrap()));
        entry.record.revoked = true;
        assert_eq!(entry.state(1), KeyState::Revoked);
        let mut damaged = record(&key, None);
        damaged.hash = "zz".into();
        assert!(KeyEntry::new(damaged, Arc::default()).is_none());
    }

    #[test]
    fn ended_keys_are_kept_for_the_retention_then_dropped() {
        let key = generate();
        let expiring = record(&key, None); // expires at 100
        assert_eq!(expiring.ended(99), None);
        assert!(expiring.retained(99) && expiring.retained(100 + KEY_RETENTION_SECS - 1));
        assert!(!expiring.retained(100 + KEY_RETENTION_SECS));
        let forever = KeyRecord { expires: None, ..record(&key, None) };
        assert!(forever.retained(u64::MAX));
        let revoked = KeyRecord { revoked: true, revoked_at: Some(50), ..forever.clone() };
        assert_eq!(revoked.ended(60), Some(50));
        assert!(revoked.retained(49 + KEY_RETENTION_SECS) && !revoked.retained(50 + KEY_RETENTION_SECS));
        let undated = KeyRecord { revoked: true, ..forever };
        assert_eq!(undated.ended(7), Some(7));
        assert!(undated.retained(u64::MAX), "an undated revocation is dated on the next write, not dropped");
    }
}
