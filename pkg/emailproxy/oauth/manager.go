package oauth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/errcatalog"
	"github.com/senhasegura/orbit/pkg/emailproxy/events"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
	"github.com/senhasegura/orbit/pkg/emailproxy/untrusted"
)

// RefreshMargin: a stored access token with less than this left is renewed
// before use, so a token never expires in the middle of a session's login.
const RefreshMargin = 600 * time.Second

// DefaultRequestTimeout bounds one token request when Options.RequestTimeout
// is zero.
const DefaultRequestTimeout = 30 * time.Second

// Options configures a Manager. Accounts and Store are required.
type Options struct {
	// Accounts resolves login names; asked on every login, so reloads apply.
	Accounts AccountSource
	// Store keeps each account's tokens encrypted under its login password.
	Store tokens.Store
	// HTTPClient sends token requests; nil means a client with
	// RequestTimeout.
	HTTPClient *http.Client
	// Logger receives events with "message_id" (pkg/emailproxy/events),
	// "account" and "reason"; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Interactive runs authorization_code and device flows; nil makes
	// those accounts answer ErrNeedsAuthorization.
	Interactive Authorizer
	// Assertions signs client assertions (jwt_certificate_path and
	// jwt_key_path) and service account grants; nil makes such accounts
	// fail with ErrNoAssertionSigner.
	Assertions AssertionSigner
	// StatusFile is where the per-account status is mirrored as JSON (see
	// Status); empty keeps it in memory only. `serve` passes
	// DefaultStatusFile.
	StatusFile string
	// TrustFile is where the login guard keeps the client addresses that
	// logged in to each account with its password (trust.go), so that the
	// mailer's first login after a restart goes ahead of guesses; empty
	// keeps them in memory only. The engine puts it beside StatusFile
	// (TrustFileName).
	TrustFile string
	// OnClientSecretEncrypted is called after encrypt_client_secret_on_first_use
	// stored client_secret_encrypted for an account whose client_secret came
	// from the file, so the engine can rewrite the file without client_secret
	// (the Python proxy does that). acct.Section says where the secret came
	// from: a hook must only remove it from the account's own section
	// (Section == Name), never from a shared [@domain] or [@] section that
	// other accounts still read. nil leaves the file alone: the plain
	// client_secret keeps winning, which is harmless.
	OnClientSecretEncrypted func(ctx context.Context, acct config.Account) error
	// RequestTimeout bounds each token request; zero means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Guard bounds what failed logins cost (see GuardOptions); the client
	// address comes from WithClientAddr.
	Guard GuardOptions
	// RefreshMargin replaces the package's RefreshMargin; zero keeps it.
	// Only tests with seconds-long tokens shorten it.
	RefreshMargin time.Duration
	// BackgroundKey (from the systemd credential, ReadBackgroundKey) and
	// BackgroundFile turn on background_refresh's sealed copies
	// (background.go) for files that set background_refresh = True.
	BackgroundKey  []byte
	BackgroundFile string
	// OnEvent, when set, hears what an admin may want to be told of (the
	// engine turns it into notifications). It is called without the
	// manager's locks held, on the goroutine of the login concerned, so it
	// must return quickly.
	OnEvent func(Event)
}

// Event is a change an admin may want to hear of.
type Event struct {
	Account string
	// Status is the account's entry after the change, Previous before it
	// (zero for an account not seen since the engine started).
	Status, Previous AccountStatus
	// Refused: the provider refused a token request in a way retrying will
	// not mend (ErrProviderRefused); Status.Reason says what it answered.
	Refused bool
	// Rejected: the mail server refused an access token before its expiry.
	Rejected bool
	// Class names a refusal briefly and from a bounded set, for metrics:
	// the provider error catalogue's ID, else the OAuth error code.
	Class string
}

// ErrorClass is a short, bounded name for a token request failure: the
// provider error catalogue's ID (AADSTS700082, google-testing-app...), else
// the OAuth error code when it is one of RFC 6749's, else "refused" or
// "unavailable".
func ErrorClass(err error) string {
	var pe *ProviderError
	if errors.As(err, &pe) {
		if entry, ok := errcatalog.Lookup(errcatalog.TokenEndpoint, pe.Code, pe.Description); ok {
			return entry.ID
		}
		switch pe.Code {
		case "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
			"unsupported_grant_type", "invalid_scope", "access_denied", "expired_token":
			return pe.Code
		}
	}
	if errors.Is(err, ErrProviderUnavailable) {
		return "unavailable"
	}
	return "refused"
}

// Statuses is a snapshot of every account's entry in the status.
func (m *Manager) Statuses() map[string]AccountStatus {
	return m.status.snapshot().Accounts
}

// HasOwnSection reports whether name has a [user@domain] section of its
// own (not only a catch-all): metrics label accounts only then, so names
// that clients invent cannot grow them.
func (m *Manager) HasOwnSection(name string) bool { return m.hasOwnSection(name) }

// Manager turns a client's plain login into an access token: it implements
// proxy.Authenticator. It is safe for concurrent use.
//
// How logins are kept cheap and correct at once:
//   - A valid access token is kept in memory per account together with an
//     HMAC (under a per-process random key) of the login password that opened
//     it, so a login with that password and a token that is still valid costs
//     one HMAC and no key derivation, no store read and no request.
//   - Everything else runs in a flight keyed by account and password HMAC
//     (singleflight): concurrent logins with the same password share one
//     store read and at most one token request, and a login with another
//     password can never receive a result it did not open itself.
//   - Flights of one account are serialised by a per-account lock, so at most
//     one token request (or interactive authorisation) per account is in
//     flight, and a second password's flight sees what the first one stored.
//   - A flight is detached from the client that started it: a client that
//     disconnects does not cancel the refresh others wait for. Each token
//     request has its own time-out, and an Authorizer its own.
type Manager struct {
	src         AccountSource
	store       tokens.Store
	hc          *http.Client
	log         *slog.Logger
	now         func() time.Time
	interactive Authorizer
	signer      AssertionSigner
	onSecret    func(context.Context, config.Account) error
	onEvent     func(Event)
	reqTimeout  time.Duration
	margin      time.Duration

	// ka is the background refresh (keepalive.go); bg the sealed copies
	// of background_refresh (background.go), nil without the credential.
	ka keepAlive
	bg *backgroundStore

	macKey  [32]byte
	macs    sync.Pool // of hash.Hash: HMAC-SHA256 under macKey, reused to keep logins allocation-light
	flights singleflight.Group

	cacheMu sync.RWMutex
	cache   map[string]cachedToken
	// rejected is, per account, the last access token the upstream server
	// refused: a stored token equal to it is not used again.
	rejected map[string]string

	locksMu sync.Mutex
	locks   map[string]*accountLock

	status *statusBook
	guard  *guard
	// failedLog sums up failed logins while they continue (failedlog.go).
	failedLog *failedLogins
	// writes counts this Manager's completed store writes, so a flight
	// can tell whether what it read before the account lock is current.
	writes atomic.Uint64

	// expiryNoted holds the token URLs whose odd expires_in was logged, so
	// an endpoint that always sends one is reported once, not per login.
	expiryNoted sync.Map
}

type cachedToken struct {
	mac    [sha256.Size]byte
	token  string
	expiry time.Time
	flow   config.Flow
}

type accountLock struct {
	mu   sync.Mutex
	refs int
}

// NewManager checks the options and returns a ready Manager. If StatusFile
// holds a previous run's status, authorised and failing entries carry over.
func NewManager(opts Options) (*Manager, error) {
	if opts.Accounts == nil {
		return nil, errors.New("oauth.NewManager: Options.Accounts is required")
	}
	if opts.Store == nil {
		return nil, errors.New("oauth.NewManager: Options.Store is required")
	}
	m := &Manager{
		src:         opts.Accounts,
		store:       opts.Store,
		hc:          opts.HTTPClient,
		log:         opts.Logger,
		now:         opts.Now,
		interactive: opts.Interactive,
		signer:      opts.Assertions,
		onSecret:    opts.OnClientSecretEncrypted,
		onEvent:     opts.OnEvent,
		reqTimeout:  opts.RequestTimeout,
		cache:       map[string]cachedToken{},
		rejected:    map[string]string{},
		locks:       map[string]*accountLock{},
	}
	if m.reqTimeout <= 0 {
		m.reqTimeout = DefaultRequestTimeout
	}
	m.margin = opts.RefreshMargin
	if m.margin <= 0 {
		m.margin = RefreshMargin
	}
	if m.hc == nil {
		m.hc = &http.Client{Timeout: m.reqTimeout}
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if len(opts.BackgroundKey) > 0 && opts.BackgroundFile != "" {
		bg, err := newBackgroundStore(opts.BackgroundFile, opts.BackgroundKey, m.log)
		if err != nil {
			return nil, fmt.Errorf("background_refresh: %w", err)
		}
		m.bg = bg
	}
	if _, err := rand.Read(m.macKey[:]); err != nil {
		return nil, fmt.Errorf("oauth.NewManager: no randomness for the password cache key: %w", err)
	}
	m.status = newStatusBook(opts.StatusFile, m.now, m.log, m.hasOwnSection)
	if opts.OnEvent != nil {
		m.status.onChange = func(account string, before, after AccountStatus) {
			opts.OnEvent(Event{Account: account, Status: after, Previous: before})
		}
	}
	m.guard = newGuard(opts.Guard, m.now, opts.TrustFile, m.log)
	m.status.delayEnd = m.guard.delayEnd
	m.failedLog = &failedLogins{log: m.log, every: failedSummaryEvery, delay: m.guard.addrWait, runs: map[trustPair]*failedRun{}}
	return m, nil
}

// AccessToken returns a valid access token for the account named username,
// with password being the client's login password. See the package errors
// for what failures wrap; every error's text is safe to show the client.
func (m *Manager) AccessToken(ctx context.Context, username, password string) (string, error) {
	acct, ok := m.src.Account(username)
	if !ok {
		return "", &loginError{
			msg: fmt.Sprintf("Login failed - account %s is not configured: add it with `orbit email-oauth2-proxy register`, "+
				"or set allow_catch_all_accounts = True with an [@domain] or [@] section", printable(username)),
			err: ErrUnknownAccount,
		}
	}
	if acct.Name == "" {
		acct.Name = username
	}
	mac := m.passwordMAC(acct.Name, password)
	if tok, ok := m.cached(acct.Name, mac, m.now()); ok {
		m.status.authorised(acct.Name, tok.flow, tok.expiry)
		return tok.token, nil
	}

	// The flight outlives the client that starts it (see Manager), but
	// keeps its context's values.
	flightCtx := context.WithoutCancel(ctx)
	addr := clientAddr(ctx)
	ch := m.flights.DoChan(acct.Name+"\x00"+string(mac[:]), func() (any, error) {
		tok, err := m.obtain(flightCtx, ctx, acct, password, mac, addr)
		if err == nil {
			m.keepAliveAdd(acct.Name, password, mac)
		}
		return tok, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		if acct.Interactive() && m.status.state(acct.Name) == StateWaiting {
			return "", &loginError{
				msg: fmt.Sprintf("Login failed for account %s - it is still waiting for an administrator to authorise it: "+
					"open the URL shown by `orbit email-oauth2-proxy logs --auth-url`, then log in again", printable(acct.Name)),
				err: fmt.Errorf("%w: %w", ErrNeedsAuthorization, ctx.Err()),
			}
		}
		return "", &loginError{
			msg: fmt.Sprintf("Login failed for account %s - gave up waiting for the token endpoint; retry", printable(acct.Name)),
			err: fmt.Errorf("%w: %w", ErrProviderUnavailable, ctx.Err()),
		}
	}
}

// SetPending records that account waits for a person to open authURL; the
// Authorizer calls it when it announces the URL. It implements
// PendingReporter.
func (m *Manager) SetPending(account, authURL string) {
	m.status.waiting(account, m.flowOf(account), authURL, "")
}

// SetPendingDevice is SetPending for the device flow: the person opens
// verificationURI and types userCode.
func (m *Manager) SetPendingDevice(account, verificationURI, userCode string) {
	m.status.waiting(account, config.FlowDevice, verificationURI, userCode)
}

// Status returns the current per-account status (the status file's content).
func (m *Manager) Status() Status { return m.status.snapshot() }

// PublishStatus writes the status file now, naming this process as its
// writer; the engine calls it once it serves.
func (m *Manager) PublishStatus() { m.status.publish() }

// hasOwnSection reports whether the login name has a [user@domain] section
// of its own rather than borrowing a catch-all one.
func (m *Manager) hasOwnSection(name string) bool {
	a, ok := m.src.Account(name)
	return ok && a.Section == name
}

func (m *Manager) flowOf(account string) config.Flow {
	if a, ok := m.src.Account(account); ok {
		return a.EffectiveFlow()
	}
	return ""
}

func (m *Manager) passwordMAC(account, password string) [sha256.Size]byte {
	h, _ := m.macs.Get().(hash.Hash)
	if h == nil {
		h = hmac.New(sha256.New, m.macKey[:])
	}
	h.Reset()
	io.WriteString(h, account)
	h.Write([]byte{0})
	io.WriteString(h, password)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	m.macs.Put(h)
	return out
}

func (m *Manager) cached(account string, mac [sha256.Size]byte, now time.Time) (cachedToken, bool) {
	m.cacheMu.RLock()
	c, ok := m.cache[account]
	m.cacheMu.RUnlock()
	if !ok || subtle.ConstantTimeCompare(c.mac[:], mac[:]) != 1 || !m.fresh(c.expiry, now) {
		return cachedToken{}, false
	}
	return c, true
}

func (m *Manager) remember(account string, c cachedToken) {
	m.cacheMu.Lock()
	m.cache[account] = c
	m.cacheMu.Unlock()
}

// AccountStatus is the account's current entry in the status (what the
// status file shows), by its resolved name.
func (m *Manager) AccountStatus(name string) (AccountStatus, bool) {
	return m.status.get(name)
}

// TokenRejected is told by the proxy that the upstream server refused
// token for username (revoked before its expiry): it is dropped from memory
// and never used again, so the next login refreshes or re-runs the flow.
func (m *Manager) TokenRejected(username, token string) {
	name := username
	if acct, ok := m.src.Account(username); ok && acct.Name != "" {
		name = acct.Name
	}
	m.cacheMu.Lock()
	if c, ok := m.cache[name]; ok && c.token == token {
		delete(m.cache, name)
	}
	m.rejected[name] = token
	m.cacheMu.Unlock()
	m.log.Info(fmt.Sprintf("the upstream server refused the access token of %s; the next login gets a new one", printable(name)), "account", name)
	if m.onEvent != nil {
		m.onEvent(Event{Account: name, Rejected: true})
	}
}

func (m *Manager) isRejected(account, token string) bool {
	m.cacheMu.RLock()
	defer m.cacheMu.RUnlock()
	return m.rejected[account] == token
}

func (m *Manager) forget(account string) {
	m.cacheMu.Lock()
	delete(m.cache, account)
	m.cacheMu.Unlock()
}

// fresh reports whether a token expiring at expiry may still be used at now.
func (m *Manager) fresh(expiry, now time.Time) bool {
	return !expiry.IsZero() && expiry.Sub(now) >= m.margin
}

// lockAccount serialises flights of one account. Entries are reference
// counted so that catch-all sections (any name) do not grow the map.
func (m *Manager) lockAccount(account string) (unlock func()) {
	m.locksMu.Lock()
	l := m.locks[account]
	if l == nil {
		l = &accountLock{}
		m.locks[account] = l
	}
	l.refs++
	m.locksMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		m.locksMu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(m.locks, account)
		}
		m.locksMu.Unlock()
	}
}

// deleteOnPasswordError applies delete_account_token_on_password_error to
// a login whose password does not open the stored tokens.
//
// For client_credentials and service_account it is always off (as in the
// Python proxy): the provider never sees the login password there, so it is
// the only thing between a local process and the mailbox, and letting any
// password replace the tokens would let any password in. The exception is
// client_credentials with use_login_password_as_client_credentials_secret
// and no client_secret: there the login password is the client secret, the
// provider checks it, and a rotated secret must be able to replace the old
// tokens. The password flow forwards the login password to the provider, and
// interactive flows need a person to approve, so there too a new password is
// let through to prove itself. In every case the old tokens are replaced
// only once the new password has won new ones (see obtain).
func deleteOnPasswordError(g config.Global, acct config.Account, flow config.Flow) bool {
	switch flow {
	case config.FlowServiceAccount:
		return false
	case config.FlowClientCredentials:
		loginIsSecret := g.UseLoginPasswordAsClientCredentialsSecret && acct.ClientSecret == "" && !UsesCertificate(acct)
		if !loginIsSecret {
			return false
		}
	}
	return g.DeleteAccountTokenOnPasswordError
}

// obtain is one flight: everything a login needs when the memory cache had
// no valid token for this account and password.
// admitCtx is the context of the client that started the flight: waiting
// for the guard ends with it, since a guess whose client has gone must not
// keep a place in the queue (or a derivation slot) nobody wants. Everything
// after the admission runs on ctx, detached from that client.
func (m *Manager) obtain(ctx, admitCtx context.Context, acct config.Account, password string, mac [sha256.Size]byte, addr string) (string, error) {
	flow := acct.EffectiveFlow()
	g := m.src.Global()
	log := m.log.With("account", acct.Name)

	// First, outside the account lock, open the stored tokens: that is
	// where a login pays its key derivation, admitted by the guard. A
	// correct password therefore never queues behind wrong ones on the
	// lock, and a fresh token needs the lock not at all.
	preWrites := m.writes.Load()
	pre, preErr := m.open(ctx, admitCtx, acct.Name, password, addr)
	proven := preErr == nil
	switch {
	case preErr == nil:
		if pre.AccessToken != "" && m.fresh(pre.AccessTokenExpiry, m.now()) && !m.isRejected(acct.Name, pre.AccessToken) {
			m.remember(acct.Name, cachedToken{mac: mac, token: pre.AccessToken, expiry: pre.AccessTokenExpiry, flow: flow})
			m.status.authorised(acct.Name, flow, pre.AccessTokenExpiry)
			m.backgroundSeal(log, acct.Name, pre)
			return pre.AccessToken, nil
		}
	case errors.Is(preErr, ErrTooManyAttempts):
		var e *loginError
		if !errors.As(preErr, &e) {
			return "", preErr
		}
		return "", m.failedLogin(log, acct, addr, "refused before any work: too many failed logins", failRefused, e)
	case errors.Is(preErr, context.Canceled) || errors.Is(preErr, context.DeadlineExceeded):
		// The client that started the flight left while it waited for
		// the guard.
		return "", &loginError{msg: fmt.Sprintf("Login failed for account %s - gave up waiting", printable(acct.Name)), err: fmt.Errorf("%w: %w", ErrProviderUnavailable, preErr)}
	case errors.Is(preErr, tokens.ErrBadPassword) && !deleteOnPasswordError(g, acct, flow):
		e := &loginError{
			msg: fmt.Sprintf("Login failed - the password for account %s is incorrect", printable(acct.Name)),
			err: ErrBadPassword,
		}
		return "", m.failedLogin(log, acct, addr, "a client logged in with a password that does not open the stored tokens", failWrongPassword, e)
	}

	unlock := m.lockAccount(acct.Name)
	defer unlock()

	// A flight for this account and password may have finished while this
	// one waited for the lock.
	if tok, ok := m.cached(acct.Name, mac, m.now()); ok {
		return tok.token, nil
	}

	// What the first read saw still holds unless this Manager wrote the
	// store since (another flight refreshed, say); then read again, which
	// costs no derivation as the key is cached now.
	rec, err := pre, preErr
	if m.writes.Load() != preWrites {
		rec, err = m.store.Get(ctx, acct.Name, password)
	}
	// replacing: the stored tokens belong to another password and will be
	// replaced, but only once new tokens are in hand. Deleting them first
	// (as the Python proxy does) would let any wrong password wipe a working
	// account even when the new attempt then fails.
	replacing := false
	switch {
	case err == nil:
		rec = m.backgroundMerge(acct.Name, rec)
	case errors.Is(err, tokens.ErrNotFound):
		rec = tokens.Record{}
	case errors.Is(err, tokens.ErrBadPassword):
		if !deleteOnPasswordError(g, acct, flow) {
			e := &loginError{
				msg: fmt.Sprintf("Login failed - the password for account %s is incorrect", printable(acct.Name)),
				err: ErrBadPassword,
			}
			return "", m.failedLogin(log, acct, addr, "a client logged in with a password that does not open the stored tokens", failWrongPassword, e)
		}
		log.Info(fmt.Sprintf("the login password for %s does not open the stored tokens (password changed or wrong); getting new tokens for it (delete_account_token_on_password_error)", printable(acct.Name)),
			"reason", "password changed or wrong")
		rec = tokens.Record{}
		replacing = true
	default:
		e := &loginError{
			msg: fmt.Sprintf("Login failed for account %s - the token store cannot be read: %v", printable(acct.Name), err),
			err: err,
		}
		return "", m.fail(log, acct.Name, flow, e.msg, e)
	}

	// The client secret: the file's client_secret wins (it may have been
	// edited by hand), then the stored client_secret_encrypted, then, for
	// client_credentials with use_login_password_as_client_credentials_secret,
	// the login password itself.
	eff := acct
	if eff.ClientSecret == "" {
		eff.ClientSecret = rec.ClientSecret
	}
	if eff.ClientSecret == "" && flow == config.FlowClientCredentials && g.UseLoginPasswordAsClientCredentialsSecret {
		eff.ClientSecret = password
	}

	now := m.now()
	if rec.AccessToken != "" && m.fresh(rec.AccessTokenExpiry, now) && !m.isRejected(acct.Name, rec.AccessToken) {
		m.remember(acct.Name, cachedToken{mac: mac, token: rec.AccessToken, expiry: rec.AccessTokenExpiry, flow: flow})
		m.status.authorised(acct.Name, flow, rec.AccessTokenExpiry)
		m.backgroundSeal(log, acct.Name, rec)
		return rec.AccessToken, nil
	}

	if rec.RefreshToken != "" {
		// The spec's two strikes: the first HTTP 400 drops the access token
		// and retries (it may be a race with another proxy instance that
		// already rotated the refresh token); the next drops the refresh
		// token and salt and falls through to the flow. A record that had no
		// access token is already at its second strike, as in the Python
		// proxy.
		hadAccess := rec.AccessToken != ""
		for {
			form, err := refreshForm(eff, rec.RefreshToken, m.signer)
			if err != nil {
				return "", m.fail(log, acct.Name, flow, err.Error(), m.requestError(acct.Name, err))
			}
			tr, err := m.post(ctx, eff, form)
			if err == nil {
				return m.save(ctx, log, acct, eff, g, flow, password, mac, rec, tr, false)
			}
			var pe *ProviderError
			if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest {
				e := m.requestError(acct.Name, err)
				return "", m.fail(log, acct.Name, flow, e.reason(), e)
			}
			if hadAccess {
				log.Info(fmt.Sprintf("the token endpoint refused the refresh for %s: %v; dropping the access token and retrying once", printable(acct.Name), pe),
					"message_id", events.AuthFailed, "reason", pe.Error())
				rec.AccessToken, rec.AccessTokenExpiry = "", time.Time{}
				hadAccess = false
				if err := m.put(ctx, acct.Name, password, rec); err != nil {
					log.Warn(fmt.Sprintf("cannot save the dropped access token of %s: %v", printable(acct.Name), err), "reason", err.Error())
				}
				continue
			}
			log.Info(fmt.Sprintf("the token endpoint refused the refresh for %s again: %v; dropping the refresh token and starting the flow again", printable(acct.Name), pe),
				"message_id", events.AuthFailed, "reason", pe.Error())
			m.forget(acct.Name)
			if err := m.delete(ctx, acct.Name); err != nil {
				log.Warn(fmt.Sprintf("cannot delete the refused tokens of %s: %v", printable(acct.Name), err), "reason", err.Error())
			}
			// client_secret_encrypted is not a token: keep it in the record
			// so the next save stores it again under a new salt.
			rec = tokens.Record{ClientSecret: rec.ClientSecret}
			break
		}
	}

	var tr TokenResponse
	if flow == config.FlowAuthorizationCode || flow == config.FlowDevice {
		tr, err = m.authorize(ctx, log, acct, eff, flow)
		if err != nil {
			return "", err
		}
	} else {
		// A password nobody has proven goes to the provider only while it
		// has not just refused another: a burst of guesses is relayed about
		// once per back-off delay, not once per guess (each one could count
		// against the real account's lockout).
		relay := flow == config.FlowPassword && !proven
		if relay {
			if wait, ok := m.guard.relayAllowed(acct.Name); !ok {
				m.guard.failed(acct.Name, addr)
				// Temporary, not "incorrect": this password was never
				// checked, and may well be the right one typed after a typo.
				e := &loginError{
					msg: fmt.Sprintf("Login failed for account %s - the provider refused a password moments ago, so this one is not sent "+
						"before %d s; retry then", printable(acct.Name), max(1, int(wait.Round(time.Second)/time.Second))),
					err: ErrTooManyAttempts,
				}
				m.guard.relayWithheld.Add(1)
				return "", m.failedLogin(log, acct, addr, "a new password was not relayed: the provider refused one moments ago", failRefused, e)
			}
		}
		form, err := flowForm(eff, flow, acct.Name, password, m.signer)
		if err != nil {
			return "", m.fail(log, acct.Name, flow, err.Error(), m.requestError(acct.Name, err))
		}
		tr, err = m.post(ctx, eff, form)
		if err != nil {
			e := m.requestError(acct.Name, err)
			if relay && errors.Is(err, ErrProviderRefused) {
				m.guard.relayRefused(acct.Name)
				m.guard.failed(acct.Name, addr)
				if replacing {
					// The stored tokens (another password's) still work:
					// the provider refusing this password says nothing
					// about the account.
					return "", m.failedLogin(log, acct, addr, e.reason(), failWrongPassword, e)
				}
				// Counted before fail gives the name a status entry, so
				// a name invented under a catch-all counts under it.
				m.countFailed(acct, addr, failProviderRefused)
			}
			return "", m.fail(log, acct.Name, flow, e.reason(), e)
		}
		if relay {
			m.guard.succeeded(acct.Name, addr)
		}
	}
	tok, err := m.save(ctx, log, acct, eff, g, flow, password, mac, rec, tr, replacing)
	if err == nil {
		// The tokens are now sealed under this password (the account's
		// first login, or a new password the provider or a person
		// approved): its address is trusted like one that opened them.
		m.guard.succeeded(acct.Name, addr)
	}
	return tok, err
}

func (m *Manager) put(ctx context.Context, account, password string, rec tokens.Record) error {
	defer m.writes.Add(1)
	return m.store.Put(ctx, account, password, rec)
}

func (m *Manager) delete(ctx context.Context, account string) error {
	defer m.writes.Add(1)
	return m.store.Delete(ctx, account)
}

// open reads the account's stored tokens with password. When that costs a
// key derivation the guard admits it first; the outcome (opened, or a
// wrong password) is recorded against the client address and account.
func (m *Manager) open(ctx, admitCtx context.Context, account, password, addr string) (tokens.Record, error) {
	needsSlot := func() bool {
		d, ok := m.store.(interface {
			NeedsKeyDerivation(account, password string) bool
		})
		return !ok || d.NeedsKeyDerivation(account, password)
	}
	g := m.src.Global()
	m.guard.configure(g.FailedLoginFreeAttempts, g.FailedLoginMaxDelay, g.FailedLoginQueue)
	t, err := m.guard.admit(admitCtx, account, addr, needsSlot)
	if err != nil {
		return tokens.Record{}, err
	}
	if t.w != nil {
		// The guard pauses this derivation while a trusted login's runs
		// (and stops it, paused, if its client leaves).
		ctx = tokens.WithCheckpoint(ctx, t.checkpoint)
	}
	if t.ahead > 0 {
		m.log.Info(fmt.Sprintf("login for %s from %s goes ahead of %d other key derivations: the address logged in to the account before (trusted client address)", printable(account), addr, t.ahead),
			"account", account, "client", addr)
	}
	rec, err := m.store.Get(ctx, account, password)
	t.release()
	switch {
	case err == nil:
		m.guard.succeeded(account, addr)
	case errors.Is(err, tokens.ErrBadPassword):
		m.guard.failed(account, addr)
	}
	return rec, err
}

func (m *Manager) authorize(ctx context.Context, log *slog.Logger, acct, eff config.Account, flow config.Flow) (TokenResponse, error) {
	if m.interactive == nil {
		e := &loginError{
			msg: fmt.Sprintf("Login failed for account %s - it needs an interactive authorisation (%s flow), "+
				"which this engine was started without; run the engine with interactive authorisation enabled", printable(acct.Name), flow),
			err: ErrNeedsAuthorization,
		}
		return TokenResponse{}, m.fail(log, acct.Name, flow, e.msg, e)
	}
	tr, err := m.interactive.Authorize(ctx, eff, acct.Name)
	if err != nil {
		// The Authorizer has logged the AuthFailed event with its details;
		// a second event would make `logs` show every failure twice.
		log.Info(fmt.Sprintf("the interactive authorisation of %s did not complete: %v", printable(acct.Name), err), "reason", err.Error())
		m.status.failing(acct.Name, flow, err.Error())
		// The Authorizer's errors name the account already.
		why := strings.TrimPrefix(err.Error(), "account "+acct.Name+": ")
		return TokenResponse{}, &loginError{msg: fmt.Sprintf("Login failed for account %s - %s", printable(acct.Name), why), err: err}
	}
	if tr.AccessToken == "" {
		e := &loginError{
			msg: fmt.Sprintf("Login failed for account %s - the authorisation returned no access token", printable(acct.Name)),
			err: ErrProviderRefused,
		}
		return TokenResponse{}, m.fail(log, acct.Name, flow, e.msg, e)
	}
	// AuthSucceeded is the Authorizer's event (it knows when the person
	// finished); here only the storing is worth a line.
	log.Debug(fmt.Sprintf("storing the tokens of the completed interactive authorisation of %s", printable(acct.Name)))
	if tr.RefreshToken == "" {
		log.Warn(fmt.Sprintf("the provider returned no refresh token for %s: the account will need a new authorisation when this token expires "+
			"(does oauth2_scope include offline access, e.g. offline_access?)", printable(acct.Name)), "reason", "no refresh_token")
	}
	return tr, nil
}

// save stores a fresh token answer and makes it the account's current
// token. A store failure does not fail the login (the token is good); it is
// logged, and a FileStore keeps the tokens in memory and retries the save
// (tokens.ErrSaveDeferred), so a rotated refresh token is not lost.
func (m *Manager) save(ctx context.Context, log *slog.Logger, acct, eff config.Account, g config.Global, flow config.Flow,
	password string, mac [sha256.Size]byte, rec tokens.Record, tr TokenResponse, replacing bool) (string, error) {
	now := m.now()
	rec.AccessToken = tr.AccessToken
	rec.AccessTokenExpiry = tr.Expiry(now)
	if note := tr.ExpiresInNote(); note != "" {
		if _, seen := m.expiryNoted.LoadOrStore(eff.TokenURL, true); !seen {
			log.Warn(note+" (logged once per token_url)", "reason", "odd expires_in", "token_url", redactURL(eff.TokenURL))
		}
	}
	if tr.RefreshToken != "" {
		rec.RefreshToken = tr.RefreshToken
	}
	rec.LastActivity = now
	// encrypt_client_secret_on_first_use: only a secret the file holds
	// (never the login password standing in for one) is worth keeping.
	encrypted := g.EncryptClientSecretOnFirstUse && acct.ClientSecret != "" && rec.ClientSecret != acct.ClientSecret
	if encrypted {
		rec.ClientSecret = acct.ClientSecret
	}
	if replacing {
		// No Delete first: Put replaces every token key of the account
		// (salt included) in one atomic write, so a crash in between can
		// never leave the account with neither password's tokens.
		m.forget(acct.Name)
	}
	if err := m.put(ctx, acct.Name, password, rec); err != nil {
		if errors.Is(err, tokens.ErrSaveDeferred) {
			log.Error(fmt.Sprintf("cannot save the new tokens of %s: %v; they are kept in memory and the save is retried until it succeeds (lost if the proxy stops first)", printable(acct.Name), err), "reason", err.Error())
		} else {
			log.Error(fmt.Sprintf("cannot save the new tokens of %s: %v; logins work until the token expires, then fetch again", printable(acct.Name), err), "reason", err.Error())
		}
	} else {
		m.backgroundSave(log, acct.Name, rec)
		if encrypted {
			log.Info(fmt.Sprintf("the client_secret of %s is stored encrypted (encrypt_client_secret_on_first_use)", printable(acct.Name)))
			if m.onSecret != nil {
				if err := m.onSecret(ctx, acct); err != nil {
					log.Warn(fmt.Sprintf("cannot remove the client_secret of [%s] from the configuration file: %v", acct.Section, err), "reason", err.Error())
				}
			}
		}
	}
	m.remember(acct.Name, cachedToken{mac: mac, token: rec.AccessToken, expiry: rec.AccessTokenExpiry, flow: flow})
	m.status.authorised(acct.Name, flow, rec.AccessTokenExpiry)
	return rec.AccessToken, nil
}

func (m *Manager) post(ctx context.Context, acct config.Account, form url.Values) (TokenResponse, error) {
	if strings.TrimSpace(acct.TokenURL) == "" {
		return TokenResponse{}, fmt.Errorf("section [%s] has no token_url: set it to the provider's token endpoint and reload", acct.Section)
	}
	ctx, cancel := context.WithTimeout(ctx, m.reqTimeout)
	defer cancel()
	return PostToken(ctx, m.hc, strings.TrimSpace(acct.TokenURL), form)
}

// requestError phrases a token request failure for the mail client,
// keeping the cause in the chain for errors.Is/As.
func (m *Manager) requestError(account string, err error) *loginError {
	var pe *ProviderError
	if errors.As(err, &pe) {
		if entry, ok := errcatalog.Lookup(errcatalog.TokenEndpoint, pe.Code, pe.Description); ok && !entry.Generic() {
			// A reply line is short (400 characters, and POP3 and SMTP allow
			// 512 in all), so the mailer gets the catalogue's explanation and
			// fix; the provider's own words go to the log and status.
			return &loginError{
				msg: fmt.Sprintf("Login failed for account %s - the token endpoint refused the request (HTTP %d %s) - %s",
					printable(account), pe.Status, printable(pe.Code), entry.Hint()),
				detail: pe.Description,
				err:    err,
			}
		}
	}
	var msg string
	switch {
	case errors.Is(err, ErrProviderRefused):
		msg = fmt.Sprintf("Login failed for account %s - the token endpoint refused the request: %v", printable(account), err)
		// A generic code (invalid_grant...): the provider's description is
		// the specific part, the catalogue adds what to do.
		if errors.As(err, &pe) {
			if entry, ok := errcatalog.Lookup(errcatalog.TokenEndpoint, pe.Code, pe.Description); ok {
				msg += " - Fix: " + entry.Fix
			}
		}
	case errors.Is(err, ErrProviderUnavailable):
		msg = fmt.Sprintf("Login failed for account %s - %v; check the network and the token_url, then retry", printable(account), err)
	default:
		msg = fmt.Sprintf("Login failed for account %s - %v", printable(account), err)
	}
	return &loginError{msg: msg, err: err}
}

// failedLogin is a login refused for its password (wrong, or not tried
// because of earlier failures): it says nothing about the account's
// tokens, so the status is left alone, and a storm of them is summed up
// (failedLogins) rather than logged one by one. The first of a run is
// logged by the proxy with the protocol and port; the rest return quiet
// errors, which the proxy logs at debug level.
func (m *Manager) failedLogin(log *slog.Logger, acct config.Account, addr, reason string, kind failKind, err *loginError) error {
	log.Debug(fmt.Sprintf("failed login for %s from %s: %s", printable(acct.Name), addr, reason), "client", addr, "reason", reason)
	err.quiet = m.failedLog.note(acct.Name, addr)
	m.countFailed(acct, addr, kind)
	return err
}

// failKind is what a failed login was, for the status file's counts.
type failKind int

const (
	// failWrongPassword: the password does not open the stored tokens
	// (which prove the name in use).
	failWrongPassword failKind = iota
	// failProviderRefused: the provider refused the relayed password.
	failProviderRefused
	// failRefused: the guard refused the login before checking it.
	failRefused
)

// countFailed counts a failed login in the status file's failed_logins,
// never in the account's state. A name with no status entry and no
// section of its own (one a client may have invented under a catch-all)
// counts under its catch-all section, unless it has stored tokens (its
// password was checked against them), which prove the name in use.
func (m *Manager) countFailed(acct config.Account, addr string, kind failKind) {
	section := ""
	if acct.Section != acct.Name && acct.Section != "" && kind != failWrongPassword {
		if _, known := m.status.get(acct.Name); !known {
			section = acct.Section
		}
	}
	m.status.failedLogin(acct.Name, section, addr, kind == failRefused)
}

// fail records a failed attempt in the log and the status, and returns err.
func (m *Manager) fail(log *slog.Logger, account string, flow config.Flow, reason string, err error) error {
	log.Warn(fmt.Sprintf("could not get an access token for %s: %s", printable(account), strings.TrimPrefix(reason, "Login failed for account "+printable(account)+" - ")),
		"message_id", events.AuthFailed, "reason", reason)
	m.status.failing(account, flow, reason)
	if m.onEvent != nil && errors.Is(err, ErrProviderRefused) {
		m.onEvent(Event{Account: account, Refused: true, Class: ErrorClass(err),
			Status: AccountStatus{State: StateFailing, Flow: flow, Reason: reason}})
	}
	return err
}

// loginError is an error whose text is written for the mail client, with
// the cause (and so the package's sentinels) still in the chain.
type loginError struct {
	msg    string
	detail string // the provider's own words when msg has the catalogue's instead
	err    error
	quiet  bool // a failed login already counted in a summary line to come
}

// Quiet reports whether the failure is one of a run of failed logins that
// the token layer sums up in one line per minute: the proxy then logs it
// at debug level instead of as a warning.
func (e *loginError) Quiet() bool { return e.quiet }

func (e *loginError) Error() string { return e.msg }

// reason is the text for the log and the status file, where length does
// not matter: the reply plus the provider's own words.
func (e *loginError) reason() string {
	if e.detail == "" {
		return e.msg
	}
	return e.msg + " The provider said: " + printable(e.detail)
}
func (e *loginError) Unwrap() error { return e.err }

// printable keeps a client-supplied name from smuggling line breaks or
// escape sequences into protocol replies and logs, and bounds its length.
func printable(s string) string { return untrusted.Printable(s) }

// GuardStats are the login guard's counters since the engine started and
// the failed logins of the last hour, for metrics.
type GuardStats struct {
	// RefusedQueue: logins refused at once because too many from their
	// client address were waiting; RefusedRelay: new passwords not relayed
	// because the provider had refused one moments before.
	RefusedQueue, RefusedRelay uint64
	// Delayed: logins that waited out a back-off first; Paused: key
	// derivations paused for a trusted login's.
	Delayed, Paused uint64
	// DelayedAddresses: client addresses whose next attempt waits now.
	DelayedAddresses int
	// FailedLastHour: failed logins in the last hour by account, as the
	// status file counts them; CatchAllFailedLastHour: those of unknown
	// names, counted under their catch-all sections.
	FailedLastHour         map[string]int
	CatchAllFailedLastHour int
}

// GuardStats reads the guard's counters.
func (m *Manager) GuardStats() GuardStats {
	g := m.guard
	st := GuardStats{
		RefusedQueue: g.refusedQueue.Load(), RefusedRelay: g.relayWithheld.Load(),
		Delayed: g.delayed.Load(), Paused: g.paused.Load(),
		DelayedAddresses: g.delayedAddresses(),
		FailedLastHour:   map[string]int{},
	}
	accts, catchAll := m.status.failures.snapshot(m.now().UTC(), nil)
	for name, f := range accts {
		st.FailedLastHour[name] = f.LastHour
	}
	for _, f := range catchAll {
		st.CatchAllFailedLastHour += f.LastHour
	}
	return st
}
