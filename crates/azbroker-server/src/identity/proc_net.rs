//! The fallback: find the client's socket in `/proc/net/tcp` / `/proc/net/tcp6` (one row per
//! socket: `sl local_address rem_address st ... uid ...`) and read its uid.
//!
//! Slower than sock_diag (the whole table is read and scanned), so it is used only where
//! netlink is not available. The parser accepts any text and never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{OwnerError, owner_of, unmap};

/// Reads the kernel's table(s) and finds the owner of the socket local=`peer`, remote=`local`.
pub(super) fn lookup(local: SocketAddr, peer: SocketAddr) -> Result<u32, OwnerError> {
    let read = |path: &str| std::fs::read_to_string(path).map_err(|e| OwnerError::Io(format!("{path}: {e}")));
    if peer.is_ipv4() {
        match parse_proc_net_tcp(&read("/proc/net/tcp")?, local, peer) {
            // A dual-stack client socket connected to an IPv4 address is listed in tcp6.
            Err(OwnerError::NotFound) => parse_proc_net_tcp(&read("/proc/net/tcp6")?, local, peer),
            other => other,
        }
    } else {
        parse_proc_net_tcp(&read("/proc/net/tcp6")?, local, peer)
    }
}

/// The uid in the row whose local address is `peer` and remote address is `local` (IPv4-mapped
/// addresses compare equal to their IPv4 form).
pub fn parse_proc_net_tcp(text: &str, local: SocketAddr, peer: SocketAddr) -> Result<u32, OwnerError> {
    let (local, peer) = (unmap(local), unmap(peer));
    for line in text.lines().skip(1) {
        let mut fields = line.split_ascii_whitespace();
        let (Some(_sl), Some(l), Some(r), Some(st)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let (Some(row_local), Some(row_remote)) = (parse_addr(l), parse_addr(r)) else { continue };
        if unmap(row_local) != peer || unmap(row_remote) != local {
            continue;
        }
        let state = u8::from_str_radix(st, 16).map_err(|_| OwnerError::Malformed("state"))?;
        // tx_queue:rx_queue, tr:tm->when, retrnsmt, then uid, timeout and inode.
        let uid = fields.nth(3).ok_or(OwnerError::Malformed("missing uid"))?;
        let inode = fields.nth(1).ok_or(OwnerError::Malformed("missing inode"))?;
        let uid = uid.parse().map_err(|_| OwnerError::Malformed("uid"))?;
        let inode = inode.parse().map_err(|_| OwnerError::Malformed("inode"))?;
        return owner_of(state, uid, inode);
    }
    Err(OwnerError::NotFound)
}

/// `0100007F:1F90` (IPv4: one native-order word) or 32 hex digits (IPv6: four native-order
/// words), then the port in hex.
fn parse_addr(field: &str) -> Option<SocketAddr> {
    let (hex, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = hex.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(w, 16).ok()?.to_ne_bytes())
    };
    let ip = match hex.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut octets = [0u8; 16];
            for i in 0..4 {
                octets[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}
