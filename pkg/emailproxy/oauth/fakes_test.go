package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

// Distinctive secrets: tests grep logs, errors and the status file for them.
const (
	secretClient   = "CLIENT-SECRET-c0ffee"
	secretPassword = "LOGIN-PASSWORD-b4d"
	otherPassword  = "OTHER-PASSWORD-f00"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// memStore is tokens.Store in memory: one password opens an account's
// record, as with the real store. getDelay stands in for the key derivation.
type memStore struct {
	mu       sync.Mutex
	entries  map[string]memEntry
	getDelay time.Duration
	gets     atomic.Int64
	puts     atomic.Int64
	deletes  atomic.Int64
}

type memEntry struct {
	password string
	rec      tokens.Record
}

func newMemStore() *memStore { return &memStore{entries: map[string]memEntry{}} }

func (s *memStore) Get(ctx context.Context, account, password string) (tokens.Record, error) {
	s.gets.Add(1)
	if s.getDelay > 0 {
		time.Sleep(s.getDelay)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[account]
	if !ok {
		return tokens.Record{}, tokens.ErrNotFound
	}
	if e.password != password {
		return tokens.Record{}, tokens.ErrBadPassword
	}
	return e.rec, nil
}

func (s *memStore) Put(ctx context.Context, account, password string, rec tokens.Record) error {
	s.puts.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries[account] = memEntry{password: password, rec: rec}
	return nil
}

func (s *memStore) Delete(ctx context.Context, account string) error {
	s.deletes.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.entries, account)
	return nil
}

func (s *memStore) set(account, password string, rec tokens.Record) {
	s.mu.Lock()
	s.entries[account] = memEntry{password: password, rec: rec}
	s.mu.Unlock()
}

func (s *memStore) entry(account string) (memEntry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[account]
	return e, ok
}

// answer is one scripted reply of the fake provider.
type answer struct {
	status      int
	body        string
	contentType string
}

func jsonAnswer(status int, v any) answer {
	b, _ := json.Marshal(v)
	return answer{status: status, body: string(b), contentType: "application/json"}
}

func tokenAnswer(access, refresh string, expiresIn int) answer {
	m := map[string]any{"access_token": access, "token_type": "Bearer"}
	if refresh != "" {
		m["refresh_token"] = refresh
	}
	if expiresIn != 0 {
		m["expires_in"] = expiresIn
	}
	return jsonAnswer(http.StatusOK, m)
}

// provider is a fake token endpoint on 127.0.0.1. It counts requests per
// grant_type and answers from a per-grant script (then the default).
type provider struct {
	srv *httptest.Server

	mu      sync.Mutex
	counts  map[string]int
	forms   map[string][]url.Values
	scripts map[string][]answer
	// hold, when set, makes every request wait until it is closed.
	hold chan struct{}
	// arrived is signalled (non-blocking) when a request comes in.
	arrived chan struct{}
}

func newProvider(t *testing.T) *provider {
	p := &provider{
		counts:  map[string]int{},
		forms:   map[string][]url.Values{},
		scripts: map[string][]answer{},
		arrived: make(chan struct{}, 100),
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *provider) url() string { return p.srv.URL + "/tenant/oauth2/v2.0/token" }

func (p *provider) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	grant := form.Get("grant_type")
	p.mu.Lock()
	p.counts[grant]++
	n := p.counts[grant]
	p.forms[grant] = append(p.forms[grant], form)
	var a answer
	if s := p.scripts[grant]; len(s) > 0 {
		a, p.scripts[grant] = s[0], s[1:]
	} else {
		a = tokenAnswer(fmt.Sprintf("AT-%s-%d", grant, n), "", 3600)
		if grant == GrantRefreshToken || grant == GrantPassword {
			a = tokenAnswer(fmt.Sprintf("AT-%s-%d", grant, n), fmt.Sprintf("RT-%s-%d", grant, n), 3600)
		}
	}
	hold := p.hold
	p.mu.Unlock()
	select {
	case p.arrived <- struct{}{}:
	default:
	}
	if hold != nil {
		<-hold
	}
	if a.contentType != "" {
		w.Header().Set("Content-Type", a.contentType)
	}
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

func (p *provider) script(grant string, answers ...answer) {
	p.mu.Lock()
	p.scripts[grant] = append(p.scripts[grant], answers...)
	p.mu.Unlock()
}

func (p *provider) count(grant string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[grant]
}

func (p *provider) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.counts {
		n += c
	}
	return n
}

func (p *provider) lastForm(grant string) url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.forms[grant]
	if len(f) == 0 {
		return nil
	}
	return f[len(f)-1]
}

// source is an AccountSource whose contents a test swaps, as a reload does.
type source struct {
	mu       sync.Mutex
	accounts map[string]config.Account
	global   config.Global
}

func newSource(g config.Global, accts ...config.Account) *source {
	s := &source{accounts: map[string]config.Account{}, global: g}
	for _, a := range accts {
		s.accounts[a.Name] = a
	}
	return s
}

func (s *source) Account(username string) (config.Account, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[username]
	return a, ok
}

func (s *source) Global() config.Global {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.global
}

func (s *source) replace(g config.Global, accts ...config.Account) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.global = g
	s.accounts = map[string]config.Account{}
	for _, a := range accts {
		s.accounts[a.Name] = a
	}
}

// fakeAuthorizer plays the person in the browser: it reports a URL and
// answers after release is closed (immediately when release is nil).
type fakeAuthorizer struct {
	reporter PendingReporter
	release  chan struct{}
	answer   TokenResponse
	err      error
	calls    atomic.Int64
	lastAcct atomic.Value // config.Account
}

func (a *fakeAuthorizer) Authorize(ctx context.Context, acct config.Account, username string) (TokenResponse, error) {
	n := a.calls.Add(1)
	a.lastAcct.Store(acct)
	if a.reporter != nil {
		a.reporter.SetPending(username, "https://login.example.test/authorize?client_id="+acct.ClientID+"&state=s1")
	}
	if a.release != nil {
		select {
		case <-a.release:
		case <-ctx.Done():
			return TokenResponse{}, ctx.Err()
		}
	}
	if a.err != nil {
		return TokenResponse{}, a.err
	}
	tr := a.answer
	if tr.AccessToken == "" {
		tr = TokenResponse{AccessToken: fmt.Sprintf("AT-interactive-%d", n), RefreshToken: fmt.Sprintf("RT-interactive-%d", n), ExpiresIn: 3600}
	}
	return tr, nil
}

// fakeSigner makes recognisable assertions.
type fakeSigner struct{}

func (fakeSigner) ClientAssertion(acct config.Account) (string, error) {
	return "client-jwt-for-" + acct.ClientID, nil
}

func (fakeSigner) ServiceAccountAssertion(acct config.Account, username string) (string, error) {
	return "sa-jwt-for-" + username, nil
}

// logBuffer collects the Manager's log as JSON lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// harness wires a Manager to the fakes.
type harness struct {
	t     *testing.T
	prov  *provider
	store *memStore
	src   *source
	clock *fakeClock
	logs  *logBuffer
	m     *Manager
}

type harnessOpt func(*Options)

func newHarness(t *testing.T, g config.Global, accts []config.Account, opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{t: t, prov: newProvider(t), store: newMemStore(), clock: newClock(), logs: &logBuffer{}}
	for i := range accts {
		if accts[i].TokenURL == "" {
			accts[i].TokenURL = h.prov.url()
		}
	}
	h.src = newSource(g, accts...)
	o := Options{
		Accounts:   h.src,
		Store:      h.store,
		HTTPClient: h.prov.srv.Client(),
		Logger:     slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:        h.clock.Now,
	}
	for _, f := range opts {
		f(&o)
	}
	m, err := NewManager(o)
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	return h
}

func ccAccount(name string) config.Account {
	return config.Account{
		Name: name, Section: name, Flow: config.FlowClientCredentials,
		Scope: "https://outlook.office365.com/.default", ClientID: "cid-1", ClientSecret: secretClient,
	}
}

// codeAccount is ccAccount with the authorisation-code flow.
func codeAccount(name string) config.Account {
	a := ccAccount(name)
	a.Flow, a.PermissionURL = config.FlowAuthorizationCode, "https://x/authorize"
	return a
}

// storedHarness is a harness for alice's authorisation-code account whose
// store already holds access, expiring after left, and RT-stored.
func storedHarness(t *testing.T, access string, left time.Duration) *harness {
	t.Helper()
	h := newHarness(t, defaultGlobal(), []config.Account{codeAccount(alice)})
	h.store.set(alice, secretPassword, tokens.Record{
		AccessToken: access, AccessTokenExpiry: h.clock.Now().Add(left), RefreshToken: "RT-stored",
	})
	return h
}

func defaultGlobal() config.Global { return config.Global{DeleteAccountTokenOnPasswordError: true} }

// Reset empties the buffer.
func (l *logBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Reset()
}
