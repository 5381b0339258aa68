package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv/fakeoauth"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// The interactive scenarios: a mailer's login needs a person, the engine
// says so in its log, the test reads the URL from there like an admin
// running `orbit email-oauth2-proxy logs`, and a fakeoauth.Browser plays
// the admin's browser against the provider and the proxy's redirect
// listener.

// Provider passwords of the users newEnv registers.
var providerPasswords = map[string]string{alice: "alice-provider-pw", bob: "bob-provider-pw"}

const (
	successHeading = "Email OAuth 2.0 authentication succeeded"
	redirectPath   = "/email-oauth2-proxy-authorize/"
)

// registerCode writes an authorization_code account (section account, "@"
// for the catch-all) whose permission_url is the provider's authorise
// endpoint; the harness's register already points redirect_uri at the docs'
// path on e.redirectPort.
func (e *env) registerCode(account string, extra ...string) {
	e.t.Helper()
	e.register(append([]string{"--account", account, "--oauth2-flow", "authorization_code",
		"--oauth2-permission-url", e.prov.AuthorizeURL()}, extra...)...)
}

type loginResult struct {
	out string
	err error
}

// imapLoginAsync starts an IMAP LOGIN that may block for a person; the
// result arrives on the channel.
func (e *env) imapLoginAsync(user string) <-chan loginResult {
	ch := make(chan loginResult, 1)
	go func() {
		out, err := e.imapLogin(user, mailerPassword)
		ch <- loginResult{out, err}
	}()
	return ch
}

// awaitLogin waits for a login started with imapLoginAsync.
func (e *env) awaitLogin(ch <-chan loginResult, what string) string {
	e.t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			e.t.Fatalf("%s: imaplib failed: %v\n%s", what, r.err, r.out)
		}
		return r.out
	case <-time.After(90 * time.Second):
		e.t.Fatalf("%s: the login never returned", what)
	}
	return ""
}

// urlLine matches the announcement; the URL is the first field after it.
func urlLinePrefix(account string) string {
	return "Please visit the following URL to authenticate account " + account + ": "
}

// authURLs lists every URL announced for account, oldest first.
func authURLs(log, account string) []string {
	var out []string
	prefix := urlLinePrefix(account)
	for _, line := range strings.Split(log, "\n") {
		i := strings.Index(line, prefix)
		if i < 0 {
			continue
		}
		rest := line[i+len(prefix):]
		if j := strings.IndexAny(rest, " \t"); j >= 0 {
			rest = rest[:j]
		}
		out = append(out, rest)
	}
	return out
}

// waitAuthURL waits until serve has announced at least n URLs for account
// and returns the nth (1-based).
func (e *env) waitAuthURL(account string, n int) string {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if urls := authURLs(e.proc.Log(), account); len(urls) >= n {
			return urls[n-1]
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("serve never announced URL #%d for %s:\n%s", n, account, e.proc.Log())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// browser signs in as user at the provider.
func (e *env) browser(user string) fakeoauth.Browser {
	return fakeoauth.Browser{Username: user, Password: providerPasswords[user], TLS: e.upstreamTLS()}
}

// authorize completes an authorisation URL in the browser.
func (e *env) authorize(user, authURL string) fakeoauth.BrowserResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := e.browser(user).Authorize(ctx, authURL)
	if err != nil {
		e.t.Fatalf("browser for %s: %v", user, err)
	}
	return res
}

// visit GETs a URL on loopback the way a browser would, without the
// provider: a replayed or forged redirect.
func (e *env) visit(raw string) (int, string) {
	e.t.Helper()
	if u, err := url.Parse(raw); err != nil || u.Hostname() != "127.0.0.1" {
		e.t.Fatalf("refusing to visit %q: not on 127.0.0.1", raw)
	}
	hc := &http.Client{
		Transport:     &http.Transport{Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
	resp, err := hc.Get(raw)
	if err != nil {
		e.t.Fatalf("visiting the redirect listener: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		e.t.Fatalf("reading the redirect listener's page: %v", err)
	}
	return resp.StatusCode, string(body)
}

// checkAuthURL checks the query of an authorisation URL against the spec:
// the Python proxy's parameters in its order, a random state and PKCE S256.
func checkAuthURL(t *testing.T, e *env, raw, account string) url.Values {
	t.Helper()
	base, query, ok := strings.Cut(raw, "?")
	if !ok || base != e.prov.AuthorizeURL() {
		t.Fatalf("authorisation URL %q does not start with permission_url %s?", raw, e.prov.AuthorizeURL())
	}
	var names []string
	for _, kv := range strings.Split(query, "&") {
		k, _, _ := strings.Cut(kv, "=")
		names = append(names, k)
	}
	want := []string{"client_id", "redirect_uri", "scope", "response_type", "access_type", "login_hint", "state", "code_challenge", "code_challenge_method"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("query parameters %v, want in this order %v", names, want)
	}
	if strings.Contains(query, "+") {
		t.Errorf("query %q has '+': spaces must be %%20", query)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatalf("authorisation URL query: %v", err)
	}
	redirectURI := fmt.Sprintf("http://127.0.0.1:%d%s", e.redirectPort, redirectPath)
	for k, v := range map[string]string{
		"client_id": clientID, "redirect_uri": redirectURI, "scope": "https://mail.example.test/.default",
		"response_type": "code", "access_type": "offline", "login_hint": account, "code_challenge_method": "S256",
	} {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	// 32 random bytes, base64url: 43 characters; the S256 challenge too.
	b64url := regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	if !b64url.MatchString(q.Get("state")) {
		t.Errorf("state %q is not 32 random bytes in base64url", q.Get("state"))
	}
	if !b64url.MatchString(q.Get("code_challenge")) {
		t.Errorf("code_challenge %q is not a base64url SHA-256", q.Get("code_challenge"))
	}
	return q
}

// TestE2EAuthorizationCode is the seed's scenario: register with
// authorization_code, serve, a mailer's LOGIN waits while the admin opens
// the logged URL, the success page appears, the waiting login succeeds
// upstream, and later IMAP, SMTP and POP logins need no new URL or code.
func TestE2EAuthorizationCode(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	e.registerCode(alice)
	t.Logf("1. registered %s for authorization_code; upstream is Dovecot (XOAUTH2 only, TLS)", e.config)
	e.serve()
	t.Logf("2. serve listens on IMAP %d, POP %d, SMTP %d", e.imapPort, e.popPort, e.smtpPort)

	login := e.imapLoginAsync(alice)
	authURL := e.waitAuthURL(alice, 1)
	t.Logf("3. the mailer's LOGIN waits; serve logged: Please visit the following URL to authenticate account %s: %s", alice, authURL)
	log := e.proc.Log()
	for _, line := range []string{
		"Authorisation request received for " + alice + " (local server auth mode)",
		urlLinePrefix(alice) + authURL,
	} {
		if !strings.Contains(log, line) {
			t.Errorf("serve's log lacks %q", line)
		}
	}
	// Structured too: `logs` finds the URL by MESSAGE_ID and field, not text.
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, urlLinePrefix(alice)) &&
			(!strings.Contains(l, "message_id="+events.AuthURL) || !strings.Contains(l, `auth_url="`+authURL+`"`) || !strings.Contains(l, "account="+alice)) {
			t.Errorf("the URL line lacks its message_id, account or auth_url field: %s", l)
		}
	}
	if i, j := strings.Index(log, "Authorisation request received for "+alice), strings.Index(log, urlLinePrefix(alice)); i < 0 || i > j {
		t.Errorf("the request line does not come before the URL line")
	}
	q := checkAuthURL(t, e, authURL, alice)
	select {
	case r := <-login:
		t.Fatalf("the login returned before anyone authorised: %q", r.out)
	default:
	}

	res := e.authorize(alice, authURL)
	if res.Status != 200 || !strings.Contains(res.Body, successHeading) || !strings.Contains(res.Body, alice) {
		t.Fatalf("redirect listener answered %d:\n%s", res.Status, res.Body)
	}
	if res.State != q.Get("state") {
		t.Errorf("the provider redirected with state %q, the URL had %q", res.State, q.Get("state"))
	}
	if u, _ := url.Parse(res.Redirect); u == nil || u.Path != redirectPath || u.Host != "127.0.0.1:"+strconv.Itoa(e.redirectPort) {
		t.Errorf("the provider redirected to %s, want redirect_uri's path on port %d", res.Redirect, e.redirectPort)
	}
	t.Logf("4. the browser signed in at the provider; the redirect listener answered %d: %s", res.Status, successHeading)
	if out := e.awaitLogin(login, "the waiting LOGIN"); out != "LOGGED-IN" {
		t.Fatalf("the waiting LOGIN: %s", out)
	}
	t.Logf("5. the waiting LOGIN went through to Dovecot with XOAUTH2")

	// The code exchange the proxy made carried the PKCE verifier that
	// matches the URL's challenge (the provider verified it; check what was
	// sent too).
	var exchanges []fakeoauth.TokenRequest
	for _, r := range e.prov.TokenRequests() {
		if r.GrantType == fakeoauth.GrantAuthorizationCode {
			exchanges = append(exchanges, r)
		}
	}
	if len(exchanges) != 1 || exchanges[0].Status != 200 {
		t.Fatalf("code exchanges: %+v, want one that succeeded", exchanges)
	}
	verifier := exchanges[0].Form.Get("code_verifier")
	if verifier == "" || pkceS256(verifier) != q.Get("code_challenge") {
		t.Errorf("code_verifier does not hash to the URL's code_challenge")
	}
	if got := exchanges[0].Form.Get("redirect_uri"); got != q.Get("redirect_uri") {
		t.Errorf("exchange redirect_uri %q, want %q", got, q.Get("redirect_uri"))
	}

	// Later logins on every protocol go through on the stored tokens.
	msg := testMessage(alice, alice, "after interactive authorisation")
	e.mailThrough("smtplib after authorisation", alice, mailerPassword, alice, alice, msg)
	if msgs, out, err := e.imapFetchAll(alice, mailerPassword); err != nil || len(msgs) != 1 {
		t.Fatalf("imaplib after authorisation: %v, %d messages\n%s", err, len(msgs), out)
	}
	if msgs, out, err := e.popFetchAll(alice, mailerPassword); err != nil || len(msgs) != 1 {
		t.Fatalf("poplib after authorisation: %v, %d messages\n%s", err, len(msgs), out)
	}
	t.Logf("6. a notification sent through SMTP was read back through IMAP and POP3 on the stored tokens")
	if n := len(authURLs(e.proc.Log(), alice)); n != 1 {
		t.Errorf("%d URLs announced, want 1", n)
	}
	if n := e.prov.GrantCount(fakeoauth.GrantAuthorizationCode); n != 1 {
		t.Errorf("code exchanges = %d, want 1", n)
	}
	if n := e.prov.Count(fakeoauth.EndpointToken); n != 1 {
		t.Errorf("token requests = %d, want 1 (the exchange; the access token is valid for an hour)", n)
	}
	e.checkNoSecrets(verifier, exchanges[0].Form.Get("code"))
}

// checkNoSecrets fails if serve's log holds a secret: the client secret,
// the mailer's password, the extra values given (codes, verifiers, refresh
// tokens), or any access token the provider still honours (every
// base64url run of a token's length is asked to the provider).
func (e *env) checkNoSecrets(extra ...string) {
	e.t.Helper()
	log := e.proc.Log()
	for i, s := range append([]string{clientSecret, mailerPassword}, extra...) {
		if s != "" && strings.Contains(log, s) {
			e.t.Errorf("serve logged secret #%d (0 client secret, 1 mailer password, then the test's extras)", i)
		}
	}
	for _, run := range tokenish.FindAllString(log, -1) {
		if _, active := e.prov.Introspect(run); active {
			e.t.Errorf("serve logged an access token")
		}
	}
}

var tokenish = regexp.MustCompile(`[A-Za-z0-9_-]{40,}`)

func pkceS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestE2ETwoAccountsOnePort: with the catch-all [@], alice and bob wait at
// once on the one redirect listener; the redirects, completed in reverse
// order, each reach their own request by state and both logins succeed.
func TestE2ETwoAccountsOnePort(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	e.registerCode("@")
	e.serve()

	aliceLogin := e.imapLoginAsync(alice)
	aliceURL := e.waitAuthURL(alice, 1)
	bobLogin := e.imapLoginAsync(bob)
	bobURL := e.waitAuthURL(bob, 1)
	qa, qb := checkAuthURL(t, e, aliceURL, alice), checkAuthURL(t, e, bobURL, bob)
	if qa.Get("state") == qb.Get("state") {
		t.Fatal("two requests share a state")
	}
	if qa.Get("redirect_uri") != qb.Get("redirect_uri") {
		t.Fatalf("redirect_uri differs: %s, %s", qa.Get("redirect_uri"), qb.Get("redirect_uri"))
	}

	if res := e.authorize(bob, bobURL); res.Status != 200 || !strings.Contains(res.Body, successHeading) || !strings.Contains(res.Body, bob) {
		t.Fatalf("bob's redirect: %d\n%s", res.Status, res.Body)
	}
	if out := e.awaitLogin(bobLogin, "bob's LOGIN"); out != "LOGGED-IN" {
		t.Fatalf("bob's LOGIN: %s", out)
	}
	select {
	case r := <-aliceLogin:
		t.Fatalf("alice's login ended with bob's authorisation: %q", r.out)
	default:
	}
	if res := e.authorize(alice, aliceURL); res.Status != 200 || !strings.Contains(res.Body, successHeading) || !strings.Contains(res.Body, alice) {
		t.Fatalf("alice's redirect: %d\n%s", res.Status, res.Body)
	}
	if out := e.awaitLogin(aliceLogin, "alice's LOGIN"); out != "LOGGED-IN" {
		t.Fatalf("alice's LOGIN: %s", out)
	}
	// Each mailbox is its own: Dovecot saw the user each token belongs to.
	for _, user := range []string{alice, bob} {
		if out, err := e.imapLogin(user, mailerPassword); err != nil || out != "LOGGED-IN" {
			t.Errorf("%s logs in again: %v %s", user, err, out)
		}
	}
	if n := e.prov.GrantCount(fakeoauth.GrantAuthorizationCode); n != 2 {
		t.Errorf("code exchanges = %d, want 2", n)
	}
	for _, who := range []string{alice, bob} {
		if n := len(authURLs(e.proc.Log(), who)); n != 1 {
			t.Errorf("%d URLs announced for %s, want 1", n, who)
		}
	}
	e.checkNoSecrets()
}

// TestE2EAuthorizationFailures: every failure path of the redirect
// listener gives an honest 4xx page, and the waiting login a clear reply.
func TestE2EAuthorizationFailures(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	e.registerCode(alice)
	e.serve()

	// The provider refuses (admin consent missing, user declined).
	e.prov.RefuseAuthorizations(1)
	login := e.imapLoginAsync(alice)
	res := e.authorize(alice, e.waitAuthURL(alice, 1))
	if res.Error != "access_denied" {
		t.Fatalf("the provider redirected with error %q, want access_denied", res.Error)
	}
	if res.Status != http.StatusForbidden || strings.Contains(res.Body, successHeading) ||
		!strings.Contains(res.Body, "authentication failed") || !strings.Contains(res.Body, "access_denied") {
		t.Errorf("access_denied page: %d\n%s", res.Status, res.Body)
	}
	out := e.awaitLogin(login, "the LOGIN waiting during access_denied")
	if !strings.HasPrefix(out, "REFUSED") || !strings.Contains(out, "access_denied") || !strings.Contains(out, alice) || !strings.Contains(out, "[UNAVAILABLE]") {
		t.Errorf("the waiting LOGIN got %q, want a refusal naming the account and access_denied", out)
	}
	if n := e.prov.GrantCount(fakeoauth.GrantAuthorizationCode); n != 0 {
		t.Errorf("code exchanges after access_denied = %d, want 0", n)
	}

	// A forged state: nothing is exchanged, nothing reflected.
	forged := fmt.Sprintf("http://127.0.0.1:%d%s?state=%s&code=%s", e.redirectPort, redirectPath,
		url.QueryEscape("<script>forged</script>"), "stolen-code")
	status, body := e.visit(forged)
	if status != http.StatusBadRequest || !strings.Contains(body, "unknown") || strings.Contains(body, "<script>") || strings.Contains(body, successHeading) {
		t.Errorf("forged state: %d\n%s", status, body)
	}

	// A new login starts afresh with a new URL and state; the redirect
	// with an error description a hostile page chose is shown escaped.
	login = e.imapLoginAsync(alice)
	url2 := e.waitAuthURL(alice, 2)
	state2, _ := url.ParseQuery(strings.SplitN(url2, "?", 2)[1])
	hostile := fmt.Sprintf("http://127.0.0.1:%d%s?state=%s&error=access_denied&error_description=%s", e.redirectPort, redirectPath,
		url.QueryEscape(state2.Get("state")), url.QueryEscape(`<img src=x onerror=alert(1)>`))
	status, body = e.visit(hostile)
	if status != http.StatusForbidden || strings.Contains(body, "<img") || !strings.Contains(body, "&lt;img") {
		t.Errorf("error redirect with markup in error_description: %d\n%s", status, body)
	}
	if out := e.awaitLogin(login, "the second LOGIN"); !strings.HasPrefix(out, "REFUSED") {
		t.Errorf("second LOGIN after a refused redirect: %q", out)
	}

	// Third time lucky, then the same redirect replayed is refused without
	// a second exchange.
	login = e.imapLoginAsync(alice)
	res = e.authorize(alice, e.waitAuthURL(alice, 3))
	if res.Status != 200 || !strings.Contains(res.Body, successHeading) {
		t.Fatalf("the third authorisation: %d\n%s", res.Status, res.Body)
	}
	if out := e.awaitLogin(login, "the third LOGIN"); out != "LOGGED-IN" {
		t.Fatalf("the third LOGIN: %s", out)
	}
	status, body = e.visit(res.Redirect)
	if status != http.StatusBadRequest || !strings.Contains(body, "already been used") || strings.Contains(body, successHeading) {
		t.Errorf("replayed redirect: %d\n%s", status, body)
	}
	if n := e.prov.GrantCount(fakeoauth.GrantAuthorizationCode); n != 1 {
		t.Errorf("code exchanges = %d, want 1 (a replay must not exchange again)", n)
	}
	// Still authorised: the replay did not spoil the stored tokens.
	if out, err := e.imapLogin(alice, mailerPassword); err != nil || out != "LOGGED-IN" {
		t.Errorf("login after the replay: %v %s", err, out)
	}
	e.checkNoSecrets(res.Code)
}

// TestE2EAuthorizationTimeout: the login gives up after --auth-timeout with
// a reply saying authorisation is still needed; the URL stays valid
// (interactive.DefaultLinger), so completing it late stores the tokens and
// the next login works at once, without a new URL.
func TestE2EAuthorizationTimeout(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	e.registerCode(alice)
	e.serve("--auth-timeout", "3s")

	start := time.Now()
	login := e.imapLoginAsync(alice)
	authURL := e.waitAuthURL(alice, 1)
	out := e.awaitLogin(login, "the LOGIN that times out")
	waited := time.Since(start)
	if !strings.HasPrefix(out, "REFUSED") || !strings.Contains(out, "[UNAVAILABLE]") || !strings.Contains(out, "authorisation required") || !strings.Contains(out, "not authorised in time") {
		t.Fatalf("timed-out LOGIN got %q, want a refusal saying authorisation is required", out)
	}
	if waited < 3*time.Second {
		t.Errorf("the LOGIN was answered after %v, before --auth-timeout", waited)
	}

	res := e.authorize(alice, authURL)
	if res.Status != 200 || !strings.Contains(res.Body, successHeading) {
		t.Fatalf("completing the URL after the time-out: %d\n%s", res.Status, res.Body)
	}
	if out, err := e.imapLogin(alice, mailerPassword); err != nil || out != "LOGGED-IN" {
		t.Fatalf("login after the late authorisation: %v %s", err, out)
	}
	if n := len(authURLs(e.proc.Log(), alice)); n != 1 {
		t.Errorf("%d URLs announced, want 1 (the late completion must be used)", n)
	}
	if n := e.prov.GrantCount(fakeoauth.GrantAuthorizationCode); n != 1 {
		t.Errorf("code exchanges = %d, want 1", n)
	}
	e.checkNoSecrets(res.Code)
}

// TestE2EAuthorizationRestart: serve stops (SIGTERM) while a login waits;
// the waiting login gets a temporary refusal at once (not after the
// drain), a new login after the restart announces a new URL, the old URL
// gets an honest page, and the new one works.
func TestE2EAuthorizationRestart(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	e.registerCode(alice)
	first := e.serve("--drain-timeout", "30s")

	login := e.imapLoginAsync(alice)
	oldURL := e.waitAuthURL(alice, 1)
	stopped := time.Now()
	e.stop(first)
	if d := time.Since(stopped); d > 10*time.Second {
		t.Errorf("serve took %v to stop: the waiting login held the drain", d)
	}
	out := e.awaitLogin(login, "the LOGIN waiting at SIGTERM")
	if !strings.Contains(out, "[UNAVAILABLE]") || !strings.Contains(out, "authoris") {
		t.Errorf("the LOGIN waiting at SIGTERM got %q, want a temporary refusal saying authorisation is needed", out)
	}
	if strings.Contains(first.Log(), "cut short") {
		t.Errorf("the drain cut a session short:\n%s", first.Log())
	}

	e.serve()
	login = e.imapLoginAsync(alice)
	newURL := e.waitAuthURL(alice, 1) // in the new process's log
	if newURL == oldURL {
		t.Fatal("the restarted engine announced the old URL")
	}
	// The previous run's URL reaches the new listener: unknown state.
	res := e.authorize(alice, oldURL)
	if res.Status != http.StatusBadRequest || !strings.Contains(res.Body, "restarted") || strings.Contains(res.Body, successHeading) {
		t.Errorf("the URL of the previous run: %d\n%s", res.Status, res.Body)
	}
	res = e.authorize(alice, newURL)
	if res.Status != 200 || !strings.Contains(res.Body, successHeading) {
		t.Fatalf("the new URL: %d\n%s", res.Status, res.Body)
	}
	if out := e.awaitLogin(login, "the LOGIN after restart"); out != "LOGGED-IN" {
		t.Fatalf("the LOGIN after restart: %s", out)
	}
	if n := e.prov.GrantCount(fakeoauth.GrantAuthorizationCode); n != 1 {
		t.Errorf("code exchanges = %d, want 1 (the old URL's code must not be exchanged)", n)
	}
	e.checkNoSecrets(res.Code)
}

var deviceLine = regexp.MustCompile(`Visit (\S+) and use code (\S+)`)

// TestE2EDeviceFlow: the engine logs "Visit <uri> and use code <code>",
// polls the token endpoint at the announced interval, slows down by 5 s on
// slow_down, and the waiting login succeeds once the code is approved.
func TestE2EDeviceFlow(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	e.register("--account", alice, "--oauth2-flow", "device", "--oauth2-permission-url", e.prov.DeviceCodeURL())
	e.serve()

	e.prov.SlowDownNext(1)
	login := e.imapLoginAsync(alice)
	log := e.waitLog("and use code", 30*time.Second)
	m := deviceLine.FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no device line in:\n%s", log)
	}
	uri, code := m[1], m[2]
	if !strings.Contains(log, "message_id="+events.DeviceCode) || !strings.Contains(log, "user_code="+code) {
		t.Errorf("the device line lacks its message_id or user_code field:\n%s", log)
	}
	devs := e.prov.DeviceAuthorizations()
	if len(devs) != 1 || devs[0].UserCode != code {
		t.Fatalf("the logged code %q is not the provider's: %+v", code, devs)
	}
	if !strings.HasPrefix(uri, e.prov.VerificationURL()) {
		t.Errorf("logged URI %q, want the provider's verification page", uri)
	}
	// Approve once the slow_down was answered, so the next poll shows the
	// grown interval (that it stays grown is the unit tests' business:
	// here each extra poll costs 6 s).
	polls := func() []fakeoauth.TokenRequest {
		var out []fakeoauth.TokenRequest
		for _, r := range e.prov.TokenRequests() {
			if r.GrantType == fakeoauth.GrantDeviceCode {
				out = append(out, r)
			}
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(polls()) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the engine polled %d times in 30 s", len(polls()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.browser(alice).ApproveDevice(ctx, uri, code); err != nil {
		t.Fatal(err)
	}
	if out := e.awaitLogin(login, "the LOGIN waiting for the device code"); out != "LOGGED-IN" {
		t.Fatalf("the LOGIN waiting for the device code: %s", out)
	}

	ps := polls()
	if len(ps) != 2 || ps[0].Error != "slow_down" || ps[1].Status != 200 {
		t.Fatalf("polls: %+v, want slow_down first and success last", summarize(ps))
	}
	// interval 1 s, then 1+5 s after slow_down; timers fire late, never
	// early (a little slack for where the two sides read the clock).
	const slack = 100 * time.Millisecond
	if gap := ps[1].At.Sub(ps[0].At); gap < 6*time.Second-slack {
		t.Errorf("poll after slow_down came %v later, want >= 6 s", gap)
	}
	if out, err := e.imapLogin(alice, mailerPassword); err != nil || out != "LOGGED-IN" {
		t.Errorf("a later login: %v %s", err, out)
	}
	if n := e.prov.Count(fakeoauth.EndpointDeviceCode); n != 1 {
		t.Errorf("device authorisations = %d, want 1", n)
	}
	e.checkNoSecrets(devs[0].DeviceCode)
}

func summarize(ps []fakeoauth.TokenRequest) []string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s %d %s", p.At.Format("15:04:05.000"), p.Status, p.Error))
	}
	return out
}

// statusCLI runs `orbit email-oauth2-proxy status --output json` on this
// world's files and returns the report and the exit status.
func (e *env) statusCLI() (statusReport, int) {
	e.t.Helper()
	out, err := e.run("email-oauth2-proxy", "status", "--config", e.config, "--status-file", e.status,
		"--token-cache", e.tokens, "--output", "json")
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			e.t.Fatalf("status: %v\n%s", err, out)
		}
		code = ee.ExitCode()
	}
	// Only standard output is JSON; the exit's explanation goes to
	// standard error, which run merges: take the JSON object.
	start, end := strings.Index(out, "{"), strings.LastIndex(out, "}")
	var rep statusReport
	if start < 0 || end < start {
		e.t.Fatalf("status printed no JSON (exit %d):\n%s", code, out)
	}
	if err := json.Unmarshal([]byte(out[start:end+1]), &rep); err != nil {
		e.t.Fatalf("status JSON: %v\n%s", err, out)
	}
	return rep, code
}

// statusReport is the part of status's JSON document these tests read.
type statusReport struct {
	Engine *struct {
		PID     int    `json:"pid"`
		Manager string `json:"manager"`
	} `json:"engine"`
	Accounts   []statusAccount `json:"accounts"`
	StatusFile struct {
		Path  string `json:"path"`
		PID   int    `json:"pid"`
		Error string `json:"error"`
	} `json:"status_file"`
}

// TestE2EStatus: while a login waits, the engine's status file and
// `orbit email-oauth2-proxy status` show the account waiting with the URL;
// after the authorisation, authorised with the token's expiry. Neither the
// file nor serve's log holds a secret, including the refresh token the
// next login spends.
func TestE2EStatus(t *testing.T) {
	e := newEnv(t)
	e.addClient("")
	e.registerCode(alice)
	// Short-lived access tokens: the second login must refresh (the
	// proxy refreshes 600 s before expiry), so a refresh token travels.
	e.prov.SetAccessTokenLifetime(5 * time.Minute)
	serve := e.serve()

	login := e.imapLoginAsync(alice)
	authURL := e.waitAuthURL(alice, 1)
	// The engine reports before it logs: the file is current already.
	st, err := oauth.ReadStatus(e.status)
	if err != nil {
		t.Fatal(err)
	}
	a := st.Accounts[alice]
	if a.State != oauth.StateWaiting || a.AuthURL != authURL || a.Flow != "authorization_code" {
		t.Errorf("status file while waiting: %+v, want waiting with the logged URL", a)
	}
	if st.PID != serve.cmd.Process.Pid {
		t.Errorf("status file pid %d, serve is %d", st.PID, serve.cmd.Process.Pid)
	}
	rep, code := e.statusCLI()
	// No systemd here, but serve runs in the foreground: status sees it.
	if code != 0 || rep.Engine == nil || rep.Engine.PID != serve.cmd.Process.Pid || rep.Engine.Manager != "foreground" {
		t.Errorf("status exit %d, engine %+v; want 0 and the foreground serve %d (issue 9)", code, rep.Engine, serve.cmd.Process.Pid)
	}
	if got := findAccount(rep, alice); got == nil || got.State != "waiting" || got.AuthURL != authURL || got.Source != "status-file" {
		t.Errorf("status --output json while waiting: %+v", got)
	}

	res := e.authorize(alice, authURL)
	if res.Status != 200 {
		t.Fatalf("authorisation: %d\n%s", res.Status, res.Body)
	}
	if out := e.awaitLogin(login, "the waiting LOGIN"); out != "LOGGED-IN" {
		t.Fatalf("the waiting LOGIN: %s", out)
	}
	authorisedAt := time.Now()
	if out, err := e.imapLogin(alice, mailerPassword); err != nil || out != "LOGGED-IN" {
		t.Fatalf("the login that refreshes: %v %s", err, out)
	}
	var refreshTokens []string
	var verifier string
	for _, r := range e.prov.TokenRequests() {
		switch r.GrantType {
		case fakeoauth.GrantRefreshToken:
			if r.Status == 200 {
				refreshTokens = append(refreshTokens, r.Form.Get("refresh_token"))
			}
		case fakeoauth.GrantAuthorizationCode:
			verifier = r.Form.Get("code_verifier")
		}
	}
	if len(refreshTokens) != 1 {
		t.Fatalf("refreshes = %d, want 1 (lifetime 5 min is inside the 10 min margin)", len(refreshTokens))
	}

	st, err = oauth.ReadStatus(e.status)
	if err != nil {
		t.Fatal(err)
	}
	a = st.Accounts[alice]
	if a.State != oauth.StateAuthorised || a.AuthURL != "" {
		t.Errorf("status file after authorisation: %+v, want authorised without a URL", a)
	}
	if d := a.TokenExpiry.Sub(authorisedAt); d < 4*time.Minute || d > 6*time.Minute {
		t.Errorf("token_expiry %v is %v after the authorisation, want about 5 min (the provider's lifetime)", a.TokenExpiry, d)
	}
	rep, code = e.statusCLI()
	if code != 0 {
		t.Errorf("status exit %d, want 0 (the foreground serve runs)", code)
	}
	if got := findAccount(rep, alice); got == nil || got.State != "authorised" || got.TokenExpiry == nil || !got.TokenExpiry.Equal(a.TokenExpiry) {
		t.Errorf("status --output json after authorisation: %+v, want authorised until %v", got, a.TokenExpiry)
	}

	raw, err := os.ReadFile(e.status)
	if err != nil {
		t.Fatal(err)
	}
	secrets := append([]string{clientSecret, mailerPassword, res.Code, verifier}, refreshTokens...)
	for i, s := range secrets {
		if s != "" && strings.Contains(string(raw), s) {
			t.Errorf("the status file holds secret #%d (client secret, mailer password, code, verifier, refresh tokens)", i)
		}
	}
	for _, run := range tokenish.FindAllString(string(raw), -1) {
		if _, active := e.prov.Introspect(run); active {
			t.Errorf("the status file holds an access token")
		}
	}
	e.checkNoSecrets(append([]string{res.Code, verifier}, refreshTokens...)...)
}

// statusAccount is one account of status's JSON document.
type statusAccount struct {
	Name        string     `json:"name"`
	State       string     `json:"state"`
	Source      string     `json:"source"`
	Flow        string     `json:"flow"`
	AuthURL     string     `json:"auth_url"`
	TokenExpiry *time.Time `json:"token_expiry"`
}

func findAccount(rep statusReport, name string) *statusAccount {
	for i := range rep.Accounts {
		if rep.Accounts[i].Name == name {
			return &rep.Accounts[i]
		}
	}
	return nil
}
