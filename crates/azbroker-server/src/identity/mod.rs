//! Which local user opened a connection: the kernel's answer, looked up once per connection.
//!
//! Loopback TCP carries no credentials, but the kernel knows the owner of the client's socket:
//! the connection's other end is a socket on this machine whose local address is our peer's
//! address and whose remote address is our local address. [`tcp_owner`] asks the kernel for
//! exactly that socket with one `NETLINK_SOCK_DIAG` request (an O(1) hash lookup in the kernel)
//! and falls back to scanning `/proc/net/tcp{,6}` where netlink is not available. Unix sockets
//! use `SO_PEERCRED` ([`unix_owner`]).
//!
//! The kernel queries are blocking system calls (netlink waits up to a second; the `/proc` scan
//! reads a table that grows with the machine's connections), so the daemon calls them through
//! [`tcp_owner_off_runtime`]: on the blocking pool, at most [`MAX_CONCURRENT_LOOKUPS`] at a time,
//! and given up after [`LOOKUP_TIMEOUT`] — a runtime thread only ever awaits.
//!
//! A client socket has an owner in every state in which a process still holds it — a client that
//! half-closes its end after sending its request (`shutdown(SHUT_WR)`, the socket then waits in
//! `FIN_WAIT2`) is its owner's as much as an established one. Everything else fails closed: a
//! socket that is not found, is in a state without a real owner (`TIME_WAIT`, `SYN_RECV`,
//! `LISTEN`), is held by no process any more (inode 0: closed by its process, or a time-wait
//! socket in its `FIN_WAIT2` sub-state), or does not match the 4-tuple exactly yields an error,
//! never a guess — least of all uid 0, which the kernel reports for time-wait sockets.

mod proc_net;
mod sock_diag;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::sync::Semaphore;

pub use proc_net::parse_proc_net_tcp;
pub use sock_diag::{build_request, parse_reply};

/// Why a connection's owner is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    #[error("no socket for this connection in the kernel's table")]
    NotFound,
    #[error("the client socket is in TCP state {0}, which has no owner")]
    NoOwnerState(u8),
    #[error("the client socket (TCP state {0}) is no longer held by any process")]
    Orphaned(u8),
    #[error("the kernel's answer was malformed: {0}")]
    Malformed(&'static str),
    #[error("cannot query the kernel: {0}")]
    Io(String),
}

/// TCP states (include/net/tcp_states.h) in which the client socket is a full socket whose
/// recorded uid is its creator's: ESTABLISHED (1), SYN_SENT (2), FIN_WAIT1 (4), FIN_WAIT2 (5),
/// CLOSE (7), CLOSE_WAIT (8), LAST_ACK (9), CLOSING (11) — not SYN_RECV (3), TIME_WAIT (6),
/// LISTEN (10) or NEW_SYN_RECV (12).
pub(crate) fn state_has_owner(state: u8) -> bool {
    matches!(state, 1 | 2 | 4 | 5 | 7 | 8 | 9 | 11)
}

/// The owner of a client socket in `state` whose socket inode is `inode`: its `uid`, when the
/// state has an owner and a process still holds the socket (a time-wait socket in its
/// `FIN_WAIT2` sub-state reports state 5 with uid 0 and inode 0, as does a socket its process
/// closed).
pub(crate) fn owner_of(state: u8, uid: u32, inode: u64) -> Result<u32, OwnerError> {
    if !state_has_owner(state) {
        return Err(OwnerError::NoOwnerState(state));
    }
    if inode == 0 {
        return Err(OwnerError::Orphaned(state));
    }
    Ok(uid)
}

/// The uid owning the client end of the TCP connection whose server end has local address
/// `local` and peer address `peer`.
pub fn tcp_owner(local: SocketAddr, peer: SocketAddr) -> Result<u32, OwnerError> {
    let (local, peer) = (unmap(local), unmap(peer));
    if local.is_ipv4() != peer.is_ipv4() {
        return Err(OwnerError::NotFound);
    }
    match sock_diag::lookup(local, peer) {
        Err(sock_diag::Unavailable(why)) => {
            tracing::debug!(error = %why, "sock_diag unavailable; scanning /proc/net/tcp");
            proc_net::lookup(local, peer)
        }
        Ok(result) => result,
    }
}

/// Owner lookups running on the blocking pool at once; further connections wait their turn
/// (asynchronously) rather than taking more blocking threads.
pub const MAX_CONCURRENT_LOOKUPS: usize = 16;
/// The longest a connection waits for its owner (queueing included) before it counts as unknown.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

static LOOKUPS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_LOOKUPS);

/// [`tcp_owner`] without blocking the calling runtime thread: run on the blocking pool, bounded
/// in concurrency and time. A lookup that cannot run or does not finish in time is an error, so
/// the connection stays unidentified (fail closed).
pub async fn tcp_owner_off_runtime(local: SocketAddr, peer: SocketAddr) -> Result<u32, OwnerError> {
    let lookup = async {
        // The permit goes with the blocking work, so a lookup abandoned at the timeout still
        // counts until its system call returns.
        let permit = LOOKUPS.acquire().await.map_err(|e| OwnerError::Io(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            tcp_owner(local, peer)
        })
        .await
        .map_err(|e| OwnerError::Io(format!("owner lookup task failed: {e}")))?
    };
    tokio::time::timeout(LOOKUP_TIMEOUT, lookup)
        .await
        .unwrap_or_else(|_| Err(OwnerError::Io(format!("no answer within {LOOKUP_TIMEOUT:?}"))))
}

/// The uid on the other end of a unix-socket connection (`SO_PEERCRED`).
pub fn unix_owner(stream: &tokio::net::UnixStream) -> Result<u32, OwnerError> {
    stream.peer_cred().map(|c| c.uid()).map_err(|e| OwnerError::Io(e.to_string()))
}

/// `::ffff:a.b.c.d` → `a.b.c.d` (a dual-stack listener sees IPv4 clients that way, while the
/// client's own socket is an IPv4 one).
fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests;
