package tokens

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrCorrupt: the stored entry cannot be read whatever the password is (a
// value that is not a Fernet token, a missing or invalid token_salt, a
// token_iterations that is not a number). Unlike ErrBadPassword, asking the
// user for another password will not help; deleting the entry will.
var ErrCorrupt = errors.New("stored tokens are unreadable")

// Sealed is one account's entry as it is stored, in the Python proxy's
// field names: the encrypted values stay encrypted. It is what a cache-file
// section and a config section's written-back keys both hold.
type Sealed struct {
	Salt                  string // token_salt: standard base64 of 16 bytes
	Iterations            int    // token_iterations; 0 when absent (then LegacyIterations applies)
	AccessToken           string // access_token, Fernet
	AccessTokenExpiry     int64  // access_token_expiry, epoch seconds, 0 when absent
	RefreshToken          string // refresh_token, Fernet
	LastActivity          int64  // last_activity, epoch seconds, 0 when absent
	ClientSecretEncrypted string // client_secret_encrypted, Fernet
}

// HasSecrets reports whether the entry holds any encrypted value.
func (s Sealed) HasSecrets() bool {
	return s.AccessToken != "" || s.RefreshToken != "" || s.ClientSecretEncrypted != ""
}

// Codec turns Records into Sealed entries and back under the Python
// proxy's scheme. The zero value is ready to use and is what production
// wants; tests lower the counts to run fast (values sealed at a lower count
// still open everywhere, since the count is stored beside them).
type Codec struct {
	// Keys caches derived keys; nil means DefaultKeyCache().
	Keys *KeyCache
	// Iterations is the count used when sealing and tried first when
	// opening; 0 means Iterations (1,200,000).
	Iterations int
	// LegacyIterations is assumed when token_iterations is absent and is
	// always tried last; 0 means LegacyIterations (100,000).
	LegacyIterations int
}

func (c *Codec) keys() *KeyCache {
	if c == nil || c.Keys == nil {
		return DefaultKeyCache()
	}
	return c.Keys
}

func (c *Codec) writeIterations() int {
	if c == nil || c.Iterations <= 0 {
		return Iterations
	}
	return c.Iterations
}

func (c *Codec) legacyIterations() int {
	if c == nil || c.LegacyIterations <= 0 {
		return LegacyIterations
	}
	return c.LegacyIterations
}

// candidates are the counts to try, highest first, without repeats: the
// current count, the stored one (legacy when absent) and the legacy one —
// the same set the Python proxy tries.
func (c *Codec) candidates(stored int) []int {
	if stored <= 0 {
		stored = c.legacyIterations()
	}
	cs := []int{c.writeIterations(), stored, c.legacyIterations()}
	slices.Sort(cs)
	slices.Reverse(cs)
	return slices.Compact(cs)
}

// Open decrypts s with password. It returns ErrNotFound when s holds no
// encrypted value, ErrBadPassword when no candidate key opens it, and
// ErrCorrupt when it cannot be read at all. rotate is true when a value
// opened only under a lower iteration count than Codec.Iterations: the
// caller should Seal the record again (with s.Salt) and store it, as the
// Python proxy does.
func (c *Codec) Open(ctx context.Context, account, password string, s Sealed) (rec Record, rotate bool, err error) {
	if !s.HasSecrets() {
		return Record{}, false, ErrNotFound
	}
	if s.Salt == "" {
		return Record{}, false, fmt.Errorf("%w: encrypted values without a token_salt", ErrCorrupt)
	}
	if _, err := decodeSalt(s.Salt); err != nil {
		return Record{}, false, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if s.Iterations < 0 {
		return Record{}, false, fmt.Errorf("%w: token_iterations is %d", ErrCorrupt, s.Iterations)
	}
	cands := c.candidates(s.Iterations)
	open := func(field, value string) (string, error) {
		if value == "" {
			return "", nil
		}
		for i, n := range cands {
			k, err := c.keys().Key(ctx, account, password, s.Salt, n)
			if err != nil {
				return "", err
			}
			pt, err := FernetDecrypt(k, value)
			switch {
			case err == nil:
				if i > 0 {
					rotate = true
				}
				return string(pt), nil
			case errors.Is(err, ErrWrongKey):
				continue
			default:
				return "", fmt.Errorf("%w: %s: %w", ErrCorrupt, field, err)
			}
		}
		return "", ErrBadPassword
	}
	if rec.AccessToken, err = open("access_token", s.AccessToken); err != nil {
		return Record{}, false, err
	}
	if rec.RefreshToken, err = open("refresh_token", s.RefreshToken); err != nil {
		return Record{}, false, err
	}
	if rec.ClientSecret, err = open("client_secret_encrypted", s.ClientSecretEncrypted); err != nil {
		return Record{}, false, err
	}
	rec.AccessTokenExpiry = fromEpoch(s.AccessTokenExpiry)
	rec.LastActivity = fromEpoch(s.LastActivity)
	return rec, rotate, nil
}

// Seal encrypts rec with password under salt (a fresh salt when salt is
// empty) at Codec.Iterations. Empty string fields and zero times are left
// out, as the Python proxy leaves out keys it has no value for.
func (c *Codec) Seal(ctx context.Context, account, password string, rec Record, salt string) (Sealed, error) {
	if salt == "" {
		var err error
		if salt, err = NewSalt(); err != nil {
			return Sealed{}, err
		}
	}
	n := c.writeIterations()
	k, err := c.keys().Key(ctx, account, password, salt, n)
	if err != nil {
		return Sealed{}, err
	}
	s := Sealed{
		Salt:              salt,
		Iterations:        n,
		AccessTokenExpiry: toEpoch(rec.AccessTokenExpiry),
		LastActivity:      toEpoch(rec.LastActivity),
	}
	seal := func(v string) (string, error) {
		if v == "" {
			return "", nil
		}
		return FernetEncrypt(k, []byte(v))
	}
	if s.AccessToken, err = seal(rec.AccessToken); err != nil {
		return Sealed{}, err
	}
	if s.RefreshToken, err = seal(rec.RefreshToken); err != nil {
		return Sealed{}, err
	}
	if s.ClientSecretEncrypted, err = seal(rec.ClientSecret); err != nil {
		return Sealed{}, err
	}
	return s, nil
}

// reusableSalt is the salt a new Seal for password should use: the current
// one when the password already opens the entry at the write count with a
// key that is cached (so checking costs microseconds), else "" for a fresh
// salt. A changed password therefore always gets a new salt, and a Put never
// pays more than one derivation.
func (c *Codec) reusableSalt(account, password string, cur Sealed) string {
	n := c.writeIterations()
	if cur.Salt == "" || cur.Iterations != n || !c.keys().Cached(account, password, cur.Salt, n) {
		return ""
	}
	k, err := c.keys().Key(context.Background(), account, password, cur.Salt, n)
	if err != nil {
		return ""
	}
	for _, v := range []string{cur.AccessToken, cur.RefreshToken, cur.ClientSecretEncrypted} {
		if v == "" {
			continue
		}
		if _, err := FernetDecrypt(k, v); err == nil {
			return cur.Salt
		}
		return ""
	}
	return ""
}

func fromEpoch(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0)
}

func toEpoch(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
