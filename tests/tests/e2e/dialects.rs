//! The dialects beyond App Service and IMDS over real sockets, where the SDK judges cannot look:
//! Arc key files in the real `/var/opt/azcmagent/tokens` (permissions, single use, cleanup),
//! the Service Fabric certificate (the thumbprint is the served certificate's; it survives
//! restarts; `token_sha256_to_refresh`, on App Service too), the native API's per-request tenant, IMDS v2 discovery,
//! and the new runtime secrets kept out of the logs.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use azbroker_testkit::tenant_guid;
use serde_json::{Value, json};

use super::*;

const ARM: &str = "https://management.azure.com/";

fn tid(auth: &Authority, token: &str) -> String {
    auth.verify(token).unwrap()["tid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arc_key_files_are_group_readable_single_use_and_cleaned_up() {
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    let profiles = format!(
        "[profiles.contoso]\nlogin = \"app\"\n[profiles.fabrikam]\nlogin = \"app\"\ntenant = \"{FABRIKAM}\"\n"
    );
    let body = sp_config(&auth.url(), CONTOSO, CLIENT_ID, CLIENT_SECRET, &profiles);
    // gid 2 ("bin"), given as a number so the test does not depend on group names.
    let mut daemon =
        Daemon::start_with_server(&body, "default_profile = \"contoso\"\narc_group = \"2\"", &[]).unwrap();
    let vars = daemon.env(&["--dialect", "arc", "--profile", "fabrikam"]).unwrap();
    let endpoint = env_value(&vars, "IDENTITY_ENDPOINT");
    let url = format!("{endpoint}?api-version=2020-06-01&resource={ARM}");
    let challenge = |url: String| async move {
        let r = http().get(url).header("Metadata", "true").send().await.unwrap();
        assert_eq!(r.status(), 401);
        let realm = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        PathBuf::from(realm.strip_prefix("Basic realm=").unwrap())
    };
    let path = challenge(url.clone()).await;
    assert_eq!(path.parent().unwrap(), std::path::Path::new("/var/opt/azcmagent/tokens"));
    let dir_meta = std::fs::symlink_metadata("/var/opt/azcmagent/tokens").unwrap();
    assert!(dir_meta.is_dir() && !dir_meta.file_type().is_symlink());
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (meta.mode() & 0o777, meta.gid()),
        (0o640, 2),
        "readable by root and the configured group only"
    );
    let secret = std::fs::read(&path).unwrap();
    assert!(secret.len() <= 4096 && !secret.ends_with(b"\n") && !secret.is_empty());
    let secret = String::from_utf8(secret).unwrap();
    let redeem = || {
        http().get(&url).header("Metadata", "true").header("Authorization", format!("Basic {secret}")).send()
    };
    let r = redeem().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(tid(&auth, body["access_token"].as_str().unwrap()), tenant_guid(FABRIKAM));
    assert_eq!(redeem().await.unwrap().status(), 401, "a key works once");
    for _ in 0..100 {
        if !path.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!path.exists(), "a used key file is deleted");
    // An abandoned challenge's file goes away when the daemon stops.
    let abandoned = challenge(url).await;
    assert!(abandoned.exists());
    assert!(daemon.stop().unwrap().success());
    assert!(!abandoned.exists(), "outstanding key files are deleted at shutdown");
    let log = daemon.log();
    assert!(!log.contains(&secret), "an Arc key leaked into the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_fabric_certificate_is_pinned_kept_and_refresh_forces_a_new_token() {
    let (auth, mut daemon) = two_tenants("");
    let vars = daemon.env(&["--dialect", "service-fabric", "--profile", "fabrikam"]).unwrap();
    let endpoint = env_value(&vars, "IDENTITY_ENDPOINT");
    let thumbprint = env_value(&vars, "IDENTITY_SERVER_THUMBPRINT");
    let header = env_value(&vars, "IDENTITY_HEADER");
    let pem = std::fs::read(env_value(&vars, "NODE_EXTRA_CA_CERTS")).unwrap();
    let public_meta = std::fs::metadata(env_value(&vars, "NODE_EXTRA_CA_CERTS")).unwrap();
    assert_eq!(public_meta.mode() & 0o777, 0o644);
    let key_meta = std::fs::metadata(daemon.dir.path().join("state/service-fabric.key")).unwrap();
    assert_eq!(key_meta.mode() & 0o777, 0o600);
    // The public copy is the certificate the listener serves: a client trusting only it gets through
    // (which also checks the 127.0.0.1 name), and its SHA-1 is the exported thumbprint.
    let cert = reqwest::Certificate::from_pem(&pem).unwrap();
    let client = reqwest::Client::builder().no_proxy().tls_certs_only([cert]).build().unwrap();
    let der = pem_to_der(&pem);
    assert_eq!(sha1_hex(&der), thumbprint);
    let get = |extra: String| {
        let (client, endpoint, header) = (client.clone(), endpoint.clone(), header.clone());
        async move {
            let url = format!("{endpoint}?api-version=2019-07-01-preview&resource={ARM}{extra}");
            let r = client.get(url).header("Secret", header).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let first = get(String::new()).await;
    let token = first["access_token"].as_str().unwrap().to_owned();
    assert_eq!(tid(&auth, &token), tenant_guid(FABRIKAM));
    assert!(first["expires_on"].is_u64());
    let scope = "https://management.azure.com//.default";
    assert_eq!(auth.requests_for(FABRIKAM, "client_credentials", scope), 1);
    // Tokens are compared with `assert!`, so that a failure does not print them.
    assert!(get(String::new()).await["access_token"] == token.as_str(), "cached");
    let hash = sha256_hex(token.as_bytes());
    let fresh = get(format!("&token_sha256_to_refresh={hash}")).await;
    assert!(fresh["access_token"] != token.as_str(), "the revoked token again");
    assert_eq!(auth.requests_for(FABRIKAM, "client_credentials", scope), 2, "one fresh upstream token");
    // Plain HTTP on the same path is App Service, not Service Fabric.
    let r = http()
        .get(daemon.url(&format!("/msi/token?api-version=2019-07-01-preview&resource={ARM}")))
        .header("Secret", &header)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    daemon.restart(&[]).unwrap();
    let again = daemon.env(&["--dialect", "service-fabric"]).unwrap();
    assert_eq!(
        env_value(&again, "IDENTITY_SERVER_THUMBPRINT"),
        thumbprint,
        "the certificate survives restarts"
    );
}

/// App Service honours token revocation over real sockets as Service Fabric does (of the real
/// clients, only .NET's send the hash there, see the README's "Token revocation with real
/// clients"): naming the cached token, with `xms_cc`, gets a fresh one from the profile's tenant,
/// which is then the cached one; naming any other token gets the cached one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_service_revocation_fetches_a_fresh_token_for_the_named_one() {
    let (auth, daemon) = two_tenants("");
    let vars = daemon.env(&["--dialect", "app-service", "--profile", "fabrikam"]).unwrap();
    let (endpoint, header) = (env_value(&vars, "IDENTITY_ENDPOINT"), env_value(&vars, "IDENTITY_HEADER"));
    let get = |extra: String| {
        let url = format!("{endpoint}?api-version=2019-08-01&resource={ARM}{extra}");
        let header = header.clone();
        async move {
            let r = http().get(url).header("X-IDENTITY-HEADER", header).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
        }
    };
    let refresh =
        |token: &str| format!("&token_sha256_to_refresh={}&xms_cc=cp1", sha256_hex(token.as_bytes()));
    let scope = "https://management.azure.com//.default";
    // Tokens are compared with `assert!`, so that a failure does not print them.
    let first = get(String::new()).await;
    assert!(get(refresh("some other token")).await == first, "another token named: the cached one");
    assert_eq!(auth.requests_for(FABRIKAM, "client_credentials", scope), 1);
    let fresh = get(refresh(&first)).await;
    assert!(fresh != first, "the revoked token again");
    assert_eq!(tid(&auth, &fresh), tenant_guid(FABRIKAM));
    assert_eq!(auth.requests_for(FABRIKAM, "client_credentials", scope), 2, "one fresh upstream token");
    assert!(get(String::new()).await == fresh, "the fresh token replaced the revoked one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_api_matches_the_tenant_per_request() {
    let (auth, daemon) = two_tenants("");
    let vars = daemon.env(&["--dialect", "azd"]).unwrap();
    let base = env_value(&vars, "AZD_AUTH_ENDPOINT");
    let key = env_value(&vars, "AZD_AUTH_KEY");
    let call = |body: Value, key: String| {
        let url = format!("{base}/token?api-version=2023-07-12-preview");
        async move {
            let r = http().post(url).bearer_auth(key).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let scopes = json!(["https://management.azure.com//.default"]);
    // By GUID: neither profile is configured with one, so the broker learns each profile's tid.
    for tenant in [FABRIKAM, CONTOSO] {
        let (status, body) =
            call(json!({"scopes": scopes, "tenantId": tenant_guid(tenant)}), key.clone()).await;
        assert_eq!((status, body["status"].as_str()), (200, Some("success")), "{body}");
        assert_eq!(tid(&auth, body["token"].as_str().unwrap()), tenant_guid(tenant));
        assert!(body["expiresOn"].as_str().unwrap().ends_with('Z'));
    }
    let (_, body) = call(json!({"scopes": scopes, "tenantId": FABRIKAM}), key.clone()).await;
    assert_eq!(tid(&auth, body["token"].as_str().unwrap()), tenant_guid(FABRIKAM), "by domain");
    let (_, body) = call(json!({"scopes": scopes}), key.clone()).await;
    assert_eq!(tid(&auth, body["token"].as_str().unwrap()), tenant_guid(CONTOSO), "no tenant: the default");
    let (status, body) =
        call(json!({"scopes": scopes, "tenantId": "00000000-0000-0000-0000-0000000000ff"}), key.clone())
            .await;
    assert_eq!(
        (status, body["status"].as_str(), body["code"].as_str()),
        (200, Some("error"), Some("GetTokenError")),
        "{body}"
    );
    let (status, _) = call(json!({"scopes": scopes}), "wrong".into()).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imds_v2_discovery_is_a_json_404_and_new_secrets_stay_out_of_the_logs() {
    let (_auth, mut daemon) = two_tenants("");
    for path in
        ["/metadata/identity/getplatformmetadata?cred-api-version=2.0", "/metadata/identity/credential"]
    {
        let r = http().get(daemon.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "not_found");
    }
    let ml = daemon.env(&["--dialect", "azure-ml"]).unwrap();
    let secret = env_value(&ml, "MSI_SECRET");
    let r = http()
        .get(format!("{}?api-version=2017-09-01&resource={ARM}", env_value(&ml, "MSI_ENDPOINT")))
        .header("secret", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http()
        .get(format!("{}?api-version=2017-09-01&resource={ARM}", env_value(&ml, "MSI_ENDPOINT")))
        .header("secret", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let key = env_value(&daemon.env(&["--dialect", "azd"]).unwrap(), "AZD_AUTH_KEY");
    daemon.stop().unwrap();
    let log = daemon.log();
    assert!(!log.contains(&secret), "MSI secret leaked");
    assert!(!log.contains(&key), "native key leaked");
}

fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(pem);
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

fn hex_digest(alg: &'static aws_lc_rs::digest::Algorithm, bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(alg, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn sha1_hex(bytes: &[u8]) -> String {
    hex_digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes).to_ascii_uppercase()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex_digest(&aws_lc_rs::digest::SHA256, bytes)
}

/// `scheme://host:port` of `url`: all a client that rebuilds the path keeps.
fn origin_of(url: &str) -> String {
    let after = url.find("://").map_or(0, |i| i + 3);
    let end = url[after..].find('/').map_or(url.len(), |i| after + i);
    url[..end].to_owned()
}

/// One token request in `dialect`'s own shape to `url` (the dialect's path on some origin),
/// with the secrets from `vars`; the token's tenant.
async fn tenant_via(auth: &Authority, dialect: &str, url: &str, vars: &[(String, String)]) -> String {
    let plain = http();
    let r = match dialect {
        "app-service" => {
            let url = format!("{url}?api-version=2019-08-01&resource={ARM}");
            plain.get(url).header("X-IDENTITY-HEADER", env_value(vars, "IDENTITY_HEADER")).send().await
        }
        "azure-ml" => {
            let url = format!("{url}?api-version=2017-09-01&resource={ARM}");
            plain.get(url).header("secret", env_value(vars, "MSI_SECRET")).send().await
        }
        "cloud-shell" => {
            let form = format!("resource={ARM}");
            plain.post(url).header("Metadata", "true").body(form).send().await
        }
        "imds" => {
            let url = format!("{url}?api-version=2018-02-01&resource={ARM}");
            plain.get(url).header("Metadata", "true").send().await
        }
        "arc" => {
            let url = format!("{url}?api-version=2020-06-01&resource={ARM}");
            let r = plain.get(&url).header("Metadata", "true").send().await.unwrap();
            assert_eq!(r.status(), 401, "arc: the challenge comes first");
            let realm = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
            let key = std::fs::read_to_string(realm.strip_prefix("Basic realm=").unwrap()).unwrap();
            plain
                .get(&url)
                .header("Metadata", "true")
                .header("Authorization", format!("Basic {key}"))
                .send()
                .await
        }
        "service-fabric" => {
            let pem = std::fs::read(env_value(vars, "NODE_EXTRA_CA_CERTS")).unwrap();
            let cert = reqwest::Certificate::from_pem(&pem).unwrap();
            let tls = reqwest::Client::builder().no_proxy().tls_certs_only([cert]).build().unwrap();
            let url = format!("{url}?api-version=2019-07-01-preview&resource={ARM}");
            tls.get(url).header("Secret", env_value(vars, "IDENTITY_HEADER")).send().await
        }
        other => panic!("no request shape for {other}"),
    };
    let r = r.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{dialect} via {url}: {body}");
    tid(auth, body["access_token"].as_str().unwrap())
}

/// Issue 15 item 2: what `env --profile fabrikam --dialect D` prints must reach fabrikam even
/// when a client keeps only the origin of each URL and rebuilds the path itself (MSAL.NET and
/// Azure.Identity do on `AZURE_POD_IDENTITY_AUTHORITY_HOST`, MSAL4J appends to it): no dialect
/// may carry the profile in the path, where such a client would drop it and be served the
/// default profile's token without any error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dialects_env_for_a_profile_survives_a_client_rebuilding_the_path() {
    let (auth, daemon) = two_tenants("");
    let canonical = [
        ("app-service", "IDENTITY_ENDPOINT", "/msi/token"),
        ("azure-ml", "MSI_ENDPOINT", "/MSI/auth"),
        ("cloud-shell", "MSI_ENDPOINT", "/oauth2/token"),
        ("imds", "AZURE_POD_IDENTITY_AUTHORITY_HOST", "/metadata/identity/oauth2/token"),
        ("arc", "IDENTITY_ENDPOINT", "/arc/metadata/identity/oauth2/token"),
        ("service-fabric", "IDENTITY_ENDPOINT", "/msi/token"),
    ];
    for (dialect, var, path) in canonical {
        let vars = daemon.env(&["--profile", "fabrikam", "--dialect", dialect]).unwrap();
        let exported = env_value(&vars, var);
        for (origin, how) in [(exported.clone(), "as exported"), (origin_of(&exported), "path rebuilt")] {
            let url =
                if how == "as exported" && dialect != "imds" { origin } else { format!("{origin}{path}") };
            let tenant = tenant_via(&auth, dialect, &url, &vars).await;
            assert_eq!(tenant, tenant_guid(FABRIKAM), "{dialect} ({how}, {url}) reached another profile");
        }
    }
    let vars = daemon.env(&["--profile", "fabrikam", "--dialect", "imds"]).unwrap();
    let host = env_value(&vars, "AZURE_POD_IDENTITY_AUTHORITY_HOST");
    assert_eq!(origin_of(&host), host, "IMDS for a profile is a host with no path");
    // The default profile is still what the main listener serves.
    let tenant = tenant_via(&auth, "imds", &daemon.url("/metadata/identity/oauth2/token"), &vars).await;
    assert_eq!(tenant, tenant_guid(CONTOSO));
}

/// A profile added by a reload gets its own listener at once (what `env --profile` then prints
/// serves it), on the same port after a restart; a removed profile's listener closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_opens_and_closes_profile_listeners() {
    let (auth, mut daemon) = two_tenants("");
    let original = std::fs::read_to_string(&daemon.config_path).unwrap();
    let added = format!("{original}\n[profiles.extra]\nlogin = \"app\"\ntenant = \"extra.example\"\n");
    std::fs::write(&daemon.config_path, added).unwrap();
    let out = daemon.cli(&["reload"]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let vars = daemon.env(&["--profile", "extra", "--dialect", "imds"]).unwrap();
    let host = env_value(&vars, "AZURE_POD_IDENTITY_AUTHORITY_HOST");
    assert_eq!(origin_of(&host), host);
    let url = format!("{host}/metadata/identity/oauth2/token");
    assert_eq!(tenant_via(&auth, "imds", &url, &vars).await, tenant_guid("extra.example"));
    daemon.restart(&[]).unwrap();
    let again = daemon.env(&["--profile", "extra", "--dialect", "imds"]).unwrap();
    assert_eq!(env_value(&again, "AZURE_POD_IDENTITY_AUTHORITY_HOST"), host, "the port is kept");
    std::fs::write(&daemon.config_path, original).unwrap();
    let out = daemon.cli(&["reload"]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while http().get(&url).header("Metadata", "true").send().await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "the removed profile's listener still answers");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(daemon.env(&["--profile", "extra"]).is_err(), "a removed profile has no env");
}

/// The per-profile listeners as `status --json` lists them now: `(profile, kind, address)` of the
/// sockets of origin `auto`.
fn profile_sockets(daemon: &Daemon) -> Vec<(String, String, String)> {
    let out = daemon.cli(&["status", "--json"]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut found: Vec<_> = status["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["origin"] == "auto")
        .map(|s| {
            let field = |k: &str| s[k].as_str().unwrap().to_owned();
            (field("profile"), field("kind"), field("address"))
        })
        .collect();
    found.sort();
    found
}

/// `status` lists every per-profile listener as open now (a reload adds one), and `env --profile`
/// takes its address from the daemon, not from the state directory (which an `admin_group`
/// member cannot read); with no daemon it says to start one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_the_profile_listeners_and_env_asks_the_daemon_for_them() {
    let (auth, daemon) = two_tenants("");
    let sockets = profile_sockets(&daemon);
    let kinds: Vec<(&str, &str)> = sockets.iter().map(|(p, k, _)| (p.as_str(), k.as_str())).collect();
    assert_eq!(
        kinds,
        [("contoso", "http"), ("contoso", "https"), ("fabrikam", "http"), ("fabrikam", "https")]
    );
    let address = |profile: &str, kind: &str| {
        sockets.iter().find(|(p, k, _)| p == profile && k == kind).unwrap().2.clone()
    };
    // What the state directory records no longer matters to the CLI.
    let state = daemon.dir.path().join("state/profile-listeners");
    assert!(state.exists(), "the daemon records its ports");
    std::fs::write(&state, "fabrikam 127.0.0.1:1 127.0.0.1:2\n").unwrap();
    let vars = daemon.env(&["--profile", "fabrikam", "--dialect", "imds"]).unwrap();
    let host = env_value(&vars, "AZURE_POD_IDENTITY_AUTHORITY_HOST");
    assert_eq!(host, format!("http://{}", address("fabrikam", "http")));
    let url = format!("{host}/metadata/identity/oauth2/token");
    assert_eq!(tenant_via(&auth, "imds", &url, &vars).await, tenant_guid(FABRIKAM));
    let vars = daemon.env(&["--profile", "fabrikam", "--dialect", "service-fabric"]).unwrap();
    let endpoint = env_value(&vars, "IDENTITY_ENDPOINT");
    assert_eq!(endpoint, format!("https://{}/msi/token", address("fabrikam", "https")));
    assert_eq!(tenant_via(&auth, "service-fabric", &endpoint, &vars).await, tenant_guid(FABRIKAM));

    let out = daemon.cli(&["status"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "http   {} (profile fabrikam), opened for the profile",
            address("fabrikam", "http")
        )),
        "{text}"
    );

    let original = std::fs::read_to_string(&daemon.config_path).unwrap();
    let added = format!("{original}\n[profiles.extra]\nlogin = \"app\"\ntenant = \"extra.example\"\n");
    std::fs::write(&daemon.config_path, added).unwrap();
    let out = daemon.cli(&["reload"]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after: Vec<String> =
        profile_sockets(&daemon).into_iter().map(|(p, k, _)| format!("{p}/{k}")).collect();
    assert_eq!(
        after,
        ["contoso/http", "contoso/https", "extra/http", "extra/https", "fabrikam/http", "fabrikam/https"]
    );

    let mut daemon = daemon;
    daemon.stop().unwrap();
    let err = daemon.env(&["--profile", "fabrikam"]).unwrap_err().to_string();
    assert!(err.contains("azbroker serve"), "{err}");
    assert!(!err.contains("/p/"), "{err}");
}
