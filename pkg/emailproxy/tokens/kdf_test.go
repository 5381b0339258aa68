package tokens

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fastCodec seals at a low count so tests run in milliseconds; the real
// counts are exercised once, in TestRealIterationCount.
func fastCodec() *Codec {
	return &Codec{Keys: NewKeyCache(0), Iterations: 2000, LegacyIterations: 500}
}

func TestNewSalt(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		s, err := NewSalt()
		if err != nil {
			t.Fatal(err)
		}
		b, err := decodeSalt(s)
		if err != nil || len(b) != SaltBytes || len(s) != 24 || !strings.HasSuffix(s, "==") {
			t.Fatalf("salt %q: %d bytes, %v; want padded standard base64 of 16 bytes", s, len(b), err)
		}
		if seen[s] {
			t.Fatalf("salt %q repeated", s)
		}
		seen[s] = true
	}
}

func TestDeriveKeyRejects(t *testing.T) {
	for _, tt := range []struct {
		salt string
		n    int
	}{{"", 1000}, {"***", 1000}, {"AAAAAAAAAAAAAAAAAAAAAA==", 0}, {"AAAAAAAAAAAAAAAAAAAAAA==", -5}} {
		if _, err := DeriveKey("pw", tt.salt, tt.n); err == nil {
			t.Errorf("DeriveKey(salt %q, %d) accepted", tt.salt, tt.n)
		}
	}
	// The same inputs always give the same key; any change gives another.
	a, _ := DeriveKey("pw", "AAAAAAAAAAAAAAAAAAAAAA==", 1000)
	b, _ := DeriveKey("pw", "AAAAAAAAAAAAAAAAAAAAAA==", 1000)
	c, _ := DeriveKey("pw", "AAAAAAAAAAAAAAAAAAAAAA==", 1001)
	d, _ := DeriveKey("pW", "AAAAAAAAAAAAAAAAAAAAAA==", 1000)
	if a != b || a == c || a == d {
		t.Error("DeriveKey is not a function of exactly (password, salt, iterations)")
	}
}

// countingCache derives with a stand-in that counts calls and can be held
// back, so the cache's own behaviour is what the test sees.
func countingCache(max int, gate <-chan struct{}) (*KeyCache, *atomic.Int64) {
	c := NewKeyCache(max)
	var n atomic.Int64
	c.derive = func(ctx context.Context, password, salt string, iterations int) (FernetKey, error) {
		n.Add(1)
		if gate != nil {
			<-gate
		}
		return DeriveKeyContext(ctx, password, salt, iterations)
	}
	return c, &n
}

const salt0 = "AAAAAAAAAAAAAAAAAAAAAA=="

func TestKeyCacheDerivesOncePerKey(t *testing.T) {
	c, n := countingCache(0, nil)
	ctx := context.Background()
	inputs := []struct {
		acct, pw, salt string
		n              int
	}{
		{"a@x", "pw", salt0, 1000},
		{"b@x", "pw", salt0, 1000},                      // other account
		{"a@x", "pw2", salt0, 1000},                     // other password
		{"a@x", "pw", "AQEBAQEBAQEBAQEBAQEBAQ==", 1000}, // other salt
		{"a@x", "pw", salt0, 1001},                      // other count
		// Length-prefixed index: moving bytes between fields is a new key.
		{"a@xp", "w", salt0, 1000},
	}
	for round := range 3 {
		for _, in := range inputs {
			k, err := c.Key(ctx, in.acct, in.pw, in.salt, in.n)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := DeriveKey(in.pw, in.salt, in.n)
			if k != want {
				t.Fatalf("round %d: cached key for %+v differs from a fresh derivation", round, in)
			}
		}
	}
	if got := n.Load(); got != int64(len(inputs)) {
		t.Errorf("%d derivations for %d distinct inputs over 3 rounds", got, len(inputs))
	}
	if c.Derivations() != uint64(len(inputs)) || c.Len() != len(inputs) {
		t.Errorf("Derivations()=%d Len()=%d", c.Derivations(), c.Len())
	}
}

func TestKeyCacheConcurrentFirstUseDerivesOnce(t *testing.T) {
	gate := make(chan struct{})
	c, n := countingCache(0, gate)
	var wg sync.WaitGroup
	keys := make([]FernetKey, 50)
	errs := make([]error, 50)
	for i := range 50 {
		wg.Go(func() {
			keys[i], errs[i] = c.Key(context.Background(), "a@x", "pw", salt0, 1000)
		})
	}
	// Let every goroutine reach the flight before the derivation ends.
	for n.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(gate)
	wg.Wait()
	for i := range keys {
		if errs[i] != nil || keys[i] != keys[0] {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
	}
	if n.Load() != 1 {
		t.Errorf("50 concurrent first uses made %d derivations, want 1", n.Load())
	}
}

func TestKeyCacheHonoursContext(t *testing.T) {
	gate := make(chan struct{})
	c, n := countingCache(0, gate)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Key(ctx, "a@x", "pw", salt0, 1000)
		done <- err
	}()
	for n.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Key returned %v", err)
	}
	close(gate) // the abandoned derivation finishes and is kept
	for c.Len() == 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := c.Key(context.Background(), "a@x", "pw", salt0, 1000); err != nil {
		t.Fatal(err)
	}
	if n.Load() != 1 {
		t.Errorf("%d derivations; the abandoned one should have been reused", n.Load())
	}
}

func TestKeyCacheBoundedLRU(t *testing.T) {
	c, n := countingCache(3, nil)
	ctx := context.Background()
	get := func(pw string) {
		t.Helper()
		if _, err := c.Key(ctx, "a@x", pw, salt0, 100); err != nil {
			t.Fatal(err)
		}
	}
	get("1")
	get("2")
	get("3")
	get("1") // now most recent; "2" is the oldest
	get("4") // evicts "2"
	if c.Len() != 3 {
		t.Fatalf("Len = %d, want the bound 3", c.Len())
	}
	for _, pw := range []string{"1", "3", "4"} {
		if !c.Cached("a@x", pw, salt0, 100) {
			t.Errorf("key for %q evicted", pw)
		}
	}
	if c.Cached("a@x", "2", salt0, 100) {
		t.Error("least recently used key not evicted")
	}
	before := n.Load()
	get("2")
	if n.Load() != before+1 {
		t.Error("evicted key was not derived again")
	}
	for i := range 100 {
		get(fmt.Sprint("flood", i))
	}
	if c.Len() != 3 {
		t.Errorf("after a flood Len = %d, want 3", c.Len())
	}
}

func TestKeyCacheKeepsNoPassword(t *testing.T) {
	c := NewKeyCache(0)
	const pw = "correct horse battery staple"
	if _, err := c.Key(context.Background(), "a@x", pw, salt0, 100); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for idx, el := range c.entries {
		dump := fmt.Sprintf("%x %q %#v", idx[:], idx[:], el.Value)
		if strings.Contains(dump, pw) || strings.Contains(dump, fmt.Sprintf("%x", pw)) {
			t.Fatal("cache entry contains the password")
		}
	}
	// Two caches index the same inputs differently (per-process random key).
	d := NewKeyCache(0)
	if c.index("a@x", pw, salt0, 100) == d.index("a@x", pw, salt0, 100) {
		t.Error("cache index does not depend on a per-cache secret")
	}
}
