//! Abuse by another local user, through the real daemon (issue 11, findings 7, 9, 10, 11): a
//! user with no profile flooding denials gets a few log lines and a counted summary, not one
//! line each; `/metrics` on a token listener answers only administrators; case variants of an
//! allowed resource share one cache entry and one upstream call; one user spraying distinct
//! resources is refused past its share of the profile's cache; the embedded authority of
//! `--local-authority` serves no one but the daemon; and one user's flood of Arc challenges
//! neither evicts another user's key nor leaves expired key files on disk.
//!
//! The other user is a real account (`azb-sec-noisy`, created once) whose shell speaks raw
//! HTTP/1.1 to loopback; every loop is bounded in count and time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use azbroker_tests::users::LocalUser;
use serde_json::Value;

use super::*;

const ARM: &str = "https://management.azure.com/";
const IMDS: &str = "/metadata/identity/oauth2/token?api-version=2018-02-01";
const ARC: &str = "/arc/metadata/identity/oauth2/token?api-version=2020-06-01";

fn noisy() -> Option<LocalUser> {
    LocalUser::ensure("azb-sec-noisy")
}

/// Sends the raw HTTP/1.1 `request` (with `Connection: close`) `times` times to
/// 127.0.0.1:`port` from a shell running as `user`; returns each answer's status line (and, when
/// `whole`, the whole answers), concatenated.
fn raw_as(user: &LocalUser, port: u16, request: &str, times: u32, whole: bool) -> String {
    let read = if whole { "timeout 10 cat <&3" } else { "timeout 10 head -n 1 <&3" };
    let script = format!(
        "for _ in $(seq {times}); do exec 3<>/dev/tcp/127.0.0.1/{port} || continue; \
         printf '%s' \"$REQ\" >&3; {read}; exec 3<&-; done"
    );
    let out = user
        .command("timeout")
        .args(["120", "bash", "-c", &script])
        .env("REQ", request)
        .output()
        .expect("bash runs as the other user");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn get(path_and_query: &str, headers: &str) -> String {
    format!("GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n")
}

/// Polls `done` every 200 ms for at most `limit`.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done()
}

/// A daemon whose only profile is root's: every other user is denied by policy.
fn root_only(extra_profile_keys: &str) -> (Authority, Daemon) {
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    let profiles =
        format!("[profiles.contoso]\nlogin = \"app\"\nallowed_users = [\"root\"]\n{extra_profile_keys}\n");
    let body = sp_config(&auth.url(), CONTOSO, CLIENT_ID, CLIENT_SECRET, &profiles);
    let daemon =
        Daemon::start_with_server(&body, "default_profile = \"contoso\"", &[]).expect("daemon starts");
    (auth, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_denials_is_logged_as_a_few_lines_and_a_counted_summary() {
    let Some(user) = noisy() else { return };
    let (_auth, daemon) = root_only("");
    let denied = get(&format!("{IMDS}&resource={ARM}"), "Metadata: true\r\n");
    let answers = raw_as(&user, daemon.addr.port(), &denied, 200, false);
    assert_eq!(answers.matches(" 403 ").count(), 200, "every request is answered and denied: {answers}");
    let uid = format!("uid={}", user.uid);
    let denial_lines = |log: &str| {
        log.lines().filter(|l| l.contains("token request denied by policy") && l.contains(&uid)).count()
    };
    let logged = denial_lines(&daemon.log());
    assert!((1..=10).contains(&logged), "200 denials of one uid wrote {logged} warning lines");
    // Once the window has passed, the next denial brings the count of those not written.
    let mut sent = 200;
    let summarised = eventually(Duration::from_secs(30), || {
        raw_as(&user, daemon.addr.port(), &denied, 1, false);
        sent += 1;
        daemon.log().lines().any(|l| l.contains("denials suppressed") && l.contains(&uid))
    })
    .await;
    let log = daemon.log();
    assert!(summarised, "no summary line:\n{log}");
    let suppressed: u64 = log
        .lines()
        .filter(|l| l.contains("denials suppressed") && l.contains(&uid))
        .map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("suppressed="))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no count in {l}"))
        })
        .sum();
    assert!(suppressed > 0);
    assert_eq!(denial_lines(&log) as u64 + suppressed, sent, "every denial is written or counted");
    // root is still served, and logged as usual.
    let r = http().get(daemon.url(&format!("{IMDS}&resource={ARM}"))).header("Metadata", "true").send().await;
    assert_eq!(r.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_administrators_only_and_resource_case_variants_share_one_entry() {
    let Some(user) = noisy() else { return };
    let (auth, daemon) = root_only("allowed_resources = [\"https://vault.azure.net\"]");
    let answer = raw_as(&user, daemon.addr.port(), &get("/metrics", ""), 1, true);
    assert!(answer.starts_with("HTTP/1.1 403"), "another user read /metrics: {answer}");
    assert!(!answer.contains("azbroker_"), "{answer}");
    // The daemon's own user (root here) reads them.
    let r = http().get(daemon.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("azbroker_build_info"));

    let before = auth.token_requests();
    let variants = [
        "https://vault.azure.net",
        "https://VAULT.azure.net",
        "HTTPS://Vault.Azure.Net",
        "https://vault.AZURE.net",
    ];
    for resource in variants {
        let r = http()
            .get(daemon.url(&format!("{IMDS}&resource={resource}")))
            .header("Metadata", "true")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{resource}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["resource"], resource, "the client's own string is echoed");
    }
    assert_eq!(auth.token_requests() - before, 1, "case variants of one resource cost one upstream call");
    let metrics = http().get(daemon.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let entries = metrics.lines().filter(|l| l.starts_with("azbroker_token_expiry_seconds{")).count();
    assert_eq!(entries, 1, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_spraying_resources_is_refused_past_its_share_and_another_user_is_served() {
    let (Some(noisy), Some(other)) = (noisy(), LocalUser::ensure("azb-sec-victim")) else { return };
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    // Open to every local user, no allowed_resources: only the cache bounds stand in the way
    // (the profile's own, and the server's per-user share).
    let profiles = "[profiles.shared]\nlogin = \"app\"\nallowed_users = [\"*\"]\nmax_cached_resources = 8\n";
    let body = sp_config(&auth.url(), CONTOSO, CLIENT_ID, CLIENT_SECRET, profiles);
    let server = "default_profile = \"shared\"\n[server.limits]\nmax_cached_resources_per_user = 3\n";
    let daemon = Daemon::start_with_server(&body, server, &[]).expect("daemon starts");
    let port = daemon.addr.port();
    let before = auth.token_requests();
    let mut answers = Vec::new();
    for i in 0..20 {
        let request = get(&format!("{IMDS}&resource=api://junk-{i}"), "Metadata: true\r\n");
        answers.push(raw_as(&noisy, port, &request, 1, true));
    }
    let served = answers.iter().filter(|a| a.starts_with("HTTP/1.1 200")).count();
    let refused: Vec<&String> = answers.iter().filter(|a| a.starts_with("HTTP/1.1 429")).collect();
    // Status lines only: a whole answer holds a token.
    let statuses: Vec<&str> = answers.iter().map(|a| a.lines().next().unwrap_or_default()).collect();
    assert_eq!((served, refused.len()), (3, 17), "{statuses:#?}");
    for answer in refused {
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("\r\nretry-after: 60\r\n"), "{answer}");
        assert!(
            answer.contains("\"error\":\"throttled\"") && answer.contains("max_cached_resources_per_user"),
            "{answer}"
        );
    }
    assert_eq!(auth.token_requests() - before, 3, "refused resources never reach upstream");
    // The operator hears of it, through the denial limiter: a few lines, not one per refusal.
    let uid = format!("uid={}", noisy.uid);
    let log = daemon.log();
    let warned = log.lines().filter(|l| l.contains("cache bound is reached") && l.contains(&uid)).count();
    assert!((1..=8).contains(&warned), "17 refusals wrote {warned} warning lines");
    // What it has is still served; another user's request gets an entry of its own.
    let again =
        raw_as(&noisy, port, &get(&format!("{IMDS}&resource=api://junk-0"), "Metadata: true\r\n"), 1, false);
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    let theirs = raw_as(&other, port, &get(&format!("{IMDS}&resource={ARM}"), "Metadata: true\r\n"), 1, true);
    assert!(theirs.starts_with("HTTP/1.1 200"), "{theirs}");
    assert!(theirs.contains("access_token"), "{theirs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_authority_serves_only_the_daemon() {
    let Some(user) = noisy() else { return };
    let daemon = Daemon::start_with_server("", "", &["--local-authority"]).expect("daemon starts");
    let log = daemon.log();
    let port: u16 = log
        .lines()
        .find(|l| l.contains("LOCAL AUTHORITY MODE"))
        .and_then(|l| l.split("authority=http://127.0.0.1:").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no authority address in the log:\n{log}"));
    let form = "grant_type=client_credentials&client_id=00000000-0000-0000-0000-0000000a2b0c\
                &client_secret=local-authority-demo&scope=https%3A%2F%2Fmanagement.azure.com%2F.default";
    let request = format!(
        "POST /local.azbroker.invalid/oauth2/v2.0/token HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    let answer = raw_as(&user, port, &request, 1, true);
    assert!(
        !answer.contains("access_token"),
        "another user got a token signed by the daemon's key: {answer}"
    );
    // The daemon itself still signs in there: it serves its demo profile.
    let r = http().get(daemon.url(&format!("{IMDS}&resource={ARM}"))).header("Metadata", "true").send().await;
    assert_eq!(r.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_arc_challenges_neither_evict_a_key_nor_outlive_their_expiry() {
    let Some(user) = noisy() else { return };
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    let body =
        sp_config(&auth.url(), CONTOSO, CLIENT_ID, CLIENT_SECRET, "[profiles.contoso]\nlogin = \"app\"\n");
    let daemon = Daemon::start_with_server(&body, "default_profile = \"contoso\"", &[]).unwrap();
    let url = daemon.url(&format!("{ARC}&resource={ARM}"));
    let challenge = || async {
        let r = http().get(&url).header("Metadata", "true").send().await.unwrap();
        assert_eq!(r.status(), 401);
        let realm = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        PathBuf::from(realm.strip_prefix("Basic realm=").unwrap())
    };
    let mine = challenge().await;
    let secret = std::fs::read_to_string(&mine).unwrap();
    let flood = get(ARC, "Metadata: true\r\n").replace(ARC, &format!("{ARC}&resource={ARM}"));
    let answers = raw_as(&user, daemon.addr.port(), &flood, 300, false);
    assert!(answers.lines().count() >= 290, "the flood was answered: {answers}");
    let r = http()
        .get(&url)
        .header("Metadata", "true")
        .header("Authorization", format!("Basic {secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "root's key survived another user's 300 challenges");

    // An abandoned challenge's file is gone soon after the key expires (30 s).
    let abandoned = challenge().await;
    assert!(abandoned.exists());
    let gone = eventually(Duration::from_secs(40), || !abandoned.exists()).await;
    assert!(gone, "an expired key file stayed on disk");
}
