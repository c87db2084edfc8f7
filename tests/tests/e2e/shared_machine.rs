//! A shared machine (issue 13): one system daemon with `self_service = true`, run as root, and
//! real local users (`useradd`) who sign in as themselves through the admin socket, each device
//! code approved as a different Entra user. Each user's plain request gets their own identity;
//! nobody reaches, sees or signs out another user's login, profile or workspace; logins survive
//! a restart; a user's sign-out leaves the other untouched.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use azbroker_tests::users::LocalUser;
use serde_json::Value;

use super::logins::ALICE;
use super::*;

const BOB: &str = "bob@fabrikam.onmicrosoft.com";
const VAULT: &str = "https://vault.azure.net";
const SUBSCRIPTION: &str = "11111111-2222-3333-4444-555555555555";

struct Machine {
    auth: Authority,
    daemon: Daemon,
}

impl Machine {
    fn run(&self, user: &LocalUser, args: &[&str]) -> Output {
        user.command(azbroker_tests::binary())
            .arg("--config")
            .arg(&self.daemon.config_path)
            .args(args)
            .output()
            .expect("the CLI runs")
    }

    /// `azbroker login --device-code` as `user`, approved at the authority as `entra_user`.
    fn login(&self, user: &LocalUser, entra_user: &str) {
        self.auth.auto_approve_device_codes(Some(entra_user));
        let out = self.run(user, &["login", "--device-code"]);
        self.auth.auto_approve_device_codes(None);
        assert!(out.status.success(), "login as {}: {}\n{}", user.name, text(&out.stderr), self.daemon.log());
        assert!(text(&out.stdout).contains(&format!("Signed in as {entra_user}")), "{}", text(&out.stdout));
    }

    /// The `oid` of the token `azbroker token` (a plain request: no prefix, no selector) gets.
    fn plain_oid(&self, user: &LocalUser) -> Result<String, String> {
        let out = self.run(user, &["token", "--resource", VAULT]);
        if !out.status.success() {
            return Err(text(&out.stderr));
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let claims = self.auth.verify(v["accessToken"].as_str().ok_or("no token")?)?;
        Ok(claims["oid"].as_str().ok_or("no oid")?.to_owned())
    }

    /// An IMDS request with a `/p/{profile}` prefix sent by `user`'s own process (curl).
    fn imds_as(&self, user: &LocalUser, profile: &str) -> (u16, Value) {
        self.imds_at(user, &self.daemon.url(&format!("/p/{profile}")))
    }

    /// What `azbroker env --profile PROFILE --dialect imds` prints for `user`: the host alone.
    fn imds_host(&self, user: &LocalUser, profile: &str) -> String {
        let out = self.run(user, &["env", "--profile", profile, "--dialect", "imds", "--format", "json"]);
        assert!(out.status.success(), "env as {}: {}", user.name, text(&out.stderr));
        let vars: Value = serde_json::from_slice(&out.stdout).expect("env --format json");
        vars["AZURE_POD_IDENTITY_AUTHORITY_HOST"].as_str().expect("the IMDS host").to_owned()
    }

    /// An IMDS request to `host` (no prefix) sent by `user`'s own process; status 0 when nothing
    /// answers.
    fn imds_at(&self, user: &LocalUser, host: &str) -> (u16, Value) {
        let url = format!("{host}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={VAULT}");
        let out = user
            .command("curl")
            .args(["-s", "--max-time", "30", "-H", "Metadata: true", "-w", "\n%{http_code}", &url])
            .output()
            .expect("curl runs");
        let body = text(&out.stdout);
        let (json, code) = body.rsplit_once('\n').expect("curl printed the status");
        (code.trim().parse().unwrap_or(0), serde_json::from_str(json).unwrap_or(Value::Null))
    }

    /// `curl` on the admin socket as `user` (the self-service API without a CLI of its own).
    fn admin_as(&self, user: &LocalUser, method: &str, path: &str, body: &str) -> (u16, Value) {
        let socket = self.daemon.dir.path().join("run/admin.sock");
        let out = user
            .command("curl")
            .args(["-s", "--max-time", "30", "--unix-socket"])
            .arg(&socket)
            .args(["-X", method, "-H", "Content-Type: application/json", "-w", "\n%{http_code}"])
            .args(if body.is_empty() { vec![] } else { vec!["-d", body] })
            .arg(format!("http://azbroker-admin{path}"))
            .output()
            .expect("curl runs");
        let body = text(&out.stdout);
        let (json, code) = body.rsplit_once('\n').expect("curl printed the status");
        (code.trim().parse().unwrap(), serde_json::from_str(json).unwrap_or(Value::Null))
    }

    fn status(&self, user: &LocalUser) -> String {
        let out = self.run(user, &["status", "--json"]);
        assert!(out.status.success(), "status as {}: {}", user.name, text(&out.stderr));
        text(&out.stdout)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn oid_of(auth: &Authority, body: &Value) -> String {
    auth.verify(body["access_token"].as_str().unwrap()).unwrap()["oid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_local_user_signs_in_as_themselves() {
    let (Some(alice), Some(bob)) = (LocalUser::ensure("azb-alice"), LocalUser::ensure("azb-bob")) else {
        return;
    };
    let auth = Authority::start();
    auth.add_user(ALICE, &[CONTOSO, FABRIKAM]);
    auth.add_user(BOB, &[FABRIKAM, CONTOSO]);
    auth.set_device_code_timing(Duration::from_secs(1), Duration::from_secs(120));
    auth.register_subscription(SUBSCRIPTION, FABRIKAM);
    let url = auth.url();
    let body = format!("[cloud]\nauthority_host = \"{url}\"\narm_endpoint = \"{url}\"\n");
    let daemon = Daemon::start_with_server(&body, "self_service = true", &[]).expect("daemon starts");
    // The users reach the config and the admin socket through the test's directory (the state
    // directory stays the daemon's own, 0700).
    std::fs::set_permissions(daemon.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut m = Machine { auth, daemon };

    // Before signing in, a user's plain request has no profile to get.
    assert!(m.plain_oid(&alice).is_err());
    m.login(&alice, ALICE);
    m.login(&bob, BOB);

    // Each user's plain request gets a token of their own Entra user.
    let alice_oid = m.plain_oid(&alice).expect("alice gets a token");
    let bob_oid = m.plain_oid(&bob).expect("bob gets a token");
    assert_ne!(alice_oid, bob_oid);
    let (code, own) = m.imds_as(&alice, "azb-alice");
    assert_eq!(code, 200, "{own}");
    assert_eq!(oid_of(&m.auth, &own), alice_oid);

    // Neither reaches the other's profile, by its user name or its real name.
    for profile in ["azb-alice".to_owned(), format!("_u{}", alice.uid)] {
        let (code, body) = m.imds_as(&bob, &profile);
        // Never print a body that might hold a token.
        assert!(code == 400 || code == 403, "{profile}: {code} {}", body["error"]);
        assert!(body.get("access_token").is_none(), "{profile}: a token was served");
    }

    // Status: each sees their own login only.
    let bob_status = m.status(&bob);
    assert!(bob_status.contains(BOB), "{bob_status}");
    for other in [ALICE, "azb-alice", &format!("_u{}", alice.uid)] {
        assert!(!bob_status.contains(other), "bob's status shows {other}: {bob_status}");
    }
    // The administrator (root) sees both.
    let root_status = m.daemon.cli(&["status", "--json"]).unwrap();
    let root_status = text(&root_status.stdout);
    assert!(root_status.contains(ALICE) && root_status.contains(BOB), "{root_status}");

    // Bob cannot sign Alice out; the admin-only route refuses him.
    let out = m.run(&bob, &["logout", "--user", "azb-alice"]);
    assert!(!out.status.success());
    assert_eq!(m.plain_oid(&alice).unwrap(), alice_oid);

    // Personal workspaces, private per user: both name one `ml`; the tenant is discovered.
    let add = ["workspace", "add", "--name", "ml", "--subscription", SUBSCRIPTION, "--resource-group", "rg"];
    for user in [&alice, &bob] {
        let out = m.run(user, &[&add[..], &["--workspace", "w"]].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains(&azbroker_testkit::tenant_guid(FABRIKAM)),
            "{}",
            text(&out.stdout)
        );
    }
    let out = m.run(&alice, &["token", "--profile", "ml", "--resource", VAULT]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let claims = m.auth.verify(v["accessToken"].as_str().unwrap()).unwrap();
    assert_eq!(claims["tid"].as_str().unwrap(), azbroker_testkit::tenant_guid(FABRIKAM));
    assert_eq!(claims["upn"], ALICE);
    let (code, body) = m.imds_as(&bob, "ml");
    assert_eq!(code, 200, "{body}");
    assert_eq!(m.auth.verify(body["access_token"].as_str().unwrap()).unwrap()["upn"], BOB);
    let (code, body) = m.imds_as(&bob, &format!("_u{}.ml", alice.uid));
    assert!((code == 400 || code == 403) && body.get("access_token").is_none(), "{code} {}", body["error"]);
    // `env --profile ml` names a listener of each user's own `ml` by address alone (a client may
    // rebuild the path): the owner gets their workspace's tenant there, anyone else nothing.
    let alice_ml = m.imds_host(&alice, "ml");
    let bob_ml = m.imds_host(&bob, "ml");
    assert_ne!(alice_ml, bob_ml);
    assert!(!alice_ml.contains("/p/") && !alice_ml.trim_start_matches("http://").contains('/'), "{alice_ml}");
    let (code, body) = m.imds_at(&alice, &alice_ml);
    assert_eq!(code, 200, "{body}");
    let claims = m.auth.verify(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(
        (claims["tid"].as_str().unwrap(), &claims["upn"]),
        (&*azbroker_testkit::tenant_guid(FABRIKAM), &ALICE.into())
    );
    let (code, body) = m.imds_at(&bob, &alice_ml);
    assert!((code == 400 || code == 403) && body.get("access_token").is_none(), "{code} {}", body["error"]);
    let (code, body) = m.imds_at(&bob, &bob_ml);
    assert_eq!(
        (code, &m.auth.verify(body["access_token"].as_str().unwrap()).unwrap()["upn"]),
        (200, &BOB.into())
    );
    // A name that is neither one of the caller's nor configured is refused with a pointer.
    let out = m.run(&bob, &["env", "--profile", "nope", "--dialect", "imds"]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("personal profiles"),
        "{}",
        text(&out.stderr)
    );
    // Bob's status lists his own listeners only.
    assert!(m.status(&bob).contains(bob_ml.trim_start_matches("http://")));
    assert!(!m.status(&bob).contains(alice_ml.trim_start_matches("http://")));
    // Each lists only their own; Bob removing "ml" removes his own only.
    let (code, body) = m.admin_as(&bob, "GET", "/v1/self/workspaces", "");
    assert_eq!((code, body.as_array().map(Vec::len)), (200, Some(1)), "{body}");
    let out = m.run(&bob, &["workspace", "remove", "ml"]);
    assert!(out.status.success() && text(&out.stdout).contains("Removed"), "{}", text(&out.stderr));
    assert_ne!(m.imds_as(&bob, "ml").0, 200);
    assert_eq!(m.imds_as(&alice, "ml").0, 200);
    // His workspace's listener closed with it; hers serves on.
    assert_eq!(m.imds_at(&bob, &bob_ml).0, 0, "the removed workspace's listener still answers");
    assert_eq!(m.imds_at(&alice, &alice_ml).0, 200);
    // A self-service user may not reach the administrator's endpoints.
    let (code, _) = m.admin_as(&bob, "POST", "/v1/reload", "");
    assert_eq!(code, 403);

    // Both logins survive a restart (a fresh token, through each user's refresh token).
    m.daemon.restart(&[]).expect("restart");
    assert_eq!(m.plain_oid(&alice).unwrap(), alice_oid);
    assert_eq!(m.plain_oid(&bob).unwrap(), bob_oid);

    // Alice signs out: her requests get nothing any more; Bob is untouched.
    let out = m.run(&alice, &["logout"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(m.plain_oid(&alice).is_err());
    assert_eq!(m.plain_oid(&bob).unwrap(), bob_oid);
    // The administrator signs Bob out by name.
    let out = m.daemon.cli(&["logout", "--user", "azb-bob"]).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(m.plain_oid(&bob).is_err());
}

/// The claims of a JWT, read without verifying it (the authority runs in another process here).
fn claims_of(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
        .unwrap()
}

/// The link-local variant, inside a network namespace this test creates: two users' clients with
/// no environment at all ask 169.254.169.254 and each gets their own identity; root's gets the
/// configured default profile's, as without self-service.
#[test]
fn link_local_imds_serves_each_user_their_own_identity() {
    use super::link_local::{Netns, NsCloud, NsDaemon, absolute};
    let (Some(alice), Some(bob)) = (LocalUser::ensure("azb-alice"), LocalUser::ensure("azb-bob")) else {
        return;
    };
    let ns = Netns::create();
    let mut cloud = NsCloud::start(&ns);
    cloud.steer(&format!("user {ALICE} {CONTOSO}"));
    cloud.steer(&format!("user {BOB} {FABRIKAM}"));
    let daemon = NsDaemon::start_with(&ns, &cloud.authority, "self_service = true").expect("daemon starts");
    std::fs::set_permissions(daemon.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = daemon.dir.path().join("config.toml");
    // `program` run as `user` inside the namespace, with no environment at all.
    let as_user = |user: &LocalUser, program: &std::path::Path| {
        let mut cmd = ns.command(absolute(std::path::Path::new("setpriv")));
        cmd.arg(format!("--reuid={}", user.uid))
            .arg(format!("--regid={}", user.gid))
            .args(["--clear-groups", "--"])
            .arg(program);
        cmd
    };
    for (user, entra) in [(&alice, ALICE), (&bob, BOB)] {
        cloud.steer(&format!("approve {entra}"));
        let out = as_user(user, &azbroker_tests::binary())
            .arg("--config")
            .arg(&config)
            .args(["login", "--device-code"])
            .output()
            .unwrap();
        cloud.steer("approve -");
        assert!(out.status.success(), "login as {}: {}\n{}", user.name, text(&out.stderr), daemon.log());
    }
    let url = format!(
        "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource={VAULT}"
    );
    let imds = |cmd: &mut std::process::Command| -> Value {
        let out = cmd.args(["-s", "--max-time", "30", "-H", "Metadata: true", &url]).output().unwrap();
        let body: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        match body["access_token"].as_str() {
            Some(jwt) => claims_of(jwt),
            None => panic!("no token: {}", body["error_description"]),
        }
    };
    let curl = absolute(std::path::Path::new("curl"));
    for (user, entra) in [(&alice, ALICE), (&bob, BOB)] {
        let claims = imds(&mut as_user(user, &curl));
        assert_eq!(claims["upn"], entra, "{}'s plain IMDS request", user.name);
    }
    // Root's own request keeps the configured default profile (the service principal).
    let claims = imds(&mut ns.command(&curl));
    assert_eq!(claims["appid"], CLIENT_ID);
    assert!(claims.get("upn").is_none());
}

/// A Unix user deleted after signing in keeps nothing usable: processes still running under the
/// old uid get no token once the daemon rebuilds its runtime (a reload here; the daemon also
/// sweeps for deleted users every minute and at start), and the login is forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_unix_user_keeps_nothing_usable() {
    let Some(gone) = LocalUser::ensure("azb-gone") else { return };
    let auth = Authority::start();
    auth.add_user(ALICE, &[CONTOSO]);
    auth.set_device_code_timing(Duration::from_secs(1), Duration::from_secs(120));
    let url = auth.url();
    let body = format!("[cloud]\nauthority_host = \"{url}\"\narm_endpoint = \"{url}\"\n");
    let daemon = Daemon::start_with_server(&body, "self_service = true", &[]).expect("daemon starts");
    std::fs::set_permissions(daemon.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut m = Machine { auth, daemon };
    m.login(&gone, ALICE);
    m.plain_oid(&gone).expect("a token before the account is deleted");

    let del = std::process::Command::new("userdel").args(["--remove", "azb-gone"]).output().unwrap();
    assert!(del.status.success(), "userdel: {}", text(&del.stderr));
    let out = m.daemon.cli(&["reload"]).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The old uid, still able to run processes, gets nothing.
    let mut orphan = gone.clone();
    orphan.home = std::path::PathBuf::from("/");
    assert!(m.plain_oid(&orphan).is_err(), "a deleted user's uid still got a token");
    // After a restart the start-up sweep forgets the login itself.
    m.daemon.restart(&[]).expect("restart");
    let login = format!("_u{}", gone.uid);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = text(&m.daemon.cli(&["status", "--json"]).unwrap().stdout);
        if !status.contains(&login) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the deleted user's login is still listed: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(m.plain_oid(&orphan).is_err());
}
