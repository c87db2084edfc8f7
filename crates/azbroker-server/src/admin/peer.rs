//! Who is on the other end of a unix-socket connection (`SO_PEERCRED`), and who may be.

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::UnixListener;

/// The peer's credentials as the kernel recorded them when it connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for PeerCred {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(c) => Self { uid: c.uid(), gid: c.gid(), pid: c.pid() },
            // Unknown peers must never be admitted: no uid is u32::MAX (it is "(uid_t)-1").
            Err(_) => Self { uid: u32::MAX, gid: u32::MAX, pid: None },
        }
    }
}

/// The uids and gids admitted to a socket. Root (uid 0) is always admitted.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl PeerPolicy {
    /// Admits `uids` (plus root) and peers whose primary group is one of `gids`.
    pub fn new(uids: Vec<u32>, gids: Vec<u32>) -> Self {
        Self { uids, gids }
    }

    pub fn allows(&self, peer: &PeerCred) -> bool {
        if peer.uid == u32::MAX {
            return false;
        }
        peer.uid == 0 || self.uids.contains(&peer.uid) || self.gids.contains(&peer.gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> PeerCred {
        PeerCred { uid, gid, pid: None }
    }

    #[test]
    fn root_listed_uids_and_groups_are_admitted() {
        let p = PeerPolicy::new(vec![1000], vec![2000]);
        assert!(p.allows(&peer(0, 0)));
        assert!(p.allows(&peer(1000, 1000)));
        assert!(p.allows(&peer(1001, 2000)));
        assert!(!p.allows(&peer(1001, 1001)));
    }

    #[test]
    fn an_unknown_peer_is_refused_even_by_an_open_group_list() {
        let p = PeerPolicy::new(vec![], vec![u32::MAX]);
        assert!(!p.allows(&peer(u32::MAX, u32::MAX)));
    }
}
