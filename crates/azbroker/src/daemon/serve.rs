//! `azbroker serve`: binds the listeners (or takes them from socket activation), starts the
//! engine and the servers, tells systemd it is ready, and runs until SIGTERM/SIGINT; SIGHUP,
//! `azbroker reload` and `--watch-config` reload the config (a bad config keeps the old one
//! serving). Each config becomes one server runtime through `runtime::build`, published whole
//! at start and on every reload; the runtime secrets come from `secrets`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use azbroker_core::admin_api::SocketKind;
use azbroker_core::{Engine, ProfileName};
use azbroker_server::admin::{self, AdminState, DaemonInfo, PeerPolicy, ReloadOutcome};
use azbroker_server::{AppState, Server};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use super::{access, listeners, readiness, runtime, secrets, sources, state, watch};
use crate::cli::admin_client;
use crate::cli::args::ServeArgs;
use crate::config::{Config, ConfigError};
use crate::daemon::activation::Activated;
use crate::daemon::admin_hooks::ServeHooks;
use crate::daemon::keys::KeyStore;
use crate::daemon::logins::LoginService;
use crate::daemon::owned_dir::OwnedDir;
use crate::daemon::profile_listeners::ProfileListeners;
use crate::daemon::status_info::{self, Origin};
use crate::paths;

pub async fn run(mut config: Config, args: ServeArgs, mut activated: Activated) -> Result<()> {
    // Before anything can announce readiness: a SIGTERM right after READY=1 must drain, not kill.
    let signals = Signals::install().context("cannot install signal handlers")?;
    state::ensure_private_dir(&config.server.state_dir)?;
    OwnedDir::prepare(&config.server.runtime_dir, OwnedDir::runtime_dir_mode(&config))?;
    if config.server.self_service.enabled && paths::is_system() {
        // Local users must reach the admin socket inside (each request is authorised by uid).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config.server.runtime_dir, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot open {} to local users", config.server.runtime_dir.display()))?;
    }
    let runtime_secrets = secrets::load_all(&config)?;

    let local = super::local_authority::start_if(args.local_authority, &mut config).await?;
    let config = Arc::new(config);
    let authority = local.as_ref().map(|l| Url::parse(&l.url())).transpose()?;
    let client = sources::entra_client(&config, authority.as_ref())?;
    let engine = Engine::new(config.refresh.clone(), Vec::new());
    let arm = local.as_ref().map(|l| Url::parse(&l.arm_url())).transpose()?;
    let logins = Arc::new(LoginService::start(&config, &client, arm.as_ref(), &engine)?);
    let mut generation =
        runtime::build(config.clone(), &client, &logins.users).map_err(|problems| ConfigError {
            origin: config.origin.as_ref().map_or("built-in defaults".into(), |p| p.display().to_string()),
            problems,
        })?;
    logins.personal.extend(&mut generation.spec, &config, &logins.users);
    let admin_gid = generation.admin_gid;
    for warning in &generation.warnings {
        tracing::warn!("{warning}");
    }
    let app = AppState::new(engine.clone(), generation.spec, runtime_secrets)?;
    app.set_group_resolver(access::group_resolver());
    super::keys::publish_stored(&config.server.state_dir, &app)?;

    let (listeners, origin) = match activated.token_listeners(&config)? {
        Some(l) => (l, Origin::Systemd),
        None => (bind_all(&config).await?, Origin::Config),
    };
    let admin_path = admin_client::socket_path(&config);
    let (admin_listener, admin_origin) = match activated.admin()? {
        Some(l) => (l, Origin::Systemd),
        None => (
            admin::bind_admin_socket(&admin_path)
                .await
                .with_context(|| format!("cannot bind the admin socket {}", admin_path.display()))?,
            Origin::Config,
        ),
    };
    let admin_shown = match admin_origin {
        Origin::Systemd => admin_listener.local_addr().ok().and_then(|a| a.as_pathname().map(Into::into)),
        Origin::Config | Origin::Auto => None,
    }
    .unwrap_or_else(|| admin_path.clone());
    // A socket systemd made has the mode and group its unit gave it.
    if let (Some(gid), Origin::Config) = (admin_gid, admin_origin) {
        admin::share_with_group(&admin_path, gid)
            .with_context(|| format!("cannot give group {gid} access to {}", admin_path.display()))?;
    }
    let self_service = access::self_service_gids(&config)?;
    if let (Some(_), Origin::Config) = (&self_service, admin_origin) {
        admin::open_to_everyone(&admin_path)
            .with_context(|| format!("cannot let local users connect to {}", admin_path.display()))?;
    }
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    {
        let (engine, cancel) = (engine.clone(), cancel.clone());
        tasks.spawn(async move { engine.run(cancel).await });
    }
    let mut bound = Vec::new();
    let mut sockets = Vec::new();
    for (listener, profile) in listeners {
        bound.push(listener.local_addr()?);
        sockets.push((listener.local_addr()?, profile.clone(), origin));
        let router = azbroker_server::router(app.clone(), profile);
        let server = Server::new(router, config.server.hardening.limits.clone(), cancel.clone());
        tasks.spawn(async move {
            if let Err(e) = server.serve_tcp(listener).await {
                tracing::error!(error = %e, "listener failed");
            }
        });
    }
    let extras = listeners::start(&config, &app, &cancel, &tasks).await;
    let extras = match extras {
        Ok(e) => e,
        Err(e) => {
            cancel.cancel();
            return Err(e);
        }
    };
    bound.extend(extras.bound.iter().map(|(addr, _)| *addr));
    let profile_listeners =
        Arc::new(ProfileListeners::start(&config, &app, &cancel, &tasks).inspect_err(|_| cancel.cancel())?);
    let (reload_tx, mut reload_rx) = mpsc::channel(4);
    if args.watch_config {
        match &config.origin {
            Some(path) => watch::spawn(path, reload_tx.clone(), cancel.clone())?,
            None => tracing::warn!("--watch-config: no config file in use, nothing to watch"),
        }
    }
    let container = extras
        .bound
        .iter()
        .filter(|(_, kind)| *kind == SocketKind::Container)
        .map(|(addr, _)| *addr)
        .collect();
    let loopback =
        sockets.iter().filter(|(_, profile, _)| profile.is_none()).map(|(addr, _, _)| *addr).collect();
    let keys = KeyStore::new(&config.server.state_dir, &app, container, loopback);
    let hooks = Arc::new(ServeHooks {
        reload_tx,
        fixed: status_info::fixed_fields(
            &config,
            &sockets,
            &extras.bound,
            (&admin_shown, admin_origin),
            (
                authority.as_ref().unwrap_or(&config.cloud.authority_host),
                arm.as_ref().unwrap_or(&config.cloud.arm_endpoint),
            ),
        ),
        app: app.clone(),
        logins: logins.clone(),
        profile_listeners: profile_listeners.clone(),
        keys: Arc::new(keys),
        stop: CancellationToken::new(),
    });
    {
        let info = DaemonInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            listeners: bound.iter().map(ToString::to_string).collect(),
        };
        let mut policy = PeerPolicy::new(vec![paths::current_uid()], admin_gid.into_iter().collect());
        if let Some(gids) = self_service {
            policy = policy.with_self_service(gids);
        }
        let router = admin::admin_router(AdminState::new(app.clone(), hooks.clone(), info, policy));
        let (cancel, limits) = (cancel.clone(), config.server.hardening.limits.clone());
        tasks.spawn(async move {
            if let Err(e) = admin::serve_unix(admin_listener, router, limits, cancel).await {
                tracing::error!(error = %e, "admin socket failed");
            }
        });
    }
    if config.server.self_service.enabled {
        let (app, logins, cancel) = (app.clone(), logins.clone(), cancel.clone());
        tasks.spawn(async move {
            let listeners = profile_listeners;
            let mut every = tokio::time::interval(super::personal_hooks::SWEEP_EVERY);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = every.tick() => super::personal_hooks::sweep_deleted_users(&app, &logins, &listeners).await,
                }
            }
        });
    }
    let _bound_file = super::bound_file::write(&config, &sockets, &extras.bound, &admin_shown)?;
    app.set_ready(true);
    announce(&config, &bound, local.is_some());
    readiness::ready(&ready_status(&config, &bound));
    if let Some(interval) = readiness::watchdog_interval() {
        tasks.spawn(readiness::watchdog(interval, cancel.clone()));
    }

    wait_for_signals(signals, &app, &client, &hooks, &mut reload_rx, &cancel).await;
    readiness::stopping();
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    tasks.close();
    let deadline = args.drain_timeout;
    if tokio::time::timeout(deadline, tasks.wait()).await.is_err() {
        tracing::warn!("some requests did not finish within {deadline:?}; exiting anyway");
    }
    extras.finish();
    if let Err(e) = hooks.keys.save_usage() {
        tracing::warn!(error = %format!("{e:#}"), "cannot save the client keys' use counters");
    }
    if let Some(local) = local {
        local.shutdown();
    }
    if admin_origin == Origin::Config {
        let _ = std::fs::remove_file(&admin_path);
    }
    tracing::info!("stopped");
    Ok(())
}

async fn bind_all(config: &Config) -> Result<Vec<(TcpListener, Option<ProfileName>)>> {
    let mut out = Vec::new();
    let wanted = config.server.listen.iter().map(|a| (*a, None)).chain(
        config.profiles.values().flat_map(|p| p.listen.iter().map(move |a| (*a, Some(p.name.clone())))),
    );
    for (addr, profile) in wanted {
        let listener = TcpListener::bind(addr).await.with_context(|| bind_hint(addr))?;
        out.push((listener, profile));
    }
    Ok(out)
}

fn bind_hint(addr: SocketAddr) -> String {
    format!(
        "cannot listen on {addr} (is another azbroker already running? set [server] listen in the config to use another port)"
    )
}

/// A reload asked for over the admin socket (or by the file watcher), with where to send the
/// outcome.
pub(crate) type ReloadRequest = oneshot::Sender<Result<ReloadOutcome, Vec<String>>>;

/// SIGTERM, SIGINT and SIGHUP, caught from start-up on.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

async fn wait_for_signals(
    signals: Signals,
    app: &AppState,
    client: &azbroker_entra::EntraClient,
    hooks: &ServeHooks,
    reload_rx: &mut mpsc::Receiver<ReloadRequest>,
    cancel: &CancellationToken,
) {
    let Signals { mut term, mut int, mut hup } = signals;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            () = hooks.stop.cancelled() => break,
            _ = hup.recv() => {
                let _ = reload(app, client, hooks);
            }
            Some(done) = reload_rx.recv() => {
                let _ = done.send(reload(app, client, hooks));
            }
        }
    }
    cancel.cancel();
}

/// Re-reads the config file, telling systemd while it does.
fn reload(
    app: &AppState,
    client: &azbroker_entra::EntraClient,
    hooks: &ServeHooks,
) -> Result<ReloadOutcome, Vec<String>> {
    readiness::reloading();
    let outcome = apply_reload(app, client, hooks);
    readiness::ready(match &outcome {
        Ok(_) => "serving; config reloaded",
        Err(_) => "serving; the last config reload was rejected (see the log)",
    });
    outcome
}

/// Re-reads the config file and publishes its runtime whole; on any problem the runtime in
/// force keeps serving and every problem is logged and returned. Only the signal loop calls
/// this, so publications never race.
fn apply_reload(
    app: &AppState,
    client: &azbroker_entra::EntraClient,
    hooks: &ServeHooks,
) -> Result<ReloadOutcome, Vec<String>> {
    let logins = &hooks.logins;
    let rejected = |problems: Vec<String>| {
        tracing::error!("config reload rejected, keeping the running config: {}", problems.join("; "));
        problems
    };
    let current = runtime::config(app);
    let Some(origin) = current.origin.clone() else {
        tracing::info!("reload: no config file in use; nothing to reload");
        return Err(vec!["the daemon runs on built-in defaults (no config file); nothing to reload".into()]);
    };
    let next = Arc::new(Config::load(Some(&origin)).map_err(|e| rejected(e.problems))?);
    let _order = logins.personal.publish_lock();
    let mut generation = runtime::build(next.clone(), client, &logins.users).map_err(rejected)?;
    logins.personal.extend(&mut generation.spec, &next, &logins.users);
    let mut warnings = Vec::new();
    if next.server.listen != current.server.listen
        || next.server.dialects.container_listen != current.server.dialects.container_listen
        || next.profiles.values().map(|p| &p.listen).ne(current.profiles.values().map(|p| &p.listen))
    {
        tracing::warn!("listener changes take effect at the next restart");
        warnings.push("listener changes take effect at the next restart".to_owned());
    }
    logins.apply(&next);
    let published = app.publish(generation.spec).map_err(|e| rejected(vec![e.to_string()]))?;
    if let Err(e) = hooks.profile_listeners.apply(&next) {
        tracing::error!(error = %format!("{e:#}"), "cannot open the reloaded profiles' listeners");
    }
    for warning in generation.warnings {
        tracing::warn!("{warning}");
    }
    tracing::info!(profiles = next.profiles.len(), generation = published.generation(), "config reloaded");
    Ok(ReloadOutcome { profiles: next.profiles.len(), warnings })
}

fn ready_status(config: &Config, bound: &[SocketAddr]) -> String {
    let listeners: Vec<_> = bound.iter().map(ToString::to_string).collect();
    format!("serving {} profile(s) on {}", config.profiles.len(), listeners.join(", "))
}

fn announce(config: &Config, bound: &[SocketAddr], local: bool) {
    let listeners: Vec<_> = bound.iter().map(ToString::to_string).collect();
    tracing::info!(listeners = %listeners.join(","), profiles = config.profiles.len(), "ready");
    let cfg_path: PathBuf = config.origin.clone().unwrap_or_else(crate::paths::default_config_file);
    if config.origin.is_none() && !local {
        eprintln!(
            "\nazbroker is running with built-in defaults (no config file at {}):\n\
             one user login 'me' against the 'organizations' authority, profile 'me'.\n\
             Next step: sign in with `azbroker login` (device code; add --browser for a browser),\n\
             then point clients at the daemon with: eval \"$(azbroker env)\"   (or `azbroker run -- CMD`).\n\
             For a workspace in another tenant: `azbroker workspace add --name NAME --login me --subscription ID --resource-group RG --workspace WS`.\n",
            cfg_path.display()
        );
    } else if config.profiles.is_empty() {
        eprintln!(
            "\nazbroker is running, but no profile is configured yet, so token requests will be refused.\n\
             Next step: create {} with a login and a profile (see config/azbroker.example.toml),\n\
             or try the offline demo: `azbroker serve --local-authority`.\n",
            cfg_path.display()
        );
    } else {
        let base = bound.first().map(|a| format!("http://{a}")).unwrap_or_default();
        eprintln!(
            "\nazbroker is serving on {}{}.\nPoint clients at it with: eval \"$(azbroker{} env)\"   (or `azbroker run -- CMD`)\n",
            base,
            if local { " (LOCAL AUTHORITY: tokens are not valid in Azure)" } else { "" },
            config.origin.as_ref().map(|p| format!(" --config {}", p.display())).unwrap_or_default(),
        );
    }
}
