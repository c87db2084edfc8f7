use super::*;

const FULL: &str = r#"
[server]
listen = ["127.0.0.1:50342", "[::1]:50342"]
runtime_dir = "/tmp/rt"
state_dir = "/tmp/st"
default_profile = "contoso"
client_wait = "15s"

[cloud]
name = "AzureCloud"
authority_host = "http://127.0.0.1:9999"

[refresh]
margin = "10m"
idle_ttl = "12h"

[logins.app]
kind = "service-principal"
tenant = "contoso.onmicrosoft.com"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret = "s3cret"

[profiles.contoso]
login = "app"

[profiles.fabrikam]
login = "app"
tenant = "fabrikam.onmicrosoft.com"
aliases = ["AAAA", "bbbb"]
accept_any_client_id = true
prefetch = ["https://management.azure.com/"]
listen = ["127.0.0.2:50342"]
"#;

#[test]
fn full_example_parses() {
    let c = Config::parse(FULL, None).unwrap();
    assert_eq!(c.server.listen.len(), 2);
    assert_eq!(c.server.default_profile.as_ref().unwrap().as_str(), "contoso");
    assert_eq!(c.cloud.authority_host.as_str(), "http://127.0.0.1:9999/");
    assert_eq!(c.refresh.margin, Duration::from_secs(600));
    assert_eq!(c.refresh.idle_ttl, Duration::from_secs(12 * 3600));
    assert_eq!(c.refresh.client_wait, Duration::from_secs(15), "[server] client_wait reaches the engine");
    let contoso = &c.profiles[&ProfileName::parse("contoso").unwrap()];
    assert_eq!(contoso.tenant.as_str(), "contoso.onmicrosoft.com");
    let fab = &c.profiles[&ProfileName::parse("fabrikam").unwrap()];
    assert_eq!(fab.tenant.as_str(), "fabrikam.onmicrosoft.com");
    assert!(fab.accept_any_client_id);
    assert_eq!(fab.prefetch.len(), 1);
    assert_eq!(fab.listen.len(), 1);
    // The secret is never printed by Debug.
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn every_problem_is_reported_together() {
    let text = r#"
[server]
listen = ["not-an-address", "10.0.0.1:80"]
colour = "blue"
default_profile = "missing"

[refresh]
margin = "soon"

[logins.app]
kind = "service-principal"
tenant = "contoso.onmicrosoft.com"
client_id = "x"

[logins.bad]
kind = "magic"
tenant = "t"

[profiles.p]
login = "nope"
"#;
    let err = Config::parse(text, Some(PathBuf::from("/x.toml"))).unwrap_err();
    let all = err.problems.join("\n");
    for needle in [
        "server.listen[0]",
        "server.listen[1]",
        "server.colour: unknown key",
        "refresh.margin",
        "logins.app: a service principal needs",
        "logins.bad.kind: unknown kind 'magic'",
        "profiles.p.login: 'nope' is not a configured login",
        "server.default_profile: 'missing'",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
    assert_eq!(err.problems.len(), 8, "{all}");
    assert!(err.to_string().starts_with("invalid configuration in /x.toml"));
}

#[test]
fn bad_toml_is_reported() {
    let err = Config::parse("[server\n", None).unwrap_err();
    assert!(err.problems[0].contains("not valid TOML"));
}

#[test]
fn single_profile_is_the_default() {
    let text = r#"
[logins.a]
kind = "service-principal"
tenant = "t.example"
client_id = "c"
client_secret_file = "/run/credentials/x"
[profiles.only]
login = "a"
"#;
    let c = Config::parse(text, None).unwrap();
    assert_eq!(c.server.default_profile.unwrap().as_str(), "only");
}

#[test]
fn empty_config_is_valid() {
    let c = Config::parse("", None).unwrap();
    assert!(c.profiles.is_empty());
    assert_eq!(c.server.listen, vec![SocketAddr::from(([127, 0, 0, 1], 50342))]);
}

#[test]
fn duplicate_aliases_are_refused() {
    let text = r#"
[logins.a]
kind = "service-principal"
tenant = "t.example"
client_id = "c"
client_secret = "s"
[profiles.x]
login = "a"
aliases = ["Same"]
[profiles.y]
login = "a"
aliases = ["same"]
"#;
    let err = Config::parse(text, None).unwrap_err();
    assert!(err.problems[0].contains("also an alias"), "{:?}", err.problems);
}

#[test]
fn http_authority_only_for_loopback() {
    let err = Config::parse("[cloud]\nauthority_host = \"http://login.example.com\"\n", None).unwrap_err();
    assert!(err.problems[0].starts_with("cloud.authority_host"), "{:?}", err.problems);
}

#[test]
fn example_file_parses() {
    let text = include_str!("../../../../config/azbroker.example.toml");
    Config::parse(text, None).unwrap();
}

#[test]
fn dialect_keys_parse_and_report_problems() {
    let c = Config::parse(
        "[server]\ntls_listen = []\narc_group = \"root\"\nimds_link_local = true\nmsi_secret_file = \"/x\"\n",
        None,
    )
    .unwrap();
    let d = &c.server.dialects;
    assert!(d.tls_listen.is_empty());
    assert_eq!(d.arc_group, Some(("root".to_owned(), 0)));
    assert!(d.imds_link_local && !d.force_link_local);
    assert_eq!(d.msi_secret_file.as_deref(), Some(std::path::Path::new("/x")));
    assert_eq!(
        Config::parse("", None).unwrap().server.dialects.tls_listen.len(),
        1,
        "HTTPS is on by default"
    );
    let text = "[server]\ntls_listen = [\"10.0.0.1:443\"]\narc_group = \"no-such-group-azbroker\"\ntls_cert_file = \"/c\"\nimds_link_local = \"yes\"\n";
    let err = Config::parse(text, None).unwrap_err();
    let all = err.problems.join("\n");
    for needle in [
        "server.tls_listen[0]",
        "server.arc_group",
        "tls_cert_file and tls_key_file",
        "server.imds_link_local",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

const ACCESS: &str = r#"
[server]
admin_group = "azbroker-admins"
rotate_grace = "2m"
[server.limits]
max_connections = 100
max_connections_per_user = 10
header_timeout = "5s"
body_timeout = "3s"
handshake_timeout = "2s"
request_timeout = "30s"
max_body_bytes = 4096
max_cached_resources = 100
max_cached_resources_per_user = 20
[server.rate_limit]
per_second = 5
burst = 10

[logins.app]
kind = "service-principal"
tenant = "t.example"
client_id = "c"
client_secret = "s"

[profiles.team]
login = "app"
allowed_users = ["alice", 1001, "1002", "*"]
allowed_groups = ["ml-users", 2000]
allowed_resources = ["https://management.azure.com/"]
max_cached_resources_per_user = 5

[users.alice]
default_profile = "team"
"#;

#[test]
fn access_and_hardening_keys_parse() {
    let c = Config::parse(ACCESS, None).unwrap();
    let team = &c.profiles.values().next().unwrap().access;
    assert_eq!(
        team.users.as_deref(),
        Some(&[UserRef::Name("alice".into()), UserRef::Uid(1001), UserRef::Uid(1002), UserRef::Anyone][..])
    );
    assert_eq!(team.groups.as_deref(), Some(&[GroupRef::Name("ml-users".into()), GroupRef::Gid(2000)][..]));
    assert_eq!(team.resources.as_ref().unwrap().len(), 1);
    assert_eq!(c.user_defaults.get("alice").map(|p| p.as_str()), Some("team"));
    let h = &c.server.hardening;
    assert_eq!(h.admin_group, Some(GroupRef::Name("azbroker-admins".into())));
    assert_eq!(h.rotate_grace, Duration::from_secs(120));
    assert_eq!((h.limits.max_connections, h.limits.max_body_bytes), (100, 4096));
    assert_eq!(h.limits.header_read_timeout, Duration::from_secs(5));
    assert_eq!((h.limits.max_connections_per_user, h.limits.per_user()), (Some(10), 10));
    assert_eq!(h.limits.body_read_timeout, Duration::from_secs(3));
    assert_eq!(h.limits.handshake_timeout, Duration::from_secs(2));
    assert_eq!(h.rate_limit, Some(azbroker_server::RateLimit { per_second: 5.0, burst: 10 }));
    assert!(!h.allow_non_loopback);
    assert!(Config::parse("", None).unwrap().server.hardening.rate_limit.is_none(), "off by default");
    // The cache bounds: the server's, with the profile's own override.
    assert_eq!(h.cache, azbroker_core::CacheBounds { max_entries: 100, max_per_user: 20 });
    assert_eq!(team.cache_bounds(h.cache), azbroker_core::CacheBounds { max_entries: 100, max_per_user: 5 });
    let defaults = Config::parse("", None).unwrap().server.hardening.cache;
    assert_eq!((defaults.max_entries, defaults.max_per_user), (256, 64));
}

#[test]
fn access_problems_are_reported_with_their_keys() {
    let bad = r#"
[server]
listen = ["0.0.0.0:50342"]
[server.rate_limit]
per_second = 0
[server.limits]
max_connections = 0
max_cached_resources = 0
[logins.app]
kind = "service-principal"
tenant = "t.example"
client_id = "c"
client_secret = "s"
[profiles.team]
login = "app"
allowed_users = [-1, "", true]
allowed_resources = ["a b"]
max_cached_resources_per_user = -3
[users.bob]
default_profile = "nope"
"#;
    let problems = Config::parse(bad, None).unwrap_err().problems;
    for key in [
        "server.listen[0]: '0.0.0.0:50342': not a loopback address",
        "server.rate_limit.per_second: must be greater than 0",
        "server.limits.max_connections: must be greater than 0",
        "server.limits.max_cached_resources: must be greater than 0",
        "profiles.team.max_cached_resources_per_user: must be greater than 0",
        "profiles.team.allowed_users[0]",
        "profiles.team.allowed_users[1]: must not be empty",
        "profiles.team.allowed_users[2]",
        "profiles.team.allowed_resources[0]",
        "users.bob.default_profile: 'nope' is not a configured profile",
    ] {
        assert!(problems.iter().any(|p| p.starts_with(key)), "missing {key:?} in {problems:#?}");
    }
    let listen = problems.iter().find(|p| p.starts_with("server.listen[0]")).unwrap();
    assert!(listen.contains("allow_non_loopback = true"), "{listen}");
    let allowed = "[server]\nallow_non_loopback = true\nlisten = [\"0.0.0.0:50342\"]\n";
    assert!(Config::parse(allowed, None).unwrap().server.listen[0].ip().is_unspecified());
}

#[test]
fn builtin_defaults_have_one_user_login_against_organizations() {
    let c = Config::builtin();
    assert!(c.origin.is_none());
    let me = &c.logins[&ProfileName::parse("me").unwrap()];
    assert_eq!(me.tenant.as_str(), "organizations");
    assert!(
        matches!(&me.kind, LoginKind::User { client_id } if client_id == azbroker_entra::AZURE_CLI_CLIENT_ID)
    );
    assert_eq!(c.server.default_profile.as_ref().unwrap().as_str(), "me");
    assert_eq!(c.cloud.arm_endpoint.as_str(), "https://management.azure.com/");
}

#[test]
fn every_login_kind_parses_and_sovereign_clouds_move_arm_too() {
    let text = r#"
[cloud]
name = "AzureUSGovernment"
[logins.me]
kind = "user"
tenant = "contoso.example"
[logins.cert]
kind = "service-principal"
tenant = "t.example"
client_id = "c"
certificate_file = "/x.pem"
send_certificate_chain = true
[logins.wi]
kind = "workload-identity"
tenant = "t.example"
client_id = "c"
token_file = "/tok"
[logins.cli]
kind = "azure-cli"
timeout = "5s"
[logins.mi]
kind = "managed-identity"
client_id = "abc"
endpoint = "http://127.0.0.1:9"
[workspaces.ws]
subscription_id = "8F2C6A1E-3B4D-4E5F-9A0B-1C2D3E4F5A6B"
resource_group = "g"
workspace_name = "w"
login = "me"
"#;
    let c = Config::parse(text, None).unwrap();
    assert_eq!(c.cloud.arm_endpoint.as_str(), "https://management.usgovcloudapi.net/");
    assert_eq!(c.cloud.authority_host.as_str(), "https://login.microsoftonline.us/");
    let kind = |n: &str| &c.logins[&ProfileName::parse(n).unwrap()].kind;
    assert!(matches!(kind("cert"), LoginKind::Certificate { send_chain: true, .. }));
    assert!(matches!(kind("wi"), LoginKind::WorkloadIdentity { .. }));
    assert!(matches!(kind("cli"), LoginKind::AzureCli { timeout, .. } if *timeout == Duration::from_secs(5)));
    assert!(matches!(kind("mi"), LoginKind::ManagedIdentity { endpoint: Some(_), .. }));
    assert_eq!(c.logins[&ProfileName::parse("cli").unwrap()].tenant.as_str(), "organizations");
    // The workspace is a profile too, in the login's tenant when none is given.
    let ws = &c.workspaces[&ProfileName::parse("ws").unwrap()];
    assert_eq!(ws.subscription_id, "8f2c6a1e-3b4d-4e5f-9a0b-1c2d3e4f5a6b");
    assert_eq!(c.profiles[&ProfileName::parse("ws").unwrap()].tenant.as_str(), "contoso.example");
    assert_eq!(ws.azureml_config()["workspace_name"], "w");
}

#[test]
fn login_kind_and_workspace_problems_are_reported_together() {
    let text = r#"
[logins.sp]
kind = "service-principal"
tenant = "t.example"
client_id = "c"
client_secret = "s"
certificate_file = "/x.pem"
[logins.wi]
kind = "workload-identity"
client_id = "c"
[logins.mi]
kind = "managed-identity"
client_id = "a"
object_id = "b"
[logins.odd]
kind = "magic"
[logins.good]
kind = "user"
[profiles.p]
login = "good"
[workspaces.p]
subscription_id = "nope"
resource_group = "g"
workspace_name = "w"
login = "sp"
[workspaces.q]
subscription_id = "8f2c6a1e-3b4d-4e5f-9a0b-1c2d3e4f5a6b"
login = "ghost"
"#;
    let err = Config::parse(text, None).unwrap_err();
    let all = err.problems.join("\n");
    for want in [
        "logins.sp: set exactly one of",
        "logins.wi.tenant: required key is missing",
        "logins.wi.token_file: required key is missing",
        "logins.mi: set at most one of",
        "logins.odd.kind: unknown kind 'magic'",
        "workspaces.p: 'p' is also a profile name",
        "workspaces.q.resource_group: required key is missing",
        "workspaces.q.login: 'ghost' is not a configured login",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
}

#[test]
fn client_wait_defaults_to_20s_and_is_bounded() {
    let c = Config::parse(&FULL.replace("client_wait = \"15s\"\n", ""), None).unwrap();
    assert_eq!(c.refresh.client_wait, Duration::from_secs(20));
    for bad in ["0s", "500ms", "91s", "soon"] {
        let e = Config::parse(&FULL.replace("\"15s\"", &format!("\"{bad}\"")), None).unwrap_err();
        assert!(e.problems.iter().any(|p| p.contains("server.client_wait")), "{bad}: {:?}", e.problems);
    }
}

#[test]
fn self_service_is_off_by_default_and_parsed_with_its_limits() {
    let c = Config::parse(FULL, None).unwrap();
    assert!(!c.server.self_service.enabled);
    let text = "[server]\nself_service = true\nself_service_groups = [\"hub\", \"1234\"]\n\
                self_service_max_workspaces = 3\nself_service_sign_ins_per_hour = 5\n";
    let s = Config::parse(text, None).unwrap().server.self_service;
    assert!(s.enabled);
    assert_eq!(s.groups, vec![access::GroupRef::Name("hub".into()), access::GroupRef::Gid(1234)]);
    assert_eq!((s.max_workspaces, s.sign_ins_per_hour), (3, 5));
    let err =
        Config::parse("[server]\nself_service_max_workspaces = 0\nself_service_groups = [\"x\"]\n", None)
            .unwrap_err();
    let text = err.problems.join("\n");
    assert!(text.contains("self_service_max_workspaces") && text.contains("out of range"), "{text}");
    assert!(text.contains("has no effect unless self_service = true"), "{text}");
}

#[test]
fn personal_profile_names_are_reserved() {
    let text = "[logins._u1000]\nkind = \"user\"\n\n[logins.me]\nkind = \"user\"\n\n\
                [profiles._u1001]\nlogin = \"me\"\n";
    let err = Config::parse(text, None).unwrap_err();
    let problems = err.problems.join("\n");
    assert!(problems.contains("logins._u1000") && problems.contains("reserved"), "{problems}");
    assert!(problems.contains("profiles._u1001"), "{problems}");
    // Names that merely look alike stay allowed.
    Config::parse("[logins._user]\nkind = \"user\"\n\n[profiles.u1001]\nlogin = \"_user\"\n", None).unwrap();
}

#[test]
fn container_listen_needs_no_allow_non_loopback_but_one_address() {
    let c = Config::parse("[server]\ncontainer_listen = [\"172.17.0.1:50342\"]\n", None).unwrap();
    assert_eq!(c.server.dialects.container_listen, vec!["172.17.0.1:50342".parse().unwrap()]);
    assert!(Config::parse("", None).unwrap().server.dialects.container_listen.is_empty());
    let err = Config::parse("[server]\ncontainer_listen = [\"0.0.0.0:50342\", \"x\"]\n", None).unwrap_err();
    let all = err.problems.join("\n");
    assert!(all.contains("server.container_listen[0]") && all.contains("unspecified"), "{all}");
    assert!(all.contains("server.container_listen[1]"), "{all}");
}
