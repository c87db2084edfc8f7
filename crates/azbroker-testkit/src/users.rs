//! The fake directory of people: scripted users and the tenants each can reach, and the state of
//! the delegated flows — pending device codes, authorization codes, and the refresh tokens issued
//! to users (with rotation, revocation and per-tenant interaction demands).
//!
//! A refresh token is bound to a user and a client, never to a tenant or resource (PROTOCOLS.md
//! §12.3): it is redeemable in every tenant the user can reach. A tenant set to demand interaction
//! (MFA, conditional access) refuses redemption unless the user signed in interactively *at that
//! tenant* for the chain of tokens the refresh token descends from.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::tenant::tenant_guid;

/// Namespace for the deterministic user object ids (`oid`), one per (user, tenant).
const USER_OID_NAMESPACE: Uuid = Uuid::from_u128(0x3b6e_9f0c_51d4_4a7e_8c21_a0b1_c2d3_e4f5);
/// How long an authorization code may wait for redemption (Entra: 10 minutes).
const AUTH_CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Bounds on what clients can make the fake remember.
const MAX_PENDING: usize = 1024;
const MAX_REFRESH_TOKENS: usize = 65_536;

/// A scripted user.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub username: String,
    pub display_name: String,
    pub home_tid: String,
    /// (tid, the name the test used for it), home tenant first.
    pub tenants: Vec<(String, String)>,
}

impl User {
    /// The user's object id in tenant `tid` (guests have a different one per tenant).
    pub(crate) fn oid_in(&self, tid: &str) -> String {
        Uuid::new_v5(&USER_OID_NAMESPACE, format!("{}/{tid}", self.username.to_ascii_lowercase()).as_bytes())
            .to_string()
    }

    pub(crate) fn can_reach(&self, tid: &str) -> bool {
        self.tenants.iter().any(|(t, _)| t == tid)
    }
}

/// How a pending device code stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeviceState {
    Pending,
    Approved(String),
    /// Only test steering declines a sign-in.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    Declined,
}

#[derive(Debug, Clone)]
pub(crate) struct DeviceFlow {
    /// What test steering approves or declines a flow by.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
    /// The authority segment the flow started at (`organizations`, a domain, a GUID).
    pub tenant_path: String,
    pub expires: Instant,
    pub interval: Duration,
    pub last_poll: Option<Instant>,
    pub state: DeviceState,
}

#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub username: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub challenge: String,
    pub scope: String,
    pub tenant_path: String,
    pub expires: Instant,
}

#[derive(Debug, Clone)]
pub(crate) struct RefreshRecord {
    pub username: String,
    pub client_id: String,
    /// Tenants (tids) where the sign-in behind this token chain was interactive.
    pub interactive_tids: HashSet<String>,
    pub revoked: bool,
}

/// What redeeming a refresh token found.
pub(crate) enum Redeem {
    Ok(User, RefreshRecord),
    Unknown,
    Revoked,
    WrongClient,
}

#[derive(Default)]
pub(crate) struct Users {
    users: HashMap<String, User>,
    device: HashMap<String, DeviceFlow>,
    auth_codes: HashMap<String, AuthCode>,
    refresh: HashMap<String, RefreshRecord>,
    /// Every refresh token ever issued, in order (tests check none leaks into a file).
    issued_refresh: Vec<String>,
    /// tid → AADSTS code answered on refresh-token redemption without interactive sign-in there.
    interaction: HashMap<String, u32>,
    pub auto_approve: Option<String>,
    pub browser_user: Option<String>,
    pub device_interval: Option<Duration>,
    pub device_lifetime: Option<Duration>,
    pub rotation_revokes_old: bool,
}

impl Users {
    pub(crate) fn add(&mut self, username: &str, tenants: &[&str]) {
        let tenants: Vec<(String, String)> =
            tenants.iter().map(|t| (tenant_guid(t), (*t).to_owned())).collect();
        let home_tid =
            tenants.first().map(|(t, _)| t.clone()).unwrap_or_else(|| tenant_guid("users.invalid"));
        let local = username.split('@').next().unwrap_or(username);
        let mut display_name: String = local.chars().take(1).flat_map(char::to_uppercase).collect();
        display_name.push_str(local.get(1..).unwrap_or(""));
        let user = User { username: username.to_owned(), display_name, home_tid, tenants };
        self.users.insert(username.to_ascii_lowercase(), user);
    }

    pub(crate) fn get(&self, username: &str) -> Option<&User> {
        self.users.get(&username.to_ascii_lowercase())
    }

    pub(crate) fn by_oid(&self, oid: &str, tid: &str) -> Option<&User> {
        self.users.values().find(|u| u.oid_in(tid) == oid)
    }

    // ---- device codes ----

    pub(crate) fn new_device_flow(&mut self, flow: DeviceFlow) -> Option<String> {
        let now = Instant::now();
        self.device.retain(|_, f| f.expires > now);
        if self.device.len() >= MAX_PENDING {
            return None;
        }
        let device_code = random_code(48);
        self.device.insert(device_code.clone(), flow);
        Some(device_code)
    }

    pub(crate) fn device_flow_mut(&mut self, device_code: &str) -> Option<&mut DeviceFlow> {
        self.device.get_mut(device_code)
    }

    pub(crate) fn remove_device_flow(&mut self, device_code: &str) {
        self.device.remove(device_code);
    }

    #[cfg(feature = "testing")]
    pub(crate) fn set_user_code_state(&mut self, user_code: &str, state: DeviceState) -> bool {
        match self.device.values_mut().find(|f| f.user_code.eq_ignore_ascii_case(user_code)) {
            Some(f) if f.state == DeviceState::Pending => {
                f.state = state;
                true
            }
            _ => false,
        }
    }

    #[cfg(feature = "testing")]
    pub(crate) fn pending_user_codes(&self) -> Vec<String> {
        let now = Instant::now();
        self.device
            .values()
            .filter(|f| f.state == DeviceState::Pending && f.expires > now)
            .map(|f| f.user_code.clone())
            .collect()
    }

    // ---- authorization codes ----

    pub(crate) fn new_auth_code(&mut self, mut code: AuthCode) -> Option<String> {
        let now = Instant::now();
        self.auth_codes.retain(|_, c| c.expires > now);
        if self.auth_codes.len() >= MAX_PENDING {
            return None;
        }
        code.expires = now + AUTH_CODE_LIFETIME;
        let value = random_code(64);
        self.auth_codes.insert(value.clone(), code);
        Some(value)
    }

    /// Authorization codes are single-use: taking one removes it.
    pub(crate) fn take_auth_code(&mut self, code: &str) -> Option<AuthCode> {
        self.auth_codes.remove(code).filter(|c| c.expires > Instant::now())
    }

    // ---- refresh tokens ----

    pub(crate) fn issue_refresh(&mut self, record: RefreshRecord) -> String {
        if self.refresh.len() >= MAX_REFRESH_TOKENS {
            self.refresh.retain(|_, r| !r.revoked);
        }
        let token = format!("0.rt.{}", random_code(96));
        self.refresh.insert(token.clone(), record);
        self.issued_refresh.push(token.clone());
        token
    }

    pub(crate) fn redeem(&mut self, token: &str, client_id: &str) -> Redeem {
        let Some(record) = self.refresh.get(token).cloned() else { return Redeem::Unknown };
        if record.revoked {
            return Redeem::Revoked;
        }
        if !record.client_id.eq_ignore_ascii_case(client_id) {
            return Redeem::WrongClient;
        }
        let Some(user) = self.get(&record.username).cloned() else { return Redeem::Revoked };
        Redeem::Ok(user, record)
    }

    /// After a successful redemption: rotation may retire the token just used.
    pub(crate) fn used(&mut self, token: &str) {
        if self.rotation_revokes_old
            && let Some(r) = self.refresh.get_mut(token)
        {
            r.revoked = true;
        }
    }

    #[cfg(feature = "testing")]
    pub(crate) fn revoke_user(&mut self, username: &str) -> usize {
        let mut n = 0;
        for r in self.refresh.values_mut().filter(|r| r.username.eq_ignore_ascii_case(username)) {
            if !r.revoked {
                r.revoked = true;
                n += 1;
            }
        }
        n
    }

    #[cfg(feature = "testing")]
    pub(crate) fn issued_refresh_tokens(&self) -> Vec<String> {
        self.issued_refresh.clone()
    }

    // ---- interaction demands ----

    #[cfg(feature = "testing")]
    pub(crate) fn require_interaction(&mut self, tid: String, code: u32) {
        self.interaction.insert(tid, code);
    }

    #[cfg(feature = "testing")]
    pub(crate) fn clear_interaction(&mut self, tid: &str) {
        self.interaction.remove(tid);
    }

    pub(crate) fn interaction_code(&self, tid: &str) -> Option<u32> {
        self.interaction.get(tid).copied()
    }
}

/// A random URL-safe string of about `len` characters.
pub(crate) fn random_code(len: usize) -> String {
    let mut out = String::with_capacity(len + 32);
    while out.len() < len {
        out.push_str(&Uuid::new_v4().simple().to_string());
    }
    out.truncate(len);
    out
}

/// An eight-letter user code like Entra's (`ABCD1234`-ish, no ambiguous characters).
pub(crate) fn user_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(9)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}
