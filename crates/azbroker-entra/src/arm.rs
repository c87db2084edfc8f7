//! The two Azure Resource Manager calls the broker makes (PROTOCOLS.md §12.7): discovering the
//! tenant of a subscription from the unauthenticated `GET /subscriptions/{id}` 401 challenge
//! (`WWW-Authenticate: Bearer authorization_uri=".../{tenantId}"`), and listing the tenants a
//! signed-in user can reach (`GET /tenants`, with a user token for ARM).

use std::time::Duration;

use azbroker_core::{Secret, TenantInfo, UpstreamError};
use reqwest::header::{ACCEPT, WWW_AUTHENTICATE};
use serde_json::Value;
use url::Url;

use crate::cloud::is_loopback_url;
use crate::error_map::{innermost_cause, map_transport, truncate_chars};

const API_VERSION: &str = "2022-12-01";
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest ARM answer read (a tenant list is a few KiB).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// An ARM client for one endpoint (`[cloud] arm_endpoint`).
#[derive(Debug, Clone)]
pub struct ArmClient {
    http: reqwest::Client,
    endpoint: Url,
}

impl ArmClient {
    pub fn new(endpoint: Url) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .user_agent(concat!("azbroker/", env!("CARGO_PKG_VERSION")));
        if is_loopback_url(&endpoint) {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| innermost_cause(&e).unwrap_or_else(|| e.to_string()))?;
        Ok(Self { http, endpoint })
    }

    /// The ARM App ID URI tokens for this endpoint are requested for (`https://management.azure.com/`).
    pub fn resource(&self) -> String {
        format!("{}/", self.endpoint.as_str().trim_end_matches('/'))
    }

    /// The tenant GUID a subscription lives in, from ARM's unauthenticated challenge.
    pub async fn discover_tenant(&self, subscription_id: &str) -> Result<String, UpstreamError> {
        let id = subscription_id.trim();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(UpstreamError::Config(format!("'{id}' is not a subscription id")));
        }
        let url = self.url(&["subscriptions", id]);
        let response = self
            .http
            .get(url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| map_transport(&e))?;
        let status = response.status().as_u16();
        if status == 401 {
            let header = response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or("");
            return tenant_from_challenge(header).ok_or_else(|| {
                UpstreamError::BadResponse(
                    "ARM answered 401 without a usable authorization_uri challenge".into(),
                )
            });
        }
        let body = read(response).await?;
        Err(arm_error(
            status,
            &body,
            &format!("ARM answered HTTP {status} instead of the expected 401 challenge"),
        ))
    }

    /// The tenants the holder of `token` (a user token for [`Self::resource`]) can reach.
    pub async fn tenants(&self, token: &Secret) -> Result<Vec<TenantInfo>, UpstreamError> {
        let response = self
            .http
            .get(self.url(&["tenants"]))
            .header(ACCEPT, "application/json")
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(|e| map_transport(&e))?;
        let status = response.status().as_u16();
        let body = read(response).await?;
        if status != 200 {
            return Err(arm_error(status, &body, "ARM refused to list tenants"));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| UpstreamError::BadResponse("tenant list is not JSON".into()))?;
        let text = |t: &Value, k: &str| t.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(v["value"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|t| {
                Some(TenantInfo {
                    tenant_id: text(t, "tenantId")?,
                    display_name: text(t, "displayName"),
                    default_domain: text(t, "defaultDomain"),
                    category: text(t, "tenantCategory"),
                })
            })
            .collect())
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.endpoint.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url.query_pairs_mut().append_pair("api-version", API_VERSION);
        url
    }
}

/// The GUID after the last `/` of `authorization_uri="..."` in a Bearer challenge.
pub fn tenant_from_challenge(header: &str) -> Option<String> {
    let start = header.find("authorization_uri=\"")? + "authorization_uri=\"".len();
    let uri = &header[start..];
    let uri = &uri[..uri.find('"')?];
    let tenant = uri.trim_end_matches('/').rsplit('/').next()?;
    let ok = tenant.len() == 36 && tenant.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    ok.then(|| tenant.to_ascii_lowercase())
}

async fn read(mut response: reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| map_transport(&e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(UpstreamError::BadResponse("ARM answer is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// ARM's `{"error":{"code","message"}}` as a `Refused` error.
fn arm_error(status: u16, body: &[u8], fallback: &str) -> UpstreamError {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    match (v["error"]["code"].as_str(), v["error"]["message"].as_str()) {
        (Some(code), message) => UpstreamError::Refused {
            error: truncate_chars(code.to_owned(), 64),
            codes: vec![],
            description: truncate_chars(format!("HTTP {status}: {}", message.unwrap_or("")), 500),
        },
        _ => UpstreamError::BadResponse(fallback.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parsing() {
        let h = r#"Bearer authorization_uri="https://login.windows.net/72F988BF-86F1-41AF-91AB-2D7CD011DB47", error="invalid_token", error_description="x""#;
        assert_eq!(tenant_from_challenge(h).as_deref(), Some("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert_eq!(
            tenant_from_challenge(r#"Bearer authorization_uri="https://login.windows.net/common""#),
            None
        );
        assert_eq!(tenant_from_challenge("Bearer realm=x"), None);
        assert_eq!(tenant_from_challenge(r#"Bearer authorization_uri="unterminated"#), None);
    }
}
