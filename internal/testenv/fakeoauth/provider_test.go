package fakeoauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"
)

const (
	alice     = "alice@example.test"
	alicePW   = "alice-password"
	bob       = "bob@example.test"
	bobPW     = "bob-password"
	scopeO365 = "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access"
)

func newProvider(t *testing.T) *Provider {
	t.Helper()
	p := Start(t)
	p.AddUser(alice, alicePW)
	p.AddUser(bob, bobPW)
	p.AddClient(Client{ID: "confidential", Secret: "s3cret", ServiceUser: alice})
	p.AddClient(Client{ID: "public"})
	p.AddClient(Client{ID: "pkce-only", RequirePKCE: true})
	return p
}

type answer struct {
	Status int
	JSON   map[string]any
	Raw    string
}

func (a answer) str(k string) string { s, _ := a.JSON[k].(string); return s }

func post(t *testing.T, ctx context.Context, target string, form url.Values, basic ...string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", target, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{Status: resp.StatusCode, Raw: string(raw)}
	_ = json.Unmarshal(raw, &a.JSON)
	return a
}

func token(t *testing.T, p *Provider, form url.Values, basic ...string) answer {
	t.Helper()
	return post(t, context.Background(), p.TokenURL(), form, basic...)
}

func introspect(t *testing.T, p *Provider, tok string) (string, bool) {
	t.Helper()
	a := post(t, context.Background(), p.IntrospectURL(), url.Values{"token": {tok}})
	if a.Status != http.StatusOK {
		t.Fatalf("introspect: HTTP %d %s", a.Status, a.Raw)
	}
	active, _ := a.JSON["active"].(bool)
	return a.str("username"), active
}

func wantError(t *testing.T, a answer, status int, code string) {
	t.Helper()
	if a.Status != status || a.str("error") != code {
		t.Fatalf("got HTTP %d %s, want HTTP %d error=%s", a.Status, a.Raw, status, code)
	}
}

func wantToken(t *testing.T, p *Provider, a answer, user string) {
	t.Helper()
	if a.Status != http.StatusOK || a.str("access_token") == "" {
		t.Fatalf("got HTTP %d %s, want a token", a.Status, a.Raw)
	}
	if a.str("token_type") != "Bearer" {
		t.Errorf("token_type = %q, want Bearer", a.str("token_type"))
	}
	got, active := introspect(t, p, a.str("access_token"))
	if !active || got != user {
		t.Fatalf("introspection of the new token: active=%v username=%q, want active for %q", active, got, user)
	}
}

func TestClientCredentials(t *testing.T) {
	p := newProvider(t)
	p.AddClient(Client{ID: "no-mailbox", Secret: "x"})
	base := url.Values{"grant_type": {GrantClientCredentials}, "scope": {"https://outlook.office365.com/.default"}}
	with := func(kv ...string) url.Values {
		f := cloneValues(base)
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				f.Del(kv[i])
			} else {
				f.Set(kv[i], kv[i+1])
			}
		}
		return f
	}
	tests := []struct {
		name   string
		form   url.Values
		basic  []string
		status int
		code   string
	}{
		{"secret in form", with("client_id", "confidential", "client_secret", "s3cret"), nil, 200, ""},
		{"secret by HTTP Basic", with(), []string{"confidential", "s3cret"}, 200, ""},
		{"wrong secret", with("client_id", "confidential", "client_secret", "nope"), nil, 401, "invalid_client"},
		{"no secret", with("client_id", "confidential"), nil, 401, "invalid_client"},
		{"unknown client", with("client_id", "ghost", "client_secret", "s3cret"), nil, 401, "invalid_client"},
		{"public client", with("client_id", "public"), nil, 401, "invalid_client"},
		{"no scope", with("client_id", "confidential", "client_secret", "s3cret", "scope", ""), nil, 400, "invalid_scope"},
		{"client without mailbox", with("client_id", "no-mailbox", "client_secret", "x"), nil, 400, "unauthorized_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := token(t, p, tt.form, tt.basic...)
			if tt.code != "" {
				wantError(t, a, tt.status, tt.code)
				return
			}
			wantToken(t, p, a, alice)
			if a.str("refresh_token") != "" {
				t.Errorf("client_credentials answered a refresh token; real providers do not")
			}
			if n, ok := a.JSON["expires_in"].(float64); !ok || n != 3600 {
				t.Errorf("expires_in = %v, want 3600", a.JSON["expires_in"])
			}
		})
	}
	if got, want := p.GrantCount(GrantClientCredentials), len(tests); got != want {
		t.Errorf("GrantCount(client_credentials) = %d, want %d", got, want)
	}
	if got := p.Count(EndpointToken); got != len(tests) {
		t.Errorf("Count(token) = %d, want %d", got, len(tests))
	}
}

func TestPasswordGrant(t *testing.T) {
	p := newProvider(t)
	tests := []struct {
		name, user, password string
		ok                   bool
	}{
		{"right password", bob, bobPW, true},
		{"wrong password", bob, alicePW, false},
		{"unknown user", "eve@example.test", "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := token(t, p, url.Values{"grant_type": {GrantPassword}, "client_id": {"public"}, "username": {tt.user}, "password": {tt.password}, "scope": {scopeO365}})
			if !tt.ok {
				wantError(t, a, 400, "invalid_grant")
				return
			}
			wantToken(t, p, a, bob)
			if a.str("refresh_token") == "" {
				t.Error("password grant answered no refresh token")
			}
			if a.str("scope") != scopeO365 {
				t.Errorf("scope = %q, want %q", a.str("scope"), scopeO365)
			}
		})
	}
}

// redirectListener stands in for the proxy's local redirect server.
func redirectListener(t *testing.T) (*httptest.Server, chan url.Values) {
	got := make(chan url.Values, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Query()
		if r.URL.Query().Get("error") != "" {
			http.Error(w, "authorisation failed", http.StatusForbidden)
			return
		}
		io.WriteString(w, "Email OAuth 2.0 authentication succeeded")
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func pkcePair() (verifier, challenge string) {
	b := make([]byte, 32)
	rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

func authURL(p *Provider, clientID, redirect, state, challenge string) string {
	q := url.Values{"client_id": {clientID}, "redirect_uri": {redirect}, "scope": {scopeO365}, "response_type": {"code"},
		"access_type": {"offline"}, "login_hint": {alice}, "state": {state}}
	if challenge != "" {
		q.Set("code_challenge", challenge)
		q.Set("code_challenge_method", "S256")
	}
	return p.AuthorizeURL() + "?" + q.Encode()
}

func TestAuthorizationCode(t *testing.T) {
	p := newProvider(t)
	ctx := context.Background()
	listener, got := redirectListener(t)
	redirect := listener.URL + "/"

	t.Run("PKCE round trip", func(t *testing.T) {
		verifier, challenge := pkcePair()
		res, err := Authorize(ctx, authURL(p, "public", redirect, "st-1", challenge), alice, alicePW)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != 200 || !strings.Contains(res.Body, "succeeded") {
			t.Fatalf("redirect listener answered %d %q", res.Status, res.Body)
		}
		q := recv(t, got)
		if q.Get("state") != "st-1" || q.Get("code") == "" || q.Get("code") != res.Code {
			t.Fatalf("listener got %v, browser saw code=%q state=%q", q, res.Code, res.State)
		}
		exchange := url.Values{"grant_type": {GrantAuthorizationCode}, "client_id": {"public"}, "code": {res.Code}, "redirect_uri": {redirect}}
		wrong := cloneValues(exchange)
		wrong.Set("code_verifier", verifier+"x")
		wantError(t, token(t, p, wrong), 400, "invalid_grant")
		missing := cloneValues(exchange)
		wantError(t, token(t, p, missing), 400, "invalid_grant")
		badRedirect := cloneValues(exchange)
		badRedirect.Set("code_verifier", verifier)
		badRedirect.Set("redirect_uri", listener.URL+"/other")
		wantError(t, token(t, p, badRedirect), 400, "invalid_grant")
		exchange.Set("code_verifier", verifier)
		a := token(t, p, exchange)
		wantToken(t, p, a, alice)
		if a.str("refresh_token") == "" {
			t.Error("no refresh token from the code exchange")
		}
		wantError(t, token(t, p, exchange), 400, "invalid_grant") // a code is single-use
	})

	t.Run("without PKCE, confidential client", func(t *testing.T) {
		res, err := Authorize(ctx, authURL(p, "confidential", redirect, "", ""), bob, bobPW)
		if err != nil {
			t.Fatal(err)
		}
		recv(t, got)
		a := token(t, p, url.Values{"grant_type": {GrantAuthorizationCode}, "client_id": {"confidential"}, "client_secret": {"s3cret"}, "code": {res.Code}, "redirect_uri": {redirect}})
		wantToken(t, p, a, bob)
	})

	t.Run("code of another client", func(t *testing.T) {
		res, err := Authorize(ctx, authURL(p, "public", redirect, "s", ""), alice, alicePW)
		if err != nil {
			t.Fatal(err)
		}
		recv(t, got)
		a := token(t, p, url.Values{"grant_type": {GrantAuthorizationCode}, "client_id": {"confidential"}, "client_secret": {"s3cret"}, "code": {res.Code}, "redirect_uri": {redirect}})
		wantError(t, a, 400, "invalid_grant")
	})

	refusals := []struct {
		name  string
		setup func()
		b     Browser
	}{
		{"user declines consent", func() {}, Browser{Username: alice, Password: alicePW, Deny: true}},
		{"provider told to refuse", func() { p.RefuseAuthorizations(1) }, Browser{Username: alice, Password: alicePW}},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			res, err := tt.b.Authorize(ctx, authURL(p, "public", redirect, "st-2", ""))
			if err != nil {
				t.Fatal(err)
			}
			q := recv(t, got)
			if res.Error != "access_denied" || q.Get("error") != "access_denied" || q.Get("state") != "st-2" {
				t.Fatalf("browser saw error=%q, listener got %v; want access_denied with the state", res.Error, q)
			}
			if res.Status != http.StatusForbidden {
				t.Errorf("listener status = %d, want its 403", res.Status)
			}
		})
	}

	t.Run("wrong password stays on the form", func(t *testing.T) {
		_, err := Authorize(ctx, authURL(p, "public", redirect, "s", ""), alice, "wrong")
		if !errors.Is(err, ErrLoginRefused) {
			t.Fatalf("err = %v, want ErrLoginRefused", err)
		}
		select {
		case q := <-got:
			t.Fatalf("the listener was visited after a failed login: %v", q)
		default:
		}
	})

	t.Run("PKCE required", func(t *testing.T) {
		res, err := Authorize(ctx, authURL(p, "pkce-only", redirect, "s", ""), alice, alicePW)
		if err != nil || res.Code != "" || res.Error != "invalid_request" {
			t.Fatalf("a PKCE-only client without a challenge: %+v %v, want error=invalid_request", res, err)
		}
		if q := recv(t, got); q.Get("error") != "invalid_request" {
			t.Fatalf("listener got %v, want error=invalid_request", q)
		}
	})

	t.Run("unregistered redirect_uri is not followed", func(t *testing.T) {
		p.AddClient(Client{ID: "strict", RedirectURIs: []string{"http://127.0.0.1:1/cb"}})
		_, err := Authorize(ctx, authURL(p, "strict", redirect, "s", ""), alice, alicePW)
		if err == nil || !strings.Contains(err.Error(), "HTTP 400") {
			t.Fatalf("err = %v, want the provider's 400 page", err)
		}
	})

	t.Run("browser stays on loopback", func(t *testing.T) {
		_, err := Authorize(ctx, "https://login.example.com/authorize", alice, alicePW)
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Fatalf("err = %v, want a refusal to leave loopback", err)
		}
	})
}

func TestRefreshRevokeExpire(t *testing.T) {
	p := newProvider(t)
	first := token(t, p, url.Values{"grant_type": {GrantPassword}, "client_id": {"public"}, "username": {alice}, "password": {alicePW}, "scope": {scopeO365}})
	wantToken(t, p, first, alice)
	refresh := func(rt string) answer {
		return token(t, p, url.Values{"grant_type": {GrantRefreshToken}, "client_id": {"public"}, "refresh_token": {rt}})
	}

	p.ExpireTokens(alice)
	if _, active := introspect(t, p, first.str("access_token")); active {
		t.Fatal("an expired access token still introspects active")
	}
	second := refresh(first.str("refresh_token"))
	wantToken(t, p, second, alice)
	if second.str("refresh_token") == "" || second.str("refresh_token") == first.str("refresh_token") {
		t.Fatalf("refresh did not rotate the refresh token: %q", second.str("refresh_token"))
	}
	if second.str("scope") != scopeO365 {
		t.Errorf("refreshed scope = %q, want the original %q", second.str("scope"), scopeO365)
	}

	p.RotateRefreshTokens(false)
	third := refresh(second.str("refresh_token"))
	wantToken(t, p, third, alice)
	if third.str("refresh_token") != "" {
		t.Error("RotateRefreshTokens(false) still answered a refresh token")
	}

	wantError(t, token(t, p, url.Values{"grant_type": {GrantRefreshToken}, "client_id": {"confidential"}, "client_secret": {"s3cret"}, "refresh_token": {second.str("refresh_token")}}), 400, "invalid_grant")

	p.Revoke(alice)
	if _, active := introspect(t, p, third.str("access_token")); active {
		t.Fatal("a revoked access token still introspects active")
	}
	for _, rt := range []string{first.str("refresh_token"), second.str("refresh_token")} {
		a := refresh(rt)
		wantError(t, a, 400, "invalid_grant")
		if !strings.Contains(a.str("error_description"), "revoked") {
			t.Errorf("description %q does not say revoked", a.str("error_description"))
		}
	}
	wantError(t, refresh("never-issued"), 400, "invalid_grant")

	access, rt := p.IssueToken("public", bob, "s")
	if u, ok := p.Introspect(access); !ok || u != bob {
		t.Fatalf("IssueToken's token introspects %q %v", u, ok)
	}
	p.RevokeToken(access)
	if _, ok := p.Introspect(access); ok {
		t.Fatal("RevokeToken left the access token active")
	}
	wantToken(t, p, refresh(rt), bob)
}

func TestAccessTokenLifetime(t *testing.T) {
	p := newProvider(t)
	cc := url.Values{"grant_type": {GrantClientCredentials}, "client_id": {"confidential"}, "client_secret": {"s3cret"}, "scope": {"x"}}
	tests := []struct {
		name     string
		lifetime time.Duration
		omit     bool
		want     any
		active   bool
	}{
		{"rounded up to whole seconds", 1500 * time.Millisecond, false, float64(2), true},
		{"two minutes", 2 * time.Minute, false, float64(120), true},
		{"already expired", 0, false, float64(0), false},
		{"expires_in left out", time.Hour, true, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.SetAccessTokenLifetime(tt.lifetime)
			p.OmitExpiresIn(tt.omit)
			a := token(t, p, cc)
			if a.JSON["expires_in"] != tt.want {
				t.Errorf("expires_in = %v, want %v", a.JSON["expires_in"], tt.want)
			}
			if _, active := introspect(t, p, a.str("access_token")); active != tt.active {
				t.Errorf("active = %v, want %v", active, tt.active)
			}
		})
	}
}

func TestAnswerQuirks(t *testing.T) {
	p := newProvider(t)
	cc := url.Values{"grant_type": {GrantClientCredentials}, "client_id": {"confidential"}, "client_secret": {"s3cret"}, "scope": {"x"}}
	p.SetAnswerQuirks(AnswerQuirks{ExpiresIn: `"3599"`, OmitTokenType: true, Extra: map[string]any{"ext_expires_in": "3599", "foo": []int{1}}})
	a := token(t, p, cc)
	if a.JSON["expires_in"] != "3599" || a.JSON["ext_expires_in"] != "3599" || a.JSON["foo"] == nil {
		t.Errorf("quirky answer: %s", a.Raw)
	}
	if _, ok := a.JSON["token_type"]; ok {
		t.Errorf("token_type present: %s", a.Raw)
	}
	if _, active := introspect(t, p, a.str("access_token")); !active {
		t.Errorf("the quirky answer's token is not active")
	}
	p.SetAnswerQuirks(AnswerQuirks{})
	if a := token(t, p, cc); a.JSON["token_type"] != "Bearer" || a.JSON["expires_in"] != float64(3600) {
		t.Errorf("standard answer after clearing quirks: %s", a.Raw)
	}
}

func TestDeviceFlow(t *testing.T) {
	p := newProvider(t)
	ctx := context.Background()
	start := func() answer {
		a := post(t, ctx, p.DeviceCodeURL(), url.Values{"client_id": {"public"}, "scope": {scopeO365}})
		if a.Status != 200 {
			t.Fatalf("device code: HTTP %d %s", a.Status, a.Raw)
		}
		for _, k := range []string{"device_code", "user_code", "verification_uri", "verification_uri_complete", "message"} {
			if a.str(k) == "" {
				t.Fatalf("device answer lacks %s: %s", k, a.Raw)
			}
		}
		if a.JSON["interval"] != float64(DefaultDeviceInterval) || a.JSON["expires_in"] != float64(900) {
			t.Errorf("interval/expires_in = %v/%v", a.JSON["interval"], a.JSON["expires_in"])
		}
		return a
	}
	poll := func(dc string) answer {
		return token(t, p, url.Values{"grant_type": {GrantDeviceCode}, "client_id": {"public"}, "device_code": {dc}})
	}

	t.Run("approved in the browser", func(t *testing.T) {
		d := start()
		wantError(t, poll(d.str("device_code")), 400, "authorization_pending")
		p.SlowDownNext(1)
		wantError(t, poll(d.str("device_code")), 400, "slow_down")
		wantError(t, poll(d.str("device_code")), 400, "authorization_pending")
		if err := (Browser{Username: bob, Password: "wrong"}).ApproveDevice(ctx, d.str("verification_uri_complete"), ""); !errors.Is(err, ErrLoginRefused) {
			t.Fatalf("approving with a wrong password: %v", err)
		}
		if err := (Browser{Username: bob, Password: bobPW}).ApproveDevice(ctx, d.str("verification_uri_complete"), ""); err != nil {
			t.Fatal(err)
		}
		a := poll(d.str("device_code"))
		wantToken(t, p, a, bob)
		if a.str("refresh_token") == "" {
			t.Error("device flow answered no refresh token")
		}
		wantError(t, poll(d.str("device_code")), 400, "invalid_grant")
	})

	t.Run("approved by the test, code typed loosely", func(t *testing.T) {
		d := start()
		loose := strings.ToLower(strings.ReplaceAll(d.str("user_code"), "-", ""))
		if err := p.ApproveDevice(loose, alice); err != nil {
			t.Fatal(err)
		}
		wantToken(t, p, poll(d.str("device_code")), alice)
	})

	t.Run("denied", func(t *testing.T) {
		d := start()
		if err := p.DenyDevice(d.str("user_code")); err != nil {
			t.Fatal(err)
		}
		wantError(t, poll(d.str("device_code")), 400, "access_denied")
	})

	t.Run("unknown code", func(t *testing.T) {
		if err := p.ApproveDevice("ZZZZ-ZZZZ", alice); err == nil {
			t.Fatal("approving an unknown code succeeded")
		}
		d := start()
		if err := p.ApproveDevice(d.str("user_code"), "nobody@example.test"); err == nil {
			t.Fatal("approving as an unregistered user succeeded")
		}
		if list := p.DeviceAuthorizations(); len(list) == 0 || list[len(list)-1].UserCode != d.str("user_code") {
			t.Fatalf("DeviceAuthorizations = %+v, want the pending one last", list)
		}
	})
}

func TestFaults(t *testing.T) {
	p := newProvider(t)
	cc := url.Values{"grant_type": {GrantClientCredentials}, "client_id": {"confidential"}, "client_secret": {"s3cret"}, "scope": {"x"}}
	tests := []struct {
		name   string
		knob   func()
		status []int // answers of consecutive requests
		check  func(t *testing.T, first answer)
	}{
		{"refuse twice", func() { p.RefuseNext(2, "AADSTS50173: The provided grant has expired") }, []int{400, 400, 200}, func(t *testing.T, a answer) {
			if a.str("error") != "invalid_grant" || !strings.HasPrefix(a.str("error_description"), "AADSTS50173") {
				t.Errorf("refusal body %s", a.Raw)
			}
		}},
		{"fail with 502", func() { p.FailNext(1, 502) }, []int{502, 200}, func(t *testing.T, a answer) {
			if a.str("error") != "temporarily_unavailable" {
				t.Errorf("failure body %s", a.Raw)
			}
		}},
		{"fail with default 503", func() { p.FailNext(1, 0) }, []int{503, 200}, nil},
		{"garbage", func() { p.GarbageNext(1) }, []int{200, 200}, func(t *testing.T, a answer) {
			if a.JSON != nil || !strings.Contains(a.Raw, "<html>") {
				t.Errorf("garbage parsed as JSON: %s", a.Raw)
			}
		}},
		{"down until back up", func() { p.SetDown(503) }, []int{503, 503, 503}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.knob()
			var first answer
			for i, want := range tt.status {
				a := token(t, p, cc)
				if i == 0 {
					first = a
				}
				if a.Status != want {
					t.Fatalf("request %d: HTTP %d %s, want %d", i+1, a.Status, a.Raw, want)
				}
			}
			if tt.check != nil {
				tt.check(t, first)
			}
		})
	}
	p.SetDown(0)
	wantToken(t, p, token(t, p, cc), alice)
	reqs := p.TokenRequests()
	if reqs[0].Status != 400 || reqs[0].Error != "invalid_grant" || reqs[0].GrantType != GrantClientCredentials || reqs[0].ClientID != "confidential" {
		t.Errorf("first recorded request = %+v", reqs[0])
	}
	if reqs[0].Form.Get("client_secret") != "s3cret" {
		t.Error("the recorded form lost the client secret a test may assert on")
	}
	p.ResetCounts()
	if p.Count(EndpointToken) != 0 || p.GrantCount(GrantClientCredentials) != 0 || len(p.TokenRequests()) != 0 {
		t.Error("ResetCounts left counts behind")
	}
}

func TestStall(t *testing.T) {
	p := newProvider(t)
	cc := url.Values{"grant_type": {GrantClientCredentials}, "client_id": {"confidential"}, "client_secret": {"s3cret"}, "scope": {"x"}}
	release := p.Stall()
	done := make(chan answer, 1)
	go func() { done <- token(t, p, cc) }()
	waitFor(t, func() bool { return p.Stalled() == 1 })
	select {
	case a := <-done:
		t.Fatalf("a stalled request was answered: %d %s", a.Status, a.Raw)
	default:
	}
	if reqs := p.TokenRequests(); len(reqs) != 1 || reqs[0].Status != 0 {
		t.Fatalf("recorded %+v while stalled", reqs)
	}

	// A client that gives up frees its slot.
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.TokenURL(), strings.NewReader(cc.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		_, err := http.DefaultClient.Do(req)
		gaveUp <- err
	}()
	waitFor(t, func() bool { return p.Stalled() == 2 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v", err)
	}
	waitFor(t, func() bool { return p.Stalled() == 1 })

	release()
	release()
	a := <-done
	wantToken(t, p, a, alice)
	wantToken(t, p, token(t, p, cc), alice)
}

func TestConcurrentCounting(t *testing.T) {
	p := newProvider(t)
	cc := url.Values{"grant_type": {GrantClientCredentials}, "client_id": {"confidential"}, "client_secret": {"s3cret"}, "scope": {"x"}}
	const n = 40
	var wg sync.WaitGroup
	tokens := make(chan string, n)
	for range n {
		wg.Go(func() {
			a := post(t, context.Background(), p.TokenURL(), cc)
			tokens <- a.str("access_token")
		})
	}
	wg.Wait()
	close(tokens)
	seen := map[string]bool{}
	for tok := range tokens {
		if tok == "" || seen[tok] {
			t.Fatalf("empty or duplicate token %q", tok)
		}
		seen[tok] = true
	}
	if p.GrantCount(GrantClientCredentials) != n || p.Count(EndpointToken) != n {
		t.Fatalf("counts %d/%d, want %d", p.GrantCount(GrantClientCredentials), p.Count(EndpointToken), n)
	}
}

func TestAssertions(t *testing.T) {
	p := newProvider(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.AddClient(Client{ID: "cert-app", AssertionKey: &rsaKey.PublicKey, ServiceUser: alice})
	p.AddClient(Client{ID: "svc@project.iam.example.test", AssertionKey: &ecKey.PublicKey})

	mk := func(k crypto.Signer, iss, sub, scope string) string {
		t.Helper()
		s, err := p.SignAssertion(k, iss, sub, scope)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ca := func(assertion string) url.Values {
		return url.Values{"grant_type": {GrantClientCredentials}, "client_id": {"cert-app"}, "scope": {"https://outlook.office365.com/.default"},
			"client_assertion_type": {ClientAssertionType}, "client_assertion": {assertion}}
	}
	jb := func(assertion string) url.Values {
		return url.Values{"grant_type": {GrantJWTBearer}, "assertion": {assertion}}
	}
	tests := []struct {
		name   string
		form   url.Values
		user   string
		status int
		code   string
	}{
		{"client assertion RS256", ca(mk(rsaKey, "cert-app", "cert-app", "")), alice, 200, ""},
		{"client assertion signed by another key", ca(mk(otherKey, "cert-app", "cert-app", "")), "", 401, "invalid_client"},
		{"client assertion with sub not the client", ca(mk(rsaKey, "cert-app", bob, "")), "", 401, "invalid_client"},
		{"client assertion tampered", ca(mk(rsaKey, "cert-app", "cert-app", "") + "A"), "", 401, "invalid_client"},
		{"jwt-bearer ES256 acting as bob", jb(mk(ecKey, "svc@project.iam.example.test", bob, "https://mail.google.com/")), bob, 200, ""},
		{"jwt-bearer for an unknown user", jb(mk(ecKey, "svc@project.iam.example.test", "eve@example.test", "s")), "", 400, "invalid_grant"},
		{"jwt-bearer from an unknown issuer", jb(mk(ecKey, "who@example.test", bob, "s")), "", 400, "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := token(t, p, tt.form)
			if tt.code != "" {
				wantError(t, a, tt.status, tt.code)
				return
			}
			wantToken(t, p, a, tt.user)
		})
	}

	t.Run("audience must be this token endpoint", func(t *testing.T) {
		other := Start(t)
		other.AddClient(Client{ID: "cert-app", AssertionKey: &rsaKey.PublicKey, ServiceUser: alice})
		s, _ := other.SignAssertion(rsaKey, "cert-app", "cert-app", "")
		wantError(t, token(t, p, ca(s)), 401, "invalid_client")
	})
}

func TestIntrospectionAndTLS(t *testing.T) {
	files := testenv.NewTLS(t)
	cfg, err := files.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	p := Start(t, WithTLS(cfg))
	if !strings.HasPrefix(p.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL = %s", p.URL())
	}
	p.AddUser(alice, alicePW)
	access, _ := p.IssueToken("c", alice, "s")
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: files.ClientConfig()}}
	for _, tt := range []struct {
		name, token string
		active      bool
	}{{"issued token", access, true}, {"unknown token", "nope", false}, {"empty token", "", false}} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := hc.PostForm(p.IntrospectURL(), url.Values{"token": {tt.token}})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var ans map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
				t.Fatal(err)
			}
			if ans["active"] != tt.active {
				t.Fatalf("answer %v, want active=%v", ans, tt.active)
			}
			if tt.active && ans["username"] != alice {
				t.Fatalf("answer %v lacks the username", ans)
			}
			if !tt.active && len(ans) != 1 {
				t.Fatalf("an inactive answer says more than active=false: %v", ans)
			}
		})
	}
	if p.Count(EndpointIntrospect) != 3 {
		t.Errorf("Count(introspect) = %d, want 3", p.Count(EndpointIntrospect))
	}
	// Plain http clients cannot talk to it: it is really TLS.
	if _, err := http.Post(strings.Replace(p.IntrospectURL(), "https", "http", 1), "text/plain", nil); err == nil {
		t.Log("note: plain HTTP got an answer from the TLS port (Go answers 400 to plain HTTP on TLS)")
	}
}

func TestLoopbackOnly(t *testing.T) {
	if _, err := New(WithAddr("0.0.0.0:0")); err == nil || !strings.Contains(err.Error(), "not loopback") {
		t.Fatalf("New on 0.0.0.0: %v, want a refusal", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not met within 10s")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func recv[T any](t *testing.T, ch chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing arrived within 10s")
		panic("unreachable")
	}
}
