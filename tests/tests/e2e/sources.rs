//! The other upstream kinds end to end: a service principal with a certificate (PS256 assertion
//! verified by the fake against the registered certificate), workload identity (token file
//! re-read on every use), and the Azure CLI (a fake `az` on disk; our cache in front of it).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use azbroker_testkit::{TestCertificate, tenant_guid};

use super::logins::imds_token;
use super::*;

const VAULT: &str = "https://vault.azure.net";

fn executable(path: &std::path::Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_and_workload_identity_service_principals() {
    let auth = Authority::start();
    let files = tempfile::tempdir().unwrap();
    let cert = TestCertificate::generate("azbroker e2e").unwrap();
    let cert_file = files.path().join("app.pem");
    std::fs::write(&cert_file, cert.combined_pem()).unwrap();
    auth.register_app_certificate(CLIENT_ID, &cert.der);
    const WI_CLIENT: &str = "7e0c9d1a-0000-4000-8000-00000000beef";
    auth.register_federated_credential(WI_CLIENT, "system:serviceaccount:default:app");
    let token_file = files.path().join("federated-token");
    let federated = |subject: &str| auth.issue_federated_token(subject, Duration::from_secs(3600)).unwrap();
    std::fs::write(&token_file, federated("system:serviceaccount:default:app")).unwrap();
    let body = format!(
        "[cloud]\nauthority_host = \"{}\"\n\n\
         [logins.cert]\nkind = \"service-principal\"\ntenant = \"{CONTOSO}\"\nclient_id = \"{CLIENT_ID}\"\ncertificate_file = \"{}\"\n\n\
         [logins.wi]\nkind = \"workload-identity\"\ntenant = \"{FABRIKAM}\"\nclient_id = \"{WI_CLIENT}\"\ntoken_file = \"{}\"\n\n\
         [profiles.cert]\nlogin = \"cert\"\n\n[profiles.wi]\nlogin = \"wi\"\n",
        auth.url(),
        cert_file.display(),
        token_file.display()
    );
    let daemon = Daemon::start_with_server(&body, "default_profile = \"cert\"", &[]).unwrap();

    let (code, body) = imds_token(&daemon, "cert", VAULT).await;
    assert_eq!(code, 200, "{body}\n{}", daemon.log());
    let claims = auth.verify(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(
        (claims["tid"].as_str().unwrap(), claims["appidacr"].as_str()),
        (tenant_guid(CONTOSO).as_str(), Some("2"))
    );

    let (code, body) = imds_token(&daemon, "wi", VAULT).await;
    assert_eq!(code, 200, "{body}\n{}", daemon.log());
    assert_eq!(auth.verify(body["access_token"].as_str().unwrap()).unwrap()["tid"], tenant_guid(FABRIKAM));
    // The token file is read on every use: a token for a subject the app does not trust fails.
    std::fs::write(&token_file, federated("system:serviceaccount:default:intruder")).unwrap();
    let (code, body) = imds_token(&daemon, "wi", "https://storage.azure.com").await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("AADSTS700213"), "{body}");

    // A certificate the fake does not know is refused with Entra's error.
    let other = TestCertificate::generate("other").unwrap();
    std::fs::write(&cert_file, other.combined_pem()).unwrap();
    let (code, body) = imds_token(&daemon, "cert", "https://storage.azure.com").await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("AADSTS700027"), "{body}");
    assert!(!daemon.log().contains("BEGIN PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_cli_runs_once_per_token_lifetime() {
    let files = tempfile::tempdir().unwrap();
    let calls = files.path().join("calls");
    let az = files.path().join("az");
    executable(
        &az,
        &format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\ntenant=default\nwhile [ $# -gt 0 ]; do [ \"$1\" = --tenant ] && tenant=$2; shift; done\n\
             now=$(date +%s)\nprintf '{{\"accessToken\":\"az-token-%s\",\"expiresOn\":\"2030-01-01 00:00:00.000000\",\"expires_on\":%s,\"tokenType\":\"Bearer\"}}\\n' \"$tenant\" $((now + 3600))\n",
            calls.display()
        ),
    );
    let broken = files.path().join("az-broken");
    executable(&broken, "#!/bin/sh\necho \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1\n");
    let body = format!(
        "[logins.cli]\nkind = \"azure-cli\"\ncommand = \"{}\"\ntimeout = \"10s\"\n\n\
         [logins.broken]\nkind = \"azure-cli\"\ncommand = \"{}\"\n\n\
         [profiles.fabrikam]\nlogin = \"cli\"\ntenant = \"{FABRIKAM}\"\n\n[profiles.own]\nlogin = \"cli\"\n\n[profiles.broken]\nlogin = \"broken\"\n",
        az.display(),
        broken.display()
    );
    let daemon = Daemon::start_with_server(&body, "default_profile = \"fabrikam\"", &[]).unwrap();
    for _ in 0..3 {
        let (code, body) = imds_token(&daemon, "fabrikam", VAULT).await;
        assert_eq!(code, 200, "{body}\n{}", daemon.log());
        assert_eq!(body["access_token"], format!("az-token-{FABRIKAM}"));
    }
    let (code, body) = imds_token(&daemon, "own", VAULT).await;
    assert_eq!((code, body["access_token"].as_str()), (200, Some("az-token-default")));
    let log = std::fs::read_to_string(&calls).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "az ran once per (tenant, resource): {lines:?}");
    assert!(
        lines[0].contains("--scope https://vault.azure.net/.default")
            && lines[0].contains(&format!("--tenant {FABRIKAM}"))
    );
    assert!(!lines[1].contains("--tenant"));

    let (code, body) = imds_token(&daemon, "broken", VAULT).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("Please run 'az login'"), "{body}");
}

/// A broker whose upstream is a managed identity: "the real IMDS / App Service" is played by a
/// second broker (with a service principal against the testkit), reached through the App Service
/// variables, or through IMDS with the address rewritten by the `endpoint` override.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_identity_upstream_and_self_pointing_variables_are_scrubbed() {
    let (auth, host) = two_tenants("");
    let host_vars = host.env(&[]).unwrap();
    let mi_config = format!(
        "[logins.mi]\nkind = \"managed-identity\"\nendpoint = \"http://{}\"\n\n[profiles.mi]\nlogin = \"mi\"\n",
        host.addr
    );

    // The App Service shape of the environment, as on a real App Service host.
    let mut broker = Daemon::start(&mi_config, &[]).unwrap();
    broker.env = host_vars.clone();
    broker.restart(&[]).unwrap();
    let (code, body) = imds_token(&broker, "mi", VAULT).await;
    assert_eq!(code, 200, "{body}\n{}", broker.log());
    assert_eq!(auth.verify(body["access_token"].as_str().unwrap()).unwrap()["tid"], tenant_guid(CONTOSO));
    assert!(granted_via(&host, "app_service"), "{}", host.log());

    // Variables pointing at the broker itself (`eval "$(azbroker env)"` in its own shell) are
    // removed from its environment, so the credential falls back to IMDS instead of calling
    // itself (the host answers the rewritten IMDS request; with the bogus header, the App
    // Service path would have been refused).
    let mut looped = Daemon::start(&mi_config, &[]).unwrap();
    looped.env = vec![
        ("IDENTITY_ENDPOINT".into(), format!("http://{}/msi/token", looped.addr)),
        ("IDENTITY_HEADER".into(), "not-the-host-header".into()),
    ];
    looped.restart(&[]).unwrap();
    let (code, body) = imds_token(&looped, "mi", "https://storage.azure.com").await;
    assert_eq!(code, 200, "{body}\n{}", looped.log());
    assert!(looped.log().contains("removed variables pointing at this daemon"), "{}", looped.log());
    assert!(granted_via(&host, "imds"), "{}", host.log());
}

/// Whether the daemon's audit log has a grant through `dialect`.
fn granted_via(daemon: &Daemon, dialect: &str) -> bool {
    daemon.log().lines().any(|l| l.contains("token granted") && l.contains(&format!("\"{dialect}\"")))
}
