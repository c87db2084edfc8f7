//! One `SOCK_DIAG_BY_FAMILY` exact-match request over `NETLINK_SOCK_DIAG` (what `ss` uses): the
//! kernel finds the socket by its 4-tuple in its connection hash and reports its owner's uid.
//!
//! The wire structs (`linux/netlink.h`, `linux/inet_diag.h`) are written and read by hand in
//! native byte order (ports and addresses in network order), so no unsafe code is needed; the
//! parser checks every length and the exact 4-tuple of the answer.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::{OwnerError, owner_of};

const AF_NETLINK: i32 = 16;
const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const ENOENT: i32 = 2;
const NLMSG_HDR_LEN: usize = 16;
/// `struct inet_diag_sockid`: sport, dport, src[4], dst[4], if, cookie[2].
const SOCKID_LEN: usize = 48;
/// `struct inet_diag_msg`: family, state, timer, retrans, id, expires, rqueue, wqueue, uid, inode.
const DIAG_MSG_LEN: usize = 4 + SOCKID_LEN + 20;
const UID_OFFSET: usize = 4 + SOCKID_LEN + 12;
const INODE_OFFSET: usize = UID_OFFSET + 4;
/// More than one answer ever needs; an answer that does not fit is malformed.
const REPLY_BUF: usize = 4096;

/// Netlink itself cannot be used here (no such socket family, seccomp, timeout): try elsewhere.
pub(super) struct Unavailable(pub(super) String);

/// Asks the kernel for the owner of the socket whose local end is `peer` and remote end `local`.
pub(super) fn lookup(local: SocketAddr, peer: SocketAddr) -> Result<Result<u32, OwnerError>, Unavailable> {
    let unavailable = |e: std::io::Error| Unavailable(e.to_string());
    let socket = Socket::new(Domain::from(AF_NETLINK), Type::DGRAM, Some(Protocol::from(NETLINK_SOCK_DIAG)))
        .map_err(unavailable)?;
    socket.set_read_timeout(Some(Duration::from_secs(1))).map_err(unavailable)?;
    socket.send(&build_request(local, peer, 1)).map_err(unavailable)?;
    let mut buf = [0u8; REPLY_BUF];
    let n = (&socket).read(&mut buf).map_err(unavailable)?;
    Ok(parse_reply(&buf[..n], local, peer))
}

/// The request: `nlmsghdr` + `inet_diag_req_v2` naming the client's socket (`src` = the peer, as
/// seen from the client's side) without `NLM_F_DUMP`, so the kernel does an exact lookup.
pub fn build_request(local: SocketAddr, peer: SocketAddr, seq: u32) -> Vec<u8> {
    let family = if peer.is_ipv4() { AF_INET } else { AF_INET6 };
    let len = NLMSG_HDR_LEN + 8 + SOCKID_LEN;
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    b.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state; not used by exact lookups
    write_sockid(&mut b, peer, local);
    b
}

fn write_sockid(b: &mut Vec<u8>, src: SocketAddr, dst: SocketAddr) {
    b.extend_from_slice(&src.port().to_be_bytes());
    b.extend_from_slice(&dst.port().to_be_bytes());
    b.extend_from_slice(&addr16(src.ip()));
    b.extend_from_slice(&addr16(dst.ip()));
    b.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    b.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
}

/// An address as `__be32[4]`: IPv4 in the first word, the rest zero.
fn addr16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&v4.octets());
            a
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Reads the kernel's answer to [`build_request`]: the owner's uid, or why there is none.
pub fn parse_reply(buf: &[u8], local: SocketAddr, peer: SocketAddr) -> Result<u32, OwnerError> {
    let mut rest = buf;
    while rest.len() >= NLMSG_HDR_LEN {
        let len = u32::from_ne_bytes(word(rest, 0)) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < NLMSG_HDR_LEN || len > rest.len() {
            return Err(OwnerError::Malformed("netlink message length"));
        }
        let payload = &rest[NLMSG_HDR_LEN..len];
        match kind {
            NLMSG_ERROR => {
                let errno = payload.get(..4).map(|w| i32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
                return match errno {
                    Some(e) if e == -ENOENT => Err(OwnerError::NotFound),
                    Some(e) => Err(OwnerError::Io(format!("netlink error {}", -i64::from(e)))),
                    None => Err(OwnerError::Malformed("short netlink error")),
                };
            }
            NLMSG_DONE => return Err(OwnerError::NotFound),
            SOCK_DIAG_BY_FAMILY => return diag_msg(payload, local, peer),
            _ => {}
        }
        // Messages are padded to 4 bytes.
        let next = len.div_ceil(4) * 4;
        rest = rest.get(next..).unwrap_or_default();
    }
    Err(OwnerError::NotFound)
}

fn diag_msg(m: &[u8], local: SocketAddr, peer: SocketAddr) -> Result<u32, OwnerError> {
    if m.len() < DIAG_MSG_LEN {
        return Err(OwnerError::Malformed("short inet_diag_msg"));
    }
    let id = &m[4..4 + SOCKID_LEN];
    let src = reply_addr(m[0], &id[4..20], u16::from_be_bytes([id[0], id[1]]))?;
    let dst = reply_addr(m[0], &id[20..36], u16::from_be_bytes([id[2], id[3]]))?;
    // A dual-stack client socket reports IPv4 peers as `::ffff:a.b.c.d`.
    if super::unmap(src) != super::unmap(peer) || super::unmap(dst) != super::unmap(local) {
        return Err(OwnerError::NotFound);
    }
    let (uid, inode) = (u32::from_ne_bytes(word(m, UID_OFFSET)), u32::from_ne_bytes(word(m, INODE_OFFSET)));
    owner_of(m[1], uid, u64::from(inode))
}

fn reply_addr(family: u8, raw: &[u8], port: u16) -> Result<SocketAddr, OwnerError> {
    let ip = match family {
        AF_INET => IpAddr::from([raw[0], raw[1], raw[2], raw[3]]),
        AF_INET6 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(raw);
            IpAddr::from(a)
        }
        _ => return Err(OwnerError::Malformed("address family")),
    };
    Ok(SocketAddr::new(ip, port))
}

fn word(b: &[u8], at: usize) -> [u8; 4] {
    [b[at], b[at + 1], b[at + 2], b[at + 3]]
}
