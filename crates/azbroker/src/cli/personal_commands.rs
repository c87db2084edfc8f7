//! `azbroker workspace ...` and `token --profile` for a local user of a shared machine (the CLI
//! talks to root's daemon, `self_service`): personal workspaces live in the daemon's state, not
//! in any config file, and are private to the user (`/v1/self/workspaces`).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use azbroker_core::admin_api::{PersonalWorkspace, WorkspaceRemoved, WorkspaceRequest};

use crate::cli::admin_client::AdminClient;
use crate::cli::args::WorkspaceCommand;
use crate::config::Config;

const PATH: &str = "/v1/self/workspaces";

/// Runs a `workspace` subcommand against the caller's personal workspaces.
pub async fn workspace(client: &AdminClient, command: &WorkspaceCommand) -> Result<ExitCode> {
    match command {
        WorkspaceCommand::Add(args) => {
            let request = WorkspaceRequest {
                name: args.name.clone(),
                subscription_id: args.subscription.clone(),
                resource_group: args.resource_group.clone(),
                workspace_name: args.workspace.clone(),
                tenant: args.tenant.clone(),
            };
            if args.login.is_some() {
                bail!("--login names a configured login; a personal workspace always uses your own sign-in");
            }
            let added: PersonalWorkspace = match client.post(PATH, &request).await? {
                Ok(w) => w,
                Err(refused) => bail!("the daemon did not add the workspace: {refused}"),
            };
            println!(
                "Added your personal workspace '{}' (tenant {}); request it as profile '{}' (/p/{}/...).",
                added.name, added.tenant, added.name, added.name
            );
        }
        WorkspaceCommand::List => {
            let list = mine(client).await?;
            if list.is_empty() {
                println!("you have no personal workspaces; add one with `azbroker workspace add`");
            }
            for w in list {
                println!(
                    "{:<16} {:<38} {:<20} {:<20} {}",
                    w.name, w.subscription_id, w.resource_group, w.workspace_name, w.tenant
                );
            }
        }
        WorkspaceCommand::Config { name } => {
            let list = mine(client).await?;
            let w = list.iter().find(|w| w.name == name.to_ascii_lowercase()).with_context(|| {
                format!("you have no personal workspace '{name}' (`azbroker workspace list`)")
            })?;
            let json = serde_json::json!({
                "subscription_id": w.subscription_id,
                "resource_group": w.resource_group,
                "workspace_name": w.workspace_name,
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        WorkspaceCommand::Remove { name } => {
            let answer: WorkspaceRemoved = match client.delete(&format!("{PATH}/{name}")).await? {
                Ok(a) => a,
                Err(refused) => bail!("the daemon did not remove the workspace: {refused}"),
            };
            if answer.removed {
                println!("Removed your personal workspace '{name}'.");
            } else {
                println!("You have no personal workspace '{name}'.");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn mine(client: &AdminClient) -> Result<Vec<PersonalWorkspace>> {
    match client.get(PATH).await? {
        Ok(list) => Ok(list),
        Err(refused) => bail!("{refused}"),
    }
}

/// For `token --profile NAME` on a shared machine: a name that is not a configured profile is
/// one of the caller's personal profiles, reached with a `/p/NAME` prefix on the daemon's first
/// listener (`token` keeps the path; the daemon resolves the name for the caller's uid only).
pub fn personal_base_url(config: &Config, profile: Option<&str>) -> Option<String> {
    let p = profile?;
    if config.profiles.keys().any(|k| k.as_str() == p) || !AdminClient::new(config).is_self_service() {
        return None;
    }
    let addr = config.server.listen.first()?;
    Some(format!("http://{addr}/p/{p}"))
}
