#!/usr/bin/env node
// Get one managed-identity token with the real @azure/identity and report it as one JSON line.
//
// Used by azbroker's end-to-end tests: the test starts the daemon, puts exactly what
// `azbroker env` prints into this process's environment, and runs
//
//   node mi_client.mjs --client NAME --resource RESOURCE [--client-id ID] [--timeout SECONDS]
//                      [--allow-non-loopback]
//
// NAME is node-identity-mi (ManagedIdentityCredential) or node-identity-dac
// (DefaultAzureCredential). Configuration comes only from the environment and these flags.
// It refuses to run (ok:false, "Refused: ...") when the environment would send the SDK
// anywhere but loopback, e.g. to the real IMDS address because no endpoint variable is set,
// unless --allow-non-loopback is given. Exactly one line is printed on stdout:
//
//   {"ok":true,"client":NAME,"tid":...,"aud":...,"oid":...,"expires_on":<int>, ...}
//   {"ok":false,"client":NAME,"error":"<type>: <message>"}          (exit status 1)
//
// The token itself is never printed (only a short SHA-256 prefix, "token_sha256"). Claims
// are read from the JWT payload without verifying the signature.

import { createHash } from "node:crypto";
import { parseArgs } from "node:util";

const CLIENTS = ["node-identity-mi", "node-identity-dac"];
let client = "unknown"; // set from --client once parsed; used in every result line

let printed = false;
function emit(obj, code) {
  if (!printed) {
    printed = true;
    // Exit only once stdout has been flushed (it may be a pipe).
    process.stdout.write(JSON.stringify(obj) + "\n", () => process.exit(code));
  }
}

function describe(err) {
  if (err instanceof Error || (err && typeof err === "object" && "message" in err)) {
    // AggregateAuthenticationError's message already lists every credential's error.
    return `${err.name || "Error"}: ${err.message}`.slice(0, 4000);
  }
  return String(err).slice(0, 4000);
}

function fail(err) {
  emit({ ok: false, client, error: typeof err === "string" ? err : describe(err) }, 1);
}

// Environment variables holding managed-identity endpoint URLs. When the environment selects
// no dialect, MSAL Node falls back to IMDS on 169.254.169.254, which is not a test address.
const ENDPOINT_VARS = ["IDENTITY_ENDPOINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST"];

function isLoopbackHost(host) {
  const h = host.replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

// Why this run would send traffic off the loopback interface, or null if it would not.
function nonLoopbackReason() {
  const env = process.env;
  // MSAL Node's source selection (PROTOCOLS.md section 2.3): does anything beat default IMDS?
  const selected =
    env.AZURE_POD_IDENTITY_AUTHORITY_HOST ||
    (env.IDENTITY_ENDPOINT && (env.IDENTITY_HEADER || env.IMDS_ENDPOINT)) ||
    env.MSI_ENDPOINT;
  if (!selected) {
    return "the environment selects no endpoint, so the SDK would call IMDS at 169.254.169.254";
  }
  for (const name of ENDPOINT_VARS) {
    if (!env[name]) continue;
    let host = "";
    try {
      host = new URL(env[name]).hostname;
    } catch {
      // not a URL: reported below
    }
    if (!isLoopbackHost(host)) return `${name} points at '${host || env[name]}', not a loopback address`;
  }
  return null;
}

// If a proxy is configured, make sure loopback requests still go direct.
function keepLoopbackOffProxies() {
  const proxyVars = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];
  if (!proxyVars.some((v) => process.env[v])) return;
  for (const v of ["NO_PROXY", "no_proxy"]) {
    const current = (process.env[v] || "").split(",").filter(Boolean);
    process.env[v] = [...current, "127.0.0.1", "localhost", "::1"].join(",");
  }
}

function jwtClaims(token) {
  const parts = token.split(".");
  if (parts.length < 2) throw new Error("access token is not a JWT (no payload segment)");
  // Buffer's base64url decoder accepts missing padding.
  const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
  if (claims === null || typeof claims !== "object") throw new Error("JWT payload is not a JSON object");
  return claims;
}

function success(accessToken, extra = {}) {
  const claims = jwtClaims(accessToken.token);
  emit(
    {
      ok: true,
      client,
      tid: claims.tid ?? null,
      aud: claims.aud ?? null,
      oid: claims.oid ?? null,
      expires_on: Math.floor(accessToken.expiresOnTimestamp / 1000),
      token_sha256: createHash("sha256").update(accessToken.token).digest("hex").slice(0, 16),
      ...extra,
    },
    0,
  );
}

async function main() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        client: { type: "string" },
        resource: { type: "string" },
        "client-id": { type: "string" },
        timeout: { type: "string", default: "60" },
        "allow-non-loopback": { type: "boolean", default: false },
      },
      strict: true,
    }));
  } catch (err) {
    fail(`UsageError: ${err.message}`);
    return;
  }
  client = values.client ?? "unknown";
  const timeoutSecs = Number(values.timeout);
  if (!CLIENTS.includes(values.client) || !values.resource || !(timeoutSecs > 0)) {
    fail(
      `UsageError: --client must be one of ${CLIENTS.join(", ")}; --resource is required; --timeout must be > 0`,
    );
    return;
  }
  const reason = values["allow-non-loopback"] ? null : nonLoopbackReason();
  if (reason) {
    fail(`Refused: ${reason} (tests only talk to loopback; see --allow-non-loopback)`);
    return;
  }
  keepLoopbackOffProxies();

  // Hard bound on the run, whatever the SDK's retry policy does.
  setTimeout(() => fail(`Timeout: no token within ${timeoutSecs} s`), timeoutSecs * 1000);

  // Exactly resource + "/.default", no slash normalisation.
  const scope = values.resource + "/.default";
  const clientId = values["client-id"] || undefined;

  // Import after argument checks so a usage error still yields a JSON line fast.
  const identity = await import("@azure/identity");

  if (values.client === "node-identity-mi") {
    const cred = clientId
      ? new identity.ManagedIdentityCredential({ clientId })
      : new identity.ManagedIdentityCredential();
    const token = await cred.getToken(scope);
    if (!token) throw new Error("getToken returned null");
    success(token);
    return;
  }

  // node-identity-dac. Unless the caller chose otherwise, restrict the chain to the "prod"
  // credentials (environment, workload identity, managed identity) so a developer tool (az,
  // azd, VS Code, PowerShell, a broker) cannot answer by accident; managed identity stays
  // inside the chain, so DefaultAzureCredential's IMDS probe is still exercised.
  if (!process.env.AZURE_TOKEN_CREDENTIALS) process.env.AZURE_TOKEN_CREDENTIALS = "prod";
  const cred = new identity.DefaultAzureCredential(clientId ? { managedIdentityClientId: clientId } : {});
  let token;
  let used = "unknown";
  if (typeof cred.getTokenInternal === "function") {
    // Same code path as getToken() (which is a thin wrapper around it), but it also tells
    // which credential in the chain produced the token.
    const result = await cred.getTokenInternal(scope);
    token = result.token;
    used = result.successfulCredential?.constructor?.name ?? "unknown";
  } else {
    token = await cred.getToken(scope);
  }
  if (!token) throw new Error("getToken returned null");
  if (used !== "ManagedIdentityCredential" && used !== "unknown") {
    fail(`WrongCredential: token came from ${used}, not ManagedIdentityCredential`);
    return;
  }
  success(token, { credential: used });
}

main().catch(fail);
