//! Fuzz targets for config parsing (time-boxed property tests, see `azbroker_testkit::fuzz`):
//! arbitrary text, and TOML built from the real section and key names with values of every
//! type. Parsing either succeeds or lists problems; it never panics, and a config that parses
//! also resolves (or reports unknown names) without panicking.

use azbroker_testkit::fuzz::fuzz;
use proptest::prelude::*;

use super::Config;

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"app\"".to_owned()),
        Just("\"127.0.0.1:50342\"".to_owned()),
        Just("[\"127.0.0.1:0\", \"0.0.0.0:1\"]".to_owned()),
        Just("[\"root\", 0, -1, \"*\", \"\"]".to_owned()),
        Just("[\"https://management.azure.com/\", \"a b\"]".to_owned()),
        Just("\"15m\"".to_owned()),
        Just("true".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:?}")),
        "\"[ -~&&[^\"\\\\]]{0,20}\"",
        Just("{ a = 1 }".to_owned()),
        Just("[]".to_owned()),
    ]
}

fn key() -> impl Strategy<Value = &'static str> {
    let mut keys = vec![
        "listen",
        "runtime_dir",
        "state_dir",
        "default_profile",
        "identity_header_file",
        "allow_non_loopback",
        "admin_group",
        "rotate_grace",
        "per_second",
        "burst",
        "name",
        "authority_host",
        "ca_file",
        "margin",
        "idle_ttl",
        "kind",
        "tenant",
        "client_id",
        "client_secret",
        "client_secret_file",
        "login",
        "aliases",
        "accept_any_client_id",
        "prefetch",
        "allowed_users",
        "allowed_groups",
        "allowed_resources",
        "bogus",
    ];
    keys.extend_from_slice(super::access::LIMIT_KEYS);
    prop::sample::select(keys)
}

fn section() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "server",
        "server.limits",
        "server.rate_limit",
        "cloud",
        "refresh",
        "logins.app",
        "logins.x",
        "profiles.p",
        "profiles.q",
        "users.root",
        "users.nobody-at-all",
        "extra",
    ])
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::vec((section(), prop::collection::vec((key(), value()), 0..5)), 0..6).prop_map(
        |tables| {
            let mut text = String::new();
            for (name, pairs) in tables {
                text.push_str(&format!("[{name}]\n"));
                for (k, v) in pairs {
                    text.push_str(&format!("{k} = {v}\n"));
                }
            }
            text
        },
    )
}

#[test]
fn fuzz_config_parsing() {
    fuzz("config", prop_oneof![document(), ".{0,200}"], |text| {
        if let Ok(config) = Config::parse(&text, None) {
            let _ = crate::daemon::access::resolve(&config);
        }
        Ok(())
    });
}
