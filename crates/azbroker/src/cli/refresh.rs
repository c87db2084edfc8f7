//! `azbroker refresh [--profile P] [--resource R]`: asks the running daemon for fresh upstream
//! tokens (`POST /v1/refresh`) and prints one line per entry. Exit status 1 if any failed.

use std::process::ExitCode;

use anyhow::{Result, bail};
use azbroker_core::admin_api::{RefreshAnswer, RefreshRequest};

use crate::cli::admin_client::AdminClient;
use crate::cli::args::RefreshArgs;
use crate::config::Config;

pub async fn run(config: &Config, args: &RefreshArgs) -> Result<ExitCode> {
    let request = RefreshRequest { profile: args.profile.clone(), resource: args.resource.clone() };
    let answer: RefreshAnswer = match AdminClient::new(config).post("/v1/refresh", &request).await? {
        Ok(a) => a,
        Err(refused) => bail!("the daemon refused ({}): {refused}", refused.status),
    };
    if answer.refreshed.is_empty() {
        println!(
            "nothing cached matches; nothing to refresh (give --profile and --resource to fetch a new pair)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = 0;
    for l in &answer.refreshed {
        let (profile, resource) = (&l.profile, &l.resource);
        if l.ok {
            let left =
                humantime::format_duration(std::time::Duration::from_secs(l.expires_in_secs.unwrap_or(0)));
            println!(
                "refreshed  {profile:<16} {resource:<44} token {} expires in {left}",
                l.token_hash.as_deref().unwrap_or("-")
            );
        } else {
            failed += 1;
            println!(
                "FAILED     {profile:<16} {resource:<44} {}",
                l.error.as_deref().unwrap_or("unknown error")
            );
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
