package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
	"github.com/senhasegura/orbit/internal/testenv/smtpsink"
)

// The passwords newEnv registers at the fake provider: with the password
// flow the mailer logs in to the proxy with these.
const (
	alicePW = "alice-provider-pw"
	bobPW   = "bob-provider-pw"
)

// TestE2EPassword: oauth2_flow = password sends the mailer's login
// password to the provider as the user's password; the message sent through
// SMTP is read back through IMAP and POP3 with one token request, and the
// stored tokens carry over a restart of the proxy without a new request.
func TestE2EPassword(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	e.register("--account", alice, "--oauth2-flow", "password")
	e.serve()

	msg := testMessage(alice, alice, "password flow round trip")
	delivered := e.mailThrough("smtplib through the proxy", alice, alicePW, alice, alice, msg)
	if relayed := smtpsink.WithoutTrace(delivered.Data); !bytes.Equal(relayed, msg) {
		t.Fatalf("relayed message differs:\n%q\nwant\n%q", relayed, msg)
	}
	imapMsgs, out, err := e.imapFetchAll(alice, alicePW)
	if err != nil || len(imapMsgs) != 1 || !bytes.Equal(imapMsgs[0], delivered.Data) {
		t.Fatalf("imaplib through the proxy: %v, %d messages\n%s", err, len(imapMsgs), out)
	}
	popMsgs, out, err := e.popFetchAll(alice, alicePW)
	if err != nil || len(popMsgs) != 1 || !bytes.Equal(popMsgs[0], delivered.Data) {
		t.Fatalf("poplib through the proxy: %v, %d messages\n%s", err, len(popMsgs), out)
	}

	reqs := e.prov.TokenRequests()
	if len(reqs) != 1 || reqs[0].GrantType != fakeoauth.GrantPassword {
		t.Fatalf("token requests = %+v, want one password grant", grants(reqs))
	}
	f := reqs[0].Form
	if f.Get("username") != alice || f.Get("password") != alicePW || f.Get("client_id") != clientID || f.Get("client_secret") != clientSecret {
		t.Errorf("password grant sent username=%q, the login password: %v, client_id=%q, client secret: %v",
			f.Get("username"), f.Get("password") == alicePW, f.Get("client_id"), f.Get("client_secret") == clientSecret)
	}
	if strings.Contains(e.proc.Log(), alicePW) || strings.Contains(readFile(t, e.tokens), alicePW) {
		t.Error("the login password is in serve's log or the token cache")
	}

	// A new process reads the stored tokens: no token request.
	e.restartServe()
	e.prov.ResetCounts()
	if msgs, out, err := e.imapFetchAll(alice, alicePW); err != nil || len(msgs) != 1 {
		t.Fatalf("after a restart: %v, %d messages\n%s", err, len(msgs), out)
	}
	if n := e.prov.Count(fakeoauth.EndpointToken); n != 0 {
		t.Errorf("after a restart the proxy made %d token requests (%v), want 0: the stored token is valid", n, grants(e.prov.TokenRequests()))
	}
}

// grants lists the grant types and outcomes of token requests, for failure
// messages.
func grants(reqs []fakeoauth.TokenRequest) []string {
	var out []string
	for _, r := range reqs {
		s := r.GrantType + ":" + itoa(r.Status)
		if r.Error != "" {
			s += ":" + r.Error
		}
		out = append(out, s)
	}
	return out
}

// TestE2ERefreshAfterExpiry: an access token with less than 600 s left is
// renewed with the refresh_token grant (not a new password grant), the
// renewed token logs in where the old one no longer would, and it is
// stored: later logins and a restarted proxy make no request.
func TestE2ERefreshAfterExpiry(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	e.register("--account", alice, "--oauth2-flow", "password")
	e.serve()
	msg := testMessage(alice, alice, "read after a refresh")
	if err := e.dc.Deliver(alice, msg); err != nil {
		t.Fatal(err)
	}

	// Five minutes is inside the refresh margin: usable now, renewed on
	// the next login.
	e.prov.SetAccessTokenLifetime(5 * time.Minute)
	if r := e.imapLoginReply(alice, alicePW); r != "L1 OK" {
		t.Fatalf("first login: %q", r)
	}
	// Dovecot now refuses the first token, so only a renewed one works.
	e.prov.ExpireTokens(alice)
	e.prov.SetAccessTokenLifetime(time.Hour)
	msgs, out, err := e.imapFetchAll(alice, alicePW)
	if err != nil || len(msgs) != 1 || !bytes.Equal(msgs[0], msg) {
		t.Fatalf("login after expiry: %v, %d messages\n%s", err, len(msgs), out)
	}
	want := []string{"password:200", "refresh_token:200"}
	if got := grants(e.prov.TokenRequests()); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("token requests = %v, want %v (a refresh, not a new password grant)", got, want)
	}
	if rt := e.prov.TokenRequests()[1].Form; rt.Get("refresh_token") == "" || rt.Get("client_id") != clientID || rt.Has("password") {
		t.Errorf("refresh request form: refresh_token set %v, client_id %q, carries a password %v",
			rt.Get("refresh_token") != "", rt.Get("client_id"), rt.Has("password"))
	}

	// The renewed token is kept: in memory, and in the store for the next
	// process.
	if r := e.popLoginReply(alice, alicePW); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("POP3 login with the renewed token: %q", r)
	}
	e.restartServe()
	if msgs, out, err := e.imapFetchAll(alice, alicePW); err != nil || len(msgs) != 1 {
		t.Fatalf("after a restart: %v, %d messages\n%s", err, len(msgs), out)
	}
	if n := e.prov.Count(fakeoauth.EndpointToken); n != 2 {
		t.Errorf("token requests = %d (%v), want still 2", n, grants(e.prov.TokenRequests()))
	}
}

// TestE2ERevokedToken: an admin revokes the user's tokens (password change,
// "revoke sessions") while the stored access token has most of its hour
// left. Dovecot refuses that token; the client must get a clear reply, and
// the proxy must not keep presenting a token the server has refused: the
// next login has to recover (refresh, refused, so the flow runs again)
// without an admin.
func TestE2ERevokedToken(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	e.register("--account", alice, "--oauth2-flow", "password")
	e.serve()
	if err := e.dc.Deliver(alice, testMessage(alice, alice, "after revocation")); err != nil {
		t.Fatal(err)
	}
	if r := e.imapLoginReply(alice, alicePW); r != "L1 OK" {
		t.Fatalf("first login: %q", r)
	}
	e.prov.Revoke(alice)

	r := e.imapLoginReply(alice, alicePW)
	if r != "L1 OK" {
		// Refusing this one login is acceptable if the reply says why.
		const prefix = "L1 NO LOGIN Email OAuth 2.0 Proxy: Login failed for account " + alice + " - the upstream server 127.0.0.1:"
		if !strings.HasPrefix(r, prefix) || !strings.Contains(r, "refused the XOAUTH2 login") {
			t.Fatalf("login with a revoked token: %q, want a reply starting %q that says the server refused the XOAUTH2 login", r, prefix)
		}
		r = e.imapLoginReply(alice, alicePW)
	}
	if r != "L1 OK" {
		t.Fatalf("the login after the upstream refused the revoked token still fails: %q\n"+
			"token requests: %v\nthe engine keeps presenting the refused access token until it expires (up to an hour) instead of renewing it",
			r, grants(e.prov.TokenRequests()))
	}
	if msgs, out, err := e.imapFetchAll(alice, alicePW); err != nil || len(msgs) != 1 {
		t.Fatalf("reading after recovery: %v, %d messages\n%s", err, len(msgs), out)
	}
	// The flow ran again with the mailer's password; the refresh token was
	// revoked too, so any refresh attempt in between was refused.
	reqs := e.prov.TokenRequests()
	if n := e.prov.GrantCount(fakeoauth.GrantPassword); n != 2 {
		t.Errorf("password grants = %d (%v), want 2: the first, and one after the revocation", n, grants(reqs))
	}
	if last := reqs[len(reqs)-1]; last.GrantType != fakeoauth.GrantPassword || last.Status != 200 {
		t.Errorf("last token request %v, want the password grant that recovered", grants(reqs[len(reqs)-1:]))
	}
}

// TestE2EWrongPassword: what a login with another password does, per flow,
// as pkg/emailproxy/oauth documents it, with the spec's reply text.
func TestE2EWrongPassword(t *testing.T) {
	e := newEnv(t)
	e.addClient(bob)
	e.register("--account", alice, "--oauth2-flow", "password")
	e.register("--account", bob, "--oauth2-flow", "client_credentials")
	e.serve()
	if r := e.imapLoginReply(alice, alicePW); r != "L1 OK" {
		t.Fatalf("alice's first login: %q", r)
	}
	if r := e.imapLoginReply(bob, mailerPassword); r != "L1 OK" {
		t.Fatalf("bob's first login: %q", r)
	}
	e.prov.ResetCounts()

	// Password flow with delete_account_token_on_password_error = True:
	// the new password is the upstream password, so the provider decides;
	// it refuses, and alice's working tokens stay.
	r := e.imapLoginReply(alice, "alice-typo")
	want := "L1 NO LOGIN Email OAuth 2.0 Proxy: Login failed for account " + alice + " - the token endpoint refused the request: "
	if !strings.HasPrefix(r, want) || !strings.Contains(r, "Error validating credentials due to invalid username or password.") {
		t.Errorf("alice with a wrong password: %q\nwant %q... with the provider's error_description", r, want)
	}
	if reqs := e.prov.TokenRequests(); len(reqs) != 1 || reqs[0].GrantType != fakeoauth.GrantPassword || reqs[0].Form.Get("password") != "alice-typo" {
		t.Errorf("token requests %v, want one password grant carrying the new password", grants(reqs))
	}
	if r := e.imapLoginReply(alice, alicePW); r != "L1 OK" {
		t.Errorf("alice's right password after a wrong one: %q (the refused attempt must not wipe working tokens)", r)
	}

	// client_credentials: the provider never sees the login password, so
	// it is the only gate and a different one is refused here, in each
	// protocol's form, with no request.
	spec := "Email OAuth 2.0 Proxy: Login failed - the password for account " + bob + " is incorrect"
	if r := e.imapLoginReply(bob, "not-bobs"); r != "L1 NO LOGIN "+spec {
		t.Errorf("IMAP: %q\nwant %q", r, "L1 NO LOGIN "+spec)
	}
	if r := e.popLoginReply(bob, "not-bobs"); r != "-ERR Authentication failed. "+spec {
		t.Errorf("POP3: %q\nwant %q", r, "-ERR Authentication failed. "+spec)
	}
	if r := e.smtpLoginReply(bob, "not-bobs"); r != "535 5.7.8  Authentication credentials invalid. "+spec {
		t.Errorf("SMTP: %q\nwant %q", r, "535 5.7.8  Authentication credentials invalid. "+spec)
	}
	if n := e.prov.Count(fakeoauth.EndpointToken); n != 1 {
		t.Errorf("token requests = %d (%v), want 1 (alice's refused one)", n, grants(e.prov.TokenRequests()))
	}

	// alice's password changed at the provider: the new one wins new
	// tokens and replaces the old ones, so the old password is now the
	// wrong one.
	e.prov.AddUser(alice, "alice-new-pw")
	if r := e.imapLoginReply(alice, "alice-new-pw"); r != "L1 OK" {
		t.Fatalf("alice's new password: %q", r)
	}
	if r := e.imapLoginReply(alice, alicePW); !strings.HasPrefix(r, want) {
		t.Errorf("alice's old password after the change: %q, want %q...", r, want)
	}

	// delete_account_token_on_password_error = False, applied by a reload:
	// a different password is refused here with the spec's text.
	e.register("--account", alice, "--oauth2-flow", "password", "--delete-account-token-on-password-error=false")
	e.hup("configuration reloaded", 1)
	e.prov.ResetCounts()
	spec = "Email OAuth 2.0 Proxy: Login failed - the password for account " + alice + " is incorrect"
	if r := e.imapLoginReply(alice, "alice-typo"); r != "L1 NO LOGIN "+spec {
		t.Errorf("with delete_account_token_on_password_error = False: %q\nwant %q", r, "L1 NO LOGIN "+spec)
	}
	if n := e.prov.Count(fakeoauth.EndpointToken); n != 0 {
		t.Errorf("token requests = %d, want 0", n)
	}
	if r := e.imapLoginReply(alice, "alice-new-pw"); r != "L1 OK" {
		t.Errorf("alice's current password: %q", r)
	}
}

// TestE2ETokenEndpointDown: while the token endpoint answers 503 each
// protocol gives the mailer a temporary failure (IMAP NO [UNAVAILABLE],
// POP3 -ERR [SYS/TEMP], SMTP 454) with the spec's prefix, and logins work
// again as soon as it is back, without restarting the proxy.
func TestE2ETokenEndpointDown(t *testing.T) {
	e := newEnv(t)
	e.addClient(alice)
	e.register("--account", alice, "--oauth2-flow", "client_credentials")
	e.serve()

	e.prov.SetDown(503)
	because := "Email OAuth 2.0 Proxy: Login failed for account " + alice + " - "
	var replies []string
	r := e.imapLoginReply(alice, mailerPassword)
	if replies = append(replies, r); !strings.HasPrefix(r, "L1 NO [UNAVAILABLE] LOGIN "+because) || !strings.Contains(r, "503") {
		t.Errorf("IMAP: %q\nwant %q... naming the 503", r, "L1 NO [UNAVAILABLE] LOGIN "+because)
	}
	r = e.popLoginReply(alice, mailerPassword)
	if replies = append(replies, r); !strings.HasPrefix(r, "-ERR [SYS/TEMP] "+because) {
		t.Errorf("POP3: %q\nwant %q...", r, "-ERR [SYS/TEMP] "+because)
	}
	r = e.smtpLoginReply(alice, mailerPassword)
	if replies = append(replies, r); !strings.HasPrefix(r, "454 4.7.0 Temporary authentication failure. "+because) {
		t.Errorf("SMTP: %q\nwant %q...", r, "454 4.7.0 Temporary authentication failure. "+because)
	}
	// A body that is not JSON is the endpoint failing too, not a refusal.
	e.prov.SetDown(0)
	e.prov.GarbageNext(1)
	r = e.imapLoginReply(alice, mailerPassword)
	if replies = append(replies, r); !strings.HasPrefix(r, "L1 NO [UNAVAILABLE] LOGIN "+because) {
		t.Errorf("IMAP with a garbage token answer: %q\nwant %q...", r, "L1 NO [UNAVAILABLE] LOGIN "+because)
	}

	if r := e.imapLoginReply(alice, mailerPassword); r != "L1 OK" {
		t.Fatalf("once the endpoint is back: %q", r)
	}
	if r := e.smtpLoginReply(alice, mailerPassword); !strings.HasPrefix(r, "235") {
		t.Errorf("SMTP once the endpoint is back: %q", r)
	}
	for _, r := range replies {
		if n := strings.Count(r, "Login failed"); n != 1 {
			t.Errorf("reply says %q %d times: %q", "Login failed", n, r)
		}
	}
	if got := grants(e.prov.TokenRequests()); len(got) != 5 || got[4] != "client_credentials:200" {
		t.Errorf("token requests = %v, want 3 refused by the outage, 1 garbage, then 1 that worked", got)
	}
}

// TestE2ETokenEndpointRefuses: a 400 from the token endpoint is a
// permanent failure that shows the provider's error_description, so the
// admin reading the mailer's error knows what to fix.
func TestE2ETokenEndpointRefuses(t *testing.T) {
	e := newEnv(t)
	e.addClient(alice)
	e.register("--account", alice, "--oauth2-flow", "client_credentials")
	e.serve()

	const desc = "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID"
	e.prov.RefuseNext(3, desc)
	// A known error: the reply explains it from the catalogue
	// (docs/provider-errors.md); the provider's words are in the log.
	because := "Email OAuth 2.0 Proxy: Login failed for account " + alice + " - the token endpoint refused the request (HTTP 400 invalid_grant) - "
	const explained = "AADSTS7000215: The client secret is wrong"
	if r := e.imapLoginReply(alice, mailerPassword); !strings.HasPrefix(r, "L1 NO LOGIN "+because) || !strings.Contains(r, explained) {
		t.Errorf("IMAP: %q\nwant %q... with the explanation", r, "L1 NO LOGIN "+because)
	}
	if r := e.popLoginReply(alice, mailerPassword); !strings.HasPrefix(r, "-ERR Authentication failed. "+because) || !strings.Contains(r, explained) {
		t.Errorf("POP3: %q\nwant %q... with the explanation", r, "-ERR Authentication failed. "+because)
	}
	if r := e.smtpLoginReply(alice, mailerPassword); !strings.HasPrefix(r, "535 5.7.8  Authentication credentials invalid. "+because) || !strings.Contains(r, explained) {
		t.Errorf("SMTP: %q\nwant %q... with the explanation", r, "535 5.7.8  Authentication credentials invalid. "+because)
	}
	e.waitLog("AADSTS7000215: Invalid client secret provided.", 5*time.Second)
	if r := e.imapLoginReply(alice, mailerPassword); r != "L1 OK" {
		t.Fatalf("once the provider accepts again: %q", r)
	}
	if n := e.prov.GrantCount(fakeoauth.GrantClientCredentials); n != 4 {
		t.Errorf("client_credentials requests = %d, want 4 (3 refused, 1 accepted)", n)
	}
}

// TestE2EConcurrentLogins: 50 mailer connections log in while the token
// endpoint holds the first request; all 50 succeed on one token request.
func TestE2EConcurrentLogins(t *testing.T) {
	const n = 50
	e := newEnv(t)
	e.addClient(alice)
	e.register("--account", alice, "--oauth2-flow", "client_credentials")
	// --debug traces each LOGIN line (redacted), which tells the test when
	// every client's login has reached the token layer.
	e.serve("--debug")

	release := e.prov.Stall()
	defer release()
	errs := make(chan error, n)
	for i := range n {
		go func() {
			c, err := imapSession(e.imapPort, alice, mailerPassword)
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			defer c.c.Close()
			if r, _, err := c.imapCmd("S1", "SELECT INBOX"); err != nil || !strings.HasPrefix(r, "S1 OK") {
				errs <- fmt.Errorf("client %d: SELECT: %q %v", i, r, err)
				return
			}
			_, _, err = c.imapCmd("S2", "LOGOUT")
			errs <- err
		}()
	}
	waitFor(t, "all 50 LOGIN commands to reach the proxy", 60*time.Second, func() bool {
		// The trace's field, once per line (its text says it too).
		return strings.Count(e.proc.Log(), `line="L1 LOGIN [redacted]"`) >= n
	})
	if s := e.prov.Stalled(); s != 1 {
		t.Errorf("token requests held while 50 logins wait = %d, want 1", s)
	}
	release()
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := e.prov.Count(fakeoauth.EndpointToken); got != 1 {
		t.Errorf("token requests = %d (%v), want 1", got, grants(e.prov.TokenRequests()))
	}
	if strings.Contains(e.proc.Log(), mailerPassword) || strings.Contains(e.proc.Log(), clientSecret) {
		t.Error("serve --debug logged a secret")
	}
}

// TestE2ESpecTokenStore: tokens written by an independent implementation of
// the spec's scheme (python3-cryptography's PBKDF2HMAC and Fernet, as the
// Python proxy writes them) are used without a token request, from the
// separate cache file and from a config file that carries them inline.
func TestE2ESpecTokenStore(t *testing.T) {
	for _, tc := range []struct {
		name       string
		inline     bool
		iterations int
		legacy     bool // no token_iterations key: 100,000 implied
	}{
		{name: "cache file", iterations: 1_200_000},
		{name: "inline in the config", inline: true, iterations: 1_200_000},
		{name: "legacy iterations", iterations: 100_000, legacy: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.addClient(alice)
			e.register("--account", alice, "--oauth2-flow", "client_credentials")
			msg := testMessage(alice, alice, "stored by the spec's scheme")
			if err := e.dc.Deliver(alice, msg); err != nil {
				t.Fatal(err)
			}
			access, refresh := e.prov.IssueToken(clientID, alice, "https://mail.example.test/.default")
			path := e.tokens
			if tc.inline {
				path = e.config
			}
			now := time.Now().Unix()
			req, _ := json.Marshal(map[string]any{
				"op": "writecache", "path": path, "account": alice, "password": mailerPassword,
				"iterations": tc.iterations, "omit_iterations": tc.legacy,
				"values": map[string]string{"access_token": access, "refresh_token": refresh},
				"expiry": now + 3600, "last_activity": now,
			})
			e.pythonInterop(string(req))
			// Python writes the file at its umask's 0644; orbit refuses a
			// token store others can read, and the fix is this chmod
			// (docs/compatibility.md, moving from the Python proxy).
			if err := os.Chmod(path, 0o600); err != nil {
				t.Fatal(err)
			}
			e.serve()

			msgs, out, err := e.imapFetchAll(alice, mailerPassword)
			if err != nil || len(msgs) != 1 || !bytes.Equal(msgs[0], msg) {
				t.Fatalf("login with the stored token: %v, %d messages\n%s", err, len(msgs), out)
			}
			if n := e.prov.Count(fakeoauth.EndpointToken); n != 0 {
				t.Errorf("token requests = %d (%v), want 0: the stored token is valid", n, grants(e.prov.TokenRequests()))
			}
			if r := e.imapLoginReply(alice, "not-the-password"); !strings.Contains(r, "the password for account "+alice+" is incorrect") {
				t.Errorf("another password against the stored tokens: %q", r)
			}
			// What the proxy keeps is readable by the spec's scheme again,
			// at the current iteration count (legacy values rotated).
			var back struct {
				Values     map[string]string
				Rotate     bool
				Iterations int
				Error      string
			}
			ans := e.pythonInterop(fmt.Sprintf(`{"op":"readcache","path":%q,"account":%q,"password":%q}`, e.tokens, alice, mailerPassword))
			if err := json.Unmarshal([]byte(ans), &back); err != nil {
				t.Fatalf("readcache answer %q: %v", ans, err)
			}
			if back.Error != "" || back.Values["access_token"] != access || back.Values["refresh_token"] != refresh {
				t.Errorf("the token cache read back by the spec's scheme: error %q, access token kept %v, refresh token kept %v",
					back.Error, back.Values["access_token"] == access, back.Values["refresh_token"] == refresh)
			}
			if back.Rotate || back.Iterations != 1_200_000 {
				t.Errorf("the token cache is at %d iterations (rotate needed: %v), want 1200000", back.Iterations, back.Rotate)
			}
		})
	}
}
