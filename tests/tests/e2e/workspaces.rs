//! Azure ML workspaces end to end: `workspace add` discovers the tenant from ARM's challenge,
//! writes the config keeping its comments, reloads the daemon; the workspace name then selects
//! tokens for that tenant, `workspace config` prints azureml's config.json, and all of it
//! survives a restart. This is the "from nothing to a workspace in another tenant".

use azbroker_testkit::tenant_guid;
use serde_json::Value;

use super::logins::{imds_token, login, user_daemon};
use super::*;

const SUB: &str = "8f2c6a1e-3b4d-4e5f-9a0b-1c2d3e4f5a6b";

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_add_discovers_the_tenant_and_survives_restart() {
    let auth = Authority::start();
    auth.register_subscription(SUB, FABRIKAM);
    let mut daemon = user_daemon(&auth, "");
    login(&daemon, &auth, &[]);

    let out = daemon
        .cli(&[
            "workspace",
            "add",
            "--name",
            "ml",
            "--login",
            "me",
            "--subscription",
            SUB,
            "--resource-group",
            "rg-ml",
            "--workspace",
            "ws-fabrikam",
        ])
        .unwrap();
    let text = ok(&out);
    let guid = tenant_guid(FABRIKAM);
    assert!(text.contains(&format!("is in tenant {guid}")) && text.contains("reloaded"), "{text}");
    let config = std::fs::read_to_string(&daemon.config_path).unwrap();
    assert!(config.contains("# the person"), "comments are kept:\n{config}");
    assert!(
        config.contains("[workspaces.ml]") && config.contains(&format!("tenant = \"{guid}\"")),
        "{config}"
    );

    // The workspace name works as a profile: the token is for the subscription's tenant.
    let (code, body) = imds_token(&daemon, "ml", "https://management.azure.com/").await;
    assert_eq!(code, 200, "{body}\n{}", daemon.log());
    let claims = auth.verify(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["tid"], guid);
    let vars = daemon.env(&["--profile", "ml"]).unwrap();
    let endpoint = env_value(&vars, "IDENTITY_ENDPOINT");
    assert!(endpoint.ends_with("/msi/token") && !endpoint.contains("/p/"), "{endpoint}");

    let cfg: Value = serde_json::from_str(&ok(&daemon.cli(&["workspace", "config", "ml"]).unwrap())).unwrap();
    assert_eq!(
        cfg,
        serde_json::json!({"subscription_id": SUB, "resource_group": "rg-ml", "workspace_name": "ws-fabrikam"})
    );
    let list = ok(&daemon.cli(&["workspace", "list"]).unwrap());
    assert!(list.contains("ml") && list.contains("ws-fabrikam") && list.contains(&guid), "{list}");

    daemon.restart(&[]).unwrap();
    let (code, body) = imds_token(&daemon, "ml", "https://vault.azure.net").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(auth.verify(body["access_token"].as_str().unwrap()).unwrap()["tid"], guid);

    // Mistakes are explained: an unknown subscription, a name taken by a profile.
    let refused = |name: &str, subscription: &str| {
        let args = ["workspace", "add", "--name", name, "--subscription", subscription];
        let out = daemon.cli(&[&args[..], &["--resource-group", "g", "--workspace", "w"]].concat()).unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused("x", "00000000-0000-0000-0000-000000000000");
    assert!(err.contains("SubscriptionNotFound"), "{err}");
    assert!(refused("home", SUB).contains("also a profile name"));
    let out = daemon.cli(&["workspace", "config", "nope"]).unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not configured"));
}

/// The offline first minute: under `--local-authority`, `workspace add` discovers the tenant from
/// the local authority's own ARM and `doctor` compares clocks with that authority — never the
/// config's endpoints (here a closed loopback port, standing in for "no network").
#[test]
fn with_a_local_authority_workspace_add_and_doctor_stay_on_the_machine() {
    const LOCAL_SUBSCRIPTION: &str = "00000000-0000-4000-8000-00000000a2b0";
    let offline = "http://127.0.0.1:1";
    let body = format!(
        "[cloud]\nauthority_host = \"{offline}\"\narm_endpoint = \"{offline}\"\n\n[logins.me]\nkind = \"user\"\n"
    );
    let daemon = Daemon::start(&body, &["--local-authority"]).expect("daemon starts");
    let status: Value = serde_json::from_str(&ok(&daemon.cli(&["status", "--json"]).unwrap())).unwrap();
    let local = status["authority_host"].as_str().expect("status names the authority in use").to_owned();
    assert!(local.starts_with("http://127.0.0.1:") && !local.starts_with(offline), "{local}");
    assert_eq!(status["arm_endpoint"], status["authority_host"], "the local authority plays ARM too");

    let out = daemon
        .cli(&[
            "workspace",
            "add",
            "--name",
            "demo",
            "--login",
            "me",
            "--subscription",
            LOCAL_SUBSCRIPTION,
            "--resource-group",
            "rg",
            "--workspace",
            "ws",
        ])
        .unwrap();
    let text = ok(&out);
    let guid = tenant_guid("local.azbroker.invalid");
    assert!(text.contains(&format!("is in tenant {guid}")), "{text}");
    let config = std::fs::read_to_string(&daemon.config_path).unwrap();
    assert!(config.contains("[workspaces.demo]") && config.contains(&guid), "{config}");

    let out = daemon.cli(&["doctor", "--json"]).unwrap();
    let findings: Value = serde_json::from_slice(&out.stdout).expect("doctor JSON");
    let clock = findings
        .as_array()
        .or_else(|| findings["findings"].as_array())
        .and_then(|all| all.iter().find(|f| f["check"] == "clock"))
        .unwrap_or_else(|| panic!("a clock finding: {findings}"))
        .clone();
    let host = local.trim_end_matches('/');
    assert_eq!(clock["level"], "ok", "{clock}");
    assert!(clock["message"].as_str().unwrap().contains(host), "{clock}");
}
