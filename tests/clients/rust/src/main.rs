//! Gets one managed-identity token with the real Rust `azure_identity` 1.x
//! `ManagedIdentityCredential` and reports it as one JSON line, like the Python and Node clients:
//!
//!   mi-client --resource R [--client-id ID] [--timeout SECONDS] [--allow-non-loopback]
//!
//! `{"ok":true,"client":"rust-identity-mi","tid":..,"aud":..,"oid":..,"expires_on":N}` (exit 0) or
//! `{"ok":false,"client":"rust-identity-mi","error":".."}` (exit 1). The token is never printed.
//! Configuration comes only from the environment (the credential reads `IDENTITY_ENDPOINT` /
//! `IDENTITY_HEADER`, else uses IMDS at 169.254.169.254). Without `--allow-non-loopback` it refuses
//! to run unless the environment points it at a loopback App Service endpoint.

use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
use base64::Engine as _;
use serde_json::{Value, json};

const CLIENT: &str = "rust-identity-mi";

fn emit(v: Value) -> ! {
    let ok = v["ok"] == true;
    println!("{v}");
    std::process::exit(if ok { 0 } else { 1 })
}

fn fail(msg: impl std::fmt::Display) -> ! {
    let mut text = msg.to_string();
    text.truncate(4000);
    emit(json!({"ok": false, "client": CLIENT, "error": text}))
}

struct Args {
    resource: String,
    client_id: Option<String>,
    timeout: Duration,
    allow_non_loopback: bool,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let (mut resource, mut client_id, mut timeout, mut allow) = (None, None, 60.0_f64, false);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--resource" => resource = it.next(),
            "--client-id" => client_id = it.next(),
            "--timeout" => timeout = it.next().and_then(|t| t.parse().ok()).unwrap_or_else(|| fail("UsageError: --timeout SECONDS")),
            "--allow-non-loopback" => allow = true,
            "--client" => {
                it.next();
            }
            other => fail(format!("UsageError: unknown argument {other}")),
        }
    }
    let resource = resource.unwrap_or_else(|| fail("UsageError: --resource is required"));
    Args { resource, client_id, timeout: Duration::from_secs_f64(timeout), allow_non_loopback: allow }
}

/// Why this run would leave loopback, if it would.
fn non_loopback_reason() -> Option<String> {
    let Ok(endpoint) = std::env::var("IDENTITY_ENDPOINT") else {
        return Some("IDENTITY_ENDPOINT is not set, so the credential would call IMDS at 169.254.169.254".into());
    };
    let host = endpoint.split("://").nth(1).unwrap_or("").split(['/', ':']).next().unwrap_or("");
    let loopback = host == "localhost" || host.starts_with("127.") || endpoint.contains("://[::1]");
    (!loopback).then(|| format!("IDENTITY_ENDPOINT points at '{host}', not a loopback address"))
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap_or_else(|| fail("InvalidToken: not a JWT"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .unwrap_or_else(|e| fail(format!("InvalidToken: {e}")));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| fail(format!("InvalidToken: {e}")))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = args();
    if !args.allow_non_loopback {
        if let Some(reason) = non_loopback_reason() {
            fail(format!("Refused: {reason} (tests only talk to loopback; see --allow-non-loopback)"));
        }
    }
    let mut options = ManagedIdentityCredentialOptions::default();
    options.user_assigned_id = args.client_id.clone().map(UserAssignedId::ClientId);
    let credential = ManagedIdentityCredential::new(Some(options)).unwrap_or_else(|e| fail(format!("Error: {e}")));
    // Exactly resource + "/.default", no slash normalisation.
    let scope = format!("{}/.default", args.resource);
    let token = match tokio::time::timeout(args.timeout, credential.get_token(&[&scope], None)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => fail(format!("Error: {e}")),
        Err(_) => fail(format!("Timeout: no token within {} s", args.timeout.as_secs())),
    };
    let c = claims(token.token.secret());
    emit(json!({
        "ok": true,
        "client": CLIENT,
        "tid": c.get("tid"),
        "aud": c.get("aud"),
        "oid": c.get("oid"),
        "expires_on": token.expires_on.unix_timestamp(),
    }))
}
