//! Integration tests for azbroker-entra: the real client against a scripted loopback HTTP stub
//! (exact form bodies, every error mapping, timeouts, network failures, secret-file rotation,
//! proxy environment, redaction) and end to end against the testkit's fake Entra ID.

mod client_credentials;
mod errors;
mod fake_entra;
mod proxy;
mod redaction;
mod service_principal;
mod stub;
mod user_flows;

use std::time::Duration;

use azbroker_core::TenantId;
use azbroker_entra::{EntraClient, HttpSettings};
use url::Url;

pub const TENANT: &str = "contoso.onmicrosoft.com";
pub const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
pub const SECRET: &str = "Zx8Q~s3cr3t.Value_with+special&chars=";

pub fn tenant() -> TenantId {
    TenantId::parse(TENANT).unwrap()
}

pub fn client(authority: Url) -> EntraClient {
    EntraClient::new(HttpSettings::new(authority)).unwrap()
}

pub fn client_with_timeout(authority: Url, timeout: Duration) -> EntraClient {
    let mut settings = HttpSettings::new(authority);
    settings.timeout = timeout;
    settings.connect_timeout = timeout;
    EntraClient::new(settings).unwrap()
}
