package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

// derivingStore is a memStore whose every Get stands for a key derivation:
// it says so (NeedsKeyDerivation) and takes its time, and it records the
// order in which Gets started.
type derivingStore struct {
	*memStore
	cost    time.Duration
	mu      sync.Mutex
	started []string // the password of each Get, in order
}

func (s *derivingStore) NeedsKeyDerivation(string, string) bool { return true }

func (s *derivingStore) Get(ctx context.Context, account, password string) (tokens.Record, error) {
	s.mu.Lock()
	s.started = append(s.started, password)
	s.mu.Unlock()
	time.Sleep(s.cost)
	return s.memStore.Get(ctx, account, password)
}

func (s *derivingStore) startedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.started)
}

// TestStormDoesNotDelayTheCorrectLogin: 30 clients from another address
// send random passwords for alice; the mailer's correct login, arriving in
// the middle, starts its derivation before any storm derivation that was
// still waiting (today's main queued it behind all of them on the
// account's lock).
func TestStormDoesNotDelayTheCorrectLogin(t *testing.T) {
	store := &derivingStore{memStore: newMemStore(), cost: 50 * time.Millisecond}
	h := newHarness(t, config.Global{}, []config.Account{ccAccount(alice)}, func(o *Options) {
		o.Store = store
		o.Guard = GuardOptions{Derivations: 2, Queue: 64}
		o.Now = time.Now
	})
	store.set(alice, secretPassword, tokens.Record{AccessToken: "AT-stored", AccessTokenExpiry: time.Now().Add(time.Hour)})

	stormCtx := WithClientAddr(context.Background(), "127.0.0.2:40000")
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			_, err := h.m.AccessToken(stormCtx, alice, fmt.Sprintf("guess-%d", i))
			if !errors.Is(err, ErrBadPassword) && !errors.Is(err, ErrTooManyAttempts) {
				t.Errorf("guess %d: %v", i, err)
			}
		})
	}
	waitFor(t, func() bool { return store.startedCount() >= 1 })
	before := store.startedCount()
	start := time.Now()
	tok, err := h.m.AccessToken(WithClientAddr(context.Background(), "127.0.0.1:50000"), alice, secretPassword)
	took := time.Since(start)
	if err != nil || tok != "AT-stored" {
		t.Fatalf("correct login during the storm: %q, %v", tok, err)
	}
	store.mu.Lock()
	var overtook int
	for _, pw := range store.started[before:] {
		if pw == secretPassword {
			break
		}
		overtook++
	}
	store.mu.Unlock()
	wg.Wait()
	if overtook > 1 {
		t.Errorf("%d storm derivations started after the correct login arrived and before it (took %v)", overtook, took)
	}
}

// TestGuardBackoff: failures delay their own address (after the free
// ones, doubling, capped), an account's failures delay only addresses that
// failed themselves, a success resets, and a full queue refuses at once.
func TestGuardBackoff(t *testing.T) {
	clock := newClock()
	g := newGuard(GuardOptions{FreeFailures: 3, MaxDelay: 10 * time.Second, Queue: 1, Derivations: 2}, clock.Now, "", slog.New(slog.DiscardHandler))
	for range 5 {
		g.failed(alice, "10.0.0.9")
	}
	if d := g.wait(g.addrs["10.0.0.9"], clock.Now()); d != 4*time.Second {
		t.Errorf("after 5 failures (3 free) the address waits %v, want 4s", d)
	}
	for range 10 {
		g.failed(alice, "10.0.0.9")
	}
	if d := g.wait(g.addrs["10.0.0.9"], clock.Now()); d != 10*time.Second {
		t.Errorf("the delay is not capped: %v", d)
	}
	// A clean address is not delayed by the account's failures.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	tk, err := g.admit(ctx, alice, "127.0.0.1", yes)
	if err != nil {
		t.Fatalf("a clean address: %v", err)
	}
	tk.release()
	// A failing address is: with one failure of its own it waits out the
	// account's delay.
	g.failed(alice, "10.0.0.7")
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := g.admit(short, alice, "10.0.0.7", yes); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("an address that failed, on a failing account: %v, want to wait", err)
	}
	// The queue: one waiting login per address here; the next is refused.
	waiting := make(chan error, 1)
	go func() {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := g.admit(c, alice, "10.0.0.9", yes)
		waiting <- err
	}()
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.addrs["10.0.0.9"].waiting == 1 })
	if _, err := g.admit(context.Background(), alice, "10.0.0.9", yes); !errors.Is(err, ErrTooManyAttempts) {
		t.Errorf("over the queue: %v, want ErrTooManyAttempts", err)
	}
	<-waiting
	// A success resets.
	g.succeeded(alice, "10.0.0.9")
	if d := g.wait(g.addrs["10.0.0.9"], clock.Now()); d != 0 {
		t.Errorf("after a success the address still waits %v", d)
	}
}

// TestPasswordStormNotRelayedOneForOne: 30 wrong passwords for a
// password-flow account reach the provider as a handful of requests, not
// 30; those relayed are refused by the provider, the rest get the
// temporary "retry in N s" (they were never checked, and one of them might
// be the right password typed after a typo).
func TestPasswordStormNotRelayedOneForOne(t *testing.T) {
	h := newHarness(t, defaultGlobal(), []config.Account{passwordAccount(alice)}, func(o *Options) { o.Now = time.Now })
	refused := jsonAnswer(http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "AADSTS50126: Error validating credentials due to invalid username or password."})
	for range 40 {
		h.prov.script(GrantPassword, refused)
	}
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i := range 30 {
		wg.Go(func() {
			ctx := WithClientAddr(context.Background(), fmt.Sprintf("127.0.0.%d:1000", 2+i))
			_, err := h.m.AccessToken(ctx, alice, fmt.Sprintf("guess-%d", i))
			switch {
			case errors.Is(err, ErrProviderRefused):
				bad.Add(1)
			case errors.Is(err, ErrTooManyAttempts), errors.Is(err, ErrBadPassword):
			default:
				t.Errorf("guess %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if n := h.prov.count(GrantPassword); n > 3 {
		t.Errorf("30 wrong passwords made %d password grants, want at most 3", n)
	}
	if n := bad.Load(); n < 1 || n > 3 {
		t.Errorf("%d of 30 refused by the provider, want 1 to 3 (the relayed ones)", n)
	}
}

func yes() bool { return true }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLeftClientGivesUpItsPlace: a guess whose client disconnects while it
// waits for a derivation slot leaves the queue instead of deriving later
// for nobody.
func TestLeftClientGivesUpItsPlace(t *testing.T) {
	store := &derivingStore{memStore: newMemStore(), cost: 300 * time.Millisecond}
	h := newHarness(t, config.Global{}, []config.Account{ccAccount(alice)}, func(o *Options) {
		o.Store = store
		o.Guard = GuardOptions{Derivations: 1}
		o.Now = time.Now
	})
	store.set(alice, secretPassword, tokens.Record{AccessToken: "AT", AccessTokenExpiry: time.Now().Add(time.Hour)})
	first := make(chan error, 1)
	go func() {
		_, err := h.m.AccessToken(WithClientAddr(context.Background(), "127.0.0.5:1"), alice, "guess-1")
		first <- err
	}()
	waitFor(t, func() bool { return store.startedCount() == 1 })
	ctx, cancel := context.WithTimeout(WithClientAddr(context.Background(), "127.0.0.6:1"), 50*time.Millisecond)
	defer cancel()
	if _, err := h.m.AccessToken(ctx, alice, "guess-2"); err == nil {
		t.Fatal("a guess logged in")
	}
	<-first
	time.Sleep(400 * time.Millisecond)
	if n := store.startedCount(); n != 1 {
		t.Errorf("%d derivations, want 1: the guess whose client left still derived", n)
	}
}
