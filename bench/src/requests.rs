//! The token requests the benchmarks send, exactly as managed-identity clients send them: the
//! IMDS and App Service dialects' paths (resource percent-encoded) and headers.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};

use crate::loadgen::{RandomKeys, Target};
use crate::procs::IDENTITY_HEADER;

/// The resource every cache-hit benchmark asks for.
pub const HIT_RESOURCE: &str = "https://management.azure.com/";

/// A managed-identity dialect the daemon serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Imds,
    AppService,
}

impl Dialect {
    /// `/path?query` for `resource`.
    pub fn path(self, resource: &str) -> String {
        format!("{}{}", self.prefix(), encode(resource))
    }

    /// Everything before the encoded resource.
    pub fn prefix(self) -> &'static str {
        match self {
            Dialect::Imds => "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=",
            Dialect::AppService => "/msi/token?api-version=2019-08-01&resource=",
        }
    }

    pub fn headers(self) -> Vec<(String, String)> {
        match self {
            Dialect::Imds => vec![("Metadata".into(), "true".into())],
            Dialect::AppService => vec![("X-IDENTITY-HEADER".into(), IDENTITY_HEADER.into())],
        }
    }

    pub fn target(self, addr: SocketAddr, resource: &str) -> Target {
        Target { url: format!("http://{addr}{}", self.path(resource)), headers: self.headers() }
    }
}

/// Resource number `i` of a key family: `https://{family}{i:0width}.bench.test/`.
pub fn keyed_resource(family: &str, i: u64, width: usize) -> String {
    format!("https://{family}{i:0width$}.bench.test/")
}

/// wrk's random-key settings for the family [`keyed_resource`] names.
pub fn random_keys(dialect: Dialect, family: &str, keys: u64, width: usize) -> RandomKeys {
    RandomKeys {
        keys,
        prefix: format!("{}{}", dialect.prefix(), encode(&format!("https://{family}"))),
        suffix: encode(".bench.test/"),
        width,
    }
}

/// Percent-encodes a query value the way clients do (`application/x-www-form-urlencoded`).
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A client for the benchmark's own requests: loopback only, never through a proxy.
pub fn client(max_idle: usize) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(max_idle)
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .context("build HTTP client")
}

/// GETs a token; the body on 200, an error otherwise.
pub async fn get_token(
    client: &reqwest::Client,
    addr: SocketAddr,
    dialect: Dialect,
    resource: &str,
) -> Result<Vec<u8>> {
    let mut req = client.get(format!("http://{addr}{}", dialect.path(resource)));
    for (k, v) in dialect.headers() {
        req = req.header(k, v);
    }
    let resp = req.send().await.with_context(|| format!("GET token for {resource}"))?;
    let status = resp.status();
    let body = resp.bytes().await?.to_vec();
    if !status.is_success() {
        bail!("token request for {resource} answered {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_carry_the_encoded_resource() {
        assert_eq!(
            Dialect::Imds.path(HIT_RESOURCE),
            "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F"
        );
        assert!(Dialect::AppService.path("x").starts_with("/msi/token?"));
    }

    #[test]
    fn random_keys_rebuild_the_keyed_resource() {
        let k = random_keys(Dialect::Imds, "r", 100, 6);
        let built = format!("{}{:06}{}", k.prefix, 42, k.suffix);
        assert_eq!(built, Dialect::Imds.path(&keyed_resource("r", 42, 6)));
    }
}
