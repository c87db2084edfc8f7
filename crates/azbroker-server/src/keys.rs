//! Client keys on the token path (`azbroker key create`): a key is accepted wherever a dialect
//! carries a secret (App Service `X-IDENTITY-HEADER`, Azure ML and Service Fabric `secret`, the
//! native `Authorization: Bearer`), and then it — not the caller's uid — is the authority: it
//! pins its profile (a `/p/NAME` prefix, a listener or a selector naming another profile is
//! refused, never served) and its resources, until it expires or is revoked.
//!
//! [`authenticate`] runs first, on the head, against the key set of the request's one
//! [`Runtime`]; a valid key becomes a [`KeyAuth`] extension that the dialect's own secret check,
//! selection and authorisation read. On a container listener ([`ListenerKind::Container`]) a key
//! is required and the secret-less dialects are refused. Nothing here logs or echoes a key.

use std::fmt;
use std::sync::Arc;

use azbroker_core::keys::{self, KeyEntry, KeyState};
use azbroker_core::{ProfileName, Resource, unix_now};
use http::header::AUTHORIZATION;
use http::request::Parts;

use crate::dialect::Dialect;
use crate::error::RequestError;
use crate::routes::{ListenerKind, RouteCtx};
use crate::runtime::Runtime;

/// The valid key a request presented.
#[derive(Clone)]
pub(crate) struct KeyAuth(pub(crate) Arc<KeyEntry>);

/// Why a key (or its absence) refused a request. Every description says what would fix it.
#[derive(Debug)]
pub(crate) enum KeyRefusal {
    /// A container listener, and no key in `header`.
    Required {
        header: &'static str,
    },
    /// A value that looks like a key but is none of this daemon's.
    Unknown,
    Expired {
        name: String,
    },
    Revoked {
        name: String,
    },
    /// A dialect without a secret, on a container listener.
    Secretless,
    /// The request selects another profile than the key's.
    OtherProfile {
        name: String,
        key_profile: ProfileName,
        requested: ProfileName,
    },
    /// A resource outside the key's list.
    Resource {
        name: String,
        resource: Resource,
    },
    /// The key's profile is not in the config in force any more (a reload removed it).
    ProfileGone {
        name: String,
        profile: ProfileName,
    },
}

impl KeyRefusal {
    /// 401 when a (valid) key would fix it, 403 when the key itself forbids it.
    pub(crate) fn status(&self) -> http::StatusCode {
        match self {
            Self::Required { .. } | Self::Unknown | Self::Expired { .. } => http::StatusCode::UNAUTHORIZED,
            Self::Revoked { .. }
            | Self::Secretless
            | Self::OtherProfile { .. }
            | Self::Resource { .. }
            | Self::ProfileGone { .. } => http::StatusCode::FORBIDDEN,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Required { .. } => "key_required",
            Self::Unknown => "key_unknown",
            Self::Expired { .. } => "key_expired",
            Self::Revoked { .. } => "key_revoked",
            Self::Secretless => "key_dialect",
            Self::OtherProfile { .. } => "key_profile",
            Self::Resource { .. } => "key_resource",
            Self::ProfileGone { .. } => "key_profile_gone",
        }
    }
}

impl fmt::Display for KeyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Required { header } => write!(
                f,
                "This listener serves containers holding a client key: send it in the '{header}' header \
                 (`azbroker key create NAME --profile PROFILE` on the host prints the variables to set)"
            ),
            Self::Unknown => f.write_str(
                "The client key is not one of this broker's keys; create one with `azbroker key create`",
            ),
            Self::Expired { name } => {
                write!(f, "The client key '{name}' has expired; create a new one with `azbroker key create`")
            }
            Self::Revoked { name } => {
                write!(f, "The client key '{name}' was revoked; create a new one with `azbroker key create`")
            }
            Self::Secretless => f.write_str(
                "This listener serves containers with a client key only, over the App Service dialect: \
                 set IDENTITY_ENDPOINT and IDENTITY_HEADER as printed by `azbroker key create`",
            ),
            Self::OtherProfile { name, key_profile, requested } => write!(
                f,
                "The client key '{name}' is for profile '{key_profile}' only; it cannot select profile '{requested}'"
            ),
            Self::Resource { name, resource } => write!(
                f,
                "The client key '{name}' does not allow resource '{resource}'; create a key that does with \
                 `azbroker key create --resource {resource}`"
            ),
            Self::ProfileGone { name, profile } => write!(
                f,
                "The client key '{name}' is for profile '{profile}', which the broker's config no longer has; \
                 revoke it (`azbroker key revoke {name}`) and create one for a configured profile"
            ),
        }
    }
}

/// The secret `D` carries, if any: the value of its secret header (the bearer token of
/// `Authorization`).
fn presented<D: Dialect>(parts: &Parts) -> Option<&[u8]> {
    let header = D::SECRET_HEADER?;
    let value = parts.headers.get(header)?.as_bytes();
    if header.eq_ignore_ascii_case(AUTHORIZATION.as_str()) {
        return value.strip_prefix(b"Bearer ").or_else(|| value.strip_prefix(b"bearer "));
    }
    Some(value)
}

/// Finds the key a request presents in its dialect's secret, if it presents one, and records it
/// as a [`KeyAuth`] extension; refuses unknown, expired and revoked keys, and on a container
/// listener anything but a valid key on a dialect that carries one.
pub(crate) fn authenticate<D: Dialect>(
    ctx: &RouteCtx,
    rt: &Runtime,
    parts: &mut Parts,
) -> Result<(), RequestError> {
    let container = matches!(ctx.kind, ListenerKind::Container(_));
    let value = presented::<D>(parts).filter(|v| keys::is_key(v));
    let Some(value) = value else {
        return match D::SECRET_HEADER {
            _ if !container => Ok(()),
            Some(header) => Err(RequestError::Key(KeyRefusal::Required { header })),
            None => Err(RequestError::Key(KeyRefusal::Secretless)),
        };
    };
    let entry = rt.keys().lookup(value).ok_or(RequestError::Key(KeyRefusal::Unknown))?.clone();
    let name = || entry.record.name.clone();
    match entry.state(unix_now()) {
        KeyState::Valid => {}
        KeyState::Expired => return Err(RequestError::Key(KeyRefusal::Expired { name: name() })),
        KeyState::Revoked => return Err(RequestError::Key(KeyRefusal::Revoked { name: name() })),
    }
    if !rt.profiles().contains_key(&entry.profile) {
        return Err(RequestError::Key(KeyRefusal::ProfileGone {
            name: name(),
            profile: entry.profile.clone(),
        }));
    }
    parts.extensions.insert(KeyAuth(entry));
    Ok(())
}

/// The key a request was authenticated with, if any.
pub(crate) fn of(parts: &Parts) -> Option<&Arc<KeyEntry>> {
    parts.extensions.get::<KeyAuth>().map(|k| &k.0)
}

/// The profile a key-holding request gets: the key's, and a request that selects another one
/// explicitly (`chosen`, from the path prefix, listener or selector) is refused.
pub(crate) fn pin(key: &KeyEntry, chosen: Option<ProfileName>) -> Result<ProfileName, RequestError> {
    match chosen {
        Some(p) if p != key.profile => {
            let refusal = KeyRefusal::OtherProfile {
                name: key.record.name.clone(),
                key_profile: key.profile.clone(),
                requested: p,
            };
            Err(RequestError::Key(refusal))
        }
        _ => Ok(key.profile.clone()),
    }
}

/// The access decision for a key-holding request: its profile, its resources (and the profile's
/// `allowed_resources`), then the rate limit. The caller's uid plays no part.
pub(crate) fn authorize(
    rt: &Runtime,
    key: &KeyEntry,
    profile: &ProfileName,
    resource: &Resource,
) -> Result<(), RequestError> {
    pin(key, Some(profile.clone()))?;
    if !key.allows(resource) {
        let refusal = KeyRefusal::Resource { name: key.record.name.clone(), resource: resource.clone() };
        return Err(RequestError::Key(refusal));
    }
    rt.policy().check_resource(profile, resource).map_err(RequestError::Denied)?;
    if let Some(limiter) = rt.rate_limiter() {
        limiter.check(None).map_err(|secs| RequestError::RateLimited { retry_after_secs: secs })?;
    }
    Ok(())
}
