//! `azbroker key create|list|revoke` on the admin socket: `POST /v1/keys` ([`KeyCreate`] →
//! [`KeyCreated`], the only answer that holds a key, once), `GET /v1/keys` ([`KeyList`]) and
//! `DELETE /v1/keys/{name}` ([`KeyInfo`] of the revoked key). Listings never carry a key or its hash.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::secret::Secret;

/// A key's lifetime when `key create` is given none: 12 hours.
pub const DEFAULT_KEY_TTL_SECS: u64 = 12 * 3600;

/// `POST /v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyCreate {
    pub name: String,
    pub profile: String,
    /// Empty: the profile's `allowed_resources`, else any resource.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Seconds; `None`: [`DEFAULT_KEY_TTL_SECS`]; `Some(0)`: until revoked.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// What `key list` shows of a key: never the key, never its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub name: String,
    pub profile: String,
    /// `None`: any resource the profile allows.
    pub resources: Option<Vec<String>>,
    pub created: u64,
    /// Unix seconds; `None`: until revoked.
    pub expires: Option<u64>,
    /// `valid`, `expired` or `revoked`.
    pub state: String,
    /// Unix seconds of the last grant, since the daemon started.
    pub last_use: Option<u64>,
    /// Tokens granted with the key since the daemon started.
    pub grants: u64,
}

/// The answer to `POST /v1/keys`: the key, once, and where clients reach the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCreated {
    #[serde(serialize_with = "expose", deserialize_with = "secret")]
    pub key: Secret,
    pub info: KeyInfo,
    /// `container_listen` addresses, as bound.
    pub container_listeners: Vec<String>,
    /// The plain loopback listeners, as bound.
    pub listeners: Vec<String>,
}

/// The answer to `GET /v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

/// The key on the wire: this answer exists to hand it over.
fn expose<S: Serializer>(value: &Secret, s: S) -> Result<S::Ok, S::Error> {
    value.expose().serialize(s)
}

fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    Ok(Secret::new(String::deserialize(d)?))
}
