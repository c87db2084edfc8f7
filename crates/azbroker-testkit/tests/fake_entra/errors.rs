//! Entra-shaped errors: client authentication, grant types, scopes, tenants, resources and
//! request size.

use std::io::{Read as _, Write as _};

use azbroker_testkit::{MAX_TOKEN_REQUEST_BYTES, tenant_guid};

use crate::*;

#[tokio::test]
async fn unknown_client_and_wrong_secret() {
    let fake = fake().await;
    let other = "00000000-0000-0000-0000-00000000abcd";
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", other),
        ("client_secret", SECRET),
        ("scope", VAULT),
    ];
    let body =
        expect_error(post_form(&fake, "contoso.com", &form).await, 400, "unauthorized_client", 700_016).await;
    assert!(description(&body).starts_with(&format!(
        "AADSTS700016: Application with identifier '{other}' was not found in the directory 'contoso.com'."
    )));

    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", APP),
        ("client_secret", "nope"),
        ("scope", VAULT),
    ];
    let body = expect_error(post_form(&fake, TENANT, &form).await, 401, "invalid_client", 7_000_215).await;
    assert!(description(&body).starts_with("AADSTS7000215: Invalid client secret provided."));
    assert!(!description(&body).contains("nope"), "secrets never echo back");

    let form = [("grant_type", "client_credentials"), ("client_id", APP), ("scope", VAULT)];
    expect_error(post_form(&fake, TENANT, &form).await, 401, "invalid_client", 7_000_218).await;
    let form = [("grant_type", "client_credentials"), ("client_secret", SECRET), ("scope", VAULT)];
    expect_error(post_form(&fake, TENANT, &form).await, 400, "invalid_request", 900_144).await;
    assert_eq!(fake.issued_tokens(), 0);
}

#[tokio::test]
async fn grant_type_errors() {
    let fake = fake().await;
    let body =
        expect_error(post_form(&fake, TENANT, &[("scope", VAULT)]).await, 400, "invalid_request", 900_144)
            .await;
    assert!(description(&body).contains("'grant_type'"));
    for grant in ["password", "magic"] {
        let form = [("grant_type", grant), ("client_id", APP), ("scope", VAULT)];
        let body =
            expect_error(post_form(&fake, TENANT, &form).await, 400, "unsupported_grant_type", 70_003).await;
        assert!(description(&body).contains(&format!("'{grant}'")));
    }
    // Supported grants name their own missing parameters.
    let form = [("grant_type", "refresh_token"), ("client_id", APP), ("scope", VAULT)];
    let body = expect_error(post_form(&fake, TENANT, &form).await, 400, "invalid_request", 900_144).await;
    assert!(description(&body).contains("'refresh_token'"));
    // A JSON body carries no form parameters, as far as Entra is concerned.
    let resp = http()
        .post(token_url(&fake, TENANT))
        .json(&serde_json::json!({"grant_type": "x"}))
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "invalid_request", 900_144).await;
    let resp = http().get(token_url(&fake, TENANT)).send().await.unwrap();
    expect_error(resp, 400, "invalid_request", 900_561).await;
    let dup = http()
        .post(token_url(&fake, TENANT))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    expect_error(dup, 400, "invalid_request", 9_002_313).await;
}

#[tokio::test]
async fn bad_scopes_are_invalid_scope() {
    let fake = fake().await;
    for scope in ["", "https://vault.azure.net", "User.Read", "/.default", &format!("{VAULT} {ARM}")] {
        let resp = client_credentials(&fake, TENANT, scope).await;
        expect_error(resp, 400, "invalid_scope", 70_011).await;
    }
    assert_eq!(fake.issued_tokens(), 0);
}

#[tokio::test]
async fn denied_tenants_and_resources() {
    let fake = fake().await;
    fake.deny_tenant("Contoso.com");
    for tenant in ["contoso.com", &tenant_guid("contoso.com")] {
        let body =
            expect_error(client_credentials(&fake, tenant, VAULT).await, 400, "invalid_request", 90_002)
                .await;
        assert!(description(&body).starts_with(&format!("AADSTS90002: Tenant '{tenant}' not found.")));
    }
    expect_token(client_credentials(&fake, "fabrikam.com", VAULT).await).await;

    fake.deny_resource("https://management.core.windows.net");
    let body =
        expect_error(client_credentials(&fake, TENANT, ARM).await, 400, "invalid_resource", 500_011).await;
    assert!(description(&body).contains("The resource principal named https://management.core.windows.net/"));
    expect_token(client_credentials(&fake, TENANT, VAULT).await).await;
}

#[tokio::test]
async fn malformed_tenant_is_rejected_everywhere() {
    let fake = fake().await;
    expect_error(client_credentials(&fake, "not_a_tenant", VAULT).await, 400, "invalid_request", 900_023)
        .await;
    let resp = http().get(format!("{}/bad%20tenant/discovery/v2.0/keys", fake.url())).send().await.unwrap();
    expect_error(resp, 400, "invalid_request", 900_023).await;
    // Percent-encoded bytes that are not UTF-8: still an Entra error, never a panic.
    let resp = http().post(format!("{}/%FF%FE/oauth2/v2.0/token", fake.url())).send().await.unwrap();
    expect_error(resp, 400, "invalid_request", 9_002_313).await;
    let resp = http()
        .post(token_url(&fake, TENANT))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(b"grant_type=%FF%00&client_id=\xff\x00&scope=\xc3".to_vec())
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "unsupported_grant_type", 70_003).await;
    expect_token(client_credentials(&fake, TENANT, VAULT).await).await;
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let fake = fake().await;
    let big = "x".repeat(MAX_TOKEN_REQUEST_BYTES);
    let form = [("grant_type", "client_credentials"), ("client_id", APP), ("scope", big.as_str())];
    expect_error(post_form(&fake, TENANT, &form).await, 413, "invalid_request", 9_002_313).await;

    // Chunked, so no Content-Length to reject up front: the limit applies while reading.
    let addr = fake.addr();
    let raw = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "POST /{TENANT}/oauth2/v2.0/token HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .unwrap();
        let chunk = "a".repeat(16 * 1024);
        for _ in 0..(MAX_TOKEN_REQUEST_BYTES / chunk.len() + 1) {
            if write!(s, "{:x}\r\n{chunk}\r\n", chunk.len()).is_err() {
                break;
            }
        }
        let _ = write!(s, "0\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .unwrap();
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("\"error\":\"invalid_request\""));
    // The fake is still healthy.
    expect_token(client_credentials(&fake, TENANT, VAULT).await).await;
}
