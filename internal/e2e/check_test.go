package e2e

import (
	"net/http"
	"os"
	"strings"
	"testing"
)

// checkCLI runs `status --check` on this world's files.
func (e *env) checkCLI(extra ...string) (string, int) {
	e.t.Helper()
	out, err := e.run(append([]string{"email-oauth2-proxy", "status", "--check", "--config", e.config,
		"--status-file", e.status, "--token-cache", e.tokens}, extra...)...)
	return strings.TrimSpace(out), exitCode(err)
}

// TestE2EStatusCheck: `status --check` as Nagios, Icinga or Zabbix run it,
// against a real engine in the foreground: CRITICAL while nothing runs,
// WARNING while an account waits for authorisation, OK once it is
// authorised, CRITICAL when the provider refuses an account for good; one
// line each, the exit status the monitoring convention's.
func TestE2EStatusCheck(t *testing.T) {
	e := newEnv(t)
	e.addClient(bob)
	e.registerCode(alice)
	e.register("--account", bob, "--oauth2-flow", "client_credentials")

	if out, code := e.checkCLI(); code != 2 || !strings.HasPrefix(out, "CRITICAL: proxy not running") {
		t.Errorf("nothing running: exit %d %q, want 2 CRITICAL", code, out)
	}
	e.serve()
	if out, code := e.checkCLI(); code != 0 || !strings.HasPrefix(out, "OK: 0 accounts authorised, 2 not used yet, engine running in the foreground |") {
		t.Errorf("running, nothing used: exit %d %q, want 0 OK", code, out)
	}

	login := e.imapLoginAsync(alice)
	authURL := e.waitAuthURL(alice, 1)
	if out, code := e.checkCLI(); code != 1 || !strings.HasPrefix(out, "WARNING: "+alice+" waits for authorisation since ") {
		t.Errorf("waiting: exit %d %q, want 1 WARNING", code, out)
	}
	e.authorize(alice, authURL)
	e.awaitLogin(login, "the login that waited")
	if r := e.imapLoginReply(bob, mailerPassword); r != "L1 OK" {
		t.Fatalf("bob: %q", r)
	}
	out, code := e.checkCLI()
	if code != 0 || !strings.HasPrefix(out, "OK: 2 accounts authorised, engine running in the foreground | accounts=2 authorised=2") {
		t.Errorf("authorised: exit %d %q, want 0 OK", code, out)
	}
	// An access token that expires within the threshold is a warning.
	if out, code := e.checkCLI("--warn-expiry", "1000h"); code != 1 || !strings.Contains(out, "access token expires") {
		t.Errorf("--warn-expiry: exit %d %q, want 1 WARNING", code, out)
	}

	// The provider refuses bob's client for good: CRITICAL with the reason.
	e.stop(e.proc)
	if err := os.Remove(e.tokens); err != nil {
		t.Fatal(err)
	}
	e.serve() // a new engine with no tokens: bob's login asks the provider
	e.prov.RefuseNextWith(1, http.StatusUnauthorized, "invalid_client", "AADSTS7000222: The provided client secret keys are expired.")
	e.imapLoginReply(bob, mailerPassword)
	if out, code := e.checkCLI(); code != 2 || !strings.HasPrefix(out, "CRITICAL: "+bob+" failing: ") || !strings.Contains(out, "AADSTS7000222") {
		t.Errorf("failing: exit %d %q, want 2 CRITICAL with the reason", code, out)
	}
}
