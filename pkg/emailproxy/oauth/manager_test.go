package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

// authenticator is proxy.Authenticator's method set; the proxy package
// imports this one, so the check lives here instead of there.
type authenticator interface {
	AccessToken(ctx context.Context, username, password string) (string, error)
}

var _ authenticator = (*Manager)(nil)

const alice = "alice@example.com"

// assertNoSecrets fails when any of the test's secrets shows up in s.
func assertNoSecrets(t *testing.T, what, s string, extra ...string) {
	t.Helper()
	for _, secret := range append([]string{secretClient, secretPassword, otherPassword}, extra...) {
		if strings.Contains(s, secret) {
			t.Errorf("%s contains the secret %q:\n%s", what, secret, s)
		}
	}
}

func TestFlows(t *testing.T) {
	tests := []struct {
		name      string
		acct      func(a *config.Account)
		global    func(g *config.Global)
		opts      []harnessOpt
		auth      bool // wire a fakeAuthorizer
		grant     string
		wantForm  map[string]string
		noForm    []string
		wantErr   error
		wantToken string
	}{
		{
			name:  "client_credentials",
			grant: GrantClientCredentials,
			wantForm: map[string]string{"client_id": "cid-1", "client_secret": secretClient,
				"grant_type": "client_credentials", "scope": "https://outlook.office365.com/.default"},
			noForm:    []string{"username", "password", "refresh_token"},
			wantToken: "AT-client_credentials-1",
		},
		{
			name:     "client_credentials without a secret sends none",
			acct:     func(a *config.Account) { a.ClientSecret = "" },
			grant:    GrantClientCredentials,
			wantForm: map[string]string{"client_id": "cid-1", "grant_type": "client_credentials"},
			noForm:   []string{"client_secret"},
		},
		{
			name:     "client_credentials with the login password as secret",
			acct:     func(a *config.Account) { a.ClientSecret = "" },
			global:   func(g *config.Global) { g.UseLoginPasswordAsClientCredentialsSecret = true },
			grant:    GrantClientCredentials,
			wantForm: map[string]string{"client_secret": secretPassword},
		},
		{
			name:     "the file's client_secret wins over the login password",
			global:   func(g *config.Global) { g.UseLoginPasswordAsClientCredentialsSecret = true },
			grant:    GrantClientCredentials,
			wantForm: map[string]string{"client_secret": secretClient},
		},
		{
			name:  "client_credentials with a certificate",
			acct:  func(a *config.Account) { a.JWTCertificatePath, a.JWTKeyPath = "/c.pem", "/k.pem" },
			opts:  []harnessOpt{func(o *Options) { o.Assertions = fakeSigner{} }},
			grant: GrantClientCredentials,
			wantForm: map[string]string{"client_assertion_type": ClientAssertionTypeJWT,
				"client_assertion": "client-jwt-for-cid-1", "client_id": "cid-1"},
			noForm: []string{"client_secret"},
		},
		{
			name:    "a certificate without a signer",
			acct:    func(a *config.Account) { a.JWTCertificatePath, a.JWTKeyPath = "/c.pem", "/k.pem" },
			wantErr: ErrNoAssertionSigner,
		},
		{
			name: "password",
			acct: func(a *config.Account) {
				a.Flow, a.Scope, a.Resource = config.FlowPassword, "", "https://outlook.office365.com"
			},
			grant: GrantPassword,
			wantForm: map[string]string{"grant_type": "password", "username": alice, "password": secretPassword,
				"resource": "https://outlook.office365.com", "client_secret": secretClient},
			noForm:    []string{"scope"},
			wantToken: "AT-password-1",
		},
		{
			name:      "service_account",
			acct:      func(a *config.Account) { a.Flow = config.FlowServiceAccount },
			opts:      []harnessOpt{func(o *Options) { o.Assertions = fakeSigner{} }},
			grant:     GrantJWTBearer,
			wantForm:  map[string]string{"grant_type": GrantJWTBearer, "assertion": "sa-jwt-for-" + alice},
			noForm:    []string{"client_secret", "password"},
			wantToken: "AT-" + GrantJWTBearer + "-1",
		},
		{
			name:    "service_account without a signer",
			acct:    func(a *config.Account) { a.Flow = config.FlowServiceAccount },
			wantErr: ErrNoAssertionSigner,
		},
		{
			name:      "authorization_code",
			acct:      func(a *config.Account) { a.Flow, a.PermissionURL = config.FlowAuthorizationCode, "https://x/authorize" },
			auth:      true,
			wantToken: "AT-interactive-1",
		},
		{
			name:      "client_credentials with a permission_url is authorization_code",
			acct:      func(a *config.Account) { a.PermissionURL = "https://x/authorize" },
			auth:      true,
			wantToken: "AT-interactive-1",
		},
		{
			name:    "interactive without an Authorizer",
			acct:    func(a *config.Account) { a.Flow = config.FlowDevice },
			wantErr: ErrNeedsAuthorization,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			acct := ccAccount(alice)
			if tc.acct != nil {
				tc.acct(&acct)
			}
			g := defaultGlobal()
			if tc.global != nil {
				tc.global(&g)
			}
			var fa *fakeAuthorizer
			opts := tc.opts
			if tc.auth {
				fa = &fakeAuthorizer{}
				opts = append(opts, func(o *Options) { o.Interactive = fa })
			}
			h := newHarness(t, g, []config.Account{acct}, opts...)
			ctx := context.Background()
			tok, err := h.m.AccessToken(ctx, alice, secretPassword)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), alice) {
					t.Errorf("error %q does not name the account", err)
				}
				assertNoSecrets(t, "error", err.Error())
				if h.prov.total() != 0 {
					t.Errorf("%d token requests, want none", h.prov.total())
				}
				if st := h.m.Status().Accounts[alice]; st.State != StateFailing || st.Reason == "" {
					t.Errorf("status = %+v, want failing with a reason", st)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantToken != "" && tok != tc.wantToken {
				t.Errorf("token = %q, want %q", tok, tc.wantToken)
			}
			if tc.grant != "" {
				if n := h.prov.count(tc.grant); n != 1 {
					t.Fatalf("%s requests = %d, want 1", tc.grant, n)
				}
				form := h.prov.lastForm(tc.grant)
				for k, v := range tc.wantForm {
					if got := form.Get(k); got != v {
						t.Errorf("form %s = %q, want %q", k, got, v)
					}
				}
				for _, k := range tc.noForm {
					if form.Has(k) {
						t.Errorf("form has %s, want none", k)
					}
				}
			}
			if fa != nil {
				if fa.calls.Load() != 1 {
					t.Errorf("Authorize calls = %d, want 1", fa.calls.Load())
				}
				if got := fa.lastAcct.Load().(config.Account).ClientSecret; got != secretClient {
					t.Errorf("Authorize got client secret %q, want the effective one", got)
				}
			}
			// Stored under the login password, and used from then on.
			e, ok := h.store.entry(alice)
			if !ok || e.password != secretPassword || e.rec.AccessToken != tok {
				t.Fatalf("store entry = %+v, %v; want the token under the login password", e, ok)
			}
			if want := h.clock.Now().Add(time.Hour); !e.rec.AccessTokenExpiry.Equal(want) {
				t.Errorf("expiry = %v, want %v", e.rec.AccessTokenExpiry, want)
			}
			before := h.prov.total()
			tok2, err := h.m.AccessToken(ctx, alice, secretPassword)
			if err != nil || tok2 != tok {
				t.Fatalf("second login = %q, %v; want the same token", tok2, err)
			}
			if h.prov.total() != before || (fa != nil && fa.calls.Load() != 1) {
				t.Error("second login made a new request")
			}
			if st := h.m.Status().Accounts[alice]; st.State != StateAuthorised || !st.TokenExpiry.Equal(e.rec.AccessTokenExpiry) {
				t.Errorf("status = %+v, want authorised until the token expiry", st)
			}
			assertNoSecrets(t, "log", h.logs.String(), tok)
		})
	}
}

func TestRefreshThreshold(t *testing.T) {
	tests := []struct {
		name        string
		left        time.Duration
		wantRefresh bool
	}{
		{"601 s left: used as is", 601 * time.Second, false},
		{"600 s left: used as is", 600 * time.Second, false},
		{"599 s left: refreshed", 599 * time.Second, true},
		{"expired: refreshed", -time.Hour, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := storedHarness(t, "AT-stored", tc.left)
			// No refresh_token and no expires_in in the answer.
			h.prov.script(GrantRefreshToken, tokenAnswer("AT-refreshed", "", 0))
			tok, err := h.m.AccessToken(context.Background(), alice, secretPassword)
			if err != nil {
				t.Fatal(err)
			}
			if got := h.prov.count(GrantRefreshToken); got != map[bool]int{true: 1, false: 0}[tc.wantRefresh] {
				t.Fatalf("refresh requests = %d", got)
			}
			if !tc.wantRefresh {
				if tok != "AT-stored" {
					t.Errorf("token = %q, want the stored one", tok)
				}
				return
			}
			if tok != "AT-refreshed" {
				t.Errorf("token = %q, want the refreshed one", tok)
			}
			f := h.prov.lastForm(GrantRefreshToken)
			want := map[string]string{"client_id": "cid-1", "client_secret": secretClient, "refresh_token": "RT-stored", "grant_type": "refresh_token"}
			for k, v := range want {
				if f.Get(k) != v {
					t.Errorf("refresh form %s = %q, want %q", k, f.Get(k), v)
				}
			}
			e, _ := h.store.entry(alice)
			if e.rec.RefreshToken != "RT-stored" {
				t.Errorf("refresh token = %q, want the old one kept", e.rec.RefreshToken)
			}
			if want := h.clock.Now().Add(3600 * time.Second); !e.rec.AccessTokenExpiry.Equal(want) {
				t.Errorf("expiry = %v, want now + 3600 s", e.rec.AccessTokenExpiry)
			}
		})
	}
}

func TestRefreshRefused(t *testing.T) {
	bad := jsonAnswer(http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "AADSTS70008: expired"})
	tests := []struct {
		name          string
		noAccessToken bool
		interactive   bool
		refresh       []answer
		wantRefreshes int
		wantCC        int
		wantDeletes   int64
		wantErr       error
		wantToken     string
	}{
		{name: "400 then success", refresh: []answer{bad, tokenAnswer("AT-2nd", "RT-2nd", 3600)},
			wantRefreshes: 2, wantToken: "AT-2nd"},
		{name: "400 twice: tokens dropped, flow runs", refresh: []answer{bad, bad},
			wantRefreshes: 2, wantCC: 1, wantDeletes: 1, wantToken: "AT-client_credentials-1"},
		{name: "no access token: one 400 is the second strike", noAccessToken: true, refresh: []answer{bad},
			wantRefreshes: 1, wantCC: 1, wantDeletes: 1, wantToken: "AT-client_credentials-1"},
		{name: "400 twice on an interactive account needs a new authorisation", interactive: true, refresh: []answer{bad, bad},
			wantRefreshes: 2, wantDeletes: 1, wantErr: ErrNeedsAuthorization},
		{name: "401 is a refusal, not a re-authorisation",
			refresh:       []answer{jsonAnswer(http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "bad secret"})},
			wantRefreshes: 1, wantErr: ErrProviderRefused},
		{name: "503 is unavailability", refresh: []answer{{status: 503, body: "down"}},
			wantRefreshes: 1, wantErr: ErrProviderUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			acct := ccAccount(alice)
			if tc.interactive {
				acct.Flow = config.FlowDevice
			}
			h := newHarness(t, defaultGlobal(), []config.Account{acct})
			rec := tokens.Record{AccessToken: "AT-old", AccessTokenExpiry: h.clock.Now().Add(time.Minute), RefreshToken: "RT-old"}
			if tc.noAccessToken {
				rec.AccessToken, rec.AccessTokenExpiry = "", time.Time{}
			}
			h.store.set(alice, secretPassword, rec)
			h.prov.script(GrantRefreshToken, tc.refresh...)
			tok, err := h.m.AccessToken(context.Background(), alice, secretPassword)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if tok != tc.wantToken {
				t.Errorf("token = %q, want %q", tok, tc.wantToken)
			}
			if got := h.prov.count(GrantRefreshToken); got != tc.wantRefreshes {
				t.Errorf("refresh requests = %d, want %d", got, tc.wantRefreshes)
			}
			if got := h.prov.count(GrantClientCredentials); got != tc.wantCC {
				t.Errorf("client_credentials requests = %d, want %d", got, tc.wantCC)
			}
			if got := h.store.deletes.Load(); got != tc.wantDeletes {
				t.Errorf("store deletes = %d, want %d", got, tc.wantDeletes)
			}
			e, ok := h.store.entry(alice)
			switch {
			case tc.wantDeletes > 0 && tc.wantErr != nil:
				if ok {
					t.Errorf("refused tokens still stored: %+v", e.rec)
				}
			case tc.wantDeletes > 0:
				if e.rec.RefreshToken == "RT-old" {
					t.Error("the refused refresh token is still stored")
				}
			case tc.wantErr != nil:
				if !ok || e.rec.RefreshToken != "RT-old" {
					t.Error("a refusal that is not HTTP 400 dropped the stored tokens")
				}
			}
		})
	}
}

func TestWrongPassword(t *testing.T) {
	tests := []struct {
		name         string
		flow         config.Flow
		deleteTokens bool
		loginSecret  bool // client_credentials with the login password as its secret
		passwordAns  []answer
		ccAns        []answer
		wantErr      error
		wantRequests int
		// after: which password opens the store
		wantOwner string
	}{
		{name: "client_credentials: refused even with delete on", flow: config.FlowClientCredentials, deleteTokens: true,
			wantErr: ErrBadPassword, wantOwner: secretPassword},
		{name: "client_credentials, login password as secret, delete on: the provider accepts the new secret",
			flow: config.FlowClientCredentials, loginSecret: true, deleteTokens: true,
			wantRequests: 1, wantOwner: otherPassword},
		{name: "client_credentials, login password as secret, delete on: the provider refuses it",
			flow: config.FlowClientCredentials, loginSecret: true, deleteTokens: true,
			ccAns:        []answer{jsonAnswer(401, map[string]string{"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})},
			wantErr:      ErrProviderRefused,
			wantRequests: 1, wantOwner: secretPassword},
		{name: "client_credentials, login password as secret, delete off: refused",
			flow: config.FlowClientCredentials, loginSecret: true,
			wantErr: ErrBadPassword, wantOwner: secretPassword},
		{name: "service_account: refused even with delete on", flow: config.FlowServiceAccount, deleteTokens: true,
			wantErr: ErrBadPassword, wantOwner: secretPassword},
		{name: "password flow, delete off: refused", flow: config.FlowPassword,
			wantErr: ErrBadPassword, wantOwner: secretPassword},
		{name: "password flow, delete on: the provider accepts the new password", flow: config.FlowPassword, deleteTokens: true,
			wantRequests: 1, wantOwner: otherPassword},
		{name: "password flow, delete on: the provider refuses, old tokens kept", flow: config.FlowPassword, deleteTokens: true,
			passwordAns:  []answer{jsonAnswer(400, map[string]string{"error": "invalid_grant", "error_description": "AADSTS50126: Error validating credentials"})},
			wantErr:      ErrProviderRefused,
			wantRequests: 1, wantOwner: secretPassword},
		{name: "device, delete on: a new authorisation", flow: config.FlowDevice, deleteTokens: true,
			wantOwner: otherPassword},
		{name: "device, delete off: refused", flow: config.FlowDevice,
			wantErr: ErrBadPassword, wantOwner: secretPassword},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			acct := ccAccount(alice)
			acct.Flow = tc.flow
			g := config.Global{DeleteAccountTokenOnPasswordError: tc.deleteTokens}
			if tc.loginSecret {
				acct.ClientSecret = ""
				g.UseLoginPasswordAsClientCredentialsSecret = true
			}
			fa := &fakeAuthorizer{}
			h := newHarness(t, g, []config.Account{acct},
				func(o *Options) { o.Interactive = fa; o.Assertions = fakeSigner{} })
			h.store.set(alice, secretPassword, tokens.Record{AccessToken: "AT-good", AccessTokenExpiry: h.clock.Now().Add(time.Hour), RefreshToken: "RT-good"})
			h.prov.script(GrantPassword, tc.passwordAns...)
			h.prov.script(GrantClientCredentials, tc.ccAns...)
			ctx := context.Background()
			// The right password first, so the memory cache holds its token.
			if tok, err := h.m.AccessToken(ctx, alice, secretPassword); err != nil || tok != "AT-good" {
				t.Fatalf("right password: %q, %v", tok, err)
			}
			tok, err := h.m.AccessToken(ctx, alice, otherPassword)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if tok != "" {
					t.Errorf("a failed login returned a token")
				}
				if tc.wantErr == ErrBadPassword {
					if want := "Login failed - the password for account " + alice + " is incorrect"; err.Error() != want {
						t.Errorf("message = %q, want %q", err, want)
					}
				}
				assertNoSecrets(t, "error", err.Error())
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if tok == "AT-good" {
					t.Fatal("a different password got the other password's token")
				}
				if tc.loginSecret {
					if f := h.prov.lastForm(GrantClientCredentials); f.Get("client_secret") != otherPassword {
						t.Errorf("client_secret = %q, want the new login password", f.Get("client_secret"))
					}
				}
			}
			if got := h.prov.total(); got != tc.wantRequests {
				t.Errorf("token requests = %d, want %d", got, tc.wantRequests)
			}
			if e, _ := h.store.entry(alice); e.password != tc.wantOwner {
				t.Errorf("store now opens with %q, want %q", e.password, tc.wantOwner)
			}
			// Whatever happened, the old password now gets exactly what the
			// store says: its cached token must not outlive a replacement.
			tok, err = h.m.AccessToken(ctx, alice, secretPassword)
			if tc.wantOwner == secretPassword {
				if err != nil || tok != "AT-good" {
					t.Errorf("old password afterwards: %q, %v; want the old token", tok, err)
				}
			} else if tc.deleteTokens && err == nil && tok == "AT-good" {
				t.Error("the replaced tokens are still served to the old password")
			}
			assertNoSecrets(t, "log", h.logs.String())
		})
	}
}

func TestCachedTokenCostsNoStoreRead(t *testing.T) {
	h := newHarness(t, defaultGlobal(), []config.Account{ccAccount(alice)})
	ctx := context.Background()
	for range 10 {
		if _, err := h.m.AccessToken(ctx, alice, secretPassword); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.store.gets.Load(); got != 1 {
		t.Errorf("store reads = %d, want 1 (the rest from memory)", got)
	}
	// A wrong password is never answered from memory.
	if _, err := h.m.AccessToken(ctx, alice, otherPassword); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if got := h.store.gets.Load(); got != 2 {
		t.Errorf("store reads = %d, want 2", got)
	}
	// Inside the margin, memory no longer vouches for it.
	h.clock.Advance(3600*time.Second - RefreshMargin + time.Second)
	if _, err := h.m.AccessToken(ctx, alice, secretPassword); err != nil {
		t.Fatal(err)
	}
	if got := h.prov.count(GrantClientCredentials); got != 2 {
		t.Errorf("client_credentials requests = %d, want 2 (a renewal)", got)
	}
}

func TestConcurrentLoginsOneRequest(t *testing.T) {
	for _, flow := range []config.Flow{config.FlowClientCredentials, config.FlowPassword} {
		t.Run(string(flow), func(t *testing.T) {
			acct := ccAccount(alice)
			acct.Flow = flow
			h := newHarness(t, defaultGlobal(), []config.Account{acct})
			h.store.getDelay = 20 * time.Millisecond // a key derivation
			hold := make(chan struct{})
			h.prov.hold = hold
			const n = 50
			var started, done sync.WaitGroup
			toks := make([]string, n)
			errs := make([]error, n)
			for i := range n {
				started.Add(1)
				done.Add(1)
				go func() {
					defer done.Done()
					started.Done()
					toks[i], errs[i] = h.m.AccessToken(context.Background(), alice, secretPassword)
				}()
			}
			started.Wait()
			<-h.prov.arrived
			time.Sleep(50 * time.Millisecond) // let the stragglers queue up behind the request
			close(hold)
			done.Wait()
			for i := range n {
				if errs[i] != nil || toks[i] == "" || toks[i] != toks[0] {
					t.Fatalf("login %d: %q, %v (first got %q)", i, toks[i], errs[i], toks[0])
				}
			}
			if got := h.prov.total(); got != 1 {
				t.Errorf("token requests = %d, want 1", got)
			}
			if got := h.store.gets.Load(); got != 1 {
				t.Errorf("store reads (key derivations) = %d, want 1", got)
			}
		})
	}
}

func TestWrongPasswordAmongConcurrentLogins(t *testing.T) {
	h := newHarness(t, defaultGlobal(), []config.Account{ccAccount(alice)})
	h.store.getDelay = 5 * time.Millisecond
	// An expiring token, so the right logins must refresh while the wrong
	// one competes for the account.
	h.store.set(alice, secretPassword, tokens.Record{AccessToken: "AT-old", AccessTokenExpiry: h.clock.Now().Add(time.Minute), RefreshToken: "RT-old"})
	hold := make(chan struct{})
	h.prov.hold = hold
	const n = 30
	var wg sync.WaitGroup
	toks := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pw := secretPassword
			if i == n/2 {
				pw = otherPassword
			}
			toks[i], errs[i] = h.m.AccessToken(context.Background(), alice, pw)
		}()
	}
	<-h.prov.arrived
	time.Sleep(30 * time.Millisecond)
	close(hold)
	wg.Wait()
	for i := range n {
		if i == n/2 {
			if !errors.Is(errs[i], ErrBadPassword) || toks[i] != "" {
				t.Errorf("wrong password: %q, %v; want ErrBadPassword", toks[i], errs[i])
			}
			continue
		}
		if errs[i] != nil || toks[i] != "AT-refresh_token-1" {
			t.Errorf("login %d: %q, %v", i, toks[i], errs[i])
		}
	}
	if got := h.prov.total(); got != 1 {
		t.Errorf("token requests = %d, want 1", got)
	}
}

func TestProviderFailures(t *testing.T) {
	down := newProvider(t)
	downURL := down.url()
	down.srv.Close()
	tests := []struct {
		name     string
		tokenURL string
		ans      answer
		wantErr  error
		wantText []string
		wantLog  []string
		notText  []string
	}{
		{name: "unreachable", tokenURL: downURL + "?tenant_secret=QUERY-SECRET", wantErr: ErrProviderUnavailable,
			wantText: []string{"Login failed for account " + alice, "token endpoint unavailable", "check the network"}},
		{name: "5xx", ans: answer{status: 502, body: "<html>bad gateway</html>", contentType: "text/html"}, wantErr: ErrProviderUnavailable,
			wantText: []string{"HTTP 502"}},
		{name: "HTML instead of JSON", ans: answer{status: 200, body: "<html>login</html>", contentType: "text/html"},
			wantErr: ErrProviderUnavailable, wantText: []string{"not JSON"}},
		{name: "malformed JSON", ans: answer{status: 200, body: `{"access_token": `, contentType: "application/json"},
			wantErr: ErrProviderUnavailable, wantText: []string{"malformed JSON"}},
		{name: "no access token", ans: jsonAnswer(200, map[string]string{"token_type": "Bearer"}),
			wantErr: ErrProviderRefused, wantText: []string{"without an access_token"}},
		{name: "refused with a description", wantErr: ErrProviderRefused,
			ans: jsonAnswer(401, map[string]string{"error": "invalid_client",
				"error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1234\r\nCorrelation ID: 5678"}),
			// A known error: the reply has the catalogue's explanation and
			// fix, the log keeps the provider's own words.
			wantText: []string{"refused the request", "invalid_client", "AADSTS7000215: The client secret is wrong", "Fix: "},
			wantLog:  []string{"AADSTS7000215: Invalid client secret provided."},
			notText:  []string{"Trace ID"}},
		{name: "refused with a description the catalogue does not know", wantErr: ErrProviderRefused,
			ans:      jsonAnswer(400, map[string]string{"error": "invalid_request", "error_description": "AADSTS999999: Something new."}),
			wantText: []string{"refused the request", "invalid_request", "AADSTS999999: Something new."},
			notText:  []string{"Fix: "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			acct := ccAccount(alice)
			acct.TokenURL = tc.tokenURL
			h := newHarness(t, defaultGlobal(), []config.Account{acct})
			if tc.ans.status != 0 {
				h.prov.script(GrantClientCredentials, tc.ans)
			}
			_, err := h.m.AccessToken(context.Background(), alice, secretPassword)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			msg := err.Error()
			for _, s := range tc.wantText {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q lacks %q", msg, s)
				}
			}
			for _, s := range append(tc.notText, "QUERY-SECRET", "\n", "\r") {
				if strings.Contains(msg, s) {
					t.Errorf("message %q contains %q", msg, s)
				}
			}
			for _, s := range tc.wantLog {
				if !strings.Contains(h.logs.String(), s) {
					t.Errorf("log lacks %q:\n%s", s, h.logs.String())
				}
			}
			assertNoSecrets(t, "error", msg)
			assertNoSecrets(t, "log", h.logs.String(), "QUERY-SECRET")
			if !strings.Contains(h.logs.String(), `"message_id":"6e0d81949bde4ac4983993668f0394af"`) {
				t.Errorf("no AuthFailed event in the log:\n%s", h.logs.String())
			}
			if st := h.m.Status().Accounts[alice]; st.State != StateFailing || st.Reason == "" {
				t.Errorf("status = %+v, want failing", st)
			}
			if _, ok := h.store.entry(alice); ok {
				t.Error("a failed request stored something")
			}
		})
	}
}

func TestUnknownAccount(t *testing.T) {
	h := newHarness(t, defaultGlobal(), []config.Account{ccAccount(alice)})
	_, err := h.m.AccessToken(context.Background(), "mallory@example.com\r\nA1 OK", secretPassword)
	if !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("err = %v", err)
	}
	msg := err.Error()
	for _, s := range []string{"mallory@example.com", "register", "allow_catch_all_accounts"} {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("message %q carries the client's line break", msg)
	}
}

func TestReloadIsPickedUp(t *testing.T) {
	acct := ccAccount(alice)
	h := newHarness(t, defaultGlobal(), []config.Account{acct})
	acct.TokenURL = h.prov.url()
	ctx := context.Background()
	if _, err := h.m.AccessToken(ctx, alice, secretPassword); err != nil {
		t.Fatal(err)
	}
	// The account disappears from the file: even its cached token is refused.
	h.src.replace(defaultGlobal())
	if _, err := h.m.AccessToken(ctx, alice, secretPassword); !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("after removal: %v, want ErrUnknownAccount", err)
	}
	// It comes back with a new client: the next request uses it.
	acct.ClientID, acct.ClientSecret = "cid-2", "CLIENT-SECRET-2"
	h.src.replace(defaultGlobal(), acct)
	h.clock.Advance(time.Hour)
	if _, err := h.m.AccessToken(ctx, alice, secretPassword); err != nil {
		t.Fatal(err)
	}
	if f := h.prov.lastForm(GrantClientCredentials); f.Get("client_id") != "cid-2" || f.Get("client_secret") != "CLIENT-SECRET-2" {
		t.Errorf("after reload the request used client %q", f.Get("client_id"))
	}
	// A global flag flips too: use_login_password_as_client_credentials_secret.
	acct.ClientSecret = ""
	h.src.replace(config.Global{UseLoginPasswordAsClientCredentialsSecret: true}, acct)
	h.clock.Advance(time.Hour)
	if _, err := h.m.AccessToken(ctx, alice, secretPassword); err != nil {
		t.Fatal(err)
	}
	if f := h.prov.lastForm(GrantClientCredentials); f.Get("client_secret") != secretPassword {
		t.Error("the reloaded global was not applied")
	}
}

func TestConfigSourceReadsTheCurrentFile(t *testing.T) {
	parse := func(text string) *config.Config {
		c, err := config.Parse([]byte(text), "emailproxy.config")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var mu sync.Mutex
	cur := parse("[emailproxy]\nallow_catch_all_accounts = False\n[" + alice + "]\ntoken_url = https://a/token\noauth2_flow = client_credentials\n")
	src := ConfigSource(func() *config.Config { mu.Lock(); defer mu.Unlock(); return cur })
	if a, ok := src.Account(alice); !ok || a.TokenURL != "https://a/token" {
		t.Fatalf("Account = %+v, %v", a, ok)
	}
	if _, ok := src.Account("bob@example.com"); ok {
		t.Fatal("bob resolved without catch-all")
	}
	mu.Lock()
	cur = parse("[emailproxy]\nallow_catch_all_accounts = True\n[@]\ntoken_url = https://b/token\n")
	mu.Unlock()
	if a, ok := src.Account("bob@example.com"); !ok || a.TokenURL != "https://b/token" || a.Section != "@" {
		t.Fatalf("after reload Account = %+v, %v", a, ok)
	}
	if !src.Global().AllowCatchAllAccounts {
		t.Error("Global did not follow the reload")
	}
	if !ConfigSource(func() *config.Config { return nil }).Global().DeleteAccountTokenOnPasswordError {
		t.Error("no config: the spec's default delete_account_token_on_password_error = True")
	}
}

func TestEncryptClientSecretOnFirstUse(t *testing.T) {
	acct := codeAccount(alice)
	var hooked []config.Account
	fa := &fakeAuthorizer{}
	g := config.Global{DeleteAccountTokenOnPasswordError: true, EncryptClientSecretOnFirstUse: true}
	h := newHarness(t, g, []config.Account{acct}, func(o *Options) {
		o.Interactive = fa
		o.OnClientSecretEncrypted = func(ctx context.Context, a config.Account) error { hooked = append(hooked, a); return nil }
	})
	acct.TokenURL = h.prov.url()
	ctx := context.Background()
	if _, err := h.m.AccessToken(ctx, alice, secretPassword); err != nil {
		t.Fatal(err)
	}
	e, _ := h.store.entry(alice)
	if e.rec.ClientSecret != secretClient {
		t.Fatalf("stored client secret = %q, want the file's", e.rec.ClientSecret)
	}
	if len(hooked) != 1 || hooked[0].Name != alice || hooked[0].Section != alice {
		t.Fatalf("hook calls = %+v", hooked)
	}
	// The hook's rewrite: client_secret gone from the file.
	acct.ClientSecret = ""
	h.src.replace(g, acct)
	h.clock.Advance(time.Hour)
	if _, err := h.m.AccessToken(ctx, alice, secretPassword); err != nil {
		t.Fatal(err)
	}
	if f := h.prov.lastForm(GrantRefreshToken); f.Get("client_secret") != secretClient {
		t.Errorf("refresh sent client_secret %q, want the stored one", f.Get("client_secret"))
	}
	if len(hooked) != 1 {
		t.Errorf("hook called again: %d", len(hooked))
	}
}

func TestInteractiveWaitAndStatus(t *testing.T) {
	acct := codeAccount(alice)
	fa := &fakeAuthorizer{release: make(chan struct{})}
	h := newHarness(t, defaultGlobal(), []config.Account{acct}, func(o *Options) { o.Interactive = fa })
	fa.reporter = h.m

	// The first client gives up before anyone authorises.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := h.m.AccessToken(ctx, alice, secretPassword)
	if !errors.Is(err, ErrNeedsAuthorization) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrNeedsAuthorization and the deadline", err)
	}
	if !strings.Contains(err.Error(), "logs --auth-url") {
		t.Errorf("message %q does not say where the URL is", err)
	}
	st := h.m.Status().Accounts[alice]
	if st.State != StateWaiting || !strings.HasPrefix(st.AuthURL, "https://login.example.test/authorize") {
		t.Fatalf("status = %+v, want waiting with the URL", st)
	}
	// A second client joins the same pending authorisation; the person
	// completes it; both see the token, and Authorize ran once.
	res := make(chan error, 1)
	go func() {
		_, err := h.m.AccessToken(context.Background(), alice, secretPassword)
		res <- err
	}()
	time.Sleep(20 * time.Millisecond)
	close(fa.release)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if fa.calls.Load() != 1 {
		t.Errorf("Authorize calls = %d, want 1", fa.calls.Load())
	}
	if st := h.m.Status().Accounts[alice]; st.State != StateAuthorised || st.AuthURL != "" {
		t.Errorf("status = %+v, want authorised without the URL", st)
	}
}

func TestInteractiveFailure(t *testing.T) {
	acct := ccAccount(alice)
	acct.Flow = config.FlowDevice
	fa := &fakeAuthorizer{err: fmt.Errorf("%w: nobody completed the device login within 10m0s", ErrNeedsAuthorization)}
	h := newHarness(t, defaultGlobal(), []config.Account{acct}, func(o *Options) { o.Interactive = fa })
	_, err := h.m.AccessToken(context.Background(), alice, secretPassword)
	if !errors.Is(err, ErrNeedsAuthorization) || !strings.Contains(err.Error(), "nobody completed") || !strings.Contains(err.Error(), alice) {
		t.Fatalf("err = %v", err)
	}
	if st := h.m.Status().Accounts[alice]; st.State != StateFailing || !strings.Contains(st.Reason, "nobody completed") {
		t.Errorf("status = %+v", st)
	}
	if _, ok := h.store.entry(alice); ok {
		t.Error("a failed authorisation stored tokens")
	}
	// The next login asks again rather than remembering the failure.
	fa.err = nil
	if _, err := h.m.AccessToken(context.Background(), alice, secretPassword); err != nil {
		t.Fatal(err)
	}
	if fa.calls.Load() != 2 {
		t.Errorf("Authorize calls = %d, want 2", fa.calls.Load())
	}
}

// A client that gives up does not cancel the request others (and the next
// login) will use.
func TestAbandonedLoginDoesNotCancelTheFlight(t *testing.T) {
	h := newHarness(t, defaultGlobal(), []config.Account{ccAccount(alice)})
	hold := make(chan struct{})
	h.prov.hold = hold
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := h.m.AccessToken(ctx, alice, secretPassword)
	if !errors.Is(err, ErrProviderUnavailable) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), alice) {
		t.Fatalf("err = %v", err)
	}
	res := make(chan string, 1)
	go func() {
		tok, _ := h.m.AccessToken(context.Background(), alice, secretPassword)
		res <- tok
	}()
	close(hold)
	if tok := <-res; tok != "AT-client_credentials-1" {
		t.Errorf("token = %q, want the abandoned request's", tok)
	}
	if got := h.prov.total(); got != 1 {
		t.Errorf("token requests = %d, want 1", got)
	}
}
