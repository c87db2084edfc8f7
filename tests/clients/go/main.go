// Command go-mi-client gets one managed-identity token with a real Go SDK and reports it as
// one JSON line, like the Python, Node and Rust judges:
//
//	go-mi-client --client NAME --resource R [--client-id ID] [--timeout SECONDS]
//	             [--allow-non-loopback] [--claims JSON]
//
// NAME is go-azidentity-mi (azidentity ManagedIdentityCredential), go-azidentity-dac
// (azidentity DefaultAzureCredential with AZURE_TOKEN_CREDENTIALS=prod unless set) or
// go-msal-mi (MSAL Go apps/managedidentity). Configuration comes only from the environment
// and these flags. The token itself is never printed, only a short SHA-256 prefix.
//
// With --claims (go-msal-mi only) it first gets a token, then asks again with
// WithClaims(JSON), the path MSAL Go takes after a resource's claims challenge (token
// revocation); the line then carries both hashes ("token_sha256" is the second token's,
// "first_sha256" the first's).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	mi "github.com/AzureAD/microsoft-authentication-library-for-go/apps/managedidentity"
)

var clientName = "unknown"

func emit(v map[string]any) {
	line, _ := json.Marshal(v)
	fmt.Println(string(line))
	if v["ok"] == true {
		os.Exit(0)
	}
	os.Exit(1)
}

func fail(format string, a ...any) {
	text := fmt.Sprintf(format, a...)
	if len(text) > 4000 {
		text = text[:4000]
	}
	emit(map[string]any{"ok": false, "client": clientName, "error": text})
}

// Endpoint variables some Go source reads; when none selects a source, the SDKs call IMDS at
// 169.254.169.254, which is not a test address.
var endpointVars = []string{"IDENTITY_ENDPOINT", "IMDS_ENDPOINT", "MSI_ENDPOINT"}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// nonLoopbackReason says why this run would leave loopback, or "" when it would not.
func nonLoopbackReason() string {
	selected := false
	for _, name := range endpointVars {
		value := os.Getenv(name)
		if value == "" {
			continue
		}
		selected = true
		u, err := url.Parse(value)
		if err != nil || !loopbackHost(u.Hostname()) {
			return fmt.Sprintf("%s points at %q, not a loopback address", name, value)
		}
	}
	if !selected {
		return "the environment selects no endpoint, so the SDK would call IMDS at 169.254.169.254"
	}
	return ""
}

func claimsOf(token string) map[string]any {
	parts := strings.Split(token, ".")
	if len(parts) < 2 {
		fail("InvalidToken: not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		fail("InvalidToken: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		fail("InvalidToken: %v", err)
	}
	return c
}

func hash16(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:16]
}

func success(token string, expires time.Time, extra map[string]any) {
	c := claimsOf(token)
	out := map[string]any{
		"ok": true, "client": clientName, "tid": c["tid"], "aud": c["aud"], "oid": c["oid"],
		"expires_on": expires.Unix(), "token_sha256": hash16(token),
	}
	for k, v := range extra {
		out[k] = v
	}
	emit(out)
}

func azidentityToken(ctx context.Context, dac bool, resource, clientID string) (azcore.AccessToken, error) {
	var cred azcore.TokenCredential
	var err error
	if dac {
		if os.Getenv("AZURE_TOKEN_CREDENTIALS") == "" {
			// Environment, workload identity and managed identity only: no developer tool can
			// answer by accident, and managed identity stays inside the chain (with its probe).
			os.Setenv("AZURE_TOKEN_CREDENTIALS", "prod")
		}
		if clientID != "" {
			// Go's DefaultAzureCredential takes a user-assigned id only from AZURE_CLIENT_ID.
			os.Setenv("AZURE_CLIENT_ID", clientID)
		}
		cred, err = azidentity.NewDefaultAzureCredential(nil)
	} else {
		opts := &azidentity.ManagedIdentityCredentialOptions{}
		if clientID != "" {
			opts.ID = azidentity.ClientID(clientID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(opts)
	}
	if err != nil {
		return azcore.AccessToken{}, err
	}
	// Exactly resource + "/.default", no slash normalisation.
	return cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{resource + "/.default"}})
}

func msalClient(clientID string) (mi.Client, error) {
	if clientID != "" {
		return mi.New(mi.UserAssignedClientID(clientID))
	}
	return mi.New(mi.SystemAssigned())
}

func main() {
	name := flag.String("client", "", "go-azidentity-mi | go-azidentity-dac | go-msal-mi")
	resource := flag.String("resource", "", "resource URI")
	clientID := flag.String("client-id", "", "user-assigned client id")
	timeout := flag.Float64("timeout", 60, "hard limit for the whole run, seconds")
	allow := flag.Bool("allow-non-loopback", false, "allow an endpoint off loopback")
	claims := flag.String("claims", "", "go-msal-mi: ask again with these claims (revocation)")
	flag.CommandLine.SetOutput(os.Stderr)
	if err := flag.CommandLine.Parse(os.Args[1:]); err != nil {
		fail("UsageError: %v", err)
	}
	clientName = *name
	switch clientName {
	case "go-azidentity-mi", "go-azidentity-dac", "go-msal-mi":
	default:
		fail("UsageError: --client must be go-azidentity-mi, go-azidentity-dac or go-msal-mi")
	}
	if *resource == "" || *timeout <= 0 {
		fail("UsageError: --resource is required; --timeout must be > 0")
	}
	if *claims != "" && clientName != "go-msal-mi" {
		fail("UsageError: --claims is for go-msal-mi")
	}
	if !*allow {
		if why := nonLoopbackReason(); why != "" {
			fail("Refused: %s (tests only talk to loopback; see --allow-non-loopback)", why)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*timeout*float64(time.Second)))
	defer cancel()
	go func() {
		<-ctx.Done()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			fail("Timeout: no token within %v s", *timeout)
		}
	}()

	if clientName == "go-msal-mi" {
		client, err := msalClient(*clientID)
		if err != nil {
			fail("Error: %v", err)
		}
		first, err := client.AcquireToken(ctx, *resource)
		if err != nil {
			fail("Error: %v", err)
		}
		if *claims == "" {
			success(first.AccessToken, first.ExpiresOn, nil)
		}
		second, err := client.AcquireToken(ctx, *resource, mi.WithClaims(*claims))
		if err != nil {
			fail("Error (with claims): %v", err)
		}
		success(second.AccessToken, second.ExpiresOn, map[string]any{"first_sha256": hash16(first.AccessToken)})
	}
	token, err := azidentityToken(ctx, clientName == "go-azidentity-dac", *resource, *clientID)
	if err != nil {
		fail("Error: %v", err)
	}
	success(token.Token, token.ExpiresOn, nil)
}
