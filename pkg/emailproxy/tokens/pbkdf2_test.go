package tokens

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestPBKDF2MatchesTheStandardLibrary: the pausable loop gives the same
// key as crypto/pbkdf2 for RFC 7914 §11's PBKDF2-HMAC-SHA256 vectors (their
// first 32 bytes: one block) and for random passwords, salts and counts,
// 1 and the checkpoint's multiples and their neighbours included.
func TestPBKDF2MatchesTheStandardLibrary(t *testing.T) {
	for _, v := range []struct {
		pw, salt string
		n        int
		want     string
	}{
		{"passwd", "salt", 1, "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"},
		{"Password", "NaCl", 80000, "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"},
	} {
		got, err := pbkdf2SHA256(context.Background(), []byte(v.pw), []byte(v.salt), v.n, nil)
		if err != nil || hex.EncodeToString(got[:]) != v.want {
			t.Errorf("RFC 7914 vector (%q, %q, %d): %x, %v; want %s", v.pw, v.salt, v.n, got, err, v.want)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	counts := []int{1, 2, 3, checkpointEvery - 1, checkpointEvery, checkpointEvery + 1, 2*checkpointEvery + 1, 3 * checkpointEvery}
	for range 60 {
		counts = append(counts, 1+r.IntN(5*checkpointEvery))
	}
	calls := 0
	cp := func(context.Context) error { calls++; return nil }
	for i, n := range counts {
		pw := make([]byte, r.IntN(100)) // 0 to 99 bytes: longer than a SHA-256 block too
		salt := make([]byte, r.IntN(40))
		for j := range pw {
			pw[j] = byte(r.Uint32())
		}
		for j := range salt {
			salt[j] = byte(r.Uint32())
		}
		want, err := pbkdf2.Key(sha256.New, string(pw), salt, n, sha256.Size)
		if err != nil {
			t.Fatal(err)
		}
		calls = 0
		got, err := pbkdf2SHA256(context.Background(), pw, salt, n, cp)
		if err != nil || string(got[:]) != string(want) {
			t.Fatalf("case %d (%d-byte password, %d-byte salt, %d iterations): %x, %v; crypto/pbkdf2 says %x", i, len(pw), len(salt), n, got, err, want)
		}
		// A checkpoint between rounds, never after the last one.
		if wantCalls := max(0, n-2) / checkpointEvery; calls != wantCalls {
			t.Errorf("%d iterations: %d checkpoints, want %d", n, calls, wantCalls)
		}
	}
}

// TestCheckpointPausesAndStops: a derivation waits in its checkpoint for
// as long as the checkpoint blocks, and stops with the checkpoint's error.
func TestCheckpointPausesAndStops(t *testing.T) {
	stop := errors.New("the client left")
	calls := 0
	ctx := WithCheckpoint(context.Background(), func(context.Context) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if _, err := DeriveKeyContext(ctx, "pw", salt0, 10*checkpointEvery); !errors.Is(err, stop) {
		t.Fatalf("stopped derivation: %v, want the checkpoint's error", err)
	}
	if calls != 2 {
		t.Errorf("%d checkpoints after the stop, want 2", calls)
	}

	// Paused: nothing finishes while the checkpoint blocks.
	release := make(chan struct{})
	paused := make(chan struct{})
	var once sync.Once
	ctx = WithCheckpoint(context.Background(), func(context.Context) error {
		once.Do(func() { close(paused) })
		<-release
		return nil
	})
	done := make(chan FernetKey)
	go func() {
		k, _ := DeriveKeyContext(ctx, "pw", salt0, 3*checkpointEvery)
		done <- k
	}()
	<-paused
	select {
	case <-done:
		t.Fatal("the derivation finished while its checkpoint held it")
	default:
	}
	close(release)
	want, _ := DeriveKey("pw", salt0, 3*checkpointEvery)
	if got := <-done; got != want {
		t.Error("a paused derivation gave another key")
	}
}

// TestKeyCacheStoppedDerivation: a derivation its checkpoint stopped is not
// cached; a caller that joined it with its own live context gets the key
// (derived again under its own checkpoint), the starter gets the error.
func TestKeyCacheStoppedDerivation(t *testing.T) {
	c := NewKeyCache(0)
	stop := errors.New("the client left")
	started := make(chan struct{})
	letStop := make(chan struct{})
	var once sync.Once
	starter := WithCheckpoint(context.Background(), func(context.Context) error {
		once.Do(func() { close(started) })
		<-letStop
		return stop
	})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Key(starter, "a@x", "pw", salt0, 3*checkpointEvery)
		errc <- err
	}()
	<-started
	joined := make(chan FernetKey, 1)
	go func() {
		k, err := c.Key(context.Background(), "a@x", "pw", salt0, 3*checkpointEvery)
		if err != nil {
			t.Errorf("the joined caller: %v", err)
		}
		joined <- k
	}()
	// Let the second caller join the flight before the stop.
	for c.waiting.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	close(letStop)
	if err := <-errc; !errors.Is(err, stop) {
		t.Errorf("the starter: %v, want its checkpoint's error", err)
	}
	want, _ := DeriveKey("pw", salt0, 3*checkpointEvery)
	if k := <-joined; k != want {
		t.Error("the joined caller got another key")
	}
	if c.Derivations() != 1 {
		t.Errorf("%d derivations cached, want 1 (the stopped one is not)", c.Derivations())
	}
}

// BenchmarkPBKDF2 compares the pausable loop, with and without a
// checkpoint (one that takes a mutex, as the guard's does), with
// crypto/pbkdf2 at the production count. Run them in one go to compare:
//
//	go test -run '^$' -bench PBKDF2 -count 6 ./pkg/emailproxy/tokens/
func BenchmarkPBKDF2(b *testing.B) {
	salt := []byte("0123456789abcdef")
	pw := "a login password"
	b.Run("crypto-pbkdf2", func(b *testing.B) {
		for b.Loop() {
			if _, err := pbkdf2.Key(sha256.New, pw, salt, Iterations, sha256.Size); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pausable", func(b *testing.B) {
		for b.Loop() {
			pbkdf2SHA256(context.Background(), []byte(pw), salt, Iterations, nil)
		}
	})
	b.Run("pausable-checkpoint", func(b *testing.B) {
		var mu sync.Mutex
		n := 0
		cp := func(context.Context) error { mu.Lock(); n++; mu.Unlock(); return nil }
		for b.Loop() {
			pbkdf2SHA256(context.Background(), []byte(pw), salt, Iterations, cp)
		}
	})
}
