//! Every admin answer survives daemon type → JSON → CLI type unchanged, and the JSON keeps the
//! keys `status --json` users and scripts read.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::*;
use crate::engine::{EntryStatus, StatsSnapshot};
use crate::secret::Secret;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) -> serde_json::Value {
    let text = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, value, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn login(name: &str, state: LoginState) -> LoginStatus {
    LoginStatus {
        name: name.into(),
        kind: "user".into(),
        tenant: "organizations".into(),
        state,
        account: Some("alice@contoso.example".into()),
        reason: None,
        command: None,
        tenants_needing_sign_in: vec![TenantNeedingSignIn {
            tenant: "fabrikam.example".into(),
            reason: "AADSTS50076: MFA".into(),
            command: "azbroker login --login me --tenant fabrikam.example".into(),
        }],
        last_error: None,
    }
}

fn full_status() -> Status {
    let failure = UpstreamErrorInfo {
        kind: "invalid_grant".into(),
        message: "AADSTS700082: expired".into(),
        at_unix: 1_700_000_000,
        needs_attention: true,
    };
    Status {
        info: DaemonInfo { version: "0.1.0".into(), pid: 7, listeners: vec!["127.0.0.1:50342".into()] },
        ready: true,
        uptime_secs: 65,
        profiles: vec!["contoso".into(), "fabrikam".into()],
        default_profile: Some("contoso".into()),
        entries: vec![EntryStatus {
            profile: "fabrikam".into(),
            resource: "https://vault.azure.net".into(),
            token_hash: Some("ab12cd34".into()),
            expires_in_secs: Some(3000),
            next_refresh_in_secs: Some(1200),
            idle_secs: 3,
            failures: 0,
            last_error: None,
        }],
        stats: StatsSnapshot { hits: 5, misses: 1, ..StatsSnapshot::default() },
        daemon: DaemonStatus {
            config: Some("/etc/azbroker/config.toml".into()),
            logins: vec![LoginHealth {
                login: login("me", LoginState::NeedsSignIn),
                profiles: vec!["contoso".into()],
                last_upstream_error: Some(failure.clone()),
                needs_attention: true,
            }],
            upstream: vec![UpstreamHealth {
                profile: "contoso".into(),
                requests: 4,
                errors: 1,
                last_success_unix: None,
                last_error: Some(failure),
                needs_attention: true,
            }],
            sockets: vec![
                SocketInfo {
                    kind: SocketKind::Http,
                    address: "127.0.0.1:50342".into(),
                    profile: None,
                    origin: SocketOrigin::Systemd,
                },
                SocketInfo {
                    kind: SocketKind::ImdsLinkLocal,
                    address: "169.254.169.254:80".into(),
                    profile: None,
                    origin: SocketOrigin::Config,
                },
            ],
            exports: Some(Exports {
                command: "eval \"$(azbroker env)\"".into(),
                app_service: AppServiceExports {
                    identity_endpoint: "http://127.0.0.1:50342/msi/token".into(),
                    identity_header: "(secret; printed by `azbroker env`)".into(),
                },
                imds: ImdsExports { authority_host: "http://127.0.0.1:50342".into() },
                per_profile: "insert /p/PROFILE".into(),
            }),
            started_by: Some(StartedBy::Autostart),
            authority_host: Some("http://127.0.0.1:41234/".into()),
            arm_endpoint: Some("http://127.0.0.1:41234/".into()),
        },
    }
}

#[test]
fn status_round_trips_with_the_keys_scripts_read() {
    let v = round_trip(&full_status());
    assert_eq!(v["version"], "0.1.0");
    assert_eq!(v["listeners"][0], "127.0.0.1:50342");
    assert_eq!(v["config"], "/etc/azbroker/config.toml");
    assert_eq!(v["started_by"], "autostart");
    assert_eq!(v["authority_host"], "http://127.0.0.1:41234/");
    assert_eq!(v["entries"][0]["token_hash"], "ab12cd34");
    assert_eq!(v["stats"]["hits"], 5);
    assert_eq!(v["logins"][0]["name"], "me", "a login's own fields sit beside its health");
    assert_eq!(v["logins"][0]["state"], "needs_sign_in");
    assert_eq!(v["logins"][0]["profiles"], json!(["contoso"]));
    assert_eq!(v["logins"][0]["last_upstream_error"]["kind"], "invalid_grant");
    assert_eq!(v["upstream"][0]["errors"], 1);
    assert_eq!(v["sockets"][0]["origin"], "systemd");
    assert_eq!(v["sockets"][1]["kind"], "imds-link-local");
    assert_eq!(v["exports"]["app-service"]["IDENTITY_ENDPOINT"], "http://127.0.0.1:50342/msi/token");
    assert_eq!(v["exports"]["imds"]["AZURE_POD_IDENTITY_AUTHORITY_HOST"], "http://127.0.0.1:50342");
}

#[test]
fn per_profile_listeners_round_trip_and_are_found_by_profile_and_kind() {
    let mut status = full_status();
    let auto = |kind, address: &str, profile: &str| SocketInfo {
        kind,
        address: address.into(),
        profile: Some(profile.into()),
        origin: SocketOrigin::Auto,
    };
    status.daemon.sockets.extend([
        auto(SocketKind::Http, "127.0.0.1:41000", "fabrikam"),
        auto(SocketKind::Https, "127.0.0.1:41001", "fabrikam"),
        auto(SocketKind::Http, "127.0.0.1:41002", "contoso"),
        // A profile's configured `listen` is not the listener the daemon opened for it.
        SocketInfo { origin: SocketOrigin::Config, ..auto(SocketKind::Http, "127.0.0.1:41003", "other") },
    ]);
    let v = round_trip(&status);
    assert_eq!(
        v["sockets"][2],
        json!({"kind": "http", "address": "127.0.0.1:41000", "profile": "fabrikam", "origin": "auto"})
    );
    assert_eq!(v["sockets"][3]["kind"], "https");
    let read: Status = serde_json::from_value(v).unwrap();
    assert_eq!(read.daemon.profile_listener("fabrikam", SocketKind::Http), Some("127.0.0.1:41000"));
    assert_eq!(read.daemon.profile_listener("fabrikam", SocketKind::Https), Some("127.0.0.1:41001"));
    assert_eq!(read.daemon.profile_listener("contoso", SocketKind::Http), Some("127.0.0.1:41002"));
    assert_eq!(read.daemon.profile_listener("contoso", SocketKind::Https), None);
    assert_eq!(read.daemon.profile_listener("other", SocketKind::Http), None);
    assert_eq!(read.daemon.profile_listener("absent", SocketKind::Http), None);
}

#[test]
fn a_status_without_the_daemons_fields_still_reads() {
    // What a daemon without hooks (or an older one) sends: no config, logins, sockets, exports.
    let mut status = full_status();
    status.daemon = DaemonStatus::default();
    let v = round_trip(&status);
    assert!(v.get("config").is_none(), "no config file: no key");
    let mut bare = v.clone();
    for key in ["logins", "upstream", "sockets", "exports"] {
        bare.as_object_mut().unwrap().remove(key);
    }
    let read: Status = serde_json::from_value(bare).unwrap();
    assert_eq!(read, status);
}

#[test]
fn every_other_answer_round_trips() {
    let v = round_trip(&ReloadAnswer::Reloaded(ReloadOutcome { profiles: 3, warnings: vec!["w".into()] }));
    assert_eq!((v["status"].as_str(), v["profiles"].as_u64()), (Some("reloaded"), Some(3)));
    let v = round_trip(&ReloadAnswer::Rejected(ReloadRejected { problems: vec!["a: bad".into()] }));
    assert_eq!((v["status"].as_str(), &v["problems"]), (Some("rejected"), &json!(["a: bad"])));
    let v = round_trip(&LogoutAnswer::SignedOut { had_state: true });
    assert_eq!(v, json!({"status": "signed_out", "had_state": true}));
    round_trip(&RotateOutcome {
        rotated: vec!["identity-header".into()],
        unchanged: vec![],
        grace_secs: 300,
    });
    round_trip(&TenantsAnswer {
        tenants: vec![TenantInfo {
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            display_name: Some("Contoso".into()),
            default_domain: None,
            category: Some("Home".into()),
        }],
    });
    round_trip(&RefreshRequest { profile: Some("contoso".into()), resource: None });
    let v = round_trip(&RefreshAnswer {
        refreshed: vec![
            RefreshLine {
                profile: "contoso".into(),
                resource: "https://vault.azure.net".into(),
                ok: true,
                token_hash: Some("ab12cd34".into()),
                expires_in_secs: Some(3599),
                error: None,
            },
            RefreshLine {
                profile: "broken".into(),
                resource: "api://x".into(),
                ok: false,
                token_hash: None,
                expires_in_secs: None,
                error: Some("invalid_grant".into()),
            },
        ],
    });
    assert!(v["refreshed"][1].get("token_hash").is_none(), "absent, not null");
    let v =
        round_trip(&LoginRequest { tenant: Some("fabrikam.example".into()), method: LoginMethod::Browser });
    assert_eq!(v["method"], "browser");
    round_trip(&FlowStart {
        flow_id: "f1".into(),
        method: LoginMethod::DeviceCode,
        tenant: "organizations".into(),
        message: Some("enter ABCD".into()),
        user_code: Some("ABCD".into()),
        verification_uri: Some("https://example/devicelogin".into()),
        authorize_url: None,
        expires_in_secs: 900,
    });
    let v = round_trip(&FlowStatus {
        state: FlowState::SignedIn,
        expires_in_secs: 0,
        account: Some("alice@contoso.example".into()),
        error: None,
    });
    assert_eq!(v["state"], "signed_in");
    round_trip(&AdminError::NotFound("no such login".into()).body());
}

#[test]
fn refresh_requests_refuse_unknown_fields_and_empty_means_everything() {
    assert!(serde_json::from_str::<RefreshRequest>(r#"{"profle":"x"}"#).is_err());
    assert_eq!(serde_json::from_str::<RefreshRequest>("{}").unwrap(), RefreshRequest::default());
}

#[test]
fn secrets_cross_the_wire_but_never_show_in_debug() {
    let values = SecretValues {
        identity_header: Some(Secret::new("header-value-1")),
        msi_secret: None,
        native_key: Some(Secret::new("native-key-2")),
    };
    let v = round_trip(&values);
    assert_eq!(v, json!({"identity-header": "header-value-1", "native-key": "native-key-2"}));
    let debug = format!("{values:?}");
    assert!(!debug.contains("header-value-1") && !debug.contains("native-key-2"), "{debug}");
}

#[test]
fn error_codes_are_stable_and_upstream_errors_keep_their_kind() {
    let cases = [
        (AdminError::BadRequest("x".into()), "bad_request"),
        (AdminError::InvalidResource("x".into()), "invalid_resource"),
        (AdminError::UnknownProfile("x".into()), "unknown_profile"),
        (AdminError::NotFound("x".into()), "not_found"),
        (AdminError::Forbidden("x".into()), "forbidden"),
        (AdminError::TooManyFlows("x".into()), "too_many_flows"),
        (AdminError::Unsupported("x".into()), "not_supported"),
        (AdminError::Unavailable("x".into()), "unavailable"),
        (AdminError::RotateFailed("x".into()), "rotate_failed"),
        (AdminError::RedirectListener("x".into()), "redirect_listener"),
        (AdminError::Upstream(crate::UpstreamError::Timeout), "timeout"),
    ];
    for (error, code) in cases {
        let body = error.body();
        assert_eq!(body.error, code);
        assert_eq!(body.error_description, error.to_string());
    }
}

#[test]
fn enum_names_match_the_wire() {
    for kind in [SocketKind::Http, SocketKind::Https, SocketKind::ImdsLinkLocal, SocketKind::Admin] {
        assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
    }
    for origin in [SocketOrigin::Config, SocketOrigin::Systemd, SocketOrigin::Auto] {
        assert_eq!(serde_json::to_value(origin).unwrap(), origin.as_str());
    }
    for state in
        [LoginState::SignedIn, LoginState::NeedsSignIn, LoginState::NotSignedIn, LoginState::Configured]
    {
        assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
    }
}
