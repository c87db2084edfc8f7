//! Containers as callers (`container_listen`, `azbroker key create`), without Docker: two network
//! namespaces this test creates stand in for the host and a container, joined by a veth pair with
//! link-local addresses (169.254.100.1 on the "host" side, .2 in the "container"). The daemon and
//! the testkit authority run in the "host" namespace; real SDK clients run in the "container"
//! namespace with nothing but what `azbroker key create --format sh` printed, and must get the
//! key's profile's tenant. No traffic leaves these namespaces.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use azbroker_testkit::tenant_guid;
use azbroker_tests::{binary, clients_dir, free_port};
use serde_json::Value;

use super::clients::run;
use super::link_local::{Netns, NsCloud, absolute, terminate};
use super::*;

const HOST_ADDR: &str = "169.254.100.1";
const CONTAINER_ADDR: &str = "169.254.100.2";
const ARM: &str = "https://management.azure.com/";

/// The "host" and "container" namespaces, joined by a veth pair.
struct Pair {
    host: Netns,
    container: Netns,
}

impl Pair {
    fn create() -> Self {
        let (host, container) = (Netns::create(), Netns::create());
        let ip = absolute(Path::new("ip"));
        let ok = |mut c: Command| assert!(c.status().unwrap().success(), "{c:?}");
        let mut add = host.command(&ip);
        add.args(["link", "add", "azbh", "type", "veth", "peer", "name", "azbc", "netns", container.name()]);
        ok(add);
        for (ns, dev, addr) in [(&host, "azbh", HOST_ADDR), (&container, "azbc", CONTAINER_ADDR)] {
            let mut a = ns.command(&ip);
            a.args(["addr", "add", &format!("{addr}/24"), "dev", dev]);
            ok(a);
            let mut up = ns.command(&ip);
            up.args(["link", "set", dev, "up"]);
            ok(up);
        }
        Self { host, container }
    }
}

/// The daemon in the "host" namespace, restartable on the same directories.
struct HostDaemon {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl HostDaemon {
    fn start(ns: &Netns, authority: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "[cloud]\nauthority_host = \"{authority}\"\n\n[server]\nlisten = [\"127.0.0.1:{port}\"]\ntls_listen = []\n\
             container_listen = [\"{HOST_ADDR}:{port}\"]\nstate_dir = \"{}\"\nruntime_dir = \"{}\"\ndefault_profile = \"contoso\"\n\n\
             [logins.app]\nkind = \"service-principal\"\ntenant = \"{CONTOSO}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\n\
             [profiles.contoso]\nlogin = \"app\"\n\n[profiles.fabrikam]\nlogin = \"app\"\ntenant = \"{FABRIKAM}\"\n",
            dir.path().join("state").display(),
            dir.path().join("run").display(),
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let mut daemon = Self { dir, port, child: None };
        daemon.spawn(ns);
        daemon
    }

    fn spawn(&mut self, ns: &Netns) {
        let before = self.readies();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let child = ns
            .command(binary())
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .args(["--log-format", "json", "--log-level", "debug", "serve"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.readies() == before {
            assert!(Instant::now() < deadline, "daemon not ready within 30 s:\n{}", self.log());
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("daemon exited ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// "ready" lines so far (one per start).
    fn readies(&self) -> usize {
        self.log().matches("\"ready\"").count()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `azbroker --config ... ARGS` on the host (the admin socket is a file, reachable from here).
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(binary())
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .args(args)
            .output()
            .unwrap()
    }

    /// `key create ARGS --format sh`, parsed into the variables it exported.
    fn create_key(&self, args: &[&str]) -> Vec<(String, String)> {
        let out = self.cli(&[&["key", "create"], args, &["--format", "sh"]].concat());
        assert!(out.status.success(), "key create: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let (k, v) = l.strip_prefix("export ").unwrap().split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    fn stop(&mut self) {
        let status = terminate(self.child.take().expect("running"));
        assert!(status.success(), "{status}:\n{}", self.log());
    }
}

impl Drop for HostDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A real SDK client in the "container" namespace with exactly `vars`; its JSON result.
fn sdk_client(ns: &Netns, id: &str, vars: &[(String, String)]) -> Value {
    let dir = clients_dir();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (program, script) = if id.starts_with("node") {
        (absolute(Path::new("node")), dir.join("node/mi_client.mjs"))
    } else {
        (dir.join(".venv/bin/python"), dir.join("python/mi_client.py"))
    };
    let mut cmd = ns.command_with(&vars, program);
    cmd.arg(script).args(["--client", id, "--resource", ARM, "--allow-non-loopback"]);
    run(cmd, id)
}

/// One raw request from the "container" namespace: (status, body).
fn request(ns: &Netns, method: &str, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let script = "import json,sys,urllib.request,urllib.error\n\
        m,u,h=sys.argv[1],sys.argv[2],json.loads(sys.argv[3])\n\
        d=b'resource=https://management.azure.com/' if m=='POST' else None\n\
        r=urllib.request.Request(u,data=d,method=m,headers=h)\n\
        try:\n  x=urllib.request.urlopen(r,timeout=20); print(x.status); print(x.read().decode())\n\
        except urllib.error.HTTPError as e:\n  print(e.code); print(e.read().decode())\n";
    let headers: serde_json::Map<String, Value> =
        headers.iter().map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned()))).collect();
    let out = ns
        .command(absolute(Path::new("python3")))
        .args(["-c", script, method, url, &Value::Object(headers).to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, body) =
        text.split_once('\n').unwrap_or_else(|| panic!("{text} {}", String::from_utf8_lossy(&out.stderr)));
    (status.trim().parse().unwrap(), body.to_owned())
}

fn tid_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    let token = v["access_token"].as_str().unwrap_or_else(|| panic!("no token: {body}"));
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
            .unwrap();
    claims["tid"].as_str().unwrap().to_owned()
}

#[test]
fn containers_get_the_key_profiles_tenant_and_nothing_else() {
    let pair = Pair::create();
    let cloud = NsCloud::start(&pair.host);
    let mut daemon = HostDaemon::start(&pair.host, &cloud.authority);
    let port = daemon.port;
    let vars = daemon.create_key(&["dev", "--profile", "fabrikam", "--resource", ARM]);
    let endpoint = env_value(&vars, "IDENTITY_ENDPOINT");
    let key = env_value(&vars, "IDENTITY_HEADER");
    assert_eq!(endpoint, format!("http://{HOST_ADDR}:{port}/msi/token"));
    assert!(key.starts_with("azbk_"), "{key}");

    // Real clients, with only what `key create` printed, get the key's profile's tenant.
    for id in ["azure-identity-mi", "node-identity-mi"] {
        let result = sdk_client(&pair.container, id, &vars);
        assert_eq!(result["ok"], true, "{id}: {result}\n{}", daemon.log());
        assert_eq!(result["tid"], tenant_guid(FABRIKAM), "{id}: {result}");
    }

    let token_url = |path: &str, resource: &str| {
        format!("http://{HOST_ADDR}:{port}{path}?api-version=2019-08-01&resource={resource}")
    };
    let with_key = [("X-IDENTITY-HEADER", key.as_str())];
    let (status, body) = request(&pair.container, "GET", &token_url("/msi/token", ARM), &with_key);
    assert_eq!((status, tid_of(&body)), (200, tenant_guid(FABRIKAM)), "{body}");
    // Host = host.docker.internal is accepted there too.
    let via_name = [("X-IDENTITY-HEADER", key.as_str()), ("Host", "host.docker.internal")];
    assert_eq!(request(&pair.container, "GET", &token_url("/msi/token", ARM), &via_name).0, 200);

    // No key, a wrong key, the daemon's own identity header: refused, in App Service's shape.
    let header = std::fs::read_to_string(daemon.dir.path().join("state/identity-header")).unwrap();
    for (headers, want) in [
        (vec![], "key create"),
        (vec![("X-IDENTITY-HEADER", "azbk_not-a-key")], "key create"),
        (vec![("X-IDENTITY-HEADER", header.trim())], "key create"),
    ] {
        let (status, body) = request(&pair.container, "GET", &token_url("/msi/token", ARM), &headers);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status, v["statusCode"].as_u64()), (401, Some(401)), "{body}");
        assert!(v["message"].as_str().unwrap().contains(want), "{body}");
    }

    // The secret-less dialects are refused there, saying to use the App Service variables.
    let imds = format!(
        "http://{HOST_ADDR}:{port}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={ARM}"
    );
    let arc = format!(
        "http://{HOST_ADDR}:{port}/arc/metadata/identity/oauth2/token?api-version=2020-06-01&resource={ARM}"
    );
    let msi_auth = format!("http://{HOST_ADDR}:{port}/msi/auth");
    for (method, url) in [("GET", &imds), ("GET", &arc), ("POST", &msi_auth), ("GET", &msi_auth)] {
        let (status, body) = request(&pair.container, method, url, &[("Metadata", "true")]);
        assert_eq!(status, 403, "{method} {url}: {body}");
        assert!(body.contains("IDENTITY_ENDPOINT") && body.contains("key create"), "{url}: {body}");
    }

    // The key pins its profile and its resources.
    let (status, body) = request(&pair.container, "GET", &token_url("/p/contoso/msi/token", ARM), &with_key);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("'dev' is for profile 'fabrikam' only; it cannot select profile 'contoso'")
            && !body.contains("access_token"),
        "{body}"
    );
    let vault = "https://vault.azure.net";
    let (status, body) = request(&pair.container, "GET", &token_url("/msi/token", vault), &with_key);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("does not allow resource"), "{body}");
    // Azure ML's `secret` carries a key too.
    let ml = format!("{msi_auth}?api-version=2017-09-01&resource={ARM}");
    let (status, body) = request(&pair.container, "GET", &ml, &[("secret", key.as_str())]);
    assert_eq!((status, body.contains("access_token")), (200, true), "{body}");

    // Listed with its use, never shown again.
    let list = daemon.cli(&["key", "list", "--json"]);
    let keys: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(keys[0]["name"], "dev");
    let grants = keys[0]["grants"].as_u64().unwrap();
    assert!(grants >= 5, "{keys}");
    assert_eq!(keys[0]["resources"], serde_json::json!([ARM]));

    // A key survives a restart, and so does its use (saved when the daemon stops).
    daemon.stop();
    daemon.spawn(&pair.host);
    let list = daemon.cli(&["key", "list", "--json"]);
    let keys: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!((keys[0]["grants"].as_u64(), keys[0]["last_use"].is_u64()), (Some(grants), true), "{keys}");
    let (status, body) = request(&pair.container, "GET", &token_url("/msi/token", ARM), &with_key);
    assert_eq!((status, tid_of(&body)), (200, tenant_guid(FABRIKAM)), "{body}");

    // Revocation takes effect at once.
    let out = daemon.cli(&["key", "revoke", "dev"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, body) = request(&pair.container, "GET", &token_url("/msi/token", ARM), &with_key);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("revoked") && body.contains("key create"), "{body}");

    // A short-lived key stops working when it expires.
    let short = daemon.create_key(&["short", "--profile", "fabrikam", "--ttl", "2s"]);
    let short_key = env_value(&short, "IDENTITY_HEADER");
    let headers = [("X-IDENTITY-HEADER", short_key.as_str())];
    // (Whether it still works on the first request depends on how fast that request is, so only
    // the end state is checked: refused as expired, and listed as such.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let expired = loop {
        let (status, body) = request(&pair.container, "GET", &token_url("/msi/token", ARM), &headers);
        if status != 200 {
            break (status, body);
        }
        assert!(Instant::now() < deadline, "the 2 s key still works after 30 s");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(expired.0, 401, "{}", expired.1);
    assert!(expired.1.contains("expired") && expired.1.contains("key create"), "{}", expired.1);
    let list = daemon.cli(&["key", "list", "--json"]);
    let keys: Value = serde_json::from_slice(&list.stdout).unwrap();
    let short_info = keys.as_array().unwrap().iter().find(|k| k["name"] == "short").unwrap();
    assert_eq!(short_info["state"], "expired", "{short_info}");
    assert_eq!(short_info["expires"].as_u64().unwrap() - short_info["created"].as_u64().unwrap(), 2);

    // The keys appear in no log line, no status output and not in the state file.
    let status = daemon.cli(&["status", "--json"]);
    let list = daemon.cli(&["key", "list"]);
    let state = std::fs::read_to_string(daemon.dir.path().join("state/client-keys.json")).unwrap();
    for k in [&key, &short_key] {
        assert!(!daemon.log().contains(k.as_str()), "a key is in the log");
        assert!(!String::from_utf8_lossy(&status.stdout).contains(k.as_str()), "a key is in status");
        assert!(!String::from_utf8_lossy(&list.stdout).contains(k.as_str()), "a key is in key list");
        assert!(!state.contains(k.as_str()), "a key is in the state file");
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, k.as_bytes());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert!(state.contains(&hex), "the hash is stored");
    }
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata(daemon.dir.path().join("state/client-keys.json")).unwrap().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Every grant's audit line names the key.
    let audited = daemon
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "azbroker::audit" && v["key"] == "dev")
        .count();
    assert!(audited >= 5, "audit lines naming the key: {audited}");
}
