//! The self-service keys of `[server]` (shared machines): `self_service` lets every local user —
//! or the members of `self_service_groups` — sign in as themselves through the admin socket and
//! get personal profiles only their uid can use; `self_service_max_workspaces` and
//! `self_service_sign_ins_per_hour` bound what each user may make the daemon do.
//!
//! Parsing only: group names are resolved by `crate::daemon::access` like `admin_group`.

use super::access::GroupRef;
use super::reader::{Problems, Section};

/// The `[server]` keys this module owns.
pub const KEYS: &[&str] =
    &["self_service", "self_service_groups", "self_service_max_workspaces", "self_service_sign_ins_per_hour"];

/// Self-service settings; off by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfService {
    pub enabled: bool,
    /// Empty: every local user (but root, whose requests keep the configured profiles).
    pub groups: Vec<GroupRef>,
    /// Personal workspaces per user.
    pub max_workspaces: usize,
    /// Sign-ins a user may start per hour.
    pub sign_ins_per_hour: u32,
}

impl Default for SelfService {
    fn default() -> Self {
        Self { enabled: false, groups: Vec::new(), max_workspaces: 10, sign_ins_per_hour: 20 }
    }
}

pub fn parse(s: &Section<'_>, p: &mut Problems) -> SelfService {
    let mut out = SelfService {
        enabled: s.bool("self_service", p).unwrap_or(false),
        groups: s.str_list("self_service_groups", p).into_iter().map(super::access::group_ref).collect(),
        ..SelfService::default()
    };
    let bounded = |key: &str, max: i64, p: &mut Problems| match s.integer(key, p) {
        Some(n) if (1..=max).contains(&n) => Some(n),
        Some(n) => {
            p.push(&format!("{}.{key}", s.path), format!("{n} is out of range (1 to {max})"));
            None
        }
        None => None,
    };
    if let Some(n) = bounded("self_service_max_workspaces", 100, p) {
        out.max_workspaces = n as usize;
    }
    if let Some(n) = bounded("self_service_sign_ins_per_hour", 1000, p) {
        out.sign_ins_per_hour = n as u32;
    }
    if !out.groups.is_empty() && !out.enabled {
        p.push(&format!("{}.self_service_groups", s.path), "has no effect unless self_service = true");
    }
    out
}
