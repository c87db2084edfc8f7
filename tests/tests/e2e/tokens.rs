//! Tokens through the daemon: each dialect, profile selection, single-flight, refresh-ahead,
//! serving through an outage, and secrets kept out of the logs.

use std::time::Duration;

use azbroker_testkit::{Fault, tenant_guid};
use serde_json::Value;

use super::*;

const ARM: &str = "https://management.azure.com/";

async fn app_service(daemon: &Daemon, prefix: &str, query: &str) -> (u16, Value) {
    let vars = daemon.env(&[]).unwrap();
    let header = env_value(&vars, "IDENTITY_HEADER");
    let resp = http()
        .get(daemon.url(&format!("{prefix}/msi/token?api-version=2019-08-01&{query}")))
        .header("X-IDENTITY-HEADER", header)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/json");
    (status, resp.json().await.unwrap())
}

async fn imds(daemon: &Daemon, prefix: &str, query: &str) -> (u16, Value) {
    let resp = http()
        .get(daemon.url(&format!("{prefix}/metadata/identity/oauth2/token?api-version=2018-02-01&{query}")))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/json");
    (status, resp.json().await.unwrap())
}

fn tid(auth: &Authority, body: &Value) -> String {
    let claims = auth.verify(body["access_token"].as_str().unwrap()).unwrap();
    claims["tid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_service_and_imds_serve_the_chosen_tenant() {
    let (auth, daemon) = two_tenants("");
    let (status, body) = app_service(&daemon, "", &format!("resource={ARM}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(tid(&auth, &body), tenant_guid(CONTOSO));
    assert_eq!(body["resource"], ARM);
    assert!(body["expires_on"].is_string());
    assert_eq!(body["client_id"], CLIENT_ID);

    let (status, body) = imds(&daemon, "/p/fabrikam", "resource=https://vault.azure.net").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(tid(&auth, &body), tenant_guid(FABRIKAM));
    assert_eq!(body["resource"], "https://vault.azure.net");
    assert!(body["expires_in"].as_str().unwrap().parse::<u64>().unwrap() > 3000);
    let claims = auth.verify(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["aud"], "https://vault.azure.net");
    // The upstream scope kept the resource's own slash: ".../" + "/.default".
    assert_eq!(auth.requests_for(CONTOSO, "client_credentials", "https://management.azure.com//.default"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selection_by_alias_prefix_and_errors() {
    let (auth, daemon) = two_tenants("");
    let (status, body) =
        app_service(&daemon, "", &format!("resource={ARM}&client_id={FABRIKAM_ALIAS}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(tid(&auth, &body), tenant_guid(FABRIKAM));

    let (status, body) = imds(&daemon, "", &format!("resource={ARM}&client_id=fabrikam")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(tid(&auth, &body), tenant_guid(FABRIKAM));

    let (status, body) = imds(&daemon, "", &format!("resource={ARM}&client_id=unknown-id")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error_description"], "Identity not found");

    let (status, _) = app_service(&daemon, "/p/nope", &format!("resource={ARM}")).await;
    assert_eq!(status, 400);

    // The env for a profile names the profile's own listener, never a path prefix.
    let vars = daemon.env(&["--profile", "fabrikam"]).unwrap();
    let endpoint = env_value(&vars, "IDENTITY_ENDPOINT");
    assert!(endpoint.ends_with("/msi/token") && !endpoint.contains("/p/"), "{endpoint}");
    assert!(!endpoint.starts_with(&daemon.url("")), "{endpoint} is the main listener");
    let vars = daemon.env(&["--dialect", "imds", "--profile", "fabrikam"]).unwrap();
    let host = env_value(&vars, "AZURE_POD_IDENTITY_AUTHORITY_HOST");
    assert_eq!(host.matches('/').count(), 2, "a host with no path: {host}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_and_guards() {
    let (_auth, daemon) = two_tenants("");
    // The SDK probe: no Metadata header, no query at all.
    let resp = http().get(daemon.url("/metadata/identity/oauth2/token")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(body["error_description"], "Required metadata header not specified");

    let resp = http()
        .get(daemon.url(&format!("/msi/token?api-version=2019-08-01&resource={ARM}")))
        .header("X-IDENTITY-HEADER", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = http()
        .get(daemon.url(&format!("/metadata/identity/oauth2/token?api-version=1&resource={ARM}")))
        .header("Metadata", "true")
        .header("X-Forwarded-For", "10.1.1.1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_misses_make_one_upstream_call() {
    let (auth, daemon) = two_tenants("");
    auth.inject(Fault::Latency(Duration::from_millis(300)), Some(1));
    let vars = daemon.env(&[]).unwrap();
    let header = env_value(&vars, "IDENTITY_HEADER");
    let client = http();
    let mut tasks = Vec::new();
    for _ in 0..96 {
        let url = daemon.url("/msi/token?api-version=2019-08-01&resource=api://single-flight");
        let (client, header) = (client.clone(), header.clone());
        tasks.push(tokio::spawn(async move {
            let r = client.get(url).header("X-IDENTITY-HEADER", header).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
        }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap());
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(auth.requests_for(CONTOSO, "client_credentials", "api://single-flight/.default"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_ahead_without_client_requests_and_survives_an_outage() {
    let (auth, daemon) = two_tenants("");
    // 20 s tokens: refreshed about 10 s after issue (±10 %), with no client asking.
    auth.set_token_lifetime(Duration::from_secs(20));
    let (status, first) = imds(&daemon, "", "resource=api://refresh").await;
    assert_eq!(status, 200);
    let scope = "api://refresh/.default";
    assert_eq!(auth.requests_for(CONTOSO, "client_credentials", scope), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while auth.requests_for(CONTOSO, "client_credentials", scope) < 2 && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(auth.requests_for(CONTOSO, "client_credentials", scope), 2, "no background refresh");
    let (_, second) = imds(&daemon, "", "resource=api://refresh").await;
    assert_ne!(first["access_token"], second["access_token"]);

    // Outage: upstream answers 503 from now on; the cached token keeps being served.
    auth.set_token_lifetime(Duration::from_secs(3599));
    let (status, long) = imds(&daemon, "", "resource=api://outage").await;
    assert_eq!(status, 200);
    auth.inject(Fault::Status(503), None);
    for _ in 0..20 {
        let (status, body) = imds(&daemon, "", "resource=api://outage").await;
        assert_eq!(status, 200);
        assert_eq!(body["access_token"], long["access_token"]);
    }
    // A resource never fetched gets a retryable 500 while upstream is down, and no retry storm.
    let before = auth.token_requests();
    for _ in 0..10 {
        let (status, body) = imds(&daemon, "", "resource=api://never").await;
        assert_eq!(status, 500, "{body}");
    }
    assert!(auth.token_requests() - before <= 2, "retry storm: {}", auth.token_requests() - before);
    auth.clear_faults();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    let (_auth, mut daemon) = two_tenants("");
    let vars = daemon.env(&[]).unwrap();
    let header = env_value(&vars, "IDENTITY_HEADER");
    let mut tokens = Vec::new();
    for res in ["https://management.azure.com/", "https://storage.azure.com/"] {
        let (status, body) = app_service(&daemon, "", &format!("resource={res}")).await;
        assert_eq!(status, 200);
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    // Failing requests log too.
    let _ = app_service(&daemon, "/p/nope", "resource=x").await;
    daemon.stop().unwrap();
    let log = daemon.log();
    assert!(log.contains("token granted") || log.contains("grant"), "audit lines expected:\n{log}");
    assert!(!log.contains(CLIENT_SECRET), "client secret leaked");
    assert!(!log.contains(&header), "identity header leaked");
    for t in &tokens {
        assert!(!log.contains(t.as_str()), "token leaked");
        // Not even the signature part.
        assert!(!log.contains(t.rsplit('.').next().unwrap()), "token signature leaked");
    }
}
