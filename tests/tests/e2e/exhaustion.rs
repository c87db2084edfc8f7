//! Resource exhaustion by other local users (issue 11, findings 2, 3, 5 and 12): real local users
//! hold many slow connections, or half-close theirs, while an allowed client's request must still
//! be answered. Every wait is bounded: the allowed client gives up after [`ANSWER_WITHIN`], which
//! the old behaviour (accept loop or handshakes waiting for a slot) exceeded.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use azbroker_tests::users::LocalUser;
use serde_json::Value;

use super::security::open_up;
use super::*;

const ARM: &str = "https://management.azure.com/";
const TOKEN: &str = "/metadata/identity/oauth2/token?api-version=2018-02-01";
/// How long the allowed client waits for its answer while an attack is held.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The system's Python for the other users' clients (a per-user install under /root, such as
/// pyenv's, is not theirs to run).
fn python() -> &'static str {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("python3")
}

/// Opens `n` connections (`tcp HOST:PORT` or `unix PATH`), sends `mode`'s bytes on each, prints
/// `ready`, waits `settle` seconds, prints how many the server has closed, then holds the rest
/// until killed.
const HOLD: &str = r#"
import socket, sys, time
kind, target, n, mode, settle = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
payload = {
    "none": b"",
    "slow-post": b"POST /oauth2/token HTTP/1.1\r\nHost: 127.0.0.1\r\nMetadata: true\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\nresource=",
    "admin-head": b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n",
}[mode]
socks = []
for _ in range(n):
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX)
        s.connect(target)
    else:
        host, port = target.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    try:
        if payload:
            s.sendall(payload)
    except OSError:
        pass
    socks.append(s)
print("ready", flush=True)
time.sleep(settle)
closed = 0
for s in socks:
    s.setblocking(False)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                closed += 1
                break
    except BlockingIOError:
        pass
    except OSError:
        closed += 1
print("closed", closed, flush=True)
time.sleep(120)
"#;

/// Sends one request (`unix PATH` or `tcp HOST:PORT`) and prints the status line.
const ONE: &str = r#"
import socket, sys
kind, target, request = sys.argv[1], sys.argv[2], sys.argv[3].encode().replace(b"|", b"\r\n")
if kind == "unix":
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(target)
else:
    host, port = target.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
s.sendall(request)
print(s.makefile("rb").readline().decode().strip(), flush=True)
"#;

/// `threads` x `per_thread` IMDS requests, each half-closed (`shutdown(SHUT_WR)`) right after it
/// is sent, then read to the end; prints how many got a 200 and the first other answers.
const HALF_CLOSE: &str = r#"
import socket, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
threads, per_thread, path = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nMetadata: true\r\nConnection: close\r\n\r\n" % path).encode()
deadline = time.monotonic() + 60
ok, other, lock = [0], [], threading.Lock()
def run():
    for _ in range(per_thread):
        if time.monotonic() > deadline:
            return
        answer = b""
        try:
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
            while True:
                data = s.recv(65536)
                if not data:
                    break
                answer += data
            s.close()
        except OSError as e:
            answer = repr(e).encode()
        first = answer.split(b"\r\n", 1)[0]
        with lock:
            if first.startswith(b"HTTP/1.1 200"):
                ok[0] += 1
            elif len(other) < 5:
                other.append(answer[:300])
ts = [threading.Thread(target=run) for _ in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
print(ok[0], other, flush=True)
"#;

/// A process of `user` holding connections (see [`HOLD`]); killed, with its connections, on drop.
struct Held {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Held {
    fn start(user: &LocalUser, kind: &str, target: &str, n: usize, mode: &str, settle_secs: u64) -> Held {
        let mut child = user
            .command(python())
            .args(["-c", HOLD, kind, target, &n.to_string(), mode, &settle_secs.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs as the local user");
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut held = Held { child, out };
        let mut line = String::new();
        held.out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the attacker opened its connections");
        held
    }

    /// How many of its connections the daemon had closed once the settle time was over.
    fn closed(&mut self) -> usize {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().strip_prefix("closed ").and_then(|n| n.parse().ok()).expect("a count")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request sent by `user`: the status line of the answer.
fn one_request(user: &LocalUser, kind: &str, target: &str, request: &str) -> String {
    let out = user.command(python()).args(["-c", ONE, kind, target, request]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A daemon with one profile (`contoso`, the default) whose extra keys are `profile_keys`.
fn one_profile(profile_keys: &str, server_extra: &str) -> (Authority, Daemon) {
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    let profiles = format!("[profiles.contoso]\nlogin = \"app\"\n{profile_keys}\n");
    let body = sp_config(&auth.url(), CONTOSO, CLIENT_ID, CLIENT_SECRET, &profiles);
    let server = format!("default_profile = \"contoso\"\n{server_extra}");
    let daemon = Daemon::start_with_server(&body, &server, &[]).expect("daemon starts");
    (auth, daemon)
}

fn impatient() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(ANSWER_WITHIN).build().unwrap()
}

/// This (root, allowed) process gets a token by IMDS GET and by Cloud Shell POST in time.
async fn served_in_time(daemon: &Daemon, during: &str) {
    let client = impatient();
    let r = client
        .get(daemon.url(&format!("{TOKEN}&resource={ARM}")))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap_or_else(|e| panic!("IMDS GET not answered in time while {during}: {e}"));
    assert_eq!(r.status(), 200, "while {during}");
    let r = client
        .post(daemon.url("/oauth2/token"))
        .header("Metadata", "true")
        .form(&[("resource", ARM)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("Cloud Shell POST not answered in time while {during}: {e}"));
    assert_eq!(r.status(), 200, "while {during}");
}

/// Finding 2: a user with no profile, then a user with one, each hold 100 connections whose POST
/// body never comes (more than the 48 slots); the allowed client is still answered, and the
/// slots over the holder's own share are answered and closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_bodies_from_other_users_do_not_stall_token_serving() {
    let (Some(outsider), Some(insider)) =
        (LocalUser::ensure("azb-sec-slow"), LocalUser::ensure("azb-sec-slowok"))
    else {
        return;
    };
    let keys = format!("allowed_users = [\"root\", \"{}\"]", insider.name);
    let (_auth, daemon) = one_profile(&keys, "[server.limits]\nmax_connections = 48\n");
    let target = daemon.addr.to_string();
    for (who, attacker) in [("an outsider", &outsider), ("an allowed user", &insider)] {
        let mut held = Held::start(attacker, "tcp", &target, 100, "slow-post", 2);
        served_in_time(&daemon, &format!("{who} holds 100 slow bodies")).await;
        let closed = held.closed();
        assert!(closed >= 50, "{who}: only {closed} of 100 slow connections were answered and closed");
    }
}

/// Finding 3: another user holds 200 TCP connections to the HTTPS (Service Fabric) listener
/// without ever starting the handshake; the allowed client's handshake and request are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tls_handshakes_from_another_user_do_not_block_service_fabric() {
    let Some(attacker) = LocalUser::ensure("azb-sec-slow") else { return };
    let (_auth, daemon) = one_profile("", "");
    let vars = daemon.env(&["--dialect", "service-fabric"]).unwrap();
    let endpoint = env_value(&vars, "IDENTITY_ENDPOINT");
    let header = env_value(&vars, "IDENTITY_HEADER");
    let pem = std::fs::read(env_value(&vars, "NODE_EXTRA_CA_CERTS")).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .timeout(ANSWER_WITHIN)
        .build()
        .unwrap();
    let _held = Held::start(&attacker, "tcp", &daemon.tls_addr.to_string(), 200, "none", 1);
    let r = client
        .get(format!("{endpoint}?api-version=2019-07-01-preview&resource={ARM}"))
        .header("Secret", header)
        .send()
        .await
        .expect("the Service Fabric request is answered in time while 200 handshakes idle");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["access_token"].is_string());
}

/// Finding 5: a read-only `admin_group` member holds 80 connections to the admin socket; the
/// ones over its share are closed, the daemon's user is answered, and the read-only member may
/// read the status but neither list a login's tenants (an upstream call with the login's
/// tokens) nor long-poll a sign-in flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_socket_connections_are_bounded_per_user_and_tenants_needs_an_administrator() {
    let Some(reader) = LocalUser::ensure("azb-sec-admin") else { return };
    let server = format!("admin_group = \"{}\"\n[server.limits]\nmax_connections = 32\n", reader.gid);
    let (_auth, daemon) = one_profile("", &server);
    open_up(&daemon);
    let socket = daemon.dir.path().join("run/admin.sock");
    let socket = socket.to_str().unwrap();
    let mut held = Held::start(&reader, "unix", socket, 80, "admin-head", 2);
    let status = daemon.cli(&["status"]).unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let closed = held.closed();
    assert!(closed >= 50, "only {closed} of 80 idle admin connections were closed");
    drop(held);

    let get = |path: &str| format!("GET {path} HTTP/1.1|Host: localhost|Connection: close||");
    assert_eq!(one_request(&reader, "unix", socket, &get("/v1/status")), "HTTP/1.1 200 OK");
    let tenants = one_request(&reader, "unix", socket, &get("/v1/logins/app/tenants"));
    assert_eq!(tenants, "HTTP/1.1 403 Forbidden");
    // Nor may it hold a long poll on a sign-in flow.
    let flow = one_request(&reader, "unix", socket, &get("/v1/logins/app/flows/f1?wait=20"));
    assert_eq!(flow, "HTTP/1.1 403 Forbidden");
    assert!(daemon.log().contains("refused to a read-only peer"), "the refusal is logged");
}

/// Finding 12: 400 requests from a local user that half-closes each connection right after
/// sending it (its socket then sits in FIN_WAIT2 while it waits) are all answered with a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_requests_are_answered_under_load() {
    let Some(user) = LocalUser::ensure("azb-sec-half") else { return };
    let (_auth, daemon) = one_profile(&format!("allowed_users = [\"{}\"]", user.name), "");
    let path = format!("{TOKEN}&resource={ARM}");
    let out = user
        .command(python())
        .args(["-c", HALF_CLOSE, &daemon.addr.to_string(), "8", "50", &path])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let ok: usize = text.split_whitespace().next().and_then(|n| n.parse().ok()).expect("a count");
    assert_eq!(ok, 400, "half-closed requests not all answered: {text}");
}
