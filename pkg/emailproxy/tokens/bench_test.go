package tokens

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// BenchmarkDeriveKey is one PBKDF2 derivation at the production count: the
// cost the Python proxy pays (at least twice) on every login, and that the
// key cache pays once per account and password.
func BenchmarkDeriveKey(b *testing.B) {
	for b.Loop() {
		if _, err := DeriveKey("a login password", salt0, Iterations); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetCached is a FileStore.Get after the first, at the production
// count: read and parse the file, look the key up, open two Fernet tokens.
// This is what each login pays once the key is cached.
func BenchmarkGetCached(b *testing.B) {
	ctx := context.Background()
	s := NewFileStore(filepath.Join(b.TempDir(), "tokens.cache"), WithCodec(&Codec{Keys: NewKeyCache(0)}))
	for _, a := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		rec := Record{AccessToken: "eyJ0eXAiOiJKV1QiLCJub25jZSI6IjEyMzQ1Njc4OTAifQ.payload.signature-of-a-realistic-length-for-an-entra-token",
			RefreshToken: "0.AR8A-a-refresh-token-of-some-length-0123456789abcdefghijklmnopqrstuvwxyz", AccessTokenExpiry: time.Now().Add(time.Hour)}
		if err := s.Put(ctx, a, "pw", rec); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.Get(ctx, "b@example.com", "pw"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Get(ctx, "b@example.com", "pw"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeyCacheHit is the cache lookup alone (HMAC index + map).
func BenchmarkKeyCacheHit(b *testing.B) {
	c := NewKeyCache(0)
	ctx := context.Background()
	if _, err := c.Key(ctx, "a@x", "pw", salt0, 1000); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.Key(ctx, "a@x", "pw", salt0, 1000); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFernetDecrypt(b *testing.B) {
	k := testKey(b, 1)
	tok, err := FernetEncrypt(k, []byte("eyJ0eXAiOiJKV1QiLCJub25jZSI6IjEyMzQ1Njc4OTAifQ.a-typical-access-token-of-about-two-kilobytes"+string(make([]byte, 1900))))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(tok)))
	for b.Loop() {
		if _, err := FernetDecrypt(k, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFernetEncrypt(b *testing.B) {
	k := testKey(b, 1)
	msg := make([]byte, 2000)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := FernetEncrypt(k, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutCachedKey is a token save after a refresh: seal with the
// cached key, lock, re-read, rewrite one section, atomic replace (fsync).
func BenchmarkPutCachedKey(b *testing.B) {
	ctx := context.Background()
	s := NewFileStore(filepath.Join(b.TempDir(), "tokens.cache"), WithCodec(&Codec{Keys: NewKeyCache(0)}))
	rec := Record{AccessToken: "at", RefreshToken: "rt"}
	if err := s.Put(ctx, "a@example.com", "pw", rec); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := s.Put(ctx, "a@example.com", "pw", rec); err != nil {
			b.Fatal(err)
		}
	}
}

// bigStore writes a token store of n accounts in one batch.
func bigStore(b *testing.B, n int) *FileStore {
	b.Helper()
	s := NewFileStore(filepath.Join(b.TempDir(), "tokens.cache"))
	items := make([]InlineImport, n)
	for i := range items {
		items[i] = InlineImport{Account: fmt.Sprintf("user%d@example.com", i), Tokens: config.InlineTokens{
			TokenSalt: "c2FsdHNhbHRzYWx0c2FsdA==", TokenIterations: Iterations, AccessToken: fmt.Sprintf("gAAAAABtoken%d", i),
			AccessTokenExpiry: 1760000000, RefreshToken: fmt.Sprintf("gAAAAABrefresh%d", i), LastActivity: 1760000000}}
	}
	for _, o := range s.ImportAll(context.Background(), items) {
		if o.Err != nil || o.Result != Imported {
			b.Fatalf("%s: %v %v", o.Account, o.Result, o.Err)
		}
	}
	return s
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSummaries is what `status` reads from the token store: every
// account's summary, with 2,000 and 20,000 accounts. Linear (linearity:
// CPU cost per account over the 2,000 run's; 1.0 is linear).
func BenchmarkSummaries(b *testing.B) {
	var perAccount2k float64
	for _, n := range []int{2000, 20000} {
		b.Run(fmt.Sprintf("accounts=%d", n), func(b *testing.B) {
			s := bigStore(b, n)
			cpu0 := cpuTime()
			for b.Loop() {
				list, err := s.Summaries()
				if err != nil || len(list) != n {
					b.Fatalf("%d summaries, %v", len(list), err)
				}
			}
			perAccount := float64((cpuTime() - cpu0).Nanoseconds()) / float64(b.N) / 1e3 / float64(n)
			b.ReportMetric(perAccount, "cpu-us/account")
			if n == 2000 {
				perAccount2k = perAccount
			} else if perAccount2k > 0 {
				b.ReportMetric(perAccount/perAccount2k, "linearity")
			}
		})
	}
}
