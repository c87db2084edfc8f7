//! The command line as a user meets it: help, config checking, and `env` output.
//! (Also makes `cargo test --workspace` build the `azbroker` binary the end-to-end tests run.)

use std::path::Path;
use std::process::{Command, Output};

/// `azbroker --config CONFIG ARGS`, never autostarting a daemon (these tests run as any user).
fn azbroker(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_azbroker"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("AZBROKER_NO_AUTOSTART", "1")
        .output()
        .unwrap()
}

/// A stand-in for a running daemon on `run/admin.sock`: its `GET /v1/status` lists `auto`, the
/// listeners it opened for profiles, as `(profile, kind, address)`. Serves until the test ends.
fn fake_daemon(run: &Path, auto: &[(&str, &str, &str)]) {
    use std::io::{Read, Write};
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(run).unwrap();
    let sockets: Vec<_> = auto
        .iter()
        .map(|(profile, kind, address)| {
            serde_json::json!({"kind": kind, "address": address, "profile": profile, "origin": "auto"})
        })
        .collect();
    let status = serde_json::json!({
        "version": "0.1.0", "pid": 7, "ready": true, "uptime_secs": 1, "listeners": ["127.0.0.1:50999"],
        "profiles": ["one", "two"], "default_profile": null, "entries": [], "sockets": sockets,
        "stats": {"hits": 0, "misses": 0, "coalesced": 0, "upstream_calls": 0, "upstream_errors": 0, "refreshes": 0}
    })
    .to_string();
    let listener = std::os::unix::net::UnixListener::bind(run.join("admin.sock")).unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut request = Vec::new();
            let mut buf = [0; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let (code, body) = if request.starts_with(b"GET /v1/status ") {
                ("200 OK", status.as_str())
            } else {
                ("404 Not Found", "")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {code}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

/// A config with profiles `one` and `two`; `daemon`: a (stand-in) daemon runs, which opened
/// 127.0.0.1:51001 for `one` and 127.0.0.1:51002 for `two`.
fn config_in(dir: &Path, daemon: bool) -> std::path::PathBuf {
    if daemon {
        fake_daemon(
            &dir.join("run"),
            &[("one", "http", "127.0.0.1:51001"), ("two", "http", "127.0.0.1:51002")],
        );
    }
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:50999\"]\nstate_dir = \"{}\"\nruntime_dir = \"{}\"\n\n[logins.a]\nkind = \"service-principal\"\ntenant = \"t.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[profiles.one]\nlogin = \"a\"\n[profiles.two]\nlogin = \"a\"\ntenant = \"u.example\"\n",
            dir.join("state").display(),
            dir.join("run").display()
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
    let cfg = config_in(dir.path(), true);
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
    let cfg = config_in(dir.path(), true);
    let out = azbroker(&cfg, &["env", "--profile", "two", "--dialect", "imds", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["AZURE_POD_IDENTITY_AUTHORITY_HOST"], "http://127.0.0.1:51002",
        "the profile's own listener, no path"
    );
    let out = azbroker(&cfg, &["env", "--format", "fish"]);
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("set -gx IDENTITY_ENDPOINT "));
    let out = azbroker(&cfg, &["env", "--format", "powershell"]);
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("$env:IDENTITY_ENDPOINT = '"));
}

#[test]
fn env_for_an_unknown_profile_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), true);
    let out = azbroker(&cfg, &["env", "--profile", "three"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("profile 'three' is not configured") && err.contains("one, two"), "{err}");
}

#[test]
fn run_passes_the_variables_to_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), true);
    let out =
        azbroker(&cfg, &["run", "--profile", "one", "--", "sh", "-c", "echo $IDENTITY_ENDPOINT; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "http://127.0.0.1:51001/msi/token");
}

/// `env --profile` asks the running daemon for the listener it opened for the profile: with no
/// daemon it says to start one, rather than falling back to a path prefix some clients drop; a
/// daemon that opened none (a profile added since) says to reload.
#[test]
fn env_for_a_profile_without_its_own_listener_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path(), false);
    let out = azbroker(&cfg, &["env", "--profile", "two", "--dialect", "imds"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("`azbroker serve`") && err.contains("profile 'two'"), "{err}");
    assert!(azbroker(&cfg, &["env"]).status.success(), "the default profile needs none");
    fake_daemon(&dir.path().join("run"), &[("one", "http", "127.0.0.1:51001")]);
    let out = azbroker(&cfg, &["env", "--profile", "two", "--dialect", "imds"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no http listener for profile 'two'") && err.contains("azbroker reload"), "{err}");
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

/// `env --dialect D --format json` for a config with an HTTPS listener.
fn env_json(cfg: &Path, dialect: &str) -> serde_json::Value {
    let out = azbroker(cfg, &["env", "--profile", "two", "--dialect", dialect, "--format", "json"]);
    assert!(out.status.success(), "{dialect}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn keys(v: &serde_json::Value) -> Vec<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn env_knows_every_dialect() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = [\"127.0.0.1:50998\"]\ntls_listen = [\"127.0.0.1:50997\"]\nstate_dir = \"{}\"\nruntime_dir = \"{}\"\n\n[logins.a]\nkind = \"service-principal\"\ntenant = \"t.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[profiles.one]\nlogin = \"a\"\n[profiles.two]\nlogin = \"a\"\n",
            dir.path().join("state").display(),
            dir.path().join("run").display()
        ),
    )
    .unwrap();
    fake_daemon(
        &dir.path().join("run"),
        &[("two", "http", "127.0.0.1:51012"), ("two", "https", "127.0.0.1:51013")],
    );
    let base = "http://127.0.0.1:51012";
    let ml = env_json(&cfg, "azure-ml");
    assert_eq!(keys(&ml), ["DEFAULT_IDENTITY_CLIENT_ID", "MSI_ENDPOINT", "MSI_SECRET"]);
    assert_eq!(ml["MSI_ENDPOINT"], format!("{base}/MSI/auth"));
    assert_eq!(ml["DEFAULT_IDENTITY_CLIENT_ID"], "clientid");
    assert_eq!(ml["MSI_SECRET"].as_str().unwrap().len(), 43);
    assert_eq!(env_json(&cfg, "cloud-shell")["MSI_ENDPOINT"], format!("{base}/oauth2/token"));
    let arc = env_json(&cfg, "arc");
    assert_eq!(arc["IDENTITY_ENDPOINT"], format!("{base}/arc/metadata/identity/oauth2/token"));
    assert_eq!(arc["IMDS_ENDPOINT"], base);
    let sf = env_json(&cfg, "service-fabric");
    assert_eq!(sf["IDENTITY_ENDPOINT"], "https://127.0.0.1:51013/msi/token");
    let thumb = sf["IDENTITY_SERVER_THUMBPRINT"].as_str().unwrap();
    assert_eq!(thumb.len(), 40, "{thumb}");
    assert_eq!(sf["NODE_EXTRA_CA_CERTS"], dir.path().join("run/service-fabric.crt").display().to_string());
    // Java: the daemon's trust store; a caller's own JAVA_TOOL_OPTIONS are kept, ours last.
    let store = dir.path().join("run/service-fabric-truststore.p12").display().to_string();
    let ours = format!("-Djavax.net.ssl.trustStore={store} -Djavax.net.ssl.trustStoreType=PKCS12");
    let java = |theirs: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_azbroker"));
        cmd.arg("--config").arg(&cfg).env("AZBROKER_NO_AUTOSTART", "1").env_remove("JAVA_TOOL_OPTIONS");
        if let Some(theirs) = theirs {
            cmd.env("JAVA_TOOL_OPTIONS", theirs);
        }
        let out = cmd
            .args(["env", "--profile", "two", "--dialect", "service-fabric", "--format", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["JAVA_TOOL_OPTIONS"].as_str().unwrap().to_owned()
    };
    assert_eq!(java(None), ours);
    assert_eq!(java(Some("-Xmx64m")), format!("-Xmx64m {ours}"));
    assert_eq!(java(Some(&format!("-Xmx64m {ours}"))), format!("-Xmx64m {ours}"), "applied twice: unchanged");
    assert_eq!(
        env_json(&cfg, "service-fabric")["IDENTITY_SERVER_THUMBPRINT"],
        thumb,
        "the certificate is kept"
    );
    let azd = env_json(&cfg, "azd");
    assert_eq!(keys(&azd), ["AZD_AUTH_ENDPOINT", "AZD_AUTH_KEY"]);
    assert_eq!(azd["AZD_AUTH_ENDPOINT"], base);
    let all = env_json(&cfg, "all");
    assert_eq!(
        keys(&all),
        ["DEFAULT_IDENTITY_CLIENT_ID", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET"]
    );
    // Every secret is distinct and stable across invocations.
    assert_eq!(all["MSI_SECRET"], ml["MSI_SECRET"]);
    assert_eq!(sf["IDENTITY_HEADER"], all["IDENTITY_HEADER"]);
    assert_ne!(all["IDENTITY_HEADER"], all["MSI_SECRET"]);
    assert_ne!(azd["AZD_AUTH_KEY"], all["MSI_SECRET"]);
    // Without an HTTPS listener, Service Fabric is refused with the reason.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("tls_listen = [\"127.0.0.1:50997\"]", "tls_listen = []");
    std::fs::write(&cfg, text).unwrap();
    let out = azbroker(&cfg, &["env", "--dialect", "service-fabric"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls_listen"));
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
