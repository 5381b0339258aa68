package oauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

// Keep-alive ([emailproxy] keep_alive, on by default; docs/background-refresh.md).
//
// An account whose mailer logged in since the engine started is refreshed
// in the background: its access token shortly before the login path would
// refresh it (so the next login finds a valid token in memory and makes no
// request), and its refresh token at least once a day (so a provider that
// retires unused refresh tokens, such as Entra after 90 days, keeps seeing
// it used while the mailer is idle).
//
// The stored tokens are encrypted under the mailer's password, so the
// keep-alive keeps that password in memory, per account, from the last
// successful login: never on disk, never in a log, dropped when the account
// leaves the configuration, when its stored tokens no longer open with it,
// when the provider refuses a refresh, when keep_alive is turned off, and
// when the engine stops. See docs/background-refresh.md for why the
// password rather than the derived key.
//
// Bounds: one loop per engine runs every refresh in turn (never two at
// once), each under the account's lock, so a refresh never races a login's
// flight; schedules carry random jitter; after a restart nothing is known
// until mailers log in again, so there is no storm; a failing request backs
// off; at most maxKeepAlive accounts are kept (least recently used go first).

// KeepAliveMaxAge is how long the keep-alive lets an account go without a
// token request: at least this often the refresh token is used even when
// the access tokens last longer.
const KeepAliveMaxAge = 24 * time.Hour

// maxKeepAlive bounds the accounts kept alive (as the status file bounds its
// entries): with catch-all sections every login name could add one.
const maxKeepAlive = maxStatusAccounts

type keepAlive struct {
	mu      sync.Mutex
	running bool
	entries map[string]*keepAliveEntry
	// wake makes the loop recompute its schedule (a new account).
	wake chan struct{}
}

type keepAliveEntry struct {
	password string
	mac      [sha256.Size]byte
	// next is when the account is due; last when a token was last obtained
	// for it; used when a mailer last logged in (for eviction).
	next, last, used time.Time
	failures         int
	// sealed: known only by its background_refresh copy (no password).
	sealed bool
}

// RunKeepAlive refreshes the tokens of accounts that logged in since it
// started, until ctx ends; it then forgets their passwords and returns. A
// token request under way when ctx ends is finished (and its answer
// stored), since a provider that rotates refresh tokens has already retired
// the old one: the caller bounds that by the request timeout.
func (m *Manager) RunKeepAlive(ctx context.Context) {
	wake := m.keepAliveStart()
	m.backgroundLoad()
	defer func() {
		m.ka.mu.Lock()
		m.ka.running = false
		m.ka.entries = nil
		m.ka.mu.Unlock()
	}()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := m.keepAliveStep(ctx)
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(m.now()), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-timer.C:
		}
	}
}

// keepAliveStart makes logins register for the keep-alive; the returned
// channel is signalled when one does.
func (m *Manager) keepAliveStart() <-chan struct{} {
	m.ka.mu.Lock()
	defer m.ka.mu.Unlock()
	m.ka.running = true
	m.ka.entries = map[string]*keepAliveEntry{}
	m.ka.wake = make(chan struct{}, 1)
	return m.ka.wake
}

// KeepAliveAccounts lists the accounts the keep-alive holds (for tests and
// diagnostics: names only).
func (m *Manager) KeepAliveAccounts() []string {
	m.ka.mu.Lock()
	defer m.ka.mu.Unlock()
	names := make([]string, 0, len(m.ka.entries))
	for n := range m.ka.entries {
		names = append(names, n)
	}
	return names
}

// keepAliveAdd is told of every successful login flight: the account is
// kept alive with this password from now on.
func (m *Manager) keepAliveAdd(account, password string, mac [sha256.Size]byte) {
	if !m.src.Global().KeepAlive {
		return
	}
	m.cacheMu.RLock()
	c, ok := m.cache[account]
	m.cacheMu.RUnlock()
	if !ok || c.mac != mac {
		return
	}
	now := m.now()
	m.ka.mu.Lock()
	defer m.ka.mu.Unlock()
	if !m.ka.running {
		return
	}
	e := m.ka.entries[account]
	if e == nil {
		if len(m.ka.entries) >= maxKeepAlive {
			m.evictLocked()
		}
		e = &keepAliveEntry{last: now}
		m.ka.entries[account] = e
	}
	if e.password != password {
		// Another password took the account over (its tokens are now
		// sealed under it): count the daily refresh from now.
		e.last = now
	}
	e.password, e.mac, e.used, e.failures, e.sealed = password, mac, now, 0, false
	e.next = m.keepAliveNext(now, c.expiry, e.last)
	select {
	case m.ka.wake <- struct{}{}:
	default:
	}
}

// evictLocked drops the least recently used entry. m.ka.mu is held.
func (m *Manager) evictLocked() {
	var oldest string
	var at time.Time
	for n, e := range m.ka.entries {
		if oldest == "" || e.used.Before(at) {
			oldest, at = n, e.used
		}
	}
	delete(m.ka.entries, oldest)
}

// keepAliveNext is when an account whose access token expires at expiry,
// and whose last token request was at last, is next due: a little more than
// the refresh margin before expiry (the margin plus up to half of it at
// random, so many accounts signed in together drift apart), and before
// KeepAliveMaxAge (less up to an hour at random) has passed since last.
// Never sooner than minGap from now. A token that lives no longer than that
// lead (a provider issuing tokens shorter than the margin) cannot be kept
// ahead of the login path, so only the daily refresh applies to it.
func (m *Manager) keepAliveNext(now, expiry, last time.Time) time.Time {
	lead := m.margin + rand.N(m.margin/2+1)
	next := last.Add(KeepAliveMaxAge - rand.N(time.Hour))
	if !expiry.IsZero() && expiry.Sub(last) > lead {
		next = minTime(next, expiry.Add(-lead))
	}
	return maxTime(next, now.Add(m.minGap()))
}

// minGap is the shortest wait between two background requests of one
// account: a minute with the real margin, less in tests that shorten it.
func (m *Manager) minGap() time.Duration {
	return min(max(m.margin/10, 100*time.Millisecond), time.Minute)
}

// keepAliveStep refreshes every account that is due at m.now(), one after
// another, and returns when the next one is due (zero: none is kept).
func (m *Manager) keepAliveStep(ctx context.Context) time.Time {
	if !m.src.Global().KeepAlive {
		// Turned off by a reload: forget everything.
		m.ka.mu.Lock()
		clear(m.ka.entries)
		m.ka.mu.Unlock()
		return time.Time{}
	}
	for ctx.Err() == nil {
		now := m.now()
		m.ka.mu.Lock()
		var due string
		var e keepAliveEntry
		var earliest time.Time
		for n, x := range m.ka.entries {
			if earliest.IsZero() || x.next.Before(earliest) {
				earliest, due, e = x.next, n, *x
			}
		}
		m.ka.mu.Unlock()
		if due == "" || earliest.After(now) {
			return earliest
		}
		var expiry time.Time
		var err error
		if e.sealed {
			expiry, err = m.renewSealed(context.WithoutCancel(ctx), due)
		} else {
			expiry, err = m.renew(context.WithoutCancel(ctx), due, e.password, e.mac)
		}
		m.ka.mu.Lock()
		x := m.ka.entries[due]
		// A login may have replaced the entry meanwhile; it then has its own
		// schedule.
		if x != nil && x.password == e.password && x.sealed == e.sealed {
			now = m.now()
			switch {
			case err == nil:
				x.last, x.failures = now, 0
				x.next = m.keepAliveNext(now, expiry, now)
			case errors.Is(err, errKeepAliveStop):
				delete(m.ka.entries, due)
			default:
				x.failures++
				x.next = now.Add(m.minGap() << min(x.failures, 5))
			}
		}
		m.ka.mu.Unlock()
	}
	return time.Time{}
}

// errKeepAliveStop: the account cannot (or must no longer) be refreshed in
// the background; the next login sorts it out.
var errKeepAliveStop = errors.New("keep-alive stops for this account")

// renew makes one background token request for account under its lock and
// stores the answer as a login's would be: in the store (sealed with
// password), the memory cache (under mac, so that password's next login
// needs no request) and the status file. It returns the new expiry. A
// refusal by the provider is reported (status, notification) and stops
// the keep-alive for the account, without touching the stored tokens: the
// next login applies the usual two-strike handling. Network trouble and
// 5xx answers are only logged and retried later.
func (m *Manager) renew(ctx context.Context, account, password string, mac [sha256.Size]byte) (time.Time, error) {
	acct, ok := m.src.Account(account)
	if !ok {
		return time.Time{}, errKeepAliveStop
	}
	if acct.Name == "" {
		acct.Name = account
	}
	unlock := m.lockAccount(acct.Name)
	defer unlock()
	flow := acct.EffectiveFlow()
	g := m.src.Global()
	log := m.log.With("account", acct.Name)

	rec, err := m.store.Get(ctx, acct.Name, password)
	switch {
	case errors.Is(err, tokens.ErrNotFound), errors.Is(err, tokens.ErrBadPassword):
		// Deleted, or replaced by another password's tokens since.
		log.Debug(fmt.Sprintf("keep-alive stops for %s: the stored tokens are gone or belong to another password", printable(acct.Name)))
		return time.Time{}, errKeepAliveStop
	case err != nil:
		log.Warn(fmt.Sprintf("keep-alive: cannot read the token store for %s: %v; retrying later", printable(acct.Name), err), "reason", err.Error())
		return time.Time{}, err
	}
	rec = m.backgroundMerge(acct.Name, rec)
	eff := acct
	if eff.ClientSecret == "" {
		eff.ClientSecret = rec.ClientSecret
	}
	if eff.ClientSecret == "" && flow == config.FlowClientCredentials && g.UseLoginPasswordAsClientCredentialsSecret {
		eff.ClientSecret = password
	}

	var form url.Values
	switch {
	case rec.RefreshToken != "":
		form, err = refreshForm(eff, rec.RefreshToken, m.signer)
	case flow == config.FlowClientCredentials || flow == config.FlowServiceAccount || flow == config.FlowPassword:
		form, err = flowForm(eff, flow, acct.Name, password, m.signer)
	default:
		// An interactive flow without a refresh token needs a person.
		return time.Time{}, errKeepAliveStop
	}
	if err != nil {
		return time.Time{}, m.keepAliveRefused(log, acct.Name, flow, err.Error(), m.requestError(acct.Name, err))
	}
	tr, err := m.post(ctx, eff, form)
	if err != nil {
		e := m.requestError(acct.Name, err)
		if errors.Is(err, ErrProviderRefused) {
			return time.Time{}, m.keepAliveRefused(log, acct.Name, flow, e.reason(), e)
		}
		log.Warn(fmt.Sprintf("keep-alive: the background token request for %s failed; retrying later", printable(acct.Name)), "reason", e.reason())
		return time.Time{}, err
	}
	if _, err := m.save(ctx, log, acct, eff, g, flow, password, mac, rec, tr, false); err != nil {
		return time.Time{}, err
	}
	m.cacheMu.RLock()
	expiry := m.cache[acct.Name].expiry
	m.cacheMu.RUnlock()
	log.Debug(fmt.Sprintf("keep-alive: the tokens of %s were refreshed in the background", printable(acct.Name)), "token_expiry", expiry.UTC().Format(time.RFC3339))
	return expiry, nil
}

// keepAliveRefused reports a refusal the way a login's is reported (status
// failing, a refresh-failed notification), so an admin hears of a dead
// refresh token before a mailer does, and stops the keep-alive.
func (m *Manager) keepAliveRefused(log *slog.Logger, account string, flow config.Flow, reason string, err error) error {
	log.Warn(fmt.Sprintf("keep-alive stops for %s: the provider refused the background refresh; the next login tries again", printable(account)), "reason", reason)
	m.status.failing(account, flow, reason)
	if m.onEvent != nil && errors.Is(err, ErrProviderRefused) {
		m.onEvent(Event{Account: account, Refused: true,
			Status: AccountStatus{State: StateFailing, Flow: flow, Reason: reason}})
	}
	return errKeepAliveStop
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
