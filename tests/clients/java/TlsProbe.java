// Whether this JVM, as its environment (JAVA_TOOL_OPTIONS) configures it, trusts an HTTPS
// server: one GET with the JDK's own HttpsURLConnection (default trust manager and hostname
// check), reported as one JSON line. Run as a single source file, nothing to install:
//
//   java tests/clients/java/TlsProbe.java https://127.0.0.1:PORT/
//
// Prints {"ok":true,"status":N} when the TLS handshake and hostname check pass (any HTTP status
// counts), else {"ok":false,"error":"..."}. Refuses any host but a loopback literal.
import java.net.InetAddress;
import java.net.URI;
import javax.net.ssl.HttpsURLConnection;

public final class TlsProbe {
  public static void main(String[] argv) throws Exception {
    URI uri = URI.create(argv[0]);
    if (!uri.getScheme().equals("https") || !InetAddress.getByName(uri.getHost()).isLoopbackAddress()
        || !uri.getHost().matches("[0-9.]+")) {
      System.out.println("{\"ok\":false,\"error\":\"only https://<loopback IPv4 literal> is probed\"}");
      System.exit(2);
    }
    try {
      HttpsURLConnection c = (HttpsURLConnection) uri.toURL().openConnection();
      c.setConnectTimeout(10_000);
      c.setReadTimeout(10_000);
      int status = c.getResponseCode();
      System.out.println("{\"ok\":true,\"status\":" + status + "}");
    } catch (Exception e) {
      String why = (e.getClass().getSimpleName() + ": " + e.getMessage()).replace("\\", "/").replace("\"", "'");
      System.out.println("{\"ok\":false,\"error\":\"" + why + "\"}");
      System.exit(1);
    }
  }
}
