//! `fake_cloud DIR`: the testkit's fake Entra ID (permissive: any app, any secret) and its fake
//! Resource Manager behind a TLS front, as a process of its own — for tests that need them inside
//! a network namespace, which the test process cannot enter. Prints one JSON line
//! `{"authority":..,"arm":..,"ca_file":..}` (the certificate is written to DIR) and serves until
//! its standard input closes. Lines on standard input steer it, each answered `ok` on standard
//! output: `user NAME TENANT...` adds a scripted user, `approve NAME` approves every device code
//! as that user from now on (`approve -` stops), and that is all.

use std::io::{BufRead, Write};

use azbroker_tests::Authority;
use azbroker_tests::tls_front::TlsFront;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: fake_cloud DIR");
        std::process::exit(64);
    };
    let auth = Authority::start_with(azbroker_testkit::Options { permissive: true, ..Default::default() });
    let front = match TlsFront::start(auth.addr(), std::path::Path::new(&dir)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake_cloud: {e:#}");
            std::process::exit(1);
        }
    };
    let line = serde_json::json!({
        "authority": auth.url(),
        "arm": format!("https://127.0.0.1:{}/", front.addr.port()),
        "ca_file": front.ca_file,
    });
    println!("{line}");
    for command in std::io::stdin().lock().lines() {
        let Ok(command) = command else { break };
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["user", name, tenants @ ..] => auth.add_user(name, tenants),
            ["approve", "-"] => auth.auto_approve_device_codes(None),
            ["approve", name] => auth.auto_approve_device_codes(Some(name)),
            _ => {
                eprintln!("fake_cloud: unknown command {command:?}");
                std::process::exit(64);
            }
        }
        println!("ok");
        let _ = std::io::stdout().flush();
    }
}
