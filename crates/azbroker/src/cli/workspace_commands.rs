//! `azbroker workspace add | list | config`: Azure ML workspaces in the config file.
//!
//! `add` discovers the subscription's tenant from ARM's unauthenticated 401 challenge (unless
//! `--tenant` is given), writes a `[workspaces.NAME]` table into the config file with toml_edit —
//! comments and layout of the rest of the file are kept — after checking that the result is a
//! valid configuration, then asks the running daemon to reload. With no config file yet, it
//! creates one holding the built-in defaults plus the workspace.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use azbroker_core::admin_api::ReloadAnswer;
use azbroker_entra::ArmClient;
use toml_edit::{DocumentMut, Item, Table, value};

use crate::cli::admin_client::AdminClient;
use crate::cli::args::{WorkspaceAddArgs, WorkspaceCommand};
use crate::cli::login_commands::user_login;
use crate::config::{Config, Workspace};
use crate::paths;

/// The file `add` starts from when there is none.
const NEW_FILE: &str = "# azbroker configuration (see config/azbroker.example.toml for every key).\n\n\
[logins.me]\nkind = \"user\"   # sign in with `azbroker login`\n\n[profiles.me]\nlogin = \"me\"\n";

pub async fn run(config: &Config, command: &WorkspaceCommand) -> Result<ExitCode> {
    let client = AdminClient::new(config);
    if client.is_self_service() {
        return crate::cli::personal_commands::workspace(&client, command).await;
    }
    match command {
        WorkspaceCommand::Add(args) => add(config, args).await,
        WorkspaceCommand::List => {
            list(config);
            Ok(ExitCode::SUCCESS)
        }
        WorkspaceCommand::Config { name } => {
            let ws = find(config, name)?;
            println!("{}", serde_json::to_string_pretty(&ws.azureml_config())?);
            Ok(ExitCode::SUCCESS)
        }
        WorkspaceCommand::Remove { name } => {
            find(config, name)?;
            bail!(
                "workspace '{name}' is part of the config file: remove its [workspaces.{name}] table there, \
                 then `azbroker reload`"
            )
        }
    }
}

fn find<'a>(config: &'a Config, name: &str) -> Result<&'a Workspace> {
    config.workspaces.values().find(|w| w.name.as_str() == name).with_context(|| {
        let names: Vec<&str> = config.workspaces.keys().map(|k| k.as_str()).collect();
        format!(
            "workspace '{name}' is not configured (configured: {})",
            if names.is_empty() { "none".into() } else { names.join(", ") }
        )
    })
}

fn list(config: &Config) {
    if config.workspaces.is_empty() {
        println!("no workspaces configured; add one with `azbroker workspace add`");
        return;
    }
    println!(
        "{:<16} {:<38} {:<20} {:<20} {:<12} TENANT",
        "NAME", "SUBSCRIPTION", "RESOURCE GROUP", "WORKSPACE", "LOGIN"
    );
    for w in config.workspaces.values() {
        println!(
            "{:<16} {:<38} {:<20} {:<20} {:<12} {}",
            w.name, w.subscription_id, w.resource_group, w.workspace_name, w.login, w.tenant
        );
    }
}

async fn add(config: &Config, args: &WorkspaceAddArgs) -> Result<ExitCode> {
    let login = match &args.login {
        Some(l) => l.clone(),
        None => user_login(config, None).context("pick the login with --login")?,
    };
    if !config.logins.keys().any(|k| k.as_str() == login) {
        bail!("login '{login}' is not configured");
    }
    let subscription =
        crate::config::workspaces_subscription_id(&args.subscription).map_err(anyhow::Error::msg)?;
    let tenant = match &args.tenant {
        Some(t) => t.clone(),
        None => {
            // The daemon's ARM: under `--local-authority` the local authority's own, so this
            // works offline.
            let (_, endpoint) = crate::cli::admin_client::endpoints_in_use(config).await;
            let arm = ArmClient::new(endpoint.clone()).map_err(anyhow::Error::msg)?;
            let tenant = arm.discover_tenant(&subscription).await.with_context(|| {
                format!("cannot discover the tenant of subscription {subscription} from {endpoint}")
            })?;
            println!("Subscription {subscription} is in tenant {tenant}.");
            tenant
        }
    };
    let path = config.origin.clone().unwrap_or_else(paths::default_config_file);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && config.origin.is_none() => NEW_FILE.to_owned(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        anyhow::anyhow!(
            "{}: {}",
            path.display(),
            crate::config::redact::syntax_error(&text, e.message(), e.span())
        )
    })?;
    let workspaces = doc.entry("workspaces").or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    let Some(workspaces) = workspaces.as_table_mut() else {
        bail!("`workspaces` in {} is not a table", path.display())
    };
    let replaced = workspaces.contains_key(&args.name);
    let mut entry = Table::new();
    entry.insert("subscription_id", value(&subscription));
    entry.insert("resource_group", value(&args.resource_group));
    entry.insert("workspace_name", value(&args.workspace));
    entry.insert("login", value(&login));
    entry.insert("tenant", value(&tenant));
    workspaces.insert(&args.name, Item::Table(entry));
    let updated = doc.to_string();
    // Never write a file the daemon would reject.
    Config::parse(&updated, Some(path.clone()))
        .map_err(|e| anyhow::anyhow!("the workspace cannot be added: {e}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_keeping_mode(&path, updated.as_bytes())?;
    println!(
        "{} workspace '{}' in {} (login '{login}', tenant {tenant}).",
        if replaced { "Updated" } else { "Added" },
        args.name,
        path.display()
    );
    reload(config).await;
    println!(
        "Use it like a profile: `azbroker env --profile {0}` or `azbroker run --profile {0} -- CMD`; \
         `azbroker workspace config {0} > config.json` for Workspace.from_config().",
        args.name
    );
    Ok(ExitCode::SUCCESS)
}

/// Asks a running daemon to reload; explains when there is none.
async fn reload(config: &Config) {
    match AdminClient::new(config).reload().await {
        Ok(ReloadAnswer::Reloaded(_)) => println!("The daemon reloaded its config."),
        Ok(ReloadAnswer::Rejected(rejected)) => {
            eprintln!("The daemon rejected the new config: {}", rejected.problems.join("; "));
        }
        Err(e) => {
            println!("No running daemon was reloaded ({e:#}); `azbroker serve` will use the new entry.")
        }
    }
}

/// Replaces `path` atomically, keeping its permissions (0600 for a new file).
fn write_keeping_mode(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o600);
    azbroker_entra::store::write_private(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}
