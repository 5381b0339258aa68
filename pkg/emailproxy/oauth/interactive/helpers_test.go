package interactive

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// Secrets the tests plant; none may appear in a log line or a page.
const (
	testClientSecret = "s3cr3t-client-secret-value"
	accessPrefix     = "AT-secret-"
	refreshPrefix    = "RT-secret-"
)

// provider is a small OAuth 2.0 provider for these tests: /authorize logs
// in as login_hint at once and redirects, /token checks everything the
// spec says the code exchange carries, /devicecode and device polls follow
// a script.
type provider struct {
	t   testing.TB
	srv *httptest.Server

	mu          sync.Mutex
	codes       map[string]grant
	deny        string // when set, /authorize redirects with this error
	denyDesc    string
	tokenForms  []url.Values
	deviceForms []url.Values
	pollScript  []string // answers to device polls: an error code, or "ok"
	// assertionKey, when set, lets a client authenticate with an RS256
	// client_assertion instead of its secret.
	assertionKey *rsa.PublicKey
	deviceExp    int64
}

type grant struct {
	clientID, redirectURI, challenge, method, user string
	used                                           bool
}

func newProvider(t testing.TB) *provider {
	p := &provider{t: t, codes: map[string]grant{}, deviceExp: 900}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("POST /devicecode", p.devicecode)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("response_type") != "code" || q.Get("client_id") != "client-1" || q.Get("state") == "" {
		http.Error(w, "bad authorisation request", http.StatusBadRequest)
		return
	}
	target, err := url.Parse(q.Get("redirect_uri"))
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	back := url.Values{"state": {q.Get("state")}}
	p.mu.Lock()
	if p.deny != "" {
		back.Set("error", p.deny)
		back.Set("error_description", p.denyDesc)
	} else {
		code := fmt.Sprintf("code-%d-%s", len(p.codes), q.Get("login_hint"))
		p.codes[code] = grant{clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"),
			challenge: q.Get("code_challenge"), method: q.Get("code_challenge_method"), user: q.Get("login_hint")}
		back.Set("code", code)
	}
	p.mu.Unlock()
	target.RawQuery = back.Encode()
	http.Redirect(w, r, target.String(), http.StatusFound)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func writeTokens(w http.ResponseWriter, user string, n int) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": fmt.Sprintf("%s%s-%d", accessPrefix, user, n), "refresh_token": fmt.Sprintf("%s%s-%d", refreshPrefix, user, n),
		"expires_in": 3599, "token_type": "Bearer",
	})
}

func (p *provider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, 400, "invalid_request", "form")
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	f := r.PostForm
	p.tokenForms = append(p.tokenForms, f)
	if p.assertionKey != nil && f.Has("client_assertion") {
		if err := p.checkAssertion(f); err != nil {
			oauthError(w, 401, "invalid_client", err.Error())
			return
		}
	} else if f.Get("client_id") != "client-1" || f.Get("client_secret") != testClientSecret {
		oauthError(w, 401, "invalid_client", "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1234")
		return
	}
	switch f.Get("grant_type") {
	case "authorization_code":
		g, ok := p.codes[f.Get("code")]
		if !ok || g.used {
			oauthError(w, 400, "invalid_grant", "unknown or used code")
			return
		}
		g.used = true
		p.codes[f.Get("code")] = g
		if g.redirectURI != f.Get("redirect_uri") {
			oauthError(w, 400, "invalid_grant", "redirect_uri differs")
			return
		}
		if g.challenge != "" {
			sum := sha256.Sum256([]byte(f.Get("code_verifier")))
			if g.method != "S256" || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
				oauthError(w, 400, "invalid_grant", "PKCE verification failed")
				return
			}
		} else if f.Has("code_verifier") {
			oauthError(w, 400, "invalid_grant", "code_verifier without a challenge")
			return
		}
		writeTokens(w, g.user, len(p.tokenForms))
	case DeviceCodeGrant:
		if f.Get("device_code") != "dev-code-1" {
			oauthError(w, 400, "invalid_grant", "unknown device code")
			return
		}
		next := "authorization_pending"
		if len(p.pollScript) > 0 {
			next, p.pollScript = p.pollScript[0], p.pollScript[1:]
		}
		if next == "ok" {
			writeTokens(w, "device-user", len(p.tokenForms))
			return
		}
		oauthError(w, 400, next, "script says "+next)
	default:
		oauthError(w, 400, "unsupported_grant_type", f.Get("grant_type"))
	}
}

func (p *provider) devicecode(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	p.mu.Lock()
	p.deviceForms = append(p.deviceForms, r.PostForm)
	exp := p.deviceExp
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"device_code": "dev-code-1", "user_code": "ABCD-EFGH",
		"verification_uri":          p.srv.URL + "/device",
		"verification_uri_complete": p.srv.URL + "/device?code=ABCD-EFGH",
		"expires_in":                exp, "interval": 1,
	})
}

func (p *provider) forms() []url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]url.Values(nil), p.tokenForms...)
}

// logs captures slog records so a test can read the URL the way an
// administrator would.
type logs struct {
	mu      sync.Mutex
	records []slog.Record
	changed chan struct{}
}

func newLogs() *logs { return &logs{changed: make(chan struct{}, 1)} }

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logs) WithGroup(string) slog.Handler            { return l }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.records = append(l.records, r.Clone())
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
	return nil
}

func attrs(r slog.Record) map[string]string {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	return m
}

// byID returns the records with message_id id (and account, when set).
func (l *logs) byID(id, account string) []slog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []slog.Record
	for _, r := range l.records {
		a := attrs(r)
		if a["message_id"] == id && (account == "" || a["account"] == account) {
			out = append(out, r)
		}
	}
	return out
}

// waitFor blocks until n records with message_id id exist for account.
func (l *logs) waitFor(t *testing.T, id, account string, n int) []slog.Record {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if rs := l.byID(id, account); len(rs) >= n {
			return rs
		}
		select {
		case <-l.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no %d log records with message_id %s for %q; have %s", n, id, account, l.text())
		}
	}
}

// text is every record, message and attributes, as one string.
func (l *logs) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, r := range l.records {
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%s", a.Key, a.Value); return true })
		b.WriteByte('\n')
	}
	return b.String()
}

// reporter records what the Server tells the token manager.
type reporter struct {
	mu      sync.Mutex
	pending []string
}

func (r *reporter) SetPending(account, authURL string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = append(r.pending, account+" "+authURL)
}

func (r *reporter) SetPendingDevice(account, uri, code string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = append(r.pending, account+" "+uri+" "+code)
}

func (r *reporter) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.pending...)
}

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func codeAccount(p *provider, name, redirect string) config.Account {
	return config.Account{
		Name: name, Section: "@",
		PermissionURL: p.srv.URL + "/authorize", TokenURL: p.srv.URL + "/token",
		Scope:       "https://outlook.office365.com/IMAP.AccessAsUser.All https://outlook.office365.com/SMTP.Send offline_access",
		Flow:        config.FlowClientCredentials, // the senhasegura example: permission_url wins
		RedirectURI: redirect, ClientID: "client-1", ClientSecret: testClientSecret, UsePKCE: true,
	}
}

// browser fetches a URL without following redirects, as a test that plays
// the browser step by step.
var browser = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       10 * time.Second,
}

type visit struct {
	status int
	body   string
}

func get(t *testing.T, u string) visit {
	t.Helper()
	resp, err := browser.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return visit{resp.StatusCode, string(b)}
}

// login plays the admin: it opens the authorisation URL at the provider,
// takes the redirect, maps it with rewrite (a reverse proxy; nil keeps it)
// and opens it at the listener.
func login(t *testing.T, authURL string, rewrite func(*url.URL)) visit {
	t.Helper()
	resp, err := browser.Get(authURL)
	if err != nil {
		t.Fatalf("opening the authorisation URL: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("provider answered %d to the authorisation URL, want 302", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if rewrite != nil {
		rewrite(loc)
	}
	return get(t, loc.String())
}

type outcome struct {
	tok oauth.TokenResponse
	err error
}

// authorize runs Authorize in the background, as a waiting mail login.
func authorize(ctx context.Context, s *Server, acct config.Account) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		tok, err := s.Authorize(ctx, acct, acct.Name)
		ch <- outcome{tok, err}
	}()
	return ch
}

func await(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("Authorize did not return")
		return outcome{}
	}
}

// newServer is a Server logging into a capture, shut down at the end.
func newServer(t *testing.T, opts Options) (*Server, *logs) {
	t.Helper()
	l := newLogs()
	opts.Logger = slog.New(l)
	s := New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, l
}

func newSlog(h slog.Handler) *slog.Logger { return slog.New(h) }

// checkAssertion verifies a certificate client assertion as Entra ID does:
// assertion type, RS256 signature, audience = token endpoint, iss = sub =
// client_id, and a current validity window.
func (p *provider) checkAssertion(f url.Values) error {
	if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		return fmt.Errorf("bad client_assertion_type")
	}
	parts := strings.Split(f.Get("client_assertion"), ".")
	if len(parts) != 3 {
		return fmt.Errorf("malformed assertion")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(p.assertionKey, crypto.SHA256, sum[:], sig); err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		Aud, Iss, Sub string
		Exp, Nbf      int64
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	now := time.Now().Unix()
	if c.Aud != p.srv.URL+"/token" || c.Iss != "client-1" || c.Sub != "client-1" || c.Nbf > now+60 || c.Exp < now {
		return fmt.Errorf("claims %+v", c)
	}
	return nil
}
