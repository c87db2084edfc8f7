//! `azbroker refresh [--profile P] [--resource R]`: asks the running daemon for fresh upstream
//! tokens (`POST /v1/refresh`) and prints one line per entry. Exit status 1 if any failed.

use std::process::ExitCode;

use anyhow::{Result, bail};
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::cli::admin_client::AdminClient;
use crate::cli::args::RefreshArgs;
use crate::config::Config;

pub async fn run(config: &Config, args: &RefreshArgs) -> Result<ExitCode> {
    let body = json!({"profile": args.profile, "resource": args.resource});
    let (code, answer) = AdminClient::new(config).post("/v1/refresh", Some(&body)).await?;
    if code != StatusCode::OK {
        let why = answer.get("error_description").and_then(Value::as_str).unwrap_or("no reason given");
        bail!("the daemon refused ({code}): {why}");
    }
    let lines = answer["refreshed"].as_array().map(Vec::as_slice).unwrap_or_default();
    if lines.is_empty() {
        println!(
            "nothing cached matches; nothing to refresh (give --profile and --resource to fetch a new pair)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = 0;
    for l in lines {
        let (profile, resource) =
            (l["profile"].as_str().unwrap_or("-"), l["resource"].as_str().unwrap_or("-"));
        if l["ok"].as_bool() == Some(true) {
            let secs = l["expires_in_secs"].as_u64().unwrap_or(0);
            let left = humantime::format_duration(std::time::Duration::from_secs(secs));
            println!(
                "refreshed  {profile:<16} {resource:<44} token {} expires in {left}",
                l["token_hash"].as_str().unwrap_or("-")
            );
        } else {
            failed += 1;
            println!(
                "FAILED     {profile:<16} {resource:<44} {}",
                l["error"].as_str().unwrap_or("unknown error")
            );
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
