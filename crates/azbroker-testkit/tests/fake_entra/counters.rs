//! Request counters: every token request, per (tenant-as-in-path, grant_type, scope), and issued
//! tokens.

use crate::*;

#[tokio::test]
async fn counters_track_requests_by_key() {
    let fake = fake().await;
    assert_eq!((fake.token_requests(), fake.issued_tokens()), (0, 0));
    expect_token(client_credentials(&fake, TENANT, VAULT).await).await;
    expect_token(client_credentials(&fake, TENANT, VAULT).await).await;
    expect_token(client_credentials(&fake, "contoso.com", VAULT).await).await;
    expect_token(client_credentials(&fake, TENANT, ARM).await).await;
    client_credentials(&fake, TENANT, "bad").await;
    http().get(token_url(&fake, TENANT)).send().await.unwrap();

    assert_eq!(fake.token_requests(), 6);
    assert_eq!(fake.issued_tokens(), 4);
    assert_eq!(fake.requests_for(TENANT, "client_credentials", VAULT), 2);
    assert_eq!(fake.requests_for("contoso.com", "client_credentials", VAULT), 1);
    assert_eq!(fake.requests_for(TENANT, "client_credentials", ARM), 1);
    assert_eq!(fake.requests_for(TENANT, "client_credentials", "bad"), 1);
    assert_eq!(fake.requests_for(TENANT, "refresh_token", VAULT), 0);
    // Tenants are counted as they appeared in the path.
    assert_eq!(
        fake.requests_for(&azbroker_testkit::tenant_guid("contoso.com"), "client_credentials", VAULT),
        0
    );

    // Discovery requests are not token requests.
    http().get(format!("{}/{TENANT}/discovery/v2.0/keys", fake.url())).send().await.unwrap();
    assert_eq!(fake.token_requests(), 6);
}

#[tokio::test]
async fn concurrent_requests_are_all_counted() {
    let fake = fake().await;
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let fake = fake.clone();
            tokio::spawn(async move { expect_token(client_credentials(&fake, TENANT, VAULT).await).await })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap());
    }
    assert_eq!(tokens.len(), 32, "tokens are unique per issue");
    assert_eq!(fake.token_requests(), 32);
    assert_eq!(fake.issued_tokens(), 32);
    assert_eq!(fake.requests_for(TENANT, "client_credentials", VAULT), 32);
}
