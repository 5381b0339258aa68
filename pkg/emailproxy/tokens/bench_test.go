package tokens

import (
	"context"
	"path/filepath"
	"testing"
	"time"
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
