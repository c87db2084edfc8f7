// Gets one managed-identity token with a real Java SDK and reports it as one JSON line, like the
// Python, Node, Rust and Go judges:
//
//   java -cp target/classes:target/lib/* azbroker.MiClient --client NAME --resource R
//        [--client-id ID] [--timeout SECONDS] [--allow-non-loopback]
//
// NAME is java-identity-mi (azure-identity ManagedIdentityCredential), java-identity-dac
// (azure-identity DefaultAzureCredential, AZURE_TOKEN_CREDENTIALS=prod unless the environment
// sets it) or java-msal-mi (MSAL4J ManagedIdentityApplication). Configuration comes only from
// the environment and these flags. The token itself is never printed, only a short SHA-256
// prefix. Claims are read from the JWT payload without verifying the signature.
package azbroker;

import com.azure.core.credential.AccessToken;
import com.azure.core.credential.TokenRequestContext;
import com.azure.identity.DefaultAzureCredentialBuilder;
import com.azure.identity.ManagedIdentityCredentialBuilder;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.microsoft.aad.msal4j.IAuthenticationResult;
import com.microsoft.aad.msal4j.ManagedIdentityApplication;
import com.microsoft.aad.msal4j.ManagedIdentityId;
import com.microsoft.aad.msal4j.ManagedIdentityParameters;
import java.net.InetAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.Base64;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.TimeUnit;

public final class MiClient {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final List<String> CLIENTS =
      List.of("java-identity-mi", "java-identity-dac", "java-msal-mi");
  /** Endpoint variables a Java source reads; with none set the SDKs call 169.254.169.254. */
  private static final List<String> ENDPOINT_VARS =
      List.of("IDENTITY_ENDPOINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST");

  private static volatile String client = "unknown";
  private static volatile boolean printed;

  private MiClient() {}

  public static void main(String[] argv) {
    String resource = null;
    String clientId = null;
    double timeout = 60;
    boolean allow = false;
    try {
      for (int i = 0; i < argv.length; i++) {
        switch (argv[i]) {
          case "--client" -> client = argv[++i];
          case "--resource" -> resource = argv[++i];
          case "--client-id" -> clientId = argv[++i];
          case "--timeout" -> timeout = Double.parseDouble(argv[++i]);
          case "--allow-non-loopback" -> allow = true;
          default -> fail("UsageError: unknown argument " + argv[i]);
        }
      }
    } catch (RuntimeException e) {
      fail("UsageError: " + e);
    }
    if (!CLIENTS.contains(client) || resource == null || !(timeout > 0)) {
      fail("UsageError: --client must be one of " + CLIENTS + "; --resource is required; --timeout must be > 0");
    }
    if (!allow) {
      String why = nonLoopbackReason();
      if (why != null) {
        fail("Refused: " + why + " (tests only talk to loopback; see --allow-non-loopback)");
      }
    }
    long millis = (long) (timeout * 1000);
    double shown = timeout;
    Thread watchdog = new Thread(() -> {
      try {
        Thread.sleep(millis);
        fail("Timeout: no token within " + shown + " s");
      } catch (InterruptedException e) {
        // the run finished first
      }
    });
    watchdog.setDaemon(true);
    watchdog.start();
    try {
      run(resource, clientId);
    } catch (Throwable e) {
      fail(describe(e));
    }
  }

  private static void run(String resource, String clientId) throws Exception {
    if (client.equals("java-msal-mi")) {
      ManagedIdentityId id = clientId == null
          ? ManagedIdentityId.systemAssigned()
          : ManagedIdentityId.userAssignedClientId(clientId);
      ManagedIdentityApplication app = ManagedIdentityApplication.builder(id).build();
      IAuthenticationResult r = app.acquireTokenForManagedIdentity(
          ManagedIdentityParameters.builder(resource).build()).get(120, TimeUnit.SECONDS);
      success(r.accessToken(), r.expiresOnDate().getTime() / 1000);
      return;
    }
    // Exactly resource + "/.default", no slash normalisation.
    TokenRequestContext request = new TokenRequestContext().addScopes(resource + "/.default");
    AccessToken token;
    if (client.equals("java-identity-mi")) {
      ManagedIdentityCredentialBuilder b = new ManagedIdentityCredentialBuilder();
      if (clientId != null) {
        b.clientId(clientId);
      }
      token = b.build().getTokenSync(request);
    } else {
      if (System.getenv("AZURE_TOKEN_CREDENTIALS") == null) {
        // Environment, workload identity and managed identity only: no developer tool can
        // answer by accident, and managed identity stays inside the chain. (azure-core's
        // configuration reads a system property before the environment variable.)
        System.setProperty("AZURE_TOKEN_CREDENTIALS", "prod");
      }
      DefaultAzureCredentialBuilder b = new DefaultAzureCredentialBuilder();
      if (clientId != null) {
        b.managedIdentityClientId(clientId);
      }
      token = b.build().getTokenSync(request);
    }
    success(token.getToken(), token.getExpiresAt().toEpochSecond());
  }

  /** Why this run would leave loopback, or null when it would not. */
  private static String nonLoopbackReason() {
    boolean selected = false;
    for (String name : ENDPOINT_VARS) {
      String value = System.getenv(name);
      if (value == null || value.isEmpty()) {
        continue;
      }
      selected = true;
      String host;
      try {
        host = URI.create(value).getHost();
      } catch (IllegalArgumentException e) {
        host = null;
      }
      if (host == null || !isLoopback(host)) {
        return name + " points at '" + value + "', not a loopback address";
      }
    }
    return selected ? null : "the environment selects no endpoint, so the SDK would call IMDS at 169.254.169.254";
  }

  private static boolean isLoopback(String host) {
    String h = host.replaceAll("^\\[|\\]$", "");
    if (h.equals("localhost")) {
      return true;
    }
    if (!h.matches("[0-9.]+|[0-9a-fA-F:]+")) {
      return false; // a name would need DNS; only literals count
    }
    try {
      return InetAddress.getByName(h).isLoopbackAddress();
    } catch (Exception e) {
      return false;
    }
  }

  private static void success(String token, long expiresOn) throws Exception {
    String[] parts = token.split("\\.");
    if (parts.length < 2) {
      fail("InvalidToken: not a JWT");
    }
    JsonNode claims = JSON.readTree(Base64.getUrlDecoder().decode(parts[1].replace("=", "")));
    ObjectNode out = JSON.createObjectNode();
    out.put("ok", true);
    out.put("client", client);
    out.set("tid", claims.get("tid"));
    out.set("aud", claims.get("aud"));
    out.set("oid", claims.get("oid"));
    out.put("expires_on", expiresOn);
    byte[] sum = MessageDigest.getInstance("SHA-256").digest(token.getBytes(StandardCharsets.UTF_8));
    out.put("token_sha256", HexFormat.of().formatHex(sum).substring(0, 16));
    emit(out, 0);
  }

  private static String describe(Throwable e) {
    StringBuilder s = new StringBuilder();
    for (Throwable t = e; t != null && s.length() < 4000; t = t.getCause()) {
      if (s.length() > 0) {
        s.append(" <- ");
      }
      s.append(t.getClass().getSimpleName()).append(": ").append(t.getMessage());
    }
    return s.length() > 4000 ? s.substring(0, 4000) : s.toString();
  }

  private static void fail(String error) {
    ObjectNode out = JSON.createObjectNode();
    out.put("ok", false);
    out.put("client", client);
    out.put("error", error);
    emit(out, 1);
  }

  private static synchronized void emit(ObjectNode line, int code) {
    if (!printed) {
      printed = true;
      System.out.println(line.toString());
      System.out.flush();
      Runtime.getRuntime().halt(code);
    }
  }
}
