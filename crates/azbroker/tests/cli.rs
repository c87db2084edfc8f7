//! The command line as a user meets it: help, config checking, and `env` output.
//! (Also makes `cargo test --workspace` build the `azbroker` binary the end-to-end tests run.)

use std::path::Path;
use std::process::{Command, Output};

fn azbroker(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_azbroker")).arg("--config").arg(config).args(args).output().unwrap()
}

fn config_in(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:50999\"]\nstate_dir = \"{}\"\n\n[logins.a]\nkind = \"service-principal\"\ntenant = \"t.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[profiles.one]\nlogin = \"a\"\n[profiles.two]\nlogin = \"a\"\ntenant = \"u.example\"\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn help_lists_the_subcommands() {
    let out = Command::new(env!("CARGO_BIN_EXE_azbroker")).arg("--help").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in [
        "serve",
        "env",
        "run",
        "token",
        "check-config",
        "status",
        "reload",
        "refresh",
        "doctor",
        "completions",
        "man",
    ] {
        assert!(text.contains(cmd), "{cmd} missing from --help");
    }
}

#[test]
fn env_prints_app_service_exports_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path());
    let out = azbroker(&cfg, &["env"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], "export IDENTITY_ENDPOINT=http://127.0.0.1:50999/msi/token");
    assert!(lines[1].starts_with("export IDENTITY_HEADER="));
    // The header is stable across invocations (persisted in state_dir).
    let again = String::from_utf8(azbroker(&cfg, &["env"]).stdout).unwrap();
    assert_eq!(text, again);
}

#[test]
fn env_formats_and_dialects() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path());
    let out = azbroker(&cfg, &["env", "--profile", "two", "--dialect", "imds", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["AZURE_POD_IDENTITY_AUTHORITY_HOST"], "http://127.0.0.1:50999/p/two");
    let out = azbroker(&cfg, &["env", "--format", "fish"]);
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("set -gx IDENTITY_ENDPOINT "));
    let out = azbroker(&cfg, &["env", "--format", "powershell"]);
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("$env:IDENTITY_ENDPOINT = '"));
}

#[test]
fn env_for_an_unknown_profile_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path());
    let out = azbroker(&cfg, &["env", "--profile", "three"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("profile 'three' is not configured") && err.contains("one, two"), "{err}");
}

#[test]
fn run_passes_the_variables_to_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path());
    let out =
        azbroker(&cfg, &["run", "--profile", "one", "--", "sh", "-c", "echo $IDENTITY_ENDPOINT; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "http://127.0.0.1:50999/p/one/msi/token");
}

#[test]
fn check_config_accepts_the_example_and_reports_problems() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/azbroker.example.toml");
    let out = azbroker(&example, &["check-config"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[cloud]\nname = \"Mars\"\n").unwrap();
    let out = azbroker(&bad, &["check-config"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8(out.stderr).unwrap().contains("cloud.name"));
}

#[test]
fn missing_explicit_config_is_an_error() {
    let out = azbroker(Path::new("/nonexistent/azbroker.toml"), &["check-config"]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn completions_and_man_page_are_generated_from_the_cli() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_azbroker")).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = run(&["completions", shell]);
        for word in ["doctor", "refresh", "watch-config"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let page = run(&["man"]);
    assert!(page.contains(".TH azbroker 1"), "{page}");
    assert!(page.contains("azbroker refresh") && page.contains("\\-\\-drain\\-timeout"), "{page}");
    // Doctor works without any config file (and says so), instead of failing to load one.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_azbroker"))
        .args(["--config", dir.path().join("missing.toml").to_str().unwrap(), "doctor", "--json"])
        .env_clear()
        .output()
        .unwrap();
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let config = findings.as_array().unwrap().iter().find(|f| f["check"] == "config").unwrap();
    assert_eq!(config["level"], "fail");
    assert!(config["message"].as_str().unwrap().contains("missing.toml"), "{config}");
    assert_eq!(out.status.code(), Some(1));
}
