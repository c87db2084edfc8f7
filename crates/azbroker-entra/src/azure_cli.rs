//! The `azure-cli` source: delegates to `az account get-access-token --scope S [--tenant T] -o
//! json`, bounded by a timeout (the process is killed when it runs over). The engine's cache sits
//! in front, so `az` runs once per token lifetime, not once per request.
//!
//! `az` is run directly (no shell), with the daemon's environment. What it prints on failure is
//! shown to clients only as its first line, bounded.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use azbroker_core::{AccessToken, BoxFuture, FetchRequest, Secret, TokenSource, UpstreamError, unix_now};
use zeroize::Zeroizing;

use crate::error_map::truncate_chars;

/// Largest output read from `az`.
const MAX_OUTPUT: usize = 256 * 1024;

/// Tokens from the Azure CLI's own login.
#[derive(Debug)]
pub struct AzureCliSource {
    command: PathBuf,
    timeout: Duration,
}

impl AzureCliSource {
    pub fn new(command: PathBuf, timeout: Duration) -> Self {
        Self { command, timeout }
    }

    async fn run(&self, request: &FetchRequest) -> Result<AccessToken, UpstreamError> {
        let mut cmd = tokio::process::Command::new(&self.command);
        cmd.args(["account", "get-access-token", "--output", "json", "--scope"])
            .arg(request.resource.scope());
        // Multi-tenant authorities mean "az's own default tenant".
        if !matches!(request.tenant.as_str(), "organizations" | "common") {
            cmd.args(["--tenant", request.tenant.as_str()]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let shown = self.command.display();
        let child = cmd.spawn().map_err(|e| {
            UpstreamError::Config(if e.kind() == std::io::ErrorKind::NotFound {
                format!("'{shown}' was not found: install the Azure CLI or set the login's command")
            } else {
                format!("cannot run '{shown}': {e}")
            })
        })?;
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(UpstreamError::Network(format!("'{shown}' failed: {e}"))),
            Err(_) => return Err(UpstreamError::Timeout),
        };
        let stdout = Zeroizing::new(output.stdout);
        if !output.status.success() {
            let stderr =
                String::from_utf8_lossy(&output.stderr[..output.stderr.len().min(MAX_OUTPUT)]).into_owned();
            let first = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no message");
            let first = truncate_chars(first.trim_start_matches("ERROR:").trim().to_owned(), 300);
            return Err(UpstreamError::Refused {
                error: "azure_cli".into(),
                codes: vec![],
                description: format!("`az account get-access-token` failed ({}): {first}", output.status),
            });
        }
        parse_output(&stdout)
    }
}

impl TokenSource for AzureCliSource {
    fn fetch<'a>(&'a self, request: &'a FetchRequest) -> BoxFuture<'a, Result<AccessToken, UpstreamError>> {
        Box::pin(self.run(request))
    }

    fn kind(&self) -> &'static str {
        "azure-cli"
    }
}

/// `{"accessToken": ..., "expires_on": 1700000000, ...}` (az ≥ 2.54 writes `expires_on`).
fn parse_output(stdout: &[u8]) -> Result<AccessToken, UpstreamError> {
    let bad = |what: &str| UpstreamError::BadResponse(format!("az output: {what}"));
    if stdout.len() > MAX_OUTPUT {
        return Err(bad("too large"));
    }
    let v: serde_json::Value = serde_json::from_slice(stdout).map_err(|_| bad("not JSON"))?;
    let token = v
        .get("accessToken")
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("no accessToken"))?;
    let expires_on = v
        .get("expires_on")
        .and_then(|e| e.as_u64().or_else(|| e.as_str().and_then(|s| s.trim().parse().ok())))
        .ok_or_else(|| bad("no expires_on (Azure CLI 2.54 or later is needed)"))?;
    let now = unix_now();
    if expires_on <= now {
        return Err(bad("the token has already expired"));
    }
    Ok(AccessToken::new(Secret::new(token), Duration::from_secs(expires_on - now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_az_output() {
        let later = unix_now() + 3000;
        let out = format!(
            r#"{{"accessToken":"tok","expiresOn":"2030-01-01 00:00:00.000000","expires_on":{later},"tokenType":"Bearer"}}"#
        );
        let t = parse_output(out.as_bytes()).unwrap();
        assert_eq!(t.secret().expose(), "tok");
        let out = format!(r#"{{"accessToken":"tok","expires_on":"{later}"}}"#);
        assert!(parse_output(out.as_bytes()).is_ok());
        assert!(parse_output(br#"{"accessToken":"tok"}"#).unwrap_err().to_string().contains("2.54"));
        assert!(parse_output(b"not json").is_err());
    }
}
