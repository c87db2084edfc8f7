//! End to end against the testkit's fake Entra ID: real JWTs with the right `tid` and `aud`, and
//! the fake's injected faults mapped to the expected `UpstreamError`s.

use std::time::Duration;

use azbroker_core::{FetchRequest, Resource, Secret, TenantId, TokenSource, UpstreamError};
use azbroker_entra::{SecretRef, ServicePrincipalSource, parse_authority_host};
use azbroker_testkit::{FakeEntra, Fault, decode_claims, tenant_guid};

use crate::{CLIENT_ID, SECRET, TENANT, client};

async fn fake() -> FakeEntra {
    let fake = FakeEntra::start().await.unwrap();
    fake.register_app(CLIENT_ID, SECRET);
    fake
}

fn source(fake: &FakeEntra, secret: &str) -> ServicePrincipalSource {
    let authority = parse_authority_host(&fake.url()).unwrap();
    ServicePrincipalSource::new(
        client(authority),
        CLIENT_ID.to_owned(),
        SecretRef::Inline(Secret::new(secret)),
    )
}

fn request(tenant: &str, resource: &str) -> FetchRequest {
    FetchRequest { tenant: TenantId::parse(tenant).unwrap(), resource: Resource::parse(resource).unwrap() }
}

#[tokio::test]
async fn service_principal_gets_a_token_for_the_tenant_and_resource() {
    let fake = fake().await;
    let source = source(&fake, SECRET);
    for (tenant, resource) in [
        (TENANT, "https://management.core.windows.net/"),
        ("72f988bf-86f1-41af-91ab-2d7cd011db47", "https://vault.azure.net"),
    ] {
        let token = source.fetch(&request(tenant, resource)).await.unwrap();
        let claims = decode_claims(token.secret().expose()).unwrap();
        assert_eq!(claims["tid"], tenant_guid(tenant), "{claims}");
        assert_eq!(claims["aud"], resource, "{claims}");
        fake.verify(token.secret().expose()).unwrap();
        // Both clocks read whole seconds at slightly different moments.
        let exp = claims["exp"].as_u64().unwrap();
        assert!(exp.abs_diff(token.expires_on) <= 2, "exp {exp} vs expires_on {}", token.expires_on);
        assert!(token.lifetime() > Duration::from_secs(60));
    }
    assert_eq!(fake.token_requests(), 2);
    assert_eq!(
        fake.requests_for(TENANT, "client_credentials", "https://management.core.windows.net//.default"),
        1
    );
}

#[tokio::test]
async fn wrong_secret_is_invalid_client() {
    let fake = fake().await;
    let err =
        source(&fake, "not-the-secret").fetch(&request(TENANT, "https://vault.azure.net")).await.unwrap_err();
    assert_eq!(err.kind(), "invalid_client", "{err:?}");
    assert!(!format!("{err} {err:?}").contains("not-the-secret"));
}

#[tokio::test]
async fn denied_tenant_and_resource() {
    let fake = fake().await;
    fake.deny_tenant("fabrikam.onmicrosoft.com");
    fake.deny_resource("https://storage.azure.com");
    let source = source(&fake, SECRET);
    let err =
        source.fetch(&request("fabrikam.onmicrosoft.com", "https://vault.azure.net")).await.unwrap_err();
    assert_eq!(err.kind(), "refused", "{err:?}");
    assert!(err.to_string().contains("AADSTS90002"), "{err}");
    let err = source.fetch(&request(TENANT, "https://storage.azure.com/")).await.unwrap_err();
    assert_eq!(err.kind(), "invalid_resource", "{err:?}");
}

#[tokio::test]
async fn injected_faults_map_to_upstream_errors() {
    let fake = fake().await;
    let source = source(&fake, SECRET);
    let req = request(TENANT, "https://vault.azure.net");
    let cases = [
        (Fault::Throttle { retry_after_secs: 30 }, "throttled"),
        (Fault::Status(503), "unavailable"),
        (Fault::Status(500), "unavailable"),
        (Fault::Reset, "network"),
        (Fault::Garbage, "bad_response"),
        (Fault::InvalidGrant, "invalid_grant"),
        (Fault::InteractionRequired, "interaction_required"),
    ];
    for (fault, kind) in cases {
        fake.inject(fault.clone(), Some(1));
        let err = source.fetch(&req).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{fault:?}: {err:?}");
        if let Fault::Throttle { .. } = fault {
            assert_eq!(err, UpstreamError::Throttled { retry_after: Some(Duration::from_secs(30)) });
        }
    }
    // Faults are used up: the next call succeeds.
    source.fetch(&req).await.unwrap();
}
