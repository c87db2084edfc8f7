//! A listener of its own for every profile that configures none (`[profiles.P] listen`), so that
//! `azbroker env --profile P` can name P by address alone. A path prefix (`/p/P`) is not enough:
//! .NET (MSAL.NET, Azure.Identity) and others rebuild the path of `AZURE_POD_IDENTITY_AUTHORITY_HOST`
//! and would silently receive the default profile's token. Each profile gets an HTTP listener (every
//! dialect but Service Fabric) and, when `[server] tls_listen` is set, an HTTPS one (Service
//! Fabric), on the address of the first configured listener of that kind and a port kept in
//! `state_dir/profile-listeners` so that exported variables stay valid across restarts.
//!
//! On a shared machine (`[server] self_service`) every personal profile gets its listeners too
//! (a user's own one and each personal workspace), so that `azbroker env --profile ml` works for
//! the user who owns `ml`; a personal profile serves its owner's uid alone, so on its listener
//! everyone else is refused (`authorize`), and a user's `status` lists only their own.
//!
//! Opened at start and after every publication that can change the profiles — an applied reload,
//! a personal sign-in, sign-out or workspace change ([`ProfileListeners::apply`], called with the
//! new generation in force): listeners of removed profiles close, new profiles get theirs. The
//! usual guards and caller policy apply on them (they serve the same routers, with the profile as
//! the listener's profile). This module never changes which profile a request on another
//! listener selects.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result};
use azbroker_core::ProfileName;
use azbroker_core::admin_api::{SocketInfo, SocketKind, SocketOrigin};
use azbroker_core::personal::PersonalProfiles;
use azbroker_server::{AppState, Server};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::daemon::{state, tls_identity};

/// The file (in `state_dir`) that keeps each profile's ports: `NAME HTTP_PORT HTTPS_PORT` lines
/// (`0` for no HTTPS listener).
pub const FILE_NAME: &str = "profile-listeners";

/// A profile's own addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
}

/// The running per-profile listeners; cheap to share, changed only through [`Self::apply`].
pub struct ProfileListeners {
    app: AppState,
    tasks: TaskTracker,
    cancel: CancellationToken,
    running: Mutex<BTreeMap<ProfileName, Running>>,
}

struct Running {
    addresses: Addresses,
    stop: CancellationToken,
}

impl ProfileListeners {
    /// Opens a listener for every profile of `config` without a `listen` of its own.
    pub fn start(
        config: &Config,
        app: &AppState,
        cancel: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Self> {
        let this = Self {
            app: app.clone(),
            tasks: tasks.clone(),
            cancel: cancel.clone(),
            running: Mutex::new(BTreeMap::new()),
        };
        // The ports file says what this daemon listens on, even when that is nothing.
        if !this.apply(config)? {
            this.record(&path(config))?;
        }
        Ok(this)
    }

    /// Brings the listeners in line with `next` and the personal profiles of the generation in
    /// force (publish it first): closes those of profiles gone (or that now configure
    /// `listen`), opens ones for new profiles, and records the ports. When nothing changes (most
    /// personal publications) it reads and writes nothing and returns `false`.
    pub fn apply(&self, next: &Config) -> Result<bool> {
        let rt = self.app.runtime();
        let wanted: Vec<&ProfileName> = next
            .profiles
            .values()
            .filter(|p| p.listen.is_empty())
            .map(|p| &p.name)
            .chain(rt.directory().personal().profile_names())
            .collect();
        let https_wanted = !next.server.dialects.tls_listen.is_empty();
        let fits = |r: &Running| r.addresses.https.is_some() == https_wanted;
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let to_open: Vec<&ProfileName> =
            wanted.iter().copied().filter(|name| !running.get(*name).is_some_and(fits)).collect();
        let to_close = running.iter().any(|(name, r)| !wanted.contains(&name) || !fits(r));
        if to_open.is_empty() && !to_close {
            return Ok(false);
        }
        let file = path(next);
        let remembered = read_file(&file).unwrap_or_default();
        let tls = match (https_wanted, to_open.is_empty()) {
            (true, false) => {
                let identity = tls_identity::load_or_create(next)?;
                Some(
                    azbroker_server::tls_config(identity.chain, identity.key)
                        .context("the Service Fabric certificate or key is unusable")?,
                )
            }
            _ => None,
        };
        running.retain(|name, r| {
            let keep = wanted.contains(&name) && fits(r);
            if !keep {
                r.stop.cancel();
            }
            keep
        });
        for name in to_open {
            let before = remembered.get(name.as_str()).copied().unwrap_or_default();
            let stop = self.cancel.child_token();
            let http = bind(http_ip(next), before.http.map(|a| a.port()))?;
            let http_addr = http.local_addr()?;
            self.serve_http(http, name, next, &stop)?;
            let https = match &tls {
                Some(tls) => {
                    let listener = bind(https_ip(next), before.https.map(|a| a.port()))?;
                    let addr = listener.local_addr()?;
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let router = azbroker_server::service_fabric_router(self.app.clone(), Some(name.clone()));
                    let server = Server::new(router, next.server.hardening.limits.clone(), stop.clone());
                    let tls = tls.clone();
                    self.tasks.spawn(async move {
                        if let Err(e) = azbroker_server::serve_tls(listener, server, tls).await {
                            tracing::error!(error = %e, "profile HTTPS listener failed");
                        }
                    });
                    Some(addr)
                }
                None => None,
            };
            tracing::info!(profile = %name, http = %http_addr, https = ?https, "profile listener");
            running.insert(name.clone(), Running { addresses: Addresses { http: http_addr, https }, stop });
        }
        drop(running);
        self.record(&file)?;
        Ok(true)
    }

    /// Writes the ports of the listeners open now to `file`.
    fn record(&self, file: &Path) -> Result<()> {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let addresses: BTreeMap<String, Addresses> =
            running.iter().map(|(n, r)| (n.as_str().to_owned(), r.addresses)).collect();
        drop(running);
        state::write_private(file, render(&addresses).as_bytes())
    }

    /// The listeners open now, for `status` (they change on each reload): HTTP then HTTPS, by
    /// profile name.
    pub fn sockets(&self) -> Vec<SocketInfo> {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.iter().flat_map(|(name, r)| sockets(name.to_string(), r.addresses)).collect()
    }

    /// The listeners a self-service user's `status` shows: their own personal profiles' first,
    /// under the short names they select them by, then the configured profiles'; never another
    /// user's (whose names are private).
    pub fn sockets_of(&self, uid: u32, personal: &PersonalProfiles) -> Vec<SocketInfo> {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let mine =
            personal.of(uid).into_iter().filter_map(|(short, p)| Some((short, running.get(&p)?.addresses)));
        let configured = running
            .iter()
            .filter(|(name, _)| personal.owner(name).is_none())
            .map(|(name, r)| (name.to_string(), r.addresses));
        mine.chain(configured).flat_map(|(name, a)| sockets(name, a)).collect()
    }

    fn serve_http(
        &self,
        listener: std::net::TcpListener,
        name: &ProfileName,
        config: &Config,
        stop: &CancellationToken,
    ) -> Result<()> {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let router = azbroker_server::router(self.app.clone(), Some(name.clone()));
        let server = Server::new(router, config.server.hardening.limits.clone(), stop.clone());
        self.tasks.spawn(async move {
            if let Err(e) = server.serve_tcp(listener).await {
                tracing::error!(error = %e, "profile listener failed");
            }
        });
        Ok(())
    }
}

fn sockets(name: String, a: Addresses) -> impl Iterator<Item = SocketInfo> {
    let http = Some((SocketKind::Http, a.http));
    let https = a.https.map(|addr| (SocketKind::Https, addr));
    [http, https].into_iter().flatten().map(move |(kind, addr)| SocketInfo {
        kind,
        address: addr.to_string(),
        profile: Some(name.clone()),
        origin: SocketOrigin::Auto,
    })
}

/// Where the ports are kept.
pub fn path(config: &Config) -> PathBuf {
    config.server.state_dir.join(FILE_NAME)
}

/// Every port the daemon recorded for a profile's own listeners (none when unreadable).
pub fn recorded_ports(config: &Config) -> Vec<u16> {
    let all = read_file(&path(config)).unwrap_or_default();
    all.values().flat_map(|r| [r.http, r.https]).flatten().map(|a| a.port()).collect()
}

/// One remembered line: addresses that may be reused.
#[derive(Debug, Default, Clone, Copy)]
struct Remembered {
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
}

fn read_file(file: &Path) -> Result<BTreeMap<String, Remembered>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(text.lines().filter_map(parse_line).collect())
}

fn parse_line(line: &str) -> Option<(String, Remembered)> {
    let mut parts = line.split_whitespace();
    let (name, http, https) = (parts.next()?, parts.next()?, parts.next()?);
    let addr = |s: &str| s.parse::<SocketAddr>().ok().filter(|a| a.port() != 0);
    Some((name.to_owned(), Remembered { http: addr(http), https: addr(https) }))
}

fn render(addresses: &BTreeMap<String, Addresses>) -> String {
    let unset = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    addresses.iter().map(|(name, a)| format!("{name} {} {}\n", a.http, a.https.unwrap_or(unset))).collect()
}

fn http_ip(config: &Config) -> IpAddr {
    config.server.listen.first().map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), SocketAddr::ip)
}

fn https_ip(config: &Config) -> IpAddr {
    config.server.dialects.tls_listen.first().map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), SocketAddr::ip)
}

/// Binds `ip` on the remembered port when it is free, else on a new one.
fn bind(ip: IpAddr, port: Option<u16>) -> Result<std::net::TcpListener> {
    let listener = match port.map(|p| std::net::TcpListener::bind((ip, p))) {
        Some(Ok(l)) => l,
        _ => std::net::TcpListener::bind((ip, 0)).with_context(|| format!("cannot listen on {ip}"))?,
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lists_http_then_https_for_the_profile() {
        let name = ProfileName::parse("fab").unwrap();
        let http = SocketAddr::from(([127, 0, 0, 1], 41000));
        let https = SocketAddr::from(([127, 0, 0, 1], 41001));
        let both: Vec<_> = sockets(name.to_string(), Addresses { http, https: Some(https) }).collect();
        assert_eq!(both.len(), 2);
        assert_eq!((both[0].kind, both[0].address.as_str()), (SocketKind::Http, "127.0.0.1:41000"));
        assert_eq!((both[1].kind, both[1].address.as_str()), (SocketKind::Https, "127.0.0.1:41001"));
        assert!(both.iter().all(|s| s.profile.as_deref() == Some("fab") && s.origin == SocketOrigin::Auto));
        assert_eq!(sockets(name.to_string(), Addresses { http, https: None }).count(), 1);
    }

    #[test]
    fn the_ports_file_round_trips_and_ignores_junk() {
        let mut m = BTreeMap::new();
        let http = SocketAddr::from(([127, 0, 0, 1], 41000));
        let https = SocketAddr::from(([127, 0, 0, 1], 41001));
        m.insert("fab".to_owned(), Addresses { http, https: Some(https) });
        m.insert("con".to_owned(), Addresses { http, https: None });
        let text = render(&m) + "garbage\nx y\n";
        let back: BTreeMap<_, _> = text.lines().filter_map(parse_line).collect();
        assert_eq!(back.len(), 2);
        assert_eq!((back["fab"].http, back["fab"].https), (Some(http), Some(https)));
        assert_eq!((back["con"].http, back["con"].https), (Some(http), None));
    }
}
