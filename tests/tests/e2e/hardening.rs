//! Local-file and admin-socket hardening through the real binary: what another local user can
//! do with the runtime directory, the config file and the state directory (SECURITY.md, "Local
//! files").

use std::os::unix::fs::MetadataExt;
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

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A config (or a program it runs) that another user may change is refused at start and at
/// reload, the old config kept; an inline secret in a world-readable file is warned about.
#[test]
fn a_config_other_users_may_change_is_refused_at_start_and_at_reload() {
    let (_auth, mut daemon) = two_tenants("");
    let config = daemon.config_path.clone();
    let intact = daemon.dir.path().join("intact.toml");
    std::fs::copy(&config, &intact).unwrap();

    // An inline client_secret in a file others can read: a warning, not a refusal.
    chmod(&config, 0o644);
    let out = daemon.cli(&["check-config"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("logins.app.client_secret is inline") && text.contains("chmod 600"), "{text}");
    chmod(&config, 0o600);
    let out = daemon.cli(&["check-config"]).unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("is inline"));

    // Writable by others: the reload is refused and the daemon keeps serving its config.
    chmod(&config, 0o666);
    let reload = Command::new(azbroker_tests::binary()).arg("--config").arg(&intact).arg("reload").output();
    let reload = reload.unwrap();
    let answer = stderr(&reload);
    assert_eq!(reload.status.code(), Some(64), "{answer}");
    let shown = config.display().to_string();
    assert!(answer.contains(&shown) && answer.contains("writable by other users (mode 0666)"), "{answer}");
    assert!(
        Command::new(azbroker_tests::binary())
            .arg("--config")
            .arg(&intact)
            .arg("status")
            .output()
            .unwrap()
            .status
            .success()
    );

    // ... and at start.
    daemon.stop().unwrap();
    let err = daemon.restart(&[]).unwrap_err().to_string();
    assert!(err.contains(&shown) && err.contains("writable by other users"), "{err}");

    // An azure-cli login whose program another user owns.
    chmod(&config, 0o600);
    let program = daemon.dir.path().join("az");
    std::fs::write(&program, "#!/bin/sh\nexit 1\n").unwrap();
    chmod(&program, 0o755);
    std::os::unix::fs::chown(&program, Some(65534), Some(65534)).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let cli_login = format!("[logins.cli]\nkind = \"azure-cli\"\ncommand = \"{}\"\n\n", program.display());
    std::fs::write(&config, text.replacen("[logins.app]", &format!("{cli_login}[logins.app]"), 1)).unwrap();
    let out = daemon.cli(&["check-config"]).unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stdout));
    let err = stderr(&out);
    assert!(err.contains("logins.cli.command") && err.contains("owned by uid 65534"), "{err}");
    std::os::unix::fs::chown(&program, Some(0), Some(0)).unwrap();
    daemon.restart(&[]).expect("a root-owned program in a private directory is fine");
}

/// The runtime directory another user made (0777, theirs) with planted links: the daemon refuses
/// it, naming it, and writes nothing through the links; in its own directory a link planted where
/// the Service Fabric certificate goes is replaced, never followed.
#[test]
fn a_runtime_dir_another_user_made_is_refused_and_planted_links_are_never_followed() {
    let (_auth, mut daemon) = two_tenants("");
    daemon.stop().unwrap();
    let run = daemon.dir.path().join("run");
    std::fs::remove_dir_all(&run).unwrap();
    let victim = daemon.dir.path().join("victim");
    std::fs::write(&victim, "the victim's own file").unwrap();
    chmod(&victim, 0o600);
    let plant = |dir: &std::path::Path| {
        std::os::unix::fs::symlink(&victim, dir.join("service-fabric.crt")).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(".service-fabric.crt.tmp")).unwrap();
    };
    std::fs::create_dir(&run).unwrap();
    plant(&run);
    chmod(&run, 0o777);
    std::os::unix::fs::chown(&run, Some(65534), Some(65534)).unwrap();
    let err = daemon.restart(&[]).unwrap_err().to_string();
    assert!(err.contains(&format!("refusing the directory {}", run.display())), "{err}");
    assert!(err.contains("owned by uid 65534"), "{err}");
    let untouched = |what: &str| {
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "the victim's own file", "{what}");
        assert_eq!(std::fs::metadata(&victim).unwrap().mode() & 0o777, 0o600, "{what}");
    };
    untouched("a foreign runtime dir");

    // A symbolic link as the runtime directory itself.
    std::fs::remove_dir_all(&run).unwrap();
    let elsewhere = daemon.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &run).unwrap();
    let err = daemon.restart(&[]).unwrap_err().to_string();
    assert!(err.contains("symbolic link") && err.contains(&run.display().to_string()), "{err}");

    // Its own directory, with links planted where files go: replaced, not followed.
    std::fs::remove_file(&run).unwrap();
    std::fs::create_dir(&run).unwrap();
    chmod(&run, 0o700);
    plant(&run);
    daemon.restart(&[]).expect("the daemon's own runtime directory is used");
    untouched("links in its own runtime dir");
    let cert = std::fs::symlink_metadata(run.join("service-fabric.crt")).unwrap();
    assert!(cert.file_type().is_file() && cert.mode() & 0o777 == 0o644, "{cert:?}");
}

/// An admin socket another user put in place: the CLI refuses it before sending anything.
#[test]
fn the_cli_refuses_an_admin_socket_another_user_owns() {
    let (_auth, mut daemon) = two_tenants("");
    daemon.stop().unwrap();
    let socket = daemon.dir.path().join("run/admin.sock");
    let _ = std::fs::remove_file(&socket);
    let impostor = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    impostor.set_nonblocking(true).unwrap();
    std::os::unix::fs::chown(&socket, Some(65534), Some(65534)).unwrap();
    for args in [&["status"][..], &["reload"][..], &["rotate-secrets"][..]] {
        let out = daemon.cli(args).unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("refusing to use the admin socket") && err.contains("belongs to uid 65534"),
            "{err}"
        );
    }
    let accepted = impostor.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the impostor got a connection: {accepted:?}"
    );
}

/// A local user this test creates (once per machine) to run a per-user daemon as; `None`, with the
/// reason printed, when not root.
fn victim_user() -> Option<(u32, u32)> {
    azbroker_tests::users::LocalUser::ensure("azb-sec-victim").map(|u| (u.uid, u.gid))
}

/// The real fallback: a per-user daemon started without `XDG_RUNTIME_DIR` (su, cron) whose
/// `/tmp/azbroker-run-<uid>` another user made first refuses it, naming it.
#[test]
fn the_tmp_runtime_fallback_made_by_another_user_is_refused() {
    let Some((uid, gid)) = victim_user() else { return };
    let home = tempfile::Builder::new().prefix("azb-victim").tempdir_in("/tmp").unwrap();
    let config = home.path().join("config.toml");
    let port = azbroker_tests::free_port();
    let state = home.path().join("state");
    std::fs::write(
        &config,
        format!("[server]\nlisten = [\"127.0.0.1:{port}\"]\nstate_dir = \"{}\"\n", state.display()),
    )
    .unwrap();
    for p in [home.path(), &config] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    }
    chmod(&config, 0o600);
    let fallback = std::path::PathBuf::from(format!("/tmp/azbroker-run-{uid}"));
    let _ = std::fs::remove_dir_all(&fallback);
    std::fs::create_dir(&fallback).unwrap();
    std::os::unix::fs::chown(&fallback, Some(65534), Some(65534)).unwrap();
    chmod(&fallback, 0o777);
    let out = Command::new("timeout")
        .args(["20", "setpriv", &format!("--reuid={uid}"), &format!("--regid={gid}"), "--clear-groups", "--"])
        .args(["env", "-u", "XDG_RUNTIME_DIR", "-u", "RUNTIME_DIRECTORY", "-u", "STATE_DIRECTORY"])
        .arg(format!("HOME={}", home.path().display()))
        .arg(azbroker_tests::binary())
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&fallback);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("refusing the directory {}", fallback.display())), "{err}");
    assert!(err.contains("owned by uid 65534"), "{err}");
}
