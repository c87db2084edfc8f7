//! The runtime secrets clients present (the identity header, the Azure ML secret, the native
//! API key), with rotation: after `rotate`, the previous value stays valid for a short grace
//! period so that clients that cached it (JS caches its managed-identity source for the life of
//! the process, PROTOCOLS.md §11 item 12) keep working until they restart.
//!
//! Adding a secret is one line in [`runtime_secrets!`]: its id, its name (also its file name in
//! the state directory and its key in the admin API) and what it is. Comparisons are constant
//! time and never short-circuit between the current and the previous value. Values never leave
//! this module except through [`RuntimeSecrets::current`].

use std::collections::BTreeMap;
use std::time::Duration;

use azbroker_core::Secret;
use tokio::time::Instant;

macro_rules! runtime_secrets {
    ($($(#[$doc:meta])* $id:ident => $name:literal;)*) => {
        /// A runtime secret the daemon hands to clients.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum SecretId {
            $($(#[$doc])* $id,)*
        }

        impl SecretId {
            /// Every runtime secret, in a stable order.
            pub const ALL: &'static [SecretId] = &[$(SecretId::$id),*];

            /// Stable name: the file name in the state directory and the key in the admin API.
            pub fn name(self) -> &'static str {
                match self {
                    $(SecretId::$id => $name,)*
                }
            }
        }
    };
}

runtime_secrets! {
    /// The App Service `X-IDENTITY-HEADER` value (exported to clients as `IDENTITY_HEADER`); also
    /// the Service Fabric `secret`.
    IdentityHeader => "identity-header";
    /// The Azure ML `secret` header value (exported as `MSI_SECRET`).
    MsiSecret => "msi-secret";
    /// The native API's bearer key (exported as `AZD_AUTH_KEY`).
    NativeKey => "native-key";
}

impl SecretId {
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|id| id.name() == name)
    }
}

/// The values in force. `Debug` shows names only.
#[derive(Clone, Default)]
pub struct RuntimeSecrets {
    slots: BTreeMap<SecretId, Slot>,
}

#[derive(Clone)]
struct Slot {
    current: Secret,
    previous: Option<(Secret, Instant)>,
}

impl RuntimeSecrets {
    pub fn new(values: impl IntoIterator<Item = (SecretId, Secret)>) -> Self {
        let slots = values.into_iter().map(|(id, current)| (id, Slot { current, previous: None })).collect();
        Self { slots }
    }

    /// The value clients should be given now.
    pub fn current(&self, id: SecretId) -> Option<&Secret> {
        self.slots.get(&id).map(|s| &s.current)
    }

    /// Is `presented` the current value, or the previous one within its grace period?
    pub fn matches(&self, id: SecretId, presented: &[u8]) -> bool {
        let Some(slot) = self.slots.get(&id) else { return false };
        let current = slot.current.matches(presented);
        let previous = slot
            .previous
            .as_ref()
            .is_some_and(|(old, until)| old.matches(presented) & (Instant::now() < *until));
        current | previous
    }

    /// Makes `next` the value of `id`; the old one stays valid for `grace`. Returns false (and
    /// changes nothing) when `next` equals the current value.
    pub fn rotate(&mut self, id: SecretId, next: Secret, grace: Duration) -> bool {
        match self.slots.get_mut(&id) {
            Some(slot) if slot.current == next => false,
            Some(slot) => {
                let old = std::mem::replace(&mut slot.current, next);
                slot.previous = Some((old, Instant::now() + grace));
                true
            }
            None => {
                self.slots.insert(id, Slot { current: next, previous: None });
                true
            }
        }
    }
}

impl std::fmt::Debug for RuntimeSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.slots.keys().map(|id| id.name())).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_old_value_works_during_the_grace_period_only() {
        let id = SecretId::IdentityHeader;
        let mut s = RuntimeSecrets::new([(id, Secret::new("old-value"))]);
        assert!(s.matches(id, b"old-value"));
        assert!(s.rotate(id, Secret::new("new-value"), Duration::from_secs(60)));
        assert!(s.matches(id, b"new-value"));
        assert!(s.matches(id, b"old-value"), "grace period");
        assert!(!s.matches(id, b"other"));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!s.matches(id, b"old-value"), "grace over");
        assert!(s.matches(id, b"new-value"));
        assert!(!s.rotate(id, Secret::new("new-value"), Duration::from_secs(60)), "unchanged");
    }

    #[test]
    fn names_round_trip_and_debug_hides_values() {
        for id in SecretId::ALL {
            assert_eq!(SecretId::from_name(id.name()), Some(*id));
        }
        let s = RuntimeSecrets::new([(SecretId::IdentityHeader, Secret::new("hunter2"))]);
        assert_eq!(format!("{s:?}"), r#"{"identity-header"}"#);
        assert!(!RuntimeSecrets::default().matches(SecretId::IdentityHeader, b""));
    }
}
