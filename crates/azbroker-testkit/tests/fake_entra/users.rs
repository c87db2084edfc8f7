//! Delegated flows for scripted users: device code polling states, refresh tokens across
//! tenants with rotation, interaction demands and revocation, authorization code + PKCE,
//! certificate and federated assertions, and the ARM challenge and tenant list.

use std::time::Duration;

use aws_lc_rs::{digest, rand, signature};
use azbroker_testkit::{FakeEntra, TestCertificate, sha256_thumbprint, tenant_guid};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::*;

const CLI: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
const ALICE: &str = "alice@contoso.example";
const CONTOSO: &str = "contoso.example";
const FABRIKAM: &str = "fabrikam.example";
const SCOPE: &str = "https://management.core.windows.net//.default offline_access openid profile";

async fn start_device(fake: &FakeEntra, tenant: &str) -> Value {
    let r = http()
        .post(format!("{}/{tenant}/oauth2/v2.0/devicecode", fake.url()))
        .form(&[("client_id", CLI), ("scope", SCOPE)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn poll(fake: &FakeEntra, tenant: &str, device_code: &str) -> reqwest::Response {
    post_form(
        fake,
        tenant,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", CLI),
            ("device_code", device_code),
        ],
    )
    .await
}

async fn refresh(fake: &FakeEntra, tenant: &str, rt: &str, scope: &str) -> reqwest::Response {
    post_form(
        fake,
        tenant,
        &[("grant_type", "refresh_token"), ("client_id", CLI), ("refresh_token", rt), ("scope", scope)],
    )
    .await
}

async fn signed_in(fake: &FakeEntra) -> Value {
    fake.add_user(ALICE, &[CONTOSO, FABRIKAM]);
    fake.set_device_code_timing(Duration::ZERO, Duration::from_secs(60));
    let flow = start_device(fake, "organizations").await;
    assert!(fake.approve_device_code(flow["user_code"].as_str().unwrap(), ALICE));
    let r = poll(fake, "organizations", flow["device_code"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn device_code_polling_states() {
    let fake = fake().await;
    fake.add_user(ALICE, &[CONTOSO]);
    fake.set_device_code_timing(Duration::from_secs(1), Duration::from_secs(60));
    let flow = start_device(&fake, "organizations").await;
    assert_eq!(flow["interval"], 1);
    assert_eq!(flow["expires_in"], 60);
    let code = flow["user_code"].as_str().unwrap();
    assert!(flow["message"].as_str().unwrap().contains(code));
    assert_eq!(fake.pending_user_codes(), vec![code.to_owned()]);
    let dc = flow["device_code"].as_str().unwrap();
    expect_error(poll(&fake, "organizations", dc).await, 400, "authorization_pending", 70016).await;
    // Polling again at once is too fast.
    expect_error(poll(&fake, "organizations", dc).await, 400, "slow_down", 70016).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(fake.approve_device_code(code, ALICE));
    let body: Value = poll(&fake, "organizations", dc).await.json().await.unwrap();
    let claims = fake.verify(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["tid"], tenant_guid(CONTOSO));
    assert_eq!(claims["upn"], ALICE);
    assert_eq!(claims["aud"], "https://management.core.windows.net/");
    let id = fake.verify(body["id_token"].as_str().unwrap()).unwrap();
    assert_eq!((id["aud"].as_str(), id["preferred_username"].as_str()), (Some(CLI), Some(ALICE)));
    assert!(body["refresh_token"].as_str().unwrap().len() > 40);
    // Single use.
    expect_error(poll(&fake, "organizations", dc).await, 400, "bad_verification_code", 70018).await;

    let declined = start_device(&fake, "organizations").await;
    assert!(fake.decline_device_code(declined["user_code"].as_str().unwrap()));
    let dc = declined["device_code"].as_str().unwrap();
    expect_error(poll(&fake, "organizations", dc).await, 400, "authorization_declined", 70000).await;

    fake.set_device_code_timing(Duration::ZERO, Duration::ZERO);
    let expired = start_device(&fake, "organizations").await;
    let dc = expired["device_code"].as_str().unwrap();
    expect_error(poll(&fake, "organizations", dc).await, 400, "expired_token", 70019).await;
}

#[tokio::test]
async fn one_refresh_token_every_tenant_rotated_and_revocable() {
    let fake = fake().await;
    let body = signed_in(&fake).await;
    let rt = body["refresh_token"].as_str().unwrap().to_owned();
    let r = refresh(&fake, FABRIKAM, &rt, "https://vault.azure.net/.default offline_access").await;
    assert_eq!(r.status(), 200);
    let next: Value = r.json().await.unwrap();
    let claims = fake.verify(next["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["tid"], tenant_guid(FABRIKAM));
    assert_eq!(claims["aud"], "https://vault.azure.net");
    let rotated = next["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, rt);
    // Old tokens stay valid, unless rotation retires them.
    assert_eq!(refresh(&fake, CONTOSO, &rt, SCOPE).await.status(), 200);
    fake.set_rotation_revokes_old(true);
    assert_eq!(refresh(&fake, CONTOSO, &rotated, SCOPE).await.status(), 200);
    expect_error(refresh(&fake, CONTOSO, &rotated, SCOPE).await, 400, "invalid_grant", 50173).await;
    // A tenant the user cannot reach.
    let latest = fake.issued_refresh_tokens().last().unwrap().clone();
    expect_error(refresh(&fake, "other.example", &latest, SCOPE).await, 400, "invalid_grant", 50020).await;
    // MFA in fabrikam: silent redemption refused there, still fine at home.
    fake.require_interaction(FABRIKAM, 50076);
    let body =
        expect_error(refresh(&fake, FABRIKAM, &latest, SCOPE).await, 400, "invalid_grant", 50076).await;
    assert_eq!(body["suberror"], "basic_action");
    let r = refresh(&fake, CONTOSO, &latest, SCOPE).await;
    assert_eq!(r.status(), 200);
    let latest = r.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned();
    assert!(fake.revoke_refresh_tokens(ALICE) >= 1);
    expect_error(refresh(&fake, CONTOSO, &latest, SCOPE).await, 400, "invalid_grant", 50173).await;
    expect_error(refresh(&fake, CONTOSO, "garbage", SCOPE).await, 400, "invalid_grant", 9002313).await;
}

#[tokio::test]
async fn signing_in_at_a_tenant_satisfies_its_interaction_demand() {
    let fake = fake().await;
    fake.add_user(ALICE, &[CONTOSO, FABRIKAM]);
    fake.require_interaction(FABRIKAM, 53003);
    fake.auto_approve_device_codes(Some(ALICE));
    let flow = start_device(&fake, FABRIKAM).await;
    let r = poll(&fake, FABRIKAM, flow["device_code"].as_str().unwrap()).await;
    let rt = r.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(refresh(&fake, FABRIKAM, &rt, SCOPE).await.status(), 200);
}

#[tokio::test]
async fn authorization_code_with_pkce() {
    let fake = fake().await;
    fake.add_user(ALICE, &[CONTOSO]);
    let verifier = "a-verifier-of-at-least-forty-three-characters-long-xyz";
    let challenge = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    let redirect = "http://localhost:8400/";
    let no_follow =
        reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let authorize = |state: &str| {
        no_follow.get(format!("{}/organizations/oauth2/v2.0/authorize", fake.url())).query(&[
            ("client_id", CLI),
            ("response_type", "code"),
            ("redirect_uri", redirect),
            ("scope", SCOPE),
            ("state", state),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
    };
    let r = authorize("s1").send().await.unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(redirect)
            && location.contains("error=access_denied")
            && location.contains("state=s1"),
        "{location}"
    );

    fake.set_browser_user(Some(ALICE));
    let r = authorize("s2").send().await.unwrap();
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "s2");
    let code = q["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", CLI),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", verifier),
        ("scope", SCOPE),
    ];
    let r = post_form(&fake, "organizations", &form).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["refresh_token"].is_string());
    expect_error(post_form(&fake, "organizations", &form).await, 400, "invalid_grant", 70008).await;

    let r = authorize("s3").send().await.unwrap();
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let r = post_form(
        &fake,
        "organizations",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLI),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", "wrong-verifier"),
        ],
    )
    .await;
    expect_error(r, 400, "invalid_grant", 501481).await;
}

fn assertion(cert: &TestCertificate, header: Value, claims: Value) -> String {
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let key = signature::RsaKeyPair::from_pkcs8(&cert.key_pkcs8_der).unwrap();
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(&signature::RSA_PSS_SHA256, &rand::SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

async fn with_assertion(fake: &FakeEntra, jwt: &str) -> reqwest::Response {
    post_form(
        fake,
        TENANT,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("scope", VAULT),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", jwt),
        ],
    )
    .await
}

#[tokio::test]
async fn certificate_assertions_are_verified() {
    let fake = fake().await;
    let cert = TestCertificate::generate("azbroker-test").unwrap();
    let other = TestCertificate::generate("other").unwrap();
    fake.register_app_certificate(APP, &cert.der);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = json!({"alg": "PS256", "typ": "JWT", "x5t#S256": sha256_thumbprint(&cert.der)});
    let aud = token_url(&fake, TENANT);
    let claims = json!({"aud": aud, "iss": APP, "sub": APP, "jti": "j1", "nbf": now, "exp": now + 600});
    expect_token(with_assertion(&fake, &assertion(&cert, header.clone(), claims.clone())).await).await;

    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!(token_url(&fake, "other.example"));
    expect_error(
        with_assertion(&fake, &assertion(&cert, header.clone(), wrong_aud)).await,
        401,
        "invalid_client",
        700021,
    )
    .await;
    let mut expired = claims.clone();
    expired["exp"] = json!(now - 1);
    expect_error(
        with_assertion(&fake, &assertion(&cert, header.clone(), expired)).await,
        401,
        "invalid_client",
        700024,
    )
    .await;
    // Signed by another key under the registered thumbprint.
    expect_error(
        with_assertion(&fake, &assertion(&other, header, claims.clone())).await,
        401,
        "invalid_client",
        700027,
    )
    .await;
    let unknown = json!({"alg": "PS256", "typ": "JWT", "x5t#S256": sha256_thumbprint(&other.der)});
    expect_error(
        with_assertion(&fake, &assertion(&other, unknown, claims)).await,
        401,
        "invalid_client",
        700027,
    )
    .await;
}

#[tokio::test]
async fn federated_assertions_from_the_fake_itself() {
    let fake = fake().await;
    fake.register_federated_credential(APP, "system:serviceaccount:ns:sa");
    let token = fake.issue_federated_token("system:serviceaccount:ns:sa", Duration::from_secs(600)).unwrap();
    expect_token(with_assertion(&fake, &token).await).await;
    let stranger =
        fake.issue_federated_token("system:serviceaccount:ns:other", Duration::from_secs(600)).unwrap();
    expect_error(with_assertion(&fake, &stranger).await, 400, "invalid_request", 700213).await;
}

#[tokio::test]
async fn arm_challenge_and_tenants() {
    let fake = fake().await;
    let sub = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    fake.register_subscription(sub, FABRIKAM);
    let r = http()
        .get(format!("{}/subscriptions/{sub}?api-version=2022-12-01", fake.arm_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains(&format!("authorization_uri=\"{}/{}\"", fake.url(), tenant_guid(FABRIKAM))),
        "{challenge}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "AuthenticationFailed");
    let r = http()
        .get(format!("{}/subscriptions/00000000-0000-0000-0000-000000000000", fake.arm_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let body = signed_in(&fake).await;
    let rt = body["refresh_token"].as_str().unwrap();
    let arm_scope = format!("{}//.default", fake.arm_url());
    let token =
        refresh(&fake, "organizations", rt, &arm_scope).await.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
    let r = http()
        .get(format!("{}/tenants?api-version=2022-12-01", fake.arm_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let ids: Vec<&str> =
        body["value"].as_array().unwrap().iter().map(|t| t["tenantId"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![tenant_guid(CONTOSO), tenant_guid(FABRIKAM)]);
    assert_eq!(body["value"][1]["defaultDomain"], FABRIKAM);
    // A home-tenant token is the wrong one for a fabrikam subscription.
    let r = http()
        .get(format!("{}/subscriptions/{sub}", fake.arm_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "InvalidAuthenticationTokenTenant");
    let r = http().get(format!("{}/tenants", fake.arm_url())).send().await.unwrap();
    assert_eq!(r.status(), 401);
}
