package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
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
//   - A client address that logged in to the account with its password
//     before (a success recorded in the trust file, kept across restarts:
//     trust.go) and has not failed for it since is trusted: its login
//     derives at once, and while it does, every other derivation pauses at
//     its next checkpoint (tokens.WithCheckpoint, every ~1.5 ms) and gives
//     up its slot until no trusted derivation is left, then resumes where
//     it stopped. So the mailer's first login after a restart costs one
//     derivation on an otherwise idle CPU, however many guesses run. One
//     trusted derivation per account and address at a time: a second one
//     from the pair (someone else on the mailer's host guessing) is ranked
//     like any other, and a failure ends the pair's trust until its next
//     success.
//   - Otherwise at most Derivations run at once; one client address, and
//     all the addresses that have failed together, may hold all but one
//     of the slots, so a client that has not failed finds one at once.
//   - A free slot goes to the waiting login whose address has the fewest
//     recent failures (then one that was paused, then the newest): a
//     client that has not failed is served before the ones that have, and
//     before a burst that arrived just ahead of it.
//   - After FreeFailures failures an address waits 1 s, 2 s, 4 s ... (at
//     most MaxDelay) before each further attempt; an account's failures
//     delay the same way, but only addresses that have failed themselves,
//     so a storm against an account does not delay a client that has not
//     failed. Waiting logins hold no slot; more than Queue waiting from
//     one address are refused at once. A trusted login skips all this.
//   - A password the provider refused (password flow) keeps other new
//     passwords for that account from being relayed for the same delay.
//   - A paused derivation whose client has left stops instead of
//     resuming.
//
// A success resets its address and account.
type guard struct {
	base GuardOptions // the Manager's options, before defaults
	now  func() time.Time

	// opts is base with [emailproxy]'s settings and defaults (under mu).
	opts GuardOptions

	mu sync.Mutex
	// running counts untrusted derivations holding a slot.
	running int
	// suspect counts running derivations of addresses that have failed;
	// they may hold all slots but one, which stays for clean clients.
	suspect int
	addrs   map[string]*failures
	accts   map[string]*failures
	relays  map[string]*failures
	waiters []*waiter
	seq     uint64

	// trust holds the pairs that logged in with the account's password;
	// file persists it, trustGen numbers its snapshots.
	trust    map[trustPair]*trustState
	file     *trustStore
	trustGen uint64
	// trustBusy: the pair has a trusted login admitted (waiting or
	// deriving); trustedActive counts those logins, trustedRunning the
	// ones deriving. While trustedActive > 0 untrusted derivations pause.
	trustBusy      map[trustPair]bool
	trustedActive  int
	trustedRunning int

	// Counters for metrics (GuardStats): logins refused because too many
	// waited from their address, logins that waited out a back-off,
	// derivations paused for a trusted login, and new passwords not
	// relayed because the provider had just refused one (counted by the
	// Manager).
	refusedQueue, delayed, paused, relayWithheld atomic.Uint64
}

type failures struct {
	count   int
	last    time.Time
	running int // derivations running (addresses only)
	waiting int // logins waiting (addresses only)
}

// A waiter's state.
const (
	waiting = iota // in g.waiters, for a first slot or (paused) to resume
	running        // holds a slot (or, trusted, derives)
	done           // released, or gave up
)

type waiter struct {
	addr    string
	pair    trustPair
	trusted bool
	seq     uint64
	granted chan struct{}
	state   int
	suspect bool // set when granted: the address had failures
	paused  bool // gave its slot up once: resumes before fresh equals
}

func newGuard(o GuardOptions, now func() time.Time, trustFile string, log *slog.Logger) *guard {
	g := &guard{opts: withDefaults(o), base: o, now: now, addrs: map[string]*failures{}, accts: map[string]*failures{}, relays: map[string]*failures{},
		file: &trustStore{path: trustFile, log: log}, trustBusy: map[trustPair]bool{}}
	g.trust = g.file.load(now())
	return g
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

// addrWait is how long the next attempt from addr must wait (0 for none).
func (g *guard) addrWait(addr string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.wait(g.addrs[addr], g.now())
}

// delayEnd is until when the next attempts for account from addrs wait
// (the latest of them; zero when none does). account "" leaves the
// account's own back-off out.
func (g *guard) delayEnd(account string, addrs []string) time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	var end time.Time
	acct := g.accts[account]
	for _, addr := range addrs {
		a := g.addrs[addr]
		if a == nil || a.count == 0 {
			continue // unknown, or reset by a success
		}
		// An account's back-off delays only addresses that have failed,
		// as these have.
		for _, f := range []*failures{a, acct} {
			if d := g.delay(f); d > 0 && f.last.Add(d).After(end) {
				end = f.last.Add(d)
			}
		}
	}
	return end
}

// delayedAddresses counts the client addresses whose next attempt waits.
func (g *guard) delayedAddresses() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	now, n := g.now(), 0
	for _, a := range g.addrs {
		if g.wait(a, now) > 0 {
			n++
		}
	}
	return n
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

// trustedLocked reports whether pair logged in with the account's
// password within trustUnused and has not failed since.
func (g *guard) trustedLocked(p trustPair) bool {
	s := g.trust[p]
	return p.addr != "" && s != nil && !s.failed && g.now().Sub(s.last) <= trustUnused
}

// trusted reports whether a login from addr to account would take the
// trusted path now.
func (g *guard) trusted(account, addr string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := trustPair{account, addr}
	return g.trustedLocked(p) && !g.trustBusy[p]
}

// ticket is an admitted login's hold on the guard: release once the
// derivation is done; checkpoint is the derivation's (tokens.Checkpoint).
type ticket struct {
	g    *guard
	w    *waiter // nil: no slot was needed
	ctx  context.Context
	once sync.Once
	// ahead: for a trusted login, the other logins deriving or waiting
	// when it arrived, which it went ahead of.
	ahead int
}

func (t *ticket) release() {
	if t == nil || t.w == nil {
		return
	}
	t.once.Do(func() {
		t.g.mu.Lock()
		t.g.finishLocked(t.w)
		t.g.mu.Unlock()
	})
}

// checkpoint pauses an untrusted derivation while a trusted one is
// admitted: it gives its slot up, waits to be granted one again (ranked
// as a waiter that was paused), and stops if its client leaves meanwhile.
func (t *ticket) checkpoint(context.Context) error {
	g, w := t.g, t.w
	g.mu.Lock()
	if w.trusted || w.state != running || g.trustedActive == 0 {
		g.mu.Unlock()
		return nil
	}
	g.vacateLocked(w)
	g.paused.Add(1)
	w.state, w.paused = waiting, true
	w.granted = make(chan struct{})
	g.waiters = append(g.waiters, w)
	g.grantLocked()
	granted := w.granted
	g.mu.Unlock()
	select {
	case <-granted:
		return nil
	case <-t.ctx.Done():
		t.release()
		return t.ctx.Err()
	}
}

// admit waits out addr's back-off and, when needsSlot says so (the login
// will derive a key; asked only after the cheap checks), for a derivation
// slot. A trusted pair skips the back-off and goes first. The ticket's
// release is to be called once the derivation is done.
func (g *guard) admit(ctx context.Context, account, addr string, needsSlot func() bool) (*ticket, error) {
	pair := trustPair{account, addr}
	g.mu.Lock()
	if g.trustedLocked(pair) && !g.trustBusy[pair] {
		g.trustBusy[pair] = true
		g.mu.Unlock()
		if !needsSlot() {
			g.mu.Lock()
			delete(g.trustBusy, pair)
			g.mu.Unlock()
			return &ticket{}, nil
		}
		return g.enqueue(ctx, &waiter{addr: addr, pair: pair, trusted: true})
	}
	a := g.entry(g.addrs, addr)
	if a.waiting >= g.opts.Queue {
		wait := g.wait(a, g.now())
		g.mu.Unlock()
		g.refusedQueue.Add(1)
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
		g.delayed.Add(1)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}

	if !needsSlot() {
		return &ticket{}, nil
	}
	return g.enqueue(ctx, &waiter{addr: addr, pair: pair})
}

// enqueue waits for w to be granted a slot, or leaves the queue when ctx
// ends.
func (g *guard) enqueue(ctx context.Context, w *waiter) (*ticket, error) {
	g.mu.Lock()
	g.seq++
	w.seq, w.state, w.granted = g.seq, waiting, make(chan struct{})
	if w.trusted {
		g.trustedActive++
	}
	t := &ticket{g: g, w: w, ctx: ctx}
	if w.trusted {
		t.ahead = g.running + len(g.waiters)
	}
	g.waiters = append(g.waiters, w)
	g.grantLocked()
	g.mu.Unlock()
	select {
	case <-w.granted:
		return t, nil
	case <-ctx.Done():
		t.release()
		return nil, ctx.Err()
	}
}

func (g *guard) perAddr() int { return max(1, g.opts.Derivations-1) }

// grantLocked hands free slots to the best waiters: trusted ones first
// (in arrival order), untrusted ones only while no trusted login is
// admitted.
func (g *guard) grantLocked() {
	for {
		best := -1
		for i, w := range g.waiters {
			if w.trusted && (best < 0 || w.seq < g.waiters[best].seq) {
				best = i
			}
		}
		if best >= 0 {
			if g.trustedRunning >= g.opts.Derivations {
				return
			}
			w := g.waiters[best]
			g.waiters = slices.Delete(g.waiters, best, best+1)
			g.trustedRunning++
			w.state = running
			close(w.granted)
			continue
		}
		if g.trustedActive > 0 || g.running >= g.opts.Derivations {
			return
		}
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
		g.waiters = slices.Delete(g.waiters, best, best+1)
		g.running++
		a := g.entry(g.addrs, w.addr)
		a.running++
		if w.suspect = a.count > 0; w.suspect {
			g.suspect++
		}
		w.state = running
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
	// A paused derivation keeps its place: it has done part of its work.
	if x.paused != y.paused {
		return x.paused
	}
	// Newest first among equals: a burst of guesses that arrived together
	// does not make a login that arrives after it wait for all of it, and
	// the burst's own retries rank lower once they have failed.
	return x.seq > y.seq
}

// vacateLocked gives up the slot an untrusted running w holds.
func (g *guard) vacateLocked(w *waiter) {
	g.running--
	if w.suspect {
		g.suspect--
	}
	if a := g.addrs[w.addr]; a != nil && a.running > 0 {
		a.running--
	}
}

// finishLocked ends w wherever it is (waiting, paused or running) and
// hands on what it held.
func (g *guard) finishLocked(w *waiter) {
	switch w.state {
	case waiting:
		if i := slices.Index(g.waiters, w); i >= 0 {
			g.waiters = slices.Delete(g.waiters, i, i+1)
		}
	case running:
		if w.trusted {
			g.trustedRunning--
		} else {
			g.vacateLocked(w)
		}
	case done:
		return
	}
	if w.trusted {
		g.trustedActive--
		delete(g.trustBusy, w.pair)
	}
	w.state = done
	g.grantLocked()
}

// failed records a wrong password from addr for account; the pair is no
// longer trusted until its next success.
func (g *guard) failed(account, addr string) {
	g.mu.Lock()
	now := g.now()
	for _, f := range []*failures{g.entry(g.addrs, addr), g.entry(g.accts, account)} {
		f.count++
		f.last = now
	}
	var save func()
	if s := g.trust[trustPair{account, addr}]; s != nil && !s.failed {
		s.failed = true
		save = g.trustChangedLocked(now)
	}
	g.mu.Unlock()
	if save != nil {
		save()
	}
}

// succeeded forgets the failures of addr and account and records (or
// refreshes) the pair's trust.
func (g *guard) succeeded(account, addr string) {
	g.mu.Lock()
	if a := g.addrs[addr]; a != nil {
		a.count = 0
	}
	delete(g.accts, account)
	delete(g.relays, account)
	var save func()
	if addr != "" {
		now := g.now()
		p := trustPair{account, addr}
		s := g.trust[p]
		// Written only when something a restart needs changed: a new
		// pair, a failed one trusted again, or a time over a day old.
		if s == nil || s.failed || now.Sub(s.last) > trustRefresh {
			if s == nil {
				s = &trustState{}
				g.trust[p] = s
			}
			s.last, s.failed = now, false
			save = g.trustChangedLocked(now)
		}
	}
	g.mu.Unlock()
	if save != nil {
		save()
	}
}

// trustChangedLocked bounds the trust map and returns the write of its
// snapshot, to run after g.mu is released.
func (g *guard) trustChangedLocked(now time.Time) func() {
	bound(g.trust, now)
	g.trustGen++
	f, gen := snapshot(g.trust), g.trustGen
	return func() { g.file.write(f, gen) }
}

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
