"""Structural checks of the azbroker DaemonSet: what the schema cannot know.

Each check names the design decision it protects (deploy/kubernetes/README.md). Prints one line
per check and a closing tally; exits 1 if any failed.
"""
import sys
import tomllib

import yaml

results = []


def check(name, ok):
    results.append((name, bool(ok)))
    print(("ok     " if ok else "FAILED ") + name)


def main(manifest, client):
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(manifest)) if d}
    ds = docs[("DaemonSet", "azbroker")]
    pod = ds["spec"]["template"]["spec"]
    main_c = next(c for c in pod["containers"] if c["name"] == "azbroker")
    mounts = {m["name"]: m for m in main_c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    check("one broker per node: a DaemonSet with a rolling update", ds["spec"]["updateStrategy"]["type"] == "RollingUpdate")
    check("hostNetwork pods reach it on the node's loopback", pod.get("hostNetwork") is True)
    check("DNS still works with hostNetwork", pod.get("dnsPolicy") == "ClusterFirstWithHostNet")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        p = main_c[probe]["httpGet"]
        check(f"{probe} on {path} via the loopback listener", p["path"] == path and p.get("host") == "127.0.0.1" and p["port"] == 50342)
    sc = main_c["securityContext"]
    check("unprivileged, read-only, no capabilities", pod["securityContext"]["runAsNonRoot"] is True
          and sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
          and sc["capabilities"]["drop"] == ["ALL"])
    check("no Kubernetes API token in the pod", pod.get("automountServiceAccountToken") is False)

    config_cm = docs[("ConfigMap", "azbroker-config")]
    config = tomllib.loads(config_cm["data"]["config.toml"])
    server = config["server"]
    check("a loopback listener and one on the node address", server["listen"] == ["127.0.0.1:50342", "__HOST_IP__:50342"])
    check("the node-address listener is explicitly allowed", server.get("allow_non_loopback") is True)
    check("pods off the host network may use the profiles (with the identity header)",
          all(p.get("allow_remote_callers") is True for p in config["profiles"].values()))
    init = pod["initContainers"][0]
    env = {e["name"]: e for e in init["env"]}
    check("the node address comes from status.hostIP", env["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP")
    check("the init container renders into the config volume", any(m["name"] == "config" for m in init["volumeMounts"]))

    secret = docs[("Secret", "azbroker-secrets")]
    secret_dir = mounts["secrets"]["mountPath"]
    check("secrets come from the Secret, mounted read-only",
          volumes["secrets"]["secret"]["secretName"] == secret["metadata"]["name"] and mounts["secrets"].get("readOnly") is True)
    check("the identity header (mandatory off loopback) is a Secret file",
          server["identity_header_file"] == f"{secret_dir}/identity-header" and "identity-header" in secret["stringData"])
    for login in config.get("logins", {}).values():
        check("client secrets are files from the Secret, never inline",
              "client_secret" not in login and login["client_secret_file"].startswith(secret_dir + "/")
              and login["client_secret_file"].rsplit("/", 1)[1] in secret["stringData"])
    check("the config file the daemon reads is the rendered one",
          main_c["args"][:2] == ["--config", mounts["config"]["mountPath"] + "/config.toml"] and "serve" in main_c["args"])
    # The daemon chmods state_dir to 0700, which only its owner may do: a directory it creates
    # inside the volume, not the volume's root (owned by root).
    check("state dir is a subdirectory of a writable volume; runtime dir a volume",
          server["state_dir"].startswith(mounts["state"]["mountPath"] + "/") and mounts["runtime"]["mountPath"] == server["runtime_dir"])
    check("the Secret's files are readable by the pod's group only",
          volumes["secrets"]["secret"]["defaultMode"] == 0o440 and pod["securityContext"].get("fsGroup") is not None)

    cpod = yaml.safe_load(open(client))
    cenv = {e["name"]: e for e in cpod["spec"]["containers"][0]["env"]}
    check("client pods use the node address and the header from a Secret",
          cenv["IDENTITY_ENDPOINT"]["value"] == "http://$(HOST_IP):50342/msi/token"
          and "secretKeyRef" in cenv["IDENTITY_HEADER"]["valueFrom"])

    failed = sum(1 for _, ok in results if not ok)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
