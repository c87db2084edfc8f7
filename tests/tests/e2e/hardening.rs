//! Local-file and admin-socket hardening through the real binary: what another local user can
//! do with the runtime directory, the config file and the state directory (SECURITY.md, "Local
//! files").

use std::process::Command;

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

/// A config whose `client_secret` line is broken: neither the reload answer, the daemon log nor
/// any CLI command shows the secret, and the old config stays.
#[test]
fn a_broken_secret_line_is_never_echoed() {
    let (_auth, daemon) = two_tenants("");
    let good = std::fs::read_to_string(&daemon.config_path).unwrap();
    // The CLI finds the admin socket through an intact copy; the daemon reloads its own file.
    let intact = daemon.dir.path().join("intact.toml");
    std::fs::write(&intact, &good).unwrap();
    let line = format!("client_secret = \"{CLIENT_SECRET}\"");
    let broken = good.replace(&line, line.trim_end_matches('"'));
    assert_ne!(good, broken);
    replace_file(&daemon.config_path, &broken);
    let reload = Command::new(azbroker_tests::binary()).arg("--config").arg(&intact).arg("reload").output();
    let reload = reload.unwrap();
    let answer = stderr(&reload);
    assert_eq!(reload.status.code(), Some(64), "{answer}");
    assert!(
        answer.contains("not valid TOML at line") && answer.contains("client_secret = <redacted>"),
        "{answer}"
    );
    let mut outputs = vec![answer];
    for args in [&["check-config"][..], &["status"][..], &["env"][..]] {
        let out = daemon.cli(args).unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        outputs.push(format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out)));
    }
    let log = daemon.log();
    assert!(log.contains("config reload rejected"), "{log}");
    outputs.push(log);
    let everything = outputs.join("\n");
    assert!(!everything.contains(CLIENT_SECRET), "{everything}");
}
