package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

// realStore is a FileStore with real derivations at a count that keeps
// tests quick but a derivation long enough (~0.1 s) to pause.
func realStore(t testing.TB, path string, keys *tokens.KeyCache) *tokens.FileStore {
	return tokens.NewFileStore(path, tokens.WithCodec(&tokens.Codec{Keys: keys, Iterations: 300_000}),
		tokens.WithLogger(slog.New(slog.DiscardHandler)))
}

// TestTrustedLoginPausesGuesses: after a restart, the mailer's correct
// login from an address that logged in before (recorded in the trust
// file) does not wait for the guess that holds the only derivation slot:
// the guess pauses, the mailer's derivation is the only one to complete
// while it waits, and the guess then resumes and fails as it should.
func TestTrustedLoginPausesGuesses(t *testing.T) {
	dir := t.TempDir()
	tokPath, trustPath := filepath.Join(dir, "tokens.cache"), filepath.Join(dir, TrustFileName)
	seed := realStore(t, tokPath, tokens.NewKeyCache(0))
	if err := seed.Put(context.Background(), alice, secretPassword, tokens.Record{AccessToken: "AT-stored", AccessTokenExpiry: time.Now().Add(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	newMgr := func(keys *tokens.KeyCache) *Manager {
		m, err := NewManager(Options{Accounts: newSource(config.Global{}, ccAccount(alice)), Store: realStore(t, tokPath, keys),
			TrustFile: trustPath, Guard: GuardOptions{Derivations: 1, Queue: 64}})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	mailer := WithClientAddr(context.Background(), "127.0.0.1:50000")

	// Before the restart: one success from the mailer's address.
	if _, err := newMgr(tokens.NewKeyCache(0)).AccessToken(mailer, alice, secretPassword); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(trustPath)
	if err != nil {
		t.Fatalf("no trust file after a success: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("trust file mode %v, want 0600", st.Mode().Perm())
	}

	// The restart, and a storm that holds the only slot.
	keys := tokens.NewKeyCache(0)
	m := newMgr(keys)
	if !m.guard.trusted(alice, "127.0.0.1") {
		t.Fatal("the restarted Manager does not trust the mailer's address")
	}
	stormCtx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	for i := range 3 {
		ctx := WithClientAddr(stormCtx, fmt.Sprintf("127.0.1.%d:1", i+1))
		wg.Go(func() {
			_, err := m.AccessToken(ctx, alice, fmt.Sprintf("guess-%d", i))
			if !errors.Is(err, ErrBadPassword) {
				t.Errorf("guess %d: %v, want ErrBadPassword", i, err)
			}
		})
	}
	waitFor(t, func() bool { m.guard.mu.Lock(); defer m.guard.mu.Unlock(); return m.guard.running == 1 })
	d0 := keys.Derivations()
	tok, err := m.AccessToken(mailer, alice, secretPassword)
	during := keys.Derivations() - d0
	if err != nil || tok != "AT-stored" {
		t.Fatalf("the mailer's login: %q, %v", tok, err)
	}
	if during != 1 {
		t.Errorf("%d derivations completed while the trusted login waited, want 1 (its own)", during)
	}
	wg.Wait() // the paused guesses resumed and failed
}

// TestTrustIsPerPairAndLost: a failure from a trusted address ends its
// trust for that account until its next success; a second login from a
// pair whose trusted login is under way is not trusted; addresses of other
// accounts are not trusted for this one.
func TestTrustIsPerPairAndLost(t *testing.T) {
	const bob = "bob@example.com"
	clock := newClock()
	g := newGuard(GuardOptions{Derivations: 2}, clock.Now, "", slog.New(slog.DiscardHandler))
	g.succeeded(alice, "127.0.0.1")
	g.succeeded(bob, "192.0.2.7")
	if !g.trusted(alice, "127.0.0.1") || g.trusted(alice, "192.0.2.7") || g.trusted(bob, "127.0.0.1") {
		t.Fatal("trust is not per account and address")
	}
	tk, err := g.admit(context.Background(), alice, "127.0.0.1", yes)
	if err != nil || !tk.w.trusted {
		t.Fatalf("a trusted pair's login: %v", err)
	}
	if g.trusted(alice, "127.0.0.1") {
		t.Error("a second login of the pair is trusted while the first derives")
	}
	tk.release()
	if !g.trusted(alice, "127.0.0.1") {
		t.Error("the pair is not trusted after its login ended")
	}
	g.failed(alice, "127.0.0.1")
	if g.trusted(alice, "127.0.0.1") {
		t.Error("a failed pair is still trusted")
	}
	g.succeeded(alice, "127.0.0.1")
	if !g.trusted(alice, "127.0.0.1") {
		t.Error("a success does not restore trust")
	}
	clock.Advance(trustUnused + time.Hour)
	if g.trusted(alice, "127.0.0.1") {
		t.Error("trust outlives 90 days without a success")
	}
}

// TestTrustFile: the file is written at 0600 whatever its mode was, only
// when something a restart needs changed (a new pair, a lost or regained
// trust, a time over a day old), read back by the next guard, bounded, and
// a corrupt or future file costs one warning and no trust, never an error.
func TestTrustFile(t *testing.T) {
	const bob = "bob@example.com"
	dir := t.TempDir()
	path := filepath.Join(dir, "state", TrustFileName)
	clock := newClock()
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	g := newGuard(GuardOptions{}, clock.Now, path, log)

	g.succeeded(alice, "127.0.0.1")
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	// A second success within the day: no write (the removed file stays
	// away).
	os.Remove(path)
	clock.Advance(time.Hour)
	g.succeeded(alice, "127.0.0.1")
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a known pair's success within a day rewrote the file (%v)", err)
	}
	// Over a day: written again, at 0600.
	clock.Advance(trustRefresh)
	if err := os.WriteFile(path, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.succeeded(alice, "127.0.0.1")
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("after a day: %v, %v; want the file rewritten at 0600", st, err)
	}
	// A failure is written (a restart must not trust the pair again).
	g.failed(alice, "127.0.0.1")
	var f trustFile
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &f); err != nil || f.Version != TrustVersion || len(f.Trusted) != 1 || !f.Trusted[0].FailedSince {
		t.Fatalf("file after a failure: %s (%v)", data, err)
	}
	if g2 := newGuard(GuardOptions{}, clock.Now, path, log); g2.trusted(alice, "127.0.0.1") {
		t.Error("a restart trusts a pair that failed")
	}
	g.succeeded(alice, "127.0.0.1")
	if g2 := newGuard(GuardOptions{}, clock.Now, path, log); !g2.trusted(alice, "127.0.0.1") {
		t.Error("a restart does not trust the pair that succeeded")
	}

	// Bounds: 16 addresses per account, the newest kept.
	for i := range 20 {
		clock.Advance(time.Minute)
		g.succeeded(bob, fmt.Sprintf("192.0.2.%d", i))
	}
	g2 := newGuard(GuardOptions{}, clock.Now, path, log)
	n := 0
	for p := range g2.trust {
		if p.account == bob {
			n++
		}
	}
	if n != maxTrustPerAccount || !g2.trusted(bob, "192.0.2.19") || g2.trusted(bob, "192.0.2.0") {
		t.Errorf("%d addresses kept for bob, want the newest %d", n, maxTrustPerAccount)
	}
	// 90 days unused: gone on load.
	clock.Advance(trustUnused + time.Hour)
	if g3 := newGuard(GuardOptions{}, clock.Now, path, log); len(g3.trust) != 0 {
		t.Errorf("%d pairs unused for 90 days loaded", len(g3.trust))
	}

	// Corrupt, and from a newer orbit: one warning each, no trust.
	for _, bad := range []string{`{"version": 1, "trusted": [`, `{"version": 2, "trusted": []}`} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		logs.Reset()
		if g := newGuard(GuardOptions{}, clock.Now, path, log); len(g.trust) != 0 {
			t.Errorf("%q: trust loaded", bad)
		}
		if c := strings.Count(logs.String(), "cannot read the trusted client addresses"); c != 1 {
			t.Errorf("%q: %d warnings, want 1:\n%s", bad, c, logs.String())
		}
	}
	// Unreadable (a directory in its place): the same.
	os.Remove(path)
	os.Mkdir(path, 0o700)
	logs.Reset()
	if g := newGuard(GuardOptions{}, clock.Now, path, log); len(g.trust) != 0 || !strings.Contains(logs.String(), "cannot read") {
		t.Errorf("unreadable file: %d pairs, log %s", len(g.trust), logs.String())
	}
}

// TestPausedGuessWhoseClientLeftStops: a guess paused for a trusted login
// whose client hangs up meanwhile does not resume: its derivation stops
// and its slot is free for others.
func TestPausedGuessWhoseClientLeftStops(t *testing.T) {
	g := newGuard(GuardOptions{Derivations: 1}, time.Now, "", slog.New(slog.DiscardHandler))
	g.succeeded(alice, "127.0.0.1")
	guessCtx, leave := context.WithCancel(context.Background())
	guess, err := g.admit(guessCtx, alice, "127.0.0.9", yes)
	if err != nil {
		t.Fatal(err)
	}
	if err := guess.checkpoint(context.Background()); err != nil {
		t.Fatalf("a checkpoint with no trusted login: %v", err)
	}
	trusted, err := g.admit(context.Background(), alice, "127.0.0.1", yes)
	if err != nil {
		t.Fatal(err)
	}
	paused := make(chan error, 1)
	go func() { paused <- guess.checkpoint(context.Background()) }()
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.running == 0 && len(g.waiters) == 1 })
	select {
	case err := <-paused:
		t.Fatalf("the guess went on while a trusted login derives: %v", err)
	default:
	}
	leave()
	if err := <-paused; !errors.Is(err, context.Canceled) {
		t.Errorf("the paused guess whose client left: %v, want it stopped", err)
	}
	guess.release() // as open() does; must not free a second slot
	trusted.release()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running != 0 || g.trustedRunning != 0 || g.trustedActive != 0 || len(g.waiters) != 0 {
		t.Errorf("left over: running %d, trusted %d/%d, waiters %d", g.running, g.trustedRunning, g.trustedActive, len(g.waiters))
	}
}
