package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// keepAliveLifetime and keepAliveMargin stand in for an hour-long token and
// the 600 s margin: the engine renews a token with less than margin (up to
// 1.5 times it, with jitter) left, so about every 3 s here.
const (
	keepAliveLifetime = 6 * time.Second
	keepAliveMargin   = "2s"
)

// statusEntry is the account's entry in the status file.
func (e *env) statusEntry(account string) oauth.AccountStatus {
	e.t.Helper()
	st, err := oauth.ReadStatus(e.status)
	if err != nil {
		e.t.Fatal(err)
	}
	return st.Accounts[account]
}

// TestE2EKeepAlive: with seconds-long access tokens and rotating refresh
// tokens, an account signed in ahead of time (authorize) and an account
// whose mailer logged in once (client_credentials) are refreshed by the
// engine with no mailer login: the provider sees refresh_token and
// client_credentials requests, the status file's token_expiry moves on,
// `status --check` stays OK, and a mailer logging in long after the first
// token expired needs no token request. Then with keep_alive = False
// nothing is requested in the background and the next login has to
// refresh.
func TestE2EKeepAlive(t *testing.T) {
	e := newEnv(t)
	e.addClient(bob)
	e.registerCode(alice)
	e.register("--account", bob, "--oauth2-flow", "client_credentials")
	e.prov.SetAccessTokenLifetime(keepAliveLifetime)
	e.prov.RotateRefreshTokens(true)
	e.serve("--refresh-margin", keepAliveMargin)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := e.authorizeCmd(ctx, alice, mailerPassword, "--no-wait", "--output", "json").Output()
	var waiting struct {
		AuthURL string `json:"auth_url"`
	}
	if err != nil || json.Unmarshal(out, &waiting) != nil || waiting.AuthURL == "" {
		t.Fatalf("authorize --no-wait: %v\n%s", err, out)
	}
	e.authorize(alice, waiting.AuthURL)
	waitFor(t, "the sign-in to be stored", 30*time.Second, func() bool {
		return strings.Contains(e.proc.Log(), "account "+alice+" signed in through the control socket")
	})
	if r := e.imapLoginReply(bob, mailerPassword); r != "L1 OK" {
		t.Fatalf("bob's login: %q", r)
	}
	aliceFirst, bobFirst := e.statusEntry(alice).TokenExpiry, e.statusEntry(bob).TokenExpiry

	// Three token lifetimes pass with no mailer at all.
	e.prov.ResetCounts()
	time.Sleep(3 * keepAliveLifetime)
	refreshes, cc := e.prov.GrantCount(fakeoauth.GrantRefreshToken), e.prov.GrantCount(fakeoauth.GrantClientCredentials)
	// One renewal per 4-5 s of an 18 s wait: at least 3 each, and the jitter
	// and bounds keep it far from a storm.
	if refreshes < 3 || refreshes > 8 || cc < 3 || cc > 8 {
		t.Fatalf("background requests in %v: %d refresh_token, %d client_credentials; want 3-8 each: %v",
			3*keepAliveLifetime, refreshes, cc, grants(e.prov.TokenRequests()))
	}
	for _, r := range e.prov.TokenRequests() {
		if r.Status != 200 {
			t.Errorf("a background request failed: %v", grants(e.prov.TokenRequests()))
			break
		}
	}
	for who, first := range map[string]time.Time{alice: aliceFirst, bob: bobFirst} {
		st := e.statusEntry(who)
		if st.State != oauth.StateAuthorised || !st.TokenExpiry.After(first.Add(keepAliveLifetime)) {
			t.Errorf("%s's status after the background refreshes: %+v (first expiry %v)", who, st, first)
		}
	}
	if out, code := e.checkCLI("--warn-refresh-age", "1d"); code != 0 || !strings.HasPrefix(out, "OK") {
		t.Errorf("status --check after background refreshes: exit %d\n%s", code, out)
	}

	// The mailers come back: no token request, although every token they
	// had is long expired. Each logs in just after a background renewal of
	// its own account (the next is seconds away), so a request of its grant
	// in between can only be the login's.
	for who, grant := range map[string]string{alice: fakeoauth.GrantRefreshToken, bob: fakeoauth.GrantClientCredentials} {
		before := e.statusEntry(who).TokenExpiry
		waitFor(t, who+"'s next background renewal", 3*keepAliveLifetime, func() bool {
			return e.statusEntry(who).TokenExpiry.After(before)
		})
		e.prov.ResetCounts()
		if r := e.imapLoginReply(who, mailerPassword); r != "L1 OK" {
			t.Errorf("%s's login after the quiet time: %q", who, r)
		}
		if n, codes := e.prov.GrantCount(grant), e.prov.GrantCount(fakeoauth.GrantAuthorizationCode); n != 0 || codes != 0 {
			t.Errorf("%s's login after the quiet time made %d %s and %d authorization_code requests, want none: %v",
				who, n, grant, codes, grants(e.prov.TokenRequests()))
		}
	}
	e.checkNoSecrets()

	// keep_alive = False: a reload stops the background requests.
	data, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, []byte(strings.Replace(string(data), "[emailproxy]\n", "[emailproxy]\nkeep_alive = False\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	e.hup("configuration reloaded", 1)
	time.Sleep(keepAliveLifetime / 2) // a request under way at the reload finishes
	e.prov.ResetCounts()
	time.Sleep(2 * keepAliveLifetime)
	if n := e.prov.Count(fakeoauth.EndpointToken); n != 0 {
		t.Errorf("%d token requests with keep_alive = False, want 0: %v", n, grants(e.prov.TokenRequests()))
	}
	if r := e.imapLoginReply(alice, mailerPassword); r != "L1 OK" {
		t.Errorf("alice's login with keep_alive off: %q", r)
	}
	if n := e.prov.GrantCount(fakeoauth.GrantRefreshToken); n != 1 {
		t.Errorf("with keep_alive off the login refreshes itself: %d refresh requests, want 1", n)
	}
}

// TestE2EBackgroundRefreshAcrossRestart: with background_refresh = True and
// the service key where systemd puts credentials ($CREDENTIALS_DIRECTORY),
// an account signed in ahead of time is renewed after the engine restarts,
// before any mailer logs in; the token store the Python proxy reads is not
// rewritten by those renewals; the mailer's first login then needs no token
// request, although every token issued before the restart has expired.
func TestE2EBackgroundRefreshAcrossRestart(t *testing.T) {
	const lifetime, margin = 10 * time.Second, "3s"
	e := newEnv(t)
	e.addClient(alice)
	e.registerCode(alice)
	data, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, []byte(strings.Replace(string(data), "[emailproxy]\n", "[emailproxy]\nbackground_refresh = True\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	creds := t.TempDir()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, oauth.BackgroundCredential), key, 0o400); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	e.prov.SetAccessTokenLifetime(lifetime)
	e.prov.RotateRefreshTokens(true)
	e.serve("--refresh-margin", margin)
	if !strings.Contains(e.proc.Log(), "background_refresh on") {
		t.Fatalf("serve did not take the credential:\n%s", e.proc.Log())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := e.authorizeCmd(ctx, alice, mailerPassword, "--no-wait", "--output", "json").Output()
	var waiting struct {
		AuthURL string `json:"auth_url"`
	}
	if err != nil || json.Unmarshal(out, &waiting) != nil || waiting.AuthURL == "" {
		t.Fatalf("authorize --no-wait: %v\n%s", err, out)
	}
	e.authorize(alice, waiting.AuthURL)
	copyFile := filepath.Join(filepath.Dir(e.tokens), "background-refresh.json")
	waitFor(t, "the sealed copy", 30*time.Second, func() bool {
		_, err := os.Stat(copyFile)
		return err == nil
	})
	e.stop(e.proc)
	time.Sleep(lifetime + time.Second) // every token issued so far expires
	store := readFile(t, e.tokens)

	e.prov.ResetCounts()
	e.serve("--refresh-margin", margin)
	waitFor(t, "a renewal after the restart with no login", 3*lifetime, func() bool {
		return e.prov.GrantCount(fakeoauth.GrantRefreshToken) > 0
	})
	if reqs := e.prov.TokenRequests(); reqs[0].Status != 200 {
		t.Fatalf("the renewal after the restart failed: %v", grants(reqs))
	}
	if readFile(t, e.tokens) != store {
		t.Errorf("a renewal without the mailer's password rewrote the token store")
	}
	if sealed := readFile(t, copyFile); strings.Contains(sealed, mailerPassword) || strings.Contains(sealed, clientSecret) {
		t.Errorf("the sealed copy holds a secret in the clear")
	}

	before := e.statusEntry(alice).TokenExpiry
	waitFor(t, "the next renewal", 3*lifetime, func() bool { return e.statusEntry(alice).TokenExpiry.After(before) })
	e.prov.ResetCounts()
	if r := e.imapLoginReply(alice, mailerPassword); r != "L1 OK" {
		t.Fatalf("the mailer's first login after the restart: %q", r)
	}
	if n := e.prov.Count(fakeoauth.EndpointToken); n != 0 {
		t.Errorf("the mailer's first login after the restart made %d token requests, want 0: %v", n, grants(e.prov.TokenRequests()))
	}
	e.checkNoSecrets()
}
