package tokens

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func sampleRecord() Record {
	return Record{
		AccessToken:       "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.access",
		AccessTokenExpiry: time.Unix(1900000000, 0),
		RefreshToken:      "0.AAAA-refresh_token-value",
		LastActivity:      time.Unix(1800000000, 0),
		ClientSecret:      "client~secret",
	}
}

func sameRecord(a, b Record) bool {
	return a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken && a.ClientSecret == b.ClientSecret &&
		a.AccessTokenExpiry.Equal(b.AccessTokenExpiry) && a.LastActivity.Equal(b.LastActivity)
}

func TestCodecSealOpen(t *testing.T) {
	ctx := context.Background()
	c := fastCodec()
	tests := []struct {
		name string
		rec  Record
	}{
		{"all fields", sampleRecord()},
		{"refresh only", Record{RefreshToken: "r"}},
		{"client secret only", Record{ClientSecret: "s"}},
		{"unicode", Record{AccessToken: "tøken ✓", RefreshToken: strings.Repeat("r", 3000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := c.Seal(ctx, "a@x", "pässwörd", tt.rec, "")
			if err != nil {
				t.Fatal(err)
			}
			if s.Iterations != 2000 || s.Salt == "" {
				t.Errorf("sealed with salt %q, count %d", s.Salt, s.Iterations)
			}
			for _, v := range []string{s.AccessToken, s.RefreshToken, s.ClientSecretEncrypted} {
				if v != "" && (!strings.HasPrefix(v, "gAAAAA") || strings.Contains(v, "refresh") || strings.Contains(v, "secret")) {
					t.Errorf("stored value %q is not an opaque Fernet token", v)
				}
			}
			if (s.AccessToken == "") != (tt.rec.AccessToken == "") || (s.ClientSecretEncrypted == "") != (tt.rec.ClientSecret == "") {
				t.Error("empty fields must be left out and set ones kept")
			}
			got, rotate, err := c.Open(ctx, "a@x", "pässwörd", s)
			if err != nil || rotate {
				t.Fatalf("Open = rotate %v, %v", rotate, err)
			}
			if !sameRecord(got, tt.rec) {
				t.Errorf("round trip gave %+v", got)
			}
		})
	}
}

func TestCodecWrongPassword(t *testing.T) {
	ctx := context.Background()
	c := fastCodec()
	s, err := c.Seal(ctx, "a@x", "right", sampleRecord(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"wrong", "", "Right", "right "} {
		if _, _, err := c.Open(ctx, "a@x", pw, s); !errors.Is(err, ErrBadPassword) {
			t.Errorf("password %q: %v, want ErrBadPassword", pw, err)
		}
	}
	// The account is part of the cache key, not of the cryptography: the
	// Python proxy derives from password and salt alone, so must we.
	if _, _, err := c.Open(ctx, "other@x", "right", s); err != nil {
		t.Errorf("same password and salt under another account name: %v", err)
	}
}

func TestCodecCandidates(t *testing.T) {
	c := fastCodec() // 2000 current, 500 legacy
	for _, tt := range []struct {
		stored int
		want   []int
	}{
		{0, []int{2000, 500}},
		{500, []int{2000, 500}},
		{2000, []int{2000, 500}},
		{1000, []int{2000, 1000, 500}},
		{9000, []int{9000, 2000, 500}},
	} {
		if got := c.candidates(tt.stored); !slices.Equal(got, tt.want) {
			t.Errorf("candidates(%d) = %v, want %v", tt.stored, got, tt.want)
		}
	}
	var real Codec
	if got := real.candidates(0); !slices.Equal(got, []int{1_200_000, 100_000}) {
		t.Errorf("zero Codec candidates = %v", got)
	}
}

func TestCodecLegacyCountsAskForRotation(t *testing.T) {
	ctx := context.Background()
	c := fastCodec()
	old := &Codec{Keys: c.Keys, Iterations: 500}  // a writer from the legacy era
	mid := &Codec{Keys: c.Keys, Iterations: 1000} // some count in between
	newer := &Codec{Keys: c.Keys, Iterations: 5000}
	tests := []struct {
		name       string
		writer     *Codec
		storeCount func(int) int // what token_iterations says on disk
		rotate     bool
	}{
		{"legacy, no token_iterations", old, func(int) int { return 0 }, true},
		{"legacy, token_iterations written", old, func(n int) int { return n }, true},
		{"stored intermediate count", mid, func(n int) int { return n }, true},
		{"current count", c, func(n int) int { return n }, false},
		{"higher count than ours", newer, func(n int) int { return n }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.writer.Seal(ctx, "a@x", "pw", sampleRecord(), "")
			if err != nil {
				t.Fatal(err)
			}
			s.Iterations = tt.storeCount(s.Iterations)
			rec, rotate, err := c.Open(ctx, "a@x", "pw", s)
			if err != nil {
				t.Fatal(err)
			}
			if rotate != tt.rotate || !sameRecord(rec, sampleRecord()) {
				t.Errorf("rotate = %v, want %v; record ok = %v", rotate, tt.rotate, sameRecord(rec, sampleRecord()))
			}
			if rotate {
				again, err := c.Seal(ctx, "a@x", "pw", rec, s.Salt)
				if err != nil {
					t.Fatal(err)
				}
				if again.Salt != s.Salt || again.Iterations != 2000 {
					t.Errorf("rotated entry: salt kept %v, count %d", again.Salt == s.Salt, again.Iterations)
				}
				if _, r2, err := c.Open(ctx, "a@x", "pw", again); err != nil || r2 {
					t.Errorf("rotated entry opens with rotate=%v, %v", r2, err)
				}
			}
		})
	}
}

func TestCodecCorruptEntriesError(t *testing.T) {
	ctx := context.Background()
	c := fastCodec()
	good, err := c.Seal(ctx, "a@x", "pw", sampleRecord(), "")
	if err != nil {
		t.Fatal(err)
	}
	with := func(f func(*Sealed)) Sealed { s := good; f(&s); return s }
	tests := []struct {
		name string
		s    Sealed
		want error
	}{
		{"nothing encrypted", Sealed{Salt: good.Salt, AccessTokenExpiry: 5}, ErrNotFound},
		{"no salt", with(func(s *Sealed) { s.Salt = "" }), ErrCorrupt},
		{"salt not base64", with(func(s *Sealed) { s.Salt = "%%%" }), ErrCorrupt},
		{"negative count", with(func(s *Sealed) { s.Iterations = -1 }), ErrCorrupt},
		{"garbage access token", with(func(s *Sealed) { s.AccessToken = "hello world" }), ErrCorrupt},
		{"truncated refresh token (torn write)", with(func(s *Sealed) { s.RefreshToken = s.RefreshToken[:30] }), ErrCorrupt},
		{"tampered client secret", with(func(s *Sealed) {
			// Another valid base64 character, so the token still decodes
			// and only the HMAC can notice (flipping a bit could make an
			// invalid character, which is corruption, not tampering).
			b := []byte(s.ClientSecretEncrypted)
			if b[40] == 'A' {
				b[40] = 'B'
			} else {
				b[40] = 'A'
			}
			s.ClientSecretEncrypted = string(b)
		}), ErrBadPassword},
		{"other salt", with(func(s *Sealed) { s.Salt = "AQIDBAUGBwgJCgsMDQ4PEA==" }), ErrBadPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := c.Open(ctx, "a@x", "pw", tt.s)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), "pw") && tt.want != ErrNotFound {
				t.Errorf("error mentions the password: %v", err)
			}
		})
	}
}

func TestCodecReusableSalt(t *testing.T) {
	ctx := context.Background()
	c := fastCodec()
	s, err := c.Seal(ctx, "a@x", "pw", sampleRecord(), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.reusableSalt("a@x", "pw", s); got != s.Salt {
		t.Errorf("same password: salt %q, want the current one", got)
	}
	if got := c.reusableSalt("a@x", "new password", s); got != "" {
		t.Error("a new password must get a new salt")
	}
	legacy := s
	legacy.Iterations = 0
	if got := c.reusableSalt("a@x", "pw", legacy); got != "" {
		t.Error("an entry at another count must not reuse its salt for the current count")
	}
	cold := &Codec{Keys: NewKeyCache(0), Iterations: 2000}
	if got := cold.reusableSalt("a@x", "pw", s); got != "" || cold.Keys.Derivations() != 0 {
		t.Error("checking the salt must not pay a derivation")
	}
}
