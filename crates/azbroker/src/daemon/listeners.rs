//! The listeners and helpers beyond the plain HTTP ones: the Service Fabric HTTPS listener, the
//! Arc key directory (and its sweeper), and IMDS on 169.254.169.254:80. Each is started here and
//! undone by [`Extras::finish`] at shutdown; a dialect that cannot be offered is logged, not fatal,
//! except the link-local mode, which was asked for explicitly.

use std::sync::Arc;

use anyhow::{Context, Result};
use azbroker_core::admin_api::SocketKind;
use azbroker_server::{ARC_SWEEP_EVERY, ARC_TOKENS_DIR, AppState, ArcKeys, Server};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::daemon::link_local::{self, LinkLocal};
use crate::daemon::tls_identity;

/// What must be undone at shutdown.
pub struct Extras {
    arc: Option<Arc<ArcKeys>>,
    link_local: Option<LinkLocal>,
    /// Addresses served and what each is (`https`, `imds-link-local`), for the start-up line
    /// and `status`.
    pub bound: Vec<(std::net::SocketAddr, SocketKind)>,
}

/// Starts the extra listeners on `tasks`, all stopping when `cancel` fires.
pub async fn start(
    config: &Config,
    app: &AppState,
    cancel: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<Extras> {
    let d = &config.server.dialects;
    let mut extras = Extras { arc: None, link_local: None, bound: Vec::new() };
    if !d.tls_listen.is_empty() {
        let identity = tls_identity::load_or_create(config)?;
        let (public, java) = tls_identity::publish(config, &identity)?;
        let tls = azbroker_server::tls_config(identity.chain, identity.key)
            .context("the Service Fabric certificate or key is unusable")?;
        tracing::info!(
            thumbprint = %identity.thumbprint,
            cert = %public.display(),
            java_trust_store = %java.display(),
            "Service Fabric certificate"
        );
        for addr in &d.tls_listen {
            let listener = TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} (HTTPS, Service Fabric; set [server] tls_listen to another port, or [] to turn it off)")
            })?;
            extras.bound.push((listener.local_addr()?, SocketKind::Https));
            let router = azbroker_server::service_fabric_router(app.clone(), None);
            let server = Server::new(router, config.server.hardening.limits.clone(), cancel.clone());
            let tls = tls.clone();
            tasks.spawn(async move {
                if let Err(e) = azbroker_server::serve_tls(listener, server, tls).await {
                    tracing::error!(error = %e, "HTTPS listener failed");
                }
            });
        }
    }
    extras.arc = start_arc(config, app, cancel, tasks).await;
    for addr in &d.container_listen {
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} (container_listen: is it an address of this machine, e.g. docker0's?)")
        })?;
        let bound = listener.local_addr()?;
        extras.bound.push((bound, SocketKind::Container));
        let router = azbroker_server::container_router(app.clone(), bound);
        let server = Server::new(router, config.server.hardening.limits.clone(), cancel.clone());
        tasks.spawn(async move {
            if let Err(e) = server.serve_tcp(listener).await {
                tracing::error!(error = %e, "container listener failed");
            }
        });
    }
    if d.imds_link_local {
        let (listener, state) = link_local::setup(d.force_link_local).await?;
        extras.bound.push((listener.local_addr()?, SocketKind::ImdsLinkLocal));
        extras.link_local = Some(state);
        let router = azbroker_server::link_local_router(app.clone());
        let server = Server::new(router, config.server.hardening.limits.clone(), cancel.clone());
        tasks.spawn(async move {
            if let Err(e) = server.serve_tcp(listener).await {
                tracing::error!(error = %e, "link-local IMDS listener failed");
            }
        });
    }
    Ok(extras)
}

/// The Arc key directory, if this process may write it (root, or a pre-created directory).
async fn start_arc(
    config: &Config,
    app: &AppState,
    cancel: &CancellationToken,
    tasks: &TaskTracker,
) -> Option<Arc<ArcKeys>> {
    let gid = config.server.dialects.arc_group.as_ref().map(|(_, gid)| *gid);
    let keys = Arc::new(ArcKeys::new(ARC_TOKENS_DIR, gid));
    let prepared = {
        let keys = keys.clone();
        tokio::task::spawn_blocking(move || keys.prepare()).await
    };
    match prepared {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(dir = ARC_TOKENS_DIR, error = %e, "Azure Arc dialect off: cannot use the key directory");
            return None;
        }
        Err(_) => return None,
    }
    app.set_arc_keys(keys.clone());
    let (sweeper, cancel) = (keys.clone(), cancel.clone());
    tasks.spawn(async move {
        // Often, so an expired key's file is gone within a second of its expiry.
        let mut tick = tokio::time::interval(ARC_SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => {
                    let keys = sweeper.clone();
                    let _ = tokio::task::spawn_blocking(move || keys.sweep()).await;
                }
            }
        }
    });
    Some(keys)
}

impl Extras {
    /// Deletes outstanding Arc key files and removes the link-local address.
    pub fn finish(self) {
        if let Some(keys) = self.arc {
            keys.clear();
        }
        if let Some(ll) = self.link_local {
            ll.release();
        }
    }
}
