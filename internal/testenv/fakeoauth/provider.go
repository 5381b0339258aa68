// Package fakeoauth is an OAuth 2.0 provider for tests: a real HTTP server on
// loopback with the endpoints Office 365 and Google have (authorise with a
// login form, token for every grant the email proxy uses, device
// authorisation, and RFC 7662 introspection for Dovecot), plus knobs that
// make it fail the way real providers do, and counters so a test can assert
// exactly how many requests the code under test made.
//
// Everything is in memory and goroutine-safe. Tokens are random opaque
// strings; the provider remembers which user, client and scope each belongs
// to, so Dovecot's introspection answers with the right username.
//
// Endpoints, relative to URL():
//
//	GET/POST /authorize   login form; POST issues a code and redirects (302)
//	POST     /token       authorization_code (PKCE S256/plain, redirect_uri
//	                      checked), refresh_token, client_credentials,
//	                      password, device_code, jwt-bearer; client auth by
//	                      client_secret (form or HTTP Basic) or
//	                      client_assertion (RS256/ES256 JWT)
//	POST     /devicecode  device authorisation (RFC 8628)
//	GET/POST /device      the verification page a user approves a code at
//	POST     /introspect  RFC 7662: form token -> {"active":...,"username":...}
package fakeoauth

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Endpoint paths, also the keys of Count.
const (
	EndpointAuthorize  = "/authorize"
	EndpointToken      = "/token"
	EndpointDeviceCode = "/devicecode"
	EndpointDevice     = "/device"
	EndpointIntrospect = "/introspect"
)

// Grant types, the keys of GrantCount.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
	GrantJWTBearer         = "urn:ietf:params:oauth:grant-type:jwt-bearer"

	// ClientAssertionType is the client_assertion_type of certificate
	// (JWT) client authentication.
	ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// Defaults a new Provider starts with.
const (
	DefaultAccessTokenLifetime = time.Hour
	DefaultCodeLifetime        = 10 * time.Minute
	DefaultDeviceCodeLifetime  = 15 * time.Minute
	DefaultDeviceInterval      = 1 // seconds; real providers say 5, tests want speed
)

// Client is a registered OAuth 2.0 client (an app registration).
type Client struct {
	ID string
	// Secret authenticates the client; empty makes it a public client that
	// must not send one.
	Secret string
	// RedirectURIs lists the accepted redirect_uri values; empty accepts any
	// http URL on a loopback host (127.0.0.1, ::1, localhost), as Microsoft
	// does for native apps.
	RedirectURIs []string
	// ServiceUser is the user that app-only tokens (client_credentials,
	// with a secret or a client_assertion) act as, so introspection can
	// name a mailbox. Empty refuses client_credentials with
	// unauthorized_client.
	ServiceUser string
	// AssertionKey verifies client_assertion and jwt-bearer assertions
	// (*rsa.PublicKey for RS256, *ecdsa.PublicKey for ES256).
	AssertionKey crypto.PublicKey
	// RequirePKCE refuses authorisation requests without a code_challenge.
	RequirePKCE bool
}

// TokenRequest is one request the token endpoint received, for asserts on
// what the code under test sent. Form holds the request as sent, secrets
// included: it never leaves the test process.
type TokenRequest struct {
	GrantType string
	ClientID  string
	Scope     string
	Form      url.Values
	UserAgent string
	// Status is the HTTP status the provider answered (0 while stalled).
	Status int
	// Error is the OAuth error code answered, if any.
	Error string
	At    time.Time
}

// DeviceAuthorization is a pending or finished device authorisation.
type DeviceAuthorization struct {
	UserCode   string
	DeviceCode string
	ClientID   string
	Scope      string
	// Approved by User, or Denied; neither while pending.
	Approved, Denied bool
	User             string
	Expires          time.Time
}

// Option configures New.
type Option func(*options)

type options struct {
	tls  *tls.Config
	addr string
}

// WithTLS serves HTTPS with cfg (for example from testenv.TLSFiles), as
// real providers do; clients then need the test CA (SSL_CERT_FILE).
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// WithAddr listens on addr (a loopback host:port) instead of a free port on
// 127.0.0.1, for tests that restart a provider at the same URL.
func WithAddr(addr string) Option { return func(o *options) { o.addr = addr } }

// Provider is a running fake OAuth 2.0 provider.
type Provider struct {
	srv *httptest.Server

	mu            sync.Mutex
	clients       map[string]Client
	users         map[string]string // username -> password
	pending       map[string]*authRequest
	codes         map[string]*authCode
	access        map[string]*accessToken
	refresh       map[string]*refreshToken
	devices       map[string]*deviceAuth // by device_code
	userCodes     map[string]*deviceAuth // by user_code
	counts        map[string]int
	grants        map[string]int
	requests      []*TokenRequest
	lifetime      time.Duration
	interval      int
	rotate        bool
	faults        []fault
	down          int
	slowDown      int
	refuseAuthz   int
	stall         chan struct{}
	stalled       int
	omitExpiresIn bool
	quirks        AnswerQuirks
}

type authRequest struct {
	clientID, redirectURI, scope, state, challenge, method, loginHint string
	expires                                                           time.Time
}

type authCode struct {
	clientID, redirectURI, scope, user, challenge, method string
	expires                                               time.Time
	used                                                  bool
}

type accessToken struct {
	user, clientID, scope string
	expires               time.Time
	revoked               bool
}

type refreshToken struct {
	user, clientID, scope string
	revoked               bool
}

type deviceAuth struct {
	DeviceAuthorization
	lastPoll time.Time
}

type faultKind int

const (
	faultRefuse faultKind = iota
	faultFail
	faultGarbage
)

type fault struct {
	kind   faultKind
	status int
	code   string // OAuth error code of a refusal; invalid_grant when ""
	desc   string
}

// New starts a provider on a free port of 127.0.0.1 (or WithAddr). Close it
// when done; Start does that for a test.
func New(opts ...Option) (*Provider, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	p := &Provider{
		clients:   map[string]Client{},
		users:     map[string]string{},
		pending:   map[string]*authRequest{},
		codes:     map[string]*authCode{},
		access:    map[string]*accessToken{},
		refresh:   map[string]*refreshToken{},
		devices:   map[string]*deviceAuth{},
		userCodes: map[string]*deviceAuth{},
		counts:    map[string]int{},
		grants:    map[string]int{},
		lifetime:  DefaultAccessTokenLifetime,
		interval:  DefaultDeviceInterval,
		rotate:    true,
	}
	addr := o.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fake OAuth provider: listening on %s: %w", addr, err)
	}
	p.srv = httptest.NewUnstartedServer(p.routes())
	p.srv.Listener.Close()
	p.srv.Listener = l
	if o.tls != nil {
		p.srv.TLS = o.tls.Clone()
		p.srv.StartTLS()
	} else {
		p.srv.Start()
	}
	return p, nil
}

// Start is New for a test: it fails t on error and closes the provider when
// t ends.
func Start(t testing.TB, opts ...Option) *Provider {
	t.Helper()
	p, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Close releases stalled requests and stops the server.
func (p *Provider) Close() {
	p.mu.Lock()
	if p.stall != nil {
		close(p.stall)
		p.stall = nil
	}
	p.mu.Unlock()
	p.srv.CloseClientConnections()
	p.srv.Close()
}

// URL is the base URL, http://127.0.0.1:PORT (https with WithTLS).
func (p *Provider) URL() string { return p.srv.URL }

// Addr is the host:port the provider listens on.
func (p *Provider) Addr() string { return p.srv.Listener.Addr().String() }

// AuthorizeURL is the permission_url of authorization_code accounts.
func (p *Provider) AuthorizeURL() string { return p.srv.URL + EndpointAuthorize }

// TokenURL is the token_url of every account.
func (p *Provider) TokenURL() string { return p.srv.URL + EndpointToken }

// DeviceCodeURL is the permission_url of device flow accounts.
func (p *Provider) DeviceCodeURL() string { return p.srv.URL + EndpointDeviceCode }

// VerificationURL is the page a user approves a device code at.
func (p *Provider) VerificationURL() string { return p.srv.URL + EndpointDevice }

// IntrospectURL is Dovecot's introspection_url.
func (p *Provider) IntrospectURL() string { return p.srv.URL + EndpointIntrospect }

// HTTPClient returns a client that trusts the provider's certificate when it
// serves TLS.
func (p *Provider) HTTPClient() *http.Client { return p.srv.Client() }

// AddClient registers (or replaces) a client.
func (p *Provider) AddClient(c Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.RedirectURIs = slices.Clone(c.RedirectURIs)
	p.clients[c.ID] = c
}

// AddUser registers (or changes the password of) a user.
func (p *Provider) AddUser(username, password string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users[username] = password
}

// IssueToken mints tokens for user as if clientID had obtained them, for
// tests that seed a token store without a flow. scope is recorded as given.
func (p *Provider) IssueToken(clientID, user, scope string) (access, refresh string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	access = p.newAccessLocked(user, clientID, scope)
	refresh = p.newRefreshLocked(user, clientID, scope)
	return access, refresh
}

// Introspect answers what the introspection endpoint would, without a
// request or a count.
func (p *Provider) Introspect(token string) (user string, active bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.introspectLocked(token)
}

func (p *Provider) introspectLocked(token string) (string, bool) {
	a, ok := p.access[token]
	if !ok || a.revoked || !time.Now().Before(a.expires) {
		return "", false
	}
	return a.user, true
}

// --- Knobs ---

// SetAccessTokenLifetime sets the lifetime (and expires_in, in whole
// seconds rounded up) of access tokens issued from now on.
func (p *Provider) SetAccessTokenLifetime(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lifetime = d
}

// OmitExpiresIn leaves expires_in out of token answers (some providers do;
// clients then assume an hour) while on is true.
func (p *Provider) OmitExpiresIn(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.omitExpiresIn = on
}

// AnswerQuirks shapes successful token answers the way some real
// providers and gateways send them. The zero value is the standard answer.
type AnswerQuirks struct {
	// ExpiresIn, when not empty, is sent verbatim as the JSON value of
	// expires_in: `"3599"` (a string, as Entra v1.0 endpoints send),
	// `-5`, `0`, `9223372036854775807`, `3599.0`, `null`. The token's real
	// lifetime is still SetAccessTokenLifetime's.
	ExpiresIn string
	// OmitTokenType leaves token_type out.
	OmitTokenType bool
	// Extra fields added to the answer (ext_expires_in, id_token, ...).
	Extra map[string]any
}

// SetAnswerQuirks applies q to token answers from now on; the zero value
// restores the standard answer.
func (p *Provider) SetAnswerQuirks(q AnswerQuirks) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.quirks = q
}

// RotateRefreshTokens chooses whether a refresh_token grant returns a new
// refresh token (Microsoft, the default) or none (Google). A rotated-out
// refresh token stays valid, as Microsoft's do.
func (p *Provider) RotateRefreshTokens(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rotate = on
}

// ExpireTokens makes every access token of user expire now: introspection
// says inactive, so Dovecot refuses them. Refresh tokens stay valid.
func (p *Provider) ExpireTokens(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	for _, a := range p.access {
		if a.user == user && a.expires.After(now) {
			a.expires = now
		}
	}
}

// Revoke revokes every access and refresh token of user and forgets its
// unused codes: the next refresh gets invalid_grant, as after a password
// change or an admin's revocation.
func (p *Provider) Revoke(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.access {
		if a.user == user {
			a.revoked = true
		}
	}
	for _, r := range p.refresh {
		if r.user == user {
			r.revoked = true
		}
	}
	for k, c := range p.codes {
		if c.user == user {
			delete(p.codes, k)
		}
	}
}

// RevokeToken revokes one access or refresh token.
func (p *Provider) RevokeToken(token string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.access[token]; ok {
		a.revoked = true
	}
	if r, ok := p.refresh[token]; ok {
		r.revoked = true
	}
}

// RefuseNext makes the next n token requests, whatever their grant, answer
// 400 invalid_grant with description (the AADSTS-style text a client should
// show).
func (p *Provider) RefuseNext(n int, description string) {
	p.addFaults(n, fault{kind: faultRefuse, status: http.StatusBadRequest, desc: description})
}

// RefuseNextWith makes the next n token requests answer HTTP status with
// the OAuth error code and description a real provider sends, e.g.
// (400, "invalid_grant", "AADSTS700082: The refresh token has expired due
// to inactivity. ...") or (401, "invalid_client", "AADSTS7000215: ...").
func (p *Provider) RefuseNextWith(n, status int, code, description string) {
	p.addFaults(n, fault{kind: faultRefuse, status: status, code: code, desc: description})
}

// FailNext makes the next n token requests answer status (a 5xx; 503 when 0)
// with a temporarily_unavailable JSON body.
func (p *Provider) FailNext(n int, status int) {
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	p.addFaults(n, fault{kind: faultFail, status: status})
}

// GarbageNext makes the next n token requests answer 200 with a body that
// claims to be JSON and is not.
func (p *Provider) GarbageNext(n int) {
	p.addFaults(n, fault{kind: faultGarbage, status: http.StatusOK})
}

func (p *Provider) addFaults(n int, f fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range n {
		p.faults = append(p.faults, f)
	}
}

// SetDown makes every token and device code request answer status (a 5xx)
// until SetDown(0): the token endpoint is down while the rest (and
// introspection, so Dovecot) keeps working.
func (p *Provider) SetDown(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = status
}

// Stall holds every token request that arrives from now on, without an
// answer, until release is called (or the client gives up, or the provider
// closes). release is idempotent.
func (p *Provider) Stall() (release func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := make(chan struct{})
	p.stall = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			if p.stall == ch {
				p.stall = nil
			}
			p.mu.Unlock()
			close(ch)
		})
	}
}

// Stalled is how many token requests Stall is holding right now.
func (p *Provider) Stalled() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stalled
}

// SlowDownNext makes the next n device_code polls answer slow_down.
func (p *Provider) SlowDownNext(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.slowDown += n
}

// SetDeviceInterval sets the polling interval (seconds) announced for new
// device authorisations.
func (p *Provider) SetDeviceInterval(seconds int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.interval = seconds
}

// RefuseAuthorizations makes the next n successful logins at /authorize
// redirect with error=access_denied, as when the user declines consent or
// an admin blocks the app.
func (p *Provider) RefuseAuthorizations(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuseAuthz += n
}

// ApproveDevice approves a device authorisation by its user code (as shown
// to the user; case and dashes are ignored) on behalf of user.
func (p *Provider) ApproveDevice(userCode, user string) error {
	return p.finishDevice(userCode, user, true)
}

// DenyDevice declines a device authorisation: the next poll gets
// access_denied.
func (p *Provider) DenyDevice(userCode string) error {
	return p.finishDevice(userCode, "", false)
}

func (p *Provider) finishDevice(userCode, user string, approve bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.userCodes[normalizeUserCode(userCode)]
	if !ok {
		return fmt.Errorf("fake OAuth provider: no device authorisation with user code %q", userCode)
	}
	if approve {
		if _, ok := p.users[user]; !ok {
			return fmt.Errorf("fake OAuth provider: approving %q: user %q is not registered (AddUser)", userCode, user)
		}
		d.Approved, d.User = true, user
	} else {
		d.Denied = true
	}
	return nil
}

// DeviceAuthorizations lists device authorisations, oldest first.
func (p *Provider) DeviceAuthorizations() []DeviceAuthorization {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]DeviceAuthorization, 0, len(p.devices))
	for _, d := range p.devices {
		out = append(out, d.DeviceAuthorization)
	}
	slices.SortFunc(out, func(a, b DeviceAuthorization) int { return a.Expires.Compare(b.Expires) })
	return out
}

// --- Counters ---

// Count is how many requests endpoint (EndpointToken, ...) received,
// including refused, failed and stalled ones.
func (p *Provider) Count(endpoint string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[endpoint]
}

// GrantCount is how many token requests had grant_type grant.
func (p *Provider) GrantCount(grant string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.grants[grant]
}

// TokenRequests returns a copy of every token request so far, in arrival
// order.
func (p *Provider) TokenRequests() []TokenRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]TokenRequest, len(p.requests))
	for i, r := range p.requests {
		out[i] = *r
		out[i].Form = cloneValues(r.Form)
	}
	return out
}

// ResetCounts zeroes the counters and forgets the recorded token requests.
func (p *Provider) ResetCounts() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts = map[string]int{}
	p.grants = map[string]int{}
	p.requests = nil
}

// --- helpers ---

func (p *Provider) newAccessLocked(user, clientID, scope string) string {
	tok := randomToken(32)
	p.access[tok] = &accessToken{user: user, clientID: clientID, scope: scope, expires: time.Now().Add(p.lifetime)}
	return tok
}

func (p *Provider) newRefreshLocked(user, clientID, scope string) string {
	tok := randomToken(48)
	p.refresh[tok] = &refreshToken{user: user, clientID: clientID, scope: scope}
	return tok
}

func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// userCodeAlphabet avoids letters that read alike (no vowels, no 0/O/1/I).
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

func newUserCode() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	for i := range b {
		b[i] = userCodeAlphabet[int(b[i])%len(userCodeAlphabet)]
	}
	return string(b[:4]) + "-" + string(b[4:])
}

func normalizeUserCode(s string) string {
	return strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(s))
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("fake OAuth provider: address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("fake OAuth provider: address %q is not loopback; tests only ever listen on 127.0.0.1 or ::1", addr)
	}
	return nil
}

// isLoopbackURL reports whether u is an http(s) URL on a loopback host.
func isLoopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
