//! A request sees exactly one config generation: configs that rename an aliased profile (and give
//! its old name to another tenant) are swapped back and forth while clients keep asking by
//! alias, and every answer must be a 200 with the alias's tenant.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

const RED: &str = "red.example";
const BLUE: &str = "blue.example";
const ALIAS: &str = "7e7e7e7e-aaaa-4bbb-8ccc-0123456789ab";
const RESOURCE: &str = "https://vault.azure.net";
/// Config swaps in the test (each waits for the daemon's answer).
const RELOADS: usize = 40;
/// Concurrent clients, and the most requests each may send.
const CLIENTS: usize = 4;
const MAX_REQUESTS: u64 = 20_000;

/// Generation A: the alias belongs to `red`; `blue` is the default.
fn profiles_a() -> String {
    format!(
        "[profiles.red]\nlogin = \"app\"\ntenant = \"{RED}\"\naliases = [\"{ALIAS}\"]\n\n\
         [profiles.blue]\nlogin = \"app\"\ntenant = \"{BLUE}\"\n"
    )
}

/// Generation B: `red` is renamed `crimson` (alias and tenant kept), and the name `red` now
/// belongs to a profile of the blue tenant — so any answer mixing the generations shows.
fn profiles_b() -> String {
    format!(
        "[profiles.crimson]\nlogin = \"app\"\ntenant = \"{RED}\"\naliases = [\"{ALIAS}\"]\n\n\
         [profiles.red]\nlogin = \"app\"\ntenant = \"{BLUE}\"\n\n\
         [profiles.blue]\nlogin = \"app\"\ntenant = \"{BLUE}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renaming_an_aliased_profile_under_load_never_mixes_generations() {
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    let body = sp_config(&auth.url(), CONTOSO, CLIENT_ID, CLIENT_SECRET, &profiles_a());
    let daemon = Daemon::start_with_server(&body, "default_profile = \"blue\"", &[]).expect("daemon starts");
    let config_a = std::fs::read_to_string(&daemon.config_path).unwrap();
    let config_b = config_a.replace(&profiles_a(), &profiles_b());
    assert_ne!(config_a, config_b);
    let url = daemon.url(&format!(
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource={RESOURCE}&client_id={ALIAS}"
    ));
    let red_tid = azbroker_testkit::tenant_guid(RED);

    let done = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (url, done, served, red_tid) = (url.clone(), done.clone(), served.clone(), red_tid.clone());
        let verify = auth.entra.clone();
        clients.push(tokio::spawn(async move {
            let client = http();
            let mut wrong = Vec::new();
            let mut sent = 0;
            while !done.load(Ordering::Acquire) && sent < MAX_REQUESTS {
                sent += 1;
                let r = client.get(&url).header("Metadata", "true").send().await.unwrap();
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                let tid = body["access_token"]
                    .as_str()
                    .and_then(|t| verify.verify(t).ok())
                    .and_then(|claims| claims["tid"].as_str().map(str::to_owned));
                if status != 200 || tid.as_deref() != Some(red_tid.as_str()) {
                    wrong.push(format!("{status} tid={tid:?} {}", body["error_description"]));
                }
                served.fetch_add(1, Ordering::Relaxed);
            }
            wrong
        }));
    }

    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..RELOADS {
        let next = if i % 2 == 0 { &config_b } else { &config_a };
        replace_file(&daemon.config_path, next);
        let out = daemon.cli(&["reload"]).unwrap();
        assert!(out.status.success(), "reload {i} failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(Instant::now() < deadline, "the reloads took too long");
    }
    done.store(true, Ordering::Release);
    let mut wrong = Vec::new();
    for c in clients {
        wrong.extend(c.await.unwrap());
    }
    let total = served.load(Ordering::Relaxed);
    assert!(
        wrong.is_empty(),
        "{} of {total} answers were wrong, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(total >= RELOADS as u64, "too few requests ran during the reloads ({total})");
    assert!(daemon.log().matches("config reloaded").count() >= RELOADS, "every swap was applied");
    // One upstream call for the red tenant: every generation kept the alias's cached token.
    assert_eq!(auth.token_requests(), 1, "the renamed profile kept its cache");
}
