//! The access-control and hardening keys of the config file: per-profile `allowed_users`,
//! `allowed_groups`, `allowed_resources`; `[users.NAME] default_profile`; and in `[server]`
//! `allow_non_loopback`, `admin_group`, `rotate_grace`, `[server.limits]` and
//! `[server.rate_limit]`; the cache bounds (`max_cached_resources`,
//! `max_cached_resources_per_user`) in `[server.limits]` and per profile.
//!
//! Parsing only: user and group *names* stay names here (a config is valid on any machine);
//! `crate::daemon::access` resolves them against this system's user database when the daemon applies
//! the config.

use std::collections::BTreeMap;
use std::time::Duration;

use azbroker_core::{CacheBounds, ProfileName, Resource};
use azbroker_server::{Limits, RateLimit};

use super::reader::{Problems, Section};

/// A user as the config names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    /// `"*"`: every identified local user.
    Anyone,
    Uid(u32),
    Name(String),
}

/// A group as the config names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    Gid(u32),
    Name(String),
}

/// A profile's access keys; `None` when the key is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileAccessConfig {
    pub users: Option<Vec<UserRef>>,
    pub groups: Option<Vec<GroupRef>>,
    pub resources: Option<Vec<Resource>>,
    /// `allow_remote_callers`: serve callers that are not local users (other hosts, other network
    /// namespaces) when they present the dialect's secret. Needs `server.allow_non_loopback`.
    pub remote: bool,
    /// `max_cached_resources`, overriding `[server.limits]`'s.
    pub max_cached: Option<usize>,
    /// `max_cached_resources_per_user`, overriding `[server.limits]`'s.
    pub max_cached_per_user: Option<usize>,
}

impl ProfileAccessConfig {
    /// True when neither `allowed_users` nor `allowed_groups` is set.
    pub fn no_user_list(&self) -> bool {
        self.users.is_none() && self.groups.is_none()
    }

    /// The profile's cache bounds: its own keys, else the server's (`defaults`).
    pub fn cache_bounds(&self, defaults: CacheBounds) -> CacheBounds {
        CacheBounds {
            max_entries: self.max_cached.unwrap_or(defaults.max_entries),
            max_per_user: self.max_cached_per_user.unwrap_or(defaults.max_per_user),
        }
    }
}

/// The hardening keys of `[server]`.
#[derive(Debug, Clone)]
pub struct Hardening {
    pub allow_non_loopback: bool,
    pub admin_group: Option<GroupRef>,
    pub rotate_grace: Duration,
    pub limits: Limits,
    pub rate_limit: Option<RateLimit>,
    /// `[server.limits] max_cached_resources` and `max_cached_resources_per_user`: every
    /// profile's unless it sets its own.
    pub cache: CacheBounds,
}

impl Default for Hardening {
    fn default() -> Self {
        Self {
            allow_non_loopback: false,
            admin_group: None,
            rotate_grace: Duration::from_secs(300),
            limits: Limits::default(),
            rate_limit: None,
            cache: CacheBounds::default(),
        }
    }
}

/// The `[server]` keys this module owns.
pub const SERVER_KEYS: &[&str] =
    &["allow_non_loopback", "admin_group", "rotate_grace", "limits", "rate_limit"];
/// The keys of `[server.limits]`.
pub const LIMIT_KEYS: &[&str] = &[
    "max_connections",
    "max_connections_per_user",
    "header_timeout",
    "body_timeout",
    "handshake_timeout",
    "request_timeout",
    "max_body_bytes",
    "max_cached_resources",
    "max_cached_resources_per_user",
];
/// The profile keys this module owns.
pub const PROFILE_KEYS: &[&str] = &[
    "allowed_users",
    "allowed_groups",
    "allowed_resources",
    "allow_remote_callers",
    "max_cached_resources",
    "max_cached_resources_per_user",
];

pub fn hardening(s: &Section<'_>, p: &mut Problems) -> Hardening {
    let mut h = Hardening {
        allow_non_loopback: s.bool("allow_non_loopback", p).unwrap_or(false),
        admin_group: s.str("admin_group", p).map(group_ref),
        ..Hardening::default()
    };
    if let Some(d) = s.parsed("rotate_grace", p, super::duration) {
        h.rotate_grace = d;
    }
    if let Some(l) = s.table("limits", p) {
        l.only(LIMIT_KEYS, p);
        if let Some(n) = positive(&l, "max_connections", p) {
            h.limits.max_connections = n;
        }
        if let Some(n) = positive(&l, "max_connections_per_user", p) {
            h.limits.max_connections_per_user = Some(n);
        }
        if let Some(n) = positive(&l, "max_body_bytes", p) {
            h.limits.max_body_bytes = n;
        }
        if let Some(n) = positive(&l, "max_cached_resources", p) {
            h.cache.max_entries = n;
        }
        if let Some(n) = positive(&l, "max_cached_resources_per_user", p) {
            h.cache.max_per_user = n;
        }
        if let Some(d) = l.parsed("header_timeout", p, super::duration) {
            h.limits.header_read_timeout = d;
        }
        if let Some(d) = l.parsed("body_timeout", p, super::duration) {
            h.limits.body_read_timeout = d;
        }
        if let Some(d) = l.parsed("handshake_timeout", p, super::duration) {
            h.limits.handshake_timeout = d;
        }
        if let Some(d) = l.parsed("request_timeout", p, super::duration) {
            h.limits.request_timeout = d;
        }
    }
    if let Some(r) = s.table("rate_limit", p) {
        r.only(&["per_second", "burst"], p);
        let per_second = r.number("per_second", p);
        let burst = positive(&r, "burst", p);
        match per_second {
            Some(v) if v > 0.0 => {
                let burst =
                    burst.map_or_else(|| (v.ceil() as u32).max(1), |b| b.min(u32::MAX as usize) as u32);
                h.rate_limit = Some(RateLimit { per_second: v, burst });
            }
            Some(_) => p.push(&format!("{}.per_second", r.path), "must be greater than 0"),
            None => p.push(&format!("{}.per_second", r.path), "required key is missing"),
        }
    }
    h
}

fn positive(s: &Section<'_>, key: &str, p: &mut Problems) -> Option<usize> {
    let n = s.integer(key, p)?;
    if n <= 0 {
        p.push(&format!("{}.{key}", s.path), "must be greater than 0");
        return None;
    }
    Some(usize::try_from(n).unwrap_or(usize::MAX))
}

pub fn profile_access(s: &Section<'_>, p: &mut Problems) -> ProfileAccessConfig {
    let users = s.contains("allowed_users").then(|| {
        s.id_list("allowed_users", p)
            .into_iter()
            .map(|item| match item {
                Ok(id) => UserRef::Uid(id),
                Err(name) if name == "*" => UserRef::Anyone,
                Err(name) => UserRef::Name(name),
            })
            .collect()
    });
    let groups = s.contains("allowed_groups").then(|| {
        s.id_list("allowed_groups", p)
            .into_iter()
            .map(|item| match item {
                Ok(id) => GroupRef::Gid(id),
                Err(name) => GroupRef::Name(name),
            })
            .collect()
    });
    let resources =
        s.contains("allowed_resources").then(|| s.parsed_list("allowed_resources", p, Resource::parse));
    let remote = s.bool("allow_remote_callers", p).unwrap_or(false);
    let max_cached = positive(s, "max_cached_resources", p);
    let max_cached_per_user = positive(s, "max_cached_resources_per_user", p);
    ProfileAccessConfig { users, groups, resources, remote, max_cached, max_cached_per_user }
}

pub(super) fn group_ref(raw: &str) -> GroupRef {
    raw.parse().map_or_else(|_| GroupRef::Name(raw.to_owned()), GroupRef::Gid)
}

/// `[users.NAME]` tables: per-user settings (`default_profile`).
pub fn users_section(
    s: Option<Section<'_>>,
    profiles: &BTreeMap<ProfileName, super::Profile>,
    p: &mut Problems,
) -> BTreeMap<String, ProfileName> {
    let mut out = BTreeMap::new();
    let Some(s) = s else { return out };
    for (user, u) in s.entries(p) {
        u.only(&["default_profile"], p);
        let Some(profile) = u.parsed("default_profile", p, ProfileName::parse) else {
            if !u.contains("default_profile") {
                p.push(&format!("{}.default_profile", u.path), "required key is missing");
            }
            continue;
        };
        if !profiles.contains_key(&profile) {
            p.push(
                &format!("{}.default_profile", u.path),
                format!("'{profile}' is not a configured profile"),
            );
            continue;
        }
        out.insert(user, profile);
    }
    out
}

/// Why a non-loopback listener is refused, and the way out.
pub const NON_LOOPBACK: &str = "not a loopback address; azbroker serves local clients only. Set \
     server.allow_non_loopback = true to listen there anyway (identity headers and per-user checks \
     stay mandatory, and callers that cannot be identified are refused)";
