// Package interactive runs the OAuth 2.0 flows that need a person: the
// authorization code flow, whose URL an administrator opens in a browser
// and whose redirect comes back to a local listener, and the device flow,
// whose code someone enters on the provider's page.
//
// A Server is the oauth.Authorizer of the engine. Unlike the Python proxy it
// keeps its redirect listeners up for any number of requests, routes each
// redirect by its state so several accounts can wait on one port, checks the
// state, and tells the truth in the browser when the provider answered an
// error or the code exchange failed.
package interactive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth/assertion"
)

// Defaults for Options.
const (
	// DefaultLinger is how long an authorisation request stays valid after
	// the last login waiting for it gave up: the administrator may open the
	// URL a little after the mail client timed out, and the next login then
	// finds the tokens instead of a new URL.
	DefaultLinger = 10 * time.Minute
	// DefaultTimeout bounds how long a login waits for a person, as in the
	// Python proxy.
	DefaultTimeout = 600 * time.Second
	// DefaultExchangeTimeout bounds one code exchange or device poll.
	DefaultExchangeTimeout = 30 * time.Second
	// DefaultDeviceInterval is RFC 8628's polling interval when the
	// provider announces none.
	DefaultDeviceInterval = 5 * time.Second
	// SlowDownStep is what RFC 8628 3.5 adds to the interval on slow_down.
	SlowDownStep = 5 * time.Second
	// DefaultMaxPending bounds the authorisation requests waiting at once.
	DefaultMaxPending = 100
)

// DeviceCodeGrant is the grant_type of device flow polls (RFC 8628 3.4).
const DeviceCodeGrant = "urn:ietf:params:oauth:grant-type:device_code"

var (
	// ErrClosed: the Server was shut down while a login waited, or after.
	ErrClosed = errors.New("the authorisation server is shut down")
	// ErrExpired: an authorisation request was withdrawn because no login
	// waited for it any more and Linger passed.
	ErrExpired = errors.New("the authorisation request expired")
	// ErrConfig: the account's settings cannot make an interactive request.
	ErrConfig = errors.New("interactive authorisation is not configured")
	// ErrTooManyPending: MaxPending requests already wait for a person. It
	// comes wrapped with oauth.ErrNeedsAuthorization (retry later).
	ErrTooManyPending = errors.New("too many authorisation requests are waiting")
)

// Options configure a Server. The zero value works.
type Options struct {
	// Logger receives the announcements (with message_id, account,
	// auth_url and user_code attributes) and outcomes; nil is slog.Default().
	Logger *slog.Logger
	// HTTPClient makes the code exchange, device code and poll requests;
	// nil is a client with a 30 s time-out.
	HTTPClient *http.Client
	// Signer makes client assertions for accounts with
	// jwt_certificate_path/jwt_key_path; nil is assertion.Default.
	Signer oauth.AssertionSigner
	// Reporter learns of each announced request, so `status` can show
	// "waiting" with the URL or code. May be nil.
	Reporter oauth.PendingReporter
	// OnDone is called once per request when it ends: err is nil when the
	// provider issued tokens (even if no login was waiting any more: the
	// next Authorize returns them), else why it failed or expired. It must
	// not call back into the Server. May be nil.
	OnDone func(account string, err error)
	// Timeout bounds each Authorize call (ctx may end it sooner): the token
	// manager detaches its flights from the mail client, so this is what
	// ends the wait. Zero is DefaultTimeout; negative leaves it to ctx.
	Timeout time.Duration
	// Linger: see DefaultLinger. Negative withdraws a request as soon as its
	// last waiter gives up.
	Linger time.Duration
	// ExchangeTimeout: see DefaultExchangeTimeout.
	ExchangeTimeout time.Duration
	// MaxPending bounds the requests waiting for a person; zero is
	// DefaultMaxPending. With catch-all accounts any login name reaches
	// the flow, so without a bound made-up names would each add a request
	// (an announcement, a state and, for the device flow, a poller).
	MaxPending int
	// Sleep waits between device polls; nil waits on a timer. Tests record
	// the intervals and return at once.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Pending describes a request that waits for a person.
type Pending struct {
	Account  string
	Flow     config.Flow
	URL      string // the authorisation URL, or the device verification URI
	UserCode string // device flow only
	Since    time.Time
	Waiters  int // logins blocked on it right now
}

// Server is the interactive oauth.Authorizer. Create it with New; it starts
// redirect listeners on demand and keeps them until Shutdown.
type Server struct {
	opts Options
	log  *slog.Logger
	hc   *http.Client

	mu        sync.Mutex
	closed    bool
	requests  map[string]*request // by requestKey
	byState   map[string]*request // authorization code requests still open
	spent     map[string]spentState
	listeners map[string]*listener // by host:port
	wg        sync.WaitGroup       // device pollers and listener goroutines
}

// request is one pending authorisation, shared by every login that waits for
// the same account.
type request struct {
	key     string
	account string
	flow    config.Flow
	acct    config.Account // the newest settings a waiter brought
	created time.Time

	// authorization code flow
	state, verifier string
	listenAddr      string
	// device flow
	userCode string
	cancel   context.CancelFunc

	url       string // empty until announced
	waiters   int
	linger    *time.Timer
	finished  bool
	announced bool
	done      chan struct{}
	tok       oauth.TokenResponse
	err       error
}

// New makes a Server. Nothing listens until the first authorization code
// request needs a redirect listener.
func New(opts Options) *Server {
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		hc:        opts.HTTPClient,
		requests:  map[string]*request{},
		byState:   map[string]*request{},
		spent:     map[string]spentState{},
		listeners: map[string]*listener{},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.hc == nil {
		s.hc = &http.Client{Timeout: DefaultExchangeTimeout}
	}
	if s.opts.Signer == nil {
		s.opts.Signer = assertion.Default
	}
	if s.opts.ExchangeTimeout <= 0 {
		s.opts.ExchangeTimeout = DefaultExchangeTimeout
	}
	if s.opts.Timeout == 0 {
		s.opts.Timeout = DefaultTimeout
	}
	if s.opts.Linger == 0 {
		s.opts.Linger = DefaultLinger
	}
	if s.opts.MaxPending <= 0 {
		s.opts.MaxPending = DefaultMaxPending
	}
	return s
}

var _ oauth.Authorizer = (*Server)(nil)

// SetReporter sets Options.Reporter after New, for wiring where the
// reporter (the token manager) is built with this Server as its Authorizer.
func (s *Server) SetReporter(r oauth.PendingReporter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.Reporter = r
}

// Authorize runs acct's interactive flow for the login username (acct.Name
// when empty) and returns the provider's tokens. It announces the URL (or
// device code) in the log, then blocks until someone completes it, the
// provider refuses, Options.Timeout passes or ctx ends. Logins for the
// same account share one request: a second one re-announces the same URL
// instead of making a new one. When the wait ends the request stays
// valid for Linger, and a later Authorize joins it (or collects the tokens
// if it was completed meanwhile).
//
// acct.ClientSecret is sent as is: a caller that holds only
// client_secret_encrypted decrypts it into ClientSecret first.
func (s *Server) Authorize(ctx context.Context, acct config.Account, username string) (oauth.TokenResponse, error) {
	name := username
	if name == "" {
		name = acct.Name
	}
	flow := acct.EffectiveFlow()
	var err error
	switch flow {
	case config.FlowAuthorizationCode:
		err = checkCodeAccount(acct)
	case config.FlowDevice:
		err = checkDeviceAccount(acct)
	default:
		return oauth.TokenResponse{}, fmt.Errorf("%w: account %s uses oauth2_flow %s, which needs no person; the token manager runs it without the interactive server", ErrConfig, name, flow)
	}
	if err != nil {
		return oauth.TokenResponse{}, fmt.Errorf("account %s: %w", name, err)
	}
	key := requestKey(name, flow, acct)
	if s.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.Timeout)
		defer cancel()
	}

	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return oauth.TokenResponse{}, fmt.Errorf("account %s: %w", name, ErrClosed)
		}
		r := s.requests[key]
		if r == nil {
			break
		}
		if r.finished {
			// Completed while nobody waited: hand the tokens over once.
			delete(s.requests, key)
			s.mu.Unlock()
			if r.err == nil {
				return r.tok, nil
			}
			continue
		}
		r.waiters++
		r.acct = acct
		if r.linger != nil {
			r.linger.Stop()
			r.linger = nil
		}
		announced := r.announced
		s.mu.Unlock()
		if announced {
			s.announce(r)
		}
		return s.wait(ctx, r)
	}
	s.mu.Unlock()

	switch flow {
	case config.FlowDevice:
		return s.startDevice(ctx, key, name, acct)
	default:
		return s.startCode(ctx, key, name, acct)
	}
}

// register publishes r unless a concurrent Authorize for the same key got
// there first, in which case it returns that one (with this caller counted
// as a waiter) and false.
func (s *Server) register(r *request) (*request, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, fmt.Errorf("account %s: %w", r.account, ErrClosed)
	}
	if other := s.requests[r.key]; other != nil && !other.finished {
		other.waiters++
		if other.linger != nil {
			other.linger.Stop()
			other.linger = nil
		}
		return other, false, nil
	}
	open := 0
	for _, o := range s.requests {
		if !o.finished {
			open++
		}
	}
	if open >= s.opts.MaxPending {
		return nil, false, fmt.Errorf("%w: %w: %d authorisations already wait for an administrator, so none is started for account %s; "+
			"complete them (`orbit email-oauth2-proxy logs --auth-url`) or let them expire, then log in again",
			oauth.ErrNeedsAuthorization, ErrTooManyPending, open, r.account)
	}
	r.waiters = 1
	s.requests[r.key] = r
	if r.state != "" {
		s.byState[r.state] = r
	}
	return r, true, nil
}

// wait blocks one login on r.
func (s *Server) wait(ctx context.Context, r *request) (oauth.TokenResponse, error) {
	select {
	case <-r.done:
		s.mu.Lock()
		r.waiters--
		if s.requests[r.key] == r {
			delete(s.requests, r.key)
		}
		s.mu.Unlock()
		return r.tok, r.err
	case <-ctx.Done():
	}
	s.mu.Lock()
	r.waiters--
	if r.waiters == 0 && !r.finished {
		if s.opts.Linger < 0 {
			s.mu.Unlock()
			s.expire(r)
		} else {
			r.linger = time.AfterFunc(s.opts.Linger, func() { s.expire(r) })
			s.mu.Unlock()
		}
	} else {
		s.mu.Unlock()
	}
	what := "open the URL shown by `orbit email-oauth2-proxy logs` and log in"
	if r.flow == config.FlowDevice {
		what = "enter the code shown by `orbit email-oauth2-proxy logs` at the provider's page"
	}
	return oauth.TokenResponse{}, fmt.Errorf("%w: account %s was not authorised in time; an administrator must %s, then log in again (%w)",
		oauth.ErrNeedsAuthorization, r.account, what, ctx.Err())
}

// finish ends r once, waking every waiter.
func (s *Server) finish(r *request, tok oauth.TokenResponse, err error) {
	s.mu.Lock()
	if r.finished {
		s.mu.Unlock()
		return
	}
	r.finished = true
	r.tok, r.err = tok, err
	if r.state != "" && s.byState[r.state] == r {
		delete(s.byState, r.state)
		s.markSpent(r.state, spentUsed)
	}
	if r.linger != nil {
		r.linger.Stop()
		r.linger = nil
	}
	if err != nil && s.requests[r.key] == r {
		// A failure is not kept for later logins: they start afresh.
		delete(s.requests, r.key)
	} else if err == nil && r.waiters == 0 {
		// Nobody to hand the tokens to now; keep them for the next login,
		// but not for ever.
		if s.opts.Linger > 0 {
			r.linger = time.AfterFunc(s.opts.Linger, func() { s.dropUnclaimed(r) })
		} else if s.requests[r.key] == r {
			delete(s.requests, r.key)
		}
	}
	s.mu.Unlock()

	// Log and report before waking the waiters, so that whoever learns the
	// outcome from Authorize also finds it in the log and the status.
	defer close(r.done)
	if r.cancel != nil {
		r.cancel()
	}
	if err == nil {
		s.log.Info(fmt.Sprintf("Authorisation succeeded for %s", r.account),
			"message_id", events.AuthSucceeded, "account", r.account)
	} else {
		s.log.Warn(fmt.Sprintf("Authorisation failed for %s: %v", r.account, err),
			"message_id", events.AuthFailed, "account", r.account, "reason", err.Error())
	}
	if s.opts.OnDone != nil {
		s.opts.OnDone(r.account, err)
	}
}

// expire withdraws a request nobody waits for.
func (s *Server) expire(r *request) {
	s.mu.Lock()
	if r.finished || r.waiters > 0 {
		s.mu.Unlock()
		return
	}
	if r.state != "" && s.byState[r.state] == r {
		delete(s.byState, r.state)
		s.markSpent(r.state, spentExpired)
		r.state = "" // so finish does not mark it used
	}
	s.mu.Unlock()
	s.finish(r, oauth.TokenResponse{}, fmt.Errorf("%w: no login waited for account %s's authorisation any more", ErrExpired, r.account))
}

func (s *Server) dropUnclaimed(r *request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.requests[r.key] == r {
		delete(s.requests, r.key)
	}
}

// Pending lists the requests that wait for a person, for status displays.
func (s *Server) Pending() []Pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Pending
	for _, r := range s.requests {
		if r.finished || !r.announced {
			continue
		}
		out = append(out, Pending{Account: r.account, Flow: r.flow, URL: r.url, UserCode: r.userCode, Since: r.created, Waiters: r.waiters})
	}
	return out
}

// Shutdown fails every waiting login with ErrClosed and stops the redirect
// listeners, letting requests in flight finish until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	var reqs []*request
	for _, r := range s.requests {
		reqs = append(reqs, r)
	}
	var ls []*listener
	for _, l := range s.listeners {
		ls = append(ls, l)
	}
	s.mu.Unlock()

	var errs []error
	for _, l := range ls {
		if err := l.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping the redirect listener on %s: %w", l.addr, err))
		}
	}
	for _, r := range reqs {
		// Still ErrNeedsAuthorization for the mail client: a temporary
		// failure to retry, not a wrong password.
		s.finish(r, oauth.TokenResponse{}, fmt.Errorf("%w: the proxy is stopping before anyone completed the authorisation of account %s; log in again once it runs, and open the new URL (%w)",
			oauth.ErrNeedsAuthorization, r.account, ErrClosed))
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("waiting for authorisation goroutines: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// announce logs r's URL (or device code) and tells the Reporter. It runs
// again whenever a new login joins a request announced before, so the
// newest log entry always carries the URL that works.
func (s *Server) announce(r *request) {
	s.mu.Lock()
	url, code, flow, name := r.url, r.userCode, r.flow, r.account
	rep := s.opts.Reporter
	s.mu.Unlock()
	// Report first: once the URL is in the log, `status` should show it.
	if flow == config.FlowDevice {
		if rep != nil {
			rep.SetPendingDevice(name, url, code)
		}
		s.log.Info(fmt.Sprintf(events.DeviceCodeText, url, code),
			"message_id", events.DeviceCode, "account", name, "auth_url", url, "user_code", code)
		return
	}
	if rep != nil {
		rep.SetPending(name, url)
	}
	s.log.Info(fmt.Sprintf(events.AuthRequestText, name),
		"message_id", events.AuthRequest, "account", name, "auth_url", url)
	s.log.Info(fmt.Sprintf(events.AuthURLText, name, url),
		"message_id", events.AuthURL, "account", name, "auth_url", url)
}

func (s *Server) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}

// requestKey identifies what a request asks for, so a configuration change
// (a reload with another client or scope) starts a new request instead of
// completing an old one with stale settings.
func requestKey(name string, flow config.Flow, a config.Account) string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s", name, flow, a.PermissionURL, a.TokenURL, a.ClientID, a.Scope, a.RedirectURI)
}

type spentState uint8

const (
	spentUsed spentState = iota + 1
	spentExpired
)

// maxSpent bounds the memory of used states; beyond it the oldest knowledge
// goes and a very old link is reported as unknown instead of used.
const maxSpent = 4096

func (s *Server) markSpent(state string, why spentState) {
	if len(s.spent) >= maxSpent {
		n := 0
		for k := range s.spent {
			delete(s.spent, k)
			if n++; n >= maxSpent/2 {
				break
			}
		}
	}
	s.spent[state] = why
}
