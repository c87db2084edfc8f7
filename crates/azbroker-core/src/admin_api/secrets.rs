//! `GET /v1/secrets`: the runtime secrets clients must present (what `azbroker env` prints), for
//! a CLI user who may not read the daemon's state directory. The only admin answer with secrets
//! in it; its `Debug` shows none of them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::secret::Secret;

/// The current value of each runtime secret the daemon has. The keys are the server crate's
/// secret names (`SecretId::name`), which maps ids to these fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretValues {
    #[serde(rename = "identity-header", default, skip_serializing_if = "Option::is_none", with = "exposed")]
    pub identity_header: Option<Secret>,
    #[serde(rename = "msi-secret", default, skip_serializing_if = "Option::is_none", with = "exposed")]
    pub msi_secret: Option<Secret>,
    #[serde(rename = "native-key", default, skip_serializing_if = "Option::is_none", with = "exposed")]
    pub native_key: Option<Secret>,
}

/// A secret's value on the wire: this answer exists to hand it over.
mod exposed {
    use super::*;

    // serde's `with` passes `&Option<T>`.
    #[allow(clippy::ref_option)]
    pub(super) fn serialize<S: Serializer>(value: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
        value.as_ref().map(Secret::expose).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(Secret::new))
    }
}
