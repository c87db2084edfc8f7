//! Successful client-credentials grants: body shape, signature, claims, tenants, audiences,
//! client authentication variants and lifetimes.

use std::time::Duration;

use azbroker_testkit::{FakeEntra, Options, decode_claims, tenant_guid};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::*;

#[tokio::test]
async fn success_token_is_signed_and_carries_every_claim() {
    let fake = fake().await;
    let resp = client_credentials(&fake, TENANT, VAULT).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 4, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    let token = body["access_token"].as_str().unwrap();

    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], fake.key_id().as_str());

    let claims = fake.verify(token).unwrap();
    assert_eq!(claims, decode_claims(token).unwrap());
    assert_eq!(claims["aud"], "https://vault.azure.net");
    assert_eq!(claims["iss"], format!("{}/{TENANT}/v2.0", fake.url()));
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["appid"], APP);
    assert_eq!(claims["azp"], APP);
    assert_eq!(claims["appidacr"], "1");
    assert_eq!(claims["idtyp"], "app");
    assert_eq!(claims["ver"], "1.0");
    assert_eq!(claims["oid"], claims["sub"]);
    assert!(uuid::Uuid::try_parse(claims["oid"].as_str().unwrap()).is_ok());
    let (iat, nbf, exp) =
        (claims["iat"].as_u64().unwrap(), claims["nbf"].as_u64().unwrap(), claims["exp"].as_u64().unwrap());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(iat.abs_diff(now) <= 5);
    assert_eq!(nbf, iat);
    assert_eq!(exp, iat + 3599);
    assert!(!claims["uti"].as_str().unwrap().is_empty());
    assert!(uuid::Uuid::try_parse(claims["jti"].as_str().unwrap()).is_ok());

    // A second issue: same principal, fresh identifiers, different token.
    let again = expect_token(client_credentials(&fake, TENANT, VAULT).await).await;
    assert_ne!(again, token);
    let second = fake.verify(&again).unwrap();
    assert_eq!(second["oid"], claims["oid"]);
    assert_ne!(second["uti"], claims["uti"]);
    assert_ne!(second["jti"], claims["jti"]);
    assert_eq!(fake.issued_tokens(), 2);
}

#[tokio::test]
async fn domain_tenant_maps_to_tenant_guid_and_guid_passes_through() {
    let fake = fake().await;
    let domain = "Fabrikam.onmicrosoft.com";
    let claims = fake.verify(&expect_token(client_credentials(&fake, domain, VAULT).await).await).unwrap();
    assert_eq!(claims["tid"], tenant_guid(domain));
    assert_eq!(claims["tid"], tenant_guid("fabrikam.onmicrosoft.com"));
    assert_eq!(claims["iss"], format!("{}/{}/v2.0", fake.url(), tenant_guid(domain)));

    let upper = TENANT.to_uppercase();
    let by_guid = fake.verify(&expect_token(client_credentials(&fake, &upper, VAULT).await).await).unwrap();
    assert_eq!(by_guid["tid"], TENANT);
    assert_eq!(tenant_guid(&upper), TENANT);
    // The service principal differs per tenant but not per spelling of the tenant.
    assert_ne!(by_guid["oid"], claims["oid"]);
    let by_domain_guid = fake
        .verify(&expect_token(client_credentials(&fake, &tenant_guid(domain), VAULT).await).await)
        .unwrap();
    assert_eq!(by_domain_guid["oid"], claims["oid"]);

    for keyword in ["organizations", "common"] {
        let claims =
            fake.verify(&expect_token(client_credentials(&fake, keyword, VAULT).await).await).unwrap();
        assert_eq!(claims["tid"], tenant_guid(keyword));
    }
}

#[tokio::test]
async fn double_slash_default_scope_keeps_the_trailing_slash_in_aud() {
    let fake = fake().await;
    let claims = fake.verify(&expect_token(client_credentials(&fake, TENANT, ARM).await).await).unwrap();
    assert_eq!(claims["aud"], "https://management.core.windows.net/");
    let guid_scope = "00000003-0000-0000-c000-000000000000/.default";
    let claims =
        fake.verify(&expect_token(client_credentials(&fake, TENANT, guid_scope).await).await).unwrap();
    assert_eq!(claims["aud"], "00000003-0000-0000-c000-000000000000");
}

#[tokio::test]
async fn http_basic_client_authentication_is_accepted() {
    let fake = fake().await;
    let resp = http()
        .post(token_url(&fake, TENANT))
        .basic_auth(APP, Some(SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", VAULT)])
        .send()
        .await
        .unwrap();
    let claims = fake.verify(&expect_token(resp).await).unwrap();
    assert_eq!(claims["appid"], APP);

    let resp = http()
        .post(token_url(&fake, TENANT))
        .basic_auth(APP, Some("wrong"))
        .form(&[("grant_type", "client_credentials"), ("scope", VAULT)])
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "invalid_client", 7_000_215).await;
}

#[tokio::test]
async fn permissive_mode_accepts_any_client_and_assertions() {
    let fake = FakeEntra::start_with(Options { permissive: true, ..Options::default() }).await.unwrap();
    let stranger = "99999999-8888-7777-6666-555555555555";
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", stranger),
        ("client_secret", "x"),
        ("scope", VAULT),
    ];
    let claims = fake.verify(&expect_token(post_form(&fake, TENANT, &form).await).await).unwrap();
    assert_eq!(claims["appid"], stranger);

    let assertion = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"PS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(format!(r#"{{"iss":"{stranger}","sub":"{stranger}"}}"#))
    );
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", stranger),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", assertion.as_str()),
        ("scope", VAULT),
    ];
    let claims = fake.verify(&expect_token(post_form(&fake, TENANT, &form).await).await).unwrap();
    assert_eq!(claims["appidacr"], "2");

    let malformed = [form[0], form[1], form[2], ("client_assertion", "not-a-jwt"), form[4]];
    expect_error(post_form(&fake, TENANT, &malformed).await, 400, "invalid_request", 50_027).await;

    fake.set_permissive(false);
    expect_error(post_form(&fake, TENANT, &form).await, 400, "unauthorized_client", 700_016).await;
    fake.register_app(stranger, "secret");
    expect_error(post_form(&fake, TENANT, &form).await, 401, "invalid_client", 700_027).await;
}

#[tokio::test]
async fn token_lifetime_is_configurable() {
    let opts = Options { token_lifetime: Duration::from_secs(600), ..Options::default() };
    let fake = FakeEntra::start_with(opts).await.unwrap();
    fake.register_app(APP, SECRET);
    let resp = client_credentials(&fake, TENANT, VAULT).await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["expires_in"], 600);
    let claims = fake.verify(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 600);

    fake.set_token_lifetime(Duration::from_secs(90));
    let body: Value = client_credentials(&fake, TENANT, VAULT).await.json().await.unwrap();
    assert_eq!(body["expires_in"], 90);
    assert_eq!(body["ext_expires_in"], 90);
}

#[tokio::test]
async fn verify_rejects_foreign_and_tampered_tokens() {
    let (a, b) = (fake().await, fake().await);
    let token = expect_token(client_credentials(&a, TENANT, VAULT).await).await;
    assert!(a.verify(&token).is_ok());
    assert!(b.verify(&token).is_err());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = decode_claims(&token).unwrap();
    claims["aud"] = "https://evil.example".into();
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    assert!(a.verify(&parts.join(".")).is_err());
    assert!(a.verify("garbage").is_err());
}
