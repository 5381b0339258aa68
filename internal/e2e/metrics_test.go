package e2e

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"
)

// scrape GETs /metrics the way Prometheus does (OpenMetrics accepted).
func scrape(t *testing.T, addr string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/openmetrics-text") {
		t.Fatalf("scrape: %s %s\n%s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	return string(b)
}

// value returns the sample's value, -1 when the series is absent.
func value(body, series string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([-0-9.e+]+)`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestE2EMetrics: serve --metrics-listen on loopback; a scrape shows
// logins by protocol and result, token requests by grant and result, the
// account's token expiry, open sessions, pending authorisations, a
// permanent refusal with its catalogue class, and build info; invented
// login names add no series, and no secret appears.
func TestE2EMetrics(t *testing.T) {
	e := newEnv(t)
	e.addClient(bob)
	e.registerCode(alice)
	e.register("--account", bob, "--oauth2-flow", "client_credentials")
	addr := testenv.Addr(testenv.FreePorts(t, 1)[0])
	e.serve("--metrics-listen", addr)

	if r := e.imapLoginReply(bob, mailerPassword); r != "L1 OK" {
		t.Fatalf("bob: %q", r)
	}
	login := e.imapLoginAsync(alice)
	e.waitAuthURL(alice, 1)
	body := scrape(t, addr)
	for series, want := range map[string]float64{
		`orbit_emailproxy_logins_total{protocol="IMAP",result="ok"}`:                                   1,
		`orbit_emailproxy_token_requests_total{grant="client_credentials",result="ok"}`:                1,
		`orbit_emailproxy_pending_authorisations`:                                                      1,
		`orbit_emailproxy_accounts{state="waiting"}`:                                                   1,
		`orbit_emailproxy_sessions_max{protocol="IMAP",section="IMAP-` + fmt.Sprint(e.imapPort) + `"}`: 10000,
	} {
		if got := value(body, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if got := value(body, `orbit_emailproxy_sessions_open{protocol="IMAP",section="IMAP-`+fmt.Sprint(e.imapPort)+`"}`); got < 1 {
		t.Errorf("sessions_open = %v while alice's login waits, want >= 1", got)
	}
	if exp := value(body, `orbit_emailproxy_token_expiry_seconds{account="`+bob+`"}`); exp < 3000 || exp > 3600 {
		t.Errorf("bob's token expiry = %v s, want about an hour", exp)
	}
	if !regexp.MustCompile(`(?m)^orbit_emailproxy_build_info\{commit="[^"]*",version="[^"]*"\} 1(\.0)?$`).MatchString(body) {
		t.Errorf("no build_info:\n%s", body)
	}

	e.authorize(alice, e.waitAuthURL(alice, 1))
	e.awaitLogin(login, "alice's login")
	// Mail read through the proxy shows in the byte counter.
	msg := testMessage(alice, alice, "counted by the metrics")
	if err := e.dc.Deliver(alice, msg); err != nil {
		t.Fatal(err)
	}
	if msgs, out, err := e.imapFetchAll(alice, mailerPassword); err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v\n%s", err, out)
	}
	if got := value(scrape(t, addr), `orbit_emailproxy_piped_bytes_total{direction="client",protocol="IMAP"}`); got < float64(len(msg)) {
		t.Errorf("piped_bytes_total towards IMAP clients = %v after fetching a %d-byte message", got, len(msg))
	}
	// A name nobody configured, and bob refused for good.
	e.imapLoginReply("mallory-"+strings.Repeat("x", 20)+"@example.test", "pw")
	e.stop(e.proc)
	e.serve("--metrics-listen", addr)
	e.prov.RefuseNextWith(1, http.StatusUnauthorized, "invalid_client", "AADSTS7000222: The provided client secret keys are expired.")
	// bob's stored token is still valid after the restart; make the
	// engine ask the provider by expiring it at the provider and the store.
	e.prov.ExpireTokens(bob)
	e.imapLoginReply(bob, mailerPassword)
	deadline := time.Now().Add(10 * time.Second)
	for {
		body = scrape(t, addr)
		if value(body, `orbit_emailproxy_tokens_revoked_total{account="`+bob+`"}`) >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := value(body, `orbit_emailproxy_tokens_revoked_total{account="`+bob+`"}`); got != 1 {
		t.Errorf("tokens_revoked_total for bob = %v, want 1:\n%s", got, grepLines(body, "orbit_emailproxy_"))
	}
	if strings.Contains(body, "mallory") {
		t.Errorf("an invented login name became a label:\n%s", grepLines(body, "mallory"))
	}
	for _, secret := range []string{clientSecret, mailerPassword, "alice-provider-pw"} {
		if strings.Contains(body, secret) {
			t.Errorf("a secret in the metrics: %q", secret)
		}
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
