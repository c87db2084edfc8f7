//! Service principals — the client-credentials grant with a secret, a certificate assertion or
//! a federated token: the `service-principal` and `workload-identity` [`TokenSource`]s.
//!
//! The secret may be inline (from config) or a file; files (secret, certificate, token) are
//! re-read on every fetch, so rotating them on disk needs no restart. Their contents never appear
//! in an error or a log line.

use std::path::PathBuf;

use azbroker_core::{AccessToken, BoxFuture, FetchRequest, Secret, TokenSource, UpstreamError};
use zeroize::Zeroizing;

use crate::assertion;
use crate::client::{ClientCredential, EntraClient};

/// Where a client secret comes from. `Debug` shows the path, never the secret.
#[derive(Debug, Clone)]
pub enum SecretRef {
    /// The secret itself.
    Inline(Secret),
    /// A file holding the secret; re-read on every fetch, trailing newlines trimmed.
    File(PathBuf),
}

impl SecretRef {
    /// The current secret. File errors are `UpstreamError::Config` naming the path and the I/O
    /// error kind.
    pub async fn resolve(&self) -> Result<Secret, UpstreamError> {
        match self {
            Self::Inline(secret) => Ok(secret.clone()),
            Self::File(path) => read_secret_file(path).await,
        }
    }
}

/// How a service principal proves itself.
#[derive(Debug, Clone)]
pub enum Credential {
    Secret(SecretRef),
    /// A PEM file with the certificate (chain) and its RSA key; `send_chain` adds `x5c`.
    Certificate {
        path: PathBuf,
        send_chain: bool,
    },
    /// Workload identity federation: a token file from another issuer.
    FederatedTokenFile(PathBuf),
}

/// A service principal (client credentials grant).
#[derive(Debug)]
pub struct ServicePrincipalSource {
    client: EntraClient,
    client_id: String,
    credential: Credential,
}

impl ServicePrincipalSource {
    /// A service principal with a client secret.
    pub fn new(client: EntraClient, client_id: String, secret: SecretRef) -> Self {
        Self::with_credential(client, client_id, Credential::Secret(secret))
    }

    pub fn with_credential(client: EntraClient, client_id: String, credential: Credential) -> Self {
        Self { client, client_id, credential }
    }
}

impl TokenSource for ServicePrincipalSource {
    fn fetch<'a>(&'a self, request: &'a FetchRequest) -> BoxFuture<'a, Result<AccessToken, UpstreamError>> {
        Box::pin(async move {
            let credential = match &self.credential {
                Credential::Secret(secret) => ClientCredential::Secret(secret.resolve().await?),
                Credential::Certificate { path, send_chain } => {
                    let audience = self.client.token_endpoint(&request.tenant);
                    let assertion = assertion::certificate_assertion(
                        path,
                        &self.client_id,
                        audience.as_str(),
                        *send_chain,
                    );
                    ClientCredential::Assertion(assertion.await?)
                }
                Credential::FederatedTokenFile(path) => {
                    ClientCredential::Assertion(assertion::read_token_file(path).await?)
                }
            };
            let scope = request.resource.scope();
            let response =
                self.client.client_credentials(&request.tenant, &self.client_id, &credential, &scope).await?;
            Ok(response.into_access_token())
        })
    }

    fn client_id(&self) -> Option<&str> {
        Some(&self.client_id)
    }

    fn kind(&self) -> &'static str {
        match self.credential {
            Credential::FederatedTokenFile(_) => "workload-identity",
            _ => "service-principal",
        }
    }
}

async fn read_secret_file(path: &std::path::Path) -> Result<Secret, UpstreamError> {
    let shown = path.display();
    let bytes = Zeroizing::new(tokio::fs::read(path).await.map_err(|e| {
        UpstreamError::Config(format!("cannot read client_secret_file {shown}: {}", e.kind()))
    })?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| UpstreamError::Config(format!("client_secret_file {shown} is not UTF-8 text")))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(UpstreamError::Config(format!("client_secret_file {shown} is empty")));
    }
    Ok(Secret::new(secret))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[tokio::test]
    async fn file_secret_trims_trailing_newlines_only() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b" s3cret value \r\n\n").unwrap();
        let secret = SecretRef::File(file.path().to_owned()).resolve().await.unwrap();
        assert_eq!(secret.expose(), " s3cret value ");
    }

    #[tokio::test]
    async fn file_errors_name_the_path_not_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = SecretRef::File(missing.clone()).resolve().await.unwrap_err();
        assert_eq!(err.kind(), "config");
        let text = err.to_string();
        assert!(text.contains("cannot read client_secret_file"), "{text}");
        assert!(text.contains(&missing.display().to_string()), "{text}");
        assert!(text.contains("not found"), "{text}");

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let text = SecretRef::File(empty).resolve().await.unwrap_err().to_string();
        assert!(text.contains("is empty"), "{text}");

        let binary = dir.path().join("binary");
        std::fs::write(&binary, [0xff, 0xfe, b'x']).unwrap();
        let text = SecretRef::File(binary).resolve().await.unwrap_err().to_string();
        assert!(text.contains("not UTF-8"), "{text}");

        let text = SecretRef::File(dir.path().to_owned()).resolve().await.unwrap_err().to_string();
        assert!(text.contains("cannot read client_secret_file"), "{text}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let inline = SecretRef::Inline(Secret::new("inline-s3cret"));
        assert!(!format!("{inline:?}").contains("inline-s3cret"));
    }
}
