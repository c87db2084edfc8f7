//! The Entra ID v2 HTTP client: one `reqwest` client (rustls, no redirects, bounded timeouts,
//! proxy from the environment, optional extra CA roots) and the token-endpoint grants built on it.
//!
//! Every grant goes through one private `post_token`, which owns the URL, the logging, the body
//! bound and the error mapping. Secrets in the form are never logged, and are scrubbed from
//! anything upstream echoes back.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use azbroker_core::{Secret, TenantId, UpstreamError};
use reqwest::header::{ACCEPT, RETRY_AFTER};
use url::Url;

use crate::cloud::is_loopback_url;
use crate::error_map::{innermost_cause, map_error_response, map_transport, parse_retry_after};
pub use crate::response::TokenResponse;

/// Default total timeout of one upstream request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default timeout for establishing a connection (TCP + TLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read from the token endpoint (real ones are a few KiB).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// `client_assertion_type` for JWT client assertions (certificates, federated credentials).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `grant_type` of device-code polling.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Form fields whose values are secrets: never logged, scrubbed from echoed error text.
const SECRET_FORM_FIELDS: [&str; 6] =
    ["client_secret", "client_assertion", "refresh_token", "device_code", "code", "code_verifier"];

const USER_AGENT: &str = concat!("azbroker/", env!("CARGO_PKG_VERSION"));

/// How to reach Entra ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// From [`crate::parse_authority_host`] or a [`crate::CloudName`].
    pub authority_host: Url,
    /// Extra PEM CA certificate(s) trusted in addition to the system roots (TLS inspection).
    pub ca_file: Option<PathBuf>,
    /// Total time allowed for one request, including reading the body.
    pub timeout: Duration,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
}

impl HttpSettings {
    /// Settings with the default timeouts and the system trust roots only.
    pub fn new(authority_host: Url) -> Self {
        Self {
            authority_host,
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// Why the client could not be built. Reported once at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read ca_file {}: {error}", path.display())]
    CaFileUnreadable { path: PathBuf, error: std::io::Error },
    #[error("ca_file {} holds no usable PEM certificate: {reason}", path.display())]
    CaFileInvalid { path: PathBuf, reason: String },
    #[error("cannot build the HTTP client: {reason}")]
    HttpClient { reason: String },
}

/// How a confidential client proves its identity. `Debug` redacts.
#[derive(Debug, Clone)]
pub enum ClientCredential {
    /// A client secret (`client_secret=`).
    Secret(Secret),
    /// A signed JWT (`client_assertion=`): a certificate assertion or a federated token.
    Assertion(Secret),
}

/// The fields of an authorize request for a browser sign-in.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizeRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    pub state: &'a str,
    pub code_challenge: &'a str,
}

/// The answer of the device authorization endpoint. `Debug` redacts the device code.
#[derive(Debug, Clone)]
pub struct DeviceCode {
    pub device_code: Secret,
    pub user_code: String,
    pub verification_uri: String,
    pub expires_in: Duration,
    pub interval: Duration,
    /// Entra's instruction for the person, naming the URL and the code.
    pub message: String,
}

impl DeviceCode {
    fn from_json(body: &[u8]) -> Result<Self, UpstreamError> {
        let bad = |what: &str| UpstreamError::BadResponse(format!("device code response: {what}"));
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad("not JSON"))?;
        let text = |k: &str| v.get(k).and_then(serde_json::Value::as_str).filter(|s| !s.is_empty());
        // MSAL defends against numbers sent as strings; so do we.
        let secs = |k: &str| {
            v.get(k).and_then(|n| n.as_u64().or_else(|| n.as_str().and_then(|s| s.trim().parse().ok())))
        };
        let device_code = text("device_code").ok_or_else(|| bad("no device_code"))?;
        let user_code = text("user_code").ok_or_else(|| bad("no user_code"))?.to_owned();
        let verification_uri = text("verification_uri")
            .or_else(|| text("verification_url"))
            .ok_or_else(|| bad("no verification_uri"))?
            .to_owned();
        let message = text("message").map_or_else(
            || format!("To sign in, open {verification_uri} and enter the code {user_code}."),
            str::to_owned,
        );
        Ok(Self {
            device_code: Secret::new(device_code),
            expires_in: Duration::from_secs(secs("expires_in").unwrap_or(900).min(3600)),
            interval: Duration::from_secs(secs("interval").unwrap_or(5).clamp(0, 60)),
            user_code,
            verification_uri,
            message,
        })
    }
}

/// One poll of a device-code sign-in.
#[derive(Debug)]
pub enum DevicePoll {
    /// The person has not finished yet.
    Pending,
    /// Polling too fast: wait longer from now on.
    SlowDown,
    SignedIn(Box<TokenResponse>),
}

/// A cheap-to-clone Entra ID v2 client bound to one authority host.
#[derive(Clone)]
pub struct EntraClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    authority_host: Url,
}

impl EntraClient {
    /// Builds the HTTP client. Reads `ca_file` now (once, at start-up).
    pub fn new(settings: HttpSettings) -> Result<Self, SetupError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .user_agent(USER_AGENT);
        if let Some(path) = &settings.ca_file {
            builder = builder.tls_certs_merge(read_ca_file(path)?);
        }
        if is_loopback_url(&settings.authority_host) {
            // A loopback authority (tests, the offline demo) must never be sent to a proxy from
            // HTTPS_PROXY/ALL_PROXY. Otherwise reqwest honours the proxy environment variables.
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| SetupError::HttpClient {
            reason: innermost_cause(&e).unwrap_or_else(|| "unknown error".to_owned()),
        })?;
        Ok(Self { inner: Arc::new(Inner { http, authority_host: settings.authority_host }) })
    }

    /// The authority host this client talks to.
    pub fn authority_host(&self) -> &Url {
        &self.inner.authority_host
    }

    /// `{authority_host}/{tenant}/oauth2/v2.0/token` (also the `aud` of client assertions).
    pub fn token_endpoint(&self, tenant: &TenantId) -> Url {
        self.tenant_url(tenant, &["oauth2", "v2.0", "token"])
    }

    /// The client-credentials grant (service principals): `scope` is sent verbatim, typically
    /// `resource + "/.default"`.
    pub async fn client_credentials(
        &self,
        tenant: &TenantId,
        client_id: &str,
        credential: &ClientCredential,
        scope: &str,
    ) -> Result<TokenResponse, UpstreamError> {
        let mut form = vec![("grant_type", "client_credentials"), ("client_id", client_id), ("scope", scope)];
        push_credential(&mut form, credential);
        self.post_token(tenant, &form).await
    }

    /// Starts a device-code sign-in (PROTOCOLS.md §12.2). `scope` should include
    /// `offline_access` so that the answer carries a refresh token.
    pub async fn device_code(
        &self,
        tenant: &TenantId,
        client_id: &str,
        scope: &str,
    ) -> Result<DeviceCode, UpstreamError> {
        let url = self.tenant_url(tenant, &["oauth2", "v2.0", "devicecode"]);
        let form = [("client_id", client_id), ("scope", scope)];
        let body = self.post_form(url, tenant, &form).await?;
        DeviceCode::from_json(&body)
    }

    /// One poll of a device-code sign-in. `authorization_pending` and `slow_down` are answers,
    /// not errors; `authorization_declined`, `expired_token` and the rest are errors.
    pub async fn poll_device_code(
        &self,
        tenant: &TenantId,
        client_id: &str,
        device_code: &Secret,
    ) -> Result<DevicePoll, UpstreamError> {
        let form = [
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", client_id),
            ("device_code", device_code.expose()),
        ];
        match self.post_token(tenant, &form).await {
            Ok(response) => Ok(DevicePoll::SignedIn(Box::new(response))),
            Err(UpstreamError::Refused { error, .. }) if error == "authorization_pending" => {
                Ok(DevicePoll::Pending)
            }
            Err(UpstreamError::Refused { error, .. }) if error == "slow_down" => Ok(DevicePoll::SlowDown),
            Err(e) => Err(e),
        }
    }

    /// Redeems a user's refresh token in `tenant` (any tenant the user can reach, §12.3). The
    /// answer usually carries a new refresh token, which the caller must keep.
    pub async fn refresh_token(
        &self,
        tenant: &TenantId,
        client_id: &str,
        refresh_token: &Secret,
        scope: &str,
    ) -> Result<TokenResponse, UpstreamError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token.expose()),
            ("scope", scope),
            ("client_info", "1"),
        ];
        self.post_token(tenant, &form).await
    }

    /// The authorize URL of a browser sign-in with PKCE (S256).
    pub fn authorize_url(&self, tenant: &TenantId, request: &AuthorizeRequest<'_>) -> Url {
        let mut url = self.tenant_url(tenant, &["oauth2", "v2.0", "authorize"]);
        url.query_pairs_mut()
            .append_pair("client_id", request.client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", request.redirect_uri)
            .append_pair("response_mode", "query")
            .append_pair("scope", request.scope)
            .append_pair("state", request.state)
            .append_pair("code_challenge", request.code_challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("prompt", "select_account");
        url
    }

    /// Redeems the authorization code of a browser sign-in.
    pub async fn authorization_code(
        &self,
        tenant: &TenantId,
        client_id: &str,
        code: &Secret,
        redirect_uri: &str,
        code_verifier: &Secret,
        scope: &str,
    ) -> Result<TokenResponse, UpstreamError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code.expose()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier.expose()),
            ("scope", scope),
            ("client_info", "1"),
        ];
        self.post_token(tenant, &form).await
    }

    /// `{authority_host}/{tenant}/{segments...}`, keeping any path prefix of the authority host.
    fn tenant_url(&self, tenant: &TenantId, segments: &[&str]) -> Url {
        let mut url = self.inner.authority_host.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push(tenant.as_str()).extend(segments);
        }
        url
    }

    /// POSTs `form` to the tenant's token endpoint and maps the answer. Every grant uses this.
    async fn post_token(
        &self,
        tenant: &TenantId,
        form: &[(&str, &str)],
    ) -> Result<TokenResponse, UpstreamError> {
        let body = self.post_form(self.token_endpoint(tenant), tenant, form).await?;
        TokenResponse::from_json(&body)
    }

    /// POSTs a form to an Entra endpoint: logging, body bound, secret scrubbing, error mapping.
    /// Returns the body of a 2xx answer.
    async fn post_form(
        &self,
        url: Url,
        tenant: &TenantId,
        form: &[(&str, &str)],
    ) -> Result<Vec<u8>, UpstreamError> {
        let grant = form_value(form, "grant_type").unwrap_or("unknown");
        let scope = form_value(form, "scope").unwrap_or("");
        let secrets: Vec<&str> =
            form.iter().filter(|(k, _)| SECRET_FORM_FIELDS.contains(k)).map(|(_, v)| *v).collect();
        let started = Instant::now();
        let request = self.inner.http.post(url).header(ACCEPT, "application/json").form(form);
        let (status, result) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (Some(status), read_ok_body(response, &secrets).await)
            }
            Err(e) => (None, Err(map_transport(&e))),
        };
        tracing::debug!(
            tenant = %tenant,
            grant,
            scope,
            status,
            latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            outcome = result.as_ref().map_or_else(UpstreamError::kind, |_| "ok"),
            "entra token request"
        );
        result
    }
}

impl fmt::Debug for EntraClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraClient").field("authority_host", &self.inner.authority_host.as_str()).finish()
    }
}

/// Adds the client authentication fields for `credential` to a token form.
fn push_credential<'a>(form: &mut Vec<(&'static str, &'a str)>, credential: &'a ClientCredential) {
    match credential {
        ClientCredential::Secret(secret) => form.push(("client_secret", secret.expose())),
        ClientCredential::Assertion(assertion) => {
            form.push(("client_assertion_type", JWT_BEARER_ASSERTION));
            form.push(("client_assertion", assertion.expose()));
        }
    }
}

/// Maps a response: 429/5xx without reading the body, otherwise a bounded read; the body of a
/// 2xx answer is returned for the caller to parse.
async fn read_ok_body(response: reqwest::Response, secrets: &[&str]) -> Result<Vec<u8>, UpstreamError> {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    if status == 429 || (500..=599).contains(&status) {
        return Err(map_error_response(status, retry_after, &[], secrets));
    }
    let body = read_bounded(response).await?;
    if (200..=299).contains(&status) {
        Ok(body)
    } else {
        Err(map_error_response(status, retry_after, &body, secrets))
    }
}

/// Reads the body, refusing more than [`MAX_RESPONSE_BYTES`].
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, UpstreamError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| map_transport(&e))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(UpstreamError::BadResponse(format!(
                "response body is larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn form_value<'a>(form: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// Loads the extra CA roots, naming the file in every error.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, SetupError> {
    let pem =
        std::fs::read(path).map_err(|error| SetupError::CaFileUnreadable { path: path.to_owned(), error })?;
    let invalid = |reason: String| SetupError::CaFileInvalid { path: path.to_owned(), reason };
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| invalid(innermost_cause(&e).unwrap_or_else(|| "malformed PEM".to_owned())))?;
    if certs.is_empty() {
        return Err(invalid("no '-----BEGIN CERTIFICATE-----' block found".to_owned()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(authority: &str) -> EntraClient {
        let url = crate::parse_authority_host(authority).unwrap();
        EntraClient::new(HttpSettings::new(url)).unwrap()
    }

    #[test]
    fn token_endpoint_shapes() {
        let tenant = TenantId::parse("Contoso.onmicrosoft.com").unwrap();
        let cases = [
            (
                "https://login.microsoftonline.com",
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
            ),
            (
                "https://login.microsoftonline.com/",
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
            ),
            (
                "http://127.0.0.1:9/prefix/",
                "http://127.0.0.1:9/prefix/contoso.onmicrosoft.com/oauth2/v2.0/token",
            ),
        ];
        for (authority, want) in cases {
            assert_eq!(client(authority).token_endpoint(&tenant).as_str(), want);
        }
    }

    #[test]
    fn settings_defaults() {
        let s = HttpSettings::new(Url::parse("https://login.microsoftonline.com").unwrap());
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert_eq!(s.connect_timeout, Duration::from_secs(10));
        assert_eq!(s.ca_file, None);
    }

    #[test]
    fn credential_fields() {
        let secret = ClientCredential::Secret(Secret::new("pw"));
        let mut form = vec![("grant_type", "client_credentials")];
        push_credential(&mut form, &secret);
        assert_eq!(form, vec![("grant_type", "client_credentials"), ("client_secret", "pw")]);
        let assertion = ClientCredential::Assertion(Secret::new("jwt"));
        let mut form = Vec::new();
        push_credential(&mut form, &assertion);
        assert_eq!(form, vec![("client_assertion_type", JWT_BEARER_ASSERTION), ("client_assertion", "jwt")]);
        assert!(!format!("{secret:?}{assertion:?}").contains("pw"));
        assert!(!format!("{assertion:?}").contains("jwt"));
    }
}
