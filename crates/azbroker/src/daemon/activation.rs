//! Socket activation: the listeners systemd (or `systemd-socket-activate`) passes through
//! `LISTEN_FDS`, sorted into token listeners and the admin socket.
//!
//! Each passed socket's role comes from its `FileDescriptorName=` (`LISTEN_FDNAMES`):
//!
//! | name | socket | role |
//! |---|---|---|
//! | `admin` (or any name, on a unix socket) | unix stream | the admin socket |
//! | a configured profile's name | TCP | that profile's dedicated listener |
//! | none, `unknown`, `http`, `token`, or `*.socket` (systemd's default: the unit's name) | TCP | a general token listener |
//!
//! Any other name on a TCP socket is refused at start, so a typo cannot silently turn a
//! profile's listener into a general one. When TCP sockets are passed, the daemon binds none of
//! the configured `listen` addresses itself; when only the admin socket is passed, it binds them.
//!
//! [`Activated::from_env`] must run before any thread starts: `listenfd` clears `LISTEN_FDS` and
//! `LISTEN_PID` so that child processes do not inherit them.

use std::net::SocketAddr;
use std::os::unix::net::UnixListener as StdUnixListener;

use anyhow::{Context, Result, bail};
use azbroker_core::ProfileName;
use listenfd::ListenFd;
use tokio::net::{TcpListener, UnixListener};

use crate::config::Config;

/// Sockets passed by the service manager, not yet sorted by role.
#[derive(Debug, Default)]
pub struct Activated {
    tcp: Vec<(std::net::TcpListener, String)>,
    admin: Option<StdUnixListener>,
}

/// A token listener and the profile that owns it, if any (selection rule 2).
pub type TokenListener = (TcpListener, Option<ProfileName>);

impl Activated {
    /// Takes the sockets from the environment (none when not socket-activated). Call before any
    /// thread is spawned.
    pub fn from_env() -> Result<Self> {
        let names = std::env::var("LISTEN_FDNAMES").ok();
        let mut fds = ListenFd::from_env();
        let names: Vec<String> = match names {
            Some(n) if fds.len() > 0 => n.split(':').map(str::to_owned).collect(),
            _ => vec![String::new(); fds.len()],
        };
        if names.len() != fds.len() {
            bail!("LISTEN_FDNAMES names {} sockets but LISTEN_FDS passes {}", names.len(), fds.len());
        }
        let mut out = Self::default();
        for (idx, name) in names.into_iter().enumerate() {
            if let Ok(Some(l)) = fds.take_tcp_listener(idx) {
                out.tcp.push((l, name));
                continue;
            }
            match fds.take_unix_listener(idx) {
                Ok(Some(l)) if out.admin.is_none() => out.admin = Some(l),
                Ok(Some(_)) => {
                    bail!("socket activation passed more than one unix socket; only the admin socket is one")
                }
                Ok(None) => {}
                Err(e) => bail!(
                    "passed socket #{idx} ({}) is neither a TCP nor a unix stream listener: {e}",
                    display_name(&name)
                ),
            }
        }
        Ok(out)
    }

    /// The passed TCP sockets as token listeners, or `None` when none were passed (bind the
    /// configured addresses then). Warns about configured addresses the sockets do not cover,
    /// since `azbroker env` prints the configured ones.
    pub fn token_listeners(&mut self, config: &Config) -> Result<Option<Vec<TokenListener>>> {
        if self.tcp.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(self.tcp.len());
        for (listener, name) in std::mem::take(&mut self.tcp) {
            let profile = role(&name, config)?;
            let addr = listener.local_addr().context("a passed socket has no local address")?;
            warn_if_unconfigured(config, addr, profile.as_ref());
            listener.set_nonblocking(true).context("cannot make a passed socket non-blocking")?;
            out.push((TcpListener::from_std(listener)?, profile));
        }
        Ok(Some(out))
    }

    /// The passed admin socket, if any.
    pub fn admin(&mut self) -> Result<Option<UnixListener>> {
        let Some(l) = self.admin.take() else { return Ok(None) };
        l.set_nonblocking(true).context("cannot make the passed admin socket non-blocking")?;
        Ok(Some(UnixListener::from_std(l)?))
    }
}

/// The profile a passed TCP socket belongs to (`None`: a general listener).
fn role(name: &str, config: &Config) -> Result<Option<ProfileName>> {
    if let Some(p) = config.profiles.keys().find(|p| p.as_str() == name) {
        return Ok(Some(p.clone()));
    }
    if is_general(name) {
        return Ok(None);
    }
    let profiles: Vec<&str> = config.profiles.keys().map(ProfileName::as_str).collect();
    bail!(
        "socket activation passed a TCP socket named '{name}', which is neither a general listener \
         (no name, 'http', 'token' or the unit's '*.socket' name) nor a configured profile ({}); \
         fix FileDescriptorName= in the .socket unit",
        if profiles.is_empty() { "none configured".into() } else { profiles.join(", ") }
    )
}

fn is_general(name: &str) -> bool {
    matches!(name, "" | "unknown" | "http" | "token") || name.ends_with(".socket")
}

fn display_name(name: &str) -> &str {
    if name.is_empty() { "unnamed" } else { name }
}

fn warn_if_unconfigured(config: &Config, addr: SocketAddr, profile: Option<&ProfileName>) {
    let configured = match profile {
        None => config.server.listen.contains(&addr),
        Some(p) => config.profiles.get(p).is_some_and(|p| p.listen.contains(&addr)),
    };
    if !configured {
        tracing::warn!(
            %addr,
            profile = profile.map(ProfileName::as_str),
            "a socket-activated listener is not in the config's listen addresses; `azbroker env` \
             prints the configured ones, so keep ListenStream= and the config in agreement"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let text = "[logins.a]\nkind = \"service-principal\"\ntenant = \"t.example\"\nclient_id = \"c\"\n\
                    client_secret = \"s\"\n[profiles.fabrikam]\nlogin = \"a\"\n";
        Config::parse(text, None).unwrap()
    }

    #[test]
    fn names_pick_general_or_profile_listeners() {
        let c = config();
        for general in ["", "unknown", "http", "token", "azbroker.socket", "azbroker-extra.socket"] {
            assert_eq!(role(general, &c).unwrap(), None, "{general}");
        }
        assert_eq!(role("fabrikam", &c).unwrap().unwrap().as_str(), "fabrikam");
        let err = role("fabrikma", &c).unwrap_err().to_string();
        assert!(
            err.contains("'fabrikma'") && err.contains("fabrikam") && err.contains("FileDescriptorName"),
            "{err}"
        );
    }
}
