//! Who is on the other end of a unix-socket connection (`SO_PEERCRED`), and who may be: the
//! daemon's own user and root fully, members of `admin_group` (primary or supplementary group,
//! the latter read from `/proc/<pid>/status`) for reading only.

use tokio::net::UnixStream;

/// The peer's credentials as the kernel recorded them when it connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

impl PeerCred {
    /// The credentials of `stream`'s peer (`SO_PEERCRED`).
    pub fn of(stream: &UnixStream) -> Self {
        match stream.peer_cred() {
            Ok(c) => Self { uid: c.uid(), gid: c.gid(), pid: c.pid() },
            // Unknown peers must never be admitted: no uid is u32::MAX (it is "(uid_t)-1").
            Err(_) => Self { uid: u32::MAX, gid: u32::MAX, pid: None },
        }
    }
}

/// What a peer may do on the admin socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAccess {
    /// Everything (the daemon's user, root).
    Full,
    /// `GET` endpoints only (`status`, the client environment): members of `admin_group`.
    Read,
    /// Their own corner of a shared machine (`self_service`): their personal login, profiles and
    /// workspaces, their own status, the client environment — nothing of anyone else.
    SelfService,
    None,
}

/// The uids and gids admitted to a socket. Root (uid 0) is always admitted.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    uids: Vec<u32>,
    gids: Vec<u32>,
    /// `None`: no self-service; `Some([])`: every local user; else members of these groups.
    self_service: Option<Vec<u32>>,
}

impl PeerPolicy {
    /// Admits `uids` (plus root) fully, and members of `gids` for reading.
    pub fn new(uids: Vec<u32>, gids: Vec<u32>) -> Self {
        Self { uids, gids, self_service: None }
    }

    /// Also admits other local users to their own corner (`self_service`): all of them when
    /// `groups` is empty, else members of one of `groups`.
    pub fn with_self_service(mut self, groups: Vec<u32>) -> Self {
        self.self_service = Some(groups);
        self
    }

    /// Full access for the listed uids, read access for members of the listed groups (the
    /// peer's primary group, or a supplementary group of its process).
    pub fn access(&self, peer: &PeerCred) -> PeerAccess {
        if peer.uid == u32::MAX {
            return PeerAccess::None;
        }
        if peer.uid == 0 || self.uids.contains(&peer.uid) {
            return PeerAccess::Full;
        }
        if is_member(peer, &self.gids) {
            return PeerAccess::Read;
        }
        match &self.self_service {
            Some(groups) if groups.is_empty() || is_member(peer, groups) => PeerAccess::SelfService,
            _ => PeerAccess::None,
        }
    }

    /// Whether the socket must let every local user connect (their uid decides the rest).
    pub fn self_service(&self) -> bool {
        self.self_service.is_some()
    }

    pub fn allows(&self, peer: &PeerCred) -> bool {
        self.access(peer) != PeerAccess::None
    }
}

/// Whether the peer's primary group, or a supplementary group of its process, is in `gids`.
fn is_member(peer: &PeerCred, gids: &[u32]) -> bool {
    !gids.is_empty()
        && (gids.contains(&peer.gid)
            || peer
                .pid
                .and_then(process_groups)
                .is_some_and(|groups| groups.iter().any(|g| gids.contains(g))))
}

/// The supplementary groups of process `pid` (`Groups:` in `/proc/<pid>/status`).
fn process_groups(pid: i32) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_groups(&status)
}

/// The `Groups:` line of a `/proc/<pid>/status` text.
pub(crate) fn parse_status_groups(status: &str) -> Option<Vec<u32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:"))?;
    line.split_ascii_whitespace().map(|g| g.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> PeerCred {
        PeerCred { uid, gid, pid: None }
    }

    #[test]
    fn root_and_listed_uids_get_everything_group_members_read_only() {
        let p = PeerPolicy::new(vec![1000], vec![2000]);
        assert_eq!(p.access(&peer(0, 0)), PeerAccess::Full);
        assert_eq!(p.access(&peer(1000, 1000)), PeerAccess::Full);
        assert_eq!(p.access(&peer(1001, 2000)), PeerAccess::Read);
        assert_eq!(p.access(&peer(1001, 1001)), PeerAccess::None);
    }

    #[test]
    fn supplementary_groups_come_from_the_peer_process() {
        let status = "Name:\tbash\nGid:\t1001\t1001\t1001\t1001\nGroups:\t4 27 2000 \nNSpid:\t9\n";
        assert_eq!(parse_status_groups(status), Some(vec![4, 27, 2000]));
        assert_eq!(parse_status_groups("Groups:\n"), Some(vec![]));
        assert_eq!(parse_status_groups("Groups:\tx\n"), None);
        // This very process: its supplementary groups (none, or some) parse.
        assert!(process_groups(std::process::id() as i32).is_some());
        // A peer whose pid names a process in the group is a reader even with another primary group.
        let me = std::process::id() as i32;
        let groups = process_groups(me).unwrap();
        if let Some(g) = groups.first() {
            let p = PeerPolicy::new(vec![], vec![*g]);
            assert_eq!(p.access(&PeerCred { uid: 4242, gid: 4242, pid: Some(me) }), PeerAccess::Read);
        }
    }

    #[test]
    fn self_service_admits_other_users_to_their_own_corner_only() {
        let all = PeerPolicy::new(vec![1000], vec![2000]).with_self_service(vec![]);
        assert_eq!(all.access(&peer(1001, 1001)), PeerAccess::SelfService);
        assert_eq!(all.access(&peer(1001, 2000)), PeerAccess::Read, "admin_group keeps reading everything");
        assert_eq!(all.access(&peer(0, 0)), PeerAccess::Full);
        assert_eq!(all.access(&peer(u32::MAX, u32::MAX)), PeerAccess::None);
        let some = PeerPolicy::new(vec![1000], vec![]).with_self_service(vec![3000]);
        assert_eq!(some.access(&peer(1001, 3000)), PeerAccess::SelfService);
        assert_eq!(some.access(&peer(1002, 1002)), PeerAccess::None);
        assert!(!PeerPolicy::new(vec![], vec![]).self_service());
    }

    #[test]
    fn an_unknown_peer_is_refused_even_by_an_open_group_list() {
        let p = PeerPolicy::new(vec![], vec![u32::MAX]);
        assert!(!p.allows(&peer(u32::MAX, u32::MAX)));
    }
}
