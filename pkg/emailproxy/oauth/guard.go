package oauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"
)

// ErrTooManyAttempts: the login was refused before any work because its
// client address (or its account) failed too often lately; the reply says
// when to retry.
var ErrTooManyAttempts = errors.New("too many failed logins")

// GuardOptions bound what failed logins may cost. The engine fills them
// from [emailproxy]; zero values take the defaults.
type GuardOptions struct {
	// FreeFailures is how many failed logins a client address (or an
	// account) may have before its next attempts are delayed
	// (DefaultFreeFailures).
	FreeFailures int
	// MaxDelay caps the delay, which doubles with each further failure
	// from one second (DefaultMaxDelay). It also caps how long the
	// provider is spared relayed passwords after it refused one.
	MaxDelay time.Duration
	// Queue is how many of one client address's logins may wait for a key
	// derivation at once; more are refused at once (DefaultQueue).
	Queue int
	// Derivations is how many key derivations run at once
	// (GOMAXPROCS by default).
	Derivations int
}

// Defaults of GuardOptions.
const (
	DefaultFreeFailures = 3
	DefaultMaxDelay     = 60 * time.Second
	DefaultQueue        = 8
	baseDelay           = time.Second
	// maxTracked bounds the failure records kept (addresses and accounts
	// each); the oldest quiet ones go first.
	maxTracked = 4096
)

type clientAddrKey struct{}

// WithClientAddr tells the token layer which client a login comes from
// ("ip:port" or "ip"), so failed logins back off per client address. The
// proxy sets it on every login.
func WithClientAddr(ctx context.Context, addr string) context.Context {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	return context.WithValue(ctx, clientAddrKey{}, addr)
}

func clientAddr(ctx context.Context) string {
	a, _ := ctx.Value(clientAddrKey{}).(string)
	return a
}

// guard is the admission control in front of key derivations (PBKDF2,
// ~0.4 s of CPU each) and password relays to the provider. Without it 30
// clients sending random passwords for one account queued 30 derivations,
// and the one correct login waited behind all of them.
//
//   - At most Derivations run at once; one client address, and all the
//     addresses that have failed together, may hold all but one of the
//     slots, so a client that has not failed finds one at once.
//   - A free slot goes to the waiting login whose address has the fewest
//     recent failures (then the newest): a client that has not failed is
//     served before the ones that have, and before a burst that arrived
//     just ahead of it.
//   - After FreeFailures failures an address waits 1 s, 2 s, 4 s ... (at
//     most MaxDelay) before each further attempt; an account's failures
//     delay the same way, but only addresses that have failed themselves,
//     so a storm against an account does not delay a client that has not
//     failed. Waiting logins hold no slot; more than Queue waiting from
//     one address are refused at once.
//   - A password the provider refused (password flow) keeps other new
//     passwords for that account from being relayed for the same delay.
//
// A success resets its address and account.
type guard struct {
	base GuardOptions // the Manager's options, before defaults
	now  func() time.Time

	// opts is base with [emailproxy]'s settings and defaults (under mu).
	opts GuardOptions

	mu      sync.Mutex
	running int
	// suspect counts running derivations of addresses that have failed;
	// they may hold all slots but one, which stays for clean clients.
	suspect int
	addrs   map[string]*failures
	accts   map[string]*failures
	relays  map[string]*failures
	waiters []*waiter
	seq     uint64
}

type failures struct {
	count   int
	last    time.Time
	running int // derivations running (addresses only)
	waiting int // logins waiting (addresses only)
}

type waiter struct {
	addr    string
	seq     uint64
	granted chan struct{}
	suspect bool // set when granted: the address had failures
}

func newGuard(o GuardOptions, now func() time.Time) *guard {
	return &guard{opts: withDefaults(o), base: o, now: now, addrs: map[string]*failures{}, accts: map[string]*failures{}, relays: map[string]*failures{}}
}

// configure applies [emailproxy]'s settings (zero: the Manager's option,
// else the default), so a reload changes them for the next login.
func (g *guard) configure(free int, maxDelay time.Duration, queue int) {
	o := g.base
	if free > 0 {
		o.FreeFailures = free
	}
	if maxDelay > 0 {
		o.MaxDelay = maxDelay
	}
	if queue > 0 {
		o.Queue = queue
	}
	o = withDefaults(o)
	g.mu.Lock()
	g.opts = o
	g.mu.Unlock()
}

func withDefaults(o GuardOptions) GuardOptions {
	if o.FreeFailures <= 0 {
		o.FreeFailures = DefaultFreeFailures
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultMaxDelay
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	if o.Derivations <= 0 {
		o.Derivations = runtime.GOMAXPROCS(0)
	}
	return o
}

// delay is how long after f.last the next attempt must wait.
func (g *guard) delay(f *failures) time.Duration {
	if f == nil || f.count < g.opts.FreeFailures {
		return 0
	}
	d := baseDelay
	for i := g.opts.FreeFailures; i < f.count && d < g.opts.MaxDelay; i++ {
		d *= 2
	}
	return min(d, g.opts.MaxDelay)
}

func (g *guard) wait(f *failures, now time.Time) time.Duration {
	if f == nil {
		return 0
	}
	return max(0, f.last.Add(g.delay(f)).Sub(now))
}

func (g *guard) entry(m map[string]*failures, key string) *failures {
	f := m[key]
	if f == nil {
		if len(m) >= maxTracked {
			g.evict(m)
		}
		f = &failures{}
		m[key] = f
	}
	return f
}

// evict drops the records that ask nothing of anyone any more, or else
// the oldest quiet one.
func (g *guard) evict(m map[string]*failures) {
	now := g.now()
	var oldest string
	for k, f := range m {
		if f.running > 0 || f.waiting > 0 {
			continue
		}
		if now.Sub(f.last) > g.opts.MaxDelay {
			delete(m, k)
			continue
		}
		if oldest == "" || f.last.Before(m[oldest].last) {
			oldest = k
		}
	}
	if len(m) >= maxTracked && oldest != "" {
		delete(m, oldest)
	}
}

// admit waits out addr's back-off and, when needsSlot says so (the login
// will derive a key; asked only after the cheap checks), for a derivation
// slot. It returns release, to call once the derivation is done.
func (g *guard) admit(ctx context.Context, account, addr string, needsSlot func() bool) (release func(), err error) {
	g.mu.Lock()
	a := g.entry(g.addrs, addr)
	if a.waiting >= g.opts.Queue {
		wait := g.wait(a, g.now())
		g.mu.Unlock()
		return nil, g.refusal(account, "from this client address", wait)
	}
	wait := g.wait(a, g.now())
	if a.count > 0 {
		wait = max(wait, g.wait(g.accts[account], g.now()))
	}
	a.waiting++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		a.waiting--
		g.mu.Unlock()
	}()

	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}

	if !needsSlot() {
		return func() {}, nil
	}
	g.mu.Lock()
	g.seq++
	w := &waiter{addr: addr, seq: g.seq, granted: make(chan struct{})}
	g.waiters = append(g.waiters, w)
	g.grantLocked()
	g.mu.Unlock()
	select {
	case <-w.granted:
	case <-ctx.Done():
		g.mu.Lock()
		select {
		case <-w.granted:
			// Granted meanwhile: hand the slot on.
			g.releaseLocked(w)
		default:
			g.removeLocked(w)
		}
		g.mu.Unlock()
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.releaseLocked(w)
			g.mu.Unlock()
		})
	}, nil
}

func (g *guard) perAddr() int { return max(1, g.opts.Derivations-1) }

// grantLocked hands free slots to the best waiters.
func (g *guard) grantLocked() {
	for g.running < g.opts.Derivations {
		best := -1
		for i, w := range g.waiters {
			a := g.addrs[w.addr]
			if a != nil && a.running >= g.perAddr() {
				continue
			}
			if a != nil && a.count > 0 && g.suspect >= g.perAddr() {
				continue
			}
			if best < 0 || better(g, w, g.waiters[best]) {
				best = i
			}
		}
		if best < 0 {
			return
		}
		w := g.waiters[best]
		g.waiters = append(g.waiters[:best], g.waiters[best+1:]...)
		g.running++
		a := g.entry(g.addrs, w.addr)
		a.running++
		if w.suspect = a.count > 0; w.suspect {
			g.suspect++
		}
		close(w.granted)
	}
}

func better(g *guard, x, y *waiter) bool {
	fx, fy := g.addrs[x.addr], g.addrs[y.addr]
	cx, cy := 0, 0
	if fx != nil {
		cx = fx.count
	}
	if fy != nil {
		cy = fy.count
	}
	if cx != cy {
		return cx < cy
	}
	// Newest first among equals: a burst of guesses that arrived together
	// does not make a login that arrives after it wait for all of it, and
	// the burst's own retries rank lower once they have failed.
	return x.seq > y.seq
}

func (g *guard) releaseLocked(w *waiter) {
	g.running--
	if w.suspect {
		g.suspect--
	}
	if a := g.addrs[w.addr]; a != nil && a.running > 0 {
		a.running--
	}
	g.grantLocked()
}

func (g *guard) removeLocked(w *waiter) {
	for i, x := range g.waiters {
		if x == w {
			g.waiters = append(g.waiters[:i], g.waiters[i+1:]...)
			return
		}
	}
}

// failed records a wrong password from addr for account.
func (g *guard) failed(account, addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	for _, f := range []*failures{g.entry(g.addrs, addr), g.entry(g.accts, account)} {
		f.count++
		f.last = now
	}
}

// succeeded forgets the failures of addr and account.
func (g *guard) succeeded(account, addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if a := g.addrs[addr]; a != nil {
		a.count = 0
	}
	delete(g.accts, account)
	delete(g.relays, account)
}

// relayAllowed reports whether a new password for account may go to the
// provider now; relayRefused records that the provider refused one.
func (g *guard) relayAllowed(account string) (time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.relays[account]
	if f == nil {
		return 0, true
	}
	// The first refusal already delays: a burst of guesses is relayed
	// about once per delay, not once per guess.
	d := baseDelay
	for i := 1; i < f.count && d < g.opts.MaxDelay; i++ {
		d *= 2
	}
	wait := f.last.Add(min(d, g.opts.MaxDelay)).Sub(g.now())
	return wait, wait <= 0
}

func (g *guard) relayRefused(account string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.entry(g.relays, account)
	f.count++
	f.last = g.now()
}

func (g *guard) refusal(account, from string, wait time.Duration) error {
	secs := int(wait.Round(time.Second) / time.Second)
	return &loginError{
		msg: fmt.Sprintf("Login failed for account %s - too many failed logins %s; retry in %d s", printable(account), from, max(secs, 1)),
		err: ErrTooManyAttempts,
	}
}
