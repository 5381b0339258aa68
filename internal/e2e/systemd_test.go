package e2e

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/status"
	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
	"github.com/senhasegura/orbit/internal/testenv/sandbox"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
)

// unitWorld is the harness's world with the proxy run by a real systemd
// (internal/testenv/sandbox) instead of as a child of the test: the unit
// as `start` installs it, hardening included, its journal, and orbit's
// commands run inside the sandbox as an administrator runs them. The
// sandbox shares the host's network, so the unit reaches the provider and
// Dovecot on 127.0.0.1 and the mail clients, run on the host, reach the
// unit's listeners.
type unitWorld struct {
	*env
	box *sandbox.Sandbox
	ctx context.Context
}

const unitName = "email-oauth2-proxy.service"

// inside runs `orbit email-oauth2-proxy args...` inside the sandbox and
// fails the test unless it exits with want.
func (w *unitWorld) inside(want int, args ...string) sandbox.Result {
	w.t.Helper()
	start := time.Now()
	r := w.box.Exec(w.ctx, nil, append([]string{w.env.orbit, "email-oauth2-proxy"}, args...)...)
	w.t.Logf("orbit email-oauth2-proxy %s: exit %d in %v", strings.Join(args, " "), r.Code, time.Since(start).Round(time.Millisecond))
	if r.Code != want {
		w.t.Fatalf("orbit email-oauth2-proxy %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.Code, want, r.Stdout, r.Stderr)
	}
	return r
}

// status is `status --output json`, which must exit with want.
func (w *unitWorld) status(want int) status.Report {
	w.t.Helper()
	r := w.inside(want, "status", "--output", "json")
	var rep status.Report
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		w.t.Fatalf("status --output json is not a report: %v\n%s", err, r.Stdout)
	}
	return rep
}

// account finds name in rep, failing the test when it is missing.
func (w *unitWorld) account(rep status.Report, name string) status.Account {
	w.t.Helper()
	for _, a := range rep.Accounts {
		if a.Name == name {
			return a
		}
	}
	w.t.Fatalf("status lists no account %s: %+v", name, rep.Accounts)
	return status.Account{}
}

// login starts a Python imaplib login on the host against the unit's IMAP
// listener; it may block until an authorisation is done.
func (w *unitWorld) login() <-chan string {
	ch := make(chan string, 1)
	go func() {
		out, err := w.imapLogin(alice, mailerPassword)
		if err != nil {
			out += "\n(" + err.Error() + ")"
		}
		ch <- out
	}()
	return ch
}

func (w *unitWorld) loggedIn(ch <-chan string, what string, timeout time.Duration) {
	w.t.Helper()
	select {
	case out := <-ch:
		if out != "LOGGED-IN" {
			w.t.Fatalf("%s: the IMAP login through the unit ended with %q, want LOGGED-IN", what, out)
		}
	case <-time.After(timeout):
		w.t.Fatalf("%s: the IMAP login through the unit did not finish within %v", what, timeout)
	}
}

// journalSecretFree reads every field of every entry of the unit's journal
// (journalctl -o json, inside the sandbox) and fails the test when one
// holds a known secret or a token the provider would accept right now.
func (w *unitWorld) journalSecretFree(known map[string]string) {
	w.t.Helper()
	r := w.box.Exec(w.ctx, nil, "journalctl", "--no-pager", "-o", "json", "-u", unitName)
	if r.Code != 0 || r.Stdout == "" {
		w.t.Fatalf("journalctl -u %s -o json: exit %d, %d bytes\n%s", unitName, r.Code, len(r.Stdout), r.Stderr)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		var fields map[string]any
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			w.t.Fatalf("journal line is not JSON: %v: %q", err, line)
		}
		n++
		for k, v := range fields {
			s, ok := v.(string)
			if !ok {
				// journalctl writes non-UTF-8 values as byte arrays.
				b, _ := json.Marshal(v)
				s = string(b)
			}
			for what, secret := range known {
				if secret != "" && strings.Contains(s, secret) {
					w.t.Errorf("journal field %s of %s holds the %s", k, unitName, what)
				}
			}
			for _, word := range journalWord.FindAllString(s, -1) {
				if user, active := w.prov.Introspect(word); active {
					w.t.Errorf("journal field %s of %s holds a live access token of %s", k, unitName, user)
				}
			}
		}
	}
	w.t.Logf("%d journal entries of %s hold no secret", n, unitName)
}

// authURLLogged is when journald took in the unit's authorisation URL
// entry (its __REALTIME_TIMESTAMP).
func (w *unitWorld) authURLLogged() (time.Time, bool) {
	r := w.box.Exec(w.ctx, nil, "journalctl", "--no-pager", "-o", "json", "-u", unitName, "MESSAGE_ID="+events.AuthURL)
	var entry struct {
		Realtime string `json:"__REALTIME_TIMESTAMP"`
	}
	if r.Code != 0 || json.Unmarshal([]byte(strings.SplitN(r.Stdout, "\n", 2)[0]), &entry) != nil {
		w.t.Errorf("the unit's journal has no entry with MESSAGE_ID=%s (the authorisation URL): exit %d %s", events.AuthURL, r.Code, r.Stderr)
		return time.Time{}, false
	}
	us, err := strconv.ParseInt(entry.Realtime, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMicro(us), true
}

// journalWord is a run of base64url characters as long as the provider's
// access tokens.
var journalWord = regexp.MustCompile(`[A-Za-z0-9_-]{43,}`)

// TestE2ESystemd is issue 6's end-to-end test: the proxy as a systemd unit,
// driven by orbit's start, status, logs, restart and stop, with a real
// authorisation through its journal.
func TestE2ESystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a systemd sandbox and Dovecot (-short)")
	}
	sandbox.Require(t)
	begin := time.Now()
	e := newEnv(t)
	e.addClient(alice)
	// A directory of its own: the unit may write only there, and `start`
	// hands it to the service user.
	e.config = filepath.Join(e.dir, "proxy", "emailproxy.config")
	if err := os.MkdirAll(filepath.Dir(e.config), 0o755); err != nil {
		t.Fatal(err)
	}
	e.register("--account", alice, "--oauth2-flow", "authorization_code", "--oauth2-permission-url", e.prov.AuthorizeURL())

	// /var/lib/orbit holds the unit's StateDirectory: keep it off the host.
	box := sandbox.BootWith(t, sandbox.Options{Tmpfs: []string{"/var/lib/orbit"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w := &unitWorld{env: e, box: box, ctx: ctx}

	// The provider and Dovecot present certificates of the test's CA; the
	// unit uses the system trust store, so an administrator's drop-in
	// points it at the CA, exactly as a site with a private CA would.
	if err := box.InstallDropIn(ctx, unitName, "ca.conf", "[Service]\nEnvironment=SSL_CERT_FILE="+e.tls.CAFile+"\n"); err != nil {
		t.Fatal(err)
	}

	// start installs the unit for the file register wrote, creates the
	// service user, gives it the file, enables and starts the unit.
	r := w.inside(0, "start", "--config", e.config)
	if !strings.Contains(r.Stdout, "Started "+unitName+": active (running)") {
		t.Errorf("start said:\n%s", r.Stdout)
	}
	rep := w.status(0)
	if !rep.Running || rep.Unit.ActiveState != "active" || rep.Unit.SubState != "running" || rep.Unit.MainPID == 0 || rep.Config.Path != e.config {
		t.Fatalf("status after start: unit %+v, config %+v", rep.Unit, rep.Config)
	}
	if len(rep.Listeners) != 3 {
		t.Fatalf("status lists %d listeners, want IMAP, POP and SMTP: %+v", len(rep.Listeners), rep.Listeners)
	}
	for _, l := range rep.Listeners {
		if !l.Listening {
			t.Errorf("status: listener %s (%s) is not listening: %s", l.Section, l.Address, l.Error)
		}
	}
	if a := w.account(rep, alice); a.State == "authorised" {
		t.Errorf("alice is authorised before anyone authorised her: %+v", a)
	}

	// A provisioning script waits for the URL before the mailer logs in.
	followed := make(chan sandbox.Result, 1)
	var returned time.Time
	go func() {
		r := box.Exec(ctx, nil, e.orbit, "email-oauth2-proxy", "logs", "--auth-url", "--follow", "--timeout", "60s")
		returned = time.Now()
		followed <- r
	}()
	// Nothing is pending yet, so it must wait rather than answer.
	select {
	case r := <-followed:
		t.Fatalf("logs --auth-url --follow returned before any login: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	case <-time.After(300 * time.Millisecond):
	}

	login := w.login()
	var authURL string
	select {
	case r := <-followed:
		if r.Code != 0 {
			t.Fatalf("logs --auth-url --follow: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		authURL = strings.TrimSpace(r.Stdout)
		// journald tells followers about new entries at most every 250 ms
		// (it coalesces its change notifications), so expect about that.
		if logged, ok := w.authURLLogged(); ok {
			t.Logf("measure: logs --auth-url --follow returned %v after journald took in the URL", returned.Sub(logged).Round(time.Millisecond))
		}
	case out := <-login:
		t.Fatalf("the login finished (%q) without an authorisation", out)
	case <-time.After(30 * time.Second):
		t.Fatal("logs --auth-url --follow printed no URL within 30 s of the login")
	}
	u, err := url.Parse(authURL)
	if err != nil || !strings.HasPrefix(authURL, e.prov.AuthorizeURL()+"?") || u.Query().Get("client_id") != clientID {
		t.Fatalf("logs --auth-url --follow printed %q, want the provider's authorisation URL for this client (%v)", authURL, err)
	}
	if r := w.inside(0, "logs", "--auth-url"); strings.TrimSpace(r.Stdout) != authURL {
		t.Errorf("logs --auth-url printed %q, --follow %q", r.Stdout, authURL)
	}
	if a := w.account(w.status(0), alice); a.State != "waiting" || a.AuthURL != authURL {
		t.Errorf("status while the login waits: %+v, want waiting with the URL", a)
	}

	browser := fakeoauth.Browser{Username: alice, Password: "alice-provider-pw", TLS: e.tls.ClientConfig()}
	res, err := browser.Authorize(ctx, authURL)
	if err != nil {
		t.Fatalf("the browser could not complete the authorisation: %v", err)
	}
	if res.Status != 200 || !strings.Contains(res.Body, "Email OAuth 2.0 authentication succeeded") {
		t.Fatalf("the unit's redirect listener answered %d:\n%s", res.Status, res.Body)
	}
	w.loggedIn(login, "first login", 30*time.Second)
	if n := e.prov.GrantCount(fakeoauth.GrantAuthorizationCode); n != 1 {
		t.Errorf("code exchanges = %d, want 1", n)
	}

	rep = w.status(0)
	a := w.account(rep, alice)
	if a.State != "authorised" || a.TokenExpiry == nil || !a.TokenExpiry.After(time.Now()) {
		t.Errorf("status after the authorisation: %+v, want authorised with a future token expiry", a)
	}
	if r := w.inside(0, "logs", "--auth-url"); r.Stdout != "" {
		t.Errorf("logs --auth-url still prints %q after the authorisation succeeded", r.Stdout)
	}
	known := map[string]string{"client secret": clientSecret, "mailer password": mailerPassword, "authorisation code": res.Code}
	for _, tr := range e.prov.TokenRequests() {
		if v := tr.Form.Get("code_verifier"); v != "" {
			known["PKCE code verifier"] = v
		}
	}
	if known["PKCE code verifier"] == "" {
		t.Error("the code exchange carried no code_verifier")
	}
	w.journalSecretFree(known)

	// restart: the new engine still has the tokens; the next login goes
	// through at once without the provider's token endpoint.
	pid := rep.Unit.MainPID
	tokenCalls := e.prov.Count(fakeoauth.EndpointToken)
	w.inside(0, "restart")
	rep = w.status(0)
	if rep.Unit.MainPID == pid || rep.Unit.MainPID == 0 {
		t.Errorf("restart kept main PID %d", pid)
	}
	if a := w.account(rep, alice); a.State != "authorised" {
		t.Errorf("status after restart: %+v, want still authorised", a)
	}
	w.loggedIn(w.login(), "login after restart", 20*time.Second)
	if n := e.prov.Count(fakeoauth.EndpointToken); n != tokenCalls {
		t.Errorf("the login after restart made %d token requests, want none (the stored token is still valid)", n-tokenCalls)
	}
	if n := e.prov.GrantCount(fakeoauth.GrantAuthorizationCode); n != 1 {
		t.Errorf("code exchanges = %d, want still 1", n)
	}
	if r := w.inside(0, "logs", "--auth-url"); r.Stdout != "" {
		t.Errorf("logs --auth-url prints %q after the restart: the new engine asked for an authorisation again", r.Stdout)
	}

	r = w.inside(0, "stop")
	if !strings.Contains(r.Stdout, "Stopped "+unitName) {
		t.Errorf("stop said:\n%s", r.Stdout)
	}
	if rep := w.status(3); rep.Running || rep.Unit.ActiveState != "inactive" {
		t.Errorf("status after stop: %+v", rep.Unit)
	}

	// An administrator breaks the file: start fails and shows why.
	if err := os.WriteFile(e.config, []byte("this line is not INI\n[IMAP-2993]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = w.inside(7, "start")
	for _, want := range []string{"invalid configuration", e.config + ":1", "journal lines of " + unitName, "What to do:"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("the failed start's message lacks %q:\n%s", want, r.Stderr)
		}
	}
	w.inside(0, "stop")
	w.journalSecretFree(known)
	t.Logf("measure: TestE2ESystemd took %v", time.Since(begin).Round(time.Millisecond))
}
