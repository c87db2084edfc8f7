//! The owner lookups against the real kernel (this process's sockets, a socket opened by another
//! uid through `setpriv`, a time-wait socket) and the parsers against crafted input.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// Both lookup paths for the accepted `stream`.
fn both(stream: &std::net::TcpStream) -> (Result<u32, OwnerError>, Result<u32, OwnerError>) {
    let (local, peer) = (stream.local_addr().unwrap(), stream.peer_addr().unwrap());
    (tcp_owner(local, peer), proc_net::lookup(local, peer))
}

#[test]
fn own_connections_are_ours_over_ipv4_and_ipv6() {
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let Ok(listener) = std::net::TcpListener::bind(addr) else { continue };
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (diag, proc) = both(&server);
        assert_eq!(diag, Ok(my_uid()), "{addr}");
        assert_eq!(proc, Ok(my_uid()), "{addr}");
    }
}

/// The off-runtime lookup answers what the direct one does, even on a single-threaded runtime
/// (the blocking pool does the work) and for many connections at once (more than the lookup bound).
#[tokio::test(flavor = "current_thread")]
async fn off_runtime_lookup_matches_and_queues_beyond_its_bound() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut pairs = Vec::new();
    for _ in 0..MAX_CONCURRENT_LOOKUPS * 2 {
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        pairs.push((client, server.local_addr().unwrap(), peer));
    }
    let mut lookups = tokio::task::JoinSet::new();
    for (_, local, peer) in &pairs {
        lookups.spawn(tcp_owner_off_runtime(*local, *peer));
    }
    let mut answered = 0;
    while let Some(owner) = lookups.join_next().await {
        assert_eq!(owner.unwrap(), Ok(my_uid()));
        answered += 1;
    }
    assert_eq!(answered, pairs.len());
    // A 4-tuple with no socket behind it stays unknown (fail closed).
    let gone = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    assert_eq!(tcp_owner_off_runtime(addr, gone).await, Err(OwnerError::NotFound));
}

/// A shell as uid 65534 holding a connection to `port` open for a few seconds.
fn connect_as_nobody(port: u16) -> Child {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/127.0.0.1/{port}; sleep 5"))
        .stdin(Stdio::null())
        .spawn()
        .expect("setpriv (util-linux) runs")
}

#[test]
fn another_users_connection_is_attributed_to_that_user() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut child = connect_as_nobody(listener.local_addr().unwrap().port());
    let (server, _) = listener.accept().unwrap();
    let (diag, proc) = both(&server);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(diag, Ok(65534));
    assert_eq!(proc, Ok(65534));
}

#[test]
fn a_time_wait_socket_is_never_taken_for_root() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let (local, peer) = (server.local_addr().unwrap(), server.peer_addr().unwrap());
    drop(client); // the client closes first ...
    let mut buf = [0u8; 1];
    server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(server.read(&mut buf).unwrap(), 0);
    server.shutdown(std::net::Shutdown::Write).unwrap(); // ... and ends in TIME_WAIT
    std::thread::sleep(Duration::from_millis(50));
    let (diag, proc) = (tcp_owner(local, peer), proc_net::lookup(local, peer));
    assert_eq!(diag, Err(OwnerError::NoOwnerState(6)));
    assert_eq!(proc, Err(OwnerError::NoOwnerState(6)));
}

/// A client that half-closes after its request (its socket then in FIN_WAIT2 while it waits for
/// the answer) is still its owner's.
#[test]
fn a_half_closed_client_is_still_its_owners() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(server.read(&mut [0u8; 1]).unwrap(), 0, "the client's FIN arrived (and was acked)");
    std::thread::sleep(Duration::from_millis(50));
    let (diag, proc) = both(&server);
    assert_eq!(diag, Ok(my_uid()));
    assert_eq!(proc, Ok(my_uid()));
    drop(client);
}

/// A client that closed its socket (now a FIN_WAIT2 time-wait socket that the kernel reports
/// with uid 0) has no owner — never root.
#[test]
fn a_closed_clients_fin_wait2_socket_is_never_taken_for_root() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    drop(client);
    server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(server.read(&mut [0u8; 1]).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(50));
    let (diag, proc) = both(&server);
    assert!(matches!(diag, Err(OwnerError::Orphaned(_) | OwnerError::NoOwnerState(_))), "{diag:?}");
    assert!(matches!(proc, Err(OwnerError::Orphaned(_) | OwnerError::NoOwnerState(_))), "{proc:?}");
}

#[test]
fn a_vanished_peer_is_not_found() {
    let local: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let peer: SocketAddr = "127.0.0.1:2".parse().unwrap();
    assert_eq!(tcp_owner(local, peer), Err(OwnerError::NotFound));
    assert_eq!(proc_net::lookup(local, peer), Err(OwnerError::NotFound));
}

const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:C4EC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0
   1: 0100007F:D431 0100007F:C4EC 01 00000000:00000000 00:00000000 00000000  1001        0 222 1 0 20 4 30 10 -1
   2: 0100007F:C4EC 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0 20 4 30 10 -1
   3: 0100007F:D432 0100007F:C4EC 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0
";

#[test]
fn proc_table_rows_are_matched_by_the_exact_tuple() {
    let server: SocketAddr = (Ipv4Addr::LOCALHOST, 0xC4EC).into();
    let peer: SocketAddr = (Ipv4Addr::LOCALHOST, 0xD431).into();
    assert_eq!(parse_proc_net_tcp(TABLE, server, peer), Ok(1001));
    // Our own end of the connection is never mistaken for the client's.
    assert_eq!(parse_proc_net_tcp(TABLE, peer, server), Ok(0));
    let tw: SocketAddr = (Ipv4Addr::LOCALHOST, 0xD432).into();
    assert_eq!(parse_proc_net_tcp(TABLE, server, tw), Err(OwnerError::NoOwnerState(6)));
    let other: SocketAddr = (Ipv4Addr::new(127, 0, 0, 2), 0xD431).into();
    assert_eq!(parse_proc_net_tcp(TABLE, server, other), Err(OwnerError::NotFound));
    let v6 = "sl local rem\n 0: 0000000000000000FFFF00000100007F:D431 0000000000000000FFFF00000100007F:C4EC 01 0:0 0:0 0 42 0 99\n";
    assert_eq!(parse_proc_net_tcp(v6, server, peer), Ok(42), "v4-mapped rows match IPv4 peers");
    assert_eq!(parse_proc_net_tcp("garbage\n 0: zz:zz", server, peer), Err(OwnerError::NotFound));
    let orphan = "h\n 0: 0100007F:D431 0100007F:C4EC 05 0:0 03:00001770 0 0 0 0\n";
    assert_eq!(parse_proc_net_tcp(orphan, server, peer), Err(OwnerError::Orphaned(5)));
    let half_closed = "h\n 0: 0100007F:D431 0100007F:C4EC 05 0:0 00:0 0 1001 0 4242 1\n";
    assert_eq!(parse_proc_net_tcp(half_closed, server, peer), Ok(1001));
    let short = "h\n 0: 0100007F:D431 0100007F:C4EC 01 0:0";
    assert_eq!(parse_proc_net_tcp(short, server, peer), Err(OwnerError::Malformed("missing uid")));
}

fn diag_reply(family: u8, state: u8, src: SocketAddr, dst: SocketAddr, uid: u32) -> Vec<u8> {
    let req = build_request(dst, src, 9);
    let mut msg = Vec::new();
    msg.extend_from_slice(&[family, state, 0, 0]);
    msg.extend_from_slice(&req[24..24 + 48]); // the sockid as we asked for it
    msg.extend_from_slice(&[0; 12]);
    msg.extend_from_slice(&uid.to_ne_bytes());
    msg.extend_from_slice(&7u32.to_ne_bytes());
    let mut out = ((16 + msg.len()) as u32).to_ne_bytes().to_vec();
    out.extend_from_slice(&20u16.to_ne_bytes());
    out.extend_from_slice(&[0; 10]);
    out.extend_from_slice(&msg);
    out
}

#[test]
fn diag_replies_are_checked_before_their_uid_is_believed() {
    let server: SocketAddr = "127.0.0.1:50342".parse().unwrap();
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    assert_eq!(parse_reply(&diag_reply(2, 1, peer, server, 1001), server, peer), Ok(1001));
    assert_eq!(parse_reply(&diag_reply(2, 5, peer, server, 1001), server, peer), Ok(1001), "FIN_WAIT2");
    // A time-wait socket in its FIN_WAIT2 sub-state: state 5, uid 0, inode 0.
    let mut orphan = diag_reply(2, 5, peer, server, 0);
    orphan[16 + 68..16 + 72].fill(0);
    assert_eq!(parse_reply(&orphan, server, peer), Err(OwnerError::Orphaned(5)));
    assert_eq!(
        parse_reply(&diag_reply(2, 6, peer, server, 0), server, peer),
        Err(OwnerError::NoOwnerState(6))
    );
    let elsewhere: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    assert_eq!(parse_reply(&diag_reply(2, 1, elsewhere, server, 5), server, peer), Err(OwnerError::NotFound));
    let reply = diag_reply(2, 1, peer, server, 5);
    assert_eq!(parse_reply(&reply[..40], server, peer), Err(OwnerError::Malformed("netlink message length")));
    let mut enoent = 20u32.to_ne_bytes().to_vec();
    enoent.extend_from_slice(&2u16.to_ne_bytes());
    enoent.extend_from_slice(&[0; 10]);
    enoent.extend_from_slice(&(-2i32).to_ne_bytes());
    assert_eq!(parse_reply(&enoent, server, peer), Err(OwnerError::NotFound));
    assert_eq!(parse_reply(&[], server, peer), Err(OwnerError::NotFound));
}
