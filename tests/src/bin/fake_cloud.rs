//! `fake_cloud DIR`: the testkit's fake Entra ID (permissive: any app, any secret) and its fake
//! Resource Manager behind a TLS front, as a process of its own — for tests that need them inside
//! a network namespace, which the test process cannot enter. Prints one JSON line
//! `{"authority":..,"arm":..,"ca_file":..}` (the certificate is written to DIR) and serves until
//! its standard input closes.

use std::io::Read;

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
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
