//! Connection-level guards applied to every request before routing: the peer must be on this
//! machine (loopback), and `Host` (and an absolute request target's authority) must name this
//! machine, which defeats DNS rebinding from a browser.
//!
//! Guards only decide; they never build a response (the route's dialect picks the body shape) and
//! never read the body. Dialect-level checks (`Metadata`, secrets, `X-Forwarded-For`) live with
//! the dialects because their order relative to other checks is part of each protocol.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::Request;
use http::header::HOST;

use crate::error::RequestError;

/// The link-local IMDS address, which clients that cannot be redirected put in `Host`.
const IMDS_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// The checks of a container listener bound at `listener`: any peer (the client key is the
/// authority), and a `Host` that names this machine, the listener's address or
/// `host.docker.internal`.
pub(crate) fn check_container(req: &Request, listener: SocketAddr) -> Result<(), RequestError> {
    if peer(req).is_none() {
        return Err(RequestError::NotLoopback);
    }
    let ok = |authority: &str| is_local_authority(authority) || names_listener(authority, listener);
    check_hosts(req, ok)
}

/// `host.docker.internal` or the listener's own address, with or without a port.
fn names_listener(authority: &str, listener: SocketAddr) -> bool {
    let Some(host) = strip_port(authority) else { return false };
    if host.eq_ignore_ascii_case("host.docker.internal") {
        return true;
    }
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.parse::<IpAddr>().is_ok_and(|ip| ip == listener.ip())
}

/// Checks the peer and the host the request is addressed to. `allow_remote`
/// (`allow_non_loopback`) admits other peers (the access policy still applies); `link_local`: the
/// listener is the 169.254.169.254 one, where that address is a local peer too.
pub(crate) fn check(req: &Request, allow_remote: bool, link_local: bool) -> Result<(), RequestError> {
    match peer(req) {
        Some(addr) if allow_remote || is_local_peer(addr.ip(), link_local) => {}
        _ => return Err(RequestError::NotLoopback),
    }
    check_hosts(req, is_local_authority)
}

/// One `Host` at most, and it (and an absolute request target's authority) accepted by `ok`.
fn check_hosts(req: &Request, ok: impl Fn(&str) -> bool) -> Result<(), RequestError> {
    let mut hosts = req.headers().get_all(HOST).iter();
    if let Some(host) = hosts.next() {
        let accepted = host.to_str().is_ok_and(&ok);
        if !accepted || hosts.next().is_some() {
            return Err(RequestError::BadHost);
        }
    }
    if let Some(authority) = req.uri().authority()
        && !ok(authority.as_str())
    {
        return Err(RequestError::BadHost);
    }
    Ok(())
}

/// The peer's address: real connect info, or the test double. Unknown peers are refused by
/// [`check`], so a router served without connect info fails closed.
pub(crate) fn peer(req: &Request) -> Option<SocketAddr> {
    peer_of(req.extensions())
}

/// The peer address of a request with these extensions (see [`crate::conn::peer`]).
pub(crate) fn peer_of(ext: &http::Extensions) -> Option<SocketAddr> {
    crate::conn::peer(ext)
}

/// A loopback peer, or 169.254.169.254 on the link-local listener (where that address is ours).
pub(crate) fn is_local_peer(ip: IpAddr, link_local: bool) -> bool {
    is_loopback(ip) || (link_local && ip == IpAddr::V4(IMDS_ADDR))
}

/// 127.0.0.0/8, ::1 and IPv4-mapped loopback (`::ffff:127.x.x.x`).
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// `localhost`, a loopback address or 169.254.169.254, with or without a port.
pub(crate) fn is_local_authority(authority: &str) -> bool {
    let Some(host) = strip_port(authority) else { return false };
    if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse().is_ok_and(|ip| is_loopback(IpAddr::V6(ip)));
    }
    host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback() || ip == IMDS_ADDR)
}

/// The host part of `host[:port]` / `[v6][:port]`; `None` when the port is not a number.
fn strip_port(authority: &str) -> Option<&str> {
    let (host, port) = match authority.rfind(':') {
        // A colon inside brackets belongs to an IPv6 address, not a port.
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    match port {
        Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) => None,
        _ => Some(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_peers() {
        for ip in ["127.0.0.1", "127.4.5.6", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "169.254.169.254", "::ffff:10.0.0.1", "::", "0.0.0.0", "fe80::1"] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn local_hosts() {
        for h in [
            "localhost",
            "LOCALHOST:50342",
            "127.0.0.1",
            "127.0.0.1:50342",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:50342",
            "[::ffff:127.0.0.1]:1",
            "169.254.169.254",
            "169.254.169.254:80",
        ] {
            assert!(is_local_authority(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:50342",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1",
            "[::2]:80",
            "::1",
            "127.0.0.1:",
            "127.0.0.1:x",
            "",
            "[::1",
            "169.254.169.253",
        ] {
            assert!(!is_local_authority(h), "{h}");
        }
    }
}
