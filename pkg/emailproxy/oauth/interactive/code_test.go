package interactive

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"html"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/errcatalog"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

const redirectPath = "/email-oauth2-proxy-authorize/"

// authURLOf reads the URL from the newest "Please visit" record.
func authURLOf(t *testing.T, l *logs, account string, n int) string {
	t.Helper()
	rs := l.waitFor(t, events.AuthURL, account, n)
	return attrs(rs[n-1])["auth_url"]
}

func TestAuthorizationCodeEndToEnd(t *testing.T) {
	p := newProvider(t)
	rep := &reporter{}
	var doneMu sync.Mutex
	var done []string
	s, l := newServer(t, Options{Reporter: rep, OnDone: func(a string, err error) {
		doneMu.Lock()
		defer doneMu.Unlock()
		done = append(done, fmt.Sprintf("%s %v", a, err))
	}})
	addr := freeAddr(t)
	acct := codeAccount(p, "alice@example.com", "http://"+addr+redirectPath)

	ch := authorize(context.Background(), s, acct)
	u := authURLOf(t, l, "alice@example.com", 1)

	// The two lines, word for word, in order, with their fields.
	var msgs []string
	for _, r := range l.byID(events.AuthRequest, "")[:1] {
		msgs = append(msgs, r.Message)
	}
	for _, r := range l.byID(events.AuthURL, "") {
		msgs = append(msgs, r.Message)
	}
	want := []string{
		"Authorisation request received for alice@example.com (local server auth mode)",
		"Please visit the following URL to authenticate account alice@example.com: " + u,
	}
	if strings.Join(msgs, "\n") != strings.Join(want, "\n") {
		t.Errorf("log lines:\n%s\nwant:\n%s", strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}
	for _, r := range append(l.byID(events.AuthRequest, ""), l.byID(events.AuthURL, "")...) {
		if a := attrs(r); a["account"] != "alice@example.com" || a["auth_url"] != u {
			t.Errorf("record %q has attrs %v", r.Message, a)
		}
	}
	if got := rep.list(); len(got) != 1 || got[0] != "alice@example.com "+u {
		t.Errorf("Reporter heard %q, want the account and its URL", got)
	}
	if ps := s.Pending(); len(ps) != 1 || ps[0].URL != u || ps[0].Waiters != 1 || ps[0].Flow != config.FlowAuthorizationCode {
		t.Errorf("Pending() = %+v", ps)
	}

	// The URL: the spec's parameters in the spec's order, spaces as %20.
	order := regexp.MustCompile(`^` + regexp.QuoteMeta(p.srv.URL+"/authorize") +
		`\?client_id=client-1&redirect_uri=http%3A%2F%2F[0-9.]+%3A[0-9]+%2Femail-oauth2-proxy-authorize%2F` +
		`&scope=https%3A%2F%2Foutlook.office365.com%2FIMAP.AccessAsUser.All%20https%3A%2F%2Foutlook.office365.com%2FSMTP.Send%20offline_access` +
		`&response_type=code&access_type=offline&login_hint=alice%40example.com&state=[A-Za-z0-9_-]{43}` +
		`&code_challenge=[A-Za-z0-9_-]{43}&code_challenge_method=S256$`)
	if !order.MatchString(u) {
		t.Errorf("authorisation URL %s\ndoes not match %s", u, order)
	}

	v := login(t, u, nil)
	if v.status != http.StatusOK || !strings.Contains(v.body, "Email OAuth 2.0 authentication succeeded") || !strings.Contains(v.body, "alice@example.com") {
		t.Fatalf("success page: %d\n%s", v.status, v.body)
	}
	o := await(t, ch)
	if o.err != nil {
		t.Fatalf("Authorize: %v", o.err)
	}
	if !strings.HasPrefix(o.tok.AccessToken, accessPrefix+"alice@example.com") || !strings.HasPrefix(o.tok.RefreshToken, refreshPrefix) || o.tok.ExpiresIn != 3599 {
		t.Errorf("tokens = %+v", o.tok)
	}
	forms := p.forms()
	if len(forms) != 1 {
		t.Fatalf("%d token requests, want 1", len(forms))
	}
	f := forms[0]
	for k, want := range map[string]string{
		"client_id": "client-1", "client_secret": testClientSecret, "grant_type": "authorization_code",
		"redirect_uri": acct.RedirectURI,
	} {
		if f.Get(k) != want {
			t.Errorf("code exchange %s = %q, want %q", k, f.Get(k), want)
		}
	}
	if len(f.Get("code_verifier")) != 43 {
		t.Errorf("code_verifier = %q, want 43 characters", f.Get("code_verifier"))
	}
	if len(l.byID(events.AuthSucceeded, "alice@example.com")) != 1 {
		t.Errorf("no AuthSucceeded record:\n%s", l.text())
	}
	doneMu.Lock()
	if len(done) != 1 || done[0] != "alice@example.com <nil>" {
		t.Errorf("OnDone calls: %q", done)
	}
	doneMu.Unlock()
	if ps := s.Pending(); len(ps) != 0 {
		t.Errorf("Pending() after success = %+v", ps)
	}

	// The same link again: the provider issues a new code, the listener
	// refuses the spent state.
	again := login(t, u, nil)
	if again.status != http.StatusBadRequest || !strings.Contains(again.body, "already been used") {
		t.Errorf("reused state: %d\n%s", again.status, again.body)
	}
	if n := len(p.forms()); n != 1 {
		t.Errorf("reused state led to %d token requests, want still 1", n)
	}

	// Nothing secret in the log or on any page.
	everything := l.text() + v.body + again.body
	for _, secret := range []string{testClientSecret, accessPrefix, refreshPrefix, f.Get("code_verifier"), f.Get("code")} {
		if strings.Contains(everything, secret) {
			t.Errorf("%q appears in a log line or page", secret)
		}
	}
}

func TestAuthorizationURL(t *testing.T) {
	base := config.Account{
		PermissionURL: "https://login.example.test/tenant/oauth2/v2.0/authorize",
		ClientID:      "id with space&amp", RedirectURI: "http://localhost:8801/cb",
		Scope: "  a b+c  ",
	}
	tests := []struct {
		name      string
		perm      string
		challenge string
		want      string
	}{
		{"no PKCE", "", "",
			"https://login.example.test/tenant/oauth2/v2.0/authorize?client_id=id%20with%20space%26amp&redirect_uri=http%3A%2F%2Flocalhost%3A8801%2Fcb&scope=a%20b%2Bc&response_type=code&access_type=offline&login_hint=u%40example.com&state=S"},
		{"PKCE", "", "CH",
			"https://login.example.test/tenant/oauth2/v2.0/authorize?client_id=id%20with%20space%26amp&redirect_uri=http%3A%2F%2Flocalhost%3A8801%2Fcb&scope=a%20b%2Bc&response_type=code&access_type=offline&login_hint=u%40example.com&state=S&code_challenge=CH&code_challenge_method=S256"},
		{"permission_url with a query", "https://p.example.test/auth?prompt=consent", "",
			"https://p.example.test/auth?prompt=consent&client_id=id%20with%20space%26amp&redirect_uri=http%3A%2F%2Flocalhost%3A8801%2Fcb&scope=a%20b%2Bc&response_type=code&access_type=offline&login_hint=u%40example.com&state=S"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := base
			if tc.perm != "" {
				a.PermissionURL = tc.perm
			}
			if got := AuthorizationURL(a, "u@example.com", "S", tc.challenge); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestPKCEOff(t *testing.T) {
	p := newProvider(t)
	s, l := newServer(t, Options{})
	acct := codeAccount(p, "carol@example.com", "http://"+freeAddr(t)+redirectPath)
	acct.UsePKCE = false
	ch := authorize(context.Background(), s, acct)
	u := authURLOf(t, l, "carol@example.com", 1)
	if strings.Contains(u, "code_challenge") {
		t.Errorf("use_pkce off, yet the URL has a challenge: %s", u)
	}
	if v := login(t, u, nil); v.status != 200 {
		t.Fatalf("page %d: %s", v.status, v.body)
	}
	if o := await(t, ch); o.err != nil {
		t.Fatal(o.err)
	}
	if f := p.forms()[0]; f.Has("code_verifier") {
		t.Error("use_pkce off, yet the exchange sent code_verifier")
	}
}

func TestTwoAccountsOnePort(t *testing.T) {
	p := newProvider(t)
	s, l := newServer(t, Options{})
	redirect := "http://" + freeAddr(t) + redirectPath
	alice := codeAccount(p, "alice@example.com", redirect)
	bob := codeAccount(p, "bob@example.com", redirect)
	chA := authorize(context.Background(), s, alice)
	chB := authorize(context.Background(), s, bob)
	uA := authURLOf(t, l, "alice@example.com", 1)
	uB := authURLOf(t, l, "bob@example.com", 1)
	if uA == uB {
		t.Fatal("two accounts got the same URL")
	}
	// Bob finishes first, alice after: each redirect reaches its own login.
	if v := login(t, uB, nil); v.status != 200 || !strings.Contains(v.body, "bob@example.com") {
		t.Fatalf("bob's page: %d %s", v.status, v.body)
	}
	ob := await(t, chB)
	select {
	case o := <-chA:
		t.Fatalf("alice's login returned when bob authorised: %+v", o)
	default:
	}
	if v := login(t, uA, nil); v.status != 200 || !strings.Contains(v.body, "alice@example.com") {
		t.Fatalf("alice's page: %d %s", v.status, v.body)
	}
	oa := await(t, chA)
	if oa.err != nil || ob.err != nil {
		t.Fatalf("errors: alice %v, bob %v", oa.err, ob.err)
	}
	if !strings.HasPrefix(oa.tok.AccessToken, accessPrefix+"alice@") || !strings.HasPrefix(ob.tok.AccessToken, accessPrefix+"bob@") {
		t.Errorf("tokens crossed: alice %s, bob %s", oa.tok.AccessToken, ob.tok.AccessToken)
	}
	s.mu.Lock()
	n := len(s.listeners)
	s.mu.Unlock()
	if n != 1 {
		t.Errorf("%d listeners for one address, want 1", n)
	}
}

func TestConcurrentLoginsShareOneRequest(t *testing.T) {
	p := newProvider(t)
	rep := &reporter{}
	s, l := newServer(t, Options{Reporter: rep})
	acct := codeAccount(p, "alice@example.com", "http://"+freeAddr(t)+redirectPath)
	ch1 := authorize(context.Background(), s, acct)
	u1 := authURLOf(t, l, "alice@example.com", 1)
	ch2 := authorize(context.Background(), s, acct)
	u2 := authURLOf(t, l, "alice@example.com", 2)
	if u1 != u2 {
		t.Fatalf("the second login made a new URL:\n%s\n%s", u1, u2)
	}
	if n := len(l.byID(events.AuthRequest, "alice@example.com")); n != 2 {
		t.Errorf("%d request-received lines, want 2 (the second login re-announces)", n)
	}
	if got := rep.list(); len(got) != 2 || got[0] != got[1] {
		t.Errorf("Reporter heard %q, want the same URL twice", got)
	}
	if ps := s.Pending(); len(ps) != 1 || ps[0].Waiters != 2 {
		t.Errorf("Pending() = %+v, want one request with two waiters", ps)
	}
	if v := login(t, u1, nil); v.status != 200 {
		t.Fatalf("page %d: %s", v.status, v.body)
	}
	o1, o2 := await(t, ch1), await(t, ch2)
	if o1.err != nil || o2.err != nil || o1.tok.AccessToken != o2.tok.AccessToken {
		t.Errorf("logins got %+v and %+v, want the same tokens", o1, o2)
	}
	if n := len(p.forms()); n != 1 {
		t.Errorf("%d code exchanges, want 1", n)
	}
}

func TestRedirectFailures(t *testing.T) {
	p := newProvider(t)
	s, l := newServer(t, Options{})
	addr := freeAddr(t)
	acct := codeAccount(p, "alice@example.com", "http://"+addr+redirectPath)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := authorize(ctx, s, acct)
	u := authURLOf(t, l, "alice@example.com", 1)
	state := mustQuery(t, u).Get("state")
	base := "http://" + addr + redirectPath

	tests := []struct {
		name   string
		method string
		url    string
		status int
		want   string
	}{
		{"forged state", "GET", base + "?code=x&state=" + strings.Repeat("A", 43), 400, "unknown to the proxy"},
		{"no state", "GET", base + "?code=x", 400, "carries no state"},
		{"other path", "GET", "http://" + addr + "/favicon.ico?state=" + state, 404, "only answers the redirect"},
		{"POST", "POST", base + "?code=x&state=" + state, 405, "Method not allowed"},
		{"HEAD does not spend the state", "HEAD", base + "?code=x&state=" + state, 405, ""},
		{"markup is escaped", "GET", base + "?code=x&state=%3Cscript%3Ealert(1)%3C%2Fscript%3E", 400, "unknown to the proxy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.url, nil)
			resp, err := browser.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b strings.Builder
			buf := make([]byte, 4096)
			for {
				n, err := resp.Body.Read(buf)
				b.Write(buf[:n])
				if err != nil {
					break
				}
			}
			if resp.StatusCode != tc.status || !strings.Contains(b.String(), tc.want) {
				t.Errorf("%d %s, want %d containing %q", resp.StatusCode, b.String(), tc.status, tc.want)
			}
			if strings.Contains(b.String(), "<script>") {
				t.Error("the page reflects markup from the request")
			}
		})
	}
	select {
	case o := <-ch:
		t.Fatalf("the login ended after bad redirects: %+v", o)
	default:
	}
	// After all that, the real redirect still works: nothing above spent
	// the state.
	if v := login(t, u, nil); v.status != 200 {
		t.Fatalf("real redirect after bad ones: %d %s", v.status, v.body)
	}
	if o := await(t, ch); o.err != nil {
		t.Fatal(o.err)
	}
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

func TestProviderErrorRedirect(t *testing.T) {
	p := newProvider(t)
	p.deny, p.denyDesc = "access_denied", "The user <b>declined</b> consent.\nTrace: 42"
	s, l := newServer(t, Options{})
	acct := codeAccount(p, "alice@example.com", "http://"+freeAddr(t)+redirectPath)
	ch := authorize(context.Background(), s, acct)
	v := login(t, authURLOf(t, l, "alice@example.com", 1), nil)
	if v.status != http.StatusForbidden {
		t.Errorf("status %d, want 403", v.status)
	}
	for _, want := range []string{"Email OAuth 2.0 authentication failed", "access_denied", "The user &lt;b&gt;declined&lt;/b&gt; consent.", "What to do", "alice@example.com"} {
		if !strings.Contains(v.body, want) {
			t.Errorf("page lacks %q:\n%s", want, v.body)
		}
	}
	if strings.Contains(v.body, "succeeded") || strings.Contains(v.body, "<b>") || strings.Contains(v.body, "Trace") {
		t.Errorf("page claims success, reflects markup or keeps the trace line:\n%s", v.body)
	}
	o := await(t, ch)
	var re *RedirectError
	if !errors.Is(o.err, oauth.ErrNeedsAuthorization) || !errors.As(o.err, &re) || re.Code != "access_denied" {
		t.Errorf("Authorize error = %v, want a RedirectError wrapping ErrNeedsAuthorization", o.err)
	}
	if n := len(p.forms()); n != 0 {
		t.Errorf("%d token requests after a refusal, want 0", n)
	}
	if len(l.byID(events.AuthFailed, "alice@example.com")) != 1 {
		t.Errorf("no AuthFailed record:\n%s", l.text())
	}
}

func TestExchangeFailure(t *testing.T) {
	p := newProvider(t)
	s, l := newServer(t, Options{})
	acct := codeAccount(p, "alice@example.com", "http://"+freeAddr(t)+redirectPath)
	acct.ClientSecret = "wrong-" + testClientSecret
	ch := authorize(context.Background(), s, acct)
	v := login(t, authURLOf(t, l, "alice@example.com", 1), nil)
	if v.status != http.StatusBadRequest || !strings.Contains(v.body, "invalid_client") || !strings.Contains(v.body, "could not exchange") {
		t.Errorf("page %d:\n%s", v.status, v.body)
	}
	o := await(t, ch)
	if !errors.Is(o.err, oauth.ErrProviderRefused) {
		t.Errorf("Authorize error = %v, want ErrProviderRefused", o.err)
	}
	if strings.Contains(l.text()+v.body+o.err.Error(), testClientSecret) {
		t.Error("the client secret leaked")
	}
}

func TestTimeoutThenLateAuthorisation(t *testing.T) {
	p := newProvider(t)
	s, l := newServer(t, Options{})
	acct := codeAccount(p, "alice@example.com", "http://"+freeAddr(t)+redirectPath)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	o := await(t, authorize(ctx, s, acct))
	if !errors.Is(o.err, oauth.ErrNeedsAuthorization) || !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("time-out error = %v", o.err)
	}
	if !strings.Contains(o.err.Error(), "orbit email-oauth2-proxy logs") {
		t.Errorf("time-out error does not say what to do: %v", o.err)
	}
	if ps := s.Pending(); len(ps) != 1 || ps[0].Waiters != 0 {
		t.Errorf("Pending() after the time-out = %+v, want the request kept with no waiter", ps)
	}
	// The admin opens the URL after the mailer gave up...
	if v := login(t, authURLOf(t, l, "alice@example.com", 1), nil); v.status != 200 {
		t.Fatalf("late login page %d: %s", v.status, v.body)
	}
	// ...and the next login gets the tokens at once, without a new URL.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	tok, err := s.Authorize(ctx2, acct, "alice@example.com")
	if err != nil || !strings.HasPrefix(tok.AccessToken, accessPrefix) {
		t.Fatalf("next login: %+v, %v", tok, err)
	}
	if n := len(l.byID(events.AuthURL, "alice@example.com")); n != 1 {
		t.Errorf("%d URL lines, want 1", n)
	}
}

func TestExpiredRequest(t *testing.T) {
	p := newProvider(t)
	var mu sync.Mutex
	var doneErr error
	s, l := newServer(t, Options{Linger: -1, OnDone: func(_ string, err error) { mu.Lock(); doneErr = err; mu.Unlock() }})
	acct := codeAccount(p, "alice@example.com", "http://"+freeAddr(t)+redirectPath)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if o := await(t, authorize(ctx, s, acct)); !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("want a time-out, got %v", o.err)
	}
	v := login(t, authURLOf(t, l, "alice@example.com", 1), nil)
	if v.status != 400 || !strings.Contains(v.body, "expired") {
		t.Errorf("expired link: %d %s", v.status, v.body)
	}
	mu.Lock()
	if !errors.Is(doneErr, ErrExpired) {
		t.Errorf("OnDone error = %v, want ErrExpired", doneErr)
	}
	mu.Unlock()
	// A new login makes a new request with a new URL.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	ch := authorize(ctx2, s, acct)
	if u2 := authURLOf(t, l, "alice@example.com", 2); u2 == authURLOf(t, l, "alice@example.com", 1) {
		t.Error("a new login after expiry reused the old URL")
	}
	cancel2()
	await(t, ch)
}

func TestReverseProxyPaths(t *testing.T) {
	p := newProvider(t)
	s, l := newServer(t, Options{})
	addr := freeAddr(t)
	acct := codeAccount(p, "alice@example.com", "http://vault.example.test"+redirectPath)
	acct.RedirectListenAddress = "http://" + addr + "/"
	for i, strip := range []bool{true, false} {
		ch := authorize(context.Background(), s, acct)
		u := authURLOf(t, l, "alice@example.com", i+1)
		// The vault's web server forwards the public redirect to the
		// listener, with or without the prefix.
		v := login(t, u, func(loc *url.URL) {
			if loc.Host != "vault.example.test" {
				t.Errorf("redirect goes to %s, want redirect_uri's host", loc.Host)
			}
			loc.Host = addr
			if strip {
				loc.Path = "/"
			}
		})
		if v.status != 200 {
			t.Fatalf("strip=%v: page %d %s", strip, v.status, v.body)
		}
		if o := await(t, ch); o.err != nil {
			t.Fatal(o.err)
		}
	}
	if f := p.forms()[0]; f.Get("redirect_uri") != "http://vault.example.test"+redirectPath {
		t.Errorf("exchange redirect_uri = %q, want the public redirect_uri", f.Get("redirect_uri"))
	}
}

func TestListenerBusy(t *testing.T) {
	p := newProvider(t)
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	s, l := newServer(t, Options{})
	acct := codeAccount(p, "alice@example.com", "http://"+hold.Addr().String()+redirectPath)
	_, err = s.Authorize(context.Background(), acct, "")
	if err == nil || !strings.Contains(err.Error(), hold.Addr().String()) || !strings.Contains(err.Error(), "[@]") {
		t.Fatalf("error = %v, want one naming the address and section", err)
	}
	if n := len(l.byID(events.AuthURL, "")); n != 0 {
		t.Error("a URL was announced although its redirect could not be received")
	}
}

func TestConfigErrors(t *testing.T) {
	p := newProvider(t)
	s, _ := newServer(t, Options{})
	ok := codeAccount(p, "a@example.com", "http://127.0.0.1:1/cb")
	tests := []struct {
		name   string
		mutate func(*config.Account)
		want   string
	}{
		{"no permission_url means not interactive", func(a *config.Account) { a.PermissionURL = "" }, "needs no person"},
		{"no redirect_uri", func(a *config.Account) { a.RedirectURI = "" }, "has no redirect_uri"},
		{"relative redirect_uri", func(a *config.Account) { a.RedirectURI = "/cb" }, "not an absolute http(s) URL"},
		{"https listen address", func(a *config.Account) { a.RedirectListenAddress = "https://127.0.0.1:1/" }, "must be plain http://"},
		{"device without token_url", func(a *config.Account) { a.Flow = config.FlowDevice; a.TokenURL = "" }, "has no token_url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := ok
			tc.mutate(&a)
			_, err := s.Authorize(context.Background(), a, "")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	p := newProvider(t)
	l := newLogs()
	s := New(Options{Logger: newSlog(l)})
	addr := freeAddr(t)
	ch := authorize(context.Background(), s, codeAccount(p, "alice@example.com", "http://"+addr+redirectPath))
	l.waitFor(t, events.AuthURL, "alice@example.com", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if o := await(t, ch); !errors.Is(o.err, ErrClosed) || !errors.Is(o.err, oauth.ErrNeedsAuthorization) {
		t.Errorf("waiting login got %v, want ErrClosed and ErrNeedsAuthorization (a temporary failure for the mail client)", o.err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the listener's port is still taken after Shutdown: %v", err)
	}
	ln.Close()
	if _, err := s.Authorize(context.Background(), codeAccount(p, "alice@example.com", "http://"+addr+redirectPath), ""); !errors.Is(err, ErrClosed) {
		t.Errorf("Authorize after Shutdown = %v, want ErrClosed", err)
	}
}

func TestListenerTimeouts(t *testing.T) {
	p := newProvider(t)
	s, l := newServer(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	ch := authorize(ctx, s, codeAccount(p, "alice@example.com", "http://"+freeAddr(t)+redirectPath))
	l.waitFor(t, events.AuthURL, "alice@example.com", 1)
	s.mu.Lock()
	for _, ln := range s.listeners {
		srv := ln.srv
		if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
			t.Errorf("listener on %s lacks a timeout or header limit: %+v", ln.addr, srv)
		}
	}
	s.mu.Unlock()
	cancel()
	await(t, ch)
}

// The token manager passes a context without a deadline (its flights
// outlive the mail client), so the Server's own Timeout must end the wait.
func TestOwnTimeout(t *testing.T) {
	p := newProvider(t)
	s, _ := newServer(t, Options{Timeout: 50 * time.Millisecond})
	acct := codeAccount(p, "alice@example.com", "http://"+freeAddr(t)+redirectPath)
	o := await(t, authorize(context.WithoutCancel(context.Background()), s, acct))
	if !errors.Is(o.err, oauth.ErrNeedsAuthorization) || !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want a time-out", o.err)
	}
}

// An account with jwt_certificate_path/jwt_key_path and no client_secret
// authenticates the code exchange with a certificate client assertion.
func TestCodeExchangeWithCertificate(t *testing.T) {
	p := newProvider(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p.assertionKey = &key.PublicKey
	dir := t.TempDir()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)

	s, l := newServer(t, Options{})
	acct := codeAccount(p, "alice@example.com", "http://"+freeAddr(t)+redirectPath)
	acct.ClientSecret = ""
	acct.JWTCertificatePath, acct.JWTKeyPath = certPath, keyPath
	ch := authorize(context.Background(), s, acct)
	if v := login(t, authURLOf(t, l, "alice@example.com", 1), nil); v.status != 200 {
		t.Fatalf("page %d: %s", v.status, v.body)
	}
	if o := await(t, ch); o.err != nil {
		t.Fatal(o.err)
	}
	if f := p.forms()[0]; f.Has("client_secret") || !f.Has("client_assertion") {
		t.Errorf("exchange form keys %v, want a client_assertion and no client_secret", f)
	}
}

// TestProviderErrorRedirectExplained: an error the provider error catalogue
// knows gets the catalogue's fix on the page and its explanation in the
// error the waiting login reports.
func TestProviderErrorRedirectExplained(t *testing.T) {
	p := newProvider(t)
	p.deny, p.denyDesc = "invalid_request", "AADSTS65001: The user or administrator has not consented to use the application."
	entry, ok := errcatalog.Lookup(errcatalog.Authorization, p.deny, p.denyDesc)
	if !ok {
		t.Fatal("the catalogue does not know AADSTS65001")
	}
	s, l := newServer(t, Options{})
	acct := codeAccount(p, "alice@example.com", "http://"+freeAddr(t)+redirectPath)
	ch := authorize(context.Background(), s, acct)
	v := login(t, authURLOf(t, l, "alice@example.com", 1), nil)
	if v.status != http.StatusBadRequest || !strings.Contains(v.body, html.EscapeString(entry.Fix)) || !strings.Contains(v.body, "AADSTS65001: The user or administrator") {
		t.Errorf("page %d lacks the provider's words or the fix %q:\n%s", v.status, entry.Fix, v.body)
	}
	if o := await(t, ch); o.err == nil || !strings.Contains(o.err.Error(), entry.Hint()) {
		t.Errorf("Authorize error = %v, want the hint %q", o.err, entry.Hint())
	}
}
