//! End-to-end tests: the real `azbroker` binary against the testkit authority, and real SDK
//! clients against the real daemon. One test binary; modules by topic.

mod abuse;
mod admin;
mod autostart;
mod clients;
mod containers;
mod dialects;
mod exhaustion;
mod hardening;
mod lifecycle;
mod link_local;
mod logins;
mod operations;
mod reload;
mod security;
mod shared_machine;
mod sources;
mod systemd;
mod tokens;
mod workspaces;

use azbroker_tests::{Authority, Daemon, sp_config};

pub const CLIENT_ID: &str = "5a8c1b7e-0000-4000-8000-000000000001";
pub const CLIENT_SECRET: &str = "e2e-client-secret-Zm9vYmFy";
pub const CONTOSO: &str = "contoso.onmicrosoft.com";
pub const FABRIKAM: &str = "fabrikam.onmicrosoft.com";
pub const FABRIKAM_ALIAS: &str = "0f0f0f0f-1111-2222-3333-444444444444";

/// An authority with our app registered, and a daemon with two profiles (contoso default,
/// fabrikam by prefix or alias).
pub fn two_tenants(extra_profile_keys: &str) -> (Authority, Daemon) {
    two_tenants_with(extra_profile_keys, &[])
}

/// [`two_tenants`] with extra arguments for `azbroker serve`.
pub fn two_tenants_with(extra_profile_keys: &str, args: &[&str]) -> (Authority, Daemon) {
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    let profiles = format!(
        "[profiles.contoso]\nlogin = \"app\"\n\n[profiles.fabrikam]\nlogin = \"app\"\ntenant = \"{FABRIKAM}\"\naliases = [\"{FABRIKAM_ALIAS}\"]\n{extra_profile_keys}\n"
    );
    let body = sp_config(&auth.url(), CONTOSO, CLIENT_ID, CLIENT_SECRET, &profiles);
    let daemon =
        Daemon::start_with_server(&body, "default_profile = \"contoso\"", args).expect("daemon starts");
    (auth, daemon)
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(30)).build().unwrap()
}

pub fn env_value(vars: &[(String, String)], key: &str) -> String {
    vars.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{key} not exported"))
}

/// Replaces a config file the way editors do: write a temporary file, rename it over.
pub fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
