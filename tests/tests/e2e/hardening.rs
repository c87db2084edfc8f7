//! Local-file and admin-socket hardening through the real binary: what another local user can
//! do with the runtime directory, the config file and the state directory (SECURITY.md, "Local
//! files").

use super::security::{nobody_cli, open_up, stderr};
use super::*;

/// A user who cannot read the state directory asks for a token: a clear error, no panic.
#[test]
fn token_as_a_user_without_access_to_the_state_dir_fails_cleanly() {
    let (_auth, daemon) = two_tenants("");
    open_up(&daemon);
    let out = nobody_cli(&daemon, &["token", "--resource", "https://management.azure.com/"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("identity-header") && err.contains("admin socket"), "{err}");
}
