//! What users do today, timed per token in the same run: `az account get-access-token` (a CLI
//! process per token), Python's `AzureCliCredential` (which spawns that same command), and a
//! Python client through the broker (`ManagedIdentityCredential` on the App Service dialect, and
//! a plain HTTP GET), each in a cold process and in a warm one.
//!
//! azure-cli runs against an offline configuration seeded by `bench/python/seed_az.py`: azure-cli
//! itself logs a service principal in against the testkit, so the measured commands find a warm
//! login exactly as a user's machine has it and need no network. Every Python and az process
//! gets a proxy on a closed loopback port, so a request meant for anywhere else fails at once
//! instead of leaving the machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::procs::{CLIENT_ID, CLIENT_SECRET, Daemon, IDENTITY_HEADER, TENANT};
use crate::requests::HIT_RESOURCE;
use crate::stats::median;

/// Method names, as the report shows them.
pub const AZ_CLI: &str = "az account get-access-token";
pub const CLI_CRED_COLD: &str = "AzureCliCredential, cold process";
pub const MI_COLD: &str = "ManagedIdentityCredential via azbroker, cold process";
pub const CLI_CRED_WARM: &str = "AzureCliCredential, warm process";
pub const MI_WARM: &str = "ManagedIdentityCredential via azbroker, warm process";
pub const HTTP_WARM: &str = "HTTP GET via azbroker (requests), warm process";

#[derive(Debug, Clone, Serialize)]
pub struct TodayResults {
    pub versions: String,
    /// True when `az account get-access-token` ran against the seeded login; false when only
    /// its start-up floor (`az account list`, which needs no login) could be measured.
    pub az_full_command: bool,
    pub methods: Vec<Method>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Method {
    pub name: String,
    /// Per-token wall time of each round (ms): a whole process for cold methods, the median
    /// call of the round for warm ones.
    pub runs_ms: Vec<f64>,
    pub median_ms: f64,
}

impl TodayResults {
    pub fn median_of(&self, name: &str) -> Option<f64> {
        self.methods.iter().find(|m| m.name == name).map(|m| m.median_ms)
    }
}

pub fn run(ctx: &Ctx, daemon: &Daemon) -> Result<TodayResults> {
    let venv = ctx.root.join("bench/.venv/bin");
    let python = venv.join("python");
    let az = venv.join("az");
    if !python.is_file() || !az.is_file() {
        bail!("{} has no python/az: bench/run installs them (bench/requirements.txt)", venv.display());
    }
    let scripts = ctx.root.join("bench/python");
    let env = Env {
        config_dir: ctx.work.path().join("azure"),
        identity_endpoint: daemon.url("/msi/token"),
        venv: venv.clone(),
    };
    std::fs::create_dir_all(&env.config_dir)?;
    let versions = output_text(env.command(&python).args([
        "-c",
        "import importlib.metadata as m, sys; print('Python %s, azure-cli %s, azure-identity %s, msal %s' % \
         (sys.version.split()[0], m.version('azure-cli'), m.version('azure-identity'), m.version('msal')))",
    ]))?;
    ctx.say(format!("today: {}", versions.trim()));

    let seeded = output_text(env.command(&python).arg(scripts.join("seed_az.py")).args([
        &ctx.authority.entra.url(),
        TENANT,
        CLIENT_ID,
        CLIENT_SECRET,
        HIT_RESOURCE,
    ]));
    let az_full_command = match seeded.and_then(|_| az_token(&env, &az)) {
        Ok(token) => {
            ctx.authority
                .entra
                .verify(&token)
                .map_err(anyhow::Error::msg)
                .context("az returned a bad token")?;
            true
        }
        Err(e) => {
            ctx.say(format!(
                "today: az get-access-token does not work offline here ({e:#}); timing its floor"
            ));
            false
        }
    };
    let today_py = scripts.join("today.py");
    let warm_calls = ctx.plan.warm_calls.to_string();
    let mut methods: Vec<Method> = [AZ_CLI, CLI_CRED_COLD, MI_COLD, CLI_CRED_WARM, MI_WARM, HTTP_WARM]
        .iter()
        .map(|n| Method { name: (*n).into(), runs_ms: vec![], median_ms: f64::NAN })
        .collect();
    for round in 1..=ctx.plan.today_rounds {
        let mut az_cmd = env.command(&az);
        if az_full_command {
            az_cmd.args(["account", "get-access-token", "--resource", HIT_RESOURCE, "--output", "json"]);
        } else {
            az_cmd.args(["account", "list", "--output", "json"]);
        }
        let measured = [
            wall(&mut az_cmd)?,
            wall(env.command(&python).arg(&today_py).args(["cli-cold", HIT_RESOURCE]))?,
            wall(env.command(&python).arg(&today_py).args(["mi-cold", HIT_RESOURCE]))?,
            warm(env.command(&python).arg(&today_py).args(["cli-warm", HIT_RESOURCE, "3"]))?,
            warm(env.command(&python).arg(&today_py).args(["mi-warm", HIT_RESOURCE, &warm_calls]))?,
            warm(env.command(&python).arg(&today_py).args(["http-warm", HIT_RESOURCE, &warm_calls]))?,
        ];
        for (m, ms) in methods.iter_mut().zip(measured) {
            m.runs_ms.push(ms);
            m.median_ms = median(&m.runs_ms).unwrap_or(f64::NAN);
        }
        ctx.say(format!(
            "today: round {round}/{}: {}",
            ctx.plan.today_rounds,
            methods
                .iter()
                .map(|m| format!("{:.2} ms", m.runs_ms[m.runs_ms.len() - 1]))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(TodayResults { versions: versions.trim().to_owned(), az_full_command, methods })
}

struct Env {
    config_dir: PathBuf,
    identity_endpoint: String,
    venv: PathBuf,
}

impl Env {
    /// A command with the benchmark's client environment: the seeded azure-cli config, the
    /// broker's App Service variables, and the loopback-only proxy guard.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        let path = std::env::var("PATH").unwrap_or_default();
        let guard = "http://127.0.0.1:9";
        cmd.env("AZURE_CONFIG_DIR", &self.config_dir)
            .env("AZURE_CORE_COLLECT_TELEMETRY", "false")
            .env("AZURE_CORE_SURVEY_MESSAGE", "false")
            .env("AZURE_CORE_NO_COLOR", "true")
            .env("IDENTITY_ENDPOINT", &self.identity_endpoint)
            .env("IDENTITY_HEADER", IDENTITY_HEADER)
            .env("PATH", format!("{}:{path}", self.venv.display()))
            .env("VIRTUAL_ENV", self.venv.parent().unwrap_or(&self.venv))
            .env("NO_PROXY", "127.0.0.1,localhost,::1")
            .env("no_proxy", "127.0.0.1,localhost,::1")
            .stdin(std::process::Stdio::null());
        for var in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "all_proxy"] {
            cmd.env(var, guard);
        }
        for var in ["AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "MSI_ENDPOINT", "MSI_SECRET"]
        {
            cmd.env_remove(var);
        }
        cmd
    }
}

fn output_text(cmd: &mut Command) -> Result<String> {
    let out = checked(cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn checked(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}{}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// The access token `az account get-access-token` prints.
fn az_token(env: &Env, az: &Path) -> Result<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct AzToken {
        access_token: String,
    }
    let out = output_text(env.command(az).args([
        "account",
        "get-access-token",
        "--resource",
        HIT_RESOURCE,
        "--output",
        "json",
    ]))?;
    Ok(serde_json::from_str::<AzToken>(&out).context("parse az output")?.access_token)
}

/// Wall time of a whole process (ms).
fn wall(cmd: &mut Command) -> Result<f64> {
    let t = Instant::now();
    checked(cmd)?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// The median per-call time a warm-process script reports (ms), its first call excluded.
fn warm(cmd: &mut Command) -> Result<f64> {
    #[derive(Deserialize)]
    struct Report {
        calls_ms: Vec<f64>,
    }
    let out = output_text(cmd)?;
    let line = out.lines().last().context("no output from today.py")?;
    let report: Report = serde_json::from_str(line).context("parse today.py output")?;
    let calls = if report.calls_ms.len() > 1 { &report.calls_ms[1..] } else { &report.calls_ms[..] };
    median(calls).context("no calls timed")
}
