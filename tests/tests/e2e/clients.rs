//! Real SDK clients as judges: each runs unmodified with only what `azbroker env` prints, for a
//! non-default profile, and must receive a token whose `tid` is that profile's tenant.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use azbroker_testkit::tenant_guid;
use azbroker_tests::repo_root;
use serde_json::Value;

use super::*;

/// (client name, interpreter, script)
fn clients() -> Vec<(&'static str, PathBuf, PathBuf)> {
    let root = repo_root().join("tests/clients");
    let python = root.join(".venv/bin/python");
    let py = root.join("python/mi_client.py");
    let node = PathBuf::from("node");
    let js = root.join("node/mi_client.mjs");
    assert!(
        python.exists() && root.join("node/node_modules/@azure/identity").exists(),
        "real SDK clients are not installed: run tests/clients/install.sh (tests/run does it)"
    );
    vec![
        ("azure-identity-mi", python.clone(), py.clone()),
        ("azure-identity-mi-async", python.clone(), py.clone()),
        ("azure-identity-dac", python.clone(), py.clone()),
        ("msal-mi", python, py),
        ("node-identity-mi", node.clone(), js.clone()),
        ("node-identity-dac", node, js),
    ]
}

/// Variables that would steer a client elsewhere; removed so only the exported ones count.
const SCRUB: &[&str] = &[
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_TOKEN_CREDENTIALS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
];

fn run_client(name: &str, interpreter: &PathBuf, script: &PathBuf, vars: &[(String, String)]) -> Value {
    let started = Instant::now();
    let mut cmd = Command::new(interpreter);
    cmd.arg(script).args(["--client", name, "--resource", "https://management.azure.com/"]);
    for v in SCRUB {
        cmd.env_remove(v);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost");
    cmd.envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let v: Value = serde_json::from_str(line).unwrap_or_else(|_| {
        panic!("{name}: no JSON result; stdout={stdout} stderr={}", String::from_utf8_lossy(&out.stderr))
    });
    assert!(started.elapsed() < Duration::from_secs(90), "{name} took {:?}", started.elapsed());
    v
}

#[test]
fn every_sdk_client_gets_the_chosen_tenant_over_both_dialects() {
    let clients = clients();
    let (_auth, daemon) = two_tenants("");
    let mut failures = Vec::new();
    for dialect in ["app-service", "imds"] {
        let vars = daemon.env(&["--profile", "fabrikam", "--dialect", dialect]).unwrap();
        std::thread::scope(|s| {
            let handles: Vec<_> = clients
                .iter()
                .map(|(name, interp, script)| {
                    let vars = &vars;
                    (name, s.spawn(move || run_client(name, interp, script, vars)))
                })
                .collect();
            for (name, h) in handles {
                let v = h.join().unwrap();
                if v["ok"] != true || v["tid"] != tenant_guid(FABRIKAM) {
                    failures.push(format!("{name} over {dialect}: {v}"));
                }
            }
        });
    }
    assert!(failures.is_empty(), "failures:\n{}\ndaemon log:\n{}", failures.join("\n"), daemon.log());
}
