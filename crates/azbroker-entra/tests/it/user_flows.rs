//! User sign-in flows run by `UserLogins` against the testkit: every final state of a device
//! code (signed in, declined, expired, cancelled), one refresh token redeemed in two tenants
//! with the rotated token kept, and the login/tenant marks with their commands.

use std::sync::Arc;
use std::time::Duration;

use azbroker_core::admin_api::{AdminError, FlowState, LoginMethod, LoginRequest, LoginState};
use azbroker_core::login::{CallbackParams, Redirect, RedirectListener};
use azbroker_core::{BoxFuture, FetchRequest, Resource, TenantId, TokenSource, UpstreamError};
use azbroker_entra::{ArmClient, LoginStore, StoreKey, UserLogin, UserLogins};
use azbroker_testkit::{FakeEntra, tenant_guid};
use url::Url;

use super::client;

const ALICE: &str = "alice@contoso.example";

/// Browser sign-ins are tested end to end by the binary; here nobody ever calls back.
struct NoRedirect;

impl RedirectListener for NoRedirect {
    fn listen(&self) -> BoxFuture<'static, Result<Redirect, String>> {
        Box::pin(async {
            Ok(Redirect {
                redirect_uri: "http://localhost:1/".into(),
                callback: Box::pin(std::future::pending::<Result<CallbackParams, String>>()),
            })
        })
    }
}

async fn setup() -> (FakeEntra, Arc<UserLogins>, tempfile::TempDir) {
    let fake = FakeEntra::start().await.unwrap();
    fake.add_user(ALICE, &["contoso.example", "fabrikam.example"]);
    fake.set_device_code_timing(Duration::from_secs(1), Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let store = LoginStore::open(dir.path(), StoreKey::load_or_create(None, dir.path()).unwrap()).unwrap();
    let url = Url::parse(&fake.url()).unwrap();
    let users = UserLogins::new(
        client(url.clone()),
        Arc::new(store),
        ArmClient::new(url).unwrap(),
        Arc::new(NoRedirect),
    );
    users.set_logins(vec![UserLogin {
        name: "me".into(),
        client_id: azbroker_entra::AZURE_CLI_CLIENT_ID.into(),
        authority_tenant: TenantId::parse("organizations").unwrap(),
    }]);
    (fake, users, dir)
}

async fn final_state(users: &UserLogins, id: &str) -> (FlowState, Option<String>) {
    for _ in 0..30 {
        let s = users.flow_status("me", id, Duration::from_secs(2)).await.unwrap();
        if s.state.is_final() {
            return (s.state, s.error.or(s.account));
        }
    }
    panic!("the flow did not finish");
}

fn fetch(tenant: &str, resource: &str) -> FetchRequest {
    FetchRequest { tenant: TenantId::parse(tenant).unwrap(), resource: Resource::parse(resource).unwrap() }
}

#[tokio::test]
async fn device_code_flows_end_in_every_state() {
    let (fake, users, _dir) = setup().await;
    let start = users.start_flow("me", LoginRequest::default()).await.unwrap();
    assert_eq!(start.method, LoginMethod::DeviceCode);
    let code = start.user_code.clone().unwrap();
    assert!(start.message.unwrap().contains(&code));
    assert!(fake.decline_device_code(&code));
    let (state, why) = final_state(&users, &start.flow_id).await;
    assert_eq!(state, FlowState::Failed);
    assert!(why.unwrap().contains("authorization_declined"));

    let start = users.start_flow("me", LoginRequest::default()).await.unwrap();
    let cancelled = users.cancel_flow("me", &start.flow_id).await.unwrap();
    assert_eq!(cancelled.state, FlowState::Cancelled);

    fake.set_device_code_timing(Duration::from_secs(1), Duration::from_secs(2));
    let start = users.start_flow("me", LoginRequest::default()).await.unwrap();
    assert_eq!(final_state(&users, &start.flow_id).await.0, FlowState::Expired);

    assert!(matches!(
        users.start_flow("nobody", LoginRequest::default()).await.unwrap_err(),
        AdminError::NotFound(_)
    ));
    assert!(users.flow_status("me", "no-such-flow", Duration::ZERO).await.is_err());
}

#[tokio::test]
async fn one_refresh_token_two_tenants_and_marks_with_commands() {
    let (fake, users, dir) = setup().await;
    let source = users.source("me");
    let err = source.fetch(&fetch("organizations", "https://vault.azure.net")).await.unwrap_err();
    assert!(err.to_string().ends_with("run `azbroker login --login me`"), "{err}");

    fake.set_rotation_revokes_old(true);
    let start = users.start_flow("me", LoginRequest::default()).await.unwrap();
    assert!(fake.approve_device_code(start.user_code.as_deref().unwrap(), ALICE));
    assert_eq!(final_state(&users, &start.flow_id).await, (FlowState::SignedIn, Some(ALICE.to_owned())));

    for tenant in ["fabrikam.example", "contoso.example", "fabrikam.example"] {
        let token = source.fetch(&fetch(tenant, "https://vault.azure.net")).await.unwrap();
        let claims = fake.verify(token.secret().expose()).unwrap();
        assert_eq!(claims["tid"], tenant_guid(tenant));
    }
    let stored = std::fs::read(dir.path().join("logins.store")).unwrap();
    for rt in fake.issued_refresh_tokens() {
        assert!(!stored.windows(rt.len()).any(|w| w == rt.as_bytes()));
    }

    fake.require_interaction("fabrikam.example", 53003);
    let err = source.fetch(&fetch("fabrikam.example", "https://storage.azure.com")).await.unwrap_err();
    assert!(
        matches!(&err, UpstreamError::LoginRequired { tenant: Some(t), .. } if t == "fabrikam.example"),
        "{err}"
    );
    assert!(err.to_string().contains("--tenant fabrikam.example") && err.to_string().contains("AADSTS53003"));
    let upstream = fake.token_requests();
    assert!(source.fetch(&fetch("fabrikam.example", "https://vault.azure.net")).await.is_err());
    assert_eq!(fake.token_requests(), upstream, "a marked tenant is not asked again");
    let status = &users.statuses()[0];
    assert_eq!((status.state, status.tenants_needing_sign_in.len()), (LoginState::SignedIn, 1));
    assert!(source.fetch(&fetch("contoso.example", "https://storage.azure.com")).await.is_ok());

    fake.revoke_refresh_tokens(ALICE);
    let err = source.fetch(&fetch("contoso.example", "https://graph.microsoft.com")).await.unwrap_err();
    assert!(matches!(err, UpstreamError::LoginRequired { tenant: None, .. }), "{err}");
    let status = &users.statuses()[0];
    assert_eq!(status.state, LoginState::NeedsSignIn);
    assert_eq!(status.command.as_deref(), Some("azbroker login --login me"));

    assert!(users.logout("me").await.unwrap());
    assert_eq!(users.statuses()[0].state, LoginState::NotSignedIn);
}
