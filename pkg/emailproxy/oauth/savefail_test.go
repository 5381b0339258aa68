package oauth

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/tokens"
)

func passwordAccount(name string) config.Account {
	a := ccAccount(name)
	a.Flow = config.FlowPassword
	return a
}

func fastStore(path string, opts ...tokens.Option) *tokens.FileStore {
	c := &tokens.Codec{Keys: tokens.NewKeyCache(0), Iterations: 2000, LegacyIterations: 500}
	return tokens.NewFileStore(path, append([]tokens.Option{tokens.WithCodec(c)}, opts...)...)
}

// TestReplacingTokensIsOneWrite: a new password's tokens replace the old
// ones with one Put and no Delete, so a crash between two writes cannot
// leave the account with neither.
func TestReplacingTokensIsOneWrite(t *testing.T) {
	h := newHarness(t, defaultGlobal(), []config.Account{passwordAccount(alice)})
	h.store.set(alice, "old-password", tokens.Record{AccessToken: "AT-old", AccessTokenExpiry: h.clock.Now().Add(time.Hour), RefreshToken: "RT-old"})
	if _, err := h.m.AccessToken(context.Background(), alice, "new-password"); err != nil {
		t.Fatal(err)
	}
	if d, p := h.store.deletes.Load(), h.store.puts.Load(); d != 0 || p != 1 {
		t.Errorf("replacing the tokens took %d deletes and %d puts, want 0 and 1", d, p)
	}
	if e, _ := h.store.entry(alice); e.password != "new-password" || e.rec.RefreshToken == "RT-old" {
		t.Errorf("stored entry: password %q, refresh token %q", e.password, e.rec.RefreshToken)
	}
}

// TestUnsavedTokensKeptForNextLogin: when the token store cannot be
// written, the rotated refresh token is kept in memory: the next refresh
// uses it (not the older one on disk) and it reaches the disk once writes
// work again.
func TestUnsavedTokensKeptForNextLogin(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.cache")
	// Writers lock in a directory that cannot be created while a file sits
	// at its path: reads work, every write fails (a full or read-only
	// state directory).
	blocker := filepath.Join(dir, "locks")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	store := fastStore(path, tokens.WithLockPath(filepath.Join(blocker, "tokens.lock")))
	h := newHarness(t, defaultGlobal(), []config.Account{passwordAccount(alice)}, func(o *Options) { o.Store = store })
	ctx := context.Background()

	if _, err := h.m.AccessToken(ctx, alice, secretPassword); err != nil {
		t.Fatal(err)
	}
	if !contains(store.Unsaved(), alice) {
		t.Fatalf("unsaved = %v, want alice's tokens kept", store.Unsaved())
	}
	// The access token runs out; the refresh must use the refresh token of
	// the failed save, RT-password-1.
	h.clock.Advance(2 * time.Hour)
	if _, err := h.m.AccessToken(ctx, alice, secretPassword); err != nil {
		t.Fatalf("login after expiry with the store unwritable: %v", err)
	}
	if rt := h.prov.lastForm(GrantRefreshToken).Get("refresh_token"); rt != "RT-password-1" {
		t.Errorf("refreshed with %q, want the unsaved RT-password-1", rt)
	}
	if n := h.prov.count(GrantPassword); n != 1 {
		t.Errorf("%d password grants, want 1 (the unsaved tokens were used)", n)
	}

	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	if err := store.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rec, err := fastStore(path).Get(ctx, alice, secretPassword)
	if err != nil || rec.RefreshToken != "RT-refresh_token-1" {
		t.Errorf("on disk after the flush: %+v, %v", rec, err)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestHelperProcessReplace is not a test: TestKillDuringReplacement runs
// the test binary with it selected, and kills it at random moments while
// it replaces alice's tokens with another password's again and again.
func TestHelperProcessReplace(t *testing.T) {
	path := os.Getenv("ORBIT_OAUTH_REPLACE_HELPER")
	if path == "" {
		t.Skip("helper process for TestKillDuringReplacement")
	}
	h := newHarness(t, defaultGlobal(), []config.Account{passwordAccount(alice)}, func(o *Options) { o.Store = fastStore(path) })
	for i := 0; ; i++ {
		pw := []string{"password-A", "password-B"}[i%2]
		if _, err := h.m.AccessToken(context.Background(), alice, pw); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKillDuringReplacement: SIGKILL at any moment of a password change
// leaves the store holding one of the two passwords' tokens.
func TestKillDuringReplacement(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a helper process 20 times")
	}
	path := filepath.Join(t.TempDir(), "tokens.cache")
	for round := range 20 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessReplace$", "-test.count=1")
		cmd.Env = append(os.Environ(), "ORBIT_OAUTH_REPLACE_HELPER="+path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(path); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		time.Sleep(time.Duration(5+rand.IntN(60)) * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		s := fastStore(path)
		_, errA := s.Get(context.Background(), alice, "password-A")
		_, errB := s.Get(context.Background(), alice, "password-B")
		if errA != nil && errB != nil {
			t.Fatalf("round %d: after a kill neither password opens the store (%v; %v)", round, errA, errB)
		}
		if errA == nil && errB == nil || !errors.Is(errA, tokens.ErrBadPassword) && !errors.Is(errB, tokens.ErrBadPassword) {
			t.Fatalf("round %d: A: %v, B: %v", round, errA, errB)
		}
	}
}
