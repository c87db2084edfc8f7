//! JWKS and OpenID metadata: shapes, and that they describe what the token endpoint really does.

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use azbroker_testkit::tenant_guid;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::*;

async fn get_json(url: &str) -> Value {
    let resp = http().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    assert_eq!(resp.headers()["content-type"], "application/json");
    resp.json().await.unwrap()
}

#[tokio::test]
async fn jwks_publishes_the_key_that_signs_tokens() {
    let fake = fake().await;
    let jwks = get_json(&format!("{}/{TENANT}/discovery/v2.0/keys", fake.url())).await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let jwk = &keys[0];
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["kid"], fake.key_id().as_str());
    assert_eq!(jwk["issuer"], format!("{}/{TENANT}/v2.0", fake.url()));
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap();
    assert_eq!(n.len(), 256, "RSA-2048 modulus without leading zero");
    assert_eq!(e, [1, 0, 1]);

    // Verify an issued token with nothing but the published n and e.
    let token = expect_token(client_credentials(&fake, TENANT, VAULT).await).await;
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    RsaPublicKeyComponents { n: &n, e: &e }
        .verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &sig)
        .unwrap();

    let common = get_json(&format!("{}/common/discovery/v2.0/keys", fake.url())).await;
    assert_eq!(common["keys"][0]["n"], jwk["n"]);
    assert_eq!(common["keys"][0]["issuer"], format!("{}/{{tenantid}}/v2.0", fake.url()));
    let v1 = get_json(&format!("{}/common/discovery/keys", fake.url())).await;
    assert_eq!(v1["keys"][0]["kid"], jwk["kid"]);
    assert!(v1["keys"][0].get("issuer").is_none());
}

#[tokio::test]
async fn openid_configuration_points_at_this_server() {
    let fake = fake().await;
    let domain = "contoso.onmicrosoft.com";
    let tid = tenant_guid(domain);
    let meta = get_json(&format!("{}/{domain}/v2.0/.well-known/openid-configuration", fake.url())).await;
    let base = format!("{}/{tid}", fake.url());
    assert_eq!(meta["issuer"], format!("{base}/v2.0"));
    assert_eq!(meta["token_endpoint"], format!("{base}/oauth2/v2.0/token"));
    assert_eq!(meta["jwks_uri"], format!("{base}/discovery/v2.0/keys"));
    assert_eq!(meta["device_authorization_endpoint"], format!("{base}/oauth2/v2.0/devicecode"));
    assert_eq!(meta["authorization_endpoint"], format!("{base}/oauth2/v2.0/authorize"));

    // The advertised endpoints work, and the issuer matches issued tokens.
    get_json(meta["jwks_uri"].as_str().unwrap()).await;
    let resp = http()
        .post(meta["token_endpoint"].as_str().unwrap())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", SECRET),
            ("scope", VAULT),
        ])
        .send()
        .await
        .unwrap();
    let claims = fake.verify(&expect_token(resp).await).unwrap();
    assert_eq!(claims["iss"], meta["issuer"]);

    let common =
        get_json(&format!("{}/organizations/v2.0/.well-known/openid-configuration", fake.url())).await;
    assert_eq!(common["token_endpoint"], format!("{}/organizations/oauth2/v2.0/token", fake.url()));
    assert_eq!(common["issuer"], format!("{}/{{tenantid}}/v2.0", fake.url()));

    let instance = get_json(&format!("{}/common/discovery/instance?api-version=1.1", fake.url())).await;
    assert_eq!(instance["metadata"][0]["aliases"][0], fake.addr().to_string());
}

#[tokio::test]
async fn arm_subscription_list_needs_one_of_our_tokens() {
    let entra = azbroker_testkit::FakeEntra::start_with(azbroker_testkit::Options {
        permissive: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/subscriptions?api-version=2022-12-01", entra.url());
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer authorization_uri="));
    let r = http.get(&url).bearer_auth("not.a.token").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let token: serde_json::Value = http
        .post(format!("{}/fabrikam.example/oauth2/v2.0/token", entra.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "c"),
            ("client_secret", "s"),
            ("scope", "https://management.azure.com//.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http.get(&url).bearer_auth(token["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let tid = azbroker_testkit::tenant_guid("fabrikam.example");
    assert_eq!(body["value"][0]["tenantId"], tid.as_str());
    assert_eq!(body["value"][0]["subscriptionId"], azbroker_testkit::subscription_id(&tid).as_str());
}
