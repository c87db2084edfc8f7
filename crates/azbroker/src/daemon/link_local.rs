//! IMDS on 169.254.169.254:80 (`[server] imds_link_local = true`), for clients that cannot be
//! redirected (Go, Rust `azure_identity`, msrestazure/azureml-core hard-code that address).
//!
//! Start: refuse when something already answers there (a real IMDS: this is an Azure VM or
//! compute instance) unless `force_link_local`; add the address to `lo` (needs root or
//! CAP_NET_ADMIN; `ip` from iproute2) unless it is already local; bind port 80 (root or
//! CAP_NET_BIND_SERVICE). Stop: remove the address again if this process added it.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;

pub const IMDS_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
const IMDS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(IMDS_IP), 80);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The address as this process configured it; [`LinkLocal::release`] undoes what it did.
#[derive(Debug)]
pub struct LinkLocal {
    added: bool,
}

/// Makes 169.254.169.254 local and binds port 80 on it.
pub async fn setup(force: bool) -> Result<(TcpListener, LinkLocal)> {
    let already_local = is_local()?;
    if !already_local && answers(IMDS).await {
        if !force {
            bail!(
                "something already answers on {IMDS} (a real IMDS: is this an Azure VM or compute instance?); \
                 refusing imds_link_local so the broker does not shadow it (set force_link_local = true to take over)"
            );
        }
        tracing::warn!("force_link_local: taking over {IMDS} although something answers there");
    }
    let added = if already_local {
        false
    } else {
        ip(&["addr", "add", &format!("{IMDS_IP}/32"), "dev", "lo"])
            .context("imds_link_local needs root (or CAP_NET_ADMIN) to add 169.254.169.254 to lo")?;
        true
    };
    let state = LinkLocal { added };
    match TcpListener::bind(IMDS).await {
        Ok(listener) => {
            tracing::info!(addr = %IMDS, added, "serving IMDS on the link-local address");
            Ok((listener, state))
        }
        Err(e) => {
            state.release();
            Err(e).with_context(|| {
                format!("cannot listen on {IMDS} (port 80 needs root or CAP_NET_BIND_SERVICE)")
            })
        }
    }
}

impl LinkLocal {
    /// Removes the address if this process added it.
    pub fn release(self) {
        if self.added {
            match ip(&["addr", "del", &format!("{IMDS_IP}/32"), "dev", "lo"]) {
                Ok(()) => tracing::info!("removed {IMDS_IP} from lo"),
                Err(e) => tracing::warn!(error = %e, "cannot remove {IMDS_IP} from lo"),
            }
        }
    }
}

/// Whether 169.254.169.254 is already an address of `lo`.
fn is_local() -> Result<bool> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", "lo"])
        .output()
        .context("cannot run `ip` (iproute2), which imds_link_local needs")?;
    Ok(String::from_utf8_lossy(&out.stdout).contains(&format!("inet {IMDS_IP}/")))
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("cannot run `ip` (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Whether a TCP connection to `addr` succeeds within a second.
async fn answers(addr: SocketAddr) -> bool {
    matches!(tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probe_sees_a_listener_and_an_empty_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(answers(addr).await);
        drop(l);
        assert!(!answers(addr).await);
    }
}
