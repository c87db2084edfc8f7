//! Real SDK clients as judges: each runs unmodified with only what `azbroker env` prints, for a
//! non-default profile, and must receive a token whose `tid` is that profile's tenant. Every
//! (client, dialect) pair the client implements is run; the outcomes become the README's
//! compatibility table (see `azbroker_tests::compat`), which this test checks.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use azbroker_testkit::tenant_guid;
use azbroker_tests::compat::{self, Matrix, Outcome};
use azbroker_tests::repo_root;
use serde_json::Value;

use super::link_local;
use super::*;

/// One client program: how to start it.
pub struct Client {
    pub id: &'static str,
    pub label: &'static str,
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// Every client judge, in table order. `arm`: the fake Resource Manager `az` lists subscriptions
/// at (HTTPS URL, the certificate to trust).
pub fn clients(arm: (&str, &std::path::Path)) -> Vec<Client> {
    let root = azbroker_tests::clients_dir();
    let python = root.join(".venv/bin/python");
    let azureml = root.join(".venv-azureml/bin/python");
    let azcli = root.join(".venv-azcli/bin/python");
    let rust = root.join("rust/target/debug/azbroker-rust-mi-client");
    let go = root.join("go/bin/go-mi-client");
    let java_classes = root.join("java/target/classes");
    let java_lib = root.join("java/target/lib");
    for need in [
        &python,
        &azureml,
        &azcli,
        &rust,
        &go,
        &java_classes.join("azbroker/MiClient.class"),
        &root.join("node/node_modules/@azure/identity"),
    ] {
        assert!(
            need.exists(),
            "{} missing: run tests/clients/install.sh (tests/run does it)",
            need.display()
        );
    }
    let py = python_judge();
    let js = root.join("node/mi_client.mjs").display().to_string();
    let script = |s: &str, name: &str| vec![s.to_owned(), "--client".to_owned(), name.to_owned()];
    let java_cp = format!("{}:{}/*", java_classes.display(), java_lib.display());
    let java = |name: &str| {
        vec![
            "-cp".to_owned(),
            java_cp.clone(),
            "azbroker.MiClient".to_owned(),
            "--client".to_owned(),
            name.to_owned(),
        ]
    };
    let go_args = |name: &str| vec!["--client".to_owned(), name.to_owned()];
    vec![
        Client {
            id: "azure-identity-mi",
            label: "Python azure-identity `ManagedIdentityCredential` (sync)",
            program: python.clone(),
            args: script(&py, "azure-identity-mi"),
        },
        Client {
            id: "azure-identity-mi-async",
            label: "Python azure-identity `ManagedIdentityCredential` (async)",
            program: python.clone(),
            args: script(&py, "azure-identity-mi-async"),
        },
        Client {
            id: "azure-identity-dac",
            label: "Python azure-identity `DefaultAzureCredential` (sync)",
            program: python.clone(),
            args: script(&py, "azure-identity-dac"),
        },
        Client {
            id: "azure-identity-dac-async",
            label: "Python azure-identity `DefaultAzureCredential` (async)",
            program: python.clone(),
            args: script(&py, "azure-identity-dac-async"),
        },
        Client {
            id: "msal-mi",
            label: "MSAL Python `ManagedIdentityClient` (what `az login --identity` uses)",
            program: python,
            args: script(&py, "msal-mi"),
        },
        Client {
            id: "node-identity-mi",
            label: "Node @azure/identity `ManagedIdentityCredential`",
            program: "node".into(),
            args: script(&js, "node-identity-mi"),
        },
        Client {
            id: "node-identity-dac",
            label: "Node @azure/identity `DefaultAzureCredential`",
            program: "node".into(),
            args: script(&js, "node-identity-dac"),
        },
        Client {
            id: "azureml-core-msi",
            label: "azureml-core `MsiAuthentication` (msrestazure)",
            program: azureml,
            args: script(&py, "azureml-core-msi"),
        },
        Client {
            id: "rust-identity-mi",
            label: "Rust `azure_identity` 1.0 `ManagedIdentityCredential`",
            program: rust,
            args: vec![],
        },
        Client {
            id: "az-login-identity",
            label: "Azure CLI `az login --identity` (+ `az account get-access-token`)",
            program: azcli,
            args: vec![
                repo_root().join("tests/clients/python/az_login.py").display().to_string(),
                "--arm".to_owned(),
                arm.0.to_owned(),
                "--ca-file".to_owned(),
                arm.1.display().to_string(),
            ],
        },
        Client {
            id: "go-azidentity-mi",
            label: "Go azidentity 1.15 `ManagedIdentityCredential`",
            program: go.clone(),
            args: go_args("go-azidentity-mi"),
        },
        Client {
            id: "go-azidentity-dac",
            label: "Go azidentity 1.15 `DefaultAzureCredential`",
            program: go.clone(),
            args: go_args("go-azidentity-dac"),
        },
        Client {
            id: "go-msal-mi",
            label: "MSAL Go 1.10 `managedidentity.Client`",
            program: go,
            args: go_args("go-msal-mi"),
        },
        Client {
            id: "java-identity-mi",
            label: "Java azure-identity 1.18 `ManagedIdentityCredential`",
            program: "java".into(),
            args: java("java-identity-mi"),
        },
        Client {
            id: "java-identity-dac",
            label: "Java azure-identity 1.18 `DefaultAzureCredential`",
            program: "java".into(),
            args: java("java-identity-dac"),
        },
        Client {
            id: "java-msal-mi",
            label: "MSAL4J 1.23 `ManagedIdentityApplication`",
            program: "java".into(),
            args: java("java-msal-mi"),
        },
    ]
}

/// The Python judge script of this checkout. Only the installed SDKs (virtualenvs, Node
/// modules, builds) come from [`azbroker_tests::clients_dir`], which `AZBROKER_TEST_CLIENTS` may
/// point at another checkout's installation; the scripts they run are the ones under test. (The
/// Node script stays beside its `node_modules`, from which Node resolves its imports.)
fn python_judge() -> String {
    repo_root().join("tests/clients/python/mi_client.py").display().to_string()
}

/// Columns: (id, heading). `imds-link-local` runs in a network namespace (see `link_local`).
pub const DIALECTS: &[(&str, &str)] = &[
    ("app-service", "App Service"),
    ("azure-ml", "Azure ML"),
    ("cloud-shell", "Cloud Shell"),
    ("imds", "IMDS via `AZURE_POD_IDENTITY_AUTHORITY_HOST`"),
    ("imds-link-local", "IMDS on 169.254.169.254"),
    ("arc", "Azure Arc"),
    ("service-fabric", "Service Fabric"),
];

const RUST_ONLY: &str = "Rust azure_identity 1.0 implements only App Service and IMDS on 169.254.169.254";
const MSRESTAZURE: &str = "msrestazure reads only MSI_ENDPOINT (POST, or IMDS on 169.254.169.254 when unset)";

const GO_IMDS: &str = "MSAL Go (which azidentity delegates to) ignores AZURE_POD_IDENTITY_AUTHORITY_HOST: \
     apps/managedidentity/managedidentity.go createIMDSAuthRequest always uses imdsDefaultEndpoint (169.254.169.254)";

/// Whether `client` implements `dialect` (PROTOCOLS.md §1 "which dialect reaches which client").
pub fn support(client: &str, dialect: &str) -> Option<&'static str> {
    match (client, dialect) {
        ("msal-mi", "cloud-shell") => {
            Some("MSAL Python has no Cloud Shell source: MSI_ENDPOINT without MSI_SECRET falls back to IMDS")
        }
        ("rust-identity-mi", "app-service" | "imds-link-local") => None,
        ("rust-identity-mi", "imds") => Some(
            "Rust azure_identity ignores AZURE_POD_IDENTITY_AUTHORITY_HOST (the IMDS address is hard-coded)",
        ),
        ("rust-identity-mi", "arc") => {
            Some("Azure Arc arrives in azure_identity 1.1.0-beta; the pinned stable 1.0 refuses it")
        }
        ("rust-identity-mi", _) => Some(RUST_ONLY),
        ("azureml-core-msi", "azure-ml" | "cloud-shell" | "imds-link-local") => None,
        ("azureml-core-msi", _) => Some(MSRESTAZURE),
        ("go-azidentity-mi" | "go-azidentity-dac" | "go-msal-mi", "imds") => Some(GO_IMDS),
        ("az-login-identity", "cloud-shell") => Some(
            "az uses MSAL Python's ManagedIdentityClient, which has no Cloud Shell source (az's own Cloud Shell login needs ACC_CLOUD and a listener on localhost:50342)",
        ),
        _ => None,
    }
}

/// Rows no toolchain here can run (.NET): (id, label, one cell per dialect in [`DIALECTS`]
/// order). Read from MSAL.NET's `src/client/Microsoft.Identity.Client/ManagedIdentity/` (which
/// Azure.Identity's `ManagedIdentityCredential` uses) against the daemon's real answers; each
/// footnote names the file.
pub const SOURCE_ROWS: &[(&str, &str, [Outcome; 7])] = &[(
    "dotnet",
    ".NET: MSAL.NET `ManagedIdentityApplication` / Azure.Identity `ManagedIdentityCredential` (from source)",
    [
        Outcome::FromSource {
            works: true,
            why: "MSAL.NET AppServiceManagedIdentitySource.cs: GET IDENTITY_ENDPOINT, X-IDENTITY-HEADER, api-version 2019-08-01",
        },
        Outcome::FromSource {
            works: true,
            why: "MSAL.NET MachineLearningManagedIdentitySource.cs: GET MSI_ENDPOINT with the `secret` header, api-version 2017-09-01, clientid=DEFAULT_IDENTITY_CLIENT_ID",
        },
        Outcome::FromSource {
            works: true,
            why: "MSAL.NET CloudShellManagedIdentitySource.cs: POST MSI_ENDPOINT, form resource=, Metadata: true (system-assigned only)",
        },
        Outcome::FromSource {
            works: true,
            why: "MSAL.NET ImdsManagedIdentitySource.cs GetValidatedEndpoint replaces the path of AZURE_POD_IDENTITY_AUTHORITY_HOST (UriBuilder.Path); `env --profile` prints the profile's own listener with no path, so nothing is lost (dialects::every_dialects_env_for_a_profile_survives_a_client_rebuilding_the_path)",
        },
        Outcome::FromSource {
            works: true,
            why: "MSAL.NET ImdsManagedIdentitySource.cs: http://169.254.169.254/metadata/identity/oauth2/token, Metadata: true, client_id for a user-assigned id",
        },
        Outcome::FromSource {
            works: true,
            why: "MSAL.NET AzureArcManagedIdentitySource.cs: 401 WWW-Authenticate Basic realm=<key file>, then Authorization: Basic; system-assigned only (user-assigned refused client-side)",
        },
        Outcome::FromSource {
            works: true,
            why: "MSAL.NET ServiceFabricManagedIdentitySource.cs: pins IDENTITY_SERVER_THUMBPRINT in the certificate callback, api-version 2020-05-01; token_sha256_to_refresh only on this source (ManagedIdentitySourceExtensions.cs)",
        },
    ],
)];

const ARM: &str = "https://management.azure.com/";

/// Scrubbed so that only the exported variables steer a client.
const SCRUB: &[&str] = &[
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "DEFAULT_IDENTITY_CLIENT_ID",
    "NODE_EXTRA_CA_CERTS",
    "JAVA_TOOL_OPTIONS",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_TOKEN_CREDENTIALS",
    "APPSETTING_WEBSITE_SITE_NAME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
];

/// The client's one JSON result line (or a failure object describing what went wrong).
pub fn run(mut cmd: Command, name: &str) -> Value {
    let started = Instant::now();
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => return serde_json::json!({"ok": false, "error": format!("cannot run {name}: {e}")}),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let mut v: Value = serde_json::from_str(line).unwrap_or_else(|_| {
        serde_json::json!({"ok": false, "error": format!("no JSON result; stdout={stdout} stderr={}", String::from_utf8_lossy(&out.stderr))})
    });
    if started.elapsed() > Duration::from_secs(90) {
        v = serde_json::json!({"ok": false, "error": format!("took {:?}", started.elapsed())});
    }
    v
}

/// The server dialects (audit-line `dialect`) that answer an env dialect's clients.
fn served_by(dialect: &str) -> &'static [&'static str] {
    match dialect {
        "app-service" => &["app_service"],
        "azure-ml" => &["azure_ml", "cloud_shell"],
        "cloud-shell" => &["cloud_shell"],
        "imds" => &["imds"],
        "arc" => &["arc"],
        "service-fabric" => &["service_fabric"],
        _ => &[],
    }
}

/// The audit lines so far granting a fabrikam token, in order.
fn fabrikam_audit(daemon: &Daemon) -> Vec<Value> {
    daemon
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["target"] == "azbroker::audit" && v["profile"] == "fabrikam")
        .collect()
}

/// Audit lines so far granting a fabrikam token, counted by dialect.
fn grants(daemon: &Daemon) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for v in fabrikam_audit(daemon) {
        *out.entry(v["dialect"].as_str().unwrap_or("").to_owned()).or_insert(0) += 1;
    }
    out
}

/// Pass when the client got a token from `tenant`.
pub fn judge(result: &Value, tenant: &str) -> Outcome {
    if result["ok"] == true && result["tid"] == tenant_guid(tenant) {
        Outcome::Pass
    } else {
        Outcome::Fail(result.to_string())
    }
}

fn host_command(client: &Client, vars: &[(String, String)], resource: &str) -> Command {
    let mut cmd = Command::new(&client.program);
    cmd.args(&client.args).args(["--resource", resource]);
    for v in SCRUB {
        cmd.env_remove(v);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost");
    cmd.envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd
}

#[test]
fn compatibility_matrix() {
    // JSON logs, so the audit lines can show which dialect served each grant.
    let (auth, daemon) = two_tenants_with("", &["--log-format", "json"]);
    let front = azbroker_tests::tls_front::TlsFront::start(auth.addr(), daemon.dir.path()).unwrap();
    let arm = format!("https://127.0.0.1:{}/", front.addr.port());
    let clients = clients((&arm, &front.ca_file));
    let rows = clients.iter().map(|c| (c.id, c.label)).chain(SOURCE_ROWS.iter().map(|r| (r.0, r.1)));
    let mut matrix = Matrix::new(DIALECTS.to_vec(), rows.collect());
    for (id, _, cells) in SOURCE_ROWS {
        for ((dialect, _), outcome) in DIALECTS.iter().zip(cells) {
            matrix.set(id, dialect, outcome.clone());
        }
    }
    for &(dialect, _) in DIALECTS.iter().filter(|(d, _)| *d != "imds-link-local") {
        let before = grants(&daemon);
        let vars = daemon.env(&["--profile", "fabrikam", "--dialect", dialect]).unwrap();
        let results: Vec<(&str, Outcome)> = std::thread::scope(|s| {
            let handles: Vec<_> = clients
                .iter()
                .map(|c| {
                    let vars = &vars;
                    s.spawn(move || match support(c.id, dialect) {
                        Some(why) => (c.id, Outcome::Unsupported(why)),
                        None => (c.id, judge(&run(host_command(c, vars, ARM), c.id), FABRIKAM)),
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let passed = results.iter().filter(|(_, o)| *o == Outcome::Pass).count();
        for (client, outcome) in results {
            matrix.set(client, dialect, outcome);
        }
        // Each passing client was served by the dialect under test (azureml-core's POST to the
        // Azure ML endpoint is answered by the Cloud Shell parser), not by a fallback.
        let after = grants(&daemon);
        let served: usize = served_by(dialect)
            .iter()
            .map(|d| after.get(*d).unwrap_or(&0) - before.get(*d).unwrap_or(&0))
            .sum();
        assert!(
            served >= passed,
            "{dialect}: {passed} clients passed but {served} grants came from {:?}",
            served_by(dialect)
        );
    }
    for (client, outcome) in link_local::matrix_column() {
        matrix.set(client, "imds-link-local", outcome);
    }

    let results = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compat-results.json");
    std::fs::write(&results, serde_json::to_string_pretty(&matrix.to_json()).unwrap()).unwrap();
    let failures = matrix.failures();
    assert!(matrix.missing().is_empty(), "cells not run: {:?}", matrix.missing());
    assert!(failures.is_empty(), "failures:\n{}\ndaemon log:\n{}", failures.join("\n"), daemon.log());
    let bless = std::env::var_os("AZBROKER_BLESS").is_some_and(|v| v == "1");
    if let Err(e) = compat::check_readme(&repo_root().join("README.md"), &matrix.render(), bless) {
        panic!("{e:#}");
    }
}

/// The trust store `env --dialect service-fabric` hands a JVM keeps the system's CA roots
/// (`javax.net.ssl.trustStore` replaces the JVM's own): with a CA among the roots the daemon
/// found (`SSL_CERT_FILE`, as rustls-native-certs reads it), a JVM given only the printed
/// `JAVA_TOOL_OPTIONS` trusts both a server that CA vouches for and the Service Fabric listener;
/// without them (the control) it trusts neither.
#[test]
fn the_java_trust_store_keeps_the_system_roots() {
    let (auth, mut daemon) = two_tenants("");
    let front = azbroker_tests::tls_front::TlsFront::start(auth.addr(), daemon.dir.path()).unwrap();
    daemon.env.push(("SSL_CERT_FILE".to_owned(), front.ca_file.display().to_string()));
    daemon.restart(&[]).unwrap();
    let vars = daemon.env(&["--profile", "fabrikam", "--dialect", "service-fabric"]).unwrap();
    let options = env_value(&vars, "JAVA_TOOL_OPTIONS");
    let probe = |options: Option<&str>, url: &str| {
        let mut cmd = Command::new("java");
        cmd.arg(repo_root().join("tests/clients/java/TlsProbe.java")).arg(url);
        for v in SCRUB {
            cmd.env_remove(v);
        }
        if let Some(options) = options {
            cmd.env("JAVA_TOOL_OPTIONS", options);
        }
        run(cmd, "TlsProbe")
    };
    let system = format!("https://127.0.0.1:{}/", front.addr.port());
    let service_fabric = env_value(&vars, "IDENTITY_ENDPOINT");
    for url in [&system, &service_fabric] {
        let with = probe(Some(&options), url);
        assert_eq!(with["ok"], true, "{url} with {options}: {with}");
        let without = probe(None, url);
        assert_eq!(without["ok"], false, "{url} is trusted even without the store: {without}");
        assert!(without["error"].as_str().unwrap().contains("PKIX"), "{without}");
    }
}

/// A claims challenge as a resource sends it with its 401 (decoded): the token was revoked
/// (continuous access evaluation), issue one not before this time.
const CLAIMS_CHALLENGE: &str = r#"{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}"#;

/// Token revocation through the real clients' own paths. Each client gets a token, then meets a
/// claims challenge and asks again (MSAL Python `acquire_token_for_client(claims_challenge=)`
/// with the capability `cp1`, MSAL Go `AcquireToken(WithClaims(..))`), with only what
/// `env --profile fabrikam` prints. A second token fresh from Entra ID is what the daemon gives
/// a request naming the rejected token (`token_sha256_to_refresh`); a client that names none
/// gets the cached token again, so each case asserts exactly which one it got, that both
/// acquisitions reached the daemon (audit lines), how many upstream calls were made, and the
/// tenant. Only MSAL Python on Service Fabric names the token (managed_identity.py
/// `_obtain_token_on_service_fabric`); its App Service path (`_obtain_token_on_app_service`) and
/// MSAL Go (apps/managedidentity `WithClaims` only skips its own cache;
/// `createServiceFabricAuthRequest` and `createAppServiceAuthRequest` send no hash) do not, so
/// for them the daemon serves the cached token, as a real platform would.
#[test]
fn a_claims_challenge_gets_a_fresh_token_when_the_client_names_the_rejected_one() {
    let (auth, daemon) = two_tenants_with("", &["--log-format", "json"]);
    let root = azbroker_tests::clients_dir();
    let python = Client {
        id: "msal-mi",
        label: "MSAL Python",
        program: root.join(".venv/bin/python"),
        args: [python_judge().as_str(), "--client", "msal-mi", "--claims-challenge", CLAIMS_CHALLENGE]
            .map(str::to_owned)
            .to_vec(),
    };
    let go = Client {
        id: "go-msal-mi",
        label: "MSAL Go",
        program: root.join("go/bin/go-mi-client"),
        args: ["--client", "go-msal-mi", "--claims", CLAIMS_CHALLENGE].map(str::to_owned).to_vec(),
    };
    for client in [&python, &go] {
        assert!(
            client.program.exists(),
            "{} missing: run tests/clients/install.sh",
            client.program.display()
        );
    }
    // (client, dialect, resource, whether the second token is a fresh one): a resource per case,
    // so each starts from an empty cache.
    let cases = [
        (&python, "service-fabric", "https://management.azure.com/", true),
        (&python, "app-service", "https://vault.azure.net/", false),
        (&go, "service-fabric", "https://storage.azure.com/", false),
        (&go, "app-service", "https://graph.microsoft.com/", false),
    ];
    let fabrikam = tenant_guid(FABRIKAM);
    for (client, dialect, resource, fresh) in cases {
        let vars = daemon.env(&["--profile", "fabrikam", "--dialect", dialect]).unwrap();
        let seen = fabrikam_audit(&daemon).len();
        let out = run(host_command(client, &vars, resource), client.id);
        let case = format!("{} over {dialect}: {out}", client.id);
        assert_eq!(out["ok"], true, "{case}\ndaemon log:\n{}", daemon.log());
        assert_eq!(out["tid"], fabrikam.as_str(), "{case}");
        let (first, second) = (out["first_sha256"].as_str().unwrap(), out["token_sha256"].as_str().unwrap());
        let upstream = auth.requests_for(FABRIKAM, "client_credentials", &format!("{resource}/.default"));
        // Both acquisitions reached the daemon, and the dialect under test answered them.
        let audit = &fabrikam_audit(&daemon)[seen..];
        let granted: Vec<(&str, &str, &str)> = audit
            .iter()
            .map(|v| {
                let field = |k: &str| v[k].as_str().unwrap_or("");
                (field("dialect"), field("token_hash"), field("cache"))
            })
            .collect();
        let served = served_by(dialect)[0];
        if fresh {
            assert_ne!(first, second, "{case}: the revoked token again");
            assert_eq!(upstream, 2, "{case}: one fresh upstream token");
            assert_eq!(granted, [(served, &first[..8], "miss"), (served, &second[..8], "miss")], "{case}");
        } else {
            assert_eq!(first, second, "{case}: this client names no token, so the cached one is right");
            assert_eq!(upstream, 1, "{case}: no upstream call for the second token");
            assert_eq!(granted, [(served, &first[..8], "miss"), (served, &first[..8], "hit")], "{case}");
        }
        if client.id == "msal-mi" {
            // MSAL asked the daemon both times (its own cache would answer "cache").
            assert_eq!(out["first_tid"], fabrikam.as_str(), "{case}");
            assert_eq!(out["first_token_source"], "identity_provider", "{case}");
            assert_eq!(out["token_source"], "identity_provider", "{case}");
        }
    }
}
